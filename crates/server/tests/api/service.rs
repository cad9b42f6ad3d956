use serde_json::Value;

use crate::helpers::TestApp;

crate::both_backends!(
    trace_ids_on_every_response,
    health_readiness_metrics_version,
    openapi_describes_every_route,
);

async fn trace_ids_on_every_response(app: TestApp) {
    let incoming = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .http
        .get(format!("{}/api/v1/clients", app.base))
        .bearer_auth(&app.token)
        .header("traceparent", format!("00-{incoming}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-trace-id"], incoming);

    // Errors carry one too, a fresh one without (or with a bad) traceparent.
    let res = app
        .http
        .get(format!("{}/api/v1/nowhere", app.base))
        .send()
        .await
        .unwrap();
    let fresh = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, incoming);
    let res = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("traceparent", format!("ff-{incoming}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-trace-id"], incoming);
    // Two traceparent headers: ignored, a new trace starts.
    let res = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("traceparent", format!("00-{incoming}-00f067aa0ba902b7-01"))
        .header(
            "traceparent",
            "00-12345678901234567890123456789012-1234567890123456-01",
        )
        .send()
        .await
        .unwrap();
    let t = res.headers()["x-trace-id"].to_str().unwrap();
    assert!(t != incoming && t != "12345678901234567890123456789012");

    // The trace id is recorded with the write it caused.
    let client = app.client("A").await;
    let res = app
        .http
        .post(format!("{}/api/v1/artifacts", app.base))
        .bearer_auth(&app.token)
        .header("traceparent", format!("00-{incoming}-00f067aa0ba902b7-01"))
        .json(
            &serde_json::json!({"client_id": client, "type": "plan", "title": "t", "content": {}}),
        )
        .send()
        .await
        .unwrap();
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.get(&format!("/api/v1/artifacts/{id}/history")).await;
    assert_eq!(h.body["items"][0]["trace_id"], incoming);
}

async fn health_readiness_metrics_version(app: TestApp) {
    let h = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = TestApp::answer(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["database"], "ok");
    assert!(matches!(
        r.body["backend"].as_str(),
        Some("sqlite") | Some("postgres")
    ));

    let v = app.get("/api/v1/version").await;
    assert_eq!(v.body["version"], "0.0.0-test");
    assert_eq!(v.body["git_sha"], "testsha");
    assert!(v.body["build_time"].is_string());

    app.client("A").await;
    let m = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    assert!(text.contains("waymark_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/clients\""), "{text}");
    assert!(
        text.contains("waymark_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("waymark_db_pool_connections"), "{text}");

    // After the database goes away, readiness says so.
    app.store.close().await;
    let r = TestApp::answer(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 503);
    let res = app.get("/api/v1/clients").await;
    res.assert_problem(503, "unavailable");
}

async fn openapi_describes_every_route(app: TestApp) {
    let doc = app
        .http
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    let doc: Value = doc.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/version", vec!["get"]),
        ("/api/v1/clients", vec!["get", "post"]),
        ("/api/v1/clients/{id}", vec!["get", "patch"]),
        ("/api/v1/engagements", vec!["get", "post"]),
        ("/api/v1/engagements/{id}", vec!["get"]),
        ("/api/v1/artifacts", vec!["get", "post"]),
        ("/api/v1/artifacts/{id}", vec!["get"]),
        ("/api/v1/artifacts/{id}/content", vec!["put"]),
        ("/api/v1/artifacts/{id}/versions", vec!["get"]),
        ("/api/v1/artifacts/{id}/versions/{n}", vec!["get"]),
        ("/api/v1/artifacts/{id}/diff", vec!["get"]),
        ("/api/v1/artifacts/{id}/rollback", vec!["post"]),
        ("/api/v1/artifacts/{id}/transitions", vec!["post"]),
        ("/api/v1/artifacts/{id}/history", vec!["get"]),
        ("/healthz", vec!["get"]),
        ("/readyz", vec!["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(m)).is_some(),
                "{m} {path} missing from the OpenAPI document"
            );
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let docs = app
        .http
        .get(format!("{}/api/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
}
