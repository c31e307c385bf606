//! TestExecutor runs code an LLM may have written: real escape attempts against the
//! allow-list, the environment, the network, the limits and the process tree, each run
//! through the binary with real pytest.

use crate::support::Illumo;
use serde_json::{json, Value};

/// Writes `tests/test_it.py` with `body` into a fresh workspace and runs TestExecutor over
/// it with `setting` (YAML map entries after `default_root: ws`); returns the exit code,
/// the results in ctx and the run's stderr.
fn run_tests(body: &str, setting: &str, env: &[(&str, &str)]) -> (i32, Value, String) {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    std::fs::write(ws.join("tests/test_it.py"), body).unwrap();
    let flow = format!(
        "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {{default_root: ws, command: [python3, -m, pytest, -q, -s, -p, no:cacheprovider]{setting}}}\n"
    );
    let mut run = illumo.run_flow(&flow).args(["--quiet"]);
    for (k, v) in env {
        run = run.env(k, v);
    }
    let out = run.run();
    let results = out.ctx()["tests"]["results"].clone();
    (out.code, results, out.stderr)
}

#[track_caller]
fn refused(setting: &str, expected: &str) {
    let illumo = Illumo::new();
    let flow = format!(
        "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {{default_root: ., {setting}}}\n"
    );
    let path = illumo.flow_file(&flow);
    let out = illumo
        .args(["validate", &path])
        .env("NO_COLOR", "1")
        .run()
        .code(2);
    assert_eq!(out.stderr.replace(&path, "flow.yaml"), expected);
}

#[test]
fn programs_given_as_paths_or_with_inline_code_are_refused_at_load() {
    refused(
        "command: [./pytest]",
        "error: node `run_tests`: `./pytest` is a path; name an allowed program (pytest, python, python3), which is looked up on PATH
 --> flow.yaml:5:44
  |
5 |       setting: {default_root: ., command: [./pytest]}
  |                                            ^^^^^^^^

error: flow.yaml has 1 error
",
    );
    refused(
        "command: [python3, -c, 'import os; os.system(\"id\")']",
        "error: node `run_tests`: `python3 -c` runs inline code, not tests; set `allow_inline_code: true` if that is meant
 --> flow.yaml:5:53
  |
5 |       setting: {default_root: ., command: [python3, -c, 'import os; os.system(\"id\")']}
  |                                                     ^^

error: flow.yaml has 1 error
",
    );
    refused(
        "pass_env: [HOME, OPENAI_API_KEY]",
        "error: node `run_tests`: `OPENAI_API_KEY` looks like a secret; the tests run code an LLM may have written, and secrets are not passed to it
 --> flow.yaml:5:51
  |
5 |       setting: {default_root: ., pass_env: [HOME, OPENAI_API_KEY]}
  |                                                   ^^^^^^^^^^^^^^

error: flow.yaml has 1 error
",
    );
}

#[test]
fn a_command_from_ctx_is_held_to_the_same_rules() {
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: .}\n";
    for (argv, why) in [
        (json!(["python3", "-Ic", "print(1)"]), "`python3 -Ic` runs inline code, not tests; set `allow_inline_code: true` if that is meant"),
        (json!(["/bin/sh", "-c", "id"]), "`/bin/sh` is a path; name an allowed program (pytest, python, python3), which is looked up on PATH"),
        (json!(["sh", "-c", "id"]), "`sh` is not an allowed test command (allowed: pytest, python, python3)"),
        (json!(["python3", "-m", "timeit", "-n1", "__import__('os').system('id')"]), "`python3 -m timeit` runs a module that is not a test runner (allowed_modules: pytest, unittest); add it there if that is meant"),
        (json!(["python3", "-I", "-mpdb", "-c", "import os", "t.py"]), "`python3 -m pdb` runs a module that is not a test runner (allowed_modules: pytest, unittest); add it there if that is meant"),
    ] {
        let context = json!({"tests": {"command": argv}}).to_string();
        let out = Illumo::new()
            .run_flow(flow)
            .args(["-c", &context, "--quiet"])
            .run()
            .code(1);
        assert_eq!(
            out.stderr.lines().next(),
            Some(format!("error: node `run_tests` failed on attempt 1 of 1: {why}").as_str())
        );
    }
}

#[test]
fn a_pytest_planted_in_the_workspace_is_not_what_runs() {
    // A `pytest` in the test folder, with `.` on PATH: the lookup skips relative entries.
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    let marker = illumo.dir().join("planted-ran");
    std::fs::write(
        ws.join("pytest"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.join("pytest"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/bin/sh", ws.join("python3")).unwrap();
    std::fs::write(ws.join("tests/test_ok.py"), "def test_ok():\n    pass\n").unwrap();
    let flow = "flow:\n  nodes:\n    run_tests:\n      type: TestExecutor\n      setting: {default_root: ws, command: [pytest, -q, -p, no:cacheprovider]}\n";
    let path = format!(".:{}", std::env::var("PATH").unwrap());
    let out = illumo
        .run_flow(flow)
        .args(["--quiet"])
        .env("PATH", &path)
        .run()
        .success();
    let results = &out.ctx()["tests"]["results"];
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(1), &json!(0))
    );
    assert!(!marker.exists(), "the planted pytest ran");
}

#[test]
fn the_tests_see_a_scrubbed_environment() {
    let body = "import os\n\ndef test_env():\n    print('ENV', sorted(k for k in os.environ if k in ('OPENAI_API_KEY', 'DESK_TOKEN', 'UNRELATED', 'PASSED', 'FROM_FLOW')))\n";
    let env = [
        ("OPENAI_API_KEY", "sk-live-123456"),
        ("DESK_TOKEN", "tok-9876"),
        ("UNRELATED", "x"),
        ("PASSED", "y"),
    ];
    let (code, results, _) = run_tests(body, ", env: {FROM_FLOW: '1'}, pass_env: [PASSED]", &env);
    assert_eq!(code, 0);
    let stdout = results["stdout"].as_str().unwrap();
    assert!(stdout.contains("ENV ['FROM_FLOW', 'PASSED']"), "{stdout}");
}

#[test]
fn the_tests_reach_no_network_but_their_own_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!(
        "import socket\n\ndef test_host():\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n\ndef test_own_loopback():\n    server = socket.socket()\n    server.bind(('127.0.0.1', 0))\n    server.listen()\n    socket.create_connection(server.getsockname(), timeout=2).close()\n"
    );
    let (code, results, _) = run_tests(&body, "", &[]);
    assert_eq!(code, 0, "a failing test is a result, not an error");
    let stdout = results["stdout"].as_str().unwrap();
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(1), &json!(1)),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED tests/test_it.py::test_host - ConnectionRefusedError"),
        "{stdout}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host's port was reached"
    );
    // `network: true` lets them out.
    let (_, results, _) = run_tests(&body, ", network: true", &[]);
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(2), &json!(0))
    );
    assert!(listener.accept().is_ok(), "the host's port was reached");
}

#[test]
fn memory_and_file_size_limits_hold() {
    let body = "import pytest\n\ndef test_memory():\n    with pytest.raises(MemoryError):\n        bytearray(2 << 30)\n\ndef test_file_size():\n    with pytest.raises(OSError, match='File too large'):\n        with open('big.bin', 'wb') as f:\n            f.write(b'x' * (3 << 20))\n";
    let (code, results, _) = run_tests(body, ", max_memory_mb: 512, max_file_mb: 1", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(2), &json!(0)),
        "{}",
        results["stdout"]
    );
}

#[test]
fn a_child_in_a_new_session_dies_with_the_tests() {
    let marker = format!("97.{}", crate::support::unique());
    let body = format!(
        "import subprocess, time\n\ndef test_hangs():\n    subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n    time.sleep(60)\n"
    );
    let (code, _, stderr) = run_tests(&body, ", timeout: 2s", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().next(),
        Some("error: node `run_tests` failed on attempt 1 of 1: the tests did not finish within 2s; they were killed")
    );
    assert_eq!(crate::support::gone(&marker), Vec::<u32>::new());
}

#[test]
fn the_tests_cannot_read_illumos_environment_through_proc() {
    // The tests' own environment is scrubbed; illumo's, in /proc/PID/environ, must not be
    // reachable either: the tests get a /proc of their own.
    let body = "import glob\n\ndef test_proc():\n    found = []\n    for p in glob.glob('/proc/[0-9]*/environ'):\n        try:\n            found.append(open(p, 'rb').read())\n        except OSError:\n            pass\n    print('PIDS', len(glob.glob('/proc/[0-9]*')))\n    print('LEAK' if any(b'sk-live-proc-123456' in e for e in found) else 'CLEAN')\n";
    let (code, results, _) = run_tests(body, "", &[("OPENAI_API_KEY", "sk-live-proc-123456")]);
    assert_eq!(code, 0);
    let stdout = results["stdout"].as_str().unwrap();
    assert!(stdout.contains("CLEAN"), "{stdout}");
    assert!(!stdout.contains("sk-live"), "{stdout}");
    // Only the tests' own processes: the stand-in's child, pytest, and no host process.
    let pids: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(pids <= 3, "{pids} processes visible:\n{stdout}");
}

#[test]
fn a_credential_an_agent_sends_is_not_passed_to_the_tests_under_another_name() {
    let illumo = Illumo::new();
    let ws = illumo.dir().join("ws");
    std::fs::create_dir_all(ws.join("tests")).unwrap();
    std::fs::write(ws.join("tests/test_it.py"), "def test_ok():\n    pass\n").unwrap();
    let flow = "flow:
  nodes:
    ask: {type: Agent, setting: {provider: openai, model: m, base_url: 'http://127.0.0.1:9', api_key_env: LLMCRED, prompt: hi}}
    run_tests:
      type: TestExecutor
      setting: {default_root: ws, command: [python3, -m, pytest, -q], pass_env: [LLMCRED]}
  entry: run_tests
";
    let out = illumo
        .run_flow(flow)
        .args(["--quiet"])
        .env("LLMCRED", "cred-abc-123")
        .run()
        .code(1);
    assert_eq!(
        out.stderr.lines().next(),
        Some("error: node `run_tests` failed on attempt 1 of 1: pass_env `LLMCRED` holds one of the run's secrets; the tests run code an LLM may have written, and secrets are not passed to it")
    );
}

/// A Unix socket in the file system (a Docker or D-Bus socket, here one this test
/// listens on) is out of reach: the tests cannot create a Unix socket to connect with,
/// while a socket pair among themselves still works. `network: true` lets them out.
#[test]
fn the_tests_cannot_reach_a_unix_socket_of_the_host() {
    let dir = crate::support::TempDir::new();
    let path = dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let body = format!(
        "import socket\n\ndef test_host_socket():\n    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n    s.connect({path:?})\n    s.close()\n\ndef test_own_pair():\n    a, b = socket.socketpair()\n    a.sendall(b'hi')\n    assert b.recv(2) == b'hi'\n",
        path = path.display().to_string()
    );
    let (code, results, _) = run_tests(&body, "", &[]);
    assert_eq!(code, 0, "a failing test is a result, not an error");
    let stdout = results["stdout"].as_str().unwrap();
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(1), &json!(1)),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAILED tests/test_it.py::test_host_socket - PermissionError")
            && stdout.contains("E       PermissionError: [Errno 13] Permission denied"),
        "{stdout}"
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host's socket was reached"
    );
    let (_, results, _) = run_tests(&body, ", network: true", &[]);
    assert_eq!(
        (&results["passed"], &results["failed"]),
        (&json!(2), &json!(0)),
        "{}",
        results["stdout"]
    );
    assert!(listener.accept().is_ok(), "the host's socket was reached");
}
