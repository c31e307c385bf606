//! Which nodes wait for several parents.

use crate::graph::GraphFacts;
use crate::spec::JoinMode;

/// For each node with two or more forward parents (edges that do not close a loop) and
/// no `|` among them: the parents it waits for.
pub(crate) fn joins(
    parents: &[Vec<(usize, JoinMode)>],
    graph: &GraphFacts,
) -> Vec<Option<Vec<usize>>> {
    parents
        .iter()
        .enumerate()
        .map(|(child, ps)| {
            let mut forward: Vec<usize> = ps
                .iter()
                .filter(|(p, _)| !graph.is_back_edge(*p, child))
                .map(|(p, _)| *p)
                .collect();
            forward.sort_unstable();
            let any = ps.iter().any(|(_, m)| *m == JoinMode::Any);
            (forward.len() >= 2 && !any).then_some(forward)
        })
        .collect()
}
