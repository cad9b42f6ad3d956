//! `waymark bench ui`: the web pages an operator opens most, rendered by the
//! real server (in process, on a loopback port) on a fresh SQLite file or a
//! fresh PostgreSQL schema holding `--artifacts` artifacts (10,000 by default).
//!
//! Seeding writes through the HTTP API where the rules matter (the pack
//! engagement, the people, the journey) and through the store directly for
//! the bulk:
//!
//! - five clients; the first has an engagement of the built-in pack
//!   `marketing-engagement` whose intake is approved and whose strategy exists
//!   (a draft), so its board has every column;
//! - the artifacts, small `brief`s outside any pack, spread over the clients;
//!   one in twenty is shared (in review), and each client has a brief with ten
//!   built on it that changed after, so they are stale;
//! - one artifact with 50 versions and 200 comments (on sections and on the
//!   whole, replies, a few internal; some by the signed-in operator on an
//!   older version, so the page shows what changed since), shared for review;
//! - one journey of a three-stage template whose first stage has a metric exit
//!   check, started, with 30 observations of that metric.
//!
//! Then an operator signs in (`POST /api/v1/sessions`) and, with the session
//! cookie, each page is fetched `--requests` times after a few warm-up
//! requests: the dashboard (`/`), the board (`/engagements/{id}`), the big
//! artifact (`/artifacts/{id}`) and the journey (`/journeys/{id}`). Every
//! answer must be a 200 with an HTML page naming what it shows. Reported per
//! page: requests, p50, p99 and max latency (request sent to body read), and
//! the mean size of the body. The aim is a p99 under 50 ms on SQLite.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::header;
use serde_json::{Value, json};
use waymark_client::progress::Progress;
use waymark_domain::artifact::SourceRef;
use waymark_domain::review::ApproverKind;
use waymark_domain::{ClientId, CommentId};
use waymark_server::auth::generate_secret;
use waymark_store::{
    NewArtifact, NewClient, NewComment, NewUser, NewVersion, Reviewer, Role, Store, WriteContext,
};

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct UiBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Artifacts in the database
    #[arg(long, default_value_t = 10_000)]
    artifacts: usize,
    /// Requests per page
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Requests in flight
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Print one JSON object per page instead of a table
    #[arg(long)]
    json: bool,
}

/// Clients seeded; the first holds the engagement, the big artifact and the journey.
const CLIENTS: usize = 5;
/// Artifacts built on each client's changed brief, so stale.
const STALE_PER_CLIENT: usize = 10;
/// Versions and comments of the big artifact.
const VERSIONS: i64 = 50;
const COMMENTS: usize = 200;
/// Metric observations of the journey.
const OBSERVATIONS: usize = 30;
/// Unmeasured requests per page before the measured ones.
const WARM_UP: usize = 5;
/// Store writes in flight while seeding.
const SEED_CONCURRENCY: usize = 16;
/// The operator who signs in.
const OPERATOR_EMAIL: &str = "operator@bench.example";
const OPERATOR_NAME: &str = "Bench operator";

/// Sections of the big artifact commented on (present in every version).
const SECTIONS: [&str; 8] = [
    "/summary",
    "/goals",
    "/goals/1",
    "/audience/segments",
    "/channels/0",
    "/channels/2/budget",
    "/timeline/1",
    "/risks",
];

fn ctx() -> WriteContext {
    WriteContext::new("bench")
}

/// The admin's view of the API, for the seeding done through it.
struct Api {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        if !status.is_success() {
            bail!(
                "{method} /api/v1{path} answered {status}: {}",
                res.text().await.unwrap_or_default()
            );
        }
        Ok(res.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn id_of(v: &Value) -> Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no id in {v}"))
}

/// A page to measure: its name, its path, and a text the page must contain.
struct Target {
    page: &'static str,
    path: String,
    marker: String,
}

/// What was seeded.
struct Seeded {
    targets: Vec<Target>,
    password: String,
}

struct PageResult {
    page: &'static str,
    path: String,
    requests: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean_bytes: f64,
}

pub async fn run(args: UiBench) -> Result<()> {
    ensure!(
        args.requests >= 1 && args.concurrency >= 1,
        "--requests and --concurrency must be at least 1"
    );
    let fixed = 3 + CLIENTS * (1 + STALE_PER_CLIENT);
    ensure!(
        args.artifacts >= fixed + CLIENTS,
        "--artifacts must be at least {}",
        fixed + CLIENTS
    );
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let server = crate::bench::BenchServer::start(store.clone()).await?;
    let base = server.base.clone();
    let secret = server.secret.clone();
    // No redirects: a page answering the sign-in redirect must fail, not
    // measure the sign-in page.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let api = Api {
        http: http.clone(),
        base: base.clone(),
        secret,
    };

    let outcome = async {
        let started = Instant::now();
        let seeded = seed(&api, &store, args.artifacts).await?;
        let seed_time = started.elapsed();
        eprintln!(
            "bench ui: seeded {} artifacts in {:.1} s",
            args.artifacts,
            seed_time.as_secs_f64()
        );
        let results = measure(&api, &seeded, args.requests, args.concurrency).await?;
        anyhow::Ok((seed_time, results))
    }
    .await;

    server.stop().await;
    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    let (seed_time, results) = outcome?;
    report(&args, seed_time, &results);
    Ok(())
}

async fn seed(api: &Api, store: &Arc<dyn Store>, artifacts: usize) -> Result<Seeded> {
    eprintln!("bench ui: seeding clients, the pack engagement, people and the journey");
    let mut clients: Vec<ClientId> = vec![];
    for n in 1..=CLIENTS {
        let c = store
            .create_client(
                NewClient {
                    name: format!("Bench client {n}"),
                    ..Default::default()
                },
                &ctx(),
            )
            .await?;
        clients.push(c.record.id);
    }
    let first = clients[0];

    // The pack engagement, through the API (the pack's gating and sources):
    // intake approved, strategy created on it.
    let pack = api.get("/packs/marketing-engagement").await?;
    let example = |ty: &str| -> Result<Value> {
        pack["artifact_types"]
            .as_array()
            .and_then(|types| types.iter().find(|t| t["name"] == ty))
            .map(|t| t["example"].clone())
            .with_context(|| format!("the pack marketing-engagement has no {ty} example"))
    };
    let engagement = id_of(
        &api.post(
            "/engagements",
            json!({"client_id": first.to_string(), "name": "Bench engagement",
                   "pack": "marketing-engagement"}),
        )
        .await?,
    )?;
    let intake = id_of(
        &api.post(
            "/artifacts",
            json!({"client_id": first.to_string(), "engagement_id": engagement, "type": "intake",
                   "title": "Bench intake", "content": example("intake")?}),
        )
        .await?,
    )?;
    for to in ["in_review", "approved"] {
        api.post(
            &format!("/artifacts/{intake}/transitions"),
            json!({"to": to, "reason": "bench", "override": to == "approved"}),
        )
        .await?;
    }
    api.post(
        "/artifacts",
        json!({"client_id": first.to_string(), "engagement_id": engagement, "type": "strategy",
               "title": "Bench strategy", "content": example("strategy")?}),
    )
    .await?;

    // The operator who signs in, and a client contact who comments.
    let password = format!("bench-{}", generate_secret());
    let operator = id_of(
        &api.post(
            "/users",
            json!({"email": OPERATOR_EMAIL, "name": OPERATOR_NAME, "role": "operator",
                   "password": password}),
        )
        .await?,
    )?;
    let contact = store
        .create_user(
            NewUser {
                email: "contact@client1.bench.example".into(),
                name: "Bench contact".into(),
                role: Role::Client,
                client_id: Some(first),
                password_hash: None,
            },
            &ctx(),
        )
        .await?;
    let staff = Reviewer {
        id: operator,
        name: OPERATOR_NAME.into(),
        kind: ApproverKind::Staff,
    };
    let client_contact = Reviewer {
        id: contact.id.to_string(),
        name: contact.name.clone(),
        kind: ApproverKind::ClientContact,
    };

    // The journey: a template with a metric exit check, started, observed.
    api.post(
        "/journey-templates",
        json!({"name": "bench-gate", "title": "Bench gate", "stages": [
            {"id": "pilot", "name": "Pilot", "target_duration": "7d",
             "exit": [{"name": "precision", "metric": "precision", "op": ">=", "threshold": 0.9}]},
            {"id": "rollout", "name": "Rollout"},
            {"id": "live", "name": "Live"}]}),
    )
    .await?;
    let journey = id_of(
        &api.post(
            "/journeys",
            json!({"client_id": first.to_string(), "template": "bench-gate",
                   "name": "Bench journey"}),
        )
        .await?,
    )?;
    api.post(
        &format!("/journeys/{journey}/events"),
        json!({"event": "start"}),
    )
    .await?;
    let now = time::OffsetDateTime::now_utc();
    let observations: Vec<Value> = (0..OBSERVATIONS)
        .map(|i| {
            let at = now - time::Duration::minutes(10 * (OBSERVATIONS - i) as i64);
            json!({"name": "precision", "value": 0.78 + 0.005 * i as f64,
                   "at": at.format(&time::format_description::well_known::Rfc3339)
                       .unwrap_or_default()})
        })
        .collect();
    api.post(
        &format!("/journeys/{journey}/metrics"),
        json!({"observations": observations}),
    )
    .await?;

    // The big artifact: 50 versions, 200 comments, shared.
    eprintln!(
        "bench ui: the big artifact ({VERSIONS} versions, {COMMENTS} comments), \
         then the other artifacts"
    );
    let big = store
        .create_artifact(
            NewArtifact {
                client_id: first,
                engagement_id: None,
                artifact_type: "brief".into(),
                title: "Bench big artifact".into(),
                content: big_content(1),
                sources: Some(vec![]),
                note: None,
                provenance: "human".into(),
                pipeline: None,
            },
            &ctx(),
        )
        .await?
        .record
        .summary
        .id;
    for v in 2..=VERSIONS {
        store
            .write_content(
                big,
                v - 1,
                NewVersion {
                    content: big_content(v),
                    sources: None,
                    note: Some(format!("revision {v}")),
                    provenance: "human".into(),
                    pipeline: None,
                },
                &ctx(),
            )
            .await?;
    }
    let mut thread: Option<(CommentId, bool)> = None;
    for i in 0..COMMENTS {
        // Spread over versions 1 to 48: the operator last looked at an older
        // version, so the page shows what changed since.
        let version = 1 + (i as i64 * (VERSIONS - 3)) / (COMMENTS as i64 - 1);
        let by = if i % 3 == 1 { &client_contact } else { &staff };
        let reply = matches!(i % 4, 1 | 2).then_some(thread).flatten();
        let new = match reply {
            Some((parent, internal)) => NewComment {
                version: Some(version),
                section: None,
                parent_id: Some(parent),
                body: format!("Reply {i}: agreed, changed in the next revision."),
                internal,
            },
            None => NewComment {
                version: Some(version),
                section: (i % 5 != 0).then(|| SECTIONS[i % SECTIONS.len()].to_owned()),
                parent_id: None,
                body: format!(
                    "Comment {i}: could this say more about the audience and the budget? {}",
                    "The numbers look right but the wording is long. ".repeat(1 + i % 3)
                ),
                internal: i % 25 == 0,
            },
        };
        let internal = new.internal;
        // A client contact does not see internal comments, so does not reply.
        let by = if internal { &staff } else { by };
        let c = store.add_comment(big, new, by, &ctx()).await?;
        if reply.is_none() {
            thread = Some((c.id, internal));
        }
    }
    store.share(big, None, &staff, &ctx()).await?;

    // Each client's brief with ten built on it, then changed: ten stale.
    let progress = Arc::new(Progress::new(
        "bench ui seed",
        artifacts as u64,
        "artifacts",
        false,
    ));
    progress.set_message("seeding".into());
    for _ in 0..3 {
        progress.inc(); // intake, strategy, the big artifact
    }
    for &client in &clients {
        let root = store
            .create_artifact(brief(client, 0, "Bench upstream brief", vec![]), &ctx())
            .await?
            .record
            .summary
            .id;
        progress.inc();
        for k in 0..STALE_PER_CLIENT {
            let source = SourceRef {
                artifact_id: root,
                version: 1,
            };
            store
                .create_artifact(
                    brief(client, k, &format!("Bench derived brief {k}"), vec![source]),
                    &ctx(),
                )
                .await?;
            progress.inc();
        }
        let written = store
            .write_content(
                root,
                1,
                NewVersion {
                    content: json!({"n": 0, "summary": "changed upstream"}),
                    sources: None,
                    note: None,
                    provenance: "human".into(),
                    pipeline: None,
                },
                &ctx(),
            )
            .await?;
        ensure!(
            written.flagged.len() == STALE_PER_CLIENT,
            "the change flagged {} artifacts, expected {STALE_PER_CLIENT}",
            written.flagged.len()
        );
    }

    // The rest: small briefs over the clients, one in twenty shared.
    let rest = artifacts - 3 - CLIENTS * (1 + STALE_PER_CLIENT);
    let next = Arc::new(AtomicUsize::new(0));
    let clients = Arc::new(clients);
    let staff = Arc::new(staff);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SEED_CONCURRENCY {
        let (store, next, clients, staff, progress) = (
            store.clone(),
            next.clone(),
            clients.clone(),
            staff.clone(),
            progress.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rest {
                    break;
                }
                let client = clients[i % clients.len()];
                let a = store
                    .create_artifact(brief(client, i, &format!("Brief {i:05}"), vec![]), &ctx())
                    .await?;
                if i % 20 == 0 {
                    store
                        .share(a.record.summary.id, None, &staff, &ctx())
                        .await?;
                }
                progress.inc();
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done? {
            progress.abandon();
            return Err(e);
        }
    }
    progress.finish();
    // What autovacuum (PostgreSQL) or a periodic ANALYZE would have done by now.
    store.optimize().await?;

    Ok(Seeded {
        targets: vec![
            Target {
                page: "dashboard",
                path: "/".into(),
                marker: "Dashboard".into(),
            },
            Target {
                page: "board",
                path: format!("/engagements/{engagement}"),
                marker: "Bench engagement".into(),
            },
            Target {
                page: "artifact",
                path: format!("/artifacts/{big}"),
                marker: "Bench big artifact".into(),
            },
            Target {
                page: "journey",
                path: format!("/journeys/{journey}"),
                marker: "Bench journey".into(),
            },
        ],
        password,
    })
}

fn brief(client_id: ClientId, n: usize, title: &str, sources: Vec<SourceRef>) -> NewArtifact {
    NewArtifact {
        client_id,
        engagement_id: None,
        artifact_type: "brief".into(),
        title: title.to_owned(),
        content: json!({"n": n, "summary": "A short brief: who, what, by when.",
                        "audience": "small businesses", "deadline": "next quarter"}),
        sources: Some(sources),
        note: None,
        provenance: "template".into(),
        pipeline: None,
    }
}

/// Version `v` of the big artifact: the same sections, some text changing.
fn big_content(v: i64) -> Value {
    let lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
    json!({
        "summary": format!("Revision {v} of the plan. {}", lorem.repeat(4)),
        "goals": ["grow trial sign-ups", format!("retain {}% of customers", 80 + v % 10),
                  "enter two new regions"],
        "audience": {"segments": ["small business", "mid-market", "enterprise"],
                     "regions": ["north", "south", "east", "west"]},
        "channels": [
            {"name": "email", "budget": 1000 + 10 * v, "owner": "lifecycle team"},
            {"name": "search", "budget": 2000, "owner": "growth team"},
            {"name": "social", "budget": 1500 + v, "owner": "brand team"}
        ],
        "timeline": [
            {"phase": "discovery", "weeks": 2},
            {"phase": "build", "weeks": 4 + v % 3},
            {"phase": "launch", "weeks": 1}
        ],
        "risks": [format!("budget review in week {}", 3 + v % 5), "agency capacity",
                  "seasonality"],
        "notes": lorem.repeat(6),
    })
}

async fn measure(
    api: &Api,
    seeded: &Seeded,
    requests: usize,
    concurrency: usize,
) -> Result<Vec<PageResult>> {
    let session = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .json(&json!({"email": OPERATOR_EMAIL, "password": seeded.password}))
        .send()
        .await?;
    if !session.status().is_success() {
        bail!(
            "signing in the operator answered {}: {}",
            session.status(),
            session.text().await.unwrap_or_default()
        );
    }
    let token: Value = session.json().await?;
    let token = token["token"]
        .as_str()
        .context("no token in the session")?
        .to_owned();
    // A browser's cookies: the session and a CSRF cookie (so the pages do not
    // set a new one each time).
    let csrf: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let cookie = Arc::new(format!("waymark_session={token}; waymark_csrf={csrf}"));

    let progress = Arc::new(Progress::new(
        "bench ui",
        (seeded.targets.len() * requests) as u64,
        "requests",
        false,
    ));
    let mut results = vec![];
    for t in &seeded.targets {
        progress.set_message(t.page.into());
        let url = Arc::new(format!("{}{}", api.base, t.path));
        let marker = Arc::new(t.marker.clone());
        for _ in 0..WARM_UP {
            fetch(&api.http, &url, &cookie, &marker).await?;
        }
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (http, url, cookie, marker, next, progress) = (
                api.http.clone(),
                url.clone(),
                cookie.clone(),
                marker.clone(),
                next.clone(),
                progress.clone(),
            );
            workers.spawn(async move {
                let mut out = vec![];
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let started = Instant::now();
                    let bytes = fetch(&http, &url, &cookie, &marker).await?;
                    out.push((started.elapsed(), bytes));
                    progress.inc();
                }
                anyhow::Ok(out)
            });
        }
        let mut all = vec![];
        while let Some(done) = workers.join_next().await {
            match done? {
                Ok(out) => all.extend(out),
                Err(e) => {
                    progress.abandon();
                    return Err(e.context(format!("the {} page", t.page)));
                }
            }
        }
        let mut lat: Vec<Duration> = all.iter().map(|(d, _)| *d).collect();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        results.push(PageResult {
            page: t.page,
            path: t.path.clone(),
            requests: all.len(),
            p50: pct(0.50),
            p99: pct(0.99),
            max: lat[lat.len() - 1],
            mean_bytes: all.iter().map(|(_, b)| *b as f64).sum::<f64>() / all.len() as f64,
        });
    }
    progress.finish();
    Ok(results)
}

/// One page, as a signed-in browser asks for it: must be a 200 HTML page
/// containing `marker`. Answers the body's size.
async fn fetch(http: &reqwest::Client, url: &str, cookie: &str, marker: &str) -> Result<usize> {
    let res = http
        .get(url)
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = res.status();
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let location = res
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" (to {l})"))
        .unwrap_or_default();
    let body = res.text().await.with_context(|| format!("GET {url}"))?;
    if status != reqwest::StatusCode::OK {
        let start: String = body.chars().take(300).collect();
        bail!("GET {url} answered {status}{location}: {start}");
    }
    if !html
        || !body
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("<!doctype html")
    {
        bail!("GET {url} answered 200 but not an HTML page");
    }
    if !body.contains(marker) {
        bail!("GET {url} answered a page without {marker:?}");
    }
    Ok(body.len())
}

fn report(args: &UiBench, seed: Duration, results: &[PageResult]) {
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    if args.json {
        for r in results {
            println!(
                "{}",
                json!({"backend": backend, "page": r.page, "path": r.path,
                    "artifacts": args.artifacts, "concurrency": args.concurrency,
                    "requests": r.requests, "p50_ms": ms(r.p50), "p99_ms": ms(r.p99),
                    "max_ms": ms(r.max), "mean_bytes": r.mean_bytes,
                    "seed_s": seed.as_secs_f64()})
            );
        }
        return;
    }
    println!(
        "waymark bench ui — backend {backend}, {} artifacts (seeded in {:.1} s), \
         concurrency {}",
        args.artifacts,
        seed.as_secs_f64(),
        args.concurrency
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "page", "requests", "p50 ms", "p99 ms", "max ms", "mean bytes"
    );
    for r in results {
        println!(
            "{:<10} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>11.0}",
            r.page,
            r.requests,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.mean_bytes
        );
    }
}
