//! `TestExecutor`: runs the tests against the patched workspace. The root is copied to a
//! temporary folder with the patched files laid over it, so the real files stay as they
//! are and the tests still see the fix. The tests are code an LLM may have written, so
//! they run under [`crate::sandbox`]: argv only (no shell), an allow-listed program found
//! on PATH, no inline-code flags, a scrubbed environment, rlimits, no network and a PID
//! namespace where the kernel allows them; every descendant dies on timeout.

use super::{copy_tree, root_reads, workspace_root, TempTree};
use crate::paths;
use crate::process::GroupGuard;
use crate::sandbox::{self, Limits};
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
    /// argv, or a string split as a shell splits it (never run by one), unless
    /// ctx.tests.command or ctx.request.tests gives one
    #[schemars(extend("x-kind" = "list|string"))]
    command: Option<CommandSpec>,
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
    #[serde(default = "default_modules")]
    /// modules `python -m` may run (default pytest, unittest)
    #[schemars(extend("x-kind" = "list"))]
    allowed_modules: Vec<String>,
    #[serde(default)]
    /// let the command run inline code (`python -c`, `sh -c`; default false)
    #[schemars(extend("x-kind" = "bool"))]
    allow_inline_code: bool,
    #[serde(default)]
    /// more of illumo's environment variables to pass (never secret-looking ones)
    #[schemars(extend("x-kind" = "list"))]
    pass_env: Vec<String>,
    #[serde(default)]
    /// let the tests reach the network (default false: their own loopback only)
    #[schemars(extend("x-kind" = "bool"))]
    network: bool,
    #[serde(default = "default_memory_mb")]
    /// address space per process, in MiB (default 4096)
    #[schemars(extend("x-kind" = "number"))]
    max_memory_mb: u64,
    #[serde(default = "default_file_mb")]
    /// the largest file the tests may write, in MiB (default 1024)
    #[schemars(extend("x-kind" = "number"))]
    max_file_mb: u64,
    /// CPU seconds per process (default: the timeout's)
    #[schemars(extend("x-kind" = "number"))]
    max_cpu_seconds: Option<u64>,
}

/// A command as argv or as one string (`pytest tests/unit -q`, as illumo-flow takes it).
#[derive(Deserialize, schemars::JsonSchema, Clone)]
#[serde(untagged)]
enum CommandSpec {
    Argv(Vec<String>),
    Line(String),
}

impl CommandSpec {
    fn argv(&self) -> Result<Vec<String>, String> {
        match self {
            CommandSpec::Argv(argv) => Ok(argv.clone()),
            CommandSpec::Line(line) => split_words(line),
        }
    }
}

/// Splits a command line into words as a POSIX shell would (quotes, backslashes), with
/// no expansion of any kind: `pytest "tests/a b" -q` -> [pytest, tests/a b, -q].
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\\' => {
                let next = chars.next().ok_or("the command ends with a lone `\\`")?;
                word.get_or_insert_with(String::new).push(next);
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed `'` in `{line}`")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("unclosed `\"` in `{line}`")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed `\"` in `{line}`")),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn default_modules() -> Vec<String> {
    ["pytest", "unittest"].map(String::from).to_vec()
}

fn default_memory_mb() -> u64 {
    4096
}

fn default_file_mb() -> u64 {
    1024
}

fn default_max_output() -> usize {
    20_000
}

pub struct TestExecutor {
    /// An illumo-flow flow: the results take TestExecutorNode's shape.
    illumo_flow: bool,
    config: Config,
    timeout: Duration,
    limits: Limits,
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
        &[
            "illumo_flow.nodes.TestExecutorNode",
            "illumo_flow.nodes.testing.TestExecutorNode",
        ]
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
        let mut ok = true;
        match config.command.as_ref().map(CommandSpec::argv) {
            Some(Err(why)) => {
                let at = cx.at(&["command"]);
                let text = match &config.command {
                    Some(CommandSpec::Line(l)) => l.clone(),
                    _ => String::new(),
                };
                cx.error(at, &text, why);
                ok = false;
            }
            Some(Ok(command)) => {
                if let Err((index, why)) = check_command(&command, &config) {
                    // A split string is one value; a list points at its item.
                    let (at, text) = match &config.command {
                        Some(CommandSpec::Line(l)) => (cx.at(&["command"]), l.clone()),
                        _ => (
                            cx.at(&["command", &index.to_string()]),
                            command.get(index).cloned().unwrap_or_default(),
                        ),
                    };
                    cx.error(at, &text, why);
                    ok = false;
                }
            }
            None => {}
        }
        for (i, name) in config.pass_env.iter().enumerate() {
            if illumo_engine::redact::is_secret_name(name) {
                cx.error(
                    cx.at(&["pass_env", &i.to_string()]),
                    name,
                    format!("`{name}` looks like a secret; the tests run code an LLM may have written, and secrets are not passed to it"),
                );
                ok = false;
            }
        }
        let memory_ok = cx.check_range("max_memory_mb", config.max_memory_mb, 16, 1 << 20);
        let file_ok = cx.check_range("max_file_mb", config.max_file_mb, 1, 1 << 20);
        let cpu_ok = config
            .max_cpu_seconds
            .is_none_or(|s| cx.check_range("max_cpu_seconds", s, 1, 1 << 24));
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
        if !(ok && output_ok && memory_ok && file_ok && cpu_ok) {
            return None;
        }
        let limits = Limits {
            memory: Some(config.max_memory_mb << 20),
            cpu_seconds: Some(
                config
                    .max_cpu_seconds
                    .unwrap_or_else(|| timeout.as_secs_f64().ceil().max(1.0) as u64),
            ),
            file_size: Some(config.max_file_mb << 20),
            isolate_network: !config.network,
            open_files: None,
            private_proc: true,
            // pytest and its plugins may start processes: the user's count plus 256.
            processes: Some(256),
        };
        Some(Box::new(TestExecutor {
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
            config,
            timeout,
            limits,
            base_dir: cx.base_dir.to_path_buf(),
            results,
            history,
            files,
        }))
    }
}

/// The program to run for `argv`, found on PATH, or the index of the argument at fault
/// and why.
fn check_command(argv: &[String], config: &Config) -> Result<PathBuf, (usize, String)> {
    let Some(program) = argv.first() else {
        return Err((0, "the test command is empty".into()));
    };
    let allowed = &config.allowed_commands;
    if program.contains('/') {
        return Err((
            0,
            format!(
                "`{program}` is a path; name an allowed program ({}), which is looked up on PATH",
                allowed.join(", ")
            ),
        ));
    }
    if !allowed.iter().any(|a| a == program) {
        return Err((
            0,
            format!(
                "`{program}` is not an allowed test command (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    if !config.allow_inline_code {
        // A module may take code of its own (`-m timeit STMT`, `-m pdb -c CMD`): only
        // test runners run.
        if let Some((index, module)) = sandbox::python_module(argv) {
            let top = module.split('.').next().unwrap_or(module);
            if !config
                .allowed_modules
                .iter()
                .any(|m| m == module || m == top)
            {
                return Err((index, format!(
                    "`{program} -m {module}` runs a module that is not a test runner (allowed_modules: {}); add it there if that is meant",
                    config.allowed_modules.join(", ")
                )));
            }
        }
        if let Some(flag) = sandbox::inline_code_flag(argv) {
            let index = argv.iter().position(|a| *a == flag).unwrap_or(0);
            return Err((index, format!(
                "`{program} {flag}` runs inline code, not tests; set `allow_inline_code: true` if that is meant"
            )));
        }
    }
    sandbox::find_on_path(program).map_err(|why| (0, why))
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
        // As illumo-flow looks for it: ctx.tests.command, ctx.request.tests, the setting.
        let given = ["/tests/command", "/request/tests"]
            .iter()
            .find_map(|p| cx.ctx.pointer(p).filter(|v| !v.is_null()));
        let argv: Vec<String> = match given {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            Some(Value::String(line)) => split_words(line).map_err(NodeError::fatal)?,
            Some(other) => {
                return Err(NodeError::fatal(format!(
                    "the test command must be a list (argv) or a string, not {}",
                    illumo_engine::path::kind_of(other)
                )))
            }
            None => self
                .config
                .command
                .as_ref()
                .map(CommandSpec::argv)
                .transpose()
                .map_err(NodeError::fatal)?
                .ok_or_else(|| {
                    NodeError::fatal(
                        "no test command: set `command`, ctx.tests.command or ctx.request.tests",
                    )
                })?,
        };
        let program =
            check_command(&argv, &self.config).map_err(|(_, why)| NodeError::fatal(why))?;
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
                    // `added` is illumo-flow's PatchNode's word for `created`.
                    ("patched" | "created" | "added", Some(text)) => {
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
        let mut env = self.config.env.clone();
        for name in &self.config.pass_env {
            if let Ok(value) = std::env::var(name) {
                // A name that does not look secret may still hold a credential (an
                // agent's `api_key_env`): the run knows its secrets.
                if cx.is_secret(&value) {
                    return Err(NodeError::fatal(format!(
                        "pass_env `{name}` holds one of the run's secrets; the tests run code an LLM may have written, and secrets are not passed to it"
                    )));
                }
                env.entry(name.clone()).or_insert(value);
            }
        }
        // The workspace (its copy) goes on PYTHONPATH, after what the settings put there,
        // as illumo-flow does, so `import app` works from tests in any folder.
        let root_entry = copy.0.display().to_string();
        let pythonpath = match env.get("PYTHONPATH").filter(|p| !p.is_empty()) {
            Some(p) if p.split(':').any(|e| e == root_entry) => p.clone(),
            Some(p) => format!("{p}:{root_entry}"),
            None => root_entry,
        };
        env.insert("PYTHONPATH".into(), pythonpath);
        let mut command = tokio::process::Command::new(&program);
        command
            .arg0(&argv[0])
            .args(&argv[1..])
            .current_dir(copy.0.join(&cwd))
            .env_clear()
            .envs(sandbox::clean_env(&env))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        sandbox::confine(&mut command, self.limits);
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
        if self.illumo_flow {
            // TestExecutorNode's results: `cwd` is the workspace (absolute), where the
            // tests ran as a patched copy, and nothing else is kept.
            let results = json!({
                "command": argv,
                "returncode": output.status.code(),
                "stdout": capped(&stdout, self.config.max_output),
                "stderr": capped(&stderr, self.config.max_output),
                "duration": started.elapsed().as_secs_f64(),
                "cwd": root.join(&cwd).components().collect::<std::path::PathBuf>().display().to_string(),
            });
            let outcome = Outcome::value(results.clone()).with_write(self.results.clone(), results);
            return Ok(super::request_default(cx.ctx, outcome));
        }
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
        paths.push(vec![Step::Key("request".into()), Step::Key("tests".into())]);
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
    fn command_lines_split_as_a_shell_splits_them() {
        assert_eq!(
            split_words(r#"pytest "tests/a b" -q 'x y' a\ b "q\"uote""#),
            Ok(["pytest", "tests/a b", "-q", "x y", "a b", "q\"uote"]
                .map(String::from)
                .to_vec())
        );
        assert_eq!(split_words("  pytest   tests/unit -q  ").unwrap().len(), 3);
        assert_eq!(split_words("a ''").unwrap(), ["a", ""]);
        assert_eq!(
            split_words("pytest 'x"),
            Err("unclosed `'` in `pytest 'x`".into())
        );
        assert_eq!(
            split_words("$HOME *.py").unwrap(),
            ["$HOME", "*.py"],
            "no expansion"
        );
    }

    #[test]
    fn only_allowed_programs_found_on_path_run() {
        let config: Config = serde_json::from_value(json!({})).unwrap();
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let found = check_command(&argv(&["python3", "-m", "pytest"]), &config).unwrap();
        assert!(
            found.is_absolute() && found.ends_with("python3"),
            "{found:?}"
        );
        assert_eq!(
            check_command(&argv(&["rm", "-rf"]), &config),
            Err((
                0,
                "`rm` is not an allowed test command (allowed: pytest, python, python3)".into()
            ))
        );
        assert_eq!(
            check_command(&argv(&["python3", "-B", "-c", "1"]), &config),
            Err((2, "`python3 -c` runs inline code, not tests; set `allow_inline_code: true` if that is meant".into()))
        );
        let lenient: Config = serde_json::from_value(json!({"allow_inline_code": true})).unwrap();
        assert!(check_command(&argv(&["python3", "-c", "1"]), &lenient).is_ok());
    }
}
