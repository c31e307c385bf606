//! Batch runs: `illumo run FLOW --data rows.jsonl|rows.csv`: every row is a run of its
//! own (a trace each, all sharing a `batch_id`), several at once; rows that fail do not
//! stop the others.

use crate::cli::RunArgs;
use crate::run_cmd::Prepared;
use crate::{inputs, EXIT_FAILED, EXIT_USAGE};
use illumo_engine::path::set_steps;
use illumo_engine::runner::{self, RunOptions};
use illumo_engine::tracer::{Fanout, SpanData, TraceId, Tracer};
use serde_json::{json, Map, Value};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the LLM tokens the rows' agents report.
#[derive(Default)]
struct Tokens(AtomicU64);

impl Tracer for Tokens {
    fn span_end(&self, span: &SpanData) {
        if let Some(usage) = span.attribute("gen_ai").and_then(|g| g.get("usage")) {
            let count = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            self.0.fetch_add(
                count("input_tokens") + count("output_tokens"),
                Ordering::Relaxed,
            );
        }
    }
}

/// The rows of a JSONL or CSV file (a header line, then one row per line; values that
/// read as JSON numbers or booleans are those, the rest text).
pub fn rows(path: &str) -> Result<Vec<Value>, String> {
    let (_, text) = inputs::read_arg("--data", &format!("@{path}"))?;
    if path.ends_with(".csv") {
        return csv_rows(path, &text);
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| format!("--data `{path}`:{}: not a JSON object: {e}", i + 1))?;
        if !value.is_object() {
            return Err(format!(
                "--data `{path}`:{}: a row must be a JSON object",
                i + 1
            ));
        }
        rows.push(value);
    }
    if rows.is_empty() {
        return Err(format!("--data `{path}` has no rows"));
    }
    Ok(rows)
}

/// Splits one CSV line: commas, and double quotes around a field (`""` inside one).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

fn csv_rows(path: &str, text: &str) -> Result<Vec<Value>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(format!("--data `{path}` is empty"));
    };
    let names =
        csv_fields(header.trim_end_matches('\r')).map_err(|e| format!("--data `{path}`:1: {e}"))?;
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields = csv_fields(line.trim_end_matches('\r'))
            .map_err(|e| format!("--data `{path}`:{}: {e}", i + 1))?;
        if fields.len() != names.len() {
            return Err(format!(
                "--data `{path}`:{}: {} fields, but the header has {}",
                i + 1,
                fields.len(),
                names.len()
            ));
        }
        let mut row = Map::new();
        for (name, field) in names.iter().zip(fields) {
            let value = match serde_json::from_str::<Value>(&field) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
                _ => Value::String(field),
            };
            row.insert(name.clone(), value);
        }
        rows.push(Value::Object(row));
    }
    if rows.is_empty() {
        return Err(format!("--data `{path}` has a header and no rows"));
    }
    Ok(rows)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn run(args: &RunArgs, prepared: Prepared, data: &str) -> i32 {
    let rows = match rows(data) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let data_path = match &args.data_path {
        Some(p) => match inputs::ctx_path(p) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: --data-path: {e}");
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let Prepared {
        flow,
        ctx,
        options,
        keep,
        ..
    } = prepared;
    let tokens = Arc::new(Tokens::default());
    let tracer: Arc<dyn Tracer> = Arc::new(Fanout(vec![options.tracer.clone(), tokens.clone()]));
    let batch_id = TraceId::random().to_string()[..16].to_string();
    let parallel = args.parallel.unwrap_or(4).clamp(1, 256);
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
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("error: -o: cannot write `{path}`: {e}");
                return EXIT_USAGE;
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let terminal = std::io::stderr().is_terminal() && !args.quiet;
    if !args.quiet {
        eprintln!(
            "batch {batch_id}: {} rows, {parallel} at a time",
            rows.len()
        );
    }
    let redactor = options.redactor.clone();
    let started = Instant::now();
    let total = rows.len();
    let results = runtime.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, row) in rows.into_iter().enumerate() {
            let mut row_ctx = ctx.clone();
            match &data_path {
                Some(path) => {
                    let _ = set_steps(&mut row_ctx, &path.steps, row);
                }
                None => {
                    if let (Value::Object(base), Value::Object(fields)) = (&mut row_ctx, row) {
                        base.extend(fields);
                    }
                }
            }
            let mut row_options = RunOptions::new(tracer.clone());
            row_options.overrides = options.overrides.clone();
            row_options.redactor = options.redactor.clone();
            row_options.permissions = options.permissions;
            row_options.permissions.ask = false;
            row_options.max_text = options.max_text;
            row_options.prices = options.prices.clone();
            row_options
                .attributes
                .insert("batch".into(), json!({"id": batch_id, "row": index}));
            let (flow, limit) = (flow.clone(), limit.clone());
            tasks.spawn(async move {
                let _slot = limit.acquire_owned().await;
                let begun = Instant::now();
                let result = runner::run(flow, row_ctx, row_options).await;
                (index, result, begun.elapsed())
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok(done) = joined else { continue };
            if terminal {
                let failed = results
                    .iter()
                    .filter(|(_, r, _): &&(usize, Result<_, _>, Duration)| r.is_err())
                    .count()
                    + usize::from(done.1.is_err());
                eprint!("\r[{}/{total}] {failed} failed", results.len() + 1);
            }
            results.push(done);
        }
        if terminal {
            eprintln!();
        }
        results.sort_by_key(|(i, _, _)| *i);
        results
    });
    drop(keep);
    let mut durations = Vec::new();
    let mut failed = 0;
    for (index, result, took) in results {
        let ms = (took.as_secs_f64() * 1e6).round() / 1e3;
        durations.push(ms);
        let line = match result {
            Ok(run) => {
                let mut ctx = run.ctx;
                redactor.value(&mut ctx);
                json!({"row": index, "trace_id": run.trace_id.to_string(), "status": "ok", "duration_ms": ms, "ctx": ctx})
            }
            Err(failure) => {
                failed += 1;
                let message = redactor.text(&failure.error.to_string()).into_owned();
                eprintln!("row {index} failed: {message} (trace {})", failure.trace_id);
                json!({"row": index, "trace_id": failure.trace_id.to_string(), "status": "failed", "duration_ms": ms, "error": message})
            }
        };
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    durations.sort_by(f64::total_cmp);
    if !args.quiet || failed > 0 {
        let tokens = tokens.0.load(Ordering::Relaxed);
        eprintln!(
            "batch {batch_id}: {} ok, {failed} failed in {:.2}s; p50 {:.1}ms, p95 {:.1}ms{}",
            total - failed,
            started.elapsed().as_secs_f64(),
            percentile(&durations, 0.5),
            percentile(&durations, 0.95),
            if tokens > 0 {
                format!("; {tokens} tokens")
            } else {
                String::new()
            }
        );
    }
    if failed > 0 {
        EXIT_FAILED
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_split_on_commas_outside_quotes() {
        assert_eq!(
            csv_fields(r#"a,"b, c","say ""hi""",,d"#).unwrap(),
            ["a", "b, c", "say \"hi\"", "", "d"]
        );
        assert!(csv_fields(r#"a,"open"#).is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.95)), (10.0, 19.0));
    }
}
