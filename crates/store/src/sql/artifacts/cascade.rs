//! The stale cascade, inside the transaction of the write that changed an
//! artifact's content hash: one recursive query finds every candidate
//! downstream with its sources, `waymark_domain::cascade` decides, and two
//! set-based statements (one per dialect: `json_each` on SQLite,
//! `jsonb_to_recordset` on PostgreSQL) write every mark and its history entry.
//! Three statements whatever the graph's size.
//!
//! A pack that changes a type's generator starts the same walk from each
//! artifact that generator built ([`generators_changed`]).

use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::ArtifactId;
use waymark_domain::cascade::{self, Consumer, RootChange, StaleCause};

use super::super::db::{Conn, Tx, sql};
use super::super::status;
use crate::{Backend, Flagged, Result, WriteContext};

/// Runs the cascade from `root` inside the transaction; answers what it flagged.
pub(crate) async fn run(
    tx: &mut Tx,
    root: &RootChange,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<Vec<Flagged>> {
    let (consumers, info) = candidates(tx, root.artifact_id, root.to_version).await?;
    let marks = cascade::plan(root, &consumers);
    write_marks(tx, marks, &info, ctx, at).await
}

/// Marks stale every generated artifact of `types` in the engagements of
/// `pack` (its current version not written by a person), and everything built
/// on them: the pack changed those types' generators.
pub(crate) async fn generators_changed(
    tx: &mut Tx,
    pack: &str,
    types: &[String],
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<Vec<Flagged>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = sql("SELECT a.id, a.type, a.status, a.version, a.stale_causes \
         FROM engagements e \
         CROSS JOIN artifacts a \
         CROSS JOIN artifact_versions v \
         WHERE e.pack = ");
    q.push_bind(pack);
    q.push(
        " AND a.engagement_id = e.id AND v.artifact_id = a.id AND v.version = a.version \
         AND v.provenance <> 'human' \
         AND a.status IN ('draft', 'in_review', 'approved', 'stale') AND a.type IN ",
    );
    q.push_list(types);
    q.push(" ORDER BY a.id");
    let generated: Vec<GeneratedRow> = q.fetch_all(&mut *tx).await?;
    let mut flagged = Vec::new();
    for g in generated {
        let id = ArtifactId::from_uuid(g.id);
        // Read after the marks before: an artifact reached twice keeps both causes.
        let current: Option<GeneratedRow> =
            sql("SELECT id, type, status, version, stale_causes FROM artifacts WHERE id = $1")
                .bind(g.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else { continue };
        let (consumers, mut info) = candidates(tx, id, i64::MAX).await?;
        info.insert(id, (current.artifact_type.clone(), current.version));
        let itself = Consumer {
            artifact_id: id,
            status: status(&current.status)?,
            causes: current.stale_causes.map(|c| c.0).unwrap_or_default(),
            sources: vec![],
        };
        let marks = cascade::plan_generator_change(
            &itself,
            &current.artifact_type,
            current.version,
            &consumers,
        );
        flagged.extend(write_marks(tx, marks, &info, ctx, at).await?);
    }
    Ok(flagged)
}

/// Every artifact downstream of `root` that can go stale, as consumers, the
/// first step only through versions older than `below`.
async fn candidates(
    tx: &mut Tx,
    root: ArtifactId,
    below: i64,
) -> Result<(Vec<Consumer>, CandidateInfo)> {
    let rows: Vec<CascadeRow> = sql(CASCADE_CANDIDATES)
        .bind(root.uuid())
        .bind(below)
        .fetch_all(tx)
        .await?;
    consumers_of(rows)
}

/// Writes `marks` (the status, the reason and causes, a history entry each);
/// answers them as flagged.
async fn write_marks(
    tx: &mut Tx,
    marks: Vec<cascade::StaleMark>,
    info: &CandidateInfo,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<Vec<Flagged>> {
    if marks.is_empty() {
        return Ok(Vec::new());
    }
    let payload: Vec<Value> = marks
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.artifact_id.uuid().simple().to_string(),
                "reason": m.reason,
                "causes": m.causes,
                "from_status": m.from_status.as_str(),
                "version": info.get(&m.artifact_id).map(|i| i.1).unwrap_or(0),
                "history": cascade::reason(&m.new_causes),
            })
        })
        .collect();
    let payload = Value::Array(payload).to_string();
    let (mark_sql, history_sql) = match tx.backend() {
        Backend::Sqlite => (SQLITE_MARK_STALE, SQLITE_STALE_HISTORY),
        Backend::Postgres => (POSTGRES_MARK_STALE, POSTGRES_STALE_HISTORY),
    };
    sql(mark_sql).bind(&payload).bind(at).execute(tx).await?;
    sql(history_sql)
        .bind(&payload)
        .bind(at)
        .bind(&ctx.actor)
        .bind(&ctx.trace_id)
        .bind(&ctx.actor_name)
        .execute(tx)
        .await?;
    Ok(marks
        .into_iter()
        .map(|m| Flagged {
            artifact_type: info
                .get(&m.artifact_id)
                .map(|i| i.0.clone())
                .unwrap_or_default(),
            artifact_id: m.artifact_id,
            reason: m.reason,
        })
        .collect())
}

/// Every artifact downstream of `$1` that can go stale, reached through the
/// sources of latest versions (the first step only through versions older than
/// `$2`), with all the sources of its latest version. `CROSS JOIN` fixes the
/// join order on SQLite (whose planner would otherwise scan artifacts by status
/// for every row of the recursion); PostgreSQL plans it as an inner join.
const CASCADE_CANDIDATES: &str = "WITH RECURSIVE down(id) AS ( \
       SELECT a.id FROM version_sources vs \
       CROSS JOIN artifacts a \
       WHERE vs.source_id = $1 AND vs.source_version < $2 \
         AND a.id = vs.artifact_id AND a.version = vs.version AND a.id <> $1 \
         AND a.status IN ('draft', 'in_review', 'approved', 'stale') \
       UNION \
       SELECT a.id FROM down \
       CROSS JOIN version_sources vs \
       CROSS JOIN artifacts a \
       WHERE vs.source_id = down.id AND a.id = vs.artifact_id AND a.version = vs.version \
         AND a.id <> $1 AND a.status IN ('draft', 'in_review', 'approved', 'stale') \
     ) \
     SELECT a.id, a.type, a.status, a.version, a.stale_causes, \
            vs.source_id, s.type AS source_type, vs.source_version \
     FROM down \
     CROSS JOIN artifacts a \
     CROSS JOIN version_sources vs \
     CROSS JOIN artifacts s \
     WHERE a.id = down.id AND vs.artifact_id = a.id AND vs.version = a.version \
       AND s.id = vs.source_id \
     ORDER BY a.id, vs.position";

const SQLITE_MARK_STALE: &str = "UPDATE artifacts SET status = 'stale', \
     stale_reason = m.value ->> 'reason', stale_causes = m.value ->> 'causes', updated_at = $2 \
     FROM json_each($1) AS m WHERE artifacts.id = unhex(m.value ->> 'id')";
const SQLITE_STALE_HISTORY: &str = "INSERT INTO artifact_history \
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id, actor_name) \
     SELECT unhex(m.value ->> 'id'), $2, $3, 'marked_stale', m.value ->> 'from_status', 'stale', \
            m.value ->> 'version', m.value ->> 'history', $4, $5 \
     FROM json_each($1) AS m ORDER BY m.key";
const POSTGRES_MARK_STALE: &str = "UPDATE artifacts a SET status = 'stale', \
     stale_reason = m.reason, stale_causes = m.causes, updated_at = $2 \
     FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, reason text, causes jsonb) \
     WHERE a.id = m.id";
const POSTGRES_STALE_HISTORY: &str = "INSERT INTO artifact_history \
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id, actor_name) \
     SELECT m.id, $2, $3, 'marked_stale', m.from_status, 'stale', m.version, m.history, $4, $5 \
     FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, from_status text, version bigint, history text)";

#[derive(FromRow)]
struct GeneratedRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    artifact_type: String,
    status: String,
    version: i64,
    stale_causes: Option<Json<Vec<StaleCause>>>,
}

#[derive(FromRow)]
struct CascadeRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    artifact_type: String,
    status: String,
    version: i64,
    stale_causes: Option<Json<Vec<StaleCause>>>,
    source_id: Uuid,
    source_type: String,
    source_version: i64,
}

/// Each cascade candidate's type and latest version.
type CandidateInfo = std::collections::HashMap<ArtifactId, (String, i64)>;

/// Groups the candidate rows (ordered by artifact) into consumers, with each
/// one's type and latest version.
fn consumers_of(rows: Vec<CascadeRow>) -> Result<(Vec<Consumer>, CandidateInfo)> {
    let mut consumers: Vec<Consumer> = Vec::new();
    let mut info = std::collections::HashMap::new();
    for r in rows {
        let id = ArtifactId::from_uuid(r.id);
        if consumers.last().map(|c| c.artifact_id) != Some(id) {
            info.insert(id, (r.artifact_type.clone(), r.version));
            consumers.push(Consumer {
                artifact_id: id,
                status: status(&r.status)?,
                causes: r.stale_causes.map(|c| c.0).unwrap_or_default(),
                sources: vec![],
            });
        }
        if let Some(c) = consumers.last_mut() {
            c.sources.push(cascade::Source {
                artifact_id: ArtifactId::from_uuid(r.source_id),
                artifact_type: r.source_type,
                version: r.source_version,
            });
        }
    }
    Ok((consumers, info))
}

/// What an event says of the artifacts a change made stale: the first 100,
/// each with its type and reason (`flagged_count` gives them all).
pub(crate) fn flagged_json(flagged: &[Flagged]) -> Value {
    Value::Array(
        flagged
            .iter()
            .take(100)
            .map(|f| {
                serde_json::json!({
                    "artifact_id": f.artifact_id.to_string(),
                    "type": f.artifact_type,
                    "reason": f.reason,
                })
            })
            .collect(),
    )
}
