//! Journeys at work: gathers what the criteria look at, asks the state machine
//! (`waymark_domain::journey`), and records the transition with the units of
//! work it starts. Metric observations that cross a rollback trigger's
//! threshold roll the journey back by themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::analytics::{
    ExitAttempt, JourneyAnalytics, JourneyRun, Step, journey_analytics,
};
use waymark_domain::criteria::{
    self, CheckOutcome, CheckResult, Facts, Observation, Trigger, ValidationResult,
};
use waymark_domain::journey::{
    self, EachArtifact, Event, Gate, JourneyTemplate, Phase, SavedAction, StageDef, UnitTemplate,
};
use waymark_domain::queue::Effect;
use waymark_domain::work::TaskStatus;
use waymark_domain::work::check_tasks;
use waymark_domain::{ClientId, FieldError, JourneyId, gating};
use waymark_store::{
    ArtifactFilter, ArtifactSummary, Incident, Journey, JourneyHistoryEntry, JourneyRecords,
    JourneyTransition, JourneyUnit, NewUnit, Observed, PageRequest, Signoff, Store, Task, UnitKind,
    WriteContext,
};

use crate::error::EngineError;

/// A journey with its units of work, history and sign-offs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyDetail {
    #[serde(flatten)]
    pub journey: Journey,
    /// Events possible now (before criteria are checked).
    pub allowed_events: Vec<Event>,
    /// Stages done, of all stages (progress).
    pub progress: Progress,
    pub units: Vec<JourneyUnit>,
    pub history: Vec<JourneyHistoryEntry>,
    pub signoffs: Vec<Signoff>,
    /// The client's ratings of its completed stages.
    pub ratings: Vec<waymark_store::Rating>,
}

/// How far a journey is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    pub stages_done: usize,
    pub stages_total: usize,
}

pub async fn detail(store: &dyn Store, id: JourneyId) -> Result<JourneyDetail, EngineError> {
    let journey = store.get_journey(id).await?;
    let units = store.journey_units(id).await?;
    let history = store.journey_history(id).await?;
    let signoffs = store.signoffs(id).await?;
    let ratings = store.journey_ratings(id).await?;
    Ok(JourneyDetail {
        ratings,
        allowed_events: journey::possible(&journey.definition, &journey.position()),
        progress: progress(&journey),
        journey,
        units,
        history,
        signoffs,
    })
}

fn progress(journey: &Journey) -> Progress {
    let at = journey.position();
    let stages_total = journey.definition.stages.len();
    let stages_done = match at.phase {
        Phase::Completed => stages_total,
        Phase::Pending => 0,
        _ => at.stage.unwrap_or(0),
    };
    Progress {
        stages_done,
        stages_total,
    }
}

/// A client's journeys as operations see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Operations {
    pub client_id: ClientId,
    /// Newest first (at most 500).
    pub journeys: Vec<Operation>,
    /// Journeys by state (`pending`, each stage id, `rolling_back`,
    /// `completed`, `cancelled`).
    #[schema(value_type = Object)]
    pub by_state: BTreeMap<String, usize>,
    pub open_tasks: usize,
    pub open_incidents: usize,
}

/// One journey with its open work: `last_validation` is the last evaluation
/// of its current stage's exit criteria.
#[derive(Debug, Serialize, ToSchema)]
pub struct Operation {
    #[serde(flatten)]
    pub journey: Journey,
    pub progress: Progress,
    pub units: Vec<JourneyUnit>,
    /// Its current stage's exit validation as promotion would see it now
    /// (criteria, open units, soak time); `null` unless it is in a stage.
    pub validation: Option<ValidationResult>,
    /// Tasks of its units not completed or cancelled yet.
    pub open_tasks: Vec<Task>,
    pub open_incidents: Vec<Incident>,
}

/// Every journey of a client with its open work (404 for an unknown client).
pub async fn operations(store: &dyn Store, client_id: ClientId) -> Result<Operations, EngineError> {
    store.get_client(client_id).await?;
    let journeys = store
        .list_journeys(
            Some(client_id),
            None,
            PageRequest {
                limit: 500,
                ..Default::default()
            },
        )
        .await?
        .items;
    let mut out = Operations {
        client_id,
        journeys: Vec::with_capacity(journeys.len()),
        by_state: BTreeMap::new(),
        open_tasks: 0,
        open_incidents: 0,
    };
    for journey in journeys {
        *out.by_state.entry(journey.state.clone()).or_default() += 1;
        let units = store.journey_units(journey.id).await?;
        let mut open_tasks = Vec::new();
        let mut open_incidents = Vec::new();
        for u in units.iter().filter(|u| {
            !matches!(
                u.status,
                waymark_domain::work::UnitStatus::Completed
                    | waymark_domain::work::UnitStatus::Cancelled
            )
        }) {
            let unit = store.get_unit(u.unit_id).await?;
            open_tasks.extend(
                unit.tasks
                    .into_iter()
                    .filter(|t| !matches!(t.status, TaskStatus::Completed | TaskStatus::Cancelled)),
            );
            open_incidents.extend(
                unit.incidents
                    .into_iter()
                    .filter(|i| i.resolved_at.is_none()),
            );
        }
        out.open_tasks += open_tasks.len();
        out.open_incidents += open_incidents.len();
        let validation = match journey.phase {
            Phase::Active => Some(stage_wait(store, &journey).await?.as_validation()),
            _ => None,
        };
        out.journeys.push(Operation {
            validation,
            progress: progress(&journey),
            journey,
            units,
            open_tasks,
            open_incidents,
        });
    }
    Ok(out)
}

/// A template's analytics from its journeys' records.
pub fn analytics(template: &JourneyTemplate, runs: &[JourneyRecords]) -> JourneyAnalytics {
    let runs: Vec<JourneyRun> = runs
        .iter()
        .map(|r| JourneyRun {
            phase: r.journey.phase,
            paused: r.journey.paused,
            steps: r
                .history
                .iter()
                .map(|h| Step {
                    at: h.at,
                    event: h.event,
                    from: h.from.clone(),
                    to: h.to.clone(),
                    trigger: h.trigger,
                })
                .collect(),
            attempts: r
                .attempts
                .iter()
                .map(|a| ExitAttempt {
                    at: a.at,
                    stage: a.stage.clone(),
                    passed: a.passed,
                })
                .collect(),
        })
        .collect();
    journey_analytics(template, &runs, OffsetDateTime::now_utc())
}

/// What the criteria of a journey look at.
struct Known {
    observations: Vec<Observation>,
    approved: Vec<String>,
    signoffs: Vec<String>,
}

async fn known(store: &dyn Store, journey: &Journey) -> Result<Known, EngineError> {
    let observations = store
        .journey_metrics(journey.id)
        .await?
        .into_iter()
        .map(|m| Observation::new(m.name, m.value, m.at))
        .collect();
    let signoffs = store
        .signoffs(journey.id)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let approved = approved_artifacts(
        store,
        ArtifactFilter {
            client_id: Some(journey.client_id),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .map(|a| a.artifact_type)
    .collect();
    Ok(Known {
        observations,
        approved,
        signoffs,
    })
}

/// The approved artifacts a filter selects, oldest first (at most 10,000).
async fn approved_artifacts(
    store: &dyn Store,
    filter: ArtifactFilter,
) -> Result<Vec<ArtifactSummary>, EngineError> {
    let mut approved = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        ..Default::default()
    };
    loop {
        let p = store.list_artifacts(filter.clone(), page.clone()).await?;
        // Approved for criteria and `for_each` as for gating: approved, or
        // implemented and on from there.
        approved.extend(p.items.into_iter().filter(|a| gating::satisfies(a.status)));
        match p.next_cursor {
            Some(c) if approved.len() < 10_000 => page.cursor = Some(c),
            _ => break,
        }
    }
    approved.reverse();
    Ok(approved)
}

/// The approved artifacts the stage's `for_each` activities repeat over: of
/// the engagement of the artifact the journey implements, else the client's.
async fn each_artifacts(
    store: &dyn Store,
    journey: &Journey,
    stage: &StageDef,
) -> Result<Vec<EachArtifact>, EngineError> {
    let types: BTreeSet<&str> = stage
        .activities
        .iter()
        .filter_map(|u| u.for_each.as_deref())
        .collect();
    if types.is_empty() {
        return Ok(vec![]);
    }
    let engagement_id = match journey.source_artifact_id {
        Some(a) => store.get_artifact(a).await?.summary.engagement_id,
        None => None,
    };
    let mut out = Vec::new();
    for ty in types {
        let found = approved_artifacts(
            store,
            ArtifactFilter {
                client_id: Some(journey.client_id),
                engagement_id,
                artifact_type: Some(ty.to_owned()),
                ..Default::default()
            },
        )
        .await?;
        for a in found.into_iter().take(MAX_EACH) {
            let full = store.get_artifact(a.id).await?;
            out.push(EachArtifact {
                id: a.id.to_string(),
                artifact_type: a.artifact_type,
                title: a.title,
                version: a.version,
                content: full.content,
            });
        }
    }
    Ok(out)
}

/// At most this many units of one `for_each` activity.
const MAX_EACH: usize = 100;

fn facts(k: &Known, now: OffsetDateTime) -> Facts<'_> {
    Facts::new(&k.observations, now)
        .with_approved(k.approved.iter().map(String::as_str))
        .with_signoffs(k.signoffs.iter().map(String::as_str))
}

/// The seq of the history entry that last entered the current stage by
/// `start` or `promote` (its units are this visit's; returning to a stage by
/// a rollback does not start its units again).
fn entered_seq(history: &[JourneyHistoryEntry], stage: &str) -> i64 {
    history
        .iter()
        .rev()
        .find(|h| matches!(h.event, Event::Start | Event::Promote) && h.to == stage)
        .map_or(0, |h| h.seq)
}

fn describe(u: &JourneyUnit) -> String {
    format!(
        "{} ({}): {} of {} tasks done, {}",
        u.name,
        u.unit_id,
        u.tasks_done,
        u.tasks_total,
        u.status.as_str()
    )
}

/// What promotion out of the current stage waits for: its exit criteria
/// evaluated now, its units of work of this visit that are not complete, and
/// the time left of its minimum soak.
pub struct StageWait {
    pub criteria: ValidationResult,
    pub open_units: Vec<String>,
    pub soak_left: Option<Duration>,
}

impl StageWait {
    /// The criteria plus one check per open unit of work and one for the soak
    /// time: everything promotion waits for, as one ValidationResult.
    pub fn as_validation(&self) -> ValidationResult {
        let mut result = self.criteria.clone();
        for u in &self.open_units {
            result.checks.push(CheckResult {
                name: "units_of_work".into(),
                outcome: CheckOutcome::Failed,
                passed: false,
                actual: serde_json::Value::from(u.clone()),
                expected: serde_json::Value::from("completed"),
                message: format!("unit of work not complete: {u}"),
                dry_run: false,
                overridden: false,
            });
        }
        if let Some(left) = self.soak_left {
            result.checks.push(CheckResult {
                name: "min_soak".into(),
                outcome: CheckOutcome::Failed,
                passed: false,
                actual: serde_json::Value::from(format!("{}s left", left.as_secs())),
                expected: serde_json::Value::from("0s left"),
                message: format!("the stage's minimum soak time has {}s left", left.as_secs()),
                dry_run: false,
                overridden: false,
            });
        }
        if !self.open_units.is_empty() || self.soak_left.is_some() {
            result.passed = false;
            result.summary = format!(
                "{}; {} unit(s) of work open{}",
                result.summary,
                self.open_units.len(),
                if self.soak_left.is_some() {
                    "; minimum soak time not over"
                } else {
                    ""
                }
            );
        }
        result
    }
}

/// What promotion out of the journey's current stage waits for now.
pub async fn stage_wait(store: &dyn Store, journey: &Journey) -> Result<StageWait, EngineError> {
    let at = journey.position();
    let Some(i) = at.stage else {
        return Ok(StageWait {
            criteria: ValidationResult {
                passed: false,
                summary: "the journey has not started; `start` it first".into(),
                checks: vec![],
            },
            open_units: vec![],
            soak_left: None,
        });
    };
    let stage = &journey.definition.stages[i];
    let now = OffsetDateTime::now_utc();
    let k = known(store, journey).await?;
    let criteria = criteria::evaluate(&stage.exit, &facts(&k, now));
    let history = store.journey_history(journey.id).await?;
    let since = entered_seq(&history, &stage.id);
    let open_units: Vec<String> = store
        .journey_units(journey.id)
        .await?
        .iter()
        .filter(|u| u.kind == UnitKind::Activity && u.stage == stage.id && u.entered_seq >= since)
        .filter(|u| u.status != waymark_domain::work::UnitStatus::Completed)
        .map(describe)
        .collect();
    let soak_left = match (stage.min_soak, journey.stage_started_at) {
        (Some(min), Some(started)) => {
            let spent = Duration::try_from(now - started).unwrap_or(Duration::ZERO);
            min.0.checked_sub(spent).filter(|d| !d.is_zero())
        }
        _ => None,
    };
    Ok(StageWait {
        criteria,
        open_units,
        soak_left,
    })
}

/// Units of work to start from unit definitions.
fn units(
    journey: &Journey,
    stage: &str,
    defs: &[UnitTemplate],
    kind: UnitKind,
) -> Result<Vec<(NewUnit, UnitKind)>, EngineError> {
    defs.iter()
        .map(|u| {
            let tasks = check_tasks(u.tasks.clone()).map_err(|errors| EngineError::Invalid {
                detail: format!(
                    "the template's unit `{}` of stage {stage} has invalid tasks; fix the template",
                    u.name
                ),
                errors,
            })?;
            Ok((
                NewUnit {
                    client_id: journey.client_id,
                    name: u.name.clone(),
                    tasks,
                    depends_on_units: vec![],
                    origin: Some(serde_json::json!({
                        "kind": "journey",
                        "journey_id": journey.id,
                        "stage": stage,
                        "unit": kind.as_str(),
                    })),
                    plan: None,
                },
                kind,
            ))
        })
        .collect()
}

/// An event asked for.
#[derive(Debug, Clone)]
pub struct EventAsk {
    pub event: Event,
    pub reason: Option<String>,
    pub trigger: Option<Trigger>,
    /// Inconclusive checks a person overrides, on the record.
    pub overrides: Vec<String>,
    pub automatic: bool,
    /// `complete` of a playbook: one of its template's outcomes (required
    /// there, refused elsewhere).
    pub outcome: Option<String>,
}

/// Decides and records an event: 409 with every failed check when the state
/// machine refuses it.
pub async fn apply_event(
    store: &dyn Store,
    id: JourneyId,
    ask: EventAsk,
    ctx: &WriteContext,
) -> Result<Journey, EngineError> {
    let journey = store.get_journey(id).await?;
    let def: &JourneyTemplate = &journey.definition;
    let at = journey.position();
    if ask.event == Event::Rollback && ask.trigger.is_none() {
        return Err(EngineError::invalid(FieldError::new(
            "/trigger",
            format!(
                "a rollback names its trigger: one of {}",
                Trigger::ALL.map(|t| t.as_str()).join(", ")
            ),
        )));
    }
    check_outcome(def, ask.event, ask.outcome.as_deref())?;
    let now = OffsetDateTime::now_utc();
    let k = known(store, &journey).await?;
    // Exit criteria of the current stage (promote, complete), with overrides.
    let mut exit = None;
    let mut open_units = Vec::new();
    let mut soak_left = None;
    if matches!(ask.event, Event::Promote | Event::Complete) && at.stage.is_some() {
        let wait = stage_wait(store, &journey).await?;
        let v = criteria::apply_overrides(&wait.criteria, &ask.overrides)
            .map_err(|e| EngineError::invalid(FieldError::new("/overrides", e.to_string())))?;
        // An exit attempt counts when the event could be made now: a paused
        // or rolling-back journey is refused before its criteria matter.
        if at.phase == Phase::Active && !at.paused {
            store.record_exit_validation(id, &v).await?;
        }
        exit = Some(v);
        open_units = wait.open_units;
        soak_left = wait.soak_left;
    } else if !ask.overrides.is_empty() {
        return Err(EngineError::invalid(FieldError::new(
            "/overrides",
            "overrides apply to the exit criteria of promote and complete only",
        )));
    }
    // Entry criteria of the stage being entered.
    let entering = match ask.event {
        Event::Start => Some(0),
        Event::Promote => at.stage.map(|i| i + 1),
        _ => None,
    };
    let entry = entering
        .and_then(|i| def.stages.get(i))
        .map(|s| criteria::evaluate(&s.entry, &facts(&k, now)));
    // The rollback unit of this rollback.
    let mut rollback_open = None;
    if ask.event == Event::CompleteRollback {
        let history = store.journey_history(id).await?;
        let since = history
            .iter()
            .rev()
            .find(|h| h.event == Event::Rollback)
            .map_or(0, |h| h.seq);
        rollback_open = store
            .journey_units(id)
            .await?
            .iter()
            .find(|u| {
                u.kind == UnitKind::Rollback
                    && u.entered_seq >= since
                    && u.status != waymark_domain::work::UnitStatus::Completed
            })
            .map(describe);
    }
    let gate = Gate {
        exit: exit.as_ref(),
        entry: entry.as_ref(),
        open_units,
        soak_left,
        rollback_open,
    };
    let to = journey::apply(def, &at, ask.event, &gate).map_err(|r| {
        let mut extra = serde_json::Map::new();
        extra.insert("state".into(), r.state.clone().into());
        extra.insert("reasons".into(), serde_json::json!(r.reasons));
        extra.insert("allowed_events".into(), serde_json::json!(r.allowed));
        if let Some(v) = &exit {
            extra.insert("validation".into(), serde_json::json!(v));
        }
        EngineError::Refused {
            code: "transition_refused",
            detail: r.to_string(),
            extra,
        }
    })?;
    // Units the transition starts.
    let started = match ask.event {
        Event::Start | Event::Promote => {
            let s = &def.stages[to.stage.unwrap_or(0)];
            let each = each_artifacts(store, &journey, s).await?;
            let defs = journey::stage_units(s, &each, &journey.input);
            units(&journey, &s.id, &defs, UnitKind::Activity)?
        }
        Event::Rollback => {
            let s = &def.stages[at.stage.unwrap_or(0)];
            let defs: Vec<UnitTemplate> =
                s.rollback.iter().filter_map(|r| r.unit.clone()).collect();
            units(&journey, &s.id, &defs, UnitKind::Rollback)?
        }
        _ => vec![],
    };
    let validation = match ask.event {
        Event::Promote | Event::Complete => exit,
        Event::Start => entry,
        _ => None,
    };
    Ok(store
        .journey_event(
            JourneyTransition {
                journey_id: id,
                from: at,
                to,
                event: ask.event,
                reason: ask.reason,
                trigger: ask.trigger,
                automatic: ask.automatic,
                validation,
                overrides: ask.overrides,
                units: started,
                outcome: ask.outcome,
                item: None,
            },
            ctx,
        )
        .await?)
}

/// A playbook completes with one of its template's outcomes; other journeys
/// and other events take none.
fn check_outcome(
    def: &JourneyTemplate,
    event: Event,
    outcome: Option<&str>,
) -> Result<(), EngineError> {
    let invalid = |m: String| Err(EngineError::invalid(FieldError::new("/outcome", m)));
    match (&def.playbook, event, outcome) {
        (Some(p), Event::Complete, None) => invalid(format!(
            "completing playbook {} records its outcome: one of {}",
            def.name,
            p.outcomes.join(", ")
        )),
        (Some(p), Event::Complete, Some(o)) if !p.outcomes.iter().any(|x| x == o) => {
            invalid(format!(
                "`{}` is not an outcome of playbook {}: one of {}",
                o.chars().take(64).collect::<String>(),
                def.name,
                p.outcomes.join(", ")
            ))
        }
        (Some(_), Event::Complete, Some(_)) | (_, _, None) => Ok(()),
        (None, _, Some(_)) => invalid(format!(
            "{} is not a playbook; only a playbook's completion records an outcome",
            def.name
        )),
        (Some(_), _, Some(_)) => invalid("an outcome goes with `complete` only".into()),
    }
}

/// Records a playbook's saved action ([`journey::apply_action`]): `skip`
/// enters the next step (starting its work) without the current step's exit
/// criteria; `snooze`, `escalate` and `schedule` leave the position and
/// change the playbook's queue item (`effect`). All go in the journey's
/// history with their reason.
pub async fn apply_action(
    store: &dyn Store,
    id: JourneyId,
    action: SavedAction,
    effect: Effect,
    reason: Option<String>,
    ctx: &WriteContext,
) -> Result<Journey, EngineError> {
    let journey = store.get_journey(id).await?;
    let def = &journey.definition;
    let at = journey.position();
    let to = journey::apply_action(def, &at, action).map_err(|r| {
        let mut extra = serde_json::Map::new();
        extra.insert("state".into(), r.state.clone().into());
        extra.insert("reasons".into(), serde_json::json!(r.reasons));
        extra.insert("allowed_events".into(), serde_json::json!(r.allowed));
        EngineError::Refused {
            code: "action_refused",
            detail: r.to_string(),
            extra,
        }
    })?;
    let started = if to.stage != at.stage {
        let s = &def.stages[to.stage.unwrap_or(0)];
        let each = each_artifacts(store, &journey, s).await?;
        let defs = journey::stage_units(s, &each, &journey.input);
        units(&journey, &s.id, &defs, UnitKind::Activity)?
    } else {
        vec![]
    };
    Ok(store
        .journey_event(
            JourneyTransition {
                journey_id: id,
                from: at,
                to,
                event: action.event(),
                reason,
                trigger: None,
                automatic: false,
                validation: None,
                overrides: vec![],
                units: started,
                outcome: None,
                item: Some(effect),
            },
            ctx,
        )
        .await?)
}

/// A rollback a metric observation caused.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoRollback {
    pub trigger: Trigger,
    pub reason: String,
}

/// After a task's output reported metrics on its journey: checks the
/// journey's rollback triggers, as for observations sent to the API (a
/// failure is logged; the observations stay recorded).
pub async fn watch_reported(store: &dyn Store, observed: &Observed, ctx: &WriteContext) {
    let seen: Vec<Observation> = observed
        .metrics
        .iter()
        .map(|(name, value)| Observation::new(name.clone(), *value, observed.at))
        .collect();
    if let Err(e) = watch_triggers(store, observed.journey_id, &seen, ctx).await {
        tracing::warn!(journey = %observed.journey_id, error = %e,
            "the rollback triggers of a task's reported metrics could not be checked");
    }
}

/// After observations were recorded: the first that crosses a rollback
/// trigger of the current stage rolls the journey back.
pub async fn watch_triggers(
    store: &dyn Store,
    id: JourneyId,
    observations: &[Observation],
    ctx: &WriteContext,
) -> Result<Option<AutoRollback>, EngineError> {
    let journey = store.get_journey(id).await?;
    let at = journey.position();
    let (Phase::Active, Some(i)) = (at.phase, at.stage) else {
        return Ok(None);
    };
    let Some(rollback) = &journey.definition.stages[i].rollback else {
        return Ok(None);
    };
    for o in observations {
        if let Some(spec) = criteria::fired(&rollback.triggers, o) {
            let reason = format!(
                "{} observed {} {} {}",
                o.metric,
                o.value,
                spec.op.map(|op| op.as_str()).unwrap_or(""),
                spec.threshold.unwrap_or_default()
            );
            let ask = EventAsk {
                event: Event::Rollback,
                reason: Some(reason.clone()),
                trigger: Some(spec.trigger),
                overrides: vec![],
                automatic: true,
                outcome: None,
            };
            // The observations are recorded whatever happens here: a rollback
            // that cannot be made (the journey moved meanwhile) is logged, and
            // the next crossing observation tries again.
            return match apply_event(store, id, ask, ctx).await {
                Ok(_) => Ok(Some(AutoRollback {
                    trigger: spec.trigger,
                    reason,
                })),
                Err(e) => {
                    tracing::warn!(journey = %id, trigger = spec.trigger.as_str(), error = %e,
                        "a rollback trigger fired but the rollback could not be made");
                    Ok(None)
                }
            };
        }
    }
    Ok(None)
}
