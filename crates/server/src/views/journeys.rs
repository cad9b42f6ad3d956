//! `/journeys/{id}`: the stage timeline with time in stage against the target,
//! the current stage's criteria (passed, failed, inconclusive; actual against
//! expected), metric charts with their thresholds, sign-offs, the events
//! allowed now (with overrides of inconclusive checks, on the record), units
//! with their task graphs, and history. A client user sees the timeline,
//! milestones and what is expected of them, without the operator's actions.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use waymark_domain::criteria::{CheckKind, CheckOutcome, CheckResult, Trigger, ValidationResult};
use waymark_domain::journey::JourneyTemplate;
use waymark_engine::journeys::JourneyDetail;
use waymark_store::{JourneyHistoryEntry, Signoff};

use super::artifacts::{Badge, when};
use super::chart::{Threshold, line_chart, num};
use super::csrf::{CsrfCookie, Form};
use super::graph;
use super::{Layout, PageError, Viewer, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::observe::TraceId;
use crate::routes;

/// A stage on the timeline.
#[derive(Debug, PartialEq)]
pub struct StageView {
    pub id: String,
    pub name: String,
    /// `done`, `current`, `rolling_back` or `upcoming`.
    pub state: &'static str,
    /// Time spent in it over every visit, in words; none before the first.
    pub time_in_stage: Option<String>,
    pub target: Option<String>,
    pub over_target: bool,
    pub milestones: Vec<String>,
}

/// `3d 4h`, `5h 12m`, `12m`, `40s`.
pub fn span_words(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

/// The stages of `def` as the journey went through them: time in each from
/// the history (every visit counts; the current one until `now`).
pub fn timeline(
    def: &JourneyTemplate,
    state: &str,
    stage: Option<&str>,
    history: &[JourneyHistoryEntry],
    now: OffsetDateTime,
) -> Vec<StageView> {
    let mut spent: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, h) in history.iter().enumerate() {
        if def.stages.iter().any(|s| s.id == h.to) {
            let end = history.get(i + 1).map_or(now, |n| n.at);
            *spent.entry(h.to.as_str()).or_default() += (end - h.at).whole_seconds();
        }
    }
    let current = stage.and_then(|s| def.stages.iter().position(|x| x.id == s));
    def.stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let st = match (state, current) {
                ("completed", _) => "done",
                ("rolling_back", Some(c)) if c == i => "rolling_back",
                (_, Some(c)) if c == i => "current",
                (_, Some(c)) if i < c => "done",
                _ => "upcoming",
            };
            let secs = spent.get(s.id.as_str()).copied();
            let target = s.target_duration.map(|t| t.0.as_secs() as i64);
            StageView {
                id: s.id.clone(),
                name: s.name.clone(),
                state: st,
                time_in_stage: secs.map(span_words),
                target: s.target_duration.map(|t| t.to_string()),
                over_target: matches!((secs, target), (Some(a), Some(t)) if a > t),
                milestones: s.milestones.iter().map(|m| m.name.clone()).collect(),
            }
        })
        .collect()
}

/// A check's row in the criteria table.
pub struct CheckRow {
    pub c: CheckResult,
    pub badge: Badge,
    pub actual: String,
    pub expected: String,
}

fn value_words(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Number(n) => n.as_f64().map(num).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows(v: &ValidationResult) -> Vec<CheckRow> {
    v.checks
        .iter()
        .map(|c| CheckRow {
            badge: Badge::of(c.outcome.as_str()),
            actual: value_words(&c.actual),
            expected: value_words(&c.expected),
            c: c.clone(),
        })
        .collect()
}

/// A metric's chart.
pub struct MetricView {
    pub name: String,
    pub svg: String,
    pub latest: String,
}

/// A unit with its task graph.
pub struct UnitView {
    pub name: String,
    pub stage: String,
    pub badge: Badge,
    pub done: String,
    pub svg: String,
}

#[derive(Template)]
#[template(path = "journey.html")]
struct JourneyPage {
    layout: Layout,
    client_name: String,
    d: JourneyDetail,
    badge: Badge,
    staff: bool,
    /// A playbook the viewer works step by step (`/journeys/{id}/steps/{step}`).
    playbook: bool,
    stages: Vec<StageView>,
    checks: Vec<CheckRow>,
    validation_summary: String,
    inconclusive: Vec<String>,
    expected: Vec<String>,
    metrics: Vec<MetricView>,
    units: Vec<UnitView>,
    signoffs: Vec<(Signoff, String)>,
    history: Vec<(JourneyHistoryEntry, String)>,
    events: Vec<&'static str>,
    triggers: Vec<&'static str>,
    /// Completed stages the viewer (a client user) may still rate: id and name.
    to_rate: Vec<(String, String)>,
    ratings: Vec<(waymark_store::Rating, String, String)>,
    notice: Option<&'static str>,
    error: Option<String>,
    reasons: Vec<String>,
}

async fn build(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: String,
) -> Result<JourneyPage, PageError> {
    let JsonOut(d) = routes::journeys::get_journey(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.clone()),
    )
    .await?;
    let staff = caller.is_staff();
    let j = &d.journey;
    let now = OffsetDateTime::now_utc();
    let stages = timeline(&j.definition, &j.state, j.stage.as_deref(), &d.history, now);
    let validation = if staff && j.stage.is_some() {
        let JsonOut(v) = routes::journeys::get_validation(
            State(state.clone()),
            Extension(caller.clone()),
            Path(id),
        )
        .await?;
        Some(v)
    } else {
        j.last_validation.clone()
    };
    let checks = validation.as_ref().map(rows).unwrap_or_default();
    let inconclusive = validation
        .iter()
        .flat_map(|v| &v.checks)
        .filter(|c| c.outcome == CheckOutcome::Inconclusive && !c.dry_run)
        .map(|c| c.name.clone())
        .collect();
    // What the client is asked for: the current stage's approvals and sign-offs.
    let current = j
        .stage
        .as_ref()
        .and_then(|s| j.definition.stages.iter().find(|x| &x.id == s));
    let expected = current
        .map(|s| {
            s.exit
                .iter()
                .filter_map(|c| match &c.kind {
                    CheckKind::Artifact { artifact_type } => {
                        Some(format!("Approve the {}", artifact_type.replace('_', " ")))
                    }
                    CheckKind::Signoff { signoff } => {
                        Some(format!("Sign-off: {}", signoff.replace('_', " ")))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    // Metrics: one chart per metric, with the thresholds of the checks on it.
    let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for m in state.store.journey_metrics(j.id).await? {
        series.entry(m.name).or_default().push(m.value);
    }
    let mut metrics = Vec::new();
    for (name, values) in series {
        let thresholds: Vec<Threshold> = j
            .definition
            .stages
            .iter()
            .flat_map(|s| s.exit.iter().chain(&s.entry).map(move |c| (s, c)))
            .filter_map(|(s, c)| match &c.kind {
                CheckKind::Metric {
                    metric,
                    op,
                    threshold,
                    ..
                } if *metric == name => Some(Threshold {
                    label: format!("{} {} ({})", op.as_str(), num(*threshold), s.name),
                    value: *threshold,
                }),
                _ => None,
            })
            .collect();
        metrics.push(MetricView {
            svg: line_chart(&name, &values, &thresholds),
            latest: values.last().map(|v| num(*v)).unwrap_or_default(),
            name,
        });
    }
    let mut units = Vec::new();
    if staff {
        for u in &d.units {
            let detail = state.store.get_unit(u.unit_id).await?;
            let nodes: Vec<graph::Node> = detail
                .tasks
                .iter()
                .map(|t| graph::Node {
                    id: t.key.clone(),
                    label: t.name.clone(),
                    detail: t.executor.clone(),
                    status: t.status.as_str().to_owned(),
                    href: None,
                })
                .collect();
            let edges: Vec<graph::Edge> = detail
                .tasks
                .iter()
                .flat_map(|t| {
                    t.depends_on.iter().map(|d| graph::Edge {
                        from: d.clone(),
                        to: t.key.clone(),
                    })
                })
                .collect();
            units.push(UnitView {
                name: u.name.clone(),
                stage: u.stage.clone(),
                badge: Badge::of(u.status.as_str()),
                done: format!("{} of {} tasks done", u.tasks_done, u.tasks_total),
                svg: graph::svg(&format!("Tasks of {}", u.name), &nodes, &edges),
            });
        }
    }
    let word = super::clients::journey_tone_word(if j.paused { "paused" } else { &j.state });
    let badge = Badge {
        tone: super::tone::tone(word),
        words: if j.paused {
            "paused".into()
        } else {
            j.state.replace('_', " ")
        },
    };
    let events = if staff {
        d.allowed_events.iter().map(|e| e.as_str()).collect()
    } else {
        vec![]
    };
    let client_name = state.store.get_client(j.client_id).await?.name;
    let me = caller.actor();
    let stage_name = |id: &str| {
        j.definition
            .stages
            .iter()
            .find(|s| s.id == id)
            .map_or_else(|| id.to_owned(), |s| s.name.clone())
    };
    let to_rate = if staff || caller.user_id.is_none() {
        vec![]
    } else {
        j.definition
            .stages
            .iter()
            .filter(|s| {
                waymark_domain::rating::stage_completed(
                    &s.id,
                    d.history.iter().map(|h| (h.event, h.from.as_str())),
                ) && !d
                    .ratings
                    .iter()
                    .any(|r| r.stage == s.id && r.rated_by == me)
            })
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect()
    };
    let ratings = d
        .ratings
        .iter()
        .map(|r| (r.clone(), stage_name(&r.stage), when(r.at)))
        .collect();
    Ok(JourneyPage {
        layout: Layout::new(state, j.name.clone(), Some(caller), csrf, "clients").await?,
        client_name,
        badge,
        staff,
        playbook: staff && j.definition.playbook.is_some(),
        stages,
        validation_summary: validation.map(|v| v.summary).unwrap_or_default(),
        checks,
        inconclusive,
        expected,
        metrics,
        units,
        signoffs: d.signoffs.iter().map(|s| (s.clone(), when(s.at))).collect(),
        history: d.history.iter().map(|h| (h.clone(), when(h.at))).collect(),
        events,
        triggers: Trigger::ALL.into_iter().map(Trigger::as_str).collect(),
        to_rate,
        ratings,
        notice: None,
        error: None,
        reasons: vec![],
        d,
    })
}

/// `GET /journeys/{id}`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = build(&state, &caller, &csrf, id).await?;
    page.notice = q.notice();
    render(&page)
}

async fn refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: String,
    e: ApiError,
) -> Result<Response, PageError> {
    if matches!(
        e,
        ApiError::NotFound(_) | ApiError::Internal(_) | ApiError::Unavailable(_)
    ) {
        return Err(e.into());
    }
    let mut page = build(state, caller, csrf, id).await?;
    let message = super::problem_text(&e);
    page.reasons = e
        .problem()
        .extra
        .get("reasons")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    page.error = Some(message);
    render_status(e.status(), &page)
}

/// `POST /journeys/{id}/events`: an event, with overrides of inconclusive
/// checks and a trigger for a rollback.
pub async fn event(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let overrides: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "override")
        .map(|(_, v)| v.clone())
        .collect();
    let body = json!({
        "event": get("event"),
        "reason": get("reason"),
        "trigger": get("trigger"),
        "overrides": overrides,
    });
    match routes::journeys::journey_event(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.clone()),
        Json(body),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/journeys/{id}?done=moved-journey")).into_response()),
        Err(e) => refused(&state, &caller, &csrf, id, e).await,
    }
}

#[derive(Deserialize)]
pub struct SignoffForm {
    name: String,
    note: Option<String>,
}

/// `POST /journeys/{id}/signoffs`.
pub async fn signoff(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<SignoffForm>,
) -> Result<Response, PageError> {
    let body = json!({"name": f.name, "note": f.note.filter(|n| !n.trim().is_empty())});
    match routes::journeys::sign_off(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Path(id.clone()),
        Json(body),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/journeys/{id}?done=recorded")).into_response()),
        Err(e) => refused(&state, &caller, &csrf, id, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use waymark_domain::journey::Event;

    fn template() -> JourneyTemplate {
        serde_json::from_value(json!({
            "name": "t", "title": "T",
            "stages": [
                {"id": "sandbox", "name": "Sandbox", "target_duration": "2d",
                 "milestones": [{"id": "m1", "name": "Connect", "executor": "human"}]},
                {"id": "pilot", "name": "Pilot", "target_duration": "1h"},
                {"id": "live", "name": "Live"}
            ]
        }))
        .unwrap()
    }

    fn entry(at: OffsetDateTime, from: &str, to: &str) -> JourneyHistoryEntry {
        JourneyHistoryEntry {
            seq: 0,
            at,
            actor: "usr".into(),
            event: Event::Promote,
            from: from.into(),
            to: to.into(),
            reason: None,
            trigger: None,
            automatic: false,
            validation: None,
            overrides: vec![],
            trace_id: None,
        }
    }

    #[test]
    fn the_timeline_counts_every_visit_and_flags_overruns() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let history = vec![
            entry(t0, "pending", "sandbox"),
            entry(t0 + Duration::hours(3), "sandbox", "pilot"),
            entry(t0 + Duration::hours(5), "pilot", "rolling_back"),
            entry(t0 + Duration::hours(6), "rolling_back", "sandbox"),
        ];
        let now = t0 + Duration::hours(8);
        let tl = timeline(&template(), "sandbox", Some("sandbox"), &history, now);
        assert_eq!(tl[0].state, "current");
        assert_eq!(
            tl[0].time_in_stage.as_deref(),
            Some("5h 0m"),
            "3h, then 2h more"
        );
        assert!(!tl[0].over_target, "5h of a 2d target");
        assert_eq!(tl[0].milestones, ["Connect"]);
        assert_eq!(tl[1].state, "upcoming");
        assert_eq!(tl[1].time_in_stage.as_deref(), Some("2h 0m"));
        assert!(tl[1].over_target, "2h of a 1h target");
        assert_eq!(tl[2].time_in_stage, None);
        let done = timeline(&template(), "completed", None, &history, now);
        assert!(done.iter().all(|s| s.state == "done"));
        assert_eq!(span_words(90_000), "1d 1h");
        assert_eq!(span_words(45), "45s");
    }
}

#[derive(Deserialize)]
pub struct RatingForm {
    stage: String,
    score: Option<String>,
    comment: Option<String>,
}

/// `POST /journeys/{id}/ratings`: a client person rates a completed stage.
pub async fn rate(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<RatingForm>,
) -> Result<Response, PageError> {
    let score: i64 = f
        .score
        .as_deref()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let body = json!({"stage": f.stage, "score": score, "comment": f.comment});
    match routes::journeys::rate_stage(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.clone()),
        Json(body),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/journeys/{id}?done=rated")).into_response()),
        Err(e) => refused(&state, &caller, &csrf, id, e).await,
    }
}
