//! [`ExportStore`] on SQL: what delivery reads of an engagement, one
//! statement per list, and the exports of its delivery. Export times are
//! microseconds (INTEGER), as files' are.

use async_trait::async_trait;
use sqlx::FromRow;
use waymark_domain::ExportId;
use waymark_domain::review::ApproverKind;

use super::work::{at, now_us};
use super::*;
use crate::exports::*;
use crate::review::Approval;

const EXPORT_COLUMNS: &str = "id, client_id, engagement_id, status, storage_key, size, sha256, \
     manifest_sha256, artifacts, files, created_by, created_by_name, created_at";

#[derive(FromRow)]
struct ExportRow {
    id: Uuid,
    client_id: Uuid,
    engagement_id: Uuid,
    status: String,
    storage_key: String,
    size: i64,
    sha256: String,
    manifest_sha256: String,
    artifacts: i64,
    files: i64,
    created_by: String,
    created_by_name: String,
    created_at: i64,
}

impl ExportRow {
    fn record(self) -> Result<ExportRecord> {
        Ok(ExportRecord {
            id: ExportId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            engagement_id: EngagementId::from_uuid(self.engagement_id),
            status: ExportStatus::parse(&self.status)
                .ok_or_else(|| decode_error("export status", &self.status))?,
            storage_key: self.storage_key,
            size: self.size,
            sha256: self.sha256,
            manifest_sha256: self.manifest_sha256,
            artifacts: self.artifacts,
            files: self.files,
            created_by: self.created_by,
            created_by_name: self.created_by_name,
            created_at: at(self.created_at),
        })
    }
}

#[derive(FromRow)]
struct ApprovalRow {
    artifact_id: Uuid,
    approver: String,
    approver_name: String,
    approver_kind: String,
    version: i64,
    content_hash: String,
    at: OffsetDateTime,
}

fn approver_kind(s: &str) -> Result<ApproverKind> {
    match s {
        "client_contact" => Ok(ApproverKind::ClientContact),
        "reviewer" => Ok(ApproverKind::Reviewer),
        "staff" => Ok(ApproverKind::Staff),
        other => Err(decode_error("approver kind", other)),
    }
}

#[derive(FromRow)]
struct ChangeRow {
    artifact_id: Uuid,
    #[sqlx(flatten)]
    entry: super::artifacts::HistoryRow,
}

#[derive(FromRow)]
struct ContentRow {
    id: Uuid,
    version: i64,
    content_hash: String,
    content: Json<Value>,
}

async fn export_in(conn: &mut impl Conn, id: ExportId) -> Result<ExportRecord> {
    let row: Option<ExportRow> = sql(format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE id = $1"
    ))
    .bind(id.uuid())
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(|| not_found("export", id))?.record()
}

/// Refuses (409 `delivery_changed`) an export whose artifacts moved on or
/// are no longer approved since it was built; on PostgreSQL the rows stay
/// as read until the export is recorded.
async fn check_pinned(tx: &mut Tx, new: &NewExport, lock: &str) -> Result<()> {
    if new.artifacts.is_empty() {
        return Ok(());
    }
    let mut q = sql("SELECT id, version, status, engagement_id FROM artifacts WHERE id IN ");
    q.push_list(new.artifacts.iter().map(|(id, _)| id.uuid()));
    q.push(lock);
    let rows: Vec<(Uuid, i64, String, Option<Uuid>)> = q.fetch_all(tx).await?;
    for (id, version) in &new.artifacts {
        let found = rows.iter().find(|r| r.0 == id.uuid());
        let fine = match found {
            Some((_, v, s, e)) => {
                *v == *version
                    && *e == Some(new.engagement_id.uuid())
                    && waymark_domain::gating::satisfies(status(s)?)
            }
            None => false,
        };
        if !fine {
            return Err(StoreError::Refused {
                code: "delivery_changed",
                detail: format!(
                    "artifact {id} changed while the export was being built (it is no longer \
                     approved at version {version}); look at the delivery again and export again"
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl ExportStore for SqlStore {
    async fn delivery_records(
        &self,
        engagement_id: EngagementId,
        with_content: bool,
    ) -> Result<DeliveryRecords> {
        let reader = &mut self.db.reader();
        let e = engagement_id.uuid();
        let artifacts = artifacts::engagement_artifacts(reader, engagement_id).await?;
        let approvals: Vec<ApprovalRow> = sql(
            "SELECT ap.artifact_id, ap.approver, ap.approver_name, ap.approver_kind, ap.version, \
             ap.content_hash, ap.at FROM approvals ap JOIN artifacts a \
             ON a.id = ap.artifact_id AND ap.round = a.review_round \
             WHERE a.engagement_id = $1 ORDER BY ap.at, ap.approver",
        )
        .bind(e)
        .fetch_all(reader)
        .await?;
        let changes: Vec<ChangeRow> = sql(
            "SELECT h.artifact_id, h.seq, h.action, h.from_status, h.to_status, h.version, \
             h.reason, h.actor, h.actor_name, h.trace_id, h.at FROM artifact_history h \
             JOIN artifacts a ON a.id = h.artifact_id \
             WHERE a.engagement_id = $1 AND h.to_status IS NOT NULL ORDER BY h.seq",
        )
        .bind(e)
        .fetch_all(reader)
        .await?;
        let sources: Vec<(Uuid, Uuid, i64)> = sql(
            "SELECT s.artifact_id, s.source_id, s.source_version FROM version_sources s \
             JOIN artifacts a ON a.id = s.artifact_id AND s.version = a.version \
             WHERE a.engagement_id = $1 ORDER BY s.artifact_id, s.position",
        )
        .bind(e)
        .fetch_all(reader)
        .await?;
        let contents: Vec<ContentRow> = if with_content {
            sql(
                "SELECT a.id, a.version, a.content_hash, v.content FROM artifacts a \
                 JOIN artifact_versions v ON v.artifact_id = a.id AND v.version = a.version \
                 WHERE a.engagement_id = $1 ORDER BY a.id",
            )
            .bind(e)
            .fetch_all(reader)
            .await?
        } else {
            Vec::new()
        };
        Ok(DeliveryRecords {
            artifacts,
            approvals: approvals
                .into_iter()
                .map(|r| {
                    Ok(ArtifactApproval {
                        artifact_id: ArtifactId::from_uuid(r.artifact_id),
                        approval: Approval {
                            approver_kind: approver_kind(&r.approver_kind)?,
                            approver: r.approver,
                            approver_name: r.approver_name,
                            version: r.version,
                            content_hash: r.content_hash,
                            at: r.at,
                        },
                    })
                })
                .collect::<Result<_>>()?,
            status_changes: changes
                .into_iter()
                .map(|r| {
                    Ok(ArtifactStatusChange {
                        artifact_id: ArtifactId::from_uuid(r.artifact_id),
                        entry: r.entry.try_into()?,
                    })
                })
                .collect::<Result<_>>()?,
            sources: sources
                .into_iter()
                .map(|(a, s, v)| {
                    (
                        ArtifactId::from_uuid(a),
                        SourceRef {
                            artifact_id: ArtifactId::from_uuid(s),
                            version: v,
                        },
                    )
                })
                .collect(),
            contents: contents
                .into_iter()
                .map(|r| ArtifactContent {
                    artifact_id: ArtifactId::from_uuid(r.id),
                    version: r.version,
                    content_hash: r.content_hash,
                    content: r.content.0,
                })
                .collect(),
        })
    }

    async fn create_export(
        &self,
        new: NewExport,
        ctx: &WriteContext,
    ) -> Result<Created<ExportRecord>> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        if let Some(existing) = idempotency::replay(&mut tx, ctx, "export").await? {
            let record = export_in(&mut tx, ExportId::from_uuid(existing)).await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        let owner: Option<(Uuid,)> = sql("SELECT client_id FROM engagements WHERE id = $1")
            .bind(new.engagement_id.uuid())
            .fetch_optional(&mut tx)
            .await?;
        if owner.map(|o| o.0) != Some(new.client_id.uuid()) {
            return Err(not_found("engagement", new.engagement_id));
        }
        check_pinned(&mut tx, &new, self.db.backend().for_share()).await?;
        sql(
            "INSERT INTO exports (id, client_id, engagement_id, status, storage_key, size, sha256, \
             manifest_sha256, artifacts, files, created_by, created_by_name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(new.id.uuid())
        .bind(new.client_id.uuid())
        .bind(new.engagement_id.uuid())
        .bind(ExportStatus::Ready.as_str())
        .bind(new.storage_key.as_str())
        .bind(new.size)
        .bind(new.sha256.as_str())
        .bind(new.manifest_sha256.as_str())
        .bind(new.artifacts.len() as i64)
        .bind(new.files)
        .bind(ctx.actor.as_str())
        .bind(ctx.actor_name.clone().unwrap_or_else(|| ctx.actor.clone()))
        .bind(now)
        .execute(&mut tx)
        .await?;
        idempotency::record(&mut tx, ctx, "export", new.id.uuid(), at(now)).await?;
        let record = export_in(&mut tx, new.id).await?;
        let data = serde_json::json!({
            "export_id": record.id.to_string(),
            "client_id": record.client_id.to_string(),
            "engagement_id": record.engagement_id.to_string(),
            "status": record.status.as_str(),
            "size": record.size,
            "sha256": record.sha256,
            "manifest_sha256": record.manifest_sha256,
            "artifacts": record.artifacts,
            "files": record.files,
        });
        let entry = LogEntry::new("export.create", Some(record.client_id), record.id)
            .hashes(None, Some(format!("sha256:{}", record.sha256)))
            .event("export.created", Audience::Client, data);
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn replayed_export(&self, ctx: &WriteContext) -> Result<Option<ExportRecord>> {
        let Some(k) = &ctx.idempotency else {
            return Ok(None);
        };
        let reader = &mut self.db.reader();
        let row: Option<(String, String, Uuid)> = sql(
            "SELECT kind, request_hash, resource_id FROM idempotency_keys \
             WHERE scope = $1 AND key = $2",
        )
        .bind(&k.scope)
        .bind(&k.key)
        .fetch_optional(reader)
        .await?;
        match row {
            None => Ok(None),
            Some((kind, hash, id)) if kind == "export" && hash == k.request_hash => {
                Ok(Some(export_in(reader, ExportId::from_uuid(id)).await?))
            }
            Some(_) => Err(StoreError::IdempotencyMismatch { key: k.key.clone() }),
        }
    }

    async fn get_export(&self, id: ExportId) -> Result<ExportRecord> {
        export_in(&mut self.db.reader(), id).await
    }

    async fn list_exports(
        &self,
        engagement_id: EngagementId,
        page: PageRequest,
    ) -> Result<Page<ExportRecord>> {
        let before: Option<ExportId> = id_cursor(&page)?;
        let mut q = sql(format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE engagement_id = "
        ));
        q.push_bind(engagement_id.uuid());
        if let Some(b) = before {
            q.push(" AND id < ").push_bind(b.uuid());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_plus_one(&page));
        let rows: Vec<ExportRow> = q.fetch_all(&mut self.db.reader()).await?;
        let items = rows
            .into_iter()
            .map(ExportRow::record)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, &page, |e| e.id.to_string()))
    }
}
