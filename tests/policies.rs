//! Retry, timeout, on_error and fail_fast, and how policy layers combine.

use crate::support::Illumo;
use serde_json::json;

const SLOW: &str = r#"
flow:
  name: slow
  profiles:
    quick: {timeout: 200ms}
  nodes:
    sleeper:
      type: Command
      setting: {argv: [python3, -c, "import time; time.sleep(5)"]}
"#;

#[test]
fn profile_timeout_applies_to_every_node() {
    let out = Illumo::new()
        .run_flow(SLOW)
        .args(["--profile", "quick"])
        .run()
        .code(1);
    assert!(out.stderr.starts_with(
        "error: node `sleeper` failed on attempt 1 of 1: timed out after 200ms\n  policy: max_attempts 1, timeout 200ms, on_error stop, fail_fast true\n  trace_id: "
    ), "{}", out.stderr);
}

#[test]
fn cli_policy_beats_the_profile() {
    let out = Illumo::new()
        .run_flow(SLOW)
        .args(["--profile", "quick", "--policy", r#"{"timeout": "300ms"}"#])
        .run()
        .code(1);
    assert!(
        out.stderr
            .starts_with("error: node `sleeper` failed on attempt 1 of 1: timed out after 300ms\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn node_policy_beats_the_cli_policy() {
    let flow = SLOW.replace(
        "      setting: {argv",
        "      policy: {timeout: 100ms}\n      setting: {argv",
    );
    let out = Illumo::new()
        .run_flow(&flow)
        .args(["--policy", r#"{"timeout": "300ms"}"#])
        .run()
        .code(1);
    assert!(
        out.stderr
            .starts_with("error: node `sleeper` failed on attempt 1 of 1: timed out after 100ms\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_profile_is_a_usage_error() {
    Illumo::new()
        .run_flow(SLOW)
        .args(["--profile", "prod"])
        .run()
        .code(2)
        .stderr("error: unknown profile `prod`; the flow defines `quick`\n");
}

#[test]
fn bad_cli_policy_is_reported_with_its_place() {
    Illumo::new().run_flow(SLOW).args(["--policy", r#"{"timeout": "soon"}"#]).run().code(2).stderr(
        "error: invalid duration `soon` for `timeout`\n --> --policy:1:14\n  |\n1 | {\"timeout\": \"soon\"}\n  |              ^^^^ expected a number with a unit: 500ms, 30s, 5m, 1h\n\nerror: --policy has 1 error\n",
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let illumo = Illumo::new();
    let marker = format!("120.{}", crate::support::unique());
    let pidfile = illumo.dir().join("grandchild.pid");
    let flow = format!(
        r#"
flow:
  nodes:
    spawner:
      type: Command
      policy: {{timeout: 2s}}
      setting:
        argv:
          - python3
          - -c
          - |
            import subprocess, time
            child = subprocess.Popen(["sleep", "{marker}"])
            open("{}", "w").write(str(child.pid))
            time.sleep(120)
"#,
        pidfile.display()
    );
    let out = illumo.run_flow(&flow).run().code(1);
    assert!(
        out.stderr
            .starts_with("error: node `spawner` failed on attempt 1 of 1: timed out after 2s\n"),
        "{}",
        out.stderr
    );
    assert!(pidfile.exists(), "the grandchild started");
    assert_eq!(
        crate::support::gone(&marker),
        Vec::<u32>::new(),
        "the grandchild survived the timeout"
    );
}

#[test]
fn a_child_that_leaves_the_process_group_dies_with_the_node() {
    // `setsid` takes the sleeper out of the node's process group, and with no pipe of
    // the node's held open the node ends at once. Where the kernel gives illumo a PID namespace (root), the sleeper
    // dies with it.
    let works = |args: &[&str]| {
        std::process::Command::new("unshare")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let namespaces =
        works(&["--pid", "--fork", "true"]) || works(&["--user", "--pid", "--fork", "true"]);
    let marker = format!("120.{}", crate::support::unique());
    let flow = format!(
        "flow:\n  nodes:\n    spawner:\n      type: Command\n      setting: {{argv: [python3, -c, \"import subprocess as s; s.Popen(['sleep', '{marker}'], start_new_session=True, stdin=s.DEVNULL, stdout=s.DEVNULL, stderr=s.DEVNULL)\"]}}\n"
    );
    Illumo::new().run_flow(&flow).run().success();
    let left = crate::support::gone(&marker);
    if namespaces {
        assert_eq!(
            left,
            Vec::<u32>::new(),
            "a detached child outlived its node"
        );
    } else {
        eprintln!("no PID namespaces here: only the process group is killed");
        for pid in left {
            unsafe_kill(pid);
        }
    }
}

fn unsafe_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[test]
fn continue_passes_the_input_through() {
    let flow = r#"
flow:
  nodes:
    seed: {type: Set, setting: {value: {x: 1}}}
    broken:
      type: Command
      setting: {argv: [python3, -c, "import sys; sys.exit(3)"]}
      outputs: $ctx.after_broken
      policy: {on_error: continue}
    next: {type: Set, setting: {value: "went on"}, outputs: $ctx.next}
  edges:
    - seed >> broken >> next
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["after_broken"], json!({"x": 1}));
    assert_eq!(ctx["next"], "went on");
    assert_eq!(
        ctx["steps"],
        json!([{"node": "seed", "status": "ok"}, {"node": "broken", "status": "error"}, {"node": "next", "status": "ok"}])
    );
    assert_eq!(
        ctx["errors"],
        json!([{"node": "broken", "attempt": 1, "message": "`python3` exited with code 3", "timed_out": false, "action": "continue"}])
    );
}

#[test]
fn goto_jumps_with_the_failed_nodes_input() {
    let flow = r#"
flow:
  nodes:
    seed: {type: Set, setting: {value: {draft: 1}}}
    apply:
      type: Command
      setting: {argv: [python3, -c, "import sys; sys.exit(1)"]}
      policy: {retry: {max_attempts: 2}, on_error: {action: goto, target: redo}}
    redo:
      type: Router
      setting: {routes: [{default: done}]}
    done: {type: Set, setting: {value: finished}, outputs: $ctx.done}
  edges:
    - seed >> apply
"#;
    let ctx = Illumo::new().run_flow(flow).run().success().ctx();
    assert_eq!(ctx["payloads"]["redo"], json!({"draft": 1}));
    assert_eq!(ctx["done"], "finished");
    assert_eq!(ctx["errors"][0]["attempt"], 2);
    assert_eq!(ctx["errors"][0]["action"], "goto redo");
}

#[test]
fn without_fail_fast_other_branches_finish_and_the_run_still_fails() {
    let flow = r#"
flow:
  policy: {fail_fast: false}
  nodes:
    seed: {type: Set, setting: {value: 0}}
    bad:
      type: Command
      setting: {argv: [python3, -c, "import sys; print('boom', file=sys.stderr); sys.exit(1)"]}
    good: {type: Set, setting: {value: done}, outputs: $ctx.good}
    after_good: {type: Set, setting: {value: also}, outputs: $ctx.after_good}
  edges:
    - seed >> (bad | good)
    - good >> after_good
"#;
    let out = Illumo::new().run_flow(flow).run().code(1);
    let ctx = out.ctx();
    assert_eq!(ctx["good"], "done");
    assert_eq!(ctx["after_good"], "also");
    assert!(
        out.stderr.starts_with(
            "error: node `bad` failed on attempt 1 of 1: `python3` exited with code 1: boom\n"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn fatal_errors_are_not_retried() {
    let flow = r#"
flow:
  nodes:
    missing:
      type: Command
      setting: {argv: [definitely-not-a-program-xyz]}
      policy: {retry: {max_attempts: 5}}
"#;
    let out = Illumo::new().run_flow(flow).run().code(1);
    assert!(
        out.stderr.starts_with("error: node `missing` failed on attempt 1 of 5: cannot start `definitely-not-a-program-xyz` in `"),
        "{}",
        out.stderr
    );
}

/// A flow whose policy sends failures to `rescue`, which fails too.
fn failing_rescue(policy_place: &str) -> String {
    let policy = "policy: {on_error: {action: goto, target: rescue}}";
    let (flow_policy, profile) = match policy_place {
        "flow" => (format!("  {policy}\n"), String::new()),
        _ => (
            String::new(),
            format!(
                "  profiles:\n    safe: {{{}}}\n",
                &policy[9..policy.len() - 1]
            ),
        ),
    };
    format!(
        "flow:\n  max_steps: 50\n{flow_policy}{profile}  nodes:\n    work:\n      type: Command\n      setting: {{argv: [python3, -c, \"import sys; sys.exit(3)\"]}}\n    rescue:\n      type: Command\n      setting: {{argv: [python3, -c, \"import sys; sys.exit(4)\"]}}\n  edges:\n    - work >> rescue\n"
    )
}

#[test]
fn a_goto_target_that_fails_stops_instead_of_jumping_to_itself() {
    for (place, args) in [("flow", vec![]), ("profile", vec!["--profile", "safe"])] {
        let out = Illumo::new()
            .run_flow(&failing_rescue(place))
            .args(args)
            .run()
            .code(1);
        assert_eq!(
            out.stderr.lines().next(),
            Some("error: node `rescue` failed on attempt 1 of 1: `python3` exited with code 4"),
            "{place}"
        );
        let steps = crate::support::step_lines(&out.ctx()["steps"]);
        assert_eq!(steps, ["work error", "rescue error"], "{place}");
        assert_eq!(out.ctx()["errors"][1]["action"], "stop", "{place}");
    }
}

#[test]
fn goto_targets_in_the_flow_policy_and_in_profiles_load_without_warnings() {
    for place in ["flow", "profile"] {
        let illumo = Illumo::new();
        let path = illumo.flow_file(&failing_rescue(place));
        let out = illumo.args(["validate", &path]).run().success().stderr("");
        assert_eq!(
            out.stdout,
            format!("ok: `flow` in {path} (2 nodes, 1 edge)\n")
        );
    }
}

/// `Loop` with `parallel: 3`: the three items meet (each waits until all three have
/// started, which one at a time could never do), and the results keep item order.
#[test]
fn a_parallel_loop_runs_its_items_at_once_and_keeps_their_order() {
    let dir = crate::support::TempDir::new();
    let flow = |parallel: usize| {
        format!(
            "flow:
  name: fan
  entry: each
  nodes:
    each:
      type: Loop
      setting: {{items: $ctx.items, body: meet, parallel: {parallel}}}
      outputs: $ctx.results
    meet:
      type: Command
      setting:
        argv: [sh, -c, 'touch started.$1; n=0; while [ $(ls started.* | wc -l) -lt $2 ]; do n=$((n+1)); [ $n -gt 150 ] && exit 7; sleep 0.01; done; echo \"item $1\"', meet, '{{{{ $ctx.loop.item }}}}', '{{{{ len $ctx.items }}}}']
"
        )
    };
    dir.write("flow.yaml", &flow(3));
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "-c",
            r#"{"items": ["c", "a", "b"]}"#,
            "--print",
            "results",
        ])
        .run()
        .success();
    assert_eq!(out.stdout, "[\"item c\",\"item a\",\"item b\"]\n");
    for f in ["started.a", "started.b", "started.c"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    // One at a time, the first item waits for the others in vain.
    dir.write("flow.yaml", &flow(1));
    let alone = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "-c",
            r#"{"items": ["c", "a", "b"]}"#,
        ])
        .run()
        .code(1);
    assert!(
        alone.stderr.contains("exited with code 7"),
        "{}",
        alone.stderr
    );
    dir.write("flow.yaml", &flow(0));
    let zero = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "flow.yaml"])
        .run()
        .code(2);
    assert!(
        zero.stderr
            .starts_with("error: node `each`: `parallel` must be between 1 and 1024, not 0\n"),
        "{}",
        zero.stderr
    );
}

/// A goto given on the command line is part of the graph: a join waits for a parent that
/// only the goto can bring, and runs once with both (it ran early, then again, before).
#[test]
fn a_join_waits_for_a_parent_a_command_line_goto_may_bring() {
    let flow = "flow:\n  entry: a\n  nodes:\n    a: {type: Set, setting: {value: a}}\n    b: {type: Command, setting: {argv: [sh, -c, 'exit 1']}}\n    h: {type: Set, setting: {value: h}}\n    j: {type: Set, setting: {value: $joins.j}, outputs: $ctx.j}\n  edges: [a >> b, a >> j, h >> j]\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["-q", "--tracer", "none"])
        .args([
            "--policy",
            r#"{"on_error": {"action": "goto", "target": "h"}}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        crate::support::step_lines(&ctx["steps"]),
        ["a ok", "b error", "h ok", "j ok"]
    );
    assert_eq!(ctx["j"], json!({"a": "a", "h": "h"}));
}
