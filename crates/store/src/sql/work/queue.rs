//! The steps that move tasks through the queue inside a write transaction:
//! readiness (fair keys), dependents, downstream moves, unit counts, wake-ups.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;
use waymark_domain::work::{self, TaskStatus, UnitStatus};
use waymark_domain::{ClientId, UnitId};

use super::*;
use crate::sql::db::Sql;

/// What a transaction did to the queue, to wake workers after it commits.
#[derive(Default)]
pub(crate) struct Woken {
    pub(crate) lanes: BTreeSet<String>,
}

/// Loads task rows by id (locked for this writer on PostgreSQL).
pub(crate) async fn load_tasks(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<TaskRow>> {
    let mut rows: Vec<TaskRow> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut q = sql(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id"));
        q.push_in_ids(tx.backend(), chunk);
        q.push(tx.backend().for_update());
        let part: Vec<TaskRow> = q.fetch_all(tx).await?;
        rows.extend(part);
    }
    Ok(rows)
}

/// A task row read with the database's clock in the same statement.
#[derive(sqlx::FromRow)]
struct TimedTaskRow {
    #[sqlx(flatten)]
    row: TaskRow,
    engine_now: i64,
}

/// Loads task rows by id, locked, with the engine's clock (see
/// [`engine_now`]): on PostgreSQL the clock is read by the same statement,
/// a round trip fewer for every finish.
pub(crate) async fn load_tasks_at(tx: &mut Tx, ids: &[Uuid]) -> Result<(Vec<TaskRow>, i64)> {
    let backend = tx.backend();
    if backend == Backend::Sqlite || ids.is_empty() || ids.len() > 1000 {
        let now = engine_now(tx).await?;
        return Ok((load_tasks(tx, ids).await?, now));
    }
    let mut q = sql(format!(
        "SELECT {TASK_COLUMNS}, {} AS engine_now FROM tasks WHERE id",
        now_sql(backend)
    ));
    q.push_in_ids(backend, ids);
    q.push(backend.for_update());
    let rows: Vec<TimedTaskRow> = q.fetch_all(tx).await?;
    let now = match rows.first() {
        Some(r) => r.engine_now,
        None => engine_now(tx).await?,
    };
    Ok((rows.into_iter().map(|r| r.row).collect(), now))
}

/// A task being made ready: what its fair key and status come from.
#[derive(sqlx::FromRow)]
pub(crate) struct Readying {
    id: Uuid,
    client_id: Uuid,
    lane: String,
    priority: i64,
    /// Its unit is held (its journey is paused): it waits as `held`.
    held: bool,
}

/// The columns of [`Readying`], of a statement over `tasks`.
const READYING_COLUMNS: &str = "tasks.id, tasks.client_id, tasks.lane, tasks.priority, \
     (SELECT u.held FROM work_units u WHERE u.id = tasks.unit_id) AS held";

/// Makes pending tasks ready (see [`ready_up`]).
pub(crate) async fn make_ready(
    tx: &mut Tx,
    ids: Vec<Uuid>,
    now: i64,
    woken: &mut Woken,
) -> Result<()> {
    for chunk in ids.chunks(1000) {
        let mut q = sql(format!(
            "SELECT {READYING_COLUMNS} FROM tasks WHERE tasks.id"
        ));
        q.push_in_ids(tx.backend(), chunk);
        let rows: Vec<Readying> = q.fetch_all(tx).await?;
        ready_up(tx, rows, now, woken).await?;
    }
    Ok(())
}

/// Makes pending tasks ready: each client's get consecutive fair keys from its
/// clock (see `work::fair_keys`), in priority order. The clocks and the tasks
/// are written in one round trip, with the writes held back before them.
/// Records the lanes woken.
async fn ready_up(tx: &mut Tx, mut rows: Vec<Readying>, now: i64, woken: &mut Woken) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_by_key(|r| (r.priority, r.id));
    let mut by_client: BTreeMap<Uuid, Vec<Readying>> = BTreeMap::new();
    for row in rows {
        by_client.entry(row.client_id).or_default().push(row);
    }
    let mut keyed: Vec<(Uuid, i64, &'static str)> = Vec::new();
    for (client, tasks) in by_client {
        let (first, clock) = fair_start(tx, client, &tasks[0].lane, tasks.len()).await?;
        tx.write_later(clock, 1);
        for (i, task) in tasks.into_iter().enumerate() {
            let status = if task.held {
                TaskStatus::Held
            } else {
                TaskStatus::Ready
            };
            keyed.push((task.id, first + i as i64, status.as_str()));
            woken.lanes.insert(task.lane);
        }
    }
    let mut q = sql("UPDATE tasks SET status = v.column3, run_at = 0, updated_at = ");
    q.push_bind(now);
    q.push(", fair_key = v.column2 FROM (");
    q.push_values(tx.backend(), &keyed, |mut b, (id, key, status)| {
        b.push_bind(*id).push_bind(*key).push_bind(*status);
    });
    // The rows as a table, its columns named column1, column2, … (see
    // `Sql::push_values`).
    q.push(") AS v WHERE tasks.id = v.column1");
    tx.write_later(q, keyed.len() as u64);
    tx.flush_later().await
}

/// The first of `count` consecutive fair keys for tasks of `client` made
/// ready now in `lane` (see `work::fair_keys`), and the write that moves the
/// client's clock past them, for the caller to run before the next
/// `fair_start` of the transaction. Reads the clock and the lane's head in one
/// statement, locking the client's clock row (PostgreSQL) until the commit.
pub(crate) async fn fair_start(
    tx: &mut Tx,
    client: Uuid,
    lane: &str,
    count: usize,
) -> Result<(i64, Sql<'static>)> {
    let (clock, head): (Option<i64>, Option<i64>) = sql(format!(
        "SELECT (SELECT clock FROM work_clients WHERE client_id = $1{}), \
         (SELECT fair_key FROM tasks WHERE lane = $2 AND status = 'ready' \
         ORDER BY priority, fair_key, id LIMIT 1)",
        tx.backend().for_update()
    ))
    .bind(client)
    .bind(lane)
    .fetch_one(tx)
    .await?;
    let (first, next) = work::fair_keys(clock.unwrap_or(0), head.unwrap_or(0), count);
    let moved = sql(
        "INSERT INTO work_clients (client_id, clock) VALUES ($1, $2) \
         ON CONFLICT (client_id) DO UPDATE SET clock = excluded.clock",
    )
    .bind(client)
    .bind(next);
    Ok((first, moved))
}

/// The status a task that may run takes: `held` while its unit is held (its
/// journey is paused), else `ready`.
pub(crate) const READY_OR_HELD: &str = "CASE WHEN EXISTS (SELECT 1 FROM work_units h \
     WHERE h.id = tasks.unit_id AND h.held) THEN 'held' ELSE 'ready' END";

/// Holds (or releases) units: their ready tasks wait as `held`, unclaimed,
/// and tasks that become ready meanwhile are held too; released, they are
/// ready again. A paused journey holds its open units.
pub(crate) async fn hold_units(
    tx: &mut Tx,
    units: &[Uuid],
    held: bool,
    now: i64,
    woken: &mut Woken,
) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let mut q = sql("UPDATE work_units SET held = $1 WHERE id IN ").bind(held);
    q.push_list(units.iter().copied());
    q.execute(tx).await?;
    let (from, to) = if held {
        (TaskStatus::Ready, TaskStatus::Held)
    } else {
        (TaskStatus::Held, TaskStatus::Ready)
    };
    let mut q =
        sql("UPDATE tasks SET status = $1, updated_at = $2 WHERE status = $3 AND unit_id IN ")
            .bind(to.as_str())
            .bind(now)
            .bind(from.as_str());
    q.push_list(units.iter().copied());
    q.push(" RETURNING lane");
    let lanes: Vec<(String,)> = q.fetch_all(tx).await?;
    if !held {
        woken.lanes.extend(lanes.into_iter().map(|l| l.0));
    }
    Ok(())
}

/// A dependent whose count of pending dependencies went down.
#[derive(sqlx::FromRow)]
struct Released {
    pending_deps: i64,
    #[sqlx(flatten)]
    task: Readying,
}

/// Counts `done` as finished dependencies of their dependents; the ones left
/// with none pending become ready (what that takes comes back with the
/// counts: no second read of them).
pub(crate) async fn release_dependents(
    tx: &mut Tx,
    done: &[Uuid],
    now: i64,
    woken: &mut Woken,
) -> Result<()> {
    let mut ready: Vec<Readying> = Vec::new();
    for chunk in done.chunks(1000) {
        let mut q = sql(
            "UPDATE tasks SET pending_deps = tasks.pending_deps - d.n FROM \
             (SELECT task_id, count(*) AS n FROM task_deps WHERE depends_on",
        );
        q.push_in_ids(tx.backend(), chunk);
        q.push(format!(
            " GROUP BY task_id) AS d WHERE tasks.id = d.task_id AND tasks.status = 'pending' \
             RETURNING tasks.pending_deps, {READYING_COLUMNS}"
        ));
        let rows: Vec<Released> = q.fetch_all(tx).await?;
        ready.extend(
            rows.into_iter()
                .filter(|r| r.pending_deps == 0)
                .map(|r| r.task),
        );
    }
    while !ready.is_empty() {
        let rest = ready.split_off(ready.len().min(1000));
        ready_up(tx, std::mem::replace(&mut ready, rest), now, woken).await?;
    }
    Ok(())
}

/// Moves every task downstream of `roots` whose status is one of `from` to
/// `to`; answers (id, unit) of each moved.
pub(crate) async fn move_downstream(
    tx: &mut Tx,
    roots: &[Uuid],
    from: &[TaskStatus],
    to: TaskStatus,
    now: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    if roots.is_empty() {
        return Ok(Vec::new());
    }
    let mut q =
        sql("WITH RECURSIVE down(id) AS (SELECT task_id FROM task_deps WHERE depends_on IN ");
    q.push_list(roots.iter().copied());
    q.push(
        " UNION SELECT d.task_id FROM task_deps d JOIN down ON d.depends_on = down.id) \
         UPDATE tasks SET status = ",
    );
    q.push_bind(to.as_str());
    q.push(", updated_at = ");
    q.push_bind(now);
    q.push(" WHERE id IN (SELECT id FROM down) AND status IN ");
    q.push_list(from.iter().map(|s| s.as_str()));
    q.push(" RETURNING id, unit_id");
    q.fetch_all(tx).await
}

/// Counts tasks done or cancelled on their units; closes each unit whose tasks
/// are all finished, and releases the units waiting on it.
pub(crate) async fn count_on_units(
    tx: &mut Tx,
    done: &[Uuid],
    cancelled: &[Uuid],
    now: i64,
    woken: &mut Woken,
    entries: &mut Vec<LogEntry>,
) -> Result<()> {
    let mut per_unit: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    for u in done {
        per_unit.entry(*u).or_default().0 += 1;
    }
    for u in cancelled {
        per_unit.entry(*u).or_default().1 += 1;
    }
    let mut finished_units: Vec<Uuid> = Vec::new();
    for (unit, (d, c)) in per_unit {
        let row: (i64, i64, i64, Uuid, Option<String>) = sql(
            "UPDATE work_units SET tasks_done = tasks_done + $2, tasks_cancelled = tasks_cancelled + $3, \
             updated_at = $4 WHERE id = $1 \
             RETURNING tasks_done, tasks_cancelled, tasks_total, client_id, trace_id",
        )
        .bind(unit)
        .bind(d)
        .bind(c)
        .bind(now)
        .fetch_one(tx)
        .await?;
        if row.0 + row.1 >= row.2 {
            let status = if row.1 == 0 {
                UnitStatus::Completed
            } else {
                UnitStatus::Cancelled
            };
            sql("UPDATE work_units SET status = $2, finished_at = $3 WHERE id = $1")
                .bind(unit)
                .bind(status.as_str())
                .bind(now)
                .execute(tx)
                .await?;
            let completed = status == UnitStatus::Completed;
            let mut e = LogEntry::new(
                if completed {
                    "unit.complete"
                } else {
                    "unit.cancel"
                },
                Some(ClientId::from_uuid(row.3)),
                UnitId::from_uuid(unit),
            )
            .event(
                if completed {
                    "unit.completed"
                } else {
                    "unit.cancelled"
                },
                Audience::Staff,
                serde_json::json!({
                    "unit_id": UnitId::from_uuid(unit).to_string(),
                    "client_id": ClientId::from_uuid(row.3).to_string(),
                    "status": status.as_str(),
                    "tasks_done": row.0,
                    "tasks_cancelled": row.1,
                }),
            );
            e.trace_id = row.4;
            entries.push(e);
            if completed {
                finished_units.push(unit);
            }
        }
    }
    for unit in finished_units {
        let released: Vec<(Uuid, i64)> = sql(
            "UPDATE work_units SET waiting_units = waiting_units - 1, updated_at = $2 \
             WHERE id IN (SELECT unit_id FROM work_unit_deps WHERE depends_on = $1) \
             RETURNING id, waiting_units",
        )
        .bind(unit)
        .bind(now)
        .fetch_all(tx)
        .await?;
        for (waiting, left) in released {
            if left > 0 {
                continue;
            }
            sql("UPDATE work_units SET status = 'running' WHERE id = $1 AND status = 'pending'")
                .bind(waiting)
                .execute(tx)
                .await?;
            let rows: Vec<(Uuid, i64)> = sql("UPDATE tasks SET pending_deps = pending_deps - 1 \
                 WHERE unit_id = $1 AND status = 'pending' RETURNING id, pending_deps")
            .bind(waiting)
            .fetch_all(tx)
            .await?;
            let ready: Vec<Uuid> = rows.into_iter().filter(|r| r.1 == 0).map(|r| r.0).collect();
            if !ready.is_empty() {
                make_ready(tx, ready, now, woken).await?;
            }
        }
    }
    Ok(())
}

/// Sets a unit back to `running` when no incident of it is open any more.
pub(crate) async fn refresh_unit_status(tx: &mut Tx, unit: Uuid, now: i64) -> Result<()> {
    sql(
        "UPDATE work_units SET status = 'running', updated_at = $2 WHERE id = $1 \
         AND status = 'failed' AND NOT EXISTS \
         (SELECT 1 FROM incidents WHERE unit_id = $1 AND resolved_at IS NULL)",
    )
    .bind(unit)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Wakes workers of other processes after the commit, through the `NOTIFY`
/// the transaction sends (PostgreSQL); this process's are woken by
/// [`SqlStore::wake`].
pub(crate) async fn notify_lanes(tx: &mut Tx, woken: &Woken) -> Result<()> {
    if tx.backend() == Backend::Postgres {
        for lane in &woken.lanes {
            sql("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(lane)
                .execute(tx)
                .await?;
        }
    }
    Ok(())
}
