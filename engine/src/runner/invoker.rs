//! What a node reaches of the engine during one attempt: running another node (a loop
//! body) under that node's own policy and span, events and attributes on its own span,
//! streamed text, and previews with secrets replaced.

use super::attempt::{attempts, merge};
use super::shared::Shared;
use crate::node::{Invoker, NodeError, Outcome};
use crate::policy::OnError;
use crate::tracer::{Level, SpanData};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

pub(super) struct AttemptInvoker<'a> {
    shared: &'a Arc<Shared>,
    span: &'a Option<SpanData>,
    /// Attributes the node set; merged into its span when the attempt ends.
    extra: Mutex<Map<String, Value>>,
    /// The step of the node that invokes (its body nodes share it).
    step: u64,
}

impl<'a> AttemptInvoker<'a> {
    pub fn new(shared: &'a Arc<Shared>, span: &'a Option<SpanData>, step: u64) -> Self {
        AttemptInvoker {
            shared,
            span,
            extra: Mutex::new(Map::new()),
            step,
        }
    }

    /// The attributes the node set during the attempt.
    pub fn finish(self) -> Map<String, Value> {
        self.extra.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Invoker for AttemptInvoker<'_> {
    async fn invoke(
        &self,
        node: &str,
        ctx: &Value,
        default_input: &Value,
    ) -> Result<Outcome, NodeError> {
        let shared = self.shared;
        let Some(&index) = shared.flow.index.get(node) else {
            return Err(NodeError::fatal(format!(
                "there is no node `{node}` to run"
            )));
        };
        let body = &shared.flow.nodes[index];
        let input = match &body.inputs {
            Some(spec) => spec
                .render(ctx)
                .map_err(|e| NodeError::fatal(format!("node `{node}`: {e}")))?,
            None => default_input.clone(),
        };
        let view = body
            .snapshot_reads
            .as_ref()
            .map_or(Value::Null, |r| r.prune(ctx));
        let parent = self.span.as_ref().map_or(shared.root_id, |s| s.span_id);
        let (result, span, _) =
            attempts(shared, index, &input, &view, parent, None, self.step).await;
        match result {
            Ok(outcome) => {
                shared.end_span(span, Ok(&outcome.output));
                Ok(outcome)
            }
            Err(failed) if shared.policies[index].on_error == OnError::Continue => {
                // A body that may fail passes its input on, as a node in the flow would.
                shared.event(
                    &span,
                    "node.error",
                    Level::Error,
                    json!({"attempt": failed.attempt, "message": failed.error.to_string(), "timed_out": failed.timed_out, "action": "continue"}),
                );
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                Ok(Outcome::value(input))
            }
            Err(failed) if failed.error.is_paused() => {
                shared.end_span(span, Err((&failed.error, false)));
                Err(NodeError::fatal(format!(
                    "node `{node}` waits for a person, which it cannot do when another node runs it (a Loop body, an agent's tool); put it in the flow itself"
                )))
            }
            Err(failed) => {
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let message = format!(
                    "node `{node}` failed on attempt {}: {}",
                    failed.attempt, failed.error
                );
                Err(failed.error.with_message(message))
            }
        }
    }

    fn event(&self, name: &str, level: Level, attributes: Map<String, Value>) {
        self.shared
            .event(self.span, name, level, Value::Object(attributes));
    }

    fn set_attribute(&self, key: &str, value: Value) {
        let mut one = Map::new();
        one.insert(key.to_string(), value);
        merge(
            &mut self.extra.lock().unwrap_or_else(|e| e.into_inner()),
            one,
        );
    }

    fn streaming(&self) -> bool {
        self.span.is_some() && self.shared.streams()
    }

    fn child_span(
        &self,
        name: &str,
        started: std::time::SystemTime,
        attributes: Map<String, Value>,
        ok: bool,
    ) {
        let Some(parent) = self.span else { return };
        let span = SpanData {
            trace_id: parent.trace_id,
            span_id: crate::tracer::SpanId::random(),
            parent_id: Some(parent.span_id),
            name: name.to_string(),
            kind: crate::tracer::SpanKind::Node,
            start_time: started,
            end_time: Some(std::time::SystemTime::now()),
            status: if ok {
                crate::tracer::SpanStatus::Ok
            } else {
                crate::tracer::SpanStatus::Error
            },
            attributes,
            common: Arc::default(),
        };
        self.shared.tracer.span_end(&span);
    }

    fn is_secret(&self, text: &str) -> bool {
        self.shared.redactor.contains(text)
    }

    fn stream(&self, text: &str) {
        if let Some(span) = self.span {
            self.shared.stream(span, text);
        }
    }

    fn preview(&self, value: &Value, max: usize) -> String {
        self.shared.redactor.preview(value, max)
    }
    fn max_text(&self) -> usize {
        self.shared.max_text
    }
    async fn run_flow(&self, flow: Arc<crate::flow::Flow>, ctx: Value) -> Result<Value, NodeError> {
        let parent = self
            .span
            .as_ref()
            .map_or(self.shared.root_id, |s| s.span_id);
        let name = flow.name.clone();
        super::run_child(self.shared, parent, flow, ctx)
            .await
            .map_err(|e| match e {
                super::RunError::Interrupted { .. } => {
                    NodeError::fatal(format!("the subflow `{name}` was interrupted"))
                }
                super::RunError::Paused { node, .. } => NodeError::fatal(format!(
                    "node `{node}` of the subflow `{name}` waits for a person, which it cannot do inside a subflow"
                )),
                // The node's own policy may run the whole subflow again.
                other => NodeError::retryable(format!("the subflow `{name}` failed: {other}")),
            })
    }
}
