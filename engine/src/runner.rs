//! Runs a loaded flow on tokio.
//!
//! One driver task owns ctx. It renders each node's input from ctx (copying only what the
//! input names), spawns the node as a task, and applies the node's output when the task
//! ends; nodes never hold ctx. Branches run concurrently up to `max_parallel`. A join
//! waits for a parent only while that parent can still arrive: it is running, queued, or
//! reachable from something that is (not through the join itself). So a branch that a
//! router skipped never leaves a join hanging.

use crate::flow::{Flow, Outputs};
use crate::node::{Invoker, NodeCx, NodeError, Outcome};
use crate::path::{set_steps, CtxPath, Step};
use crate::policy::{OnError, Policy, PolicySpec};
use crate::tracer::{
    preview, secret_values, EventData, Level, SpanData, SpanId, SpanKind, SpanStatus, TraceId,
    Tracer,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::task::JoinSet;

const PREVIEW_CHARS: usize = 200;

/// How to run a flow.
pub struct RunOptions {
    /// Layers above the flow policy and below node policies: `--profile`, then `--policy`.
    pub overrides: PolicySpec,
    pub tracer: Arc<dyn Tracer>,
    pub trace_id: TraceId,
    /// Notified to stop the run (Ctrl-C): running nodes are cancelled and their child
    /// processes killed, then the run fails with [`RunError::Cancelled`].
    pub cancel: Arc<tokio::sync::Notify>,
    /// Texts that must never reach a tracer, besides secret-looking environment variables.
    pub redact: Vec<String>,
}

impl RunOptions {
    pub fn new(tracer: Arc<dyn Tracer>) -> RunOptions {
        RunOptions {
            overrides: PolicySpec::default(),
            tracer,
            trace_id: TraceId::random(),
            cancel: Arc::new(tokio::sync::Notify::new()),
            redact: Vec::new(),
        }
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
    #[error("the run was cancelled")]
    Cancelled,
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
    let shared = Arc::new(Shared::new(flow, &options));
    let root = shared.flow_span();
    if let Some(span) = &root {
        shared.tracer.span_start(span);
    }
    let driver = Driver::new(shared.clone(), ctx, options.cancel.clone());
    let result = match tokio::spawn(driver.run()).await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Err((RunError::Cancelled, Value::Null)),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Some(mut span) = root {
        span.end_time = Some(SystemTime::now());
        span.status = if result.is_ok() {
            SpanStatus::Ok
        } else {
            SpanStatus::Error
        };
        if let Err((e, _)) = &result {
            span.attributes
                .insert("error".into(), json!({"message": e.to_string()}));
        }
        shared.tracer.span_end_owned(span);
    }
    shared.tracer.flush();
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

/// What every task of one run shares.
struct Shared {
    flow: Arc<Flow>,
    policies: Vec<Policy>,
    tracer: Arc<dyn Tracer>,
    tracing: bool,
    trace_id: TraceId,
    root_id: SpanId,
    secrets: Vec<String>,
    /// Per node, the attributes every attempt span shares.
    span_attributes: Vec<Arc<Map<String, Value>>>,
}

impl Shared {
    fn new(flow: Arc<Flow>, options: &RunOptions) -> Shared {
        let base = flow.policy.overlay(&options.overrides);
        let policies = flow
            .nodes
            .iter()
            .map(|n| base.overlay(&n.policy).resolve())
            .collect::<Vec<Policy>>();
        let tracing = options.tracer.enabled();
        let span_attributes = if tracing {
            flow.nodes
                .iter()
                .zip(&policies)
                .map(|(node, policy)| {
                    let mut attributes = Map::new();
                    attributes.insert(
                        "node".into(),
                        json!({"id": node.id, "type": node.type_name}),
                    );
                    attributes.insert("max_attempts".into(), json!(policy.max_attempts));
                    attributes.insert("policy".into(), policy.to_json());
                    Arc::new(attributes)
                })
                .collect()
        } else {
            Vec::new()
        };
        Shared {
            span_attributes,
            flow,
            policies,
            tracer: options.tracer.clone(),
            tracing,
            trace_id: options.trace_id,
            root_id: SpanId::random(),
            secrets: if tracing {
                let mut secrets = secret_values();
                secrets.extend(options.redact.iter().filter(|r| !r.is_empty()).cloned());
                secrets
            } else {
                Vec::new()
            },
        }
    }

    fn flow_span(&self) -> Option<SpanData> {
        self.tracing.then(|| {
            let mut attributes = Map::new();
            attributes.insert(
                "flow".into(),
                json!({"name": self.flow.name, "nodes": self.flow.nodes.len()}),
            );
            SpanData {
                trace_id: self.trace_id,
                span_id: self.root_id,
                parent_id: None,
                name: format!("flow {}", self.flow.name),
                kind: SpanKind::Flow,
                start_time: SystemTime::now(),
                end_time: None,
                status: SpanStatus::Unset,
                attributes,
                common: Arc::default(),
            }
        })
    }

    fn node_span(
        &self,
        index: usize,
        attempt: u32,
        input: &Value,
        parent: SpanId,
    ) -> Option<SpanData> {
        if !self.tracing {
            return None;
        }
        let node = &self.flow.nodes[index];
        let mut attributes = Map::new();
        attributes.insert("attempt".into(), json!(attempt));
        attributes.insert(
            "input".into(),
            json!({"preview": preview(input, PREVIEW_CHARS, &self.secrets)}),
        );
        let span = SpanData {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(parent),
            name: node.id.clone(),
            kind: SpanKind::Node,
            start_time: SystemTime::now(),
            end_time: None,
            status: SpanStatus::Unset,
            attributes,
            // node, max_attempts and policy never change during a run: built once per node.
            common: self.span_attributes[index].clone(),
        };
        self.tracer.span_start(&span);
        Some(span)
    }

    fn event(&self, span: &Option<SpanData>, name: &str, level: Level, mut attributes: Value) {
        if let Some(span) = span {
            if !self.secrets.is_empty() {
                redact(&mut attributes, &self.secrets);
            }
            let Value::Object(attributes) = attributes else {
                return;
            };
            self.tracer
                .event(span, &EventData::new(name, level, attributes));
        }
    }

    fn end_span(&self, span: Option<SpanData>, result: Result<&Value, (&NodeError, bool)>) {
        let Some(mut span) = span else { return };
        span.end_time = Some(SystemTime::now());
        match result {
            Ok(output) => {
                span.status = SpanStatus::Ok;
                span.attributes.insert(
                    "output".into(),
                    json!({"preview": preview(output, PREVIEW_CHARS, &self.secrets)}),
                );
            }
            Err((error, timed_out)) => {
                span.status = SpanStatus::Error;
                let kind = if timed_out {
                    "timeout"
                } else if error.is_retryable() {
                    "retryable"
                } else {
                    "fatal"
                };
                let message = preview(&Value::String(error.to_string()), 2000, &self.secrets);
                span.attributes
                    .insert("error".into(), json!({"type": kind, "message": message}));
                span.attributes.insert("timeout".into(), json!(timed_out));
            }
        }
        self.tracer.span_end_owned(span);
    }
}

/// Replaces every secret inside the strings of a value by `***`.
fn redact(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(text) => {
            for secret in secrets {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "***");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

/// One node's failure after its last attempt.
struct Failed {
    error: NodeError,
    attempt: u32,
    timed_out: bool,
}

/// Runs every attempt of one node under its policy. The span of the last attempt is
/// returned still open, so the driver can add the routing and write events to it.
async fn attempts(
    shared: &Arc<Shared>,
    index: usize,
    input: &Value,
    view: &Value,
    parent: SpanId,
) -> (Result<Outcome, Failed>, Option<SpanData>) {
    let node = &shared.flow.nodes[index];
    let policy = &shared.policies[index];
    let mut attempt = 1;
    loop {
        let mut open = OpenSpan {
            shared: shared.clone(),
            span: shared.node_span(index, attempt, input, parent),
        };
        let invoker = AttemptInvoker {
            shared,
            span: &open.span,
            extra: Default::default(),
        };
        let cx = NodeCx {
            id: &node.id,
            input,
            ctx: view,
            attempt,
            invoker: &invoker,
        };
        let run = node.node.run(cx);
        let (result, timed_out) = match policy.timeout {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(r) => (r, false),
                Err(_) => {
                    let text = crate::duration::duration_text(limit);
                    shared.event(
                        &open.span,
                        "node.timeout",
                        Level::Warn,
                        json!({"timeout": text, "attempt": attempt}),
                    );
                    (
                        Err(NodeError::retryable(format!("timed out after {text}"))),
                        true,
                    )
                }
            },
            None => (run.await, false),
        };
        let extra = invoker
            .extra
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        if let (Some(span), false) = (open.span.as_mut(), extra.is_empty()) {
            merge(&mut span.attributes, extra);
        }
        let error = match result {
            Ok(outcome) => return (Ok(outcome), open.take()),
            Err(e) => e,
        };
        if error.is_retryable() && attempt < policy.max_attempts {
            // A server's Retry-After stretches the policy's wait (up to five minutes).
            let asked = error
                .wait_hint()
                .unwrap_or_default()
                .min(std::time::Duration::from_secs(300));
            let delay = policy.delay_before(attempt + 1).max(asked);
            shared.event(
                &open.span,
                "node.retry",
                Level::Warn,
                json!({"attempt": attempt, "next_attempt": attempt + 1, "max_attempts": policy.max_attempts, "delay_ms": delay.as_millis() as u64, "error": error.to_string()}),
            );
            shared.end_span(open.take(), Err((&error, timed_out)));
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        return (
            Err(Failed {
                error,
                attempt,
                timed_out,
            }),
            open.take(),
        );
    }
}

/// An attempt's span that ends as cancelled if the attempt is dropped before it finishes
/// (Ctrl-C, a fail_fast stop elsewhere, a panic), so no span is left open.
struct OpenSpan {
    shared: Arc<Shared>,
    span: Option<SpanData>,
}

impl OpenSpan {
    fn take(&mut self) -> Option<SpanData> {
        self.span.take()
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            let cancelled =
                NodeError::fatal("cancelled: the run stopped before this attempt finished");
            self.shared.end_span(Some(span), Err((&cancelled, false)));
        }
    }
}

/// Lets a node run another node (a loop body) and add events to its own span.
struct AttemptInvoker<'a> {
    shared: &'a Arc<Shared>,
    span: &'a Option<SpanData>,
    /// Attributes the node set; merged into its span when the attempt ends.
    extra: std::sync::Mutex<Map<String, Value>>,
}

#[async_trait::async_trait]
impl Invoker for AttemptInvoker<'_> {
    async fn invoke(
        &self,
        node: &str,
        ctx: &Value,
        default_input: &Value,
    ) -> Result<Value, NodeError> {
        let shared = &self.shared;
        let Some(&index) = shared.flow.index.get(node) else {
            return Err(NodeError::fatal(format!(
                "there is no node `{node}` to run"
            )));
        };
        let body = &shared.flow.nodes[index];
        let input = match &body.inputs {
            Some(spec) => spec
                .render(ctx)
                .map_err(|e| NodeError::fatal(format!("node `{node}`: {e}")))?,
            None => default_input.clone(),
        };
        let view = body
            .snapshot_reads
            .as_ref()
            .map_or(Value::Null, |r| r.prune(ctx));
        let parent = self.span.as_ref().map_or(shared.root_id, |s| s.span_id);
        let (result, span) = attempts(shared, index, &input, &view, parent).await;
        match result {
            Ok(outcome) => {
                shared.end_span(span, Ok(&outcome.output));
                Ok(outcome.output)
            }
            Err(failed) if shared.policies[index].on_error == OnError::Continue => {
                // A body that may fail passes its input on, as a node in the flow would.
                shared.event(
                    &span,
                    "node.error",
                    Level::Error,
                    json!({"attempt": failed.attempt, "message": failed.error.to_string(), "timed_out": failed.timed_out, "action": "continue"}),
                );
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                Ok(input)
            }
            Err(failed) => {
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let message = format!(
                    "node `{node}` failed on attempt {}: {}",
                    failed.attempt, failed.error
                );
                Err(match failed.error {
                    NodeError::Retryable {
                        retry_after,
                        writes,
                        ..
                    } => NodeError::Retryable {
                        message,
                        retry_after,
                        writes,
                    },
                    NodeError::Fatal { writes, .. } => NodeError::Fatal { message, writes },
                })
            }
        }
    }

    fn event(&self, name: &str, level: Level, attributes: Map<String, Value>) {
        self.shared
            .event(self.span, name, level, Value::Object(attributes));
    }

    fn set_attribute(&self, key: &str, value: Value) {
        let mut one = Map::new();
        one.insert(key.to_string(), value);
        merge(
            &mut self.extra.lock().unwrap_or_else(|e| e.into_inner()),
            one,
        );
    }

    fn streaming(&self) -> bool {
        self.shared.tracing && self.span.is_some() && self.shared.tracer.streams()
    }

    fn stream(&self, text: &str) {
        if let Some(span) = self.span {
            self.shared.tracer.stream(span, text);
        }
    }
}

/// Merges `from` into `into`; maps merge key by key, anything else replaces.
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// A node waiting to be started, with its input.
struct Activation {
    node: usize,
    input: Value,
}

/// A node task's result.
struct Done {
    node: usize,
    /// The driver's clock when the node was started.
    started: u64,
    input: Value,
    result: Result<Outcome, Failed>,
    span: Option<SpanData>,
}

type DriverResult = Result<(Value, u64), (RunError, Value)>;

struct Driver {
    shared: Arc<Shared>,
    ctx: Value,
    ready: VecDeque<Activation>,
    tasks: JoinSet<Done>,
    task_nodes: HashMap<tokio::task::Id, (usize, Value)>,
    running: Vec<u32>,
    /// Joins with at least one arrival: join -> (parent -> output), in arrival order.
    waiting: BTreeMap<usize, Vec<(usize, Value)>>,
    steps: u64,
    history: VecDeque<usize>,
    /// The first failure of a run that is not fail_fast.
    failure: Option<RunError>,
    /// Counts dispatches and completions, to tell which writes happened while a node ran.
    clock: u64,
    /// The last write to each output path: (node, clock).
    writes: HashMap<String, (usize, u64)>,
    cancel: Arc<tokio::sync::Notify>,
}

impl Driver {
    fn new(shared: Arc<Shared>, ctx: Value, cancel: Arc<tokio::sync::Notify>) -> Driver {
        let count = shared.flow.nodes.len();
        let ctx = if ctx.is_object() {
            ctx
        } else {
            Value::Object(Map::new())
        };
        let ready = shared
            .flow
            .entry
            .iter()
            .map(|&node| Activation {
                node,
                input: Value::Null,
            })
            .collect();
        Driver {
            shared,
            ctx,
            ready,
            tasks: JoinSet::new(),
            task_nodes: HashMap::new(),
            running: vec![0; count],
            waiting: BTreeMap::new(),
            steps: 0,
            history: VecDeque::new(),
            failure: None,
            clock: 0,
            writes: HashMap::new(),
            cancel,
        }
    }

    async fn run(mut self) -> DriverResult {
        match self.drive().await {
            Ok(()) => match self.failure.take() {
                None => Ok((self.ctx, self.steps)),
                Some(e) => Err((e, self.ctx)),
            },
            Err(e) => {
                self.tasks.abort_all();
                while self.tasks.join_next().await.is_some() {}
                Err((e, self.ctx))
            }
        }
    }

    async fn drive(&mut self) -> Result<(), RunError> {
        let max_parallel = self.shared.flow.max_parallel;
        loop {
            while self.tasks.len() < max_parallel {
                let Some(activation) = self.ready.pop_front() else {
                    break;
                };
                self.dispatch(activation)?;
            }
            if self.tasks.is_empty() {
                if !self.ready.is_empty() {
                    continue;
                }
                // Nothing runs: release the joins whose missing parents no other waiting join
                // leads to; if they all wait on each other, release the first.
                if self.release_joins() {
                    continue;
                }
                match self.waiting.keys().next().copied() {
                    Some(join) => {
                        self.fire_join(join);
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let joined = tokio::select! {
                joined = self.tasks.join_next_with_id() => joined,
                () = self.cancel.notified() => return Err(RunError::Cancelled),
            };
            let Some(joined) = joined else { continue };
            let done = match joined {
                Ok((id, done)) => {
                    self.task_nodes.remove(&id);
                    done
                }
                Err(e) => {
                    let (node, input) = self.task_nodes.remove(&e.id()).unwrap_or((0, Value::Null));
                    let message = if e.is_panic() {
                        let panic = e.into_panic();
                        let text = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        format!("the node panicked: {text}")
                    } else {
                        "the node task was cancelled".to_string()
                    };
                    Done {
                        node,
                        started: self.clock,
                        input,
                        result: Err(Failed {
                            error: NodeError::fatal(message),
                            attempt: 1,
                            timed_out: false,
                        }),
                        span: None,
                    }
                }
            };
            self.running[done.node] -= 1;
            self.finish(done)?;
            self.release_joins();
        }
    }

    fn dispatch(&mut self, activation: Activation) -> Result<(), RunError> {
        let Activation { node: index, input } = activation;
        self.steps += 1;
        self.history.push_back(index);
        if self.history.len() > 256 {
            self.history.pop_front();
        }
        let flow = &self.shared.flow;
        if self.steps > flow.max_steps {
            return Err(RunError::MaxSteps {
                limit: flow.max_steps,
                cycle: self.recent_cycle(),
            });
        }
        let node = &flow.nodes[index];
        let input = match &node.inputs {
            None => input,
            Some(spec) => match spec.render(&self.ctx) {
                Ok(v) => v,
                Err(e) => {
                    let failed = Failed {
                        error: NodeError::fatal(e.to_string()),
                        attempt: 1,
                        timed_out: false,
                    };
                    return self.fail(index, input, failed, None);
                }
            },
        };
        let view = node
            .snapshot_reads
            .as_ref()
            .map_or(Value::Null, |r| r.prune(&self.ctx));
        let shared = self.shared.clone();
        self.running[index] += 1;
        let task_input = if matches!(self.shared.policies[index].on_error, OnError::Stop) {
            Value::Null
        } else {
            input.clone()
        };
        self.clock += 1;
        let started = self.clock;
        let handle = self.tasks.spawn(async move {
            let (result, span) = attempts(&shared, index, &input, &view, shared.root_id).await;
            Done {
                node: index,
                started,
                input,
                result,
                span,
            }
        });
        self.task_nodes.insert(handle.id(), (index, task_input));
        Ok(())
    }

    fn finish(&mut self, done: Done) -> Result<(), RunError> {
        self.clock += 1;
        match done.result {
            Ok(outcome) => match self.apply(done.node, done.started, &outcome, &done.span) {
                Ok(next) => {
                    let flow = self.shared.flow.clone();
                    self.push_step(flow.id(done.node), "ok");
                    let mut span = done.span;
                    if let (Some(span), Some(route)) = (span.as_mut(), &outcome.route) {
                        span.attributes.insert(
                            "routing".into(),
                            json!({"targets": route.targets, "confidence": route.confidence, "reason": route.reason}),
                        );
                    }
                    self.shared.end_span(span, Ok(&outcome.output));
                    for to in next {
                        self.arrive(to, done.node, outcome.output.clone());
                    }
                    Ok(())
                }
                Err(error) => {
                    let failed = Failed {
                        error,
                        attempt: 1,
                        timed_out: false,
                    };
                    self.fail(done.node, done.input, failed, done.span)
                }
            },
            Err(failed) => self.fail(done.node, done.input, failed, done.span),
        }
    }

    /// Writes a node's output into ctx and returns the nodes to go to next.
    fn apply(
        &mut self,
        index: usize,
        started: u64,
        outcome: &Outcome,
        span: &Option<SpanData>,
    ) -> Result<Vec<usize>, NodeError> {
        let flow = self.shared.flow.clone();
        let node = &flow.nodes[index];
        let output = &outcome.output;
        if let Some(outputs) = &node.outputs {
            match outputs {
                Outputs::Path(path) => self.write(index, started, path, output.clone(), span)?,
                Outputs::Fields(fields) => {
                    for (field, path) in fields {
                        let Some(value) = output.get(field) else {
                            return Err(NodeError::fatal(format!(
                                "the output has no field `{field}` for `{path}`; it is {}",
                                preview(output, 120, &[])
                            )));
                        };
                        self.write(index, started, path, value.clone(), span)?;
                    }
                }
            }
        }
        for (path, value) in &outcome.writes {
            self.write(index, started, path, value.clone(), span)?;
        }
        self.record("payloads", &node.id, output.clone());
        if let Some(route) = &outcome.route {
            let target = match route.targets.as_slice() {
                [] => Value::Null,
                [one] => json!(one),
                many => json!(many),
            };
            self.record(
                "routing",
                &node.id,
                json!({"target": target, "confidence": route.confidence, "reason": route.reason}),
            );
            let (name, level) = if route.targets.is_empty() {
                ("routing.empty", Level::Warn)
            } else {
                ("routing.decision", Level::Info)
            };
            self.shared.event(span, name, level, json!({"targets": route.targets, "confidence": route.confidence, "reason": route.reason}));
            return route
                .targets
                .iter()
                .map(|t| {
                    flow.index
                        .get(t)
                        .copied()
                        .ok_or_else(|| NodeError::fatal(format!("routed to unknown node `{t}`")))
                })
                .collect();
        }
        let mut next = Vec::with_capacity(flow.edges[index].len());
        for edge in &flow.edges[index] {
            let take = match &edge.when {
                None => true,
                Some(c) => c
                    .eval(&self.ctx, output)
                    .map_err(|e| NodeError::fatal(e.to_string()))?,
            };
            if take {
                next.push(edge.to);
            }
        }
        Ok(next)
    }

    /// Writes an output. A write to a path that a parallel node wrote while this one ran
    /// is an error: which value won would depend on timing.
    fn write(
        &mut self,
        node: usize,
        started: u64,
        path: &CtxPath,
        value: Value,
        span: &Option<SpanData>,
    ) -> Result<(), NodeError> {
        let flow = &self.shared.flow;
        for (other_path, &(other, when)) in &self.writes {
            if when > started && other != node && flow.may_run_in_parallel(node, other) {
                let other_path = CtxPath::parse(other_path).ok();
                if other_path.is_some_and(|p| p.overlaps(path)) {
                    return Err(NodeError::fatal(format!(
                        "nodes `{}` and `{}` wrote `{path}` while running in parallel; give each branch its own path",
                        flow.id(other),
                        flow.id(node)
                    )));
                }
            }
        }
        self.writes
            .insert(path.as_str().to_string(), (node, self.clock));
        set_steps(&mut self.ctx, &path.steps, value)
            .map_err(|e| NodeError::fatal(e.to_string()))?;
        self.shared.event(
            span,
            "ctx.write",
            Level::Info,
            json!({"path": path.as_str()}),
        );
        Ok(())
    }

    /// Sets `ctx.<area>.<key>`, replacing a non-map `area`.
    fn record(&mut self, area: &str, key: &str, value: Value) {
        let steps = [Step::Key(area.to_string()), Step::Key(key.to_string())];
        if set_steps(&mut self.ctx, &steps, value.clone()).is_err() {
            self.ctx[area] = json!({ key: value });
        }
    }

    fn push_step(&mut self, node: &str, status: &str) {
        let entry = json!({"node": node, "status": status});
        match self.ctx.get_mut("steps") {
            Some(Value::Array(list)) => list.push(entry),
            _ => self.ctx["steps"] = json!([entry]),
        }
    }

    fn fail(
        &mut self,
        index: usize,
        input: Value,
        failed: Failed,
        span: Option<SpanData>,
    ) -> Result<(), RunError> {
        let shared = self.shared.clone();
        let node = &shared.flow.nodes[index];
        let policy = &shared.policies[index];
        let action = match &policy.on_error {
            OnError::Stop => "stop".to_string(),
            OnError::Continue => "continue".to_string(),
            OnError::Goto(t) => format!("goto {t}"),
        };
        let record = json!({
            "node": node.id, "attempt": failed.attempt, "message": failed.error.to_string(),
            "timed_out": failed.timed_out, "action": action,
        });
        match self.ctx.get_mut("errors") {
            Some(Value::Array(list)) => list.push(record),
            _ => self.ctx["errors"] = json!([record]),
        }
        self.push_step(&node.id, "error");
        for (path, value) in failed.error.writes() {
            // What the node left to explain its failure; a write that cannot be made is
            // only a warning on the span, the failure itself is what matters.
            if let Err(e) = set_steps(&mut self.ctx, &path.steps, value.clone()) {
                shared.event(
                    &span,
                    "ctx.write_failed",
                    Level::Warn,
                    json!({"path": path.as_str(), "error": e.to_string()}),
                );
            } else {
                shared.event(
                    &span,
                    "ctx.write",
                    Level::Info,
                    json!({"path": path.as_str()}),
                );
            }
        }
        shared.event(
            &span,
            "node.error",
            Level::Error,
            json!({"attempt": failed.attempt, "message": failed.error.to_string(), "timed_out": failed.timed_out, "action": action}),
        );
        match &policy.on_error {
            OnError::Continue => {
                let outcome = Outcome::value(input);
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let next = self
                    .apply(index, self.clock, &outcome, &None)
                    .map_err(|e| self.node_failed(index, 1, &e, false))?;
                for to in next {
                    self.arrive(to, index, outcome.output.clone());
                }
                Ok(())
            }
            OnError::Goto(target) => {
                shared.event(&span, "node.goto", Level::Warn, json!({"target": target}));
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let to = shared.flow.index[target];
                self.ready.push_back(Activation { node: to, input });
                Ok(())
            }
            OnError::Stop => {
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let error =
                    self.node_failed(index, failed.attempt, &failed.error, failed.timed_out);
                if policy.fail_fast {
                    return Err(error);
                }
                self.failure.get_or_insert(error);
                Ok(())
            }
        }
    }

    fn node_failed(
        &self,
        index: usize,
        attempt: u32,
        error: &NodeError,
        timed_out: bool,
    ) -> RunError {
        let policy = &self.shared.policies[index];
        RunError::NodeFailed {
            node: self.shared.flow.id(index).to_string(),
            attempt,
            max_attempts: policy.max_attempts,
            reason: error.to_string(),
            timed_out,
            policy: policy.summary(),
        }
    }

    fn arrive(&mut self, to: usize, from: usize, value: Value) {
        let is_join_parent = self.shared.flow.joins[to]
            .as_ref()
            .is_some_and(|parents| parents.contains(&from));
        if is_join_parent {
            let arrivals = self.waiting.entry(to).or_default();
            arrivals.retain(|(p, _)| *p != from);
            arrivals.push((from, value));
        } else {
            self.ready.push_back(Activation {
                node: to,
                input: value,
            });
        }
    }

    /// Fires every waiting join whose missing parents can no longer arrive; says whether
    /// any did.
    fn release_joins(&mut self) -> bool {
        let flow = self.shared.flow.clone();
        let ready_joins: Vec<usize> = self
            .waiting
            .iter()
            .filter(|(join, arrivals)| {
                let parents = flow.joins[**join].as_deref().unwrap_or(&[]);
                parents
                    .iter()
                    .all(|p| arrivals.iter().any(|(a, _)| a == p) || !self.can_arrive(*p, **join))
            })
            .map(|(join, _)| *join)
            .collect();
        let any = !ready_joins.is_empty();
        for join in ready_joins {
            self.fire_join(join);
        }
        any
    }

    fn fire_join(&mut self, join: usize) {
        let arrivals = self.waiting.remove(&join).unwrap_or_default();
        let flow = self.shared.flow.clone();
        let mut by_parent = Map::new();
        for (parent, value) in arrivals {
            by_parent.insert(flow.id(parent).to_string(), value);
        }
        let input = Value::Object(by_parent);
        self.record("joins", flow.id(join), input.clone());
        self.ready.push_back(Activation { node: join, input });
    }

    /// Can `parent` still run: is it running or queued, or reachable from something that
    /// is, without passing through `join`?
    fn can_arrive(&self, parent: usize, join: usize) -> bool {
        if self.running[parent] > 0 || self.ready.iter().any(|a| a.node == parent) {
            return true;
        }
        let flow = &self.shared.flow;
        let mut seen = vec![false; flow.nodes.len()];
        let mut stack: Vec<usize> = (0..flow.nodes.len())
            .filter(|&i| self.running[i] > 0)
            .collect();
        stack.extend(self.ready.iter().map(|a| a.node));
        stack.extend(self.waiting.keys().copied().filter(|&j| j != join));
        while let Some(x) = stack.pop() {
            if x == parent {
                return true;
            }
            if x == join || std::mem::replace(&mut seen[x], true) {
                continue;
            }
            stack.extend(flow.transitions[x].iter().copied());
        }
        false
    }

    /// The loop the last steps went round, e.g. `review -> draft -> review`.
    fn recent_cycle(&self) -> Vec<String> {
        let flow = &self.shared.flow;
        let history: Vec<usize> = self.history.iter().copied().collect();
        let Some(&last) = history.last() else {
            return vec![];
        };
        let previous = history[..history.len() - 1]
            .iter()
            .rposition(|&n| n == last);
        match previous {
            Some(start) => history[start..]
                .iter()
                .map(|&i| flow.id(i).to_string())
                .collect(),
            None => vec![flow.id(last).to_string()],
        }
    }
}
