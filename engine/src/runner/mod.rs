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
}

impl RunOptions {
    pub fn new(tracer: Arc<dyn Tracer>) -> RunOptions {
        RunOptions {
            overrides: PolicySpec::default(),
            tracer,
            trace_id: TraceId::random(),
            interrupt: Arc::new(Interrupt::default()),
            redactor: Arc::new(Redactor::from_env([])),
            permissions: Permissions::default(),
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
}

impl RunError {
    /// A short name for the kind of failure, as traces record it.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::NodeFailed { .. } => "node_failed",
            RunError::MaxSteps { .. } => "max_steps",
            RunError::Interrupted { .. } => "interrupted",
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
    let root = shared.flow_span();
    let driver = driver::Driver::new(shared.clone(), ctx, options.interrupt.clone());
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
    shared.end_flow_span(root, result.as_ref().map(|_| ()).map_err(|(e, _)| e));
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
