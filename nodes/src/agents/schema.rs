//! A small JSON Schema check for structured replies: `type`, `properties`, `required`,
//! `additionalProperties: false`, `items`, `enum`, `minimum`, `maximum`, `minItems`.

use serde_json::Value;

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
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema
            .get("minimum")
            .and_then(Value::as_f64)
            .filter(|min| n < *min)
        {
            return Err(format!("{at} is {n}, below the minimum {min}"));
        }
        if let Some(max) = schema
            .get("maximum")
            .and_then(Value::as_f64)
            .filter(|max| n > *max)
        {
            return Err(format!("{at} is {n}, above the maximum {max}"));
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
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => validate(sub, item, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at} has an unexpected `{key}`"));
                }
                None => {}
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
}
