//! Playbooks: the YAML an agent runner is driven by, run as flows.
//!
//! ```yaml
//! name: backend-task
//! steps:
//!   - name: lint
//!     command: ruff check src
//!     condition: ctx.lint_enabled      # a condition over ctx; false skips the step
//!     timeout_seconds: 120
//!     retry_count: 1                   # tries again once
//!     fail_fast: false                 # a failure goes on to the next step
//! ```
//!
//! Each step becomes a `Command` node (the command split as a shell would, run without a
//! shell; `{{ }}` templates work), run one after another; its stdout goes to
//! `ctx.playbook.<step>`. A step with a `condition` is preceded by a `Router` that skips
//! it. Problems are reported at the playbook's own lines.

use illumo_engine::diagnostic::Diagnostic;
use illumo_engine::yaml::{Parsed, YPath, Yaml};
use illumo_engine::Source;
use serde_json::Value;

const TOP_KEYS: [&str; 3] = ["name", "description", "steps"];
const STEP_KEYS: [&str; 6] = [
    "name",
    "command",
    "timeout_seconds",
    "retry_count",
    "condition",
    "fail_fast",
];

/// Is this file a playbook (a top-level `steps` list and no `flow`)?
pub fn is_playbook(yaml: &Yaml) -> bool {
    let Yaml::Map(entries) = yaml else {
        return false;
    };
    let has = |k: &str| entries.iter().any(|(key, _)| key == k);
    has("steps") && !has("flow")
}

/// The flow a playbook stands for, as flow-file text, and for each of its lines the
/// place in the playbook it came from.
pub struct Translated {
    pub text: String,
    pub lines: Vec<YPath>,
}

fn get<'y>(entries: &'y [(String, Yaml)], key: &str) -> Option<&'y Yaml> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn text_of(y: &Yaml) -> Option<String> {
    match y {
        Yaml::Scalar(Value::String(s)) => Some(s.clone()),
        Yaml::Scalar(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
        _ => None,
    }
}

/// A node id for a step name: letters, digits and `_`.
fn node_id(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    if id.starts_with(|c: char| c.is_ascii_digit()) || id.is_empty() {
        format!("step_{id}")
    } else {
        id
    }
}

struct Out {
    text: String,
    lines: Vec<YPath>,
}

impl Out {
    fn line(&mut self, at: &YPath, text: String) {
        self.text.push_str(&text);
        self.text.push('\n');
        self.lines.push(at.clone());
    }
}

fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// Translates a playbook; the errors are at its own places.
pub fn translate(yaml: &Yaml) -> Result<Translated, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let root = YPath::root();
    let Yaml::Map(top) = yaml else {
        return Err(vec![Diagnostic::error("a playbook is a map")]);
    };
    for (key, _) in top {
        if !TOP_KEYS.contains(&key.as_str()) {
            errors.push(
                Diagnostic::error(format!("unknown key `{key}` in the playbook"))
                    .at(root.key(key).as_key(), key)
                    .label(format!("expected one of `{}`", TOP_KEYS.join("`, `"))),
            );
        }
    }
    let name = get(top, "name")
        .and_then(text_of)
        .unwrap_or_else(|| "playbook".into());
    let Some(Yaml::Seq(steps)) = get(top, "steps") else {
        return Err(vec![
            Diagnostic::error("`steps` must be a list of steps").at(root.key("steps"), "steps")
        ]);
    };
    if steps.is_empty() {
        errors.push(Diagnostic::error("the playbook has no steps").at(root.key("steps"), "steps"));
    }
    struct Step {
        id: String,
        at: YPath,
        command: Option<(Vec<String>, YPath)>,
        condition: Option<(String, YPath)>,
        timeout: Option<(String, YPath)>,
        retries: Option<(u64, YPath)>,
        fail_fast: bool,
    }
    let mut parsed_steps: Vec<Step> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = root.key("steps").index(i);
        let Yaml::Map(fields) = step else {
            errors.push(
                Diagnostic::error("a step is a map with `name` and `command`").at(at.clone(), "-"),
            );
            continue;
        };
        for (key, _) in fields {
            if !STEP_KEYS.contains(&key.as_str()) {
                let mut d = Diagnostic::error(format!("unknown key `{key}` in a step"))
                    .at(at.key(key).as_key(), key);
                d = match illumo_engine::diagnostic::did_you_mean(key, STEP_KEYS.iter().copied()) {
                    Some(s) => d.label(format!("did you mean `{s}`?")),
                    None => d.label(format!("expected one of `{}`", STEP_KEYS.join("`, `"))),
                };
                errors.push(d);
            }
        }
        let step_name = get(fields, "name")
            .and_then(text_of)
            .unwrap_or_else(|| format!("step {}", i + 1));
        let id = node_id(&step_name);
        if parsed_steps.iter().any(|s| s.id == id) {
            errors.push(
                Diagnostic::error(format!("two steps are named `{step_name}`"))
                    .at(at.key("name"), &step_name),
            );
        }
        let command = match get(fields, "command") {
            Some(y) => match text_of(y).map(|t| illumo_nodes::coding::split_words(&t)) {
                Some(Ok(words)) if !words.is_empty() => Some((words, at.key("command"))),
                Some(Ok(_)) => {
                    errors
                        .push(Diagnostic::error("the command is empty").at(at.key("command"), ""));
                    None
                }
                Some(Err(e)) => {
                    errors.push(
                        Diagnostic::error(format!("the command cannot be split into words: {e}"))
                            .at(at.key("command"), &text_of(y).unwrap_or_default()),
                    );
                    None
                }
                None => {
                    errors.push(
                        Diagnostic::error("`command` must be text")
                            .at(at.key("command"), "command"),
                    );
                    None
                }
            },
            None => {
                errors.push(
                    Diagnostic::error(format!("step `{step_name}` has no `command`"))
                        .at(at.clone(), "-"),
                );
                None
            }
        };
        let condition = get(fields, "condition").map(|y| match y {
            Yaml::Scalar(Value::Bool(b)) => (b.to_string(), at.key("condition")),
            other => (text_of(other).unwrap_or_default(), at.key("condition")),
        });
        let number = |key: &str, errors: &mut Vec<Diagnostic>| match get(fields, key) {
            None => None,
            Some(Yaml::Scalar(Value::Number(n))) if n.as_u64().is_some() => {
                Some((n.as_u64().unwrap_or(0), at.key(key)))
            }
            Some(other) => {
                errors.push(
                    Diagnostic::error(format!(
                        "`{key}` must be a whole number, not {}",
                        other.display()
                    ))
                    .at(at.key(key), &other.display()),
                );
                None
            }
        };
        let timeout = number("timeout_seconds", &mut errors).map(|(n, p)| (format!("{n}s"), p));
        let retries = number("retry_count", &mut errors);
        let fail_fast = match get(fields, "fail_fast") {
            None => true,
            Some(Yaml::Scalar(Value::Bool(b))) => *b,
            Some(other) => {
                errors.push(
                    Diagnostic::error("`fail_fast` is true or false")
                        .at(at.key("fail_fast"), &other.display()),
                );
                true
            }
        };
        parsed_steps.push(Step {
            id,
            at,
            command,
            condition,
            timeout,
            retries,
            fail_fast,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = Out {
        text: String::new(),
        lines: Vec::new(),
    };
    out.line(&root, "flow:".into());
    out.line(&root.key("name"), format!("  name: {}", quoted(&name)));
    out.line(&root, "  nodes:".into());
    // Each step's entry: its check when it has a condition, else the step itself.
    let entry = |s: &Step| match s.condition {
        Some(_) => format!("check_{}", s.id),
        None => s.id.clone(),
    };
    for (i, s) in parsed_steps.iter().enumerate() {
        let next = parsed_steps.get(i + 1).map(entry);
        if let Some((condition, at)) = &s.condition {
            out.line(at, format!("    check_{}:", s.id));
            out.line(at, "      type: Router".into());
            out.line(at, "      setting:".into());
            out.line(at, "        routes:".into());
            out.line(
                at,
                format!("          - {{when: {}, to: {}}}", quoted(condition), s.id),
            );
            if let Some(next) = &next {
                out.line(at, format!("          - {{default: {next}}}"));
            }
        }
        out.line(&s.at, format!("    {}:", s.id));
        out.line(&s.at, "      type: Command".into());
        if let Some((words, at)) = &s.command {
            let argv: Vec<String> = words.iter().map(|w| quoted(w)).collect();
            out.line(
                at,
                format!("      setting: {{argv: [{}]}}", argv.join(", ")),
            );
        }
        out.line(&s.at, format!("      outputs: $ctx.playbook.{}", s.id));
        let mut policy = Vec::new();
        if let Some((t, _)) = &s.timeout {
            policy.push(format!("timeout: {t}"));
        }
        if let Some((n, _)) = &s.retries {
            policy.push(format!("retry: {{max_attempts: {}}}", n + 1));
        }
        if !s.fail_fast {
            policy.push("on_error: continue".into());
        }
        if !policy.is_empty() {
            let at = s
                .timeout
                .as_ref()
                .map(|(_, p)| p)
                .or(s.retries.as_ref().map(|(_, p)| p))
                .unwrap_or(&s.at);
            out.line(at, format!("      policy: {{{}}}", policy.join(", ")));
        }
    }
    out.line(&root, format!("  entry: {}", entry(&parsed_steps[0])));
    let edges: Vec<(String, String, &YPath)> = parsed_steps
        .windows(2)
        .map(|w| (w[0].id.clone(), entry(&w[1]), &w[1].at))
        .collect();
    if !edges.is_empty() || parsed_steps.iter().any(|s| s.condition.is_some()) {
        out.line(&root, "  edges:".into());
        for (from, to, at) in edges {
            out.line(at, format!("    - {from} >> {to}"));
        }
        for s in parsed_steps.iter().filter(|s| s.condition.is_some()) {
            let at = s.condition.as_ref().map_or(&s.at, |(_, p)| p);
            out.line(at, format!("    - check_{} >> {}", s.id, s.id));
        }
        for (i, s) in parsed_steps.iter().enumerate() {
            if let (Some((_, at)), Some(next)) = (&s.condition, parsed_steps.get(i + 1)) {
                out.line(at, format!("    - check_{} >> {}", s.id, entry(next)));
            }
        }
    }
    Ok(Translated {
        text: out.text,
        lines: out.lines,
    })
}

/// Moves diagnostics of the generated flow to the playbook's places.
pub fn map_back(diagnostics: &mut [Diagnostic], generated: &Source, lines: &[YPath]) {
    for d in diagnostics.iter_mut() {
        let Some((line, _)) = generated.position(d) else {
            continue;
        };
        if let Some(at) = lines.get(line.saturating_sub(1)) {
            d.path = Some(at.clone());
            d.pos = None;
            d.offset = 0;
        }
    }
}

/// Resolves the moved diagnostics against the playbook.
pub fn resolve(diagnostics: &mut [Diagnostic], parsed: &Parsed) {
    illumo_engine::diagnostic::resolve(diagnostics, parsed);
}
