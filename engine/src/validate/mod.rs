//! Turning a decoded flow into a [`Flow`]: named passes, each reporting every problem it
//! finds before the next runs. The passes that need a complete graph run only when the
//! earlier ones found no error, so a typo is reported once, not again as a missing edge.
//!
//! - [`names`]: node ids, and every place that names a node (entry, edges, routes, loop
//!   bodies, goto targets);
//! - [`nodes`]: every node built by its factory, with its `inputs` and `outputs`;
//! - [`bodies`]: nodes run by other nodes (loop bodies) write nothing themselves;
//! - [`edges`]: edges, their conditions, and router choices that must be edges;
//! - [`joins`]: which nodes wait for several parents;
//! - [`reads`]: what each node reads from ctx, down to the bodies it runs;
//! - [`warnings`]: what loads but likely does not do what was meant.

mod bodies;
mod edges;
mod joins;
mod names;
mod nodes;
mod reads;
mod warnings;

use crate::decode::Decoder;
use crate::diagnostic::Source;
use crate::flow::Flow;
use crate::graph::GraphFacts;
use crate::node::NodeRegistry;
use crate::spec::FlowSpec;

pub(crate) fn build(
    spec: FlowSpec<'_>,
    registry: &NodeRegistry,
    dec: &mut Decoder,
    source: &Source,
) -> Option<Flow> {
    let names = names::Names::of(&spec, dec);
    // illumo-flow resolves relative paths in settings against the working folder.
    let base_dir = match spec.dialect {
        crate::dialect::Dialect::IllumoFlow => {
            std::env::current_dir().unwrap_or_else(|_| source.base_dir())
        }
        crate::dialect::Dialect::Native => source.base_dir(),
    };
    let built = nodes::build_all(&spec, registry, dec, &base_dir, &source.base_dir());
    let references = names.check_references(&built, dec);
    bodies::check(&built, &references, &spec, dec);
    names.check_gotos(&spec, dec);
    let entry = names.entry(&spec, dec);
    let wiring = edges::Wiring::of(&spec, &names, dec);
    wiring.check_router_choices(&built, &references, dec);
    if dec.has_errors() {
        return None;
    }
    let mut nodes: Vec<_> = built.into_iter().collect::<Option<_>>()?;
    let extra_goto = dec.extra_goto.clone();
    let (transitions, invoked) = edges::transitions(
        &wiring,
        &references,
        &nodes,
        &spec,
        &names,
        extra_goto.as_deref(),
    );
    let fan_outs = edges::fan_outs(&wiring, &nodes, &names, &entry);
    let graph = GraphFacts::new(&transitions, &fan_outs, &entry);
    let joins = joins::joins(&wiring.parents, &graph);
    let mut predecessors = vec![Vec::new(); transitions.len()];
    for (from, targets) in transitions.iter().enumerate() {
        for &to in targets {
            predecessors[to].push(from);
        }
    }
    reads::snapshot_reads(&mut nodes, &references, dec)?;
    let keep_payload = reads::kept_payloads(spec.payloads, &nodes, &wiring.edges, &names.index);
    let flow = Flow {
        name: spec.name.clone(),
        describe: spec.describe.clone(),
        source: source.clone(),
        nodes,
        index: names.index,
        entry,
        edges: wiring.edges,
        joins,
        transitions,
        predecessors,
        invoked,
        graph,
        max_steps: spec.max_steps,
        max_parallel: spec.max_parallel,
        policy: spec.policy.clone(),
        profiles: spec.profiles.iter().cloned().collect(),
        warnings: Vec::new(),
        secret_env: dec.secret_env.iter().cloned().collect(),
        keep_payload,
        dialect: spec.dialect,
    };
    warnings::check(&flow, &spec, dec);
    Some(flow)
}

/// A node id named in another node's settings, by the index of the node that names it.
pub(crate) struct Reference {
    pub owner: usize,
    pub target: usize,
    pub r: crate::node::NodeRef,
}
