//! `waymark bench export`: delivery exports of an engagement through the
//! real server (in process, on a loopback port), on a fresh SQLite file or
//! PostgreSQL schema, with the bundles kept in a temporary folder.
//!
//! Seeding (through the API): a `marketing-engagement` engagement with
//! `--artifacts` approved artifacts (50 by default), spread evenly over the
//! five types its delivery needs, each with its type's example content, and
//! `--files` attached text files of 64 KiB.
//!
//! Measured: `POST /api/v1/engagements/{id}/exports` `--runs` times (the
//! whole export: reading the delivery, typesetting the PDF report, writing
//! the ZIP, storing and recording it): min, p50, max; then one export called
//! in process, to say where its time goes (read, report, ZIP, store).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use waymark_engine::blobs::Blobs;
use waymark_engine::catalog::PackCatalog;
use waymark_engine::export::{ExportRequest, export};
use waymark_store::{Store, WriteContext};

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct ExportBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Approved artifacts in the engagement
    #[arg(long, default_value_t = 50)]
    artifacts: usize,
    /// Attached files (64 KiB of text each)
    #[arg(long, default_value_t = 5)]
    files: usize,
    /// Exports timed
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print one JSON object instead of lines
    #[arg(long)]
    json: bool,
}

/// The types the marketing delivery needs, in pipeline order.
const TYPES: [&str; 5] = ["intake", "strategy", "creatives", "execution", "delivery"];

struct Api {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let res = req.bearer_auth(&self.secret).send().await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status} {body}");
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(&body),
            path,
        )
        .await
    }
}

/// The engagement's client and id, with its artifacts approved and files attached.
async fn seed(api: &Api, args: &ExportBench) -> Result<(String, String)> {
    let client = api
        .post("/clients", json!({"name": "Bench export"}))
        .await?["id"]
        .as_str()
        .context("a client id")?
        .to_owned();
    let eng = api
        .post(
            "/engagements",
            json!({"client_id": client, "name": "Bench delivery", "pack": "marketing-engagement"}),
        )
        .await?["id"]
        .as_str()
        .context("an engagement id")?
        .to_owned();
    let pack = api
        .send(
            api.http
                .get(format!("{}/packs/marketing-engagement", api.base)),
            "the pack",
        )
        .await?;
    for (i, ty) in TYPES.iter().enumerate() {
        let example = pack["artifact_types"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == *ty))
            .map(|t| t["example"].clone())
            .context("the type's example")?;
        let n = args.artifacts / TYPES.len() + usize::from(i < args.artifacts % TYPES.len());
        for k in 1..=n {
            let a = api
                .post(
                    "/artifacts",
                    json!({"client_id": client, "engagement_id": eng, "type": ty,
                           "title": format!("{ty} {k}"), "content": example}),
                )
                .await?;
            let id = a["id"].as_str().context("an artifact id")?;
            api.post(
                &format!("/artifacts/{id}/transitions"),
                json!({"to": "in_review"}),
            )
            .await?;
            api.post(
                &format!("/artifacts/{id}/transitions"),
                json!({"to": "approved", "override": true, "reason": "bench"}),
            )
            .await?;
        }
    }
    for f in 0..args.files {
        let text: String = (0..1024)
            .map(|l| format!("File {f}, line {l}: the launch brief says what the client wants.\n"))
            .collect::<String>()
            .chars()
            .take(64 * 1024)
            .collect();
        let form = reqwest::multipart::Form::new()
            .text("client_id", client.clone())
            .text("engagement_id", eng.clone())
            .part(
                "file",
                reqwest::multipart::Part::bytes(text.into_bytes())
                    .file_name(format!("brief-{f}.txt")),
            );
        api.send(
            api.http.post(format!("{}/files", api.base)).multipart(form),
            "an upload",
        )
        .await?;
    }
    Ok((client, eng))
}

pub async fn run(args: ExportBench) -> Result<()> {
    ensure!(
        args.artifacts >= TYPES.len() && args.runs >= 1,
        "--artifacts must be at least 5 (one per type the delivery needs) and --runs at least 1"
    );
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let folder = tempfile::tempdir()?;
    let blobs = Blobs::local(folder.path())?;
    let server = {
        let blobs = blobs.clone();
        crate::bench::BenchServer::start_with(store.clone(), move |s| s.with_blobs(blobs)).await?
    };
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("{}/api/v1", server.base),
        secret: server.secret.clone(),
    };
    let outcome = async {
        let (_, eng) = seed(&api, &args).await?;
        let path = format!("/engagements/{eng}/exports");
        let mut times = Vec::with_capacity(args.runs);
        let mut last = Value::Null;
        for _ in 0..args.runs {
            let t = Instant::now();
            last = api.post(&path, json!({})).await?;
            times.push(t.elapsed());
        }
        // Once more in process, for where the time goes.
        let engagement = store.get_engagement(eng.parse()?).await?;
        let catalog = PackCatalog::new(store.clone());
        let request = ExportRequest {
            waymark_version: crate::serve::build_info().version,
        };
        let ctx = WriteContext::new("bench");
        let (_, timings) = export(&store, &catalog, &blobs, engagement, &request, &ctx)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok((times, last, timings))
    }
    .await;
    server.stop().await;
    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    let (mut times, last, timings) = outcome?;
    times.sort();
    let p50 = times[(times.len() - 1) / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    let size = last["size"].as_i64().unwrap_or(0);
    if args.json {
        println!(
            "{}",
            json!({"backend": backend, "op": "export", "artifacts": args.artifacts,
                   "files": args.files, "runs": args.runs, "min_ms": ms(min), "p50_ms": ms(p50),
                   "max_ms": ms(max), "zip_bytes": size, "read_ms": timings.read_ms,
                   "report_ms": timings.report_ms, "zip_ms": timings.zip_ms,
                   "store_ms": timings.store_ms})
        );
        return Ok(());
    }
    println!(
        "waymark bench export — backend {backend}, bundles in a local folder\n\
         export of {} artifacts and {} files ({:.1} KiB ZIP), {} runs: min {:.0} ms, p50 {:.0} ms, max {:.0} ms\n\
         one export in process: read {} ms, PDF report {} ms, ZIP {} ms, store and record {} ms",
        args.artifacts,
        args.files,
        size as f64 / 1024.0,
        args.runs,
        ms(min),
        ms(p50),
        ms(max),
        timings.read_ms,
        timings.report_ms,
        timings.zip_ms,
        timings.store_ms,
    );
    Ok(())
}
