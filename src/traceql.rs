//! The TraceQL subset illumo-flow's `trace` commands take (`--traceql`):
//! `trace_id="..."`, `span.name=="..."`, `span.kind=="..."`, `span.status=="..."`,
//! `span.attributes["key"]=="value"` and `limit N`, joined by `&&` or `|`, optionally
//! inside `{ }` and after `traces |`. Anything else is an error naming it (illumo-flow
//! ignores what it does not know; a filter silently dropped would show wrong results).

#[derive(Debug, Default, PartialEq)]
pub struct Filters {
    pub trace_id: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub limit: Option<usize>,
    /// `pick(a, b)`: the columns `trace list` shows.
    pub pick: Vec<String>,
}

pub fn parse(query: &str) -> Result<Filters, String> {
    let mut filters = Filters::default();
    let cleaned = query.replace(['{', '}'], " ");
    for clause in cleaned
        .split('|')
        .flat_map(|s| s.split("&&"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if clause.eq_ignore_ascii_case("traces") {
            continue;
        }
        if let Some(list) = clause
            .strip_prefix("pick")
            .map(str::trim_start)
            .and_then(|c| c.strip_prefix('('))
            .and_then(|c| c.strip_suffix(')'))
        {
            filters.pick = list
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            continue;
        }
        if let Some(n) = clause
            .strip_prefix("limit")
            .or_else(|| clause.strip_prefix("LIMIT"))
        {
            let n = n.trim();
            filters.limit = Some(
                n.parse()
                    .map_err(|_| format!("--traceql: `limit {n}` needs a whole number"))?,
            );
            continue;
        }
        let (left, right) = split_comparison(clause).ok_or_else(|| unknown(clause))?;
        let value = unquote(right).ok_or_else(|| {
            format!("--traceql: in `{clause}`, the value must be quoted: \"{right}\"")
        })?;
        match left {
            "trace_id" | "trace.id" | "traceid" => filters.trace_id = Some(value),
            "span.name" | "name" => filters.name = Some(value),
            "span.kind" | "kind" => filters.kind = Some(value.to_lowercase()),
            "span.status" | "status" => filters.status = Some(value.to_uppercase()),
            _ => {
                let key = left
                    .strip_prefix("span.attributes[")
                    .and_then(|k| k.strip_suffix(']'))
                    .and_then(unquote)
                    .ok_or_else(|| unknown(clause))?;
                // illumo-flow's attribute names, as illumo's spans spell them.
                let key = match key.as_str() {
                    "node_id" => "node.id".to_string(),
                    "node_type" => "node.type".to_string(),
                    _ => key,
                };
                filters.attributes.push((key, value));
            }
        }
    }
    Ok(filters)
}

fn unknown(clause: &str) -> String {
    format!(
        "--traceql: `{clause}` is not understood; use trace_id=\"...\", span.name==\"...\", span.kind==\"...\", span.status==\"...\", span.attributes[\"key\"]==\"value\", pick(columns) or limit N"
    )
}

/// `a == "b"` or `a = "b"` -> (`a`, `"b"`).
fn split_comparison(clause: &str) -> Option<(&str, &str)> {
    let at = clause.find('=')?;
    let left = clause[..at].trim();
    let right = clause[at..].trim_start_matches('=').trim();
    (!left.is_empty() && !right.is_empty()).then_some((left, right))
}

fn unquote(text: &str) -> Option<String> {
    let text = text.trim();
    for q in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(q) && text.ends_with(q) {
            return Some(text[1..text.len() - 1].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illumo_flows_subset_parses() {
        assert_eq!(
            parse(
                r#"{ span.name == "draft" && span.attributes["node.type"] == "Agent" } | limit 5"#
            ),
            Ok(Filters {
                name: Some("draft".into()),
                attributes: vec![("node.type".into(), "Agent".into())],
                limit: Some(5),
                ..Filters::default()
            })
        );
        assert_eq!(
            parse("traces | trace_id='abc' | span.kind==\"NODE\""),
            Ok(Filters {
                trace_id: Some("abc".into()),
                kind: Some("node".into()),
                ..Filters::default()
            })
        );
    }

    #[test]
    fn what_is_not_understood_is_an_error() {
        assert_eq!(
            parse("span.duration > 5"),
            Err("--traceql: `span.duration > 5` is not understood; use trace_id=\"...\", span.name==\"...\", span.kind==\"...\", span.status==\"...\", span.attributes[\"key\"]==\"value\", pick(columns) or limit N".into())
        );
        assert_eq!(
            parse("span.name == draft"),
            Err("--traceql: in `span.name == draft`, the value must be quoted: \"draft\"".into())
        );
        assert_eq!(
            parse("limit many"),
            Err("--traceql: `limit many` needs a whole number".into())
        );
    }
}
