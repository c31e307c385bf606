//! `Handoff` (alias `HandoffNode`): hands a conversation to people. It builds a ticket
//! `{ticket_id, session_id, reason, confidence, history, created_at}` and POSTs it to
//! `url` with the `Http` rules; with no `url` it appends the ticket to an outbox JSONL
//! file instead (a dry run: nothing leaves the machine). It writes the ticket's id to
//! `ctx.escalation.ticket`: the id the server answers with (`ticket_id` or `id` in its
//! JSON), else the generated one.

use super::http::{self, Body, Request};
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the support desk's webhook (a template); without it the ticket goes to `outbox`
    #[schemars(extend("x-kind" = "template"))]
    url: Option<String>,
    /// header values (templates); values read from $env are secrets, redacted in traces
    #[schemars(extend("x-kind" = "map"))]
    headers: Option<Map<String, Value>>,
    /// how long the request may take (default 10s)
    #[schemars(extend("x-kind" = "duration"))]
    timeout: Option<Value>,
    /// status codes that count as success (default any 2xx)
    #[schemars(extend("x-kind" = "list"))]
    expect: Option<Vec<u16>>,
    /// JSONL file the ticket is appended to when there is no `url`, inside the flow's folder (default outbox.jsonl)
    #[schemars(extend("x-kind" = "file"))]
    outbox: Option<String>,
    /// why the conversation is handed over (a template; default: low confidence)
    #[schemars(extend("x-kind" = "template"))]
    reason: Option<String>,
    /// the session (default $ctx.user.session_id)
    #[schemars(extend("x-kind" = "$ctx path"))]
    session_path: Option<String>,
    /// the confidence that led here (default $ctx.chat.confidence)
    #[schemars(extend("x-kind" = "$ctx path"))]
    confidence_path: Option<String>,
    /// the conversation so far (default $ctx.chat.history)
    #[schemars(extend("x-kind" = "$ctx path"))]
    history_path: Option<String>,
    /// where the ticket's id goes (default $ctx.escalation.ticket)
    #[schemars(extend("x-kind" = "$ctx path"))]
    ticket_path: Option<String>,
}

enum Delivery {
    Webhook(Box<Request>),
    Outbox(PathBuf),
}

pub struct Handoff {
    delivery: Delivery,
    reason: ValueSpec,
    session: CtxPath,
    confidence: CtxPath,
    history: CtxPath,
    ticket: CtxPath,
}

pub struct HandoffFactory;

/// An outbox inside the flow's folder: relative, no `..`.
fn outbox_path(base: &Path, given: &str) -> Result<PathBuf, String> {
    let path = Path::new(given);
    if path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "the outbox `{given}` must be a relative path inside the flow's folder (no `..`)"
        ));
    }
    Ok(base.join(path))
}

impl NodeFactory for HandoffFactory {
    fn type_name(&self) -> &'static str {
        "Handoff"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["HandoffNode"]
    }
    fn summary(&self) -> &'static str {
        "hands the conversation to people: a ticket POSTed to a webhook, or appended to an outbox file"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let delivery = match &config.url {
            Some(url) => Delivery::Webhook(Box::new(http::request(
                cx,
                http::Settings {
                    method: Some("POST"),
                    url,
                    headers: config.headers.as_ref(),
                    query: None,
                    body: Body::None,
                    timeout: config.timeout.as_ref(),
                    expect: config.expect.clone(),
                },
            )?)),
            None => {
                let given = config.outbox.as_deref().unwrap_or("outbox.jsonl");
                match outbox_path(cx.base_dir, given) {
                    Ok(p) => Delivery::Outbox(p),
                    Err(e) => {
                        cx.error(cx.at(&["outbox"]), given, e);
                        return None;
                    }
                }
            }
        };
        let reason = config
            .reason
            .unwrap_or_else(|| "low confidence".to_string());
        let reason = cx.value(cx.at(&["reason"]), &Value::String(reason));
        let session = cx.ctx_path(
            "session_path",
            config.session_path.as_deref(),
            "$ctx.user.session_id",
        );
        let confidence = cx.ctx_path(
            "confidence_path",
            config.confidence_path.as_deref(),
            "$ctx.chat.confidence",
        );
        let history = cx.ctx_path(
            "history_path",
            config.history_path.as_deref(),
            "$ctx.chat.history",
        );
        let ticket = cx.ctx_path(
            "ticket_path",
            config.ticket_path.as_deref(),
            "$ctx.escalation.ticket",
        );
        Some(Box::new(Handoff {
            delivery,
            reason: reason?,
            session: session?,
            confidence: confidence?,
            history: history?,
            ticket: ticket?,
        }))
    }
}

#[illumo_engine::async_trait]
impl Node for Handoff {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let reason = match self
            .reason
            .render(cx.ctx)
            .map_err(|e| NodeError::fatal(e.to_string()))?
        {
            Value::String(s) => s,
            other => other.to_string(),
        };
        // The same id for a retry or a resumed rerun of this step.
        let ticket_id = format!(
            "T-{}",
            &illumo_engine::journal::digest(
                format!("{}\n{}\n{}", cx.trace_id, cx.id, cx.step).as_bytes()
            )[..10]
        );
        let ticket = json!({
            "ticket_id": ticket_id,
            "session_id": self.session.get(cx.ctx).cloned().unwrap_or(Value::Null),
            "reason": reason,
            "confidence": self.confidence.get(cx.ctx).cloned().unwrap_or(Value::Null),
            "history": self.history.get(cx.ctx).cloned().unwrap_or_else(|| json!([])),
            "created_at": illumo_engine::ids::iso8601(std::time::SystemTime::now()),
        });
        let (id, delivered) = match &self.delivery {
            Delivery::Webhook(request) => {
                let answer = request.send(&cx, Some(ticket.clone())).await?;
                let id = ["ticket_id", "id"]
                    .iter()
                    .find_map(|k| answer["json"].get(*k).filter(|v| !v.is_null()).cloned())
                    .map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| ticket_id.clone());
                (
                    id,
                    json!({"to": "webhook", "status": answer["status"], "response": answer.get("json").or(answer.get("text"))}),
                )
            }
            Delivery::Outbox(path) => {
                append(path, &ticket).map_err(NodeError::fatal)?;
                (
                    ticket_id.clone(),
                    json!({"to": "outbox", "file": path.display().to_string()}),
                )
            }
        };
        let output = json!({"ticket": ticket, "ticket_id": id, "delivered": delivered});
        Ok(Outcome::value(output).with_write(self.ticket.clone(), json!(id)))
    }

    fn reads(&self) -> Reads {
        let mut reads = self.reason.reads();
        for p in [&self.session, &self.confidence, &self.history] {
            reads.merge(&Reads::path(p.steps.clone()));
        }
        if let Delivery::Webhook(r) = &self.delivery {
            reads.merge(&r.reads());
        }
        reads
    }
}

/// Appends one JSON line; a symlink or anything but a regular file is refused.
fn append(path: &Path, ticket: &Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open the outbox `{}`: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "the outbox `{}` is not a regular file",
            path.display()
        ));
    }
    writeln!(file, "{ticket}")
        .map_err(|e| format!("cannot write the outbox `{}`: {e}", path.display()))
}
