//! `waymark export` of a SQLite installation and `waymark import` into an
//! empty PostgreSQL database: the PostgreSQL server answers every read as
//! the SQLite one did (records, versions, history, comments, files and their
//! bytes, journeys, tasks, search hits, the audit log) and its audit chain
//! verifies; a damaged export and a database with records are refused and
//! change nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Backend, Server, waymark};

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

async fn send(
    http: &reqwest::Client,
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let res = http
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .header("If-Match", "\"1\"")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every read the test compares, by path; bytes for the stored files.
async fn reads(http: &reqwest::Client, server: &Server) -> Vec<(String, Value)> {
    let mut paths: Vec<String> = [
        "/api/v1/clients?limit=200",
        "/api/v1/engagements?limit=200",
        "/api/v1/artifacts?limit=200",
        "/api/v1/files?limit=200",
        "/api/v1/journeys?limit=200",
        "/api/v1/tasks?limit=200",
        "/api/v1/users?limit=200",
        "/api/v1/audit?limit=200",
        "/api/v1/search?q=cutover",
        "/api/v1/search?q=harbour",
        "/api/v1/artifacts?q=rollback",
    ]
    .map(String::from)
    .to_vec();
    let artifacts = server.get_json(http, "/api/v1/artifacts?limit=200").await;
    for id in ids(&artifacts) {
        for sub in ["", "/versions", "/history", "/comments", "/lineage"] {
            paths.push(format!("/api/v1/artifacts/{id}{sub}"));
        }
    }
    let journeys = server.get_json(http, "/api/v1/journeys?limit=200").await;
    for id in ids(&journeys) {
        for sub in ["", "/history", "/validation"] {
            paths.push(format!("/api/v1/journeys/{id}{sub}"));
        }
    }
    let engagements = server.get_json(http, "/api/v1/engagements?limit=200").await;
    for id in ids(&engagements) {
        for sub in ["", "/board", "/delivery", "/exports"] {
            paths.push(format!("/api/v1/engagements/{id}{sub}"));
        }
    }
    let files = server.get_json(http, "/api/v1/files?limit=200").await;
    for id in ids(&files) {
        paths.push(format!("/api/v1/files/{id}"));
        paths.push(format!("/api/v1/files/{id}/text"));
    }
    let mut out = Vec::new();
    for p in paths {
        let mut v = server.get_json(http, &p).await;
        if p.contains("search?") {
            // The same hits, snippets and order; the scores are each
            // database's own (SQLite's bm25, PostgreSQL's ts_rank_cd).
            for hit in v["items"].as_array_mut().unwrap() {
                hit.as_object_mut().unwrap().remove("rank");
            }
        }
        out.push((p, v));
    }
    for id in ids(&files) {
        let p = format!("/api/v1/files/{id}/content");
        let (status, bytes) = server.get(http, &p).await;
        assert_eq!(status, 200, "{p}");
        out.push((p, json!(bytes)));
    }
    out
}

/// Waits until the server has nothing more to do by itself (the extraction
/// of the uploaded file, the journey's automatic work): the audit log stops
/// growing.
async fn settle(http: &reqwest::Client, server: &Server) {
    let mut last = Value::Null;
    for _ in 0..60 {
        let now = server.get_json(http, "/api/v1/audit?limit=200").await;
        let files = server.get_json(http, "/api/v1/files?limit=200").await;
        let extracting = files["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["status"] == "stored" || f["status"] == "extracting");
        if now == last && !extracting {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the server kept writing:\n{}", server.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_moves_to_postgres_with_identical_reads() {
    let Some(pg) = Backend::postgres().await else {
        return;
    };
    let lite = Backend::sqlite();
    let server = Server::start(&lite).await;
    let http = reqwest::Client::new();
    use reqwest::Method;

    let acme = server
        .post(
            &http,
            "/api/v1/clients",
            json!({"name": "Harbour Works", "arr": 120000.5}),
        )
        .await;
    let acme = acme["id"].as_str().unwrap().to_owned();
    let globex = server
        .post(
            &http,
            "/api/v1/clients",
            json!({"name": "Globex — ünïcode"}),
        )
        .await;
    let globex = globex["id"].as_str().unwrap().to_owned();
    let engagement = server
        .post(
            &http,
            "/api/v1/engagements",
            json!({"client_id": acme, "name": "Data platform", "pack": "data-flow"}),
        )
        .await;
    let engagement = engagement["id"].as_str().unwrap().to_owned();
    let plan = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": acme, "type": "sop",
                   "title": "Cutover plan", "content": {"steps": ["inventory", "cutover"],
                   "budget": 12.5, "nested": {"z": 1, "a": null}}}),
        )
        .await;
    let plan = plan["id"].as_str().unwrap().to_owned();
    send(
        &http,
        &server,
        Method::PUT,
        &format!("/api/v1/artifacts/{plan}/content"),
        json!({"content": {"steps": ["inventory", "cutover", "rollback"], "budget": 14}}),
    )
    .await;
    let other = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": globex, "type": "note", "title": "Ümlauts \u{1F600} \"quoted\"",
                   "content": {"text": "a \"quoted\" harbour\nline"}}),
        )
        .await;
    assert!(other["id"].is_string());
    send(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/artifacts/{plan}/share"),
        json!({"message": "Have a look"}),
    )
    .await;
    let comment = send(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/artifacts/{plan}/comments"),
        json!({"body": "Why a cutover on a Friday?"}),
    )
    .await;
    send(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/artifacts/{plan}/comments"),
        json!({"body": "internal: ask the DBA", "parent_id": comment["id"], "internal": true}),
    )
    .await;
    let csv = b"district,reading\nharbour,41.5\nold town,39\n".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("client_id", acme.clone())
        .text("engagement_id", engagement.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.clone()).file_name("readings.csv"),
        );
    let res = http
        .post(format!("{}/api/v1/files", server.url))
        .bearer_auth(&server.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let journey = server
        .post(
            &http,
            "/api/v1/journeys",
            json!({"client_id": acme, "template": "client-onboarding"}),
        )
        .await;
    let journey = journey["id"].as_str().unwrap().to_owned();
    send(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/journeys/{journey}/events"),
        json!({"event": "start"}),
    )
    .await;
    send(
        &http,
        &server,
        Method::POST,
        &format!("/api/v1/journeys/{journey}/metrics"),
        json!({"observations": [{"name": "search_precision", "value": 0.83}]}),
    )
    .await;
    settle(&http, &server).await;

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("export");
    let out_arg = out_dir.display().to_string();
    let data = lite.data_dir().display().to_string();
    let out = tokio::task::spawn_blocking({
        let (out_arg, data) = (out_arg.clone(), data.clone());
        move || waymark(&["export", "--to", &out_arg, "--data-dir", &data], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("exported ") && said.contains(" and 1 stored files to "),
        "{said}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["source"], "sqlite");
    let tables: Vec<&str> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let at = |t: &str| tables.iter().position(|n| *n == t).unwrap();
    assert!(at("clients") < at("artifacts") && at("artifacts") < at("artifact_versions"));
    let lines = std::fs::read_to_string(out_dir.join("tables/clients.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");

    let before = reads(&http, &server).await;
    assert!(before.len() > 30, "{} reads", before.len());

    // A damaged export is refused before anything is written.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir_all(damaged.join("tables")).unwrap();
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
        }
    }
    for entry in std::fs::read_dir(out_dir.join("tables")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join("tables").join(entry.file_name())).unwrap();
    }
    let clients = damaged.join("tables/clients.jsonl");
    let tampered = std::fs::read_to_string(&clients)
        .unwrap()
        .replace("Harbour Works", "Harbour Wreck");
    std::fs::write(&clients, tampered).unwrap();
    let mut flags = vec![
        "import".to_owned(),
        "--from".into(),
        damaged.display().to_string(),
    ];
    flags.extend(pg.store_flags());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = waymark(&args, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not match the manifest"),
        "{}",
        text(&out.stderr)
    );

    let mut flags = vec!["import".to_owned(), "--from".into(), out_arg.clone()];
    flags.extend(pg.store_flags());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = waymark(&args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("audit chain intact"),
        "{}",
        text(&out.stdout)
    );

    // Importing again is refused: the database holds records now.
    let again = waymark(&args, &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already holds records"),
        "{}",
        text(&again.stderr)
    );

    let mut verify = vec!["audit".to_owned(), "verify".into()];
    verify.extend(pg.store_flags());
    let verify: Vec<&str> = verify.iter().map(String::as_str).collect();
    let out = waymark(&verify, &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    let moved = Server::start(&pg).await;
    let after = reads(&http, &moved).await;
    assert_eq!(before.len(), after.len());
    for ((path, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{path} reads differently after the move");
    }

    // The moved installation goes on: writes number after the imported ones.
    let note = moved
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": globex, "type": "note", "title": "After the move",
                   "content": {}}),
        )
        .await;
    let history = moved
        .get_json(
            &http,
            &format!("/api/v1/artifacts/{}/history", note["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
    moved.stop_gracefully().await;
    let out = waymark(&verify, &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    server.stop_gracefully().await;
}
