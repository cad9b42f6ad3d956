use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_server::{AppState, BuildInfo, HttpSettings};
use waymark_store::testing::{self, TestDb};
use waymark_store::{NewToken, Role, Store};

/// Generates `sqlite::name` and `postgres::name` tests from `async fn name(app: TestApp)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await else { return };
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// Generates `sqlite::name` and `postgres::name` tests from `async fn
/// name(backend: Backend)`, for tests that start their app themselves (with a
/// clock or an LLM provider of their own).
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

#[derive(Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// Where the app keeps uploaded files (a folder of its own unless the
    /// test configured another store).
    pub blobs: waymark_engine::blobs::Blobs,
    _files: tempfile::TempDir,
    _db: TestDb,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts this is a problem document with `status` and `code`.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "application/problem+json", "body: {}", self.body);
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:waymark:problem:")
        );
        assert!(!self.body["title"].as_str().unwrap().is_empty());
        assert!(!self.body["detail"].as_str().unwrap().is_empty());
    }

    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, HttpSettings::default()).await
}

pub async fn spawn_app_with(backend: Backend, http: HttpSettings) -> Option<TestApp> {
    spawn_app_configured(backend, http, |state| state).await
}

/// A test app on `clock`, with an LLM provider when given one.
pub async fn app_at(
    backend: Backend,
    clock: &waymark_server::clock::Clock,
    llm: Option<waymark_llm::Llm>,
) -> Option<TestApp> {
    let clock = clock.clone();
    spawn_app_configured(backend, HttpSettings::default(), move |state| {
        let state = state.with_clock(clock);
        match llm {
            Some(llm) => state.with_llm(llm),
            None => state,
        }
    })
    .await
}

/// A test app whose state `configure` finishes (an LLM provider, a clock).
pub async fn spawn_app_configured(
    backend: Backend,
    http: HttpSettings,
    configure: impl FnOnce(AppState) -> AppState,
) -> Option<TestApp> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    testing::init_test_log();
    let db = match backend {
        Backend::Sqlite => testing::sqlite().await,
        Backend::Postgres => testing::postgres().await?,
    };
    let store: Arc<dyn Store> = db.store.clone();
    let token = generate_secret();
    store
        .create_token(
            NewToken::standalone("test admin", Role::Admin, hash_secret(&token)),
            &waymark_store::WriteContext::new("system"),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let build = BuildInfo {
        version: "0.0.0-test".into(),
        git_sha: "testsha".into(),
        build_time: "2026-01-01T00:00:00Z".into(),
    };
    let files = tempfile::tempdir().unwrap();
    let blobs = waymark_engine::blobs::Blobs::local(files.path()).unwrap();
    let state = configure(AppState::new(store.clone(), http, build).with_blobs(blobs));
    let blobs = state
        .blobs
        .clone()
        .expect("the test app keeps files somewhere");
    tokio::spawn(waymark_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Some(TestApp {
        base: format!("http://{addr}"),
        token,
        http: reqwest::Client::new(),
        store,
        blobs,
        _files: files,
        _db: db,
    })
}

impl TestApp {
    /// The folder the app's local object store and staging live in.
    pub fn blobs_root(&self) -> &std::path::Path {
        self._files.path()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        Self::answer(res).await
    }

    pub async fn answer(res: reqwest::Response) -> Answer {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    pub async fn put_content(&self, id: &str, if_match: &str, body: Value) -> Answer {
        self.call(
            Method::PUT,
            &format!("/api/v1/artifacts/{id}/content"),
            Some(body),
            &[("If-Match", if_match)],
        )
        .await
    }

    /// Uploads a file for `client` as the admin; answers the file's id.
    pub async fn upload(&self, client: &str, name: &str, bytes: Vec<u8>) -> String {
        let form = reqwest::multipart::Form::new()
            .text("client_id", client.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        let res = self
            .http
            .post(format!("{}/api/v1/files", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let a = Self::answer(res).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn client(&self, name: &str) -> String {
        let a = self.post("/api/v1/clients", json!({"name": name})).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn artifact(&self, client: &str, ty: &str, content: Value) -> String {
        let a = self
            .post("/api/v1/artifacts", json!({"client_id": client, "type": ty, "title": format!("{ty} doc"), "content": content}))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }

    /// Number of artifacts, versions and history rows: to check a refused
    /// request wrote nothing.
    pub async fn footprint(&self) -> (usize, Vec<i64>) {
        let list = self.get("/api/v1/artifacts?limit=200").await;
        let items = list.body["items"].as_array().unwrap().clone();
        let mut versions = vec![];
        for i in &items {
            let id = i["id"].as_str().unwrap();
            let h = self
                .get(&format!("/api/v1/artifacts/{id}/history?limit=200"))
                .await;
            versions.push(
                i["version"].as_i64().unwrap() * 1000
                    + h.body["items"].as_array().unwrap().len() as i64,
            );
        }
        (items.len(), versions)
    }
}

impl TestApp {
    /// A request with another bearer token, or none.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    /// Creates a user (as the admin); answers it.
    pub async fn user(&self, body: Value) -> Value {
        let a = self.post("/api/v1/users", body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body
    }

    /// Makes a token for a user (as the admin); answers its secret.
    pub async fn token_for(&self, user_id: &str) -> String {
        let a = self
            .post(
                "/api/v1/tokens",
                json!({"name": "test", "user_id": user_id}),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.body["token"].as_str().unwrap().to_owned()
    }
}

// --- the delivery loop (webhooks and mail) ----------------------------------

/// A delivery loop running against a test app's database, as a second process
/// would: it wakes by polling. Stop it to simulate a restart.
pub struct DeliveryLoop {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DeliveryLoop {
    /// Stops the loop, letting the attempts in flight finish and be recorded.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for DeliveryLoop {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Delivery settings for tests: quick retries and polling, short timeouts.
/// The body of a transition to `to`; to `approved`, an admin's recorded
/// override of the approval policy (the tests' shortcut past client review).
pub fn transition_body(to: &str) -> Value {
    if to == "approved" {
        json!({"to": to, "override": true, "reason": "approved by the admin for this test"})
    } else {
        json!({"to": to})
    }
}

pub fn fast_delivery() -> waymark_engine::delivery::DeliverySettings {
    waymark_engine::delivery::DeliverySettings {
        max_attempts: 12,
        backoff_base: std::time::Duration::from_millis(40),
        backoff_max: std::time::Duration::from_millis(300),
        request_timeout: std::time::Duration::from_secs(5),
        poll: std::time::Duration::from_millis(40),
        ..Default::default()
    }
}

impl TestApp {
    /// Starts a delivery loop on this app's database, with the app's HTTP
    /// settings (so links match the API's). With mail set up, the mail cursor is
    /// placed first, so every event after this call is considered for mail.
    pub async fn start_delivery(
        &self,
        mut settings: waymark_engine::delivery::DeliverySettings,
    ) -> DeliveryLoop {
        // As `waymark serve` runs it: the app's version in the user agent.
        settings.user_agent = "waymark/0.0.0-test".into();
        // Mail is composed with or without a relay (kept in the outbox
        // without one): every event after this call is considered for it.
        self.store
            .event_cursor(waymark_engine::delivery::MAIL_CURSOR)
            .await
            .unwrap();
        // Deliveries find new work by polling here (`fast_delivery` polls
        // often); the server's change signal is not shared with tests.
        let (_changed, changes) = tokio::sync::watch::channel(0u64);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(waymark_engine::delivery::run(
            self.store.clone(),
            changes,
            settings,
            async move {
                let _ = stopped.await;
                drop(_changed);
            },
        ));
        DeliveryLoop {
            stop: Some(stop),
            task: Some(task),
        }
    }
}
