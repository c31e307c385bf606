//! illumo-flow's command-line flags, as its users type them.

use crate::support::{sqlite3, Illumo};
use serde_json::{json, Value};

const FAILING: &str = "flow:
  name: failing
  nodes:
    prep: {type: Set, setting: {value: {x: 1}}}
    boom:
      type: Command
      setting: {argv: [sh, -c, 'echo broken-hunter2 >&2; exit 3']}
      policy: {retry: {max_attempts: 2, delay: 10ms}, timeout: 5s}
  edges:
    - prep >> boom
";

#[test]
fn a_failed_run_writes_the_failure_report_and_the_execution_log() {
    let illumo = Illumo::new();
    let dir = illumo.dir().to_path_buf();
    let path = illumo.flow_file(FAILING);
    let report = dir.join("reports/failure.json");
    let logs = dir.join("logs");
    let out = illumo
        .args([
            "run", &path, "--quiet", "--tracer", "none", "--redact", "hunter2",
        ])
        .args(["--report-path", report.to_str().unwrap()])
        .args(["--log-dir", logs.to_str().unwrap()])
        .run()
        .code(1);
    let trace_id = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("trace_id: "))
        .unwrap()
        .to_string();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let expected = json!({
        "trace_id": trace_id,
        "failed_node_id": "boom",
        "summary": "node `boom` failed on attempt 2 of 2: `sh` exited with code 3: broken-***",
        "policy_snapshot": {
            "fail_fast": true, "timeout": "5s",
            "retry": {"max_attempts": 2, "delay": 0.01, "mode": "fixed"},
            "on_error": {"action": "stop", "target": null}
        },
        "context_digest": {
            "payload_preview": "null", "steps": 2,
            "last_error": {"node_id": "boom", "message": "`sh` exited with code 3: broken-***"}
        }
    });
    assert_eq!(written, expected);
    let log = std::fs::read_to_string(logs.join("runtime_execution.log")).unwrap();
    assert_eq!(log.lines().count(), 1);
    // Written as illumo-flow writes it: Python's `json.dumps` spacing, and
    // `datetime.utcnow().isoformat()`.
    assert!(
        log.contains(&format!(
            ", \"trace_id\": \"{trace_id}\", \"failed_node_id\": \"boom\", "
        )),
        "{log}"
    );
    let mut line: Value = serde_json::from_str(log.trim()).unwrap();
    let stamp = line.as_object_mut().unwrap().remove("timestamp").unwrap();
    // (Python 3.10's `fromisoformat` refuses a trailing `Z`.)
    let iso = regex_lite::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$").unwrap();
    assert!(iso.is_match(stamp.as_str().unwrap()), "{stamp}");
    assert_eq!(line, expected);
}

#[test]
fn the_failure_report_comes_as_markdown_too() {
    let illumo = Illumo::new();
    let report = illumo.dir().join("failure.md");
    let path = illumo.flow_file(FAILING);
    // The output keeps the test's folder alive.
    let _out = illumo
        .args(["run", &path, "--quiet", "--tracer", "none"])
        .args([
            "--report-path",
            report.to_str().unwrap(),
            "--report-format",
            "markdown",
        ])
        .run()
        .code(1);
    let text = std::fs::read_to_string(&report).unwrap();
    let head: Vec<&str> = text.lines().take(6).collect();
    assert_eq!(head[0], "# illumo-flow Failure Report");
    assert!(
        head[2].starts_with("- trace_id: ") && head[2].len() == 44,
        "{}",
        head[2]
    );
    assert_eq!(
        &head[3..6],
        [
            "- failed_node_id: boom",
            "- summary: node `boom` failed on attempt 2 of 2: `sh` exited with code 3: broken-hunter2",
            ""
        ]
    );
    assert!(
        text.contains("## Policy Snapshot\n```json\n{\n  \"fail_fast\": true,"),
        "{text}"
    );
    assert!(
        text.contains("## Context Digest\n```json\n{\n  \"payload_preview\": \"null\","),
        "{text}"
    );
}

#[test]
fn a_run_that_succeeds_writes_no_report() {
    let illumo = Illumo::new();
    let report = illumo.dir().join("failure.json");
    let path = illumo.flow_file("flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n");
    let _out = illumo
        .args(["run", &path, "--quiet", "--tracer", "none"])
        .args(["--report-path", report.to_str().unwrap()])
        .run()
        .success();
    assert!(!report.exists());
}

#[test]
fn trace_db_records_into_that_file() {
    let illumo = Illumo::new();
    let db = illumo.dir().join("traces/illumo_trace.db");
    let path = illumo
        .flow_file("flow:\n  name: hello\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n");
    let _out = illumo
        .args(["run", &path, "--quiet", "--trace-db", db.to_str().unwrap()])
        .run()
        .success();
    assert_eq!(
        sqlite3(&db, "SELECT name FROM spans ORDER BY start"),
        "flow hello\na\n"
    );
    // An illumo-flow flow has no name there: its run is named after its entry.
    let old = crate::support::TempDir::new();
    old.write("m.py", "def ident(payload):\n    return payload\n");
    old.write(
        "f.yaml",
        "flow:\n  entry: start\n  nodes:\n    start: {context: {inputs: {callable: m.ident}}}\n",
    );
    Illumo::new()
        .in_dir(old.path())
        .args(["run", "f.yaml", "--quiet", "--trace-db", "t.db"])
        .run()
        .success();
    assert_eq!(
        sqlite3(
            &old.path().join("t.db"),
            "SELECT name FROM spans ORDER BY start"
        ),
        "flow start\nstart\n"
    );
}

/// Two runs into one database: `failing` (prep ok, boom twice in error), then `hello`.
fn two_runs() -> (crate::support::TempDir, String) {
    let dir = crate::support::TempDir::new();
    let db = dir.path().join("trace.db").display().to_string();
    for flow in [
        FAILING,
        "flow:\n  name: hello\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n",
    ] {
        let illumo = Illumo::new();
        let path = illumo.flow_file(flow);
        illumo
            .args(["run", &path, "--quiet", "--trace-db", &db])
            .run();
    }
    (dir, db)
}

fn trace(args: &[&str]) -> crate::support::Output {
    Illumo::new().args(["trace"]).args(args).run()
}

#[test]
fn traceql_filters_list_search_and_show() {
    let (_dir, db) = two_runs();
    let out = trace(&["list", "--db", &db, "--traceql", r#"span.name=="failing""#]).success();
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    assert!(
        rows[1].contains("  failing  ") && rows[1].contains("ERROR"),
        "{}",
        rows[1]
    );
    let out = trace(&[
        "search",
        "--db",
        &db,
        "--format",
        "json",
        "--traceql",
        r#"{ span.name == "boom" && span.attributes["node.type"] == "Command" } | limit 1"#,
    ])
    .success();
    let found: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(
        (&found[0]["name"], &found[0]["attributes"]["attempt"]),
        (&json!("boom"), &json!(2))
    );
    let out = trace(&[
        "search",
        "--db",
        &db,
        "--format",
        "json",
        "--traceql",
        r#"span.kind=="flow" | span.status=="OK""#,
    ])
    .success();
    let found: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flow hello"]);
    let out = trace(&["search", "--db", &db, "--traceql", "span.duration > 3"]).code(2);
    assert_eq!(out.stderr, "error: --traceql: `span.duration > 3` is not understood; use trace_id=\"...\", span.name==\"...\", span.kind==\"...\", span.status==\"...\", span.attributes[\"key\"]==\"value\", pick(columns) or limit N\n");
    // illumo-flow's attribute names, as its README writes them.
    let out = trace(&[
        "search",
        "--db",
        &db,
        "--format",
        "json",
        "--traceql",
        r#"span.attributes["node_id"] == "boom" && span.attributes["node_type"] == "Command""#,
    ])
    .success();
    let found: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2, "{found}");
    // What a command cannot apply is an error, not ignored.
    let out = trace(&[
        "search",
        "--db",
        &db,
        "--traceql",
        "traces{} | pick(trace_id)",
    ])
    .code(2);
    assert_eq!(out.stderr, "error: --traceql: pick(...) chooses the columns of `trace list`; `trace search` prints spans\n");
    let out = trace(&["show", "--db", &db, "--traceql", r#"span.name=="boom""#]).code(2);
    assert_eq!(out.stderr, "error: --traceql: `trace show` picks one trace by trace_id=\"...\"; use `trace search` to filter spans\n");
}

/// illumo-flow's README query: `traces{} | pick(...) | limit N` gives those columns; the
/// root service is the run's `--service-name` (illumo when none was given).
#[test]
fn traceql_pick_chooses_the_columns_of_trace_list() {
    let (_dir, db) = two_runs();
    let illumo = Illumo::new();
    let path = illumo
        .flow_file("flow:\n  name: shop\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n");
    illumo
        .args([
            "run",
            &path,
            "-q",
            "--trace-db",
            &db,
            "--service-name",
            "checkout",
        ])
        .run()
        .success();
    let query = "traces{} | pick(root_service, root_name, span_count) | limit 2";
    let out = trace(&["list", "--db", &db, "--traceql", query, "--format", "json"]).success();
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        json!([
            {"root_service": "checkout", "root_name": "shop", "span_count": 2},
            {"root_service": "illumo", "root_name": "hello", "span_count": 2}
        ])
    );
    let out = trace(&["list", "--db", &db, "--traceql", query]).success();
    assert_eq!(
        out.stdout.lines().next(),
        Some("ROOT_SERVICE  ROOT_NAME  SPAN_COUNT")
    );
    let out = trace(&["list", "--db", &db, "--traceql", "pick(trace_id, owner)"]).code(2);
    assert_eq!(out.stderr, "error: --traceql: pick(`owner`): a run's columns are `trace_id`, `root_service`, `root_name`, `start_time`, `end_time`, `span_count`\n");
    let listed = trace(&["list", "--db", &db, "--flow", "failing", "--format", "json"]).success();
    let failing: Value = serde_json::from_str(&listed.stdout).unwrap();
    let id = failing[0]["trace_id"].as_str().unwrap();
    let with = trace(&["show", id, "--db", &db, "--format", "json"]).success();
    let without = trace(&["show", id, "--db", &db, "--format", "json", "--no-events"]).success();
    let events = |out: &crate::support::Output| -> usize {
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["events"].as_array().map_or(0, Vec::len))
            .sum()
    };
    assert!(events(&with) > 0, "{}", with.stdout);
    assert_eq!(events(&without), 0);
}

#[test]
fn markdown_tables_and_the_latest_trace_by_default() {
    let (_dir, db) = two_runs();
    let out = trace(&[
        "search", "--db", &db, "--status", "ERROR", "--format", "markdown",
    ])
    .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "| TRACE ID | START | NODE | TYPE | ATTEMPT | STATUS | DURATION | ERROR |"
    );
    assert_eq!(
        lines[1],
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    assert_eq!(
        lines.len(),
        4,
        "two failed attempts of boom:\n{}",
        out.stdout
    );
    assert!(
        lines[2].contains("| boom | Command | 2 | ERROR |"),
        "{}",
        lines[2]
    );
    let out = trace(&["show", "--db", &db]).success();
    assert!(
        out.stdout.starts_with("✓ flow hello  OK  "),
        "{}",
        out.stdout
    );
    let out = trace(&["search", "--db", &db, "--timeout-only"]).success();
    assert_eq!(out.stdout, "no matching node attempts\n");
}

#[test]
fn a_test_command_string_runs_split_with_the_workspace_on_pythonpath() {
    // As the design writes it: `pytest tests/unit -q`, from ctx.request.tests; the test
    // imports a module at the workspace's root from a nested folder.
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests/unit")).unwrap();
    std::fs::write(ws.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        ws.join("tests/unit/test_calc.py"),
        "import calc\n\ndef test_add():\n    assert calc.add(2, 3) == 5\n",
    )
    .unwrap();
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ws, command: 'pytest -q -p no:cacheprovider'}\n";
    let context =
        json!({"request": {"tests": "pytest tests/unit -q -p no:cacheprovider"}}).to_string();
    let out = illumo
        .run_flow(flow)
        .args(["--quiet", "-c", &context])
        .run()
        .success();
    let results = &out.ctx()["tests"]["results"];
    assert_eq!(
        results["command"],
        json!(["pytest", "tests/unit", "-q", "-p", "no:cacheprovider"])
    );
    assert_eq!(
        (
            &results["passed"],
            &results["failed"],
            &results["returncode"]
        ),
        (&json!(1), &json!(0), &json!(0)),
        "{}",
        results["stdout"]
    );
}

#[test]
fn a_command_string_is_checked_like_a_list() {
    let illumo = Illumo::new();
    let path = illumo.flow_file("flow:\n  nodes:\n    t:\n      type: TestExecutor\n      setting: {default_root: ., command: 'python3 -c \"import os\"'}\n");
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `t`: `python3 -c` runs inline code, not tests; set `allow_inline_code: true` if that is meant")
    );
}

#[test]
fn patch_changes_only_the_requests_target_files() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    std::fs::write(ws.join("app/a.py"), "a\n").unwrap();
    std::fs::write(ws.join("app/b.py"), "b\n").unwrap();
    let flow = "flow:\n  nodes:\n    patch: {type: Patch, setting: {default_root: ws}}\n";
    let diff = "--- a/app/a.py\n+++ b/app/a.py\n@@ -1 +1 @@\n-a\n+A\n--- a/app/b.py\n+++ b/app/b.py\n@@ -1 +1 @@\n-b\n+B\n";
    let path = illumo.flow_file(flow);
    let run = |targets: Value| {
        let context =
            json!({"diff": {"proposed": diff}, "request": {"target_files": targets}}).to_string();
        Illumo::new()
            .args(["run", &path, "--quiet", "--tracer", "none", "-c", &context])
            .run()
    };
    let out = run(json!(["./app/a.py"])).code(1);
    assert_eq!(
        out.ctx()["diff"]["applied"],
        json!({"ok": false, "error": "the diff was not applied: 1 file rejected (`app/b.py`: not one of ctx.request.target_files (app/a.py))",
               "rejected": [{"path": "app/b.py", "reason": "not one of ctx.request.target_files (app/a.py)"}], "files": [], "written": false})
    );
    let out = run(json!(["app/a.py", "app/b.py"])).success();
    assert_eq!(out.ctx()["diff"]["applied"]["ok"], true);
    let out = run(json!(null)).success();
    assert_eq!(
        out.ctx()["diff"]["applied"]["files"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn each_file_too_large_to_inspect_is_a_warning_event() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("big.py"), "x".repeat(500)).unwrap();
    std::fs::write(ws.join("ok.py"), "x = 1\n").unwrap();
    let db = illumo.dir().join("t.db");
    let path = illumo.flow_file("flow:\n  nodes:\n    inspect: {type: WorkspaceInspector, setting: {default_root: ws, max_bytes: 100}}\n");
    let _out = illumo
        .args(["run", &path, "--quiet", "--trace-db", db.to_str().unwrap()])
        .run()
        .success();
    assert_eq!(
        sqlite3(
            &db,
            "SELECT level, attributes FROM events WHERE name = 'workspace.file_too_large'"
        ),
        "WARN|{\"path\":\"big.py\",\"size\":500,\"max_bytes\":100}\n"
    );
}

/// For a flow written for illumo-flow the failure report is illumo-flow 0.1.5's own, key
/// for key but the trace id: the exception's message as the summary, `max_attempts`
/// counting retries, and the last error's node.
#[test]
fn an_illumo_flow_flows_failure_report_is_illumo_flows() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "mods.py",
        "def boom(payload):\n    return 1/0\n\ndef ident(payload):\n    return payload\n",
    );
    dir.write(
        "flow.yaml",
        "flow:\n  entry: f\n  nodes:\n    f:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.boom, payload: $ctx.x}, outputs: $ctx.f}\n    g:\n      type: illumo_flow.core.FunctionNode\n      context: {inputs: {callable: mods.ident}, outputs: $ctx.g}\n  edges:\n    - f >> g\n",
    );
    let report = dir.path().join("report.json");
    Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "none",
            "-c",
            r#"{"x": 1}"#,
        ])
        .args(["--report-path", report.to_str().unwrap()])
        .run()
        .code(1);
    let mut written: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let trace_id = written.as_object_mut().unwrap().remove("trace_id").unwrap();
    assert_eq!(trace_id.as_str().map(str::len), Some(32));
    assert_eq!(
        written,
        json!({
            "failed_node_id": "f",
            "summary": "division by zero",
            "policy_snapshot": {
                "fail_fast": true, "timeout": "0s",
                "retry": {"max_attempts": 0, "delay": 0.0, "mode": "fixed"},
                "on_error": {"action": "stop", "target": null}
            },
            "context_digest": {
                "payload_preview": "null", "steps": 2,
                "last_error": {"node_id": "f", "message": "division by zero"}
            }
        })
    );
}

/// illumo-flow's WorkspaceInspectorNode and SummaryAgent, as an illumo-flow flow uses
/// them: the walk's reasons (`not-file`, `extension`, `outside-root`, and a file over
/// max_bytes listed with an empty preview and as `preview-unavailable`, still a warning
/// event), only the target files when ctx names them, and the short report. Each final
/// ctx is the one illumo-flow 0.1.5 gives for the same flow and ctx.
#[test]
fn illumo_flows_inspector_and_summary_leave_its_shapes() {
    let dir = crate::support::TempDir::new();
    dir.write("ws/pkg/a.py", "x = 1\n");
    dir.write("ws/big.txt", &format!("{}\n", "y".repeat(300)));
    dir.write("ws/notes.md", "hello\n");
    dir.write("ws/c.json", "{}");
    dir.write("ws/skip.bin", "zz");
    dir.write(
        "f.yaml",
        "flow:\n  entry: inspect\n  nodes:\n    inspect:\n      type: illumo_flow.nodes.WorkspaceInspectorNode\n      setting: {default_root: ws, max_bytes: 100, preview_lines: 1}\n    report:\n      type: illumo_flow.nodes.SummaryAgent\n      setting: {output_path: $ctx.out.text}\n  edges: [inspect >> report]\n",
    );
    let run = |ctx: &str| {
        let db = dir.path().join("t.db");
        let _ = std::fs::remove_file(&db);
        let out = Illumo::new()
            .in_dir(dir.path())
            .args([
                "run",
                "f.yaml",
                "-q",
                "--trace-db",
                "t.db",
                "--context",
                ctx,
            ])
            .run()
            .success()
            .ctx();
        let warned = sqlite3(
            &db,
            "SELECT attributes FROM events WHERE name = 'workspace.file_too_large'",
        );
        (out, warned)
    };
    let (ctx, warned) = run("{}");
    let entry = |path: &str, size: u64, preview: &str, selected: bool| json!({"path": path, "size": size, "preview": preview, "selected": selected});
    let structure = json!([
        entry("big.txt", 301, "", false),
        entry("c.json", 2, "{}", false),
        entry("notes.md", 6, "hello", false),
        entry("pkg/a.py", 6, "x = 1", false)
    ]);
    let excluded = json!([
        {"path": "big.txt", "reason": "preview-unavailable"},
        {"path": "pkg", "reason": "not-file"},
        {"path": "skip.bin", "reason": "extension"}
    ]);
    assert_eq!(
        ctx["workspace"],
        json!({"structure": structure, "structure_excluded": excluded})
    );
    assert_eq!(
        ctx["payloads"]["inspect"],
        json!({"structure": structure, "excluded": excluded})
    );
    assert_eq!(ctx["request"], json!({}));
    assert_eq!(
        warned,
        "{\"path\":\"big.txt\",\"size\":301,\"max_bytes\":100}\n"
    );
    // Nothing patched or tested: SummaryAgent's fallback line.
    let report = json!("No updates were recorded.");
    assert_eq!(
        ctx["summary"],
        json!({"report": report, "structured": {"files": [], "tests": {}, "review": {}}})
    );
    assert_eq!(ctx["out"]["text"], report);

    let (ctx, _) = run(
        r#"{"request": {"target_files": ["pkg/a.py", "../m.py", "nope.py"]}, "review": {"status": "approved", "summary": "fine"}, "tests": {"results": {"command": ["pytest", "-q"], "returncode": 2, "stderr": "  boom  "}}}"#,
    );
    assert_eq!(
        ctx["workspace"],
        json!({"structure": [entry("pkg/a.py", 6, "x = 1", true)], "structure_excluded": [
            {"path": "../m.py", "reason": "outside-root"},
            {"path": "nope.py", "reason": "not-file"}
        ]})
    );
    assert_eq!(
        ctx["summary"]["report"],
        "### Tests\n- Status: FAIL\n- Command: pytest -q\n- Stderr snippet:\nboom\n### Review\n- Status: approved\n- Notes: fine"
    );
}

/// Migrating an illumo-flow inspector writes its defaults out, so the native flow reads
/// the same files with the same previews.
#[test]
fn migrate_writes_out_the_inspectors_illumo_flow_defaults() {
    let dir = crate::support::TempDir::new();
    dir.write("ws/a.yaml", "k: 1\n");
    dir.write(
        "f.yaml",
        "flow:\n  entry: inspect\n  nodes:\n    inspect:\n      type: illumo_flow.nodes.WorkspaceInspectorNode\n      setting: {default_root: ws}\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["migrate", "f.yaml"])
        .run()
        .success();
    assert!(
        out.stdout.contains("        preview_lines: 20\n        allowed_extensions:\n        - .py\n        - .txt\n        - .md\n        - .json\n        - .yaml\n"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("changed: node `inspect`: illumo-flow's default written out: `preview_lines: 20` (illumo's is 10)\n"), "{}", out.stderr);
    dir.write("native.yaml", &out.stdout);
    let ctx = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "native.yaml", "-q", "--tracer", "none"])
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["workspace"]["structure"][0]["path"], "a.yaml");
}

/// illumo-flow's inspector resolves the target files it is given: one reached through a
/// symlink that leads out of the workspace is `outside-root`, never read.
#[test]
fn illumo_flows_inspector_does_not_follow_a_symlink_out_of_the_workspace() {
    let dir = crate::support::TempDir::new();
    dir.write("secret/key.py", "TOKEN = 'do-not-read'\n");
    dir.write("ws/a.py", "x = 1\n");
    std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("ws/link")).unwrap();
    dir.write(
        "f.yaml",
        "flow:\n  entry: inspect\n  nodes:\n    inspect: {type: illumo_flow.nodes.WorkspaceInspectorNode, setting: {default_root: ws}}\n",
    );
    let ctx = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "f.yaml", "-q", "--tracer", "none"])
        .args([
            "--context",
            r#"{"request": {"target_files": ["link/key.py", "a.py"]}}"#,
        ])
        .run()
        .success()
        .ctx();
    assert_eq!(
        ctx["workspace"]["structure_excluded"],
        json!([{"path": "link/key.py", "reason": "outside-root"}])
    );
    assert!(!ctx.to_string().contains("do-not-read"), "{ctx}");
    assert_eq!(ctx["workspace"]["structure"][0]["path"], "a.py");
}
