//! The driver: one task that owns ctx and the run's state, starts nodes as tasks (up to
//! `max_parallel`), applies what they return, follows edges and releases joins.

use super::attempt::{attempts, Failed};
use super::joins::Joins;
use super::shapes::{self, Step};
use super::shared::Shared;
use super::writes::WriteLog;
use super::{Interrupt, RunError, RunOptions};
use crate::dialect::Dialect;
use crate::flow::Outputs;
use crate::journal::{Durability, Journal, Replay, StepRecord, StepResult};
use crate::node::{NodeError, Outcome, Route};
use crate::path::{set_steps, CtxPath};
use crate::policy::OnError;
use crate::tracer::{Level, SpanData};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// The step's number (the order nodes were started in).
    step: u64,
    /// The run's clock when the node became ready.
    started: u64,
    input: Value,
    result: Result<Outcome, Failed>,
    span: Option<SpanData>,
    /// The attempt that ended it.
    attempt: u32,
    /// Did it finish when first polled, before the driver started anything else?
    inline: bool,
    /// Did it come from the journal (nothing ran)?
    replayed: bool,
    /// A journaled failure that stopped the run (it runs again after the replay).
    replayed_stop: bool,
}

/// A node started while a journal is replayed, whose result the journal gives later (or,
/// if it never does, that runs when the replay ends).
struct Started {
    node: usize,
    step: u64,
    input: Value,
    view: Value,
    started: u64,
}

/// A journal being replayed into the driver.
struct Replaying {
    /// The steps still to apply, in the order they finished.
    steps: VecDeque<StepRecord>,
    /// Started nodes the journal has not finished yet, by step.
    started: BTreeMap<u64, Started>,
    force: bool,
    /// Only rebuild the state: never run a node.
    dry: bool,
    /// Stop when this node is first started (a fork), keeping ctx and its input.
    stop_at: Option<usize>,
    at: Option<(Value, Value)>,
    stopped: bool,
}

/// What a replay did in one turn of the driver's loop.
enum Turn {
    NotReplaying,
    Progress,
    Stop,
}

/// Where finished steps go.
struct Recorder {
    journal: Arc<dyn Journal>,
    durability: Durability,
    /// The next step's place in the journal.
    seq: u64,
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
    /// Per task, its node, step and input (to report a panic).
    task_nodes: HashMap<tokio::task::Id, (usize, u64, Value)>,
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

    /// Queues `node` to run next (illumo-flow's goto).
    fn push_front(&mut self, node: usize, input: Value, clock: u64) {
        self.queued[node] += 1;
        self.ready.push_front(Activation {
            node,
            input,
            queued_at: clock,
        });
    }

    /// The input a queued activation of `node` runs with, replaced.
    fn replace_input(&mut self, node: usize, input: Value) {
        if let Some(a) = self.ready.iter_mut().find(|a| a.node == node) {
            a.input = input;
        }
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
    /// Per node: it finished and no edge has queued it since (illumo-flow's `completed`,
    /// which a goto to it does not run again).
    finished: Vec<bool>,
    joins: Joins,
    replaying: Option<Replaying>,
    recorder: Option<Recorder>,
    /// The node a resumed run answers and the answer, until that node runs.
    answer: Option<(usize, Value)>,
    /// The node that paused the run and its message: nothing new starts.
    paused: Option<(usize, String)>,
    /// The run's root span, for the replay's events.
    root: Option<SpanData>,
    /// Steps that stopped the run before it was resumed: they run again when the
    /// replay reaches the point where that resume went on.
    reruns: Vec<(usize, Value)>,
    /// illumo-flow's `FLOW_DEBUG_MAX_STEPS`: after that many steps an illumo-flow flow
    /// stops starting nodes and ends as it is, without an error.
    debug_steps: Option<u64>,
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        ctx: Value,
        options: &RunOptions,
        root: Option<SpanData>,
    ) -> Driver {
        let interrupt = options.interrupt.clone();
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
        match &options.entry {
            Some((node, input)) => sched.push(*node, input.clone(), 0),
            None => {
                for &node in &shared.flow.entry {
                    // illumo-flow feeds its entry from `ctx.payloads.<entry>`.
                    let input = match illumo_flow {
                        true => ctx["payloads"][shared.flow.id(node)].clone(),
                        false => Value::Null,
                    };
                    sched.push(node, input, 0);
                }
            }
        }
        let replay = options.replay.clone();
        let seq = replay
            .as_ref()
            .and_then(|r| r.steps.last())
            .map_or(0, |last| last.seq + 1);
        let answer = replay
            .as_ref()
            .and_then(|r| r.answer.as_ref())
            .and_then(|(node, value)| Some((*shared.flow.index.get(node)?, value.clone())));
        let replaying = replay.map(|Replay { steps, force, .. }| Replaying {
            steps: steps.into(),
            started: BTreeMap::new(),
            force,
            dry: false,
            stop_at: None,
            at: None,
            stopped: false,
        });
        let recorder = options.journal.clone().map(|journal| Recorder {
            journal,
            durability: options.durability,
            seq,
        });
        Driver {
            replaying,
            recorder,
            answer,
            paused: None,
            reruns: Vec::new(),
            debug_steps: illumo_flow
                .then(|| {
                    std::env::var("FLOW_DEBUG_MAX_STEPS")
                        .ok()?
                        .trim()
                        .parse()
                        .ok()
                })
                .flatten(),
            root,
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
            finished: vec![false; count],
            joins: Joins::default(),
        }
    }

    /// Only rebuilds the state from the journal, running nothing; with `stop_at`, stops
    /// when that node is first started.
    pub fn dry(mut self, stop_at: Option<usize>) -> Driver {
        let replaying = self.replaying.get_or_insert_with(|| Replaying {
            steps: VecDeque::new(),
            started: BTreeMap::new(),
            force: false,
            dry: true,
            stop_at: None,
            at: None,
            stopped: false,
        });
        replaying.dry = true;
        replaying.stop_at = stop_at;
        self.recorder = None;
        self
    }

    /// Runs a [`Driver::dry`] driver: the state the journal rebuilds.
    pub async fn replay_only(mut self) -> Result<super::Replayed, String> {
        self.drive().await.map_err(|e| e.to_string())?;
        let flow = &self.shared.flow;
        let replaying = self.replaying.take();
        let mut frontier: Vec<(u64, String)> = Vec::new();
        let mut at = None;
        if let Some(r) = replaying {
            at = r.at;
            frontier.extend(
                r.started
                    .values()
                    .map(|s| (s.step, flow.id(s.node).to_string())),
            );
        }
        frontier.sort();
        let mut frontier: Vec<String> = frontier.into_iter().map(|(_, id)| id).collect();
        frontier.extend(self.sched.ready.iter().map(|a| flow.id(a.node).to_string()));
        Ok(super::Replayed {
            ctx: self.state.ctx,
            steps: self.state.steps,
            frontier,
            at,
        })
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

    /// Nodes running, or started during a replay and not finished by it yet.
    fn busy(&self) -> usize {
        self.sched.tasks.len() + self.replaying.as_ref().map_or(0, |r| r.started.len())
    }

    async fn drive(&mut self) -> Result<(), RunError> {
        let max_parallel = self.shared.flow.max_parallel;
        loop {
            while self.paused.is_none() && self.busy() < max_parallel {
                if self.replaying.as_ref().is_some_and(|r| r.stopped) {
                    break;
                }
                if self.debug_steps.is_some_and(|n| self.state.steps >= n) {
                    self.sched.ready.clear();
                    self.sched.queued.iter_mut().for_each(|q| *q = 0);
                }
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
            match self.replay_turn().await? {
                Turn::NotReplaying => {}
                Turn::Progress => continue,
                Turn::Stop => return Ok(()),
            }
            if self.sched.tasks.is_empty() {
                if let Some((node, message)) = self.paused.take() {
                    return Err(RunError::Paused {
                        node: self.shared.flow.id(node).to_string(),
                        message,
                    });
                }
                if !self.sched.ready.is_empty() {
                    continue;
                }
                if self.debug_steps.is_some_and(|n| self.state.steps >= n) {
                    return Ok(());
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

    /// The replay's part of one turn: applies the journal's next finished step, or, when
    /// the journal has no more, starts the nodes it left unfinished and ends the replay.
    async fn replay_turn(&mut self) -> Result<Turn, RunError> {
        let Some(r) = self.replaying.as_mut() else {
            return Ok(Turn::NotReplaying);
        };
        if r.stopped {
            return Ok(Turn::Stop);
        }
        let Some(record) = r.steps.pop_front() else {
            if r.dry {
                return Ok(Turn::Stop);
            }
            self.go_live().await?;
            return Ok(Turn::Progress);
        };
        if matches!(record.result, StepResult::Resumed) {
            // An earlier resume went on here: what it ran again starts here again.
            if r.dry {
                r.stopped = r.steps.is_empty();
            }
            self.push_reruns();
            return Ok(Turn::Progress);
        }
        let flow = &self.shared.flow;
        match r.started.remove(&record.step) {
            Some(s) if flow.id(s.node) == record.node => {
                let done = replayed(record, s.node, s.input, s.started);
                self.complete(done)?;
            }
            other => {
                if let Some(s) = other {
                    r.started.insert(s.step, s);
                }
                self.diverged(record)?;
            }
        }
        Ok(Turn::Progress)
    }

    /// The journal's step does not fit the flow: refuse, or with `--force` drop the rest
    /// of the journal and go on from here.
    fn diverged(&mut self, record: StepRecord) -> Result<(), RunError> {
        let Some(r) = self.replaying.as_mut() else {
            return Ok(());
        };
        let message = format!(
            "the journal's step {} (node `{}`, finished {}th) does not fit the flow as it is now: the flow changed how the run got there",
            record.step,
            record.node,
            record.seq + 1
        );
        if !r.force || r.dry {
            return Err(RunError::Replay { message });
        }
        r.steps.clear();
        if let Some(recorder) = &mut self.recorder {
            recorder.journal.truncate(self.shared.trace_id, record.seq);
            recorder.seq = record.seq;
        }
        self.shared.event(
            &self.root,
            "run.diverged",
            Level::Warn,
            json!({"message": message, "seq": record.seq}),
        );
        Ok(())
    }

    /// Starts again the steps that had stopped the run.
    fn push_reruns(&mut self) {
        self.state.failure = None;
        for (node, input) in std::mem::take(&mut self.reruns) {
            self.sched.push(node, input, self.state.clock);
        }
    }

    /// The replay is over: the nodes it started but did not finish run now, and the steps
    /// that stopped the run run again.
    async fn go_live(&mut self) -> Result<(), RunError> {
        let Some(r) = self.replaying.take() else {
            return Ok(());
        };
        if let Some(recorder) = &mut self.recorder {
            // Where this resume goes on: a later resume restarts the same steps here.
            let marker = StepRecord {
                seq: recorder.seq,
                step: 0,
                node: String::new(),
                attempt: 0,
                inline: false,
                span_id: None,
                digest: String::new(),
                result: StepResult::Resumed,
            };
            recorder.seq += 1;
            recorder.journal.step(self.shared.trace_id, marker);
        }
        self.push_reruns();
        for (_, s) in r.started {
            self.sched.running[s.node] -= 1;
            if let Some(done) = self.start(s).await {
                self.complete(done)?;
            }
        }
        Ok(())
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
        let (node, step, input) =
            self.sched
                .task_nodes
                .remove(&e.id())
                .unwrap_or((0, 0, Value::Null));
        let message = if e.is_panic() {
            panic_text(&*e.into_panic())
        } else {
            "the node task was cancelled".to_string()
        };
        Done {
            node,
            step,
            started: self.state.clock,
            input,
            result: Err(Failed::fatal(message)),
            span: None,
            attempt: 1,
            inline: false,
            replayed: false,
            replayed_stop: false,
        }
    }

    /// Starts a node; its result when it finished at once.
    async fn dispatch(&mut self, activation: Activation) -> Result<Option<Done>, RunError> {
        let Activation {
            node: index,
            input,
            queued_at: started,
        } = activation;
        // A fork starts with ctx as it was before this node's start was recorded.
        let fork_ctx = self
            .replaying
            .as_ref()
            .filter(|r| r.stop_at == Some(index))
            .map(|_| self.state.ctx.clone());
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
        let view = match &node.snapshot_reads {
            Some(reads) if node.node.needs_ctx(&input) => reads.prune(&state.ctx),
            _ => Value::Null,
        };
        let step = state.steps;
        let start = Started {
            node: index,
            step,
            input,
            view,
            started,
        };
        let Some(r) = self.replaying.as_mut() else {
            return Ok(self.start(start).await);
        };
        if let Some(ctx) = fork_ctx {
            r.at = Some((ctx, start.input));
            r.stopped = true;
            return Ok(None);
        }
        self.sched.running[index] += 1;
        self.state.clock += 1;
        let inline = r
            .steps
            .front()
            .is_some_and(|next| next.step == step && next.inline);
        if inline {
            let record = r.steps.pop_front().expect("the journal's next step");
            if record.node != self.shared.flow.id(index) {
                r.started.insert(step, start);
                self.diverged(record)?;
                return Ok(None);
            }
            return Ok(Some(replayed(record, index, start.input, started)));
        }
        r.started.insert(step, start);
        Ok(None)
    }

    /// Starts a node's attempts; their result when they finished at once.
    async fn start(&mut self, start: Started) -> Option<Done> {
        let Started {
            node: index,
            step,
            input,
            view,
            started,
        } = start;
        let shared = self.shared.clone();
        self.sched.running[index] += 1;
        // The input is kept to pass on only where a failure passes it on.
        let kept_input = if matches!(shared.policies[index].on_error, OnError::Stop) {
            Value::Null
        } else {
            input.clone()
        };
        self.state.clock += 1;
        let answer = match &self.answer {
            Some((node, _)) if *node == index => self.answer.take().map(|(_, a)| a),
            _ => None,
        };
        let mut task = Box::pin(async move {
            let (result, span, attempt) = attempts(
                &shared,
                index,
                &input,
                &view,
                shared.root_id,
                answer.as_ref(),
                step,
            )
            .await;
            Done {
                node: index,
                step,
                started,
                input,
                result,
                span,
                attempt,
                inline: false,
                replayed: false,
                replayed_stop: false,
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
            Ok(Poll::Ready(mut done)) => {
                done.inline = true;
                Some(done)
            }
            Ok(Poll::Pending) => {
                let handle = self.sched.tasks.spawn(task);
                self.sched
                    .task_nodes
                    .insert(handle.id(), (index, step, kept_input));
                None
            }
            Err(panic) => Some(Done {
                node: index,
                step,
                started,
                input: kept_input,
                result: Err(Failed::fatal(panic_text(&*panic))),
                span: None,
                attempt: 1,
                inline: true,
                replayed: false,
                replayed_stop: false,
            }),
        }
    }

    /// Records a finished step in the journal (with `sync`, committed before going on).
    fn journal(&mut self, done: &Done, result: StepResult) {
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        let record = StepRecord {
            seq: recorder.seq,
            step: done.step,
            node: self.shared.flow.id(done.node).to_string(),
            attempt: done.attempt,
            inline: done.inline,
            span_id: done.span.as_ref().map(|s| s.span_id),
            digest: self.shared.flow.nodes[done.node].digest.clone(),
            result,
        };
        recorder.seq += 1;
        recorder.journal.step(self.shared.trace_id, record);
        if recorder.durability == Durability::Sync {
            let journal = recorder.journal.clone();
            let commit = move || journal.commit();
            let result = match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(commit),
                _ => commit(),
            };
            if let Err(e) = result {
                self.shared.event(
                    &self.root,
                    "journal.failed",
                    Level::Error,
                    json!({"error": e}),
                );
            }
        }
    }

    fn finish(&mut self, mut done: Done) -> Result<(), RunError> {
        self.state.clock += 1;
        self.finished[done.node] = true;
        let result = std::mem::replace(&mut done.result, Err(Failed::fatal("")));
        let failed = match result {
            Ok(mut outcome) => {
                // illumo-flow: a node that outputs nothing passes its input on.
                if self.shared.flow.dialect == Dialect::IllumoFlow && outcome.output.is_null() {
                    outcome.output = done.input.clone();
                }
                match self.apply(done.node, done.started, &outcome, &done.span) {
                    Ok(next) => {
                        // Journaled once applied: a result that cannot be applied is a failure.
                        if !done.replayed && self.recorder.is_some() {
                            self.journal(&done, StepResult::Done(outcome.clone()));
                        }
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
                        return Ok(());
                    }
                    Err(error) => Failed {
                        error,
                        attempt: done.attempt,
                        timed_out: false,
                    },
                }
            }
            Err(failed) => failed,
        };
        if failed.error.is_paused() {
            let message = failed.error.to_string();
            self.shared.event(
                &done.span,
                "run.paused",
                Level::Warn,
                json!({"message": message}),
            );
            self.shared.end_span(done.span, Err((&failed.error, false)));
            self.paused.get_or_insert((done.node, message));
            return Ok(());
        }
        let stops = matches!(self.on_error(done.node), OnError::Stop);
        if done.replayed_stop {
            // A step that stopped the run before: its failure is applied as it happened,
            // and the node runs again when the replay is over.
            let input = done.input.clone();
            let _ = self.fail(done.node, done.input, failed, None);
            self.state.failure = None;
            self.reruns.push((done.node, input));
            return Ok(());
        }
        if !done.replayed {
            let error = failed.error.clone();
            let timed_out = failed.timed_out;
            self.journal(
                &done,
                match stops {
                    true => StepResult::Stopped { error, timed_out },
                    false => StepResult::Failed { error, timed_out },
                },
            );
        }
        self.fail(done.node, done.input, failed, done.span)
    }

    /// Sends `output` along to each next node (or into its join); `inputs` replaces it
    /// for the targets a route gave their own input.
    fn follow(
        &mut self,
        from: usize,
        mut next: Vec<usize>,
        output: Value,
        mut inputs: Vec<Option<Value>>,
    ) {
        if self.shared.flow.dialect == Dialect::IllumoFlow && next.len() > 1 {
            // illumo-flow runs a target once however often a decision names it, with the
            // input its last naming gives.
            let mut kept: Vec<(usize, Option<Value>)> = Vec::with_capacity(next.len());
            let mut given = inputs.into_iter();
            for to in next {
                let input = given.next().flatten();
                match kept.iter_mut().find(|(k, _)| *k == to) {
                    Some(slot) => slot.1 = input.or(slot.1.take()),
                    None => kept.push((to, input)),
                }
            }
            (next, inputs) = kept.into_iter().unzip();
        }
        let mut output = Some(output);
        let mut inputs = inputs.into_iter();
        let count = next.len();
        for (i, to) in next.into_iter().enumerate() {
            let value = match inputs.next().flatten() {
                Some(own) => own,
                None if i + 1 == count => output.take().unwrap_or_default(),
                None => output.clone().unwrap_or_default(),
            };
            self.finished[to] = false;
            let flow = &self.shared.flow;
            if flow.dialect == Dialect::IllumoFlow && flow.joins[to].is_some() {
                // illumo-flow fills `ctx.joins.<join>` parent by parent as they arrive.
                let (join, parent) = (flow.id(to).to_string(), flow.id(from).to_string());
                let ctx = &mut self.state.ctx;
                if !ctx.get("joins").is_some_and(Value::is_object) {
                    ctx["joins"] = json!({});
                }
                if !ctx["joins"][&join].is_object() {
                    ctx["joins"][&join] = json!({});
                }
                ctx["joins"][&join][&parent] = value.clone();
            }
            if let Some(value) = self.joins.arrive(&self.shared.flow, to, from, value) {
                self.enqueue(to, value);
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
        self.apply_with(index, started, outcome, span, true)
    }

    /// [`Driver::apply`], writing the node's `outputs` or not.
    fn apply_with(
        &mut self,
        index: usize,
        started: u64,
        outcome: &Outcome,
        span: &Option<SpanData>,
        write_outputs: bool,
    ) -> Result<Vec<usize>, NodeError> {
        let flow = self.shared.flow.clone();
        let node = &flow.nodes[index];
        let output = &outcome.output;
        let outputs = if write_outputs { &node.outputs } else { &None };
        let (whole, writes) = superseding(&outcome.writes);
        // illumo-flow's nodes change ctx while they run, and `outputs` are written after
        // (an output to `$ctx.workspace.structure` replaces what the inspector put there).
        let (before, after) = match flow.dialect {
            Dialect::IllumoFlow => (writes, &[][..]),
            Dialect::Native => (&[][..], writes),
        };
        for (path, value) in whole.into_iter().chain(before) {
            self.write(index, started, path, value.clone(), span)?;
        }
        match outputs {
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
            Some(Outputs::Targets(targets)) => {
                for (field, path) in targets {
                    let value = match field {
                        None => output,
                        Some(field) => match output.get(field.as_str()) {
                            Some(value) => value,
                            // illumo-flow writes the whole output where the field is missing.
                            None if flow.dialect == Dialect::IllumoFlow => output,
                            None => {
                                return Err(NodeError::fatal(format!(
                                    "the output has no field `{field}` for `{path}`; it is {}",
                                    self.shared.redactor.preview(output, 120)
                                )))
                            }
                        },
                    };
                    self.write(index, started, path, value.clone(), span)?;
                }
            }
        }
        for (path, value) in after {
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
        if flow.dialect == Dialect::IllumoFlow && !route.targets.is_empty() {
            // illumo-flow follows a decision along the node's edges only: none, and the
            // branch ends; a target without an edge is an error.
            if flow.edges[index].is_empty() {
                return Ok(Vec::new());
            }
            let mut unknown: Vec<&String> = route
                .targets
                .iter()
                .filter(|t| {
                    !flow.edges[index]
                        .iter()
                        .any(|e| flow.id(e.to) == t.as_str())
                })
                .collect();
            if !unknown.is_empty() {
                unknown.sort();
                unknown.dedup();
                let listed: Vec<String> = unknown.iter().map(|t| format!("'{t}'")).collect();
                return Err(NodeError::fatal(format!(
                    "Node '{}' returned unknown successors: [{}]",
                    node.id,
                    listed.join(", ")
                )));
            }
        }
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
        // illumo-flow's flows run one node at a time: branches share ctx as there.
        let checked = flow.dialect == Dialect::Native;
        if let Some(other) = state
            .writes
            .conflict(&path.steps, node, started, &flow.graph)
            .filter(|_| checked)
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
        self.finished[index] = true;
        let on_error = self.on_error(index);
        let action = match &on_error {
            OnError::Stop => "stop".to_string(),
            OnError::Continue => "continue".to_string(),
            OnError::Goto(t) => format!("goto {t}"),
        };
        let (whole, writes) = superseding(failed.error.writes());
        for (path, value) in whole.into_iter().chain(writes) {
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
        let message = failed.error.to_string();
        let recorded = shapes::error_message(shared.flow.dialect, &failed, &message);
        shapes::record_error(
            shared.flow.dialect,
            &mut self.state.ctx,
            &node.id,
            &failed,
            recorded,
            &action,
        );
        self.push_step(index, Step::Error(recorded));
        shared.event(
            &span,
            "node.error",
            Level::Error,
            json!({"attempt": failed.attempt, "message": failed.error.to_string(), "timed_out": failed.timed_out, "action": action}),
        );
        match on_error {
            OnError::Continue
                if shared.flow.dialect == Dialect::IllumoFlow
                    && (node.node.routes() || node.type_name == "CustomRoutingNode") =>
            {
                // illumo-flow reads the input passed on as the routing decision: none
                // (null or []) ends the branch; anything else is not one, and the run fails.
                if !(input.is_null() || input == json!([])) {
                    let error = NodeError::fatal(
                        "RoutingNode must return Routing instances or (Routing, payload) tuples",
                    );
                    shared.end_span(span, Err((&failed.error, failed.timed_out)));
                    return Err(self.node_failed(index, failed.attempt, &error, false));
                }
                let outcome = Outcome::routed(json!({}), Route::default());
                self.apply(index, self.state.clock, &outcome, &span)
                    .map_err(|e| self.node_failed(index, 1, &e, false))?;
                self.push_step(index, Step::Continue);
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                Ok(())
            }
            OnError::Continue => {
                self.push_step(index, Step::Continue);
                let outcome = Outcome::value(input);
                let next = match self.apply(index, self.state.clock, &outcome, &None) {
                    Ok(next) => next,
                    // The input passed on lacks the fields `outputs` maps: nothing is
                    // written, and the flow goes on.
                    Err(e)
                        if matches!(
                            node.outputs,
                            Some(Outputs::Fields(_) | Outputs::Targets(_))
                        ) =>
                    {
                        shared.event(
                            &span,
                            "ctx.write_skipped",
                            Level::Warn,
                            json!({"reason": e.to_string()}),
                        );
                        self.apply_with(index, self.state.clock, &outcome, &None, false)
                            .map_err(|e| self.node_failed(index, 1, &e, false))?
                    }
                    Err(e) => return Err(self.node_failed(index, 1, &e, false)),
                };
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                self.follow(index, next, outcome.output, Vec::new());
                Ok(())
            }
            OnError::Goto(target) => {
                self.push_step(index, Step::Goto(&target));
                shared.event(&span, "node.goto", Level::Warn, json!({"target": target}));
                shared.end_span(span, Err((&failed.error, failed.timed_out)));
                let to = shared.flow.index[&target];
                match shared.flow.dialect {
                    // illumo-flow runs a goto's target next, and not at all when it has
                    // finished and no edge queued it since (a goto to itself included),
                    // nor twice when it is queued already.
                    Dialect::IllumoFlow => {
                        if shared.flow.keep_payload[to] {
                            self.record("payloads", &target, input.clone());
                        }
                        if self.sched.queued[to] > 0 {
                            // Queued already: it runs once, with the goto's input.
                            self.sched.replace_input(to, input);
                        } else if !self.finished[to] {
                            self.sched.push_front(to, input, self.state.clock);
                        }
                    }
                    Dialect::Native => self.enqueue(to, input),
                }
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

    /// What a node's failure does. A goto to the failing node itself would loop until
    /// max_steps: it stops instead.
    fn on_error(&self, index: usize) -> OnError {
        match &self.shared.policies[index].on_error {
            // A goto to itself would fail forever; illumo-flow records the goto and, as
            // the node has finished, runs nothing more of that branch.
            OnError::Goto(t)
                if self.shared.flow.index.get(t) == Some(&index)
                    && self.shared.flow.dialect == Dialect::Native =>
            {
                OnError::Stop
            }
            other => other.clone(),
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
        self.enqueue(join, input);
    }

    /// Queues `node` with its input. illumo-flow keeps a queued node's input in
    /// `ctx.payloads.<node>` until its output replaces it, so a function sees it there.
    fn enqueue(&mut self, node: usize, input: Value) {
        let flow = &self.shared.flow;
        if flow.dialect == Dialect::IllumoFlow && flow.keep_payload[node] {
            let id = flow.id(node).to_string();
            self.record("payloads", &id, input.clone());
        }
        self.sched.push(node, input, self.state.clock);
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

/// A finished step from the journal, as if its node had just finished.
fn replayed(record: StepRecord, node: usize, input: Value, started: u64) -> Done {
    let stopped = matches!(record.result, StepResult::Stopped { .. });
    let result = match record.result {
        StepResult::Done(outcome) => Ok(outcome),
        StepResult::Failed { error, timed_out } | StepResult::Stopped { error, timed_out } => {
            Err(Failed {
                error,
                attempt: record.attempt,
                timed_out,
            })
        }
        StepResult::Resumed => Err(Failed::fatal("a resume marker is not a step")),
    };
    Done {
        node,
        step: record.step,
        started,
        input,
        result,
        span: None,
        attempt: record.attempt,
        inline: record.inline,
        replayed: true,
        replayed_stop: stopped,
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

type Write = (CtxPath, Value);

/// A node's writes in the order they apply: a write of the whole ctx (an illumo-flow
/// function that removed a top-level key) first, as it holds every write made before it,
/// then the writes after the last such one.
fn superseding(writes: &[Write]) -> (Option<&Write>, &[Write]) {
    match writes.iter().rposition(|(path, _)| path.steps.is_empty()) {
        Some(last) => (Some(&writes[last]), &writes[last + 1..]),
        None => (None, writes),
    }
}
