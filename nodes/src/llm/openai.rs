//! The OpenAI chat completions API, as OpenAI, Ollama, LM Studio, vLLM and llama.cpp's
//! server speak it, over reqwest with rustls (ring).

use super::sse::SseParser;
use super::ProviderError;
use super::{normalize_base_url, retry_after, ChatRequest, ChatResponse, Deltas, Provider};
use serde_json::{json, Value};
use std::sync::{Once, OnceLock};
use std::time::Duration;

pub struct OpenAi {
    system: String,
    base_url: String,
    api_key_env: String,
    client: OnceLock<Result<reqwest::Client, String>>,
}

/// rustls needs one crypto provider per process; ring builds fast on small machines.
pub(crate) fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl OpenAi {
    pub fn new(system: &str, base_url: &str, api_key_env: &str) -> OpenAi {
        OpenAi {
            system: system.to_string(),
            base_url: normalize_base_url(base_url),
            api_key_env: api_key_env.to_string(),
            client: OnceLock::new(),
        }
    }

    /// Built on first use, so flows that never call an LLM pay nothing at start-up.
    fn client(&self) -> Result<&reqwest::Client, ProviderError> {
        self.client
            .get_or_init(|| {
                install_crypto();
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    // A server that stops sending for this long is taken as gone (a
                    // stream that keeps sending may run longer; the node's timeout bounds it).
                    .read_timeout(Duration::from_secs(120))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ProviderError::NoAnswer {
                message: format!("cannot create the HTTP client: {e}"),
            })
    }

    fn body(request: &ChatRequest, stream: bool) -> Value {
        let mut body = json!({
            "model": request.model,
            "messages": request.messages.iter().map(super::Message::to_json).collect::<Vec<_>>(),
        });
        for (k, v) in &request.sampling {
            body[k] = v.clone();
        }
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(request.tools.clone());
            if let Some(choice) = &request.tool_choice {
                body["tool_choice"] = choice.clone();
            }
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = request.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if let Some(f) = &request.response_format {
            body["response_format"] = f.clone();
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    fn who(&self, request: &ChatRequest) -> String {
        format!("{} ({}) at {}", self.system, request.model, self.base_url)
    }
}

/// The server's own words for an error body: `{"error": {"message": ...}}` or the text.
fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let text = message.unwrap_or_else(|| body.trim().to_string());
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

#[async_trait::async_trait]
impl Provider for OpenAi {
    fn system(&self) -> &str {
        &self.system
    }

    async fn complete(
        &self,
        _node: &str,
        request: &ChatRequest,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let client = self.client()?;
        let url = format!("{}/chat/completions", self.base_url);
        let mut call = client.post(&url).header("content-type", "application/json");
        match std::env::var(&self.api_key_env) {
            Ok(key) if !key.is_empty() => call = call.bearer_auth(key),
            // OpenAI's own API refuses every request without a key: say so before sending.
            _ if self.base_url == super::OPENAI_URL => {
                return Err(ProviderError::Rejected {
                    status: 401,
                    message: format!(
                    "{} needs an API key: set {} (or `api_key_env` to the variable that holds it)",
                    self.who(request),
                    self.api_key_env
                ),
                    server_message: String::new(),
                    retry_after: None,
                })
            }
            _ => {}
        }
        let body = Self::body(request, deltas.is_some());
        let response =
            call.body(body.to_string())
                .send()
                .await
                .map_err(|e| ProviderError::Unreachable {
                    message: format!("cannot reach {}: {}", self.who(request), error_chain(&e)),
                })?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
            );
            let text = response.text().await.unwrap_or_default();
            let server_message = server_message(&text);
            return Err(ProviderError::Rejected {
                status: status.as_u16(),
                message: format!(
                    "{} answered {}: {server_message}",
                    self.who(request),
                    status.as_u16()
                ),
                server_message,
                retry_after,
            });
        }
        match deltas {
            Some(on_delta) => self.read_stream(request, response, on_delta).await,
            None => {
                let text = response
                    .text()
                    .await
                    .map_err(|e| ProviderError::Unreachable {
                        message: format!(
                            "{} broke off its answer: {}",
                            self.who(request),
                            error_chain(&e)
                        ),
                    })?;
                parse_completion(&text).map_err(|why| ProviderError::Malformed {
                    message: format!(
                        "malformed answer from {}: {why}: {}",
                        self.who(request),
                        clip(&text)
                    ),
                })
            }
        }
    }
}

impl OpenAi {
    /// Reads server-sent events until `data: [DONE]` (or the end of the stream).
    async fn read_stream(
        &self,
        request: &ChatRequest,
        mut response: reqwest::Response,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ChatResponse, ProviderError> {
        let mut parser = SseParser::default();
        let mut reply = ChatResponse {
            model: request.model.clone(),
            ..ChatResponse::default()
        };
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| ProviderError::Unreachable {
                    message: format!(
                        "{} broke off its stream: {}",
                        self.who(request),
                        error_chain(&e)
                    ),
                })?;
            let (events, ended) = match chunk {
                Some(chunk) => (parser.feed(&chunk), false),
                None => (parser.finish().into_iter().collect(), true),
            };
            for data in &events {
                if data.trim() == "[DONE]" {
                    return Ok(reply);
                }
                self.take_event(request, data, &mut reply, on_delta)?;
            }
            if ended {
                return Ok(reply);
            }
        }
    }

    /// One streamed event: a piece of the reply, the finish reason, the usage.
    fn take_event(
        &self,
        request: &ChatRequest,
        data: &str,
        reply: &mut ChatResponse,
        on_delta: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), ProviderError> {
        let event: Value = serde_json::from_str(data).map_err(|e| ProviderError::Malformed {
            message: format!(
                "malformed stream from {}: {e}: {}",
                self.who(request),
                clip(data)
            ),
        })?;
        if let Some(text) = event
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            on_delta(text);
            reply.text.push_str(text);
        }
        if let Some(reason) = event
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            reply.finish_reason = Some(reason.to_string());
        }
        if let Some(model) = event.get("model").and_then(Value::as_str) {
            reply.model = model.to_string();
        }
        if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
            reply.input_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
            reply.output_tokens = usage.get("completion_tokens").and_then(Value::as_u64);
        }
        // Tool calls arrive in pieces: by index, an id and a name first, then the
        // arguments' text in chunks.
        if let Some(calls) = event
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
        {
            for piece in calls {
                let index = piece.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                while reply.tool_calls.len() <= index {
                    reply.tool_calls.push(super::ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: Value::String(String::new()),
                    });
                }
                let call = &mut reply.tool_calls[index];
                if let Some(id) = piece.get("id").and_then(Value::as_str) {
                    call.id = id.to_string();
                }
                if let Some(name) = piece.pointer("/function/name").and_then(Value::as_str) {
                    call.name.push_str(name);
                }
                if let Some(args) = piece.pointer("/function/arguments").and_then(Value::as_str) {
                    if let Value::String(text) = &mut call.arguments {
                        text.push_str(args);
                    }
                }
            }
        }
        if reply.finish_reason.is_some() {
            // The arguments are whole now: read them as JSON where they are.
            for call in &mut reply.tool_calls {
                if let Value::String(text) = &call.arguments {
                    if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                        call.arguments = parsed;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a non-streamed chat completion.
pub fn parse_completion(text: &str) -> Result<ChatResponse, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let tool_calls: Vec<super::ToolCall> = value
        .pointer("/choices/0/message/tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().filter_map(super::ToolCall::from_api).collect())
        .unwrap_or_default();
    // A reply that calls tools may have no content.
    let content = match value.pointer("/choices/0/message/content") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None if !tool_calls.is_empty() => "",
        _ => return Err("no `choices[0].message.content`".into()),
    };
    Ok(ChatResponse {
        tool_calls,
        text: content.to_string(),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        input_tokens: value
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64),
        output_tokens: value
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64),
        finish_reason: value
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn clip(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

/// An error with its causes: reqwest's own text alone says little ("error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_parse_with_usage() {
        let r = parse_completion(
            r#"{"model":"m1","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!(
            (
                r.text.as_str(),
                r.input_tokens,
                r.output_tokens,
                r.finish_reason.as_deref()
            ),
            ("hi", Some(3), Some(1), Some("stop"))
        );
        assert_eq!(
            parse_completion("{\"choices\": []}").unwrap_err(),
            "no `choices[0].message.content`"
        );
    }

    #[test]
    fn server_messages_are_taken_from_error_bodies() {
        assert_eq!(
            server_message(r#"{"error": {"message": "model not found"}}"#),
            "model not found"
        );
        assert_eq!(server_message("plain text"), "plain text");
    }
}
