//! Full-text search over HTTP, on both backends: what the team finds, what
//! each client's users find (only what was shared with them, never another
//! client's), filters, pages, `q` on the artifact list, hostile queries,
//! escaped snippets, and the `/search` page.

use serde_json::{Value, json};
use waymark_store::Role;

use crate::fixtures::{Person, get_as, person};
use crate::helpers::{Backend, TestApp, spawn_app};

crate::each_backend!(
    search_finds_what_each_caller_may_see,
    search_filters_pages_and_refuses_bad_queries,
    the_artifact_list_q_uses_the_index,
    the_search_page_shows_results_to_the_team_and_to_clients,
);

const PASSWORD: &str = "a long enough password";

/// What the tests find: A's and B's documents and comments.
struct World {
    a: String,
    b: String,
    eng: String,
    /// A's intake in the engagement, shared.
    intake: String,
    /// A's shared free-form document.
    shared: String,
    /// A's document never shared.
    draft: String,
    /// A's document shared, then taken back to draft.
    withdrawn: String,
    /// B's shared document.
    theirs: String,
    public_comment: String,
    internal_comment: String,
    theirs_comment: String,
    ana: Person,
    bob: Person,
}

async fn created(app: &TestApp, path: &str, body: Value) -> String {
    let a = app.post(path, body).await;
    assert_eq!(a.status, 201, "{path}: {}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

async fn document(app: &TestApp, client: &str, title: &str, content: Value) -> String {
    created(
        app,
        "/api/v1/artifacts",
        json!({"client_id": client, "type": "brief", "title": title, "content": content}),
    )
    .await
}

async fn share(app: &TestApp, id: &str) {
    let s = app
        .post(&format!("/api/v1/artifacts/{id}/share"), json!({}))
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
}

async fn comment(app: &TestApp, on: &str, body: &str, internal: bool) -> String {
    created(
        app,
        &format!("/api/v1/artifacts/{on}/comments"),
        json!({"body": body, "internal": internal}),
    )
    .await
}

async fn world(app: &TestApp) -> World {
    let a = app.client("Alpha Foods").await;
    let b = app.client("Beta Metals").await;
    let eng = created(
        app,
        "/api/v1/engagements",
        json!({"client_id": a, "name": "Launch", "pack": "marketing-engagement"}),
    )
    .await;
    let mut intake_content: Value = serde_json::from_str(include_str!(
        "../../../../packs/marketing-engagement/examples/intake.json"
    ))
    .unwrap();
    intake_content["client_identity"]["client_name"] = json!("Quokka Provisions");
    let intake = created(
        app,
        "/api/v1/artifacts",
        json!({"client_id": a, "engagement_id": eng, "type": "intake",
               "title": "Client intake", "content": intake_content}),
    )
    .await;
    share(app, &intake).await;
    let shared = document(
        app,
        &a,
        "Quokka rollout plan",
        json!({"summary": "How the quokka campaign reaches the coast", "weeks": 6}),
    )
    .await;
    share(app, &shared).await;
    let draft = document(
        app,
        &a,
        "Internal numbers",
        json!({"summary": "The quokka margin nobody outside may read"}),
    )
    .await;
    let withdrawn = document(
        app,
        &a,
        "Old plan",
        json!({"summary": "A quokka plan we took back"}),
    )
    .await;
    share(app, &withdrawn).await;
    let back = app
        .post(
            &format!("/api/v1/artifacts/{withdrawn}/transitions"),
            json!({"to": "draft", "reason": "not ready"}),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    let theirs = document(
        app,
        &b,
        "Beta quokka study",
        json!({"summary": "Beta's own quokka secrets"}),
    )
    .await;
    share(app, &theirs).await;
    let public_comment = comment(app, &shared, "Is the quokka budget final?", false).await;
    let internal_comment = comment(app, &shared, "quokka margin is thin, keep quiet", true).await;
    let theirs_comment = comment(app, &theirs, "Beta quokka remark", false).await;
    let ana = person(app, "ana@alpha.example", Role::Client, Some(&a)).await;
    let bob = person(app, "bob@beta.example", Role::Client, Some(&b)).await;
    World {
        a,
        b,
        eng,
        intake,
        shared,
        draft,
        withdrawn,
        theirs,
        public_comment,
        internal_comment,
        theirs_comment,
        ana,
        bob,
    }
}

fn ids(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(list: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).clone()).collect();
    v.sort();
    v
}

async fn search_finds_what_each_caller_may_see(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let w = world(&app).await;

    // The team finds everything.
    let all = app.get("/api/v1/search?q=quokka&limit=100").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        ids(&all.body),
        sorted(&[
            &w.intake,
            &w.shared,
            &w.draft,
            &w.withdrawn,
            &w.theirs,
            &w.public_comment,
            &w.internal_comment,
            &w.theirs_comment,
        ])
    );
    let hit = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == w.shared.as_str())
        .unwrap();
    assert_eq!(hit["kind"], "artifact");
    assert_eq!(hit["title"], "Quokka rollout plan");
    assert_eq!(hit["client_id"], w.a.as_str());
    assert_eq!(hit["artifact_id"], w.shared.as_str());
    assert_eq!(hit["artifact_type"], "brief");
    assert_eq!(hit["url"], format!("/artifacts/{}", w.shared));
    assert!(hit["rank"].as_f64().unwrap() > 0.0, "{hit}");
    assert!(
        hit["snippet_html"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("<mark>quokka</mark>"),
        "{hit}"
    );
    // A title match ranks first.
    assert!(
        all.body["items"][0]["title"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("quokka"),
        "{}",
        all.body
    );
    let c = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == w.public_comment.as_str())
        .unwrap();
    assert_eq!(c["kind"], "comment");
    assert_eq!(c["title"], "Quokka rollout plan");
    assert_eq!(
        c["url"],
        format!("/artifacts/{}#c-{}", w.shared, w.public_comment)
    );
    // The linked pages are served.
    for h in all.body["items"].as_array().unwrap() {
        let url = h["url"].as_str().unwrap();
        let page = app
            .http
            .get(format!("{}{}", app.base, url.split('#').next().unwrap()))
            .send()
            .await
            .unwrap();
        // Without a session the page sends the browser to sign in.
        assert!(
            page.status().is_success() || page.status().is_redirection(),
            "{url}: {}",
            page.status()
        );
    }

    // A's user: A's shared documents and their public comments only.
    let ana = get_as(&app, &w.ana.token, "/api/v1/search?q=quokka").await;
    assert_eq!(ana.status, 200, "{}", ana.body);
    assert_eq!(
        ids(&ana.body),
        sorted(&[&w.intake, &w.shared, &w.public_comment])
    );
    for secret in ["margin", "Beta", "took back"] {
        assert!(
            !ana.body.to_string().contains(secret),
            "{secret}: {}",
            ana.body
        );
    }
    // Naming B answers an empty list, as a client of nobody does.
    for c in [&w.b, &"cli_0193a0b2c3d4e5f60718293a4b5c6d7e".to_owned()] {
        let other = get_as(
            &app,
            &w.ana.token,
            &format!("/api/v1/search?q=quokka&client_id={c}"),
        )
        .await;
        assert_eq!(other.status, 200, "{}", other.body);
        assert_eq!(other.body, json!({"items": [], "next_cursor": null}));
    }
    let own = get_as(
        &app,
        &w.ana.token,
        &format!("/api/v1/search?q=quokka&client_id={}", w.a),
    )
    .await;
    assert_eq!(ids(&own.body).len(), 3);

    // B's user finds none of A's.
    let bob = get_as(&app, &w.bob.token, "/api/v1/search?q=quokka").await;
    assert_eq!(ids(&bob.body), sorted(&[&w.theirs, &w.theirs_comment]));
    let bob_margin = get_as(&app, &w.bob.token, "/api/v1/search?q=margin").await;
    assert_eq!(bob_margin.body["items"], json!([]));

    // Sharing the draft shows it to A's user at once.
    share(&app, &w.draft).await;
    let again = get_as(&app, &w.ana.token, "/api/v1/search?q=margin").await;
    assert_eq!(
        ids(&again.body),
        vec![w.draft.clone()],
        "the internal comment stays hidden"
    );
    // The staff's client filter.
    let only_b = app
        .get(&format!("/api/v1/search?q=quokka&client_id={}", w.b))
        .await;
    assert_eq!(ids(&only_b.body), sorted(&[&w.theirs, &w.theirs_comment]));
    // New content is found, the old is not.
    let edited = app
        .put_content(
            &w.withdrawn,
            "\"1\"",
            json!({"content": {"summary": "Now about wombats"}}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let wombat = app.get("/api/v1/search?q=wombats").await;
    assert_eq!(ids(&wombat.body), vec![w.withdrawn.clone()]);
    let took = app.get("/api/v1/search?q=%22took%20back%22").await;
    assert_eq!(took.body["items"], json!([]));
}

async fn search_filters_pages_and_refuses_bad_queries(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let w = world(&app).await;
    let get_ids = |path: String| {
        let app = &app;
        async move {
            let a = app.get(&path).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            ids(&a.body)
        }
    };
    assert_eq!(
        get_ids("/api/v1/search?q=quokka&kind=comment".into())
            .await
            .len(),
        3
    );
    assert_eq!(
        get_ids("/api/v1/search?q=quokka&kind=comment&kind=file".into())
            .await
            .len(),
        3
    );
    assert_eq!(
        get_ids("/api/v1/search?q=quokka&kind=artifact,file".into())
            .await
            .len(),
        5
    );
    assert_eq!(
        get_ids(format!("/api/v1/search?q=quokka&engagement_id={}", w.eng)).await,
        vec![w.intake.clone()]
    );
    assert_eq!(
        get_ids("/api/v1/search?q=quokka&type=intake".into()).await,
        vec![w.intake.clone()]
    );
    assert_eq!(
        get_ids(format!(
            "/api/v1/search?q=quokka&type=brief&kind=comment&client_id={}",
            w.a
        ))
        .await,
        sorted(&[&w.public_comment, &w.internal_comment])
    );

    // Pages: every hit once.
    let mut seen = Vec::new();
    let mut url = "/api/v1/search?q=quokka&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let p = app.get(&url).await;
        assert_eq!(p.status, 200, "{}", p.body);
        pages += 1;
        let items = p.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|h| h["id"].as_str().unwrap().to_owned()));
        match p.body["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/search?q=quokka&limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);

    // Refused, 400, with a problem.
    for bad in [
        "/api/v1/search",
        "/api/v1/search?q=",
        "/api/v1/search?q=%20%20%09",
        "/api/v1/search?q=a&q=b",
        "/api/v1/search?q=x&kind=folder",
        "/api/v1/search?q=x&limit=0",
        "/api/v1/search?q=x&limit=101",
        "/api/v1/search?q=x&limit=many",
        "/api/v1/search?q=x&cursor=abc",
        "/api/v1/search?q=x&cursor=1001",
        "/api/v1/search?q=x&client_id=eng_0193a0b2c3d4e5f60718293a4b5c6d7e",
        "/api/v1/search?q=x&type=Not-A-Type",
    ] {
        app.get(bad).await.assert_problem(400, "invalid_query");
    }
    let long = format!("/api/v1/search?q={}", "x".repeat(201));
    app.get(&long).await.assert_problem(400, "invalid_query");
    let ok = format!("/api/v1/search?q={}", "x".repeat(200));
    assert_eq!(app.get(&ok).await.status, 200);

    // Whatever is typed is read as words.
    for q in [
        "%22",
        "*",
        "NEAR(",
        "NEAR(quokka",
        "-",
        "-quokka",
        ":",
        "title:quokka",
        "OR",
        "quokka%20OR",
        "AND%20NOT",
        "%27",
        "(",
        "%5C",
        "quokka*",
        "%F0%9F%98%80",
        "%E6%9D%B1%E4%BA%AC",
        "%3Cscript%3E",
        "quokka%00x",
        "%22quokka%00",
        "!quokka%20%26%20%7C",
    ] {
        let a = app.get(&format!("/api/v1/search?q={q}")).await;
        assert_eq!(a.status, 200, "q={q}: {}", a.body);
        let l = app.get(&format!("/api/v1/artifacts?q={q}")).await;
        assert_eq!(l.status, 200, "artifacts q={q}: {}", l.body);
    }
    assert_eq!(
        ids(&app.get("/api/v1/search?q=NEAR(quokka").await.body).len(),
        0,
        "every word must match: nothing says `near`"
    );
    assert_eq!(
        ids(&app
            .get("/api/v1/search?q=%22quokka%20campaign%22")
            .await
            .body),
        vec![w.shared.clone()]
    );
    assert_eq!(
        ids(&app
            .get("/api/v1/search?q=quokka%20-margin%20-beta%20-coast")
            .await
            .body),
        sorted(&[&w.intake, &w.withdrawn, &w.public_comment])
    );

    // Snippets are escaped; only the matches are marked.
    let hostile = document(
        &app,
        &w.a,
        "Hostile",
        json!({"body": "<script>alert(1)</script> the platypus <img src=x onerror=alert(2)> 1<2"}),
    )
    .await;
    let h = app.get("/api/v1/search?q=platypus").await;
    assert_eq!(ids(&h.body), vec![hostile]);
    let html = h.body["items"][0]["snippet_html"].as_str().unwrap();
    assert!(html.contains("<mark>platypus</mark>"), "{html}");
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert_eq!(
        html.matches('<').count(),
        2,
        "no element but the one mark: {html}"
    );
}

async fn the_artifact_list_q_uses_the_index(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let w = world(&app).await;
    let list = |path: String| {
        let app = &app;
        async move {
            let a = app.get(&path).await;
            assert_eq!(a.status, 200, "{path}: {}", a.body);
            a.body
        }
    };
    // Content and titles, artifacts only, newest first.
    let all = list("/api/v1/artifacts?q=quokka".into()).await;
    let got: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            w.theirs.as_str(),
            w.withdrawn.as_str(),
            w.draft.as_str(),
            w.shared.as_str(),
            w.intake.as_str()
        ]
    );
    // The list's own cursor.
    let first = list("/api/v1/artifacts?q=quokka&limit=2".into()).await;
    let c = first["next_cursor"].as_str().unwrap();
    let second = list(format!("/api/v1/artifacts?q=quokka&limit=2&cursor={c}")).await;
    assert_eq!(second["items"][0]["id"], w.draft.as_str());
    // A client user: what was shared with them.
    let ana = get_as(&app, &w.ana.token, "/api/v1/artifacts?q=quokka").await;
    assert_eq!(ids(&ana.body), sorted(&[&w.intake, &w.shared]));
    let ana_margin = get_as(&app, &w.ana.token, "/api/v1/artifacts?q=margin").await;
    assert_eq!(ana_margin.body["items"], json!([]));
    // Other filters combine with it.
    let briefs = list(format!(
        "/api/v1/artifacts?q=quokka&type=brief&client_id={}",
        w.a
    ))
    .await;
    assert_eq!(briefs["items"].as_array().unwrap().len(), 3);
    let intake = list("/api/v1/artifacts?q=provisions".into()).await;
    assert_eq!(ids(&intake), vec![w.intake.clone()]);
}

/// The page as a signed-in person's browser gets it, without script.
async fn page_as(app: &TestApp, email: &str, path: &str) -> (u16, String) {
    let session = app
        .post(
            "/api/v1/sessions",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.body);
    let secret = session.body["token"].as_str().unwrap();
    let res = app
        .http
        .get(format!("{}{path}", app.base))
        .header("cookie", format!("waymark_session={secret}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn the_search_page_shows_results_to_the_team_and_to_clients(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let w = world(&app).await;
    document(
        &app,
        &w.a,
        "Hostile <script>window.pwned=1</script>",
        json!({"body": "a quokka <script>window.pwned=2</script> note"}),
    )
    .await;
    app.user(json!({"email": "olga@team.example", "name": "Olga", "role": "operator", "password": PASSWORD}))
        .await;
    app.user(
        json!({"email": "cleo@alpha.example", "name": "Cleo", "role": "client",
                    "client_id": w.a, "password": PASSWORD}),
    )
    .await;

    // Over plain HTTP: the team's results, escaped.
    let (status, html) = page_as(&app, "olga@team.example", "/search?q=quokka").await;
    assert_eq!(status, 200, "{html}");
    for title in [
        "Quokka rollout plan",
        "Beta quokka study",
        "Internal numbers",
    ] {
        assert!(html.contains(title), "{title}");
    }
    assert!(html.contains("Alpha Foods") && html.contains("Beta Metals"));
    assert!(html.contains("<mark>quokka</mark>") || html.contains("<mark>Quokka</mark>"));
    assert!(!html.contains("<script>window"), "escaped");
    assert!(html.contains("Hostile &lt;script&gt;") || html.contains("Hostile &#60;script&#62;"));
    assert!(html.contains("role=\"search\""));
    assert!(html.contains(&format!("href=\"/artifacts/{}\"", w.shared)));
    // Filters and the empty state.
    let (_, html) = page_as(
        &app,
        "olga@team.example",
        &format!("/search?q=quokka&kind=comment&client_id={}", w.b),
    )
    .await;
    assert!(html.contains("Beta quokka study") && !html.contains("Quokka rollout plan"));
    let (_, html) = page_as(&app, "olga@team.example", "/search?q=zebrafish").await;
    assert!(html.contains("Nothing was found for “zebrafish”"), "{html}");
    let (status, html) = page_as(&app, "olga@team.example", "/search").await;
    assert_eq!(status, 200);
    assert!(html.contains("Type some words above"));
    let (status, _) = page_as(&app, "olga@team.example", "/search?q=x&kind=folder").await;
    assert_eq!(status, 400);
    // Pages of 20.
    for i in 0..20 {
        document(&app, &w.a, &format!("Quokka extra {i}"), json!({})).await;
    }
    let (_, html) = page_as(&app, "olga@team.example", "/search?q=quokka").await;
    assert!(html.contains("rel=\"next\""), "{html}");
    let (_, html) = page_as(&app, "olga@team.example", "/search?q=quokka&cursor=20").await;
    assert!(
        html.contains("rel=\"prev\"") && html.contains("(21 to "),
        "{html}"
    );

    // A client user: only what was shared with them, no client filter.
    let (status, html) = page_as(&app, "cleo@alpha.example", "/search?q=quokka").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Quokka rollout plan"));
    for hidden in [
        "Beta quokka study",
        "Internal numbers",
        "Old plan",
        "keep quiet",
        "Beta Metals",
        "s-client",
    ] {
        assert!(!html.contains(hidden), "{hidden}");
    }

    // In a browser: the header's box, axe on the results and the empty state.
    let Some(b) = crate::browser::browser().await else {
        return;
    };
    b.sign_in(&app.base, "olga@team.example", PASSWORD).await;
    b.goto(&format!("{}/", app.base)).await;
    b.fill("#top-q", "rollout").await;
    b.click("form.top-search button[type=submit]").await;
    assert!(
        b.url().await.contains("/search?q=rollout"),
        "{}",
        b.url().await
    );
    let body = b.body().await;
    assert!(body.contains("Quokka rollout plan"), "{body}");
    let pwned =
        b.c.execute("return window.pwned === undefined", vec![])
            .await
            .unwrap();
    assert_eq!(pwned, Value::Bool(true), "nothing ran");
    b.screenshot("search").await;
    b.assert_accessible().await;
    b.fill("#s-q", "quokka").await;
    b.select("#s-kind", "comment").await;
    b.select("#s-client", &w.b).await;
    b.click("form.filters button[type=submit]").await;
    let body = b.body().await;
    assert!(
        body.contains("Beta quokka study") && !body.contains("Quokka rollout plan"),
        "{body}"
    );
    b.goto(&format!("{}/search?q=zebrafish", app.base)).await;
    b.assert_accessible().await;
    b.set_width(375).await;
    b.goto(&format!("{}/search?q=quokka", app.base)).await;
    assert!(
        b.overflowing().await.is_empty(),
        "{:?}",
        b.overflowing().await
    );
    b.assert_accessible().await;
    b.close().await;

    let Some(b) = crate::browser::browser().await else {
        return;
    };
    b.sign_in(&app.base, "cleo@alpha.example", PASSWORD).await;
    b.goto(&format!("{}/search?q=quokka", app.base)).await;
    let body = b.body().await;
    assert!(body.contains("Quokka rollout plan"), "{body}");
    assert!(!body.contains("Beta quokka study"), "{body}");
    b.assert_accessible().await;
    b.close().await;
}
