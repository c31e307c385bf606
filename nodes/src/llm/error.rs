//! Why a provider gave no reply, as a type: the agent decides from the kind (and the
//! status) whether to step down to a plainer response format, and the engine's policy
//! whether to try again; nothing matches on our own message texts.

use illumo_engine::node::NodeError;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No answer: the server could not be reached, timed out, or broke off.
    #[error("{message}")]
    Unreachable { message: String },
    /// The server answered with an error status.
    #[error("{message}")]
    Rejected {
        status: u16,
        message: String,
        /// What the server said, as it said it.
        server_message: String,
        retry_after: Option<Duration>,
    },
    /// The answer does not follow the protocol.
    #[error("{message}")]
    Malformed { message: String },
    /// Nothing to answer with: a scripted file or a cassette without a reply for this
    /// request, or a local failure (writing the cassette).
    #[error("{message}")]
    NoAnswer { message: String },
}

impl ProviderError {
    /// Did the server refuse the request's `response_format`? Some OpenAI-compatible
    /// servers know `json_object` but not `json_schema`; they say so in their message,
    /// with a 400, 422 or (llama-cpp-python) 500.
    pub fn refuses_response_format(&self) -> bool {
        match self {
            ProviderError::Rejected {
                status: 400 | 422 | 500,
                server_message,
                ..
            } => {
                let text = server_message.to_lowercase();
                text.contains("json_schema") || text.contains("response_format")
            }
            _ => false,
        }
    }

    /// Might the same request pass a moment later (no connection, 429, 5xx)?
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Unreachable { .. }
                | ProviderError::Rejected {
                    status: 429 | 500..=599,
                    ..
                }
        )
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn wait_hint(&self) -> Option<Duration> {
        match self {
            ProviderError::Rejected { retry_after, .. } => {
                retry_after.map(|w| w.min(Duration::from_secs(60)))
            }
            _ => None,
        }
    }

    /// What the engine's policy sees: connection problems, 429 (with its wait) and 5xx
    /// may pass on another try; other rejections and malformed answers will not.
    pub fn into_node_error(self) -> NodeError {
        match self {
            ProviderError::Unreachable { message } => NodeError::retryable(message),
            ProviderError::Rejected {
                status: 429,
                message,
                retry_after: Some(wait),
                ..
            } => NodeError::retry_after(message, wait),
            ProviderError::Rejected {
                status: 429 | 500..=599,
                message,
                ..
            } => NodeError::retryable(message),
            ProviderError::Rejected { message, .. }
            | ProviderError::Malformed { message }
            | ProviderError::NoAnswer { message } => NodeError::fatal(message),
        }
    }

    /// As a cassette records it.
    pub fn to_json(&self) -> Value {
        match self {
            ProviderError::Unreachable { message } => {
                json!({"kind": "unreachable", "message": message})
            }
            ProviderError::Rejected {
                status,
                message,
                server_message,
                retry_after,
            } => json!({
                "kind": "rejected", "status": status, "message": message,
                "server_message": server_message,
                "retry_after_ms": retry_after.map(|d| d.as_millis() as u64),
            }),
            ProviderError::Malformed { message } => {
                json!({"kind": "malformed", "message": message})
            }
            ProviderError::NoAnswer { message } => json!({"kind": "no_answer", "message": message}),
        }
    }

    /// From a cassette; `None` for a line that is not an error.
    pub fn from_json(value: &Value) -> Option<ProviderError> {
        let message = value.get("message")?.as_str()?.to_string();
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Some(match value.get("kind").and_then(Value::as_str) {
            Some("rejected") => ProviderError::Rejected {
                status: value.get("status").and_then(Value::as_u64).unwrap_or(0) as u16,
                server_message: text("server_message"),
                retry_after: value
                    .get("retry_after_ms")
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis),
                message,
            },
            Some("malformed") => ProviderError::Malformed { message },
            Some("no_answer") => ProviderError::NoAnswer { message },
            _ => ProviderError::Unreachable { message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, server_message: &str) -> ProviderError {
        ProviderError::Rejected {
            status,
            message: format!("server answered {status}: {server_message}"),
            server_message: server_message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn only_a_rejection_that_names_the_format_is_a_format_refusal() {
        assert!(
            rejected(400, "response_format json_schema is not supported").refuses_response_format()
        );
        assert!(rejected(
            500,
            "Input should be 'text' or 'json_object'; input: json_schema"
        )
        .refuses_response_format());
        assert!(!rejected(401, "bad key for json_schema").refuses_response_format());
        assert!(!rejected(400, "model not found").refuses_response_format());
        let unreachable = ProviderError::Unreachable {
            message: "cannot reach http://x/json_schema".into(),
        };
        assert!(!unreachable.refuses_response_format());
    }

    #[test]
    fn kinds_decide_what_the_policy_may_retry() {
        assert!(rejected(503, "busy").into_node_error().is_retryable());
        assert!(!rejected(400, "bad").into_node_error().is_retryable());
        let wait = ProviderError::Rejected {
            status: 429,
            message: "slow down".into(),
            server_message: "slow down".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            wait.clone().into_node_error().wait_hint(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(ProviderError::from_json(&wait.to_json()), Some(wait));
    }
}
