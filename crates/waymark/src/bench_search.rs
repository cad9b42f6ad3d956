//! `waymark bench search`: full-text search over many artifacts through the
//! real server (in process, on a loopback port), on a fresh SQLite file or
//! PostgreSQL schema.
//!
//! Seeding: `--artifacts` artifacts (100,000 by default) written through the
//! store over `--clients` clients, each with a title and content of words
//! drawn from a vocabulary of 1,000 made-up words (Zipf-like: a few are
//! everywhere, most are rare), so queries range from a word in every
//! artifact to a word in a handful.
//!
//! Measured (`--requests` each, 20 results a page): `GET /api/v1/search?q=`
//! with a word found everywhere, a rare word, two words, and a word filtered
//! by client; p50, p99 and max.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};
use waymark_client::progress::Progress;
use waymark_store::{NewArtifact, NewClient, Store, WriteContext};

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct SearchBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Artifacts in the database
    #[arg(long, default_value_t = 100_000)]
    artifacts: usize,
    /// Clients they belong to
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Requests per measured query
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Print one JSON object per result instead of a table
    #[arg(long)]
    json: bool,
}

const SYLLABLES: [&str; 10] = [
    "ka", "lo", "mi", "ren", "tos", "va", "qui", "dor", "sel", "nu",
];
const SEED_CONCURRENCY: usize = 16;

/// Word `n` of the vocabulary (0..1000).
fn word(n: usize) -> String {
    format!(
        "{}{}{}",
        SYLLABLES[n / 100 % 10],
        SYLLABLES[n / 10 % 10],
        SYLLABLES[n % 10]
    )
}

/// A Zipf-like pick: small numbers are far more likely.
fn pick(h: u64) -> usize {
    let u = ((h >> 11) as f64) / ((1u64 << 53) as f64);
    ((1000f64).powf(u) - 1.0) as usize % 1000
}

fn words(seed: u64, n: usize) -> String {
    let mut h = seed;
    (0..n)
        .map(|_| {
            h = h
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            word(pick(h))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

struct Read {
    name: &'static str,
    query: String,
    total: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

pub async fn run(args: SearchBench) -> Result<()> {
    ensure!(
        args.artifacts >= 1 && args.clients >= 1 && args.requests >= 1,
        "--artifacts, --clients and --requests must be at least 1"
    );
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let server = crate::bench::BenchServer::start(store.clone()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let base = format!("{}/api/v1", server.base);
    let secret = server.secret.clone();
    let outcome = async {
        let started = Instant::now();
        let clients = seed(&store, &args).await?;
        let seed_time = started.elapsed();
        store.optimize().await?;
        let common = word(0);
        let rare = word(997);
        let queries: Vec<(&'static str, String)> = vec![
            ("word_everywhere", format!("q={common}")),
            ("rare_word", format!("q={rare}")),
            ("two_words", format!("q={}%20{}", word(3), word(40))),
            (
                "by_client",
                format!("q={}&client_id={}", word(5), clients[0]),
            ),
        ];
        let mut reads = Vec::new();
        for (name, query) in queries {
            reads.push(measure(&http, &base, &secret, name, query, args.requests).await?);
        }
        anyhow::Ok((seed_time, reads))
    }
    .await;
    server.stop().await;
    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    let (seed_time, reads) = outcome?;
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    if args.json {
        for r in &reads {
            println!(
                "{}",
                json!({"backend": backend, "op": r.name, "query": r.query, "artifacts": args.artifacts,
                       "requests": args.requests, "first_page_of": r.total, "p50_ms": ms(r.p50),
                       "p99_ms": ms(r.p99), "max_ms": ms(r.max), "seed_s": seed_time.as_secs_f64()})
            );
        }
        return Ok(());
    }
    println!(
        "waymark bench search — backend {backend}, {} artifacts of {} clients (seeded in {:.1} s)",
        args.artifacts,
        args.clients,
        seed_time.as_secs_f64()
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9}",
        "query", "results", "p50 ms", "p99 ms", "max ms"
    );
    for r in &reads {
        println!(
            "{:<16} {:>9} {:>9.2} {:>9.2} {:>9.2}",
            r.name,
            r.total,
            ms(r.p50),
            ms(r.p99),
            ms(r.max)
        );
    }
    Ok(())
}

async fn seed(store: &Arc<dyn Store>, args: &SearchBench) -> Result<Vec<String>> {
    let ctx = WriteContext::new("bench");
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let created = store
            .create_client(
                NewClient {
                    name: format!("Search client {c}"),
                    arr: None,
                    renewal_date: None,
                    health_score: None,
                    risk_score: None,
                    opportunity_score: None,
                    owner: None,
                    attributes: None,
                },
                &ctx,
            )
            .await?;
        clients.push(created.record.id);
    }
    let progress = Arc::new(Progress::new(
        "bench search",
        args.artifacts as u64,
        "artifacts",
        false,
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let clients = Arc::new(clients);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SEED_CONCURRENCY {
        let (store, next, progress, clients) = (
            store.clone(),
            next.clone(),
            progress.clone(),
            clients.clone(),
        );
        let total = args.artifacts;
        workers.spawn(async move {
            let ctx = WriteContext::new("bench");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                store
                    .create_artifact(
                        NewArtifact {
                            client_id: clients[i % clients.len()],
                            engagement_id: None,
                            artifact_type: "memo".into(),
                            title: format!("Memo {i}: {}", words(h, 3)),
                            content: json!({"summary": words(h ^ 1, 30), "notes": words(h ^ 2, 60)}),
                            sources: None,
                            note: None,
                            provenance: "bench".into(),
                            pipeline: None,
                        },
                        &ctx,
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
    Ok(clients.iter().map(ToString::to_string).collect())
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    name: &'static str,
    query: String,
    requests: usize,
) -> Result<Read> {
    let url = format!("{base}/search?{query}");
    let mut took = Vec::with_capacity(requests);
    let mut total = 0;
    for i in 0..requests + 5 {
        let t = Instant::now();
        let res = http.get(&url).bearer_auth(secret).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("GET {url} answered {status}: {body}");
        }
        if i >= 5 {
            took.push(t.elapsed());
        }
        total = body["items"].as_array().map_or(0, Vec::len);
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    Ok(Read {
        name,
        query,
        total,
        p50: at(0.5),
        p99: at(0.99),
        max: *took.last().unwrap(),
    })
}
