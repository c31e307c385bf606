//! illumo's tracer backends: the console tree, SQLite (WAL) files, OTLP export (Tempo),
//! and readers for `illumo trace`. Storage backends implement [`illumo_engine::tracer::TracerDB`].

mod console;
pub mod events;
pub mod journal;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod sqlite;
pub mod store;
pub mod writer;

pub use console::{ColorChoice, ConsoleTracer};
pub use events::EventsTracer;
#[cfg(feature = "otlp")]
pub use otlp::{OtlpConfig, OtlpTracer};
pub use sqlite::{SqliteJournal, SqliteTracer};
