//! `FunctionNode` and `CustomRoutingNode`: a Python function, called in the run's Python
//! worker (see [`crate::python`]) with illumo-flow's calling convention. The function gets
//! the input (and ctx, when its parameters ask for it); what it returns is the output;
//! the changes it makes to ctx are written back. A `Routing` it returns is a routing
//! decision; `CustomRoutingNode` must return one.

use crate::python::{Answer, Call, Printed, Worker, WorkerKey};
use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome, Route};
use illumo_engine::path::{CtxPath, Step};
use illumo_engine::template::Reads;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FunctionConfig {
    /// the function, as `package.module.function`, or a ctx path that holds one (or
    /// `callable` in the input map)
    #[schemars(extend("x-kind" = "import path"))]
    callable: Option<String>,
    /// folders put first on `sys.path`, relative to the flow file (the flow's folder and
    /// the current folder are always there)
    #[serde(default, deserialize_with = "crate::settings::one_or_many")]
    #[schemars(extend("x-kind" = "list"))]
    python_path: Vec<String>,
    /// the interpreter (default: ILLUMO_PYTHON, else python3)
    #[schemars(extend("x-kind" = "program"))]
    python: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RoutingConfig {
    /// the function that returns `Routing(target, confidence, reason)` decisions, or a
    /// ctx path that holds its name
    #[schemars(extend("x-kind" = "import path"))]
    routing_rule: Option<String>,
    /// folders put first on `sys.path`, relative to the flow file
    #[serde(default, deserialize_with = "crate::settings::one_or_many")]
    #[schemars(extend("x-kind" = "list"))]
    python_path: Vec<String>,
    /// the interpreter (default: ILLUMO_PYTHON, else python3)
    #[schemars(extend("x-kind" = "program"))]
    python: Option<String>,
}

/// The function a node's settings name.
enum Named {
    None,
    Path(String),
    /// Read from ctx when the node runs (illumo-flow's `callable_expression`).
    FromCtx(CtxPath),
}

pub struct Function {
    /// The function named in the settings; the input map's `callable` key may override it.
    callable: Named,
    /// The input key that may name the function (`callable` or `routing_rule`).
    dynamic_key: &'static str,
    /// A `CustomRoutingNode`: the function must return a routing decision.
    routing: bool,
    worker: Arc<Worker>,
    /// A flow written for illumo-flow: a route without a payload, from a node whose input
    /// is null, passes on the node's output map, as illumo-flow does.
    illumo_flow: bool,
}

pub struct FunctionFactory;
pub struct CustomRoutingFactory;

impl NodeFactory for FunctionFactory {
    fn type_name(&self) -> &'static str {
        "FunctionNode"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["illumo_flow.core.FunctionNode", "illumo_flow.FunctionNode"]
    }
    fn summary(&self) -> &'static str {
        "calls a Python function (package.module.function) in the run's Python worker"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<FunctionConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: FunctionConfig = cx.config()?;
        let callable = check_import_path(cx, "callable", config.callable)?;
        let worker = worker(cx, &config.python_path, config.python);
        Some(Box::new(Function {
            callable,
            dynamic_key: "callable",
            routing: false,
            worker,
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
        }))
    }
}

impl NodeFactory for CustomRoutingFactory {
    fn type_name(&self) -> &'static str {
        "CustomRoutingNode"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &[
            "illumo_flow.core.CustomRoutingNode",
            "illumo_flow.CustomRoutingNode",
        ]
    }
    fn summary(&self) -> &'static str {
        "routes by a Python function that returns Routing(target, confidence, reason)"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<RoutingConfig>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: RoutingConfig = cx.config()?;
        let callable = check_import_path(cx, "routing_rule", config.routing_rule)?;
        let worker = worker(cx, &config.python_path, config.python);
        Some(Box::new(Function {
            callable,
            dynamic_key: "routing_rule",
            routing: true,
            worker,
            illumo_flow: cx.dialect == illumo_engine::dialect::Dialect::IllumoFlow,
        }))
    }
}

/// `package.module.function`, checked for its shape at load (whether it imports is known
/// only when the worker tries); or a ctx path (`$ctx.handlers.pick`) that holds one when
/// the node runs.
fn check_import_path(cx: &mut BuildCx, key: &str, path: Option<String>) -> Option<Named> {
    let Some(path) = path else {
        return Some(Named::None);
    };
    if path.starts_with('$') {
        return match cx.optional_ctx_path(key, Some(&path))? {
            Some(p) => Some(Named::FromCtx(p)),
            None => Some(Named::None),
        };
    }
    let valid = import_path_shape(&path);
    if !valid {
        cx.error(
            cx.at(&[key]),
            &path,
            format!("`{path}` is not an import path; write `package.module.function`"),
        );
        return None;
    }
    Some(Named::Path(path))
}

fn import_path_shape(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(module, name)| {
        let ident = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        };
        module.split('.').all(ident) && ident(name)
    })
}

fn worker(cx: &BuildCx, python_path: &[String], python: Option<String>) -> Arc<Worker> {
    let mut paths: Vec<std::path::PathBuf> =
        python_path.iter().map(|p| cx.flow_dir.join(p)).collect();
    paths.push(cx.flow_dir.to_path_buf());
    if let Ok(cwd) = std::env::current_dir() {
        paths.push(cwd);
    }
    Worker::shared(WorkerKey {
        python: python.unwrap_or_else(crate::python::default_python),
        paths,
    })
}

impl Function {
    /// The function to call, the payload it gets, and whether data named it: a `callable`
    /// key in an input map names the function and is taken out of the payload, as
    /// illumo-flow does; a ctx path in the settings is read now.
    fn target(&self, input: &Value, ctx: &Value) -> Result<(String, Value, bool), NodeError> {
        if let Some(Value::String(named)) = input.get(self.dynamic_key) {
            let rest: Map<String, Value> = input
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != self.dynamic_key)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let payload = match rest.len() {
                0 => Value::Null,
                1 => rest.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
                _ => Value::Object(rest),
            };
            return Ok((checked(named, self.dynamic_key)?, payload, true));
        }
        match &self.callable {
            Named::Path(c) => Ok((c.clone(), input.clone(), false)),
            Named::FromCtx(path) => match path.get(ctx) {
                Some(Value::String(named)) => {
                    Ok((checked(named, &path.to_string())?, input.clone(), true))
                }
                Some(other) => Err(NodeError::fatal(format!(
                    "`{path}` must hold a function's import path (`package.module.function`), not {}",
                    illumo_engine::path::kind_of(other)
                ))),
                None => Err(NodeError::fatal(format!(
                    "`{path}` is not in ctx: it should hold the function to call"
                ))),
            },
            Named::None => Err(NodeError::fatal(format!(
                "no function to call: set `{}` in the settings or in the input",
                self.dynamic_key
            ))),
        }
    }
}

/// A function name that data gave, checked for its shape.
fn checked(named: &str, from: &str) -> Result<String, NodeError> {
    if import_path_shape(named) {
        Ok(named.to_string())
    } else {
        Err(NodeError::fatal(format!(
            "`{named}` (from `{from}`) is not an import path; it should be `package.module.function`"
        )))
    }
}

fn record_printed(cx: &NodeCx<'_>, printed: &Printed) {
    if printed.stdout.is_empty() && printed.stderr.is_empty() {
        return;
    }
    let mut attributes = Map::new();
    attributes.insert("stdout".into(), Value::String(printed.stdout.clone()));
    attributes.insert("stderr".into(), Value::String(printed.stderr.clone()));
    cx.event("function.output", attributes);
}

#[illumo_engine::async_trait]
impl Node for Function {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let (callable, payload, named_by_data) = self.target(cx.input, cx.ctx)?;
        let how = Call {
            routing: self.routing,
            named_by_data,
            illumo_flow: self.illumo_flow,
        };
        let answer = self
            .worker
            .call_as(&callable, &payload, cx.ctx, how)
            .await
            .map_err(|e| NodeError::retryable(format!("`{callable}`: {e}")))?;
        match answer {
            Answer::Raised {
                kind,
                type_name,
                message,
                traceback,
                sys_path,
                writes,
                printed,
            } => {
                record_printed(&cx, &printed);
                if !traceback.is_empty() {
                    let mut attributes = Map::new();
                    attributes.insert("type".into(), Value::String(type_name.clone()));
                    attributes.insert("traceback".into(), Value::String(traceback.clone()));
                    cx.event("function.exception", attributes);
                }
                Err(match kind.as_str() {
                    "import" => NodeError::fatal(format!(
                        "cannot import `{callable}`: {type_name}: {message} (sys.path: {})",
                        sys_path.join(", ")
                    )),
                    "result" => NodeError::fatal(format!("`{callable}`: {message}")),
                    "refused" => NodeError::fatal(message.clone()),
                    _ => {
                        let mut error = NodeError::retryable(format!(
                            "`{callable}` raised {type_name}: {message}"
                        ))
                        .with_exception(type_name.clone());
                        // illumo-flow's functions change the one ctx in place: what they
                        // changed before raising stays, for the next attempt too.
                        if self.illumo_flow {
                            for (keys, value) in writes {
                                let path = CtxPath::ctx(keys.into_iter().map(Step::Key).collect());
                                error = error.with_write(path, value);
                            }
                        }
                        error
                    }
                })
            }
            Answer::Returned {
                output,
                writes,
                routes,
                printed,
            } => {
                record_printed(&cx, &printed);
                let routed = routes.is_some();
                if routed && !self.routing && self.illumo_flow {
                    return Err(NodeError::fatal(format!(
                        "Node '{}' returned a Routing result but is not a RoutingNode",
                        cx.id
                    )));
                }
                if self.routing && !routed {
                    return Err(NodeError::fatal(format!(
                        "`{callable}` must return Routing decisions (Routing, (Routing, payload) or a list of them), not `{}`",
                        cx.preview(&output, 80)
                    )));
                }
                // illumo-flow: a function that returns nothing passes its input on.
                let output = if output.is_null() && !routed {
                    cx.input.clone()
                } else {
                    output
                };
                let mut outcome = Outcome::value(output);
                for (keys, value) in writes {
                    let path = CtxPath::ctx(keys.into_iter().map(Step::Key).collect());
                    outcome = outcome.with_write(path, value);
                }
                if let Some(routes) = routes {
                    // As illumo-flow stores it: each target with the input it gets (a
                    // payload of None is no payload there).
                    let given = |r: &crate::python::RouteEntry| {
                        r.payload
                            .clone()
                            .filter(|p| !p.is_null())
                            .unwrap_or_else(|| cx.input.clone())
                    };
                    let branches: Map<String, Value> = routes
                        .iter()
                        .map(|r| (r.target.clone(), given(r)))
                        .collect();
                    let branches = Value::Object(branches);
                    let inputs = routes
                        .iter()
                        .map(|r| match given(r) {
                            Value::Null if self.illumo_flow => Some(branches.clone()),
                            payload => Some(payload),
                        })
                        .collect();
                    outcome.output = branches;
                    let first = routes.first();
                    outcome.route = Some(Route {
                        confidence: first.and_then(|r| r.confidence),
                        reason: first.and_then(|r| r.reason.clone()),
                        inputs,
                        each: routes
                            .iter()
                            .map(|r| (r.confidence, r.reason.clone()))
                            .collect(),
                        targets: routes.into_iter().map(|r| r.target).collect(),
                    });
                }
                Ok(outcome)
            }
        }
    }

    /// The function may take ctx; which functions do is known only in the worker.
    fn reads(&self) -> Reads {
        Reads::all()
    }

    /// A function named in the file that a call showed not to take ctx needs no copy of
    /// it (a long chain of them copied the whole ctx at every node).
    fn needs_ctx(&self, input: &Value) -> bool {
        match &self.callable {
            Named::Path(callable) if !input.get(self.dynamic_key).is_some_and(Value::is_string) => {
                !self.worker.known_without_ctx(callable)
            }
            _ => true,
        }
    }
}
