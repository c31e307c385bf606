//! illumo's built-in node types. [`register_builtins`] adds them all to a registry.

mod command;
mod loop_node;
pub mod process;
mod router;
mod set;

pub use command::CommandFactory;
pub use loop_node::LoopFactory;
pub use router::RouterFactory;
pub use set::SetFactory;

use illumo_engine::node::NodeRegistry;

/// Registers every built-in node type.
pub fn register_builtins(registry: &mut NodeRegistry) {
    registry.register(SetFactory);
    registry.register(RouterFactory);
    registry.register(LoopFactory);
    registry.register(CommandFactory);
}

/// A registry holding the built-in node types.
pub fn builtin_registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    register_builtins(&mut registry);
    registry
}
