//! Every node built by its factory, with its `inputs` and `outputs`. A problem in one part
//! of a node does not hide problems in the others.

use crate::decode::Decoder;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::flow::{FlowNode, Outputs};
use crate::node::{compile_value, BuildCx, NodeName, NodeRegistry};
use crate::path::{CtxPath, Root};
use crate::spec::{FlowSpec, NodeSpec};
use crate::yaml::{YPath, Yaml};

/// One entry per distinct node id, `None` where the node had errors.
pub(crate) fn build_all(
    spec: &FlowSpec<'_>,
    registry: &NodeRegistry,
    dec: &mut Decoder,
    base_dir: &std::path::Path,
    flow_dir: &std::path::Path,
) -> Vec<Option<FlowNode>> {
    spec.nodes
        .iter()
        .filter(|n| n.nth == 0)
        .map(|n| build_node(n, registry, dec, (base_dir, flow_dir), spec.dialect))
        .collect()
}

fn build_node(
    n: &NodeSpec<'_>,
    registry: &NodeRegistry,
    dec: &mut Decoder,
    (base_dir, flow_dir): (&std::path::Path, &std::path::Path),
    dialect: crate::dialect::Dialect,
) -> Option<FlowNode> {
    let owner = NodeName(&n.id);
    let inputs = n
        .inputs
        .as_ref()
        .map(|(value, path)| compile_value(dec, &owner, &|| path.clone(), value));
    let outputs = n
        .outputs
        .as_ref()
        .map(|(yaml, path)| decode_outputs(dec, &owner, yaml, path));
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
    let mut cx = BuildCx::new(&n.id, base_dir, &n.setting, n.setting_at.clone(), dec)
        .with_registry(registry)
        .with_dialect(dialect)
        .with_flow_dir(flow_dir);
    let node = factory.build(&mut cx);
    let ignored_settings = cx.ignored().to_vec();
    Some(FlowNode {
        ignored_settings,
        digest: digest_of(n),
        id: n.id.clone(),
        at: n.at.clone(),
        type_name: factory.type_name(),
        node: node?,
        inputs: inputs.map_or(Some(None), |i| i.map(Some))?,
        outputs: outputs.map_or(Some(None), |o| o.map(Some))?,
        policy: n.policy.clone(),
        snapshot_reads: None,
        describe: n.describe.clone(),
    })
}

/// A digest of everything the node is written with, so a resume can tell that a node
/// that already ran was changed since.
fn digest_of(n: &NodeSpec<'_>) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{:?}",
        n.type_name,
        n.setting.to_json(),
        n.inputs
            .as_ref()
            .map(|(v, _)| v.to_string())
            .unwrap_or_default(),
        n.outputs
            .as_ref()
            .map(|(y, _)| y.to_json().to_string())
            .unwrap_or_default(),
        n.policy
    );
    crate::journal::digest(text.as_bytes())
}

fn decode_outputs(
    dec: &mut Decoder,
    owner: &NodeName<'_>,
    yaml: &Yaml,
    path: &YPath,
) -> Option<Outputs> {
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
            dec.push(crate::node::path_error(owner, at, text, &e));
            None
        }
    };
    // `{field: $ctx.path}` entries, each checked; None when one is wrong.
    let fields = |dec: &mut Decoder, map: &Yaml, at: &YPath, what: &str| {
        let entries = dec.map(map, at, what)?;
        let mut all = Some(vec![]);
        for e in &entries {
            let parsed = dec
                .string(e, "an output path")
                .and_then(|text| target(dec, &text, e.path.clone()));
            match (parsed, all.as_mut()) {
                (Some(p), Some(a)) => a.push((e.key.to_string(), p)),
                _ => all = None,
            }
        }
        all
    };
    let named = |list: Vec<(String, CtxPath)>| -> Vec<(Option<String>, CtxPath)> {
        list.into_iter().map(|(k, p)| (Some(k), p)).collect()
    };
    let illumo_flow = dec.dialect == crate::dialect::Dialect::IllumoFlow;
    match yaml {
        Yaml::Scalar(serde_json::Value::String(s)) => {
            target(dec, s, path.clone()).map(Outputs::Path)
        }
        Yaml::Map(_) if illumo_flow => {
            fields(dec, yaml, path, "`outputs`").map(|f| Outputs::Targets(named(f)))
        }
        Yaml::Seq(items) if !items.is_empty() => {
            let mut targets = Some(vec![]);
            for (i, item) in items.iter().enumerate() {
                let at = path.index(i);
                let parsed = match item {
                    Yaml::Scalar(serde_json::Value::String(s)) => {
                        target(dec, s, at).map(|p| vec![(None, p)])
                    }
                    Yaml::Map(_) => fields(dec, item, &at, "an `outputs` item").map(named),
                    other => {
                        dec.push(
                            Diagnostic::error(format!(
                                "{owner}: each `outputs` item must be a `$ctx.` path or a map of them, not {}",
                                other.kind()
                            ))
                            .at(at, &other.display()),
                        );
                        None
                    }
                };
                match (parsed, targets.as_mut()) {
                    (Some(p), Some(t)) => t.extend(p),
                    _ => targets = None,
                }
            }
            targets.map(Outputs::Targets)
        }
        Yaml::Map(_) => fields(dec, yaml, path, "`outputs`").map(Outputs::Fields),
        other => {
            dec.push(
                Diagnostic::error(format!(
                    "{owner}: `outputs` must be a `$ctx.` path, a map of them or a list of them, not {}",
                    other.kind()
                ))
                .at(path.clone(), &other.display()),
            );
            None
        }
    }
}
