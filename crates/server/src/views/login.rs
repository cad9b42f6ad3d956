//! `/login` and `/logout`: signing in with an email and password (the API's
//! own sessions), and out again.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, local_path, notice_of, render, render_status};
use crate::AppState;
use crate::error::ApiError;
use crate::listener::Peer;
use crate::observe::TraceId;
use crate::routes::people::{
    SESSION_LIFETIME, redeem_sign_in_link, request_sign_in_link, session_cookie, start_session,
    usable_link,
};

/// The address a request came from.
type PeerInfo = Option<Extension<axum::extract::ConnectInfo<Peer>>>;

fn source(peer: PeerInfo) -> Option<std::net::IpAddr> {
    peer.map(|Extension(c)| c.0.0.ip())
}

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
    peer: PeerInfo,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = local_path(form.next.as_deref());
    match start_session(&state, &form.email, form.password, source(peer), &trace).await {
        Ok((secret, _)) => {
            let cookie = session_cookie(&state, &secret, SESSION_LIFETIME.whole_seconds())?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response())
        }
        Err(e @ (ApiError::Unauthorized(_) | ApiError::TooManyRequests { .. })) => {
            let (status, error) = match &e {
                ApiError::TooManyRequests { retry_after, .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed attempts. Try again in {} minutes, or ask for a sign-in link by mail below.",
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

#[derive(Deserialize)]
pub struct LinkRequestForm {
    email: String,
}

/// `POST /login/link`: mails a one-time sign-in link (the page says the same
/// whether or not the address has an account).
pub async fn request_link(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    peer: PeerInfo,
    Form(form): Form<LinkRequestForm>,
) -> Result<Response, PageError> {
    let (status, error, notice) = match request_sign_in_link(
        &state,
        &form.email,
        source(peer),
        &trace,
    )
    .await
    {
        Ok(()) => (StatusCode::OK, None, Some(LINK_SENT)),
        Err(ApiError::TooManyRequests { retry_after, .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many links were asked for. Use the last one sent, or try again in {} minutes.",
                retry_after.div_ceil(60).max(1)
            )),
            None,
        ),
        Err(ApiError::Invalid { .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Enter the email address your invitation was sent to.".to_owned()),
            None,
        ),
        Err(e) => return Err(e.into()),
    };
    render_status(
        status,
        &LoginPage {
            layout: Layout::new(&state, "Sign in", None, &csrf, "login").await?,
            next: "/".into(),
            email: form.email.chars().take(254).collect(),
            error,
            notice,
        },
    )
}

/// What the page says after a link was asked for.
const LINK_SENT: &str = "If that address belongs to an account, a sign-in link is on its way. It works once, for 15 minutes.";

#[derive(Template)]
#[template(path = "login_link.html")]
struct LinkPage {
    layout: Layout,
    token: String,
    name: String,
}

/// The page of a link that no longer works.
fn dead_link() -> Response {
    super::error_page(
        StatusCode::GONE,
        "This sign-in link no longer works",
        "It was used already, or more than 15 minutes went by. Ask for a new one on the sign-in page.".into(),
    )
}

/// `GET /login/link/{token}`: asks to confirm (mail scanners that open links
/// do not use them up).
pub async fn link_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let Some(t) = usable_link(&state, &token).await? else {
        return Ok(dead_link());
    };
    let name = match t.user_id {
        Some(u) => state.store.get_user(u).await?.name,
        None => return Ok(dead_link()),
    };
    render(&LinkPage {
        layout: Layout::new(&state, "Sign in", None, &csrf, "login").await?,
        token,
        name,
    })
}

#[derive(Deserialize)]
pub struct Empty {}

/// `POST /login/link/{token}`: uses the link up and signs in.
pub async fn redeem_link(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Path(token): Path<String>,
    Form(_): Form<Empty>,
) -> Result<Response, PageError> {
    match redeem_sign_in_link(&state, &token, &trace).await? {
        Some((secret, _)) => {
            let cookie = session_cookie(&state, &secret, SESSION_LIFETIME.whole_seconds())?;
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
        }
        None => Ok(dead_link()),
    }
}
