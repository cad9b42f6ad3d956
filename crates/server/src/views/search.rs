//! `/search?q=`: full-text search as a page, through the API's own
//! parameters and visibility ([`routes::search`]): results with their kind,
//! title linked to their page, a snippet with the matches marked, filters by
//! kind (and by client for the team), pages. Client users reach it too and
//! find only what was shared with their client.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use waymark_domain::ClientId;
use waymark_store::{DocKind, PageRequest, SearchHit};

use super::csrf::CsrfCookie;
use super::queue::Choice;
use super::{Layout, PageError, Viewer, render, render_status};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::search::{self as api, SearchParams};

/// One result as the page shows it.
pub struct HitRow {
    /// `Artifact`, `Comment`, `File`.
    pub kind: &'static str,
    pub tone: &'static str,
    pub title: String,
    pub url: String,
    /// Escaped by the store, matches in `<mark>`.
    pub snippet_html: String,
    /// The client's name (the team's view).
    pub client: Option<String>,
    /// The artifact type, in words.
    pub artifact_type: Option<String>,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    /// What was typed.
    q: String,
    /// Whether a search ran (a `q` with something in it).
    searched: bool,
    staff: bool,
    kind_choices: Vec<Choice>,
    client_choices: Vec<Choice>,
    /// A filter narrows the search.
    filtered: bool,
    hits: Vec<HitRow>,
    /// The place of the first result shown (1-based).
    first: usize,
    next_href: Option<String>,
    prev_href: Option<String>,
    error: Option<String>,
}

const PAGE_SIZE: u32 = 20;

fn kind_words(k: DocKind) -> (&'static str, &'static str) {
    match k {
        DocKind::Artifact => ("Artifact", "info"),
        DocKind::Comment => ("Comment", "neutral"),
        DocKind::File => ("File", "ok"),
    }
}

/// The page's own link with `cursor` (the other parameters as given).
fn href(p: &SearchParams, cursor: Option<u32>) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("q", p.q.clone())];
    pairs.extend(p.kind.iter().map(|k| ("kind", k.clone())));
    if let Some(c) = &p.client_id {
        pairs.push(("client_id", c.clone()));
    }
    if let Some(e) = &p.engagement_id {
        pairs.push(("engagement_id", e.clone()));
    }
    if let Some(t) = &p.artifact_type {
        pairs.push(("type", t.clone()));
    }
    if let Some(c) = cursor.filter(|c| *c > 0) {
        pairs.push(("cursor", c.to_string()));
    }
    pairs.retain(|(_, v)| !v.is_empty());
    format!(
        "/search?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

async fn client_names(
    state: &AppState,
    caller: &Caller,
    hits: &[SearchHit],
    known: &HashMap<ClientId, String>,
) -> Result<HashMap<ClientId, String>, PageError> {
    let mut names = HashMap::new();
    if !caller.is_staff() {
        return Ok(names);
    }
    for h in hits {
        if names.contains_key(&h.client_id) {
            continue;
        }
        let name = match known.get(&h.client_id) {
            Some(n) => n.clone(),
            None => state.store.get_client(h.client_id).await?.name,
        };
        names.insert(h.client_id, name);
    }
    Ok(names)
}

/// `GET /search`.
pub async fn page(
    State(state): State<AppState>,
    Extension(csrf): Extension<CsrfCookie>,
    Viewer(caller): Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (mut params, unread) = match SearchParams::from_query(raw.as_deref()) {
        Ok(p) => (p, None),
        Err(e) => (SearchParams::default(), Some(e)),
    };
    // The page shows its own number of results per page.
    params.limit = Some(PAGE_SIZE);
    let staff = caller.is_staff();
    let chosen_kind = params.kind.first().cloned().unwrap_or_default();
    let kind_choices = DocKind::ALL
        .iter()
        .map(|k| Choice {
            value: k.as_str().to_owned(),
            label: format!("{}s", kind_words(*k).0),
            selected: chosen_kind == k.as_str(),
        })
        .collect();
    let mut known = HashMap::new();
    let mut client_choices = Vec::new();
    if staff {
        let clients = state
            .store
            .list_clients(PageRequest {
                limit: 200,
                cursor: None,
            })
            .await?;
        for c in clients.items {
            client_choices.push(Choice {
                value: c.id.to_string(),
                label: c.name.clone(),
                selected: params.client_id.as_deref() == Some(c.id.to_string().as_str()),
            });
            known.insert(c.id, c.name);
        }
    }
    let searched = !params.q.trim().is_empty();
    let (answer, error) = if let Some(e) = unread {
        (None, Some(e))
    } else if searched {
        match api::run(&state, &caller, &params).await {
            Ok(a) => (Some(a), None),
            Err(e @ (ApiError::BadRequest { .. } | ApiError::Invalid { .. })) => (None, Some(e)),
            Err(e) => return Err(e.into()),
        }
    } else {
        (None, None)
    };
    let offset: u32 = params
        .cursor
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (hits, next_href) = match answer {
        Some(a) => {
            let names = client_names(&state, &caller, &a.items, &known).await?;
            let next = a
                .next_cursor
                .as_deref()
                .and_then(|c| c.parse().ok())
                .map(|c| href(&params, Some(c)));
            let hits = a
                .items
                .into_iter()
                .map(|h| {
                    let (kind, tone) = kind_words(h.kind);
                    HitRow {
                        kind,
                        tone,
                        title: if h.title.trim().is_empty() {
                            "(untitled)".into()
                        } else {
                            h.title
                        },
                        url: h.url,
                        snippet_html: h.snippet_html,
                        client: names.get(&h.client_id).cloned(),
                        artifact_type: h.artifact_type.map(|t| super::tone::words(&t)),
                        updated: super::artifacts::when(h.updated_at),
                    }
                })
                .collect();
            (hits, next)
        }
        None => (Vec::new(), None),
    };
    let prev_href = (error.is_none() && offset > 0)
        .then(|| href(&params, Some(offset.saturating_sub(PAGE_SIZE))));
    let title = if searched {
        format!("Search: {}", params.q.trim())
    } else {
        "Search".to_owned()
    };
    let page = SearchPage {
        layout: Layout::new(&state, title, Some(&caller), &csrf, "search").await?,
        q: params.q.clone(),
        searched,
        staff,
        kind_choices,
        client_choices,
        filtered: !chosen_kind.is_empty()
            || params.client_id.is_some()
            || params.engagement_id.is_some()
            || params.artifact_type.is_some(),
        hits,
        first: offset as usize + 1,
        next_href,
        prev_href,
        error: error.as_ref().map(super::problem_text),
    };
    match error {
        Some(e) => render_status(e.status(), &page),
        None => render(&page),
    }
}
