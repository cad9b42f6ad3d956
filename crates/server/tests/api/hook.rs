//! The `http.webhook` executor: a claimed task is POSTed to its receiver,
//! signed; the receiver completes or fails it later with the lease token.

use std::time::Duration;

use serde_json::{Value, json};
use waymark_server::engine::{self, EngineSettings};

use crate::helpers::TestApp;
use crate::webhooks::Receiver;

crate::both_backends!(webhook_tasks_are_posted_signed_and_completed_by_callback);

fn start_engine(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(engine::run(
        app.store.clone(),
        EngineSettings {
            concurrency: 2,
            name: "hook-worker".into(),
            public_url: Some(app.base.clone()),
            ..EngineSettings::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    stop
}

async fn wait_task(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..500 {
        let t = app.get(&format!("/api/v1/work/tasks/{id}")).await;
        if t.body["status"] == status {
            return t.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = app.get(&format!("/api/v1/work/tasks/{id}")).await;
    panic!("task {id} never became {status}: {}", t.body);
}

async fn as_lease(
    app: &TestApp,
    method: reqwest::Method,
    url: &str,
    lease: &str,
    body: Value,
) -> (u16, Value) {
    let res = app
        .http
        .request(method, url)
        .bearer_auth(lease)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn webhook_tasks_are_posted_signed_and_completed_by_callback(app: TestApp) {
    let client = app.client("Acme").await;
    let receiver = Receiver::start().await;
    // The first attempt meets a receiver that is down for a moment.
    receiver.answer_next(&[503]);
    let secret = app.get("/api/v1/work/webhook-secret").await;
    assert_eq!(secret.status, 200, "{}", secret.body);
    let secret = secret.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let bad = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "x", "tasks": [{"key": "a", "executor": "http.webhook", "input": {"url": "ftp://nope"}}]}),
        )
        .await;
    bad.assert_problem(422, "invalid");
    assert_eq!(bad.body["errors"][0]["pointer"], "/tasks/0/input/url");

    let _engine = start_engine(&app);
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "Notify", "tasks": [
                {"key": "notify", "executor": "http.webhook",
                 "input": {"url": receiver.url(), "message": "publish the calendar"},
                 "backoff": {"initial_s": 0.05, "max_s": 0.1}},
                {"key": "after", "executor": "noop", "depends_on": ["notify"]},
            ]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let unit_id = unit.body["id"].as_str().unwrap().to_owned();
    let task_id = unit.body["tasks"][0]["id"].as_str().unwrap().to_owned();
    let got = receiver
        .wait_until("the retried POST", |r| r.len() >= 2)
        .await;
    assert_eq!(got[0].answered, 503);
    let post = &got[1];
    post.verify(&secret)
        .expect("signed with the task-webhook secret");
    let body = post.json();
    assert_eq!(body["type"], "task.assigned");
    assert_eq!(body["task"]["id"], task_id.as_str());
    assert_eq!(body["task"]["input"]["message"], "publish the calendar");
    assert_eq!(body["task"]["attempt"], 2);
    assert_eq!(
        post.header("webhook-id"),
        Some(format!("{task_id}_2").as_str())
    );
    let complete = body["callbacks"]["complete"].as_str().unwrap().to_owned();
    assert_eq!(
        complete,
        format!("{}/api/v1/work/tasks/{task_id}/complete", app.base)
    );
    let lease = body["lease_token"].as_str().unwrap().to_owned();
    assert!(lease.starts_with("wml_"));
    // Taken, not finished: it waits for the callback.
    let waiting = wait_task(&app, &task_id, "running").await;
    assert_eq!(waiting["attempts"], 2);

    // The lease token opens that task's callbacks and nothing else.
    let (status, _) = as_lease(
        &app,
        reqwest::Method::GET,
        &format!("{}/api/v1/clients", app.base),
        &lease,
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);
    let other = unit.body["tasks"][1]["id"].as_str().unwrap();
    let (status, p) = as_lease(
        &app,
        reqwest::Method::POST,
        &format!("{}/api/v1/work/tasks/{other}/complete", app.base),
        &lease,
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "another task's lease changes nothing: {p}");
    assert_eq!(
        app.get(&format!("/api/v1/work/tasks/{other}")).await.body["status"],
        "pending"
    );
    let (status, p) = as_lease(
        &app,
        reqwest::Method::POST,
        &complete,
        &lease,
        json!({"lease_token": "wml_0000", "output": {}}),
    )
    .await;
    assert_eq!(status, 422, "{p}");
    let (status, p) = as_lease(
        &app,
        reqwest::Method::POST,
        &complete,
        "wml_00000000000000000000000000000000",
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["code"], "lease_foreign");
    let beat = body["callbacks"]["heartbeat"].as_str().unwrap();
    let (status, p) = as_lease(&app, reqwest::Method::POST, beat, &lease, json!({})).await;
    assert_eq!(status, 200, "{p}");

    let (status, p) = as_lease(
        &app,
        reqwest::Method::POST,
        &complete,
        &lease,
        json!({"output": {"published": 3}}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "completed");
    let done = wait_task(&app, &task_id, "completed").await;
    assert_eq!(done["output"], json!({"published": 3}));
    let u = app.get(&format!("/api/v1/work/units/{unit_id}")).await;
    for _ in 0..200 {
        if app.get(&format!("/api/v1/work/units/{unit_id}")).await.body["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.get(&format!("/api/v1/work/units/{unit_id}")).await.body["status"],
        "completed",
        "{}",
        u.body
    );
    let (status, p) = as_lease(&app, reqwest::Method::POST, &complete, &lease, json!({})).await;
    assert_eq!(status, 409, "a second completion is refused: {p}");

    // A receiver that refuses for good fails the task at once: an incident.
    receiver.answer_next(&[410]);
    let gone = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "Gone", "tasks": [
                {"key": "notify", "executor": "http.webhook", "input": {"url": receiver.url()}}]}),
        )
        .await;
    let gone_task = gone.body["tasks"][0]["id"].as_str().unwrap().to_owned();
    let failed = wait_task(&app, &gone_task, "failed").await;
    assert!(
        failed["last_error"].as_str().unwrap().contains("410"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1);
    let incidents = app.get("/api/v1/work/incidents").await;
    assert!(
        incidents.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["task_id"] == gone_task.as_str()),
        "{}",
        incidents.body
    );
}
