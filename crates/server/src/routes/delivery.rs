//! Delivery (`/api/v1/engagements/{id}/delivery`, `…/exports`): the
//! manifest of an engagement's approved work with what blocks its export and
//! its pipeline analytics; exports (a ZIP: manifest, each artifact as JSON and
//! Markdown, the attached files, a PDF report), listed and downloaded.
//!
//! The rules are `waymark_domain::delivery`, the reading and the building
//! `waymark_engine::export`; this module is HTTP only.
//!
//! Who may do what: the team reads every delivery and exports. A client user
//! reads their own client's (another client's answer 404, as missing ones
//! do): the manifest, the blockers about what was shared with them, no
//! analytics; and downloads its exports, which are made for them. Exporting
//! is the team's (403). Review links and task leases reach none of it.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::{EngagementId, ExportId};
use waymark_engine::blobs::{BlobError, Blobs};
use waymark_engine::export::{self, Delivery, DeliveryView, ExportError, ExportRequest};
use waymark_store::{Engagement, ExportRecord, Page, StoreError};

use super::{PageParams, creating_context};
use crate::AppState;
use crate::auth::{Caller, not_found};
use crate::error::{ApiError, Problem};
use crate::extract::{Query, path_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_delivery))
        .routes(routes!(create_export, list_exports))
        .routes(routes!(download_export))
}

/// An export, with where to get it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportOut {
    #[serde(flatten)]
    pub export: ExportRecord,
    /// Its ZIP (`GET`, the same bytes every time; `ETag` is its SHA-256).
    pub download_url: String,
    /// The delivery page, with a download link for a signed-in person.
    pub page_url: String,
}

impl ExportOut {
    pub fn new(export: ExportRecord) -> Self {
        let (e, id) = (export.engagement_id, export.id);
        ExportOut {
            download_url: format!("/api/v1/engagements/{e}/exports/{id}"),
            page_url: format!("/engagements/{e}/delivery"),
            export,
        }
    }
}

/// An engagement's delivery and its exports.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// Its exports, newest first (at most 50; `GET …/exports` pages them).
    pub exports: Vec<ExportOut>,
}

/// The engagement, or 404 as for a missing one: the team sees every one, a
/// client user their own client's; review links and task leases none.
async fn engagement(state: &AppState, caller: &Caller, id: &str) -> Result<Engagement, ApiError> {
    let id: EngagementId = path_id(id)?;
    if caller.link.is_some() || caller.lease.is_some() {
        return Err(not_found("engagement", id));
    }
    super::engagements::visible_engagement(state, caller, id).await
}

fn blobs(state: &AppState) -> Result<&Blobs, ApiError> {
    state.blobs.as_ref().ok_or_else(|| {
        ApiError::Unavailable(StoreError::Refused {
            code: "no_file_storage",
            detail: "this server has no file storage configured, so it keeps no exports".into(),
        })
    })
}

fn blob_error(e: BlobError) -> ApiError {
    tracing::error!(error = %e, "object store");
    ApiError::Unavailable(StoreError::Refused {
        code: "file_storage_unavailable",
        detail: format!("{e}; try again later"),
    })
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Engine(e) => e.into(),
        ExportError::Blob(BlobError::Missing(key)) => ApiError::Conflict {
            code: "file_bytes_missing",
            detail: format!(
                "an attached file's bytes are not in the object store ({key}); delete the file \
                 and upload it again, then export again"
            ),
            allowed: None,
            extra: Default::default(),
        },
        ExportError::Blob(e) => blob_error(e),
        e => ApiError::Internal(Box::new(e)),
    }
}

/// The first page of the engagement's exports.
async fn recent_exports(state: &AppState, id: EngagementId) -> Result<Vec<ExportOut>, ApiError> {
    let page = state
        .store
        .list_exports(
            id,
            PageParams {
                limit: None,
                cursor: None,
            }
            .page()?,
        )
        .await?;
    Ok(page.items.into_iter().map(ExportOut::new).collect())
}

/// The delivery of an engagement as the caller may see it.
pub async fn delivery_of(
    state: &AppState,
    caller: &Caller,
    engagement: Engagement,
) -> Result<DeliveryOut, ApiError> {
    let id = engagement.id;
    let d = Delivery::load(state.store.as_ref(), &state.packs, engagement, false).await?;
    let delivery = match caller.client_scope() {
        Some(client) => d.for_client(client),
        None => d.view,
    };
    Ok(DeliveryOut {
        delivery,
        exports: recent_exports(state, id).await?,
    })
}

/// The delivery manifest: every approved artifact with its version, hash,
/// approvals and sources; the attached files; what blocks an export, each
/// a sentence saying what to do; the pipeline's analytics; the exports made.
#[utoipa::path(get, path = "/api/v1/engagements/{id}/delivery", tag = "delivery",
    params(("id" = String, Path, description = "An engagement id (eng_...)")),
    responses((status = 200, body = DeliveryOut), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_delivery(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<DeliveryOut>, ApiError> {
    let e = engagement(&state, &caller, &id).await?;
    Ok(JsonOut(delivery_of(&state, &caller, e).await?))
}

/// Export the delivery (the team): a ZIP of the manifest, each artifact as
/// JSON and Markdown, the attached files and a PDF report, stored and
/// recorded with an audit record. Refused (409 `not_deliverable`, with the
/// `blockers` and their sentences as `reasons`) while a needed artifact is
/// missing, unapproved or stale.
#[utoipa::path(post, path = "/api/v1/engagements/{id}/exports", tag = "delivery",
    params(("id" = String, Path, description = "An engagement id (eng_...)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for a repeated request")),
    responses((status = 201, body = ExportOut), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Something blocks the delivery (`not_deliverable`, with `blockers`), an artifact changed while the export was built (`delivery_changed`), or an attached file's bytes are missing (`file_bytes_missing`)"),
        (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, JsonOut<ExportOut>), ApiError> {
    let e = engagement(&state, &caller, &id).await?;
    caller.require_staff()?;
    let path = format!("/api/v1/engagements/{}/exports", e.id);
    let ctx = creating_context(&caller, &trace, &headers, &path, &serde_json::Value::Null)?;
    let blobs = blobs(&state)?;
    let request = ExportRequest {
        waymark_version: state.build.version.clone(),
    };
    let (created, _) = export::export(&state.store, &state.packs, blobs, e, &request, &ctx)
        .await
        .map_err(export_error)?;
    if !created.replayed {
        state.notify_change();
    }
    Ok((StatusCode::CREATED, JsonOut(ExportOut::new(created.record))))
}

/// A page of exports.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ExportListParams {
    /// At most this many items, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^exp_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
}

/// The engagement's exports, newest first.
#[utoipa::path(get, path = "/api/v1/engagements/{id}/exports", tag = "delivery",
    params(("id" = String, Path, description = "An engagement id (eng_...)"), ExportListParams),
    responses((status = 200, body = Page<ExportOut>), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_exports(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<ExportListParams>,
) -> Result<JsonOut<Page<ExportOut>>, ApiError> {
    let e = engagement(&state, &caller, &id).await?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let page = state.store.list_exports(e.id, page).await?;
    Ok(JsonOut(Page {
        items: page.items.into_iter().map(ExportOut::new).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The export of the engagement, or 404 as for a missing one.
pub async fn visible_export(
    state: &AppState,
    caller: &Caller,
    id: &str,
    export_id: &str,
) -> Result<ExportRecord, ApiError> {
    let e = engagement(state, caller, id).await?;
    let export_id: ExportId = path_id(export_id)?;
    match state.store.get_export(export_id).await {
        Ok(x) if x.engagement_id == e.id => Ok(x),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(not_found("export", export_id)),
        Err(other) => Err(other.into()),
    }
}

/// Download an export: its ZIP, the same bytes every time, with its SHA-256
/// as `ETag` (`If-None-Match` with it answers 304).
#[utoipa::path(get, path = "/api/v1/engagements/{id}/exports/{export_id}", tag = "delivery",
    params(("id" = String, Path, description = "An engagement id (eng_...)"),
        ("export_id" = String, Path, description = "An export id (exp_...)")),
    responses((status = 200, description = "The ZIP", content_type = "application/zip"),
        (status = 304, description = "Not modified: `If-None-Match` named this export's ETag"),
        (status = 404, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
pub async fn download_export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, export_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let x = visible_export(&state, &caller, &id, &export_id).await?;
    let etag = format!("\"{}\"", x.sha256);
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(header::ETAG, etag_value);
        return Ok(res);
    }
    let (size, stream) = blobs(&state)?
        .stream(&x.storage_key)
        .await
        .map_err(blob_error)?;
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    // Both ids are `[a-z0-9_]`: nothing to quote.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-{}.zip\"",
        x.engagement_id, x.id
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::ETAG, etag_value);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=0"),
    );
    Ok(res)
}
