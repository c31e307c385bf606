//! Reading a trace database back, for `illumo trace list|show|search`.

use rusqlite::{params_from_iter, Connection, OpenFlags};
use serde_json::Value;
use std::path::Path;

/// One run: its root span.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub trace_id: String,
    pub flow: String,
    pub start_time: String,
    pub duration_ms: Option<f64>,
    /// `OK`, `ERROR`, or `UNSET` for a run that has not ended (still running, or killed).
    pub status: String,
    pub nodes: i64,
    /// `ok`, `failed`, `interrupted` (Ctrl-C, SIGTERM, killed), `paused` or `running`; a
    /// run without a journal that has not ended is `running?` (running, or killed).
    pub state: String,
    /// Can `illumo resume` continue it (journaled, and failed, interrupted or paused)?
    pub resumable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub span_id: String,
    pub trace_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: Option<f64>,
    pub status: String,
    pub attributes: Value,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub span_id: String,
    pub name: String,
    pub timestamp: String,
    pub level: String,
    pub attributes: Value,
}

/// What `illumo trace search` filters on; every given filter must hold.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub status: Option<String>,
    pub node: Option<String>,
    /// `(key, value)`: `json_extract(attributes, '$.key')` equals value (as text).
    pub attrs: Vec<(String, String)>,
    pub timeouts: bool,
    pub trace_id: Option<String>,
    /// `node` (node attempts, the default) or `flow` (runs).
    pub kind: Option<String>,
    pub limit: usize,
}

/// Opens an existing trace database for reading.
pub fn open(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!("no trace database at `{}`", path.display()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut checked = crate::sqlite::check_schema(&conn).map(|ok| (ok, conn));
    if let Err(why) = &checked {
        // A WAL database in a folder this user cannot write (a copied artifact, a shared
        // read-only mount): SQLite cannot make its `-shm` file. Read it as a file nobody
        // changes instead.
        let why = why.to_string();
        if why.contains("readonly") || why.contains("unable to open") {
            if let Ok(conn) = open_immutable(path) {
                checked = crate::sqlite::check_schema(&conn).map(|ok| (ok, conn));
            }
        }
    }
    match checked {
        Ok((true, conn)) => Ok(conn),
        Ok((false, _)) => Err(format!(
            "`{}` is not an illumo trace database (it has no `spans` table)",
            path.display()
        )),
        Err(why) => Err(format!("`{}` cannot be read: {why}", path.display())),
    }
}

fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // A URI path: `%`, `?` and `#` are the characters that would end or escape it.
    let text = absolute
        .display()
        .to_string()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    Connection::open_with_flags(
        format!("file:{text}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
}

fn text(e: rusqlite::Error) -> String {
    e.to_string()
}

fn json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The newest runs first.
pub fn list_runs(conn: &Connection, limit: usize) -> Result<Vec<RunSummary>, String> {
    list_runs_where(conn, limit, None, None)
}

/// The newest runs first, of one trace or one flow name when given.
pub fn list_runs_where(
    conn: &Connection,
    limit: usize,
    trace_id: Option<&str>,
    flow: Option<&str>,
) -> Result<Vec<RunSummary>, String> {
    let journal = crate::journal::has_journal(conn)?;
    // A resumed run has a root span per segment: the first one's start, the last one's
    // status, and the journal's state.
    let (state, journal_only) = match journal {
        true => (
            "(SELECT r.status || ' ' || coalesce(r.pid, '') FROM runs r WHERE r.trace_id = s.trace_id)",
            "UNION ALL
             SELECT r.trace_id, 'flow ' || coalesce(json_extract(r.options, '$.flow_name'), r.flow),
                    r.started_at, NULL, 'UNSET', 0, r.status || ' ' || coalesce(r.pid, '')
             FROM runs r WHERE NOT EXISTS (SELECT 1 FROM spans f WHERE f.trace_id = r.trace_id)
               AND (?2 IS NULL OR r.trace_id = ?2)",
        ),
        false => ("NULL", ""),
    };
    let sql = format!(
        "SELECT * FROM (
           SELECT s.trace_id, s.name,
                  (SELECT min(f.start_time) FROM spans f WHERE f.trace_id = s.trace_id AND f.kind = 'flow') AS started,
                  s.duration_ms, s.status,
                  (SELECT count(*) FROM spans c WHERE c.trace_id = s.trace_id AND c.kind = 'node'),
                  {state}
           FROM spans s WHERE s.kind = 'flow'
             AND s.rowid = (SELECT f.rowid FROM spans f WHERE f.trace_id = s.trace_id AND f.kind = 'flow'
                            ORDER BY f.start_time DESC, f.rowid DESC LIMIT 1)
             AND (?2 IS NULL OR s.trace_id = ?2)
           {journal_only}
         ) WHERE (?3 IS NULL OR name = 'flow ' || ?3 OR name = ?3)
         ORDER BY started DESC LIMIT ?1"
    );
    let mut stmt = conn.prepare(&sql).map_err(text)?;
    let rows = stmt
        .query_map(rusqlite::params![limit as i64, trace_id, flow], |r| {
            let name: String = r.get(1)?;
            let status: String = r.get(4)?;
            let duration_ms: Option<f64> = r.get(3)?;
            let journaled: Option<String> = r.get(6)?;
            let (state, resumable) = match &journaled {
                Some(text) => {
                    let (status, pid) = text.split_once(' ').unwrap_or((text, ""));
                    let state = crate::journal::effective_status(status, pid.parse().ok());
                    (
                        state.to_string(),
                        matches!(state, "failed" | "interrupted" | "paused"),
                    )
                }
                None => (span_state(&status, duration_ms).to_string(), false),
            };
            Ok(RunSummary {
                trace_id: r.get(0)?,
                flow: name.strip_prefix("flow ").unwrap_or(&name).to_string(),
                start_time: r.get(2)?,
                duration_ms,
                status,
                nodes: r.get(5)?,
                state,
                resumable,
            })
        })
        .map_err(text)?;
    rows.collect::<Result<_, _>>().map_err(text)
}

/// A run's state from its root span alone (no journal).
fn span_state(status: &str, duration_ms: Option<f64>) -> &'static str {
    match (status, duration_ms) {
        ("OK", _) => "ok",
        ("ERROR", _) => "failed",
        (_, None) => "running?",
        _ => "interrupted",
    }
}

/// The LLM tokens (in and out) a run's node attempts used, if any node reported some,
/// and what they cost when a price table was given (`gen_ai.usage.cost_usd`).
pub fn tokens(conn: &Connection, trace_id: &str) -> Result<(Option<i64>, Option<f64>), String> {
    conn.query_row(
        "SELECT sum(coalesce(json_extract(attributes, '$.gen_ai.usage.input_tokens'), 0)
                  + coalesce(json_extract(attributes, '$.gen_ai.usage.output_tokens'), 0)),
                sum(json_extract(attributes, '$.gen_ai.usage.cost_usd'))
         FROM spans WHERE trace_id = ?1 AND kind = 'node'
           AND json_extract(attributes, '$.gen_ai.usage') IS NOT NULL",
        [trace_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(text)
}

/// The full trace id for an id or a unique prefix of one.
pub fn resolve_trace(conn: &Connection, id: &str) -> Result<String, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{id}` is not a trace id (32 hex digits, or a unique prefix)"
        ));
    }
    let mut stmt = conn
        .prepare("SELECT DISTINCT trace_id FROM spans WHERE trace_id LIKE ?1 || '%' LIMIT 3")
        .map_err(text)?;
    let ids: Vec<String> = stmt
        .query_map([id.to_lowercase()], |r| r.get(0))
        .map_err(text)?
        .collect::<Result<_, _>>()
        .map_err(text)?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no trace `{id}` in this database; `illumo trace list` shows the runs"
        )),
        _ => Err(format!("`{id}` matches several traces; give more digits")),
    }
}

fn span_rows(conn: &Connection, sql: &str, args: Vec<String>) -> Result<Vec<SpanRow>, String> {
    let mut stmt = conn.prepare(sql).map_err(text)?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok(SpanRow {
                span_id: r.get(0)?,
                trace_id: r.get(1)?,
                parent_id: r.get(2)?,
                name: r.get(3)?,
                kind: r.get(4)?,
                start_time: r.get(5)?,
                end_time: r.get(6)?,
                duration_ms: r.get(7)?,
                status: r.get(8)?,
                attributes: json(r.get(9)?),
                events: Vec::new(),
            })
        })
        .map_err(text)?;
    rows.collect::<Result<_, _>>().map_err(text)
}

const SPAN_COLUMNS: &str =
    "s.span_id, s.trace_id, s.parent_id, s.name, s.kind, s.start_time, s.end_time, s.duration_ms, s.status, s.attributes";

/// Every span of a trace in start order, each with its events.
pub fn trace(conn: &Connection, trace_id: &str) -> Result<Vec<SpanRow>, String> {
    let sql = format!(
        "SELECT {SPAN_COLUMNS} FROM spans s WHERE s.trace_id = ?1 ORDER BY s.start_time, s.rowid"
    );
    let mut spans = span_rows(conn, &sql, vec![trace_id.to_string()])?;
    let mut stmt = conn
        .prepare("SELECT span_id, name, timestamp, level, attributes FROM events WHERE trace_id = ?1 ORDER BY timestamp, id")
        .map_err(text)?;
    let events = stmt
        .query_map([trace_id], |r| {
            Ok(EventRow {
                span_id: r.get(0)?,
                name: r.get(1)?,
                timestamp: r.get(2)?,
                level: r.get(3)?,
                attributes: json(r.get(4)?),
            })
        })
        .map_err(text)?;
    for event in events {
        let event = event.map_err(text)?;
        if let Some(span) = spans.iter_mut().find(|s| s.span_id == event.span_id) {
            span.events.push(event);
        }
    }
    Ok(spans)
}

/// Node spans matching every filter, newest first.
pub fn search(conn: &Connection, search: &Search) -> Result<Vec<SpanRow>, String> {
    let mut args = vec![search.kind.clone().unwrap_or_else(|| "node".into())];
    let mut conditions = vec!["s.kind = ?1".to_string()];
    if let Some(status) = &search.status {
        args.push(status.to_uppercase());
        conditions.push(format!("s.status = ?{}", args.len()));
    }
    if let Some(node) = &search.node {
        args.push(node.clone());
        conditions.push(format!("s.name = ?{}", args.len()));
    }
    if let Some(trace_id) = &search.trace_id {
        args.push(trace_id.clone());
        conditions.push(format!("s.trace_id = ?{}", args.len()));
    }
    for (key, value) in &search.attrs {
        args.push(format!("$.{key}"));
        let path = args.len();
        args.push(value.clone());
        conditions.push(format!(
            "CAST(json_extract(s.attributes, ?{path}) AS TEXT) = ?{}",
            args.len()
        ));
    }
    if search.timeouts {
        conditions.push("json_extract(s.attributes, '$.timeout') = 1".into());
    }
    let sql = format!(
        "SELECT {SPAN_COLUMNS} FROM spans s WHERE {} ORDER BY s.start_time DESC LIMIT {}",
        conditions.join(" AND "),
        search.limit.max(1)
    );
    span_rows(conn, &sql, args)
}
