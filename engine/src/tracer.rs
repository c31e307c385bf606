//! Tracer hooks. The engine reports the flow run (root span), every node attempt (a child
//! span) and events inside them to a [`Tracer`]; backends that store spans implement
//! [`TracerDB`] and are adapted with [`DbTracer`].
//!
//! Hooks take `&self`, have empty defaults and must not block: a slow backend queues work
//! for a worker thread.
//!
//! ```
//! use illumo_engine::tracer::{EventData, SpanData, Tracer};
//! struct Count(std::sync::atomic::AtomicUsize);
//! impl Tracer for Count {
//!     fn span_end(&self, _span: &SpanData) {
//!         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     }
//! }
//! ```

pub use crate::ids::{SpanId, TraceId};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Flow,
    Node,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Flow => "flow",
            SpanKind::Node => "node",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "UNSET",
            SpanStatus::Ok => "OK",
            SpanStatus::Error => "ERROR",
        }
    }
}

/// One span: the flow run, or one attempt of one node.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: Option<SpanId>,
    /// `flow <name>` for the root; the node id for a node attempt.
    pub name: String,
    pub kind: SpanKind,
    pub start_time: SystemTime,
    pub end_time: Option<SystemTime>,
    pub status: SpanStatus,
    /// Attributes as JSON: `attempt`, `input.preview`, `error`, ...
    pub attributes: Map<String, Value>,
    /// Attributes every attempt of a node shares (`node`, `max_attempts`, `policy`), built
    /// once per run. Read both with [`SpanData::attribute`] and [`SpanData::all_attributes`].
    pub common: Arc<Map<String, Value>>,
}

impl SpanData {
    /// One attribute, from the span's own or the shared ones.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key).or_else(|| self.common.get(key))
    }

    /// Every attribute: the shared ones, then the span's own.
    pub fn all_attributes(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.common
            .iter()
            .filter(|(k, _)| !self.attributes.contains_key(*k))
            .chain(self.attributes.iter())
    }

    /// All attributes as one JSON object.
    pub fn attributes_json(&self) -> Map<String, Value> {
        self.all_attributes()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Serializes a span's attributes (shared and own) as one JSON object, without copying.
pub struct AttributesJson<'a>(pub &'a SpanData);

impl serde::Serialize for AttributesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.all_attributes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Something that happened inside a span: `node.retry`, `routing.decision`, `ctx.write`, ...
#[derive(Debug, Clone)]
pub struct EventData {
    pub name: String,
    pub timestamp: SystemTime,
    pub level: Level,
    pub attributes: Map<String, Value>,
}

impl EventData {
    pub fn new(name: &str, level: Level, attributes: Map<String, Value>) -> EventData {
        EventData {
            name: name.to_string(),
            timestamp: SystemTime::now(),
            level,
            attributes,
        }
    }
}

/// The engine's hooks. Every method has an empty default body and must return quickly.
pub trait Tracer: Send + Sync {
    /// False when nothing listens: the engine then skips building previews.
    fn enabled(&self) -> bool {
        true
    }
    fn span_start(&self, _span: &SpanData) {}
    fn span_end(&self, _span: &SpanData) {}
    /// The end of a span, handed over: a tracer that keeps the span can take it without a
    /// copy. The engine calls this one; by default it calls [`Tracer::span_end`].
    fn span_end_owned(&self, span: SpanData) {
        self.span_end(&span);
    }
    fn event(&self, _span: &SpanData, _event: &EventData) {}
    /// Does this tracer show text as it arrives (a live console)?
    fn streams(&self) -> bool {
        false
    }
    /// A piece of text streamed by a node (an LLM reply as it arrives).
    fn stream(&self, _span: &SpanData, _text: &str) {}
    /// Called once at the end of a run, also when it fails: write out what is buffered.
    fn flush(&self) {}
}

/// Why a tracer backend failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TracerError {
    #[error("cannot connect to {backend}: {reason}")]
    Connect { backend: String, reason: String },
    #[error("{backend} failed to write: {reason}")]
    Write { backend: String, reason: String },
}

/// A backend that stores spans and their events (SQLite, OTLP, ...).
///
/// Through [`DbTracer`], `record_span` is called when a span starts (no `end_time`, status
/// `UNSET`) and again when it ends, so a store can show runs in progress; a backend that
/// keeps only finished spans ignores the first call.
pub trait TracerDB: Send + Sync {
    fn connect(&mut self) -> Result<(), TracerError>;
    fn record_span(&self, span: &SpanData) -> Result<(), TracerError>;
    /// A finished span handed over, for backends that queue it (no copy needed). By
    /// default, [`TracerDB::record_span`].
    fn record_span_owned(&self, span: SpanData) -> Result<(), TracerError> {
        self.record_span(&span)
    }
    fn record_event(&self, span_id: &SpanId, event: &EventData) -> Result<(), TracerError>;
    fn flush(&self) -> Result<(), TracerError>;
    fn close(&mut self) -> Result<(), TracerError>;
}

/// Adapts a [`TracerDB`] to the engine's hooks: spans are recorded when they start and
/// when they end. A failing backend is reported once on stderr and never fails the flow.
pub struct DbTracer<T: TracerDB> {
    db: T,
    warned: std::sync::atomic::AtomicBool,
}

impl<T: TracerDB> DbTracer<T> {
    pub fn new(mut db: T) -> Result<DbTracer<T>, TracerError> {
        db.connect()?;
        Ok(DbTracer {
            db,
            warned: Default::default(),
        })
    }

    /// The backend (to reach what else it offers, like the SQLite journal).
    pub fn inner(&self) -> &T {
        &self.db
    }

    fn report(&self, result: Result<(), TracerError>) {
        if let Err(e) = result {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("warning: tracer: {e}");
            }
        }
    }
}

impl<T: TracerDB> Tracer for DbTracer<T> {
    fn span_start(&self, span: &SpanData) {
        self.report(self.db.record_span(span));
    }
    fn span_end(&self, span: &SpanData) {
        self.report(self.db.record_span(span));
    }
    fn span_end_owned(&self, span: SpanData) {
        self.report(self.db.record_span_owned(span));
    }
    fn event(&self, span: &SpanData, event: &EventData) {
        self.report(self.db.record_event(&span.span_id, event));
    }
    fn flush(&self) {
        self.report(self.db.flush());
    }
}

impl<T: TracerDB> Drop for DbTracer<T> {
    fn drop(&mut self) {
        let result = self.db.flush().and_then(|()| self.db.close());
        self.report(result);
    }
}

/// Sends every hook to each of several tracers.
#[derive(Default, Clone)]
pub struct Fanout(pub Vec<Arc<dyn Tracer>>);

impl Tracer for Fanout {
    fn enabled(&self) -> bool {
        self.0.iter().any(|t| t.enabled())
    }
    fn span_start(&self, span: &SpanData) {
        self.0.iter().for_each(|t| t.span_start(span));
    }
    fn span_end(&self, span: &SpanData) {
        self.0.iter().for_each(|t| t.span_end(span));
    }
    fn span_end_owned(&self, span: SpanData) {
        if let Some((last, rest)) = self.0.split_last() {
            rest.iter().for_each(|t| t.span_end(&span));
            last.span_end_owned(span);
        }
    }
    fn event(&self, span: &SpanData, event: &EventData) {
        self.0.iter().for_each(|t| t.event(span, event));
    }
    fn streams(&self) -> bool {
        self.0.iter().any(|t| t.streams())
    }
    fn stream(&self, span: &SpanData, text: &str) {
        self.0.iter().for_each(|t| t.stream(span, text));
    }
    fn flush(&self) {
        self.0.iter().for_each(|t| t.flush());
    }
}
