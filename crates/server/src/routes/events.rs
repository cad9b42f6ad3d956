//! The event stream (server-sent events) and the audit log.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::{Extension, Json as JsonOut};
use futures::Stream;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::{ClientId, EventId};
use waymark_store::{AuditEntry, AuditFilter, EventScope, Mail, Page, Role};

use super::PageParams;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Query, query_id};

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_events))
        .routes(routes!(list_audit))
        .routes(routes!(list_mail))
}

/// Where to resume a stream.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Resume after this event (as the `Last-Event-ID` header does).
    pub after: Option<String>,
    /// Only these event types, comma-separated (`artifact.approved,comment.created`).
    pub types: Option<String>,
}

/// How long a stream waits for a wake-up before it looks anyway: a backstop.
/// Streams wake when events are appended (the store's event signal: any
/// process's appends on PostgreSQL, through `LISTEN`/`NOTIFY`). On SQLite
/// a `waymark worker` process beside the server appends events that this
/// process is not told of, so it looks every second there.
fn backstop(backend: waymark_store::Backend) -> Duration {
    match backend {
        waymark_store::Backend::Sqlite => Duration::from_secs(1),
        waymark_store::Backend::Postgres => Duration::from_secs(30),
    }
}

/// Server-sent events: every event the caller may see, live, from the one after
/// `Last-Event-ID` (or `?after=`) when given, else from now. Each message's `id`
/// is the event id, its `event` the event type, its `data` the CloudEvent.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of CloudEvents", content_type = "text/event-stream"),
        (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn stream_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    if caller.link.is_some() {
        return Err(ApiError::Forbidden(
            "a review link cannot follow the event stream".into(),
        ));
    }
    let scope = match (caller.role, caller.client_scope()) {
        (Role::Admin, _) => EventScope::All,
        (_, None) if caller.is_staff() => EventScope::Staff,
        (_, Some(c)) => EventScope::Client(c),
        _ => {
            return Err(ApiError::Forbidden(
                "this token belongs to no client; ask an admin for a user token".into(),
            ));
        }
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(q.after);
    let mut after = state.store.last_event_seq().await?;
    if let Some(r) = resume.filter(|r| !r.trim().is_empty()) {
        let id: EventId = r.trim().parse().map_err(|e| {
            ApiError::bad_request(
                "invalid_last_event_id",
                format!("Last-Event-ID: {e}; send the id of the last event you received"),
            )
        })?;
        // An id that does not exist (or another client's: ids carry nothing)
        // resumes from now, as for a fresh stream.
        if let Some(seq) = state.store.event_seq(id).await? {
            after = seq;
        }
    }
    let types: Option<Vec<String>> = q.types.map(|t| {
        t.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let source = state.http.public_url.clone();
    let changes = state.store.event_signal();
    let backstop = backstop(state.store.backend());
    let stream = futures::stream::unfold(
        (state, changes, after, Vec::<SseEvent>::new()),
        move |(state, mut changes, mut after, mut pending)| {
            let types = types.clone();
            let source = source.clone();
            async move {
                loop {
                    if let Some(next) = pending.pop() {
                        return Some((Ok(next), (state, changes, after, pending)));
                    }
                    match state.store.events_after(after, scope, 200).await {
                        Ok(events) if !events.is_empty() => {
                            for e in &events {
                                after = e.seq;
                            }
                            pending = events
                                .iter()
                                .filter(|e| {
                                    types.as_ref().is_none_or(|t| t.contains(&e.event_type))
                                })
                                .rev()
                                .map(|e| {
                                    SseEvent::default()
                                        .id(e.id.to_string())
                                        .event(e.event_type.clone())
                                        .data(e.cloudevent(&source).to_string())
                                })
                                .collect();
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream: reading the outbox failed");
                        }
                    }
                    // Wait until events are appended (or the backstop).
                    if let Ok(Err(_)) = tokio::time::timeout(backstop, changes.changed()).await {
                        // The store is closing: no more wake-ups.
                        tokio::time::sleep(backstop).await;
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    /// `usr_…`, `tok_…`, `rvl_…` or `system`.
    pub actor: Option<String>,
    /// The record changed, e.g. `art_…`.
    pub target: Option<String>,
    /// From this time (RFC 3339), inclusive.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Until this time (RFC 3339), exclusive.
    #[param(format = DateTime)]
    pub to: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn time_param(name: &str, v: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.map(|s| {
        OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be an RFC 3339 time such as 2026-11-21T09:00:00Z"),
            )
        })
    })
    .transpose()
}

/// The audit log, newest first (admins only). Every change is one record,
/// hash-chained to the one before; `waymark audit verify` checks the chain.
#[utoipa::path(get, path = "/api/v1/audit", tag = "events", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Result<JsonOut<Page<AuditEntry>>, ApiError> {
    caller.require_admin()?;
    let filter = AuditFilter {
        client_id: q
            .client_id
            .as_deref()
            .map(|c| query_id::<ClientId>("client_id", c))
            .transpose()?,
        actor: q.actor,
        target: q.target,
        from: time_param("from", q.from)?,
        to: time_param("to", q.to)?,
    };
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    Ok(JsonOut(state.store.list_audit(filter, page).await?))
}

/// The mail outbox, newest first (admins only): every mail Waymark composed
/// (review requests, comments, decisions), with its status. Without an SMTP
/// relay (`smtp_url`), mail is kept here as `unsent`, so what a reviewer would
/// receive can be read.
#[utoipa::path(get, path = "/api/v1/mail", tag = "events", params(PageParams),
    responses((status = 200, body = Page<Mail>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_mail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<PageParams>,
) -> Result<JsonOut<Page<Mail>>, ApiError> {
    caller.require_admin()?;
    Ok(JsonOut(state.store.list_mail(p.page()?).await?))
}
