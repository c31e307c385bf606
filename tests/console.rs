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

/// Runs illumo on a pseudo-terminal (util-linux `script`) with these extra arguments and
/// environment, and returns what it drew.
fn on_a_terminal(flow: &str, args: &str, env: &[(&str, &str)]) -> String {
    let dir = crate::support::TempDir::new();
    let path = dir.write("slow.yaml", flow);
    let log = dir.path().join("tty.log");
    let mut cmd = std::process::Command::new("script");
    cmd.arg("-qec")
        .arg(format!(
            "{} run {} {args} > /dev/null",
            env!("CARGO_BIN_EXE_illumo"),
            path.display()
        ))
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    for (key, value) in env {
        cmd.env(key, value);
    }
    assert!(cmd.status().expect("util-linux script runs").success());
    std::fs::read_to_string(&log).unwrap()
}

const SLOW: &str = "flow:\n  name: slow\n  nodes:\n    wait: {type: Command, setting: {argv: [python3, -c, \"import time; time.sleep(1.5)\"]}}\n";

/// Does the text hold an ANSI colour (`ESC [ ... m`)?
fn has_colour(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|rest| {
        rest.strip_prefix('[')
            .and_then(|r| {
                r.find(|c: char| !(c.is_ascii_digit() || c == ';'))
                    .map(|i| &r[i..])
            })
            .is_some_and(|r| r.starts_with('m'))
    })
}

#[test]
fn a_terminal_gets_colour_and_a_spinner_for_slow_nodes() {
    let screen = on_a_terminal(SLOW, "", &[]);
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
fn no_color_removes_colour_but_keeps_the_spinner() {
    for (args, env) in [("", vec![("NO_COLOR", "1")]), ("--color never", vec![])] {
        let screen = on_a_terminal(SLOW, args, &env);
        assert!(!has_colour(&screen), "{args}: {screen:?}");
        assert!(
            screen.contains("\r\x1b[2K  ⠙ wait (Command)  1."),
            "{args}: {screen:?}"
        );
        assert!(screen.contains("  ✓ wait (Command)  "), "{screen:?}");
    }
}

#[test]
fn a_dumb_terminal_gets_plain_text_only() {
    let screen = on_a_terminal(SLOW, "", &[("TERM", "dumb")]);
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(screen.contains("  ✓ wait (Command)  "), "{screen:?}");
}

#[test]
fn color_always_paints_a_pipe_without_redrawing_lines() {
    let out = Illumo::new()
        .args(["--color", "always", "run", "examples/basics/loop.yaml"])
        .args(["-c", r#"{"files": ["a"]}"#])
        .run()
        .success();
    assert!(
        out.stderr.contains("  \x1b[32m✓\x1b[0m each_file (Loop)  "),
        "{:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("\x1b[2K"), "{:?}", out.stderr);
}

#[test]
fn a_streamed_reply_reaches_a_terminal_redacted_and_never_a_pipe() {
    use crate::llm_server::{LlmServer, Reply};
    let flow = |base: &str| {
        format!("flow:\n  nodes:\n    ask:\n      type: Agent\n      setting: {{base_url: \"{base}\", model: m, prompt: hi, stream: true, output_path: $ctx.answer}}\n")
    };
    // The secret arrives split across two chunks.
    let server = LlmServer::start(vec![Reply::Stream(vec!["the key is hunt", "er2-xyz, bye"])]);
    let screen = on_a_terminal(
        &flow(&server.base_url),
        "--redact hunter2-xyz --color never",
        &[],
    );
    // What illumo drew (script's own header repeats the command line).
    let drawn = &screen[screen.find('▶').unwrap_or(0)..];
    assert!(drawn.contains("⋯ ask the key is ***, bye"), "{screen:?}");
    assert!(!drawn.contains("hunt"), "{screen:?}");

    let server = LlmServer::start(vec![Reply::Stream(vec!["Par", "is"])]);
    let illumo = Illumo::new();
    let path = illumo.flow_file(&flow(&server.base_url));
    let out = illumo
        .args(["--color", "always", "run", &path])
        .run()
        .success();
    assert_eq!(out.ctx()["answer"], "Paris");
    assert!(
        !out.stderr.contains('⋯'),
        "no streamed text in a pipe: {:?}",
        out.stderr
    );
}
