//! Units of work and their tasks: submitting (with plan links), reading,
//! cancelling.

use std::collections::HashMap;

use sqlx::types::Json;
use uuid::Uuid;
use waymark_domain::work::{TaskStatus, UnitStatus};
use waymark_domain::{ClientId, FieldError, TaskId, UnitId};

use super::*;

/// Inserts a unit of work with its tasks and edges inside the transaction, as
/// [`WorkStore::submit_unit`] does (client and unit-dependency checks, plan
/// links, roots made ready, audit); `woken` collects the lanes to wake.
pub(crate) async fn insert_unit(
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
    // A unit that waits for no other starts its roots ready, each with its
    // fair key (in priority order), in the insert itself.
    let mut fair: Vec<Option<i64>> = vec![None; new.tasks.len()];
    if waiting == 0 {
        let mut roots: Vec<usize> = (0..new.tasks.len())
            .filter(|&i| new.tasks[i].depends_on.is_empty())
            .collect();
        roots.sort_by_key(|&i| (new.tasks[i].priority, ids[i]));
        if let Some(&head) = roots.first() {
            let lane = new.tasks[head].executor.lane();
            let (first, clock) = fair_start(tx, new.client_id.uuid(), lane, roots.len()).await?;
            clock.execute(tx).await?;
            for (rank, &i) in roots.iter().enumerate() {
                fair[i] = Some(first + rank as i64);
                woken.lanes.insert(new.tasks[i].executor.lane().to_owned());
            }
        }
    }
    for (chunk_no, chunk) in new.tasks.chunks(500).enumerate() {
        let mut q = sql(
            "INSERT INTO tasks (id, unit_id, client_id, key, name, executor, lane, status, \
                 input, depends_on, priority, pending_deps, max_attempts, timeout_s, \
                 backoff_initial_ms, backoff_max_ms, trace_id, created_at, updated_at, \
                 contract, handoff_from, hands_off, fair_key) ",
        );
        q.push_values(tx.backend(), chunk.iter().enumerate(), |mut b, (i, t)| {
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
                .push_bind(if fair[idx].is_some() {
                    "ready"
                } else {
                    "pending"
                })
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
                .push_bind(i64::from(hands_off[idx]))
                .push_bind(fair[idx].unwrap_or(0));
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
        q.push_values(tx.backend(), chunk, |mut b, (d, t)| {
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
pub(crate) async fn check_plan_link(tx: &mut Tx, link: &PlanLink, client: ClientId) -> Result<()> {
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
             WHERE p.engagement_id = $1 AND t.status IN ('pending', 'ready', 'held', 'running', 'blocked')",
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

/// Cancels every task of a unit not yet done, closes its incidents and the unit.
pub(crate) async fn cancel_unit_in_tx(
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
    super::settle::cancel_attempts(
        tx,
        super::settle::RunningOf::Unit(id.uuid()),
        reason.as_deref().unwrap_or("the unit was cancelled"),
        now,
    )
    .await?;
    let n: Vec<(Uuid,)> = sql(
        "UPDATE tasks SET status = 'cancelled', lease_hash = NULL, lease_expires_at = NULL, \
         finished_at = $2, updated_at = $2 \
         WHERE unit_id = $1 AND status IN ('pending', 'ready', 'held', 'running', 'blocked', 'failed') \
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

impl SqlStore {
    pub(crate) async fn unit_row(&self, id: UnitId) -> Result<Unit> {
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
}

pub(crate) async fn submit_unit(
    store: &SqlStore,
    new: NewUnit,
    ctx: &WriteContext,
) -> Result<Created<Unit>> {
    let now = now_us();
    let id = UnitId::new();
    let mut woken = Woken::default();
    let replayed = {
        let mut tx = store.db.begin().await?;
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
    store.wake(&woken);
    match replayed {
        Some(existing) => Ok(Created {
            record: store.unit_row(UnitId::from_uuid(existing)).await?,
            replayed: true,
        }),
        None => Ok(Created {
            record: store.unit_row(id).await?,
            replayed: false,
        }),
    }
}

pub(crate) async fn get_unit(store: &SqlStore, id: UnitId) -> Result<UnitDetail> {
    let unit = store.unit_row(id).await?;
    let counts = store.count_tasks(Some(id)).await?;
    {
        let p = &mut store.db.reader();
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

pub(crate) async fn list_units(
    store: &SqlStore,
    client_id: Option<ClientId>,
    page: PageRequest,
) -> Result<Page<Unit>> {
    let after: Option<UnitId> = id_cursor(&page)?;
    let rows: Vec<UnitRow> = {
        let p = &mut store.db.reader();
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
            let p = &mut store.db.reader();
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

pub(crate) async fn get_task(store: &SqlStore, id: TaskId) -> Result<Task> {
    let row: Option<TaskRow> = sql(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
        .bind(id.uuid())
        .fetch_optional(&mut store.db.reader())
        .await?;
    row.ok_or_else(|| not_found("task", id))?.into_task()
}

pub(crate) async fn list_tasks(
    store: &SqlStore,
    filter: TaskFilter,
    page: PageRequest,
) -> Result<Page<Task>> {
    let after: Option<TaskId> = id_cursor(&page)?;
    let rows: Vec<TaskRow> = {
        let p = &mut store.db.reader();
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

pub(crate) async fn count_tasks(
    store: &SqlStore,
    unit_id: Option<UnitId>,
) -> Result<Vec<(TaskStatus, i64)>> {
    let rows: Vec<(String, i64)> = {
        let p = &mut store.db.reader();
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

pub(crate) async fn engine_gauges(store: &SqlStore) -> Result<EngineGauges> {
    let p = &mut store.db.reader();
    // Each half reads one partial index (`tasks_claim`, `tasks_leases`).
    let rows: Vec<(String, i64, i64)> = sql(
        "SELECT lane, CAST(sum(ready) AS BIGINT), CAST(sum(running) AS BIGINT) FROM ( \
           SELECT lane, count(*) AS ready, 0 AS running FROM tasks WHERE status = 'ready' GROUP BY lane \
           UNION ALL \
           SELECT lane, 0 AS ready, count(*) AS running FROM tasks WHERE status = 'running' GROUP BY lane \
         ) AS t GROUP BY lane ORDER BY lane",
    )
    .fetch_all(&mut *p)
    .await?;
    let (open_incidents,): (i64,) = sql("SELECT count(*) FROM incidents WHERE resolved_at IS NULL")
        .fetch_one(p)
        .await?;
    Ok(EngineGauges {
        lanes: rows,
        open_incidents,
    })
}

pub(crate) async fn cancel_unit(
    store: &SqlStore,
    id: UnitId,
    reason: Option<String>,
    ctx: &WriteContext,
) -> Result<Unit> {
    let now = now_us();
    let mut woken = Woken::default();
    {
        let mut tx = store.db.begin().await?;
        cancel_unit_in_tx(&mut tx, id, reason, ctx, now, &mut woken).await?;
        tx.commit().await?;
    };
    store.wake(&woken);
    store.unit_row(id).await
}
