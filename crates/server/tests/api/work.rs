//! The work engine over HTTP: units run by the embedded workers, agents that
//! register, long-poll, heartbeat and finish with their lease, incidents.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use waymark_engine::run::{self as engine, EngineSettings};

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(
    units_run_on_the_embedded_workers,
    agents_claim_heartbeat_and_complete_with_their_lease,
    bad_work_input_is_refused_and_changes_nothing,
    incidents_are_resolved_by_a_person,
    two_tasks_claimed_together_have_leases_of_their_own,
    metrics_show_the_queue_the_runs_and_the_incidents,
);

/// The embedded engine, stepped by the test instead of running on its own.
pub(crate) fn stepped_engine(app: &TestApp) -> engine::Engine {
    engine::Engine::new(
        app.store.clone(),
        EngineSettings {
            concurrency: 4,
            name: "test-worker".into(),
            blobs: Some(app.blobs.clone()),
            ..EngineSettings::default()
        },
    )
}

async fn agent_token(app: &TestApp, agent: &str) -> String {
    let t = app
        .post("/api/v1/tokens", json!({"name": agent, "agent_id": agent}))
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    t.body["token"].as_str().unwrap().to_owned()
}

async fn units_run_on_the_embedded_workers(app: TestApp) {
    let client = app.client("Acme").await;
    let engine = stepped_engine(&app);
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "setup", "tasks": [
                {"key": "a", "executor": "noop", "input": 1},
                {"key": "b", "executor": "noop", "depends_on": ["a"]},
                {"key": "c", "executor": "noop", "depends_on": ["a"], "priority": 5},
                {"key": "d", "executor": "noop", "depends_on": ["b", "c"]},
            ]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let id = unit.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("uow_"));
    assert_eq!(unit.body["tasks"].as_array().unwrap().len(), 4);
    // Four tasks in three waves (a; b and c; d), each wave one step.
    assert_eq!(engine.run_until_idle().await.unwrap(), 4);
    let done = app.get(&format!("/api/v1/work/units/{id}")).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["tasks_done"], 4);
    assert_eq!(done["counts"]["completed"], 4);
    let tasks = done["tasks"].as_array().unwrap();
    let finished = |k: &str| {
        tasks.iter().find(|t| t["key"] == k).unwrap()["finished_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(finished("a") <= finished("b") && finished("b") <= finished("d"));
    assert!(tasks.iter().all(|t| t["claimed_by"] == "test-worker"));
    assert!(
        tasks.iter().all(|t| t["trace_id"].is_string()),
        "the request's trace is carried on its tasks"
    );
    let listed = app
        .get(&format!("/api/v1/work/tasks?unit_id={id}&status=completed"))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 4);
    let units = app
        .get(&format!("/api/v1/work/units?client_id={client}"))
        .await;
    assert_eq!(units.body["items"][0]["id"], id.as_str());
}

async fn agents_claim_heartbeat_and_complete_with_their_lease(app: TestApp) {
    let client = app.client("Acme").await;
    let reg = app
        .post(
            "/api/v1/agents",
            json!({"id": "connector-installation-agent", "capabilities": ["connectors"], "description": "Installs connectors"}),
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    assert_eq!(reg.body["status"], "online");
    let again = app
        .post(
            "/api/v1/agents",
            json!({"id": "connector-installation-agent", "capabilities": ["connectors", "sso"]}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["capabilities"], json!(["connectors", "sso"]));
    assert_eq!(
        again.body["description"], "Installs connectors",
        "what is left out is kept"
    );
    let secret = agent_token(&app, "connector-installation-agent").await;
    let other = agent_token(&app, "dataset-provisioning-agent").await;

    // A long poll answers as soon as a task is ready.
    let poll = {
        let app_base = app.base.clone();
        let secret = secret.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let res = reqwest::Client::new()
                .post(format!(
                    "{app_base}/api/v1/agents/connector-installation-agent/claim"
                ))
                .bearer_auth(&secret)
                .json(&json!({"max": 5, "wait_s": 20}))
                .send()
                .await
                .unwrap();
            (
                res.status(),
                res.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "sandbox", "tasks": [
                {"key": "install", "executor": "connector-installation-agent", "input": {"connector": "sharepoint"}},
                {"key": "review", "executor": "human", "depends_on": ["install"]},
            ]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let uid = unit.body["id"].as_str().unwrap().to_owned();
    let (status, claimed, waited) = poll.await.unwrap();
    assert_eq!(status, 200, "{claimed}");
    assert!(
        waited < Duration::from_secs(15),
        "answered when the task was ready"
    );
    let claimed = claimed.as_array().unwrap().clone();
    assert_eq!(claimed.len(), 1);
    let task = &claimed[0]["task"];
    let tid = task["id"].as_str().unwrap().to_owned();
    let lease = claimed[0]["lease_token"].as_str().unwrap().to_owned();
    assert_eq!(task["input"]["connector"], "sharepoint");
    assert!(claimed[0]["lease_expires_at"].is_string());

    // An empty poll answers an empty list after wait_s.
    let empty = app
        .call_as(
            Some(&secret),
            Method::POST,
            "/api/v1/agents/connector-installation-agent/claim",
            Some(json!({"wait_s": 1})),
        )
        .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body, json!([]));
    // Another agent's token cannot claim for it, nor see its task.
    let refused = app
        .call_as(
            Some(&other),
            Method::POST,
            "/api/v1/agents/connector-installation-agent/claim",
            Some(json!({})),
        )
        .await;
    refused.assert_problem(403, "forbidden");
    let hidden = app
        .call_as(
            Some(&other),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/complete"),
            Some(json!({"lease_token": lease})),
        )
        .await;
    hidden.assert_problem(404, "not_found");
    // An agent's token does an agent's work and nothing else.
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/clients",
            Some(json!({"name": "Sneaky"})),
        ),
        (Method::GET, "/api/v1/clients", None),
        (Method::GET, "/api/v1/work/units", None),
        (Method::GET, "/api/v1/work/tasks", None),
        (Method::GET, "/api/v1/work/incidents", None),
        (
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/cancel"),
            Some(json!({})),
        ),
    ] {
        let refused = app.call_as(Some(&secret), method, path, body).await;
        refused.assert_problem(403, "forbidden");
    }
    let me = app
        .call_as(Some(&secret), Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["agent_id"], "connector-installation-agent");

    let beat = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/heartbeat"),
            Some(json!({"lease_token": lease})),
        )
        .await;
    assert_eq!(beat.status, 200, "{}", beat.body);
    let foreign = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/complete"),
            Some(json!({"lease_token": "wml_0123456789abcdef0123456789abcdef", "output": {}})),
        )
        .await;
    foreign.assert_problem(409, "lease_foreign");
    let done = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/complete"),
            Some(json!({"lease_token": lease, "output": {"installed": true}})),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    let twice = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/complete"),
            Some(json!({"lease_token": lease, "output": {}})),
        )
        .await;
    twice.assert_problem(409, "task_not_running");

    // The human task is completed by a person, without a lease.
    let detail = app.get(&format!("/api/v1/work/units/{uid}")).await;
    let review = detail.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "review")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = app
        .post(
            &format!("/api/v1/work/tasks/{review}/complete"),
            json!({"output": {"ok": true}}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Completing the last task completes the unit, in the same write.
    crate::journeys::assert_unit(&app, &uid, "completed").await;

    let agents = app.get("/api/v1/agents").await;
    let items = agents.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "online");
    assert_eq!(items[0]["capabilities"], json!(["connectors", "sso"]));
}

async fn bad_work_input_is_refused_and_changes_nothing(app: TestApp) {
    let client = app.client("Acme").await;
    let cycle = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "bad", "tasks": [
                {"key": "a", "executor": "noop", "depends_on": ["b"]},
                {"key": "b", "executor": "noop", "depends_on": ["a"]},
            ]}),
        )
        .await;
    cycle.assert_problem(422, "invalid");
    let unknown = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "bad", "tasks": [
                {"key": "a", "executor": "Not An Agent"},
                {"key": "b", "executor": "noop", "depends_on": ["zzz"], "max_attempts": 0},
            ]}),
        )
        .await;
    unknown.assert_problem(422, "invalid");
    let pointers: Vec<&str> = unknown.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/tasks/0/executor")
            && pointers.contains(&"/tasks/1/depends_on/0")
            && pointers.contains(&"/tasks/1/max_attempts"),
        "{pointers:?}"
    );
    let wrong_type = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "bad", "tasks": "nope"}),
        )
        .await;
    assert_eq!(wrong_type.status, 422, "{}", wrong_type.body);
    let nobody = app
        .post("/api/v1/work/units", json!({"client_id": "cli_0123456789abcdef0123456789abcdef", "name": "x", "tasks": [{"key": "a", "executor": "noop"}]}))
        .await;
    nobody.assert_problem(422, "invalid");
    let missing = app
        .get("/api/v1/work/tasks/tsk_0123456789abcdef0123456789abcdef")
        .await;
    missing.assert_problem(404, "not_found");
    let listed = app.get("/api/v1/work/units").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was stored");
}

async fn incidents_are_resolved_by_a_person(app: TestApp) {
    let client = app.client("Acme").await;
    app.post("/api/v1/agents", json!({"id": "flaky"})).await;
    let secret = agent_token(&app, "flaky").await;
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "u", "tasks": [
                {"key": "a", "executor": "flaky", "max_attempts": 1},
                {"key": "b", "executor": "flaky", "depends_on": ["a"]},
            ]}),
        )
        .await;
    let uid = unit.body["id"].as_str().unwrap().to_owned();
    let claimed = app
        .call_as(
            Some(&secret),
            Method::POST,
            "/api/v1/agents/flaky/claim",
            Some(json!({})),
        )
        .await;
    let tid = claimed.body[0]["task"]["id"].as_str().unwrap().to_owned();
    let lease = claimed.body[0]["lease_token"].as_str().unwrap().to_owned();
    let failed = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/fail"),
            Some(json!({"lease_token": lease, "error": "connector refused the credentials"})),
        )
        .await;
    assert_eq!(failed.body["status"], "failed", "{}", failed.body);
    let open = app.get("/api/v1/work/incidents").await;
    let inc = &open.body["items"][0];
    assert!(
        inc["message"]
            .as_str()
            .unwrap()
            .contains("connector refused")
    );
    let iid = inc["id"].as_str().unwrap().to_owned();
    // Agents do not resolve incidents; people do.
    let as_agent = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/incidents/{iid}/resolve"),
            Some(json!({"action": "skip"})),
        )
        .await;
    as_agent.assert_problem(403, "forbidden");
    let bad = app
        .post(
            &format!("/api/v1/work/incidents/{iid}/resolve"),
            json!({"action": "ignore"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let long = app
        .post(
            &format!("/api/v1/work/incidents/{iid}/resolve"),
            json!({"action": "skip", "note": "x".repeat(2001)}),
        )
        .await;
    long.assert_problem(422, "invalid");
    assert_eq!(long.body["errors"][0]["pointer"], "/note");
    let resolved = app
        .post(
            &format!("/api/v1/work/incidents/{iid}/resolve"),
            json!({"action": "skip", "note": "installed by hand"}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.body["resolution"], "skip");
    let next = app
        .call_as(
            Some(&secret),
            Method::POST,
            "/api/v1/agents/flaky/claim",
            Some(json!({})),
        )
        .await;
    assert_eq!(next.body[0]["task"]["key"], "b");
    let u = app.get(&format!("/api/v1/work/units/{uid}")).await;
    assert_eq!(u.body["status"], "running");
    assert_eq!(u.body["incidents"][0]["resolution"], "skip");
}

async fn two_tasks_claimed_together_have_leases_of_their_own(app: TestApp) {
    let reg = app
        .post(
            "/api/v1/agents",
            json!({"id": "sync-agent", "capabilities": ["sync"]}),
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let secret = agent_token(&app, "sync-agent").await;
    for name in ["Acme", "Globex"] {
        let client = app.client(name).await;
        let unit = app
            .post(
                "/api/v1/work/units",
                json!({"client_id": client, "name": "sync", "tasks": [
                    {"key": "sync", "executor": "sync-agent", "input": {"client": name}}]}),
            )
            .await;
        assert_eq!(unit.status, 201, "{}", unit.body);
    }
    let claimed = app
        .call_as(
            Some(&secret),
            Method::POST,
            "/api/v1/agents/sync-agent/claim",
            Some(json!({"max": 10, "wait_s": 0})),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    let claimed = claimed.body.as_array().unwrap().clone();
    assert_eq!(claimed.len(), 2);
    let ids: Vec<String> = claimed
        .iter()
        .map(|c| c["task"]["id"].as_str().unwrap().to_owned())
        .collect();
    let leases: Vec<String> = claimed
        .iter()
        .map(|c| c["lease_token"].as_str().unwrap().to_owned())
        .collect();
    assert_ne!(leases[0], leases[1], "one lease per task");

    // The first task's lease on the second: refused with 409, nothing changes.
    for action in ["complete", "fail", "heartbeat"] {
        let r = app
            .call_as(
                Some(&secret),
                Method::POST,
                &format!("/api/v1/work/tasks/{}/{action}", ids[1]),
                Some(match action {
                    "complete" => json!({"lease_token": leases[0], "output": {"done": true}}),
                    "fail" => json!({"lease_token": leases[0], "error": "stolen"}),
                    _ => json!({"lease_token": leases[0]}),
                }),
            )
            .await;
        r.assert_problem(409, "lease_foreign");
    }
    let second = app
        .get(&format!("/api/v1/work/tasks/{}", ids[1]))
        .await
        .body;
    assert_eq!(second["status"], "running");
    assert_eq!(second["output"], Value::Null);
    assert_eq!(second["attempt_log"][0]["outcome"], "running");
    assert_eq!(second["attempt_log"][0]["worker"], "sync-agent");

    for (id, lease) in ids.iter().zip(&leases) {
        let r = app
            .call_as(
                Some(&secret),
                Method::POST,
                &format!("/api/v1/work/tasks/{id}/complete"),
                Some(json!({"lease_token": lease, "output": {"done": true}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["status"], "completed");
    }
}

async fn scrape(app: &TestApp) -> String {
    let res = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// `/metrics` shows this database's queue per lane and open incidents, and
/// the claims, finishes and run times of the engine and the agents.
async fn metrics_show_the_queue_the_runs_and_the_incidents(app: TestApp) {
    let client = app.client("Acme").await;
    app.post("/api/v1/agents", json!({"id": "scraper-7"})).await;
    let secret = agent_token(&app, "scraper-7").await;
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": client, "name": "u", "tasks": [
                {"key": "a", "executor": "noop"},
                {"key": "b", "executor": "noop", "depends_on": ["a"]},
                {"key": "c", "executor": "noop"},
                {"key": "x", "executor": "scraper-7", "max_attempts": 1},
            ]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let text = scrape(&app).await;
    assert!(
        text.contains("waymark_tasks_queued{lane=\"engine\",state=\"ready\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("waymark_tasks_queued{lane=\"scraper-7\",state=\"ready\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("waymark_incidents_open 0\n"), "{text}");

    assert_eq!(stepped_engine(&app).run_until_idle().await.unwrap(), 3);
    let claimed = app
        .call_as(
            Some(&secret),
            Method::POST,
            "/api/v1/agents/scraper-7/claim",
            Some(json!({})),
        )
        .await;
    let tid = claimed.body[0]["task"]["id"].as_str().unwrap().to_owned();
    let lease = claimed.body[0]["lease_token"].as_str().unwrap().to_owned();
    let text = scrape(&app).await;
    assert!(
        text.contains("waymark_tasks_queued{lane=\"engine\",state=\"ready\"} 0\n"),
        "nothing of the engine's is queued: {text}"
    );
    assert!(
        text.contains("waymark_tasks_queued{lane=\"scraper-7\",state=\"running\"} 1\n"),
        "{text}"
    );
    let failed = app
        .call_as(
            Some(&secret),
            Method::POST,
            &format!("/api/v1/work/tasks/{tid}/fail"),
            Some(json!({"lease_token": lease, "error": "refused"})),
        )
        .await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let text = scrape(&app).await;
    assert!(text.contains("waymark_incidents_open 1\n"), "{text}");
    // The process's counters (shared by every test in this process: present,
    // not counted exactly).
    for series in [
        "waymark_tasks_claimed_total{lane=\"engine\"}",
        "waymark_tasks_claimed_total{lane=\"scraper-7\"}",
        "waymark_tasks_finished_total{outcome=\"completed\"}",
        "waymark_tasks_finished_total{outcome=\"failed\"}",
        "waymark_task_run_duration_seconds_count{executor=\"noop\"}",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    // Every series the Grafana dashboard in docs/ charts is served (webhook
    // attempts once a webhook is sent: the webhook tests).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("waymark_") && *w != "waymark_webhook_attempts_total")
            {
                charted += 1;
                assert!(
                    text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
                    "the dashboard charts {name}, which /metrics does not serve: {text}"
                );
            }
        }
    }
    assert!(charted >= 10, "{charted}");
}
