//! `Subflow`: runs another flow file as one node. The child's initial ctx is the node's
//! input (a map: give the node `inputs` to map it from the parent's ctx); its output is
//! the child's final ctx (map parts of it back with `outputs`). The child is loaded and
//! checked with the parent, each problem at its own file:line:column; files that include
//! each other are a load error. The child's spans nest under the node's, in the same
//! trace; the node's policy applies to the subflow as a whole.

use illumo_engine::node::{BuildCx, Node, NodeCx, NodeError, NodeFactory, Outcome};
use illumo_engine::{Flow, LoadError, Source};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// the flow file to run, relative to this one
    #[schemars(extend("x-kind" = "file"))]
    flow: String,
}

thread_local! {
    /// The flow files being loaded, outermost first: a file loading itself again is a cycle.
    static LOADING: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

pub struct Subflow {
    flow: Arc<Flow>,
}

pub struct SubflowFactory;

impl NodeFactory for SubflowFactory {
    fn type_name(&self) -> &'static str {
        "Subflow"
    }
    fn summary(&self) -> &'static str {
        "runs another flow file as one node: its input is the child's ctx, its output the child's final ctx"
    }
    fn settings_schema(&self) -> Value {
        crate::settings::schema_of::<Config>()
    }
    fn build(&self, cx: &mut BuildCx) -> Option<Box<dyn Node>> {
        let config: Config = cx.config()?;
        let at = cx.at(&["flow"]);
        let path = crate::llm::resolve(cx.base_dir, &config.flow);
        let Some(registry) = cx.registry else {
            cx.error(
                at,
                &config.flow,
                "a subflow needs the node registry to load",
            );
            return None;
        };
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let text = match crate::files::read_text(&path) {
            Ok(t) => t,
            Err(e) => {
                cx.error(
                    at,
                    &config.flow,
                    format!("cannot read the subflow `{}`: {e}", config.flow),
                );
                return None;
            }
        };
        let cycle = LOADING.with(|stack| {
            let stack = stack.borrow();
            stack.iter().position(|p| *p == canonical).map(|start| {
                let mut names: Vec<String> = stack[start..]
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                names.push(canonical.display().to_string());
                names.join(" -> ")
            })
        });
        if let Some(cycle) = cycle {
            cx.error(
                at,
                &config.flow,
                format!("flow files run each other: {cycle}"),
            );
            return None;
        }
        LOADING.with(|stack| stack.borrow_mut().push(canonical.clone()));
        let shown = path
            .strip_prefix(".")
            .unwrap_or(&path)
            .display()
            .to_string();
        let loaded = Flow::load(Source::new(shown, text), registry);
        LOADING.with(|stack| stack.borrow_mut().pop());
        match loaded {
            Ok(flow) => Some(Box::new(Subflow {
                flow: Arc::new(flow),
            })),
            Err(LoadError {
                source,
                diagnostics,
            }) => {
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                let rendered = source.render_all(&diagnostics, false);
                cx.push(
                    illumo_engine::Diagnostic::error(format!(
                        "the subflow `{}` has {}",
                        config.flow,
                        illumo_engine::diagnostic::plural(errors, "error")
                    ))
                    .at(at, &config.flow)
                    .help(format!("in the subflow:\n{}", rendered.trim_end())),
                );
                None
            }
        }
    }
}

#[illumo_engine::async_trait]
impl Node for Subflow {
    async fn run(&self, cx: NodeCx<'_>) -> Result<Outcome, NodeError> {
        let ctx = match cx.input {
            Value::Object(_) => cx.input.clone(),
            Value::Null => Value::Object(Map::new()),
            other => {
                return Err(NodeError::fatal(format!(
                    "a subflow's input is its initial ctx, a map; it is {}",
                    illumo_engine::path::kind_of(other)
                )))
            }
        };
        let out = cx.run_flow(self.flow.clone(), ctx).await?;
        Ok(Outcome::value(out))
    }
}
