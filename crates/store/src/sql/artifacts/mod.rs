//! Artifacts: their rows, reads (an artifact at its latest version, lists,
//! versions, history) and the [`Store`] methods that write them, through the
//! in-transaction steps of [`write`].

pub(crate) mod cascade;
mod lineage;
mod write;

pub(crate) use lineage::lineage;
pub(crate) use write::*;

use waymark_domain::lifecycle;

use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::search;
use super::*;

#[derive(FromRow)]
struct SummaryRow {
    id: Uuid,
    client_id: Uuid,
    engagement_id: Option<Uuid>,
    #[sqlx(rename = "type")]
    artifact_type: String,
    title: String,
    status: String,
    version: i64,
    content_hash: String,
    stale_reason: Option<String>,
    stale_causes: Option<Json<Vec<StaleCause>>>,
    shared_at: Option<OffsetDateTime>,
    created_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

const SUMMARY_COLUMNS: &str = "a.id, a.client_id, a.engagement_id, a.type, a.title, a.status, \
     a.version, a.content_hash, a.stale_reason, a.stale_causes, a.shared_at, a.created_by, \
     a.created_at, a.updated_at";

impl TryFrom<SummaryRow> for ArtifactSummary {
    type Error = StoreError;
    fn try_from(r: SummaryRow) -> Result<Self> {
        Ok(ArtifactSummary {
            id: ArtifactId::from_uuid(r.id),
            client_id: ClientId::from_uuid(r.client_id),
            engagement_id: r.engagement_id.map(EngagementId::from_uuid),
            artifact_type: r.artifact_type,
            title: r.title,
            status: status(&r.status)?,
            version: r.version,
            content_hash: r.content_hash,
            stale_reason: r.stale_reason,
            stale_causes: r.stale_causes.map(|c| c.0).unwrap_or_default(),
            shared_at: r.shared_at,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(FromRow)]
struct ArtifactRow {
    #[sqlx(flatten)]
    summary: SummaryRow,
    content: Json<Value>,
    inputs_hash: String,
    provenance: String,
    note: Option<String>,
    journey_id: Option<Uuid>,
}

#[derive(FromRow)]
struct ArtifactSourceRow {
    #[sqlx(flatten)]
    artifact: ArtifactRow,
    source_id: Option<Uuid>,
    source_version: Option<i64>,
}

#[derive(FromRow)]
struct VersionRow {
    artifact_id: Uuid,
    version: i64,
    content: Json<Value>,
    content_hash: String,
    inputs_hash: String,
    provenance: String,
    author: String,
    note: Option<String>,
    created_at: OffsetDateTime,
}

const SOURCES_OF_VERSION: &str = "SELECT version, source_id, source_version FROM version_sources \
     WHERE artifact_id = $1 AND version = $2 ORDER BY position";

const INSERT_HISTORY: &str = "INSERT INTO artifact_history \
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id, actor_name) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const VERSION_COLUMNS: &str = "artifact_id, version, content, content_hash, inputs_hash, \
     provenance, author, note, created_at";

/// One version of an artifact by number (`$1` the artifact, `$2` the number).
fn version_by_number() -> String {
    format!(
        "SELECT {VERSION_COLUMNS} FROM artifact_versions WHERE artifact_id = $1 AND version = $2"
    )
}

impl VersionRow {
    fn into_version(self, sources: Vec<SourceRef>) -> Version {
        Version {
            artifact_id: ArtifactId::from_uuid(self.artifact_id),
            version: self.version,
            content: self.content.0,
            content_hash: self.content_hash,
            inputs_hash: self.inputs_hash,
            sources,
            provenance: self.provenance,
            author: self.author,
            note: self.note,
            created_at: self.created_at,
        }
    }
}

#[derive(FromRow)]
struct SourceRow {
    version: i64,
    source_id: Uuid,
    source_version: i64,
}

impl SourceRow {
    fn source(&self) -> SourceRef {
        SourceRef {
            artifact_id: ArtifactId::from_uuid(self.source_id),
            version: self.source_version,
        }
    }
}

/// A row of an artifact's history (also read by delivery, with its artifact).
#[derive(FromRow)]
pub(in crate::sql) struct HistoryRow {
    seq: i64,
    action: String,
    from_status: Option<String>,
    to_status: Option<String>,
    version: Option<i64>,
    reason: Option<String>,
    actor: String,
    actor_name: Option<String>,
    trace_id: Option<String>,
    at: OffsetDateTime,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;
    fn try_from(r: HistoryRow) -> Result<Self> {
        Ok(HistoryEntry {
            seq: r.seq,
            action: HistoryAction::parse(&r.action)
                .ok_or_else(|| decode_error("history action", &r.action))?,
            from_status: r.from_status.as_deref().map(status).transpose()?,
            to_status: r.to_status.as_deref().map(status).transpose()?,
            version: r.version,
            reason: r.reason,
            actor: r.actor,
            actor_name: r.actor_name,
            trace_id: r.trace_id,
            at: r.at,
        })
    }
}

impl SqlStore {
    pub(crate) async fn write_version(
        &self,
        id: ArtifactId,
        expected_version: i64,
        input: VersionInput,
        ctx: &WriteContext,
    ) -> Result<Written> {
        let mut tx = self.db.begin().await?;
        let written = write::write_version(&mut tx, id, expected_version, input, ctx).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn sources_of(&self, id: Uuid, from: i64, to: i64) -> Result<Vec<SourceRow>> {
        sql(
            "SELECT version, source_id, source_version FROM version_sources \
             WHERE artifact_id = $1 AND version >= $2 AND version <= $3 \
             ORDER BY version, position",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(&mut self.db.reader())
        .await
    }

    pub(crate) async fn artifact_exists(&self, id: ArtifactId) -> Result<()> {
        self.get_artifact_version(id).await.map(|_| ())
    }
}

impl SqlStore {
    async fn get_artifact_version(&self, id: ArtifactId) -> Result<i64> {
        let found: Option<(i64,)> = sql("SELECT version FROM artifacts WHERE id = $1")
            .bind(id.uuid())
            .fetch_optional(&mut self.db.reader())
            .await?;
        found.map(|v| v.0).ok_or_else(|| not_found("artifact", id))
    }
}

pub(crate) async fn create_artifact(
    store: &SqlStore,
    new: NewArtifact,
    ctx: &WriteContext,
) -> Result<Created<Artifact>> {
    let id = ArtifactId::new();
    let at = now();
    let mut tx = store.db.begin().await?;
    if let Some(existing) = idempotency::replay(&mut tx, ctx, "artifact").await? {
        drop(tx);
        return Ok(Created {
            record: store.get_artifact(ArtifactId::from_uuid(existing)).await?,
            replayed: true,
        });
    }
    let artifact = insert_artifact(&mut tx, id, &new, ctx, at).await?;
    idempotency::record(&mut tx, ctx, "artifact", id.uuid(), at).await?;
    tx.commit().await?;
    Ok(Created {
        record: artifact,
        replayed: false,
    })
}

pub(crate) async fn get_artifact_summary(
    store: &SqlStore,
    id: ArtifactId,
) -> Result<ArtifactSummary> {
    let row: Option<SummaryRow> = sql(format!(
        "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE a.id = $1"
    ))
    .bind(id.uuid())
    .fetch_optional(&mut store.db.reader())
    .await?;
    row.ok_or_else(|| not_found("artifact", id))?.try_into()
}

pub(crate) async fn get_artifact(store: &SqlStore, id: ArtifactId) -> Result<Artifact> {
    // The artifact and its latest version's sources in one statement: a row
    // per source (one row, without a source, when it has none).
    let rows: Vec<ArtifactSourceRow> = sql(format!(
        "SELECT {SUMMARY_COLUMNS}, v.content, v.inputs_hash, v.provenance, v.note, \
             (SELECT j.id FROM journeys j WHERE j.source_artifact_id = a.id) AS journey_id, \
             s.source_id, s.source_version \
             FROM artifacts a JOIN artifact_versions v \
             ON v.artifact_id = a.id AND v.version = a.version \
             LEFT JOIN version_sources s ON s.artifact_id = a.id AND s.version = a.version \
             WHERE a.id = $1 ORDER BY s.position"
    ))
    .bind(id.uuid())
    .fetch_all(&mut store.db.reader())
    .await?;
    let sources = rows
        .iter()
        .filter_map(|r| match (r.source_id, r.source_version) {
            (Some(source), Some(version)) => Some(SourceRef {
                artifact_id: ArtifactId::from_uuid(source),
                version,
            }),
            _ => None,
        })
        .collect();
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| not_found("artifact", id))?
        .artifact;
    Ok(Artifact {
        summary: row.summary.try_into()?,
        content: row.content.0,
        inputs_hash: row.inputs_hash,
        sources,
        provenance: row.provenance,
        note: row.note,
        journey_id: row.journey_id.map(JourneyId::from_uuid),
    })
}

pub(crate) async fn list_artifacts(
    store: &SqlStore,
    filter: ArtifactFilter,
    page: PageRequest,
) -> Result<Page<ArtifactSummary>> {
    let cursor = id_cursor::<ArtifactId>(&page)?;
    let rows: Vec<SummaryRow> = {
        let p = &mut store.db.reader();
        let mut qb = sql(format!(
            "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE 1 = 1"
        ));
        if let Some(c) = filter.client_id {
            qb.push(" AND a.client_id = ").push_bind(c.uuid());
        }
        if let Some(e) = filter.engagement_id {
            qb.push(" AND a.engagement_id = ").push_bind(e.uuid());
        }
        if let Some(t) = &filter.artifact_type {
            qb.push(" AND a.type = ").push_bind(t.clone());
        }
        if let Some(s) = filter.status {
            qb.push(" AND a.status = ").push_bind(s.as_str());
        }
        if let Some(c) = filter.shared_with {
            qb.push(" AND a.client_id = ")
                .push_bind(c.uuid())
                .push(" AND a.shared_at IS NOT NULL AND a.status <> 'draft'");
        }
        if let Some(q) = &filter.q {
            // The search index (title and content), as `search` reads `q`;
            // the list keeps its own order and cursor.
            let Some(terms) = search::Terms::parse(q) else {
                return Ok(Page {
                    items: Vec::new(),
                    next_cursor: None,
                });
            };
            qb.push(" AND a.id IN (");
            search::push_artifact_matches(&mut qb, p.backend(), &terms);
            qb.push(")");
        }
        if let Some(c) = cursor {
            qb.push(" AND a.id < ").push_bind(c.uuid());
        }
        qb.push(" ORDER BY a.id DESC LIMIT ")
            .push_bind(limit_plus_one(&page));
        qb.fetch_all(p).await?
    };
    let rows = rows
        .into_iter()
        .map(ArtifactSummary::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok(paginate(rows, &page, |a| a.id.to_string()))
}

pub(crate) async fn list_versions(
    store: &SqlStore,
    id: ArtifactId,
    page: PageRequest,
) -> Result<Page<Version>> {
    store.artifact_exists(id).await?;
    let after = number_cursor(&page)?.unwrap_or(0);
    let rows: Vec<VersionRow> = sql(format!(
        "SELECT {VERSION_COLUMNS} FROM artifact_versions \
             WHERE artifact_id = $1 AND version > $2 ORDER BY version LIMIT $3"
    ))
    .bind(id.uuid())
    .bind(after)
    .bind(limit_plus_one(&page))
    .fetch_all(&mut store.db.reader())
    .await?;
    let (lo, hi) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => (f.version, l.version),
        _ => (1, 0),
    };
    let sources = store.sources_of(id.uuid(), lo, hi).await?;
    let versions = rows
        .into_iter()
        .map(|r| {
            let s = sources
                .iter()
                .filter(|s| s.version == r.version)
                .map(SourceRow::source)
                .collect();
            r.into_version(s)
        })
        .collect();
    Ok(paginate(versions, &page, |v| v.version.to_string()))
}

pub(crate) async fn get_version(store: &SqlStore, id: ArtifactId, version: i64) -> Result<Version> {
    let row: Option<VersionRow> = sql(version_by_number())
        .bind(id.uuid())
        .bind(version)
        .fetch_optional(&mut store.db.reader())
        .await?;
    let Some(row) = row else {
        store.artifact_exists(id).await?;
        return Err(not_found("version", format!("{version} of artifact {id}")));
    };
    let sources = store.sources_of(id.uuid(), version, version).await?;
    Ok(row.into_version(sources.iter().map(SourceRow::source).collect()))
}

pub(crate) async fn transition(
    store: &SqlStore,
    id: ArtifactId,
    to: ArtifactStatus,
    reason: Option<String>,
    pipeline: Option<Pipeline>,
    overridden: bool,
    ctx: &WriteContext,
) -> Result<Artifact> {
    {
        let mut tx = store.db.begin().await?;
        let current = lock_artifact(&mut tx, id).await?;
        let from = status(&current.status)?;
        lifecycle::check_transition(from, to)?;
        if from == ArtifactStatus::Stale && to == ArtifactStatus::Approved {
            check_upstream_approved(&mut tx, id, &current, pipeline.as_ref()).await?;
        }
        let at = now();
        let action = if overridden {
            HistoryAction::ApprovalOverridden
        } else {
            HistoryAction::Transition
        };
        let version = apply_transition(
            &mut tx,
            id,
            &current,
            (from, to, action),
            &reason,
            pipeline.as_ref(),
            ctx,
            at,
        )
        .await?;
        let mut entry = transition_entry(
            id,
            &current,
            from,
            to,
            version,
            &reason,
            if overridden {
                "artifact.approval_override"
            } else {
                "artifact.transition"
            },
            None,
        );
        if overridden {
            for e in &mut entry.events {
                e.data["override"] = serde_json::Value::Bool(true);
            }
        }
        append_log(&mut tx, ctx, at, entry).await?;
        tx.commit().await?;
    };
    store.get_artifact(id).await
}

pub(crate) async fn history(
    store: &SqlStore,
    id: ArtifactId,
    page: PageRequest,
) -> Result<Page<HistoryEntry>> {
    store.artifact_exists(id).await?;
    let after = number_cursor(&page)?.unwrap_or(0);
    let rows: Vec<HistoryRow> = sql(
        "SELECT seq, action, from_status, to_status, version, reason, actor, actor_name, trace_id, at \
             FROM artifact_history WHERE artifact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(id.uuid())
    .bind(after)
    .bind(limit_plus_one(&page))
    .fetch_all(&mut store.db.reader())
    .await?;
    let rows = rows
        .into_iter()
        .map(HistoryEntry::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok(paginate(rows, &page, |h| h.seq.to_string()))
}

pub(crate) async fn current_artifacts(
    store: &SqlStore,
    engagement_id: EngagementId,
) -> Result<Vec<ArtifactSummary>> {
    let rows: Vec<SummaryRow> = sql(format!(
        "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE a.engagement_id = $1 \
             AND a.status NOT IN ('cancelled', 'archived') ORDER BY a.id DESC"
    ))
    .bind(engagement_id.uuid())
    .fetch_all(&mut store.db.reader())
    .await?;
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| seen.insert(r.artifact_type.clone()))
        .map(ArtifactSummary::try_from)
        .collect()
}

/// Every artifact of the engagement, whatever its status, oldest first.
pub(crate) async fn engagement_artifacts(
    conn: &mut impl Conn,
    engagement_id: EngagementId,
) -> Result<Vec<ArtifactSummary>> {
    let rows: Vec<SummaryRow> = sql(format!(
        "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE a.engagement_id = $1 ORDER BY a.id"
    ))
    .bind(engagement_id.uuid())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(ArtifactSummary::try_from).collect()
}
