//! Journeys over HTTP: templates, journeys and their events, metric
//! observations, sign-offs and the current stage's validation. The decisions
//! are in `waymark_engine::journeys` and the domain; handlers parse and answer.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::analytics::JourneyAnalytics;
use waymark_domain::criteria::{self, Observation, Trigger, ValidationResult};
use waymark_domain::journey::{Event, JourneyTemplate};
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, ClientId, FieldError, JourneyId};
use waymark_store::{
    Journey, JourneyHistoryEntry, MetricRecord, NewJourney, NewObservation, Page, Signoff,
};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, from_value, path_id};
use crate::observe::TraceId;
use waymark_engine::catalog;
use waymark_engine::journeys::{self, AutoRollback, EventAsk, JourneyDetail, Operations};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, save_template))
        .routes(routes!(create_journey, list_journeys))
        .routes(routes!(get_journey))
        .routes(routes!(journey_event))
        .routes(routes!(record_metrics))
        .routes(routes!(sign_off))
        .routes(routes!(rate_stage, list_ratings))
        .routes(routes!(get_validation))
        .routes(routes!(get_history))
        .routes(routes!(implement))
        .routes(routes!(client_operations))
        .routes(routes!(journey_analytics))
}

/// A journey template and where it comes from.
#[derive(Debug, Serialize)]
pub struct TemplateView {
    #[serde(flatten)]
    pub template: JourneyTemplate,
    /// The pack that ships it, or `api` for one saved over the API.
    pub source: String,
}

/// The template's own schema with `source` beside its fields: `allOf` would
/// not do, as a template refuses fields it does not know.
impl utoipa::PartialSchema for TemplateView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
        let RefOr::T(Schema::Object(template)) = JourneyTemplate::schema() else {
            unreachable!("a journey template's schema is an object")
        };
        let mut view: Object = template;
        view.additional_properties = None;
        view.description = Some("A journey template and where it comes from.".into());
        view.properties.insert(
            "source".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "The pack that ships it, or `api` for one saved over the API.",
                ))
                .into(),
        );
        view.required.push("source".into());
        RefOr::T(Schema::Object(view))
    }
}

impl ToSchema for TemplateView {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <JourneyTemplate as ToSchema>::schemas(schemas);
    }
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
    let items = catalog::journey_templates(&state.packs, &*state.store)
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
    headers: HeaderMap,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<TemplateView>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        "/api/v1/journey-templates",
        &body,
    )?;
    let template: JourneyTemplate = from_value(body)?;
    let problems = waymark_packs::check_journey(&template);
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            detail: format!("the template has {} problem(s); see errors", problems.len()),
            errors: problems,
        });
    }
    let existing = catalog::journey_templates(&state.packs, &*state.store).await?;
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
    #[schema(value_type = waymark_domain::ClientId)]
    pub client_id: String,
    /// A template's name (`GET /api/v1/journey-templates`).
    #[schema(min_length = 1)]
    pub template: String,
    /// Shown to people; the template's title by default.
    pub name: Option<String>,
    /// The approved artifact it implements: it becomes `implemented` (the
    /// implementation bridge; `POST /api/v1/artifacts/{id}/implement` does
    /// the same with the type's template).
    #[schema(value_type = Option<waymark_domain::ArtifactId>)]
    pub source_artifact_id: Option<String>,
    /// What it starts with: an object, the first milestone's input.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
}

/// Create a journey for a client, in `pending`; the `start` event enters its
/// first stage.
#[utoipa::path(post, path = "/api/v1/journeys", tag = "journeys", request_body = CreateJourney,
    responses((status = 201, body = JourneyDetail), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_journey(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<JourneyDetail>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/journeys", &body)?;
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
    create(
        &state,
        &ctx,
        Ask {
            client_id,
            template: req.template,
            name: req.name,
            source_artifact_id,
            input: req.input,
        },
    )
    .await
}

/// A journey asked for, before the template is found.
struct Ask {
    client_id: ClientId,
    template: String,
    name: Option<String>,
    source_artifact_id: Option<ArtifactId>,
    input: Option<Value>,
}

/// Finds the template, checks the name and input, creates the journey.
async fn create(
    state: &AppState,
    ctx: &waymark_store::WriteContext,
    ask: Ask,
) -> Result<(StatusCode, JsonOut<JourneyDetail>), ApiError> {
    let templates = catalog::journey_templates(&state.packs, &*state.store).await?;
    let template = templates
        .iter()
        .find(|(t, _)| t.name == ask.template)
        .map(|(t, _)| t.clone())
        .ok_or_else(|| {
            ApiError::invalid(FieldError::new(
                "/template",
                format!(
                    "no journey template `{}`; the templates are {}",
                    ask.template.chars().take(100).collect::<String>(),
                    templates
                        .iter()
                        .map(|(t, _)| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        })?;
    let name = match ask.name.map(|n| n.trim().to_owned()) {
        Some(n) if !n.is_empty() && n.chars().count() <= 200 => n,
        Some(_) => {
            return Err(ApiError::invalid(FieldError::new(
                "/name",
                "must be 1-200 characters",
            )));
        }
        None => template.title.clone(),
    };
    let input = match ask.input {
        None | Some(Value::Null) => Value::Null,
        Some(v @ Value::Object(_)) => {
            if serde_json::to_string(&v).map_or(0, |s| s.len()) > waymark_domain::work::MAX_PAYLOAD
            {
                return Err(ApiError::invalid(FieldError::new(
                    "/input",
                    format!(
                        "is larger than {} bytes; store big inputs as artifacts and pass their ids",
                        waymark_domain::work::MAX_PAYLOAD
                    ),
                )));
            }
            v
        }
        Some(_) => {
            return Err(ApiError::invalid(FieldError::new(
                "/input",
                "must be an object (the first milestone's input)",
            )));
        }
    };
    let created = state
        .store
        .create_journey(
            NewJourney {
                client_id: ask.client_id,
                name,
                template,
                source_artifact_id: ask.source_artifact_id,
                input,
                queue_item: None,
            },
            ctx,
        )
        .await?;
    // A replay answers as the first request did.
    let status = StatusCode::CREATED;
    state.notify_change();
    Ok((
        status,
        JsonOut(journeys::detail(&*state.store, created.record.id).await?),
    ))
}

/// How to implement an artifact; every field may be left out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplementRequest {
    /// The journey template; the one the artifact's type names by default.
    pub template: Option<String>,
    /// The journey's name; the template's title and the artifact's by default.
    pub name: Option<String>,
    /// What the journey starts with (an object).
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
}

/// The implementation bridge: turn an approved artifact into its journey (the
/// template its type names). The artifact becomes `implemented` and links to
/// the journey; it goes `active` when the journey starts and `completed` with
/// it. A body is optional.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/implement", tag = "journeys", request_body = ImplementRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 201, body = JourneyDetail), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Not approved, or its type names no journey template"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn implement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    crate::extract::MaybeJson(body): crate::extract::MaybeJson<Value>,
) -> Result<(StatusCode, JsonOut<JourneyDetail>), ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let artifact = super::artifacts::visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/artifacts/{id}/implement"),
        &body,
    )?;
    let req: ImplementRequest = from_value(body)?;
    let a = &artifact.summary;
    if let Some(journey) = artifact.journey_id {
        // A replay of the same request answers the journey it created.
        if ctx.idempotency.is_none() {
            return Err(ApiError::Conflict {
                code: "already_implemented",
                detail: format!("artifact {id} is already implemented by journey {journey}"),
                allowed: None,
                extra: Box::new(
                    [("journey_id".to_owned(), Value::from(journey.to_string()))]
                        .into_iter()
                        .collect(),
                ),
            });
        }
    } else if a.status != ArtifactStatus::Approved {
        return Err(ApiError::Conflict {
            code: "not_approved",
            detail: format!(
                "artifact {id} is {}; only an approved artifact is implemented: share it and have it approved first",
                a.status
            ),
            allowed: None,
            extra: Default::default(),
        });
    }
    let template = match req.template {
        Some(t) => t,
        None => super::artifacts::journey_of(&state, a).await?.ok_or_else(|| ApiError::Conflict {
            code: "no_journey_template",
            detail: format!(
                "type {} names no journey template (`journey:` in its pack); name one in `template`",
                a.artifact_type
            ),
            allowed: None,
            extra: Default::default(),
        })?,
    };
    create(
        &state,
        &ctx,
        Ask {
            client_id: a.client_id,
            name: req.name.or_else(|| Some(a.title.clone())),
            template,
            source_artifact_id: Some(id),
            input: req.input,
        },
    )
    .await
}

/// Which journeys to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JourneyQuery {
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    pub template: Option<String>,
}

/// A page of journeys.
#[derive(Debug, Serialize, ToSchema)]
pub struct JourneyPage {
    pub items: Vec<Journey>,
    pub next_cursor: Option<String>,
}

/// Journeys, newest first. A client user sees their client's journeys (their
/// progress); the team sees every client's.
#[utoipa::path(get, path = "/api/v1/journeys", tag = "journeys", params(JourneyQuery, PageParams),
    responses((status = 200, body = JourneyPage), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_journeys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<JourneyQuery>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Journey>>, ApiError> {
    let mut client = q
        .client_id
        .as_deref()
        .map(path_id::<ClientId>)
        .transpose()?;
    if !caller.is_staff() {
        let Some(own) = caller.client_scope().filter(|c| caller.sees_client(*c)) else {
            return Err(ApiError::Forbidden(
                "a review link reaches its artifact only; sign in as a client user to follow journeys".into(),
            ));
        };
        if let Some(c) = client {
            caller.check_client(c)?;
        }
        client = Some(own);
    }
    Ok(JsonOut(
        state
            .store
            .list_journeys(client, q.template, p.page()?)
            .await?,
    ))
}

/// A journey with its units of work, history and sign-offs (for a client
/// user, one of their client's).
#[utoipa::path(get, path = "/api/v1/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = JourneyDetail), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_journey(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<JourneyDetail>, ApiError> {
    let id: JourneyId = path_id(&id)?;
    visible_journey(&state, &caller, id).await?;
    Ok(JsonOut(journeys::detail(&*state.store, id).await?))
}

/// The journey, when the caller may see it: the team, or a client user of its
/// client (404 otherwise, as for a missing one).
async fn visible_journey(
    state: &AppState,
    caller: &Caller,
    id: JourneyId,
) -> Result<Journey, ApiError> {
    let journey = state.store.get_journey(id).await?;
    if !caller.sees_client(journey.client_id) {
        return Err(crate::auth::not_found("journey", id));
    }
    Ok(journey)
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
    /// `complete` of a playbook: one of its outcomes.
    pub outcome: Option<String>,
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
    let ctx = write_context(&caller, &trace)?;
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
            outcome: req.outcome,
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
    headers: HeaderMap,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<MetricsAnswer>), ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/journeys/{id}/metrics"),
        &body,
    )?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<Signoff>), ApiError> {
    caller.require_staff()?;
    let id: JourneyId = path_id(&id)?;
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/journeys/{id}/signoffs"),
        &body,
    )?;
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

/// A rating of a completed stage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
    /// The stage's id; the journey must have completed it.
    pub stage: String,
    /// 1 (poor) to 5 (excellent).
    #[schema(minimum = 1, maximum = 5)]
    pub score: i64,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// A journey's ratings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingList {
    pub items: Vec<waymark_store::Rating>,
}

/// Rate a completed stage, 1 to 5 with a comment (the client's people only,
/// once each; a rating is not changed afterwards).
#[utoipa::path(post, path = "/api/v1/journeys/{id}/ratings", tag = "journeys", request_body = RatingRequest,
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 201, body = waymark_store::Rating), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Rated already, or the stage is not completed"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn rate_stage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    crate::extract::Json(body): crate::extract::Json<Value>,
) -> Result<(StatusCode, JsonOut<waymark_store::Rating>), ApiError> {
    let id: JourneyId = path_id(&id)?;
    let journey = visible_journey(&state, &caller, id).await?;
    if caller.is_staff() || caller.user_id.is_none() {
        return Err(ApiError::Forbidden(
            "stages are rated by the client's people, signed in as themselves".into(),
        ));
    }
    let req: RatingRequest = from_value(body)?;
    let checked = waymark_domain::rating::check(req.score, req.comment.as_deref())
        .map_err(ApiError::invalid)?;
    let stage = req.stage.trim().to_owned();
    if !journey.definition.stages.iter().any(|s| s.id == stage) {
        return Err(ApiError::invalid(FieldError::new(
            "/stage",
            format!(
                "journey {id} has no stage `{}`; its stages are {}",
                stage.chars().take(64).collect::<String>(),
                journey.stages.join(", ")
            ),
        )));
    }
    let history = state.store.journey_history(id).await?;
    if !waymark_domain::rating::stage_completed(
        &stage,
        history.iter().map(|h| (h.event, h.from.as_str())),
    ) {
        return Err(ApiError::Conflict {
            code: "stage_not_completed",
            detail: format!("the stage {stage} is not completed yet; rate it once it is"),
            allowed: None,
            extra: Default::default(),
        });
    }
    let ctx = write_context(&caller, &trace)?;
    let rating = state
        .store
        .rate_stage(
            waymark_store::NewRating {
                journey_id: id,
                stage,
                score: checked.score,
                comment: checked.comment,
            },
            &ctx,
        )
        .await?;
    state.notify_change();
    Ok((StatusCode::CREATED, JsonOut(rating)))
}

/// A journey's ratings, oldest first (the team and the client's people).
#[utoipa::path(get, path = "/api/v1/journeys/{id}/ratings", tag = "journeys",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = RatingList), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_ratings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<RatingList>, ApiError> {
    let id: JourneyId = path_id(&id)?;
    visible_journey(&state, &caller, id).await?;
    Ok(JsonOut(RatingList {
        items: state.store.journey_ratings(id).await?,
    }))
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

/// Every transition of a journey, oldest first, with the validation that
/// allowed it.
#[utoipa::path(get, path = "/api/v1/journeys/{id}/history", tag = "journeys",
    params(("id" = String, Path, description = "A journey id (jrn_...)")),
    responses((status = 200, body = HistoryList), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<HistoryList>, ApiError> {
    let id: JourneyId = path_id(&id)?;
    visible_journey(&state, &caller, id).await?;
    Ok(JsonOut(HistoryList {
        items: state.store.journey_history(id).await?,
    }))
}

/// A journey's transitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryList {
    pub items: Vec<JourneyHistoryEntry>,
}

/// Every journey of a client: stage, progress, open tasks and incidents, and
/// the last validation of its current stage.
#[utoipa::path(get, path = "/api/v1/clients/{id}/operations", tag = "journeys",
    params(("id" = String, Path, description = "A client id (cli_...)")),
    responses((status = 200, body = Operations), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn client_operations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<Operations>, ApiError> {
    caller.require_staff()?;
    let id: ClientId = path_id(&id)?;
    Ok(JsonOut(journeys::operations(&*state.store, id).await?))
}

/// Which template's analytics.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AnalyticsQuery {
    /// A journey template's name.
    #[param(required = true)]
    pub template: Option<String>,
}

/// Analytics of a journey template from the recorded history of its newest
/// 10,000 journeys: journeys started, completed, cancelled; time in each
/// stage (median, p90); time to the last stage; rollback rate; exit-criteria
/// first-pass rate; the bottleneck stage.
#[utoipa::path(get, path = "/api/v1/analytics/journeys", tag = "journeys", params(AnalyticsQuery),
    responses((status = 200, body = JourneyAnalytics), (status = 400, body = Problem)), security(("bearer" = [])))]
pub async fn journey_analytics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AnalyticsQuery>,
) -> Result<JsonOut<JourneyAnalytics>, ApiError> {
    caller.require_staff()?;
    let templates = catalog::journey_templates(&state.packs, &*state.store).await?;
    let names = || {
        templates
            .iter()
            .map(|(t, _)| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = q.template.map(|t| t.trim().to_owned()) else {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("name a template: ?template= one of {}", names()),
        ));
    };
    let runs = state.store.template_runs(&name, 10_000).await?;
    // The template as the catalog has it, else as its newest journey ran it.
    let template = templates
        .iter()
        .map(|(t, _)| t)
        .find(|t| t.name == name)
        .or_else(|| runs.first().map(|r| &r.journey.definition))
        .cloned()
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "template: no journey template `{}`; the templates are {}",
                    name.chars().take(100).collect::<String>(),
                    names()
                ),
            )
        })?;
    let mut report = journeys::analytics(&template, &runs);
    report.ratings =
        waymark_domain::rating::analytics(&state.store.template_ratings(&name, 100_000).await?);
    Ok(JsonOut(report))
}
