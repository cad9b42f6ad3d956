//! [`SearchStore`] on SQL, and the index's writes.
//!
//! `search_docs` holds one row per searchable thing, keyed by (kind, ref_id).
//! SQLite indexes its title and body in an FTS5 table kept by triggers
//! (external content: the text is stored once); PostgreSQL in a stored
//! generated `tsvector` (title weighted A, body B) with a GIN index.
//!
//! Artifact and comment writes index in their own transaction with one held
//! statement ([`index_later`], an upsert that reads no other held row), so
//! indexing costs them no round trip; [`index_doc`] and [`remove_doc`] run
//! at once, for the file code.
//!
//! What the user typed is parsed here ([`Terms`]) and rendered for each
//! backend with every word quoted, so no input is query syntax: FTS5 gets
//! `"word"` (a `"` inside doubled), PostgreSQL gets quoted words through
//! `websearch_to_tsquery`, which never fails; the last word also matches as
//! a prefix (FTS5 `"word"*`, `to_tsquery('word:*')` on a word of letters and
//! digits only).

use async_trait::async_trait;
use sqlx::FromRow;
use waymark_domain::content::{SEARCHABLE_TEXT_MAX, searchable_text, truncate_at_char};
use waymark_domain::{CommentId, FileId};

use super::db::Sql;
use super::*;
pub(crate) use crate::search::DocKind;
use crate::search::{SEARCH_RESULTS_MAX, SearchHit, SearchQuery, SearchStore, Visibility};

/// Marks the start of a match in a snippet the database returns (a private
/// use character, removed from everything indexed).
const MARK_START: char = '\u{E000}';
/// Marks the end of a match.
const MARK_END: char = '\u{E001}';

/// Most words of a query that count.
const MAX_TERMS: usize = 16;

/// Longest title indexed, in bytes.
const TITLE_MAX: usize = 2_000;

/// One searchable thing, as the index keeps it.
#[derive(Debug, Clone)]
pub(crate) struct SearchDoc {
    pub(crate) kind: DocKind,
    /// The artifact's, comment's or file's id.
    pub(crate) ref_id: Uuid,
    pub(crate) client_id: ClientId,
    pub(crate) engagement_id: Option<EngagementId>,
    /// The artifact itself, the one a comment is on, or the one a file is
    /// attached to.
    pub(crate) artifact_id: Option<ArtifactId>,
    pub(crate) artifact_type: Option<String>,
    /// A comment only the team sees.
    pub(crate) internal: bool,
    pub(crate) title: String,
    pub(crate) body: String,
}

impl SearchDoc {
    /// An artifact's entry: its title and the text of `content`.
    pub(crate) fn artifact(
        id: ArtifactId,
        client_id: ClientId,
        engagement_id: Option<EngagementId>,
        artifact_type: &str,
        title: &str,
        content: &Value,
    ) -> Self {
        SearchDoc {
            kind: DocKind::Artifact,
            ref_id: id.uuid(),
            client_id,
            engagement_id,
            artifact_id: Some(id),
            artifact_type: Some(artifact_type.to_owned()),
            internal: false,
            title: title.to_owned(),
            body: searchable_text(content),
        }
    }
}

/// Text as indexed: without the snippet markers, capped.
fn indexed(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .filter(|c| *c != MARK_START && *c != MARK_END && *c != '\0')
        .collect();
    truncate_at_char(&mut s, max);
    s
}

/// The upsert of a document's entry (one statement; reads no other row).
fn upsert(doc: &SearchDoc, at: OffsetDateTime) -> Sql<'static> {
    sql(
        "INSERT INTO search_docs (kind, ref_id, client_id, engagement_id, artifact_id, \
         artifact_type, internal, title, body, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (kind, ref_id) DO UPDATE SET client_id = excluded.client_id, \
         engagement_id = excluded.engagement_id, artifact_id = excluded.artifact_id, \
         artifact_type = excluded.artifact_type, internal = excluded.internal, \
         title = excluded.title, body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(doc.kind.as_str())
    .bind(doc.ref_id)
    .bind(doc.client_id.uuid())
    .bind(doc.engagement_id.map(|e| e.uuid()))
    .bind(doc.artifact_id.map(|a| a.uuid()))
    .bind(doc.artifact_type.clone())
    .bind(doc.internal)
    .bind(indexed(&doc.title, TITLE_MAX))
    .bind(indexed(&doc.body, SEARCHABLE_TEXT_MAX))
    .bind(unix_micros(at))
}

/// Indexes `doc` (adds or replaces its entry) with the writes held back to
/// run with the audit record ([`Tx::write_later`]): no round trip of its
/// own. At most one entry per (kind, id) may be held in one transaction.
pub(crate) fn index_later(tx: &mut Tx, doc: &SearchDoc, at: OffsetDateTime) {
    tx.write_later(upsert(doc, at), 1);
}

/// Indexes `doc` now, inside the transaction (adds or replaces its entry).
pub(crate) async fn index_doc(tx: &mut Tx, doc: &SearchDoc) -> Result<()> {
    upsert(doc, now()).execute(tx).await?;
    Ok(())
}

/// Removes the entry of `kind` `ref_id`, if any, inside the transaction.
pub(crate) async fn remove_doc(tx: &mut Tx, kind: DocKind, ref_id: Uuid) -> Result<()> {
    sql("DELETE FROM search_docs WHERE kind = $1 AND ref_id = $2")
        .bind(kind.as_str())
        .bind(ref_id)
        .execute(tx)
        .await?;
    Ok(())
}

// --- queries ------------------------------------------------------------------

/// One word or quoted phrase of a query.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    text: String,
    /// Excluded (`-word`).
    negated: bool,
    /// Also matches as a prefix (the last word, letters and digits only).
    prefix: bool,
}

/// A query as typed, parsed: alternatives (`or`), each all of its terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terms {
    groups: Vec<Vec<Term>>,
}

impl Terms {
    /// Parses what a user typed; `None` when nothing in it can match (no
    /// word with a letter or digit, or only exclusions).
    pub(crate) fn parse(q: &str) -> Option<Terms> {
        // Control characters (NUL among them, which PostgreSQL refuses in
        // text) separate words like spaces.
        let q: String = q
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut groups: Vec<Vec<Term>> = vec![Vec::new()];
        let mut quoted_last = false;
        let mut count = 0;
        let mut rest = q.trim_start();
        while !rest.is_empty() && count < MAX_TERMS {
            let mut negated = false;
            let mut token = rest;
            if let Some(t) = token.strip_prefix('-') {
                negated = true;
                token = t;
            }
            let (text, quoted, after) = if let Some(inner) = token.strip_prefix('"') {
                match inner.find('"') {
                    Some(end) => (&inner[..end], true, &inner[end + 1..]),
                    None => (inner, true, ""),
                }
            } else {
                let end = token.find(char::is_whitespace).unwrap_or(token.len());
                (&token[..end], false, &token[end..])
            };
            rest = after.trim_start();
            if !quoted && !negated && text.eq_ignore_ascii_case("or") {
                if groups.last().is_some_and(|g| !g.is_empty()) {
                    groups.push(Vec::new());
                }
                continue;
            }
            if !text.chars().any(char::is_alphanumeric) {
                continue;
            }
            count += 1;
            quoted_last = quoted;
            groups.last_mut().expect("one group").push(Term {
                text: text.to_owned(),
                negated,
                prefix: false,
            });
        }
        // Only something that must be there can be looked up.
        groups.retain(|g| g.iter().any(|t| !t.negated));
        if groups.is_empty() {
            return None;
        }
        // The last word, typed as the end of a single list of words, also
        // matches as a prefix.
        if groups.len() == 1 && !quoted_last {
            let group = &mut groups[0];
            if let Some(last) = group.last_mut()
                && !last.negated
                && last.text.chars().count() >= 2
                && last.text.chars().all(char::is_alphanumeric)
            {
                last.prefix = true;
            }
        }
        Some(Terms { groups })
    }

    /// The query as an FTS5 `MATCH` expression: every term quoted.
    fn fts5(&self) -> String {
        let quote = |t: &Term| {
            let mut s = format!("\"{}\"", t.text.replace('"', "\"\""));
            if t.prefix {
                s.push('*');
            }
            s
        };
        self.groups
            .iter()
            .map(|g| {
                let positive: Vec<String> = g.iter().filter(|t| !t.negated).map(quote).collect();
                let mut expr = format!("({})", positive.join(" AND "));
                for t in g.iter().filter(|t| t.negated) {
                    expr = format!("({expr} NOT {})", quote(t));
                }
                expr
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// The terms that are not prefixes, as `websearch_to_tsquery` reads
    /// them (each quoted, `"` inside made a space), and the prefix word.
    fn websearch(&self) -> (String, Option<&str>) {
        let mut prefix = None;
        let text = self
            .groups
            .iter()
            .map(|g| {
                g.iter()
                    .filter(|t| {
                        if t.prefix {
                            prefix = Some(t.text.as_str());
                        }
                        !t.prefix
                    })
                    .map(|t| {
                        format!(
                            "{}\"{}\"",
                            if t.negated { "-" } else { "" },
                            t.text.replace('"', " ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(" or ");
        (text, prefix)
    }

    /// Appends the PostgreSQL `tsquery` of the terms.
    fn push_tsquery<'q>(&self, q: &mut Sql<'q>) {
        let (text, prefix) = self.websearch();
        let text = text.trim();
        match (text.is_empty(), prefix) {
            (false, None) => {
                q.push("websearch_to_tsquery('simple', ")
                    .push_bind(text.to_owned())
                    .push(")");
            }
            (true, Some(p)) => {
                q.push("to_tsquery('simple', ")
                    .push_bind(format!("{p}:*"))
                    .push(")");
            }
            (false, Some(p)) => {
                q.push("(websearch_to_tsquery('simple', ")
                    .push_bind(text.to_owned())
                    .push(") && to_tsquery('simple', ")
                    .push_bind(format!("{p}:*"))
                    .push("))");
            }
            // `parse` keeps at least one term that must match.
            (true, None) => {
                q.push("''::tsquery");
            }
        }
    }
}

/// Appends `SELECT ref_id FROM search_docs …`: the artifacts matching
/// `terms` (for `IN (…)`).
pub(crate) fn push_artifact_matches(q: &mut Sql<'_>, backend: Backend, terms: &Terms) {
    match backend {
        Backend::Sqlite => {
            q.push(
                "SELECT d.ref_id FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid \
                 WHERE d.kind = 'artifact' AND search_fts MATCH ",
            )
            .push_bind(terms.fts5());
        }
        Backend::Postgres => {
            q.push("SELECT d.ref_id FROM search_docs d WHERE d.kind = 'artifact' AND d.search @@ ");
            terms.push_tsquery(q);
        }
    }
}

/// Appends the filters and the visibility rule of `query` (`d` is the
/// entry, `a` its artifact, left-joined).
fn push_filters(q: &mut Sql<'_>, query: &SearchQuery) {
    if !query.kinds.is_empty() {
        q.push(" AND d.kind IN ")
            .push_list(query.kinds.iter().map(|k| k.as_str()));
    }
    if let Some(c) = query.client_id {
        q.push(" AND d.client_id = ").push_bind(c.uuid());
    }
    if let Some(e) = query.engagement_id {
        q.push(" AND d.engagement_id = ").push_bind(e.uuid());
    }
    if let Some(t) = &query.artifact_type {
        q.push(" AND d.artifact_type = ").push_bind(t.clone());
    }
    if let Visibility::Client(c) = query.scope {
        // ArtifactSummary::shared_with, read from the artifact's row now.
        q.push(" AND d.client_id = ").push_bind(c.uuid()).push(
            " AND (d.kind = 'file' OR (a.shared_at IS NOT NULL AND a.status <> 'draft' \
             AND (d.kind = 'artifact' OR NOT d.internal)))",
        );
    }
}

#[derive(FromRow)]
struct HitRow {
    kind: String,
    ref_id: Uuid,
    client_id: Uuid,
    engagement_id: Option<Uuid>,
    artifact_id: Option<Uuid>,
    artifact_type: Option<String>,
    title: String,
    score: f64,
    updated_at: i64,
    snippet: Option<String>,
}

impl HitRow {
    fn hit(self) -> Result<SearchHit> {
        let kind =
            DocKind::parse(&self.kind).ok_or_else(|| decode_error("doc kind", &self.kind))?;
        let artifact_id = self.artifact_id.map(ArtifactId::from_uuid);
        let (id, url) = match kind {
            DocKind::Artifact => {
                let id = ArtifactId::from_uuid(self.ref_id).to_string();
                let url = format!("/artifacts/{id}");
                (id, url)
            }
            DocKind::Comment => {
                let id = CommentId::from_uuid(self.ref_id).to_string();
                let url = match artifact_id {
                    Some(a) => format!("/artifacts/{a}#c-{id}"),
                    None => "/".to_owned(),
                };
                (id, url)
            }
            DocKind::File => {
                let id = FileId::from_uuid(self.ref_id).to_string();
                let url = format!("/files/{id}");
                (id, url)
            }
        };
        let (snippet, snippet_html) = render_snippet(self.snippet.as_deref().unwrap_or(""));
        Ok(SearchHit {
            kind,
            id,
            title: self.title,
            snippet,
            snippet_html,
            rank: self.score,
            client_id: ClientId::from_uuid(self.client_id),
            engagement_id: self.engagement_id.map(EngagementId::from_uuid),
            artifact_id,
            artifact_type: self.artifact_type,
            url,
            updated_at: super::work::at(self.updated_at),
        })
    }
}

/// A snippet with the database's markers as plain text and as HTML: every
/// character escaped, each marked match in `<mark>`; whitespace runs become
/// one space.
fn render_snippet(marked: &str) -> (String, String) {
    let mut plain = String::with_capacity(marked.len());
    let mut html = String::with_capacity(marked.len() + 32);
    let mut open = false;
    let mut space = false;
    for c in marked.trim().chars() {
        match c {
            MARK_START if !open => {
                flush_space(&mut space, &mut plain, &mut html);
                html.push_str("<mark>");
                open = true;
            }
            MARK_END if open => {
                html.push_str("</mark>");
                open = false;
            }
            MARK_START | MARK_END => {}
            c if c.is_whitespace() || c.is_control() => space = true,
            c => {
                flush_space(&mut space, &mut plain, &mut html);
                plain.push(c);
                match c {
                    '<' => html.push_str("&lt;"),
                    '>' => html.push_str("&gt;"),
                    '&' => html.push_str("&amp;"),
                    '"' => html.push_str("&quot;"),
                    '\'' => html.push_str("&#39;"),
                    c => html.push(c),
                }
            }
        }
    }
    if open {
        html.push_str("</mark>");
    }
    (plain, html.replace("<mark></mark>", ""))
}

fn flush_space(space: &mut bool, plain: &mut String, html: &mut String) {
    if std::mem::take(space) && !plain.is_empty() {
        plain.push(' ');
        html.push(' ');
    }
}

/// `ts_headline`'s options: the markers, and one passage about as long as
/// FTS5's `snippet()` gives.
const HEADLINE_OPTIONS: &str =
    "StartSel=\u{E000}, StopSel=\u{E001}, MaxWords=35, MinWords=15, ShortWord=2";

const HIT_COLUMNS: &str = "d.kind, d.ref_id, d.client_id, d.engagement_id, d.artifact_id, \
     d.artifact_type, CASE WHEN d.kind = 'comment' THEN COALESCE(a.title, d.title) \
     ELSE d.title END AS title, d.updated_at";

/// The offset a search page starts at, from its cursor.
fn offset_of(page: &PageRequest) -> Result<u32> {
    match page.cursor() {
        None => Ok(0),
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= SEARCH_RESULTS_MAX)
            .ok_or_else(|| {
                FieldError::new(
                    "/cursor",
                    format!(
                        "is not a cursor of this search (an offset up to {SEARCH_RESULTS_MAX}); \
                         pass the next_cursor of the previous page"
                    ),
                )
                .into()
            }),
    }
}

#[async_trait]
impl SearchStore for SqlStore {
    async fn search(&self, query: &SearchQuery, page: PageRequest) -> Result<Page<SearchHit>> {
        let offset = offset_of(&page)?;
        let limit = page.limit.clamp(1, 200).min(SEARCH_RESULTS_MAX - offset);
        let empty = Page {
            items: Vec::new(),
            next_cursor: None,
        };
        let Some(terms) = Terms::parse(&query.q) else {
            return Ok(empty);
        };
        if limit == 0 {
            return Ok(empty);
        }
        let candidates = query.candidates.max(1);
        let q = match self.db.backend() {
            Backend::Sqlite => {
                // The most recent matches the filters keep, read in the
                // index's own order (rowid descending) and cut at the
                // candidates, are ranked; then the page's rows (rank and id
                // only), then their snippets: snippet() runs for the rows
                // shown, not for every match. The snippets come from one
                // more pass of the query over the page's range of rowids,
                // not from a lookup per row: each lookup would evaluate the
                // query anew, and a prefix (`"word"*`) costs a merge of
                // every document holding a word it starts.
                let mut q = sql("WITH matches AS (SELECT d.id AS doc, \
                     -bm25(search_fts, 10.0, 1.0) AS score \
                     FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid \
                     LEFT JOIN artifacts a ON a.id = d.artifact_id \
                     WHERE search_fts MATCH $1")
                .bind(terms.fts5());
                push_filters(&mut q, query);
                q.push(" ORDER BY search_fts.rowid DESC LIMIT ")
                    .push_bind(i64::from(candidates))
                    .push(
                        "), page AS MATERIALIZED (SELECT doc, score FROM matches \
                         ORDER BY score DESC, doc DESC LIMIT ",
                    )
                    .push_bind(i64::from(limit) + 1)
                    .push(" OFFSET ")
                    .push_bind(i64::from(offset));
                q.push(format!(
                    ") SELECT {HIT_COLUMNS}, p.score, \
                     snippet(search_fts, 1, char(57344), char(57345), '…', 24) AS snippet \
                     FROM search_fts CROSS JOIN page p \
                     JOIN search_docs d ON d.id = p.doc \
                     LEFT JOIN artifacts a ON a.id = d.artifact_id \
                     WHERE search_fts MATCH $1 AND p.doc = search_fts.rowid \
                     AND search_fts.rowid BETWEEN (SELECT min(doc) FROM page) \
                     AND (SELECT max(doc) FROM page) \
                     ORDER BY p.score DESC, p.doc DESC"
                ));
                q
            }
            Backend::Postgres => {
                // The most recent matches the filters keep (a top-N sort
                // on the time written, cut at the candidates) are ranked;
                // then the page's keys and ranks; ts_headline (which reads
                // the whole body) runs for those rows only.
                let mut q = sql("WITH query AS MATERIALIZED (SELECT ");
                terms.push_tsquery(&mut q);
                q.push(
                    " AS query), matches AS MATERIALIZED (SELECT d.kind, d.ref_id, d.search \
                     FROM query CROSS JOIN search_docs d \
                     LEFT JOIN artifacts a ON a.id = d.artifact_id \
                     WHERE d.search @@ query.query",
                );
                push_filters(&mut q, query);
                q.push(" ORDER BY d.updated_at DESC, d.kind, d.ref_id LIMIT ")
                    .push_bind(i64::from(candidates))
                    .push(
                        "), page AS MATERIALIZED (SELECT m.kind, m.ref_id, \
                         ts_rank_cd(m.search, query.query)::float8 AS score \
                         FROM matches m CROSS JOIN query \
                         ORDER BY score DESC, m.kind, m.ref_id LIMIT ",
                    )
                    .push_bind(i64::from(limit) + 1)
                    .push(" OFFSET ")
                    .push_bind(i64::from(offset));
                q.push(format!(
                    ") SELECT {HIT_COLUMNS}, p.score, \
                     ts_headline('simple'::regconfig, d.body, query.query, "
                ))
                .push_bind(HEADLINE_OPTIONS)
                .push(
                    ") AS snippet FROM page p CROSS JOIN query \
                     JOIN search_docs d ON d.kind = p.kind AND d.ref_id = p.ref_id \
                     LEFT JOIN artifacts a ON a.id = d.artifact_id \
                     ORDER BY p.score DESC, p.kind, p.ref_id",
                );
                q
            }
        };
        let mut rows: Vec<HitRow> = q.fetch_all(&mut self.db.reader()).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = offset + limit;
        Ok(Page {
            items: rows
                .into_iter()
                .map(HitRow::hit)
                .collect::<Result<Vec<_>>>()?,
            next_cursor: (more && next < SEARCH_RESULTS_MAX).then(|| next.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(q: &str) -> Terms {
        Terms::parse(q).unwrap_or_else(|| panic!("{q} parses"))
    }

    #[test]
    fn every_word_is_quoted_for_fts5() {
        assert_eq!(terms("alpha beta").fts5(), "(\"alpha\" AND \"beta\"*)");
        assert_eq!(
            terms("say \"hi there\" -no").fts5(),
            "((\"say\" AND \"hi there\") NOT \"no\")"
        );
        assert_eq!(
            terms("a1 or b2 OR c3").fts5(),
            "(\"a1\") OR (\"b2\") OR (\"c3\")"
        );
        assert_eq!(
            terms("NEAR(a, b) x\"y").fts5(),
            "(\"NEAR(a,\" AND \"b)\" AND \"x\"\"y\")"
        );
        assert_eq!(terms("naïve").fts5(), "(\"naïve\"*)");
    }

    #[test]
    fn nothing_to_match_is_none() {
        for q in [
            "", "   ", "\"", "*", "-", ":", "- * :", "-alpha", "or", "OR OR", "\"\"", "-\"x y\"",
        ] {
            assert!(Terms::parse(q).is_none(), "{q:?}");
        }
        assert!(Terms::parse("-alpha or beta").is_some());
    }

    #[test]
    fn websearch_text_keeps_words_quoted() {
        assert_eq!(
            terms("a \"b\" -c or d").websearch(),
            ("\"a\" \"b\" -\"c\" or \"d\"".to_owned(), None)
        );
        assert_eq!(
            terms("x\"y zz").websearch(),
            ("\"x y\"".to_owned(), Some("zz"))
        );
        assert_eq!(terms("zz").websearch(), (String::new(), Some("zz")));
        // Not a prefix: one letter, punctuation, or a phrase.
        assert_eq!(terms("a").websearch().1, None);
        assert_eq!(terms("e-mail").websearch().1, None);
        assert_eq!(terms("\"ab cd\"").websearch().1, None);
    }

    #[test]
    fn control_characters_separate_words() {
        assert_eq!(
            terms("ab\0cd\u{7}ef").fts5(),
            "(\"ab\" AND \"cd\" AND \"ef\"*)"
        );
    }

    #[test]
    fn terms_are_capped() {
        let many = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(terms(&many).groups[0].len(), MAX_TERMS);
    }

    #[test]
    fn snippets_escape_everything_but_the_marks() {
        let (plain, html) =
            render_snippet("<script>alert(1)</script> \u{E000}plan\u{E001} &\n\n \"q\" 'x'");
        assert_eq!(plain, "<script>alert(1)</script> plan & \"q\" 'x'");
        assert_eq!(
            html,
            "&lt;script&gt;alert(1)&lt;/script&gt; <mark>plan</mark> &amp; &quot;q&quot; &#39;x&#39;"
        );
        // Unbalanced or stray markers never leave an open element.
        assert_eq!(render_snippet("\u{E000}open").1, "<mark>open</mark>");
        assert_eq!(render_snippet("close\u{E001}").1, "close");
        assert_eq!(render_snippet("\u{E000}\u{E001}x").1, "x");
    }

    #[test]
    fn indexed_text_loses_the_markers() {
        assert_eq!(indexed("a\u{E000}b\u{E001}c\0", 100), "abc");
        assert_eq!(indexed("ééé", 3), "é");
    }
}
