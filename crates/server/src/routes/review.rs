//! Review: share with the client, comment (on the whole or a section, in threads,
//! internal or not), approve a version, reject with a reason, and review links
//! for reviewers without an account.
//!
//! Every handler first makes sure the caller may see the artifact (404 word for
//! word as a missing one otherwise), then checks what they may do with it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::review::{Decision, parse_body};
use waymark_domain::{ArtifactId, CommentId, FieldError, ReviewLinkId};
use waymark_store::{Artifact, Comment, NewComment, NewReviewLink, Page, ReviewLink, ReviewState};

use super::artifacts::{policy_of, visible_artifact};
use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::{Caller, not_found, sign_link};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, path_id};
use crate::observe::TraceId;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(share))
        .routes(routes!(review_state))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(add_comment, list_comments))
        .routes(routes!(resolve_comment))
        .routes(routes!(create_review_link, list_review_links))
        .routes(routes!(revoke_review_link))
}

/// Share an artifact with its client for review.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// A message for the reviewers; it becomes the first comment.
    pub message: Option<String>,
}

/// Approve a version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The version approved: it must be the latest.
    pub version: i64,
    /// The content hash of that version, as the reviewer saw it.
    pub content_hash: Option<String>,
}

/// Reject the version under review.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    /// Why; kept as a comment.
    pub reason: String,
}

/// A comment to add.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    pub body: String,
    /// A JSON Pointer into the version's content, e.g. `/phases/2`.
    pub section: Option<String>,
    /// The comment this replies to.
    pub parent_id: Option<CommentId>,
    /// The version commented on (default: the latest).
    pub version: Option<i64>,
    /// Operators only: never shown to the client.
    #[serde(default)]
    pub internal: bool,
}

/// What an approval did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproveAnswer {
    pub artifact: Artifact,
    /// `approved` when this was the last approval needed, else `recorded`.
    pub outcome: &'static str,
    /// Approvals in this review round, this one included.
    pub approvals: u32,
    /// Approvals needed.
    pub required: u32,
}

/// What a rejection did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectAnswer {
    pub artifact: Artifact,
    /// The reason, kept as a comment.
    pub comment: Comment,
}

/// A review link to make.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewLinkRequest {
    pub reviewer_email: String,
    pub reviewer_name: String,
    /// Hours until it expires, 1 to 2160 (default 168, a week).
    pub expires_in_hours: Option<i64>,
}

/// A review link with its secret URL (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewLinkCreated {
    #[serde(flatten)]
    pub link: ReviewLink,
    /// The bearer token the link carries.
    pub token: String,
    /// The page the reviewer opens.
    pub url: String,
}

/// Review links of an artifact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewLinks {
    pub items: Vec<ReviewLink>,
}

fn ctx_of(caller: &Caller, trace: &TraceId) -> Result<waymark_store::WriteContext, ApiError> {
    write_context(caller, trace)
}

/// Share a draft with the client (→ `in_review`), with a message.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/share", tag = "review", request_body = ShareRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = Artifact), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn share(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<ShareRequest>,
) -> Result<JsonOut<Artifact>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    let message = body
        .message
        .filter(|m| !m.trim().is_empty())
        .map(|m| parse_body("/message", &m))
        .transpose()
        .map_err(ApiError::invalid)?;
    let ctx = ctx_of(&caller, &trace)?;
    let a = state
        .store
        .share(id, message, &caller.reviewer(), &ctx)
        .await?;
    Ok(JsonOut(a))
}

/// Where the review stands: approvals of this round, how many are needed, who is eligible.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/review", tag = "review",
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = ReviewState), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn review_state(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<ReviewState>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let policy = policy_of(&state, &a.summary).await?;
    Ok(JsonOut(state.store.review_state(id, policy).await?))
}

/// Approve the latest version (bound to its number and content hash).
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/approve", tag = "review", request_body = ApproveRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = ApproveAnswer), (status = 403, body = Problem, description = "Not eligible, or one's own work"),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "Not in review, not the latest version, or approved already")),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<ApproveRequest>,
) -> Result<JsonOut<ApproveAnswer>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let policy = policy_of(&state, &a.summary).await?;
    let ctx = ctx_of(&caller, &trace)?;
    let done = state
        .store
        .approve(
            id,
            body.version,
            body.content_hash,
            &caller.reviewer(),
            policy,
            &ctx,
        )
        .await?;
    let (outcome, approvals, required) = match done.decision {
        Decision::Approved { count } => ("approved", count, policy.required.max(1)),
        Decision::Recorded { count, required } => ("recorded", count, required),
    };
    Ok(JsonOut(ApproveAnswer {
        artifact: done.artifact,
        outcome,
        approvals,
        required,
    }))
}

/// Reject the version under review: back to `draft`, the reason kept as a comment.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/reject", tag = "review", request_body = RejectRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = RejectAnswer), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
    Json(body): Json<RejectRequest>,
) -> Result<JsonOut<RejectAnswer>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let reason = parse_body("/reason", &body.reason).map_err(ApiError::invalid)?;
    let policy = policy_of(&state, &a.summary).await?;
    let ctx = ctx_of(&caller, &trace)?;
    let (artifact, comment) = state
        .store
        .reject(id, reason, &caller.reviewer(), policy, &ctx)
        .await?;
    Ok(JsonOut(RejectAnswer { artifact, comment }))
}

/// Comment on the artifact or on a section of it, or reply to a comment.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/comments", tag = "review", request_body = CommentRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 201, body = Comment), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn add_comment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<CommentRequest>,
) -> Result<(StatusCode, JsonOut<Comment>), ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    let text = parse_body("/body", &body.body).map_err(ApiError::invalid)?;
    if body.internal && !caller.is_staff() {
        return Err(ApiError::invalid(FieldError::new(
            "/internal",
            "only operators can post internal comments",
        )));
    }
    if let Some(parent) = body.parent_id {
        // A client may not reply to (or learn of) an internal comment: the same
        // answer as for a comment that does not exist.
        let missing = || {
            ApiError::invalid(FieldError::new(
                "/parent_id",
                format!("no comment {parent} on this artifact"),
            ))
        };
        match state.store.get_comment(parent).await {
            Ok(c) if c.artifact_id == id && (caller.is_staff() || !c.internal) => {}
            Ok(_) | Err(waymark_store::StoreError::NotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(v) = body.version
        && v < 1
    {
        return Err(ApiError::invalid(FieldError::new(
            "/version",
            "versions start at 1",
        )));
    }
    if let Some(s) = &body.section
        && s.len() > 1000
    {
        return Err(ApiError::invalid(FieldError::new(
            "/section",
            "is longer than 1000 characters",
        )));
    }
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/artifacts/{id}/comments"),
        &body,
    )?;
    let comment = state
        .store
        .add_comment(
            id,
            NewComment {
                version: body.version,
                section: body.section,
                parent_id: body.parent_id,
                body: text,
                internal: body.internal,
            },
            &caller.reviewer(),
            &ctx,
        )
        .await?;
    Ok((StatusCode::CREATED, JsonOut(comment)))
}

/// The comments on an artifact, oldest first (internal ones for operators only).
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/comments", tag = "review",
    params(("id" = String, Path, description = "An artifact id (art_...)"), PageParams),
    responses((status = 200, body = Page<Comment>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_comments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<JsonOut<Page<Comment>>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    Ok(JsonOut(
        state
            .store
            .list_comments(id, caller.is_staff(), params.page()?)
            .await?,
    ))
}

/// Mark a comment (thread) resolved.
#[utoipa::path(post, path = "/api/v1/comments/{id}/resolve", tag = "review",
    params(("id" = String, Path, description = "A comment id (cmt_...)")),
    responses((status = 200, body = Comment), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn resolve_comment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<JsonOut<Comment>, ApiError> {
    let id: CommentId = path_id(&id)?;
    let comment = state.store.get_comment(id).await?;
    let artifact = state.store.get_artifact(comment.artifact_id).await?;
    if !caller.sees_artifact(&artifact.summary) || (comment.internal && !caller.is_staff()) {
        return Err(not_found("comment", id));
    }
    let ctx = ctx_of(&caller, &trace)?;
    Ok(JsonOut(state.store.resolve_comment(id, &ctx).await?))
}

/// Make a review link: one artifact, one reviewer without an account, expiring.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/review-links", tag = "review", request_body = ReviewLinkRequest,
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 201, body = ReviewLinkCreated), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_review_link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<ReviewLinkRequest>,
) -> Result<(StatusCode, JsonOut<ReviewLinkCreated>), ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    let email = body.reviewer_email.trim().to_lowercase();
    let looks_like_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.contains('@'));
    if !looks_like_email {
        return Err(ApiError::invalid(FieldError::new(
            "/reviewer_email",
            "must be an email address such as ana@client.example",
        )));
    }
    let name = body.reviewer_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(FieldError::new(
            "/reviewer_name",
            "must be 1 to 200 characters",
        )));
    }
    let hours = body.expires_in_hours.unwrap_or(168);
    if !(1..=2160).contains(&hours) {
        return Err(ApiError::invalid(FieldError::new(
            "/expires_in_hours",
            "must be from 1 to 2160 (90 days)",
        )));
    }
    let expires_at = OffsetDateTime::now_utc() + Duration::hours(hours);
    let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
    let ctx = creating_context(
        &caller,
        &trace,
        &headers,
        &format!("/api/v1/artifacts/{id}/review-links"),
        &body,
    )?;
    let link = state
        .store
        .create_review_link(
            NewReviewLink {
                artifact_id: id,
                reviewer_email: email,
                reviewer_name: name.to_owned(),
                expires_at,
            },
            &ctx,
        )
        .await?;
    let token = sign_link(&state.link_key().await?, link.id, link.expires_at);
    let url = format!(
        "{}/review/{token}",
        state.http.public_url.trim_end_matches('/')
    );
    Ok((
        StatusCode::CREATED,
        JsonOut(ReviewLinkCreated { link, token, url }),
    ))
}

/// The review links of an artifact (without their tokens).
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/review-links", tag = "review",
    params(("id" = String, Path, description = "An artifact id (art_...)")),
    responses((status = 200, body = ReviewLinks), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_review_links(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<ReviewLinks>, ApiError> {
    let id: ArtifactId = path_id(&id)?;
    visible_artifact(&state, &caller, id).await?;
    caller.require_staff()?;
    Ok(JsonOut(ReviewLinks {
        items: state.store.list_review_links(id).await?,
    }))
}

/// Revoke a review link at once.
#[utoipa::path(delete, path = "/api/v1/review-links/{id}", tag = "review",
    params(("id" = String, Path, description = "A review link id (rvl_...)")),
    responses((status = 200, body = ReviewLink), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke_review_link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<JsonOut<ReviewLink>, ApiError> {
    let id: ReviewLinkId = path_id(&id)?;
    if !caller.is_staff() {
        return Err(not_found("review link", id));
    }
    let ctx = ctx_of(&caller, &trace)?;
    Ok(JsonOut(state.store.revoke_review_link(id, &ctx).await?))
}
