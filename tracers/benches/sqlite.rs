//! The sqlite tracer's throughput against raw batched rusqlite inserts of the same rows,
//! and the engine's per-node overhead with the sqlite tracer on.

// The allocator the `illumo` binary ships with, so these numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use illumo_engine::ids::iso8601;
use illumo_engine::journal::{Durability, Journal, RunStart};
use illumo_engine::runner::{run, RunOptions};
use illumo_engine::tracer::{DbTracer, SpanData, SpanId, SpanKind, SpanStatus, TraceId, TracerDB};
use illumo_engine::{Flow, Source};
use illumo_tracers::sqlite::{open, SqliteTracer};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const ROWS: usize = 20_000;

fn spans() -> Vec<SpanData> {
    let trace_id = TraceId::random();
    let root = SpanId::random();
    (0..ROWS)
        .map(|i| {
            let Ok(serde_json::Value::Object(attributes)) = serde_json::to_value(json!({
                "node": {"id": format!("n{i}"), "type": "Set"}, "attempt": 1, "max_attempts": 1,
                "input": {"preview": "null"}, "output": {"preview": i.to_string()},
            })) else {
                unreachable!()
            };
            let start = SystemTime::now();
            SpanData {
                trace_id,
                span_id: SpanId::random(),
                parent_id: Some(root),
                name: format!("n{i}"),
                kind: SpanKind::Node,
                start_time: start,
                end_time: Some(start + Duration::from_micros(3)),
                status: SpanStatus::Ok,
                attributes,
                common: Default::default(),
            }
        })
        .collect()
}

fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "illumo-bench-{}-{tag}-{}",
        std::process::id(),
        illumo_engine::ids::random_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("trace.db")
}

/// The same rows, written the fastest plain way: one prepared statement, 2,000 rows per
/// transaction, on the calling thread.
fn raw_inserts(spans: &[SpanData]) -> Duration {
    let mut conn = open(&temp_db("raw")).unwrap();
    let start = Instant::now();
    for chunk in spans.chunks(2000) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO spans (span_id, trace_id, parent_id, name, kind, start_time, end_time, duration_ms, status, attributes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .unwrap();
            for s in chunk {
                stmt.execute(rusqlite::params![
                    s.span_id.to_string(),
                    s.trace_id.to_string(),
                    s.parent_id.map(|p| p.to_string()),
                    s.name,
                    s.kind.as_str(),
                    iso8601(s.start_time),
                    s.end_time.map(iso8601),
                    0.003,
                    s.status.as_str(),
                    serde_json::Value::Object(s.attributes.clone()).to_string(),
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    start.elapsed()
}

/// Through the tracer: every span queued by the hook, written by the background writer,
/// and the time includes the final flush (everything committed).
fn through_tracer(spans: &[SpanData]) -> Duration {
    let mut tracer = SqliteTracer::new(temp_db("tracer"));
    tracer.connect().unwrap();
    let start = Instant::now();
    for s in spans {
        tracer.record_span(s).unwrap();
    }
    tracer.flush().unwrap();
    let took = start.elapsed();
    tracer.close().unwrap();
    took
}

fn bench(c: &mut Criterion) {
    let spans = spans();
    let mut group = c.benchmark_group("sqlite_20k_spans");
    group.sample_size(10);
    group.bench_function("raw_rusqlite_batched", |b| {
        b.iter_custom(|n| (0..n).map(|_| raw_inserts(&spans)).sum())
    });
    group.bench_function("sqlite_tracer", |b| {
        b.iter_custom(|n| (0..n).map(|_| through_tracer(&spans)).sum())
    });
    group.finish();

    let registry = illumo_nodes::builtin_registry();
    let chain = |n: usize| {
        let mut text = format!("flow:\n  name: chain\n  max_steps: {}\n  nodes:\n", n + 1);
        for i in 0..n {
            text.push_str(&format!(
                "    n{i}: {{type: Set, setting: {{value: {i}}}}}\n"
            ));
        }
        text.push_str(&format!(
            "  edges:\n    - {}\n",
            (0..n)
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(" >> ")
        ));
        Arc::new(Flow::load(Source::new("chain.yaml", text), &registry).unwrap())
    };
    let flow = chain(1000);
    let long_flow = chain(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("chain_1000_set_nodes");
    group.sample_size(10);
    // A backend that stores nothing: what building and handing over spans costs the engine.
    group.bench_function("with_null_tracer_db", |b| {
        b.iter(|| {
            let tracer = Arc::new(DbTracer::new(NullDb).unwrap());
            let out = rt
                .block_on(run(flow.clone(), json!({}), RunOptions::new(tracer)))
                .unwrap();
            assert_eq!(out.steps, 1000);
        })
    });
    // Clone and queue each span to a thread that drops it: the hand-over without SQLite.
    group.bench_function("with_queue_only", |b| {
        b.iter(|| {
            let tracer = Arc::new(DbTracer::new(QueueDb::default()).unwrap());
            let out = rt
                .block_on(run(flow.clone(), json!({}), RunOptions::new(tracer)))
                .unwrap();
            assert_eq!(out.steps, 1000);
        })
    });
    // A fresh database per run; the time includes the run's final flush (all committed).
    group.bench_function("with_sqlite_tracer", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let tracer =
                        Arc::new(DbTracer::new(SqliteTracer::new(temp_db("chain"))).unwrap());
                    let start = Instant::now();
                    let out = rt
                        .block_on(run(flow.clone(), json!({}), RunOptions::new(tracer)))
                        .unwrap();
                    let took = start.elapsed();
                    assert_eq!(out.steps, 1000);
                    took
                })
                .sum()
        })
    });
    // The engine's side only: the clock stops when the flow is done; the writer's last
    // commit happens after (the SQLite tracer is the same, only its end-of-run wait moves).
    group.bench_function("with_sqlite_tracer_engine_side", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let mut db = SqliteTracer::new(temp_db("engine"));
                    db.connect().unwrap();
                    let sqlite = Arc::new(db);
                    let tracer = Arc::new(DbTracer::new(LateFlush(sqlite.clone())).unwrap());
                    let start = Instant::now();
                    let out = rt
                        .block_on(run(flow.clone(), json!({}), RunOptions::new(tracer)))
                        .unwrap();
                    let took = start.elapsed();
                    sqlite.flush().unwrap();
                    assert_eq!(out.steps, 1000);
                    took
                })
                .sum()
        })
    });
    // Five times the nodes: the growth over the 1,000-node run is the cost per node, free of
    // what every run pays once (opening the run, the last commit).
    group.bench_function("with_sqlite_tracer_5000_nodes", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let tracer =
                        Arc::new(DbTracer::new(SqliteTracer::new(temp_db("chain5k"))).unwrap());
                    let start = Instant::now();
                    let out = rt
                        .block_on(run(long_flow.clone(), json!({}), RunOptions::new(tracer)))
                        .unwrap();
                    let took = start.elapsed();
                    assert_eq!(out.steps, 5000);
                    took
                })
                .sum()
        })
    });
    group.finish();

    // The journal `illumo resume` reads: one row per finished step, through the same
    // writer as the spans.
    let mut group = c.benchmark_group("journal_1000_set_nodes");
    group.sample_size(10);
    let journaled = |durability: Durability, engine_side: bool| {
        let rt = &rt;
        let flow = flow.clone();
        move |n: u64| -> Duration {
            (0..n)
                .map(|_| {
                    let mut db = SqliteTracer::new(temp_db("journal"));
                    db.connect().unwrap();
                    let sqlite = Arc::new(db);
                    let journal = sqlite
                        .journal(Arc::new(illumo_engine::redact::Redactor::new([])))
                        .unwrap();
                    let mut options = RunOptions::new(Arc::new(
                        DbTracer::new(LateFlush(sqlite.clone())).unwrap(),
                    ));
                    journal
                        .start(&RunStart {
                            trace_id: options.trace_id,
                            flow_path: "chain.yaml".into(),
                            flow_hash: String::new(),
                            nodes: Vec::new(),
                            ctx: json!({}),
                            options: json!({}),
                            forked_from: None,
                        })
                        .unwrap();
                    let journal = Arc::new(journal);
                    options.journal = Some(match engine_side {
                        true => Arc::new(LateCommit(journal.clone())) as Arc<dyn Journal>,
                        false => journal.clone(),
                    });
                    options.durability = durability;
                    let start = Instant::now();
                    let out = rt.block_on(run(flow.clone(), json!({}), options)).unwrap();
                    if !engine_side {
                        sqlite.flush().unwrap();
                    }
                    let took = start.elapsed();
                    journal.commit().unwrap();
                    assert_eq!(out.steps, 1000);
                    took
                })
                .sum()
        }
    };
    // The engine's side: the clock stops when the flow is done.
    group.bench_function("batch_engine_side", |b| {
        b.iter_custom(journaled(Durability::Batch, true))
    });
    // Until every span and step is committed; compare `with_sqlite_tracer` above.
    group.bench_function("batch_until_committed", |b| {
        b.iter_custom(journaled(Durability::Batch, false))
    });
    // Each step committed before the next node starts.
    group.bench_function("sync", |b| {
        b.iter_custom(journaled(Durability::Sync, false))
    });
    group.finish();
}

/// A journal whose final commit is left to the caller (the engine's side alone).
struct LateCommit(Arc<illumo_tracers::SqliteJournal>);

impl Journal for LateCommit {
    fn start(&self, run: &RunStart) -> Result<(), String> {
        self.0.start(run)
    }
    fn step(&self, trace_id: TraceId, step: illumo_engine::journal::StepRecord) {
        self.0.step(trace_id, step)
    }
    fn status(&self, trace_id: TraceId, status: &illumo_engine::journal::RunStatus) {
        self.0.status(trace_id, status)
    }
    fn commit(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A connected SQLite tracer whose end-of-run flush is left to the caller.
struct LateFlush(Arc<SqliteTracer>);

impl TracerDB for LateFlush {
    fn connect(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn record_span(&self, span: &SpanData) -> Result<(), illumo_engine::tracer::TracerError> {
        self.0.record_span(span)
    }
    fn record_span_owned(&self, span: SpanData) -> Result<(), illumo_engine::tracer::TracerError> {
        self.0.record_span_owned(span)
    }
    fn record_event(
        &self,
        id: &SpanId,
        e: &illumo_engine::tracer::EventData,
    ) -> Result<(), illumo_engine::tracer::TracerError> {
        self.0.record_event(id, e)
    }
    fn flush(&self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
}

#[derive(Default)]
struct QueueDb {
    queue: Option<std::sync::mpsc::SyncSender<Box<SpanData>>>,
}

impl TracerDB for QueueDb {
    fn connect(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Box<SpanData>>(65_536);
        std::thread::spawn(move || while rx.recv().is_ok() {});
        self.queue = Some(tx);
        Ok(())
    }
    fn record_span(&self, span: &SpanData) -> Result<(), illumo_engine::tracer::TracerError> {
        let _ = self
            .queue
            .as_ref()
            .unwrap()
            .try_send(Box::new(span.clone()));
        Ok(())
    }
    fn record_event(
        &self,
        _: &SpanId,
        _: &illumo_engine::tracer::EventData,
    ) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
}

struct NullDb;

impl TracerDB for NullDb {
    fn connect(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn record_span(&self, span: &SpanData) -> Result<(), illumo_engine::tracer::TracerError> {
        criterion::black_box(span);
        Ok(())
    }
    fn record_event(
        &self,
        _: &SpanId,
        e: &illumo_engine::tracer::EventData,
    ) -> Result<(), illumo_engine::tracer::TracerError> {
        criterion::black_box(e);
        Ok(())
    }
    fn flush(&self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
    fn close(&mut self) -> Result<(), illumo_engine::tracer::TracerError> {
        Ok(())
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
