//! PythonExec: code an LLM wrote, run by real python3 in the sandbox, and real escape
//! attempts against each layer, each refused with its rule named and leaving no effect.

use crate::support::Illumo;
use serde_json::{json, Value};

/// Runs one PythonExec node with `code` and extra settings; the exit code, the result
/// object (`ctx.python.c`) and the first stderr line.
fn exec(code: &str, extra: &str) -> (i32, Value, String) {
    let flow = format!(
        "flow:\n  nodes:\n    c: {{type: PythonExec, setting: {{code: {}{extra}}}}}\n",
        serde_json::to_string(code).unwrap()
    );
    let out = Illumo::new().run_flow(&flow).args(["--quiet"]).run();
    let result = out.ctx()["python"]["c"].clone();
    let first = out.stderr.lines().next().unwrap_or("").to_string();
    (out.code, result, first)
}

#[track_caller]
fn refused(code: &str, extra: &str, rule: &str) {
    let (status, result, first) = exec(code, extra);
    assert_eq!(status, 1, "{code}");
    assert_eq!(
        first,
        format!("error: node `c` failed on attempt 1 of 1: the sandbox refused the code: {rule}"),
        "{code}"
    );
    assert_eq!(result["success"], false);
}

#[test]
fn the_result_is_the_last_expression_or_the_variable_result() {
    let (status, result, _) = exec(
        "a, b = 0, 1\nfor _ in range(100):\n    a, b = b, a + b\nprint('computed')\na\n",
        "",
    );
    assert_eq!(status, 0);
    assert_eq!(
        result["result"], "354224848179261915075",
        "too large for JSON numbers: digits"
    );
    assert_eq!(result["stdout"], "computed\n");
    assert_eq!(result["error"], Value::Null);
    let (_, result, _) = exec(
        "import statistics\nresult = {'mean': statistics.mean([1, 2, 3, 6])}\n'ignored'",
        "",
    );
    assert_eq!(result["result"], json!({"mean": 3}));
    // Root (as the tests run here) is exempt from the process limit.
    let process_limit = if unsafe { libc::getuid() } == 0 {
        "unavailable"
    } else {
        "active"
    };
    assert_eq!(
        result["sandbox"],
        json!({"static_check": "active", "audit_hook": "active", "rlimits": "active", "process_limit": process_limit,
               "scrubbed_environment": "active", "pid_namespace": "active", "network_namespace": "active", "private_proc": "active"})
    );
}

#[test]
fn a_python_exception_is_retryable_and_its_error_stays_in_ctx() {
    let (status, result, first) =
        exec("x = 1\ny = [][x]\n", ", policy: {retry: {max_attempts: 2}}");
    assert_eq!(status, 1);
    assert_eq!(
        first,
        "error: node `c` failed on attempt 2 of 2: the code raised IndexError on line 2: list index out of range"
    );
    assert_eq!(result["error"]["type"], "IndexError");
    assert_eq!(result["error"]["line"], 2);
    assert_eq!(
        result["error"]["traceback"],
        "Traceback (most recent call last):\n  File \"<code>\", line 2, in <module>\nIndexError: list index out of range\n"
    );
}

#[test]
fn every_escape_attempt_is_refused_by_its_rule_and_leaves_no_trace() {
    let dir = crate::support::TempDir::new();
    let marker = dir.path().join("escaped");
    let m = marker.display().to_string();
    let imports = "import of `os` is not allowed (allowed: math, json, datetime, re, collections, itertools, functools, typing, statistics, csv, decimal, fractions, random, string, textwrap)";
    refused(&format!("import os\nos.system('touch {m}')"), "", imports);
    refused(
        &format!("import random\nrandom._os.system('touch {m}')"),
        "",
        "`os.system` is not allowed (no processes or signals)",
    );
    refused(
        &format!("import subprocess\nsubprocess.run(['touch', '{m}'])"),
        ", allowed_imports: [subprocess]",
        "`subprocess.Popen` is not allowed (no processes or signals)",
    );
    refused("__import__('os')", "", "`__import__` is not allowed");
    refused(
        "().__class__.__base__.__subclasses__()",
        "",
        "the attribute `__subclasses__` is not allowed",
    );
    refused(
        "getattr(__builtins__, 'ev' + 'al')('1')",
        "",
        "`getattr` with a computed attribute name is not allowed",
    );
    refused(
        "open('/etc/passwd').read()",
        "",
        "opening `/etc/passwd` is not allowed (only the work folder)",
    );
    refused(
        &format!("open('{m}', 'w').write('x')"),
        "",
        &format!("opening `{m}` is not allowed (only the work folder)"),
    );
    refused(
        "import random\nwhile True:\n    random._os.fork()",
        "",
        "`os.fork` is not allowed (no processes or signals)",
    );
    assert!(!marker.exists(), "an attempt had an effect");
}

#[test]
fn no_connection_reaches_a_listener_on_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    refused(
        &format!("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))"),
        ", allowed_imports: [socket]",
        "network access is not allowed",
    );
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}

#[test]
fn limits_name_themselves() {
    let (status, _, first) = exec("x = bytearray(2 << 30)", "");
    assert_eq!(status, 1);
    assert_eq!(
        first,
        "error: node `c` failed on attempt 1 of 1: the code ran out of memory (max_memory_mb 512)"
    );
    let (status, _, first) = exec("while True:\n    pass", ", timeout: 1s");
    assert_eq!(status, 1);
    assert_eq!(first, "error: node `c` failed on attempt 1 of 1: the code did not finish within 1s (timeout); it was killed");
    let (status, result, _) = exec("print('x' * (100 << 20))", "");
    assert_eq!(status, 0);
    assert_eq!(result["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(result["stdout_truncated"], true);
}

#[test]
fn a_session_keeps_variables_from_one_step_to_the_next_and_files_come_and_go() {
    let illumo = Illumo::new();
    std::fs::write(
        illumo.dir().join("sales.csv"),
        "region,amount\nnorth,10\nsouth,30\neast,20\n",
    )
    .unwrap();
    let flow = "flow:
  nodes:
    load:
      type: PythonExec
      setting:
        session: sales
        files: [sales.csv]
        code: |
          import csv
          rows = list(csv.DictReader(open('sales.csv')))
          len(rows)
    compute:
      type: PythonExec
      setting:
        session: sales
        code: |
          import statistics
          amounts = [int(r['amount']) for r in rows]
          result = {'mean': statistics.mean(amounts), 'max': max(amounts), 'min': min(amounts)}
    report:
      type: PythonExec
      setting:
        session: sales
        output_dir: out
        code: |
          open('report.txt', 'w').write(f\"mean {result['mean']}\")
          'written'
  edges:
    - load >> compute >> report
";
    let dir = illumo.dir().to_path_buf();
    let out = illumo.run_flow(flow).args(["--quiet"]).run().success();
    let ctx = out.ctx();
    assert_eq!(ctx["python"]["load"]["result"], 3);
    assert_eq!(
        ctx["python"]["compute"]["result"],
        json!({"mean": 20, "max": 30, "min": 10})
    );
    assert_eq!(
        ctx["python"]["report"]["files"],
        json!([{"path": "report.txt", "size": 7}])
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out/report.txt")).unwrap(),
        "mean 20"
    );
}

#[test]
fn code_in_an_agents_reply_runs_from_its_fenced_block() {
    let flow = "flow:\n  nodes:\n    c: {type: PythonExec, inputs: \"Sure:\\n```python\\nresult = 6 * 7\\n```\\nDone.\"}\n";
    let out = Illumo::new()
        .run_flow(flow)
        .args(["--quiet"])
        .run()
        .success();
    assert_eq!(out.ctx()["python"]["c"]["result"], 42);
    assert_eq!(out.ctx()["python"]["c"]["code"], "result = 6 * 7\n");
}

#[test]
fn network_true_lets_the_code_connect() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (status, result, first) = exec(
        &format!("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nresult = 'connected'"),
        ", allowed_imports: [socket], network: true",
    );
    assert_eq!(status, 0, "{first}");
    assert_eq!(result["result"], "connected");
    assert_eq!(result["sandbox"]["network_namespace"], "off");
    assert!(listener.accept().is_ok());
}

/// The code runs under `RLIMIT_NPROC` (a finite number of processes for its user; root is
/// exempt, and the report says so), and the sandbox report names the layer.
#[test]
fn the_code_runs_under_a_process_limit() {
    let (status, result, first) = exec(
        "import resource\nresult = resource.getrlimit(resource.RLIMIT_NPROC)[0]\n",
        ", allowed_imports: [resource]",
    );
    assert_eq!(status, 0, "{first}");
    let limit = result["result"].as_i64().unwrap();
    assert!(limit > 32 && limit < 1_000_000, "a finite limit: {limit}");
    let root = unsafe { libc::getuid() } == 0;
    assert_eq!(
        result["sandbox"]["process_limit"],
        if root { "unavailable" } else { "active" }
    );
}
