//! The work engine over HTTP: units of work and their tasks, finishing tasks
//! with their lease, incidents, and the agent registry with long-poll claiming.
//!
//! The team (admins, operators) submits and manages work; an agent's token
//! claims, heartbeats and finishes the tasks of its own agent id. Client users
//! have no access to the engine.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::artifact::parse_note;
use waymark_domain::work::{self, Executor, Resolution, TaskSpec, TaskStatus};
use waymark_domain::{ClientId, FieldError, IncidentId, TaskId, UnitId};
use waymark_store::{
    Agent, Claim, Finish, Finished, Incident, Leased, NewAgent, NewUnit, Outcome, Page, Role, Task,
    TaskAttempt, TaskFilter, Unit, UnitDetail,
};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, from_value, path_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_unit, list_units))
        .routes(routes!(get_unit))
        .routes(routes!(cancel_unit))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(complete_task))
        .routes(routes!(fail_task))
        .routes(routes!(heartbeat_task))
        .routes(routes!(cancel_task))
        .routes(routes!(list_incidents))
        .routes(routes!(resolve_incident))
        .routes(routes!(register_agent, list_agents))
        .routes(routes!(get_agent))
        .routes(routes!(claim))
        .routes(routes!(webhook_secret))
}

/// An agent is online when it made contact this recently.
const ONLINE_WITHIN: Duration = Duration::from_secs(90);
/// The lease an agent's claim holds before it must heartbeat.
pub const AGENT_LEASE: Duration = Duration::from_secs(60);
/// The longest long-poll.
const MAX_WAIT_S: u64 = 60;

/// A unit of work to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitUnit {
    #[schema(value_type = waymark_domain::ClientId)]
    pub client_id: String,
    #[schema(max_length = 200, pattern = "\\S")]
    pub name: String,
    #[schema(min_items = 1, max_items = 10_000)]
    pub tasks: Vec<TaskSpec>,
    /// Units (`uow_…`) that must complete before any task of this one runs.
    #[serde(default)]
    pub depends_on_units: Vec<String>,
}

fn team_only(caller: &Caller) -> Result<(), ApiError> {
    caller.require_staff()?;
    if caller.role == Role::Agent {
        return Err(ApiError::Forbidden(
            "an agent's token claims and finishes its own tasks; use an operator's token for this"
                .into(),
        ));
    }
    Ok(())
}

/// Submit a unit of work: its tasks (a DAG) start as soon as their dependencies allow.
#[utoipa::path(post, path = "/api/v1/work/units", tag = "work", request_body = SubmitUnit,
    responses((status = 201, body = UnitDetail), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn submit_unit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, JsonOut<UnitDetail>), ApiError> {
    team_only(&caller)?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/work/units", &body)?;
    let req: SubmitUnit = from_value(body)?;
    let client_id: ClientId =
        req.client_id
            .trim()
            .parse()
            .map_err(|e: waymark_domain::IdError| {
                ApiError::invalid(FieldError::new("/client_id", e.to_string()))
            })?;
    let name = work::check_unit_name(&req.name).map_err(ApiError::invalid)?;
    let mut depends_on_units = Vec::with_capacity(req.depends_on_units.len());
    if req.depends_on_units.len() > work::MAX_UNIT_DEPENDENCIES {
        return Err(ApiError::invalid(FieldError::new(
            "/depends_on_units",
            format!("at most {} units", work::MAX_UNIT_DEPENDENCIES),
        )));
    }
    for (i, u) in req.depends_on_units.iter().enumerate() {
        let id: UnitId = u.trim().parse().map_err(|e: waymark_domain::IdError| {
            ApiError::invalid(FieldError::new(
                format!("/depends_on_units/{i}"),
                e.to_string(),
            ))
        })?;
        if !depends_on_units.contains(&id) {
            depends_on_units.push(id);
        }
    }
    let tasks = work::check_tasks(req.tasks).map_err(|errors| ApiError::Invalid {
        detail: format!(
            "the unit's tasks have {} problem(s); see errors",
            errors.len()
        ),
        errors,
    })?;
    let mut unavailable = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let why = match &t.executor {
            Executor::Human | Executor::Agent(_) => None,
            Executor::LlmGenerate => Some(
                "llm.generate tasks run the jobs of a generation plan; queue them with \
                 POST /api/v1/engagements/{id}/plan/run"
                    .to_owned(),
            ),
            Executor::FileExtract => Some(
                "file.extract tasks are queued by uploading a file: POST /api/v1/files".to_owned(),
            ),
            e if waymark_engine::runs(e) => None,
            e => Some(format!(
                "the {} executor is not available on this server yet; use noop, human or an agent id",
                e.name()
            )),
        };
        if let Some(why) = why {
            unavailable.push(FieldError::new(format!("/tasks/{i}/executor"), why));
        }
    }
    if !unavailable.is_empty() {
        return Err(ApiError::Invalid {
            detail: "some tasks name an executor this server does not run".into(),
            errors: unavailable,
        });
    }
    let created = state
        .store
        .submit_unit(
            NewUnit {
                client_id,
                name,
                tasks,
                depends_on_units,
                origin: None,
                plan: None,
            },
            &ctx,
        )
        .await?;
    let detail = state.store.get_unit(created.record.id).await?;
    // A replay answers as the first request did.
    let status = StatusCode::CREATED;
    Ok((status, JsonOut(detail)))
}

/// Which units to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UnitQuery {
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
}

/// A page of units of work.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitPage {
    pub items: Vec<Unit>,
    pub next_cursor: Option<String>,
}

/// Units of work, newest first.
#[utoipa::path(get, path = "/api/v1/work/units", tag = "work", params(UnitQuery, PageParams),
    responses((status = 200, body = UnitPage), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_units(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UnitQuery>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Unit>>, ApiError> {
    caller.require_staff()?;
    let client = q
        .client_id
        .as_deref()
        .map(path_id::<ClientId>)
        .transpose()?;
    Ok(JsonOut(state.store.list_units(client, p.page()?).await?))
}

/// A unit of work with its tasks (the first 1,000), counts and incidents.
#[utoipa::path(get, path = "/api/v1/work/units/{id}", tag = "work",
    params(("id" = String, Path, description = "A unit id (uow_...)")),
    responses((status = 200, body = UnitDetail), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_unit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<UnitDetail>, ApiError> {
    caller.require_staff()?;
    let id: UnitId = path_id(&id)?;
    Ok(JsonOut(state.store.get_unit(id).await?))
}

/// Why something is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
}

/// Cancel every task of the unit not yet done.
#[utoipa::path(post, path = "/api/v1/work/units/{id}/cancel", tag = "work", request_body = CancelRequest,
    params(("id" = String, Path, description = "A unit id (uow_...)")),
    responses((status = 200, body = Unit), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel_unit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<CancelRequest>,
) -> Result<JsonOut<Unit>, ApiError> {
    team_only(&caller)?;
    let id: UnitId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state
            .store
            .cancel_unit(
                id,
                parse_note(body.reason.as_deref(), "/reason").map_err(ApiError::invalid)?,
                &ctx,
            )
            .await?,
    ))
}

/// Which tasks to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TaskQuery {
    #[param(value_type = waymark_domain::work::TaskStatus, required = false)]
    pub status: Option<String>,
    pub executor: Option<String>,
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    #[param(value_type = waymark_domain::UnitId, required = false)]
    pub unit_id: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<Task>,
    pub next_cursor: Option<String>,
}

/// Tasks, oldest first, filtered.
#[utoipa::path(get, path = "/api/v1/work/tasks", tag = "work", params(TaskQuery, PageParams),
    responses((status = 200, body = TaskPage), (status = 400, body = Problem)), security(("bearer" = [])))]
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<TaskQuery>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Task>>, ApiError> {
    caller.require_staff()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<TaskStatus>()
                .map_err(|m| ApiError::bad_request("invalid_query", m))
        })
        .transpose()?;
    let filter = TaskFilter {
        status,
        executor: q.executor,
        client_id: q.client_id.as_deref().map(path_id).transpose()?,
        unit_id: q.unit_id.as_deref().map(path_id).transpose()?,
    };
    Ok(JsonOut(state.store.list_tasks(filter, p.page()?).await?))
}

/// A task with every attempt at it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    /// Each attempt, oldest first: who ran it, when, for how long, how it ended.
    pub attempt_log: Vec<TaskAttempt>,
}

/// One task, with its attempts.
#[utoipa::path(get, path = "/api/v1/work/tasks/{id}", tag = "work",
    params(("id" = String, Path, description = "A task id (tsk_...)")),
    responses((status = 200, body = TaskDetail), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<TaskDetail>, ApiError> {
    caller.require_staff()?;
    let id: TaskId = path_id(&id)?;
    let task = state.store.get_task(id).await?;
    own_task(&caller, &task)?;
    let attempt_log = state.store.task_attempts(id).await?;
    Ok(JsonOut(TaskDetail { task, attempt_log }))
}

/// An agent's token reaches only its own tasks (404 like a missing one otherwise).
fn own_task(caller: &Caller, task: &Task) -> Result<(), ApiError> {
    if let Some(lease) = &caller.lease
        && lease.task_id != task.id
    {
        return Err(ApiError::NotFound(format!("no task {}", task.id)));
    }
    if caller.role == Role::Agent && caller.agent_id.as_deref() != Some(task.executor.as_str()) {
        return Err(ApiError::NotFound(format!("no task {}", task.id)));
    }
    Ok(())
}

/// The end of an attempt: the lease of the claim, and the output.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease of the claim; a human task, which nobody claims, needs none.
    pub lease_token: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub output: Value,
}

/// A failed attempt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease_token: Option<String>,
    #[schema(max_length = 2000, pattern = "\\S")]
    pub error: String,
    /// `false`: no retry, the task fails at once (default `true`).
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// A lease to extend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease of the claim (may be left out when it is the bearer).
    pub lease_token: Option<String>,
}

/// The lease after a heartbeat.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatAnswer {
    pub task_id: TaskId,
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
}

/// The lease a callback acts with: the body's, or the bearer's when the
/// caller presented a lease token (which the body may repeat, not contradict).
fn lease_of(caller: &Caller, body: Option<String>) -> Result<Option<String>, ApiError> {
    match (&caller.lease, body) {
        (Some(grant), Some(b)) if b != grant.lease_token => {
            Err(ApiError::invalid(FieldError::new(
                "/lease_token",
                "differs from the lease token given as the bearer; send one lease",
            )))
        }
        (Some(grant), _) => Ok(Some(grant.lease_token.clone())),
        (None, b) => Ok(b),
    }
}

async fn finish_one(
    state: &AppState,
    caller: &Caller,
    trace: &TraceId,
    id: &str,
    lease_token: Option<String>,
    outcome: Outcome,
) -> Result<JsonOut<Finished>, ApiError> {
    caller.require_staff()?;
    let id: TaskId = path_id(id)?;
    let task = state.store.get_task(id).await?;
    own_task(caller, &task)?;
    let lease_token = lease_of(caller, lease_token)?;
    if let Some(l) = &lease_token
        && l.len() > 100
    {
        return Err(ApiError::invalid(FieldError::new(
            "/lease_token",
            "is not a lease token",
        )));
    }
    let size = serde_json::to_string(match &outcome {
        Outcome::Completed { output } => output,
        Outcome::Failed { .. } => &Value::Null,
    })
    .map_or(0, |s| s.len());
    if size > work::MAX_PAYLOAD {
        return Err(ApiError::invalid(FieldError::new(
            "/output",
            format!(
                "is larger than {} bytes; store big results as artifacts",
                work::MAX_PAYLOAD
            ),
        )));
    }
    // A caller that can still fix its output is told what the contract
    // lacks, and nothing changes; the engine's own executors fail instead.
    if let Outcome::Completed { output } = &outcome {
        let missing = work::missing_fields(&task.contract, output);
        if !missing.is_empty() {
            return Err(ApiError::Invalid {
                detail: format!(
                    "the output breaks task {}'s handoff contract (required: {}); complete it with those fields, or fail the task",
                    task.key,
                    task.contract.join(", ")
                ),
                errors: missing
                    .iter()
                    .map(|f| {
                        FieldError::new(
                            format!("/output/{}", f.replace('~', "~0").replace('/', "~1")),
                            "is required by the handoff contract",
                        )
                    })
                    .collect(),
            });
        }
    }
    let ctx = write_context(caller, trace)?;
    let mut results = state
        .store
        .finish(
            vec![Finish {
                task_id: id,
                lease_token,
                outcome,
            }],
            &ctx,
        )
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| ApiError::Internal("no result".into()))??;
    waymark_engine::metrics::finished(result.status);
    if let Some(observed) = &result.observed {
        waymark_engine::journeys::watch_reported(&*state.store, observed, &ctx).await;
    }
    state.notify_change();
    Ok(JsonOut(result))
}

/// Complete a task: with the lease of its claim, or (a human task) as a person.
#[utoipa::path(post, path = "/api/v1/work/tasks/{id}/complete", tag = "work", request_body = CompleteRequest,
    params(("id" = String, Path, description = "A task id (tsk_...)")),
    responses((status = 200, body = Finished), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn complete_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<CompleteRequest>,
) -> Result<JsonOut<Finished>, ApiError> {
    finish_one(
        &state,
        &caller,
        &trace,
        &id,
        body.lease_token,
        Outcome::Completed {
            output: body.output,
        },
    )
    .await
}

/// Report a failed attempt: retried after its backoff while attempts remain.
#[utoipa::path(post, path = "/api/v1/work/tasks/{id}/fail", tag = "work", request_body = FailRequest,
    params(("id" = String, Path, description = "A task id (tsk_...)")),
    responses((status = 200, body = Finished), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn fail_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<FailRequest>,
) -> Result<JsonOut<Finished>, ApiError> {
    let error = body.error.trim();
    if error.is_empty() || error.chars().count() > 2000 {
        return Err(ApiError::invalid(FieldError::new(
            "/error",
            "say what went wrong in 1-2000 characters",
        )));
    }
    finish_one(
        &state,
        &caller,
        &trace,
        &id,
        body.lease_token,
        Outcome::Failed {
            error: error.to_owned(),
            retryable: body.retryable,
        },
    )
    .await
}

/// Extend the lease of a claimed task.
#[utoipa::path(post, path = "/api/v1/work/tasks/{id}/heartbeat", tag = "work", request_body = HeartbeatRequest,
    params(("id" = String, Path, description = "A task id (tsk_...)")),
    responses((status = 200, body = HeartbeatAnswer), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn heartbeat_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<HeartbeatRequest>,
) -> Result<JsonOut<HeartbeatAnswer>, ApiError> {
    caller.require_staff()?;
    let id: TaskId = path_id(&id)?;
    let task = state.store.get_task(id).await?;
    own_task(&caller, &task)?;
    let lease = lease_of(&caller, body.lease_token)?.ok_or_else(|| {
        ApiError::invalid(FieldError::new(
            "/lease_token",
            "give the lease_token of the claim",
        ))
    })?;
    // A webhook receiver's lease runs until the task's timeout; an agent's is
    // extended by AGENT_LEASE.
    let extend = if caller.lease.is_some() {
        Duration::from_secs(task.timeout_s.max(1) as u64)
    } else {
        AGENT_LEASE
    };
    let until = state.store.heartbeat(id, &lease, extend).await?;
    if let Some(agent) = &caller.agent_id {
        state.store.touch_agent(agent).await?;
    }
    Ok(JsonOut(HeartbeatAnswer {
        task_id: id,
        lease_expires_at: until,
    }))
}

/// Cancel a task and everything downstream of it.
#[utoipa::path(post, path = "/api/v1/work/tasks/{id}/cancel", tag = "work", request_body = CancelRequest,
    params(("id" = String, Path, description = "A task id (tsk_...)")),
    responses((status = 200, body = Task), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<CancelRequest>,
) -> Result<JsonOut<Task>, ApiError> {
    team_only(&caller)?;
    let id: TaskId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state
            .store
            .cancel_task(
                id,
                parse_note(body.reason.as_deref(), "/reason").map_err(ApiError::invalid)?,
                &ctx,
            )
            .await?,
    ))
}

/// Which incidents to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct IncidentQuery {
    /// `open` (default) or `all`.
    #[param(pattern = "^(open|all)$")]
    pub status: Option<String>,
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
}

/// A page of incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    pub items: Vec<Incident>,
    pub next_cursor: Option<String>,
}

/// Incidents: tasks whose attempts are exhausted, newest first.
#[utoipa::path(get, path = "/api/v1/work/incidents", tag = "work", params(IncidentQuery, PageParams),
    responses((status = 200, body = IncidentPage)), security(("bearer" = [])))]
pub async fn list_incidents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<IncidentQuery>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Incident>>, ApiError> {
    team_only(&caller)?;
    let open = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "status must be open or all",
            ));
        }
    };
    let client = q
        .client_id
        .as_deref()
        .map(path_id::<ClientId>)
        .transpose()?;
    Ok(JsonOut(
        state.store.list_incidents(open, client, p.page()?).await?,
    ))
}

/// How a person resolves an incident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `retry` (fresh attempts), `skip` (dependents go ahead) or `cancel` (the unit).
    pub action: Resolution,
    pub note: Option<String>,
}

/// Resolve an incident: retry the task, skip it, or cancel its unit.
#[utoipa::path(post, path = "/api/v1/work/incidents/{id}/resolve", tag = "work", request_body = ResolveRequest,
    params(("id" = String, Path, description = "An incident id (inc_...)")),
    responses((status = 200, body = Incident), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn resolve_incident(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<ResolveRequest>,
) -> Result<JsonOut<Incident>, ApiError> {
    team_only(&caller)?;
    let id: IncidentId = path_id(&id)?;
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state
            .store
            .resolve_incident(
                id,
                body.action,
                parse_note(body.note.as_deref(), "/note").map_err(ApiError::invalid)?,
                &ctx,
            )
            .await?,
    ))
}

/// An agent to register.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// The id its tasks name as their executor: 1-64 lowercase letters,
    /// digits, `-`, `_` or `.`, starting with a letter or digit, not a
    /// built-in executor's name.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub id: String,
    /// Left out when registering again: kept as they are. At most 100, each
    /// 1-100 characters.
    #[schema(schema_with = capabilities_schema)]
    pub capabilities: Option<Vec<String>>,
    /// Left out when registering again: kept as it is.
    pub description: Option<String>,
}

fn capabilities_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::openapi::schema_json(serde_json::json!({
        "description": "Left out when registering again: kept as they are. At most 100, each\n1-100 characters.",
        "type": ["array", "null"],
        "maxItems": 100,
        "items": {"type": "string", "minLength": 1, "maxLength": 100},
    }))
}

/// An agent with whether it is online.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    pub agent: Agent,
    /// `online` when it made contact in the last 90 seconds, else `offline`.
    pub status: &'static str,
}

impl From<Agent> for AgentView {
    fn from(agent: Agent) -> Self {
        let online = agent
            .last_seen_at
            .is_some_and(|t| OffsetDateTime::now_utc() - t < ONLINE_WITHIN);
        AgentView {
            agent,
            status: if online { "online" } else { "offline" },
        }
    }
}

/// The registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<AgentView>,
}

fn check_agent_access(caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require_staff()?;
    if caller.role == Role::Agent && caller.agent_id.as_deref() != Some(id) {
        return Err(ApiError::Forbidden(format!(
            "this token belongs to agent {}; it acts for that agent only",
            caller.agent_id.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// Register an agent (or update its description and capabilities).
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = RegisterAgent,
    responses((status = 201, body = AgentView), (status = 200, body = AgentView), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn register_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<RegisterAgent>,
) -> Result<(StatusCode, JsonOut<AgentView>), ApiError> {
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/agents", &body)?;
    let id = work::check_agent_id(body.id.trim())
        .map_err(|m| ApiError::invalid(FieldError::new("/id", m)))?;
    check_agent_access(&caller, &id)?;
    let existing = if body.capabilities.is_none() || body.description.is_none() {
        match state.store.get_agent(&id).await {
            Ok(a) => Some(a),
            Err(waymark_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let capabilities = body
        .capabilities
        .or_else(|| existing.as_ref().map(|a| a.capabilities.clone()))
        .unwrap_or_default();
    let description = body
        .description
        .or_else(|| existing.as_ref().map(|a| a.description.clone()))
        .unwrap_or_default();
    if capabilities.len() > 100
        || capabilities
            .iter()
            .any(|c| c.trim().is_empty() || c.chars().count() > 100)
    {
        return Err(ApiError::invalid(FieldError::new(
            "/capabilities",
            "at most 100 capabilities of 1-100 characters",
        )));
    }
    if description.chars().count() > 2000 {
        return Err(ApiError::invalid(FieldError::new(
            "/description",
            "must be at most 2000 characters",
        )));
    }
    let (agent, created) = state
        .store
        .register_agent(
            NewAgent {
                id,
                description: description.trim().to_owned(),
                capabilities: capabilities.iter().map(|c| c.trim().to_owned()).collect(),
            },
            &ctx,
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, JsonOut(agent.into())))
}

/// Every registered agent, online or offline.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = AgentList)), security(("bearer" = [])))]
pub async fn list_agents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonOut<AgentList>, ApiError> {
    caller.require_staff()?;
    let items = state
        .store
        .list_agents()
        .await?
        .into_iter()
        .map(AgentView::from)
        .collect();
    Ok(JsonOut(AgentList { items }))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}", tag = "agents",
    params(("agent_id" = String, Path, description = "An agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent_id): Path<String>,
) -> Result<JsonOut<AgentView>, ApiError> {
    caller.require_staff()?;
    Ok(JsonOut(state.store.get_agent(&agent_id).await?.into()))
}

/// What to claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// At most this many tasks, 1-100 (default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub max: Option<usize>,
    /// Wait up to this many seconds (0-60, default 0) for a task to become ready.
    #[schema(minimum = 0, maximum = 60)]
    pub wait_s: Option<u64>,
}

/// Claim ready tasks of an agent: answers as soon as one is ready, or an empty
/// list after `wait_s`. Each comes with a lease to heartbeat, complete or fail it.
#[utoipa::path(post, path = "/api/v1/agents/{agent_id}/claim", tag = "agents", request_body = ClaimRequest,
    params(("agent_id" = String, Path, description = "An agent id")),
    responses((status = 200, body = Vec<Leased>), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn claim(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(agent_id): Path<String>,
    Json(body): Json<ClaimRequest>,
) -> Result<JsonOut<Vec<Leased>>, ApiError> {
    check_agent_access(&caller, &agent_id)?;
    let max = body.max.unwrap_or(1);
    if !(1..=100).contains(&max) {
        return Err(ApiError::invalid(FieldError::new(
            "/max",
            "must be 1 to 100",
        )));
    }
    let wait = body.wait_s.unwrap_or(0);
    if wait > MAX_WAIT_S {
        return Err(ApiError::invalid(FieldError::new(
            "/wait_s",
            format!("must be 0 to {MAX_WAIT_S} seconds"),
        )));
    }
    state.store.get_agent(&agent_id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut signal = state.store.work_signal();
    loop {
        signal.borrow_and_update();
        state.store.touch_agent(&agent_id).await?;
        let claimed = state
            .store
            .claim(Claim {
                lane: agent_id.clone(),
                max,
                lease: AGENT_LEASE,
                worker: agent_id.clone(),
            })
            .await?;
        waymark_engine::metrics::claimed(&agent_id, claimed.len());
        if !claimed.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(JsonOut(claimed));
        }
        // Wake on new ready work (any process on PostgreSQL), a retry coming
        // due, or the deadline.
        let retry = match state.store.next_run_in(&agent_id).await? {
            Some(wait) => tokio::time::Instant::now() + wait,
            None => deadline,
        };
        tokio::select! {
            _ = signal.changed() => {}
            _ = tokio::time::sleep_until(retry.min(deadline)) => {}
        }
    }
}

/// The secret `http.webhook` tasks are signed with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskWebhookSecret {
    /// `whsec_...`: verify the `webhook-signature` header of task POSTs with
    /// it (Standard Webhooks).
    pub secret: String,
}

/// The secret every `http.webhook` task POST is signed with (admins only).
#[utoipa::path(get, path = "/api/v1/work/webhook-secret", tag = "work",
    responses((status = 200, body = TaskWebhookSecret), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn webhook_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonOut<TaskWebhookSecret>, ApiError> {
    caller.require_admin()?;
    let secret = waymark_engine::hook::secret(&*state.store).await?;
    Ok(JsonOut(TaskWebhookSecret {
        secret: secret.serialized(),
    }))
}
