//! `/`: the operator's dashboard (the first items of their queue, reviews
//! waiting on the client, stale work with its root cause, open incidents,
//! human tasks), or, for a client user,
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

/// A journey that needs attention, and why.
pub struct RiskRow {
    pub id: waymark_domain::JourneyId,
    pub name: String,
    pub why: String,
}

/// The first items of the operator's queue.
pub struct MyQueue {
    pub items: Vec<super::queue::ItemRow>,
    pub total: i64,
    pub overdue: i64,
    /// More than the items shown.
    pub more: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    layout: Layout,
    queue: Option<MyQueue>,
    at_risk: Vec<RiskRow>,
    rejected: Vec<ArtifactRow>,
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
        queue: my_queue(&state, &caller).await?,
        at_risk: journeys_at_risk(&state).await?,
        rejected: rejected(&state).await?,
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

/// The first items of the caller's queue, through the queue's API; none
/// when the caller has no queue.
async fn my_queue(
    state: &AppState,
    caller: &crate::auth::Caller,
) -> Result<Option<MyQueue>, PageError> {
    use crate::routes::playbooks::{QueueQuery, get_queue};
    let answer = get_queue(
        axum::extract::State(state.clone()),
        Extension(caller.clone()),
        axum::extract::Path("me".to_owned()),
        crate::extract::Query(QueueQuery {
            template: None,
            stage: None,
            limit: Some(super::queue::DASHBOARD_ITEMS),
            cursor: None,
        }),
    )
    .await;
    let answer = match answer {
        Ok(axum::Json(a)) => a,
        Err(crate::error::ApiError::Forbidden(_) | crate::error::ApiError::NotFound(_)) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let templates = super::queue::templates(state).await?;
    let today = state.clock.now().date();
    Ok(Some(MyQueue {
        more: answer.next_cursor.is_some(),
        total: answer.stats.total,
        overdue: answer.stats.overdue,
        items: answer
            .items
            .into_iter()
            .map(|v| super::queue::ItemRow::new(v, &templates, today))
            .collect(),
    }))
}

/// Journeys under way that need attention (see `domain::journey::at_risk`),
/// among the newest 500.
async fn journeys_at_risk(state: &AppState) -> Result<Vec<RiskRow>, PageError> {
    let now = time::OffsetDateTime::now_utc();
    let page = state.store.list_journeys(None, None, first(500)).await?;
    Ok(page
        .items
        .iter()
        .filter_map(|j| {
            let position = j.position();
            let stage = position.stage.and_then(|i| j.definition.stages.get(i));
            let failed = j
                .last_validation
                .as_ref()
                .and_then(|v| v.checks.iter().find(|c| c.blocks()).map(|c| c.name.clone()));
            let in_stage = j
                .stage_started_at
                .and_then(|t| std::time::Duration::try_from(now - t).ok());
            waymark_domain::journey::at_risk(&position, stage, failed.as_deref(), in_stage).map(
                |why| RiskRow {
                    id: j.id,
                    name: j.name.clone(),
                    why,
                },
            )
        })
        .take(SHOWN as usize)
        .collect())
}

/// Drafts rejected by their reviewers (among the latest 2,000 events) that
/// are still drafts: the rework waiting for the team.
async fn rejected(state: &AppState) -> Result<Vec<ArtifactRow>, PageError> {
    let last = state.store.last_event_seq().await?;
    let events = state
        .store
        .events_after(
            (last - 2_000).max(0),
            waymark_store::EventScope::Staff,
            2_000,
        )
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for e in events
        .iter()
        .rev()
        .filter(|e| e.event_type == "artifact.rejected")
    {
        let Some(id) = e
            .data
            .get("artifact_id")
            .and_then(|v| v.as_str())
            .unwrap_or(&e.subject)
            .parse::<waymark_domain::ArtifactId>()
            .ok()
        else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        match state.store.get_artifact_summary(id).await {
            Ok(a) if a.status == ArtifactStatus::Draft => rows.push(ArtifactRow::from(a)),
            Ok(_) | Err(waymark_store::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if rows.len() >= SHOWN as usize {
            break;
        }
    }
    Ok(rows)
}
