//! `illumo` as a user runs it, whole process (start, read, validate, run, print, exit):
//! a 3-node flow, then chains of `Set` nodes and a fan-out into a join at growing sizes,
//! to show how the cost grows (it must stay linear). Results: docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A chain of `n` `Set` nodes; with `outputs`, each writes its own ctx path.
fn chain(n: usize, outputs: bool) -> String {
    let mut text = format!("flow:\n  name: chain\n  max_steps: {}\n  nodes:\n", n + 1);
    for i in 0..n {
        let out = if outputs {
            format!(", outputs: $ctx.v{i}")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "    n{i}: {{type: Set, setting: {{value: {i}}}{out}}}\n"
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    text.push_str(&format!("  edges:\n    - {}\n", names.join(" >> ")));
    text
}

/// `seed` fans out to `n` branches, each writing its own path, and `join` waits for all.
fn fan_out(n: usize) -> String {
    let mut text = format!(
        "flow:\n  name: fan\n  max_parallel: 64\n  max_steps: {}\n  nodes:\n    seed: {{type: Set, setting: {{value: 0}}}}\n    join: {{type: Set, setting: {{value: done}}, outputs: $ctx.done}}\n",
        n + 2
    );
    for i in 0..n {
        text.push_str(&format!(
            "    b{i}: {{type: Set, setting: {{value: {i}}}, outputs: $ctx.results.b{i}}}\n"
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    text.push_str(&format!(
        "  edges:\n    - seed >> ({})\n    - ({}) >> join\n",
        names.join(" | "),
        names.join(" & ")
    ));
    text
}

fn illumo(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_illumo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("illumo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let three = write(
        &dir,
        "three.yaml",
        "flow:\n  name: three\n  nodes:\n    a: {type: Set, setting: {value: 1}, outputs: $ctx.a}\n    b: {type: Set, setting: {value: \"{{ $ctx.a }}\"}, outputs: $ctx.b}\n    c: {type: Set, setting: {value: done}, outputs: $ctx.c}\n  edges:\n    - a >> b >> c\n",
    );
    let three = three.to_str().unwrap().to_string();
    let first = illumo(&["run", &three, "--tracer", "none", "--quiet"]);
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"c\":\"done\""));
    c.bench_function("cold_start_3_node_flow", |b| {
        b.iter(|| illumo(&["run", &three, "--tracer", "none", "--quiet"]))
    });

    let mut group = c.benchmark_group("whole_process");
    group.sample_size(10);
    for n in [10, 100, 1_000, 10_000] {
        let plain = write(&dir, &format!("chain{n}.yaml"), &chain(n, false));
        let plain = plain.to_str().unwrap().to_string();
        let written = write(&dir, &format!("outputs{n}.yaml"), &chain(n, true));
        let written = written.to_str().unwrap().to_string();
        let out = illumo(&["run", &written, "--tracer", "none", "--quiet"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(
            "\"v{}\":{}",
            n - 1,
            n - 1
        )));
        group.bench_with_input(BenchmarkId::new("validate_chain", n), &plain, |b, f| {
            b.iter(|| illumo(&["validate", f]))
        });
        group.bench_with_input(BenchmarkId::new("run_chain", n), &plain, |b, f| {
            b.iter(|| illumo(&["run", f, "--tracer", "none", "--quiet"]))
        });
        group.bench_with_input(
            BenchmarkId::new("run_chain_with_outputs", n),
            &written,
            |b, f| b.iter(|| illumo(&["run", f, "--tracer", "none", "--quiet"])),
        );
    }
    for n in [100, 1_000] {
        let fan = write(&dir, &format!("fan{n}.yaml"), &fan_out(n));
        let fan = fan.to_str().unwrap().to_string();
        let out = illumo(&["run", &fan, "--tracer", "none", "--quiet"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"done\":\"done\""));
        group.bench_with_input(
            BenchmarkId::new("validate_fan_out_join", n),
            &fan,
            |b, f| b.iter(|| illumo(&["validate", f])),
        );
        group.bench_with_input(BenchmarkId::new("run_fan_out_join", n), &fan, |b, f| {
            b.iter(|| illumo(&["run", f, "--tracer", "none", "--quiet"]))
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
