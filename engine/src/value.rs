//! Values in a flow file that are rendered at run time: literals, `$ctx...` references and
//! `{{ ... }}` templates, nested in lists and maps.

use crate::path::{CtxPath, Root};
use crate::template::{Reads, RenderError, Template};
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub enum ValueSpec {
    Literal(Value),
    Ref(CtxPath),
    /// A reference that gives null when the path is not in ctx (and `""` for an unset
    /// variable), as illumo-flow reads one.
    RefOrNull(CtxPath),
    Template(Box<Template>),
    Array(Vec<ValueSpec>),
    Object(Vec<(String, ValueSpec)>),
}

impl ValueSpec {
    /// Renders against ctx: references are looked up, templates rendered, literals copied.
    pub fn render(&self, ctx: &Value) -> Result<Value, RenderError> {
        Ok(match self {
            ValueSpec::Literal(v) => v.clone(),
            ValueSpec::Ref(path) => lookup(path, ctx)?,
            ValueSpec::RefOrNull(path) => match path.root {
                Root::Ctx => path.get(ctx).cloned().unwrap_or(Value::Null),
                Root::Env => lookup(path, ctx).unwrap_or_else(|_| Value::String(String::new())),
            },
            ValueSpec::Template(t) => Value::String(t.render(ctx)?),
            ValueSpec::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            ValueSpec::Object(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), v.render(ctx)?);
                }
                Value::Object(map)
            }
        })
    }

    /// What rendering reads from ctx and the environment.
    pub fn reads(&self) -> Reads {
        let mut reads = Reads::default();
        self.collect_reads(&mut reads);
        reads
    }

    fn collect_reads(&self, reads: &mut Reads) {
        match self {
            ValueSpec::Literal(_) => {}
            ValueSpec::Ref(path) | ValueSpec::RefOrNull(path) => match path.root {
                Root::Ctx if path.steps.is_empty() => reads.all = true,
                Root::Ctx => reads.merge(&Reads::path(path.steps.clone())),
                Root::Env => reads.merge(&Reads {
                    env: path
                        .steps
                        .iter()
                        .map(|s| step_text(s).to_string())
                        .collect(),
                    ..Reads::default()
                }),
            },
            ValueSpec::Template(t) => reads.merge(&t.reads),
            ValueSpec::Array(items) => items.iter().for_each(|i| i.collect_reads(reads)),
            ValueSpec::Object(entries) => entries.iter().for_each(|(_, v)| v.collect_reads(reads)),
        }
    }

    /// Builds from nested parts, folding a container whose parts are all literals.
    pub fn array(items: Vec<ValueSpec>) -> ValueSpec {
        if items.iter().all(|i| matches!(i, ValueSpec::Literal(_))) {
            return ValueSpec::Literal(Value::Array(
                items.into_iter().map(|i| i.into_literal()).collect(),
            ));
        }
        ValueSpec::Array(items)
    }

    pub fn object(entries: Vec<(String, ValueSpec)>) -> ValueSpec {
        if entries
            .iter()
            .all(|(_, v)| matches!(v, ValueSpec::Literal(_)))
        {
            return ValueSpec::Literal(Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_literal()))
                    .collect(),
            ));
        }
        ValueSpec::Object(entries)
    }

    fn into_literal(self) -> Value {
        match self {
            ValueSpec::Literal(v) => v,
            _ => Value::Null,
        }
    }
}

fn step_text(step: &crate::path::Step) -> String {
    match step {
        crate::path::Step::Key(k) => k.clone(),
        crate::path::Step::Index(i) => i.to_string(),
    }
}

fn lookup(path: &CtxPath, ctx: &Value) -> Result<Value, RenderError> {
    let missing = || RenderError {
        template: path.to_string(),
        reason: format!("`{path}` is not in ctx"),
    };
    match path.root {
        Root::Ctx => path.get(ctx).cloned().ok_or_else(missing),
        Root::Env => {
            let name = path.steps.first().map(step_text).unwrap_or_default();
            std::env::var(&name)
                .map(Value::String)
                .map_err(|_| RenderError {
                    template: path.to_string(),
                    reason: format!("environment variable `{name}` is not set"),
                })
        }
    }
}

/// Does this string mean a path (rather than text that happens to start with `$`)?
pub fn looks_like_path(s: &str) -> bool {
    ["$ctx", "$payload", "$joins", "$env"].iter().any(|root| {
        s.strip_prefix(root).is_some_and(|rest| {
            (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
                && !rest.contains(char::is_whitespace)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_nested_refs_and_templates() {
        let spec = ValueSpec::object(vec![
            (
                "a".into(),
                ValueSpec::Ref(CtxPath::parse("$ctx.x[1]").unwrap()),
            ),
            (
                "b".into(),
                ValueSpec::Template(Box::new(Template::compile("n={{ $ctx.n }}").unwrap())),
            ),
            ("c".into(), ValueSpec::Literal(json!(true))),
        ]);
        let ctx = json!({"x": [0, {"deep": 1}], "n": 5});
        assert_eq!(
            spec.render(&ctx).unwrap(),
            json!({"a": {"deep": 1}, "b": "n=5", "c": true})
        );
        assert_eq!(
            ValueSpec::Ref(CtxPath::parse("$ctx.nope").unwrap())
                .render(&ctx)
                .unwrap_err()
                .reason,
            "`$ctx.nope` is not in ctx"
        );
    }

    #[test]
    fn knows_paths_from_prose() {
        assert!(looks_like_path("$ctx.a.b"));
        assert!(looks_like_path("$ctx"));
        assert!(!looks_like_path("$ctx is the context"));
        assert!(!looks_like_path("$5 per item"));
    }
}
