//! The driver: one task that owns ctx and the run's state, starts nodes as tasks (up to
//! `max_parallel`), applies what they return, follows edges and releases joins.

use super::attempt::{attempts, Failed};
use super::joins::Joins;
use super::shapes::{self, Step};
use super::shared::Shared;
use super::writes::WriteLog;
use super::{Interrupt, RunError};
use crate::dialect::Dialect;
use crate::flow::Outputs;
use crate::node::{NodeError, Outcome};
use crate::path::{set_steps, CtxPath};
use crate::policy::OnError;
use crate::tracer::{Level, SpanData};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use tokio::task::JoinSet;

/// How many nodes run one after another without the driver yielding to the runtime.
const YIELD_EVERY: u64 = 256;

/// How many recent steps are kept to name the cycle when `max_steps` is exceeded.
const HISTORY: usize = 256;

/// A node waiting to be started, with its input.
struct Activation {
    node: usize,
    input: Value,
    /// The run's clock when the node became ready: writes made after it count as made
    /// while it ran, whether it then ran inline or as a task.
    queued_at: u64,
}

/// A node task's result.
struct Done {
    node: usize,
    /// The run's clock when the node became ready.
    started: u64,
    input: Value,
    result: Result<Outcome, Failed>,
    span: Option<SpanData>,
}

pub(super) type DriverResult = Result<(Value, u64), (RunError, Value)>;

/// What the run has done so far.
struct RunState {
    ctx: Value,
    steps: u64,
    history: VecDeque<usize>,
    /// The first failure of a run that is not fail_fast.
    failure: Option<RunError>,
    /// Counts dispatches and completions, to tell which writes happened while a node ran.
    clock: u64,
    writes: WriteLog,
}

/// What is waiting and what is running.
struct Scheduler {
    ready: VecDeque<Activation>,
    /// Per node, activations in `ready`.
    queued: Vec<u32>,
    /// Per node, tasks running.
    running: Vec<u32>,
    tasks: JoinSet<Done>,
    /// Per task, its node and input (to report a panic).
    task_nodes: HashMap<tokio::task::Id, (usize, Value)>,
}

impl Scheduler {
    fn push(&mut self, node: usize, input: Value, clock: u64) {
        self.queued[node] += 1;
        self.ready.push_back(Activation {
            node,
            input,
            queued_at: clock,
        });
    }

    fn pop(&mut self) -> Option<Activation> {
        let a = self.ready.pop_front()?;
        self.queued[a.node] -= 1;
        Some(a)
    }

    fn is_live(&self, node: usize) -> bool {
        self.running[node] > 0 || self.queued[node] > 0
    }
}

pub(super) struct Driver {
    shared: Arc<Shared>,
    /// Nodes dispatched, to yield now and then.
    inline: u64,
    interrupt: Arc<Interrupt>,
    state: RunState,
    sched: Scheduler,
    joins: Joins,
}

impl Driver {
    pub fn new(shared: Arc<Shared>, ctx: Value, interrupt: Arc<Interrupt>) -> Driver {
        let count = shared.flow.nodes.len();
        let mut ctx = if ctx.is_object() {
            ctx
        } else {
            Value::Object(Map::new())
        };
        let illumo_flow = shared.flow.dialect == Dialect::IllumoFlow;
        if illumo_flow {
            shapes::illumo_flow_start(&mut ctx, &shared.flow);
        }
        let mut sched = Scheduler {
            ready: VecDeque::new(),
            queued: vec![0; count],
            running: vec![0; count],
            tasks: JoinSet::new(),
            task_nodes: HashMap::new(),
        };
        for &node in &shared.flow.entry {
            // illumo-flow feeds its entry from `ctx.payloads.<entry>`.
            let input = match illumo_flow {
                true => ctx["payloads"][shared.flow.id(node)].clone(),
                false => Value::Null,
            };
            sched.push(node, input, 0);
        }
        Driver {
            shared,
            inline: 0,
            interrupt,
            state: RunState {
                ctx,
                steps: 0,
                history: VecDeque::new(),
                failure: None,
                clock: 0,
                writes: WriteLog::new(),
            },
            sched,
            joins: Joins::default(),
        }
    }

    pub async fn run(mut self) -> DriverResult {
        match self.drive().await {
            Ok(()) => match self.state.failure.take() {
                None => Ok((self.state.ctx, self.state.steps)),
                Some(e) => Err((e, self.state.ctx)),
            },
            Err(e) => {
                self.sched.tasks.abort_all();
                while self.sched.tasks.join_next().await.is_some() {}
                Err((e, self.state.ctx))
            }
        }
    }

    async fn drive(&mut self) -> Result<(), RunError> {
        let max_parallel = self.shared.flow.max_parallel;
        loop {
            while self.sched.tasks.len() < max_parallel {
                let Some(activation) = self.sched.pop() else {
                    break;
                };
                if let Some(done) = self.dispatch(activation).await? {
                    self.complete(done)?;
                }
                self.inline += 1;
                if self.inline.is_multiple_of(YIELD_EVERY) {
                    // Nodes that finish at once never wait: let other tasks (and an
                    // interrupt) have their turn now and then.
                    tokio::task::yield_now().await;
                    if let Some(signal) = self.interrupt.requested() {
                        return Err(RunError::Interrupted { signal });
                    }
                }
            }
            if self.sched.tasks.is_empty() {
                if !self.sched.ready.is_empty() {
                    continue;
                }
                // Nothing runs: release the joins whose missing parents no other waiting join
                // leads to; if they all wait on each other, release the first.
                if self.release_joins() {
                    continue;
                }
                match self.joins.fire_first(&self.shared.flow) {
                    Some((join, input)) => {
                        self.start_join(join, input);
                        continue;
                    }
                    None => return Ok(()),
                }
            }
            let joined = tokio::select! {
                joined = self.sched.tasks.join_next_with_id() => joined,
                signal = self.interrupt.wait() => return Err(RunError::Interrupted { signal }),
            };
            let Some(joined) = joined else { continue };
            let done = match joined {
                Ok((id, done)) => {
                    self.sched.task_nodes.remove(&id);
                    done
                }
                Err(e) => self.crashed(e),
            };
            self.complete(done)?;
        }
    }

    /// A node's attempts are over: apply the result, then release the joins it freed.
    fn complete(&mut self, done: Done) -> Result<(), RunError> {
        self.sched.running[done.node] -= 1;
        self.finish(done)?;
        if !self.joins.is_empty() {
            self.release_joins();
        }
        Ok(())
    }

    /// A node task that panicked or was cancelled, as a failure of that node.
    fn crashed(&mut self, e: tokio::task::JoinError) -> Done {
        let (node, input) = self
            .sched
            .task_nodes
            .remove(&e.id())
            .unwrap_or((0, Value::Null));
        let message = if e.is_panic() {
            panic_text(&*e.into_panic())
        } else {
            "the node task was cancelled".to_string()
        };
        Done {
            node,
            started: self.state.clock,
            input,
            result: Err(Failed::fatal(message)),
            span: None,
        }
    }

    /// Starts a node; its result when it finished at once.
    async fn dispatch(&mut self, activation: Activation) -> Result<Option<Done>, RunError> {
        let Activation {
            node: index,
            input,
            queued_at: started,
        } = activation;
        if self.shared.flow.dialect == Dialect::IllumoFlow {
            self.push_step(index, Step::Start);
        }
        let state = &mut self.state;
        state.steps += 1;
        state.history.push_back(index);
        if state.history.len() > HISTORY {
            state.history.pop_front();
        }
        let flow = &self.shared.flow;
        if state.steps > flow.max_steps {
            return Err(RunError::MaxSteps {
                limit: flow.max_steps,
                cycle: self.recent_cycle(),
            });
        }
        let node = &flow.nodes[index];
        let input = match &node.inputs {
            None => input,
            Some(spec) => match spec.render(&state.ctx) {
                Ok(v) => v,
                Err(e) => {
                    return self
                        .fail(index, input, Failed::fatal(e.to_string()), None)
                        .map(|()| None)
                }
            },
        };
        let view = node
            .snapshot_reads
            .as_ref()
            .map_or(Value::Null, |r| r.prune(&state.ctx));
        let shared = self.shared.clone();
        self.sched.running[index] += 1;
        // The input is kept to pass on only where a failure passes it on.
        let kept_input = if matches!(shared.policies[index].on_error, OnError::Stop) {
            Value::Null
        } else {
            input.clone()
        };
        state.clock += 1;
        let mut task = Box::pin(async move {
            let (result, span) = attempts(&shared, index, &input, &view, shared.root_id).await;
            Done {
                node: index,
                started,
                input,
                result,
                span,
            }
        });
        // Most nodes (Set, Router, conditions) finish without waiting: polled once here,
        // they cost no task and no wake-up of another thread. A node that waits goes on
        // as a task of its own.
        let first = std::future::poll_fn(|cx| {
            Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
                task.as_mut().poll(cx)
            })))
        })
        .await;
        match first {
            Ok(Poll::Ready(done)) => Ok(Some(done)),
            Ok(Poll::Pending) => {
                let handle = self.sched.tasks.spawn(task);
                self.sched
                    .task_nodes
                    .insert(handle.id(), (index, kept_input));
                Ok(None)
            }
            Err(panic) => Ok(Some(Done {
                node: index,
                started,
                input: kept_input,
                result: Err(Failed::fatal(panic_text(&*panic))),
                span: None,
            })),
        }
    }

    fn finish(&mut self, done: Done) -> Result<(), RunError> {
        self.state.clock += 1;
        let mut outcome = match done.result {
            Ok(outcome) => outcome,
            Err(failed) => return self.fail(done.node, done.input, failed, done.span),
        };
        // illumo-flow: a node that outputs nothing passes its input on.
        if self.shared.flow.dialect == Dialect::IllumoFlow && outcome.output.is_null() {
            outcome.output = done.input.clone();
        }
        match self.apply(done.node, done.started, &outcome, &done.span) {
            Ok(next) => {
                self.push_step(done.node, Step::Ok);
                let mut span = done.span;
                if let (Some(span), Some(route)) = (span.as_mut(), &outcome.route) {
                    span.attributes.insert(
                        "routing".into(),
                        json!({"targets": route.targets, "confidence": route.confidence, "reason": route.reason}),
                    );
                }
                self.shared.end_span(span, Ok(&outcome.output));
                let inputs = outcome.route.map(|r| r.inputs).unwrap_or_default();
                self.follow(done.node, next, outcome.output, inputs);
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
        }
    }

    /// Sends `output` along to each next node (or into its join); `inputs` replaces it
    /// for the targets a route gave their own input.
    fn follow(&mut self, from: usize, next: Vec<usize>, output: Value, inputs: Vec<Option<Value>>) {
        let mut output = Some(output);
        let mut inputs = inputs.into_iter();
        let count = next.len();
        for (i, to) in next.into_iter().enumerate() {
            let value = match inputs.next().flatten() {
                Some(own) => own,
                None if i + 1 == count => output.take().unwrap_or_default(),
                None => output.clone().unwrap_or_default(),
            };
            if let Some(value) = self.joins.arrive(&self.shared.flow, to, from, value) {
                self.sched.push(to, value, self.state.clock);
            }
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
        match &node.outputs {
            None => {}
            Some(Outputs::Path(path)) => self.write(index, started, path, output.clone(), span)?,
            Some(Outputs::Fields(fields)) => {
                for (field, path) in fields {
                    let Some(value) = output.get(field) else {
                        return Err(NodeError::fatal(format!(
                            "the output has no field `{field}` for `{path}`; it is {}",
                            self.shared.redactor.preview(output, 120)
                        )));
                    };
                    self.write(index, started, path, value.clone(), span)?;
                }
            }
        }
        for (path, value) in &outcome.writes {
            self.write(index, started, path, value.clone(), span)?;
        }
        if flow.keep_payload[index] {
            self.record("payloads", &node.id, output.clone());
        }
        let Some(route) = &outcome.route else {
            let mut next = Vec::with_capacity(flow.edges[index].len());
            for edge in &flow.edges[index] {
                let take = match &edge.when {
                    None => true,
                    Some(c) => c
                        .eval(&self.state.ctx, output)
                        .map_err(|e| NodeError::fatal(e.to_string()))?,
                };
                if take {
                    next.push(edge.to);
                }
            }
            return Ok(next);
        };
        self.record("routing", &node.id, shapes::routing(flow.dialect, route));
        let (name, level) = if route.targets.is_empty() {
            ("routing.empty", Level::Warn)
        } else {
            ("routing.decision", Level::Info)
        };
        self.shared.event(
            span,
            name,
            level,
            json!({"targets": route.targets, "confidence": route.confidence, "reason": route.reason}),
        );
        route
            .targets
            .iter()
            .map(|t| {
                flow.index
                    .get(t)
                    .copied()
                    .ok_or_else(|| NodeError::fatal(format!("routed to unknown node `{t}`")))
            })
            .collect()
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
        let state = &mut self.state;
        if let Some(other) = state
            .writes
            .conflict(&path.steps, node, started, &flow.graph)
        {
            return Err(NodeError::fatal(format!(
                "nodes `{}` and `{}` wrote `{path}` while running in parallel; give each branch its own path",
                flow.id(other),
                flow.id(node)
            )));
        }
        state.writes.record(&path.steps, node, state.clock);
        set_steps(&mut state.ctx, &path.steps, value)
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
        let ctx = &mut self.state.ctx;
        if !ctx.get(area).is_some_and(Value::is_object) {
            ctx[area] = Value::Object(Map::new());
        }
        ctx[area][key] = value;
    }

    fn push_step(&mut self, node: usize, step: Step<'_>) {
        let flow = &self.shared.flow;
        if let Some(entry) = shapes::step(flow.dialect, flow.id(node), step) {
            match self.state.ctx.get_mut("steps") {
                Some(Value::Array(list)) => list.push(entry),
                _ => self.state.ctx["steps"] = json!([entry]),
            }
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
        // A goto to the failing node itself would loop until max_steps: it stops instead.
        let on_error = match &policy.on_error {
            OnError::Goto(t) if shared.flow.index.get(t) == Some(&index) => OnError::Stop,
            other => other.clone(),
        };
        let action = match &on_error {
            OnError::Stop => "stop".to_string(),
            OnError::Continue => "continue".to_string(),
            OnError::Goto(t) => format!("goto {t}"),
        };
        let message = failed.error.to_string();
        shapes::record_error(
            shared.flow.dialect,
            &mut self.state.ctx,
            &node.id,
            &failed,
            &message,
            &action,
        );
        self.push_step(index, Step::Error(&message));
        for (path, value) in failed.error.writes() {
            // What the node left to explain its failure; a write that cannot be made is
            // only a warning on the span, the failure itself is what matters.
            match set_steps(&mut self.state.ctx, &path.steps, value.clone()) {
                Err(e) => shared.event(
                    &span,
                    "ctx.write_failed",
                    Level::Warn,
                    json!({"path": path.as_str(), "error": e.to_string()}),
                ),
                Ok(()) => shared.event(
                    &span,
                    "ctx.write",
                    Level::Info,
                    json!({"path": path.as_str()}),
                ),
            }
        }
        shared.event(
            &span,
            "node.error",
            Level::Error,
            json!({"attempt": failed.attempt, "message": failed.error.to_string(), "timed_out": failed.timed_out, "action": action}),
        );
        match on_error {
            OnError::Continue => {
                self.push_step(index, Step::Continue);
                let outcome = Outcome::value(input);
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let next = self
                    .apply(index, self.state.clock, &outcome, &None)
                    .map_err(|e| self.node_failed(index, 1, &e, false))?;
                self.follow(index, next, outcome.output, Vec::new());
                Ok(())
            }
            OnError::Goto(target) => {
                self.push_step(index, Step::Goto(&target));
                shared.event(&span, "node.goto", Level::Warn, json!({"target": target}));
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let to = shared.flow.index[&target];
                self.sched.push(to, input, self.state.clock);
                Ok(())
            }
            OnError::Stop => {
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let error =
                    self.node_failed(index, failed.attempt, &failed.error, failed.timed_out);
                if policy.fail_fast {
                    return Err(error);
                }
                self.state.failure.get_or_insert(error);
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

    /// Fires every waiting join whose missing parents can no longer arrive; says whether
    /// any did.
    fn release_joins(&mut self) -> bool {
        let sched = &self.sched;
        let released = self
            .joins
            .release(&self.shared.flow, &|node| sched.is_live(node));
        let any = !released.is_empty();
        for (join, input) in released {
            self.start_join(join, input);
        }
        any
    }

    fn start_join(&mut self, join: usize, input: Value) {
        let id = self.shared.flow.id(join).to_string();
        self.record("joins", &id, input.clone());
        self.sched.push(join, input, self.state.clock);
    }

    /// The loop the last steps went round, e.g. `review -> draft -> review`.
    fn recent_cycle(&self) -> Vec<String> {
        let flow = &self.shared.flow;
        let history: Vec<usize> = self.state.history.iter().copied().collect();
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

/// What a panicking node said.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    format!("the node panicked: {text}")
}
