//! A loaded, validated flow: built nodes, compiled values and conditions, and the graph
//! facts the runner needs (edges, joins, what can reach what).

use crate::condition::Condition;
use crate::decode::Decoder;
use crate::diagnostic::{Diagnostic, Source};
use crate::graph::GraphFacts;
use crate::node::{Node, NodeRegistry};
use crate::path::CtxPath;
use crate::policy::PolicySpec;
use crate::spec::decode_flow;
use crate::template::Reads;
use crate::value::ValueSpec;
use std::collections::{BTreeMap, HashMap};

/// Where a node's output goes.
#[derive(Debug, Clone)]
pub enum Outputs {
    Path(CtxPath),
    /// Picks fields of the output: `{field: $ctx.path}`.
    Fields(Vec<(String, CtxPath)>),
    /// Several places: `[$ctx.a, {field: $ctx.b}]`, the whole output at a path, a field of
    /// it at a field's. In an illumo-flow flow (where a map is read this way too) a
    /// missing field writes the whole output, as there; natively it is an error.
    Targets(Vec<(Option<String>, CtxPath)>),
}

impl Outputs {
    pub fn paths(&self) -> Vec<&CtxPath> {
        match self {
            Outputs::Path(p) => vec![p],
            Outputs::Fields(f) => f.iter().map(|(_, p)| p).collect(),
            Outputs::Targets(t) => t.iter().map(|(_, p)| p).collect(),
        }
    }
}

pub struct FlowNode {
    pub id: String,
    /// Where the node is written (its key in `nodes:`).
    pub at: crate::yaml::YPath,
    pub type_name: &'static str,
    pub node: Box<dyn Node>,
    pub inputs: Option<ValueSpec>,
    pub outputs: Option<Outputs>,
    pub policy: PolicySpec,
    /// What the node itself (and nodes it invokes) read from ctx, beyond its input.
    pub snapshot_reads: Option<Reads>,
    pub describe: Option<String>,
    /// A digest of the node as written (type, settings, inputs, outputs, policy).
    pub digest: String,
    /// Settings left out as illumo-flow leaves them (keys the node type does not have).
    pub ignored_settings: Vec<String>,
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
    /// For a join: the forward parents it waits for, in node order.
    pub joins: Vec<Option<Vec<usize>>>,
    /// Every node each node may lead to: edges, routing targets, goto targets.
    pub transitions: Vec<Vec<usize>>,
    /// The same, reversed: every node that may lead to each node.
    pub predecessors: Vec<Vec<usize>>,
    /// Nodes run only by another node (loop bodies).
    pub invoked: Vec<bool>,
    /// What can follow what, loops, and which nodes may run at the same time.
    pub graph: GraphFacts,
    pub max_steps: u64,
    pub max_parallel: usize,
    pub policy: PolicySpec,
    pub profiles: BTreeMap<String, PolicySpec>,
    pub warnings: Vec<Diagnostic>,
    /// Environment variables whose values nodes send as credentials.
    pub secret_env: Vec<String>,
    /// For each node: is its output kept in `ctx.payloads`?
    pub keep_payload: Vec<bool>,
    /// Whose vocabulary the file is written in; illumo-flow's keeps its ctx shapes.
    pub dialect: crate::dialect::Dialect,
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
    /// The policy node `index` runs under: the flow's, then `overrides` (a profile,
    /// `--policy`), then the node's own.
    pub fn policy_of(
        &self,
        index: usize,
        overrides: &crate::policy::PolicySpec,
    ) -> crate::policy::Policy {
        let spec = self
            .policy
            .overlay(overrides)
            .overlay(&self.nodes[index].policy);
        match self.dialect {
            crate::dialect::Dialect::IllumoFlow => {
                crate::dialect::illumo_flow_meaning(spec).resolve()
            }
            crate::dialect::Dialect::Native => spec.resolve(),
        }
    }

    /// The values of the credentials nodes send ([`Flow::secret_env`]), as set now.
    pub fn secrets(&self) -> Vec<String> {
        self.secret_env
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter(|value| !value.is_empty())
            .collect()
    }

    /// Can `a` and `b` run at the same time: neither follows the other, and some fan-out
    /// leads to both through different branches?
    pub fn may_run_in_parallel(&self, a: usize, b: usize) -> bool {
        self.graph.may_run_in_parallel(a, b)
    }

    /// Reads, decodes, builds and validates a flow; every problem is reported at once.
    pub fn load(source: Source, registry: &NodeRegistry) -> Result<Flow, LoadError> {
        Flow::load_for(source, registry, None)
    }

    /// The same, for a run that chose `profile`: the profile's `llm:` defaults apply to
    /// the agents (a profile's policy is applied by the run itself).
    pub fn load_for(
        source: Source,
        registry: &NodeRegistry,
        profile: Option<&str>,
    ) -> Result<Flow, LoadError> {
        Flow::load_with(source, registry, profile, None)
    }

    /// The same, with a goto the command line adds (`--policy`): the graph knows the
    /// failing nodes may lead to `extra_goto`, so a join waits for what it may bring.
    pub fn load_with(
        source: Source,
        registry: &NodeRegistry,
        profile: Option<&str>,
        extra_goto: Option<&str>,
    ) -> Result<Flow, LoadError> {
        let parsed = crate::yaml::parse(&source.text);
        Flow::load_parsed(source, parsed, registry, profile, extra_goto)
    }

    /// [`Flow::load_with`] for a text the caller has parsed already (to look at it
    /// first), so a big file is parsed once.
    pub fn load_parsed(
        source: Source,
        parsed: Result<crate::yaml::Parsed, crate::yaml::ParseError>,
        registry: &NodeRegistry,
        profile: Option<&str>,
        extra_goto: Option<&str>,
    ) -> Result<Flow, LoadError> {
        let mut dec = Decoder {
            profile: profile.map(str::to_string),
            extra_goto: extra_goto.map(str::to_string),
            ..Decoder::default()
        };
        let parsed = match parsed {
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
                .and_then(|spec| crate::validate::build(spec, registry, &mut dec, &source))
        });
        if let Some(parsed) = &parsed {
            crate::diagnostic::resolve_in(&mut dec.diags, parsed, Some(&source.text));
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
