//! illumo-flow's vocabulary. A flow written for the Python illumo-flow (node types such as
//! `illumo_flow.core.FunctionNode`, nodes with `context: {inputs, outputs}`) loads as it
//! is and runs with illumo-flow's meanings where they differ from illumo's: the loader says
//! so in one note. What it translates:
//!
//! - node `type` paths (`illumo_flow.nodes.agent.Agent`, ...; none means FunctionNode);
//! - `context.inputs` / `context.input`: the function (`callable`, `routing_rule`) and agent
//!   settings taken out into the settings, `{type, value}` wrappers unwrapped, and one
//!   remaining input passed as the value itself (several as a map);
//! - `context.outputs` / `context.output`, and other agent paths under `context`;
//! - the path spellings `ctx.x` and `$.x` for `$ctx.x` (also inside `{{ }}`);
//! - `setting.policy`: `retry.max_attempts` counts retries after the first attempt (so
//!   `n` becomes `n + 1` attempts), `retry: N`, `GOTO` in any case, and `fail_fast: false`
//!   with `on_error: stop` continues downstream;
//! - edges: `(a | b) >> c` waits for both, as `&` does;
//! - node keys illumo-flow ignores are ignored with a warning, not refused.
//!
//! At run time the flow keeps illumo-flow's ctx shapes (`steps`, `errors`, `routing`) and a
//! node that outputs `null` passes its input on; see `docs/illumo-flow.md`.

use crate::decode::{Decoder, Entry};
use crate::diagnostic::Diagnostic;
use crate::policy::PolicySpec;
use crate::spec::NodeSpec;
use crate::yaml::{YPath, Yaml};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Whose vocabulary a flow file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Native,
    IllumoFlow,
}

/// Is this `flow` map written for illumo-flow? A node type under `illumo_flow.`, or a node
/// with `context:`, says so.
pub fn detect(flow: &Yaml) -> Dialect {
    let Some(Yaml::Map(nodes)) = get(flow, "nodes") else {
        return Dialect::Native;
    };
    let illumo_flow = nodes.iter().any(|(_, node)| {
        get(node, "context").is_some()
            || matches!(get(node, "type"), Some(Yaml::Scalar(Value::String(t))) if t.starts_with("illumo_flow."))
            // Keys only illumo-flow writes beside `type` (illumo's go under `setting:`);
            // a node without a type is a FunctionNode there.
            || FUNCTION_KEYS.iter().chain(LOOP_KEYS.iter()).any(|k| get(node, k).is_some())
            // No type but a function in `setting:`: illumo's nodes always name their type.
            || (get(node, "type").is_none()
                && get(node, "setting").is_some_and(|s| FUNCTION_KEYS.iter().any(|k| get(s, k).is_some())))
    });
    if illumo_flow {
        Dialect::IllumoFlow
    } else {
        Dialect::Native
    }
}

fn get<'y>(y: &'y Yaml, key: &str) -> Option<&'y Yaml> {
    match y {
        Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The one note a flow in illumo-flow's vocabulary gets.
pub fn note(at: YPath) -> Diagnostic {
    Diagnostic::warning("this flow is written for illumo-flow: illumo-flow's meanings apply")
        .at(at, "nodes")
        .label("nodes run one at a time, retry.max_attempts counts retries, `(a | b) >> c` waits for both, ctx.steps/errors/routing keep illumo-flow's shapes")
        .help("docs/illumo-flow.md lists every difference; `illumo migrate FLOW` rewrites the file in illumo's spelling")
}

/// `ctx.a.b` and `$.a.b` -> `$ctx.a.b`; `payload.x` -> `$payload.x` (and `joins`, `env`);
/// `None` when `text` is not such a path.
pub fn path_spelling(text: &str) -> Option<String> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("$.") {
        return Some(format!("$ctx.{rest}"));
    }
    for scope in ["ctx", "payload", "joins", "env"] {
        if t == scope {
            return Some(format!("${scope}"));
        }
        if let Some(rest) = t.strip_prefix(scope).and_then(|r| r.strip_prefix('.')) {
            if !rest.is_empty() && !rest.contains(char::is_whitespace) {
                return Some(format!("${scope}.{rest}"));
            }
        }
    }
    None
}

/// illumo-flow's spellings inside a value: whole-string paths and paths inside `{{ }}`.
pub fn normalize_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(p) = path_spelling(s) {
                *s = p;
            } else if s.contains("{{") {
                *s = normalize_template(s);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_value),
        Value::Object(map) => map.values_mut().for_each(normalize_value),
        _ => {}
    }
}

/// `{{ ctx.user.name }}` and `{{ $.user.name }}` -> `{{ $ctx.user.name }}`.
fn normalize_template(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open + 2]);
        rest = &rest[open + 2..];
        let Some(close) = rest.find("}}") else { break };
        let inner = &rest[..close];
        match path_spelling(inner) {
            Some(p) => {
                let lead = &inner[..inner.len() - inner.trim_start().len()];
                let trail = &inner[inner.trim_end().len()..];
                out.push_str(lead);
                out.push_str(&p);
                out.push_str(trail);
            }
            None => out.push_str(inner),
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// illumo-flow's `{type: string, value: X}` wrapper -> `X`.
fn unwrap(y: &Yaml) -> &Yaml {
    match y {
        Yaml::Map(entries) if entries.iter().any(|(k, _)| k == "value") && entries.len() <= 2 => {
            get(y, "value").unwrap_or(y)
        }
        other => other,
    }
}

/// illumo-flow's node type paths, as illumo's names.
fn type_name(path: &str) -> &str {
    match path.rsplit('.').next().unwrap_or(path) {
        "FunctionNode" => "FunctionNode",
        "CustomRoutingNode" => "CustomRoutingNode",
        "LoopNode" => "LoopNode",
        "WorkspaceInspectorNode" => "WorkspaceInspector",
        "PatchNode" => "Patch",
        "TestExecutorNode" => "TestExecutor",
        "SummaryAgent" => "Summary",
        "Agent" => "Agent",
        "RouterAgent" => "RouterAgent",
        // illumo-flow's contract (a target, a raw score into ctx.metrics) is ScoreAgent's.
        "EvaluationAgent" => "ScoreAgent",
        _ => path,
    }
}

/// illumo-flow's name of a setting, as illumo's node of that type calls it.
fn setting_name(type_name: &str, key: &str) -> Option<&'static str> {
    Some(match (type_name, key) {
        ("WorkspaceInspector", "output_path") => "structure_path",
        ("Patch", "output_path") => "files_path",
        ("Patch", "summary_path") => "applied_path",
        ("TestExecutor", "output_path") => "results_path",
        ("Summary", "output_path") => "report_path",
        ("Summary", "structured_path") => "json_path",
        _ => return None,
    })
}

/// Node keys illumo-flow reads besides `type`, `setting` and `context`.
const FUNCTION_KEYS: [&str; 2] = ["callable", "routing_rule"];
const LOOP_KEYS: [&str; 4] = ["body_route", "loop_route", "items_key", "enumerate_items"];
/// Agent settings the tutorials write under `context.inputs` or `context`.
const AGENT_KEYS: [&str; 12] = [
    "prompt",
    "system",
    "model",
    "provider",
    "base_url",
    "choices",
    "target",
    "tools",
    "output_path",
    "history_path",
    "metadata_path",
    "structured_path",
];

fn is_agent(type_name: &str) -> bool {
    type_name.ends_with("Agent")
}

/// A node written in illumo-flow's vocabulary.
pub(crate) fn decode_node<'y>(dec: &mut Decoder, n: &Entry<'y>) -> Option<NodeSpec<'y>> {
    let fields = dec.map(n.value, &n.path, format_args!("node `{}`", n.key))?;
    dec.unique_keys(&fields, format_args!("node `{}`", n.key));
    let nth = match n.path.last() {
        Some(crate::yaml::Seg::Key(_, nth)) => *nth,
        _ => 0,
    };
    let written_type = fields
        .iter()
        .find(|f| f.key == "type")
        .and_then(|f| dec.string(f, "`type`").map(|t| (t, f.path.clone())));
    let (type_name, type_at) = match &written_type {
        Some((t, at)) => (type_name(t).to_string(), at.clone()),
        // illumo-flow's default type.
        None => ("FunctionNode".to_string(), n.path.clone().as_key()),
    };
    let mut setting: Vec<(String, Yaml)> = Vec::new();
    let mut setting_at = n.path.clone().as_key();
    let mut policy = PolicySpec::default();
    let mut inputs = None;
    let mut outputs: Option<(Cow<'y, Yaml>, YPath)> = None;
    let mut describe = None;
    let add = |setting: &mut Vec<(String, Yaml)>, key: &str, value: Yaml| {
        setting.retain(|(k, _)| k != key);
        setting.push((key.to_string(), value));
    };
    for f in &fields {
        match f.key {
            "type" | "name" => {}
            "setting" => {
                setting_at = f.path.clone();
                let Some(entries) = dec.map(f.value, &f.path, "`setting`") else {
                    continue;
                };
                for e in &entries {
                    if e.key == "policy" {
                        policy = policy.overlay(&decode_policy(dec, e.value, &e.path));
                    } else {
                        add(&mut setting, e.key, unwrap(e.value).clone());
                    }
                }
            }
            "describe" => {
                describe = Some(match f.value {
                    Yaml::Scalar(Value::String(s)) => s.clone(),
                    Yaml::Map(_) => match get(f.value, "summary") {
                        Some(Yaml::Scalar(Value::String(s))) => s.clone(),
                        _ => f.value.to_json().to_string(),
                    },
                    other => other.to_json().to_string(),
                })
            }
            "context" => {
                let Some(entries) = dec.map(f.value, &f.path, "`context`") else {
                    continue;
                };
                for c in &entries {
                    match c.key {
                        "inputs" | "input" => {
                            if c.key == "input" && entries.iter().any(|e| e.key == "inputs") {
                                continue;
                            }
                            inputs = context_inputs(c, &type_name, &mut setting);
                        }
                        "outputs" | "output" => {
                            if c.key == "output" && entries.iter().any(|e| e.key == "outputs") {
                                continue;
                            }
                            let mut value = c.value.to_json();
                            normalize_outputs(&mut value);
                            outputs = Some((Cow::Owned(Yaml::from_json(&value)), c.path.clone()));
                        }
                        key if AGENT_KEYS.contains(&key) && is_agent(&type_name) => {
                            add(&mut setting, key, c.value.clone());
                        }
                        other => dec.push(ignored(other, &c.path, "`context`")),
                    }
                }
            }
            key if FUNCTION_KEYS.contains(&key) || LOOP_KEYS.contains(&key) => {
                // Node-level spellings; the one in `context.inputs` wins, as in illumo-flow.
                if !setting.iter().any(|(k, _)| k == key) {
                    add(&mut setting, key, f.value.clone());
                }
            }
            // illumo's own keys mean what they mean natively.
            "inputs" => {
                let mut value = f.value.to_json();
                normalize_value(&mut value);
                inputs = Some((value, f.path.clone()));
            }
            "outputs" => outputs = Some((Cow::Borrowed(f.value), f.path.clone())),
            "policy" => policy = policy.overlay(&decode_policy(dec, f.value, &f.path)),
            other => dec.push(ignored(other, &f.path, format_args!("node `{}`", n.key))),
        }
    }
    // A FunctionNode given `routing_rule` (or the reverse) uses it, as illumo-flow does.
    let (wanted, other) = match type_name.as_str() {
        "FunctionNode" => ("callable", "routing_rule"),
        "CustomRoutingNode" => ("routing_rule", "callable"),
        _ => ("", ""),
    };
    if !wanted.is_empty() && !setting.iter().any(|(k, _)| k == wanted) {
        if let Some(i) = setting.iter().position(|(k, _)| k == other) {
            setting[i].0 = wanted.to_string();
        }
    }
    for (key, _) in setting.iter_mut() {
        if let Some(native) = setting_name(&type_name, key) {
            *key = native.to_string();
        }
    }
    for (_, value) in setting.iter_mut() {
        let mut json = value.to_json();
        normalize_value(&mut json);
        *value = Yaml::from_json(&json);
    }
    Some(NodeSpec {
        id: n.key.to_string(),
        at: n.path.clone().as_key(),
        nth,
        type_name,
        type_at,
        setting: Cow::Owned(if setting.is_empty() {
            Yaml::Scalar(Value::Null)
        } else {
            Yaml::Map(setting)
        }),
        setting_at,
        inputs,
        outputs,
        policy,
        describe,
    })
}

fn ignored(key: &str, at: &YPath, what: impl std::fmt::Display) -> Diagnostic {
    Diagnostic::warning(format!(
        "`{key}` in {what} is ignored, as illumo-flow ignores it"
    ))
    .at(at.clone().as_key(), key)
}

/// `context.inputs`: the function and agent settings go to the settings; the rest is the
/// node's input: one value as itself, several as a map.
fn context_inputs(
    c: &Entry,
    type_name: &str,
    setting: &mut Vec<(String, Yaml)>,
) -> Option<(Value, YPath)> {
    let Yaml::Map(entries) = c.value else {
        let mut value = match c.value {
            Yaml::Seq(items) => listed_inputs(items),
            other => other.to_json(),
        };
        normalize_value(&mut value);
        return Some((value, c.path.clone()));
    };
    let mut rest = Map::new();
    let mut function_taken = false;
    for (key, value) in entries {
        let value = unwrap(value);
        // illumo-flow pops the first of `routing_rule`, `callable` it finds.
        let function_key = FUNCTION_KEYS.contains(&key.as_str()) && !function_taken;
        if function_key || (is_agent(type_name) && AGENT_KEYS.contains(&key.as_str())) {
            function_taken |= function_key;
            setting.retain(|(k, _)| k != key);
            setting.push((key.clone(), value.clone()));
            continue;
        }
        rest.insert(key.clone(), value.to_json());
    }
    let mut value = match rest.len() {
        0 => return None,
        1 => rest.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
        _ => Value::Object(rest),
    };
    normalize_value(&mut value);
    Some((value, c.path.clone()))
}

/// `inputs: [ctx.user.name, {id: ctx.ticket.id}]` as illumo-flow reads it: a map by
/// alias (a path's last key, `value_N` when it has none; a map item's own keys), or the
/// one value when there is one.
fn listed_inputs(items: &[Yaml]) -> Value {
    let mut named = Map::new();
    let mut count = 0;
    for item in items {
        match item {
            Yaml::Map(entries) => {
                for (alias, value) in entries {
                    named.insert(alias.clone(), unwrap(value).to_json());
                    count += 1;
                }
            }
            other => {
                let value = other.to_json();
                let alias = value
                    .as_str()
                    .map(|s| s.trim().trim_start_matches('$'))
                    .and_then(|s| s.split('.').rfind(|p| !p.is_empty()))
                    .filter(|last| !["ctx", "payload", "joins", "env"].contains(last))
                    .map_or_else(|| format!("value_{count}"), String::from);
                named.insert(alias, value);
                count += 1;
            }
        }
    }
    match (count, named.len()) {
        (1, 1) => named.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
        _ => Value::Object(named),
    }
}

/// Output targets: `ctx.x`/`$.x`/`$ctx.x` all as `$ctx.x`, in a string, a map or a list.
fn normalize_outputs(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(p) = path_spelling(s) {
                *s = p;
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| {
            // `{type: expression, value: ctx.x}` around a target, as around any entry.
            if let Some(inner) = v
                .as_object()
                .filter(|m| m.len() <= 2 && m.keys().all(|k| k == "type" || k == "value"))
                .and_then(|m| m.get("value"))
            {
                *v = inner.clone();
            }
            normalize_outputs(v)
        }),
        Value::Array(items) => items.iter_mut().for_each(normalize_outputs),
        _ => {}
    }
}

/// A policy in illumo-flow's meaning, as illumo's: `max_attempts` retries become
/// `max_attempts + 1` attempts, `retry: N` is `N` retries, actions in any case, and
/// `fail_fast: false` with `on_error: stop` continues.
pub fn decode_policy(dec: &mut Decoder, y: &Yaml, path: &YPath) -> PolicySpec {
    let Yaml::Map(entries) = y else {
        return PolicySpec::decode(dec, y, path);
    };
    let lower = |v: &Yaml| match v {
        Yaml::Scalar(Value::String(a)) => Yaml::Scalar(Value::String(a.to_lowercase())),
        other => other.clone(),
    };
    // illumo-flow reads counts with Python's `int()`: `1.5` is 1, `"2"` is 2.
    let count = |v: &Yaml| -> Option<serde_json::Number> {
        match v {
            Yaml::Scalar(Value::Number(n)) if n.is_f64() => n
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(|f| (f.trunc() as u64).into()),
            Yaml::Scalar(Value::Number(n)) => Some(n.clone()),
            Yaml::Scalar(Value::String(t)) => t.trim().parse::<u64>().ok().map(Into::into),
            _ => None,
        }
    };
    let mut out: Vec<(String, Yaml)> = Vec::new();
    for (key, value) in entries {
        let value = match (key.as_str(), value) {
            ("retry", v) if count(v).is_some() => Yaml::Map(vec![(
                "max_attempts".into(),
                retries_as_attempts(&count(v).unwrap_or_else(|| 0.into())),
            )]),
            ("retry", Yaml::Map(retry)) => Yaml::Map(
                retry
                    .iter()
                    .map(|(k, v)| match (k.as_str(), count(v)) {
                        ("max_attempts", Some(n)) => (k.clone(), retries_as_attempts(&n)),
                        ("mode", _) => (k.clone(), lower(v)),
                        _ => (k.clone(), v.clone()),
                    })
                    .collect(),
            ),
            ("on_error", Yaml::Scalar(_)) => lower(value),
            ("on_error", Yaml::Map(m)) => {
                let mut m: Vec<(String, Yaml)> = m
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "action" => (k.clone(), lower(v)),
                        _ => (k.clone(), v.clone()),
                    })
                    .collect();
                // No action is illumo-flow's default one, `stop`.
                if !m.iter().any(|(k, _)| k == "action") {
                    m.insert(
                        0,
                        ("action".into(), Yaml::Scalar(Value::String("stop".into()))),
                    );
                }
                Yaml::Map(m)
            }
            _ => value.clone(),
        };
        out.push((key.clone(), value));
    }
    // `fail_fast` keeps its own meaning until the levels are merged (see
    // [`illumo_flow_meaning`]): a node's `fail_fast: true` over a flow's `false` stops.
    PolicySpec::decode(dec, &Yaml::Map(out), path)
}

/// illumo-flow's `on_error: stop` with `fail_fast: false` goes on downstream: as illumo's
/// `continue`. Applied to a node's policy once the flow's, `--policy`'s and the node's
/// own fields are merged, as illumo-flow merges them.
pub fn illumo_flow_meaning(mut spec: PolicySpec) -> PolicySpec {
    if spec.fail_fast == Some(false)
        && matches!(spec.on_error, None | Some(crate::policy::OnError::Stop))
    {
        spec.on_error = Some(crate::policy::OnError::Continue);
    }
    spec
}

fn retries_as_attempts(n: &serde_json::Number) -> Yaml {
    Yaml::Scalar(match n.as_u64() {
        Some(retries) => Value::from(retries.saturating_add(1)),
        None => Value::Number(n.clone()),
    })
}

/// A flow in illumo-flow's vocabulary rewritten in illumo's: the same nodes, settings,
/// inputs, outputs, policies and edges, with illumo-flow's meanings made explicit; and
/// what changed, one line each. `None` when the file is not in illumo-flow's vocabulary.
pub fn migrate(text: &str) -> Result<Option<(Value, Vec<String>)>, String> {
    let parsed = crate::yaml::parse(text).map_err(|e| e.message)?;
    let root = &parsed.yaml;
    let flow_yaml = get(root, "flow").unwrap_or(root);
    if detect(flow_yaml) == Dialect::Native {
        return Ok(None);
    }
    let mut dec = Decoder::default();
    let spec = crate::spec::decode_flow(&mut dec, root).ok_or("the flow does not decode")?;
    let mut changes = Vec::new();
    if get(root, "flow").is_none() {
        changes.push("the file gets its `flow:` wrapper".to_string());
    }
    let mut nodes = Map::new();
    let Some(Yaml::Map(written)) = get(flow_yaml, "nodes") else {
        return Err("the flow has no nodes".into());
    };
    for node in &spec.nodes {
        let original = written
            .iter()
            .find(|(k, _)| *k == node.id)
            .map(|(_, v)| v)
            .ok_or("a node went missing")?;
        changes.extend(node_changes(&node.id, original, node));
        let mut out = Map::new();
        out.insert("type".into(), Value::String(node.type_name.clone()));
        if let Some(d) = &node.describe {
            out.insert("describe".into(), Value::String(d.clone()));
        }
        let mut setting = node.setting.to_json();
        if matches!(
            node.type_name.as_str(),
            "Agent" | "RouterAgent" | "ScoreAgent"
        ) {
            changes.extend(agent_changes(&node.id, &mut setting));
            if node.type_name == "RouterAgent" {
                changes.push(format!("node `{}`: illumo's RouterAgent asks for its choice in a system message (not illumo-flow's `Choose exactly one of:` line), `metadata_path` gets the call's metadata (provider, model, tokens), not the reply, and the chosen node gets the router's input (illumo-flow: `{{choice: input}}`)", node.id));
            }
        }
        changes.extend(workspace_changes(&node.id, &node.type_name, &mut setting));
        if !setting.is_null() {
            out.insert("setting".into(), setting);
        }
        if let Some((inputs, _)) = &node.inputs {
            out.insert("inputs".into(), inputs.clone());
        }
        if let Some((outputs, _)) = &node.outputs {
            out.insert("outputs".into(), outputs.to_json());
        }
        let mut own = illumo_flow_meaning(node.policy.clone());
        if node.policy.on_error.is_none() {
            // The flow's `fail_fast: false` became `on_error: continue`; a node whose own
            // `fail_fast` undoes that says what it does.
            let merged = illumo_flow_meaning(spec.policy.overlay(&node.policy)).on_error;
            if merged != illumo_flow_meaning(spec.policy.clone()).on_error {
                own.on_error = Some(merged.unwrap_or(crate::policy::OnError::Stop));
            }
        }
        let policy = policy_json(&own);
        if !policy.as_object().is_some_and(Map::is_empty) {
            out.insert("policy".into(), policy);
        }
        nodes.insert(node.id.clone(), Value::Object(out));
    }
    let mut flow = Map::new();
    // The run's name there: the one written, else the entry's.
    flow.insert("name".into(), Value::String(spec.name.clone()));
    if let Some(d) = &spec.describe {
        flow.insert("describe".into(), Value::String(d.clone()));
    }
    if let Some((entry, _)) = spec.entry.first() {
        flow.insert("entry".into(), Value::String(entry.clone()));
    }
    flow.insert("max_parallel".into(), Value::from(spec.max_parallel));
    let policy = policy_json(&illumo_flow_meaning(spec.policy.clone()));
    if !policy.as_object().is_some_and(Map::is_empty) {
        if let Some(written) = get(flow_yaml, "policy") {
            changes.extend(
                policy_changes(written, &spec.policy)
                    .into_iter()
                    .map(|c| format!("the flow's policy: {c}")),
            );
        }
        flow.insert("policy".into(), policy);
    }
    if spec.max_parallel == 1 {
        changes.push("illumo-flow runs one node at a time, in queue order: `max_parallel: 1` keeps that (remove it to run branches concurrently)".into());
    }
    flow.insert("nodes".into(), Value::Object(nodes));
    let mut edges = Vec::new();
    for e in &spec.edges {
        edges.push(match &e.when {
            None => Value::String(format!("{} >> {}", e.from, e.to)),
            Some(when) => serde_json::json!({"from": e.from, "to": e.to, "when": when}),
        });
    }
    if let Some(Yaml::Seq(items)) = get(flow_yaml, "edges") {
        for item in items {
            if let Yaml::Scalar(Value::String(s)) = item {
                if s.contains('|')
                    && s.contains(">>")
                    && s.split(">>").next().is_some_and(|l| l.contains('|'))
                {
                    changes.push(format!(
                        "edge `{s}`: illumo-flow's `|` waits for every parent, so it is written as one edge per parent (illumo's `|` fires once per parent)"
                    ));
                }
            }
        }
    }
    if !edges.is_empty() {
        flow.insert("edges".into(), Value::Array(edges));
    }
    changes.push("ctx.steps, ctx.errors and ctx.routing take illumo's shapes, and a node's null output is no longer replaced by its input (FunctionNode still passes its input on)".into());
    changes.push("relative paths in settings (such as default_root) now resolve against the flow file's folder, not the working folder".into());
    changes.push("a path that is not in ctx, in inputs, settings or templates, fails the node naming it (illumo-flow read it as null, and an unset $env variable as \"\")".into());
    if text.contains("{{") {
        changes.push(
            "templates print a boolean as `true`/`false` (illumo-flow: Python's `True`/`False`)"
                .into(),
        );
    }
    if spec.nodes.iter().any(|n| n.type_name == "FunctionNode") {
        changes.push("`ctx.payloads` holds outputs only: a function no longer finds its own input, or a queued node's, there".into());
    }
    let mut file = Map::new();
    file.insert("flow".into(), Value::Object(flow));
    Ok(Some((Value::Object(file), changes)))
}

/// What a coding-assistant node keeps of illumo-flow's: the inspector's defaults, written
/// out; and a word on the shapes, which are illumo's once migrated.
fn workspace_changes(id: &str, type_name: &str, setting: &mut Value) -> Vec<String> {
    let node = |what: &str| format!("node `{id}`: {what}");
    match type_name {
        "WorkspaceInspector" => {
            let mut out = Vec::new();
            if setting.is_null() {
                *setting = Value::Object(Map::new());
            }
            if let Some(map) = setting.as_object_mut() {
                if !map.contains_key("preview_lines") {
                    map.insert("preview_lines".into(), Value::from(20));
                    out.push(node("illumo-flow's default written out: `preview_lines: 20` (illumo's is 10)"));
                }
                if !map.contains_key("allowed_extensions") {
                    map.insert("allowed_extensions".into(), serde_json::json!([".py", ".txt", ".md", ".json", ".yaml"]));
                    out.push(node("illumo-flow's default written out: `allowed_extensions: [.py, .txt, .md, .json, .yaml]`"));
                }
            }
            out.push(node("illumo's WorkspaceInspector outputs counts `{root, files, excluded}`, lists no folders or other endings in `structure_excluded`, and marks every file `selected` when ctx.request.target_files is absent"));
            out
        }
        "Patch" => vec![node("illumo's Patch outputs and writes `{ok, files, rejected, written}` (at `diff.applied` or `applied_path`), and `workspace.files` lists every inspected file, `original` when unchanged; a new file's status is `created` (illumo-flow: `added`)")],
        "TestExecutor" => vec![node("illumo's TestExecutor adds `passed`, `failed` and `patched_files` to its results, appends to `ctx.tests.history`, and gives `cwd` relative to the workspace")],
        "Summary" => vec![node("illumo's Summary writes a markdown report (changes, tests, review, next actions) to `summary.report` and its JSON to `summary.json`; its output is the report text")],
        _ => Vec::new(),
    }
}

/// What an agent keeps of illumo-flow's: its default model, written out; and a word on the
/// `ctx.agents.<id>` bucket, which native agents do not keep.
fn agent_changes(id: &str, setting: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    if setting.is_null() {
        *setting = Value::Object(Map::new());
    }
    let Some(map) = setting.as_object_mut() else {
        return out;
    };
    let openai = map
        .get("provider")
        .is_none_or(|p| p.as_str() == Some("openai"));
    if openai && !map.contains_key("model") {
        map.insert("model".into(), Value::String("gpt-4.1-nano".into()));
        out.push(format!(
            "node `{id}`: illumo-flow's default model written out: `model: gpt-4.1-nano` (illumo's default is gpt-4.1-mini)"
        ));
    }
    let unkept: Vec<&str> = ["output_path", "history_path", "metadata_path"]
        .into_iter()
        .filter(|k| !map.contains_key(*k))
        .collect();
    if !unkept.is_empty() {
        out.push(format!(
            "node `{id}`: illumo-flow's `ctx.agents.{id}` bucket ({{timestamp, value}} slots) is not kept; give `{}` for what a later node reads",
            unkept.join("`, `")
        ));
    }
    out
}

/// What migrating one node changes, as the user wrote it.
fn node_changes(id: &str, original: &Yaml, spec: &NodeSpec<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let node = |what: String| format!("node `{id}`: {what}");
    match get(original, "type") {
        Some(Yaml::Scalar(Value::String(t))) if *t != spec.type_name => {
            out.push(node(format!("type `{t}` -> `{}`", spec.type_name)))
        }
        None => out.push(node(format!(
            "no type (illumo-flow's default) -> `{}`",
            spec.type_name
        ))),
        _ => {}
    }
    if get(original, "name").is_some() {
        out.push(node(
            "`name` dropped: illumo names nodes by their id".into(),
        ));
    }
    if matches!(get(original, "describe"), Some(Yaml::Map(_))) {
        out.push(node("`describe` map -> its summary as text".into()));
    }
    if let Some(ctx) = get(original, "context") {
        let inputs = get(ctx, "inputs").or_else(|| get(ctx, "input"));
        if let Some(Yaml::Map(entries)) = inputs {
            for (k, _) in entries {
                if FUNCTION_KEYS.contains(&k.as_str()) || AGENT_KEYS.contains(&k.as_str()) {
                    let key = setting_name(&spec.type_name, k).unwrap_or(k);
                    out.push(node(format!("`context.inputs.{k}` -> `setting.{key}`")));
                }
            }
        }
        if inputs.is_some() && spec.inputs.is_some() {
            out.push(node(
                "`context.inputs` -> `inputs` (one input is passed as the value itself)".into(),
            ));
        }
        if let Some(outputs) = get(ctx, "outputs").or_else(|| get(ctx, "output")) {
            out.push(node("`context.outputs` -> `outputs`".into()));
            let aliased = match outputs {
                Yaml::Map(_) => true,
                Yaml::Seq(items) => items.iter().any(|i| matches!(i, Yaml::Map(_))),
                _ => false,
            };
            if aliased {
                out.push(node("`outputs` {field: path}: illumo writes the output's field and fails the node when the output has none (illumo-flow wrote the whole output there instead)".into()));
            }
        }
    }
    if let Some(Yaml::Map(setting)) = get(original, "setting") {
        for (k, v) in setting {
            if let Some(native) = setting_name(&spec.type_name, k) {
                out.push(node(format!("setting `{k}` -> `{native}`")));
            }
            if k == "policy" {
                out.extend(policy_changes(v, &spec.policy).into_iter().map(node));
                out.push(node("`setting.policy` -> `policy`".into()));
            }
        }
    }
    if let Some(policy) = get(original, "policy") {
        out.extend(policy_changes(policy, &spec.policy).into_iter().map(node));
    }
    out
}

/// What a policy written with illumo-flow's meanings becomes.
fn policy_changes(written: &Yaml, spec: &PolicySpec) -> Vec<String> {
    let mut out = Vec::new();
    let retry = get(written, "retry");
    let counted = matches!(retry, Some(Yaml::Scalar(Value::Number(_))))
        || retry.is_some_and(|r| get(r, "max_attempts").is_some());
    if let (true, Some(attempts)) = (counted, spec.max_attempts) {
        out.push(format!(
            "`retry.max_attempts` counted retries: {} -> {attempts} attempts",
            attempts - 1
        ));
    }
    let stop = match get(written, "on_error") {
        None => true,
        Some(Yaml::Scalar(Value::String(a))) => a.eq_ignore_ascii_case("stop"),
        Some(m) => {
            matches!(get(m, "action"), Some(Yaml::Scalar(Value::String(a))) if a.eq_ignore_ascii_case("stop"))
        }
    };
    let fail_fast_off = matches!(
        get(written, "fail_fast"),
        Some(Yaml::Scalar(Value::Bool(false)))
    );
    if fail_fast_off && stop {
        out.push("`fail_fast: false` went on downstream: -> `on_error: continue`".into());
    }
    out
}

/// A policy as the flow file writes it.
fn policy_json(p: &PolicySpec) -> Value {
    use crate::duration::duration_text;
    use crate::policy::{Backoff, OnError};
    let mut out = Map::new();
    if let Some(f) = p.fail_fast {
        out.insert("fail_fast".into(), Value::Bool(f));
    }
    if let Some(t) = p.timeout {
        out.insert("timeout".into(), Value::String(duration_text(t)));
    }
    let mut retry = Map::new();
    if let Some(n) = p.max_attempts {
        retry.insert("max_attempts".into(), Value::from(n));
    }
    if let Some(d) = p.delay {
        retry.insert("delay".into(), Value::String(duration_text(d)));
    }
    if let Some(m) = p.mode {
        let mode = match m {
            Backoff::Fixed => "fixed",
            Backoff::Exponential => "exponential",
        };
        retry.insert("mode".into(), Value::String(mode.into()));
    }
    if let Some(d) = p.max_delay {
        retry.insert("max_delay".into(), Value::String(duration_text(d)));
    }
    if let Some(j) = p.jitter {
        retry.insert("jitter".into(), Value::Bool(j));
    }
    if !retry.is_empty() {
        out.insert("retry".into(), Value::Object(retry));
    }
    if let Some(on_error) = &p.on_error {
        out.insert(
            "on_error".into(),
            match on_error {
                OnError::Stop => Value::String("stop".into()),
                OnError::Continue => Value::String("continue".into()),
                OnError::Goto(t) => serde_json::json!({"action": "goto", "target": t}),
            },
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illumo_flow_path_spellings_become_illumos() {
        assert_eq!(
            path_spelling("ctx.data.raw").as_deref(),
            Some("$ctx.data.raw")
        );
        assert_eq!(
            path_spelling("$.data.raw").as_deref(),
            Some("$ctx.data.raw")
        );
        assert_eq!(
            path_spelling("payload.draft").as_deref(),
            Some("$payload.draft")
        );
        assert_eq!(path_spelling("ctx").as_deref(), Some("$ctx"));
        assert_eq!(path_spelling("$ctx.x"), None);
        assert_eq!(path_spelling("context matters"), None);
        assert_eq!(path_spelling("ctx. x"), None);
        assert_eq!(
            normalize_template("Hi {{ ctx.user.name }} / {{$.a}} / {{ $ctx.b }}"),
            "Hi {{ $ctx.user.name }} / {{$ctx.a}} / {{ $ctx.b }}"
        );
    }
}
