//! What loads but likely does not do what was meant: router edges that are never followed,
//! nodes no path reaches, loops with no way out, parallel branches writing the same path.

use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::flow::Flow;
use crate::path::{CtxPath, Step};
use crate::policy::OnError;
use crate::spec::FlowSpec;
use std::collections::{HashMap, HashSet, VecDeque};

pub(crate) fn check(flow: &Flow, spec: &FlowSpec<'_>, dec: &mut Decoder) {
    unfollowed_router_edges(flow, spec, dec);
    unreachable(flow, dec);
    endless_cycles(flow, spec, dec);
    parallel_writes(flow, spec, dec);
}

/// A router replaces its edges with its decision: an edge to a node it never routes to
/// is never followed.
fn unfollowed_router_edges(flow: &Flow, spec: &FlowSpec<'_>, dec: &mut Decoder) {
    // illumo-flow's routers follow their decision along their edges.
    if flow.dialect == crate::dialect::Dialect::IllumoFlow {
        return;
    }
    let mut targets: HashMap<usize, HashSet<String>> = HashMap::new();
    for e in &spec.edges {
        let Some(&from) = flow.index.get(&e.from) else {
            continue;
        };
        let router = &flow.nodes[from].node;
        if !router.routes() {
            continue;
        }
        let known = targets
            .entry(from)
            .or_insert_with(|| router.references().into_iter().map(|r| r.id).collect());
        // A router whose targets come from data (a Python routing rule) names none here.
        if !known.is_empty() && !known.contains(&e.to) {
            dec.push(
                Diagnostic::warning(format!(
                    "edge `{} >> {}` is never followed: `{}` is a router",
                    e.from, e.to, e.from
                ))
                .at(e.to_at.path.clone(), &e.to)
                .offset(e.to_at.offset)
                .label(format!(
                    "add `{}` to the routes of `{}` instead",
                    e.to, e.from
                )),
            );
        }
    }
}

fn unreachable(flow: &Flow, dec: &mut Decoder) {
    let mut seen = vec![false; flow.nodes.len()];
    let mut queue: VecDeque<usize> = flow.entry.iter().copied().collect();
    while let Some(x) = queue.pop_front() {
        if !std::mem::replace(&mut seen[x], true) {
            queue.extend(flow.transitions[x].iter().copied().filter(|&t| !seen[t]));
        }
    }
    let entry: Vec<&str> = flow.entry.iter().map(|&e| flow.id(e)).collect();
    for (i, node) in flow.nodes.iter().enumerate() {
        if !seen[i] && !flow.invoked[i] {
            dec.push(
                Diagnostic::warning(format!(
                    "node `{}` is never reached from entry `{}`",
                    node.id,
                    entry.join("`, `")
                ))
                .at(node.at.clone(), &node.id)
                .label("no edge, route or goto leads here"),
            );
        }
    }
}

/// A loop whose nodes have no router, no conditional edge and no goto (in any policy
/// layer) can only end at `max_steps`.
fn endless_cycles(flow: &Flow, spec: &FlowSpec<'_>, dec: &mut Decoder) {
    let shared_goto = std::iter::once(&spec.policy)
        .chain(spec.profiles.iter().map(|(_, p)| p))
        .any(|p| matches!(p.on_error, Some(OnError::Goto(_))));
    for members in flow.graph.loops() {
        let has_exit = shared_goto
            || members.iter().any(|&m| {
                let n = &flow.nodes[m];
                n.node.routes()
                    || flow.edges[m].iter().any(|e| e.when.is_some())
                    || matches!(n.policy.on_error, Some(OnError::Goto(_)))
            });
        if has_exit {
            continue;
        }
        let in_loop: HashSet<usize> = members.iter().copied().collect();
        let first = members[0];
        let mut cycle = vec![first];
        let mut at = first;
        loop {
            let next = flow.transitions[at]
                .iter()
                .copied()
                .find(|t| in_loop.contains(t))
                .unwrap_or(first);
            cycle.push(next);
            if next == first || cycle.len() > members.len() {
                break;
            }
            at = next;
        }
        let text: Vec<&str> = cycle.iter().map(|&i| flow.id(i)).collect();
        dec.push(
            Diagnostic::warning(format!(
                "cycle `{}` has no router, condition or goto to leave it",
                text.join(" -> ")
            ))
            .at(flow.nodes[first].at.clone(), flow.id(first))
            .label(format!(
                "this loop runs until `max_steps` ({})",
                flow.max_steps
            )),
        );
    }
}

/// Output paths as a tree of steps, so that the writers of overlapping paths (one path
/// equal to or inside the other) are found by walking one branch, not by comparing every
/// pair of writers.
#[derive(Default)]
struct PathTree {
    /// Per tree node: parent, children, and the writers `(node, path)` that end here.
    parent: Vec<usize>,
    children: Vec<HashMap<Step, usize>>,
    writers: Vec<Vec<(usize, usize)>>,
}

impl PathTree {
    fn new() -> PathTree {
        PathTree {
            parent: vec![0],
            children: vec![HashMap::new()],
            writers: vec![Vec::new()],
        }
    }

    fn insert(&mut self, steps: &[Step], writer: (usize, usize)) -> usize {
        let mut at = 0;
        for step in steps {
            at = match self.children[at].get(step) {
                Some(&next) => next,
                None => {
                    let next = self.parent.len();
                    self.parent.push(at);
                    self.children.push(HashMap::new());
                    self.writers.push(Vec::new());
                    self.children[at].insert(step.clone(), next);
                    next
                }
            };
        }
        self.writers[at].push(writer);
        at
    }

    /// Per tree node, every writer at it or below it, by node index.
    fn below(&self) -> Vec<Vec<(usize, usize)>> {
        let mut below = self.writers.clone();
        // Children are created after their parents: walk back to fold each into its parent.
        for t in (1..self.parent.len()).rev() {
            let moved = below[t].clone();
            below[self.parent[t]].extend(moved);
        }
        below.iter_mut().for_each(|w| w.sort_unstable());
        below
    }
}

/// Two nodes that may run at the same time and write overlapping ctx paths race each
/// other. Each node is reported once, with the first node it races.
fn parallel_writes(flow: &Flow, spec: &FlowSpec<'_>, dec: &mut Decoder) {
    // illumo-flow's flows run one node at a time: branches may share a path.
    if flow.dialect == crate::dialect::Dialect::IllumoFlow {
        return;
    }
    let mut tree = PathTree::new();
    let mut placed = Vec::new();
    for (i, node) in flow.nodes.iter().enumerate() {
        let Some(outputs) = &node.outputs else {
            continue;
        };
        if !flow.graph.after_fan_out(i) {
            continue;
        }
        for (p, path) in outputs.paths().into_iter().enumerate() {
            placed.push((i, p, tree.insert(&path.steps, (i, p)), path));
        }
    }
    if placed.len() < 2 {
        return;
    }
    let below = tree.below();
    // Built nodes are the decoded nodes with distinct ids, in the same order.
    let specs: Vec<&crate::spec::NodeSpec<'_>> = spec.nodes.iter().filter(|s| s.nth == 0).collect();
    let mut reported = HashSet::new();
    for &(b, _, at, _) in &placed {
        if reported.contains(&b) {
            continue;
        }
        // Writers above this path (ancestors) and at or below it.
        let mut above = Vec::new();
        let mut t = at;
        while t != 0 {
            t = tree.parent[t];
            above.extend(tree.writers[t].iter().copied());
        }
        above.sort_unstable();
        let first = merge_sorted(&above, &below[at])
            .take_while(|&(a, _)| a < b)
            .find(|&(a, _)| flow.may_run_in_parallel(a, b));
        let Some((a, pa)) = first else { continue };
        reported.insert(b);
        let path: &CtxPath = flow.nodes[a].outputs.as_ref().expect("a writer").paths()[pa];
        let at = specs[b]
            .outputs
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        dec.push(
            Diagnostic::warning(format!(
                "nodes `{}` and `{}` may run in parallel and both write `{path}`",
                flow.nodes[a].id, flow.nodes[b].id
            ))
            .at(at, path.as_str())
            .label("the second write fails the run; give each branch its own path"),
        );
    }
}

/// The items of two sorted lists, in order.
fn merge_sorted<'a>(
    a: &'a [(usize, usize)],
    b: &'a [(usize, usize)],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x <= y => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}
