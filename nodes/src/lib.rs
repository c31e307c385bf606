//! illumo's built-in node types. [`register_builtins`] adds them all to a registry.

pub mod agents;
mod approval;
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
mod subflow;
pub mod support;

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
    register_builtins_with_llm(registry, llm::Llm::new(mode));
}

/// The same, with the agents' shared LLM state given (a resumed run's scripted counts).
pub fn register_builtins_with_llm(registry: &mut NodeRegistry, llm: llm::Llm) {
    registry.register(SetFactory);
    registry.register(approval::ApprovalFactory);
    registry.register(subflow::SubflowFactory);
    registry.register(support::retrieve::RetrieveFactory);
    registry.register(support::http::HttpFactory);
    registry.register(support::handoff::HandoffFactory);
    registry.register(support::audit::AuditFactory);
    registry.register(RouterFactory);
    registry.register(LoopFactory);
    registry.register(loop_node::FlowLoopFactory);
    registry.register(CommandFactory);
    registry.register(FunctionFactory);
    registry.register(CustomRoutingFactory);
    registry.register(python::exec::PythonExecFactory);
    registry.register(coding::WorkspaceInspectorFactory);
    registry.register(coding::PatchFactory);
    registry.register(coding::TestExecutorFactory);
    registry.register(coding::SummaryFactory);
    agents::register(registry, std::sync::Arc::new(llm));
}

/// A registry holding the built-in node types.
pub fn builtin_registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    register_builtins(&mut registry);
    registry
}
