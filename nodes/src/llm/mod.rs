//! LLM providers: OpenAI-compatible HTTP APIs (OpenAI, Ollama, LM Studio, vLLM,
//! llama.cpp's server), scripted replies from a file, and record/replay cassettes, so
//! every flow can run offline and deterministically.

mod cassette;
mod error;
mod openai;
pub(crate) use openai::install_crypto;
mod scripted;
mod sse;

pub use cassette::{Cassette, Recorder};
pub use error::ProviderError;
pub use openai::OpenAi;
pub use scripted::Scripted;

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant message that calls tools.
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message: which call it answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message {
            role: role.to_string(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The model's turn that asked for these tool calls.
    pub fn calls(content: &str, calls: Vec<ToolCall>) -> Message {
        Message {
            tool_calls: calls,
            ..Message::new("assistant", content)
        }
    }

    /// A tool's answer to call `id`.
    pub fn tool(id: &str, content: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(id.to_string()),
            ..Message::new("tool", content)
        }
    }

    /// As the OpenAI API writes it (and cassettes hash it).
    pub fn to_json(&self) -> Value {
        let mut m = json!({"role": self.role, "content": self.content});
        if !self.tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(self.tool_calls.iter().map(ToolCall::to_api).collect());
        }
        if let Some(id) = &self.tool_call_id {
            m["tool_call_id"] = json!(id);
        }
        m
    }
}

/// A call the model asks for: a tool by name, with JSON arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

impl ToolCall {
    /// The OpenAI API's form: `arguments` is a JSON text.
    pub fn to_api(&self) -> Value {
        json!({"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments.to_string()}})
    }

    /// From the API's form; arguments that are not JSON stay as their text.
    pub fn from_api(value: &Value) -> Option<ToolCall> {
        let text = value
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        Some(ToolCall {
            id: value
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: value.pointer("/function/name")?.as_str()?.to_string(),
            arguments: serde_json::from_str(text)
                .unwrap_or_else(|_| Value::String(text.to_string())),
        })
    }
}

/// One chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    /// OpenAI's `response_format` (`{"type": "json_object"}`, a JSON schema), if any.
    pub response_format: Option<Value>,
    /// Function definitions the model may call (`{"type": "function", "function": ...}`).
    pub tools: Vec<Value>,
    pub tool_choice: Option<Value>,
    /// `top_p`, `seed`, `stop`, when set.
    pub sampling: Map<String, Value>,
}

impl ChatRequest {
    /// The request as canonical JSON (fixed key order): what a cassette is keyed by.
    pub fn canonical(&self) -> Value {
        // Tool keys only when there are tools: older cassettes keep their hashes.
        let mut canonical = json!({
            "model": self.model,
            "messages": self.messages.iter().map(Message::to_json).collect::<Vec<_>>(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": self.response_format,
        });
        if !self.tools.is_empty() {
            canonical["tools"] = Value::Array(self.tools.clone());
            canonical["tool_choice"] = self.tool_choice.clone().unwrap_or(Value::Null);
        }
        for (k, v) in &self.sampling {
            canonical[k] = v.clone();
        }
        canonical
    }

    /// A stable 64-bit FNV-1a hash of [`ChatRequest::canonical`], as 16 hex digits.
    pub fn hash(&self) -> String {
        let text = self.canonical().to_string();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    /// The first line of the last user message, for error messages.
    pub fn prompt_head(&self) -> String {
        let last = self
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let line = last
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if line.chars().count() > 80 {
            format!("{}…", line.chars().take(80).collect::<String>())
        } else {
            line.to_string()
        }
    }
}

/// A completion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    pub text: String,
    pub model: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub finish_reason: Option<String>,
    /// Tools the model asks to call before it answers.
    pub tool_calls: Vec<ToolCall>,
}

impl ChatResponse {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "text": self.text, "model": self.model, "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens, "finish_reason": self.finish_reason,
        });
        if !self.tool_calls.is_empty() {
            v["tool_calls"] = Value::Array(self.tool_calls.iter().map(ToolCall::to_api).collect());
        }
        v
    }

    pub fn from_json(value: &Value) -> Option<ChatResponse> {
        Some(ChatResponse {
            text: value.get("text")?.as_str()?.to_string(),
            model: value
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            input_tokens: value.get("input_tokens").and_then(Value::as_u64),
            output_tokens: value.get("output_tokens").and_then(Value::as_u64),
            finish_reason: value
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            tool_calls: value
                .get("tool_calls")
                .and_then(Value::as_array)
                .map(|calls| calls.iter().filter_map(ToolCall::from_api).collect())
                .unwrap_or_default(),
        })
    }
}

/// Receives pieces of a streamed reply as they arrive.
pub type Deltas<'a> = Option<&'a (dyn Fn(&str) + Send + Sync)>;

/// Something that answers chat requests.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `gen_ai.system`: `openai`, `ollama`, `scripted`, ...
    fn system(&self) -> &str;
    async fn complete(
        &self,
        node: &str,
        request: &ChatRequest,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, ProviderError>;
}

/// How the whole run talks to LLMs, from `--llm`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LlmMode {
    /// Each agent uses its own `provider`.
    #[default]
    Live,
    /// Every agent answers from this scripted replies file.
    Scripted(PathBuf),
    /// Live, and every exchange is appended to this cassette.
    Record(PathBuf),
    /// Every agent answers from this cassette; no network.
    Replay(PathBuf),
}

impl LlmMode {
    /// Parses `--llm scripted=FILE|record=FILE|replay=FILE|live`.
    pub fn parse(text: &str) -> Result<LlmMode, String> {
        match text.split_once('=') {
            Some(("scripted", f)) if !f.is_empty() => Ok(LlmMode::Scripted(f.into())),
            Some(("record", f)) if !f.is_empty() => Ok(LlmMode::Record(f.into())),
            Some(("replay", f)) if !f.is_empty() => Ok(LlmMode::Replay(f.into())),
            _ => Err(format!(
                "--llm `{text}`: expected `scripted=FILE`, `record=FILE` or `replay=FILE` (without --llm, agents call their providers)"
            )),
        }
    }
}

/// What agent nodes share: the `--llm` mode, and providers by their settings, built once.
#[derive(Default)]
pub struct Llm {
    pub mode: LlmMode,
    providers: Mutex<HashMap<String, Arc<dyn Provider>>>,
    /// Scripted replies already used, per node, by a run this one resumes.
    scripted_calls: HashMap<String, usize>,
}

/// The provider settings of one agent node.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    pub provider: String,
    pub base_url: Option<String>,
    pub api_key_env: String,
    /// For `scripted`: the replies file (relative to the flow file's folder).
    pub responses: Option<PathBuf>,
}

/// Default endpoints of the named OpenAI-compatible servers.
pub fn default_base_url(provider: &str) -> Option<String> {
    match provider {
        // The OpenAI SDKs' own variable, for a proxy or a compatible service.
        "openai" => Some(
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| OPENAI_URL.to_string()),
        ),
        "ollama" => Some("http://localhost:11434/v1".into()),
        "lmstudio" => Some("http://localhost:1234/v1".into()),
        "vllm" => Some("http://localhost:8000/v1".into()),
        "llamacpp" => Some("http://localhost:8080/v1".into()),
        _ => None,
    }
}

/// OpenAI's own API: a request there without a key can only fail.
pub const OPENAI_URL: &str = "https://api.openai.com/v1";

pub const PROVIDERS: [&str; 6] = [
    "openai", "ollama", "lmstudio", "vllm", "llamacpp", "scripted",
];

impl Llm {
    pub fn new(mode: LlmMode) -> Llm {
        Llm {
            mode,
            providers: Mutex::new(HashMap::new()),
            scripted_calls: HashMap::new(),
        }
    }

    /// A resumed run goes on with each node's next scripted reply: `calls` are the calls
    /// its finished steps made.
    pub fn resuming(mut self, calls: HashMap<String, usize>) -> Llm {
        self.scripted_calls = calls;
        self
    }

    /// The provider for these settings (shared between nodes with the same settings).
    /// Files are read here, at load, so a missing one is a load error.
    pub fn provider(&self, settings: &ProviderSettings) -> Result<Arc<dyn Provider>, String> {
        let key = match &self.mode {
            LlmMode::Live => format!("{settings:?}"),
            other => format!("{other:?}|{settings:?}"),
        };
        if let Some(p) = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let provider: Arc<dyn Provider> = match &self.mode {
            LlmMode::Scripted(file) => {
                self.shared_file(&format!("scripted|{}", file.display()), || {
                    Ok(Arc::new(Scripted::load(file)?.after(&self.scripted_calls))
                        as Arc<dyn Provider>)
                })?
            }
            LlmMode::Replay(file) => self
                .shared_file(&format!("replay|{}", file.display()), || {
                    Ok(Arc::new(Cassette::load(file)?) as Arc<dyn Provider>)
                })?,
            LlmMode::Record(file) => {
                Arc::new(Recorder::new(live(settings, &self.scripted_calls)?, file)?)
            }
            LlmMode::Live => live(settings, &self.scripted_calls)?,
        };
        self.providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, provider.clone());
        Ok(provider)
    }

    fn shared_file(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<Arc<dyn Provider>, String>,
    ) -> Result<Arc<dyn Provider>, String> {
        let mut providers = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = providers.get(key) {
            return Ok(p.clone());
        }
        let p = load()?;
        providers.insert(key.to_string(), p.clone());
        Ok(p)
    }
}

fn live(
    settings: &ProviderSettings,
    scripted_calls: &HashMap<String, usize>,
) -> Result<Arc<dyn Provider>, String> {
    if settings.provider == "scripted" {
        let file = settings.responses.as_ref().ok_or(
            "provider `scripted` needs `responses: FILE` (or run with --llm scripted=FILE)",
        )?;
        return Ok(Arc::new(Scripted::load(file)?.after(scripted_calls)));
    }
    let base = match (&settings.base_url, default_base_url(&settings.provider)) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url,
        (None, None) => {
            return Err(format!(
                "provider `{}` needs a `base_url`",
                settings.provider
            ))
        }
    };
    Ok(Arc::new(OpenAi::new(
        &settings.provider,
        &base,
        &settings.api_key_env,
    )))
}

/// `http://host:1234` and `http://host:1234/v1/` both become `http://host:1234/v1`.
pub fn normalize_base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.ends_with("/v1") {
        url.to_string()
    } else {
        format!("{url}/v1")
    }
}

/// Estimated tokens for text without a tokenizer (about four characters a token).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A retry wait from an HTTP `Retry-After` header (seconds).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A file named in a flow, relative to the flow file's folder.
pub fn resolve(base_dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080/v1/"),
            "http://127.0.0.1:8080/v1"
        );
    }

    #[test]
    fn request_hashes_are_stable_and_sensitive() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", "hi")],
            temperature: Some(0.0),
            max_tokens: None,
            response_format: None,
            tools: Vec::new(),
            tool_choice: None,
            sampling: Map::new(),
        };
        assert_eq!(request.hash(), request.clone().hash());
        // Hashes of requests without tools are what they were before tools existed, so
        // cassettes recorded then still replay.
        assert_eq!(request.hash(), "113190325d399c64");
        let mut with_tools = request.clone();
        with_tools.tools = vec![serde_json::json!({"type": "function"})];
        assert_ne!(request.hash(), with_tools.hash());
        let mut other = request.clone();
        other.messages[0].content = "hi!".into();
        assert_ne!(request.hash(), other.hash());
        assert_eq!(request.hash().len(), 16);
    }

    #[test]
    fn llm_modes_parse() {
        assert_eq!(
            LlmMode::parse("scripted=a.yaml"),
            Ok(LlmMode::Scripted("a.yaml".into()))
        );
        assert_eq!(
            LlmMode::parse("replay=c.jsonl"),
            Ok(LlmMode::Replay("c.jsonl".into()))
        );
        assert!(
            LlmMode::parse("live").is_err(),
            "`live` is the default, not a mode to name"
        );
        assert_eq!(
            LlmMode::parse("record="),
            Err(
                "--llm `record=`: expected `scripted=FILE`, `record=FILE` or `replay=FILE` (without --llm, agents call their providers)"
                    .to_string()
            )
        );
    }
}
