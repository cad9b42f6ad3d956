//! Waymark's durable work: everything that runs without a request waiting on
//! it, and the services the API shares with it.
//!
//! - [`run`]: the embedded workers. [`Engine::run`] claims tasks of the
//!   `engine` lane, runs their executors and records the results;
//!   [`Engine::run_once`] is one step of that loop (tests drive the engine with
//!   it instead of sleeping).
//! - [`generate`] (`llm.generate`, through [`waymark_llm`]), [`hook`]
//!   (`http.webhook`) and [`extract`] (`file.extract`): the built-in executors.
//! - [`blobs`]: the object store of uploaded files (a local folder or S3).
//! - [`export`]: delivery manifests and exports (a ZIP with JSON, Markdown,
//!   the engagement's files and a PDF report typeset by typst).
//! - [`journeys`]: journeys at work (criteria gathered, the state machine
//!   asked, transitions recorded with the units they start, rollback
//!   triggers watched), for the API and for task outputs alike.
//! - [`delivery`] and [`mail`]: events fanned out to webhook subscriptions and
//!   mail, with retries.
//! - [`catalog`]: the packs (built-in and installed) the engine and the API
//!   read.
//!
//! Errors are [`EngineError`]; only `server` knows HTTP.
//!
//! **Architecture invariant:** this crate does not depend on axum.

pub mod audit;
pub mod blobs;
pub mod catalog;
pub mod dataflow;
pub mod delivery;
mod error;
pub mod export;
pub mod extract;
pub mod fields;
pub mod generate;
pub mod hook;
pub mod journeys;
pub mod mail;
pub mod metrics;
pub mod queue;
pub mod run;
pub mod trace;

pub use error::EngineError;
pub use run::{DEFAULT_CONCURRENCY, Engine, EngineSettings, default_name, runs};

/// An error with its sources, `outer: inner: innermost`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
