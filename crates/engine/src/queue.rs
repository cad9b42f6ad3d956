//! The customer-success queue at work: a rules run over the clients
//! ([`refresh`]) and the schedule that repeats it ([`run_schedule`]).
//!
//! A run reads the clients in pages with their latest signals and stored
//! items, asks `waymark_domain::queue` which playbooks each pack's rules make
//! due and how that changes what is stored, and records every change in one
//! transaction (with an audit record and an event per changed item and one
//! for the run). Every pack's queue rules apply to every client. A run over
//! one client follows a change of its signals.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use waymark_domain::ClientId;
use waymark_domain::queue::{self, Signals, StoredItem};
use waymark_store::{
    QueueClient, QueueItem, QueueRun, QueueRunSummary, QueueWrite, Store, WriteContext,
};

use crate::EngineError;
use crate::catalog::PackCatalog;

/// The trigger of a run after a client's signals changed.
pub const SIGNALS: &str = "signals";

/// Clients read per page.
const PAGE: usize = 1_000;
/// Clients whose rules run in one go on a CEL thread.
const BATCH: usize = 100;

fn run_failed(why: String) -> EngineError {
    EngineError::Refused {
        code: "queue_run_failed",
        detail: format!("the queue rules run stopped: {why}; it runs again on schedule"),
        extra: Default::default(),
    }
}

/// What a stored item looks like to the rules.
fn stored(item: &QueueItem) -> StoredItem {
    StoredItem {
        rule: item.rule.clone(),
        template: item.template.clone(),
        status: item.status,
        snoozed_until: item.snoozed_until,
        has_journey: item.journey_id.is_some(),
        reason: item.reason.clone(),
        // What the rule gave: a person's date is not the rule's answer.
        due: item.rule_due,
        scheduled: item.scheduled,
        score: item.score,
        factors: item.factors.clone(),
        superseded_by: item.superseded_by.clone(),
    }
}

/// The changes the rules of every pack make for one client.
fn client_changes(
    packs: &[(String, Vec<queue::QueueRule>)],
    c: &QueueClient,
    now: OffsetDateTime,
    changes: &mut Vec<QueueWrite>,
    errors: &mut Vec<String>,
) {
    let client = &c.client;
    let signals = Signals {
        arr: client.arr,
        renewal_date: client.renewal_date,
        health_score: client.health_score,
        risk_score: client.risk_score,
        opportunity_score: client.opportunity_score,
        attributes: &client.attributes,
        latest: &c.latest,
    };
    for (pack, rules) in packs {
        let evaluation = queue::evaluate(rules, &signals, now.date());
        for e in &evaluation.errors {
            errors.push(format!(
                "client {} rule {}: {}",
                client.id, e.rule, e.message
            ));
        }
        let items: Vec<StoredItem> = c
            .items
            .iter()
            .filter(|i| &i.pack == pack)
            .map(stored)
            .collect();
        for change in queue::reconcile(rules, &items, &evaluation, now) {
            changes.push(QueueWrite {
                client_id: client.id,
                pack: pack.clone(),
                owner: client.owner.clone(),
                change,
            });
        }
    }
}

/// Runs the queue rules over every client (or `only` one) at `now` and
/// records what changed. `trigger` says why: `signals`, `schedule`,
/// `request`.
pub async fn refresh(
    store: &dyn Store,
    catalog: &PackCatalog,
    trigger: &str,
    only: Option<ClientId>,
    now: OffsetDateTime,
    ctx: &WriteContext,
) -> Result<QueueRunSummary, EngineError> {
    let packs: Arc<Vec<(String, Vec<queue::QueueRule>)>> = Arc::new(
        catalog
            .list()
            .await?
            .into_iter()
            .filter(|(p, _)| !p.queue.is_empty())
            .map(|(p, _)| (p.name.clone(), p.queue.clone()))
            .collect(),
    );
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    let mut clients = 0;
    let mut after = None;
    loop {
        let page = store.queue_inputs(only, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.client.id);
        clients += page.len();
        let full = page.len() == PAGE;
        // The rules run in batches on a CEL thread (each evaluation there at
        // once, not a thread hop apiece), waited for off the async workers;
        // batches of BATCH clients leave the CEL threads free for the rules
        // of requests in between.
        let packs = Arc::clone(&packs);
        let page = Arc::new(page);
        let computed = tokio::task::spawn_blocking(move || {
            let (mut changes, mut errors) = (Vec::new(), Vec::new());
            for start in (0..page.len()).step_by(BATCH) {
                let (packs, page) = (Arc::clone(&packs), Arc::clone(&page));
                let (c, e) = waymark_domain::cel_guard::batch(move || {
                    let (mut changes, mut errors) = (Vec::new(), Vec::new());
                    for c in page.iter().skip(start).take(BATCH) {
                        client_changes(&packs, c, now, &mut changes, &mut errors);
                    }
                    (changes, errors)
                })?;
                changes.extend(c);
                errors.extend(e);
            }
            Ok::<_, waymark_domain::cel_guard::ExprError>((changes, errors))
        })
        .await;
        let (page_changes, page_errors) = match computed {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(run_failed(e.to_string())),
            Err(e) => return Err(run_failed(e.to_string())),
        };
        changes.extend(page_changes);
        errors.extend(page_errors);
        if !full || only.is_some() {
            break;
        }
    }
    let run = QueueRun {
        trigger: trigger.to_owned(),
        clients,
        changes,
        errors,
    };
    // A change of one client's signals that changes nothing in the queue
    // is not worth a record (scheduled and requested runs always are).
    if trigger == SIGNALS && run.changes.is_empty() && run.errors.is_empty() {
        return Ok(QueueRunSummary {
            trigger: run.trigger,
            clients: run.clients,
            ..Default::default()
        });
    }
    let summary = store.apply_queue_run(run, ctx).await?;
    tracing::info!(
        trigger,
        clients = summary.clients,
        opened = summary.opened,
        updated = summary.updated,
        reopened = summary.reopened,
        closed = summary.closed,
        superseded = summary.superseded,
        errors = summary.errors.len(),
        "queue: rules run"
    );
    Ok(summary)
}

/// Runs the rules every `every` until `shutdown` resolves (the first run
/// after one interval). A failed run is logged and tried again at the next.
pub async fn run_schedule(
    store: Arc<dyn Store>,
    catalog: Arc<PackCatalog>,
    every: Duration,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let ctx = WriteContext::new("system:queue");
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        match refresh(
            &*store,
            &catalog,
            "schedule",
            None,
            OffsetDateTime::now_utc(),
            &ctx,
        )
        .await
        {
            Ok(_) => {
                changed.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue: the scheduled rules run failed; trying again at the next")
            }
        }
    }
}
