//! `illumo validate`: every problem of one or many flow files, as a compiler prints them
//! or as JSON for editors and CI.

use crate::cli::{ValidateArgs, ValidateFormat};
use crate::{inputs, EXIT_USAGE};
use illumo_engine::diagnostic::{plural, Diagnostic, Severity};
use illumo_engine::{Flow, LoadError, NodeRegistry, Source};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// One file to check, and whether a pattern found it (then a non-flow is skipped).
struct Target {
    path: String,
    from_pattern: bool,
}

fn is_pattern(arg: &str) -> bool {
    arg.contains(['*', '?'])
}

/// The files a pattern names, sorted: the folders before the first wildcard are walked.
fn expand(pattern: &str) -> Vec<String> {
    let parts: Vec<&str> = pattern.split('/').collect();
    let fixed = parts.iter().take_while(|p| !is_pattern(p)).count();
    let base: PathBuf = match parts[..fixed].join("/") {
        b if b.is_empty() => PathBuf::from("."),
        b => PathBuf::from(b),
    };
    let rest = parts[fixed..].join("/");
    let mut found = Vec::new();
    walk(&base, &base, &rest, &mut found, 0);
    found.sort();
    found
}

fn walk(base: &Path, dir: &Path, pattern: &str, found: &mut Vec<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let name = entry.file_name();
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                walk(base, &path, pattern, found, depth + 1);
            }
        } else if kind.is_file() {
            let relative = path.strip_prefix(base).unwrap_or(&path);
            if illumo_nodes::coding::glob_match(pattern, &relative.to_string_lossy()) {
                let shown = if base == Path::new(".") {
                    relative.to_path_buf()
                } else {
                    path.clone()
                };
                found.push(shown.display().to_string());
            }
        }
    }
}

/// What checking one file gave.
enum Checked {
    Loaded(Box<Flow>),
    Invalid(Source, Vec<Diagnostic>),
    /// Not readable: the message.
    Unread(String),
    /// A pattern found a file that is not a flow.
    Skipped,
}

fn check(target: &Target, registry: &NodeRegistry) -> Checked {
    let path = &target.path;
    let text = match std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|file| inputs::read_limited(file, "the flow file", &format!("`{path}`")))
    {
        Ok(text) => text,
        Err(e) if e.starts_with("the flow file: ") => return Checked::Unread(e),
        Err(e) => return Checked::Unread(format!("cannot read flow file `{path}`: {e}")),
    };
    let flow_like = text
        .lines()
        .any(|l| l.starts_with("flow:") || l.starts_with("steps:"));
    if target.from_pattern && !flow_like {
        return Checked::Skipped;
    }
    match crate::load_text(path, text, registry, None) {
        Ok(flow) => Checked::Loaded(Box::new(flow)),
        Err(LoadError {
            source,
            diagnostics,
        }) => Checked::Invalid(source, diagnostics),
    }
}

fn diagnostic_json(file: &str, source: &Source, d: &Diagnostic) -> Value {
    let (line, column) = match source.position(d) {
        Some((l, c)) => (json!(l), json!(c)),
        None => (Value::Null, Value::Null),
    };
    json!({
        "file": file,
        "line": line,
        "column": column,
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "message": d.message,
        "label": d.label,
        "hint": d.help,
    })
}

pub fn run(args: &ValidateArgs, registry: &NodeRegistry) -> i32 {
    let mut targets = Vec::new();
    for arg in &args.flows {
        if is_pattern(arg) {
            let found = expand(arg);
            if found.is_empty() {
                eprintln!("error: no file matches `{arg}`");
                return EXIT_USAGE;
            }
            targets.extend(found.into_iter().map(|path| Target {
                path,
                from_pattern: true,
            }));
        } else {
            targets.push(Target {
                path: arg.clone(),
                from_pattern: false,
            });
        }
    }
    let color = crate::stderr_color();
    let (mut errors, mut warnings, mut checked) = (0usize, 0usize, 0usize);
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    for target in &targets {
        let file = target.path.as_str();
        match check(target, registry) {
            Checked::Skipped => {
                if args.format == ValidateFormat::Text {
                    eprintln!("skipped: {file} is not a flow file (no `flow:` key)");
                }
                files.push(json!({"file": file, "status": "skipped"}));
            }
            Checked::Unread(message) => {
                checked += 1;
                errors += 1;
                if args.format == ValidateFormat::Text {
                    eprintln!("error: {message}");
                }
                diagnostics.push(json!({"file": file, "line": null, "column": null, "severity": "error", "message": message, "label": null, "hint": null}));
                files.push(json!({"file": file, "status": "error"}));
            }
            Checked::Invalid(source, found) => {
                checked += 1;
                let e = found.iter().filter(|d| d.is_error()).count();
                errors += e;
                warnings += found.len() - e;
                match args.format {
                    ValidateFormat::Text => eprint!("{}", source.render_all(&found, color)),
                    ValidateFormat::Json => {
                        let mut rows: Vec<Value> = found
                            .iter()
                            .map(|d| diagnostic_json(file, &source, d))
                            .collect();
                        // In file order, as the text is.
                        rows.sort_by_key(|r| {
                            (
                                r["line"].as_u64().unwrap_or(0),
                                r["column"].as_u64().unwrap_or(0),
                            )
                        });
                        diagnostics.extend(rows);
                    }
                }
                files.push(json!({"file": file, "status": "error"}));
            }
            Checked::Loaded(flow) => {
                checked += 1;
                warnings += flow.warnings.len();
                let edges: usize = flow.edges.iter().map(Vec::len).sum();
                match args.format {
                    ValidateFormat::Text => {
                        if !flow.warnings.is_empty() {
                            eprint!("{}", flow.source.render_all(&flow.warnings, color));
                        }
                        let extra = match flow.warnings.len() {
                            0 => String::new(),
                            n => format!(", {}", plural(n, "warning")),
                        };
                        println!(
                            "ok: `{}` in {file} ({}, {}{extra})",
                            flow.name,
                            plural(flow.nodes.len(), "node"),
                            plural(edges, "edge")
                        );
                    }
                    ValidateFormat::Json => diagnostics.extend(
                        flow.warnings
                            .iter()
                            .map(|d| diagnostic_json(file, &flow.source, d)),
                    ),
                }
                let status = if flow.warnings.is_empty() {
                    "ok"
                } else {
                    "warnings"
                };
                files.push(json!({"file": file, "status": status, "flow": flow.name, "nodes": flow.nodes.len()}));
                crate::leak_at_exit(flow);
            }
        }
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    match args.format {
        ValidateFormat::Json => println!(
            "{}",
            json!({"ok": !failed, "files": files, "errors": errors, "warnings": warnings, "diagnostics": diagnostics})
        ),
        ValidateFormat::Text if targets.len() > 1 || (args.deny_warnings && warnings > 0) => {
            let verdict = if failed { "failed" } else { "ok" };
            eprintln!(
                "{verdict}: {} checked, {}, {}{}",
                plural(checked, "file"),
                plural(errors, "error"),
                plural(warnings, "warning"),
                if args.deny_warnings && warnings > 0 {
                    " (warnings denied)"
                } else {
                    ""
                }
            );
        }
        ValidateFormat::Text => {}
    }
    if failed {
        EXIT_USAGE
    } else {
        0
    }
}
