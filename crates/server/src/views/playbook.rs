//! A playbook worked step by step, for the team:
//!
//! - `/journeys/{id}/steps/{step}`: step N of M with its description, its
//!   branches (fixed choices as buttons, carrying the outcome on the last
//!   step; LLM branches that open a conversation; saved actions as small
//!   forms: snooze, skip, escalate, schedule), the step's conversations, a
//!   "complete the step" form, the journey's to-dos with an add form, and
//!   the customer context beside them (scores and signals with their trends
//!   in arrows and words, days to renewal, priority score).
//! - `/threads/{id}`: a step's conversation with the assistant. Without
//!   script the send form posts and comes back with the reply; with it
//!   (`waymark.js`, `data-stream`) the form posts to
//!   `/threads/{id}/messages/stream`, which answers the API's stream of the
//!   reply (server-sent events), shown piece by piece in an `aria-live`
//!   region. Each reply can be saved as an artifact of the playbook's pack
//!   (`/threads/{id}/save`: the type's schema as a form, prefilled with the
//!   draft the reply makes); completing the conversation completes its step.
//!
//! Every read and every action goes through the API's handlers and
//! functions (`routes::playbooks`, `routes::desk`, `routes::journeys`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_domain::JourneyId;
use waymark_domain::chat::{CustomerContext, Direction, Trend};
use waymark_domain::journey::{BranchKind, Phase};
use waymark_store::{MessageRole, Thread, ThreadStatus};

use super::artifacts::{Badge, when};
use super::csrf::{CsrfCookie, Form};
use super::queue::{
    NewTodoForm, TodoRow, due_words, figure, strip_nulls, todos, tomorrow_morning, until_of,
};
use super::schema_form::{self, FieldMessage};
use super::{Layout, PageError, Viewer, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query as ApiQuery};
use crate::observe::TraceId;
use crate::routes::desk::TodoQuery;
use crate::routes::people::UserQuery;
use crate::routes::playbooks::{self as api, StepView, ThreadAnswer};
use crate::routes::{self, write_context};

// --- the customer context ----------------------------------------------------------

/// Where a value moved over 30 days, in an arrow and in words; the tone says
/// whether that is good news where it is known (a score).
pub struct TrendView {
    pub arrow: &'static str,
    pub words: String,
    pub tone: &'static str,
}

/// `good_up`: whether a rise is good news (health), bad (risk), or unknown.
pub fn trend_view(t: &Trend, good_up: Option<bool>) -> TrendView {
    let (arrow, words) = match (t.direction, t.change_30) {
        (_, None) => ("→", "no earlier value to compare".to_owned()),
        (Direction::Flat, Some(_)) => ("→", "flat over 30 days".to_owned()),
        (Direction::Up, Some(c)) => ("↑", format!("up {} over 30 days", figure(c.abs()))),
        (Direction::Down, Some(c)) => ("↓", format!("down {} over 30 days", figure(c.abs()))),
    };
    let tone = match (t.direction, good_up) {
        (Direction::Up, Some(true)) | (Direction::Down, Some(false)) => "ok",
        (Direction::Down, Some(true)) | (Direction::Up, Some(false)) => "warn",
        _ => "neutral",
    };
    TrendView { arrow, words, tone }
}

/// A score with its trend.
pub struct ScoreRow {
    pub name: &'static str,
    pub value: String,
    pub trend: Option<TrendView>,
}

/// A signal with its latest value and its change.
pub struct SignalRow {
    pub name: String,
    pub latest: String,
    pub at: String,
    pub trend: TrendView,
}

/// The signals of one group (financials, usage, engagement, other).
pub struct SignalGroup {
    pub title: String,
    pub rows: Vec<SignalRow>,
}

/// The customer context as the step page shows it.
pub struct ContextView {
    pub client_id: String,
    pub name: String,
    pub domain: Option<String>,
    pub arr: Option<String>,
    pub renewal: Option<String>,
    pub owner: Option<String>,
    pub scores: Vec<ScoreRow>,
    pub groups: Vec<SignalGroup>,
    pub days_to_renewal: Option<String>,
    pub renewal_soon: bool,
    pub priority: Option<String>,
    pub due: Option<String>,
    pub overdue: bool,
}

impl ContextView {
    pub fn new(c: &CustomerContext, today: time::Date) -> Self {
        let score = |name: &'static str, key: &str, value: Option<f64>, good_up: bool| ScoreRow {
            name,
            value: value.map_or_else(|| "not recorded".into(), figure),
            trend: c
                .intelligence
                .trends
                .get(key)
                .map(|t| trend_view(t, Some(good_up))),
        };
        let groups = c
            .data
            .iter()
            .filter(|(_, signals)| !signals.is_empty())
            .map(|(group, signals)| SignalGroup {
                title: match *group {
                    "financials" => "Financials".into(),
                    "usage" => "Usage".into(),
                    "engagement" => "Engagement".into(),
                    _ => "Other signals".into(),
                },
                rows: signals
                    .iter()
                    .map(|(name, t)| SignalRow {
                        name: super::tone::words(name),
                        latest: figure(t.latest),
                        at: t.at.date().to_string(),
                        trend: trend_view(t, None),
                    })
                    .collect(),
            })
            .collect();
        let w = &c.workflow;
        ContextView {
            client_id: c.customer.id.clone(),
            name: c.customer.name.clone(),
            domain: c.customer.domain.clone(),
            arr: c.customer.arr.map(figure),
            renewal: c.customer.renewal_date.map(|d| d.to_string()),
            owner: c.customer.owner.clone(),
            scores: vec![
                score("Health", "health_score", c.intelligence.health_score, true),
                score("Risk", "risk_score", c.intelligence.risk_score, false),
                score(
                    "Opportunity",
                    "opportunity_score",
                    c.intelligence.opportunity_score,
                    true,
                ),
            ],
            groups,
            days_to_renewal: w.days_to_renewal.map(|d| match d {
                d if d < 0 => format!("renewal date passed {} days ago", -d),
                0 => "renewal today".into(),
                1 => "1 day to renewal".into(),
                d => format!("{d} days to renewal"),
            }),
            renewal_soon: w.days_to_renewal.is_some_and(|d| d <= 30),
            priority: w.priority_score.map(|s| format!("{s:.1} of 100")),
            due: w.due.map(|d| due_words(d, today)),
            overdue: w.due.is_some_and(|d| d < today),
        }
    }
}

// --- the step page -----------------------------------------------------------------

/// A step in the list of the playbook's steps.
pub struct StepNav {
    pub id: String,
    pub name: String,
    pub number: usize,
    /// `done`, `current` or `upcoming`.
    pub state: &'static str,
}

/// A fixed choice.
pub struct FixedChoice {
    pub key: String,
    pub label: String,
    pub outcome: Option<String>,
}

/// A conversation the step offers.
pub struct LlmChoice {
    pub key: String,
    pub label: String,
    pub prompt: String,
    pub saves_as: Option<String>,
}

/// A saved action the step offers.
pub struct ActionChoice {
    pub key: String,
    pub label: String,
    pub action: &'static str,
}

/// A conversation of the step.
pub struct ThreadRow {
    pub id: String,
    pub label: String,
    pub status: Badge,
    pub opened: String,
}

#[derive(Template)]
#[template(path = "step.html")]
struct StepPage {
    layout: Layout,
    journey_id: JourneyId,
    template_title: String,
    step: StepView,
    steps: Vec<StepNav>,
    /// This step is the current one of a running playbook: it can be worked.
    active: bool,
    /// Where the playbook stands when this step cannot be worked.
    standing: Option<String>,
    current_href: Option<String>,
    fixed: Vec<FixedChoice>,
    llm: Vec<LlmChoice>,
    actions: Vec<ActionChoice>,
    outcomes: Vec<(String, String)>,
    threads: Vec<ThreadRow>,
    ctx: ContextView,
    todos: Option<Vec<TodoRow>>,
    team: Vec<(String, String)>,
    snooze_default: String,
    schedule_default: String,
    here: String,
    notice: Option<&'static str>,
    error: Option<String>,
    todo_error: Option<String>,
}

fn step_href(journey: JourneyId, step: &str) -> String {
    format!("/journeys/{journey}/steps/{step}")
}

/// The operators and admins, as `(user id, "Name <email>")`, for escalation.
async fn team(state: &AppState, caller: &Caller) -> Result<Vec<(String, String)>, PageError> {
    let mut out = Vec::new();
    for role in ["operator", "admin"] {
        let listed = routes::people::list_users(
            State(state.clone()),
            Extension(caller.clone()),
            ApiQuery(UserQuery {
                client_id: None,
                role: Some(role.into()),
                limit: Some(200),
                cursor: None,
            }),
        )
        .await;
        // Who may not list people (an agent's token) escalates by the API.
        let page = match listed {
            Ok(JsonOut(page)) => page,
            Err(ApiError::Forbidden(_)) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        out.extend(page.items.into_iter().map(|u| {
            (
                u.id.to_string(),
                format!("{} <{}> ({role})", u.name, u.email),
            )
        }));
    }
    Ok(out)
}

async fn build_step(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: &str,
    step: &str,
) -> Result<StepPage, PageError> {
    let JsonOut(b) = api::get_branches(
        State(state.clone()),
        Extension(caller.clone()),
        Path((id.to_owned(), step.to_owned())),
    )
    .await?;
    let JsonOut(d) = routes::journeys::get_journey(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.to_owned()),
    )
    .await?;
    let JsonOut(context) = api::get_context(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.to_owned()),
    )
    .await?;
    let j = &d.journey;
    let now = state.clock.now();
    let current = j
        .stage
        .as_deref()
        .and_then(|s| j.definition.stages.iter().position(|x| x.id == s));
    let steps = j
        .definition
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| StepNav {
            id: s.id.clone(),
            name: s.name.clone(),
            number: i + 1,
            state: match (j.phase, current) {
                (Phase::Completed, _) => "done",
                (_, Some(c)) if c == i => "current",
                (_, Some(c)) if i < c => "done",
                _ => "upcoming",
            },
        })
        .collect();
    let active = b.step.current;
    let standing = if active {
        None
    } else {
        Some(match j.phase {
            Phase::Completed => match &j.outcome {
                Some(o) => format!(
                    "This playbook is completed, with the outcome {}.",
                    super::tone::words(o)
                ),
                None => "This playbook is completed.".into(),
            },
            Phase::Cancelled => "This playbook was cancelled.".into(),
            Phase::Pending => "This playbook has not started yet.".into(),
            Phase::RollingBack => "This playbook is rolling back.".into(),
            Phase::Active => match current {
                Some(c) if c > b.step.number - 1 => {
                    "This step is done; the playbook is on a later one.".into()
                }
                _ => "This step comes later; the playbook is on an earlier one.".into(),
            },
        })
    };
    let current_href = match (j.phase, j.stage.as_deref()) {
        (Phase::Active, Some(s)) if !active => Some(step_href(j.id, s)),
        _ => None,
    };
    let branches = &b.branches;
    let fixed = branches
        .iter()
        .filter(|x| x.kind == BranchKind::Fixed)
        .map(|x| FixedChoice {
            key: x.key.clone(),
            label: x.label.clone(),
            outcome: x.outcome.clone(),
        })
        .collect();
    let llm = branches
        .iter()
        .filter(|x| x.kind == BranchKind::Llm)
        .map(|x| LlmChoice {
            key: x.key.clone(),
            label: x.label.clone(),
            prompt: x.prompt.clone().unwrap_or_default(),
            saves_as: x.saves_as.clone(),
        })
        .collect();
    let actions = branches
        .iter()
        .filter(|x| x.kind == BranchKind::Action)
        .filter_map(|x| {
            x.action.map(|a| ActionChoice {
                key: x.key.clone(),
                label: x.label.clone(),
                action: a.as_str(),
            })
        })
        .collect();
    let label_of = |key: Option<&str>| {
        key.and_then(|k| branches.iter().find(|x| x.key == k))
            .map_or_else(|| "Conversation".to_owned(), |x| x.label.clone())
    };
    let threads = b
        .threads
        .iter()
        .map(|t| ThreadRow {
            id: t.id.to_string(),
            label: label_of(t.branch.as_deref()),
            status: Badge::of(match t.status {
                ThreadStatus::Open => "open",
                ThreadStatus::Completed => "completed",
            }),
            opened: when(t.created_at),
        })
        .collect();
    let todos = todos(
        state,
        caller,
        TodoQuery {
            assigned_to: Some("all".into()),
            status: None,
            journey_id: Some(j.id.to_string()),
            client_id: None,
            limit: Some(50),
            cursor: None,
        },
    )
    .await?
    .map(|(rows, _)| rows);
    Ok(StepPage {
        layout: Layout::new(
            state,
            format!("{}: {}", b.step.name, j.name),
            Some(caller),
            csrf,
            "queue",
        )
        .await?,
        journey_id: j.id,
        template_title: j.definition.title.clone(),
        steps,
        active,
        standing,
        current_href,
        fixed,
        llm,
        actions,
        outcomes: b
            .outcomes
            .iter()
            .map(|o| (o.clone(), super::tone::words(o)))
            .collect(),
        threads,
        ctx: ContextView::new(&context, now.date()),
        todos,
        team: if active {
            team(state, caller).await?
        } else {
            vec![]
        },
        snooze_default: tomorrow_morning(now),
        schedule_default: (now.date() + time::Duration::days(7)).to_string(),
        here: step_href(j.id, &b.step.id),
        step: b.step,
        notice: None,
        error: None,
        todo_error: None,
    })
}

/// `GET /journeys/{id}/steps/{step}`.
pub async fn step_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = build_step(&state, &caller, &csrf, &id, &step).await?;
    page.notice = q.notice();
    render(&page)
}

fn fatal(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::NotFound(_) | ApiError::Internal(_) | ApiError::Unavailable(_)
    )
}

async fn step_refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: &str,
    step: &str,
    e: ApiError,
) -> Result<Response, PageError> {
    if fatal(&e) {
        return Err(e.into());
    }
    let mut page = build_step(state, caller, csrf, id, step).await?;
    page.error = Some(super::problem_text(&e));
    render_status(e.status(), &page)
}

/// Where a playbook goes on after a step: its current step, or its page
/// once it is over.
fn after(journey: &waymark_store::Journey, done: &str, finished: &str) -> String {
    match (journey.phase, journey.stage.as_deref()) {
        (Phase::Active, Some(s)) => format!("{}?done={done}", step_href(journey.id, s)),
        _ => format!("/journeys/{}?done={finished}", journey.id),
    }
}

/// `POST /journeys/{id}/steps/{step}/complete`: a fixed choice (`branch`),
/// or the step completed with an `outcome` on the last step.
pub async fn complete_step(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let body = strip_nulls(json!({
        "branch": get("branch"),
        "outcome": get("outcome"),
        "reason": get("reason"),
    }));
    match api::complete_step(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path((id.clone(), step.clone())),
        Some(Json(body)),
    )
    .await
    {
        Ok(JsonOut(a)) => Ok(Redirect::to(&after(
            &a.journey.journey,
            "step-completed",
            "playbook-completed",
        ))
        .into_response()),
        Err(e) => step_refused(&state, &caller, &csrf, &id, &step, e).await,
    }
}

#[derive(Deserialize)]
pub struct OpenThreadForm {
    branch: Option<String>,
}

/// `POST /journeys/{id}/steps/{step}/threads`: opens the conversation of an
/// LLM branch and goes to it.
pub async fn open_thread(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<OpenThreadForm>,
) -> Result<Response, PageError> {
    let body = strip_nulls(json!({
        "journey_id": id,
        "step": step,
        "branch": f.branch.filter(|b| !b.trim().is_empty()),
    }));
    match api::create_thread(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Json(body),
    )
    .await
    {
        Ok((_, JsonOut(t))) => {
            Ok(Redirect::to(&format!("/threads/{}", t.thread.id)).into_response())
        }
        Err(e) => step_refused(&state, &caller, &csrf, &id, &step, e).await,
    }
}

/// A saved action from a step.
#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    /// The step the form is on (to show it again on a refusal).
    step: String,
    until: Option<String>,
    to: Option<String>,
    due: Option<String>,
    reason: Option<String>,
}

/// `POST /journeys/{id}/actions`: snooze, skip, escalate or schedule, through
/// the API; then the playbook's current step with a notice.
pub async fn journey_action(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, PageError> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let done = match f.action.as_str() {
        "snooze" => "snoozed",
        "skip" => "skipped",
        "escalate" => "escalated",
        "schedule" => "scheduled",
        _ => "recorded",
    };
    let body = strip_nulls(json!({
        "action": f.action,
        "until": f.until.as_deref().and_then(until_of),
        "to": nonempty(f.to),
        "due": nonempty(f.due),
        "reason": nonempty(f.reason),
    }));
    match api::journey_action(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.clone()),
        Json(body),
    )
    .await
    {
        Ok(JsonOut(a)) => match a.journey {
            Some(d) => Ok(Redirect::to(&after(&d.journey, done, done)).into_response()),
            None => Ok(super::queue::redirect(&format!(
                "/journeys/{id}?done={done}"
            ))),
        },
        Err(e) => step_refused(&state, &caller, &csrf, &id, &f.step, e).await,
    }
}

/// `POST /journeys/{id}/steps/{step}/todos`: a to-do of this step, through
/// the desk API.
pub async fn add_todo(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path((id, step)): Path<(String, String)>,
    Form(f): Form<NewTodoForm>,
) -> Result<Response, PageError> {
    match super::queue::add_todo(&state, &caller, trace, &id, &step, f).await {
        Ok(()) => Ok(super::queue::redirect(&format!(
            "/journeys/{id}/steps/{step}?done=todo-added#todos"
        ))),
        Err(e) if !fatal(&e) => {
            let mut page = build_step(&state, &caller, &csrf, &id, &step).await?;
            page.todo_error = Some(super::problem_text(&e));
            render_status(e.status(), &page)
        }
        Err(e) => Err(e.into()),
    }
}

// --- the thread page ---------------------------------------------------------------

/// A message as shown.
pub struct MessageRow {
    pub seq: i64,
    /// `user` or `assistant`.
    pub role: &'static str,
    pub author: String,
    pub at: String,
    pub provider: Option<String>,
    pub fallback: Option<String>,
    pub content: String,
}

#[derive(Template)]
#[template(path = "thread.html")]
struct ThreadPage {
    layout: Layout,
    thread: Thread,
    journey_id: JourneyId,
    client_id: String,
    client_name: String,
    template_title: String,
    step_name: String,
    step_number: usize,
    steps_total: usize,
    title: String,
    prompt: Option<String>,
    status: Badge,
    opened: String,
    system: Option<String>,
    messages: Vec<MessageRow>,
    /// The artifact types a reply can be saved as: (name, title).
    save_types: Vec<(String, String)>,
    /// The artifacts saved from it: (id, title).
    saved: Vec<(String, String)>,
    open: bool,
    /// Its step is the playbook's current one: completing it goes on.
    can_complete: bool,
    last: bool,
    outcomes: Vec<(String, String)>,
    stream_url: Option<String>,
    draft: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// The artifact types of the pack a playbook template comes from: (name,
/// title).
async fn pack_types(state: &AppState, template: &str) -> Result<Vec<(String, String)>, PageError> {
    Ok(state
        .packs
        .list()
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.journey(template).is_some())
        .map(|p| {
            p.types
                .iter()
                .map(|t| (t.name.clone(), t.title.clone()))
                .collect()
        })
        .unwrap_or_default())
}

async fn thread_answer(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ThreadAnswer, ApiError> {
    api::get_thread(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.to_owned()),
    )
    .await
    .map(|JsonOut(t)| t)
}

async fn build_thread(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: &str,
) -> Result<ThreadPage, PageError> {
    let t = thread_answer(state, caller, id).await?;
    let JsonOut(d) = routes::journeys::get_journey(
        State(state.clone()),
        Extension(caller.clone()),
        Path(t.thread.journey_id.to_string()),
    )
    .await?;
    let j = &d.journey;
    let client = state.store.get_client(j.client_id).await?;
    let index = j
        .definition
        .stages
        .iter()
        .position(|s| s.id == t.thread.step);
    let stage = index.map(|i| &j.definition.stages[i]);
    let branch = stage.and_then(|s| {
        t.thread
            .branch
            .as_deref()
            .and_then(|b| s.branches.iter().find(|x| x.key == b))
    });
    let types = pack_types(state, &j.template).await?;
    let save_types = match branch.and_then(|b| b.saves_as.as_deref()) {
        Some(name) => types.into_iter().filter(|(n, _)| n == name).collect(),
        None => types,
    };
    let mut saved = Vec::new();
    for a in &t.artifacts {
        match state.store.get_artifact_summary(*a).await {
            Ok(s) => saved.push((a.to_string(), s.title)),
            Err(waymark_store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let open = t.thread.status == ThreadStatus::Open;
    let prefs = super::queue::preferences(state, caller).await;
    let step_name = stage.map_or_else(|| t.thread.step.clone(), |s| s.name.clone());
    Ok(ThreadPage {
        layout: Layout::new(
            state,
            format!(
                "{}: {}",
                branch.map_or("Conversation", |b| &b.label),
                client.name
            ),
            Some(caller),
            csrf,
            "queue",
        )
        .await?,
        journey_id: j.id,
        client_id: client.id.to_string(),
        client_name: client.name,
        template_title: j.definition.title.clone(),
        step_number: index.map_or(0, |i| i + 1),
        steps_total: j.definition.stages.len(),
        title: branch.map_or_else(
            || format!("Conversation on {step_name}"),
            |b| b.label.clone(),
        ),
        prompt: branch.and_then(|b| b.prompt.clone()),
        step_name,
        status: Badge::of(if open { "open" } else { "completed" }),
        opened: when(t.thread.created_at),
        system: t
            .messages
            .iter()
            .find(|m| m.role == MessageRole::System)
            .map(|m| m.content.clone()),
        messages: t
            .messages
            .iter()
            .filter(|m| m.role != MessageRole::System)
            .map(|m| MessageRow {
                seq: m.seq,
                role: if m.role == MessageRole::User {
                    "user"
                } else {
                    "assistant"
                },
                author: m.author.clone(),
                at: when(m.at),
                provider: m.provider.clone(),
                fallback: m.fallback.clone(),
                content: m.content.clone(),
            })
            .collect(),
        save_types,
        saved,
        open,
        can_complete: open
            && j.phase == Phase::Active
            && j.stage.as_deref() == Some(&t.thread.step),
        last: index.is_some_and(|i| i + 1 == j.definition.stages.len()),
        outcomes: j
            .definition
            .playbook
            .as_ref()
            .map(|p| {
                p.outcomes
                    .iter()
                    .map(|o| (o.clone(), super::tone::words(o)))
                    .collect()
            })
            .unwrap_or_default(),
        stream_url: (open && prefs.chat_streaming)
            .then(|| format!("/threads/{}/messages/stream", t.thread.id)),
        draft: String::new(),
        notice: None,
        error: None,
        thread: t.thread,
    })
}

/// `GET /threads/{id}`.
pub async fn thread_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = build_thread(&state, &caller, &csrf, &id).await?;
    page.notice = q.notice();
    render(&page)
}

async fn thread_refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: &str,
    draft: String,
    e: ApiError,
) -> Result<Response, PageError> {
    if fatal(&e) {
        return Err(e.into());
    }
    let mut page = build_thread(state, caller, csrf, id).await?;
    page.error = Some(super::problem_text(&e));
    page.draft = draft;
    render_status(e.status(), &page)
}

#[derive(Deserialize)]
pub struct SendForm {
    content: String,
}

/// `POST /threads/{id}/messages`: the message and the reply (without
/// streaming), then the conversation at the reply.
pub async fn send(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<SendForm>,
) -> Result<Response, PageError> {
    let sent = async {
        let t = thread_answer(&state, &caller, &id).await?;
        let ctx = write_context(&caller, &trace)?;
        let (asked, _) = api::ask(&state, t.thread, &f.content, &ctx).await?;
        api::reply(&state, asked, None, &ctx).await
    }
    .await;
    match sent {
        Ok(m) => Ok(super::queue::redirect(&format!(
            "/threads/{id}#message-{}",
            m.seq
        ))),
        Err(e) => thread_refused(&state, &caller, &csrf, &id, f.content, e).await,
    }
}

/// `POST /threads/{id}/messages/stream`: the same, answered as the API's
/// stream of the reply (server-sent events `user`, `token`, then `message`
/// or `error`) for the page's script. A refusal is a problem document.
pub async fn send_streamed(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<SendForm>,
) -> Result<Response, ApiError> {
    let t = thread_answer(&state, &caller, &id).await?;
    let ctx = write_context(&caller, &trace)?;
    let (asked, user) = api::ask(&state, t.thread, &f.content, &ctx).await?;
    Ok(api::stream_reply(state, asked, user, ctx).into_response())
}

#[derive(Deserialize)]
pub struct CompleteForm {
    outcome: Option<String>,
    reason: Option<String>,
}

/// `POST /threads/{id}/complete`: completes the conversation and its step,
/// then the next step (or the playbook, once over).
pub async fn complete_thread(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<CompleteForm>,
) -> Result<Response, PageError> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let body = strip_nulls(json!({
        "outcome": nonempty(f.outcome),
        "reason": nonempty(f.reason),
    }));
    match api::complete_thread(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.clone()),
        Some(Json(body)),
    )
    .await
    {
        Ok(JsonOut(done)) => Ok(Redirect::to(&after(
            &done.journey.journey,
            "step-completed",
            "playbook-completed",
        ))
        .into_response()),
        Err(e) => thread_refused(&state, &caller, &csrf, &id, String::new(), e).await,
    }
}

// --- saving a reply ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "thread_save.html")]
struct SavePage {
    layout: Layout,
    thread_id: String,
    journey_name: String,
    type_name: String,
    type_title: String,
    description: String,
    seq: i64,
    reply: String,
    provider: String,
    title: String,
    fields: String,
    errors: Vec<String>,
}

/// The query of the save page.
#[derive(Deserialize)]
pub struct SaveQuery {
    #[serde(rename = "type")]
    artifact_type: Option<String>,
    seq: Option<i64>,
}

/// What the save form is for: the thread, the reply, the type.
struct SaveTarget {
    thread: Thread,
    journey_name: String,
    seq: i64,
    reply: String,
    provider: String,
    type_name: String,
    type_title: String,
    description: String,
    draft: Value,
    schema: Value,
}

async fn save_target(
    state: &AppState,
    caller: &Caller,
    id: &str,
    ty: Option<&str>,
    seq: Option<i64>,
) -> Result<SaveTarget, PageError> {
    let t = thread_answer(state, caller, id).await?;
    let reply = match seq {
        Some(s) => t
            .messages
            .iter()
            .find(|m| m.seq == s && m.role == MessageRole::Assistant),
        None => t
            .messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::Assistant),
    }
    .ok_or_else(|| {
        PageError::BadRequest(
            "This conversation has no such reply; send a message first, then save its reply."
                .into(),
        )
    })?
    .clone();
    let ty = ty
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| PageError::BadRequest("Choose the type of document to save.".into()))?;
    let journey = state.store.get_journey(t.thread.journey_id).await?;
    let Some((draft, schema)) = api::draft_for(state, &t.thread, ty, &reply.content).await? else {
        return Err(ApiError::NotFound(format!("the playbook's pack has no type {ty}")).into());
    };
    let (type_title, description) = state
        .packs
        .list()
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.journey(&journey.template).is_some())
        .and_then(|p| {
            p.artifact_type(ty)
                .map(|d| (d.title.clone(), d.description.clone()))
        })
        .unwrap_or_else(|| (ty.to_owned(), String::new()));
    Ok(SaveTarget {
        thread: t.thread,
        journey_name: journey.name,
        seq: reply.seq,
        provider: reply.provider.unwrap_or_else(|| "template".into()),
        reply: reply.content,
        type_name: ty.to_owned(),
        type_title,
        description,
        draft,
        schema,
    })
}

#[allow(clippy::too_many_arguments)]
async fn show_save(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    s: SaveTarget,
    value: &Value,
    title: Option<String>,
    messages: &[FieldMessage],
    errors: Vec<String>,
    extra_rows: &HashMap<String, usize>,
    status: axum::http::StatusCode,
) -> Result<Response, PageError> {
    let page = SavePage {
        layout: Layout::new(
            state,
            format!("Save as {}", s.type_title),
            Some(caller),
            csrf,
            "queue",
        )
        .await?,
        fields: schema_form::fields_html(&s.schema, value, messages, extra_rows),
        title: title.unwrap_or_else(|| {
            format!("{}: {}", s.type_title, s.journey_name)
                .chars()
                .take(200)
                .collect()
        }),
        thread_id: s.thread.id.to_string(),
        journey_name: s.journey_name,
        type_name: s.type_name,
        type_title: s.type_title,
        description: s.description,
        seq: s.seq,
        reply: s.reply,
        provider: s.provider,
        errors,
    };
    render_status(status, &page)
}

/// `GET /threads/{id}/save?type=&seq=`: the type's form, prefilled with the
/// draft the reply makes.
pub async fn save_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<SaveQuery>,
) -> Result<Response, PageError> {
    let s = save_target(&state, &caller, &id, q.artifact_type.as_deref(), q.seq).await?;
    let draft = s.draft.clone();
    show_save(
        &state,
        &caller,
        &csrf,
        s,
        &draft,
        None,
        &[],
        vec![],
        &HashMap::new(),
        axum::http::StatusCode::OK,
    )
    .await
}

/// `POST /threads/{id}/save`: saves the reply as an artifact through the
/// API, then its page; schema errors come back at their fields.
pub async fn save(
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
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
    };
    let seq = get("seq").and_then(|s| s.parse::<i64>().ok());
    let s = save_target(&state, &caller, &id, get("type").as_deref(), seq).await?;
    let value = schema_form::value_from_form(&s.schema, &pairs);
    let title = get("title").filter(|t| !t.is_empty());
    let mut extra_rows: HashMap<String, usize> = HashMap::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "_rows") {
        if let Some((pointer, n)) = v.rsplit_once('=')
            && let Ok(n) = n.parse::<usize>()
        {
            extra_rows.insert(pointer.to_owned(), n.min(50));
        }
    }
    if let Some(pointer) = get("_add") {
        *extra_rows.entry(pointer).or_insert(1) += 1;
        return show_save(
            &state,
            &caller,
            &csrf,
            s,
            &value,
            title,
            &[],
            vec![],
            &extra_rows,
            axum::http::StatusCode::OK,
        )
        .await;
    }
    let body = strip_nulls(json!({
        "type": s.type_name,
        "title": title.clone(),
        "message_seq": s.seq,
        "content": value,
    }));
    match api::save_artifact(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.clone()),
        Json(body),
    )
    .await
    {
        Ok((_, JsonOut(saved))) => Ok(Redirect::to(&format!(
            "/artifacts/{}?done=saved-reply",
            saved.artifact.summary.id
        ))
        .into_response()),
        Err(e @ (ApiError::Invalid { .. } | ApiError::Conflict { .. })) => {
            let status = e.status();
            let p = e.problem();
            let messages: Vec<FieldMessage> = p
                .errors
                .iter()
                .map(|f| FieldMessage {
                    pointer: f
                        .pointer
                        .strip_prefix("/content")
                        .unwrap_or(&f.pointer)
                        .to_owned(),
                    message: f.message.clone(),
                })
                .collect();
            show_save(
                &state,
                &caller,
                &csrf,
                s,
                &value,
                title,
                &messages,
                vec![p.detail],
                &extra_rows,
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn t(direction: Direction, change: Option<f64>) -> Trend {
        Trend {
            latest: 70.0,
            at: datetime!(2027-03-01 0:00 UTC),
            d30: change.map(|c| 70.0 - c),
            d90: None,
            change_30: change,
            change_90: None,
            direction,
        }
    }

    #[test]
    fn trends_read_as_arrows_words_and_tones() {
        let up = trend_view(&t(Direction::Up, Some(8.0)), Some(true));
        assert_eq!(
            (up.arrow, up.words.as_str(), up.tone),
            ("↑", "up 8 over 30 days", "ok")
        );
        let risk = trend_view(&t(Direction::Up, Some(8.0)), Some(false));
        assert_eq!(risk.tone, "warn");
        let down = trend_view(&t(Direction::Down, Some(-1500.0)), None);
        assert_eq!(
            (down.arrow, down.words.as_str(), down.tone),
            ("↓", "down 1,500 over 30 days", "neutral")
        );
        let alone = trend_view(&t(Direction::Flat, None), Some(true));
        assert_eq!(alone.words, "no earlier value to compare");
    }
}
