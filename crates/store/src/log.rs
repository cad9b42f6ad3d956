//! The audit log, the event outbox, webhook deliveries and outgoing mail:
//! [`LogStore`] and its records.
//!
//! Every write of the other stores appends its audit record and its events in its
//! own transaction (see `sql.rs`, `append_log!`); this trait reads them back and
//! runs the deliveries that follow from them.

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::audit::AuditRecord;
use waymark_domain::{ClientId, EventId, WebhookId};

use crate::{Page, PageRequest, Result, WriteContext};

/// Who may see an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The client's own users too (things shared with them).
    Client,
    /// Operators and admins.
    Staff,
    /// Admins only (people, tokens, webhooks).
    Admin,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Client => "client",
            Audience::Staff => "staff",
            Audience::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Audience::Client),
            "staff" => Some(Audience::Staff),
            "admin" => Some(Audience::Admin),
            _ => None,
        }
    }
}

/// An event to write with a change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// e.g. `artifact.approved`.
    pub event_type: &'static str,
    /// The record it is about, e.g. `art_…`.
    pub subject: String,
    pub client_id: Option<ClientId>,
    pub audience: Audience,
    pub data: Value,
}

/// An event from the outbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// Position in the outbox, in commit order.
    pub seq: i64,
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub client_id: Option<ClientId>,
    pub audience: Audience,
    pub data: Value,
    pub trace_id: Option<String>,
}

impl Event {
    /// The event as a CloudEvents 1.0 JSON document, `source` naming this server.
    pub fn cloudevent(&self, source: &str) -> Value {
        let mut doc = serde_json::json!({
            "specversion": "1.0",
            "id": self.id.to_string(),
            "source": source,
            "type": self.event_type,
            "time": self.time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "subject": self.subject,
            "datacontenttype": "application/json",
            "data": self.data,
        });
        if let Some(c) = self.client_id {
            doc["clientid"] = Value::String(c.to_string());
        }
        if let Some(t) = &self.trace_id {
            doc["traceid"] = Value::String(t.clone());
        }
        doc
    }
}

/// Which events a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// Everything (admins).
    All,
    /// Client and staff events (operators).
    Staff,
    /// The client events of one client (its users).
    Client(ClientId),
}

/// One audit record as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    #[serde(flatten)]
    pub record: AuditRecord,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Filters of the audit log; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub client_id: Option<ClientId>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// Where the audit chain ends, as its head row records it.
#[derive(Debug, Clone)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// A webhook subscription (its secret is never shown after creation).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    /// Event types delivered (`artifact.approved`...); empty for all.
    pub event_types: Vec<String>,
    /// Only events of this client, when set.
    pub client_id: Option<ClientId>,
    pub description: Option<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(skip)]
    pub secret: String,
}

/// A webhook to create (already validated).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub client_id: Option<ClientId>,
    pub description: Option<String>,
    /// `whsec_…`.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// An event's delivery to one webhook, with its attempts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    pub attempt_log: Vec<DeliveryAttempt>,
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: i64,
    pub url: String,
    pub secret: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub event: Event,
}

/// How an attempt went.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub at: OffsetDateTime,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub delivered: bool,
    /// When to try again; `None` with `delivered` false means give up.
    pub retry_at: Option<OffsetDateTime>,
}

/// A mail to send.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub event_seq: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// A mail of the outbox, as admins read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Mail {
    pub id: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// `pending` (to be sent), `sent`, `failed` (every attempt failed), or
    /// `unsent` (no SMTP relay is configured: it is kept here).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
}

/// A mail claimed for sending.
#[derive(Debug, Clone)]
pub struct MailJob {
    pub id: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

/// The audit log, the event outbox and what is delivered from it.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Audit records, oldest first, matching the filter.
    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>>;
    /// The raw chain from `after_seq`, at most `limit` records, for verification.
    async fn audit_chain(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    async fn audit_head(&self) -> Result<AuditHead>;

    /// Events after `after_seq` that `scope` may see, oldest first.
    async fn events_after(
        &self,
        after_seq: i64,
        scope: EventScope,
        limit: i64,
    ) -> Result<Vec<Event>>;
    /// The position of an event, to resume after it.
    async fn event_seq(&self, id: EventId) -> Result<Option<i64>>;
    /// The position of the newest event.
    async fn last_event_seq(&self) -> Result<i64>;
    /// Changes whenever events were appended: by any process on PostgreSQL
    /// (`LISTEN`/`NOTIFY`), by this process on SQLite. Event streams wait on
    /// it instead of polling.
    fn event_signal(&self) -> tokio::sync::watch::Receiver<i64>;

    async fn create_webhook(&self, new: NewWebhook, ctx: &WriteContext) -> Result<Webhook>;
    async fn get_webhook(&self, id: WebhookId) -> Result<Webhook>;
    async fn list_webhooks(&self, page: PageRequest) -> Result<Page<Webhook>>;
    async fn delete_webhook(&self, id: WebhookId, ctx: &WriteContext) -> Result<()>;
    async fn list_deliveries(&self, id: WebhookId, page: PageRequest) -> Result<Page<Delivery>>;
    /// Turns new events into pending deliveries for each subscription that wants
    /// them, advancing its cursor in the same transaction. Answers how many.
    async fn fan_out_webhooks(&self, limit: i64) -> Result<u64>;
    /// Claims due deliveries for an attempt, leasing them until `lease_until`.
    async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>>;
    /// Records an attempt and what follows from it.
    async fn finish_delivery(&self, delivery_id: i64, outcome: AttemptOutcome) -> Result<()>;

    /// Where the consumer `name` has read the outbox to (0 at first).
    async fn event_cursor(&self, name: &str) -> Result<i64>;
    /// Queues mails made from events up to `to_seq` and moves the cursor of
    /// `name` from `from_seq` to `to_seq`, in one transaction; answers false
    /// (queuing nothing) when another process moved the cursor first.
    /// Queues the mail composed from the events `from_seq` (exclusive) to
    /// `to_seq`, moving the cursor `name` in the same transaction (refused,
    /// `false`, when another process moved it first). Without a relay to send
    /// it (`sendable` false), mail is kept as `unsent`.
    async fn enqueue_mail(
        &self,
        name: &str,
        from_seq: i64,
        to_seq: i64,
        mails: Vec<NewMail>,
        sendable: bool,
    ) -> Result<bool>;
    /// The outbox, newest first.
    async fn list_mail(&self, page: PageRequest) -> Result<Page<Mail>>;
    async fn claim_mail(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<MailJob>>;
    /// Records a sending attempt: sent, or failed with a retry time (or none: give up).
    async fn finish_mail(
        &self,
        id: i64,
        error: Option<String>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<()>;
}
