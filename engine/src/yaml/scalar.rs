//! What a plain YAML scalar means: null, a boolean, a number or text, the way `yaml_serde`
//! reads it (YAML 1.2's core schema, with `0x`, `0o` and `0b` integers).

use serde_json::{Number, Value};

/// The value of a scalar; `tag` is its explicit tag (`!!str`, ...), if any.
pub fn resolve(text: &str, plain: bool, tag: Option<&str>) -> Result<Value, String> {
    match tag.map(short_tag) {
        None if plain => Ok(untagged(text)),
        None | Some("str") => Ok(Value::String(text.to_string())),
        Some("null") if is_null(text) => Ok(Value::Null),
        Some("bool") => match parse_bool(text) {
            Some(b) => Ok(Value::Bool(b)),
            None => Err(format!("`{text}` is not a boolean")),
        },
        Some("int") => integer(text).ok_or_else(|| format!("`{text}` is not an integer")),
        Some("float") => match integer(text) {
            Some(Value::Number(n)) => Ok(n
                .as_f64()
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number)),
            _ => float(text).ok_or_else(|| format!("`{text}` is not a number")),
        },
        Some(other) => Err(format!("unsupported YAML tag `!{other}`")),
    }
}

fn short_tag(tag: &str) -> &str {
    tag.strip_prefix("tag:yaml.org,2002:")
        .or_else(|| tag.strip_prefix("!!"))
        .or_else(|| tag.strip_prefix('!'))
        .unwrap_or(tag)
}

fn untagged(text: &str) -> Value {
    if text.is_empty() || is_null(text) {
        return Value::Null;
    }
    if let Some(b) = parse_bool(text) {
        return Value::Bool(b);
    }
    if let Some(n) = integer(text) {
        return n;
    }
    if !leading_zero_digits(text) {
        if let Some(f) = float(text) {
            return f;
        }
    }
    Value::String(text.to_string())
}

fn is_null(text: &str) -> bool {
    matches!(text, "null" | "Null" | "NULL" | "~")
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `007` is text in YAML 1.2, not a number.
fn leading_zero_digits(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

fn integer(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.starts_with(['+', '-']) {
        return None;
    }
    let (radix, digits) = if let Some(d) = unsigned.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = unsigned.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = unsigned.strip_prefix("0b") {
        (2, d)
    } else {
        if leading_zero_digits(text) {
            return None;
        }
        (10, unsigned)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if negative {
        let value = i128::try_from(magnitude).ok().map(|m| -m)?;
        i64::try_from(value).ok().map(Value::from).or_else(|| {
            // Beyond i64: keep it as a float, as serde_json would.
            Number::from_f64(value as f64).map(Value::Number)
        })
    } else {
        u64::try_from(magnitude)
            .ok()
            .map(Value::from)
            .or_else(|| Number::from_f64(magnitude as f64).map(Value::Number))
    }
}

fn float(text: &str) -> Option<Value> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if unsigned.starts_with(['+', '-']) && text.starts_with('+') {
        return None;
    }
    if matches!(
        unsigned,
        ".inf" | ".Inf" | ".INF" | "-.inf" | "-.Inf" | "-.INF"
    ) || matches!(text, ".nan" | ".NaN" | ".NAN")
    {
        // JSON has no infinity or NaN: the text stays text, so a setting that wants a
        // number says so instead of quietly taking its default.
        return Some(Value::String(text.to_string()));
    }
    let f: f64 = unsigned.parse().ok()?;
    // Rust reads `inf` and `nan`; YAML does not.
    if !f.is_finite() {
        return None;
    }
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_resolve_like_yaml_serde() {
        let cases = [
            ("", json!(null)),
            ("~", json!(null)),
            ("True", json!(true)),
            ("12", json!(12)),
            ("-12", json!(-12)),
            ("0x1f", json!(31)),
            ("0o17", json!(15)),
            ("007", json!("007")),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            ("inf", json!("inf")),
            (".inf", json!(".inf")),
            ("-.inf", json!("-.inf")),
            (".nan", json!(".nan")),
            ("yes", json!("yes")),
            ("12abc", json!("12abc")),
        ];
        for (text, want) in cases {
            assert_eq!(resolve(text, true, None), Ok(want), "{text}");
        }
        assert_eq!(resolve("12", false, None), Ok(json!("12")));
        assert_eq!(
            resolve("12", true, Some("tag:yaml.org,2002:str")),
            Ok(json!("12"))
        );
        assert_eq!(
            resolve("x", true, Some("!custom")),
            Err("unsupported YAML tag `!custom`".to_string())
        );
    }
}
