//! Runs a loaded flow on tokio.
//!
//! One driver task owns ctx ([`driver`]). It renders each node's input from ctx (copying
//! only what the input names), spawns the node as a task, and applies the node's output
//! when the task ends; nodes never hold ctx. Each task runs its node's attempts under the
//! node's policy ([`attempt`]); a node may run other nodes through an invoker
//! ([`invoker`]). Branches run concurrently up to `max_parallel`. A join waits for a
//! parent only while that parent can still arrive ([`joins`]), so a branch that a router
//! skipped never leaves a join hanging. Writes are checked against what parallel
//! branches wrote while the node ran ([`writes`]).
//!
//! What every task reads is in [`shared::Shared`]; what changes during the run belongs
//! to the driver alone.

mod attempt;
mod driver;
mod invoker;
mod joins;
mod shapes;
mod shared;
mod writes;

use crate::flow::Flow;
use crate::journal::{Durability, Journal, Replay, RunStatus};
use crate::node::Permissions;
use crate::policy::PolicySpec;
use crate::redact::Redactor;
use crate::tracer::{TraceId, Tracer};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

/// How to run a flow.
pub struct RunOptions {
    /// Layers above the flow policy and below node policies: `--profile`, then `--policy`.
    pub overrides: PolicySpec,
    pub tracer: Arc<dyn Tracer>,
    pub trace_id: TraceId,
    /// Stops the run (Ctrl-C, SIGTERM): running nodes are cancelled and their child
    /// processes killed, then the run fails with [`RunError::Interrupted`].
    pub interrupt: Arc<Interrupt>,
    /// Secrets that must never reach a tracer: by default, the values of secret-looking
    /// environment variables.
    pub redactor: Arc<Redactor>,
    /// What nodes may do beyond computing (write files: `--write`).
    pub permissions: Permissions,
    /// Where finished steps are recorded, so the run can be resumed.
    pub journal: Option<Arc<dyn Journal>>,
    pub durability: Durability,
    /// A resumed run: the steps that finished before, which are applied, not run again.
    pub replay: Option<Replay>,
    /// Start at this node with this input instead of at the flow's `entry` (a fork).
    pub entry: Option<(usize, Value)>,
    /// More attributes for the run's root span (`forked_from`).
    pub attributes: serde_json::Map<String, Value>,
    /// How many characters of long texts traces keep (prompts, replies, the run's ctx).
    pub max_text: usize,
    /// The span the run's root span is a child of (a subflow's node attempt).
    pub root_parent: Option<crate::tracer::SpanId>,
    /// Prices per million tokens (`model`, input, output), longest matching model prefix
    /// first: agent spans get `gen_ai.usage.cost_usd`.
    pub prices: Prices,
}

/// Prices per million tokens: (model prefix, input, output).
pub type Prices = Arc<Vec<(String, f64, f64)>>;

impl RunOptions {
    pub fn new(tracer: Arc<dyn Tracer>) -> RunOptions {
        RunOptions {
            overrides: PolicySpec::default(),
            tracer,
            trace_id: TraceId::random(),
            interrupt: Arc::new(Interrupt::default()),
            redactor: Arc::new(Redactor::from_env([])),
            permissions: Permissions::default(),
            journal: None,
            durability: Durability::default(),
            replay: None,
            entry: None,
            attributes: serde_json::Map::new(),
            max_text: crate::node::DEFAULT_MAX_TEXT,
            root_parent: None,
            prices: Arc::default(),
        }
    }
}

/// A request to stop a run, and why.
#[derive(Default)]
pub struct Interrupt {
    notify: tokio::sync::Notify,
    reason: OnceLock<String>,
}

impl Interrupt {
    /// Stops the run; `reason` names what asked (`SIGINT`, `SIGTERM`, ...).
    pub fn interrupt(&self, reason: &str) {
        let _ = self.reason.set(reason.to_string());
        self.notify.notify_one();
    }

    /// Why the run was asked to stop, if it was.
    fn requested(&self) -> Option<String> {
        self.reason.get().cloned()
    }

    /// Waits until the run is asked to stop; returns why.
    async fn wait(&self) -> String {
        self.notify.notified().await;
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "a stop request".into())
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutput {
    pub ctx: Value,
    pub trace_id: TraceId,
    pub steps: u64,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("node `{node}` failed on attempt {attempt} of {max_attempts}: {reason}")]
    NodeFailed {
        node: String,
        attempt: u32,
        max_attempts: u32,
        reason: String,
        timed_out: bool,
        policy: String,
    },
    #[error("max_steps ({limit}) exceeded{}", cycle_text(.cycle))]
    MaxSteps { limit: u64, cycle: Vec<String> },
    #[error("the run was interrupted by {signal}")]
    Interrupted { signal: String },
    /// A node waits for a person's answer.
    #[error("paused at `{node}`: {message}")]
    Paused { node: String, message: String },
    /// A journal that does not fit the flow it is resumed with.
    #[error("{message}")]
    Replay { message: String },
}

impl RunError {
    /// A short name for the kind of failure, as traces record it.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::NodeFailed { .. } => "node_failed",
            RunError::MaxSteps { .. } => "max_steps",
            RunError::Interrupted { .. } => "interrupted",
            RunError::Paused { .. } => "paused",
            RunError::Replay { .. } => "replay",
        }
    }
}

fn cycle_text(cycle: &[String]) -> String {
    match cycle.len() {
        0 => String::new(),
        1 => format!(" after node `{}`", cycle[0]),
        _ => format!(" in cycle `{}`", cycle.join(" -> ")),
    }
}

/// Interrupts a run when dropped: a subflow whose node was cancelled stops too.
struct StopOnDrop(Arc<Interrupt>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.interrupt("the node running it stopping");
    }
}

/// Runs `flow` as a part of a run: the same trace, tracers, secrets and permissions; its
/// root span under `parent`. Its own policies apply inside it.
async fn run_child(
    parent: &shared::Shared,
    parent_span: crate::tracer::SpanId,
    flow: Arc<Flow>,
    ctx: Value,
) -> Result<Value, RunError> {
    let mut options = RunOptions::new(parent.tracer.clone());
    options.trace_id = parent.trace_id;
    options.redactor = parent.redactor.clone();
    options.permissions = parent.permissions;
    options.max_text = parent.max_text;
    options.root_parent = Some(parent_span);
    options.prices = parent.prices.clone();
    let stop = StopOnDrop(options.interrupt.clone());
    let result = run(flow, ctx, options).await;
    std::mem::forget(stop);
    result.map(|out| out.ctx).map_err(|f| f.error)
}

/// What a journal's steps rebuild, without running anything: ctx, the step count, the
/// nodes waiting to run, and for a fork the ctx and input the chosen node started with.
#[derive(Debug)]
pub struct Replayed {
    pub ctx: Value,
    pub steps: u64,
    /// The nodes that were started but had not finished, or were waiting, in step order.
    pub frontier: Vec<String>,
    /// `stop_at`'s first start: ctx just before it ran, and its input.
    pub at: Option<(Value, Value)>,
}

/// Applies `replay`'s steps to `ctx` as a resume would, running no node. With `stop_at`,
/// stops when that node is first started. An error says where the journal and the flow
/// part ways (the flow changed since the journal was written).
pub async fn replay_only(
    flow: Arc<Flow>,
    ctx: Value,
    replay: Replay,
    entry: Option<(usize, Value)>,
    stop_at: Option<usize>,
) -> Result<Replayed, String> {
    let mut options = RunOptions::new(Arc::new(crate::tracer::Fanout::default()));
    options.replay = Some(replay);
    options.entry = entry;
    let shared = Arc::new(shared::Shared::new(flow, &options));
    let driver = driver::Driver::new(shared, ctx, &options, None).dry(stop_at);
    driver.replay_only().await
}

/// A failed run: the error, ctx as it was, and the trace id.
#[derive(Debug)]
pub struct RunFailure {
    pub error: RunError,
    pub ctx: Value,
    pub trace_id: TraceId,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// Runs `flow` from `ctx` to the end. Call it from inside a tokio runtime; the driver runs
/// as a task of its own so that node tasks are awaited from the runtime's worker threads.
pub async fn run(
    flow: Arc<Flow>,
    ctx: Value,
    options: RunOptions,
) -> Result<RunOutput, RunFailure> {
    let trace_id = options.trace_id;
    let shared = Arc::new(shared::Shared::new(flow, &options));
    let root = shared.flow_span(&ctx);
    if let Some(replay) = &options.replay {
        let answered = replay.answer.as_ref().map(|(node, _)| node.clone());
        shared.event(
            &root,
            "run.resumed",
            crate::tracer::Level::Info,
            serde_json::json!({"steps_replayed": replay.steps.len(), "answered": answered}),
        );
    }
    let journal = options.journal.clone();
    let driver = driver::Driver::new(shared.clone(), ctx, &options, root.clone());
    let result = match tokio::spawn(driver.run()).await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Err((
            RunError::Interrupted {
                signal: "the runtime shutting down".into(),
            },
            Value::Null,
        )),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Some(journal) = &journal {
        let status = match &result {
            Ok(_) => RunStatus::Ok,
            Err((RunError::Interrupted { .. }, _)) => RunStatus::Interrupted,
            Err((RunError::Paused { node, message }, _)) => RunStatus::Paused {
                node: node.clone(),
                message: message.clone(),
            },
            Err(_) => RunStatus::Failed,
        };
        journal.status(trace_id, &status);
        if let Err(e) = journal.commit() {
            shared.event(
                &root,
                "journal.failed",
                crate::tracer::Level::Error,
                serde_json::json!({"error": e}),
            );
        }
    }
    let final_ctx = match &result {
        Ok((ctx, _)) | Err((_, ctx)) => ctx,
    };
    shared.end_flow_span(
        root,
        result.as_ref().map(|_| ()).map_err(|(e, _)| e),
        final_ctx,
    );
    match result {
        Ok((ctx, steps)) => Ok(RunOutput {
            ctx,
            trace_id,
            steps,
        }),
        Err((error, ctx)) => Err(RunFailure {
            error,
            ctx,
            trace_id,
        }),
    }
}
