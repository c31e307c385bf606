//! The SQLite tracer: spans and events in a SQLite file in WAL mode, written in batches by
//! a background thread, readable with the plain `sqlite3` CLI while a run is writing.
//! Several runs (processes) may write to one file at once.

use crate::writer::{Flushed, Settings, Sink, Writer};
use illumo_engine::ids::iso8601;
use illumo_engine::tracer::{
    AttributesJson, EventData, SpanData, SpanId, TraceId, TracerDB, TracerError,
};
use rusqlite::{params, Connection, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const BACKEND: &str = "the sqlite tracer";
/// Records waiting for the writer; past this the hook drops the record rather than block.
const QUEUE: usize = 65_536;
/// Rows written in one transaction at most.
const BATCH: usize = 4_096;
/// How long the writer lets records gather before it commits them.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE spans (
        span_id     TEXT PRIMARY KEY,
        trace_id    TEXT NOT NULL,
        parent_id   TEXT,
        name        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        start_time  TEXT NOT NULL,
        end_time    TEXT,
        duration_ms REAL,
        status      TEXT NOT NULL,
        attributes  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX spans_by_trace ON spans (trace_id, start_time);
    CREATE INDEX runs_by_start ON spans (start_time) WHERE kind = 'flow';
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        trace_id    TEXT NOT NULL,
        span_id     TEXT NOT NULL,
        name        TEXT NOT NULL,
        timestamp   TEXT NOT NULL,
        level       TEXT NOT NULL,
        attributes  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_by_trace ON events (trace_id, timestamp);
",
    "
    CREATE INDEX events_by_span ON events (span_id);
",
];

/// One row for the writer. Spans and events travel as they are; the writer thread formats
/// them, so the engine's thread only clones.
enum Record {
    Span(Box<SpanData>),
    Event {
        trace_id: TraceId,
        span_id: SpanId,
        event: Box<EventData>,
    },
}

pub struct SqliteTracer {
    path: PathBuf,
    writer: Option<Writer<Record>>,
    trace_id: OnceLock<TraceId>,
}

impl SqliteTracer {
    pub fn new(path: impl Into<PathBuf>) -> SqliteTracer {
        SqliteTracer {
            path: path.into(),
            writer: None,
            trace_id: OnceLock::new(),
        }
    }

    fn send(&self, record: Record) -> Result<(), TracerError> {
        let Some(writer) = &self.writer else {
            return Err(write_error("the tracer is not connected"));
        };
        writer.send(record).map_err(|e| write_error(&e))
    }
}

fn write_error(reason: &str) -> TracerError {
    TracerError::Write {
        backend: BACKEND.into(),
        reason: reason.into(),
    }
}

/// Is this the error of a database another process holds locked for the moment?
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `step` again while another process holds the database (up to about 30 s). Switching
/// a new file to WAL and its first migration can meet a lock without SQLite's busy handler.
fn retry_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut wait = Duration::from_millis(5);
    loop {
        match step() {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(wait.mul_f64(0.5 + illumo_engine::ids::random_unit()));
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Opens (creating if needed) a trace database, sets WAL and brings the schema up to date.
pub fn open(path: &Path) -> Result<Connection, TracerError> {
    let fail = |reason: String| TracerError::Connect {
        backend: format!("{BACKEND} at `{}`", path.display()),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    retry_busy(|| try_open(path))
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)
}

/// One try at opening: SQLite errors (a busy database may be tried again) outside, and
/// problems with this database that no retry fixes inside.
fn try_open(path: &Path) -> rusqlite::Result<Result<Connection, String>> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        return Ok(Err(format!("cannot switch to WAL mode (got `{mode}`)")));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    Ok(migrate(&mut conn)?.map(|()| conn))
}

/// Applies the migrations this database has not seen, in one transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Ok(Err(format!(
            "the database has schema version {version}, newer than this illumo knows ({}); upgrade illumo",
            MIGRATIONS.len()
        )));
    }
    for sql in &MIGRATIONS[version..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit().map(Ok)
}

/// A span row, formatted and ready to insert.
struct SpanRow {
    id: SpanId,
    span_id: String,
    trace_id: String,
    parent_id: Option<String>,
    name: String,
    kind: &'static str,
    start_time: String,
    end_time: Option<String>,
    duration_ms: Option<f64>,
    status: &'static str,
    attributes: String,
}

impl SpanRow {
    fn of(span: &SpanData) -> SpanRow {
        SpanRow {
            id: span.span_id,
            span_id: span.span_id.to_string(),
            trace_id: span.trace_id.to_string(),
            parent_id: span.parent_id.map(|p| p.to_string()),
            name: span.name.clone(),
            kind: span.kind.as_str(),
            start_time: iso8601(span.start_time),
            end_time: span.end_time.map(iso8601),
            duration_ms: span
                .end_time
                .and_then(|end| end.duration_since(span.start_time).ok())
                .map(|d| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0),
            status: span.status.as_str(),
            attributes: serde_json::to_string(&AttributesJson(span)).unwrap_or_default(),
        }
    }
}

enum PendingSpan {
    Started(Box<SpanData>),
    Row(Box<SpanRow>),
}

impl PendingSpan {
    fn id(&self) -> SpanId {
        match self {
            PendingSpan::Started(span) => span.span_id,
            PendingSpan::Row(row) => row.id,
        }
    }
}

struct EventRow {
    trace_id: String,
    span_id: String,
    name: String,
    timestamp: String,
    level: &'static str,
    attributes: String,
}

/// What the writer has gathered for its next transaction. A span seen twice (started,
/// then finished) keeps only its latest state, formatted once when written.
struct Pending {
    conn: Connection,
    spans: Vec<PendingSpan>,
    span_index: HashMap<SpanId, usize>,
    events: Vec<EventRow>,
}

impl Sink for Pending {
    type Record = Record;

    fn len(&self) -> usize {
        self.spans.len() + self.events.len()
    }

    fn write(&mut self) -> Result<(), String> {
        let result = retry_busy(|| write_rows(&mut self.conn, &self.spans, &self.events))
            .map_err(|e| e.to_string());
        self.spans.clear();
        self.span_index.clear();
        self.events.clear();
        result
    }

    fn add(&mut self, record: Record) {
        match record {
            Record::Span(span) => {
                // A finished span is formatted now, while the engine runs; a start usually
                // gets replaced by its end before the write and is formatted only if not.
                let entry = if span.end_time.is_some() {
                    PendingSpan::Row(Box::new(SpanRow::of(&span)))
                } else {
                    PendingSpan::Started(span)
                };
                match self.span_index.get(&entry.id()) {
                    Some(&i) => self.spans[i] = entry,
                    None => {
                        self.span_index.insert(entry.id(), self.spans.len());
                        self.spans.push(entry);
                    }
                }
            }
            Record::Event {
                trace_id,
                span_id,
                event,
            } => self.events.push(EventRow {
                trace_id: trace_id.to_string(),
                span_id: span_id.to_string(),
                name: event.name.clone(),
                timestamp: iso8601(event.timestamp),
                level: event.level.as_str(),
                attributes: serde_json::to_string(&event.attributes).unwrap_or_default(),
            }),
        }
    }
}

fn write_rows(
    conn: &mut Connection,
    spans: &[PendingSpan],
    events: &[EventRow],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut span_stmt = tx.prepare_cached(
            "INSERT INTO spans (span_id, trace_id, parent_id, name, kind, start_time, end_time, duration_ms, status, attributes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (span_id) DO UPDATE SET
               end_time = excluded.end_time, duration_ms = excluded.duration_ms,
               status = excluded.status, attributes = excluded.attributes",
        )?;
        for entry in spans {
            let started;
            let r = match entry {
                PendingSpan::Row(row) => row,
                PendingSpan::Started(span) => {
                    started = SpanRow::of(span);
                    &started
                }
            };
            span_stmt.execute(params![
                r.span_id,
                r.trace_id,
                r.parent_id,
                r.name,
                r.kind,
                r.start_time,
                r.end_time,
                r.duration_ms,
                r.status,
                r.attributes
            ])?;
        }
        let mut event_stmt = tx.prepare_cached(
            "INSERT INTO events (trace_id, span_id, name, timestamp, level, attributes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in events {
            event_stmt.execute(params![
                e.trace_id,
                e.span_id,
                e.name,
                e.timestamp,
                e.level,
                e.attributes
            ])?;
        }
    }
    tx.commit()
}

impl TracerDB for SqliteTracer {
    fn connect(&mut self) -> Result<(), TracerError> {
        let conn = open(&self.path)?;
        let sink = Pending {
            conn,
            spans: Vec::new(),
            span_index: HashMap::new(),
            events: Vec::new(),
        };
        let settings = Settings {
            thread_name: "illumo-sqlite",
            capacity: QUEUE,
            batch: BATCH,
            gather: BATCH_WINDOW,
        };
        let writer = Writer::start(sink, settings).map_err(|e| TracerError::Connect {
            backend: BACKEND.into(),
            reason: e.to_string(),
        })?;
        self.writer = Some(writer);
        Ok(())
    }

    fn record_span(&self, span: &SpanData) -> Result<(), TracerError> {
        self.trace_id.get_or_init(|| span.trace_id);
        self.send(Record::Span(Box::new(span.clone())))
    }

    fn record_span_owned(&self, span: SpanData) -> Result<(), TracerError> {
        self.trace_id.get_or_init(|| span.trace_id);
        self.send(Record::Span(Box::new(span)))
    }

    fn record_event(&self, span_id: &SpanId, event: &EventData) -> Result<(), TracerError> {
        let trace_id = self.trace_id.get().copied().unwrap_or(TraceId(0));
        self.send(Record::Event {
            trace_id,
            span_id: *span_id,
            event: Box::new(event.clone()),
        })
    }

    /// Waits until everything queued so far is committed.
    fn flush(&self) -> Result<(), TracerError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        match writer.flush(None) {
            Flushed::Done { result, queue_full } => {
                result.map_err(|e| write_error(&e))?;
                match queue_full {
                    0 => Ok(()),
                    n => Err(write_error(&format!(
                        "{n} records were dropped because the write queue was full"
                    ))),
                }
            }
            Flushed::TimedOut { .. } => Err(write_error("the writer did not answer")),
            Flushed::Stopped { failure } => Err(write_error(&failure)),
        }
    }

    fn close(&mut self) -> Result<(), TracerError> {
        if let Some(mut writer) = self.writer.take() {
            writer.close(None);
        }
        Ok(())
    }
}
