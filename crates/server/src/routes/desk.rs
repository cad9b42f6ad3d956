//! A person's desk: to-dos (`/api/v1/tasks`), preferences
//! (`/api/v1/me/preferences`) and a client's stakeholders
//! (`/api/v1/clients/{id}/stakeholders`).
//!
//! Who may do what:
//!
//! - **To-dos.** The team (admins, operators, agents) creates, changes and
//!   deletes any to-do and lists anyone's. A client user reaches only the
//!   to-dos of their client that are assigned to them: they list and read
//!   them, and complete, skip or reopen them; their other fields are the
//!   team's (403). Any other to-do answers 404, as a missing one does.
//! - **Preferences** belong to the caller: a user's to their user id; a token
//!   without a user (the bootstrap admin token, an agent's) to the token's
//!   id. A review link or a task's lease has none (403).
//! - **Stakeholders.** The team reads and keeps every client's; a client user
//!   reads their own client's and changes nothing (403). Another client's
//!   answer 404 exactly as a client that does not exist.
//!
//! `/api/v1/tasks` is a person's to-dos; the work engine's tasks are
//! `/api/v1/work/tasks`. The list of to-dos carries the engine's open human
//! tasks beside them (see [`list_todos`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::artifact::{parse_note, parse_title};
use waymark_domain::client::parse_name;
use waymark_domain::preferences::{self, Preferences};
use waymark_domain::work::{HUMAN_LANE, TaskStatus};
use waymark_domain::{
    ClientId, FieldError, IdError, JourneyId, StakeholderId, TaskId, TodoId, UnitId, UserId,
};
use waymark_store::{
    Assignee, Influence, NewStakeholder, NewTodo, Page, PageRequest, Priority, Sentiment,
    Stakeholder, StakeholderPatch, StoreError, Task, TaskFilter, Todo, TodoFilter, TodoPatch,
    TodoScope, TodoStatus,
};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::{Caller, not_found};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, from_value, path_id, query_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_todos, create_todo))
        .routes(routes!(get_todo, update_todo, delete_todo))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(list_stakeholders, create_stakeholder))
        .routes(routes!(
            get_stakeholder,
            update_stakeholder,
            delete_stakeholder
        ))
}

/// Most engine tasks the first page of to-dos carries.
pub const ENGINE_TASKS_LIMIT: usize = 50;

/// Whose desk this is: the user, or a token without one (see the module docs).
fn desk_owner(caller: &Caller) -> Result<String, ApiError> {
    let refused = || {
        ApiError::Forbidden(
            "a review link or a task's lease has no desk; sign in or use a personal token".into(),
        )
    };
    if caller.link.is_some() || caller.lease.is_some() {
        return Err(refused());
    }
    if let Some(u) = caller.user_id {
        return Ok(u.to_string());
    }
    caller.token_id.map(|t| t.to_string()).ok_or_else(refused)
}

/// The caller as an assignee: their user, or their token when it has none.
fn me(caller: &Caller) -> Result<Assignee, ApiError> {
    let owner = desk_owner(caller)?;
    Ok(match caller.user_id {
        Some(u) => Assignee::User(u),
        None => Assignee::Token(owner),
    })
}

/// Which to-dos the caller reaches (see the module docs).
fn todo_scope(caller: &Caller) -> Result<TodoScope, ApiError> {
    if caller.is_staff() {
        return Ok(TodoScope::Everyone);
    }
    let assigned_to = desk_owner(caller)?;
    match caller.client_id {
        Some(client_id) => Ok(TodoScope::Assignee {
            assigned_to,
            client_id,
        }),
        None => Err(ApiError::Forbidden(
            "this token reaches no client's to-dos".into(),
        )),
    }
}

/// Present-and-null as `Some(None)`, absent (via `default`) as `None`.
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_date(value: &str, pointer: &str) -> Result<time::Date, FieldError> {
    waymark_domain::dates::parse(value)
        .ok_or_else(|| FieldError::new(pointer, "must be a date as YYYY-MM-DD"))
}

fn body_id<T: std::str::FromStr<Err = IdError>>(
    value: &str,
    pointer: &str,
) -> Result<T, FieldError> {
    value
        .trim()
        .parse()
        .map_err(|e: IdError| FieldError::new(pointer, e.to_string()))
}

/// `me` or a user id, as an assignee.
fn parse_assignee(value: &str, caller: &Caller) -> Result<Assignee, ApiError> {
    if value == "me" {
        return me(caller);
    }
    body_id::<UserId>(value, "/assigned_to")
        .map(Assignee::User)
        .map_err(ApiError::invalid)
}

/// A stage id: 1-64 lowercase letters, digits and `_`.
fn parse_step(value: &str) -> Result<String, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            "/step",
            "must be a stage id of the journey: 1-64 lowercase letters, digits and _",
        ))
    }
}

// --- to-dos ------------------------------------------------------------------

/// What an entry of the desk is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeskKind {
    /// A person's to-do: read and written here.
    Todo,
    /// A human task of the work engine: read-only here, finished at its `url`.
    EngineTask,
}

/// A to-do as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TodoEntry {
    /// Always `todo`.
    pub kind: DeskKind,
    #[serde(flatten)]
    pub todo: Todo,
}

impl From<Todo> for TodoEntry {
    fn from(todo: Todo) -> Self {
        Self {
            kind: DeskKind::Todo,
            todo,
        }
    }
}

/// An open human task of the work engine, shown among the to-dos.
#[derive(Debug, Serialize, ToSchema)]
pub struct EngineTaskEntry {
    /// Always `engine_task`.
    pub kind: DeskKind,
    pub id: TaskId,
    /// The task's name.
    pub title: String,
    /// The task's key in its unit.
    pub key: String,
    pub status: TaskStatus,
    pub client_id: ClientId,
    pub unit_id: UnitId,
    /// Where to read and complete it: `/api/v1/work/tasks/{id}`.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Task> for EngineTaskEntry {
    fn from(t: Task) -> Self {
        Self {
            kind: DeskKind::EngineTask,
            url: format!("/api/v1/work/tasks/{}", t.id),
            id: t.id,
            title: t.name,
            key: t.key,
            status: t.status,
            client_id: t.client_id,
            unit_id: t.unit_id,
            created_at: t.created_at,
        }
    }
}

/// A page of to-dos, with the engine's open human tasks on the first page.
#[derive(Debug, Serialize, ToSchema)]
pub struct TodoPage {
    pub items: Vec<TodoEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// The engine's open (`ready`) human tasks that match the filters, oldest
    /// first, at most 50: on the first page only, for the team only (a
    /// client user's desk has none), and only when the list is of the
    /// caller's or everyone's open to-dos.
    pub engine_tasks: Vec<EngineTaskEntry>,
}

/// Which to-dos to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TodoQuery {
    /// `me` (default): the caller's; a user id: that person's; `all`:
    /// everyone's (the team only). A client user lists their own.
    #[param(pattern = "^(me|all|usr_[0-9a-f]{32})$")]
    pub assigned_to: Option<String>,
    /// `open`, `completed` or `skipped`.
    #[param(pattern = "^(open|completed|skipped)$")]
    pub status: Option<String>,
    #[param(value_type = waymark_domain::JourneyId, required = false)]
    pub journey_id: Option<String>,
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    /// At most this many items, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: the last item's place in the
    /// order (a number), then `_` and its id's hex digits.
    #[param(pattern = "^[0-9]{1,18}(_[0-9a-f]{32})?$")]
    pub cursor: Option<String>,
}

/// A person's to-dos, in one order: open ones first, then by due date
/// (none last), then by priority (urgent, high, medium, low), then by
/// creation. Filters combine; `assigned_to` is the caller by default.
///
/// The engine's human tasks appear beside them, not among them: the first
/// page (no `cursor`) carries the open ones in `engine_tasks` (for the team,
/// when listing their own or everyone's open to-dos; filtered by `client_id`
/// and `journey_id` too), each with `kind: "engine_task"` and the `url` where
/// it is read and completed. Two lists with orders of their own would need a
/// cursor over both to merge; the engine's pool of human tasks is short and
/// belongs to nobody in particular, so it is shown once, on top.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "desk", params(TodoQuery),
    responses((status = 200, body = TodoPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_todos(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<TodoQuery>,
) -> Result<JsonOut<TodoPage>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let owner = desk_owner(&caller)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            TodoStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "status: must be one of open, completed, skipped",
                )
            })
        })
        .transpose()?;
    let journey_id: Option<JourneyId> = q
        .journey_id
        .as_deref()
        .map(|j| query_id("journey_id", j))
        .transpose()?;
    let client_id: Option<ClientId> = q
        .client_id
        .as_deref()
        .map(|c| query_id("client_id", c))
        .transpose()?;
    let assigned_to = match q.assigned_to.as_deref() {
        None | Some("me") => Some(owner.clone()),
        Some("all") => None,
        Some(u) => Some(query_id::<UserId>("assigned_to", u)?.to_string()),
    };
    let empty = || {
        JsonOut(TodoPage {
            items: vec![],
            next_cursor: None,
            engine_tasks: vec![],
        })
    };
    let filter = match todo_scope(&caller)? {
        TodoScope::Everyone => TodoFilter {
            assigned_to: assigned_to.clone(),
            status,
            journey_id,
            client_id,
        },
        TodoScope::Assignee {
            assigned_to: mine,
            client_id: theirs,
        } => {
            if assigned_to.as_deref() != Some(mine.as_str()) {
                return Err(ApiError::Forbidden(
                    "a client user lists their own to-dos; leave assigned_to out".into(),
                ));
            }
            if client_id.is_some_and(|c| c != theirs) {
                return Ok(empty());
            }
            TodoFilter {
                assigned_to: Some(mine),
                status,
                journey_id,
                client_id: Some(theirs),
            }
        }
    };
    let todos = state.store.list_todos(filter, page.clone()).await?;
    let with_engine = caller.is_staff()
        && page.cursor().is_none()
        && matches!(status, None | Some(TodoStatus::Open))
        && (assigned_to.is_none() || assigned_to.as_deref() == Some(owner.as_str()));
    let engine_tasks = if with_engine {
        engine_tasks(&state, client_id, journey_id).await?
    } else {
        vec![]
    };
    Ok(JsonOut(TodoPage {
        items: todos.items.into_iter().map(TodoEntry::from).collect(),
        next_cursor: todos.next_cursor,
        engine_tasks,
    }))
}

/// The engine's ready human tasks, of a client or a journey when asked.
async fn engine_tasks(
    state: &AppState,
    client_id: Option<ClientId>,
    journey_id: Option<JourneyId>,
) -> Result<Vec<EngineTaskEntry>, ApiError> {
    let filter = |unit_id| TaskFilter {
        status: Some(TaskStatus::Ready),
        executor: Some(HUMAN_LANE.to_owned()),
        client_id,
        unit_id,
    };
    let first = || PageRequest {
        limit: ENGINE_TASKS_LIMIT as u32,
        cursor: None,
    };
    let mut tasks = Vec::new();
    match journey_id {
        None => tasks = state.store.list_tasks(filter(None), first()).await?.items,
        Some(j) => {
            let units = match state.store.journey_units(j).await {
                Ok(units) => units,
                Err(StoreError::NotFound { .. }) => vec![],
                Err(e) => return Err(e.into()),
            };
            for u in units {
                if tasks.len() >= ENGINE_TASKS_LIMIT {
                    break;
                }
                let found = state
                    .store
                    .list_tasks(filter(Some(u.unit_id)), first())
                    .await?;
                tasks.extend(found.items);
            }
            tasks.sort_by_key(|t| t.id);
            tasks.truncate(ENGINE_TASKS_LIMIT);
        }
    }
    Ok(tasks.into_iter().map(EngineTaskEntry::from).collect())
}

/// A to-do to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTodo {
    /// 1 to 200 characters.
    #[schema(value_type = crate::openapi::Name, inline)]
    pub title: String,
    /// `me` (default) or a user id (`usr_…`) of someone who exists. A to-do
    /// of a client may go to that client's users too.
    #[schema(pattern = "^(me|usr_[0-9a-f]{32})$")]
    pub assigned_to: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub due_date: Option<String>,
    /// `medium` by default.
    pub priority: Option<Priority>,
    /// The journey it belongs to: the to-do's client is the journey's.
    #[schema(value_type = Option<waymark_domain::JourneyId>)]
    pub journey_id: Option<String>,
    /// A stage id of the journey's template; only with `journey_id`.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub step: Option<String>,
    /// The client it is about, when it belongs to no journey (with one, it
    /// must be the journey's).
    #[schema(value_type = Option<waymark_domain::ClientId>)]
    pub client_id: Option<String>,
}

impl CreateTodo {
    fn validate(self, caller: &Caller) -> Result<NewTodo, ApiError> {
        let title = parse_title(&self.title, "/title").map_err(ApiError::invalid)?;
        let assigned_to = match self.assigned_to.as_deref() {
            None => me(caller)?,
            Some(a) => parse_assignee(a, caller)?,
        };
        let due_date = self
            .due_date
            .as_deref()
            .map(|d| parse_date(d, "/due_date"))
            .transpose()
            .map_err(ApiError::invalid)?;
        let journey_id = self
            .journey_id
            .as_deref()
            .map(|j| body_id::<JourneyId>(j, "/journey_id"))
            .transpose()
            .map_err(ApiError::invalid)?;
        let step = self
            .step
            .as_deref()
            .map(parse_step)
            .transpose()
            .map_err(ApiError::invalid)?;
        if step.is_some() && journey_id.is_none() {
            return Err(ApiError::invalid(FieldError::new(
                "/step",
                "a step belongs to a journey: send its journey_id too",
            )));
        }
        let client_id = self
            .client_id
            .as_deref()
            .map(|c| body_id::<ClientId>(c, "/client_id"))
            .transpose()
            .map_err(ApiError::invalid)?;
        Ok(NewTodo {
            title,
            assigned_to: Some(assigned_to),
            due_date,
            priority: self.priority.unwrap_or_default(),
            journey_id,
            step,
            client_id,
        })
    }
}

/// Create a to-do (the team only). It is open; `assigned_to` is the caller
/// unless another person is named.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "desk", request_body = CreateTodo,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = TodoEntry), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_todo(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, JsonOut<TodoEntry>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/tasks", &body)?;
    let input: CreateTodo = from_value(body)?;
    let new = input.validate(&caller)?;
    let created = state.store.create_todo(new, &ctx).await?;
    Ok((StatusCode::CREATED, JsonOut(created.record.into())))
}

/// One to-do.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "desk",
    params(("id" = String, Path, description = "A to-do id (tdo_...)")),
    responses((status = 200, body = TodoEntry), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_todo(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<TodoEntry>, ApiError> {
    let id: TodoId = path_id(&id)?;
    let scope = todo_scope(&caller)?;
    let todo = state.store.get_todo(id).await?;
    if !scope.reaches(&todo) {
        return Err(not_found("to-do", id));
    }
    Ok(JsonOut(todo.into()))
}

/// What a to-do's `action` does.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TodoAction {
    /// Mark it done.
    Complete,
    /// Pass it over: done with, without being done.
    Skip,
}

/// Changes to a to-do: either fields (one left out stays as it is; `null`
/// clears `due_date`), or an `action` alone.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTodo {
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub title: Option<String>,
    /// `me` or a user id (`usr_…`).
    #[schema(pattern = "^(me|usr_[0-9a-f]{32})$")]
    pub assigned_to: Option<String>,
    /// `YYYY-MM-DD`; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Date)]
    pub due_date: Option<Option<String>>,
    pub priority: Option<Priority>,
    /// `true` completes it (refused when already completed or skipped),
    /// `false` reopens it.
    pub completed: Option<bool>,
    /// `complete` or `skip`, refused (409) when it is completed or skipped
    /// already; not with fields.
    pub action: Option<TodoAction>,
}

impl UpdateTodo {
    fn validate(self, caller: &Caller, client_user: bool) -> Result<TodoPatch, ApiError> {
        let fields = self.title.is_some()
            || self.assigned_to.is_some()
            || self.due_date.is_some()
            || self.priority.is_some();
        if self.action.is_some() && (fields || self.completed.is_some()) {
            return Err(ApiError::invalid(FieldError::new(
                "/action",
                "send either an action or fields to change, not both",
            )));
        }
        if client_user && fields {
            return Err(ApiError::Forbidden(
                "a client user may complete, skip or reopen their to-dos; the team changes the rest"
                    .into(),
            ));
        }
        let status = match (self.action, self.completed) {
            (Some(TodoAction::Complete), _) | (None, Some(true)) => Some(TodoStatus::Completed),
            (Some(TodoAction::Skip), _) => Some(TodoStatus::Skipped),
            (None, Some(false)) => Some(TodoStatus::Open),
            (None, None) => None,
        };
        Ok(TodoPatch {
            title: self
                .title
                .as_deref()
                .map(|t| parse_title(t, "/title"))
                .transpose()
                .map_err(ApiError::invalid)?,
            assigned_to: self
                .assigned_to
                .as_deref()
                .map(|a| parse_assignee(a, caller))
                .transpose()?,
            due_date: match self.due_date {
                None => None,
                Some(None) => Some(None),
                Some(Some(d)) => Some(Some(
                    parse_date(&d, "/due_date").map_err(ApiError::invalid)?,
                )),
            },
            priority: self.priority,
            status,
        })
    }
}

/// Change a to-do's fields, or complete or skip it with `action`. Completing
/// or skipping one that is completed or skipped already is refused (409,
/// `todo_closed`); `{"completed": false}` reopens it.
#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "desk", request_body = UpdateTodo,
    params(("id" = String, Path, description = "A to-do id (tdo_...)")),
    responses((status = 200, body = TodoEntry), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_todo(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<JsonOut<TodoEntry>, ApiError> {
    let id: TodoId = path_id(&id)?;
    let scope = todo_scope(&caller)?;
    let input: UpdateTodo = from_value(body)?;
    let patch = input.validate(&caller, scope != TodoScope::Everyone)?;
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state
            .store
            .update_todo(id, patch, &scope, &ctx)
            .await?
            .into(),
    ))
}

/// Delete a to-do (the team only).
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "desk",
    params(("id" = String, Path, description = "A to-do id (tdo_...)")),
    responses((status = 204, description = "Deleted"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_todo(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: TodoId = path_id(&id)?;
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace)?;
    state.store.delete_todo(id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- preferences ---------------------------------------------------------------

/// A partial update of the preferences: only the members named change (in
/// `default_queue_filter` and `notifications` too); `null` puts a member back
/// to its default. Unknown keys are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesUpdate {
    #[schema(minimum = 5, maximum = 200)]
    pub queue_page_size: Option<u32>,
    pub default_queue_filter: Option<QueueFilterUpdate>,
    pub notifications: Option<NotificationsUpdate>,
    /// An IANA time zone name such as `Europe/Paris`.
    #[schema(
        max_length = 64,
        pattern = "^[A-Z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9_+-]{1,30}){0,2}$"
    )]
    pub timezone: Option<String>,
    pub theme: Option<preferences::Theme>,
    pub chat_streaming: Option<bool>,
}

/// Changes to the default queue filter; `null` removes a filter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueFilterUpdate {
    /// A journey template's name.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub template: Option<String>,
    /// A stage id.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub stage: Option<String>,
}

/// Changes to the notifications.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsUpdate {
    pub email: Option<bool>,
    pub escalations: Option<bool>,
    pub daily_digest: Option<bool>,
}

/// The caller's preferences: the defaults until they change them (stored on
/// the first read). A user's are their own; a token without a user has its
/// own.
#[utoipa::path(get, path = "/api/v1/me/preferences", tag = "desk",
    responses((status = 200, body = Preferences), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn get_preferences(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonOut<Preferences>, ApiError> {
    let owner = desk_owner(&caller)?;
    Ok(JsonOut(state.store.preferences(&owner).await?))
}

/// Change some of the caller's preferences: the members sent replace the
/// stored ones (`null`: back to the default), the others stay. Every problem
/// (an unknown key, a wrong type, a value out of range) is named at its
/// pointer, and nothing changes.
#[utoipa::path(put, path = "/api/v1/me/preferences", tag = "desk", request_body = PreferencesUpdate,
    responses((status = 200, body = Preferences), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_preferences(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Json(body): Json<Value>,
) -> Result<JsonOut<Preferences>, ApiError> {
    let owner = desk_owner(&caller)?;
    // Whether an update is valid does not depend on what is stored.
    if let Err(errors) = preferences::apply(&Preferences::default(), &body) {
        return Err(ApiError::Invalid {
            detail: match errors.as_slice() {
                [one] => format!("invalid preference {}: {}", one.pointer, one.message),
                many => format!("the preferences have {} problems; see errors", many.len()),
            },
            errors,
        });
    }
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state.store.update_preferences(&owner, &body, &ctx).await?,
    ))
}

// --- stakeholders ----------------------------------------------------------------

/// Longest email accepted.
const MAX_EMAIL_LEN: usize = 254;

/// An email, trimmed and lowercased: one `@` between non-empty parts, no
/// spaces or control characters, at most 254 characters.
fn parse_email(value: &str) -> Result<String, FieldError> {
    let email = value.trim().to_lowercase();
    let bad = || FieldError::new("/email", "must be an email address such as ana@example.com");
    if email.chars().count() > MAX_EMAIL_LEN {
        return Err(FieldError::new(
            "/email",
            format!("must be at most {MAX_EMAIL_LEN} characters"),
        ));
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(email)
}

fn parse_notes(value: Option<&str>) -> Result<String, FieldError> {
    Ok(parse_note(value, "/notes")?.unwrap_or_default())
}

/// A stakeholder to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStakeholder {
    #[schema(value_type = crate::openapi::Name, inline)]
    pub name: String,
    #[schema(
        max_length = 254,
        pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub email: Option<String>,
    /// Their role at the client, e.g. `VP Operations`.
    #[schema(value_type = crate::openapi::Name, inline)]
    pub role: String,
    /// `medium` by default.
    pub influence: Option<Influence>,
    /// `neutral` by default.
    pub sentiment: Option<Sentiment>,
    #[schema(max_length = 2000)]
    pub notes: Option<String>,
}

impl CreateStakeholder {
    fn validate(self, client_id: ClientId) -> Result<NewStakeholder, FieldError> {
        Ok(NewStakeholder {
            client_id,
            name: parse_name(&self.name, "/name")?,
            email: self.email.as_deref().map(parse_email).transpose()?,
            role: parse_name(&self.role, "/role")?,
            influence: self.influence.unwrap_or_default(),
            sentiment: self.sentiment.unwrap_or_default(),
            notes: parse_notes(self.notes.as_deref())?,
        })
    }
}

/// Changes to a stakeholder: a field left out stays as it is; `null` clears
/// `email` and `notes`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStakeholder {
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 254, pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$")]
    pub email: Option<Option<String>>,
    #[schema(value_type = Option<crate::openapi::Name>, inline)]
    pub role: Option<String>,
    pub influence: Option<Influence>,
    pub sentiment: Option<Sentiment>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub notes: Option<Option<String>>,
}

impl UpdateStakeholder {
    fn validate(self) -> Result<StakeholderPatch, FieldError> {
        Ok(StakeholderPatch {
            name: self
                .name
                .as_deref()
                .map(|n| parse_name(n, "/name"))
                .transpose()?,
            email: match self.email {
                None => None,
                Some(None) => Some(None),
                Some(Some(e)) => Some(Some(parse_email(&e)?)),
            },
            role: self
                .role
                .as_deref()
                .map(|r| parse_name(r, "/role"))
                .transpose()?,
            influence: self.influence,
            sentiment: self.sentiment,
            notes: match self.notes {
                None => None,
                Some(n) => Some(parse_notes(n.as_deref())?),
            },
        })
    }
}

/// `limit` and `cursor` of the stakeholder list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StakeholderPageParams {
    /// At most this many items, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page (the last stakeholder's id).
    #[param(value_type = waymark_domain::StakeholderId, required = false)]
    pub cursor: Option<String>,
}

/// The client in the path, if the caller may see it and it exists (404 alike otherwise).
async fn visible_client(state: &AppState, caller: &Caller, id: &str) -> Result<ClientId, ApiError> {
    let id: ClientId = path_id(id)?;
    caller.check_client(id)?;
    state.store.get_client(id).await?;
    Ok(id)
}

/// A client's stakeholders, oldest first. A client user reads their own client's.
#[utoipa::path(get, path = "/api/v1/clients/{id}/stakeholders", tag = "clients",
    params(("id" = String, Path, description = "A client id (cli_...)"), StakeholderPageParams),
    responses((status = 200, body = Page<Stakeholder>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_stakeholders(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(p): Query<StakeholderPageParams>,
) -> Result<JsonOut<Page<Stakeholder>>, ApiError> {
    let client = visible_client(&state, &caller, &id).await?;
    let page = PageParams {
        limit: p.limit,
        cursor: p.cursor,
    }
    .page()?;
    Ok(JsonOut(state.store.list_stakeholders(client, page).await?))
}

/// Add a stakeholder to a client (the team only).
#[utoipa::path(post, path = "/api/v1/clients/{id}/stakeholders", tag = "clients", request_body = CreateStakeholder,
    params(("id" = String, Path, description = "A client id (cli_...)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = Stakeholder), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_stakeholder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, JsonOut<Stakeholder>), ApiError> {
    let client = visible_client(&state, &caller, &id).await?;
    caller.require_staff()?;
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/clients/{client}/stakeholders"),
        &body,
    )?;
    let input: CreateStakeholder = from_value(body)?;
    let new = input.validate(client).map_err(ApiError::invalid)?;
    let created = state.store.create_stakeholder(new, &ctx).await?;
    Ok((StatusCode::CREATED, JsonOut(created.record)))
}

fn stakeholder_path(
    caller: &Caller,
    id: &str,
    stakeholder_id: &str,
) -> Result<(ClientId, StakeholderId), ApiError> {
    let client: ClientId = path_id(id)?;
    caller.check_client(client)?;
    let s: StakeholderId = path_id(stakeholder_id)?;
    Ok((client, s))
}

/// One stakeholder of a client.
#[utoipa::path(get, path = "/api/v1/clients/{id}/stakeholders/{stakeholder_id}", tag = "clients",
    params(("id" = String, Path, description = "A client id (cli_...)"),
        ("stakeholder_id" = String, Path, description = "A stakeholder id (stk_...)")),
    responses((status = 200, body = Stakeholder), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_stakeholder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, stakeholder_id)): Path<(String, String)>,
) -> Result<JsonOut<Stakeholder>, ApiError> {
    let (client, s) = stakeholder_path(&caller, &id, &stakeholder_id)?;
    Ok(JsonOut(state.store.get_stakeholder(client, s).await?))
}

/// Change a stakeholder (the team only).
#[utoipa::path(patch, path = "/api/v1/clients/{id}/stakeholders/{stakeholder_id}", tag = "clients",
    request_body = UpdateStakeholder,
    params(("id" = String, Path, description = "A client id (cli_...)"),
        ("stakeholder_id" = String, Path, description = "A stakeholder id (stk_...)")),
    responses((status = 200, body = Stakeholder), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn update_stakeholder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path((id, stakeholder_id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<JsonOut<Stakeholder>, ApiError> {
    let (client, s) = stakeholder_path(&caller, &id, &stakeholder_id)?;
    caller.require_staff()?;
    let input: UpdateStakeholder = from_value(body)?;
    let patch = input.validate().map_err(ApiError::invalid)?;
    let ctx = write_context(&caller, &trace)?;
    Ok(JsonOut(
        state
            .store
            .update_stakeholder(client, s, patch, &ctx)
            .await?,
    ))
}

/// Remove a stakeholder (the team only).
#[utoipa::path(delete, path = "/api/v1/clients/{id}/stakeholders/{stakeholder_id}", tag = "clients",
    params(("id" = String, Path, description = "A client id (cli_...)"),
        ("stakeholder_id" = String, Path, description = "A stakeholder id (stk_...)")),
    responses((status = 204, description = "Removed"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_stakeholder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path((id, stakeholder_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (client, s) = stakeholder_path(&caller, &id, &stakeholder_id)?;
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace)?;
    state.store.delete_stakeholder(client, s, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}
