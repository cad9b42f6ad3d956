//! Journeys over HTTP: templates, journeys and their events, metric
//! observations, sign-offs and the current stage's validation. The decisions
//! are in `crate::journeys` and the domain; handlers parse and answer.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::criteria::{self, Observation, Trigger, ValidationResult};
use waymark_domain::journey::{Event, JourneyTemplate};
use waymark_domain::{ArtifactId, ClientId, FieldError, JourneyId};
use waymark_store::{Journey, MetricRecord, NewJourney, NewObservation, Page, Signoff};

use super::{PageParams, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id};
use crate::journeys::{self, AutoRollback, EventAsk, JourneyDetail};
use crate::observe::TraceId;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, save_template))
        .routes(routes!(create_journey, list_journeys))
        .routes(routes!(get_journey))
        .routes(routes!(journey_event))
        .routes(routes!(record_metrics))
        .routes(routes!(sign_off))
        .routes(routes!(get_validation))
}

/// A journey template and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    #[serde(flatten)]
    pub template: JourneyTemplate,
    /// The pack that ships it, or `api` for one saved over the API.
    pub source: String,
}

/// Every journey template: the packs' and those saved over the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub items: Vec<TemplateView>,
}

/// The journey templates this server knows.
#[utoipa::path(get, path = "/api/v1/journey-templates", tag = "journeys",
    responses((status = 200, body = TemplateList), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_templates(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonOut<TemplateList>, ApiError> {
    caller.require_staff()?;
    let items = crate::catalog::journey_templates(&state.packs, &*state.store)
        .await?
        .into_iter()
        .map(|(template, source)| TemplateView { template, source })
        .collect();
    Ok(JsonOut(TemplateList { items }))
}

/// Save a journey template (admins and operators): checked like a pack's.
/// A pack's template cannot be replaced; give yours another name.
#[utoipa::path(post, path = "/api/v1/journey-templates", tag = "journeys", request_body = Object,
    responses((status = 201, body = TemplateView), (status = 200, body = TemplateView),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn save_template(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<TemplateView>), ApiError> {
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace, &HeaderMap::new(), None)?;
    let template: JourneyTemplate = from_value(body)?;
    let problems = waymark_packs::check_journey(&template);
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            detail: format!("the template has {} problem(s); see errors", problems.len()),
            errors: problems,
        });
    }
    let existing = crate::catalog::journey_templates(&state.packs, &*state.store).await?;
    if let Some((_, source)) = existing
        .iter()
        .find(|(t, s)| t.name == template.name && s != "api")
    {
        return Err(ApiError::Conflict {
            code: "template_exists",
            detail: format!(
                "pack {source} ships a template named {}; give yours another name",
                template.name
            ),
            allowed: None,
            extra: Default::default(),
        });
    }
    let created = state
        .store
        .put_journey_template(template.clone(), &ctx)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        JsonOut(TemplateView {
            template,
            source: "api".into(),
        }),
    ))
}

/// A journey to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJourney {
    pub client_id: String,
    /// A template's name (`GET /api/v1/journey-templates`).
    pub template: String,
    /// Shown to people; the template's title and the client's name by default.
    pub name: Option<String>,
    /// The approved artifact it implements.
    pub source_artifact_id: Option<String>,
}

/// Create a journey for a client, in `pending`; the `start` event enters its
/// first stage.
#[utoipa::path(post, path = "/api/v1/journeys", tag = "journeys", request_body = CreateJourney,
    responses((status = 201, body = JourneyDetail), (status = 422, body = Problem)), security(("bearer" = [])))]
pub async fn create_journey(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<JourneyDetail>), ApiError> {
    caller.require_staff()?;
    let ctx = write_context(&caller, &trace, &headers, Some(&body))?;
    let req: CreateJourney = from_value(body)?;
    let client_id: ClientId =
        req.client_id
            .trim()
            .parse()
            .map_err(|e: waymark_domain::IdError| {
                ApiError::invalid(FieldError::new("/client_id", e.to_string()))
            })?;
    let source_artifact_id = req
        .source_artifact_id
        .as_deref()
        .map(|a| {
            a.trim().parse::<ArtifactId>().map_err(|e| {
                ApiError::invalid(FieldError::new("/source_artifact_id", e.to_string()))
            })
        })
        .transpose()?;
    let templates = crate::catalog::journey_templates(&state.packs, &*state.store).await?;
    let template = templates
        .iter()
        .find(|(t, _)| t.name == req.template)
        .map(|(t, _)| t.clone())
        .ok_or_else(|| {
            ApiError::invalid(FieldError::new(
                "/template",
                format!(
                    "no journey template `{}`; the templates are {}",
                    req.template.chars().take(100).collect::<String>(),
                    templates
                        .iter()
                        .map(|(t, _)| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        })?;
    let name = match req.name.map(|n| n.trim().to_owned()) {
        Some(n) if !n.is_empty() && n.chars().count() <= 200 => n,
        Some(_) => {
            return Err(ApiError::invalid(FieldError::new(
                "/name",
                "must be 1-200 characters",
            )));
        }
        None => template.title.clone(),
    };
    let created = state
        .store
        .create_journey(
            NewJourney {
                client_id,
                name,
                template,
                source_artifact_id,
            },
            &ctx,
        )
        .await?;
    let status = if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    state.notify_change();
    Ok((
        status,
        JsonOut(journeys::detail(&*state.store, created.record.id).await?),
    ))
}

/// Which journeys to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JourneyQuery {
    pub client_id: Option<String>,
    pub template: Option<String>,
}

/// A page of journeys.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyPage {
    pub items: Vec<Journey>,
    pub next_cursor: Option<String>,
}

/// Journeys, newest first.
#[utoipa::path(get, path = "/api/v1/journeys", tag = "journeys", params(JourneyQuery, PageParams),
    responses((status = 200, body = JourneyPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_journeys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<JourneyQuery>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Journey>>, ApiError> {
    caller.require_staff()?;
    let client = q
        .client_id
        .as_deref()
        .map(path_id::<ClientId>)
        .transpose()?;
    Ok(JsonOut(
        state
            .store
            .list_journeys(client, q.template, p.page()?)
            .await?,
    ))
}

/// A journey with its units of work, history and sign-offs.
#[utoipa::path(get, path = "/api/v1/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = JourneyDetail), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_journey(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<JourneyDetail>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    Ok(JsonOut(journeys::detail(&*state.store, id).await?))
}

/// An event for a journey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    pub event: Event,
    pub reason: Option<String>,
    /// Required with `rollback`.
    pub trigger: Option<Trigger>,
    /// Inconclusive exit checks to override (promote, complete), on the record.
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// Move a journey: `start`, `promote`, `rollback` (with a `trigger`),
/// `complete_rollback`, `cancel`, `complete`, `pause`, `resume`. Refused (409
/// `transition_refused`) with every failed check and the events possible now.
#[utoipa::path(post, path = "/api/v1/journeys/{id}/events", tag = "journeys", request_body = EventRequest,
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = JourneyDetail), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn journey_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<JsonOut<JourneyDetail>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = write_context(&caller, &trace, &HeaderMap::new(), None)?;
    let req: EventRequest = from_value(body)?;
    let reason = waymark_domain::artifact::parse_note(req.reason.as_deref(), "/reason")
        .map_err(ApiError::invalid)?;
    if req.overrides.len() > 100 {
        return Err(ApiError::invalid(FieldError::new(
            "/overrides",
            "at most 100 check names",
        )));
    }
    journeys::apply_event(
        &*state.store,
        id,
        EventAsk {
            event: req.event,
            reason,
            trigger: req.trigger,
            overrides: req.overrides,
            automatic: false,
        },
        &ctx,
    )
    .await?;
    state.notify_change();
    Ok(JsonOut(journeys::detail(&*state.store, id).await?))
}

/// One metric observation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationIn {
    pub name: String,
    pub value: f64,
    /// When it was observed (RFC 3339); now when left out.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
}

/// Observations to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsRequest {
    pub observations: Vec<ObservationIn>,
}

/// What was recorded, and the rollback it caused, if any.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsAnswer {
    pub recorded: Vec<MetricRecord>,
    /// Set when an observation crossed a rollback trigger of the current stage.
    pub rolled_back: Option<AutoRollback>,
}

/// Record metric observations (from people, agents or tools). One that
/// crosses a rollback trigger's threshold rolls the journey back by itself.
#[utoipa::path(post, path = "/api/v1/journeys/{id}/metrics", tag = "journeys", request_body = MetricsRequest,
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 201, body = MetricsAnswer), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn record_metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<MetricsAnswer>), ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = write_context(&caller, &trace, &HeaderMap::new(), None)?;
    let req: MetricsRequest = from_value(body)?;
    if req.observations.is_empty() || req.observations.len() > 1000 {
        return Err(ApiError::invalid(FieldError::new(
            "/observations",
            "give 1 to 1000 observations",
        )));
    }
    let now = OffsetDateTime::now_utc();
    let mut errors = Vec::new();
    let mut observations = Vec::with_capacity(req.observations.len());
    for (i, o) in req.observations.into_iter().enumerate() {
        let name = o.name.trim().to_owned();
        if let Err(why) = criteria::check_name("metric", &name) {
            errors.push(FieldError::new(format!("/observations/{i}/name"), why));
        }
        if !o.value.is_finite() {
            errors.push(FieldError::new(
                format!("/observations/{i}/value"),
                "must be a finite number",
            ));
        }
        let at = o.at.unwrap_or(now);
        if at > now + time::Duration::minutes(5) {
            errors.push(FieldError::new(
                format!("/observations/{i}/at"),
                "is in the future",
            ));
        }
        observations.push(NewObservation {
            name,
            value: o.value,
            at,
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            detail: format!("{} observation problem(s); see errors", errors.len()),
            errors,
        });
    }
    let seen: Vec<Observation> = observations
        .iter()
        .map(|o| Observation::new(o.name.clone(), o.value, o.at))
        .collect();
    let recorded = state.store.record_metrics(id, observations, &ctx).await?;
    let rolled_back = journeys::watch_triggers(&*state.store, id, &seen, &ctx).await?;
    state.notify_change();
    Ok((
        StatusCode::CREATED,
        JsonOut(MetricsAnswer {
            recorded,
            rolled_back,
        }),
    ))
}

/// A sign-off to give.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignoffRequest {
    /// The sign-off's name, as the criteria name it (e.g. `client_stakeholder_demo`).
    pub name: String,
    pub note: Option<String>,
}

/// Give a named sign-off (once; giving it again answers the first).
#[utoipa::path(post, path = "/api/v1/journeys/{id}/signoffs", tag = "journeys", request_body = SignoffRequest,
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 201, body = Signoff), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn sign_off(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<Signoff>), ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = write_context(&caller, &trace, &HeaderMap::new(), None)?;
    let req: SignoffRequest = from_value(body)?;
    let name = req.name.trim().to_owned();
    criteria::check_name("sign-off", &name)
        .map_err(|why| ApiError::invalid(FieldError::new("/name", why)))?;
    let note = waymark_domain::artifact::parse_note(req.note.as_deref(), "/note")
        .map_err(ApiError::invalid)?;
    let s = state.store.sign_off(id, name, note, &ctx).await?;
    state.notify_change();
    Ok((StatusCode::CREATED, JsonOut(s)))
}

/// The current stage's exit validation: its criteria, its units of work and
/// its minimum soak time, as promotion would see them now.
#[utoipa::path(get, path = "/api/v1/journeys/{id}/validation", tag = "journeys",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = ValidationResult), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_validation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<ValidationResult>, ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let journey = state.store.get_journey(id).await?;
    let wait = journeys::stage_wait(&*state.store, &journey).await?;
    Ok(JsonOut(wait.as_validation()))
}
