//! illumo's tracer backends. This release ships the console tracer; SQLite and OTLP
//! backends implement [`illumo_engine::tracer::TracerDB`] the same way.

mod console;

pub use console::ConsoleTracer;
