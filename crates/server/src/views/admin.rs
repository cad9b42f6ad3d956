//! `/admin/...`: people and their tokens (a new token's secret is shown once),
//! webhooks with their delivery log, packs (built in and installed, with
//! their types and journey templates), and the audit log with its filters
//! and a "verify chain" action. Admins only, through the API's handlers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use serde_json::{Value, json};
use waymark_store::{AuditEntry, Delivery, TokenInfo, User, Webhook};

use super::artifacts::when;
use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, Viewer, problem_text, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, Query as ApiQuery};
use crate::observe::TraceId;
use crate::routes::{self, PageParams};

fn first(limit: u32) -> PageParams {
    PageParams {
        limit: Some(limit),
        cursor: None,
    }
}

// --- people and tokens ----------------------------------------------------------

#[derive(Template)]
#[template(path = "admin_people.html")]
struct PeoplePage {
    layout: Layout,
    users: Vec<(User, String)>,
    tokens: Vec<(TokenInfo, String, &'static str)>,
    clients: Vec<(String, String)>,
    /// A token just made: its name and its secret, shown this once.
    secret: Option<(String, String)>,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn people(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
) -> Result<PeoplePage, PageError> {
    caller.require_admin()?;
    let JsonOut(users) = routes::people::list_users(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(routes::people::UserQuery {
            client_id: None,
            role: None,
            limit: Some(200),
            cursor: None,
        }),
    )
    .await?;
    let JsonOut(tokens) = routes::people::list_tokens(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(routes::people::TokenQuery {
            user_id: None,
            limit: Some(200),
            cursor: None,
        }),
    )
    .await?;
    let JsonOut(clients) = routes::clients::list_clients(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(first(200)),
    )
    .await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(PeoplePage {
        layout: Layout::new(state, "People and tokens", Some(caller), csrf, "admin").await?,
        users: users
            .items
            .into_iter()
            .map(|u| {
                let at = when(u.created_at);
                (u, at)
            })
            .collect(),
        tokens: tokens
            .items
            .into_iter()
            .map(|t| {
                let at = when(t.created_at);
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "live"
                };
                (t, at, state)
            })
            .collect(),
        clients: clients
            .items
            .into_iter()
            .map(|c| (c.id.to_string(), c.name))
            .collect(),
        secret: None,
        notice: None,
        error: None,
    })
}

/// `GET /admin`, `GET /admin/people`.
pub async fn people_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = people(&state, &caller, &csrf).await?;
    page.notice = q.notice();
    render(&page)
}

async fn people_refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    e: ApiError,
) -> Result<Response, PageError> {
    if matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) {
        return Err(e.into());
    }
    let mut page = people(state, caller, csrf).await?;
    page.error = Some(problem_text(&e));
    render_status(e.status(), &page)
}

#[derive(Deserialize)]
pub struct UserForm {
    email: String,
    name: String,
    role: String,
    client_id: Option<String>,
    password: Option<String>,
}

/// `POST /admin/users`.
pub async fn create_user(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Form(f): Form<UserForm>,
) -> Result<Response, PageError> {
    let made = routes::people::create_user(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Json(routes::people::CreateUser {
            email: f.email,
            name: f.name,
            role: f.role,
            client_id: f.client_id.filter(|c| !c.is_empty()),
            password: f.password.filter(|p| !p.is_empty()),
        }),
    )
    .await;
    match made {
        Ok(_) => Ok(Redirect::to("/admin/people?done=created").into_response()),
        Err(e) => people_refused(&state, &caller, &csrf, e).await,
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    user_id: Option<String>,
    role: Option<String>,
    expires_at: Option<String>,
}

/// `POST /admin/tokens`: the page again, with the new secret shown once.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Form(f): Form<TokenForm>,
) -> Result<Response, PageError> {
    let made = routes::people::create_token(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Json(routes::people::CreateToken {
            name: f.name,
            user_id: f.user_id.filter(|u| !u.is_empty()),
            agent_id: None,
            expires_at: f.expires_at.filter(|e| !e.is_empty()),
            role: f.role.filter(|r| !r.is_empty()),
        }),
    )
    .await;
    match made {
        Ok((_, JsonOut(t))) => {
            let mut page = people(&state, &caller, &csrf).await?;
            page.secret = Some((t.name, t.token));
            render_status(StatusCode::CREATED, &page)
        }
        Err(e) => people_refused(&state, &caller, &csrf, e).await,
    }
}

#[derive(Deserialize)]
pub struct Empty {}

/// `POST /admin/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(_): Form<Empty>,
) -> Result<Response, PageError> {
    match routes::people::revoke_token(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/admin/people?done=revoked").into_response()),
        Err(e) => people_refused(&state, &caller, &csrf, e).await,
    }
}

// --- webhooks -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin_webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    hooks: Vec<(Webhook, String)>,
    secret: Option<(String, String)>,
    notice: Option<&'static str>,
    error: Option<String>,
}

async fn webhooks(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
) -> Result<WebhooksPage, PageError> {
    caller.require_admin()?;
    let JsonOut(hooks) = routes::webhooks::list_webhooks(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(first(200)),
    )
    .await?;
    Ok(WebhooksPage {
        layout: Layout::new(state, "Webhooks", Some(caller), csrf, "admin").await?,
        hooks: hooks
            .items
            .into_iter()
            .map(|h| {
                let at = when(h.created_at);
                (h, at)
            })
            .collect(),
        secret: None,
        notice: None,
        error: None,
    })
}

/// `GET /admin/webhooks`.
pub async fn webhooks_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = webhooks(&state, &caller, &csrf).await?;
    page.notice = q.notice();
    render(&page)
}

#[derive(Deserialize)]
pub struct WebhookForm {
    url: String,
    event_types: Option<String>,
    description: Option<String>,
}

/// `POST /admin/webhooks`: the page again with the signing secret shown once.
pub async fn create_webhook(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Form(f): Form<WebhookForm>,
) -> Result<Response, PageError> {
    let types: Vec<String> = f
        .event_types
        .unwrap_or_default()
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let made = routes::webhooks::create_webhook(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Json(routes::webhooks::CreateWebhook {
            url: f.url,
            event_types: (!types.is_empty()).then_some(types),
            client_id: None,
            description: f.description.filter(|d| !d.trim().is_empty()),
            secret: None,
        }),
    )
    .await;
    match made {
        Ok((_, JsonOut(w))) => {
            let mut page = webhooks(&state, &caller, &csrf).await?;
            page.secret = Some((w.webhook.url, w.secret));
            render_status(StatusCode::CREATED, &page)
        }
        Err(e) if !matches!(e, ApiError::Internal(_) | ApiError::Unavailable(_)) => {
            let mut page = webhooks(&state, &caller, &csrf).await?;
            page.error = Some(problem_text(&e));
            render_status(e.status(), &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/webhooks/{id}/delete`.
pub async fn delete_webhook(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(_): Form<Empty>,
) -> Result<Response, PageError> {
    routes::webhooks::delete_webhook(
        State(state.clone()),
        Extension(caller),
        Extension(trace),
        Path(id),
    )
    .await?;
    Ok(Redirect::to("/admin/webhooks?done=deleted").into_response())
}

#[derive(Template)]
#[template(path = "admin_deliveries.html")]
struct DeliveriesPage {
    layout: Layout,
    hook: Webhook,
    deliveries: Vec<(Delivery, String)>,
}

/// `GET /admin/webhooks/{id}`: the delivery log.
pub async fn deliveries_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    caller.require_admin()?;
    let JsonOut(hook) = routes::webhooks::get_webhook(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.clone()),
    )
    .await?;
    let JsonOut(deliveries) = routes::webhooks::list_deliveries(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id),
        ApiQuery(first(200)),
    )
    .await?;
    render(&DeliveriesPage {
        layout: Layout::new(&state, "Deliveries", Some(&caller), &csrf, "admin").await?,
        hook,
        deliveries: deliveries
            .items
            .into_iter()
            .map(|d| {
                let at = when(d.created_at);
                (d, at)
            })
            .collect(),
    })
}

// --- packs ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin_packs.html")]
struct PacksPage {
    layout: Layout,
    packs: Vec<routes::packs::PackSummary>,
}

/// `GET /admin/packs`.
pub async fn packs_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
) -> Result<Response, PageError> {
    caller.require_admin()?;
    let JsonOut(list) = routes::packs::list_packs(State(state.clone())).await?;
    render(&PacksPage {
        layout: Layout::new(&state, "Packs", Some(&caller), &csrf, "admin").await?,
        packs: list.items,
    })
}

#[derive(Template)]
#[template(path = "admin_pack.html")]
struct PackPage {
    layout: Layout,
    pack: routes::packs::PackDetail,
}

/// `GET /admin/packs/{name}`: its types, plan and journey templates.
pub async fn pack_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    caller.require_admin()?;
    let JsonOut(pack) = routes::packs::get_pack(State(state.clone()), Path(name)).await?;
    render(&PackPage {
        layout: Layout::new(
            &state,
            pack.summary.name.clone(),
            Some(&caller),
            &csrf,
            "admin",
        )
        .await?,
        pack,
    })
}

// --- audit ----------------------------------------------------------------------

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<(AuditEntry, String)>,
    next: Option<String>,
    actor: String,
    target: String,
    from: String,
    to: String,
    verdict: Option<(bool, String)>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct AuditForm {
    actor: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

fn blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    q: AuditForm,
) -> Result<AuditPage, PageError> {
    caller.require_admin()?;
    // Dates from the form's date inputs become the start of that day (UTC).
    let day = |v: Option<String>| {
        blank(v).map(|s| {
            if s.len() == 10 {
                format!("{s}T00:00:00Z")
            } else {
                s
            }
        })
    };
    let query = routes::events::AuditQuery {
        client_id: None,
        actor: blank(q.actor.clone()),
        target: blank(q.target.clone()),
        from: day(q.from.clone()),
        to: day(q.to.clone()),
        limit: Some(100),
        cursor: blank(q.cursor),
    };
    let listed = routes::events::list_audit(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(query),
    )
    .await;
    let (entries, next, error) = match listed {
        Ok(JsonOut(p)) => (p.items, p.next_cursor, None),
        Err(e @ ApiError::BadRequest { .. }) => (vec![], None, Some(problem_text(&e))),
        Err(e) => return Err(e.into()),
    };
    Ok(AuditPage {
        layout: Layout::new(state, "Audit log", Some(caller), csrf, "admin").await?,
        entries: entries
            .into_iter()
            .map(|e| {
                let at = when(e.at);
                (e, at)
            })
            .collect(),
        next,
        actor: q.actor.unwrap_or_default(),
        target: q.target.unwrap_or_default(),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        verdict: None,
        error,
    })
}

/// `GET /admin/audit?actor=&target=&from=&to=`.
pub async fn audit_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<AuditForm>,
) -> Result<Response, PageError> {
    let page = audit(&state, &caller, &csrf, q).await?;
    let status = if page.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render_status(status, &page)
}

/// `POST /admin/audit/verify`: walks the whole chain and says whether it holds.
pub async fn verify(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Form(_): Form<Empty>,
) -> Result<Response, PageError> {
    caller.require_admin()?;
    let verdict = waymark_engine::audit::verify(&*state.store, |_, _| {}).await?;
    let mut page = audit(&state, &caller, &csrf, AuditForm::default()).await?;
    page.verdict = Some(match verdict {
        Ok((n, head)) => (
            true,
            format!("The audit chain holds: {n} records, head {head}."),
        ),
        Err(b) => (
            false,
            format!(
                "The audit chain is BROKEN at record {}: {b}. The records from there on cannot be trusted; compare them with a backup.",
                b.seq()
            ),
        ),
    });
    render(&page)
}

/// A record's JSON, for the audit page's details.
pub fn record_json(e: &AuditEntry) -> String {
    serde_json::to_string_pretty(&e.record).unwrap_or_default()
}

/// Keeps the JSON helpers in one place for the templates.
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| json!(null).to_string())
}
