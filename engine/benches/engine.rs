//! Engine overhead per node, with no tracer: a chain of 1,000 `Set` nodes, a 100-way
//! fan-out into one join, and a chain whose ctx carries 1 MB (the cost must not grow);
//! and loading (parse, decode, validate) chains and fan-outs of growing size, which must
//! grow linearly.

// The allocator the `illumo` binary ships with, so these numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use illumo_engine::runner::{run, RunOptions};
use illumo_engine::tracer::Fanout;
use illumo_engine::{Flow, Source};
use serde_json::{json, Value};
use std::sync::Arc;

fn load(text: String) -> Arc<Flow> {
    let registry = illumo_nodes::builtin_registry();
    Arc::new(Flow::load(Source::new("bench.yaml", text), &registry).expect("bench flow loads"))
}

fn chain_text(n: usize) -> String {
    let mut text = format!("flow:\n  name: chain\n  max_steps: {}\n  nodes:\n", n + 1);
    for i in 0..n {
        text.push_str(&format!(
            "    n{i}: {{type: Set, setting: {{value: {i}}}}}\n"
        ));
    }
    text.push_str("  edges:\n    - ");
    text.push_str(
        &(0..n)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(" >> "),
    );
    text.push('\n');
    text
}

fn chain(n: usize) -> Arc<Flow> {
    load(chain_text(n))
}

fn fan_out(n: usize) -> Arc<Flow> {
    load(fan_out_text(n, false))
}

/// `seed` fans out to `n` branches that `join` waits for; with `outputs`, each branch
/// writes its own path (what the parallel-write check looks at).
fn fan_out_text(n: usize, outputs: bool) -> String {
    let mut text = "flow:\n  name: fan\n  max_parallel: 128\n  nodes:\n    seed: {type: Set, setting: {value: 0}}\n    join: {type: Set, setting: {value: done}}\n".to_string();
    for i in 0..n {
        let out = if outputs {
            format!(", outputs: $ctx.r.b{i}")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "    b{i}: {{type: Set, setting: {{value: {i}}}{out}}}\n"
        ));
    }
    let branches: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    text.push_str(&format!(
        "  edges:\n    - seed >> ({}) \n    - ({}) >> join\n",
        branches.join(" | "),
        branches.join(" & ")
    ));
    text
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_once = |flow: &Arc<Flow>, ctx: &Value| {
        let options = RunOptions::new(Arc::new(Fanout::default()));
        rt.block_on(run(flow.clone(), ctx.clone(), options))
            .expect("run succeeds")
    };

    let flow = chain(1000);
    let empty = json!({});
    assert_eq!(run_once(&flow, &empty).steps, 1000);
    c.bench_function("chain_1000_set_nodes", |b| {
        b.iter(|| run_once(&flow, &empty))
    });

    let flow = fan_out(100);
    let out = run_once(&flow, &empty);
    assert_eq!(
        out.ctx["joins"]["join"].as_object().map(|m| m.len()),
        Some(100)
    );
    c.bench_function("fan_out_100_and_join", |b| {
        b.iter(|| run_once(&flow, &empty))
    });

    let flow = chain(100);
    let small = json!({"blob": ""});
    let big = json!({"blob": "x".repeat(1 << 20)});
    c.bench_function("chain_100_ctx_empty", |b| {
        b.iter(|| run_once(&flow, &small))
    });
    // The 1 MB ctx is cloned once per run by the harness; compare against `ctx_clone_1mb`.
    c.bench_function("chain_100_ctx_1mb", |b| b.iter(|| run_once(&flow, &big)));
    c.bench_function("ctx_clone_1mb", |b| {
        b.iter(|| criterion::black_box(big.clone()))
    });

    let registry = illumo_nodes::builtin_registry();
    let mut group = c.benchmark_group("load");
    for n in [10, 100, 1_000, 10_000] {
        let text = chain_text(n);
        group.bench_with_input(criterion::BenchmarkId::new("chain", n), &text, |b, text| {
            b.iter(|| Flow::load(Source::new("bench.yaml", text.clone()), &registry).is_ok())
        });
    }
    let text = fan_out_text(1_000, true);
    group.bench_function("fan_out_join_1000", |b| {
        b.iter(|| Flow::load(Source::new("bench.yaml", text.clone()), &registry).is_ok())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
