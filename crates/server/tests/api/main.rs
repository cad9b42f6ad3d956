//! The HTTP suite: a real server on a random loopback port over a real SQLite
//! file or PostgreSQL schema. Every test runs on both backends.

mod artifacts;
mod errors;
mod helpers;
mod pipelines;
mod service;
