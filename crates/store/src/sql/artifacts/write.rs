//! The steps artifact writes share, inside the write transaction: locking
//! the row, resolving sources, inserting a version with its sources and
//! history entry, creating an artifact, writing a version (with the stale
//! cascade), and applying a transition. [`Store`](crate::Store) methods and
//! other writers (generation results, approvals, journeys) call them, so each
//! rule is applied once.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::artifact::{ResolvedSource, SourceRef, inputs_hash};
use waymark_domain::cascade::RootChange;
use waymark_domain::content::{ContentHash, content_hash};
use waymark_domain::lifecycle::{self, ArtifactStatus};
use waymark_domain::{ArtifactId, ClientId, EngagementId, FieldError, gating};

use super::super::append::{LogEntry, append_log};
use super::super::db::{Conn, Dialect, Tx, sql};
use super::super::search::{SearchDoc, index_later};
use super::super::{not_found, now, status};
use super::{INSERT_HISTORY, SOURCES_OF_VERSION, SourceRow, VersionRow, version_by_number};
use crate::log::Audience;
use crate::model::*;
use crate::{Result, StoreError};

#[derive(FromRow)]
pub(crate) struct CurrentRow {
    pub(crate) id: Uuid,
    #[sqlx(rename = "type")]
    pub(crate) artifact_type: String,
    pub(crate) status: String,
    pub(crate) version: i64,
}

pub(crate) struct VersionInsert {
    pub(crate) artifact_id: Uuid,
    pub(crate) version: i64,
    pub(crate) content: Value,
    pub(crate) content_hash: String,
    pub(crate) inputs_hash: String,
    pub(crate) provenance: String,
    pub(crate) author: String,
    pub(crate) note: Option<String>,
    pub(crate) at: OffsetDateTime,
}

pub(crate) struct HistoryInsert {
    pub(crate) actor_name: Option<String>,
    pub(crate) action: HistoryAction,
    pub(crate) from: Option<ArtifactStatus>,
    pub(crate) to: Option<ArtifactStatus>,
    pub(crate) reason: Option<String>,
    pub(crate) trace_id: Option<String>,
}

/// What a new version is made of.
pub(crate) enum VersionInput {
    New(NewVersion),
    Rollback(i64, Option<Pipeline>),
}

/// The row of an artifact a writer locks before changing it.
#[derive(FromRow)]
pub(crate) struct LockedArtifact {
    pub(crate) client_id: Uuid,
    pub(crate) engagement_id: Option<Uuid>,
    #[sqlx(rename = "type")]
    pub(crate) artifact_type: String,
    pub(crate) title: String,
    pub(crate) status: String,
    pub(crate) version: i64,
    pub(crate) content_hash: String,
    pub(crate) shared_at: Option<OffsetDateTime>,
    pub(crate) review_round: i64,
    pub(crate) created_by: String,
    pub(crate) created_at: OffsetDateTime,
    /// Whether any version of another artifact was built on it (else a new
    /// version of it can make nothing stale).
    pub(crate) has_consumers: bool,
    /// Whether its current version was built on sources (else a new version
    /// carries none forward).
    pub(crate) has_sources: bool,
}

/// Locks an artifact's row for a writer (SQLite has one writer and needs no lock).
pub(crate) const LOCK_ARTIFACT: &str = "SELECT client_id, engagement_id, type, title, status, version, \
     content_hash, shared_at, review_round, created_by, created_at, \
     EXISTS (SELECT 1 FROM version_sources vs WHERE vs.source_id = artifacts.id) AS has_consumers, \
     EXISTS (SELECT 1 FROM version_sources vs WHERE vs.artifact_id = artifacts.id \
             AND vs.version = artifacts.version) AS has_sources \
     FROM artifacts WHERE id = $1";

/// Whether a client's users may see an artifact: it was shared and is not
/// back in draft.
pub(crate) fn client_visible(shared: bool, status: ArtifactStatus) -> bool {
    shared && status != ArtifactStatus::Draft
}

/// What events say about an artifact.
pub(crate) fn artifact_data(
    id: ArtifactId,
    a: &LockedArtifact,
    status: ArtifactStatus,
    version: i64,
    content_hash: &str,
) -> Value {
    serde_json::json!({
        "artifact_id": id.to_string(),
        "client_id": ClientId::from_uuid(a.client_id).to_string(),
        "engagement_id": a.engagement_id.map(|e| EngagementId::from_uuid(e).to_string()),
        "type": a.artifact_type,
        "title": a.title,
        "status": status.as_str(),
        "version": version,
        "content_hash": content_hash,
    })
}

/// The event type of a transition.
fn transition_event(from: ArtifactStatus, to: ArtifactStatus) -> &'static str {
    match (from, to) {
        (_, ArtifactStatus::InReview) => "artifact.shared",
        (_, ArtifactStatus::Approved) => "artifact.approved",
        (ArtifactStatus::InReview, ArtifactStatus::Draft) => "artifact.withdrawn",
        (_, ArtifactStatus::Draft) => "artifact.reopened",
        _ => "artifact.transitioned",
    }
}

/// The audit record and event of a transition of `a` (as locked before it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn transition_entry(
    id: ArtifactId,
    a: &LockedArtifact,
    from: ArtifactStatus,
    to: ArtifactStatus,
    version: i64,
    reason: &Option<String>,
    action: &'static str,
    event_type: Option<&'static str>,
) -> LogEntry {
    let shared = a.shared_at.is_some() || to == ArtifactStatus::InReview;
    let audience = if client_visible(shared, to) || client_visible(shared, from) {
        Audience::Client
    } else {
        Audience::Staff
    };
    let mut data = artifact_data(id, a, to, version, &a.content_hash);
    data["from_status"] = Value::String(from.as_str().into());
    data["reason"] = reason.clone().map(Value::String).unwrap_or(Value::Null);
    LogEntry::new(action, Some(ClientId::from_uuid(a.client_id)), id)
        .hashes(Some(a.content_hash.clone()), Some(a.content_hash.clone()))
        .event(
            event_type.unwrap_or_else(|| transition_event(from, to)),
            audience,
            data,
        )
}

/// Reads an artifact's row inside the transaction, locked for this writer
/// (`FOR UPDATE` on PostgreSQL; SQLite has one writer); 404 when missing.
pub(crate) async fn lock_artifact(tx: &mut Tx, id: ArtifactId) -> Result<LockedArtifact> {
    let row: Option<LockedArtifact> = sql(format!("{LOCK_ARTIFACT}{}", tx.backend().for_update()))
        .bind(id.uuid())
        .fetch_optional(tx)
        .await?;
    row.ok_or_else(|| not_found("artifact", id))
}

/// Resolves sources inside the transaction: each must name an existing version
/// of an artifact of the same client.
pub(crate) async fn resolve_sources(
    tx: &mut Tx,
    client: Uuid,
    sources: &[SourceRef],
) -> Result<Vec<ResolvedSource>> {
    let mut resolved = Vec::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        let row: Option<(Uuid, String, String)> = sql(
            "SELECT a.client_id, a.type, v.content_hash FROM artifacts a \
             JOIN artifact_versions v ON v.artifact_id = a.id \
             WHERE a.id = $1 AND v.version = $2",
        )
        .bind(s.artifact_id.uuid())
        .bind(s.version)
        .fetch_optional(tx)
        .await?;
        match row {
            Some((owner, ty, hash)) if owner == client => resolved.push(ResolvedSource {
                source: *s,
                artifact_type: ty,
                content_hash: ContentHash::from_stored(hash),
            }),
            _ => {
                return Err(FieldError::new(
                    format!("/sources/{i}"),
                    format!(
                        "no version {} of artifact {} for this client",
                        s.version, s.artifact_id
                    ),
                )
                .into());
            }
        }
    }
    Ok(resolved)
}

/// Inserts a version, its sources and a history entry inside the
/// transaction, held back to run with the audit record (see
/// [`Tx::write_later`]): [`Tx::flush_later`] before reading them back.
pub(crate) fn insert_version(
    tx: &mut Tx,
    v: &VersionInsert,
    resolved: &[ResolvedSource],
    h: &HistoryInsert,
) {
    tx.insert_later(
        sql("INSERT INTO artifact_versions \
             (artifact_id, version, content, content_hash, inputs_hash, provenance, author, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(v.artifact_id)
        .bind(v.version)
        .bind(sqlx::types::Json(&v.content))
        .bind(&v.content_hash)
        .bind(&v.inputs_hash)
        .bind(&v.provenance)
        .bind(&v.author)
        .bind(&v.note)
        .bind(v.at),
    );
    if !resolved.is_empty() {
        let mut q = sql(
            "INSERT INTO version_sources (artifact_id, version, source_id, source_version, position) ",
        );
        q.push_values(
            tx.backend(),
            resolved.iter().enumerate(),
            |mut b, (position, s)| {
                b.push_bind(v.artifact_id)
                    .push_bind(v.version)
                    .push_bind(s.source.artifact_id.uuid())
                    .push_bind(s.source.version)
                    .push_bind(position as i32);
            },
        );
        tx.write_later(q, resolved.len() as u64);
    }
    tx.insert_later(
        sql(INSERT_HISTORY)
            .bind(v.artifact_id)
            .bind(v.at)
            .bind(&v.author)
            .bind(h.action.as_str())
            .bind(h.from.map(ArtifactStatus::as_str))
            .bind(h.to.map(ArtifactStatus::as_str))
            .bind(v.version)
            .bind(&h.reason)
            .bind(&h.trace_id)
            .bind(&h.actor_name),
    );
}

/// The current artifact of each type in an engagement, read inside the
/// transaction (and, on PostgreSQL, share-locked so gating and the write agree).
pub(crate) async fn current_in_engagement(
    tx: &mut Tx,
    engagement: Uuid,
) -> Result<HashMap<String, CurrentRow>> {
    let rows: Vec<CurrentRow> = sql(format!(
        "SELECT id, type, status, version FROM artifacts \
         WHERE engagement_id = $1 AND status NOT IN ('cancelled', 'archived') \
         ORDER BY id DESC{}",
        tx.backend().for_share()
    ))
    .bind(engagement)
    .fetch_all(tx)
    .await?;
    let mut current: HashMap<String, CurrentRow> = HashMap::new();
    for r in rows {
        current.entry(r.artifact_type.clone()).or_insert(r);
    }
    Ok(current)
}

/// Moves a locked artifact from `from` to `to` inside the transaction (the
/// lifecycle already checked): re-bases a re-approved stale artifact, starts a
/// review round when it is shared, clears the stale fields, records history.
/// Answers the artifact's version afterwards.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn apply_transition(
    tx: &mut Tx,
    id: ArtifactId,
    current: &LockedArtifact,
    (from, to, action): (ArtifactStatus, ArtifactStatus, HistoryAction),
    reason: &Option<String>,
    pipeline: Option<&Pipeline>,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<i64> {
    let mut version = current.version;
    if from == ArtifactStatus::Stale && to == ArtifactStatus::Approved {
        // Re-approval: the same content, built on the latest version of each source.
        let rows: Vec<SourceRow> = sql(SOURCES_OF_VERSION)
            .bind(id.uuid())
            .bind(current.version)
            .fetch_all(tx)
            .await?;
        let mut rebased = Vec::with_capacity(rows.len());
        let mut moved = Vec::new();
        for r in &rows {
            let (latest, ty): (i64, String) =
                sql("SELECT version, type FROM artifacts WHERE id = $1")
                    .bind(r.source_id)
                    .fetch_one(tx)
                    .await?;
            if latest != r.source_version {
                moved.push(format!("{ty} v{} -> v{latest}", r.source_version));
            }
            rebased.push(SourceRef {
                artifact_id: ArtifactId::from_uuid(r.source_id),
                version: latest,
            });
        }
        if !moved.is_empty() {
            let old: VersionRow = sql(version_by_number())
                .bind(id.uuid())
                .bind(current.version)
                .fetch_one(tx)
                .await?;
            let resolved = resolve_sources(tx, current.client_id, &rebased).await?;
            let generator = pipeline.map(|p| p.generator.clone()).unwrap_or(Value::Null);
            version += 1;
            let note = format!("Re-approved; sources re-based: {}", moved.join(", "));
            let v = VersionInsert {
                artifact_id: id.uuid(),
                version,
                inputs_hash: inputs_hash(&current.artifact_type, &generator, &resolved).to_string(),
                content_hash: old.content_hash.clone(),
                content: old.content.0,
                provenance: old.provenance,
                author: ctx.actor.clone(),
                note: Some(note.clone()),
                at,
            };
            let h = HistoryInsert {
                actor_name: ctx.actor_name.clone(),
                action: HistoryAction::Rebased,
                from: None,
                to: None,
                reason: Some(note),
                trace_id: ctx.trace_id.clone(),
            };
            insert_version(tx, &v, &resolved, &h);
            tx.flush_later().await?;
        }
    }
    sql(
        "UPDATE artifacts SET status = $2, updated_at = $3, version = $4, \
         stale_reason = NULL, stale_causes = NULL WHERE id = $1",
    )
    .bind(id.uuid())
    .bind(to.as_str())
    .bind(at)
    .bind(version)
    .execute(tx)
    .await?;
    tx.insert_later(
        sql(INSERT_HISTORY)
            .bind(id.uuid())
            .bind(at)
            .bind(&ctx.actor)
            .bind(action.as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(version)
            .bind(reason)
            .bind(&ctx.trace_id)
            .bind(&ctx.actor_name),
    );
    if to == ArtifactStatus::InReview {
        sql("UPDATE artifacts SET shared_at = $2, review_round = review_round + 1 WHERE id = $1")
            .bind(id.uuid())
            .bind(at)
            .execute(tx)
            .await?;
    }
    Ok(version)
}

/// Refuses ([`StoreError::Gated`], with the reasons) to re-approve a stale
/// artifact while something upstream is not approved: in an engagement, the
/// current artifact of each type its pipeline requires; outside one, each of
/// its sources.
pub(crate) async fn check_upstream_approved(
    tx: &mut Tx,
    id: ArtifactId,
    current: &LockedArtifact,
    pipeline: Option<&Pipeline>,
) -> Result<()> {
    let gate = match (pipeline, current.engagement_id) {
        (Some(pipe), Some(eng)) => {
            let upstream = current_in_engagement(tx, eng).await?;
            gating::evaluate(&current.artifact_type, &pipe.requires, |t| {
                upstream.get(t).and_then(|c| status(&c.status).ok())
            })
        }
        _ => {
            let rows: Vec<(String, String)> = sql(
                "SELECT a.type, a.status FROM version_sources vs JOIN artifacts a ON a.id = vs.source_id \
                 WHERE vs.artifact_id = $1 AND vs.version = $2 ORDER BY vs.position",
            )
            .bind(id.uuid())
            .bind(current.version)
            .fetch_all(tx)
            .await?;
            let reasons: Vec<String> = rows
                .iter()
                .filter_map(|(ty, st)| gating::reason(ty, status(st).ok()))
                .collect();
            gating::Gating {
                artifact_type: current.artifact_type.clone(),
                allowed: reasons.is_empty(),
                reasons,
            }
        }
    };
    if gate.allowed {
        Ok(())
    } else {
        Err(StoreError::Gated(gate))
    }
}

/// Creates an artifact at version 1 inside the transaction, as
/// [`Store::create_artifact`](crate::Store::create_artifact) does (client and
/// engagement checks, gating with a pipeline, sources, history, audit).
pub(crate) async fn insert_artifact(
    tx: &mut Tx,
    id: ArtifactId,
    new: &NewArtifact,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<Artifact> {
    // The client must exist: its engagement names it when there is one;
    // else the row's foreign key checks it when the held-back insert runs
    // with the audit record (see `no_client` below), sparing a round trip.
    if let Some(eng) = new.engagement_id {
        let owner: Option<(Uuid,)> = sql("SELECT client_id FROM engagements WHERE id = $1")
            .bind(eng.uuid())
            .fetch_optional(tx)
            .await?;
        if owner.map(|(c,)| c) != Some(new.client_id.uuid()) {
            return Err(FieldError::new(
                "/engagement_id",
                format!("no engagement {eng} for client {}", new.client_id),
            )
            .into());
        }
    }
    let mut sources = new.sources.clone().unwrap_or_default();
    if let (Some(pipe), Some(eng)) = (&new.pipeline, new.engagement_id) {
        let upstream = current_in_engagement(tx, eng.uuid()).await?;
        let gate = gating::evaluate(&new.artifact_type, &pipe.requires, |t| {
            upstream.get(t).and_then(|c| status(&c.status).ok())
        });
        if !gate.allowed {
            return Err(StoreError::Gated(gate));
        }
        if new.sources.is_none() {
            sources = pipe
                .requires
                .iter()
                .filter_map(|t| upstream.get(t))
                .map(|c| SourceRef {
                    artifact_id: ArtifactId::from_uuid(c.id),
                    version: c.version,
                })
                .collect();
        }
    }
    let generator = new
        .pipeline
        .as_ref()
        .map(|p| p.generator.clone())
        .unwrap_or(Value::Null);
    let resolved = resolve_sources(tx, new.client_id.uuid(), &sources).await?;
    let hash = content_hash(&new.content);
    // Held back with its version and history, to run with the audit record.
    tx.insert_later(
        sql(
            "INSERT INTO artifacts (id, client_id, engagement_id, type, title, status, version, \
             content_hash, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $9)",
        )
        .bind(id.uuid())
        .bind(new.client_id.uuid())
        .bind(new.engagement_id.map(|e| e.uuid()))
        .bind(&new.artifact_type)
        .bind(&new.title)
        .bind(ArtifactStatus::Draft.as_str())
        .bind(hash.as_str())
        .bind(&ctx.actor)
        .bind(at),
    );
    let inputs = inputs_hash(&new.artifact_type, &generator, &resolved).to_string();
    let v = VersionInsert {
        artifact_id: id.uuid(),
        version: 1,
        content: new.content.clone(),
        content_hash: hash.to_string(),
        inputs_hash: inputs.clone(),
        provenance: new.provenance.clone(),
        author: ctx.actor.clone(),
        note: new.note.clone(),
        at,
    };
    let h = HistoryInsert {
        actor_name: ctx.actor_name.clone(),
        action: HistoryAction::Created,
        from: None,
        to: Some(ArtifactStatus::Draft),
        reason: new.note.clone(),
        trace_id: ctx.trace_id.clone(),
    };
    insert_version(tx, &v, &resolved, &h);
    index_later(
        tx,
        &SearchDoc::artifact(
            id,
            new.client_id,
            new.engagement_id,
            &new.artifact_type,
            &new.title,
            &new.content,
        ),
        at,
    );
    let entry = LogEntry::new("artifact.create", Some(new.client_id), id)
        .hashes(None, Some(hash.to_string()))
        .event(
            "artifact.created",
            Audience::Staff,
            serde_json::json!({
                "artifact_id": id.to_string(),
                "client_id": new.client_id.to_string(),
                "engagement_id": new.engagement_id.map(|e| e.to_string()),
                "type": new.artifact_type,
                "title": new.title,
                "status": ArtifactStatus::Draft.as_str(),
                "version": 1,
                "content_hash": hash.as_str(),
            }),
        );
    append_log(tx, ctx, at, entry)
        .await
        .map_err(|e| no_client(e, new.client_id))?;
    Ok(Artifact {
        summary: ArtifactSummary {
            id,
            client_id: new.client_id,
            engagement_id: new.engagement_id,
            artifact_type: new.artifact_type.clone(),
            title: new.title.clone(),
            status: ArtifactStatus::Draft,
            version: 1,
            content_hash: hash.to_string(),
            stale_reason: None,
            stale_causes: Vec::new(),
            shared_at: None,
            created_by: ctx.actor.clone(),
            created_at: at,
            updated_at: at,
        },
        content: new.content.clone(),
        inputs_hash: inputs,
        sources: resolved.iter().map(|r| r.source).collect(),
        provenance: new.provenance.clone(),
        note: new.note.clone(),
        journey_id: None,
    })
}

/// A new artifact's statement failing on a foreign key: its client does not
/// exist (the engagement, the sources and the rows it references beside it
/// were found or written in the same transaction), refused like
/// [`require_client`](super::super::require_client) refuses it.
fn no_client(e: StoreError, client: ClientId) -> StoreError {
    match &e {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
            FieldError::new("/client_id", format!("no client {client}")).into()
        }
        _ => e,
    }
}

/// Writes a new version of an artifact inside the transaction, as
/// [`Store::write_content`](crate::Store::write_content) and
/// [`Store::rollback`](crate::Store::rollback) do (lock, version check,
/// editability, sources, history, stale cascade, audit). Answers what the
/// cascade flagged and the new version number.
pub(crate) async fn write_version(
    tx: &mut Tx,
    id: ArtifactId,
    expected_version: i64,
    input: VersionInput,
    ctx: &WriteContext,
) -> Result<Written> {
    let current = lock_artifact(tx, id).await?;
    if current.version != expected_version {
        return Err(StoreError::VersionMismatch {
            expected: expected_version,
            current: current.version,
        });
    }
    let st = status(&current.status)?;
    lifecycle::check_editable(st)?;

    let (content, sources, note, provenance, action, pipeline) = match input {
        VersionInput::New(new) => {
            let sources = match (new.sources, &new.pipeline, current.engagement_id) {
                (Some(s), _, _) => s,
                (None, Some(pipe), Some(eng)) if !pipe.requires.is_empty() => {
                    let upstream = current_in_engagement(tx, eng).await?;
                    pipe.requires
                        .iter()
                        .filter_map(|t| upstream.get(t))
                        .map(|c| SourceRef {
                            artifact_id: ArtifactId::from_uuid(c.id),
                            version: c.version,
                        })
                        .collect()
                }
                _ if !current.has_sources => Vec::new(),
                _ => {
                    let rows: Vec<SourceRow> = sql(SOURCES_OF_VERSION)
                        .bind(id.uuid())
                        .bind(current.version)
                        .fetch_all(tx)
                        .await?;
                    rows.iter().map(SourceRow::source).collect()
                }
            };
            (
                new.content,
                sources,
                new.note,
                new.provenance,
                HistoryAction::ContentUpdated,
                new.pipeline,
            )
        }
        VersionInput::Rollback(to, pipeline) => {
            let old: VersionRow = sql(version_by_number())
                .bind(id.uuid())
                .bind(to)
                .fetch_optional(tx)
                .await?
                .ok_or_else(|| {
                    StoreError::from(FieldError::new(
                        "/to_version",
                        format!(
                            "no version {to}; versions run from 1 to {}",
                            current.version
                        ),
                    ))
                })?;
            let rows: Vec<SourceRow> = sql(SOURCES_OF_VERSION)
                .bind(id.uuid())
                .bind(to)
                .fetch_all(tx)
                .await?;
            let sources = rows.iter().map(SourceRow::source).collect();
            (
                old.content.0,
                sources,
                Some(format!("Rolled back to version {to}")),
                old.provenance,
                HistoryAction::RolledBack,
                pipeline,
            )
        }
    };
    let generator = pipeline.map(|p| p.generator).unwrap_or(Value::Null);
    let resolved = resolve_sources(tx, current.client_id, &sources).await?;
    let hash = content_hash(&content);
    let at = now();
    let version = current.version + 1;
    let v = VersionInsert {
        artifact_id: id.uuid(),
        version,
        inputs_hash: inputs_hash(&current.artifact_type, &generator, &resolved).to_string(),
        content_hash: hash.to_string(),
        content,
        provenance,
        author: ctx.actor.clone(),
        note: note.clone(),
        at,
    };
    let sources: Vec<SourceRef> = resolved.iter().map(|r| r.source).collect();
    let h = HistoryInsert {
        actor_name: ctx.actor_name.clone(),
        action,
        from: None,
        to: None,
        reason: note,
        trace_id: ctx.trace_id.clone(),
    };
    insert_version(tx, &v, &resolved, &h);
    index_later(
        tx,
        &SearchDoc::artifact(
            id,
            ClientId::from_uuid(current.client_id),
            current.engagement_id.map(EngagementId::from_uuid),
            &current.artifact_type,
            &current.title,
            &v.content,
        ),
        at,
    );
    let new_status = if st == ArtifactStatus::Stale {
        ArtifactStatus::Draft
    } else {
        st
    };
    // Held back too: the row is locked, and only the cascade reads it (after
    // the flush below).
    tx.write_later(
        sql(
            "UPDATE artifacts SET version = $2, content_hash = $3, updated_at = $4, status = $5, \
             stale_reason = NULL, stale_causes = NULL WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(version)
        .bind(hash.as_str())
        .bind(at)
        .bind(new_status.as_str()),
        1,
    );
    if new_status != st {
        tx.insert_later(
            sql(INSERT_HISTORY)
                .bind(id.uuid())
                .bind(at)
                .bind(&ctx.actor)
                .bind(HistoryAction::Transition.as_str())
                .bind(st.as_str())
                .bind(new_status.as_str())
                .bind(version)
                .bind("New content written; it needs approving again")
                .bind(&ctx.trace_id)
                .bind(&ctx.actor_name),
        );
    }
    let flagged = if hash.as_str() != current.content_hash && current.has_consumers {
        let root = RootChange {
            artifact_id: id,
            artifact_type: current.artifact_type.clone(),
            from_version: current.version,
            to_version: version,
            generator_changed: false,
        };
        tx.flush_later().await?;
        super::cascade::run(tx, &root, ctx, at).await?
    } else {
        Vec::new()
    };
    let (log_action, event_type) = match action {
        HistoryAction::RolledBack => ("artifact.rollback", "artifact.rolled_back"),
        _ => ("artifact.write", "artifact.updated"),
    };
    let mut data = artifact_data(id, &current, new_status, version, hash.as_str());
    data["flagged_count"] = Value::from(flagged.len());
    data["flagged"] = super::cascade::flagged_json(&flagged);
    let entry = LogEntry::new(log_action, Some(ClientId::from_uuid(current.client_id)), id)
        .hashes(Some(current.content_hash.clone()), Some(hash.to_string()))
        .event(event_type, Audience::Staff, data);
    append_log(tx, ctx, at, entry).await?;
    // Only draft and stale artifacts take content, and neither has a journey.
    let artifact = Artifact {
        summary: ArtifactSummary {
            id,
            client_id: ClientId::from_uuid(current.client_id),
            engagement_id: current.engagement_id.map(EngagementId::from_uuid),
            artifact_type: current.artifact_type,
            title: current.title,
            status: new_status,
            version,
            content_hash: v.content_hash,
            stale_reason: None,
            stale_causes: Vec::new(),
            shared_at: current.shared_at,
            created_by: current.created_by,
            created_at: current.created_at,
            updated_at: at,
        },
        content: v.content,
        inputs_hash: v.inputs_hash,
        sources,
        provenance: v.provenance,
        note: v.note,
        journey_id: None,
    };
    Ok(Written { artifact, flagged })
}
