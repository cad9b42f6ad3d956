//! `/engagements/{id}/plan`: the generation plan as a graph (each job coloured
//! by its status, linked to its artifact), the jobs with the reasons a job is
//! blocked or failed, and "run next" / "run all ready".

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::json;

use super::artifacts::Badge;
use super::csrf::{CsrfCookie, Form};
use super::graph;
use super::{Layout, PageError, Viewer, render};
use crate::AppState;
use crate::extract::Json;
use crate::observe::TraceId;
use crate::routes::{self, pipelines::Plan};

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    layout: Layout,
    plan: Plan,
    engagement: waymark_store::Engagement,
    svg: String,
    badges: Vec<Badge>,
}

/// `GET /engagements/{id}/plan`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let JsonOut(plan) =
        routes::pipelines::get_plan(State(state.clone()), Extension(caller.clone()), Path(id))
            .await?;
    let engagement = state.store.get_engagement(plan.engagement_id).await?;
    let current = state.store.current_artifacts(engagement.id).await?;
    let nodes: Vec<graph::Node> = plan
        .jobs
        .iter()
        .map(|j| graph::Node {
            id: j.job.key.clone(),
            label: j.job.name.clone(),
            detail: j.job.artifact_type.clone(),
            status: j.job.status.as_str().to_owned(),
            href: current
                .iter()
                .find(|a| a.artifact_type == j.job.artifact_type)
                .map(|a| format!("/artifacts/{}", a.id)),
        })
        .collect();
    let edges: Vec<graph::Edge> = plan
        .jobs
        .iter()
        .flat_map(|j| {
            j.job.depends_on.iter().map(|d| graph::Edge {
                from: d.clone(),
                to: j.job.key.clone(),
            })
        })
        .collect();
    let svg = graph::svg(
        &format!("Generation plan of {}", engagement.name),
        &nodes,
        &edges,
    );
    let badges = plan
        .jobs
        .iter()
        .map(|j| Badge::of(j.job.status.as_str()))
        .collect();
    render(&PlanPage {
        layout: Layout::new(
            &state,
            format!("Plan — {}", engagement.name),
            Some(&caller),
            &csrf,
            "clients",
        )
        .await?,
        plan,
        engagement,
        svg,
        badges,
    })
}

#[derive(Deserialize)]
pub struct RunForm {
    mode: String,
    back: Option<String>,
}

/// `POST /engagements/{id}/plan/run`: queue the next ready job or all of them.
pub async fn run(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<RunForm>,
) -> Result<Response, PageError> {
    let mode = if f.mode == "all_ready" {
        "all_ready"
    } else {
        "next"
    };
    let (_, JsonOut(run)) = routes::pipelines::run_plan(
        State(state.clone()),
        Extension(caller),
        Extension(trace),
        Path(id.clone()),
        Json(json!({"mode": mode})),
    )
    .await?;
    let back = match f.back.as_deref() {
        Some("board") => format!("/engagements/{id}"),
        _ => format!("/engagements/{id}/plan"),
    };
    let done = if run.queued.is_empty() {
        "nothing-ready"
    } else {
        "queued"
    };
    Ok(Redirect::to(&format!("{back}?done={done}")).into_response())
}
