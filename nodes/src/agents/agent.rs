//! `Agent`: one LLM call. The reply goes to `output_path` (or `ctx.agents.<id>`); with a
//! JSON `response_format` the parsed reply goes to `structured_path`. In a flow written for
//! illumo-flow, what has no path goes to illumo-flow's `ctx.agents.<id>` bucket instead.

use super::{check_keys, AgentConfig, AgentCore, ReplyFormat, COMMON};
use crate::llm::Llm;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use serde_json::Value;
use std::sync::Arc;

pub struct AgentFactory(pub Arc<Llm>);

pub struct Agent {
    core: AgentCore,
    format: ReplyFormat,
    /// `None`: the reply goes to illumo-flow's bucket.
    output: Option<CtxPath>,
    structured: Option<CtxPath>,
}

const KEYS: [&str; 4] = [
    "output_path",
    "structured_path",
    "history_path",
    "history_limit",
];

impl NodeFactory for AgentFactory {
    fn type_name(&self) -> &'static str {
        "Agent"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.Agent",
            "illumo_flow.nodes.agent.Agent",
            "illumo_flow.Agent",
        ]
    }
    fn summary(&self) -> &'static str {
        "one LLM call: system + prompt template -> reply (text or checked JSON)"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(false, &KEYS, &["prompt"])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let allowed: Vec<&str> = COMMON.iter().chain(KEYS.iter()).copied().collect();
        if !check_keys(cx, "Agent", &allowed) {
            return None;
        }
        let config: AgentConfig = cx.config()?;
        let format = reply_format(cx, config.response_format.as_ref());
        let core = AgentCore::build(cx, &self.0, &config);
        let default_output = format!("$ctx.agents.{}", cx.node_id);
        let output = match (cx.dialect, config.output_path.as_deref()) {
            (illumo_engine::dialect::Dialect::IllumoFlow, None) => Some(None),
            (_, path) => cx.ctx_path("output_path", path, &default_output).map(Some),
        };
        let structured = cx.optional_ctx_path("structured_path", config.structured_path.as_deref());
        if structured.as_ref().is_some_and(Option::is_some) && format == Some(ReplyFormat::Text) {
            cx.error(
                cx.at(&["structured_path"]),
                "structured_path",
                "`structured_path` needs `response_format: json` or a schema",
            );
            return None;
        }
        let (format, core, output, structured) = (format?, core?, output?, structured?);
        Some(Box::new(Agent {
            core,
            format,
            output,
            structured,
        }))
    }
}

/// `text` (default), `json`, or a JSON Schema object.
pub(crate) fn reply_format(cx: &mut BuildCx, value: Option<&Value>) -> Option<ReplyFormat> {
    match value {
        None => Some(ReplyFormat::Text),
        Some(Value::String(s)) if s == "text" => Some(ReplyFormat::Text),
        Some(Value::String(s)) if s == "json" => Some(ReplyFormat::Json),
        Some(schema @ Value::Object(_)) => {
            let problems = super::schema::unsupported(schema);
            for p in &problems {
                let steps: Vec<&str> = std::iter::once("response_format")
                    .chain(p.at.iter().map(String::as_str))
                    .collect();
                let place = if p.keyword == "pattern" {
                    cx.at(&steps)
                } else {
                    cx.at(&steps).as_key()
                };
                cx.error(place, &p.text, p.why.clone());
            }
            problems
                .is_empty()
                .then(|| ReplyFormat::Schema(schema.clone()))
        }
        Some(other) => {
            let text = other.to_string();
            cx.error(
                cx.at(&["response_format"]),
                &text,
                format!("`response_format` is `text`, `json` or a JSON Schema, not {text}"),
            );
            None
        }
    }
}

#[illumo_engine::async_trait]
impl Node for Agent {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let answer = self.core.ask(&cx, None, &self.format).await?;
        let text = Value::String(answer.text.clone());
        let mut outcome = Outcome::value(text.clone());
        if let Some(path) = &self.output {
            outcome = outcome.with_write(path.clone(), text.clone());
        }
        if let (Some(path), Some(json)) = (&self.structured, &answer.json) {
            outcome = outcome.with_write(path.clone(), json.clone());
        }
        let slots = [
            ("response", self.output.is_none().then_some(text)),
            ("metadata", self.core.unrouted_metadata(&answer)),
            (
                "structured",
                answer.json.clone().filter(|_| self.structured.is_none()),
            ),
        ];
        if let Some((path, bucket)) = self.core.bucket(&cx, &slots) {
            outcome = outcome.with_write(path, bucket);
        }
        if let Some(path) = &self.core.metadata {
            outcome = outcome.with_write(path.clone(), answer.metadata.clone());
        }
        if let Some((path, history)) = self.core.history_with(&cx, &answer) {
            outcome = outcome.with_write(path, history);
        }
        Ok(outcome)
    }

    /// Nodes offered as tools run under this one.
    fn references(&self) -> Vec<illumo_engine::node::NodeRef> {
        self.core.tools.refs.clone()
    }

    fn reads(&self) -> Reads {
        self.core.reads()
    }
}
