//! `waymark backup` of a running SQLite installation under writes, and
//! `waymark restore` into an empty folder: the restored server answers as
//! before (artifacts, versions, the stored file's bytes) and its audit chain
//! verifies; a non-empty folder, a damaged backup and PostgreSQL are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::process::{Backend, Server, waymark};

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_installation_is_backed_up_and_restored() {
    let backend = Backend::sqlite();
    let data = backend.data_dir().display().to_string();
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = server
        .post(&http, "/api/v1/clients", json!({"name": "Harbour Works"}))
        .await;
    let client_id = client["id"].as_str().unwrap().to_owned();
    let doc = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": client_id, "type": "sop", "title": "Support SOP",
                   "content": {"steps": ["triage"]}}),
        )
        .await;
    let doc_id = doc["id"].as_str().unwrap().to_owned();
    let res = http
        .put(format!("{}/api/v1/artifacts/{doc_id}/content", server.url))
        .bearer_auth(&server.token)
        .header("If-Match", "\"1\"")
        .json(&json!({"content": {"steps": ["triage", "escalate"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csv = b"district,reading\nharbour,41.5\nold town,39\n".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("client_id", client_id.clone())
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
    let file: Value = res.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();

    // Writes keep coming while the backup is taken; every one answered
    // before it began is in it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, url, token, stop) = (
            http.clone(),
            server.url.clone(),
            server.token.clone(),
            stop.clone(),
        );
        let client_id = client_id.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                let res = http
                    .post(format!("{url}/api/v1/artifacts"))
                    .bearer_auth(&token)
                    .json(&json!({"client_id": client_id, "type": "note",
                                  "title": format!("Note {written}"), "content": {"n": written}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                written += 1;
            }
            written
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = server.get_json(&http, "/api/v1/artifacts?limit=200").await;
    let answered: Vec<String> = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("waymark-backup.zip");
    let zip_arg = zip.display().to_string();
    let out = tokio::task::spawn_blocking({
        let (data, zip_arg) = (data.clone(), zip_arg.clone());
        move || waymark(&["backup", "--to", &zip_arg, "--data-dir", &data], &[])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 0, "writes ran during the backup");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("backed up {data} to {zip_arg} (")),
        "{}",
        text(&out.stdout)
    );
    assert!(zip.is_file());

    // A backup never overwrites a file.
    let again = waymark(&["backup", "--to", &zip_arg, "--data-dir", &data], &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    // Nor is one restored over data.
    let over = waymark(&["restore", "--from", &zip_arg, "--data-dir", &data], &[]);
    assert!(!over.status.success());
    assert!(
        text(&over.stderr).contains("is not empty"),
        "{}",
        text(&over.stderr)
    );

    // A damaged backup is refused and leaves no folder behind.
    let bytes = std::fs::read(&zip).unwrap();
    let damaged = dir.path().join("damaged.zip");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let target = dir.path().join("from-damaged");
    let out = waymark(
        &[
            "restore",
            "--from",
            &damaged.display().to_string(),
            "--data-dir",
            &target.display().to_string(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a Waymark backup"),
        "{}",
        text(&out.stderr)
    );
    assert!(!target.exists());

    let original_doc = server
        .get_json(&http, &format!("/api/v1/artifacts/{doc_id}"))
        .await;
    let original_versions = server
        .get_json(&http, &format!("/api/v1/artifacts/{doc_id}/versions"))
        .await;
    server.stop_gracefully().await;

    let restored = dir.path().join("restored");
    let out = waymark(
        &[
            "restore",
            "--from",
            &zip_arg,
            "--data-dir",
            &restored.display().to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("audit chain intact"),
        "{}",
        text(&out.stdout)
    );
    let verify = waymark(
        &[
            "audit",
            "verify",
            "--data-dir",
            &restored.display().to_string(),
        ],
        &[],
    );
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    let server = Server::restart(&backend, restored.clone()).await;
    assert_eq!(
        server
            .get_json(&http, &format!("/api/v1/artifacts/{doc_id}"))
            .await,
        original_doc
    );
    assert_eq!(
        server
            .get_json(&http, &format!("/api/v1/artifacts/{doc_id}/versions"))
            .await,
        original_versions
    );
    for id in &answered {
        let (status, _) = server.get(&http, &format!("/api/v1/artifacts/{id}")).await;
        assert_eq!(status, 200, "{id}, answered before the backup, is restored");
    }
    let (status, body) = server
        .get(&http, &format!("/api/v1/files/{file_id}/content"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, csv, "the stored file's bytes are restored");
    server.stop_gracefully().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_backed_up_with_its_own_tools() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let url = backend.database_url().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("b.zip").display().to_string();
    for args in [
        vec!["backup", "--to", &zip, "--database-url", &url],
        vec!["restore", "--from", &zip, "--database-url", &url],
    ] {
        let out = waymark(&args, &[]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("PostgreSQL") && err.contains("pg_dump"),
            "{err}"
        );
    }
    assert!(!dir.path().join("b.zip").exists());
}
