//! Record/replay: `--llm record=FILE` appends every exchange to a JSON-lines cassette,
//! keyed by a hash of the request; `--llm replay=FILE` answers from it with no network.

use super::{ChatRequest, ChatResponse, Deltas, Provider, ProviderError};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One recorded answer.
#[derive(Clone)]
enum Recorded {
    Reply(ChatResponse),
    Error(ProviderError),
}

/// Answers from a recorded cassette.
pub struct Cassette {
    file: String,
    /// Recorded answers by request hash; the same request asked twice gets them in order.
    /// An answer may be an error the server gave (a refused response format), so a replay
    /// takes the same way through the run.
    replies: Mutex<HashMap<String, VecDeque<Recorded>>>,
}

impl Cassette {
    pub fn load(path: &Path) -> Result<Cassette, String> {
        let text = crate::files::read_text(path)
            .map_err(|e| format!("cannot read cassette `{}`: {e}", path.display()))?;
        let mut replies: HashMap<String, VecDeque<Recorded>> = HashMap::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry: Value = serde_json::from_str(line).map_err(|e| {
                format!(
                    "cassette `{}` line {}: not JSON: {e}",
                    path.display(),
                    n + 1
                )
            })?;
            let hash = entry.get("hash").and_then(Value::as_str);
            let response = entry
                .get("response")
                .and_then(ChatResponse::from_json)
                .map(Recorded::Reply);
            let error = entry
                .get("error")
                .and_then(ProviderError::from_json)
                .map(Recorded::Error);
            match (hash, response.or(error)) {
                (Some(hash), Some(answer)) => replies
                    .entry(hash.to_string())
                    .or_default()
                    .push_back(answer),
                _ => {
                    return Err(format!(
                    "cassette `{}` line {}: needs `hash`, and `response.text` or `error.message`",
                    path.display(),
                    n + 1
                ))
                }
            }
        }
        Ok(Cassette {
            file: path.display().to_string(),
            replies: Mutex::new(replies),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Cassette {
    fn system(&self) -> &str {
        "replay"
    }

    async fn complete(
        &self,
        node: &str,
        request: &ChatRequest,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let hash = request.hash();
        let mut replies = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = replies.get_mut(&hash) else {
            return Err(ProviderError::NoAnswer {
                message: format!(
                    "cassette `{}` has no reply for node `{node}` (request {hash}: `{}`); the prompt or settings changed since it was recorded",
                    self.file,
                    request.prompt_head()
                ),
            });
        };
        // The last recorded reply answers any further identical requests.
        let response = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        match response {
            Some(Recorded::Reply(response)) => {
                if let Some(on_delta) = deltas {
                    on_delta(&response.text);
                }
                Ok(response)
            }
            Some(Recorded::Error(error)) => Err(error),
            None => Ok(ChatResponse::default()),
        }
    }
}

/// Calls a live provider and appends every exchange to a cassette.
pub struct Recorder {
    inner: Arc<dyn Provider>,
    file: Mutex<std::fs::File>,
    path: String,
}

impl Recorder {
    pub fn new(inner: Arc<dyn Provider>, path: &Path) -> Result<Recorder, String> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open cassette `{}`: {e}", path.display()))?;
        Ok(Recorder {
            inner,
            file: Mutex::new(file),
            path: path.display().to_string(),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Recorder {
    fn system(&self) -> &str {
        self.inner.system()
    }

    async fn complete(
        &self,
        node: &str,
        request: &ChatRequest,
        deltas: Deltas<'_>,
    ) -> Result<ChatResponse, ProviderError> {
        let result = self.inner.complete(node, request, deltas).await;
        let answer = match &result {
            Ok(response) => json!({"response": response.to_json()}),
            Err(e) => json!({"error": e.to_json()}),
        };
        let mut line =
            json!({"hash": request.hash(), "node": node, "request": request.canonical()});
        if let (Value::Object(line), Value::Object(answer)) = (&mut line, answer) {
            line.extend(answer);
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(file, "{line}").map_err(|e| ProviderError::NoAnswer {
            message: format!("cannot write cassette `{}`: {e}", self.path),
        })?;
        result
    }
}
