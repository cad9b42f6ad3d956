//! Claims and leases: claiming a lane's ready tasks, heartbeats, expiry,
//! and who may finish a task.

use std::time::Duration;

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
    /// Settles attempts whose leases expired: failed attempts, retried or exhausted.
    pub(crate) async fn expire_batch(&self, limit: usize) -> Result<usize> {
        let now = now_us();
        let ctx = WriteContext::new("system");
        let mut woken = Woken::default();
        let n = {
            let mut tx = self.db.begin().await?;
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
                            error: format!(
                                "lease expired: {by} sent no heartbeat or result in time"
                            ),
                            retryable: true,
                        },
                    )
                })
                .collect();
            let mut entries = Vec::new();
            settle(&mut tx, items, now, &mut woken, &mut entries).await?;
            notify_lanes(&mut tx, &woken).await?;
            append_logs(&mut tx, &ctx, at(now), entries).await?;
            tx.commit().await?;
            n
        };
        self.wake(&woken);
        Ok(n)
    }
}

pub(crate) async fn claim(store: &SqlStore, claim: Claim) -> Result<Vec<Leased>> {
    if claim.max == 0 {
        return Ok(vec![]);
    }
    let now = now_us();
    let token = work::new_lease_token();
    let hash = work::lease_hash(&token);
    let lease_until = now + claim.lease.as_micros() as i64;
    let mut rows: Vec<TaskRow> = {
        let mut tx = store.db.begin().await?;
        let rows: Vec<TaskRow> = sql(format!(
            "UPDATE tasks SET status = 'running', lease_hash = $1, \
             deadline_at = $2 + timeout_s * 1000000, \
             lease_expires_at = CASE WHEN $3 < $2 + timeout_s * 1000000 THEN $3 \
                                ELSE $2 + timeout_s * 1000000 END, \
             attempts = attempts + 1, claimed_by = $4, started_at = $2, updated_at = $2 \
             WHERE id IN (SELECT id FROM tasks WHERE lane = $5 AND status = 'ready' AND run_at <= $2 \
                          ORDER BY priority, fair_key, id LIMIT $6{}) \
             RETURNING {TASK_COLUMNS}",
            store.skip_locked_clause()
        ))
        .bind(&hash)
        .bind(now)
        .bind(lease_until)
        .bind(&claim.worker)
        .bind(&claim.lane)
        .bind(claim.max as i64)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        rows
    };
    rows.sort_by_key(|r| (r.priority, r.fair_key, r.id));
    rows.into_iter()
        .map(|r| {
            let expires = at(r.lease_expires_at.unwrap_or(lease_until));
            Ok(Leased {
                task: r.into_task()?,
                lease_token: token.clone(),
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
    let now = now_us();
    let hash = work::lease_hash(lease_token);
    {
        let mut tx = store.db.begin().await?;
        let row: Option<HeldLease> = sql(format!(
            "SELECT status, lease_hash, lease_expires_at, deadline_at FROM tasks WHERE id = $1{}",
            store.lock_clause()
        ))
        .bind(task_id.uuid())
        .fetch_optional(&mut tx)
        .await?;
        let (status, held, expires, deadline) = row.ok_or_else(|| not_found("task", task_id))?;
        work::check_lease(task_status(&status)?, held.as_deref(), expires, &hash, now)
            .map_err(refused)?;
        let until = work::lease_until(now, lease, deadline.unwrap_or(i64::MAX));
        sql("UPDATE tasks SET lease_expires_at = $2 WHERE id = $1")
            .bind(task_id.uuid())
            .bind(until)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(at(until))
    }
}

pub(crate) async fn expire_leases(store: &SqlStore, limit: usize) -> Result<usize> {
    store.expire_batch(limit).await
}

pub(crate) async fn next_run_at(store: &SqlStore, lane: &str) -> Result<Option<OffsetDateTime>> {
    let now = now_us();
    let row: (Option<i64>,) =
        sql("SELECT min(run_at) FROM tasks WHERE lane = $1 AND status = 'ready' AND run_at > $2")
            .bind(lane)
            .bind(now)
            .fetch_one(&mut store.db.reader())
            .await?;
    Ok(row.0.map(at))
}
