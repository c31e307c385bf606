//! Scripted replies from a YAML or JSON file, for offline runs and tests:
//!
//! ```yaml
//! replies:                 # by node id, one per call, in order
//!   draft:
//!     - "first reply"
//!     - {reply: "second reply", usage: {input_tokens: 120, output_tokens: 40}}
//!     - {tool_calls: [{name: python, arguments: {code: "2 ** 10"}}]}   # asks for tools;
//!                          # the next reply comes after their results
//! match:                   # otherwise: the first pattern found in the prompt
//!   - {pattern: "(?i)summari[sz]e", reply: "A short summary."}
//! ```

use super::ProviderError;
use super::{estimate_tokens, ChatRequest, ChatResponse, Deltas, Provider};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone)]
struct Reply {
    text: String,
    usage: Option<(Option<u64>, Option<u64>)>,
    /// `(name, arguments)` of the tools this reply calls.
    tool_calls: Vec<(String, Value)>,
}

/// Reads the file by hand, so a mistake names its place: `replies.draft[1] ...`.
/// Replies by node id, and `(pattern, reply)` rules.
type Parsed = (HashMap<String, Vec<Reply>>, Vec<(String, String)>);

fn parse(value: &Value) -> Result<Parsed, String> {
    let Value::Object(top) = value else {
        return Err("the file must be a map with `replies` and/or `match`".into());
    };
    if let Some(key) = top.keys().find(|k| *k != "replies" && *k != "match") {
        return Err(format!(
            "unknown key `{key}`; the file has `replies` and `match`"
        ));
    }
    let mut replies = HashMap::new();
    if let Some(nodes) = top.get("replies") {
        let Value::Object(nodes) = nodes else {
            return Err("`replies` must map node ids to lists of replies".into());
        };
        for (node, list) in nodes {
            let Value::Array(items) = list else {
                return Err(format!("`replies.{node}` must be a list of replies"));
            };
            let mut parsed = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("replies.{node}[{i}]");
                parsed.push(match item {
                    Value::String(text) => Reply { text: text.clone(), usage: None, tool_calls: Vec::new() },
                    Value::Object(map) => {
                        if let Some(key) = map.keys().find(|k| !["reply", "usage", "tool_calls"].contains(&k.as_str())) {
                            return Err(format!("`{at}` has an unknown key `{key}`; a reply is a string or {{reply, usage, tool_calls}}"));
                        }
                        let mut tool_calls = Vec::new();
                        if let Some(calls) = map.get("tool_calls") {
                            let Value::Array(calls) = calls else {
                                return Err(format!("`{at}.tool_calls` must be a list of {{name, arguments}}"));
                            };
                            for (j, c) in calls.iter().enumerate() {
                                let name = c.get("name").and_then(Value::as_str).ok_or_else(|| format!("`{at}.tool_calls[{j}]` needs `name`"))?;
                                tool_calls.push((name.to_string(), c.get("arguments").cloned().unwrap_or_else(|| serde_json::json!({}))));
                            }
                        }
                        let text = match map.get("reply") {
                            Some(Value::String(t)) => t.as_str(),
                            None if !tool_calls.is_empty() => "",
                            _ => return Err(format!("`{at}` needs `reply: TEXT`")),
                        };
                        let usage = match map.get("usage") {
                            None => None,
                            Some(Value::Object(u)) => {
                                if let Some(key) = u.keys().find(|k| *k != "input_tokens" && *k != "output_tokens") {
                                    return Err(format!("`{at}.usage` has an unknown key `{key}`; it has input_tokens and output_tokens"));
                                }
                                Some((u.get("input_tokens").and_then(Value::as_u64), u.get("output_tokens").and_then(Value::as_u64)))
                            }
                            Some(_) => return Err(format!("`{at}.usage` must be {{input_tokens, output_tokens}}")),
                        };
                        Reply { text: text.to_string(), usage, tool_calls }
                    }
                    other => return Err(format!("`{at}` must be a string or {{reply, usage}}, not {other}")),
                });
            }
            replies.insert(node.clone(), parsed);
        }
    }
    let mut rules = Vec::new();
    if let Some(list) = top.get("match") {
        let Value::Array(items) = list else {
            return Err("`match` must be a list of {pattern, reply}".into());
        };
        for (i, item) in items.iter().enumerate() {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            match (
                field("pattern"),
                field("reply"),
                item.as_object().map_or(0, |m| m.len()),
            ) {
                (Some(p), Some(r), 2) => rules.push((p, r)),
                _ => {
                    return Err(format!(
                        "`match[{i}]` must be {{pattern: REGEX, reply: TEXT}}"
                    ))
                }
            }
        }
    }
    Ok((replies, rules))
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
        let text = crate::files::read_text(path)
            .map_err(|e| format!("cannot read scripted replies `{}`: {e}", path.display()))?;
        let value: Value = serde_yaml::from_str(&text).map_err(|e| {
            format!(
                "scripted replies `{}` are not valid YAML: {e}",
                path.display()
            )
        })?;
        let (replies, patterns) =
            parse(&value).map_err(|e| format!("scripted replies `{}`: {e}", path.display()))?;
        let mut rules = Vec::new();
        for (pattern, reply) in patterns {
            let regex = regex_lite::Regex::new(&pattern).map_err(|e| {
                format!(
                    "scripted replies `{}`: bad pattern `{pattern}`: {e}",
                    path.display()
                )
            })?;
            rules.push((regex, reply));
        }
        Ok(Scripted {
            file: path.display().to_string(),
            replies,
            rules,
            calls: Mutex::new(HashMap::new()),
        })
    }
}

impl Scripted {
    /// Starts each node's count after the calls a resumed run already made.
    pub fn after(self, calls: &HashMap<String, usize>) -> Scripted {
        *self.calls.lock().unwrap_or_else(|e| e.into_inner()) = calls.clone();
        self
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
    ) -> Result<ChatResponse, ProviderError> {
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
        let (text, usage, calls) = match self.replies.get(node).and_then(|list| list.get(call - 1)) {
            Some(reply) => (reply.text.clone(), reply.usage, reply.tool_calls.clone()),
            None => match self.rules.iter().find(|(regex, _)| regex.is_match(&prompt)) {
                Some((_, reply)) => (reply.clone(), None, Vec::new()),
                None => {
                    return Err(ProviderError::NoAnswer {
                        message: format!(
                            "scripted replies `{}` have nothing for node `{node}` (call {call}), and no `match` pattern fits its prompt: `{}`",
                            self.file,
                            request.prompt_head()
                        ),
                    })
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
                    .and_then(|u| u.0)
                    .unwrap_or_else(|| estimate_tokens(&prompt)),
            ),
            output_tokens: Some(
                usage
                    .and_then(|u| u.1)
                    .unwrap_or_else(|| estimate_tokens(&text)),
            ),
            text,
            model: request.model.clone(),
            finish_reason: Some(
                if calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                }
                .into(),
            ),
            tool_calls: calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, arguments))| super::ToolCall {
                    id: format!("call_{call}_{}", i + 1),
                    name,
                    arguments,
                })
                .collect(),
        })
    }
}
