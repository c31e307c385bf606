//! `RouterAgent`: the model picks one of `choices`; the flow goes there.

use super::{check_keys, clip, AgentConfig, AgentCore, ReplyFormat, COMMON};
use crate::llm::Llm;
use illumo_engine::node::{
    BuildCx, Node, NodeCx, NodeError, NodeFactory, NodeRef, Outcome, RefRole, Route,
};
use illumo_engine::template::Reads;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct RouterAgentFactory(pub Arc<Llm>);

pub struct RouterAgent {
    core: AgentCore,
    /// (label the model sees, node id).
    choices: Vec<(String, String)>,
    refs: Vec<NodeRef>,
    /// Where the chosen node id goes too (illumo-flow's `output_path`).
    output: Option<illumo_engine::path::CtxPath>,
    /// A flow written for illumo-flow: its prompt, and its reading of the reply.
    illumo_flow: bool,
}

impl NodeFactory for RouterAgentFactory {
    fn type_name(&self) -> &'static str {
        "RouterAgent"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.nodes.RouterAgent",
            "illumo_flow.nodes.agent.RouterAgent",
            "illumo_flow.RouterAgent",
        ]
    }
    fn summary(&self) -> &'static str {
        "the model picks the next node from `choices` and says how sure it is and why"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(false, &["choices", "output_path"], &["prompt", "choices"])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let allowed: Vec<&str> = COMMON
            .iter()
            .chain(["choices", "output_path"].iter())
            .copied()
            .collect();
        if !check_keys(cx, "RouterAgent", &allowed) {
            return None;
        }
        let config: AgentConfig = cx.config()?;
        let mut choices = Vec::new();
        let mut refs = Vec::new();
        match &config.choices {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let Some(id) = item.as_str() else {
                        cx.error(
                            cx.at(&["choices", &i.to_string()]),
                            &item.to_string(),
                            "a choice is a node id",
                        );
                        return None;
                    };
                    choices.push((id.to_string(), id.to_string()));
                    refs.push(NodeRef {
                        id: id.to_string(),
                        at: cx.at(&["choices", &i.to_string()]),
                        role: RefRole::Route,
                        label: Some("choice".into()),
                    });
                }
            }
            Some(Value::Object(map)) if !map.is_empty() => {
                for (label, id) in map {
                    let Some(id) = id.as_str() else {
                        cx.error(
                            cx.at(&["choices", label]),
                            &id.to_string(),
                            "a choice maps a label to a node id",
                        );
                        return None;
                    };
                    choices.push((label.clone(), id.to_string()));
                    refs.push(NodeRef {
                        id: id.to_string(),
                        at: cx.at(&["choices", label]),
                        role: RefRole::Route,
                        label: Some(format!("choice {label}")),
                    });
                }
            }
            _ => {
                cx.error(
                    cx.setting_at.clone(),
                    cx.node_id,
                    "`RouterAgent` needs `choices`: a list of node ids or a map {label: node}",
                );
                return None;
            }
        }
        if config.response_format.is_some() {
            cx.error(
                cx.at(&["response_format"]).as_key(),
                "response_format",
                "`RouterAgent` sets its own response format",
            );
            return None;
        }
        let core = AgentCore::build(cx, &self.0, &config)?;
        let output = cx.optional_ctx_path("output_path", config.output_path.as_deref())?;
        Some(Box::new(RouterAgent {
            core,
            choices,
            refs,
            output,
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
        }))
    }
}

impl RouterAgent {
    /// As illumo-flow's RouterAgent: the prompt ends with `Choose exactly one of: a, b.`,
    /// the reply (in words or JSON) is the decision's reason and goes to `metadata_path`,
    /// the output is `{choice: input}`, and the chosen node gets the input (that map when
    /// the input is null); what has no path goes to the `ctx.agents.<id>` bucket.
    async fn run_as_illumo_flow(&self, cx: &NodeCx<'_>) -> Result<Outcome, NodeError> {
        let ask = format!("Choose exactly one of: {}.", self.labels().join(", "));
        let answer = self
            .core
            .ask_with(cx, None, Some(&ask), &ReplyFormat::Text)
            .await?;
        let text = answer.text.clone();
        let parsed = super::parse_json_reply(&text, &ReplyFormat::Json)
            .ok()
            .filter(|v| v.get("choice").is_some());
        let mut route = self.decide(&text, parsed.as_ref())?;
        if route.reason.is_none() && !text.is_empty() {
            route.reason = Some(text.clone());
        }
        let chosen = route.targets.first().cloned().unwrap_or_default();
        let branches = json!({ chosen.as_str(): cx.input });
        let next = match cx.input {
            Value::Null => branches.clone(),
            input => input.clone(),
        };
        route.inputs = vec![Some(next)];
        let mut outcome = Outcome::routed(branches, route);
        if let Some(path) = &self.output {
            outcome = outcome.with_write(path.clone(), Value::String(chosen));
        }
        if let Some(path) = &self.core.metadata {
            outcome = outcome.with_write(path.clone(), Value::String(text.clone()));
        }
        let slots = [
            (
                "response",
                self.output.is_none().then(|| Value::String(text.clone())),
            ),
            ("metadata", self.core.unrouted_metadata(&answer)),
        ];
        if let Some((path, bucket)) = self.core.bucket(cx, &slots) {
            outcome = outcome.with_write(path, bucket);
        }
        Ok(outcome)
    }

    fn labels(&self) -> Vec<&str> {
        self.choices.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// JSON `{choice, confidence, reason}`, or just a label.
    fn decide(&self, reply: &str, parsed: Option<&Value>) -> Result<Route, NodeError> {
        let (choice, confidence, reason) = match parsed {
            Some(v) => (
                v.get("choice").and_then(Value::as_str).map(str::to_string),
                // A confidence outside 0..1 says nothing; it is dropped, not trusted.
                v.get("confidence")
                    .and_then(Value::as_f64)
                    .filter(|c| (0.0..=1.0).contains(c)),
                v.get("reason").and_then(Value::as_str).map(str::to_string),
            ),
            None => (
                Some(
                    reply
                        .trim()
                        .trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c == '.')
                        .to_string(),
                ),
                None,
                None,
            ),
        };
        let exact = choice.as_deref().and_then(|c| {
            self.choices
                .iter()
                .find(|(label, _)| label.eq_ignore_ascii_case(c.trim()))
        });
        // A reply in words (not JSON): as illumo-flow reads it, the first choice (in
        // order) that the reply contains, ignoring case, else its first word.
        let found = exact.or_else(|| {
            if parsed.is_some() {
                return None;
            }
            let lower = reply.to_lowercase();
            let first = lower
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-');
            self.choices
                .iter()
                .find(|(label, _)| !label.is_empty() && lower.contains(&label.to_lowercase()))
                .or_else(|| {
                    self.choices
                        .iter()
                        .find(|(label, _)| label.eq_ignore_ascii_case(first))
                })
        });
        match found {
            Some((_, id)) => Ok(Route {
                targets: vec![id.clone()],
                confidence,
                reason,
                ..Route::default()
            }),
            None => Err(NodeError::retryable(format!(
                "the reply picks none of the choices (`{}`): {}",
                self.labels().join("`, `"),
                clip(reply)
            ))),
        }
    }
}

#[illumo_engine::async_trait]
impl Node for RouterAgent {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        if self.illumo_flow {
            return self.run_as_illumo_flow(&cx).await;
        }
        let labels = self.labels();
        let instruction = format!(
            "Choose what happens next. Answer with JSON only: {{\"choice\": one of {}, \"confidence\": a number from 0 to 1, \"reason\": \"one short sentence\"}}.",
            serde_json::to_string(&labels).unwrap_or_default()
        );
        let schema = json!({
            "type": "object", "required": ["choice", "confidence", "reason"], "additionalProperties": false,
            "properties": {
                "choice": {"type": "string", "enum": labels},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "reason": {"type": "string"},
            },
        });
        // A bare label is a fine answer too, so the reply is parsed here, not as strict JSON.
        let answer = self
            .core
            .ask(
                &cx,
                Some(&instruction),
                &ReplyFormat::Guided(schema.clone()),
            )
            .await?;
        let text = answer.text.clone();
        // Read the JSON leniently: a valid choice counts even when the rest is off.
        let parsed = super::parse_json_reply(&text, &ReplyFormat::Json)
            .ok()
            .filter(|v| v.get("choice").is_some());
        let route = self.decide(&text, parsed.as_ref())?;
        let chosen = route.targets.first().cloned();
        let mut outcome = Outcome::routed(cx.input.clone(), route);
        if let (Some(path), Some(chosen)) = (&self.output, chosen) {
            outcome = outcome.with_write(path.clone(), Value::String(chosen));
        }
        if let Some(path) = &self.core.metadata {
            outcome = outcome.with_write(path.clone(), answer.metadata.clone());
        }
        Ok(outcome)
    }

    fn reads(&self) -> Reads {
        self.core.reads()
    }

    fn routes(&self) -> bool {
        true
    }

    fn routes_need_edges(&self) -> bool {
        true
    }

    fn references(&self) -> Vec<NodeRef> {
        let mut refs = self.refs.clone();
        refs.extend(self.core.tools.refs.iter().cloned());
        refs
    }
}
