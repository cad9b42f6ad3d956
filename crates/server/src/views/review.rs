//! `/review/{token}`: a review link's page. One artifact to read, comment on by
//! section, approve or reject, with no account; when the reviewer commented on
//! or approved an earlier version, it opens on what changed since. A link that
//! is expired, revoked or mistyped gets a page saying so and whom to ask.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;
use waymark_domain::ArtifactId;
use waymark_store::StoreError;

use super::artifacts::{
    ApproveForm, ArtifactPage, CommentForm, RejectForm, act, approve_as, comment_as, done, refused,
    reject_as, remember_seen, seen_version,
};
use super::csrf::{CsrfCookie, Form};
use super::{PageError, error_page, render};
use crate::AppState;
use crate::auth::{Caller, link_caller};
use crate::observe::TraceId;

/// The caller a review link's token stands for, or the page saying why it
/// no longer works.
async fn reviewer(state: &AppState, token: &str) -> Result<Caller, Response> {
    let now = OffsetDateTime::now_utc();
    if token.len() <= 300
        && let Ok(c) = link_caller(state, token, now).await
    {
        return Ok(c);
    }
    Err(dead_link(state, token, now).await)
}

/// What an unusable link's page says: expired or revoked (with who sent it),
/// or not a link at all.
async fn dead_link(state: &AppState, token: &str, now: OffsetDateTime) -> Response {
    let gone = |m: String| error_page(StatusCode::GONE, "This review link no longer works", m);
    let key = match state.link_key().await {
        Ok(k) => k,
        Err(e) => return axum::response::IntoResponse::into_response(PageError::from(e)),
    };
    let Some(id) = waymark_domain::review::link_id(&key, token) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "This review link is not valid",
            "Check that the whole link was copied from the mail; otherwise ask whoever sent it for a new one.".into(),
        );
    };
    let link = match state.store.get_review_link(id).await {
        Ok(l) => l,
        Err(StoreError::NotFound { .. }) => {
            return gone("Ask whoever sent it for a new one.".into());
        }
        Err(e) => return axum::response::IntoResponse::into_response(PageError::from(e)),
    };
    let sender = match link.created_by.parse::<waymark_domain::UserId>() {
        Ok(u) => match state.store.get_user(u).await {
            Ok(u) => format!("{} ({})", u.name, u.email),
            Err(_) => "whoever sent it".into(),
        },
        Err(_) => "whoever sent it".into(),
    };
    let what = if link.revoked_at.is_some() {
        "was withdrawn".to_owned()
    } else if link.expires_at <= now {
        format!("expired on {}", super::artifacts::when(link.expires_at))
    } else {
        "cannot be used".to_owned()
    };
    gone(format!("This link {what}. Ask {sender} for a new one."))
}

/// `GET /review/{token}`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    headers: axum::http::HeaderMap,
    Path(token): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let caller = match reviewer(&state, &token).await {
        Ok(c) => c,
        Err(page) => return Ok(page),
    };
    let id = artifact_of(&caller);
    let mut page = ArtifactPage::build(
        &state,
        &caller,
        &csrf,
        id,
        format!("/review/{token}"),
        seen_version(&headers, id),
    )
    .await?;
    page.notice = q.notice();
    let latest = page.a.summary.version;
    Ok(remember_seen(render(&page)?, id, latest))
}

fn artifact_of(caller: &Caller) -> ArtifactId {
    caller
        .link
        .as_ref()
        .map(|l| l.artifact_id)
        .expect("a review link's caller carries its grant")
}

macro_rules! link_action {
    ($name:ident, $form:ty, $what:literal, $call:ident) => {
        /// A review link's form post.
        pub async fn $name(
            State(state): State<AppState>,
            Extension(csrf): Extension<CsrfCookie>,
            Extension(trace): Extension<TraceId>,
            Path(token): Path<String>,
            Form(f): Form<$form>,
        ) -> Result<Response, PageError> {
            let caller = match reviewer(&state, &token).await {
                Ok(c) => c,
                Err(page) => return Ok(page),
            };
            let id = artifact_of(&caller);
            let base = format!("/review/{token}");
            act!(
                state,
                caller,
                csrf,
                id,
                base,
                $what,
                $call(&state, &caller, trace, id, f)
            )
        }
    };
}

link_action!(comment, CommentForm, "commented", comment_as);
link_action!(approve, ApproveForm, "approved", approve_as);
link_action!(reject, RejectForm, "rejected", reject_as);
