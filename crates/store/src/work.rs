//! The work engine's storage: units of work, tasks, leases, incidents, agents
//! and generation plan jobs. [`WorkStore`] and its records. The rules (what a
//! failed attempt leads to, lease checks, fair ordering) are
//! `waymark_domain::work`; the store applies them inside its transactions.
//!
//! Claiming takes tasks of one lane in order (priority, fair key, id) through a
//! partial index of ready tasks, so a claim costs what it takes, not what waits.
//! Completing tasks, readying their dependents, closing their unit and writing
//! the audit records and events happen in one transaction.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::artifact::SourceRef;
use waymark_domain::work::{
    AttemptOutcome, Backoff, CheckedTask, Resolution, TaskStatus, UnitStatus,
};
use waymark_domain::{ArtifactId, ClientId, EngagementId, IncidentId, TaskId, UnitId};

use crate::{Created, Flagged, Page, PageRequest, Pipeline, Result, StoreError, WriteContext};

/// A unit of work as submitted (its tasks already checked).
#[derive(Debug, Clone)]
pub struct NewUnit {
    pub client_id: ClientId,
    pub name: String,
    pub tasks: Vec<CheckedTask>,
    /// Units that must complete before any of its tasks can run.
    pub depends_on_units: Vec<UnitId>,
    /// What made it (e.g. `{"kind": "plan", "engagement_id": ...}`).
    pub origin: Option<Value>,
    /// The generation plan jobs its tasks run, when a plan run made it.
    pub plan: Option<PlanLink>,
}

/// Ties the tasks of a unit to the generation plan jobs they run: submitting
/// it records each job's new task, and is refused while one of those jobs
/// still has a task queued or running.
#[derive(Debug, Clone)]
pub struct PlanLink {
    pub engagement_id: EngagementId,
    /// (index of the task in the unit, job key).
    pub jobs: Vec<(usize, String)>,
}

/// What a generation plan job last wrote, and its latest task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanJobRecord {
    pub job_key: String,
    /// The inputs hash of the version it last wrote.
    pub inputs_hash: Option<String>,
    pub artifact_id: Option<ArtifactId>,
    pub version: Option<i64>,
    pub provenance: Option<String>,
    pub task_id: Option<TaskId>,
    pub unit_id: Option<UnitId>,
    pub task_status: Option<TaskStatus>,
    pub task_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a generation job wrote, recorded in the transaction that completes its
/// task.
#[derive(Debug, Clone)]
pub struct Generated {
    pub task_id: TaskId,
    pub lease_token: String,
    pub engagement_id: EngagementId,
    pub job_key: String,
    pub client_id: ClientId,
    pub artifact_type: String,
    /// The title of the artifact when the job creates it.
    pub title: String,
    /// The artifact the job read and its version (`None`: there was none). The
    /// write is refused when the type's current artifact is no longer that.
    pub base: Option<(ArtifactId, i64)>,
    pub content: Value,
    pub sources: Vec<SourceRef>,
    pub provenance: String,
    /// The type's gating and the job's generator (part of the inputs hash).
    pub pipeline: Pipeline,
    pub note: String,
    /// The task's output, to which the artifact, version and inputs hash are added.
    pub output: Value,
}

/// The version a generation job wrote.
#[derive(Debug, Clone)]
pub struct GenerationDone {
    pub artifact_id: ArtifactId,
    pub version: i64,
    pub inputs_hash: String,
    /// What the write made stale downstream.
    pub flagged: Vec<Flagged>,
}

/// A unit of work.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unit {
    pub id: UnitId,
    pub client_id: ClientId,
    pub name: String,
    pub status: UnitStatus,
    pub tasks_total: i64,
    /// Completed or skipped.
    pub tasks_done: i64,
    pub tasks_cancelled: i64,
    pub depends_on_units: Vec<UnitId>,
    #[schema(value_type = Option<Object>)]
    pub origin: Option<Value>,
    pub trace_id: Option<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// A unit with its tasks and incidents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnitDetail {
    #[serde(flatten)]
    pub unit: Unit,
    /// How many tasks are in each status.
    #[schema(value_type = Object)]
    pub counts: std::collections::BTreeMap<String, i64>,
    pub tasks: Vec<Task>,
    pub incidents: Vec<Incident>,
}

/// A task of a unit of work.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Task {
    pub id: TaskId,
    pub unit_id: UnitId,
    pub client_id: ClientId,
    pub key: String,
    pub name: String,
    pub executor: String,
    pub status: TaskStatus,
    /// The JSON value it was given (`null` when none).
    pub input: Value,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Keys of the tasks of its unit it waits on.
    pub depends_on: Vec<String>,
    /// Fields its output must carry (its handoff contract); empty: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contract: Vec<String>,
    /// The key of the dependency whose output became its input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_from: Option<String>,
    pub priority: i64,
    pub max_attempts: i64,
    /// Attempts started so far.
    pub attempts: i64,
    pub timeout_s: i64,
    pub backoff: Backoff,
    /// When a retried task may run again.
    #[serde(with = "time::serde::rfc3339::option")]
    pub run_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub lease_expires_at: Option<OffsetDateTime>,
    /// The worker or agent running it.
    pub claimed_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub trace_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// One attempt at a task: who ran it, when, for how long, and how it ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskAttempt {
    /// Its number among the task's attempts, from 1 (never reused, even after
    /// a person retries the task).
    pub attempt: i64,
    pub outcome: AttemptOutcome,
    /// The worker or agent that claimed it, or the person who finished it.
    pub worker: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// From start to end, once it ended.
    pub duration_ms: Option<i64>,
    /// Why it failed, expired or was cancelled.
    pub error: Option<String>,
}

/// A claimed task and the lease that lets its holder finish it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Leased {
    pub task: Task,
    /// Present it to heartbeat, complete or fail this task (and no other):
    /// every task of a claim has its own.
    pub lease_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The lane: `engine` for the embedded workers, an agent id for an agent.
    pub lane: String,
    pub max: usize,
    /// How long the lease lasts before a heartbeat must extend it.
    pub lease: Duration,
    /// Who claims (a worker name or the agent id), recorded on the task.
    pub worker: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed { output: Value },
    Failed { error: String, retryable: bool },
}

/// The end of one attempt, as reported by its executor.
#[derive(Debug, Clone)]
pub struct Finish {
    pub task_id: TaskId,
    /// The lease of the attempt; `None` only for a human task, finished by a person.
    pub lease_token: Option<String>,
    pub outcome: Outcome,
}

/// What `/metrics` reports of the engine from the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineGauges {
    /// `(lane, ready tasks, running tasks)`, by lane; a ready task may wait
    /// for its retry time.
    pub lanes: Vec<(String, i64, i64)>,
    pub open_incidents: i64,
}

/// What a finish led to.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Finished {
    pub task_id: TaskId,
    /// The task's status afterwards: `completed`, `ready` (retried later) or `failed`.
    pub status: TaskStatus,
    /// The metrics its output reported, recorded on the journey that started
    /// its unit (for the caller to check the journey's rollback triggers).
    #[serde(skip)]
    pub observed: Option<Observed>,
}

/// Metric observations a task's output recorded on its journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub journey_id: waymark_domain::JourneyId,
    pub at: OffsetDateTime,
    pub metrics: Vec<(String, f64)>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub executor: Option<String>,
    pub client_id: Option<ClientId>,
    pub unit_id: Option<UnitId>,
}

/// A task whose attempts are exhausted, waiting for a person.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Incident {
    pub id: IncidentId,
    pub unit_id: UnitId,
    pub task_id: TaskId,
    pub task_key: String,
    pub client_id: ClientId,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub resolution: Option<Resolution>,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

/// An external agent as registered.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub id: String,
    pub description: String,
    pub capabilities: Vec<String>,
}

/// An external agent of the registry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub description: String,
    pub capabilities: Vec<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its last claim or heartbeat.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// The work engine's storage (see the module docs).
#[async_trait]
pub trait WorkStore: Send + Sync {
    /// Stores a unit of work and its tasks; tasks without dependencies (in a unit
    /// that waits on no unfinished unit) are ready at once.
    async fn submit_unit(&self, new: NewUnit, ctx: &WriteContext) -> Result<Created<Unit>>;
    async fn get_unit(&self, id: UnitId) -> Result<UnitDetail>;
    async fn list_units(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Unit>>;
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    /// The attempts at a task, oldest first.
    async fn task_attempts(&self, id: TaskId) -> Result<Vec<TaskAttempt>>;
    async fn list_tasks(&self, filter: TaskFilter, page: PageRequest) -> Result<Page<Task>>;
    /// Counts the tasks of a unit (or of every unit) in each status.
    async fn count_tasks(&self, unit_id: Option<UnitId>) -> Result<Vec<(TaskStatus, i64)>>;
    /// The engine's gauges, for `/metrics`: ready and running tasks per
    /// lane, and the open incidents (partial indexes: cheap at any size).
    async fn engine_gauges(&self) -> Result<EngineGauges>;

    /// Claims up to `max` ready tasks of a lane, fairly across clients, each
    /// with a lease of its own, and opens an attempt for each.
    async fn claim(&self, claim: Claim) -> Result<Vec<Leased>>;
    /// Extends a lease (never past the attempt's timeout).
    async fn heartbeat(
        &self,
        task_id: TaskId,
        lease_token: &str,
        lease: Duration,
    ) -> Result<OffsetDateTime>;
    /// Records the ends of attempts, in one transaction: each is checked on its
    /// own (a refused one changes nothing and answers its error); completions
    /// ready their dependents and close their units.
    async fn finish(
        &self,
        finishes: Vec<Finish>,
        ctx: &WriteContext,
    ) -> Result<Vec<std::result::Result<Finished, StoreError>>>;
    /// Counts every running task whose lease expired as a failed attempt.
    /// Answers how many.
    async fn expire_leases(&self, limit: usize) -> Result<usize>;
    /// How long until the next ready task of a lane becomes claimable (by
    /// the database's clock on PostgreSQL): zero when one already is (its
    /// retry came due after the caller's last claim); `None` when none is
    /// ready.
    async fn next_run_in(&self, lane: &str) -> Result<Option<Duration>>;
    /// Cancels a task and everything downstream of it.
    async fn cancel_task(
        &self,
        id: TaskId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Task>;
    /// Cancels every task of a unit that is not done.
    async fn cancel_unit(
        &self,
        id: UnitId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Unit>;

    async fn get_incident(&self, id: IncidentId) -> Result<Incident>;
    async fn list_incidents(
        &self,
        open_only: bool,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Incident>>;
    async fn resolve_incident(
        &self,
        id: IncidentId,
        resolution: Resolution,
        note: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Incident>;

    /// Registers an agent, or updates it; answers whether it was new.
    async fn register_agent(&self, agent: NewAgent, ctx: &WriteContext) -> Result<(Agent, bool)>;
    async fn get_agent(&self, id: &str) -> Result<Agent>;
    async fn list_agents(&self) -> Result<Vec<Agent>>;
    /// Records contact from an agent.
    async fn touch_agent(&self, id: &str) -> Result<()>;

    /// A receiver that changes when tasks may have become ready: on this
    /// process's writes, and on PostgreSQL on any process's (`LISTEN`).
    /// The generation plan jobs of an engagement that ever ran or were queued.
    async fn plan_jobs(&self, engagement_id: EngagementId) -> Result<Vec<PlanJobRecord>>;
    /// Completes a generation task and writes its artifact version in one
    /// transaction: the lease must be the task's, the task must still be its
    /// job's latest, the type's current artifact must be the one the job read
    /// and its type must not be gated. The version's inputs hash is recorded as
    /// the job's.
    async fn finish_generation(
        &self,
        generated: Generated,
        ctx: &WriteContext,
    ) -> Result<GenerationDone>;

    fn work_signal(&self) -> tokio::sync::watch::Receiver<u64>;
}
