//! illumo's built-in node types. [`register_builtins`] adds them all to a registry.

pub mod agents;
pub mod coding;
mod command;
pub mod files;
mod function;
pub mod llm;
mod loop_node;
pub mod paths;
pub mod process;
pub mod python;
mod router;
pub mod sandbox;
mod set;
pub mod settings;

pub use command::CommandFactory;
pub use function::{CustomRoutingFactory, FunctionFactory};
pub use loop_node::LoopFactory;
pub use router::RouterFactory;
pub use set::SetFactory;

use illumo_engine::node::NodeRegistry;

/// Registers every built-in node type; agents use their own providers (`--llm live`).
pub fn register_builtins(registry: &mut NodeRegistry) {
    register_builtins_with(registry, llm::LlmMode::Live);
}

/// Registers every built-in node type; agents talk to LLMs as `mode` says (`--llm`).
pub fn register_builtins_with(registry: &mut NodeRegistry, mode: llm::LlmMode) {
    registry.register(SetFactory);
    registry.register(RouterFactory);
    registry.register(LoopFactory);
    registry.register(CommandFactory);
    registry.register(FunctionFactory);
    registry.register(CustomRoutingFactory);
    registry.register(python::exec::PythonExecFactory);
    registry.register(coding::WorkspaceInspectorFactory);
    registry.register(coding::PatchFactory);
    registry.register(coding::TestExecutorFactory);
    registry.register(coding::SummaryFactory);
    agents::register(registry, std::sync::Arc::new(llm::Llm::new(mode)));
}

/// A registry holding the built-in node types.
pub fn builtin_registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    register_builtins(&mut registry);
    registry
}
