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

/// Runs illumo on a pseudo-terminal (util-linux `script`) and returns what it drew.
fn on_a_terminal(flow: &str, no_color: bool) -> String {
    let dir = crate::support::TempDir::new();
    let path = dir.write("slow.yaml", flow);
    let log = dir.path().join("tty.log");
    let mut cmd = std::process::Command::new("script");
    cmd.arg("-qec")
        .arg(format!(
            "{} run {} > /dev/null",
            env!("CARGO_BIN_EXE_illumo"),
            path.display()
        ))
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    assert!(cmd.status().expect("util-linux script runs").success());
    std::fs::read_to_string(&log).unwrap()
}

const SLOW: &str = "flow:\n  name: slow\n  nodes:\n    wait: {type: Command, setting: {argv: [python3, -c, \"import time; time.sleep(1.5)\"]}}\n";

#[test]
fn a_terminal_gets_colour_and_a_spinner_for_slow_nodes() {
    let screen = on_a_terminal(SLOW, false);
    // The first frame appears once the node has run a second (the exact time varies).
    assert!(
        screen.contains("\x1b[2K  \x1b[36m⠙\x1b[0m wait (Command)  \x1b[2m1."),
        "{screen:?}"
    );
    assert!(
        screen.contains("\x1b[2K  \x1b[32m✓\x1b[0m wait (Command)  "),
        "the spinner line is cleared first: {screen:?}"
    );
}

#[test]
fn no_color_means_no_colour_and_no_spinner_even_on_a_terminal() {
    let screen = on_a_terminal(SLOW, true);
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(screen.contains("  ✓ wait (Command)  "), "{screen:?}");
}
