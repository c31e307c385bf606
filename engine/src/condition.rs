//! `when:` conditions: CEL expressions over `ctx`, `payload` and `env`, compiled at load.
//! A leading `$` (`$ctx.score`) is accepted. Evaluation sees only the parts of ctx the
//! expression names.

use crate::template::{scan_reads, Reads};
use serde_json::Value;

const NAMES: [&str; 3] = ["ctx", "payload", "env"];

#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    program: std::sync::Arc<cel::Program>,
    reads: Reads,
}

/// A condition that does not compile, with the 0-based offset of the problem in its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionSyntaxError {
    pub reason: String,
    pub offset: usize,
    pub width: usize,
    pub hint: Option<String>,
}

/// A condition that failed while being evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("condition `{condition}` failed: {reason}")]
pub struct ConditionError {
    pub condition: String,
    pub reason: String,
}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, ConditionSyntaxError> {
        if let Err(deep) = crate::limits::condition_nesting(source) {
            return Err(ConditionSyntaxError {
                reason: deep.reason(),
                offset: deep.offset,
                width: 1,
                hint: Some(
                    "split it into simpler conditions (a Router takes several routes)".into(),
                ),
            });
        }
        let (plain, origin) = strip_dollars(source);
        // Offsets found in the plain text, as character offsets in the source.
        let at = |byte: usize| origin.get(byte).copied().unwrap_or(source.chars().count());
        let program = cel::Program::compile(&plain).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map_or((1, 1), |e| {
                (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize)
            });
            let column = column - 1;
            let offset = plain
                .lines()
                .take(line - 1)
                .map(|l| l.len() + 1)
                .sum::<usize>()
                + column;
            let reason = first.map_or_else(|| "syntax error".to_string(), |e| tidy(&e.msg));
            ConditionSyntaxError {
                reason,
                offset: at(offset),
                width: 1,
                hint: None,
            }
        })?;
        let references = program.references();
        let mut variables = references.variables();
        variables.sort_unstable();
        let bound = macro_variables(&plain);
        for name in variables {
            if !NAMES.contains(&name) && !bound.iter().any(|b| b == name) {
                let offset = find_word(&plain, name).unwrap_or(0);
                return Err(ConditionSyntaxError {
                    reason: format!("unknown name `{name}` in condition"),
                    offset: at(offset),
                    width: name.chars().count(),
                    hint: Some(format!(
                        "conditions read `ctx`, `payload` and `env`; did you mean `ctx.{name}`?"
                    )),
                });
            }
        }
        let marked: String = mark_roots(&plain);
        Ok(Condition {
            source: source.to_string(),
            program: std::sync::Arc::new(program),
            reads: scan_reads(&marked),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Evaluates to a boolean; anything else, or a missing key, is an error.
    pub fn eval(&self, ctx: &Value, payload: &Value) -> Result<bool, ConditionError> {
        let fail = |reason: String| ConditionError {
            condition: self.source.clone(),
            reason,
        };
        let mut cx = cel::Context::default();
        cx.add_variable_from_value("ctx", to_cel(&self.reads.prune(ctx)));
        cx.add_variable_from_value("payload", to_cel(payload));
        cx.add_variable_from_value("env", to_cel(&self.reads.env_map()));
        match self.program.execute(&cx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(fail(format!("it gave {other:?}, not true or false"))),
            Err(cel::ExecutionError::NoSuchKey(key)) => Err(fail(format!(
                "no key `{key}`; use has(...) to test whether a value is there"
            ))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}

/// Names that CEL macros bind: `x` in `ctx.files.exists(x, x == 'a')`.
fn macro_variables(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for name in ["all", "exists", "exists_one", "map", "filter"] {
        let pattern = format!(".{name}(");
        let mut rest = source;
        while let Some(at) = rest.find(&pattern) {
            rest = &rest[at + pattern.len()..];
            let var: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !var.is_empty() && rest.trim_start()[var.len()..].trim_start().starts_with(',') {
                names.push(var);
            }
        }
    }
    names
}

/// Where `word` stands alone (not inside a longer name or after a `.`).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| is_name(c) || c == '.') && !after.is_some_and(is_name)
    })
}

/// CEL's parser lists every token it expected; keep the part a person reads.
fn tidy(message: &str) -> String {
    let head = message.split(" expecting ").next().unwrap_or(message);
    let head = head.strip_prefix("Syntax error: ").unwrap_or(head);
    if head.contains("'<EOF>'") {
        "the condition ends too early".to_string()
    } else {
        head.to_string()
    }
}

/// JSON to CEL: whole numbers become `int` (so `ctx.n + 1` works), others `double`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(std::sync::Arc::new(s.clone())),
        Value::Array(items) => {
            cel::Value::List(std::sync::Arc::new(items.iter().map(to_cel).collect()))
        }
        Value::Object(map) => {
            let entries: std::collections::HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(entries)
        }
    }
}

/// `$ctx.a` -> `ctx.a` (CEL names cannot start with `$`), and for each byte of the
/// result, the character offset in `source` it came from (so errors point at the source).
fn strip_dollars(source: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(source.len());
    let mut origin = Vec::with_capacity(source.len() + 1);
    for (i, c) in source.chars().enumerate() {
        if c == '$' {
            let rest: String = source.chars().skip(i + 1).take(7).collect();
            if NAMES.iter().any(|n| rest.starts_with(n)) {
                continue;
            }
        }
        out.push(c);
        origin.extend(std::iter::repeat_n(i, c.len_utf8()));
    }
    origin.push(source.chars().count());
    (out, origin)
}

/// `ctx.a` -> `$ctx.a`, to reuse the template reference scanner.
fn mark_roots(plain: &str) -> String {
    let mut out = String::with_capacity(plain.len() + 8);
    let mut prev: Option<char> = None;
    for (i, c) in plain.char_indices() {
        let boundary =
            prev.is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '.' || p == '$'));
        if boundary && NAMES.iter().any(|n| plain[i..].starts_with(n)) {
            out.push('$');
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_over_ctx_payload_and_env() {
        let c = Condition::compile("$ctx.review.status == 'OK' && payload.n > 1").unwrap();
        assert!(c
            .eval(&json!({"review": {"status": "OK"}}), &json!({"n": 2}))
            .unwrap());
        assert!(!c
            .eval(&json!({"review": {"status": "NG"}}), &json!({"n": 2}))
            .unwrap());
        let score = Condition::compile("ctx.score >= 0.8").unwrap();
        assert!(score.eval(&json!({"score": 0.9}), &Value::Null).unwrap());
        assert!(score.eval(&json!({"score": 1}), &Value::Null).unwrap());
    }

    #[test]
    fn has_size_in_and_env_work() {
        std::env::set_var("ILLUMO_CONDITION_TEST", "prod");
        let ctx = json!({"files": ["a"], "labels": ["bug"], "review": {}});
        for (source, expected) in [
            ("has(ctx.review.summary)", false),
            ("has(ctx.review)", true),
            ("size(ctx.files) > 0 && 'bug' in ctx.labels", true),
            ("env.ILLUMO_CONDITION_TEST == 'prod'", true),
            ("ctx.files[0] == 'a'", true),
        ] {
            assert_eq!(
                Condition::compile(source).unwrap().eval(&ctx, &Value::Null),
                Ok(expected),
                "{source}"
            );
        }
    }

    #[test]
    fn macros_bind_their_own_names() {
        let c = Condition::compile("ctx.files.exists(f, f == 'a') && ctx.n.all(x, x > 0)").unwrap();
        assert!(c
            .eval(&json!({"files": ["b", "a"], "n": [1, 2]}), &Value::Null)
            .unwrap());
        let e = Condition::compile("ctx.files.size() > 0 && files == 1").unwrap_err();
        assert_eq!(
            (e.reason.as_str(), e.offset),
            ("unknown name `files` in condition", 24)
        );
    }

    #[test]
    fn reads_only_named_paths() {
        let c = Condition::compile("ctx.a.b == 1 || has(ctx.c)").unwrap();
        assert_eq!(
            c.reads()
                .prune(&json!({"a": {"b": 1, "x": 2}, "c": 3, "d": 4})),
            json!({"a": {"b": 1}, "c": 3})
        );
    }

    #[test]
    fn rejects_syntax_and_unknown_names() {
        let e = Condition::compile("ctx.a ==").unwrap_err();
        assert_eq!(e.offset, 8);
        let e = Condition::compile("ctx.a = 1").unwrap_err();
        assert_eq!(e.offset, 6);
        let e = Condition::compile("review.status == 'OK'").unwrap_err();
        assert_eq!(e.reason, "unknown name `review` in condition");
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn missing_keys_and_non_booleans_are_errors() {
        let c = Condition::compile("ctx.review.status == 'OK'").unwrap();
        assert_eq!(
            c.eval(&json!({}), &Value::Null).unwrap_err().to_string(),
            "condition `ctx.review.status == 'OK'` failed: no key `review`; use has(...) to test whether a value is there"
        );
        let n = Condition::compile("ctx.n + 1").unwrap();
        assert_eq!(
            n.eval(&json!({"n": 1}), &Value::Null).unwrap_err().reason,
            "it gave Int(2), not true or false"
        );
    }
}
