//! The ctx keys the engine writes about a run (`steps`, `errors`, `routing`), in the shape
//! of the flow's dialect: illumo's own, or illumo-flow's for a flow written for it.

use super::attempt::Failed;
use crate::dialect::Dialect;
use crate::flow::Flow;
use crate::node::Route;
use serde_json::{json, Map, Value};

/// What happened to a node, for `ctx.steps`.
pub(super) enum Step<'a> {
    Start,
    Ok,
    Error(&'a str),
    Continue,
    Goto(&'a str),
}

/// The `ctx.steps` entry, if the dialect records one for this.
pub(super) fn step(dialect: Dialect, node: &str, step: Step<'_>) -> Option<Value> {
    match dialect {
        Dialect::Native => match step {
            Step::Ok => Some(json!({"node": node, "status": "ok"})),
            Step::Error(_) => Some(json!({"node": node, "status": "error"})),
            Step::Start | Step::Continue | Step::Goto(_) => None,
        },
        Dialect::IllumoFlow => Some(match step {
            Step::Start => json!({"node_id": node, "status": "start"}),
            Step::Ok => json!({"node_id": node, "status": "success"}),
            Step::Error(message) => {
                json!({"node_id": node, "status": "failed", "message": message})
            }
            Step::Continue => json!({"node_id": node, "status": "continue"}),
            Step::Goto(target) => json!({"node_id": node, "status": "goto", "target": target}),
        }),
    }
}

/// A failure's message as ctx records it: illumo-flow keeps a Python exception's own
/// message (`division by zero`), without the ``\`mods.f\` raised ZeroDivisionError: `` that
/// illumo's message starts with.
pub(super) fn error_message<'m>(dialect: Dialect, failed: &Failed, message: &'m str) -> &'m str {
    match (dialect, failed.error.exception()) {
        (Dialect::IllumoFlow, Some(class)) => message
            .split_once(&format!(" raised {class}: "))
            .map_or(message, |(_, own)| own),
        _ => message,
    }
}

/// Records a node's failure (after its last attempt) in `ctx.errors`.
pub(super) fn record_error(
    dialect: Dialect,
    ctx: &mut Value,
    node: &str,
    failed: &Failed,
    message: &str,
    action: &str,
) {
    let record = match dialect {
        Dialect::Native => json!({
            "node": node, "attempt": failed.attempt, "message": message,
            "timed_out": failed.timed_out, "action": action,
        }),
        Dialect::IllumoFlow => {
            // The class of the Python exception a function raised, as illumo-flow records
            // it; otherwise what illumo-flow would have raised itself.
            let exception = match failed.error.exception() {
                Some(name) => name,
                None if failed.timed_out => "TimeoutError",
                None => "FlowError",
            };
            ctx["failed_node_id"] = json!(node);
            ctx["failed_exception_type"] = json!(exception);
            ctx["failed_message"] = json!(message);
            json!({"node_id": node, "exception": exception, "message": message})
        }
    };
    match ctx.get_mut("errors") {
        Some(Value::Array(list)) => list.push(record),
        _ => ctx["errors"] = json!([record]),
    }
}

/// The `ctx.routing.<node>` record of a decision.
pub(super) fn routing(dialect: Dialect, route: &Route) -> Value {
    match dialect {
        Dialect::Native => {
            let target = match route.targets.as_slice() {
                [] => Value::Null,
                [one] => json!(one),
                many => json!(many),
            };
            json!({"target": target, "confidence": route.confidence, "reason": route.reason})
        }
        // One entry per target, with its `confidence` and `reason` when known.
        Dialect::IllumoFlow => Value::Array(
            route
                .targets
                .iter()
                .enumerate()
                .map(|(i, target)| {
                    let mut entry = Map::new();
                    entry.insert("target".into(), json!(target));
                    let (confidence, reason) = match route.each.get(i) {
                        Some((c, r)) => (*c, r.as_ref()),
                        None if i == 0 => (route.confidence, route.reason.as_ref()),
                        None => (None, None),
                    };
                    if let Some(c) = confidence {
                        entry.insert("confidence".into(), json!(c));
                    }
                    if let Some(r) = reason {
                        entry.insert("reason".into(), json!(r));
                    }
                    Value::Object(entry)
                })
                .collect(),
        ),
    }
}

/// illumo-flow's start: `steps`, `joins`, `errors`, `payloads` and `routing` exist (kept
/// when given), and the entry's payload is `ctx.payloads.<entry>` (null unless given).
pub(super) fn illumo_flow_start(ctx: &mut Value, flow: &Flow) {
    let Value::Object(map) = ctx else { return };
    for (key, empty) in [
        ("steps", json!([])),
        ("joins", json!({})),
        ("errors", json!([])),
        ("payloads", json!({})),
        ("routing", json!({})),
    ] {
        map.entry(key).or_insert(empty);
    }
    if let (Some(&entry), Some(Value::Object(payloads))) =
        (flow.entry.first(), map.get_mut("payloads"))
    {
        payloads
            .entry(flow.nodes[entry].id.clone())
            .or_insert(Value::Null);
    }
}
