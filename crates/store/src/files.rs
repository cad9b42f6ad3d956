//! Uploaded files: [`FileStore`] and its records.
//!
//! A file belongs to a client, and optionally to one of its engagements or
//! artifacts. Its bytes live in the object store under a key derived from
//! their SHA-256 (the server and the engine keep it there); the database keeps
//! what it is (kind decided from its content, size, hash, sanitised name), who
//! uploaded it, and the text extracted from it. A client has one row per
//! content: uploading the same bytes again answers the file already stored.
//!
//! Recording a file queues, in the same transaction, the `file.extract` task
//! that reads its text (when its kind has text), so an accepted upload is
//! never left without its extraction, even when the process dies right after.
//! Every write ends with its audit record and event (`file.upload`,
//! `file.extract`, `file.delete`).

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::{ArtifactId, ClientId, EngagementId, FileId, UnitId};

use crate::{Created, Page, PageRequest, Result, WriteContext};

/// Where a file's text stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Stored; its kind has no text to extract (an image).
    Stored,
    /// Stored; its text is being extracted.
    Extracting,
    /// Its text was extracted.
    Extracted,
    /// Its text could not be read: `status_reason` says why.
    Failed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Stored => "stored",
            FileStatus::Extracting => "extracting",
            FileStatus::Extracted => "extracted",
            FileStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            FileStatus::Stored,
            FileStatus::Extracting,
            FileStatus::Extracted,
            FileStatus::Failed,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// A stored file, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileRecord {
    #[schema(value_type = String, example = "fil_0190f3a2c1d07e5f8a9b0c1d2e3f4a5b")]
    pub id: FileId,
    #[schema(value_type = String)]
    pub client_id: ClientId,
    #[schema(value_type = Option<String>)]
    pub engagement_id: Option<EngagementId>,
    #[schema(value_type = Option<String>)]
    pub artifact_id: Option<ArtifactId>,
    /// The name it was uploaded with, sanitised (no folders, no control characters).
    pub name: String,
    /// What its content is (`pdf`, `docx`, `xlsx`, `csv`, `text`, `markdown`,
    /// `json`, `png`, `jpeg`), decided from its bytes, not its name.
    pub kind: String,
    /// The media type it is served with.
    pub mime: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// The object store key of its bytes.
    #[serde(skip)]
    pub storage_key: String,
    pub status: FileStatus,
    /// Why its text could not be read (`failed`), or what to know about it.
    pub status_reason: Option<String>,
    /// A stable code for a failure (`encrypted`, `corrupt`, `zip_bomb`, ...).
    pub error_code: Option<String>,
    /// Characters of extracted text.
    pub text_chars: Option<i64>,
    /// Whether the text was cut at the extraction's size budget.
    pub text_truncated: bool,
    /// Pages (PDF).
    pub pages: Option<i64>,
    /// For tables (CSV, XLSX): rows, columns, headers, inferred column types
    /// and a sample.
    #[schema(value_type = Option<Object>)]
    pub table: Option<Value>,
    /// How long the extraction took, in milliseconds.
    pub extraction_ms: Option<i64>,
    /// Who uploaded it (actor id) and their name.
    pub uploaded_by: String,
    pub uploaded_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub extracted_at: Option<OffsetDateTime>,
}

/// A file to record, once its bytes are in the object store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub client_id: ClientId,
    pub engagement_id: Option<EngagementId>,
    pub artifact_id: Option<ArtifactId>,
    pub name: String,
    pub kind: String,
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    pub storage_key: String,
    /// Queue a `file.extract` task (the kind has text).
    pub extract: bool,
}

/// What extracting a file's text gave.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// `Extracted` or `Failed`.
    pub status: FileStatus,
    pub reason: Option<String>,
    pub error_code: Option<String>,
    pub text: Option<String>,
    pub truncated: bool,
    pub pages: Option<i64>,
    pub table: Option<Value>,
    pub ms: i64,
}

/// Which files to list.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub client_id: Option<ClientId>,
    pub engagement_id: Option<EngagementId>,
    pub artifact_id: Option<ArtifactId>,
}

/// What recording a file did.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub file: FileRecord,
    /// The unit whose task extracts its text, when one was queued.
    pub unit_id: Option<UnitId>,
}

#[async_trait]
pub trait FileStore {
    /// Records a file whose bytes are stored. When the client already has a
    /// file with these bytes, answers it (`replayed`) and records nothing.
    /// Refuses (422) an engagement or artifact of another client.
    async fn create_file(&self, new: NewFile, ctx: &WriteContext) -> Result<Created<FileUpload>>;
    async fn get_file(&self, id: FileId) -> Result<FileRecord>;
    /// The client's file with these bytes, if any.
    async fn file_by_hash(&self, client: ClientId, sha256: &str) -> Result<Option<FileRecord>>;
    /// Its extracted text (`None` until extracted, or when it has none).
    async fn file_text(&self, id: FileId) -> Result<Option<String>>;
    /// Newest first.
    async fn list_files(&self, filter: FileFilter, page: PageRequest) -> Result<Page<FileRecord>>;
    /// Records what extracting its text gave, and indexes the text for search.
    async fn record_extraction(
        &self,
        id: FileId,
        result: Extraction,
        ctx: &WriteContext,
    ) -> Result<FileRecord>;
    /// Deletes the file's row (and its search entry). Answers the deleted
    /// record and whether any other row still refers to its object.
    async fn delete_file(&self, id: FileId, ctx: &WriteContext) -> Result<(FileRecord, bool)>;
    /// Whether any file row refers to this object key.
    async fn object_in_use(&self, storage_key: &str) -> Result<bool>;
}
