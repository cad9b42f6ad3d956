//! Faults. PostgreSQL restarted under load: requests in flight fail with 503
//! and `Retry-After`, `/readyz` says the database is unreachable, the server
//! and a worker reconnect by themselves, every answered write is kept and
//! every task completes once. A SQLite data folder on a full disk (a small
//! tmpfs): writes fail with 503 `storage_full`, reads go on, nothing is
//! corrupted, and writes succeed again once there is space.
//!
//! Both need root (to run a PostgreSQL server of the test's own as the
//! `postgres` user, and to mount a tmpfs); CI runs as root. Elsewhere they
//! print SKIPPED.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash::{
    assert_audit_verifies, assert_each_task_completed_once, new_client, submit, w2_tasks,
    wait_for_completed,
};
use crate::process::{Backend, Server, Worker, waymark};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL server of the test's own, on a free port, run as `postgres`.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if !is_root() {
            eprintln!("SKIPPED (PostgreSQL restart): needs root to run a server as postgres");
            return None;
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .collect();
        versions.sort();
        let Some(bin) = versions.pop() else {
            eprintln!("SKIPPED (PostgreSQL restart): no initdb under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("chown").args(["postgres:", &dir.path().display().to_string()]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { dir, bin, port };
        run(cluster.as_postgres("initdb").args([
            "-D",
            &cluster.data().display().to_string(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        cluster.up();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        run(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data().display().to_string(),
            "-l",
            &self.dir.path().join("log").display().to_string(),
            "-o",
            &format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            ),
            "-w",
            "start",
        ]));
    }

    /// A fast shutdown: sessions are ended, in-flight transactions rolled back.
    fn down(&self) {
        run(self.as_postgres("pg_ctl").args([
            "-D",
            &self.data().display().to_string(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}

/// What a stream of writes got back.
#[derive(Default)]
struct Outcomes {
    /// Artifacts created (201).
    answered: Vec<String>,
    /// 503s, each with `Retry-After`.
    unavailable: usize,
    /// Anything else: it fails the test.
    other: Vec<String>,
}

/// Creates artifacts in a loop until `stop`, recording each answer.
fn writer(
    http: reqwest::Client,
    server: &Server,
    client: String,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Outcomes>>,
    body: impl Fn(usize) -> Value + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (url, token) = (server.url.clone(), server.token.clone());
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut b = body(n);
            b["client_id"] = json!(client);
            n += 1;
            let res = http
                .post(format!("{url}/api/v1/artifacts"))
                .bearer_auth(&token)
                .json(&b)
                .send()
                .await;
            let res = match res {
                Ok(r) => r,
                Err(e) => {
                    out.lock().unwrap().other.push(format!("no answer: {e}"));
                    continue;
                }
            };
            let status = res.status().as_u16();
            let retry = res.headers().get("retry-after").is_some();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            {
                let mut o = out.lock().unwrap();
                match status {
                    201 => o.answered.push(body["id"].as_str().unwrap().to_owned()),
                    503 if retry => o.unavailable += 1,
                    _ => o
                        .other
                        .push(format!("{status} (Retry-After: {retry}) {body}")),
                }
            }
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

async fn status_of(http: &reqwest::Client, server: &Server, path: &str) -> (u16, Value) {
    let res = http
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Polls `path` until it answers `want`; panics after `limit`.
async fn wait_for_status(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    want: u16,
    limit: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = status_of(http, server, path).await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "{path} still answers {status} after {limit:?}: {body}\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let Some(pg) = Cluster::start() else {
        return;
    };
    let backend = Backend::postgres_at(pg.url());
    let server = Server::start(&backend).await;
    let worker = Worker::start(&backend, &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let client = new_client(&server, &http).await;
    submit(&server, &http, &client, "before the restart", w2_tasks()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            writer(
                http.clone(),
                &server,
                client.clone(),
                stop.clone(),
                out.clone(),
                move |n| json!({"type": "note", "title": format!("Note {w}.{n}"), "content": {"n": n}}),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    pg.down();
    // While it is down: the server says it is not ready, and a write waits
    // for a connection at most a few seconds, then fails with 503.
    let (status, ready) = status_of(&http, &server, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["database"], "unreachable");
    let res = http
        .post(format!("{}/api/v1/artifacts", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"client_id": client, "type": "note", "title": "While down", "content": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get("retry-after").is_some());
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "unavailable", "{problem}");
    pg.up();

    // Back: the server, its workers and the worker process reconnect.
    wait_for_status(&http, &server, "/readyz", 200, Duration::from_secs(30)).await;
    let answered_before = { out.lock().unwrap().answered.len() };
    let start = Instant::now();
    loop {
        if out.lock().unwrap().answered.len() >= answered_before + 20 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "writes did not resume:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    submit(&server, &http, &client, "after the restart", w2_tasks()).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    wait_for_completed(&backend, 2000, Duration::from_secs(120), || {
        format!("{}\n--- worker ---\n{}", server.output(), worker.output())
    })
    .await;

    let out = std::mem::take(&mut *out.lock().unwrap());
    assert!(
        out.other.is_empty(),
        "every write was answered 201, or 503 with Retry-After: {:?}",
        out.other
    );
    for id in &out.answered {
        let (status, _) = status_of(&http, &server, &format!("/api/v1/artifacts/{id}")).await;
        assert_eq!(status, 200, "{id} was answered 201 and must be kept");
    }
    eprintln!(
        "{} writes answered, {} refused with 503 while PostgreSQL restarted",
        out.answered.len(),
        out.unavailable
    );
    assert_each_task_completed_once(&backend, 2, 2000).await;
    worker.stop_gracefully().await;
    server.stop_gracefully().await;
    assert_audit_verifies(&backend);
}

/// A tmpfs mounted on a folder, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED (full disk): cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk() {
    if !is_root() {
        eprintln!("SKIPPED (full disk): needs root to mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "12m") else {
        return;
    };
    let backend = Backend::sqlite_in(dir);
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let client = new_client(&server, &http).await;
    let first = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "note", "title": "Kept", "content": {"n": 0}}),
        )
        .await;
    let first = first["id"].as_str().unwrap().to_owned();

    // Fill the disk: documents of ~200 KB each until the writes are refused.
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let filler = "lorem ipsum dolor sit amet ".repeat(7_500);
    let w = writer(
        http.clone(),
        &server,
        client.clone(),
        stop.clone(),
        out.clone(),
        move |n| json!({"type": "note", "title": format!("Big {n}"), "content": {"text": filler, "n": n}}),
    );
    let start = Instant::now();
    while out.lock().unwrap().unavailable < 5 {
        {
            let o = out.lock().unwrap();
            assert!(
                o.other.is_empty(),
                "a write on a full disk was answered otherwise: {:?}\n{}",
                o.other,
                server.output()
            );
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the disk never filled ({} writes answered)",
                o.answered.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    w.await.unwrap();
    let mut answered = std::mem::take(&mut out.lock().unwrap().answered);
    assert!(
        !answered.is_empty(),
        "some writes fitted before the disk filled"
    );

    // Full: a write is refused with a clear problem, reads go on. (A
    // checkpoint may free a little of the write-ahead log meanwhile: a write
    // that still fits is answered 201, the next ones fill it again.)
    let problem = loop {
        let res = http
            .post(format!("{}/api/v1/artifacts", server.url))
            .bearer_auth(&server.token)
            .json(
                &json!({"client_id": client, "type": "note", "title": "No room",
                          "content": {"text": "x".repeat(300_000)}}),
            )
            .send()
            .await
            .unwrap();
        if res.status() == 201 {
            assert!(answered.len() < 10_000, "the disk never filled again");
            let made: Value = res.json().await.unwrap();
            answered.push(made["id"].as_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(res.status(), 503);
        assert!(res.headers().get("retry-after").is_some());
        break res.json::<Value>().await.unwrap();
    };
    assert_eq!(problem["code"], "storage_full", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("disk is full"),
        "{problem}"
    );
    for id in answered.iter().chain([&first]) {
        let (status, _) = status_of(&http, &server, &format!("/api/v1/artifacts/{id}")).await;
        assert_eq!(status, 200, "{id} reads while the disk is full");
    }
    let (status, _) = status_of(&http, &server, "/readyz").await;
    assert_eq!(status, 200, "reads are served: the server is ready");

    // Space returns: writes succeed again, and nothing was corrupted.
    disk.resize("64m");
    let after = server
        .post(
            &http,
            "/api/v1/artifacts",
            json!({"client_id": client, "type": "note", "title": "After", "content": {"n": 1}}),
        )
        .await;
    assert!(after["id"].is_string());
    for id in answered.iter().chain([&first]) {
        let (status, _) = status_of(&http, &server, &format!("/api/v1/artifacts/{id}")).await;
        assert_eq!(status, 200, "{id} is kept");
    }
    server.stop_gracefully().await;
    let integrity = backend.text("PRAGMA integrity_check").await;
    assert_eq!(integrity, "ok");
    assert_audit_verifies(&backend);
    let flags = backend.store_flags();
    let mut args = vec!["audit", "verify"];
    args.extend(flags.iter().map(String::as_str));
    assert!(waymark(&args, &[]).status.success());
    drop(disk);
}
