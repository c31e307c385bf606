//! A small JSON Schema check for structured replies. It checks `type`, `properties`,
//! `required`, `additionalProperties` (false or a schema), `items`, `enum`, `const`,
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minItems`, `maxItems`,
//! `minLength`, `maxLength` and `pattern`, and reads the annotations (`title`,
//! `description`, `default`, `examples`, `format`, `$schema`, `$comment`). Any other
//! keyword (`oneOf`, `$ref`, ...) is refused when the flow loads, with its place, rather
//! than silently not checked.

use serde_json::Value;

/// The keywords [`validate`] checks.
pub const CHECKED: [&str; 16] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
];

/// Keywords that describe and check nothing.
const ANNOTATIONS: [&str; 7] = [
    "title",
    "description",
    "default",
    "examples",
    "format",
    "$schema",
    "$comment",
];

/// A keyword of a schema that cannot be used, and where: the steps from the schema's root.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported {
    pub at: Vec<String>,
    pub keyword: String,
    /// The text to point at: the keyword, or a bad pattern.
    pub text: String,
    pub why: String,
}

/// Every keyword in `schema` that [`validate`] would not check, and every `pattern` that
/// is not a regular expression.
pub fn unsupported(schema: &Value) -> Vec<Unsupported> {
    let mut found = Vec::new();
    walk(schema, &mut Vec::new(), &mut found);
    found
}

fn walk(schema: &Value, at: &mut Vec<String>, found: &mut Vec<Unsupported>) {
    let Some(map) = schema.as_object() else {
        return;
    };
    for (key, value) in map {
        at.push(key.clone());
        match key.as_str() {
            "properties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    at.push(name.clone());
                    walk(sub, at, found);
                    at.pop();
                }
            }
            "items" | "additionalProperties" => walk(value, at, found),
            "pattern" => {
                if let Some((text, Err(e))) = value.as_str().map(|p| (p, regex_lite::Regex::new(p)))
                {
                    found.push(Unsupported {
                        at: at.clone(),
                        keyword: key.clone(),
                        text: text.to_string(),
                        why: format!("`pattern` is not a regular expression: {e}"),
                    });
                }
            }
            k if CHECKED.contains(&k) || ANNOTATIONS.contains(&k) => {}
            _ => found.push(Unsupported {
                at: at.clone(),
                keyword: key.clone(),
                text: key.clone(),
                why: format!(
                    "the reply check does not know `{key}`; it checks {}",
                    CHECKED.map(|k| format!("`{k}`")).join(", ")
                ),
            }),
        }
        at.pop();
    }
}

/// Checks `value` against `schema`; the error names the place (`$.choice`) and the rule.
pub fn validate(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |k: &str| match k {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "number" => value.is_number(),
            "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| fits(k)) {
            return Err(format!(
                "{at} should be {}, not {value}",
                kinds.join(" or ")
            ));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("{at} is {value}, not one of {}", names.join(", ")));
        }
    }
    if let Some(expected) = schema.get("const").filter(|c| *c != value) {
        return Err(format!("{at} is {value}, not {expected}"));
    }
    if let Some(n) = value.as_f64() {
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        if let Some(min) = bound("minimum").filter(|min| n < *min) {
            return Err(format!("{at} is {n}, below the minimum {min}"));
        }
        if let Some(max) = bound("maximum").filter(|max| n > *max) {
            return Err(format!("{at} is {n}, above the maximum {max}"));
        }
        if let Some(min) = bound("exclusiveMinimum").filter(|min| n <= *min) {
            return Err(format!("{at} is {n}, not above {min}"));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|max| n >= *max) {
            return Err(format!("{at} is {n}, not below {max}"));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
        if let Some(min) = limit("minLength").filter(|m| length < *m) {
            return Err(format!("{at} has {length} characters, fewer than {min}"));
        }
        if let Some(max) = limit("maxLength").filter(|m| length > *m) {
            return Err(format!("{at} has {length} characters, more than {max}"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            // Checked at load; an invalid pattern never gets here.
            if let Ok(re) = regex_lite::Regex::new(pattern) {
                if !re.is_match(text) {
                    return Err(format!("{at} is {value}, which does not match `{pattern}`"));
                }
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    return Err(format!("{at} has no `{key}`"));
                }
            }
        }
        for (key, item) in object {
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => validate(sub, item, &format!("{at}.{key}"))?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{at} has an unexpected `{key}`"));
                }
                (None, Some(extra @ Value::Object(_))) => {
                    validate(extra, item, &format!("{at}.{key}"))?
                }
                (None, _) => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema
            .get("minItems")
            .and_then(Value::as_u64)
            .filter(|m| (items.len() as u64) < *m)
        {
            return Err(format!("{at} has {} items, fewer than {min}", items.len()));
        }
        if let Some(max) = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .filter(|m| (items.len() as u64) > *m)
        {
            return Err(format!("{at} has {} items, more than {max}", items.len()));
        }
        if let Some(sub) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(sub, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_types_required_enums_and_ranges() {
        let schema = json!({
            "type": "object", "required": ["choice"], "additionalProperties": false,
            "properties": {"choice": {"enum": ["a", "b"]}, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                           "tags": {"type": "array", "items": {"type": "string"}}},
        });
        assert_eq!(
            validate(
                &schema,
                &json!({"choice": "a", "confidence": 0.5, "tags": ["x"]}),
                "$"
            ),
            Ok(())
        );
        assert_eq!(
            validate(&schema, &json!({}), "$"),
            Err("$ has no `choice`".into())
        );
        assert_eq!(
            validate(&schema, &json!({"choice": "c"}), "$"),
            Err("$.choice is \"c\", not one of \"a\", \"b\"".into())
        );
        assert_eq!(
            validate(&schema, &json!({"choice": "a", "confidence": 2}), "$"),
            Err("$.confidence is 2, above the maximum 1".into())
        );
        assert_eq!(
            validate(&schema, &json!({"choice": "a", "extra": 1}), "$"),
            Err("$ has an unexpected `extra`".into())
        );
        assert_eq!(
            validate(&schema, &json!({"choice": "a", "tags": [1]}), "$"),
            Err("$.tags[0] should be string, not 1".into())
        );
    }

    #[test]
    fn checks_strings_constants_and_extra_properties() {
        let schema = json!({
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$", "maxLength": 3},
                           "kind": {"const": "city"}, "name": {"minLength": 2}},
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
        });
        assert_eq!(
            validate(
                &schema,
                &json!({"code": "PAR", "kind": "city", "pop": 2.1}),
                "$"
            ),
            Ok(())
        );
        assert_eq!(
            validate(&schema, &json!({"code": "Paris"}), "$"),
            Err("$.code has 5 characters, more than 3".into())
        );
        assert_eq!(
            validate(&schema, &json!({"code": "par"}), "$"),
            Err("$.code is \"par\", which does not match `^[A-Z]{3}$`".into())
        );
        assert_eq!(
            validate(&schema, &json!({"kind": "town"}), "$"),
            Err("$.kind is \"town\", not \"city\"".into())
        );
        assert_eq!(
            validate(&schema, &json!({"pop": 0}), "$"),
            Err("$.pop is 0, not above 0".into())
        );
        assert_eq!(
            validate(&schema, &json!({"name": "P"}), "$"),
            Err("$.name has 1 characters, fewer than 2".into())
        );
    }

    #[test]
    fn keywords_the_check_does_not_know_are_found_with_their_place() {
        let schema = json!({
            "type": "object", "description": "a city",
            "properties": {"a": {"oneOf": [{"type": "string"}]}, "b": {"pattern": "("}},
            "$defs": {},
        });
        let found: Vec<(Vec<String>, String)> = unsupported(&schema)
            .into_iter()
            .map(|u| (u.at, u.keyword))
            .collect();
        assert_eq!(
            found,
            [
                (
                    vec!["properties".into(), "a".into(), "oneOf".into()],
                    "oneOf".to_string()
                ),
                (
                    vec!["properties".into(), "b".into(), "pattern".into()],
                    "pattern".to_string()
                ),
                (vec!["$defs".into()], "$defs".to_string()),
            ]
        );
    }
}
