//! illumo-engine: the flow format, its loader and validation passes, the runtime, policies,
//! and the hooks that node types and tracers plug into. It names no concrete node type or
//! tracer backend: those live in `illumo-nodes` and `illumo-tracers`.
//!
//! ```no_run
//! use illumo_engine::{diagnostic::Source, flow::Flow, node::NodeRegistry, runner, tracer::Fanout};
//! use std::sync::Arc;
//!
//! # async fn demo(registry: NodeRegistry) {
//! let text = std::fs::read_to_string("flow.yaml").unwrap();
//! let flow = Flow::load(Source::new("flow.yaml", text), &registry).expect("valid flow");
//! let options = runner::RunOptions::new(Arc::new(Fanout::default()));
//! let out = runner::run(Arc::new(flow), serde_json::json!({}), options).await.expect("run");
//! println!("{}", out.ctx);
//! # }
//! ```

pub mod condition;
pub mod decode;
pub mod diagnostic;
pub mod dialect;
pub mod duration;
pub mod flow;
pub mod graph;
pub mod ids;
pub mod journal;
pub mod limits;
pub mod node;
pub mod path;
pub mod policy;
pub mod redact;
pub mod runner;
pub mod spec;
pub mod template;
pub mod tracer;
mod validate;
pub mod value;
pub mod yaml;

pub use async_trait::async_trait;
pub use diagnostic::{Diagnostic, Severity, Source};
pub use flow::{Flow, LoadError};
pub use node::{
    BuildCx, Node, NodeCx, NodeError, NodeFactory, NodeRegistry, Outcome, Permissions, Route,
};
pub use runner::{run, Interrupt, RunError, RunFailure, RunOptions, RunOutput};
