//! `Approval` (alias `HumanInput`): asks a person. On a terminal it asks inline; otherwise
//! (or with `--no-input`) the run pauses with its journal committed, and
//! `illumo resume TRACE_ID --input '{"choice": "approve"}'` continues with the answer.
//!
//! Output: `{choice, comment, answer, message, via}`: `via` is `terminal` or `resume`.

use illumo_engine::duration::duration_from_json;
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// what the person is asked (a template: the diff, the draft, ...)
    message: String,
    /// the answers to choose from (default: approve, reject); `[]` with `input_schema` for a free answer only
    #[schemars(extend("x-kind" = "list"))]
    choices: Option<Vec<String>>,
    /// JSON Schema the answer must fit (type, properties, required, enum, ...)
    #[schemars(extend("x-kind" = "map"))]
    input_schema: Option<Value>,
    /// on a terminal, how long to wait for an answer before pausing (default: no limit)
    #[schemars(extend("x-kind" = "duration"))]
    timeout: Option<Value>,
}

pub struct Approval {
    message: ValueSpec,
    question: Question,
}

/// What a person is asked and which answers fit; `Patch` asks one before it writes.
pub(crate) struct Question {
    pub choices: Vec<String>,
    pub input_schema: Option<Value>,
    pub timeout: Option<Duration>,
}

pub struct ApprovalFactory;

impl NodeFactory for ApprovalFactory {
    fn type_name(&self) -> &'static str {
        "Approval"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["HumanInput"]
    }
    fn summary(&self) -> &'static str {
        "asks a person: inline on a terminal, else the run pauses until `illumo resume --input`"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let message = cx.value(cx.at(&["message"]), &Value::String(config.message.clone()));
        let choices = config
            .choices
            .unwrap_or_else(|| vec!["approve".into(), "reject".into()]);
        if choices.is_empty() && config.input_schema.is_none() {
            cx.error(
                cx.at(&["choices"]),
                "[]",
                "no choices and no `input_schema`: nothing could answer; give `choices` or an `input_schema`",
            );
        }
        if let Some(schema) = &config.input_schema {
            if let Some(bad) = crate::agents::schema::unsupported(schema).first() {
                let mut steps = vec!["input_schema"];
                steps.extend(bad.at.iter().map(String::as_str));
                cx.error(cx.at(&steps), &bad.text, bad.why.clone());
            }
        }
        let timeout = match &config.timeout {
            None => None,
            Some(v) => match duration_from_json(v).filter(|d| !d.is_zero()) {
                Some(d) => Some(d),
                None => {
                    cx.error(
                        cx.at(&["timeout"]),
                        &v.to_string(),
                        format!("invalid duration `{v}`; use 30s, 10m, ..."),
                    );
                    return None;
                }
            },
        };
        Some(Box::new(Approval {
            message: message?,
            question: Question {
                choices,
                input_schema: config.input_schema,
                timeout,
            },
        }))
    }
}

impl Question {
    /// approve or reject, asked without a time limit.
    pub fn approve_or_reject() -> Question {
        Question {
            choices: vec!["approve".into(), "reject".into()],
            input_schema: None,
            timeout: None,
        }
    }

    /// Checks an answer: a choice (`"approve"` or `{"choice": "approve"}`, with an optional
    /// `comment`), or with `input_schema` any value that fits it.
    pub fn check(&self, answer: &Value) -> Result<Value, String> {
        let answer = match answer {
            Value::String(s) if !self.choices.is_empty() => json!({"choice": s}),
            other => other.clone(),
        };
        if let Some(schema) = &self.input_schema {
            crate::agents::schema::validate(schema, &answer, "$")
                .map_err(|e| format!("the answer does not fit `input_schema`: {e}"))?;
        }
        let choice = answer.get("choice");
        match choice {
            Some(Value::String(c)) if self.choices.iter().any(|k| k == c) => {}
            Some(other) => {
                return Err(format!(
                    "`choice` is {other}; it must be one of {}",
                    self.choice_list()
                ))
            }
            None if self.input_schema.is_none() => {
                return Err(format!(
                "the answer has no `choice`; give one of {}, e.g. --input '{{\"choice\": \"{}\"}}'",
                self.choice_list(),
                self.choices.first().map_or("approve", String::as_str)
            ))
            }
            None => {}
        }
        if let Some(comment) = answer.get("comment") {
            if !comment.is_string() {
                return Err(format!("`comment` must be text; it is {comment}"));
            }
        }
        Ok(answer)
    }

    fn choice_list(&self) -> String {
        self.choices
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Asks on the terminal until an answer fits; `None` when there is no answer (end of
    /// input, or the timeout).
    pub async fn ask(&self, id: &str, message: &str) -> Option<Value> {
        let prompt = if self.choices.is_empty() {
            "answer (JSON)".to_string()
        } else {
            format!("answer [{}]", self.choices.join("/"))
        };
        eprintln!("\napproval needed at `{id}`:");
        for line in message.lines() {
            eprintln!("  {line}");
        }
        for _ in 0..5 {
            eprint!("{prompt}: ");
            let line = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                match std::io::stdin().read_line(&mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(line),
                }
            });
            let line = match self.timeout {
                Some(limit) => tokio::time::timeout(limit, line).await.ok()?,
                None => line.await,
            };
            let line = line.ok().flatten()?;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let value = match serde_json::from_str::<Value>(text) {
                Ok(v) if self.choices.is_empty() || v.is_object() => v,
                _ => Value::String(text.to_string()),
            };
            match self.check(&value) {
                Ok(answer) => return Some(answer),
                Err(e) => eprintln!("  {e}"),
            }
        }
        None
    }
}

impl Approval {
    fn output(&self, answer: Value, message: &str, via: &str) -> Value {
        let choice = answer.get("choice").cloned().unwrap_or(Value::Null);
        let comment = answer.get("comment").cloned().unwrap_or(Value::Null);
        json!({"choice": choice, "comment": comment, "answer": answer, "message": message, "via": via})
    }
}

#[illumo_engine::async_trait]
impl Node for Approval {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let message = match self
            .message
            .render(cx.ctx)
            .map_err(|e| NodeError::fatal(e.to_string()))?
        {
            Value::String(s) => s,
            other => other.to_string(),
        };
        if let Some(answer) = cx.answer {
            return Ok(Outcome::value(self.output(
                answer.clone(),
                &message,
                "resume",
            )));
        }
        if cx.permissions.ask {
            // What the terminal shows has the run's secrets replaced, as traces do.
            let shown = cx.preview(&Value::String(message.clone()), usize::MAX);
            if let Some(answer) = self.question.ask(cx.id, &shown).await {
                return Ok(Outcome::value(self.output(answer, &message, "terminal")));
            }
        }
        let mut attributes = Map::new();
        attributes.insert("choices".into(), json!(self.question.choices));
        cx.event("approval.waiting", attributes);
        Err(NodeError::paused(message))
    }

    fn reads(&self) -> Reads {
        self.message.reads()
    }

    fn check_answer(&self, answer: &Value) -> Option<Result<Value, String>> {
        Some(self.question.check(answer))
    }
}
