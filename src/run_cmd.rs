//! `illumo run`.

use crate::cli::{DurabilityArg, ReportFormat, RunArgs};
use crate::{inputs, EXIT_FAILED, EXIT_OUTPUT, EXIT_PAUSED, EXIT_USAGE};
use illumo_engine::journal::{Durability, Journal, Replay, RunStart};
use illumo_engine::redact::Redactor;
use illumo_engine::runner::{self, RunError, RunOptions};
use illumo_engine::tracer::{DbTracer, Fanout, Tracer};
use illumo_engine::{Flow, NodeRegistry};
use illumo_tracers::{ConsoleTracer, SqliteTracer};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn run(args: RunArgs, registry: &NodeRegistry) -> i32 {
    if args.data.is_some() && (args.print.is_some() || args.from.is_some()) {
        eprintln!("error: --data runs many times: --print and --from do not go with it (results go to stdout or -o, one JSON line per row)");
        return EXIT_USAGE;
    }
    match prepare(&args, registry) {
        Ok(prepared) => match &args.data {
            Some(data) => crate::batch::run(&args, prepared, data),
            None => execute(&Finish::of_run(&args), prepared),
        },
        Err(Some(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(None) => EXIT_USAGE,
    }
}

/// A run ready to start.
pub struct Prepared {
    pub flow: Arc<Flow>,
    pub ctx: Value,
    pub options: RunOptions,
    /// The database the run is journaled in, for the resume hint.
    pub journal_db: Option<String>,
    /// Kept open until the run ends: a journal's own database when no tracer writes it.
    pub keep: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

/// What happens with a run's result: where ctx goes, reports, and what stderr says.
pub struct Finish {
    pub print: Option<String>,
    pub output: Option<String>,
    pub pretty: bool,
    pub quiet: bool,
    pub report_path: Option<String>,
    pub report_format: ReportFormat,
    pub log_dir: Option<String>,
}

impl Finish {
    fn of_run(args: &RunArgs) -> Finish {
        Finish {
            print: args.print.clone(),
            output: args.output.clone(),
            pretty: args.pretty,
            quiet: args.quiet,
            report_path: args.report_path.clone(),
            report_format: args.report_format,
            log_dir: args.log_dir.clone(),
        }
    }
}

pub fn durability(arg: DurabilityArg) -> Durability {
    match arg {
        DurabilityArg::Batch | DurabilityArg::Off => Durability::Batch,
        DurabilityArg::Sync => Durability::Sync,
    }
}

/// May nodes ask on this terminal? Only if stdin is one, and `--no-input` was not given.
pub fn can_ask(no_input: bool) -> bool {
    use std::io::IsTerminal;
    !no_input && std::io::stdin().is_terminal()
}

/// The run's start as its journal records it.
pub fn run_start(flow: &Flow, options: &RunOptions, ctx: &Value, recorded: Value) -> RunStart {
    let path = std::path::Path::new(&flow.source.name);
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    RunStart {
        trace_id: options.trace_id,
        flow_path: absolute.display().to_string(),
        flow_hash: illumo_engine::journal::digest(flow.source.text.as_bytes()),
        nodes: flow
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.digest.clone()))
            .collect(),
        ctx: ctx.clone(),
        options: {
            let mut recorded = recorded;
            recorded["flow_name"] = json!(flow.name);
            recorded
        },
        forked_from: None,
    }
}

/// The options a resume needs again, as the journal records them.
fn recorded_options(args: &RunArgs) -> Result<Value, Option<String>> {
    let cwd = std::env::current_dir()
        .map_err(|e| Some(format!("cannot read the working folder: {e}")))?;
    let policy = match &args.policy {
        Some(arg) => Some(inputs::read_arg("--policy", arg)?.1),
        None => None,
    };
    Ok(json!({
        "cwd": cwd.display().to_string(),
        "flow": args.flow,
        "profile": args.profile,
        "policy": policy,
        "llm": args.llm,
        "write": args.write,
        "tracers": args.tracers,
        "tracer_args": args.tracer_args,
        "trace_db": args.trace_db,
        "state": args.state,
    }))
}

/// The profile and `--policy` layered, as a run applies them.
pub fn overrides(
    flow: &Flow,
    profile: Option<&str>,
    policy: Option<&str>,
) -> Result<illumo_engine::policy::PolicySpec, Option<String>> {
    let mut overrides = illumo_engine::policy::PolicySpec::default();
    if let Some(name) = profile {
        let Some(profile) = flow.profiles.get(name) else {
            let known: Vec<&str> = flow.profiles.keys().map(String::as_str).collect();
            return Err(Some(match known.len() {
                0 => format!("unknown profile `{name}`: the flow defines no `profiles`"),
                _ => format!(
                    "unknown profile `{name}`; the flow defines `{}`",
                    known.join("`, `")
                ),
            }));
        };
        overrides = profile.clone();
    }
    if let Some(policy) = policy {
        overrides = overrides.overlay(&inputs::policy(policy, flow)?);
    }
    Ok(overrides)
}

/// Everything checked before the run starts; `Err(None)` when the message was printed.
fn prepare(args: &RunArgs, registry: &NodeRegistry) -> Result<Prepared, Option<String>> {
    let (tracer, sqlite) = tracers(args)?;
    let flow = crate::load_for(&args.flow, registry, args.quiet, args.profile.as_deref())
        .map_err(|_| None)?;
    if args.from.is_some() && args.context.is_some() {
        return Err(Some(
            "--context cannot be used with --from: a fork starts from the traced run's ctx; change it with --set".into(),
        ));
    }
    let ctx = inputs::context(args.context.as_deref(), &args.sets)?;
    if let Some(path) = &args.print {
        inputs::ctx_path(path).map_err(|e| Some(format!("--print: {e}")))?;
    }
    if let Some(path) = &args.output {
        // Missing folders are created, before the run, so a bad `-o` costs no run.
        let parent = std::path::Path::new(path).parent();
        if let Some(parent) = parent.filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Some(format!(
                    "-o: cannot create the folder `{}`: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    let mut options = RunOptions::new(tracer);
    // `--redact` values, secret-looking variables and the credentials nodes send.
    let secrets = args.redact.iter().cloned().chain(flow.secrets());
    options.redactor = Arc::new(Redactor::from_env(secrets));
    options.permissions.write_files = args.write;
    options.permissions.ask = can_ask(args.no_input);
    options.overrides = overrides(&flow, args.profile.as_deref(), args.policy.as_deref())?;
    // A goto from `--policy`: the flow again, with the graph knowing where it leads (a
    // join then waits for what the goto may bring). Its warnings were shown already.
    let flow = match (&args.policy, &options.overrides.on_error) {
        (Some(_), Some(illumo_engine::policy::OnError::Goto(target))) => {
            let text = flow.source.text.clone();
            let path = args.flow.clone();
            let (profile, target) = (args.profile.as_deref(), target.clone());
            crate::load_text_with(&path, text, registry, profile, Some(&target)).map_err(|e| {
                eprint!(
                    "{}",
                    e.source.render_all(&e.diagnostics, crate::stderr_color())
                );
                None
            })?
        }
        _ => flow,
    };
    options.durability = durability(args.durability);
    options.max_text = max_text(&args.tracer_args)?;
    options.prices = prices(&args.tracer_args)?;
    let mut keep: Vec<Arc<dyn std::any::Any + Send + Sync>> = Vec::new();
    // The journal: in the sqlite tracer's file, or `--state`'s.
    let journal_db = match (&args.state, sqlite) {
        (Some(state), Some((path, db))) if same_file(state, &path) => Some((path, db)),
        (Some(state), _) => {
            let db = DbTracer::new(SqliteTracer::new(state)).map_err(|e| Some(e.to_string()))?;
            Some((state.clone(), Arc::new(db)))
        }
        (None, sqlite) => sqlite,
    };
    let flow = Arc::new(flow);
    let mut ctx = ctx;
    let mut forked_from = None;
    if let Some(name) = &args.service_name {
        // For `trace list` (illumo-flow's `root_service`), beside the OTLP resource.
        options
            .attributes
            .insert("service.name".into(), json!(name));
    }
    if let (Some(node), Some(trace)) = (&args.from, &args.trace) {
        let Some((path, _)) = &journal_db else {
            return Err(Some(
                "--from needs the database that holds `--trace`: add `--tracer sqlite --tracer-arg db_path=PATH` or `--state PATH`".into(),
            ));
        };
        let (at_ctx, input, trace_id) = fork_point(&flow, path, trace, node)?;
        // `--set` edits the forked ctx.
        ctx = apply_sets(at_ctx, &args.sets)?;
        let index = flow.index[node.as_str()];
        options.entry = Some((index, input));
        options.attributes.insert(
            "forked_from".into(),
            json!({"trace_id": trace_id, "node": node}),
        );
        forked_from = Some(json!({"trace_id": trace_id, "node": node}));
    }
    let mut journal_path = None;
    // The rows of a batch are not journaled (each is a run of its own).
    let journal_db = if args.data.is_some() {
        keep.extend(journal_db.map(|(_, db)| db as Arc<dyn std::any::Any + Send + Sync>));
        None
    } else {
        journal_db
    };
    let journal_db = match args.durability {
        DurabilityArg::Off if args.state.is_some() => {
            return Err(Some(
                "--state journals the run; it cannot go with --durability off".into(),
            ))
        }
        DurabilityArg::Off => {
            keep.extend(journal_db.map(|(_, db)| db as Arc<dyn std::any::Any + Send + Sync>));
            None
        }
        _ => journal_db,
    };
    if let Some((path, db)) = journal_db {
        if let Some(journal) = db.inner().journal(options.redactor.clone()) {
            let mut recorded = recorded_options(args)?;
            if let Some((node, input)) = &options.entry {
                recorded["entry"] = json!({"node": flow.id(*node), "input": input});
            }
            let mut start = run_start(&flow, &options, &ctx, recorded);
            start.forked_from = forked_from;
            journal
                .start(&start)
                .map_err(|e| Some(format!("cannot write the run journal in `{path}`: {e}")))?;
            options.journal = Some(Arc::new(journal));
        }
        keep.push(db);
        journal_path = Some(path);
    }
    Ok(Prepared {
        flow,
        ctx,
        options,
        journal_db: journal_path,
        keep,
    })
}

fn same_file(a: &str, b: &str) -> bool {
    let abs = |p: &str| std::path::absolute(p).unwrap_or_else(|_| p.into());
    abs(a) == abs(b)
}

/// `--set` on top of a forked ctx.
fn apply_sets(ctx: Value, sets: &[String]) -> Result<Value, Option<String>> {
    let edits = inputs::context(None, sets)?;
    let mut ctx = ctx;
    merge_sets(&mut ctx, edits);
    Ok(ctx)
}

/// Writes every leaf of `edits` (what `--set` built) into `ctx`.
fn merge_sets(ctx: &mut Value, edits: Value) {
    match (ctx, edits) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) if value.is_object() && existing.is_object() => {
                        merge_sets(existing, value)
                    }
                    _ => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (ctx, edits) => *ctx = edits,
    }
}

/// Where a fork starts: ctx just before `node` first ran in `trace`, and its input.
fn fork_point(
    flow: &Arc<Flow>,
    db: &str,
    trace: &str,
    node: &str,
) -> Result<(Value, Value, String), Option<String>> {
    let Some(&index) = flow.index.get(node) else {
        let hint =
            illumo_engine::diagnostic::did_you_mean(node, flow.nodes.iter().map(|n| n.id.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
        return Err(Some(format!("--from: the flow has no node `{node}`{hint}")));
    };
    let conn = illumo_tracers::store::open(std::path::Path::new(db)).map_err(Some)?;
    let trace_id = illumo_tracers::journal::resolve_run(&conn, trace).map_err(Some)?;
    let stored = illumo_tracers::journal::load(&conn, &trace_id).map_err(Some)?;
    let entry = stored_entry(flow, &stored.options)?;
    let replay = Replay {
        steps: stored.steps,
        answer: None,
        force: false,
    };
    let replayed = block_on(runner::replay_only(
        flow.clone(),
        stored.ctx,
        replay,
        entry,
        Some(index),
    ))
    .map_err(|e| Some(format!("--from: {e}")))?
    .map_err(|e| Some(format!("--from: trace `{trace_id}`: {e}")))?;
    match replayed.at {
        Some((ctx, input)) => Ok((ctx, input, trace_id)),
        None => Err(Some(format!(
            "--from: node `{node}` did not start in trace `{trace_id}` (it ran {} steps); fork from a node that ran",
            replayed.steps
        ))),
    }
}

/// A forked run's own start node, as its journal recorded it.
pub fn stored_entry(
    flow: &Flow,
    options: &Value,
) -> Result<Option<(usize, Value)>, Option<String>> {
    let Some(entry) = options.get("entry").filter(|e| !e.is_null()) else {
        return Ok(None);
    };
    let node = entry["node"].as_str().unwrap_or_default();
    match flow.index.get(node) {
        Some(&index) => Ok(Some((index, entry["input"].clone()))),
        None => Err(Some(format!(
            "the run started at node `{node}`, which the flow no longer has"
        ))),
    }
}

/// Runs a future on a small runtime of its own (a replay, which runs no node).
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    Ok(runtime.block_on(future))
}

/// Each tracer and the `--tracer-arg` keys it takes.
const TRACERS: [(&str, &[&str]); 4] = [
    ("console", &["max_text", "prices"]),
    ("sqlite", &["db_path", "max_text", "prices"]),
    (
        "otel",
        &["exporter_endpoint", "protocol", "max_text", "prices"],
    ),
    ("none", &[]),
];

/// `--tracer-arg prices=FILE`: USD per million tokens by model (a YAML or JSON map
/// `{model: {input, output}}`; a key matches the models it starts).
pub fn prices(tracer_args: &[String]) -> Result<runner::Prices, Option<String>> {
    let Some(file) = tracer_args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("prices="))
    else {
        return Ok(Arc::default());
    };
    let (_, text) = inputs::read_arg("--tracer-arg prices", &format!("@{file}"))?;
    let table: Value = serde_yaml::from_str(&text).map_err(|e| {
        Some(format!(
            "--tracer-arg prices={file}: not valid YAML or JSON: {e}"
        ))
    })?;
    let Value::Object(models) = table else {
        return Err(Some(format!(
            "--tracer-arg prices={file}: expected a map like `gpt-4o-mini: {{input: 0.15, output: 0.6}}` (USD per million tokens)"
        )));
    };
    let mut out = Vec::new();
    for (model, price) in models {
        let (Some(input), Some(output)) = (price["input"].as_f64(), price["output"].as_f64())
        else {
            return Err(Some(format!(
                "--tracer-arg prices={file}: `{model}` needs `input` and `output` (USD per million tokens)"
            )));
        };
        out.push((model, input, output));
    }
    Ok(Arc::new(out))
}

/// `--tracer-arg max_text=N`: how many characters of prompts, replies and the run's ctx
/// traces keep (the last one given counts).
pub fn max_text(tracer_args: &[String]) -> Result<usize, Option<String>> {
    let Some(value) = tracer_args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("max_text="))
    else {
        return Ok(illumo_engine::node::DEFAULT_MAX_TEXT);
    };
    match value.parse::<usize>() {
        Ok(n) if (100..=16 * 1024 * 1024).contains(&n) => Ok(n),
        _ => Err(Some(format!(
            "--tracer-arg max_text={value}: expected a number of characters from 100 to 16777216 (default {})",
            illumo_engine::node::DEFAULT_MAX_TEXT
        ))),
    }
}

/// The sqlite tracer's file and the tracer, whose writer the journal shares.
pub type SqliteDb = (String, Arc<DbTracer<SqliteTracer>>);

/// The tracers, and the sqlite one's database when it is among them.
pub type Tracers = (Arc<dyn Tracer>, Option<SqliteDb>);

fn tracers(args: &RunArgs) -> Result<Tracers, Option<String>> {
    let (tracer, sqlite) = tracers_of(&TracerChoice {
        tracers: &args.tracers,
        tracer_args: &args.tracer_args,
        trace_db: args.trace_db.as_deref(),
        service_name: args.service_name.as_deref(),
        quiet: args.quiet,
        default: "console",
    })?;
    let Some(path) = &args.events else {
        return Ok((tracer, sqlite));
    };
    let events = illumo_tracers::EventsTracer::open(path).map_err(Some)?;
    let both: Arc<dyn Tracer> = Arc::new(Fanout(vec![tracer, Arc::new(events)]));
    Ok((both, sqlite))
}

/// Which tracers a command reports to, as `--tracer`, `--tracer-arg`, `--trace-db` and
/// `--service-name` chose them.
pub struct TracerChoice<'a> {
    pub tracers: &'a [String],
    pub tracer_args: &'a [String],
    pub trace_db: Option<&'a str>,
    pub service_name: Option<&'a str>,
    pub quiet: bool,
    /// The tracer when none is named.
    pub default: &'static str,
}

pub fn tracers_of(args: &TracerChoice) -> Result<Tracers, Option<String>> {
    let mut names: Vec<&str> = if args.tracers.is_empty() {
        vec![args.default]
    } else {
        args.tracers.iter().map(String::as_str).collect()
    };
    // illumo-flow's `--trace-db PATH`: the sqlite tracer's file, and that tracer.
    if args.trace_db.is_some() && !names.contains(&"sqlite") {
        names.push("sqlite");
    }
    let known: Vec<&str> = TRACERS.iter().map(|(n, _)| *n).collect();
    if let Some(other) = names.iter().find(|n| !known.contains(n)) {
        let hint = illumo_engine::diagnostic::did_you_mean(other, known.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        return Err(Some(format!(
            "unknown tracer `{other}`; {hint}this build has `{}`",
            known.join("`, `")
        )));
    }
    let mut settings: Vec<(String, String)> = Vec::new();
    for arg in args.tracer_args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(Some(format!(
                "--tracer-arg `{arg}`: expected KEY=VALUE, like `db_path=./trace.db`"
            )));
        };
        let takers: Vec<&str> = TRACERS
            .iter()
            .filter(|(_, keys)| keys.contains(&key))
            .map(|(n, _)| *n)
            .collect();
        if !takers.iter().any(|t| names.contains(t)) {
            return Err(Some(match takers.first() {
                Some(t) => format!(
                    "--tracer-arg `{key}` is a setting of the `{t}` tracer; add `--tracer {t}`"
                ),
                None => format!(
                    "--tracer-arg `{key}` is not a setting of any tracer (sqlite takes `db_path`; otel takes `exporter_endpoint` and `protocol`; every tracer takes `max_text` and `prices`)"
                ),
            }));
        }
        settings.push((key.to_string(), value.to_string()));
    }
    if let Some(path) = args.trace_db {
        settings.insert(0, ("db_path".into(), path.to_string()));
    }
    if let Some(name) = args.service_name {
        settings.insert(0, ("service_name".into(), name.to_string()));
    }
    let setting = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut fanout = Fanout::default();
    let mut sqlite = None;
    for name in names {
        match name {
            "console" if !args.quiet => fanout
                .0
                .push(Arc::new(ConsoleTracer::new(crate::color_choice()))),
            "console" | "none" => {}
            "sqlite" => {
                let path = setting("db_path").unwrap_or_else(|| "trace.db".to_string());
                let db = Arc::new(
                    DbTracer::new(SqliteTracer::new(&path)).map_err(|e| Some(e.to_string()))?,
                );
                fanout.0.push(db.clone());
                sqlite.get_or_insert((path, db));
            }
            "otel" => fanout.0.push(otel(&setting)?),
            other => unreachable!("tracer `{other}` was checked above"),
        }
    }
    Ok((Arc::new(fanout), sqlite))
}

#[cfg(feature = "otlp")]
fn otel(setting: &dyn Fn(&str) -> Option<String>) -> Result<Arc<dyn Tracer>, Option<String>> {
    use illumo_tracers::{OtlpConfig, OtlpTracer};
    let mut config =
        OtlpConfig::from_args(setting("exporter_endpoint"), setting("protocol")).map_err(Some)?;
    config.service_name = setting("service_name");
    let db = DbTracer::new(OtlpTracer::new(config)).map_err(|e| Some(e.to_string()))?;
    Ok(Arc::new(db))
}

#[cfg(not(feature = "otlp"))]
fn otel(_: &dyn Fn(&str) -> Option<String>) -> Result<Arc<dyn Tracer>, Option<String>> {
    Err(Some(
        "this illumo was built without OTLP export (cargo feature `otlp`); rebuild with default features".into(),
    ))
}

pub fn execute(args: &Finish, prepared: Prepared) -> i32 {
    let Prepared {
        flow,
        ctx,
        options,
        journal_db,
        keep,
    } = prepared;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let interrupt = options.interrupt.clone();
    let redactor = options.redactor.clone();
    let write = options.permissions.write_files;
    let overrides = options.overrides.clone();
    let flow_for_report = flow.clone();
    crate::leak_at_exit(flow.clone());
    let mut signals = match runtime.block_on(async { crate::signals::Listener::install() }) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot handle signals: {e}");
            return EXIT_FAILED;
        }
    };
    let (result, signal) = runtime.block_on(async move {
        let run = tokio::spawn(runner::run(flow, ctx, options));
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => (result, None),
            signal = signals.first() => {
                eprintln!("\ninterrupted by {}: stopping the running nodes", signal.name);
                interrupt.interrupt(signal.name);
                // A second signal while the nodes stop: stop now.
                tokio::select! {
                    result = &mut run => (result, Some(signal)),
                    again = signals.first() => {
                        eprintln!("interrupted again by {}: exiting without waiting", again.name);
                        std::process::exit(again.exit_code);
                    }
                }
            }
        }
    });
    // A node's file read that never returns (a blocking device) must not hold the exit:
    // its thread is left behind, not waited for.
    runtime.shutdown_background();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: the run crashed: {e}");
            return EXIT_FAILED;
        }
    };
    drop(keep);
    let (ctx, trace_id, code) = match result {
        Ok(out) => (out.ctx, out.trace_id, 0),
        Err(failure) if matches!(failure.error, RunError::Paused { .. }) => {
            let hint = Resume {
                trace_id: failure.trace_id.to_string(),
                db: journal_db.clone(),
                write,
            };
            paused(&failure.error, &hint, &redactor);
            (failure.ctx, failure.trace_id, EXIT_PAUSED)
        }
        Err(failure) => {
            report(&failure.error, &failure.trace_id.to_string(), &redactor);
            if args.report_path.is_some() || args.log_dir.is_some() {
                let digest = crate::report::of(&failure, &flow_for_report, &overrides, &redactor);
                let written = args
                    .report_path
                    .iter()
                    .map(|path| crate::report::write(&digest, path, args.report_format))
                    .chain(
                        args.log_dir
                            .iter()
                            .map(|dir| crate::report::append_log(&digest, dir)),
                    );
                for result in written {
                    if let Err(e) = result {
                        eprintln!("warning: the failure report: {}", redactor.text(&e));
                    }
                }
            }
            let code = match (&failure.error, signal) {
                (RunError::Interrupted { .. }, Some(signal)) => signal.exit_code,
                (RunError::Interrupted { .. }, None) => crate::signals::SIGINT.exit_code,
                _ => EXIT_FAILED,
            };
            (failure.ctx, failure.trace_id, code)
        }
    };
    let written = write_ctx(args, ctx, &redactor);
    if let Err(e) = written {
        eprintln!("error: {}", redactor.text(&e));
        if code == 0 {
            eprintln!("  the flow succeeded; trace_id: {trace_id}");
            return EXIT_OUTPUT;
        }
        return code;
    }
    if !args.quiet && code == 0 {
        eprintln!("trace_id: {trace_id}");
    }
    code
}

/// How a paused run is resumed.
struct Resume {
    trace_id: String,
    db: Option<String>,
    /// Was it started with `--write` (which the resume must give again)?
    write: bool,
}

/// A paused run: what it waits for, and the command that answers.
fn paused(error: &RunError, resume: &Resume, redactor: &Redactor) {
    let RunError::Paused { node, message } = error else {
        return;
    };
    let trace_id = &resume.trace_id;
    let message = redactor.text(message);
    let mut lines = message.lines();
    eprintln!("paused at {node}: {}", lines.next().unwrap_or_default());
    for line in lines {
        eprintln!("  {line}");
    }
    match &resume.db {
        Some(db) => {
            let db = shell_word(db);
            let write = if resume.write { " --write" } else { "" };
            eprintln!("  resume with: illumo resume {trace_id} --db {db}{write} --input '{{\"choice\": \"approve\"}}'");
        }
        None => eprintln!(
            "  this run has no journal, so it cannot be resumed: run it with `--tracer sqlite` or `--state PATH`"
        ),
    }
    eprintln!("  trace_id: {trace_id}");
}

/// A path as one shell word.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn report(error: &RunError, trace_id: &str, redactor: &Redactor) {
    eprintln!("error: {}", redactor.text(&error.to_string()));
    if let RunError::NodeFailed { policy, .. } = error {
        eprintln!("  policy: {policy}");
    }
    eprintln!("  trace_id: {trace_id}");
}

/// Prints (or writes) the final ctx, with secrets replaced.
fn write_ctx(args: &Finish, mut ctx: Value, redactor: &Redactor) -> Result<(), String> {
    redactor.value(&mut ctx);
    let ctx = std::mem::ManuallyDrop::new(ctx);
    if let Some(path) = &args.print {
        let path = inputs::ctx_path(path)?;
        let text = match path.get(&ctx) {
            Some(Value::String(s)) => s.clone(),
            Some(other) if args.pretty => serde_json::to_string_pretty(other).unwrap_or_default(),
            Some(other) => other.to_string(),
            None => return Err(format!("--print: `{path}` is not in the final ctx")),
        };
        println!("{}", text.trim_end_matches('\n'));
        return Ok(());
    }
    let text = if args.pretty {
        serde_json::to_string_pretty(&*ctx)
    } else {
        serde_json::to_string(&*ctx)
    }
    .map_err(|e| format!("cannot encode ctx: {e}"))?;
    match &args.output {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .map_err(|e| format!("cannot write `{path}`: {e}")),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}
