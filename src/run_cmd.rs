//! `illumo run`.

use crate::cli::RunArgs;
use crate::{inputs, EXIT_FAILED, EXIT_OUTPUT, EXIT_USAGE};
use illumo_engine::redact::Redactor;
use illumo_engine::runner::{self, RunError, RunOptions};
use illumo_engine::tracer::{DbTracer, Fanout, Tracer};
use illumo_engine::NodeRegistry;
use illumo_tracers::{ConsoleTracer, SqliteTracer};
use serde_json::Value;
use std::sync::Arc;

pub fn run(args: RunArgs, registry: &NodeRegistry) -> i32 {
    match prepare(&args, registry) {
        Ok((flow, ctx, options)) => execute(&args, flow, ctx, options),
        Err(Some(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(None) => EXIT_USAGE,
    }
}

type Prepared = (Arc<illumo_engine::Flow>, Value, RunOptions);

/// Everything checked before the run starts; `Err(None)` when the message was printed.
fn prepare(args: &RunArgs, registry: &NodeRegistry) -> Result<Prepared, Option<String>> {
    let tracer = tracers(args)?;
    let flow = crate::load(&args.flow, registry, args.quiet).map_err(|_| None)?;
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
    if let Some(name) = &args.profile {
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
        options.overrides = profile.clone();
    }
    if let Some(policy) = &args.policy {
        options.overrides = options.overrides.overlay(&inputs::policy(policy)?);
    }
    Ok((Arc::new(flow), ctx, options))
}

/// Each tracer and the `--tracer-arg` keys it takes.
const TRACERS: [(&str, &[&str]); 4] = [
    ("console", &[]),
    ("sqlite", &["db_path"]),
    ("otel", &["exporter_endpoint", "protocol"]),
    ("none", &[]),
];

fn tracers(args: &RunArgs) -> Result<Arc<dyn Tracer>, Option<String>> {
    let mut names: Vec<&str> = if args.tracers.is_empty() {
        vec!["console"]
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
    for arg in &args.tracer_args {
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
                    "--tracer-arg `{key}` is not a setting of any tracer (sqlite takes `db_path`; otel takes `exporter_endpoint` and `protocol`)"
                ),
            }));
        }
        settings.push((key.to_string(), value.to_string()));
    }
    if let Some(path) = &args.trace_db {
        settings.insert(0, ("db_path".into(), path.clone()));
    }
    if let Some(name) = &args.service_name {
        settings.insert(0, ("service_name".into(), name.clone()));
    }
    let setting = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut fanout = Fanout::default();
    for name in names {
        match name {
            "console" if !args.quiet => fanout
                .0
                .push(Arc::new(ConsoleTracer::new(crate::color_choice()))),
            "console" | "none" => {}
            "sqlite" => {
                let path = setting("db_path").unwrap_or_else(|| "trace.db".to_string());
                let db =
                    DbTracer::new(SqliteTracer::new(&path)).map_err(|e| Some(e.to_string()))?;
                fanout.0.push(Arc::new(db));
            }
            "otel" => fanout.0.push(otel(&setting)?),
            other => unreachable!("tracer `{other}` was checked above"),
        }
    }
    Ok(Arc::new(fanout))
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

fn execute(args: &RunArgs, flow: Arc<illumo_engine::Flow>, ctx: Value, options: RunOptions) -> i32 {
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
    let (ctx, trace_id, code) = match result {
        Ok(out) => (out.ctx, out.trace_id, 0),
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

fn report(error: &RunError, trace_id: &str, redactor: &Redactor) {
    eprintln!("error: {}", redactor.text(&error.to_string()));
    if let RunError::NodeFailed { policy, .. } = error {
        eprintln!("  policy: {policy}");
    }
    eprintln!("  trace_id: {trace_id}");
}

/// Prints (or writes) the final ctx, with secrets replaced.
fn write_ctx(args: &RunArgs, mut ctx: Value, redactor: &Redactor) -> Result<(), String> {
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
