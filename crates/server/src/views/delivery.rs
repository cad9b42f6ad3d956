//! `/engagements/{id}/delivery`: whether the engagement can be delivered
//! (the blockers as a list of things to do, each linking to its artifact),
//! the manifest, the attached files, the pipeline's analytics, the export
//! button and the exports made, each with a download link for a signed-in
//! person (`/engagements/{id}/exports/{export_id}/download`). A client user
//! gets the same URL as the API gives them: the manifest, what was shared
//! with them, the exports; no analytics, no export button.
//!
//! Reads through [`routes::delivery::delivery_of`] and acts through
//! [`routes::delivery::create_export`], so no rule is written here.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use waymark_domain::delivery::BlockerKind;

use super::artifacts::{Badge, when};
use super::csrf::{CsrfCookie, Form};
use super::{Layout, PageError, Viewer, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::observe::TraceId;
use crate::routes;
use crate::routes::delivery::DeliveryOut;

/// A blocker as the page lists it.
struct BlockerRow {
    badge: Badge,
    message: String,
    /// Where to act: the artifact's page, or the form creating the type.
    href: Option<String>,
    action: &'static str,
}

struct EntryRow {
    id: String,
    artifact_type: String,
    title: String,
    version: i64,
    badge: Badge,
    approved: String,
    hash: String,
    short_hash: String,
}

struct FileRow {
    id: String,
    name: String,
    size: String,
    short_hash: String,
}

struct ExportRow {
    id: String,
    when: String,
    by: String,
    artifacts: i64,
    files: i64,
    size: String,
    short_hash: String,
    href: String,
}

struct Figures {
    by_status: Vec<(Badge, usize)>,
    stale: usize,
    rounds: usize,
    approved: usize,
    sent_back: usize,
    median: String,
    p90: String,
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    layout: Layout,
    notice: Option<&'static str>,
    error: Option<String>,
    staff: bool,
    engagement_id: String,
    engagement_name: String,
    client_id: String,
    client_name: String,
    pack: String,
    ready: bool,
    ready_badge: Badge,
    blockers: Vec<BlockerRow>,
    left_out: Vec<BlockerRow>,
    entries: Vec<EntryRow>,
    files: Vec<FileRow>,
    figures: Option<Figures>,
    exports: Vec<ExportRow>,
}

/// A duration as people read it: `45 min`, `3.2 h`, `2.1 days`.
pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 3600.0 => format!("{:.0} min", (s / 60.0).max(0.0)),
        Some(s) if s < 2.0 * 86_400.0 => format!("{:.1} h", s / 3600.0),
        Some(s) => format!("{:.1} days", s / 86_400.0),
    }
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn page_of(d: DeliveryOut, caller: &Caller, layout: Layout) -> DeliveryPage {
    let v = d.delivery;
    let eng = v.engagement.id.to_string();
    let staff = caller.is_staff();
    let blockers = v
        .blockers
        .iter()
        .map(|b| {
            let (badge, href, action) = match (b.kind, b.artifact_id) {
                (BlockerKind::Missing, _) => (
                    Badge {
                        tone: "neutral",
                        words: "missing".into(),
                    },
                    staff.then(|| format!("/engagements/{eng}/new/{}", b.artifact_type)),
                    "Create it",
                ),
                (_, Some(a)) => (
                    Badge::of(b.status.map(|s| s.as_str()).unwrap_or("draft")),
                    Some(format!("/artifacts/{a}")),
                    "Open it",
                ),
                (_, None) => (Badge::of("draft"), None, ""),
            };
            BlockerRow {
                badge,
                message: b.message.clone(),
                href,
                action,
            }
        })
        .collect();
    let left_out = v
        .left_out
        .iter()
        .map(|l| BlockerRow {
            badge: Badge::of(l.status.as_str()),
            message: l.message.clone(),
            href: Some(format!("/artifacts/{}", l.artifact_id)),
            action: "Open it",
        })
        .collect();
    let entries = v
        .manifest
        .iter()
        .map(|m| EntryRow {
            id: m.artifact_id.to_string(),
            artifact_type: m.artifact_type.clone(),
            title: m.title.clone(),
            version: m.version,
            badge: Badge::of(m.status.as_str()),
            approved: match (&m.approved_by, m.approved_at) {
                (Some(by), Some(at)) => format!("{by}, {}", when(at)),
                (None, Some(at)) => when(at),
                _ => "—".into(),
            },
            hash: m.content_hash.clone(),
            short_hash: short(&m.content_hash),
        })
        .collect();
    let files = v
        .files
        .iter()
        .map(|f| FileRow {
            id: f.id.to_string(),
            name: f.name.clone(),
            size: super::files::size(f.size),
            short_hash: short(&f.sha256),
        })
        .collect();
    let figures = v.analytics.as_ref().map(|a| Figures {
        by_status: a
            .by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (Badge::of(s), *n))
            .collect(),
        stale: a.stale,
        rounds: a.review_turnaround.count,
        approved: a.review_turnaround.approved,
        sent_back: a.review_turnaround.sent_back,
        median: duration(a.review_turnaround.median_s),
        p90: duration(a.review_turnaround.p90_s),
    });
    let exports = d
        .exports
        .iter()
        .map(|x| ExportRow {
            id: x.export.id.to_string(),
            when: when(x.export.created_at),
            by: x.export.created_by_name.clone(),
            artifacts: x.export.artifacts,
            files: x.export.files,
            size: super::files::size(x.export.size),
            short_hash: short(&x.export.sha256),
            href: format!("/engagements/{eng}/exports/{}/download", x.export.id),
        })
        .collect();
    DeliveryPage {
        layout,
        notice: None,
        error: None,
        staff,
        engagement_name: v.engagement.name.clone(),
        client_id: v.engagement.client_id.to_string(),
        client_name: v.engagement.client_name.clone(),
        pack: v.engagement.pack.clone(),
        ready: v.ready,
        ready_badge: if v.ready {
            Badge {
                tone: "ok",
                words: "ready to export".into(),
            }
        } else {
            Badge::of("blocked")
        },
        blockers,
        left_out,
        entries,
        files,
        figures,
        exports,
        engagement_id: eng,
    }
}

async fn delivery_page(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: String,
) -> Result<DeliveryPage, PageError> {
    let JsonOut(d) =
        routes::delivery::get_delivery(State(state.clone()), Extension(caller.clone()), Path(id))
            .await?;
    let title = format!("Delivery — {}", d.delivery.engagement.name);
    let layout = Layout::new(state, title, Some(caller), csrf, "clients").await?;
    Ok(page_of(d, caller, layout))
}

/// `GET /engagements/{id}/delivery`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<super::Done>,
) -> Result<Response, PageError> {
    let mut page = delivery_page(&state, &caller, &csrf, id).await?;
    page.notice = q.notice();
    render_status(axum::http::StatusCode::OK, &page)
}

/// The export form: the CSRF token only.
#[derive(Deserialize)]
pub struct ExportForm {}

/// `POST /engagements/{id}/exports`: export, then back to the page with a
/// notice; refused, the page again with the problem at its status.
pub async fn export(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(_): Form<ExportForm>,
) -> Result<Response, PageError> {
    let made = routes::delivery::create_export(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Path(id.clone()),
    )
    .await;
    match made {
        Ok((_, JsonOut(x))) => Ok(Redirect::to(&format!(
            "/engagements/{}/delivery?done=exported",
            x.export.engagement_id
        ))
        .into_response()),
        Err(
            e @ (ApiError::Conflict { .. } | ApiError::Forbidden(_) | ApiError::Unavailable(_)),
        ) => {
            let mut page = delivery_page(&state, &caller, &csrf, id).await?;
            page.error = Some(super::problem_text(&e));
            render_status(e.status(), &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /engagements/{id}/exports/{export_id}/download`: the ZIP, for a
/// signed-in person who may see the engagement.
pub async fn download(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    Ok(
        routes::delivery::download_export(State(state), Extension(caller), Path(ids), headers)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_minutes_hours_or_days() {
        assert_eq!(duration(None), "—");
        assert_eq!(duration(Some(90.0)), "2 min");
        assert_eq!(duration(Some(3.0 * 3600.0)), "3.0 h");
        assert_eq!(duration(Some(3.0 * 86_400.0)), "3.0 days");
    }
}
