//! `ScoreAgent`: illumo-flow's `EvaluationAgent`, with its contract (its type names
//! `illumo_flow.nodes.EvaluationAgent`, ... are this one). The model scores a `target`;
//! the score is kept as the model gives it (0–100 in illumo-flow's docs: no
//! normalisation, no status), appended to `ctx.metrics.<id>` as `{timestamp, score,
//! reasons?, structured?}`, and is the node's output. `output_path` gets the score,
//! `metadata_path` the reasons and `structured_path` the parsed reply.

use super::{check_keys, AgentConfig, AgentCore, ReplyFormat, COMMON};
use crate::llm::Llm;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::{CtxPath, Step};
use illumo_engine::template::Reads;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub struct ScoreAgentFactory(pub Arc<Llm>);

const KEYS: [&str; 4] = ["target", "output_path", "structured_path", "metadata_path"];

pub struct ScoreAgent {
    core: AgentCore,
    id: String,
    output: Option<CtxPath>,
    structured: Option<CtxPath>,
    reasons: Option<CtxPath>,
}

impl NodeFactory for ScoreAgentFactory {
    fn type_name(&self) -> &'static str {
        "ScoreAgent"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.EvaluationAgent",
            "illumo_flow.nodes.agent.EvaluationAgent",
            "illumo_flow.EvaluationAgent",
        ]
    }
    fn summary(&self) -> &'static str {
        "illumo-flow's EvaluationAgent: the model scores a `target`; the raw score goes to ctx.metrics.<id>"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(false, &KEYS, &[])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let allowed: Vec<&str> = COMMON
            .iter()
            .filter(|k| **k != "metadata_path")
            .chain(KEYS.iter())
            .copied()
            .collect();
        if !check_keys(cx, "ScoreAgent", &allowed) {
            return None;
        }
        let mut config: AgentConfig = cx.config()?;
        // illumo-flow's prompt: the prompt, then the target's text.
        let target = config.target.clone().map(|t| {
            if t.contains("{{") {
                t
            } else {
                format!("{{{{ {t} }}}}")
            }
        });
        config.prompt = match (config.prompt.take(), target) {
            (Some(p), Some(t)) => Some(format!("{p}\n\nTarget:\n{t}")),
            (Some(p), None) => Some(p),
            (None, Some(t)) => Some(format!(
                "Evaluate the following content and respond with JSON containing fields 'score' and 'reasons':\n{t}"
            )),
            (None, None) => {
                cx.error(cx.at(&[]), cx.node_id, "a ScoreAgent needs a `prompt` or a `target`");
                return None;
            }
        };
        let reasons = cx.optional_ctx_path("metadata_path", config.metadata_path.as_deref());
        let output = cx.optional_ctx_path("output_path", config.output_path.as_deref());
        let structured = cx.optional_ctx_path("structured_path", config.structured_path.as_deref());
        // The reasons go where `metadata_path` says, not the call's metadata.
        config.metadata_path = None;
        let core = AgentCore::build(cx, &self.0, &config)?;
        Some(Box::new(ScoreAgent {
            core,
            id: cx.node_id.to_string(),
            output: output?,
            structured: structured?,
            reasons: reasons?,
        }))
    }
}

#[illumo_engine::async_trait]
impl Node for ScoreAgent {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let answer = self.core.ask(&cx, None, &ReplyFormat::Text).await?;
        let text = answer.text.trim().to_string();
        let structured = serde_json::from_str::<Value>(&text).ok();
        let (score, reasons) = match &structured {
            Some(Value::Object(map)) => (
                map.get("score")
                    .cloned()
                    .unwrap_or_else(|| Value::String(text.clone())),
                map.get("reasons").or_else(|| map.get("reason")).cloned(),
            ),
            // A number alone; anything else stays the reply's text.
            _ if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) => (
                text.parse::<u64>()
                    .map_or(Value::String(text.clone()), Value::from),
                None,
            ),
            _ => (Value::String(text.clone()), None),
        };
        let mut entry = Map::new();
        entry.insert("timestamp".into(), json!(self.core.timestamp()));
        entry.insert("score".into(), score.clone());
        // As illumo-flow keeps them: reasons when there are some, and the reply parsed as
        // JSON whatever it is (`72` too).
        if let Some(r) = reasons.as_ref().filter(|r| truthy(r)) {
            entry.insert("reasons".into(), r.clone());
        }
        if let Some(s) = &structured {
            entry.insert("structured".into(), s.clone());
        }
        let mut history = match cx.ctx.get("metrics").and_then(|m| m.get(&self.id)) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        history.push(Value::Object(entry));
        let metrics = CtxPath::parse(&format!("$ctx.metrics.{}", self.id))
            .map_err(|e| NodeError::fatal(e.to_string()))?;
        let mut outcome = Outcome::value(score.clone()).with_write(metrics, Value::Array(history));
        if let Some(path) = &self.output {
            outcome = outcome.with_write(path.clone(), score);
        }
        if let (Some(path), Some(r)) = (&self.reasons, reasons) {
            outcome = outcome.with_write(path.clone(), r);
        }
        if let (Some(path), Some(s)) = (&self.structured, structured) {
            outcome = outcome.with_write(path.clone(), s);
        }
        let slots = [
            (
                "response",
                self.output
                    .is_none()
                    .then(|| Value::String(answer.text.clone())),
            ),
            (
                "metadata",
                self.reasons.is_none().then(|| answer.metadata.clone()),
            ),
        ];
        if let Some((path, bucket)) = self.core.bucket(&cx, &slots) {
            outcome = outcome.with_write(path, bucket);
        }
        Ok(outcome)
    }

    fn reads(&self) -> Reads {
        let mut reads = self.core.reads();
        reads.merge(&Reads::path(vec![
            Step::Key("metrics".into()),
            Step::Key(self.id.clone()),
        ]));
        reads
    }
}

/// Python's truth of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
