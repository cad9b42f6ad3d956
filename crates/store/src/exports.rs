//! Delivery: [`ExportStore`], what delivery reads of an engagement (its
//! artifacts, their approvals, status changes and sources, each list in one
//! query whatever the engagement's size) and the exports made of it.
//!
//! An export's bytes (a ZIP) live in the object store under `storage_key`;
//! its row records what was handed over (hashes of the bundle and of its
//! manifest, how many artifacts and files), by whom and when. Recording one
//! checks, in the same transaction, that every artifact it bundles is still
//! approved at the version bundled, and ends with its audit record and event
//! (`export.create` / `export.created`).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::artifact::SourceRef;
use waymark_domain::{ArtifactId, ClientId, EngagementId, ExportId};

use crate::{
    Approval, ArtifactSummary, Created, HistoryEntry, Page, PageRequest, Result, WriteContext,
};

/// Where an export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Built and stored: it can be downloaded.
    Ready,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Ready => "ready",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s == "ready").then_some(ExportStatus::Ready)
    }
}

/// A delivery export of an engagement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportRecord {
    #[schema(value_type = String, example = "exp_0190f3a2c1d07e5f8a9b0c1d2e3f4a5b")]
    pub id: ExportId,
    #[schema(value_type = String)]
    pub client_id: ClientId,
    #[schema(value_type = String)]
    pub engagement_id: EngagementId,
    pub status: ExportStatus,
    /// The object store key of the ZIP.
    #[serde(skip)]
    pub storage_key: String,
    /// Bytes of the ZIP.
    pub size: i64,
    /// SHA-256 of the ZIP, hex.
    pub sha256: String,
    /// SHA-256 of its `manifest.json`, hex.
    pub manifest_sha256: String,
    /// Artifacts bundled.
    pub artifacts: i64,
    /// Attached files bundled.
    pub files: i64,
    /// Who made it (actor id) and their name.
    pub created_by: String,
    pub created_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An export to record, once its ZIP is in the object store.
#[derive(Debug, Clone)]
pub struct NewExport {
    pub id: ExportId,
    pub client_id: ClientId,
    pub engagement_id: EngagementId,
    pub storage_key: String,
    pub size: i64,
    pub sha256: String,
    pub manifest_sha256: String,
    pub files: i64,
    /// The artifacts bundled, at the version bundled: each must still be at
    /// that version and approved when the export is recorded.
    pub artifacts: Vec<(ArtifactId, i64)>,
}

/// An approval of one of the engagement's artifacts, in its current review
/// round.
#[derive(Debug, Clone)]
pub struct ArtifactApproval {
    pub artifact_id: ArtifactId,
    pub approval: Approval,
}

/// A status change of one of the engagement's artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStatusChange {
    pub artifact_id: ArtifactId,
    pub entry: HistoryEntry,
}

/// The latest version's content of one of the engagement's artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactContent {
    pub artifact_id: ArtifactId,
    pub version: i64,
    pub content_hash: String,
    pub content: Value,
}

/// What delivery reads of an engagement.
#[derive(Debug, Clone, Default)]
pub struct DeliveryRecords {
    /// Every artifact of the engagement, oldest first.
    pub artifacts: Vec<ArtifactSummary>,
    /// The approvals of each artifact's current review round, oldest first.
    pub approvals: Vec<ArtifactApproval>,
    /// Every status change of its artifacts (history entries with a
    /// `to_status`), in the order recorded.
    pub status_changes: Vec<ArtifactStatusChange>,
    /// The sources of each artifact's latest version, in order.
    pub sources: Vec<(ArtifactId, SourceRef)>,
    /// Each artifact's latest content, read in one statement with its version
    /// and hash (only when asked for).
    pub contents: Vec<ArtifactContent>,
}

#[async_trait]
pub trait ExportStore {
    /// What delivery reads of the engagement: one query per list; contents
    /// only when `with_content`.
    async fn delivery_records(
        &self,
        engagement_id: EngagementId,
        with_content: bool,
    ) -> Result<DeliveryRecords>;
    /// Records an export whose ZIP is stored. Refused (409 `delivery_changed`)
    /// when an artifact it bundles moved on or is no longer approved. With an
    /// idempotency key already used for the same request, answers that
    /// export (`replayed`) and records nothing.
    async fn create_export(
        &self,
        new: NewExport,
        ctx: &WriteContext,
    ) -> Result<Created<ExportRecord>>;
    /// The export an earlier request with the caller's idempotency key made,
    /// if any (refused when the key was used for another request).
    async fn replayed_export(&self, ctx: &WriteContext) -> Result<Option<ExportRecord>>;
    async fn get_export(&self, id: ExportId) -> Result<ExportRecord>;
    /// The engagement's exports, newest first.
    async fn list_exports(
        &self,
        engagement_id: EngagementId,
        page: PageRequest,
    ) -> Result<Page<ExportRecord>>;
}
