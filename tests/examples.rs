//! Every example under `examples/` runs offline and produces exactly these values.

use crate::support::{Illumo, TempDir};
use serde_json::json;

#[test]
fn hello_greets_and_shouts() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/hello.yaml",
            "--tracer",
            "none",
            "--context",
            r#"{"user": {"name": "Ada"}}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["greeting"], "hello Ada");
    assert_eq!(ctx["shouted"], "HELLO ADA!");
    assert_eq!(
        ctx["steps"],
        json!([{"node": "greet", "status": "ok"}, {"node": "shout", "status": "ok"}])
    );
    assert!(out.stderr.starts_with("trace_id: "), "{}", out.stderr);
}

#[test]
fn branching_join_fires_once_when_the_router_skips_a_branch() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/branching.yaml",
            "--tracer",
            "none",
            "-c",
            r#"{"order": {"amount": 120, "country": "FR"}}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["result"],
        json!({"region": "FR-zone", "parents": "{\"geo\":{\"region\":\"FR-zone\"}}"})
    );
    assert_eq!(
        ctx["joins"],
        json!({"merge": {"geo": {"region": "FR-zone"}}})
    );
    assert_eq!(
        ctx["routing"]["risk"],
        json!({"target": null, "confidence": null, "reason": "no route matched"})
    );
    let merges = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "merge")
        .count();
    assert_eq!(merges, 1);
    assert_eq!(ctx.get("review"), None);
}

#[test]
fn branching_join_waits_for_the_routed_branch_when_it_runs() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/branching.yaml",
            "--tracer",
            "none",
            "-c",
            r#"{"order": {"amount": 5000, "country": "DE"}}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["joins"]["merge"],
        json!({"geo": {"region": "DE-zone"}, "review": {"flagged": true}})
    );
    assert_eq!(ctx["routing"]["risk"]["target"], "review");
    assert_eq!(ctx["routing"]["risk"]["reason"], "ctx.order.amount >= 1000");
}

#[test]
fn retry_timeout_goto_recovers_with_the_fallback() {
    let dir = TempDir::new();
    let context = json!({"work_dir": dir.path().join("state")}).to_string();
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/retry_timeout_goto.yaml",
            "--tracer",
            "none",
            "-c",
            &context,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["flaky"], json!({"attempts": 3, "ok": true}));
    assert_eq!(ctx["outcome"], "used the fallback after 3 flaky attempts");
    assert_eq!(
        ctx["errors"],
        json!([{"node": "slow", "attempt": 1, "message": "timed out after 300ms", "timed_out": true, "action": "goto fallback"}])
    );
    let steps: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["prepare", "flaky", "slow", "fallback"]);
}

#[test]
fn loop_collects_the_body_outputs() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "--tracer",
            "none",
            "-c",
            r#"{"files": ["a.py", "b.py"]}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["checks"],
        json!([{"index": 0, "file": "a.py", "label": "#0 a.py"}, {"index": 1, "file": "b.py", "label": "#1 b.py"}])
    );
    assert_eq!(ctx["summary"], "checked 2 files");
    assert_eq!(
        ctx.get("loop"),
        None,
        "the loop's item never leaks into the flow's ctx"
    );
}

#[test]
fn command_pipes_json_and_routes_on_the_result() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/command.yaml",
            "--tracer",
            "none",
            "-c",
            r#"{"scores": [0.2, 0.9, 0.7]}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["stats"], json!({"mean": 0.6, "best": 0.9}));
    assert_eq!(ctx["verdict"], "accepted with mean 0.6");
    assert_eq!(
        ctx["routing"]["verdict"],
        json!({"target": "accept", "confidence": 1.0, "reason": "ctx.stats.mean >= 0.5"})
    );
}

#[test]
fn every_example_is_valid() {
    let dirs = [
        "examples/basics",
        "examples/agents",
        "examples/multi_agent/coding_assistant",
        "examples/multi_agent/chat_bot",
        "examples/code_agent",
        "examples/playbooks",
        "examples/agent_runner",
        "examples/tutorial",
    ]
    .map(|d| std::fs::read_dir(crate::support::root().join(d)).unwrap());
    for entry in dirs.into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "yaml") && !name.ends_with("replies.yaml") {
            let rel = path
                .strip_prefix(crate::support::root())
                .unwrap()
                .display()
                .to_string();
            let out = Illumo::new().args(["validate", &rel]).run();
            assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{rel}");
        }
    }
}

#[test]
fn the_hello_agent_greets_offline() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/agents/hello.yaml",
            "--tracer",
            "console",
            "-c",
            r#"{"user": {"name": "Ada", "project": "illumo"}}"#,
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(
        ctx["greeting"],
        "Hello Ada, it is a pleasure to meet the mind behind illumo!"
    );
    assert_eq!(
        ctx["usage"]["greet"],
        json!({"provider": "scripted", "model": "gpt-4.1-mini", "input_tokens": 31, "output_tokens": 15, "latency_ms": ctx["usage"]["greet"]["latency_ms"], "finish_reason": "stop"})
    );
    assert!(
        out.stderr.contains("tokens: 31 in, 15 out (1 LLM call)\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_router_agent_sends_the_ticket_to_one_branch() {
    let ctx = Illumo::new()
        .args([
            "run",
            "examples/agents/router.yaml",
            "--tracer",
            "none",
            "-c",
            "@examples/agents/ticket.json",
        ])
        .run()
        .success()
        .ctx();
    assert_eq!(
        ctx["outcome"],
        "Bug filed: Export to CSV crashes (reason: the export crashes, which is a defect)"
    );
    assert_eq!(
        ctx["routing"]["triage"],
        json!({"target": "file_bug", "confidence": 0.86, "reason": "the export crashes, which is a defect"})
    );
    let ran: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["triage", "file_bug"]);
}

#[test]
fn the_review_loop_drafts_again_until_the_review_says_ok() {
    let ctx = Illumo::new()
        .args([
            "run",
            "examples/agents/review_loop.yaml",
            "--tracer",
            "none",
            "-c",
            r#"{"product": "illumo", "audience": "data engineers"}"#,
        ])
        .run()
        .success()
        .ctx();
    let ran: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        ["draft", "review", "route", "draft", "review", "route", "publish"]
    );
    assert_eq!(
        ctx["published"],
        "Published: YAML flows for LLM agents, traced end to end."
    );
    assert_eq!(
        ctx["review"],
        json!({"status": "OK", "score": 0.9, "reasons": ["concrete", "short"], "summary": "Clear and specific."})
    );
}

/// The amounts of `examples/code_agent/sales.csv`, read here to check what the code computed.
fn sales_amounts() -> Vec<f64> {
    std::fs::read_to_string(crate::support::root().join("examples/code_agent/sales.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn code_agent_sales_analysis_computes_the_files_numbers() {
    let amounts = sales_amounts();
    let mean = (amounts.iter().sum::<f64>() / amounts.len() as f64 * 100.0).round() / 100.0;
    let max = amounts.iter().cloned().fold(f64::MIN, f64::max);
    let min = amounts.iter().cloned().fold(f64::MAX, f64::min);
    let out = Illumo::new()
        .args([
            "run",
            "examples/code_agent/sales_analysis.yaml",
            "--tracer",
            "none",
            "--quiet",
        ])
        .run()
        .success();
    assert_eq!(
        out.ctx()["python"]["run"]["result"],
        json!({"average": mean, "maximum": max, "minimum": min})
    );
}

#[test]
fn code_agent_workflow_shares_one_session() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/code_agent/workflow.yaml",
            "--tracer",
            "none",
            "--quiet",
        ])
        .args(["--print", "$ctx.python.report.result"])
        .run()
        .success();
    assert_eq!(out.stdout, "6 sales, mean 142.26, max 310.1, min 15.25\n");
}

#[test]
fn code_agent_self_repair_shows_the_traceback_and_fixes_the_code() {
    let dir = TempDir::new();
    let db = dir.path().join("t.db");
    let out = Illumo::new()
        .args([
            "run",
            "examples/code_agent/self_repair.yaml",
            "--quiet",
            "--tracer",
            "sqlite",
        ])
        .args(["--tracer-arg", &format!("db_path={}", db.display())])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["python"]["run"]["result"], 9);
    let steps: Vec<&str> = ctx["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["write_code", "run", "write_code", "run"]);
    let prompts = crate::support::sqlite3(
        &db,
        "SELECT json_extract(attributes, '$.prompt') FROM events WHERE name = 'agent.request' ORDER BY timestamp",
    );
    assert!(
        prompts.contains("Your last code failed:\nTraceback (most recent call last):\n  File \"<code>\", line 2, in <module>\nIndexError: list index out of range\nFix it."),
        "{prompts}"
    );
}

#[test]
fn code_agent_fibonacci_answers_from_the_code_it_ran() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/code_agent/fibonacci.yaml",
            "--tracer",
            "none",
            "--quiet",
        ])
        .run()
        .success();
    let ctx = out.ctx();
    assert_eq!(ctx["answer"], "354224848179261915075");
    // The number the answer gives is the one the sandbox computed.
    assert_eq!(
        ctx["meta"]["tool_calls"][0]["result"]["result"],
        "354224848179261915075"
    );
}

#[test]
fn code_agent_extract_emails_finds_every_address_in_the_file() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/code_agent/extract_emails.yaml",
            "--tracer",
            "none",
            "--quiet",
        ])
        .run()
        .success();
    assert_eq!(
        out.ctx()["python"]["run"]["result"],
        json!([
            "ada@example.com",
            "ada.l@lab.example.org",
            "cy+news@example.net"
        ])
    );
}

#[test]
fn a_playbook_runs_as_a_flow_step_after_step() {
    let run = |context: &str| {
        Illumo::new()
            .args([
                "run",
                "examples/playbooks/backend-task.yaml",
                "-c",
                context,
                "--tracer",
                "none",
                "-q",
            ])
            .run()
            .success()
            .ctx()
    };
    let ctx = run(r#"{"lint_enabled": true, "version": "1.2"}"#);
    let book = &ctx["playbook"];
    assert_eq!(book["lint"], "");
    assert!(
        book["test"].as_str().unwrap().contains("1 passed"),
        "{book}"
    );
    assert_eq!(book["package"], "packaged backend 1.2");
    assert_eq!(
        ctx["errors"][0]["node"], "coverage",
        "fail_fast: false went on"
    );
    assert_eq!(ctx["routing"]["check_lint"]["target"], "lint");
    // Without lint_enabled, the condition skips lint.
    let skipped = run(r#"{"version": "1.3"}"#);
    assert_eq!(skipped["playbook"].get("lint"), None);
    assert_eq!(skipped["routing"]["check_lint"]["target"], "test");
    assert_eq!(skipped["playbook"]["package"], "packaged backend 1.3");
}

#[test]
fn playbook_problems_are_reported_at_the_playbooks_lines() {
    let dir = crate::support::TempDir::new();
    dir.write(
        "pb.yaml",
        "name: broken\nsteps:\n  - name: one\n    command: echo \"unclosed\n    retry_cont: 2\n  - name: two\n    command: echo {{ $ctx.nope.. }}\n    condition: \"ctx.x >\"\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "pb.yaml"])
        .run()
        .code(2);
    assert_eq!(
        out.stderr,
        "error: the command cannot be split into words: unclosed `\"` in `echo \"unclosed`
 --> pb.yaml:4:14
  |
4 |     command: echo \"unclosed
  |              ^^^^^^^^^^^^^^

error: unknown key `retry_cont` in a step
 --> pb.yaml:5:5
  |
5 |     retry_cont: 2
  |     ^^^^^^^^^^ did you mean `retry_count`?

error: pb.yaml has 2 errors
"
    );
    dir.write(
        "pb.yaml",
        "name: b\nsteps:\n  - name: two\n    command: echo hi\n    condition: \"ctx.x >\"\n",
    );
    let out = Illumo::new()
        .in_dir(dir.path())
        .args(["validate", "pb.yaml"])
        .run()
        .code(2);
    assert!(
        out.stderr.starts_with(
            "error: invalid condition `ctx.x >`: the condition ends too early\n --> pb.yaml:5:17\n"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn the_agent_runner_fixes_commits_pushes_and_keeps_artifacts() {
    let dir = crate::support::TempDir::new();
    let work = dir.path().join("task");
    let context = serde_json::json!({"work_dir": work, "task": {"branch": "fix-tax"}, "request": {"summary": "with_tax adds the rate"}});
    let out = Illumo::new()
        .args([
            "run",
            "examples/agent_runner/agent_runner.yaml",
            "--write",
            "--tracer",
            "none",
            "-q",
        ])
        .args(["-c", &context.to_string(), "--print", "artifacts"])
        .run()
        .success();
    assert_eq!(
        out.stdout,
        "[\"change.diff\",\"summary.md\",\"tests.log\"]\n"
    );
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let remote = work.join("remote.git").display().to_string();
    assert_eq!(
        git(&["--git-dir", &remote, "log", "--format=%s", "fix-tax"]),
        "with_tax adds the rate\ninitial import\n"
    );
    assert!(
        git(&["--git-dir", &remote, "show", "fix-tax:app/prices.py"])
            .contains("return round(amount * (1 + rate), 2)")
    );
    assert!(std::fs::read_to_string(work.join("artifacts/tests.log"))
        .unwrap()
        .contains("2 passed"));
    assert!(std::fs::read_to_string(work.join("artifacts/change.diff"))
        .unwrap()
        .contains("+    return round(amount * (1 + rate), 2)"));
    assert!(std::fs::read_to_string(work.join("artifacts/summary.md"))
        .unwrap()
        .starts_with("# with_tax adds the rate"));
}

/// A push to a remote whose URL holds a token: git fails, is retried with backoff, and the
/// token reaches neither stderr nor the trace.
#[test]
fn the_agent_runner_retries_git_and_keeps_the_token_out_of_traces() {
    let dir = crate::support::TempDir::new();
    let work = dir.path().join("task");
    let db = dir.path().join("t.db");
    let context = serde_json::json!({"work_dir": work, "task": {"branch": "fix-tax", "remote": "https://agent:tok-98765-abcdef@127.0.0.1:9/app.git"}, "request": {"summary": "fix"}});
    let out = Illumo::new()
        .args([
            "run",
            "examples/agent_runner/agent_runner.yaml",
            "--write",
            "-q",
        ])
        .args([
            "-c",
            &context.to_string(),
            "--trace-db",
            &db.display().to_string(),
        ])
        .env("GIT_TOKEN", "tok-98765-abcdef")
        .run()
        .code(1);
    assert!(
        out.stderr
            .starts_with("error: node `push` failed on attempt 3 of 3: `git` exited with code 128"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("tok-98765-abcdef") && !out.stdout.contains("tok-98765-abcdef"));
    assert_eq!(
        crate::support::sqlite3(&db, "SELECT json_extract(attributes, '$.delay_ms') FROM events WHERE name = 'node.retry' ORDER BY id"),
        "500\n1000\n",
        "commit did not retry; push retried twice, the delay doubling"
    );
    assert!(!crate::support::sqlite3(&db, ".dump").contains("tok-98765-abcdef"));
}
