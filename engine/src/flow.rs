//! A loaded, validated flow: built nodes, compiled values and conditions, and the graph
//! facts the runner needs (edges, joins, what can reach what).

use crate::condition::Condition;
use crate::decode::Decoder;
use crate::diagnostic::{did_you_mean, Diagnostic, Source};
use crate::node::{compile_condition, compile_value, BuildCx, Node, NodeRegistry, RefRole};
use crate::path::{CtxPath, Root};
use crate::policy::{OnError, PolicySpec};
use crate::spec::{decode_flow, FlowSpec, JoinMode, NodeSpec, Place};
use crate::template::Reads;
use crate::value::ValueSpec;
use crate::yaml::{YPath, Yaml};
use petgraph::graph::DiGraph;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Where a node's output goes.
#[derive(Debug, Clone)]
pub enum Outputs {
    Path(CtxPath),
    /// Picks fields of the output: `{field: $ctx.path}`.
    Fields(Vec<(String, CtxPath)>),
}

impl Outputs {
    pub fn paths(&self) -> Vec<&CtxPath> {
        match self {
            Outputs::Path(p) => vec![p],
            Outputs::Fields(f) => f.iter().map(|(_, p)| p).collect(),
        }
    }
}

pub struct FlowNode {
    pub id: String,
    pub type_name: &'static str,
    pub node: Box<dyn Node>,
    pub inputs: Option<ValueSpec>,
    pub outputs: Option<Outputs>,
    pub policy: PolicySpec,
    /// What the node itself (and nodes it invokes) read from ctx, beyond its input.
    pub snapshot_reads: Option<Reads>,
    pub describe: Option<String>,
}

pub struct Edge {
    pub to: usize,
    pub when: Option<Condition>,
}

pub struct Flow {
    pub name: String,
    pub describe: Option<String>,
    pub source: Source,
    pub nodes: Vec<FlowNode>,
    pub index: HashMap<String, usize>,
    pub entry: Vec<usize>,
    pub edges: Vec<Vec<Edge>>,
    /// For a join: the forward parents it waits for.
    pub joins: Vec<Option<Vec<usize>>>,
    /// Every node each node may lead to: edges, routing targets, goto targets.
    pub transitions: Vec<Vec<usize>>,
    /// Nodes run only by another node (loop bodies).
    pub invoked: Vec<bool>,
    /// Which nodes can follow which (by edges, routes or gotos).
    pub reach: Reach,
    /// Sets of nodes that start at the same time: a node's edges, a route to several
    /// targets, several entry nodes.
    pub fan_outs: Vec<Vec<usize>>,
    pub max_steps: u64,
    pub max_parallel: usize,
    pub policy: PolicySpec,
    pub profiles: BTreeMap<String, PolicySpec>,
    pub warnings: Vec<Diagnostic>,
}

/// A flow that did not load: every problem found, warnings included.
#[derive(Debug)]
pub struct LoadError {
    pub source: Source,
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source.render_all(&self.diagnostics, false))
    }
}

impl std::error::Error for LoadError {}

impl Flow {
    /// Can `a` and `b` run at the same time: neither follows the other, and some fan-out
    /// leads to both on different edges?
    pub fn may_run_in_parallel(&self, a: usize, b: usize) -> bool {
        if a == b || self.reach.get(a, b) || self.reach.get(b, a) {
            return false;
        }
        let leads = |from: usize, to: usize| from == to || self.reach.get(from, to);
        self.fan_outs.iter().any(|set| {
            set.iter()
                .any(|&x| set.iter().any(|&y| x != y && leads(x, a) && leads(y, b)))
        })
    }

    /// Reads, decodes, builds and validates a flow; every problem is reported at once.
    pub fn load(source: Source, registry: &NodeRegistry) -> Result<Flow, LoadError> {
        let mut dec = Decoder::default();
        let parsed = match crate::yaml::parse(&source.text) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                let mut d = Diagnostic::error(format!("invalid YAML: {}", e.message));
                if let Some(help) = e.help {
                    d = d.help(help);
                }
                d.pos = e.at.map(|m| (m.line as usize, m.column as usize));
                dec.push(d);
                None
            }
        };
        let flow = parsed.as_ref().and_then(|parsed| {
            decode_flow(&mut dec, &parsed.yaml)
                .and_then(|spec| build(spec, registry, &mut dec, &source))
        });
        if let Some(parsed) = &parsed {
            crate::diagnostic::resolve(&mut dec.diags, parsed);
        }
        match flow {
            Some(mut flow) if !dec.has_errors() => {
                flow.warnings = dec.diags;
                flow.source = source;
                Ok(flow)
            }
            _ => {
                if dec.diags.is_empty() {
                    dec.push(Diagnostic::error("the flow could not be loaded"));
                }
                Err(LoadError {
                    source,
                    diagnostics: dec.diags,
                })
            }
        }
    }

    pub fn id(&self, index: usize) -> &str {
        &self.nodes[index].id
    }
}

fn build(
    spec: FlowSpec,
    registry: &NodeRegistry,
    dec: &mut Decoder,
    source: &Source,
) -> Option<Flow> {
    let mut index = HashMap::new();
    for n in &spec.nodes {
        if n.nth > 0 {
            dec.push(
                Diagnostic::error(format!("duplicate node id `{}`", n.id))
                    .at(n.at.clone(), &n.id)
                    .label("each node id may be used once"),
            );
        } else {
            index.insert(n.id.clone(), index.len());
        }
    }
    let known: Vec<&str> = spec
        .nodes
        .iter()
        .filter(|n| n.nth == 0)
        .map(|n| n.id.as_str())
        .collect();
    let unknown_node = |dec: &mut Decoder, what: &str, name: &str, place: &Place| {
        let mut d = Diagnostic::error(format!("{what} names unknown node `{name}`"))
            .at(place.path.clone(), name)
            .offset(place.offset);
        if let Some(s) = did_you_mean(name, known.iter().copied()) {
            d = d.label(format!("did you mean `{s}`?"));
        }
        dec.push(d);
    };
    let at = |path: &YPath| Place {
        path: path.clone(),
        offset: 0,
    };

    let mut nodes = Vec::with_capacity(index.len());
    let mut references = Vec::new();
    for n in spec.nodes.iter().filter(|n| n.nth == 0) {
        let built = build_node(n, registry, dec, &source.base_dir());
        let Some(node) = built else { continue };
        for r in node.node.references() {
            references.push((n.id.clone(), r));
        }
        nodes.push(node);
    }

    for (owner, r) in &references {
        if !index.contains_key(&r.id) {
            let what = match r.role {
                RefRole::Route => format!("node `{owner}` routes to `{}`, which", r.id),
                RefRole::Invoke => format!("node `{owner}` runs `{}`, which", r.id),
            };
            let mut d = Diagnostic::error(format!("{what} is not a node")).at(r.at.clone(), &r.id);
            if let Some(s) = did_you_mean(&r.id, known.iter().copied()) {
                d = d.label(format!("did you mean `{s}`?"));
            }
            dec.push(d);
        }
    }
    let mut gotos: Vec<(&str, &PolicySpec)> = vec![("the flow policy", &spec.policy)];
    gotos.extend(spec.profiles.iter().map(|(_, p)| ("a profile", p)));
    gotos.extend(spec.nodes.iter().map(|n| ("", &n.policy)));
    for (i, (what, policy)) in gotos.iter().enumerate() {
        if let (Some(OnError::Goto(target)), Some(path)) = (&policy.on_error, &policy.goto_at) {
            if !index.contains_key(target) {
                let owner = if what.is_empty() {
                    let n = &spec.nodes[i - 1 - spec.profiles.len()];
                    format!("node `{}`", n.id)
                } else {
                    what.to_string()
                };
                let mut d =
                    Diagnostic::error(format!("{owner} has unknown goto target `{target}`"))
                        .at(path.clone(), target);
                if let Some(s) = did_you_mean(target, known.iter().copied()) {
                    d = d.label(format!("did you mean `{s}`?"));
                }
                dec.push(d);
            }
        }
    }

    let mut entry = Vec::new();
    for (name, path) in &spec.entry {
        match index.get(name) {
            Some(&i) => entry.push(i),
            None => unknown_node(dec, "`entry`", name, &at(path)),
        }
    }
    if spec.entry.is_empty() && !index.is_empty() {
        entry.push(0);
    }

    let count = index.len();
    let mut edges: Vec<Vec<Edge>> = (0..count).map(|_| Vec::new()).collect();
    let mut parents: Vec<Vec<(usize, JoinMode)>> = vec![Vec::new(); count];
    for e in &spec.edges {
        let from = index.get(&e.from).copied();
        let to = index.get(&e.to).copied();
        if from.is_none() {
            unknown_node(dec, "an edge", &e.from, &e.from_at);
        }
        if to.is_none() {
            unknown_node(dec, "an edge", &e.to, &e.to_at);
        }
        let when = match (&e.when, &e.when_at) {
            (Some(w), Some(path)) => compile_condition(dec, path.clone(), w),
            _ => None,
        };
        if let (Some(from), Some(to)) = (from, to) {
            // The same plain edge written twice is one edge, not two runs of `to`.
            let duplicate =
                e.when.is_none() && edges[from].iter().any(|x| x.to == to && x.when.is_none());
            if !duplicate {
                edges[from].push(Edge { to, when });
            }
            if !parents[to].iter().any(|(p, _)| *p == from) {
                parents[to].push((from, e.mode));
            }
        }
    }
    // A RouterAgent's choices must be edges too, so the graph shows where it can go.
    for (owner, r) in references.iter().filter(|_| nodes.len() == count) {
        let (Some(&from), Some(&to)) = (index.get(owner), index.get(&r.id)) else {
            continue;
        };
        let needs_edge = nodes[from].node.routes_need_edges();
        if needs_edge && r.role == RefRole::Route && !edges[from].iter().any(|e| e.to == to) {
            dec.push(
                Diagnostic::error(format!(
                    "choice `{}` of `{owner}` is not one of its outgoing edges",
                    r.id
                ))
                .at(r.at.clone(), &r.id)
                .help(format!("add the edge `{owner} >> {}`", r.id)),
            );
        }
    }
    if dec.has_errors() || nodes.len() != count {
        return None;
    }

    let mut invoked = vec![false; count];
    let mut transitions: Vec<Vec<usize>> = edges
        .iter()
        .map(|es| es.iter().map(|e| e.to).collect())
        .collect();
    for (owner, r) in &references {
        let (o, t) = (index[owner], index[&r.id]);
        match r.role {
            RefRole::Route => transitions[o].push(t),
            RefRole::Invoke => invoked[t] = true,
        }
    }
    // Any layer may send a failing node elsewhere; a profile applies to every node.
    let shared_gotos: Vec<usize> = std::iter::once(&spec.policy)
        .chain(spec.profiles.iter().map(|(_, p)| p))
        .filter_map(|p| match &p.on_error {
            Some(OnError::Goto(t)) => Some(index[t]),
            _ => None,
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        transitions[i].extend(&shared_gotos);
        if let Some(OnError::Goto(t)) = &n.policy.on_error {
            transitions[i].push(index[t]);
        }
    }
    for t in &mut transitions {
        t.sort_unstable();
        t.dedup();
    }
    let reach = reachability(&transitions);
    let back = back_edges(&transitions, &entry);
    let joins = parents
        .iter()
        .enumerate()
        .map(|(child, ps)| {
            let forward: Vec<usize> = ps
                .iter()
                .filter(|(p, _)| !back.contains(&(*p, child)))
                .map(|(p, _)| *p)
                .collect();
            let any = ps.iter().any(|(_, m)| *m == JoinMode::Any);
            (forward.len() >= 2 && !any).then_some(forward)
        })
        .collect();

    // Nodes that run other nodes (loops): no cycles, and each sees what its bodies read,
    // down to the innermost body.
    let mut invokes: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (owner, r) in &references {
        if r.role == RefRole::Invoke {
            invokes[index[owner]].push(index[&r.id]);
        }
    }
    if let Some(cycle) = invoke_cycle(&invokes) {
        let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].id.as_str()).collect();
        let (owner, r) = references
            .iter()
            .find(|(o, r)| {
                r.role == RefRole::Invoke && index[o] == cycle[0] && index[&r.id] == cycle[1]
            })
            .expect("the cycle was built from these references");
        dec.push(
            Diagnostic::error(format!(
                "nodes run each other endlessly: `{}`",
                names.join(" -> ")
            ))
            .at(r.at.clone(), &r.id)
            .label(format!("`{owner}` runs `{}` here", r.id)),
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
    // Without cycles, `count` rounds carry reads up any chain of bodies.
    for _ in 0..count {
        let mut changed = false;
        for i in 0..count {
            for &body in &invokes[i] {
                let before = snapshot[i].clone();
                snapshot[i].merge(&own[body]);
                let inner = snapshot[body].clone();
                snapshot[i].merge(&inner);
                changed |= snapshot[i] != before;
            }
        }
        if !changed {
            break;
        }
    }
    for (node, reads) in nodes.iter_mut().zip(snapshot) {
        node.snapshot_reads = (reads != Reads::default()).then_some(reads);
    }

    // A router chooses among its edges: they are not a fan-out.
    let mut fan_outs: Vec<Vec<usize>> = edges
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
    for node in &nodes {
        for group in node.node.fan_outs() {
            fan_outs.push(group.iter().filter_map(|t| index.get(t).copied()).collect());
        }
    }
    if entry.len() > 1 {
        fan_outs.push(entry.clone());
    }

    let mut flow = Flow {
        name: spec.name,
        describe: spec.describe,
        source: source.clone(),
        nodes,
        index,
        entry,
        edges,
        joins,
        transitions,
        invoked,
        reach,
        fan_outs,
        max_steps: spec.max_steps,
        max_parallel: spec.max_parallel,
        policy: spec.policy,
        profiles: spec.profiles.into_iter().collect(),
        warnings: Vec::new(),
    };
    warn_unfollowed_router_edges(&flow, &spec.edges, dec);
    warn_unreachable(&flow, &spec.nodes, dec);
    warn_endless_cycles(&mut flow, &spec.nodes, dec);
    warn_parallel_writes(&flow, &spec.nodes, dec);
    Some(flow)
}

fn build_node(
    n: &NodeSpec,
    registry: &NodeRegistry,
    dec: &mut Decoder,
    base_dir: &std::path::Path,
) -> Option<FlowNode> {
    let Some(factory) = registry.get(&n.type_name) else {
        let names = registry.names();
        let mut d = Diagnostic::error(format!("unknown node type `{}`", n.type_name))
            .at(n.type_at.clone(), &n.type_name);
        d = match did_you_mean(&n.type_name, names.iter().copied()) {
            Some(s) => d.label(format!("did you mean `{s}`?")),
            None => d.label("not a registered node type"),
        };
        dec.push(d.help(format!("known types: {}", names.join(", "))));
        return None;
    };
    let owner = format!("node `{}`", n.id);
    let inputs = match &n.inputs {
        Some((value, path)) => Some(compile_value(dec, &owner, path.clone(), value)?),
        None => None,
    };
    let outputs = match &n.outputs {
        Some((yaml, path)) => Some(decode_outputs(dec, &owner, yaml, path)?),
        None => None,
    };
    let node = factory.build(&mut BuildCx::new(
        &n.id,
        base_dir,
        &n.setting,
        n.setting_at.clone(),
        dec,
    ))?;
    Some(FlowNode {
        id: n.id.clone(),
        type_name: factory.type_name(),
        node,
        inputs,
        outputs,
        policy: n.policy.clone(),
        snapshot_reads: None,
        describe: n.describe.clone(),
    })
}

fn decode_outputs(dec: &mut Decoder, owner: &str, yaml: &Yaml, path: &YPath) -> Option<Outputs> {
    let target = |dec: &mut Decoder, text: &str, at: YPath| match CtxPath::parse(text) {
        Ok(p) if p.root == Root::Ctx && !p.steps.is_empty() => Some(p),
        Ok(_) => {
            dec.push(
                Diagnostic::error(format!("{owner}: cannot write to `{text}`"))
                    .at(at, text)
                    .label("outputs go to a `$ctx.` path"),
            );
            None
        }
        Err(e) => {
            dec.push(
                Diagnostic::error(format!("{owner}: {e}"))
                    .at(at, text)
                    .offset(e.offset),
            );
            None
        }
    };
    match yaml {
        Yaml::Scalar(serde_json::Value::String(s)) => {
            target(dec, s, path.clone()).map(Outputs::Path)
        }
        Yaml::Map(_) => {
            let entries = dec.map(yaml, path, "`outputs`")?;
            let mut fields = vec![];
            for e in &entries {
                let text = dec.string(e, "an output path")?;
                fields.push((e.key.to_string(), target(dec, &text, e.path.clone())?));
            }
            Some(Outputs::Fields(fields))
        }
        other => {
            dec.push(
                Diagnostic::error(format!(
                    "{owner}: `outputs` must be a `$ctx.` path or a map of them, not {}",
                    other.kind()
                ))
                .at(path.clone(), &other.display()),
            );
            None
        }
    }
}

/// A chain of nodes that run each other and comes back to its start, if there is one.
fn invoke_cycle(invokes: &[Vec<usize>]) -> Option<Vec<usize>> {
    for start in 0..invokes.len() {
        // Depth-first along the invocations, remembering the path taken.
        let mut path = vec![start];
        let mut next = vec![0usize];
        while let (Some(&node), Some(i)) = (path.last(), next.last_mut()) {
            match invokes[node].get(*i).copied() {
                Some(child) => {
                    *i += 1;
                    if child == start {
                        path.push(start);
                        return Some(path);
                    }
                    if !path.contains(&child) {
                        path.push(child);
                        next.push(0);
                    }
                }
                None => {
                    path.pop();
                    next.pop();
                }
            }
        }
    }
    None
}

/// The edges that close a loop: found by a depth-first walk from the entry nodes (then
/// from any node not yet seen), an edge to a node still on the walk's stack goes back.
fn back_edges(
    transitions: &[Vec<usize>],
    entry: &[usize],
) -> std::collections::HashSet<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let n = transitions.len();
    let mut mark = vec![Mark::New; n];
    let mut back = std::collections::HashSet::new();
    let starts: Vec<usize> = entry.iter().copied().chain(0..n).collect();
    for start in starts {
        if mark[start] != Mark::New {
            continue;
        }
        // An explicit stack of (node, next child index), so deep flows cannot overflow.
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = transitions[node].get(*next) {
                *next += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::OnStack;
                        stack.push((child, 0));
                    }
                    Mark::OnStack => {
                        back.insert((node, child));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    back
}

/// What can reach what, one bit per pair of nodes.
pub struct Reach {
    words: usize,
    bits: Vec<u64>,
}

impl Reach {
    /// Can `to` be reached from `from` by one or more transitions?
    pub fn get(&self, from: usize, to: usize) -> bool {
        self.bits[from * self.words + to / 64] & (1 << (to % 64)) != 0
    }
}

/// A breadth-first walk from every node.
fn reachability(transitions: &[Vec<usize>]) -> Reach {
    let n = transitions.len();
    let words = n.div_ceil(64).max(1);
    let mut bits = vec![0u64; n * words];
    let mut queue = VecDeque::new();
    for start in 0..n {
        let row = &mut bits[start * words..(start + 1) * words];
        queue.extend(transitions[start].iter().copied());
        while let Some(x) = queue.pop_front() {
            let (word, bit) = (x / 64, 1u64 << (x % 64));
            if row[word] & bit == 0 {
                row[word] |= bit;
                queue.extend(
                    transitions[x]
                        .iter()
                        .copied()
                        .filter(|&y| row[y / 64] & (1 << (y % 64)) == 0),
                );
            }
        }
    }
    Reach { words, bits }
}

/// A router replaces its edges with its decision: an edge to a node it never routes to
/// is never followed.
fn warn_unfollowed_router_edges(flow: &Flow, edges: &[crate::spec::EdgeSpec], dec: &mut Decoder) {
    for e in edges {
        let Some(&from) = flow.index.get(&e.from) else {
            continue;
        };
        let router = &flow.nodes[from].node;
        if router.routes() && !router.references().iter().any(|r| r.id == e.to) {
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

fn warn_unreachable(flow: &Flow, specs: &[NodeSpec], dec: &mut Decoder) {
    let mut seen = vec![false; flow.nodes.len()];
    let mut queue: VecDeque<usize> = flow.entry.iter().copied().collect();
    while let Some(x) = queue.pop_front() {
        if !seen[x] {
            seen[x] = true;
            queue.extend(flow.transitions[x].iter().copied());
        }
    }
    let entry: Vec<&str> = flow.entry.iter().map(|&e| flow.id(e)).collect();
    for (i, node) in flow.nodes.iter().enumerate() {
        if !seen[i] && !flow.invoked[i] {
            let at = specs
                .iter()
                .find(|s| s.id == node.id && s.nth == 0)
                .map(|s| s.at.clone())
                .unwrap_or_default();
            dec.push(
                Diagnostic::warning(format!(
                    "node `{}` is never reached from entry `{}`",
                    node.id,
                    entry.join("`, `")
                ))
                .at(at, &node.id)
                .label("no edge, route or goto leads here"),
            );
        }
    }
}

/// Two nodes that may run at the same time and write the same ctx path race each other.
fn warn_parallel_writes(flow: &Flow, specs: &[NodeSpec], dec: &mut Decoder) {
    let writers: Vec<usize> = (0..flow.nodes.len())
        .filter(|&i| flow.nodes[i].outputs.is_some())
        .collect();
    for (n, &a) in writers.iter().enumerate() {
        for &b in &writers[n + 1..] {
            let (Some(wa), Some(wb)) = (&flow.nodes[a].outputs, &flow.nodes[b].outputs) else {
                continue;
            };
            let Some(path) = wa
                .paths()
                .into_iter()
                .find(|p| wb.paths().iter().any(|q| p.overlaps(q)))
            else {
                continue;
            };
            if !flow.may_run_in_parallel(a, b) {
                continue;
            }
            let spec = specs
                .iter()
                .find(|s| s.id == flow.nodes[b].id && s.nth == 0);
            let at = spec
                .and_then(|s| s.outputs.as_ref())
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
}

/// A loop whose nodes have no router, no conditional edge and no goto can only end at
/// `max_steps`.
fn warn_endless_cycles(flow: &mut Flow, specs: &[NodeSpec], dec: &mut Decoder) {
    let mut graph = DiGraph::<usize, ()>::new();
    let ids: Vec<_> = (0..flow.nodes.len()).map(|i| graph.add_node(i)).collect();
    for (from, targets) in flow.transitions.iter().enumerate() {
        for &to in targets {
            graph.add_edge(ids[from], ids[to], ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let mut members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
        members.sort_unstable();
        let first = members[0];
        if members.len() == 1 && !flow.transitions[first].contains(&first) {
            continue;
        }
        let has_exit = members.iter().any(|&m| {
            let n = &flow.nodes[m];
            n.node.routes()
                || flow.edges[m].iter().any(|e| e.when.is_some())
                || matches!(n.policy.on_error, Some(OnError::Goto(_)))
                || matches!(flow.policy.on_error, Some(OnError::Goto(_)))
        });
        if has_exit {
            continue;
        }
        let mut cycle = vec![first];
        let mut at = first;
        loop {
            let next = flow.transitions[at]
                .iter()
                .copied()
                .find(|t| members.contains(t))
                .unwrap_or(first);
            cycle.push(next);
            if next == first || cycle.len() > members.len() {
                break;
            }
            at = next;
        }
        let text: Vec<&str> = cycle.iter().map(|&i| flow.id(i)).collect();
        let at = specs
            .iter()
            .find(|s| s.id == flow.nodes[first].id && s.nth == 0)
            .map(|s| s.at.clone())
            .unwrap_or_default();
        dec.push(
            Diagnostic::warning(format!(
                "cycle `{}` has no router, condition or goto to leave it",
                text.join(" -> ")
            ))
            .at(at, flow.id(first))
            .label(format!(
                "this loop runs until `max_steps` ({})",
                flow.max_steps
            )),
        );
    }
}
