//! `waymark bench cascade`: the stale cascade on a big lineage graph.
//!
//! Builds a graph of `--artifacts` artifacts through the store: one root with
//! `--downstream` artifacts below it, `--depth` levels deep and
//! `downstream / depth` wide, each level's artifacts built on two of the level
//! above (so the graph has diamonds, not just chains); the rest are unrelated
//! lineages of 100. Then it changes the root and times the write that runs the
//! cascade, which must flag every downstream artifact in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::json;
use tokio::sync::Semaphore;
use waymark_domain::artifact::SourceRef;
use waymark_domain::{ArtifactId, ClientId};
use waymark_store::{NewArtifact, NewClient, NewVersion, Store, WriteContext};

use waymark_client::progress::Progress;

use crate::bench::{BenchBackend, BenchDb, ms};

#[derive(Debug, clap::Args)]
pub struct CascadeBench {
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Artifacts in the whole graph
    #[arg(long, default_value_t = 100_000)]
    artifacts: usize,
    /// Artifacts downstream of the root that changes
    #[arg(long, default_value_t = 10_000)]
    downstream: usize,
    /// Levels below the root
    #[arg(long, default_value_t = 100)]
    depth: usize,
    /// Creates in flight while building the graph
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
}

fn ctx() -> WriteContext {
    WriteContext::new("bench")
}

fn node(client_id: ClientId, ty: &str, n: usize, sources: Vec<SourceRef>) -> NewArtifact {
    NewArtifact {
        client_id,
        engagement_id: None,
        artifact_type: ty.into(),
        title: format!("{ty} {n}"),
        content: json!({"n": n, "body": "lorem ipsum dolor sit amet"}),
        sources: Some(sources),
        note: None,
        provenance: "template".into(),
        pipeline: None,
    }
}

fn v1(id: ArtifactId) -> SourceRef {
    SourceRef {
        artifact_id: id,
        version: 1,
    }
}

pub async fn run(args: CascadeBench) -> Result<()> {
    let width = args.downstream / args.depth.max(1);
    ensure!(
        args.depth >= 1 && width >= 2 && width * args.depth == args.downstream,
        "--downstream must be a multiple of --depth, at least twice it"
    );
    ensure!(
        args.artifacts > args.downstream,
        "--artifacts must exceed --downstream"
    );
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let (sql, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
    let store: Arc<dyn Store> = Arc::new(sql);
    let client = store
        .create_client(
            NewClient {
                name: "Bench".into(),
                ..Default::default()
            },
            &ctx(),
        )
        .await?
        .record
        .id;

    let progress = Arc::new(Progress::new(
        "bench cascade",
        args.artifacts as u64,
        "artifacts",
        false,
    ));
    progress.set_message("building graph".into());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let root = store
        .create_artifact(node(client, "root", 0, vec![]), &ctx())
        .await?
        .record
        .summary
        .id;
    progress.inc();

    // Unrelated lineages of 100 (one root and a chain), built alongside.
    let filler = args.artifacts - 1 - args.downstream;
    let mut filler_tasks = tokio::task::JoinSet::new();
    for group in 0..filler.div_ceil(100) {
        let (store, gate, progress) = (store.clone(), gate.clone(), progress.clone());
        let size = 100.min(filler - group * 100);
        filler_tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut prev: Option<ArtifactId> = None;
            for k in 0..size {
                let sources = prev.map(v1).into_iter().collect();
                let a = store
                    .create_artifact(node(client, "other", group * 100 + k, sources), &ctx())
                    .await?;
                prev = Some(a.record.summary.id);
                progress.inc();
            }
            anyhow::Ok(())
        });
    }

    // The downstream of the root, level by level: each artifact is built on two
    // of the level above.
    let mut level: Vec<ArtifactId> = vec![root; width];
    for depth in 1..=args.depth {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..width {
            let sources = if depth == 1 {
                vec![v1(root)]
            } else {
                vec![v1(level[i]), v1(level[(i + 1) % width])]
            };
            let (store, gate, progress) = (store.clone(), gate.clone(), progress.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let a = store
                    .create_artifact(
                        node(client, "downstream", depth * width + i, sources),
                        &ctx(),
                    )
                    .await?;
                progress.inc();
                anyhow::Ok((i, a.record.summary.id))
            });
        }
        let mut next = vec![root; width];
        while let Some(done) = tasks.join_next().await {
            let (i, id) = done??;
            next[i] = id;
        }
        level = next;
    }
    while let Some(done) = filler_tasks.join_next().await {
        done??;
    }
    let build = started.elapsed();
    progress.finish();
    // What autovacuum (PostgreSQL) or a periodic ANALYZE would have done by now.
    store.optimize().await?;

    eprintln!("bench: graph built; changing the root");
    let t = Instant::now();
    let lineage = store.lineage(root, args.downstream).await?;
    let lineage_time = t.elapsed();
    ensure!(
        lineage.downstream.len() == args.downstream,
        "lineage found {} downstream artifacts, expected {}",
        lineage.downstream.len(),
        args.downstream
    );

    let write = |v: usize| NewVersion {
        content: json!({"n": 0, "body": format!("revision {v}")}),
        sources: None,
        note: None,
        provenance: "human".into(),
        pipeline: None,
    };
    let t = Instant::now();
    let first = store.write_content(root, 1, write(2), &ctx()).await?;
    let cascade = t.elapsed();
    if first.flagged.len() != args.downstream {
        bail!(
            "the cascade flagged {} artifacts, expected {}",
            first.flagged.len(),
            args.downstream
        );
    }
    let mut unchanged = write(2);
    unchanged.note = Some("same content".into());
    let t = Instant::now();
    let same = store.write_content(root, 2, unchanged, &ctx()).await?;
    let unchanged_time = t.elapsed();
    ensure!(
        same.flagged.is_empty(),
        "an unchanged hash flagged artifacts"
    );
    let t = Instant::now();
    let again = store.write_content(root, 3, write(4), &ctx()).await?;
    let recascade = t.elapsed();
    ensure!(
        again.flagged.len() == args.downstream,
        "the second cascade missed artifacts"
    );

    store.close().await;
    if std::env::var_os("WAYMARK_BENCH_KEEP").is_none() {
        db.drop().await?;
    }
    report(
        &args,
        build,
        cascade,
        recascade,
        unchanged_time,
        lineage_time,
    );
    Ok(())
}

fn report(
    args: &CascadeBench,
    build: Duration,
    cascade: Duration,
    recascade: Duration,
    unchanged: Duration,
    lineage: Duration,
) {
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    if args.json {
        println!(
            "{}",
            json!({
                "backend": backend, "artifacts": args.artifacts, "downstream": args.downstream,
                "depth": args.depth, "width": args.downstream / args.depth,
                "build_s": build.as_secs_f64(), "cascade_ms": ms(cascade),
                "recascade_ms": ms(recascade), "unchanged_write_ms": ms(unchanged),
                "lineage_ms": ms(lineage),
            })
        );
        return;
    }
    println!(
        "stale cascade on {backend}: {} artifacts, {} downstream of the root ({} deep, {} wide)",
        args.artifacts,
        args.downstream,
        args.depth,
        args.downstream / args.depth
    );
    println!(
        "  graph built in            {:>10.1} s",
        build.as_secs_f64()
    );
    println!(
        "  change root, flag all     {:>10.1} ms  ({} artifacts stale, one transaction)",
        ms(cascade),
        args.downstream
    );
    println!(
        "  change root again         {:>10.1} ms  (already stale: causes added)",
        ms(recascade)
    );
    println!("  same content, no cascade  {:>10.1} ms", ms(unchanged));
    println!("  lineage of the root       {:>10.1} ms", ms(lineage));
}
