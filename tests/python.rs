//! FunctionNode and CustomRoutingNode: Python functions run in the run's one Python worker
//! (real python3), with illumo-flow's calling convention and results.

use crate::support::{sqlite3, Illumo};
use serde_json::json;

const MODULE: &str = r#"import os, time
from illumo_flow.core import Routing

calls = 0

def double(payload):
    return payload * 2

def remember(payload, ctx):
    ctx.setdefault("seen", []).append(payload)
    ctx["user"]["name"] = ctx["user"]["name"].upper()
    del ctx["scratch"]
    print("remembered", payload)
    return {"kept": payload}

def counted(payload):
    global calls
    calls += 1
    return {"calls": calls, "pid": os.getpid()}

def flaky(payload):
    global calls
    calls += 1
    if calls < 2:
        raise ValueError(f"not yet ({calls})")
    return "steady"

def with_delta(payload):
    return ("out", {"flag": True})

def nothing(payload):
    return None

def route(ctx, payload):
    if ctx["score"] > 0.5:
        return [(Routing("high", 0.9, "score above half"), {"score": ctx["score"]}), Routing("audit")]
    return Routing("low")

def two_routes(payload):
    return [Routing("audit", 0.5, "both"), Routing("low")]

def not_a_route(payload):
    return "high"

def unjsonable(payload):
    return {1, 2}

def slow(payload):
    time.sleep(30)
"#;

/// Runs `illumo run FILE -q --tracer none` in `dir`, with `extra` arguments.
fn run_file(dir: &crate::support::TempDir, file: &str, extra: &[&str]) -> crate::support::Output {
    Illumo::new()
        .in_dir(dir.path())
        .args(["run", file, "-q", "--tracer", "none"])
        .args(extra)
        .run()
}

/// Writes `funcs.py` next to the flow and runs it with `extra` args.
fn run(flow: &str, extra: &[&str]) -> crate::support::Output {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("funcs.py"), MODULE).unwrap();
    let path = illumo.flow_file(flow);
    illumo
        .args(["run", &path, "--tracer", "none", "--quiet"])
        .args(extra)
        .run()
}

#[test]
fn functions_get_the_payload_or_ctx_as_their_parameters_ask() {
    let flow = "flow:
  nodes:
    twice:
      type: FunctionNode
      setting: {callable: funcs.double}
      inputs: 21
      outputs: $ctx.doubled
    keep:
      type: FunctionNode
      setting: {callable: funcs.remember}
    delta: {type: FunctionNode, setting: {callable: funcs.with_delta}, outputs: $ctx.delta_out}
    pass: {type: FunctionNode, setting: {callable: funcs.nothing}, outputs: $ctx.passed}
  edges:
    - twice >> keep >> delta >> pass
";
    let ctx = run(flow, &["-c", r#"{"user": {"name": "ada"}, "scratch": 1}"#])
        .success()
        .ctx();
    assert_eq!(ctx["doubled"], 42);
    assert_eq!(
        ctx["seen"],
        json!([42]),
        "the function's change to ctx is written"
    );
    assert_eq!(ctx["user"], json!({"name": "ADA"}));
    assert_eq!(
        ctx["scratch"],
        json!(null),
        "a key it deleted is written as null"
    );
    assert_eq!(ctx["payloads"]["keep"], json!({"kept": 42}));
    assert_eq!(
        (&ctx["delta_out"], &ctx["flag"]),
        (&json!("out"), &json!(true))
    );
    assert_eq!(
        ctx["passed"], "out",
        "a function returning None passes its input on"
    );
}

#[test]
fn one_worker_serves_every_call_of_a_run() {
    let flow = "flow:
  nodes:
    first: {type: FunctionNode, setting: {callable: funcs.counted}, outputs: $ctx.first}
    second: {type: FunctionNode, setting: {callable: funcs.counted}, outputs: $ctx.second}
  edges:
    - first >> second
";
    let ctx = run(flow, &[]).success().ctx();
    assert_eq!(ctx["first"]["calls"], 1);
    assert_eq!(
        ctx["second"]["calls"], 2,
        "module state lives on between calls"
    );
    assert_eq!(ctx["first"]["pid"], ctx["second"]["pid"]);
}

#[test]
fn a_routing_rule_picks_targets_and_gives_each_its_payload() {
    let flow = "flow:
  nodes:
    decide: {type: CustomRoutingNode, setting: {routing_rule: funcs.route}, inputs: {score: $ctx.score}}
    high: {type: FunctionNode, setting: {callable: funcs.nothing}, outputs: $ctx.high}
    audit: {type: Set, setting: {value: audited}, outputs: $ctx.audit}
    low: {type: Set, setting: {value: low}, outputs: $ctx.low}
  edges:
    - decide >> (high | audit | low)
";
    let ctx = run(flow, &["-c", r#"{"score": 0.8}"#]).success().ctx();
    assert_eq!(ctx["high"], json!({"score": 0.8}));
    assert_eq!(ctx["audit"], "audited");
    assert_eq!(ctx["low"], json!(null));
    assert_eq!(
        ctx["routing"]["decide"],
        json!({"target": ["high", "audit"], "confidence": 0.9, "reason": "score above half"})
    );
    assert_eq!(
        ctx["payloads"]["decide"],
        json!({"high": {"score": 0.8}, "audit": {"score": 0.8}})
    );
    let ctx = run(flow, &["-c", r#"{"score": 0.2}"#]).success().ctx();
    assert_eq!((&ctx["low"], &ctx["high"]), (&json!("low"), &json!(null)));
    // Two Routings are two routes, not a route and its payload.
    let two = flow.replace("funcs.route", "funcs.two_routes");
    let ctx = run(&two, &["-c", r#"{"score": 0.2}"#]).success().ctx();
    assert_eq!(
        (&ctx["audit"], &ctx["low"], &ctx["high"]),
        (&json!("audited"), &json!("low"), &json!(null))
    );
    assert_eq!(
        ctx["routing"]["decide"],
        json!({"target": ["audit", "low"], "confidence": 0.5, "reason": "both"})
    );
}

/// An illumo-flow flow finds its modules next to the flow file even when run from another
/// folder, and `python_path` (one folder or a list) is relative to the flow file.
#[test]
fn an_illumo_flow_flow_imports_from_its_own_folder_run_from_anywhere() {
    let dir = crate::support::TempDir::new();
    dir.write("flows/mods.py", "def one(payload):\n    return 1\n");
    dir.write("flows/lib/libmod.py", "def two(payload):\n    return 2\n");
    dir.write(
        "flows/flow.yaml",
        "flow:\n  entry: a\n  nodes:\n    a:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.one}, outputs: ctx.a}\n    b:\n      type: illumo_flow.core.FunctionNode\n      callable: libmod.two\n      setting: {python_path: lib}\n      context: {outputs: ctx.b}\n  edges:\n    - a >> b\n",
    );
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    let out = Illumo::new()
        .in_dir(&dir.path().join("elsewhere"))
        .args(["run", "../flows/flow.yaml", "-q", "--tracer", "none"])
        .run();
    let ctx = out.success().ctx();
    assert_eq!((&ctx["a"], &ctx["b"]), (&json!(1), &json!(2)));
}

#[test]
fn an_exception_is_retried_and_its_traceback_traced() {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("funcs.py"), MODULE).unwrap();
    let db = illumo.dir().join("trace.db");
    let path = illumo.flow_file(
        "flow:\n  nodes:\n    f:\n      type: FunctionNode\n      setting: {callable: funcs.flaky}\n      policy: {retry: {max_attempts: 2}}\n      outputs: $ctx.f\n",
    );
    let out = illumo
        .args(["run", &path, "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    assert_eq!(out.ctx()["f"], "steady");
    let traceback = sqlite3(
        &db,
        "SELECT json_extract(e.attributes, '$.traceback') FROM events e WHERE e.name = 'function.exception'",
    );
    assert!(
        traceback.starts_with("Traceback (most recent call last):\n  File \""),
        "{traceback}"
    );
    assert!(
        traceback.ends_with("funcs.py\", line 25, in flaky\n    raise ValueError(f\"not yet ({calls})\")\nValueError: not yet (1)\n\n"),
        "{traceback}"
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT json_extract(attributes, '$.error') FROM events WHERE name = 'node.retry'"
        ),
        "`funcs.flaky` raised ValueError: not yet (1)\n"
    );
}

#[test]
fn printed_output_goes_to_the_trace_not_to_stdout() {
    let illumo = Illumo::new();
    std::fs::write(illumo.dir().join("funcs.py"), MODULE).unwrap();
    let db = illumo.dir().join("trace.db");
    let path = illumo.flow_file(
        "flow:\n  nodes:\n    keep: {type: FunctionNode, setting: {callable: funcs.remember}, inputs: 7}\n",
    );
    let out = illumo
        .args(["run", &path, "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .args(["-c", r#"{"user": {"name": "a"}, "scratch": 0}"#])
        .run()
        .success();
    assert!(!out.stdout.contains("remembered"), "{}", out.stdout);
    assert_eq!(
        sqlite3(
            &db,
            "SELECT attributes FROM events WHERE name = 'function.output'"
        ),
        "{\"stdout\":\"remembered 7\\n\",\"stderr\":\"\"}\n"
    );
}

#[test]
fn what_cannot_run_fails_with_its_reason() {
    let cases = [
        ("funcs.not_a_route", "CustomRoutingNode", "routing_rule", "`funcs.not_a_route` must return Routing decisions (Routing, (Routing, payload) or a list of them), not `high`"),
        ("funcs.unjsonable", "FunctionNode", "callable", "`funcs.unjsonable`: the function returned a value that is not JSON: Object of type set is not JSON serializable"),
        ("funcs.missing", "FunctionNode", "callable", "cannot import `funcs.missing`: ImportError: module `funcs` has no `missing` (sys.path: "),
        ("nowhere.fn", "FunctionNode", "callable", "cannot import `nowhere.fn`: ModuleNotFoundError: No module named 'nowhere' (sys.path: "),
    ];
    for (callable, node_type, key, why) in cases {
        let flow = format!(
            "flow:\n  nodes:\n    f:\n      type: {node_type}\n      setting: {{{key}: {callable}}}\n      policy: {{retry: {{max_attempts: 3}}}}\n"
        );
        let out = run(&flow, &[]).code(1);
        let first = out.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("error: node `f` failed on attempt 1 of 3: {why}")),
            "{first}"
        );
        assert_eq!(
            out.ctx()["errors"].as_array().unwrap().len(),
            1,
            "not retried"
        );
    }
}

#[test]
fn a_timeout_kills_the_worker_and_the_next_call_gets_a_new_one() {
    let flow = "flow:
  nodes:
    before: {type: FunctionNode, setting: {callable: funcs.counted}, outputs: $ctx.before}
    stuck:
      type: FunctionNode
      setting: {callable: funcs.slow}
      policy: {timeout: 1s, on_error: continue}
    after: {type: FunctionNode, setting: {callable: funcs.counted}, outputs: $ctx.after}
  edges:
    - before >> stuck >> after
";
    let ctx = run(flow, &[]).success().ctx();
    assert_eq!(ctx["errors"][0]["timed_out"], true);
    assert_eq!(
        ctx["after"]["calls"], 1,
        "a fresh worker: module state started over"
    );
    assert_ne!(ctx["after"]["pid"], ctx["before"]["pid"]);
}

#[test]
fn an_import_path_of_the_wrong_shape_is_a_load_error() {
    let illumo = Illumo::new();
    let path = illumo.flow_file(
        "flow:\n  nodes:\n    f: {type: FunctionNode, setting: {callable: 'funcs:double'}}\n",
    );
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr.replace(&path, "flow.yaml"),
        "error: node `f`: `funcs:double` is not an import path; write `package.module.function`
 --> flow.yaml:3:50
  |
3 |     f: {type: FunctionNode, setting: {callable: 'funcs:double'}}
  |                                                  ^^^^^^^^^^^^

error: flow.yaml has 1 error
"
    );
}

/// In a flow written for illumo-flow, `ctx.errors[].exception` and `failed_exception_type`
/// name the Python exception's class, as illumo-flow records them.
#[test]
fn illumo_flow_errors_name_the_python_exception_class() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "funcs.py",
        "def bad(payload):\n    raise ValueError('no good')\n",
    );
    dir.write(
        "flow.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: funcs.bad}}\n  policy: {fail_fast: false, on_error: {action: continue}}\n",
    );
    let out = run_file(&dir, "flow.yaml", &[]);
    let ctx = out.ctx();
    assert_eq!(ctx["errors"][0]["exception"], "ValueError", "{ctx}");
    assert_eq!(ctx["failed_exception_type"], "ValueError");
    assert_eq!(ctx["errors"][0]["node_id"], "f");
}

const LOOP_FUNCS: &str = "def todo(payload, ctx):\n    return ctx['request']\n\ndef visit(payload, ctx):\n    ctx.setdefault('seen', []).append(payload)\n    return payload\n";

/// A flow with illumo-flow's `LoopNode`, fed by `prep` (the `request` map, or its list
/// with `items_key: todo`).
fn loop_flow(loop_settings: &str) -> String {
    format!(
        "flow:
  entry: prep
  nodes:
    prep:
      type: illumo_flow.core.FunctionNode
      context:
        inputs: {{callable: funcs.todo}}
    loop:
      type: illumo_flow.core.LoopNode
      {loop_settings}
    worker:
      type: illumo_flow.core.FunctionNode
      context:
        inputs: {{callable: funcs.visit}}
        outputs: $ctx.last
  edges:
    - prep >> loop
    - loop >> worker
    - loop >> loop
"
    )
}

fn run_loop(flow: &str) -> crate::support::Output {
    let dir = crate::support::TempDir::new();
    dir.write("funcs.py", LOOP_FUNCS);
    dir.write("flow.yaml", flow);
    Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args(["-c", r#"{"request": {"todo": ["a", "b", "c"]}}"#])
        .run()
}

/// illumo-flow's LoopNode: one item per visit to the body, the rest back to itself, each
/// body run seeing what the one before wrote. The final ctx is the one illumo-flow 0.1.5's
/// own `illumo run` gives for this flow (recorded under Python 3.10), key for key.
#[test]
fn an_illumo_flow_loop_node_visits_its_body_once_per_item_in_order() {
    let out = run_loop(&loop_flow(
        "body_route: worker\n      items_key: todo\n      enumerate_items: true",
    ));
    let step = |node: &str, status: &str| json!({"node_id": node, "status": status});
    let mut steps = vec![step("prep", "start"), step("prep", "success")];
    for _ in 0..3 {
        steps.extend([step("loop", "start"), step("loop", "success")]);
        steps.extend([step("worker", "start"), step("worker", "success")]);
    }
    assert_eq!(
        out.success().ctx(),
        json!({
            "request": {"todo": ["a", "b", "c"]},
            "steps": steps,
            "joins": {},
            "errors": [],
            "payloads": {
                "prep": {"todo": ["a", "b", "c"]},
                "loop": {"worker": {"item": "c", "index": 2}},
                "worker": {"item": "c", "index": 2}
            },
            "routing": {"loop": [{"target": "worker"}]},
            "seen": [
                {"item": "a", "index": 0},
                {"item": "b", "index": 1},
                {"item": "c", "index": 2}
            ],
            "last": {"item": "c", "index": 2}
        })
    );
}

#[test]
fn a_loop_node_over_a_map_needs_items_key_and_a_body_that_is_a_node() {
    let out = run_loop(&loop_flow("body_route: worker"));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `loop` failed on attempt 1 of 1: LoopNode payload must be a sequence, not a mapping")
    );
    assert_eq!(out.ctx()["failed_exception_type"], "FlowError");

    let out = run_loop(&loop_flow("body_route: wroker\n      items_key: todo"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with(
            "error: node `loop` routes to `wroker`, which is not a node
  --> flow.yaml:10:19
   |
10 |       body_route: wroker
   |                   ^^^^^^ did you mean `worker`?
"
        ),
        "{}",
        out.stderr
    );
}

/// illumo-flow's `callable_expression`: `callable: ctx.handler` names the function through
/// ctx when the node runs. The final ctx is the one illumo-flow 0.1.5's own CLI gives.
#[test]
fn a_function_named_by_a_ctx_path_is_looked_up_when_the_node_runs() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "funcs.py",
        "def shout(payload):\n    return str(payload).upper()\n",
    );
    dir.write(
        "flow.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context:\n        inputs: {callable: ctx.handler, text: ctx.text}\n        outputs: ctx.out\n",
    );
    let out = run_file(
        &dir,
        "flow.yaml",
        &["-c", r#"{"handler": "funcs.shout", "text": "Hi"}"#],
    );
    assert_eq!(
        out.success().ctx(),
        json!({"handler": "funcs.shout", "text": "Hi",
            "steps": [{"node_id": "f", "status": "start"}, {"node_id": "f", "status": "success"}],
            "joins": {}, "errors": [], "payloads": {"f": "HI"}, "routing": {}, "out": "HI"})
    );
}

/// A function named by data (ctx or the input map) must be one the flow's own modules
/// define: ctx cannot reach the standard library, installed packages, modules outside the
/// flow's folders, or a function a flow module merely imports. A refused module is never
/// imported, so its code does not run.
#[test]
fn a_function_named_by_data_must_be_one_of_the_flows_own_modules() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "flow/funcs.py",
        "from os import getcwd\n\ndef shout(payload):\n    return str(payload).upper()\n",
    );
    dir.write(
        "flow/flow.yaml",
        "flow:\n  nodes:\n    f:\n      type: FunctionNode\n      inputs: {callable: $ctx.handler, text: $ctx.text}\n",
    );
    // A module reachable on PYTHONPATH but outside the flow's folders, that leaves a mark
    // when imported.
    let mark = dir.path().join("imported");
    dir.write(
        "elsewhere/evil.py",
        &format!(
            "open({:?}, 'w').write('ran')\ndef run(payload):\n    return 'escaped'\n",
            mark.display().to_string()
        ),
    );
    let run = |handler: &str| {
        Illumo::new()
            .in_dir(&dir.path().join("flow"))
            .env(
                "PYTHONPATH",
                &dir.path().join("elsewhere").display().to_string(),
            )
            .args(["run", "flow.yaml", "-q", "--tracer", "none"])
            .args(["-c", &json!({"handler": handler, "text": "Hi"}).to_string()])
            .run()
    };
    assert_eq!(run("funcs.shout").success().ctx()["payloads"]["f"], "HI");
    let rule = "such a function must be defined in a module under the flow's folder, its python_path or the working folder (not Python's own modules or installed packages)";
    for (handler, why) in [
        ("os.system", "`os` is not one of the flow's own modules"),
        (
            "subprocess.getoutput",
            "`subprocess` is not one of the flow's own modules",
        ),
        ("evil.run", "`evil` is not one of the flow's own modules"),
        (
            "funcs.getcwd",
            "`funcs.getcwd` is not defined in `funcs` (it comes from `posix`)",
        ),
    ] {
        let out = run(handler);
        assert_eq!(out.code, 1, "{handler}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().next().unwrap_or_default(),
            format!("error: node `f` failed on attempt 1 of 1: `{handler}` was named by ctx or the input, and {why}: {rule}")
        );
    }
    assert!(!mark.exists(), "the refused module was imported");
}

/// illumo-flow's policy meanings hold for a flow-level `policy:` and for `--policy` too,
/// not only on nodes: `max_attempts` counts retries (0 is none), `fail_fast: false` goes on
/// downstream. The `--policy '{"fail_fast": false}'` run gives illumo-flow 0.1.5's own
/// final ctx, key for key.
#[test]
fn illumo_flow_policies_mean_the_same_on_the_flow_and_on_the_command_line() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "N = {'n': 0}\n\ndef flaky(payload):\n    N['n'] += 1\n    if N['n'] < 3:\n        raise ValueError('flaky %d' % N['n'])\n    return N['n']\n\ndef boom(payload):\n    return 1/0\n\ndef ident(payload):\n    return payload\n",
    );
    let flaky = "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.flaky}, outputs: $ctx.f}\n";
    dir.write("flaky.yaml", flaky);
    dir.write(
        "flaky_policy.yaml",
        &flaky.replace(
            "  entry: f\n",
            "  entry: f\n  policy: {retry: {max_attempts: 2, delay: 0}}\n",
        ),
    );
    dir.write(
        "boom.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.boom, payload: $ctx.x}, outputs: $ctx.f}\n    g:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.ident}, outputs: $ctx.g}\n  edges:\n    - f >> g\n",
    );
    let run = |flow: &str, extra: &[&str]| run_file(&dir, flow, extra);
    // Two retries after the first attempt: the third call succeeds.
    assert_eq!(run("flaky_policy.yaml", &[]).success().ctx()["f"], 3);
    let retry = r#"{"retry": {"max_attempts": 2, "delay": 0}}"#;
    assert_eq!(
        run("flaky.yaml", &["--policy", retry]).success().ctx()["f"],
        3
    );
    let none = run(
        "flaky.yaml",
        &["--policy", r#"{"retry": {"max_attempts": 0}}"#],
    );
    assert_eq!(
        (none.code, none.stderr.lines().next().unwrap_or_default()),
        (
            1,
            "error: node `f` failed on attempt 1 of 1: `mods.flaky` raised ValueError: flaky 1"
        )
    );
    let on = run(
        "boom.yaml",
        &["--policy", r#"{"fail_fast": false}"#, "-c", r#"{"x": 1}"#],
    );
    assert_eq!(
        on.ctx(),
        json!({"x": 1, "steps": [{"node_id": "f", "status": "start"}, {"node_id": "f", "status": "failed", "message": "division by zero"}, {"node_id": "f", "status": "continue"}, {"node_id": "g", "status": "start"}, {"node_id": "g", "status": "success"}], "joins": {}, "errors": [{"node_id": "f", "exception": "ZeroDivisionError", "message": "division by zero"}], "payloads": {"f": 1, "g": 1}, "routing": {}, "failed_node_id": "f", "failed_exception_type": "ZeroDivisionError", "failed_message": "division by zero", "f": 1, "g": 1})
    );
    // The levels merge field by field before `fail_fast: false` means going on: a node's
    // own `fail_fast: true` stops under `--policy '{"fail_fast": false}'`, and its
    // `on_error: stop` goes on under it, as in illumo-flow.
    let with_node = |policy: &str| {
        let text = std::fs::read_to_string(dir.path().join("boom.yaml")).unwrap();
        let text = text.replace(
            "outputs: $ctx.f}\n",
            &format!("outputs: $ctx.f}}\n      setting: {{policy: {policy}}}\n"),
        );
        dir.write("node.yaml", &text);
        run(
            "node.yaml",
            &["--policy", r#"{"fail_fast": false}"#, "-c", r#"{"x": 1}"#],
        )
    };
    assert_eq!(with_node("{fail_fast: true}").code, 1);
    assert_eq!(with_node("{on_error: stop}").success().ctx()["g"], 1);
    // A goto on the command line, to a node of the flow.
    let goto = run(
        "boom.yaml",
        &[
            "--policy",
            r#"{"on_error": {"action": "GOTO", "target": "g"}}"#,
            "-c",
            r#"{"x": 1}"#,
        ],
    );
    assert_eq!(
        goto.success().ctx()["steps"][2],
        json!({"node_id": "f", "status": "goto", "target": "g"})
    );
    // Counts as Python's int() reads them: "2" is 2 retries, 1.9 is one.
    assert_eq!(
        run(
            "flaky.yaml",
            &["--policy", r#"{"retry": {"max_attempts": "2"}}"#]
        )
        .success()
        .ctx()["f"],
        3
    );
    let once = run("flaky.yaml", &["--policy", r#"{"retry": 1.9}"#]);
    assert_eq!(once.code, 1, "two attempts, and flaky needs three");
    assert!(
        once.stderr
            .starts_with("error: node `f` failed on attempt 2 of 2:"),
        "{}",
        once.stderr
    );
    let nowhere = run(
        "boom.yaml",
        &[
            "--policy",
            r#"{"on_error": {"action": "goto", "target": "zz"}}"#,
        ],
    );
    assert_eq!(
        (nowhere.code, nowhere.stderr.as_str()),
        (2, "error: --policy: `on_error: goto` names `zz`, which is not a node of the flow (its nodes: f, g)\n")
    );
}

/// In an illumo-flow flow a path that is not in ctx is null (a template renders it as
/// nothing, an unset variable is ""), as illumo-flow 0.1.5 reads it: its own final ctx.
#[test]
fn an_illumo_flow_flow_reads_a_missing_path_as_null() {
    let dir = crate::support::TempDir::new();
    dir.write("m.py", "def show(payload):\n    return payload\n");
    dir.write(
        "f.yaml",
        "flow:\n  entry: a\n  nodes:\n    a:\n      type: illumo_flow.core.FunctionNode\n      context:\n        inputs: {callable: m.show, text: 'hi {{ ctx.user.name }}!', e: $env.ILLUMO_TEST_UNSET, n: ctx.no.where}\n        outputs: ctx.out\n",
    );
    let out = run_file(&dir, "f.yaml", &[]);
    assert_eq!(
        out.success().ctx(),
        json!({"steps": [{"node_id": "a", "status": "start"}, {"node_id": "a", "status": "success"}], "joins": {}, "errors": [], "payloads": {"a": {"text": "hi !", "e": "", "n": null}}, "routing": {}, "out": {"text": "hi !", "e": "", "n": null}})
    );
}

/// An illumo-flow routing node with a null input passes its output map on to a route that
/// has no payload, as illumo-flow 0.1.5 does (its own final ctx).
#[test]
fn an_illumo_flow_route_without_payload_from_a_null_input_passes_the_map_on() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "from illumo_flow.core import Routing\n\ndef route(payload, ctx):\n    return Routing('b', 0.9, 'because')\n\ndef ident(payload):\n    return payload\n",
    );
    dir.write(
        "flow.yaml",
        "flow:\n  entry: r\n  nodes:\n    r:\n      type: illumo_flow.core.CustomRoutingNode\n      context: {inputs: {routing_rule: mods.route, payload: $ctx.x}}\n    a:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.ident}, outputs: $ctx.a}\n    b:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.ident}, outputs: $ctx.b}\n  edges:\n    - r >> (a | b)\n",
    );
    let out = run_file(&dir, "flow.yaml", &[]);
    assert_eq!(
        out.success().ctx(),
        json!({"steps": [{"node_id": "r", "status": "start"}, {"node_id": "r", "status": "success"}, {"node_id": "b", "status": "start"}, {"node_id": "b", "status": "success"}], "joins": {}, "errors": [], "payloads": {"r": {"b": null}, "b": {"b": null}}, "routing": {"r": [{"target": "b", "confidence": 0.9, "reason": "because"}]}, "b": {"b": null}})
    );
}

/// A node with no `type` and a `callable` beside it is an illumo-flow FunctionNode, as
/// illumo-flow reads it: the flow is in its vocabulary, with its retry count (two
/// retries: the third call succeeds) and its final ctx.
#[test]
fn a_node_without_type_but_with_a_callable_is_an_illumo_flow_function() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "N = {'n': 0}\n\ndef flaky(payload):\n    N['n'] += 1\n    if N['n'] < 3:\n        raise ValueError('not yet')\n    return N['n']\n",
    );
    dir.write(
        "bare.yaml",
        "flow:\n  entry: a\n  nodes:\n    a:\n      callable: mods.flaky\n      setting:\n        policy:\n          retry: {max_attempts: 2}\n",
    );
    let out = run_file(&dir, "bare.yaml", &[]);
    assert_eq!(
        out.success().ctx(),
        json!({"steps": [{"node_id": "a", "status": "start"}, {"node_id": "a", "status": "success"}], "joins": {}, "errors": [], "payloads": {"a": 3}, "routing": {}})
    );
    // The function given in `setting:` alone, with no type: the same (illumo's nodes
    // always name their type).
    dir.write(
        "in_setting.yaml",
        "flow:\n  entry: a\n  nodes:\n    a:\n      setting: {callable: mods.flaky, policy: {retry: 2}}\n",
    );
    let out = run_file(&dir, "in_setting.yaml", &[]);
    assert_eq!(out.success().ctx()["payloads"]["a"], 3);
}

/// illumo-flow's `FLOW_DEBUG_MAX_STEPS`: an illumo-flow flow starts no node after that
/// many and ends as it is, exit 0. Steps, routing and what the nodes wrote are those
/// illumo-flow 0.1.5 gives with the same variable.
#[test]
fn flow_debug_max_steps_stops_an_illumo_flow_flow_quietly() {
    let dir = crate::support::TempDir::new();
    dir.write("funcs.py", LOOP_FUNCS);
    dir.write(
        "flow.yaml",
        &loop_flow("body_route: worker\n      items_key: todo\n      enumerate_items: true"),
    );
    let out = Illumo::new()
        .env("FLOW_DEBUG_MAX_STEPS", "4")
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args(["-c", r#"{"request": {"todo": ["a", "b", "c"]}}"#])
        .run();
    let ctx = out.success().ctx();
    let step = |node: &str, status: &str| json!({"node_id": node, "status": status});
    assert_eq!(
        ctx["steps"],
        json!([
            step("prep", "start"),
            step("prep", "success"),
            step("loop", "start"),
            step("loop", "success"),
            step("worker", "start"),
            step("worker", "success"),
            step("loop", "start"),
            step("loop", "success")
        ])
    );
    assert_eq!(
        ctx["routing"]["loop"],
        json!([{"target": "worker"}, {"target": "loop"}])
    );
    assert_eq!(ctx["seen"], json!([{"item": "a", "index": 0}]));
}

/// An illumo-flow function changes the one ctx in place: what an attempt changed before
/// raising is there for the next attempt and stays after the last, and a key it deletes
/// is gone (illumo-flow 0.1.5 gives the same final ctx). Natively an attempt that raises
/// leaves nothing, and a deleted key is written as null.
#[test]
fn an_illumo_flow_functions_changes_to_ctx_survive_its_exceptions_and_deletions_delete() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "m.py",
        "def counted(payload, ctx):\n    ctx['attempts'] = ctx.get('attempts', 0) + 1\n    if ctx['attempts'] < 3:\n        raise RuntimeError('try again')\n    ctx.pop('tmp')\n    del ctx['cfg']['secret']\n    return ctx['attempts']\n\ndef gives_up(payload, ctx):\n    ctx.setdefault('tries', []).append(payload)\n    raise ValueError('no')\n",
    );
    dir.write(
        "old.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: m.counted, payload: $ctx.x}, outputs: $ctx.f}\n      setting: {policy: {retry: {max_attempts: 2}}}\n    g:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: m.gives_up, payload: $ctx.x}}\n      setting: {policy: {retry: {max_attempts: 1}, fail_fast: false, on_error: {action: continue}}}\n  edges:\n    - f >> g\n",
    );
    dir.write(
        "new.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: FunctionNode\n      setting: {callable: m.counted}\n      inputs: $ctx.x\n      outputs: $ctx.f\n      policy: {retry: {max_attempts: 3}}\n",
    );
    let run = |file: &str| {
        run_file(
            &dir,
            file,
            &[
                "--context",
                r#"{"x": 7, "tmp": 1, "cfg": {"secret": "s", "keep": 2}}"#,
            ],
        )
    };
    assert_eq!(
        run("old.yaml").success().ctx(),
        json!({"x": 7, "cfg": {"keep": 2}, "steps": [{"node_id": "f", "status": "start"}, {"node_id": "f", "status": "success"}, {"node_id": "g", "status": "start"}, {"node_id": "g", "status": "failed", "message": "no"}, {"node_id": "g", "status": "continue"}], "joins": {}, "errors": [{"node_id": "g", "exception": "ValueError", "message": "no"}], "payloads": {"f": 3, "g": 7}, "routing": {}, "attempts": 3, "f": 3, "tries": [7, 7], "failed_node_id": "g", "failed_exception_type": "ValueError", "failed_message": "no"})
    );
    // Natively each attempt starts from the same ctx, so the third never comes.
    let new = run("new.yaml");
    assert_eq!(new.code, 1, "{}", new.stderr);
    assert!(
        new.stderr
            .contains("`m.counted` raised RuntimeError: try again"),
        "{}",
        new.stderr
    );
}

/// A timeout in an illumo-flow flow is worded as illumo-flow words it, in ctx.steps and
/// ctx.errors (the same final ctx as illumo-flow 0.1.5 gives).
#[test]
fn an_illumo_flow_timeout_is_recorded_in_illumo_flows_words() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "t.py",
        "import time\ndef slow(payload):\n    time.sleep(30)\ndef ident(payload):\n    return payload\n",
    );
    dir.write(
        "to.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: t.slow, payload: $ctx.x}, outputs: $ctx.f}\n      setting: {policy: {timeout: 300ms, retry: {max_attempts: 0}, fail_fast: false}}\n    g:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: t.ident}, outputs: $ctx.g}\n  edges:\n    - f >> g\n",
    );
    let out = run_file(&dir, "to.yaml", &["--context", r#"{"x": 1}"#]);
    let said = "Node 'f' timed out after 0.3 seconds";
    assert_eq!(
        out.success().ctx(),
        json!({"x": 1, "steps": [{"node_id": "f", "status": "start"}, {"node_id": "f", "status": "failed", "message": said}, {"node_id": "f", "status": "continue"}, {"node_id": "g", "status": "start"}, {"node_id": "g", "status": "success"}], "joins": {}, "errors": [{"node_id": "f", "exception": "TimeoutError", "message": said}], "payloads": {"f": 1, "g": 1}, "routing": {}, "failed_node_id": "f", "failed_exception_type": "TimeoutError", "failed_message": said, "f": 1, "g": 1})
    );
}

/// illumo-flow's lists of inputs and outputs: inputs by alias (a path's last key), a map
/// item's keys, the one value when there is one; outputs to each target, a `{field: path}`
/// target getting that field, or the whole output where the field is missing (the same
/// final ctx as illumo-flow 0.1.5 gives). Natively a list of outputs works too, and a
/// missing field is an error.
#[test]
fn illumo_flow_lists_of_inputs_and_outputs_read_and_write_as_there() {
    let dir = crate::support::TempDir::new();
    dir.write("i.py", "def ident(payload):\n    return payload\n");
    dir.write(
        "f.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      callable: i.ident\n      context:\n        inputs: [$ctx.x, {b: ctx.cfg.y}, $env.ILLUMO_TEST_UNSET]\n        outputs: {x: $ctx.fx, missing: {type: expression, value: ctx.whole}, b: ctx.fb}\n    g:\n      type: illumo_flow.core.FunctionNode\n      callable: i.ident\n      context:\n        inputs: [ctx.cfg.y]\n        outputs: [{x: ctx.gx}, ctx.g2]\n  edges: [f >> g]\n",
    );
    dir.write(
        "native.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: FunctionNode\n      setting: {callable: i.ident}\n      inputs: {x: $ctx.x}\n      outputs: [$ctx.a, {x: $ctx.b}, {y: $ctx.c}]\n",
    );
    let run = |file: &str| run_file(&dir, file, &["--context", r#"{"x": 1, "cfg": {"y": 2}}"#]);
    let whole = json!({"x": 1, "b": 2, "ILLUMO_TEST_UNSET": ""});
    assert_eq!(
        run("f.yaml").success().ctx(),
        json!({"x": 1, "cfg": {"y": 2}, "steps": [{"node_id": "f", "status": "start"}, {"node_id": "f", "status": "success"}, {"node_id": "g", "status": "start"}, {"node_id": "g", "status": "success"}], "joins": {}, "errors": [], "payloads": {"f": whole, "g": 2}, "routing": {}, "fx": 1, "whole": whole, "fb": 2, "gx": 2, "g2": 2})
    );
    let native = run("native.yaml");
    assert_eq!(native.code, 1);
    assert!(
        native.stderr.starts_with(
            "error: node `f` failed on attempt 1 of 1: the output has no field `y` for `$ctx.c`; it is {\"x\":1}\n"
        ),
        "{}",
        native.stderr
    );
    let ctx: serde_json::Value = serde_json::from_str(&native.stdout).unwrap();
    assert_eq!((&ctx["a"], &ctx["b"]), (&json!({"x": 1}), &json!(1)));
}

/// illumo-flow keeps a queued node's input in ctx.payloads.<id> until its output replaces
/// it, so a function sees its own input there (a join's: the parents' map), as in
/// illumo-flow 0.1.5. Natively ctx.payloads holds outputs only.
#[test]
fn an_illumo_flow_node_finds_its_input_in_ctx_payloads_while_it_runs() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "p.py",
        "def look(payload, ctx):\n    return {'mine': ctx['payloads'].get('g'), 'in': payload}\ndef ident(payload):\n    return payload\n",
    );
    dir.write(
        "f.yaml",
        "flow:\n  entry: a\n  nodes:\n    a: {type: illumo_flow.core.FunctionNode, context: {inputs: {callable: p.ident, v: $ctx.x}, outputs: $ctx.a}}\n    b: {type: illumo_flow.core.FunctionNode, context: {inputs: {callable: p.ident}, outputs: $ctx.b}}\n    g: {type: illumo_flow.core.FunctionNode, context: {inputs: {callable: p.look}, outputs: $ctx.g}}\n  edges: [a >> b, (a & b) >> g]\n",
    );
    dir.write(
        "native.yaml",
        "flow:\n  entry: a\n  nodes:\n    a: {type: FunctionNode, setting: {callable: p.ident}, inputs: $ctx.x}\n    g: {type: FunctionNode, setting: {callable: p.look}, outputs: $ctx.g}\n  edges: [a >> g]\n",
    );
    let run = |file: &str| {
        Illumo::new()
            .in_dir(dir.path())
            .args([
                "run",
                file,
                "-q",
                "--tracer",
                "none",
                "--context",
                r#"{"x": 5}"#,
            ])
            .run()
            .success()
            .ctx()
    };
    let joined = json!({"a": 5, "b": 5});
    let g = json!({"mine": joined, "in": joined});
    assert_eq!(
        run("f.yaml"),
        json!({"x": 5, "steps": [{"node_id": "a", "status": "start"}, {"node_id": "a", "status": "success"}, {"node_id": "b", "status": "start"}, {"node_id": "b", "status": "success"}, {"node_id": "g", "status": "start"}, {"node_id": "g", "status": "success"}], "joins": {"g": joined}, "errors": [], "payloads": {"a": 5, "b": 5, "g": g}, "routing": {}, "a": 5, "b": 5, "g": g})
    );
    assert_eq!(run("native.yaml")["g"], json!({"mine": null, "in": 5}));
}

/// An illumo-flow template prints a boolean as Python does, `True`/`False` (illumo-flow
/// 0.1.5 renders this very string); natively it is JSON's `true`/`false`.
#[test]
fn an_illumo_flow_template_prints_booleans_as_python_does() {
    let dir = crate::support::TempDir::new();
    dir.write("i.py", "def ident(payload):\n    return payload\n");
    let text = "ok={{ ctx.flag }} no={{ ctx.off }} n={{ ctx.n }} f={{ ctx.fl }} s={{ ctx.s }}";
    dir.write(
        "f.yaml",
        &format!("flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {{inputs: {{callable: i.ident, t: \"{text}\"}}, outputs: $ctx.f}}\n"),
    );
    dir.write(
        "native.yaml",
        &format!(
            "flow:\n  nodes:\n    f: {{type: Set, setting: {{value: \"{}\"}}, outputs: $ctx.f}}\n",
            text.replace("ctx.", "$ctx.")
        ),
    );
    let run = |file: &str| {
        run_file(
            &dir,
            file,
            &[
                "--context",
                r#"{"flag": true, "off": false, "n": 3, "fl": 1.5, "s": "str"}"#,
            ],
        )
        .success()
        .ctx()
    };
    assert_eq!(
        run("f.yaml")["f"],
        json!("ok=True no=False n=3 f=1.5 s=str")
    );
    assert_eq!(
        run("native.yaml")["f"],
        json!("ok=true no=false n=3 f=1.5 s=str")
    );
}

/// illumo-flow's goto and shared ctx, as illumo-flow 0.1.5 runs them: the goto's target
/// runs next; a goto to a node that finished (itself too) runs nothing more, though the
/// node's payload is set; branches write the same ctx path, one after the other.
#[test]
fn illumo_flow_gotos_run_next_or_not_at_all_and_branches_share_ctx() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "def ident(payload):\n    return payload\ndef boom(payload):\n    raise ValueError('boom %r' % (payload,))\ndef mark(payload, ctx):\n    ctx.setdefault('marks', []).append(payload)\n    return 'marked'\n",
    );
    let node = |id: &str, callable: &str, extra: &str| {
        format!("    {id}:\n      context: {{inputs: {{callable: mods.{callable}}}, outputs: $ctx.{id}}}\n{extra}")
    };
    let goto = |target: &str| {
        format!("      setting: {{policy: {{on_error: {{action: goto, target: {target}}}}}}}\n")
    };
    let flow = |nodes: Vec<String>, edges: &str| {
        format!("flow:\n  entry: s\n  nodes:\n    s:\n      context: {{inputs: {{callable: mods.mark, payload: $ctx.x}}, outputs: $ctx.s}}\n{}  edges: [{edges}]\n", nodes.concat())
    };
    let steps = |ctx: &serde_json::Value| crate::support::step_lines(&ctx["steps"]);
    let run = |text: &str| {
        dir.write("f.yaml", text);
        run_file(&dir, "f.yaml", &["--context", r#"{"x": 7}"#])
            .success()
            .ctx()
    };
    // The goto's target runs before the branch queued earlier.
    let ctx = run(&flow(
        vec![
            node("f", "boom", &goto("h")),
            node("h", "mark", ""),
            node("k", "mark", ""),
        ],
        "s >> f, s >> k",
    ));
    assert_eq!(
        steps(&ctx),
        [
            "s start",
            "s success",
            "f start",
            "f failed",
            "f goto",
            "h start",
            "h success",
            "k start",
            "k success"
        ]
    );
    // Three nodes appended to one list (s its input, h and k theirs, s's output).
    assert_eq!(ctx["marks"], json!([7, "marked", "marked"]));
    // Back to a node that finished: nothing runs again, and the flow ends well.
    let ctx = run(&flow(
        vec![node("f", "boom", &goto("s")), node("g", "ident", "")],
        "s >> f >> g",
    ));
    assert_eq!(
        steps(&ctx),
        ["s start", "s success", "f start", "f failed", "f goto"]
    );
    assert_eq!(ctx["payloads"]["s"], "marked");
    // To itself: the same, and its payload is the input it had.
    let ctx = run(&flow(
        vec![node("f", "boom", &goto("f")), node("g", "ident", "")],
        "s >> f >> g",
    ));
    assert_eq!(
        steps(&ctx),
        ["s start", "s success", "f start", "f failed", "f goto"]
    );
    assert_eq!(ctx["payloads"]["f"], "marked");
}

/// An illumo-flow routing node follows its decision along its own edges only, as
/// illumo-flow 0.1.5 does: no edges, and the branch ends; a target without an edge fails
/// the run; a rule that raises under `fail_fast: false` ends the branch when its input is
/// null, and fails the run otherwise (the input is no decision).
#[test]
fn an_illumo_flow_routing_node_routes_along_its_edges_only() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "from illumo_flow.core import Routing\ndef ident(payload):\n    return payload\ndef to_c(payload, ctx):\n    return Routing('c')\ndef boom(payload, ctx):\n    raise ValueError('bad rule')\n",
    );
    let flow = |rule: &str, policy: &str, edges: &str| {
        format!("flow:\n  entry: r\n  nodes:\n    r:\n      type: illumo_flow.core.CustomRoutingNode\n      context: {{inputs: {{routing_rule: mods.{rule}, payload: $ctx.x}}}}\n      setting: {{policy: {{{policy}}}}}\n    a: {{context: {{inputs: {{callable: mods.ident}}, outputs: $ctx.a}}}}\n    c: {{context: {{inputs: {{callable: mods.ident}}, outputs: $ctx.c}}}}\n  edges: [{edges}]\n")
    };
    let run = |text: &str, ctx: &str| {
        dir.write("f.yaml", text);
        Illumo::new()
            .in_dir(dir.path())
            .args(["run", "f.yaml", "-q", "--tracer", "none", "--context", ctx])
            .run()
    };
    let ctx = run(&flow("to_c", "", ""), r#"{"x": 1}"#).success().ctx();
    assert_eq!(
        (&ctx["routing"]["r"], ctx.get("c")),
        (&json!([{"target": "c"}]), None)
    );
    let out = run(&flow("to_c", "", "r >> a"), r#"{"x": 1}"#).code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some(
            "error: node `r` failed on attempt 1 of 1: Node 'r' returned unknown successors: ['c']"
        )
    );
    let ctx = run(&flow("boom", "fail_fast: false", "r >> (a | c)"), "{}")
        .success()
        .ctx();
    assert_eq!(
        (
            &ctx["routing"]["r"],
            &ctx["payloads"]["r"],
            ctx.get("a"),
            ctx.get("c")
        ),
        (&json!([]), &json!({}), None, None)
    );
    assert_eq!(
        ctx["steps"],
        json!([{"node_id": "r", "status": "start"}, {"node_id": "r", "status": "failed", "message": "bad rule"}, {"node_id": "r", "status": "continue"}])
    );
    let report = dir.path().join("report.json");
    dir.write("f.yaml", &flow("boom", "fail_fast: false", "r >> (a | c)"));
    // Its edges are followed: no warning says otherwise.
    let checked = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "f.yaml"])
        .run()
        .success();
    assert!(
        !checked.stderr.contains("never followed"),
        "{}",
        checked.stderr
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "f.yaml",
            "-q",
            "--tracer",
            "none",
            "--context",
            r#"{"x": "hello"}"#,
        ])
        .args(["--report-path", report.to_str().unwrap()])
        .run()
        .code(1);
    // The failure report's summary is why the run failed, as illumo-flow's is.
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        written["summary"],
        "RoutingNode must return Routing instances or (Routing, payload) tuples"
    );
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `r` failed on attempt 1 of 1: RoutingNode must return Routing instances or (Routing, payload) tuples")
    );
}

/// A Routing from an illumo-flow FunctionNode is an error there: only routing nodes route.
#[test]
fn an_illumo_flow_function_node_may_not_route() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "from illumo_flow.core import Routing\ndef rt(payload):\n    return Routing('b')\ndef ident(payload):\n    return payload\n",
    );
    dir.write(
        "f.yaml",
        "flow:\n  entry: s\n  nodes:\n    s: {context: {inputs: {callable: mods.rt, payload: $ctx.x}, outputs: $ctx.s}}\n    b: {context: {inputs: {callable: mods.ident}, outputs: $ctx.b}}\n  edges: [s >> b]\n",
    );
    let out = run_file(&dir, "f.yaml", &["--context", r#"{"x": 1}"#]).code(1);
    assert_eq!(
        out.ctx()["errors"],
        json!([{"node_id": "s", "exception": "FlowError", "message": "Node 's' returned a Routing result but is not a RoutingNode"}])
    );
}

/// A decision that names a target twice runs it once there, and ctx.routing keeps every
/// entry with its own confidence and reason (illumo-flow 0.1.5's final ctx).
#[test]
fn an_illumo_flow_decision_runs_a_target_once_and_records_each_entry() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "from illumo_flow.core import Routing\ndef ident(payload):\n    return payload\ndef dupconf(payload, ctx):\n    return [Routing('a', 0.1, 'r1'), (Routing('a', 0.9, 'r2'), 5), Routing('b', 0.5)]\n",
    );
    dir.write(
        "f.yaml",
        "flow:\n  entry: r\n  nodes:\n    r:\n      type: illumo_flow.core.CustomRoutingNode\n      context: {inputs: {routing_rule: mods.dupconf, payload: $ctx.x}}\n    a: {context: {inputs: {callable: mods.ident}, outputs: $ctx.a}}\n    b: {context: {inputs: {callable: mods.ident}, outputs: $ctx.b}}\n  edges: [r >> (a | b)]\n",
    );
    let ctx = run_file(&dir, "f.yaml", &["--context", r#"{"x": 1}"#])
        .success()
        .ctx();
    assert_eq!(
        ctx,
        json!({"x": 1, "steps": [{"node_id": "r", "status": "start"}, {"node_id": "r", "status": "success"}, {"node_id": "a", "status": "start"}, {"node_id": "a", "status": "success"}, {"node_id": "b", "status": "start"}, {"node_id": "b", "status": "success"}], "joins": {}, "errors": [], "payloads": {"r": {"a": 5, "b": 1}, "a": 5, "b": 1}, "routing": {"r": [{"target": "a", "confidence": 0.1, "reason": "r1"}, {"target": "a", "confidence": 0.9, "reason": "r2"}, {"target": "b", "confidence": 0.5}]}, "a": 5, "b": 1})
    );
}

/// A setting an illumo-flow node does not have is ignored there: here it is left out with
/// a warning naming it, `illumo migrate` drops it, and a native flow refuses it.
#[test]
fn an_illumo_flow_nodes_unknown_settings_are_left_out_with_a_warning() {
    let dir = crate::support::TempDir::new();
    dir.write("m.py", "def ident(payload):\n    return payload\n");
    dir.write(
        "f.yaml",
        "flow:\n  entry: a\n  nodes:\n    a:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: m.ident, payload: $ctx.x}, outputs: $ctx.a}\n      setting: {label: first, python_path: .}\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "f.yaml",
            "--tracer",
            "none",
            "--color",
            "never",
            "--context",
            r#"{"x": 2}"#,
        ])
        .run();
    assert!(
        out.stderr.contains("warning: node `a`: unknown setting `label`; illumo-flow ignores it, and so does illumo here\n --> f.yaml:7:17\n"),
        "{}",
        out.stderr
    );
    assert_eq!(out.success().ctx()["a"], 2);
    let migrated = Illumo::new()
        .in_dir(dir.path())
        .args(["migrate", "f.yaml"])
        .run()
        .success();
    assert!(migrated.stderr.contains("changed: node `a`: setting `label` dropped: the node has no such setting (illumo-flow ignored it)\n"), "{}", migrated.stderr);
    assert!(!migrated.stdout.contains("label"), "{}", migrated.stdout);
    dir.write("native.yaml", "flow:\n  nodes:\n    a: {type: FunctionNode, setting: {callable: m.ident, label: first}}\n");
    let native = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "native.yaml"])
        .run()
        .code(2);
    assert!(
        native
            .stderr
            .starts_with("error: node `a`: unknown setting `label`"),
        "{}",
        native.stderr
    );
}

/// Modules written against illumo-flow's Python API import in the worker; using that API
/// says it is not there, by name (a constructor or a class method alike).
#[test]
fn illumo_flows_python_api_imports_and_says_it_is_not_available_when_used() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "m.py",
        "from illumo_flow import Flow, FlowRuntime\nfrom illumo_flow.core import Routing\n\ndef build(payload):\n    Flow.from_config('flow.yaml')\n\ndef make(payload):\n    FlowRuntime()\n",
    );
    for (callable, said) in [
        ("m.build", "illumo_flow.Flow.from_config is illumo-flow's Python API, which illumo's worker does not provide"),
        ("m.make", "illumo_flow.FlowRuntime is illumo-flow's Python API, which illumo's worker does not provide"),
    ] {
        dir.write(
            "f.yaml",
            &format!("flow:\n  entry: a\n  nodes:\n    a: {{context: {{inputs: {{callable: {callable}}}}}}}\n"),
        );
        let out = run_file(&dir, "f.yaml", &[])
            .code(1);
        assert_eq!(
            out.ctx()["errors"],
            json!([{"node_id": "a", "exception": "FlowError", "message": said}])
        );
    }
}

/// illumo-flow fills `ctx.joins.<join>` parent by parent as they arrive, so a stop halfway
/// (FLOW_DEBUG_MAX_STEPS) leaves what arrived (illumo-flow 0.1.5 gives this very ctx).
#[test]
fn an_illumo_flow_join_records_each_parent_as_it_arrives() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "m.py",
        "def plus1(payload):\n    return (payload or 0) + 1\n",
    );
    dir.write(
        "f.yaml",
        "flow:\n  entry: a\n  nodes:\n    a: {callable: m.plus1, context: {inputs: ctx.x}}\n    b: {callable: m.plus1}\n    j: {callable: m.plus1}\n  edges: [a >> b, a >> j, b >> j]\n",
    );
    let ctx = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "f.yaml",
            "-q",
            "--tracer",
            "none",
            "--context",
            r#"{"x": 1}"#,
        ])
        .env("FLOW_DEBUG_MAX_STEPS", "1")
        .run()
        .success()
        .ctx();
    assert_eq!(
        ctx,
        json!({"x": 1, "steps": [{"node_id": "a", "status": "start"}, {"node_id": "a", "status": "success"}], "joins": {"j": {"a": 2}}, "errors": [], "payloads": {"a": 2, "b": 2}, "routing": {}})
    );
}

/// Natively an attempt that raises changes nothing, so what it left in ctx is not even
/// sent: a value there that is not JSON does not hide the exception, which is retried.
#[test]
fn a_native_function_that_raises_after_leaving_no_json_in_ctx_is_retried_with_its_error() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "m.py",
        "def f(payload, ctx):\n    ctx['odd'] = {1, 2}\n    raise ValueError('real reason')\n",
    );
    dir.write(
        "f.yaml",
        "flow:\n  nodes:\n    f: {type: FunctionNode, setting: {callable: m.f}, policy: {retry: {max_attempts: 2}}}\n",
    );
    let out = run_file(&dir, "f.yaml", &[]).code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `f` failed on attempt 2 of 2: `m.f` raised ValueError: real reason")
    );
}

/// Review fixes for illumo-flow flows: a goto to a node already queued runs it once, with
/// the goto's input (illumo-flow reads the input when the node runs); a join recorded
/// parent by parent copes with a `ctx.joins` that is not a map; migrate keeps a node's
/// own stop under a flow's `fail_fast: false`.
#[test]
fn illumo_flow_goto_to_a_queued_node_joins_and_a_nodes_own_stop() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "m.py",
        "def ident(payload):\n    return payload\ndef boom(payload):\n    raise ValueError('no')\ndef tag(payload):\n    return 'from f'\n",
    );
    // s >> (f, k): f (input 9) fails and goes to k, queued already with s's output (5).
    dir.write(
        "goto.yaml",
        "flow:\n  entry: s\n  nodes:\n    s: {callable: m.ident, context: {inputs: ctx.x}}\n    f: {callable: m.boom, context: {inputs: ctx.y}, setting: {policy: {on_error: {action: goto, target: k}}}}\n    k: {callable: m.ident, context: {outputs: ctx.k}}\n  edges: [s >> f, s >> k]\n",
    );
    let ctx = run_file(&dir, "goto.yaml", &["--context", r#"{"x": 5, "y": 9}"#])
        .success()
        .ctx();
    let k_runs = crate::support::step_lines(&ctx["steps"])
        .iter()
        .filter(|l| l.as_str() == "k start")
        .count();
    assert_eq!((k_runs, &ctx["k"]), (1, &json!(9)));
    dir.write(
        "join.yaml",
        "flow:\n  entry: a\n  nodes:\n    a: {callable: m.ident, context: {inputs: ctx.x}}\n    b: {callable: m.ident}\n    j: {callable: m.ident, context: {outputs: ctx.j}}\n  edges: [a >> b, a >> j, b >> j]\n",
    );
    let ctx = run_file(
        &dir,
        "join.yaml",
        &["--context", r#"{"x": 1, "joins": []}"#],
    )
    .success()
    .ctx();
    assert_eq!(ctx["j"], json!({"a": 1, "b": 1}));
    dir.write(
        "stop.yaml",
        "flow:\n  entry: f\n  policy: {fail_fast: false}\n  nodes:\n    f: {callable: m.boom, setting: {policy: {fail_fast: true}}}\n",
    );
    let migrated = Illumo::new()
        .in_dir(dir.path())
        .args(["migrate", "stop.yaml"])
        .run()
        .success();
    assert!(
        migrated
            .stdout
            .contains("      policy:\n        fail_fast: true\n        on_error: stop\n"),
        "{}",
        migrated.stdout
    );
}
