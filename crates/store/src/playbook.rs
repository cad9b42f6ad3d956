//! Customer-success playbooks' storage: the queue, signal observations and
//! conversation threads. [`PlaybookStore`] and its records.
//!
//! The rules (which playbook is due, its score, how a run reconciles with what
//! is stored, which saved action is allowed) are `waymark_domain::queue`; the
//! store records what the caller decided. A queue item is one row per
//! identity (client, template, rule): runs update it, never add a second.
//! Saved actions on an item whose playbook started go through
//! [`crate::JourneyStore::journey_event`] ([`crate::JourneyTransition::item`]),
//! so the journey's history and the item change in one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use waymark_domain::queue::{Change, Effect, Factor, ItemStatus};
use waymark_domain::{ArtifactId, ClientId, JourneyId, QueueItemId, ThreadId};

use crate::{Client, NewObservation, Page, PageRequest, Result, WriteContext};

/// An item of the queue: a playbook due (or running) for a client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueItem {
    pub id: QueueItemId,
    pub client_id: ClientId,
    pub client_name: String,
    /// The pack whose rule made it.
    pub pack: String,
    /// The playbook template.
    pub template: String,
    /// The rule that made it: with the client and template, its identity.
    pub rule: String,
    pub status: ItemStatus,
    pub reason: String,
    /// 0-100: higher comes first.
    pub score: f64,
    /// Every input of the score: value, weight, contribution.
    pub factors: Vec<Factor>,
    #[serde(with = "waymark_domain::dates")]
    #[schema(value_type = String, format = Date)]
    pub due: Date,
    /// The due date the rule gives (`due` differs when a person scheduled it).
    #[serde(with = "waymark_domain::dates")]
    #[schema(value_type = String, format = Date)]
    pub rule_due: Date,
    /// A person set the due date: rule runs keep it.
    pub scheduled: bool,
    /// Who works it: the client's owner, or whom it was escalated to.
    pub owner: Option<String>,
    pub escalated: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub snoozed_until: Option<OffsetDateTime>,
    /// The playbook journey, once started.
    pub journey_id: Option<JourneyId>,
    /// The journey's state (its current step), once started.
    pub stage: Option<String>,
    /// The more urgent rule that replaced it.
    pub superseded_by: Option<String>,
    pub closed_reason: Option<String>,
    /// How the playbook ended.
    pub outcome: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a rules run needs of one client.
#[derive(Debug, Clone)]
pub struct QueueClient {
    pub client: Client,
    /// The latest observation of each signal.
    pub latest: BTreeMap<String, f64>,
    /// Its stored items, every status.
    pub items: Vec<QueueItem>,
}

/// One change a run decided, for one client.
#[derive(Debug, Clone)]
pub struct QueueWrite {
    pub client_id: ClientId,
    pub pack: String,
    /// The client's owner: new items take it, items not escalated follow it.
    pub owner: Option<String>,
    pub change: Change,
}

/// A rules run to record.
#[derive(Debug, Clone)]
pub struct QueueRun {
    /// What started it: `signals`, `schedule` or `request`.
    pub trigger: String,
    pub clients: usize,
    pub changes: Vec<QueueWrite>,
    /// Rules that could not be evaluated for a client (`client rule: why`).
    pub errors: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct QueueRunSummary {
    pub trigger: String,
    pub clients: usize,
    pub opened: usize,
    pub updated: usize,
    pub reopened: usize,
    pub closed: usize,
    pub superseded: usize,
    /// Rules that could not be evaluated (the first 50).
    pub errors: Vec<String>,
}

/// Which items of the queue to list.
#[derive(Debug, Clone)]
pub struct QueueFilter {
    /// The owner's names: a user's id and email, or the name given.
    pub owners: Vec<String>,
    pub template: Option<String>,
    /// A journey state, or `due` for items not started.
    pub stage: Option<String>,
    /// Snoozes over by then show again.
    pub now: OffsetDateTime,
}

/// Counts over an owner's whole queue (the filters aside).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct QueueStats {
    pub total: i64,
    pub by_template: BTreeMap<String, i64>,
    /// By journey state; `due` for items not started.
    pub by_stage: BTreeMap<String, i64>,
    /// Due before today.
    pub overdue: i64,
}

/// A saved action on an item whose playbook has not started.
#[derive(Debug, Clone)]
pub struct ItemAction {
    /// `snooze`, `escalate`, `schedule`.
    pub action: &'static str,
    pub effect: Effect,
    pub reason: Option<String>,
}

/// A recorded observation of a client's signal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SignalRecord {
    pub name: String,
    pub value: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub recorded_by: String,
}

/// Whether a thread goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    Open,
    Completed,
}

/// A conversation of a playbook step.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Thread {
    pub id: ThreadId,
    pub journey_id: JourneyId,
    pub client_id: ClientId,
    /// The step (stage id) it belongs to.
    pub step: String,
    /// The `llm` branch it was opened from, if any.
    pub branch: Option<String>,
    pub status: ThreadStatus,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The customer context the conversation starts from.
    System,
    /// The person working the step.
    User,
    /// The LLM (or the template provider).
    Assistant,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }
}

/// One message of a thread.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThreadMessage {
    /// 1, 2, … in the thread.
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    /// Assistant messages: `ollama:<model>`, `openai:<model>` or `template`.
    pub provider: Option<String>,
    /// Why the template provider answered instead of the configured one.
    pub fallback: Option<String>,
    /// Who sent it (the person, or the provider).
    pub author: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A message to add.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    pub provider: Option<String>,
    pub fallback: Option<String>,
}

/// A thread to open, with its system message.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub journey_id: JourneyId,
    pub client_id: ClientId,
    pub step: String,
    pub branch: Option<String>,
    pub system: String,
}

#[async_trait]
pub trait PlaybookStore: Send + Sync {
    // --- the queue ----------------------------------------------------------

    /// Up to `limit` clients after `after` (by id), each with its latest
    /// signals and stored items: a rules run walks the clients with this.
    async fn queue_inputs(
        &self,
        only: Option<ClientId>,
        after: Option<ClientId>,
        limit: usize,
    ) -> Result<Vec<QueueClient>>;
    /// Records a run's changes in one transaction, with an audit record and
    /// an event per changed item and one for the run.
    async fn apply_queue_run(&self, run: QueueRun, ctx: &WriteContext) -> Result<QueueRunSummary>;
    /// An owner's queue: items open, started, or snoozed until before
    /// `filter.now`, by score (highest first), then due date, then id; with
    /// the stats of the whole queue.
    async fn queue(
        &self,
        filter: &QueueFilter,
        today: Date,
        page: PageRequest,
    ) -> Result<(Page<QueueItem>, QueueStats)>;
    async fn get_queue_item(&self, id: QueueItemId) -> Result<QueueItem>;
    /// The item a playbook journey was started from.
    async fn queue_item_of_journey(&self, journey: JourneyId) -> Result<Option<QueueItem>>;
    /// Snoozes, escalates or schedules an item whose playbook has not started
    /// (the caller checked the action with `queue::check_action`).
    async fn queue_item_action(
        &self,
        id: QueueItemId,
        action: ItemAction,
        ctx: &WriteContext,
    ) -> Result<QueueItem>;

    // --- signals -------------------------------------------------------------

    /// Records observations of a client's signals; answers how many.
    async fn record_signals(
        &self,
        client: ClientId,
        observations: Vec<NewObservation>,
        ctx: &WriteContext,
    ) -> Result<usize>;
    /// A client's observations since `since`, oldest first (at most 10,000).
    async fn client_signals(
        &self,
        client: ClientId,
        since: OffsetDateTime,
    ) -> Result<Vec<SignalRecord>>;

    // --- threads -------------------------------------------------------------

    async fn create_thread(&self, new: NewThread, ctx: &WriteContext) -> Result<Thread>;
    async fn get_thread(&self, id: ThreadId) -> Result<Thread>;
    async fn list_threads(&self, journey: JourneyId) -> Result<Vec<Thread>>;
    async fn thread_messages(&self, id: ThreadId) -> Result<Vec<ThreadMessage>>;
    /// Adds messages to an open thread (409 once it is completed).
    async fn add_thread_messages(
        &self,
        id: ThreadId,
        messages: Vec<NewMessage>,
        ctx: &WriteContext,
    ) -> Result<Vec<ThreadMessage>>;
    /// Completes an open thread (409 once it is completed).
    async fn complete_thread(&self, id: ThreadId, ctx: &WriteContext) -> Result<Thread>;
    /// Records that `artifact` was saved from the thread (from message
    /// `message_seq`, if one).
    async fn link_thread_artifact(
        &self,
        id: ThreadId,
        artifact: ArtifactId,
        message_seq: Option<i64>,
    ) -> Result<()>;
    /// The artifacts saved from the thread, oldest first.
    async fn thread_artifacts(&self, id: ThreadId) -> Result<Vec<ArtifactId>>;
}
