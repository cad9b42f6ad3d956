//! Customer-success playbooks over HTTP: the queue and its rules runs, saved
//! actions, a client's signals, a playbook's context, steps and branches, and
//! the steps' conversations (threads) with the LLM. The rules are
//! `waymark_domain::queue`, `journey` and `chat`; the runs and the journeys'
//! moves are `waymark_engine`; handlers parse, check access and answer.
//!
//! The whole workspace is the team's: client users reach none of it (403),
//! and a client's id they may not see answers 404 as elsewhere.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::chat::{self, Customer, CustomerContext, Intelligence, Workflow};
use waymark_domain::criteria::check_name;
use waymark_domain::journey::{
    BranchDef, BranchKind, Event, JourneyTemplate, Phase, SavedAction, StageDef,
};
use waymark_domain::queue::{self, Action, ItemStatus};
use waymark_domain::{ArtifactId, ClientId, FieldError, JourneyId, QueueItemId, ThreadId, UserId};
use waymark_engine::catalog;
use waymark_engine::journeys::{self, EventAsk, JourneyDetail};
use waymark_llm::{LlmError, Prompt, Turn};
use waymark_packs::Pack;
use waymark_store::{
    Artifact, ItemAction, Journey, MessageRole, NewArtifact, NewJourney, NewMessage,
    NewObservation, NewThread, QueueFilter, QueueItem, QueueRunSummary, QueueStats, Role,
    SignalRecord, Thread, ThreadMessage, ThreadStatus, WriteContext,
};

use super::{PageParams, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id};
use crate::observe::TraceId;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_queue))
        .routes(routes!(refresh_queue))
        .routes(routes!(get_queue_item))
        .routes(routes!(start_item))
        .routes(routes!(item_action))
        .routes(routes!(journey_action))
        .routes(routes!(get_context))
        .routes(routes!(get_branches))
        .routes(routes!(complete_step))
        .routes(routes!(record_signals, list_signals))
        .routes(routes!(create_thread))
        .routes(routes!(get_thread))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(complete_thread))
        .routes(routes!(save_artifact))
}

// --- the queue -------------------------------------------------------------------

/// A queue item with whether it is overdue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItemView {
    #[serde(flatten)]
    pub item: QueueItem,
    /// Due before today.
    pub overdue: bool,
}

impl QueueItemView {
    pub fn new(item: QueueItem, today: time::Date) -> Self {
        Self {
            overdue: queue::overdue(item.due, today),
            item,
        }
    }
}

/// An owner's queue: a page of items, by score, and counts over all of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueAnswer {
    /// Whose queue: the names the items' owner matched.
    pub owner: Vec<String>,
    pub items: Vec<QueueItemView>,
    pub next_cursor: Option<String>,
    pub stats: QueueStats,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct QueueQuery {
    /// Only this playbook template.
    pub template: Option<String>,
    /// Only items at this journey state (`due`: not started yet).
    pub stage: Option<String>,
    /// At most this many items, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: the last item's score, due
    /// date and id.
    #[param(
        pattern = r"^[0-9]{1,3}(\.[0-9]{1,2})?\|[0-9]{4}-[0-9]{2}-[0-9]{2}\|qit_[0-9a-f]{32}$"
    )]
    pub cursor: Option<String>,
}

/// The names an owner goes by: `me` (the caller's user id and email), a user
/// id (with the user's email), or the owner as written on clients.
async fn owner_names(
    state: &AppState,
    caller: &Caller,
    owner: &str,
) -> Result<Vec<String>, ApiError> {
    let owner = owner.trim();
    if owner == "me" {
        let mut names = vec![caller.actor()];
        names.extend(caller.email.clone());
        return Ok(names);
    }
    if owner.is_empty() || owner.chars().count() > 200 {
        return Err(ApiError::NotFound("no such owner".into()));
    }
    if let Ok(id) = owner.parse::<UserId>() {
        let user = state.store.get_user(id).await?;
        return Ok(vec![user.id.to_string(), user.email]);
    }
    Ok(vec![owner.to_owned()])
}

/// An owner's queue (`me` for the caller): every open, started or no longer
/// snoozed playbook of the clients they own (or that were escalated to them),
/// by score (highest first), then due date, then id; `stats` counts the whole
/// queue by template and stage (`due`: not started) and the overdue items.
#[utoipa::path(get, path = "/api/v1/queue/{owner}", tag = "queue",
    params(("owner" = String, Path, description = "`me`, a user id (usr_...), or an owner's name as written on clients"), QueueQuery),
    responses((status = 200, body = QueueAnswer), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(owner): Path<String>,
    Query(q): Query<QueueQuery>,
) -> Result<JsonOut<QueueAnswer>, ApiError> {
    caller.require_staff()?;
    let owners = owner_names(&state, &caller, &owner).await?;
    // A cursor is the last item's score, due date and id (a query
    // parameter: refused with 400 like the other lists' cursors).
    if let Some(c) = q.cursor.as_deref().filter(|c| !c.is_empty()) {
        let parts: Vec<&str> = c.splitn(3, '|').collect();
        let ok = parts.len() == 3
            && parts[0].parse::<f64>().is_ok_and(f64::is_finite)
            && waymark_domain::dates::parse(parts[1]).is_some()
            && parts[2].parse::<QueueItemId>().is_ok();
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_query",
                "cursor: is not a cursor of this list; pass the next_cursor of the previous page",
            ));
        }
    }
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let now = state.clock.now();
    let filter = QueueFilter {
        owners: owners.clone(),
        template: q.template.filter(|t| !t.is_empty()),
        stage: q.stage.filter(|s| !s.is_empty()),
        now,
    };
    let (page, stats) = state.store.queue(&filter, now.date(), page).await?;
    Ok(JsonOut(QueueAnswer {
        owner: owners,
        items: page
            .items
            .into_iter()
            .map(|i| QueueItemView::new(i, now.date()))
            .collect(),
        next_cursor: page.next_cursor,
        stats,
    }))
}

/// What to run the rules over.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// One client only; every client when left out.
    #[schema(value_type = Option<waymark_domain::ClientId>)]
    pub client_id: Option<String>,
}

/// Run the queue rules now (they also run when a client's signals change and
/// on a schedule): answers what the run opened, updated, reopened, closed and
/// superseded.
#[utoipa::path(post, path = "/api/v1/queue/refresh", tag = "queue", request_body = RefreshRequest,
    responses((status = 200, body = QueueRunSummary), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn refresh_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    body: Option<crate::extract::Json<Value>>,
) -> Result<JsonOut<QueueRunSummary>, ApiError> {
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace)?;
    let req: RefreshRequest = match body {
        Some(crate::extract::Json(v)) if !v.is_null() => from_value(v)?,
        _ => RefreshRequest::default(),
    };
    let only = req
        .client_id
        .as_deref()
        .map(|c| {
            c.trim()
                .parse::<ClientId>()
                .map_err(|e: waymark_domain::IdError| {
                    ApiError::invalid(FieldError::new("/client_id", e.to_string()))
                })
        })
        .transpose()?;
    if let Some(c) = only {
        state.store.get_client(c).await.map_err(|e| match e {
            waymark_store::StoreError::NotFound { .. } => {
                ApiError::invalid(FieldError::new("/client_id", format!("no client {c}")))
            }
            e => e.into(),
        })?;
    }
    let summary = run_rules(&state, "request", only, &ctx).await?;
    Ok(JsonOut(summary))
}

/// Runs the rules (over one client or all) and wakes the event streams.
pub async fn run_rules(
    state: &AppState,
    trigger: &str,
    only: Option<ClientId>,
    ctx: &WriteContext,
) -> Result<QueueRunSummary, ApiError> {
    let summary = waymark_engine::queue::refresh(
        &*state.store,
        &state.packs,
        trigger,
        only,
        state.clock.now(),
        ctx,
    )
    .await?;
    state.notify_change();
    Ok(summary)
}

/// After a client's signals changed: runs the rules over it. The change is
/// already recorded, so a failed run is logged (the schedule catches up), not
/// answered.
pub async fn signals_changed(
    state: &AppState,
    client: ClientId,
    ctx: &WriteContext,
) -> Option<QueueRunSummary> {
    match run_rules(state, waymark_engine::queue::SIGNALS, Some(client), ctx).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(client = %client, error = %e, "queue: the rules run after a signal change failed; the schedule will catch up");
            None
        }
    }
}

/// One queue item.
#[utoipa::path(get, path = "/api/v1/queue/items/{id}", tag = "queue",
    params(("id" = String, Path, description = "A queue item id (qit_...)")),
    responses((status = 200, body = QueueItemView), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_queue_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<QueueItemView>, ApiError> {
    caller.require_staff()?;
    let id: QueueItemId = path_id(&id)?;
    let item = state.store.get_queue_item(id).await?;
    Ok(JsonOut(QueueItemView::new(item, state.clock.now().date())))
}

/// Start the item's playbook: a journey of its template for its client,
/// started at its first step; the item shows it from then on. Refused (409)
/// when the item already started one or is closed.
#[utoipa::path(post, path = "/api/v1/queue/items/{id}/start", tag = "queue",
    params(("id" = String, Path, description = "A queue item id (qit_...)")),
    responses((status = 201, body = JourneyDetail), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn start_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<(StatusCode, JsonOut<JourneyDetail>), ApiError> {
    caller.require_staff()?;
    let id: QueueItemId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    let journey = start_playbook(&state, id, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        JsonOut(journeys::detail(&*state.store, journey).await?),
    ))
}

/// Creates and starts the playbook journey of a queue item.
pub async fn start_playbook(
    state: &AppState,
    id: QueueItemId,
    ctx: &WriteContext,
) -> Result<JourneyId, ApiError> {
    let item = state.store.get_queue_item(id).await?;
    if let Some(j) = item.journey_id {
        return Err(ApiError::Conflict {
            code: "already_started",
            detail: format!("queue item {id} already started its playbook, journey {j}"),
            allowed: None,
            extra: Box::new(serde_json::Map::from_iter([(
                "journey_id".to_owned(),
                Value::from(j.to_string()),
            )])),
        });
    }
    let template = template_named(state, &item.template).await?.0;
    let created = state
        .store
        .create_journey(
            NewJourney {
                client_id: item.client_id,
                name: format!("{}: {}", template.title, item.client_name),
                template,
                source_artifact_id: None,
                input: Value::Null,
                queue_item: Some(id),
            },
            ctx,
        )
        .await?;
    let journey = created.record.id;
    journeys::apply_event(
        &*state.store,
        journey,
        EventAsk {
            event: Event::Start,
            reason: Some(format!("started from the queue: {}", item.reason)),
            trigger: None,
            overrides: vec![],
            automatic: false,
            outcome: None,
        },
        ctx,
    )
    .await?;
    state.notify_change();
    Ok(journey)
}

/// A journey template by name, with the pack it comes from (`api` for one
/// made over the API).
async fn template_named(
    state: &AppState,
    name: &str,
) -> Result<(JourneyTemplate, String), ApiError> {
    catalog::journey_templates(&state.packs, &*state.store)
        .await?
        .into_iter()
        .find(|(t, _)| t.name == name)
        .ok_or_else(|| ApiError::Conflict {
            code: "template_missing",
            detail: format!(
                "the playbook template {name} is no longer installed; install its pack again"
            ),
            allowed: None,
            extra: Box::default(),
        })
}

// --- saved actions ---------------------------------------------------------------

/// A saved action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub action: SavedAction,
    /// `snooze`: until when (RFC 3339); the item leaves the queue until then.
    pub until: Option<String>,
    /// `escalate`: the user id (usr_...) of the new owner, a member of the team.
    pub to: Option<String>,
    /// `schedule`: the due date (YYYY-MM-DD).
    pub due: Option<String>,
    /// Why; required for `skip`.
    pub reason: Option<String>,
}

/// A checked action: the domain's, the reason, and the new owner when one.
struct CheckedAction {
    action: Action,
    reason: Option<String>,
}

async fn parse_action(state: &AppState, req: ActionRequest) -> Result<CheckedAction, ApiError> {
    let reason = waymark_domain::artifact::parse_note(req.reason.as_deref(), "/reason")
        .map_err(ApiError::invalid)?;
    let missing = |field: &str, what: &str| {
        ApiError::invalid(FieldError::new(
            format!("/{field}"),
            format!("{} needs `{field}`: {what}", req.action.as_str()),
        ))
    };
    let stray = |field: &str, set: bool| -> Result<(), ApiError> {
        if set {
            Err(ApiError::invalid(FieldError::new(
                format!("/{field}"),
                format!("{} takes no `{field}`", req.action.as_str()),
            )))
        } else {
            Ok(())
        }
    };
    let action = match req.action {
        SavedAction::Snooze => {
            stray("to", req.to.is_some())?;
            stray("due", req.due.is_some())?;
            let until = req
                .until
                .as_deref()
                .ok_or_else(|| missing("until", "a time (RFC 3339), e.g. 2027-01-15T09:00:00Z"))?;
            let until = OffsetDateTime::parse(until.trim(), &Rfc3339).map_err(|_| {
                ApiError::invalid(FieldError::new(
                    "/until",
                    "must be an RFC 3339 time, e.g. 2027-01-15T09:00:00Z",
                ))
            })?;
            Action::Snooze { until }
        }
        SavedAction::Escalate => {
            stray("until", req.until.is_some())?;
            stray("due", req.due.is_some())?;
            let to = req
                .to
                .as_deref()
                .ok_or_else(|| missing("to", "the user id (usr_...) of the new owner"))?;
            let id: UserId = to.trim().parse().map_err(|e: waymark_domain::IdError| {
                ApiError::invalid(FieldError::new("/to", e.to_string()))
            })?;
            let user = match state.store.get_user(id).await {
                Ok(u) => u,
                Err(waymark_store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::invalid(FieldError::new(
                        "/to",
                        format!("no user {id}"),
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            if user.role == Role::Client {
                return Err(ApiError::invalid(FieldError::new(
                    "/to",
                    "a playbook is escalated to a member of the team, not to a client's contact",
                )));
            }
            Action::Escalate {
                to: user.id.to_string(),
            }
        }
        SavedAction::Schedule => {
            stray("until", req.until.is_some())?;
            stray("to", req.to.is_some())?;
            let due = req
                .due
                .as_deref()
                .ok_or_else(|| missing("due", "a date, YYYY-MM-DD"))?;
            let due = waymark_domain::dates::parse(due.trim()).ok_or_else(|| {
                ApiError::invalid(FieldError::new("/due", "must be a date, YYYY-MM-DD"))
            })?;
            Action::Schedule { due }
        }
        SavedAction::Skip => {
            stray("until", req.until.is_some())?;
            stray("to", req.to.is_some())?;
            stray("due", req.due.is_some())?;
            if reason.is_none() {
                return Err(missing("reason", "why the step is skipped"));
            }
            Action::Skip
        }
    };
    Ok(CheckedAction { action, reason })
}

fn refused(e: queue::ActionRefusal) -> ApiError {
    ApiError::Conflict {
        code: "action_refused",
        detail: e.to_string(),
        allowed: None,
        extra: Box::default(),
    }
}

/// What a saved action answers: the item (when the playbook came from the
/// queue) and the journey (once started).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    pub item: Option<QueueItemView>,
    pub journey: Option<JourneyDetail>,
}

async fn act_on_journey(
    state: &AppState,
    journey: &Journey,
    checked: CheckedAction,
    ctx: &WriteContext,
) -> Result<ActionAnswer, ApiError> {
    let item = state.store.queue_item_of_journey(journey.id).await?;
    let now = state.clock.now();
    let (status, owner) = match &item {
        Some(i) => (i.status, i.owner.clone()),
        None => (ItemStatus::Started, None),
    };
    let effect =
        queue::check_action(&checked.action, status, owner.as_deref(), now).map_err(refused)?;
    let saved = match checked.action {
        Action::Snooze { .. } => SavedAction::Snooze,
        Action::Skip => SavedAction::Skip,
        Action::Escalate { .. } => SavedAction::Escalate,
        Action::Schedule { .. } => SavedAction::Schedule,
    };
    journeys::apply_action(
        &*state.store,
        journey.id,
        saved,
        effect,
        checked.reason,
        ctx,
    )
    .await?;
    state.notify_change();
    let item = state.store.queue_item_of_journey(journey.id).await?;
    Ok(ActionAnswer {
        item: item.map(|i| QueueItemView::new(i, now.date())),
        journey: Some(journeys::detail(&*state.store, journey.id).await?),
    })
}

/// A saved action on a playbook journey: `snooze` (`until`: its queue item
/// leaves the queue until then), `skip` (the current step, with a `reason`),
/// `escalate` (`to` another member of the team, who is told by event and
/// mail), `schedule` (`due`). Recorded in the journey's history and the audit
/// log.
#[utoipa::path(post, path = "/api/v1/journeys/{id}/actions", tag = "queue", request_body = ActionRequest,
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = ActionAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn journey_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<JsonOut<ActionAnswer>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    let req: ActionRequest = from_value(body)?;
    let journey = state.store.get_journey(id).await?;
    let checked = parse_action(&state, req).await?;
    Ok(JsonOut(
        act_on_journey(&state, &journey, checked, &ctx).await?,
    ))
}

/// A saved action on a queue item, from the queue itself: `snooze`,
/// `escalate`, `schedule` (a `skip` needs a started playbook). Once the
/// item's playbook started, this acts on its journey.
#[utoipa::path(post, path = "/api/v1/queue/items/{id}/actions", tag = "queue", request_body = ActionRequest,
    params(("id" = String, Path, description = "A queue item id (qit_...)")),
    responses((status = 200, body = ActionAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn item_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<JsonOut<ActionAnswer>, ApiError> {
    caller.require_staff()?;
    let id: QueueItemId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    let req: ActionRequest = from_value(body)?;
    let item = state.store.get_queue_item(id).await?;
    let checked = parse_action(&state, req).await?;
    Ok(JsonOut(act_on_item(&state, item, checked, &ctx).await?))
}

async fn act_on_item(
    state: &AppState,
    item: QueueItem,
    checked: CheckedAction,
    ctx: &WriteContext,
) -> Result<ActionAnswer, ApiError> {
    if let Some(j) = item.journey_id {
        let journey = state.store.get_journey(j).await?;
        return act_on_journey(state, &journey, checked, ctx).await;
    }
    let now = state.clock.now();
    let effect = queue::check_action(&checked.action, item.status, item.owner.as_deref(), now)
        .map_err(refused)?;
    let item = state
        .store
        .queue_item_action(
            item.id,
            ItemAction {
                action: checked.action.name(),
                effect,
                reason: checked.reason,
            },
            ctx,
        )
        .await?;
    state.notify_change();
    Ok(ActionAnswer {
        item: Some(QueueItemView::new(item, now.date())),
        journey: None,
    })
}

// --- signals ---------------------------------------------------------------------

/// One observation of a client's signal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalIn {
    /// e.g. `usage.active_users`, `financials.mrr`, `engagement.support_tickets`,
    /// `health_score`.
    pub name: String,
    pub value: f64,
    /// When it was observed (RFC 3339); now when left out.
    pub at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalsRequest {
    pub observations: Vec<SignalIn>,
}

/// What recording signals did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalsAnswer {
    pub recorded: usize,
    /// The rules run over the client that followed (none when it failed; the
    /// schedule catches up).
    pub queue: Option<QueueRunSummary>,
}

/// Record observations of a client's signals (usage, financial and
/// engagement figures over time): they feed the playbooks' context and
/// trends, and the queue rules run over the client after them.
#[utoipa::path(post, path = "/api/v1/clients/{id}/signals", tag = "queue", request_body = SignalsRequest,
    params(("id" = String, Path, description = "A client id (cli_...)")),
    responses((status = 201, body = SignalsAnswer), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn record_signals(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<SignalsAnswer>), ApiError> {
    caller.require_staff()?;
    let client: ClientId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    let req: SignalsRequest = from_value(body)?;
    if req.observations.is_empty() || req.observations.len() > 1000 {
        return Err(ApiError::invalid(FieldError::new(
            "/observations",
            "give 1 to 1000 observations",
        )));
    }
    let now = state.clock.now();
    let mut errors = Vec::new();
    let mut observations = Vec::with_capacity(req.observations.len());
    for (i, o) in req.observations.into_iter().enumerate() {
        if let Err(why) = check_name("signal", &o.name) {
            errors.push(FieldError::new(format!("/observations/{i}/name"), why));
        }
        if !o.value.is_finite() || o.value.abs() > 1e15 {
            errors.push(FieldError::new(
                format!("/observations/{i}/value"),
                "must be a finite number within ±1e15",
            ));
        }
        let at = match o.at.as_deref() {
            None => now,
            Some(t) => match OffsetDateTime::parse(t.trim(), &Rfc3339) {
                Ok(t) if t <= now + time::Duration::days(1) => t,
                Ok(_) => {
                    errors.push(FieldError::new(
                        format!("/observations/{i}/at"),
                        "is more than a day in the future",
                    ));
                    now
                }
                Err(_) => {
                    errors.push(FieldError::new(
                        format!("/observations/{i}/at"),
                        "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z",
                    ));
                    now
                }
            },
        };
        observations.push(NewObservation {
            name: o.name,
            value: o.value,
            at,
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            detail: format!("{} invalid observation field(s)", errors.len()),
            errors,
        });
    }
    state.store.get_client(client).await?;
    let recorded = state
        .store
        .record_signals(client, observations, &ctx)
        .await?;
    let queue = signals_changed(&state, client, &ctx).await;
    Ok((
        StatusCode::CREATED,
        JsonOut(SignalsAnswer { recorded, queue }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SignalsQuery {
    /// The last this many days, 1 to 400 (default 90).
    #[param(minimum = 1, maximum = 400)]
    pub days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignalList {
    pub items: Vec<SignalRecord>,
}

/// A client's signal observations of the last `days` days, oldest first.
#[utoipa::path(get, path = "/api/v1/clients/{id}/signals", tag = "queue", params(("id" = String, Path, description = "A client id (cli_...)"), SignalsQuery),
    responses((status = 200, body = SignalList), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_signals(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<SignalsQuery>,
) -> Result<JsonOut<SignalList>, ApiError> {
    caller.require_staff()?;
    let client: ClientId = path_id(&id)?;
    let days = q.days.unwrap_or(90);
    if !(1..=400).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "days must be from 1 to 400",
        ));
    }
    state.store.get_client(client).await?;
    let since = state.clock.now() - time::Duration::days(i64::from(days));
    Ok(JsonOut(SignalList {
        items: state.store.client_signals(client, since).await?,
    }))
}

// --- context, steps and branches -------------------------------------------------

/// A playbook journey the team may work: refused (422 at `/journey_id` or 409)
/// for a journey that is not a playbook.
fn require_playbook(journey: &Journey) -> Result<(), ApiError> {
    if journey.definition.playbook.is_none() {
        return Err(ApiError::Conflict {
            code: "not_a_playbook",
            detail: format!(
                "journey {} runs template {}, which is not a playbook; steps, branches and threads belong to playbooks",
                journey.id, journey.template
            ),
            allowed: None,
            extra: Box::default(),
        });
    }
    Ok(())
}

/// The customer context of a journey at `now`.
pub async fn context_of(state: &AppState, journey: &Journey) -> Result<CustomerContext, ApiError> {
    let now = state.clock.now();
    let client = state.store.get_client(journey.client_id).await?;
    let signals = state
        .store
        .client_signals(client.id, now - time::Duration::days(120))
        .await?;
    let item = state.store.queue_item_of_journey(journey.id).await?;
    let observations: Vec<(String, OffsetDateTime, f64)> = signals
        .into_iter()
        .map(|s| (s.name, s.at, s.value))
        .collect();
    let mut data = chat::grouped_trends(&observations);
    let mut trends = std::collections::BTreeMap::new();
    if let Some(other) = data.get_mut("other") {
        for score in ["health_score", "risk_score", "opportunity_score"] {
            if let Some(t) = other.remove(score) {
                trends.insert(score.to_owned(), t);
            }
        }
    }
    let stage_name = journey
        .stage
        .as_deref()
        .and_then(|s| journey.definition.stages.iter().find(|d| d.id == s))
        .map(|d| d.name.clone());
    Ok(CustomerContext {
        customer: Customer {
            id: client.id.to_string(),
            name: client.name.clone(),
            domain: client
                .attributes
                .get("domain")
                .and_then(Value::as_str)
                .map(str::to_owned),
            arr: client.arr,
            renewal_date: client.renewal_date,
            owner: client.owner.clone(),
        },
        intelligence: Intelligence {
            health_score: client.health_score,
            risk_score: client.risk_score,
            opportunity_score: client.opportunity_score,
            trends,
        },
        data,
        workflow: Workflow {
            journey_id: journey.id.to_string(),
            template: journey.template.clone(),
            template_title: journey.definition.title.clone(),
            stage: journey.state.clone(),
            stage_name,
            days_to_renewal: client.renewal_date.map(|d| (d - now.date()).whole_days()),
            priority_score: item.as_ref().map(|i| i.score),
            queue_item_id: item.as_ref().map(|i| i.id.to_string()),
            due: item.as_ref().map(|i| i.due),
        },
    })
}

/// A playbook's customer context: the customer (name, domain, ARR, renewal
/// date, owner), intelligence (the scores with their trends), data (the
/// client's signals by group with their trends over 30 and 90 days) and the
/// workflow (template, step, days to renewal, priority score).
#[utoipa::path(get, path = "/api/v1/journeys/{id}/context", tag = "queue",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = CustomerContext), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_context(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<CustomerContext>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let journey = state.store.get_journey(id).await?;
    Ok(JsonOut(context_of(&state, &journey).await?))
}

/// A step of a playbook, with where the journey stands on it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// 1-based.
    pub number: usize,
    pub of: usize,
    /// The journey is on this step now.
    pub current: bool,
    /// Completing this step completes the playbook (with an outcome).
    pub last: bool,
}

fn step_view(journey: &Journey, i: usize) -> StepView {
    let def = &journey.definition;
    let s = &def.stages[i];
    StepView {
        id: s.id.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        number: i + 1,
        of: def.stages.len(),
        current: journey.phase == Phase::Active && journey.stage.as_deref() == Some(&s.id),
        last: i + 1 == def.stages.len(),
    }
}

/// A step's branches.
#[derive(Debug, Serialize, ToSchema)]
pub struct BranchesAnswer {
    pub step: StepView,
    pub branches: Vec<BranchDef>,
    /// The outcomes the last step records.
    pub outcomes: Vec<String>,
    /// The step's conversations.
    pub threads: Vec<Thread>,
}

fn step_index(journey: &Journey, step: &str) -> Result<usize, ApiError> {
    journey
        .definition
        .stages
        .iter()
        .position(|s| s.id == step)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "playbook {} has no step `{}`; its steps are {}",
                journey.template,
                step.chars().take(64).collect::<String>(),
                journey.stages.join(", ")
            ))
        })
}

/// The ways a playbook step can go: fixed choices, an LLM conversation, saved
/// actions; with the step's threads.
#[utoipa::path(get, path = "/api/v1/journeys/{id}/steps/{step}/branches", tag = "queue",
    params(("id" = String, Path, description = "A journey id (jrn_...)"), ("step" = String, Path, description = "A step (stage) id")),
    responses((status = 200, body = BranchesAnswer), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn get_branches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, step)): Path<(String, String)>,
) -> Result<JsonOut<BranchesAnswer>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let journey = state.store.get_journey(id).await?;
    require_playbook(&journey)?;
    let i = step_index(&journey, &step)?;
    let threads = state
        .store
        .list_threads(id)
        .await?
        .into_iter()
        .filter(|t| t.step == step)
        .collect();
    Ok(JsonOut(BranchesAnswer {
        step: step_view(&journey, i),
        branches: journey.definition.stages[i].branches.clone(),
        outcomes: journey
            .definition
            .playbook
            .as_ref()
            .map(|p| p.outcomes.clone())
            .unwrap_or_default(),
        threads,
    }))
}

/// How a step is completed.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteStep {
    /// The fixed branch chosen, if any (its outcome, on the last step).
    pub branch: Option<String>,
    /// The last step: the playbook's outcome (when no branch carries one).
    pub outcome: Option<String>,
    pub reason: Option<String>,
}

/// A completed step: the journey, and the step it is on now (none once the
/// playbook completed).
#[derive(Debug, Serialize, ToSchema)]
pub struct StepAnswer {
    pub journey: JourneyDetail,
    pub next_step: Option<StepView>,
}

/// Completes the journey's current step `step`: promotes to the next step, or
/// completes the playbook with its outcome on the last one.
pub async fn finish_step(
    state: &AppState,
    journey: &Journey,
    step: &str,
    req: CompleteStep,
    ctx: &WriteContext,
) -> Result<StepAnswer, ApiError> {
    require_playbook(journey)?;
    let i = step_index(journey, step)?;
    if journey.phase != Phase::Active || journey.stage.as_deref() != Some(step) {
        return Err(ApiError::Conflict {
            code: "not_current_step",
            detail: format!(
                "the playbook is at {}, not on step {step}; only the current step is completed",
                journey.state
            ),
            allowed: None,
            extra: Box::default(),
        });
    }
    let def = &journey.definition;
    let stage = &def.stages[i];
    let branch = match req.branch.as_deref() {
        None => None,
        Some(key) => Some(
            stage
                .branches
                .iter()
                .find(|b| b.key == key && b.kind == BranchKind::Fixed)
                .ok_or_else(|| {
                    ApiError::invalid(FieldError::new(
                        "/branch",
                        format!(
                            "step {step} has no fixed branch `{}`; its fixed branches are {}",
                            key.chars().take(64).collect::<String>(),
                            stage
                                .branches
                                .iter()
                                .filter(|b| b.kind == BranchKind::Fixed)
                                .map(|b| b.key.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                })?,
        ),
    };
    let last = i + 1 == def.stages.len();
    let outcome = match (branch.and_then(|b| b.outcome.clone()), req.outcome) {
        (Some(b), Some(o)) if b != o => {
            return Err(ApiError::invalid(FieldError::new(
                "/outcome",
                format!(
                    "branch {} records outcome {b}, not {o}",
                    req.branch.unwrap_or_default()
                ),
            )));
        }
        (b, o) => b.or(o),
    };
    if !last && outcome.is_some() {
        return Err(ApiError::invalid(FieldError::new(
            "/outcome",
            "only the last step records the playbook's outcome",
        )));
    }
    let reason = waymark_domain::artifact::parse_note(req.reason.as_deref(), "/reason")
        .map_err(ApiError::invalid)?
        .or_else(|| branch.map(|b| format!("chose: {}", b.label)));
    journeys::apply_event(
        &*state.store,
        journey.id,
        EventAsk {
            event: if last {
                Event::Complete
            } else {
                Event::Promote
            },
            reason,
            trigger: None,
            overrides: vec![],
            automatic: false,
            outcome,
        },
        ctx,
    )
    .await?;
    state.notify_change();
    let after = state.store.get_journey(journey.id).await?;
    let next_step = if after.phase == Phase::Active {
        after
            .stage
            .as_deref()
            .and_then(|s| after.definition.stages.iter().position(|d| d.id == s))
            .map(|i| step_view(&after, i))
    } else {
        None
    };
    Ok(StepAnswer {
        journey: journeys::detail(&*state.store, journey.id).await?,
        next_step,
    })
}

/// Complete the current step of a playbook (optionally by a fixed branch):
/// answers the next step, or none once the last step completed the playbook
/// with its outcome.
#[utoipa::path(post, path = "/api/v1/journeys/{id}/steps/{step}/complete", tag = "queue", request_body = CompleteStep,
    params(("id" = String, Path, description = "A journey id (jrn_...)"), ("step" = String, Path, description = "A step (stage) id")),
    responses((status = 200, body = StepAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn complete_step(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path((id, step)): Path<(String, String)>,
    body: Option<crate::extract::Json<Value>>,
) -> Result<JsonOut<StepAnswer>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    let req: CompleteStep = match body {
        Some(crate::extract::Json(v)) if !v.is_null() => from_value(v)?,
        _ => CompleteStep::default(),
    };
    let journey = state.store.get_journey(id).await?;
    Ok(JsonOut(
        finish_step(&state, &journey, &step, req, &ctx).await?,
    ))
}

// --- threads -----------------------------------------------------------------------

/// A conversation to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateThread {
    #[schema(value_type = waymark_domain::JourneyId)]
    pub journey_id: String,
    /// The step (the journey's current one).
    pub step: String,
    /// The `llm` branch it comes from, whose prompt it follows.
    pub branch: Option<String>,
}

/// A thread with its messages and the artifacts saved from it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadAnswer {
    pub thread: Thread,
    pub messages: Vec<ThreadMessage>,
    pub artifacts: Vec<ArtifactId>,
}

/// The thread, when the caller may work it (the team) — 404 otherwise.
async fn thread_for(state: &AppState, caller: &Caller, id: &str) -> Result<Thread, ApiError> {
    caller.require_staff()?;
    let id: ThreadId = path_id(id)?;
    Ok(state.store.get_thread(id).await?)
}

/// Open a conversation on a playbook's current step: its system message
/// carries the customer context, the step and the branch's prompt.
#[utoipa::path(post, path = "/api/v1/threads", tag = "threads", request_body = CreateThread,
    responses((status = 201, body = ThreadAnswer), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_thread(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<ThreadAnswer>), ApiError> {
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace)?;
    let req: CreateThread = from_value(body)?;
    let journey_id: JourneyId =
        req.journey_id
            .trim()
            .parse()
            .map_err(|e: waymark_domain::IdError| {
                ApiError::invalid(FieldError::new("/journey_id", e.to_string()))
            })?;
    let journey = match state.store.get_journey(journey_id).await {
        Ok(j) => j,
        Err(waymark_store::StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid(FieldError::new(
                "/journey_id",
                format!("no journey {journey_id}"),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let thread = open_thread(&state, &journey, &req.step, req.branch.as_deref(), &ctx).await?;
    Ok((
        StatusCode::CREATED,
        JsonOut(thread_answer(&state, thread).await?),
    ))
}

/// Opens a thread on the journey's current step.
pub async fn open_thread(
    state: &AppState,
    journey: &Journey,
    step: &str,
    branch: Option<&str>,
    ctx: &WriteContext,
) -> Result<Thread, ApiError> {
    require_playbook(journey)?;
    let i = journey
        .definition
        .stages
        .iter()
        .position(|s| s.id == step)
        .ok_or_else(|| {
            ApiError::invalid(FieldError::new(
                "/step",
                format!(
                    "playbook {} has no step `{}`; its steps are {}",
                    journey.template,
                    step.chars().take(64).collect::<String>(),
                    journey.stages.join(", ")
                ),
            ))
        })?;
    if journey.phase != Phase::Active || journey.stage.as_deref() != Some(step) {
        return Err(ApiError::Conflict {
            code: "not_current_step",
            detail: format!(
                "the playbook is at {}, not on step {step}; conversations are opened on the current step",
                journey.state
            ),
            allowed: None,
            extra: Box::default(),
        });
    }
    let stage = &journey.definition.stages[i];
    let branch_def = match branch {
        None => None,
        Some(key) => Some(
            stage
                .branches
                .iter()
                .find(|b| b.key == key && b.kind == BranchKind::Llm)
                .ok_or_else(|| {
                    ApiError::invalid(FieldError::new(
                        "/branch",
                        format!(
                            "step {step} has no llm branch `{}`",
                            key.chars().take(64).collect::<String>()
                        ),
                    ))
                })?,
        ),
    };
    let context = context_of(state, journey).await?;
    let system = chat::system_message(&context, stage, branch_def);
    let thread = state
        .store
        .create_thread(
            NewThread {
                journey_id: journey.id,
                client_id: journey.client_id,
                step: step.to_owned(),
                branch: branch_def.map(|b| b.key.clone()),
                system,
            },
            ctx,
        )
        .await?;
    state.notify_change();
    Ok(thread)
}

async fn thread_answer(state: &AppState, thread: Thread) -> Result<ThreadAnswer, ApiError> {
    Ok(ThreadAnswer {
        messages: state.store.thread_messages(thread.id).await?,
        artifacts: state.store.thread_artifacts(thread.id).await?,
        thread,
    })
}

/// A thread with its messages.
#[utoipa::path(get, path = "/api/v1/threads/{id}", tag = "threads",
    params(("id" = String, Path, description = "A thread id (thr_...)")),
    responses((status = 200, body = ThreadAnswer), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_thread(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<ThreadAnswer>, ApiError> {
    let thread = thread_for(&state, &caller, &id).await?;
    Ok(JsonOut(thread_answer(&state, thread).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<ThreadMessage>,
}

/// A thread's messages, oldest first (the system message first).
#[utoipa::path(get, path = "/api/v1/threads/{id}/messages", tag = "threads",
    params(("id" = String, Path, description = "A thread id (thr_...)")),
    responses((status = 200, body = MessageList), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<MessageList>, ApiError> {
    let thread = thread_for(&state, &caller, &id).await?;
    Ok(JsonOut(MessageList {
        items: state.store.thread_messages(thread.id).await?,
    }))
}

/// The longest message a person may send.
pub const MAX_MESSAGE_CHARS: usize = 8_000;
/// The most messages a thread holds.
pub const MAX_THREAD_MESSAGES: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// 1 to 8,000 characters.
    pub content: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// Answer as server-sent events: `token` events with each piece of the
    /// reply as it arrives, then `message` with the stored reply.
    pub stream: Option<bool>,
}

/// The person's message and the reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAnswer {
    pub messages: Vec<ThreadMessage>,
}

/// A message checked and stored, with what the reply needs.
pub struct Asked {
    thread: Thread,
    prompt: Prompt,
    context: CustomerContext,
    stage: StageDef,
    branch: Option<BranchDef>,
    question: String,
}

/// Stores the person's message (so it is never lost, whatever the provider
/// does) and prepares the prompt: the system message and the history.
pub async fn ask(
    state: &AppState,
    thread: Thread,
    content: &str,
    ctx: &WriteContext,
) -> Result<(Asked, ThreadMessage), ApiError> {
    let content = content.trim();
    if content.is_empty() || content.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::invalid(FieldError::new(
            "/content",
            format!("must be 1 to {MAX_MESSAGE_CHARS} characters"),
        )));
    }
    if thread.status == ThreadStatus::Completed {
        return Err(ApiError::Conflict {
            code: "thread_completed",
            detail: format!(
                "thread {} is completed; open a new thread to go on talking",
                thread.id
            ),
            allowed: None,
            extra: Box::default(),
        });
    }
    let history = state.store.thread_messages(thread.id).await?;
    if history.len() + 2 > MAX_THREAD_MESSAGES {
        return Err(ApiError::Conflict {
            code: "thread_full",
            detail: format!(
                "thread {} holds {MAX_THREAD_MESSAGES} messages; complete it and open a new one",
                thread.id
            ),
            allowed: None,
            extra: Box::default(),
        });
    }
    let journey = state.store.get_journey(thread.journey_id).await?;
    let stage = journey
        .definition
        .stages
        .iter()
        .find(|s| s.id == thread.step)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no step {}", thread.step)))?;
    let branch = thread
        .branch
        .as_deref()
        .and_then(|b| stage.branches.iter().find(|d| d.key == b))
        .cloned();
    let context = context_of(state, &journey).await?;
    let stored = state
        .store
        .add_thread_messages(
            thread.id,
            vec![NewMessage {
                role: MessageRole::User,
                content: content.to_owned(),
                provider: None,
                fallback: None,
            }],
            ctx,
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("the message was not stored".into()))?;
    let mut system = None;
    let mut turns = Vec::new();
    for m in history {
        match m.role {
            MessageRole::System => system = Some(m.content),
            MessageRole::User => turns.push(Turn {
                role: "user",
                content: m.content,
            }),
            MessageRole::Assistant => turns.push(Turn {
                role: "assistant",
                content: m.content,
            }),
        }
    }
    let prompt = Prompt {
        system,
        history: turns,
        user: content.to_owned(),
        temperature: Some(0.3),
        json: false,
    };
    Ok((
        Asked {
            thread,
            prompt,
            context,
            stage,
            branch,
            question: content.to_owned(),
        },
        stored,
    ))
}

/// Asks the provider (each piece of text to `on_piece`) and stores the
/// reply with its provider; when none is configured or the call fails, the
/// template provider answers and says why.
pub async fn reply(
    state: &AppState,
    asked: Asked,
    mut on_piece: Option<&mut (dyn FnMut(&str) + Send)>,
    ctx: &WriteContext,
) -> Result<ThreadMessage, ApiError> {
    let answer = match on_piece.as_mut() {
        Some(f) => state.llm.complete(&asked.prompt, Some(&mut **f)).await,
        None => state.llm.complete(&asked.prompt, None).await,
    };
    let message = match answer {
        Ok(c) if !c.text.trim().is_empty() => NewMessage {
            role: MessageRole::Assistant,
            content: c.text,
            provider: Some(c.provenance),
            fallback: None,
        },
        failed => {
            let why = match failed {
                Ok(_) => "the provider answered nothing".to_owned(),
                Err(LlmError::NotConfigured) => "no LLM provider is configured".to_owned(),
                Err(e) => e.to_string(),
            };
            let text = chat::template_reply(
                &asked.context,
                &asked.stage,
                asked.branch.as_ref(),
                &asked.question,
                &why,
            );
            if let Some(f) = on_piece.as_mut() {
                for piece in text.split_inclusive(' ') {
                    f(piece);
                }
            }
            NewMessage {
                role: MessageRole::Assistant,
                content: text,
                provider: Some("template".into()),
                fallback: Some(why),
            }
        }
    };
    let stored = state
        .store
        .add_thread_messages(asked.thread.id, vec![message], ctx)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("the reply was not stored".into()))?;
    state.notify_change();
    Ok(stored)
}

/// Send a message and get the reply, the conversation's history included.
/// Every reply records its provider (`ollama:<model>`, `openai:<model>`, or
/// `template` when no provider is configured or the call failed, with
/// `fallback` saying why). With `?stream=true` the answer is server-sent
/// events: `user` (the stored message), `token` (each piece of the reply as it
/// arrives), then `message` (the stored reply).
#[utoipa::path(post, path = "/api/v1/threads/{id}/messages", tag = "threads", request_body = SendMessage,
    params(("id" = String, Path, description = "A thread id (thr_...)"), StreamQuery),
    responses((status = 201, body = MessageAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn send_message(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<Response, ApiError> {
    let thread = thread_for(&state, &caller, &id).await?;
    let ctx = write_context(&caller, &trace)?;
    let req: SendMessage = from_value(body)?;
    let (asked, user) = ask(&state, thread, &req.content, &ctx).await?;
    if q.stream.unwrap_or(false) {
        return Ok(stream_reply(state, asked, user, ctx).into_response());
    }
    let answer = reply(&state, asked, None, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        JsonOut(MessageAnswer {
            messages: vec![user, answer],
        }),
    )
        .into_response())
}

/// The reply as server-sent events. The reply is asked for and stored by a
/// task of its own, so it is kept even when the listener goes away.
pub fn stream_reply(
    state: AppState,
    asked: Asked,
    user: ThreadMessage,
    ctx: WriteContext,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<SseEvent>();
    let first = SseEvent::default()
        .event("user")
        .json_data(&user)
        .unwrap_or_default();
    let _ = tx.send(first);
    tokio::spawn(async move {
        let pieces = tx.clone();
        let mut on_piece = move |piece: &str| {
            let _ = pieces.send(
                SseEvent::default()
                    .event("token")
                    .json_data(serde_json::json!({ "text": piece }))
                    .unwrap_or_default(),
            );
        };
        let last = match reply(&state, asked, Some(&mut on_piece), &ctx).await {
            Ok(m) => SseEvent::default()
                .event("message")
                .json_data(&m)
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "threads: storing a streamed reply failed");
                SseEvent::default()
                    .event("error")
                    .json_data(serde_json::json!({"detail": e.to_string()}))
                    .unwrap_or_default()
            }
        };
        let _ = tx.send(last);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// How a thread's step completes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteThread {
    /// The last step: the playbook's outcome.
    pub outcome: Option<String>,
    pub reason: Option<String>,
}

/// A completed thread, its journey and the step it is on now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadCompleted {
    pub thread: Thread,
    pub journey: JourneyDetail,
    /// None once the playbook completed.
    pub next_step: Option<StepView>,
}

/// Complete a thread: completes its step (the last one with the playbook's
/// `outcome`) and answers the next step.
#[utoipa::path(post, path = "/api/v1/threads/{id}/complete", tag = "threads", request_body = CompleteThread,
    params(("id" = String, Path, description = "A thread id (thr_...)")),
    responses((status = 200, body = ThreadCompleted), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn complete_thread(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    body: Option<crate::extract::Json<Value>>,
) -> Result<JsonOut<ThreadCompleted>, ApiError> {
    let thread = thread_for(&state, &caller, &id).await?;
    let ctx = write_context(&caller, &trace)?;
    let req: CompleteThread = match body {
        Some(crate::extract::Json(v)) if !v.is_null() => from_value(v)?,
        _ => CompleteThread::default(),
    };
    Ok(JsonOut(finish_thread(&state, thread, req, &ctx).await?))
}

/// Completes a thread's step, then the thread.
pub async fn finish_thread(
    state: &AppState,
    thread: Thread,
    req: CompleteThread,
    ctx: &WriteContext,
) -> Result<ThreadCompleted, ApiError> {
    if thread.status == ThreadStatus::Completed {
        return Err(ApiError::Conflict {
            code: "thread_completed",
            detail: format!("thread {} is already completed", thread.id),
            allowed: None,
            extra: Box::default(),
        });
    }
    let journey = state.store.get_journey(thread.journey_id).await?;
    let step = finish_step(
        state,
        &journey,
        &thread.step,
        CompleteStep {
            branch: None,
            outcome: req.outcome,
            reason: req
                .reason
                .or_else(|| Some(format!("conversation {} completed", thread.id))),
        },
        ctx,
    )
    .await?;
    let thread = state.store.complete_thread(thread.id, ctx).await?;
    state.notify_change();
    Ok(ThreadCompleted {
        thread,
        journey: step.journey,
        next_step: step.next_step,
    })
}

/// A reply to keep as an artifact of the playbook's pack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveArtifact {
    /// An artifact type of the playbook's pack, e.g. `email_draft`.
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: Option<String>,
    /// The reply it comes from (its `seq`); the last reply when left out.
    pub message_seq: Option<i64>,
    /// The document; drafted from the reply when left out (its text fills
    /// what it can of the type's schema, e.g. an email's subject and body).
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
}

/// A saved artifact with its rule warnings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedArtifact {
    pub artifact: Artifact,
    pub warnings: Vec<String>,
}

/// The pack a playbook template comes from.
async fn pack_of_template(state: &AppState, template: &str) -> Result<Option<Arc<Pack>>, ApiError> {
    Ok(state
        .packs
        .list()
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.journey(template).is_some()))
}

/// Save a reply as an artifact of the playbook's pack (a draft of the
/// playbook's client, checked against the type's schema), linked to the
/// thread, its journey and step, with the thread as its provenance.
#[utoipa::path(post, path = "/api/v1/threads/{id}/artifacts", tag = "threads", request_body = SaveArtifact,
    params(("id" = String, Path, description = "A thread id (thr_...)")),
    responses((status = 201, body = SavedArtifact), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn save_artifact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<SavedArtifact>), ApiError> {
    let thread = thread_for(&state, &caller, &id).await?;
    let ctx = write_context(&caller, &trace)?;
    let req: SaveArtifact = from_value(body)?;
    Ok((
        StatusCode::CREATED,
        JsonOut(save_reply(&state, &thread, req, &ctx).await?),
    ))
}

/// The draft a reply makes for `artifact_type` (for the page's form), with
/// the type's schema: `None` when the type is not of the playbook's pack.
pub async fn draft_for(
    state: &AppState,
    thread: &Thread,
    artifact_type: &str,
    reply: &str,
) -> Result<Option<(Value, Value)>, ApiError> {
    let journey = state.store.get_journey(thread.journey_id).await?;
    let Some(pack) = pack_of_template(state, &journey.template).await? else {
        return Ok(None);
    };
    Ok(pack.artifact_type(artifact_type).map(|t| {
        let schema = t.schema.clone();
        (chat::draft_from_reply(reply, &schema), schema)
    }))
}

/// Saves a reply as an artifact (see [`save_artifact`]).
pub async fn save_reply(
    state: &AppState,
    thread: &Thread,
    req: SaveArtifact,
    ctx: &WriteContext,
) -> Result<SavedArtifact, ApiError> {
    let journey = state.store.get_journey(thread.journey_id).await?;
    let pack = pack_of_template(state, &journey.template)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(FieldError::new(
                "/type",
                format!(
                    "playbook {} comes from no installed pack, so it has no artifact types",
                    journey.template
                ),
            ))
        })?;
    let Some(ty) = pack.artifact_type(&req.artifact_type) else {
        return Err(ApiError::invalid(FieldError::new(
            "/type",
            format!(
                "pack {} has no type `{}`; its types are {}",
                pack.name,
                req.artifact_type.chars().take(64).collect::<String>(),
                pack.type_names().join(", ")
            ),
        )));
    };
    let messages = state.store.thread_messages(thread.id).await?;
    let source = match req.message_seq {
        Some(seq) => messages
            .iter()
            .find(|m| m.seq == seq && m.role == MessageRole::Assistant)
            .ok_or_else(|| {
                ApiError::invalid(FieldError::new(
                    "/message_seq",
                    format!("thread {} has no reply {seq}", thread.id),
                ))
            })?,
        None => messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::Assistant)
            .ok_or_else(|| {
                ApiError::invalid(FieldError::new(
                    "/message_seq",
                    "the thread has no reply yet; send a message first",
                ))
            })?,
    };
    let content = match req.content {
        Some(c) => c,
        None => chat::draft_from_reply(&source.content, &ty.schema),
    };
    waymark_domain::artifact::check_content(&content, "/content").map_err(ApiError::invalid)?;
    let checked = ty.check(&content, "/content");
    if !checked.errors.is_empty() {
        return Err(ApiError::Invalid {
            detail: format!(
                "the content does not match the {} schema of pack {}; send `content` with what the reply could not fill",
                ty.name, pack.name
            ),
            errors: checked.errors,
        });
    }
    let step_name = journey
        .definition
        .stages
        .iter()
        .find(|s| s.id == thread.step)
        .map_or(thread.step.as_str(), |s| s.name.as_str());
    let title = match req.title.as_deref().map(str::trim) {
        Some(t) => waymark_domain::artifact::parse_title(t, "/title").map_err(ApiError::invalid)?,
        None => format!("{}: {}", ty.title, journey.name)
            .chars()
            .take(200)
            .collect(),
    };
    let provider = source.provider.clone().unwrap_or_else(|| "template".into());
    let created = state
        .store
        .create_artifact(
            NewArtifact {
                client_id: journey.client_id,
                engagement_id: None,
                artifact_type: ty.name.clone(),
                title,
                content,
                sources: Some(vec![]),
                note: Some(format!(
                    "Saved from conversation {} on step \"{step_name}\" of journey {} (reply {} by {provider}).",
                    thread.id, journey.id, source.seq
                )),
                provenance: format!("thread:{}", thread.id),
                pipeline: None,
            },
            ctx,
        )
        .await?;
    let artifact = created.record;
    state
        .store
        .link_thread_artifact(thread.id, artifact.summary.id, Some(source.seq))
        .await?;
    state.notify_change();
    Ok(SavedArtifact {
        artifact,
        warnings: checked.warnings,
    })
}
