//! `waymark engagement delivery|export` against a running server: refused,
//! with what blocks it, until the marketing engagement is approved through;
//! then the ZIP is downloaded (checked against its SHA-256) with progress.

use serde_json::{Value, json};

use crate::process::{Backend, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_sqlite() {
    a_delivery_is_exported_from_the_cli(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    a_delivery_is_exported_from_the_cli(b).await;
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

async fn a_delivery_is_exported_from_the_cli(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = server
        .post(
            &http,
            "/api/v1/clients",
            json!({"name": "Northwind Ledger"}),
        )
        .await;
    let eng = server
        .post(
            &http,
            "/api/v1/engagements",
            json!({"client_id": client["id"], "name": "Launch", "pack": "marketing-engagement"}),
        )
        .await;
    let eng = eng["id"].as_str().unwrap().to_owned();

    // Nothing approved: refused, with every missing type, and a failure exit.
    let out = server.cli(&["engagement", "export", &eng]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("409 Conflict"), "{err}");
    assert!(err.contains("  - No Strategy (strategy) yet"), "{err}");
    let out = server.cli(&["engagement", "delivery", &eng]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ready: no, 5 thing(s) to do first:"));

    // Every type the delivery needs, created and approved.
    let pack: Value = http
        .get(format!("{}/api/v1/packs/marketing-engagement", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for ty in ["intake", "strategy", "creatives", "execution", "delivery"] {
        let example = pack["artifact_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == ty)
            .unwrap()["example"]
            .clone();
        let a = server
            .post(
                &http,
                "/api/v1/artifacts",
                json!({"client_id": client["id"], "engagement_id": eng, "type": ty,
                       "title": format!("Launch {ty}"), "content": example}),
            )
            .await;
        let id = a["id"].as_str().unwrap();
        for args in [
            vec!["--to", "in_review"],
            vec![
                "--to",
                "approved",
                "--override",
                "--reason",
                "approved on the call",
            ],
        ] {
            let mut cmd = vec!["artifact", "transition", id];
            cmd.extend(args);
            let out = server.cli(&cmd);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }

    let out = server.cli(&["engagement", "delivery", &eng]);
    let shown = text(&out.stdout);
    assert!(shown.starts_with("ready: yes"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("strategy") && l.contains("Launch strategy")),
        "{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("launch.zip");
    let out = server.cli(&[
        "engagement",
        "export",
        &eng,
        "--out",
        zip.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not on a terminal, progress is plain lines on stderr.
    let progress = text(&out.stderr);
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with("downloading exp_") && l.ends_with("100/100 %")),
        "{progress}"
    );
    let x: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(x["status"], "ready");
    assert_eq!(x["artifacts"], 5);
    assert_eq!(x["path"], zip.to_str().unwrap());
    let bytes = std::fs::read(&zip).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "a ZIP");
    assert_eq!(bytes.len() as u64, x["size"].as_u64().unwrap());
    assert!(!dir.path().join("launch.zip.part").exists());

    // Without --out, it is named after the engagement and the export, in the
    // working folder.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["engagement", "export", &eng])
        .env("WAYMARK_SERVER", &server.url)
        .env("WAYMARK_TOKEN", &server.token)
        .env_remove("WAYMARK_DATABASE_URL")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let name = said
        .lines()
        .find_map(|l| l.strip_prefix("written to "))
        .and_then(|l| l.strip_suffix(" (SHA-256 checked)"))
        .unwrap_or_else(|| panic!("{said}"))
        .to_owned();
    assert!(
        name.starts_with(&format!("{eng}-exp_")) && name.ends_with(".zip"),
        "{name}"
    );
    assert!(dir.path().join(&name).exists(), "{name}");
}
