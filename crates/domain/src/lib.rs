//! Waymark's pure domain rules.
//!
//! Nothing here knows about HTTP, SQL or async runtimes: the types and functions in
//! this crate are plain data and plain functions, unit-tested in place. The store
//! calls them inside its transactions; the server calls them to validate input.
//!
//! - [`id`]: prefixed, UUIDv7-backed identifiers (`cli_…`, `eng_…`, `art_…`).
//! - [`lifecycle`]: the artifact status table and its transitions.
//! - [`content`]: canonical JSON, content hashes and JSON Patch diffs.
//! - [`artifact`], [`client`]: validated inputs for the records the API creates.
//! - [`gating`], [`cascade`], [`plan`]: pipelines: which types are unlocked, what an
//!   upstream change makes stale, and the generation plan's job DAG.
//! - [`graph`]: cycle detection for requirements and job dependencies.
//! - [`trace`]: the W3C `traceparent` header.
//! - [`review`]: approval policies, who may approve, comment sections.
//! - [`audit`]: the hash chain of the audit log and its verification.
//! - [`webhook`]: Standard Webhooks (v1, HMAC-SHA256) signing and verification.
//! - [`work`]: units of work and tasks: validation, executors, retries with
//!   backoff, leases, fair claiming order, incident resolutions.
//! - [`analytics`]: journey analytics per template from recorded history.
//! - [`delivery`]: what an engagement's delivery needs, what blocks its export,
//!   and its pipeline in figures (by status, stale, review turnaround).
//! - [`cel_guard`]: CEL (pack rules, journey criteria) compiled within limits and
//!   evaluated within a budget, on threads of its own.

pub mod analytics;
pub mod artifact;
pub mod audit;
pub mod cascade;
pub mod cel_guard;
pub mod chat;
pub mod client;
pub mod content;
pub mod criteria;
pub mod dataflow;
pub mod dates;
pub mod delivery;
pub mod fields;
pub mod gating;
pub mod generate;
pub mod graph;
pub mod id;
pub mod journey;
pub mod lifecycle;
pub mod plan;
pub mod preferences;
pub mod queue;
pub mod rating;
pub mod review;
pub mod signin;
pub mod trace;
pub mod webhook;
pub mod work;

pub use id::{
    ArtifactId, ClientId, CommentId, EngagementId, EventId, ExportId, FileId, IdError, IncidentId,
    JourneyId, QueueItemId, ReviewLinkId, StakeholderId, TaskId, ThreadId, TodoId, TokenId, UnitId,
    UserId, WebhookId,
};
pub use lifecycle::ArtifactStatus;

/// Why a piece of input was refused: the field (a JSON Pointer into the request) and
/// a sentence that says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct FieldError {
    /// JSON Pointer to the offending field, e.g. `/title`.
    pub pointer: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}
