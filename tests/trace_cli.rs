//! `illumo trace list|show|search` over a recorded run.

use crate::sqlite::record_retry_example;
use crate::support::{normalize, Illumo, TempDir};

#[test]
fn list_show_and_search_a_recorded_run() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = record_retry_example(&db, &dir.path().join("work"));
    let db = db.display().to_string();

    let list = Illumo::new()
        .args(["trace", "list", "--db", &db])
        .run()
        .success();
    // Column widths follow the values; compare the words of each row.
    let rows: Vec<String> = normalize(&list.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "TRACE ID FLOW START DURATION STATUS NODES STATE RESUME TOKENS COST",
            "<trace_id> retry_timeout_goto <time> <dur> OK 6 ok no - -"
        ]
    );

    let show = Illumo::new()
        .args(["trace", "show", &trace_id[..8], "--db", &db])
        .run()
        .success();
    assert_eq!(
        normalize(&show.stdout),
        "✓ flow retry_timeout_goto  OK  <dur>  trace <trace_id>  started <time>
  ✓ prepare (Command)  <dur>
  ✗ flaky (Command) attempt 1/3  <dur>  `python3` exited with code 1: attempt 1: not yet
      · node.retry  attempt=1 next_attempt=2 max_attempts=3 delay_ms=50 error=`python3` exited with code 1: attempt 1: not yet
  ✗ flaky (Command) attempt 2/3  <dur>  `python3` exited with code 1: attempt 2: not yet
      · node.retry  attempt=2 next_attempt=3 max_attempts=3 delay_ms=100 error=`python3` exited with code 1: attempt 2: not yet
  ✓ flaky (Command) attempt 3/3  <dur>
      · ctx.write  path=$ctx.flaky
  ✗ slow (Command)  <dur>  timed out after <dur>
      · node.timeout  timeout=<dur> attempt=1
      · node.error  attempt=1 message=timed out after <dur> timed_out=true action=goto fallback
      · node.goto  target=fallback
  ✓ fallback (Set)  <dur>
      · ctx.write  path=$ctx.outcome
"
    );

    let json = Illumo::new()
        .args(["trace", "show", &trace_id, "--db", &db, "--format", "json"])
        .run()
        .success();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["trace_id"], trace_id.as_str());
    let names: Vec<&str> = value["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "flow retry_timeout_goto",
            "prepare",
            "flaky",
            "flaky",
            "flaky",
            "slow",
            "fallback"
        ]
    );

    let timeouts = Illumo::new()
        .args([
            "trace",
            "search",
            "--db",
            &db,
            "--timeouts",
            "--format",
            "json",
        ])
        .run()
        .success();
    let value: serde_json::Value = serde_json::from_str(&timeouts.stdout).unwrap();
    assert_eq!(value.as_array().map(|a| a.len()), Some(1));
    assert_eq!(value[0]["name"], "slow");

    let errors = Illumo::new()
        .args([
            "trace", "search", "--db", &db, "--status", "error", "--node", "flaky",
        ])
        .run()
        .success();
    assert_eq!(errors.stdout.lines().count(), 3, "{}", errors.stdout);
    let by_attr = Illumo::new()
        .args([
            "trace",
            "search",
            "--db",
            &db,
            "--attr",
            "node.type=Set",
            "--format",
            "json",
        ])
        .run()
        .success();
    let value: serde_json::Value = serde_json::from_str(&by_attr.stdout).unwrap();
    assert_eq!(value[0]["name"], "fallback");
}

#[test]
fn trace_errors_are_clear() {
    Illumo::new()
        .args(["trace", "list", "--db", "/nonexistent/trace.db"])
        .run()
        .code(2)
        .stderr("error: no trace database at `/nonexistent/trace.db`\n");
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = record_retry_example(&db, &dir.path().join("work"));
    // A prefix that differs from the one trace in its first digit cannot match it.
    let first = if trace_id.starts_with('0') { '1' } else { '0' };
    let other = format!("{first}{}", &trace_id[1..4]);
    Illumo::new()
        .args(["trace", "show", &other, "--db", db.to_str().unwrap()])
        .run()
        .code(2)
        .stderr(&format!(
            "error: no trace `{other}` in this database; `illumo trace list` shows the runs\n"
        ));
    Illumo::new()
        .args(["trace", "show", "zz", "--db", db.to_str().unwrap()])
        .run()
        .code(2)
        .stderr("error: `zz` is not a trace id (32 hex digits, or a unique prefix)\n");
}

#[test]
fn durations_no_clock_gives_do_not_crash_the_reader() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    record_retry_example(&db, &dir.path().join("work"));
    crate::support::sqlite3(
        &db,
        "UPDATE spans SET duration_ms = 1e300 WHERE kind = 'flow'",
    );
    let list = Illumo::new()
        .args(["trace", "list", "--db", db.to_str().unwrap()])
        .run()
        .success();
    let row: Vec<String> = normalize(&list.stdout)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        row,
        [
            "<trace_id>",
            "retry_timeout_goto",
            "<time>",
            "?",
            "OK",
            "6",
            "ok",
            "no",
            "-",
            "-"
        ]
    );
}

#[test]
fn showing_a_failed_run_says_why_it_failed() {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let flow = dir.write(
        "flow.yaml",
        "flow:\n  name: spin\n  max_steps: 3\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n    b: {type: Set, setting: {value: 2}}\n  edges:\n    - a >> b >> a\n",
    );
    Illumo::new()
        .args([
            "run",
            flow.to_str().unwrap(),
            "--tracer",
            "sqlite",
            "--quiet",
        ])
        .args([format!("--tracer-arg=db_path={}", db.display())])
        .run()
        .code(1);
    let show = Illumo::new()
        .args([
            "trace",
            "list",
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ])
        .run()
        .success();
    let runs: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let trace_id = runs[0]["trace_id"].as_str().unwrap().to_string();
    let show = Illumo::new()
        .args(["trace", "show", &trace_id, "--db", db.to_str().unwrap()])
        .run()
        .success();
    assert_eq!(
        normalize(&show.stdout),
        "✗ flow spin  ERROR  <dur>  trace <trace_id>  started <time>
  error: max_steps (3) exceeded in cycle `b -> a -> b`
  ✓ a (Set)  <dur>
  ✓ b (Set)  <dur>
  ✓ a (Set)  <dur>
"
    );
}

/// `--events FILE`: one JSON line per run event, as the run goes.
#[test]
fn events_stream_the_run_as_json_lines() {
    let dir = TempDir::new();
    let events = dir.path().join("out/events.jsonl");
    Illumo::new()
        .args([
            "run",
            "examples/basics/retry_timeout_goto.yaml",
            "--tracer",
            "none",
            "-q",
        ])
        .args([
            "-c",
            &format!(r#"{{"work_dir": "{}"}}"#, dir.path().join("work").display()),
        ])
        .args(["--events", &events.display().to_string(), "-o", "/dev/null"])
        .run()
        .success();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let trace = lines[0]["trace_id"].as_str().unwrap().to_string();
    assert!(lines
        .iter()
        .all(|l| l["trace_id"] == trace.as_str() && l["at"].as_str().unwrap().ends_with('Z')));
    let shown: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] != "ctx.write")
        .map(|l| {
            let node = l["node"].as_str().unwrap_or("-");
            match l["event"].as_str().unwrap() {
                "node.end" => format!(
                    "node.end {node} {} {}",
                    l["attempt"],
                    l["status"].as_str().unwrap()
                ),
                "node.start" => format!("node.start {node} {}", l["attempt"]),
                "run.end" => format!("run.end {}", l["status"].as_str().unwrap()),
                other => format!("{other} {node}"),
            }
        })
        .collect();
    assert_eq!(
        shown,
        [
            "run.start -",
            "node.start prepare 1",
            "node.end prepare 1 ok",
            "node.start flaky 1",
            "node.retry flaky",
            "node.end flaky 1 error",
            "node.start flaky 2",
            "node.retry flaky",
            "node.end flaky 2 error",
            "node.start flaky 3",
            "node.end flaky 3 ok",
            "node.start slow 1",
            "node.timeout slow",
            "node.error slow",
            "node.goto slow",
            "node.end slow 1 error",
            "node.start fallback 1",
            "node.end fallback 1 ok",
            "run.end ok",
        ]
    );
    let retry = lines.iter().find(|l| l["event"] == "node.retry").unwrap();
    assert_eq!(retry["attributes"]["delay_ms"], 50);
    let slow = lines
        .iter()
        .find(|l| l["event"] == "node.end" && l["node"] == "slow")
        .unwrap();
    assert_eq!(
        (&slow["timed_out"], &slow["error"]["type"]),
        (&true.into(), &"timeout".into())
    );
    let end = lines.last().unwrap();
    assert_eq!(
        (&end["flow"], end["duration_ms"].is_f64()),
        (&"retry_timeout_goto".into(), true)
    );
}

#[test]
fn events_on_stdout_come_before_the_ctx_and_keep_secrets_out() {
    let out = Illumo::new()
        .run_flow("flow:\n  name: s\n  nodes:\n    a: {type: Set, setting: {value: 'key sk-test-0123456789'}, outputs: $ctx.a}\n")
        .args(["--events", "-", "-q", "--redact", "sk-test-0123456789"])
        .run()
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(lines[..5].iter().all(|l| l.starts_with("{\"event\":")));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(lines[5]).unwrap()["a"],
        "key ***"
    );
    assert!(!out.stdout.contains("sk-test-0123456789"));
}

#[test]
fn trace_list_filters_and_counts_tokens_and_show_prints_io() {
    let dir = TempDir::new();
    let db = dir.path().join("t.db");
    let db_arg = db.display().to_string();
    for message in ["How do I reset my password?", "What's the weather on Mars?"] {
        Illumo::new()
            .args([
                "run",
                "examples/multi_agent/chat_bot/faq_flow.yaml",
                "-c",
                "@examples/multi_agent/chat_bot/context.json",
            ])
            .args([
                "--set",
                &format!("chat.message={message}"),
                "--set",
                "support.threshold=0.0",
            ])
            .args([
                "--tracer",
                "sqlite",
                "--tracer-arg",
                &format!("db_path={db_arg}"),
                "-q",
                "-o",
                "/dev/null",
            ])
            .run()
            .success();
    }
    dir.write("fail.yaml", "flow:\n  name: boom\n  nodes:\n    x: {type: Command, setting: {argv: [sh, -c, 'exit 3']}}\n");
    Illumo::new()
        .args([
            "run",
            &dir.path().join("fail.yaml").display().to_string(),
            "--trace-db",
            &db_arg,
            "-q",
        ])
        .run()
        .code(1);
    let list = |args: &[&str]| {
        let out = Illumo::new()
            .args(["trace", "list", "--db", &db_arg, "--format", "json"])
            .args(args)
            .run()
            .success();
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let all = list(&[]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let failed = list(&["--status", "failed"]);
    assert_eq!(
        (
            failed.as_array().unwrap().len(),
            &failed[0]["flow"],
            &failed[0]["tokens"]
        ),
        (1, &"boom".into(), &serde_json::Value::Null)
    );
    let chats = list(&["--flow", "support_chatbot"]);
    let tokens: Vec<i64> = chats
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tokens"].as_i64().unwrap())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| *t > 100), "{tokens:?}");
    assert_eq!(list(&["--since", "1h"]).as_array().unwrap().len(), 3);
    assert_eq!(
        chats[0]["cost_usd"],
        serde_json::Value::Null,
        "no price table"
    );
    assert_eq!(
        list(&["--since", "2999-01-01T00:00"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let bad = Illumo::new()
        .args(["trace", "list", "--db", &db_arg, "--status", "done"])
        .run()
        .code(2);
    assert_eq!(
        bad.stderr,
        "error: --status `done`: a run is ok, failed, interrupted, paused or running\n"
    );

    let show = Illumo::new()
        .args([
            "trace",
            "show",
            "--db",
            &db_arg,
            "--io",
            &chats[0]["trace_id"].as_str().unwrap()[..8],
        ])
        .run()
        .success();
    assert!(
        show.stdout.contains("  ✓ reply (Set)  ") && show.stdout.contains("      out: {\"answer\":\"I could not find this in our help center.\",\"confidence\":0.3}\n"),
        "{}",
        show.stdout
    );
}

/// `--tracer-arg prices=FILE`: agent spans get `gen_ai.usage.cost_usd`, and `trace list`
/// sums it.
#[test]
fn a_price_table_gives_agent_spans_and_runs_a_cost() {
    let dir = TempDir::new();
    dir.write("prices.yaml", "scripted: {input: 1.5, output: 6}\n");
    dir.write(
        "r.yaml",
        "replies: {talk: [{reply: fine, usage: {input_tokens: 1000, output_tokens: 500}}]}\n",
    );
    dir.write("flow.yaml", "flow:\n  name: priced\n  nodes:\n    talk: {type: Agent, setting: {provider: scripted, responses: r.yaml, prompt: hi}}\n");
    Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--tracer-arg",
            "prices=prices.yaml",
            "-o",
            "/dev/null",
        ])
        .run()
        .success();
    assert_eq!(
        crate::support::sqlite3(&dir.path().join("t.db"), "SELECT json_extract(attributes, '$.gen_ai.usage.cost_usd') FROM spans WHERE name = 'talk'"),
        "0.0045\n"
    );
    let list = Illumo::new()
        .in_dir(dir.path())
        .args(["trace", "list", "--db", "t.db"])
        .run()
        .success();
    assert!(
        list.stdout
            .lines()
            .nth(1)
            .unwrap()
            .trim_end()
            .ends_with("1500    $0.0045"),
        "{}",
        list.stdout
    );
    dir.write("bad.yaml", "scripted: {input: 1}\n");
    let bad = Illumo::new()
        .in_dir(dir.path())
        .args([
            "run",
            "flow.yaml",
            "--trace-db",
            "t.db",
            "--tracer-arg",
            "prices=bad.yaml",
        ])
        .run()
        .code(2);
    assert_eq!(bad.stderr, "error: --tracer-arg prices=bad.yaml: `scripted` needs `input` and `output` (USD per million tokens)\n");
}
