//! Command-line surface: help, graph, nodes, tracer flags.

use crate::support::Illumo;

#[test]
fn graph_as_mermaid() {
    let out = Illumo::new()
        .args([
            "graph",
            "examples/basics/branching.yaml",
            "--format",
            "mermaid",
        ])
        .run()
        .success();
    assert_eq!(
        out.stdout,
        "flowchart TD
    seed[\"seed<br/>Set\"]
    geo[\"geo<br/>Set\"]
    risk[\"risk<br/>Router\"]
    review[\"review<br/>Set\"]
    merge[\"merge<br/>Set (join)\"]
    seed --> geo
    seed --> risk
    geo --> merge
    review --> merge
    risk -. \"route\" .-> review
"
    );
}

#[test]
fn graph_as_dot() {
    let out = Illumo::new()
        .args(["graph", "examples/basics/command.yaml", "--format", "dot"])
        .run()
        .success();
    assert_eq!(
        out.stdout,
        "digraph \"command\" {
    rankdir=TB;
    node [shape=box];
    \"stats\" [label=\"stats\\nCommand\"];
    \"verdict\" [label=\"verdict\\nRouter\"];
    \"accept\" [label=\"accept\\nSet\"];
    \"reject\" [label=\"reject\\nSet\"];
    \"stats\" -> \"verdict\";
    \"verdict\" -> \"accept\" [label=\"route\", style=dashed];
    \"verdict\" -> \"reject\" [label=\"route\", style=dashed];
}
"
    );
}

#[test]
fn nodes_lists_types_and_settings_as_json() {
    let out = Illumo::new().args(["nodes", "--json"]).run().success();
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let types: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Agent",
            "Command",
            "DraftAgent",
            "EvaluationAgent",
            "Loop",
            "Patch",
            "ReviewAgent",
            "Router",
            "RouterAgent",
            "Set",
            "Summary",
            "TestExecutor",
            "WorkspaceInspector"
        ]
    );
    assert_eq!(
        list[9]["settings"][0],
        serde_json::json!({"name": "value", "kind": "any", "required": true, "about": "the output; strings may be paths or templates"})
    );
}

#[test]
fn help_explains_with_examples() {
    let out = Illumo::new().args(["run", "--help"]).run().success();
    assert!(
        out.stdout.contains(
            "illumo run flow.yaml --context '{\"request\": {\"summary\": \"fix the bug\"}}'"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Exit codes: 0 ok, 1 the flow failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn unknown_tracer_and_stray_tracer_args_are_usage_errors() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    illumo
        .args(["run", path.as_str(), "--tracer", "zipkin"])
        .run()
        .code(2)
        .stderr(
            "error: unknown tracer `zipkin`; this build has `console`, `sqlite`, `otel`, `none`\n",
        );
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    illumo
        .args(["run", path.as_str(), "--tracer", "sqllite", "--tracer-arg", "db_path=x.db"])
        .run()
        .code(2)
        .stderr(
            "error: unknown tracer `sqllite`; did you mean `sqlite`? this build has `console`, `sqlite`, `otel`, `none`\n",
        );
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    illumo
        .args(["run", path.as_str(), "--tracer-arg", "db_path=x.db"])
        .run()
        .code(2)
        .stderr("error: --tracer-arg `db_path` is a setting of the `sqlite` tracer; add `--tracer sqlite`\n");
}

#[test]
fn an_unknown_subcommand_exits_2() {
    let out = Illumo::new().args(["frobnicate"]).run().code(2);
    assert!(
        out.stderr
            .starts_with("error: unrecognized subcommand 'frobnicate'"),
        "{}",
        out.stderr
    );
}
