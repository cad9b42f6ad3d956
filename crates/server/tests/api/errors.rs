use reqwest::Method;
use serde_json::json;
use waymark_domain::{ArtifactId, ClientId};
use waymark_server::HttpSettings;

use crate::helpers::{Backend, TestApp, spawn_app_with};

crate::both_backends!(
    every_error_is_a_problem_and_writes_nothing,
    tokens_are_required,
    ids_of_another_kind_and_missing_records,
    long_uris_and_unparseable_requests_are_problems,
    error_bodies_are_as_snapshotted,
    integers_written_as_floats_are_integers,
);

async fn integers_written_as_floats_are_integers(app: TestApp) {
    // `2.0` is an integer to JSON Schema, so to the API; `1.5` is not.
    let client = app.client("A").await;
    let id = app.artifact(&client, "plan", json!({"n": 1})).await;
    let v2 = app
        .put_content(&id, "\"1\"", json!({"content": {"n": 2}}))
        .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    let rollback = |to: serde_json::Value| {
        let (app, id) = (&app, id.clone());
        async move {
            app.call(
                Method::POST,
                &format!("/api/v1/artifacts/{id}/rollback"),
                Some(json!({"to_version": to})),
                &[("If-Match", "\"2\"")],
            )
            .await
        }
    };
    let half = rollback(json!(1.5)).await;
    half.assert_problem(422, "invalid");
    assert_eq!(
        half.body["errors"][0]["pointer"], "/to_version",
        "{}",
        half.body
    );
    let whole = rollback(json!(1.0)).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(whole.body["version"], 3);
    assert_eq!(whole.body["content"], json!({"n": 1}));
}

async fn every_error_is_a_problem_and_writes_nothing(app: TestApp) {
    let client = app.client("A").await;
    let id = app.artifact(&client, "plan", json!({"a": 1})).await;
    let before = app.footprint().await;

    app.get("/api/v1/nowhere")
        .await
        .assert_problem(404, "not_found");
    app.get("/nothing/here")
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, "/api/v1/artifacts", None, &[])
        .await
        .assert_problem(405, "method_not_allowed");
    app.call(
        Method::PATCH,
        &format!("/api/v1/artifacts/{id}"),
        Some(json!({})),
        &[],
    )
    .await
    .assert_problem(405, "method_not_allowed");

    // Malformed JSON.
    let res = app
        .http
        .post(format!("{}/api/v1/artifacts", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"client_id\": ")
        .send()
        .await
        .unwrap();
    TestApp::answer(res)
        .await
        .assert_problem(400, "malformed_json");
    // Not JSON at all.
    let res = app
        .http
        .post(format!("{}/api/v1/artifacts", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    TestApp::answer(res)
        .await
        .assert_problem(415, "unsupported_media_type");

    // Unknown field.
    let unknown = app
        .post("/api/v1/artifacts", json!({"client_id": client, "type": "plan", "title": "t", "content": {}, "colour": "red"}))
        .await;
    unknown.assert_problem(422, "invalid");
    assert!(
        unknown.body["detail"].as_str().unwrap().contains("colour"),
        "{}",
        unknown.body
    );
    // Wrong types, with the field named.
    let wrong = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "plan", "title": 5, "content": {}}),
        )
        .await;
    wrong.assert_problem(422, "invalid");
    assert_eq!(wrong.body["errors"][0]["pointer"], "/title");
    let wrong = app
        .post("/api/v1/artifacts", json!({"client_id": client, "type": "plan", "title": "t", "content": {}, "sources": [{"artifact_id": id, "version": "one"}]}))
        .await;
    wrong.assert_problem(422, "invalid");
    assert_eq!(wrong.body["errors"][0]["pointer"], "/sources/0/version");
    let not_object = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "plan", "title": "t", "content": [1, 2]}),
        )
        .await;
    not_object.assert_problem(422, "invalid");
    assert_eq!(not_object.body["errors"][0]["pointer"], "/content");
    let bad_type = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "Plan!", "title": "t", "content": {}}),
        )
        .await;
    assert_eq!(bad_type.body["errors"][0]["pointer"], "/type");
    let empty_title = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "plan", "title": "  ", "content": {}}),
        )
        .await;
    assert_eq!(empty_title.body["errors"][0]["pointer"], "/title");
    let missing = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "plan"}),
        )
        .await;
    missing.assert_problem(422, "invalid");
    let put_wrong = app
        .put_content(&id, "\"1\"", json!({"content": "text"}))
        .await;
    put_wrong.assert_problem(422, "invalid");
    let rb_wrong = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{id}/rollback"),
            Some(json!({"to_version": 9})),
            &[("If-Match", "\"1\"")],
        )
        .await;
    rb_wrong.assert_problem(422, "invalid");
    assert_eq!(rb_wrong.body["errors"][0]["pointer"], "/to_version");
    let self_source = app
        .put_content(
            &id,
            "\"1\"",
            json!({"content": {}, "sources": [{"artifact_id": id, "version": 1}]}),
        )
        .await;
    self_source.assert_problem(422, "invalid");

    assert_eq!(
        app.footprint().await,
        before,
        "refused requests wrote nothing"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_sqlite() {
    oversized_bodies_get_413(Backend::Sqlite).await;
}

#[tokio::test]
async fn oversized_bodies_get_413_postgres() {
    oversized_bodies_get_413(Backend::Postgres).await;
}

async fn oversized_bodies_get_413(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        HttpSettings {
            body_limit: 4096,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let client = app.client("A").await;
    let big = "x".repeat(8192);
    let res = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "plan", "title": "t", "content": {"text": big}}),
        )
        .await;
    res.assert_problem(413, "payload_too_large");
    assert!(res.body["detail"].as_str().unwrap().contains("4096"));
    // Without a Content-Length (chunked), too.
    let chunks = vec![
        Ok::<_, std::io::Error>(format!(
            "{{\"client_id\":\"{client}\",\"type\":\"plan\",\"title\":\"t\",\"content\":{{\"t\":\""
        )),
        Ok(big),
        Ok("\"}}".into()),
    ];
    let res = app
        .http
        .post(format!("{}/api/v1/artifacts", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    TestApp::answer(res)
        .await
        .assert_problem(413, "payload_too_large");
    assert!(
        app.get("/api/v1/artifacts").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn futures_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::iter(items)
}

async fn tokens_are_required(app: TestApp) {
    let res = app
        .http
        .get(format!("{}/api/v1/clients", app.base))
        .send()
        .await
        .unwrap();
    let a = TestApp::answer(res).await;
    a.assert_problem(401, "unauthorized");
    assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    let res = app
        .http
        .post(format!("{}/api/v1/clients", app.base))
        .bearer_auth("wm_nope")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    TestApp::answer(res)
        .await
        .assert_problem(401, "unauthorized");
    let res = app
        .http
        .get(format!("{}/api/v1/version", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    TestApp::answer(res)
        .await
        .assert_problem(401, "unauthorized");
    assert!(
        app.get("/api/v1/clients").await.body["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
    // Service endpoints are open.
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn ids_of_another_kind_and_missing_records(app: TestApp) {
    let client = app.client("A").await;
    let id = app.artifact(&client, "plan", json!({})).await;
    let missing_art = ArtifactId::new();
    app.get(&format!("/api/v1/artifacts/{missing_art}"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/artifacts/{missing_art}/versions"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/artifacts/{missing_art}/history"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/artifacts/{id}/versions/7"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/artifacts/{id}/versions/zero"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/artifacts/{id}/diff?from=1&to=3"))
        .await
        .assert_problem(404, "not_found");
    app.post(
        &format!("/api/v1/artifacts/{missing_art}/transitions"),
        json!({"to": "in_review"}),
    )
    .await
    .assert_problem(404, "not_found");
    app.put_content(&missing_art.to_string(), "\"1\"", json!({"content": {}}))
        .await
        .assert_problem(404, "not_found");

    let wrong_kind = app.get(&format!("/api/v1/artifacts/{client}")).await;
    wrong_kind.assert_problem(404, "not_found");
    assert!(
        wrong_kind.body["detail"]
            .as_str()
            .unwrap()
            .contains("client id"),
        "{}",
        wrong_kind.body
    );
    app.get(&format!("/api/v1/clients/{id}"))
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/clients/cli_123")
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/engagements/{client}"))
        .await
        .assert_problem(404, "not_found");

    let body_kind = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": id, "type": "plan", "title": "t", "content": {}}),
        )
        .await;
    body_kind.assert_problem(422, "invalid");
    assert_eq!(body_kind.body["errors"][0]["pointer"], "/client_id");
    let unknown_client = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": ClientId::new(), "type": "plan", "title": "t", "content": {}}),
        )
        .await;
    unknown_client.assert_problem(422, "invalid");
    assert_eq!(unknown_client.body["errors"][0]["pointer"], "/client_id");
    let source_missing = app
        .post("/api/v1/artifacts", json!({"client_id": client, "type": "plan", "title": "t", "content": {}, "sources": [{"artifact_id": missing_art, "version": 1}]}))
        .await;
    source_missing.assert_problem(422, "invalid");
    assert_eq!(source_missing.body["errors"][0]["pointer"], "/sources/0");
    assert_eq!(
        app.get("/api/v1/artifacts").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Sends `raw` on a new connection; answers the status and the parsed body.
async fn raw_request(app: &TestApp, raw: &[u8]) -> (u16, String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, head.to_lowercase(), body)
}

async fn long_uris_and_unparseable_requests_are_problems(app: TestApp) {
    let before = app.footprint().await;
    // Over the API's limit: the router answers.
    app.get(&format!("/api/v1/artifacts/art_{}", "0".repeat(10_000)))
        .await
        .assert_problem(414, "uri_too_long");
    app.get(&format!("/api/v1/artifacts?cursor={}", "c".repeat(10_000)))
        .await
        .assert_problem(414, "uri_too_long");
    // Over what HTTP parsing reads at all (a 100,000-byte request line, longer
    // than any client library will send): refused before the router, still a
    // problem.
    let line = format!(
        "GET /api/v1/artifacts?cursor={} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\r\n",
        "c".repeat(100_000),
        app.token
    );
    let (status, head, body) = raw_request(&app, line.as_bytes()).await;
    assert_eq!(status, 414, "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["code"], "uri_too_long", "{body}");
    let (status, head, body) = raw_request(&app, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(status, 400, "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert_eq!(body["code"], "malformed_request", "{body}");
    // A well-formed request on a new connection is served as ever.
    let (status, _, body) = raw_request(
        &app,
        format!(
            "GET /api/v1/clients HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            app.token
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.footprint().await, before, "nothing was written");
}

/// The problem bodies of the common refusals, kept in `snapshots/` (the same
/// on both backends): a change to what clients read shows in review.
async fn error_bodies_are_as_snapshotted(app: TestApp) {
    let client = app.client("Snap").await;
    let art = app.artifact(&client, "plan", json!({"a": 1})).await;
    let missing = ArtifactId::new().to_string();
    let raw = |method: Method, path: &str, body: &'static str, ctype: &'static str| {
        app.http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&app.token)
            .header("content-type", ctype)
            .body(body)
    };
    let mut bodies = serde_json::Map::new();
    let mut keep = |name: &str, a: crate::helpers::Answer| {
        let text = a
            .body
            .to_string()
            .replace(&client, "<client>")
            .replace(&art, "<artifact>")
            .replace(&missing, "<missing>");
        bodies.insert(name.into(), serde_json::from_str(&text).unwrap());
    };
    let send =
        |r: reqwest::RequestBuilder| async move { TestApp::answer(r.send().await.unwrap()).await };
    keep(
        "400 malformed JSON",
        send(raw(
            Method::POST,
            "/api/v1/clients",
            "{\"name\": ",
            "application/json",
        ))
        .await,
    );
    keep(
        "415 not JSON",
        send(raw(Method::POST, "/api/v1/clients", "name=x", "text/plain")).await,
    );
    keep(
        "422 missing field",
        app.post("/api/v1/clients", json!({})).await,
    );
    keep(
        "422 wrong type",
        app.post("/api/v1/clients", json!({"name": 7})).await,
    );
    keep("404 no route", app.get("/api/v1/nowhere").await);
    keep(
        "405 method",
        app.call(Method::DELETE, "/api/v1/artifacts", None, &[])
            .await,
    );
    keep(
        "401 no token",
        TestApp::answer(
            app.http
                .get(format!("{}/api/v1/clients", app.base))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    keep(
        "404 missing record",
        app.get(&format!("/api/v1/artifacts/{missing}")).await,
    );
    keep(
        "428 no If-Match",
        app.call(
            Method::PUT,
            &format!("/api/v1/artifacts/{art}/content"),
            Some(json!({"content": {"a": 2}})),
            &[],
        )
        .await,
    );
    keep(
        "412 stale If-Match",
        app.call(
            Method::PUT,
            &format!("/api/v1/artifacts/{art}/content"),
            Some(json!({"content": {"a": 2}})),
            &[("If-Match", "\"7\"")],
        )
        .await,
    );
    keep(
        "409 illegal transition",
        app.post(
            &format!("/api/v1/artifacts/{art}/transitions"),
            json!({"to": "implemented"}),
        )
        .await,
    );
    keep(
        "414 long URI",
        app.get(&format!("/api/v1/artifacts?cursor={}", "c".repeat(9_000)))
            .await,
    );
    insta::assert_json_snapshot!("error_bodies", bodies);
}
