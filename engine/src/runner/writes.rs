//! The write-conflict check: a write to a path that a parallel node wrote while this one
//! ran is an error, since which value won would depend on timing. Writes are kept as a
//! tree of path steps, so a check walks one branch of the tree (the path's ancestors,
//! then only the subtrees written since the node started), not every earlier write.

use crate::graph::GraphFacts;
use crate::path::Step;
use std::collections::HashMap;

#[derive(Default)]
struct Slot {
    children: HashMap<Step, usize>,
    /// The last write exactly here: (node, clock).
    last: Option<(usize, u64)>,
    /// The latest clock of any write here or below.
    latest: u64,
}

/// Every path written so far, by its steps.
pub(super) struct WriteLog {
    slots: Vec<Slot>,
}

impl WriteLog {
    pub fn new() -> WriteLog {
        WriteLog {
            slots: vec![Slot::default()],
        }
    }

    /// A node that may run in parallel with `node` and wrote a path overlapping `steps`
    /// after `started`, if there is one.
    pub fn conflict(
        &self,
        steps: &[Step],
        node: usize,
        started: u64,
        graph: &GraphFacts,
    ) -> Option<usize> {
        let races = |last: Option<(usize, u64)>| {
            last.filter(|&(other, when)| {
                when > started && other != node && graph.may_run_in_parallel(node, other)
            })
            .map(|(other, _)| other)
        };
        // The path's ancestors (a write to `$ctx.a` overlaps one to `$ctx.a.b`).
        let mut at = 0;
        for step in steps {
            if let Some(other) = races(self.slots[at].last) {
                return Some(other);
            }
            at = *self.slots[at].children.get(step)?;
        }
        // The path itself and what lies below it, where anything was written since.
        let mut stack = vec![at];
        while let Some(slot) = stack.pop() {
            let slot = &self.slots[slot];
            if slot.latest <= started {
                continue;
            }
            if let Some(other) = races(slot.last) {
                return Some(other);
            }
            stack.extend(slot.children.values().copied());
        }
        None
    }

    pub fn record(&mut self, steps: &[Step], node: usize, clock: u64) {
        let mut at = 0;
        self.slots[0].latest = clock;
        for step in steps {
            let next = match self.slots[at].children.get(step) {
                Some(&next) => next,
                None => {
                    let next = self.slots.len();
                    self.slots.push(Slot::default());
                    self.slots[at].children.insert(step.clone(), next);
                    next
                }
            };
            at = next;
            self.slots[at].latest = clock;
        }
        self.slots[at].last = Some((node, clock));
    }
}
