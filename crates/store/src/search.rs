//! Full-text search over what Waymark keeps: artifacts (title and the text of
//! their latest version), comments, and files' extracted text. [`SearchStore`]
//! and its records.
//!
//! The index lives in the database (SQLite FTS5, PostgreSQL `tsvector` with a
//! GIN index), written in the transaction of the write it reflects, so every
//! replica of the server searches the same thing and a search sees its own
//! writes.
//!
//! - **Visibility** is applied when searching, never when indexing: the team
//!   ([`Visibility::Staff`]) sees everything; a client's users
//!   ([`Visibility::Client`]) see their client's artifacts that were shared
//!   and are not back in draft (the rule of
//!   [`ArtifactSummary::shared_with`](crate::ArtifactSummary::shared_with),
//!   read from the artifact's row at query time, so a share or a transition
//!   needs no re-indexing), the comments on those that are not internal, and
//!   their client's files.
//! - **Queries** read like a web search box: words (all must match, the last
//!   one also as a prefix), `"quoted phrases"`, `-word` to exclude, `or`
//!   between alternatives. Nothing a user types is query syntax of the
//!   database: every word is quoted, so `"`, `*`, `NEAR(`, `:` or `-` alone
//!   never make a query fail.
//! - **Ranking**: a match in the title counts more than one in the body.
//! - **Snippets** come from the database with private markers around the
//!   matches; [`SearchHit::snippet`] is plain text and
//!   [`SearchHit::snippet_html`] is HTML-escaped with matches in `<mark>`, so
//!   indexed text can never become markup.
//! - **Pages** are by offset (ranks are not unique and change with every
//!   write): `next_cursor` is the offset of the next page, and results stop
//!   at [`SEARCH_RESULTS_MAX`]; a narrower query finds the rest.
//! - **Common words** cost no more as the index grows: a query that matches
//!   more than [`SearchQuery::candidates`] documents the scope may see (after
//!   its filters) ranks the most recent of them only ([`SEARCH_CANDIDATES`]
//!   by default, ten times what a search pages through), so its cost is
//!   bounded by that number rather than by the size of the index. Recent
//!   means the latest indexed on SQLite (the full-text index's own order,
//!   read backwards) and the latest written on PostgreSQL.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::{ArtifactId, ClientId, EngagementId};

use crate::{Page, PageRequest, Result};

/// Most results a search pages through (the offset of a page stops here).
pub const SEARCH_RESULTS_MAX: u32 = 1_000;

/// Most matches a search ranks by default (see the module docs).
pub const SEARCH_CANDIDATES: u32 = 10_000;

/// What a search result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// An artifact: its title and the text of its latest version.
    Artifact,
    /// A comment on an artifact (share messages and rejections included).
    Comment,
    /// An uploaded file: its name and extracted text.
    File,
}

impl DocKind {
    pub const ALL: [DocKind; 3] = [DocKind::Artifact, DocKind::Comment, DocKind::File];

    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Artifact => "artifact",
            DocKind::Comment => "comment",
            DocKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whose eyes a search is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The team: every client.
    Staff,
    /// A client's users: what was shared with that client (see the module
    /// docs).
    Client(ClientId),
}

/// A search: the words, the filters, and whose eyes it is for.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// What the user typed (see the module docs for its syntax).
    pub q: String,
    /// Only these kinds (all when empty).
    pub kinds: Vec<DocKind>,
    pub client_id: Option<ClientId>,
    pub engagement_id: Option<EngagementId>,
    /// Only artifacts of this type, and comments and files on them.
    pub artifact_type: Option<String>,
    pub scope: Visibility,
    /// Most matches ranked: beyond it, the most recent are ranked and the
    /// rest are not results ([`SEARCH_CANDIDATES`], which is more than a
    /// search pages through).
    pub candidates: u32,
}

/// One search result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub kind: DocKind,
    /// The id of the artifact, comment or file, as the API shows it
    /// (`art_…`, `cmt_…`, `fil_…`).
    pub id: String,
    /// The artifact's title (for a comment, the title of the artifact it is
    /// on), or the file's name.
    pub title: String,
    /// Text around the matches, as plain text.
    pub snippet: String,
    /// The same text HTML-escaped, with each match in `<mark>…</mark>`.
    pub snippet_html: String,
    /// How well it matches: higher is better; comparable within one search
    /// only.
    pub rank: f64,
    pub client_id: ClientId,
    pub engagement_id: Option<EngagementId>,
    /// The artifact itself, the one a comment is on, or the one a file is
    /// attached to.
    pub artifact_id: Option<ArtifactId>,
    pub artifact_type: Option<String>,
    /// The web page that shows it (a comment: its artifact's page, at the
    /// comment).
    pub url: String,
    /// When it was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Full-text search (see the module docs).
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// The results of `query` the scope may see, best first, one page
    /// (`page.cursor`: the offset a previous page's `next_cursor` gave).
    async fn search(&self, query: &SearchQuery, page: PageRequest) -> Result<Page<SearchHit>>;
}
