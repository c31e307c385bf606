//! `illumo run` as a whole process on a 3-node flow: start, load, run, print, exit.

use criterion::{criterion_group, criterion_main, Criterion};
use std::process::Command;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("illumo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flow = dir.join("three.yaml");
    std::fs::write(
        &flow,
        "flow:\n  name: three\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}\n    b: {type: Set, setting: {value: \"{{ $ctx.a }}\"}, outputs: $ctx.b}\n    c: {type: Set, setting: {value: done}, outputs: $ctx.c}\n  edges:\n    - a >> b >> c\n",
    )
    .unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_illumo"))
            .args(["run", flow.to_str().unwrap(), "--tracer", "none", "--quiet"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out
    };
    let first = run();
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"c\":\"done\""));
    c.bench_function("cold_start_3_node_flow", |b| b.iter(run));
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
