//! `waymark bench engine`: the workloads W1 (10,000 independent no-op tasks) and
//! W2 (a 1,000-task DAG of 10 layers, 9,000 edges) through the real engine — the
//! store's enqueue path and the embedded workers — on a fresh database per run,
//! with durable commits (SQLite WAL `synchronous=FULL`; PostgreSQL
//! `synchronous_commit=on`). Prints one line per run as WORKLOADS.md asks, then
//! the median of the runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use waymark_domain::work::{TaskSpec, check_tasks};
use waymark_engine::run::{self as engine, EngineSettings};
use waymark_store::{NewClient, NewUnit, PageRequest, Store, WriteContext};

use crate::bench::{BenchBackend, BenchDb};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 10,000 independent no-op tasks, enqueued in batches of 1,000
    W1,
    /// 1,000 no-op tasks in 10 layers of 100, each depending on 10 of the layer before
    W2,
}

#[derive(Debug, clap::Args)]
pub struct EngineBench {
    /// Which workload to run
    #[arg(long, value_enum)]
    workload: Workload,
    /// Which database to run on
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BenchBackend,
    /// PostgreSQL URL; a fresh schema is made in it per run and dropped afterwards
    #[arg(long, env = "WAYMARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Runs per configuration; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Worker concurrencies to measure W1 at (W2 runs at the first)
    #[arg(long, value_delimiter = ',', default_values_t = vec![engine::DEFAULT_CONCURRENCY, 8])]
    concurrency: Vec<usize>,
    /// W1's task count, a multiple of 1,000 (claiming must stay O(claimed):
    /// compare 100,000 with the default)
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
}

struct Run {
    wall: Duration,
    enqueue: Duration,
    drain: Duration,
    rows: i64,
}

pub async fn run(args: EngineBench) -> Result<()> {
    if args.runs == 0 || args.concurrency.is_empty() {
        bail!("--runs and --concurrency need at least one value");
    }
    // One unit per 1,000 tasks; `wait_completed` reads one page of 200 units.
    if args.tasks == 0 || !args.tasks.is_multiple_of(1000) || args.tasks > 200_000 {
        bail!("--tasks is a multiple of 1,000, at most 200,000");
    }
    let (name, n) = match args.workload {
        Workload::W1 => ("w1", args.tasks),
        Workload::W2 => ("w2", 1_000usize),
    };
    let concurrencies = match args.workload {
        Workload::W1 => args.concurrency.clone(),
        Workload::W2 => vec![args.concurrency[0]],
    };
    let backend = match args.backend {
        BenchBackend::Sqlite => "sqlite",
        BenchBackend::Postgres => "postgres",
    };
    for concurrency in concurrencies {
        let mut runs = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let (store, db) = BenchDb::open(args.backend, args.database_url.as_deref()).await?;
            let store: Arc<dyn Store> = Arc::new(store);
            let r = match args.workload {
                Workload::W1 => w1(store.clone(), concurrency, n / 1000).await,
                Workload::W2 => w2(store.clone(), concurrency).await,
            };
            store.close().await;
            db.drop().await?;
            let r = r?;
            println!(
                "waymark {name} {n} {:.3} {:.0}",
                r.wall.as_secs_f64(),
                n as f64 / r.wall.as_secs_f64()
            );
            println!(
                "# enqueue_s={:.3} drain_s={:.3} concurrency={concurrency} backend={backend} \
                 overhead_ms_per_task={:.3} rows_written={} durable=1 version={}",
                r.enqueue.as_secs_f64(),
                r.drain.as_secs_f64(),
                r.wall.as_secs_f64() * 1000.0 / n as f64,
                r.rows,
                env!("CARGO_PKG_VERSION"),
            );
            runs.push(r);
        }
        runs.sort_by_key(|r| r.wall);
        let m = &runs[runs.len() / 2];
        println!(
            "# median {name} backend={backend} concurrency={concurrency} runs={}: wall_s={:.3} \
             tasks_per_s={:.0} overhead_ms_per_task={:.3}",
            runs.len(),
            m.wall.as_secs_f64(),
            n as f64 / m.wall.as_secs_f64(),
            m.wall.as_secs_f64() * 1000.0 / n as f64,
        );
    }
    Ok(())
}

fn ctx() -> WriteContext {
    WriteContext::new("bench")
}

async fn new_client(store: &Arc<dyn Store>) -> Result<waymark_domain::ClientId> {
    Ok(store
        .create_client(
            NewClient {
                name: "Bench".into(),
                ..Default::default()
            },
            &ctx(),
        )
        .await?
        .record
        .id)
}

fn unit_of(client: waymark_domain::ClientId, specs: Vec<TaskSpec>) -> Result<NewUnit> {
    let tasks = check_tasks(specs).map_err(|e| anyhow::anyhow!("bad workload: {e:?}"))?;
    Ok(NewUnit {
        client_id: client,
        name: "bench".into(),
        tasks,
        depends_on_units: vec![],
        origin: None,
        plan: None,
    })
}

/// Starts the embedded workers; answers a handle that stops them.
fn start_engine(
    store: Arc<dyn Store>,
    concurrency: usize,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(engine::run(
        store,
        EngineSettings {
            concurrency,
            name: "bench".into(),
            ..EngineSettings::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, handle)
}

/// Waits until a separate query sees every unit completed.
async fn wait_completed(store: &Arc<dyn Store>, units: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let page = store
            .list_units(
                None,
                PageRequest {
                    limit: 200,
                    cursor: None,
                },
            )
            .await?;
        let done = page
            .items
            .iter()
            .filter(|u| u.status == waymark_domain::work::UnitStatus::Completed)
            .count();
        if done >= units {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the workload did not finish within 10 minutes ({done}/{units} units)");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn rows_written(store: &Arc<dyn Store>, tasks: i64, edges: i64, units: i64) -> Result<i64> {
    let audit = store.audit_head().await?.seq;
    let events = store.last_event_seq().await?;
    // tasks, edges, units, one fairness clock row, audit records, events.
    Ok(tasks + edges + units + 1 + audit + events)
}

async fn w1(store: Arc<dyn Store>, concurrency: usize, units: usize) -> Result<Run> {
    let client = new_client(&store).await?;
    // Built before t0; only the enqueueing is timed.
    let batches: Vec<NewUnit> = (0..units)
        .map(|b| {
            let specs = (0..1000)
                .map(|i| {
                    serde_json::from_value(json!({
                        "key": format!("t{}", b * 1000 + i),
                        "executor": "noop",
                        "input": b * 1000 + i,
                    }))
                    .context("task spec")
                })
                .collect::<Result<Vec<TaskSpec>>>()?;
            unit_of(client, specs)
        })
        .collect::<Result<_>>()?;
    let audit_before = store.audit_head().await?.seq;
    let events_before = store.last_event_seq().await?;
    let t0 = Instant::now();
    for unit in batches {
        store.submit_unit(unit, &ctx()).await?;
    }
    let enqueue = t0.elapsed();
    let (stop, handle) = start_engine(store.clone(), concurrency);
    wait_completed(&store, units).await?;
    let wall = t0.elapsed();
    let _ = stop.send(());
    let _ = handle.await;
    let rows = rows_written(&store, units as i64 * 1000, 0, units as i64).await?
        - audit_before
        - events_before;
    Ok(Run {
        wall,
        enqueue,
        drain: wall - enqueue,
        rows,
    })
}

async fn w2(store: Arc<dyn Store>, concurrency: usize) -> Result<Run> {
    let client = new_client(&store).await?;
    let mut specs = Vec::with_capacity(1000);
    for k in 0..10 {
        for j in 0..100 {
            let deps: Vec<String> = if k == 0 {
                vec![]
            } else {
                (0..10)
                    .map(|i| format!("t_{}_{}", k - 1, (j + i) % 100))
                    .collect()
            };
            specs.push(serde_json::from_value::<TaskSpec>(json!({
                "key": format!("t_{k}_{j}"),
                "executor": "noop",
                "depends_on": deps,
            }))?);
        }
    }
    let unit = unit_of(client, specs)?;
    let audit_before = store.audit_head().await?.seq;
    let events_before = store.last_event_seq().await?;
    // The workers are up and idle before t0, as a DAG runner's would be.
    let (stop, handle) = start_engine(store.clone(), concurrency);
    let t0 = Instant::now();
    store.submit_unit(unit, &ctx()).await?;
    let enqueue = t0.elapsed();
    wait_completed(&store, 1).await?;
    let wall = t0.elapsed();
    let _ = stop.send(());
    let _ = handle.await;
    let rows = rows_written(&store, 1_000, 9_000, 1).await? - audit_before - events_before;
    Ok(Run {
        wall,
        enqueue,
        drain: wall - enqueue,
        rows,
    })
}
