//! `ReviewAgent`: the model reviews and answers `{status: OK|NG, score, reasons, summary}`,
//! parsed strictly into `ctx.review`. `EvaluationAgent`: the same with a required score;
//! without a status, `score >= pass_score` is OK.

use super::{check_keys, clip, AgentConfig, AgentCore, ReplyFormat, COMMON};
use crate::llm::Llm;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use serde_json::{json, Value};
use std::sync::Arc;

pub struct ReviewAgentFactory(pub Arc<Llm>);
pub struct EvaluationAgentFactory(pub Arc<Llm>);

pub struct ReviewAgent {
    core: AgentCore,
    path: CtxPath,
    /// `EvaluationAgent`: a score is required; this decides the status when none is given.
    pass_score: Option<f64>,
}

fn build(cx: &mut BuildCx, llm: &Llm, type_name: &str, evaluation: bool) -> Option<Box<dyn Node>> {
    let mut allowed: Vec<&str> = COMMON.to_vec();
    allowed.push("review_path");
    if evaluation {
        allowed.push("pass_score");
    }
    if !check_keys(cx, type_name, &allowed) {
        return None;
    }
    let config: AgentConfig = cx.config()?;
    let plain = config.response_format.is_none();
    if !plain {
        cx.error(
            cx.at(&["response_format"]).as_key(),
            "response_format",
            format!("`{type_name}` sets its own response format"),
        );
    }
    let path = cx.ctx_path(
        "review_path",
        config.review_path.as_deref(),
        crate::paths::REVIEW,
    );
    let pass_score = match (evaluation, config.pass_score) {
        (false, _) => Some(None),
        (true, Some(p)) if !(0.0..=1.0).contains(&p) => {
            cx.error(
                cx.at(&["pass_score"]),
                &p.to_string(),
                "`pass_score` is between 0 and 1",
            );
            None
        }
        (true, p) => Some(Some(p.unwrap_or(0.7))),
    };
    let core = AgentCore::build(cx, llm, &config);
    let (core, path, pass_score) = (core?, path?, pass_score?);
    plain.then(|| {
        Box::new(ReviewAgent {
            core,
            path,
            pass_score,
        }) as Box<dyn Node>
    })
}

impl NodeFactory for ReviewAgentFactory {
    fn type_name(&self) -> &'static str {
        "ReviewAgent"
    }
    fn summary(&self) -> &'static str {
        "the model reviews: {status: OK|NG, score, reasons, summary} into ctx.review"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(true, &["review_path"], &["prompt"])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        build(cx, &self.0, "ReviewAgent", false)
    }
}

impl NodeFactory for EvaluationAgentFactory {
    fn type_name(&self) -> &'static str {
        "EvaluationAgent"
    }
    fn summary(&self) -> &'static str {
        "the model scores from 0 to 1 with reasons; status OK when score >= pass_score"
    }
    fn settings_schema(&self) -> Value {
        super::agent_schema(true, &["review_path", "pass_score"], &["prompt"])
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        build(cx, &self.0, "EvaluationAgent", true)
    }
}

impl ReviewAgent {
    /// The verdict, strictly: anything unexpected is an error that shows the reply.
    fn verdict(&self, value: &Value, reply: &str) -> Result<Value, NodeError> {
        let fail = |why: &str| {
            NodeError::retryable(format!("the review is not valid ({why}): {}", clip(reply)))
        };
        let object = value.as_object().ok_or_else(|| fail("not a JSON object"))?;
        let score = match object.get("score") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| fail("`score` must be a number from 0 to 1"))?,
            ),
        };
        let status = match object.get("status") {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("ok") => "OK",
            Some(Value::String(s)) if s.eq_ignore_ascii_case("ng") => "NG",
            Some(_) => return Err(fail("`status` must be \"OK\" or \"NG\"")),
            None => match (self.pass_score, score) {
                (Some(pass), Some(s)) => {
                    if s >= pass {
                        "OK"
                    } else {
                        "NG"
                    }
                }
                _ => return Err(fail("`status` is missing")),
            },
        };
        if self.pass_score.is_some() && score.is_none() {
            return Err(fail("`score` is missing"));
        }
        let reasons: Vec<String> = match object.get("reasons") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail("`reasons` must be a list of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(Value::String(one)) => vec![one.clone()],
            Some(_) => return Err(fail("`reasons` must be a list of strings")),
        };
        let summary = match object.get("summary") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(fail("`summary` must be a string")),
        };
        Ok(json!({"status": status, "score": score, "reasons": reasons, "summary": summary}))
    }
}

#[illumo_engine::async_trait]
impl Node for ReviewAgent {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let instruction = if self.pass_score.is_some() {
            "Answer with JSON only: {\"score\": a number from 0 to 1, \"status\": \"OK\" or \"NG\", \"reasons\": [\"...\"], \"summary\": \"one or two sentences\"}."
        } else {
            "Answer with JSON only: {\"status\": \"OK\" if it is acceptable, else \"NG\", \"score\": a number from 0 to 1, \"reasons\": [\"...\"], \"summary\": \"one or two sentences\"}."
        };
        let schema = json!({
            "type": "object", "required": ["status", "score", "reasons", "summary"], "additionalProperties": false,
            "properties": {
                "status": {"type": "string", "enum": ["OK", "NG"]},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "summary": {"type": "string"},
            },
        });
        let answer = self
            .core
            .ask(&cx, Some(instruction), &ReplyFormat::Guided(schema))
            .await?;
        let parsed = super::parse_json_reply(&answer.text, &ReplyFormat::Json).map_err(|why| {
            NodeError::retryable(format!(
                "the review is not valid ({why}): {}",
                clip(&answer.text)
            ))
        })?;
        let verdict = self.verdict(&parsed, &answer.text)?;
        let mut outcome = Outcome::value(verdict.clone()).with_write(self.path.clone(), verdict);
        if let Some(path) = &self.core.metadata {
            outcome = outcome.with_write(path.clone(), answer.metadata);
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
