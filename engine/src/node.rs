//! What a node type provides: a [`NodeFactory`] that turns a `setting:` map into a
//! [`Node`], registered by name in a [`NodeRegistry`].
//!
//! ```
//! use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, NodeRegistry, Outcome};
//! use serde_json::Value;
//!
//! struct Upper;
//! #[async_trait::async_trait]
//! impl Node for Upper {
//!     async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
//!         let text = cx.input.as_str().unwrap_or_default().to_uppercase();
//!         Ok(Outcome::value(Value::String(text)))
//!     }
//! }
//!
//! struct UpperFactory;
//! impl NodeFactory for UpperFactory {
//!     fn type_name(&self) -> &'static str { "Upper" }
//!     fn summary(&self) -> &'static str { "upper-cases its input" }
//!     fn build(&self, _cx: &mut BuildCx) -> Option<Box<dyn Node>> { Some(Box::new(Upper)) }
//! }
//!
//! let mut registry = NodeRegistry::new();
//! registry.register(UpperFactory);
//! assert_eq!(registry.names(), ["Upper"]);
//! ```

use crate::condition::Condition;
use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::path::CtxPath;
use crate::template::{Reads, Template};
use crate::tracer::Level;
use crate::value::{looks_like_path, ValueSpec};
use crate::yaml::{Seg, YPath, Yaml};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a node returns: its output, for routing nodes the chosen next nodes, and values
/// for other ctx paths its settings name (an agent's `metadata_path`, ...). The engine
/// writes them all, so tracers see every write and parallel branches stay safe.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub output: Value,
    pub route: Option<Route>,
    pub writes: Vec<(crate::path::CtxPath, Value)>,
}

impl Outcome {
    pub fn value(output: Value) -> Outcome {
        Outcome {
            output,
            route: None,
            writes: Vec::new(),
        }
    }

    pub fn routed(output: Value, route: Route) -> Outcome {
        Outcome {
            output,
            route: Some(route),
            writes: Vec::new(),
        }
    }

    /// Also writes `value` at `path`.
    pub fn with_write(mut self, path: crate::path::CtxPath, value: Value) -> Outcome {
        self.writes.push((path, value));
        self
    }
}

/// A routing decision; it is recorded in `ctx.routing.<node>`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    /// The next nodes; empty ends this branch.
    pub targets: Vec<String>,
    pub confidence: Option<f64>,
    pub reason: Option<String>,
    /// The input each target gets instead of the node's output, by position (a Python
    /// routing rule's `(Routing, payload)`); missing or `None`: the output.
    pub inputs: Vec<Option<Value>>,
    /// Each target's own confidence and reason, by position, when they differ (a Python
    /// rule's list of `Routing`); empty: `confidence` and `reason` are the first target's.
    pub each: Vec<(Option<f64>, Option<String>)>,
}

/// A node's failure. The node says whether trying again may help; the policy decides.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    #[error("{message}")]
    Retryable {
        message: String,
        /// The wait the other side asked for (HTTP `Retry-After`); the engine waits at
        /// least this long before the next attempt.
        retry_after: Option<std::time::Duration>,
        /// Values to keep in ctx if this is the last attempt (why a patch was rejected).
        writes: Vec<(crate::path::CtxPath, Value)>,
        /// The node hit a time limit of its own (a test command's `timeout`).
        timed_out: bool,
        /// The kind of failure as the node's world names it (a Python exception's class).
        exception: Option<String>,
    },
    #[error("{message}")]
    Fatal {
        message: String,
        writes: Vec<(crate::path::CtxPath, Value)>,
        timed_out: bool,
        exception: Option<String>,
    },
    /// The node waits for a person (`Approval` without a terminal): the run stops with
    /// its journal committed, and `illumo resume --input` answers. Never retried.
    #[error("{message}")]
    Paused { message: String },
}

impl NodeError {
    pub fn retryable(message: impl Into<String>) -> NodeError {
        NodeError::Retryable {
            message: message.into(),
            retry_after: None,
            writes: Vec::new(),
            timed_out: false,
            exception: None,
        }
    }
    /// A retryable error whose next attempt should wait at least `wait`.
    pub fn retry_after(message: impl Into<String>, wait: std::time::Duration) -> NodeError {
        NodeError::Retryable {
            message: message.into(),
            retry_after: Some(wait),
            writes: Vec::new(),
            timed_out: false,
            exception: None,
        }
    }
    pub fn wait_hint(&self) -> Option<std::time::Duration> {
        match self {
            NodeError::Retryable { retry_after, .. } => *retry_after,
            NodeError::Fatal { .. } | NodeError::Paused { .. } => None,
        }
    }
    /// The run pauses here until a person answers (see [`NodeError::Paused`]).
    pub fn paused(message: impl Into<String>) -> NodeError {
        NodeError::Paused {
            message: message.into(),
        }
    }
    pub fn is_paused(&self) -> bool {
        matches!(self, NodeError::Paused { .. })
    }
    pub fn fatal(message: impl Into<String>) -> NodeError {
        NodeError::Fatal {
            message: message.into(),
            writes: Vec::new(),
            timed_out: false,
            exception: None,
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, NodeError::Retryable { .. })
    }
    /// Marks the failure as a timeout the node hit itself, so traces record it as one.
    pub fn as_timeout(mut self) -> NodeError {
        match &mut self {
            NodeError::Retryable { timed_out, .. } | NodeError::Fatal { timed_out, .. } => {
                *timed_out = true
            }
            NodeError::Paused { .. } => {}
        }
        self
    }
    pub fn is_timeout(&self) -> bool {
        match self {
            NodeError::Retryable { timed_out, .. } | NodeError::Fatal { timed_out, .. } => {
                *timed_out
            }
            NodeError::Paused { .. } => false,
        }
    }
    /// The same failure with another message (kind, writes and timeout kept).
    pub fn with_message(mut self, text: String) -> NodeError {
        match &mut self {
            NodeError::Retryable { message, .. }
            | NodeError::Fatal { message, .. }
            | NodeError::Paused { message } => *message = text,
        }
        self
    }
    /// Also writes `value` at `path` when the node has failed for good, so the next
    /// node (a goto target, a summary) can see why.
    pub fn with_write(mut self, path: crate::path::CtxPath, value: Value) -> NodeError {
        match &mut self {
            NodeError::Retryable { writes, .. } | NodeError::Fatal { writes, .. } => {
                writes.push((path, value))
            }
            NodeError::Paused { .. } => {}
        }
        self
    }
    /// The same failure with `all` as its writes (the ones it had are expected among them).
    pub fn with_writes(mut self, all: Vec<(crate::path::CtxPath, Value)>) -> NodeError {
        match &mut self {
            NodeError::Retryable { writes, .. } | NodeError::Fatal { writes, .. } => *writes = all,
            NodeError::Paused { .. } => {}
        }
        self
    }
    /// Names the kind of failure (a Python exception's class, `ValueError`).
    pub fn with_exception(mut self, name: impl Into<String>) -> NodeError {
        match &mut self {
            NodeError::Retryable { exception, .. } | NodeError::Fatal { exception, .. } => {
                *exception = Some(name.into())
            }
            NodeError::Paused { .. } => {}
        }
        self
    }
    pub fn exception(&self) -> Option<&str> {
        match self {
            NodeError::Retryable { exception, .. } | NodeError::Fatal { exception, .. } => {
                exception.as_deref()
            }
            NodeError::Paused { .. } => None,
        }
    }
    pub fn writes(&self) -> &[(crate::path::CtxPath, Value)] {
        match self {
            NodeError::Retryable { writes, .. } | NodeError::Fatal { writes, .. } => writes,
            NodeError::Paused { .. } => &[],
        }
    }
}

/// What a run allows nodes to do beyond computing. Only command-line flags set these;
/// nothing in ctx or a flow file can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `--write`: nodes may change files on disk (Patch applies its diff).
    pub write_files: bool,
    /// Nodes may ask a person on the terminal (stdin is one, and no `--no-input`).
    pub ask: bool,
}

/// Runs another node (a loop body) under its own policy, with a ctx the caller built.
#[async_trait::async_trait]
pub trait Invoker: Send + Sync {
    /// Runs `node` with `ctx` as its ctx; `default_input` is its input when it has no
    /// `inputs`. The caller applies the outcome's writes (in its own outcome).
    async fn invoke(
        &self,
        node: &str,
        ctx: &Value,
        default_input: &Value,
    ) -> Result<Outcome, NodeError>;
    fn event(&self, name: &str, level: Level, attributes: Map<String, Value>);
    /// Sets an attribute on this attempt's span (`gen_ai` usage, ...).
    fn set_attribute(&self, key: &str, value: Value);
    /// Does a tracer show text as it arrives (a live console)?
    fn streaming(&self) -> bool;
    /// Shows a piece of text as it arrives (an LLM reply being streamed).
    fn stream(&self, text: &str);
    /// A value as text for a trace, with secrets replaced, cut to `max` characters.
    fn preview(&self, value: &Value, max: usize) -> String;
    /// Is `text` one of the run's secrets (a `--redact` value, a credential a node sends)?
    fn is_secret(&self, _text: &str) -> bool {
        false
    }
    /// How many characters of a long text a trace keeps.
    fn max_text(&self) -> usize {
        DEFAULT_MAX_TEXT
    }
    /// Runs another flow (a `Subflow`) from `ctx` to its end, its spans under this
    /// attempt's; its final ctx.
    async fn run_flow(
        &self,
        _flow: Arc<crate::flow::Flow>,
        _ctx: Value,
    ) -> Result<Value, NodeError> {
        Err(NodeError::fatal("this node cannot run a flow here"))
    }

    /// Records a finished piece of work of this attempt (a tool call) as a child span.
    fn child_span(
        &self,
        _name: &str,
        _started: std::time::SystemTime,
        _attributes: Map<String, Value>,
        _ok: bool,
    ) {
    }
}

/// What a node gets for one attempt.
pub struct NodeCx<'a> {
    pub id: &'a str,
    /// The rendered `inputs`, or the previous node's output.
    pub input: &'a Value,
    /// The parts of ctx that [`Node::reads`] named (not the whole tree).
    pub ctx: &'a Value,
    pub attempt: u32,
    /// How many attempts the node's policy gives it (1: the policy does not retry).
    pub max_attempts: u32,
    /// What the run allows (from command-line flags only).
    pub permissions: Permissions,
    pub invoker: &'a dyn Invoker,
    /// A person's answer, checked by [`Node::check_answer`], when the run resumes at the
    /// node it paused at (`illumo resume --input`).
    pub answer: Option<&'a Value>,
    /// The run's trace, and the step this attempt belongs to (the same for every retry
    /// of the step and for a resumed run's rerun of it): what idempotency keys derive from.
    pub trace_id: crate::tracer::TraceId,
    pub step: u64,
}

impl NodeCx<'_> {
    pub async fn invoke(
        &self,
        node: &str,
        ctx: &Value,
        default_input: &Value,
    ) -> Result<Outcome, NodeError> {
        self.invoker.invoke(node, ctx, default_input).await
    }

    /// Records a trace event on this attempt's span.
    pub fn event(&self, name: &str, attributes: Map<String, Value>) {
        self.invoker.event(name, Level::Info, attributes);
    }

    /// Is `text` one of the run's secrets (a `--redact` value, a secret-looking variable's
    /// value, a credential a node sends)?
    pub fn is_secret(&self, text: &str) -> bool {
        self.invoker.is_secret(text)
    }

    /// Records a finished piece of work (a tool call: `tool python`) as a child of this
    /// attempt's span, with its attributes (redacted on their way to the tracers).
    pub fn child_span(
        &self,
        name: &str,
        started: std::time::SystemTime,
        attributes: Map<String, Value>,
        ok: bool,
    ) {
        self.invoker.child_span(name, started, attributes, ok);
    }

    /// Records a warning event on this attempt's span.
    pub fn warn(&self, name: &str, attributes: Map<String, Value>) {
        self.invoker.event(name, Level::Warn, attributes);
    }

    /// Sets an attribute on this attempt's span; a map merges into what is there.
    pub fn set_attribute(&self, key: &str, value: Value) {
        self.invoker.set_attribute(key, value);
    }

    /// Does someone watch text as it arrives? Then stream it with [`NodeCx::stream`].
    pub fn streaming(&self) -> bool {
        self.invoker.streaming()
    }

    pub fn stream(&self, text: &str) {
        self.invoker.stream(text);
    }

    /// A value as text for a trace event: secrets replaced first, then cut to `max`
    /// characters (so a cut never leaves half a secret).
    pub fn preview(&self, value: &Value, max: usize) -> String {
        self.invoker.preview(value, max)
    }

    /// Runs another flow from `ctx` to its end (a `Subflow`); its final ctx.
    pub async fn run_flow(
        &self,
        flow: Arc<crate::flow::Flow>,
        ctx: Value,
    ) -> Result<Value, NodeError> {
        self.invoker.run_flow(flow, ctx).await
    }

    /// How much of a long text (a prompt, a reply, a tool's result) a trace keeps: the
    /// tracers' `max_text` setting (default [`DEFAULT_MAX_TEXT`]).
    pub fn max_text(&self) -> usize {
        self.invoker.max_text()
    }
}

/// How many characters of a prompt, a reply or a run's ctx traces keep, by default.
pub const DEFAULT_MAX_TEXT: usize = 16 * 1024;

/// A node instance, built once at load and shared by every attempt and branch.
#[async_trait::async_trait]
pub trait Node: Send + Sync {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError>;

    /// The parts of ctx this node reads beyond its input (conditions, loop items).
    fn reads(&self) -> Reads {
        Reads::default()
    }

    /// Does this run, with this input, read ctx beyond its input? `false` spares the
    /// copy of the parts [`Node::reads`] names (a Python function known not to take ctx).
    fn needs_ctx(&self, _input: &Value) -> bool {
        true
    }

    /// Is this a routing node (its [`Outcome::route`] replaces its outgoing edges)?
    fn routes(&self) -> bool {
        false
    }

    /// Must every routing target also be an outgoing edge (`RouterAgent`'s choices)?
    fn routes_need_edges(&self) -> bool {
        false
    }

    /// Nodes this node may route to or invoke, with where each is named in the file.
    fn references(&self) -> Vec<NodeRef> {
        Vec::new()
    }

    /// Groups of routing targets that start together (a route `to: [a, b]`).
    fn fan_outs(&self) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// For a node that pauses for a person: the answer given to `illumo resume --input`,
    /// checked (and normalized) before anything runs; `None` when the node takes none.
    fn check_answer(&self, _answer: &Value) -> Option<Result<Value, String>> {
        None
    }
}

/// A node id named in a node's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRef {
    pub id: String,
    pub at: YPath,
    pub role: RefRole,
    /// What the graph writes on the arrow: a route's condition, `default`, a choice.
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefRole {
    /// A routing target.
    Route,
    /// A node run by this one (a loop body); it is not part of the main graph.
    Invoke,
}

/// One setting of a node type, for `illumo nodes` and the docs: read from the node type's
/// settings schema, which is derived from the config type the factory deserializes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub about: String,
}

impl SettingDoc {
    /// The settings a JSON Schema of a `setting:` map describes, in its order. A property's
    /// kind is its `x-kind` (`template`, `$ctx path`, ...) or its JSON type.
    pub fn from_schema(schema: &Value) -> Vec<SettingDoc> {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(Value::Object(properties)) = schema.get("properties") else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, p)| SettingDoc {
                name: name.clone(),
                kind: kind_of_schema(p),
                required: required.contains(&name.as_str()),
                about: p
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .replace('\n', " "),
            })
            .collect()
    }
}

fn kind_of_schema(p: &Value) -> String {
    if let Some(kind) = p.get("x-kind").and_then(Value::as_str) {
        return kind.to_string();
    }
    let types: Vec<&str> = match p.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if !names.is_empty() {
            return names.join("|");
        }
    }
    match types.as_slice() {
        [] => "any".to_string(),
        ["integer"] => "number".to_string(),
        ["array"] => "list".to_string(),
        ["object"] => "map".to_string(),
        ["boolean"] => "bool".to_string(),
        [one] => one.to_string(),
        many => many.join("|"),
    }
}

/// Builds a node type's nodes from their `setting:` maps.
pub trait NodeFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    /// Other accepted names, e.g. illumo-flow's `illumo_flow.nodes.PatchNode`.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn summary(&self) -> &'static str;
    /// The JSON Schema (draft 2020-12) of this type's `setting:` map, derived from the
    /// config type its factory deserializes. `illumo nodes` documents settings from it.
    fn settings_schema(&self) -> Value {
        serde_json::json!({"type": "object", "properties": {}})
    }
    /// The settings, as [`NodeFactory::settings_schema`] describes them.
    fn settings(&self) -> Vec<SettingDoc> {
        SettingDoc::from_schema(&self.settings_schema())
    }
    /// Builds the node, reporting every problem through `cx`; `None` when there were errors.
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>>;
}

/// Node types by name.
#[derive(Default, Clone)]
pub struct NodeRegistry {
    factories: BTreeMap<&'static str, Arc<dyn NodeFactory>>,
    aliases: BTreeMap<&'static str, &'static str>,
}

impl NodeRegistry {
    pub fn new() -> NodeRegistry {
        NodeRegistry::default()
    }

    pub fn register(&mut self, factory: impl NodeFactory + 'static) {
        let name = factory.type_name();
        for alias in factory.aliases() {
            self.aliases.insert(alias, name);
        }
        self.factories.insert(name, Arc::new(factory));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn NodeFactory>> {
        let name = self.aliases.get(name).copied().unwrap_or(name);
        self.factories.get(name)
    }

    /// The canonical name for a type name or alias.
    pub fn canonical(&self, name: &str) -> Option<&'static str> {
        self.get(name).map(|f| f.type_name())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    pub fn factories(&self) -> impl Iterator<Item = &Arc<dyn NodeFactory>> {
        self.factories.values()
    }
}

/// What a factory gets to build one node: its settings, and ways to report problems at
/// their place in the file and to compile templates and conditions.
pub struct BuildCx<'a> {
    pub node_id: &'a str,
    /// The flow file's folder: relative paths in settings start here.
    pub base_dir: &'a std::path::Path,
    pub setting: &'a Yaml,
    pub setting_at: YPath,
    pub(crate) dec: &'a mut Decoder,
    /// The node types, for a node that loads a flow of its own (`Subflow`).
    pub registry: Option<&'a NodeRegistry>,
    /// Whose vocabulary the flow is written in: a node whose meaning differs in
    /// illumo-flow applies illumo-flow's.
    pub dialect: crate::dialect::Dialect,
    /// The flow file's folder, whatever `base_dir` is (illumo-flow's flows resolve paths
    /// against the working folder, but their Python modules are looked for here too).
    pub flow_dir: &'a std::path::Path,
    /// Settings left out (an illumo-flow flow's keys the node does not have).
    ignored: Vec<String>,
}

impl<'a> BuildCx<'a> {
    pub fn new(
        node_id: &'a str,
        base_dir: &'a std::path::Path,
        setting: &'a Yaml,
        setting_at: YPath,
        dec: &'a mut Decoder,
    ) -> Self {
        BuildCx {
            node_id,
            base_dir,
            setting,
            setting_at,
            dec,
            registry: None,
            dialect: crate::dialect::Dialect::Native,
            flow_dir: base_dir,
            ignored: Vec::new(),
        }
    }

    /// The settings left out by [`BuildCx::ignore_setting`].
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// In a flow written for illumo-flow, a setting the node does not have is left out
    /// with a warning, as illumo-flow ignores it; natively it is an error (the caller's).
    /// Says whether it was left out.
    pub fn ignore_setting(&mut self, key: &str, why: &str) -> bool {
        if self.dialect != crate::dialect::Dialect::IllumoFlow {
            return false;
        }
        if !self.ignored.iter().any(|k| k == key) {
            let at = self.at(&[key]).as_key();
            self.dec.push(
                Diagnostic::warning(format!(
                    "node `{}`: {why}; illumo-flow ignores it, and so does illumo here",
                    self.node_id
                ))
                .at(at, key),
            );
            self.ignored.push(key.to_string());
        }
        true
    }

    /// The same, for a flow file in `flow_dir` when that is not `base_dir`.
    pub fn with_flow_dir(mut self, flow_dir: &'a std::path::Path) -> Self {
        self.flow_dir = flow_dir;
        self
    }

    /// The same, for a flow written in `dialect`.
    pub fn with_dialect(mut self, dialect: crate::dialect::Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The same, with the registry a nested flow is loaded with.
    pub fn with_registry(mut self, registry: &'a NodeRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Marks the environment variable `name` as holding a credential this node sends:
    /// its value is redacted from traces, stdout and stderr whatever the variable's name.
    pub fn secret_env(&mut self, name: &str) {
        self.dec.secret_env.insert(name.to_string());
    }

    /// Deserializes the settings into a config struct (use `deny_unknown_fields`); every
    /// serde error is reported at its place.
    pub fn config<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut json = if self.setting.is_null() {
            Value::Object(Map::new())
        } else {
            self.setting.to_json()
        };
        if let Value::Object(map) = &mut json {
            map.retain(|k, _| !self.ignored.contains(k));
        }
        loop {
            let attempt = serde_path_to_error::deserialize::<_, T>(json.clone());
            // An illumo-flow flow's setting the node does not have: left out, and again.
            if let Err(err) = &attempt {
                let field = unknown_field(&err.inner().to_string());
                // At the top of the settings: the path is empty, or the field itself.
                let segments: Vec<_> = err.path().iter().collect();
                let top = match segments.as_slice() {
                    [] => true,
                    [serde_path_to_error::Segment::Map { key }] => Some(key) == field.as_ref(),
                    _ => false,
                };
                if let (true, Some(field)) = (top, field) {
                    if json.get(&field).is_some()
                        && self.ignore_setting(&field, &format!("unknown setting `{field}`"))
                    {
                        if let Value::Object(map) = &mut json {
                            map.remove(&field);
                        }
                        continue;
                    }
                }
            }
            return self.config_result(attempt);
        }
    }

    fn config_result<T>(
        &mut self,
        attempt: Result<T, serde_path_to_error::Error<serde_json::Error>>,
    ) -> Option<T> {
        match attempt {
            Ok(config) => Some(config),
            Err(err) => {
                let mut path = self.setting_at.clone();
                for seg in err.path().iter() {
                    path = match seg {
                        serde_path_to_error::Segment::Map { key } => path.key(key),
                        serde_path_to_error::Segment::Seq { index } => path.index(*index),
                        _ => path,
                    };
                }
                let message = err.inner().to_string();
                let (path, offending) = match unknown_field(&message) {
                    Some(field) if path.last() == Some(&Seg::Key(field.clone(), 0)) => {
                        (path.as_key(), field)
                    }
                    Some(field) => (path.key(&field).as_key(), field),
                    None if self.setting.is_null() => (path, self.node_id.to_string()),
                    None => {
                        let text = self.text_at(&path);
                        (path, text)
                    }
                };
                let field = match path.last() {
                    Some(Seg::Key(name, _)) => Some(name.clone()),
                    _ => None,
                };
                let message = match wrong_type(&message, field.as_deref()) {
                    Some(plain) => plain,
                    None => message
                        .replace("unknown field", "unknown setting")
                        .replace("missing field", "missing setting"),
                };
                self.dec.push(
                    Diagnostic::error(format!("node `{}`: {message}", self.node_id))
                        .at(path, &offending),
                );
                None
            }
        }
    }

    fn text_at(&self, path: &YPath) -> String {
        let mut y = self.setting;
        for seg in path.segs().into_iter().skip(self.setting_at.len()) {
            let next = match (seg, y) {
                (Seg::Key(k, _), Yaml::Map(entries)) => {
                    entries.iter().find(|(key, _)| key == k).map(|(_, v)| v)
                }
                (Seg::Index(i), Yaml::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => y = n,
                None => return String::new(),
            }
        }
        y.display()
    }

    /// The place of a setting field (`&["routes", "0", "when"]`-style steps from the setting).
    pub fn at(&self, steps: &[&str]) -> YPath {
        steps
            .iter()
            .fold(self.setting_at.clone(), |p, s| match s.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(s),
            })
    }

    pub fn error(&mut self, at: YPath, offending: &str, message: impl Into<String>) {
        self.dec.push(
            Diagnostic::error(format!("node `{}`: {}", self.node_id, message.into()))
                .at(at, offending),
        );
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.dec.push(diagnostic);
    }

    /// Compiles a value with `$ctx...` references and `{{ }}` templates anywhere inside.
    pub fn value(&mut self, at: YPath, value: &Value) -> Option<ValueSpec> {
        compile_value(self.dec, &NodeName(self.node_id), &|| at.clone(), value)
    }

    /// A setting that names a place in ctx: the path given (checked, and reported at its
    /// place when it is not a `$ctx.` path) or `default`. `None` after a reported error.
    /// Give a reader the writer's default (see `illumo_nodes::paths`), so they meet.
    pub fn ctx_path(&mut self, field: &str, given: Option<&str>, default: &str) -> Option<CtxPath> {
        match given {
            Some(text) => self.checked_path(field, text),
            None => Some(CtxPath::parse(default).unwrap_or_else(|e| {
                panic!("node type default `{default}` for `{field}` is not a path: {e}")
            })),
        }
    }

    /// The same for a setting without a default: `Some(None)` when it is not given.
    pub fn optional_ctx_path(
        &mut self,
        field: &str,
        given: Option<&str>,
    ) -> Option<Option<CtxPath>> {
        match given {
            Some(text) => self.checked_path(field, text).map(Some),
            None => Some(None),
        }
    }

    fn checked_path(&mut self, field: &str, text: &str) -> Option<CtxPath> {
        match crate::path::parse_setting_path(text) {
            Ok(path) => Some(path),
            Err(why) => {
                let at = self.at(&[field]);
                self.error(at, text, format!("`{field}`: {why}"));
                None
            }
        }
    }

    /// Reports a number setting outside `min..=max` where it is written; says whether it
    /// fits. Every number a node uses to size or repeat something is checked, so no input
    /// can overflow a computation later.
    pub fn check_range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) -> bool {
        if value >= min && value <= max {
            return true;
        }
        let at = self.at(&[field]);
        let text = value.to_string();
        self.error(
            at,
            &text,
            format!("`{field}` must be between {min} and {max}, not {text}"),
        );
        false
    }

    /// Compiles a `when:` condition.
    pub fn condition(&mut self, at: YPath, source: &str) -> Option<Condition> {
        compile_condition(self.dec, at, source)
    }
}

/// serde's `invalid type: string "hot", expected f64` in the words of a flow file:
/// `` `temperature` must be a number, not `hot` ``.
fn wrong_type(message: &str, field: Option<&str>) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.split_once(", expected ")?;
    let expected = match expected {
        "f64" | "f32" => "a number",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "a boolean" => "true or false",
        "a string" => "text",
        "a sequence" => "a list",
        "a map" => "a map",
        other => other,
    };
    // `floating point `1.5``, `integer `-1``, `string "x"`.
    let found = found.strip_prefix("floating point ").map_or(found, |f| f);
    let found = match found.split_once(' ') {
        _ if found.starts_with('`') => found.to_string(),
        Some(("string", text)) => format!("`{}`", text.trim_matches('"')),
        Some((_, value)) => format!("`{}`", value.trim_matches('`')),
        None if found == "map" => "a map".to_string(),
        None if found == "sequence" => "a list".to_string(),
        None => found.to_string(),
    };
    let subject = field.map_or("the setting".to_string(), |f| format!("`{f}`"));
    Some(format!("{subject} must be {expected}, not {found}"))
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

pub(crate) fn compile_condition(dec: &mut Decoder, at: YPath, source: &str) -> Option<Condition> {
    match Condition::compile(source) {
        Ok(c) => Some(c),
        Err(e) => {
            let offending: String = source.chars().skip(e.offset).take(e.width).collect();
            let mut d = Diagnostic::error(format!(
                "invalid condition `{}`: {}",
                crate::diagnostic::brief(source),
                e.reason
            ))
            .at(at, &offending)
            .offset(e.offset);
            if let Some(hint) = e.hint {
                d = d.help(hint);
            }
            dec.push(d);
            None
        }
    }
}

/// Compiles a value with `$ctx...` references and `{{ }}` templates anywhere inside.
/// `at` gives the value's place, asked only when there is a problem to report.
pub(crate) fn compile_value(
    dec: &mut Decoder,
    owner: &dyn std::fmt::Display,
    at: &dyn Fn() -> YPath,
    value: &Value,
) -> Option<ValueSpec> {
    match value {
        Value::String(s) if looks_like_path(s) => match crate::path::CtxPath::parse(s) {
            // illumo-flow reads a path that is not in ctx as None.
            Ok(p) if dec.dialect == crate::dialect::Dialect::IllumoFlow => {
                Some(ValueSpec::RefOrNull(p))
            }
            Ok(p) => Some(ValueSpec::Ref(p)),
            Err(e) => {
                dec.push(path_error(owner, at(), s, &e));
                None
            }
        },
        Value::String(s) if s.contains("{{") => match Template::compile(s) {
            Ok(t) if dec.dialect == crate::dialect::Dialect::IllumoFlow => {
                Some(ValueSpec::Template(Box::new(t.lenient())))
            }
            Ok(t) => Some(ValueSpec::Template(Box::new(t))),
            Err(e) => {
                let offset = s
                    .lines()
                    .take(e.line - 1)
                    .map(|l| l.chars().count() + 1)
                    .sum::<usize>()
                    + e.column
                    - 1;
                let reason = if e.reason.starts_with("invalid handlebars syntax") {
                    "a `{{` is not closed by `}}`, or what is inside is not an expression"
                        .to_string()
                } else {
                    e.reason
                };
                // Carets under the `{{` or the `(` the problem starts at.
                let opening = if s.chars().nth(offset) == Some('(') {
                    "("
                } else {
                    "{{"
                };
                dec.push(
                    Diagnostic::error(format!("{owner}: invalid template: {reason}"))
                        .at(at(), opening)
                        .offset(offset)
                        .help(e.hint.unwrap_or(
                            "templates look like `{{ $ctx.user.name }}` or `{{#if $ctx.x}}...{{/if}}`",
                        )),
                );
                None
            }
        },
        Value::Array(items) => {
            let parts: Vec<Option<ValueSpec>> = items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_value(dec, owner, &|| at().index(i), v))
                .collect();
            Some(ValueSpec::array(
                parts.into_iter().collect::<Option<Vec<_>>>()?,
            ))
        }
        Value::Object(map) => {
            let parts: Vec<Option<(String, ValueSpec)>> = map
                .iter()
                .map(|(k, v)| compile_value(dec, owner, &|| at().key(k), v).map(|s| (k.clone(), s)))
                .collect();
            Some(ValueSpec::object(
                parts.into_iter().collect::<Option<Vec<_>>>()?,
            ))
        }
        other => Some(ValueSpec::Literal(other.clone())),
    }
}

/// A path that does not parse: the whole text underlined when it starts wrong, else the
/// character where it goes wrong.
pub(crate) fn path_error(
    owner: &dyn std::fmt::Display,
    at: YPath,
    text: &str,
    e: &crate::path::PathError,
) -> Diagnostic {
    let offending = if e.offset == 0 { text } else { " " };
    Diagnostic::error(format!("{owner}: {e}"))
        .at(at, offending)
        .offset(e.offset)
}

/// `node `id``, for messages, formatted only when one is written.
pub(crate) struct NodeName<'a>(pub &'a str);

impl std::fmt::Display for NodeName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node `{}`", self.0)
    }
}
