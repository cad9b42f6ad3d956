//! The `waymark` binary as a user runs it: `waymark serve` as a child process on
//! a loopback port, the CLI against it, SIGKILL and SIGTERM.

mod process;

use process::{Backend, Server, waymark};
use serde_json::{Value, json};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(b) = super::Backend::postgres().await else { return };
                    super::$name(b).await;
                }
            )*
        }
    };
}

both_backends!(
    cli_walkthrough,
    answered_writes_survive_sigkill,
    sigterm_lets_the_server_stop_cleanly
);

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

async fn cli_walkthrough(backend: Backend) {
    let server = Server::start(&backend).await;
    let cli = |args: &[&str]| server.cli(args);

    let client = json_of(&cli(&[
        "client",
        "create",
        "Acme Insurance",
        "--owner",
        "ana",
        "--json",
    ]))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let eng = json_of(&cli(&[
        "engagement",
        "create",
        "--client",
        &client,
        "--name",
        "Q3",
        "--pack",
        "marketing-engagement",
        "--json",
    ]))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let art = json_of(&cli(&[
        "artifact",
        "create",
        "--client",
        &client,
        "--engagement",
        &eng,
        "--type",
        "strategy",
        "--title",
        "Growth plan",
        "--content",
        r#"{"goals":["awareness"],"budget":100}"#,
        "--json",
    ]));
    let id = art["id"].as_str().unwrap().to_owned();
    assert_eq!(art["version"], 1);
    for (i, budget) in [200, 300, 400].into_iter().enumerate() {
        let out = json_of(&cli(&[
            "artifact",
            "update",
            &id,
            "--content",
            &format!(r#"{{"goals":["leads"],"budget":{budget}}}"#),
            "--json",
        ]));
        assert_eq!(out["version"], i as i64 + 2);
    }
    let versions = json_of(&cli(&["artifact", "versions", &id, "--json"]));
    assert_eq!(versions["items"].as_array().unwrap().len(), 4);
    let diff = json_of(&cli(&[
        "artifact", "diff", &id, "--from", "1", "--to", "4", "--json",
    ]));
    let ops = diff["patch"].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|op| op["path"] == "/budget" && op["value"] == 400),
        "{diff}"
    );
    // Human output is a table naming the changed paths.
    let table = cli(&["artifact", "diff", &id, "--from", "1", "--to", "4"]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("/budget"));

    let rolled = json_of(&cli(&["artifact", "rollback", &id, "--to", "1", "--json"]));
    assert_eq!(rolled["version"], 5);
    assert_eq!(
        rolled["content"],
        json!({"goals": ["awareness"], "budget": 100})
    );

    // A stale --if-match is refused, readably, and changes nothing.
    let stale = cli(&[
        "artifact",
        "update",
        &id,
        "--content",
        "{}",
        "--if-match",
        "2",
    ]);
    assert_eq!(stale.status.code(), Some(1));
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(err.contains("412") && err.contains("version 5"), "{err}");

    // An illegal transition lists the allowed ones.
    let illegal = cli(&["artifact", "transition", &id, "--to", "approved"]);
    assert_eq!(illegal.status.code(), Some(1));
    let err = String::from_utf8_lossy(&illegal.stderr);
    assert!(err.contains("409") && err.contains("in_review"), "{err}");

    for to in ["in_review", "approved"] {
        assert_eq!(
            json_of(&cli(&["artifact", "transition", &id, "--to", to, "--json"]))["status"],
            to
        );
    }
    let refused = cli(&["artifact", "update", &id, "--content", r#"{"goals":[]}"#]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("approved"));

    let got = json_of(&cli(&["artifact", "get", &id, "--json"]));
    assert_eq!(got["version"], 5);
    assert_eq!(got["status"], "approved");
    let list = cli(&["artifact", "list", "--client", &client]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains(&id) && text.contains("Growth plan"), "{text}");
    let clients = cli(&["client", "list"]);
    assert!(String::from_utf8_lossy(&clients.stdout).contains("Acme Insurance"));
    let history = json_of(&cli(&["artifact", "history", &id, "--json"]));
    assert_eq!(history["items"].as_array().unwrap().len(), 7);

    // Without a token: a clear hint.
    let out = waymark(
        &["client", "list", "--server", &server.url],
        &[("WAYMARK_TOKEN", "")],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    server.stop_gracefully().await;
}

async fn answered_writes_survive_sigkill(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = server
        .post(&http, "/api/v1/clients", json!({"name": "Durable"}))
        .await;
    let mut ids = vec![];
    for i in 0..20 {
        let a = server
            .post(&http, "/api/v1/artifacts", json!({"client_id": client["id"], "type": "plan", "title": format!("p{i}"), "content": {"i": i}}))
            .await;
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    let last = ids.last().unwrap().clone();
    let res = http
        .put(format!("{}/api/v1/artifacts/{last}/content", server.url))
        .bearer_auth(&server.token)
        .header("If-Match", "\"1\"")
        .json(&json!({"content": {"i": "edited"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Killed right after the answer: no chance to flush anything.
    let data = server.kill();

    let server = Server::restart(&backend, data).await;
    for id in &ids {
        let res = http
            .get(format!("{}/api/v1/artifacts/{id}", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{id} lost after SIGKILL");
    }
    let res: Value = http
        .get(format!("{}/api/v1/artifacts/{last}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["version"], 2);
    assert_eq!(res["content"], json!({"i": "edited"}));
    server.stop_gracefully().await;
}

async fn sigterm_lets_the_server_stop_cleanly(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    server
        .post(&http, "/api/v1/clients", json!({"name": "x"}))
        .await;
    let status = server.stop_gracefully().await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn first_start_generates_a_private_admin_token() {
    let backend = Backend::sqlite_without_env_token();
    let server = Server::start(&backend).await;
    let file = backend.data_dir().join("admin-token");
    let secret = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(secret.starts_with("wm_"));
    assert!(
        server.stderr_text().contains(&secret),
        "the token is printed at first start"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let ok = reqwest::Client::new()
        .get(format!("{}/api/v1/version", server.url))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let version: Value = ok.json().await.unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let data = server.kill();
    let again = Server::restart(&backend, data).await;
    assert!(!again.stderr_text().contains(&secret), "printed only once");
    let ok = reqwest::Client::new()
        .get(format!("{}/api/v1/version", again.url))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    again.stop_gracefully().await;
}

#[test]
fn version_and_migrate() {
    let out = waymark(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("waymark {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = waymark(
        &["migrate", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("waymark.db").exists());
}
