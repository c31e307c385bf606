//! The otel tracer against a real OTLP collector (rotel, installed from PyPI by .ci/run),
//! over gRPC and HTTP, checked span by span against the same run in SQLite.

use crate::support::{sqlite3, Illumo, TempDir};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A rotel collector on two free loopback ports, printing every span it receives.
pub(crate) struct Collector {
    child: Child,
    pub(crate) log: std::path::PathBuf,
    pub(crate) grpc: u16,
    pub(crate) http: u16,
    _dir: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Collector {
    pub(crate) fn start() -> Collector {
        let found = Command::new("python3")
            .args(["-c", "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
            .output()
            .expect("python3 runs");
        let agent = String::from_utf8_lossy(&found.stdout).trim().to_string();
        assert!(
            found.status.success() && !agent.is_empty(),
            "the rotel collector is missing: pip install rotel"
        );
        let dir = TempDir::new();
        let log = dir.path().join("rotel.log");
        let (grpc, http) = (free_port(), free_port());
        let child = Command::new(agent)
            .args([
                "start",
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .arg(format!("--otlp-grpc-endpoint=127.0.0.1:{grpc}"))
            .arg(format!("--otlp-http-endpoint=127.0.0.1:{http}"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", grpc)).is_err()
            || TcpStream::connect(("127.0.0.1", http)).is_err()
        {
            assert!(Instant::now() < deadline, "rotel did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Collector {
            child,
            log,
            grpc,
            http,
            _dir: dir,
        }
    }

    /// The spans received so far, waiting (bounded) until `count` of `trace_id` arrived.
    pub(crate) fn spans(&self, trace_id: &str, count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Span {
    trace_id: String,
    parent_id: String,
    span_id: String,
    name: String,
    status: String,
    attributes: BTreeMap<String, String>,
    events: Vec<String>,
}

/// Reads rotel's detailed debug output (`Span #0`, `Trace ID : ...`, `-> key: Str(value)`).
fn parse(log: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut in_events = false;
    for line in log.lines() {
        let line = line.trim();
        if line.starts_with("Span #") {
            spans.push(Span::default());
            in_events = false;
            continue;
        }
        let Some(span) = spans.last_mut() else {
            continue;
        };
        let field = |prefix: &str| {
            line.strip_prefix(prefix)
                .map(|rest| rest.trim_start_matches([' ', ':']).trim().to_string())
        };
        if let Some(v) = field("Trace ID") {
            span.trace_id = v;
        } else if let Some(v) = field("Parent ID") {
            span.parent_id = v;
        } else if let Some(v) = field("ID ") {
            span.span_id = v;
        } else if let Some(v) = field("Name") {
            span.name = v;
        } else if let Some(v) = field("Status code") {
            span.status = v;
        } else if line == "Events:" {
            in_events = true;
        } else if let Some(kv) = line.strip_prefix("-> ") {
            let (k, v) = kv.split_once(": ").unwrap_or((kv, ""));
            if in_events && k == "Name" {
                span.events.push(v.to_string());
            } else if !in_events {
                span.attributes.insert(k.to_string(), v.to_string());
            }
        } else if line.starts_with("ResourceSpans") {
            in_events = false;
        }
    }
    spans
}

fn run_into(
    collector: &Collector,
    protocol: &str,
    db: &std::path::Path,
    work: &std::path::Path,
) -> String {
    let port = if protocol == "grpc" {
        collector.grpc
    } else {
        collector.http
    };
    let context = serde_json::json!({"work_dir": work}).to_string();
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/retry_timeout_goto.yaml",
            "-c",
            &context,
        ])
        .args([
            "--tracer",
            "otel",
            "--tracer-arg",
            &format!("exporter_endpoint=http://127.0.0.1:{port}"),
        ])
        .args(["--tracer-arg", &format!("protocol={protocol}")])
        .args([
            "--tracer",
            "sqlite",
            "--tracer-arg",
            &format!("db_path={}", db.display()),
        ])
        .run()
        .success();
    assert_eq!(out.stderr.lines().count(), 1, "no warning: {}", out.stderr);
    out.stderr
        .trim()
        .strip_prefix("trace_id: ")
        .unwrap()
        .to_string()
}

fn same_tree_as_sqlite(collector: &Collector, protocol: &str) {
    let dir = TempDir::new();
    let db = dir.path().join("trace.db");
    let trace_id = run_into(collector, protocol, &db, &dir.path().join("work"));
    let spans = collector.spans(&trace_id, 7);
    let mut received: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{}|{}|{}",
                s.span_id,
                if s.parent_id.is_empty() {
                    "-"
                } else {
                    &s.parent_id
                },
                s.name
            )
        })
        .collect();
    received.sort();
    let stored = sqlite3(
        &db,
        "SELECT span_id || '|' || coalesce(parent_id, '-') || '|' || name FROM spans ORDER BY 1",
    );
    assert_eq!(
        received.join("\n") + "\n",
        stored,
        "the collector got the same spans, ids and parents as SQLite"
    );

    let root = spans
        .iter()
        .find(|s| s.name == "flow retry_timeout_goto")
        .expect("the flow span");
    assert_eq!(
        root.attributes.get("flow.name").map(String::as_str),
        Some("Str(retry_timeout_goto)")
    );
    assert_eq!(
        root.attributes.get("illumo.span.kind").map(String::as_str),
        Some("Str(flow)")
    );
    let slow = spans
        .iter()
        .find(|s| s.name == "slow")
        .expect("the slow span");
    assert_eq!(slow.status, "STATUS_CODE_ERROR");
    for (key, value) in [
        ("node.id", "Str(slow)"),
        ("node.type", "Str(Command)"),
        ("attempt", "Int(1)"),
        ("timeout", "Bool(true)"),
        ("error.type", "Str(timeout)"),
        ("error.message", "Str(timed out after 300ms)"),
        ("policy.timeout", "Str(300ms)"),
        ("policy.on_error.target", "Str(fallback)"),
    ] {
        assert_eq!(
            slow.attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(slow.events, ["node.timeout", "node.error", "node.goto"]);
    let retries = spans
        .iter()
        .filter(|s| s.name == "flaky" && s.events.contains(&"node.retry".to_string()))
        .count();
    assert_eq!(retries, 2);
}

#[test]
fn grpc_export_matches_sqlite_span_for_span() {
    let collector = Collector::start();
    same_tree_as_sqlite(&collector, "grpc");
}

#[test]
fn http_export_matches_sqlite_span_for_span() {
    let collector = Collector::start();
    same_tree_as_sqlite(&collector, "http");
}

#[test]
fn service_name_and_resource_attributes_come_from_the_environment() {
    let collector = Collector::start();
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "-c",
            r#"{"files": []}"#,
            "--tracer",
            "otel",
        ])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{}", collector.grpc),
        )
        .env("OTEL_SERVICE_NAME", "billing-flows")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .run()
        .success();
    let trace_id = out
        .stderr
        .trim()
        .strip_prefix("trace_id: ")
        .unwrap()
        .to_string();
    assert_eq!(collector.spans(&trace_id, 3).len(), 3);
    let log = std::fs::read_to_string(&collector.log).unwrap();
    assert!(log.contains("-> service.name: Str(billing-flows)"), "{log}");
    assert!(
        log.contains("-> deployment.environment: Str(test)"),
        "{log}"
    );
}

#[test]
fn service_name_flag_names_the_service_over_the_environment() {
    let collector = Collector::start();
    let out = Illumo::new()
        .args(["run", "examples/basics/loop.yaml", "-c", r#"{"files": []}"#])
        .args(["--tracer", "otel", "--service-name", "support-desk"])
        .args([
            "--tracer-arg",
            &format!("exporter_endpoint=http://127.0.0.1:{}", collector.grpc),
        ])
        .env("OTEL_SERVICE_NAME", "billing-flows")
        .run()
        .success();
    let trace_id = out
        .stderr
        .trim()
        .strip_prefix("trace_id: ")
        .unwrap()
        .to_string();
    assert_eq!(collector.spans(&trace_id, 3).len(), 3);
    let log = std::fs::read_to_string(&collector.log).unwrap();
    assert!(log.contains("-> service.name: Str(support-desk)"), "{log}");
    assert!(!log.contains("billing-flows"), "{log}");
}

#[test]
fn a_collector_that_is_down_costs_one_warning_not_the_flow() {
    let port = free_port();
    for protocol in ["grpc", "http"] {
        let out = Illumo::new()
            .args([
                "run",
                "examples/basics/loop.yaml",
                "-c",
                r#"{"files": ["a"]}"#,
                "--quiet",
                "--tracer",
                "otel",
            ])
            .args([
                "--tracer-arg",
                &format!("exporter_endpoint=http://127.0.0.1:{port}"),
                "--tracer-arg",
                &format!("protocol={protocol}"),
            ])
            .run()
            .success();
        assert_eq!(out.ctx()["summary"], "checked 1 files");
        assert_eq!(
            out.stderr,
            format!("warning: tracer: the otel tracer ({protocol} http://127.0.0.1:{port}) failed to write: 4 spans were dropped (the connection to 127.0.0.1:{port} was refused; is the collector running?)\n")
        );
    }
}

#[test]
fn a_collector_that_never_answers_is_given_up_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept connections and hold them open without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(32) {
            held.push(stream);
        }
    });
    let out = Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "-c",
            r#"{"files": ["a"]}"#,
            "--quiet",
            "--tracer",
            "otel",
        ])
        .args([
            "--tracer-arg",
            &format!("exporter_endpoint=http://127.0.0.1:{port}"),
            "--tracer-arg",
            "protocol=http",
        ])
        .run()
        .success();
    assert_eq!(
        out.stderr,
        format!("warning: tracer: the otel tracer (http http://127.0.0.1:{port}) failed to write: 4 spans were dropped (the collector did not answer within 3s)\n")
    );
}

#[test]
fn a_bad_protocol_is_a_usage_error() {
    Illumo::new()
        .args([
            "run",
            "examples/basics/loop.yaml",
            "--tracer",
            "otel",
            "--tracer-arg",
            "protocol=carrier-pigeon",
        ])
        .run()
        .code(2)
        .stderr("error: unknown OTLP protocol `carrier-pigeon`; use `grpc` or `http`\n");
}
