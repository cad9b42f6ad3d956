//! SQLite's one writer, committing in groups.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` every commit
//! waits for the disk to flush (a millisecond or more on ordinary disks,
//! however small the write). Writers queue for the one connection; each runs
//! inside a savepoint of a transaction shared by everyone who queued meanwhile
//! (a group), and is answered once the group commits: one commit, and one
//! wait for the disk, for the whole group. A writer alone commits at once.
//!
//! - A writer that fails, or is dropped, rolls back to its savepoint; the
//!   others of its group are untouched.
//! - A commit that fails fails every writer of the group: nobody is answered
//!   before the commit that holds their write is durable.
//! - The log's heads this process appended last live beside the connection
//!   (see [`super::append`]): they are the heads its next writer sees, even
//!   before the group commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

use super::db::Heads;
use crate::{Result, StoreError};

/// How long a writer waits for the connection before giving up (503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The writer of a SQLite store.
#[derive(Clone)]
pub(crate) struct Writer {
    slot: Arc<Mutex<Slot>>,
    /// Writers (and committers) waiting for the connection.
    waiting: Arc<AtomicUsize>,
    /// Tells the checkpointer a commit happened (`true`) or to stop.
    checkpoints: mpsc::Sender<bool>,
    /// The last event committed (its number), for the event streams.
    events: Arc<tokio::sync::watch::Sender<i64>>,
}

struct Slot {
    /// `None` once the store is closed.
    conn: Option<SqliteConnection>,
    /// The open transaction's writers that finished, waiting for its commit.
    group: Option<Group>,
    /// A writer was dropped inside its savepoint: roll it back first.
    abandoned: bool,
    heads: Option<Heads>,
}

#[derive(Default)]
struct Group {
    members: Vec<oneshot::Sender<std::result::Result<(), Failure>>>,
    committer: bool,
}

/// Why a group's commit failed, for each of its writers.
#[derive(Clone, Debug)]
struct Failure {
    /// `Unavailable`, `Full` or another database error.
    kind: fn(sqlx::Error) -> StoreError,
    message: String,
}

impl Failure {
    fn of(e: &StoreError) -> Failure {
        Failure {
            kind: match e {
                StoreError::Unavailable(_) => StoreError::Unavailable,
                StoreError::Full(_) => StoreError::Full,
                _ => StoreError::Database,
            },
            message: format!("the commit of this write failed: {e:?}"),
        }
    }

    fn into_error(self) -> StoreError {
        (self.kind)(sqlx::Error::Protocol(self.message))
    }
}

/// One writer's turn: the connection, inside its savepoint. Dropped without
/// [`WriteTx::commit`], it rolls back.
pub(crate) struct WriteTx {
    slot: Option<OwnedMutexGuard<Slot>>,
    writer: Writer,
}

/// The most pages the write-ahead log holds before the write connection
/// checkpoints it itself, in a writer's commit; the checkpointer keeps it far
/// below that.
pub(crate) const WAL_LIMIT_PAGES: u32 = 16_384;

/// How often at most the checkpointer runs while writes go on.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Pages (4 KiB each) the write-ahead log may reach before the checkpointer
/// starts it over (see [`checkpointer`]).
pub(crate) const WAL_RESTART_PAGES: i64 = 4_096;

/// What the write-ahead log file is cut back to when the log starts over
/// (`journal_size_limit`, in bytes): SQLite reuses the file from its start
/// and never shrinks it by itself, so one burst of large writes would leave
/// it at its high-water mark for good. Half as much again as
/// [`WAL_RESTART_PAGES`], so that in a steady load the file is reused in
/// place: a commit that overwrites the file's blocks flushes less than one
/// that makes the file longer.
pub(crate) const WAL_KEEP_BYTES: i64 = WAL_RESTART_PAGES * 4096 * 3 / 2;

/// The longest a restart waits for the reads in flight (new writes wait
/// that long at most; new reads never wait).
const RESTART_WAIT_MS: u32 = 250;

/// After a restart that could not finish, how long before the next try.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// Copies committed pages from the write-ahead log into the database file,
/// on its own connection, so no writer pays for it in its commit (a
/// checkpoint writes and flushes up to a thousand pages: milliseconds). A
/// passive checkpoint never blocks the writer or the readers.
///
/// A passive checkpoint does not shorten the log, though: a writer starts it
/// over only at a moment no read is using it, and under a steady load of
/// reads that moment never comes, so the log would grow without end (and
/// every read, which looks its pages up in the log first, would slow down
/// with it; a passive checkpoint cannot even copy the pages newer than
/// the oldest read in flight). When the log has grown past
/// [`WAL_RESTART_PAGES`], the checkpointer restarts it: holding new writes
/// back, it waits (at most [`RESTART_WAIT_MS`] at each step) for the reads
/// in flight to end and copies what is left; the next commit writes the log
/// from the start of its file again (cut back to [`WAL_KEEP_BYTES`] if a
/// burst made it longer). Reads that start meanwhile go on unhindered.
async fn checkpointer(mut conn: SqliteConnection, mut commits: mpsc::Receiver<bool>) {
    if let Err(e) = sqlx::query(&format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}"))
        .execute(&mut conn)
        .await
    {
        tracing::warn!(error = ?e, "could not set the checkpointer's wait");
    }
    let mut next_restart = tokio::time::Instant::now();
    while let Some(true) = commits.recv().await {
        // (busy, pages in the log, pages checkpointed)
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok((_, log, _))
                if log >= WAL_RESTART_PAGES && tokio::time::Instant::now() >= next_restart =>
            {
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(RESTART)")
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok((0, _, _)) => {}
                    Ok(_) => next_restart = tokio::time::Instant::now() + RESTART_BACKOFF,
                    Err(e) => {
                        tracing::warn!(error = ?e, "restarting the SQLite log failed");
                        next_restart = tokio::time::Instant::now() + RESTART_BACKOFF;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = ?e, "a SQLite checkpoint failed; the next commit retries it")
            }
        }
        tokio::time::sleep(CHECKPOINT_EVERY).await;
    }
    let _ = conn.close().await;
}

impl Writer {
    /// The writer of `conn`; `checkpoints` is a second connection to the same
    /// database, for the checkpointer.
    pub(crate) fn new(conn: SqliteConnection, checkpoints: SqliteConnection) -> Writer {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(checkpointer(checkpoints, rx));
        Writer {
            slot: Arc::new(Mutex::new(Slot {
                conn: Some(conn),
                group: None,
                abandoned: false,
                heads: None,
            })),
            waiting: Arc::new(AtomicUsize::new(0)),
            checkpoints: tx,
            events: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The number of the last event committed, changing with each commit
    /// that appends events.
    pub(crate) fn events(&self) -> Arc<tokio::sync::watch::Sender<i64>> {
        self.events.clone()
    }

    /// Wakes the checkpointer after a commit (it runs at most every
    /// [`CHECKPOINT_EVERY`]; commits meanwhile share its next run), and the
    /// event streams when it appended events (`heads`: the log's heads after
    /// it).
    fn committed(&self, heads: Option<&Heads>) {
        let _ = self.checkpoints.try_send(true);
        if let Some((_, _, event)) = heads {
            self.events.send_if_modified(|last| {
                let newer = *event > *last;
                if newer {
                    *last = *event;
                }
                newer
            });
        }
    }

    /// Waits for the connection, in turn. Cancelling the wait is harmless;
    /// what is done with the connection then runs detached (see
    /// [`detached`]), so no request that goes away midway can leave the
    /// transaction half-changed.
    async fn lock(&self) -> Result<OwnedMutexGuard<Slot>> {
        let _waiting = Waiting::new(&self.waiting);
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.slot.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolTimedOut))
    }

    /// Starts a write: joins the open transaction, or opens one.
    pub(crate) async fn begin(&self) -> Result<WriteTx> {
        let mut slot = self.lock().await?;
        let writer = self.clone();
        detached(async move {
            slot.tidy().await;
            slot.open().await?;
            Ok(WriteTx {
                slot: Some(slot),
                writer,
            })
        })
        .await
    }

    /// The connection alone, with nothing pending (the open group committed
    /// first): for migrations and for closing.
    pub(crate) async fn exclusive(&self) -> Result<Exclusive> {
        let mut slot = self.lock().await?;
        detached(async move {
            slot.tidy().await;
            slot.commit_group().await;
            Ok(Exclusive(slot))
        })
        .await
    }

    /// Commits what is pending and closes the connection.
    pub(crate) async fn close(&self) {
        let _ = self.checkpoints.send(false).await;
        if let Ok(mut x) = self.exclusive().await
            && let Some(conn) = x.0.conn.take()
        {
            let _ = conn.close().await;
        }
    }

    /// Whether the connection is free right now (for pool statistics).
    pub(crate) fn idle(&self) -> bool {
        self.slot.try_lock().is_ok()
    }

    /// Commits the open group once the writers queued before it had their
    /// turn.
    fn schedule_commit(&self) {
        let waiting = Waiting::new(&self.waiting);
        let writer = self.clone();
        tokio::spawn(async move {
            let mut slot = writer.slot.clone().lock_owned().await;
            drop(waiting);
            slot.tidy().await;
            slot.commit_group().await;
            writer.committed(slot.heads.as_ref());
        });
    }

    /// Tidies after a write dropped midway (whoever takes the connection
    /// first does it; this makes sure someone does, so the transaction does
    /// not stay open, holding SQLite's write lock, until the next write).
    fn schedule_tidy(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slot = self.slot.clone();
        rt.spawn(async move {
            slot.lock_owned().await.tidy().await;
        });
    }
}

/// Counts a wait for the connection while it lasts.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Waiting {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `work` to its end even if the caller stops waiting for it: the
/// steps that open, end or roll back a transaction must not stop halfway.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work).await.unwrap_or_else(|e| {
        Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "a SQLite write stopped: {e}"
        ))))
    })
}

/// The connection with nothing pending; see [`Writer::exclusive`].
pub(crate) struct Exclusive(OwnedMutexGuard<Slot>);

impl Exclusive {
    pub(crate) fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.0
            .conn
            .as_mut()
            .ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))
    }
}

impl Slot {
    async fn run(&mut self, text: &'static str) -> Result<()> {
        let conn = self
            .conn
            .as_mut()
            .ok_or(StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        sqlx::query(text).execute(conn).await?;
        Ok(())
    }

    /// Opens this writer's savepoint, and the group's transaction first if
    /// none is open.
    async fn open(&mut self) -> Result<()> {
        let opening = self.group.is_none();
        let text = if opening {
            "BEGIN IMMEDIATE; SAVEPOINT w"
        } else {
            "SAVEPOINT w"
        };
        if let Err(e) = self.run(text).await {
            if opening {
                // The transaction may have begun before the savepoint failed.
                let _ = self.run("ROLLBACK").await;
            } else {
                self.fail_group(&e).await;
            }
            return Err(e);
        }
        if opening {
            self.group = Some(Group::default());
        }
        Ok(())
    }

    /// Rolls back a writer dropped inside its savepoint, and the transaction
    /// itself when nobody else's write is in it.
    async fn tidy(&mut self) {
        if !std::mem::take(&mut self.abandoned) {
            return;
        }
        if let Err(e) = self.run("ROLLBACK TO w; RELEASE w").await {
            self.fail_group(&e).await;
            return;
        }
        if self.group.as_ref().is_some_and(|g| g.members.is_empty()) {
            self.group = None;
            if let Err(e) = self.run("ROLLBACK").await {
                tracing::warn!(error = ?e, "rolling back an empty SQLite transaction failed");
            }
        }
    }

    /// Commits the open group and answers its writers.
    async fn commit_group(&mut self) {
        let Some(group) = self.group.take() else {
            return;
        };
        let outcome = match self.run("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.run("ROLLBACK").await;
                self.heads = None;
                Err(Failure::of(&e))
            }
        };
        for member in group.members {
            let _ = member.send(outcome.clone());
        }
    }

    /// The transaction cannot go on (SQLite rolled it back, or a savepoint
    /// could not be undone): roll everything back and fail its writers.
    async fn fail_group(&mut self, e: &StoreError) {
        tracing::warn!(error = ?e, "a SQLite write failed its group; rolling the group back");
        let _ = self.run("ROLLBACK").await;
        self.heads = None;
        if let Some(group) = self.group.take() {
            for member in group.members {
                let _ = member.send(Err(Failure::of(e)));
            }
        }
    }
}

impl WriteTx {
    /// The connection, inside this writer's savepoint.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.slot
            .as_mut()
            .and_then(|s| s.conn.as_mut())
            .expect("a write holds the open connection until it ends")
    }

    /// The log's heads as this process's last write left them.
    pub(crate) fn heads(&self) -> Option<Heads> {
        self.slot.as_ref().and_then(|s| s.heads.clone())
    }

    /// Ends the write; answers once it is durable. `heads` are the log's
    /// heads after what it appended, if it appended.
    pub(crate) async fn commit(mut self, heads: Option<Heads>) -> Result<()> {
        let slot = self.slot.take().expect("a write is committed once");
        let writer = self.writer.clone();
        detached(finish(slot, writer, heads)).await
    }

    /// Rolls back now.
    pub(crate) async fn rollback(mut self) -> Result<()> {
        if let Some(mut slot) = self.slot.take() {
            detached(async move {
                slot.abandoned = true;
                slot.tidy().await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}

/// Releases a writer's savepoint and answers once its group committed; a
/// writer alone commits at once.
async fn finish(
    mut slot: OwnedMutexGuard<Slot>,
    writer: Writer,
    heads: Option<Heads>,
) -> Result<()> {
    let alone = writer.waiting.load(Ordering::SeqCst) == 0
        && slot.group.as_ref().is_some_and(|g| g.members.is_empty());
    if alone {
        // Nobody to share the commit with: commit now, in one round trip.
        slot.group = None;
        if let Err(e) = slot.run("RELEASE w; COMMIT").await {
            let _ = slot.run("ROLLBACK").await;
            slot.heads = None;
            return Err(e);
        }
        if heads.is_some() {
            slot.heads = heads;
        }
        writer.committed(slot.heads.as_ref());
        return Ok(());
    }
    if let Err(e) = slot.run("RELEASE w").await {
        slot.abandoned = true;
        slot.tidy().await;
        return Err(e);
    }
    if heads.is_some() {
        slot.heads = heads;
    }
    let (tx, rx) = oneshot::channel();
    let group = slot.group.get_or_insert_with(Group::default);
    group.members.push(tx);
    if !std::mem::replace(&mut group.committer, true) {
        writer.schedule_commit();
    }
    drop(slot);
    match rx.await {
        Ok(outcome) => outcome.map_err(Failure::into_error),
        Err(_) => Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed)),
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            // Whoever takes the connection next rolls the savepoint back.
            slot.abandoned = true;
            drop(slot);
            self.writer.schedule_tidy();
        }
    }
}
