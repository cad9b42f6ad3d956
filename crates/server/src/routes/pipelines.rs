//! Pipelines of an engagement: gating, the board, and the generation plan.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use waymark_domain::artifact::{ResolvedSource, SourceRef, inputs_hash};
use waymark_domain::content::ContentHash;
use waymark_domain::gating::{self, Gating};
use waymark_domain::generate::job_generator;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::plan::{self, JobRun, PlannedJob};
use waymark_domain::work::{
    Backoff, CheckedTask, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, Executor, TaskStatus,
};
use waymark_domain::{EngagementId, FieldError, UnitId};
use waymark_packs::{Family, Pack};
use waymark_store::{ArtifactSummary, Engagement, NewUnit, PlanJobRecord, PlanLink};

use super::write_context;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id};
use crate::observe::TraceId;
use waymark_engine::catalog::engagement_pack;

/// The type to gate.
#[derive(Debug, Deserialize, IntoParams)]
pub struct GatingQuery {
    /// An artifact type of the engagement's pack.
    #[serde(rename = "type")]
    #[param(rename = "type", required = true, pattern = "^[a-z][a-z0-9_]{0,63}$")]
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

/// A job of the plan, with what its last run wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanJob {
    #[serde(flatten)]
    pub job: PlannedJob,
    /// Its last run: the version it wrote (artifact, version, inputs hash,
    /// provenance) and its latest task; `null` when it never ran.
    pub last_run: Option<PlanJobRecord>,
    /// The inputs hash it would run on now: the type, its generator and job,
    /// the content hashes of the current upstream artifacts.
    pub inputs_hash: String,
}

/// An engagement's generation plan: the job DAG.
#[derive(Debug, Serialize, ToSchema)]
pub struct Plan {
    pub engagement_id: EngagementId,
    pub pack: String,
    /// The selected job keys; `null` means every job of the pack.
    pub deliverables: Option<Vec<String>>,
    /// Jobs by priority, each with its dependencies, status and last run.
    pub jobs: Vec<PlanJob>,
    /// How many jobs are in each status.
    #[schema(value_type = Object)]
    pub counts: HashMap<String, usize>,
    /// Whether a selection was saved (`false`: the intake's `deliverables`,
    /// or every job of the pack).
    pub saved: bool,
    /// Where the selection comes from: `saved` (`POST .../plan`), `intake`
    /// (the engagement's intake lists its `deliverables`) or `pack` (every job).
    pub selected_by: String,
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

/// What the engine did with each job and the inputs hash it would run on now.
struct JobStates {
    records: HashMap<String, PlanJobRecord>,
    hashes: HashMap<String, String>,
}

impl JobStates {
    async fn load(
        state: &AppState,
        engagement: &Engagement,
        pack: &Pack,
        current: &HashMap<String, ArtifactSummary>,
    ) -> Result<Self, ApiError> {
        let records = state
            .store
            .plan_jobs(engagement.id)
            .await?
            .into_iter()
            .map(|r| (r.job_key.clone(), r))
            .collect();
        let mut hashes = HashMap::new();
        if let Some(p) = &pack.plan {
            for job in &p.jobs {
                let Some(ty) = p
                    .modules
                    .iter()
                    .find(|m| m.name == job.module)
                    .and_then(|m| pack.artifact_type(&m.artifact_type))
                else {
                    continue;
                };
                let sources: Vec<ResolvedSource> = ty
                    .requires
                    .iter()
                    .filter_map(|t| current.get(t))
                    .map(|a| ResolvedSource {
                        source: SourceRef {
                            artifact_id: a.id,
                            version: a.version,
                        },
                        artifact_type: a.artifact_type.clone(),
                        content_hash: ContentHash::from_stored(a.content_hash.clone()),
                    })
                    .collect();
                let generator = job_generator(&ty.generator_fingerprint(), &job.key);
                hashes.insert(
                    job.key.clone(),
                    inputs_hash(&ty.name, &generator, &sources).to_string(),
                );
            }
        }
        Ok(Self { records, hashes })
    }

    fn run(&self, job: &str, current_artifact: Option<&ArtifactSummary>) -> JobRun {
        let Some(r) = self.records.get(job) else {
            return JobRun::NotRun;
        };
        match r.task_status {
            Some(TaskStatus::Pending | TaskStatus::Ready | TaskStatus::Held) => {
                return JobRun::Queued;
            }
            Some(TaskStatus::Running) => return JobRun::Running,
            Some(TaskStatus::Failed) => {
                return JobRun::Failed(format!(
                    "its task {} failed: {}; resolve the incident on unit {} (retry, skip or cancel)",
                    r.task_id.map(|t| t.to_string()).unwrap_or_default(),
                    r.task_error.as_deref().unwrap_or("no error recorded"),
                    r.unit_id.map(|u| u.to_string()).unwrap_or_default(),
                ));
            }
            Some(TaskStatus::Blocked) => {
                return JobRun::Failed(format!(
                    "its task {} waits on a failed job of unit {}; resolve that incident",
                    r.task_id.map(|t| t.to_string()).unwrap_or_default(),
                    r.unit_id.map(|u| u.to_string()).unwrap_or_default(),
                ));
            }
            _ => {}
        }
        match (&r.inputs_hash, current_artifact) {
            // A stale artifact (the cascade reached it through another) is
            // not up to date even when its direct inputs are unchanged.
            (Some(h), Some(a))
                if Some(h) == self.hashes.get(job)
                    && r.artifact_id == Some(a.id)
                    && a.status != ArtifactStatus::Stale =>
            {
                JobRun::UpToDate
            }
            (Some(_), _) => JobRun::OutOfDate,
            _ => JobRun::NotRun,
        }
    }
}

fn plan_of(
    engagement: &Engagement,
    pack: &Pack,
    current: &HashMap<String, ArtifactSummary>,
    states: &JobStates,
    deliverables: Option<Vec<String>>,
    saved: Option<OffsetDateTime>,
) -> Result<Plan, ApiError> {
    let selection_from_intake = saved.is_none() && deliverables.is_some();
    let Some(definition) = &pack.plan else {
        return Err(ApiError::Conflict {
            code: "no_plan",
            detail: format!("pack {} has no generation plan", pack.name),
            allowed: None,
            extra: Default::default(),
        });
    };
    let type_of = |job: &str| -> Option<&str> {
        let j = definition.jobs.iter().find(|j| j.key == job)?;
        definition
            .modules
            .iter()
            .find(|m| m.name == j.module)
            .map(|m| m.artifact_type.as_str())
    };
    let jobs = pack
        .plan(
            deliverables.as_deref(),
            |t| gate(pack, current, t),
            |job| states.run(job, type_of(job).and_then(|t| current.get(t))),
            |t| {
                current.get(t).filter(|a| !a.status.is_editable()).map(|a| {
                    format!(
                        "the {t} artifact {} is {}; move it back to draft to regenerate it",
                        a.id,
                        a.status.as_str()
                    )
                })
            },
        )
        .map_err(|e| ApiError::invalid(FieldError::new("/deliverables", e.0)))?;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for j in &jobs {
        *counts.entry(j.status.as_str().to_owned()).or_default() += 1;
    }
    let jobs = jobs
        .into_iter()
        .map(|job| PlanJob {
            last_run: states.records.get(&job.key).cloned(),
            inputs_hash: states.hashes.get(&job.key).cloned().unwrap_or_default(),
            job,
        })
        .collect();
    Ok(Plan {
        engagement_id: engagement.id,
        pack: pack.name.clone(),
        deliverables,
        jobs,
        counts,
        saved: saved.is_some(),
        selected_by: if saved.is_some() {
            "saved"
        } else if selection_from_intake {
            "intake"
        } else {
            "pack"
        }
        .into(),
        updated_at: saved,
    })
}

/// The saved selection of deliverables and when it was saved; without one,
/// the `deliverables` the engagement's intake lists (the plan's job keys
/// among them), if any.
async fn saved_selection(
    state: &AppState,
    engagement: &Engagement,
    pack: &Pack,
    current: &HashMap<String, ArtifactSummary>,
) -> Result<(Option<Vec<String>>, Option<OffsetDateTime>), ApiError> {
    if let Some(p) = state.store.get_plan(engagement.id).await? {
        return Ok((p.deliverables, Some(p.updated_at)));
    }
    let (Some(plan), Some(intake)) = (&pack.plan, current.get("intake")) else {
        return Ok((None, None));
    };
    let content = state.store.get_artifact(intake.id).await?.content;
    let listed: Vec<String> = content
        .get("deliverables")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .filter(|k| plan.jobs.iter().any(|j| j.key == *k))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(((!listed.is_empty()).then_some(listed), None))
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
    let (deliverables, at) = saved_selection(&state, &engagement, &pack, &current).await?;
    let states = JobStates::load(&state, &engagement, &pack, &current).await?;
    Ok(JsonOut(plan_of(
        &engagement,
        &pack,
        &current,
        &states,
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
    let ctx = write_context(&caller, &trace)?;
    let req: PlanRequest = from_value(body)?;
    let (engagement, pack, current) = pipeline(&state, &caller, &id).await?;
    let mut deliverables = req.deliverables;
    if let Some(d) = &mut deliverables {
        let mut seen = std::collections::HashSet::new();
        d.retain(|k| seen.insert(k.clone()));
    }
    // Check the selection before saving it.
    let states = JobStates::load(&state, &engagement, &pack, &current).await?;
    plan_of(
        &engagement,
        &pack,
        &current,
        &states,
        deliverables.clone(),
        None,
    )?;
    let record = state
        .store
        .save_plan(engagement.id, deliverables.clone(), &ctx)
        .await?;
    let plan = plan_of(
        &engagement,
        &pack,
        &current,
        &states,
        record.deliverables,
        Some(record.updated_at),
    )?;
    Ok((StatusCode::CREATED, JsonOut(plan)))
}

/// Which ready jobs a run queues.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The highest-priority ready job.
    #[default]
    Next,
    /// Every ready job (jobs of one module run one after the other).
    AllReady,
}

/// What to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRunRequest {
    #[serde(default)]
    pub mode: RunMode,
}

/// What a run queued, and the plan afterwards.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanRun {
    pub mode: RunMode,
    /// The unit of work running the queued jobs; `null` when nothing was ready.
    pub unit_id: Option<UnitId>,
    /// The jobs queued, in the order they run.
    pub queued: Vec<String>,
    /// Why nothing was queued, when nothing was.
    pub reason: Option<String>,
    pub plan: Plan,
}

/// Run the generation plan: queue the highest-priority ready job (`next`) or
/// every ready one (`all_ready`) on the work engine, as `llm.generate` tasks of
/// one unit of work. Each writes its section of its module's artifact, with
/// its sources and inputs hash; a job whose inputs did not change since its
/// last run is up to date and not queued; a gated one stays `blocked` with the
/// reasons. Answers 202 with the unit when jobs were queued, 200 when none was
/// ready.
#[utoipa::path(post, path = "/api/v1/engagements/{id}/plan/run", tag = "pipelines", request_body = PlanRunRequest,
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 202, body = PlanRun), (status = 200, body = PlanRun), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn run_plan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<PlanRun>), ApiError> {
    let ctx = write_context(&caller, &trace)?;
    let req: PlanRunRequest = from_value(body)?;
    let (engagement, pack, current) = pipeline(&state, &caller, &id).await?;
    let (deliverables, at) = saved_selection(&state, &engagement, &pack, &current).await?;
    let states = JobStates::load(&state, &engagement, &pack, &current).await?;
    let before = plan_of(
        &engagement,
        &pack,
        &current,
        &states,
        deliverables.clone(),
        at,
    )?;
    let planned: Vec<PlannedJob> = before.jobs.iter().map(|j| j.job.clone()).collect();
    let chosen = plan::runnable(&planned, req.mode == RunMode::AllReady);
    if chosen.is_empty() {
        let reason = nothing_ready(&planned);
        return Ok((
            StatusCode::OK,
            JsonOut(PlanRun {
                mode: req.mode,
                unit_id: None,
                queued: vec![],
                reason: Some(reason),
                plan: before,
            }),
        ));
    }
    let chain = plan::chain_by_module(&chosen);
    let mut tasks = Vec::with_capacity(chosen.len());
    for (i, (job, prev)) in chosen.iter().zip(&chain).enumerate() {
        let depends_on = prev
            .and_then(|p| chosen.iter().position(|j| j.key == p))
            .into_iter()
            .collect::<Vec<_>>();
        debug_assert!(depends_on.iter().all(|d| *d < i));
        tasks.push(CheckedTask {
            key: job.key.clone(),
            name: job.name.clone(),
            executor: Executor::LlmGenerate,
            input: serde_json::json!({
                "engagement_id": engagement.id,
                "job": job.key,
                "type": job.artifact_type,
            }),
            depends_on,
            priority: job.priority,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout_s: DEFAULT_TIMEOUT_S,
            backoff: Backoff::default(),
            contract: vec![],
            handoff_from: None,
        });
    }
    // Jobs of a module already running elsewhere write the same artifact: wait
    // for their unit.
    let mut depends_on_units: Vec<UnitId> = Vec::new();
    for job in &chosen {
        for other in &before.jobs {
            if other.job.module == job.module
                && matches!(
                    other.job.status,
                    plan::JobStatus::Queued | plan::JobStatus::Running
                )
                && let Some(u) = other.last_run.as_ref().and_then(|r| r.unit_id)
                && !depends_on_units.contains(&u)
            {
                depends_on_units.push(u);
            }
        }
    }
    let queued: Vec<String> = chosen.iter().map(|j| j.key.clone()).collect();
    let unit = state
        .store
        .submit_unit(
            NewUnit {
                client_id: engagement.client_id,
                name: format!(
                    "Generate {} for {}",
                    if queued.len() == 1 {
                        queued[0].clone()
                    } else {
                        format!("{} jobs", queued.len())
                    },
                    engagement.name
                ),
                tasks,
                depends_on_units,
                origin: Some(serde_json::json!({
                    "kind": "plan_run",
                    "engagement_id": engagement.id,
                    "mode": req.mode,
                })),
                plan: Some(PlanLink {
                    engagement_id: engagement.id,
                    jobs: queued.iter().cloned().enumerate().collect(),
                }),
            },
            &ctx,
        )
        .await?;
    let states = JobStates::load(&state, &engagement, &pack, &current).await?;
    let after = plan_of(&engagement, &pack, &current, &states, deliverables, at)?;
    Ok((
        StatusCode::ACCEPTED,
        JsonOut(PlanRun {
            mode: req.mode,
            unit_id: Some(unit.record.id),
            queued,
            reason: None,
            plan: after,
        }),
    ))
}

/// Why a run found nothing to queue, from the plan's statuses.
fn nothing_ready(jobs: &[PlannedJob]) -> String {
    let count = |s: plan::JobStatus| jobs.iter().filter(|j| j.status == s).count();
    if jobs.iter().all(|j| j.status == plan::JobStatus::Completed) {
        return "every job is up to date".into();
    }
    let mut parts = Vec::new();
    for (status, label) in [
        (plan::JobStatus::Completed, "up to date"),
        (plan::JobStatus::Queued, "queued"),
        (plan::JobStatus::Running, "running"),
        (plan::JobStatus::Pending, "waiting on other jobs"),
        (plan::JobStatus::Failed, "failed"),
    ] {
        let n = count(status);
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    if let Some(b) = jobs.iter().find(|j| j.status == plan::JobStatus::Blocked) {
        parts.push(format!(
            "{} blocked (first: {}: {})",
            count(plan::JobStatus::Blocked),
            b.key,
            b.reasons.join("; ")
        ));
    }
    format!("no job is ready: {}", parts.join(", "))
}
