//! `waymark bench api`: artifact create, update and get through the real HTTP
//! stack (an in-process server on a loopback port, a pooled HTTP client), on a
//! fresh SQLite file or a fresh PostgreSQL schema, at several concurrency levels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use waymark_client::progress::Progress;
use waymark_server::auth::{generate_secret, hash_secret};
use waymark_server::{AppState, HttpSettings};
use waymark_store::{NewToken, Role, SqlStore, Store, postgres, sqlite};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Artifact create, update and get through the HTTP API
    Api(ApiBench),
    /// The stale cascade on a big lineage graph
    Cascade(crate::bench_cascade::CascadeBench),
    /// The work engine on the workloads W1 and W2 (see bench/WORKLOADS.md)
    Engine(crate::bench_engine::EngineBench),
    /// The web pages: dashboard, board, artifact, journey
    Ui(crate::bench_ui::UiBench),
    /// The customer-success queue: rules runs and owners' queues at scale
    Queue(crate::bench_queue::QueueBench),
    /// File uploads and text extraction (a 100-page PDF, a CSV)
    Files(crate::bench_files::FilesBench),
    /// Full-text search over many artifacts
    Search(crate::bench_search::SearchBench),
    /// Delivery exports: the ZIP and PDF report of an engagement of 50 artifacts
    Export(crate::bench_export::ExportBench),
    /// A mixed load through the HTTP API for N minutes: throughput, p99 and RSS each minute
    Soak(crate::bench_soak::SoakBench),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchBackend {
    Sqlite,
    Postgres,
}

#[derive(Debug, clap::Args)]
pub struct ApiBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Concurrency levels (requests in flight), comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Requests per operation and concurrency level
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Print one JSON object per result instead of a table
    #[arg(long)]
    json: bool,
}

/// The server a bench talks to: the real one, in process, on a loopback
/// port, with an admin token of its own.
pub(crate) struct BenchServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token's secret.
    pub secret: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BenchServer {
    pub(crate) async fn start(store: Arc<dyn Store>) -> Result<Self> {
        Self::start_with(store, |s| s).await
    }

    /// Starts the server with its state finished by `configure` (an object
    /// store for files, say).
    pub(crate) async fn start_with(
        store: Arc<dyn Store>,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> Result<Self> {
        let secret = generate_secret();
        store
            .create_token(
                NewToken::standalone("bench", Role::Admin, hash_secret(&secret)),
                &waymark_store::WriteContext::new("system"),
            )
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = configure(AppState::new(
            store,
            HttpSettings::default(),
            crate::serve::build_info(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(waymark_server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            base,
            secret,
            stop,
            task,
        })
    }

    /// Stops it, letting requests in flight finish.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Api(args) => api(args).await,
        BenchCommand::Cascade(args) => crate::bench_cascade::run(args).await,
        BenchCommand::Engine(args) => crate::bench_engine::run(args).await,
        BenchCommand::Ui(args) => crate::bench_ui::run(args).await,
        BenchCommand::Queue(args) => crate::bench_queue::run(args).await,
        BenchCommand::Files(args) => crate::bench_files::run(args).await,
        BenchCommand::Search(args) => crate::bench_search::run(args).await,
        BenchCommand::Export(args) => crate::bench_export::run(args).await,
        BenchCommand::Soak(args) => crate::bench_soak::run(args).await,
    }
}

struct Result1 {
    op: &'static str,
    concurrency: usize,
    requests: usize,
    wall: Duration,
    p50: Duration,
    p99: Duration,
}

async fn api(args: ApiBench) -> Result<()> {
    if args.requests == 0 || args.concurrency.contains(&0) {
        bail!("--requests and every --concurrency level must be at least 1");
    }
    let (store, bench_db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    store.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(store);
    let server = BenchServer::start(store.clone()).await?;
    let base = format!("{}/api/v1", server.base);
    let secret = server.secret.clone();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let client_id = post(
        &http,
        &base,
        &secret,
        "/clients",
        &json!({"name": "Bench client"}),
    )
    .await?["id"]
        .as_str()
        .context("client id")?
        .to_owned();

    let total = args.concurrency.len() * 3 * args.requests;
    let progress = Arc::new(Progress::new("bench", total as u64, "requests", false));
    let mut results = vec![];
    for &c in &args.concurrency {
        let ctx = Arc::new(Ctx {
            http: http.clone(),
            base: base.clone(),
            secret: secret.clone(),
            client_id: client_id.clone(),
        });
        // create: each request makes a new artifact.
        let (r, ids) = phase(ctx.clone(), "create", c, args.requests, &progress, |ctx, i| async move {
            let body = json!({"client_id": ctx.client_id, "type": "strategy", "title": format!("Plan {i}"),
                "content": {"goals": ["grow"], "n": i, "text": "lorem ipsum ".repeat(20)}});
            let v = post(&ctx.http, &ctx.base, &ctx.secret, "/artifacts", &body).await?;
            Ok(v["id"].as_str().unwrap_or_default().to_owned())
        })
        .await?;
        results.push(r);
        // update: worker w updates the artifacts with index ≡ w (mod c), so
        // writers never race for one version.
        let ids = Arc::new(ids);
        let ids_u = ids.clone();
        let (r, _) = phase(
            ctx.clone(),
            "update",
            c,
            args.requests,
            &progress,
            move |ctx, i| {
                let id = ids_u[i % ids_u.len()].clone();
                async move {
                    let cur = get(
                        &ctx.http,
                        &ctx.base,
                        &ctx.secret,
                        &format!("/artifacts/{id}"),
                    )
                    .await?;
                    let version = cur["version"].as_i64().unwrap_or(1);
                    let res = ctx
                        .http
                        .put(format!("{}/artifacts/{id}/content", ctx.base))
                        .bearer_auth(&ctx.secret)
                        .header("If-Match", format!("\"{version}\""))
                        .json(&json!({"content": {"goals": ["grow", "retain"], "n": i}}))
                        .send()
                        .await?;
                    if !res.status().is_success() {
                        bail!("update answered {}", res.status());
                    }
                    Ok(String::new())
                }
            },
        )
        .await?;
        results.push(r);
        let ids_g = ids.clone();
        let (r, _) = phase(
            ctx.clone(),
            "get",
            c,
            args.requests,
            &progress,
            move |ctx, i| {
                let id = ids_g[i % ids_g.len()].clone();
                async move {
                    get(
                        &ctx.http,
                        &ctx.base,
                        &ctx.secret,
                        &format!("/artifacts/{id}"),
                    )
                    .await?;
                    Ok(String::new())
                }
            },
        )
        .await?;
        results.push(r);
    }
    progress.finish();
    server.stop().await;
    store.close().await;
    bench_db.drop().await?;

    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    if args.json {
        for r in &results {
            println!(
                "{}",
                json!({"backend": backend, "op": r.op, "concurrency": r.concurrency, "requests": r.requests,
                    "wall_s": r.wall.as_secs_f64(), "per_s": r.requests as f64 / r.wall.as_secs_f64(),
                    "p50_ms": ms(r.p50), "p99_ms": ms(r.p99)})
            );
        }
    } else {
        println!(
            "waymark bench api — backend {backend}, {} requests per cell (update = GET + PUT)",
            args.requests
        );
        println!(
            "{:<8} {:>5} {:>10} {:>10} {:>10}",
            "op", "conc", "req/s", "p50 ms", "p99 ms"
        );
        for r in &results {
            println!(
                "{:<8} {:>5} {:>10.0} {:>10.2} {:>10.2}",
                r.op,
                r.concurrency,
                r.requests as f64 / r.wall.as_secs_f64(),
                ms(r.p50),
                ms(r.p99)
            );
        }
    }
    Ok(())
}

/// Where a benchmark's database lives: a temporary SQLite file, or a fresh
/// PostgreSQL schema dropped afterwards.
pub(crate) struct BenchDb {
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl BenchDb {
    /// Opens and migrates a fresh database on `backend`.
    pub(crate) async fn open(
        backend: BenchBackend,
        database_url: Option<&str>,
    ) -> Result<(SqlStore, BenchDb)> {
        let (store, db) = match backend {
            BenchBackend::Sqlite => {
                let dir = tempfile::tempdir().context("create a temporary folder")?;
                let s = sqlite::open(&dir.path().join("bench.db"), 8).await?;
                (
                    s,
                    BenchDb {
                        _dir: Some(dir),
                        schema: None,
                    },
                )
            }
            BenchBackend::Postgres => {
                let Some(url) = database_url else {
                    bail!(
                        "--backend postgres needs --database-url postgres://... (or WAYMARK_DATABASE_URL)"
                    );
                };
                let name = format!("bench_{}", uuid_suffix());
                let (s, _) = postgres::connect_isolated(url, &name, 32).await?;
                (
                    s,
                    BenchDb {
                        _dir: None,
                        schema: Some((url.to_owned(), name)),
                    },
                )
            }
        };
        store.migrate().await?;
        Ok((store, db))
    }

    /// Drops the PostgreSQL schema (the SQLite folder goes with `self`).
    pub(crate) async fn drop(self) -> Result<()> {
        if let Some((url, name)) = self.schema {
            postgres::drop_schema(&url, &name).await?;
        }
        Ok(())
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn uuid_suffix() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    secret: String,
    client_id: String,
}

/// Runs `requests` calls of `op` with `concurrency` in flight; answers the
/// timings and what each call returned, in call order.
async fn phase<F, Fut>(
    ctx: Arc<Ctx>,
    name: &'static str,
    concurrency: usize,
    requests: usize,
    progress: &Arc<Progress>,
    op: F,
) -> Result<(Result1, Vec<String>)>
where
    F: Fn(Arc<Ctx>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String>> + Send,
{
    progress.set_message(format!("{name} ×{concurrency}"));
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = vec![];
    for _ in 0..concurrency {
        let (ctx, op, next, bar) = (ctx.clone(), op.clone(), next.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut out = vec![];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let v = op(ctx.clone(), i).await?;
                out.push((i, t.elapsed(), v));
                bar.inc();
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = vec![];
    for w in workers {
        all.extend(w.await??);
    }
    let wall = started.elapsed();
    all.sort_by_key(|(i, _, _)| *i);
    let mut lat: Vec<Duration> = all.iter().map(|(_, d, _)| *d).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    Ok((
        Result1 {
            op: name,
            concurrency,
            requests,
            wall,
            p50: pct(0.50),
            p99: pct(0.99),
        },
        all.into_iter().map(|(_, _, v)| v).collect(),
    ))
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    path: &str,
    body: &Value,
) -> Result<Value> {
    let res = http
        .post(format!("{base}{path}"))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!(
            "POST {path} answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    Ok(res.json().await?)
}

async fn get(http: &reqwest::Client, base: &str, secret: &str, path: &str) -> Result<Value> {
    let res = http
        .get(format!("{base}{path}"))
        .bearer_auth(secret)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("GET {path} answered {}", res.status());
    }
    Ok(res.json().await?)
}
