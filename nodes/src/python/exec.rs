//! `PythonExec`: runs Python code an LLM wrote, in a sandbox of three layers: a static
//! check and an audit hook in the interpreter (`exec_worker.py`), and the operating system
//! (`python3 -I`, a scrubbed environment with HOME in the work folder, rlimits, and
//! network, PID and mount namespaces where the kernel allows them). With `session`, one
//! interpreter serves every node of the run that names the session, so variables live on
//! from one step to the next.

use crate::process::GroupGuard;
use crate::sandbox::{self, Limits};
use illumo_engine::duration::{duration_from_json, duration_text};
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WORKER: &str = include_str!("exec_worker.py");

/// The modules code may import unless the flow lists others.
pub const DEFAULT_IMPORTS: [&str; 15] = [
    "math",
    "json",
    "datetime",
    "re",
    "collections",
    "itertools",
    "functools",
    "typing",
    "statistics",
    "csv",
    "decimal",
    "fractions",
    "random",
    "string",
    "textwrap",
];

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the code (a template); otherwise the input, from which a ```python block is taken
    #[schemars(extend("x-kind" = "template"))]
    code: Option<String>,
    /// modules the code may import (default: math, json, datetime, re, collections, ...)
    #[schemars(extend("x-kind" = "list"))]
    allowed_imports: Option<Vec<String>>,
    /// kills the code (default 30s)
    #[schemars(extend("x-kind" = "duration"))]
    timeout: Option<Value>,
    /// address space, in MiB (default 512)
    #[serde(default = "default_memory")]
    #[schemars(extend("x-kind" = "number"))]
    max_memory_mb: u64,
    /// let the code reach the network (default false)
    #[serde(default)]
    #[schemars(extend("x-kind" = "bool"))]
    network: bool,
    /// files copied into the work folder, relative to the flow file
    #[serde(default)]
    #[schemars(extend("x-kind" = "list"))]
    files: Vec<String>,
    /// where files the code creates are kept, relative to the flow file (otherwise discarded)
    #[schemars(extend("x-kind" = "path"))]
    output_dir: Option<String>,
    /// one interpreter per run and name, shared by the nodes that name it
    #[schemars(extend("x-kind" = "name"))]
    session: Option<String>,
    /// where the result object goes, on success and on failure (default $ctx.python.<id>)
    #[schemars(extend("x-kind" = "$ctx path"))]
    result_path: Option<String>,
    /// the interpreter (default: ILLUMO_PYTHON, else python3)
    #[schemars(extend("x-kind" = "program"))]
    python: Option<String>,
}

fn default_memory() -> u64 {
    512
}

pub struct PythonExec {
    code: Option<ValueSpec>,
    allowed: Vec<String>,
    timeout: Duration,
    limits: Limits,
    files: Vec<(PathBuf, String)>,
    output_dir: Option<PathBuf>,
    session: Option<Arc<Session>>,
    result: CtxPath,
    python: String,
}

pub struct PythonExecFactory;

impl NodeFactory for PythonExecFactory {
    fn type_name(&self) -> &'static str {
        "PythonExec"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["CodeExecutor", "execute_code"]
    }
    fn summary(&self) -> &'static str {
        "runs Python code (an LLM's) in a sandbox: import allow-list, audit hook, rlimits, no network"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let code = match &config.code {
            Some(text) => Some(cx.value(cx.at(&["code"]), &Value::String(text.clone()))?),
            None => None,
        };
        let timeout = match &config.timeout {
            None => Duration::from_secs(30),
            Some(v) => match duration_from_json(v).filter(|d| !d.is_zero()) {
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
        let memory_ok = cx.check_range("max_memory_mb", config.max_memory_mb, 32, 1 << 20);
        let allowed: Vec<String> = config
            .allowed_imports
            .clone()
            .unwrap_or_else(|| DEFAULT_IMPORTS.iter().map(|s| s.to_string()).collect());
        let mut ok = memory_ok;
        for (i, module) in allowed.iter().enumerate() {
            let valid = !module.is_empty()
                && module
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if !valid {
                cx.error(
                    cx.at(&["allowed_imports", &i.to_string()]),
                    module,
                    format!("`{module}` is not a module name"),
                );
                ok = false;
            }
        }
        let mut files = Vec::new();
        for (i, f) in config.files.iter().enumerate() {
            let source = cx.base_dir.join(f);
            let name = Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().to_string());
            match name {
                Some(name) if source.is_file() => files.push((source, name)),
                _ => {
                    cx.error(
                        cx.at(&["files", &i.to_string()]),
                        f,
                        format!("`{}` is not a file", source.display()),
                    );
                    ok = false;
                }
            }
        }
        let default_result = format!("$ctx.python.{}", cx.node_id);
        let result = cx.ctx_path(
            "result_path",
            config.result_path.as_deref(),
            &default_result,
        );
        let (result, ()) = (result?, ());
        if !ok {
            return None;
        }
        let limits = Limits {
            memory: Some(config.max_memory_mb << 20),
            cpu_seconds: Some(timeout.as_secs_f64().ceil().max(1.0) as u64),
            file_size: Some(64 << 20),
            isolate_network: !config.network,
            open_files: Some(256),
            private_proc: true,
            processes: Some(32),
        };
        let python = config.python.clone().unwrap_or_else(super::default_python);
        let session = config
            .session
            .as_ref()
            .map(|name| Session::shared(name, &python, limits));
        Some(Box::new(PythonExec {
            code,
            allowed,
            timeout,
            limits,
            files,
            output_dir: config.output_dir.as_ref().map(|d| cx.base_dir.join(d)),
            session,
            result,
            python,
        }))
    }
}

/// The code to run: the `code` setting, or the input; from an LLM's reply, the first
/// fenced ```python (or plain ```) block.
fn code_of(text: &str) -> String {
    for fence in ["```python", "```py", "```"] {
        if let Some(start) = text.find(fence) {
            let body = &text[start + fence.len()..];
            let body = body.strip_prefix('\n').unwrap_or(body);
            if let Some(end) = body.find("```") {
                return body[..end].to_string();
            }
        }
    }
    text.to_string()
}

/// One sandboxed interpreter: spawned, fed one request, read one answer.
struct Interpreter {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    work: crate::coding::TempTree,
    _group: Option<GroupGuard>,
}

impl Interpreter {
    fn start(python: &str, limits: Limits) -> Result<Interpreter, String> {
        let work = crate::coding::TempTree::new("python")
            .map_err(|e| format!("cannot make a work folder: {e}"))?;
        let mut env = std::collections::BTreeMap::new();
        env.insert("HOME".to_string(), work.0.display().to_string());
        env.insert("TMPDIR".to_string(), work.0.display().to_string());
        let mut command = tokio::process::Command::new(python);
        command
            .args(["-I", "-c", WORKER])
            .current_dir(&work.0)
            .env_clear()
            .envs(sandbox::clean_env(&env))
            .env("HOME", &work.0)
            .env("TMPDIR", &work.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        sandbox::confine(&mut command, limits);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{python}`: {e}"))?;
        let group = child.id().map(GroupGuard::new);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the sandbox has no pipes".into());
        };
        Ok(Interpreter {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            work,
            _group: group,
        })
    }

    async fn ask(&mut self, request: &Value) -> Result<Value, String> {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .map_err(|e| e.to_string())?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let n = self
            .stdout
            .read_line(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            let status = self.child.try_wait().ok().flatten();
            let how = match status
                .map(|s| (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)))
            {
                Some((_, Some(signal))) => format!("was killed by signal {signal}"),
                Some((Some(code), _)) => format!("exited with code {code}"),
                _ => "stopped".to_string(),
            };
            return Err(format!("the sandboxed interpreter {how}"));
        }
        serde_json::from_str(&answer)
            .map_err(|e| format!("the sandbox answered something that is not JSON ({e})"))
    }
}

/// A named session: one interpreter shared by the run's nodes that name it.
struct Session {
    name: String,
    python: String,
    limits: Limits,
    interpreter: tokio::sync::Mutex<Option<Interpreter>>,
}

impl Session {
    fn shared(name: &str, python: &str, limits: Limits) -> Arc<Session> {
        static SESSIONS: OnceLock<Mutex<HashMap<String, Arc<Session>>>> = OnceLock::new();
        let mut sessions = SESSIONS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sessions
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Session {
                    name: name.to_string(),
                    python: python.to_string(),
                    limits,
                    interpreter: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }
}

/// What each layer of the sandbox does on this machine.
fn sandbox_report(limits: &Limits) -> Value {
    let support = sandbox::support();
    let state = |on: bool, available: bool| match (on, available) {
        (false, _) => "off",
        (true, true) => "active",
        (true, false) => "unavailable",
    };
    json!({
        "static_check": "active",
        "audit_hook": "active",
        "rlimits": "active",
        // SAFETY: getuid has no preconditions.
        "process_limit": match (limits.processes, unsafe { libc::getuid() } == 0) {
            (None, _) => "off",
            // Root is exempt from RLIMIT_NPROC; the audit hook still denies fork.
            (Some(_), true) => "unavailable",
            (Some(_), false) => "active",
        },
        "scrubbed_environment": "active",
        "pid_namespace": state(true, support.pid_namespace),
        "network_namespace": state(limits.isolate_network, support.network_namespace),
        "private_proc": state(limits.private_proc, support.mount_namespace),
    })
}

impl PythonExec {
    /// Runs `code`: the worker's answer and the output object, or why it could not run
    /// to an answer (a timeout, a dead interpreter).
    async fn execute(&self, code: String) -> Result<(Value, Value), NodeError> {
        let started = Instant::now();
        // A session keeps its interpreter (and its variables); otherwise each run gets one.
        let mut own = None;
        let mut guard = match &self.session {
            Some(session) => Some(session.interpreter.lock().await),
            None => None,
        };
        let interpreter: &mut Interpreter = match guard.as_mut() {
            Some(slot) => {
                if slot.is_none() {
                    let session = self.session.as_ref().expect("a session");
                    **slot = Some(
                        Interpreter::start(&session.python, session.limits)
                            .map_err(NodeError::fatal)?,
                    );
                }
                slot.as_mut().expect("started")
            }
            None => {
                own.insert(Interpreter::start(&self.python, self.limits).map_err(NodeError::fatal)?)
            }
        };
        for (source, name) in &self.files {
            std::fs::copy(source, interpreter.work.0.join(name)).map_err(|e| {
                NodeError::fatal(format!(
                    "cannot copy `{}` into the work folder: {e}",
                    source.display()
                ))
            })?;
        }
        let before = Self::listing(&interpreter.work.0);
        let request = self.request(&code, &interpreter.work.0);
        let answer = match tokio::time::timeout(self.timeout, interpreter.ask(&request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(died)) => {
                // The interpreter is gone: a session starts over at its next use.
                if let Some(slot) = guard.as_mut() {
                    **slot = None;
                }
                let why = match &self.session {
                    Some(s) => format!(
                        "{died}; session `{}` is lost, its next use starts a fresh one",
                        s.name
                    ),
                    None => died,
                };
                return Err(NodeError::retryable(why));
            }
            Err(_) => {
                if let Some(slot) = guard.as_mut() {
                    **slot = None;
                }
                return Err(NodeError::retryable(format!(
                    "the code did not finish within {} (timeout); it was killed",
                    duration_text(self.timeout)
                ))
                .as_timeout());
            }
        };
        let work = interpreter.work.0.clone();
        // The files this run created or changed.
        let created: Vec<(PathBuf, String, u64)> = Self::listing(&work)
            .into_iter()
            .filter(|f| {
                !before
                    .iter()
                    .any(|b| b.1 == f.1 && b.2 == f.2 && b.3 == f.3)
            })
            .map(|(path, rel, size, _)| (path, rel, size))
            .collect();
        if let Some(dir) = &self.output_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| NodeError::fatal(format!("cannot create `{}`: {e}", dir.display())))?;
            for (path, rel, _) in &created {
                let target = dir.join(rel);
                if let Some(parent) = target.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                std::fs::copy(path, &target)
                    .map_err(|e| NodeError::fatal(format!("cannot keep `{rel}`: {e}")))?;
            }
        }
        let mut output = Map::new();
        let ok = answer["ok"].as_bool() == Some(true);
        output.insert("success".into(), json!(ok));
        output.insert("code".into(), json!(code));
        for key in [
            "stdout",
            "stderr",
            "stdout_truncated",
            "stderr_truncated",
            "result",
            "error",
        ] {
            output.insert(key.into(), answer.get(key).cloned().unwrap_or(Value::Null));
        }
        output.insert(
            "duration_ms".into(),
            json!((started.elapsed().as_secs_f64() * 1e4).round() / 10.0),
        );
        output.insert(
            "files".into(),
            Value::Array(
                created
                    .iter()
                    .map(|(_, rel, size)| json!({"path": rel, "size": size}))
                    .collect(),
            ),
        );
        output.insert("sandbox".into(), sandbox_report(&self.limits));
        Ok((answer, Value::Object(output)))
    }

    /// A sandbox with the default settings, as the `python` tool of an agent runs it.
    pub fn for_tool() -> PythonExec {
        let timeout = Duration::from_secs(30);
        PythonExec {
            code: None,
            allowed: DEFAULT_IMPORTS.iter().map(|s| s.to_string()).collect(),
            timeout,
            limits: Limits {
                memory: Some(512 << 20),
                cpu_seconds: Some(30),
                file_size: Some(64 << 20),
                isolate_network: true,
                open_files: Some(256),
                private_proc: true,
                processes: Some(32),
            },
            files: Vec::new(),
            output_dir: None,
            session: None,
            result: CtxPath::ctx(vec![]),
            python: super::default_python(),
        }
    }

    /// Runs `code` for a tool call: the output object, failures included.
    pub async fn run_code(&self, code: &str) -> Value {
        match self.execute(code_of(code)).await {
            Ok((_, output)) => output,
            Err(e) => {
                json!({"success": false, "code": code, "error": {"type": "SandboxFailure", "message": e.to_string()}})
            }
        }
    }

    fn request(&self, code: &str, work: &Path) -> Value {
        json!({"code": code, "allowed_imports": self.allowed, "work": work, "network": !self.limits.isolate_network})
    }

    /// Every file in the work folder: path, name relative to it, size and change time.
    fn listing(work: &Path) -> Vec<(PathBuf, String, u64, Option<std::time::SystemTime>)> {
        let mut found = Vec::new();
        let mut stack = vec![work.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                let rel = path
                    .strip_prefix(work)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .to_string();
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    found.push((path, rel, meta.len(), meta.modified().ok()));
                }
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        found
    }
}

#[illumo_engine::async_trait]
impl Node for PythonExec {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let code = match &self.code {
            Some(spec) => spec
                .render(cx.ctx)
                .map_err(|e| NodeError::fatal(e.to_string()))?,
            None => cx.input.clone(),
        };
        let code = match &code {
            Value::String(s) => code_of(s),
            Value::Object(m) if m.get("code").is_some_and(Value::is_string) => {
                code_of(m["code"].as_str().unwrap_or_default())
            }
            other => {
                return Err(NodeError::fatal(format!(
                    "no code to run: set `code`, or give the node text as its input (it got {})",
                    cx.preview(other, 60)
                )))
            }
        };
        let (answer, output) = self.execute(code).await?;
        if output["success"] == true {
            return Ok(Outcome::value(output.clone()).with_write(self.result.clone(), output));
        }
        let error = &answer["error"];
        let kind = error["type"].as_str().unwrap_or("Error");
        let message = error["message"].as_str().unwrap_or("");
        let failure = if let Some(rule) = error["rule"].as_str() {
            // A sandbox rule: trying again would break it again.
            NodeError::fatal(format!(
                "the sandbox refused the code: {}",
                rule.trim_start_matches("sandbox: ")
            ))
        } else if kind == "MemoryError" {
            NodeError::retryable(format!(
                "the code ran out of memory (max_memory_mb {})",
                self.limits.memory.unwrap_or(0) >> 20
            ))
        } else {
            let line = error["line"]
                .as_u64()
                .map(|l| format!(" on line {l}"))
                .unwrap_or_default();
            NodeError::retryable(format!("the code raised {kind}{line}: {message}"))
        };
        Err(failure.with_write(self.result.clone(), output))
    }

    fn reads(&self) -> Reads {
        self.code.as_ref().map(ValueSpec::reads).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::code_of;

    #[test]
    fn code_comes_out_of_a_fenced_block() {
        assert_eq!(
            code_of("Here:\n```python\nprint(1)\n```\nDone"),
            "print(1)\n"
        );
        assert_eq!(code_of("```\nx = 2\n```"), "x = 2\n");
        assert_eq!(code_of("result = 3"), "result = 3");
    }
}
