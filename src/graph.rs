//! `illumo graph`: the flow as Mermaid or Graphviz dot.

use crate::cli::GraphFormat;
use illumo_engine::flow::Flow;
use illumo_engine::node::RefRole;
use illumo_engine::policy::OnError;

/// One arrow of the picture.
struct Arrow {
    from: usize,
    to: usize,
    label: Option<String>,
    dashed: bool,
}

/// The arrows: edges (a router's edges are replaced by its routes), routes and loop
/// bodies dashed with their condition or choice, gotos dashed `on error`.
fn arrows(flow: &Flow) -> Vec<Arrow> {
    let mut out = Vec::new();
    for (from, edges) in flow.edges.iter().enumerate() {
        if flow.nodes[from].node.routes() {
            continue;
        }
        for e in edges {
            out.push(Arrow {
                from,
                to: e.to,
                label: e.when.as_ref().map(|c| c.source().to_string()),
                dashed: false,
            });
        }
    }
    for (from, node) in flow.nodes.iter().enumerate() {
        for r in node.node.references() {
            if let Some(&to) = flow.index.get(&r.id) {
                let label = r.label.unwrap_or_else(|| match r.role {
                    RefRole::Route => "route".into(),
                    RefRole::Invoke => "each".into(),
                });
                out.push(Arrow {
                    from,
                    to,
                    label: Some(label),
                    dashed: true,
                });
            }
        }
        if let Some(OnError::Goto(target)) = &node.policy.on_error {
            if let Some(&to) = flow.index.get(target) {
                out.push(Arrow {
                    from,
                    to,
                    label: Some("on error".into()),
                    dashed: true,
                });
            }
        }
    }
    out
}

/// Where runs end: nodes that lead nowhere (loop bodies return to their loop).
fn ends(flow: &Flow) -> Vec<usize> {
    (0..flow.nodes.len())
        .filter(|&i| flow.transitions[i].is_empty() && !flow.invoked[i])
        .collect()
}

/// Ids for the start and end markers that no node of the flow has.
fn marker_ids(flow: &Flow) -> (String, String) {
    let mut prefix = "__".to_string();
    while flow.index.contains_key(&format!("{prefix}start"))
        || flow.index.contains_key(&format!("{prefix}end"))
    {
        prefix.push('_');
    }
    (format!("{prefix}start"), format!("{prefix}end"))
}

fn escape(text: &str) -> String {
    text.replace('"', "'")
}

pub fn render(flow: &Flow, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for (i, n) in flow.nodes.iter().enumerate() {
                let join = if flow.joins[i].is_some() {
                    " (join)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "    {}[\"{}<br/>{}{join}\"]\n",
                    n.id, n.id, n.type_name
                ));
            }
            let (start, end) = marker_ids(flow);
            out.push_str(&format!("    {start}([start])\n    {end}([end])\n"));
            for &e in &flow.entry {
                out.push_str(&format!("    {start} --> {}\n", flow.id(e)));
            }
            for a in arrows(flow) {
                let (from, to) = (flow.id(a.from), flow.id(a.to));
                match (a.label, a.dashed) {
                    (None, _) => out.push_str(&format!("    {from} --> {to}\n")),
                    (Some(l), false) => {
                        out.push_str(&format!("    {from} -- \"{}\" --> {to}\n", escape(&l)))
                    }
                    (Some(l), true) => {
                        out.push_str(&format!("    {from} -. \"{}\" .-> {to}\n", escape(&l)))
                    }
                }
            }
            for e in ends(flow) {
                out.push_str(&format!("    {} --> {end}\n", flow.id(e)));
            }
        }
        GraphFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box];\n",
                escape(&flow.name)
            ));
            for (i, n) in flow.nodes.iter().enumerate() {
                let join = if flow.joins[i].is_some() {
                    "\\n(join)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "    \"{}\" [label=\"{}\\n{}{join}\"];\n",
                    n.id, n.id, n.type_name
                ));
            }
            let (start, end) = marker_ids(flow);
            out.push_str(&format!(
                "    \"{start}\" [label=\"start\", shape=circle];\n    \"{end}\" [label=\"end\", shape=doublecircle];\n"
            ));
            for &e in &flow.entry {
                out.push_str(&format!("    \"{start}\" -> \"{}\";\n", flow.id(e)));
            }
            for a in arrows(flow) {
                let mut attrs = vec![];
                if let Some(l) = a.label {
                    attrs.push(format!("label=\"{}\"", escape(&l)));
                }
                if a.dashed {
                    attrs.push("style=dashed".into());
                }
                let attrs = if attrs.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", attrs.join(", "))
                };
                out.push_str(&format!(
                    "    \"{}\" -> \"{}\"{attrs};\n",
                    flow.id(a.from),
                    flow.id(a.to)
                ));
            }
            for e in ends(flow) {
                out.push_str(&format!("    \"{}\" -> \"{end}\";\n", flow.id(e)));
            }
            out.push_str("}\n");
        }
    }
    out
}
