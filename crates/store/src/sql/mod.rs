//! The one implementation of [`Store`] for both databases.
//!
//! Every statement is written once with `$n` parameters, which both SQLite and
//! PostgreSQL accept, and runs on either through [`db`]: the store's code is
//! compiled once and is not generic. The few dialect differences are spelled
//! out where they occur ([`db::Dialect`]: `FOR UPDATE` exists on PostgreSQL
//! only; SQLite needs none because it has a single writer connection).
//!
//! The steps several writes share are ordinary `async fn`s taking the write
//! transaction ([`Tx`]): idempotency keys ([`idempotency`]), creating an
//! artifact or writing a version with its sources and history
//! ([`artifacts`]), the stale cascade ([`cascade`]), and the audit record and
//! events every write ends with ([`append`]).

use async_trait::async_trait;
use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;
use waymark_domain::artifact::SourceRef;
use waymark_domain::cascade::StaleCause;
use waymark_domain::lifecycle::{self, ArtifactStatus};
use waymark_domain::{
    ArtifactId, ClientId, EngagementId, FieldError, JourneyId, TokenId, UserId, gating,
};

use crate::log::{Audience, NewEvent};
use crate::model::*;
use crate::{Result, Store, StoreError};

pub(crate) mod db;

mod append;
mod artifacts;
mod cascade;
mod idempotency;

use append::{LogEntry, append_log, append_logs, unix_micros};
use artifacts::*;
use db::{Conn, Dialect, Pools, Tx, sql};

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    db: Pools,
    /// Bumped when tasks may have become ready (see `WorkStore::work_signal`).
    work: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once the PostgreSQL `LISTEN` task runs.
    listening: std::sync::OnceLock<()>,
}

/// Refuses (422 at `/client_id`) a client that does not exist, inside the transaction.
pub(super) async fn require_client(tx: &mut Tx, client: ClientId) -> Result<()> {
    let found: Option<(Uuid,)> = sql("SELECT id FROM clients WHERE id = $1")
        .bind(client.uuid())
        .fetch_optional(tx)
        .await?;
    if found.is_none() {
        return Err(FieldError::new("/client_id", format!("no client {client}")).into());
    }
    Ok(())
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
pub(crate) async fn insert_token(
    tx: &mut Tx,
    id: TokenId,
    token: &NewToken,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<()> {
    sql(
        "INSERT INTO tokens (id, name, secret_hash, role, user_id, agent_id, client_id, kind, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.uuid())
    .bind(&token.name)
    .bind(&token.secret_hash)
    .bind(token.role.as_str())
    .bind(token.user_id.map(|u| u.uuid()))
    .bind(&token.agent_id)
    .bind(token.client_id.map(|c| c.uuid()))
    .bind(token.kind.as_str())
    .bind(at)
    .bind(token.expires_at)
    .execute(tx)
    .await?;
    let entry = LogEntry::new("token.create", token.client_id, id).event(
        "token.created",
        Audience::Admin,
        serde_json::json!({
            "token_id": id.to_string(),
            "name": token.name,
            "role": token.role.as_str(),
            "kind": token.kind.as_str(),
            "user_id": token.user_id.map(|u| u.to_string()),
            "agent_id": token.agent_id,
        }),
    );
    append_log(tx, ctx, at, entry).await
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

impl SqlStore {
    pub(crate) fn new(db: Pools) -> Self {
        Self {
            db,
            work: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            listening: std::sync::OnceLock::new(),
        }
    }

    /// Applies the migrations this binary knows that the database lacks.
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Pools::Sqlite { write, .. } => crate::sqlite::MIGRATOR.run(write).await?,
            Pools::Postgres { pool } => crate::postgres::MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// ` FOR UPDATE` on PostgreSQL (see [`Dialect`]).
    fn lock_clause(&self) -> &'static str {
        self.db.backend().for_update()
    }

    /// ` FOR UPDATE SKIP LOCKED` on PostgreSQL (see [`Dialect`]).
    fn skip_locked_clause(&self) -> &'static str {
        self.db.backend().skip_locked()
    }

    async fn write_version(
        &self,
        id: ArtifactId,
        expected_version: i64,
        input: VersionInput,
        ctx: &WriteContext,
    ) -> Result<Written> {
        let mut tx = self.db.begin().await?;
        let (flagged, _) =
            artifacts::write_version(&mut tx, id, expected_version, input, ctx).await?;
        tx.commit().await?;
        Ok(Written {
            artifact: self.get_artifact(id).await?,
            flagged,
        })
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
        self.db.backend()
    }

    async fn optimize(&self) -> Result<()> {
        {
            let p = &mut self.db.writer();

            sql("ANALYZE").execute(p).await?;
        };
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        {
            let p = &mut self.db.reader();

            sql("SELECT 1").execute(p).await?;
        };
        {
            let p = &mut self.db.writer();

            sql("SELECT 1").execute(p).await?;
        };
        Ok(())
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        match &self.db {
            Pools::Sqlite { read, write } => vec![
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
            Pools::Postgres { pool } => vec![PoolStats {
                name: "main",
                size: pool.size(),
                idle: pool.num_idle() as u32,
                max: pool.options().get_max_connections(),
            }],
        }
    }

    async fn close(&self) {
        match &self.db {
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres { pool } => pool.close().await,
        }
    }

    async fn token_by_hash(&self, secret_hash: &[u8]) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"
            ))
            .bind(secret_hash)
            .fetch_optional(p)
            .await?
        };
        row.map(TokenRecord::try_from).transpose()
    }

    async fn replace_named_token(&self, token: NewToken) -> Result<bool> {
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            let live: Vec<(Vec<u8>,)> =
                sql("SELECT secret_hash FROM tokens WHERE name = $1 AND revoked_at IS NULL")
                    .bind(&token.name)
                    .fetch_all(&mut tx)
                    .await?;
            if live.iter().any(|(h,)| *h == token.secret_hash) {
                return Ok(false);
            }
            sql("UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                .bind(&token.name)
                .bind(at)
                .execute(&mut tx)
                .await?;
            // The same secret used again after a rotation: the old row goes.
            sql("DELETE FROM tokens WHERE name = $1 AND secret_hash = $2")
                .bind(&token.name)
                .bind(&token.secret_hash)
                .execute(&mut tx)
                .await?;
            let ctx = WriteContext::new("system");
            let id = TokenId::new();
            insert_token(&mut tx, id, &token, &ctx, at).await?;
            tx.commit().await?;
        };
        Ok(true)
    }

    async fn live_token_named(&self, name: &str) -> Result<bool> {
        let rows: Vec<(Option<OffsetDateTime>,)> = {
            let p = &mut self.db.reader();

            sql("SELECT expires_at FROM tokens WHERE name = $1 AND revoked_at IS NULL")
                .bind(name)
                .fetch_all(p)
                .await?
        };
        let at = now();
        Ok(rows.iter().any(|(e,)| e.is_none_or(|e| e > at)))
    }

    async fn create_client(&self, new: NewClient, ctx: &WriteContext) -> Result<Created<Client>> {
        let id = ClientId::new();
        let at = now();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "client").await? {
                Some(existing)
            } else {
                sql(
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
                .execute(&mut tx)
                .await?;
                idempotency::record(&mut tx, ctx, "client", id.uuid(), at).await?;
                let entry = LogEntry::new("client.create", Some(id), id).event(
                    "client.created",
                    Audience::Staff,
                    serde_json::json!({ "client_id": id.to_string(), "name": new.name }),
                );
                append_log(&mut tx, ctx, at, entry).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(ClientId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_client(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_client(&self, id: ClientId) -> Result<Client> {
        let row: Option<ClientRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
            ))
            .bind(id.uuid())
            .fetch_optional(p)
            .await?
        };
        row.map(Client::from).ok_or_else(|| not_found("client", id))
    }

    async fn list_clients(&self, page: PageRequest) -> Result<Page<Client>> {
        let cursor = id_cursor::<ClientId>(&page)?;
        let rows: Vec<ClientRow> = {
            let p = &mut self.db.reader();

            let mut qb = sql(format!("SELECT {CLIENT_COLUMNS} FROM clients"));
            if let Some(c) = cursor {
                qb.push(" WHERE id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
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
        {
            let mut tx = self.db.begin().await?;
            let row: ClientRow = sql(&lock)
                .bind(id.uuid())
                .fetch_optional(&mut tx)
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
            sql(
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
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("client.update", Some(id), id).event(
                "client.updated",
                Audience::Staff,
                serde_json::json!({ "client_id": id.to_string(), "name": c.name }),
            );
            append_log(&mut tx, ctx, c.updated_at, entry).await?;
            tx.commit().await?;
            Ok(c)
        }
    }

    async fn create_engagement(
        &self,
        new: NewEngagement,
        ctx: &WriteContext,
    ) -> Result<Created<Engagement>> {
        let id = EngagementId::new();
        let at = now();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "engagement").await? {
                Some(existing)
            } else {
                require_client(&mut tx, new.client_id).await?;
                sql(
                    "INSERT INTO engagements (id, client_id, name, pack, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.uuid())
                .bind(new.client_id.uuid())
                .bind(&new.name)
                .bind(&new.pack)
                .bind(at)
                .execute(&mut tx)
                .await?;
                idempotency::record(&mut tx, ctx, "engagement", id.uuid(), at).await?;
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
                append_log(&mut tx, ctx, at, entry).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(EngagementId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_engagement(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_engagement(&self, id: EngagementId) -> Result<Engagement> {
        let row: Option<EngagementRow> = {
            let p = &mut self.db.reader();

            sql("SELECT id, client_id, name, pack, created_at FROM engagements WHERE id = $1")
                .bind(id.uuid())
                .fetch_optional(p)
                .await?
        };
        row.map(Engagement::from)
            .ok_or_else(|| not_found("engagement", id))
    }

    async fn list_engagements(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Engagement>> {
        let cursor = id_cursor::<EngagementId>(&page)?;
        let rows: Vec<EngagementRow> = {
            let p = &mut self.db.reader();

            let mut qb =
                sql("SELECT id, client_id, name, pack, created_at FROM engagements WHERE 1 = 1");
            if let Some(c) = client_id {
                qb.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(c) = cursor {
                qb.push(" AND id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
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
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "artifact").await? {
                Some(existing)
            } else {
                artifacts::create_artifact(&mut tx, id, &new, ctx, at).await?;
                idempotency::record(&mut tx, ctx, "artifact", id.uuid(), at).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(ArtifactId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_artifact(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_artifact(&self, id: ArtifactId) -> Result<Artifact> {
        let row: Option<ArtifactRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {SUMMARY_COLUMNS}, v.content, v.inputs_hash, v.provenance, v.note, \
                 (SELECT j.id FROM journeys j WHERE j.source_artifact_id = a.id) AS journey_id \
                 FROM artifacts a JOIN artifact_versions v \
                 ON v.artifact_id = a.id AND v.version = a.version WHERE a.id = $1"
            ))
            .bind(id.uuid())
            .fetch_optional(p)
            .await?
        };
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
        let rows: Vec<SummaryRow> = {
            let p = &mut self.db.reader();

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
            qb.fetch_all(p).await?
        };
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
        let rows: Vec<VersionRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {VERSION_COLUMNS} FROM artifact_versions \
                 WHERE artifact_id = $1 AND version > $2 ORDER BY version LIMIT $3"
            ))
            .bind(id.uuid())
            .bind(after)
            .bind(limit_plus_one(&page))
            .fetch_all(p)
            .await?
        };
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
        let row: Option<VersionRow> = {
            let p = &mut self.db.reader();

            sql(version_by_number())
                .bind(id.uuid())
                .bind(version)
                .fetch_optional(p)
                .await?
        };
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
        {
            let mut tx = self.db.begin().await?;
            let current = lock_artifact(&mut tx, id).await?;
            let from = status(&current.status)?;
            lifecycle::check_transition(from, to)?;
            let at = now();
            let version = apply_transition(
                &mut tx,
                id,
                &current,
                from,
                to,
                &reason,
                pipeline.as_ref(),
                ctx,
                at,
            )
            .await?;
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
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        self.get_artifact(id).await
    }

    async fn history(&self, id: ArtifactId, page: PageRequest) -> Result<Page<HistoryEntry>> {
        self.artifact_exists(id).await?;
        let after = number_cursor(&page)?;
        let rows: Vec<HistoryRow> = {
            let p = &mut self.db.reader();

            sql(
                "SELECT seq, action, from_status, to_status, version, reason, actor, trace_id, at \
                 FROM artifact_history WHERE artifact_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id.uuid())
            .bind(after)
            .bind(limit_plus_one(&page))
            .fetch_all(p)
            .await?
        };
        let rows = rows
            .into_iter()
            .map(HistoryEntry::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(rows, &page, |h| h.seq.to_string()))
    }

    async fn lineage(&self, id: ArtifactId, limit: usize) -> Result<Lineage> {
        let version = self.get_artifact_version(id).await?;
        let (up, down): (Vec<UpRow>, Vec<DownRow>) = {
            let p = &mut self.db.reader();

            let up = sql(LINEAGE_UPSTREAM)
                .bind(id.uuid())
                .bind(version)
                .fetch_all(p)
                .await?;
            let down = sql(LINEAGE_DOWNSTREAM).bind(id.uuid()).fetch_all(p).await?;
            (up, down)
        };
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
        let rows: Vec<SummaryRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {SUMMARY_COLUMNS} FROM artifacts a WHERE a.engagement_id = $1 \
                 AND a.status NOT IN ('cancelled', 'archived') ORDER BY a.id DESC"
            ))
            .bind(engagement_id.uuid())
            .fetch_all(p)
            .await?
        };
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
        {
            let mut tx = self.db.begin().await?;
            let client: Option<(Uuid,)> = sql("SELECT client_id FROM engagements WHERE id = $1")
                .bind(engagement_id.uuid())
                .fetch_optional(&mut tx)
                .await?;
            let client = client
                .map(|c| ClientId::from_uuid(c.0))
                .ok_or_else(|| not_found("engagement", engagement_id))?;
            sql(
                "INSERT INTO generation_plans (engagement_id, deliverables, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (engagement_id) DO UPDATE SET deliverables = excluded.deliverables, \
                 updated_at = excluded.updated_at",
            )
            .bind(engagement_id.uuid())
            .bind(deliverables.as_ref().map(Json))
            .bind(&ctx.actor)
            .bind(at)
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("plan.save", Some(client), engagement_id).event(
                "plan.saved",
                Audience::Staff,
                serde_json::json!({
                    "engagement_id": engagement_id.to_string(),
                    "deliverables": deliverables,
                }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        self.get_plan(engagement_id)
            .await?
            .ok_or_else(|| not_found("plan", engagement_id))
    }

    async fn get_plan(&self, engagement_id: EngagementId) -> Result<Option<PlanRecord>> {
        let row: Option<PlanRow> = {
            let p = &mut self.db.reader();

            sql(
                "SELECT engagement_id, deliverables, created_by, created_at, updated_at \
                 FROM generation_plans WHERE engagement_id = $1",
            )
            .bind(engagement_id.uuid())
            .fetch_optional(p)
            .await?
        };
        Ok(row.map(|r| PlanRecord {
            engagement_id: EngagementId::from_uuid(r.engagement_id),
            deliverables: r.deliverables.map(|d| d.0),
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    async fn install_pack(&self, pack: InstalledPack, ctx: &WriteContext) -> Result<()> {
        {
            let mut tx = self.db.begin().await?;
            sql(
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
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("pack.install", None, format!("pack:{}", pack.name)).event(
                "pack.installed",
                Audience::Staff,
                serde_json::json!({ "name": pack.name, "version": pack.version, "digest": pack.digest }),
            );
            append_log(&mut tx, ctx, pack.installed_at, entry).await?;
            tx.commit().await?;
        };
        Ok(())
    }

    async fn installed_pack(&self, name: &str) -> Result<Option<InstalledPack>> {
        let row: Option<PackRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {PACK_COLUMNS} FROM installed_packs WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(p)
            .await?
        };
        Ok(row.map(InstalledPack::from))
    }

    async fn installed_pack_digest(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = {
            let p = &mut self.db.reader();

            sql("SELECT digest FROM installed_packs WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        };
        Ok(row.map(|r| r.0))
    }

    async fn list_installed_packs(&self) -> Result<Vec<InstalledPack>> {
        let rows: Vec<PackRow> = {
            let p = &mut self.db.reader();

            sql(format!(
                "SELECT {PACK_COLUMNS} FROM installed_packs ORDER BY name"
            ))
            .fetch_all(p)
            .await?
        };
        Ok(rows.into_iter().map(InstalledPack::from).collect())
    }
}

impl SqlStore {
    async fn get_artifact_version(&self, id: ArtifactId) -> Result<i64> {
        let found: Option<(i64,)> = {
            let p = &mut self.db.reader();

            sql("SELECT version FROM artifacts WHERE id = $1")
                .bind(id.uuid())
                .fetch_optional(p)
                .await?
        };
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

mod journey;
mod log;
mod people;
mod review;
mod work;
