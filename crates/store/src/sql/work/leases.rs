//! Claims and leases: claiming a lane's ready tasks, heartbeats, expiry,
//! and who may finish a task.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::types::Json;

use time::OffsetDateTime;
use waymark_domain::TaskId;
use waymark_domain::work::{self, LeaseError, TaskStatus};

use super::*;

/// Whether `lease_token` may finish the task: the lease of its running attempt
/// (a human task, which nobody claims, may go without one).
pub(crate) fn check_finisher(
    row: &TaskRow,
    lease_token: Option<&str>,
    id: TaskId,
    now: i64,
) -> Result<()> {
    let st = row.status()?;
    match lease_token {
        Some(t) => work::check_lease(
            st,
            row.lease_hash.as_deref(),
            row.lease_expires_at,
            &work::lease_hash(t),
            now,
        )
        .map_err(refused),
        None if row.executor == "human"
            && matches!(st, TaskStatus::Ready | TaskStatus::Running) =>
        {
            Ok(())
        }
        None if row.executor == "human" => Err(refused(LeaseError::NotRunning(st))),
        None => Err(StoreError::Refused {
            code: "lease_required",
            detail: format!(
                "task {id} runs on {}; give the lease_token of its claim",
                row.executor
            ),
        }),
    }
}

impl SqlStore {
    /// Settles attempts whose leases expired: expired attempts, retried or
    /// exhausted.
    pub(crate) async fn expire_batch(&self, limit: usize) -> Result<usize> {
        let ctx = WriteContext::new("system");
        let mut woken = Woken::default();
        let mut tx = self.db.begin().await?;
        let now = engine_now(&mut tx).await?;
        let rows: Vec<TaskRow> = sql(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running' AND lease_expires_at <= $1 \
             ORDER BY lease_expires_at LIMIT $2{}",
            self.skip_locked_clause()
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut tx)
        .await?;
        let n = rows.len();
        if n == 0 {
            return Ok(0);
        }
        let items = rows
            .into_iter()
            .map(|r| {
                let by = r.claimed_by.clone().unwrap_or_else(|| "a worker".into());
                (
                    r,
                    Outcome::Failed {
                        error: format!("lease expired: {by} sent no heartbeat or result in time"),
                        retryable: true,
                    },
                )
            })
            .collect();
        let mut entries = Vec::new();
        let ends = Ends {
            now,
            finisher: &ctx.actor,
            expired: true,
        };
        settle(&mut tx, items, &ends, &mut woken, &mut entries).await?;
        notify_lanes(&mut tx, &woken).await?;
        append_logs(&mut tx, &ctx, at(now), entries).await?;
        tx.commit().await?;
        self.wake(&woken);
        Ok(n)
    }
}

/// Most tasks one claim takes.
pub(crate) const MAX_CLAIM: usize = 500;

/// Claims up to `claim.max` ready tasks of a lane in one statement, committed
/// on its own: each gets a lease token of its own (the hashes go as one JSON
/// array, handed to the picked rows by their number in the pick, so the
/// statement's text is the same whatever the number and is prepared once).
/// The running attempt is the task row itself (status, claimer, start); its
/// row is written when it ends.
pub(crate) async fn claim(store: &SqlStore, claim: Claim) -> Result<Vec<Leased>> {
    let max = claim.max.min(MAX_CLAIM);
    if max == 0 {
        return Ok(vec![]);
    }
    let tokens: HashMap<String, String> = (0..max)
        .map(|_| {
            let token = work::new_lease_token();
            (work::lease_hash(&token), token)
        })
        .collect();
    let hashes: Vec<&str> = tokens.keys().map(String::as_str).collect();
    let backend = store.db.backend();
    let now = now_sql(backend);
    let q = sql(format!(
        "UPDATE tasks SET status = 'running', \
         started_at = {now}, updated_at = {now}, deadline_at = {now} + timeout_s * 1000000, \
         lease_expires_at = {now} + CASE WHEN $1 < timeout_s * 1000000 THEN $1 \
                                         ELSE timeout_s * 1000000 END, \
         attempts = attempts + 1, attempt_seq = attempt_seq + 1, claimed_by = $2, \
         lease_hash = $3 ->> CAST(picked.n - 1 AS INTEGER) \
         FROM (SELECT c.id AS picked_id, row_number() OVER () AS n \
         FROM (SELECT id FROM tasks WHERE lane = $4 \
         AND status = 'ready' AND run_at <= {now} ORDER BY priority, fair_key, id LIMIT $5{}) AS c) \
         AS picked WHERE tasks.id = picked.picked_id RETURNING {TASK_COLUMNS}",
        backend.skip_locked()
    ))
    .bind(claim.lease.as_micros() as i64)
    .bind(&claim.worker)
    .bind(Json(hashes))
    .bind(claim.lane.as_str())
    .bind(max as i64);
    let mut rows: Vec<TaskRow> = q.fetch_all(&mut store.db.writer()).await?;
    rows.sort_by_key(|r| (r.priority, r.fair_key, r.id));
    rows.into_iter()
        .map(|r| {
            let token = r
                .lease_hash
                .as_ref()
                .and_then(|h| tokens.get(h))
                .cloned()
                .ok_or_else(|| StoreError::Conflict("a claimed task lost its lease".into()))?;
            let expires = at(r.lease_expires_at.unwrap_or_default());
            Ok(Leased {
                task: r.into_task()?,
                lease_token: token,
                lease_expires_at: expires,
            })
        })
        .collect()
}

/// A running task's status, lease hash, lease expiry and deadline.
type HeldLease = (String, Option<String>, Option<i64>, Option<i64>);

pub(crate) async fn heartbeat(
    store: &SqlStore,
    task_id: TaskId,
    lease_token: &str,
    lease: Duration,
) -> Result<OffsetDateTime> {
    let hash = work::lease_hash(lease_token);
    let mut tx = store.db.begin().await?;
    let now = engine_now(&mut tx).await?;
    let row: Option<HeldLease> = sql(format!(
        "SELECT status, lease_hash, lease_expires_at, deadline_at FROM tasks WHERE id = $1{}",
        store.lock_clause()
    ))
    .bind(task_id.uuid())
    .fetch_optional(&mut tx)
    .await?;
    let (status, held, expires, deadline) = row.ok_or_else(|| not_found("task", task_id))?;
    if let Err(e) = work::check_lease(task_status(&status)?, held.as_deref(), expires, &hash, now) {
        tx.rollback().await?;
        return Err(refused(e));
    }
    let until = work::lease_until(now, lease, deadline.unwrap_or(i64::MAX));
    sql("UPDATE tasks SET lease_expires_at = $2 WHERE id = $1")
        .bind(task_id.uuid())
        .bind(until)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(at(until))
}

pub(crate) async fn expire_leases(store: &SqlStore, limit: usize) -> Result<usize> {
    store.expire_batch(limit).await
}

pub(crate) async fn next_run_in(store: &SqlStore, lane: &str) -> Result<Option<Duration>> {
    let now = now_sql(store.db.backend());
    let row: (Option<i64>,) = sql(format!(
        "SELECT min(run_at) - {now} FROM tasks WHERE lane = $1 AND status = 'ready'"
    ))
    .bind(lane)
    .fetch_one(&mut store.db.reader())
    .await?;
    Ok(row
        .0
        .map(|us| Duration::from_micros(u64::try_from(us).unwrap_or(0))))
}

pub(crate) async fn task_attempts(store: &SqlStore, id: TaskId) -> Result<Vec<TaskAttempt>> {
    let rows: Vec<AttemptRow> = sql(
        "SELECT attempt, started_at, ended_at, outcome, error, worker FROM task_attempts \
         WHERE task_id = $1 \
         UNION ALL SELECT attempt_seq, started_at, NULL, 'running', NULL, claimed_by FROM tasks \
         WHERE id = $1 AND status = 'running' ORDER BY attempt",
    )
    .bind(id.uuid())
    .fetch_all(&mut store.db.reader())
    .await?;
    if rows.is_empty() {
        // Tell a task without attempts from a task that does not exist.
        super::units::get_task(store, id).await?;
    }
    rows.into_iter().map(AttemptRow::into_attempt).collect()
}
