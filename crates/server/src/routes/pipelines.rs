//! Pipelines of an engagement: gating, the board, and the generation plan.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use waymark_domain::gating::{self, Gating};
use waymark_domain::plan::PlannedJob;
use waymark_domain::{EngagementId, FieldError};
use waymark_packs::{Family, Pack};
use waymark_store::{ArtifactSummary, Engagement};

use super::write_context;
use crate::AppState;
use crate::auth::Caller;
use crate::catalog::engagement_pack;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id};
use crate::observe::TraceId;

/// The type to gate.
#[derive(Debug, Deserialize, IntoParams)]
pub struct GatingQuery {
    /// An artifact type of the engagement's pack.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub artifact_type: Option<String>,
}

/// One column of the board: a type with its current artifact and gating.
#[derive(Debug, Serialize, ToSchema)]
pub struct BoardColumn {
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: String,
    pub family: Family,
    pub requires: Vec<String>,
    /// The newest artifact of the type that was not cancelled or archived.
    pub artifact: Option<ArtifactSummary>,
    pub gating: Gating,
}

/// Every type of the engagement's pack, in pipeline order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Board {
    pub engagement_id: EngagementId,
    pub pack: String,
    pub columns: Vec<BoardColumn>,
    /// How many columns have an artifact in each status.
    #[schema(value_type = Object)]
    pub counts: HashMap<String, usize>,
}

/// The deliverables to plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Job keys of the pack's plan; left out, every job.
    pub deliverables: Option<Vec<String>>,
}

/// An engagement's generation plan: the job DAG.
#[derive(Debug, Serialize, ToSchema)]
pub struct Plan {
    pub engagement_id: EngagementId,
    pub pack: String,
    /// The selected job keys; `null` means every job of the pack.
    pub deliverables: Option<Vec<String>>,
    /// Jobs by priority, each with its dependencies and status.
    pub jobs: Vec<PlannedJob>,
    /// How many jobs are in each status.
    #[schema(value_type = Object)]
    pub counts: HashMap<String, usize>,
    /// Whether a selection was saved (`false`: the default plan of every job).
    pub saved: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

/// The engagement, its pack and its current artifacts by type: the team's view
/// (a client user gets 404 for another client's engagement, 403 for their own).
async fn pipeline(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(Engagement, Arc<Pack>, HashMap<String, ArtifactSummary>), ApiError> {
    let id: EngagementId = path_id(id)?;
    let engagement = super::engagements::visible_engagement(state, caller, id).await?;
    caller.require_staff()?;
    let pack = engagement_pack(&state.packs, &engagement.pack).await?;
    let current = state
        .store
        .current_artifacts(id)
        .await?
        .into_iter()
        .map(|a| (a.artifact_type.clone(), a))
        .collect();
    Ok((engagement, pack, current))
}

fn gate(pack: &Pack, current: &HashMap<String, ArtifactSummary>, ty: &str) -> Gating {
    let requires = pack
        .artifact_type(ty)
        .map(|t| t.requires.as_slice())
        .unwrap_or(&[]);
    gating::evaluate(ty, requires, |t| current.get(t).map(|a| a.status))
}

/// Whether a type may be created in the engagement, and why not.
#[utoipa::path(get, path = "/api/v1/engagements/{id}/gating", tag = "pipelines",
    params(("id" = String, Path, description = "An engagement id (eng_...)"), GatingQuery),
    responses((status = 200, body = Gating), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn gating(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<GatingQuery>,
) -> Result<JsonOut<Gating>, ApiError> {
    let (_, pack, current) = pipeline(&state, &caller, &id).await?;
    let ty = q.artifact_type.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "give the type to gate: ?type=, one of {}",
                pack.type_names().join(", ")
            ),
        )
    })?;
    if pack.artifact_type(&ty).is_none() {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "pack {} has no type `{}`; its types are {}",
                pack.name,
                ty.chars().take(64).collect::<String>(),
                pack.type_names().join(", ")
            ),
        ));
    }
    Ok(JsonOut(gate(&pack, &current, &ty)))
}

/// The pipeline board: every type of the pack with its current artifact and gating.
#[utoipa::path(get, path = "/api/v1/engagements/{id}/board", tag = "pipelines",
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 200, body = Board), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn board(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Board>, ApiError> {
    let (engagement, pack, current) = pipeline(&state, &caller, &id).await?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let columns = pack
        .types
        .iter()
        .map(|t| {
            let gating = gate(&pack, &current, &t.name);
            let artifact = current.get(&t.name).cloned();
            let key = artifact
                .as_ref()
                .map(|a| a.status.as_str())
                .unwrap_or("missing");
            *counts.entry(key.to_owned()).or_default() += 1;
            BoardColumn {
                artifact_type: t.name.clone(),
                title: t.title.clone(),
                family: t.family,
                requires: t.requires.clone(),
                artifact,
                gating,
            }
        })
        .collect();
    Ok(JsonOut(Board {
        engagement_id: engagement.id,
        pack: pack.name.clone(),
        columns,
        counts,
    }))
}

fn plan_of(
    engagement: &Engagement,
    pack: &Pack,
    current: &HashMap<String, ArtifactSummary>,
    deliverables: Option<Vec<String>>,
    saved: Option<OffsetDateTime>,
) -> Result<Plan, ApiError> {
    if pack.plan.is_none() {
        return Err(ApiError::Conflict {
            code: "no_plan",
            detail: format!("pack {} has no generation plan", pack.name),
            allowed: None,
            extra: Default::default(),
        });
    }
    let jobs = pack
        .plan(
            deliverables.as_deref(),
            |t| gate(pack, current, t),
            |_| false,
        )
        .map_err(|e| ApiError::invalid(FieldError::new("/deliverables", e.0)))?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for j in &jobs {
        *counts.entry(j.status.as_str().to_owned()).or_default() += 1;
    }
    Ok(Plan {
        engagement_id: engagement.id,
        pack: pack.name.clone(),
        deliverables,
        jobs,
        counts,
        saved: saved.is_some(),
        updated_at: saved,
    })
}

/// The engagement's generation plan (every job of the pack until a selection is saved).
#[utoipa::path(get, path = "/api/v1/engagements/{id}/plan", tag = "pipelines",
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 200, body = Plan), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_plan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Plan>, ApiError> {
    let (engagement, pack, current) = pipeline(&state, &caller, &id).await?;
    let saved = state.store.get_plan(engagement.id).await?;
    let (deliverables, at) = match saved {
        Some(p) => (p.deliverables, Some(p.updated_at)),
        None => (None, None),
    };
    Ok(JsonOut(plan_of(
        &engagement,
        &pack,
        &current,
        deliverables,
        at,
    )?))
}

/// Choose the deliverables of the engagement's generation plan and answer its job DAG.
#[utoipa::path(post, path = "/api/v1/engagements/{id}/plan", tag = "pipelines", request_body = PlanRequest,
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 201, body = Plan), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn save_plan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<Plan>), ApiError> {
    let ctx = write_context(&caller, &trace, &HeaderMap::new(), None)?;
    let req: PlanRequest = from_value(body)?;
    let (engagement, pack, current) = pipeline(&state, &caller, &id).await?;
    let mut deliverables = req.deliverables;
    if let Some(d) = &mut deliverables {
        let mut seen = std::collections::HashSet::new();
        d.retain(|k| seen.insert(k.clone()));
    }
    // Check the selection before saving it.
    plan_of(&engagement, &pack, &current, deliverables.clone(), None)?;
    let record = state
        .store
        .save_plan(engagement.id, deliverables.clone(), &ctx)
        .await?;
    let plan = plan_of(
        &engagement,
        &pack,
        &current,
        record.deliverables,
        Some(record.updated_at),
    )?;
    Ok((StatusCode::CREATED, JsonOut(plan)))
}
