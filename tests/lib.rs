//! Integration tests: they run the real `illumo` binary (and the engine for the property
//! test). One test binary keeps link time down.

mod llm_server;
mod support;

mod agents;
mod chatbot;
mod cli;
mod coding;
mod compat;
mod console;
mod durable;
mod examples;
mod fuzz;
mod hostile;
mod illumo_flow_corpus;
mod otlp;
mod policies;
mod python;
mod python_exec;
mod runtime;
mod sandbox;
mod schema;
mod sqlite;
mod tools;
mod trace_cli;
mod tutorial;
mod validate;
