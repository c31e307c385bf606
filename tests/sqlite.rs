//! The sqlite tracer, read back with the `sqlite3` CLI as a user would.

use crate::support::{sqlite3, sqlite3_try, Illumo, TempDir};
use std::process::{Command, Stdio};

/// Runs `examples/basics/retry_timeout_goto.yaml` into `db` and returns its trace id.
pub fn record_retry_example(db: &std::path::Path, work: &std::path::Path) -> String {
    let context = serde_json::json!({"work_dir": work}).to_string();
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/retry_timeout_goto.yaml",
            "-c",
            &context,
            "--tracer",
            "sqlite",
        ])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    out.stderr
        .trim()
        .strip_prefix("trace_id: ")
        .expect("trace id at the end")
        .to_string()
}

#[test]
fn spans_and_events_are_rows_readable_with_the_sqlite3_cli() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = record_retry_example(&db, &dir.path().join("work"));
    assert_eq!(
        sqlite3(&db, "PRAGMA journal_mode; PRAGMA user_version;"),
        "wal\n4\n"
    );
    // The documented joins of events to their spans use an index.
    assert_eq!(
        sqlite3(&db, "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"),
        "events_by_span\nevents_by_trace\nruns_by_start\nspans_by_trace\n"
    );
    assert_eq!(
        sqlite3(
            &db,
            "EXPLAIN QUERY PLAN SELECT * FROM events WHERE span_id = 'x'"
        )
        .lines()
        .last()
        .map(|l| l
            .trim_start_matches(|c: char| !c.is_alphabetic())
            .to_string()),
        Some("SEARCH events USING INDEX events_by_span (span_id=?)".to_string())
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name, kind, status, json_extract(attributes, '$.attempt'), parent_id IS NULL FROM spans ORDER BY start_time"
        ),
        "flow retry_timeout_goto|flow|OK||1\nprepare|node|OK|1|0\nflaky|node|ERROR|1|0\nflaky|node|ERROR|2|0\nflaky|node|OK|3|0\nslow|node|ERROR|1|0\nfallback|node|OK|1|0\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT s.name, e.name, e.level FROM events e JOIN spans s USING (span_id) ORDER BY e.id"),
        "flaky|node.retry|WARN\nflaky|node.retry|WARN\nflaky|ctx.write|INFO\nslow|node.timeout|WARN\nslow|node.error|ERROR\nslow|node.goto|WARN\nfallback|ctx.write|INFO\n"
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT DISTINCT trace_id FROM spans UNION SELECT DISTINCT trace_id FROM events"
        ),
        format!("{trace_id}\n"),
        "one trace id for the run, shared by spans and events"
    );
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM spans s JOIN spans p ON s.parent_id = p.span_id WHERE p.kind = 'flow'"),
        "6\n",
        "every node attempt is a child of the flow span"
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT json_extract(attributes, '$.node.type'), json_extract(attributes, '$.policy.timeout'), json_extract(attributes, '$.error.type'), json_extract(attributes, '$.timeout') FROM spans WHERE name = 'slow'"
        ),
        "Command|300ms|timeout|1\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT json_extract(attributes, '$.delay_ms') FROM events WHERE name = 'node.retry' ORDER BY id"),
        "50\n100\n"
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT count(*) FROM spans WHERE start_time GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z' AND end_time > start_time AND duration_ms >= 0"
        ),
        "7\n"
    );
}

#[test]
fn the_store_reader_sees_the_same_rows() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = record_retry_example(&db, &dir.path().join("work"));
    let conn = illumo_tracers::store::open(&db).unwrap();
    let runs = illumo_tracers::store::list_runs(&conn, 10).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].trace_id.as_str(),
            runs[0].flow.as_str(),
            runs[0].status.as_str(),
            runs[0].nodes
        ),
        (trace_id.as_str(), "retry_timeout_goto", "OK", 6)
    );
    let spans = illumo_tracers::store::trace(&conn, &trace_id).unwrap();
    let slow = spans.iter().find(|s| s.name == "slow").unwrap();
    let events: Vec<&str> = slow.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["node.timeout", "node.error", "node.goto"]);
    assert_eq!(
        slow.attributes["input"]["preview"], "{\"attempts\":3,\"ok\":true}",
        "its input is the previous output"
    );
}

#[test]
fn twenty_concurrent_runs_share_one_file_and_lose_nothing() {
    let dir = TempDir::new();
    let db = dir.path().join("shared.db");
    let flow = dir.write(
        "flow.yaml",
        "flow:\n  name: many\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n    b: {type: Set, setting: {value: 2}}\n    c: {type: Set, setting: {value: 3}}\n  edges:\n    - a >> (b | c)\n",
    );
    let children: Vec<_> = (0..20)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_illumo"))
                .args([
                    "run",
                    flow.to_str().unwrap(),
                    "--quiet",
                    "--tracer",
                    "sqlite",
                ])
                .arg(format!("--tracer-arg=db_path={}", db.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        sqlite3(&db, "SELECT count(DISTINCT trace_id), count(*) FROM spans"),
        "20|80\n"
    );
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM (SELECT trace_id FROM spans GROUP BY trace_id HAVING count(*) = 4 AND sum(status = 'OK') = 4)"),
        "20\n"
    );
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok\n");
}

#[test]
fn a_run_killed_mid_flight_leaves_a_sound_database_with_what_was_flushed() {
    let dir = TempDir::new();
    let db = dir.path().join("killed.db");
    let flow = dir.write(
        "flow.yaml",
        "flow:\n  name: killed\n  nodes:\n    first: {type: Set, setting: {value: 1}}\n    long:\n      type: Command\n      setting: {argv: [python3, -c, \"import time; time.sleep(5)\"]}\n  edges:\n    - first >> long\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_illumo"))
        .args([
            "run",
            flow.to_str().unwrap(),
            "--quiet",
            "--tracer",
            "sqlite",
        ])
        .arg(format!("--tracer-arg=db_path={}", db.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read the database while the run writes it, until the long node has started.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let started = loop {
        let seen = sqlite3_try(&db, "SELECT count(*) FROM spans WHERE name = 'long'");
        if seen.as_deref() == Some("1\n") {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        started,
        "the long node never showed up while the run was writing"
    );
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok\n");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name, status, end_time IS NOT NULL FROM spans ORDER BY start_time"
        ),
        "flow killed|UNSET|0\nfirst|OK|1\nlong|UNSET|0\n"
    );
}

#[test]
fn secrets_never_reach_the_database() {
    let dir = TempDir::new();
    let db = dir.path().join("secret.db");
    let flow = "flow:\n  nodes:\n    leak:\n      type: Command\n      setting: {argv: [python3, -c, \"import os, sys; print(os.environ['DEMO_API_KEY'], 'and', sys.argv[1]); sys.exit(1)\", customer-4711]}\n      policy: {on_error: continue}\n";
    let illumo = Illumo::new().env("DEMO_API_KEY", "sk-very-secret-value");
    let path = illumo.flow_file(flow);
    illumo
        .args([
            "run",
            path.as_str(),
            "--tracer",
            "sqlite",
            "--redact",
            "customer-4711",
        ])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    let everything = sqlite3(
        &db,
        "SELECT attributes FROM spans UNION ALL SELECT attributes FROM events",
    );
    assert!(
        !everything.contains("sk-very-secret-value") && !everything.contains("customer-4711"),
        "{everything}"
    );
    assert!(everything.contains("*** and ***"), "{everything}");
}

#[test]
fn a_database_from_a_newer_illumo_is_refused() {
    let dir = TempDir::new();
    let db = dir.path().join("future.db");
    sqlite3(&db, "PRAGMA user_version = 99");
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let out = illumo
        .args([
            "run",
            path.as_str(),
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ])
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        format!("error: cannot connect to the sqlite tracer at `{}`: it has schema version 99, newer than this illumo knows (4); upgrade illumo\n", db.display())
    );
}

/// `illumo run` of a one-node flow into `db`, and `illumo trace list --db db`.
fn run_and_list(db: &std::path::Path) -> (crate::support::Output, crate::support::Output) {
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    let run = illumo
        .args(["run", path.as_str(), "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run();
    let list = Illumo::new()
        .args(["trace", "list", "--db", &db.display().to_string()])
        .run();
    (run, list)
}

#[test]
fn an_illumo_database_that_lost_its_version_is_brought_back() {
    // `sqlite3 .dump` keeps the tables and loses `user_version`.
    let dir = TempDir::new();
    let (original, copy) = (dir.path().join("original.db"), dir.path().join("copy.db"));
    let (run, _) = run_and_list(&original);
    run.success();
    let dump = sqlite3(&original, ".dump");
    sqlite3(&copy, &dump);
    assert_eq!(sqlite3(&copy, "PRAGMA user_version"), "0\n");
    let (run, list) = run_and_list(&copy);
    run.success();
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout.lines().count(), 3, "two runs:\n{}", list.stdout);
    assert_eq!(
        sqlite3(&copy, "PRAGMA user_version; SELECT count(*) FROM spans; SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE '%_by_%'"),
        "4\n4\n4\n"
    );
}

#[test]
fn another_programs_tables_stop_the_run_before_it_starts() {
    let dir = TempDir::new();
    let db = dir.path().join("theirs.db");
    sqlite3(
        &db,
        "CREATE TABLE spans (id INTEGER, what TEXT); CREATE TABLE events (x); INSERT INTO spans VALUES (1, 'theirs'); PRAGMA user_version = 1",
    );
    let (run, list) = run_and_list(&db);
    let run = run.code(2);
    assert_eq!(
        run.stderr,
        format!("error: cannot connect to the sqlite tracer at `{}`: its `spans` table is not illumo's (it has no column `span_id`): the file belongs to another program; give the tracer a file of its own with `--tracer-arg db_path=PATH`\n", db.display())
    );
    assert_eq!(run.stdout, "", "the flow did not run");
    assert_eq!(list.code, 2);
    assert_eq!(
        list.stderr,
        format!("error: `{}` cannot be read: its `spans` table is not illumo's (it has no column `span_id`): the file belongs to another program\n", db.display())
    );
    assert_eq!(
        sqlite3(&db, "SELECT * FROM spans; PRAGMA user_version"),
        "1|theirs\n1\n",
        "their data is untouched"
    );
}

#[test]
fn a_negative_schema_version_is_shown_as_it_is() {
    let dir = TempDir::new();
    let db = dir.path().join("negative.db");
    sqlite3(&db, "CREATE TABLE t (x); PRAGMA user_version = -1");
    let (run, list) = run_and_list(&db);
    assert_eq!(
        run.code(2).stderr,
        format!("error: cannot connect to the sqlite tracer at `{}`: its schema version (`PRAGMA user_version`) is -1, which no illumo writes: the file belongs to another program; give the tracer a file of its own with `--tracer-arg db_path=PATH`\n", db.display())
    );
    assert_eq!(
        list.code(2).stderr,
        format!("error: `{}` cannot be read: its schema version (`PRAGMA user_version`) is -1, which no illumo writes: the file belongs to another program\n", db.display())
    );
}

#[test]
fn a_database_without_illumos_tables_is_named_as_such() {
    let dir = TempDir::new();
    let db = dir.path().join("other.db");
    sqlite3(&db, "CREATE TABLE t (x)");
    let list = Illumo::new()
        .args(["trace", "list", "--db", &db.display().to_string()])
        .run()
        .code(2);
    assert_eq!(
        list.stderr,
        format!(
            "error: `{}` is not an illumo trace database (it has no `spans` table)\n",
            db.display()
        )
    );
}

#[test]
fn missing_folders_for_the_database_and_the_output_are_created() {
    let dir = TempDir::new();
    let db = dir.path().join("traces/2026/run.db");
    let out_file = dir.path().join("results/latest/ctx.json");
    let flow = "flow:\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}\n";
    let illumo = Illumo::new();
    let path = illumo.flow_file(flow);
    illumo
        .args(["run", path.as_str(), "--quiet", "--tracer", "sqlite"])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .args(["-o", &out_file.display().to_string()])
        .run()
        .success();
    assert_eq!(
        sqlite3(&db, "SELECT name FROM spans ORDER BY name"),
        "a\nflow flow\n"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(written["a"], 1);
}

/// Sends `signal` to a run whose second node sleeps in a child process, and checks that
/// the run stops with `code`, every span is ended and the child is gone.
fn signal_stops_the_run(signal: &str, code: i32) {
    let dir = TempDir::new();
    let db = dir.path().join("interrupted.db");
    let pid_file = dir.path().join("child.pid");
    let flow = dir.write(
        "flow.yaml",
        &format!("flow:\n  name: interrupted\n  nodes:\n    first: {{type: Set, setting: {{value: 1}}}}\n    long:\n      type: Command\n      setting: {{argv: [python3, -c, \"import os, time; open('{}', 'w').write(str(os.getpid())); time.sleep(60)\"]}}\n  edges:\n    - first >> long\n", pid_file.display()),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_illumo"))
        .args(["run", flow.to_str().unwrap(), "--tracer", "sqlite"])
        .arg(format!("--tracer-arg=db_path={}", db.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&pid_file).map_or(true, |p| p.is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the long node never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(code));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("interrupted by SIG{signal}: stopping the running nodes\nerror: the run was interrupted by SIG{signal}\n")),
        "{stderr}"
    );
    assert_eq!(
        sqlite3(&db, "SELECT name, status, end_time IS NOT NULL, json_extract(attributes, '$.error.type'), json_extract(attributes, '$.error.message') FROM spans ORDER BY start_time"),
        format!("flow interrupted|ERROR|1|interrupted|the run was interrupted by SIG{signal}\nfirst|OK|1||\nlong|ERROR|1|fatal|cancelled: the run stopped before this attempt finished\n")
    );
    // The node's child process was killed with its process group (its command line
    // names the pid file, whatever pid it had in its namespace).
    let token = pid_file.display().to_string();
    assert_eq!(
        crate::support::gone(&token),
        Vec::<u32>::new(),
        "the child outlived the run"
    );
}

#[test]
fn ctrl_c_stops_the_run_flushes_every_span_and_exits_130() {
    signal_stops_the_run("INT", 130);
}

#[test]
fn sigterm_stops_the_run_kills_its_children_and_exits_143() {
    signal_stops_the_run("TERM", 143);
}

#[test]
fn sighup_stops_the_run_kills_its_children_and_exits_129() {
    signal_stops_the_run("HUP", 129);
}

#[test]
fn a_routers_span_carries_its_decision() {
    let dir = TempDir::new();
    let db = dir.path().join("route.db");
    Illumo::new()
        .args([
            "run",
            "examples/basics/command.yaml",
            "-c",
            r#"{"scores": [0.9]}"#,
            "--tracer",
            "sqlite",
        ])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    assert_eq!(
        sqlite3(
            &db,
            "SELECT json_extract(attributes, '$.routing') FROM spans WHERE name = 'verdict'"
        ),
        "{\"targets\":[\"accept\"],\"confidence\":1.0,\"reason\":\"ctx.stats.mean >= 0.5\"}\n"
    );
}

#[test]
fn the_designs_query_runs_as_written() {
    // DESIGN Appendix B: spans(span_id, trace_id, parent_id, name, start, end, status,
    // attributes), events(id, span_id, name, timestamp, attributes).
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    record_retry_example(&db, &dir.path().join("work"));
    let out = Command::new("sqlite3")
        .args(["-header", db.to_str().unwrap()])
        .arg("SELECT * FROM spans ORDER BY start DESC LIMIT 10")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("span_id|trace_id|parent_id|name|kind|start_time|end_time|duration_ms|status|attributes|start|end")
    );
    assert_eq!(lines.count(), 7);
    assert_eq!(
        sqlite3(
            &db,
            "SELECT name, start = start_time, \"end\" = end_time FROM spans ORDER BY start DESC LIMIT 2; SELECT count(*) FROM events WHERE id > 0 AND span_id IN (SELECT span_id FROM spans) AND name <> '' AND timestamp <> '' AND attributes <> ''"
        ),
        "fallback|1|1\nslow|1|1\n7\n"
    );
}

#[test]
fn a_database_of_the_first_schema_gains_the_span_index() {
    let dir = TempDir::new();
    let db = dir.path().join("old.db");
    let illumo_tracers::sqlite::Migration::Sql(first) = illumo_tracers::sqlite::MIGRATIONS[0]
    else {
        panic!("the first migration is SQL");
    };
    sqlite3(&db, &format!("{first} PRAGMA user_version = 1;"));
    record_retry_example(&db, &dir.path().join("work"));
    assert_eq!(sqlite3(&db, "PRAGMA user_version"), "4\n");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'events_by_span'"
        ),
        "1\n"
    );
}

#[test]
fn a_schema_version_without_its_tables_stops_the_run_before_it_starts() {
    let dir = TempDir::new();
    let db = dir.path().join("v3.db");
    sqlite3(
        &db,
        "CREATE TABLE users (name TEXT); PRAGMA user_version = 3",
    );
    let (run, _) = run_and_list(&db);
    assert_eq!(
        run.code(2).stderr,
        format!("error: cannot connect to the sqlite tracer at `{}`: it says schema version 3 (`PRAGMA user_version`) but has no `spans` table: the file belongs to another program; give the tracer a file of its own with `--tracer-arg db_path=PATH`\n", db.display())
    );
    assert_eq!(
        sqlite3(&db, "SELECT name FROM sqlite_master"),
        "users\n",
        "nothing created"
    );
}

/// Traces keep whole prompts (system, history, user) up to `max_text`, and the root span
/// the run's input and final ctx, with secrets replaced.
#[test]
fn traces_keep_full_prompts_and_the_runs_ctx() {
    let dir = TempDir::new();
    let system = format!("You are careful. {}", "Rule. ".repeat(200));
    dir.write("r.yaml", "replies: {talk: [fine]}\n");
    dir.write(
        "flow.yaml",
        &format!(
            "flow:\n  name: t\n  nodes:\n    talk:\n      type: Agent\n      setting: {{provider: scripted, responses: r.yaml, system: '{system}', prompt: 'hello {{{{ $ctx.who }}}}', history_path: $ctx.chat}}\n"
        ),
    );
    let db = dir.path().join("t.db");
    let run = |extra: &[&str]| {
        let _ = std::fs::remove_file(&db);
        Illumo::new()
            .in_dir(dir.path())
            .args(["run", "flow.yaml", "-q", "--tracer", "sqlite", "--tracer-arg", "db_path=t.db"])
            .args(["-c", r#"{"who": "ada", "token": "tok-98765-secret", "chat": [{"role": "user", "content": "earlier"}]}"#])
            .args(["--redact", "tok-98765-secret"])
            .args(extra)
            .run()
            .success()
    };
    run(&[]);
    let messages = sqlite3(
        &db,
        "SELECT json_extract(attributes, '$.messages') FROM events WHERE name = 'agent.request'",
    );
    let messages: serde_json::Value = serde_json::from_str(messages.trim()).unwrap();
    assert_eq!(
        messages,
        serde_json::json!([
            {"role": "system", "content": system},
            {"role": "user", "content": "earlier"},
            {"role": "user", "content": "hello ada"}
        ])
    );
    let input = sqlite3(
        &db,
        "SELECT json_extract(attributes, '$.input.ctx') FROM spans WHERE kind = 'flow'",
    );
    assert_eq!(input, "{\"who\":\"ada\",\"token\":\"***\",\"chat\":[{\"role\":\"user\",\"content\":\"earlier\"}]}\n");
    let output = sqlite3(
        &db,
        "SELECT json_extract(attributes, '$.output.ctx') FROM spans WHERE kind = 'flow'",
    );
    assert!(
        output.contains("\"agents\":{\"talk\":\"fine\"}"),
        "{output}"
    );
    assert!(!sqlite3(&db, ".dump").contains("tok-98765-secret"));

    run(&["--tracer-arg", "max_text=100"]);
    let cut = sqlite3(&db, "SELECT json_extract(attributes, '$.messages[0].content') FROM events WHERE name = 'agent.request'");
    assert_eq!(
        cut.trim_end().chars().count(),
        101,
        "100 characters and …: {cut}"
    );
    assert!(cut.trim_end().ends_with('…'));
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "--tracer",
            "sqlite",
            "--tracer-arg",
            "max_text=5",
        ])
        .run()
        .code(2);
    assert_eq!(bad.stderr, "error: --tracer-arg max_text=5: expected a number of characters from 100 to 16777216 (default 16384)\n");
}

/// When the run ends the trace is whole in the one file: no `-wal` or `-shm` beside it, so
/// the file alone (copied, attached to a bug report) holds every span, and it can be read
/// from a folder the reader cannot write.
#[test]
fn a_finished_run_leaves_one_file_that_holds_the_whole_trace() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = record_retry_example(&db, &dir.path().join("work"));
    let mut beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trace.db"))
        .collect();
    beside.sort();
    assert_eq!(beside, ["trace.db"]);
    // The file alone, in a folder of its own that nobody may write.
    let shelf = dir.path().join("shelf");
    std::fs::create_dir(&shelf).unwrap();
    std::fs::copy(&db, shelf.join("copy.db")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_illumo"), shelf.join("illumo")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(shelf.join("copy.db"), 0o444), (shelf.clone(), 0o555)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let dir_mode = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(dir.path(), dir_mode).unwrap();
    // Root may write anywhere: read as `nobody` then, as a user without write access would.
    let mut cmd = if unsafe { libc::getuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c.arg(shelf.join("illumo"));
        c
    } else {
        Command::new(shelf.join("illumo"))
    };
    let out = cmd
        .args(["trace", "list", "--format", "json", "--db"])
        .arg(shelf.join("copy.db"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::set_permissions(&shelf, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["trace_id"], trace_id.as_str());
    assert_eq!(runs[0]["nodes"], 6);
    assert_eq!(
        sqlite3(&shelf.join("copy.db"), "SELECT count(*) FROM spans"),
        "7\n"
    );
}
