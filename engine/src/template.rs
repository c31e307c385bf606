//! `{{ ... }}` templates (handlebars, strict, no HTML escaping, a `json` helper), compiled
//! once at load. A template renders against only the parts of ctx it names, so its cost
//! does not grow with the size of ctx.

use crate::path::{get_steps, Step};
use handlebars::{Context, Handlebars, Renderable};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// The parts of ctx (and the environment) something reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reads {
    /// Whole ctx is read (e.g. `{{ json $ctx }}`).
    pub all: bool,
    pub paths: Vec<Vec<Step>>,
    pub env: Vec<String>,
}

impl Reads {
    pub fn all() -> Reads {
        Reads {
            all: true,
            ..Reads::default()
        }
    }

    pub fn path(steps: Vec<Step>) -> Reads {
        Reads {
            paths: vec![steps],
            ..Reads::default()
        }
    }

    pub fn merge(&mut self, other: &Reads) {
        self.all |= other.all;
        for p in &other.paths {
            if !self.paths.contains(p) {
                self.paths.push(p.clone());
            }
        }
        for e in &other.env {
            if !self.env.contains(e) {
                self.env.push(e.clone());
            }
        }
    }

    /// A copy of ctx holding only what is read: whole subtrees at each path (a path with a
    /// list index copies the whole list).
    pub fn prune(&self, ctx: &Value) -> Value {
        if self.all {
            return ctx.clone();
        }
        let mut out = Value::Object(Map::new());
        for path in &self.paths {
            let keys: Vec<&String> = path
                .iter()
                .map_while(|s| match s {
                    Step::Key(k) if k.parse::<usize>().is_err() => Some(k),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                return ctx.clone();
            }
            // Copy the deepest part of the path that exists: `$ctx.list.length` copies the list.
            let mut depth = keys.len();
            let value = loop {
                let steps: Vec<Step> = keys[..depth]
                    .iter()
                    .map(|k| Step::Key((*k).clone()))
                    .collect();
                match get_steps(ctx, &steps) {
                    Some(v) => break Some(v),
                    None if depth > 1 => depth -= 1,
                    None => break None,
                }
            };
            let Some(value) = value else { continue };
            let keys = &keys[..depth];
            let mut slot = &mut out;
            for key in keys {
                let Value::Object(map) = slot else { break };
                slot = map
                    .entry((*key).clone())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            *slot = value.clone();
        }
        out
    }

    /// The referenced environment variables, as a map.
    pub fn env_map(&self) -> Value {
        let mut map = Map::new();
        for name in &self.env {
            if let Ok(v) = std::env::var(name) {
                map.insert(name.clone(), Value::String(v));
            }
        }
        Value::Object(map)
    }
}

/// Finds `$ctx.a.b`, `$payload.x`, `$joins.j.p` and `$env.NAME` references in text.
pub fn scan_reads(text: &str) -> Reads {
    let mut reads = Reads::default();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find('$') {
        let start = i + pos + 1;
        let word_end = |from: usize| {
            text[from..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .map_or(text.len(), |e| from + e)
        };
        let root_end = word_end(start);
        let root = &text[start..root_end];
        let mut steps = match root {
            "ctx" => vec![],
            "payload" => vec![Step::Key("payloads".into())],
            "joins" => vec![Step::Key("joins".into())],
            "env" => {
                if bytes.get(root_end) == Some(&b'.') {
                    let end = word_end(root_end + 1);
                    reads.env.push(text[root_end + 1..end].to_string());
                }
                i = root_end;
                continue;
            }
            _ => {
                i = root_end.max(start);
                continue;
            }
        };
        let mut j = root_end;
        while bytes.get(j) == Some(&b'.') {
            let end = word_end(j + 1);
            if end == j + 1 {
                break;
            }
            steps.push(Step::Key(text[j + 1..end].to_string()));
            j = end;
        }
        if steps.is_empty() {
            reads.all = true;
        } else if !reads.paths.contains(&steps) {
            reads.paths.push(steps);
        }
        i = j;
    }
    reads
}

fn registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(json_helper));
        hb
    })
}

fn json_helper(
    h: &handlebars::Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut handlebars::RenderContext,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
    let text = if h
        .hash_get("pretty")
        .is_some_and(|p| p.value().as_bool() == Some(true))
    {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    };
    out.write(&text.unwrap_or_default())?;
    Ok(())
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    compiled: handlebars::Template,
    pub reads: Reads,
}

/// A template that does not compile: the reason and the 1-based line/column inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSyntaxError {
    pub reason: String,
    pub line: usize,
    pub column: usize,
}

/// A template that failed to render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("template `{template}` failed: {reason}")]
pub struct RenderError {
    pub template: String,
    pub reason: String,
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateSyntaxError> {
        let compiled = handlebars::Template::compile(source).map_err(|e| {
            let (line, column) = e.pos().unwrap_or((1, 1));
            TemplateSyntaxError {
                reason: e.reason().to_string(),
                line,
                column,
            }
        })?;
        Ok(Template {
            source: source.to_string(),
            compiled,
            reads: scan_reads(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders against ctx; `$payload` and `$joins` are ctx's `payloads` and `joins`.
    pub fn render(&self, ctx: &Value) -> Result<String, RenderError> {
        let pruned = self.reads.prune(ctx);
        let mut data = Map::new();
        if let Some(p) = pruned.get("payloads") {
            data.insert("$payload".into(), p.clone());
        }
        if let Some(j) = pruned.get("joins") {
            data.insert("$joins".into(), j.clone());
        }
        data.insert("$env".into(), self.reads.env_map());
        data.insert("$ctx".into(), pruned);
        let context = Context::from(Value::Object(data));
        let mut rc = handlebars::RenderContext::new(None);
        let rendered = self.compiled.renders(registry(), &context, &mut rc);
        rendered.map_err(|e| RenderError {
            template: self.source.clone(),
            reason: render_reason(&e),
        })
    }
}

fn render_reason(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is not in ctx")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_ctx_payload_env_and_json() {
        std::env::set_var("ILLUMO_TEMPLATE_TEST", "yes");
        let t = Template::compile(
            "{{ $ctx.user.name }} <{{ $payload.a }}> {{ json $ctx.list }} {{ $env.ILLUMO_TEMPLATE_TEST }}{{#if $ctx.missing}}x{{/if}}",
        )
        .unwrap();
        let ctx = json!({"user": {"name": "Ada & Bob"}, "payloads": {"a": 1}, "list": [1, "b"], "big": "unused"});
        assert_eq!(t.render(&ctx).unwrap(), "Ada & Bob <1> [1,\"b\"] yes");
    }

    #[test]
    fn each_sees_root_through_at_root() {
        let t =
            Template::compile("{{#each $ctx.items}}{{this}}{{@root.$ctx.sep}}{{/each}}").unwrap();
        assert_eq!(
            t.render(&json!({"items": ["a", "b"], "sep": ","})).unwrap(),
            "a,b,"
        );
    }

    #[test]
    fn strict_mode_names_the_missing_path() {
        let t = Template::compile("hi {{ $ctx.user.name }}").unwrap();
        assert_eq!(
            t.render(&json!({})).unwrap_err().reason,
            "`$ctx.user.name` is not in ctx"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = Template::compile("ok\n{{#if $ctx.x}}never closed").unwrap_err();
        assert_eq!((e.line, e.column), (2, 27));
    }

    #[test]
    fn prune_copies_only_named_subtrees() {
        let reads = scan_reads("{{ $ctx.a.b }} {{ $payload.n }} {{ $ctx.list.0 }}");
        let ctx = json!({"a": {"b": 1, "c": 2}, "payloads": {"n": 3, "m": 4}, "list": [5], "z": 6});
        assert_eq!(
            reads.prune(&ctx),
            json!({"a": {"b": 1}, "payloads": {"n": 3}, "list": [5]})
        );
    }
}
