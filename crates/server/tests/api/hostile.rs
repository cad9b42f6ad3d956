//! Hostile CEL: an expression far over the limits is refused where it is
//! written (a journey template over the API, a pack's rule), one within them
//! but expensive is stopped by its budget, and the server keeps answering
//! `/healthz` all the while.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::helpers::TestApp;

crate::both_backends!(hostile_cel_is_refused_or_stopped_while_the_server_keeps_answering);

/// `terms` terms joined by `+`: 5,000 of them overflowed the evaluator's stack.
fn chain(first: &str, terms: usize) -> String {
    let mut s = first.to_owned();
    for i in 1..terms {
        s.push_str(&format!(" + {}", i % 10));
    }
    s
}

/// A list literal of `n` numbers.
fn numbers(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// Polls `/healthz` until stopped; answers how many polls succeeded and
/// whether any did not.
struct Health {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Health {
    fn watch(app: &TestApp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let url = format!("{}/healthz", app.base);
        let http = app.http.clone();
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            let ok = Arc::clone(&ok);
            async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                failures
            }
        });
        Self { stop, ok, task }
    }

    async fn finish(self) {
        // At least one answer after everything above.
        let seen = self.ok.load(Ordering::Relaxed);
        while self.ok.load(Ordering::Relaxed) <= seen {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.task.await.unwrap();
        assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    }
}

async fn hostile_cel_is_refused_or_stopped_while_the_server_keeps_answering(app: TestApp) {
    let health = Health::watch(&app);

    // A journey template's exit check: refused at the field's JSON Pointer.
    let refused = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "long-chain", "title": "Long chain", "stages": [
                {"id": "check", "name": "Check",
                 "exit": [{"name": "huge", "cel": format!("{} > 0", chain("metrics.score", 5_000))}]}]}),
        )
        .await;
    refused.assert_problem(422, "invalid");
    let error = &refused.body["errors"][0];
    assert_eq!(error["pointer"], "/stages/0/exit/0/cel", "{}", refused.body);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("operators in one chain"),
        "the refusal names the limit: {}",
        refused.body
    );
    let templates = app.get("/api/v1/journey-templates").await;
    assert!(
        !templates.body.to_string().contains("long-chain"),
        "a refused template is not kept"
    );

    // A pack rule: refused naming the file, line and column.
    let schema = json!({"type": "object", "properties": {"items": {"type": "array"}}});
    let rule_pack = |when: &str| {
        json!({"files": {
            "pack.yaml": format!(
                "name: probe\nversion: 0.1.0\ntypes:\n  - name: list\n    family: solution\n    schema: schemas/list.json\n    example: examples/list.json\n    rules:\n      - name: probe\n        when: \"{when}\"\n        message: probed\n"
            ),
            "schemas/list.json": schema.to_string(),
            "examples/list.json": "{\"items\": [1]}",
        }})
    };
    let refused = app
        .post(
            "/api/v1/packs",
            rule_pack(&format!("{} > 0", chain("size(content.items)", 5_000))),
        )
        .await;
    refused.assert_problem(422, "invalid");
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("pack.yaml:10:"), "{message}");
    assert_eq!(app.get("/api/v1/packs/probe").await.status, 404);

    // Within the limits but too costly: three nested loops over 300 items.
    let costly = "content.items.all(a, content.items.all(b, content.items.all(c, a + b + c >= 0)))";
    let installed = app.post("/api/v1/packs", rule_pack(costly)).await;
    assert_eq!(installed.status, 201, "{}", installed.body);
    let client = app.client("Probe Co").await;
    let e = app
        .post(
            "/api/v1/engagements",
            json!({"client_id": client, "name": "Probe", "pack": "probe"}),
        )
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    let items: Vec<u32> = (0..300).collect();
    let written = app
        .post(
            "/api/v1/artifacts",
            json!({"client_id": client, "engagement_id": e.body["id"], "type": "list",
                   "title": "Many", "content": {"items": items}}),
        )
        .await;
    assert_eq!(
        written.status, 201,
        "the write goes ahead: {}",
        written.body
    );
    let warnings = written.body["warnings"].to_string();
    assert!(
        warnings.contains("Rule probe was not checked"),
        "{}",
        written.body
    );

    // A journey's exit check as costly: the check fails, the server answers.
    let list = numbers(200);
    let costly = format!("{list}.all(a, {list}.all(b, {list}.all(c, a + b + c >= 0)))");
    let t = app
        .post(
            "/api/v1/journey-templates",
            json!({"name": "costly", "title": "Costly", "stages": [
                {"id": "check", "name": "Check", "exit": [{"name": "costly", "cel": costly}]}]}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let j = app
        .post(
            "/api/v1/journeys",
            json!({"client_id": client, "template": "costly"}),
        )
        .await;
    assert_eq!(j.status, 201, "{}", j.body);
    let jid = j.body["id"].as_str().unwrap();
    let started = app
        .post(
            &format!("/api/v1/journeys/{jid}/events"),
            json!({"event": "start"}),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let v = app.get(&format!("/api/v1/journeys/{jid}/validation")).await;
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["passed"], false, "{}", v.body);
    assert!(
        v.body.to_string().contains("evaluation steps"),
        "the failed check says why: {}",
        v.body
    );

    health.finish().await;
}
