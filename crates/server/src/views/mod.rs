//! The web pages: HTML rendered on the server from askama templates
//! (`crates/server/templates/`), usable without script, with a little of it
//! (`assets/waymark.js`, htmx) for live updates.
//!
//! One module per page group. Page handlers are thin like the API's: they find
//! who is signed in ([`Viewer`]), read through the same store calls, and act by
//! calling the API's own handlers (so no rule is written twice), then redirect
//! (303) on success or show the page again with the problem.
//!
//! Beside them: [`csrf`] (every form post), [`assets`] (embedded, with
//! `ETag`s), [`document`] (content as a document, and the diff's lines),
//! [`tone`] (one colour per status, everywhere) and [`PageError`] (the error
//! pages: a missing id and one the viewer may not see get the same page).

pub mod admin;
pub mod artifacts;
pub mod assets;
pub mod chart;
pub mod clients;
pub mod csrf;
pub mod delivery;
pub mod document;
pub mod files;
pub mod graph;
pub mod home;
pub mod intake;
pub mod journeys;
pub mod login;
pub mod plan;
pub mod playbook;
pub mod queue;
pub mod review;
pub mod schema_form;
pub mod search;
pub mod tone;
pub mod work;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use csrf::CsrfCookie;

/// The page routes.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/login/link", post(login::request_link))
        .route(
            "/login/link/{token}",
            get(login::link_page).post(login::redeem_link),
        )
        .route("/artifacts/{id}", get(artifacts::page))
        .route("/artifacts/{id}/versions/{n}", get(artifacts::version_page))
        .route("/artifacts/{id}/diff", get(artifacts::diff_page))
        .route("/artifacts/{id}/raw", get(artifacts::raw))
        .route("/artifacts/{id}/share", post(artifacts::share))
        .route("/artifacts/{id}/approve", post(artifacts::approve))
        .route("/artifacts/{id}/reject", post(artifacts::reject))
        .route("/artifacts/{id}/comments", post(artifacts::comment))
        .route("/artifacts/{id}/transition", post(artifacts::transition))
        .route("/artifacts/{id}/review-links", post(artifacts::review_link))
        .route("/comments/{id}/resolve", post(artifacts::resolve))
        .route("/clients", get(clients::list).post(clients::create))
        .route("/clients/{id}", get(clients::page))
        .route(
            "/clients/{id}/engagements",
            post(clients::create_engagement),
        )
        .route("/engagements/{id}", get(clients::board))
        .route("/engagements/{id}/intake", get(intake::intake))
        .route(
            "/engagements/{id}/new/{type}",
            get(intake::new).post(intake::submit),
        )
        .route("/engagements/{id}/plan", get(plan::page))
        .route("/engagements/{id}/plan/run", post(plan::run))
        .route("/engagements/{id}/delivery", get(delivery::page))
        .route("/engagements/{id}/exports", post(delivery::export))
        .route(
            "/engagements/{id}/exports/{export_id}/download",
            get(delivery::download),
        )
        .route("/journeys/{id}", get(journeys::page))
        .route("/journeys/{id}/events", post(journeys::event))
        .route("/journeys/{id}/signoffs", post(journeys::signoff))
        .route("/journeys/{id}/ratings", post(journeys::rate))
        .route("/queue", get(queue::page))
        .route("/queue/items/{id}/start", post(queue::start))
        .route("/queue/items/{id}/actions", post(queue::item_action))
        .route("/todos/{id}", post(queue::todo_action))
        .route("/journeys/{id}/steps/{step}", get(playbook::step_page))
        .route(
            "/journeys/{id}/steps/{step}/complete",
            post(playbook::complete_step),
        )
        .route(
            "/journeys/{id}/steps/{step}/threads",
            post(playbook::open_thread),
        )
        .route(
            "/journeys/{id}/steps/{step}/todos",
            post(playbook::add_todo),
        )
        .route("/journeys/{id}/actions", post(playbook::journey_action))
        .route("/threads/{id}", get(playbook::thread_page))
        .route("/threads/{id}/messages", post(playbook::send))
        .route(
            "/threads/{id}/messages/stream",
            post(playbook::send_streamed),
        )
        .route("/threads/{id}/complete", post(playbook::complete_thread))
        .route(
            "/threads/{id}/save",
            get(playbook::save_page).post(playbook::save),
        )
        .route(
            "/files",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/files/{id}", get(files::page))
        .route("/files/{id}/download", get(files::download))
        .route("/search", get(search::page))
        .route("/work", get(work::page))
        .route("/work/tasks/{id}/complete", post(work::complete))
        .route("/work/tasks/{id}/fail", post(work::fail))
        .route("/work/incidents/{id}/resolve", post(work::resolve))
        .route("/admin", get(|| async { Redirect::to("/admin/people") }))
        .route("/admin/people", get(admin::people_page))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/tokens", post(admin::create_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route(
            "/admin/webhooks",
            get(admin::webhooks_page).post(admin::create_webhook),
        )
        .route("/admin/webhooks/{id}", get(admin::deliveries_page))
        .route("/admin/webhooks/{id}/delete", post(admin::delete_webhook))
        .route("/admin/packs", get(admin::packs_page))
        .route("/admin/packs/{name}", get(admin::pack_page))
        .route("/admin/audit", get(admin::audit_page))
        .route("/admin/audit/verify", post(admin::verify))
        .route("/review/{token}", get(review::page))
        .route("/review/{token}/comments", post(review::comment))
        .route("/review/{token}/approve", post(review::approve))
        .route("/review/{token}/reject", post(review::reject))
        .route_layer(middleware::from_fn(csrf::ensure_cookie))
        .route_layer(middleware::from_fn_with_state(state, crate::notify_changes))
        .route("/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn(security_headers))
}

/// The headers every page carries: no script but ours, no framing, no
/// sniffing, no referrer (review links carry their token in the path).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// What the shared layout shows: the page title, who is signed in, the
/// navigation, and the CSRF token its forms carry.
pub struct Layout {
    pub title: String,
    pub user: Option<NavUser>,
    pub csrf: String,
    /// The navigation entry of this page (`home`, `clients`, ...).
    pub nav: &'static str,
}

/// The signed-in person as the navigation shows them.
pub struct NavUser {
    pub name: String,
    pub staff: bool,
    pub admin: bool,
}

impl Layout {
    pub async fn new(
        state: &AppState,
        title: impl Into<String>,
        viewer: Option<&Caller>,
        csrf: &CsrfCookie,
        nav: &'static str,
    ) -> Result<Self, PageError> {
        let key = state.link_key().await?;
        Ok(Layout {
            title: title.into(),
            user: viewer.filter(|c| c.link.is_none()).map(|c| NavUser {
                name: c.name.clone(),
                staff: c.is_staff(),
                admin: c.role == waymark_store::Role::Admin,
            }),
            csrf: csrf::token(&key, &csrf.0),
            nav,
        })
    }
}

/// The person signed in to the web UI. Pages that need one take it as an
/// extractor: without a session the browser is sent to `/login` and back.
pub struct Viewer(pub Caller);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match crate::auth::session_caller(state, &parts.headers).await? {
            Some(c) => Ok(Viewer(c)),
            None => Err(PageError::SignIn {
                next: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".into()),
            }),
        }
    }
}

/// Renders a template, or a 500 page when it fails.
pub fn render(t: &impl Template) -> Result<Response, PageError> {
    render_status(StatusCode::OK, t)
}

/// Renders a template with a status.
pub fn render_status(status: StatusCode, t: &impl Template) -> Result<Response, PageError> {
    let html = t
        .render()
        .map_err(|e| PageError::Api(ApiError::Internal(Box::new(e))))?;
    let mut res = (status, html).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The query of a page reached after an action: `?done=` names it.
#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

impl Done {
    /// The notice the page shows for it.
    pub fn notice(&self) -> Option<&'static str> {
        notice_of(self.done.as_deref())
    }
}

/// `?done=` notices after an action: a fixed set of sentences (nothing from
/// the query string is shown).
pub fn notice_of(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "shared" => "Shared with the client. They have been notified.",
        "approved" => "Your approval is recorded.",
        "rejected" => "Rejected; the reason was kept as a comment.",
        "commented" => "Your comment was added.",
        "resolved" => "The comment is marked resolved.",
        "moved" => "The status was changed.",
        "link" => "The review link was created and mailed to the reviewer.",
        "signed-out" => "You are signed out.",
        "completed" => "The task is completed.",
        "failed" => "The task is marked failed; an incident is open for it.",
        "resolved-incident" => "The incident is resolved.",
        "queued" => "The ready jobs are queued; the board updates as they finish.",
        "nothing-ready" => "Nothing is ready to run: see the blocked jobs and their reasons.",
        "created" => "Created.",
        "revoked" => "The token is revoked; it no longer works.",
        "deleted" => "Deleted.",
        "saved" => "Saved. Rule warnings, if any, are listed below.",
        "moved-journey" => "The journey moved.",
        "recorded" => "Recorded.",
        "rated" => "Thank you: your rating is recorded.",
        "started" => "The playbook is started: this is its first step.",
        "snoozed" => "Snoozed: it is out of the queue until the time you chose.",
        "skipped" => "The step is skipped; the reason is in the playbook's history.",
        "escalated" => "Escalated: the new owner has it in their queue and has been told.",
        "scheduled" => "The due date is set.",
        "step-completed" => "The step is completed: this is the next one.",
        "playbook-completed" => "The playbook is completed and its outcome recorded.",
        "todo-added" => "The to-do is added.",
        "todo-completed" => "The to-do is completed.",
        "todo-skipped" => "The to-do is skipped.",
        "saved-reply" => "The reply is saved as a draft document of the client.",
        "uploaded" => "The file is stored; its text is being read.",
        "file-known" => "This client already had this file: here it is.",
        "exported" => "The export is built and recorded: download it below.",
        _ => return None,
    })
}

/// A refusal as a page says it: the problem's detail and each field error.
pub fn problem_text(e: &ApiError) -> String {
    let p = e.problem();
    let mut m = p.detail;
    for f in p.errors {
        m.push_str(&format!(" ({}: {})", f.pointer, f.message));
    }
    m
}

/// Where to go after signing in: a path on this site, never another host.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => {
            p.chars().filter(|c| !c.is_control()).take(2000).collect()
        }
        _ => "/".into(),
    }
}

/// A page that could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page, and back to `next` after.
    SignIn { next: String },
    /// 403 with a sentence saying why.
    Forbidden(String),
    /// 400 with a sentence saying what is wrong.
    BadRequest(String),
    /// Anything the API would answer (404, 409, 500 ...).
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Api(e)
    }
}

impl From<waymark_store::StoreError> for PageError {
    fn from(e: waymark_store::StoreError) -> Self {
        PageError::Api(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    heading: &'a str,
    message: String,
}

/// The error page with `status`: what happened and what to do next.
pub fn error_page(status: StatusCode, heading: &str, message: String) -> Response {
    let page = ErrorPage {
        layout: Layout {
            title: heading.to_owned(),
            user: None,
            csrf: String::new(),
            nav: "",
        },
        heading,
        message,
    };
    render_status(status, &page).unwrap_or_else(|_| (status, heading.to_owned()).into_response())
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn { next } => {
                let target = format!(
                    "/login?next={}",
                    serde_urlencoded::to_string([("", next)])
                        .map(|s| s.trim_start_matches('=').to_owned())
                        .unwrap_or_default()
                );
                Redirect::to(&target).into_response()
            }
            PageError::Forbidden(m) => error_page(StatusCode::FORBIDDEN, "Not allowed", m),
            PageError::BadRequest(m) => error_page(
                StatusCode::BAD_REQUEST,
                "Something is wrong with this request",
                m,
            ),
            PageError::Api(e) => {
                let status = e.status();
                match e {
                    ApiError::NotFound(_) => error_page(
                        status,
                        "Not found",
                        "There is nothing here, or nothing you may see. Check the address, or go back to the start page.".into(),
                    ),
                    ApiError::Internal(_) | ApiError::Unavailable(_) => {
                        // Logged with its cause by ApiError's own rendering.
                        let _ = e.into_response();
                        error_page(
                            status,
                            "Something went wrong",
                            "The server could not show this page. Try again in a moment; if it keeps happening, tell your Waymark administrator.".into(),
                        )
                    }
                    ApiError::Forbidden(m) => error_page(status, "Not allowed", m),
                    other => error_page(status, "This cannot be done", other.problem().detail),
                }
            }
        }
    }
}

/// The fallback for a path nobody serves: the not-found page for browsers,
/// problem+json for the API and for clients that do not ask for HTML.
pub fn wants_html(headers: &axum::http::HeaderMap, path: &str) -> bool {
    !path.starts_with("/api/")
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/artifacts/x?y=1")), "/artifacts/x?y=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn notices_are_fixed_sentences() {
        assert!(notice_of(Some("approved")).is_some());
        assert!(notice_of(Some("<script>")).is_none());
    }
}
