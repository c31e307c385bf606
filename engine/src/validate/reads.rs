//! What each node reads from ctx. A node that runs other nodes (a loop) must hand them the
//! parts of ctx they read, down to the innermost body, so its snapshot covers theirs.

use super::Reference;
use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::flow::FlowNode;
use crate::node::RefRole;
use crate::template::Reads;
use crate::value::ValueSpec;

/// How deep nodes that run other nodes (loops in loops) may nest.
pub const MAX_BODY_NESTING: usize = crate::limits::MAX_EXPRESSION_NESTING;

/// Sets each node's `snapshot_reads`; nodes that run each other in a circle are an error.
pub(crate) fn snapshot_reads(
    nodes: &mut [FlowNode],
    references: &[Reference],
    dec: &mut Decoder,
) -> Option<()> {
    let mut invokes: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for r in references.iter().filter(|r| r.r.role == RefRole::Invoke) {
        invokes[r.owner].push(r.target);
    }
    let order = match post_order(&invokes) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].id.as_str()).collect();
            let r = references
                .iter()
                .find(|r| {
                    r.r.role == RefRole::Invoke && r.owner == cycle[0] && r.target == cycle[1]
                })
                .expect("the cycle was built from these references");
            dec.push(
                Diagnostic::error(format!(
                    "nodes run each other endlessly: `{}`",
                    names.join(" -> ")
                ))
                .at(r.r.at.clone(), &r.r.id)
                .label(format!("`{}` runs `{}` here", nodes[cycle[0]].id, r.r.id)),
            );
            return None;
        }
    };
    // A node that runs a node that runs a node...: each level is a frame of recursion
    // at run time, so the chain has a limit, like every other nesting.
    let mut depth = vec![0usize; nodes.len()];
    for &node in &order {
        depth[node] = invokes[node]
            .iter()
            .map(|&b| depth[b] + 1)
            .max()
            .unwrap_or(0);
    }
    if let Some(top) = (0..nodes.len()).find(|&n| depth[n] > MAX_BODY_NESTING) {
        let r = references
            .iter()
            .find(|r| r.r.role == RefRole::Invoke && r.owner == top)
            .expect("a node with bodies names one");
        dec.push(
            Diagnostic::error(format!(
                "node `{}` runs bodies nested {} deep; at most {MAX_BODY_NESTING}",
                nodes[top].id, depth[top]
            ))
            .at(r.r.at.clone(), &r.r.id)
            .help("flatten the loops: run inner work as a chain of nodes"),
        );
        return None;
    }
    let own: Vec<Reads> = nodes
        .iter()
        .map(|n| {
            let mut r = n.inputs.as_ref().map(ValueSpec::reads).unwrap_or_default();
            r.merge(&n.node.reads());
            r
        })
        .collect();
    let mut snapshot: Vec<Reads> = nodes.iter().map(|n| n.node.reads()).collect();
    // Bodies come before the nodes that run them, so their snapshots are complete.
    for node in order {
        for &body in &invokes[node] {
            let inner = snapshot[body].clone();
            snapshot[node].merge(&own[body]);
            snapshot[node].merge(&inner);
        }
    }
    for (node, reads) in nodes.iter_mut().zip(snapshot) {
        node.snapshot_reads = (reads != Reads::default()).then_some(reads);
    }
    Some(())
}

/// Which nodes' outputs stay in `ctx.payloads`: all of them, or (`payloads: referenced`)
/// those some node, input or edge condition reads; reading `payloads` whole, or all of
/// ctx, keeps every one.
pub(crate) fn kept_payloads(
    mode: crate::spec::Payloads,
    nodes: &[FlowNode],
    edges: &[Vec<crate::flow::Edge>],
    index: &std::collections::HashMap<String, usize>,
) -> Vec<bool> {
    use crate::path::Step;
    if mode == crate::spec::Payloads::All {
        return vec![true; nodes.len()];
    }
    let mut keep = vec![false; nodes.len()];
    let mut reads: Vec<Reads> = Vec::new();
    for node in nodes {
        reads.push(
            node.inputs
                .as_ref()
                .map(ValueSpec::reads)
                .unwrap_or_default(),
        );
        reads.push(node.node.reads());
    }
    for edge in edges.iter().flatten() {
        if let Some(c) = &edge.when {
            reads.push(c.reads().clone());
        }
    }
    for r in &reads {
        if r.all {
            return vec![true; nodes.len()];
        }
        for path in &r.paths {
            match path.as_slice() {
                [] => return vec![true; nodes.len()],
                [Step::Key(area)] if area == "payloads" => return vec![true; nodes.len()],
                [Step::Key(area), Step::Key(id), ..] if area == "payloads" => {
                    if let Some(&i) = index.get(id) {
                        keep[i] = true;
                    }
                }
                _ => {}
            }
        }
    }
    keep
}

/// The nodes in an order where each comes after every node it runs; or a circle of
/// nodes that run each other, starting and ending with the same node.
fn post_order(invokes: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; invokes.len()];
    let mut order = Vec::with_capacity(invokes.len());
    for start in 0..invokes.len() {
        if mark[start] != Mark::New {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            match invokes[node].get(*next).copied() {
                Some(child) => {
                    *next += 1;
                    match mark[child] {
                        Mark::New => {
                            mark[child] = Mark::OnStack;
                            stack.push((child, 0));
                        }
                        Mark::OnStack => {
                            let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[from..].iter().map(|(n, _)| *n).collect();
                            cycle.push(child);
                            return Err(cycle);
                        }
                        Mark::Done => {}
                    }
                }
                None => {
                    mark[node] = Mark::Done;
                    order.push(node);
                    stack.pop();
                }
            }
        }
    }
    Ok(order)
}
