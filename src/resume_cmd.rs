//! `illumo resume`: continues a journaled run from where it stopped.

use crate::cli::{ReportFormat, ResumeArgs};
use crate::run_cmd::{self, Finish, Prepared};
use crate::{inputs, EXIT_USAGE};
use illumo_engine::journal::{Journal, Replay, RunStart};
use illumo_engine::redact::Redactor;
use illumo_engine::runner::{self, RunOptions};
use illumo_engine::tracer::{DbTracer, Fanout, TraceId};
use illumo_tracers::journal::{self, StoredRun};
use illumo_tracers::{ConsoleTracer, SqliteTracer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn run(args: ResumeArgs) -> i32 {
    // `-o` is the caller's path: made absolute before the run moves to its own folder.
    let output = args
        .output
        .as_deref()
        .map(|o| absolute(o).display().to_string());
    match prepare(&args) {
        Ok(prepared) => {
            let finish = Finish {
                print: args.print.clone(),
                output,
                pretty: args.pretty,
                quiet: args.quiet,
                report_path: None,
                report_format: ReportFormat::Json,
                log_dir: None,
            };
            run_cmd::execute(&finish, prepared)
        }
        Err(Some(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(None) => EXIT_USAGE,
    }
}

/// A path given to `resume`, made absolute before the run moves to its own folder.
fn absolute(path: &str) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path))
}

fn prepare(args: &ResumeArgs) -> Result<Prepared, Option<String>> {
    if args.durability == crate::cli::DurabilityArg::Off {
        return Err(Some(
            "a resumed run is journaled: --durability is batch or sync here".into(),
        ));
    }
    let db = absolute(&args.db);
    let conn = illumo_tracers::store::open(&db).map_err(Some)?;
    let trace_id = journal::resolve_run(&conn, &args.trace_id).map_err(Some)?;
    let stored = journal::load(&conn, &trace_id).map_err(Some)?;
    let status = journal::effective_status(&stored.status, stored.pid).to_string();
    match status.as_str() {
        "ok" => {
            return Err(Some(format!(
                "run `{trace_id}` finished ok: there is nothing to resume (fork it with `illumo run FLOW --from NODE --trace {trace_id}`)"
            )))
        }
        "running" => {
            return Err(Some(format!(
                "run `{trace_id}` is still running (process {}); stop it first",
                stored.pid.unwrap_or_default()
            )))
        }
        _ => {}
    }
    let answer = answer_text(args, &stored, &status, &trace_id)?;
    let options_json = &stored.options;
    if options_json["write"].as_bool() == Some(true) && !args.write {
        return Err(Some(format!(
            "run `{trace_id}` was started with --write; give --write again to let it write files (a resume never grants it by itself)"
        )));
    }
    // Output paths are the caller's; the run itself continues where it started.
    let scripted_calls = scripted_calls(&conn, &trace_id).map_err(Some)?;
    drop(conn);
    let cwd = options_json["cwd"].as_str().map(PathBuf::from);
    if let Some(cwd) = &cwd {
        std::env::set_current_dir(cwd).map_err(|e| {
            Some(format!(
                "cannot continue in the run's working folder `{}`: {e}",
                cwd.display()
            ))
        })?;
    }
    let llm_mode = match options_json["llm"].as_str() {
        Some(text) => illumo_nodes::llm::LlmMode::parse(text).map_err(Some)?,
        None => illumo_nodes::llm::LlmMode::Live,
    };
    let mut registry = illumo_engine::NodeRegistry::new();
    illumo_nodes::register_builtins_with_llm(
        &mut registry,
        illumo_nodes::llm::Llm::new(llm_mode).resuming(scripted_calls),
    );
    if !Path::new(&stored.flow).exists() {
        return Err(Some(format!(
            "the run's flow file `{}` is gone; restore it to resume",
            stored.flow
        )));
    }
    let flow = crate::load_for(
        &stored.flow,
        &registry,
        args.quiet,
        options_json["profile"].as_str(),
    )
    .map_err(|_| None)?;
    check_changes(&flow, &stored, args.force)?;
    let answer = match answer {
        None => None,
        Some(value) => Some(check_answer(&flow, &stored, value)?),
    };
    let entry = run_cmd::stored_entry(&flow, options_json)?;
    let flow = Arc::new(flow);
    let replay = Replay {
        steps: stored.steps.clone(),
        answer,
        force: args.force,
    };
    // The journal must fit the flow before anything runs.
    if !args.force {
        run_cmd::block_on(runner::replay_only(
            flow.clone(),
            stored.ctx.clone(),
            replay.clone(),
            entry.clone(),
            None,
        ))
        .map_err(Some)?
        .map_err(|e| {
            Some(if e.starts_with("max_steps") {
                format!(
                    "cannot resume `{trace_id}`: {e}: the steps it already took count; raise `max_steps` in the flow file to let it go on"
                )
            } else {
                format!(
                    "cannot resume `{trace_id}`: {e}; resume with --force to follow the journal only as far as it fits"
                )
            })
        })?;
    }
    let mut fanout = Fanout::default();
    if !args.quiet {
        fanout
            .0
            .push(Arc::new(ConsoleTracer::new(crate::color_choice())));
    }
    let sqlite = Arc::new(DbTracer::new(SqliteTracer::new(&db)).map_err(|e| Some(e.to_string()))?);
    fanout.0.push(sqlite.clone());
    let mut options = RunOptions::new(Arc::new(fanout));
    options.trace_id =
        TraceId::parse(&trace_id).ok_or_else(|| Some(format!("`{trace_id}` is not a trace id")))?;
    let secrets = args.redact.iter().cloned().chain(flow.secrets());
    options.redactor = Arc::new(Redactor::from_env(secrets));
    options.permissions.write_files = args.write;
    options.permissions.ask = run_cmd::can_ask(args.no_input);
    let policy = options_json["policy"].as_str();
    options.overrides = run_cmd::overrides(&flow, options_json["profile"].as_str(), policy)?;
    options.durability = run_cmd::durability(args.durability);
    options.entry = entry;
    if let Some(forked) = &stored.forked_from {
        options
            .attributes
            .insert("forked_from".into(), forked.clone());
    }
    options.attributes.insert(
        "resumed".into(),
        serde_json::json!({"steps_replayed": stored.steps.len(), "status_before": status}),
    );
    options.replay = Some(replay);
    if stored.masked && !args.quiet {
        eprintln!(
            "warning: the journal of `{trace_id}` holds secrets masked as ***; steps that read them get *** after the resume"
        );
    }
    claim(&db, &trace_id, &stored).map_err(Some)?;
    let journal = sqlite
        .inner()
        .journal(options.redactor.clone())
        .ok_or_else(|| Some("the journal's database is not open".to_string()))?;
    let start = RunStart {
        trace_id: options.trace_id,
        flow_path: stored.flow.clone(),
        flow_hash: stored.flow_hash.clone(),
        nodes: Vec::new(),
        ctx: Value::Null,
        options: Value::Null,
        forked_from: None,
    };
    journal
        .start(&start)
        .map_err(|e| Some(format!("cannot write the run journal: {e}")))?;
    options.journal = Some(Arc::new(journal));
    Ok(Prepared {
        flow,
        ctx: stored.ctx,
        options,
        journal_db: Some(db.display().to_string()),
        keep: vec![sqlite],
    })
}

/// Marks the run as running in this process, if no other process did first: two resumes
/// of one run never both go on.
fn claim(db: &Path, trace_id: &str, stored: &StoredRun) -> Result<(), String> {
    let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let changed = conn
        .execute(
            "UPDATE runs SET status = 'running', pid = ?1
             WHERE trace_id = ?2 AND status = ?3 AND coalesce(pid, 0) = ?4",
            rusqlite::params![
                i64::from(std::process::id()),
                trace_id,
                stored.status,
                stored.pid.unwrap_or(0)
            ],
        )
        .map_err(|e| format!("cannot claim run `{trace_id}`: {e}"))?;
    match changed {
        1 => Ok(()),
        _ => Err(format!(
            "run `{trace_id}` is being resumed by another process"
        )),
    }
}

/// `--input` read, and whether the run can take it.
fn answer_text(
    args: &ResumeArgs,
    stored: &StoredRun,
    status: &str,
    trace_id: &str,
) -> Result<Option<Value>, Option<String>> {
    let Some(arg) = &args.input else {
        if status == "paused" && !run_cmd::can_ask(args.no_input) {
            return Err(Some(format!(
                "run `{trace_id}` is paused at `{}`: {}\n  answer with --input, e.g. illumo resume {trace_id} --db {} --input '{{\"choice\": \"approve\"}}'",
                stored.paused_at.as_deref().unwrap_or("?"),
                stored.message.as_deref().unwrap_or(""),
                args.db
            )));
        }
        return Ok(None);
    };
    if status != "paused" {
        return Err(Some(format!(
            "--input answers a paused run; run `{trace_id}` is {status}"
        )));
    }
    let (name, text) = inputs::read_arg("--input", arg)?;
    let value = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v,
        // A bare word is a choice: `--input approve`.
        Err(_) if !text.trim().is_empty() && !text.trim_start().starts_with(['{', '[', '"']) => {
            Value::String(text.trim().to_string())
        }
        Err(e) => {
            let from = if name == "--input" {
                "the text".to_string()
            } else {
                format!("`{name}`")
            };
            return Err(Some(format!("--input: {from} is not valid JSON: {e}")));
        }
    };
    Ok(Some(value))
}

/// The answer checked by the node the run paused at; a bad one leaves the run paused.
fn check_answer(
    flow: &illumo_engine::Flow,
    stored: &StoredRun,
    value: Value,
) -> Result<(String, Value), Option<String>> {
    let node = stored.paused_at.clone().unwrap_or_default();
    let Some(&index) = flow.index.get(node.as_str()) else {
        return Err(Some(format!(
            "the run paused at `{node}`, which the flow no longer has"
        )));
    };
    match flow.nodes[index].node.check_answer(&value) {
        None => Err(Some(format!("node `{node}` takes no answer"))),
        Some(Err(why)) => Err(Some(format!(
            "--input does not fit `{node}`: {why}; the run stays paused"
        ))),
        Some(Ok(answer)) => Ok((node, answer)),
    }
}

/// Refuses when a node that already ran is written differently now, unless `force`.
fn check_changes(
    flow: &illumo_engine::Flow,
    stored: &StoredRun,
    force: bool,
) -> Result<(), Option<String>> {
    // Each node as it was written when it last finished a step (a node fixed before an
    // earlier resume is compared with its fixed version).
    let mut ran: Vec<(&str, &str)> = Vec::new();
    // Only finished steps: one that stopped the run runs again, so it may be changed.
    let finished = stored.steps.iter().filter(|s| {
        matches!(
            s.result,
            illumo_engine::journal::StepResult::Done(_)
                | illumo_engine::journal::StepResult::Failed { .. }
        )
    });
    for step in finished {
        let digest = match step.digest.as_str() {
            "" => stored
                .nodes
                .get(&step.node)
                .and_then(Value::as_str)
                .unwrap_or(""),
            d => d,
        };
        match ran.iter_mut().find(|(id, _)| *id == step.node) {
            Some(entry) => entry.1 = digest,
            None => ran.push((step.node.as_str(), digest)),
        }
    }
    for (id, before) in ran {
        let before = Some(before).filter(|b| !b.is_empty());
        let now = flow.index.get(id).map(|&i| flow.nodes[i].digest.as_str());
        let change = match (before, now) {
            (_, None) => "was removed from the flow",
            (Some(b), Some(n)) if b != n => "changed in the flow file",
            _ => continue,
        };
        if force {
            eprintln!("warning: node `{id}` {change} since it ran; --force: its journaled result is used as it is");
            continue;
        }
        return Err(Some(format!(
            "node `{id}` {change} since it ran in this run, so its journaled result may not be what the flow would give now; rerun, fork from it (`illumo run FLOW --from {id} --trace {}`), or resume with --force",
            &stored.trace_id[..8.min(stored.trace_id.len())]
        )));
    }
    Ok(())
}

/// Scripted replies the run's finished attempts used, per node: each `agent.request`
/// event in an attempt that ended, or that ended a journaled step (its end may not have
/// been written before a kill). A resumed run goes on with the next reply.
fn scripted_calls(
    conn: &rusqlite::Connection,
    trace_id: &str,
) -> Result<HashMap<String, usize>, String> {
    let mut stmt = conn
        .prepare(
            "SELECT s.name, count(*) FROM events e JOIN spans s ON s.span_id = e.span_id
             WHERE e.trace_id = ?1 AND e.name = 'agent.request' AND s.kind = 'node'
               AND (s.end_time IS NOT NULL
                    OR s.span_id IN (SELECT span_id FROM steps WHERE trace_id = ?1))
               AND json_extract(s.attributes, '$.error.type') IS NOT 'paused'
               AND coalesce(json_extract(s.attributes, '$.error.message'), '') NOT LIKE 'cancelled:%'
             GROUP BY s.name",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([trace_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
        })
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
}
