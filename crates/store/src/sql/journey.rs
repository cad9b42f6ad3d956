//! [`JourneyStore`] on SQL. A transition is one transaction: the journey's row
//! (locked on PostgreSQL) must still be at the position the caller decided on;
//! its new position, the history entry, the units of work it starts (through
//! `work::insert_unit`) and the audit record go in together.

#![allow(unused_imports)] // the engine's macros name what they use

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;
use waymark_domain::criteria::{Trigger, ValidationResult};
use waymark_domain::journey::{Event, JourneyTemplate, Phase, Position};
use waymark_domain::work::{self, TaskStatus, UnitStatus};
use waymark_domain::{ArtifactId, ClientId, FieldError, JourneyId, TaskId, UnitId};

use super::work::*;
use super::*;
use crate::journey::*;
use crate::work::*;

const JOURNEY_COLUMNS: &str = "id, client_id, template, definition, name, phase, stage, rollback_to, \
     paused, source_artifact_id, trace_id, last_validation, created_by, created_at, updated_at, \
     started_at, stage_started_at, finished_at, input, outcome";

#[derive(FromRow)]
struct JourneyRow {
    id: Uuid,
    client_id: Uuid,
    template: String,
    definition: Json<JourneyTemplate>,
    name: String,
    phase: String,
    stage: Option<i64>,
    rollback_to: Option<i64>,
    paused: i64,
    source_artifact_id: Option<Uuid>,
    trace_id: Option<String>,
    last_validation: Option<Json<ValidationResult>>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    stage_started_at: Option<i64>,
    finished_at: Option<i64>,
    input: Option<Json<Value>>,
    outcome: Option<String>,
}

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Pending => "pending",
        Phase::Active => "active",
        Phase::RollingBack => "rolling_back",
        Phase::Completed => "completed",
        Phase::Cancelled => "cancelled",
    }
}

fn parse_phase(s: &str) -> Result<Phase> {
    Ok(match s {
        "pending" => Phase::Pending,
        "active" => Phase::Active,
        "rolling_back" => Phase::RollingBack,
        "completed" => Phase::Completed,
        "cancelled" => Phase::Cancelled,
        other => {
            return Err(StoreError::Conflict(format!(
                "unknown journey phase {other}"
            )));
        }
    })
}

fn stage_id(def: &JourneyTemplate, i: Option<i64>) -> Option<String> {
    i.and_then(|i| def.stages.get(i as usize))
        .map(|s| s.id.clone())
}

impl JourneyRow {
    fn journey(self) -> Result<Journey> {
        let def = self.definition.0;
        let phase = parse_phase(&self.phase)?;
        let position = Position {
            phase,
            stage: self.stage.map(|s| s as usize),
            rollback_to: self.rollback_to.map(|s| s as usize),
            paused: self.paused != 0,
        };
        Ok(Journey {
            id: JourneyId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            name: self.name,
            template: self.template,
            state: position.state(&def).to_owned(),
            phase,
            stage: stage_id(&def, self.stage),
            rollback_to: stage_id(&def, self.rollback_to),
            paused: self.paused != 0,
            stages: def.stages.iter().map(|s| s.id.clone()).collect(),
            source_artifact_id: self.source_artifact_id.map(ArtifactId::from_uuid),
            trace_id: self.trace_id,
            last_validation: self.last_validation.map(|v| v.0),
            created_by: self.created_by,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            started_at: self.started_at.map(at),
            stage_started_at: self.stage_started_at.map(at),
            finished_at: self.finished_at.map(at),
            input: self.input.map(|i| i.0).unwrap_or(Value::Null),
            outcome: self.outcome,
            definition: def,
        })
    }
}

#[derive(FromRow)]
struct RunHistoryRow {
    journey_id: Uuid,
    #[sqlx(flatten)]
    row: HistoryRow,
}

#[derive(FromRow)]
struct HistoryRow {
    seq: i64,
    at: i64,
    actor: String,
    event: String,
    from_state: String,
    to_state: String,
    reason: Option<String>,
    trigger: Option<String>,
    automatic: i64,
    validation: Option<Json<ValidationResult>>,
    overrides: Option<Json<Vec<String>>>,
    trace_id: Option<String>,
}

impl HistoryRow {
    fn entry(self) -> Result<JourneyHistoryEntry> {
        Ok(JourneyHistoryEntry {
            seq: self.seq,
            at: at(self.at),
            actor: self.actor,
            event: parse_event(&self.event)?,
            from: self.from_state,
            to: self.to_state,
            reason: self.reason,
            trigger: self.trigger.as_deref().map(parse_trigger).transpose()?,
            automatic: self.automatic != 0,
            validation: self.validation.map(|v| v.0),
            overrides: self.overrides.map(|o| o.0).unwrap_or_default(),
            trace_id: self.trace_id,
        })
    }
}

fn parse_event(s: &str) -> Result<Event> {
    Event::ALL
        .into_iter()
        .find(|e| e.as_str() == s)
        .ok_or_else(|| StoreError::Conflict(format!("unknown journey event {s}")))
}

fn parse_trigger(s: &str) -> Result<Trigger> {
    Trigger::ALL
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| StoreError::Conflict(format!("unknown rollback trigger {s}")))
}

fn journey_data(j: &JourneyRow, to: &str) -> Value {
    serde_json::json!({
        "journey_id": JourneyId::from_uuid(j.id).to_string(),
        "client_id": ClientId::from_uuid(j.client_id).to_string(),
        "template": j.template,
        "state": to,
    })
}

/// Reads a journey's row inside the transaction, locked for this writer.
async fn lock_journey(tx: &mut Tx, id: JourneyId) -> Result<JourneyRow> {
    let row: Option<JourneyRow> = sql(format!(
        "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(id.uuid())
    .fetch_optional(tx)
    .await?;
    row.ok_or_else(|| not_found("journey", id))
}

#[async_trait]
impl JourneyStore for SqlStore {
    async fn put_journey_template(
        &self,
        template: JourneyTemplate,
        ctx: &WriteContext,
    ) -> Result<bool> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            if let Some(r) = idempotency::replay_of(
                &mut tx,
                ctx,
                &["journey_template.created", "journey_template.replaced"],
            )
            .await?
            {
                return Ok(r.kind == "journey_template.created");
            }
            let existing: Option<(String,)> =
                sql("SELECT name FROM journey_templates WHERE name = $1")
                    .bind(&template.name)
                    .fetch_optional(&mut tx)
                    .await?;
            sql(
                "INSERT INTO journey_templates (name, definition, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) \
                 DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
            )
            .bind(&template.name)
            .bind(Json(&template))
            .bind(&ctx.actor)
            .bind(now)
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("journey_template.put", None, &template.name).event(
                "journey_template.saved",
                Audience::Staff,
                serde_json::json!({"name": template.name, "stages": template.stages.len()}),
            );
            append_log(&mut tx, ctx, at(now), entry).await?;
            let kind = if existing.is_none() {
                "journey_template.created"
            } else {
                "journey_template.replaced"
            };
            idempotency::record(&mut tx, ctx, kind, Uuid::nil(), at(now)).await?;
            tx.commit().await?;
            Ok(existing.is_none())
        }
    }

    async fn list_journey_templates(&self) -> Result<Vec<JourneyTemplate>> {
        let rows: Vec<(Json<JourneyTemplate>,)> =
            sql("SELECT definition FROM journey_templates ORDER BY name")
                .fetch_all(&mut self.db.reader())
                .await?;
        Ok(rows.into_iter().map(|r| r.0.0).collect())
    }

    async fn create_journey(
        &self,
        new: NewJourney,
        ctx: &WriteContext,
    ) -> Result<Created<Journey>> {
        let id = JourneyId::new();
        let now = now_us();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "journey").await? {
                Some(existing)
            } else {
                require_client(&mut tx, new.client_id).await?;
                // The implementation bridge: the approved artifact becomes
                // `implemented`, in the transaction that creates its journey.
                let mut implemented = None;
                if let Some(a) = new.source_artifact_id {
                    let exists: Option<(Uuid,)> =
                        sql("SELECT client_id FROM artifacts WHERE id = $1")
                            .bind(a.uuid())
                            .fetch_optional(&mut tx)
                            .await?;
                    if exists.map(|o| o.0) != Some(new.client_id.uuid()) {
                        return Err(FieldError::new(
                            "/source_artifact_id",
                            format!("no artifact {a} for client {}", new.client_id),
                        )
                        .into());
                    }
                    let current = lock_artifact(&mut tx, a).await?;
                    let from = status(&current.status)?;
                    if from != ArtifactStatus::Approved {
                        return Err(StoreError::Conflict(format!(
                            "artifact {a} is {from}; only an approved artifact is implemented{}",
                            match from {
                                ArtifactStatus::Implemented
                                | ArtifactStatus::Active
                                | ArtifactStatus::Paused
                                | ArtifactStatus::Completed => " (it already has its journey)",
                                _ => " (have it approved first)",
                            }
                        )));
                    }
                    let reason = Some(format!("implemented as journey {id}"));
                    let to = ArtifactStatus::Implemented;
                    let version = apply_transition(
                        &mut tx,
                        a,
                        &current,
                        (from, to, HistoryAction::Transition),
                        &reason,
                        None::<Pipeline>.as_ref(),
                        ctx,
                        at(now),
                    )
                    .await?;
                    implemented = Some(transition_entry(
                        a,
                        &current,
                        from,
                        to,
                        version,
                        &reason,
                        "artifact.implement",
                        None,
                    ));
                }
                sql(format!(
                    "INSERT INTO journeys ({JOURNEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'pending', NULL, NULL, \
                     0, $6, $7, NULL, $8, $9, $9, NULL, NULL, NULL, $10, NULL)"
                ))
                .bind(id.uuid())
                .bind(new.client_id.uuid())
                .bind(&new.template.name)
                .bind(Json(&new.template))
                .bind(&new.name)
                .bind(new.source_artifact_id.map(|a| a.uuid()))
                .bind(&ctx.trace_id)
                .bind(&ctx.actor)
                .bind(now)
                .bind((!new.input.is_null()).then_some(Json(&new.input)))
                .execute(&mut tx)
                .await?;
                idempotency::record(&mut tx, ctx, "journey", id.uuid(), at(now)).await?;
                if let Some(item) = new.queue_item {
                    super::playbook::take_item(&mut tx, item, new.client_id, id, now).await?;
                }
                if let Some(entry) = implemented {
                    append_log(&mut tx, ctx, at(now), entry).await?;
                }
                let entry = LogEntry::new("journey.create", Some(new.client_id), id).event(
                    "journey.created",
                    Audience::Staff,
                    serde_json::json!({
                        "journey_id": id.to_string(),
                        "client_id": new.client_id.to_string(),
                        "template": new.template.name,
                        "name": new.name,
                        "state": "pending",
                        "source_artifact_id": new.source_artifact_id.map(|a| a.to_string()),
                    }),
                );
                append_log(&mut tx, ctx, at(now), entry).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(JourneyId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_journey(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_journey(&self, id: JourneyId) -> Result<Journey> {
        let row: Option<JourneyRow> = sql(format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.ok_or_else(|| not_found("journey", id))?.journey()
    }

    async fn list_journeys(
        &self,
        client_id: Option<ClientId>,
        template: Option<String>,
        page: PageRequest,
    ) -> Result<Page<Journey>> {
        let after: Option<JourneyId> = id_cursor(&page)?;
        let rows: Vec<JourneyRow> = {
            let p = &mut self.db.reader();
            let mut q = sql(format!(
                "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE 1 = 1"
            ));
            if let Some(c) = client_id {
                q.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(t) = &template {
                q.push(" AND template = ").push_bind(t.clone());
            }
            if let Some(a) = after {
                q.push(" AND id < ").push_bind(a.uuid());
            }
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let items = rows
            .into_iter()
            .map(JourneyRow::journey)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, &page, |j| j.id.to_string()))
    }

    async fn journey_event(&self, t: JourneyTransition, ctx: &WriteContext) -> Result<Journey> {
        let now = now_us();
        let mut woken = Woken::default();
        {
            let mut tx = self.db.begin().await?;
            let row = lock_journey(&mut tx, t.journey_id).await?;
            let def = row.definition.0.clone();
            let here = Position {
                phase: parse_phase(&row.phase)?,
                stage: row.stage.map(|s| s as usize),
                rollback_to: row.rollback_to.map(|s| s as usize),
                paused: row.paused != 0,
            };
            if here != t.from {
                return Err(StoreError::Conflict(format!(
                    "journey {} moved while the {} was decided: it is now {}; look again and retry",
                    t.journey_id,
                    t.event,
                    here.state(&def)
                )));
            }
            let (seq,): (i64,) =
                sql("SELECT COALESCE(MAX(seq), 0) + 1 FROM journey_history WHERE journey_id = $1")
                    .bind(t.journey_id.uuid())
                    .fetch_one(&mut tx)
                    .await?;
            let from_state = here.state(&def).to_owned();
            let to_state = t.to.state(&def).to_owned();
            let enters_stage = matches!(
                t.event,
                Event::Start | Event::Promote | Event::CompleteRollback
            );
            let finished = matches!(t.to.phase, Phase::Completed | Phase::Cancelled);
            let enters_stage = enters_stage || t.event == Event::Skip;
            sql(
                "UPDATE journeys SET phase = $2, stage = $3, rollback_to = $4, paused = $5, updated_at = $6, \
                 started_at = COALESCE(started_at, CASE WHEN $7 THEN $6 END), \
                 stage_started_at = CASE WHEN $8 THEN $6 ELSE stage_started_at END, \
                 last_validation = CASE WHEN $8 THEN NULL ELSE last_validation END, \
                 finished_at = CASE WHEN $9 THEN $6 ELSE finished_at END, \
                 outcome = COALESCE($10, outcome) WHERE id = $1",
            )
            .bind(t.journey_id.uuid())
            .bind(phase_str(t.to.phase))
            .bind(t.to.stage.map(|s| s as i64))
            .bind(t.to.rollback_to.map(|s| s as i64))
            .bind(i64::from(t.to.paused))
            .bind(now)
            .bind(t.event == Event::Start)
            .bind(enters_stage)
            .bind(finished)
            .bind(&t.outcome)
            .execute(&mut tx)
            .await?;
            // The playbook's queue item follows the journey and takes the
            // saved action's change.
            super::playbook::follow_journey(
                &mut tx,
                t.journey_id,
                t.event,
                &to_state,
                t.outcome.as_deref(),
                t.item.as_ref(),
                now,
            )
            .await?;
            sql(
                "INSERT INTO journey_history (journey_id, seq, at, actor, event, from_state, to_state, \
                 from_stage, to_stage, reason, trigger, automatic, validation, overrides, trace_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(t.journey_id.uuid())
            .bind(seq)
            .bind(now)
            .bind(&ctx.actor)
            .bind(t.event.as_str())
            .bind(&from_state)
            .bind(&to_state)
            .bind(here.stage.map(|s| s as i64))
            .bind(t.to.stage.map(|s| s as i64))
            .bind(&t.reason)
            .bind(t.trigger.map(Trigger::as_str))
            .bind(i64::from(t.automatic))
            .bind(t.validation.as_ref().map(Json))
            .bind((!t.overrides.is_empty()).then_some(Json(&t.overrides)))
            .bind(&ctx.trace_id)
            .execute(&mut tx)
            .await?;
            // The artifact it implements follows it: active when it starts,
            // paused with it, completed or cancelled with it.
            let mut followed = None;
            if let Some(a) = row.source_artifact_id.map(ArtifactId::from_uuid) {
                let current = lock_artifact(&mut tx, a).await?;
                let from = status(&current.status)?;
                if let Some(to) = lifecycle::follow_journey(from, t.event) {
                    let reason = Some(format!("journey {} {}", t.journey_id, t.event));
                    let version = apply_transition(
                        &mut tx,
                        a,
                        &current,
                        (from, to, HistoryAction::Transition),
                        &reason,
                        None::<Pipeline>.as_ref(),
                        ctx,
                        at(now),
                    )
                    .await?;
                    followed = Some(transition_entry(
                        a,
                        &current,
                        from,
                        to,
                        version,
                        &reason,
                        "artifact.follow_journey",
                        None,
                    ));
                }
            }
            // A paused journey holds its open units (nothing of it is
            // claimed) until it resumes.
            if matches!(t.event, Event::Pause | Event::Resume) {
                let open: Vec<(Uuid,)> = sql(
                    "SELECT u.id FROM journey_units ju JOIN work_units u ON u.id = ju.unit_id \
                     WHERE u.status NOT IN ('completed', 'cancelled') AND ju.journey_id = $1",
                )
                .bind(t.journey_id.uuid())
                .fetch_all(&mut tx)
                .await?;
                let open: Vec<Uuid> = open.into_iter().map(|u| u.0).collect();
                hold_units(&mut tx, &open, t.event == Event::Pause, now, &mut woken).await?;
            }
            // A cancelled journey stops its work; a rolled-back stage stops its
            // activities (they start again when the stage is entered again).
            let stop = match t.event {
                Event::Cancel => Some(("the journey was cancelled", None)),
                Event::Rollback => Some(("the stage was rolled back", here.stage)),
                _ => None,
            };
            if let Some((why, stage)) = stop {
                let mut q = sql(
                    "SELECT u.id FROM journey_units ju JOIN work_units u ON u.id = ju.unit_id \
                     WHERE u.status NOT IN ('completed', 'cancelled') AND ju.journey_id = ",
                );
                q.push_bind(t.journey_id.uuid());
                if let Some(s) = stage {
                    q.push(" AND ju.kind = 'activity' AND ju.stage = ")
                        .push_bind(s as i64);
                }
                let open: Vec<(Uuid,)> = q.fetch_all(&mut tx).await?;
                for (u,) in open {
                    cancel_unit_in_tx(
                        &mut tx,
                        UnitId::from_uuid(u),
                        Some(why.to_owned()),
                        ctx,
                        now,
                        &mut woken,
                    )
                    .await?;
                }
            }
            let stage = t.to.stage.unwrap_or(0) as i64;
            // The journey's work carries the trace id of the request that
            // created it, whoever moves it later.
            let mut unit_ctx = ctx.clone();
            unit_ctx.trace_id = row.trace_id.clone().or_else(|| ctx.trace_id.clone());
            for (unit, kind) in &t.units {
                let uid = UnitId::new();
                insert_unit(&mut tx, uid, unit, &unit_ctx, now, &mut woken).await?;
                sql(
                    "INSERT INTO journey_units (journey_id, unit_id, stage, kind, entered_seq) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(t.journey_id.uuid())
                .bind(uid.uuid())
                .bind(stage)
                .bind(kind.as_str())
                .bind(seq)
                .execute(&mut tx)
                .await?;
            }
            notify_lanes(&mut tx, &woken).await?;
            let mut data = journey_data(&row, &to_state);
            data["event"] = Value::from(t.event.as_str());
            data["from"] = Value::from(from_state.clone());
            data["trigger"] = serde_json::to_value(t.trigger).unwrap_or(Value::Null);
            data["automatic"] = Value::from(t.automatic);
            data["outcome"] = t.outcome.clone().into();
            data["reason"] = t.reason.clone().into();
            let mut entry = LogEntry::new(
                "journey.event",
                Some(ClientId::from_uuid(row.client_id)),
                t.journey_id,
            )
            .event("journey.transitioned", Audience::Staff, data.clone());
            // An escalated playbook tells its new owner (by mail too).
            if let Some(waymark_domain::queue::Effect::Escalate { to }) = &t.item {
                data["to"] = to.clone().into();
                data["name"] = row.name.clone().into();
                data["change"] = "escalate".into();
                entry = entry.event("queue.escalated", Audience::Staff, data);
            }
            entry.trace_id = row.trace_id.clone().or_else(|| ctx.trace_id.clone());
            let entries = std::iter::once(entry).chain(followed).collect();
            append_logs(&mut tx, ctx, at(now), entries).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }?;
        self.wake(&woken);
        self.get_journey(t.journey_id).await
    }

    async fn template_runs(&self, template: &str, limit: usize) -> Result<Vec<JourneyRecords>> {
        type Rows = (
            Vec<JourneyRow>,
            Vec<RunHistoryRow>,
            Vec<(Uuid, i64, i64, i64)>,
        );
        let (journeys, history, attempts): Rows = {
            let p = &mut self.db.reader();
            let journeys: Vec<JourneyRow> = sql(format!(
                "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE template = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(template)
            .bind(limit as i64)
            .fetch_all(p)
            .await?;
            let oldest = journeys.last().map(|j| j.id).unwrap_or_default();
            // The histories without their validations: the analytics need the steps.
            let history: Vec<RunHistoryRow> = sql(
                "SELECT h.journey_id, h.seq, h.at, h.actor, h.event, h.from_state, h.to_state, h.reason, \
                 h.trigger, h.automatic, NULL AS validation, h.overrides, h.trace_id \
                 FROM journey_history h JOIN journeys j ON j.id = h.journey_id \
                 WHERE j.template = $1 AND j.id >= $2 ORDER BY h.journey_id, h.seq",
            )
            .bind(template)
            .bind(oldest)
            .fetch_all(p)
            .await?;
            let attempts: Vec<(Uuid, i64, i64, i64)> = sql(
                "SELECT a.journey_id, a.stage, a.passed, a.at FROM journey_attempts a \
                 JOIN journeys j ON j.id = a.journey_id WHERE j.template = $1 AND j.id >= $2 \
                 ORDER BY a.journey_id, a.seq",
            )
            .bind(template)
            .bind(oldest)
            .fetch_all(p)
            .await?;
            (journeys, history, attempts)
        };
        let mut runs: Vec<JourneyRecords> = Vec::with_capacity(journeys.len());
        let mut index: HashMap<Uuid, usize> = HashMap::with_capacity(journeys.len());
        for row in journeys {
            index.insert(row.id, runs.len());
            runs.push(JourneyRecords {
                journey: row.journey()?,
                history: vec![],
                attempts: vec![],
            });
        }
        for h in history {
            if let Some(&i) = index.get(&h.journey_id) {
                runs[i].history.push(h.row.entry()?);
            }
        }
        for (id, stage, passed, t) in attempts {
            if let Some(&i) = index.get(&id) {
                let run = &mut runs[i];
                if let Some(stage) = stage_id(&run.journey.definition, Some(stage)) {
                    run.attempts.push(ExitAttemptRecord {
                        stage,
                        passed: passed != 0,
                        at: at(t),
                    });
                }
            }
        }
        Ok(runs)
    }

    async fn journey_history(&self, id: JourneyId) -> Result<Vec<JourneyHistoryEntry>> {
        self.get_journey(id).await?;
        let rows: Vec<HistoryRow> = sql(
                "SELECT seq, at, actor, event, from_state, to_state, reason, trigger, automatic, \
                 validation, overrides, trace_id FROM journey_history WHERE journey_id = $1 ORDER BY seq",
            )
            .bind(id.uuid())
            .fetch_all(&mut self.db.reader())
            .await?;
        rows.into_iter().map(HistoryRow::entry).collect()
    }

    async fn journey_units(&self, id: JourneyId) -> Result<Vec<JourneyUnit>> {
        let journey = self.get_journey(id).await?;
        let rows: Vec<(Uuid, String, i64, String, i64, String, i64, i64)> = sql(
            "SELECT ju.unit_id, u.name, ju.stage, ju.kind, ju.entered_seq, u.status, \
                     u.tasks_total, u.tasks_done FROM journey_units ju \
                     JOIN work_units u ON u.id = ju.unit_id \
                     WHERE ju.journey_id = $1 ORDER BY ju.entered_seq, ju.unit_id",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        rows.into_iter()
            .map(
                |(unit, name, stage, kind, entered_seq, status, total, done)| {
                    Ok(JourneyUnit {
                        unit_id: UnitId::from_uuid(unit),
                        name,
                        stage: stage_id(&journey.definition, Some(stage)).unwrap_or_default(),
                        kind: if kind == "rollback" {
                            UnitKind::Rollback
                        } else {
                            UnitKind::Activity
                        },
                        entered_seq,
                        status: status
                            .parse::<UnitStatus>()
                            .map_err(|e| StoreError::Conflict(e.to_string()))?,
                        tasks_total: total,
                        tasks_done: done,
                    })
                },
            )
            .collect()
    }

    async fn record_exit_validation(&self, id: JourneyId, v: &ValidationResult) -> Result<()> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            let row = lock_journey(&mut tx, id).await?;
            sql("UPDATE journeys SET last_validation = $2 WHERE id = $1")
                .bind(id.uuid())
                .bind(Json(v))
                .execute(&mut tx)
                .await?;
            if let Some(stage) = row.stage {
                sql(
                    "INSERT INTO journey_attempts (journey_id, seq, stage, passed, at) \
                     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM journey_attempts \
                     WHERE journey_id = $1",
                )
                .bind(id.uuid())
                .bind(stage)
                .bind(i64::from(v.passed))
                .bind(now)
                .execute(&mut tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }

    async fn exit_attempts(&self, id: JourneyId) -> Result<Vec<ExitAttemptRecord>> {
        let def = self.get_journey(id).await?.definition;
        let rows: Vec<(i64, i64, i64)> = sql(
            "SELECT stage, passed, at FROM journey_attempts WHERE journey_id = $1 ORDER BY seq",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(stage, passed, t)| {
                Some(ExitAttemptRecord {
                    stage: stage_id(&def, Some(stage))?,
                    passed: passed != 0,
                    at: at(t),
                })
            })
            .collect())
    }

    async fn record_metrics(
        &self,
        id: JourneyId,
        observations: Vec<NewObservation>,
        ctx: &WriteContext,
    ) -> Result<Vec<MetricRecord>> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            if let Some(r) = idempotency::replay_of(&mut tx, ctx, &["metrics"]).await? {
                // The same observations, as the first request recorded them.
                let journey = lock_journey(&mut tx, id).await?;
                let rows: Vec<(String, f64, i64, Option<i64>, String)> = sql(
                    "SELECT name, value, at, stage, recorded_by FROM journey_metrics \
                     WHERE journey_id = $1 AND recorded_at = $2 AND recorded_by = $3 ORDER BY seq",
                )
                .bind(id.uuid())
                .bind(to_us(r.at))
                .bind(&ctx.actor)
                .fetch_all(&mut tx)
                .await?;
                return Ok(rows
                    .into_iter()
                    .map(|(name, value, t, stage, by)| MetricRecord {
                        name,
                        value,
                        at: at(t),
                        stage: stage_id(&journey.definition.0, stage),
                        recorded_by: by,
                    })
                    .collect());
            }
            let row = lock_journey(&mut tx, id).await?;
            let def = row.definition.0.clone();
            idempotency::record(&mut tx, ctx, "metrics", id.uuid(), at(now)).await?;
            for o in &observations {
                sql(INSERT_METRIC)
                    .bind(id.uuid())
                    .bind(&o.name)
                    .bind(o.value)
                    .bind(to_us(o.at))
                    .bind(row.stage)
                    .bind(&ctx.actor)
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
            }
            let mut data = journey_data(&row, "");
            data["observations"] = observations
                .iter()
                .take(100)
                .map(|o| serde_json::json!({"name": o.name, "value": o.value}))
                .collect();
            if let Some(obj) = data.as_object_mut() {
                obj.remove("state");
            }
            let entry = LogEntry::new(
                "journey.metrics",
                Some(ClientId::from_uuid(row.client_id)),
                id,
            )
            .event("journey.metrics_recorded", Audience::Staff, data);
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
            Ok(observations
                .into_iter()
                .map(|o| MetricRecord {
                    name: o.name,
                    value: o.value,
                    // As stored: to the microsecond.
                    at: at(to_us(o.at)),
                    stage: stage_id(&def, row.stage),
                    recorded_by: ctx.actor.clone(),
                })
                .collect())
        }
    }

    async fn journey_metrics(&self, id: JourneyId) -> Result<Vec<MetricRecord>> {
        let journey = self.get_journey(id).await?;
        let rows: Vec<(String, f64, i64, Option<i64>, String)> = sql(
            "SELECT name, value, at, stage, recorded_by FROM journey_metrics \
                 WHERE journey_id = $1 ORDER BY at, seq",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, value, t, stage, by)| MetricRecord {
                name,
                value,
                at: at(t),
                stage: stage_id(&journey.definition, stage),
                recorded_by: by,
            })
            .collect())
    }

    async fn sign_off(
        &self,
        id: JourneyId,
        name: String,
        note: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Signoff> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            // A sign-off is given once: the same one is answered again.
            idempotency::replay(&mut tx, ctx, "signoff").await?;
            let row = lock_journey(&mut tx, id).await?;
            let def = row.definition.0.clone();
            let existing: Option<(Option<i64>, String, Option<String>, i64)> = sql(
                "SELECT stage, signed_by, note, at FROM journey_signoffs WHERE journey_id = $1 AND name = $2",
            )
            .bind(id.uuid())
            .bind(&name)
            .fetch_optional(&mut tx)
            .await?;
            if let Some((stage, by, note, t)) = existing {
                return Ok(Signoff {
                    name,
                    stage: stage_id(&def, stage),
                    signed_by: by,
                    note,
                    at: at(t),
                });
            }
            sql(
                "INSERT INTO journey_signoffs (journey_id, name, stage, signed_by, note, at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.uuid())
            .bind(&name)
            .bind(row.stage)
            .bind(&ctx.actor)
            .bind(&note)
            .bind(now)
            .execute(&mut tx)
            .await?;
            idempotency::record(&mut tx, ctx, "signoff", id.uuid(), at(now)).await?;
            let mut data = journey_data(&row, "");
            data["signoff"] = Value::from(name.clone());
            if let Some(obj) = data.as_object_mut() {
                obj.remove("state");
            }
            let entry = LogEntry::new(
                "journey.signoff",
                Some(ClientId::from_uuid(row.client_id)),
                id,
            )
            .event("journey.signed_off", Audience::Staff, data);
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
            Ok(Signoff {
                name,
                stage: stage_id(&def, row.stage),
                signed_by: ctx.actor.clone(),
                note,
                at: at(now),
            })
        }
    }

    async fn signoffs(&self, id: JourneyId) -> Result<Vec<Signoff>> {
        let journey = self.get_journey(id).await?;
        let rows: Vec<(String, Option<i64>, String, Option<String>, i64)> = sql(
            "SELECT name, stage, signed_by, note, at FROM journey_signoffs \
                     WHERE journey_id = $1 ORDER BY at, name",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, stage, by, note, t)| Signoff {
                name,
                stage: stage_id(&journey.definition, stage),
                signed_by: by,
                note,
                at: at(t),
            })
            .collect())
    }

    async fn rate_stage(&self, r: NewRating, ctx: &WriteContext) -> Result<Rating> {
        let now = now_us();
        let name = ctx.actor_name.clone().unwrap_or_else(|| ctx.actor.clone());
        let mut tx = self.db.begin().await?;
        let row = lock_journey(&mut tx, r.journey_id).await?;
        let existing: Option<(i64,)> = sql(
            "SELECT score FROM journey_ratings WHERE journey_id = $1 AND stage = $2 AND rated_by = $3",
        )
        .bind(r.journey_id.uuid())
        .bind(&r.stage)
        .bind(&ctx.actor)
        .fetch_optional(&mut tx)
        .await?;
        if existing.is_some() {
            return Err(StoreError::Refused {
                code: "already_rated",
                detail: format!(
                    "you rated the stage {} of journey {} already; a rating is not changed afterwards",
                    r.stage, r.journey_id
                ),
            });
        }
        sql(
            "INSERT INTO journey_ratings (journey_id, stage, rated_by, rated_by_name, score, comment, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.journey_id.uuid())
        .bind(&r.stage)
        .bind(&ctx.actor)
        .bind(&name)
        .bind(i64::from(r.score))
        .bind(&r.comment)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let mut data = journey_data(&row, "");
        if let Some(obj) = data.as_object_mut() {
            obj.remove("state");
            obj.insert("stage".into(), Value::from(r.stage.clone()));
            obj.insert("score".into(), Value::from(r.score));
        }
        let entry = LogEntry::new(
            "journey.rate",
            Some(ClientId::from_uuid(row.client_id)),
            r.journey_id,
        )
        .event("journey.rated", Audience::Client, data);
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(Rating {
            journey_id: r.journey_id,
            stage: r.stage,
            score: r.score,
            comment: r.comment,
            rated_by: ctx.actor.clone(),
            rated_by_name: name,
            at: at(now),
        })
    }

    async fn journey_ratings(&self, id: JourneyId) -> Result<Vec<Rating>> {
        let rows: Vec<(String, i64, Option<String>, String, String, i64)> = sql(
            "SELECT stage, score, comment, rated_by, rated_by_name, at FROM journey_ratings \
             WHERE journey_id = $1 ORDER BY at, rated_by",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(stage, score, comment, by, name, t)| Rating {
                journey_id: id,
                stage,
                score: u8::try_from(score).unwrap_or(0),
                comment,
                rated_by: by,
                rated_by_name: name,
                at: at(t),
            })
            .collect())
    }

    async fn template_ratings(
        &self,
        template: &str,
        limit: i64,
    ) -> Result<Vec<(u8, Option<String>)>> {
        let rows: Vec<(i64, Option<String>)> =
            sql("SELECT r.score, c.owner FROM journey_ratings r \
             JOIN journeys j ON j.id = r.journey_id JOIN clients c ON c.id = j.client_id \
             WHERE j.template = $1 ORDER BY r.at DESC LIMIT $2")
            .bind(template)
            .bind(limit)
            .fetch_all(&mut self.db.reader())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, o)| u8::try_from(s).ok().map(|s| (s, o)))
            .collect())
    }
}

/// Microseconds since the epoch.
fn to_us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}
