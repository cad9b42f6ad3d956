//! Many replicas on one PostgreSQL database: two `waymark serve` and two
//! `waymark worker` processes under a mixed load (artifact writes and
//! approvals for several clients through both servers, a queue of 1,000
//! independent tasks, journeys with metrics), an event stream on one server
//! receiving within a second what is written through the other (wake-ups by
//! `LISTEN`/`NOTIFY`; its backstop poll is 30 s), and one server killed with
//! SIGKILL midway. Nothing answered is lost, no task completes twice, the
//! audit chain verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::crash::{assert_audit_verifies, new_client, submit};
use crate::process::{Backend, Server, Worker};

/// One event as the stream delivered it, and when.
struct Received {
    event_type: String,
    subject: String,
    at: Instant,
}

/// Follows `GET /api/v1/events` on `server`, sending each event on.
fn follow(server: &Server, tx: mpsc::UnboundedSender<Received>) -> tokio::task::JoinHandle<()> {
    let (url, token) = (server.url.clone(), server.token.clone());
    tokio::spawn(async move {
        let res = reqwest::Client::new()
            .get(format!("{url}/api/v1/events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut res = res;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let message: String = buf.drain(..end + 2).collect();
                let data = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect::<String>();
                let Ok(event) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                let _ = tx.send(Received {
                    event_type: event["type"].as_str().unwrap_or_default().to_owned(),
                    subject: event["subject"].as_str().unwrap_or_default().to_owned(),
                    at: Instant::now(),
                });
            }
        }
    })
}

/// Writes answered by the servers: artifact id → the status it was last
/// answered with.
type Answered = Arc<Mutex<BTreeMap<String, String>>>;

async fn call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Option<Value> {
    let res = http
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    let ok = res.status().is_success();
    let body: Value = res.json().await.ok()?;
    ok.then_some(body)
}

/// Creates artifacts and approves them (an admin's override), through the
/// servers in turn, until `stop`; a server that no longer answers is passed
/// over.
fn writer(
    servers: Vec<(String, String)>,
    clients: Vec<String>,
    stop: Arc<AtomicBool>,
    answered: Answered,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let (url, token) = &servers[n % servers.len()];
            let client = &clients[n % clients.len()];
            n += 1;
            let body = json!({"client_id": client, "type": "note",
                              "title": format!("Note {n}"), "content": {"n": n}});
            let Some(created) = call(&http, url, token, "/api/v1/artifacts", body).await else {
                continue;
            };
            let id = created["id"].as_str().unwrap().to_owned();
            answered.lock().unwrap().insert(id.clone(), "draft".into());
            if n.is_multiple_of(2) {
                continue;
            }
            let path = format!("/api/v1/artifacts/{id}/transitions");
            if call(&http, url, token, &path, json!({"to": "in_review"}))
                .await
                .is_none()
            {
                continue;
            }
            answered
                .lock()
                .unwrap()
                .insert(id.clone(), "in_review".into());
            let approve =
                json!({"to": "approved", "override": true, "reason": "approved on a call"});
            if call(&http, url, token, &path, approve).await.is_some() {
                answered.lock().unwrap().insert(id, "approved".into());
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_share_one_database() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let lease = [("WAYMARK_WORKER_LEASE_S", "2")];
    let a = Server::start_with(&backend, &lease).await;
    let b = Server::start_with(&backend, &lease).await;
    let w1 = Worker::start(&backend, &lease).await;
    let w2 = Worker::start(&backend, &lease).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(new_client(&a, &http).await);
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = follow(&a, tx);
    // The stream is open once it delivers what is written after it: a probe
    // every half second until one arrives.
    let mut seen: Vec<Received> = Vec::new();
    let start = Instant::now();
    'open: loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stream never opened"
        );
        let probe = b
            .post(
                &http,
                "/api/v1/artifacts",
                json!({"client_id": clients[0], "type": "note", "title": "Probe", "content": {}}),
            )
            .await;
        let probe = probe["id"].as_str().unwrap().to_owned();
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(e)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
            let hit = e.subject == probe;
            seen.push(e);
            if hit {
                break 'open;
            }
        }
    }

    // Events written through B reach A's stream within a second.
    let mut latencies = Vec::new();
    for i in 0..10 {
        let sent = Instant::now();
        let created = b
            .post(
                &http,
                "/api/v1/artifacts",
                json!({"client_id": clients[i % 3], "type": "note",
                       "title": format!("Through B {i}"), "content": {"i": i}}),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let got = loop {
            let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an event written through B reaches A's stream")
                .unwrap();
            let hit = e.subject == id && e.event_type == "artifact.created";
            let at = e.at;
            seen.push(e);
            if hit {
                break at;
            }
        };
        latencies.push(got.duration_since(sent));
    }
    latencies.sort();
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(1),
        "events through B reached A's stream in {latencies:?}: not within a second"
    );
    eprintln!("stream latency across servers: {latencies:?}");

    // The load: a queue of 1,000 tasks, journeys with metrics, writes and
    // approvals through both servers.
    let tasks: Vec<Value> = (0..1000)
        .map(|i| json!({"key": format!("t{i}"), "executor": "noop", "input": i}))
        .collect();
    submit(&a, &http, &clients[0], "queue", tasks).await;
    let mut journeys = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let server = if i % 2 == 0 { &a } else { &b };
        let j = server
            .post(
                &http,
                "/api/v1/journeys",
                json!({"client_id": c, "template": "client-onboarding"}),
            )
            .await;
        let id = j["id"].as_str().unwrap().to_owned();
        let res = http
            .post(format!("{}/api/v1/journeys/{id}/events", server.url))
            .bearer_auth(&server.token)
            .json(&json!({"event": "start"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        journeys.push(id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Answered = Arc::default();
    let servers = vec![
        (a.url.clone(), a.token.clone()),
        (b.url.clone(), b.token.clone()),
    ];
    let writers: Vec<_> = (0..4)
        .map(|_| {
            writer(
                servers.clone(),
                clients.clone(),
                stop.clone(),
                answered.clone(),
            )
        })
        .collect();
    let metrics = {
        let (servers, journeys, stop) = (servers.clone(), journeys.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut n = 0usize;
            let mut recorded = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (url, token) = &servers[n % 2];
                let path = format!("/api/v1/journeys/{}/metrics", journeys[n % journeys.len()]);
                let body = json!({"observations": [{"name": "search_precision", "value": 0.9}]});
                if call(&http, url, token, &path, body).await.is_some() {
                    recorded += 1;
                }
                n += 1;
            }
            recorded
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = b.kill();
    drop(dir);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let recorded = metrics.await.unwrap();
    assert!(recorded > 0, "metrics were recorded");

    // Every task of the queue completes, once, whichever process ran it.
    let start = Instant::now();
    loop {
        let done = backend
            .scalar("SELECT count(*) FROM tasks WHERE executor = 'noop' AND status = 'completed'")
            .await;
        if done == 1000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{done} of 1000 tasks completed:\n{}\n--- worker 1 ---\n{}",
            a.output(),
            w1.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let twice = backend
        .scalar(
            "SELECT count(*) FROM (SELECT subject FROM events WHERE type = 'task.completed' \
             GROUP BY subject HAVING count(*) > 1) AS t",
        )
        .await;
    assert_eq!(twice, 0, "tasks completed more than once");
    let by_actor = backend
        .counts(
            "SELECT actor, count(*) FROM audit_log WHERE action = 'task.complete' GROUP BY actor",
        )
        .await;
    assert!(
        by_actor.len() >= 2,
        "the processes shared the queue: {by_actor:?}"
    );

    // Every answered write is there, at least as far as it was answered.
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    assert!(answered.len() > 20, "{} writes answered", answered.len());
    let order = |s: &str| {
        ["draft", "in_review", "approved"]
            .iter()
            .position(|x| *x == s)
    };
    for (id, status) in &answered {
        let res = http
            .get(format!("{}/api/v1/artifacts/{id}", a.url))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{id} was answered and must be kept");
        let now: Value = res.json().await.unwrap();
        assert!(
            order(now["status"].as_str().unwrap()) >= order(status),
            "{id} was answered {status}, reads {}",
            now["status"]
        );
    }

    // A's stream delivered every artifact created, in order, once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    let created: Vec<&str> = seen
        .iter()
        .filter(|e| e.event_type == "artifact.created")
        .map(|e| e.subject.as_str())
        .collect();
    let unique: BTreeSet<&str> = created.iter().copied().collect();
    assert_eq!(unique.len(), created.len(), "an event was delivered twice");
    for id in answered.keys() {
        assert!(unique.contains(id.as_str()), "the stream missed {id}");
    }
    stream.abort();

    w1.stop_gracefully().await;
    w2.stop_gracefully().await;
    a.stop_gracefully().await;
    assert_audit_verifies(&backend);
}
