//! LLM agent nodes: `Agent`, `RouterAgent`, `ReviewAgent` / `EvaluationAgent`, `DraftAgent`.
//! They share one core: settings, prompt rendering, the provider call with its trace
//! events and GenAI attributes, and strict JSON replies.

mod agent;
mod draft;
mod review;
mod router;
pub(crate) mod schema;
mod score;
mod tools;

pub use agent::AgentFactory;
pub use draft::DraftAgentFactory;
pub use review::{EvaluationAgentFactory, ReviewAgentFactory};
pub use router::RouterAgentFactory;
pub use score::ScoreAgentFactory;

use crate::llm::{
    default_base_url, resolve, ChatRequest, Llm, Message, Provider, ProviderError,
    ProviderSettings, PROVIDERS,
};
use illumo_engine::diagnostic::did_you_mean;
use illumo_engine::node::{BuildCx, NodeCx, NodeError};
use illumo_engine::path::CtxPath;
use illumo_engine::template::Reads;
use illumo_engine::value::ValueSpec;
use illumo_engine::yaml::Yaml;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Every agent setting; each node type accepts its own subset. The doc comments are the
/// settings' documentation (`illumo nodes`), written once for all agents.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConfig {
    /// who answers (default openai)
    #[schemars(extend("x-kind" = "openai|ollama|lmstudio|scripted"))]
    provider: Option<String>,
    /// the model name (default gpt-4.1-mini for openai)
    #[schemars(extend("x-kind" = "text"))]
    model: Option<String>,
    /// an OpenAI-compatible server, with or without /v1
    #[schemars(extend("x-kind" = "url"))]
    base_url: Option<String>,
    /// environment variable with the API key (default OPENAI_API_KEY)
    #[schemars(extend("x-kind" = "name"))]
    api_key_env: Option<String>,
    /// the system message
    #[schemars(extend("x-kind" = "template"))]
    system: Option<String>,
    /// the user message, rendered from ctx
    #[schemars(extend("x-kind" = "template"))]
    prompt: Option<String>,
    /// illumo-flow's EvaluationAgent (ScoreAgent): what is scored, a $ctx path or a template
    #[schemars(extend("x-kind" = "$ctx path or template"))]
    pub(crate) target: Option<String>,
    /// sampling temperature
    #[schemars(extend("x-kind" = "number"))]
    temperature: Option<f64>,
    /// reply length limit
    #[schemars(extend("x-kind" = "number"))]
    max_tokens: Option<u64>,
    /// parse the reply as JSON, checked against a JSON Schema
    #[schemars(extend("x-kind" = "text|json|schema"))]
    response_format: Option<Value>,
    /// stream the reply (default: when the console is live)
    #[schemars(extend("x-kind" = "bool"))]
    stream: Option<bool>,
    /// scripted replies file for provider scripted
    #[schemars(extend("x-kind" = "file"))]
    responses: Option<String>,
    /// where the reply goes (default ctx.agents.<id>)
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) output_path: Option<String>,
    /// where the parsed JSON reply goes
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) structured_path: Option<String>,
    /// a conversation list: sent along, and the exchange appended
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) history_path: Option<String>,
    /// send only the most recent N messages of the history (older ones stay in ctx)
    #[schemars(extend("x-kind" = "number"))]
    pub(crate) history_limit: Option<usize>,
    /// model, tokens, latency, finish reason
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) metadata_path: Option<String>,
    /// node ids, or {label: node}; each must be an outgoing edge
    #[schemars(extend("x-kind" = "list or map"))]
    pub(crate) choices: Option<Value>,
    /// where the verdict goes (default $ctx.review)
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) review_path: Option<String>,
    /// score that counts as OK (default 0.7)
    #[schemars(extend("x-kind" = "0..1"))]
    pub(crate) pass_score: Option<f64>,
    /// where the diff goes (default $ctx.diff.proposed)
    #[schemars(extend("x-kind" = "$ctx path"))]
    pub(crate) diff_path: Option<String>,
    /// tools the model may call: `python`, `{node: ID, description, parameters}`, `{name: read_file, root: DIR}`
    #[schemars(extend("x-kind" = "list"))]
    tools: Option<Value>,
    /// `auto` (default), `required`, `none` or `{name: TOOL}`
    #[schemars(extend("x-kind" = "auto|required|none|{name}"))]
    tool_choice: Option<Value>,
    /// rounds of tool calls before the agent gives up (default 8)
    #[schemars(extend("x-kind" = "number"))]
    max_tool_rounds: Option<u64>,
    /// nucleus sampling, 0 to 1
    #[schemars(extend("x-kind" = "number"))]
    top_p: Option<f64>,
    /// a seed, for servers that make sampling repeatable with one
    #[schemars(extend("x-kind" = "number"))]
    seed: Option<i64>,
    /// text (or a list of texts) that ends the reply
    #[schemars(extend("x-kind" = "text or list"))]
    stop: Option<Value>,
}

pub(crate) const COMMON: [&str; 18] = [
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "system",
    "prompt",
    "temperature",
    "max_tokens",
    "response_format",
    "stream",
    "responses",
    "metadata_path",
    "tools",
    "tool_choice",
    "max_tool_rounds",
    "top_p",
    "seed",
    "stop",
];

/// The settings schema of an agent type: the common settings (without `response_format`
/// for types that set their own) and its own, in that order.
pub(crate) fn agent_schema(own_format: bool, extra: &[&str], required: &[&str]) -> Value {
    let keys: Vec<&str> = COMMON
        .iter()
        .copied()
        .filter(|k| !own_format || *k != "response_format")
        .chain(extra.iter().copied())
        .collect();
    crate::settings::schema_subset::<AgentConfig>(&keys, required)
}

/// The next, plainer response format to try: a JSON schema, then `json_object` carrying
/// the schema (llama-cpp-python's form), then none.
fn plainer(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .cloned()
                .unwrap_or(Value::Null);
            Some(json!({"type": "json_object", "schema": schema}))
        }
        _ => None,
    }
}

/// Reports settings that this agent type does not take, each at its place.
pub(crate) fn check_keys(cx: &mut BuildCx, type_name: &str, allowed: &[&str]) -> bool {
    let Yaml::Map(entries) = cx.setting else {
        return true;
    };
    let mut ok = true;
    for (key, _) in entries {
        if !allowed.contains(&key.as_str()) {
            if cx.ignore_setting(key, &format!("`{type_name}` has no setting `{key}`")) {
                continue;
            }
            let hint = did_you_mean(key, allowed.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            cx.error(
                cx.at(&[key]).as_key(),
                key,
                format!("`{type_name}` has no setting `{key}`{hint}"),
            );
            ok = false;
        }
    }
    ok
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReplyFormat {
    Text,
    Json,
    Schema(Value),
    /// Sends the schema (servers with constrained decoding follow it) but leaves parsing
    /// to the node, which also accepts other shapes.
    Guided(Value),
}

/// What every agent has: who to ask, and what.
pub(crate) struct AgentCore {
    provider: Arc<dyn Provider>,
    model: String,
    system: Option<ValueSpec>,
    prompt: ValueSpec,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    stream: Option<bool>,
    history: Option<CtxPath>,
    history_limit: Option<usize>,
    pub(crate) metadata: Option<CtxPath>,
    /// `ctx.agents.<id>`, in a flow written for illumo-flow: what has no path of its own
    /// goes there (see [`AgentCore::bucket`]).
    bucket: Option<CtxPath>,
    reads: Reads,
    pub(crate) tools: tools::Tools,
    sampling: Map<String, Value>,
}

/// One answered request.
pub(crate) struct Answer {
    pub text: String,
    /// The reply parsed as JSON, for JSON formats.
    pub json: Option<Value>,
    pub metadata: Value,
    /// The exchange: the user prompt and the reply, for `history_path`.
    pub prompt: String,
}

impl AgentCore {
    /// Builds what every agent has; every problem in these settings is reported, not
    /// only the first.
    pub(crate) fn build(cx: &mut BuildCx, llm: &Llm, config: &AgentConfig) -> Option<AgentCore> {
        let provider_name = config.provider.clone().unwrap_or_else(|| "openai".into());
        let known_provider = PROVIDERS.contains(&provider_name.as_str());
        if !known_provider {
            let hint =
                did_you_mean(&provider_name, PROVIDERS).map(|s| format!("did you mean `{s}`?"));
            cx.error(
                cx.at(&["provider"]),
                &provider_name,
                format!(
                    "unknown provider `{provider_name}`; {}",
                    hint.unwrap_or_else(|| format!("use one of `{}`", PROVIDERS.join("`, `")))
                ),
            );
        }
        let model = match (&config.model, provider_name.as_str()) {
            (Some(m), _) => env_template(cx, "model", m),
            // illumo-flow's agents default to gpt-4.1-nano.
            (None, "openai") if cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow => {
                Some("gpt-4.1-nano".into())
            }
            (None, "openai") => Some("gpt-4.1-mini".into()),
            (None, "scripted") => Some("scripted".into()),
            (None, _) if !known_provider => None,
            (None, other) => {
                cx.error(
                    cx.setting_at.clone(),
                    cx.node_id,
                    format!("provider `{other}` needs a `model`"),
                );
                None
            }
        };
        let prompt = match &config.prompt {
            Some(text) => cx.value(cx.at(&["prompt"]), &Value::String(text.clone())),
            // illumo-flow sends no input then: the model gets the system text alone (a
            // router, its "Choose exactly one of" line).
            None if cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow => {
                Some(ValueSpec::Literal(Value::String(String::new())))
            }
            None => {
                cx.error(
                    cx.setting_at.clone(),
                    cx.node_id,
                    "an agent needs a `prompt`",
                );
                None
            }
        };
        let system = match &config.system {
            Some(s) => cx
                .value(cx.at(&["system"]), &Value::String(s.clone()))
                .map(Some),
            None => Some(None),
        };
        let temperature_ok = config
            .temperature
            .is_none_or(|t| cx.check_range("temperature", t, 0.0, 2.0));
        let tokens_ok = config
            .max_tokens
            .is_none_or(|n| cx.check_range("max_tokens", n, 1, 1_000_000));
        let history = cx.optional_ctx_path("history_path", config.history_path.as_deref());
        let metadata = cx.optional_ctx_path("metadata_path", config.metadata_path.as_deref());
        let provider = if known_provider {
            if provider_name != "scripted" {
                let name = config.api_key_env.as_deref().unwrap_or("OPENAI_API_KEY");
                cx.secret_env(name);
            }
            let settings = ProviderSettings {
                provider: provider_name.clone(),
                base_url: match &config.base_url {
                    Some(url) => Some(env_template(cx, "base_url", url)?),
                    None => default_base_url(&provider_name),
                },
                api_key_env: config
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| "OPENAI_API_KEY".into()),
                responses: config.responses.as_deref().map(|f| resolve(cx.base_dir, f)),
            };
            match llm.provider(&settings) {
                Ok(p) => Some(p),
                Err(e) => {
                    let (at, text) = match &config.responses {
                        Some(f) => (cx.at(&["responses"]), f.clone()),
                        None => (cx.at(&["provider"]), provider_name.clone()),
                    };
                    cx.error(at, &text, e);
                    None
                }
            }
        } else {
            None
        };
        let top_p_ok = config
            .top_p
            .is_none_or(|p| cx.check_range("top_p", p, 0.0, 1.0));
        let stop_ok = match &config.stop {
            None | Some(Value::String(_)) => true,
            Some(Value::Array(items)) if items.iter().all(Value::is_string) && items.len() <= 4 => {
                true
            }
            Some(other) => {
                cx.error(
                    cx.at(&["stop"]),
                    &other.to_string(),
                    "`stop` is a text or a list of up to 4 texts",
                );
                false
            }
        };
        let mut sampling = Map::new();
        if let Some(p) = config.top_p {
            sampling.insert("top_p".into(), json!(p));
        }
        if let Some(s) = config.seed {
            sampling.insert("seed".into(), json!(s));
        }
        if let Some(s) = &config.stop {
            sampling.insert("stop".into(), s.clone());
        }
        let tools = tools::Tools::build(
            cx,
            config.tools.as_ref(),
            config.tool_choice.as_ref(),
            config.max_tool_rounds,
        );
        let (provider, model, prompt, system, tools) =
            (provider?, model?, prompt?, system?, tools?);
        if !(temperature_ok && tokens_ok && top_p_ok && stop_ok) {
            return None;
        }
        let (history, metadata) = (history?, metadata?);
        let bucket = match cx.dialect {
            illumo_engine::dialect::Dialect::IllumoFlow => {
                CtxPath::parse(&format!("$ctx.agents.{}", cx.node_id)).ok()
            }
            illumo_engine::dialect::Dialect::Native => None,
        };
        let mut reads = prompt.reads();
        if let Some(b) = &bucket {
            reads.merge(&Reads::path(b.steps.clone()));
        }
        if let Some(s) = &system {
            reads.merge(&s.reads());
        }
        if let Some(h) = &history {
            reads.merge(&Reads::path(h.steps.clone()));
        }
        Some(AgentCore {
            provider,
            model,
            system,
            prompt,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            stream: config.stream,
            history,
            history_limit: config.history_limit,
            metadata,
            bucket,
            reads,
            tools,
            sampling,
        })
    }

    /// Now, in ISO-8601 UTC; in an illumo-flow flow as illumo-flow writes it
    /// (`datetime.utcnow().isoformat()`), without the `Z`.
    pub(crate) fn timestamp(&self) -> String {
        let mut now = illumo_engine::ids::iso8601(std::time::SystemTime::now());
        if self.bucket.is_some() {
            now.pop();
        }
        now
    }

    /// illumo-flow's `ctx.agents.<id>` bucket with this answer's `slots` (`response`,
    /// `metadata`, `structured`: each one the agent has no path for) added as
    /// `{timestamp, value}`: the first entry of a slot as it is, a list from the second
    /// on, as illumo-flow keeps them. `None` for a native flow.
    pub(crate) fn bucket(
        &self,
        cx: &NodeCx<'_>,
        slots: &[(&str, Option<Value>)],
    ) -> Option<(CtxPath, Value)> {
        let path = self.bucket.clone()?;
        let mut bucket = match path.get(cx.ctx) {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let timestamp = self.timestamp();
        for (key, value) in slots {
            let Some(value) = value.clone().filter(|v| !v.is_null()) else {
                continue;
            };
            let entry = json!({"timestamp": timestamp, "value": value});
            let slot = match bucket.remove(*key) {
                None => entry,
                Some(Value::Array(mut items)) => {
                    items.push(entry);
                    Value::Array(items)
                }
                Some(first) => json!([first, entry]),
            };
            bucket.insert((*key).to_string(), slot);
        }
        Some((path, Value::Object(bucket)))
    }

    /// The metadata slot, when the agent has no `metadata_path`.
    pub(crate) fn unrouted_metadata(&self, answer: &Answer) -> Option<Value> {
        self.metadata.is_none().then(|| answer.metadata.clone())
    }

    pub(crate) fn reads(&self) -> Reads {
        self.reads.clone()
    }

    /// The history list at `history_path`, plus this exchange.
    pub(crate) fn history_with(
        &self,
        cx: &NodeCx<'_>,
        answer: &Answer,
    ) -> Option<(CtxPath, Value)> {
        let path = self.history.clone()?;
        let mut list = match path.get(cx.ctx) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        list.push(json!({"role": "user", "content": answer.prompt}));
        list.push(json!({"role": "assistant", "content": answer.text}));
        Some((path, Value::Array(list)))
    }

    fn render(&self, spec: &ValueSpec, cx: &NodeCx<'_>) -> Result<String, NodeError> {
        match spec
            .render(cx.ctx)
            .map_err(|e| NodeError::fatal(e.to_string()))?
        {
            Value::String(s) => Ok(s),
            other => Ok(other.to_string()),
        }
    }

    /// Asks once (and once more to repair a reply that should be JSON and is not).
    pub(crate) async fn ask(
        &self,
        cx: &NodeCx<'_>,
        instruction: Option<&str>,
        format: &ReplyFormat,
    ) -> Result<Answer, NodeError> {
        self.ask_with(cx, instruction, None, format).await
    }

    /// The same, with `suffix` added to the prompt (illumo-flow's RouterAgent asks in the
    /// prompt itself).
    pub(crate) async fn ask_with(
        &self,
        cx: &NodeCx<'_>,
        instruction: Option<&str>,
        suffix: Option<&str>,
        format: &ReplyFormat,
    ) -> Result<Answer, NodeError> {
        let mut prompt = self.render(&self.prompt, cx)?;
        if let Some(suffix) = suffix {
            prompt = match prompt.is_empty() {
                true => suffix.to_string(),
                false => format!("{prompt}\n\n{suffix}"),
            };
        }
        let mut system = match &self.system {
            Some(s) => self.render(s, cx)?,
            None => String::new(),
        };
        if let Some(extra) = instruction {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(extra);
        }
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(Message::new("system", system));
        }
        if let Some(Value::Array(items)) = self.history.as_ref().and_then(|h| h.get(cx.ctx)) {
            let skip = self
                .history_limit
                .map_or(0, |limit| items.len().saturating_sub(limit));
            for item in &items[skip..] {
                // `content` as chat APIs spell it, or `text` as `illumo chat` and `Audit` do.
                let content = item.get("content").or_else(|| item.get("text"));
                if let (Some(role), Some(content)) = (
                    item.get("role").and_then(Value::as_str),
                    content.and_then(Value::as_str),
                ) {
                    messages.push(Message::new(role, content));
                }
            }
        }
        if !(prompt.is_empty() && self.bucket.is_some()) {
            messages.push(Message::new("user", prompt.clone()));
        }
        let response_format = match format {
            ReplyFormat::Text => None,
            ReplyFormat::Json => Some(json!({"type": "json_object"})),
            // Strict mode only for illumo's own schemas, written to its rules; a user's schema
            // is checked here after the reply instead.
            ReplyFormat::Schema(schema) => Some(
                json!({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": false}}),
            ),
            ReplyFormat::Guided(schema) => Some(
                json!({"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": true}}),
            ),
        };
        let mut request = ChatRequest {
            model: self.model.clone(),
            messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            response_format,
            tools: self.tools.definitions(),
            tool_choice: self.tools.choice.clone(),
            sampling: self.sampling.clone(),
        };
        let (response, latency_ms) = loop {
            match self.call(cx, &request).await {
                Err(e) if request.response_format.is_some() && e.refuses_response_format() => {
                    let from = request.response_format.take().unwrap_or(Value::Null);
                    request.response_format = plainer(&from);
                    let mut event = Map::new();
                    event.insert("refused".into(), from["type"].clone());
                    event.insert(
                        "now".into(),
                        request
                            .response_format
                            .as_ref()
                            .map_or(json!("none"), |f| f["type"].clone()),
                    );
                    event.insert("error".into(), json!(e.to_string()));
                    cx.event("agent.format_fallback", event);
                }
                Err(ProviderError::Rejected {
                    status: 400 | 404 | 422 | 500,
                    message,
                    server_message,
                    ..
                }) if !request.tools.is_empty()
                    && server_message.to_lowercase().contains("tool") =>
                {
                    return Err(NodeError::fatal(format!(
                        "{message}; this server or model does not take `tools`: use one with tool calling (llama.cpp: a chat format with function calling), or drop `tools`"
                    )));
                }
                other => break other.map_err(ProviderError::into_node_error)?,
            }
        };
        let mut tokens = (response.input_tokens, response.output_tokens);
        // Tool calls: run them, send the results, ask again, until an answer.
        let mut response = response;
        let mut rounds = 0;
        let mut exchanges = Vec::new();
        while !response.tool_calls.is_empty() {
            rounds += 1;
            let last = response
                .tool_calls
                .last()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if rounds > self.tools.max_rounds {
                return Err(NodeError::fatal(format!(
                    "the model asked for tools more than max_tool_rounds ({}) times; the last was `{last}`",
                    self.tools.max_rounds
                )));
            }
            let calls = std::mem::take(&mut response.tool_calls);
            let results = self.tools.run_all(cx, &calls).await;
            request
                .messages
                .push(Message::calls(&response.text, calls.clone()));
            for (call, result) in calls.iter().zip(&results) {
                request
                    .messages
                    .push(Message::tool(&call.id, tools::result_text(result)));
                exchanges.push(
                    json!({"name": call.name, "arguments": call.arguments, "result": result}),
                );
            }
            let (next, _) = self
                .call(cx, &request)
                .await
                .map_err(ProviderError::into_node_error)?;
            tokens = (
                add(tokens.0, next.input_tokens),
                add(tokens.1, next.output_tokens),
            );
            response = next;
        }
        let mut text = response.text.clone();
        let mut json_reply = None;
        if matches!(format, ReplyFormat::Json | ReplyFormat::Schema(_)) {
            match parse_json_reply(&text, format) {
                Ok(v) => json_reply = Some(v),
                Err(why) => {
                    // One repair round-trip: show the model its reply and what was wrong.
                    request
                        .messages
                        .push(Message::new("assistant", text.clone()));
                    request.messages.push(Message::new(
                        "user",
                        format!("That reply is not valid: {why}. Answer again with only the JSON, nothing else."),
                    ));
                    let (again, _) = self
                        .call(cx, &request)
                        .await
                        .map_err(ProviderError::into_node_error)?;
                    tokens = (
                        add(tokens.0, again.input_tokens),
                        add(tokens.1, again.output_tokens),
                    );
                    text = again.text.clone();
                    json_reply = Some(parse_json_reply(&text, format).map_err(|why| {
                        NodeError::retryable(format!(
                            "the reply is not valid JSON even after a repair request ({why}): {}",
                            clip(&text)
                        ))
                    })?);
                }
            }
        }
        let mut metadata = json!({
            "provider": self.provider.system(), "model": if response.model.is_empty() { &self.model } else { &response.model },
            "input_tokens": tokens.0, "output_tokens": tokens.1, "latency_ms": latency_ms,
            "finish_reason": response.finish_reason,
        });
        if !exchanges.is_empty() {
            metadata["tool_calls"] = Value::Array(exchanges);
        }
        cx.set_attribute(
            "gen_ai",
            json!({
                "system": self.provider.system(),
                "request": {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens},
                "response": {"model": metadata["model"], "finish_reasons": response.finish_reason.iter().collect::<Vec<_>>()},
                "usage": {"input_tokens": tokens.0, "output_tokens": tokens.1},
            }),
        );
        Ok(Answer {
            text,
            json: json_reply,
            metadata,
            prompt,
        })
    }

    async fn call(
        &self,
        cx: &NodeCx<'_>,
        request: &ChatRequest,
    ) -> Result<(crate::llm::ChatResponse, u64), ProviderError> {
        let mut event = Map::new();
        event.insert("model".into(), json!(self.model));
        event.insert("provider".into(), json!(self.provider.system()));
        let max = cx.max_text();
        event.insert(
            "prompt".into(),
            json!(cx.preview(
                &json!(request.messages.last().map(|m| m.content.as_str())),
                max
            )),
        );
        // The whole conversation sent (system, history, user), each cut to `max_text`.
        event.insert(
            "messages".into(),
            Value::Array(
                request
                    .messages
                    .iter()
                    .map(|m| json!({"role": m.role, "content": cx.preview(&json!(m.content), max)}))
                    .collect(),
            ),
        );
        cx.event("agent.request", event);
        // `stream: true` asks the server for a stream; the text is shown as it arrives
        // only where someone watches (a live console).
        let show = cx.streaming();
        let stream = self.stream.unwrap_or(show);
        let on_delta = |text: &str| {
            if show {
                cx.stream(text)
            }
        };
        let deltas: crate::llm::Deltas<'_> = if stream { Some(&on_delta) } else { None };
        let started = Instant::now();
        // A policy that does not retry still gets two more tries for what passes
        // (a dropped connection, 429, 5xx): the safe default for real servers.
        let extra_tries = if cx.max_attempts <= 1 {
            INTERNAL_RETRIES
        } else {
            0
        };
        let mut tried = 0;
        let response = loop {
            match self.provider.complete(cx.id, request, deltas).await {
                Err(e)
                    if tried < extra_tries && e.is_transient() && !e.refuses_response_format() =>
                {
                    tried += 1;
                    let wait = e.wait_hint().unwrap_or(RETRY_BASE * 2u32.pow(tried - 1));
                    let mut event = Map::new();
                    event.insert("try".into(), json!(tried + 1));
                    event.insert("wait_ms".into(), json!(wait.as_millis() as u64));
                    event.insert("error".into(), json!(e.to_string()));
                    cx.event("agent.retry", event);
                    tokio::time::sleep(wait).await;
                }
                other => break other?,
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let mut event = Map::new();
        event.insert(
            "reply".into(),
            json!(cx.preview(&json!(response.text), cx.max_text())),
        );
        event.insert("input_tokens".into(), json!(response.input_tokens));
        event.insert("output_tokens".into(), json!(response.output_tokens));
        event.insert("finish_reason".into(), json!(response.finish_reason));
        event.insert("latency_ms".into(), json!(latency_ms));
        cx.event("agent.response", event);
        Ok((response, latency_ms))
    }
}

/// Tries an agent makes on its own, after the first, when its policy does not retry.
const INTERNAL_RETRIES: u32 = 2;
/// The wait before the first of them; doubled for the next.
const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(500);

/// A setting that may name environment variables (`{{ $env.MODEL }}`), rendered once at
/// load; ctx is not there yet, so only `$env` may be used.
fn env_template(cx: &mut BuildCx, key: &str, text: &str) -> Option<String> {
    if !text.contains("{{") {
        return Some(text.to_string());
    }
    let template = match illumo_engine::template::Template::compile(text) {
        Ok(t) => t,
        Err(e) => {
            cx.error(
                cx.at(&[key]),
                text,
                format!("invalid template in `{key}`: {}", e.reason),
            );
            return None;
        }
    };
    if template.reads.all || !template.reads.paths.is_empty() {
        cx.error(cx.at(&[key]), text, format!("`{key}` may name environment variables (`{{{{ $env.NAME }}}}`) but not ctx: it is set when the flow loads"));
        return None;
    }
    match template.render(&Value::Null) {
        Ok(rendered) => Some(rendered),
        Err(e) => {
            cx.error(cx.at(&[key]), text, e.to_string());
            None
        }
    }
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

pub(crate) fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// A reply's JSON: the whole reply, or the inside of a ```json fence, or the outermost
/// `{...}`; checked against the schema when there is one.
pub(crate) fn parse_json_reply(text: &str, format: &ReplyFormat) -> Result<Value, String> {
    let candidates = [
        Some(text.trim().to_string()),
        fenced(text),
        outer_object(text),
    ];
    let mut error = String::from("no JSON found");
    for candidate in candidates.into_iter().flatten() {
        match serde_json::from_str::<Value>(&candidate) {
            Ok(value) => {
                match format {
                    ReplyFormat::Schema(schema) => schema::validate(schema, &value, "$")?,
                    _ if !value.is_object() => {
                        return Err(format!("the reply is JSON but not an object: {value}"))
                    }
                    _ => {}
                }
                return Ok(value);
            }
            Err(e) => error = format!("not JSON ({e})"),
        }
    }
    Err(error)
}

/// The body of the first ``` fence.
pub(crate) fn fenced(text: &str) -> Option<String> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    Some(body[..end].to_string())
}

fn outer_object(text: &str) -> Option<String> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| text[start..=end].to_string())
}

/// The factories, sharing one [`Llm`].
pub fn register(registry: &mut illumo_engine::NodeRegistry, llm: Arc<Llm>) {
    registry.register(AgentFactory(llm.clone()));
    registry.register(RouterAgentFactory(llm.clone()));
    registry.register(ReviewAgentFactory(llm.clone()));
    registry.register(EvaluationAgentFactory(llm.clone()));
    registry.register(ScoreAgentFactory(llm.clone()));
    registry.register(DraftAgentFactory(llm));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_replies_are_found_in_fences_and_prose() {
        assert_eq!(
            parse_json_reply("{\"a\": 1}", &ReplyFormat::Json),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            parse_json_reply("Sure!\n```json\n{\"a\": 2}\n```\n", &ReplyFormat::Json),
            Ok(json!({"a": 2}))
        );
        assert_eq!(
            parse_json_reply("The answer is {\"a\": 3}.", &ReplyFormat::Json),
            Ok(json!({"a": 3}))
        );
        assert!(parse_json_reply("no json here", &ReplyFormat::Json)
            .unwrap_err()
            .starts_with("not JSON"));
        assert_eq!(
            parse_json_reply("\"I cannot answer that\"", &ReplyFormat::Json),
            Err("the reply is JSON but not an object: \"I cannot answer that\"".to_string())
        );
    }
}
