//! `Audit` (alias `AuditNode`): appends the turn to `ctx.support.history`, one entry
//! `{at, session_id, role, text, node, confidence}` per message, and records each as an
//! `audit` event, so `SELECT ... FROM events WHERE name = 'audit'` lists a conversation.

use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the messages to record: [{role, text, confidence}] (templates; default the user's $ctx.chat.message and the assistant's $ctx.chat.answer with $ctx.chat.confidence)
    #[schemars(extend("x-kind" = "list"))]
    entries: Option<Vec<EntryConfig>>,
    /// the session (default $ctx.user.session_id)
    #[schemars(extend("x-kind" = "$ctx path"))]
    session_path: Option<String>,
    /// the list entries are appended to (default $ctx.support.history)
    #[schemars(extend("x-kind" = "$ctx path"))]
    history_path: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EntryConfig {
    role: String,
    text: Value,
    confidence: Option<Value>,
}

struct Entry {
    role: String,
    text: ValueSpec,
    confidence: Option<ValueSpec>,
}

pub struct Audit {
    entries: Vec<Entry>,
    session: CtxPath,
    history: CtxPath,
}

pub struct AuditFactory;

impl NodeFactory for AuditFactory {
    fn type_name(&self) -> &'static str {
        "Audit"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["AuditNode"]
    }
    fn summary(&self) -> &'static str {
        "appends the turn to ctx.support.history and records each message as an `audit` event"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let given = config.entries.unwrap_or_else(|| {
            vec![
                EntryConfig {
                    role: "user".into(),
                    text: json!("$ctx.chat.message"),
                    confidence: None,
                },
                EntryConfig {
                    role: "assistant".into(),
                    text: json!("$ctx.chat.answer"),
                    confidence: Some(json!("$ctx.chat.confidence")),
                },
            ]
        });
        let mut entries = Vec::new();
        let mut ok = true;
        for (i, e) in given.iter().enumerate() {
            let index = i.to_string();
            let text = cx.value(cx.at(&["entries", &index, "text"]), &e.text);
            let confidence = match &e.confidence {
                Some(c) => cx
                    .value(cx.at(&["entries", &index, "confidence"]), c)
                    .map(Some),
                None => Some(None),
            };
            match (text, confidence) {
                (Some(text), Some(confidence)) => entries.push(Entry {
                    role: e.role.clone(),
                    text,
                    confidence,
                }),
                _ => ok = false,
            }
        }
        let session = cx.ctx_path(
            "session_path",
            config.session_path.as_deref(),
            "$ctx.user.session_id",
        );
        let history = cx.ctx_path(
            "history_path",
            config.history_path.as_deref(),
            "$ctx.support.history",
        );
        if !ok {
            return None;
        }
        Some(Box::new(Audit {
            entries,
            session: session?,
            history: history?,
        }))
    }
}

#[illumo_engine::async_trait]
impl Node for Audit {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let session = self.session.get(cx.ctx).cloned().unwrap_or(Value::Null);
        let mut history = match self.history.get(cx.ctx) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        let at = illumo_engine::ids::iso8601(std::time::SystemTime::now());
        let mut added = Vec::new();
        for e in &self.entries {
            // A message a branch did not produce is recorded as missing, not as an error.
            let text = e.text.render(cx.ctx).unwrap_or(Value::Null);
            let confidence = match &e.confidence {
                Some(spec) => spec.render(cx.ctx).unwrap_or(Value::Null),
                None => Value::Null,
            };
            let entry = json!({"at": at, "session_id": session, "role": e.role, "text": text, "node": cx.id, "confidence": confidence});
            if let Value::Object(map) = &entry {
                let mut attributes: Map<String, Value> = map.clone();
                attributes.remove("at");
                cx.event("audit", attributes);
            }
            history.push(entry.clone());
            added.push(entry);
        }
        Ok(Outcome::value(Value::Array(added))
            .with_write(self.history.clone(), Value::Array(history)))
    }

    fn reads(&self) -> Reads {
        let mut reads = Reads::path(self.session.steps.clone());
        reads.merge(&Reads::path(self.history.steps.clone()));
        for e in &self.entries {
            reads.merge(&e.text.reads());
            if let Some(c) = &e.confidence {
                reads.merge(&c.reads());
            }
        }
        reads
    }
}
