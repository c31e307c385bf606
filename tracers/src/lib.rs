//! illumo's tracer backends: the console tree, SQLite (WAL) files, and readers for
//! `illumo trace`. Storage backends implement [`illumo_engine::tracer::TracerDB`].

mod console;
pub mod sqlite;
pub mod store;

pub use console::ConsoleTracer;
pub use sqlite::SqliteTracer;
