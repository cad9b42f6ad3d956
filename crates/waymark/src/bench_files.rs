//! `waymark bench files`: uploads and text extraction through the real
//! server (in process, on a loopback port) and the real engine, on a fresh
//! SQLite file or PostgreSQL schema, with files kept in a temporary folder.
//!
//! Measured:
//! - upload throughput: `--uploads` distinct text files of `--size-kib` each,
//!   `POST /api/v1/files` (multipart) at `--concurrency`: files/s, MiB/s, p50
//!   and p99 of one upload;
//! - extraction: a `--pages`-page PDF (and a 10,000-row CSV) uploaded, then
//!   read by the engine's `file.extract` task: the extraction time recorded on
//!   the file, and the whole time from upload to text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};
use waymark_engine::blobs::Blobs;
use waymark_engine::{Engine, EngineSettings};
use waymark_store::Store;

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct FilesBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Files uploaded for the throughput figure
    #[arg(long, default_value_t = 200)]
    uploads: usize,
    /// Size of each uploaded file, in KiB
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Uploads in flight
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Pages of the PDF whose extraction is timed
    #[arg(long, default_value_t = 100)]
    pages: usize,
    /// Print one JSON object per result instead of lines
    #[arg(long)]
    json: bool,
}

pub async fn run(args: FilesBench) -> Result<()> {
    ensure!(
        args.uploads >= 1 && args.size_kib >= 1 && args.concurrency >= 1 && args.pages >= 1,
        "--uploads, --size-kib, --concurrency and --pages must be at least 1"
    );
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let folder = tempfile::tempdir()?;
    let blobs = Blobs::local(folder.path())?;
    let server = {
        let blobs = blobs.clone();
        crate::bench::BenchServer::start_with(store.clone(), move |s| s.with_blobs(blobs)).await?
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let base = format!("{}/api/v1", server.base);
    let secret: Arc<str> = server.secret.clone().into();
    let outcome = async {
        let client = {
            let res = http
                .post(format!("{base}/clients"))
                .bearer_auth(&*secret)
                .json(&json!({"name": "Bench files"}))
                .send()
                .await?;
            let body: Value = res.json().await?;
            body["id"].as_str().unwrap_or_default().to_owned()
        };
        let uploads = upload_many(&http, &base, &secret, &client, &args).await?;
        let engine = Engine::new(
            store.clone(),
            EngineSettings {
                concurrency: 4,
                blobs: Some(blobs.clone()),
                ..EngineSettings::default()
            },
        );
        // Read the uploads' text first, so the timed extractions run alone.
        engine.run_until_idle().await?;
        let pages: Vec<String> = (1..=args.pages)
            .map(|p| {
                format!(
                    "Page {p} of the bench report.\nRevenue grew in region {} by {} percent.\n\
                     The renewal terms of contract {p} were reviewed and signed.",
                    p % 7,
                    p % 13
                )
            })
            .collect();
        let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        let pdf = waymark_files::fixtures::pdf(&refs);
        let pdf_run =
            extraction(&http, &base, &secret, &client, &engine, "report.pdf", pdf).await?;
        let mut csv = String::from("region,amount,closed_on,owner\n");
        for i in 0..10_000 {
            csv.push_str(&format!(
                "r{},{}.{},2026-{:02}-{:02},owner {}\n",
                i % 9,
                i * 7 % 5000,
                i % 100,
                i % 12 + 1,
                i % 28 + 1,
                i % 31
            ));
        }
        let csv_run = extraction(
            &http,
            &base,
            &secret,
            &client,
            &engine,
            "ledger.csv",
            csv.into_bytes(),
        )
        .await?;
        anyhow::Ok((uploads, pdf_run, csv_run))
    }
    .await;
    server.stop().await;
    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    let (uploads, pdf_run, csv_run) = outcome?;
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    let mib = (args.uploads * args.size_kib) as f64 / 1024.0;
    let secs = uploads.total.as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({"backend": backend, "op": "upload", "files": args.uploads, "size_kib": args.size_kib,
                   "concurrency": args.concurrency, "files_per_s": args.uploads as f64 / secs,
                   "mib_per_s": mib / secs, "p50_ms": ms(uploads.p50), "p99_ms": ms(uploads.p99)})
        );
        for (name, r) in [("extract_pdf", &pdf_run), ("extract_csv", &csv_run)] {
            println!(
                "{}",
                json!({"backend": backend, "op": name, "bytes": r.bytes, "pages": r.pages,
                       "characters": r.chars, "extraction_ms": r.extraction_ms,
                       "upload_to_text_ms": ms(r.whole)})
            );
        }
        return Ok(());
    }
    println!(
        "waymark bench files — backend {backend}, files in a local folder\n\
         upload: {} files of {} KiB at concurrency {}: {:.1} files/s, {:.1} MiB/s (p50 {:.1} ms, p99 {:.1} ms)",
        args.uploads,
        args.size_kib,
        args.concurrency,
        args.uploads as f64 / secs,
        mib / secs,
        ms(uploads.p50),
        ms(uploads.p99)
    );
    for (name, r) in [("PDF", &pdf_run), ("CSV", &csv_run)] {
        println!(
            "extract {name}: {} bytes{}, {} characters: read in {} ms; upload to text {:.0} ms",
            r.bytes,
            r.pages.map(|p| format!(", {p} pages")).unwrap_or_default(),
            r.chars,
            r.extraction_ms,
            ms(r.whole)
        );
    }
    Ok(())
}

struct Uploads {
    total: Duration,
    p50: Duration,
    p99: Duration,
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    client: &str,
    name: String,
    bytes: Vec<u8>,
) -> Result<Value> {
    let form = reqwest::multipart::Form::new()
        .text("client_id", client.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    let res = http
        .post(format!("{base}/files"))
        .bearer_auth(secret)
        .multipart(form)
        .send()
        .await?;
    let status = res.status();
    let body: Value = res.json().await?;
    if !status.is_success() {
        bail!("an upload answered {status}: {body}");
    }
    Ok(body)
}

async fn upload_many(
    http: &reqwest::Client,
    base: &str,
    secret: &Arc<str>,
    client: &str,
    args: &FilesBench,
) -> Result<Uploads> {
    let line = "The quarterly review notes for the account, with figures and next steps.\n";
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, base, secret, client, next) = (
            http.clone(),
            base.to_owned(),
            secret.clone(),
            client.to_owned(),
            next.clone(),
        );
        let (total, size) = (args.uploads, args.size_kib * 1024);
        workers.spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(took);
                }
                // Distinct bytes per file, so none is deduplicated.
                let mut text = format!("Bench file {i}\n");
                while text.len() < size {
                    text.push_str(line);
                }
                text.truncate(size);
                let t = Instant::now();
                upload(
                    &http,
                    &base,
                    &secret,
                    &client,
                    format!("notes-{i}.txt"),
                    text.into_bytes(),
                )
                .await?;
                took.push(t.elapsed());
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.extend(done??);
    }
    let total = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    Ok(Uploads {
        total,
        p50: at(0.5),
        p99: at(0.99),
    })
}

struct Extraction {
    bytes: usize,
    pages: Option<i64>,
    chars: i64,
    extraction_ms: i64,
    whole: Duration,
}

async fn extraction(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    client: &str,
    engine: &Engine,
    name: &str,
    bytes: Vec<u8>,
) -> Result<Extraction> {
    let size = bytes.len();
    let started = Instant::now();
    let up = upload(http, base, secret, client, name.to_owned(), bytes).await?;
    engine.run_until_idle().await?;
    let whole = started.elapsed();
    let id = up["id"].as_str().unwrap_or_default();
    let f: Value = http
        .get(format!("{base}/files/{id}"))
        .bearer_auth(secret)
        .send()
        .await?
        .json()
        .await?;
    ensure!(f["status"] == "extracted", "the {name} was not read: {f}");
    Ok(Extraction {
        bytes: size,
        pages: f["pages"].as_i64(),
        chars: f["text_chars"].as_i64().unwrap_or(0),
        extraction_ms: f["extraction_ms"].as_i64().unwrap_or(0),
        whole,
    })
}
