//! Node ids, and every place that names a node.

use super::Reference;
use crate::decode::Decoder;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::flow::FlowNode;
use crate::node::RefRole;
use crate::policy::OnError;
use crate::spec::{FlowSpec, Place};
use crate::yaml::YPath;
use std::collections::HashMap;

pub(crate) struct Names {
    /// Node id -> index, for the first node of each id.
    pub index: HashMap<String, usize>,
    /// The ids, in index order.
    pub ids: Vec<String>,
}

impl Names {
    /// Every node id; a second node with the same id is an error.
    pub fn of(spec: &FlowSpec<'_>, dec: &mut Decoder) -> Names {
        let mut index = HashMap::with_capacity(spec.nodes.len());
        let mut ids = Vec::with_capacity(spec.nodes.len());
        for n in &spec.nodes {
            if n.nth > 0 {
                dec.push(
                    Diagnostic::error(format!("duplicate node id `{}`", n.id))
                        .at(n.at.clone(), &n.id)
                        .label("each node id may be used once"),
                );
            } else {
                index.insert(n.id.clone(), ids.len());
                ids.push(n.id.clone());
            }
        }
        Names { index, ids }
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn suggest(&self, name: &str) -> Option<&str> {
        did_you_mean(name, self.ids.iter().map(String::as_str))
    }

    /// Reports `name` as unknown at `place`, with the closest id as a hint.
    pub fn unknown(&self, dec: &mut Decoder, what: &str, name: &str, place: &Place) {
        let mut d = Diagnostic::error(format!("{what} names unknown node `{name}`"))
            .at(place.path.clone(), name)
            .offset(place.offset);
        if let Some(s) = self.suggest(name) {
            d = d.label(format!("did you mean `{s}`?"));
        }
        dec.push(d);
    }

    /// The nodes each built node routes to or runs; unknown ones are errors.
    pub fn check_references(
        &self,
        built: &[Option<FlowNode>],
        dec: &mut Decoder,
    ) -> Vec<Reference> {
        let mut out = Vec::new();
        for (owner, node) in built.iter().enumerate() {
            let Some(node) = node else { continue };
            for r in node.node.references() {
                match self.get(&r.id) {
                    Some(target) => out.push(Reference { owner, target, r }),
                    None => {
                        let what = match r.role {
                            RefRole::Route => {
                                format!("node `{}` routes to `{}`, which", node.id, r.id)
                            }
                            RefRole::Invoke => format!("node `{}` runs `{}`, which", node.id, r.id),
                        };
                        let mut d = Diagnostic::error(format!("{what} is not a node"))
                            .at(r.at.clone(), &r.id);
                        if let Some(s) = self.suggest(&r.id) {
                            d = d.label(format!("did you mean `{s}`?"));
                        }
                        dec.push(d);
                    }
                }
            }
        }
        out
    }

    /// Every `on_error: goto` target, in the flow policy, the profiles and the nodes.
    pub fn check_gotos(&self, spec: &FlowSpec<'_>, dec: &mut Decoder) {
        let layers = std::iter::once((Layer::Flow, &spec.policy))
            .chain(
                spec.profiles
                    .iter()
                    .map(|(name, p)| (Layer::Profile(name), p)),
            )
            .chain(spec.nodes.iter().map(|n| (Layer::Node(&n.id), &n.policy)));
        for (owner, policy) in layers {
            let (Some(OnError::Goto(target)), Some(path)) = (&policy.on_error, &policy.goto_at)
            else {
                continue;
            };
            if self.get(target).is_none() {
                let mut d =
                    Diagnostic::error(format!("{owner} has unknown goto target `{target}`"))
                        .at(path.clone(), target);
                if let Some(s) = self.suggest(target) {
                    d = d.label(format!("did you mean `{s}`?"));
                }
                dec.push(d);
            }
        }
    }

    /// The entry nodes: those `entry` names, or the first node.
    pub fn entry(&self, spec: &FlowSpec<'_>, dec: &mut Decoder) -> Vec<usize> {
        let mut entry = Vec::new();
        for (name, path) in &spec.entry {
            match self.get(name) {
                Some(i) => entry.push(i),
                None => self.unknown(dec, "`entry`", name, &at(path)),
            }
        }
        if spec.entry.is_empty() && !self.ids.is_empty() {
            entry.push(0);
        }
        entry
    }
}

fn at(path: &YPath) -> Place {
    Place {
        path: path.clone(),
        offset: 0,
    }
}

/// A policy layer, for messages.
enum Layer<'a> {
    Flow,
    Profile(&'a str),
    Node(&'a str),
}

impl std::fmt::Display for Layer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Flow => f.write_str("the flow policy"),
            Layer::Profile(name) => write!(f, "profile `{name}`"),
            Layer::Node(id) => write!(f, "node `{id}`"),
        }
    }
}
