//! Incidents: tasks whose attempts are exhausted, waiting for a person.

use uuid::Uuid;
use waymark_domain::work::{Resolution, TaskStatus};
use waymark_domain::{ClientId, IncidentId, TaskId, UnitId};

use super::*;

pub(crate) async fn get_incident(store: &SqlStore, id: IncidentId) -> Result<Incident> {
    let row: Option<IncidentRow> = sql(format!("{INCIDENT_SELECT} WHERE i.id = $1"))
        .bind(id.uuid())
        .fetch_optional(&mut store.db.reader())
        .await?;
    Ok(row
        .ok_or_else(|| not_found("incident", id))?
        .into_incident())
}

pub(crate) async fn list_incidents(
    store: &SqlStore,
    open_only: bool,
    client_id: Option<ClientId>,
    page: PageRequest,
) -> Result<Page<Incident>> {
    let after: Option<IncidentId> = id_cursor(&page)?;
    let rows: Vec<IncidentRow> = {
        let p = &mut store.db.reader();
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

pub(crate) async fn resolve_incident(
    store: &SqlStore,
    id: IncidentId,
    resolution: Resolution,
    note: Option<String>,
    ctx: &WriteContext,
) -> Result<Incident> {
    let now = now_us();
    let mut woken = Woken::default();
    {
        let mut tx = store.db.begin().await?;
        let found: Option<(Uuid, Uuid, Option<i64>)> = sql(format!(
            "SELECT task_id, unit_id, resolved_at FROM incidents WHERE id = $1{}",
            store.lock_clause()
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
    store.wake(&woken);
    store.get_incident(id).await
}
