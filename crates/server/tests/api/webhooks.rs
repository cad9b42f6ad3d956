//! Webhook subscriptions, their signed deliveries with retries, and mail, against
//! a real receiver (a small HTTP server on a loopback port) and a fake SMTP server.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use waymark_domain::webhook::{self, WebhookSecret};
use waymark_domain::{ClientId, UserId};
use waymark_engine::delivery::DeliverySettings;
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_store::{NewToken, NewUser, Role, TokenKind, WriteContext};

use crate::helpers::{TestApp, fast_delivery};
use crate::smtp::FakeSmtp;

crate::both_backends!(
    subscriptions_are_admin_only_and_validated,
    events_arrive_signed_as_cloudevents,
    events_wait_for_a_receiver_that_is_down,
    a_failing_receiver_is_retried_until_it_answers,
    subscriptions_get_only_their_event_types,
    a_restart_loses_nothing_and_repeats_nothing,
    sharing_mails_the_client_users,
    without_smtp_mail_is_kept_in_the_outbox,
);

/// How long any wait for a delivery may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// --- a webhook receiver ---------------------------------------------------------

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    body: Bytes,
    /// The status it answered with.
    pub(crate) answered: u16,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }

    /// Checks the Standard Webhooks signature as a receiver would.
    pub(crate) fn verify(&self, secret: &str) -> Result<(), webhook::VerifyError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        webhook::verify(
            &WebhookSecret::parse(secret).unwrap(),
            &headers,
            &self.body,
            now,
        )
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
}

/// A receiver of webhooks: records every request, answers as told, and can be
/// stopped and started again on the same port.
pub(crate) struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            shared: Arc::default(),
            running: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            async move {
                let answered = shared.script.lock().unwrap().pop_front().unwrap_or(200);
                shared.received.lock().unwrap().push(Received {
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body,
                    answered,
                });
                StatusCode::from_u16(answered).unwrap()
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        self.running = Some((stop, task));
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks/waymark", self.addr)
    }

    /// Answers the next requests with these statuses.
    pub(crate) fn answer_next(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// Stops listening: connections to its port are refused.
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the requests received; panics after [`WAIT`].
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        wait_until(what, || {
            let r = self.received();
            pred(&r).then_some(r)
        })
        .await
    }

    /// The requests that answered 2xx, by event type.
    fn delivered_of(&self, ty: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered < 300 && r.event_type() == ty)
            .collect()
    }
}

/// Polls `f` every 20 ms until it answers; panics after [`WAIT`].
async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- helpers ----------------------------------------------------------------------

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let a = app.post("/api/v1/webhooks", body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body
}

async fn deliveries(app: &TestApp, hook: &str) -> Vec<Value> {
    let a = app
        .get(&format!("/api/v1/webhooks/{hook}/deliveries?limit=200"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["items"].as_array().unwrap().clone()
}

/// Waits until the subscription's deliveries satisfy `pred`.
async fn wait_deliveries(
    app: &TestApp,
    hook: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = deliveries(app, hook).await;
        if pred(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A token with the client role, for a client user of `client`.
async fn client_token(app: &TestApp, client: &str, user: Option<UserId>) -> String {
    let secret = generate_secret();
    app.store
        .create_token(
            NewToken {
                name: "client contact".into(),
                role: Role::Client,
                secret_hash: hash_secret(&secret),
                expires_at: None,
                user_id: user,
                agent_id: None,
                client_id: Some(client.parse::<ClientId>().unwrap()),
                kind: TokenKind::Api,
            },
            &WriteContext::new("system"),
        )
        .await
        .unwrap();
    secret
}

// --- tests --------------------------------------------------------------------------

async fn subscriptions_are_admin_only_and_validated(app: TestApp) {
    let client = app.client("Acme").await;

    // Generated secret, shown once.
    let made = subscribe(
        &app,
        json!({"url": "https://hooks.example.com/waymark", "event_types": ["artifact.approved", "comment.created"],
               "client_id": client, "description": "Acme's CRM"}),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whk_"), "{made}");
    let secret = made["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{made}");
    assert!(WebhookSecret::parse(secret).is_ok());
    assert_eq!(made["url"], "https://hooks.example.com/waymark");
    assert_eq!(
        made["event_types"],
        json!(["artifact.approved", "comment.created"])
    );
    assert_eq!(made["client_id"], client.as_str());
    assert_eq!(made["description"], "Acme's CRM");

    // A given secret is kept; no types means all.
    let given = subscribe(
        &app,
        json!({"url": "http://127.0.0.1:9/x", "secret": SECRET}),
    )
    .await;
    assert_eq!(given["secret"], SECRET);
    assert_eq!(given["event_types"], json!([]));
    let given_id = given["id"].as_str().unwrap().to_owned();

    // Read back, never with the secret.
    let got = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["url"], "https://hooks.example.com/waymark");
    assert!(got.body.get("secret").is_none(), "{}", got.body);
    let list = app.get("/api/v1/webhooks").await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert!(w.get("secret").is_none());
            w["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, [given_id.as_str(), id.as_str()], "newest first");
    let d = app.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["items"], json!([]));

    // Invalid input: 422 at the field.
    let long = format!("https://example.com/{}", "a".repeat(2048));
    for (body, pointer) in [
        (json!({"url": "hooks.example.com/x"}), "/url"),
        (json!({"url": "ftp://example.com/x"}), "/url"),
        (json!({"url": "http:///"}), "/url"),
        (json!({"url": "https://"}), "/url"),
        (json!({"url": long}), "/url"),
        (
            json!({"url": "https://x.example", "event_types": ["artifact.approved", "Artifact Approved"]}),
            "/event_types/1",
        ),
        (
            json!({"url": "https://x.example", "event_types": ["approved"]}),
            "/event_types/0",
        ),
        (
            json!({"url": "https://x.example", "secret": "whsec_not base64!"}),
            "/secret",
        ),
        (
            json!({"url": "https://x.example", "secret": "whsec_"}),
            "/secret",
        ),
        (
            json!({"url": "https://x.example", "client_id": "cli_0196a1b2c3d47e8f9a0b1c2d3e4f5a6b"}),
            "/client_id",
        ),
        (
            json!({"url": "https://x.example", "client_id": "art_nope"}),
            "/client_id",
        ),
        (json!({"url": "https://x.example", "colour": "red"}), ""),
    ] {
        let a = app.post("/api/v1/webhooks", body.clone()).await;
        a.assert_problem(422, "invalid");
        if !pointer.is_empty() {
            assert_eq!(
                a.body["errors"][0]["pointer"], pointer,
                "{body}: {}",
                a.body
            );
        }
    }
    let list = app.get("/api/v1/webhooks").await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        2,
        "refused requests create nothing"
    );

    // Everyone but an admin: 403, for every route.
    let operator = generate_secret();
    app.store
        .create_token(
            NewToken::standalone("operator", Role::Operator, hash_secret(&operator)),
            &WriteContext::new("system"),
        )
        .await
        .unwrap();
    let contact = client_token(&app, &client, None).await;
    for token in [&operator, &contact] {
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/webhooks".to_owned(),
                Some(json!({"url": "https://x.example"})),
            ),
            (Method::GET, "/api/v1/webhooks".to_owned(), None),
            (Method::GET, format!("/api/v1/webhooks/{id}"), None),
            (
                Method::GET,
                format!("/api/v1/webhooks/{id}/deliveries"),
                None,
            ),
            (Method::DELETE, format!("/api/v1/webhooks/{id}"), None),
        ] {
            let a = app.call_as(Some(token), method.clone(), &path, body).await;
            a.assert_problem(403, "forbidden");
        }
    }
    // No token at all: 401.
    app.call_as(None, Method::GET, "/api/v1/webhooks", None)
        .await
        .assert_problem(401, "unauthorized");

    // Delete: 204, then gone.
    let del = app
        .call(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None, &[])
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    app.get(&format!("/api/v1/webhooks/{id}"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/webhooks/{id}/deliveries"))
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, &format!("/api/v1/webhooks/{id}"), None, &[])
        .await
        .assert_problem(404, "not_found");
    let list = app.get("/api/v1/webhooks").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    // Ids of another kind, or none, name nothing.
    app.get(&format!("/api/v1/webhooks/{client}"))
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/webhooks/whk_garbage")
        .await
        .assert_problem(404, "not_found");
}

async fn events_arrive_signed_as_cloudevents(app: TestApp) {
    let receiver = Receiver::start().await;
    let hook = subscribe(
        &app,
        json!({"url": receiver.url(), "secret": SECRET, "event_types": ["client.created"]}),
    )
    .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    let delivery = app.start_delivery(fast_delivery()).await;
    let client = app.client("Signed Ltd").await;

    let got = receiver
        .wait_until("the client.created event", |r| !r.is_empty())
        .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    r.verify(SECRET).expect("the signature verifies");
    // Another secret does not verify it.
    let (other, _) = WebhookSecret::generate();
    assert!(r.verify(&other).is_err());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("user-agent"), Some("waymark/0.0.0-test"));
    assert!(r.header("webhook-signature").unwrap().starts_with("v1,"));

    let ev = r.json();
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "client.created");
    assert_eq!(ev["id"].as_str(), r.header("webhook-id"));
    assert!(ev["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(ev["source"], "http://127.0.0.1:8080");
    assert_eq!(ev["subject"], client.as_str());
    assert_eq!(ev["clientid"], client.as_str());
    assert_eq!(ev["datacontenttype"], "application/json");
    assert!(ev["time"].as_str().unwrap().contains('T'));
    assert!(ev["data"].is_object(), "{ev}");

    // The delivery log says so.
    let d = wait_deliveries(&app, &hook, "the delivery to be recorded", |d| {
        d.len() == 1 && d[0]["status"] == "delivered"
    })
    .await;
    assert_eq!(d[0]["event_id"], ev["id"]);
    assert_eq!(d[0]["event_type"], "client.created");
    assert_eq!(d[0]["attempts"], 1);
    assert_eq!(d[0]["last_status"], 200);
    assert_eq!(d[0]["attempt_log"].as_array().unwrap().len(), 1);
    assert_eq!(d[0]["attempt_log"][0]["status_code"], 200);
    delivery.stop().await;
}

async fn events_wait_for_a_receiver_that_is_down(app: TestApp) {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let hook = subscribe(
        &app,
        json!({"url": receiver.url(), "secret": SECRET, "event_types": ["client.created"]}),
    )
    .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    let delivery = app.start_delivery(fast_delivery()).await;
    app.client("While Down 1").await;
    app.client("While Down 2").await;

    // Refused connections are attempts, logged, and retried.
    wait_deliveries(&app, &hook, "two failed attempts each", |d| {
        d.len() == 2 && d.iter().all(|d| d["attempts"].as_i64().unwrap() >= 2)
    })
    .await;
    receiver.restart().await;
    let d = wait_deliveries(&app, &hook, "both delivered", |d| {
        d.len() == 2 && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    for d in &d {
        let log = d["attempt_log"].as_array().unwrap();
        assert!(log.len() >= 3, "{d:#}");
        assert_eq!(d["attempts"].as_u64().unwrap() as usize, log.len());
        let (last, failed) = log.split_last().unwrap();
        assert_eq!(last["status_code"], 200, "{d:#}");
        for f in failed {
            assert!(f["status_code"].is_null(), "{d:#}");
            assert!(!f["error"].as_str().unwrap().is_empty(), "{d:#}");
        }
        let numbers: Vec<i64> = log.iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
        assert_eq!(numbers, (1..=log.len() as i64).collect::<Vec<_>>());
    }
    let got = receiver.received();
    assert_eq!(got.len(), 2, "{got:#?}");
    for r in &got {
        r.verify(SECRET).unwrap();
    }
    delivery.stop().await;
}

async fn a_failing_receiver_is_retried_until_it_answers(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[500, 500, 500]);
    let hook = subscribe(
        &app,
        json!({"url": receiver.url(), "secret": SECRET, "event_types": ["client.created"]}),
    )
    .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    let delivery = app.start_delivery(fast_delivery()).await;
    app.client("Flaky Receiver Inc").await;

    let d = wait_deliveries(&app, &hook, "the delivery", |d| {
        d.len() == 1 && d[0]["status"] == "delivered"
    })
    .await;
    let d = &d[0];
    assert_eq!(d["attempts"], 4, "{d:#}");
    let codes: Vec<i64> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    assert!(
        d["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert!(d["attempt_log"][3]["error"].is_null());
    assert!(d["delivered_at"].is_string());

    // Every attempt carried the same message id, each signed afresh.
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for r in &got {
        r.verify(SECRET).unwrap();
    }
    delivery.stop().await;
}

async fn subscriptions_get_only_their_event_types(app: TestApp) {
    let approvals = Receiver::start().await;
    let everything = Receiver::start().await;
    let client = app.client("Filter Co").await;
    subscribe(
        &app,
        json!({"url": approvals.url(), "secret": SECRET, "event_types": ["artifact.approved"]}),
    )
    .await;
    subscribe(&app, json!({"url": everything.url(), "secret": SECRET})).await;
    let delivery = app.start_delivery(fast_delivery()).await;

    let art = app
        .artifact(&client, "note", json!({"text": "hello"}))
        .await;
    for to in ["in_review", "approved"] {
        let a = app
            .post(
                &format!("/api/v1/artifacts/{art}/transitions"),
                crate::helpers::transition_body(to),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    app.client("Another Co").await;

    // Deliveries run side by side, so they arrive in any order: wait for each.
    let wanted = ["artifact.created", "artifact.shared", "artifact.approved"];
    everything
        .wait_until("every event type and the last event", |r| {
            r.iter().any(|r| {
                r.event_type() == "client.created" && r.json()["data"]["name"] == "Another Co"
            }) && wanted
                .iter()
                .all(|t| r.iter().any(|x| x.event_type() == *t))
        })
        .await;
    let got = approvals
        .wait_until("the approval", |r| !r.is_empty())
        .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].event_type(), "artifact.approved");
    assert_eq!(got[0].json()["data"]["artifact_id"], art.as_str());
    assert_eq!(approvals.received().len(), 1);
    delivery.stop().await;
}

async fn a_restart_loses_nothing_and_repeats_nothing(app: TestApp) {
    let receiver = Receiver::start().await;
    let hook = subscribe(
        &app,
        json!({"url": receiver.url(), "secret": SECRET, "event_types": ["client.created"]}),
    )
    .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    // Some failures, so retries are pending across the restart.
    receiver.answer_next(&[503, 503]);

    let first = app.start_delivery(fast_delivery()).await;
    for i in 0..5 {
        app.client(&format!("Before {i}")).await;
    }
    // Stop while work is still under way.
    receiver
        .wait_until("a first request", |r| !r.is_empty())
        .await;
    first.stop().await;
    for i in 0..5 {
        app.client(&format!("Between {i}")).await;
    }
    // Two loops at once after the "restart", as two processes would run.
    let second = app.start_delivery(fast_delivery()).await;
    let third = app.start_delivery(fast_delivery()).await;
    for i in 0..5 {
        app.client(&format!("After {i}")).await;
    }

    let d = wait_deliveries(&app, &hook, "all 15 delivered", |d| {
        d.len() == 15 && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    second.stop().await;
    third.stop().await;

    // Each event reached the receiver exactly once with a 2xx.
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for r in receiver.received().iter().filter(|r| r.answered < 300) {
        *delivered
            .entry(r.header("webhook-id").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(delivered.len(), 15, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    for d in &d {
        assert_eq!(delivered[d["event_id"].as_str().unwrap()], 1);
        // One successful attempt, after the failures the log shows.
        let log = d["attempt_log"].as_array().unwrap();
        assert_eq!(
            log.iter().filter(|a| a["status_code"] == 200).count(),
            1,
            "{d:#}"
        );
    }
    let names: Vec<String> = receiver
        .delivered_of("client.created")
        .iter()
        .map(|r| r.json()["data"]["name"].as_str().unwrap().to_owned())
        .collect();
    for prefix in ["Before", "Between", "After"] {
        assert_eq!(
            names.iter().filter(|n| n.starts_with(prefix)).count(),
            5,
            "{names:?}"
        );
    }
}

async fn sharing_mails_the_client_users(app: TestApp) {
    let smtp = FakeSmtp::start().await;
    let a = app
        .post(
            "/api/v1/clients",
            json!({"name": "Mailed Ltd", "owner": "olivia@agency.example"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let client = a.body["id"].as_str().unwrap().to_owned();
    let client_id: ClientId = client.parse().unwrap();
    let ctx = WriteContext::new("system");
    let mut users = vec![];
    for (email, name) in [("ana@mailed.example", "Ana"), ("ben@mailed.example", "Ben")] {
        let u = app
            .store
            .create_user(
                NewUser {
                    email: email.into(),
                    name: name.into(),
                    role: Role::Client,
                    client_id: Some(client_id),
                    password_hash: None,
                },
                &ctx,
            )
            .await
            .unwrap();
        users.push(u);
    }
    // Staff are not mailed about shares.
    app.store
        .create_user(
            NewUser {
                email: "op@agency.example".into(),
                name: "Op".into(),
                role: Role::Operator,
                client_id: None,
                password_hash: None,
            },
            &ctx,
        )
        .await
        .unwrap();

    let delivery = app
        .start_delivery(DeliverySettings {
            smtp_url: Some(smtp.url()),
            mail_from: "Waymark <waymark@agency.example>".into(),
            ..fast_delivery()
        })
        .await;

    let art = app.artifact(&client, "note", json!({"text": "plan"})).await;
    let shared = app
        .post(
            &format!("/api/v1/artifacts/{art}/share"),
            json!({"message": "Here is the Q3 plan.\nPlease look at the budget."}),
        )
        .await;
    assert_eq!(shared.status, 200, "{}", shared.body);

    let mails = smtp.wait_for(2, WAIT).await;
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["ana@mailed.example", "ben@mailed.example"]);
    for m in &mails {
        assert_eq!(m.from, "waymark@agency.example");
        assert_eq!(m.subject(), "note doc is ready for your review");
        let body = m.body();
        assert!(body.contains("Here is the Q3 plan."), "{body}");
        assert!(body.contains("Please look at the budget."), "{body}");
        assert!(
            body.contains(&format!("http://127.0.0.1:8080/artifacts/{art}")),
            "{body}"
        );
        let hello = if m.to[0].starts_with("ana") {
            "Ana"
        } else {
            "Ben"
        };
        assert!(body.starts_with(&format!("Hello {hello},")), "{body}");
    }

    // An internal comment mails nobody; a client's comment mails the owner.
    let internal = app
        .post(
            &format!("/api/v1/artifacts/{art}/comments"),
            json!({"body": "INTERNAL: their budget is tight", "internal": true}),
        )
        .await;
    assert_eq!(internal.status, 201, "{}", internal.body);
    let ana = client_token(&app, &client, Some(users[0].id)).await;
    let c = app
        .call_as(
            Some(&ana),
            Method::POST,
            &format!("/api/v1/artifacts/{art}/comments"),
            Some(json!({"body": "Can we move phase 2 earlier?"})),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let mails = smtp.wait_for(3, WAIT).await;
    let m = &mails[2];
    assert_eq!(m.to, ["olivia@agency.example"]);
    assert_eq!(m.subject(), "Ana commented on note doc");
    assert!(
        m.body().contains("Can we move phase 2 earlier?"),
        "{}",
        m.body()
    );

    // A review link mails the reviewer their link, exactly as the API answered it.
    let link = app
        .post(
            &format!("/api/v1/artifacts/{art}/review-links"),
            json!({"reviewer_email": "cfo@mailed.example", "reviewer_name": "Chris"}),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let url = link.body["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:8080/review/wmr_"),
        "{url}"
    );
    let mails = smtp.wait_for(4, WAIT).await;
    let m = &mails[3];
    assert_eq!(m.to, ["cfo@mailed.example"]);
    assert!(m.body().contains(url), "{}", m.body());
    assert!(m.body().starts_with("Hello Chris,"), "{}", m.body());

    // The approval mails the owner.
    let ok = app
        .call_as(
            Some(&ana),
            Method::POST,
            &format!("/api/v1/artifacts/{art}/approve"),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let mails = smtp.wait_for(5, WAIT).await;
    let m = &mails[4];
    assert_eq!(m.to, ["olivia@agency.example"]);
    assert_eq!(m.subject(), "note doc was approved");
    assert!(m.body().contains("by Ana"), "{}", m.body());

    for m in smtp.messages() {
        assert!(!m.body().contains("INTERNAL"), "{}", m.body());
    }
    assert_eq!(smtp.messages().len(), 5);
    delivery.stop().await;
}

async fn without_smtp_mail_is_kept_in_the_outbox(app: TestApp) {
    let client = app.client("Kept Ltd").await;
    let client_id: ClientId = client.parse().unwrap();
    app.store
        .create_user(
            NewUser {
                email: "ana@kept.example".into(),
                name: "Ana".into(),
                role: Role::Client,
                client_id: Some(client_id),
                password_hash: None,
            },
            &WriteContext::new("system"),
        )
        .await
        .unwrap();
    let delivery = app.start_delivery(fast_delivery()).await;
    let art = app.artifact(&client, "note", json!({"text": "plan"})).await;
    let shared = app
        .post(
            &format!("/api/v1/artifacts/{art}/share"),
            json!({"message": "Here is the plan."}),
        )
        .await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    let mut outbox = Value::Null;
    for _ in 0..500 {
        outbox = app.get("/api/v1/mail").await.body;
        if outbox["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let items = outbox["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{outbox}");
    let mail = &items[0];
    assert_eq!(mail["recipient"], "ana@kept.example");
    assert_eq!(mail["status"], "unsent");
    assert_eq!(mail["attempts"], 0);
    assert!(mail["last_error"].as_str().unwrap().contains("smtp_url"));
    assert!(mail["body"].as_str().unwrap().contains("Here is the plan."));
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .contains(&format!("/artifacts/{art}"))
    );
    // Admins only.
    let ana_token = client_token(&app, &client, None).await;
    let refused = app
        .call_as(Some(&ana_token), Method::GET, "/api/v1/mail", None)
        .await;
    refused.assert_problem(403, "forbidden");
    drop(delivery);
}
