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
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::artifact::SourceRef;
use waymark_domain::cascade::StaleCause;
use waymark_domain::lifecycle::{self, ArtifactStatus};
use waymark_domain::{ArtifactId, ClientId, EngagementId, FieldError, JourneyId, gating};

use crate::log::{Audience, NewEvent};
use crate::model::*;
use crate::{Result, Store, StoreError};

pub(crate) mod db;
pub(crate) mod writer;

mod append;
mod artifacts;
mod clients;
pub mod dump;
mod idempotency;
mod packs;

use append::{LogEntry, append_log, append_logs, unix_micros};
use artifacts::*;
use db::{Conn, Dialect, Pools, Tx, sql};

/// The channel the `events` trigger notifies (PostgreSQL).
const EVENTS_CHANNEL: &str = "waymark_events";

/// [`Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    db: Pools,
    /// Bumped when tasks may have become ready (see `WorkStore::work_signal`).
    work: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Changes whenever events were appended (by any process on
    /// PostgreSQL, through `LISTEN`; by this one on SQLite).
    events: std::sync::Arc<tokio::sync::watch::Sender<i64>>,
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
    page.cursor()
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

/// A list's cursor that is a number (a sequence number), if one was sent.
fn number_cursor(page: &PageRequest) -> Result<Option<i64>> {
    page.cursor()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                FieldError::new(
                    "/cursor",
                    "is not a cursor of this list; pass the next_cursor of the previous page",
                )
                .into()
            })
        })
        .transpose()
}

impl SqlStore {
    pub(crate) fn new(db: Pools) -> Self {
        let events = match &db {
            Pools::Sqlite { write, .. } => write.events(),
            Pools::Postgres { .. } => std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        Self {
            db,
            work: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            events,
            listening: std::sync::OnceLock::new(),
        }
    }

    /// PostgreSQL: starts, once, the task that `LISTEN`s for new work and new
    /// events (any process's: see the `NOTIFY`s of `work/queue.rs` and of the
    /// `events` trigger) and wakes this process's waiters. It reconnects by
    /// itself, waking everyone after each (re)connection, since anything may
    /// have happened meanwhile.
    fn listen(&self) {
        let Pools::Postgres { pool, .. } = &self.db else {
            return;
        };
        self.listening.get_or_init(|| {
            let pool = pool.clone();
            let work = self.work.clone();
            let events = self.events.clone();
            let wake_work = move || work.send_modify(|n| *n = n.wrapping_add(1));
            let wake_events = move || events.send_modify(|n| *n = n.wrapping_add(1));
            tokio::spawn(async move {
                loop {
                    match sqlx::postgres::PgListener::connect_with(&pool).await {
                        Ok(mut listener) => {
                            if listener
                                .listen_all([work::CHANNEL, EVENTS_CHANNEL])
                                .await
                                .is_ok()
                            {
                                wake_work();
                                wake_events();
                                while let Ok(n) = listener.recv().await {
                                    if n.channel() == EVENTS_CHANNEL {
                                        wake_events();
                                    } else {
                                        wake_work();
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot LISTEN on PostgreSQL; retrying");
                        }
                    }
                    if pool.is_closed() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            });
        });
    }

    /// Whether the database holds a Waymark installation (migrations were
    /// applied to it at least once).
    pub async fn holds_data(&self) -> Result<bool> {
        let found: std::result::Result<Option<(i64,)>, StoreError> =
            sql("SELECT version FROM _sqlx_migrations ORDER BY version LIMIT 1")
                .fetch_optional(&mut self.db.reader())
                .await;
        match found {
            Ok(row) => Ok(row.is_some()),
            // No migrations table: nothing of Waymark's here.
            Err(StoreError::Database(sqlx::Error::Database(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Applies the migrations this binary knows that the database lacks.
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Pools::Sqlite { write, .. } => {
                crate::sqlite::MIGRATOR
                    .run(write.exclusive().await?.conn()?)
                    .await?
            }
            Pools::Postgres { pool, .. } => crate::postgres::MIGRATOR.run(pool).await?,
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
        sql("ANALYZE").execute(&mut self.db.writer()).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sql("SELECT 1").execute(&mut self.db.reader()).await?;
        sql("SELECT 1").execute(&mut self.db.writer()).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        match &self.db {
            Pools::Sqlite { read, write, .. } => vec![
                PoolStats {
                    name: "read",
                    size: read.size(),
                    idle: read.num_idle() as u32,
                    max: read.options().get_max_connections(),
                },
                PoolStats {
                    name: "write",
                    size: 1,
                    idle: write.idle() as u32,
                    max: 1,
                },
            ],
            Pools::Postgres { pool, .. } => vec![PoolStats {
                name: "main",
                size: pool.size(),
                idle: pool.num_idle() as u32,
                max: pool.options().get_max_connections(),
            }],
        }
    }

    async fn close(&self) {
        match &self.db {
            Pools::Sqlite { read, write, .. } => {
                write.close().await;
                read.close().await;
            }
            Pools::Postgres { pool, .. } => pool.close().await,
        }
    }

    async fn token_by_hash(&self, secret_hash: &[u8]) -> Result<Option<TokenRecord>> {
        people::token_by_hash(self, secret_hash).await
    }

    async fn replace_named_token(&self, token: NewToken) -> Result<bool> {
        people::replace_named_token(self, token).await
    }

    async fn live_token_named(&self, name: &str) -> Result<bool> {
        people::live_token_named(self, name).await
    }

    async fn create_client(&self, new: NewClient, ctx: &WriteContext) -> Result<Created<Client>> {
        clients::create_client(self, new, ctx).await
    }

    async fn get_client(&self, id: ClientId) -> Result<Client> {
        clients::get_client(self, id).await
    }

    async fn list_clients(&self, page: PageRequest) -> Result<Page<Client>> {
        clients::list_clients(self, page).await
    }

    async fn update_client(
        &self,
        id: ClientId,
        patch: ClientPatch,
        ctx: &WriteContext,
    ) -> Result<Client> {
        clients::update_client(self, id, patch, ctx).await
    }

    async fn create_engagement(
        &self,
        new: NewEngagement,
        ctx: &WriteContext,
    ) -> Result<Created<Engagement>> {
        clients::create_engagement(self, new, ctx).await
    }

    async fn get_engagement(&self, id: EngagementId) -> Result<Engagement> {
        clients::get_engagement(self, id).await
    }

    async fn list_engagements(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Engagement>> {
        clients::list_engagements(self, client_id, page).await
    }

    async fn create_artifact(
        &self,
        new: NewArtifact,
        ctx: &WriteContext,
    ) -> Result<Created<Artifact>> {
        artifacts::create_artifact(self, new, ctx).await
    }

    async fn get_artifact_summary(&self, id: ArtifactId) -> Result<ArtifactSummary> {
        artifacts::get_artifact_summary(self, id).await
    }

    async fn get_artifact(&self, id: ArtifactId) -> Result<Artifact> {
        artifacts::get_artifact(self, id).await
    }

    async fn list_artifacts(
        &self,
        filter: ArtifactFilter,
        page: PageRequest,
    ) -> Result<Page<ArtifactSummary>> {
        artifacts::list_artifacts(self, filter, page).await
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
        artifacts::list_versions(self, id, page).await
    }

    async fn get_version(&self, id: ArtifactId, version: i64) -> Result<Version> {
        artifacts::get_version(self, id, version).await
    }

    async fn transition(
        &self,
        id: ArtifactId,
        to: ArtifactStatus,
        reason: Option<String>,
        pipeline: Option<Pipeline>,
        overridden: bool,
        ctx: &WriteContext,
    ) -> Result<Artifact> {
        artifacts::transition(self, id, to, reason, pipeline, overridden, ctx).await
    }

    async fn history(&self, id: ArtifactId, page: PageRequest) -> Result<Page<HistoryEntry>> {
        artifacts::history(self, id, page).await
    }

    async fn lineage(&self, id: ArtifactId, limit: usize) -> Result<Lineage> {
        artifacts::lineage(self, id, limit).await
    }

    async fn current_artifacts(&self, engagement_id: EngagementId) -> Result<Vec<ArtifactSummary>> {
        artifacts::current_artifacts(self, engagement_id).await
    }

    async fn save_plan(
        &self,
        engagement_id: EngagementId,
        deliverables: Option<Vec<String>>,
        ctx: &WriteContext,
    ) -> Result<PlanRecord> {
        packs::save_plan(self, engagement_id, deliverables, ctx).await
    }

    async fn get_plan(&self, engagement_id: EngagementId) -> Result<Option<PlanRecord>> {
        packs::get_plan(self, engagement_id).await
    }

    async fn install_pack(
        &self,
        pack: InstalledPack,
        changed_generators: &[String],
        ctx: &WriteContext,
    ) -> Result<Vec<Flagged>> {
        packs::install_pack(self, pack, changed_generators, ctx).await
    }

    async fn installed_pack(&self, name: &str) -> Result<Option<InstalledPack>> {
        packs::installed_pack(self, name).await
    }

    async fn installed_pack_digest(&self, name: &str) -> Result<Option<String>> {
        packs::installed_pack_digest(self, name).await
    }

    async fn list_installed_packs(&self) -> Result<Vec<InstalledPack>> {
        packs::list_installed_packs(self).await
    }
}

mod desk;
mod exports;
mod files;
mod journey;
mod log;
mod people;
mod playbook;
mod review;
mod search;
mod work;
