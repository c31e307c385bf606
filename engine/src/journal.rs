//! The run journal: what a run needs to continue after it stopped. A run records its
//! start (flow, initial ctx, options) and every finished step (node, attempt, output,
//! ctx writes, routing); `illumo resume` replays the steps into the driver, which rebuilds
//! ctx, joins and the frontier without running a finished node again.
//!
//! A step is "finished" when its node's attempts are over and its result was applied:
//! an output, or a failure its policy handled (`continue`, `goto`). A failure that stops
//! the run, a pause, and a step that was running when the process died are not finished:
//! they run again on resume.

use crate::node::{NodeError, Outcome, Route};
use crate::path::CtxPath;
pub use crate::tracer::SpanId;
use crate::tracer::TraceId;
use serde_json::{json, Value};

/// The start of a run (or of a resumed segment of one).
#[derive(Debug, Clone)]
pub struct RunStart {
    pub trace_id: TraceId,
    /// The flow file as given, made absolute.
    pub flow_path: String,
    /// FNV-1a of the flow file's text.
    pub flow_hash: String,
    /// Per node, its id and the digest of its settings ([`crate::flow::FlowNode::digest`]).
    pub nodes: Vec<(String, String)>,
    /// The initial ctx, after `--context` and `--set`.
    pub ctx: Value,
    /// What else the run was started with (profile, policy, `--llm`, `--write`, the
    /// working folder, ...), as the command line records it.
    pub options: Value,
    /// A fork's origin: `{trace_id, node}`.
    pub forked_from: Option<Value>,
}

/// How a run stands, as `illumo trace list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Interrupted,
    Paused { node: String, message: String },
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Paused { .. } => "paused",
        }
    }
}

/// One finished step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The order steps finished in, from 0, over every segment of the run.
    pub seq: u64,
    /// The step's number: the order nodes were started in, from 1 (`max_steps` counts it).
    pub step: u64,
    pub node: String,
    /// The attempt that ended the step.
    pub attempt: u32,
    /// Did the node finish without waiting, before the driver started anything else?
    pub inline: bool,
    /// The span of the attempt that ended the step, when traced.
    pub span_id: Option<crate::tracer::SpanId>,
    /// The node's digest when the step ran ([`crate::flow::FlowNode::digest`]).
    pub digest: String,
    pub result: StepResult,
}

#[derive(Debug, Clone)]
pub enum StepResult {
    Done(Outcome),
    /// A failure the node's policy handled (`continue`, `goto`).
    Failed {
        error: NodeError,
        timed_out: bool,
    },
    /// A failure that stopped the run (or, with `fail_fast: false`, its branch): on
    /// resume it is applied where it happened, and the node runs again.
    Stopped {
        error: NodeError,
        timed_out: bool,
    },
    /// Where a resume went on: the steps that had stopped the run ran again from here.
    Resumed,
}

impl StepResult {
    pub fn status(&self) -> &'static str {
        match self {
            StepResult::Done(_) => "ok",
            StepResult::Failed { .. } => "failed",
            StepResult::Stopped { .. } => "stopped",
            StepResult::Resumed => "resumed",
        }
    }

    /// The output (or failed input), writes, routing and error as JSON, one value per
    /// journal column.
    pub fn into_columns(self) -> StepColumns {
        match self {
            StepResult::Done(outcome) => StepColumns {
                writes: writes_json(outcome.writes),
                output: outcome.output,
                route: outcome.route.as_ref().map(|r| {
                    json!({"targets": r.targets, "confidence": r.confidence, "reason": r.reason, "inputs": r.inputs, "each": r.each})
                }),
                error: None,
            },
            StepResult::Resumed => StepColumns {
                output: Value::Null,
                writes: Value::Array(Vec::new()),
                route: None,
                error: None,
            },
            StepResult::Failed { error, timed_out } | StepResult::Stopped { error, timed_out } => StepColumns {
                output: Value::Null,
                writes: Value::Array(Vec::new()),
                route: None,
                error: Some(json!({
                    "retryable": error.is_retryable(),
                    "message": error.to_string(),
                    "timed_out": timed_out,
                    "writes": writes_json(error.writes().to_vec()),
                    "exception": error.exception(),
                })),
            },
        }
    }

    /// The step back from its journal columns.
    pub fn from_columns(status: &str, columns: StepColumns) -> Result<StepResult, String> {
        if status == "resumed" {
            return Ok(StepResult::Resumed);
        }
        if let Some(error) = columns.error {
            let message = error["message"].as_str().unwrap_or_default().to_string();
            let mut e = if error["retryable"].as_bool() == Some(true) {
                NodeError::retryable(message)
            } else {
                NodeError::fatal(message)
            };
            for (path, value) in parse_writes(&error["writes"])? {
                e = e.with_write(path, value);
            }
            let timed_out = error["timed_out"].as_bool() == Some(true);
            if timed_out {
                e = e.as_timeout();
            }
            if let Some(name) = error["exception"].as_str() {
                e = e.with_exception(name);
            }
            return Ok(match status {
                "stopped" => StepResult::Stopped {
                    error: e,
                    timed_out,
                },
                _ => StepResult::Failed {
                    error: e,
                    timed_out,
                },
            });
        }
        let route = match columns.route {
            None | Some(Value::Null) => None,
            Some(r) => Some(Route {
                targets: serde_json::from_value(r["targets"].clone())
                    .map_err(|e| format!("a journal route: {e}"))?,
                confidence: r["confidence"].as_f64(),
                reason: r["reason"].as_str().map(str::to_string),
                inputs: match &r["inputs"] {
                    Value::Array(list) => list
                        .iter()
                        .map(|v| (!v.is_null()).then(|| v.clone()))
                        .collect(),
                    _ => Vec::new(),
                },
                each: serde_json::from_value(r["each"].clone()).unwrap_or_default(),
            }),
        };
        Ok(StepResult::Done(Outcome {
            output: columns.output,
            route,
            writes: parse_writes(&columns.writes)?,
        }))
    }
}

/// A step's result as the journal's columns hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepColumns {
    pub output: Value,
    pub writes: Value,
    pub route: Option<Value>,
    pub error: Option<Value>,
}

/// Each write as `[path, value]`; a path whose keys its text cannot spell (a Python
/// function's `ctx["a.b"]`, `ctx["c d"]`) also carries its steps: `[path, value, steps]`.
fn writes_json(writes: Vec<(CtxPath, Value)>) -> Value {
    let spelled = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    Value::Array(
        writes
            .into_iter()
            .map(|(path, value)| {
                let mut entry = vec![Value::String(path.as_str().into()), value];
                let plain = path.steps.iter().all(|s| match s {
                    crate::path::Step::Key(k) => spelled(k),
                    crate::path::Step::Index(_) => true,
                });
                if !plain {
                    entry.push(Value::Array(
                        path.steps
                            .iter()
                            .map(|s| match s {
                                crate::path::Step::Key(k) => Value::String(k.clone()),
                                crate::path::Step::Index(i) => Value::from(*i),
                            })
                            .collect(),
                    ));
                }
                Value::Array(entry)
            })
            .collect(),
    )
}

fn parse_writes(value: &Value) -> Result<Vec<(CtxPath, Value)>, String> {
    let Value::Array(list) = value else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|pair| {
            if let Some(Value::Array(steps)) = pair.get(2) {
                let steps = steps
                    .iter()
                    .map(|s| match s {
                        Value::String(k) => Ok(crate::path::Step::Key(k.clone())),
                        other => other
                            .as_u64()
                            .map(|i| crate::path::Step::Index(i as usize))
                            .ok_or_else(|| format!("a journal write's step `{other}`")),
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                return Ok((CtxPath::ctx(steps), pair[1].clone()));
            }
            let path = pair[0].as_str().unwrap_or_default();
            let path =
                CtxPath::parse(path).map_err(|e| format!("a journal write `{path}`: {e}"))?;
            Ok((path, pair[1].clone()))
        })
        .collect()
}

/// Where a run's journal goes. Calls must return quickly: a store queues steps for a
/// worker and writes them in batches; [`Journal::commit`] waits for them.
pub trait Journal: Send + Sync {
    /// Records the start of a run (or of a resumed segment), committed before any node runs.
    fn start(&self, run: &RunStart) -> Result<(), String>;
    /// Queues a finished step.
    fn step(&self, trace_id: TraceId, step: StepRecord);
    /// Drops the steps from `seq` on: a resume with `--force` went another way there.
    fn truncate(&self, _trace_id: TraceId, _seq: u64) {}
    /// Queues the run's status.
    fn status(&self, trace_id: TraceId, status: &RunStatus);
    /// Waits until everything queued is committed.
    fn commit(&self) -> Result<(), String>;
}

/// When a finished step is safe on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Steps are committed in batches (every few milliseconds): a SIGKILL may lose the
    /// last batch, whose steps then run again on resume.
    #[default]
    Batch,
    /// Each step is committed before the next node starts.
    Sync,
}

/// What a resumed run starts from: the journal's steps in the order they finished, and
/// the answer for the node the run paused at.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub steps: Vec<StepRecord>,
    /// The node the run paused at and the person's answer, checked by the node.
    pub answer: Option<(String, Value)>,
    /// Where the journal and the flow part ways (the flow changed), drop the rest of the
    /// journal and run from there instead of refusing (`illumo resume --force`).
    pub force: bool,
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across builds and platforms, unlike std's
/// hasher, so a journal written by one illumo is checked by the next.
pub fn digest(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_survive_their_journal_columns() {
        let outcome = Outcome::routed(
            json!({"a": 1}),
            Route {
                targets: vec!["x".into(), "y".into()],
                confidence: Some(0.5),
                reason: Some("why".into()),
                inputs: vec![None, Some(json!(2))],
                each: vec![
                    (Some(0.5), Some("why".into())),
                    (None, Some("second".into())),
                ],
            },
        )
        .with_write(CtxPath::parse("$ctx.out.v").unwrap(), json!([1]));
        let columns = StepResult::Done(outcome).into_columns();
        let StepResult::Done(back) = StepResult::from_columns("ok", columns.clone()).unwrap()
        else {
            panic!("a done step came back failed")
        };
        assert_eq!(back.output, json!({"a": 1}));
        assert_eq!(back.writes[0].0.as_str(), "$ctx.out.v");
        let route = back.route.unwrap();
        assert_eq!(route.targets, ["x", "y"]);
        assert_eq!(route.inputs, vec![None, Some(json!(2))]);
        assert_eq!(route.reason.as_deref(), Some("why"));
        assert_eq!(route.each[1], (None, Some("second".to_string())));

        let failed = StepResult::Failed {
            error: NodeError::retryable("boom")
                .with_write(CtxPath::parse("$ctx.why").unwrap(), json!("x")),
            timed_out: true,
        };
        let StepResult::Failed { error, timed_out } =
            StepResult::from_columns("failed", failed.into_columns()).unwrap()
        else {
            panic!("a failed step came back done")
        };
        assert!(timed_out && error.is_retryable() && error.is_timeout());
        assert_eq!(error.to_string(), "boom");
        assert_eq!(error.writes()[0].1, json!("x"));
    }

    #[test]
    fn the_digest_is_fnv1a() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(digest(b""), "cbf29ce484222325");
        assert_eq!(digest(b"a"), "af63dc4c8601ec8c");
    }
}
