//! `/login` and `/logout`: signing in with an email and password (the API's
//! own sessions), and out again.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, local_path, notice_of, render, render_status};
use crate::AppState;
use crate::error::ApiError;
use crate::observe::TraceId;
use crate::routes::people::{SESSION_LIFETIME, session_cookie, start_session};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    email: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// `GET /login`: the form (or straight on when already signed in).
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let next = local_path(q.next.as_deref());
    if crate::auth::session_caller(&state, &headers)
        .await?
        .is_some()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    render(&LoginPage {
        layout: Layout::new(&state, "Sign in", None, &csrf, "login").await?,
        next,
        email: String::new(),
        error: None,
        notice: notice_of(q.done.as_deref()),
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: a session cookie and on to `next`, or the form again with
/// the same words for an unknown email and a wrong password.
pub async fn submit(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = local_path(form.next.as_deref());
    match start_session(&state, &form.email, form.password, &trace).await {
        Ok((secret, _)) => {
            let cookie = session_cookie(&state, &secret, SESSION_LIFETIME.whole_seconds())?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::TooManyRequests { .. })) => {
            let (status, error) = match &e {
                ApiError::TooManyRequests { retry_after, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed attempts. Try again in {} minutes, or ask for a sign-in link by mail.",
                        retry_after.div_ceil(60).max(1)
                    ),
                ),
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "The email or the password is wrong.".to_owned(),
                ),
            };
            render_status(
                status,
                &LoginPage {
                    layout: Layout::new(&state, "Sign in", None, &csrf, "login").await?,
                    next,
                    email: form.email.chars().take(254).collect(),
                    error: Some(error),
                    notice: None,
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {}

/// `POST /logout`: revokes the session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Form(_): Form<LogoutForm>,
) -> Result<Response, PageError> {
    if let Some(caller) = crate::auth::session_caller(&state, &headers).await?
        && let Some(id) = caller.token_id
    {
        let ctx = crate::routes::write_context(&caller, &trace)?;
        state.store.revoke_token(id, &ctx).await?;
    }
    let cookie = session_cookie(&state, "", 0)?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/login?done=signed-out"),
    )
        .into_response())
}
