//! The flow file decoded into plain data, with the place of everything validation may
//! complain about. Node settings stay YAML here; their factories read them later.

use crate::decode::{Decoder, Entry};
use crate::diagnostic::Diagnostic;
use crate::dialect::Dialect;
use crate::policy::PolicySpec;
use crate::yaml::{YPath, Yaml};
use serde_json::Value;

pub const DEFAULT_MAX_STEPS: u64 = 1000;
pub const DEFAULT_MAX_PARALLEL: usize = 8;

#[derive(Debug, Clone)]
pub struct FlowSpec<'y> {
    pub name: String,
    pub describe: Option<String>,
    pub entry: Vec<(String, YPath)>,
    pub max_steps: u64,
    pub max_parallel: usize,
    pub payloads: Payloads,
    /// Whose vocabulary the file is written in.
    pub dialect: crate::dialect::Dialect,
    pub policy: PolicySpec,
    pub profiles: Vec<(String, PolicySpec)>,
    pub nodes: Vec<NodeSpec<'y>>,
    pub edges: Vec<EdgeSpec>,
}

#[derive(Debug, Clone)]
pub struct NodeSpec<'y> {
    pub id: String,
    /// The node's key in `nodes:`.
    pub at: YPath,
    /// Which occurrence of this id (duplicates are reported).
    pub nth: usize,
    pub type_name: String,
    pub type_at: YPath,
    /// The settings as written (borrowed from the file's tree), minus a `policy` key.
    pub setting: std::borrow::Cow<'y, Yaml>,
    pub setting_at: YPath,
    pub inputs: Option<(Value, YPath)>,
    pub outputs: Option<(std::borrow::Cow<'y, Yaml>, YPath)>,
    pub policy: PolicySpec,
    pub describe: Option<String>,
}

/// Which node outputs stay in `ctx.payloads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Payloads {
    /// Every node's (illumo-flow's behaviour).
    #[default]
    All,
    /// Only those some node reads (`$payload.<id>`, `$ctx.payloads.<id>`).
    Referenced,
}

/// How a node with several incoming edges fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Wait for every parent that can still arrive (`(a & b) >> c`, or plain edges).
    All,
    /// Fire once per arriving parent (`(a | b) >> c`).
    Any,
}

#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub from: String,
    pub to: String,
    pub when: Option<String>,
    pub mode: JoinMode,
    pub from_at: Place,
    pub to_at: Place,
    pub when_at: Option<YPath>,
}

/// Where a name was written: a YAML value and an offset inside it (for edge strings).
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub path: YPath,
    pub offset: usize,
}

const FLOW_KEYS: [&str; 11] = [
    "name",
    "describe",
    "entry",
    "max_steps",
    "max_parallel",
    "payloads",
    "llm",
    "policy",
    "profiles",
    "nodes",
    "edges",
];
const NODE_KEYS: [&str; 7] = [
    "type", "setting", "inputs", "outputs", "policy", "describe", "context",
];

/// Decodes a whole flow file; `None` only when its shape is too broken to go on.
pub fn decode_flow<'y>(dec: &mut Decoder, root: &'y Yaml) -> Option<FlowSpec<'y>> {
    let top = YPath::root();
    let entries = dec.map(root, &top, "a flow file")?;
    // illumo-flow reads a file without the `flow:` wrapper as the flow itself.
    let bare = Entry {
        key: "flow",
        value: root,
        path: YPath::root(),
    };
    let wrapped = entries.iter().find(|e| e.key == "flow");
    let flow = match wrapped {
        Some(f) => f,
        None if crate::dialect::detect(root) == Dialect::IllumoFlow => &bare,
        None => {
            dec.push(
                Diagnostic::error("the flow file has no `flow:` section").help(
                    "start the file with `flow:` and put `name`, `nodes` and `edges` under it",
                ),
            );
            return None;
        }
    };
    if wrapped.is_some() {
        // `x-...` keys beside `flow:` hold anchors to reuse (`x-llm: &llm`, then
        // `<<: *llm`), as in Compose files; they are not part of the flow.
        let own: Vec<Entry> = entries
            .iter()
            .filter(|e| !e.key.starts_with("x-"))
            .cloned()
            .collect();
        dec.known_keys(&own, &["flow"], "the flow file");
    }
    let dialect = crate::dialect::detect(flow.value);
    dec.dialect = dialect;
    let fields = dec.map(flow.value, &flow.path, "`flow`")?;
    match dialect {
        Dialect::Native => dec.known_keys(&fields, &FLOW_KEYS, "`flow`"),
        Dialect::IllumoFlow => {
            dec.unique_keys(&fields, "`flow`");
            for f in fields.iter().filter(|f| !FLOW_KEYS.contains(&f.key)) {
                dec.push(
                    Diagnostic::warning(format!(
                        "`{}` in `flow` is ignored, as illumo-flow ignores it",
                        f.key
                    ))
                    .at(f.path.clone().as_key(), f.key),
                );
            }
            if let Some(nodes) = fields.iter().find(|f| f.key == "nodes") {
                dec.push(crate::dialect::note(nodes.path.clone().as_key()));
            }
        }
    }
    let mut llm: Vec<(String, Yaml)> = Vec::new();
    let mut chosen_llm: Option<Vec<(String, Yaml)>> = None;
    let mut llm_policy = PolicySpec::default();
    let mut spec = FlowSpec {
        name: "flow".into(),
        describe: None,
        entry: vec![],
        max_steps: DEFAULT_MAX_STEPS,
        // illumo-flow runs one node at a time, in queue order.
        max_parallel: match dialect {
            Dialect::IllumoFlow => 1,
            Dialect::Native => DEFAULT_MAX_PARALLEL,
        },
        payloads: Payloads::All,
        dialect,
        policy: PolicySpec::default(),
        profiles: vec![],
        nodes: vec![],
        edges: vec![],
    };
    for e in &fields {
        match e.key {
            "name" => spec.name = dec.string(e, "`name`").unwrap_or(spec.name),
            "describe" => spec.describe = dec.string(e, "`describe`"),
            "entry" => spec.entry = decode_entry(dec, e),
            "max_steps" => {
                spec.max_steps = dec
                    .integer(e, "`max_steps`", 1, 10_000_000)
                    .map_or(spec.max_steps, |n| n as u64)
            }
            "max_parallel" => {
                spec.max_parallel = dec
                    .integer(e, "`max_parallel`", 1, 10_000)
                    .map_or(spec.max_parallel, |n| n as usize)
            }
            "payloads" => match dec.string(e, "`payloads`").as_deref() {
                Some("all") => spec.payloads = Payloads::All,
                Some("referenced") => spec.payloads = Payloads::Referenced,
                Some(other) => dec.push(
                    Diagnostic::error(format!("unknown `payloads` value `{other}`"))
                        .at(e.path.clone(), other)
                        .label("expected `all` or `referenced`")
                        .help("`all` keeps every node's output in ctx.payloads (the default); `referenced` only the outputs some node reads"),
                ),
                None => {}
            },
            "policy" => {
                spec.policy = match dialect {
                    // illumo-flow's retry counts and fail_fast, as on its nodes.
                    Dialect::IllumoFlow => crate::dialect::decode_policy(dec, e.value, &e.path),
                    Dialect::Native => PolicySpec::decode(dec, e.value, &e.path),
                }
            }
            "profiles" => {
                if let Some(profiles) = dec.map(e.value, &e.path, "`profiles`") {
                    for p in &profiles {
                        // A profile is a policy layer, and may set `llm:` defaults too
                        // (a local model in dev, a hosted one in prod).
                        let policy_part = match p.value {
                            Yaml::Map(entries) => Yaml::Map(
                                entries.iter().filter(|(k, _)| k != "llm").cloned().collect(),
                            ),
                            other => other.clone(),
                        };
                        if let Yaml::Map(entries) = p.value {
                            let llm_entry = dec
                                .map(p.value, &p.path, "a profile")
                                .and_then(|fields| fields.into_iter().find(|f| f.key == "llm"));
                            if let (Some(llm_entry), true) =
                                (llm_entry, entries.iter().any(|(k, _)| k == "llm"))
                            {
                                let profile_llm = decode_llm(dec, &llm_entry);
                                if dec.profile.as_deref() == Some(p.key) {
                                    chosen_llm = Some(profile_llm);
                                }
                            }
                        }
                        spec.profiles.push((
                            p.key.to_string(),
                            PolicySpec::decode(dec, &policy_part, &p.path),
                        ));
                    }
                }
            }
            "nodes" => {
                if let Some(nodes) = dec.map(e.value, &e.path, "`nodes`") {
                    spec.nodes = match dialect {
                        Dialect::Native => nodes.iter().filter_map(|n| decode_node(dec, n)).collect(),
                        Dialect::IllumoFlow => nodes
                            .iter()
                            .filter_map(|n| crate::dialect::decode_node(dec, n))
                            .collect(),
                    };
                }
            }
            "llm" => llm = decode_llm(dec, e),
            "edges" => {
                spec.edges = decode_edges(dec, e);
                if dialect == Dialect::IllumoFlow {
                    // illumo-flow reads `|` like `&`: `(a | b) >> c` waits for both.
                    for edge in &mut spec.edges {
                        edge.mode = JoinMode::All;
                    }
                }
            }
            _ => {}
        }
    }
    // illumo-flow names a run after its entry (its root span, its trace list).
    if dialect == Dialect::IllumoFlow && !fields.iter().any(|e| e.key == "name") {
        if let Some((entry, _)) = spec.entry.first() {
            spec.name = entry.clone();
        }
    }
    // The chosen profile's `llm:` keys replace the flow's.
    if let Some(profile_llm) = chosen_llm {
        for (key, value) in profile_llm {
            match llm.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => llm.push((key, value)),
            }
        }
    }
    // `llm:` defaults for every agent, under what each agent sets itself.
    let (llm_settings, policy_part): (Vec<_>, Vec<_>) = llm
        .into_iter()
        .partition(|(k, _)| k != "timeout" && k != "retries");
    for (key, value) in policy_part {
        let one = Yaml::Map(vec![(
            if key == "retries" {
                "retry".to_string()
            } else {
                key.clone()
            },
            match (key.as_str(), value) {
                ("retries", Yaml::Scalar(Value::Number(n))) => Yaml::Map(vec![(
                    "max_attempts".into(),
                    Yaml::Scalar(Value::from(n.as_u64().unwrap_or(0) + 1)),
                )]),
                (_, v) => v,
            },
        )]);
        llm_policy = llm_policy.overlay(&PolicySpec::decode(dec, &one, &flow.path.key("llm")));
    }
    for node in spec
        .nodes
        .iter_mut()
        .filter(|n| n.type_name.ends_with("Agent"))
    {
        node.policy = llm_policy.overlay(&node.policy);
        if llm_settings.is_empty() {
            continue;
        }
        let mut entries = match node.setting.as_ref() {
            Yaml::Map(e) => e.clone(),
            _ => Vec::new(),
        };
        for (k, v) in &llm_settings {
            if !entries.iter().any(|(have, _)| have == k) {
                entries.push((k.clone(), v.clone()));
            }
        }
        node.setting = std::borrow::Cow::Owned(Yaml::Map(entries));
    }
    if !fields.iter().any(|e| e.key == "nodes") {
        dec.push(Diagnostic::error("`flow` has no `nodes`").at(flow.path.clone().as_key(), "flow"));
    }
    Some(spec)
}

/// The keys an `llm:` block may set for every agent.
const LLM_KEYS: [&str; 11] = [
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "stop",
    "timeout",
    "retries",
];

fn decode_llm(dec: &mut Decoder, e: &Entry) -> Vec<(String, Yaml)> {
    let Some(entries) = dec.map(e.value, &e.path, "`llm`") else {
        return Vec::new();
    };
    dec.known_keys(&entries, &LLM_KEYS, "`llm`");
    entries
        .iter()
        .filter(|x| LLM_KEYS.contains(&x.key))
        .map(|x| (x.key.to_string(), x.value.clone()))
        .collect()
}

fn decode_entry(dec: &mut Decoder, e: &Entry) -> Vec<(String, YPath)> {
    match e.value {
        Yaml::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let entry = Entry {
                    key: "entry",
                    value: item,
                    path: e.path.index(i),
                };
                dec.string(&entry, "an `entry` node")
                    .map(|s| (s, entry.path))
            })
            .collect(),
        _ => dec
            .string(e, "`entry`")
            .map(|s| vec![(s, e.path.clone())])
            .unwrap_or_default(),
    }
}

fn decode_node<'y>(dec: &mut Decoder, n: &Entry<'y>) -> Option<NodeSpec<'y>> {
    if n.key.is_empty()
        || !n
            .key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        dec.push(
            Diagnostic::error(format!("invalid node id `{}`", n.key))
                .at(n.path.clone().as_key(), n.key)
                .label("use letters, digits, `_` and `-`"),
        );
    }
    let fields = dec.map(n.value, &n.path, format_args!("node `{}`", n.key))?;
    dec.known_keys(&fields, &NODE_KEYS, format_args!("node `{}`", n.key));
    let nth = match n.path.last() {
        Some(crate::yaml::Seg::Key(_, nth)) => *nth,
        _ => 0,
    };
    let mut node = NodeSpec {
        id: n.key.to_string(),
        at: n.path.clone().as_key(),
        nth,
        type_name: String::new(),
        type_at: n.path.clone().as_key(),
        setting: std::borrow::Cow::Owned(Yaml::Scalar(Value::Null)),
        setting_at: n.path.key("setting"),
        inputs: None,
        outputs: None,
        policy: PolicySpec::default(),
        describe: None,
    };
    if !fields
        .iter()
        .any(|f| f.key == "setting" || f.key == "context")
    {
        // No `setting:` to point at: problems with the settings point at the node's id.
        node.setting_at = n.path.clone().as_key();
    }
    let mut type_seen = false;
    for f in &fields {
        match f.key {
            "type" => {
                type_seen = true;
                node.type_at = f.path.clone();
                node.type_name = dec.string(f, "`type`").unwrap_or_default();
            }
            "setting" => {
                dec.unique_keys_deep(
                    f.value,
                    &f.path,
                    format_args!("the settings of node `{}`", n.key),
                );
                node.setting_at = f.path.clone();
                node.setting = take_setting_policy(dec, f, &mut node.policy);
            }
            "inputs" => node.inputs = Some((f.value.to_json(), f.path.clone())),
            "outputs" => node.outputs = Some((std::borrow::Cow::Borrowed(f.value), f.path.clone())),
            "policy" => {
                node.policy = node
                    .policy
                    .overlay(&PolicySpec::decode(dec, f.value, &f.path))
            }
            "describe" => node.describe = dec.string(f, "`describe`"),
            "context" => {
                let Some(ctx) = dec.map(f.value, &f.path, "`context`") else {
                    continue;
                };
                dec.known_keys(&ctx, &["inputs", "outputs"], "`context`");
                for c in &ctx {
                    match c.key {
                        "inputs" => node.inputs = Some((c.value.to_json(), c.path.clone())),
                        "outputs" => {
                            node.outputs =
                                Some((std::borrow::Cow::Borrowed(c.value), c.path.clone()))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !type_seen {
        dec.push(
            Diagnostic::error(format!("node `{}` has no `type`", n.key))
                .at(n.path.clone().as_key(), n.key)
                .help("add `type: Set` (or another type from `illumo nodes`)"),
        );
        return None;
    }
    Some(node)
}

/// illumo-flow wrote node policies as `setting.policy`; take it out so the factory never
/// sees it.
fn take_setting_policy<'y>(
    dec: &mut Decoder,
    f: &Entry<'y>,
    policy: &mut PolicySpec,
) -> std::borrow::Cow<'y, Yaml> {
    match f.value {
        Yaml::Map(entries) if entries.iter().any(|(k, _)| k == "policy") => {
            let mut rest = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                if k == "policy" {
                    *policy = policy.overlay(&PolicySpec::decode(dec, v, &f.path.key("policy")));
                } else {
                    rest.push((k.clone(), v.clone()));
                }
            }
            std::borrow::Cow::Owned(Yaml::Map(rest))
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}

fn decode_edges(dec: &mut Decoder, e: &Entry) -> Vec<EdgeSpec> {
    let Yaml::Seq(items) = e.value else {
        dec.push(
            Diagnostic::error(format!("`edges` must be a list, not {}", e.value.kind()))
                .at(e.path.clone(), &e.value.display()),
        );
        return vec![];
    };
    let mut edges = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = e.path.index(i);
        match item {
            Yaml::Scalar(Value::String(s)) => match parse_chain(s) {
                Ok(parsed) => edges.extend(parsed.into_iter().map(|p| EdgeSpec {
                    from: p.from,
                    to: p.to,
                    when: None,
                    mode: p.mode,
                    from_at: Place {
                        path: at.clone(),
                        offset: p.from_offset,
                    },
                    to_at: Place {
                        path: at.clone(),
                        offset: p.to_offset,
                    },
                    when_at: None,
                })),
                Err(err) => dec.push(
                    Diagnostic::error(format!("invalid edge `{s}`: {}", err.reason))
                        .at(at, &err.near)
                        .offset(err.offset)
                        .help("write edges as `a >> b >> c`, `a >> (b | c)` or `(a & b) >> c`"),
                ),
            },
            Yaml::Map(_) => edges.extend(decode_edge_map(dec, item, at)),
            other => dec.push(
                Diagnostic::error(format!(
                    "an edge must be a string like `a >> b` or a map, not {}",
                    other.kind()
                ))
                .at(at, &other.display()),
            ),
        }
    }
    edges
}

fn decode_edge_map(dec: &mut Decoder, item: &Yaml, at: YPath) -> Vec<EdgeSpec> {
    let Some(fields) = dec.map(item, &at, "an edge") else {
        return vec![];
    };
    dec.known_keys(&fields, &["from", "to", "when"], "an edge");
    let names = |dec: &mut Decoder, key: &str| -> Vec<(String, YPath)> {
        let Some(f) = fields.iter().find(|f| f.key == key) else {
            dec.push(Diagnostic::error(format!("an edge map needs `{key}`")).at(at.clone(), "{"));
            return vec![];
        };
        decode_entry(dec, f)
    };
    let from = names(dec, "from");
    let to = names(dec, "to");
    let when = fields.iter().find(|f| f.key == "when");
    let when_text = when.and_then(|w| dec.string(w, "`when`"));
    let mut edges = vec![];
    for (f, f_at) in &from {
        for (t, t_at) in &to {
            edges.push(EdgeSpec {
                from: f.clone(),
                to: t.clone(),
                when: when_text.clone(),
                mode: JoinMode::All,
                from_at: Place {
                    path: f_at.clone(),
                    offset: 0,
                },
                to_at: Place {
                    path: t_at.clone(),
                    offset: 0,
                },
                when_at: when.map(|w| w.path.clone()),
            });
        }
    }
    edges
}

/// One edge out of an edge string.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEdge {
    pub from: String,
    pub to: String,
    pub mode: JoinMode,
    pub from_offset: usize,
    pub to_offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainError {
    pub reason: String,
    pub offset: usize,
    pub near: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Then,
    Open,
    Close,
    Or,
    And,
}

/// The tokens of an edge string, each with its offset in characters (carets count
/// characters, not bytes).
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ChainError> {
    let mut tokens = vec![];
    let chars: Vec<(usize, char)> = text.chars().enumerate().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            ' ' | '\t' => {}
            '(' => tokens.push((Token::Open, at)),
            ')' => tokens.push((Token::Close, at)),
            '|' => tokens.push((Token::Or, at)),
            '&' => tokens.push((Token::And, at)),
            '>' if chars.get(i + 1).map(|c| c.1) == Some('>') => {
                tokens.push((Token::Then, at));
                i += 1;
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].1.is_alphanumeric()
                        || chars[i + 1].1 == '_'
                        || chars[i + 1].1 == '-')
                {
                    i += 1;
                }
                let name: String = chars[start..=i].iter().map(|c| c.1).collect();
                tokens.push((Token::Name(name), at));
            }
            other => {
                return Err(ChainError {
                    reason: format!("unexpected `{other}`"),
                    offset: at,
                    near: other.to_string(),
                })
            }
        }
        i += 1;
    }
    Ok(tokens)
}

/// The mode a group's `|` or `&` at `at` gives it; one group may not mix the two.
fn group_mode(op: &Token, at: usize, so_far: Option<JoinMode>) -> Result<JoinMode, ChainError> {
    let (this, text) = match op {
        Token::Or => (JoinMode::Any, "|"),
        _ => (JoinMode::All, "&"),
    };
    if so_far.is_some_and(|m| m != this) {
        return Err(ChainError {
            reason: "do not mix `|` and `&` in one group".into(),
            offset: at,
            near: text.into(),
        });
    }
    Ok(this)
}

/// Parses `a >> (b | c) >> d` into edges.
pub fn parse_chain(text: &str) -> Result<Vec<ChainEdge>, ChainError> {
    let tokens = tokenize(text)?;
    let length = text.chars().count();
    let char_at = |at: usize| text.chars().nth(at).map_or(" ".to_string(), String::from);
    let mut groups: Vec<(Vec<(String, usize)>, JoinMode)> = vec![];
    let mut i = 0;
    let err = |reason: &str, offset: usize, near: &str| ChainError {
        reason: reason.into(),
        offset,
        near: near.into(),
    };
    loop {
        match tokens.get(i) {
            Some((Token::Name(n), at)) => {
                // `a | b >> c` as `(a | b) >> c`: a group without parentheses.
                let mut names = vec![(n.clone(), *at)];
                let mut mode = None;
                i += 1;
                while let Some((t @ (Token::Or | Token::And), op_at)) = tokens.get(i) {
                    mode = Some(group_mode(t, *op_at, mode)?);
                    match tokens.get(i + 1) {
                        Some((Token::Name(n), at)) => names.push((n.clone(), *at)),
                        other => {
                            let at = other.map_or(length, |t| t.1);
                            return Err(err("expected a node name", at, &char_at(at)));
                        }
                    }
                    i += 2;
                }
                groups.push((names, mode.unwrap_or(JoinMode::All)));
            }
            Some((Token::Open, open_at)) => {
                let mut names = vec![];
                let mut mode = None;
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some((Token::Name(n), at)) => names.push((n.clone(), *at)),
                        _ => {
                            let at = tokens.get(i).map_or(length, |t| t.1);
                            return Err(err("expected a node name", at, &char_at(at)));
                        }
                    }
                    i += 1;
                    match tokens.get(i) {
                        Some((Token::Close, _)) => break,
                        Some((t @ (Token::Or | Token::And), at)) => {
                            mode = Some(group_mode(t, *at, mode)?);
                        }
                        _ => return Err(err("unclosed `(`", *open_at, "(")),
                    }
                    i += 1;
                }
                i += 1;
                groups.push((names, mode.unwrap_or(JoinMode::All)));
            }
            Some((_, at)) => return Err(err("expected a node name or `(`", *at, &char_at(*at))),
            None => return Err(err("expected a node name", length, " ")),
        }
        match tokens.get(i) {
            None => break,
            Some((Token::Then, _)) => i += 1,
            Some((_, at)) => return Err(err("expected `>>`", *at, &char_at(*at))),
        }
    }
    if groups.len() < 2 {
        return Err(err(
            "an edge needs at least two nodes joined by `>>`",
            0,
            text,
        ));
    }
    let mut edges = vec![];
    for pair in groups.windows(2) {
        let (from, mode) = &pair[0];
        let mode = if from.len() > 1 { *mode } else { JoinMode::All };
        for (f, f_at) in from {
            for (t, t_at) in &pair[1].0 {
                edges.push(ChainEdge {
                    from: f.clone(),
                    to: t.clone(),
                    mode,
                    from_offset: *f_at,
                    to_offset: *t_at,
                });
            }
        }
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, JoinMode)> {
        parse_chain(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.from, e.to, e.mode))
            .collect()
    }

    #[test]
    fn parses_chains_fan_out_and_fan_in() {
        use JoinMode::*;
        assert_eq!(
            pairs("a >> b >> c"),
            [("a".into(), "b".into(), All), ("b".into(), "c".into(), All)]
        );
        assert_eq!(
            pairs("a >> (b | c)"),
            [("a".into(), "b".into(), All), ("a".into(), "c".into(), All)]
        );
        assert_eq!(
            pairs("(a & b) >> c"),
            [("a".into(), "c".into(), All), ("b".into(), "c".into(), All)]
        );
        assert_eq!(
            pairs("(a | b) >> c"),
            [("a".into(), "c".into(), Any), ("b".into(), "c".into(), Any)]
        );
        // Groups without parentheses, as illumo-flow writes them.
        assert_eq!(pairs("a | b >> c"), pairs("(a | b) >> c"));
        assert_eq!(pairs("a >> b|c"), pairs("a >> (b | c)"));
        assert_eq!(pairs("a & b >> c >> d"), pairs("(a & b) >> c >> d"));
    }

    #[test]
    fn reports_syntax_errors_with_offsets() {
        let e = parse_chain("a >> (b | c").unwrap_err();
        assert_eq!((e.reason.as_str(), e.offset), ("unclosed `(`", 5));
        let e = parse_chain("a > b").unwrap_err();
        assert_eq!((e.reason.as_str(), e.offset), ("unexpected `>`", 2));
        let e = parse_chain("(a | b & c) >> d").unwrap_err();
        assert_eq!(
            (e.reason.as_str(), e.offset),
            ("do not mix `|` and `&` in one group", 7)
        );
        let e = parse_chain("a | b & c >> d").unwrap_err();
        assert_eq!(
            (e.reason.as_str(), e.offset),
            ("do not mix `|` and `&` in one group", 6)
        );
        let e = parse_chain("a | >> d").unwrap_err();
        assert_eq!((e.reason.as_str(), e.offset), ("expected a node name", 4));
        let e = parse_chain("a").unwrap_err();
        assert_eq!(e.reason, "an edge needs at least two nodes joined by `>>`");
    }
}
