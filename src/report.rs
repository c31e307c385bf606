//! illumo-flow's failure report (`--report-path`, `--report-format`) and execution log
//! (`--log-dir`): what failed, where, under which policy, and a digest of ctx.

use crate::cli::ReportFormat;
use illumo_engine::policy::{Backoff, OnError, Policy};
use illumo_engine::redact::Redactor;
use illumo_engine::runner::{RunError, RunFailure};
use illumo_engine::Flow;
use serde_json::{json, Value};
use std::path::Path;

/// The report of a failed run, in illumo-flow's layout, secrets replaced.
pub fn of(
    failure: &RunFailure,
    flow: &Flow,
    overrides: &illumo_engine::policy::PolicySpec,
    redactor: &Redactor,
) -> Value {
    let node = match &failure.error {
        RunError::NodeFailed { node, .. } => Some(node.as_str()),
        _ => None,
    };
    let policy = node
        .and_then(|id| flow.index.get(id))
        .map(|&i| snapshot(&flow.policy_of(i, overrides), illumo_flow(flow)))
        .unwrap_or_else(|| json!({}));
    let ctx = &failure.ctx;
    let payload = node.and_then(|id| ctx.get("payloads")?.get(id));
    let mut digest = json!({
        "payload_preview": preview(payload.unwrap_or(&Value::Null)),
        "steps": ctx.get("steps").and_then(Value::as_array).map_or(0, Vec::len),
    });
    if let Some(last) = ctx
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.last())
    {
        // `node` in illumo's ctx.errors, `node_id` in illumo-flow's.
        let node_id = last.get("node").or_else(|| last.get("node_id"));
        digest["last_error"] = json!({"node_id": node_id, "message": last.get("message")});
    }
    // illumo-flow's summary is the failure's own message, as its ctx records it.
    // (When the run failed for another reason than the node's recorded error, such as a
    // routing node's input that is no decision, that reason is illumo-flow's summary.)
    let reason = match &failure.error {
        RunError::NodeFailed { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    let summary = match ctx.get("failed_message").and_then(Value::as_str) {
        Some(message)
            if illumo_flow(flow)
                && node.is_some()
                && reason.is_none_or(|r| r.contains(message)) =>
        {
            message.to_string()
        }
        _ if illumo_flow(flow) && reason.is_some() => reason.unwrap_or_default().to_string(),
        _ => failure.error.to_string(),
    };
    let mut report = json!({
        "trace_id": failure.trace_id.to_string(),
        "failed_node_id": node,
        "summary": summary,
        "policy_snapshot": policy,
        "context_digest": digest,
    });
    redactor.value(&mut report);
    report
}

/// illumo-flow's policy snapshot; the numbers are illumo's (`max_attempts` counts every
/// attempt, the first included).
fn illumo_flow(flow: &Flow) -> bool {
    flow.dialect == illumo_engine::dialect::Dialect::IllumoFlow
}

/// The policy as illumo-flow writes it; for its flows, `max_attempts` counts retries.
fn snapshot(policy: &Policy, illumo_flow: bool) -> Value {
    let attempts = match illumo_flow {
        true => policy.max_attempts.saturating_sub(1),
        false => policy.max_attempts,
    };
    let (action, target) = match &policy.on_error {
        OnError::Stop => ("stop", None),
        OnError::Continue => ("continue", None),
        OnError::Goto(t) => ("goto", Some(t.as_str())),
    };
    json!({
        "fail_fast": policy.fail_fast,
        "timeout": policy.timeout.map_or("0s".to_string(), illumo_engine::duration::duration_text),
        "retry": {
            "max_attempts": attempts,
            "delay": policy.delay.as_secs_f64(),
            "mode": match policy.mode { Backoff::Fixed => "fixed", Backoff::Exponential => "exponential" },
        },
        "on_error": {"action": action, "target": target},
    })
}

/// JSON of `value`, cut to 200 characters as illumo-flow cuts it.
/// JSON as Python's `json.dumps` writes it by default: `{"a": 1, "b": [1, 2]}`.
fn py_json(value: &Value) -> String {
    fn put(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    put(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push_str(": ");
                    put(item, out);
                }
                out.push('}');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    put(value, &mut out);
    out
}

/// The payload as illumo-flow previews it: its JSON, cut at 200 characters.
fn preview(value: &Value) -> String {
    let text = py_json(value);
    if text.chars().count() > 200 {
        format!("{}...", text.chars().take(197).collect::<String>())
    } else {
        text
    }
}

/// Writes the report to `path` (folders created) as JSON or markdown.
pub fn write(report: &Value, path: &str, format: ReportFormat) -> Result<(), String> {
    let path = Path::new(path);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    let text = match format {
        ReportFormat::Json => serde_json::to_string_pretty(report).unwrap_or_default(),
        ReportFormat::Markdown => markdown(report),
    };
    std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

fn markdown(report: &Value) -> String {
    let field = |key: &str| match report.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "-".to_string(),
    };
    let pretty = |key: &str| serde_json::to_string_pretty(&report[key]).unwrap_or_default();
    [
        "# illumo-flow Failure Report".to_string(),
        String::new(),
        format!("- trace_id: {}", field("trace_id")),
        format!("- failed_node_id: {}", field("failed_node_id")),
        format!("- summary: {}", field("summary")),
        String::new(),
        "## Policy Snapshot".into(),
        "```json".into(),
        pretty("policy_snapshot"),
        "```".into(),
        String::new(),
        "## Context Digest".into(),
        "```json".into(),
        pretty("context_digest"),
        "```".into(),
        String::new(),
    ]
    .join("\n")
}

/// Appends the report, with a timestamp first, as one line to `dir/runtime_execution.log`.
pub fn append_log(report: &Value, dir: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let path = dir.join("runtime_execution.log");
    let mut entry = serde_json::Map::new();
    // As illumo-flow writes it, so its readers parse it: `datetime.utcnow().isoformat()`
    // (no zone) and `json.dumps` spacing.
    let mut now = illumo_engine::ids::iso8601(std::time::SystemTime::now());
    now.pop();
    entry.insert("timestamp".into(), json!(now));
    if let Value::Object(fields) = report {
        entry.extend(fields.clone());
    }
    let mut line = py_json(&Value::Object(entry));
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot append to `{}`: {e}", path.display()))
}
