//! The route walk: every route of the OpenAPI document, called with a client-A
//! token and client-B ids (in the path, the body and the query string), answers
//! exactly as it does for ids that exist nowhere, and nothing of B appears in
//! any answer.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use waymark_store::{NewReviewLink, Role, WriteContext};

use crate::both_backends;
use crate::fixtures::{artifact_by, person, post_as};
use crate::helpers::TestApp;

both_backends!(a_client_token_learns_nothing_of_another_client);

/// Ids of every kind the API knows, for B and for nobody.
struct Ids {
    client: String,
    engagement: String,
    artifact: String,
    comment: String,
    link: String,
    user: String,
    token: String,
    webhook: String,
    event: String,
    journey: String,
    unit: String,
    task: String,
    incident: String,
    stakeholder: String,
    queue_item: String,
    thread: String,
    todo: String,
    file: String,
}

impl Ids {
    fn fresh() -> Ids {
        let id = |p: &str| format!("{p}_{}", uuid::Uuid::now_v7().simple());
        Ids {
            client: id("cli"),
            engagement: id("eng"),
            artifact: id("art"),
            comment: id("cmt"),
            link: id("rvl"),
            user: id("usr"),
            token: id("tok"),
            webhook: id("whk"),
            event: id("evt"),
            journey: id("jrn"),
            unit: id("uow"),
            task: id("tsk"),
            incident: id("inc"),
            stakeholder: id("stk"),
            queue_item: id("qit"),
            thread: id("thr"),
            todo: id("tdo"),
            file: id("fil"),
        }
    }

    fn all(&self) -> [&str; 18] {
        [
            &self.client,
            &self.engagement,
            &self.artifact,
            &self.comment,
            &self.link,
            &self.user,
            &self.token,
            &self.webhook,
            &self.event,
            &self.journey,
            &self.unit,
            &self.task,
            &self.incident,
            &self.stakeholder,
            &self.queue_item,
            &self.thread,
            &self.todo,
            &self.file,
        ]
    }

    /// A path of the document with its parameters filled in.
    fn path(&self, template: &str) -> String {
        let mut out = String::new();
        let segments: Vec<&str> = template.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            if seg.starts_with('{') {
                let owner = segments[i - 1];
                out.push_str(match (owner, *seg) {
                    (_, "{n}") => "1",
                    // A person's to-dos, not the engine's tasks.
                    ("tasks", _) if template.starts_with("/api/v1/tasks/") => &self.todo,
                    ("stakeholders", _) => &self.stakeholder,
                    ("items", _) => &self.queue_item,
                    ("threads", _) => &self.thread,
                    ("files", _) => &self.file,
                    // An export of B's engagement or of nobody's: the engagement answers first.
                    ("exports", _) => "exp_0190f3a2c1d07e5f8a9b0c1d2e3f4a5b",
                    ("queue", "{owner}") => "me",
                    ("steps", _) => "price",
                    ("clients", _) => &self.client,
                    ("engagements", _) => &self.engagement,
                    ("artifacts", _) => &self.artifact,
                    ("comments", _) => &self.comment,
                    ("review-links", _) => &self.link,
                    ("users", _) => &self.user,
                    ("tokens", _) => &self.token,
                    ("webhooks", _) => &self.webhook,
                    ("journeys", _) => &self.journey,
                    ("units", _) => &self.unit,
                    ("tasks", _) => &self.task,
                    ("incidents", _) => &self.incident,
                    ("packs", _) => "insurance-migration",
                    ("agents", _) => "agent-b",
                    (owner, param) => panic!(
                        "{template}: no id of the right kind for {param} after /{owner}/; name it here"
                    ),
                });
            } else {
                out.push_str(seg);
            }
        }
        out
    }

    fn query(&self) -> String {
        format!(
            "client_id={}&engagement_id={}&artifact_id={}&user_id={}&target={}&actor={}&after={}&journey_id={}&unit_id={}&task_id={}&type=migration_plan",
            self.client,
            self.engagement,
            self.artifact,
            self.user,
            self.artifact,
            self.user,
            self.event,
            self.journey,
            self.unit,
            self.task,
        )
    }

    fn body(&self) -> Value {
        json!({
            "client_id": self.client,
            "engagement_id": self.engagement,
            "artifact_id": self.artifact,
            "parent_id": self.comment,
            "user_id": self.user,
            "journey_id": self.journey,
            "unit_id": self.unit,
            "task_id": self.task,
            "sources": [{"artifact_id": self.artifact, "version": 1}],
            "name": "probe",
            "title": "probe",
            "type": "migration_plan",
            "pack": "insurance-migration",
            "content": {"phases": []},
            "body": "probe",
            "message": "probe",
            "reason": "probe",
            "version": 1,
            "to_version": 1,
            "to": "approved",
            "email": "probe@b.example",
            "password": "probe probe probe",
            "role": "client",
            "url": "http://127.0.0.1:9/hook",
            "reviewer_email": "probe@b.example",
            "reviewer_name": "probe",
            "files": {},
            "deliverables": [],
        })
    }

    /// `text` with these ids replaced by their kind.
    fn mask(&self, text: &str) -> String {
        let kinds = [
            "CLI", "ENG", "ART", "CMT", "RVL", "USR", "TOK", "WHK", "EVT", "JRN", "UOW", "TSK",
            "INC", "STK", "QIT", "THR", "TDO", "FIL",
        ];
        let mut t = text.to_owned();
        for (id, k) in self.all().iter().zip(kinds) {
            t = t.replace(id, &format!("<{k}>"));
        }
        t
    }
}

async fn send(
    app: &TestApp,
    token: &str,
    method: &Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = app
        .http
        .request(method.clone(), format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("If-Match", "\"1\"");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let is_stream = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = if is_stream {
        // Whatever the stream sends in a second and a half.
        let mut s = res.bytes_stream();
        let mut out = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, s.next()).await {
            out.push_str(&String::from_utf8_lossy(&chunk));
        }
        out
    } else {
        res.text().await.unwrap()
    };
    (status, text)
}

/// Drops what differs between two calls whatever the ids (trace ids, times).
fn stable(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut o)) => {
            o.remove("trace_id");
            Value::Object(o).to_string()
        }
        _ => text.to_owned(),
    }
}

async fn a_client_token_learns_nothing_of_another_client(app: TestApp) {
    let a = app.client("Acme Insurance").await;
    let b = app.client("Beta Secret Holdings").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let ana = person(&app, "ana@acme.example", Role::Client, Some(&a)).await;
    let bob = person(&app, "bob@beta.example", Role::Client, Some(&b)).await;
    // A's own things, so A's answers are not all empty.
    artifact_by(&app, &op.token, &a, "Acme plan", true).await;
    // B's things, of every kind.
    let eng = post_as(
        &app,
        &op.token,
        "/api/v1/engagements",
        json!({"client_id": b, "name": "Beta Secret Migration", "pack": "insurance-migration"}),
    )
    .await;
    assert_eq!(eng.status, 201, "{}", eng.body);
    let art = artifact_by(&app, &op.token, &b, "Beta Secret Plan", true).await;
    let comment = post_as(
        &app,
        &bob.token,
        &format!("/api/v1/artifacts/{art}/comments"),
        json!({"body": "Beta secret remark"}),
    )
    .await;
    assert_eq!(comment.status, 201);
    let link = app
        .store
        .create_review_link(
            NewReviewLink {
                artifact_id: art.parse().unwrap(),
                reviewer_email: "carol@beta.example".into(),
                reviewer_name: "Carol Beta".into(),
                expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            },
            &WriteContext::new("usr_op"),
        )
        .await
        .unwrap();
    let tokens = app.get(&format!("/api/v1/tokens?user_id={}", bob.id)).await;
    let bob_token = tokens.body["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("bob has a token: {}", tokens.body))
        .to_owned();
    let hook = app
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "client_id": b}),
        )
        .await;
    // B's journey, started: its units and their tasks.
    let journey = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": b, "template": "client-onboarding", "name": "Beta Secret Onboarding"}),
        )
        .await;
    assert_eq!(journey.status, 201, "{}", journey.body);
    let journey_id = journey.body["id"].as_str().unwrap().to_owned();
    let started = app
        .post(
            &format!("/api/v1/journeys/{journey_id}/events"),
            json!({"event": "start"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    // B's unit of work with a task that fails for good: an incident.
    let agent = crate::journeys::agent_token(&app, "agent-b").await;
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": b, "name": "Beta Secret Setup", "tasks": [
                {"key": "install", "executor": "agent-b", "max_attempts": 1,
                 "input": {"note": "Beta Secret input"}},
                {"key": "after", "executor": "human", "depends_on": ["install"]}]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    let unit_id = unit.body["id"].as_str().unwrap().to_owned();
    let claimed = app
        .call_as(
            Some(&agent),
            Method::POST,
            "/api/v1/agents/agent-b/claim",
            Some(json!({"max": 1, "wait_s": 0})),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    let task_id = claimed.body[0]["task"]["id"].as_str().unwrap().to_owned();
    let lease = claimed.body[0]["lease_token"].as_str().unwrap().to_owned();
    let failed = app
        .call_as(
            Some(&agent),
            Method::POST,
            &format!("/api/v1/work/tasks/{task_id}/fail"),
            Some(json!({"lease_token": lease, "error": "Beta Secret failure"})),
        )
        .await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let unit_after_setup = app.get(&format!("/api/v1/work/units/{unit_id}")).await;
    let incidents = app
        .get(&format!("/api/v1/work/incidents?client_id={b}"))
        .await;
    let incident_id = incidents.body["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no incident: {}", incidents.body))
        .to_owned();
    // B's customer success: a renewal in the queue, its playbook started, a
    // conversation on its step, a to-do, a stakeholder.
    let renewal = (time::OffsetDateTime::now_utc().date() + time::Duration::days(25)).to_string();
    let patched = app
        .call(
            Method::PATCH,
            &format!("/api/v1/clients/{b}"),
            Some(json!({"renewal_date": renewal, "owner": "Beta Secret owner"})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let queue = app.get("/api/v1/queue/Beta%20Secret%20owner").await;
    let queue_item = queue.body["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("B has a queue item: {}", queue.body))
        .to_owned();
    let playbook = app
        .post(
            &format!("/api/v1/queue/items/{queue_item}/start"),
            json!({}),
        )
        .await;
    assert_eq!(playbook.status, 201, "{}", playbook.body);
    let playbook = playbook.body["id"].as_str().unwrap().to_owned();
    let thread = app
        .post(
            "/api/v1/threads",
            json!({"journey_id": playbook, "step": "price"}),
        )
        .await;
    assert_eq!(thread.status, 201, "{}", thread.body);
    let thread_id = thread.body["thread"]["id"].as_str().unwrap().to_owned();
    let said = app
        .post(
            &format!("/api/v1/threads/{thread_id}/messages"),
            json!({"content": "Beta Secret question"}),
        )
        .await;
    assert_eq!(said.status, 201, "{}", said.body);
    let todo = post_as(
        &app,
        &op.token,
        "/api/v1/tasks",
        json!({"title": "Beta Secret to-do", "journey_id": playbook, "step": "price"}),
    )
    .await;
    assert_eq!(todo.status, 201, "{}", todo.body);
    let stakeholder = app
        .post(
            &format!("/api/v1/clients/{b}/stakeholders"),
            json!({"name": "Beta Secret Sponsor", "role": "CFO", "influence": "high",
                   "sentiment": "neutral"}),
        )
        .await;
    assert_eq!(stakeholder.status, 201, "{}", stakeholder.body);
    let form = reqwest::multipart::Form::new()
        .text("client_id", b.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"Beta Secret minutes".to_vec())
                .file_name("Beta Secret minutes.txt"),
        );
    let file = TestApp::answer(
        app.http
            .post(format!("{}/api/v1/files", app.base))
            .bearer_auth(&app.token)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(file.status, 201, "{}", file.body);
    let events = app
        .store
        .events_after(0, waymark_store::EventScope::All, 1000)
        .await
        .unwrap();
    let b_event = events
        .iter()
        .rev()
        .find(|e| e.client_id.map(|c| c.to_string()) == Some(b.clone()))
        .unwrap()
        .id
        .to_string();
    let theirs = Ids {
        client: b.clone(),
        engagement: eng.body["id"].as_str().unwrap().to_owned(),
        artifact: art.clone(),
        comment: comment.body["id"].as_str().unwrap().to_owned(),
        link: link.id.to_string(),
        user: bob.id.to_string(),
        token: bob_token,
        webhook: hook.body["id"].as_str().unwrap_or("whk_0").to_owned(),
        event: b_event,
        journey: journey_id,
        unit: unit_id,
        task: task_id,
        incident: incident_id,
        stakeholder: stakeholder.body["id"].as_str().unwrap().to_owned(),
        queue_item,
        thread: thread_id,
        todo: todo.body["id"].as_str().unwrap().to_owned(),
        file: file.body["id"].as_str().unwrap().to_owned(),
    };
    assert!(
        hook.status.is_success() && !theirs.webhook.ends_with("_0"),
        "{}",
        hook.body
    );
    let secrets = [
        "Beta Secret",
        "bob@beta.example",
        "carol@beta.example",
        "Beta secret remark",
    ];

    let doc = app.get("/api/openapi.json").await;
    let paths = doc.body["paths"].as_object().unwrap();
    let mut walked = 0;
    for (template, item) in paths {
        // Signing out ends the caller's own session: it takes no ids and would
        // end the walk.
        if !template.starts_with("/api/v1/") || template == "/api/v1/sessions/current" {
            continue;
        }
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_none() {
                continue;
            }
            let method: Method = m.to_uppercase().parse().unwrap();
            let body = (m != "get" && m != "delete").then(|| theirs.body());
            let sep = if template.contains('?') { '&' } else { '?' };
            // A search looks for B's words.
            let words = if template == "/api/v1/search" {
                "q=Beta%20secret&"
            } else {
                ""
            };
            let path_b = format!("{}{sep}{words}{}", theirs.path(template), theirs.query());
            let (status_b, text_b) = send(&app, &ana.token, &method, &path_b, body.clone()).await;
            for s in secrets {
                assert!(
                    !text_b.contains(s),
                    "{m} {template} showed `{s}` of client B to client A: {text_b}"
                );
            }
            let nobody = Ids::fresh();
            let body_x = (m != "get" && m != "delete").then(|| nobody.body());
            let path_x = format!("{}{sep}{words}{}", nobody.path(template), nobody.query());
            let (status_x, text_x) = send(&app, &ana.token, &method, &path_x, body_x).await;
            assert_eq!(
                status_b, status_x,
                "{m} {template}: B's ids answer {status_b}, ids of nobody {status_x}\n{text_b}\n{text_x}"
            );
            if (200..300).contains(&status_b) {
                for id in theirs.all() {
                    assert!(
                        !text_b.contains(id),
                        "{m} {template} answered {status_b} with B's id {id}: {text_b}"
                    );
                }
            } else {
                assert_eq!(
                    stable(&theirs.mask(&text_b)),
                    stable(&nobody.mask(&text_x)),
                    "{m} {template}: B's ids are told apart from ids of nobody"
                );
            }
            walked += 1;
        }
    }
    assert!(walked >= 40, "walked only {walked} routes");
    // And nothing of B changed.
    let after = app.get(&format!("/api/v1/artifacts/{art}")).await;
    assert_eq!(after.body["status"], "in_review");
    assert_eq!(after.body["version"], 1);
    let link_now = app.store.get_review_link(link.id).await.unwrap();
    assert!(link_now.revoked_at.is_none());
    let j = app
        .get(&format!("/api/v1/journeys/{}", theirs.journey))
        .await;
    assert_eq!(j.body["state"], started.body["state"], "{}", j.body);
    let u = app
        .get(&format!("/api/v1/work/units/{}", theirs.unit))
        .await;
    assert_eq!(
        u.body["status"], unit_after_setup.body["status"],
        "{}",
        u.body
    );
    let i = app.get("/api/v1/work/incidents").await;
    assert!(
        i.body.to_string().contains(&theirs.incident),
        "the incident is still open: {}",
        i.body
    );
}
