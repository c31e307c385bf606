//! The SQLite tracer: spans and events in a SQLite file in WAL mode, written in batches by
//! a background thread, readable with the plain `sqlite3` CLI while a run is writing.
//! Several runs (processes) may write to one file at once.

use crate::writer::{Flushed, Settings, Sink, Writer};
use illumo_engine::ids::{iso8601, iso8601_bytes};
use illumo_engine::journal::{Journal, RunStart, RunStatus, StepRecord};
use illumo_engine::redact::Redactor;
use illumo_engine::tracer::{
    AttributesJson, EventData, SpanData, SpanId, TraceId, TracerDB, TracerError,
};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
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

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub enum Migration {
    Sql(&'static str),
    /// Columns computed from others (`table`, `column`, `expression`), added unless the
    /// table has them already.
    Generated(&'static [(&'static str, &'static str, &'static str)]),
}

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
pub const MIGRATIONS: &[Migration] = &[
    Migration::Sql(
        // `IF NOT EXISTS`: a copy made with `sqlite3 .dump` keeps illumo's tables but loses
        // `user_version`; such a file is brought back, not refused.
        "
    CREATE TABLE IF NOT EXISTS spans (
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
    CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, start_time);
    CREATE INDEX IF NOT EXISTS runs_by_start ON spans (start_time) WHERE kind = 'flow';
    CREATE TABLE IF NOT EXISTS events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        trace_id    TEXT NOT NULL,
        span_id     TEXT NOT NULL,
        name        TEXT NOT NULL,
        timestamp   TEXT NOT NULL,
        level       TEXT NOT NULL,
        attributes  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS events_by_trace ON events (trace_id, timestamp);
",
    ),
    Migration::Sql(
        "
    CREATE INDEX IF NOT EXISTS events_by_span ON events (span_id);
",
    ),
    // The design's names (`SELECT * FROM spans ORDER BY start DESC`), computed, not stored.
    Migration::Generated(&[
        ("spans", "start", "start_time"),
        ("spans", "end", "end_time"),
    ]),
    // The journal `illumo resume` continues a run from (docs/durable-runs.md).
    Migration::Sql(
        "
    CREATE TABLE IF NOT EXISTS runs (
        trace_id    TEXT PRIMARY KEY,
        flow        TEXT NOT NULL,
        flow_hash   TEXT NOT NULL,
        nodes       TEXT NOT NULL,
        ctx         TEXT NOT NULL,
        options     TEXT NOT NULL,
        forked_from TEXT,
        status      TEXT NOT NULL,
        paused_at   TEXT,
        message     TEXT,
        pid         INTEGER,
        masked      INTEGER NOT NULL DEFAULT 0,
        started_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS steps (
        trace_id    TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        step        INTEGER NOT NULL,
        node        TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        inline      INTEGER NOT NULL,
        status      TEXT NOT NULL,
        output      TEXT,
        writes      TEXT,
        route       TEXT,
        error       TEXT,
        masked      INTEGER NOT NULL DEFAULT 0,
        span_id     TEXT,
        digest      TEXT,
        at          TEXT NOT NULL,
        PRIMARY KEY (trace_id, seq)
    ) WITHOUT ROWID;
",
    ),
];

/// The columns illumo reads and writes, per table.
const COLUMNS: [(&str, &[&str]); 2] = [
    (
        "spans",
        &[
            "span_id",
            "trace_id",
            "parent_id",
            "name",
            "kind",
            "start_time",
            "end_time",
            "duration_ms",
            "status",
            "attributes",
        ],
    ),
    (
        "events",
        &[
            "id",
            "trace_id",
            "span_id",
            "name",
            "timestamp",
            "level",
            "attributes",
        ],
    ),
];

/// Why illumo cannot use a database.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaError {
    /// Another program's file: a table of illumo's name with other columns, or a schema
    /// version no illumo writes.
    Foreign(String),
    /// A newer illumo's file.
    Newer(String),
    /// SQLite itself failed.
    Sqlite(String),
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaError::Foreign(why) => write!(f, "{why}: the file belongs to another program"),
            SchemaError::Newer(why) | SchemaError::Sqlite(why) => f.write_str(why),
        }
    }
}

/// Is this database one illumo can use? `Ok(true)` when it holds illumo's tables,
/// `Ok(false)` when it holds neither table, and why not otherwise.
pub fn check_schema(conn: &Connection) -> Result<bool, SchemaError> {
    let sqlite = |e: rusqlite::Error| SchemaError::Sqlite(e.to_string());
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    if version < 0 {
        return Err(SchemaError::Foreign(format!(
            "its schema version (`PRAGMA user_version`) is {version}, which no illumo writes"
        )));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(SchemaError::Newer(format!(
            "it has schema version {version}, newer than this illumo knows ({}); upgrade illumo",
            MIGRATIONS.len()
        )));
    }
    let mut present = 0;
    for (table, wanted) in COLUMNS {
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .map_err(sqlite)?;
        let columns: Vec<String> = stmt
            .query_map([table], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(sqlite)?;
        if columns.is_empty() {
            // A file that says it has illumo's schema must have its tables.
            if version >= 1 {
                return Err(SchemaError::Foreign(format!(
                    "it says schema version {version} (`PRAGMA user_version`) but has no `{table}` table"
                )));
            }
            continue;
        }
        present += 1;
        if let Some(missing) = wanted
            .iter()
            .find(|c| !columns.iter().any(|have| have == *c))
        {
            return Err(SchemaError::Foreign(format!(
                "its `{table}` table is not illumo's (it has no column `{missing}`)"
            )));
        }
    }
    Ok(present > 0)
}

/// One row for the writer. Spans and events travel as they are; the writer thread formats
/// them, so the engine's thread only clones.
enum Record {
    Span(Box<SpanData>),
    Event {
        trace_id: TraceId,
        span_id: SpanId,
        event: Box<EventData>,
    },
    Journal(Box<JournalRecord>),
}

/// A journal change, in the order the run made it.
enum JournalRecord {
    Start {
        run: RunStart,
        redactor: Arc<Redactor>,
    },
    Step {
        trace_id: TraceId,
        step: StepRecord,
        redactor: Arc<Redactor>,
    },
    Truncate {
        trace_id: TraceId,
        seq: u64,
    },
    Status {
        trace_id: TraceId,
        status: RunStatus,
        redactor: Arc<Redactor>,
    },
}

pub struct SqliteTracer {
    path: PathBuf,
    writer: Option<Arc<Writer<Record>>>,
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

    /// The run journal in the same file, written by the same background writer (call
    /// after connecting). Values that hold one of `redactor`'s secrets are stored masked.
    pub fn journal(&self, redactor: Arc<Redactor>) -> Option<SqliteJournal> {
        Some(SqliteJournal {
            writer: self.writer.clone()?,
            redactor,
        })
    }
}

/// The journal half of a [`SqliteTracer`]: runs and their finished steps.
pub struct SqliteJournal {
    writer: Arc<Writer<Record>>,
    redactor: Arc<Redactor>,
}

impl SqliteJournal {
    fn send(&self, record: JournalRecord) {
        // A journal record is never dropped: the engine waits for room in the queue.
        let _ = self.writer.send_wait(Record::Journal(Box::new(record)));
    }
}

impl Journal for SqliteJournal {
    fn start(&self, run: &RunStart) -> Result<(), String> {
        self.send(JournalRecord::Start {
            run: run.clone(),
            redactor: self.redactor.clone(),
        });
        self.commit()
    }

    fn step(&self, trace_id: TraceId, step: StepRecord) {
        self.send(JournalRecord::Step {
            trace_id,
            step,
            redactor: self.redactor.clone(),
        });
    }

    fn truncate(&self, trace_id: TraceId, seq: u64) {
        self.send(JournalRecord::Truncate { trace_id, seq });
    }

    fn status(&self, trace_id: TraceId, status: &RunStatus) {
        self.send(JournalRecord::Status {
            trace_id,
            status: status.clone(),
            redactor: self.redactor.clone(),
        });
    }

    fn commit(&self) -> Result<(), String> {
        match self.writer.flush(None) {
            Flushed::Done { result, .. } => result,
            Flushed::TimedOut { .. } => Err("the journal's writer did not answer".into()),
            Flushed::Stopped { failure } => Err(failure),
        }
    }
}

/// A value as JSON text for the journal, with secrets masked; says whether any was.
fn journal_json(value: &Value, redactor: &Redactor) -> (String, bool) {
    let text = serde_json::to_string(value).unwrap_or_default();
    if redactor.is_empty() {
        return (text, false);
    }
    match redactor.text(&text) {
        std::borrow::Cow::Borrowed(_) => (text, false),
        std::borrow::Cow::Owned(masked) => (masked, true),
    }
}

/// The journal's step statement, prepared for a batch when it first has a step.
#[derive(Default)]
struct JournalStatements<'t> {
    step: Option<rusqlite::CachedStatement<'t>>,
}

/// A journal change formatted for its statement.
enum JournalRow {
    Start {
        trace_id: String,
        flow: String,
        flow_hash: String,
        nodes: String,
        ctx: String,
        options: String,
        forked_from: Option<String>,
        masked: bool,
        at: String,
    },
    Step {
        trace_id: [u8; 32],
        seq: i64,
        step: i64,
        node: String,
        attempt: i64,
        inline: bool,
        status: &'static str,
        output: String,
        writes: String,
        route: Option<String>,
        error: Option<String>,
        masked: bool,
        span_id: Option<[u8; 16]>,
        digest: String,
        at: [u8; 27],
    },
    Truncate {
        trace_id: String,
        seq: i64,
    },
    Status {
        trace_id: String,
        status: &'static str,
        paused_at: Option<String>,
        message: Option<String>,
        at: String,
    },
}

impl JournalRow {
    fn of(record: JournalRecord) -> JournalRow {
        let now = || iso8601(std::time::SystemTime::now());
        match record {
            JournalRecord::Start { run, redactor } => {
                let (ctx, masked) = journal_json(&run.ctx, &redactor);
                let (options, masked_options) = journal_json(&run.options, &redactor);
                let nodes: Map<String, Value> = run
                    .nodes
                    .iter()
                    .map(|(id, digest)| (id.clone(), Value::String(digest.clone())))
                    .collect();
                JournalRow::Start {
                    trace_id: run.trace_id.to_string(),
                    flow: run.flow_path,
                    flow_hash: run.flow_hash,
                    nodes: Value::Object(nodes).to_string(),
                    ctx,
                    options,
                    forked_from: run.forked_from.map(|f| f.to_string()),
                    masked: masked || masked_options,
                    at: now(),
                }
            }
            JournalRecord::Step {
                trace_id,
                step,
                redactor,
            } => {
                let status = step.result.status();
                let columns = step.result.into_columns();
                let (output, a) = journal_json(&columns.output, &redactor);
                let (writes, b) = match &columns.writes {
                    Value::Array(list) if list.is_empty() => ("[]".to_string(), false),
                    writes => journal_json(writes, &redactor),
                };
                let route = columns.route.map(|r| journal_json(&r, &redactor));
                let error = columns.error.map(|e| journal_json(&e, &redactor));
                let masked = a
                    || b
                    || route.as_ref().is_some_and(|r| r.1)
                    || error.as_ref().is_some_and(|e| e.1);
                JournalRow::Step {
                    trace_id: trace_id.hex(),
                    seq: step.seq as i64,
                    step: step.step as i64,
                    node: step.node,
                    attempt: i64::from(step.attempt),
                    inline: step.inline,
                    status,
                    output,
                    writes,
                    route: route.map(|r| r.0),
                    error: error.map(|e| e.0),
                    masked,
                    span_id: step.span_id.map(|s| s.hex()),
                    digest: step.digest,
                    at: iso8601_bytes(std::time::SystemTime::now()),
                }
            }
            JournalRecord::Truncate { trace_id, seq } => JournalRow::Truncate {
                trace_id: trace_id.to_string(),
                seq: seq as i64,
            },
            JournalRecord::Status {
                trace_id,
                status,
                redactor,
            } => {
                let (paused_at, message) = match &status {
                    RunStatus::Paused { node, message } => (
                        Some(node.clone()),
                        Some(redactor.text(message).into_owned()),
                    ),
                    _ => (None, None),
                };
                JournalRow::Status {
                    trace_id: trace_id.to_string(),
                    status: status.as_str(),
                    paused_at,
                    message,
                    at: now(),
                }
            }
        }
    }

    fn write<'t>(
        &self,
        tx: &'t rusqlite::Transaction<'_>,
        statements: &mut JournalStatements<'t>,
    ) -> rusqlite::Result<()> {
        match self {
            JournalRow::Start {
                trace_id,
                flow,
                flow_hash,
                nodes,
                ctx,
                options,
                forked_from,
                masked,
                at,
            } => {
                // A resumed segment starts again: only its status and process change.
                tx.prepare_cached(
                    "INSERT INTO runs (trace_id, flow, flow_hash, nodes, ctx, options, forked_from, status, pid, masked, started_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9, ?10, ?10)
                     ON CONFLICT (trace_id) DO UPDATE SET status = 'running', pid = excluded.pid,
                       paused_at = NULL, message = NULL, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    trace_id,
                    flow,
                    flow_hash,
                    nodes,
                    ctx,
                    options,
                    forked_from,
                    i64::from(std::process::id()),
                    masked,
                    at
                ])?;
            }
            JournalRow::Step {
                trace_id,
                seq,
                step,
                node,
                attempt,
                inline,
                status,
                output,
                writes,
                route,
                error,
                masked,
                span_id,
                digest,
                at,
            } => {
                if statements.step.is_none() {
                    // A plain insert: two processes writing one run's steps is an error.
                    statements.step = Some(tx.prepare_cached(
                        "INSERT INTO steps (trace_id, seq, step, node, attempt, inline, status, output, writes, route, error, masked, span_id, digest, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    )?);
                }
                let statement = statements.step.as_mut().expect("prepared above");
                statement.execute(params![
                    ascii(trace_id),
                    seq,
                    step,
                    node,
                    attempt,
                    inline,
                    status,
                    output,
                    writes,
                    route,
                    error,
                    masked,
                    span_id.as_ref().map(|s| ascii(s)),
                    digest,
                    ascii(at)
                ])?;
            }
            JournalRow::Truncate { trace_id, seq } => {
                tx.prepare_cached("DELETE FROM steps WHERE trace_id = ?1 AND seq >= ?2")?
                    .execute(params![trace_id, seq])?;
            }
            JournalRow::Status {
                trace_id,
                status,
                paused_at,
                message,
                at,
            } => {
                tx.prepare_cached(
                    "UPDATE runs SET status = ?2, paused_at = ?3, message = ?4, updated_at = ?5 WHERE trace_id = ?1",
                )?
                .execute(params![trace_id, status, paused_at, message, at])?;
            }
        }
        Ok(())
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
    // A bigger page cache than the default 2 MB: span ids are random, so inserts touch
    // pages all over the primary-key index.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -16384")?;
    // Closing the last connection copies the WAL into the file (about 3 ms per 1,000
    // spans, at the end of a run) and removes it: the trace is then whole in the one
    // file, which can be copied, attached or read from a folder one cannot write.
    Ok(migrate(&mut conn)?.map(|()| conn))
}

/// Applies the migrations this database has not seen, in one transaction.
fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match check_schema(&tx) {
        Err(SchemaError::Foreign(why)) => {
            return Ok(Err(format!(
                "{}; give the tracer a file of its own with `--tracer-arg db_path=PATH`",
                SchemaError::Foreign(why)
            )))
        }
        Err(other) => return Ok(Err(other.to_string())),
        Ok(_) => {}
    }
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = usize::try_from(version).unwrap_or(0);
    if version == MIGRATIONS.len() {
        return Ok(Ok(()));
    }
    for step in &MIGRATIONS[version..] {
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Generated(columns) => {
                for (table, column, expression) in *columns {
                    let exists: bool = tx.query_row(
                        "SELECT count(*) > 0 FROM pragma_table_xinfo(?1) WHERE name = ?2",
                        [table, column],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        tx.execute_batch(&format!(
                            "ALTER TABLE {table} ADD COLUMN \"{column}\" TEXT GENERATED ALWAYS AS ({expression}) VIRTUAL"
                        ))?;
                    }
                }
            }
        }
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit().map(Ok)
}

/// A span row, formatted and ready to insert.
/// Ids and times are kept as fixed-size ASCII, so a row costs one allocation (its
/// attributes) besides the name it takes over.
struct SpanRow {
    id: SpanId,
    span_id: [u8; 16],
    trace_id: [u8; 32],
    parent_id: Option<[u8; 16]>,
    name: String,
    kind: &'static str,
    start_time: [u8; 27],
    end_time: Option<[u8; 27]>,
    duration_ms: Option<f64>,
    status: &'static str,
    attributes: String,
}

/// Text made by illumo itself (hex digits, timestamps): always ASCII.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Serializes span attributes. The part a node's attempts share (node, policy) is kept
/// for the node last seen, so retries do not serialize it again; and per key the last
/// nested value, so the policy most nodes share is compared rather than serialized.
#[derive(Default)]
struct AttributeCache {
    /// The last shared map (kept alive, so its address cannot be another map's) and its
    /// JSON text.
    shared: Option<(Arc<Map<String, Value>>, String)>,
    /// Per key, the last nested value seen and its JSON text.
    last: HashMap<String, (Value, String)>,
}

impl AttributeCache {
    fn json(&mut self, span: &SpanData) -> String {
        let overlap = span.attributes.keys().any(|k| span.common.contains_key(k));
        if span.common.is_empty() || overlap {
            return serde_json::to_string(&AttributesJson(span)).unwrap_or_default();
        }
        let same = self
            .shared
            .as_ref()
            .is_some_and(|(map, _)| Arc::ptr_eq(map, &span.common));
        if !same {
            let text = self.shared_json(&span.common);
            self.shared = Some((span.common.clone(), text));
        }
        let shared = self.shared.as_ref().map_or("", |(_, text)| text.as_str());
        let own = serde_json::to_string(&span.attributes).unwrap_or_default();
        let mut out = String::with_capacity(shared.len() + own.len() + 2);
        out.push('{');
        out.push_str(shared);
        match inner_of(&own) {
            "" => {}
            own => {
                out.push(',');
                out.push_str(own);
            }
        }
        out.push('}');
        out
    }
}

impl AttributeCache {
    /// `"k":v,...` of a shared map; nested values seen before (one policy for most
    /// nodes) are not serialized again.
    fn shared_json(&mut self, map: &Map<String, Value>) -> String {
        let mut out = String::new();
        for (key, value) in map {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            match value {
                Value::Object(_) | Value::Array(_) => match self.last.get(key) {
                    Some((last, text)) if last == value => out.push_str(text),
                    _ => {
                        let text = serde_json::to_string(value).unwrap_or_default();
                        out.push_str(&text);
                        self.last.insert(key.clone(), (value.clone(), text));
                    }
                },
                scalar => out.push_str(&scalar.to_string()),
            }
        }
        out
    }
}

/// `a:1,b:2` of `{a:1,b:2}`.
fn inner_of(object: &str) -> &str {
    object
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or("")
}

impl SpanRow {
    fn of(span: &SpanData, cache: &mut AttributeCache) -> SpanRow {
        SpanRow {
            id: span.span_id,
            span_id: span.span_id.hex(),
            trace_id: span.trace_id.hex(),
            parent_id: span.parent_id.map(|p| p.hex()),
            name: span.name.clone(),
            kind: span.kind.as_str(),
            start_time: iso8601_bytes(span.start_time),
            end_time: span.end_time.map(iso8601_bytes),
            duration_ms: span
                .end_time
                .and_then(|end| end.duration_since(span.start_time).ok())
                .map(|d| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0),
            status: span.status.as_str(),
            attributes: cache.json(span),
        }
    }

    /// The same, taking the span's name instead of copying it.
    fn take(mut span: Box<SpanData>, cache: &mut AttributeCache) -> SpanRow {
        let mut row = SpanRow::of(&span, cache);
        row.name = std::mem::take(&mut span.name);
        row
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
    cache: AttributeCache,
    spans: Vec<PendingSpan>,
    span_index: HashMap<SpanId, usize>,
    events: Vec<EventRow>,
    journal: Vec<JournalRow>,
}

impl Sink for Pending {
    type Record = Record;

    fn len(&self) -> usize {
        self.spans.len() + self.events.len() + self.journal.len()
    }

    fn write(&mut self) -> Result<(), String> {
        let (conn, cache) = (&mut self.conn, &mut self.cache);
        let result =
            retry_busy(|| write_rows(conn, cache, &self.spans, &self.events, &self.journal))
                .map_err(|e| e.to_string());
        self.spans.clear();
        self.span_index.clear();
        self.events.clear();
        self.journal.clear();
        result
    }

    fn add(&mut self, record: Record) {
        match record {
            Record::Span(span) => {
                // A finished span is formatted now, while the engine runs; a start usually
                // gets replaced by its end before the write and is formatted only if not.
                let entry = if span.end_time.is_some() {
                    PendingSpan::Row(Box::new(SpanRow::take(span, &mut self.cache)))
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
            Record::Journal(record) => self.journal.push(JournalRow::of(*record)),
        }
    }
}

fn write_rows(
    conn: &mut Connection,
    cache: &mut AttributeCache,
    spans: &[PendingSpan],
    events: &[EventRow],
    journal: &[JournalRow],
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
                    started = SpanRow::of(span, cache);
                    &started
                }
            };
            span_stmt.execute(params![
                ascii(&r.span_id),
                ascii(&r.trace_id),
                r.parent_id.as_ref().map(|p| ascii(p)),
                r.name,
                r.kind,
                ascii(&r.start_time),
                r.end_time.as_ref().map(|t| ascii(t)),
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
        // One statement per kind of change, prepared once per batch.
        let mut statements = JournalStatements::default();
        for row in journal {
            row.write(&tx, &mut statements)?;
        }
    }
    tx.commit()
}

impl TracerDB for SqliteTracer {
    fn connect(&mut self) -> Result<(), TracerError> {
        let conn = open(&self.path)?;
        let sink = Pending {
            conn,
            cache: AttributeCache::default(),
            spans: Vec::new(),
            span_index: HashMap::new(),
            events: Vec::new(),
            journal: Vec::new(),
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
        self.writer = Some(Arc::new(writer));
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
        if let Some(writer) = self.writer.take() {
            // A journal still held elsewhere keeps the writer; it commits what it gets.
            if let Ok(mut writer) = Arc::try_unwrap(writer) {
                writer.close(None);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use illumo_engine::tracer::{SpanKind, SpanStatus};
    use serde_json::json;

    fn span(common: &Arc<Map<String, Value>>, own: Value) -> SpanData {
        let Value::Object(attributes) = own else {
            unreachable!()
        };
        SpanData {
            trace_id: TraceId(1),
            span_id: SpanId(2),
            parent_id: None,
            name: "n".into(),
            kind: SpanKind::Node,
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: None,
            status: SpanStatus::Ok,
            attributes,
            common: common.clone(),
        }
    }

    #[test]
    fn cached_attributes_are_the_same_json_as_serialized_whole() {
        let Value::Object(shared) = json!({"node": {"id": "a", "type": "Set"}, "max_attempts": 1})
        else {
            unreachable!()
        };
        let common = Arc::new(shared);
        let mut cache = AttributeCache::default();
        for own in [
            json!({"attempt": 1, "output": {"preview": "x"}}),
            json!({}),
            json!({"max_attempts": 3}),
        ] {
            let s = span(&common, own);
            let whole = serde_json::to_string(&AttributesJson(&s)).unwrap();
            assert_eq!(cache.json(&s), whole);
            // The second time comes from the cache.
            assert_eq!(cache.json(&s), whole);
        }
        assert!(cache
            .shared
            .as_ref()
            .is_some_and(|(m, _)| Arc::ptr_eq(m, &common)));
        // Another node with the same nested value reuses its text.
        let Value::Object(other) = json!({"node": {"id": "b", "type": "Set"}, "max_attempts": 1})
        else {
            unreachable!()
        };
        let other = Arc::new(other);
        let s = span(&other, json!({"attempt": 1}));
        assert_eq!(
            cache.json(&s),
            serde_json::to_string(&AttributesJson(&s)).unwrap()
        );
        assert_eq!(cache.last.len(), 1, "one nested value per key is kept");
    }
}
