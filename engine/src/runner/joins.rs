//! Joins: a node with several parents waits for each parent that can still arrive. A
//! parent can arrive while it is running or queued, or while a live node (running,
//! queued, or another waiting join) leads to it without passing through the join. That
//! is searched backwards from the parent, and the parent found alive is remembered, so a
//! check usually costs one lookup.

use crate::flow::Flow;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A join with at least one arrival.
struct Waiting {
    /// Per parent (in the order of `flow.joins[join]`), its output once it arrived.
    arrived: Vec<Option<Value>>,
    /// Parent slots in the order they arrived.
    order: Vec<usize>,
    /// A parent that was still alive at the last check: checked first next time.
    witness: usize,
}

#[derive(Default)]
pub(super) struct Joins {
    waiting: BTreeMap<usize, Waiting>,
}

impl Joins {
    /// Takes `value` from `from` if `to` is a join waiting for `from`; otherwise gives
    /// the value back.
    pub fn arrive(&mut self, flow: &Flow, to: usize, from: usize, value: Value) -> Option<Value> {
        let Some(parents) = flow.joins[to].as_deref() else {
            return Some(value);
        };
        let Ok(slot) = parents.binary_search(&from) else {
            return Some(value);
        };
        let waiting = self.waiting.entry(to).or_insert_with(|| Waiting {
            arrived: vec![None; parents.len()],
            order: Vec::with_capacity(parents.len()),
            witness: 0,
        });
        if waiting.arrived[slot].replace(value).is_some() {
            // Arriving again (a loop came round): it counts as the latest arrival.
            waiting.order.retain(|&s| s != slot);
        }
        waiting.order.push(slot);
        None
    }

    pub fn is_waiting(&self, join: usize) -> bool {
        self.waiting.contains_key(&join)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The waiting joins whose missing parents can no longer arrive, in node order, each
    /// with its input (parent id -> output, in arrival order). `live` says whether a node
    /// is running or queued.
    pub fn release(&mut self, flow: &Flow, live: &dyn Fn(usize) -> bool) -> Vec<(usize, Value)> {
        let mut ready = Vec::new();
        let joins: Vec<usize> = self.waiting.keys().copied().collect();
        for join in joins {
            let w = &self.waiting[&join];
            if w.order.len() == w.arrived.len() {
                ready.push(join);
                continue;
            }
            match self.alive_parent(flow, join, w, live) {
                Some(slot) => {
                    if let Some(w) = self.waiting.get_mut(&join) {
                        w.witness = slot;
                    }
                }
                None => ready.push(join),
            }
        }
        ready
            .into_iter()
            .filter_map(|join| self.fire(flow, join))
            .collect()
    }

    /// When nothing runs and the joins wait on each other: the first one, to break the tie.
    pub fn fire_first(&mut self, flow: &Flow) -> Option<(usize, Value)> {
        let join = *self.waiting.keys().next()?;
        self.fire(flow, join)
    }

    fn fire(&mut self, flow: &Flow, join: usize) -> Option<(usize, Value)> {
        let waiting = self.waiting.remove(&join)?;
        let parents = flow.joins[join].as_deref().unwrap_or(&[]);
        let mut arrived = waiting.arrived;
        let mut by_parent = Map::new();
        for slot in waiting.order {
            if let Some(value) = arrived[slot].take() {
                by_parent.insert(flow.id(parents[slot]).to_string(), value);
            }
        }
        Some((join, Value::Object(by_parent)))
    }

    /// A missing parent of `join` that can still arrive, if any: the last one found
    /// first, as it usually still is, then the ones after it.
    fn alive_parent(
        &self,
        flow: &Flow,
        join: usize,
        w: &Waiting,
        live: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let parents = flow.joins[join].as_deref().unwrap_or(&[]);
        let alive = |slot: usize| {
            w.arrived[slot].is_none() && self.can_arrive(flow, parents[slot], join, live)
        };
        // Onwards from the last one found, so parents that finish in order cost one step.
        (w.witness..parents.len())
            .chain(0..w.witness)
            .find(|&slot| alive(slot))
    }

    /// Can `parent` still run: is it live, or led to by a live node or another waiting
    /// join, not through `join`? A walk backwards from `parent`.
    fn can_arrive(
        &self,
        flow: &Flow,
        parent: usize,
        join: usize,
        live: &dyn Fn(usize) -> bool,
    ) -> bool {
        let alive = |x: usize| live(x) || (x != join && self.is_waiting(x));
        if alive(parent) {
            return true;
        }
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![parent];
        while let Some(x) = stack.pop() {
            for &p in &flow.predecessors[x] {
                if p == join || !seen.insert(p) {
                    continue;
                }
                if alive(p) {
                    return true;
                }
                stack.push(p);
            }
        }
        false
    }
}
