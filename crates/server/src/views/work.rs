//! `/work`: the tasks inbox (human tasks ready for anyone: complete with an
//! output form built from the task's contract, or fail with a reason),
//! incidents to resolve (retry, skip, cancel), and the agents with their last
//! contact. Everything goes through the API's handlers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::{Map, Value};
use waymark_store::{Incident, Task};

use super::artifacts::when;
use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, Viewer, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query as ApiQuery};
use crate::observe::TraceId;
use crate::routes::work::{
    AgentView, CompleteRequest, FailRequest, IncidentQuery, ResolveRequest, TaskQuery,
};
use crate::routes::{self, PageParams};

/// A task with its input shown as text and its output fields.
pub struct TaskView {
    pub t: Task,
    pub input: String,
    pub created: String,
}

/// An agent as listed.
pub struct AgentRow {
    pub a: AgentView,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "work.html")]
struct WorkPage {
    layout: Layout,
    tasks: Vec<TaskView>,
    incidents: Vec<(Incident, String)>,
    agents: Vec<AgentRow>,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn build(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
) -> Result<WorkPage, PageError> {
    let page = |limit| PageParams {
        limit: Some(limit),
        cursor: None,
    };
    let JsonOut(tasks) = routes::work::list_tasks(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(TaskQuery {
            status: Some("ready".into()),
            executor: Some("human".into()),
            client_id: None,
            unit_id: None,
        }),
        ApiQuery(page(100)),
    )
    .await?;
    let JsonOut(incidents) = routes::work::list_incidents(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(IncidentQuery {
            status: Some("open".into()),
            client_id: None,
        }),
        ApiQuery(page(100)),
    )
    .await?;
    let JsonOut(agents) =
        routes::work::list_agents(State(state.clone()), Extension(caller.clone())).await?;
    Ok(WorkPage {
        layout: Layout::new(state, "Work", Some(caller), csrf, "work").await?,
        tasks: tasks
            .items
            .into_iter()
            .map(|t| TaskView {
                input: if t.input.is_null() {
                    String::new()
                } else {
                    serde_json::to_string_pretty(&t.input).unwrap_or_default()
                },
                created: when(t.created_at),
                t,
            })
            .collect(),
        incidents: incidents
            .items
            .into_iter()
            .map(|i| {
                let at = when(i.opened_at);
                (i, at)
            })
            .collect(),
        agents: agents
            .items
            .into_iter()
            .map(|a| AgentRow {
                last_seen: a
                    .agent
                    .last_seen_at
                    .map(when)
                    .unwrap_or_else(|| "never".into()),
                a,
            })
            .collect(),
        notice: None,
        error: None,
    })
}

/// `GET /work`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = build(&state, &caller, &csrf).await?;
    page.notice = q.notice();
    render(&page)
}

async fn refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    e: ApiError,
) -> Result<Response, PageError> {
    if matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        return Err(e.into());
    }
    let mut page = build(state, caller, csrf).await?;
    page.error = Some(super::problem_text(&e));
    render_status(e.status(), &page)
}

/// The output a completion form describes: each contract field (`out:<name>`)
/// as text, or as JSON when it reads as JSON, merged into the "more output"
/// JSON object.
pub fn output_of(pairs: &[(String, String)]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    if let Some((_, extra)) = pairs.iter().find(|(k, _)| k == "output_json")
        && !extra.trim().is_empty()
    {
        match serde_json::from_str::<Value>(extra) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => {
                return Err(ApiError::invalid(waymark_domain::FieldError::new(
                    "/output",
                    "the further output must be a JSON object, such as {\"approved\": true}",
                )));
            }
        }
    }
    for (k, v) in pairs {
        if let Some(name) = k.strip_prefix("out:")
            && !v.trim().is_empty()
        {
            let value = match serde_json::from_str::<Value>(v.trim()) {
                Ok(
                    j @ (Value::Number(_) | Value::Bool(_) | Value::Object(_) | Value::Array(_)),
                ) => j,
                _ => Value::String(v.trim().to_owned()),
            };
            out.insert(name.to_owned(), value);
        }
    }
    Ok(Value::Object(out))
}

/// `POST /work/tasks/{id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let done = match output_of(&pairs) {
        Ok(output) => routes::work::complete_task(
            State(state.clone()),
            Extension(caller.clone()),
            Extension(trace),
            Path(id),
            Json(CompleteRequest {
                lease_token: None,
                output,
            }),
        )
        .await
        .map(|_| ()),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => Ok(Redirect::to("/work?done=completed").into_response()),
        Err(e) => refused(&state, &caller, &csrf, e).await,
    }
}

#[derive(Deserialize)]
pub struct FailForm {
    error: String,
}

/// `POST /work/tasks/{id}/fail`: fails the task at once (a person decided).
pub async fn fail(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<FailForm>,
) -> Result<Response, PageError> {
    match routes::work::fail_task(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
        Json(FailRequest {
            lease_token: None,
            error: f.error,
            retryable: false,
        }),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/work?done=failed").into_response()),
        Err(e) => refused(&state, &caller, &csrf, e).await,
    }
}

#[derive(Deserialize)]
pub struct ResolveForm {
    action: String,
    note: Option<String>,
}

/// `POST /work/incidents/{id}/resolve`: retry, skip or cancel.
pub async fn resolve(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<ResolveForm>,
) -> Result<Response, PageError> {
    let Ok(action) = serde_json::from_value(Value::String(f.action)) else {
        return Err(PageError::BadRequest(
            "Resolve an incident by retry, skip or cancel.".into(),
        ));
    };
    match routes::work::resolve_incident(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
        Json(ResolveRequest {
            action,
            note: f.note.filter(|n| !n.trim().is_empty()),
        }),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/work?done=resolved-incident").into_response()),
        Err(e) => refused(&state, &caller, &csrf, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn completion_forms_become_output_objects() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let out = output_of(&pairs(&[
            ("csrf", "x"),
            ("out:approved", "true"),
            ("out:count", "3"),
            ("out:note", "looks good"),
            ("out:empty", "  "),
            ("output_json", "{\"extra\": [1]}"),
        ]))
        .unwrap();
        assert_eq!(
            out,
            json!({"approved": true, "count": 3, "note": "looks good", "extra": [1]})
        );
        assert!(output_of(&pairs(&[("output_json", "[1]")])).is_err());
        assert_eq!(output_of(&[]).unwrap(), json!({}));
    }
}
