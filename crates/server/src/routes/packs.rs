//! Packs: the built-in and installed templates engagements are configured by.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use waymark_domain::FieldError;
use waymark_domain::journey::JourneyTemplate;
use waymark_packs::{Family, Generator, Pack, PackFiles, Problem as PackProblem};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::Json;
use waymark_engine::catalog::InstallError;

/// A pack as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackSummary {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Shipped inside the binary (`false`: installed).
    pub builtin: bool,
    /// SHA-256 over every file of the pack.
    pub digest: String,
    /// Its artifact types, in pipeline order.
    pub types: Vec<String>,
}

/// The packs.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackList {
    pub items: Vec<PackSummary>,
    /// Always `null`: every pack fits on one page.
    pub next_cursor: Option<String>,
}

/// A validation rule of a type.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub name: String,
    /// CEL over `content`; true gives the warning.
    pub when: String,
    pub message: String,
}

/// An artifact type of a pack.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeView {
    pub name: String,
    pub title: String,
    pub family: Family,
    pub description: String,
    /// Upstream types that must be approved first.
    pub requires: Vec<String>,
    /// JSON Schema (draft 2020-12) of its content.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// Content that satisfies the schema.
    #[schema(value_type = Object)]
    pub example: Value,
    pub rules: Vec<RuleView>,
    pub generator: Option<Generator>,
}

/// A module of the generation plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleView {
    pub name: String,
    #[serde(rename = "type")]
    pub artifact_type: String,
    /// Lowest and highest priority of its jobs.
    pub band: [i64; 2],
    pub depends_on: Vec<String>,
}

/// A job the generation plan can hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub key: String,
    pub name: String,
    pub module: String,
    pub priority: i64,
    pub depends_on: Vec<String>,
}

/// The generation plan definition of a pack.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub modules: Vec<ModuleView>,
    pub jobs: Vec<JobView>,
}

/// A pack with everything it declares.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackDetail {
    #[serde(flatten)]
    pub summary: PackSummary,
    pub artifact_types: Vec<TypeView>,
    pub plan: Option<PlanView>,
    /// The pack's journey templates (stages, criteria, activities, rollback,
    /// milestones), as `POST /api/v1/journeys` uses them by name.
    pub journey_templates: Vec<JourneyTemplate>,
    /// Queue rules: which playbook is due for which client, and how it is
    /// scored.
    pub queue_rules: Vec<waymark_domain::queue::QueueRuleDef>,
}

/// A pack to install: its files by path relative to the pack folder.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallPack {
    /// `pack.yaml`, `schemas/...`, `examples/...`: path to text.
    pub files: BTreeMap<String, String>,
}

fn summary(p: &Pack, builtin: bool) -> PackSummary {
    PackSummary {
        name: p.name.clone(),
        version: p.version.clone(),
        description: p.description.clone(),
        builtin,
        digest: p.digest.clone(),
        types: p.types.iter().map(|t| t.name.clone()).collect(),
    }
}

pub fn detail(p: &Pack, builtin: bool) -> PackDetail {
    PackDetail {
        summary: summary(p, builtin),
        artifact_types: p
            .types
            .iter()
            .map(|t| TypeView {
                name: t.name.clone(),
                title: t.title.clone(),
                family: t.family,
                description: t.description.clone(),
                requires: t.requires.clone(),
                schema: t.schema.clone(),
                example: t.example.clone(),
                rules: t
                    .rules
                    .iter()
                    .map(|r| RuleView {
                        name: r.name.clone(),
                        when: r.when.clone(),
                        message: r.message.clone(),
                    })
                    .collect(),
                generator: t.generator.clone(),
            })
            .collect(),
        plan: p.plan.as_ref().map(|plan| PlanView {
            modules: plan
                .modules
                .iter()
                .map(|m| ModuleView {
                    name: m.name.clone(),
                    artifact_type: m.artifact_type.clone(),
                    band: [m.band.0, m.band.1],
                    depends_on: m.depends_on.clone(),
                })
                .collect(),
            jobs: plan
                .jobs
                .iter()
                .map(|j| JobView {
                    key: j.key.clone(),
                    name: j.name.clone(),
                    module: j.module.clone(),
                    priority: j.priority,
                    depends_on: j.depends_on.clone(),
                })
                .collect(),
        }),
        journey_templates: p.journeys.clone(),
        queue_rules: p.queue.iter().map(|r| r.def.clone()).collect(),
    }
}

/// List the packs: built-in ones, then installed ones.
#[utoipa::path(get, path = "/api/v1/packs", tag = "pipelines",
    responses((status = 200, body = PackList)), security(("bearer" = [])))]
pub async fn list_packs(State(state): State<AppState>) -> Result<JsonOut<PackList>, ApiError> {
    let items = state
        .packs
        .list()
        .await?
        .iter()
        .map(|(p, builtin)| summary(p, *builtin))
        .collect();
    Ok(JsonOut(PackList {
        items,
        next_cursor: None,
    }))
}

/// Get a pack: its artifact types (with schema and example), plan, journey templates and queue rules.
#[utoipa::path(get, path = "/api/v1/packs/{name}", tag = "pipelines",
    params(("name" = String, Path, description = "A pack name, e.g. marketing-engagement")),
    responses((status = 200, body = PackDetail), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_pack(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<JsonOut<PackDetail>, ApiError> {
    let pack: Arc<Pack> = state.packs.get(&name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no pack {}",
            name.chars().take(64).collect::<String>()
        ))
    })?;
    let builtin = waymark_packs::builtin().iter().any(|b| b.name == pack.name);
    Ok(JsonOut(detail(&pack, builtin)))
}

/// Install a pack (or replace the installed pack of that name). Admins only.
#[utoipa::path(post, path = "/api/v1/packs", tag = "pipelines", request_body = InstallPack,
    responses((status = 201, body = PackDetail), (status = 422, body = Problem, description = "The pack does not load: `problems` says where and why"),
        (status = 409, body = Problem, description = "The name is a built-in pack's")),
    security(("bearer" = [])))]
pub async fn install_pack(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<crate::observe::TraceId>,
    headers: axum::http::HeaderMap,
    Json(body): Json<InstallPack>,
) -> Result<(StatusCode, JsonOut<PackDetail>), ApiError> {
    caller.require_admin()?;
    let ctx = super::creating_context(&caller, &trace, &headers, "/api/v1/packs", &body)?;
    let files = PackFiles::from_map(body.files).map_err(|p| refused(vec![p]))?;
    match state.packs.install(files, &ctx).await {
        Ok(pack) => Ok((StatusCode::CREATED, JsonOut(detail(&pack, false)))),
        Err(InstallError::Invalid(e)) => Err(refused(e.problems)),
        Err(InstallError::Builtin(name)) => Err(ApiError::Conflict {
            code: "pack_name_taken",
            detail: format!("`{name}` is the name of a built-in pack; give yours another name"),
            allowed: None,
            extra: Default::default(),
        }),
        Err(InstallError::Store(e)) => Err(e.into()),
    }
}

/// 422 with each problem as a field error (`/files/<path>`) and as `problems`.
fn refused(problems: Vec<PackProblem>) -> ApiError {
    let errors = problems
        .iter()
        .map(|p| {
            FieldError::new(
                format!("/files/{}", p.file.replace('~', "~0").replace('/', "~1")),
                p.to_string(),
            )
        })
        .collect();
    ApiError::Invalid {
        detail: format!(
            "the pack has {} problem(s); fix them and install again",
            problems.len()
        ),
        errors,
    }
}
