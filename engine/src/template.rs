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
    REGISTRY.get_or_init(|| new_registry(true))
}

/// The registry of lenient templates: a missing value is null.
fn lenient_registry() -> &'static Handlebars<'static> {
    static REGISTRY: OnceLock<Handlebars<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| new_registry(false))
}

fn new_registry(strict: bool) -> Handlebars<'static> {
    {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(strict);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(json_helper));
        hb.register_helper(TEXT, Box::new(text_helper));
        hb
    }
}

/// The helper every plain `{{ value }}` is turned into (a name no template can write).
const TEXT: &str = "$text";

/// How deeply a compiled template nests: blocks (an `{{else if}}` is a block inside the
/// one before it), their `else` parts and subexpressions, found without recursion.
fn compiled_depth(elements: &[handlebars::template::TemplateElement]) -> usize {
    use handlebars::template::{Parameter, TemplateElement};
    enum Item<'a> {
        Elements(&'a [TemplateElement]),
        Param(&'a Parameter),
    }
    let mut stack: Vec<(Item<'_>, usize)> = vec![(Item::Elements(elements), 0)];
    fn helper_params(
        ht: &handlebars::template::HelperTemplate,
    ) -> impl Iterator<Item = &Parameter> {
        ht.params
            .iter()
            .chain(ht.hash.values())
            .chain(std::iter::once(&ht.name))
    }
    let mut deepest = 0;
    while let Some((item, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        if depth > crate::limits::MAX_EXPRESSION_NESTING {
            return depth;
        }
        match item {
            Item::Param(Parameter::Subexpression(sub)) => {
                stack.push((
                    Item::Elements(std::slice::from_ref(&*sub.element)),
                    depth + 1,
                ));
            }
            Item::Param(_) => {}
            Item::Elements(elements) => {
                for element in elements {
                    match element {
                        TemplateElement::HelperBlock(ht) => {
                            for p in helper_params(ht) {
                                stack.push((Item::Param(p), depth + 1));
                            }
                            for t in ht.template.iter().chain(ht.inverse.iter()) {
                                stack.push((Item::Elements(&t.elements), depth + 1));
                            }
                        }
                        TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                            for p in helper_params(ht) {
                                stack.push((Item::Param(p), depth));
                            }
                        }
                        TemplateElement::DecoratorBlock(dt) | TemplateElement::PartialBlock(dt) => {
                            if let Some(t) = &dt.template {
                                stack.push((Item::Elements(&t.elements), depth + 1));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    deepest
}

/// Makes every plain `{{ value }}`, in blocks too, render through [`TEXT`], so a map or
/// a list comes out as JSON instead of handlebars' `[object]`.
fn values_as_text(elements: &mut [handlebars::template::TemplateElement]) {
    use handlebars::template::{Parameter, TemplateElement};
    for element in elements {
        match element {
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                // A value, not a helper call: `{{ $ctx.x }}`, or `{{ name }}` in a block.
                let value = match &ht.name {
                    Parameter::Path(_) => true,
                    Parameter::Name(n) => !HELPERS.contains(&n.as_str()),
                    _ => false,
                };
                if value && ht.params.is_empty() && ht.hash.is_empty() {
                    let value = std::mem::replace(&mut ht.name, Parameter::Name(TEXT.into()));
                    ht.params = vec![value];
                }
            }
            TemplateElement::HelperBlock(ht) => {
                for inner in ht.template.iter_mut().chain(ht.inverse.iter_mut()) {
                    values_as_text(&mut inner.elements);
                }
            }
            _ => {}
        }
    }
}

/// A value as text: strings as they are, maps and lists as JSON, null as nothing.
fn text_helper(
    h: &handlebars::Helper,
    hb: &Handlebars,
    _: &Context,
    _: &mut handlebars::RenderContext,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let Some(param) = h.param(0) else {
        return Err(handlebars::RenderErrorReason::ParamNotFoundForIndex(TEXT, 0).into());
    };
    // A lenient template (strict mode off) renders a missing value as nothing.
    if param.is_value_missing() && hb.strict_mode() {
        let path = param.relative_path().cloned();
        return Err(handlebars::RenderErrorReason::MissingVariable(path).into());
    }
    match param.value() {
        Value::String(s) => out.write(s)?,
        Value::Null => {}
        // Lenient templates are illumo-flow's, which print Python's `True`/`False`.
        Value::Bool(b) if !hb.strict_mode() => out.write(if *b { "True" } else { "False" })?,
        other @ (Value::Array(_) | Value::Object(_)) => {
            out.write(&serde_json::to_string(other).unwrap_or_default())?
        }
        other => out.write(&other.to_string())?,
    }
    Ok(())
}

fn json_helper(
    h: &handlebars::Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut handlebars::RenderContext,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let Some(param) = h.param(0) else {
        return Err(handlebars::RenderErrorReason::ParamNotFoundForIndex("json", 0).into());
    };
    if param.is_value_missing() {
        let path = param.relative_path().cloned();
        return Err(handlebars::RenderErrorReason::MissingVariable(path).into());
    }
    let value = param.value().clone();
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
    /// A missing value renders as nothing instead of failing (illumo-flow's templates).
    lenient: bool,
}

/// A template that does not compile: the reason and the 1-based line/column inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSyntaxError {
    pub reason: String,
    pub line: usize,
    pub column: usize,
    /// What to do about it, when the usual template help does not fit.
    pub hint: Option<&'static str>,
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
        if let Err(deep) = crate::limits::template_nesting(source) {
            let before: Vec<char> = source.chars().take(deep.offset).collect();
            let line = before.iter().filter(|c| **c == '\n').count() + 1;
            let column = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
            return Err(TemplateSyntaxError {
                reason: deep.reason(),
                line,
                column,
                hint: Some(
                    "compute part of it in an earlier node, or split it into several values",
                ),
            });
        }
        let compiled = handlebars::Template::compile(source).map_err(|e| {
            let (line, column) = e.pos().unwrap_or((1, 1));
            TemplateSyntaxError {
                reason: e.reason().to_string(),
                line,
                column,
                hint: None,
            }
        })?;
        // The compiled tree is what rendering recurses through: its depth is the limit
        // (the text check above only keeps absurd input from the compiler).
        if compiled_depth(&compiled.elements) > crate::limits::MAX_EXPRESSION_NESTING {
            return Err(TemplateSyntaxError {
                reason: crate::limits::TooDeep::at(0).reason(),
                line: 1,
                column: 1,
                hint: Some(
                    "compute part of it in an earlier node, or split it into several values",
                ),
            });
        }
        if let Some(problem) = check_elements(&compiled.elements, &compiled.mapping, false) {
            return Err(problem);
        }
        let mut compiled = compiled;
        values_as_text(&mut compiled.elements);
        Ok(Template {
            source: source.to_string(),
            compiled,
            reads: scan_reads(source),
            lenient: false,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The same template, rendering a missing value as nothing (illumo-flow's meaning).
    pub fn lenient(mut self) -> Template {
        self.lenient = true;
        self
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
        let registry = match self.lenient {
            true => lenient_registry(),
            false => registry(),
        };
        let rendered = self.compiled.renders(registry, &context, &mut rc);
        rendered.map_err(|e| RenderError {
            template: self.source.clone(),
            reason: render_reason(&e),
        })
    }
}

/// Helpers a template may call: handlebars' built-ins and `json`.
pub const HELPERS: [&str; 18] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len", "json",
];

const ROOTS: [&str; 4] = ["$ctx", "$payload", "$joins", "$env"];

/// Checks names at load: outside `#each`/`#with`, a path must start at a known root
/// (`{{ ctx.x }}` is a mistake for `{{ $ctx.x }}`), and every helper must exist.
fn check_elements(
    elements: &[handlebars::template::TemplateElement],
    mapping: &[handlebars::template::TemplateMapping],
    scoped: bool,
) -> Option<TemplateSyntaxError> {
    use handlebars::template::{Parameter, TemplateElement};
    for (i, element) in elements.iter().enumerate() {
        let (line, column) = mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
        let problem = |reason: String| {
            Some(TemplateSyntaxError {
                reason,
                line,
                column,
                hint: None,
            })
        };
        let helper = match element {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => h,
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                return problem("partials (`{{> name}}`) are not supported".into());
            }
            _ => continue,
        };
        let is_call = helper.block || !helper.params.is_empty() || !helper.hash.is_empty();
        let name = match &helper.name {
            Parameter::Name(n) => Some(n.as_str()),
            Parameter::Path(p) => Some(path_text(p)),
            _ => None,
        };
        if is_call {
            if let Some(name) = name.filter(|n| !HELPERS.contains(n)) {
                return problem(format!(
                    "unknown helper `{name}`; templates have `{}`",
                    HELPERS.join("`, `")
                ));
            }
        } else if let Some(name) = name {
            if HELPERS.contains(&name) && !scoped {
                return problem(format!(
                    "helper `{name}` needs a value, like `{{{{ {name} $ctx.x }}}}`"
                ));
            }
            if let Some(p) = check_root(name, scoped) {
                return problem(p);
            }
        }
        for param in helper.params.iter().chain(helper.hash.values()) {
            match param {
                Parameter::Path(p) => {
                    if let Some(p) = check_root(path_text(p), scoped) {
                        return problem(p);
                    }
                }
                Parameter::Subexpression(sub) => {
                    if let Some(mut p) =
                        check_elements(std::slice::from_ref(&*sub.element), &[], scoped)
                    {
                        (p.line, p.column) = (line, column);
                        return Some(p);
                    }
                }
                _ => {}
            }
        }
        let inner_scoped = scoped || matches!(name, Some("each" | "with"));
        for inner in helper.template.iter().chain(helper.inverse.iter()) {
            if let Some(p) = check_elements(&inner.elements, &inner.mapping, inner_scoped) {
                return Some(p);
            }
        }
    }
    None
}

fn path_text(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) => raw,
        handlebars::Path::Local((_, _, raw)) => raw,
    }
}

fn check_root(path: &str, scoped: bool) -> Option<String> {
    if scoped
        || path.starts_with('@')
        || path == "this"
        || path.starts_with("this.")
        || path.starts_with("../")
    {
        return None;
    }
    let root = path.split(['.', '[']).next().unwrap_or(path);
    if ROOTS.contains(&root) {
        return None;
    }
    let hint = if ["ctx", "payload", "joins", "env"].contains(&root) {
        format!("; did you mean `${path}`?")
    } else {
        String::new()
    };
    Some(format!("`{path}` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`{hint}"))
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
    fn names_are_checked_at_load() {
        let e = Template::compile("hi {{ ctx.user.name }}").unwrap_err();
        assert_eq!(
            e.reason,
            "`ctx.user.name` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.user.name`?"
        );
        assert_eq!((e.line, e.column), (1, 4));
        let e = Template::compile("{{#if $ctx.x}}\n{{ upcase $ctx.x }}{{/if}}").unwrap_err();
        assert!(
            e.reason
                .starts_with("unknown helper `upcase`; templates have `if`"),
            "{}",
            e.reason
        );
        // Inside #each, names are the item's; helpers may nest.
        let each = Template::compile(
            "{{#each $ctx.files}}{{ path }} {{ this.size }} {{ @index }}{{/each}}",
        )
        .unwrap();
        assert_eq!(
            each.render(&json!({"files": [{"path": "a.py", "size": 3}]}))
                .unwrap(),
            "a.py 3 0"
        );
        let nested =
            Template::compile("{{#if (eq $ctx.a 1)}}yes{{/if}} {{ json $payload.x pretty=true }}")
                .unwrap();
        assert_eq!(
            nested
                .render(&json!({"a": 1, "payloads": {"x": [1]}}))
                .unwrap(),
            "yes [\n  1\n]"
        );
        let e = Template::compile("{{#if (eq ctx.a 1)}}yes{{/if}}").unwrap_err();
        assert_eq!(
            e.reason,
            "`ctx.a` is not a known value: paths start with `$ctx`, `$payload`, `$joins` or `$env`; did you mean `$ctx.a`?"
        );
    }

    #[test]
    fn json_of_a_missing_value_is_an_error() {
        let t = Template::compile("{{ json $ctx.missing }}").unwrap();
        assert_eq!(
            t.render(&json!({})).unwrap_err().reason,
            "`$ctx.missing` is not in ctx"
        );
        let e = Template::compile("{{ json }}").unwrap_err();
        assert_eq!(
            e.reason,
            "helper `json` needs a value, like `{{ json $ctx.x }}`"
        );
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
