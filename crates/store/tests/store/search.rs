//! The store contract for search: the index follows every artifact and
//! comment write, ranks a title match above a body match, marks matches in
//! escaped snippets, pages by offset, reads any input as words, and never
//! shows a client's users what they may not see.

use std::sync::Arc;

use serde_json::{Value, json};
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::review::ApproverKind;
use waymark_domain::{ArtifactId, ClientId};
use waymark_store::testing::{self, TestDb};
use waymark_store::*;

contract!(
    search_ranks_title_matches_above_body_matches,
    search_follows_versions_and_rollbacks,
    search_snippets_mark_matches_and_escape_the_rest,
    search_shows_a_client_only_what_was_shared_with_it,
    search_filters_and_pages,
    search_ranks_the_most_recent_matches_of_a_common_word,
    search_reads_hostile_queries_as_words,
    search_backs_the_artifact_list_q,
);

fn ctx() -> WriteContext {
    WriteContext::new("tok_test")
}

fn store(db: &TestDb) -> Arc<dyn Store> {
    db.store.clone()
}

fn staff() -> Reviewer {
    Reviewer {
        id: "tok_test".into(),
        name: "Ops".into(),
        kind: ApproverKind::Staff,
    }
}

async fn client(s: &dyn Store, name: &str) -> ClientId {
    s.create_client(
        NewClient {
            name: name.into(),
            ..Default::default()
        },
        &ctx(),
    )
    .await
    .unwrap()
    .record
    .id
}

async fn artifact(
    s: &dyn Store,
    client: ClientId,
    ty: &str,
    title: &str,
    content: Value,
) -> ArtifactId {
    s.create_artifact(
        NewArtifact {
            client_id: client,
            engagement_id: None,
            artifact_type: ty.into(),
            title: title.into(),
            content,
            sources: None,
            note: None,
            provenance: "human".into(),
            pipeline: None,
        },
        &ctx(),
    )
    .await
    .unwrap()
    .record
    .summary
    .id
}

async fn comment(s: &dyn Store, on: ArtifactId, body: &str, internal: bool) -> String {
    s.add_comment(
        on,
        NewComment {
            version: None,
            section: None,
            parent_id: None,
            body: body.into(),
            internal,
        },
        &staff(),
        &ctx(),
    )
    .await
    .unwrap()
    .id
    .to_string()
}

fn query(q: &str, scope: Visibility) -> SearchQuery {
    SearchQuery {
        q: q.into(),
        kinds: vec![],
        client_id: None,
        engagement_id: None,
        artifact_type: None,
        scope,
        candidates: SEARCH_CANDIDATES,
    }
}

fn page(limit: u32) -> PageRequest {
    PageRequest {
        limit,
        cursor: None,
    }
}

async fn find(s: &dyn Store, q: SearchQuery) -> Vec<SearchHit> {
    s.search(&q, page(100)).await.unwrap().items
}

async fn ids(s: &dyn Store, q: &str, scope: Visibility) -> Vec<String> {
    let mut ids: Vec<String> = find(s, query(q, scope))
        .await
        .into_iter()
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn search_ranks_title_matches_above_body_matches(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let in_body = artifact(
        &*s,
        c,
        "notes",
        "Quarterly notes",
        json!({"text": "we discussed the zeppelin briefly among other things"}),
    )
    .await;
    let in_title = artifact(
        &*s,
        c,
        "notes",
        "Zeppelin launch",
        json!({"text": "we discussed the budget briefly among other things"}),
    )
    .await;
    let hits = find(&*s, query("zeppelin", Visibility::Staff)).await;
    let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(
        got,
        [in_title.to_string(), in_body.to_string()],
        "{hits:#?}"
    );
    assert!(hits[0].rank > hits[1].rank, "{hits:#?}");
    let h = &hits[1];
    assert_eq!(h.kind, DocKind::Artifact);
    assert_eq!(h.title, "Quarterly notes");
    assert_eq!(h.client_id, c);
    assert_eq!(h.artifact_id, Some(in_body));
    assert_eq!(h.artifact_type.as_deref(), Some("notes"));
    assert_eq!(h.url, format!("/artifacts/{in_body}"));
    // Keys are not text; numbers are; case and accents do not matter.
    assert!(ids(&*s, "text", Visibility::Staff).await.is_empty());
    artifact(
        &*s,
        c,
        "notes",
        "Numbers",
        json!({"budget": 73914, "city": "Zürich"}),
    )
    .await;
    assert_eq!(ids(&*s, "73914", Visibility::Staff).await.len(), 1);
    assert_eq!(ids(&*s, "ZÜRICH", Visibility::Staff).await.len(), 1);
    // The last word matches as a prefix; all words must match.
    assert_eq!(ids(&*s, "zeppe", Visibility::Staff).await.len(), 2);
    assert_eq!(
        ids(&*s, "zeppelin launch", Visibility::Staff).await.len(),
        1
    );
    assert_eq!(
        ids(&*s, "zeppelin -launch", Visibility::Staff).await.len(),
        1
    );
    assert_eq!(
        ids(&*s, "launch or quarterly", Visibility::Staff)
            .await
            .len(),
        2
    );
    assert_eq!(
        ids(&*s, "\"discussed the zeppelin\"", Visibility::Staff).await,
        vec![in_body.to_string()]
    );
}

async fn search_follows_versions_and_rollbacks(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    let id = artifact(&*s, c, "plan", "Plan", json!({"step": "albatross"})).await;
    assert_eq!(ids(&*s, "albatross", Visibility::Staff).await.len(), 1);
    s.write_content(
        id,
        1,
        NewVersion {
            content: json!({"step": "pelican"}),
            sources: None,
            note: None,
            provenance: "human".into(),
            pipeline: None,
        },
        &ctx(),
    )
    .await
    .unwrap();
    assert!(ids(&*s, "albatross", Visibility::Staff).await.is_empty());
    assert_eq!(
        ids(&*s, "pelican", Visibility::Staff).await,
        vec![id.to_string()]
    );
    s.rollback(id, 2, 1, None, &ctx()).await.unwrap();
    assert!(ids(&*s, "pelican", Visibility::Staff).await.is_empty());
    assert_eq!(
        ids(&*s, "albatross", Visibility::Staff).await,
        vec![id.to_string()]
    );
    // A comment is found with its artifact's title and a link to it.
    let cmt = comment(&*s, id, "the heron question", false).await;
    let hits = find(&*s, query("heron", Visibility::Staff)).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, cmt);
    assert_eq!(hits[0].kind, DocKind::Comment);
    assert_eq!(hits[0].title, "Plan");
    assert_eq!(hits[0].artifact_id, Some(id));
    assert_eq!(hits[0].url, format!("/artifacts/{id}#c-{cmt}"));
    assert_eq!(hits[0].snippet, "the heron question");
}

async fn search_snippets_mark_matches_and_escape_the_rest(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    artifact(
        &*s,
        c,
        "notes",
        "Hostile",
        json!({"html": "<script>alert('x')</script> the kestrel flies <b>home</b> if 1<2 & 3>2 \"d\" \u{E000}marked\u{E001}"}),
    )
    .await;
    let hits = find(&*s, query("kestrel", Visibility::Staff)).await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    let h = &hits[0];
    assert!(h.snippet.contains("kestrel flies"), "{}", h.snippet);
    assert!(h.snippet.contains("1<2 & 3>2 \"d\""), "{}", h.snippet);
    assert!(!h.snippet.contains('\u{E000}') && !h.snippet.contains('\u{E001}'));
    let html = &h.snippet_html;
    assert!(html.contains("<mark>kestrel</mark>"), "{html}");
    assert!(html.contains("1&lt;2 &amp; 3&gt;2 &quot;d&quot;"), "{html}");
    // PostgreSQL's headline drops what looks like a tag, FTS5 keeps it as
    // text: either way it is never markup.
    assert!(!html.contains("<script") && !html.contains("<b>"), "{html}");
    assert_eq!(
        html.matches('<').count(),
        html.matches("<mark>").count() + html.matches("</mark>").count(),
        "{html}"
    );
    assert_eq!(
        html.matches("<mark>").count(),
        1,
        "markers in the content mark nothing: {html}"
    );
    // A long body gives a short snippet around the match.
    let filler = "lorem ipsum dolor sit amet ".repeat(400);
    artifact(
        &*s,
        c,
        "notes",
        "Long",
        json!({"a": filler, "b": "the osprey nests here", "c": filler}),
    )
    .await;
    let hits = find(&*s, query("osprey", Visibility::Staff)).await;
    assert!(hits[0].snippet.contains("osprey"), "{}", hits[0].snippet);
    assert!(hits[0].snippet.len() < 600, "{}", hits[0].snippet);
}

async fn search_shows_a_client_only_what_was_shared_with_it(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "Alpha").await;
    let b = client(&*s, "Beta").await;
    let shared = artifact(&*s, a, "plan", "Shared plan", json!({"w": "marmot shared"})).await;
    let draft = artifact(&*s, a, "plan", "Draft plan", json!({"w": "marmot draft"})).await;
    let back = artifact(&*s, a, "plan", "Back plan", json!({"w": "marmot back"})).await;
    let theirs = artifact(&*s, b, "plan", "Beta plan", json!({"w": "marmot beta"})).await;
    for id in [shared, back, theirs] {
        s.share(id, None, &staff(), &ctx()).await.unwrap();
    }
    // Shared, then back in draft: hidden again, with nothing re-indexed.
    s.transition(back, ArtifactStatus::Draft, None, None, false, &ctx())
        .await
        .unwrap();
    let public = comment(&*s, shared, "marmot public remark", false).await;
    let internal = comment(&*s, shared, "marmot internal remark", true).await;
    let on_draft = comment(&*s, draft, "marmot draft remark", false).await;
    let on_theirs = comment(&*s, theirs, "marmot beta remark", false).await;

    let everything = ids(&*s, "marmot", Visibility::Staff).await;
    assert_eq!(
        everything,
        sorted(vec![
            shared.to_string(),
            draft.to_string(),
            back.to_string(),
            theirs.to_string(),
            public.clone(),
            internal.clone(),
            on_draft.clone(),
            on_theirs.clone(),
        ])
    );
    assert_eq!(
        ids(&*s, "marmot", Visibility::Client(a)).await,
        sorted(vec![shared.to_string(), public.clone()])
    );
    assert_eq!(
        ids(&*s, "marmot", Visibility::Client(b)).await,
        sorted(vec![theirs.to_string(), on_theirs.clone()])
    );
    // Asking for another client's things finds nothing, not an error.
    let mut q = query("marmot", Visibility::Client(a));
    q.client_id = Some(b);
    assert!(find(&*s, q).await.is_empty());
    // Sharing again shows it, and the comments on it, at once.
    s.share(draft, None, &staff(), &ctx()).await.unwrap();
    let now_seen = ids(&*s, "marmot", Visibility::Client(a)).await;
    assert!(now_seen.contains(&draft.to_string()), "{now_seen:?}");
    assert!(now_seen.contains(&on_draft), "{now_seen:?}");
    assert!(!now_seen.contains(&internal), "{now_seen:?}");
    // The staff's client filter.
    let mut q = query("marmot", Visibility::Staff);
    q.client_id = Some(b);
    assert_eq!(find(&*s, q).await.len(), 2);
}

async fn search_filters_and_pages(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "Alpha").await;
    let eng = s
        .create_engagement(
            NewEngagement {
                client_id: a,
                name: "E".into(),
                pack: "p".into(),
            },
            &ctx(),
        )
        .await
        .unwrap()
        .record
        .id;
    let mut in_eng = Vec::new();
    for i in 0..7 {
        let mut new = NewArtifact {
            client_id: a,
            engagement_id: Some(eng),
            artifact_type: if i % 2 == 0 { "intake" } else { "strategy" }.into(),
            title: format!("Doc {i}"),
            content: json!({"w": format!("walrus number {i}")}),
            sources: None,
            note: None,
            provenance: "human".into(),
            pipeline: None,
        };
        if i == 6 {
            new.engagement_id = None;
        }
        let id = s
            .create_artifact(new, &ctx())
            .await
            .unwrap()
            .record
            .summary
            .id;
        in_eng.push(id);
    }
    comment(&*s, in_eng[0], "walrus comment", false).await;

    let mut q = query("walrus", Visibility::Staff);
    q.kinds = vec![DocKind::Comment];
    assert_eq!(find(&*s, q.clone()).await.len(), 1);
    q.kinds = vec![DocKind::Artifact, DocKind::File];
    assert_eq!(find(&*s, q.clone()).await.len(), 7);
    q.kinds = vec![];
    q.engagement_id = Some(eng);
    assert_eq!(
        find(&*s, q.clone()).await.len(),
        7,
        "six artifacts and the comment"
    );
    q.artifact_type = Some("intake".into());
    assert_eq!(
        find(&*s, q.clone()).await.len(),
        4,
        "three intakes and the comment on one"
    );

    // Pages: each hit once, then no cursor.
    let q = query("walrus", Visibility::Staff);
    let mut seen = Vec::new();
    let mut req = page(3);
    loop {
        let p = s.search(&q, req.clone()).await.unwrap();
        assert!(p.items.len() <= 3);
        seen.extend(p.items.into_iter().map(|h| h.id));
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no hit twice");
    for bad in ["x", "-1", "1001", "art_0193a0b2c3d4e5f60718293a4b5c6d7e"] {
        let r = s
            .search(
                &q,
                PageRequest {
                    limit: 3,
                    cursor: Some(bad.into()),
                },
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad}: {r:?}");
    }
    let last = s
        .search(
            &q,
            PageRequest {
                limit: 3,
                cursor: Some("1000".into()),
            },
        )
        .await
        .unwrap();
    assert!(last.items.is_empty() && last.next_cursor.is_none());
}

async fn search_ranks_the_most_recent_matches_of_a_common_word(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "Alpha").await;
    let b = client(&*s, "Beta").await;
    // The best match (the word in its title) is the oldest.
    let oldest = artifact(&*s, a, "brief", "Cutover plan", json!({"x": "cutover"})).await;
    let mut newer = Vec::new();
    for i in 0..4 {
        // Written a moment apart: PostgreSQL's recent is the time written.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let body = json!({"x": format!("the cutover, step {i}")});
        newer.push(artifact(&*s, b, "brief", &format!("Step {i}"), body).await);
    }
    let all = |candidates| {
        let mut q = query("cutover", Visibility::Staff);
        q.candidates = candidates;
        q
    };
    // Every match ranked: the title match first.
    let hits = find(&*s, all(SEARCH_CANDIDATES)).await;
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0].id, oldest.to_string());

    // Three ranked: the three most recent, on every page, and no more.
    let mut seen = Vec::new();
    let mut req = page(2);
    loop {
        let p = s.search(&all(3), req.clone()).await.unwrap();
        seen.extend(p.items.into_iter().map(|h| h.id));
        match p.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        sorted(seen),
        sorted(newer[1..].iter().map(ToString::to_string).collect()),
    );

    // The filters come first: the client's own matches are the candidates.
    let mut only_a = all(1);
    only_a.client_id = Some(a);
    let hits = find(&*s, only_a).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, oldest.to_string());
}

async fn search_reads_hostile_queries_as_words(db: &TestDb) {
    let s = store(db);
    let c = client(&*s, "Acme").await;
    artifact(
        &*s,
        c,
        "notes",
        "Syntax",
        json!({"t": "near or and not title body col:umn e-mail naïve 東京 \"quoted\" it's 3.5"}),
    )
    .await;
    for q in [
        "\"",
        "\"\"",
        "\"unclosed phrase",
        "*",
        "a*",
        "NEAR(",
        "NEAR(a b)",
        "-",
        "--",
        "-near",
        ":",
        "title:near",
        "col:umn",
        "body:",
        "OR",
        "or or or",
        "AND NOT",
        "near OR",
        "(",
        ")",
        "((near",
        "^near",
        "near +",
        "'",
        "it's",
        "!near",
        "near & body",
        "near | body",
        "<->",
        "near:*",
        "\\",
        "\0",
        "near\0title",
        "\"near\0",
        "東京",
        "naive",
        "😀 near",
        "e-mail",
        "3.5",
        &"x".repeat(300),
        &"near ".repeat(60),
    ] {
        let r = s.search(&query(q, Visibility::Staff), page(20)).await;
        assert!(r.is_ok(), "{q:?}: {r:?}");
        let r = s
            .list_artifacts(
                ArtifactFilter {
                    q: Some(q.into()),
                    ..Default::default()
                },
                page(20),
            )
            .await;
        assert!(r.is_ok(), "list {q:?}: {r:?}");
    }
    // Words that look like syntax are still words.
    // (SQLite also folds accents: `naive` finds `naïve` there only.)
    for q in [
        "near", "NEAR(", "or near", "col:umn", "e-mail", "naïve", "東京", "it's",
    ] {
        assert_eq!(
            ids(&*s, q, Visibility::Staff).await.len(),
            1,
            "{q:?} finds the document"
        );
    }
    for q in ["", "   ", "*", "\"", "-near", ":"] {
        assert!(ids(&*s, q, Visibility::Staff).await.is_empty(), "{q:?}");
    }
}

async fn search_backs_the_artifact_list_q(db: &TestDb) {
    let s = store(db);
    let a = client(&*s, "Alpha").await;
    let b = client(&*s, "Beta").await;
    let mut made = Vec::new();
    for i in 0..4 {
        made.push(
            artifact(
                &*s,
                a,
                "notes",
                &format!("Note {i}"),
                json!({"w": if i == 3 { "nothing" } else { "narwhal" }}),
            )
            .await,
        );
    }
    let theirs = artifact(&*s, b, "notes", "Narwhal title", json!({})).await;
    s.share(made[1], None, &staff(), &ctx()).await.unwrap();
    let list = |filter: ArtifactFilter, page: PageRequest| {
        let s = s.clone();
        async move { s.list_artifacts(filter, page).await.unwrap() }
    };
    let q = |c: Option<ClientId>| ArtifactFilter {
        q: Some("Narwhal".into()),
        client_id: c,
        ..Default::default()
    };
    // Content and titles, newest first, with the list's own cursor.
    let first = list(q(None), page(2)).await;
    assert_eq!(
        first.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![theirs, made[2]]
    );
    let rest = list(
        q(None),
        PageRequest {
            limit: 2,
            cursor: first.next_cursor.clone(),
        },
    )
    .await;
    assert_eq!(
        rest.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![made[1], made[0]]
    );
    assert_eq!(list(q(Some(a)), page(50)).await.items.len(), 3);
    let shared = ArtifactFilter {
        shared_with: Some(a),
        ..q(None)
    };
    assert_eq!(
        list(shared, page(50))
            .await
            .items
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        vec![made[1]]
    );
    assert!(
        list(
            ArtifactFilter {
                q: Some("*".into()),
                ..Default::default()
            },
            page(50)
        )
        .await
        .items
        .is_empty()
    );
}
