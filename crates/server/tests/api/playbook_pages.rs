//! The customer-success pages, on both backends, on an injected clock: the
//! queue, a playbook's step, a conversation streamed from a fake Ollama, a
//! reply saved as an email draft, to-dos, snoozes; in a real chromium for
//! what a person does (with axe-core on each page, at a phone's width and in
//! the dark scheme), and over plain HTTP for the paths without script and
//! the refusals.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use waymark_server::clock::Clock;

use crate::browser::{Browser, browser, dark_browser};
use crate::fake_llm::FakeLlm;
use crate::helpers::{Backend, TestApp, app_at};

/// The server's "now" in these tests.
const NOW: OffsetDateTime = datetime!(2027-03-01 10:00 UTC);
const PASSWORD: &str = "a long enough password";
const OPERATOR: &str = "olga@team.example";
/// A client name that would run as script if it were not escaped.
const HOSTILE: &str =
    "Soon <script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> GmbH";
const REPLY: &str = "Subject: Your renewal offer\n\nHi Dana, we can renew at the current price for two years, with a 5% uplift in year two. Shall we talk on Tuesday?";

crate::each_backend!(
    an_operator_works_a_renewal_from_the_queue_to_the_next_step,
    the_pages_work_without_script_and_refuse_what_they_must,
);

fn in_days(days: i64) -> String {
    (NOW.date() + time::Duration::days(days)).to_string()
}

/// A client owned by the operator, `renewal_in` days from renewal.
async fn client(app: &TestApp, name: &str, renewal_in: i64, health: f64, arr: f64) -> String {
    let a = app
        .post(
            "/api/v1/clients",
            json!({"name": name, "renewal_date": in_days(renewal_in), "health_score": health,
                   "arr": arr, "risk_score": 100.0 - health, "owner": OPERATOR}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

/// 004's scenario: renewals in 100, 25 and 5 days; answers the queue items'
/// ids by client name.
async fn renewals(app: &TestApp) -> Vec<(String, String)> {
    app.user(
        json!({"email": OPERATOR, "name": "Olga Operator", "role": "operator", "password": PASSWORD}),
    )
    .await;
    client(app, "Later Ltd", 100, 80.0, 50_000.0).await;
    let soon = client(app, HOSTILE, 25, 55.0, 300_000.0).await;
    client(app, "Now Inc", 5, 30.0, 900_000.0).await;
    let s = app
        .post(
            &format!("/api/v1/clients/{soon}/signals"),
            json!({"observations": [
                {"name": "health_score", "value": 62.0, "at": "2027-01-10T00:00:00Z"},
                {"name": "health_score", "value": 55.0},
                {"name": "usage.active_users", "value": 40.0, "at": "2027-01-01T00:00:00Z"},
                {"name": "usage.active_users", "value": 55.0},
            ]}),
        )
        .await;
    assert_eq!(s.status, 201, "{}", s.body);
    let q = app.get(&format!("/api/v1/queue/{OPERATOR}")).await;
    assert_eq!(q.status, 200, "{}", q.body);
    q.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["client_name"].as_str().unwrap().to_owned(),
                i["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn item_of<'a>(items: &'a [(String, String)], name: &str) -> &'a str {
    &items.iter().find(|(n, _)| n == name).unwrap().1
}

async fn not_pwned(b: &Browser) {
    let pwned =
        b.c.execute("return window.pwned === undefined", vec![])
            .await
            .unwrap();
    assert_eq!(
        pwned,
        Value::Bool(true),
        "markup in a name ran on {}",
        b.url().await
    );
}

async fn fits_a_phone(b: &Browser) {
    b.set_width(375).await;
    let wide = b.overflowing().await;
    assert!(
        wide.is_empty(),
        "no sideways scrolling at 375 px on {}: {wide:?}",
        b.url().await
    );
    b.assert_accessible().await;
    b.set_width(1280).await;
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = vec![];
    for e in b.c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

/// The whole path of a renewal in chromium: the dashboard's "My queue", the
/// queue in score order with its factors, the critical playbook started, a
/// to-do added, the pricing conversation with a reply streamed in pieces
/// from a fake Ollama, the reply saved as an email draft, an item snoozed
/// off the queue, the step completed; then the same pages in the dark scheme.
async fn an_operator_works_a_renewal_from_the_queue_to_the_next_step(backend: Backend) {
    let fake = FakeLlm::ollama("llama3.2").await;
    fake.reply_with(REPLY);
    fake.frame_delay(Duration::from_millis(200));
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, Some(fake.llm(true))).await else {
        return;
    };
    let items = renewals(&app).await;
    let Some(b) = browser().await else { return };
    let base = app.base.clone();
    b.sign_in(&base, OPERATOR, PASSWORD).await;

    // The dashboard leads to the queue.
    let mine = b.text("#my-queue").await;
    assert!(
        mine.contains("Now Inc") && mine.contains("Later Ltd"),
        "{mine}"
    );
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.click("#my-queue a[href='/queue']").await;
    assert_eq!(b.text("h1").await, "My queue");
    assert_eq!(
        texts(&b, ".queue-item h3").await,
        ["Now Inc", HOSTILE, "Later Ltd"],
        "score order, the name shown as text"
    );
    not_pwned(&b).await;
    let stats = b.text("section[aria-labelledby=stats-h]").await;
    assert!(stats.contains("3\nin the queue"), "{stats}");
    assert!(stats.contains("Save the renewal"), "{stats}");
    // Why the first is first: its factors, in words.
    let first = &items[0].1;
    b.find(&format!("#item-{first} details.factors summary"))
        .await
        .click()
        .await
        .unwrap();
    let factors = b
        .text(&format!("#item-{first} details.factors table"))
        .await;
    assert!(
        factors.contains("days to renewal") && factors.contains("health"),
        "{factors}"
    );
    assert!(
        b.text(&format!("#item-{first} .due"))
            .await
            .contains("due in 3 days")
    );
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.screenshot("queue").await;
    b.c.execute(
        "document.getElementById('items-h').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    b.screenshot("queue-items").await;

    // A filter by playbook.
    b.select("#q-template", "renewal-critical").await;
    b.click("#queue-filter button[type=submit]").await;
    assert_eq!(texts(&b, ".queue-item h3").await, [HOSTILE]);
    b.goto(&format!("{base}/queue")).await;

    // Start the critical playbook: its first step, with the customer context.
    let critical = item_of(&items, HOSTILE).to_owned();
    b.click(&format!("#item-{critical} .start-form button"))
        .await;
    assert!(
        b.url().await.contains("/steps/price?done=started"),
        "{}",
        b.url().await
    );
    assert!(
        b.text("[role=status]")
            .await
            .contains("The playbook is started")
    );
    let h1 = b.text("h1").await;
    assert!(
        h1.contains("Step 1 of 3") && h1.contains("Price the renewal"),
        "{h1}"
    );
    let ctx = b.text("section[aria-labelledby=ctx-h]").await;
    assert!(ctx.contains(HOSTILE), "{ctx}");
    assert!(ctx.contains("300,000"), "{ctx}");
    assert!(ctx.contains("25 days to renewal"), "{ctx}");
    assert!(ctx.contains("down 7 over 30 days"), "health fell: {ctx}");
    assert!(
        ctx.contains("up 15 over 30 days"),
        "active users rose: {ctx}"
    );
    not_pwned(&b).await;
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.screenshot("playbook-step").await;

    // A to-do for this step.
    b.fill("#todo-title", "Call the CFO about the budget").await;
    b.select("#todo-priority", "high").await;
    b.click("#todo-form button[type=submit]").await;
    assert!(b.text("[role=status]").await.contains("The to-do is added"));
    assert!(
        b.text("#todos")
            .await
            .contains("Call the CFO about the budget")
    );

    // The pricing conversation, streamed.
    b.click("#llm-discuss_pricing button[type=submit]").await;
    assert!(b.url().await.contains("/threads/thr_"), "{}", b.url().await);
    let thread_url = b.url().await;
    assert_eq!(b.text("h1").await, "Work out the pricing");
    assert_eq!(
        b.text("details.system-message summary").await,
        "Customer context given to the assistant"
    );
    b.assert_accessible().await;
    b.fill("#message", "What should we offer?").await;
    b.find("#send-form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let whole = REPLY.replace("\n\n", "\n");
    let mut partial = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen =
            b.c.execute(
                "const s = document.getElementById('stream');
                 return [s.textContent, s.getAttribute('aria-live'),
                         !!document.querySelector('#conversation .message-assistant .provider')];",
                vec![],
            )
            .await
            .unwrap();
        let streamed = seen[0].as_str().unwrap_or_default();
        assert_eq!(seen[1], "polite");
        if streamed.contains("Subject: Your") && !streamed.contains("Tuesday?") {
            partial = true;
        }
        if seen[2] == Value::Bool(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reply within 20 s: {streamed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(partial, "the reply appeared piece by piece");
    assert_eq!(
        b.text("#conversation .message-assistant .provider").await,
        "ollama:llama3.2"
    );
    let reply = b
        .text("#conversation .message-assistant .message-body")
        .await;
    assert!(reply.contains("Shall we talk on Tuesday?"), "{reply}");
    assert!(whole.starts_with(reply.lines().next().unwrap()), "{reply}");
    assert!(
        b.text("#conversation .message-user")
            .await
            .contains("What should we offer?")
    );
    assert!(
        b.text("#stream")
            .await
            .contains("The reply is in the conversation above")
    );
    assert_eq!(
        b.find("#message")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap(),
        ""
    );
    not_pwned(&b).await;
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.screenshot("thread").await;

    // Saved as an email draft: the form is prefilled from the reply.
    b.click("#conversation a.save-link[data-type=email_draft]")
        .await;
    assert_eq!(b.text("h1").await, "Save the reply as Email draft");
    let subject = b
        .find("[name='f:/subject']")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(subject, "Your renewal offer");
    b.assert_accessible().await;
    fits_a_phone(&b).await;
    b.click("#schema-form button.primary").await;
    assert!(
        b.url().await.contains("/artifacts/art_"),
        "{}",
        b.url().await
    );
    assert!(
        b.text("[role=status]")
            .await
            .contains("saved as a draft document")
    );
    let art = b.url().await;
    let art_id = art
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let saved = app.get(&format!("/api/v1/artifacts/{art_id}")).await;
    assert_eq!(saved.body["type"], "email_draft", "{}", saved.body);
    assert_eq!(saved.body["content"]["subject"], "Your renewal offer");
    assert!(
        saved.body["provenance"]
            .as_str()
            .unwrap()
            .starts_with("thread:thr_")
    );

    // Snoozed from the queue: the item leaves the list.
    let later = item_of(&items, "Later Ltd").to_owned();
    b.goto(&format!("{base}/queue")).await;
    assert!(
        b.text(&format!("#item-{critical}"))
            .await
            .contains("step: Price the renewal")
    );
    b.find(&format!("#item-{later} details.snooze summary"))
        .await
        .click()
        .await
        .unwrap();
    b.fill(&format!("#why-{later}"), "customer on holiday")
        .await;
    b.click(&format!("#item-{later} .snooze-form button[type=submit]"))
        .await;
    assert!(b.text("[role=status]").await.contains("Snoozed"));
    let list = b.text("#live-queue").await;
    assert!(!list.contains("Later Ltd"), "{list}");
    assert!(list.contains("Now Inc"), "{list}");
    let item = app.get(&format!("/api/v1/queue/items/{later}")).await;
    assert_eq!(item.body["status"], "snoozed", "{}", item.body);
    assert_eq!(item.body["snoozed_until"], "2027-03-02T09:00:00Z");
    // My to-dos are beside the queue; done, one leaves the list.
    let todos = b.text("#todos").await;
    assert!(
        todos.contains("Call the CFO about the budget") && todos.contains("high priority"),
        "{todos}"
    );
    b.click("#todos form.todo-actions button[value=complete]")
        .await;
    assert!(
        b.text("[role=status]")
            .await
            .contains("The to-do is completed")
    );
    assert!(b.url().await.contains("/queue?"), "{}", b.url().await);
    assert!(
        !b.text("#todos")
            .await
            .contains("Call the CFO about the budget")
    );
    let done = app
        .get("/api/v1/tasks?assigned_to=all&status=completed")
        .await;
    assert_eq!(
        done.body["items"][0]["title"], "Call the CFO about the budget",
        "{}",
        done.body
    );

    // Completing the conversation completes the step: on to the next one.
    b.goto(&thread_url).await;
    b.click("#complete-thread button[type=submit]").await;
    assert!(
        b.url().await.contains("/steps/recommend"),
        "{}",
        b.url().await
    );
    assert!(
        b.text("[role=status]")
            .await
            .contains("The step is completed")
    );
    assert!(b.text("h1").await.contains("Step 2 of 3"));
    b.assert_accessible().await;

    // The playbook's page leads to its current step.
    b.click("p.eyebrow a[href^='/journeys/']").await;
    b.click("#work-step").await;
    assert!(
        b.url().await.contains("/steps/recommend"),
        "{}",
        b.url().await
    );

    // Twelve days on, the critical playbook is past its due date: said in
    // words and in the warning colour.
    clock.advance(time::Duration::days(12));
    b.goto(&format!("{base}/queue")).await;
    let due = b.find(&format!("#item-{critical} .due .badge")).await;
    assert!(
        due.text()
            .await
            .unwrap()
            .starts_with("overdue: due 2027-03-12"),
        "{}",
        due.text().await.unwrap()
    );
    assert!(
        due.attr("class")
            .await
            .unwrap()
            .unwrap_or_default()
            .contains("tone-warn")
    );
    b.assert_accessible().await;
    b.close().await;

    // The same pages in the dark scheme, at a phone's width.
    let Some(d) = dark_browser().await else {
        return;
    };
    d.sign_in(&base, OPERATOR, PASSWORD).await;
    assert!(d.is_dark().await);
    for path in ["/queue", &thread_url.replace(&base, "")] {
        d.goto(&format!("{base}{path}")).await;
        d.assert_accessible().await;
        fits_a_phone(&d).await;
    }
    d.close().await;
}

/// A signed-in session for plain HTTP: the session and CSRF cookies.
struct Session {
    http: reqwest::Client,
    cookie: String,
    token: String,
}

impl Session {
    async fn new(app: &TestApp, email: &str) -> Session {
        let s = app
            .post(
                "/api/v1/sessions",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.body);
        Session {
            token: s.body["token"].as_str().unwrap().to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: format!(
                "waymark_session={}; waymark_csrf={}",
                s.body["token"].as_str().unwrap(),
                "c".repeat(64)
            ),
        }
    }

    async fn get(&self, base: &str, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("{base}{path}"))
            .header("cookie", &self.cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Posts a form with the page's CSRF token (read from `page`).
    async fn post(
        &self,
        base: &str,
        page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let token = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token on the page: {page}"))
            .to_owned();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &token)];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{base}{path}"))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Without script every form works: a message is answered (by the template,
/// no provider being configured, saying why), a bad snooze and a save the
/// schema refuses come back with the problem at its place, the streaming
/// route needs the form's token; client users are refused every page.
async fn the_pages_work_without_script_and_refuse_what_they_must(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let items = renewals(&app).await;
    let base = app.base.clone();
    let s = Session::new(&app, OPERATOR).await;

    // The queue: a snooze into the past is refused on the queue page itself.
    let (status, queue) = s.get(&base, "/queue").await;
    assert_eq!(status, 200, "{queue}");
    assert!(!queue.contains("<script>window.pwned"), "escaped");
    assert!(
        queue.contains("Soon &lt;script&gt;") || queue.contains("Soon &#60;script&#62;"),
        "shown as text"
    );
    let now_inc = item_of(&items, "Now Inc").to_owned();
    let res = s
        .post(
            &base,
            &queue,
            &format!("/queue/items/{now_inc}/actions"),
            &[
                ("action", "snooze"),
                ("until", "2027-02-01T09:00"),
                ("next", "/queue"),
            ],
        )
        .await;
    assert_eq!(res.status(), 409);
    let body = res.text().await.unwrap();
    assert!(body.contains("role=\"alert\""), "{body}");
    assert!(body.contains("<h1>My queue</h1>"), "{body}");

    // Start, open a conversation, send without script.
    let res = s
        .post(
            &base,
            &queue,
            &format!("/queue/items/{now_inc}/start"),
            &[("next", "/queue")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let step = location(&res);
    assert!(step.ends_with("/steps/escalate?done=started"), "{step}");
    let (_, page) = s.get(&base, &step).await;
    let journey = step.split('/').nth(2).unwrap().to_owned();
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/steps/escalate/threads"),
            &[("branch", "draft_escalation")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let thread = location(&res);
    let (_, page) = s.get(&base, &thread).await;
    assert!(page.contains("data-stream="), "streaming is on by default");
    let res = s
        .post(
            &base,
            &page,
            &format!("{thread}/messages"),
            &[("content", "Draft the note, please")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).ends_with("#message-3"), "{}", location(&res));
    let (_, page) = s.get(&base, &thread).await;
    assert!(page.contains("Draft the note, please"));
    assert!(page.contains(">template</span>"), "{page}");
    assert!(
        page.contains("The template answered because no LLM provider is configured"),
        "{page}"
    );

    // The streaming route takes the form's token like any form.
    let forged = s
        .http
        .post(format!("{base}{thread}/messages/stream"))
        .header("cookie", &s.cookie)
        .form(&[("csrf", "0000"), ("content", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let res = s
        .post(
            &base,
            &page,
            &format!("{thread}/messages/stream"),
            &[("content", "And shorter?")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let events = res.text().await.unwrap();
    assert!(events.contains("event: token"), "{events}");
    assert!(events.contains("event: message"), "{events}");
    let empty = s
        .post(
            &base,
            &page,
            &format!("{thread}/messages/stream"),
            &[("content", "  ")],
        )
        .await;
    assert_eq!(empty.status(), 422);
    assert_eq!(empty.headers()["content-type"], "application/problem+json");

    // A save the schema refuses: the problem at its field, nothing saved.
    let (status, form) = s
        .get(&base, &format!("{thread}/save?type=email_draft&seq=3"))
        .await;
    assert_eq!(status, 200, "{form}");
    let res = s
        .post(
            &base,
            &form,
            &format!("{thread}/save"),
            &[
                ("type", "email_draft"),
                ("seq", "3"),
                ("title", "Escalation"),
                ("f:/summary", "A note"),
                ("f:/subject", ""),
                ("f:/body", "Please call them."),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(body.contains("Nothing was saved"), "{body}");
    assert!(body.contains("aria-invalid=\"true\""), "{body}");
    let t = app.get(&format!("/api/v1{thread}")).await;
    assert_eq!(t.body["artifacts"], json!([]), "{}", t.body);

    // The step page's to-do form refuses an empty title at the form.
    let (_, page) = s
        .get(&base, &format!("/journeys/{journey}/steps/escalate"))
        .await;
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/steps/escalate/todos"),
            &[("title", "  "), ("priority", "high")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("id=\"todo-error\""));

    // Saved actions from the step: an escalation without anyone to escalate
    // to is refused on the step page; to a member of the team it is done.
    let bo = app
        .user(json!({"email": "bo@team.example", "name": "Bo", "role": "operator"}))
        .await;
    let bo = bo["id"].as_str().unwrap();
    let (_, page) = s
        .get(&base, &format!("/journeys/{journey}/steps/escalate"))
        .await;
    assert!(page.contains(&format!("<option value=\"{bo}\">")), "{page}");
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/actions"),
            &[("action", "escalate"), ("step", "escalate"), ("to", "")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("role=\"alert\"") && body.contains("/to"),
        "{body}"
    );
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/actions"),
            &[
                ("action", "escalate"),
                ("step", "escalate"),
                ("to", bo),
                ("reason", "needs an executive"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(
        location(&res).ends_with("/steps/escalate?done=escalated"),
        "{}",
        location(&res)
    );
    let q = app.get(&format!("/api/v1/queue/{bo}")).await;
    assert_eq!(q.body["stats"]["total"], 1, "{}", q.body);

    // The step completed from its form, then the last one by a fixed choice
    // carrying the outcome: the playbook's page says how it ended.
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/steps/escalate/complete"),
            &[("reason", "")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert!(
        location(&res).ends_with("/steps/close?done=step-completed"),
        "{}",
        location(&res)
    );
    let (_, page) = s.get(&base, &location(&res)).await;
    assert!(page.contains("Step 2 of 2"), "{page}");
    assert!(page.contains("(outcome: renewed)"), "{page}");
    let res = s
        .post(
            &base,
            &page,
            &format!("/journeys/{journey}/steps/close/complete"),
            &[("branch", "renewed")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(&res),
        format!("/journeys/{journey}?done=playbook-completed")
    );
    let (_, page) = s.get(&base, &location(&res)).await;
    assert!(page.contains("The playbook is completed"), "{page}");
    assert!(page.contains("Outcome:"), "{page}");
    let (_, page) = s
        .get(&base, &format!("/journeys/{journey}/steps/close"))
        .await;
    assert!(
        page.contains("This playbook is completed, with the outcome renewed."),
        "{page}"
    );
    assert!(
        !page.contains("id=\"complete-form\""),
        "nothing to do on it"
    );

    // Pages of the queue: five items a page, as the person prefers.
    let a = app
        .call_as(
            Some(&s.token),
            reqwest::Method::PUT,
            "/api/v1/me/preferences",
            Some(json!({"queue_page_size": 5})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (i, days) in [60, 70, 80, 90, 110].into_iter().enumerate() {
        client(&app, &format!("Extra {i}"), days, 70.0, 10_000.0).await;
    }
    let (_, first) = s.get(&base, "/queue").await;
    assert_eq!(first.matches("class=\"card queue-item").count(), 5);
    let next = first
        .split("href=\"")
        .find_map(|h| {
            h.split_once("\" rel=\"next\"")
                .map(|(u, _)| u.replace("&amp;", "&"))
        })
        .unwrap_or_else(|| panic!("no next page: {first}"));
    let (status, second) = s.get(&base, &next).await;
    assert_eq!(status, 200, "{second}");
    assert!(second.contains("First page"), "{second}");
    assert!(second.matches("class=\"card queue-item").count() >= 1);

    // A client user gets the refusal page on every page of the workspace.
    let mine = app
        .post("/api/v1/clients", json!({"name": "Their own"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.user(
        json!({"email": "cy@client.example", "name": "Cy", "role": "client",
                    "client_id": mine, "password": PASSWORD}),
    )
    .await;
    let c = Session::new(&app, "cy@client.example").await;
    for path in [
        "/queue".to_owned(),
        format!("/journeys/{journey}/steps/escalate"),
        thread.clone(),
        format!("{thread}/save?type=email_draft&seq=3"),
    ] {
        let (status, body) = c.get(&base, &path).await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert!(!body.contains("Now Inc"), "{path}");
    }
    let (status, _) = c.get(&base, "/queue").await;
    assert_eq!(status, 403);
}
