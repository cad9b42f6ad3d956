//! The `http.webhook` executor: a claimed task is POSTed to its receiver,
//! signed; the receiver completes or fails it later with the lease token.

use serde_json::{Value, json};
use waymark_engine::run::{Engine, EngineSettings};

use crate::helpers::TestApp;
use crate::webhooks::Receiver;

crate::both_backends!(
    webhook_tasks_are_posted_signed_and_completed_by_callback,
    webhook_tasks_of_two_clients_carry_tokens_that_finish_only_their_own,
);

/// The embedded workers, stepped by the test: each step claims what is
/// ready, POSTs it to its receiver and records the answer before returning.
fn workers(app: &TestApp) -> Engine {
    Engine::new(
        app.store.clone(),
        EngineSettings {
            concurrency: 2,
            name: "hook-worker".into(),
            public_url: Some(app.base.clone()),
            ..EngineSettings::default()
        },
    )
}

async fn task(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/work/tasks/{id}")).await.body
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

    let engine = workers(&app);
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "Notify", "tasks": [
                {"key": "notify", "executor": "http.webhook",
                 "input": {"url": receiver.url(), "message": "publish the calendar"},
                 "backoff": {"initial_s": 0, "max_s": 0}},
                {"key": "after", "executor": "noop", "depends_on": ["notify"]},
            ]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let unit_id = unit.body["id"].as_str().unwrap().to_owned();
    let task_id = unit.body["tasks"][0]["id"].as_str().unwrap().to_owned();
    // The first POST is refused; the retry is due at once and delivered.
    assert_eq!(engine.run_once().await.unwrap(), 1);
    assert_eq!(task(&app, &task_id).await["status"], "ready");
    assert_eq!(engine.run_once().await.unwrap(), 1);
    let got = receiver.received();
    assert_eq!(got.len(), 2, "one refused POST, one delivered");
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
    let waiting = task(&app, &task_id).await;
    assert_eq!(waiting["status"], "running", "{waiting}");
    assert_eq!(waiting["attempts"], 2);
    assert_eq!(engine.run_once().await.unwrap(), 0, "nothing else is ready");

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
    let done = task(&app, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({"published": 3}));
    // Both attempts are on the task: the one the receiver refused, then the
    // one its callback completed.
    let log = done["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{done}");
    assert_eq!(log[0]["outcome"], "failed");
    assert!(
        log[0]["error"].as_str().unwrap().contains("503"),
        "{}",
        log[0]
    );
    assert_eq!(log[1]["outcome"], "completed");
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[1]["worker"], "hook-worker");
    assert!(log[1]["duration_ms"].is_i64());
    // The task after it runs next, and the unit completes.
    assert_eq!(engine.run_until_idle().await.unwrap(), 1);
    let u = app.get(&format!("/api/v1/work/units/{unit_id}")).await;
    assert_eq!(u.body["status"], "completed", "{}", u.body);
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
    assert_eq!(engine.run_until_idle().await.unwrap(), 1);
    let failed = task(&app, &gone_task).await;
    assert_eq!(failed["status"], "failed", "{failed}");
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

async fn webhook_tasks_of_two_clients_carry_tokens_that_finish_only_their_own(app: TestApp) {
    let acme = app.client("Acme").await;
    let globex = app.client("Globex").await;
    let (to_acme, to_globex) = (Receiver::start().await, Receiver::start().await);
    let engine = workers(&app);
    let mut tasks = Vec::new();
    for (client, receiver) in [(&acme, &to_acme), (&globex, &to_globex)] {
        let unit = app
            .post(
                "/api/v1/work/units",
                json!({"client_id": client, "name": "Notify", "tasks": [
                    {"key": "notify", "executor": "http.webhook", "input": {"url": receiver.url()}}]}),
            )
            .await;
        assert_eq!(unit.status, 201, "{}", unit.body);
        tasks.push(unit.body["tasks"][0]["id"].as_str().unwrap().to_owned());
    }
    // One step claims both (one call), each with a lease of its own.
    assert_eq!(engine.run_once().await.unwrap(), 2);
    let mut leases = Vec::new();
    for (receiver, task_id) in [(&to_acme, &tasks[0]), (&to_globex, &tasks[1])] {
        let got = receiver.received();
        assert_eq!(got.len(), 1, "each receiver gets one POST");
        let body = got[0].json();
        assert_eq!(
            body["task"]["id"],
            task_id.as_str(),
            "each receiver gets its own task only"
        );
        leases.push(body["lease_token"].as_str().unwrap().to_owned());
        assert_eq!(task(&app, task_id).await["status"], "running");
    }
    assert_ne!(leases[0], leases[1]);

    // Acme's receiver cannot finish Globex's task, nor the other way round.
    for (lease, other) in [(&leases[0], &tasks[1]), (&leases[1], &tasks[0])] {
        for action in ["complete", "fail", "heartbeat"] {
            let (status, p) = as_lease(
                &app,
                reqwest::Method::POST,
                &format!("{}/api/v1/work/tasks/{other}/{action}", app.base),
                lease,
                match action {
                    "complete" => json!({"output": {"stolen": true}}),
                    "fail" => json!({"error": "stolen"}),
                    _ => json!({}),
                },
            )
            .await;
            assert_eq!(status, 409, "{action} with another task's lease: {p}");
            assert_eq!(p["code"], "lease_foreign");
        }
        let t = app.get(&format!("/api/v1/work/tasks/{other}")).await.body;
        assert_eq!(t["status"], "running", "{t}");
        assert_eq!(t["output"], Value::Null);
    }
    // Each finishes its own.
    for (lease, task_id) in [(&leases[0], &tasks[0]), (&leases[1], &tasks[1])] {
        let (status, p) = as_lease(
            &app,
            reqwest::Method::POST,
            &format!("{}/api/v1/work/tasks/{task_id}/complete", app.base),
            lease,
            json!({"output": {"delivered": true}}),
        )
        .await;
        assert_eq!(status, 200, "{p}");
        let done = task(&app, task_id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["output"], json!({"delivered": true}));
    }
}
