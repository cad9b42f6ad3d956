//! Artifacts: versioned documents with a lifecycle.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use waymark_domain::artifact::{
    ArtifactType, SourceRef, check_content, check_sources, parse_note, parse_title,
};
use waymark_domain::content::diff;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::review;
use waymark_domain::{ArtifactId, ClientId, EngagementId, FieldError};
use waymark_packs::{Pack, TypeDef};
use waymark_store::{
    Artifact, ArtifactFilter, ArtifactSummary, Flagged, HistoryEntry, Lineage, NewArtifact,
    NewVersion, Page, StoreError, Version,
};

use super::{PageParams, creating_context, write_context};
use std::sync::Arc;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IfMatch, Json, Query, from_value, path_id, query_id};
use crate::facts::ArtifactFacts;
use crate::observe::TraceId;
use waymark_engine::catalog::{engagement_pack, pipeline_of};

/// An artifact to create, at version 1 in `draft`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArtifact {
    pub client_id: ClientId,
    pub engagement_id: Option<EngagementId>,
    /// The artifact type, e.g. `strategy`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub artifact_type: String,
    #[schema(value_type = crate::openapi::Name, inline)]
    pub title: String,
    /// The document: a JSON object.
    #[schema(value_type = Object)]
    pub content: Value,
    /// The exact versions it was built from.
    pub sources: Option<Vec<SourceRef>>,
    pub note: Option<String>,
}

/// New content for an artifact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteContent {
    #[schema(value_type = Object)]
    pub content: Value,
    /// Left out: the previous version's sources are kept.
    pub sources: Option<Vec<SourceRef>>,
    pub note: Option<String>,
}

/// Roll back to an old version (as a new version).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub to_version: i64,
}

/// Move an artifact to another status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub to: ArtifactStatus,
    pub reason: Option<String>,
    /// Admins only, with a `reason`: approve past the type's approval policy,
    /// recorded as an override in history and the audit log.
    #[serde(default, rename = "override")]
    pub override_policy: bool,
}

/// An artifact as a write answers it: with the warnings of its type's rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactWritten {
    #[serde(flatten)]
    pub artifact: Artifact,
    /// Rule warnings; they never block a write.
    pub warnings: Vec<String>,
    /// Artifacts this write made stale downstream (the stale cascade).
    pub flagged: Vec<Flagged>,
}

/// Content to check against a type, without writing anything.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    #[serde(rename = "type")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub artifact_type: String,
    #[schema(value_type = Object)]
    pub content: Value,
    /// The pack declaring the type; needed only when several packs declare it.
    pub pack: Option<String>,
}

/// What a write of this content would answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// No schema errors.
    pub ok: bool,
    /// The pack whose type was used.
    pub pack: String,
    /// Schema errors, with JSON Pointers into the content.
    pub errors: Vec<FieldError>,
    /// Rule warnings.
    pub warnings: Vec<String>,
}

/// How far to walk a lineage.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LineageQuery {
    /// At most this many artifacts each way, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// A type's rules in an engagement's pack.
struct TypeRules {
    pack: Arc<Pack>,
    index: usize,
}

impl TypeRules {
    fn def(&self) -> &TypeDef {
        &self.pack.types[self.index]
    }
}

/// The journey template an artifact's type names (`journey:` in its pack).
pub(crate) async fn journey_of(
    state: &AppState,
    a: &ArtifactSummary,
) -> Result<Option<String>, ApiError> {
    Ok(rules_of(state, a)
        .await?
        .and_then(|r| r.def().journey.clone()))
}

/// The rules for creating `ty` in `engagement` (which must be the client's):
/// the type must be one of its pack's.
async fn rules_for_new(
    state: &AppState,
    client_id: ClientId,
    engagement: Option<EngagementId>,
    ty: &str,
) -> Result<Option<TypeRules>, ApiError> {
    let Some(eng) = engagement else {
        return Ok(None);
    };
    let engagement = match state.store.get_engagement(eng).await {
        Ok(e) if e.client_id == client_id => e,
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::invalid(FieldError::new(
                "/engagement_id",
                format!("no engagement {eng} for client {client_id}"),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let pack = engagement_pack(&state.packs, &engagement.pack).await?;
    match pack.types.iter().position(|t| t.name == ty) {
        Some(index) => Ok(Some(TypeRules { pack, index })),
        None => Err(ApiError::invalid(FieldError::new(
            "/type",
            format!(
                "pack {} has no type `{ty}`; its types are {}",
                pack.name,
                pack.type_names().join(", ")
            ),
        ))),
    }
}

/// The rules of an existing artifact: none outside an engagement, or when its
/// pack no longer declares its type.
async fn rules_of(state: &AppState, a: &ArtifactSummary) -> Result<Option<TypeRules>, ApiError> {
    rules_for(state, a.engagement_id, &a.artifact_type).await
}

/// The property names of an artifact type's schema, in the pack's order (none
/// outside a pack): the order its document's sections are shown in.
pub async fn section_order(state: &AppState, a: &ArtifactSummary) -> Result<Vec<String>, ApiError> {
    Ok(rules_of(state, a)
        .await?
        .and_then(|r| {
            r.def()
                .schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default())
}

/// The rule warnings of an artifact's content under its type's rules (none
/// outside a pack): what a write of it answers, for pages to show.
pub async fn warnings_of(state: &AppState, a: &Artifact) -> Result<Vec<String>, ApiError> {
    Ok(rules_of(state, &a.summary)
        .await?
        .map(|r| r.def().check(&a.content, "/content").warnings)
        .unwrap_or_default())
}

/// The rules of `artifact_type` in an engagement's pack.
async fn rules_for(
    state: &AppState,
    engagement_id: Option<EngagementId>,
    artifact_type: &str,
) -> Result<Option<TypeRules>, ApiError> {
    let Some(eng) = engagement_id else {
        return Ok(None);
    };
    let pack_name = match state.facts.engagement_pack(eng) {
        Some(p) => p,
        None => {
            let engagement = state.store.get_engagement(eng).await?;
            state
                .facts
                .remember_engagement_pack(eng, engagement.pack.clone());
            engagement.pack
        }
    };
    let pack = engagement_pack(&state.packs, &pack_name).await?;
    Ok(pack
        .types
        .iter()
        .position(|t| t.name == artifact_type)
        .map(|index| TypeRules { pack, index }))
}

/// What a staff write needs of an artifact before it writes (its type and
/// engagement, for the rules), remembered after the first read: they never
/// change. A client's caller reads the artifact, as ever, for the 404 it may
/// not see and the 403 it may not write.
async fn writable_facts(
    state: &AppState,
    caller: &Caller,
    id: ArtifactId,
) -> Result<ArtifactFacts, ApiError> {
    if caller.is_staff()
        && let Some(facts) = state.facts.artifact(id)
    {
        return Ok(facts);
    }
    let current = visible_summary(state, caller, id).await?;
    caller.require_staff()?;
    let facts = ArtifactFacts::from(&current);
    state.facts.remember_artifact(id, facts.clone());
    Ok(facts)
}

/// The artifact, or 404 (word for word as for a missing one) when the caller may
/// not see it.
pub async fn visible_artifact(
    state: &AppState,
    caller: &Caller,
    id: ArtifactId,
) -> Result<Artifact, ApiError> {
    let a = state.store.get_artifact(id).await?;
    caller.check_artifact(&a.summary)?;
    Ok(a)
}

/// The artifact without its content, or 404 as [`visible_artifact`] answers.
pub async fn visible_summary(
    state: &AppState,
    caller: &Caller,
    id: ArtifactId,
) -> Result<ArtifactSummary, ApiError> {
    let a = state.store.get_artifact_summary(id).await?;
    caller.check_artifact(&a)?;
    Ok(a)
}

/// The approval policy of an artifact's type (the default outside a pack).
pub async fn policy_of(
    state: &AppState,
    a: &ArtifactSummary,
) -> Result<waymark_domain::review::ApprovalPolicy, ApiError> {
    Ok(rules_of(state, a)
        .await?
        .map(|r| r.def().approval)
        .unwrap_or_default())
}

/// Checks content against the rules: 422 on schema errors, else the warnings.
fn check(rules: Option<&TypeRules>, content: &Value) -> Result<Vec<String>, ApiError> {
    let Some(r) = rules else {
        return Ok(vec![]);
    };
    let checked = r.def().check(content, "/content");
    if checked.errors.is_empty() {
        Ok(checked.warnings)
    } else {
        Err(ApiError::Invalid {
            detail: format!(
                "the content does not match the {} schema of pack {}",
                r.def().name,
                r.pack.name
            ),
            errors: checked.errors,
        })
    }
}

/// Filters of the artifact list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ArtifactQuery {
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    #[param(value_type = waymark_domain::EngagementId, required = false)]
    pub engagement_id: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub artifact_type: Option<String>,
    #[param(value_type = waymark_domain::ArtifactStatus, required = false)]
    pub status: Option<String>,
    /// Words to find in the title or content, read as `GET /api/v1/search`
    /// reads them (only artifacts; the list keeps its order and cursor).
    pub q: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `from` and `to` of a diff.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    /// Default: the version before `to`.
    pub from: Option<i64>,
    /// Default: the latest version.
    pub to: Option<i64>,
}

/// The RFC 6902 operations that turn version `from` into version `to`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Diff {
    pub from: i64,
    pub to: i64,
    #[schema(value_type = Vec<Object>)]
    pub patch: Vec<Value>,
}

fn with_etag<T: Serialize>(status: StatusCode, version: i64, body: T) -> Response {
    let mut res = (status, JsonOut(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

fn written(
    status: StatusCode,
    artifact: Artifact,
    warnings: Vec<String>,
    flagged: Vec<Flagged>,
) -> Response {
    let version = artifact.summary.version;
    with_etag(
        status,
        version,
        ArtifactWritten {
            artifact,
            warnings,
            flagged,
        },
    )
}

fn check_sources_opt(
    sources: Option<&[SourceRef]>,
    own: Option<ArtifactId>,
) -> Result<(), FieldError> {
    match sources {
        Some(s) => check_sources(s, own, "/sources"),
        None => Ok(()),
    }
}

impl CreateArtifact {
    fn validate(self) -> Result<NewArtifact, FieldError> {
        let artifact_type = ArtifactType::parse(&self.artifact_type, "/type")?;
        check_content(&self.content, "/content")?;
        check_sources_opt(self.sources.as_deref(), None)?;
        Ok(NewArtifact {
            client_id: self.client_id,
            engagement_id: self.engagement_id,
            artifact_type: artifact_type.as_str().to_owned(),
            title: parse_title(&self.title, "/title")?,
            content: self.content,
            sources: self.sources,
            note: parse_note(self.note.as_deref(), "/note")?,
            provenance: "human".into(),
            pipeline: None,
        })
    }
}

/// Create an artifact (version 1, `draft`).
#[utoipa::path(post, path = "/api/v1/artifacts", tag = "artifacts", request_body = CreateArtifact,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = ArtifactWritten, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_artifact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let (artifact, warnings) = create(&state, &caller, &trace, &headers, body).await?;
    Ok(written(StatusCode::CREATED, artifact, warnings, vec![]))
}

/// Creates an artifact from a request body (the API's and the form page's):
/// the artifact and its rule warnings.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    trace: &TraceId,
    headers: &HeaderMap,
    body: Value,
) -> Result<(Artifact, Vec<String>), ApiError> {
    caller.require_staff()?;
    let ctx = creating_context(caller, trace, headers, "/api/v1/artifacts", &body)?;
    let input: CreateArtifact = from_value(body)?;
    let mut new = input.validate().map_err(ApiError::invalid)?;
    let rules = rules_for_new(state, new.client_id, new.engagement_id, &new.artifact_type).await?;
    let warnings = check(rules.as_ref(), &new.content)?;
    new.pipeline = rules.as_ref().map(|r| pipeline_of(r.def()));
    let created = state.store.create_artifact(new, &ctx).await?;
    state.facts.remember_artifact(
        created.record.summary.id,
        ArtifactFacts::from(&created.record.summary),
    );
    Ok((created.record, warnings))
}

/// List artifacts, newest first, without their content.
#[utoipa::path(get, path = "/api/v1/artifacts", tag = "artifacts", params(ArtifactQuery),
    responses((status = 200, body = Page<ArtifactSummary>)), security(("bearer" = [])))]
pub async fn list_artifacts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ArtifactQuery>,
) -> Result<JsonOut<Page<ArtifactSummary>>, ApiError> {
    let mut filter = ArtifactFilter {
        client_id: q
            .client_id
            .as_deref()
            .map(|c| query_id("client_id", c))
            .transpose()?,
        engagement_id: q
            .engagement_id
            .as_deref()
            .map(|e| query_id("engagement_id", e))
            .transpose()?,
        artifact_type: q
            .artifact_type
            .as_deref()
            .map(|t| {
                ArtifactType::parse(t, "type")
                    .map(|t| t.as_str().to_owned())
                    .map_err(|e| {
                        ApiError::bad_request("invalid_query", format!("type {}", e.message))
                    })
            })
            .transpose()?,
        status: q
            .status
            .as_deref()
            .map(|s| {
                s.parse::<ArtifactStatus>()
                    .map_err(|e| ApiError::bad_request("invalid_query", format!("status: {e}")))
            })
            .transpose()?,
        q: q.q.filter(|s| !s.trim().is_empty()),
        shared_with: None,
    };
    if !caller.is_staff() {
        // A client user sees what was shared with their client, and nothing of
        // another client's, not even an empty page that says it exists.
        match caller.client_scope() {
            Some(own) if filter.client_id.is_none_or(|c| c == own) => {
                filter.shared_with = Some(own);
            }
            _ => {
                return Ok(JsonOut(Page {
                    items: vec![],
                    next_cursor: None,
                }));
            }
        }
    }
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    Ok(JsonOut(state.store.list_artifacts(filter, page).await?))
}

/// Get an artifact with its latest version; `ETag` is that version.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = Artifact, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_artifact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let artifact = visible_artifact(&state, &caller, id).await?;
    Ok(with_etag(
        StatusCode::OK,
        artifact.summary.version,
        artifact,
    ))
}

/// Write a new version. `If-Match` must name the latest version.
#[utoipa::path(put, path = "/api/v1/artifacts/{id}/content", tag = "artifacts", request_body = WriteContent,
    params(("id" = String, Path, description = "An artifact id (art_...)"),
        ("If-Match" = String, Header, description = "\"<version>\" you read")),
    responses((status = 200, body = ArtifactWritten), (status = 409, body = Problem, description = "Status does not allow editing"),
        (status = 412, body = Problem), (status = 428, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn write_content(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(body): Json<WriteContent>,
) -> Result<Response, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let current = writable_facts(&state, &caller, id).await?;
    check_content(&body.content, "/content").map_err(ApiError::invalid)?;
    check_sources_opt(body.sources.as_deref(), Some(id)).map_err(ApiError::invalid)?;
    let rules = rules_for(&state, current.engagement_id, &current.artifact_type).await?;
    let warnings = check(rules.as_ref(), &body.content)?;
    let write = NewVersion {
        content: body.content,
        sources: body.sources,
        note: parse_note(body.note.as_deref(), "/note").map_err(ApiError::invalid)?,
        provenance: "human".into(),
        pipeline: rules.as_ref().map(|r| pipeline_of(r.def())),
    };
    let ctx = write_context(&caller, &trace)?;
    let w = state.store.write_content(id, expected, write, &ctx).await?;
    Ok(written(StatusCode::OK, w.artifact, warnings, w.flagged))
}

/// List an artifact's versions, oldest first.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/versions", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)"), PageParams),
    responses((status = 200, body = Page<Version>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn list_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<Version>>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    Ok(JsonOut(
        state.store.list_versions(id, params.page()?).await?,
    ))
}

/// Get one version.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/versions/{n}", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)"), ("n" = i64, Path, description = "A version number")),
    responses((status = 200, body = Version), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, n)): Path<(String, String)>,
) -> Result<JsonOut<Version>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    let n: i64 = n.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::NotFound(format!(
            "`{}` is not a version number",
            n.chars().take(20).collect::<String>()
        ))
    })?;
    Ok(JsonOut(state.store.get_version(id, n).await?))
}

/// Compare two versions as an RFC 6902 JSON Patch.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/diff", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)"), DiffQuery),
    responses((status = 200, body = Diff), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn diff_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<JsonOut<Diff>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let latest = visible_artifact(&state, &caller, id).await?.summary.version;
    let to = q.to.unwrap_or(latest);
    let from = q.from.unwrap_or((to - 1).max(1));
    let a = state.store.get_version(id, from).await?;
    let b = if from == to {
        a.clone()
    } else {
        state.store.get_version(id, to).await?
    };
    Ok(JsonOut(Diff {
        from,
        to,
        patch: diff(&a.content, &b.content),
    }))
}

/// Write a new version whose content equals an old one. Needs `If-Match`.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/rollback", tag = "artifacts", request_body = Rollback,
    params(("id" = String, Path, description = "An artifact id (art_...)"),
        ("If-Match" = String, Header, description = "\"<version>\" you read")),
    responses((status = 200, body = ArtifactWritten), (status = 409, body = Problem), (status = 412, body = Problem),
        (status = 428, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    IfMatch(expected): IfMatch,
    Json(body): Json<Rollback>,
) -> Result<Response, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let current = visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    if body.to_version < 1 {
        return Err(ApiError::invalid(FieldError::new(
            "/to_version",
            "versions start at 1",
        )));
    }
    let ctx = write_context(&caller, &trace)?;
    let rules = rules_of(&state, &current.summary).await?;
    let w = state
        .store
        .rollback(
            id,
            expected,
            body.to_version,
            rules.as_ref().map(|r| pipeline_of(r.def())),
            &ctx,
        )
        .await?;
    let warnings = rules
        .map(|r| r.def().check(&w.artifact.content, "/content").warnings)
        .unwrap_or_default();
    Ok(written(StatusCode::OK, w.artifact, warnings, w.flagged))
}

/// Move an artifact along its lifecycle; 409 with `allowed` when refused.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/transitions", tag = "artifacts", request_body = Transition,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = Artifact), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn transition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<Transition>,
) -> Result<Response, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let current = visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    let reason = parse_note(body.reason.as_deref(), "/reason").map_err(ApiError::invalid)?;
    let rules = rules_of(&state, &current.summary).await?;
    let kind = if body.to == ArtifactStatus::Approved {
        let policy = rules.as_ref().map(|r| r.def().approval).unwrap_or_default();
        review::check_direct_approval(
            &policy,
            current.summary.status,
            caller.role == waymark_store::Role::Admin,
            body.override_policy,
            reason.as_deref(),
        )
        .map_err(|e| match e {
            review::DirectApprovalError::OverrideWithoutReason => {
                ApiError::invalid(FieldError::new("/reason", e.to_string()))
            }
            e => ApiError::Forbidden(e.to_string().replace("{id}", &id.to_string())),
        })?
    } else if body.override_policy {
        return Err(ApiError::invalid(FieldError::new(
            "/override",
            "override applies to moving an artifact to approved",
        )));
    } else {
        review::DirectApproval::Plain
    };
    if let Some(journey) = current.journey_id {
        return Err(ApiError::Conflict {
            code: "journey_linked",
            detail: format!(
                "artifact {id} is implemented by journey {journey} and moves with it: send the journey's events \
                 (POST /api/v1/journeys/{journey}/events)"
            ),
            allowed: None,
            extra: Box::new(
                [("journey_id".to_owned(), Value::from(journey.to_string()))]
                    .into_iter()
                    .collect(),
            ),
        });
    }
    let ctx = write_context(&caller, &trace)?;
    if body.to == ArtifactStatus::Implemented
        && let Some(template) = rules.as_ref().and_then(|r| r.def().journey.clone())
    {
        return Err(ApiError::Conflict {
            code: "implement_instead",
            detail: format!(
                "a {} is implemented as a {template} journey: POST /api/v1/artifacts/{id}/implement creates it",
                current.summary.artifact_type
            ),
            allowed: None,
            extra: Default::default(),
        });
    }
    let artifact = state
        .store
        .transition(
            id,
            body.to,
            reason,
            rules.as_ref().map(|r| pipeline_of(r.def())),
            kind == review::DirectApproval::Override,
            &ctx,
        )
        .await?;
    Ok(with_etag(
        StatusCode::OK,
        artifact.summary.version,
        artifact,
    ))
}

/// Everything that happened to an artifact, oldest first.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/history", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)"), PageParams),
    responses((status = 200, body = Page<HistoryEntry>), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<HistoryEntry>>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    Ok(JsonOut(state.store.history(id, params.page()?).await?))
}

/// What an artifact was built from (upstream, at the versions used) and what was
/// built from it (downstream, at their latest versions).
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/lineage", tag = "artifacts",
    params(("id" = String, Path, description = "An artifact id (art_...)"), LineageQuery),
    responses((status = 200, body = Lineage), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn lineage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Result<JsonOut<Lineage>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    // Lineage shows unshared drafts around an artifact: the team's view only.
    caller.require_staff()?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be from 1 to 10000",
        ));
    }
    Ok(JsonOut(state.store.lineage(id, limit).await?))
}

/// Check content against a type's schema and rules without writing anything.
#[utoipa::path(post, path = "/api/v1/artifacts/validate", tag = "artifacts", request_body = ValidateRequest,
    responses((status = 200, body = Validation), (status = 422, body = Problem, description = "Unknown type or pack")),
    security(("bearer" = [])))]
pub async fn validate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ValidateRequest>,
) -> Result<JsonOut<Validation>, ApiError> {
    caller.require_staff()?;
    let ty = ArtifactType::parse(&body.artifact_type, "/type").map_err(ApiError::invalid)?;
    let candidates: Vec<Arc<Pack>> = match &body.pack {
        Some(name) => vec![state.packs.get(name).await?.ok_or_else(|| {
            ApiError::invalid(FieldError::new(
                "/pack",
                format!("no pack `{}`", name.chars().take(64).collect::<String>()),
            ))
        })?],
        None => state
            .packs
            .list()
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.artifact_type(ty.as_str()).is_some())
            .collect(),
    };
    let pack = match candidates.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ApiError::invalid(FieldError::new(
                "/type",
                match &body.pack {
                    Some(p) => format!("pack {p} has no type `{}`", ty.as_str()),
                    None => format!("no pack declares type `{}`", ty.as_str()),
                },
            )));
        }
        several => {
            return Err(ApiError::invalid(FieldError::new(
                "/pack",
                format!(
                    "several packs declare type `{}` ({}); name one in `pack`",
                    ty.as_str(),
                    several
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )));
        }
    };
    let def = pack.artifact_type(ty.as_str()).ok_or_else(|| {
        ApiError::invalid(FieldError::new(
            "/type",
            format!("pack {} has no type `{}`", pack.name, ty.as_str()),
        ))
    })?;
    let checked = def.check(&body.content, "/content");
    Ok(JsonOut(Validation {
        ok: checked.errors.is_empty(),
        pack: pack.name.clone(),
        errors: checked.errors,
        warnings: checked.warnings,
    }))
}
