//! `illumo chat`: a conversation with a flow. Each line runs the flow once with
//! `ctx.chat.message` set to the line and `ctx.chat.history` to the session's history,
//! then prints the reply (`ctx.chat.answer`, or `--reply-path`). Sessions live in SQLite,
//! so `--session ID` continues a conversation in a later process.

use crate::cli::ChatArgs;
use crate::run_cmd::{self, TracerChoice};
use crate::{inputs, EXIT_FAILED, EXIT_USAGE};
use illumo_engine::redact::Redactor;
use illumo_engine::runner::{self, RunError, RunOptions};
use illumo_engine::NodeRegistry;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

/// ctx areas the engine fills on every run; a session does not carry them to the next turn.
const PER_RUN: [&str; 5] = ["steps", "payloads", "joins", "routing", "errors"];

struct Session {
    id: String,
    ctx: Value,
    history: Vec<Value>,
}

struct Store {
    conn: Connection,
}

impl Store {
    fn open(path: &str) -> Result<Store, String> {
        let fail = |e: rusqlite::Error| format!("the chat database `{path}`: {e}");
        if let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("the chat database `{path}`: {e}"))?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(fail)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS sessions (
                 id         TEXT PRIMARY KEY,
                 flow       TEXT NOT NULL,
                 ctx        TEXT NOT NULL,
                 history    TEXT NOT NULL,
                 turns      INTEGER NOT NULL,
                 updated_at TEXT NOT NULL
             );",
        )
        .map_err(fail)?;
        Ok(Store { conn })
    }

    fn load(&self, id: &str) -> Result<Option<Session>, String> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT ctx, history FROM sessions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let Some((ctx, history)) = row else {
            return Ok(None);
        };
        let parse = |t: &str| {
            serde_json::from_str::<Value>(t).map_err(|e| format!("session `{id}` is damaged: {e}"))
        };
        let history = match parse(&history)? {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        Ok(Some(Session {
            id: id.to_string(),
            ctx: parse(&ctx)?,
            history,
        }))
    }

    fn save(&self, session: &Session, flow: &str, redactor: &Redactor) -> Result<(), String> {
        let mut ctx = session.ctx.clone();
        let mut history = Value::Array(session.history.clone());
        // Secrets stay out of the session file, as out of traces.
        redactor.value(&mut ctx);
        redactor.value(&mut history);
        let turns = (session.history.len() / 2) as i64;
        self.conn
            .execute(
                "INSERT INTO sessions (id, flow, ctx, history, turns, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET flow = excluded.flow, ctx = excluded.ctx,
                   history = excluded.history, turns = excluded.turns, updated_at = excluded.updated_at",
                params![
                    session.id,
                    flow,
                    ctx.to_string(),
                    history.to_string(),
                    turns,
                    illumo_engine::ids::iso8601(std::time::SystemTime::now())
                ],
            )
            .map(|_| ())
            .map_err(|e| format!("cannot save session `{}`: {e}", session.id))
    }
}

pub fn run(args: ChatArgs, registry: &NodeRegistry) -> i32 {
    match chat(&args, registry) {
        Ok(code) => code,
        Err(Some(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(None) => EXIT_USAGE,
    }
}

fn chat(args: &ChatArgs, registry: &NodeRegistry) -> Result<i32, Option<String>> {
    let reply_path = inputs::ctx_path(args.reply_path.as_deref().unwrap_or("chat.answer"))
        .map_err(|e| Some(format!("--reply-path: {e}")))?;
    let flow = Arc::new(
        crate::load_for(&args.flow, registry, args.quiet, args.profile.as_deref())
            .map_err(|_| None)?,
    );
    let initial = inputs::context(args.context.as_deref(), &args.sets)?;
    let (tracer, _sqlite) = run_cmd::tracers_of(&TracerChoice {
        tracers: &args.tracers,
        tracer_args: &args.tracer_args,
        trace_db: None,
        service_name: None,
        quiet: args.quiet,
        default: "none",
    })?;
    let overrides = run_cmd::overrides(&flow, args.profile.as_deref(), args.policy.as_deref())?;
    let max_text = run_cmd::max_text(&args.tracer_args)?;
    let prices = run_cmd::prices(&args.tracer_args)?;
    let secrets = args.redact.iter().cloned().chain(flow.secrets());
    let redactor = Arc::new(Redactor::from_env(secrets));
    let store = Store::open(&args.db).map_err(Some)?;
    let id = args
        .session
        .clone()
        .unwrap_or_else(|| format!("s-{:08x}", illumo_engine::ids::random_u64() as u32));
    let mut session = match store.load(&id).map_err(Some)? {
        Some(s) => s,
        None => Session {
            id: id.clone(),
            ctx: initial.clone(),
            history: Vec::new(),
        },
    };
    let terminal = std::io::stdin().is_terminal();
    if !args.quiet {
        let turns = session.history.len() / 2;
        match turns {
            0 => eprintln!(
                "session {id} (new){}",
                if terminal {
                    "; /history, /reset, /exit"
                } else {
                    ""
                }
            ),
            n => eprintln!(
                "session {id}: {} so far",
                illumo_engine::diagnostic::plural(n, "turn")
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Some(format!("cannot start the runtime: {e}")))?;
    let mut signals = runtime
        .block_on(async { crate::signals::Listener::install() })
        .map_err(|e| Some(format!("cannot handle signals: {e}")))?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<Option<String>>(1);
    // Lines are read on a thread of their own, so a signal is seen while waiting for one.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut line = String::new();
            let read = lock.read_line(&mut line);
            let done = !matches!(read, Ok(n) if n > 0);
            if lines_tx
                .blocking_send((!done).then(|| line.trim_end_matches(['\n', '\r']).to_string()))
                .is_err()
                || done
            {
                return;
            }
        }
    });
    let mut failed = false;
    loop {
        if terminal {
            eprint!("you> ");
        }
        let next = runtime.block_on(async {
            tokio::select! {
                line = lines_rx.recv() => Ok(line.flatten()),
                signal = signals.first() => Err(signal),
            }
        });
        let line = match next {
            Ok(Some(line)) => line,
            // Ctrl-D, or the end of piped input.
            Ok(None) => break,
            Err(signal) => {
                if terminal {
                    eprintln!();
                }
                return Ok(signal.exit_code);
            }
        };
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/history" => {
                for item in &session.history {
                    let role = item["role"].as_str().unwrap_or("?");
                    let content = item["content"].as_str().unwrap_or("");
                    println!("{role}: {}", redactor.text(content));
                }
                continue;
            }
            "/reset" => {
                session.ctx = initial.clone();
                session.history.clear();
                store.save(&session, &args.flow, &redactor).map_err(Some)?;
                if !args.quiet {
                    eprintln!("session {id} reset");
                }
                continue;
            }
            t if t.starts_with('/') => {
                eprintln!("unknown command `{t}`: /history, /reset or /exit");
                continue;
            }
            _ => {}
        }
        let mut ctx = session.ctx.clone();
        if !ctx.is_object() {
            ctx = Value::Object(Map::new());
        }
        ctx["chat"] = match ctx.get("chat") {
            Some(Value::Object(chat)) => Value::Object(chat.clone()),
            _ => json!({}),
        };
        ctx["chat"]["message"] = json!(text);
        ctx["chat"]["history"] = Value::Array(session.history.clone());
        let mut options = RunOptions::new(tracer.clone());
        options.overrides = overrides.clone();
        options.redactor = redactor.clone();
        options.permissions.ask = false;
        options.attributes.insert("session_id".into(), json!(id));
        options.max_text = max_text;
        options.prices = prices.clone();
        let interrupt = options.interrupt.clone();
        let outcome = runtime.block_on(async {
            let run = tokio::spawn(runner::run(flow.clone(), ctx, options));
            tokio::pin!(run);
            tokio::select! {
                result = &mut run => Ok(result),
                signal = signals.first() => {
                    interrupt.interrupt(signal.name);
                    let _ = run.await;
                    Err(signal)
                }
            }
        });
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                eprintln!("error: the turn crashed: {e}");
                failed = true;
                continue;
            }
            Err(signal) => {
                eprintln!("\ninterrupted by {}: the turn was stopped; the session keeps the turns before it", signal.name);
                return Ok(signal.exit_code);
            }
        };
        match result {
            Ok(out) => {
                let reply = reply_path.get(&out.ctx).cloned().unwrap_or(Value::Null);
                let reply_text = match &reply {
                    Value::String(s) => s.clone(),
                    Value::Null => {
                        eprintln!(
                            "warning: the flow gave no reply at `{reply_path}` (trace {})",
                            out.trace_id
                        );
                        String::new()
                    }
                    other => other.to_string(),
                };
                println!("{}", redactor.text(&reply_text));
                let mut kept = out.ctx;
                if let Value::Object(map) = &mut kept {
                    for key in PER_RUN {
                        map.remove(key);
                    }
                    if let Some(Value::Object(chat)) = map.get_mut("chat") {
                        chat.remove("message");
                        chat.remove("history");
                    }
                }
                session.ctx = kept;
                session
                    .history
                    .push(json!({"role": "user", "content": text}));
                session
                    .history
                    .push(json!({"role": "assistant", "content": reply_text}));
                store.save(&session, &args.flow, &redactor).map_err(Some)?;
            }
            Err(failure) => {
                failed = true;
                let message = match &failure.error {
                    RunError::Paused { node, .. } => {
                        format!("the flow paused at `{node}`, which a chat cannot answer")
                    }
                    e => e.to_string(),
                };
                eprintln!(
                    "error: {} (trace {}); the turn is not kept",
                    redactor.text(&message),
                    failure.trace_id
                );
            }
        }
    }
    Ok(if failed { EXIT_FAILED } else { 0 })
}
