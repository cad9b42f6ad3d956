//! The web pages: in a real headless chromium (see `browser.rs`) for what a
//! person does, and over plain HTTP for the headers, cookies and refusals a
//! browser does not show.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "a long enough password";

/// An artifact of `client` with three sections, shared for review.
async fn shared_artifact(app: &TestApp, client: &str, title: &str) -> String {
    let a = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "brief", "title": title,
                   "content": {"summary": "We grow in the north.", "goals": ["grow", "keep"],
                               "phases": [{"name": "one", "weeks": 2}]}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/artifacts/{id}/share"),
            json!({"message": "Please review"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    id
}

async fn review_link(app: &TestApp, id: &str) -> Value {
    let l = app
        .post(
            &format!("/api/v1/artifacts/{id}/review-links"),
            json!({"reviewer_email": "rita@client.example", "reviewer_name": "Rita Reviewer"}),
        )
        .await;
    assert_eq!(l.status, 201, "{}", l.body);
    l.body
}

/// A reviewer without an account opens the mailed link in a fresh browser,
/// comments on a section and approves; in the second round the page opens on
/// what changed since; a revoked link gets a page saying so.
async fn a_reviewer_comments_and_approves_through_a_review_link(app: TestApp) {
    let Some(b) = browser().await else { return };
    let client = app.client("Northwind").await;
    let id = shared_artifact(&app, &client, "Growth plan").await;
    let link = review_link(&app, &id).await;
    assert!(link["url"].as_str().unwrap().contains("/review/wmr_"));
    let url = format!("{}/review/{}", app.base, link["token"].as_str().unwrap());

    b.goto(&url).await;
    assert_eq!(b.title().await, "Growth plan · Waymark");
    assert!(b.body().await.contains("Your decision"));
    assert!(b.text("#sec-goals").await.contains("grow"));
    b.assert_accessible().await;
    b.screenshot("review-link").await;

    b.select("#comment-section", "/goals").await;
    b.fill("#comment-body", "Add a goal for retention.").await;
    b.click("#comment-form button[type=submit]").await;
    assert!(
        b.url().await.ends_with("?done=commented"),
        "{}",
        b.url().await
    );
    assert!(
        b.text("[role=status]")
            .await
            .contains("Your comment was added")
    );
    assert!(
        b.text("#sec-goals")
            .await
            .contains("Add a goal for retention.")
    );

    b.click("#approve-form button[type=submit]").await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("Your approval is recorded")
    );

    let a = app.get(&format!("/api/v1/artifacts/{id}")).await;
    assert_eq!(a.body["status"], "approved", "{}", a.body);
    let comments = app.get(&format!("/api/v1/artifacts/{id}/comments")).await;
    let mine: Vec<&Value> = comments.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["author_kind"] == "reviewer")
        .collect();
    assert_eq!(mine.len(), 1, "{}", comments.body);
    assert_eq!(mine[0]["section"], "/goals");
    assert_eq!(mine[0]["body"], "Add a goal for retention.");

    // A second round: the page opens on what changed since version 1.
    let r = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "draft"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let w = app
        .put_content(
            &id,
            "\"1\"",
            json!({"content": {"summary": "We grow in the north.", "goals": ["grow", "keep", "retain"],
                               "phases": [{"name": "one", "weeks": 2}]}}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let s = app
        .post(&format!("/api/v1/artifacts/{id}/share"), json!({}))
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    b.goto(&url).await;
    let since = b.text(".since").await;
    assert!(since.contains("What changed since version 1"), "{since}");
    assert!(since.contains("retain"), "{since}");
    b.assert_accessible().await;

    // Revoked: a page saying so, not the artifact.
    let d = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/review-links/{}", link["id"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    b.goto(&url).await;
    let body = b.body().await;
    assert!(body.contains("This review link no longer works"), "{body}");
    assert!(body.contains("withdrawn"), "{body}");
    assert!(!body.contains("We grow in the north"), "{body}");
    b.goto(&format!("{}/review/wmr_not-a-link", app.base)).await;
    assert!(b.body().await.contains("This review link is not valid"));
    b.close().await;

    // In the dark scheme and at a phone's width, a fresh link reads as well.
    let Some(d) = crate::browser::dark_browser().await else {
        return;
    };
    let fresh = review_link(&app, &id).await;
    d.goto(&format!(
        "{}/review/{}",
        app.base,
        fresh["token"].as_str().unwrap()
    ))
    .await;
    assert!(d.is_dark().await);
    d.assert_accessible().await;
    d.set_width(375).await;
    let wide = d.overflowing().await;
    assert!(wide.is_empty(), "no sideways scrolling at 375 px: {wide:?}");
    d.assert_accessible().await;
    d.close().await;
}

/// Signing in: unknown email and wrong password read alike, then the
/// dashboard, then signing out.
async fn an_operator_signs_in_and_out(app: TestApp) {
    let Some(b) = browser().await else { return };
    app.user(json!({"email": "ana@team.example", "name": "Ana Operator", "role": "operator", "password": PASSWORD}))
        .await;
    b.goto(&format!("{}/", app.base)).await;
    assert!(
        b.url().await.contains("/login?next=%2F"),
        "{}",
        b.url().await
    );
    b.assert_accessible().await;
    b.screenshot("sign-in").await;

    let mut refusals = vec![];
    for (email, password) in [
        ("ana@team.example", "not the password at all"),
        ("nobody@team.example", PASSWORD),
    ] {
        b.fill("#email", email).await;
        b.fill("#password", password).await;
        b.click("form[action='/login'] button[type=submit]").await;
        refusals.push(b.text("[role=alert]").await);
    }
    assert_eq!(refusals[0], "The email or the password is wrong.");
    assert_eq!(refusals[0], refusals[1]);

    b.sign_in(&app.base, "ana@team.example", PASSWORD).await;
    assert_eq!(b.url().await, format!("{}/", app.base));
    assert_eq!(b.text("h1").await, "Dashboard");
    b.assert_accessible().await;

    b.click("form[action='/logout'] button").await;
    assert!(b.text("[role=status]").await.contains("You are signed out"));
    b.goto(&format!("{}/", app.base)).await;
    assert!(b.url().await.contains("/login"), "{}", b.url().await);
    b.close().await;
}

/// The page headers: a strict Content-Security-Policy, no framing, an
/// HttpOnly CSRF cookie; a form post without the token changes nothing.
async fn pages_carry_their_protections(app: TestApp) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("waymark_csrf="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");

    // Signed in, a post with a wrong token (or none) is refused.
    app.user(json!({"email": "ana@team.example", "name": "Ana", "role": "operator", "password": PASSWORD}))
        .await;
    let session = app
        .post(
            "/api/v1/sessions",
            json!({"email": "ana@team.example", "password": PASSWORD}),
        )
        .await;
    let secret = session.body["token"].as_str().unwrap().to_owned();
    let client = app.client("Northwind").await;
    let id = shared_artifact(&app, &client, "Plan").await;
    let before = app
        .get(&format!("/api/v1/artifacts/{id}/comments"))
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    for token in ["", "0000"] {
        let res = http
            .post(format!("{}/artifacts/{id}/comments", app.base))
            .header(
                "cookie",
                format!("waymark_session={secret}; waymark_csrf={}", "a".repeat(64)),
            )
            .form(&[("csrf", token), ("body", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let after = app
        .get(&format!("/api/v1/artifacts/{id}/comments"))
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // An unknown page is the not-found page for a browser, problem+json for the API.
    let res = http
        .get(format!("{}/no/such/page", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.text().await.unwrap().contains("Not found"));
    let res = http
        .get(format!("{}/api/v1/nope", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

both_backends!(
    a_reviewer_comments_and_approves_through_a_review_link,
    an_operator_signs_in_and_out,
    pages_carry_their_protections,
    a_client_user_signs_in_by_a_mailed_link,
    failed_sign_ins_are_limited_per_source_address,
);

/// A client user sees only what was shared with their client: another
/// client's ids give the not-found page on every page URL, internal comments
/// never show, and markup in titles and comments is text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_users_see_only_their_client_and_markup_stays_text() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let Some(b) = browser().await else { return };
    let hostile = r#""><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>"#;
    let mine = app.client("Mine").await;
    let theirs = app.client("Theirs").await;
    let my_doc = shared_artifact(&app, &mine, &format!("Plan {hostile}")).await;
    let their_doc = shared_artifact(&app, &theirs, "Their secret plan").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": theirs, "name": "Their engagement", "pack": "marketing-engagement"}),
        )
        .await;
    let their_eng = e.body["id"].as_str().unwrap().to_owned();
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": theirs, "template": "client-onboarding", "name": "Their journey"}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    let their_journey = j.body["id"].as_str().unwrap().to_owned();
    for (body, internal) in [(hostile, false), ("internal note: margin is thin", true)] {
        let c = app
            .post(
                &format!("/api/v1/artifacts/{my_doc}/comments"),
                json!({"body": body, "section": "/summary", "internal": internal}),
            )
            .await;
        assert_eq!(c.status, 201, "{}", c.body);
    }
    app.user(
        json!({"email": "cleo@mine.example", "name": "Cleo", "role": "client",
                    "client_id": mine, "password": PASSWORD}),
    )
    .await;

    b.sign_in(&app.base, "cleo@mine.example", PASSWORD).await;
    assert_eq!(b.text("h1").await, "Welcome");
    let home = b.body().await;
    assert!(home.contains(&format!("Plan {hostile}")), "{home}");
    assert!(!home.contains("Their secret plan"));
    b.assert_accessible().await;
    b.screenshot("portal-home").await;

    b.goto(&format!("{}/artifacts/{my_doc}", app.base)).await;
    assert_eq!(b.text("h1").await, format!("Plan {hostile}"));
    let page = b.body().await;
    assert!(page.contains(hostile), "the comment is shown as text");
    assert!(!page.contains("internal note"), "{page}");
    assert!(!page.contains("Reopen as draft"), "no operator actions");
    let pwned =
        b.c.execute(
            "return [window.pwned === undefined, document.images.length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pwned, json!([true, 0]));
    b.assert_accessible().await;
    assert!(b.c.find(fantoccini::Locator::Css(".since")).await.is_err());

    // A new version: the page opens on what changed since the one seen.
    let r = app
        .post(
            &format!("/api/v1/artifacts/{my_doc}/transitions"),
            json!({"to": "draft"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let w = app
        .put_content(
            &my_doc,
            "\"1\"",
            json!({"content": {"summary": "We grow in the south.", "goals": ["grow"],
                               "phases": [{"name": "one", "weeks": 2}]}}),
        )
        .await;
    assert_eq!(w.status, 200, "{}", w.body);
    let sh = app
        .post(&format!("/api/v1/artifacts/{my_doc}/share"), json!({}))
        .await;
    assert_eq!(sh.status, 200, "{}", sh.body);
    b.goto(&format!("{}/artifacts/{my_doc}", app.base)).await;
    let since = b.text(".since").await;
    assert!(
        since.contains("since version 1") && since.contains("south"),
        "{since}"
    );

    for path in [
        format!("/artifacts/{their_doc}"),
        format!("/artifacts/{their_doc}/versions/1"),
        format!("/artifacts/{their_doc}/diff?from=1&to=1"),
        format!("/artifacts/{their_doc}/raw"),
        "/artifacts/art_00000000000000000000000000000000".to_owned(),
        format!("/clients/{theirs}"),
        format!("/engagements/{their_eng}"),
        format!("/engagements/{their_eng}/plan"),
        format!("/engagements/{their_eng}/intake"),
        format!("/engagements/{their_eng}/new/strategy"),
        format!("/journeys/{their_journey}"),
    ] {
        b.goto(&format!("{}{path}", app.base)).await;
        let body = b.body().await;
        assert!(body.contains("Not found"), "{path}: {body}");
        assert!(!body.contains("Their secret plan"), "{path}");
        assert!(
            !body.contains("Their engagement") && !body.contains("Their journey"),
            "{path}"
        );
    }
    // The team's own pages are not for client users.
    for path in ["/work", "/admin/people", "/admin/audit", "/clients"] {
        b.goto(&format!("{}{path}", app.base)).await;
        let body = b.body().await;
        assert!(
            body.contains("Not allowed") || (path == "/clients" && !body.contains("Theirs")),
            "{path}: {body}"
        );
    }
    b.close().await;
}

/// An operator signed in to a fresh browser.
async fn operator_browser(app: &TestApp) -> Option<crate::browser::Browser> {
    let b = browser().await?;
    let email = format!("op{}@team.example", rand_suffix());
    app.user(
        json!({"email": email, "name": "Olga Operator", "role": "operator", "password": PASSWORD}),
    )
    .await;
    b.sign_in(&app.base, &email, PASSWORD).await;
    Some(b)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A journey's promotion refused with its failed check shown in the criteria
/// table, then, once the metric is good, passed; the timeline moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_promotion_shows_its_failed_checks_then_passes() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "quality-gate", "title": "Quality gate", "stages": [
                {"id": "pilot", "name": "Pilot", "target_duration": "7d",
                 "exit": [{"name": "precision", "metric": "precision", "op": ">=", "threshold": 0.9}]},
                {"id": "live", "name": "Live"}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let client = app.client("Northwind").await;
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "quality-gate", "name": "Search rollout"}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    let id = j.body["id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/journeys/{id}/events"),
            json!({"event": "start"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let m = app
        .post(
            &format!("/api/v1/journeys/{id}/metrics"),
            json!({"observations": [{"name": "precision", "value": 0.7}]}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);

    let Some(b) = operator_browser(&app).await else {
        return;
    };
    b.goto(&format!("{}/journeys/{id}", app.base)).await;
    assert_eq!(b.text("h1").await, "Search rollout");
    assert!(b.text(".timeline").await.contains("current Pilot"));
    b.assert_accessible().await;
    b.click("#event-promote button[type=submit]").await;
    let alert = b.text("[role=alert]").await;
    assert!(alert.contains("precision"), "{alert}");
    let criteria = b.text("table.criteria").await;
    assert!(criteria.contains("failed"), "{criteria}");
    assert!(criteria.contains("0.7"), "{criteria}");
    b.screenshot("journey").await;

    let m = app
        .post(
            &format!("/api/v1/journeys/{id}/metrics"),
            json!({"observations": [{"name": "precision", "value": 0.95}]}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.body);
    b.goto(&format!("{}/journeys/{id}", app.base)).await;
    assert!(b.text("table.criteria").await.contains("passed"));
    assert!(b.find("svg.chart").await.text().await.is_ok());
    b.click("#event-promote button[type=submit]").await;
    assert!(b.text("[role=status]").await.contains("The journey moved"));
    assert!(b.text(".timeline").await.contains("current Live"));
    let after = app.get(&format!("/api/v1/journeys/{id}")).await;
    assert_eq!(after.body["state"], "live", "{}", after.body);
    b.close().await;
}

/// The operator's pages over a marketing engagement: clients, the client, the
/// board (strategy locked with its reason), the plan graph, the work inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pages_show_clients_board_plan_and_work() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let client = app.client("Northwind Ledger").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Q3 launch", "pack": "marketing-engagement"}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "Kickoff", "tasks": [
                {"key": "call", "name": "Kickoff call", "executor": "human"}]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);

    // A rejected draft and a journey past its stage's target.
    let rejected = shared_artifact(&app, &client, "Sent back").await;
    let r = app
        .post(
            &format!("/api/v1/artifacts/{rejected}/reject"),
            json!({"reason": "Too vague"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "quick", "title": "Quick", "stages": [
                {"id": "pilot", "name": "Pilot", "target_duration": "1s"}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "quick", "name": "Late rollout"}),
        )
        .await;
    let jid = j.body["id"].as_str().unwrap().to_owned();
    let s = app
        .post(
            &format!("/api/v1/journeys/{jid}/events"),
            json!({"event": "start"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.body);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let Some(b) = operator_browser(&app).await else {
        return;
    };
    assert_eq!(b.text("h1").await, "Dashboard");
    let risk = b.text("#risk").await;
    assert!(
        risk.contains("Late rollout") && risk.contains("past its target of 1s"),
        "{risk}"
    );
    assert!(b.text("#rework").await.contains("Sent back"));
    b.assert_accessible().await;
    b.screenshot("dashboard").await;
    b.goto(&format!("{}/clients", app.base)).await;
    b.assert_accessible().await;
    b.click("a[href^='/clients/cli_']").await;
    assert_eq!(b.text("h1").await, "Northwind Ledger");
    b.assert_accessible().await;
    b.click(&format!("a[href='/engagements/{eng}']")).await;
    assert_eq!(b.text("h1").await, "Q3 launch");
    let strategy = b.text("#col-strategy").await;
    assert!(strategy.contains("Locked"), "{strategy}");
    assert!(strategy.contains("intake"), "{strategy}");
    b.assert_accessible().await;
    b.screenshot("board").await;

    b.click(&format!("a[href='/engagements/{eng}/plan']")).await;
    assert_eq!(b.text("h1").await, "Generation plan");
    assert!(b.find("svg.graph").await.text().await.is_ok());
    b.assert_accessible().await;
    b.screenshot("plan").await;

    b.goto(&format!("{}/work", app.base)).await;
    assert!(b.body().await.contains("Kickoff call"));
    b.assert_accessible().await;
    b.find("details.task-form summary")
        .await
        .click()
        .await
        .unwrap();
    b.fill("textarea[name=output_json]", "{\"notes\": \"went well\"}")
        .await;
    b.click("form[action$='/complete'] button[type=submit]")
        .await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("The task is completed")
    );
    let tasks = app.get("/api/v1/work/tasks?executor=human").await;
    assert_eq!(
        tasks.body["items"][0]["status"], "completed",
        "{}",
        tasks.body
    );
    assert_eq!(tasks.body["items"][0]["output"]["notes"], "went well");

    // Readable at a phone's width: nothing makes the page scroll sideways.
    b.set_width(375).await;
    for path in [
        "/".to_owned(),
        "/clients".to_owned(),
        format!("/engagements/{eng}"),
        format!("/engagements/{eng}/plan"),
        format!("/journeys/{jid}"),
        "/work".to_owned(),
    ] {
        b.goto(&format!("{}{path}", app.base)).await;
        let wide = b.overflowing().await;
        assert!(
            wide.is_empty(),
            "{path} scrolls sideways at 375 px: {wide:?}"
        );
    }
    b.close().await;
}

/// Seed 001's pipeline in the browser: the intake form refuses a missing
/// required field at its field, then creates the intake; strategy is locked
/// with its reason until the intake is approved (through a review link);
/// after the intake changes, the board shows strategy stale with its cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_pipeline_walks_through_the_browser() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let client = app.client("Northwind Ledger").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Q3 launch", "pack": "marketing-engagement"}),
        )
        .await;
    let eng = e.body["id"].as_str().unwrap().to_owned();
    let Some(b) = operator_browser(&app).await else {
        return;
    };
    let base = &app.base;
    b.goto(&format!("{base}/engagements/{eng}")).await;
    b.click("#col-intake a.button").await;
    assert!(
        b.url()
            .await
            .ends_with(&format!("/engagements/{eng}/new/intake"))
    );
    b.assert_accessible().await;
    b.screenshot("intake-form").await;

    // Everything required but the client's name: refused at that field.
    let field = |p: &str| format!("[name='f:{p}']");
    b.fill(
        &field("/client_identity/website"),
        "https://northwind.example",
    )
    .await;
    b.select(&field("/client_identity/industry"), "technology")
        .await;
    b.fill(&field("/client_identity/geography"), "US and Canada")
        .await;
    b.fill(
        &field("/offer_economics/primary_offer"),
        "Ledger software for SMBs",
    )
    .await;
    b.select(&field("/goals_constraints/objective"), "leads")
        .await;
    b.click("#schema-form button.primary").await;
    assert!(b.text("#form-problem").await.contains("Nothing was saved"));
    let name = b.find(&field("/client_identity/client_name")).await;
    assert_eq!(
        name.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    let described = name
        .attr("aria-describedby")
        .await
        .unwrap()
        .unwrap_or_default();
    let err_id = described
        .split_whitespace()
        .find(|i| i.starts_with("err-"))
        .expect("the input points at its error")
        .to_owned();
    assert!(b.text(&format!("#{err_id}")).await.contains("required"));
    assert_eq!(
        app.get(&format!("/api/v1/artifacts?engagement_id={eng}"))
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing was written"
    );
    b.assert_accessible().await;

    // The values typed are kept; add the name and create.
    assert_eq!(
        b.find(&field("/client_identity/geography"))
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("US and Canada")
    );
    b.fill(&field("/client_identity/client_name"), "Northwind Ledger")
        .await;
    b.click("#schema-form button.primary").await;
    assert!(
        b.url().await.contains("/artifacts/art_"),
        "{}",
        b.url().await
    );
    let intake_id = b
        .url()
        .await
        .split("/artifacts/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        b.text("#sec-client-identity")
            .await
            .contains("Northwind Ledger")
    );

    // Strategy is locked until the intake is approved.
    b.goto(&format!("{base}/engagements/{eng}")).await;
    let strategy = b.text("#col-strategy").await;
    assert!(strategy.contains("Locked"), "{strategy}");
    assert!(strategy.contains("intake (draft"), "{strategy}");

    // Share it, and approve it through a review link in the same browser.
    b.goto(&format!("{base}/artifacts/{intake_id}")).await;
    b.click("#share-form button[type=submit]").await;
    let link = review_link(&app, &intake_id).await;
    b.goto(&format!(
        "{base}/review/{}",
        link["token"].as_str().unwrap()
    ))
    .await;
    b.click("#approve-form button[type=submit]").await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("approval is recorded")
    );
    b.goto(&format!("{base}/engagements/{eng}")).await;
    let strategy = b.text("#col-strategy").await;
    assert!(!strategy.contains("Locked"), "{strategy}");
    assert!(strategy.contains("Create"), "{strategy}");

    // A strategy built on the intake, approved.
    let example: Value = serde_json::from_str(include_str!(
        "../../../../packs/marketing-engagement/examples/strategy.json"
    ))
    .unwrap();
    let s = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "engagement_id": eng, "type": "strategy",
                   "title": "Strategy", "content": example}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let strategy_id = s.body["id"].as_str().unwrap().to_owned();
    let t = app
        .post(
            &format!("/api/v1/artifacts/{strategy_id}/transitions"),
            crate::helpers::transition_body("in_review"),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let t = app
        .post(
            &format!("/api/v1/artifacts/{strategy_id}/transitions"),
            crate::helpers::transition_body("approved"),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.body);

    // The intake changes: reopened on its page, edited in the form.
    b.goto(&format!("{base}/artifacts/{intake_id}")).await;
    b.click("form:has(input[name=to][value=draft]) button")
        .await;
    assert!(b.text("[role=status]").await.contains("status was changed"));
    b.goto(&format!("{base}/engagements/{eng}/intake")).await;
    b.fill(&field("/client_identity/geography"), "North America")
        .await;
    b.click("#schema-form button.primary").await;
    assert!(b.url().await.contains(&intake_id));
    b.goto(&format!("{base}/engagements/{eng}")).await;
    let strategy = b.text("#col-strategy").await;
    assert!(strategy.contains("stale"), "{strategy}");
    assert!(
        strategy.contains("Upstream intake changed from v1 to v2"),
        "{strategy}"
    );
    b.screenshot("board-stale").await;
    // The strategy's page says why it is stale, down to the root, and draws
    // its lineage.
    b.goto(&format!("{base}/artifacts/{strategy_id}")).await;
    let stale = b.text("section[aria-labelledby=stale-h]").await;
    assert!(
        stale.contains("Upstream intake changed from v1 to v2"),
        "{stale}"
    );
    let graph = b.find("section[aria-labelledby=lineage-h] svg.graph").await;
    assert!(
        graph
            .html(false)
            .await
            .unwrap()
            .contains(&format!("/artifacts/{intake_id}"))
    );
    b.assert_accessible().await;
    b.screenshot("artifact").await;
    b.close().await;
}

/// A client contact locked out by wrong passwords asks for a sign-in link,
/// reads it from the (fake) SMTP server, signs in with it once (a second use
/// is refused), and sees only their client.
async fn a_client_user_signs_in_by_a_mailed_link(app: TestApp) {
    let smtp = crate::smtp::FakeSmtp::start().await;
    let delivery = app
        .start_delivery(waymark_engine::delivery::DeliverySettings {
            smtp_url: Some(smtp.url()),
            mail_from: "Waymark <waymark@agency.example>".into(),
            public_url: app.base.clone(),
            ..crate::helpers::fast_delivery()
        })
        .await;
    let mine = app.client("Mine").await;
    let theirs = app.client("Theirs").await;
    shared_artifact(&app, &mine, "Our plan").await;
    shared_artifact(&app, &theirs, "Their secret plan").await;
    app.user(
        json!({"email": "cleo@mine.example", "name": "Cleo", "role": "client",
                    "client_id": mine, "password": PASSWORD}),
    )
    .await;
    // Five wrong passwords lock the password out.
    for _ in 0..5 {
        let a = app
            .post(
                "/api/v1/sessions",
                json!({"email": "cleo@mine.example", "password": "wrong wrong wrong"}),
            )
            .await;
        assert_eq!(a.status, 401);
    }
    let locked = app
        .post(
            "/api/v1/sessions",
            json!({"email": "cleo@mine.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(locked.status, 429, "{}", locked.body);

    let Some(b) = browser().await else { return };
    b.goto(&format!("{}/login", app.base)).await;
    b.fill("#link-email", "cleo@mine.example").await;
    b.click("#link-form button[type=submit]").await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("a sign-in link is on its way")
    );
    // An unknown address reads the same.
    b.fill("#link-email", "nobody@mine.example").await;
    b.click("#link-form button[type=submit]").await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("a sign-in link is on its way")
    );

    // The share of "Our plan" is mailed to Cleo too; the sign-in links are
    // the mails with that subject: one, to Cleo, none to the unknown address.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let links = loop {
        let links: Vec<_> = smtp
            .messages()
            .into_iter()
            .filter(|m| m.subject() == "Your Waymark sign-in link")
            .collect();
        if !links.is_empty() || tokio::time::Instant::now() > deadline {
            break links;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(links.len(), 1, "no mail for an unknown address");
    assert_eq!(links[0].to, ["cleo@mine.example"]);
    assert!(
        smtp.messages()
            .iter()
            .all(|m| m.to != ["nobody@mine.example"])
    );
    let body = links[0].body();
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/login/link/wms_"))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .to_owned();
    assert!(link.starts_with(&app.base), "{link}");

    b.goto(&link).await;
    assert!(b.text("h1").await.contains("Cleo"));
    b.assert_accessible().await;
    b.click("form button.primary").await;
    assert_eq!(b.text("h1").await, "Welcome");
    let home = b.body().await;
    assert!(home.contains("Our plan"), "{home}");
    assert!(!home.contains("Their secret plan"), "{home}");

    // Used once: a second use is refused with a page saying so.
    b.goto(&link).await;
    assert!(b.body().await.contains("This sign-in link no longer works"));
    delivery.stop().await;
    b.close().await;
}

/// Spraying one password over many emails from one address is slowed: past
/// the address's limit, even an untried email is refused (429).
async fn failed_sign_ins_are_limited_per_source_address(app: TestApp) {
    for i in 0..waymark_server::routes::people::MAX_ADDRESS_FAILURES {
        let a = app
            .post(
                "/api/v1/sessions",
                json!({"email": format!("user{i}@spray.example"), "password": "Winter2026!"}),
            )
            .await;
        assert_eq!(a.status, 401, "{}", a.body);
    }
    let a = app
        .post(
            "/api/v1/sessions",
            json!({"email": "fresh@spray.example", "password": "Winter2026!"}),
        )
        .await;
    a.assert_problem(429, "too_many_attempts");
    assert!(a.headers.get("retry-after").is_some());
}

/// A client user follows their journey from the portal and rates a completed
/// stage once: the rating shows on the journey, in its API and in the
/// template's analytics (overall and per owner); a second rating and one by
/// the team are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_user_rates_a_completed_stage_once() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "two-step", "title": "Two steps", "stages": [
                {"id": "kickoff", "name": "Kickoff"}, {"id": "delivery", "name": "Delivery"}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let c = app
        .post("/api/v1/clients", json!({"name": "Mine", "owner": "ana"}))
        .await;
    let client = c.body["id"].as_str().unwrap().to_owned();
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "two-step", "name": "Rollout"}),
        )
        .await;
    let id = j.body["id"].as_str().unwrap().to_owned();
    for event in ["start", "promote"] {
        let e = app
            .post(
                &format!("/api/v1/journeys/{id}/events"),
                json!({"event": event}),
            )
            .await;
        assert_eq!(e.status, 200, "{}", e.body);
    }
    // The team does not rate.
    let staff = app
        .post(
            &format!("/api/v1/journeys/{id}/ratings"),
            json!({"stage": "kickoff", "score": 5}),
        )
        .await;
    staff.assert_problem(403, "forbidden");
    app.user(
        json!({"email": "cleo@mine.example", "name": "Cleo", "role": "client",
                    "client_id": client, "password": PASSWORD}),
    )
    .await;

    let Some(b) = browser().await else { return };
    b.sign_in(&app.base, "cleo@mine.example", PASSWORD).await;
    b.click(&format!("a[href='/journeys/{id}']")).await;
    assert_eq!(b.text("h1").await, "Rollout");
    assert!(
        !b.body().await.contains("Move the journey"),
        "no operator actions"
    );
    b.assert_accessible().await;
    b.find("#rate-kickoff input[name=score][value='4']")
        .await
        .click()
        .await
        .unwrap();
    b.fill("#rate-comment-kickoff", "Smooth start.").await;
    b.click("#rate-kickoff button[type=submit]").await;
    assert!(b.text("[role=status]").await.contains("rating is recorded"));
    let ratings = b.text("section[aria-labelledby=ratings-h]").await;
    assert!(
        ratings.contains("4 of 5") && ratings.contains("Smooth start."),
        "{ratings}"
    );
    assert!(
        b.c.find(fantoccini::Locator::Css("#rate-kickoff"))
            .await
            .is_err(),
        "rated once"
    );
    b.screenshot("portal-journey").await;
    b.close().await;

    let list = app.get(&format!("/api/v1/journeys/{id}/ratings")).await;
    assert_eq!(list.body["items"][0]["score"], 4, "{}", list.body);
    let detail = app.get(&format!("/api/v1/journeys/{id}")).await;
    assert_eq!(detail.body["ratings"][0]["comment"], "Smooth start.");
    let a = app
        .get("/api/v1/analytics/journeys?template=two-step")
        .await;
    assert_eq!(a.body["ratings"]["overall"]["count"], 1, "{}", a.body);
    assert_eq!(a.body["ratings"]["overall"]["average"], 4.0);
    assert_eq!(
        a.body["ratings"]["overall"]["distribution"],
        json!([0, 0, 0, 1, 0])
    );
    assert_eq!(a.body["ratings"]["by_owner"]["ana"]["count"], 1);

    // Once only, and only completed stages.
    let session = app
        .post(
            "/api/v1/sessions",
            json!({"email": "cleo@mine.example", "password": PASSWORD}),
        )
        .await;
    let token = session.body["token"].as_str().unwrap().to_owned();
    let again = app
        .call_as(
            Some(&token),
            reqwest::Method::POST,
            &format!("/api/v1/journeys/{id}/ratings"),
            Some(json!({"stage": "kickoff", "score": 1})),
        )
        .await;
    again.assert_problem(409, "already_rated");
    let open = app
        .call_as(
            Some(&token),
            reqwest::Method::POST,
            &format!("/api/v1/journeys/{id}/ratings"),
            Some(json!({"stage": "delivery", "score": 3})),
        )
        .await;
    open.assert_problem(409, "stage_not_completed");
    let bad = app
        .call_as(
            Some(&token),
            reqwest::Method::POST,
            &format!("/api/v1/journeys/{id}/ratings"),
            Some(json!({"stage": "kickoff", "score": 9})),
        )
        .await;
    bad.assert_problem(422, "invalid");
}

/// The admin's pages: a token's secret shown once and revoked; a webhook with
/// its signing secret and delivery log; packs with their types; the audit
/// log filtered and its chain verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_pages_manage_people_webhooks_packs_and_the_audit_log() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let admin = app
        .user(json!({"email": "root@team.example", "name": "Ada Admin", "role": "admin", "password": PASSWORD}))
        .await;
    let Some(b) = browser().await else { return };
    b.sign_in(&app.base, "root@team.example", PASSWORD).await;
    b.click("a[href='/admin']").await;
    assert_eq!(b.text("h1").await, "People and tokens");
    b.assert_accessible().await;

    b.fill("#t-name", "ci pipeline").await;
    b.click("form[action='/admin/tokens'] button[type=submit]")
        .await;
    let secret = b.text("#new-secret").await;
    assert!(secret.starts_with("wm_"), "{secret}");
    let me = app
        .call_as(Some(&secret), reqwest::Method::GET, "/api/v1/version", None)
        .await;
    assert_eq!(me.status, 200, "the new token works");
    b.goto(&format!("{}/admin/people", app.base)).await;
    assert!(!b.body().await.contains(&secret), "shown once");
    b.click("form[action$='/revoke'] button").await;
    assert!(b.text("[role=status]").await.contains("revoked"));
    let me = app
        .call_as(Some(&secret), reqwest::Method::GET, "/api/v1/version", None)
        .await;
    assert_eq!(me.status, 401, "revoked");

    b.click("a[href='/admin/webhooks']").await;
    b.fill("#w-url", "https://hooks.example.com/waymark").await;
    b.fill("#w-types", "artifact.approved").await;
    b.click("form[action='/admin/webhooks'] button[type=submit]")
        .await;
    assert!(b.text(".secret-value").await.starts_with("whsec_"));
    b.assert_accessible().await;
    b.click("a[href^='/admin/webhooks/whk_']").await;
    assert!(b.text("h1").await.contains("hooks.example.com"));

    b.goto(&format!("{}/admin/packs", app.base)).await;
    b.click("a[href='/admin/packs/marketing-engagement']").await;
    assert!(b.body().await.contains("Strategy"));
    b.assert_accessible().await;

    b.goto(&format!("{}/admin/audit", app.base)).await;
    assert!(b.body().await.contains("token.create"));
    b.fill("#a-actor", admin["id"].as_str().unwrap()).await;
    b.click("form[action='/admin/audit'] button[type=submit]")
        .await;
    let rows = b.text("table").await;
    assert!(
        rows.contains("token.revoke") && !rows.contains("user.create"),
        "{rows}"
    );
    b.click("form[action='/admin/audit/verify'] button").await;
    assert!(b.text("#verdict").await.contains("The audit chain holds"));
    b.assert_accessible().await;
    b.screenshot("admin-audit").await;
    b.close().await;
}

/// An operator adds a client and starts an engagement from the pages; a
/// client without a name is refused at the form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_client_and_starts_an_engagement() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite)
        .await
        .unwrap();
    let Some(b) = operator_browser(&app).await else {
        return;
    };
    b.goto(&format!("{}/clients", app.base)).await;
    b.find("details.card summary").await.click().await.unwrap();
    b.fill("#c-name", "   ").await;
    b.c.execute(
        "document.getElementById('c-name').removeAttribute('required')",
        vec![],
    )
    .await
    .unwrap();
    b.click("#client-form button[type=submit]").await;
    assert!(b.text("[role=alert]").await.contains("name"));
    b.fill("#c-name", "Contoso <Labs>").await;
    b.fill("#c-owner", "olga").await;
    b.click("#client-form button[type=submit]").await;
    assert_eq!(b.text("h1").await, "Contoso <Labs>");
    assert!(b.text("[role=status]").await.contains("Created"));
    b.assert_accessible().await;
    b.fill("#e-name", "Q1 onboarding").await;
    b.select("#e-pack", "client-onboarding").await;
    b.click("#engagement-form button[type=submit]").await;
    assert_eq!(b.text("h1").await, "Q1 onboarding");
    let list = app.get("/api/v1/engagements").await;
    assert_eq!(
        list.body["items"][0]["pack"], "client-onboarding",
        "{}",
        list.body
    );
    b.close().await;
}
