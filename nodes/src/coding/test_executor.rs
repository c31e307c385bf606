//! `TestExecutor`: runs the tests against the patched workspace. The root is copied to a
//! temporary folder with the patched files laid over it, so the real files stay as they
//! are and the tests still see the fix. argv only (no shell), allow-listed programs, and
//! the whole process group dies on timeout.

use super::{copy_tree, root_reads, workspace_root, TempTree};
use crate::paths;
use crate::process::GroupGuard;
use illumo_engine::duration::duration_from_json;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::{CtxPath, Step};
use illumo_engine::template::Reads;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn default_allowed() -> Vec<String> {
    ["pytest", "python", "python3"].map(String::from).to_vec()
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the workspace, unless ctx.request.target_root names one
    #[schemars(extend("x-kind" = "path"))]
    default_root: Option<String>,
    /// argv, unless ctx.tests.command gives one
    #[schemars(extend("x-kind" = "list"))]
    command: Option<Vec<String>>,
    #[serde(default = "default_allowed")]
    /// programs that may run (default pytest, python, python3)
    #[schemars(extend("x-kind" = "list"))]
    allowed_commands: Vec<String>,
    #[serde(default)]
    /// folder inside the workspace to run in (default its root)
    #[schemars(extend("x-kind" = "path"))]
    cwd: Option<String>,
    #[serde(default)]
    /// extra environment, e.g. PYTHONPATH: .
    #[schemars(extend("x-kind" = "map"))]
    env: BTreeMap<String, String>,
    /// kills the tests and their children (default 120s)
    #[schemars(extend("x-kind" = "duration"))]
    timeout: Option<Value>,
    #[serde(default = "default_max_output")]
    /// characters of stdout/stderr kept (default 20000)
    #[schemars(extend("x-kind" = "number"))]
    max_output: usize,
    /// default $ctx.tests.results
    #[schemars(extend("x-kind" = "$ctx path"))]
    results_path: Option<String>,
    /// every run's counts, appended (default $ctx.tests.history)
    #[schemars(extend("x-kind" = "$ctx path"))]
    history_path: Option<String>,
    /// the patched files to lay over the copy (default $ctx.workspace.files)
    #[schemars(extend("x-kind" = "$ctx path"))]
    files_path: Option<String>,
}

fn default_max_output() -> usize {
    20_000
}

pub struct TestExecutor {
    config: Config,
    timeout: Duration,
    base_dir: PathBuf,
    results: CtxPath,
    history: CtxPath,
    files: CtxPath,
}

pub struct TestExecutorFactory;

impl NodeFactory for TestExecutorFactory {
    fn type_name(&self) -> &'static str {
        "TestExecutor"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["illumo_flow.nodes.TestExecutorNode"]
    }
    fn summary(&self) -> &'static str {
        "runs the tests (argv, allow-listed programs) on a copy of the workspace with the patch applied"
    }
    fn settings_schema(&self) -> serde_json::Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let timeout = match &config.timeout {
            None => Duration::from_secs(120),
            Some(v) => match duration_from_json(v) {
                Some(d) => d,
                None => {
                    cx.error(
                        cx.at(&["timeout"]),
                        &v.to_string(),
                        format!("invalid duration `{v}`; use 30s, 2m, ..."),
                    );
                    return None;
                }
            },
        };
        if let Some(command) = &config.command {
            if let Some(why) = disallowed(command, &config.allowed_commands) {
                cx.error(
                    cx.at(&["command", "0"]),
                    command.first().map_or("", String::as_str),
                    why,
                );
                return None;
            }
        }
        let results = cx.ctx_path(
            "results_path",
            config.results_path.as_deref(),
            paths::TEST_RESULTS,
        );
        let files = cx.ctx_path("files_path", config.files_path.as_deref(), paths::FILES);
        let history = cx.ctx_path(
            "history_path",
            config.history_path.as_deref(),
            paths::TEST_HISTORY,
        );
        let output_ok = cx.check_range("max_output", config.max_output, 0, 64 << 20);
        let (results, files, history) = (results?, files?, history?);
        if !output_ok {
            return None;
        }
        Some(Box::new(TestExecutor {
            config,
            timeout,
            base_dir: cx.base_dir.to_path_buf(),
            results,
            history,
            files,
        }))
    }
}

fn disallowed(argv: &[String], allowed: &[String]) -> Option<String> {
    let Some(program) = argv.first() else {
        return Some("the test command is empty".into());
    };
    let name = std::path::Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    (!allowed.iter().any(|a| a == &name)).then(|| {
        format!(
            "`{program}` is not an allowed test command (allowed: {})",
            allowed.join(", ")
        )
    })
}

/// `(passed, failed)` from pytest's closing line, e.g. `2 failed, 3 passed in 0.05s`
/// (errors count as failed).
pub fn pytest_counts(output: &str) -> (Option<u64>, Option<u64>) {
    let Some(line) = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" failed") || l.contains(" error"))
    else {
        return (None, None);
    };
    let count = |word: &str| {
        line.split(',')
            .filter_map(|part| {
                let mut words = part.trim().trim_matches('=').split_whitespace();
                let n = words.next()?.parse::<u64>().ok()?;
                words.next().filter(|w| w.starts_with(word)).map(|_| n)
            })
            .sum::<u64>()
    };
    let (passed, failed, errors) = (count("passed"), count("failed"), count("error"));
    (Some(passed), Some(failed + errors))
}

fn capped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let tail: String = text.chars().skip(text.chars().count() - max).collect();
    format!(
        "[... {} characters cut; the last {max} follow]\n{tail}",
        text.chars().count() - max
    )
}

#[illumo_engine::async_trait]
impl Node for TestExecutor {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let argv: Vec<String> = match cx.ctx.pointer("/tests/command") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            Some(Value::String(_)) => {
                return Err(NodeError::fatal(
                    "ctx.tests.command must be a list (argv), not a shell string",
                ))
            }
            _ => self.config.command.clone().ok_or_else(|| {
                NodeError::fatal("no test command: set `command` or ctx.tests.command")
            })?,
        };
        if let Some(why) = disallowed(&argv, &self.config.allowed_commands) {
            return Err(NodeError::fatal(why));
        }
        let root = workspace_root(cx.ctx, self.config.default_root.as_deref(), &self.base_dir)
            .map_err(NodeError::fatal)?;
        let copy = TempTree::new("tests")
            .map_err(|e| NodeError::fatal(format!("cannot make a test folder: {e}")))?;
        copy_tree(&root, &copy.0)
            .map_err(|e| NodeError::fatal(format!("cannot copy the workspace: {e}")))?;
        let mut overlaid = Vec::new();
        if let Some(Value::Array(files)) = self.files.get(cx.ctx) {
            for file in files {
                let (Some(path), Some(status)) = (
                    file.get("path").and_then(Value::as_str),
                    file.get("status").and_then(Value::as_str),
                ) else {
                    continue;
                };
                // Only inside the copy: a listed path cannot reach anything else.
                let target = super::patch::check_path(&copy.0, path, &["**".to_string()]).map_err(
                    |why| {
                        NodeError::fatal(format!("cannot lay `{path}` over the test copy: {why}"))
                    },
                )?;
                match (status, file.get("patched_content").and_then(Value::as_str)) {
                    ("patched" | "created", Some(text)) => {
                        if let Some(parent) = target.parent() {
                            let _ = std::fs::create_dir_all(parent);
                        }
                        std::fs::write(&target, text).map_err(|e| {
                            NodeError::fatal(format!("cannot lay `{path}` over the copy: {e}"))
                        })?;
                        overlaid.push(path.to_string());
                    }
                    ("deleted", _) => {
                        let _ = std::fs::remove_file(&target);
                        overlaid.push(path.to_string());
                    }
                    _ => {}
                }
            }
        }
        let cwd = self.config.cwd.clone().unwrap_or_else(|| ".".into());
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(copy.0.join(&cwd))
            .envs(&self.config.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        crate::process::contain(&mut command);
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| NodeError::fatal(format!("cannot start `{}`: {e}", argv[0])))?;
        let _group = child.id().map(GroupGuard::new);
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(NodeError::fatal(format!("`{}` failed: {e}", argv[0]))),
            Err(_) => {
                let text = illumo_engine::duration::duration_text(self.timeout);
                return Err(NodeError::retryable(format!(
                    "the tests did not finish within {text}; they were killed"
                ))
                .as_timeout());
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let (passed, failed) = pytest_counts(&stdout);
        let results = json!({
            "command": argv,
            "returncode": output.status.code(),
            "passed": passed,
            "failed": failed,
            "duration": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "cwd": cwd,
            "patched_files": overlaid,
            "stdout": capped(&stdout, self.config.max_output),
            "stderr": capped(&stderr, self.config.max_output),
        });
        let mut history = match self.history.get(cx.ctx) {
            Some(Value::Array(runs)) => runs.clone(),
            _ => Vec::new(),
        };
        history
            .push(json!({"passed": passed, "failed": failed, "returncode": output.status.code()}));
        Ok(Outcome::value(results.clone())
            .with_write(self.results.clone(), results)
            .with_write(self.history.clone(), Value::Array(history)))
    }

    fn reads(&self) -> Reads {
        let mut paths = root_reads();
        paths.push(vec![Step::Key("tests".into()), Step::Key("command".into())]);
        paths.push(self.files.steps.clone());
        paths.push(self.history.steps.clone());
        Reads {
            paths,
            ..Reads::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_summaries_give_counts() {
        assert_eq!(
            pytest_counts("..F\n1 failed, 2 passed in 0.05s\n"),
            (Some(2), Some(1))
        );
        assert_eq!(
            pytest_counts("===== 4 passed in 0.10s =====\n"),
            (Some(4), Some(0))
        );
        assert_eq!(
            pytest_counts("1 failed, 1 passed, 2 errors in 0.3s"),
            (Some(1), Some(3))
        );
        assert_eq!(pytest_counts("no tests here"), (None, None));
    }

    #[test]
    fn only_allowed_programs_run() {
        let allowed = default_allowed();
        assert_eq!(
            disallowed(&["python3".into(), "-m".into(), "pytest".into()], &allowed),
            None
        );
        assert_eq!(disallowed(&["/usr/bin/pytest".into()], &allowed), None);
        assert_eq!(
            disallowed(&["rm".into(), "-rf".into()], &allowed),
            Some("`rm` is not an allowed test command (allowed: pytest, python, python3)".into())
        );
    }
}
