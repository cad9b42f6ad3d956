//! Running `waymark` as a child process.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "wm_test_admin_token_0123456789abcdef";

/// Where a server keeps its data: a folder, and a PostgreSQL URL or not.
pub struct Backend {
    dir: tempfile::TempDir,
    database_url: Option<String>,
    env_token: bool,
    _db: Option<waymark_store::testing::TestDb>,
}

impl Backend {
    pub fn sqlite() -> Self {
        Backend {
            dir: tempfile::tempdir().unwrap(),
            database_url: None,
            env_token: true,
            _db: None,
        }
    }

    pub fn sqlite_without_env_token() -> Self {
        Backend {
            env_token: false,
            ..Self::sqlite()
        }
    }

    pub async fn postgres() -> Option<Self> {
        let db = waymark_store::testing::postgres().await?;
        Some(Backend {
            dir: tempfile::tempdir().unwrap(),
            database_url: db.url.clone(),
            env_token: true,
            _db: Some(db),
        })
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The flags that point a maintenance command (`migrate`, `pack install`) at
    /// this backend's database.
    pub fn store_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--data-dir".to_owned(),
            self.dir.path().display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            flags.push("--database-url".into());
            flags.push(url.clone());
        }
        flags
    }
}

impl Backend {
    /// Runs a raw SQL statement on the database behind the server's back.
    pub async fn execute_raw(&self, sql: &str) -> u64 {
        use sqlx::Connection;
        match &self.database_url {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .unwrap()
                    .rows_affected()
            }
            None => {
                let url = format!("sqlite://{}", self.dir.path().join("waymark.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .unwrap()
                    .rows_affected()
            }
        }
    }
}

/// Runs the binary to completion.
pub fn waymark(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waymark"));
    cmd.args(args)
        .env_remove("WAYMARK_TOKEN")
        .env_remove("WAYMARK_SERVER")
        .env_remove("WAYMARK_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub struct Server {
    child: tokio::process::Child,
    pub url: String,
    pub token: String,
    stderr: Arc<Mutex<String>>,
    data_dir: PathBuf,
}

impl Server {
    pub async fn start(backend: &Backend) -> Server {
        Self::spawn(backend, backend.dir.path().to_path_buf()).await
    }

    pub async fn restart(backend: &Backend, data_dir: PathBuf) -> Server {
        Self::spawn(backend, data_dir).await
    }

    async fn spawn(backend: &Backend, data_dir: PathBuf) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_waymark"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env_remove("WAYMARK_DATABASE_URL")
            .env_remove("WAYMARK_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(url) = &backend.database_url {
            cmd.arg("--database-url").arg(url);
        }
        if backend.env_token {
            cmd.env("WAYMARK_ADMIN_TOKEN", TOKEN);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = text.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("Waymark listening on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url);
                    }
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(url)) => url,
            _ => panic!("waymark serve did not start:\n{}", text.lock().unwrap()),
        };
        let token = if backend.env_token {
            TOKEN.to_owned()
        } else {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .unwrap()
                .trim()
                .to_owned()
        };
        Server {
            child,
            url,
            token,
            stderr: text,
            data_dir,
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Runs a CLI command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        waymark(
            args,
            &[
                ("WAYMARK_SERVER", &self.url),
                ("WAYMARK_TOKEN", &self.token),
            ],
        )
    }

    pub async fn post(&self, http: &reqwest::Client, path: &str, body: Value) -> Value {
        let res = http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json().await.unwrap()
    }

    /// SIGKILL; answers the data folder for a restart.
    pub fn kill(mut self) -> PathBuf {
        self.child.start_kill().unwrap();
        let _ = reap(&mut self.child);
        self.data_dir.clone()
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop_gracefully(mut self) -> ExitStatus {
        let pid = self.child.id().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30 s of SIGTERM")
            .unwrap()
    }
}

fn reap(child: &mut tokio::process::Child) -> std::io::Result<()> {
    // start_kill sends SIGKILL; reap synchronously so the port and files are free.
    for _ in 0..500 {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
