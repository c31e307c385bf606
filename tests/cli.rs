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
    __start([start])
    __end([end])
    __start --> seed
    seed --> geo
    seed --> risk
    geo --> merge
    review --> merge
    risk -. \"ctx.order.amount >= 1000\" .-> review
    merge --> __end
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
    \"__start\" [label=\"start\", shape=circle];
    \"__end\" [label=\"end\", shape=doublecircle];
    \"__start\" -> \"stats\";
    \"stats\" -> \"verdict\";
    \"verdict\" -> \"accept\" [label=\"ctx.stats.mean >= 0.5\", style=dashed];
    \"verdict\" -> \"reject\" [label=\"default\", style=dashed];
    \"accept\" -> \"__end\";
    \"reject\" -> \"__end\";
}
"
    );
}

#[test]
fn graph_draws_router_agent_choices_as_choices_not_edges() {
    let flow = "flow:\n  nodes:\n    classify:\n      type: RouterAgent\n      setting: {provider: openai, model: m, prompt: route it, choices: {refund: refunds, other: help}}\n    refunds: {type: Set, setting: {value: 1}}\n    help: {type: Set, setting: {value: 2}}\n  edges:\n    - classify >> (refunds | help)\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let out = illumo.args(["graph", &path]).run().success();
    assert_eq!(
        out.stdout,
        "flowchart TD
    classify[\"classify<br/>RouterAgent\"]
    refunds[\"refunds<br/>Set\"]
    help[\"help<br/>Set\"]
    __start([start])
    __end([end])
    __start --> classify
    classify -. \"choice refund\" .-> refunds
    classify -. \"choice other\" .-> help
    refunds --> __end
    help --> __end
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
            "Approval",
            "Audit",
            "Command",
            "CustomRoutingNode",
            "DraftAgent",
            "EvaluationAgent",
            "FunctionNode",
            "Handoff",
            "Http",
            "Loop",
            "LoopNode",
            "Patch",
            "PythonExec",
            "Retrieve",
            "ReviewAgent",
            "Router",
            "RouterAgent",
            "ScoreAgent",
            "Set",
            "Subflow",
            "Summary",
            "TestExecutor",
            "WorkspaceInspector"
        ]
    );
    assert_eq!(
        list[19]["settings"][0],
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

/// `illumo completions bash`, sourced by a real bash, completes commands and options.
#[test]
fn bash_completion_completes_commands_and_options() {
    let out = Illumo::new().args(["completions", "bash"]).run().success();
    let dir = crate::support::TempDir::new();
    let script = dir.write("illumo.bash", &out.stdout);
    let complete = |words: &str, cword: usize| {
        let run = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; _illumo illumo \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&run.stdout).trim().to_string()
    };
    assert_eq!(complete("illumo re", 1), "resume");
    assert_eq!(complete("illumo run flow.yaml --dur", 3), "--durability");
    assert_eq!(
        complete("illumo run flow.yaml --durability ''", 4),
        "batch sync off"
    );
    for (shell, first) in [("zsh", "#compdef illumo"), ("fish", "# Print an optspec")] {
        let out = Illumo::new().args(["completions", shell]).run().success();
        assert!(
            out.stdout.starts_with(first),
            "{shell}: {}",
            &out.stdout[..60.min(out.stdout.len())]
        );
    }
    let ps = Illumo::new()
        .args(["completions", "powershell"])
        .run()
        .success();
    assert!(
        ps.stdout.contains("Register-ArgumentCompleter"),
        "{}",
        ps.stdout.len()
    );
}

/// `illumo test`: the project's own flow cases pass; a failing case is reported like
/// pytest, in JUnit XML too; a bad test file exits 2.
#[test]
fn illumo_test_runs_flow_cases_and_reports_like_pytest() {
    let own = Illumo::new().args(["test"]).run().success();
    let lines: Vec<&str> = own.stdout.lines().collect();
    assert!(lines.len() >= 7, "{}", own.stdout);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.ends_with(" PASSED")),
        "{}",
        own.stdout
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with(&format!("{} passed in ", lines.len() - 1)),
        "{last}"
    );

    let dir = crate::support::TempDir::new();
    dir.write("flow.yaml", "flow:\n  name: f\n  nodes:\n    a: {type: Set, setting: {value: {n: 3.14, s: hello world, l: [1, 2]}}, outputs: $ctx.out}\n");
    dir.write(
        "f.test.yaml",
        "flow: flow.yaml\ncases:\n  - name: right\n    expect: {out.n: {approx: 3.1, tolerance: 0.1}, out.s: {matches: '^hello'}, out.l: {contains: 2}}\n  - name: wrong\n    expect: {out.s: {contains: bye}, out.n: 3, missing.x: 1}\n    exit_code: 0\n",
    );
    let junit = dir.path().join("report.xml");
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "test",
            "f.test.yaml",
            "--junit",
            &junit.display().to_string(),
        ])
        .run()
        .code(1);
    let shown: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        shown[..shown.len() - 1],
        [
            "f.test.yaml::right PASSED",
            "f.test.yaml::wrong FAILED",
            "",
            "=================================== FAILURES ===================================",
            "___ f.test.yaml::wrong ___",
            "  $ctx.out.s: expected it to contain \"bye\", got \"hello world\"",
            "  $ctx.out.n: expected 3, got 3.14",
            "  $ctx.missing.x: expected 1, got nothing (not in ctx)",
        ]
    );
    assert!(shown.last().unwrap().starts_with("1 failed, 1 passed in "));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"illumo\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"$ctx.out.s: expected it to contain &quot;bye&quot;, got &quot;hello world&quot;\">"), "{xml}");

    dir.write("bad.test.yaml", "flow: flow.yaml\ncases:\n  - nmae: typo\n");
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args(["test", "bad.test.yaml"])
        .run()
        .code(2);
    assert_eq!(bad.stderr, "error: bad.test.yaml: case 1: unknown key `nmae`; a case has flow, name, context, llm, profile, exit_code, expect\n");
}
