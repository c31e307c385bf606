//! The coding assistant: the whole draft → patch → test → review loop through the real
//! binary and real pytest, and the workspace nodes on their own.

use crate::support::{copy_dir, root, sqlite3, Illumo, TempDir};
use serde_json::{json, Value};
use std::path::Path;

const EXAMPLE: &str = "examples/multi_agent/coding_assistant";

#[test]
fn the_loop_drafts_twice_tests_for_real_and_reports() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let before =
        std::fs::read_to_string(root().join(EXAMPLE).join("sample_app/app/calc.py")).unwrap();
    let out = Illumo::new()
        .args([
            "run",
            &format!("{EXAMPLE}/coding_assistant.yaml"),
            "--context",
            &format!("@{EXAMPLE}/context.json"),
        ])
        .args([
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ])
        .run()
        .success();
    let ctx = out.ctx();
    let steps: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "inspect",
            "draft",
            "apply_patch",
            "run_tests",
            "review",
            "route",
            "draft",
            "apply_patch",
            "run_tests",
            "review",
            "route",
            "write_fix",
            "summarize"
        ]
    );
    assert_eq!(
        ctx["tests"]["history"],
        json!([{"passed": 2, "failed": 2, "returncode": 1}, {"passed": 4, "failed": 0, "returncode": 0}])
    );
    assert_eq!(ctx["review"]["status"], "OK");
    assert_eq!(ctx["routing"]["route"]["target"], "write_fix");
    assert_eq!(
        ctx["diff"]["applied"],
        json!({"ok": true, "files": [{"path": "app/calc.py", "status": "patched"}, {"path": "app/text.py", "status": "patched"}], "rejected": [], "written": false})
    );
    let files = ctx["workspace"]["files"].as_array().unwrap();
    let calc = files.iter().find(|f| f["path"] == "app/calc.py").unwrap();
    assert!(calc["patched_content"]
        .as_str()
        .unwrap()
        .contains("    return a + b\n"));
    assert_eq!(calc["original_content"].as_str().unwrap(), before);
    assert_eq!(
        files
            .iter()
            .find(|f| f["path"] == "app/__init__.py")
            .unwrap()["status"],
        "original"
    );
    let structure: Vec<&str> = ctx["workspace"]["structure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        structure,
        [
            "app/__init__.py",
            "app/calc.py",
            "app/text.py",
            "tests/test_calc.py",
            "tests/test_text.py"
        ]
    );
    let duration = ctx["tests"]["results"]["duration"].clone();
    assert_eq!(
        ctx["summary"]["report"],
        format!(
            "# Fix the failing tests in app/calc.py and app/text.py\n\n## Changes\n\n- `app/calc.py`: patched (+2 -2)\n- `app/text.py`: patched (+1 -1)\n\nDry run: the files on disk are unchanged (run with --write to apply).\n\n## Tests\n\n`python3 -m pytest -q -p no:cacheprovider`: 4 passed, 0 failed (exit code 0, {duration}s)\n\n## Review\n\nOK (score 0.95): The three bugs are fixed with minimal changes.\n- all four tests pass\n- each fix is one line\n\n## Next actions\n\n- Apply the change with `illumo run --write`, then commit it.\n"
        )
    );
    assert_eq!(
        std::fs::read_to_string(root().join(EXAMPLE).join("sample_app/app/calc.py")).unwrap(),
        before,
        "a dry run writes nothing"
    );
    // The trace shows the loop.
    assert_eq!(
        sqlite3(&db, "SELECT group_concat(name, ' > ') FROM (SELECT name FROM spans WHERE kind = 'node' ORDER BY start_time)"),
        "inspect > draft > apply_patch > run_tests > review > route > draft > apply_patch > run_tests > review > route > write_fix > summarize\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.routing.targets[0]') FROM spans WHERE name = 'route' ORDER BY start_time"),
        "draft\nwrite_fix\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT sum(json_extract(attributes, '$.gen_ai.usage.input_tokens')) FROM spans WHERE json_extract(attributes, '$.node.type') = 'ReviewAgent'"),
        "930\n"
    );
}

#[test]
fn with_write_the_fix_lands_in_the_files() {
    let dir = TempDir::new();
    let copy = dir.path().join("assistant");
    copy_dir(&root().join(EXAMPLE), &copy);
    let out = Illumo::new()
        .args([
            "run",
            copy.join("coding_assistant.yaml").to_str().unwrap(),
            "--context",
            &format!("@{}", copy.join("context.json").display()),
        ])
        .args([
            "--write",
            "--tracer",
            "none",
            "--print",
            "$ctx.diff.applied",
        ])
        .run()
        .success();
    assert_eq!(out.stdout, "{\"ok\":true,\"files\":[{\"path\":\"app/calc.py\",\"status\":\"patched\"},{\"path\":\"app/text.py\",\"status\":\"patched\"}],\"rejected\":[],\"written\":true}\n");
    assert_eq!(
        std::fs::read_to_string(copy.join("sample_app/app/text.py")).unwrap(),
        "\"\"\"Text helpers.\"\"\"\n\n\ndef slugify(title):\n    \"\"\"Turn a title into a URL slug: lower case, words joined by dashes.\"\"\"\n    return \"-\".join(title.lower().split())\n"
    );
    let leftovers: Vec<String> = std::fs::read_dir(copy.join("sample_app/app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("illumo-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let pytest = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(copy.join("sample_app"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&pytest.stdout).contains("4 passed"),
        "{}",
        String::from_utf8_lossy(&pytest.stdout)
    );
}

/// A flow over a scratch workspace: inspect >> draft (scripted) >> patch, goto draft on error.
fn patch_flow(dir: &Path, drafts: &[&str]) -> String {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    std::fs::write(ws.join("app/calc.py"), "def add(a, b):\n    return a - b\n").unwrap();
    std::fs::write(ws.join("tests/test_calc.py"), "def test():\n    pass\n").unwrap();
    let replies: String = drafts
        .iter()
        .map(|d| {
            format!(
                "    - |\n{}",
                d.lines()
                    .map(|l| format!("      {l}\n"))
                    .collect::<String>()
            )
        })
        .collect();
    std::fs::write(
        dir.join("replies.yaml"),
        format!("replies:\n  draft:\n{replies}"),
    )
    .unwrap();
    "flow:\n  max_steps: 10\n  nodes:\n    draft:\n      type: DraftAgent\n      setting: {provider: scripted, responses: replies.yaml, prompt: fix}\n    patch:\n      type: Patch\n      setting: {default_root: ws, allowed_paths: [\"app/**\"]}\n      policy: {on_error: {action: goto, target: draft}}\n  edges:\n    - draft >> patch\n".to_string()
}

#[test]
fn a_rejected_patch_goes_back_to_the_drafter_with_the_reason_in_ctx() {
    let illumo = Illumo::new();
    let outside = "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -1,2 +1,2 @@\n def test():\n-    pass\n+    assert True\n";
    let good = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1 +1 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";
    let flow = patch_flow(illumo.dir(), &[outside, good]);
    let out = illumo.run_flow(&flow).run().success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["errors"],
        json!([{"node": "patch", "attempt": 1, "message": "the diff was not applied: 1 file rejected (`tests/test_calc.py`: outside allowed_paths (app/**))", "timed_out": false, "action": "goto draft"}])
    );
    assert_eq!(ctx["diff"]["applied"]["ok"], true);
    let steps: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["draft", "patch", "draft", "patch"]);
}

#[test]
fn a_rejection_stays_in_ctx_when_the_patch_finally_fails() {
    let illumo = Illumo::new();
    let escape = "--- a/../secrets.py\n+++ b/../secrets.py\n@@ -1 +1 @@\n-a\n+b\n";
    let flow = patch_flow(illumo.dir(), &[escape]).replace(
        "      policy: {on_error: {action: goto, target: draft}}\n",
        "",
    );
    let out = illumo.run_flow(&flow).run().code(1);
    assert_eq!(
        out.ctx()["diff"]["applied"],
        json!({"ok": false, "error": "the diff was not applied: 1 file rejected (`../secrets.py`: `..` would leave the workspace)",
               "rejected": [{"path": "../secrets.py", "reason": "`..` would leave the workspace"}], "files": [], "written": false})
    );
}

#[test]
fn a_test_timeout_kills_pytest_and_its_children() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    let marker = format!("120.{}", crate::support::unique());
    let pidfile = illumo.dir().join("child.pid");
    std::fs::write(
        ws.join("tests/test_slow.py"),
        format!("import subprocess, time\n\ndef test_hangs():\n    child = subprocess.Popen(['sleep', '{marker}'])\n    open({:?}, 'w').write(str(child.pid))\n    time.sleep(120)\n", pidfile.display().to_string()),
    )
    .unwrap();
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ws, command: [python3, -m, pytest, -q, -p, no:cacheprovider], timeout: 3s}\n";
    let out = illumo.run_flow(flow).run().code(1);
    assert_eq!(out.stderr.lines().next(), Some("error: node `run_tests` failed on attempt 1 of 1: the tests did not finish within 3s; they were killed"));
    assert!(pidfile.exists(), "pytest started the child");
    assert_eq!(
        crate::support::gone(&marker),
        Vec::<u32>::new(),
        "pytest's child survived the timeout"
    );
}

#[test]
fn only_allowed_test_programs_run() {
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ., command: [bash, -c, 'rm -rf /']}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert!(out.stderr.starts_with("error: node `run_tests`: `bash` is not an allowed test command (allowed: pytest, python, python3)\n"), "{}", out.stderr);
}

#[test]
fn the_inspector_excludes_binary_large_and_unreadable_files_and_keeps_walking() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    for dir in ["pkg", ".git", "__pycache__", "venv"] {
        std::fs::create_dir_all(ws.join(dir)).unwrap();
    }
    std::fs::write(ws.join("venv/pyvenv.cfg"), "home = /usr\n").unwrap();
    std::fs::write(ws.join("venv/site.py"), "x = 1\n").unwrap();
    std::fs::write(ws.join(".git/config.py"), "x = 1\n").unwrap();
    std::fs::write(
        ws.join("pkg/a.py"),
        (1..=5).map(|i| format!("line {i}\n")).collect::<String>(),
    )
    .unwrap();
    std::fs::write(ws.join("pkg/blob.py"), b"abc\0def").unwrap();
    std::fs::write(ws.join("pkg/big.py"), "x".repeat(300)).unwrap();
    std::fs::write(ws.join("pkg/secret.py"), "password = 1\n").unwrap();
    std::fs::write(ws.join("pkg/z.md"), "# notes\n").unwrap();
    std::fs::write(ws.join("pkg/skip.txt"), "not listed\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ws.join("pkg/secret.py"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    for p in [illumo.dir().to_path_buf(), ws.clone(), ws.join("pkg")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in [
        "pkg/a.py",
        "pkg/blob.py",
        "pkg/big.py",
        "pkg/z.md",
        "pkg/skip.txt",
    ] {
        std::fs::set_permissions(ws.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let flow = "flow:\n  nodes:\n    inspect:\n      type: WorkspaceInspector\n      setting: {default_root: ws, allowed_extensions: [\".py\", \".md\"], preview_lines: 1, max_bytes: 200}\n";
    let path = illumo.flow_file(flow);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Root reads any file, so run as `nobody` to meet a file it may not read.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_illumo"),
            "run",
            &path,
            "--tracer",
            "none",
        ])
        .args(["-c", r#"{"request": {"target_files": ["pkg/a.py"]}}"#])
        .output()
        .expect("setpriv runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        ctx["workspace"]["structure"],
        json!([
            {"path": "pkg/a.py", "size": 35, "preview": "line 1\n...\nline 5", "selected": true},
            {"path": "pkg/z.md", "size": 8, "preview": "# notes", "selected": false},
        ])
    );
    assert_eq!(
        ctx["workspace"]["structure_excluded"],
        json!([
            {"path": "pkg/big.py", "size": 300, "reason": "larger than max_bytes (200)"},
            {"path": "pkg/blob.py", "size": 7, "reason": "binary"},
            {"path": "pkg/secret.py", "reason": "permission_denied"},
        ])
    );
}

#[test]
fn with_write_the_disk_holds_the_originals_plus_the_last_draft() {
    let illumo = Illumo::new();
    let first = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return b + a\n--- /dev/null\n+++ b/app/extra.py\n@@ -0,0 +1 @@\n+EXTRA = 1\n";
    let second = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";
    let flow = patch_flow(illumo.dir(), &[first, second]).replace(
        "  edges:\n    - draft >> patch\n",
        "    again:\n      type: Router\n      setting: {routes: [{when: \"size(ctx.steps) < 4\", to: draft}]}\n  edges:\n    - draft >> patch >> again\n",
    );
    let ws = illumo.dir().join("ws");
    let out = illumo.run_flow(&flow).args(["--write"]).run().success();
    let ctx = out.ctx();
    let steps: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["draft", "patch", "again", "draft", "patch", "again"]
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("app/calc.py")).unwrap(),
        "def add(a, b):\n    return a + b\n"
    );
    assert!(
        !ws.join("app/extra.py").exists(),
        "the file only the first draft created is gone again"
    );
}

#[test]
fn the_test_copy_cannot_be_escaped_through_listed_files() {
    let illumo = Illumo::new();
    std::fs::create_dir_all(illumo.dir().join("ws")).unwrap();
    let outside = illumo.dir().join("OUTSIDE.txt");
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ws, command: [python3, -m, pytest]}\n";
    let context = json!({"workspace": {"files": [{"path": outside.display().to_string(), "status": "patched", "patched_content": "x"}]}}).to_string();
    let out = illumo.run_flow(flow).args(["-c", &context]).run().code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        format!("error: node `run_tests` failed on attempt 1 of 1: cannot lay `{}` over the test copy: absolute paths are not allowed", outside.display())
    );
    assert!(!outside.exists());
}

const FIX_CALC: &str = "--- a/app/calc.py\n+++ b/app/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

#[test]
fn no_ctx_value_can_grant_the_write_permission() {
    let illumo = Illumo::new();
    let flow = patch_flow(illumo.dir(), &[FIX_CALC]);
    let ws = illumo.dir().join("ws");
    let db = illumo.dir().join("t.db");
    let path = illumo.flow_file(&flow);
    let out = illumo
        .args(["run", &path, "--trace-db", &db.display().to_string()])
        .args([
            "-c",
            r#"{"runtime": {"write": true}, "write": true, "request": {"write": true}}"#,
        ])
        .args(["--quiet", "--print", "$ctx.diff.applied.written"])
        .run()
        .success();
    assert_eq!(out.stdout, "false\n");
    // illumo-flow's `ctx.request.write` is answered with why nothing was written.
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name, level, json_extract(attributes, '$.message') FROM events WHERE name = 'patch.write_not_allowed'"
        ),
        "patch.write_not_allowed|WARN|ctx.request.write is true, but only `--write` lets Patch change files: this run is a dry run\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("app/calc.py")).unwrap(),
        "def add(a, b):\n    return a - b\n"
    );
}

#[test]
fn write_works_whatever_ctx_holds_under_runtime() {
    for context in [r#"{"runtime": 1}"#, r#"{"runtime": "x"}"#] {
        let illumo = Illumo::new();
        let flow = patch_flow(illumo.dir(), &[FIX_CALC]);
        let ws = illumo.dir().join("ws");
        let out = illumo
            .run_flow(&flow)
            .args(["-c", context, "--write", "--tracer", "none"])
            .args(["--print", "$ctx.diff.applied.written"])
            .run()
            .success();
        assert_eq!(out.stdout, "true\n", "{context}");
        assert_eq!(
            std::fs::read_to_string(ws.join("app/calc.py")).unwrap(),
            "def add(a, b):\n    return a + b\n"
        );
    }
}

#[test]
fn a_multi_file_write_that_fails_midway_changes_no_file() {
    let illumo = Illumo::new();
    let both = format!("{FIX_CALC}--- a/app/b.py\n+++ b/app/b.py\n@@ -1 +1 @@\n-x\n+y\n");
    let flow = patch_flow(illumo.dir(), &[&both]).replace(
        "      policy: {on_error: {action: goto, target: draft}}\n",
        "",
    );
    let ws = illumo.dir().join("ws");
    // The run remembers `app/b.py` as a file, but on disk it is now a folder: its rename
    // fails after `app/calc.py` was already replaced.
    std::fs::create_dir_all(ws.join("app/b.py/inside")).unwrap();
    let context = r#"{"workspace": {"files": [{"path": "app/b.py", "status": "patched", "original_content": "x\n", "patched_content": "x\n"}]}}"#;
    let out = illumo
        .run_flow(&flow)
        .args(["-c", context, "--write", "--tracer", "none", "--quiet"])
        .run()
        .code(1);
    let first = out.stderr.lines().next().unwrap_or_default().to_string();
    assert!(
        first
            .starts_with("error: node `patch` failed on attempt 1 of 1: cannot write `app/b.py`: ")
            && first.ends_with("; the files already written were restored"),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("app/calc.py")).unwrap(),
        "def add(a, b):\n    return a - b\n",
        "the first file was put back"
    );
    let leftovers: Vec<String> = std::fs::read_dir(ws.join("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("illumo-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_test_executors_own_timeout_is_recorded_as_a_timeout() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    std::fs::write(
        ws.join("tests/test_slow.py"),
        "import time\n\ndef test_hangs():\n    time.sleep(120)\n",
    )
    .unwrap();
    let db = illumo.dir().join("trace.db");
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ws, command: [python3, -m, pytest, -q, -p, no:cacheprovider], timeout: 2s}\n";
    let out = illumo
        .run_flow(flow)
        .args(["--tracer", "sqlite", "--quiet"])
        .args([format!("--tracer-arg=db_path={}", db.display())])
        .run()
        .code(1);
    assert_eq!(out.ctx()["errors"][0]["timed_out"], true);
    assert_eq!(
        crate::support::sqlite3(
            &db,
            "SELECT name, json_extract(attributes, '$.timeout'), json_extract(attributes, '$.error.type') FROM spans WHERE kind = 'node'"
        ),
        "run_tests|1|timeout\n"
    );
    let found = Illumo::new()
        .args([
            "trace",
            "search",
            "--db",
            db.to_str().unwrap(),
            "--timeouts",
            "--format",
            "json",
        ])
        .run()
        .success();
    let spans: serde_json::Value = serde_json::from_str(&found.stdout).unwrap();
    assert_eq!(spans.as_array().map(Vec::len), Some(1));
    assert_eq!(spans[0]["name"], "run_tests");
}
