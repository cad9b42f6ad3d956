//! The last step of every write: its audit record, chained to the previous
//! one, and its events.
//!
//! Records and events are numbered in one order, the order they become
//! visible: an event reader that has seen event n has seen every event
//! before it and never skips one, and each audit record is chained to the
//! previous one's hash. The heads are the last rows of `audit_log` and
//! `events` (`log_head` keeps the genesis hash and is the sealers' lock).
//!
//! - **SQLite** has one writer: a write numbers, chains and inserts its own
//!   records and events in its transaction, in one statement of two inserts
//!   (with the writes it held back, such as its artifact, version and
//!   history rows: see [`Tx::write_later`]).
//!   It numbers after the heads this process's last write committed, and
//!   the inserts only take effect if the log's heads are still those (a
//!   guard in each); when another process wrote meanwhile they insert
//!   nothing, and the write reads the heads and inserts again.
//! - **PostgreSQL** has many: numbering in the writer's transaction would make
//!   every writer of every client wait on one lock until it commits. A write
//!   instead queues its entries (`log_pending`, one row per transaction) and
//!   commits without a global lock; a sealer then takes the queued rows that
//!   committed, in order, under the `log_head` row lock, numbers and chains
//!   them, and moves them into `audit_log` and `events` in one transaction
//!   (any number of processes may seal; they take turns). One statement
//!   queues the entries (with the writes the write held back as its `WITH`
//!   queries, see [`Tx::write_later`]) unless it finds the lock free (`SKIP LOCKED`: it
//!   never waits): then it takes the lock instead, and the write seals its
//!   own entries and holds the lock until it commits, so one writer at a
//!   time, or the engine's committer, needs no pass; a later pass numbers
//!   after it. Each process's
//!   sealer wakes after its own logged commits; every reader of the log first
//!   seals what committed before it asked ([`Sealer::seal_now`]), so reading
//!   your own writes holds.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::audit::{self, AuditRecord};
use waymark_domain::{ClientId, EventId};

use super::db::{Conn, Heads, Held, Sql, Tx, sql};
use crate::log::{Audience, NewEvent};
use crate::{Backend, Result, StoreError, WriteContext};

/// One audit record and the events of a change (see [`append_logs`]).
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

/// Appends the audit record and events of one change (see [`append_logs`]).
pub(crate) async fn append_log(
    tx: &mut Tx,
    ctx: &WriteContext,
    at: OffsetDateTime,
    entry: LogEntry,
) -> Result<()> {
    append_logs(tx, ctx, at, vec![entry]).await
}

/// Appends, with the write, one audit record per change (chained in order)
/// and every event: numbered and inserted now on SQLite, queued for the
/// sealer on PostgreSQL (see the module docs).
pub(crate) async fn append_logs(
    tx: &mut Tx,
    ctx: &WriteContext,
    at: OffsetDateTime,
    entries: Vec<LogEntry>,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let batch = Batch {
        at,
        actor: ctx.actor.clone(),
        actor_name: ctx.actor_name.clone(),
        entries: entries.into_iter().map(|e| e.queued(ctx)).collect(),
    };
    match tx.backend() {
        Backend::Sqlite => seal(tx, vec![batch]).await,
        Backend::Postgres => {
            // One statement queues the entries, with the writes the write
            // held back. A write alone in its process takes the log instead
            // when it finds it free, and seals its entries itself, holding
            // the log until it commits (others queue meanwhile, never wait):
            // one write at a time, or the engine's committer, then needs no
            // pass. Beside other writes it only queues (two round trips
            // fewer), and one pass seals what they all queued.
            let alone = tx.alone();
            let mut queue = sql("INSERT INTO log_pending (batch) SELECT ");
            queue.push_bind(Json(&batch));
            let free = alone.then(|| {
                queue.push(" WHERE NOT EXISTS (SELECT 1 FROM free)");
                sql("SELECT id FROM log_head WHERE id = 1 FOR UPDATE SKIP LOCKED")
            });
            let q = Held::before(tx.take_later(), free.map(|f| ("free", f)), queue);
            if q.execute(tx).await? == 0 {
                return seal(tx, vec![batch]).await;
            }
            tx.logged();
            Ok(())
        }
    }
}

/// The entries one write transaction appended, before they are numbered.
#[derive(Serialize, Deserialize)]
struct Batch {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    actor: String,
    #[serde(default)]
    actor_name: Option<String>,
    entries: Vec<Queued>,
}

/// One change's audit record and events, before they are numbered.
#[derive(Serialize, Deserialize)]
struct Queued {
    action: String,
    trace_id: Option<String>,
    client_id: Option<String>,
    target: String,
    before_hash: Option<String>,
    after_hash: Option<String>,
    events: Vec<QueuedEvent>,
}

#[derive(Serialize, Deserialize)]
struct QueuedEvent {
    event_type: String,
    subject: String,
    client_id: Option<Uuid>,
    audience: String,
    data: Value,
}

impl LogEntry {
    fn queued(self, ctx: &WriteContext) -> Queued {
        Queued {
            action: self.action.to_owned(),
            trace_id: self.trace_id.or_else(|| ctx.trace_id.clone()),
            client_id: self.client_id.map(|c| c.to_string()),
            target: self.target,
            before_hash: self.before_hash,
            after_hash: self.after_hash,
            events: self
                .events
                .into_iter()
                .map(|e| QueuedEvent {
                    event_type: e.event_type.to_owned(),
                    subject: e.subject,
                    client_id: e.client_id.map(|c| c.uuid()),
                    audience: e.audience.as_str().to_owned(),
                    data: e.data,
                })
                .collect(),
        }
    }
}

/// The last audit record's number and hash (the genesis hash before the
/// first), and the last event's number.
pub(crate) async fn heads(conn: &mut impl Conn) -> Result<Heads> {
    sql("SELECT \
              COALESCE((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0), \
              COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), \
                       (SELECT audit_hash FROM log_head WHERE id = 1)), \
              COALESCE((SELECT seq FROM events ORDER BY seq DESC LIMIT 1), 0)")
    .fetch_one(conn)
    .await
}

/// Numbers and chains `batches` after the heads, in order, and inserts their
/// records and events. The caller holds the log: SQLite's one writer, or the
/// `log_head` row lock on PostgreSQL.
async fn seal(tx: &mut Tx, batches: Vec<Batch>) -> Result<()> {
    // SQLite: the inserts the write held back go in the same statement.
    let mut later = tx.take_later();
    if let Some(cached) = tx.cached_heads() {
        // SQLite: number after the heads this process's last write left,
        // guarded; nothing is inserted if another process wrote since.
        let (records, events) = chain(cached.clone(), &batches);
        if fits_one_statement(&records, &events) {
            let (mut q, held) = Held::joined(std::mem::take(&mut later));
            q.then(guarded(&records, &events, &cached));
            let inserted = q.execute(tx).await?;
            if inserted == held + (records.len() + events.len()) as u64 {
                tx.sealed(after(&cached, &records, &events));
                return Ok(());
            }
            if inserted != held {
                return Err(StoreError::Conflict(
                    "the audit log moved during this write; retry it".into(),
                ));
            }
        }
    }
    if !later.is_empty() {
        Held::joined(later).0.execute(tx).await?;
    }
    if tx.backend() == Backend::Postgres {
        // A write that took the log seals, before its own, every batch
        // queued by writes that committed before it and that no pass has
        // sealed yet (a pass not run yet, or a process that died before
        // its pass): their events come first, as their commits did.
        let (read, ids, mut queued) = heads_and_pending(tx, None).await?;
        queued.extend(batches);
        let (records, events) = chain(read, &queued);
        return insert_sealed(tx, &records, &events, &ids).await;
    }
    let read = heads(tx).await?;
    let (records, events) = chain(read.clone(), &batches);
    insert_sealed(tx, &records, &events, &[]).await?;
    tx.sealed(after(&read, &records, &events));
    Ok(())
}

/// The heads once `records` and `events` are appended after `before`.
fn after(before: &Heads, records: &[SealedRecord], events: &[SealedEvent]) -> Heads {
    (
        records.last().map_or(before.0, |r| r.1.seq),
        records
            .last()
            .map_or_else(|| before.1.clone(), |r| r.1.hash.clone()),
        events.last().map_or(before.2, |e| e.0),
    )
}

/// A sealed audit record and when its change was made.
type SealedRecord = (OffsetDateTime, AuditRecord);
/// A numbered event, when it happened and its trace id.
type SealedEvent<'a> = (i64, OffsetDateTime, &'a QueuedEvent, Option<String>);

/// Numbers and chains `batches` after `heads` (last record number and hash,
/// last event number), in order.
fn chain(
    (mut seq, mut prev, mut event_seq): Heads,
    batches: &[Batch],
) -> (Vec<SealedRecord>, Vec<SealedEvent<'_>>) {
    let mut records = Vec::new();
    let mut events = Vec::new();
    for batch in batches {
        for entry in &batch.entries {
            seq += 1;
            let mut record = AuditRecord {
                seq,
                at_us: unix_micros(batch.at),
                actor: batch.actor.clone(),
                actor_name: batch.actor_name.clone(),
                client_id: entry.client_id.clone(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                before_hash: entry.before_hash.clone(),
                after_hash: entry.after_hash.clone(),
                trace_id: entry.trace_id.clone(),
                prev_hash: prev,
                hash: String::new(),
            };
            record.hash = audit::chain_hash(&record);
            prev = record.hash.clone();
            for e in &entry.events {
                event_seq += 1;
                events.push((event_seq, batch.at, e, record.trace_id.clone()));
            }
            records.push((batch.at, record));
        }
    }
    (records, events)
}

/// Records and events per statement: well under PostgreSQL's 65,535 binds.
const RECORDS_PER_STATEMENT: usize = 500;
const EVENTS_PER_STATEMENT: usize = 1000;

/// Whether `records` and `events` go in one statement.
fn fits_one_statement(records: &[SealedRecord], events: &[SealedEvent]) -> bool {
    !records.is_empty()
        && records.len() <= RECORDS_PER_STATEMENT
        && events.len() <= EVENTS_PER_STATEMENT
}

/// Inserts sealed records and events and deletes the queued batches they
/// came from (`pending`, PostgreSQL only). When all fit in one statement
/// (the usual case) it is one statement, a round trip instead of three: a
/// data-modifying `WITH` on PostgreSQL, two inserts in one statement text on
/// SQLite.
async fn insert_sealed(
    tx: &mut Tx,
    records: &[SealedRecord],
    events: &[SealedEvent<'_>],
    pending: &[i64],
) -> Result<()> {
    let backend = tx.backend();
    if fits_one_statement(records, events) {
        let mut q = sql("");
        match tx.backend() {
            Backend::Postgres => {
                q.push("WITH ");
                if !pending.is_empty() {
                    q.push("done AS (DELETE FROM log_pending WHERE id IN ");
                    q.push_list(pending.iter().copied());
                    q.push("), ");
                }
                q.push("records AS (");
                push_records(&mut q, backend, records, None);
                q.push(") ");
                if events.is_empty() {
                    q.push("SELECT 1");
                } else {
                    push_events(&mut q, backend, events, None);
                }
            }
            Backend::Sqlite => {
                push_records(&mut q, backend, records, None);
                if !events.is_empty() {
                    q.push("; ");
                    push_events(&mut q, backend, events, None);
                }
            }
        }
        q.execute(tx).await?;
        return Ok(());
    }
    for chunk in records.chunks(RECORDS_PER_STATEMENT) {
        let mut q = sql("");
        push_records(&mut q, backend, chunk, None);
        q.execute(tx).await?;
    }
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let mut q = sql("");
        push_events(&mut q, backend, chunk, None);
        q.execute(tx).await?;
    }
    if !pending.is_empty() {
        let mut q = sql("DELETE FROM log_pending WHERE id IN ");
        q.push_list(pending.iter().copied());
        q.execute(tx).await?;
    }
    Ok(())
}

/// The inserts of sealed records and events (SQLite, one statement) that
/// take effect only while the log's heads are still `heads` (none when
/// another process appended since).
fn guarded<'q>(
    records: &'q [SealedRecord],
    events: &'q [SealedEvent<'_>],
    heads: &Heads,
) -> Sql<'q> {
    let mut q = sql("");
    push_records(&mut q, Backend::Sqlite, records, Some(heads.0));
    if !events.is_empty() {
        q.push("; ");
        push_events(&mut q, Backend::Sqlite, events, Some(heads.2));
    }
    q
}

/// The records' `INSERT`; with `after`, it inserts only while the last
/// record is number `after`.
fn push_records<'q>(
    q: &mut Sql<'q>,
    backend: Backend,
    records: &'q [SealedRecord],
    after: Option<i64>,
) {
    q.push(
        "INSERT INTO audit_log (seq, at, actor, actor_name, client_id, action, target, \
         before_hash, after_hash, trace_id, prev_hash, hash) ",
    );
    if after.is_some() {
        q.push("SELECT * FROM (");
    }
    q.push_values(backend, records, |mut b, (at, r)| {
        b.push_bind(r.seq)
            .push_bind(*at)
            .push_bind(&r.actor)
            .push_bind(&r.actor_name)
            .push_bind(&r.client_id)
            .push_bind(&r.action)
            .push_bind(&r.target)
            .push_bind(&r.before_hash)
            .push_bind(&r.after_hash)
            .push_bind(&r.trace_id)
            .push_bind(&r.prev_hash)
            .push_bind(&r.hash);
    });
    if let Some(after) = after {
        q.push(") WHERE (SELECT COALESCE(max(seq), 0) FROM audit_log) = ");
        q.push_bind(after);
    }
}

/// The events' `INSERT`; with `after`, it inserts only while the last event
/// is number `after`.
fn push_events<'q>(
    q: &mut Sql<'q>,
    backend: Backend,
    events: &'q [SealedEvent<'_>],
    after: Option<i64>,
) {
    q.push(
        "INSERT INTO events (seq, id, type, subject, time, client_id, audience, data, trace_id) ",
    );
    if after.is_some() {
        q.push("SELECT * FROM (");
    }
    q.push_values(backend, events, |mut b, (n, at, e, t)| {
        b.push_bind(*n)
            .push_bind(EventId::new().uuid())
            .push_bind(e.event_type.as_str())
            .push_bind(&e.subject)
            .push_bind(*at)
            .push_bind(e.client_id)
            .push_bind(e.audience.as_str())
            .push_bind(Json(&e.data))
            .push_bind(t);
    });
    if let Some(after) = after {
        q.push(") WHERE (SELECT COALESCE(max(seq), 0) FROM events) = ");
        q.push_bind(after);
    }
}

/// How long the background pass waits after a wake for more commits: under
/// load, fewer and larger passes (each is its own transaction and commit).
/// Readers that need the log sealed do not wait for it ([`Sealer::seal_now`]).
const COALESCE: Duration = Duration::from_millis(10);

/// Batches sealed per transaction.
const SEAL_BATCH: i64 = 500;

/// PostgreSQL's sealer (see the module docs): one per store.
#[derive(Default)]
pub(crate) struct Sealer {
    /// Tickets handed to callers of [`Sealer::seal_now`].
    asked: AtomicU64,
    /// Every ticket up to this one is covered by a finished pass.
    done: AtomicU64,
    /// One pass at a time in this process (processes take turns on the
    /// `log_head` row).
    pass: tokio::sync::Mutex<()>,
    /// Wakes the background pass after a logged commit.
    wake: tokio::sync::Notify,
    started: OnceLock<()>,
    /// Write transactions of this process open now (see [`Writing`]).
    writers: AtomicUsize,
}

/// Counts a write transaction as open until it is dropped (committed or
/// not): a write alone in its process seals its own entries when it finds
/// the log free; beside others it queues them, and one pass seals them all.
pub(crate) struct Writing(Arc<Sealer>);

impl Writing {
    pub(crate) fn new(sealer: &Arc<Sealer>) -> Self {
        sealer.writers.fetch_add(1, Ordering::Relaxed);
        Writing(sealer.clone())
    }

    pub(crate) fn alone(&self) -> bool {
        self.0.writers.load(Ordering::Relaxed) <= 1
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Sealer {
    /// After a commit that queued entries: the background pass seals them soon.
    pub(crate) fn commit_logged(self: &Arc<Self>, pool: &PgPool) {
        self.started.get_or_init(|| {
            let sealer = Arc::clone(self);
            let pool = pool.clone();
            tokio::spawn(async move {
                loop {
                    sealer.wake.notified().await;
                    if pool.is_closed() {
                        return;
                    }
                    // Commits close together share a pass: a pass is four
                    // round trips however many batches it takes.
                    tokio::time::sleep(COALESCE).await;
                    if let Err(e) = sealer.seal_now(&pool).await {
                        tracing::warn!(error = %e, "sealing the audit log failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        sealer.wake.notify_one();
                    }
                }
            });
        });
        self.wake.notify_one();
    }

    /// Seals every entry that committed before this call (and possibly more).
    pub(crate) async fn seal_now(&self, pool: &PgPool) -> Result<()> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let _pass = self.pass.lock().await;
        if self.done.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // This pass starts after every ticket handed out so far: it sees
        // every commit made before one was asked for.
        let covers = self.asked.load(Ordering::SeqCst);
        while seal_pending(pool).await? == SEAL_BATCH as usize {}
        self.done.fetch_max(covers, Ordering::SeqCst);
        Ok(())
    }
}

/// One sealing transaction: the oldest queued batches, numbered, chained and
/// moved into `audit_log` and `events`. Answers how many batches it took.
///
/// Four round trips whatever the batch: the lock; the heads and the batches
/// (one statement, read after the lock is held so it sees the last pass's
/// commit); the records, events and deletion (one statement); the commit.
async fn seal_pending(pool: &PgPool) -> Result<usize> {
    let mut tx = Tx::Postgres {
        tx: pool.begin().await?,
        sealer: None,
        logged: false,
        later: Vec::new(),
        writing: None,
    };
    sql("SELECT id FROM log_head WHERE id = 1 FOR UPDATE")
        .fetch_one::<(i32,)>(&mut tx)
        .await?;
    let (heads, ids, batches) = heads_and_pending(&mut tx, Some(SEAL_BATCH)).await?;
    let n = ids.len();
    if n > 0 {
        let (records, events) = chain(heads, &batches);
        insert_sealed(&mut tx, &records, &events, &ids).await?;
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(n)
}

/// The log's heads and the oldest queued batches (at most `limit`), with
/// their ids, in queue order: one statement, run while holding `log_head`
/// so that it sees the last pass's commit (PostgreSQL).
async fn heads_and_pending(
    tx: &mut Tx,
    limit: Option<i64>,
) -> Result<(Heads, Vec<i64>, Vec<Batch>)> {
    type Row = (i64, String, i64, Option<i64>, Option<Json<Batch>>);
    let rows: Vec<Row> = sql(
        "SELECT h.seq, h.hash, h.event_seq, p.id, p.batch FROM (SELECT \
              COALESCE((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0) AS seq, \
              COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), \
                       (SELECT audit_hash FROM log_head WHERE id = 1)) AS hash, \
              COALESCE((SELECT seq FROM events ORDER BY seq DESC LIMIT 1), 0) AS event_seq) AS h \
         LEFT JOIN LATERAL (SELECT id, batch FROM log_pending ORDER BY id LIMIT $1) AS p ON true \
         ORDER BY p.id",
    )
    .bind(limit)
    .fetch_all(tx)
    .await?;
    let heads = rows
        .first()
        .map(|r| (r.0, r.1.clone(), r.2))
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut batches = Vec::with_capacity(rows.len());
    for (_, _, _, id, batch) in rows {
        if let (Some(id), Some(batch)) = (id, batch) {
            ids.push(id);
            batches.push(batch.0);
        }
    }
    Ok((heads, ids, batches))
}
