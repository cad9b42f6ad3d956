//! The `waymark` binary as a user runs it: `waymark serve` as a child process on
//! a loopback port, the CLI against it, SIGKILL and SIGTERM.

mod agent;
mod audit;
mod backup;
mod crash;
mod export;
mod faults;
mod operations;
mod otel;
mod plan;
mod process;
mod readme;
mod replicas;
mod transfer;

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
    sigterm_lets_the_server_stop_cleanly,
    selftest_and_pack_install_against_a_running_server,
    users_and_tokens_from_the_cli,
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
    // Engagements name a pack; artifacts outside one are free-form documents.
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
    assert!(eng.starts_with("eng_"));
    let art = json_of(&cli(&[
        "artifact",
        "create",
        "--client",
        &client,
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

    assert_eq!(
        json_of(&cli(&[
            "artifact",
            "transition",
            &id,
            "--to",
            "in_review",
            "--json"
        ]))["status"],
        "in_review"
    );
    // Approving goes through the client's approvals; an admin overrides,
    // with a reason.
    let through = cli(&["artifact", "transition", &id, "--to", "approved"]);
    assert_eq!(through.status.code(), Some(1));
    let err = String::from_utf8_lossy(&through.stderr);
    assert!(err.contains("403") && err.contains("/approve"), "{err}");
    assert_eq!(
        json_of(&cli(&[
            "artifact",
            "transition",
            &id,
            "--to",
            "approved",
            "--override",
            "--reason",
            "signed off in the workshop",
            "--json"
        ]))["status"],
        "approved"
    );
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

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_selftest_passed(out: &std::process::Output) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "selftest failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS  ")).count(),
        8,
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("PASS  8. Stale cascade (Upstream intake changed from v1 to v2)"),
        "{stdout}"
    );
}

#[test]
fn selftest_runs_on_a_temporary_database() {
    assert_selftest_passed(&waymark(&["selftest"], &[]));
}

#[test]
fn selftest_writes_into_a_server_only_when_its_command_line_names_one() {
    // WAYMARK_SERVER (set for the client commands) names a server that does
    // not answer: selftest ignores it and checks a temporary database.
    let out = waymark(
        &["selftest"],
        &[
            ("WAYMARK_SERVER", "http://127.0.0.1:9"),
            ("WAYMARK_TOKEN", "wm_x"),
        ],
    );
    assert_selftest_passed(&out);
}

#[test]
fn local_commands_refuse_a_folder_without_waymark_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-here");
    let data_flag = data.to_str().unwrap();
    let out = waymark(&["audit", "verify", "--data-dir", data_flag], &[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("no Waymark data"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
    let pack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/renewal");
    let out = waymark(
        &[
            "pack",
            "install",
            pack.to_str().unwrap(),
            "--data-dir",
            data_flag,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out).1.contains("no Waymark data"));
    // Listing the packs shows the built-in ones and says why nothing more.
    let out = waymark(&["pack", "list", "--data-dir", data_flag], &[]);
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    assert!(stdout.contains("marketing-engagement"), "{stdout}");
    assert!(stdout.contains("no Waymark data"), "{stdout}");
    assert!(!data.exists(), "nothing was created");
}

#[test]
fn selftest_fails_without_a_server_to_talk_to() {
    let out = waymark(
        &[
            "selftest",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "wm_nothing",
        ],
        &[],
    );
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL  setup"), "{stdout}");
}

/// A pack folder of one's own, copied from a built-in one and renamed.
fn own_pack(dir: &std::path::Path) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/renewal");
    let target = dir.join("my-renewal");
    for entry in walk(&root) {
        let rel = entry.strip_prefix(&root).unwrap();
        let to = target.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let manifest = target.join("pack.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        yaml.replacen("name: renewal", "name: my-renewal", 1),
    )
    .unwrap();
    target
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn pack_validate_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = own_pack(tmp.path());
    let ok = waymark(&["pack", "validate", pack.to_str().unwrap()], &[]);
    let (stdout, stderr) = text(&ok);
    assert!(ok.status.success(), "{stderr}");
    assert!(stdout.contains("is a valid pack: my-renewal"), "{stdout}");

    let manifest = pack.join("pack.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    let line = yaml
        .lines()
        .position(|l| l.trim() == "requires: [assessment]")
        .expect("the renewal pack has a type requiring assessment")
        + 1;
    std::fs::write(
        &manifest,
        yaml.replacen("requires: [assessment]", "requires: [assesment]", 1),
    )
    .unwrap();
    let bad = waymark(&["pack", "validate", pack.to_str().unwrap()], &[]);
    let (_, stderr) = text(&bad);
    assert!(!bad.status.success());
    assert!(
        stderr.contains(&format!("pack.yaml:{line}:"))
            && stderr.contains("unknown type `assesment`"),
        "{stderr}"
    );
    std::fs::write(&manifest, "name: broken\ntypes: [\n").unwrap();
    let (_, stderr) = text(&waymark(&["pack", "validate", pack.to_str().unwrap()], &[]));
    assert!(stderr.contains("pack.yaml:"), "{stderr}");
}

async fn selftest_and_pack_install_against_a_running_server(backend: Backend) {
    let server = Server::start(&backend).await;
    assert_selftest_passed(&server.cli(&["selftest"]));

    // Installed by another process into the same database: the server sees it.
    let tmp = tempfile::tempdir().unwrap();
    let pack = own_pack(tmp.path());
    let mut args = vec![
        "pack".to_owned(),
        "install".into(),
        pack.display().to_string(),
    ];
    args.extend(backend.store_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = waymark(&args, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("installed my-renewal 1.0.0"), "{stdout}");
    let http = reqwest::Client::new();
    let got: Value = http
        .get(format!("{}/api/v1/packs/my-renewal", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["builtin"], false, "{got}");
    assert_eq!(got["artifact_types"].as_array().unwrap().len(), 6);
    let mut list = vec!["pack".to_owned(), "list".into()];
    list.extend(backend.store_flags());
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let (stdout, _) = text(&waymark(&list, &[]));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("my-renewal") && l.contains("installed")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("marketing-engagement") && l.contains("built-in")),
        "{stdout}"
    );
}

/// `waymark user create --password-stdin`, `user list`, `token create|list|revoke`.
async fn users_and_tokens_from_the_cli(backend: Backend) {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let server = Server::start(&backend).await;
    let cli = |args: &[&str]| server.cli(args);

    // The password comes on stdin, never on the command line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args([
            "user",
            "create",
            "--email",
            "Oz@Example.com",
            "--name",
            "Oz",
            "--role",
            "operator",
            "--password-stdin",
            "--json",
        ])
        .env("WAYMARK_SERVER", &server.url)
        .env("WAYMARK_TOKEN", &server.token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery staple\n")
        .unwrap();
    let user = json_of(&child.wait_with_output().unwrap());
    assert_eq!(user["email"], "oz@example.com");
    assert_eq!(user["has_password"], true);
    let user_id = user["id"].as_str().unwrap().to_owned();

    let refused = cli(&[
        "user", "create", "--email", "a@x.test", "--name", "A", "--role", "client",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("422") && err.contains("/client_id"), "{err}");

    let users = cli(&["user", "list"]);
    assert!(users.status.success());
    let text = String::from_utf8_lossy(&users.stdout);
    assert!(
        text.contains(&user_id) && text.contains("oz@example.com"),
        "{text}"
    );

    // Human output shows the secret once and says so.
    let made = cli(&["token", "create", "--name", "laptop", "--user-id", &user_id]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let text = String::from_utf8_lossy(&made.stdout);
    assert!(text.contains("token: wm_"), "{text}");
    assert!(text.contains("will not be shown again"), "{text}");

    let made = json_of(&cli(&[
        "token",
        "create",
        "--name",
        "ci",
        "--user-id",
        &user_id,
        "--json",
    ]));
    let secret = made["token"].as_str().unwrap().to_owned();
    let token_id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["role"], "operator");

    // The new token works, and lists its user's tokens (never a secret).
    let as_oz = |args: &[&str]| {
        waymark(
            args,
            &[("WAYMARK_SERVER", &server.url), ("WAYMARK_TOKEN", &secret)],
        )
    };
    let list = json_of(&as_oz(&["token", "list", "--json"]));
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert!(items.iter().all(|t| t.get("token").is_none()));
    let table = cli(&["token", "list", "--user-id", &user_id]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&token_id));

    let revoked = json_of(&cli(&["token", "revoke", &token_id, "--json"]));
    assert!(revoked["revoked_at"].is_string());
    let out = as_oz(&["token", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    server.stop_gracefully().await;
}

#[test]
fn bench_ui_renders_every_page_it_reports() {
    // A small database: the bench checks each answer is the page it names.
    let out = waymark(
        &[
            "bench",
            "ui",
            "--artifacts",
            "200",
            "--requests",
            "3",
            "--json",
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let pages: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = pages.iter().map(|p| p["page"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["dashboard", "board", "artifact", "journey"],
        "{stdout}"
    );
    for p in &pages {
        assert_eq!(p["requests"], 3, "{p}");
        assert!(p["p99_ms"].as_f64().unwrap() > 0.0, "{p}");
    }
}
