//! [`WorkStore`] on SQL: units of work, tasks, leases, incidents, agents.
//!
//! The hot paths are set-based: a unit's tasks and edges go in with multi-row
//! inserts; a claim is one `UPDATE ... WHERE id IN (SELECT ... ORDER BY ...
//! LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING`, served by the partial index of
//! ready tasks of its lane; a batch of completions is a few statements whatever
//! its size, dependents included. Engine times are microseconds (INTEGER).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::criteria;
use waymark_domain::work::{
    self, AfterFailure, Backoff, LeaseError, Resolution, TaskStatus, UnitStatus,
};
use waymark_domain::{ClientId, FieldError, IncidentId, JourneyId, TaskId, UnitId};

use super::*;
use crate::work::*;

/// The PostgreSQL channel woken when tasks become ready.
pub(super) const CHANNEL: &str = "waymark_work";

pub(super) const TASK_COLUMNS: &str = "id, unit_id, client_id, key, name, executor, lane, status, input, \
     output, depends_on, priority, fair_key, run_at, max_attempts, attempts, timeout_s, \
     backoff_initial_ms, backoff_max_ms, lease_hash, lease_expires_at, claimed_by, started_at, \
     last_error, trace_id, created_at, updated_at, finished_at, contract, handoff_from, hands_off";

/// Records one metric observation of a journey: journey, name, value, at,
/// stage, recorded by, recorded at.
pub(super) const INSERT_METRIC: &str = "INSERT INTO journey_metrics \
     (journey_id, name, value, at, stage, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

#[derive(FromRow, Clone)]
pub(super) struct TaskRow {
    id: Uuid,
    unit_id: Uuid,
    client_id: Uuid,
    key: String,
    name: String,
    executor: String,
    lane: String,
    status: String,
    input: Json<Value>,
    output: Option<Json<Value>>,
    depends_on: Json<Vec<String>>,
    priority: i64,
    fair_key: i64,
    run_at: i64,
    max_attempts: i64,
    attempts: i64,
    timeout_s: i64,
    backoff_initial_ms: i64,
    backoff_max_ms: i64,
    lease_hash: Option<String>,
    lease_expires_at: Option<i64>,
    claimed_by: Option<String>,
    started_at: Option<i64>,
    last_error: Option<String>,
    trace_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    contract: Option<Json<Vec<String>>>,
    handoff_from: Option<String>,
    hands_off: i64,
}

pub(super) fn now_us() -> i64 {
    unix_micros(OffsetDateTime::now_utc())
}

pub(super) fn at(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(super) fn task_status(s: &str) -> Result<TaskStatus> {
    s.parse().map_err(|_| decode_error("task status", s))
}

impl TaskRow {
    fn status(&self) -> Result<TaskStatus> {
        task_status(&self.status)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            initial_s: self.backoff_initial_ms as f64 / 1000.0,
            max_s: self.backoff_max_ms as f64 / 1000.0,
        }
    }

    fn into_task(self) -> Result<Task> {
        let status = self.status()?;
        Ok(Task {
            backoff: self.backoff(),
            id: TaskId::from_uuid(self.id),
            unit_id: UnitId::from_uuid(self.unit_id),
            client_id: ClientId::from_uuid(self.client_id),
            key: self.key,
            name: self.name,
            executor: self.executor,
            status,
            input: self.input.0,
            output: self.output.map(|o| o.0),
            depends_on: self.depends_on.0,
            contract: self.contract.map(|c| c.0).unwrap_or_default(),
            handoff_from: self.handoff_from,
            priority: self.priority,
            max_attempts: self.max_attempts,
            attempts: self.attempts,
            timeout_s: self.timeout_s,
            run_at: (status == TaskStatus::Ready && self.run_at > 0).then(|| at(self.run_at)),
            lease_expires_at: if status == TaskStatus::Running {
                self.lease_expires_at.map(at)
            } else {
                None
            },
            claimed_by: self.claimed_by,
            started_at: self.started_at.map(at),
            last_error: self.last_error,
            trace_id: self.trace_id,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            finished_at: self.finished_at.map(at),
        })
    }

    /// What events say about the task.
    fn data(&self, status: TaskStatus) -> Value {
        serde_json::json!({
            "task_id": TaskId::from_uuid(self.id).to_string(),
            "unit_id": UnitId::from_uuid(self.unit_id).to_string(),
            "client_id": ClientId::from_uuid(self.client_id).to_string(),
            "key": self.key,
            "executor": self.executor,
            "status": status.as_str(),
            "attempts": self.attempts,
        })
    }

    fn entry(&self, action: &'static str, event: &'static str, data: Value) -> LogEntry {
        let mut e = LogEntry::new(
            action,
            Some(ClientId::from_uuid(self.client_id)),
            TaskId::from_uuid(self.id),
        )
        .event(event, Audience::Staff, data);
        e.trace_id = self.trace_id.clone();
        e
    }
}

#[derive(FromRow)]
pub(super) struct UnitRow {
    id: Uuid,
    client_id: Uuid,
    name: String,
    status: String,
    tasks_total: i64,
    tasks_done: i64,
    tasks_cancelled: i64,
    origin: Option<Json<Value>>,
    trace_id: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

pub(super) const UNIT_COLUMNS: &str = "id, client_id, name, status, tasks_total, tasks_done, \
     tasks_cancelled, origin, trace_id, created_by, created_at, updated_at, finished_at";

impl UnitRow {
    fn into_unit(self, depends_on_units: Vec<UnitId>) -> Result<Unit> {
        Ok(Unit {
            id: UnitId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            name: self.name,
            status: self
                .status
                .parse()
                .map_err(|_| decode_error("unit status", &self.status))?,
            tasks_total: self.tasks_total,
            tasks_done: self.tasks_done,
            tasks_cancelled: self.tasks_cancelled,
            depends_on_units,
            origin: self.origin.map(|o| o.0),
            trace_id: self.trace_id,
            created_by: self.created_by,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            finished_at: self.finished_at.map(at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct IncidentRow {
    id: Uuid,
    unit_id: Uuid,
    task_id: Uuid,
    task_key: String,
    client_id: Uuid,
    message: String,
    opened_at: i64,
    resolved_at: Option<i64>,
    resolution: Option<String>,
    resolved_by: Option<String>,
    note: Option<String>,
}

pub(super) const INCIDENT_SELECT: &str = "SELECT i.id, i.unit_id, i.task_id, t.key AS task_key, i.client_id, \
     i.message, i.opened_at, i.resolved_at, i.resolution, i.resolved_by, i.note \
     FROM incidents i JOIN tasks t ON t.id = i.task_id";

impl IncidentRow {
    fn into_incident(self) -> Incident {
        Incident {
            id: IncidentId::from_uuid(self.id),
            unit_id: UnitId::from_uuid(self.unit_id),
            task_id: TaskId::from_uuid(self.task_id),
            task_key: self.task_key,
            client_id: ClientId::from_uuid(self.client_id),
            message: self.message,
            opened_at: at(self.opened_at),
            resolved_at: self.resolved_at.map(at),
            resolution: self.resolution.as_deref().and_then(|r| match r {
                "retry" => Some(Resolution::Retry),
                "skip" => Some(Resolution::Skip),
                "cancel" => Some(Resolution::Cancel),
                _ => None,
            }),
            resolved_by: self.resolved_by,
            note: self.note,
        }
    }
}

#[derive(FromRow)]
pub(super) struct AgentRow {
    id: String,
    description: String,
    capabilities: Json<Vec<String>>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    last_seen_at: Option<i64>,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: r.id,
            description: r.description,
            capabilities: r.capabilities.0,
            created_by: r.created_by,
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
            last_seen_at: r.last_seen_at.map(at),
        }
    }
}

pub(super) fn refused(e: LeaseError) -> StoreError {
    let code = match e {
        LeaseError::NotRunning(_) => "task_not_running",
        LeaseError::Foreign => "lease_foreign",
        LeaseError::Expired => "lease_expired",
    };
    StoreError::Refused {
        code,
        detail: e.to_string(),
    }
}

/// What a transaction did to the queue, to wake workers after it commits.
#[derive(Default)]
pub(super) struct Woken {
    pub(super) lanes: BTreeSet<String>,
}

/// Loads task rows by id (locked for this writer on PostgreSQL).
pub(super) async fn load_tasks(tx: &mut Tx, ids: &[Uuid]) -> Result<Vec<TaskRow>> {
    let mut rows: Vec<TaskRow> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let mut q = sql(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id IN "));
        q.push_list(chunk.iter().copied());
        q.push(tx.backend().for_update());
        let part: Vec<TaskRow> = q.fetch_all(tx).await?;
        rows.extend(part);
    }
    Ok(rows)
}

/// Makes pending tasks ready: each client's get consecutive fair keys from its
/// clock (see `work::fair_keys`), in priority order. Records the lanes woken.
async fn make_ready(tx: &mut Tx, ids: Vec<Uuid>, now: i64, woken: &mut Woken) -> Result<()> {
    for chunk in ids.chunks(1000) {
        let mut q = sql("SELECT id, client_id, lane FROM tasks WHERE id IN ");
        q.push_list(chunk.iter().copied());
        q.push(" ORDER BY priority, id");
        let rows: Vec<(Uuid, Uuid, String)> = q.fetch_all(tx).await?;
        let mut by_client: BTreeMap<Uuid, Vec<(Uuid, String)>> = BTreeMap::new();
        for (id, client, lane) in rows {
            by_client.entry(client).or_default().push((id, lane));
        }
        let mut keyed: Vec<(Uuid, i64)> = Vec::with_capacity(chunk.len());
        for (client, tasks) in by_client {
            let clock: Option<(i64,)> = sql(format!(
                "SELECT clock FROM work_clients WHERE client_id = $1{}",
                tx.backend().for_update()
            ))
            .bind(client)
            .fetch_optional(tx)
            .await?;
            let lane = tasks[0].1.clone();
            let head: Option<(i64,)> = sql(
                "SELECT fair_key FROM tasks WHERE lane = $1 AND status = 'ready' \
                 ORDER BY priority, fair_key, id LIMIT 1",
            )
            .bind(&lane)
            .fetch_optional(tx)
            .await?;
            let (first, next) = work::fair_keys(
                clock.map(|c| c.0).unwrap_or(0),
                head.map(|h| h.0).unwrap_or(0),
                tasks.len(),
            );
            sql(
                "INSERT INTO work_clients (client_id, clock) VALUES ($1, $2) \
                 ON CONFLICT (client_id) DO UPDATE SET clock = excluded.clock",
            )
            .bind(client)
            .bind(next)
            .execute(tx)
            .await?;
            for (i, (id, lane)) in tasks.into_iter().enumerate() {
                keyed.push((id, first + i as i64));
                woken.lanes.insert(lane);
            }
        }
        if !keyed.is_empty() {
            let mut q = sql("UPDATE tasks SET status = 'ready', run_at = 0, updated_at = ");
            q.push_bind(now);
            q.push(", fair_key = v.column2 FROM (");
            q.push_values(&keyed, |mut b, (id, key)| {
                b.push_bind(*id).push_bind(*key);
            });
            // `VALUES` as a table: both databases name its columns column1, column2.
            q.push(") AS v WHERE tasks.id = v.column1");
            q.execute(tx).await?;
        }
    }
    Ok(())
}

/// Counts `done` as finished dependencies of their dependents; the ones left
/// with none pending become ready.
async fn release_dependents(tx: &mut Tx, done: &[Uuid], now: i64, woken: &mut Woken) -> Result<()> {
    let mut ready: Vec<Uuid> = Vec::new();
    for chunk in done.chunks(1000) {
        let mut q = sql(
            "UPDATE tasks SET pending_deps = tasks.pending_deps - d.n FROM \
             (SELECT task_id, count(*) AS n FROM task_deps WHERE depends_on IN ",
        );
        q.push_list(chunk.iter().copied());
        q.push(
            " GROUP BY task_id) AS d WHERE tasks.id = d.task_id AND tasks.status = 'pending' \
             RETURNING tasks.id, tasks.pending_deps",
        );
        let rows: Vec<(Uuid, i64)> = q.fetch_all(tx).await?;
        ready.extend(rows.into_iter().filter(|r| r.1 == 0).map(|r| r.0));
    }
    if !ready.is_empty() {
        make_ready(tx, ready, now, woken).await?;
    }
    Ok(())
}

/// Moves every task downstream of `roots` whose status is one of `from` to
/// `to`; answers (id, unit) of each moved.
async fn move_downstream(
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
async fn count_on_units(
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

/// Applies the ends of attempts (already checked) inside the transaction:
/// completions release dependents and count on units; failures are retried
/// after their backoff or, exhausted, fail the task, block what is downstream
/// and open an incident. Answers the results; pushes audit records.
async fn settle(
    tx: &mut Tx,
    items: Vec<(TaskRow, Outcome)>,
    now: i64,
    woken: &mut Woken,
    entries: &mut Vec<LogEntry>,
) -> Result<Vec<Finished>> {
    let mut results: Vec<Finished> = Vec::with_capacity(items.len());
    let mut completed: Vec<(Uuid, Json<Value>)> = Vec::new();
    let mut done_units: Vec<Uuid> = Vec::new();
    let mut exhausted: Vec<TaskRow> = Vec::new();
    let mut handoffs: Vec<(Uuid, String, Value)> = Vec::new();
    let mut reported: Vec<(TaskRow, Vec<(String, f64)>)> = Vec::new();
    for (row, outcome) in items {
        let id = TaskId::from_uuid(row.id);
        // An output that breaks the task's contract fails the handoff:
        // the attempt fails for good, with an incident to resolve.
        let outcome = match outcome {
            Outcome::Completed { output } => match row
                .contract
                .as_ref()
                .and_then(|c| work::contract_breach(&c.0, &output))
            {
                Some(error) => Outcome::Failed {
                    error,
                    retryable: false,
                },
                None => Outcome::Completed { output },
            },
            failed => failed,
        };
        match outcome {
            Outcome::Completed { output } => {
                if row.hands_off != 0 {
                    handoffs.push((row.unit_id, row.key.clone(), output.clone()));
                }
                let metrics = criteria::output_metrics(&output);
                if !metrics.is_empty() {
                    reported.push((row.clone(), metrics));
                }
                entries.push(row.entry(
                    "task.complete",
                    "task.completed",
                    row.data(TaskStatus::Completed),
                ));
                completed.push((row.id, Json(output)));
                done_units.push(row.unit_id);
                results.push(Finished {
                    task_id: id,
                    status: TaskStatus::Completed,
                    observed: None,
                });
            }
            Outcome::Failed { error, retryable } => {
                let error: String = error.chars().take(2000).collect();
                sql("INSERT INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, worker) \
                     VALUES ($1, $2, $3, $4, 'failed', $5, $6) ON CONFLICT (task_id, attempt) DO NOTHING")
                .bind(row.id)
                .bind(row.attempts)
                .bind(row.started_at)
                .bind(now)
                .bind(&error)
                .bind(&row.claimed_by)
                .execute(tx)
                .await?;
                let decision = work::after_failure(
                    &row.backoff(),
                    row.attempts.max(0) as u32,
                    row.max_attempts.max(0) as u32,
                    retryable,
                    rand::random::<f64>(),
                );
                match decision {
                    AfterFailure::Retry(delay) => {
                        let run_at = now + delay.as_micros() as i64;
                        sql("UPDATE tasks SET status = 'ready', run_at = $2, last_error = $3, \
                             lease_hash = NULL, lease_expires_at = NULL, updated_at = $4 WHERE id = $1")
                        .bind(row.id)
                        .bind(run_at)
                        .bind(&error)
                        .bind(now)
                        .execute(tx)
                        .await?;
                        woken.lanes.insert(row.lane.clone());
                        let mut data = row.data(TaskStatus::Ready);
                        data["error"] = Value::String(error.clone());
                        data["retry_at"] = Value::String(
                            at(run_at)
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default(),
                        );
                        entries.push(row.entry("task.attempt_failed", "task.attempt_failed", data));
                        results.push(Finished {
                            task_id: id,
                            status: TaskStatus::Ready,
                            observed: None,
                        });
                    }
                    AfterFailure::Exhausted => {
                        sql("UPDATE tasks SET status = 'failed', last_error = $2, lease_hash = NULL, \
                             lease_expires_at = NULL, updated_at = $3 WHERE id = $1")
                        .bind(row.id)
                        .bind(&error)
                        .bind(now)
                        .execute(tx)
                        .await?;
                        let mut r = row.clone();
                        r.last_error = Some(error);
                        exhausted.push(r);
                        results.push(Finished {
                            task_id: id,
                            status: TaskStatus::Failed,
                            observed: None,
                        });
                    }
                }
            }
        }
    }
    if !completed.is_empty() {
        for chunk in completed.chunks(500) {
            let mut q = sql(
                "UPDATE tasks SET status = 'completed', lease_hash = NULL, lease_expires_at = NULL, \
                 last_error = NULL, finished_at = ",
            );
            q.push_bind(now);
            q.push(", updated_at = ");
            q.push_bind(now);
            q.push(", output = v.column2 FROM (");
            q.push_values(chunk, |mut b, (id, out)| {
                b.push_bind(*id).push_bind(Json(&out.0));
            });
            q.push(") AS v WHERE tasks.id = v.column1");
            q.execute(tx).await?;
        }
        // Handoffs: each task that takes its input from one completed
        // here gets the output set over its input before it is ready.
        for (unit, key, output) in &handoffs {
            let takers: Vec<(Uuid, Json<Value>)> =
                sql("SELECT id, input FROM tasks WHERE unit_id = $1 AND handoff_from = $2")
                    .bind(*unit)
                    .bind(key)
                    .fetch_all(tx)
                    .await?;
            for (taker, input) in takers {
                sql("UPDATE tasks SET input = $2 WHERE id = $1")
                    .bind(taker)
                    .bind(Json(work::handoff_input(&input.0, output)))
                    .execute(tx)
                    .await?;
            }
        }
        let ids: Vec<Uuid> = completed.iter().map(|c| c.0).collect();
        release_dependents(tx, &ids, now, woken).await?;
        // Metrics a journey's task reports are observations of its journey.
        for (row, metrics) in reported {
            let journey: Option<(Uuid, Option<i64>)> = sql(
                "SELECT j.id, j.stage FROM journey_units ju JOIN journeys j ON j.id = ju.journey_id \
                 WHERE ju.unit_id = $1",
            )
            .bind(row.unit_id)
            .fetch_optional(tx)
            .await?;
            let Some((journey, stage)) = journey else {
                continue;
            };
            let by = row
                .claimed_by
                .clone()
                .unwrap_or_else(|| format!("task:{}", row.key));
            for (name, value) in &metrics {
                sql(INSERT_METRIC)
                    .bind(journey)
                    .bind(name)
                    .bind(*value)
                    .bind(now)
                    .bind(stage)
                    .bind(&by)
                    .bind(now)
                    .execute(tx)
                    .await?;
            }
            let journey_id = JourneyId::from_uuid(journey);
            let mut e = LogEntry::new(
                "journey.metrics",
                Some(ClientId::from_uuid(row.client_id)),
                journey_id,
            )
            .event(
                "journey.metrics_recorded",
                Audience::Staff,
                serde_json::json!({
                    "journey_id": journey_id.to_string(),
                    "client_id": ClientId::from_uuid(row.client_id).to_string(),
                    "task_id": TaskId::from_uuid(row.id).to_string(),
                    "observations": metrics.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v})).collect::<Vec<_>>(),
                }),
            );
            e.trace_id = row.trace_id.clone();
            entries.push(e);
            if let Some(r) = results.iter_mut().find(|r| r.task_id.uuid() == row.id) {
                r.observed = Some(Observed {
                    journey_id,
                    at: at(now),
                    metrics,
                });
            }
        }
    }
    for row in exhausted {
        let message = format!(
            "task {} failed after {} attempt(s): {}",
            row.key,
            row.attempts,
            row.last_error.as_deref().unwrap_or("no error given")
        );
        let incident = IncidentId::new();
        sql(
            "INSERT INTO incidents (id, unit_id, task_id, client_id, message, opened_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(incident.uuid())
        .bind(row.unit_id)
        .bind(row.id)
        .bind(row.client_id)
        .bind(&message)
        .bind(now)
        .execute(tx)
        .await?;
        move_downstream(
            tx,
            &[row.id],
            &[TaskStatus::Pending],
            TaskStatus::Blocked,
            now,
        )
        .await?;
        sql("UPDATE work_units SET status = 'failed', updated_at = $2 WHERE id = $1")
            .bind(row.unit_id)
            .bind(now)
            .execute(tx)
            .await?;
        let mut data = row.data(TaskStatus::Failed);
        data["error"] = Value::String(row.last_error.clone().unwrap_or_default());
        data["incident_id"] = Value::String(incident.to_string());
        data["message"] = Value::String(message);
        let mut e = row.entry("task.fail", "task.failed", data.clone());
        e.events.push(NewEvent {
            event_type: "incident.opened",
            subject: incident.to_string(),
            client_id: Some(ClientId::from_uuid(row.client_id)),
            audience: Audience::Staff,
            data,
        });
        entries.push(e);
    }
    count_on_units(tx, &done_units, &[], now, woken, entries).await?;
    Ok(results)
}

/// Sets a unit back to `running` when no incident of it is open any more.
async fn refresh_unit_status(tx: &mut Tx, unit: Uuid, now: i64) -> Result<()> {
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

/// Cancels every task of a unit not yet done, closes its incidents and the unit.
pub(super) async fn cancel_unit_in_tx(
    tx: &mut Tx,
    id: UnitId,
    reason: Option<String>,
    ctx: &WriteContext,
    now: i64,
    woken: &mut Woken,
) -> Result<()> {
    let row: Option<(Uuid, String, Option<String>)> = sql(format!(
        "SELECT client_id, status, trace_id FROM work_units WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(id.uuid())
    .fetch_optional(tx)
    .await?;
    let (client, status, trace) = row.ok_or_else(|| not_found("unit of work", id))?;
    if status == "completed" || status == "cancelled" {
        return Err(StoreError::Refused {
            code: "unit_finished",
            detail: format!("unit {id} is {status}; only a unit not yet done can be cancelled"),
        });
    }
    let n: Vec<(Uuid,)> = sql(
        "UPDATE tasks SET status = 'cancelled', lease_hash = NULL, lease_expires_at = NULL, \
         finished_at = $2, updated_at = $2 \
         WHERE unit_id = $1 AND status IN ('pending', 'ready', 'running', 'blocked', 'failed') \
         RETURNING id",
    )
    .bind(id.uuid())
    .bind(now)
    .fetch_all(tx)
    .await?;
    sql(
        "UPDATE incidents SET resolved_at = $2, resolution = 'cancel', resolved_by = $3, \
         note = COALESCE(note, $4) WHERE unit_id = $1 AND resolved_at IS NULL",
    )
    .bind(id.uuid())
    .bind(now)
    .bind(&ctx.actor)
    .bind(&reason)
    .execute(tx)
    .await?;
    sql(
        "UPDATE work_units SET status = 'cancelled', tasks_cancelled = tasks_cancelled + $2, \
         finished_at = $3, updated_at = $3 WHERE id = $1",
    )
    .bind(id.uuid())
    .bind(n.len() as i64)
    .bind(now)
    .execute(tx)
    .await?;
    let mut e = LogEntry::new("unit.cancel", Some(ClientId::from_uuid(client)), id).event(
        "unit.cancelled",
        Audience::Staff,
        serde_json::json!({
            "unit_id": id.to_string(),
            "client_id": ClientId::from_uuid(client).to_string(),
            "status": "cancelled",
            "tasks_cancelled": n.len(),
            "reason": reason,
        }),
    );
    e.trace_id = trace;
    notify_lanes(tx, woken).await?;
    append_log(tx, ctx, at(now), e).await
}

/// Wakes workers of other processes after the commit, through the `NOTIFY`
/// the transaction sends (PostgreSQL); this process's are woken by
/// [`SqlStore::wake`].
pub(super) async fn notify_lanes(tx: &mut Tx, woken: &Woken) -> Result<()> {
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

impl SqlStore {
    pub(super) fn wake(&self, woken: &Woken) {
        if !woken.lanes.is_empty() {
            self.work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    async fn unit_row(&self, id: UnitId) -> Result<Unit> {
        {
            let p = &mut self.db.reader();

            let row: Option<UnitRow> = sql(format!(
                "SELECT {UNIT_COLUMNS} FROM work_units WHERE id = $1"
            ))
            .bind(id.uuid())
            .fetch_optional(p)
            .await?;
            let row = row.ok_or_else(|| not_found("unit of work", id))?;
            let deps: Vec<(Uuid,)> =
                sql("SELECT depends_on FROM work_unit_deps WHERE unit_id = $1 ORDER BY depends_on")
                    .bind(id.uuid())
                    .fetch_all(p)
                    .await?;
            row.into_unit(deps.into_iter().map(|d| UnitId::from_uuid(d.0)).collect())
        }
    }

    /// Settles attempts whose leases expired: failed attempts, retried or exhausted.
    async fn expire_batch(&self, limit: usize) -> Result<usize> {
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

#[derive(FromRow)]
pub(super) struct PlanJobRow {
    job_key: String,
    inputs_hash: Option<String>,
    artifact_id: Option<Uuid>,
    version: Option<i64>,
    provenance: Option<String>,
    task_id: Option<Uuid>,
    unit_id: Option<Uuid>,
    task_status: Option<String>,
    task_error: Option<String>,
    updated_at: i64,
}

impl PlanJobRow {
    fn record(self) -> Result<PlanJobRecord> {
        Ok(PlanJobRecord {
            job_key: self.job_key,
            inputs_hash: self.inputs_hash,
            artifact_id: self.artifact_id.map(ArtifactId::from_uuid),
            version: self.version,
            provenance: self.provenance,
            task_id: self.task_id.map(TaskId::from_uuid),
            unit_id: self.unit_id.map(UnitId::from_uuid),
            task_status: self.task_status.map(|s| task_status(&s)).transpose()?,
            task_error: self.task_error,
            updated_at: at(self.updated_at),
        })
    }
}

pub(super) fn describe_base(base: Option<(ArtifactId, i64)>) -> String {
    match base {
        Some((id, v)) => format!("{id} version {v}"),
        None => "none".to_owned(),
    }
}

/// Inserts a unit of work with its tasks and edges inside the transaction, as
/// [`WorkStore::submit_unit`] does (client and unit-dependency checks, plan
/// links, roots made ready, audit); `woken` collects the lanes to wake.
pub(super) async fn insert_unit(
    tx: &mut Tx,
    id: UnitId,
    new: &NewUnit,
    ctx: &WriteContext,
    now: i64,
    woken: &mut Woken,
) -> Result<()> {
    require_client(tx, new.client_id).await?;
    if let Some(link) = &new.plan {
        check_plan_link(tx, link, new.client_id).await?;
    }
    let mut waiting = 0i64;
    for (i, dep) in new.depends_on_units.iter().enumerate() {
        let row: Option<(Uuid, String)> =
            sql("SELECT client_id, status FROM work_units WHERE id = $1")
                .bind(dep.uuid())
                .fetch_optional(tx)
                .await?;
        match row {
            Some((client, status)) if client == new.client_id.uuid() => {
                if status == "cancelled" {
                    return Err(FieldError::new(
                        format!("/depends_on_units/{i}"),
                        format!("unit {dep} was cancelled; it will never complete"),
                    )
                    .into());
                }
                if status != "completed" {
                    waiting += 1;
                }
            }
            _ => {
                return Err(FieldError::new(
                    format!("/depends_on_units/{i}"),
                    format!("no unit of work {dep} for this client"),
                )
                .into());
            }
        }
    }
    let status = if waiting > 0 {
        UnitStatus::Pending
    } else {
        UnitStatus::Running
    };
    sql(
        "INSERT INTO work_units (id, client_id, name, status, tasks_total, waiting_units, \
             origin, trace_id, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(id.uuid())
    .bind(new.client_id.uuid())
    .bind(&new.name)
    .bind(status.as_str())
    .bind(new.tasks.len() as i64)
    .bind(waiting)
    .bind(new.origin.as_ref().map(Json))
    .bind(&ctx.trace_id)
    .bind(&ctx.actor)
    .bind(now)
    .execute(tx)
    .await?;
    for dep in &new.depends_on_units {
        sql("INSERT INTO work_unit_deps (depends_on, unit_id) VALUES ($1, $2)")
            .bind(dep.uuid())
            .bind(id.uuid())
            .execute(tx)
            .await?;
    }
    let ids: Vec<Uuid> = new.tasks.iter().map(|_| TaskId::new().uuid()).collect();
    let mut hands_off = vec![false; new.tasks.len()];
    for h in new.tasks.iter().filter_map(|t| t.handoff_from) {
        hands_off[h] = true;
    }
    let gate = i64::from(waiting > 0);
    for (chunk_no, chunk) in new.tasks.chunks(500).enumerate() {
        let mut q = sql(
            "INSERT INTO tasks (id, unit_id, client_id, key, name, executor, lane, status, \
                 input, depends_on, priority, pending_deps, max_attempts, timeout_s, \
                 backoff_initial_ms, backoff_max_ms, trace_id, created_at, updated_at, \
                 contract, handoff_from, hands_off) ",
        );
        q.push_values(chunk.iter().enumerate(), |mut b, (i, t)| {
            let idx = chunk_no * 500 + i;
            let deps: Vec<&str> = t
                .depends_on
                .iter()
                .map(|&d| new.tasks[d].key.as_str())
                .collect();
            b.push_bind(ids[idx])
                .push_bind(id.uuid())
                .push_bind(new.client_id.uuid())
                .push_bind(&t.key)
                .push_bind(&t.name)
                .push_bind(t.executor.name())
                .push_bind(t.executor.lane())
                .push_bind("pending")
                .push_bind(Json(&t.input))
                .push_bind(Json(deps))
                .push_bind(t.priority)
                .push_bind(t.depends_on.len() as i64 + gate)
                .push_bind(i64::from(t.max_attempts))
                .push_bind(i64::from(t.timeout_s))
                .push_bind((t.backoff.initial_s * 1000.0) as i64)
                .push_bind((t.backoff.max_s * 1000.0) as i64)
                .push_bind(&ctx.trace_id)
                .push_bind(now)
                .push_bind(now)
                .push_bind((!t.contract.is_empty()).then_some(Json(&t.contract)))
                .push_bind(t.handoff_from.map(|h| new.tasks[h].key.as_str()))
                .push_bind(i64::from(hands_off[idx]));
        });
        q.execute(tx).await?;
    }
    let edges: Vec<(Uuid, Uuid)> = new
        .tasks
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.depends_on.iter().map(move |&d| (d, i)))
        .map(|(d, i)| (ids[d], ids[i]))
        .collect();
    for chunk in edges.chunks(5000) {
        let mut q = sql("INSERT INTO task_deps (depends_on, task_id) ");
        q.push_values(chunk, |mut b, (d, t)| {
            b.push_bind(*d).push_bind(*t);
        });
        q.execute(tx).await?;
    }
    if let Some(link) = &new.plan {
        for (task, job) in &link.jobs {
            sql(
                "INSERT INTO plan_jobs (engagement_id, job_key, task_id, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (engagement_id, job_key) \
                     DO UPDATE SET task_id = excluded.task_id, updated_at = excluded.updated_at",
            )
            .bind(link.engagement_id.uuid())
            .bind(job)
            .bind(ids[*task])
            .bind(now)
            .execute(tx)
            .await?;
        }
    }
    if waiting == 0 {
        let roots: Vec<Uuid> = new
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.depends_on.is_empty())
            .map(|(i, _)| ids[i])
            .collect();
        make_ready(tx, roots, now, woken).await?;
    }
    let entry = LogEntry::new("unit.create", Some(new.client_id), id).event(
        "unit.created",
        Audience::Staff,
        serde_json::json!({
            "unit_id": id.to_string(),
            "client_id": new.client_id.to_string(),
            "name": new.name,
            "tasks": new.tasks.len(),
            "status": status.as_str(),
        }),
    );
    append_log(tx, ctx, at(now), entry).await
}

/// Checks a plan run's unit inside the transaction: the engagement is the
/// client's, and none of its jobs has a task still queued or running. Locks the
/// engagement's row (PostgreSQL), so plan runs of one engagement take turns.
async fn check_plan_link(tx: &mut Tx, link: &PlanLink, client: ClientId) -> Result<()> {
    let owner: Option<(Uuid,)> = sql(format!(
        "SELECT client_id FROM engagements WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(link.engagement_id.uuid())
    .fetch_optional(tx)
    .await?;
    if owner.map(|(c,)| c) != Some(client.uuid()) {
        return Err(FieldError::new(
            "/engagement_id",
            format!("no engagement {} for client {}", link.engagement_id, client),
        )
        .into());
    }
    let active: Vec<(String, Uuid, String)> = sql(
        "SELECT p.job_key, t.id, t.status FROM plan_jobs p JOIN tasks t ON t.id = p.task_id \
             WHERE p.engagement_id = $1 AND t.status IN ('pending', 'ready', 'running', 'blocked')",
    )
    .bind(link.engagement_id.uuid())
    .fetch_all(tx)
    .await?;
    let busy: Vec<String> = active
        .iter()
        .filter(|(job, _, _)| link.jobs.iter().any(|(_, j)| j == job))
        .map(|(job, task, status)| format!("{job} (task {}, {status})", TaskId::from_uuid(*task)))
        .collect();
    if !busy.is_empty() {
        return Err(StoreError::Refused {
            code: "plan_job_queued",
            detail: format!(
                "these jobs already have a task that has not finished: {}; wait for it, or cancel it first",
                busy.join(", ")
            ),
        });
    }
    Ok(())
}

/// Whether `lease_token` may finish the task: the lease of its running attempt
/// (a human task, which nobody claims, may go without one).
pub(super) fn check_finisher(
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

#[async_trait]
impl WorkStore for SqlStore {
    async fn submit_unit(&self, new: NewUnit, ctx: &WriteContext) -> Result<Created<Unit>> {
        let now = now_us();
        let id = UnitId::new();
        let mut woken = Woken::default();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "unit").await? {
                Some(existing)
            } else {
                insert_unit(&mut tx, id, &new, ctx, now, &mut woken).await?;
                idempotency::record(&mut tx, ctx, "unit", id.uuid(), at(now)).await?;
                notify_lanes(&mut tx, &woken).await?;
                tx.commit().await?;
                None
            }
        };
        self.wake(&woken);
        match replayed {
            Some(existing) => Ok(Created {
                record: self.unit_row(UnitId::from_uuid(existing)).await?,
                replayed: true,
            }),
            None => Ok(Created {
                record: self.unit_row(id).await?,
                replayed: false,
            }),
        }
    }

    async fn get_unit(&self, id: UnitId) -> Result<UnitDetail> {
        let unit = self.unit_row(id).await?;
        let counts = self.count_tasks(Some(id)).await?;
        {
            let p = &mut self.db.reader();

            let rows: Vec<TaskRow> = sql(format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE unit_id = $1 ORDER BY id LIMIT 1000"
            ))
            .bind(id.uuid())
            .fetch_all(p)
            .await?;
            let incidents: Vec<IncidentRow> = sql(format!(
                "{INCIDENT_SELECT} WHERE i.unit_id = $1 ORDER BY i.id"
            ))
            .bind(id.uuid())
            .fetch_all(p)
            .await?;
            Ok(UnitDetail {
                unit,
                counts: counts
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect(),
                tasks: rows
                    .into_iter()
                    .map(TaskRow::into_task)
                    .collect::<Result<_>>()?,
                incidents: incidents
                    .into_iter()
                    .map(IncidentRow::into_incident)
                    .collect(),
            })
        }
    }

    async fn list_units(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Unit>> {
        let after: Option<UnitId> = id_cursor(&page)?;
        let rows: Vec<UnitRow> = {
            let p = &mut self.db.reader();

            let mut q = sql(format!("SELECT {UNIT_COLUMNS} FROM work_units WHERE 1 = 1"));
            if let Some(c) = client_id {
                q.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(a) = after {
                q.push(" AND id < ").push_bind(a.uuid());
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        // Each unit with the units it waits on, read in one query for the page.
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let edges: Vec<(Uuid, Uuid)> = if ids.is_empty() {
            Vec::new()
        } else {
            {
                let p = &mut self.db.reader();

                let mut q = sql("SELECT unit_id, depends_on FROM work_unit_deps WHERE unit_id IN ");
                q.push_list(ids.iter().copied());
                q.push(" ORDER BY depends_on");
                q.fetch_all(p).await?
            }
        };
        let mut deps: HashMap<Uuid, Vec<UnitId>> = HashMap::new();
        for (unit, on) in edges {
            deps.entry(unit).or_default().push(UnitId::from_uuid(on));
        }
        let units = rows
            .into_iter()
            .map(|r| {
                let d = deps.remove(&r.id).unwrap_or_default();
                r.into_unit(d)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(units, &page, |u| u.id.to_string()))
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        let row: Option<TaskRow> = {
            let p = &mut self.db.reader();

            sql(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
                .bind(id.uuid())
                .fetch_optional(p)
                .await?
        };
        row.ok_or_else(|| not_found("task", id))?.into_task()
    }

    async fn list_tasks(&self, filter: TaskFilter, page: PageRequest) -> Result<Page<Task>> {
        let after: Option<TaskId> = id_cursor(&page)?;
        let rows: Vec<TaskRow> = {
            let p = &mut self.db.reader();

            let mut q = sql(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1"));
            if let Some(c) = filter.client_id {
                q.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(u) = filter.unit_id {
                q.push(" AND unit_id = ").push_bind(u.uuid());
            }
            if let Some(s) = filter.status {
                q.push(" AND status = ").push_bind(s.as_str());
            }
            if let Some(e) = &filter.executor {
                q.push(" AND executor = ").push_bind(e.clone());
            }
            if let Some(a) = after {
                q.push(" AND id > ").push_bind(a.uuid());
            }
            q.push(" ORDER BY id LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let tasks = rows
            .into_iter()
            .map(TaskRow::into_task)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(tasks, &page, |t| t.id.to_string()))
    }

    async fn count_tasks(&self, unit_id: Option<UnitId>) -> Result<Vec<(TaskStatus, i64)>> {
        let rows: Vec<(String, i64)> = {
            let p = &mut self.db.reader();

            match unit_id {
                Some(u) => {
                    sql("SELECT status, count(*) FROM tasks WHERE unit_id = $1 GROUP BY status")
                        .bind(u.uuid())
                        .fetch_all(p)
                        .await?
                }
                None => {
                    sql("SELECT status, count(*) FROM tasks GROUP BY status")
                        .fetch_all(p)
                        .await?
                }
            }
        };
        rows.into_iter()
            .map(|(s, n)| Ok((task_status(&s)?, n)))
            .collect()
    }

    async fn claim(&self, claim: Claim) -> Result<Vec<Leased>> {
        if claim.max == 0 {
            return Ok(vec![]);
        }
        let now = now_us();
        let token = work::new_lease_token();
        let hash = work::lease_hash(&token);
        let lease_until = now + claim.lease.as_micros() as i64;
        let mut rows: Vec<TaskRow> = {
            let mut tx = self.db.begin().await?;
            let rows: Vec<TaskRow> = sql(format!(
                "UPDATE tasks SET status = 'running', lease_hash = $1, \
                 deadline_at = $2 + timeout_s * 1000000, \
                 lease_expires_at = CASE WHEN $3 < $2 + timeout_s * 1000000 THEN $3 \
                                    ELSE $2 + timeout_s * 1000000 END, \
                 attempts = attempts + 1, claimed_by = $4, started_at = $2, updated_at = $2 \
                 WHERE id IN (SELECT id FROM tasks WHERE lane = $5 AND status = 'ready' AND run_at <= $2 \
                              ORDER BY priority, fair_key, id LIMIT $6{}) \
                 RETURNING {TASK_COLUMNS}",
                self.skip_locked_clause()
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

    async fn heartbeat(
        &self,
        task_id: TaskId,
        lease_token: &str,
        lease: Duration,
    ) -> Result<OffsetDateTime> {
        let now = now_us();
        let hash = work::lease_hash(lease_token);
        {
            let mut tx = self.db.begin().await?;
            let row: Option<(String, Option<String>, Option<i64>, Option<i64>)> =
                sql(format!(
                    "SELECT status, lease_hash, lease_expires_at, deadline_at FROM tasks WHERE id = $1{}",
                    self.lock_clause()
                ))
                .bind(task_id.uuid())
                .fetch_optional(&mut tx)
                .await?;
            let (status, held, expires, deadline) =
                row.ok_or_else(|| not_found("task", task_id))?;
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

    async fn finish(
        &self,
        finishes: Vec<Finish>,
        ctx: &WriteContext,
    ) -> Result<Vec<std::result::Result<Finished, StoreError>>> {
        let now = now_us();
        let mut woken = Woken::default();
        let ids: Vec<Uuid> = finishes.iter().map(|f| f.task_id.uuid()).collect();
        let answers = {
            let mut tx = self.db.begin().await?;
            let rows = load_tasks(&mut tx, &ids).await?;
            let by_id: HashMap<Uuid, TaskRow> = rows.into_iter().map(|r| (r.id, r)).collect();
            let mut answers: Vec<Option<std::result::Result<Finished, StoreError>>> =
                Vec::with_capacity(finishes.len());
            let mut accepted: Vec<(TaskRow, Outcome)> = Vec::new();
            let mut order: Vec<usize> = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, f) in finishes.into_iter().enumerate() {
                let Some(row) = by_id.get(&f.task_id.uuid()) else {
                    answers.push(Some(Err(not_found("task", f.task_id))));
                    continue;
                };
                if !seen.insert(row.id) {
                    answers.push(Some(Err(StoreError::Refused {
                        code: "task_not_running",
                        detail: "the same task was finished twice in one batch".into(),
                    })));
                    continue;
                }
                let check = check_finisher(row, f.lease_token.as_deref(), f.task_id, now);
                match check {
                    Ok(()) => {
                        answers.push(None);
                        order.push(i);
                        accepted.push((row.clone(), f.outcome));
                    }
                    Err(e) => answers.push(Some(Err(e))),
                }
            }
            if !accepted.is_empty() {
                let mut entries = Vec::new();
                let results = settle(&mut tx, accepted, now, &mut woken, &mut entries).await?;
                notify_lanes(&mut tx, &woken).await?;
                append_logs(&mut tx, ctx, at(now), entries).await?;
                tx.commit().await?;
                for (i, r) in order.into_iter().zip(results) {
                    answers[i] = Some(Ok(r));
                }
            }
            answers
        };
        self.wake(&woken);
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(StoreError::Conflict("not settled".into()))))
            .collect())
    }

    async fn expire_leases(&self, limit: usize) -> Result<usize> {
        self.expire_batch(limit).await
    }

    async fn next_run_at(&self, lane: &str) -> Result<Option<OffsetDateTime>> {
        let now = now_us();
        let row: (Option<i64>,) = {
            let p = &mut self.db.reader();

            sql(
                "SELECT min(run_at) FROM tasks WHERE lane = $1 AND status = 'ready' AND run_at > $2",
            )
            .bind(lane)
            .bind(now)
            .fetch_one(p)
            .await?
        };
        Ok(row.0.map(at))
    }

    async fn cancel_task(
        &self,
        id: TaskId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Task> {
        let now = now_us();
        let mut woken = Woken::default();
        {
            let mut tx = self.db.begin().await?;
            let rows = load_tasks(&mut tx, &[id.uuid()]).await?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| not_found("task", id))?;
            let st = row.status()?;
            if !st.cancellable() {
                return Err(StoreError::Refused {
                    code: "task_finished",
                    detail: format!("task {id} is {st}; only a task not yet done can be cancelled"),
                });
            }
            sql(
                "UPDATE tasks SET status = 'cancelled', lease_hash = NULL, lease_expires_at = NULL, \
                 last_error = COALESCE($2, last_error), finished_at = $3, updated_at = $3 WHERE id = $1",
            )
            .bind(id.uuid())
            .bind(&reason)
            .bind(now)
            .execute(&mut tx)
            .await?;
            let moved = move_downstream(
                &mut tx,
                &[id.uuid()],
                &[TaskStatus::Pending, TaskStatus::Ready, TaskStatus::Blocked],
                TaskStatus::Cancelled,
                now,
            )
            .await?;
            // A failed task's incident is settled by its cancellation.
            sql(
                "UPDATE incidents SET resolved_at = $2, resolution = 'cancel', resolved_by = $3, note = $4 \
                 WHERE task_id = $1 AND resolved_at IS NULL",
            )
            .bind(id.uuid())
            .bind(now)
            .bind(&ctx.actor)
            .bind(&reason)
            .execute(&mut tx)
            .await?;
            let mut cancelled: Vec<Uuid> = vec![row.unit_id];
            cancelled.extend(moved.iter().map(|m| m.1));
            let mut entries = Vec::new();
            let mut data = row.data(TaskStatus::Cancelled);
            data["reason"] = reason.clone().map(Value::String).unwrap_or(Value::Null);
            data["downstream_cancelled"] = Value::from(moved.len());
            entries.push(row.entry("task.cancel", "task.cancelled", data));
            refresh_unit_status(&mut tx, row.unit_id, now).await?;
            let no_done: Vec<Uuid> = Vec::new();
            count_on_units(&mut tx, &no_done, &cancelled, now, &mut woken, &mut entries).await?;
            notify_lanes(&mut tx, &woken).await?;
            append_logs(&mut tx, ctx, at(now), entries).await?;
            tx.commit().await?;
        };
        self.wake(&woken);
        self.get_task(id).await
    }

    async fn cancel_unit(
        &self,
        id: UnitId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Unit> {
        let now = now_us();
        let mut woken = Woken::default();
        {
            let mut tx = self.db.begin().await?;
            cancel_unit_in_tx(&mut tx, id, reason, ctx, now, &mut woken).await?;
            tx.commit().await?;
        };
        self.wake(&woken);
        self.unit_row(id).await
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Incident> {
        let row: Option<IncidentRow> = {
            let p = &mut self.db.reader();

            sql(format!("{INCIDENT_SELECT} WHERE i.id = $1"))
                .bind(id.uuid())
                .fetch_optional(p)
                .await?
        };
        Ok(row
            .ok_or_else(|| not_found("incident", id))?
            .into_incident())
    }

    async fn list_incidents(
        &self,
        open_only: bool,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Incident>> {
        let after: Option<IncidentId> = id_cursor(&page)?;
        let rows: Vec<IncidentRow> = {
            let p = &mut self.db.reader();

            let mut q = sql(format!("{INCIDENT_SELECT} WHERE 1 = 1"));
            if open_only {
                q.push(" AND i.resolved_at IS NULL");
            }
            if let Some(c) = client_id {
                q.push(" AND i.client_id = ").push_bind(c.uuid());
            }
            if let Some(a) = after {
                q.push(" AND i.id < ").push_bind(a.uuid());
            }
            q.push(" ORDER BY i.id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let items = rows.into_iter().map(IncidentRow::into_incident).collect();
        Ok(paginate(items, &page, |i| i.id.to_string()))
    }

    async fn resolve_incident(
        &self,
        id: IncidentId,
        resolution: Resolution,
        note: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Incident> {
        let now = now_us();
        let mut woken = Woken::default();
        {
            let mut tx = self.db.begin().await?;
            let found: Option<(Uuid, Uuid, Option<i64>)> = sql(format!(
                "SELECT task_id, unit_id, resolved_at FROM incidents WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?;
            let (task, unit, resolved) = found.ok_or_else(|| not_found("incident", id))?;
            if resolved.is_some() {
                return Err(StoreError::Refused {
                    code: "incident_resolved",
                    detail: format!("incident {id} is already resolved"),
                });
            }
            let rows = load_tasks(&mut tx, &[task]).await?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| not_found("task", task))?;
            sql(
                "UPDATE incidents SET resolved_at = $2, resolution = $3, resolved_by = $4, note = $5 WHERE id = $1",
            )
            .bind(id.uuid())
            .bind(now)
            .bind(resolution.as_str())
            .bind(&ctx.actor)
            .bind(&note)
            .execute(&mut tx)
            .await?;
            let mut entries = vec![{
                let mut e = LogEntry::new(
                    "incident.resolve",
                    Some(ClientId::from_uuid(row.client_id)),
                    id,
                )
                .event(
                    "incident.resolved",
                    Audience::Staff,
                    serde_json::json!({
                        "incident_id": id.to_string(),
                        "task_id": TaskId::from_uuid(row.id).to_string(),
                        "unit_id": UnitId::from_uuid(unit).to_string(),
                        "resolution": resolution.as_str(),
                        "note": note,
                    }),
                );
                e.trace_id = row.trace_id.clone();
                e
            }];
            match resolution {
                Resolution::Retry => {
                    if row.status()? != TaskStatus::Failed {
                        return Err(StoreError::Refused {
                            code: "task_not_failed",
                            detail: format!("task {} is {}, not failed", row.key, row.status),
                        });
                    }
                    sql("UPDATE tasks SET attempts = 0, run_at = 0, updated_at = $2 WHERE id = $1")
                        .bind(row.id)
                        .bind(now)
                        .execute(&mut tx)
                        .await?;
                    move_downstream(
                        &mut tx,
                        &[row.id],
                        &[TaskStatus::Blocked],
                        TaskStatus::Pending,
                        now,
                    )
                    .await?;
                    make_ready(&mut tx, vec![row.id], now, &mut woken).await?;
                    refresh_unit_status(&mut tx, unit, now).await?;
                }
                Resolution::Skip => {
                    if row.status()? != TaskStatus::Failed {
                        return Err(StoreError::Refused {
                            code: "task_not_failed",
                            detail: format!("task {} is {}, not failed", row.key, row.status),
                        });
                    }
                    sql(
                        "UPDATE tasks SET status = 'skipped', finished_at = $2, updated_at = $2 WHERE id = $1",
                    )
                    .bind(row.id)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
                    move_downstream(
                        &mut tx,
                        &[row.id],
                        &[TaskStatus::Blocked],
                        TaskStatus::Pending,
                        now,
                    )
                    .await?;
                    release_dependents(&mut tx, &[row.id], now, &mut woken).await?;
                    refresh_unit_status(&mut tx, unit, now).await?;
                    let no_cancelled: Vec<Uuid> = Vec::new();
                    count_on_units(
                        &mut tx,
                        &[unit],
                        &no_cancelled,
                        now,
                        &mut woken,
                        &mut entries,
                    )
                    .await?;
                }
                Resolution::Cancel => {
                    let reason = Some(format!(
                        "incident {id} resolved by cancelling the unit{}",
                        note.as_deref()
                            .map(|n| format!(": {n}"))
                            .unwrap_or_default()
                    ));
                    cancel_unit_in_tx(
                        &mut tx,
                        UnitId::from_uuid(unit),
                        reason,
                        ctx,
                        now,
                        &mut woken,
                    )
                    .await?;
                }
            }
            notify_lanes(&mut tx, &woken).await?;
            append_logs(&mut tx, ctx, at(now), entries).await?;
            tx.commit().await?;
        };
        self.wake(&woken);
        self.get_incident(id).await
    }

    async fn register_agent(&self, agent: NewAgent, ctx: &WriteContext) -> Result<(Agent, bool)> {
        let now = now_us();
        let created = {
            let mut tx = self.db.begin().await?;
            let existing: Option<(String,)> = sql(format!(
                "SELECT id FROM agents WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(&agent.id)
            .fetch_optional(&mut tx)
            .await?;
            if existing.is_some() {
                sql(
                    "UPDATE agents SET description = $2, capabilities = $3, updated_at = $4, \
                     last_seen_at = $4 WHERE id = $1",
                )
                .bind(&agent.id)
                .bind(&agent.description)
                .bind(Json(&agent.capabilities))
                .bind(now)
                .execute(&mut tx)
                .await?;
            } else {
                sql(
                    "INSERT INTO agents (id, description, capabilities, created_by, created_at, updated_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, $5)",
                )
                .bind(&agent.id)
                .bind(&agent.description)
                .bind(Json(&agent.capabilities))
                .bind(&ctx.actor)
                .bind(now)
                .execute(&mut tx)
                .await?;
            }
            let entry = LogEntry::new("agent.register", None, &agent.id).event(
                "agent.registered",
                Audience::Staff,
                serde_json::json!({
                    "agent_id": agent.id,
                    "capabilities": agent.capabilities,
                    "description": agent.description,
                }),
            );
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
            existing.is_none()
        };
        Ok((self.get_agent(&agent.id).await?, created))
    }

    async fn get_agent(&self, id: &str) -> Result<Agent> {
        let row: Option<AgentRow> = {
            let p = &mut self.db.reader();

            sql(
                "SELECT id, description, capabilities, created_by, created_at, updated_at, last_seen_at \
                 FROM agents WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
        };
        Ok(row.ok_or_else(|| not_found("agent", id))?.into())
    }

    async fn list_agents(&self) -> Result<Vec<Agent>> {
        let rows: Vec<AgentRow> = {
            let p = &mut self.db.reader();

            sql(
                "SELECT id, description, capabilities, created_by, created_at, updated_at, last_seen_at \
                 FROM agents ORDER BY id LIMIT 1000",
            )
            .fetch_all(p)
            .await?
        };
        Ok(rows.into_iter().map(Agent::from).collect())
    }

    async fn touch_agent(&self, id: &str) -> Result<()> {
        let now = now_us();
        {
            let p = &mut self.db.writer();

            sql("UPDATE agents SET last_seen_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(p)
                .await?;
        };
        Ok(())
    }

    async fn plan_jobs(&self, engagement_id: EngagementId) -> Result<Vec<PlanJobRecord>> {
        let rows: Vec<PlanJobRow> = {
            let p = &mut self.db.reader();

            sql(
                "SELECT p.job_key, p.inputs_hash, p.artifact_id, p.version, p.provenance, p.task_id, \
                 t.unit_id, t.status AS task_status, t.last_error AS task_error, p.updated_at \
                 FROM plan_jobs p LEFT JOIN tasks t ON t.id = p.task_id \
                 WHERE p.engagement_id = $1 ORDER BY p.job_key",
            )
            .bind(engagement_id.uuid())
            .fetch_all(p)
            .await?
        };
        rows.into_iter().map(PlanJobRow::record).collect()
    }

    async fn finish_generation(&self, g: Generated, ctx: &WriteContext) -> Result<GenerationDone> {
        let now = now_us();
        let mut woken = Woken::default();
        let created = ArtifactId::new();
        let done = {
            let mut tx = self.db.begin().await?;
            // Generation results of one engagement commit one at a time (on
            // PostgreSQL the engagement's row is the lock): each reads every
            // current artifact of the engagement, then writes one.
            sql(format!(
                "SELECT id FROM engagements WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(g.engagement_id.uuid())
            .fetch_optional::<(Uuid,)>(&mut tx)
            .await?;
            let rows = load_tasks(&mut tx, &[g.task_id.uuid()]).await?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| not_found("task", g.task_id))?;
            check_finisher(&row, Some(&g.lease_token), g.task_id, now)?;
            let latest: Option<(Option<Uuid>,)> =
                sql("SELECT task_id FROM plan_jobs WHERE engagement_id = $1 AND job_key = $2")
                    .bind(g.engagement_id.uuid())
                    .bind(&g.job_key)
                    .fetch_optional(&mut tx)
                    .await?;
            if latest.and_then(|l| l.0) != Some(row.id) {
                return Err(StoreError::Refused {
                    code: "job_superseded",
                    detail: format!(
                        "job {} of engagement {} has a newer task; this one's result is not recorded",
                        g.job_key, g.engagement_id
                    ),
                });
            }
            let current = current_in_engagement(&mut tx, g.engagement_id.uuid()).await?;
            let now_base = current
                .get(&g.artifact_type)
                .map(|c| (ArtifactId::from_uuid(c.id), c.version));
            if now_base != g.base {
                return Err(StoreError::Conflict(format!(
                    "the {} artifact changed while job {} ran (it read {}, it is now {}); the job runs again on the new one",
                    g.artifact_type,
                    g.job_key,
                    describe_base(g.base),
                    describe_base(now_base),
                )));
            }
            let gate = gating::evaluate(&g.artifact_type, &g.pipeline.requires, |t| {
                current.get(t).and_then(|c| status(&c.status).ok())
            });
            if !gate.allowed {
                return Err(StoreError::Gated(gate));
            }
            let (artifact_id, version, flagged) = match g.base {
                Some((id, expected)) => {
                    let input = VersionInput::New(NewVersion {
                        content: g.content.clone(),
                        sources: Some(g.sources.clone()),
                        note: Some(g.note.clone()),
                        provenance: g.provenance.clone(),
                        pipeline: Some(g.pipeline.clone()),
                    });
                    let (flagged, version) =
                        artifacts::write_version(&mut tx, id, expected, input, ctx).await?;
                    (id, version, flagged)
                }
                None => {
                    let new = NewArtifact {
                        client_id: g.client_id,
                        engagement_id: Some(g.engagement_id),
                        artifact_type: g.artifact_type.clone(),
                        title: g.title.clone(),
                        content: g.content.clone(),
                        sources: Some(g.sources.clone()),
                        note: Some(g.note.clone()),
                        provenance: g.provenance.clone(),
                        pipeline: Some(g.pipeline.clone()),
                    };
                    artifacts::create_artifact(&mut tx, created, &new, ctx, at(now)).await?;
                    (created, 1, Vec::new())
                }
            };
            let (inputs_hash,): (String,) = sql(
                "SELECT inputs_hash FROM artifact_versions WHERE artifact_id = $1 AND version = $2",
            )
            .bind(artifact_id.uuid())
            .bind(version)
            .fetch_one(&mut tx)
            .await?;
            sql(
                "UPDATE plan_jobs SET inputs_hash = $3, artifact_id = $4, version = $5, provenance = $6, \
                 updated_at = $7 WHERE engagement_id = $1 AND job_key = $2",
            )
            .bind(g.engagement_id.uuid())
            .bind(&g.job_key)
            .bind(&inputs_hash)
            .bind(artifact_id.uuid())
            .bind(version)
            .bind(&g.provenance)
            .bind(now)
            .execute(&mut tx)
            .await?;
            let mut output = match g.output {
                Value::Object(m) => m,
                _ => Default::default(),
            };
            output.insert("artifact_id".into(), Value::from(artifact_id.to_string()));
            output.insert("version".into(), Value::from(version));
            output.insert("inputs_hash".into(), Value::from(inputs_hash.clone()));
            output.insert("provenance".into(), Value::from(g.provenance.clone()));
            let mut entries = Vec::new();
            settle(
                &mut tx,
                vec![(
                    row,
                    Outcome::Completed {
                        output: Value::Object(output),
                    },
                )],
                now,
                &mut woken,
                &mut entries,
            )
            .await?;
            notify_lanes(&mut tx, &woken).await?;
            append_logs(&mut tx, ctx, at(now), entries).await?;
            tx.commit().await?;
            GenerationDone {
                artifact_id,
                version,
                inputs_hash,
                flagged,
            }
        };
        self.wake(&woken);
        Ok(done)
    }

    fn work_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        if let Pools::Postgres { pool } = &self.db {
            self.listening.get_or_init(|| {
                let pool = pool.clone();
                let signal = self.work.clone();
                tokio::spawn(async move {
                    loop {
                        match sqlx::postgres::PgListener::connect_with(&pool).await {
                            Ok(mut listener) => {
                                if listener.listen(CHANNEL).await.is_ok() {
                                    // Anything may have been missed while (re)connecting.
                                    signal.send_modify(|n| *n = n.wrapping_add(1));
                                    while listener.recv().await.is_ok() {
                                        signal.send_modify(|n| *n = n.wrapping_add(1));
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot LISTEN for work on PostgreSQL; retrying");
                            }
                        }
                        if pool.is_closed() || signal.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            });
        }
        self.work.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_microseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(at(unix_micros(t)), t);
        let _ = Duration::from_secs(1);
    }
}
