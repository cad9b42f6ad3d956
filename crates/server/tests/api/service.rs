use serde_json::Value;

use crate::helpers::TestApp;

crate::both_backends!(
    trace_ids_on_every_response,
    health_readiness_metrics_version,
    openapi_describes_every_route,
    list_cursors_are_documented_as_the_server_reads_them,
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
    assert!(paths.len() >= 60, "{} paths", paths.len());

    // Every path of the document, with every method, asked without a token
    // (nothing is changed): a documented method is served (the token check,
    // or the answer of a public route, never "no route" or 405); an
    // undocumented one is 405.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    for (path, item) in paths {
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x0" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            let documented = item.get(method).is_some();
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = http.request(m, format!("{}{concrete}", app.base));
            if method != "get" {
                req = req.json(&serde_json::json!({}));
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            let no_route = status == 404 && body.contains("no route");
            if documented {
                assert!(
                    !no_route && status != 405,
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is served but not documented: {body}"
                );
            }
            // Every refusal is a problem, documented with its status.
            if status >= 400 {
                assert!(
                    body.contains("\"code\""),
                    "{method} {path}: {status} {body}"
                );
                if documented {
                    let op = &item[method];
                    assert!(
                        op["responses"][status.to_string()]["content"]["application/problem+json"]
                            .is_object(),
                        "{method} {path} answers {status}, which its document does not list as a problem"
                    );
                }
            }
        }
    }
    // Each create links to the operations that take the record it made:
    // every link names an operation of the document, with an `{id}` in its
    // path filled from the answer's `id`.
    let mut links = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            for response in responses.values() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationRef"].as_str().unwrap();
                    let pointer = target.trim_start_matches('#');
                    let op = doc.pointer(pointer).unwrap_or_else(|| {
                        panic!("{method} {path}: link {name} names {target}, which is not here")
                    });
                    assert!(op["responses"].is_object(), "{target}");
                    assert!(pointer.contains("{id}"), "{target}");
                    assert_eq!(link["parameters"]["id"], "$response.body#/id");
                    assert!(
                        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                        "{name}"
                    );
                }
            }
        }
    }
    assert!(links >= 40, "{links} links");
    assert!(
        doc["paths"]["/api/v1/artifacts"]["post"]["responses"]["201"]["links"]
            ["put_artifacts_id_content"]
            .is_object()
    );
    assert!(
        doc["paths"]["/api/v1/artifacts"]["get"]["responses"]["503"]["headers"]["Retry-After"]
            .is_object()
    );

    // Served beside the document, deliberately: the document, its page, metrics.
    for path in ["/api/openapi.json", "/api/docs/", "/metrics"] {
        let res = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
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

async fn list_cursors_are_documented_as_the_server_reads_them(app: TestApp) {
    // Every list's `cursor` says what it is (an id type or a sequence
    // number); a cursor of that form, and an empty one (the first page), are
    // read, not refused.
    let doc = serde_json::to_value(waymark_server::openapi_document()).unwrap();
    let pattern_of = |schema: &Value| -> String {
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        schema["pattern"].as_str().unwrap_or_default().to_owned()
    };
    let mut lists = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(params) = item["get"]["parameters"].as_array() else {
            continue;
        };
        let Some(cursor) = params.iter().find(|p| p["name"] == "cursor") else {
            continue;
        };
        let pattern = pattern_of(&cursor["schema"]);
        assert!(!pattern.is_empty(), "GET {path}: the cursor has no form");
        if path.contains('{') {
            continue;
        }
        lists += 1;
        // A well-formed cursor: a number, or an id of the list's type (its
        // prefix, then 32 hex digits).
        let well_formed = if pattern.contains("[0-9]{1,18}") {
            "7".to_owned()
        } else {
            let prefix = pattern.trim_start_matches('^').split('_').next().unwrap();
            format!("{prefix}_0193a0b2c3d4e5f60718293a4b5c6d7e")
        };
        // A required parameter (a search's `q`) is given a value.
        let required: String = params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| format!("{}=waymark&", p["name"].as_str().unwrap()))
            .collect();
        for c in ["", well_formed.as_str()] {
            let res = app.get(&format!("{path}?{required}cursor={c}")).await;
            assert_eq!(res.status, 200, "GET {path}?cursor={c}: {}", res.body);
        }
    }
    assert!(lists >= 10, "{lists} lists");
}

/// The document as served, kept in `snapshots/`: a change to the contract
/// shows in review (`cargo insta review`, or `INSTA_UPDATE=always` to accept).
#[test]
fn the_openapi_document_is_as_snapshotted() {
    let doc = serde_json::to_value(waymark_server::openapi_document()).unwrap();
    insta::assert_json_snapshot!("openapi", doc, {".info.version" => "[version]"});
}
