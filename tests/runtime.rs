//! Execution semantics: concurrency, joins, routing, loops guards, ctx input and output.

use crate::support::{Illumo, TempDir};
use serde_json::json;

/// Two branches that each wait for a file the other writes: run one after the other, the
/// first would wait forever (here: until its `timeout` or its own 20 s deadline fails it).
fn rendezvous(dir: &std::path::Path, max_parallel: usize, timeout: &str) -> String {
    let script = |me: &str, other: &str| {
        format!(
            "import os, sys, time\nopen(os.path.join(sys.argv[1], '{me}'), 'w').close()\ndeadline = time.time() + 20\nwhile not os.path.exists(os.path.join(sys.argv[1], '{other}')):\n    if time.time() > deadline: sys.exit('never saw {other}')\n    time.sleep(0.01)\nprint('{me} met {other}')\n"
        )
    };
    let node = |me: &str, other: &str| {
        format!(
            "    {me}:\n      type: Command\n      policy: {{timeout: {timeout}}}\n      setting:\n        argv: [python3, -c, {:?}, {:?}]\n      outputs: $ctx.{me}\n",
            script(me, other),
            dir.display().to_string()
        )
    };
    format!(
        "flow:\n  max_parallel: {max_parallel}\n  nodes:\n    start: {{type: Set, setting: {{value: 0}}}}\n{}{}  edges:\n    - start >> (left | right)\n",
        node("left", "right"),
        node("right", "left")
    )
}

#[test]
fn fan_out_branches_really_run_concurrently() {
    let dir = TempDir::new();
    let ctx = Illumo::new()
        // Running together they meet at once; a generous timeout keeps a loaded machine
        // from failing them.
        .run_flow(&rendezvous(dir.path(), 8, "30s"))
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["left"], "left met right");
    assert_eq!(ctx["right"], "right met left");
}

#[test]
fn max_parallel_one_runs_branches_one_at_a_time() {
    let dir = TempDir::new();
    let out = Illumo::new()
        // Run alone, `left` can never meet `right`: only the timeout ends it.
        .run_flow(&rendezvous(dir.path(), 1, "1s"))
        .run()
        .code(1);
    assert!(
        out.stderr
            .starts_with("error: node `left` failed on attempt 1 of 1: timed out after 1s\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn join_waits_for_all_live_parents_and_sees_their_outputs() {
    let flow = r#"
flow:
  nodes:
    seed: {type: Set, setting: {value: 1}}
    a: {type: Set, setting: {value: from-a}}
    b: {type: Set, setting: {value: from-b}}
    c: {type: Set, setting: {value: from-c}}
    merge: {type: Set, setting: {value: "{{ $joins.merge.a }}+{{ $joins.merge.b }}+{{ $joins.merge.c }}"}, outputs: $ctx.merged}
  edges:
    - seed >> (a | b | c)
    - (a & b & c) >> merge
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["merged"], "from-a+from-b+from-c");
    assert_eq!(ctx["payloads"]["merge"], "from-a+from-b+from-c");
}

#[test]
fn join_after_a_branch_skipped_by_a_condition_still_fires() {
    let flow = r#"
flow:
  nodes:
    seed: {type: Set, setting: {value: {go: false}}}
    a: {type: Set, setting: {value: a}}
    b: {type: Set, setting: {value: b}}
    b2: {type: Set, setting: {value: b2}}
    merge: {type: Set, setting: {value: merged}, outputs: $ctx.merged}
  edges:
    - seed >> a
    - {from: seed, to: b, when: "payload.go"}
    - b >> b2
    - (a & b2) >> merge
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["merged"], "merged");
    assert_eq!(ctx["joins"]["merge"], json!({"a": "a"}));
    assert_eq!(ctx["payloads"].get("b"), None);
}

#[test]
fn any_join_fires_once_per_arriving_parent() {
    let flow = r#"
flow:
  nodes:
    seed: {type: Set, setting: {value: 0}}
    a: {type: Set, setting: {value: a}}
    b: {type: Set, setting: {value: b}}
    each: {type: Set, setting: {value: seen}}
  edges:
    - seed >> (a | b)
    - (a | b) >> each
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    let runs = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "each")
        .count();
    assert_eq!(runs, 2);
}

#[test]
fn router_can_fan_out_to_several_targets() {
    let flow = r#"
flow:
  nodes:
    route:
      type: Router
      setting:
        routes:
          - {when: "ctx.score >= 0.5", to: [review, notify]}
          - {default: reject}
    review: {type: Set, setting: {value: r}, outputs: $ctx.review}
    notify: {type: Set, setting: {value: n}, outputs: $ctx.notify}
    reject: {type: Set, setting: {value: x}, outputs: $ctx.reject}
"#;
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["--set", "score=0.7"])
        .run()
        .success()
        .ctx();
    assert_eq!(
        (
            ctx["review"].as_str(),
            ctx["notify"].as_str(),
            ctx.get("reject")
        ),
        (Some("r"), Some("n"), None)
    );
    assert_eq!(
        ctx["routing"]["route"],
        json!({"target": ["review", "notify"], "confidence": 1.0, "reason": "ctx.score >= 0.5"})
    );
}

#[test]
fn max_steps_names_the_cycle() {
    let flow = r#"
flow:
  max_steps: 7
  nodes:
    start: {type: Set, setting: {value: 0}}
    draft: {type: Set, setting: {value: 1}}
    review: {type: Set, setting: {value: 2}}
  edges:
    - start >> draft >> review >> draft
"#;
    let out = Illumo::new().run_flow(flow).args(["--quiet"]).run().code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: max_steps (7) exceeded in cycle `draft -> review -> draft`")
    );
}

#[test]
fn a_review_loop_ends_when_the_router_says_so() {
    let flow = r#"
flow:
  max_steps: 50
  nodes:
    draft:
      type: Command
      setting: {argv: [python3, -c, "import sys; print(int(sys.argv[1]) + 1)", "{{ $ctx.round }}"], parse: json}
      outputs: $ctx.round
    route:
      type: Router
      setting:
        routes:
          - {when: "ctx.round >= 3", to: done}
          - {default: draft}
    done: {type: Set, setting: {value: "finished after {{ $ctx.round }} rounds"}, outputs: $ctx.result}
  edges:
    - draft >> route
"#;
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["--set", "round=0"])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["result"], "finished after 3 rounds");
    let drafts = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "draft")
        .count();
    assert_eq!(drafts, 3);
}

#[test]
fn several_entry_nodes_start_together() {
    let flow = r#"
flow:
  entry: [a, b]
  nodes:
    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}
    b: {type: Set, setting: {value: 2}, outputs: $ctx.b}
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!((ctx["a"].clone(), ctx["b"].clone()), (json!(1), json!(2)));
}

#[test]
fn inputs_are_rendered_and_outputs_pick_fields() {
    let flow = r#"
flow:
  nodes:
    pick:
      type: Set
      inputs: {name: $ctx.user.name}
      setting: {value: {first: "{{ $ctx.user.name }}", size: 3}}
      outputs: {first: $ctx.profile.first, size: $ctx.profile.size}
"#;
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["-c", r#"{"user": {"name": "Ada"}}"#])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["profile"], json!({"first": "Ada", "size": 3}));
}

#[test]
fn writing_through_a_scalar_is_a_clear_error() {
    let flow =
        "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.name.first}\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["-c", r#"{"name": "Ada"}"#])
        .run()
        .code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `a` failed on attempt 1 of 1: cannot write `$ctx.name.first`: `$ctx.name` is a string")
    );
    assert_eq!(out.ctx()["name"], "Ada", "the partial ctx is still printed");
}

#[test]
fn missing_template_values_name_the_path() {
    let flow =
        "flow:\n  nodes:\n    a: {type: Set, setting: {value: \"hi {{ $ctx.user.name }}\"}}\n";
    let out = Illumo::new().run_flow(flow).run().code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `a` failed on attempt 1 of 1: template `hi {{ $ctx.user.name }}` failed: `$ctx.user.name` is not in ctx")
    );
}

#[test]
fn context_comes_from_a_file_or_stdin_and_set_overrides() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: \"{{ $ctx.x }}-{{ $ctx.y.z }}\"}, outputs: $ctx.out}\n";
    let file = TempDir::new();
    let ctx_file = file.write("ctx.json", r#"{"x": "file", "y": {"z": 1}}"#);
    let at = format!("@{}", ctx_file.display());
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["-c", &at, "--set", "y.z=2"])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["out"], "file-2");
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["-c", "-"])
        .stdin(r#"{"x": "stdin", "y": {"z": true}}"#)
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["out"], "stdin-true");
    // JSON, else true/false/null in any case as illumo-flow reads them, else text.
    let ctx = Illumo::new()
        .run_flow("flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n")
        .args([
            "--set",
            "a=True",
            "--set",
            "b=FALSE",
            "--set",
            "c=Null",
            "--set",
            "d=Trueish",
            "--set",
            "e=[1]",
        ])
        .run()
        .success()
        .ctx();
    assert_eq!(
        (&ctx["a"], &ctx["b"], &ctx["c"], &ctx["d"], &ctx["e"]),
        (
            &json!(true),
            &json!(false),
            &json!(null),
            &json!("Trueish"),
            &json!([1])
        )
    );
}

#[test]
fn output_file_and_pretty_printing() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}\n";
    let illumo = Illumo::new();
    let target = illumo.dir().join("out.json");
    let out = illumo
        .run_flow(flow)
        .args(["-o", target.to_str().unwrap(), "--pretty"])
        .run()
        .success();
    assert_eq!(out.stdout, "");
    let text = std::fs::read_to_string(target).unwrap();
    assert!(text.starts_with("{\n  \"a\": 1,\n"), "{text}");
}

#[test]
fn bad_context_is_a_usage_error() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n";
    Illumo::new()
        .run_flow(flow)
        .args(["-c", "[1, 2]"])
        .run()
        .code(2)
        .stderr("error: --context: the text must be a JSON object, like '{\"request\": {}}'\n");
    let out = Illumo::new()
        .run_flow(flow)
        .args(["-c", "{oops"])
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        "error: --context: the text is not valid JSON: key must be a string at line 1 column 2\n"
    );
    let dir = crate::support::TempDir::new();
    let file = dir.write("ctx.json", "{\"a\": ");
    Illumo::new()
        .run_flow(flow)
        .args(["-c".to_string(), format!("@{}", file.display())])
        .run()
        .code(2)
        .stderr(&format!(
            "error: --context: `{}` is not valid JSON: EOF while parsing a value at line 1 column 6\n",
            file.display()
        ));
}

#[test]
fn an_endless_context_file_is_refused_at_the_size_limit() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n";
    Illumo::new()
        .run_flow(flow)
        .args(["-c", "@/dev/zero"])
        .run()
        .code(2)
        .stderr("error: --context: `/dev/zero` is larger than 64 MiB, the most illumo reads\n");
}

#[test]
fn parallel_writes_to_one_path_fail_the_run() {
    let text = std::fs::read_to_string(
        crate::support::root().join("tests/fixtures/warnings/parallel_writes.yaml"),
    )
    .unwrap();
    let out = Illumo::new()
        .run_flow(&text)
        .args(["--quiet"])
        .run()
        .code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `slow` failed on attempt 1 of 1: nodes `fast` and `slow` wrote `$ctx.result.text` while running in parallel; give each branch its own path")
    );
    assert_eq!(out.ctx()["result"], "fast", "the first write stands");
}

#[test]
fn sequential_nodes_may_overwrite_a_path() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.x}\n    b: {type: Set, setting: {value: 2}, outputs: $ctx.x}\n  edges:\n    - a >> b\n";
    let out = Illumo::new().run_flow(flow).run().success();
    assert_eq!(out.ctx()["x"], 2);
    assert_eq!(out.stderr.lines().count(), 1, "no warning: {}", out.stderr);
}

fn step_names(ctx: &serde_json::Value) -> Vec<String> {
    ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_join_inside_a_loop_still_waits_for_both_parents_each_round() {
    let flow = r#"
flow:
  max_steps: 100
  nodes:
    seed: {type: Set, setting: {value: 0}}
    a: {type: Set, setting: {value: a}}
    b: {type: Set, setting: {value: b}}
    merge: {type: Set, setting: {value: m}}
    route:
      type: Router
      setting:
        routes:
          - {when: "size(ctx.steps) < 8", to: seed}
  edges:
    - seed >> (a | b)
    - (a & b) >> merge >> route
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    let steps = step_names(&ctx);
    let merges = steps.iter().filter(|s| *s == "merge").count();
    let routes = steps.iter().filter(|s| *s == "route").count();
    assert_eq!((merges, routes), (2, 2), "{steps:?}");
    assert_eq!(steps[..5].to_vec(), ["seed", "a", "b", "merge", "route"]);
}

#[test]
fn a_goto_from_a_profile_is_a_path_a_join_waits_for() {
    let flow = r#"
flow:
  profiles:
    rescue: {on_error: {action: goto, target: p}}
  nodes:
    seed: {type: Set, setting: {value: 0}}
    a: {type: Set, setting: {value: a}}
    slow:
      type: Command
      setting: {argv: [python3, -c, "import sys; sys.exit(3)"]}
    p: {type: Set, setting: {value: p}}
    merge: {type: Set, setting: {value: m}}
  edges:
    - seed >> (a | slow)
    - (a & p) >> merge
"#;
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["--profile", "rescue"])
        .run()
        .success()
        .ctx();
    assert_eq!(step_names(&ctx).iter().filter(|s| *s == "merge").count(), 1);
    assert_eq!(ctx["joins"]["merge"], json!({"a": "a", "p": "p"}));
}

#[test]
fn when_nothing_runs_the_join_nothing_else_feeds_fires_first() {
    let flow = r#"
flow:
  max_parallel: 1
  policy: {fail_fast: false}
  nodes:
    s: {type: Set, setting: {value: 0}}
    j1: {type: Set, setting: {value: j1}}
    d: {type: Set, setting: {value: d}}
    a: {type: Set, setting: {value: a}}
    b: {type: Set, inputs: $ctx.missing, setting: {value: b}}
    j2: {type: Set, setting: {value: j2}}
    c: {type: Set, setting: {value: c}}
  edges:
    - s >> (d | a | b)
    - (a & b) >> j2 >> c
    - (c & d) >> j1
"#;
    let out = Illumo::new().run_flow(flow).run().code(1);
    let steps = step_names(&out.ctx());
    assert_eq!(steps.iter().filter(|s| *s == "j1").count(), 1, "{steps:?}");
    assert_eq!(out.ctx()["joins"]["j1"], json!({"c": "c", "d": "d"}));
}

#[test]
fn nested_loops_see_what_the_innermost_body_reads() {
    let flow = r#"
flow:
  nodes:
    outer: {type: Loop, setting: {items: $ctx.rows, body: inner}, outputs: $ctx.cells}
    inner: {type: Loop, setting: {items: $ctx.loop.item, body: cell}}
    cell: {type: Set, setting: {value: "{{ $ctx.prefix }}-{{ $ctx.loop.item }}"}}
"#;
    let ctx = Illumo::new()
        .run_flow(flow)
        .args(["-c", r#"{"rows": [[1, 2], [3]], "prefix": "p"}"#])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["cells"], json!([["p-1", "p-2"], ["p-3"]]));
}

#[test]
fn a_loop_body_that_may_continue_passes_its_item_on() {
    let flow = r#"
flow:
  nodes:
    each: {type: Loop, setting: {items: [1, 2], body: check}, outputs: $ctx.out}
    check:
      type: Command
      setting: {argv: [python3, -c, "import sys; sys.exit(int(sys.argv[1]) - 1)", "{{ $ctx.loop.item }}"]}
      policy: {on_error: continue}
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["out"], json!(["", 2]));
}

#[test]
fn a_router_fan_out_and_several_entries_are_parallel_for_writes() {
    let flow = r#"
flow:
  nodes:
    r: {type: Router, setting: {routes: [{default: [fast, slow]}]}}
    fast: {type: Set, setting: {value: fast}, outputs: $ctx.res}
    slow: {type: Command, setting: {argv: [python3, -c, "print('slow')"]}, outputs: $ctx.res}
"#;
    let out = Illumo::new().run_flow(flow).run().code(1);
    assert!(
        out.stderr.starts_with(
            "warning: nodes `fast` and `slow` may run in parallel and both write `$ctx.res`"
        ),
        "{}",
        out.stderr
    );
    let entries = "flow:\n  entry: [x, y]\n  nodes:\n    x: {type: Set, setting: {value: 1}, outputs: $ctx.v}\n    y: {type: Set, setting: {value: 2}, outputs: $ctx.v}\n";
    let out = Illumo::new()
        .run_flow(entries)
        .args(["--quiet"])
        .run()
        .code(1);
    assert!(
        out.stderr
            .contains("wrote `$ctx.v` while running in parallel"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_duplicated_edge_runs_its_target_once() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n    b: {type: Set, setting: {value: 2}}\n  edges:\n    - a >> b\n    - a >> b\n";
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(step_names(&ctx), ["a", "b"]);
}

#[test]
fn non_ascii_text_in_paths_is_an_error_not_a_crash() {
    let out = Illumo::new()
        .run_flow("flow:\n  nodes:\n    a: {type: Set, setting: {value: \"$ctx.a[0]é\"}}\n")
        .run()
        .code(2);
    assert!(
        out.stderr
            .starts_with("error: node `a`: unexpected `é` in path `$ctx.a[0]é`\n"),
        "{}",
        out.stderr
    );
    let out = Illumo::new()
        .run_flow("flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n")
        .args(["--set", "$ctx[0]é=1"])
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        "error: --set `$ctx[0]é=1`: unexpected `é` in path `$ctx[0]é`\n"
    );
}

#[test]
fn output_that_cannot_be_written_after_success_exits_4_with_the_trace_id() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["--print", "$ctx.nope"])
        .run()
        .code(4);
    assert_eq!(out.stdout, "");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "error: --print: `$ctx.nope` is not in the final ctx"
    );
    assert!(
        lines[1].starts_with("  the flow succeeded; trace_id: ") && lines[1].len() == 64,
        "{}",
        out.stderr
    );
    assert_eq!(lines.len(), 2);
    // A folder where the file should be: only the write itself can fail.
    let illumo = Illumo::new();
    let folder = illumo.dir().display().to_string();
    let out = illumo.run_flow(flow).args(["-o", &folder]).run().code(4);
    assert!(
        out.stderr.starts_with(&format!("error: cannot write `{folder}`: Is a directory (os error 21)\n  the flow succeeded; trace_id: ")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_loop_bodys_other_writes_are_applied_in_item_order() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("replies.yaml"),
        "replies:\n  ask:\n    - reply: first answer\n      usage: {input_tokens: 3, output_tokens: 2}\n    - reply: second answer\n      usage: {input_tokens: 5, output_tokens: 4}\n",
    )
    .unwrap();
    let flow = "flow:\n  nodes:\n    each:\n      type: Loop\n      setting: {items: [a, b], body: ask}\n      outputs: $ctx.answers\n    ask:\n      type: Agent\n      setting: {provider: scripted, responses: replies.yaml, prompt: \"about {{ $ctx.loop.item }}\", metadata_path: $ctx.meta}\n";
    let ctx = illumo.run_flow(flow).run().success().ctx();
    assert_eq!(ctx["answers"], json!(["first answer", "second answer"]));
    // The body's metadata is written, not dropped; the last item's stays.
    assert_eq!(
        (
            ctx["meta"]["input_tokens"].clone(),
            ctx["meta"]["output_tokens"].clone()
        ),
        (json!(5), json!(4))
    );
}

#[test]
fn a_two_thousand_way_fan_out_with_outputs_joins_every_branch() {
    // Each branch writes its own path; the join sees every parent. (The write check and
    // the join's bookkeeping once grew with the cube of the branch count.)
    let n = 2000;
    let mut flow = format!("flow:\n  max_parallel: 64\n  max_steps: {}\n  nodes:\n    seed: {{type: Set, setting: {{value: 0}}}}\n    join: {{type: Set, setting: {{value: done}}, outputs: $ctx.done}}\n", n + 2);
    for i in 0..n {
        flow.push_str(&format!(
            "    b{i}: {{type: Set, setting: {{value: {i}}}, outputs: $ctx.r.b{i}}}\n"
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    flow.push_str(&format!(
        "  edges:\n    - seed >> ({})\n    - ({}) >> join\n",
        names.join(" | "),
        names.join(" & ")
    ));
    let ctx = Illumo::new()
        .run_flow(&flow)
        .args(["--quiet"])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["done"], "done");
    assert_eq!(ctx["r"].as_object().map(|m| m.len()), Some(n));
    assert_eq!(ctx["r"]["b1999"], 1999);
    assert_eq!(ctx["joins"]["join"].as_object().map(|m| m.len()), Some(n));
    assert_eq!(ctx["steps"].as_array().map(Vec::len), Some(n + 2));
}

#[test]
fn payloads_referenced_keeps_only_the_outputs_that_are_read() {
    let flow = "flow:
  payloads: referenced
  nodes:
    a: {type: Set, setting: {value: big-a}}
    b: {type: Set, setting: {value: {n: 2}}}
    c: {type: Set, setting: {value: 'from {{ $payload.a }}'}, outputs: $ctx.c}
    d: {type: Set, setting: {value: unread}}
  edges:
    - a >> b
    - from: b
      to: c
      when: ctx.payloads.b.n == 2
    - c >> d
";
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["payloads"], json!({"a": "big-a", "b": {"n": 2}}));
    assert_eq!(ctx["c"], "from big-a");
    // Reading ctx whole keeps every output.
    let whole = flow.replace("'from {{ $payload.a }}'", "'{{ json $ctx }}'");
    let ctx = Illumo::new().run_flow(&whole).run().success().ctx();
    assert_eq!(
        ctx["payloads"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn an_unknown_payloads_mode_is_a_load_error() {
    let illumo = Illumo::new();
    let path = illumo
        .flow_file("flow:\n  payloads: some\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n");
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr.replace(&path, "flow.yaml"),
        "error: unknown `payloads` value `some`
 --> flow.yaml:2:13
  |
2 |   payloads: some
  |             ^^^^ expected `all` or `referenced`
  = help: `all` keeps every node's output in ctx.payloads (the default); `referenced` only the outputs some node reads

error: flow.yaml has 1 error
"
    );
}

#[test]
fn templates_render_maps_and_lists_as_json() {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: \"S={{ $ctx.s }} L={{ $ctx.l }} N={{ $ctx.n }} B={{ $ctx.b }} Z={{ $ctx.z }}{{#each $ctx.l}} item={{ this }}{{/each}}\"}, outputs: $ctx.text}\n";
    let ctx = Illumo::new()
        .run_flow(flow)
        .args([
            "-c",
            r#"{"s": {"a": [1, "x"]}, "l": [1, {"b": 2}], "n": 1.5, "b": true, "z": null}"#,
        ])
        .run()
        .success()
        .ctx();
    assert_eq!(
        ctx["text"],
        r#"S={"a":[1,"x"]} L=[1,{"b":2}] N=1.5 B=true Z= item=1 item={"b":2}"#
    );
}

/// `--data`: a run per row (a trace each, sharing a batch id); a failed row does not stop
/// the others, and the run exits 1.
#[test]
fn a_batch_runs_every_row_and_reports_the_failed_ones() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "flow.yaml",
        "flow:\n  name: b\n  nodes:\n    a: {type: Set, setting: {value: 'got {{ $ctx.row.message }}'}, outputs: $ctx.out}\n    b: {type: Command, setting: {argv: [sh, -c, 'test \"$1\" != \"got 5\"', x, '{{ $ctx.out }}']}}\n  edges:\n    - a >> b\n",
    );
    dir.write("rows.csv", "message,n\n\"hello, you\",1\n5,2\nbye,3\n");
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "--data",
            "rows.csv",
            "--data-path",
            "row",
            "--parallel",
            "2",
        ])
        .args([
            "--trace-db",
            "t.db",
            "--tracer",
            "none",
            "-o",
            "results.jsonl",
        ])
        .run()
        .code(1);
    let results: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(i64, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["row"].as_i64().unwrap(),
                r["status"].as_str().unwrap(),
                r["ctx"]["out"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, "ok", "got hello, you"),
            (1, "failed", "-"),
            (2, "ok", "got bye")
        ]
    );
    assert_eq!(
        results[1]["error"],
        "node `b` failed on attempt 1 of 1: `sh` exited with code 1"
    );
    let stderr: Vec<&str> = out.stderr.lines().collect();
    assert!(
        stderr[0].starts_with("batch ") && stderr[0].ends_with(": 3 rows, 2 at a time"),
        "{}",
        out.stderr
    );
    let batch = stderr[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    assert_eq!(
        stderr[1],
        format!(
            "row 1 failed: node `b` failed on attempt 1 of 1: `sh` exited with code 1 (trace {})",
            results[1]["trace_id"].as_str().unwrap()
        )
    );
    assert!(
        stderr[2].starts_with(&format!("batch {batch}: 2 ok, 1 failed in ")),
        "{}",
        stderr[2]
    );
    assert!(
        stderr[2].contains("; p50 ") && stderr[2].contains("ms, p95 "),
        "{}",
        stderr[2]
    );
    // One trace per row, each with the batch id and its row.
    assert_eq!(
        crate::support::sqlite3(
            &dir.path().join("t.db"),
            &format!("SELECT json_extract(attributes, '$.batch.row') FROM spans WHERE kind = 'flow' AND json_extract(attributes, '$.batch.id') = '{batch}' ORDER BY 1")
        ),
        "0\n1\n2\n"
    );
}

/// `Subflow`: a child flow file run as one node, its spans under the node's in the same
/// trace; its problems at its own lines; files that run each other are refused.
#[test]
fn a_subflow_runs_another_flow_file_as_one_node() {
    let dir = TempDir::new();
    dir.write(
        "child.yaml",
        "flow:\n  name: child\n  nodes:\n    up: {type: Command, setting: {argv: [python3, -c, \"import sys; print(sys.argv[1].upper())\", \"{{ $ctx.text }}\"]}, outputs: $ctx.upper}\n    tag: {type: Set, setting: {value: \"<{{ $ctx.upper }}>\"}, outputs: $ctx.tagged}\n  edges:\n    - up >> tag\n",
    );
    let parent = "flow:\n  name: parent\n  nodes:\n    prep: {type: Set, setting: {value: hello}, outputs: $ctx.word}\n    sub:\n      type: Subflow\n      setting: {flow: child.yaml}\n      inputs: {text: $ctx.word}\n      outputs: {tagged: $ctx.result}\n  edges:\n    - prep >> sub\n";
    dir.write("parent.yaml", parent);
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "parent.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--print",
            "result",
        ])
        .run()
        .success();
    assert_eq!(out.stdout, "<HELLO>\n");
    assert_eq!(
        crate::support::sqlite3(
            &dir.path().join("t.db"),
            "SELECT s.name || ' < ' || coalesce(p.name, '-') FROM spans s LEFT JOIN spans p ON p.span_id = s.parent_id ORDER BY s.start_time"
        ),
        "flow parent < -\nprep < flow parent\nsub < flow parent\nflow child < sub\nup < flow child\ntag < flow child\n"
    );
    assert_eq!(
        crate::support::sqlite3(
            &dir.path().join("t.db"),
            "SELECT count(DISTINCT trace_id) FROM spans"
        ),
        "1\n"
    );
    dir.write(
        "child.yaml",
        "flow:\n  nodes:\n    tag: {type: Set, setting: {value: 1}, bogus: 1}\n",
    );
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "parent.yaml"])
        .run()
        .code(2);
    assert!(
        bad.stderr
            .starts_with("error: the subflow `child.yaml` has 1 error\n --> parent.yaml:7:23\n"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains("error: unknown key `bogus` in node `tag`\n --> child.yaml:3:43\n"),
        "{}",
        bad.stderr
    );
    dir.write(
        "child.yaml",
        "flow:\n  nodes:\n    back: {type: Subflow, setting: {flow: parent.yaml}}\n",
    );
    let cycle = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "parent.yaml"])
        .run()
        .code(2);
    assert!(
        cycle
            .stderr
            .contains("error: node `sub`: flow files run each other: "),
        "{}",
        cycle.stderr
    );
    assert!(cycle.stderr.contains("parent.yaml -> "), "{}", cycle.stderr);
}
