//! Review over HTTP: a client user sees, comments on and approves what was
//! shared with their client and nothing else; review links reach one artifact;
//! review actions arrive on the event stream.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use waymark_server::auth::sign_link;
use waymark_store::{NewReviewLink, Role, WriteContext};

use crate::both_backends;
use crate::fixtures::{artifact_by, call_as, get_as, person, post_as};
use crate::helpers::TestApp;

both_backends!(
    a_client_user_reviews_what_was_shared_and_nothing_else,
    approval_binds_to_the_version_and_rejection_keeps_the_reason,
    only_an_admin_overrides_the_approval_policy_and_it_is_recorded,
    a_review_link_reaches_one_artifact_until_it_expires_or_is_revoked,
    review_actions_arrive_on_the_event_stream,
);

async fn a_client_user_reviews_what_was_shared_and_nothing_else(app: TestApp) {
    let a = app.client("Acme Insurance").await;
    let b = app.client("Beta Corp").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let ana = person(&app, "ana@acme.example", Role::Client, Some(&a)).await;
    let draft = artifact_by(&app, &op.token, &a, "Draft plan", false).await;
    let shared = artifact_by(&app, &op.token, &a, "Shared plan", true).await;
    let theirs = artifact_by(&app, &op.token, &b, "Beta plan", true).await;

    let list = get_as(&app, &ana.token, "/api/v1/artifacts").await;
    assert_eq!(list.status, 200);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [shared.as_str()]);
    let asked_for_b = get_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts?client_id={b}"),
    )
    .await;
    assert_eq!(asked_for_b.body["items"], json!([]));

    // A draft of their own client and another client's artifact answer exactly
    // as an artifact that does not exist.
    let missing = "art_0193a0b2c3d4e5f60718293a4b5c6d7e";
    let m = get_as(&app, &ana.token, &format!("/api/v1/artifacts/{missing}")).await;
    for hidden in [&draft, &theirs] {
        let h = get_as(&app, &ana.token, &format!("/api/v1/artifacts/{hidden}")).await;
        h.assert_problem(404, "not_found");
        assert_eq!(
            h.body["detail"]
                .as_str()
                .unwrap()
                .replace(hidden.as_str(), "ID"),
            m.body["detail"].as_str().unwrap().replace(missing, "ID")
        );
    }
    let c = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{theirs}/comments"),
        json!({"body": "peek"}),
    )
    .await;
    c.assert_problem(404, "not_found");

    // Comment on a section, see the thread, never the internal note.
    let comment = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
        json!({"body": "Can the waves start in March?", "section": "/phases/1"}),
    )
    .await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    assert_eq!(comment.body["author_kind"], "client_contact");
    let bad_section = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
        json!({"body": "?", "section": "/phases/9"}),
    )
    .await;
    bad_section.assert_problem(422, "invalid");
    assert_eq!(bad_section.body["errors"][0]["pointer"], "/section");
    let reply = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
        json!({"body": "Yes, March works", "parent_id": comment.body["id"]}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let internal = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
        json!({"body": "They always ask for March", "internal": true}),
    )
    .await;
    assert_eq!(internal.status, 201);
    let not_internal = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
        json!({"body": "sneaky", "internal": true}),
    )
    .await;
    not_internal.assert_problem(422, "invalid");
    let seen = get_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{shared}/comments"),
    )
    .await;
    let bodies: Vec<&str> = seen.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_object().unwrap()["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "Shared plan: please review",
            "Can the waves start in March?",
            "Yes, March works"
        ]
    );
    let resolve_internal = post_as(
        &app,
        &ana.token,
        &format!(
            "/api/v1/comments/{}/resolve",
            internal.body["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    resolve_internal.assert_problem(404, "not_found");
    let resolved = post_as(
        &app,
        &ana.token,
        &format!(
            "/api/v1/comments/{}/resolve",
            comment.body["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert!(resolved.body["resolved_at"].is_string());

    // A client user cannot edit or share; they approve.
    let edit = call_as(
        &app,
        &ana.token,
        Method::POST,
        &format!("/api/v1/artifacts/{shared}/transitions"),
        Some(json!({"to": "approved"})),
    )
    .await;
    edit.assert_problem(403, "forbidden");
    let approved = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{shared}/approve"),
        json!({"version": 1}),
    )
    .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["outcome"], "approved");
    assert_eq!(approved.body["artifact"]["status"], "approved");
    let theirs_approve = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{theirs}/approve"),
        json!({"version": 1}),
    )
    .await;
    theirs_approve.assert_problem(404, "not_found");
    let b_after = app.get(&format!("/api/v1/artifacts/{theirs}")).await;
    assert_eq!(
        b_after.body["status"], "in_review",
        "B's artifact is untouched"
    );
}

async fn approval_binds_to_the_version_and_rejection_keeps_the_reason(app: TestApp) {
    let a = app.client("Acme").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let ana = person(&app, "ana@acme.example", Role::Client, Some(&a)).await;
    let id = artifact_by(&app, &op.token, &a, "Plan", false).await;
    // Operators send approvals through the policy, not a transition.
    let share = app
        .post(
            &format!("/api/v1/artifacts/{id}/transitions"),
            json!({"to": "in_review"}),
        )
        .await;
    assert_eq!(share.status, 200);
    let direct = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{id}/transitions"),
        json!({"to": "approved"}),
    )
    .await;
    direct.assert_problem(403, "forbidden");
    let by_op = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 1}),
    )
    .await;
    by_op.assert_problem(403, "forbidden");
    let stale_version = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 2}),
    )
    .await;
    stale_version.assert_problem(409, "not_latest_version");
    assert_eq!(stale_version.body["latest_version"], 1);
    let wrong_hash = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 1, "content_hash": "deadbeef"}),
    )
    .await;
    wrong_hash.assert_problem(409, "content_hash_mismatch");
    let no_reason = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/reject"),
        json!({"reason": "  "}),
    )
    .await;
    no_reason.assert_problem(422, "invalid");
    let rejected = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/reject"),
        json!({"reason": "Wave 2 overlaps the renewal freeze"}),
    )
    .await;
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    assert_eq!(rejected.body["artifact"]["status"], "draft");
    assert_eq!(rejected.body["comment"]["kind"], "rejection");
    // Back in draft, the artifact is hidden from the client until shared again.
    get_as(&app, &ana.token, &format!("/api/v1/artifacts/{id}"))
        .await
        .assert_problem(404, "not_found");
    let comments = app.get(&format!("/api/v1/artifacts/{id}/comments")).await;
    assert!(
        comments.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["body"] == "Wave 2 overlaps the renewal freeze")
    );
    // New content, shared again: version 2 is the one to approve.
    let cur = app.get(&format!("/api/v1/artifacts/{id}")).await;
    let v2 = app
        .put_content(
            &id,
            &cur.etag(),
            json!({"content": {"phases": [{"name": "waves", "start": "April"}]}}),
        )
        .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{id}/share"),
        json!({}),
    )
    .await;
    let old = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 1}),
    )
    .await;
    old.assert_problem(409, "not_latest_version");
    let review = get_as(&app, &ana.token, &format!("/api/v1/artifacts/{id}/review")).await;
    assert_eq!(review.body["version"], 2);
    assert_eq!(review.body["required"], 1);
    assert_eq!(review.body["eligible"], 1);
    let hash = review.body["content_hash"].as_str().unwrap().to_owned();
    let ok = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 2, "content_hash": hash}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["artifact"]["status"], "approved");
    let again = post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{id}/approve"),
        json!({"version": 2}),
    )
    .await;
    again.assert_problem(409, "not_in_review");
}

async fn a_review_link_reaches_one_artifact_until_it_expires_or_is_revoked(app: TestApp) {
    let a = app.client("Acme").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let one = artifact_by(&app, &op.token, &a, "Wave 1", true).await;
    let two = artifact_by(&app, &op.token, &a, "Wave 2", true).await;
    let link = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{one}/review-links"),
        json!({"reviewer_email": "Cleo@Acme.example", "reviewer_name": "Cleo", "expires_in_hours": 48}),
    )
    .await;
    assert_eq!(link.status, 201, "{}", link.body);
    assert_eq!(link.body["reviewer_email"], "cleo@acme.example");
    let token = link.body["token"].as_str().unwrap().to_owned();
    assert!(
        link.body["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/review/{token}"))
    );

    let view = get_as(&app, &token, &format!("/api/v1/artifacts/{one}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    get_as(&app, &token, &format!("/api/v1/artifacts/{two}"))
        .await
        .assert_problem(404, "not_found");
    for path in [
        "/api/v1/artifacts",
        "/api/v1/clients",
        &format!("/api/v1/artifacts/{one}/history"),
        "/api/v1/events",
    ] {
        get_as(&app, &token, path)
            .await
            .assert_problem(403, "forbidden");
    }
    post_as(
        &app,
        &token,
        &format!("/api/v1/artifacts/{two}/approve"),
        json!({"version": 1}),
    )
    .await
    .assert_problem(404, "not_found");
    let c = post_as(
        &app,
        &token,
        &format!("/api/v1/artifacts/{one}/comments"),
        json!({"body": "Looks right"}),
    )
    .await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["author_kind"], "reviewer");
    assert_eq!(c.body["author_name"], "Cleo");
    let ok = post_as(
        &app,
        &token,
        &format!("/api/v1/artifacts/{one}/approve"),
        json!({"version": 1}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["artifact"]["status"], "approved");
    assert_eq!(
        app.get(&format!("/api/v1/artifacts/{two}")).await.body["status"],
        "in_review"
    );

    // Revoked: refused at once.
    let link2 = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{two}/review-links"),
        json!({"reviewer_email": "dan@acme.example", "reviewer_name": "Dan"}),
    )
    .await;
    let token2 = link2.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        get_as(&app, &token2, &format!("/api/v1/artifacts/{two}"))
            .await
            .status,
        200
    );
    let revoked = call_as(
        &app,
        &op.token,
        Method::DELETE,
        &format!(
            "/api/v1/review-links/{}",
            link2.body["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    post_as(
        &app,
        &token2,
        &format!("/api/v1/artifacts/{two}/approve"),
        json!({"version": 1}),
    )
    .await
    .assert_problem(401, "unauthorized");

    // Expired: a link whose time has passed, correctly signed, is refused.
    let expired = app
        .store
        .create_review_link(
            NewReviewLink {
                artifact_id: two.parse().unwrap(),
                reviewer_email: "eve@acme.example".into(),
                reviewer_name: "Eve".into(),
                expires_at: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
            },
            &WriteContext::new("usr_op"),
        )
        .await
        .unwrap();
    let key = app.store.server_key("review-links").await.unwrap();
    let old = sign_link(&key, expired.id, expired.expires_at);
    get_as(&app, &old, &format!("/api/v1/artifacts/{two}"))
        .await
        .assert_problem(401, "unauthorized");
    // A forged signature, or a link token of another server key, is refused.
    let forged = sign_link(
        b"not the key",
        expired.id,
        expired.expires_at + time::Duration::days(9),
    );
    get_as(&app, &forged, &format!("/api/v1/artifacts/{two}"))
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(
        app.get(&format!("/api/v1/artifacts/{two}")).await.body["status"],
        "in_review",
        "nothing a refused link asked for happened"
    );
}

/// Reads server-sent events until `n` have arrived (or the time runs out).
async fn read_events(res: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut stream = res.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

async fn review_actions_arrive_on_the_event_stream(app: TestApp) {
    let a = app.client("Acme").await;
    let b = app.client("Beta").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let ana = person(&app, "ana@acme.example", Role::Client, Some(&a)).await;
    let stream = app
        .http
        .get(format!("{}/api/v1/events", app.base))
        .bearer_auth(&ana.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let one = artifact_by(&app, &op.token, &a, "Plan A", true).await;
    artifact_by(&app, &op.token, &b, "Plan B", true).await;
    artifact_by(&app, &op.token, &a, "Draft A", false).await;
    post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{one}/comments"),
        json!({"body": "ok"}),
    )
    .await;
    post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{one}/comments"),
        json!({"body": "hush", "internal": true}),
    )
    .await;
    post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{one}/reject"),
        json!({"reason": "not yet"}),
    )
    .await;
    post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{one}/share"),
        json!({}),
    )
    .await;
    post_as(
        &app,
        &ana.token,
        &format!("/api/v1/artifacts/{one}/approve"),
        json!({"version": 1}),
    )
    .await;
    let events = read_events(stream, 5).await;
    let types: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "artifact.shared",
            "comment.created",
            "artifact.rejected",
            "artifact.shared",
            "artifact.approved"
        ],
        "only Acme's shared artifact, never B's, the draft or the internal note"
    );
    for (id, e) in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(&e["id"], id);
        let subject = e["subject"].as_str().unwrap();
        assert!(
            subject.starts_with("art_") || subject.starts_with("cmt_"),
            "{subject}"
        );
        assert!(e["time"].is_string() && e["source"].is_string());
        assert_eq!(e["data"]["artifact_id"], one);
    }
    // Resume after the comment: the rest arrives again, nothing before it.
    let resumed = app
        .http
        .get(format!("{}/api/v1/events", app.base))
        .bearer_auth(&ana.token)
        .header("Last-Event-ID", events[1].0.clone())
        .send()
        .await
        .unwrap();
    let again = read_events(resumed, 3).await;
    let ids: Vec<&str> = again.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            events[2].0.as_str(),
            events[3].0.as_str(),
            events[4].0.as_str()
        ]
    );
    // The team sees everything, B's and internal ones included.
    let staff = app
        .http
        .get(format!("{}/api/v1/events?after={}", app.base, events[0].0))
        .bearer_auth(&op.token)
        .send()
        .await
        .unwrap();
    let all = read_events(staff, 3).await;
    let types: Vec<&str> = all
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"artifact.created") || types.contains(&"artifact.shared"),
        "{types:?}"
    );
    assert_eq!(
        types,
        ["artifact.created", "artifact.shared", "artifact.created"],
        "B's artifact and the unshared draft are the team's to see"
    );
    assert_eq!(all[0].1["data"]["title"], "Plan B");
    assert_eq!(all[2].1["data"]["title"], "Draft A");
}

async fn only_an_admin_overrides_the_approval_policy_and_it_is_recorded(app: TestApp) {
    let a = app.client("Acme").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let id = artifact_by(&app, &op.token, &a, "Plan", false).await;
    let share = post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{id}/transitions"),
        json!({"to": "in_review"}),
    )
    .await;
    assert_eq!(share.status, 200, "{}", share.body);
    let before = app.footprint().await;
    let transition = |body: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.post(&format!("/api/v1/artifacts/{id}/transitions"), body)
                .await
        }
    };
    // The admin too goes through the client's approvals...
    let plain = transition(json!({"to": "approved", "reason": "looks right"})).await;
    plain.assert_problem(403, "forbidden");
    assert!(
        plain.body["detail"].as_str().unwrap().contains("/approve"),
        "{}",
        plain.body
    );
    // ... unless overriding, with a reason.
    transition(json!({"to": "approved", "override": true}))
        .await
        .assert_problem(422, "invalid");
    transition(json!({"to": "approved", "override": true, "reason": " "}))
        .await
        .assert_problem(422, "invalid");
    // An operator cannot override.
    post_as(
        &app,
        &op.token,
        &format!("/api/v1/artifacts/{id}/transitions"),
        json!({"to": "approved", "override": true, "reason": "the client said yes"}),
    )
    .await
    .assert_problem(403, "forbidden");
    // Override is for approving only.
    transition(json!({"to": "draft", "override": true, "reason": "x"}))
        .await
        .assert_problem(422, "invalid");
    assert_eq!(app.footprint().await, before, "refusals change nothing");

    let ok = transition(json!({"to": "approved", "override": true,
        "reason": "approved by the CFO on the phone"}))
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["status"], "approved");
    let history = app.get(&format!("/api/v1/artifacts/{id}/history")).await;
    let last = history.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "approval_overridden");
    assert_eq!(last["to_status"], "approved");
    assert_eq!(last["reason"], "approved by the CFO on the phone");
    // Actors are named for people beside their ids: the operator who shared
    // it by name and email, the admin's token by its name.
    let items = history.body["items"].as_array().unwrap();
    let shared = items
        .iter()
        .find(|h| h["to_status"] == "in_review")
        .unwrap();
    assert!(
        shared["actor"].as_str().unwrap().starts_with("usr_"),
        "{shared}"
    );
    assert!(
        shared["actor_name"]
            .as_str()
            .unwrap()
            .ends_with("<op@team.example>"),
        "{shared}"
    );
    assert!(
        last["actor"].as_str().unwrap().starts_with("tok_"),
        "{last}"
    );
    assert!(last["actor_name"].is_string(), "{last}");
    let audit = app.get(&format!("/api/v1/audit?target={id}")).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "artifact.approval_override", "{actions:?}");
    let by_op = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "artifact.transition")
        .unwrap();
    assert!(
        by_op["actor"].as_str().unwrap().starts_with("usr_"),
        "{by_op}"
    );
    assert!(
        by_op["actor_name"]
            .as_str()
            .unwrap()
            .ends_with("<op@team.example>"),
        "{by_op}"
    );
    assert!(
        audit.body["items"][0]["actor_name"].is_string(),
        "{}",
        audit.body
    );
}
