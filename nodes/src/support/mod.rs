//! Nodes for the support chatbot: retrieval from a knowledge base, HTTP requests, the
//! handoff to people, and the audit trail.

pub mod audit;
pub mod handoff;
pub mod http;
pub mod retrieve;
