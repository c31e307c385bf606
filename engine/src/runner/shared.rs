//! What every task of one run reads and nothing changes: the flow, each node's resolved
//! policy, the tracer boundary, and the attributes each node's spans share.

use super::{RunError, RunOptions};
use crate::flow::Flow;
use crate::node::{NodeError, Permissions};
use crate::policy::Policy;
use crate::redact::{RedactingTracer, Redactor};
use crate::tracer::{EventData, Level, SpanData, SpanId, SpanKind, SpanStatus, TraceId, Tracer};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// How much of a node's input and output a span keeps.
const PREVIEW_CHARS: usize = 200;
/// How much of an error message a span keeps.
const ERROR_CHARS: usize = 2000;

pub(super) struct Shared {
    pub flow: Arc<Flow>,
    pub policies: Vec<Policy>,
    /// The tracers, behind the redaction boundary.
    pub(super) tracer: Arc<dyn Tracer>,
    pub redactor: Arc<Redactor>,
    pub tracing: bool,
    pub trace_id: TraceId,
    pub root_id: SpanId,
    pub permissions: Permissions,
    /// Per node, the attributes every attempt span shares.
    span_attributes: Vec<Arc<Map<String, Value>>>,
    /// More attributes of the root span.
    root_attributes: Map<String, Value>,
    pub max_text: usize,
    root_parent: Option<SpanId>,
    pub prices: Arc<Vec<(String, f64, f64)>>,
}

impl Shared {
    pub fn new(flow: Arc<Flow>, options: &RunOptions) -> Shared {
        let policies: Vec<Policy> = (0..flow.nodes.len())
            .map(|i| flow.policy_of(i, &options.overrides))
            .collect();
        let tracing = options.tracer.enabled();
        let span_attributes = if tracing {
            flow.nodes
                .iter()
                .zip(&policies)
                .map(|(node, policy)| {
                    let mut attributes = Map::new();
                    attributes.insert(
                        "node".into(),
                        json!({"id": node.id, "type": node.type_name}),
                    );
                    attributes.insert("max_attempts".into(), json!(policy.max_attempts));
                    attributes.insert("policy".into(), policy.to_json());
                    Arc::new(attributes)
                })
                .collect()
        } else {
            Vec::new()
        };
        // Credentials the flow's nodes send are secrets whatever the caller registered.
        let mut redactor = options.redactor.clone();
        for secret in flow.secrets() {
            if !redactor.contains(&secret) {
                Arc::make_mut(&mut redactor).add(secret);
            }
        }
        Shared {
            max_text: options.max_text,
            root_parent: options.root_parent,
            prices: options.prices.clone(),
            root_attributes: options.attributes.clone(),
            span_attributes,
            flow,
            policies,
            tracer: Arc::new(RedactingTracer::new(
                options.tracer.clone(),
                redactor.clone(),
            )),
            redactor,
            tracing,
            trace_id: options.trace_id,
            root_id: SpanId::random(),
            permissions: options.permissions,
        }
    }

    /// Starts the root span, with the run's input ctx (secrets replaced, cut to `max_text`).
    pub fn flow_span(&self, ctx: &Value) -> Option<SpanData> {
        let span = self.tracing.then(|| {
            let mut attributes = Map::new();
            attributes.insert(
                "flow".into(),
                json!({"name": self.flow.name, "nodes": self.flow.nodes.len()}),
            );
            for (key, value) in &self.root_attributes {
                attributes.insert(key.clone(), value.clone());
            }
            attributes.insert(
                "input".into(),
                json!({"ctx": self.redactor.preview(ctx, self.max_text)}),
            );
            SpanData {
                trace_id: self.trace_id,
                span_id: self.root_id,
                parent_id: self.root_parent,
                name: format!("flow {}", self.flow.name),
                kind: SpanKind::Flow,
                start_time: SystemTime::now(),
                end_time: None,
                status: SpanStatus::Unset,
                attributes,
                common: Arc::default(),
            }
        })?;
        self.tracer.span_start(&span);
        Some(span)
    }

    /// Ends the root span with the run's result (a failure says what failed and why),
    /// then flushes the tracers.
    pub fn end_flow_span(
        &self,
        root: Option<SpanData>,
        result: Result<(), &RunError>,
        ctx: &Value,
    ) {
        if let Some(mut span) = root {
            span.attributes.insert(
                "output".into(),
                json!({"ctx": self.redactor.preview(ctx, self.max_text)}),
            );
            span.end_time = Some(SystemTime::now());
            span.status = match result {
                Ok(()) => SpanStatus::Ok,
                // A paused run has not failed: it waits for an answer.
                Err(RunError::Paused { .. }) => SpanStatus::Unset,
                Err(_) => SpanStatus::Error,
            };
            if let Err(e) = result {
                let mut error = json!({"type": e.kind(), "message": e.to_string()});
                if let RunError::NodeFailed { node, .. } = e {
                    error["node"] = json!(node);
                }
                span.attributes.insert("error".into(), error);
            }
            self.tracer.span_end_owned(span);
        }
        self.tracer.flush();
    }

    /// Starts the span of one attempt of a node.
    pub fn node_span(
        &self,
        index: usize,
        attempt: u32,
        input: &Value,
        parent: SpanId,
    ) -> Option<SpanData> {
        if !self.tracing {
            return None;
        }
        let node = &self.flow.nodes[index];
        let mut attributes = Map::new();
        attributes.insert("attempt".into(), json!(attempt));
        attributes.insert(
            "input".into(),
            json!({"preview": self.redactor.preview(input, PREVIEW_CHARS)}),
        );
        let span = SpanData {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(parent),
            name: node.id.clone(),
            kind: SpanKind::Node,
            start_time: SystemTime::now(),
            end_time: None,
            status: SpanStatus::Unset,
            attributes,
            // node, max_attempts and policy never change during a run: built once per node.
            common: self.span_attributes[index].clone(),
        };
        self.tracer.span_start(&span);
        Some(span)
    }

    pub fn event(&self, span: &Option<SpanData>, name: &str, level: Level, attributes: Value) {
        if let (Some(span), Value::Object(attributes)) = (span, attributes) {
            self.tracer
                .event(span, &EventData::new(name, level, attributes));
        }
    }

    pub fn stream(&self, span: &SpanData, text: &str) {
        self.tracer.stream(span, text);
    }

    pub fn streams(&self) -> bool {
        self.tracing && self.tracer.streams()
    }

    /// Adds `gen_ai.usage.cost_usd` to an agent's span, from the price table.
    fn price(&self, span: &mut SpanData) {
        let Some(Value::Object(gen_ai)) = span.attributes.get_mut("gen_ai") else {
            return;
        };
        let model = gen_ai["response"]["model"]
            .as_str()
            .or(gen_ai["request"]["model"].as_str())
            .unwrap_or_default()
            .to_string();
        let Some((_, input, output)) = self
            .prices
            .iter()
            .filter(|(m, _, _)| model.starts_with(m.as_str()))
            .max_by_key(|(m, _, _)| m.len())
        else {
            return;
        };
        let Some(Value::Object(usage)) = gen_ai.get_mut("usage") else {
            return;
        };
        let count = |k: &str| usage.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let cost = count("input_tokens") * input / 1e6 + count("output_tokens") * output / 1e6;
        usage.insert("cost_usd".into(), json!((cost * 1e8).round() / 1e8));
    }

    /// Ends an attempt's span with its output, or its error and whether it timed out.
    pub fn end_span(&self, span: Option<SpanData>, result: Result<&Value, (&NodeError, bool)>) {
        let Some(mut span) = span else { return };
        if !self.prices.is_empty() {
            self.price(&mut span);
        }
        span.end_time = Some(SystemTime::now());
        match result {
            Ok(output) => {
                span.status = SpanStatus::Ok;
                span.attributes.insert(
                    "output".into(),
                    json!({"preview": self.redactor.preview(output, PREVIEW_CHARS)}),
                );
            }
            Err((error, timed_out)) => {
                // A pause is no failure: the node waits for an answer.
                span.status = match error.is_paused() {
                    true => SpanStatus::Unset,
                    false => SpanStatus::Error,
                };
                let kind = if error.is_paused() {
                    "paused"
                } else if timed_out {
                    "timeout"
                } else if error.is_retryable() {
                    "retryable"
                } else {
                    "fatal"
                };
                let message = self
                    .redactor
                    .preview(&Value::String(error.to_string()), ERROR_CHARS);
                span.attributes
                    .insert("error".into(), json!({"type": kind, "message": message}));
                span.attributes.insert("timeout".into(), json!(timed_out));
            }
        }
        self.tracer.span_end_owned(span);
    }
}
