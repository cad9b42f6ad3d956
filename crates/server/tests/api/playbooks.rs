//! The customer-success workspace over HTTP, on both backends: the renewal
//! pack's queue rules, scores and their factors, superseding, snoozes on an
//! injected clock, playbook steps, threads with a fake LLM (Ollama and
//! OpenAI wire protocols, streaming included) and the template fallback,
//! saved actions, escalation mail, and isolation from client users.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use waymark_server::clock::Clock;

use crate::fake_llm::FakeLlm;
use crate::helpers::{Backend, TestApp, app_at};

/// The server's "now" in these tests.
const NOW: OffsetDateTime = datetime!(2027-03-01 10:00 UTC);

fn in_days(days: i64) -> String {
    (NOW.date() + time::Duration::days(days)).to_string()
}

crate::each_backend!(
    renewals_make_prepare_critical_and_emergency_items_in_score_order,
    a_closer_renewal_supersedes_prepare_with_critical,
    a_snoozed_item_stays_away_until_its_date_then_returns_once,
    a_streamed_reply_arrives_in_pieces_and_is_stored_whole,
    the_template_answers_when_the_provider_is_down,
    openai_replies_carry_the_conversation,
    escalation_hands_the_playbook_over_and_mails_the_new_owner,
    client_users_reach_none_of_the_workspace,
    bad_input_is_refused_and_changes_nothing,
    seed_004_a_renewal_worked_from_the_queue_to_its_outcome,
);

async fn client(app: &TestApp, name: &str, renewal_in: i64, health: f64, arr: f64) -> String {
    let a = app
        .post(
            "/api/v1/clients",
            json!({"name": name, "renewal_date": in_days(renewal_in), "health_score": health,
                   "arr": arr, "risk_score": 100.0 - health, "owner": "csm-ana"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

async fn queue(app: &TestApp, owner: &str) -> Value {
    let a = app.get(&format!("/api/v1/queue/{owner}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

fn rules_of(q: &Value) -> Vec<(String, String)> {
    q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["client_name"].as_str().unwrap().to_owned(),
                i["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn renewals_make_prepare_critical_and_emergency_items_in_score_order(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let pack = app.get("/api/v1/packs/renewal").await;
    let rules: Vec<&str> = pack.body["queue_rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", pack.body))
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["prepare", "critical", "emergency"]);

    client(&app, "Later Ltd", 100, 80.0, 50_000.0).await;
    client(&app, "Soon GmbH", 25, 60.0, 400_000.0).await;
    client(&app, "Now Inc", 5, 30.0, 900_000.0).await;
    client(&app, "Far Away", 300, 90.0, 10_000.0).await;
    let q = queue(&app, "csm-ana").await;
    assert_eq!(
        rules_of(&q),
        [
            ("Now Inc".to_owned(), "emergency".to_owned()),
            ("Soon GmbH".to_owned(), "critical".to_owned()),
            ("Later Ltd".to_owned(), "prepare".to_owned()),
        ],
        "{q:#}"
    );
    // Every score is explained: its factors' contributions add up to it.
    for item in q["items"].as_array().unwrap() {
        let score = item["score"].as_f64().unwrap();
        let factors = item["factors"].as_array().unwrap();
        assert!(factors.len() >= 4, "{item}");
        let sum: f64 = factors
            .iter()
            .map(|f| f["contribution"].as_f64().unwrap())
            .sum();
        assert!((sum - score).abs() < 0.05, "{score} vs {sum}: {item}");
        for f in factors {
            assert!(f["weight"].as_f64().unwrap() > 0.0);
            assert!(
                f.get("value").is_some() && f.get("explanation").is_some(),
                "{f}"
            );
        }
        assert_eq!(item["status"], "open");
        assert_eq!(item["stage"], Value::Null);
    }
    let stats = &q["stats"];
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["by_stage"]["due"], 3);
    assert_eq!(stats["by_template"]["renewal-emergency"], 1);
    // The emergency is due 2 days before its renewal; prepare 60 days before.
    assert_eq!(q["items"][0]["due"], in_days(3));
    assert_eq!(q["items"][2]["due"], in_days(40));

    // Running the rules again changes nothing.
    let again = app.post("/api/v1/queue/refresh", json!({})).await;
    assert_eq!(again.status, 200, "{}", again.body);
    for k in ["opened", "updated", "reopened", "closed", "superseded"] {
        assert_eq!(again.body[k], 0, "{k}: {}", again.body);
    }
    assert_eq!(again.body["clients"], 4);
    assert_eq!(queue(&app, "csm-ana").await["items"], q["items"]);

    // Filters and pages.
    let critical = app
        .get("/api/v1/queue/csm-ana?template=renewal-critical")
        .await;
    assert_eq!(rules_of(&critical.body).len(), 1);
    let first = app.get("/api/v1/queue/csm-ana?limit=2").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/api/v1/queue/csm-ana?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(
        rules_of(&rest.body),
        [("Later Ltd".to_owned(), "prepare".to_owned())]
    );
    assert_eq!(rest.body["next_cursor"], Value::Null);
    for bad in [
        "nonsense",
        "0|0000-00-00|qit_00000000000000000000000000000000",
    ] {
        app.get(&format!("/api/v1/queue/csm-ana?cursor={bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    // Someone else's queue is empty.
    assert_eq!(queue(&app, "csm-bo").await["stats"]["total"], 0);
}

async fn a_closer_renewal_supersedes_prepare_with_critical(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let id = client(&app, "Moving Co", 100, 70.0, 100_000.0).await;
    let q = queue(&app, "csm-ana").await;
    let prepare = q["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(q["items"][0]["rule"], "prepare");

    // The renewal moves closer: the client's signals change, the rules run.
    let a = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/clients/{id}"),
            Some(json!({"renewal_date": in_days(20)})),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let q = queue(&app, "csm-ana").await;
    assert_eq!(
        rules_of(&q),
        [("Moving Co".to_owned(), "critical".to_owned())]
    );
    let old = app.get(&format!("/api/v1/queue/items/{prepare}")).await;
    assert_eq!(old.body["status"], "superseded");
    assert_eq!(old.body["superseded_by"], "critical");

    // Moving away again: critical no longer matches and closes, prepare returns.
    app.call(
        reqwest::Method::PATCH,
        &format!("/api/v1/clients/{id}"),
        Some(json!({"renewal_date": in_days(90)})),
        &[],
    )
    .await;
    let q = queue(&app, "csm-ana").await;
    assert_eq!(
        rules_of(&q),
        [("Moving Co".to_owned(), "prepare".to_owned())]
    );
    assert_eq!(
        q["items"][0]["id"],
        prepare.as_str(),
        "the same item, never a second"
    );

    // The run is on the record.
    let audit = app.get("/api/v1/audit?limit=200").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"queue.refresh"), "{actions:?}");
    assert!(actions.contains(&"queue.item"), "{actions:?}");
}

async fn a_snoozed_item_stays_away_until_its_date_then_returns_once(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    client(&app, "Sleepy", 25, 50.0, 200_000.0).await;
    let q = queue(&app, "csm-ana").await;
    let item = q["items"][0]["id"].as_str().unwrap().to_owned();
    let until = "2027-03-04T09:00:00Z";
    let a = app
        .post(
            &format!("/api/v1/queue/items/{item}/actions"),
            json!({"action": "snooze", "until": until, "reason": "customer on holiday"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["item"]["status"], "snoozed");
    assert_eq!(queue(&app, "csm-ana").await["stats"]["total"], 0);

    // Two days on, the rules run: it stays away.
    clock.advance(time::Duration::days(2));
    let run = app.post("/api/v1/queue/refresh", json!({})).await;
    assert_eq!(run.body["reopened"], 0, "{}", run.body);
    assert_eq!(queue(&app, "csm-ana").await["stats"]["total"], 0);

    // Past its date it is back at once, and a run reopens it once.
    clock.advance(time::Duration::days(2));
    let q = queue(&app, "csm-ana").await;
    assert_eq!(rules_of(&q), [("Sleepy".to_owned(), "critical".to_owned())]);
    let run = app.post("/api/v1/queue/refresh", json!({})).await;
    assert_eq!(run.body["reopened"], 1, "{}", run.body);
    let run = app.post("/api/v1/queue/refresh", json!({})).await;
    assert_eq!(run.body["reopened"], 0, "{}", run.body);
    let q = queue(&app, "csm-ana").await;
    assert_eq!(q["stats"]["total"], 1);
    assert_eq!(q["items"][0]["status"], "open");
    assert_eq!(q["items"][0]["id"], item.as_str());

    // A snooze into the past, or a year and more ahead, is refused.
    for until in ["2027-03-01T00:00:00Z", "2029-01-01T00:00:00Z"] {
        let a = app
            .post(
                &format!("/api/v1/queue/items/{item}/actions"),
                json!({"action": "snooze", "until": until}),
            )
            .await;
        a.assert_problem(409, "action_refused");
    }
}

/// Starts the critical playbook of a client 25 days from renewal; answers
/// (journey id, first step).
async fn started_playbook(app: &TestApp) -> (String, String) {
    client(app, "Chatty plc", 25, 55.0, 300_000.0).await;
    let q = queue(app, "csm-ana").await;
    let item = q["items"][0]["id"].as_str().unwrap().to_owned();
    let a = app
        .post(&format!("/api/v1/queue/items/{item}/start"), json!({}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let journey = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["state"], "price");
    // The item shows the journey and its step; starting twice is refused.
    let q = queue(app, "csm-ana").await;
    assert_eq!(q["items"][0]["journey_id"], journey.as_str());
    assert_eq!(q["items"][0]["stage"], "price");
    assert_eq!(q["items"][0]["status"], "started");
    app.post(&format!("/api/v1/queue/items/{item}/start"), json!({}))
        .await
        .assert_problem(409, "already_started");
    (journey, "price".to_owned())
}

/// Reads a server-sent events body into (event, data) pairs.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = "message".to_owned();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            (!data.is_empty()).then(|| (event, serde_json::from_str(&data).unwrap_or(Value::Null)))
        })
        .collect()
}

async fn a_streamed_reply_arrives_in_pieces_and_is_stored_whole(backend: Backend) {
    let fake = FakeLlm::ollama("llama3.2").await;
    fake.reply_with("Offer a two-year renewal at the current price, with a 5% uplift in year two.");
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, Some(fake.llm(true))).await else {
        return;
    };
    let (journey, step) = started_playbook(&app).await;
    let branches = app
        .get(&format!("/api/v1/journeys/{journey}/steps/{step}/branches"))
        .await;
    assert_eq!(branches.status, 200, "{}", branches.body);
    assert_eq!(branches.body["step"]["current"], true);
    let llm = branches.body["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "llm")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": journey, "step": step, "branch": llm}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let thread = a.body["thread"]["id"].as_str().unwrap().to_owned();
    let system = a.body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("Chatty plc") && system.contains("300,000"),
        "{system}"
    );

    let res = app
        .http
        .post(format!(
            "{}/api/v1/threads/{thread}/messages?stream=true",
            app.base
        ))
        .bearer_auth(&app.token)
        .json(&json!({"content": "What should we offer?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&res.text().await.unwrap());
    let tokens: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "token")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert!(tokens.len() >= 2, "{events:?}");
    let (last, stored) = events.last().unwrap();
    assert_eq!(last, "message");
    assert_eq!(stored["content"], tokens.concat());
    assert_eq!(stored["provider"], "ollama:llama3.2");
    assert_eq!(events[0].0, "user");

    // The next message carries the conversation so far.
    let a = app
        .post(
            &format!("/api/v1/threads/{thread}/messages"),
            json!({"content": "And if they push back?"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let sent = fake.requests().last().unwrap().clone();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    let all = app.get(&format!("/api/v1/threads/{thread}/messages")).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 5);

    // Completing the thread completes the step and answers the next one.
    let a = app
        .post(&format!("/api/v1/threads/{thread}/complete"), json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["next_step"]["id"], "recommend");
    assert_eq!(a.body["thread"]["status"], "completed");
    app.post(
        &format!("/api/v1/threads/{thread}/messages"),
        json!({"content": "one more"}),
    )
    .await
    .assert_problem(409, "thread_completed");
}

async fn the_template_answers_when_the_provider_is_down(backend: Backend) {
    let fake = FakeLlm::ollama("llama3.2").await;
    fake.fail_with(500);
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, Some(fake.llm(true))).await else {
        return;
    };
    let (journey, step) = started_playbook(&app).await;
    let a = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": journey, "step": step}),
        )
        .await;
    let thread = a.body["thread"]["id"].as_str().unwrap().to_owned();
    let a = app
        .post(
            &format!("/api/v1/threads/{thread}/messages"),
            json!({"content": "Summarise the account"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let reply = &a.body["messages"][1];
    assert_eq!(reply["provider"], "template");
    let why = reply["fallback"].as_str().unwrap();
    assert!(why.contains("500"), "{why}");
    let text = reply["content"].as_str().unwrap();
    assert!(
        text.contains("No LLM answered") && text.contains("Chatty plc"),
        "{text}"
    );
    // The person's message was kept before the provider failed.
    assert_eq!(a.body["messages"][0]["content"], "Summarise the account");
}

async fn openai_replies_carry_the_conversation(backend: Backend) {
    let fake = FakeLlm::openai("gpt-test", Some("sk-test")).await;
    fake.reply_with(
        "Subject: Your renewal\n\nHi Dana. Shall we meet on Tuesday to review the renewal?",
    );
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, Some(fake.llm(false))).await else {
        return;
    };
    let (journey, step) = started_playbook(&app).await;
    let a = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": journey, "step": step}),
        )
        .await;
    let thread = a.body["thread"]["id"].as_str().unwrap().to_owned();
    let a = app
        .post(
            &format!("/api/v1/threads/{thread}/messages"),
            json!({"content": "Draft the email"}),
        )
        .await;
    assert_eq!(a.body["messages"][1]["provider"], "openai:gpt-test");
    // The reply becomes an email draft of the renewal pack, from the thread.
    let a = app
        .post(
            &format!("/api/v1/threads/{thread}/artifacts"),
            json!({"type": "email_draft"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let art = &a.body["artifact"];
    assert_eq!(art["content"]["subject"], "Your renewal");
    assert_eq!(art["provenance"], format!("thread:{thread}"));
    assert_eq!(art["status"], "draft");
    let t = app.get(&format!("/api/v1/threads/{thread}")).await;
    assert_eq!(t.body["artifacts"][0], art["id"]);
    // A type of no pack of this playbook, or content the schema refuses.
    app.post(
        &format!("/api/v1/threads/{thread}/artifacts"),
        json!({"type": "strategy"}),
    )
    .await
    .assert_problem(422, "invalid");
    app.post(
        &format!("/api/v1/threads/{thread}/artifacts"),
        json!({"type": "email_draft", "content": {"subject": "x"}}),
    )
    .await
    .assert_problem(422, "invalid");
}

async fn escalation_hands_the_playbook_over_and_mails_the_new_owner(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let smtp = crate::smtp::FakeSmtp::start().await;
    let delivery = app
        .start_delivery(waymark_engine::delivery::DeliverySettings {
            smtp_url: Some(smtp.url()),
            mail_from: "Waymark <waymark@agency.example>".into(),
            public_url: app.base.clone(),
            ..crate::helpers::fast_delivery()
        })
        .await;
    let bo = app
        .user(json!({"email": "bo@agency.example", "name": "Bo", "role": "operator"}))
        .await;
    let bo_id = bo["id"].as_str().unwrap();
    let (journey, _) = started_playbook(&app).await;
    let a = app
        .post(
            &format!("/api/v1/journeys/{journey}/actions"),
            json!({"action": "escalate", "to": bo_id, "reason": "needs an executive"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["item"]["owner"], bo_id);
    assert_eq!(a.body["item"]["escalated"], true);
    // Bo's queue has it; Ana's no longer does (and a rules run keeps it so).
    app.post("/api/v1/queue/refresh", json!({})).await;
    assert_eq!(queue(&app, bo_id).await["stats"]["total"], 1);
    assert_eq!(queue(&app, "csm-ana").await["stats"]["total"], 0);
    let history = app
        .get(&format!("/api/v1/journeys/{journey}/history"))
        .await;
    let last = history.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["event"], "escalate");
    assert_eq!(last["reason"], "needs an executive");
    let mails = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0].to, ["bo@agency.example"]);
    assert!(
        mails[0].subject().contains("Chatty plc"),
        "{}",
        mails[0].subject()
    );
    assert!(
        mails[0].body().contains("needs an executive"),
        "{}",
        mails[0].body()
    );
    drop(delivery);

    // Skip needs a reason; the last step cannot be skipped.
    app.post(
        &format!("/api/v1/journeys/{journey}/actions"),
        json!({"action": "skip"}),
    )
    .await
    .assert_problem(422, "invalid");
    for _ in 0..2 {
        let a = app
            .post(
                &format!("/api/v1/journeys/{journey}/actions"),
                json!({"action": "skip", "reason": "done on the phone"}),
            )
            .await;
        if a.status != 200 {
            a.assert_problem(409, "action_refused");
            assert!(a.body["detail"].as_str().unwrap().contains("last step"));
        }
    }
    // The last step completes the playbook with one of its outcomes.
    let a = app
        .post(
            &format!("/api/v1/journeys/{journey}/steps/send_proposal/complete"),
            json!({"outcome": "won"}),
        )
        .await;
    a.assert_problem(422, "invalid");
    let a = app
        .post(
            &format!("/api/v1/journeys/{journey}/steps/send_proposal/complete"),
            json!({"branch": "renewed"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["next_step"], Value::Null);
    assert_eq!(a.body["journey"]["outcome"], "renewed");
    let item = queue(&app, bo_id).await;
    assert_eq!(item["stats"]["total"], 0);
}

async fn client_users_reach_none_of_the_workspace(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let (journey, step) = started_playbook(&app).await;
    let a = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": journey, "step": step}),
        )
        .await;
    let thread = a.body["thread"]["id"].as_str().unwrap().to_owned();
    let mine = app
        .post("/api/v1/clients", json!({"name": "Other client"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = app
        .user(
            json!({"email": "cy@other.example", "name": "Cy", "role": "client", "client_id": mine}),
        )
        .await;
    let token = app.token_for(user["id"].as_str().unwrap()).await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/v1/queue/me".to_owned(), None),
        (
            reqwest::Method::GET,
            "/api/v1/queue/csm-ana".to_owned(),
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/queue/refresh".to_owned(),
            Some(json!({})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/journeys/{journey}/context"),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/journeys/{journey}/steps/{step}/branches"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/journeys/{journey}/actions"),
            Some(json!({"action": "snooze", "until": "2027-04-01T00:00:00Z"})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/threads/{thread}"),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/threads/{thread}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/threads".to_owned(),
            Some(json!({"journey_id": journey, "step": step})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/clients/{mine}/signals"),
            None,
        ),
    ] {
        let a = app.call_as(Some(&token), method, &path, body).await;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
    }
    // Nothing changed.
    let t = app.get(&format!("/api/v1/threads/{thread}/messages")).await;
    assert_eq!(t.body["items"].as_array().unwrap().len(), 1);
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, None).await else {
        return;
    };
    let id = client(&app, "Signals Co", 60, 70.0, 80_000.0).await;
    for (body, pointer) in [
        (json!({"observations": []}), "/observations"),
        (
            json!({"observations": [{"name": "bad name!", "value": 1.0}]}),
            "/observations/0/name",
        ),
        (
            json!({"observations": [{"name": "usage.seats", "value": 1.0, "at": "yesterday"}]}),
            "/observations/0/at",
        ),
        (
            json!({"observations": [{"name": "usage.seats", "value": 1.0, "at": "2031-01-01T00:00:00Z"}]}),
            "/observations/0/at",
        ),
        (
            json!({"observations": [{"name": "usage.seats", "value": "many"}]}),
            "/observations/0/value",
        ),
        (
            json!({"observations": [{"name": "usage.seats", "value": 1.0, "extra": true}]}),
            "/observations/0",
        ),
    ] {
        let a = app
            .post(&format!("/api/v1/clients/{id}/signals"), body)
            .await;
        assert_eq!(a.status, 422, "{}", a.body);
        let pointers: Vec<&str> = a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert!(
            pointers.iter().any(|p| p.starts_with(pointer)),
            "{pointers:?} vs {pointer}"
        );
    }
    let none = app.get(&format!("/api/v1/clients/{id}/signals")).await;
    assert_eq!(none.body["items"], json!([]));
    // Good observations feed the context's trends.
    let a = app
        .post(
            &format!("/api/v1/clients/{id}/signals"),
            json!({"observations": [
                {"name": "usage.active_users", "value": 40.0, "at": "2027-01-01T00:00:00Z"},
                {"name": "usage.active_users", "value": 55.0},
                {"name": "health_score", "value": 62.0, "at": "2026-12-15T00:00:00Z"},
                {"name": "health_score", "value": 70.0},
            ]}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["recorded"], 4);
    let item = queue(&app, "csm-ana").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = app
        .post(&format!("/api/v1/queue/items/{item}/start"), json!({}))
        .await;
    let journey = started.body["id"].as_str().unwrap().to_owned();
    let ctx = app
        .get(&format!("/api/v1/journeys/{journey}/context"))
        .await;
    assert_eq!(ctx.status, 200, "{}", ctx.body);
    assert_eq!(ctx.body["customer"]["name"], "Signals Co");
    assert_eq!(ctx.body["workflow"]["days_to_renewal"], 60);
    assert_eq!(ctx.body["workflow"]["stage"], "review_account");
    let users = &ctx.body["data"]["usage"]["active_users"];
    assert_eq!(users["latest"], 55.0);
    assert_eq!(users["direction"], "up");
    assert_eq!(
        ctx.body["intelligence"]["trends"]["health_score"]["latest"],
        70.0
    );
    assert!(ctx.body["workflow"]["priority_score"].as_f64().unwrap() > 0.0);

    // Threads: unknown step, a step that is not the current one, empty and
    // oversized messages, unknown fields; actions: unknown, missing fields,
    // escalation to nobody or to a client's contact.
    app.post(
        "/api/v1/threads",
        json!({"journey_id": journey, "step": "nope"}),
    )
    .await
    .assert_problem(422, "invalid");
    app.post(
        "/api/v1/threads",
        json!({"journey_id": journey, "step": "plan_outreach"}),
    )
    .await
    .assert_problem(409, "not_current_step");
    let t = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": journey, "step": "review_account"}),
        )
        .await;
    let thread = t.body["thread"]["id"].as_str().unwrap().to_owned();
    for body in [
        json!({"content": "   "}),
        json!({"content": "x".repeat(8001)}),
        json!({"content": "hi", "role": "system"}),
        json!({"content": 5}),
    ] {
        let a = app
            .post(&format!("/api/v1/threads/{thread}/messages"), body)
            .await;
        assert_eq!(a.status, 422, "{}", a.body);
    }
    for body in [
        json!({"action": "dance"}),
        json!({"action": "snooze"}),
        json!({"action": "snooze", "until": "soon"}),
        json!({"action": "schedule", "due": "2027-13-01"}),
        json!({"action": "escalate", "to": "usr_00000000000000000000000000000000"}),
        json!({"action": "escalate", "to": "someone"}),
        json!({"action": "snooze", "until": "2027-04-01T00:00:00Z", "to": "x"}),
    ] {
        let a = app
            .post(&format!("/api/v1/journeys/{journey}/actions"), body.clone())
            .await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
    }
    let msgs = app.get(&format!("/api/v1/threads/{thread}/messages")).await;
    assert_eq!(msgs.body["items"].as_array().unwrap().len(), 1);
    let history = app
        .get(&format!("/api/v1/journeys/{journey}/history"))
        .await;
    assert_eq!(
        history.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        history.body
    );
    // Someone else's ids are not found.
    app.get("/api/v1/threads/thr_00000000000000000000000000000000")
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/queue/items/qit_00000000000000000000000000000000")
        .await
        .assert_problem(404, "not_found");
}

/// Seed 004's scenario over HTTP, as an operator: the queue → start the
/// renewal playbook → a step's chat → an email draft saved as an artifact →
/// to-dos → snooze → complete with an outcome.
async fn seed_004_a_renewal_worked_from_the_queue_to_its_outcome(backend: Backend) {
    let fake = FakeLlm::ollama("llama3.2").await;
    fake.set_reply(|req| {
        let last = req["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_owned();
        if last.contains("email") {
            "Subject: Renewing together\n\nHi Dana. Here is our proposal for the renewal: two years at the current price.".into()
        } else {
            "Renew for two years at the current price, with a quarterly business review.".into()
        }
    });
    let clock = Clock::manual(NOW);
    let Some(app) = app_at(backend, &clock, Some(fake.llm(true))).await else {
        return;
    };
    let ana = app
        .user(json!({"email": "ana@agency.example", "name": "Ana", "role": "operator"}))
        .await;
    let ana_id = ana["id"].as_str().unwrap().to_owned();
    let token = app.token_for(&ana_id).await;
    let as_ana = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (app, token) = (&app, token.clone());
        async move { app.call_as(Some(&token), method, &path, body).await }
    };
    let post = |path: String, body: Value| as_ana(reqwest::Method::POST, path, Some(body));
    let get = |path: String| as_ana(reqwest::Method::GET, path, None);
    for (name, days, health, arr) in [
        ("Later Ltd", 100, 80.0, 50_000.0),
        ("Soon GmbH", 25, 45.0, 400_000.0),
        ("Now Inc", 5, 30.0, 900_000.0),
    ] {
        let a = post(
            "/api/v1/clients".into(),
            json!({"name": name, "renewal_date": in_days(days), "health_score": health,
                   "arr": arr, "owner": ana_id}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }

    // 1. My queue, by score.
    let q = get("/api/v1/queue/me".into()).await;
    assert_eq!(q.status, 200, "{}", q.body);
    assert_eq!(
        rules_of(&q.body)
            .iter()
            .map(|(_, r)| r.as_str())
            .collect::<Vec<_>>(),
        ["emergency", "critical", "prepare"]
    );
    let item = q.body["items"][1]["id"].as_str().unwrap().to_owned();

    // 2. Start the critical renewal playbook: its first step is pricing.
    let started = post(format!("/api/v1/queue/items/{item}/start"), json!({})).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let journey = started.body["id"].as_str().unwrap().to_owned();
    let ctx = get(format!("/api/v1/journeys/{journey}/context")).await;
    assert_eq!(ctx.body["customer"]["name"], "Soon GmbH");
    assert_eq!(ctx.body["workflow"]["days_to_renewal"], 25);
    let done = post(
        format!("/api/v1/journeys/{journey}/steps/price/complete"),
        json!({"reason": "priced in the spreadsheet"}),
    )
    .await;
    assert_eq!(done.body["next_step"]["id"], "recommend", "{}", done.body);

    // 3. The strategy step's chat, completed: on to the proposal.
    let t = post(
        "/api/v1/threads".into(),
        json!({"journey_id": journey, "step": "recommend", "branch": "discuss_strategy"}),
    )
    .await;
    let thread = t.body["thread"]["id"].as_str().unwrap().to_owned();
    let said = post(
        format!("/api/v1/threads/{thread}/messages"),
        json!({"content": "What do we recommend?"}),
    )
    .await;
    assert_eq!(said.body["messages"][1]["provider"], "ollama:llama3.2");
    let done = post(format!("/api/v1/threads/{thread}/complete"), json!({})).await;
    assert_eq!(
        done.body["next_step"]["id"], "send_proposal",
        "{}",
        done.body
    );

    // 4. The proposal email, drafted in the chat and saved as an artifact.
    let t = post(
        "/api/v1/threads".into(),
        json!({"journey_id": journey, "step": "send_proposal", "branch": "draft_email"}),
    )
    .await;
    let thread = t.body["thread"]["id"].as_str().unwrap().to_owned();
    post(
        format!("/api/v1/threads/{thread}/messages"),
        json!({"content": "Draft the proposal email"}),
    )
    .await;
    let saved = post(
        format!("/api/v1/threads/{thread}/artifacts"),
        json!({"type": "email_draft", "title": "Renewal proposal to Dana"}),
    )
    .await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(
        saved.body["artifact"]["content"]["subject"],
        "Renewing together"
    );
    let artifact = saved.body["artifact"]["id"].as_str().unwrap().to_owned();
    let a = get(format!("/api/v1/artifacts/{artifact}")).await;
    assert_eq!(a.body["type"], "email_draft");
    assert!(
        a.body["note"]
            .as_str()
            .unwrap_or_default()
            .contains(&journey)
            || a.body["provenance"] == format!("thread:{thread}"),
        "{}",
        a.body
    );

    // 5. To-dos from the step: one done, one left.
    for title in ["Book the call with the sponsor", "Send the proposal"] {
        let a = post(
            "/api/v1/tasks".into(),
            json!({"title": title, "journey_id": journey, "step": "send_proposal",
                   "priority": "high", "due_date": in_days(3)}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let todos = get(format!("/api/v1/tasks?journey_id={journey}")).await;
    let first = todos.body["items"][0]["id"].as_str().unwrap().to_owned();
    let a = as_ana(
        reqwest::Method::PATCH,
        format!("/api/v1/tasks/{first}"),
        Some(json!({"action": "complete"})),
    )
    .await;
    assert_eq!(a.body["completed"], true, "{}", a.body);
    let open = get(format!("/api/v1/tasks?journey_id={journey}&status=open")).await;
    assert_eq!(open.body["items"].as_array().unwrap().len(), 1);

    // 6. Snooze: gone from the queue until the date, then back, still started.
    let a = post(
        format!("/api/v1/journeys/{journey}/actions"),
        json!({"action": "snooze", "until": "2027-03-03T08:00:00Z", "reason": "sponsor travelling"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let q = get("/api/v1/queue/me".into()).await;
    assert_eq!(q.body["stats"]["total"], 2);
    clock.advance(time::Duration::days(2));
    let q = get("/api/v1/queue/me".into()).await;
    let back = q.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == item.as_str())
        .unwrap_or_else(|| panic!("{}", q.body))
        .clone();
    assert_eq!(back["journey_id"], journey.as_str());
    assert_eq!(back["stage"], "send_proposal");

    // 7. Complete with an outcome: the playbook and its item are done.
    let done = post(
        format!("/api/v1/journeys/{journey}/steps/send_proposal/complete"),
        json!({"branch": "renewed"}),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["journey"]["state"], "completed");
    assert_eq!(done.body["journey"]["outcome"], "renewed");
    let it = get(format!("/api/v1/queue/items/{item}")).await;
    assert_eq!(it.body["status"], "completed");
    assert_eq!(it.body["outcome"], "renewed");
    let q = get("/api/v1/queue/me".into()).await;
    assert!(
        q.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != item.as_str())
    );
    // A rules run does not bring it back: the renewal is the same cycle.
    app.post("/api/v1/queue/refresh", json!({})).await;
    let it = get(format!("/api/v1/queue/items/{item}")).await;
    assert_eq!(it.body["status"], "completed");
    let history = get(format!("/api/v1/journeys/{journey}/history")).await;
    let events: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["start", "promote", "promote", "snooze", "complete"]
    );
}
