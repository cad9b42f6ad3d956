use reqwest::Method;
use serde_json::json;
use sha2::Digest;

use crate::helpers::TestApp;

crate::both_backends!(
    versioned_artifact_walkthrough,
    stale_if_match_is_refused_and_changes_nothing,
    illegal_transition_lists_allowed,
    approved_content_is_not_editable,
    hash_is_canonical_whatever_the_key_order,
    idempotency_key_replays_creates,
    lists_filter_and_paginate,
    clients_and_engagements,
);

async fn versioned_artifact_walkthrough(app: TestApp) {
    let client = app.client("Acme Insurance").await;
    let eng = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Q3 retainer", "pack": "marketing-engagement"}),
        )
        .await;
    assert_eq!(eng.status, 201, "{}", eng.body);
    let eng = eng.body["id"].as_str().unwrap().to_owned();
    assert!(eng.starts_with("eng_"));

    let created = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "strategy", "title": "Growth strategy",
                   "content": {"goals": ["awareness"], "budget": 1000}, "note": "first cut"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag(), "\"1\"");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["status"], "draft");
    assert_eq!(created.body["warnings"], json!([]));
    // Outside an engagement an artifact is a free-form document: no pack schema.
    assert_eq!(created.body["engagement_id"], serde_json::Value::Null);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("art_"));

    // Three more versions.
    let contents = [
        json!({"goals": ["awareness", "leads"], "budget": 1000}),
        json!({"goals": ["leads"], "budget": 1500}),
        json!({"goals": ["leads"], "budget": 2000, "channels": ["email"]}),
    ];
    for (i, c) in contents.iter().enumerate() {
        let v = i as i64 + 1;
        let a = app
            .put_content(
                &id,
                &format!("\"{v}\""),
                json!({"content": c, "note": format!("edit {v}")}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["version"], v + 1);
        assert_eq!(a.etag(), format!("\"{}\"", v + 1));
        assert_eq!(a.body["content"], *c);
    }
    let got = app.get(&format!("/api/v1/artifacts/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.etag(), "\"4\"");
    assert_eq!(got.body["content"], contents[2]);

    let versions = app.get(&format!("/api/v1/artifacts/{id}/versions")).await;
    let nums: Vec<i64> = versions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(nums, vec![1, 2, 3, 4]);
    let v2 = app.get(&format!("/api/v1/artifacts/{id}/versions/2")).await;
    assert_eq!(v2.body["content"], contents[0]);
    assert_eq!(v2.body["note"], "edit 1");

    // Diff 1 -> 4 is a JSON Patch that turns v1 into v4.
    let diff = app
        .get(&format!("/api/v1/artifacts/{id}/diff?from=1&to=4"))
        .await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert_eq!(diff.body["from"], 1);
    assert_eq!(diff.body["to"], 4);
    let v1 = app
        .get(&format!("/api/v1/artifacts/{id}/versions/1"))
        .await
        .body["content"]
        .clone();
    let patched = waymark_domain::content::apply(&v1, &diff.body["patch"]).unwrap();
    assert_eq!(patched, contents[2]);
    let default_diff = app.get(&format!("/api/v1/artifacts/{id}/diff")).await;
    assert_eq!(
        (
            default_diff.body["from"].as_i64(),
            default_diff.body["to"].as_i64()
        ),
        (Some(3), Some(4))
    );

    // Roll back to version 2: a new version 5 with v2's content.
    let rb = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{id}/rollback"),
            Some(json!({"to_version": 2})),
            &[("If-Match", "\"4\"")],
        )
        .await;
    assert_eq!(rb.status, 200, "{}", rb.body);
    assert_eq!(rb.body["version"], 5);
    assert_eq!(rb.body["content"], contents[0]);
    assert_eq!(rb.body["content_hash"], v2.body["content_hash"]);

    // draft -> in_review -> approved (the admin overriding the approval
    // policy, with a reason).
    for to in ["in_review", "approved"] {
        let t = app
            .post(
                &format!("/api/v1/artifacts/{id}/transitions"),
                json!({"to": to, "reason": "looks good", "override": to == "approved"}),
            )
            .await;
        assert_eq!(t.status, 200, "{}", t.body);
        assert_eq!(t.body["status"], to);
    }
    let history = app.get(&format!("/api/v1/artifacts/{id}/history")).await;
    let actions: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "created",
            "content_updated",
            "content_updated",
            "content_updated",
            "rolled_back",
            "transition",
            "approval_overridden"
        ]
    );
    let last = &history.body["items"][6];
    assert_eq!(last["from_status"], "in_review");
    assert_eq!(last["to_status"], "approved");
    assert_eq!(last["reason"], "looks good");
    assert_eq!(last["trace_id"].as_str().unwrap().len(), 32);
    assert!(last["actor"].as_str().unwrap().starts_with("tok_"));
}

async fn stale_if_match_is_refused_and_changes_nothing(app: TestApp) {
    let client = app.client("A").await;
    let id = app.artifact(&client, "plan", json!({"n": 1})).await;
    assert_eq!(
        app.put_content(&id, "\"1\"", json!({"content": {"n": 2}}))
            .await
            .status,
        200
    );
    let before = app.footprint().await;

    let stale = app
        .put_content(&id, "\"1\"", json!({"content": {"n": "lost"}}))
        .await;
    stale.assert_problem(412, "version_mismatch");
    assert_eq!(stale.body["current_version"], 2);
    let missing = app
        .call(
            Method::PUT,
            &format!("/api/v1/artifacts/{id}/content"),
            Some(json!({"content": {"n": 3}})),
            &[],
        )
        .await;
    missing.assert_problem(428, "if_match_required");
    let garbage = app
        .put_content(&id, "soon", json!({"content": {"n": 3}}))
        .await;
    garbage.assert_problem(400, "invalid_if_match");
    let rb = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{id}/rollback"),
            Some(json!({"to_version": 1})),
            &[("If-Match", "\"1\"")],
        )
        .await;
    rb.assert_problem(412, "version_mismatch");
    let rb = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{id}/rollback"),
            Some(json!({"to_version": 1})),
            &[],
        )
        .await;
    rb.assert_problem(428, "if_match_required");

    let got = app.get(&format!("/api/v1/artifacts/{id}")).await;
    assert_eq!(got.body["version"], 2);
    assert_eq!(got.body["content"], json!({"n": 2}));
    assert_eq!(app.footprint().await, before);
}

async fn illegal_transition_lists_allowed(app: TestApp) {
    let client = app.client("A").await;
    let id = app.artifact(&client, "plan", json!({})).await;
    let before = app.footprint().await;
    let refused = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "approved"}),
        )
        .await;
    refused.assert_problem(409, "illegal_transition");
    assert_eq!(
        refused.body["allowed"],
        json!(["in_review", "cancelled", "archived"])
    );
    assert_eq!(refused.body["from"], "draft");
    assert_eq!(refused.body["to"], "approved");
    let stale = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "stale"}),
        )
        .await;
    stale.assert_problem(409, "illegal_transition");
    let unknown = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "done"}),
        )
        .await;
    unknown.assert_problem(422, "invalid");
    assert_eq!(unknown.body["errors"][0]["pointer"], "/to");
    assert_eq!(app.footprint().await, before);
    assert_eq!(
        app.get(&format!("/api/v1/artifacts/{id}")).await.body["status"],
        "draft"
    );
}

async fn approved_content_is_not_editable(app: TestApp) {
    let client = app.client("A").await;
    let id = app.artifact(&client, "sop", json!({"steps": 1})).await;
    for to in ["in_review", "approved"] {
        assert_eq!(
            app.post(
                &format!("/api/v1/artifacts/{id}/transitions"),
                crate::helpers::transition_body(to)
            )
            .await
            .status,
            200
        );
    }
    let before = app.footprint().await;
    let refused = app
        .put_content(&id, "\"1\"", json!({"content": {"steps": 2}}))
        .await;
    refused.assert_problem(409, "not_editable");
    assert_eq!(refused.body["artifact_status"], "approved");
    assert!(refused.body["detail"].as_str().unwrap().contains("draft"));
    let rb = app
        .call(
            Method::POST,
            &format!("/api/v1/artifacts/{id}/rollback"),
            Some(json!({"to_version": 1})),
            &[("If-Match", "\"1\"")],
        )
        .await;
    rb.assert_problem(409, "not_editable");
    assert_eq!(app.footprint().await, before);

    // Reopening to draft is the explicit path.
    assert_eq!(
        app.post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "draft", "reason": "changes"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.put_content(&id, "\"1\"", json!({"content": {"steps": 2}}))
            .await
            .status,
        200
    );
}

async fn hash_is_canonical_whatever_the_key_order(app: TestApp) {
    let client = app.client("A").await;
    let a = app
        .artifact(
            &client,
            "intake",
            serde_json::from_str(r#"{"z": 1, "a": {"y": [1.0, "é"], "b": null}}"#).unwrap(),
        )
        .await;
    let b = app
        .artifact(
            &client,
            "intake",
            serde_json::from_str(r#"{"a": {"b": null, "y": [1, "\u00e9"]}, "z": 1}"#).unwrap(),
        )
        .await;
    let ha = app.get(&format!("/api/v1/artifacts/{a}")).await.body["content_hash"].clone();
    let hb = app.get(&format!("/api/v1/artifacts/{b}")).await.body["content_hash"].clone();
    assert_eq!(ha, hb);
    // The same value on every backend: SHA-256 of the RFC 8785 form.
    let canonical = r#"{"a":{"b":null,"y":[1,"é"]},"z":1}"#;
    let expected = sha2::Sha256::digest(canonical.as_bytes());
    let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ha, expected);
}

async fn idempotency_key_replays_creates(app: TestApp) {
    let client = app.client("A").await;
    let body = json!({"client_id": client, "type": "plan", "title": "Once", "content": {}});
    let first = app
        .call(
            Method::POST,
            "/api/v1/artifacts",
            Some(body.clone()),
            &[("Idempotency-Key", "abc-1")],
        )
        .await;
    assert_eq!(first.status, 201);
    let again = app
        .call(
            Method::POST,
            "/api/v1/artifacts",
            Some(body.clone()),
            &[("Idempotency-Key", "abc-1")],
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], first.body["id"]);
    let other = json!({"client_id": client, "type": "plan", "title": "Twice", "content": {}});
    let reused = app
        .call(
            Method::POST,
            "/api/v1/artifacts",
            Some(other),
            &[("Idempotency-Key", "abc-1")],
        )
        .await;
    reused.assert_problem(422, "idempotency_key_reused");
    assert_eq!(
        app.get("/api/v1/artifacts").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn lists_filter_and_paginate(app: TestApp) {
    let a = app.client("A").await;
    let b = app.client("B").await;
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(
            app.artifact(
                &a,
                if i % 2 == 0 { "intake" } else { "strategy" },
                json!({"i": i}),
            )
            .await,
        );
    }
    app.artifact(&b, "intake", json!({})).await;
    let mut seen = vec![];
    let mut url = format!("/api/v1/artifacts?client_id={a}&limit=2");
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        assert!(
            items.iter().all(|i| i.get("content").is_none()),
            "lists carry no content"
        );
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/artifacts?client_id={a}&limit=2&cursor={c}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let intakes = app
        .get(&format!("/api/v1/artifacts?client_id={a}&type=intake"))
        .await;
    assert_eq!(intakes.body["items"].as_array().unwrap().len(), 3);
    let drafts = app.get("/api/v1/artifacts?status=draft").await;
    assert_eq!(drafts.body["items"].as_array().unwrap().len(), 6);
    let none = app.get("/api/v1/artifacts?status=approved").await;
    assert!(none.body["items"].as_array().unwrap().is_empty());
    let q = app.get("/api/v1/artifacts?q=STRATEGY%20doc").await;
    assert_eq!(q.body["items"].as_array().unwrap().len(), 2);
    app.get("/api/v1/artifacts?status=nope")
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/artifacts?limit=0")
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/artifacts?limit=abc")
        .await
        .assert_problem(400, "invalid_query");
    app.get(&format!("/api/v1/artifacts?client_id={}", ids[0]))
        .await
        .assert_problem(400, "invalid_query");
    app.get("/api/v1/artifacts?cursor=zzz")
        .await
        .assert_problem(422, "invalid");
}

async fn clients_and_engagements(app: TestApp) {
    let c = app
        .post("/api/v1/clients", json!({"name": "Globex", "arr": 250000, "renewal_date": "2027-01-31", "health_score": 81, "owner": "ana", "attributes": {"region": "emea"}}))
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["renewal_date"], "2027-01-31");
    let id = c.body["id"].as_str().unwrap().to_owned();
    let patched = app
        .call(
            Method::PATCH,
            &format!("/api/v1/clients/{id}"),
            Some(json!({"owner": null, "risk_score": 12.5})),
            &[],
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["owner"], serde_json::Value::Null);
    assert_eq!(patched.body["risk_score"], 12.5);
    assert_eq!(patched.body["arr"], 250000.0);
    app.call(
        Method::PATCH,
        &format!("/api/v1/clients/{id}"),
        Some(json!({"health_score": 101})),
        &[],
    )
    .await
    .assert_problem(422, "invalid");
    app.post(
        "/api/v1/clients",
        json!({"name": "X", "renewal_date": "31/01/2027"}),
    )
    .await
    .assert_problem(422, "invalid");
    assert_eq!(
        app.get(&format!("/api/v1/clients/{id}")).await.body["health_score"],
        81.0
    );

    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": id, "name": "Onboarding", "pack": "client-onboarding"}),
        )
        .await;
    assert_eq!(e.status, 201);
    let eid = e.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/engagements/{eid}")).await.body["pack"],
        "client-onboarding"
    );
    let list = app
        .get(&format!("/api/v1/engagements?client_id={id}"))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let clients = app.get("/api/v1/clients").await;
    assert_eq!(clients.body["items"][0]["id"], id.as_str());
    app.post(
        "/api/v1/engagements",
        json!({"client_id": id, "name": "X", "pack": "Bad Pack"}),
    )
    .await
    .assert_problem(422, "invalid");
}
