//! The console tracer's text for a known flow.

use crate::support::{normalize, Illumo, TempDir};

#[test]
fn console_shows_attempts_retries_timeouts_gotos_and_routing() {
    let dir = TempDir::new();
    let context = serde_json::json!({"work_dir": dir.path().join("state")}).to_string();
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/retry_timeout_goto.yaml",
            "--tracer",
            "console",
            "-c",
            &context,
        ])
        .run()
        .success();
    assert_eq!(
        normalize(&out.stderr),
        "▶ flow retry_timeout_goto  trace <trace_id>
  ✓ prepare (Command)  <dur>
  ✗ flaky (Command) attempt 1/3  <dur>  `python3` exited with code 1: attempt 1: not yet
    ↻ retry 2/3 in <dur>
  ✗ flaky (Command) attempt 2/3  <dur>  `python3` exited with code 1: attempt 2: not yet
    ↻ retry 3/3 in <dur>
  ✓ flaky (Command) attempt 3/3  <dur>
  ✗ slow (Command)  <dur>  timed out after <dur>
    ⏱ timed out after <dur>
    ↪ goto fallback
  ✓ fallback (Set)  <dur>
✓ flow retry_timeout_goto ok in <dur>
trace_id: <trace_id>
"
    );
    assert!(
        out.stderr.contains("↻ retry 2/3 in 50ms\n")
            && out.stderr.contains("↻ retry 3/3 in 100ms\n"),
        "exponential backoff"
    );
}

#[test]
fn console_shows_routing_decisions_and_nested_loop_bodies() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "-c",
            r#"{"files": ["a"]}"#,
        ])
        .run()
        .success();
    assert_eq!(
        normalize(&out.stderr),
        "▶ flow loop  trace <trace_id>\n    ✓ check_file (Set)  <dur>\n  ✓ each_file (Loop)  <dur>\n  ✓ count (Set)  <dur>\n✓ flow loop ok in <dur>\ntrace_id: <trace_id>\n"
    );
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/command.yaml",
            "-c",
            r#"{"scores": [0.1]}"#,
        ])
        .run()
        .success();
    assert!(
        normalize(&out.stderr).contains("  ✓ verdict (Router)  <dur>\n    → reject  (default)\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn quiet_silences_the_console() {
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "--quiet",
            "-c",
            r#"{"files": []}"#,
        ])
        .run()
        .success();
    assert_eq!(out.stderr, "");
    assert_eq!(out.ctx()["summary"], "checked 0 files");
}
