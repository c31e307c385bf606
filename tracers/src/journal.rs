//! Reading a run's journal back, for `illumo resume` and forks (`illumo run --from`).

use illumo_engine::journal::{StepColumns, StepRecord, StepResult};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};

/// A run as its journal holds it.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub trace_id: String,
    pub flow: String,
    pub flow_hash: String,
    /// Per node id, the digest of its settings when the run started.
    pub nodes: Map<String, Value>,
    pub ctx: Value,
    pub options: Value,
    pub forked_from: Option<Value>,
    /// `running`, `ok`, `failed`, `interrupted` or `paused`, as the run last wrote it.
    pub status: String,
    pub paused_at: Option<String>,
    pub message: Option<String>,
    pub pid: Option<i64>,
    /// Did the start or a step hold a secret, stored masked?
    pub masked: bool,
    /// Finished steps in the order they finished.
    pub steps: Vec<StepRecord>,
}

fn text(e: rusqlite::Error) -> String {
    e.to_string()
}

fn json(text: Option<String>) -> Result<Value, String> {
    match text {
        None => Ok(Value::Null),
        Some(t) => {
            serde_json::from_str(&t).map_err(|e| format!("a journal value is not JSON: {e}"))
        }
    }
}

/// Does this database have a journal (a database from before schema 4 has none)?
pub fn has_journal(conn: &Connection) -> Result<bool, String> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(text)
}

/// The full trace id of a journaled run, for an id or a unique prefix.
pub fn resolve_run(conn: &Connection, id: &str) -> Result<String, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{id}` is not a trace id (32 hex digits, or a unique prefix)"
        ));
    }
    if !has_journal(conn)? {
        return Err("this database has no run journal (it was written by an older illumo)".into());
    }
    let mut stmt = conn
        .prepare("SELECT trace_id FROM runs WHERE trace_id LIKE ?1 || '%' LIMIT 3")
        .map_err(text)?;
    let ids: Vec<String> = stmt
        .query_map([id.to_lowercase()], |r| r.get(0))
        .map_err(text)?
        .collect::<Result<_, _>>()
        .map_err(text)?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "no journaled run `{id}` in this database (runs are journaled with `--tracer sqlite` or `--state PATH`); `illumo trace list` shows the runs"
        )),
        _ => Err(format!("`{id}` matches several runs; give more digits")),
    }
}

/// One run's journal.
pub fn load(conn: &Connection, trace_id: &str) -> Result<StoredRun, String> {
    type RunRow = (
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        bool,
    );
    let row: Option<RunRow> = conn
        .query_row(
            "SELECT flow, flow_hash, nodes, ctx, options, forked_from, status, paused_at, message, pid, masked
             FROM runs WHERE trace_id = ?1",
            [trace_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            },
        )
        .optional()
        .map_err(text)?;
    let Some((
        flow,
        flow_hash,
        nodes,
        ctx,
        options,
        forked_from,
        status,
        paused_at,
        message,
        pid,
        masked,
    )) = row
    else {
        return Err(format!("no journaled run `{trace_id}`"));
    };
    let nodes = match json(Some(nodes))? {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut stmt = conn
        .prepare(
            "SELECT seq, step, node, attempt, inline, output, writes, route, error, masked, status, coalesce(digest, '')
             FROM steps WHERE trace_id = ?1 ORDER BY seq",
        )
        .map_err(text)?;
    let mut rows = stmt.query([trace_id]).map_err(text)?;
    let mut steps = Vec::new();
    let mut masked = masked;
    while let Some(r) = rows.next().map_err(text)? {
        let columns = StepColumns {
            output: json(r.get(5).map_err(text)?)?,
            writes: json(r.get(6).map_err(text)?)?,
            route: r
                .get::<_, Option<String>>(7)
                .map_err(text)?
                .map(|t| json(Some(t)))
                .transpose()?,
            error: r
                .get::<_, Option<String>>(8)
                .map_err(text)?
                .map(|t| json(Some(t)))
                .transpose()?,
        };
        masked |= r.get::<_, bool>(9).map_err(text)?;
        let status: String = r.get(10).map_err(text)?;
        steps.push(StepRecord {
            seq: r.get::<_, i64>(0).map_err(text)? as u64,
            step: r.get::<_, i64>(1).map_err(text)? as u64,
            node: r.get(2).map_err(text)?,
            attempt: r.get::<_, i64>(3).map_err(text)? as u32,
            inline: r.get(4).map_err(text)?,
            span_id: None,
            digest: r.get(11).map_err(text)?,
            result: StepResult::from_columns(&status, columns)?,
        });
    }
    Ok(StoredRun {
        trace_id: trace_id.to_string(),
        flow,
        flow_hash,
        nodes,
        ctx: json(Some(ctx))?,
        options: json(Some(options))?,
        forked_from: forked_from.map(|f| json(Some(f))).transpose()?,
        status,
        paused_at,
        message,
        pid,
        masked,
        steps,
    })
}

/// How a run stands: the status it wrote, except that a run still `running` whose
/// process is gone was killed (`interrupted`).
pub fn effective_status(status: &str, pid: Option<i64>) -> &str {
    if status != "running" {
        return status;
    }
    match pid {
        Some(pid) if process_alive(pid) => "running",
        _ => "interrupted",
    }
}

fn process_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i64::from(i32::MAX) {
        return false;
    }
    if pid == i64::from(std::process::id()) {
        return true;
    }
    // A zombie still answers signal 0; `/proc` tells a finished process from a live one.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
