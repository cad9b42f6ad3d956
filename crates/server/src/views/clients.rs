//! `/clients`, `/clients/{id}` and `/engagements/{id}` (the pipeline board).
//!
//! Reads go through the API's own handlers (`routes::clients::get_client`,
//! `routes::pipelines::board` ...), so a page shows exactly what the API would
//! answer the same person, with the same refusals.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use serde::Deserialize;
use waymark_store::{ArtifactFilter, Client, Engagement, PageRequest};

use super::artifacts::{Badge, when};
use super::csrf::CsrfCookie;
use super::home::{ArtifactRow, Listing};
use super::{Layout, PageError, Viewer, problem_text, render};
use crate::AppState;
use crate::extract::Query as ApiQuery;
use crate::routes::{self, PageParams};

/// A client as a row or a header: its signals in words.
pub struct ClientView {
    pub c: Client,
    pub signals: Vec<(&'static str, String)>,
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        let score = |v: Option<f64>| v.map(|v| format!("{v:.0} / 100"));
        let mut signals = Vec::new();
        if let Some(v) = score(c.health_score) {
            signals.push(("Health", v));
        }
        if let Some(v) = score(c.risk_score) {
            signals.push(("Risk", v));
        }
        if let Some(v) = score(c.opportunity_score) {
            signals.push(("Opportunity", v));
        }
        if let Some(arr) = c.arr {
            signals.push(("ARR", format!("{arr:.0}")));
        }
        if let Some(d) = c.renewal_date {
            signals.push(("Renewal", d.to_string()));
        }
        if let Some(o) = &c.owner {
            signals.push(("Owner", o.clone()));
        }
        ClientView { c, signals }
    }
}

#[derive(Template)]
#[template(path = "clients.html")]
struct ClientsPage {
    layout: Layout,
    staff: bool,
    clients: Vec<ClientView>,
    next: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct CursorQuery {
    cursor: Option<String>,
}

/// The clients page: a page of clients from `cursor`, with a refusal of the
/// "add a client" form when there was one.
async fn clients_page(
    state: &AppState,
    caller: &crate::auth::Caller,
    csrf: &CsrfCookie,
    cursor: Option<String>,
    error: Option<String>,
) -> Result<ClientsPage, PageError> {
    let JsonOut(page) = routes::clients::list_clients(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(PageParams {
            limit: Some(100),
            cursor,
        }),
    )
    .await?;
    Ok(ClientsPage {
        layout: Layout::new(state, "Clients", Some(caller), csrf, "clients").await?,
        staff: caller.is_staff(),
        clients: page.items.into_iter().map(ClientView::from).collect(),
        next: page.next_cursor,
        error,
    })
}

/// `GET /clients`: every client with its signals (a client user: their own).
pub async fn list(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Query(q): Query<CursorQuery>,
) -> Result<Response, PageError> {
    render(&clients_page(&state, &caller, &csrf, q.cursor, None).await?)
}

#[derive(Deserialize)]
pub struct NewClientForm {
    name: String,
    owner: Option<String>,
}

/// `POST /clients`: a new client, then its page.
pub async fn create(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<crate::observe::TraceId>,
    Viewer(caller): Viewer,
    super::csrf::Form(f): super::csrf::Form<NewClientForm>,
) -> Result<Response, PageError> {
    let body = serde_json::json!({
        "name": f.name,
        "owner": f.owner.filter(|o| !o.trim().is_empty()),
    });
    match routes::clients::create_client(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        axum::http::HeaderMap::new(),
        crate::extract::Json(body),
    )
    .await
    {
        Ok((_, JsonOut(c))) => Ok(axum::response::Redirect::to(&format!(
            "/clients/{}?done=created",
            c.id
        ))
        .into_response()),
        Err(
            e @ (crate::error::ApiError::Invalid { .. } | crate::error::ApiError::Forbidden(_)),
        ) => {
            let page = clients_page(&state, &caller, &csrf, None, Some(problem_text(&e))).await?;
            super::render_status(e.status(), &page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct NewEngagementForm {
    name: String,
    pack: String,
}

/// `POST /clients/{id}/engagements`: a new engagement, then its board.
pub async fn create_engagement(
    State(state): State<AppState>,
    Extension(trace): Extension<crate::observe::TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    super::csrf::Form(f): super::csrf::Form<NewEngagementForm>,
) -> Result<Response, PageError> {
    let body = serde_json::json!({"client_id": id, "name": f.name, "pack": f.pack});
    match routes::engagements::create_engagement(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        axum::http::HeaderMap::new(),
        crate::extract::Json(body),
    )
    .await
    {
        Ok((_, JsonOut(e))) => Ok(axum::response::Redirect::to(&format!(
            "/engagements/{}?done=created",
            e.id
        ))
        .into_response()),
        Err(e @ crate::error::ApiError::Invalid { .. }) => Err(PageError::BadRequest(format!(
            "The engagement could not be created: {}",
            problem_text(&e)
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A journey in a list.
pub struct JourneyRow {
    pub id: waymark_domain::JourneyId,
    pub name: String,
    pub template: String,
    pub badge: Badge,
    pub state: String,
    pub progress: String,
}

#[derive(Template)]
#[template(path = "client.html")]
struct ClientPage {
    layout: Layout,
    staff: bool,
    packs: Vec<String>,
    notice: Option<&'static str>,
    client: ClientView,
    engagements: Vec<Engagement>,
    journeys: Vec<JourneyRow>,
    open_tasks: usize,
    open_incidents: usize,
    artifacts: Listing<ArtifactRow>,
    files: Vec<super::files::FileRow>,
    upload: super::files::UploadTarget,
}

/// `GET /clients/{id}`: signals, engagements, journeys and their open work,
/// recent artifacts.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let JsonOut(client) = routes::clients::get_client(
        State(state.clone()),
        Extension(caller.clone()),
        Path(id.clone()),
    )
    .await?;
    let JsonOut(engagements) = routes::engagements::list_engagements(
        State(state.clone()),
        Extension(caller.clone()),
        ApiQuery(routes::engagements::EngagementQuery {
            client_id: Some(client.id.to_string()),
            limit: Some(100),
            cursor: None,
        }),
    )
    .await?;
    let (journeys, open_tasks, open_incidents) = if caller.is_staff() {
        let JsonOut(ops) = routes::journeys::client_operations(
            State(state.clone()),
            Extension(caller.clone()),
            Path(id),
        )
        .await?;
        let rows = ops
            .journeys
            .into_iter()
            .map(|o| journey_row(&o.journey, o.progress.stages_done, o.progress.stages_total))
            .collect();
        (rows, ops.open_tasks, ops.open_incidents)
    } else {
        let page = state
            .store
            .list_journeys(Some(client.id), None, PageRequest::default())
            .await?;
        let rows = page
            .items
            .iter()
            .map(|j| {
                let done = done_stages(j);
                journey_row(j, done, j.stages.len())
            })
            .collect();
        (rows, 0, 0)
    };
    let filter = ArtifactFilter {
        client_id: Some(client.id),
        shared_with: caller.client_scope(),
        ..Default::default()
    };
    let page = state
        .store
        .list_artifacts(
            filter,
            PageRequest {
                limit: 20,
                cursor: None,
            },
        )
        .await?;
    let artifacts = Listing {
        more: page.next_cursor.is_some(),
        items: page.items.into_iter().map(ArtifactRow::from).collect(),
    };
    let client_id = client.id;
    render(&ClientPage {
        layout: Layout::new(&state, client.name.clone(), Some(&caller), &csrf, "clients").await?,
        staff: caller.is_staff(),
        packs: if caller.is_staff() {
            state
                .packs
                .list()
                .await?
                .into_iter()
                .map(|(p, _)| p.name.clone())
                .collect()
        } else {
            vec![]
        },
        notice: q.notice(),
        client: client.into(),
        engagements: engagements.items,
        journeys,
        open_tasks,
        open_incidents,
        artifacts,
        files: super::files::listed(
            &state,
            waymark_store::FileFilter {
                client_id: Some(client_id),
                ..Default::default()
            },
        )
        .await?,
        upload: super::files::UploadTarget::new(&state, client_id.to_string(), None, None),
    })
}

/// A journey's row from the journey alone (its progress from its stage).
pub fn journey_progress_row(j: &waymark_store::Journey) -> JourneyRow {
    journey_row(j, done_stages(j), j.stages.len())
}

/// Stages a journey has finished: those before its current one (all when completed).
pub fn done_stages(j: &waymark_store::Journey) -> usize {
    match j.state.as_str() {
        "completed" => j.stages.len(),
        _ => j
            .stage
            .as_ref()
            .and_then(|s| j.stages.iter().position(|x| x == s))
            .unwrap_or(0),
    }
}

fn journey_row(j: &waymark_store::Journey, done: usize, total: usize) -> JourneyRow {
    let state = if j.paused {
        "paused".to_owned()
    } else {
        j.state.clone()
    };
    JourneyRow {
        id: j.id,
        name: j.name.clone(),
        template: j.template.clone(),
        badge: Badge::of(journey_tone_word(&state)),
        state,
        progress: format!("{done} of {total} stages"),
    }
}

/// The status word whose tone a journey state takes: a stage is `active`.
pub fn journey_tone_word(state: &str) -> &str {
    match state {
        "pending" | "completed" | "cancelled" | "paused" | "rolling_back" => {
            if state == "rolling_back" {
                "rolled_back"
            } else {
                state
            }
        }
        _ => "active",
    }
}

/// A column of the board as shown.
pub struct ColumnView {
    pub col: routes::pipelines::BoardColumn,
    pub badge: Badge,
    pub plan_job: bool,
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    layout: Layout,
    engagement: Engagement,
    client: Client,
    columns: Vec<ColumnView>,
    has_plan: bool,
    notice: Option<&'static str>,
    files: Vec<super::files::FileRow>,
    upload: super::files::UploadTarget,
}

/// `GET /engagements/{id}`: the pipeline board.
pub async fn board(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let JsonOut(board) =
        routes::pipelines::board(State(state.clone()), Extension(caller.clone()), Path(id)).await?;
    let engagement = state.store.get_engagement(board.engagement_id).await?;
    let client = state.store.get_client(engagement.client_id).await?;
    let pack = state.packs.get(&board.pack).await?;
    let plan_types: Vec<String> = pack
        .as_ref()
        .and_then(|p| p.plan.as_ref())
        .map(|p| p.modules.iter().map(|m| m.artifact_type.clone()).collect())
        .unwrap_or_default();
    let columns = board
        .columns
        .into_iter()
        .map(|col| {
            let word = match &col.artifact {
                Some(a) => a.status.as_str(),
                None if col.gating.allowed => "missing",
                None => "locked",
            };
            ColumnView {
                badge: Badge::of(word),
                plan_job: plan_types.contains(&col.artifact_type),
                col,
            }
        })
        .collect();
    render(&BoardPage {
        layout: Layout::new(
            &state,
            engagement.name.clone(),
            Some(&caller),
            &csrf,
            "clients",
        )
        .await?,
        has_plan: !plan_types.is_empty(),
        files: super::files::listed(
            &state,
            waymark_store::FileFilter {
                engagement_id: Some(engagement.id),
                ..Default::default()
            },
        )
        .await?,
        upload: super::files::UploadTarget::new(
            &state,
            client.id.to_string(),
            Some(engagement.id.to_string()),
            None,
        ),
        engagement,
        client,
        columns,
        notice: q.notice(),
    })
}

/// When an artifact row was last touched, for templates.
pub fn updated(a: &waymark_store::ArtifactSummary) -> String {
    when(a.updated_at)
}
