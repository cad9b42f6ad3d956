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

    /// A PostgreSQL database of the test's own (a server it starts and
    /// restarts), at `url`.
    pub fn postgres_at(url: String) -> Self {
        Backend {
            dir: tempfile::tempdir().unwrap(),
            database_url: Some(url),
            env_token: true,
            _db: None,
        }
    }

    /// SQLite in a folder the test made (on a small disk, say).
    pub fn sqlite_in(dir: tempfile::TempDir) -> Self {
        Backend {
            dir,
            database_url: None,
            env_token: true,
            _db: None,
        }
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

impl Backend {
    /// The PostgreSQL URL of this backend's database, if it is one.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Whether the server keeps its data in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.is_some()
    }

    /// The flags that point `waymark serve` or `waymark worker` at this backend.
    fn server_flags(&self, data_dir: &Path) -> Vec<String> {
        let mut flags = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
        if let Some(url) = &self.database_url {
            flags.push("--database-url".into());
            flags.push(url.clone());
        }
        flags
    }

    /// Runs a query answering one integer (a count), behind the server's back.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        let res = match &self.database_url {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await
            }
            None => {
                let mut c = sqlx::SqliteConnection::connect(&self.sqlite_url())
                    .await
                    .unwrap();
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await
            }
        };
        res.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query answering one text (SQLite), behind the server's back.
    pub async fn text(&self, sql: &str) -> String {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&self.sqlite_url())
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>(sql)
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query answering (text, integer) rows, e.g. counts per worker.
    pub async fn counts(&self, sql: &str) -> Vec<(String, i64)> {
        use sqlx::Connection;
        let res = match &self.database_url {
            Some(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_as::<_, (String, i64)>(sql)
                    .fetch_all(&mut c)
                    .await
            }
            None => {
                let mut c = sqlx::SqliteConnection::connect(&self.sqlite_url())
                    .await
                    .unwrap();
                sqlx::query_as::<_, (String, i64)>(sql)
                    .fetch_all(&mut c)
                    .await
            }
        };
        res.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A SQL expression printing the id column `col` of a task as the API does
    /// (`tsk_<32 hex digits>`), as events and audit records name it.
    pub fn task_ref(&self, col: &str) -> String {
        if self.is_postgres() {
            format!("('tsk_' || replace(CAST({col} AS TEXT), '-', ''))")
        } else {
            format!("('tsk_' || lower(hex({col})))")
        }
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("waymark.db").display())
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
    stdout: Arc<Mutex<String>>,
    data_dir: PathBuf,
}

impl Server {
    pub async fn start(backend: &Backend) -> Server {
        Self::spawn(backend, backend.dir.path().to_path_buf(), &[]).await
    }

    /// Starts with extra environment variables (settings such as
    /// `WAYMARK_WORKER_CONCURRENCY`).
    pub async fn start_with(backend: &Backend, env: &[(&str, &str)]) -> Server {
        Self::spawn(backend, backend.dir.path().to_path_buf(), env).await
    }

    pub async fn restart(backend: &Backend, data_dir: PathBuf) -> Server {
        Self::spawn(backend, data_dir, &[]).await
    }

    pub async fn restart_with(
        backend: &Backend,
        data_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(backend, data_dir, env).await
    }

    async fn spawn(backend: &Backend, data_dir: PathBuf, env: &[(&str, &str)]) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_waymark"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(backend.server_flags(&data_dir))
            .env_remove("WAYMARK_DATABASE_URL")
            .env_remove("WAYMARK_ADMIN_TOKEN");
        if backend.env_token {
            cmd.env("WAYMARK_ADMIN_TOKEN", TOKEN);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Started::spawn(cmd, "Waymark listening on ", "waymark serve").await;
        let url = started
            .line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let token = if backend.env_token {
            TOKEN.to_owned()
        } else {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .unwrap()
                .trim()
                .to_owned()
        };
        Server {
            child: started.child,
            url,
            token,
            stderr: started.stderr,
            stdout: started.stdout,
            data_dir,
        }
    }

    /// What the server printed so far: its stderr, then its log (stdout).
    pub fn output(&self) -> String {
        output_of(&self.stderr, &self.stdout)
    }

    /// The process id; the embedded workers are named `<host>:<pid>`.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
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

    /// `GET path` with the admin token: the status and the body's bytes.
    pub async fn get(&self, http: &reqwest::Client, path: &str) -> (u16, Vec<u8>) {
        let res = http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.bytes().await.unwrap().to_vec())
    }

    /// `GET path` with the admin token, which must answer 200 with JSON.
    pub async fn get_json(&self, http: &reqwest::Client, path: &str) -> Value {
        let (status, body) = self.get(http, path).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn post(&self, http: &reqwest::Client, path: &str, body: Value) -> Value {
        let res = http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, 201, "POST {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// SIGKILL; answers the data folder for a restart.
    pub fn kill(mut self) -> PathBuf {
        self.child.start_kill().unwrap();
        let _ = reap(&mut self.child);
        self.data_dir.clone()
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop_gracefully(mut self) -> ExitStatus {
        terminate(&mut self.child).await
    }
}

/// A child process started with its stderr and stdout captured, once it printed
/// the line that says it is ready.
struct Started {
    child: tokio::process::Child,
    /// The rest of the ready line, after its prefix.
    line: String,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Started {
    async fn spawn(mut cmd: tokio::process::Command, ready: &'static str, what: &str) -> Started {
        // TEST_LOG: the child's log at that level, echoed into the test's output.
        let echo = std::env::var("TEST_LOG").ok().map(|l| match l.as_str() {
            "" | "1" | "true" => "info".to_owned(),
            l => l.to_owned(),
        });
        cmd.env("RUST_LOG", echo.as_deref().unwrap_or("warn"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        let echo = echo.is_some();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[child] {line}");
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(ready)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.to_owned());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let line = match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(line)) => line,
            _ => panic!("{what} did not start:\n{}", output_of(&stderr, &stdout)),
        };
        Started {
            child,
            line,
            stderr,
            stdout,
        }
    }
}

fn output_of(stderr: &Mutex<String>, stdout: &Mutex<String>) -> String {
    format!(
        "--- stderr ---\n{}--- log ---\n{}",
        stderr.lock().unwrap(),
        stdout.lock().unwrap()
    )
}

/// A `waymark worker` process: the embedded workers alone, against the
/// backend's database.
pub struct Worker {
    child: tokio::process::Child,
    /// The name it records on the tasks it claims (`<host>:<pid>`).
    pub name: String,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Worker {
    /// Starts a worker with extra environment variables (e.g.
    /// `WAYMARK_WORKER_LEASE_S`); answers once it says it runs.
    pub async fn start(backend: &Backend, env: &[(&str, &str)]) -> Worker {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_waymark"));
        cmd.arg("worker")
            .args(backend.server_flags(backend.data_dir()))
            .env_remove("WAYMARK_DATABASE_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Started::spawn(cmd, "Waymark worker ", "waymark worker").await;
        let name = started
            .line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        Worker {
            child: started.child,
            name,
            stderr: started.stderr,
            stdout: started.stdout,
        }
    }

    /// What the worker printed so far: its stderr, then its log (stdout).
    pub fn output(&self) -> String {
        output_of(&self.stderr, &self.stdout)
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = reap(&mut self.child);
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop_gracefully(mut self) -> ExitStatus {
        terminate(&mut self.child).await
    }
}

async fn terminate(child: &mut tokio::process::Child) -> ExitStatus {
    let pid = child.id().unwrap();
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process stops within 30 s of SIGTERM")
        .unwrap()
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
