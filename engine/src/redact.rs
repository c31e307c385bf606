//! Secrets never leave the process in clear. [`Redactor`] is the one type that replaces
//! them: the engine applies it to everything it hands to tracers (spans, events, streamed
//! text, through [`RedactingTracer`]) and before cutting any text to a preview; the CLI
//! applies it to what it prints.
//!
//! ```
//! use illumo_engine::redact::Redactor;
//! let r = Redactor::new(["sk-123456".to_string()]);
//! assert_eq!(r.text("key=sk-123456!"), "key=***!");
//! let mut stream = r.stream();
//! assert_eq!(stream.push("key=sk-12"), "key=");
//! assert_eq!(stream.push("3456 ok"), "*** ok");
//! ```

use crate::tracer::{EventData, SpanData, SpanId, Tracer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a secret is replaced by.
pub const MASK: &str = "***";

/// Names of environment variables whose values are secrets.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_uppercase();
    n.ends_with("_KEY")
        || n.ends_with("_TOKEN")
        || n.ends_with("_SECRET")
        || n.contains("PASSWORD")
        || n.contains("API_KEY")
}

/// A secret as it is, and as it appears inside text that escapes it: a JSON string
/// (`"` and `\` escaped, as in a serialized preview) and Rust's debug form (as in an error
/// that quotes a value), once and twice (a preview of a preview).
fn spellings(secret: String) -> Vec<String> {
    let json = |s: &str| {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
    };
    let debug = |s: &str| s.escape_debug().to_string();
    let once = json(&secret);
    let mut all = vec![json(&once), debug(&secret), once, secret];
    all.dedup();
    all.sort();
    all.dedup();
    all
}

/// Replaces known secret values by [`MASK`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// Redacts these values (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .flat_map(spellings)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The values of secret-looking environment variables (`*_KEY`, `*_TOKEN`,
    /// `*_SECRET`, `*PASSWORD*`; four characters or more), and `extra`.
    pub fn from_env(extra: impl IntoIterator<Item = String>) -> Redactor {
        let env = std::env::vars()
            .filter(|(name, value)| value.len() >= 4 && is_secret_name(name))
            .map(|(_, value)| value);
        Redactor::new(env.chain(extra))
    }

    /// Also redacts `secret` from now on.
    pub fn add(&mut self, secret: String) {
        if secret.is_empty() {
            return;
        }
        for spelling in spellings(secret) {
            if !self.secrets.contains(&spelling) {
                self.secrets.push(spelling);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn contains(&self, secret: &str) -> bool {
        self.secrets.iter().any(|s| s == secret)
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// Redacts every string inside a value, map keys included.
    pub fn value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Cow::Owned(clean) = self.text(text) {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => self.map(map),
            _ => {}
        }
    }

    pub fn map(&self, map: &mut Map<String, Value>) {
        if self.is_empty() {
            return;
        }
        let dirty_key = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
        if dirty_key {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                self.value(&mut v);
                map.insert(self.text(&k).into_owned(), v);
            }
        } else {
            map.values_mut().for_each(|v| self.value(v));
        }
    }

    /// A preview for a trace: the value as text, redacted, then cut to `max` characters.
    pub fn preview(&self, value: &Value, max: usize) -> String {
        let text = match value {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        };
        let text = self.text(&text);
        if text.chars().count() > max {
            let cut: String = text.chars().take(max).collect();
            format!("{cut}…")
        } else {
            text.into_owned()
        }
    }

    /// A redactor for text that arrives in pieces: a secret split across two pieces is
    /// still replaced, because the end of a piece that could start a secret is held back.
    pub fn stream(&self) -> StreamRedactor<'_> {
        StreamRedactor {
            redactor: self,
            pending: String::new(),
        }
    }

    /// How many bytes at the end of `text` could be the start of a secret.
    fn held_back(&self, text: &str) -> usize {
        let mut longest = 0;
        for secret in &self.secrets {
            for (i, _) in secret.char_indices().skip(1) {
                if i > longest && text.ends_with(&secret[..i]) {
                    longest = i;
                }
            }
        }
        longest
    }
}

/// See [`Redactor::stream`].
pub struct StreamRedactor<'r> {
    redactor: &'r Redactor,
    pending: String,
}

impl StreamRedactor<'_> {
    /// The part of the text so far that can be shown.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let clean = self.redactor.text(&self.pending).into_owned();
        let keep = self.redactor.held_back(&clean);
        let shown = clean[..clean.len() - keep].to_string();
        self.pending = clean[clean.len() - keep..].to_string();
        shown
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// The tracer boundary: every span, event and streamed piece of text is redacted before it
/// reaches the tracers inside. With no secrets it passes everything through untouched.
pub struct RedactingTracer {
    inner: Arc<dyn Tracer>,
    redactor: Arc<Redactor>,
    /// Streamed text held back per span, until the rest of a possible secret arrives.
    pending: Mutex<HashMap<SpanId, String>>,
}

impl RedactingTracer {
    pub fn new(inner: Arc<dyn Tracer>, redactor: Arc<Redactor>) -> RedactingTracer {
        RedactingTracer {
            inner,
            redactor,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn clean_span(&self, span: &mut SpanData) {
        self.redactor.map(&mut span.attributes);
    }

    /// Sends what a span's stream held back, before the span ends.
    fn flush_stream(&self, span: &SpanData) {
        let rest = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&span.span_id);
        if let Some(rest) = rest.filter(|r| !r.is_empty()) {
            self.inner.stream(span, &rest);
        }
    }
}

impl Tracer for RedactingTracer {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    fn span_start(&self, span: &SpanData) {
        if self.redactor.is_empty() {
            return self.inner.span_start(span);
        }
        let mut clean = span.clone();
        self.clean_span(&mut clean);
        self.inner.span_start(&clean);
    }
    fn span_end(&self, span: &SpanData) {
        self.span_end_owned(span.clone());
    }
    fn span_end_owned(&self, mut span: SpanData) {
        if self.redactor.is_empty() {
            return self.inner.span_end_owned(span);
        }
        self.flush_stream(&span);
        self.clean_span(&mut span);
        self.inner.span_end_owned(span);
    }
    fn event(&self, span: &SpanData, event: &EventData) {
        if self.redactor.is_empty() {
            return self.inner.event(span, event);
        }
        let mut clean = event.clone();
        self.redactor.map(&mut clean.attributes);
        self.inner.event(span, &clean);
    }
    fn streams(&self) -> bool {
        self.inner.streams()
    }
    fn stream(&self, span: &SpanData, text: &str) {
        if self.redactor.is_empty() {
            return self.inner.stream(span, text);
        }
        let shown = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let held = pending.entry(span.span_id).or_default();
            let mut stream = StreamRedactor {
                redactor: &self.redactor,
                pending: std::mem::take(held),
            };
            let shown = stream.push(text);
            *held = stream.pending;
            shown
        };
        if !shown.is_empty() {
            self.inner.stream(span, &shown);
        }
    }
    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_secrets_everywhere_in_a_value() {
        let r = Redactor::new(["hunter22".to_string(), "hunter2".to_string()]);
        let mut v = json!({"a": "x hunter22 y", "hunter2": ["hunter2"], "n": 1});
        r.value(&mut v);
        assert_eq!(v, json!({"a": "x *** y", "***": ["***"], "n": 1}));
    }

    #[test]
    fn previews_are_redacted_before_they_are_cut() {
        let r = Redactor::new(["abcdefgh".to_string()]);
        assert_eq!(r.preview(&json!("0123abcdefgh"), 8), "0123***");
        assert_eq!(r.preview(&json!("0123456abcdefgh"), 8), "0123456*…");
    }

    #[test]
    fn a_secret_split_across_pieces_is_still_replaced() {
        let r = Redactor::new(["sk-live-123".to_string()]);
        let mut s = r.stream();
        let mut out = String::new();
        for piece in ["the key is s", "k-li", "ve-1", "23, and s", "k is not"] {
            out.push_str(&s.push(piece));
        }
        out.push_str(&s.finish());
        assert_eq!(out, "the key is ***, and sk is not");
    }
}
