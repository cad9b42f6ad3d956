//! The durable work engine survives SIGKILL: of `waymark serve` running its
//! embedded workers, and of a `waymark worker` process. Afterwards every task
//! has completed exactly once, dependencies held, and the audit chain verifies.
//! Two `waymark worker` processes share a queue without running a task twice.
//! Writes answered to concurrent clients survive SIGKILL of the server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{Backend, Server, Worker, waymark};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_survives_sigkill_of_the_server_sqlite() {
    w2_survives_sigkill_of_the_server(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_survives_sigkill_of_the_server_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    w2_survives_sigkill_of_the_server(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answered_writes_survive_sigkill_sqlite() {
    concurrent_answered_writes_survive_sigkill(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answered_writes_survive_sigkill_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    concurrent_answered_writes_survive_sigkill(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_survives_sigkill_of_a_worker_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    w2_survives_sigkill_of_a_worker(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_10000_tasks_postgres() {
    let Some(b) = Backend::postgres().await else {
        return;
    };
    two_workers_share_10000_tasks(b).await;
}

/// W2 (see `bench/WORKLOADS.md`): 10 layers of 100 no-op tasks; task (k, j),
/// k >= 1, waits on the 10 tasks (k-1, (j+i) mod 100), i = 0..9.
pub(crate) fn w2_tasks() -> Vec<Value> {
    let mut tasks = Vec::with_capacity(1000);
    for k in 0..10 {
        for j in 0..100 {
            let deps: Vec<String> = if k == 0 {
                vec![]
            } else {
                (0..10)
                    .map(|i| format!("t_{}_{}", k - 1, (j + i) % 100))
                    .collect()
            };
            tasks.push(json!({
                "key": format!("t_{k}_{j}"),
                "executor": "noop",
                "depends_on": deps,
                "input": k * 100 + j,
            }));
        }
    }
    tasks
}

const W2_TASKS: i64 = 1000;
const W2_EDGES: i64 = 9000;

/// The lease of the workers that get killed: their tasks run again soon after.
const SHORT_LEASE: (&str, &str) = ("WAYMARK_WORKER_LEASE_S", "2");

const COMPLETED: &str = "SELECT count(*) FROM tasks WHERE status = 'completed'";

pub(crate) async fn submit(
    server: &Server,
    http: &reqwest::Client,
    client: &str,
    name: &str,
    tasks: Vec<Value>,
) -> String {
    let body = json!({"client_id": client, "name": name, "tasks": tasks});
    let size = body.to_string().len();
    assert!(
        size < 1024 * 1024,
        "the unit fits the default body limit: {size} bytes"
    );
    let res = http
        .post(format!("{}/api/v1/work/units", server.url))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let unit: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "submitting {name}: {unit}");
    unit["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn new_client(server: &Server, http: &reqwest::Client) -> String {
    server
        .post(http, "/api/v1/clients", json!({"name": "Crash test"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls the database until at least `at_least` tasks are completed; panics,
/// showing `output()`, if that takes longer than `limit`.
pub(crate) async fn wait_for_completed(
    backend: &Backend,
    at_least: i64,
    limit: Duration,
    output: impl Fn() -> String,
) -> i64 {
    let start = Instant::now();
    loop {
        let n = backend.scalar(COMPLETED).await;
        if n >= at_least {
            return n;
        }
        if start.elapsed() > limit {
            panic!(
                "only {n} tasks completed after {limit:?} (waiting for {at_least}):\n{}",
                output()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `GET /api/v1/work/units/{id}` until the unit is completed.
async fn wait_for_unit(
    server: &Server,
    http: &reqwest::Client,
    unit: &str,
    limit: Duration,
    output: impl Fn() -> String,
) {
    let start = Instant::now();
    loop {
        let res = http
            .get(format!("{}/api/v1/work/units/{unit}", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let got: Value = res.json().await.unwrap();
        if got["status"] == "completed" {
            assert_eq!(got["tasks_done"], got["tasks_total"], "{}", got["counts"]);
            return;
        }
        if start.elapsed() > limit {
            panic!(
                "unit {unit} is {} after {limit:?}; counts {}, incidents {}:\n{}",
                got["status"],
                got["counts"],
                got["incidents"],
                output()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The database as a killed process left it.
struct AtKill {
    completed: i64,
    /// The tasks claimed and not finished: (task, attempts so far).
    running: Vec<(String, i64)>,
}

async fn state_at_kill(backend: &Backend) -> AtKill {
    // A commit the process sent just before it died may still land (PostgreSQL
    // finishes a COMMIT it received); let it, then look.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = backend
        .counts(&format!(
            "SELECT {}, attempts FROM tasks WHERE status = 'running'",
            backend.task_ref("id")
        ))
        .await;
    let completed = backend.scalar(COMPLETED).await;
    assert_consistent(backend).await;
    AtKill { completed, running }
}

/// The queue's bookkeeping agrees with its tasks, as a crash may have left it:
/// each unit counts exactly its completed tasks, each waiting task counts its
/// unfinished dependencies, and no task went past waiting before all of its
/// dependencies completed.
async fn assert_consistent(backend: &Backend) {
    let miscounted = backend
        .counts(
            "SELECT u.name, u.tasks_done - (SELECT count(*) FROM tasks t \
             WHERE t.unit_id = u.id AND t.status = 'completed') FROM work_units u",
        )
        .await;
    assert!(
        miscounted.iter().all(|(_, off)| *off == 0),
        "units whose tasks_done is off by: {miscounted:?}"
    );
    let unfinished = "SELECT count(*) FROM task_deps d JOIN tasks a ON a.id = d.depends_on \
                      WHERE d.task_id = t.id AND a.status <> 'completed'";
    let wrong_pending = backend
        .scalar(&format!(
            "SELECT count(*) FROM tasks t WHERE t.status = 'pending' AND t.pending_deps <> ({unfinished})"
        ))
        .await;
    assert_eq!(
        wrong_pending, 0,
        "waiting tasks whose pending_deps is not their unfinished dependencies"
    );
    let early = backend
        .scalar(&format!(
            "SELECT count(*) FROM tasks t WHERE t.status <> 'pending' AND ({unfinished}) > 0"
        ))
        .await;
    assert_eq!(
        early, 0,
        "tasks ready, running or done while a dependency is not completed"
    );
}

/// Every one of `n` tasks (of `units` units) completed, with exactly one
/// completion event and one completion audit record each, and no incident; each
/// unit completed once.
pub(crate) async fn assert_each_task_completed_once(backend: &Backend, units: i64, n: i64) {
    assert_consistent(backend).await;
    let unit_events = backend
        .scalar("SELECT count(*) FROM events WHERE type = 'unit.completed'")
        .await;
    assert_eq!(unit_events, units, "unit.completed events");
    let unit_subjects = backend
        .scalar("SELECT count(DISTINCT subject) FROM events WHERE type = 'unit.completed'")
        .await;
    assert_eq!(unit_subjects, units, "units named by unit.completed events");
    let total = backend.scalar("SELECT count(*) FROM tasks").await;
    assert_eq!(total, n, "tasks in the database");
    let completed = backend.scalar(COMPLETED).await;
    assert_eq!(completed, n, "completed tasks");
    let incidents = backend.scalar("SELECT count(*) FROM incidents").await;
    assert_eq!(incidents, 0, "incidents opened");
    let task = backend.task_ref("t.id");
    for (what, table, column, kind) in [
        ("events", "events", "subject", "type = 'task.completed'"),
        (
            "audit records",
            "audit_log",
            "target",
            "action = 'task.complete'",
        ),
    ] {
        let rows = backend
            .scalar(&format!("SELECT count(*) FROM {table} WHERE {kind}"))
            .await;
        let distinct = backend
            .scalar(&format!(
                "SELECT count(DISTINCT {column}) FROM {table} WHERE {kind}"
            ))
            .await;
        let repeated = backend
            .counts(&format!(
                "SELECT {column}, count(*) FROM {table} WHERE {kind} \
                 GROUP BY {column} HAVING count(*) <> 1 ORDER BY {column} LIMIT 20"
            ))
            .await;
        assert!(
            repeated.is_empty(),
            "tasks with other than one completion in {what}: {repeated:?}"
        );
        assert_eq!(rows, n, "completion {what}");
        assert_eq!(distinct, n, "tasks named by completion {what}");
        let matched = backend
            .scalar(&format!(
                "SELECT count(*) FROM tasks t JOIN {table} x ON x.{column} = {task} AND x.{kind}"
            ))
            .await;
        assert_eq!(
            matched, n,
            "completion {what} naming a task of the database"
        );
    }
}

/// No task completed before one of its dependencies: by the completion times
/// on the task rows, and by the order of the completion events (numbered in
/// commit order). A task's `started_at` is not compared: a claim takes its
/// timestamp before its transaction, so it may read a few hundred microseconds
/// earlier than the completion of a dependency that committed just before it.
async fn assert_dependency_order(backend: &Backend, edges: i64) {
    let n = backend.scalar("SELECT count(*) FROM task_deps").await;
    assert_eq!(n, edges, "dependency edges");
    let by_time = backend
        .scalar(
            "SELECT count(*) FROM task_deps d JOIN tasks a ON a.id = d.depends_on \
             JOIN tasks b ON b.id = d.task_id \
             WHERE a.finished_at IS NULL OR b.finished_at IS NULL OR a.finished_at >= b.finished_at",
        )
        .await;
    assert_eq!(
        by_time, 0,
        "edges whose task finished no later than its dependency"
    );
    let joined = format!(
        "FROM task_deps d \
         JOIN events ea ON ea.type = 'task.completed' AND ea.subject = {} \
         JOIN events eb ON eb.type = 'task.completed' AND eb.subject = {}",
        backend.task_ref("d.depends_on"),
        backend.task_ref("d.task_id")
    );
    let matched = backend.scalar(&format!("SELECT count(*) {joined}")).await;
    assert_eq!(
        matched, edges,
        "edges whose both ends have a completion event"
    );
    let by_event = backend
        .scalar(&format!("SELECT count(*) {joined} WHERE ea.seq >= eb.seq"))
        .await;
    assert_eq!(
        by_event, 0,
        "edges whose task's completion event precedes its dependency's"
    );
}

/// The tasks a killed process held ran again after their leases expired: each
/// has an expired attempt saying so.
async fn assert_leases_expired(backend: &Backend, at_kill: &AtKill) {
    let expired: BTreeMap<String, i64> = backend
        .counts(&format!(
            "SELECT {}, count(*) FROM task_attempts a JOIN tasks t ON t.id = a.task_id \
             WHERE a.outcome = 'expired' AND a.error LIKE 'lease expired%' GROUP BY t.id",
            backend.task_ref("t.id")
        ))
        .await
        .into_iter()
        .collect();
    let attempts: BTreeMap<String, i64> = backend
        .counts(&format!(
            "SELECT {}, attempts FROM tasks",
            backend.task_ref("id")
        ))
        .await
        .into_iter()
        .collect();
    for (task, before) in &at_kill.running {
        assert!(
            expired.get(task).copied().unwrap_or(0) >= 1,
            "{task} was running when its worker died: an attempt ended by its lease"
        );
        assert!(
            attempts[task] > *before,
            "{task} was claimed again after its worker died ({} attempts)",
            attempts[task]
        );
    }
}

pub(crate) fn assert_audit_verifies(backend: &Backend) {
    let flags = backend.store_flags();
    let mut args = vec!["audit", "verify"];
    args.extend(flags.iter().map(String::as_str));
    let out = waymark(&args, &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "audit verify failed: {text}");
    assert!(text.contains("audit chain intact"), "{text}");
}

/// Completion audit records per actor (`worker:<host>:<pid>`).
async fn completions_by_actor(backend: &Backend) -> BTreeMap<String, i64> {
    backend
        .counts(
            "SELECT actor, count(*) FROM audit_log WHERE action = 'task.complete' GROUP BY actor",
        )
        .await
        .into_iter()
        .collect()
}

/// 16 writers create clients as fast as the server answers (on SQLite, many
/// commit together); the server is killed mid-way. Every client that was
/// answered 201 is there after the restart, with its event, and the audit
/// chain verifies.
async fn concurrent_answered_writes_survive_sigkill(backend: Backend) {
    let server = Server::start(&backend).await;
    let http = reqwest::Client::new();
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (http, url, token) = (http.clone(), server.url.clone(), server.token.clone());
            let answered = answered.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let res = http
                        .post(format!("{url}/api/v1/clients"))
                        .bearer_auth(&token)
                        .json(&json!({"name": format!("writer {w} client {i}")}))
                        .send()
                        .await;
                    // Once the server is gone, requests fail: stop.
                    let Ok(res) = res else { return };
                    if res.status() != 201 {
                        return;
                    }
                    let Ok(body) = res.json::<Value>().await else {
                        return;
                    };
                    let id = body["id"].as_str().unwrap().to_owned();
                    answered.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    let start = Instant::now();
    while answered.lock().unwrap().len() < 300 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the writers stalled:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let data = server.kill();
    for w in writers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    eprintln!("killed the server after {} answered writes", answered.len());

    let server = Server::restart(&backend, data).await;
    for id in &answered {
        let res = http
            .get(format!("{}/api/v1/clients/{id}", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "client {id} was answered 201, then lost");
    }
    let events = backend
        .scalar("SELECT count(*) FROM events WHERE type = 'client.created'")
        .await;
    let clients = backend.scalar("SELECT count(*) FROM clients").await;
    assert_eq!(events, clients, "one event per client");
    assert!(clients >= answered.len() as i64);
    server.stop_gracefully().await;
    assert_audit_verifies(&backend);
}

async fn w2_survives_sigkill_of_the_server(backend: Backend) {
    let started = Instant::now();
    // Two tasks at a time, so the run lasts (seconds) long enough to be
    // interrupted mid-way.
    let env = [SHORT_LEASE, ("WAYMARK_WORKER_CONCURRENCY", "2")];
    let server = Server::start_with(&backend, &env).await;
    let http = reqwest::Client::new();
    let client = new_client(&server, &http).await;
    let unit = submit(&server, &http, &client, "W2", w2_tasks()).await;
    wait_for_completed(&backend, 50, Duration::from_secs(60), || server.output()).await;
    let first = format!("worker:{}", default_host_pid(server.pid()));
    let data = server.kill();
    let at_kill = state_at_kill(&backend).await;
    eprintln!(
        "killed the server with {} tasks completed and {} running",
        at_kill.completed,
        at_kill.running.len()
    );
    assert!(
        at_kill.completed < W2_TASKS,
        "the run finished before the kill; nothing was interrupted"
    );

    let server = Server::restart_with(&backend, data, &[SHORT_LEASE]).await;
    wait_for_unit(&server, &http, &unit, Duration::from_secs(120), || {
        server.output()
    })
    .await;
    assert_each_task_completed_once(&backend, 1, W2_TASKS).await;
    assert_dependency_order(&backend, W2_EDGES).await;
    assert_leases_expired(&backend, &at_kill).await;
    let by_actor = completions_by_actor(&backend).await;
    eprintln!("completions by worker: {by_actor:?}");
    assert_eq!(
        by_actor.get(&first),
        Some(&at_kill.completed),
        "the killed server's completions are the ones recorded before the kill: {by_actor:?}"
    );
    assert_eq!(by_actor.len(), 2, "{by_actor:?}");
    assert_audit_verifies(&backend);
    let status = server.stop_gracefully().await;
    assert!(status.success(), "exit status {status:?}");
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

/// The name a worker in process `pid` gives itself (`<host>:<pid>`).
fn default_host_pid(pid: u32) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}:{pid}")
}

async fn w2_survives_sigkill_of_a_worker(backend: Backend) {
    let started = Instant::now();
    let server = Server::start_with(&backend, &[("WAYMARK_WORKER_CONCURRENCY", "0")]).await;
    let env = [SHORT_LEASE, ("WAYMARK_WORKER_CONCURRENCY", "2")];
    let worker = Worker::start(&backend, &env).await;
    let http = reqwest::Client::new();
    let client = new_client(&server, &http).await;
    let unit = submit(&server, &http, &client, "W2", w2_tasks()).await;
    wait_for_completed(&backend, 50, Duration::from_secs(60), || {
        format!("{}\n--- worker ---\n{}", server.output(), worker.output())
    })
    .await;
    let first = format!("worker:{}", worker.name);
    worker.kill();
    let at_kill = state_at_kill(&backend).await;
    eprintln!(
        "killed the worker with {} tasks completed and {} running",
        at_kill.completed,
        at_kill.running.len()
    );
    assert!(
        at_kill.completed < W2_TASKS,
        "the run finished before the kill; nothing was interrupted"
    );

    let worker = Worker::start(&backend, &[SHORT_LEASE]).await;
    wait_for_unit(&server, &http, &unit, Duration::from_secs(120), || {
        format!("{}\n--- worker ---\n{}", server.output(), worker.output())
    })
    .await;
    assert_each_task_completed_once(&backend, 1, W2_TASKS).await;
    assert_dependency_order(&backend, W2_EDGES).await;
    assert_leases_expired(&backend, &at_kill).await;
    let by_actor = completions_by_actor(&backend).await;
    eprintln!("completions by worker: {by_actor:?}");
    let second = format!("worker:{}", worker.name);
    assert_eq!(
        by_actor.get(&first),
        Some(&at_kill.completed),
        "{by_actor:?}"
    );
    assert_eq!(
        by_actor.get(&second),
        Some(&(W2_TASKS - at_kill.completed)),
        "{by_actor:?}"
    );
    assert_audit_verifies(&backend);
    let status = worker.stop_gracefully().await;
    assert!(status.success(), "worker exit status {status:?}");
    server.stop_gracefully().await;
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

async fn two_workers_share_10000_tasks(backend: Backend) {
    const UNITS: usize = 10;
    const PER_UNIT: usize = 1000;
    const TOTAL: i64 = (UNITS * PER_UNIT) as i64;
    let started = Instant::now();
    let server = Server::start_with(&backend, &[("WAYMARK_WORKER_CONCURRENCY", "0")]).await;
    let a = Worker::start(&backend, &[]).await;
    let b = Worker::start(&backend, &[]).await;
    assert_ne!(a.name, b.name);
    let output = || {
        format!(
            "{}\n--- worker {} ---\n{}\n--- worker {} ---\n{}",
            server.output(),
            a.name,
            a.output(),
            b.name,
            b.output()
        )
    };
    let http = reqwest::Client::new();
    let client = new_client(&server, &http).await;
    let mut units = Vec::with_capacity(UNITS);
    for u in 0..UNITS {
        let tasks = (0..PER_UNIT)
            .map(
                |i| json!({"key": format!("t_{i}"), "executor": "noop", "input": u * PER_UNIT + i}),
            )
            .collect();
        units.push(submit(&server, &http, &client, &format!("W1 part {u}"), tasks).await);
    }
    wait_for_completed(&backend, TOTAL, Duration::from_secs(120), output).await;
    for unit in &units {
        wait_for_unit(&server, &http, unit, Duration::from_secs(30), output).await;
    }

    assert_each_task_completed_once(&backend, UNITS as i64, TOTAL).await;
    // Nothing ran twice: one claim per task, no failed attempt.
    let reclaimed = backend
        .scalar("SELECT count(*) FROM tasks WHERE attempts <> 1")
        .await;
    assert_eq!(reclaimed, 0, "tasks claimed other than once");
    let failed = backend
        .scalar("SELECT count(*) FROM task_attempts WHERE outcome <> 'completed'")
        .await;
    assert_eq!(failed, 0, "failed attempts");
    let attempts = backend.scalar("SELECT count(*) FROM task_attempts").await;
    assert_eq!(attempts, TOTAL, "one attempt per task");
    let by_claim: BTreeMap<String, i64> = backend
        .counts("SELECT claimed_by, count(*) FROM tasks GROUP BY claimed_by")
        .await
        .into_iter()
        .collect();
    eprintln!("tasks per worker: {by_claim:?}");
    assert_eq!(by_claim.len(), 2, "{by_claim:?}");
    for w in [&a.name, &b.name] {
        let n = by_claim.get(w).copied().unwrap_or(0);
        assert!(n > 0, "worker {w} ran no task: {by_claim:?}");
    }
    // The worker that claimed a task is the one that recorded its completion.
    let by_actor = completions_by_actor(&backend).await;
    let expected: BTreeMap<String, i64> = by_claim
        .iter()
        .map(|(w, n)| (format!("worker:{w}"), *n))
        .collect();
    assert_eq!(by_actor, expected);
    assert_audit_verifies(&backend);
    for w in [a, b] {
        let status = w.stop_gracefully().await;
        assert!(status.success(), "worker exit status {status:?}");
    }
    server.stop_gracefully().await;
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}
