//! [`FileStore`] on SQL: file rows, the extraction task queued with each, the
//! extracted text and its search entry. Times are microseconds (INTEGER).

use async_trait::async_trait;
use sqlx::FromRow;
use waymark_domain::work::{Backoff, CheckedTask, Executor};
use waymark_domain::{FileId, UnitId};

use super::work::{Woken, at, insert_unit, notify_lanes, now_us};
use super::*;
use crate::files::*;
use crate::work::NewUnit;

const FILE_COLUMNS: &str = "id, client_id, engagement_id, artifact_id, name, kind, mime, size, \
     sha256, storage_key, status, status_reason, error_code, CAST(length(text) AS BIGINT) AS text_chars, \
     text_truncated, pages, table_info, extraction_ms, uploaded_by, uploaded_name, created_at, \
     updated_at, extracted_at";

#[derive(FromRow)]
struct FileRow {
    id: Uuid,
    client_id: Uuid,
    engagement_id: Option<Uuid>,
    artifact_id: Option<Uuid>,
    name: String,
    kind: String,
    mime: String,
    size: i64,
    sha256: String,
    storage_key: String,
    status: String,
    status_reason: Option<String>,
    error_code: Option<String>,
    text_chars: Option<i64>,
    text_truncated: i64,
    pages: Option<i64>,
    table_info: Option<Json<Value>>,
    extraction_ms: Option<i64>,
    uploaded_by: String,
    uploaded_name: String,
    created_at: i64,
    updated_at: i64,
    extracted_at: Option<i64>,
}

impl FileRow {
    fn record(self) -> Result<FileRecord> {
        Ok(FileRecord {
            id: FileId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            engagement_id: self.engagement_id.map(EngagementId::from_uuid),
            artifact_id: self.artifact_id.map(ArtifactId::from_uuid),
            name: self.name,
            kind: self.kind,
            mime: self.mime,
            size: self.size,
            sha256: self.sha256,
            storage_key: self.storage_key,
            status: FileStatus::parse(&self.status)
                .ok_or_else(|| decode_error("file status", &self.status))?,
            status_reason: self.status_reason,
            error_code: self.error_code,
            text_chars: self.text_chars,
            text_truncated: self.text_truncated != 0,
            pages: self.pages,
            table: self.table_info.map(|j| j.0),
            extraction_ms: self.extraction_ms,
            uploaded_by: self.uploaded_by,
            uploaded_by_name: self.uploaded_name,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            extracted_at: self.extracted_at.map(at),
        })
    }
}

fn file_data(f: &FileRecord) -> Value {
    serde_json::json!({
        "file_id": f.id.to_string(),
        "client_id": f.client_id.to_string(),
        "engagement_id": f.engagement_id.map(|e| e.to_string()),
        "artifact_id": f.artifact_id.map(|a| a.to_string()),
        "name": f.name,
        "kind": f.kind,
        "size": f.size,
        "sha256": f.sha256,
        "status": f.status.as_str(),
        "error_code": f.error_code,
    })
}

async fn file_in(conn: &mut impl Conn, id: FileId, lock: &str) -> Result<FileRecord> {
    let row: Option<FileRow> = sql(format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE id = $1{lock}"
    ))
    .bind(id.uuid())
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(|| not_found("file", id))?.record()
}

/// Checks the engagement and artifact a file is for: both of its client, the
/// artifact in the engagement when both are named. Answers the engagement
/// (the artifact's when only the artifact is named).
async fn check_owner(tx: &mut Tx, new: &NewFile) -> Result<Option<EngagementId>> {
    require_client(tx, new.client_id).await?;
    let mut engagement = new.engagement_id;
    if let Some(e) = new.engagement_id {
        let row: Option<(Uuid,)> = sql("SELECT client_id FROM engagements WHERE id = $1")
            .bind(e.uuid())
            .fetch_optional(tx)
            .await?;
        if row.map(|r| r.0) != Some(new.client_id.uuid()) {
            return Err(FieldError::new(
                "/engagement_id",
                format!("no engagement {e} of client {}", new.client_id),
            )
            .into());
        }
    }
    if let Some(a) = new.artifact_id {
        let row: Option<(Uuid, Option<Uuid>)> =
            sql("SELECT client_id, engagement_id FROM artifacts WHERE id = $1")
                .bind(a.uuid())
                .fetch_optional(tx)
                .await?;
        match row {
            Some((client, art_engagement)) if client == new.client_id.uuid() => {
                let art_engagement = art_engagement.map(EngagementId::from_uuid);
                match (engagement, art_engagement) {
                    (Some(e), Some(ae)) if e != ae => {
                        return Err(FieldError::new(
                            "/artifact_id",
                            format!("artifact {a} is not in engagement {e}"),
                        )
                        .into());
                    }
                    (None, ae) => engagement = ae,
                    _ => {}
                }
            }
            _ => {
                return Err(FieldError::new(
                    "/artifact_id",
                    format!("no artifact {a} of client {}", new.client_id),
                )
                .into());
            }
        }
    }
    Ok(engagement)
}

/// The extraction task of a file: retried twice on failures of the worker
/// (a file that cannot be read is not a failure: its status says why).
fn extract_unit(client: ClientId, file: FileId, name: &str) -> NewUnit {
    NewUnit {
        client_id: client,
        name: format!("Extract the text of {name}"),
        tasks: vec![CheckedTask {
            key: "extract".into(),
            name: format!("Extract the text of {name}"),
            executor: Executor::FileExtract,
            input: serde_json::json!({ "file_id": file.to_string() }),
            depends_on: Vec::new(),
            priority: 0,
            max_attempts: 3,
            timeout_s: 600,
            backoff: Backoff {
                initial_s: 2.0,
                max_s: 60.0,
            },
            contract: Vec::new(),
            handoff_from: None,
        }],
        depends_on_units: Vec::new(),
        origin: Some(serde_json::json!({ "kind": "file", "file_id": file.to_string() })),
        plan: None,
    }
}

#[async_trait]
impl FileStore for SqlStore {
    async fn create_file(&self, new: NewFile, ctx: &WriteContext) -> Result<Created<FileUpload>> {
        let id = FileId::new();
        let now = now_us();
        let mut woken = Woken::default();
        let mut unit_id = None;
        let existing = {
            let mut tx = self.db.begin().await?;
            let engagement = check_owner(&mut tx, &new).await?;
            let found: Option<(Uuid,)> =
                sql("SELECT id FROM files WHERE client_id = $1 AND sha256 = $2")
                    .bind(new.client_id.uuid())
                    .bind(new.sha256.as_str())
                    .fetch_optional(&mut tx)
                    .await?;
            if let Some((existing,)) = found {
                Some(FileId::from_uuid(existing))
            } else {
                let status = if new.extract {
                    FileStatus::Extracting
                } else {
                    FileStatus::Stored
                };
                sql(
                    "INSERT INTO files (id, client_id, engagement_id, artifact_id, name, kind, \
                     mime, size, sha256, storage_key, status, uploaded_by, uploaded_name, \
                     created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
                )
                .bind(id.uuid())
                .bind(new.client_id.uuid())
                .bind(engagement.map(|e| e.uuid()))
                .bind(new.artifact_id.map(|a| a.uuid()))
                .bind(new.name.as_str())
                .bind(new.kind.as_str())
                .bind(new.mime.as_str())
                .bind(new.size)
                .bind(new.sha256.as_str())
                .bind(new.storage_key.as_str())
                .bind(status.as_str())
                .bind(ctx.actor.as_str())
                .bind(ctx.actor_name.clone().unwrap_or_else(|| ctx.actor.clone()))
                .bind(now)
                .execute(&mut tx)
                .await?;
                if new.extract {
                    let unit = UnitId::new();
                    insert_unit(
                        &mut tx,
                        unit,
                        &extract_unit(new.client_id, id, &new.name),
                        ctx,
                        now,
                        &mut woken,
                    )
                    .await?;
                    unit_id = Some(unit);
                }
                let record = file_in(&mut tx, id, "").await?;
                let entry = LogEntry::new("file.upload", Some(new.client_id), id)
                    .hashes(None, Some(format!("sha256:{}", new.sha256)))
                    .event("file.uploaded", Audience::Client, file_data(&record));
                append_log(&mut tx, ctx, at(now), entry).await?;
                notify_lanes(&mut tx, &woken).await?;
                tx.commit().await?;
                None
            }
        };
        self.wake(&woken);
        match existing {
            Some(existing) => Ok(Created {
                record: FileUpload {
                    file: self.get_file(existing).await?,
                    unit_id: None,
                },
                replayed: true,
            }),
            None => Ok(Created {
                record: FileUpload {
                    file: self.get_file(id).await?,
                    unit_id,
                },
                replayed: false,
            }),
        }
    }

    async fn get_file(&self, id: FileId) -> Result<FileRecord> {
        file_in(&mut self.db.reader(), id, "").await
    }

    async fn file_by_hash(&self, client: ClientId, sha256: &str) -> Result<Option<FileRecord>> {
        let row: Option<FileRow> = sql(format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE client_id = $1 AND sha256 = $2"
        ))
        .bind(client.uuid())
        .bind(sha256)
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.map(FileRow::record).transpose()
    }

    async fn file_text(&self, id: FileId) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = sql("SELECT text FROM files WHERE id = $1")
            .bind(id.uuid())
            .fetch_optional(&mut self.db.reader())
            .await?;
        Ok(row.ok_or_else(|| not_found("file", id))?.0)
    }

    async fn list_files(&self, filter: FileFilter, page: PageRequest) -> Result<Page<FileRecord>> {
        let before: Option<FileId> = id_cursor(&page)?;
        let rows: Vec<FileRow> = {
            let p = &mut self.db.reader();
            let mut q = sql(format!("SELECT {FILE_COLUMNS} FROM files WHERE 1 = 1"));
            if let Some(c) = filter.client_id {
                q.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(e) = filter.engagement_id {
                q.push(" AND engagement_id = ").push_bind(e.uuid());
            }
            if let Some(a) = filter.artifact_id {
                q.push(" AND artifact_id = ").push_bind(a.uuid());
            }
            if let Some(b) = before {
                q.push(" AND id < ").push_bind(b.uuid());
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let items = rows
            .into_iter()
            .map(FileRow::record)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, &page, |f| f.id.to_string()))
    }

    async fn record_extraction(
        &self,
        id: FileId,
        result: Extraction,
        ctx: &WriteContext,
    ) -> Result<FileRecord> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let before = file_in(&mut tx, id, self.lock_clause()).await?;
        // Text with NUL cannot be stored in PostgreSQL; nothing searches for it.
        let text = result.text.map(|t| {
            if t.contains('\0') {
                t.replace('\0', "")
            } else {
                t
            }
        });
        sql(
            "UPDATE files SET status = $2, status_reason = $3, error_code = $4, text = $5, \
             text_truncated = $6, pages = $7, table_info = $8, extraction_ms = $9, \
             extracted_at = $10, updated_at = $10 WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(result.status.as_str())
        .bind(result.reason)
        .bind(result.error_code)
        .bind(text.as_deref())
        .bind(i64::from(result.truncated))
        .bind(result.pages)
        .bind(result.table.map(Json))
        .bind(result.ms)
        .bind(now)
        .execute(&mut tx)
        .await?;
        if let Some(text) = &text {
            search::index_doc(
                &mut tx,
                &search::SearchDoc {
                    kind: search::DocKind::File,
                    ref_id: id.uuid(),
                    client_id: before.client_id,
                    engagement_id: before.engagement_id,
                    artifact_id: before.artifact_id,
                    artifact_type: None,
                    internal: false,
                    title: before.name.clone(),
                    body: text.clone(),
                },
            )
            .await?;
        }
        let record = file_in(&mut tx, id, "").await?;
        let event = if record.status == FileStatus::Extracted {
            "file.extracted"
        } else {
            "file.extraction_failed"
        };
        let entry = LogEntry::new("file.extract", Some(record.client_id), id).event(
            event,
            Audience::Client,
            file_data(&record),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_file(&self, id: FileId, ctx: &WriteContext) -> Result<(FileRecord, bool)> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let record = file_in(&mut tx, id, self.lock_clause()).await?;
        sql("DELETE FROM files WHERE id = $1")
            .bind(id.uuid())
            .execute(&mut tx)
            .await?;
        search::remove_doc(&mut tx, search::DocKind::File, id.uuid()).await?;
        let (others,): (i64,) = sql("SELECT COUNT(*) FROM files WHERE storage_key = $1")
            .bind(record.storage_key.as_str())
            .fetch_one(&mut tx)
            .await?;
        let entry = LogEntry::new("file.delete", Some(record.client_id), id)
            .hashes(Some(format!("sha256:{}", record.sha256)), None)
            .event("file.deleted", Audience::Client, file_data(&record));
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok((record, others > 0))
    }

    async fn object_in_use(&self, storage_key: &str) -> Result<bool> {
        let (n,): (i64,) = sql("SELECT COUNT(*) FROM files WHERE storage_key = $1")
            .bind(storage_key)
            .fetch_one(&mut self.db.reader())
            .await?;
        Ok(n > 0)
    }
}
