//! `WorkspaceInspector`: lists the files under a root with previews, in a stable order.

use super::{glob_match, is_virtualenv, root_reads, workspace_root, SKIPPED_DIRS};
use crate::paths;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::{CtxPath, Step};
use illumo_engine::template::Reads;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn default_extensions() -> Vec<String> {
    [".py", ".txt", ".md"].map(String::from).to_vec()
}
fn default_preview_lines() -> usize {
    10
}
fn default_max_bytes() -> u64 {
    128 * 1024
}

#[derive(Deserialize, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the folder, unless ctx.request.target_root names one (relative to the flow file)
    #[schemars(extend("x-kind" = "path"))]
    default_root: Option<String>,
    #[serde(default = "default_extensions")]
    /// file endings to keep (default .py, .txt, .md)
    #[schemars(extend("x-kind" = "list"))]
    allowed_extensions: Vec<String>,
    #[serde(default = "default_preview_lines")]
    /// lines from the start and the end (default 10)
    #[schemars(extend("x-kind" = "number"))]
    preview_lines: usize,
    #[serde(default = "default_max_bytes")]
    /// larger files are excluded (default 131072)
    #[schemars(extend("x-kind" = "number"))]
    max_bytes: u64,
    #[serde(default)]
    /// paths to leave out, e.g. `tests/fixtures/**`
    #[schemars(extend("x-kind" = "globs"))]
    exclude: Vec<String>,
    /// default $ctx.workspace.structure
    #[schemars(extend("x-kind" = "$ctx path"))]
    structure_path: Option<String>,
    /// default $ctx.workspace.structure_excluded
    #[schemars(extend("x-kind" = "$ctx path"))]
    excluded_path: Option<String>,
}

pub struct WorkspaceInspector {
    /// An illumo-flow flow: WorkspaceInspectorNode's walk, defaults and shapes.
    illumo_flow: bool,
    config: Arc<Config>,
    base_dir: PathBuf,
    structure: CtxPath,
    excluded: CtxPath,
}

pub struct WorkspaceInspectorFactory;

impl NodeFactory for WorkspaceInspectorFactory {
    fn type_name(&self) -> &'static str {
        "WorkspaceInspector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.WorkspaceInspectorNode",
            "illumo_flow.nodes.workspace.WorkspaceInspectorNode",
        ]
    }
    fn summary(&self) -> &'static str {
        "lists the files under a root with previews (first and last lines), in a stable order"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let structure = cx.ctx_path(
            "structure_path",
            config.structure_path.as_deref(),
            paths::STRUCTURE,
        );
        let excluded = cx.ctx_path(
            "excluded_path",
            config.excluded_path.as_deref(),
            paths::EXCLUDED,
        );
        // Numbers that size work are bounded (an enormous `preview_lines` once overflowed).
        let lines_ok = cx.check_range("preview_lines", config.preview_lines, 0, 10_000);
        let bytes_ok = cx.check_range("max_bytes", config.max_bytes, 0, 1 << 30);
        let (structure, excluded) = (structure?, excluded?);
        if !(lines_ok && bytes_ok) {
            return None;
        }
        let illumo_flow = cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow;
        let mut config = config;
        if illumo_flow {
            // WorkspaceInspectorNode's defaults, for the settings the flow leaves out.
            let setting = cx.setting.to_json();
            let given = |key: &str| setting.get(key).is_some();
            if !given("allowed_extensions") {
                config.allowed_extensions = ILLUMO_FLOW_EXTENSIONS.map(String::from).to_vec();
            }
            if !given("preview_lines") {
                config.preview_lines = 20;
            }
        }
        Some(Box::new(WorkspaceInspector {
            illumo_flow,
            config: Arc::new(config),
            base_dir: cx.base_dir.to_path_buf(),
            structure,
            excluded,
        }))
    }
}

/// WorkspaceInspectorNode's default file endings.
const ILLUMO_FLOW_EXTENSIONS: [&str; 5] = [".py", ".txt", ".md", ".json", ".yaml"];

/// What a walk found.
#[derive(Default)]
pub struct Walk {
    pub files: Vec<Value>,
    pub excluded: Vec<Value>,
}

/// The walk over the workspace, on a blocking thread (file I/O never holds a runtime
/// worker, so a timeout or an interrupt always wins).
struct Walker {
    config: Arc<Config>,
}

impl Walker {
    fn walk(&self, root: &Path, dir: &Path, selected: &Option<Vec<String>>, walk: &mut Walk) {
        let relative = |p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let mut entries: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect(),
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "permission_denied".to_string()
                } else {
                    e.to_string()
                };
                walk.excluded
                    .push(json!({"path": relative(dir), "reason": reason}));
                return;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rel = relative(&path);
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if self.config.exclude.iter().any(|g| glob_match(g, &rel)) {
                continue;
            }
            if kind.is_symlink() {
                walk.excluded
                    .push(json!({"path": rel, "reason": "symlink"}));
            } else if !kind.is_dir() && !kind.is_file() {
                // A FIFO would block at open, a device would never end: only regular
                // files are read.
                walk.excluded
                    .push(json!({"path": rel, "reason": special_kind(&kind)}));
            } else if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) && !is_virtualenv(&path) {
                    self.walk(root, &path, selected, walk);
                }
            } else if self
                .config
                .allowed_extensions
                .iter()
                .any(|ext| name.ends_with(ext.as_str()))
            {
                match self.inspect(&path) {
                    Ok(Ok((size, preview))) => {
                        let is_selected = selected
                            .as_ref()
                            .is_none_or(|list| list.iter().any(|s| s == &rel));
                        walk.files.push(json!({"path": rel, "size": size, "preview": preview, "selected": is_selected}));
                    }
                    Ok(Err((size, reason))) => walk
                        .excluded
                        .push(json!({"path": rel, "size": size, "reason": reason})),
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => walk
                        .excluded
                        .push(json!({"path": rel, "reason": "permission_denied"})),
                    Err(e) => walk
                        .excluded
                        .push(json!({"path": rel, "reason": e.to_string()})),
                }
            }
        }
    }

    /// WorkspaceInspectorNode's walk: the files of `ctx.request.target_files` (or every
    /// entry under the root, in path order), each folder listed as `not-file`, each file
    /// of another ending as `extension`; a file over `max_bytes` is listed with an empty
    /// preview and also excluded as `preview-unavailable`; `selected` marks the target
    /// files. Text is read as UTF-8 with bad bytes replaced, as there. Unlike there, the
    /// folders illumo never walks (`.git`, virtualenvs, caches) and symlinks are left out.
    fn walk_illumo_flow(&self, root: &Path, targets: &[String], walk: &mut Walk) {
        let relative = |p: &Path| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let mut candidates: Vec<PathBuf> = Vec::new();
        let mut selected = std::collections::HashSet::new();
        if targets.is_empty() {
            self.entries(root, &mut candidates);
        } else {
            // Resolved as illumo-flow resolves them: a symlink leading out is outside too.
            let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
            for target in targets {
                let candidate = crate::files::lexical(&root.join(target));
                let real = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
                if !candidate.starts_with(root) || !real.starts_with(&real_root) {
                    walk.excluded
                        .push(json!({"path": target, "reason": "outside-root"}));
                    continue;
                }
                selected.insert(relative(&candidate));
                candidates.push(candidate);
            }
        }
        candidates.sort();
        candidates.dedup();
        for candidate in candidates {
            let rel = relative(&candidate);
            if self.config.exclude.iter().any(|g| glob_match(g, &rel)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&candidate).ok();
            let Some(meta) = meta.filter(|m| m.is_file()) else {
                walk.excluded
                    .push(json!({"path": rel, "reason": "not-file"}));
                continue;
            };
            let suffix = candidate
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy().to_lowercase()))
                .unwrap_or_default();
            if !self.config.allowed_extensions.iter().any(|a| {
                let a = a.trim().to_lowercase();
                let a = if a.starts_with('.') {
                    a
                } else {
                    format!(".{a}")
                };
                a == suffix
            }) {
                walk.excluded
                    .push(json!({"path": rel, "reason": "extension"}));
                continue;
            }
            let size = meta.len();
            let preview = match size > self.config.max_bytes {
                true => None,
                false => super::read_regular(&candidate, self.config.max_bytes)
                    .ok()
                    .and_then(Result::ok)
                    .map(|bytes| match self.config.preview_lines {
                        0 => String::new(),
                        n => preview(&String::from_utf8_lossy(&bytes), n),
                    }),
            };
            if preview.is_none() {
                walk.excluded
                    .push(json!({"path": rel, "reason": "preview-unavailable", "size": size}));
            }
            walk.files.push(json!({"path": rel, "size": size, "preview": preview.unwrap_or_default(), "selected": selected.contains(&rel)}));
        }
    }

    /// Every entry under `dir` but the folders illumo never walks and symlinks.
    fn entries(&self, dir: &Path, into: &mut Vec<PathBuf>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in read.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() || SKIPPED_DIRS.contains(&name.as_str()) {
                continue;
            }
            if kind.is_dir() && is_virtualenv(&path) {
                continue;
            }
            into.push(path.clone());
            if kind.is_dir() {
                self.entries(&path, into);
            }
        }
    }

    /// `(size, preview)`, or `(size, why it is left out)`.
    #[allow(clippy::type_complexity)]
    fn inspect(&self, path: &Path) -> std::io::Result<Result<(u64, String), (u64, String)>> {
        let max = self.config.max_bytes;
        let bytes = match super::read_regular(path, max)? {
            Ok(bytes) => bytes,
            Err(super::Unread::TooLarge(size)) => {
                return Ok(Err((size, format!("larger than max_bytes ({max})"))))
            }
            Err(super::Unread::Special(what)) => return Ok(Err((0, what.to_string()))),
        };
        let size = bytes.len() as u64;
        if bytes.contains(&0) {
            return Ok(Err((size, "binary".into())));
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return Ok(Err((size, "binary".into())));
        };
        Ok(Ok((size, preview(&text, self.config.preview_lines))))
    }
}

/// Why a directory entry that is neither a file nor a folder is left out.
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "not a regular file (a FIFO)"
    } else if kind.is_char_device() || kind.is_block_device() {
        "not a regular file (a device)"
    } else if kind.is_socket() {
        "not a regular file (a socket)"
    } else {
        "not a regular file"
    }
}

/// The first and last `n` lines; the whole text when it is short.
pub fn preview(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 2 * n {
        return lines.join("\n");
    }
    format!(
        "{}\n...\n{}",
        lines[..n].join("\n"),
        lines[lines.len() - n..].join("\n")
    )
}

#[illumo_engine::async_trait]
impl Node for WorkspaceInspector {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let root = workspace_root(cx.ctx, self.config.default_root.as_deref(), &self.base_dir)
            .map_err(NodeError::fatal)?;
        let selected = cx
            .ctx
            .pointer("/request/target_files")
            .and_then(Value::as_array)
            .map(|files| {
                files
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.trim_start_matches("./").to_string())
                    .collect::<Vec<_>>()
            });
        let walker = Walker {
            config: self.config.clone(),
        };
        let illumo_flow = self.illumo_flow;
        let targets: Vec<String> = match cx.ctx.pointer("/request/target_files") {
            Some(Value::String(one)) if illumo_flow => vec![one.clone()],
            _ => selected.clone().unwrap_or_default(),
        };
        let walk = tokio::task::spawn_blocking(move || {
            let mut walk = Walk::default();
            match illumo_flow {
                true => walker.walk_illumo_flow(&root, &targets, &mut walk),
                false => walker.walk(&root, &root, &selected, &mut walk),
            }
            (walk, root)
        })
        .await;
        let (walk, root) = walk.map_err(|e| NodeError::fatal(format!("the walk failed: {e}")))?;
        // A file left out for its size gets a warning each, as the design asks.
        for entry in &walk.excluded {
            let Some(size) = entry.get("size") else {
                continue;
            };
            if entry["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("larger than") || r == "preview-unavailable")
            {
                let mut attributes = serde_json::Map::new();
                attributes.insert("path".into(), entry["path"].clone());
                attributes.insert("size".into(), size.clone());
                attributes.insert("max_bytes".into(), json!(self.config.max_bytes));
                cx.warn("workspace.file_too_large", attributes);
            }
        }
        if self.illumo_flow {
            return Ok(super::request_default(cx.ctx, self.as_illumo_flow(walk)));
        }
        let output = json!({"root": root.display().to_string(), "files": walk.files.len(), "excluded": walk.excluded.len()});
        Ok(Outcome::value(output)
            .with_write(self.structure.clone(), Value::Array(walk.files))
            .with_write(self.excluded.clone(), Value::Array(walk.excluded)))
    }

    fn reads(&self) -> Reads {
        let mut paths = root_reads();
        paths.push(vec![
            Step::Key("request".into()),
            Step::Key("target_files".into()),
        ]);
        Reads {
            paths,
            ..Reads::default()
        }
    }
}

impl WorkspaceInspector {
    /// What WorkspaceInspectorNode leaves: `ctx.workspace.structure` and
    /// `structure_excluded` (`{path, reason}` each), and output `{structure, excluded}`; a
    /// setting that names another place (`output_path`, `excluded_path`) gets the same.
    fn as_illumo_flow(&self, walk: Walk) -> Outcome {
        let excluded: Vec<Value> = walk
            .excluded
            .into_iter()
            .map(|e| json!({"path": e["path"], "reason": e["reason"]}))
            .collect();
        let (structure, excluded) = (Value::Array(walk.files), Value::Array(excluded));
        let outcome = Outcome::value(json!({"structure": structure, "excluded": excluded}));
        let outcome = super::at_both(outcome, &self.structure, paths::STRUCTURE, &structure);
        super::at_both(outcome, &self.excluded, paths::EXCLUDED, &excluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_keep_the_ends_of_long_files() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        assert_eq!(preview(&text, 2), "line 1\nline 2\n...\nline 29\nline 30");
        assert_eq!(preview("a\nb\nc\n", 2), "a\nb\nc");
    }
}
