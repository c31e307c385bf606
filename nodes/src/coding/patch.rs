//! `Patch`: applies a unified diff to the workspace, virtually, all or nothing. Files on
//! disk change only when the run allows it (`illumo run --write`, a run option that no
//! ctx value can set), all of them or none, and never outside the root.

use super::commit::{commit, FileChange};
use super::{glob_match, root_reads, workspace_root};
use crate::paths;
use diffy::patch_set::{FileOperation, ParseOptions, PatchSet};
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the workspace, unless ctx.request.target_root names one
    #[schemars(extend("x-kind" = "path"))]
    default_root: Option<String>,
    /// the only paths a diff may touch (default: anything under the root)
    #[schemars(extend("x-kind" = "globs"))]
    allowed_paths: Option<Vec<String>>,
    /// the diff to apply (default $ctx.diff.proposed)
    #[schemars(extend("x-kind" = "$ctx path"))]
    diff_path: Option<String>,
    /// what happened (default $ctx.diff.applied)
    #[schemars(extend("x-kind" = "$ctx path"))]
    applied_path: Option<String>,
    /// original and patched contents (default $ctx.workspace.files)
    #[schemars(extend("x-kind" = "$ctx path"))]
    files_path: Option<String>,
    /// the inspector's file list, to report the files the diff leaves alone (default $ctx.workspace.structure)
    #[schemars(extend("x-kind" = "$ctx path"))]
    structure_path: Option<String>,
    /// false: never write, even with --write (a loop's trial patch); default true
    #[serde(default = "yes")]
    #[schemars(extend("x-kind" = "bool"))]
    write: bool,
    /// with --write, ask a person before writing (true, or a $ctx path that holds a bool): on a terminal inline, else the run pauses until `illumo resume --input approve|reject`
    #[schemars(extend("x-kind" = "bool|$ctx path"))]
    confirm_write: Option<Value>,
}

fn yes() -> bool {
    true
}

/// When `Patch` asks before writing.
enum Confirm {
    Never,
    Always,
    /// When this ctx value is true.
    When(CtxPath),
}

pub struct Patch {
    default_root: Option<String>,
    allowed: Vec<String>,
    base_dir: PathBuf,
    diff: CtxPath,
    applied: CtxPath,
    files: CtxPath,
    /// The inspector's file list, to report the files the diff left alone.
    structure: CtxPath,
    write: bool,
    confirm: Confirm,
    /// An illumo-flow flow: ctx and the output take PatchNode's shapes.
    illumo_flow: bool,
}

pub struct PatchFactory;

impl NodeFactory for PatchFactory {
    fn type_name(&self) -> &'static str {
        "Patch"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.PatchNode",
            "illumo_flow.nodes.workspace.PatchNode",
        ]
    }
    fn summary(&self) -> &'static str {
        "applies a unified diff in memory, all or nothing, with path guards; writes files only with --write"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let diff = cx.ctx_path("diff_path", config.diff_path.as_deref(), paths::DIFF);
        let applied = cx.ctx_path(
            "applied_path",
            config.applied_path.as_deref(),
            paths::APPLIED,
        );
        let files = cx.ctx_path("files_path", config.files_path.as_deref(), paths::FILES);
        let structure = cx.ctx_path(
            "structure_path",
            config.structure_path.as_deref(),
            paths::STRUCTURE,
        );
        let confirm = match &config.confirm_write {
            None | Some(Value::Bool(false)) => Confirm::Never,
            Some(Value::Bool(true)) => Confirm::Always,
            Some(Value::String(path)) => {
                Confirm::When(cx.ctx_path("confirm_write", Some(path), "")?)
            }
            Some(other) => {
                cx.error(
                    cx.at(&["confirm_write"]),
                    &other.to_string(),
                    "`confirm_write` is true, false or a $ctx path, like $ctx.request.confirm_write",
                );
                return None;
            }
        };
        Some(Box::new(Patch {
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
            write: config.write,
            confirm,
            default_root: config.default_root,
            allowed: config.allowed_paths.unwrap_or_else(|| vec!["**".into()]),
            base_dir: cx.base_dir.to_path_buf(),
            diff: diff?,
            applied: applied?,
            files: files?,
            structure: structure?,
        }))
    }
}

/// Rewrites every `@@ -a,b +c,d @@` header with the counts its body really has. LLM diffs
/// often get them wrong, and a too-small count makes diffy apply nothing, silently. Empty
/// lines inside a hunk become context lines (models drop the leading space).
pub fn fix_hunk_counts(diff: &str) -> String {
    // Split on `\n` only: a CRLF file's lines keep their `\r`, or they would never match.
    let mut lines: Vec<&str> = diff.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(header) = parse_hunk_header(line.trim_end_matches('\r')) else {
            out.push(line.to_string());
            i += 1;
            continue;
        };
        let mut body: Vec<String> = Vec::new();
        let mut j = i + 1;
        while j < lines.len() {
            let l = lines[j];
            let file_header =
                l.starts_with("--- ") && lines.get(j + 1).is_some_and(|n| n.starts_with("+++ "));
            if l.starts_with("@@") || l.starts_with("diff --git") || file_header {
                break;
            }
            body.push(if l.is_empty() || l == "\r" {
                format!(" {l}")
            } else {
                l.to_string()
            });
            j += 1;
        }
        // Trailing blank lines belong to no hunk.
        while body.last().is_some_and(|l| l.trim().is_empty()) && j == lines.len() {
            body.pop();
        }
        let old = body
            .iter()
            .filter(|l| l.starts_with(' ') || l.starts_with('-'))
            .count();
        let new = body
            .iter()
            .filter(|l| l.starts_with(' ') || l.starts_with('+'))
            .count();
        let (old_start, new_start, rest) = header;
        out.push(format!("@@ -{old_start},{old} +{new_start},{new} @@{rest}"));
        out.extend(body);
        i = j;
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Puts a `diff --git a/X b/Y` line before each `--- X` / `+++ Y` pair that has none.
pub fn git_headers_for_plain_sections(text: &str) -> String {
    // Split on `\n` only: a `\r` before it belongs to the line (CRLF files keep theirs).
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 4);
    // Inside a git section's header (after `diff --git`, before its first hunk).
    let mut in_git_header = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("diff --git ") {
            in_git_header = true;
        } else if line.starts_with("@@") {
            in_git_header = false;
        } else if line.starts_with("--- ")
            && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "))
            && !in_git_header
        {
            let side = |l: &str, prefix: &str| {
                let path = l[4..].split('\t').next().unwrap_or("").trim();
                match path {
                    "/dev/null" => None,
                    p => Some(strip_side(p).to_string()),
                }
                .map(|p| format!("{prefix}/{p}"))
            };
            let old = side(line, "a");
            let new = side(lines[i + 1], "b");
            let (old, new) = match (old, new) {
                (Some(o), Some(n)) => (o, n),
                (Some(o), None) => (o.clone(), format!("b/{}", &o[2..])),
                (None, Some(n)) => (format!("a/{}", &n[2..]), n),
                (None, None) => (String::new(), String::new()),
            };
            if !old.is_empty() {
                out.push(format!("diff --git {old} {new}"));
            }
        }
        out.push(line.to_string());
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

/// `@@ -12,3 +12,4 @@ def f():` -> (12, 12, " def f():").
fn parse_hunk_header(line: &str) -> Option<(usize, usize, String)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, tail) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let start = |r: &str| r.split(',').next()?.parse::<usize>().ok();
    Some((start(old)?, start(new)?, tail.to_string()))
}

/// `a/app/x.py` -> `app/x.py`.
fn strip_side(path: &str) -> &str {
    path.strip_prefix("a/")
        .or_else(|| path.strip_prefix("b/"))
        .unwrap_or(path)
}

/// Why a path may not be patched, if it may not; else where it is.
pub fn check_path(root: &Path, path: &str, allowed: &[String]) -> Result<PathBuf, String> {
    check_path_real(root, path, allowed).map(|(target, _)| target)
}

/// Like [`check_path`], with the path as it really lands in the workspace (`./a//b` and
/// a symlinked folder resolved), which names the file whatever spelling the diff used.
pub fn check_path_real(
    root: &Path,
    path: &str,
    allowed: &[String],
) -> Result<(PathBuf, String), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let relative = Path::new(path);
    if relative.is_absolute() || path.starts_with('~') {
        return Err("absolute paths are not allowed".into());
    }
    if relative
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err("`..` would leave the workspace".into());
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the path holds a control character ({})",
            c.escape_default()
        ));
    }
    // Characters that are invisible, turn the text around, or look like `/`.
    if let Some(c) = path.chars().find(|&c| {
        matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
    }) {
        return Err(format!(
            "the path holds an invisible or direction-changing character (U+{:04X})",
            c as u32
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '∕' | '⁄' | '／' | '⧸' | '\\'))
    {
        return Err(format!(
            "the path holds `{c}`, which reads like a folder separator"
        ));
    }
    for part in path.split('/') {
        // `‥`, `…`, `．．`, `··`, `。。`: names that read as `..` but are not.
        let dotlike = !part.is_empty()
            && part.chars().all(|c| {
                matches!(
                    c,
                    '.' | '‥' | '…' | '．' | '․' | '﹒' | '·' | '。' | '｡' | '٠' | '۰'
                )
            })
            && part != ".";
        if dotlike && part != ".." {
            return Err(format!("`{part}` looks like `..`; such names are refused"));
        }
        // `x.py ` and `.git.`: some systems and tools drop the end, and then the name is
        // another one.
        if part.len() > 1 && (part.ends_with(' ') || part.ends_with('.')) && part != ".." {
            return Err(format!(
                "`{part}` ends with a space or a dot; such names are refused"
            ));
        }
    }
    // Git's own files (hooks run code) only when allowed_paths names `.git` itself.
    let git_allowed = allowed
        .iter()
        .any(|g| g.split('/').any(|s| s.eq_ignore_ascii_case(".git")));
    let in_git = |p: &str| p.split('/').any(|c| c.eq_ignore_ascii_case(".git"));
    if in_git(path) && !git_allowed {
        return Err("paths inside `.git/` are refused unless allowed_paths names `.git`".into());
    }
    let outside = |p: &str| !allowed.iter().any(|g| glob_match(g, p));
    if outside(path) {
        return Err(format!("outside allowed_paths ({})", allowed.join(", ")));
    }
    // Every part that exists must stay inside the root once symlinks are followed.
    let root = root
        .canonicalize()
        .map_err(|e| format!("the workspace cannot be read: {e}"))?;
    let mut here = root.clone();
    for part in relative.components() {
        here.push(part);
        if here.symlink_metadata().is_ok() {
            let real = here
                .canonicalize()
                .map_err(|e| format!("cannot follow `{}`: {e}", here.display()))?;
            if !real.starts_with(&root) {
                return Err(format!(
                    "`{}` is a symlink that leads outside the workspace",
                    here.strip_prefix(&root).unwrap_or(&here).display()
                ));
            }
        }
    }
    // Through a symlink inside the workspace a path may land elsewhere in it: the place
    // it really lands must be allowed too.
    let target = root.join(relative);
    let real = match target.canonicalize() {
        Ok(real) => real,
        Err(_) => match (
            target.parent().and_then(|p| p.canonicalize().ok()),
            target.file_name(),
        ) {
            (Some(parent), Some(name)) => parent.join(name),
            _ => target.clone(),
        },
    };
    let real_relative = real
        .strip_prefix(&root)
        .unwrap_or(relative)
        .to_string_lossy()
        .replace('\\', "/");
    if in_git(&real_relative) && !git_allowed {
        return Err(format!(
            "leads through a symlink to `{real_relative}`, inside `.git/`; refused unless allowed_paths names `.git`"
        ));
    }
    if real_relative != path && outside(&real_relative) {
        return Err(format!(
            "leads through a symlink to `{real_relative}`, outside allowed_paths ({})",
            allowed.join(", ")
        ));
    }
    Ok((target, real_relative))
}

/// The contents files had before this run patched them: path -> text (`None`: the file
/// did not exist).
type Originals = std::collections::BTreeMap<String, Option<String>>;

fn originals(files: Option<&Value>) -> Originals {
    let mut map = Originals::new();
    for file in files.and_then(Value::as_array).into_iter().flatten() {
        let (Some(path), Some(status)) = (
            file.get("path").and_then(Value::as_str),
            file.get("status").and_then(Value::as_str),
        ) else {
            continue;
        };
        if status == "original" {
            continue;
        }
        let text = if status == "created" {
            None
        } else {
            file.get("original_content")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        map.insert(path.to_string(), text);
    }
    map
}

/// One file the diff changes, checked and patched in memory.
struct Change {
    path: String,
    target: PathBuf,
    original: String,
    patched: Option<String>,
    status: &'static str,
}

impl Patch {
    /// Every file of the diff, guarded and patched in memory; nothing is applied unless
    /// all of it applies. A diff applies to the files as they were before any patch of
    /// this run (`originals`, from `ctx.workspace.files`), else as they are on disk.
    fn plan(
        &self,
        root: &Path,
        diff: &str,
        originals: &Originals,
    ) -> Result<Vec<Change>, (String, Vec<Value>)> {
        let fixed = fix_hunk_counts(diff);
        // A plain `---`/`+++` section after a `diff --git` one would be skipped by the git
        // parser: give it a git header too, so every section is applied or rejected.
        let fixed = if fixed.contains("diff --git") {
            git_headers_for_plain_sections(&fixed)
        } else {
            fixed
        };
        let opts = if fixed.contains("diff --git") {
            ParseOptions::gitdiff()
        } else {
            ParseOptions::unidiff()
        };
        let mut changes = Vec::new();
        let mut rejected = Vec::new();
        for patch in PatchSet::parse(&fixed, opts) {
            let patch = patch.map_err(|e| (format!("the diff does not parse: {e}"), vec![]))?;
            let (path, status) = match patch.operation() {
                FileOperation::Modify { original, modified } => {
                    if strip_side(original) != strip_side(modified) {
                        rejected.push(json!({"path": strip_side(modified), "reason": "renames are not supported"}));
                        continue;
                    }
                    (strip_side(modified).to_string(), "patched")
                }
                FileOperation::Create(path) => (strip_side(path).to_string(), "created"),
                FileOperation::Delete(path) => (strip_side(path).to_string(), "deleted"),
                _ => {
                    rejected.push(
                        json!({"path": "", "reason": "renames and copies are not supported"}),
                    );
                    continue;
                }
            };
            // From here the file goes by where it really is: `./app//x.py` and `app/x.py`
            // are one file.
            let (target, path) = match check_path_real(root, &path, &self.allowed) {
                Ok(found) => found,
                Err(reason) => {
                    rejected.push(json!({"path": path, "reason": reason}));
                    continue;
                }
            };
            // A second section for a file already in this diff applies on top of the first.
            let earlier = changes.iter().position(|c: &Change| c.path == path);
            let remembered = originals.get(&path);
            let original = if let Some(i) = earlier {
                changes[i].patched.clone().unwrap_or_default()
            } else if let Some(Some(text)) = remembered {
                text.clone()
            } else if status == "created" {
                if target.exists() && remembered.is_none() {
                    rejected.push(json!({"path": path, "reason": "the diff creates a file that already exists"}));
                    continue;
                }
                String::new()
            } else {
                match super::read_text(&target) {
                    Ok(text) => text,
                    Err(why) => {
                        rejected.push(
                            json!({"path": path, "reason": format!("cannot read it: {why}")}),
                        );
                        continue;
                    }
                }
            };
            let Some(text_patch) = patch.patch().as_text() else {
                rejected.push(json!({"path": path, "reason": "binary patches are not supported"}));
                continue;
            };
            let patched = match diffy::apply(&original, text_patch) {
                Ok(p) => p,
                Err(e) => {
                    rejected.push(
                        json!({"path": path, "reason": format!("the hunks do not apply: {e}")}),
                    );
                    continue;
                }
            };
            if status == "patched" && patched == original {
                rejected
                    .push(json!({"path": path, "reason": "the diff applies but changes nothing"}));
                continue;
            }
            if status == "deleted" && !patched.is_empty() {
                rejected.push(json!({"path": path, "reason": "the diff deletes the file but does not remove all its lines"}));
                continue;
            }
            let patched = (status != "deleted").then_some(patched);
            match earlier {
                Some(i) => changes[i].patched = patched,
                None => changes.push(Change {
                    path,
                    target,
                    original,
                    patched,
                    status,
                }),
            }
        }
        if !rejected.is_empty() {
            return Err(rejection(rejected));
        }
        if changes.is_empty() {
            return Err(("the diff changes no file".into(), vec![]));
        }
        Ok(changes)
    }
}

/// `ctx.request.target_files` (a list, or one path), `./` taken off.
fn target_files(ctx: &Value) -> Vec<String> {
    let clean = |s: &str| s.trim_start_matches("./").to_string();
    match ctx.pointer("/request/target_files") {
        Some(Value::String(s)) => vec![clean(s)],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(clean).collect(),
        _ => Vec::new(),
    }
}

/// When the request names its target files, a diff may change only those.
fn only_targets(
    changes: Vec<Change>,
    targets: &[String],
) -> Result<Vec<Change>, (String, Vec<Value>)> {
    if targets.is_empty() {
        return Ok(changes);
    }
    let rejected: Vec<Value> = changes
        .iter()
        .filter(|c| !targets.contains(&c.path))
        .map(|c| json!({"path": c.path, "reason": format!("not one of ctx.request.target_files ({})", targets.join(", "))}))
        .collect();
    if rejected.is_empty() {
        return Ok(changes);
    }
    Err(rejection(rejected))
}

/// The error of a diff with rejected sections: how many, and the first one's reason.
fn rejection(rejected: Vec<Value>) -> (String, Vec<Value>) {
    let n = rejected.len();
    let why = format!(
        "the diff was not applied: {} rejected (`{}`: {})",
        if n == 1 {
            "1 file".to_string()
        } else {
            format!("{n} files")
        },
        // A path may hold a newline: the message stays on one line.
        rejected[0]["path"].as_str().unwrap_or("").escape_debug(),
        rejected[0]["reason"].as_str().unwrap_or("")
    );
    (why, rejected)
}

impl Patch {
    fn confirms(&self, ctx: &Value) -> bool {
        match &self.confirm {
            Confirm::Never => false,
            Confirm::Always => true,
            Confirm::When(path) => path.get(ctx).and_then(Value::as_bool) == Some(true),
        }
    }
}

/// What a person is asked before the files are written: which files, and the diff.
fn confirm_message(root: &Path, diff: &str, changes: &[Change]) -> String {
    let files: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    format!(
        "write {} under {}: {}?\n{}",
        match files.len() {
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        },
        root.display(),
        files.join(", "),
        diff.trim_end()
    )
}

impl Patch {
    /// What illumo-flow's PatchNode leaves: `ctx.workspace.files` as it was, with each
    /// changed file's entry (found by path, else added) given its contents and status;
    /// `ctx.diff.applied` the `{path, status}` list; output `{files, applied}`. A setting
    /// that names another place (`output_path`, `summary_path`) gets the same value too.
    fn as_illumo_flow(&self, ctx: &Value, changes: &[Change]) -> Outcome {
        let mut files: Vec<Value> = match self.files.get(ctx) {
            Some(Value::Array(items)) => items.iter().filter(|i| i.is_object()).cloned().collect(),
            _ => Vec::new(),
        };
        let mut applied = Vec::new();
        for c in changes {
            let status = match c.status {
                "created" => "added",
                other => other,
            };
            let at = match files.iter().position(|f| f["path"] == c.path.as_str()) {
                Some(at) => at,
                None => {
                    files.push(json!({"path": c.path}));
                    files.len() - 1
                }
            };
            let entry = &mut files[at];
            entry["original_content"] = json!(c.original);
            entry["patched_content"] = json!(c.patched.clone().unwrap_or_default());
            entry["status"] = json!(status);
            applied.push(json!({"path": c.path, "status": status}));
        }
        let (files, applied) = (Value::Array(files), Value::Array(applied));
        let outcome = Outcome::value(json!({"files": files, "applied": applied}));
        let outcome = super::at_both(outcome, &self.files, paths::FILES, &files);
        super::at_both(outcome, &self.applied, paths::APPLIED, &applied)
    }
}

#[illumo_engine::async_trait]
impl Node for Patch {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let root = workspace_root(cx.ctx, self.default_root.as_deref(), &self.base_dir)
            .map_err(NodeError::fatal)?;
        let Some(diff) = self.diff.get(cx.ctx).and_then(Value::as_str) else {
            return Err(NodeError::fatal(format!(
                "there is no diff at `{}`",
                self.diff
            )));
        };
        let originals = originals(self.files.get(cx.ctx));
        let targets = target_files(cx.ctx);
        let changes = match self
            .plan(&root, diff, &originals)
            .and_then(|changes| only_targets(changes, &targets))
        {
            Ok(c) => c,
            Err((why, rejected)) => {
                let applied = json!({"ok": false, "error": why, "rejected": rejected, "files": [], "written": false});
                return Err(NodeError::retryable(why).with_write(self.applied.clone(), applied));
            }
        };
        // Only `--write` allows it; nothing in ctx can (ctx may only ask for a question).
        let mut write = cx.permissions.write_files && self.write;
        if !cx.permissions.write_files
            && cx.ctx.pointer("/request/write") == Some(&Value::Bool(true))
        {
            // illumo-flow's coding assistant writes when ctx.request.write is true; here
            // ctx cannot grant that, so say why nothing is written.
            let mut note = serde_json::Map::new();
            note.insert(
                "message".into(),
                json!("ctx.request.write is true, but only `--write` lets Patch change files: this run is a dry run"),
            );
            cx.warn("patch.write_not_allowed", note);
        }
        let mut declined = false;
        if write && self.confirms(cx.ctx) {
            let question = crate::approval::Question::approve_or_reject();
            let message = confirm_message(&root, diff, &changes);
            let answer = match cx.answer {
                Some(answer) => Some(answer.clone()),
                None if cx.permissions.ask => {
                    let shown = cx.preview(&Value::String(message.clone()), usize::MAX);
                    question.ask(cx.id, &shown).await
                }
                None => None,
            };
            match answer {
                Some(answer) => {
                    declined = answer["choice"] != "approve";
                    write = !declined;
                }
                None => return Err(NodeError::paused(message)),
            }
        }
        if write {
            let mut writes: Vec<FileChange> = changes
                .iter()
                .map(|c| FileChange {
                    path: c.path.clone(),
                    target: c.target.clone(),
                    content: c.patched.clone(),
                })
                .collect();
            // A file an earlier draft changed and this one leaves alone goes back to how it was.
            for (path, original) in originals
                .iter()
                .filter(|(p, _)| !changes.iter().any(|c| &&c.path == p))
            {
                let Ok(target) = check_path(&root, path, &self.allowed) else {
                    continue;
                };
                if super::read_text(&target).ok().as_ref() != original.as_ref() {
                    writes.push(FileChange {
                        path: path.clone(),
                        target,
                        content: original.clone(),
                    });
                }
            }
            commit(&writes).map_err(NodeError::fatal)?;
        }
        if self.illumo_flow {
            return Ok(super::request_default(
                cx.ctx,
                self.as_illumo_flow(cx.ctx, &changes),
            ));
        }
        // Every file the inspector listed, patched or as it was.
        let mut files: Vec<Value> = changes
            .iter()
            .map(|c| json!({"path": c.path, "original_content": c.original, "patched_content": c.patched, "status": c.status}))
            .collect();
        if let Some(Value::Array(listed)) = self.structure.get(cx.ctx) {
            for item in listed {
                let Some(path) = item.get("path").and_then(Value::as_str) else {
                    continue;
                };
                if changes.iter().any(|c| c.path == path) {
                    continue;
                }
                if let Ok(text) = super::read_text(&root.join(path)) {
                    files.push(json!({"path": path, "original_content": text, "patched_content": text, "status": "original"}));
                }
            }
        }
        let summary: Vec<Value> = changes
            .iter()
            .map(|c| json!({"path": c.path, "status": c.status}))
            .collect();
        let mut applied = json!({"ok": true, "files": summary, "rejected": [], "written": write});
        if declined {
            applied["declined"] = json!(true);
        }
        Ok(Outcome::value(applied.clone())
            .with_write(self.applied.clone(), applied)
            .with_write(self.files.clone(), Value::Array(files)))
    }

    fn check_answer(&self, answer: &Value) -> Option<Result<Value, String>> {
        match self.confirm {
            Confirm::Never => None,
            _ => Some(crate::approval::Question::approve_or_reject().check(answer)),
        }
    }

    fn reads(&self) -> Reads {
        let mut paths = root_reads();
        if let Confirm::When(path) = &self.confirm {
            paths.push(path.steps.clone());
        }
        paths.push(vec![
            illumo_engine::path::Step::Key("request".into()),
            illumo_engine::path::Step::Key("target_files".into()),
        ]);
        paths.push(self.diff.steps.clone());
        paths.push(self.structure.steps.clone());
        paths.push(self.files.steps.clone());
        Reads {
            paths,
            ..Reads::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (super::super::TempTree, PathBuf) {
        let tree = super::super::TempTree::new("patch-test").unwrap();
        let root = tree.0.join("ws");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(
            root.join("app/calc.py"),
            "def add(a, b):\n    return a - b\n",
        )
        .unwrap();
        std::fs::write(
            root.join("app/text.py"),
            "def slug(t):\n    return t.replace(' ', '_')\n",
        )
        .unwrap();
        (tree, root)
    }

    fn patcher(allowed: &[&str]) -> Patch {
        Patch {
            illumo_flow: false,
            default_root: None,
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            base_dir: PathBuf::from("."),
            diff: CtxPath::parse(paths::DIFF).unwrap(),
            applied: CtxPath::parse(paths::APPLIED).unwrap(),
            files: CtxPath::parse(paths::FILES).unwrap(),
            structure: CtxPath::parse(paths::STRUCTURE).unwrap(),
            write: true,
            confirm: Confirm::Never,
        }
    }

    const FIX_ADD: &str = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

    fn reasons(result: Result<Vec<Change>, (String, Vec<Value>)>) -> Vec<String> {
        match result {
            Ok(_) => vec!["ok".into()],
            Err((why, rejected)) if rejected.is_empty() => vec![why],
            Err((_, rejected)) => rejected
                .iter()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r["path"].as_str().unwrap(),
                        r["reason"].as_str().unwrap()
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn hunk_counts_are_recomputed_from_the_body() {
        let wrong = "--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@ fn\n a\n-b\n+c\n\n d\n";
        assert_eq!(
            fix_hunk_counts(wrong),
            "--- a/x\n+++ b/x\n@@ -1,4 +1,4 @@ fn\n a\n-b\n+c\n \n d\n"
        );
    }

    #[test]
    fn a_diff_with_wrong_counts_still_applies() {
        let (_tree, root) = workspace();
        let wrong = FIX_ADD.replace("@@ -1,2 +1,2 @@", "@@ -1,1 +1,1 @@");
        let changes = patcher(&["app/**/*.py"])
            .plan(&root, &wrong, &Originals::new())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(
            changes[0].patched.as_deref(),
            Some("def add(a, b):\n    return a + b\n")
        );
    }

    #[test]
    fn names_that_read_as_something_else_are_refused() {
        let (_tree, root) = workspace();
        let all = ["**".to_string()];
        let why = |p: &str| check_path(&root, p, &all).unwrap_err();
        assert_eq!(
            why("﹒﹒/x.py"),
            "`﹒﹒` looks like `..`; such names are refused"
        );
        assert_eq!(
            why("··/x.py"),
            "`··` looks like `..`; such names are refused"
        );
        assert_eq!(
            why("。。/x.py"),
            "`。。` looks like `..`; such names are refused"
        );
        assert_eq!(
            why("..∕x.py"),
            "the path holds `∕`, which reads like a folder separator"
        );
        assert_eq!(
            why("app/\u{202e}yp.x"),
            "the path holds an invisible or direction-changing character (U+202E)"
        );
        assert_eq!(
            why(".g\u{200c}it/config"),
            "the path holds an invisible or direction-changing character (U+200C)"
        );
        assert_eq!(
            why("app/x.py "),
            "`x.py ` ends with a space or a dot; such names are refused"
        );
        assert_eq!(
            why(".git./config"),
            "`.git.` ends with a space or a dot; such names are refused"
        );
        assert!(check_path(&root, "app/new_file.py", &all).is_ok());
    }

    #[test]
    fn every_path_guard_rejects_with_a_reason() {
        let (_tree, root) = workspace();
        std::os::unix::fs::symlink("/etc", root.join("app/escape")).unwrap();
        let p = patcher(&["app/**"]);
        let diff = |path: &str| format!("--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x\n+y\n");
        assert_eq!(
            reasons(p.plan(&root, &diff("../outside.py"), &Originals::new())),
            ["../outside.py: `..` would leave the workspace"]
        );
        assert_eq!(
            reasons(p.plan(
                &root,
                "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
                &Originals::new()
            )),
            ["/etc/passwd: absolute paths are not allowed"]
        );
        assert_eq!(
            reasons(p.plan(&root, &diff("tests/test_x.py"), &Originals::new())),
            ["tests/test_x.py: outside allowed_paths (app/**)"]
        );
        assert_eq!(
            reasons(p.plan(&root, &diff("app/escape/passwd"), &Originals::new())),
            ["app/escape/passwd: `app/escape` is a symlink that leads outside the workspace"]
        );
    }

    #[test]
    fn nothing_is_applied_unless_everything_applies() {
        let (_tree, root) = workspace();
        let bad_second = format!("{FIX_ADD}--- a/app/text.py\n+++ b/app/text.py\n@@ -1,2 +1,2 @@\n def slug(t):\n-    return t.nothing_like_this\n+    return t\n");
        let result = patcher(&["**"]).plan(&root, &bad_second, &Originals::new());
        let (why, rejected) = result.err().unwrap();
        assert_eq!(why, "the diff was not applied: 1 file rejected (`app/text.py`: the hunks do not apply: error applying hunk #1)");
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            std::fs::read_to_string(root.join("app/calc.py")).unwrap(),
            "def add(a, b):\n    return a - b\n"
        );
    }

    #[test]
    fn a_diff_that_changes_nothing_is_an_error() {
        let (_tree, root) = workspace();
        let noop = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a - b\n";
        assert_eq!(
            reasons(patcher(&["**"]).plan(&root, noop, &Originals::new())),
            ["app/calc.py: the diff applies but changes nothing"]
        );
    }

    #[test]
    fn new_files_and_git_style_diffs_work() {
        let (_tree, root) = workspace();
        let create = "diff --git a/app/new.py b/app/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/app/new.py\n@@ -0,0 +1 @@\n+X = 1\n";
        let changes = patcher(&["**"])
            .plan(&root, create, &Originals::new())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(
            (
                changes[0].path.as_str(),
                changes[0].status,
                changes[0].patched.as_deref()
            ),
            ("app/new.py", "created", Some("X = 1\n"))
        );
    }

    #[test]
    fn atomic_writes_leave_no_temp_file() {
        let (_tree, root) = workspace();
        let change = FileChange {
            path: "app/calc.py".into(),
            target: root.join("app/calc.py"),
            content: Some("new\n".into()),
        };
        commit(&[change]).unwrap();
        let names: Vec<String> = std::fs::read_dir(root.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names.iter().filter(|n| n.contains("illumo-tmp")).count(), 0);
        assert_eq!(
            std::fs::read_to_string(root.join("app/calc.py")).unwrap(),
            "new\n"
        );
    }

    #[test]
    fn two_sections_for_one_file_apply_one_after_the_other() {
        let (_tree, root) = workspace();
        std::fs::write(
            root.join("app/calc.py"),
            "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a + b\n",
        )
        .unwrap();
        let diff = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n--- a/app/calc.py\n+++ b/app/calc.py\n@@ -5,2 +5,2 @@\n def sub(a, b):\n-    return a + b\n+    return a - b\n";
        let changes = patcher(&["**"])
            .plan(&root, diff, &Originals::new())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].patched.as_deref(),
            Some("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
        );
    }

    #[test]
    fn a_delete_that_leaves_lines_is_rejected() {
        let (_tree, root) = workspace();
        let partial = "--- a/app/calc.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def add(a, b):\n";
        assert_eq!(
            reasons(patcher(&["**"]).plan(&root, partial, &Originals::new())),
            ["app/calc.py: the diff deletes the file but does not remove all its lines"]
        );
        let whole = "--- a/app/calc.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def add(a, b):\n-    return a - b\n";
        let changes = patcher(&["**"])
            .plan(&root, whole, &Originals::new())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(
            (changes[0].status, changes[0].patched.clone()),
            ("deleted", None)
        );
    }

    #[test]
    fn allowed_paths_hold_through_symlinks_inside_the_workspace() {
        let (_tree, root) = workspace();
        std::fs::create_dir_all(root.join("tests")).unwrap();
        std::fs::write(root.join("tests/test_x.py"), "x\n").unwrap();
        std::os::unix::fs::symlink("../tests", root.join("app/t")).unwrap();
        let diff = "--- a/app/t/test_x.py\n+++ b/app/t/test_x.py\n@@ -1 +1 @@\n-x\n+y\n";
        assert_eq!(
            reasons(patcher(&["app/**"]).plan(&root, diff, &Originals::new())),
            ["app/t/test_x.py: leads through a symlink to `tests/test_x.py`, outside allowed_paths (app/**)"]
        );
    }

    #[test]
    fn crlf_files_patch() {
        let (_tree, root) = workspace();
        std::fs::write(
            root.join("app/calc.py"),
            "def add(a, b):\r\n    return a - b\r\n",
        )
        .unwrap();
        let diff = "--- a/app/calc.py\r\n+++ b/app/calc.py\r\n@@ -1,2 +1,2 @@\r\n def add(a, b):\r\n-    return a - b\r\n+    return a + b\r\n";
        let changes = patcher(&["**"])
            .plan(&root, diff, &Originals::new())
            .map_err(|e| e.0)
            .unwrap();
        assert_eq!(
            changes[0].patched.as_deref(),
            Some("def add(a, b):\r\n    return a + b\r\n")
        );
    }
}
