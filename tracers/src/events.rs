//! The events stream (`illumo run --events FILE|-`): one JSON object per line, written as
//! the run goes, so editors, CI and services can follow a run without polling SQLite.
//!
//! Every line has `event`, `at` (RFC 3339, UTC) and `trace_id`:
//!
//! - `run.start` `{flow, span_id}`, and `run.end` `{flow, status, duration_ms, error?}`
//!   with `status` `ok`, `failed`, `interrupted` or `paused`;
//! - `node.start` `{node, type, attempt, span_id}`, and `node.end` `{node, type, attempt,
//!   status: ok|error|paused, duration_ms, error?: {type, message}, timed_out}`;
//! - `token` `{node, text}`: a piece of an LLM reply as it streams;
//! - every event a node records, under its own name (`routing.decision`, `node.retry`,
//!   `node.timeout`, `ctx.write`, `agent.request`, `audit`, ...) `{node, span_id,
//!   level, attributes}`.
//!
//! The format is stable: fields are added, never renamed or removed.

use illumo_engine::ids::iso8601;
use illumo_engine::tracer::{EventData, SpanData, SpanKind, SpanStatus, Tracer};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::Mutex;

pub struct EventsTracer {
    out: Mutex<Box<dyn Write + Send>>,
    failed: std::sync::atomic::AtomicBool,
}

impl EventsTracer {
    /// Writes to `path`, or to stdout for `-`.
    pub fn open(path: &str) -> Result<EventsTracer, String> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            if let Some(parent) = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("--events: cannot create `{}`: {e}", parent.display()))?;
            }
            Box::new(
                std::fs::File::create(path)
                    .map_err(|e| format!("--events: cannot write `{path}`: {e}"))?,
            )
        };
        Ok(EventsTracer {
            out: Mutex::new(out),
            failed: Default::default(),
        })
    }

    fn emit(&self, event: &str, span: &SpanData, fields: Map<String, Value>) {
        let mut line = Map::new();
        line.insert("event".into(), json!(event));
        line.insert("at".into(), json!(iso8601(std::time::SystemTime::now())));
        line.insert("trace_id".into(), json!(span.trace_id.to_string()));
        line.extend(fields);
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A reader that went away stops the stream, never the run.
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
            && !self.failed.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let _ = writeln!(
                std::io::stderr(),
                "warning: --events: the stream could not be written"
            );
        }
    }

    /// The node a span is an attempt of (none for the run's root span).
    fn node_of(span: &SpanData) -> Option<&str> {
        (span.kind == SpanKind::Node).then_some(span.name.as_str())
    }
}

fn fields(pairs: Value) -> Map<String, Value> {
    match pairs {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn duration_ms(span: &SpanData) -> Value {
    span.end_time
        .and_then(|end| end.duration_since(span.start_time).ok())
        .map_or(Value::Null, |d| {
            json!((d.as_secs_f64() * 1e6).round() / 1e3)
        })
}

impl Tracer for EventsTracer {
    fn span_start(&self, span: &SpanData) {
        match span.kind {
            SpanKind::Flow => self.emit(
                "run.start",
                span,
                fields(json!({"flow": span.name.strip_prefix("flow ").unwrap_or(&span.name), "span_id": span.span_id.to_string()})),
            ),
            SpanKind::Node => {
                self.emit(
                    "node.start",
                    span,
                    fields(json!({
                        "node": span.name,
                        "type": span.attribute("node").and_then(|n| n.get("type")),
                        "attempt": span.attribute("attempt"),
                        "span_id": span.span_id.to_string(),
                    })),
                );
            }
        }
    }

    fn span_end(&self, span: &SpanData) {
        let error = span.attribute("error").cloned();
        let error_type = error
            .as_ref()
            .and_then(|e| e.get("type"))
            .and_then(Value::as_str);
        match span.kind {
            SpanKind::Flow => {
                let status = match (span.status, error_type) {
                    (SpanStatus::Ok, _) => "ok",
                    (_, Some("interrupted")) => "interrupted",
                    (_, Some("paused")) => "paused",
                    _ => "failed",
                };
                self.emit(
                    "run.end",
                    span,
                    fields(json!({
                        "flow": span.name.strip_prefix("flow ").unwrap_or(&span.name),
                        "status": status,
                        "duration_ms": duration_ms(span),
                        "error": error,
                    })),
                );
            }
            SpanKind::Node => {
                let status = match (span.status, error_type) {
                    (SpanStatus::Ok, _) => "ok",
                    (_, Some("paused")) => "paused",
                    _ => "error",
                };
                self.emit(
                    "node.end",
                    span,
                    fields(json!({
                        "node": span.name,
                        "type": span.attribute("node").and_then(|n| n.get("type")),
                        "attempt": span.attribute("attempt"),
                        "status": status,
                        "duration_ms": duration_ms(span),
                        "error": error,
                        "timed_out": span.attribute("timeout").cloned().unwrap_or(json!(false)),
                    })),
                );
            }
        }
    }

    fn event(&self, span: &SpanData, event: &EventData) {
        self.emit(
            &event.name,
            span,
            fields(json!({
                "node": Self::node_of(span),
                "span_id": span.span_id.to_string(),
                "level": event.level.as_str(),
                "attributes": event.attributes,
            })),
        );
    }

    fn streams(&self) -> bool {
        true
    }

    fn stream(&self, span: &SpanData, text: &str) {
        self.emit(
            "token",
            span,
            fields(json!({"node": Self::node_of(span), "text": text})),
        );
    }
}
