//! Hostile input, each with the exact input an adversarial run found: nesting that would
//! overflow a stack, numbers that would overflow, special files, diffs and paths the user
//! did not expect. Every one fails at load or is refused with its reason; none hangs.

use crate::support::Illumo;
use serde_json::{json, Value};

/// `validate` and `run` of `flow` give the same load errors, exit 2.
#[track_caller]
fn refused_at_load(flow: &str, expected: &str) {
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let validate = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let run = Illumo::new();
    let run_path = run.flow_file(flow);
    let run = run
        .args(["run", &run_path, "--tracer", "none"])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let shown = |stderr: &str, path: &str| stderr.replace(path, "flow.yaml");
    assert_eq!(shown(&validate.stderr, &path), expected);
    assert_eq!(shown(&run.stderr, &run_path), expected);
    assert_eq!(run.stdout, "", "nothing ran");
}

fn set_flow(value: &str) -> String {
    format!("flow:\n  nodes:\n    a:\n      type: Set\n      setting: {{value: \"{value}\"}}\n")
}

#[test]
fn a_template_of_2000_nested_subexpressions_is_a_load_error_not_a_stack_overflow() {
    let deep = format!("{{{{ {}true{} }}}}", "(not ".repeat(2000), ")".repeat(2000));
    refused_at_load(
        &set_flow(&deep),
        &format!(
            "error: node `a`: invalid template: it nests deeper than 32 levels
 --> flow.yaml:5:188
  |
5 | ...{}...
  |                                            ^
  = help: compute part of it in an earlier node, or split it into several values

error: flow.yaml has 1 error
",
            "(not ".repeat(20)
        ),
    );
}

#[test]
fn if_blocks_nested_2000_and_10000_deep_are_load_errors() {
    for depth in [2000, 10_000] {
        let deep = format!(
            "{}x{}",
            "{{#if $ctx.a}}".repeat(depth),
            "{{/if}}".repeat(depth)
        );
        refused_at_load(
            &set_flow(&deep),
            &format!(
                "error: node `a`: invalid template: it nests deeper than 32 levels
 --> flow.yaml:5:473
  |
5 | ...#if $ctx.a}}}}{}{{{{#i...
  |                                            ^^
  = help: compute part of it in an earlier node, or split it into several values

error: flow.yaml has 1 error
",
                "{{#if $ctx.a}}".repeat(6),
            ),
        );
    }
}

#[test]
fn a_condition_with_100_nested_parentheses_is_a_load_error() {
    let when = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    let flow = format!(
        "flow:\n  nodes:\n    a: {{type: Set, setting: {{value: 1}}}}\n    b: {{type: Set, setting: {{value: 2}}}}\n  edges:\n    - from: a\n      to: b\n      when: \"{when}\"\n"
    );
    refused_at_load(
        &flow,
        &format!(
            "error: invalid condition `{}…`: it nests deeper than 32 levels
 --> flow.yaml:8:46
  |
8 | ... when: \"{}...
  |                                            ^
  = help: split it into simpler conditions (a Router takes several routes)

error: flow.yaml has 1 error
",
            "(".repeat(60),
            "(".repeat(92),
        ),
    );
}

#[test]
fn yaml_nested_100000_deep_fails_at_the_nesting_limit() {
    let flow = format!("flow: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    refused_at_load(
        &flow,
        &format!(
            "error: invalid YAML: the YAML nests deeper than 64 levels
 --> flow.yaml:1:70
  |
1 | ...{}...
  |                                            ^
  = help: flatten the structure; no flow needs this depth

error: flow.yaml has 1 error
",
            "[".repeat(100)
        ),
    );
}

#[test]
fn numeric_settings_out_of_range_are_load_errors() {
    let flow = "flow:
  nodes:
    inspect:
      type: WorkspaceInspector
      setting: {default_root: ., preview_lines: 18446744073709551615, max_bytes: 4294967296000}
    tests:
      type: TestExecutor
      setting: {default_root: ., max_output: 1099511627776}
    agent:
      type: Agent
      setting: {provider: openai, model: m, prompt: hi, temperature: 7, max_tokens: 0}
  edges:
    - inspect >> tests
    - tests >> agent
";
    refused_at_load(
        flow,
        "error: node `inspect`: `preview_lines` must be between 0 and 10000, not 18446744073709551615
 --> flow.yaml:5:49
  |
5 |       setting: {default_root: ., preview_lines: 18446744073709551615, max_bytes: 4294967296000}
  |                                                 ^^^^^^^^^^^^^^^^^^^^

error: node `inspect`: `max_bytes` must be between 0 and 1073741824, not 4294967296000
 --> flow.yaml:5:82
  |
5 |       setting: {default_root: ., preview_lines: 18446744073709551615, max_bytes: 4294967296000}
  |                                                                                  ^^^^^^^^^^^^^

error: node `tests`: `max_output` must be between 0 and 67108864, not 1099511627776
 --> flow.yaml:8:46
  |
8 |       setting: {default_root: ., max_output: 1099511627776}
  |                                              ^^^^^^^^^^^^^

error: node `agent`: `temperature` must be between 0 and 2, not 7
  --> flow.yaml:11:70
   |
11 |       setting: {provider: openai, model: m, prompt: hi, temperature: 7, max_tokens: 0}
   |                                                                      ^

error: node `agent`: `max_tokens` must be between 1 and 1000000, not 0
  --> flow.yaml:11:85
   |
11 |       setting: {provider: openai, model: m, prompt: hi, temperature: 7, max_tokens: 0}
   |                                                                                     ^

error: flow.yaml has 5 errors
",
    );
}

#[test]
fn the_inspector_lists_fifos_sockets_and_device_links_without_opening_them() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    std::fs::write(ws.join("app/ok.py"), "x = 1\n").unwrap();
    let fifo = ws.join("app/pipe.py");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    std::os::unix::fs::symlink("/dev/zero", ws.join("app/zero.py")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(ws.join("app/sock.py")).unwrap();
    // Opening the FIFO would block until a writer came: the run must end on its own,
    // well inside the node's timeout.
    let flow = "flow:\n  nodes:\n    inspect:\n      type: WorkspaceInspector\n      setting: {default_root: ws}\n      policy: {timeout: 1s}\n";
    let out = illumo.run_flow(flow).run().success();
    assert_eq!(
        out.ctx()["workspace"],
        json!({
            "structure": [{"path": "app/ok.py", "size": 6, "preview": "x = 1", "selected": true}],
            "structure_excluded": [
                {"path": "app/pipe.py", "reason": "not a regular file (a FIFO)"},
                {"path": "app/sock.py", "reason": "not a regular file (a socket)"},
                {"path": "app/zero.py", "reason": "symlink"},
            ]
        })
    );
}

/// Runs a Patch over `ws` (with `app/a.py` = `a`, `app/b.py` = `b`) with `diff`, `--write`.
fn patch(diff: &str, allowed: &str) -> (i32, Value, Illumo) {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    std::fs::write(ws.join("app/a.py"), "a\n").unwrap();
    std::fs::write(ws.join("app/b.py"), "b\n").unwrap();
    let flow = format!(
        "flow:\n  nodes:\n    patch:\n      type: Patch\n      setting: {{default_root: ws{allowed}}}\n"
    );
    let path = illumo.flow_file(&flow);
    let context = json!({"diff": {"proposed": diff}}).to_string();
    let out = Illumo::new()
        .args(["run", &path, "--tracer", "none", "--write", "-c", &context])
        .run();
    let applied = out.ctx()["diff"]["applied"].clone();
    (out.code, applied, illumo)
}

fn read(illumo: &Illumo, file: &str) -> String {
    std::fs::read_to_string(illumo.dir().join("ws").join(file)).unwrap_or_default()
}

#[test]
fn a_plain_section_after_a_git_section_is_applied_too() {
    let diff = "diff --git a/app/a.py b/app/a.py\n--- a/app/a.py\n+++ b/app/a.py\n@@ -1 +1 @@\n-a\n+A\n--- a/app/b.py\n+++ b/app/b.py\n@@ -1 +1 @@\n-b\n+B\n";
    let (code, applied, illumo) = patch(diff, "");
    assert_eq!(code, 0);
    assert_eq!(
        applied,
        json!({"ok": true, "files": [{"path": "app/a.py", "status": "patched"}, {"path": "app/b.py", "status": "patched"}], "rejected": [], "written": true})
    );
    assert_eq!(
        (read(&illumo, "app/a.py"), read(&illumo, "app/b.py")),
        ("A\n".into(), "B\n".into())
    );
}

#[test]
fn a_plain_section_leaving_the_workspace_after_a_git_section_is_rejected() {
    let diff = "diff --git a/app/a.py b/app/a.py\n--- a/app/a.py\n+++ b/app/a.py\n@@ -1 +1 @@\n-a\n+A\n--- a/../outside/x.txt\n+++ b/../outside/x.txt\n@@ -0,0 +1 @@\n+x\n";
    let (code, applied, illumo) = patch(diff, "");
    assert_eq!(code, 1);
    assert_eq!(
        applied,
        json!({"ok": false, "error": "the diff was not applied: 1 file rejected (`../outside/x.txt`: `..` would leave the workspace)",
               "rejected": [{"path": "../outside/x.txt", "reason": "`..` would leave the workspace"}], "files": [], "written": false})
    );
    assert_eq!(read(&illumo, "app/a.py"), "a\n", "nothing applied");
    assert!(!illumo.dir().join("outside").exists());
}

#[test]
fn control_characters_git_files_and_dot_lookalikes_are_refused_under_the_default_allowed_paths() {
    let cases = [
        (
            "diff --git \"a/app/evil\\nname.py\" \"b/app/evil\\nname.py\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/app/evil\\nname.py\"\n@@ -0,0 +1 @@\n+x\n",
            "app/evil\nname.py",
            "the path holds a control character (\\n)",
            "app/evil\\nname.py",
        ),
        (
            "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n",
            ".git/hooks/pre-commit",
            "paths inside `.git/` are refused unless allowed_paths names `.git`",
            ".git/hooks/pre-commit",
        ),
        (
            "--- /dev/null\n+++ b/‥/x.py\n@@ -0,0 +1 @@\n+x\n",
            "‥/x.py",
            "`‥` looks like `..`; such names are refused",
            "‥/x.py",
        ),
    ];
    for (diff, path, reason, shown) in cases {
        let (code, applied, illumo) = patch(diff, "");
        assert_eq!(code, 1, "{path}");
        assert_eq!(
            applied,
            json!({"ok": false, "error": format!("the diff was not applied: 1 file rejected (`{shown}`: {reason})"),
                   "rejected": [{"path": path, "reason": reason}], "files": [], "written": false}),
        );
        assert_eq!(read(&illumo, path), "", "{path} was not created");
    }
    // Naming `.git` in allowed_paths is how a flow says it means it.
    let (code, applied, illumo) = patch(
        "--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n",
        ", allowed_paths: [\".git/hooks/*\"]",
    );
    assert_eq!((code, &applied["ok"]), (0, &json!(true)));
    assert_eq!(read(&illumo, ".git/hooks/pre-commit"), "x\n");
}

#[test]
fn secrets_reach_no_trace_no_collector_and_no_terminal() {
    use crate::llm_server::{LlmServer, Reply};
    use crate::support::{sqlite3, TempDir};
    // The credential sits in a variable whose name does not look secret: naming it in
    // `api_key_env` is what makes it one. The token is a `--redact` value.
    let (key, token) = ("desk-credential-9f8e7d", "hunter2-xyz-token");
    // A server that echoes the Authorization header in its error body.
    let server = LlmServer::start(vec![Reply::status(
        401,
        &format!(r#"{{"error": {{"message": "invalid credentials: Bearer {key}"}}}}"#),
    )]);
    let collector = crate::otlp::Collector::start();
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let flow = format!(
        "flow:
  entry: triage
  nodes:
    triage:
      type: Router
      setting:
        routes:
          - {{when: 'ctx.request.token == \"{token}\"', to: ask}}
          - {{default: ask}}
    ask:
      type: Agent
      setting: {{provider: openai, model: m, base_url: '{}', api_key_env: SUPPORT_DESK, prompt: 'Token {{{{ $ctx.request.token }}}}'}}
",
        server.base_url
    );
    let illumo = Illumo::new();
    let path = illumo.flow_file(&flow);
    let context = json!({"request": {"token": token}}).to_string();
    let out = illumo
        .args(["run", &path, "-c", &context, "--redact", token])
        .args([
            "--tracer", "console", "--tracer", "sqlite", "--tracer", "otel",
        ])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .args([
            "--tracer-arg",
            &format!("exporter_endpoint=http://127.0.0.1:{}", collector.grpc),
        ])
        .env("SUPPORT_DESK", key)
        .env("NO_COLOR", "1")
        .run()
        .code(1);
    assert_eq!(
        server.requests()[0].authorization.as_deref(),
        Some(format!("Bearer {key}").as_str()),
        "the key was sent"
    );
    let trace_id = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("trace_id: "))
        .expect("a trace id on stderr")
        .to_string();
    assert_eq!(collector.spans(&trace_id, 3).len(), 3, "every span arrived");
    let exported = std::fs::read_to_string(&collector.log).unwrap();
    let dump = sqlite3(&db, ".dump");
    for (place, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("the SQLite file", &dump),
        ("the collector", &exported),
    ] {
        for secret in [key, token] {
            assert!(!text.contains(secret), "{secret} reached {place}:\n{text}");
        }
    }
    // Masked, not dropped: each place still says what happened.
    let failure = format!(
        "openai (m) at {}/v1 answered 401: invalid credentials: Bearer ***",
        server.base_url
    );
    assert!(
        out.stderr.contains(&format!(
            "error: node `ask` failed on attempt 1 of 1: {failure}\n"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name, json_extract(attributes, '$.error.message') FROM spans WHERE parent_id IS NULL"
        ),
        format!("flow flow|node `ask` failed on attempt 1 of 1: {failure}\n")
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT json_extract(e.attributes, '$.reason') FROM events e JOIN spans s USING (span_id) WHERE s.name = 'triage' AND e.name = 'routing.decision'"
        ),
        "ctx.request.token == \"***\"\n"
    );
    assert!(
        exported.contains("invalid credentials: Bearer ***"),
        "{exported}"
    );
    assert_eq!(out.ctx()["request"]["token"], "***");
}

#[test]
fn a_child_that_closes_its_stdin_early_does_not_kill_illumo() {
    // 1 MB on the stdin of a program that never reads it: a broken pipe for illumo, which
    // must not die of SIGPIPE (exit 141, no ctx) but finish the run.
    let flow = "flow:
  nodes:
    big: {type: Set, setting: {value: '{{ $ctx.s }}'}, outputs: $ctx.t}
    c: {type: Command, setting: {argv: ['true'], stdin: $ctx.t}}
  edges: [big >> c]
";
    let context = json!({"s": "x".repeat(1 << 20)}).to_string();
    let illumo = Illumo::new();
    let file = illumo.dir().join("big.json");
    std::fs::write(&file, context).unwrap();
    let out = illumo
        .run_flow(flow)
        .args(["-c", &format!("@{}", file.display())])
        .run()
        .success();
    assert_eq!(
        out.ctx()["steps"],
        json!([{"node": "big", "status": "ok"}, {"node": "c", "status": "ok"}])
    );
}

#[test]
fn a_collector_that_accepts_and_hangs_up_costs_a_warning_not_the_process() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            drop(stream);
        }
    });
    let mut flow = String::from("flow:\n  nodes:\n");
    for i in 0..200 {
        flow.push_str(&format!(
            "    n{i}: {{type: Set, setting: {{value: {i}}}}}\n"
        ));
    }
    flow.push_str("  edges:\n");
    for i in 0..199 {
        flow.push_str(&format!("    - n{i} >> n{}\n", i + 1));
    }
    let illumo = Illumo::new();
    let path = illumo.flow_file(&flow);
    let out = illumo
        .args(["run", &path, "--quiet", "--tracer", "otel"])
        .args([
            "--tracer-arg",
            &format!("exporter_endpoint=http://127.0.0.1:{port}"),
        ])
        .run()
        .success();
    assert_eq!(out.ctx()["payloads"]["n199"], 199);
    assert!(
        out.stderr.starts_with(&format!(
            "warning: tracer: the otel tracer (grpc http://127.0.0.1:{port}) failed to write: 201 spans were dropped ("
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn patch_refuses_fifos_and_devices_instead_of_reading_them() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("pw");
    std::fs::create_dir_all(ws.join("app")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(ws.join("app/f.py"))
        .status()
        .unwrap();
    assert!(made.success());
    // A character device (/dev/zero's numbers): an endless read.
    let made = std::process::Command::new("mknod")
        .arg(ws.join("app/z.py"))
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod (the tests run as root)");
    let flow = "flow:\n  nodes:\n    p: {type: Patch, setting: {default_root: pw}, policy: {timeout: 1s}}\n";
    let path = illumo.flow_file(flow);
    for (file, what) in [("f.py", "a FIFO"), ("z.py", "a device")] {
        let diff = format!("--- a/app/{file}\n+++ b/app/{file}\n@@ -1 +1 @@\n-a\n+b\n");
        let context = json!({"diff": {"proposed": diff}}).to_string();
        let out = Illumo::new()
            .args(["run", &path, "--quiet", "--tracer", "none", "-c", &context])
            .run()
            .code(1);
        assert_eq!(
            out.ctx()["diff"]["applied"]["rejected"],
            json!([{"path": format!("app/{file}"), "reason": format!("cannot read it: not a regular file ({what})")}])
        );
    }
}

#[test]
fn a_symlink_into_git_is_refused_like_git_itself() {
    let (code, applied, illumo) = {
        let illumo = Illumo::new();
        let ws = illumo.dir().join("ws");
        std::fs::create_dir_all(ws.join(".git")).unwrap();
        std::fs::write(ws.join(".git/config"), "[core]\n").unwrap();
        std::os::unix::fs::symlink(".git", ws.join("g")).unwrap();
        let path = illumo
            .flow_file("flow:\n  nodes:\n    p: {type: Patch, setting: {default_root: ws}}\n");
        let diff = "--- a/g/config\n+++ b/g/config\n@@ -1 +1,2 @@\n [core]\n+\tfsmonitor = \"echo pwned\"\n";
        let context = json!({"diff": {"proposed": diff}}).to_string();
        let out = Illumo::new()
            .args([
                "run", &path, "--quiet", "--tracer", "none", "--write", "-c", &context,
            ])
            .run();
        (out.code, out.ctx()["diff"]["applied"].clone(), illumo)
    };
    assert_eq!(code, 1);
    assert_eq!(
        applied["rejected"],
        json!([{"path": "g/config", "reason": "leads through a symlink to `.git/config`, inside `.git/`; refused unless allowed_paths names `.git`"}])
    );
    assert_eq!(read(&illumo, ".git/config"), "[core]\n");
}

#[test]
fn one_file_under_two_spellings_is_one_file() {
    let diff = "--- a/app/a.py\n+++ b/app/a.py\n@@ -1 +1 @@\n-a\n+A\n--- a/./app//a.py\n+++ b/./app//a.py\n@@ -1 +1,2 @@\n A\n+more\n";
    let (code, applied, illumo) = patch(diff, "");
    assert_eq!(code, 0, "{applied}");
    assert_eq!(
        applied["files"],
        json!([{"path": "app/a.py", "status": "patched"}])
    );
    assert_eq!(read(&illumo, "app/a.py"), "A\nmore\n");
}

#[test]
fn a_git_diff_of_a_crlf_file_applies() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("c.py"), "a\r\nb\r\n").unwrap();
    let path =
        illumo.flow_file("flow:\n  nodes:\n    p: {type: Patch, setting: {default_root: ws}}\n");
    let diff = "diff --git a/c.py b/c.py\nindex 1..2 100644\n--- a/c.py\n+++ b/c.py\n@@ -1,2 +1,2 @@\n-a\r\n+A\r\n b\r\n";
    let context = json!({"diff": {"proposed": diff}}).to_string();
    let out = Illumo::new()
        .args([
            "run", &path, "--quiet", "--tracer", "none", "--write", "-c", &context,
        ])
        .run()
        .success();
    assert_eq!(out.ctx()["diff"]["applied"]["ok"], true);
    assert_eq!(
        std::fs::read_to_string(ws.join("c.py")).unwrap(),
        "A\r\nb\r\n"
    );
}

#[test]
fn a_secret_with_quotes_and_backslashes_is_masked_in_its_escaped_forms_too() {
    use crate::support::sqlite3;
    let secret = r#"pa"ss\word1"#;
    let flow = "flow:
  nodes:
    s: {type: Set, setting: {value: {pw: $env.DB_PASSWORD}}, outputs: $ctx.cfg}
    r: {type: Router, setting: {routes: [{when: 'env.DB_PASSWORD + 1 > 0', to: s2}]}}
    s2: {type: Set, setting: {value: 1}}
  edges: [s >> r]
";
    let illumo = Illumo::new();
    let db = illumo.dir().join("t.db");
    let path = illumo.flow_file(flow);
    let out = illumo
        .args(["run", &path, "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .env("DB_PASSWORD", secret)
        .run()
        .code(1);
    let dump = sqlite3(&db, ".dump");
    for text in [&out.stdout, &out.stderr, &dump] {
        assert!(!text.contains("ss\\"), "{text}");
        assert!(!text.contains("word1"), "{text}");
    }
    assert!(out.stderr.contains("String(\"***\")"), "{}", out.stderr);
}

/// `validate` and `run` both refuse `flow` at load; the first line of what they say.
fn first_load_error(flow: &str) -> String {
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let validate = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let run = Illumo::new()
        .run_flow(flow)
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    assert_eq!(first(&validate.stderr), first(&run.stderr));
    first(&run.stderr)
}

#[test]
fn every_way_of_nesting_a_template_meets_the_same_limit() {
    let cases = [
        ("{{~#if $ctx.a}}".repeat(3000) + "x" + &"{{~/if}}".repeat(3000)),
        ("{{#if $ctx.b}}a".to_string() + &"{{else if $ctx.b}}b".repeat(3000) + "{{else}}z{{/if}}"),
        ("{{#if $ctx.a}}{{!-- }}{{/if}} --}}".repeat(3000) + "x" + &"{{/if}}".repeat(3000)),
        ("{{#if $ctx.a}}{{{{raw}}}}{{/if}}{{{{/raw}}}}".repeat(3000)
            + "x"
            + &"{{/if}}".repeat(3000)),
        ("{{#if $ctx.a}}\\{{/if}}".repeat(3000) + "x" + &"{{/if}}".repeat(3000)),
        (format!(
            "{{{{ eq $ctx.[a'] {}true{} $ctx.[b'] }}}}",
            "(not ".repeat(3000),
            ")".repeat(3000)
        )),
    ];
    for template in cases {
        let flow = format!(
            "flow:\n  nodes:\n    s:\n      type: Set\n      setting:\n        value: {}\n",
            serde_json::to_string(&template).unwrap()
        );
        assert_eq!(
            first_load_error(&flow),
            "error: node `s`: invalid template: it nests deeper than 32 levels",
            "{}",
            &template[..40]
        );
    }
    // Sibling blocks do not add up.
    let siblings = "{{#if $ctx.b}}a{{else if $ctx.c}}b{{else}}c{{/if}}".repeat(200);
    let flow = format!(
        "flow:\n  nodes:\n    s: {{type: Set, setting: {{value: {}}}}}\n",
        serde_json::to_string(&siblings).unwrap()
    );
    Illumo::new()
        .run_flow(&flow)
        .args(["-c", r#"{"b": false, "c": true}"#])
        .run()
        .success();
}

#[test]
fn a_condition_with_thousands_of_operators_is_a_load_error() {
    for condition in [
        format!("ctx.n{} > 0", " + 1".repeat(2000)),
        format!("ctx.n{} > 0", " - -1".repeat(2000)),
        format!("ctx.l{} == 1", "[0]".repeat(2000)),
        format!("ctx.n{} > 0", " + 1".repeat(30000)),
    ] {
        let flow = format!(
            "flow:\n  nodes:\n    r:\n      type: Router\n      setting:\n        routes:\n          - {{when: {}, to: a}}\n    a: {{type: Set, setting: {{value: 1}}}}\n",
            serde_json::to_string(&condition).unwrap()
        );
        let error = first_load_error(&flow);
        assert!(
            error.ends_with(": it holds more than 256 operators")
                || error.ends_with(": it nests deeper than 32 levels"),
            "{error}"
        );
        assert!(
            error.starts_with("error: invalid condition `ctx."),
            "{error}"
        );
    }
}

#[test]
fn aliases_of_a_large_value_are_refused_by_the_bytes_they_copy() {
    // 1 MiB of text copied 1,000 times would take gigabytes.
    let flow = format!(
        "flow:\n  nodes:\n    s:\n      type: Set\n      setting:\n        value:\n          a: &big {}\n          b: [{}]\n",
        "x".repeat(1 << 20),
        vec!["*big"; 1000].join(", ")
    );
    let error = first_load_error(&flow);
    assert_eq!(
        error,
        "error: invalid YAML: aliases copy more than 64 MiB of text"
    );
}

#[test]
fn loops_nested_800_deep_are_a_load_error_not_a_stack_overflow() {
    let mut flow = String::from("flow:\n  entry: l0\n  nodes:\n");
    for i in 0..800 {
        flow.push_str(&format!(
            "    l{i}: {{type: Loop, setting: {{items: [1], body: l{}}}}}\n",
            i + 1
        ));
    }
    flow.push_str("    l800: {type: Set, setting: {value: 1}}\n");
    assert_eq!(
        first_load_error(&flow),
        "error: node `l0` runs bodies nested 800 deep; at most 32"
    );
}

#[test]
fn numbers_yaml_has_but_json_has_not_are_refused_where_a_number_is_wanted() {
    for (setting, why) in [
        (
            "max_cpu_seconds: .inf",
            "`max_cpu_seconds` must be a whole number, 0 or more, not `.inf`",
        ),
        (
            "max_output: 1.5",
            "`max_output` must be a whole number, 0 or more, not `1.5`",
        ),
        (
            "max_file_mb: -1",
            "`max_file_mb` must be a whole number, 0 or more, not `-1`",
        ),
    ] {
        let flow = format!("flow:\n  nodes:\n    t:\n      type: TestExecutor\n      setting: {{default_root: ., {setting}}}\n");
        assert_eq!(first_load_error(&flow), format!("error: node `t`: {why}"));
    }
    // As a value, `.inf` is text: JSON has no infinity.
    let ctx = Illumo::new()
        .run_flow("flow:\n  nodes:\n    s: {type: Set, setting: {value: [.inf, .nan, 1e400]}, outputs: $ctx.v}\n")
        .run()
        .success()
        .ctx();
    assert_eq!(ctx["v"], json!([".inf", ".nan", "1e400"]));
}

#[test]
fn reply_files_that_are_devices_are_refused_not_read_until_memory_runs_out() {
    let flow = "flow:\n  nodes:\n    a: {type: Agent, setting: {provider: scripted, prompt: hi}}\n";
    for mode in ["scripted", "replay"] {
        let out = Illumo::new()
            .run_flow(flow)
            .args(["--llm", &format!("{mode}=/dev/zero")])
            .env("NO_COLOR", "1")
            .run()
            .code(2);
        let what = if mode == "scripted" {
            "scripted replies"
        } else {
            "cassette"
        };
        assert!(
            out.stderr.contains(&format!(
                "cannot read {what} `/dev/zero`: not a regular file (a device)"
            )),
            "{}",
            out.stderr
        );
    }
}
