//! `illumo schema`: the JSON Schema editors use, checked with a real validator (Python's
//! `jsonschema`) against every example and against invalid fixtures.

use crate::support::{root, Illumo};
use std::process::Command;

/// The example flows (not their scripted replies).
fn examples() -> Vec<String> {
    let mut found = Vec::new();
    for dir in [
        "examples/basics",
        "examples/agents",
        "examples/code_agent",
        "examples/multi_agent/coding_assistant",
        "examples/multi_agent/chat_bot",
    ] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if name.ends_with(".yaml") && !name.ends_with("replies.yaml") {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    found.sort();
    found
}

/// Each file's errors under the schema, as `path: message` lines (`ok` when none).
fn check(files: &[String]) -> Vec<String> {
    let script = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for f in sys.argv[2:]:
    errs = sorted(v.iter_errors(yaml.safe_load(open(f))), key=lambda e: list(e.absolute_path))
    print("ok" if not errs else "; ".join("/".join(map(str, e.absolute_path)) + ": " + e.message for e in errs))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg("schema/flow.schema.json")
        .args(files)
        .current_dir(root())
        .output()
        .expect("python3 with jsonschema and PyYAML (scripts/test installs them)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_committed_schema_is_what_illumo_schema_prints() {
    let printed = Illumo::new().args(["schema"]).run().success().stdout;
    let committed = std::fs::read_to_string(root().join("schema/flow.schema.json")).unwrap();
    assert!(
        printed == committed,
        "schema/flow.schema.json is stale: run `cargo run -q -- schema > schema/flow.schema.json`"
    );
    let value: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        value["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn every_example_fits_the_schema_and_names_it() {
    let files = examples();
    assert!(files.len() >= 15, "{files:?}");
    let results = check(&files);
    for (file, result) in files.iter().zip(&results) {
        assert_eq!(result, "ok", "{file}");
        let first = std::fs::read_to_string(root().join(file)).unwrap();
        let first = first.lines().next().unwrap();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{file} starts with {first}"));
        let dir = root().join(file).parent().unwrap().to_path_buf();
        assert!(dir.join(target).exists(), "{file}: {target}");
    }
}

#[test]
fn invalid_fixtures_fail_the_schema_where_they_are_wrong() {
    let cases = [
        (
            "unknown_node_type.yaml",
            "flow/nodes/draft/type: 'Sett' is not one of",
        ),
        (
            "unknown_setting_key.yaml",
            "flow/nodes/a/setting: Additional properties are not allowed ('valeu' was unexpected)",
        ),
        (
            "unknown_node_key.yaml",
            "flow/nodes/a: Additional properties are not allowed ('output' was unexpected)",
        ),
        (
            "unknown_flow_key.yaml",
            "flow: Additional properties are not allowed ('max_step' was unexpected)",
        ),
        (
            "missing_node_type.yaml",
            "flow/nodes/draft: 'type' is a required property",
        ),
        (
            "bad_retry_values.yaml",
            "flow/nodes/a/policy/retry/max_attempts: -1 is less than the minimum of 1",
        ),
        (
            "bad_duration.yaml",
            "flow/policy/timeout: '5 sec' is not valid under any of the given schemas",
        ),
        (
            "merged_setting_error.yaml",
            "flow/nodes/draft/setting/temperature: 'hot' is not of type",
        ),
    ];
    let files: Vec<String> = cases
        .iter()
        .map(|(f, _)| format!("tests/fixtures/invalid/{f}"))
        .collect();
    for ((file, expected), result) in cases.iter().zip(check(&files)) {
        assert!(
            result.starts_with(expected) || result.contains(&format!("; {expected}")),
            "{file}: {result}"
        );
    }
}
