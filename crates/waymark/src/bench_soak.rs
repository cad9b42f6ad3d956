//! `waymark bench soak --minutes N`: a mixed load through the HTTP API (an
//! in-process server with its embedded workers, on a fresh database) for N
//! minutes, reporting each minute the requests served, their p50 and p99
//! latency, errors, the engine's tasks still queued (it keeps up when this
//! stays low), and the process's
//! resident memory (RSS), then the p99 of each kind of request, so a kind
//! that slows down as the data grows stands out. After warm-up the RSS
//! should stay flat: a line that keeps climbing is a leak.
//!
//! The mix, per request: 30% create an artifact, 20% write a new version,
//! 25% read one, 10% list a client's artifacts, 5% comment, 5% search, 5%
//! submit a unit of 10 no-op tasks for the engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use waymark_engine::run::{self as engine, EngineSettings};
use waymark_store::Store;

use crate::bench::{BenchBackend, BenchDb, BenchServer, ms};

#[derive(Debug, clap::Args)]
pub struct SoakBench {
    /// How long to run
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds per report line (a minute by default)
    #[arg(long, default_value_t = 60)]
    every: u64,
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Requests in flight
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Clients the load is spread over
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Tasks the embedded workers run at once (as `serve`'s default)
    #[arg(long, default_value_t = engine::DEFAULT_CONCURRENCY)]
    workers: usize,
}

/// The kinds of request in the mix, in the order of the report's columns.
const KINDS: [&str; 7] = [
    "create", "update", "get", "list", "comment", "search", "unit",
];

/// What the load did since the last report.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    /// The same latencies by kind of request (indexes of [`KINDS`]).
    by_kind: [Vec<Duration>; KINDS.len()],
    errors: u64,
}

/// The `p` quantile of sorted latencies (zero when there are none).
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// The process's resident memory, in MiB (Linux: `/proc/self/statm`).
fn rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / f64::from(1 << 20))
}

pub async fn run(args: SoakBench) -> Result<()> {
    if args.minutes == 0
        || args.every == 0
        || args.concurrency == 0
        || args.clients == 0
        || args.workers == 0
    {
        bail!("--minutes, --every, --concurrency, --clients and --workers must be at least 1");
    }
    let (store, bench_db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(store);
    let server = BenchServer::start(store.clone()).await?;
    let (stop_engine, stopped) = tokio::sync::oneshot::channel::<()>();
    let engine_task = tokio::spawn(engine::run(
        store.clone(),
        EngineSettings {
            concurrency: args.workers,
            name: "soak".into(),
            ..EngineSettings::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let base = format!("{}/api/v1", server.base);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let c = send(
            &http,
            &server.secret,
            reqwest::Method::POST,
            &format!("{base}/clients"),
            Some(json!({"name": format!("Soak client {i}")})),
        )
        .await?;
        clients.push(c["id"].as_str().context("client id")?.to_owned());
    }

    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    println!(
        "waymark bench soak — backend {backend}, {} minutes, {} in flight, {} clients, {} \
         tasks at once in the workers; one line every {} s",
        args.minutes, args.concurrency, args.clients, args.workers, args.every
    );
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>8} | p99 ms by kind: {}",
        "at min",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "queued",
        "RSS MiB",
        KINDS.map(|k| format!("{k:>7}")).join(" ")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(std::sync::Mutex::new(Window::default()));
    let counter = Arc::new(AtomicU64::new(0));
    let clients = Arc::new(clients);
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (http, base, secret, stop, window, counter, clients) = (
            http.clone(),
            base.clone(),
            server.secret.clone(),
            stop.clone(),
            window.clone(),
            counter.clone(),
            clients.clone(),
        );
        workers.push(tokio::spawn(async move {
            // This worker's own artifacts: it writes versions of them only,
            // so writers never race for one version.
            let mut mine: Vec<(String, i64)> = Vec::new();
            let mut rng = w as u64 * 7919 + 1;
            while !stop.load(Ordering::Relaxed) {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let roll = (rng >> 33) % 100;
                let client = &clients[(rng >> 20) as usize % clients.len()];
                let t = Instant::now();
                let outcome = step(&http, &base, &secret, roll, n, client, &mut mine).await;
                let mut win = window.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(kind) => {
                        let took = t.elapsed();
                        win.latencies.push(took);
                        win.by_kind[kind].push(took);
                    }
                    Err(_) => win.errors += 1,
                }
            }
        }));
    }

    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(args.every),
        Duration::from_secs(args.every),
    );
    let mut minute = 0u64;
    let mut rss = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        minute += 1;
        let mut win = std::mem::take(&mut *window.lock().unwrap_or_else(|e| e.into_inner()));
        win.latencies.sort();
        let kinds = win
            .by_kind
            .iter_mut()
            .map(|l| {
                l.sort();
                format!("{:>7.1}", ms(quantile(l, 0.99)))
            })
            .collect::<Vec<_>>()
            .join(" ");
        let queued = queued_tasks(&store).await?;
        let mem = rss_mib().unwrap_or(f64::NAN);
        rss.push(mem);
        println!(
            "{:>6.1} {:>9} {:>8.0} {:>8.2} {:>8.2} {:>7} {:>9} {:>8.1} |                 {kinds}",
            (minute * args.every) as f64 / 60.0,
            win.latencies.len(),
            win.latencies.len() as f64 / args.every as f64,
            ms(quantile(&win.latencies, 0.5)),
            ms(quantile(&win.latencies, 0.99)),
            win.errors,
            queued,
            mem
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let _ = stop_engine.send(());
    let _ = engine_task.await;
    server.stop().await;
    store.close().await;
    bench_db.drop().await?;
    // Flat after warm-up: the last report against the first one after the
    // first fifth of the run.
    if rss.len() >= 5 {
        let warm = rss[rss.len() / 5];
        let last = rss[rss.len() - 1];
        println!(
            "# rss_after_warmup_mib={warm:.1} rss_end_mib={last:.1} growth={:+.1}%",
            (last / warm - 1.0) * 100.0
        );
    }
    Ok(())
}

/// The engine's tasks waiting or running now, over every lane.
async fn queued_tasks(store: &Arc<dyn Store>) -> Result<i64> {
    let gauges = store.engine_gauges().await?;
    Ok(gauges
        .lanes
        .iter()
        .map(|(_, ready, running)| ready + running)
        .sum())
}

/// One request of the mix (`roll` in 0..100); answers its kind (an index
/// of [`KINDS`]).
async fn step(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    roll: u64,
    n: u64,
    client: &str,
    mine: &mut Vec<(String, i64)>,
) -> Result<usize> {
    use reqwest::Method;
    let kind = match roll {
        0..30 => {
            let a = send(http, secret, Method::POST, &format!("{base}/artifacts"), Some(json!({
                "client_id": client, "type": "note", "title": format!("Soak note {n}"),
                "content": {"text": format!("harbour cutover plan {n} ") + &"lorem ipsum ".repeat(30), "n": n}
            }))).await?;
            if mine.len() < 200 {
                mine.push((a["id"].as_str().unwrap_or_default().to_owned(), 1));
            }
            0
        }
        30..50 if !mine.is_empty() => {
            let i = n as usize % mine.len();
            let (id, version) = &mut mine[i];
            let res = http
                .put(format!("{base}/artifacts/{id}/content"))
                .bearer_auth(secret)
                .header("If-Match", format!("\"{version}\""))
                .json(&json!({"content": {"text": format!("revised {n}"), "n": n}}))
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("update answered {}", res.status());
            }
            *version += 1;
            1
        }
        50..75 if !mine.is_empty() => {
            let id = &mine[n as usize % mine.len()].0;
            send(
                http,
                secret,
                Method::GET,
                &format!("{base}/artifacts/{id}"),
                None,
            )
            .await?;
            2
        }
        75..85 => {
            send(
                http,
                secret,
                Method::GET,
                &format!("{base}/artifacts?client_id={client}&limit=50"),
                None,
            )
            .await?;
            3
        }
        85..90 if !mine.is_empty() => {
            let id = &mine[n as usize % mine.len()].0;
            send(
                http,
                secret,
                Method::POST,
                &format!("{base}/artifacts/{id}/comments"),
                Some(json!({"body": format!("comment {n}")})),
            )
            .await?;
            4
        }
        90..95 => {
            send(
                http,
                secret,
                Method::GET,
                &format!("{base}/search?q=cutover&limit=20"),
                None,
            )
            .await?;
            5
        }
        _ => {
            let tasks: Vec<Value> = (0..10)
                .map(|i| json!({"key": format!("t{i}"), "executor": "noop", "input": i}))
                .collect();
            send(
                http,
                secret,
                Method::POST,
                &format!("{base}/work/units"),
                Some(json!({"client_id": client, "name": format!("soak {n}"), "tasks": tasks})),
            )
            .await?;
            6
        }
    };
    Ok(kind)
}

async fn send(
    http: &reqwest::Client,
    secret: &str,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method, url).bearer_auth(secret);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await?;
    let status = res.status();
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    Ok(res.json().await?)
}
