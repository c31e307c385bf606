//! Settings schemas, derived from each node type's config struct (`schemars`), so that
//! `illumo nodes` and the docs describe exactly what the loader accepts: a setting's
//! description is its doc comment, `x-kind` says what it holds (`template`, `$ctx path`).

use serde_json::Value;

/// The JSON Schema (draft 2020-12) of a config type, with nested types inlined.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
        map.remove("title");
    }
    schema
}

/// The schema of `T` keeping only `keys` (in that order), with `required` set: for node
/// types that share one config struct and each take part of it (the agents).
pub fn schema_subset<T: schemars::JsonSchema>(keys: &[&str], required: &[&str]) -> Value {
    let mut schema = schema_of::<T>();
    let all = schema
        .get("properties")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let mut kept = serde_json::Map::new();
    for key in keys {
        if let Some(p) = all.get(*key) {
            kept.insert(key.to_string(), p.clone());
        }
    }
    schema["properties"] = Value::Object(kept);
    schema["required"] = Value::from(required.to_vec());
    schema
}

/// A list of texts, or one text as a list of one (`python_path: lib`).
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match serde::Deserialize::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected a folder or a list of folders",
        )),
    }
}
