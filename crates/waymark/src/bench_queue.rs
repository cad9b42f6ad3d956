//! `waymark bench queue`: the customer-success queue at scale, through the
//! real server (in process, on a loopback port) on a fresh SQLite file or a
//! fresh PostgreSQL schema.
//!
//! Seeding: a pack of `--rules` playbooks whose queue rules all match every
//! client renewing within 400 days (installed through `POST /api/v1/packs`,
//! so it is checked like any pack), and `--clients` clients (10,000 by
//! default) written through the store, spread over `--owners` owners, with
//! renewals 150 to 400 days away (so the renewal pack's own rules stay quiet)
//! and varied health, risk, opportunity and ARR.
//!
//! Measured:
//! - the first rules run (`POST /api/v1/queue/refresh`), which opens
//!   clients × rules items (50,000 by default), and a second one, which finds
//!   nothing to change;
//! - `GET /api/v1/queue/{owner}` (`--requests` times, owners in turn, 50
//!   items a page), and the same filtered by template: p50, p99, max.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;
use waymark_client::progress::Progress;
use waymark_store::{NewClient, Store, WriteContext};

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct QueueBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Clients in the database
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Queue rules (one playbook each) matching every client: items = clients × rules
    #[arg(long, default_value_t = 5)]
    rules: usize,
    /// Owners the clients are spread over
    #[arg(long, default_value_t = 100)]
    owners: usize,
    /// Requests per measured read
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Requests in flight
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Print one JSON object per result instead of a table
    #[arg(long)]
    json: bool,
}

/// Store writes in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
const WARM_UP: usize = 10;

/// The bench pack: `rules` playbooks, a queue rule each.
fn pack_files(rules: usize) -> Value {
    let mut yaml = String::from(
        "name: bench-queue\nversion: 1.0.0\ndescription: Queue rules for the queue bench.\n\
         types:\n  - name: bench_note\n    family: solution\n    schema: schemas/bench_note.json\n    \
         example: examples/bench_note.json\njourneys:\n",
    );
    for n in 1..=rules {
        yaml.push_str(&format!(
            "  - name: bench-play-{n}\n    title: Bench playbook {n}\n    playbook: {{outcomes: [done]}}\n    \
             stages:\n      - {{id: work, name: Work}}\n"
        ));
    }
    yaml.push_str("queue:\n");
    for n in 1..=rules {
        yaml.push_str(&format!(
            "  - name: play_{n}\n    template: bench-play-{n}\n    \
             when: \"days_to_renewal != null && days_to_renewal <= 400\"\n    \
             reason: \"Bench rule {n}: renewal in {{{{days_to_renewal}}}} days\"\n    \
             due: \"days_to_renewal - {}\"\n    factors:\n      \
             - {{input: health, weight: {}}}\n      - {{input: arr, weight: 2}}\n      \
             - {{input: days_to_renewal, weight: 3, scale: 400}}\n      - {{input: risk, weight: 1}}\n      \
             - {{input: opportunity, weight: 1}}\n",
            n * 10,
            n
        ));
    }
    let schema = json!({"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"], "additionalProperties": false});
    json!({"files": {
        "pack.yaml": yaml,
        "schemas/bench_note.json": schema.to_string(),
        "examples/bench_note.json": json!({"text": "A note."}).to_string(),
    }})
}

struct Read {
    name: &'static str,
    requests: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    items: usize,
}

pub async fn run(args: QueueBench) -> Result<()> {
    ensure!(
        args.clients >= 1 && args.rules >= 1 && args.rules <= 20 && args.owners >= 1,
        "--clients and --owners must be at least 1, --rules from 1 to 20"
    );
    ensure!(
        args.requests >= 1 && args.concurrency >= 1,
        "--requests and --concurrency must be at least 1"
    );
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let server = crate::bench::BenchServer::start(store.clone()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let base = format!("{}/api/v1", server.base);
    let secret = server.secret.clone();

    let outcome = async {
        let started = Instant::now();
        seed(&http, &base, &secret, &store, &args).await?;
        let seed_time = started.elapsed();
        eprintln!(
            "bench queue: seeded {} clients in {:.1} s",
            args.clients,
            seed_time.as_secs_f64()
        );
        store.optimize().await?;
        let first = refresh(&http, &base, &secret).await?;
        let second = refresh(&http, &base, &secret).await?;
        ensure!(
            first.1["opened"].as_u64() == Some((args.clients * args.rules) as u64),
            "the first rules run should open {} items: {}",
            args.clients * args.rules,
            first.1
        );
        ensure!(
            second.1["opened"] == 0 && second.1["updated"] == 0 && second.1["closed"] == 0,
            "the second rules run should change nothing: {}",
            second.1
        );
        store.optimize().await?;
        let mut reads = vec![];
        reads.push(measure(&http, &base, &secret, &args, "queue", "").await?);
        reads.push(
            measure(
                &http,
                &base,
                &secret,
                &args,
                "queue_filtered",
                "?template=bench-play-2",
            )
            .await?,
        );
        anyhow::Ok((seed_time, first, second, reads))
    }
    .await;

    server.stop().await;
    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    let (seed_time, first, second, reads) = outcome?;
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    if args.json {
        for (name, (took, summary)) in [("refresh_first", &first), ("refresh_again", &second)] {
            println!(
                "{}",
                json!({"backend": backend, "op": name, "clients": args.clients,
                       "items": args.clients * args.rules, "seconds": took.as_secs_f64(),
                       "opened": summary["opened"], "updated": summary["updated"]})
            );
        }
        for r in &reads {
            println!(
                "{}",
                json!({"backend": backend, "op": r.name, "clients": args.clients,
                       "items": args.clients * args.rules, "owners": args.owners,
                       "concurrency": args.concurrency, "requests": r.requests,
                       "page_items": r.items, "p50_ms": ms(r.p50), "p99_ms": ms(r.p99),
                       "max_ms": ms(r.max), "seed_s": seed_time.as_secs_f64()})
            );
        }
        return Ok(());
    }
    println!(
        "waymark bench queue — backend {backend}, {} clients, {} open items, {} owners \
         (seeded in {:.1} s)",
        args.clients,
        args.clients * args.rules,
        args.owners,
        seed_time.as_secs_f64()
    );
    println!(
        "rules run over every client: first {:.2} s ({} opened), again {:.2} s (nothing changed)",
        first.0.as_secs_f64(),
        first.1["opened"],
        second.0.as_secs_f64()
    );
    println!(
        "{:<15} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "read", "requests", "items", "p50 ms", "p99 ms", "max ms"
    );
    for r in &reads {
        println!(
            "{:<15} {:>9} {:>7} {:>9.2} {:>9.2} {:>9.2}",
            r.name,
            r.requests,
            r.items,
            ms(r.p50),
            ms(r.p99),
            ms(r.max)
        );
    }
    Ok(())
}

async fn seed(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    store: &Arc<dyn Store>,
    args: &QueueBench,
) -> Result<()> {
    let res = http
        .post(format!("{base}/packs"))
        .bearer_auth(secret)
        .json(&pack_files(args.rules))
        .send()
        .await?;
    if !res.status().is_success() {
        bail!(
            "installing the bench pack answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    let today = OffsetDateTime::now_utc().date();
    let progress = Arc::new(Progress::new(
        "bench queue",
        args.clients as u64,
        "clients",
        false,
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SEED_CONCURRENCY {
        let (store, next, progress) = (store.clone(), next.clone(), progress.clone());
        let (clients, owners) = (args.clients, args.owners);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= clients {
                    return anyhow::Ok(());
                }
                // Spread deterministically (a multiplicative hash of i).
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                let pct = |shift: u32| ((h >> shift) % 101) as f64;
                store
                    .create_client(
                        NewClient {
                            name: format!("Bench client {i:05}"),
                            arr: Some(10_000.0 + (h % 2_000_000) as f64),
                            renewal_date: Some(
                                today + time::Duration::days(150 + (h % 250) as i64),
                            ),
                            health_score: Some(pct(3)),
                            risk_score: Some(pct(7)),
                            opportunity_score: Some(pct(11)),
                            owner: Some(format!("csm-{:03}", i % owners)),
                            attributes: None,
                        },
                        &WriteContext::new("bench"),
                    )
                    .await?;
                progress.inc();
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done? {
            progress.abandon();
            return Err(e);
        }
    }
    progress.finish();
    Ok(())
}

/// One queue read: how many items it answered.
async fn fetch(http: reqwest::Client, url: String, secret: Arc<str>) -> Result<usize> {
    let res = http.get(&url).bearer_auth(&*secret).send().await?;
    let status = res.status();
    let body: Value = res.json().await?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    Ok(body["items"].as_array().map_or(0, Vec::len))
}

async fn refresh(http: &reqwest::Client, base: &str, secret: &str) -> Result<(Duration, Value)> {
    let started = Instant::now();
    let res = http
        .post(format!("{base}/queue/refresh"))
        .bearer_auth(secret)
        .json(&json!({}))
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await.context("the rules run's answer")?;
    if !status.is_success() {
        bail!("the rules run answered {status}: {body}");
    }
    Ok((started.elapsed(), body))
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    args: &QueueBench,
    name: &'static str,
    query: &str,
) -> Result<Read> {
    let prefix: Arc<str> = Arc::from(format!("{base}/queue/csm-"));
    let query: Arc<str> = Arc::from(query);
    let secret: Arc<str> = Arc::from(secret);
    let owners = args.owners;
    let url =
        move |prefix: &str, query: &str, n: usize| format!("{prefix}{:03}{query}", n % owners);
    for n in 0..WARM_UP {
        fetch(http.clone(), url(&prefix, &query, n), secret.clone()).await?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (next, http, prefix, query, secret) = (
            next.clone(),
            http.clone(),
            prefix.clone(),
            query.clone(),
            secret.clone(),
        );
        let requests = args.requests;
        workers.spawn(async move {
            let mut out = vec![];
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    return anyhow::Ok(out);
                }
                let started = Instant::now();
                let items = fetch(http.clone(), url(&prefix, &query, n), secret.clone()).await?;
                out.push((started.elapsed(), items));
            }
        });
    }
    let mut all = vec![];
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    let items = all.iter().map(|(_, i)| *i).max().unwrap_or(0);
    ensure!(items > 0, "{name}: the queues came back empty");
    let mut times: Vec<Duration> = all.into_iter().map(|(t, _)| t).collect();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(Read {
        name,
        requests: times.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: *times.last().unwrap_or(&Duration::ZERO),
        items,
    })
}
