//! The ends of attempts: completions, failures (retries, incidents), and
//! cancelling tasks.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;
use waymark_domain::criteria;
use waymark_domain::work::{self, AfterFailure, AttemptOutcome, TaskStatus};
use waymark_domain::{ClientId, IncidentId, JourneyId, TaskId};

use super::*;

/// When and how a batch of attempts ended.
pub(crate) struct Ends<'a> {
    /// The engine's clock (see [`engine_now`]).
    pub(crate) now: i64,
    /// Who ended the attempts nobody had claimed (a person finishing a human task).
    pub(crate) finisher: &'a str,
    /// Their leases ran out: the attempts expired rather than failed.
    pub(crate) expired: bool,
}

/// Applies the ends of attempts (already checked) inside the transaction:
/// each attempt's row is written with its outcome (a task finished without
/// a claim gets one started and ended at once); completions release dependents and
/// count on units; failures are retried after their backoff or, exhausted,
/// fail the task, block what is downstream and open an incident. Answers the
/// results; pushes audit records.
pub(crate) async fn settle(
    tx: &mut Tx,
    items: Vec<(TaskRow, Outcome)>,
    ends: &Ends<'_>,
    woken: &mut Woken,
    entries: &mut Vec<LogEntry>,
) -> Result<Vec<Finished>> {
    let now = ends.now;
    // The attempts that ended, to record.
    let mut ended: Vec<Ended> = Vec::with_capacity(items.len());
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
        let (attempt_outcome, attempt_error) = match &outcome {
            Outcome::Completed { .. } => (AttemptOutcome::Completed, None),
            Outcome::Failed { error, .. } if ends.expired => (
                AttemptOutcome::Expired,
                Some(error.chars().take(2000).collect()),
            ),
            Outcome::Failed { error, .. } => (
                AttemptOutcome::Failed,
                Some(error.chars().take(2000).collect()),
            ),
        };
        // A claimed attempt is as its task row says; one nobody claimed (a
        // person finishing a human task) is numbered after the task's last.
        let claimed = row.status == TaskStatus::Running.as_str();
        ended.push(Ended {
            task: row.id,
            attempt: row.attempt_seq + i64::from(!claimed),
            started_at: if claimed { row.started_at } else { Some(now) },
            worker: if claimed {
                row.claimed_by.clone()
            } else {
                Some(ends.finisher.to_owned())
            },
            claimed,
            outcome: attempt_outcome,
            error: attempt_error,
        });
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
                        sql(format!(
                            "UPDATE tasks SET status = {READY_OR_HELD}, run_at = $2, last_error = $3, \
                             lease_hash = NULL, lease_expires_at = NULL, updated_at = $4 WHERE id = $1"
                        ))
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
    record_attempts(tx, &ended, now).await?;
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
            q.push_values(tx.backend(), chunk, |mut b, (id, out)| {
                b.push_bind(*id).push_bind(Json(&out.0));
            });
            q.push(") AS v WHERE tasks.id = v.column1");
            // Nothing below reads these rows back: the update goes with
            // the audit record, in its round trip.
            tx.write_later(q, chunk.len() as u64);
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

pub(crate) async fn finish(
    store: &SqlStore,
    finishes: Vec<Finish>,
    ctx: &WriteContext,
) -> Result<Vec<std::result::Result<Finished, StoreError>>> {
    let mut woken = Woken::default();
    let ids: Vec<Uuid> = finishes.iter().map(|f| f.task_id.uuid()).collect();
    let answers = {
        let mut tx = store.db.begin().await?;
        let (rows, now) = load_tasks_at(&mut tx, &ids).await?;
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
            let ends = Ends {
                now,
                finisher: &ctx.actor,
                expired: false,
            };
            let results = settle(&mut tx, accepted, &ends, &mut woken, &mut entries).await?;
            notify_lanes(&mut tx, &woken).await?;
            append_logs(&mut tx, ctx, at(now), entries).await?;
            tx.commit().await?;
            for (i, r) in order.into_iter().zip(results) {
                answers[i] = Some(Ok(r));
            }
        }
        answers
    };
    store.wake(&woken);
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(StoreError::Conflict("not settled".into()))))
        .collect())
}

pub(crate) async fn cancel_task(
    store: &SqlStore,
    id: TaskId,
    reason: Option<String>,
    ctx: &WriteContext,
) -> Result<Task> {
    let now = now_us();
    let mut woken = Woken::default();
    {
        let mut tx = store.db.begin().await?;
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
        cancel_attempts(
            &mut tx,
            RunningOf::Tasks(&[id.uuid()]),
            reason.as_deref().unwrap_or("the task was cancelled"),
            now,
        )
        .await?;
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
            &[
                TaskStatus::Pending,
                TaskStatus::Ready,
                TaskStatus::Held,
                TaskStatus::Blocked,
            ],
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
    store.wake(&woken);
    store.get_task(id).await
}

/// An attempt that ended, as its row: a claimed one numbered, started and
/// claimed as its task row says; one nobody claimed (a person finishing a
/// human task) numbered after the task's last, started and ended at once.
struct Ended {
    task: Uuid,
    attempt: i64,
    started_at: Option<i64>,
    worker: Option<String>,
    claimed: bool,
    outcome: AttemptOutcome,
    error: Option<String>,
}

/// Writes the rows of the attempts that ended (a running attempt has none:
/// its task row is its record until it ends), and numbers the unclaimed ones
/// on their tasks.
async fn record_attempts(tx: &mut Tx, ended: &[Ended], now: i64) -> Result<()> {
    for chunk in ended.chunks(500) {
        let mut q = sql(
            "INSERT INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, worker) ",
        );
        q.push_values(tx.backend(), chunk, |mut b, e| {
            b.push_bind(e.task)
                .push_bind(e.attempt)
                .push_bind(e.started_at)
                .push_bind(now)
                .push_bind(e.outcome.as_str())
                .push_bind(e.error.as_deref())
                .push_bind(e.worker.as_deref());
        });
        // Nothing in the transaction reads the attempts back.
        tx.write_later(q, chunk.len() as u64);
    }
    let unclaimed: Vec<Uuid> = ended
        .iter()
        .filter(|e| !e.claimed)
        .map(|e| e.task)
        .collect();
    for chunk in unclaimed.chunks(1000) {
        let mut q = sql("UPDATE tasks SET attempt_seq = attempt_seq + 1 WHERE id IN ");
        q.push_list(chunk.iter().copied());
        q.execute(tx).await?;
    }
    Ok(())
}

/// Which running tasks' attempts a cancellation ends.
pub(crate) enum RunningOf<'a> {
    Tasks(&'a [Uuid]),
    Unit(Uuid),
}

/// Records, as cancelled with `error`, the attempts of the tasks of `of` that
/// are running; called before their status changes.
pub(crate) async fn cancel_attempts(
    tx: &mut Tx,
    of: RunningOf<'_>,
    error: &str,
    now: i64,
) -> Result<()> {
    let mut q = sql(
        "INSERT INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, worker) \
         SELECT id, attempt_seq, started_at, $1, 'cancelled', $2, claimed_by FROM tasks \
         WHERE status = 'running' AND ",
    )
    .bind(now)
    .bind(error);
    match of {
        RunningOf::Tasks(tasks) => {
            q.push("id IN ");
            q.push_list(tasks.iter().copied());
        }
        RunningOf::Unit(unit) => {
            q.push("unit_id = ");
            q.push_bind(unit);
        }
    }
    q.execute(tx).await?;
    Ok(())
}
