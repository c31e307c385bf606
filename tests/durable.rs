//! Durable runs: the journal, `illumo resume` after SIGKILL, a failure, SIGTERM and a
//! pause, changed flows, forks, and the `Approval` node. Real processes, real SQLite
//! files read back with the `sqlite3` CLI.

use crate::support::{sqlite3, Illumo, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Command that appends its id to `log.txt`; `n{block}` then waits for the file `go`
/// (or for illumo to die: `$PPID` is illumo) before it answers.
fn logging_node(i: usize, block: usize) -> String {
    let wait = if i == block {
        "while [ ! -f go ] && kill -0 $PPID 2>/dev/null; do sleep 0.01; done; "
    } else {
        ""
    };
    format!(
        "    n{i}:\n      type: Command\n      setting: {{argv: [sh, -c, 'echo n{i} >> log.txt; {wait}echo {i}']}}\n      outputs: $ctx.out.n{i}\n"
    )
}

fn chain(count: usize, block: usize) -> String {
    let mut text = String::from("flow:\n  name: chain\n  entry: n1\n  nodes:\n");
    for i in 1..=count {
        text.push_str(&logging_node(i, block));
    }
    text.push_str("  edges:\n");
    for i in 1..count {
        text.push_str(&format!("    - n{i} >> n{}\n", i + 1));
    }
    text
}

/// Starts `illumo ARGS` in `dir` without waiting.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_illumo"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start illumo")
}

/// Waits until `what` holds (at most 30 s).
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(lines: &[String], id: &str) -> usize {
    lines.iter().filter(|l| *l == id).count()
}

/// The only run's trace id in `db`.
fn trace_id(db: &Path) -> String {
    sqlite3(db, "SELECT trace_id FROM runs ORDER BY started_at LIMIT 1")
        .trim()
        .to_string()
}

/// The final ctx of an uninterrupted run of the same flow, with `go` (and `files`)
/// already there.
fn uninterrupted(flow: &str, files: &[(&str, &str)], args: &[&str]) -> Value {
    let dir = TempDir::new();
    dir.write("flow.yaml", flow);
    dir.write("go", "");
    for (name, text) in files {
        dir.write(name, text);
    }
    Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--tracer", "none"])
        .args(args)
        .run()
        .success()
        .ctx()
}

/// Kills a run with SIGKILL once `n{block}` has started, and returns the database.
fn kill_at_block(dir: &Path, durability: &str) -> PathBuf {
    let db = dir.join("trace.db");
    let mut child = spawn(
        dir,
        &[
            "run",
            "flow.yaml",
            "-q",
            "--tracer",
            "sqlite",
            "--tracer-arg",
            "db_path=trace.db",
            "--durability",
            durability,
        ],
    );
    wait_for("n12 to start", || {
        count(&lines(&dir.join("log.txt")), "n12") == 1
    });
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    db
}

#[test]
fn a_run_killed_mid_flight_resumes_without_running_a_finished_step_again() {
    let dir = TempDir::new();
    let flow = chain(20, 12);
    dir.write("flow.yaml", &flow);
    let db = kill_at_block(dir.path(), "sync");
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok\n");
    // With `sync`, every step that finished is in the journal: n1 to n11.
    assert_eq!(
        sqlite3(
            &db,
            "SELECT group_concat(node, ' ') FROM (SELECT node FROM steps ORDER BY seq)"
        ),
        "n1 n2 n3 n4 n5 n6 n7 n8 n9 n10 n11\n"
    );
    let id = trace_id(&db);
    let list = Illumo::new()
        .in_dir(dir.path())
        .args(["trace", "list", "--db", "trace.db", "--format", "json"])
        .run()
        .success();
    let runs: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(runs[0]["state"], "interrupted");
    assert_eq!(runs[0]["resumable"], true);

    dir.write("go", "");
    let resumed = Illumo::new()
        .in_dir(dir.path())
        .args(["resume", &id[..8], "--db", "trace.db", "-q"])
        .run()
        .success();
    let log = lines(&dir.path().join("log.txt"));
    for i in 1..=20 {
        let id = format!("n{i}");
        // n12 was running when the process died: it runs again (at least once).
        let expected = if i == 12 { 2 } else { 1 };
        assert_eq!(count(&log, &id), expected, "{id} in {log:?}");
    }
    assert_eq!(resumed.ctx(), uninterrupted(&flow, &[], &[]));
    assert_eq!(sqlite3(&db, "SELECT status FROM runs"), "ok\n");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT count(*) FROM spans WHERE kind = 'flow'; SELECT count(*) FROM events WHERE name = 'run.resumed'"
        ),
        "2\n1\n",
        "the resumed segment is a second root span of the same trace"
    );
}

#[test]
fn with_batch_durability_every_journaled_step_ran_exactly_once() {
    let dir = TempDir::new();
    let flow = chain(20, 12);
    dir.write("flow.yaml", &flow);
    let db = kill_at_block(dir.path(), "batch");
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok\n");
    let journaled: Vec<String> = sqlite3(&db, "SELECT node FROM steps ORDER BY seq")
        .lines()
        .map(str::to_string)
        .collect();
    dir.write("go", "");
    let id = trace_id(&db);
    let resumed = Illumo::new()
        .in_dir(dir.path())
        .args(["resume", &id, "--db", "trace.db", "-q"])
        .run()
        .success();
    let log = lines(&dir.path().join("log.txt"));
    for node in &journaled {
        assert_eq!(count(&log, node), 1, "{node} was journaled; log {log:?}");
    }
    // At most the last batch window was lost: those steps ran twice, nothing more.
    assert!(
        (1..=20).all(|i| (1..=2).contains(&count(&log, &format!("n{i}")))),
        "{log:?}"
    );
    assert_eq!(resumed.ctx(), uninterrupted(&flow, &[], &[]));
}

const FIXABLE: &str = "flow:
  name: fixable
  entry: first
  nodes:
    first:
      type: Command
      setting: {argv: [sh, -c, 'echo first >> log.txt; echo one']}
      outputs: $ctx.first
    check:
      type: Command
      setting: {argv: [sh, -c, 'test -f fixed && echo fixed']}
      outputs: $ctx.check
    last:
      type: Set
      setting: {value: 'done {{ $ctx.check }}'}
      outputs: $ctx.last
  edges:
    - first >> check >> last
";

fn run_in(dir: &Path, args: &[&str]) -> crate::support::Output {
    Illumo::new().in_dir(dir).args(args).run()
}

#[test]
fn a_failed_run_is_fixed_and_resumed_and_a_finished_run_is_not() {
    let dir = TempDir::new();
    dir.write("flow.yaml", FIXABLE);
    let failed = run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    assert!(
        failed
            .stderr
            .starts_with("error: node `check` failed on attempt 1 of 1: `sh` exited with code 1\n"),
        "{}",
        failed.stderr
    );
    let db = dir.path().join("t.db");
    let id = trace_id(&db);
    assert_eq!(sqlite3(&db, "SELECT status FROM runs"), "failed\n");
    dir.write("fixed", "");
    let resumed = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(resumed.ctx()["last"], "done fixed");
    assert_eq!(
        lines(&dir.path().join("log.txt")),
        ["first"],
        "first ran once"
    );
    // The same as a run that never failed, except that ctx.steps and ctx.errors also
    // record the failure that happened.
    let mut expected = uninterrupted(FIXABLE, &[("fixed", "")], &[]);
    expected["steps"] = serde_json::json!([
        {"node": "first", "status": "ok"},
        {"node": "check", "status": "error"},
        {"node": "check", "status": "ok"},
        {"node": "last", "status": "ok"}
    ]);
    expected["errors"] = serde_json::json!([
        {"node": "check", "attempt": 1, "message": "`sh` exited with code 1", "timed_out": false, "action": "stop"}
    ]);
    assert_eq!(resumed.ctx(), expected);

    let again = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).code(2);
    assert_eq!(
        again.stderr,
        format!("error: run `{id}` finished ok: there is nothing to resume (fork it with `illumo run FLOW --from NODE --trace {id}`)\n")
    );
}

#[test]
fn a_changed_node_that_ran_is_refused_and_one_that_did_not_is_accepted() {
    let dir = TempDir::new();
    dir.write("flow.yaml", FIXABLE);
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    let id = trace_id(&dir.path().join("t.db"));
    dir.write("fixed", "");
    dir.write("flow.yaml", &FIXABLE.replace("echo one", "echo uno"));
    let refused = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).code(2);
    assert_eq!(
        refused.stderr,
        format!("error: node `first` changed in the flow file since it ran in this run, so its journaled result may not be what the flow would give now; rerun, fork from it (`illumo run FLOW --from first --trace {}`), or resume with --force\n", &id[..8])
    );
    assert_eq!(lines(&dir.path().join("log.txt")), ["first"], "nothing ran");
    // `check` failed, so it never finished: changing it (and `last`) is fine.
    dir.write(
        "flow.yaml",
        &FIXABLE
            .replace(
                "test -f fixed && echo fixed",
                "test -f fixed && echo repaired",
            )
            .replace("'done {{", "'finished {{"),
    );
    let resumed = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(resumed.ctx()["last"], "finished repaired");
    assert_eq!(resumed.ctx()["first"], "one");
    assert_eq!(lines(&dir.path().join("log.txt")), ["first"]);
}

#[test]
fn force_resumes_a_changed_flow_with_the_journaled_result() {
    let dir = TempDir::new();
    dir.write("flow.yaml", FIXABLE);
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    let id = trace_id(&dir.path().join("t.db"));
    dir.write("fixed", "");
    dir.write("flow.yaml", &FIXABLE.replace("echo one", "echo uno"));
    let resumed = run_in(dir.path(), &["resume", &id, "--db", "t.db", "--force"]).success();
    assert_eq!(
        resumed.ctx()["first"],
        "one",
        "the journaled output is kept"
    );
    assert!(
        resumed
            .stderr
            .contains("warning: node `first` changed in the flow file since it ran; --force: its journaled result is used as it is\n"),
        "{}",
        resumed.stderr
    );
}

const APPROVAL: &str = "flow:
  name: approve
  entry: draft
  nodes:
    draft:
      type: Command
      setting: {argv: [sh, -c, 'echo draft >> log.txt; echo the-diff']}
      outputs: $ctx.diff
    ask:
      type: Approval
      setting:
        message: 'apply {{ $ctx.diff }}?'
      outputs: $ctx.approval
    gate:
      type: Router
      setting:
        routes:
          - {when: 'ctx.approval.choice == \"approve\"', to: apply}
          - {default: skip}
    apply:
      type: Set
      setting: {value: applied}
      outputs: $ctx.result
    skip:
      type: Set
      setting: {value: skipped}
      outputs: $ctx.result
  edges:
    - draft >> ask >> gate
    - gate >> (apply | skip)
";

fn paused_run(dir: &Path) -> String {
    std::fs::write(dir.join("flow.yaml"), APPROVAL).unwrap();
    let paused = run_in(dir, &["run", "flow.yaml", "-q", "--trace-db", "t.db"]).code(3);
    let id = trace_id(&dir.join("t.db"));
    assert_eq!(
        paused.stderr,
        format!("paused at ask: apply the-diff?\n  resume with: illumo resume {id} --db t.db --input '{{\"choice\": \"approve\"}}'\n  trace_id: {id}\n")
    );
    id
}

#[test]
fn a_paused_approval_is_resumed_with_approve_and_a_bad_answer_keeps_it_paused() {
    let dir = TempDir::new();
    let id = paused_run(dir.path());
    let db = dir.path().join("t.db");
    assert_eq!(
        sqlite3(&db, "SELECT status, paused_at, message FROM runs"),
        "paused|ask|apply the-diff?\n"
    );
    let list = run_in(
        dir.path(),
        &["trace", "list", "--db", "t.db", "--format", "json"],
    )
    .success();
    let runs: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        (&runs[0]["state"], &runs[0]["resumable"]),
        (&"paused".into(), &true.into())
    );

    let bad = run_in(
        dir.path(),
        &[
            "resume",
            &id,
            "--db",
            "t.db",
            "--input",
            r#"{"choice": "maybe"}"#,
        ],
    )
    .code(2);
    assert_eq!(
        bad.stderr,
        "error: --input does not fit `ask`: `choice` is \"maybe\"; it must be one of `approve`, `reject`; the run stays paused\n"
    );
    assert_eq!(sqlite3(&db, "SELECT status FROM runs"), "paused\n");
    let none = run_in(dir.path(), &["resume", &id, "--db", "t.db"]).code(2);
    assert!(
        none.stderr.starts_with(&format!(
            "error: run `{id}` is paused at `ask`: apply the-diff?\n  answer with --input"
        )),
        "{}",
        none.stderr
    );

    let approved = run_in(
        dir.path(),
        &[
            "resume",
            &id[..10],
            "--db",
            "t.db",
            "-q",
            "--input",
            r#"{"choice": "approve", "comment": "looks right"}"#,
        ],
    )
    .success();
    let ctx = approved.ctx();
    assert_eq!(ctx["result"], "applied");
    assert_eq!(
        ctx["approval"],
        serde_json::json!({"choice": "approve", "comment": "looks right", "answer": {"choice": "approve", "comment": "looks right"}, "message": "apply the-diff?", "via": "resume"})
    );
    assert_eq!(lines(&dir.path().join("log.txt")), ["draft"]);
    assert_eq!(sqlite3(&db, "SELECT status, paused_at FROM runs"), "ok|\n");
}

#[test]
fn a_paused_approval_is_resumed_with_reject() {
    let dir = TempDir::new();
    let id = paused_run(dir.path());
    let rejected = run_in(
        dir.path(),
        &["resume", &id, "--db", "t.db", "-q", "--input", "reject"],
    )
    .success();
    assert_eq!(rejected.ctx()["result"], "skipped");
    assert_eq!(rejected.ctx()["approval"]["choice"], "reject");
}

#[test]
fn an_approval_asks_on_stdin_only_when_it_is_a_terminal() {
    // stdin is a pipe here: the run pauses rather than reading it.
    let dir = TempDir::new();
    dir.write("flow.yaml", APPROVAL);
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["run", "flow.yaml", "-q", "--state", "s.db"])
        .stdin("approve\n")
        .run()
        .code(3);
    assert!(
        out.stderr
            .starts_with("paused at ask: apply the-diff?\n  resume with: illumo resume "),
        "{}",
        out.stderr
    );
    // `--state` journals without the sqlite tracer: no spans, a run to resume.
    let db = dir.path().join("s.db");
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM spans; SELECT status FROM runs"),
        "0\npaused\n"
    );
    let id = trace_id(&db);
    let list = run_in(
        dir.path(),
        &["trace", "list", "--db", "s.db", "--format", "json"],
    )
    .success();
    let runs: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(
        (&runs[0]["trace_id"], &runs[0]["flow"], &runs[0]["state"]),
        (&id.clone().into(), &"approve".into(), &"paused".into())
    );
    let done = run_in(
        dir.path(),
        &["resume", &id, "--db", "s.db", "-q", "--input", "approve"],
    )
    .success();
    assert_eq!(done.ctx()["result"], "applied");
}

#[test]
fn a_fork_starts_from_a_node_with_the_ctx_it_had_and_the_edits() {
    let dir = TempDir::new();
    let id = paused_run(dir.path());
    run_in(
        dir.path(),
        &["resume", &id, "--db", "t.db", "-q", "--input", "approve"],
    )
    .success();
    let fork = run_in(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--from",
            "gate",
            "--trace",
            &id[..8],
            "--set",
            "approval.choice=reject",
        ],
    )
    .success();
    assert_eq!(fork.ctx()["result"], "skipped");
    assert_eq!(fork.ctx()["diff"], "the-diff", "ctx from before `gate`");
    assert_eq!(
        lines(&dir.path().join("log.txt")),
        ["draft"],
        "nothing before `gate` ran again"
    );
    let db = dir.path().join("t.db");
    let forked = sqlite3(
        &db,
        &format!("SELECT json_extract(attributes, '$.forked_from') FROM spans WHERE kind = 'flow' AND trace_id != '{id}'"),
    );
    assert_eq!(
        forked,
        format!("{{\"trace_id\":\"{id}\",\"node\":\"gate\"}}\n")
    );
    assert_eq!(
        sqlite3(&db, &format!("SELECT group_concat(name, ' ') FROM (SELECT name FROM spans WHERE kind = 'node' AND trace_id != '{id}' ORDER BY start_time)")),
        "gate skip\n"
    );
    let missing = run_in(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--from",
            "gat",
            "--trace",
            &id,
        ],
    )
    .code(2);
    assert_eq!(
        missing.stderr,
        "error: --from: the flow has no node `gat`; did you mean `gate`?\n"
    );
}

#[test]
fn sigterm_stops_a_run_that_resume_then_finishes() {
    let dir = TempDir::new();
    let flow = chain(4, 2);
    dir.write("flow.yaml", &flow);
    let mut child = spawn(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    );
    wait_for("n2 to start", || {
        count(&lines(&dir.path().join("log.txt")), "n2") == 1
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let db = dir.path().join("t.db");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT status FROM runs; SELECT group_concat(node) FROM steps"
        ),
        "interrupted\nn1\n"
    );
    dir.write("go", "");
    let id = trace_id(&db);
    let done = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(done.ctx(), uninterrupted(&flow, &[], &[]));
    assert_eq!(
        lines(&dir.path().join("log.txt")),
        ["n1", "n2", "n2", "n3", "n4"]
    );
}

#[test]
fn a_run_started_with_write_needs_write_again() {
    let dir = TempDir::new();
    dir.write("flow.yaml", FIXABLE);
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db", "--write"],
    )
    .code(1);
    let id = trace_id(&dir.path().join("t.db"));
    let refused = run_in(dir.path(), &["resume", &id, "--db", "t.db"]).code(2);
    assert_eq!(
        refused.stderr,
        format!("error: run `{id}` was started with --write; give --write again to let it write files (a resume never grants it by itself)\n")
    );
}

const LOOP: &str = "flow:
  name: loop
  max_steps: 20
  entry: draft
  nodes:
    draft:
      type: Agent
      setting:
        prompt: 'Write a version{{#if $ctx.round}} after round {{ $ctx.round }}{{/if}}'
        output_path: $ctx.text
    mark:
      type: Command
      setting:
        argv: [sh, -c, 'echo x >> marks; n=$(($1 + 1)); if [ $n -eq 2 ]; then while [ ! -f go ] && kill -0 $PPID 2>/dev/null; do sleep 0.01; done; fi; echo $n', mark, '{{#if $ctx.round}}{{ $ctx.round }}{{else}}0{{/if}}']
        parse: json
      outputs: $ctx.round
    review:
      type: Agent
      setting:
        prompt: 'Review {{ $ctx.text }}'
        output_path: $ctx.verdict
    route:
      type: Router
      setting:
        routes:
          - {when: \"ctx.verdict == 'OK'\", to: done}
          - {default: draft}
    done:
      type: Set
      setting: {value: 'final {{ $ctx.text }}'}
      outputs: $ctx.final
  edges:
    - draft >> mark >> review >> route
";

const REPLIES: &str = "replies:
  draft: [v1, v2, v3]
  review: [NG, NG, OK]
";

#[test]
fn a_scripted_agent_loop_resumed_after_a_kill_makes_no_second_call() {
    let dir = TempDir::new();
    dir.write("flow.yaml", LOOP);
    dir.write("replies.yaml", REPLIES);
    let mut child = spawn(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--durability",
            "sync",
            "--llm",
            "scripted=replies.yaml",
        ],
    );
    wait_for("the second mark", || {
        lines(&dir.path().join("marks")).len() == 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let db = dir.path().join("t.db");
    assert_eq!(
        sqlite3(
            &db,
            "SELECT group_concat(node, ' ') FROM (SELECT node FROM steps ORDER BY seq)"
        ),
        "draft mark review route draft\n"
    );
    dir.write("go", "");
    let id = trace_id(&db);
    let resumed = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(resumed.ctx()["final"], "final v3");
    // Each reply was asked for once: draft and review three times each, over both segments.
    assert_eq!(
        sqlite3(&db, "SELECT s.name, count(*) FROM events e JOIN spans s USING (span_id) WHERE e.name = 'agent.request' GROUP BY s.name ORDER BY s.name"),
        "draft|3\nreview|3\n"
    );
    let whole = uninterrupted(
        LOOP,
        &[("replies.yaml", REPLIES)],
        &["--llm", "scripted=replies.yaml"],
    );
    assert_eq!(resumed.ctx(), whole);
}

const PARALLEL: &str = "flow:
  name: parallel
  entry: seed
  nodes:
    seed:
      type: Set
      setting: {value: 7}
      outputs: $ctx.seed
    a:
      type: Command
      setting: {argv: [sh, -c, 'echo a >> log.txt; echo A']}
      outputs: $ctx.a
    b:
      type: Command
      setting: {argv: [sh, -c, 'echo b >> log.txt; while [ ! -f go ] && kill -0 $PPID 2>/dev/null; do sleep 0.01; done; echo B']}
      outputs: $ctx.b
    c:
      type: Set
      setting: {value: 'c{{ $ctx.seed }}'}
      outputs: $ctx.c
    join:
      type: Set
      setting: {value: '{{ $ctx.a }}{{ $ctx.b }}{{ $ctx.c }}'}
      outputs: $ctx.joined
  edges:
    - seed >> (a | b | c)
    - (a & b & c) >> join
";

/// ctx without `steps`, whose order follows which parallel branch finished first.
fn without_steps(mut ctx: Value) -> (Value, Vec<String>) {
    let mut steps: Vec<String> = ctx["steps"]
        .as_array()
        .map(|list| list.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    steps.sort();
    ctx.as_object_mut().unwrap().remove("steps");
    (ctx, steps)
}

#[test]
fn a_join_waiting_on_a_killed_branch_fires_after_the_resume() {
    let dir = TempDir::new();
    dir.write("flow.yaml", PARALLEL);
    let mut child = spawn(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--durability",
            "sync",
        ],
    );
    let db = dir.path().join("t.db");
    wait_for("a to finish while b waits", || {
        lines(&dir.path().join("log.txt")).contains(&"b".to_string())
            && crate::support::sqlite3_try(&db, "SELECT count(*) FROM steps WHERE node = 'a'")
                .as_deref()
                == Some("1\n")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let journaled = sqlite3(
        &db,
        "SELECT group_concat(node, ' ') FROM (SELECT node FROM steps ORDER BY seq)",
    );
    assert_eq!(journaled, "seed c a\n");
    dir.write("go", "");
    let id = trace_id(&db);
    let resumed = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(resumed.ctx()["joined"], "ABc7");
    let mut log = lines(&dir.path().join("log.txt"));
    log.sort();
    assert_eq!(log, ["a", "b", "b"], "a ran once, b again");
    assert_eq!(
        without_steps(resumed.ctx()),
        without_steps(uninterrupted(PARALLEL, &[], &[]))
    );
}

/// The coding assistant with `--write` and `request.confirm_write`: it pauses with the
/// diff before writing, and writes only what the person approves.
#[test]
fn the_coding_assistant_asks_before_it_writes() {
    for (answer, written) in [("approve", true), ("reject", false)] {
        let dir = TempDir::new();
        let copy = dir.path().join("assistant");
        crate::support::copy_dir(
            &crate::support::root().join("examples/multi_agent/coding_assistant"),
            &copy,
        );
        let before = std::fs::read_to_string(copy.join("sample_app/app/calc.py")).unwrap();
        let paused = run_in(
            &copy,
            &[
                "run",
                "coding_assistant.yaml",
                "-c",
                "@context.json",
                "--write",
                "--set",
                "request.confirm_write=true",
                "--trace-db",
                "t.db",
                "-q",
            ],
        )
        .code(3);
        let id = trace_id(&copy.join("t.db"));
        assert!(
            paused.stderr.starts_with(
                "paused at write_fix: write 2 files under ./sample_app: app/calc.py, app/text.py?\n  --- a/app/calc.py\n"
            ),
            "{}",
            paused.stderr
        );
        assert!(
            paused.stderr.contains(&format!(
                "  resume with: illumo resume {id} --db t.db --write --input '{{\"choice\": \"approve\"}}'\n"
            )),
            "{}",
            paused.stderr
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("sample_app/app/calc.py")).unwrap(),
            before,
            "nothing is written before the answer"
        );
        let done = run_in(
            &copy,
            &[
                "resume",
                &id,
                "--db",
                "t.db",
                "--write",
                "-q",
                "--input",
                answer,
                "--print",
                "$ctx.diff.applied.written",
            ],
        )
        .success();
        assert_eq!(done.stdout, format!("{written}\n"));
        let after = std::fs::read_to_string(copy.join("sample_app/app/calc.py")).unwrap();
        assert_eq!(after != before, written, "{answer}: {after}");
        // The drafts were not asked for again: two of each agent over both segments.
        assert_eq!(
            sqlite3(
                &copy.join("t.db"),
                "SELECT count(*) FROM events WHERE name = 'agent.request'"
            ),
            "4\n"
        );
    }
}

/// `illumo ARGS` on a terminal (a pty from `script`), typing `input`; the terminal's text.
fn on_terminal(dir: &Path, args: &str, input: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_illumo")),
            "/dev/null",
        ])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the `script` command (util-linux) gives illumo a terminal");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

#[test]
fn on_a_terminal_an_approval_asks_until_an_answer_fits() {
    let dir = TempDir::new();
    dir.write("flow.yaml", APPROVAL);
    let (code, text) = on_terminal(
        dir.path(),
        "run flow.yaml -q --tracer none --print result",
        "maybe\nreject\n",
    );
    assert_eq!(code, 0, "{text}");
    let asked = "\napproval needed at `ask`:\n  apply the-diff?\nanswer [approve/reject]: ";
    assert!(text.contains(asked), "{text}");
    assert!(
        text.contains("  `choice` is \"maybe\"; it must be one of `approve`, `reject`\nanswer [approve/reject]: "),
        "{text}"
    );
    assert!(text.ends_with("skipped\n"), "{text}");

    // `--no-input`: the terminal is not asked; the run pauses.
    let (code, text) = on_terminal(
        dir.path(),
        "run flow.yaml -q --no-input --state s.db --print result",
        "approve\n",
    );
    assert_eq!(code, 3, "{text}");
    assert!(!text.contains("answer ["), "{text}");
    assert!(text.contains("paused at ask: apply the-diff?\n"), "{text}");
}

#[test]
fn a_free_answer_must_fit_the_input_schema() {
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        "flow:
  name: budget
  nodes:
    ask:
      type: HumanInput
      setting:
        message: How much may the agent spend?
        choices: []
        input_schema:
          type: object
          required: [budget]
          properties: {budget: {type: number, minimum: 0}}
      outputs: $ctx.answer
",
    );
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(3);
    let id = trace_id(&dir.path().join("t.db"));
    let bad = run_in(
        dir.path(),
        &[
            "resume",
            &id,
            "--db",
            "t.db",
            "--input",
            r#"{"budget": "lots"}"#,
        ],
    )
    .code(2);
    assert_eq!(
        bad.stderr,
        "error: --input does not fit `ask`: the answer does not fit `input_schema`: $.budget should be number, not \"lots\"; the run stays paused\n"
    );
    let good = run_in(
        dir.path(),
        &[
            "resume",
            &id,
            "--db",
            "t.db",
            "-q",
            "--input",
            r#"{"budget": 12.5}"#,
        ],
    )
    .success();
    assert_eq!(
        good.ctx()["answer"],
        serde_json::json!({"choice": null, "comment": null, "answer": {"budget": 12.5}, "message": "How much may the agent spend?", "via": "resume"})
    );
    let invalid = run_in(dir.path(), &["validate", "flow.yaml"]);
    invalid.success();
    dir.write(
        "bad.yaml",
        "flow:\n  nodes:\n    ask: {type: Approval, setting: {message: hi, choices: []}}\n",
    );
    let refused = run_in(dir.path(), &["validate", "bad.yaml"]).code(2);
    assert!(
        refused.stderr.starts_with("error: node `ask`: no choices and no `input_schema`: nothing could answer; give `choices` or an `input_schema`\n --> bad.yaml:3:59\n"),
        "{}",
        refused.stderr
    );
}

/// The run's steps in the journal: `node:status`, in the order they finished.
fn journal_steps(db: &Path) -> String {
    sqlite3(
        db,
        "SELECT group_concat(CASE node WHEN '' THEN status ELSE node || ':' || status END, ' ') FROM (SELECT node, status FROM steps ORDER BY seq)",
    )
}

#[test]
fn a_branch_that_stopped_a_fail_fast_false_run_runs_again_on_resume() {
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        "flow:
  name: ff
  entry: seed
  policy: {fail_fast: false}
  nodes:
    seed: {type: Set, setting: {value: 1}, outputs: $ctx.seed}
    a:
      type: Command
      setting: {argv: [sh, -c, 'echo a >> log.txt; test -f fixed && echo A']}
      outputs: $ctx.a
    b:
      type: Command
      setting: {argv: [sh, -c, 'echo b >> log.txt; echo B']}
      outputs: $ctx.b
    c:
      type: Set
      setting: {value: 'c {{ $ctx.b }}'}
      outputs: $ctx.c
  edges:
    - seed >> (a | b)
    - (a & b) >> c
",
    );
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    let db = dir.path().join("t.db");
    // `a` and `b` run in parallel: either may finish first.
    let before = journal_steps(&db);
    assert!(
        [
            "seed:ok a:stopped b:ok c:ok\n",
            "seed:ok b:ok a:stopped c:ok\n"
        ]
        .contains(&before.as_str()),
        "{before}"
    );
    dir.write("fixed", "");
    let id = trace_id(&db);
    let done = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(done.ctx()["a"], "A");
    let mut log = lines(&dir.path().join("log.txt"));
    log.sort();
    assert_eq!(log, ["a", "a", "b"], "b finished: it did not run again");
    // `c` had run without `a` (its join released when `a` failed); `a`'s result reaches
    // it again after the resume.
    assert_eq!(
        journal_steps(&db),
        format!("{} resumed a:ok c:ok\n", before.trim_end())
    );
}

#[test]
fn a_run_fixed_and_resumed_twice_runs_each_finished_step_once() {
    let dir = TempDir::new();
    let flow = "flow:
  name: twice
  entry: n1
  nodes:
    n1: {type: Command, setting: {argv: [sh, -c, 'echo n1 >> log.txt; echo 1']}, outputs: $ctx.n1}
    n2: {type: Command, setting: {argv: [sh, -c, 'echo n2 >> log.txt; test -f fixed2 && echo 2']}, outputs: $ctx.n2}
    n3: {type: Command, setting: {argv: [sh, -c, 'echo n3 >> log.txt; echo 3']}, outputs: $ctx.n3}
    n4: {type: Command, setting: {argv: [sh, -c, 'echo n4 >> log.txt; test -f fixed4 && echo 4']}, outputs: $ctx.n4}
  edges:
    - n1 >> n2 >> n3 >> n4
";
    // n2 is fixed by changing the flow: allowed, it had not finished.
    dir.write(
        "flow.yaml",
        &flow.replace("test -f fixed2 && ", "test -f fixed2 || "),
    );
    dir.write("flow.yaml", flow);
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    let id = trace_id(&dir.path().join("t.db"));
    dir.write(
        "flow.yaml",
        &flow.replace("test -f fixed2 && echo 2", "echo 2"),
    );
    run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).code(1);
    dir.write("fixed4", "");
    // The fixed n2 finished after the first resume: the second compares against that.
    let done = run_in(dir.path(), &["resume", &id, "--db", "t.db", "-q"]).success();
    assert_eq!(
        (&done.ctx()["n2"], &done.ctx()["n4"]),
        (&json_str("2"), &json_str("4"))
    );
    assert_eq!(
        lines(&dir.path().join("log.txt")),
        ["n1", "n2", "n2", "n3", "n4", "n4"]
    );
    assert_eq!(
        journal_steps(&dir.path().join("t.db")),
        "n1:ok n2:stopped resumed n2:ok n3:ok n4:stopped resumed n4:ok\n"
    );
}

fn json_str(s: &str) -> Value {
    Value::String(s.into())
}

#[test]
fn a_result_that_cannot_be_applied_is_not_a_finished_step() {
    let dir = TempDir::new();
    let flow = "flow:
  name: mapping
  entry: a
  nodes:
    a:
      type: Command
      setting: {argv: [sh, -c, 'echo a >> log.txt; echo {\\\"x\\\": 1}'], parse: json}
      outputs: {y: $ctx.y}
    b: {type: Set, setting: {value: 'got {{ $ctx.y }}'}, outputs: $ctx.b}
  edges:
    - a >> b
";
    dir.write("flow.yaml", flow);
    let failed = run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    assert!(
        failed.stderr.contains("the output has no field `y`"),
        "{}",
        failed.stderr
    );
    let db = dir.path().join("t.db");
    assert_eq!(journal_steps(&db), "a:stopped\n");
    dir.write(
        "flow.yaml",
        &flow.replace("outputs: {y: $ctx.y}", "outputs: {x: $ctx.y}"),
    );
    let done = run_in(
        dir.path(),
        &[
            "resume",
            &trace_id(&db),
            "--db",
            "t.db",
            "-q",
            "--print",
            "b",
        ],
    )
    .success();
    assert_eq!(done.stdout, "got 1\n");
}

#[test]
fn a_pause_message_keeps_secrets_out_of_the_journal_and_stderr() {
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        "flow:\n  nodes:\n    ask: {type: Approval, setting: {message: 'deploy with {{ $ctx.token }}?'}}\n",
    );
    let paused = run_in(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "--set",
            "token=hunter2secret",
            "--redact",
            "hunter2secret",
        ],
    )
    .code(3);
    assert!(
        paused
            .stderr
            .starts_with("paused at ask: deploy with ***?\n"),
        "{}",
        paused.stderr
    );
    let db = dir.path().join("t.db");
    assert_eq!(
        sqlite3(&db, "SELECT message FROM runs"),
        "deploy with ***?\n"
    );
    assert!(!sqlite3(&db, ".dump").contains("hunter2secret"));
    let id = trace_id(&db);
    let waiting = run_in(dir.path(), &["resume", &id, "--db", "t.db"]).code(2);
    assert!(
        !waiting.stderr.contains("hunter2secret"),
        "{}",
        waiting.stderr
    );
    assert!(
        waiting
            .stderr
            .contains("is paused at `ask`: deploy with ***?"),
        "{}",
        waiting.stderr
    );
}

#[test]
fn an_approval_a_loop_runs_is_an_error_not_a_pause_nobody_can_answer() {
    let dir = TempDir::new();
    dir.write(
        "flow.yaml",
        "flow:
  name: each
  entry: each
  nodes:
    each: {type: Loop, setting: {items: $ctx.items, body: ask}}
    ask: {type: Approval, setting: {message: 'ok {{ $ctx.loop.item }}?'}}
",
    );
    let out = run_in(
        dir.path(),
        &[
            "run",
            "flow.yaml",
            "-q",
            "--trace-db",
            "t.db",
            "-c",
            r#"{"items": [1]}"#,
        ],
    )
    .code(1);
    assert!(
        out.stderr.contains("node `ask` waits for a person, which it cannot do when another node runs it (a Loop body, an agent's tool); put it in the flow itself"),
        "{}",
        out.stderr
    );
}

#[test]
fn resume_writes_o_where_the_caller_is_and_explains_max_steps() {
    let dir = TempDir::new();
    let work = dir.path().join("work");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(work.join("flow.yaml"), FIXABLE).unwrap();
    run_in(&work, &["run", "flow.yaml", "-q", "--trace-db", "t.db"]).code(1);
    let id = trace_id(&work.join("t.db"));
    std::fs::write(work.join("fixed"), "").unwrap();
    run_in(
        &elsewhere,
        &[
            "resume",
            &id,
            "--db",
            "../work/t.db",
            "-q",
            "-o",
            "out.json",
        ],
    )
    .success();
    let out: Value =
        serde_json::from_str(&std::fs::read_to_string(elsewhere.join("out.json")).unwrap())
            .unwrap();
    assert_eq!(out["last"], "done fixed");
    assert!(!work.join("out.json").exists());

    let looping = TempDir::new();
    looping.write(
        "flow.yaml",
        "flow:\n  name: spin\n  max_steps: 3\n  entry: a\n  nodes:\n    a: {type: Set, setting: {value: 1}}\n    b: {type: Set, setting: {value: 2}}\n  edges:\n    - a >> b\n    - b >> a\n",
    );
    run_in(
        looping.path(),
        &["run", "flow.yaml", "-q", "--trace-db", "t.db"],
    )
    .code(1);
    let id = trace_id(&looping.path().join("t.db"));
    let refused = run_in(looping.path(), &["resume", &id, "--db", "t.db"]).code(2);
    assert!(
        refused.stderr.ends_with(&format!("error: cannot resume `{id}`: max_steps (3) exceeded in cycle `b -> a -> b`: the steps it already took count; raise `max_steps` in the flow file to let it go on\n")),
        "{}",
        refused.stderr
    );
}

/// A Python function may write ctx keys no path can spell (`ctx["a.b"]`, `ctx["c d"]`):
/// the journal keeps their steps, so a resumed run rebuilds the same ctx.
#[test]
fn keys_no_path_can_spell_come_back_whole_on_resume() {
    let dir = TempDir::new();
    dir.write(
        "jm.py",
        "def w(payload, ctx):\n    ctx['a.b'] = 1\n    ctx['c d'] = {'e[0]': 2}\n    return 1\n",
    );
    dir.write(
        "flow.yaml",
        "flow:\n  entry: f\n  nodes:\n    f: {type: FunctionNode, setting: {callable: jm.w}}\n    ok: {type: Approval, setting: {message: go?}}\n  edges: [f >> ok]\n",
    );
    run_in(
        dir.path(),
        &["run", "flow.yaml", "-q", "--no-input", "--trace-db", "t.db"],
    )
    .code(3);
    let id = trace_id(&dir.path().join("t.db"));
    let resumed = run_in(
        dir.path(),
        &[
            "resume",
            &id,
            "--db",
            "t.db",
            "-q",
            "--input",
            r#"{"choice": "approve"}"#,
        ],
    )
    .success()
    .ctx();
    assert_eq!(
        (&resumed["a.b"], &resumed["c d"], resumed.get("a")),
        (&json!(1), &json!({"e[0]": 2}), None)
    );
}
