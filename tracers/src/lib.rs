//! illumo's tracer backends: the console tree, SQLite (WAL) files, OTLP export (Tempo),
//! and readers for `illumo trace`. Storage backends implement [`illumo_engine::tracer::TracerDB`].

mod console;
pub mod otlp;
pub mod sqlite;
pub mod store;

pub use console::{ColorChoice, ConsoleTracer};
pub use otlp::{OtlpConfig, OtlpTracer};
pub use sqlite::SqliteTracer;
