//! Paths into the context tree: `$ctx.a.b[0]`, `$payload.node`, `$joins.join.parent`, `$env.NAME`.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a path reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    Ctx,
    Env,
}

/// A parsed path. `$payload.x` and `$joins.j.p` are ctx paths under `payloads` and `joins`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtxPath {
    pub root: Root,
    pub steps: Vec<Step>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PathError {
    pub reason: String,
    pub offset: usize,
}

impl CtxPath {
    /// Parses a path that starts with `$ctx`, `$payload`, `$joins` or `$env`.
    pub fn parse(text: &str) -> Result<CtxPath, PathError> {
        let fail = |reason: String, offset: usize| Err(PathError { reason, offset });
        let (root, prefix, rest) = if let Some(rest) = text.strip_prefix("$ctx") {
            (Root::Ctx, vec![], rest)
        } else if let Some(rest) = text.strip_prefix("$payload") {
            (Root::Ctx, vec![Step::Key("payloads".into())], rest)
        } else if let Some(rest) = text.strip_prefix("$joins") {
            (Root::Ctx, vec![Step::Key("joins".into())], rest)
        } else if let Some(rest) = text.strip_prefix("$env") {
            (Root::Env, vec![], rest)
        } else {
            return fail(format!("`{text}` is not a path: it must start with `$ctx`, `$payload`, `$joins` or `$env`"), 0);
        };
        let mut steps = prefix;
        let bytes = rest.as_bytes();
        let base = text.len() - rest.len();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let end = rest[start..]
                        .find(['.', '['])
                        .map_or(rest.len(), |e| start + e);
                    let key = &rest[start..end];
                    if key.is_empty()
                        || !key
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                    {
                        return fail(format!("bad key `{key}` in path `{text}`"), base + start);
                    }
                    steps.push(Step::Key(key.to_string()));
                    i = end;
                }
                b'[' => {
                    let Some(close) = rest[i..].find(']') else {
                        return fail(format!("unclosed `[` in path `{text}`"), base + i);
                    };
                    let inner = &rest[i + 1..i + close];
                    match inner.parse::<usize>() {
                        Ok(n) => steps.push(Step::Index(n)),
                        Err(_) => {
                            let key = inner.trim_matches(|c| c == '"' || c == '\'');
                            if key.len() + 2 != inner.len() || key.is_empty() {
                                return fail(
                                    format!("bad index `[{inner}]` in path `{text}`"),
                                    base + i,
                                );
                            }
                            steps.push(Step::Key(key.to_string()));
                        }
                    }
                    i += close + 1;
                }
                _ => {
                    return fail(
                        format!(
                            "unexpected `{}` in path `{text}`",
                            rest[i..].chars().next().unwrap_or(' ')
                        ),
                        base + i,
                    )
                }
            }
        }
        if root == Root::Env && steps.len() != 1 {
            return fail(
                format!("`{text}` must name one variable, like `$env.HOME`"),
                0,
            );
        }
        if steps.is_empty() && root == Root::Ctx && text != "$ctx" {
            return fail(
                format!("`{text}` must name a node, like `{text}.node_id`"),
                0,
            );
        }
        Ok(CtxPath {
            root,
            steps,
            text: text.to_string(),
        })
    }

    /// Builds a ctx path from steps.
    pub fn ctx(steps: Vec<Step>) -> CtxPath {
        let mut text = "$ctx".to_string();
        for step in &steps {
            match step {
                Step::Key(k) => {
                    text.push('.');
                    text.push_str(k);
                }
                Step::Index(i) => text.push_str(&format!("[{i}]")),
            }
        }
        CtxPath {
            root: Root::Ctx,
            steps,
            text,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does this path cover `other` (equal, or one is inside the other)?
    pub fn overlaps(&self, other: &CtxPath) -> bool {
        self.root == other.root && self.steps.iter().zip(&other.steps).all(|(a, b)| a == b)
    }

    /// Reads the value at this path; `None` when any step is missing.
    pub fn get<'v>(&self, ctx: &'v Value) -> Option<&'v Value> {
        get_steps(ctx, &self.steps)
    }
}

impl fmt::Display for CtxPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

pub fn get_steps<'v>(mut value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for step in steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write `{path}`: `{parent}` is {kind}")]
pub struct WriteError {
    pub path: String,
    pub parent: String,
    pub kind: &'static str,
}

pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Writes `new` at `steps`, creating maps on the way (and appending when an index equals a
/// list's length). A missing or null step becomes a map.
pub fn set_steps(root: &mut Value, steps: &[Step], new: Value) -> Result<(), WriteError> {
    let mut value = root;
    for (n, step) in steps.iter().enumerate() {
        if value.is_null() {
            *value = Value::Object(Default::default());
        }
        let fail = |value: &Value| WriteError {
            path: CtxPath::ctx(steps.to_vec()).to_string(),
            parent: CtxPath::ctx(steps[..n].to_vec()).to_string(),
            kind: kind_of(value),
        };
        let fits = match (step, &*value) {
            (Step::Key(_), Value::Object(_)) => true,
            (Step::Index(i), Value::Array(items)) => *i <= items.len(),
            _ => false,
        };
        if !fits {
            return Err(fail(value));
        }
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.entry(k.clone()).or_insert(Value::Null),
            (Step::Index(i), Value::Array(items)) => {
                if *i == items.len() {
                    items.push(Value::Null);
                }
                &mut items[*i]
            }
            _ => unreachable!("checked above"),
        };
    }
    *value = new;
    Ok(())
}

/// Checks a node setting that names a place in ctx (`diff_path: $ctx.diff.proposed`): a
/// `$ctx.` path with at least one step. The message says how to write it.
pub fn parse_setting_path(text: &str) -> Result<CtxPath, String> {
    match CtxPath::parse(text) {
        Ok(p) if p.root == Root::Ctx && !p.steps.is_empty() => Ok(p),
        Ok(_) => Err(format!(
            "`{text}` is not a place in ctx; write a `$ctx.` path like `$ctx.result`"
        )),
        Err(_) if !text.starts_with('$') => {
            Err(format!("`{text}` is not a ctx path; write `$ctx.{text}`"))
        }
        Err(e) => Err(e.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_root() {
        let p = CtxPath::parse("$ctx.a.b[0].c").unwrap();
        assert_eq!(
            p.steps,
            vec![
                Step::Key("a".into()),
                Step::Key("b".into()),
                Step::Index(0),
                Step::Key("c".into())
            ]
        );
        assert_eq!(
            CtxPath::parse("$payload.draft").unwrap().steps,
            vec![Step::Key("payloads".into()), Step::Key("draft".into())]
        );
        assert_eq!(CtxPath::parse("$joins.merge.geo").unwrap().steps.len(), 3);
        assert_eq!(CtxPath::parse("$env.HOME").unwrap().root, Root::Env);
        assert_eq!(
            CtxPath::parse("$ctx.a[\"b c\"]").unwrap().steps[1],
            Step::Key("b c".into())
        );
    }

    #[test]
    fn rejects_malformed_paths_with_offsets() {
        assert_eq!(CtxPath::parse("$ctx.a..b").unwrap_err().offset, 7);
        assert_eq!(
            CtxPath::parse("$ctx.a[x").unwrap_err().reason,
            "unclosed `[` in path `$ctx.a[x`"
        );
        assert_eq!(CtxPath::parse("ctx.a").unwrap_err().offset, 0);
        assert_eq!(
            CtxPath::parse("$env.A.B").unwrap_err().reason,
            "`$env.A.B` must name one variable, like `$env.HOME`"
        );
    }

    #[test]
    fn setting_paths_must_be_ctx_paths() {
        assert_eq!(
            parse_setting_path("diff.proposed").unwrap_err(),
            "`diff.proposed` is not a ctx path; write `$ctx.diff.proposed`"
        );
        assert_eq!(
            parse_setting_path("$env.HOME").unwrap_err(),
            "`$env.HOME` is not a place in ctx; write a `$ctx.` path like `$ctx.result`"
        );
        assert_eq!(
            parse_setting_path("$ctx.a..b").unwrap_err(),
            "bad key `` in path `$ctx.a..b`"
        );
        assert_eq!(
            parse_setting_path("$ctx.diff.proposed").unwrap().as_str(),
            "$ctx.diff.proposed"
        );
    }

    #[test]
    fn writes_create_maps_and_refuse_scalars() {
        let mut ctx = json!({"a": 1, "list": [1]});
        set_steps(
            &mut ctx,
            &CtxPath::parse("$ctx.x.y").unwrap().steps,
            json!(2),
        )
        .unwrap();
        set_steps(
            &mut ctx,
            &CtxPath::parse("$ctx.list[1]").unwrap().steps,
            json!(3),
        )
        .unwrap();
        assert_eq!(ctx, json!({"a": 1, "list": [1, 3], "x": {"y": 2}}));
        let err = set_steps(
            &mut ctx,
            &CtxPath::parse("$ctx.a.b").unwrap().steps,
            json!(0),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write `$ctx.a.b`: `$ctx.a` is a number"
        );
    }
}
