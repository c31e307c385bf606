//! The flow file as an ordered YAML tree, and a way back from any place in that tree to its
//! line and column in the text.
//!
//! `yaml_serde` reports positions only for its own errors. The tree keeps map order and
//! duplicate keys (so duplicate node ids can be reported), and [`locate`] finds a place by
//! re-reading the text with a seed that walks the path and fails on purpose at its target:
//! the deserializer stamps that failure with the target's position. Only error paths pay.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

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

/// A place in the flow file: a path, and whether the key or the value is meant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct YPath {
    pub segs: Vec<Seg>,
    pub at_key: bool,
}

impl YPath {
    pub fn root() -> Self {
        YPath::default()
    }

    pub fn key(&self, name: &str) -> YPath {
        self.key_nth(name, 0)
    }

    pub fn key_nth(&self, name: &str, nth: usize) -> YPath {
        let mut segs = self.segs.clone();
        segs.push(Seg::Key(name.to_string(), nth));
        YPath {
            segs,
            at_key: false,
        }
    }

    pub fn index(&self, i: usize) -> YPath {
        let mut segs = self.segs.clone();
        segs.push(Seg::Index(i));
        YPath {
            segs,
            at_key: false,
        }
    }

    /// The same place, pointing at the key rather than at its value.
    pub fn as_key(mut self) -> YPath {
        self.at_key = true;
        self
    }
}

impl Yaml {
    pub fn parse(text: &str) -> Result<Yaml, serde_yaml::Error> {
        serde_yaml::from_str(text)
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

impl<'de> de::Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Yaml>()? {
            let key = match key {
                Yaml::Scalar(Value::String(s)) => s,
                Yaml::Scalar(Value::Null) => "null".to_string(),
                Yaml::Scalar(v) => v.to_string(),
                _ => return Err(de::Error::custom("a map key must be a plain value")),
            };
            entries.push((key, map.next_value()?));
        }
        Ok(Yaml::Map(entries))
    }
}

const FOUND: &str = "\u{0}illumo-found";

/// The 1-based line and column of the place `path` names in `text`, if it is there.
pub fn locate(text: &str, path: &YPath) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(text);
    let seed = Walk {
        segs: &path.segs,
        at_key: path.at_key,
    };
    match seed.deserialize(de) {
        Err(err) if err.to_string().contains(FOUND) => {
            err.location().map(|loc| (loc.line(), loc.column()))
        }
        _ => None,
    }
}

struct Walk<'a> {
    segs: &'a [Seg],
    at_key: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.segs.is_empty() {
            return d.deserialize_any(Found);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a container")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(name, nth), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom("not here"));
        };
        let mut seen = 0;
        loop {
            let probe = KeyProbe {
                name,
                target: rest.is_empty() && self.at_key && seen == *nth,
            };
            match map.next_key_seed(probe)? {
                None => return Err(de::Error::custom("not here")),
                Some(true) if seen == *nth => {
                    return map.next_value_seed(Walk {
                        segs: rest,
                        at_key: self.at_key,
                    });
                }
                Some(true) => {
                    seen += 1;
                    map.next_value::<IgnoredAny>()?;
                }
                Some(false) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(wanted), rest)) = self.segs.split_first() else {
            return Err(de::Error::custom("not here"));
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom("not here"));
            }
        }
        seq.next_element_seed(Walk {
            segs: rest,
            at_key: self.at_key,
        })?;
        Err(de::Error::custom("not here"))
    }
}

/// Reads one map key; fails with [`FOUND`] when it is the target key.
struct KeyProbe<'a> {
    name: &'a str,
    target: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeyProbe<'_> {
    /// Compares inside the visitor, so a failure carries the key's position.
    fn check<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        let matches = key == self.name;
        if matches && self.target {
            return Err(E::custom(FOUND));
        }
        Ok(matches)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&Value::from(v).to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.check("null")
    }
}

impl<'de> DeserializeSeed<'de> for Found {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Fails on whatever value it meets, so the error carries that value's position.
struct Found;

impl<'de> Visitor<'de> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "flow:\n  name: demo\n  nodes:\n    a: {type: Set, policy: {on_error: {action: goto, target: drfat}}}\n    a:\n      type: Set\n  edges:\n    - a >> b\n    - x >> y\n";

    #[test]
    fn locates_values_keys_duplicates_and_list_items() {
        let nodes = YPath::root().key("flow").key("nodes");
        let target = nodes.key("a").key("policy").key("on_error").key("target");
        assert_eq!(locate(TEXT, &target), Some((4, 62)));
        assert_eq!(locate(TEXT, &nodes.key_nth("a", 1).as_key()), Some((5, 5)));
        assert_eq!(
            locate(TEXT, &nodes.key_nth("a", 1).key("type")),
            Some((6, 13))
        );
        let edge = YPath::root().key("flow").key("edges").index(1);
        assert_eq!(locate(TEXT, &edge), Some((9, 7)));
        assert_eq!(
            locate(TEXT, &YPath::root().key("flow").key("missing")),
            None
        );
    }

    #[test]
    fn keeps_duplicate_keys_in_order() {
        let yaml = Yaml::parse("b: 1\na: 2\nb: 3\n").unwrap();
        let Yaml::Map(entries) = yaml else {
            panic!("not a map")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
    }
}
