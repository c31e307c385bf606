//! Facts about a flow's graph that validation and the runner ask for: what can follow
//! what, which edges close a loop, which nodes may run at the same time.
//!
//! Reachability is computed once over the condensation (each strongly connected
//! component, a loop, is one vertex), one bit row per component, in reverse topological
//! order: a row is the union of its successors' rows. That is linear in the edges times
//! the row width, with no walk per node. Only nodes that some fan-out leads to can run
//! in parallel, so only they get rows: a flow without fan-outs (a long chain) needs none,
//! and a flow whose every node follows a fan-out needs n²/8 bytes (12.5 MB at 10,000).

use std::collections::HashSet;

/// Rows of bits, one row per component.
#[derive(Debug, Clone)]
struct Bits {
    words: usize,
    data: Vec<u64>,
}

impl Bits {
    fn new(rows: usize, columns: usize) -> Bits {
        let words = columns.div_ceil(64).max(1);
        Bits {
            words,
            data: vec![0; rows * words],
        }
    }

    fn get(&self, row: usize, column: usize) -> bool {
        self.data[row * self.words + column / 64] & (1 << (column % 64)) != 0
    }

    fn set(&mut self, row: usize, column: usize) {
        self.data[row * self.words + column / 64] |= 1 << (column % 64);
    }

    fn row(&self, row: usize) -> &[u64] {
        &self.data[row * self.words..(row + 1) * self.words]
    }

    /// `row |= other` for two rows of this table.
    fn union_rows(&mut self, row: usize, other: usize) {
        if row == other {
            return;
        }
        let (w, data) = (self.words, &mut self.data);
        let (a, b) = if row < other {
            let (lo, hi) = data.split_at_mut(other * w);
            (&mut lo[row * w..(row + 1) * w], &hi[..w])
        } else {
            let (lo, hi) = data.split_at_mut(row * w);
            (&mut hi[..w], &lo[other * w..(other + 1) * w])
        };
        a.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
    }
}

/// One set of nodes that start together (a node's edges, a route to several targets,
/// several entry nodes), with which components its members lead to.
#[derive(Debug, Clone)]
struct FanOut {
    members: Vec<usize>,
    /// Row 0: led to by some member; row 1: led to by two members or more.
    led: Bits,
}

/// Reachability, loops and parallelism of one flow.
#[derive(Debug, Clone)]
pub struct GraphFacts {
    /// Each node's component.
    component: Vec<usize>,
    /// Components that are loops (several nodes, or a node that leads to itself).
    cyclic: Vec<bool>,
    /// The members of each component, in node order.
    members: Vec<Vec<usize>>,
    /// Component -> its row in `reach`, for the components some fan-out leads to.
    dense: Vec<usize>,
    /// Row -> every row reachable by one or more transitions.
    reach: Bits,
    fan_outs: Vec<FanOut>,
    back: HashSet<(usize, usize)>,
}

impl GraphFacts {
    /// `transitions[n]`: every node `n` may lead to (edges, routes, gotos); `fan_outs`:
    /// the sets of nodes that start together; `entry`: where runs start.
    pub fn new(transitions: &[Vec<usize>], fan_outs: &[Vec<usize>], entry: &[usize]) -> Self {
        let (component, order) = components(transitions);
        let count = order.len();
        let mut members = vec![Vec::new(); count];
        let mut successors = vec![Vec::new(); count];
        let mut cyclic = vec![false; count];
        for (node, &c) in component.iter().enumerate() {
            members[c].push(node);
            for &next in &transitions[node] {
                match component[next] {
                    d if d == c => cyclic[c] = true,
                    d => successors[c].push(d),
                }
            }
        }
        let dense = after_fan_outs(&component, &successors, fan_outs);
        let rows = dense.iter().filter(|&&d| d != NONE).count();
        let mut reach = Bits::new(rows, rows);
        // `order` lists components sinks first: every successor's row is final when read.
        for &c in order.iter().filter(|&&c| dense[c] != NONE) {
            let row = dense[c];
            for &d in &successors[c] {
                reach.set(row, dense[d]);
                reach.union_rows(row, dense[d]);
            }
            if cyclic[c] {
                reach.set(row, row);
            }
        }
        let mut facts = GraphFacts {
            component,
            cyclic,
            members,
            dense,
            reach,
            fan_outs: Vec::new(),
            back: back_edges(transitions, entry),
        };
        facts.fan_outs = fan_outs.iter().map(|set| facts.fan_out(set)).collect();
        facts
    }

    fn fan_out(&self, set: &[usize]) -> FanOut {
        let mut led = Bits::new(2, self.reach.words * 64);
        let mut once = vec![0u64; led.words];
        for &x in set {
            let row = self.dense[self.component[x]];
            let mut bits = self.reach.row(row).to_vec();
            bits[row / 64] |= 1 << (row % 64);
            for (w, bits) in bits.iter().enumerate() {
                led.data[led.words + w] |= once[w] & bits;
                once[w] |= bits;
            }
        }
        led.data[..led.words].copy_from_slice(&once);
        FanOut {
            members: set.to_vec(),
            led,
        }
    }

    /// Can `to` be reached from `from` by one or more transitions? Known only for nodes
    /// some fan-out leads to; `None` for others.
    fn reaches(&self, from: usize, to: usize) -> Option<bool> {
        let (a, b) = (
            self.dense[self.component[from]],
            self.dense[self.component[to]],
        );
        (a != NONE && b != NONE).then(|| self.reach.get(a, b))
    }

    /// Is `node` itself or does it lead to `to` (both after a fan-out)?
    fn leads(&self, node: usize, to: usize) -> bool {
        node == to || self.reaches(node, to) == Some(true)
    }

    /// Does the edge `from -> to` close a loop (found by a depth-first walk from `entry`)?
    pub fn is_back_edge(&self, from: usize, to: usize) -> bool {
        self.back.contains(&(from, to))
    }

    /// The loops: components of more than one node or with a self-edge, each listed in
    /// node order.
    pub fn loops(&self) -> impl Iterator<Item = &[usize]> {
        self.members
            .iter()
            .zip(&self.cyclic)
            .filter(|(_, &cyclic)| cyclic)
            .map(|(m, _)| m.as_slice())
    }

    /// May `a` and `b` run at the same time: neither follows the other, and some fan-out
    /// leads to them through different members?
    pub fn may_run_in_parallel(&self, a: usize, b: usize) -> bool {
        let (Some(ab), Some(ba)) = (self.reaches(a, b), self.reaches(b, a)) else {
            return false;
        };
        if a == b || ab || ba {
            return false;
        }
        let (ra, rb) = (self.dense[self.component[a]], self.dense[self.component[b]]);
        self.fan_outs.iter().any(|f| {
            if !(f.led.get(0, ra) && f.led.get(0, rb)) {
                return false;
            }
            if f.led.get(1, ra) || f.led.get(1, rb) {
                return true;
            }
            // Each is led to by one member: parallel only if those members differ.
            let sole = f.members.iter().find(|&&x| self.leads(x, a));
            sole.is_some_and(|&x| !self.leads(x, b))
        })
    }

    /// Is `node` led to by any fan-out (so that it may race another node at all)?
    pub fn after_fan_out(&self, node: usize) -> bool {
        self.dense[self.component[node]] != NONE
    }
}

const NONE: usize = usize::MAX;

/// Numbers, densely, the components that a fan-out member is or leads to.
fn after_fan_outs(
    component: &[usize],
    successors: &[Vec<usize>],
    fan_outs: &[Vec<usize>],
) -> Vec<usize> {
    let mut dense = vec![NONE; successors.len()];
    let mut next = 0;
    let mut stack: Vec<usize> = fan_outs.iter().flatten().map(|&n| component[n]).collect();
    while let Some(c) = stack.pop() {
        if dense[c] == NONE {
            dense[c] = next;
            next += 1;
            stack.extend(successors[c].iter().copied());
        }
    }
    dense
}

/// Strongly connected components (Tarjan's algorithm with an explicit stack): each
/// node's component, and the components in reverse topological order (sinks first).
fn components(transitions: &[Vec<usize>]) -> (Vec<usize>, Vec<usize>) {
    let n = transitions.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![NONE; n];
    let mut stack = Vec::new();
    let mut order = Vec::new();
    let mut next_index = 0;
    for start in 0..n {
        if index[start] != NONE {
            continue;
        }
        let mut walk = vec![(start, 0usize)];
        index[start] = next_index;
        low[start] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (node, ref mut child)) = walk.last_mut() {
            if let Some(&next) = transitions[node].get(*child) {
                *child += 1;
                if index[next] == NONE {
                    index[next] = next_index;
                    low[next] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    walk.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index[next]);
                }
                continue;
            }
            walk.pop();
            if let Some(&(parent, _)) = walk.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let c = order.len();
                loop {
                    let member = stack.pop().expect("the component's root is on the stack");
                    on_stack[member] = false;
                    component[member] = c;
                    if member == node {
                        break;
                    }
                }
                order.push(c);
            }
        }
    }
    (component, order)
}

/// The edges that close a loop: found by a depth-first walk from the entry nodes (then
/// from any node not yet seen), an edge to a node still on the walk's stack goes back.
fn back_edges(transitions: &[Vec<usize>], entry: &[usize]) -> HashSet<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let n = transitions.len();
    let mut mark = vec![Mark::New; n];
    let mut back = HashSet::new();
    for start in entry.iter().copied().chain(0..n) {
        if mark[start] != Mark::New {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// seed -> (a | b); a -> join; b -> join; join -> loop1 -> loop2 -> loop1
    fn sample() -> GraphFacts {
        let transitions = vec![vec![1, 2], vec![3], vec![3], vec![4], vec![5], vec![4]];
        GraphFacts::new(&transitions, &[vec![1, 2]], &[0])
    }

    #[test]
    fn reachability_follows_components() {
        let g = sample();
        assert_eq!(g.reaches(1, 5), Some(true));
        assert_eq!(g.reaches(5, 1), Some(false));
        assert_eq!(g.reaches(1, 2), Some(false));
        assert_eq!(g.reaches(4, 4), Some(true), "a loop reaches itself");
        assert_eq!(g.reaches(3, 3), Some(false), "a plain node does not");
        assert_eq!(g.reaches(0, 1), None, "the seed is before the fan-out");
        let loops: Vec<&[usize]> = g.loops().collect();
        assert_eq!(loops, [&[4, 5][..]]);
        assert!(g.is_back_edge(5, 4));
        assert!(!g.is_back_edge(4, 5));
    }

    #[test]
    fn only_different_branches_of_a_fan_out_run_in_parallel() {
        let g = sample();
        assert!(g.may_run_in_parallel(1, 2));
        assert!(!g.may_run_in_parallel(1, 3), "the join follows the branch");
        assert!(!g.may_run_in_parallel(0, 1));
        // Two exclusive alternatives of a router (no fan-out) never run together.
        let router = GraphFacts::new(&[vec![1, 2], vec![], vec![]], &[], &[0]);
        assert!(!router.may_run_in_parallel(1, 2));
    }

    #[test]
    fn nodes_after_the_same_branch_do_not_race() {
        // seed -> (a | b); a -> a1; a -> a2 (a router's exclusive choices)
        let transitions = vec![vec![1, 2], vec![3, 4], vec![], vec![], vec![]];
        let g = GraphFacts::new(&transitions, &[vec![1, 2]], &[0]);
        assert!(!g.may_run_in_parallel(3, 4));
        assert!(g.may_run_in_parallel(3, 2));
    }

    #[test]
    fn a_long_chain_is_built_without_recursion() {
        let n = 1_000_000;
        let transitions: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![] })
            .collect();
        let g = GraphFacts::new(&transitions, &[], &[0]);
        assert!(!g.is_back_edge(0, 1));
        assert_eq!(g.loops().count(), 0);
        assert!(g.reach.data.is_empty(), "no fan-out, no reachability rows");
    }
}
