//! Scripted replies from a YAML or JSON file, for offline runs and tests:
//!
//! ```yaml
//! replies:                 # by node id, one per call, in order
//!   draft:
//!     - "first reply"
//!     - {reply: "second reply", usage: {input_tokens: 120, output_tokens: 40}}
//! match:                   # otherwise: the first pattern found in the prompt
//!   - {pattern: "(?i)summari[sz]e", reply: "A short summary."}
//! ```

use super::{estimate_tokens, ChatRequest, ChatResponse, Deltas, Provider};
use illumo_engine::node::NodeError;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Reply {
    Text(String),
    Full { reply: String, usage: Option<Usage> },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    pattern: String,
    reply: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    replies: HashMap<String, Vec<Reply>>,
    #[serde(default, rename = "match")]
    rules: Vec<Rule>,
}

pub struct Scripted {
    file: String,
    replies: HashMap<String, Vec<Reply>>,
    rules: Vec<(regex_lite::Regex, String)>,
    /// Calls so far, per node; a retry is a call too, so it gets the next reply.
    calls: Mutex<HashMap<String, usize>>,
}

impl Scripted {
    pub fn load(path: &Path) -> Result<Scripted, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scripted replies `{}`: {e}", path.display()))?;
        let file: File = serde_yaml::from_str(&text)
            .map_err(|e| format!("scripted replies `{}` are not valid: {e}", path.display()))?;
        let mut rules = Vec::new();
        for rule in file.rules {
            let regex = regex_lite::Regex::new(&rule.pattern).map_err(|e| {
                format!(
                    "scripted replies `{}`: bad pattern `{}`: {e}",
                    path.display(),
                    rule.pattern
                )
            })?;
            rules.push((regex, rule.reply));
        }
        Ok(Scripted {
            file: path.display().to_string(),
            replies: file.replies,
            rules,
            calls: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn system(&self) -> &str {
        "scripted"
    }

    async fn complete(
        &self,
        node: &str,
        request: &ChatRequest,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, NodeError> {
        let call = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let n = calls.entry(node.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let prompt: String = request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let (text, usage) = match self.replies.get(node).and_then(|list| list.get(call - 1)) {
            Some(Reply::Text(text)) => (text.clone(), None),
            Some(Reply::Full { reply, usage }) => (reply.clone(), *usage),
            None => match self.rules.iter().find(|(regex, _)| regex.is_match(&prompt)) {
                Some((_, reply)) => (reply.clone(), None),
                None => {
                    return Err(NodeError::fatal(format!(
                        "scripted replies `{}` have nothing for node `{node}` (call {call}), and no `match` pattern fits its prompt: `{}`",
                        self.file,
                        request.prompt_head()
                    )))
                }
            },
        };
        if let Some(on_delta) = deltas {
            for word in text.split_inclusive(' ') {
                on_delta(word);
            }
        }
        Ok(ChatResponse {
            input_tokens: Some(
                usage
                    .and_then(|u| u.input_tokens)
                    .unwrap_or_else(|| estimate_tokens(&prompt)),
            ),
            output_tokens: Some(
                usage
                    .and_then(|u| u.output_tokens)
                    .unwrap_or_else(|| estimate_tokens(&text)),
            ),
            text,
            model: request.model.clone(),
            finish_reason: Some("stop".into()),
        })
    }
}
