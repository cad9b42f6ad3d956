//! The one implementation of [`Store`] for both databases.
//!
//! Each method's body is written once and compiled twice, once per backend, by
//! the `on_reader!`/`on_writer!` macros: the statements use `$n` parameters,
//! which both SQLite and PostgreSQL accept, and the few dialect differences are
//! spelled out where they occur (`FOR UPDATE` exists on PostgreSQL only; SQLite
//! needs none because it has a single writer connection).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder};
use time::{Date, OffsetDateTime};
use uuid::Uuid;
use waymark_domain::artifact::{ResolvedSource, SourceRef, inputs_hash};
use waymark_domain::audit::{self, AuditRecord};
use waymark_domain::cascade::{self, Consumer, RootChange, StaleCause};
use waymark_domain::content::{ContentHash, content_hash};
use waymark_domain::gating;
use waymark_domain::lifecycle::{self, ArtifactStatus};
use waymark_domain::{
    ArtifactId, ClientId, EngagementId, EventId, FieldError, JourneyId, TokenId, UserId,
};

use crate::log::{Audience, NewEvent};
use crate::model::*;
use crate::{Result, Store, StoreError};

pub(crate) enum Db {
    Sqlite { read: SqlitePool, write: SqlitePool },
    Postgres { pool: PgPool },
}

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    db: Db,
    /// Bumped when tasks may have become ready (see `WorkStore::work_signal`).
    work: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once the PostgreSQL `LISTEN` task runs.
    listening: std::sync::OnceLock<()>,
}

/// Runs `$body` with `$p` bound to the pool that serves reads.
macro_rules! on_reader {
    ($self:ident, |$p:ident| $body:expr) => {
        match &$self.db {
            Db::Sqlite { read, .. } => {
                let $p = read;
                $body
            }
            Db::Postgres { pool } => {
                let $p = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to the pool that serves writes.
macro_rules! on_writer {
    ($self:ident, |$p:ident| $body:expr) => {
        match &$self.db {
            Db::Sqlite { write, .. } => {
                let $p = write;
                $body
            }
            Db::Postgres { pool } => {
                let $p = pool;
                $body
            }
        }
    };
}

/// Looks up an idempotency key inside the transaction: `Some(id)` when the same
/// request already created a record, an error when the key was used differently.
macro_rules! idempotent_replay {
    ($tx:ident, $ctx:expr, $kind:expr) => {{
        let mut found: Option<Uuid> = None;
        if let Some(k) = &$ctx.idempotency {
            let row: Option<(String, String, Uuid)> = sqlx::query_as(
                "SELECT kind, request_hash, resource_id FROM idempotency_keys \
                 WHERE scope = $1 AND key = $2",
            )
            .bind(&k.scope)
            .bind(&k.key)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some((kind, hash, id)) = row {
                if kind != $kind || hash != k.request_hash {
                    return Err(StoreError::IdempotencyMismatch { key: k.key.clone() });
                }
                found = Some(id);
            }
        }
        found
    }};
}

/// Records an idempotency key for the record just created.
macro_rules! idempotent_record {
    ($tx:ident, $ctx:expr, $kind:expr, $id:expr, $now:expr) => {
        if let Some(k) = &$ctx.idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, kind, request_hash, resource_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&k.scope)
            .bind(&k.key)
            .bind($kind)
            .bind(&k.request_hash)
            .bind($id)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Refuses (422 at `/client_id`) a client that does not exist, inside the transaction.
macro_rules! require_client {
    ($tx:ident, $client:expr) => {{
        let client: ClientId = $client;
        let found: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM clients WHERE id = $1")
            .bind(client.uuid())
            .fetch_optional(&mut *$tx)
            .await?;
        if found.is_none() {
            return Err(FieldError::new("/client_id", format!("no client {client}")).into());
        }
    }};
}

/// Resolves sources inside the transaction: each must name an existing version
/// of an artifact of the same client.
macro_rules! resolve_sources {
    ($tx:ident, $client:expr, $sources:expr) => {{
        let mut resolved = Vec::with_capacity($sources.len());
        for (i, s) in $sources.iter().enumerate() {
            let row: Option<(Uuid, String, String)> = sqlx::query_as(
                "SELECT a.client_id, a.type, v.content_hash FROM artifacts a \
                 JOIN artifact_versions v ON v.artifact_id = a.id \
                 WHERE a.id = $1 AND v.version = $2",
            )
            .bind(s.artifact_id.uuid())
            .bind(s.version)
            .fetch_optional(&mut *$tx)
            .await?;
            match row {
                Some((client, ty, hash)) if client == $client => resolved.push(ResolvedSource {
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
        resolved
    }};
}

/// Inserts a version, its sources and a history entry inside the transaction.
macro_rules! insert_version {
    ($tx:ident, $v:expr, $resolved:expr, $history:expr) => {{
        let v: &VersionInsert = $v;
        sqlx::query(
            "INSERT INTO artifact_versions \
             (artifact_id, version, content, content_hash, inputs_hash, provenance, author, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(v.artifact_id)
        .bind(v.version)
        .bind(Json(&v.content))
        .bind(&v.content_hash)
        .bind(&v.inputs_hash)
        .bind(&v.provenance)
        .bind(&v.author)
        .bind(&v.note)
        .bind(v.at)
        .execute(&mut *$tx)
        .await?;
        for (position, s) in $resolved.iter().enumerate() {
            sqlx::query(
                "INSERT INTO version_sources (artifact_id, version, source_id, source_version, position) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(v.artifact_id)
            .bind(v.version)
            .bind(s.source.artifact_id.uuid())
            .bind(s.source.version)
            .bind(position as i32)
            .execute(&mut *$tx)
            .await?;
        }
        let h: &HistoryInsert = $history;
        sqlx::query(INSERT_HISTORY)
        .bind(v.artifact_id)
        .bind(v.at)
        .bind(&v.author)
        .bind(h.action.as_str())
        .bind(h.from.map(ArtifactStatus::as_str))
        .bind(h.to.map(ArtifactStatus::as_str))
        .bind(v.version)
        .bind(&h.reason)
        .bind(&h.trace_id)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// The current artifact of each type in an engagement, read inside the
/// transaction (and, on PostgreSQL, share-locked so gating and the write agree).
macro_rules! current_in_engagement {
    ($tx:ident, $self:ident, $engagement:expr) => {{
        let rows: Vec<CurrentRow> = sqlx::query_as(&format!(
            "SELECT id, type, status, version FROM artifacts \
             WHERE engagement_id = $1 AND status NOT IN ('cancelled', 'archived') \
             ORDER BY id DESC{}",
            $self.share_clause()
        ))
        .bind($engagement)
        .fetch_all(&mut *$tx)
        .await?;
        let mut current: std::collections::HashMap<String, CurrentRow> = Default::default();
        for r in rows {
            current.entry(r.artifact_type.clone()).or_insert(r);
        }
        current
    }};
}

/// The stale cascade from `$root`, inside the transaction: one recursive query
/// finds the candidates, the domain decides, two set-based statements write.
macro_rules! run_cascade {
    ($tx:ident, $self:ident, $root:expr, $ctx:expr, $at:expr) => {{
        let root: &RootChange = $root;
        let rows: Vec<CascadeRow> = sqlx::query_as(CASCADE_CANDIDATES)
            .bind(root.artifact_id.uuid())
            .bind(root.to_version)
            .fetch_all(&mut *$tx)
            .await?;
        let (consumers, info) = consumers_of(rows)?;
        let marks = cascade::plan(root, &consumers);
        let mut flagged = Vec::with_capacity(marks.len());
        if !marks.is_empty() {
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
            let (mark_sql, history_sql) = $self.cascade_statements();
            sqlx::query(mark_sql)
                .bind(&payload)
                .bind($at)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(history_sql)
                .bind(&payload)
                .bind($at)
                .bind(&$ctx.actor)
                .bind(&$ctx.trace_id)
                .execute(&mut *$tx)
                .await?;
            for m in marks {
                flagged.push(Flagged {
                    artifact_type: info.get(&m.artifact_id).map(|i| i.0.clone()).unwrap_or_default(),
                    artifact_id: m.artifact_id,
                    reason: m.reason,
                });
            }
        }
        flagged
    }};
}

/// Reads an artifact's row inside the transaction, locked for this writer
/// (`FOR UPDATE` on PostgreSQL; SQLite has one writer); 404 when missing.
macro_rules! lock_artifact {
    ($tx:ident, $self:ident, $id:expr) => {{
        let row: Option<LockedArtifact> =
            sqlx::query_as(&format!("{LOCK_ARTIFACT}{}", $self.lock_clause()))
                .bind($id.uuid())
                .fetch_optional(&mut *$tx)
                .await?;
        row.ok_or_else(|| not_found("artifact", $id))?
    }};
}

/// Moves a locked artifact from `$from` to `$to` inside the transaction (the
/// lifecycle already checked): re-bases a re-approved stale artifact, starts a
/// review round when it is shared, clears the stale fields, records history.
/// Evaluates to the artifact's version afterwards.
macro_rules! apply_transition {
    ($tx:ident, $self:ident, $id:expr, $current:expr, $from:expr, $to:expr, $reason:expr, $pipeline:expr, $ctx:expr, $at:expr) => {{
        let mut version = $current.version;
        if $from == ArtifactStatus::Stale && $to == ArtifactStatus::Approved {
            // Re-approval: the same content, built on the latest version of each source.
            let rows: Vec<SourceRow> = sqlx::query_as(SOURCES_OF_VERSION)
                .bind($id.uuid())
                .bind($current.version)
                .fetch_all(&mut *$tx)
                .await?;
            let mut rebased = Vec::with_capacity(rows.len());
            let mut moved = Vec::new();
            for r in &rows {
                let (latest, ty): (i64, String) =
                    sqlx::query_as("SELECT version, type FROM artifacts WHERE id = $1")
                        .bind(r.source_id)
                        .fetch_one(&mut *$tx)
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
                let old: VersionRow = sqlx::query_as(&version_by_number())
                    .bind($id.uuid())
                    .bind($current.version)
                    .fetch_one(&mut *$tx)
                    .await?;
                let resolved = resolve_sources!($tx, $current.client_id, rebased);
                let generator = $pipeline.map(|p| p.generator).unwrap_or(Value::Null);
                version += 1;
                let note = format!("Re-approved; sources re-based: {}", moved.join(", "));
                let v = VersionInsert {
                    artifact_id: $id.uuid(),
                    version,
                    inputs_hash: inputs_hash(&$current.artifact_type, &generator, &resolved)
                        .to_string(),
                    content_hash: old.content_hash.clone(),
                    content: old.content.0,
                    provenance: old.provenance,
                    author: $ctx.actor.clone(),
                    note: Some(note.clone()),
                    at: $at,
                };
                let h = HistoryInsert {
                    action: HistoryAction::Rebased,
                    from: None,
                    to: None,
                    reason: Some(note),
                    trace_id: $ctx.trace_id.clone(),
                };
                insert_version!($tx, &v, resolved, &h);
            }
        }
        sqlx::query(
            "UPDATE artifacts SET status = $2, updated_at = $3, version = $4, \
             stale_reason = NULL, stale_causes = NULL WHERE id = $1",
        )
        .bind($id.uuid())
        .bind($to.as_str())
        .bind($at)
        .bind(version)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(INSERT_HISTORY)
            .bind($id.uuid())
            .bind($at)
            .bind(&$ctx.actor)
            .bind(HistoryAction::Transition.as_str())
            .bind($from.as_str())
            .bind($to.as_str())
            .bind(version)
            .bind(&$reason)
            .bind(&$ctx.trace_id)
            .execute(&mut *$tx)
            .await?;
        if $to == ArtifactStatus::InReview {
            sqlx::query(
                "UPDATE artifacts SET shared_at = $2, review_round = review_round + 1 WHERE id = $1",
            )
            .bind($id.uuid())
            .bind($at)
            .execute(&mut *$tx)
            .await?;
        }
        version
    }};
}

/// Creates an artifact at version 1 inside the transaction, as
/// [`Store::create_artifact`] does (client and engagement checks, gating with
/// a pipeline, sources, history, audit).
macro_rules! create_artifact_tx {
    ($tx:ident, $self:ident, $id:expr, $new:expr, $ctx:expr, $at:expr) => {{
        let id: ArtifactId = $id;
        let new: &NewArtifact = $new;
        let ctx: &WriteContext = $ctx;
        let at = $at;
        require_client!($tx, new.client_id);
        if let Some(eng) = new.engagement_id {
            let owner: Option<(Uuid,)> =
                sqlx::query_as("SELECT client_id FROM engagements WHERE id = $1")
                    .bind(eng.uuid())
                    .fetch_optional(&mut *$tx)
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
            let upstream = current_in_engagement!($tx, $self, eng.uuid());
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
        let resolved = resolve_sources!($tx, new.client_id.uuid(), sources);
        let hash = content_hash(&new.content);
        sqlx::query(
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
        .bind(at)
        .execute(&mut *$tx)
        .await?;
        let v = VersionInsert {
            artifact_id: id.uuid(),
            version: 1,
            content: new.content.clone(),
            content_hash: hash.to_string(),
            inputs_hash: inputs_hash(&new.artifact_type, &generator, &resolved).to_string(),
            provenance: new.provenance.clone(),
            author: ctx.actor.clone(),
            note: new.note.clone(),
            at,
        };
        let h = HistoryInsert {
            action: HistoryAction::Created,
            from: None,
            to: Some(ArtifactStatus::Draft),
            reason: new.note.clone(),
            trace_id: ctx.trace_id.clone(),
        };
        insert_version!($tx, &v, resolved, &h);
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
        append_log!($tx, $self, ctx, at, entry);
    }};
}

/// Writes a new version of an artifact inside the transaction, as
/// [`Store::write_content`] and [`Store::rollback`] do (lock, version check,
/// editability, sources, history, stale cascade, audit). Evaluates to what the
/// cascade flagged and the new version number.
macro_rules! write_version_tx {
    ($tx:ident, $self:ident, $id:expr, $expected:expr, $input:expr, $ctx:expr) => {{
        let id: ArtifactId = $id;
        let expected_version: i64 = $expected;
        let input: VersionInput = $input;
        let ctx: &WriteContext = $ctx;
        let current = lock_artifact!($tx, $self, id);
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
                        let upstream = current_in_engagement!($tx, $self, eng);
                        pipe.requires
                            .iter()
                            .filter_map(|t| upstream.get(t))
                            .map(|c| SourceRef {
                                artifact_id: ArtifactId::from_uuid(c.id),
                                version: c.version,
                            })
                            .collect()
                    }
                    _ => {
                        let rows: Vec<SourceRow> = sqlx::query_as(SOURCES_OF_VERSION)
                            .bind(id.uuid())
                            .bind(current.version)
                            .fetch_all(&mut *$tx)
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
                let old: VersionRow = sqlx::query_as(&version_by_number())
                    .bind(id.uuid())
                    .bind(to)
                    .fetch_optional(&mut *$tx)
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
                let rows: Vec<SourceRow> = sqlx::query_as(SOURCES_OF_VERSION)
                    .bind(id.uuid())
                    .bind(to)
                    .fetch_all(&mut *$tx)
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
        let resolved = resolve_sources!($tx, current.client_id, sources);
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
        let h = HistoryInsert {
            action,
            from: None,
            to: None,
            reason: note,
            trace_id: ctx.trace_id.clone(),
        };
        insert_version!($tx, &v, resolved, &h);
        let new_status = if st == ArtifactStatus::Stale {
            ArtifactStatus::Draft
        } else {
            st
        };
        sqlx::query(
            "UPDATE artifacts SET version = $2, content_hash = $3, updated_at = $4, status = $5, \
             stale_reason = NULL, stale_causes = NULL WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(version)
        .bind(hash.as_str())
        .bind(at)
        .bind(new_status.as_str())
        .execute(&mut *$tx)
        .await?;
        if new_status != st {
            sqlx::query(INSERT_HISTORY)
                .bind(id.uuid())
                .bind(at)
                .bind(&ctx.actor)
                .bind(HistoryAction::Transition.as_str())
                .bind(st.as_str())
                .bind(new_status.as_str())
                .bind(version)
                .bind("New content written; it needs approving again")
                .bind(&ctx.trace_id)
                .execute(&mut *$tx)
                .await?;
        }
        let flagged = if hash.as_str() != current.content_hash {
            let root = RootChange {
                artifact_id: id,
                artifact_type: current.artifact_type.clone(),
                from_version: current.version,
                to_version: version,
            };
            run_cascade!($tx, $self, &root, ctx, at)
        } else {
            Vec::new()
        };
        let (log_action, event_type) = match action {
            HistoryAction::RolledBack => ("artifact.rollback", "artifact.rolled_back"),
            _ => ("artifact.write", "artifact.updated"),
        };
        let mut data = artifact_data(id, &current, new_status, version, hash.as_str());
        data["flagged_count"] = Value::from(flagged.len());
        data["flagged"] = Value::Array(
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
        );
        let entry = LogEntry::new(log_action, Some(ClientId::from_uuid(current.client_id)), id)
            .hashes(Some(current.content_hash.clone()), Some(hash.to_string()))
            .event(event_type, Audience::Staff, data);
        append_log!($tx, $self, ctx, at, entry);
        (flagged, version)
    }};
}

/// Appends the audit record of a change, chained to the previous one, and its
/// events, inside the transaction. Locks the log's head row (on PostgreSQL), so
/// it comes last, just before commit: sequence numbers follow commit order.
macro_rules! append_log {
    ($tx:ident, $self:ident, $ctx:expr, $at:expr, $entry:expr) => {
        append_logs!($tx, $self, $ctx, $at, vec![$entry])
    };
}

/// [`append_log!`] for several changes written together (a batch of task
/// completions): one audit record each, chained in order, and every event, with
/// multi-row inserts.
macro_rules! append_logs {
    ($tx:ident, $self:ident, $ctx:expr, $at:expr, $entries:expr) => {{
        let entries: Vec<LogEntry> = $entries;
        let at: OffsetDateTime = $at;
        if !entries.is_empty() {
            let head: (i64, String, i64) = sqlx::query_as(&format!(
                "SELECT audit_seq, audit_hash, event_seq FROM log_head WHERE id = 1{}",
                $self.lock_clause()
            ))
            .fetch_one(&mut *$tx)
            .await?;
            let mut prev = head.1;
            let mut seq = head.0;
            let mut records = Vec::with_capacity(entries.len());
            let mut events = Vec::new();
            for entry in entries {
                seq += 1;
                let trace_id = entry.trace_id.clone().or_else(|| $ctx.trace_id.clone());
                let mut record = AuditRecord {
                    seq,
                    at_us: unix_micros(at),
                    actor: $ctx.actor.clone(),
                    client_id: entry.client_id.map(|c| c.to_string()),
                    action: entry.action.to_string(),
                    target: entry.target,
                    before_hash: entry.before_hash,
                    after_hash: entry.after_hash,
                    trace_id: trace_id.clone(),
                    prev_hash: prev,
                    hash: String::new(),
                };
                record.hash = audit::chain_hash(&record);
                prev = record.hash.clone();
                records.push(record);
                for e in entry.events {
                    events.push((e, trace_id.clone()));
                }
            }
            for chunk in records.chunks(500) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO audit_log (seq, at, actor, client_id, action, target, before_hash, \
                     after_hash, trace_id, prev_hash, hash) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.seq)
                        .push_bind(at)
                        .push_bind(&r.actor)
                        .push_bind(&r.client_id)
                        .push_bind(&r.action)
                        .push_bind(&r.target)
                        .push_bind(&r.before_hash)
                        .push_bind(&r.after_hash)
                        .push_bind(&r.trace_id)
                        .push_bind(&r.prev_hash)
                        .push_bind(&r.hash);
                });
                q.build().execute(&mut *$tx).await?;
            }
            let mut event_seq = head.2;
            let numbered: Vec<(i64, NewEvent, Option<String>)> = events
                .into_iter()
                .map(|(e, t)| {
                    event_seq += 1;
                    (event_seq, e, t)
                })
                .collect();
            for chunk in numbered.chunks(1000) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO events (seq, id, type, subject, time, client_id, audience, data, trace_id) ",
                );
                q.push_values(chunk, |mut b, (n, e, t)| {
                    b.push_bind(*n)
                        .push_bind(EventId::new().uuid())
                        .push_bind(e.event_type)
                        .push_bind(&e.subject)
                        .push_bind(at)
                        .push_bind(e.client_id.map(|c| c.uuid()))
                        .push_bind(e.audience.as_str())
                        .push_bind(Json(&e.data))
                        .push_bind(t);
                });
                q.build().execute(&mut *$tx).await?;
            }
            sqlx::query("UPDATE log_head SET audit_seq = $1, audit_hash = $2, event_seq = $3 WHERE id = 1")
                .bind(seq)
                .bind(&prev)
                .bind(event_seq)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

#[derive(FromRow)]
struct CurrentRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    artifact_type: String,
    status: String,
    version: i64,
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
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id) \
     SELECT unhex(m.value ->> 'id'), $2, $3, 'marked_stale', m.value ->> 'from_status', 'stale', \
            m.value ->> 'version', m.value ->> 'history', $4 \
     FROM json_each($1) AS m ORDER BY m.key";
const POSTGRES_MARK_STALE: &str = "UPDATE artifacts a SET status = 'stale', \
     stale_reason = m.reason, stale_causes = m.causes, updated_at = $2 \
     FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, reason text, causes jsonb) \
     WHERE a.id = m.id";
const POSTGRES_STALE_HISTORY: &str = "INSERT INTO artifact_history \
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id) \
     SELECT m.id, $2, $3, 'marked_stale', m.from_status, 'stale', m.version, m.history, $4 \
     FROM jsonb_to_recordset($1::jsonb) AS m(id uuid, from_status text, version bigint, history text)";

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

struct VersionInsert {
    artifact_id: Uuid,
    version: i64,
    content: Value,
    content_hash: String,
    inputs_hash: String,
    provenance: String,
    author: String,
    note: Option<String>,
    at: OffsetDateTime,
}

struct HistoryInsert {
    action: HistoryAction,
    from: Option<ArtifactStatus>,
    to: Option<ArtifactStatus>,
    reason: Option<String>,
    trace_id: Option<String>,
}

/// What a new version is made of.
enum VersionInput {
    New(NewVersion),
    Rollback(i64, Option<Pipeline>),
}

/// Now, at the microsecond precision both databases keep.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

fn decode_error(what: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(
        format!("unexpected {what} `{value}` in the database").into(),
    ))
}

fn status(s: &str) -> Result<ArtifactStatus> {
    s.parse().map_err(|_| decode_error("artifact status", s))
}

fn limit_plus_one(page: &PageRequest) -> i64 {
    i64::from(page.limit.clamp(1, 200)) + 1
}

/// Cuts a fetched page (limit + 1 rows) down to `limit`, with the cursor of its
/// last item when more follow.
fn paginate<T>(mut rows: Vec<T>, page: &PageRequest, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let limit = page.limit.clamp(1, 200) as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

fn id_cursor<T: std::str::FromStr>(page: &PageRequest) -> Result<Option<T>> {
    page.cursor
        .as_deref()
        .map(|c| {
            c.parse::<T>().map_err(|_| {
                FieldError::new(
                    "/cursor",
                    "is not a cursor of this list; pass the next_cursor of the previous page",
                )
                .into()
            })
        })
        .transpose()
}

fn number_cursor(page: &PageRequest) -> Result<i64> {
    match page.cursor.as_deref() {
        None => Ok(0),
        Some(c) => c.parse::<i64>().map_err(|_| {
            FieldError::new(
                "/cursor",
                "is not a cursor of this list; pass the next_cursor of the previous page",
            )
            .into()
        }),
    }
}

#[derive(FromRow)]
struct ClientRow {
    id: Uuid,
    name: String,
    arr: Option<f64>,
    renewal_date: Option<Date>,
    health_score: Option<f64>,
    risk_score: Option<f64>,
    opportunity_score: Option<f64>,
    owner: Option<String>,
    attributes: Json<Value>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ClientRow> for Client {
    fn from(r: ClientRow) -> Self {
        Client {
            id: ClientId::from_uuid(r.id),
            name: r.name,
            arr: r.arr,
            renewal_date: r.renewal_date,
            health_score: r.health_score,
            risk_score: r.risk_score,
            opportunity_score: r.opportunity_score,
            owner: r.owner,
            attributes: r.attributes.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const CLIENT_COLUMNS: &str = "id, name, arr, renewal_date, health_score, risk_score, \
     opportunity_score, owner, attributes, created_at, updated_at";

#[derive(FromRow)]
struct EngagementRow {
    id: Uuid,
    client_id: Uuid,
    name: String,
    pack: String,
    created_at: OffsetDateTime,
}

impl From<EngagementRow> for Engagement {
    fn from(r: EngagementRow) -> Self {
        Engagement {
            id: EngagementId::from_uuid(r.id),
            client_id: ClientId::from_uuid(r.client_id),
            name: r.name,
            pack: r.pack,
            created_at: r.created_at,
        }
    }
}

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
     (artifact_id, at, actor, action, from_status, to_status, version, reason, trace_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

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

#[derive(FromRow)]
struct HistoryRow {
    seq: i64,
    action: String,
    from_status: Option<String>,
    to_status: Option<String>,
    version: Option<i64>,
    reason: Option<String>,
    actor: String,
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
            trace_id: r.trace_id,
            at: r.at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    secret_hash: Vec<u8>,
    user_id: Option<Uuid>,
    agent_id: Option<String>,
    client_id: Option<Uuid>,
    kind: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, secret_hash, user_id, agent_id, client_id, \
     kind, created_at, expires_at, revoked_at";

/// Inserts a token row inside the transaction, with its audit record.
macro_rules! insert_token {
    ($tx:ident, $self:ident, $id:expr, $token:expr, $ctx:expr, $at:expr) => {{
        let token: &NewToken = $token;
        sqlx::query(
            "INSERT INTO tokens (id, name, secret_hash, role, user_id, agent_id, client_id, kind, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind($id.uuid())
        .bind(&token.name)
        .bind(&token.secret_hash)
        .bind(token.role.as_str())
        .bind(token.user_id.map(|u| u.uuid()))
        .bind(&token.agent_id)
        .bind(token.client_id.map(|c| c.uuid()))
        .bind(token.kind.as_str())
        .bind($at)
        .bind(token.expires_at)
        .execute(&mut *$tx)
        .await?;
        let entry = LogEntry::new("token.create", token.client_id, $id).event(
            "token.created",
            Audience::Admin,
            serde_json::json!({
                "token_id": $id.to_string(),
                "name": token.name,
                "role": token.role.as_str(),
                "kind": token.kind.as_str(),
                "user_id": token.user_id.map(|u| u.to_string()),
                "agent_id": token.agent_id,
            }),
        );
        append_log!($tx, $self, $ctx, $at, entry);
    }};
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(TokenRecord {
            id: TokenId::from_uuid(r.id),
            name: r.name,
            role: Role::parse(&r.role).ok_or_else(|| decode_error("role", &r.role))?,
            secret_hash: r.secret_hash,
            user_id: r.user_id.map(UserId::from_uuid),
            agent_id: r.agent_id,
            client_id: r.client_id.map(ClientId::from_uuid),
            kind: TokenKind::parse(&r.kind).ok_or_else(|| decode_error("token kind", &r.kind))?,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
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
}

/// Locks an artifact's row for a writer (SQLite has one writer and needs no lock).
const LOCK_ARTIFACT: &str = "SELECT client_id, engagement_id, type, title, status, version, \
     content_hash, shared_at, review_round, created_by FROM artifacts WHERE id = $1";

/// One audit record and the events of a change (see `append_log!`).
pub(crate) struct LogEntry {
    pub(crate) action: &'static str,
    /// The trace of this change when it differs from the writer's (a batch of
    /// task completions carries each task's own).
    pub(crate) trace_id: Option<String>,
    pub(crate) client_id: Option<ClientId>,
    pub(crate) target: String,
    pub(crate) before_hash: Option<String>,
    pub(crate) after_hash: Option<String>,
    pub(crate) events: Vec<NewEvent>,
}

impl LogEntry {
    /// A change to `target` of `client_id`, without content hashes or events.
    pub(crate) fn new(
        action: &'static str,
        client_id: Option<ClientId>,
        target: impl std::fmt::Display,
    ) -> Self {
        Self {
            action,
            trace_id: None,
            client_id,
            target: target.to_string(),
            before_hash: None,
            after_hash: None,
            events: Vec::new(),
        }
    }

    pub(crate) fn hashes(mut self, before: Option<String>, after: Option<String>) -> Self {
        self.before_hash = before;
        self.after_hash = after;
        self
    }

    pub(crate) fn event(
        mut self,
        event_type: &'static str,
        audience: Audience,
        data: Value,
    ) -> Self {
        self.events.push(NewEvent {
            event_type,
            subject: self.target.clone(),
            client_id: self.client_id,
            audience,
            data,
        });
        self
    }
}

/// Microseconds since the Unix epoch: the time an audit record's hash covers.
pub(crate) fn unix_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

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

impl SqlStore {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            work: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            listening: std::sync::OnceLock::new(),
        }
    }

    /// Applies the migrations this binary knows that the database lacks.
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite { write, .. } => crate::sqlite::MIGRATOR.run(write).await?,
            Db::Postgres { pool } => crate::postgres::MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    fn lock_clause(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "",
            Db::Postgres { .. } => " FOR UPDATE",
        }
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent claimers take
    /// different rows; nothing on SQLite (one writer).
    fn skip_locked_clause(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "",
            Db::Postgres { .. } => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn share_clause(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "",
            Db::Postgres { .. } => " FOR SHARE",
        }
    }

    fn cascade_statements(&self) -> (&'static str, &'static str) {
        match self.db {
            Db::Sqlite { .. } => (SQLITE_MARK_STALE, SQLITE_STALE_HISTORY),
            Db::Postgres { .. } => (POSTGRES_MARK_STALE, POSTGRES_STALE_HISTORY),
        }
    }

    async fn write_version(
        &self,
        id: ArtifactId,
        expected_version: i64,
        input: VersionInput,
        ctx: &WriteContext,
    ) -> Result<Written> {
        let flagged = on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            let (flagged, _) = write_version_tx!(tx, self, id, expected_version, input, ctx);
            tx.commit().await?;
            flagged
        });
        Ok(Written {
            artifact: self.get_artifact(id).await?,
            flagged,
        })
    }

    async fn sources_of(&self, id: Uuid, from: i64, to: i64) -> Result<Vec<SourceRow>> {
        on_reader!(self, |p| {
            Ok(sqlx::query_as(
                "SELECT version, source_id, source_version FROM version_sources \
                 WHERE artifact_id = $1 AND version >= $2 AND version <= $3 \
                 ORDER BY version, position",
            )
            .bind(id)
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await?)
        })
    }

    async fn artifact_exists(&self, id: ArtifactId) -> Result<()> {
        self.get_artifact_version(id).await.map(|_| ())
    }
}

fn not_found(kind: &'static str, id: impl std::fmt::Display) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_string(),
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    async fn optimize(&self) -> Result<()> {
        on_writer!(self, |p| {
            sqlx::query("ANALYZE").execute(p).await?;
        });
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        on_reader!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        on_writer!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        match &self.db {
            Db::Sqlite { read, write } => vec![
                PoolStats {
                    name: "read",
                    size: read.size(),
                    idle: read.num_idle() as u32,
                    max: read.options().get_max_connections(),
                },
                PoolStats {
                    name: "write",
                    size: write.size(),
                    idle: write.num_idle() as u32,
                    max: write.options().get_max_connections(),
                },
            ],
            Db::Postgres { pool } => vec![PoolStats {
                name: "main",
                size: pool.size(),
                idle: pool.num_idle() as u32,
                max: pool.options().get_max_connections(),
            }],
        }
    }

    async fn close(&self) {
        match &self.db {
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres { pool } => pool.close().await,
        }
    }

    async fn token_by_hash(&self, secret_hash: &[u8]) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"
            ))
            .bind(secret_hash)
            .fetch_optional(p)
            .await?
        });
        row.map(TokenRecord::try_from).transpose()
    }

    async fn replace_named_token(&self, token: NewToken) -> Result<bool> {
        let at = now();
        on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            let live: Vec<(Vec<u8>,)> = sqlx::query_as(
                "SELECT secret_hash FROM tokens WHERE name = $1 AND revoked_at IS NULL",
            )
            .bind(&token.name)
            .fetch_all(&mut *tx)
            .await?;
            if live.iter().any(|(h,)| *h == token.secret_hash) {
                return Ok(false);
            }
            sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                .bind(&token.name)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            // The same secret used again after a rotation: the old row goes.
            sqlx::query("DELETE FROM tokens WHERE name = $1 AND secret_hash = $2")
                .bind(&token.name)
                .bind(&token.secret_hash)
                .execute(&mut *tx)
                .await?;
            let ctx = WriteContext::new("system");
            let id = TokenId::new();
            insert_token!(tx, self, id, &token, &ctx, at);
            tx.commit().await?;
        });
        Ok(true)
    }

    async fn live_token_named(&self, name: &str) -> Result<bool> {
        let rows: Vec<(Option<OffsetDateTime>,)> = on_reader!(self, |p| {
            sqlx::query_as("SELECT expires_at FROM tokens WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .fetch_all(p)
                .await?
        });
        let at = now();
        Ok(rows.iter().any(|(e,)| e.is_none_or(|e| e > at)))
    }

    async fn create_client(&self, new: NewClient, ctx: &WriteContext) -> Result<Created<Client>> {
        let id = ClientId::new();
        let at = now();
        let replayed = on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            if let Some(existing) = idempotent_replay!(tx, ctx, "client") {
                Some(existing)
            } else {
                sqlx::query(
                    "INSERT INTO clients (id, name, arr, renewal_date, health_score, risk_score, \
                     opportunity_score, owner, attributes, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                )
                .bind(id.uuid())
                .bind(&new.name)
                .bind(new.arr)
                .bind(new.renewal_date)
                .bind(new.health_score)
                .bind(new.risk_score)
                .bind(new.opportunity_score)
                .bind(&new.owner)
                .bind(Json(
                    new.attributes
                        .clone()
                        .unwrap_or_else(|| Value::Object(Default::default())),
                ))
                .bind(at)
                .execute(&mut *tx)
                .await?;
                idempotent_record!(tx, ctx, "client", id.uuid(), at);
                let entry = LogEntry::new("client.create", Some(id), id).event(
                    "client.created",
                    Audience::Staff,
                    serde_json::json!({ "client_id": id.to_string(), "name": new.name }),
                );
                append_log!(tx, self, ctx, at, entry);
                tx.commit().await?;
                None
            }
        });
        let record_id = replayed.map(ClientId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_client(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_client(&self, id: ClientId) -> Result<Client> {
        let row: Option<ClientRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
            ))
            .bind(id.uuid())
            .fetch_optional(p)
            .await?
        });
        row.map(Client::from).ok_or_else(|| not_found("client", id))
    }

    async fn list_clients(&self, page: PageRequest) -> Result<Page<Client>> {
        let cursor = id_cursor::<ClientId>(&page)?;
        let rows: Vec<ClientRow> = on_reader!(self, |p| {
            let mut qb = QueryBuilder::new(format!("SELECT {CLIENT_COLUMNS} FROM clients"));
            if let Some(c) = cursor {
                qb.push(" WHERE id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.build_query_as().fetch_all(p).await?
        });
        let rows = rows.into_iter().map(Client::from).collect();
        Ok(paginate(rows, &page, |c| c.id.to_string()))
    }

    async fn update_client(
        &self,
        id: ClientId,
        patch: ClientPatch,
        ctx: &WriteContext,
    ) -> Result<Client> {
        let lock = format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1{}",
            self.lock_clause()
        );
        on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            let row: ClientRow = sqlx::query_as(&lock)
                .bind(id.uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found("client", id))?;
            let mut c = Client::from(row);
            if let Some(v) = patch.name {
                c.name = v;
            }
            if let Some(v) = patch.arr {
                c.arr = v;
            }
            if let Some(v) = patch.renewal_date {
                c.renewal_date = v;
            }
            if let Some(v) = patch.health_score {
                c.health_score = v;
            }
            if let Some(v) = patch.risk_score {
                c.risk_score = v;
            }
            if let Some(v) = patch.opportunity_score {
                c.opportunity_score = v;
            }
            if let Some(v) = patch.owner {
                c.owner = v;
            }
            if let Some(v) = patch.attributes {
                c.attributes = v;
            }
            c.updated_at = now();
            sqlx::query(
                "UPDATE clients SET name = $2, arr = $3, renewal_date = $4, health_score = $5, \
                 risk_score = $6, opportunity_score = $7, owner = $8, attributes = $9, updated_at = $10 \
                 WHERE id = $1",
            )
            .bind(id.uuid())
            .bind(&c.name)
            .bind(c.arr)
            .bind(c.renewal_date)
            .bind(c.health_score)
            .bind(c.risk_score)
            .bind(c.opportunity_score)
            .bind(&c.owner)
            .bind(Json(&c.attributes))
            .bind(c.updated_at)
            .execute(&mut *tx)
            .await?;
            let entry = LogEntry::new("client.update", Some(id), id).event(
                "client.updated",
                Audience::Staff,
                serde_json::json!({ "client_id": id.to_string(), "name": c.name }),
            );
            append_log!(tx, self, ctx, c.updated_at, entry);
            tx.commit().await?;
            Ok(c)
        })
    }

    async fn create_engagement(
        &self,
        new: NewEngagement,
        ctx: &WriteContext,
    ) -> Result<Created<Engagement>> {
        let id = EngagementId::new();
        let at = now();
        let replayed = on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            if let Some(existing) = idempotent_replay!(tx, ctx, "engagement") {
                Some(existing)
            } else {
                require_client!(tx, new.client_id);
                sqlx::query(
                    "INSERT INTO engagements (id, client_id, name, pack, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.uuid())
                .bind(new.client_id.uuid())
                .bind(&new.name)
                .bind(&new.pack)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                idempotent_record!(tx, ctx, "engagement", id.uuid(), at);
                let entry = LogEntry::new("engagement.create", Some(new.client_id), id).event(
                    "engagement.created",
                    Audience::Staff,
                    serde_json::json!({
                        "engagement_id": id.to_string(),
                        "client_id": new.client_id.to_string(),
                        "name": new.name,
                        "pack": new.pack,
                    }),
                );
                append_log!(tx, self, ctx, at, entry);
                tx.commit().await?;
                None
            }
        });
        let record_id = replayed.map(EngagementId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_engagement(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_engagement(&self, id: EngagementId) -> Result<Engagement> {
        let row: Option<EngagementRow> = on_reader!(self, |p| {
            sqlx::query_as(
                "SELECT id, client_id, name, pack, created_at FROM engagements WHERE id = $1",
            )
            .bind(id.uuid())
            .fetch_optional(p)
            .await?
        });
        row.map(Engagement::from)
            .ok_or_else(|| not_found("engagement", id))
    }

    async fn list_engagements(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Engagement>> {
        let cursor = id_cursor::<EngagementId>(&page)?;
        let rows: Vec<EngagementRow> = on_reader!(self, |p| {
            let mut qb = QueryBuilder::new(
                "SELECT id, client_id, name, pack, created_at FROM engagements WHERE 1 = 1",
            );
            if let Some(c) = client_id {
                qb.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(c) = cursor {
                qb.push(" AND id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.build_query_as().fetch_all(p).await?
        });
        let rows = rows.into_iter().map(Engagement::from).collect();
        Ok(paginate(rows, &page, |e| e.id.to_string()))
    }

    async fn create_artifact(
        &self,
        new: NewArtifact,
        ctx: &WriteContext,
    ) -> Result<Created<Artifact>> {
        let id = ArtifactId::new();
        let at = now();
        let replayed = on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            if let Some(existing) = idempotent_replay!(tx, ctx, "artifact") {
                Some(existing)
            } else {
                create_artifact_tx!(tx, self, id, &new, ctx, at);
                idempotent_record!(tx, ctx, "artifact", id.uuid(), at);
                tx.commit().await?;
                None
            }
        });
        let record_id = replayed.map(ArtifactId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_artifact(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_artifact(&self, id: ArtifactId) -> Result<Artifact> {
        let row: Option<ArtifactRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {SUMMARY_COLUMNS}, v.content, v.inputs_hash, v.provenance, v.note, \
                 (SELECT j.id FROM journeys j WHERE j.source_artifact_id = a.id) AS journey_id \
                 FROM artifacts a JOIN artifact_versions v \
                 ON v.artifact_id = a.id AND v.version = a.version WHERE a.id = $1"
            ))
            .bind(id.uuid())
            .fetch_optional(p)
            .await?
        });
        let row = row.ok_or_else(|| not_found("artifact", id))?;
        let version = row.summary.version;
        let sources = self.sources_of(id.uuid(), version, version).await?;
        Ok(Artifact {
            summary: row.summary.try_into()?,
            content: row.content.0,
            inputs_hash: row.inputs_hash,
            sources: sources.iter().map(SourceRow::source).collect(),
            provenance: row.provenance,
            note: row.note,
            journey_id: row.journey_id.map(JourneyId::from_uuid),
        })
    }

    async fn list_artifacts(
        &self,
        filter: ArtifactFilter,
        page: PageRequest,
    ) -> Result<Page<ArtifactSummary>> {
        let cursor = id_cursor::<ArtifactId>(&page)?;
        let rows: Vec<SummaryRow> = on_reader!(self, |p| {
            let mut qb = QueryBuilder::new(format!(
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
                for word in q.split_whitespace().take(8) {
                    let escaped = word
                        .to_lowercase()
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    qb.push(" AND LOWER(a.title) LIKE ")
                        .push_bind(format!("%{escaped}%"))
                        .push(" ESCAPE '\\'");
                }
            }
            if let Some(c) = cursor {
                qb.push(" AND a.id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY a.id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.build_query_as().fetch_all(p).await?
        });
        let rows = rows
            .into_iter()
            .map(ArtifactSummary::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, &page, |a| a.id.to_string()))
    }

    async fn write_content(
        &self,
        id: ArtifactId,
        expected_version: i64,
        write: NewVersion,
        ctx: &WriteContext,
    ) -> Result<Written> {
        self.write_version(id, expected_version, VersionInput::New(write), ctx)
            .await
    }

    async fn rollback(
        &self,
        id: ArtifactId,
        expected_version: i64,
        to_version: i64,
        pipeline: Option<Pipeline>,
        ctx: &WriteContext,
    ) -> Result<Written> {
        self.write_version(
            id,
            expected_version,
            VersionInput::Rollback(to_version, pipeline),
            ctx,
        )
        .await
    }

    async fn list_versions(&self, id: ArtifactId, page: PageRequest) -> Result<Page<Version>> {
        self.artifact_exists(id).await?;
        let after = number_cursor(&page)?;
        let rows: Vec<VersionRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {VERSION_COLUMNS} FROM artifact_versions \
                 WHERE artifact_id = $1 AND version > $2 ORDER BY version LIMIT $3"
            ))
            .bind(id.uuid())
            .bind(after)
            .bind(limit_plus_one(&page))
            .fetch_all(p)
            .await?
        });
        let (lo, hi) = match (rows.first(), rows.last()) {
            (Some(f), Some(l)) => (f.version, l.version),
            _ => (1, 0),
        };
        let sources = self.sources_of(id.uuid(), lo, hi).await?;
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

    async fn get_version(&self, id: ArtifactId, version: i64) -> Result<Version> {
        let row: Option<VersionRow> = on_reader!(self, |p| {
            sqlx::query_as(&version_by_number())
                .bind(id.uuid())
                .bind(version)
                .fetch_optional(p)
                .await?
        });
        let Some(row) = row else {
            self.artifact_exists(id).await?;
            return Err(not_found("version", format!("{version} of artifact {id}")));
        };
        let sources = self.sources_of(id.uuid(), version, version).await?;
        Ok(row.into_version(sources.iter().map(SourceRow::source).collect()))
    }

    async fn transition(
        &self,
        id: ArtifactId,
        to: ArtifactStatus,
        reason: Option<String>,
        pipeline: Option<Pipeline>,
        ctx: &WriteContext,
    ) -> Result<Artifact> {
        on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            let current = lock_artifact!(tx, self, id);
            let from = status(&current.status)?;
            lifecycle::check_transition(from, to)?;
            let at = now();
            let version =
                apply_transition!(tx, self, id, current, from, to, reason, pipeline, ctx, at);
            let entry = transition_entry(
                id,
                &current,
                from,
                to,
                version,
                &reason,
                "artifact.transition",
                None,
            );
            append_log!(tx, self, ctx, at, entry);
            tx.commit().await?;
        });
        self.get_artifact(id).await
    }

    async fn history(&self, id: ArtifactId, page: PageRequest) -> Result<Page<HistoryEntry>> {
        self.artifact_exists(id).await?;
        let after = number_cursor(&page)?;
        let rows: Vec<HistoryRow> = on_reader!(self, |p| {
            sqlx::query_as(
                "SELECT seq, action, from_status, to_status, version, reason, actor, trace_id, at \
                 FROM artifact_history WHERE artifact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id.uuid())
            .bind(after)
            .bind(limit_plus_one(&page))
            .fetch_all(p)
            .await?
        });
        let rows = rows
            .into_iter()
            .map(HistoryEntry::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, &page, |h| h.seq.to_string()))
    }

    async fn lineage(&self, id: ArtifactId, limit: usize) -> Result<Lineage> {
        let version = self.get_artifact_version(id).await?;
        let (up, down): (Vec<UpRow>, Vec<DownRow>) = on_reader!(self, |p| {
            let up = sqlx::query_as(LINEAGE_UPSTREAM)
                .bind(id.uuid())
                .bind(version)
                .fetch_all(p)
                .await?;
            let down = sqlx::query_as(LINEAGE_DOWNSTREAM)
                .bind(id.uuid())
                .fetch_all(p)
                .await?;
            (up, down)
        });
        let root = (id.uuid(), version);
        // Upstream nodes are (artifact, version) pairs; depth by breadth-first search.
        let mut up_nodes = Vec::new();
        let mut depth_of: std::collections::HashMap<(Uuid, i64), i64> =
            std::collections::HashMap::from([(root, 0)]);
        let mut by_consumer: std::collections::HashMap<(Uuid, i64), Vec<&UpRow>> =
            std::collections::HashMap::new();
        for r in &up {
            by_consumer
                .entry((r.via_id, r.via_version))
                .or_default()
                .push(r);
        }
        let mut frontier = vec![root];
        let mut d = 0;
        while !frontier.is_empty() && up_nodes.len() <= limit {
            d += 1;
            let mut next = Vec::new();
            for consumer in &frontier {
                for r in by_consumer.get(consumer).into_iter().flatten() {
                    let key = (r.source_id, r.source_version);
                    if depth_of.contains_key(&key) {
                        continue;
                    }
                    depth_of.insert(key, d);
                    next.push(key);
                    up_nodes.push(LineageNode {
                        artifact_id: ArtifactId::from_uuid(r.source_id),
                        artifact_type: r.artifact_type.clone(),
                        title: r.title.clone(),
                        status: status(&r.status)?,
                        version: r.source_version,
                        latest_version: r.latest_version,
                        depth: d,
                        via: SourceRef {
                            artifact_id: ArtifactId::from_uuid(r.via_id),
                            version: r.via_version,
                        },
                    });
                }
            }
            frontier = next;
        }
        // Downstream nodes are artifacts at their latest version.
        let mut by_via: std::collections::HashMap<Uuid, Vec<&DownRow>> =
            std::collections::HashMap::new();
        for r in &down {
            by_via.entry(r.via_id).or_default().push(r);
        }
        let mut down_nodes = Vec::new();
        let mut seen: std::collections::HashSet<Uuid> = std::collections::HashSet::from([root.0]);
        let mut frontier = vec![root.0];
        let mut d = 0;
        while !frontier.is_empty() && down_nodes.len() <= limit {
            d += 1;
            let mut next = Vec::new();
            for via in &frontier {
                for r in by_via.get(via).into_iter().flatten() {
                    if !seen.insert(r.id) {
                        continue;
                    }
                    next.push(r.id);
                    down_nodes.push(LineageNode {
                        artifact_id: ArtifactId::from_uuid(r.id),
                        artifact_type: r.artifact_type.clone(),
                        title: r.title.clone(),
                        status: status(&r.status)?,
                        version: r.version,
                        latest_version: r.version,
                        depth: d,
                        via: SourceRef {
                            artifact_id: ArtifactId::from_uuid(r.via_id),
                            version: r.via_version,
                        },
                    });
                }
            }
            frontier = next;
        }
        let truncated = up_nodes.len() > limit || down_nodes.len() > limit;
        up_nodes.truncate(limit);
        down_nodes.truncate(limit);
        Ok(Lineage {
            artifact_id: id,
            version,
            upstream: up_nodes,
            downstream: down_nodes,
            truncated,
        })
    }

    async fn current_artifacts(&self, engagement_id: EngagementId) -> Result<Vec<ArtifactSummary>> {
        let rows: Vec<SummaryRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE a.engagement_id = $1 \
                 AND a.status NOT IN ('cancelled', 'archived') ORDER BY a.id DESC"
            ))
            .bind(engagement_id.uuid())
            .fetch_all(p)
            .await?
        });
        let mut seen = std::collections::HashSet::new();
        rows.into_iter()
            .filter(|r| seen.insert(r.artifact_type.clone()))
            .map(ArtifactSummary::try_from)
            .collect()
    }

    async fn save_plan(
        &self,
        engagement_id: EngagementId,
        deliverables: Option<Vec<String>>,
        ctx: &WriteContext,
    ) -> Result<PlanRecord> {
        let at = now();
        on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            let client: Option<(Uuid,)> =
                sqlx::query_as("SELECT client_id FROM engagements WHERE id = $1")
                    .bind(engagement_id.uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            let client = client
                .map(|c| ClientId::from_uuid(c.0))
                .ok_or_else(|| not_found("engagement", engagement_id))?;
            sqlx::query(
                "INSERT INTO generation_plans (engagement_id, deliverables, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (engagement_id) DO UPDATE SET deliverables = excluded.deliverables, \
                 updated_at = excluded.updated_at",
            )
            .bind(engagement_id.uuid())
            .bind(deliverables.as_ref().map(Json))
            .bind(&ctx.actor)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let entry = LogEntry::new("plan.save", Some(client), engagement_id).event(
                "plan.saved",
                Audience::Staff,
                serde_json::json!({
                    "engagement_id": engagement_id.to_string(),
                    "deliverables": deliverables,
                }),
            );
            append_log!(tx, self, ctx, at, entry);
            tx.commit().await?;
        });
        self.get_plan(engagement_id)
            .await?
            .ok_or_else(|| not_found("plan", engagement_id))
    }

    async fn get_plan(&self, engagement_id: EngagementId) -> Result<Option<PlanRecord>> {
        let row: Option<PlanRow> = on_reader!(self, |p| {
            sqlx::query_as(
                "SELECT engagement_id, deliverables, created_by, created_at, updated_at \
                 FROM generation_plans WHERE engagement_id = $1",
            )
            .bind(engagement_id.uuid())
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|r| PlanRecord {
            engagement_id: EngagementId::from_uuid(r.engagement_id),
            deliverables: r.deliverables.map(|d| d.0),
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    async fn install_pack(&self, pack: InstalledPack, ctx: &WriteContext) -> Result<()> {
        on_writer!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO installed_packs (name, version, digest, files, installed_by, installed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, digest = excluded.digest, \
                 files = excluded.files, installed_by = excluded.installed_by, \
                 installed_at = excluded.installed_at",
            )
            .bind(&pack.name)
            .bind(&pack.version)
            .bind(&pack.digest)
            .bind(Json(&pack.files))
            .bind(&pack.installed_by)
            .bind(pack.installed_at)
            .execute(&mut *tx)
            .await?;
            let entry = LogEntry::new("pack.install", None, format!("pack:{}", pack.name)).event(
                "pack.installed",
                Audience::Staff,
                serde_json::json!({ "name": pack.name, "version": pack.version, "digest": pack.digest }),
            );
            append_log!(tx, self, ctx, pack.installed_at, entry);
            tx.commit().await?;
        });
        Ok(())
    }

    async fn installed_pack(&self, name: &str) -> Result<Option<InstalledPack>> {
        let row: Option<PackRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {PACK_COLUMNS} FROM installed_packs WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(InstalledPack::from))
    }

    async fn installed_pack_digest(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_reader!(self, |p| {
            sqlx::query_as("SELECT digest FROM installed_packs WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    async fn list_installed_packs(&self) -> Result<Vec<InstalledPack>> {
        let rows: Vec<PackRow> = on_reader!(self, |p| {
            sqlx::query_as(&format!(
                "SELECT {PACK_COLUMNS} FROM installed_packs ORDER BY name"
            ))
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(InstalledPack::from).collect())
    }
}

impl SqlStore {
    async fn get_artifact_version(&self, id: ArtifactId) -> Result<i64> {
        let found: Option<(i64,)> = on_reader!(self, |p| {
            sqlx::query_as("SELECT version FROM artifacts WHERE id = $1")
                .bind(id.uuid())
                .fetch_optional(p)
                .await?
        });
        found.map(|v| v.0).ok_or_else(|| not_found("artifact", id))
    }
}

/// Every source edge upstream of version `$2` of `$1`, at the exact versions used.
const LINEAGE_UPSTREAM: &str = "WITH RECURSIVE up(id, version) AS ( \
       SELECT source_id, source_version FROM version_sources WHERE artifact_id = $1 AND version = $2 \
       UNION \
       SELECT vs.source_id, vs.source_version FROM up \
       JOIN version_sources vs ON vs.artifact_id = up.id AND vs.version = up.version \
     ) \
     SELECT vs.artifact_id AS via_id, vs.version AS via_version, vs.source_id, vs.source_version, \
            a.type, a.title, a.status, a.version AS latest_version \
     FROM version_sources vs JOIN artifacts a ON a.id = vs.source_id \
     WHERE (vs.artifact_id = $1 AND vs.version = $2) \
        OR EXISTS (SELECT 1 FROM up WHERE up.id = vs.artifact_id AND up.version = vs.version) \
     ORDER BY vs.artifact_id, vs.version, vs.position";

/// Every artifact whose latest version was built on `$1`, or on one of those,
/// with the edges of its latest version inside that set.
const LINEAGE_DOWNSTREAM: &str = "WITH RECURSIVE down(id) AS ( \
       SELECT a.id FROM version_sources vs CROSS JOIN artifacts a \
       WHERE vs.source_id = $1 AND a.id = vs.artifact_id AND a.version = vs.version \
       UNION \
       SELECT a.id FROM down CROSS JOIN version_sources vs CROSS JOIN artifacts a \
       WHERE vs.source_id = down.id AND a.id = vs.artifact_id AND a.version = vs.version \
     ) \
     SELECT a.id, a.type, a.title, a.status, a.version, vs.source_id AS via_id, \
            vs.source_version AS via_version \
     FROM down CROSS JOIN artifacts a CROSS JOIN version_sources vs \
     WHERE a.id = down.id AND vs.artifact_id = a.id AND vs.version = a.version \
       AND (vs.source_id = $1 OR vs.source_id IN (SELECT id FROM down)) \
     ORDER BY a.id, vs.position";

#[derive(FromRow)]
struct UpRow {
    via_id: Uuid,
    via_version: i64,
    source_id: Uuid,
    source_version: i64,
    #[sqlx(rename = "type")]
    artifact_type: String,
    title: String,
    status: String,
    latest_version: i64,
}

#[derive(FromRow)]
struct DownRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    artifact_type: String,
    title: String,
    status: String,
    version: i64,
    via_id: Uuid,
    via_version: i64,
}

#[derive(FromRow)]
struct PlanRow {
    engagement_id: Uuid,
    deliverables: Option<Json<Vec<String>>>,
    created_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

const PACK_COLUMNS: &str = "name, version, digest, files, installed_by, installed_at";

#[derive(FromRow)]
struct PackRow {
    name: String,
    version: String,
    digest: String,
    files: Json<std::collections::BTreeMap<String, String>>,
    installed_by: String,
    installed_at: OffsetDateTime,
}

impl From<PackRow> for InstalledPack {
    fn from(r: PackRow) -> Self {
        InstalledPack {
            name: r.name,
            version: r.version,
            digest: r.digest,
            files: r.files.0,
            installed_by: r.installed_by,
            installed_at: r.installed_at,
        }
    }
}

mod log;
mod people;
mod review;
#[macro_use]
mod work;
mod journey;
