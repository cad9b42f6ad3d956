//! Delivery: an engagement's manifest (every approved artifact with its
//! version, hash, approvals and sources; the attached files), what blocks its
//! export, its pipeline analytics, and the export itself: a ZIP bundle kept
//! in the object store.
//!
//! The rules are `waymark_domain::delivery`; [`Delivery::load`] reads what
//! they look at (one store query per list, whatever the engagement's size)
//! and [`export`] builds and records a bundle:
//!
//! ```text
//! manifest.json            the manifest, with generated_at, generated_by and
//!                          the Waymark version; its SHA-256 is recorded
//! artifacts/<type>.json    each artifact's content (`<type>-<n>` when a
//!                          type has several)
//! artifacts/<type>.md      the same content as Markdown
//! files/<name>             the engagement's attached files
//! report.pdf               a cover, contents, the approval record and every
//!                          artifact, typeset by typst (`report`)
//! ```
//!
//! The ZIP is written to a staged file (entries in a fixed order, dated the
//! export's time) off the async workers, put into the object store under
//! `exports/<client>/<engagement>/<export id>.zip`, then recorded
//! ([`waymark_store::ExportStore::create_export`]), which refuses it if an
//! artifact it bundles moved on meanwhile. A refused or failed export leaves
//! no object behind.

mod document;
mod report;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::artifact::SourceRef;
use waymark_domain::delivery::{
    self, Assessment, Blocker, Candidate, LeftOut, PackType, PipelineAnalytics, StatusChange,
};
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, ClientId, EngagementId, ExportId, FileId};
use waymark_packs::Pack;
use waymark_store::{
    ArtifactContent, ArtifactSummary, Client, Created, Engagement, ExportRecord, FileFilter,
    FileRecord, HistoryAction, NewExport, PageRequest, Store, StoreError, WriteContext,
};

pub use document::{Block, blocks, markdown};
pub use report::ReportError;

use crate::EngineError;
use crate::blobs::{BlobError, Blobs};
use crate::catalog::{PackCatalog, engagement_pack};

/// The version of the bundle's layout, in `manifest.json`.
pub const FORMAT: &str = "waymark-delivery/1";

/// The engagement a delivery is of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryEngagement {
    pub id: EngagementId,
    pub name: String,
    pub pack: String,
    pub client_id: ClientId,
    pub client_name: String,
}

/// One approval of a bundled artifact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManifestApproval {
    /// Who (a user, review link or token id).
    pub by: String,
    pub by_name: String,
    /// `client_contact`, `reviewer`, `staff` (an approval recorded under the
    /// type's policy), `reapproval` (a stale artifact re-approved as still
    /// valid), `override` (an admin past the policy) or `transition` (the
    /// team, with no approval recorded).
    pub kind: String,
    /// The version approved and its content hash.
    pub version: i64,
    pub content_hash: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The reason given (re-approvals and overrides).
    pub reason: Option<String>,
}

/// An attached file of the engagement, and where the bundle keeps it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManifestFile {
    pub id: FileId,
    pub name: String,
    /// Its entry in the bundle (`files/<name>`).
    pub path: String,
    pub kind: String,
    pub size: i64,
    pub sha256: String,
    /// The artifact it is attached to, if any.
    pub artifact_id: Option<ArtifactId>,
}

/// One approved artifact of the delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManifestEntry {
    pub artifact_id: ArtifactId,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: String,
    pub version: i64,
    pub status: ArtifactStatus,
    /// SHA-256 of the version's canonical JSON.
    pub content_hash: String,
    /// When it last became approved, and by whom.
    #[serde(with = "time::serde::rfc3339::option")]
    pub approved_at: Option<OffsetDateTime>,
    pub approved_by: Option<String>,
    pub approvals: Vec<ManifestApproval>,
    /// What its version was built from.
    pub sources: Vec<SourceRef>,
    /// Files attached to it.
    pub files: Vec<ManifestFile>,
    /// Its entries in the bundle.
    pub json_path: String,
    pub markdown_path: String,
}

/// Where an engagement's delivery stands: what an export would bundle and
/// what stops one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub engagement: DeliveryEngagement,
    /// Nothing blocks an export.
    pub ready: bool,
    /// The types the delivery needs (the pack's `delivery` type and what it
    /// requires, or every type).
    pub required: Vec<String>,
    /// What stops an export, each a sentence saying what to do.
    pub blockers: Vec<Blocker>,
    /// Artifacts of types the delivery does not need, left out because they
    /// are not approved.
    pub left_out: Vec<LeftOut>,
    /// The approved artifacts an export bundles, in pipeline order.
    pub manifest: Vec<ManifestEntry>,
    /// The engagement's attached files.
    pub files: Vec<ManifestFile>,
    /// The pipeline in figures (the team's; absent for client users).
    pub analytics: Option<PipelineAnalytics>,
}

/// An engagement's delivery, read once, with what an export needs.
pub struct Delivery {
    pub view: DeliveryView,
    client: Client,
    pack: Arc<Pack>,
    summaries: HashMap<ArtifactId, ArtifactSummary>,
    contents: HashMap<ArtifactId, ArtifactContent>,
    files: Vec<FileRecord>,
}

/// Most files one delivery bundles (pages of 200).
const MAX_FILES: usize = 10_000;

async fn engagement_files(
    store: &dyn Store,
    engagement: EngagementId,
) -> Result<Vec<FileRecord>, StoreError> {
    let mut files = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_files(
                FileFilter {
                    engagement_id: Some(engagement),
                    ..FileFilter::default()
                },
                PageRequest { limit: 200, cursor },
            )
            .await?;
        files.extend(page.items);
        match page.next_cursor {
            Some(c) if files.len() < MAX_FILES => cursor = Some(c),
            _ => break,
        }
    }
    // Oldest first, like the artifacts.
    files.reverse();
    Ok(files)
}

/// How the report names a kind of approval.
fn kind_word(kind: &str) -> &str {
    match kind {
        "client_contact" => "client contact",
        "reviewer" => "reviewer (link)",
        "staff" | "transition" => "team",
        "reapproval" => "re-approval",
        other => other,
    }
}

impl Delivery {
    /// Reads the delivery of `engagement`: its pack, artifacts, approvals,
    /// status changes, sources and files (and each artifact's content when
    /// `with_content`), and asks `domain::delivery` where it stands.
    pub async fn load(
        store: &dyn Store,
        catalog: &PackCatalog,
        engagement: Engagement,
        with_content: bool,
    ) -> Result<Delivery, EngineError> {
        let pack = engagement_pack(catalog, &engagement.pack).await?;
        let client = store.get_client(engagement.client_id).await?;
        let records = store.delivery_records(engagement.id, with_content).await?;
        let files = engagement_files(store, engagement.id).await?;

        let types: Vec<PackType> = pack
            .types
            .iter()
            .map(|t| PackType {
                name: t.name.clone(),
                title: t.title.clone(),
                requires: t.requires.clone(),
            })
            .collect();
        let candidates: Vec<Candidate> = records
            .artifacts
            .iter()
            .map(|a| Candidate {
                id: a.id,
                artifact_type: a.artifact_type.clone(),
                title: a.title.clone(),
                status: a.status,
                version: a.version,
                stale_reason: a.stale_reason.clone(),
            })
            .collect();
        let changes: Vec<StatusChange> = records
            .status_changes
            .iter()
            .filter_map(|c| {
                Some(StatusChange {
                    artifact_id: c.artifact_id,
                    from: c.entry.from_status,
                    to: c.entry.to_status?,
                    at: c.entry.at,
                })
            })
            .collect();
        let Assessment {
            ready,
            required,
            blockers,
            included,
            left_out,
        } = delivery::assess(&types, &candidates);
        let analytics = delivery::analytics(&candidates, &changes);

        let summaries: HashMap<ArtifactId, ArtifactSummary> =
            records.artifacts.into_iter().map(|a| (a.id, a)).collect();
        let file_names =
            delivery::bundle_file_names(&files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>());
        let manifest_files: Vec<ManifestFile> = files
            .iter()
            .zip(file_names)
            .map(|(f, name)| ManifestFile {
                id: f.id,
                name: f.name.clone(),
                path: format!("files/{name}"),
                kind: f.kind.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
                artifact_id: f.artifact_id,
            })
            .collect();
        let included: Vec<&ArtifactSummary> =
            included.iter().filter_map(|id| summaries.get(id)).collect();
        let names = delivery::entry_names(
            &included
                .iter()
                .map(|a| a.artifact_type.as_str())
                .collect::<Vec<_>>(),
        );
        let manifest = included
            .iter()
            .zip(names)
            .map(|(a, name)| {
                let mut approvals: Vec<ManifestApproval> = records
                    .approvals
                    .iter()
                    .filter(|r| r.artifact_id == a.id && r.approval.content_hash == a.content_hash)
                    .map(|r| ManifestApproval {
                        by: r.approval.approver.clone(),
                        by_name: r.approval.approver_name.clone(),
                        kind: r.approval.approver_kind.as_str().to_owned(),
                        version: r.approval.version,
                        content_hash: Some(r.approval.content_hash.clone()),
                        at: r.approval.at,
                        reason: None,
                    })
                    .collect();
                let last = records
                    .status_changes
                    .iter()
                    .rev()
                    .find(|c| {
                        c.artifact_id == a.id && c.entry.to_status == Some(ArtifactStatus::Approved)
                    })
                    .map(|c| &c.entry);
                if let Some(h) = last {
                    let kind = if h.action == HistoryAction::ApprovalOverridden {
                        Some("override")
                    } else if h.from_status == Some(ArtifactStatus::Stale) {
                        Some("reapproval")
                    } else if approvals.is_empty() {
                        Some("transition")
                    } else {
                        None
                    };
                    if let Some(kind) = kind {
                        approvals.push(ManifestApproval {
                            by: h.actor.clone(),
                            by_name: h.actor_name.clone().unwrap_or_else(|| h.actor.clone()),
                            kind: kind.into(),
                            version: h.version.unwrap_or(a.version),
                            content_hash: None,
                            at: h.at,
                            reason: h.reason.clone(),
                        });
                    }
                }
                ManifestEntry {
                    artifact_id: a.id,
                    artifact_type: a.artifact_type.clone(),
                    title: a.title.clone(),
                    version: a.version,
                    status: a.status,
                    content_hash: a.content_hash.clone(),
                    approved_at: last.map(|h| h.at),
                    approved_by: last
                        .map(|h| h.actor_name.clone().unwrap_or_else(|| h.actor.clone())),
                    approvals,
                    sources: records
                        .sources
                        .iter()
                        .filter(|(id, _)| *id == a.id)
                        .map(|(_, s)| *s)
                        .collect(),
                    files: manifest_files
                        .iter()
                        .filter(|f| f.artifact_id == Some(a.id))
                        .cloned()
                        .collect(),
                    json_path: format!("artifacts/{name}.json"),
                    markdown_path: format!("artifacts/{name}.md"),
                }
            })
            .collect();
        Ok(Delivery {
            view: DeliveryView {
                engagement: DeliveryEngagement {
                    id: engagement.id,
                    name: engagement.name.clone(),
                    pack: engagement.pack.clone(),
                    client_id: client.id,
                    client_name: client.name.clone(),
                },
                ready,
                required,
                blockers,
                left_out,
                manifest,
                files: manifest_files,
                analytics: Some(analytics),
            },
            client,
            pack,
            contents: records
                .contents
                .into_iter()
                .map(|c| (c.artifact_id, c))
                .collect(),
            summaries,
            files,
        })
    }

    /// The view a user of `client` gets: blockers and left-out artifacts
    /// only about what was shared with them, and no analytics (the pipeline
    /// is the team's). Whether it is ready is theirs to know.
    pub fn for_client(mut self, client: ClientId) -> DeliveryView {
        let sees = |id: Option<ArtifactId>| {
            id.and_then(|id| self.summaries.get(&id))
                .is_some_and(|a| a.shared_with(client))
        };
        let blockers = std::mem::take(&mut self.view.blockers);
        self.view.blockers = blockers
            .into_iter()
            .filter(|b| sees(b.artifact_id))
            .collect();
        let left_out = std::mem::take(&mut self.view.left_out);
        self.view.left_out = left_out
            .into_iter()
            .filter(|l| sees(Some(l.artifact_id)))
            .collect();
        self.view.analytics = None;
        self.view
    }

    /// The refusal of an export while something blocks it: 409
    /// `not_deliverable` with the blockers, and their sentences as `reasons`.
    pub fn refusal(&self) -> Option<EngineError> {
        if self.view.ready {
            return None;
        }
        let mut extra = serde_json::Map::new();
        extra.insert("blockers".into(), json!(self.view.blockers));
        extra.insert(
            "reasons".into(),
            json!(
                self.view
                    .blockers
                    .iter()
                    .map(|b| b.message.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        let n = self.view.blockers.len();
        Some(EngineError::Refused {
            code: "not_deliverable",
            detail: format!(
                "{} cannot be exported yet: {n} thing{} must be done first (see blockers)",
                self.view.engagement.name,
                if n == 1 { "" } else { "s" }
            ),
            extra,
        })
    }
}

/// Why an export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Refused (`not_deliverable`, `delivery_changed`...) or the store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The object store failed, or an attached file's bytes are missing.
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Writing the ZIP failed.
    #[error("writing the bundle failed: {0}")]
    Bundle(String),
}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Engine(EngineError::Store(e))
    }
}

/// Who makes an export, and with which Waymark.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// `0.1.0`: written into the manifest and the report.
    pub waymark_version: String,
}

/// Where the building of an export spent its time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportTimings {
    pub read_ms: u128,
    pub report_ms: u128,
    pub zip_ms: u128,
    pub store_ms: u128,
}

/// The object store key of an export's ZIP.
pub fn storage_key(client: ClientId, engagement: EngagementId, id: ExportId) -> String {
    format!("exports/{client}/{engagement}/{id}.zip")
}

/// What goes into the ZIP, in order.
enum Source {
    Bytes(Vec<u8>),
    File(tempfile::TempPath, i64),
}

struct Entry {
    name: String,
    source: Source,
    deflate: bool,
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn zip_time(t: OffsetDateTime) -> zip::DateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).unwrap_or(1980).max(1980),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
    .unwrap_or_default()
}

/// Writes the entries into a ZIP at `path`; answers its size and SHA-256.
fn write_zip(
    path: &Path,
    entries: Vec<Entry>,
    at: OffsetDateTime,
) -> Result<(i64, String), ExportError> {
    let bundle = |e: &dyn std::fmt::Display| ExportError::Bundle(e.to_string());
    let file = std::fs::File::create(path).map_err(|e| bundle(&e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let when = zip_time(at);
    for entry in entries {
        let size = match &entry.source {
            Source::Bytes(b) => b.len() as u64,
            Source::File(_, s) => *s as u64,
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(if entry.deflate {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            })
            .last_modified_time(when)
            .unix_permissions(0o644)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(entry.name.as_str(), options)
            .map_err(|e| bundle(&e))?;
        match entry.source {
            Source::Bytes(b) => zip.write_all(&b).map_err(|e| bundle(&e))?,
            Source::File(p, _) => {
                let mut f = std::fs::File::open(&p).map_err(|e| bundle(&e))?;
                std::io::copy(&mut f, &mut zip).map_err(|e| bundle(&e))?;
            }
        }
    }
    let mut out = zip.finish().map_err(|e| bundle(&e))?;
    out.flush().map_err(|e| bundle(&e))?;
    drop(out);
    let mut f = std::fs::File::open(path).map_err(|e| bundle(&e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0i64;
    loop {
        let n = f.read(&mut buf).map_err(|e| bundle(&e))?;
        if n == 0 {
            break;
        }
        size += n as i64;
        hash.update(&buf[..n]);
    }
    Ok((size, hex::encode(hash.finalize())))
}

/// Kinds whose bytes are compressed already: stored as they are.
fn compressed_kind(kind: &str) -> bool {
    matches!(kind, "pdf" | "docx" | "xlsx" | "png" | "jpeg")
}

fn utc_minute(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KB", b / 1024.0)
    } else {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    }
}

/// Builds the export of `engagement` (the caller may see it and may export),
/// stores its ZIP and records it. Refused (`not_deliverable`) while anything
/// blocks the delivery. With an idempotency key already used for the same
/// request, answers that export and builds nothing.
pub async fn export(
    store: &Arc<dyn Store>,
    catalog: &PackCatalog,
    blobs: &Blobs,
    engagement: Engagement,
    request: &ExportRequest,
    ctx: &WriteContext,
) -> Result<(Created<ExportRecord>, ExportTimings), ExportError> {
    let mut timings = ExportTimings::default();
    let started = std::time::Instant::now();
    if let Some(record) = store.replayed_export(ctx).await? {
        return Ok((
            Created {
                record,
                replayed: true,
            },
            timings,
        ));
    }
    let delivery = Delivery::load(store.as_ref(), catalog, engagement.clone(), true).await?;
    if let Some(refused) = delivery.refusal() {
        return Err(refused.into());
    }
    let changed = || {
        ExportError::Engine(EngineError::refused(
            "delivery_changed",
            "an artifact changed while the export was being read; export again",
        ))
    };
    let id = ExportId::new();
    let now = OffsetDateTime::now_utc();
    let by_name = ctx.actor_name.clone().unwrap_or_else(|| ctx.actor.clone());
    let view = &delivery.view;

    // manifest.json
    let manifest = json!({
        "format": FORMAT,
        "export_id": id.to_string(),
        "generated_at": now.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "generated_by": {"id": ctx.actor, "name": by_name},
        "waymark_version": request.waymark_version,
        "client": {"id": delivery.client.id.to_string(), "name": delivery.client.name},
        "engagement": {
            "id": view.engagement.id.to_string(),
            "name": view.engagement.name,
            "pack": view.engagement.pack,
            "pack_version": delivery.pack.version,
        },
        "required": view.required,
        "artifacts": view.manifest,
        "files": view.files,
        "left_out": view.left_out,
    });
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ExportError::Bundle(e.to_string()))?;
    let manifest_sha256 = hex_sha256(&manifest_bytes);

    // The artifacts as JSON and Markdown, and the report's data.
    let mut entries = vec![Entry {
        name: "manifest.json".into(),
        source: Source::Bytes(manifest_bytes),
        deflate: true,
    }];
    let mut report_artifacts = Vec::with_capacity(view.manifest.len());
    let mut approvals = Vec::new();
    let mut pinned = Vec::with_capacity(view.manifest.len());
    for m in &view.manifest {
        let content = delivery.contents.get(&m.artifact_id).ok_or_else(changed)?;
        if content.version != m.version || content.content_hash != m.content_hash {
            return Err(changed());
        }
        pinned.push((m.artifact_id, m.version));
        let type_title = delivery
            .pack
            .artifact_type(&m.artifact_type)
            .map(|t| t.title.clone())
            .unwrap_or_else(|| m.artifact_type.clone());
        let doc = blocks(&content.content);
        let approved = match (&m.approved_at, &m.approved_by) {
            (Some(at), Some(by)) => format!("{} UTC by {by}", utc_minute(*at)),
            (Some(at), None) => format!("{} UTC", utc_minute(*at)),
            _ => "—".into(),
        };
        let mut md = format!(
            "# {}\n\n- Type: {} ({})\n- Version: {}\n- Status: {}\n- Content SHA-256: `{}`\n- Approved: {}\n\n",
            document::md_text(&m.title.replace(['\r', '\n'], " ")),
            document::md_text(&type_title),
            m.artifact_type,
            m.version,
            m.status,
            m.content_hash,
            document::md_text(&approved),
        );
        md.push_str(&markdown(&doc));
        let json_bytes = serde_json::to_vec_pretty(&content.content)
            .map_err(|e| ExportError::Bundle(e.to_string()))?;
        entries.push(Entry {
            name: m.json_path.clone(),
            source: Source::Bytes(json_bytes),
            deflate: true,
        });
        entries.push(Entry {
            name: m.markdown_path.clone(),
            source: Source::Bytes(md.into_bytes()),
            deflate: true,
        });
        for a in &m.approvals {
            approvals.push(report::ReportApproval {
                artifact: m.title.clone(),
                version: a.version,
                by: a.by_name.clone(),
                kind: kind_word(&a.kind).to_owned(),
                at: utc_minute(a.at),
            });
        }
        report_artifacts.push(report::ReportArtifact {
            title: m.title.clone(),
            artifact_type: m.artifact_type.clone(),
            type_title,
            version: m.version,
            status: m.status.as_str().to_owned(),
            content_hash: m.content_hash.clone(),
            approved,
            blocks: doc,
        });
    }

    // The attached files, copied out of the object store.
    for (f, record) in view.files.iter().zip(&delivery.files) {
        let path = blobs.fetch(&record.storage_key).await?;
        entries.push(Entry {
            name: f.path.clone(),
            source: Source::File(path, record.size),
            deflate: !compressed_kind(&record.kind),
        });
    }
    let data = report::ReportData {
        title: format!("Delivery report — {}", view.engagement.name),
        client: delivery.client.name.clone(),
        engagement: view.engagement.name.clone(),
        pack: format!("{} {}", delivery.pack.name, delivery.pack.version),
        date: now.date().to_string(),
        generated_by: by_name.clone(),
        export_id: id.to_string(),
        manifest_sha256: manifest_sha256.clone(),
        waymark_version: request.waymark_version.clone(),
        artifacts: report_artifacts,
        approvals,
        files: view
            .files
            .iter()
            .map(|f| report::ReportFile {
                name: f.name.clone(),
                size: human_size(f.size),
                sha256: f.sha256.clone(),
            })
            .collect(),
    };
    timings.read_ms = started.elapsed().as_millis();

    // Typeset the report and write the ZIP, off the async workers.
    let staged = tempfile::Builder::new()
        .prefix("export-")
        .suffix(".zip")
        .tempfile_in(blobs.staging())
        .map_err(BlobError::Io)?
        .into_temp_path();
    let zip_path: PathBuf = staged.to_path_buf();
    let (size, sha256, report_ms, zip_ms) = tokio::task::spawn_blocking(move || {
        let t = std::time::Instant::now();
        let pdf = report::render(&data, now)?;
        let report_ms = t.elapsed().as_millis();
        let t = std::time::Instant::now();
        entries.push(Entry {
            name: "report.pdf".into(),
            source: Source::Bytes(pdf),
            deflate: true,
        });
        let (size, sha) = write_zip(&zip_path, entries, now)?;
        Ok::<_, ExportError>((size, sha, report_ms, t.elapsed().as_millis()))
    })
    .await
    .map_err(|e| ExportError::Bundle(format!("the export's builder stopped: {e}")))??;
    timings.report_ms = report_ms;
    timings.zip_ms = zip_ms;

    let t = std::time::Instant::now();
    let key = storage_key(delivery.client.id, view.engagement.id, id);
    blobs.put_file(&key, &staged).await?;
    drop(staged);
    let new = NewExport {
        id,
        client_id: delivery.client.id,
        engagement_id: view.engagement.id,
        storage_key: key.clone(),
        size,
        sha256,
        manifest_sha256,
        files: view.files.len() as i64,
        artifacts: pinned,
    };
    let created = match store.create_export(new, ctx).await {
        Ok(c) => c,
        Err(e) => {
            if let Err(d) = blobs.delete(&key).await {
                tracing::warn!(key, error = %d, "removing a refused export's bundle failed");
            }
            return Err(e.into());
        }
    };
    if created.replayed
        && created.record.storage_key != key
        && let Err(d) = blobs.delete(&key).await
    {
        tracing::warn!(key, error = %d, "removing a replayed export's second bundle failed");
    }
    timings.store_ms = t.elapsed().as_millis();
    tracing::info!(
        export = %created.record.id,
        artifacts = created.record.artifacts,
        files = created.record.files,
        size = created.record.size,
        read_ms = timings.read_ms as u64,
        report_ms = timings.report_ms as u64,
        zip_ms = timings.zip_ms as u64,
        store_ms = timings.store_ms as u64,
        "export built"
    );
    Ok((created, timings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_times_are_clamped_to_what_zip_can_say() {
        let t = zip_time(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(t.year(), 1980);
        let when = time::macros::datetime!(2026-05-01 13:45:10 UTC);
        let t = zip_time(when);
        assert_eq!((t.year(), t.month(), t.day(), t.hour()), (2026, 5, 1, 13));
    }

    #[test]
    fn a_zip_holds_its_entries_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.zip");
        let entries = vec![
            Entry {
                name: "manifest.json".into(),
                source: Source::Bytes(b"{}".to_vec()),
                deflate: true,
            },
            Entry {
                name: "files/a.png".into(),
                source: Source::Bytes(vec![1, 2, 3]),
                deflate: false,
            },
        ];
        let (size, sha) = write_zip(&path, entries, OffsetDateTime::now_utc()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as i64);
        assert_eq!(sha, hex_sha256(&bytes));
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(z.len(), 2);
        assert_eq!(z.by_index(0).unwrap().name().unwrap(), "manifest.json");
        assert_eq!(
            z.by_index(1).unwrap().compression(),
            zip::CompressionMethod::Stored
        );
    }
}
