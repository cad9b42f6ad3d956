//! `waymark audit verify` on a busy database, and on one with a tampered row.

use serde_json::json;

use crate::process::{Backend, Server, waymark};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_sqlite() {
    audit_verify_passes_when_busy_and_names_a_tampered_row(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    audit_verify_passes_when_busy_and_names_a_tampered_row(b).await;
}

fn verify(backend: &Backend) -> (bool, String) {
    let flags = backend.store_flags();
    let mut args = vec!["audit", "verify"];
    args.extend(flags.iter().map(String::as_str));
    let out = waymark(&args, &[]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn audit_verify_passes_when_busy_and_names_a_tampered_row(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    // Writers keep the database busy while the chain is verified.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let http = http.clone();
            let url = server.url.clone();
            let token = server.token.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let res = http
                        .post(format!("{url}/api/v1/clients"))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("Client {w}-{i}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201);
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (ok, text) = tokio::task::spawn_blocking({
        let flags = backend.store_flags();
        move || {
            let mut args = vec!["audit", "verify"];
            args.extend(flags.iter().map(String::as_str));
            let out = waymark(&args, &[]);
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "verify failed while the server was busy: {text}");
    assert!(text.contains("audit chain intact"), "{text}");
    for w in writers {
        w.await.unwrap();
    }
    let (ok, text) = verify(&backend);
    assert!(ok, "{text}");
    assert!(
        text.contains("intact: 161 records"),
        "160 clients and the admin token: {text}"
    );

    let changed = backend
        .execute_raw("UPDATE audit_log SET target = 'cli_forged' WHERE seq = 42")
        .await;
    assert_eq!(changed, 1);
    let (ok, text) = verify(&backend);
    assert!(!ok, "a tampered chain must fail: {text}");
    assert!(text.contains("BROKEN at record 42"), "{text}");
    drop(server);
}
