//! Python functions called from a flow: one worker process per interpreter and `sys.path`,
//! started on first use and reused for every call of the run (not an interpreter per
//! call). Calls travel as one JSON object per line over the worker's stdin and stdout;
//! what the functions print is captured per call. A call that is cancelled (a timeout,
//! Ctrl-C) or a worker that dies takes the process with it, and the next call starts a
//! fresh one.

pub mod exec;

use crate::process::GroupGuard;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WORKER: &str = include_str!("worker.py");

/// How a function is called.
#[derive(Debug, Clone, Copy, Default)]
pub struct Call {
    /// The caller routes by the result, so `None` and `[]` are an empty decision.
    pub routing: bool,
    /// The function's name came from ctx or the input, not from the flow file: it must be
    /// a function of the flow's own modules (see `user_function` in `worker.py`).
    pub named_by_data: bool,
    /// illumo-flow's flow: keys the function removes from ctx are removed (the map that
    /// lost them is written whole), and an exception keeps what it changed before.
    pub illumo_flow: bool,
}

/// Which interpreter and which folders on `sys.path`: calls with the same key share a
/// worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerKey {
    pub python: String,
    /// Put first on `sys.path`, in order.
    pub paths: Vec<PathBuf>,
}

/// The interpreter when a flow names none: `ILLUMO_PYTHON`, else `python3`.
pub fn default_python() -> String {
    std::env::var("ILLUMO_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// One route of a routing result: a target, and the input it gets when the function
/// gave one.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEntry {
    pub target: String,
    pub confidence: Option<f64>,
    pub reason: Option<String>,
    pub payload: Option<Value>,
}

/// What a call gave back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Returned {
        output: Value,
        /// Changes the function made to ctx, as (keys, new value).
        writes: Vec<(Vec<String>, Value)>,
        /// When the function returned `Routing` decisions.
        routes: Option<Vec<RouteEntry>>,
        printed: Printed,
    },
    Raised {
        /// `import` (the function could not be found), `exception` (it raised) or
        /// `result` (it returned something that is not JSON).
        kind: String,
        type_name: String,
        message: String,
        traceback: String,
        sys_path: Vec<String>,
        /// What the function changed in ctx before it raised.
        writes: Vec<(Vec<String>, Value)>,
        printed: Printed,
    },
}

/// What the function wrote to `sys.stdout` and `sys.stderr` during the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

struct Process {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    /// The worker's own stderr (interpreter crashes), read when it dies.
    log: PathBuf,
    _group: Option<GroupGuard>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

struct State {
    process: Option<Process>,
    /// Functions known to take ctx (so it is sent with the first try).
    takes_ctx: HashMap<String, bool>,
}

pub struct Worker {
    key: WorkerKey,
    state: tokio::sync::Mutex<State>,
    /// Functions a call showed not to take ctx: their nodes need no copy of it.
    without_ctx: Mutex<std::collections::HashSet<String>>,
}

impl Worker {
    /// The worker for `key`, shared by every node of the process that uses the same one.
    pub fn shared(key: WorkerKey) -> Arc<Worker> {
        static WORKERS: OnceLock<Mutex<HashMap<WorkerKey, Arc<Worker>>>> = OnceLock::new();
        let mut workers = WORKERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        workers
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Worker {
                    key,
                    state: tokio::sync::Mutex::new(State {
                        process: None,
                        takes_ctx: HashMap::new(),
                    }),
                    without_ctx: Mutex::new(Default::default()),
                })
            })
            .clone()
    }

    /// Calls `callable` with `payload` (and `ctx`, when the function takes it). Calls
    /// run one at a time. `Err` when the worker cannot be started or died.
    pub async fn call(
        &self,
        callable: &str,
        payload: &Value,
        ctx: &Value,
    ) -> Result<Answer, String> {
        self.call_as(callable, payload, ctx, Call::default()).await
    }

    /// Like [`Worker::call`]; `routing`: the caller routes by the result, so `None` and
    /// `[]` are an empty decision.
    pub async fn call_as(
        &self,
        callable: &str,
        payload: &Value,
        ctx: &Value,
        how: Call,
    ) -> Result<Answer, String> {
        let mut state = self.state.lock().await;
        // Taken out for the call: if the call is cancelled half-way, the process is
        // dropped (killed) instead of being left with an answer nobody reads.
        let mut process = match state.process.take() {
            Some(p) => p,
            None => self.start()?,
        };
        let mut send_ctx = state.takes_ctx.get(callable).copied().unwrap_or(false);
        loop {
            let reply = match exchange(
                &mut process,
                callable,
                payload,
                send_ctx.then_some(ctx),
                how,
            )
            .await
            {
                Ok(reply) => reply,
                Err(e) => return Err(died(&mut process, &e).await),
            };
            if reply.get("need_ctx").and_then(Value::as_bool) == Some(true) && !send_ctx {
                send_ctx = true;
                continue;
            }
            state.takes_ctx.insert(callable.to_string(), send_ctx);
            if let Ok(mut known) = self.without_ctx.lock() {
                match send_ctx {
                    false => known.insert(callable.to_string()),
                    true => known.remove(callable),
                };
            }
            state.process = Some(process);
            return Ok(parse_answer(reply));
        }
    }

    /// A call of `callable` showed that it does not take ctx.
    pub fn known_without_ctx(&self, callable: &str) -> bool {
        self.without_ctx
            .lock()
            .is_ok_and(|known| known.contains(callable))
    }

    fn start(&self) -> Result<Process, String> {
        let mut paths: Vec<std::ffi::OsString> = self
            .key
            .paths
            .iter()
            .map(|p| p.clone().into_os_string())
            .collect();
        if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            paths.push(existing);
        }
        let pythonpath = std::env::join_paths(paths.iter().flat_map(|p| std::env::split_paths(p)))
            .map_err(|e| format!("cannot build PYTHONPATH: {e}"))?;
        let log = std::env::temp_dir().join(format!(
            "illumo-python-{}-{:016x}.log",
            std::process::id(),
            illumo_engine::ids::SpanId::random().0
        ));
        let log_file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&log)
            .map_err(|e| format!("cannot create `{}`: {e}", log.display()))?;
        let mut command = tokio::process::Command::new(&self.key.python);
        command
            .args(["-c", WORKER])
            .env("PYTHONPATH", pythonpath)
            .env(
                "ILLUMO_USER_PATHS",
                std::env::join_paths(&self.key.paths)
                    .map_err(|e| format!("cannot build ILLUMO_USER_PATHS: {e}"))?,
            )
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            let _ = std::fs::remove_file(&log);
            format!("cannot start the Python worker `{}`: {e}", self.key.python)
        })?;
        let group = child.id().map(GroupGuard::new);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the Python worker has no pipes".into());
        };
        Ok(Process {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            log,
            _group: group,
        })
    }
}

/// One request and its answer line.
async fn exchange(
    process: &mut Process,
    callable: &str,
    payload: &Value,
    ctx: Option<&Value>,
    how: Call,
) -> Result<Value, String> {
    let mut request = serde_json::to_vec(&json!({
        "callable": callable,
        "payload": payload,
        "has_ctx": ctx.is_some(),
        "routing": how.routing,
        "named_by_data": how.named_by_data,
        "illumo_flow": how.illumo_flow,
    }))
    .map_err(|e| e.to_string())?;
    request.push(b'\n');
    if let Some(ctx) = ctx {
        serde_json::to_writer(&mut request, ctx).map_err(|e| e.to_string())?;
        request.push(b'\n');
    }
    process
        .stdin
        .write_all(&request)
        .await
        .map_err(|e| e.to_string())?;
    process.stdin.flush().await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    let n = process
        .stdout
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("it closed its output".into());
    }
    serde_json::from_str(&line).map_err(|e| format!("it answered something that is not JSON ({e})"))
}

/// Why the worker stopped answering: how it ended and the end of what it printed.
async fn died(process: &mut Process, what: &str) -> String {
    let status = tokio::time::timeout(std::time::Duration::from_secs(1), process.child.wait())
        .await
        .ok()
        .and_then(Result::ok);
    let ended = match status {
        Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "ended".into(),
        },
        None => format!("stopped answering ({what})"),
    };
    let log = std::fs::read_to_string(&process.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    match tail.is_empty() {
        true => format!("the Python worker {ended}"),
        false => format!("the Python worker {ended}: {}", tail.join(" | ")),
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn parse_answer(reply: Value) -> Answer {
    let printed = Printed {
        stdout: text(&reply, "stdout"),
        stderr: text(&reply, "stderr"),
    };
    let writes = reply
        .get("writes")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|w| {
                    let keys = w.get(0)?.as_array()?;
                    let keys = keys
                        .iter()
                        .map(|k| k.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()?;
                    Some((keys, w.get(1).cloned().unwrap_or(Value::Null)))
                })
                .collect()
        })
        .unwrap_or_default();
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        return Answer::Raised {
            kind: text(&reply, "kind"),
            type_name: text(&reply, "type"),
            message: text(&reply, "message"),
            traceback: text(&reply, "traceback"),
            sys_path: reply
                .get("sys_path")
                .and_then(Value::as_array)
                .map(|p| {
                    p.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            writes,
            printed,
        };
    }
    let routes = reply.get("routes").and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(|r| {
                let r = r.as_array()?;
                Some(RouteEntry {
                    target: r.first()?.as_str()?.to_string(),
                    confidence: r.get(1).and_then(Value::as_f64),
                    reason: r.get(2).and_then(Value::as_str).map(String::from),
                    payload: (r.get(4).and_then(Value::as_bool) == Some(true))
                        .then(|| r.get(3).cloned().unwrap_or(Value::Null)),
                })
            })
            .collect()
    });
    Answer::Returned {
        output: reply.get("output").cloned().unwrap_or(Value::Null),
        writes,
        routes,
        printed,
    }
}
