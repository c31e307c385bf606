//! Builds the value tree and the place tree from libyaml's events, without recursion:
//! one frame per open list or map. Nesting deeper than [`MAX_NESTING`] and aliases that
//! expand past [`MAX_ALIAS_VALUES`] values stop the parse at once, so hostile input costs
//! time in proportion to what was read, not more.

use super::events::{Event, Mark, Parser, Style, SyntaxError};
use super::{scalar, Kids, MapPos, Parsed, Pos, Yaml};
use serde_json::Value;
use std::collections::HashMap;

/// How deep lists and maps may nest in a flow file.
pub const MAX_NESTING: usize = 64;
/// How many values aliases (`*name`) may copy in one file, all together.
pub const MAX_ALIAS_VALUES: usize = 100_000;
/// How many bytes of text aliases may copy in one file, all together: as much as the
/// largest flow file illumo reads.
pub const MAX_ALIAS_BYTES: usize = 64 << 20;

/// Why a file is not a YAML tree illumo can read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub at: Option<Mark>,
    /// What the parser was doing when it stopped, for YAML syntax errors.
    pub help: Option<String>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(at) = self.at {
            write!(f, " at line {} column {}", at.line, at.column)?;
        }
        if let Some(help) = &self.help {
            write!(f, ", {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

impl From<SyntaxError> for ParseError {
    fn from(e: SyntaxError) -> ParseError {
        ParseError {
            message: e.problem,
            at: e.at,
            help: e.context.map(|(context, at)| match at {
                Some(m) => format!("{context} at line {} column {}", m.line, m.column),
                None => context,
            }),
        }
    }
}

fn error(message: impl Into<String>, at: Mark) -> ParseError {
    ParseError {
        message: message.into(),
        at: Some(at),
        help: None,
    }
}

/// Parses one YAML document (an empty text is null).
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut parser = Parser::new(text);
    let mut builder = Builder::default();
    let mut documents = 0;
    loop {
        let (event, at) = parser.next_event()?;
        match event {
            Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(error(
                        "a flow file holds one YAML document; remove the second `---`",
                        at,
                    ));
                }
            }
            Event::StreamEnd => break,
            other => builder.event(other, at)?,
        }
    }
    Ok(builder.done.unwrap_or_else(|| Parsed {
        yaml: Yaml::Scalar(Value::Null),
        pos: Pos::leaf(Mark { line: 1, column: 1 }, Style::Plain),
    }))
}

/// An open list or map.
struct Frame {
    at: Mark,
    anchor: Option<String>,
    body: Body,
}

enum Body {
    Seq {
        items: Vec<Yaml>,
        places: Vec<Pos>,
    },
    Map {
        entries: Vec<(String, Yaml)>,
        keys: Vec<Mark>,
        values: Vec<Pos>,
        /// The key read, waiting for its value.
        key: Option<(String, Mark, bool)>,
        /// Maps named by `<<` keys, merged in when the map ends.
        merges: Vec<Parsed>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<String, Parsed>,
    copied: usize,
    copied_bytes: usize,
    done: Option<Parsed>,
}

impl Builder {
    fn event(&mut self, event: Event, at: Mark) -> Result<(), ParseError> {
        let is_seq = matches!(event, Event::SequenceStart { .. });
        match event {
            Event::Scalar {
                anchor,
                tag,
                value,
                style,
            } => {
                let resolved = scalar::resolve(&value, style == Style::Plain, tag.as_deref())
                    .map_err(|m| error(m, at))?;
                let parsed = Parsed {
                    yaml: Yaml::Scalar(resolved),
                    pos: Pos::leaf(at, style),
                };
                // A key keeps its text as written, so `1:` and `true:` stay `1` and `true`.
                let key_text = match &parsed.yaml {
                    Yaml::Scalar(Value::String(_)) | Yaml::Scalar(Value::Null) => None,
                    _ => Some(value),
                };
                self.finish(parsed, anchor, at, key_text, style == Style::Plain)
            }
            Event::Alias(name) => {
                let Some(target) = self.anchors.get(&name) else {
                    return Err(error(format!("unknown anchor `*{name}`"), at)
                        .with_help("define it first with `&name` on the value to reuse"));
                };
                let (values, bytes) = size(&target.yaml);
                self.copied += values;
                self.copied_bytes += bytes;
                if self.copied > MAX_ALIAS_VALUES {
                    return Err(error(
                        format!("aliases copy more than {MAX_ALIAS_VALUES} values"),
                        at,
                    )
                    .with_help("a file that expands this much is refused as hostile"));
                }
                if self.copied_bytes > MAX_ALIAS_BYTES {
                    return Err(error(
                        format!(
                            "aliases copy more than {} MiB of text",
                            MAX_ALIAS_BYTES >> 20
                        ),
                        at,
                    )
                    .with_help("a file that expands this much is refused as hostile"));
                }
                let copy = target.clone();
                self.finish(copy, None, at, None, false)
            }
            Event::SequenceStart { anchor, tag } | Event::MappingStart { anchor, tag } => {
                if let Some(tag) = tag.filter(|t| !is_plain_container_tag(t)) {
                    return Err(error(format!("unsupported YAML tag `{tag}`"), at));
                }
                if self.stack.len() >= MAX_NESTING {
                    return Err(error(
                        format!("the YAML nests deeper than {MAX_NESTING} levels"),
                        at,
                    )
                    .with_help("flatten the structure; no flow needs this depth"));
                }
                let body = if is_seq {
                    Body::Seq {
                        items: Vec::new(),
                        places: Vec::new(),
                    }
                } else {
                    Body::Map {
                        entries: Vec::new(),
                        keys: Vec::new(),
                        values: Vec::new(),
                        key: None,
                        merges: Vec::new(),
                    }
                };
                self.stack.push(Frame { at, anchor, body });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().expect("libyaml balances start and end");
                let parsed = close(frame.body, frame.at)?;
                self.finish(parsed, frame.anchor, frame.at, None, false)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {
                Ok(())
            }
        }
    }

    /// Hands a finished value to the list or map around it.
    fn finish(
        &mut self,
        parsed: Parsed,
        anchor: Option<String>,
        at: Mark,
        key_text: Option<String>,
        plain: bool,
    ) -> Result<(), ParseError> {
        if let Some(name) = anchor {
            self.anchors.insert(name, parsed.clone());
        }
        let Some(frame) = self.stack.last_mut() else {
            self.done = Some(parsed);
            return Ok(());
        };
        match &mut frame.body {
            Body::Seq { items, places } => {
                items.push(parsed.yaml);
                places.push(parsed.pos);
            }
            Body::Map {
                entries,
                keys,
                values,
                key,
                merges,
            } => match key.take() {
                None => {
                    let text = match (&parsed.yaml, key_text) {
                        (_, Some(text)) => text,
                        (Yaml::Scalar(Value::String(s)), None) => s.clone(),
                        (Yaml::Scalar(Value::Null), None) => "null".to_string(),
                        _ => return Err(error("a map key must be a plain value", at)),
                    };
                    *key = Some((text, parsed.pos.at, plain));
                }
                Some((name, key_at, true)) if name == "<<" => match parsed.yaml {
                    Yaml::Map(_) => merges.push(parsed),
                    Yaml::Seq(items) => {
                        let Kids::Seq(places) = parsed.pos.kids else {
                            unreachable!("a list has list places")
                        };
                        for (yaml, pos) in items.into_iter().zip(places) {
                            if !matches!(yaml, Yaml::Map(_)) {
                                return Err(error("`<<` merges maps only", pos.at));
                            }
                            merges.push(Parsed { yaml, pos });
                        }
                    }
                    _ => {
                        return Err(error("`<<` merges maps only", key_at).with_help(
                            "write `<<: *name` with `&name` on a map, or `<<: [*a, *b]`",
                        ))
                    }
                },
                Some((name, key_at, _)) => {
                    entries.push((name, parsed.yaml));
                    keys.push(key_at);
                    values.push(parsed.pos);
                }
            },
        }
        Ok(())
    }
}

impl ParseError {
    fn with_help(mut self, help: &str) -> ParseError {
        self.help = Some(help.to_string());
        self
    }
}

fn is_plain_container_tag(tag: &str) -> bool {
    matches!(
        tag,
        "tag:yaml.org,2002:map" | "tag:yaml.org,2002:seq" | "!!map" | "!!seq"
    )
}

/// A finished list or map; merged maps add the keys the map does not set itself, the
/// first merged map winning over later ones.
fn close(body: Body, at: Mark) -> Result<Parsed, ParseError> {
    Ok(match body {
        Body::Seq { items, places } => Parsed {
            yaml: Yaml::Seq(items),
            pos: Pos {
                at,
                style: Style::Plain,
                kids: Kids::Seq(places),
            },
        },
        Body::Map {
            mut entries,
            mut keys,
            mut values,
            key,
            merges,
        } => {
            if let Some((name, key_at, _)) = key {
                // libyaml always sends a value (null) after a key; this is a safeguard.
                entries.push((name, Yaml::Scalar(Value::Null)));
                keys.push(key_at);
                values.push(Pos::leaf(key_at, Style::Plain));
            }
            for merged in merges {
                let (Yaml::Map(more), Kids::Map(places)) = (merged.yaml, merged.pos.kids) else {
                    continue;
                };
                for ((name, value), (key_at, pos)) in more
                    .into_iter()
                    .zip(places.keys.into_iter().zip(places.values))
                {
                    if !entries.iter().any(|(k, _)| *k == name) {
                        entries.push((name, value));
                        keys.push(key_at);
                        values.push(pos);
                    }
                }
            }
            let map = MapPos::new(keys, values);
            Parsed {
                yaml: Yaml::Map(entries),
                pos: Pos {
                    at,
                    style: Style::Plain,
                    kids: Kids::Map(map),
                },
            }
        }
    })
}

/// How many values a tree holds.
/// How many values a tree holds, and how many bytes of text (strings and keys).
fn size(yaml: &Yaml) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    let mut stack = vec![yaml];
    while let Some(y) = stack.pop() {
        count += 1;
        match y {
            Yaml::Scalar(Value::String(s)) => bytes += s.len(),
            Yaml::Scalar(_) => bytes += 8,
            Yaml::Seq(items) => stack.extend(items),
            Yaml::Map(entries) => {
                bytes += entries.iter().map(|(k, _)| k.len()).sum::<usize>();
                stack.extend(entries.iter().map(|(_, v)| v));
            }
        }
    }
    (count, bytes)
}

#[cfg(test)]
mod tests {
    use super::super::YPath;
    use super::*;
    use serde_json::json;

    const TEXT: &str = "flow:\n  name: demo\n  nodes:\n    a: {type: Set, policy: {on_error: {action: goto, target: drfat}}}\n    a:\n      type: Set\n  edges:\n    - a >> b\n    - x >> y\n";

    fn at(parsed: &Parsed, path: &YPath) -> Option<(u32, u32)> {
        parsed.locate(path).map(|(m, _)| (m.line, m.column))
    }

    #[test]
    fn locates_values_keys_duplicates_and_list_items() {
        let parsed = parse(TEXT).unwrap();
        let nodes = YPath::root().key("flow").key("nodes");
        let target = nodes.key("a").key("policy").key("on_error").key("target");
        assert_eq!(at(&parsed, &target), Some((4, 62)));
        assert_eq!(at(&parsed, &nodes.key_nth("a", 1).as_key()), Some((5, 5)));
        assert_eq!(
            at(&parsed, &nodes.key_nth("a", 1).key("type")),
            Some((6, 13))
        );
        let edge = YPath::root().key("flow").key("edges").index(1);
        assert_eq!(at(&parsed, &edge), Some((9, 7)));
        assert_eq!(at(&parsed, &YPath::root().key("flow").key("missing")), None);
    }

    #[test]
    fn keeps_duplicate_keys_in_order() {
        let Yaml::Map(entries) = Yaml::parse("b: 1\na: 2\nb: 3\n").unwrap() else {
            panic!("not a map")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }

    #[test]
    fn big_maps_are_found_through_their_index() {
        let text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        let parsed = parse(&text).unwrap();
        assert_eq!(at(&parsed, &YPath::root().key("k77")), Some((78, 6)));
        assert_eq!(
            at(&parsed, &YPath::root().key("k77").as_key()),
            Some((78, 1))
        );
    }

    #[test]
    fn merge_keys_copy_values_with_their_own_places() {
        let text = "base: &llm\n  model: m1\n  temperature: 0\nagent:\n  <<: *llm\n  model: m2\n";
        let parsed = parse(text).unwrap();
        assert_eq!(
            parsed.yaml.to_json(),
            json!({"base": {"model": "m1", "temperature": 0}, "agent": {"model": "m2", "temperature": 0}})
        );
        // The merged `temperature` points at the anchor's text, line 3.
        let temperature = YPath::root().key("agent").key("temperature");
        assert_eq!(at(&parsed, &temperature), Some((3, 16)));
    }

    #[test]
    fn deep_nesting_and_alias_bombs_fail_fast() {
        let deep = "[".repeat(100_000);
        let start = std::time::Instant::now();
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.message, "the YAML nests deeper than 64 levels");
        assert_eq!(
            e.at,
            Some(Mark {
                line: 1,
                column: 65
            })
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(1));

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g"])
        {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let e = parse(&bomb).unwrap_err();
        assert_eq!(e.message, "aliases copy more than 100000 values");
    }

    #[test]
    fn syntax_errors_read_like_libyaml() {
        let e = parse("a: {b: 1\n").unwrap_err();
        assert_eq!(e.message, "did not find expected ',' or '}'");
        assert_eq!(e.at, Some(Mark { line: 2, column: 1 }));
        assert_eq!(
            e.help.as_deref(),
            Some("while parsing a flow mapping at line 1 column 4")
        );
        let e = parse("a: *nope\n").unwrap_err();
        assert_eq!(e.message, "unknown anchor `*nope`");
    }
}
