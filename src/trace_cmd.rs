//! `illumo trace list|show|search`: read what the sqlite tracer recorded.

use crate::cli::{ListFormat, ShowFormat, TraceCommand};
use crate::EXIT_USAGE;
use illumo_engine::duration::format_duration;
use illumo_tracers::store::{self, EventRow, RunSummary, Search, SpanRow};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub fn run(command: TraceCommand) -> i32 {
    match execute(command) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
    }
}

fn execute(command: TraceCommand) -> Result<String, String> {
    match command {
        TraceCommand::List {
            db,
            limit,
            format,
            traceql,
            flow,
            status,
            since,
        } => {
            if let Some(s) = &status {
                if !["ok", "failed", "interrupted", "paused", "running"].contains(&s.as_str()) {
                    return Err(format!(
                        "--status `{s}`: a run is ok, failed, interrupted, paused or running"
                    ));
                }
            }
            let since = since.as_deref().map(since_time).transpose()?;
            let filters = traceql
                .as_deref()
                .map(crate::traceql::parse)
                .transpose()?
                .unwrap_or_default();
            if !filters.attributes.is_empty() || filters.kind.is_some() || filters.status.is_some()
            {
                return Err("--traceql: `trace list` filters by trace_id, span.name (the flow) and limit; use `trace search` for the rest".into());
            }
            if let Some(unknown) = filters.pick.iter().find(|c| !PICKS.contains(&c.as_str())) {
                return Err(format!(
                    "--traceql: pick(`{unknown}`): a run's columns are `{}`",
                    PICKS.join("`, `")
                ));
            }
            let conn = store::open(Path::new(&db))?;
            let limit = filters.limit.unwrap_or(limit);
            let filtering = status.is_some() || since.is_some();
            let mut runs = store::list_runs_where(
                &conn,
                if filtering { usize::MAX >> 1 } else { limit },
                filters.trace_id.as_deref(),
                flow.as_deref().or(filters.name.as_deref()),
            )?;
            runs.retain(|r| {
                status
                    .as_ref()
                    .is_none_or(|s| r.state.trim_end_matches('?') == s)
                    && since
                        .as_ref()
                        .is_none_or(|t| r.start_time.as_str() >= t.as_str())
            });
            runs.truncate(limit);
            let tokens: Vec<(Option<i64>, Option<f64>)> = runs
                .iter()
                .map(|r| store::tokens(&conn, &r.trace_id))
                .collect::<Result<_, _>>()?;
            if !filters.pick.is_empty() {
                return picked(&conn, &runs, &filters.pick, format, &db);
            }
            Ok(match format {
                ListFormat::Json => json_text(&Value::Array(
                    runs.iter()
                        .zip(&tokens)
                        .map(|(r, t)| {
                            let mut v = run_json(r);
                            v["tokens"] = json!(t.0);
                            v["cost_usd"] = json!(t.1);
                            v
                        })
                        .collect(),
                )),
                ListFormat::Table if runs.is_empty() => format!("no runs in {db}\n"),
                ListFormat::Table | ListFormat::Markdown => rows_as(
                    format,
                    &[
                        "TRACE ID", "FLOW", "START", "DURATION", "STATUS", "NODES", "STATE",
                        "RESUME", "TOKENS", "COST",
                    ],
                    runs.iter()
                        .zip(&tokens)
                        .map(|(r, t)| {
                            vec![
                                r.trace_id.clone(),
                                r.flow.clone(),
                                r.start_time.clone(),
                                duration(r.duration_ms),
                                status_text(&r.status, r.duration_ms),
                                r.nodes.to_string(),
                                r.state.clone(),
                                if r.resumable { "yes" } else { "no" }.to_string(),
                                t.0.map_or("-".to_string(), |t| t.to_string()),
                                t.1.map_or("-".to_string(), |c| format!("${c:.4}")),
                            ]
                        })
                        .collect(),
                ),
            })
        }
        TraceCommand::Show {
            trace_id,
            db,
            format,
            traceql,
            io,
            no_events,
            include_events: _,
        } => {
            let filters = traceql
                .as_deref()
                .map(crate::traceql::parse)
                .transpose()?
                .unwrap_or_default();
            if filters.name.is_some()
                || filters.kind.is_some()
                || filters.status.is_some()
                || !filters.attributes.is_empty()
                || filters.limit.is_some()
                || !filters.pick.is_empty()
            {
                return Err("--traceql: `trace show` picks one trace by trace_id=\"...\"; use `trace search` to filter spans".into());
            }
            let conn = store::open(Path::new(&db))?;
            let trace_id = match trace_id.or(filters.trace_id) {
                Some(id) => store::resolve_trace(&conn, &id)?,
                // The latest run.
                None => store::list_runs(&conn, 1)?
                    .pop()
                    .map(|r| r.trace_id)
                    .ok_or_else(|| format!("no runs in {db}"))?,
            };
            let mut spans = store::trace(&conn, &trace_id)?;
            if no_events {
                spans.iter_mut().for_each(|s| s.events.clear());
            }
            Ok(match format {
                ShowFormat::Tree => tree(&spans, io),
                ShowFormat::Table => span_table(&spans),
                ShowFormat::Json => json_text(&json!({
                    "trace_id": trace_id,
                    "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
                })),
            })
        }
        TraceCommand::Search {
            db,
            status,
            node,
            attrs,
            timeouts,
            trace,
            limit,
            format,
            traceql,
        } => {
            let filters = traceql
                .as_deref()
                .map(crate::traceql::parse)
                .transpose()?
                .unwrap_or_default();
            if !filters.pick.is_empty() {
                return Err("--traceql: pick(...) chooses the columns of `trace list`; `trace search` prints spans".into());
            }
            let conn = store::open(Path::new(&db))?;
            let mut attrs = attrs
                .iter()
                .map(|a| {
                    a.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| {
                            format!("--attr `{a}`: expected PATH=VALUE, like `node.type=Command`")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(s) = &status {
                if !["ok", "error", "unset"].contains(&s.to_lowercase().as_str()) {
                    return Err(format!("--status `{s}`: expected OK or ERROR"));
                }
            }
            attrs.extend(filters.attributes);
            if let Some(kind) = &filters.kind {
                if kind != "node" && kind != "flow" {
                    return Err(format!(
                        "--traceql: span.kind `{kind}`: spans are `flow` or `node`"
                    ));
                }
            }
            let trace_id = trace
                .or(filters.trace_id)
                .map(|t| store::resolve_trace(&conn, &t))
                .transpose()?;
            let search = Search {
                status: status.or(filters.status),
                node: node.or(filters.name),
                attrs,
                timeouts,
                trace_id,
                kind: filters.kind,
                limit: filters.limit.unwrap_or(limit),
            };
            let spans = store::search(&conn, &search)?;
            Ok(match format {
                ListFormat::Json => json_text(&Value::Array(spans.iter().map(span_json).collect())),
                ListFormat::Table if spans.is_empty() => "no matching node attempts\n".to_string(),
                ListFormat::Table | ListFormat::Markdown => rows_as(
                    format,
                    &[
                        "TRACE ID", "START", "NODE", "TYPE", "ATTEMPT", "STATUS", "DURATION",
                        "ERROR",
                    ],
                    spans
                        .iter()
                        .map(|s| {
                            vec![
                                s.trace_id.clone(),
                                s.start_time.clone(),
                                s.name.clone(),
                                attr(s, "/node/type"),
                                attr(s, "/attempt"),
                                status_text(&s.status, s.duration_ms),
                                duration(s.duration_ms),
                                short(&attr(s, "/error/message"), 60),
                            ]
                        })
                        .collect(),
                ),
            })
        }
    }
}

fn json_text(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

fn run_json(r: &RunSummary) -> Value {
    json!({
        "trace_id": r.trace_id, "flow": r.flow, "start_time": r.start_time,
        "duration_ms": r.duration_ms, "status": r.status, "nodes": r.nodes,
        "state": r.state, "resumable": r.resumable,
    })
}

fn span_json(s: &SpanRow) -> Value {
    json!({
        "span_id": s.span_id, "trace_id": s.trace_id, "parent_id": s.parent_id, "name": s.name,
        "kind": s.kind, "start_time": s.start_time, "end_time": s.end_time,
        "duration_ms": s.duration_ms, "status": s.status, "attributes": s.attributes,
        "events": s.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

fn event_json(e: &EventRow) -> Value {
    json!({"name": e.name, "timestamp": e.timestamp, "level": e.level, "attributes": e.attributes})
}

/// A duration for people; `?` for a value no clock gives (negative, centuries, not a
/// number), which `--format json` still shows as stored.
fn duration(ms: Option<f64>) -> String {
    ms.map_or("-".to_string(), |ms| {
        match Duration::try_from_secs_f64(ms / 1000.0) {
            Ok(d) if d < Duration::from_secs(100 * 365 * 24 * 3600) => format_duration(d),
            _ => "?".to_string(),
        }
    })
}

/// A span that never ended belongs to a run that is still going or was killed.
fn status_text(status: &str, duration_ms: Option<f64>) -> String {
    match (status, duration_ms) {
        ("UNSET", None) => "RUNNING?".to_string(),
        (s, _) => s.to_string(),
    }
}

fn attr(span: &SpanRow, pointer: &str) -> String {
    match span.attributes.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max - 1).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Rows as a padded table or a markdown table.
fn rows_as(format: ListFormat, headers: &[&str], rows: Vec<Vec<String>>) -> String {
    match format {
        ListFormat::Markdown => markdown_table(headers, rows),
        _ => table(headers, rows),
    }
}

fn markdown_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let cell = |c: &str| match c {
        "" => "-".to_string(),
        c => c.replace('|', "\\|"),
    };
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push_str(&format!("| {} |\n", vec!["---"; headers.len()].join(" | ")));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn mark(span: &SpanRow) -> &'static str {
    match (span.status.as_str(), span.end_time.is_some()) {
        ("OK", _) => "✓",
        ("ERROR", _) => "✗",
        _ => "…",
    }
}

fn event_line(e: &EventRow) -> String {
    let details: Vec<String> = match &e.attributes {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={}", short(s, 80)),
                other => format!("{k}={other}"),
            })
            .collect(),
        _ => vec![],
    };
    format!("· {}  {}", e.name, details.join(" "))
}

/// The run as an indented tree: the flow, its node attempts (loop bodies under their
/// loop), and each attempt's events.
/// `--since`: a duration back from now, or a time (compared as the stored UTC text).
fn since_time(text: &str) -> Result<String, String> {
    if let Some(back) = illumo_engine::duration::parse_duration(text) {
        let at = std::time::SystemTime::now()
            .checked_sub(back)
            .unwrap_or(std::time::UNIX_EPOCH);
        return Ok(illumo_engine::ids::iso8601(at));
    }
    let looks_like_time = text.len() >= 10
        && text.as_bytes()[4] == b'-'
        && text.as_bytes()[7] == b'-'
        && text[..4].chars().all(|c| c.is_ascii_digit());
    if looks_like_time {
        return Ok(text.to_string());
    }
    Err(format!(
        "--since `{text}`: give a duration back from now (`30m`, `2h`) or a UTC time (`2026-12-01T09:00`)"
    ))
}

/// The run columns illumo-flow's `pick(...)` names.
const PICKS: [&str; 6] = [
    "trace_id",
    "root_service",
    "root_name",
    "start_time",
    "end_time",
    "span_count",
];

/// `trace list` with illumo-flow's `pick(a, b)`: those columns, under those names.
fn picked(
    conn: &rusqlite::Connection,
    runs: &[RunSummary],
    picks: &[String],
    format: ListFormat,
    db: &str,
) -> Result<String, String> {
    let mut rows = Vec::new();
    for r in runs {
        let spans = store::trace(conn, &r.trace_id)?;
        let root = spans.iter().find(|s| s.kind == "flow");
        let end = spans
            .iter()
            .filter_map(|s| s.end_time.clone())
            .max()
            .unwrap_or_default();
        let service = root
            .map(|s| attr(s, "/service.name"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "illumo".to_string());
        let row: serde_json::Map<String, Value> = picks
            .iter()
            .map(|c| {
                let v = match c.as_str() {
                    "trace_id" => json!(r.trace_id),
                    "root_service" => json!(service),
                    "root_name" => json!(r.flow),
                    "start_time" => json!(r.start_time),
                    "end_time" => json!(end),
                    _ => json!(spans.len()),
                };
                (c.clone(), v)
            })
            .collect();
        rows.push(row);
    }
    Ok(match format {
        ListFormat::Json => json_text(&Value::Array(rows.into_iter().map(Value::Object).collect())),
        ListFormat::Table if rows.is_empty() => format!("no runs in {db}\n"),
        ListFormat::Table | ListFormat::Markdown => {
            let header: Vec<String> = picks.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let cells = rows
                .iter()
                .map(|row| {
                    picks
                        .iter()
                        .map(|c| match &row[c] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            rows_as(format, &header, cells)
        }
    })
}

fn tree(spans: &[SpanRow], io: bool) -> String {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: std::collections::HashMap<&str, Vec<&SpanRow>> =
        std::collections::HashMap::new();
    let mut roots = Vec::new();
    for span in spans {
        match span.parent_id.as_deref().filter(|p| ids.contains(p)) {
            Some(parent) => children.entry(parent).or_default().push(span),
            None => roots.push(span),
        }
    }
    let mut out = String::new();
    for root in roots {
        write_span(&mut out, &children, root, 0, io);
    }
    out
}

fn write_span(
    out: &mut String,
    children: &std::collections::HashMap<&str, Vec<&SpanRow>>,
    span: &SpanRow,
    depth: usize,
    io: bool,
) {
    let pad = "  ".repeat(depth);
    if span.kind == "flow" {
        let name = span.name.strip_prefix("flow ").unwrap_or(&span.name);
        out.push_str(&format!(
            "{} flow {name}  {}  {}  trace {}  started {}\n",
            mark(span),
            status_text(&span.status, span.duration_ms),
            duration(span.duration_ms),
            span.trace_id,
            span.start_time
        ));
        // Why the run failed: a node, max_steps, an interrupt.
        let error = attr(span, "/error/message");
        if !error.is_empty() {
            out.push_str(&format!("{pad}  error: {error}\n"));
        }
    } else {
        let node_type = attr(span, "/node/type");
        let max = attr(span, "/max_attempts");
        let attempt = if max.is_empty() || max == "1" {
            String::new()
        } else {
            format!(" attempt {}/{max}", attr(span, "/attempt"))
        };
        let error = attr(span, "/error/message");
        let error = if error.is_empty() {
            String::new()
        } else {
            format!("  {}", short(&error, 100))
        };
        let state = if span.end_time.is_none() {
            "  (did not finish)".to_string()
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{pad}{} {} ({node_type}){attempt}  {}{error}{state}\n",
            mark(span),
            span.name,
            duration(span.duration_ms)
        ));
        if io {
            for (label, pointer) in [("in ", "/input/preview"), ("out", "/output/preview")] {
                let text = attr(span, pointer);
                if !text.is_empty() {
                    out.push_str(&format!("{pad}    {label}: {text}\n"));
                }
            }
        }
    }
    for e in &span.events {
        out.push_str(&format!("{pad}    {}\n", event_line(e)));
    }
    for child in children.get(span.span_id.as_str()).into_iter().flatten() {
        write_span(out, children, child, depth + 1, io);
    }
}

fn span_table(spans: &[SpanRow]) -> String {
    table(
        &[
            "START", "DURATION", "STATUS", "SPAN", "TYPE", "ATTEMPT", "EVENTS",
        ],
        spans
            .iter()
            .map(|s| {
                let events: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
                vec![
                    s.start_time.clone(),
                    duration(s.duration_ms),
                    status_text(&s.status, s.duration_ms),
                    s.name.clone(),
                    attr(s, "/node/type"),
                    attr(s, "/attempt"),
                    events.join(","),
                ]
            })
            .collect(),
    )
}
