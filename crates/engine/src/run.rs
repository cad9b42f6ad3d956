//! The embedded workers: they claim tasks of the `engine` lane, run their
//! executors, and record the results.
//!
//! One dispatcher claims as many tasks as there are free slots (`concurrency`)
//! in one transaction; each task runs in its own tokio task, with its timeout
//! and, when it runs long, heartbeats that extend its lease; a committer records
//! finished attempts in batches (whatever finished while the previous batch was
//! committing goes in the next transaction; when the lane has nothing more
//! ready and the tasks in flight run short, it waits for them a moment first,
//! see [`linger`]). While tasks run short (see [`ahead`]), the dispatcher also
//! claims ahead of its free slots into a local queue, so that one claim and
//! one commit serve many tasks and a slot that frees up starts its next task
//! at once, even while a claim is on its way. The dispatcher sleeps until the
//! store signals new ready tasks (on PostgreSQL through `LISTEN`, from any
//! process), a retry comes due, or a slot frees up: no busy polling. A sweeper
//! turns expired leases into failed attempts.
//!
//! `waymark serve` runs one engine beside the HTTP server; `waymark worker` runs
//! one alone. On PostgreSQL any number of them share the queue.
//!
//! [`Engine::run_once`] is one step of the same work, whole: expire leases,
//! claim what is ready, run it, record it. Tests drive the engine with it (and
//! [`Engine::run_until_idle`]) instead of sleeping until a status changes.
//!
//! Each attempt runs in a `task` span whose OpenTelemetry parent is in the trace
//! stored on the task (the request that created its unit), see
//! [`crate::trace::set_remote_parent`].

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::Instrument;
use waymark_domain::work::{ENGINE_LANE, Executor};
use waymark_store::{Claim, Finish, Leased, Outcome, Store, StoreError, Task, WriteContext};

use crate::blobs::Blobs;
use crate::catalog::PackCatalog;
use waymark_llm::Llm;

/// How the embedded workers run.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a claim's lease lasts before a heartbeat must extend it.
    pub lease: Duration,
    /// The worker's name, recorded on the tasks it claims.
    pub name: String,
    /// How often expired leases are looked for.
    pub sweep_every: Duration,
    /// The longest sleep without a wake-up (a safety net, not the mechanism).
    pub idle_check: Duration,
    /// The LLM provider `llm.generate` asks (none: the template provider).
    pub llm: Llm,
    /// The server's public URL, for the callback links of `http.webhook` POSTs.
    pub public_url: Option<String>,
    /// Where uploaded files are, for `file.extract` (none: those tasks wait
    /// for a worker that has it).
    pub blobs: Option<Blobs>,
}

/// Tasks run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            lease: Duration::from_secs(30),
            name: default_name(),
            sweep_every: Duration::from_secs(5),
            idle_check: Duration::from_secs(30),
            llm: Llm::new(None),
            public_url: None,
            blobs: None,
        }
    }
}

/// `<host>:<pid>`, so a task's `claimed_by` names the process.
pub fn default_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}:{}", std::process::id())
}

/// The executors this engine runs; others (`human`, agents) finish through the API.
pub fn runs(executor: &Executor) -> bool {
    matches!(
        executor,
        Executor::Noop
            | Executor::LlmGenerate
            | Executor::HttpWebhook
            | Executor::FileExtract
            | Executor::FileInspect
            | Executor::FileParse
            | Executor::FileSemantic
            | Executor::FileInsights
    )
}

/// What the executors need: the store, the packs and the LLM provider.
pub(crate) struct Runtime {
    pub store: Arc<dyn Store>,
    pub packs: PackCatalog,
    pub llm: Llm,
    /// Who the engine's writes are recorded as.
    pub ctx: WriteContext,
    /// The client `http.webhook` POSTs with.
    pub http: reqwest::Client,
    pub public_url: Option<String>,
    pub blobs: Option<Blobs>,
}

/// How an executor ended an attempt.
pub(crate) enum Step {
    /// Record this outcome (in the committer's next batch).
    Finish(Outcome),
    /// The executor recorded the attempt's end itself (or lost the lease, and
    /// there is nothing to record).
    Recorded,
}

/// The embedded workers of one process. See the module docs.
pub struct Engine {
    runtime: Arc<Runtime>,
    settings: EngineSettings,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, settings: EngineSettings) -> Self {
        let ctx = WriteContext::new(format!("worker:{}", settings.name));
        let runtime = Arc::new(Runtime {
            store: store.clone(),
            packs: PackCatalog::new(store),
            llm: settings.llm.clone(),
            ctx,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("waymark/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            public_url: settings.public_url.clone(),
            blobs: settings.blobs.clone(),
        });
        Self { runtime, settings }
    }

    /// One step of the engine, whole: expired leases become failed attempts,
    /// then the ready tasks of the `engine` lane (up to `concurrency`) are
    /// claimed, run concurrently to their ends, and recorded in one
    /// transaction, with the rollback triggers of the metrics they reported.
    /// Answers how many tasks ran (0: nothing was ready).
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let store = &self.runtime.store;
        loop {
            let n = store.expire_leases(500).await?;
            crate::metrics::expired(n);
            if n < 500 {
                break;
            }
        }
        let claimed = store
            .claim(Claim {
                lane: ENGINE_LANE.into(),
                max: self.settings.concurrency.max(1),
                lease: self.settings.lease,
                worker: self.settings.name.clone(),
            })
            .await?;
        let ran = claimed.len();
        crate::metrics::claimed(ENGINE_LANE, ran);
        let claimed_at = Instant::now();
        let runs = claimed.into_iter().map(|leased| {
            let span = task_span(&leased.task);
            execute(&self.runtime, leased, self.settings.lease, claimed_at).instrument(span)
        });
        let finished: Vec<Finish> = futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !finished.is_empty() {
            record(store, &finished, &self.runtime.ctx).await?;
        }
        Ok(ran)
    }

    /// Steps until a step finds nothing ready; answers how many tasks ran. A
    /// task waiting for its retry time is not ready.
    pub async fn run_until_idle(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            match self.run_once().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Runs until `shutdown` resolves; then stops claiming, lets running tasks
    /// finish (at most until their timeouts) and records them.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let Engine { runtime, settings } = self;
        let store = runtime.store.clone();
        let concurrency = settings.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let (done_tx, done_rx) = mpsc::channel::<Finish>(concurrency * 4 + 64);
        let pace = Arc::new(Pace::default());
        let committer = tokio::spawn(commit_loop(
            store.clone(),
            done_rx,
            runtime.ctx.clone(),
            pace.clone(),
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let sweeper = tokio::spawn(sweep_loop(
            store.clone(),
            settings.sweep_every,
            stop_rx.clone(),
        ));
        dispatch_loop(
            runtime,
            &settings,
            slots.clone(),
            done_tx.clone(),
            pace,
            stop_rx,
        )
        .await;
        // Wait for the tasks in flight, then for their results to be recorded.
        let _ = slots.acquire_many(concurrency as u32).await;
        drop(done_tx);
        let _ = committer.await;
        sweeper.abort();
    }
}

/// Runs an engine until `shutdown` resolves (see [`Engine::run`]).
pub async fn run(
    store: Arc<dyn Store>,
    settings: EngineSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    Engine::new(store, settings).run(shutdown).await
}

/// How long a task claimed ahead of the free slots is expected to wait in the
/// local queue at most: its lease and its deadline run meanwhile, so only
/// tasks that end within moments are claimed ahead, and only so many.
pub const AHEAD_WAIT: Duration = Duration::from_millis(100);

/// How many tasks the local queue holds at most, in free slots' worth
/// (`concurrency` each).
pub const AHEAD_SLOTS: usize = 16;

/// How many tasks the dispatcher keeps claimed ahead of its free slots, with
/// the recent tasks running `mean_run` on average: as many slots' worth as
/// wait [`AHEAD_WAIT`] in all (each slots' worth waits one run more than the
/// one before it), at most [`AHEAD_SLOTS`]; none before any task has run, nor
/// when tasks run longer than [`AHEAD_WAIT`] (each then waits for a free slot
/// before it is claimed).
pub fn ahead(concurrency: usize, mean_run: Option<Duration>) -> usize {
    let Some(run) = mean_run else {
        return 0;
    };
    let slots = AHEAD_WAIT.as_micros() / run.as_micros().max(1);
    concurrency.saturating_mul(slots.min(AHEAD_SLOTS as u128) as usize)
}

/// How many tasks to claim, with `free` slots not served yet and `queued`
/// tasks claimed ahead, to keep `ahead` of them: the slots the queue cannot
/// serve and the queue refilled to `ahead`, or nothing while the queue still
/// holds at least half of `ahead` beyond the free slots (so that the queue
/// is refilled by many at a time, not one task per slot that frees up).
pub fn claim_size(free: usize, queued: usize, ahead: usize) -> usize {
    let short = free.saturating_sub(queued);
    let left = queued.saturating_sub(free);
    if short == 0 && left * 2 >= ahead {
        return 0;
    }
    short + ahead.saturating_sub(left)
}

/// The longest the committer waits for the tasks in flight before it
/// commits what finished (see [`linger`]).
pub const LINGER: Duration = Duration::from_millis(2);

/// How long the committer waits for more results before it commits the ones
/// it holds, with `in_flight` tasks claimed and not finished, the recent
/// tasks running `mean_run` on average, and the last claim having found the
/// lane `drained` (fewer ready tasks than it asked for): [`LINGER`] when the
/// lane is drained and the tasks in flight end within moments. They are then
/// all there is until this commit readies more (the next layer of a graph),
/// so they are recorded together: one commit instead of a small one and then
/// the rest, each readying part of what follows. Not at all otherwise: while
/// the lane holds more, commits follow each other anyway; nothing in flight,
/// nothing ran yet, or tasks that run long: their results go at once.
pub fn linger(in_flight: usize, mean_run: Option<Duration>, drained: bool) -> Duration {
    match mean_run {
        Some(run) if drained && in_flight > 0 && run <= LINGER => LINGER,
        _ => Duration::ZERO,
    }
}

/// What the dispatcher and the committer share: how long tasks run, how
/// many are claimed and not finished, and whether the last claim drained
/// the lane.
#[derive(Default)]
struct Pace {
    runs: RunTimes,
    /// Tasks claimed (in the local queue or running) whose results have not
    /// been handed to the committer.
    in_flight: AtomicUsize,
    /// The last claim found fewer ready tasks than it asked for.
    drained: AtomicBool,
}

/// The mean time the recent tasks ran (a moving average), for [`ahead`].
#[derive(Default)]
struct RunTimes {
    /// Microseconds, plus one (0: nothing ran yet).
    mean_us: AtomicU64,
}

impl RunTimes {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX / 2);
        let _ = self
            .mean_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                Some(match m {
                    0 => us + 1,
                    m => (m - 1) - (m - 1) / 8 + us / 8 + 1,
                })
            });
    }

    fn mean(&self) -> Option<Duration> {
        match self.mean_us.load(Ordering::Relaxed) {
            0 => None,
            m => Some(Duration::from_micros(m - 1)),
        }
    }
}

/// A task claimed, waiting in the dispatcher's local queue for a slot.
struct Queued {
    leased: Leased,
    claimed_at: Instant,
}

async fn dispatch_loop(
    runtime: Arc<Runtime>,
    settings: &EngineSettings,
    slots: Arc<Semaphore>,
    done: mpsc::Sender<Finish>,
    pace: Arc<Pace>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let store = runtime.store.clone();
    let mut signal = store.work_signal();
    let concurrency = settings.concurrency.max(1);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    // The last claim found fewer ready tasks than it asked for: while the
    // queue still holds some, claim again only once new work is signalled.
    let mut drained = false;
    loop {
        // Once stopping, the tasks already claimed still run; nothing new is.
        let stopping = *stop.borrow();
        if stopping && queue.is_empty() {
            return;
        }
        // Hold one slot, then every other free one.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed(), if !stopping => continue,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let launch = |permits: &mut Vec<OwnedSemaphorePermit>, queue: &mut VecDeque<Queued>| {
            let n = permits.len().min(queue.len());
            for (permit, next) in permits.drain(..n).zip(queue.drain(..n)) {
                spawn_task(&runtime, settings.lease, &done, &pace, next, permit);
            }
        };
        // The local queue serves the free slots first.
        launch(&mut permits, &mut queue);
        if stopping {
            continue;
        }
        if signal.has_changed().unwrap_or(false) || queue.is_empty() {
            drained = false;
        }
        let want = if drained {
            0
        } else {
            claim_size(
                permits.len(),
                queue.len(),
                ahead(concurrency, pace.runs.mean()),
            )
        };
        if want == 0 {
            continue;
        }
        signal.borrow_and_update();
        let claiming = store.claim(Claim {
            lane: ENGINE_LANE.into(),
            max: want,
            lease: settings.lease,
            worker: settings.name.clone(),
        });
        tokio::pin!(claiming);
        // While the claim is on its way, the slots that free up keep taking
        // their next task from the local queue.
        let claimed = loop {
            tokio::select! {
                c = &mut claiming => break c,
                p = slots.clone().acquire_owned(), if !queue.is_empty() => match p {
                    Ok(p) => launch(&mut vec![p], &mut queue),
                    Err(_) => return,
                },
            }
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming failed; retrying in 1 s");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        crate::metrics::claimed(ENGINE_LANE, claimed.len());
        drained = claimed.len() < want;
        pace.drained.store(drained, Ordering::SeqCst);
        if claimed.is_empty() && queue.is_empty() {
            drop(permits);
            let wait = match store.next_run_in(ENGINE_LANE).await {
                Ok(Some(wait)) => wait.min(settings.idle_check),
                _ => settings.idle_check,
            };
            tokio::select! {
                _ = signal.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let claimed_at = Instant::now();
        pace.in_flight.fetch_add(claimed.len(), Ordering::SeqCst);
        queue.extend(
            claimed
                .into_iter()
                .map(|leased| Queued { leased, claimed_at }),
        );
        launch(&mut permits, &mut queue);
    }
}

/// Runs a task of the local queue on its slot, in a tokio task of its own,
/// and hands what is left to record to the committer.
fn spawn_task(
    runtime: &Arc<Runtime>,
    lease: Duration,
    done: &mpsc::Sender<Finish>,
    pace: &Arc<Pace>,
    next: Queued,
    permit: OwnedSemaphorePermit,
) {
    let (runtime, done, pace) = (runtime.clone(), done.clone(), pace.clone());
    let span = task_span(&next.leased.task);
    tokio::spawn(async move {
        let started = Instant::now();
        let finish = execute(&runtime, next.leased, lease, next.claimed_at)
            .instrument(span)
            .await;
        pace.runs.record(started.elapsed());
        drop(permit);
        if let Some(finish) = finish {
            let _ = done.send(finish).await;
        }
        // Handed over (or recorded by the executor): no longer in flight.
        pace.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}

/// The span one attempt at a task runs in. With an OpenTelemetry layer it is
/// exported in the trace of the request that created the task's unit (its
/// stored trace id), so a journey's tasks show up under that request.
fn task_span(task: &Task) -> tracing::Span {
    let span = tracing::info_span!(
        "task",
        task_id = %task.id,
        key = %task.key,
        executor = %task.executor,
        unit_id = %task.unit_id,
    );
    if let Some(trace_id) = &task.trace_id {
        crate::trace::set_remote_parent(&span, trace_id, None);
    }
    span
}

/// Runs one claimed task: its executor under its timeout, heartbeating while
/// it runs longer than a third of the lease. Both count from the claim
/// (`claimed_at`), as the store's lease and deadline do: a task that waited
/// in the local queue has that much less time. Answers what is left to record.
async fn execute(
    runtime: &Runtime,
    leased: Leased,
    lease: Duration,
    claimed_at: Instant,
) -> Option<Finish> {
    let store = &runtime.store;
    let waited = claimed_at.elapsed();
    let deadline = Duration::from_secs(leased.task.timeout_s.max(1) as u64).saturating_sub(waited);
    let work = run_executor(runtime, &leased);
    tokio::pin!(work);
    let timeout = tokio::time::sleep(deadline);
    tokio::pin!(timeout);
    let beat = lease / 3;
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + beat.saturating_sub(waited),
        beat,
    );
    let started = std::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            step = &mut work => match step {
                Step::Finish(outcome) => break outcome,
                Step::Recorded => {
                    crate::metrics::ran(&leased.task.executor, started.elapsed());
                    return None;
                }
            },
            _ = &mut timeout => break Outcome::Failed {
                error: format!("timed out after {} s", leased.task.timeout_s),
                retryable: true,
            },
            _ = ticker.tick() => {
                if let Err(e) = store.heartbeat(leased.task.id, &leased.lease_token, lease).await {
                    tracing::warn!(task = %leased.task.id, error = %e, "heartbeat refused; giving up the attempt");
                    break Outcome::Failed { error: format!("lost the lease: {e}"), retryable: true };
                }
            }
        }
    };
    crate::metrics::ran(&leased.task.executor, started.elapsed());
    Some(Finish {
        task_id: leased.task.id,
        lease_token: Some(leased.lease_token.clone()),
        outcome,
    })
}

async fn run_executor(runtime: &Runtime, leased: &Leased) -> Step {
    match Executor::parse(&leased.task.executor) {
        // `noop` does nothing and hands its input on as its output.
        Ok(Executor::Noop) => Step::Finish(Outcome::Completed {
            output: leased.task.input.clone(),
        }),
        Ok(Executor::LlmGenerate) => crate::generate::run(runtime, leased).await,
        Ok(Executor::HttpWebhook) => crate::hook::run(runtime, leased).await,
        Ok(Executor::FileExtract) => crate::extract::run(runtime, leased).await,
        Ok(Executor::FileInspect) => crate::dataflow::inspect(runtime, leased).await,
        Ok(Executor::FileParse) => crate::dataflow::parse(runtime, leased).await,
        Ok(Executor::FileSemantic) => crate::dataflow::semantic(runtime, leased).await,
        Ok(Executor::FileInsights) => crate::dataflow::insights(runtime, leased).await,
        Ok(other) => Step::Finish(Outcome::Failed {
            error: format!(
                "executor {} does not run in the embedded workers",
                other.name()
            ),
            retryable: false,
        }),
        Err(e) => Step::Finish(Outcome::Failed {
            error: e,
            retryable: false,
        }),
    }
}

/// Records finished attempts in batches: everything that finished while the
/// previous batch was committing goes into the next transaction, and, when
/// the lane is drained and the tasks in flight run short, what finishes
/// within [`linger`] of the first.
async fn commit_loop(
    store: Arc<dyn Store>,
    mut done: mpsc::Receiver<Finish>,
    ctx: WriteContext,
    pace: Arc<Pace>,
) {
    const MAX_BATCH: usize = 512;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = done.recv().await {
        batch.push(first);
        let wait = linger(
            pace.in_flight.load(Ordering::SeqCst),
            pace.runs.mean(),
            pace.drained.load(Ordering::SeqCst),
        );
        let until = tokio::time::Instant::now() + wait;
        while batch.len() < MAX_BATCH {
            match done.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) if wait.is_zero() || pace.in_flight.load(Ordering::SeqCst) == 0 => break,
                Err(_) => match tokio::time::timeout_at(until, done.recv()).await {
                    Ok(Some(f)) => batch.push(f),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        let mut delay = Duration::from_millis(100);
        // The database is unreachable: keep the results and retry; if the
        // leases expire meanwhile, the tasks are retried elsewhere.
        while let Err(e) = record(&store, &batch, &ctx).await {
            tracing::warn!(error = %e, "recording results failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

/// Records a batch of finished attempts in one transaction, then checks the
/// rollback triggers of the metrics their outputs reported.
async fn record(
    store: &Arc<dyn Store>,
    batch: &[Finish],
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    let results = store.finish(batch.to_vec(), ctx).await?;
    for (f, r) in batch.iter().zip(results) {
        match r {
            Ok(done) => {
                crate::metrics::finished(done.status);
                if let Some(observed) = &done.observed {
                    crate::journeys::watch_reported(&**store, observed, ctx).await;
                }
            }
            // The lease expired or the task was cancelled meanwhile: someone
            // else owns it now; nothing to record.
            Err(e) => tracing::info!(task = %f.task_id, reason = %e, "result not recorded"),
        }
    }
    Ok(())
}

async fn sweep_loop(
    store: Arc<dyn Store>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        loop {
            match store.expire_leases(500).await {
                Ok(n) => {
                    crate::metrics::expired(n);
                    if n < 500 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiring leases failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_claiming_ahead_it_claims_the_free_slots() {
        assert_eq!(claim_size(16, 0, 0), 16);
        assert_eq!(claim_size(3, 0, 0), 3);
        assert_eq!(claim_size(0, 0, 0), 0);
        // What the queue holds serves the slots first.
        assert_eq!(claim_size(5, 2, 0), 3);
        assert_eq!(claim_size(2, 5, 0), 0);
    }

    #[test]
    fn claiming_ahead_refills_the_queue_by_many_at_a_time() {
        // An empty queue: the free slots and the whole of `ahead`.
        assert_eq!(claim_size(16, 0, 64), 80);
        // Slots the queue cannot serve, and the queue refilled.
        assert_eq!(claim_size(10, 4, 64), 6 + 64);
        // Half of `ahead` or more left after the free slots: nothing yet.
        assert_eq!(claim_size(4, 36, 64), 0);
        assert_eq!(claim_size(0, 32, 64), 0);
        // Less than half left: refill to `ahead`.
        assert_eq!(claim_size(0, 31, 64), 33);
        assert_eq!(claim_size(4, 20, 64), 48);
    }

    #[test]
    fn only_short_tasks_are_claimed_ahead_and_only_so_many() {
        assert_eq!(ahead(16, None), 0, "nothing ran yet");
        // Tasks that end at once: the whole local queue.
        assert_eq!(ahead(16, Some(Duration::ZERO)), 16 * AHEAD_SLOTS);
        assert_eq!(ahead(16, Some(Duration::from_micros(40))), 16 * AHEAD_SLOTS);
        assert_eq!(ahead(1, Some(Duration::from_micros(40))), AHEAD_SLOTS);
        // As many slots' worth as wait AHEAD_WAIT in all.
        assert_eq!(ahead(16, Some(AHEAD_WAIT / 10)), 16 * 10);
        assert_eq!(ahead(16, Some(AHEAD_WAIT / 2)), 16 * 2);
        assert_eq!(ahead(16, Some(AHEAD_WAIT)), 16);
        // Longer: none.
        assert_eq!(ahead(16, Some(AHEAD_WAIT + Duration::from_millis(1))), 0);
        assert_eq!(ahead(16, Some(Duration::from_secs(20))), 0);
    }

    #[test]
    fn the_committer_waits_only_for_short_tasks_in_flight_of_a_drained_lane() {
        let short = Some(Duration::from_micros(30));
        assert_eq!(linger(100, short, true), LINGER);
        assert_eq!(linger(1, Some(LINGER), true), LINGER);
        // The lane holds more: commits follow each other anyway.
        assert_eq!(linger(100, short, false), Duration::ZERO);
        // Nothing in flight, nothing ran yet, or tasks that run long: at once.
        assert_eq!(linger(0, short, true), Duration::ZERO);
        assert_eq!(linger(100, None, true), Duration::ZERO);
        assert_eq!(
            linger(100, Some(LINGER + Duration::from_micros(1)), true),
            Duration::ZERO
        );
        assert_eq!(
            linger(3, Some(Duration::from_secs(20)), true),
            Duration::ZERO
        );
    }

    #[test]
    fn the_mean_run_time_follows_the_recent_tasks() {
        let runs = RunTimes::default();
        assert_eq!(runs.mean(), None);
        runs.record(Duration::from_millis(2));
        assert_eq!(runs.mean(), Some(Duration::from_millis(2)));
        // Long tasks from now on: the mean passes AHEAD_WAIT within a few.
        for _ in 0..12 {
            runs.record(Duration::from_secs(1));
        }
        let mean = runs.mean().unwrap();
        assert!(
            mean > AHEAD_WAIT && mean < Duration::from_secs(1),
            "{mean:?}"
        );
        // And short ones bring it back down.
        for _ in 0..60 {
            runs.record(Duration::from_micros(50));
        }
        assert!(runs.mean().unwrap() <= AHEAD_WAIT, "{:?}", runs.mean());
    }
}
