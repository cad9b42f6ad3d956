//! Full-text search (`GET /api/v1/search`) over artifacts (title and the text
//! of their latest version), comments, and files' extracted text, through the
//! database's index ([`waymark_store::SearchStore`]).
//!
//! Who sees what: the team searches every client (and may narrow to one with
//! `client_id`); a client user finds only their client's artifacts that were
//! shared and are not back in draft, the comments on those that are not
//! internal, and their client's files. A `client_id` or `engagement_id` of
//! another client answers an empty list, exactly as one that does not exist.
//!
//! Results are best first and paged by offset: `next_cursor` is where the
//! next page starts, and results stop after
//! [`SEARCH_RESULTS_MAX`](waymark_store::SEARCH_RESULTS_MAX) (a narrower query
//! finds the rest).

use axum::extract::{RawQuery, State};
use axum::{Extension, Json as JsonOut};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::artifact::ArtifactType;
use waymark_domain::{ClientId, EngagementId};
use waymark_store::{
    DocKind, Page, PageRequest, SEARCH_CANDIDATES, SEARCH_RESULTS_MAX, SearchHit, SearchQuery,
    Visibility,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::query_id;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

/// Longest query read, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Results per page when `limit` is left out.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most results per page.
pub const MAX_LIMIT: u32 = 100;

/// The query string of a search.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to find: words (all must match; the last one also as the start
    /// of a word), `"a phrase"`, `-word` to leave out, `or` between
    /// alternatives. Anything else is read as words.
    #[param(min_length = 1, max_length = 200, pattern = "\\S")]
    pub q: String,
    /// Only these kinds: `artifact`, `comment`, `file`; repeat the
    /// parameter or separate them with commas (every kind when left out).
    #[param(value_type = Option<Vec<DocKind>>, required = false)]
    pub kind: Vec<String>,
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    #[param(value_type = waymark_domain::EngagementId, required = false)]
    pub engagement_id: Option<String>,
    /// Only artifacts of this type, and comments and files on them.
    #[param(rename = "type", pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub artifact_type: Option<String>,
    /// At most this many results, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page: where the next page starts
    /// (an offset, at most 1000).
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", detail)
}

impl SearchParams {
    /// Reads a query string: `kind` may repeat; any other parameter given
    /// twice is refused; unknown ones are ignored, as elsewhere.
    pub fn from_query(raw: Option<&str>) -> Result<SearchParams, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| bad(format!("invalid query string: {e}")))?;
        let mut p = SearchParams::default();
        let mut q = None;
        let mut limit = None;
        fn once(slot: &mut Option<String>, key: &str, value: String) -> Result<(), ApiError> {
            match slot.replace(value) {
                Some(_) => Err(bad(format!("{key} is given more than once"))),
                None => Ok(()),
            }
        }
        for (key, value) in pairs {
            match key.as_str() {
                "q" => once(&mut q, &key, value)?,
                "kind" => p.kind.push(value),
                "client_id" => once(&mut p.client_id, &key, value)?,
                "engagement_id" => once(&mut p.engagement_id, &key, value)?,
                "type" => once(&mut p.artifact_type, &key, value)?,
                "limit" => once(&mut limit, &key, value)?,
                "cursor" => once(&mut p.cursor, &key, value)?,
                _ => {}
            }
        }
        p.q = q.unwrap_or_default();
        p.limit = limit
            .map(|l| {
                l.parse::<u32>()
                    .map_err(|_| bad(format!("limit must be from 1 to {MAX_LIMIT}")))
            })
            .transpose()?;
        Ok(p)
    }

    /// The search these parameters ask for, as `caller` may run it; `None`
    /// when it can find nothing the caller may see (a client user naming
    /// another client, or a caller confined to no client).
    pub fn query(&self, caller: &Caller) -> Result<(Option<SearchQuery>, PageRequest), ApiError> {
        let q = self.q.trim();
        if q.is_empty() {
            return Err(bad("q is required: the words to search for"));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(bad(format!(
                "q must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let mut kinds = Vec::new();
        for k in self.kind.iter().flat_map(|k| k.split(',')) {
            let k = k.trim();
            if k.is_empty() {
                continue;
            }
            let kind = DocKind::parse(k)
                .ok_or_else(|| bad(format!("kind: `{k}` is not artifact, comment or file")))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        let client_id: Option<ClientId> = self
            .client_id
            .as_deref()
            .map(|c| query_id("client_id", c))
            .transpose()?;
        let engagement_id: Option<EngagementId> = self
            .engagement_id
            .as_deref()
            .map(|e| query_id("engagement_id", e))
            .transpose()?;
        let artifact_type = self
            .artifact_type
            .as_deref()
            .map(|t| {
                ArtifactType::parse(t, "type")
                    .map(|t| t.as_str().to_owned())
                    .map_err(|e| bad(format!("type {}", e.message)))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(bad(format!("limit must be from 1 to {MAX_LIMIT}")));
        }
        let cursor = self.cursor.clone().filter(|c| !c.is_empty());
        if let Some(c) = &cursor
            && c.parse::<u32>().map_or(true, |n| n > SEARCH_RESULTS_MAX)
        {
            return Err(bad(format!(
                "cursor is not a cursor of this search (an offset up to {SEARCH_RESULTS_MAX}); \
                 pass the next_cursor of the previous page"
            )));
        }
        let page = PageRequest { limit, cursor };
        let scope = if caller.is_staff() {
            Visibility::Staff
        } else {
            match caller.client_scope() {
                Some(own) if client_id.is_none_or(|c| c == own) => Visibility::Client(own),
                _ => return Ok((None, page)),
            }
        };
        Ok((
            Some(SearchQuery {
                q: q.to_owned(),
                kinds,
                client_id,
                engagement_id,
                artifact_type,
                scope,
                candidates: SEARCH_CANDIDATES,
            }),
            page,
        ))
    }
}

/// Runs the search `params` ask for, as `caller` may see it.
pub async fn run(
    state: &AppState,
    caller: &Caller,
    params: &SearchParams,
) -> Result<Page<SearchHit>, ApiError> {
    let (query, page) = params.query(caller)?;
    match query {
        Some(query) => Ok(state.store.search(&query, page).await?),
        None => Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        }),
    }
}

// The description below names the store's cap on ranked matches.
const _: () = assert!(SEARCH_CANDIDATES == 10_000);

/// Search artifacts, comments and files, best match first.
///
/// Each result has a snippet around its matches (`snippet` as text,
/// `snippet_html` escaped with `<mark>` around each match) and the `url` of
/// the page that shows it. Only what the caller may see is searched: a client
/// user finds their client's shared documents (not drafts), the comments on
/// them that are not internal, and their client's files; another client's
/// `client_id` answers an empty list. A query that matches more than 10,000
/// documents (after its filters) ranks the 10,000 most recent of them, so a
/// common word answers as fast in a large index as in a small one; a
/// narrower query finds older ones.
#[utoipa::path(get, path = "/api/v1/search", tag = "search", params(SearchParams),
    responses((status = 200, body = Page<SearchHit>), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<JsonOut<Page<SearchHit>>, ApiError> {
    let params = SearchParams::from_query(raw.as_deref())?;
    Ok(JsonOut(run(&state, &caller, &params).await?))
}
