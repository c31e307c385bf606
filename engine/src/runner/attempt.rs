//! Every attempt of one node under its policy: a span per attempt, the timeout, retries
//! with their delays. The last attempt's span is returned still open, so the driver can
//! add the routing decision and the writes to it.

use super::invoker::AttemptInvoker;
use super::shared::Shared;
use crate::dialect::Dialect;
use crate::node::{NodeCx, NodeError, Outcome};
use crate::path::{set_steps, CtxPath};
use crate::tracer::{Level, SpanData, SpanId};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One node's failure after its last attempt.
pub(super) struct Failed {
    pub error: NodeError,
    pub attempt: u32,
    pub timed_out: bool,
}

impl Failed {
    pub fn fatal(message: impl Into<String>) -> Failed {
        Failed {
            error: NodeError::fatal(message),
            attempt: 1,
            timed_out: false,
        }
    }
}

/// The attempts of one node: the result, the last attempt's span (still open) and its
/// number. `answer` is a person's answer for a node the run paused at.
pub(super) async fn attempts(
    shared: &Arc<Shared>,
    index: usize,
    input: &Value,
    view: &Value,
    parent: SpanId,
    answer: Option<&Value>,
    step: u64,
) -> (Result<Outcome, Failed>, Option<SpanData>, u32) {
    let node = &shared.flow.nodes[index];
    let policy = &shared.policies[index];
    let mut attempt = 1;
    // illumo-flow's nodes change the one ctx in place, so what a failed attempt changed
    // is there for the next one and stays after the last: its writes are carried.
    let carries = shared.flow.dialect == Dialect::IllumoFlow;
    let mut carried: Vec<(CtxPath, Value)> = Vec::new();
    let mut local: Option<Value> = None;
    loop {
        let mut open = OpenSpan {
            shared: shared.clone(),
            span: shared.node_span(index, attempt, input, parent),
        };
        let invoker = AttemptInvoker::new(shared, &open.span, step);
        let cx = NodeCx {
            id: &node.id,
            input,
            ctx: local.as_ref().unwrap_or(view),
            attempt,
            max_attempts: policy.max_attempts,
            permissions: shared.permissions,
            invoker: &invoker,
            answer,
            trace_id: shared.trace_id,
            step,
        };
        let run = node.node.run(cx);
        let result = match policy.timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => r,
                Err(_) => {
                    let text = crate::duration::duration_text(limit);
                    shared.event(
                        &open.span,
                        "node.timeout",
                        Level::Warn,
                        json!({"timeout": text, "attempt": attempt}),
                    );
                    let message = match carries {
                        // illumo-flow's own words (its seconds are a Python float).
                        true => format!(
                            "Node '{}' timed out after {:?} seconds",
                            node.id,
                            limit.as_secs_f64()
                        ),
                        false => format!("timed out after {text}"),
                    };
                    Err(NodeError::retryable(message).as_timeout())
                }
            },
            None => run.await,
        };
        let extra = invoker.finish();
        if let (Some(span), false) = (open.span.as_mut(), extra.is_empty()) {
            merge(&mut span.attributes, extra);
        }
        let mut error = match result {
            Ok(mut outcome) => {
                if !carried.is_empty() {
                    carried.append(&mut outcome.writes);
                    outcome.writes = carried;
                }
                return (Ok(outcome), open.take(), attempt);
            }
            Err(e) => e,
        };
        if carries && !error.writes().is_empty() {
            let ctx = local.get_or_insert_with(|| view.clone());
            for (path, value) in error.writes() {
                let _ = set_steps(ctx, &path.steps, value.clone());
            }
            carried.extend(error.writes().iter().cloned());
        }
        let timed_out = error.is_timeout();
        if error.is_retryable() && attempt < policy.max_attempts {
            // A server's Retry-After stretches the policy's wait (up to five minutes).
            let asked = error
                .wait_hint()
                .unwrap_or_default()
                .min(std::time::Duration::from_secs(300));
            let delay = policy.delay_before(attempt + 1).max(asked);
            shared.event(
                &open.span,
                "node.retry",
                Level::Warn,
                json!({"attempt": attempt, "next_attempt": attempt + 1, "max_attempts": policy.max_attempts, "delay_ms": delay.as_millis() as u64, "error": error.to_string()}),
            );
            shared.end_span(open.take(), Err((&error, timed_out)));
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        if !carried.is_empty() {
            error = error.with_writes(carried);
        }
        return (
            Err(Failed {
                error,
                attempt,
                timed_out,
            }),
            open.take(),
            attempt,
        );
    }
}

/// An attempt's span that ends as cancelled if the attempt is dropped before it finishes
/// (an interrupt, a fail_fast stop elsewhere, a panic), so no span is left open.
struct OpenSpan {
    shared: Arc<Shared>,
    span: Option<SpanData>,
}

impl OpenSpan {
    fn take(&mut self) -> Option<SpanData> {
        self.span.take()
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            let cancelled =
                NodeError::fatal("cancelled: the run stopped before this attempt finished");
            self.shared.end_span(Some(span), Err((&cancelled, false)));
        }
    }
}

/// Merges `from` into `into`; maps merge key by key, anything else replaces.
pub(super) fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
