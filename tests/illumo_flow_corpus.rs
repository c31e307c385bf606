//! illumo-flow's own flows (its README, docs, tutorials, tests and examples; see
//! `tests/illumo_flow/MANIFEST.md`), run unchanged by illumo and compared with the final
//! ctx illumo-flow 0.1.5's CLI produced for them (`tests/illumo_flow/expected/`,
//! recorded by `tests/illumo_flow/record.sh`).

use crate::support::{copy_dir, root, step_lines, Illumo, TempDir};
use serde_json::{json, Value};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    root().join("tests/illumo_flow")
}

/// Runs `flow` with its recorded context from a fresh copy of the corpus' modules (the
/// working folder illumo-flow was run from), as `illumo run` would be typed there.
fn run(flow: &str, extra: &[&str]) -> (crate::support::Output, TempDir) {
    run_in(flow, flow, extra)
}

/// [`run`] with the recorded context `contexts/{context}.json`.
fn run_in(flow: &str, context: &str, extra: &[&str]) -> (crate::support::Output, TempDir) {
    let work = TempDir::new();
    copy_dir(&corpus().join("modules"), &work.path().join("modules"));
    copy_dir(&corpus().join("flows"), &work.path().join("flows"));
    // The recording seeded `random` this way for the flow that draws a number.
    std::fs::write(
        work.path().join("modules/sitecustomize.py"),
        "import random\nrandom.seed(0)\n",
    )
    .unwrap();
    let context = corpus().join(format!("contexts/{context}.json"));
    let flow_path = format!("../flows/{flow}.yaml");
    let out = Illumo::new()
        .in_dir(&work.path().join("modules"))
        .args(["run", &flow_path, "--tracer", "none", "--quiet"])
        .args(["-c", &format!("@{}", context.display())])
        .args(extra)
        .env("PYTHONHASHSEED", "0")
        .run();
    (out, work)
}

fn expected(flow: &str) -> Value {
    let text = std::fs::read_to_string(corpus().join(format!("expected/{flow}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The flows illumo-flow itself runs to the end: the same final ctx, key for key.
#[test]
fn flows_illumo_flow_runs_give_the_same_final_ctx() {
    for flow in [
        "readme_etl",
        "flow_guide_etl",
        "test_yaml_config_etl",
        "test_cli_happy_path",
        "sample_linear_etl",
        "sample_confidence_router",
        "sample_node_managed_timeout",
        "sample_early_stop_watchdog",
    ] {
        let (out, _work) = run(flow, &[]);
        assert_eq!(out.code, 0, "{flow}: {}", out.stderr);
        assert_eq!(out.ctx(), expected(flow), "{flow}");
    }
}

/// Both run one node at a time, but illumo-flow keeps a node's successors in a Python
/// `set`, so the order of the two branches changes with the string hash seed: the same
/// ctx, with the branches in either order.
#[test]
fn a_fan_out_gives_the_same_ctx_with_its_branches_in_any_order() {
    let (out, _work) = run("sample_parallel_enrichment", &[]);
    let (mut got, mut want) = (out.success().ctx(), expected("sample_parallel_enrichment"));
    let steps = |ctx: &mut Value| ctx.as_object_mut().unwrap().remove("steps").unwrap();
    let (got_steps, want_steps) = (steps(&mut got), steps(&mut want));
    assert_eq!(got, want);
    let (mut g, mut w) = (step_lines(&got_steps), step_lines(&want_steps));
    // Each node starts before it succeeds, seed first and merge last, in both.
    for steps in [&g, &w] {
        assert_eq!(steps.first().map(String::as_str), Some("seed start"));
        assert_eq!(steps.last().map(String::as_str), Some("merge success"));
        for node in ["geo", "risk"] {
            let at = |s: &str| {
                steps
                    .iter()
                    .position(|x| x == &format!("{node} {s}"))
                    .unwrap()
            };
            assert!(at("start") < at("success"), "{steps:?}");
        }
    }
    g.sort();
    w.sort();
    assert_eq!(g, w);
}

/// What changes from run to run: durations, pytest's timing, the folder it ran in.
fn steady(value: &mut Value) {
    let timing = regex_lite::Regex::new(r"in \d+\.\d+s").unwrap();
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "duration" => *v = json!("<duration>"),
                    "cwd" => *v = json!("<cwd>"),
                    _ => steady(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(steady),
        Value::String(s) => *s = timing.replace_all(s, "in <t>s").into_owned(),
        _ => {}
    }
}

#[test]
fn the_coding_assistant_refuses_a_diff_that_does_not_match_and_runs_with_one_that_does() {
    // illumo-flow's own example diff has two blank lines where the file has one: its
    // Patch applies hunks by position without comparing them; illumo's refuses.
    let (out, _work) = run("coding_assistant", &[]);
    let out = out.code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `apply_patch` failed on attempt 1 of 1: the diff was not applied: 1 file rejected (`sample_app/__init__.py`: the hunks do not apply: error applying hunk #1)")
    );
    // With a diff that matches and `request.write: true`, illumo-flow writes the fix and
    // its tests pass. Here ctx cannot grant writing: the files stay as they were, and the
    // tests run on the patched copy, so they pass too and the final ctx is illumo-flow's
    // (inspector, Patch, TestExecutor and SummaryAgent shapes), but for what differs on
    // every run.
    let (out, work) = run_in("coding_assistant", "coding_assistant.write", &[]);
    let mut got = out.success().ctx();
    let mut want = expected("coding_assistant.write");
    assert_eq!(got["tests"]["results"]["returncode"], 0);
    let cwd = work
        .path()
        .join("modules/examples/multi_agent/coding_assistant");
    assert_eq!(got["tests"]["results"]["cwd"], cwd.display().to_string());
    steady(&mut got);
    steady(&mut want);
    assert_eq!(got, want);
    let file = std::fs::read_to_string(cwd.join("sample_app/__init__.py")).unwrap();
    assert!(file.contains("return a - b"), "nothing was written: {file}");
}

#[test]
fn migrate_rewrites_a_flow_that_then_gives_the_same_data() {
    for (flow, keys) in [
        ("readme_etl", &["data"][..]),
        ("sample_parallel_enrichment", &["data"][..]),
        ("sample_confidence_router", &["decisions", "metrics"][..]),
    ] {
        let work = TempDir::new();
        copy_dir(&corpus().join("modules"), &work.path().join("modules"));
        copy_dir(&corpus().join("flows"), &work.path().join("flows"));
        std::fs::write(
            work.path().join("modules/sitecustomize.py"),
            "import random\nrandom.seed(0)\n",
        )
        .unwrap();
        let modules = work.path().join("modules");
        let migrated = Illumo::new()
            .in_dir(&modules)
            .args(["migrate", &format!("../flows/{flow}.yaml")])
            .run()
            .success();
        assert!(
            migrated
                .stdout
                .starts_with("# migrated from illumo-flow's spelling by `illumo migrate`\nflow:\n"),
            "{}",
            migrated.stdout
        );
        assert!(
            !migrated.stdout.contains("illumo_flow."),
            "{}",
            migrated.stdout
        );
        std::fs::write(modules.join("native.yaml"), &migrated.stdout).unwrap();
        let out = Illumo::new()
            .in_dir(&modules)
            .args(["run", "native.yaml", "--tracer", "none", "--quiet"])
            .run()
            .success();
        let (ctx, want) = (out.ctx(), expected(flow));
        for key in keys {
            assert_eq!(ctx[*key], want[*key], "{flow}: {key}");
        }
        // Native now: illumo's own ctx shapes.
        assert_eq!(ctx["steps"][0]["status"], "ok", "{flow}");
    }
}

#[test]
fn migrate_lists_every_change_and_writes_in_place_when_asked() {
    let illumo = Illumo::new();
    let path = illumo.dir().join("flow.yaml");
    std::fs::write(
        &path,
        "flow:\n  entry: a\n  nodes:\n    a:\n      type: illumo_flow.core.FunctionNode\n      name: first\n      setting:\n        policy: {retry: {max_attempts: 2}, fail_fast: false}\n      context:\n        inputs: {callable: m.f, value: ctx.x}\n        outputs: ctx.y\n",
    )
    .unwrap();
    let path = path.display().to_string();
    let out = illumo.args(["migrate", &path, "--write"]).run().success();
    assert_eq!(
        out.stderr,
        format!("changed: node `a`: type `illumo_flow.core.FunctionNode` -> `FunctionNode`
changed: node `a`: `name` dropped: illumo names nodes by their id
changed: node `a`: `context.inputs.callable` -> `setting.callable`
changed: node `a`: `context.inputs` -> `inputs` (one input is passed as the value itself)
changed: node `a`: `context.outputs` -> `outputs`
changed: node `a`: `retry.max_attempts` counted retries: 2 -> 3 attempts
changed: node `a`: `fail_fast: false` went on downstream: -> `on_error: continue`
changed: node `a`: `setting.policy` -> `policy`
changed: illumo-flow runs one node at a time, in queue order: `max_parallel: 1` keeps that (remove it to run branches concurrently)
changed: ctx.steps, ctx.errors and ctx.routing take illumo's shapes, and a node's null output is no longer replaced by its input (FunctionNode still passes its input on)
changed: relative paths in settings (such as default_root) now resolve against the flow file's folder, not the working folder
changed: a path that is not in ctx, in inputs, settings or templates, fails the node naming it (illumo-flow read it as null, and an unset $env variable as \"\")
changed: `ctx.payloads` holds outputs only: a function no longer finds its own input, or a queued node's, there
wrote `{path}` (13 changes)
")
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# migrated from illumo-flow's spelling by `illumo migrate`
flow:
  name: a
  entry: a
  max_parallel: 1
  nodes:
    a:
      type: FunctionNode
      setting:
        callable: m.f
      inputs: $ctx.x
      outputs: $ctx.y
      policy:
        fail_fast: false
        retry:
          max_attempts: 3
        on_error: continue
"
    );
    let again = Illumo::new().args(["migrate", &path]).run().success();
    assert_eq!(
        again.stderr,
        format!("`{path}` is already in illumo's spelling; nothing to migrate\n")
    );
    assert_eq!(again.stdout, "");
}

/// Every flow of the corpus either loads, or is refused with a reason that names what
/// illumo does not do (each of these also fails in illumo-flow itself, see MANIFEST.md).
#[test]
fn every_corpus_flow_loads_or_is_refused_with_its_reason() {
    let refused = [
        ("chatbot_flow", "node `faq`: invalid template: a `{{` is not closed by `}}`, or what is inside is not an expression"),
        ("concept_fanout_join", "node `start`: `start_func` is not an import path; write `package.module.function`"),
        // Its choices are not nodes: illumo-flow fails at the routing too.
        ("tut04_router_decision", "node `decision` routes to `Ship`, which is not a node"),
        ("tut04_router_decision_ja", "node `decision` routes to `Ship`, which is not a node"),
        ("tut06_flow_launch", "node `decide` routes to `Ship`, which is not a node"),
        ("tut06_flow_launch_ja", "node `decide` routes to `Ship`, which is not a node"),
        ("update_req_router_scenario", "node `RouteSelector`: `RouterAgent` needs `choices`"),
        ("update_req_schema", "`flow` has no `nodes`"),
    ];
    let work = TempDir::new();
    copy_dir(&corpus().join("modules"), &work.path().join("modules"));
    copy_dir(&corpus().join("flows"), &work.path().join("flows"));
    let mut names: Vec<String> = std::fs::read_dir(corpus().join("flows"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".yaml")
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 29);
    for name in names {
        let out = Illumo::new()
            .in_dir(&work.path().join("modules"))
            .args(["validate", &format!("../flows/{name}.yaml")])
            .env("NO_COLOR", "1")
            .run();
        match refused.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => {
                assert_eq!(out.code, 2, "{name}");
                assert!(
                    out.stderr
                        .lines()
                        .any(|l| l.starts_with(&format!("error: {why}"))),
                    "{name}:\n{}",
                    out.stderr
                );
            }
            None => {
                assert_eq!(out.code, 0, "{name}:\n{}", out.stderr);
                assert!(out.stdout.starts_with("ok: "), "{name}");
                assert!(
                    out.stderr.starts_with("warning: this flow is written for illumo-flow: illumo-flow's meanings apply"),
                    "{name}:\n{}",
                    out.stderr
                );
            }
        }
    }
}

/// An agent migrates with illumo-flow's default model written out, and a word on the
/// `ctx.agents.<id>` bucket native agents do not keep.
#[test]
fn migrate_writes_out_an_agents_default_model_and_names_the_bucket_it_drops() {
    let illumo = Illumo::new();
    let path = illumo.flow_file(
        "flow:\n  nodes:\n    greet:\n      type: illumo_flow.nodes.Agent\n      context:\n        inputs: {prompt: hi}\n        history_path: $ctx.h\n",
    );
    let out = illumo.args(["migrate", &path]).run().success();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("model") || l.contains("bucket"))
        .collect();
    assert_eq!(
        lines,
        [
            "changed: node `greet`: illumo-flow's default model written out: `model: gpt-4.1-nano` (illumo's default is gpt-4.1-mini)",
            "changed: node `greet`: illumo-flow's `ctx.agents.greet` bucket ({timestamp, value} slots) is not kept; give `output_path`, `metadata_path` for what a later node reads",
        ]
    );
    assert!(
        out.stdout.contains("      setting:\n        prompt: hi\n        history_path: $ctx.h\n        model: gpt-4.1-nano\n"),
        "{}",
        out.stdout
    );
}

/// The flow's own `policy:` is kept by migrate, with illumo-flow's retry count made
/// explicit (tutorial 08: two retries, then a goto).
#[test]
fn migrate_keeps_the_flows_policy_with_its_retries_counted_as_attempts() {
    let flow = corpus().join("flows/tut08_policy_demo.yaml");
    let out = Illumo::new()
        .args(["migrate", &flow.display().to_string()])
        .run()
        .success();
    assert!(
        out.stdout.contains(
            "  policy:
    fail_fast: false
    timeout: 10s
    retry:
      max_attempts: 3
      delay: 500ms
      mode: fixed
    on_error:
      action: goto
      target: fallback
"
        ),
        "{}",
        out.stdout
    );
    let policy: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("policy"))
        .collect();
    assert_eq!(
        policy,
        ["changed: the flow's policy: `retry.max_attempts` counted retries: 2 -> 3 attempts"]
    );
}

/// A relative `default_root` named a folder from the working folder there; migrate
/// rewrites it to name the same folder from the flow file's (illumo's meaning).
#[test]
fn migrate_rebases_a_relative_default_root_on_the_flow_files_folder() {
    let work = TempDir::new();
    copy_dir(&corpus().join("modules"), &work.path().join("modules"));
    copy_dir(&corpus().join("flows"), &work.path().join("flows"));
    let out = Illumo::new()
        .in_dir(&work.path().join("modules"))
        .args(["migrate", "../flows/coding_assistant.yaml"])
        .run()
        .success();
    let rebased: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("was relative to the working folder"))
        .collect();
    assert_eq!(rebased.len(), 3, "{}", out.stderr);
    assert_eq!(
        rebased[0],
        "changed: node `inspect`: `default_root: examples/multi_agent/coding_assistant` was relative to the working folder; -> `../modules/examples/multi_agent/coding_assistant`, the same folder from the flow file's"
    );
    assert_eq!(
        out.stdout
            .matches("default_root: ../modules/examples/multi_agent/coding_assistant\n")
            .count(),
        3
    );
    assert!(work
        .path()
        .join("flows/../modules/examples/multi_agent/coding_assistant")
        .is_dir());
    // The contexts are not in the file, so what changes for them is said.
    assert!(
        out.stderr.contains("changed: a relative `ctx.request.target_root` is now read from the flow file's folder (illumo-flow read it from the working folder): give the flow's contexts an absolute root, or one from the flow file's folder\n"),
        "{}",
        out.stderr
    );
}
