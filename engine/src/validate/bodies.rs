//! Nodes run by other nodes (loop bodies): their output goes to the node that runs them,
//! so `outputs:` on a body would be a write nobody makes.

use super::Reference;
use crate::decode::Decoder;
use crate::diagnostic::Diagnostic;
use crate::flow::FlowNode;
use crate::node::RefRole;
use crate::spec::FlowSpec;

pub(crate) fn check(
    built: &[Option<FlowNode>],
    references: &[Reference],
    spec: &FlowSpec<'_>,
    dec: &mut Decoder,
) {
    let specs: Vec<_> = spec.nodes.iter().filter(|n| n.nth == 0).collect();
    let mut reported = std::collections::HashSet::new();
    for r in references.iter().filter(|r| r.r.role == RefRole::Invoke) {
        let (Some(owner), Some((_, at))) = (&built[r.owner], &specs[r.target].outputs) else {
            continue;
        };
        if !reported.insert(r.target) {
            continue;
        }
        let body = &specs[r.target].id;
        dec.push(
            Diagnostic::error(format!(
                "node `{body}` has `outputs`, but `{}` runs it for each item",
                owner.id
            ))
            .at(at.clone().as_key(), "outputs")
            .label("remove it: the body's outputs go into the loop's list")
            .help(format!(
                "give `{}` the `outputs` instead; other writes of the body (an agent's `metadata_path`) are applied after the loop",
                owner.id
            )),
        );
    }
}
