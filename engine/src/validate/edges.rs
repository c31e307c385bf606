//! Edges, their conditions, and what the graph needs from them: transitions (everything a
//! node may lead to) and fan-outs (nodes that start together).

use super::names::Names;
use super::Reference;
use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::flow::{Edge, FlowNode};
use crate::node::{compile_condition, RefRole};
use crate::policy::OnError;
use crate::spec::{FlowSpec, JoinMode};
use std::collections::HashSet;

pub(crate) struct Wiring {
    /// Per node, its outgoing edges in file order.
    pub edges: Vec<Vec<Edge>>,
    /// Per node, the nodes with an edge to it, and how it joins them.
    pub parents: Vec<Vec<(usize, JoinMode)>>,
    /// Every `(from, to)` pair that some edge joins.
    pub pairs: HashSet<(usize, usize)>,
}

impl Wiring {
    pub fn of(spec: &FlowSpec<'_>, names: &Names, dec: &mut Decoder) -> Wiring {
        let count = names.ids.len();
        let mut wiring = Wiring {
            edges: (0..count).map(|_| Vec::new()).collect(),
            parents: vec![Vec::new(); count],
            pairs: HashSet::with_capacity(spec.edges.len()),
        };
        let mut plain = HashSet::new();
        for e in &spec.edges {
            let from = names.get(&e.from);
            let to = names.get(&e.to);
            if from.is_none() {
                names.unknown(dec, "an edge", &e.from, &e.from_at);
            }
            if to.is_none() {
                names.unknown(dec, "an edge", &e.to, &e.to_at);
            }
            let when = match (&e.when, &e.when_at) {
                (Some(w), Some(path)) => compile_condition(dec, path.clone(), w),
                _ => None,
            };
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            // The same plain edge written twice is one edge, not two runs of `to`.
            if e.when.is_some() || plain.insert((from, to)) {
                wiring.edges[from].push(Edge { to, when });
            }
            if wiring.pairs.insert((from, to)) {
                wiring.parents[to].push((from, e.mode));
            }
        }
        wiring
    }

    /// A RouterAgent's choices must be edges too, so the graph shows where it can go.
    pub fn check_router_choices(
        &self,
        built: &[Option<FlowNode>],
        references: &[Reference],
        dec: &mut Decoder,
    ) {
        for r in references.iter().filter(|r| r.r.role == RefRole::Route) {
            let Some(owner) = &built[r.owner] else {
                continue;
            };
            if owner.node.routes_need_edges() && !self.pairs.contains(&(r.owner, r.target)) {
                dec.push(
                    Diagnostic::error(format!(
                        "choice `{}` of `{}` is not one of its outgoing edges",
                        r.r.id, owner.id
                    ))
                    .at(r.r.at.clone(), &r.r.id)
                    .help(format!("add the edge `{} >> {}`", owner.id, r.r.id)),
                );
            }
        }
    }
}

/// Everything each node may lead to (edges, routing targets, goto targets, sorted), and
/// which nodes are run only by other nodes (loop bodies).
pub(crate) fn transitions(
    wiring: &Wiring,
    references: &[Reference],
    nodes: &[FlowNode],
    spec: &FlowSpec<'_>,
    names: &Names,
    extra_goto: Option<&str>,
) -> (Vec<Vec<usize>>, Vec<bool>) {
    let mut invoked = vec![false; nodes.len()];
    let mut transitions: Vec<Vec<usize>> = wiring
        .edges
        .iter()
        .map(|es| es.iter().map(|e| e.to).collect())
        .collect();
    for r in references {
        match r.r.role {
            RefRole::Route => transitions[r.owner].push(r.target),
            RefRole::Invoke => invoked[r.target] = true,
        }
    }
    // Any layer may send a failing node elsewhere; a profile applies to every node.
    let shared_gotos: Vec<usize> = std::iter::once(&spec.policy)
        .chain(spec.profiles.iter().map(|(_, p)| p))
        .filter_map(|p| match &p.on_error {
            Some(OnError::Goto(t)) => names.get(t),
            _ => None,
        })
        .chain(extra_goto.and_then(|t| names.get(t)))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        // A node never jumps to itself on error (it fails instead).
        transitions[i].extend(shared_gotos.iter().filter(|&&t| t != i));
        if let Some(OnError::Goto(t)) = &n.policy.on_error {
            transitions[i].extend(names.get(t));
        }
    }
    for t in &mut transitions {
        t.sort_unstable();
        t.dedup();
    }
    (transitions, invoked)
}

/// Sets of nodes that start at the same time: a node's edges (a router's are choices, not
/// a fan-out), a route to several targets, several entry nodes.
pub(crate) fn fan_outs(
    wiring: &Wiring,
    nodes: &[FlowNode],
    names: &Names,
    entry: &[usize],
) -> Vec<Vec<usize>> {
    let mut fan_outs: Vec<Vec<usize>> = wiring
        .edges
        .iter()
        .enumerate()
        .filter(|(i, _)| !nodes[*i].node.routes())
        .map(|(_, es)| {
            let mut targets: Vec<usize> = es.iter().map(|e| e.to).collect();
            targets.sort_unstable();
            targets.dedup();
            targets
        })
        .filter(|t| t.len() > 1)
        .collect();
    for node in nodes {
        for group in node.node.fan_outs() {
            fan_outs.push(group.iter().filter_map(|t| names.get(t)).collect());
        }
    }
    if entry.len() > 1 {
        fan_outs.push(entry.to_vec());
    }
    fan_outs
}
