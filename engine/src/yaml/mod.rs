//! The flow file as an ordered YAML tree, with the line and column of every key and value.
//!
//! [`parse`] reads libyaml's events once and builds two trees side by side: the values
//! ([`Yaml`]: maps keep their order and their duplicate keys, so duplicates can be
//! reported) and their places ([`Pos`]). A diagnostic names a place by its path in the
//! tree ([`YPath`]); [`Pos::locate`] turns that path into a line and column by walking
//! the place tree, with an index for big maps, so finding a place costs the depth of the
//! path, not the size of the file.
//!
//! Anchors, aliases and merge keys (`<<: *defaults`) are expanded while building; an
//! expanded value keeps the places of the text it was copied from.

mod build;
mod events;
mod scalar;

pub use build::{parse, ParseError, MAX_ALIAS_VALUES, MAX_NESTING};
pub use events::{Mark, Style};

use serde_json::Value;
use std::collections::HashMap;

/// One YAML value; maps keep their order and their duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Scalar(Value),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

/// One step of a path into the YAML tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A map key, and which occurrence of it (0 for the first).
    Key(String, usize),
    Index(usize),
}

/// A place in the flow file: a path, and whether the key or the value is meant. Paths
/// share their beginnings (each step points at its parent), so naming the place of every
/// key of a big file copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct YPath {
    last: Option<std::sync::Arc<Link>>,
    pub at_key: bool,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Link {
    parent: Option<std::sync::Arc<Link>>,
    seg: Seg,
    depth: usize,
}

impl YPath {
    pub fn root() -> Self {
        YPath::default()
    }

    pub fn key(&self, name: &str) -> YPath {
        self.key_nth(name, 0)
    }

    pub fn key_nth(&self, name: &str, nth: usize) -> YPath {
        self.push(Seg::Key(name.to_string(), nth))
    }

    pub fn index(&self, i: usize) -> YPath {
        self.push(Seg::Index(i))
    }

    fn push(&self, seg: Seg) -> YPath {
        YPath {
            last: Some(std::sync::Arc::new(Link {
                parent: self.last.clone(),
                seg,
                depth: self.len() + 1,
            })),
            at_key: false,
        }
    }

    /// The same place, pointing at the key rather than at its value.
    pub fn as_key(mut self) -> YPath {
        self.at_key = true;
        self
    }

    /// How many steps from the root.
    pub fn len(&self) -> usize {
        self.last.as_ref().map_or(0, |l| l.depth)
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// The last step.
    pub fn last(&self) -> Option<&Seg> {
        self.last.as_ref().map(|l| &l.seg)
    }

    /// The steps, from the root.
    pub fn segs(&self) -> Vec<&Seg> {
        let mut segs = Vec::with_capacity(self.len());
        let mut at = self.last.as_deref();
        while let Some(link) = at {
            segs.push(&link.seg);
            at = link.parent.as_deref();
        }
        segs.reverse();
        segs
    }
}

/// Where a value stands in the file, and where its parts stand.
#[derive(Debug, Clone, PartialEq)]
pub struct Pos {
    pub at: Mark,
    pub style: Style,
    pub kids: Kids,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kids {
    Leaf,
    Seq(Vec<Pos>),
    Map(MapPos),
}

/// The places of a map's keys and values, in the order of [`Yaml::Map`]'s entries.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPos {
    pub keys: Vec<Mark>,
    pub values: Vec<Pos>,
    /// For big maps (the `nodes:` of a large flow): key -> entry numbers, in order. Built
    /// the first time a place is looked up, which happens only to report a problem.
    index: std::sync::OnceLock<HashMap<String, Vec<u32>>>,
}

/// Maps with more entries than this get an index.
const INDEXED_MAP: usize = 16;

impl MapPos {
    fn new(keys: Vec<Mark>, values: Vec<Pos>) -> MapPos {
        MapPos {
            keys,
            values,
            index: std::sync::OnceLock::new(),
        }
    }

    /// The entry number of the `nth` occurrence of `key`.
    fn find(&self, entries: &[(String, Yaml)], key: &str, nth: usize) -> Option<usize> {
        if entries.len() <= INDEXED_MAP {
            return entries
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| k == key)
                .nth(nth)
                .map(|(i, _)| i);
        }
        let index = self.index.get_or_init(|| {
            let mut index: HashMap<String, Vec<u32>> = HashMap::with_capacity(entries.len());
            for (i, (key, _)) in entries.iter().enumerate() {
                index.entry(key.clone()).or_default().push(i as u32);
            }
            index
        });
        index.get(key)?.get(nth).map(|&i| i as usize)
    }
}

impl Pos {
    pub fn leaf(at: Mark, style: Style) -> Pos {
        Pos {
            at,
            style,
            kids: Kids::Leaf,
        }
    }

    /// The place `path` names in `yaml` (whose places these are): its line and column,
    /// and whether it is a quoted scalar; `None` when the file has no such place.
    pub fn locate(&self, yaml: &Yaml, path: &YPath) -> Option<(Mark, bool)> {
        let (mut pos, mut value) = (self, yaml);
        let segs = path.segs();
        for (n, seg) in segs.iter().enumerate() {
            let last = n + 1 == segs.len();
            let next = match (seg, value, &pos.kids) {
                (Seg::Key(name, nth), Yaml::Map(entries), Kids::Map(map)) => {
                    let i = map.find(entries, name, *nth)?;
                    if last && path.at_key {
                        return Some((map.keys[i], false));
                    }
                    Some((&map.values[i], &entries[i].1))
                }
                (Seg::Index(i), Yaml::Seq(items), Kids::Seq(places)) => {
                    places.get(*i).zip(items.get(*i))
                }
                _ => None,
            };
            (pos, value) = next?;
        }
        Some((pos.at, pos.style == Style::Quoted))
    }

    /// Where `path`'s value starts and how it is written (for a key: its key).
    pub fn locate_styled(&self, yaml: &Yaml, path: &YPath) -> Option<(Mark, Style)> {
        let (mut pos, mut value) = (self, yaml);
        let segs = path.segs();
        for (n, seg) in segs.iter().enumerate() {
            let last = n + 1 == segs.len();
            let next = match (seg, value, &pos.kids) {
                (Seg::Key(name, nth), Yaml::Map(entries), Kids::Map(map)) => {
                    let i = map.find(entries, name, *nth)?;
                    if last && path.at_key {
                        return Some((map.keys[i], Style::Plain));
                    }
                    Some((&map.values[i], &entries[i].1))
                }
                (Seg::Index(i), Yaml::Seq(items), Kids::Seq(places)) => {
                    places.get(*i).zip(items.get(*i))
                }
                _ => None,
            };
            (pos, value) = next?;
        }
        Some((pos.at, pos.style))
    }
}

/// A parsed file: its values and their places.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub yaml: Yaml,
    pub pos: Pos,
}

impl Parsed {
    /// The line and column of `path`, and whether the value there is quoted.
    pub fn locate(&self, path: &YPath) -> Option<(Mark, bool)> {
        self.pos.locate(&self.yaml, path)
    }

    /// Where `path`'s value starts and how it is written.
    pub fn locate_styled(&self, path: &YPath) -> Option<(Mark, Style)> {
        self.pos.locate_styled(&self.yaml, path)
    }
}

impl Yaml {
    /// Parses YAML text into values, dropping the places (for `--policy` and the like).
    pub fn parse(text: &str) -> Result<Yaml, ParseError> {
        parse(text).map(|p| p.yaml)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Yaml::Scalar(Value::Null))
    }

    /// A short description for messages: `a string`, `a list`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Yaml::Scalar(Value::Null) => "null",
            Yaml::Scalar(Value::Bool(_)) => "a boolean",
            Yaml::Scalar(Value::Number(_)) => "a number",
            Yaml::Scalar(Value::String(_)) => "a string",
            Yaml::Scalar(_) => "a value",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a map",
        }
    }

    /// The value as JSON; for a duplicated key the last occurrence wins.
    /// The tree of a JSON value (maps keep their order).
    pub fn from_json(value: &Value) -> Yaml {
        match value {
            Value::Array(items) => Yaml::Seq(items.iter().map(Yaml::from_json).collect()),
            Value::Object(map) => Yaml::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Yaml::from_json(v)))
                    .collect(),
            ),
            scalar => Yaml::Scalar(scalar.clone()),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Yaml::Scalar(v) => v.clone(),
            Yaml::Seq(items) => Value::Array(items.iter().map(Yaml::to_json).collect()),
            Yaml::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), v.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// A short text of the value for messages.
    pub fn display(&self) -> String {
        match self {
            Yaml::Scalar(Value::String(s)) => s.clone(),
            other => other.to_json().to_string(),
        }
    }
}
