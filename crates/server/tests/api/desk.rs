//! The desk over HTTP: to-dos (created, listed in their order, filtered,
//! paged, changed by fields and by action, deleted; closing twice refused),
//! the engine's human tasks beside them, preferences (defaults, partial
//! updates, validation) and stakeholders — and what a client user reaches of
//! each.

use reqwest::Method;
use serde_json::{Value, json};
use waymark_store::Role;

use crate::both_backends;
use crate::fixtures::{Person, call_as, get_as, person, post_as};
use crate::helpers::{Answer, TestApp};

both_backends!(
    todos_are_created_listed_filtered_and_paged,
    todos_change_by_fields_and_by_action,
    engine_human_tasks_appear_beside_the_todos,
    preferences_start_as_defaults_and_merge_updates,
    stakeholders_are_kept_and_client_users_only_read_their_own,
    client_users_reach_only_their_own_todos,
);

async fn patch(app: &TestApp, path: &str, body: Value) -> Answer {
    app.call(Method::PATCH, path, Some(body), &[]).await
}

async fn send_raw(app: &TestApp, method: Method, path: &str, body: &str) -> Answer {
    let res = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    TestApp::answer(res).await
}

async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.post("/api/v1/tasks", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn titles(list: &Answer) -> Vec<String> {
    list.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", list.body))
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn journey(app: &TestApp, client: &str) -> String {
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "client-onboarding", "name": "Onboarding"}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    j.body["id"].as_str().unwrap().to_owned()
}

/// The audit actions on `target`, oldest first (the log lists newest first).
async fn audit_actions(app: &TestApp, target: &str) -> Vec<String> {
    let a = app.get(&format!("/api/v1/audit?target={target}")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut actions: Vec<String> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    actions.reverse();
    actions
}

async fn todos_are_created_listed_filtered_and_paged(app: TestApp) {
    let acme = app.client("Acme").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let j = journey(&app, &acme).await;

    // The bootstrap admin token has no user: its to-dos are its own.
    let mine = create(&app, json!({"title": "Read the contract"})).await;
    assert_eq!(mine["kind"], "todo");
    assert!(mine["id"].as_str().unwrap().starts_with("tdo_"));
    assert!(mine["assigned_to"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(mine["priority"], "medium");
    assert_eq!(mine["status"], "open");
    assert_eq!(mine["completed"], false);
    assert_eq!(mine["due_date"], Value::Null);
    assert_eq!(mine["completed_at"], Value::Null);
    // Of a journey: its client, one of its steps.
    let step = create(
        &app,
        json!({"title": "Pilot review", "assigned_to": op.id.to_string(), "journey_id": j,
               "step": "pilot", "due_date": "2026-03-02", "priority": "high"}),
    )
    .await;
    assert_eq!(step["client_id"], acme);
    assert_eq!(step["journey_id"], j);
    assert_eq!(step["step"], "pilot");
    assert_eq!(step["due_date"], "2026-03-02");
    // Hostile markup is text, kept as sent.
    let markup = "<script>alert('x')</script> & <b>bold</b>";
    let hostile = create(
        &app,
        json!({"title": markup, "assigned_to": op.id.to_string(), "client_id": acme,
               "due_date": "2026-03-01", "priority": "low"}),
    )
    .await;
    assert_eq!(hostile["title"], markup);
    for (title, due, priority) in [
        ("Undated urgent", None, "urgent"),
        ("Soon urgent", Some("2026-03-01"), "urgent"),
        ("Undated low", None, "low"),
    ] {
        create(
            &app,
            json!({"title": title, "assigned_to": op.id.to_string(), "due_date": due, "priority": priority}),
        )
        .await;
    }

    // Bad input: a problem, and nothing changes.
    let before = app.get("/api/v1/tasks?assigned_to=all").await;
    let long = "x".repeat(201);
    for (body, pointer) in [
        (json!({"title": ""}), "/title"),
        (json!({"title": long}), "/title"),
        (json!({"title": "t", "priority": "critical"}), "/priority"),
        (json!({"title": "t", "priority": 3}), "/priority"),
        (json!({"title": "t", "due_date": "2026-13-01"}), "/due_date"),
        (json!({"title": "t", "colour": "red"}), ""),
        (json!({"title": "t", "step": "pilot"}), "/step"),
        (
            json!({"title": "t", "journey_id": j, "step": "moon"}),
            "/step",
        ),
        (
            json!({"title": "t", "journey_id": "jrn_0193a0b2c3d4e5f60718293a4b5c6d7e"}),
            "/journey_id",
        ),
        (
            json!({"title": "t", "client_id": "cli_0193a0b2c3d4e5f60718293a4b5c6d7e"}),
            "/client_id",
        ),
        (
            json!({"title": "t", "assigned_to": "usr_0193a0b2c3d4e5f60718293a4b5c6d7e"}),
            "/assigned_to",
        ),
        (
            json!({"title": "t", "assigned_to": "someone"}),
            "/assigned_to",
        ),
        (
            json!({"title": "t", "journey_id": j, "client_id": app.client("Other").await}),
            "/client_id",
        ),
    ] {
        let r = app.post("/api/v1/tasks", body.clone()).await;
        r.assert_problem(422, "invalid");
        if !pointer.is_empty() {
            assert_eq!(
                r.body["errors"][0]["pointer"], pointer,
                "{body}: {}",
                r.body
            );
        }
    }
    send_raw(&app, Method::POST, "/api/v1/tasks", "{\"title\": ")
        .await
        .assert_problem(400, "malformed_json");
    let after = app.get("/api/v1/tasks?assigned_to=all").await;
    assert_eq!(titles(&after), titles(&before));

    // The default list is the caller's: open first, due date, priority, id.
    let op_list = get_as(&app, &op.token, "/api/v1/tasks").await;
    assert_eq!(op_list.status, 200, "{}", op_list.body);
    let expected = [
        "Soon urgent",
        markup,
        "Pilot review",
        "Undated urgent",
        "Undated low",
    ];
    assert_eq!(titles(&op_list), expected);
    assert!(
        op_list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["kind"] == "todo")
    );
    assert_eq!(
        titles(&app.get("/api/v1/tasks").await),
        ["Read the contract"]
    );
    let by_id = app
        .get(&format!("/api/v1/tasks?assigned_to={}", op.id))
        .await;
    assert_eq!(titles(&by_id), expected);
    assert_eq!(
        titles(&app.get("/api/v1/tasks?assigned_to=all").await).len(),
        6
    );

    // Pages of two, through next_cursor.
    let mut seen = vec![];
    let mut path = "/api/v1/tasks?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = get_as(&app, &op.token, &path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(titles(&page));
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/tasks?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // Filters.
    let of_journey = get_as(&app, &op.token, &format!("/api/v1/tasks?journey_id={j}")).await;
    assert_eq!(titles(&of_journey), ["Pilot review"]);
    let of_client = get_as(&app, &op.token, &format!("/api/v1/tasks?client_id={acme}")).await;
    assert_eq!(titles(&of_client), [markup, "Pilot review"]);
    let completed = get_as(&app, &op.token, "/api/v1/tasks?status=completed").await;
    assert!(titles(&completed).is_empty());
    for bad in [
        "status=done",
        "journey_id=nope",
        "client_id=jrn_0193a0b2c3d4e5f60718293a4b5c6d7e",
        "assigned_to=bob",
        "limit=0",
    ] {
        app.get(&format!("/api/v1/tasks?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    app.get("/api/v1/tasks?cursor=garbage")
        .await
        .assert_problem(422, "invalid");

    // One to-do; one that does not exist.
    let id = step["id"].as_str().unwrap();
    let one = app.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body, step);
    app.get("/api/v1/tasks/tdo_0193a0b2c3d4e5f60718293a4b5c6d7e")
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/tasks/tsk_0193a0b2c3d4e5f60718293a4b5c6d7e")
        .await
        .assert_problem(404, "not_found");
    assert_eq!(audit_actions(&app, id).await, ["todo.create"]);
}

async fn todos_change_by_fields_and_by_action(app: TestApp) {
    let t = create(
        &app,
        json!({"title": "Send the deck", "due_date": "2026-05-01", "priority": "low"}),
    )
    .await;
    let id = t["id"].as_str().unwrap();
    let path = format!("/api/v1/tasks/{id}");

    // By fields.
    let changed = patch(
        &app,
        &path,
        json!({"title": "Send the final deck", "priority": "urgent", "due_date": "2026-04-01"}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["title"], "Send the final deck");
    assert_eq!(changed.body["priority"], "urgent");
    assert_eq!(changed.body["due_date"], "2026-04-01");
    let cleared = patch(&app, &path, json!({"due_date": null})).await;
    assert_eq!(cleared.body["due_date"], Value::Null);
    assert_eq!(cleared.body["title"], "Send the final deck");
    // Nothing to change: answered as it is.
    let same = patch(&app, &path, json!({})).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.body, cleared.body);

    // Refused: a problem, and nothing changes.
    for (body, status, code) in [
        (json!({"action": "complete", "title": "x"}), 422, "invalid"),
        (
            json!({"action": "complete", "completed": true}),
            422,
            "invalid",
        ),
        (json!({"action": "explode"}), 422, "invalid"),
        (json!({"completed": "yes"}), 422, "invalid"),
        (json!({"title": ""}), 422, "invalid"),
        (json!({"title": "x".repeat(201)}), 422, "invalid"),
        (json!({"owner": "me"}), 422, "invalid"),
        (
            json!({"assigned_to": "usr_0193a0b2c3d4e5f60718293a4b5c6d7e"}),
            422,
            "invalid",
        ),
        (json!({"due_date": "tomorrow"}), 422, "invalid"),
    ] {
        patch(&app, &path, body).await.assert_problem(status, code);
    }
    send_raw(&app, Method::PATCH, &path, "[1,")
        .await
        .assert_problem(400, "malformed_json");
    assert_eq!(app.get(&path).await.body, cleared.body);

    // By action: completing twice is a clear 409.
    let done = patch(&app, &path, json!({"action": "complete"})).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["completed"], true);
    assert!(done.body["completed_at"].is_string());
    for again in [
        json!({"action": "complete"}),
        json!({"action": "skip"}),
        json!({"completed": true}),
    ] {
        let r = patch(&app, &path, again).await;
        r.assert_problem(409, "todo_closed");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains("completed already"), "{detail}");
        assert!(detail.contains("reopen"), "{detail}");
    }
    assert_eq!(app.get(&path).await.body, done.body);
    // Reopened by `completed: false`, then skipped.
    let reopened = patch(&app, &path, json!({"completed": false})).await;
    assert_eq!(reopened.body["status"], "open");
    assert_eq!(reopened.body["completed"], false);
    assert_eq!(reopened.body["completed_at"], Value::Null);
    let skipped = patch(&app, &path, json!({"action": "skip"})).await;
    assert_eq!(skipped.body["status"], "skipped");
    assert_eq!(skipped.body["completed"], false);
    patch(&app, &path, json!({"action": "complete"}))
        .await
        .assert_problem(409, "todo_closed");
    // By `completed: true` when open.
    patch(&app, &path, json!({"completed": false})).await;
    let by_field = patch(&app, &path, json!({"completed": true, "priority": "high"})).await;
    assert_eq!(by_field.body["status"], "completed");
    assert_eq!(by_field.body["priority"], "high");

    // Delete: 204, then gone.
    let del = app.call(Method::DELETE, &path, None, &[]).await;
    assert_eq!(del.status, 204, "{}", del.body);
    app.get(&path).await.assert_problem(404, "not_found");
    app.call(Method::DELETE, &path, None, &[])
        .await
        .assert_problem(404, "not_found");
    patch(&app, &path, json!({"action": "complete"}))
        .await
        .assert_problem(404, "not_found");
    let actions = audit_actions(&app, id).await;
    assert_eq!(actions.first().map(String::as_str), Some("todo.create"));
    assert_eq!(actions.last().map(String::as_str), Some("todo.delete"));
    assert_eq!(
        // Fields, due date cleared, complete, reopen, skip, reopen, complete
        // with a field: the empty patch and the refusals wrote nothing.
        actions.iter().filter(|a| *a == "todo.update").count(),
        7,
        "{actions:?}"
    );
}

async fn engine_human_tasks_appear_beside_the_todos(app: TestApp) {
    let acme = app.client("Acme").await;
    let beta = app.client("Beta").await;
    let unit = app
        .post(
            "/api/v1/work/units",
            json!({"client_id": acme, "name": "Kickoff", "tasks": [
                {"key": "call", "name": "Kickoff call", "executor": "human"},
                {"key": "notes", "name": "Write the notes", "executor": "human", "depends_on": ["call"]},
                {"key": "ping", "executor": "noop"}]}),
        )
        .await;
    assert_eq!(unit.status, 201, "{}", unit.body);
    create(&app, json!({"title": "My own to-do"})).await;

    let list = app.get("/api/v1/tasks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(titles(&list), ["My own to-do"]);
    let engine = list.body["engine_tasks"].as_array().unwrap();
    assert_eq!(engine.len(), 1, "only the ready human task: {}", list.body);
    let call = &engine[0];
    assert_eq!(call["kind"], "engine_task");
    assert_eq!(call["title"], "Kickoff call");
    assert_eq!(call["status"], "ready");
    assert_eq!(call["client_id"], acme);
    let call_id = call["id"].as_str().unwrap();
    assert!(call_id.starts_with("tsk_"));
    assert_eq!(call["url"], format!("/api/v1/work/tasks/{call_id}"));
    let at_url = app.get(call["url"].as_str().unwrap()).await;
    assert_eq!(at_url.status, 200, "{}", at_url.body);
    assert_eq!(at_url.body["name"], "Kickoff call");

    // Filters apply to them too; later pages and closed lists carry none.
    let of_beta = app.get(&format!("/api/v1/tasks?client_id={beta}")).await;
    assert!(of_beta.body["engine_tasks"].as_array().unwrap().is_empty());
    let of_acme = app.get(&format!("/api/v1/tasks?client_id={acme}")).await;
    assert_eq!(of_acme.body["engine_tasks"].as_array().unwrap().len(), 1);
    for q in ["status=completed", "cursor=1"] {
        let r = app.get(&format!("/api/v1/tasks?{q}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body["engine_tasks"].as_array().unwrap().is_empty(),
            "{q}: {}",
            r.body
        );
    }

    // Completed at the engine, the next human task takes its place.
    let done = app
        .post(
            &format!("/api/v1/work/tasks/{call_id}/complete"),
            json!({"output": {}}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let next = app.get("/api/v1/tasks").await;
    let engine = next.body["engine_tasks"].as_array().unwrap();
    assert_eq!(engine.len(), 1, "{}", next.body);
    assert_eq!(engine[0]["title"], "Write the notes");

    // A client user's desk has none.
    let cleo = person(&app, "cleo@acme.example", Role::Client, Some(&acme)).await;
    let theirs = get_as(&app, &cleo.token, "/api/v1/tasks").await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert!(theirs.body["engine_tasks"].as_array().unwrap().is_empty());
    assert!(theirs.body["items"].as_array().unwrap().is_empty());
}

async fn preferences_start_as_defaults_and_merge_updates(app: TestApp) {
    let defaults = json!({
        "queue_page_size": 25,
        "default_queue_filter": {"template": null, "stage": null},
        "notifications": {"email": true, "escalations": true, "daily_digest": false},
        "timezone": "UTC",
        "theme": "system",
        "chat_streaming": true,
    });
    let first = app.get("/api/v1/me/preferences").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body, defaults);

    let put = app
        .call(
            Method::PUT,
            "/api/v1/me/preferences",
            Some(json!({"theme": "dark", "timezone": "Europe/Paris",
                        "notifications": {"daily_digest": true},
                        "default_queue_filter": {"template": "renewal"}})),
            &[],
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let mut expected = defaults.clone();
    expected["theme"] = json!("dark");
    expected["timezone"] = json!("Europe/Paris");
    expected["notifications"]["daily_digest"] = json!(true);
    expected["default_queue_filter"]["template"] = json!("renewal");
    assert_eq!(put.body, expected);
    assert_eq!(app.get("/api/v1/me/preferences").await.body, expected);

    // Invalid: every problem named, and nothing changes.
    let bad = app
        .call(
            Method::PUT,
            "/api/v1/me/preferences",
            Some(
                json!({"colour": "red", "queue_page_size": "many", "theme": "dark",
                        "notifications": {"sms": true}}),
            ),
            &[],
        )
        .await;
    bad.assert_problem(422, "invalid");
    let pointers: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/colour", "/queue_page_size", "/notifications/sms"]
    );
    assert!(
        bad.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`colour`")
    );
    for body in [
        json!({"queue_page_size": 4}),
        json!({"queue_page_size": 201}),
        json!({"timezone": "<script>"}),
        json!({"chat_streaming": "true"}),
        json!({"default_queue_filter": {"template": "Not A Name"}}),
        json!(["theme", "dark"]),
    ] {
        app.call(Method::PUT, "/api/v1/me/preferences", Some(body), &[])
            .await
            .assert_problem(422, "invalid");
    }
    send_raw(&app, Method::PUT, "/api/v1/me/preferences", "{\"theme\"")
        .await
        .assert_problem(400, "malformed_json");
    assert_eq!(app.get("/api/v1/me/preferences").await.body, expected);
    // `null` puts a member back to its default.
    let reset = app
        .call(
            Method::PUT,
            "/api/v1/me/preferences",
            Some(json!({"timezone": null, "notifications": {"daily_digest": null}})),
            &[],
        )
        .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    expected["timezone"] = json!("UTC");
    expected["notifications"]["daily_digest"] = json!(false);
    assert_eq!(reset.body, expected);

    // Each person has their own, a client user too.
    let acme = app.client("Acme").await;
    let cleo = person(&app, "cleo@acme.example", Role::Client, Some(&acme)).await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    assert_eq!(
        get_as(&app, &op.token, "/api/v1/me/preferences").await.body,
        defaults
    );
    let theirs = call_as(
        &app,
        &cleo.token,
        Method::PUT,
        "/api/v1/me/preferences",
        Some(json!({"queue_page_size": 10})),
    )
    .await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_eq!(theirs.body["queue_page_size"], 10);
    assert_eq!(theirs.body["theme"], "system");
    assert_eq!(app.get("/api/v1/me/preferences").await.body, expected);
    let updates = app.get(&format!("/api/v1/audit?target={}", cleo.id)).await;
    assert!(
        updates.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "preferences.update"),
        "{}",
        updates.body
    );
}

fn stakeholders_path(client: &str) -> String {
    format!("/api/v1/clients/{client}/stakeholders")
}

/// A 404's body with the id it names replaced, to compare two of them.
fn masked(a: &Answer, id: &str) -> String {
    let mut body = a.body.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("trace_id");
    }
    body.to_string().replace(id, "<ID>")
}

async fn stakeholders_are_kept_and_client_users_only_read_their_own(app: TestApp) {
    let acme = app.client("Acme").await;
    let beta = app.client("Beta Secret").await;
    let dana = app
        .post(
            &stakeholders_path(&acme),
            json!({"name": "Dana Reyes", "email": "Dana@Acme.example", "role": "CFO",
                   "influence": "high", "sentiment": "negative",
                   "notes": "Worried about <b>price</b>"}),
        )
        .await;
    assert_eq!(dana.status, 201, "{}", dana.body);
    assert!(dana.body["id"].as_str().unwrap().starts_with("stk_"));
    assert_eq!(dana.body["client_id"], acme);
    assert_eq!(dana.body["email"], "dana@acme.example");
    assert_eq!(dana.body["notes"], "Worried about <b>price</b>");
    let eli = app
        .post(
            &stakeholders_path(&acme),
            json!({"name": "Eli", "role": "Champion"}),
        )
        .await;
    assert_eq!(eli.status, 201, "{}", eli.body);
    assert_eq!(eli.body["influence"], "medium");
    assert_eq!(eli.body["sentiment"], "neutral");
    assert_eq!(eli.body["email"], Value::Null);
    assert_eq!(eli.body["notes"], "");
    let bea = app
        .post(
            &stakeholders_path(&beta),
            json!({"name": "Beta Secret Bea", "email": "bea@beta.example", "role": "CEO"}),
        )
        .await;
    assert_eq!(bea.status, 201, "{}", bea.body);
    let dana_id = dana.body["id"].as_str().unwrap();
    let bea_id = bea.body["id"].as_str().unwrap();

    // Bad input: a problem, nothing added.
    for (body, pointer) in [
        (
            json!({"name": "X", "role": "CFO", "influence": "huge"}),
            "/influence",
        ),
        (
            json!({"name": "X", "role": "CFO", "sentiment": 1}),
            "/sentiment",
        ),
        (
            json!({"name": "X", "role": "CFO", "email": "not an email"}),
            "/email",
        ),
        (json!({"name": "", "role": "CFO"}), "/name"),
        (json!({"name": "X".repeat(201), "role": "CFO"}), "/name"),
        (json!({"name": "X"}), ""),
        (json!({"name": "X", "role": "CFO", "phone": "555"}), ""),
        (
            json!({"name": "X", "role": "CFO", "notes": "n".repeat(2001)}),
            "/notes",
        ),
    ] {
        let r = app.post(&stakeholders_path(&acme), body.clone()).await;
        r.assert_problem(422, "invalid");
        if !pointer.is_empty() {
            assert_eq!(
                r.body["errors"][0]["pointer"], pointer,
                "{body}: {}",
                r.body
            );
        }
    }
    let list = app.get(&stakeholders_path(&acme)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Dana Reyes", "Eli"]);
    let paged = app
        .get(&format!("{}?limit=1", stakeholders_path(&acme)))
        .await;
    let cursor = paged.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "{}?limit=1&cursor={cursor}",
            stakeholders_path(&acme)
        ))
        .await;
    assert_eq!(rest.body["items"][0]["name"], "Eli");
    assert_eq!(rest.body["next_cursor"], Value::Null);

    // Change, then remove.
    let dana_path = format!("{}/{dana_id}", stakeholders_path(&acme));
    let changed = patch(
        &app,
        &dana_path,
        json!({"sentiment": "positive", "email": null, "notes": null}),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["sentiment"], "positive");
    assert_eq!(changed.body["email"], Value::Null);
    assert_eq!(changed.body["notes"], "");
    assert_eq!(changed.body["role"], "CFO");
    patch(&app, &dana_path, json!({"influence": "enormous"}))
        .await
        .assert_problem(422, "invalid");
    patch(&app, &dana_path, json!({"company": "x"}))
        .await
        .assert_problem(422, "invalid");
    assert_eq!(app.get(&dana_path).await.body, changed.body);
    // Another client's stakeholder is not under this client.
    let crossed = format!("{}/{bea_id}", stakeholders_path(&acme));
    app.get(&crossed).await.assert_problem(404, "not_found");
    patch(&app, &crossed, json!({"sentiment": "negative"}))
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, &crossed, None, &[])
        .await
        .assert_problem(404, "not_found");
    app.get(&stakeholders_path("cli_0193a0b2c3d4e5f60718293a4b5c6d7e"))
        .await
        .assert_problem(404, "not_found");

    // A client user reads their own client's, changes nothing, and sees
    // another client's as one that does not exist.
    let cleo = person(&app, "cleo@acme.example", Role::Client, Some(&acme)).await;
    let theirs = get_as(&app, &cleo.token, &stakeholders_path(&acme)).await;
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_eq!(theirs.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        get_as(&app, &cleo.token, &dana_path).await.body["name"],
        "Dana Reyes"
    );
    post_as(
        &app,
        &cleo.token,
        &stakeholders_path(&acme),
        json!({"name": "Me", "role": "Admin"}),
    )
    .await
    .assert_problem(403, "forbidden");
    call_as(
        &app,
        &cleo.token,
        Method::PATCH,
        &dana_path,
        Some(json!({"sentiment": "positive"})),
    )
    .await
    .assert_problem(403, "forbidden");
    call_as(&app, &cleo.token, Method::DELETE, &dana_path, None)
        .await
        .assert_problem(403, "forbidden");
    let nobody = "cli_0193a0b2c3d4e5f60718293a4b5c6d7e";
    for (method, suffix, body) in [
        (Method::GET, String::new(), None),
        (Method::GET, format!("/{bea_id}"), None),
        (
            Method::POST,
            String::new(),
            Some(json!({"name": "Me", "role": "Admin"})),
        ),
        (
            Method::PATCH,
            format!("/{bea_id}"),
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, format!("/{bea_id}"), None),
    ] {
        let b = call_as(
            &app,
            &cleo.token,
            method.clone(),
            &format!("{}{suffix}", stakeholders_path(&beta)),
            body.clone(),
        )
        .await;
        let x = call_as(
            &app,
            &cleo.token,
            method.clone(),
            &format!("{}{suffix}", stakeholders_path(nobody)),
            body,
        )
        .await;
        b.assert_problem(404, "not_found");
        assert!(!b.body.to_string().contains("Beta Secret"), "{}", b.body);
        assert_eq!(masked(&b, &beta), masked(&x, nobody), "{method} {suffix}");
    }
    // Nothing of B changed.
    let bea_now = app
        .get(&format!("{}/{bea_id}", stakeholders_path(&beta)))
        .await;
    assert_eq!(bea_now.body, bea.body);

    let del = app.call(Method::DELETE, &dana_path, None, &[]).await;
    assert_eq!(del.status, 204, "{}", del.body);
    app.get(&dana_path).await.assert_problem(404, "not_found");
    assert_eq!(
        audit_actions(&app, dana_id).await,
        [
            "stakeholder.create",
            "stakeholder.update",
            "stakeholder.delete"
        ]
    );
}

async fn client_users_reach_only_their_own_todos(app: TestApp) {
    let acme = app.client("Acme").await;
    let beta = app.client("Beta").await;
    let op = person(&app, "op@team.example", Role::Operator, None).await;
    let ana = person(&app, "ana@acme.example", Role::Client, Some(&acme)).await;
    let bob = person(&app, "bob@beta.example", Role::Client, Some(&beta)).await;
    let for_user =
        |p: &Person, title: &str| json!({"title": title, "assigned_to": p.id.to_string()});
    let anas = create(&app, for_user(&ana, "Sign the order form")).await;
    assert_eq!(anas["client_id"], acme);
    let bobs = create(&app, for_user(&bob, "Beta secret to-do")).await;
    assert_eq!(bobs["client_id"], beta);
    let teams = create(
        &app,
        json!({"title": "Prepare Acme's QBR", "assigned_to": op.id.to_string(), "client_id": acme}),
    )
    .await;
    // A client user takes only their client's to-dos.
    let crossed = app
        .post(
            "/api/v1/tasks",
            json!({"title": "x", "assigned_to": ana.id.to_string(), "client_id": beta}),
        )
        .await;
    crossed.assert_problem(422, "invalid");
    assert_eq!(crossed.body["errors"][0]["pointer"], "/assigned_to");

    // Their list is their own to-dos.
    let list = get_as(&app, &ana.token, "/api/v1/tasks").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(titles(&list), ["Sign the order form"]);
    assert!(!list.body.to_string().contains("Beta secret"));
    let other_client = get_as(&app, &ana.token, &format!("/api/v1/tasks?client_id={beta}")).await;
    assert_eq!(other_client.status, 200);
    assert!(titles(&other_client).is_empty());
    for q in [
        "assigned_to=all".to_owned(),
        format!("assigned_to={}", bob.id),
    ] {
        get_as(&app, &ana.token, &format!("/api/v1/tasks?{q}"))
            .await
            .assert_problem(403, "forbidden");
    }

    // Another's to-do answers exactly as one that does not exist.
    let nobody = "tdo_0193a0b2c3d4e5f60718293a4b5c6d7e";
    for other in [bobs["id"].as_str().unwrap(), teams["id"].as_str().unwrap()] {
        for (method, body) in [
            (Method::GET, None),
            (Method::PATCH, Some(json!({"action": "complete"}))),
        ] {
            let b = call_as(
                &app,
                &ana.token,
                method.clone(),
                &format!("/api/v1/tasks/{other}"),
                body.clone(),
            )
            .await;
            let x = call_as(
                &app,
                &ana.token,
                method.clone(),
                &format!("/api/v1/tasks/{nobody}"),
                body,
            )
            .await;
            b.assert_problem(404, "not_found");
            assert_eq!(masked(&b, other), masked(&x, nobody), "{method}");
        }
    }
    assert_eq!(
        app.get(&format!("/api/v1/tasks/{}", bobs["id"].as_str().unwrap()))
            .await
            .body,
        bobs
    );

    // Their own: read, complete; the rest is the team's.
    let own = format!("/api/v1/tasks/{}", anas["id"].as_str().unwrap());
    assert_eq!(get_as(&app, &ana.token, &own).await.body, anas);
    call_as(
        &app,
        &ana.token,
        Method::PATCH,
        &own,
        Some(json!({"title": "Renamed"})),
    )
    .await
    .assert_problem(403, "forbidden");
    let done = call_as(
        &app,
        &ana.token,
        Method::PATCH,
        &own,
        Some(json!({"action": "complete"})),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    call_as(&app, &ana.token, Method::DELETE, &own, None)
        .await
        .assert_problem(403, "forbidden");
    post_as(&app, &ana.token, "/api/v1/tasks", json!({"title": "Mine"}))
        .await
        .assert_problem(403, "forbidden");
    // Bob's is untouched.
    assert_eq!(
        get_as(
            &app,
            &bob.token,
            &format!("/api/v1/tasks/{}", bobs["id"].as_str().unwrap())
        )
        .await
        .body,
        bobs
    );
}
