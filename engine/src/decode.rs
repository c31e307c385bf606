//! Typed reads from the YAML tree that collect every problem instead of stopping at the first.

use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::duration::parse_duration;
use crate::yaml::{YPath, Yaml};
use serde_json::Value;
use std::time::Duration;

/// A map entry with its place in the file.
#[derive(Clone)]
pub struct Entry<'y> {
    pub key: &'y str,
    pub value: &'y Yaml,
    pub path: YPath,
}

#[derive(Default)]
pub struct Decoder {
    pub diags: Vec<Diagnostic>,
    /// Environment variables whose values settings send as credentials (an agent's
    /// `api_key_env`): redacted wherever they would leave the process.
    pub secret_env: std::collections::BTreeSet<String>,
    /// The profile the run chose (`--profile`): its `llm:` overrides the flow's.
    pub profile: Option<String>,
    /// Whose vocabulary the flow being decoded is written in.
    pub dialect: crate::dialect::Dialect,
    /// A goto the command line adds (`--policy`), so the graph knows where it leads.
    pub extra_goto: Option<String>,
}

impl Decoder {
    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    /// The entries of a map, each with its path (duplicates numbered); an error if not a map.
    pub fn map<'y>(
        &mut self,
        y: &'y Yaml,
        path: &YPath,
        what: impl std::fmt::Display + Copy,
    ) -> Option<Vec<Entry<'y>>> {
        match y {
            Yaml::Map(entries) => Some(entries_of(entries, path)),
            other => {
                self.push(
                    Diagnostic::error(format!("{what} must be a map, not {}", other.kind()))
                        .at(path.clone(), &other.display()),
                );
                None
            }
        }
    }

    /// Reports keys that are not in `allowed` (with the closest allowed one as a hint) and
    /// keys written twice.
    pub fn known_keys(
        &mut self,
        entries: &[Entry],
        allowed: &[&str],
        what: impl std::fmt::Display + Copy,
    ) {
        self.unique_keys(entries, what);
        for e in entries {
            if !allowed.contains(&e.key) {
                let mut d = Diagnostic::error(format!("unknown key `{}` in {what}", e.key))
                    .at(e.path.clone().as_key(), e.key);
                d = match did_you_mean(e.key, allowed.iter().copied()) {
                    Some(s) => d.label(format!("did you mean `{s}`?")),
                    None => d.label(format!("expected one of {}", quoted(allowed))),
                };
                self.push(d);
            }
        }
    }

    /// Reports every key written a second time in the same map.
    pub fn unique_keys(&mut self, entries: &[Entry], what: impl std::fmt::Display + Copy) {
        for e in entries {
            if matches!(e.path.last(), Some(crate::yaml::Seg::Key(_, nth)) if *nth > 0) {
                self.push(
                    Diagnostic::error(format!("duplicate key `{}` in {what}", e.key))
                        .at(e.path.clone().as_key(), e.key)
                        .label("a key may appear once; the earlier value would be lost"),
                );
            }
        }
    }

    /// Reports duplicate keys anywhere inside a free-form value (settings, inputs).
    pub fn unique_keys_deep(
        &mut self,
        y: &Yaml,
        path: &YPath,
        what: impl std::fmt::Display + Copy,
    ) {
        match y {
            Yaml::Map(entries) => {
                let entries = entries_of(entries, path);
                self.unique_keys(&entries, what);
                for e in &entries {
                    self.unique_keys_deep(e.value, &e.path, what);
                }
            }
            Yaml::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.unique_keys_deep(item, &path.index(i), what);
                }
            }
            Yaml::Scalar(_) => {}
        }
    }

    pub fn string(&mut self, e: &Entry, what: impl std::fmt::Display + Copy) -> Option<String> {
        match &e.value {
            Yaml::Scalar(Value::String(s)) => Some(s.clone()),
            Yaml::Scalar(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            other => {
                self.push(
                    Diagnostic::error(format!("{what} must be a string, not {}", other.kind()))
                        .at(e.path.clone(), &other.display()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, e: &Entry, what: impl std::fmt::Display + Copy) -> Option<bool> {
        match e.value {
            Yaml::Scalar(Value::Bool(b)) => Some(*b),
            other => {
                self.push(
                    Diagnostic::error(format!(
                        "{what} must be true or false, not `{}`",
                        other.display()
                    ))
                    .at(e.path.clone(), &other.display()),
                );
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(
        &mut self,
        e: &Entry,
        what: impl std::fmt::Display + Copy,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let n = match e.value {
            Yaml::Scalar(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.push(
                    Diagnostic::error(format!("{what} must be between {min} and {max}, not {n}"))
                        .at(e.path.clone(), &n.to_string()),
                );
                None
            }
            None => {
                let text = e.value.display();
                self.push(
                    Diagnostic::error(format!("{what} must be a whole number, not `{text}`"))
                        .at(e.path.clone(), &text),
                );
                None
            }
        }
    }

    /// A duration no longer than `max`.
    pub fn duration(
        &mut self,
        e: &Entry,
        what: impl std::fmt::Display + Copy,
        max: Duration,
    ) -> Option<Duration> {
        let text = e.value.display();
        let parsed = match e.value {
            Yaml::Scalar(Value::String(s)) => parse_duration(s),
            Yaml::Scalar(Value::Number(n)) if n.as_f64().is_some_and(|f| f >= 0.0) => {
                parse_duration(&text)
            }
            _ => None,
        };
        match parsed {
            Some(d) if d <= max => Some(d),
            Some(_) => {
                self.push(
                    Diagnostic::error(format!(
                        "{what} `{text}` is too long; at most {}",
                        crate::duration::duration_text(max)
                    ))
                    .at(e.path.clone(), &text),
                );
                None
            }
            None => {
                self.push(
                    Diagnostic::error(format!("invalid duration `{text}` for {what}"))
                        .at(e.path.clone(), &text)
                        .label("expected a number with a unit: 500ms, 30s, 5m, 1h"),
                );
                None
            }
        }
    }
}

pub fn entries_of<'y>(entries: &'y [(String, Yaml)], path: &YPath) -> Vec<Entry<'y>> {
    // Which occurrence of its key each entry is: small maps compare keys directly.
    let nth = |i: usize, key: &str| entries[..i].iter().filter(|(k, _)| k == key).count();
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let n = if entries.len() <= 8 {
                nth(i, key)
            } else {
                let count = seen.entry(key.as_str()).or_insert(0);
                *count += 1;
                *count - 1
            };
            Entry {
                key,
                value,
                path: path.key_nth(key, n),
            }
        })
        .collect()
}

pub fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
