//! `/`: the operator's dashboard (reviews waiting on the client, stale work
//! with its root cause, open incidents, human tasks), or, for a client user,
//! the portal home (what was shared with them, what waits for their decision).

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::work::TaskStatus;
use waymark_store::{ArtifactFilter, ArtifactSummary, Incident, PageRequest, Task, TaskFilter};

use super::artifacts::{Badge, when};
use super::csrf::CsrfCookie;
use super::{Layout, PageError, Viewer, render};
use crate::AppState;

/// How many of each list the dashboard shows.
const SHOWN: u32 = 20;

/// An artifact in a list.
pub struct ArtifactRow {
    pub a: ArtifactSummary,
    pub badge: Badge,
    pub updated: String,
}

impl From<ArtifactSummary> for ArtifactRow {
    fn from(a: ArtifactSummary) -> Self {
        ArtifactRow {
            badge: Badge::of(a.status.as_str()),
            updated: when(a.updated_at),
            a,
        }
    }
}

/// A list with how many there are in all (or that there are more).
pub struct Listing<T> {
    pub items: Vec<T>,
    pub more: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    layout: Layout,
    in_review: Listing<ArtifactRow>,
    stale: Listing<ArtifactRow>,
    drafts: Listing<ArtifactRow>,
    incidents: Listing<Incident>,
    tasks: Listing<Task>,
}

#[derive(Template)]
#[template(path = "portal.html")]
struct Portal {
    layout: Layout,
    waiting: Listing<ArtifactRow>,
    shared: Listing<ArtifactRow>,
    journeys: Vec<super::clients::JourneyRow>,
}

fn first(n: u32) -> PageRequest {
    PageRequest {
        limit: n,
        cursor: None,
    }
}

async fn artifacts(
    state: &AppState,
    filter: ArtifactFilter,
) -> Result<Listing<ArtifactRow>, PageError> {
    let page = state.store.list_artifacts(filter, first(SHOWN)).await?;
    Ok(Listing {
        more: page.next_cursor.is_some(),
        items: page.items.into_iter().map(ArtifactRow::from).collect(),
    })
}

/// `GET /`.
pub async fn home(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
) -> Result<Response, PageError> {
    if !caller.is_staff() {
        let client = caller.client_scope();
        let shared = |status| ArtifactFilter {
            client_id: client,
            shared_with: client,
            status,
            ..Default::default()
        };
        let journeys = match client {
            Some(c) => state
                .store
                .list_journeys(Some(c), None, first(50))
                .await?
                .items
                .iter()
                .map(super::clients::journey_progress_row)
                .collect(),
            None => vec![],
        };
        return render(&Portal {
            layout: Layout::new(&state, "Home", Some(&caller), &csrf, "home").await?,
            waiting: artifacts(&state, shared(Some(ArtifactStatus::InReview))).await?,
            shared: artifacts(&state, shared(None)).await?,
            journeys,
        });
    }
    let of = |status| ArtifactFilter {
        status: Some(status),
        ..Default::default()
    };
    let incidents = state.store.list_incidents(true, None, first(SHOWN)).await?;
    let tasks = state
        .store
        .list_tasks(
            TaskFilter {
                status: Some(TaskStatus::Ready),
                executor: Some("human".into()),
                ..Default::default()
            },
            first(SHOWN),
        )
        .await?;
    render(&Dashboard {
        layout: Layout::new(&state, "Dashboard", Some(&caller), &csrf, "home").await?,
        in_review: artifacts(&state, of(ArtifactStatus::InReview)).await?,
        stale: artifacts(&state, of(ArtifactStatus::Stale)).await?,
        drafts: artifacts(&state, of(ArtifactStatus::Draft)).await?,
        incidents: Listing {
            more: incidents.next_cursor.is_some(),
            items: incidents.items,
        },
        tasks: Listing {
            more: tasks.next_cursor.is_some(),
            items: tasks.items,
        },
    })
}
