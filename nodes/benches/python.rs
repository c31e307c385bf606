//! A call into the warm Python worker (FunctionNode's cost), with and without ctx, and a
//! flow of FunctionNodes run by the engine. Needs `python3` on PATH.

// The allocator the `illumo` binary ships with, so these numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use illumo_nodes::python::{Answer, Worker, WorkerKey};
use serde_json::json;

const MODULE: &str = "def inc(payload):\n    return payload + 1\n\ndef tag(payload, ctx):\n    ctx['last'] = payload\n    return payload\n";

fn worker(dir: &std::path::Path) -> std::sync::Arc<Worker> {
    std::fs::write(dir.join("bench_funcs.py"), MODULE).unwrap();
    Worker::shared(WorkerKey {
        python: "python3".into(),
        paths: vec![dir.to_path_buf()],
    })
}

fn calls(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("illumo-bench-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let worker = worker(&dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = json!({"request": {"id": 7, "text": "hello"}, "payloads": {"a": 1}});
    // Warm it: the first call starts the interpreter.
    let first = runtime.block_on(worker.call("bench_funcs.inc", &json!(1), &ctx));
    assert!(matches!(first, Ok(Answer::Returned { ref output, .. }) if output == &json!(2)));
    let mut group = c.benchmark_group("python");
    group.bench_function("warm_call", |b| {
        b.iter(|| runtime.block_on(worker.call("bench_funcs.inc", &json!(41), &ctx)))
    });
    group.bench_function("warm_call_with_ctx", |b| {
        b.iter(|| runtime.block_on(worker.call("bench_funcs.tag", &json!(41), &ctx)))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// PythonExec through the engine: a fresh sandbox per run (start, checks, limits), and a
/// step in a live session (one request to an interpreter that is already up).
fn exec(c: &mut Criterion) {
    use illumo_engine::runner::{run, RunOptions};
    use illumo_engine::{Flow, Source};
    let registry = illumo_nodes::builtin_registry();
    let load = |text: &str| {
        std::sync::Arc::new(
            Flow::load(Source::new("bench.yaml", text.to_string()), &registry).unwrap(),
        )
    };
    let fresh =
        load("flow:\n  nodes:\n    c: {type: PythonExec, setting: {code: 'result = 6 * 7'}}\n");
    let session = load("flow:\n  nodes:\n    c: {type: PythonExec, setting: {session: bench, code: 'result = 6 * 7'}}\n");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let once = |flow: &std::sync::Arc<Flow>| {
        let tracer = std::sync::Arc::new(illumo_engine::tracer::Fanout::default());
        let out = runtime
            .block_on(run(flow.clone(), json!({}), RunOptions::new(tracer)))
            .unwrap();
        assert_eq!(out.ctx["python"]["c"]["result"], 42);
    };
    // The session's interpreter starts here, outside the measurement.
    once(&session);
    let mut group = c.benchmark_group("python_exec");
    group.sample_size(20);
    group.bench_function("fresh_sandbox", |b| b.iter(|| once(&fresh)));
    group.bench_function("session_step", |b| b.iter(|| once(&session)));
    group.finish();
}

criterion_group!(benches, calls, exec);
criterion_main!(benches);
