//! `Idempotency-Key` on every creating request: the same key with the same
//! request answers what the first answered and creates nothing more; the same
//! key with another request is refused with 422.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::both_backends!(every_creating_request_takes_an_idempotency_key);

/// Sends `body` to `path` with `key`; answers the status and body.
async fn post_keyed(app: &TestApp, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let a = app
        .call(
            Method::POST,
            path,
            Some(body.clone()),
            &[("Idempotency-Key", key)],
        )
        .await;
    (a.status.as_u16(), a.body)
}

/// The first request, its replay (the same answer, field for field where it
/// names the record), and the key reused with `other` (422, nothing made).
async fn replays(app: &TestApp, path: &str, body: Value, other: Value, id_field: &str) -> Value {
    let key = format!("key-{}", path.replace('/', "-"));
    let (status, first) = post_keyed(app, path, &key, &body).await;
    assert!(status == 200 || status == 201, "{path}: {status} {first}");
    let (again_status, again) = post_keyed(app, path, &key, &body).await;
    assert_eq!(
        again_status, status,
        "{path}: the replay answers as the first did"
    );
    assert_eq!(
        again[id_field], first[id_field],
        "{path}: {again} vs {first}"
    );
    let (reused, problem) = post_keyed(app, path, &key, &other).await;
    assert_eq!(reused, 422, "{path}: {problem}");
    assert_eq!(problem["code"], "idempotency_key_reused", "{path}");
    first
}

async fn every_creating_request_takes_an_idempotency_key(app: TestApp) {
    let client = replays(
        &app,
        "/api/v1/clients",
        json!({"name": "Acme"}),
        json!({"name": "Globex"}),
        "id",
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let eng = replays(
        &app,
        "/api/v1/engagements",
        json!({"client_id": client, "name": "Launch", "pack": "marketing-engagement"}),
        json!({"client_id": client, "name": "Relaunch", "pack": "marketing-engagement"}),
        "id",
    )
    .await;
    assert!(eng["id"].is_string());
    let art = replays(
        &app,
        "/api/v1/artifacts",
        json!({"client_id": client, "type": "sop", "title": "SOP", "content": {"steps": []}}),
        json!({"client_id": client, "type": "sop", "title": "Other", "content": {}}),
        "id",
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = replays(
        &app,
        "/api/v1/users",
        json!({"email": "ana@acme.example", "name": "Ana", "role": "client", "client_id": client}),
        json!({"email": "bo@acme.example", "name": "Bo", "role": "client", "client_id": client}),
        "id",
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A token's secret is answered again, the same (it is derived, not kept).
    let token = replays(
        &app,
        "/api/v1/tokens",
        json!({"name": "ana laptop", "user_id": user}),
        json!({"name": "ana phone", "user_id": user}),
        "token",
    )
    .await;
    assert!(token["token"].as_str().unwrap().starts_with("wm_"));
    let who = app
        .call_as(
            Some(token["token"].as_str().unwrap()),
            Method::GET,
            "/api/v1/clients",
            None,
        )
        .await;
    assert_eq!(
        who.status, 200,
        "the replayed secret is the token's: {}",
        who.body
    );
    let hook = replays(
        &app,
        "/api/v1/webhooks",
        json!({"url": "https://hooks.example/a", "event_types": ["client.created"]}),
        json!({"url": "https://hooks.example/b"}),
        "id",
    )
    .await;
    assert!(hook["secret"].is_string());
    replays(
        &app,
        &format!("/api/v1/artifacts/{art}/comments"),
        json!({"body": "Looks good"}),
        json!({"body": "Looks bad"}),
        "id",
    )
    .await;
    replays(
        &app,
        &format!("/api/v1/artifacts/{art}/review-links"),
        json!({"reviewer_email": "cfo@acme.example", "reviewer_name": "Dana"}),
        json!({"reviewer_email": "ceo@acme.example", "reviewer_name": "Eli"}),
        "id",
    )
    .await;
    replays(
        &app,
        "/api/v1/agents",
        json!({"id": "sync-agent", "capabilities": ["sync"]}),
        json!({"id": "sync-agent", "capabilities": ["other"]}),
        "id",
    )
    .await;
    replays(
        &app,
        "/api/v1/journey-templates",
        json!({"name": "quick", "title": "Quick", "stages": [{"id": "a", "name": "A"}]}),
        json!({"name": "quicker", "title": "Quicker", "stages": [{"id": "a", "name": "A"}]}),
        "name",
    )
    .await;
    let journey = replays(
        &app,
        "/api/v1/journeys",
        json!({"client_id": client, "template": "quick"}),
        json!({"client_id": client, "template": "client-onboarding"}),
        "id",
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let metrics = replays(
        &app,
        &format!("/api/v1/journeys/{journey}/metrics"),
        json!({"observations": [{"name": "score", "value": 4.0}]}),
        json!({"observations": [{"name": "score", "value": 5.0}]}),
        "recorded",
    )
    .await;
    assert_eq!(metrics["recorded"].as_array().unwrap().len(), 1);
    replays(
        &app,
        &format!("/api/v1/journeys/{journey}/signoffs"),
        json!({"name": "kickoff"}),
        json!({"name": "handover"}),
        "name",
    )
    .await;
    replays(
        &app,
        "/api/v1/work/units",
        json!({"client_id": client, "name": "u", "tasks": [{"key": "a", "executor": "human"}]}),
        json!({"client_id": client, "name": "v", "tasks": [{"key": "a", "executor": "human"}]}),
        "id",
    )
    .await;
    // Exactly one of each was made.
    let clients = app.get("/api/v1/clients").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(clients, 1);
    let comments = app.get(&format!("/api/v1/artifacts/{art}/comments")).await;
    assert_eq!(comments.body["items"].as_array().unwrap().len(), 1);
    let units = app.get("/api/v1/work/units").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(units, 1);
}
