//! `/artifacts/{id}`: the content as a document with its comments by section,
//! the status actions allowed now (and why the others are not), versions, the
//! side-by-side diff, lineage and stale causes. Client users see the same URL
//! without internal comments and operator actions; a review link sees it at
//! `/review/{token}` (see [`super::review`]).

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, CommentId};
use waymark_store::{Artifact, Comment, CommentKind, PageRequest, ReviewLink, Version};

use super::csrf::{CsrfCookie, Form};
use super::document::{self, Row, Section};
use super::tone::{tone, words};
use super::{Layout, PageError, Viewer, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Json, MaybeJson};
use crate::observe::TraceId;
use crate::routes::{self, artifacts::visible_artifact};

/// A date and time as pages show it: `2026-12-02 16:40 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A status badge's parts.
pub struct Badge {
    pub tone: &'static str,
    pub words: String,
}

impl Badge {
    pub fn of(status: &str) -> Badge {
        Badge {
            tone: tone(status),
            words: words(status),
        }
    }
}

/// A comment as shown, with its replies.
pub struct CommentView {
    pub id: CommentId,
    pub author: String,
    pub kind: &'static str,
    pub body: String,
    pub internal: bool,
    pub version: i64,
    pub at: String,
    pub resolved: bool,
    pub replies: Vec<CommentView>,
}

/// One section of the document with the comments anchored to it.
pub struct SectionView {
    pub section: Section,
    pub comments: Vec<CommentView>,
}

/// A status action: allowed now, or why not.
pub struct ActionView {
    pub to: &'static str,
    pub label: &'static str,
    pub allowed: bool,
    pub why_not: String,
}

/// A line of the lineage.
pub struct LineageRow {
    pub id: ArtifactId,
    pub title: String,
    pub kind: String,
    pub badge: Badge,
    pub version: i64,
    pub depth: i64,
}

/// A stale cause down to its root.
pub struct CauseView {
    pub sentence: String,
    pub dependency: ArtifactId,
    pub root: ArtifactId,
    pub root_type: String,
}

#[derive(Template)]
#[template(path = "artifact.html")]
pub struct ArtifactPage {
    pub layout: Layout,
    pub a: Artifact,
    pub badge: Badge,
    pub updated: String,
    /// Where the forms post: `/artifacts/{id}` or `/review/{token}`.
    pub base: String,
    pub staff: bool,
    /// A review link's page (no navigation, no other pages).
    pub via_link: bool,
    pub sections: Vec<SectionView>,
    pub general: Vec<CommentView>,
    pub versions: Vec<Version>,
    pub actions: Vec<ActionView>,
    pub can_decide: bool,
    pub approvals: String,
    pub lineage_up: Vec<LineageRow>,
    pub lineage_down: Vec<LineageRow>,
    /// The lineage drawn as a graph (operators; empty without lineage).
    pub lineage_svg: String,
    pub causes: Vec<CauseView>,
    pub links: Vec<ReviewLink>,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
    /// Rule warnings of the latest version (operators only; they never block).
    pub warnings: Vec<String>,
    /// What changed since the version this viewer last commented on or decided.
    pub since: Option<(i64, Vec<Row>)>,
    /// The files attached to it, and where the upload form sends new ones
    /// (none on a review link's page).
    pub files: Vec<super::files::FileRow>,
    pub upload: Option<super::files::UploadTarget>,
}

impl ArtifactPage {
    /// Everything the page shows of artifact `id` to `caller`.
    pub async fn build(
        state: &AppState,
        caller: &Caller,
        csrf: &CsrfCookie,
        id: ArtifactId,
        base: String,
        seen: Option<i64>,
    ) -> Result<ArtifactPage, PageError> {
        let a = visible_artifact(state, caller, id).await?;
        let staff = caller.is_staff();
        let comments = all_comments(state, id, staff).await?;
        let versions = state
            .store
            .list_versions(
                id,
                PageRequest {
                    limit: 200,
                    cursor: None,
                },
            )
            .await?
            .items;
        let policy = routes::artifacts::policy_of(state, &a.summary).await?;
        let review = state.store.review_state(id, policy).await?;
        let approvals = format!(
            "{} of {} approval{} in this round",
            review.approvals.len(),
            review.required.max(1),
            if review.required.max(1) == 1 { "" } else { "s" }
        );
        let mut lineage_svg = String::new();
        let (lineage_up, lineage_down, links) = if staff {
            let l = state.store.lineage(id, 200).await?;
            if !l.upstream.is_empty() || !l.downstream.is_empty() {
                lineage_svg = lineage_graph(&a, &l);
            }
            let rows = |nodes: Vec<waymark_store::LineageNode>| {
                nodes
                    .into_iter()
                    .map(|n| LineageRow {
                        id: n.artifact_id,
                        title: n.title,
                        kind: n.artifact_type,
                        badge: Badge::of(n.status.as_str()),
                        version: n.version,
                        depth: n.depth,
                    })
                    .collect::<Vec<_>>()
            };
            (
                rows(l.upstream),
                rows(l.downstream),
                state.store.list_review_links(id).await?,
            )
        } else {
            (vec![], vec![], vec![])
        };
        let warnings = if staff {
            routes::artifacts::warnings_of(state, &a).await?
        } else {
            vec![]
        };
        let causes = a
            .summary
            .stale_causes
            .iter()
            .map(|c| CauseView {
                sentence: c.sentence(),
                dependency: c.dependency,
                root: c.root.artifact_id,
                root_type: c.root.artifact_type.clone(),
            })
            .collect();

        // What this viewer last looked at: the newest version they saw (this
        // browser's cookie), commented on or approved, when older than the latest.
        let me = caller.actor();
        let mut last_seen = comments
            .iter()
            .filter(|c| c.author == me)
            .map(|c| c.version)
            .chain(seen)
            .max();
        if let Some(v) = review
            .approvals
            .iter()
            .filter(|p| p.approver == me)
            .map(|p| p.version)
            .max()
        {
            last_seen = Some(last_seen.map_or(v, |l| l.max(v)));
        }
        let since = match last_seen {
            Some(v) if v < a.summary.version => {
                let old = state.store.get_version(id, v).await?;
                Some((v, document::diff_rows(&old.content, &a.content)))
            }
            _ => None,
        };

        let mut sections = document::sections(&a.content);
        // In the order of the type's schema (PostgreSQL keeps JSON keys in
        // its own order); fields the schema does not name come after.
        let order = routes::artifacts::section_order(state, &a.summary).await?;
        if !order.is_empty() {
            sections.sort_by_key(|s| {
                order
                    .iter()
                    .position(|k| s.pointer == format!("/{}", document::pointer_token(k)))
                    .unwrap_or(usize::MAX)
            });
        }
        let (sections, general) = place_comments(sections, comments);
        let (files, upload) = if caller.link.is_some() {
            (Vec::new(), None)
        } else {
            let files = super::files::listed(
                state,
                waymark_store::FileFilter {
                    artifact_id: Some(a.summary.id),
                    ..Default::default()
                },
            )
            .await?;
            let upload = super::files::UploadTarget::new(
                state,
                a.summary.client_id.to_string(),
                a.summary.engagement_id.map(|e| e.to_string()),
                Some(a.summary.id.to_string()),
            );
            (files, Some(upload))
        };
        let layout = Layout::new(
            state,
            a.summary.title.clone(),
            Some(caller),
            csrf,
            if staff { "clients" } else { "home" },
        )
        .await?;
        Ok(ArtifactPage {
            layout,
            badge: Badge::of(a.summary.status.as_str()),
            updated: when(a.summary.updated_at),
            base,
            staff,
            via_link: caller.link.is_some(),
            sections,
            general,
            versions,
            actions: if staff {
                actions(a.summary.status)
            } else {
                vec![]
            },
            can_decide: a.summary.status == ArtifactStatus::InReview,
            approvals,
            lineage_up,
            lineage_down,
            lineage_svg,
            causes,
            links,
            notice: None,
            error: None,
            warnings,
            since,
            files,
            upload,
            a,
        })
    }
}

impl ArtifactPage {
    /// The latest content as indented JSON, for the "Raw JSON" view.
    pub fn raw_json(&self) -> String {
        serde_json::to_string_pretty(&self.a.content).unwrap_or_default()
    }
}

/// An artifact's lineage as a graph: what it was built from, on its left;
/// what was built on it, on its right; each node linked to its page.
fn lineage_graph(a: &Artifact, l: &waymark_store::Lineage) -> String {
    use super::graph::{Edge, Node};
    let node = |id: ArtifactId, title: &str, ty: &str, status: &str, v: i64| Node {
        id: id.to_string(),
        label: title.to_owned(),
        detail: format!("{ty} v{v}"),
        status: status.to_owned(),
        href: Some(format!("/artifacts/{id}")),
    };
    let mut nodes = vec![node(
        a.summary.id,
        &a.summary.title,
        &a.summary.artifact_type,
        a.summary.status.as_str(),
        a.summary.version,
    )];
    let mut edges = Vec::new();
    for n in &l.upstream {
        nodes.push(node(
            n.artifact_id,
            &n.title,
            &n.artifact_type,
            n.status.as_str(),
            n.version,
        ));
        edges.push(Edge {
            from: n.artifact_id.to_string(),
            to: n.via.artifact_id.to_string(),
        });
    }
    for n in &l.downstream {
        nodes.push(node(
            n.artifact_id,
            &n.title,
            &n.artifact_type,
            n.status.as_str(),
            n.version,
        ));
        edges.push(Edge {
            from: n.via.artifact_id.to_string(),
            to: n.artifact_id.to_string(),
        });
    }
    super::graph::svg(&format!("Lineage of {}", a.summary.title), &nodes, &edges)
}

/// Every comment the viewer may see, oldest first.
async fn all_comments(
    state: &AppState,
    id: ArtifactId,
    staff: bool,
) -> Result<Vec<Comment>, PageError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_comments(id, staff, PageRequest { limit: 200, cursor })
            .await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) if out.len() < 5000 => cursor = Some(c),
            _ => break,
        }
    }
    Ok(out)
}

/// Comments into threads, each thread under its section (or with the general
/// ones when it names none, or a section the latest version no longer has).
fn place_comments(
    sections: Vec<Section>,
    comments: Vec<Comment>,
) -> (Vec<SectionView>, Vec<CommentView>) {
    let mut replies: HashMap<CommentId, Vec<CommentView>> = HashMap::new();
    let mut roots = Vec::new();
    // Replies hang under their thread's first comment.
    let mut thread_of: HashMap<CommentId, CommentId> = HashMap::new();
    for c in comments {
        let view = CommentView {
            id: c.id,
            author: c.author_name.clone(),
            kind: match c.kind {
                CommentKind::Comment => "comment",
                CommentKind::Share => "shared",
                CommentKind::Rejection => "rejection",
            },
            body: c.body.clone(),
            internal: c.internal,
            version: c.version,
            at: when(c.created_at),
            resolved: c.resolved_at.is_some(),
            replies: vec![],
        };
        match c.parent_id.and_then(|p| thread_of.get(&p).copied()) {
            Some(root) => {
                thread_of.insert(c.id, root);
                replies.entry(root).or_default().push(view);
            }
            None => {
                thread_of.insert(c.id, c.id);
                roots.push((c.section.clone(), view));
            }
        }
    }
    let mut views: Vec<SectionView> = sections
        .into_iter()
        .map(|section| SectionView {
            section,
            comments: vec![],
        })
        .collect();
    let mut general = Vec::new();
    for (section, mut view) in roots {
        view.replies = replies.remove(&view.id).unwrap_or_default();
        // A comment on `/phases/2` belongs to the `/phases` section.
        let target = section.as_deref().and_then(|s| {
            views.iter_mut().find(|v| {
                !v.section.pointer.is_empty()
                    && (s == v.section.pointer || s.starts_with(&format!("{}/", v.section.pointer)))
            })
        });
        match target {
            Some(v) => v.comments.push(view),
            None => general.push(view),
        }
    }
    (views, general)
}

/// The operator's status actions, each allowed by the lifecycle from this
/// status or not (with the statuses it is allowed from).
fn actions(status: ArtifactStatus) -> Vec<ActionView> {
    use ArtifactStatus::*;
    const ALL: [(ArtifactStatus, &str); 5] = [
        (Draft, "Reopen as draft"),
        (Approved, "Re-approve as it is"),
        (Implemented, "Implement"),
        (Cancelled, "Cancel"),
        (Archived, "Archive"),
    ];
    ALL.into_iter()
        // From review, approval goes through the reviewers' approvals.
        .filter(|(to, _)| !(*to == Approved && status == InReview))
        .map(|(to, label)| {
            let allowed = status.next().contains(&to);
            let from: Vec<String> = ArtifactStatus::ALL
                .iter()
                .filter(|s| s.next().contains(&to))
                .map(|s| words(s.as_str()))
                .collect();
            ActionView {
                to: to.as_str(),
                label,
                allowed,
                why_not: if allowed {
                    String::new()
                } else {
                    format!(
                        "only from {}; this artifact is {}",
                        from.join(" or "),
                        words(status.as_str())
                    )
                },
            }
        })
        .collect()
}

/// `GET /artifacts/{id}`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<super::Done>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let mut page = ArtifactPage::build(
        &state,
        &caller,
        &csrf,
        id,
        format!("/artifacts/{id}"),
        seen_version(&headers, id),
    )
    .await?;
    page.notice = q.notice();
    let latest = page.a.summary.version;
    Ok(remember_seen(render(&page)?, id, latest))
}

/// The cookie remembering which version of an artifact this browser saw.
fn seen_cookie_name(id: ArtifactId) -> String {
    format!("waymark_seen_{}", id.uuid().simple())
}

/// The version of `id` this browser last saw, if it did.
pub fn seen_version(headers: &HeaderMap, id: ArtifactId) -> Option<i64> {
    super::csrf::cookie_value(headers, &seen_cookie_name(id))?
        .parse()
        .ok()
}

/// Remembers in this browser that it saw `version` of `id` (a year), so the
/// next visit after a new version opens on what changed.
pub fn remember_seen(mut res: Response, id: ArtifactId, version: i64) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!(
        "{}={version}; HttpOnly; SameSite=Lax; Path=/; Max-Age=31536000",
        seen_cookie_name(id)
    )) {
        res.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    res
}

/// The page again with what went wrong, at the error's status.
pub async fn refused(
    state: &AppState,
    caller: &Caller,
    csrf: &CsrfCookie,
    id: ArtifactId,
    base: String,
    e: ApiError,
) -> Result<Response, PageError> {
    if matches!(
        e,
        ApiError::NotFound(_) | ApiError::Internal(_) | ApiError::Unavailable(_)
    ) {
        return Err(e.into());
    }
    let status = e.status();
    let mut page = ArtifactPage::build(state, caller, csrf, id, base, None).await?;
    page.error = Some(super::problem_text(&e));
    render_status(status, &page)
}

/// After an action: the page it came from, with a notice.
pub fn done(base: &str, what: &str) -> Response {
    Redirect::to(&format!("{base}?done={what}")).into_response()
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    layout: Layout,
    a: Artifact,
    v: Version,
    sections: Vec<Section>,
}

/// `GET /artifacts/{id}/versions/{n}`: one version as a document.
pub async fn version_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::NotFound("no such version".into()))?;
    let v = state.store.get_version(id, n).await?;
    render(&VersionPage {
        layout: Layout::new(
            &state,
            format!("{} — v{n}", a.summary.title),
            Some(&caller),
            &csrf,
            "clients",
        )
        .await?,
        sections: document::sections(&v.content),
        a,
        v,
    })
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    layout: Layout,
    a: Artifact,
    from: i64,
    to: i64,
    versions: Vec<i64>,
    rows: Vec<Row>,
    changes: usize,
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /artifacts/{id}/diff?from=&to=`: two versions side by side.
pub async fn diff_page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let latest = a.summary.version;
    let number = |s: Option<&str>, default: i64| -> Result<i64, PageError> {
        match s.filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=latest).contains(n))
                .ok_or_else(|| {
                    PageError::BadRequest(format!(
                        "Versions of this artifact go from 1 to {latest}."
                    ))
                }),
        }
    };
    let to = number(q.to.as_deref(), latest)?;
    let from = number(q.from.as_deref(), (to - 1).max(1))?;
    let old = state.store.get_version(id, from).await?;
    let new = state.store.get_version(id, to).await?;
    let rows = document::diff_rows(&old.content, &new.content);
    let changes = rows.iter().filter(|r| !matches!(r, Row::Same(_))).count();
    render(&DiffPage {
        layout: Layout::new(
            &state,
            format!("{} — v{from} → v{to}", a.summary.title),
            Some(&caller),
            &csrf,
            "clients",
        )
        .await?,
        a,
        from,
        to,
        versions: (1..=latest).collect(),
        rows,
        changes,
    })
}

/// `GET /artifacts/{id}/raw`: the latest content as JSON, for whoever may see it.
pub async fn raw(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let a = visible_artifact(&state, &caller, id).await?;
    let body = serde_json::to_string_pretty(&a.content).unwrap_or_default();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct ShareForm {
    message: Option<String>,
}

/// Calls an API handler for a form and answers the page: on to it with a
/// notice, or the page again with the problem.
macro_rules! act {
    ($state:expr, $caller:expr, $csrf:expr, $id:expr, $base:expr, $what:expr, $call:expr) => {
        match $call.await {
            Ok(_) => Ok(done(&$base, $what)),
            Err(e) => refused(&$state, &$caller, &$csrf, $id, $base, e).await,
        }
    };
}
pub(crate) use act;

/// A signed-in person's form post on an artifact's page, done by `$call`
/// (shared with the review link's page, which finds its caller otherwise).
macro_rules! page_action {
    ($name:ident, $route:literal, $form:ty, $what:literal, $call:ident) => {
        #[doc = concat!("`POST /artifacts/{id}/", $route, "`.")]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(csrf): Extension<CsrfCookie>,
            Extension(trace): Extension<TraceId>,
            Viewer(caller): Viewer,
            Path(id): Path<String>,
            Form(f): Form<$form>,
        ) -> Result<Response, PageError> {
            let id: ArtifactId = crate::extract::path_id(&id)?;
            let base = format!("/artifacts/{id}");
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

page_action!(approve, "approve", ApproveForm, "approved", approve_as);
page_action!(reject, "reject", RejectForm, "rejected", reject_as);
page_action!(comment, "comments", CommentForm, "commented", comment_as);

/// `POST /artifacts/{id}/share`.
pub async fn share(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<ShareForm>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let base = format!("/artifacts/{id}");
    act!(
        state,
        caller,
        csrf,
        id,
        base,
        "shared",
        routes::review::share(
            State(state.clone()),
            Extension(caller.clone()),
            Extension(trace),
            Path(id.to_string()),
            Json(routes::review::ShareRequest { message: f.message })
        )
    )
}

#[derive(Deserialize)]
pub struct ApproveForm {
    pub version: i64,
    pub content_hash: String,
}

/// Approves through the API's handler.
pub async fn approve_as(
    state: &AppState,
    caller: &Caller,
    trace: TraceId,
    id: ArtifactId,
    f: ApproveForm,
) -> Result<(), ApiError> {
    routes::review::approve(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.to_string()),
        Json(routes::review::ApproveRequest {
            version: f.version,
            content_hash: Some(f.content_hash),
        }),
    )
    .await
    .map(|_| ())
}

#[derive(Deserialize)]
pub struct RejectForm {
    pub reason: String,
}

/// Rejects through the API's handler.
pub async fn reject_as(
    state: &AppState,
    caller: &Caller,
    trace: TraceId,
    id: ArtifactId,
    f: RejectForm,
) -> Result<(), ApiError> {
    routes::review::reject(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        Path(id.to_string()),
        Json(routes::review::RejectRequest { reason: f.reason }),
    )
    .await
    .map(|_| ())
}

#[derive(Deserialize)]
pub struct CommentForm {
    pub body: String,
    pub section: Option<String>,
    pub parent_id: Option<String>,
    pub internal: Option<String>,
}

/// Comments through the API's handler.
pub async fn comment_as(
    state: &AppState,
    caller: &Caller,
    trace: TraceId,
    id: ArtifactId,
    f: CommentForm,
) -> Result<(), ApiError> {
    let parent_id = match f.parent_id.filter(|p| !p.is_empty()) {
        Some(p) => Some(p.parse::<CommentId>().map_err(|_| {
            ApiError::invalid(waymark_domain::FieldError::new(
                "/parent_id",
                "is not a comment id",
            ))
        })?),
        None => None,
    };
    routes::review::add_comment(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace),
        HeaderMap::new(),
        Path(id.to_string()),
        Json(routes::review::CommentRequest {
            body: f.body,
            section: f.section.filter(|s| !s.is_empty()),
            parent_id,
            version: None,
            internal: f.internal.is_some(),
        }),
    )
    .await
    .map(|_| ())
}

#[derive(Deserialize)]
pub struct TransitionForm {
    to: String,
    reason: Option<String>,
}

/// `POST /artifacts/{id}/transition`: a status action. Implementing a type
/// that names a journey creates the journey.
pub async fn transition(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<TransitionForm>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let base = format!("/artifacts/{id}");
    let Ok(to) = serde_json::from_value::<ArtifactStatus>(Value::String(f.to)) else {
        return Err(PageError::BadRequest("There is no such status.".into()));
    };
    let request = routes::artifacts::Transition {
        to,
        reason: f.reason.filter(|r| !r.trim().is_empty()),
        override_policy: false,
    };
    let moved = routes::artifacts::transition(
        State(state.clone()),
        Extension(caller.clone()),
        Extension(trace.clone()),
        Path(id.to_string()),
        Json(request),
    )
    .await;
    let moved = match moved {
        Err(ApiError::Conflict {
            code: "implement_instead",
            ..
        }) => routes::journeys::implement(
            State(state.clone()),
            Extension(caller.clone()),
            Extension(trace),
            HeaderMap::new(),
            Path(id.to_string()),
            MaybeJson(Value::Null),
        )
        .await
        .map(|r| r.into_response()),
        other => other,
    };
    match moved {
        Ok(_) => Ok(done(&base, "moved")),
        Err(e) => refused(&state, &caller, &csrf, id, base, e).await,
    }
}

#[derive(Deserialize)]
pub struct LinkForm {
    reviewer_email: String,
    reviewer_name: String,
    expires_in_hours: Option<String>,
}

/// `POST /artifacts/{id}/review-links`: a link for a reviewer without an
/// account (mailed to them).
pub async fn review_link(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(f): Form<LinkForm>,
) -> Result<Response, PageError> {
    let id: ArtifactId = crate::extract::path_id(&id)?;
    let base = format!("/artifacts/{id}");
    let hours = match f.expires_in_hours.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(h) => match h.parse::<i64>() {
            Ok(h) => Some(h),
            Err(_) => {
                let e = ApiError::invalid(waymark_domain::FieldError::new(
                    "/expires_in_hours",
                    "must be a whole number of hours",
                ));
                return refused(&state, &caller, &csrf, id, base, e).await;
            }
        },
    };
    act!(
        state,
        caller,
        csrf,
        id,
        base,
        "link",
        routes::review::create_review_link(
            State(state.clone()),
            Extension(caller.clone()),
            Extension(trace),
            HeaderMap::new(),
            Path(id.to_string()),
            Json(routes::review::ReviewLinkRequest {
                reviewer_email: f.reviewer_email,
                reviewer_name: f.reviewer_name,
                expires_in_hours: hours,
            })
        )
    )
}

#[derive(Deserialize)]
pub struct ResolveForm {}

/// `POST /comments/{id}/resolve`.
pub async fn resolve(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
    Form(_): Form<ResolveForm>,
) -> Result<Response, PageError> {
    let c = routes::review::resolve_comment(
        State(state.clone()),
        Extension(caller),
        Extension(trace),
        Path(id),
    )
    .await?;
    Ok(done(&format!("/artifacts/{}", c.0.artifact_id), "resolved"))
}
