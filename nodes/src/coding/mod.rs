//! The coding-assistant nodes: `WorkspaceInspector`, `Patch`, `TestExecutor`, `Summary`,
//! and what they share (globs, the workspace root, copying a workspace).

mod commit;
mod inspector;
pub(crate) mod patch;
mod summary;
mod test_executor;

pub use inspector::WorkspaceInspectorFactory;
pub use patch::{fix_hunk_counts, PatchFactory};
pub use summary::SummaryFactory;
pub use test_executor::{pytest_counts, split_words, TestExecutorFactory};

use illumo_engine::path::Step;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Folders never walked, copied or patched into.
pub const SKIPPED_DIRS: [&str; 9] = [
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    "node_modules",
    ".hg",
];

pub use crate::files::{read_regular, read_text, Unread, MAX_FILE_BYTES};

/// Does `path` (with `/` separators) match `pattern`? `*` and `?` stay inside one path
/// segment; `**` matches any number of segments, none included.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(head, tail)| match_segment(first, head) && match_segments(rest, tail)),
    }
}

fn match_segment(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic wildcard matching with backtracking on the last `*`.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The workspace root: `ctx.request.target_root` when the request names one, else the
/// node's `default_root`; relative roots start at the flow file's folder.
pub fn workspace_root(
    ctx: &Value,
    default_root: Option<&str>,
    base_dir: &Path,
) -> Result<PathBuf, String> {
    let given = ctx
        .pointer("/request/target_root")
        .and_then(Value::as_str)
        .or(default_root);
    let Some(root) = given else {
        return Err(
            "no workspace: set `ctx.request.target_root` or the node's `default_root`".into(),
        );
    };
    let path = if Path::new(root).is_absolute() {
        PathBuf::from(root)
    } else {
        base_dir.join(root)
    };
    if !path.is_dir() {
        return Err(format!(
            "the workspace `{}` is not a folder",
            path.display()
        ));
    }
    Ok(path)
}

/// illumo-flow's workspace nodes start with `context.setdefault("request", {})`: an
/// illumo-flow flow's ctx has a `request` map once one of them ran.
pub fn request_default(
    ctx: &Value,
    outcome: illumo_engine::node::Outcome,
) -> illumo_engine::node::Outcome {
    match ctx.get("request") {
        Some(_) => outcome,
        None => outcome.with_write(
            illumo_engine::path::CtxPath::ctx(vec![Step::Key("request".into())]),
            Value::Object(Default::default()),
        ),
    }
}

/// Writes `value` at `path`, and at `default` too when `path` names another place, as
/// illumo-flow's workspace nodes fill their own bucket and the place a setting names.
pub fn at_both(
    outcome: illumo_engine::node::Outcome,
    path: &illumo_engine::path::CtxPath,
    default: &str,
    value: &Value,
) -> illumo_engine::node::Outcome {
    let outcome = match illumo_engine::path::CtxPath::parse(default) {
        Ok(default) if default != *path => outcome.with_write(default, value.clone()),
        _ => outcome,
    };
    outcome.with_write(path.clone(), value.clone())
}

/// The ctx paths every workspace node reads to find its root.
pub fn root_reads() -> Vec<Vec<Step>> {
    vec![vec![
        Step::Key("request".into()),
        Step::Key("target_root".into()),
    ]]
}

/// A virtualenv: a folder with `pyvenv.cfg`.
pub fn is_virtualenv(dir: &Path) -> bool {
    dir.join("pyvenv.cfg").is_file()
}

/// Copies a workspace (without `.git`, caches, virtualenvs and symlinks) into `to`.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let kind = entry.file_type()?;
        let (src, dst) = (entry.path(), to.join(&name));
        if kind.is_dir() {
            if SKIPPED_DIRS.contains(&name.to_string_lossy().as_ref()) || is_virtualenv(&src) {
                continue;
            }
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// A temporary folder removed when dropped.
pub struct TempTree(pub PathBuf);

impl TempTree {
    pub fn new(tag: &str) -> std::io::Result<TempTree> {
        let path = std::env::temp_dir().join(format!(
            "illumo-{tag}-{}-{:x}",
            std::process::id(),
            illumo_engine::ids::random_u64()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempTree(path))
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segments_and_double_stars() {
        assert!(glob_match("app/**/*.py", "app/calc.py"));
        assert!(glob_match("app/**/*.py", "app/sub/deep/x.py"));
        assert!(!glob_match("app/**/*.py", "tests/test_calc.py"));
        assert!(!glob_match("app/*.py", "app/sub/x.py"));
        assert!(glob_match("**", "anything/at/all.txt"));
        assert!(glob_match("*.md", "README.md"));
        assert!(glob_match("te?t_*.py", "test_calc.py"));
        assert!(!glob_match("*.py", "calc.pyc"));
    }
}
