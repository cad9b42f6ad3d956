//! [`LogStore`] on SQL: reading the audit chain and the event outbox, webhook
//! subscriptions and their deliveries, and the mail queue.
//!
//! Records and events are numbered in the order they become readable (see
//! [`super::append`]): a reader that sees event n has seen every event before
//! it, and a cursor (a subscription's, a stream's) never skips one. Every
//! reader of the log first waits until what committed before it asked is
//! sealed (PostgreSQL), so a caller reads its own writes.

use async_trait::async_trait;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::audit::AuditRecord;
use waymark_domain::{ClientId, EventId, WebhookId};

use super::append::heads;
use super::*;
use crate::log::*;

#[derive(FromRow)]
struct AuditRow {
    seq: i64,
    at: OffsetDateTime,
    actor: String,
    actor_name: Option<String>,
    client_id: Option<String>,
    action: String,
    target: String,
    before_hash: Option<String>,
    after_hash: Option<String>,
    trace_id: Option<String>,
    prev_hash: String,
    hash: String,
}

const AUDIT_COLUMNS: &str = "seq, at, actor, actor_name, client_id, action, target, before_hash, after_hash, \
     trace_id, prev_hash, hash";

impl AuditRow {
    fn into_entry(self) -> AuditEntry {
        AuditEntry {
            at: self.at,
            record: AuditRecord {
                seq: self.seq,
                at_us: unix_micros(self.at),
                actor: self.actor,
                actor_name: self.actor_name,
                client_id: self.client_id,
                action: self.action,
                target: self.target,
                before_hash: self.before_hash,
                after_hash: self.after_hash,
                trace_id: self.trace_id,
                prev_hash: self.prev_hash,
                hash: self.hash,
            },
        }
    }
}

#[derive(FromRow)]
struct EventRow {
    seq: i64,
    id: Uuid,
    #[sqlx(rename = "type")]
    event_type: String,
    subject: String,
    time: OffsetDateTime,
    client_id: Option<Uuid>,
    audience: String,
    data: Json<Value>,
    trace_id: Option<String>,
}

const EVENT_COLUMNS: &str = "seq, id, type, subject, time, client_id, audience, data, trace_id";

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        Ok(Event {
            seq: r.seq,
            id: EventId::from_uuid(r.id),
            event_type: r.event_type,
            subject: r.subject,
            time: r.time,
            client_id: r.client_id.map(ClientId::from_uuid),
            audience: Audience::parse(&r.audience)
                .ok_or_else(|| decode_error("audience", &r.audience))?,
            data: r.data.0,
            trace_id: r.trace_id,
        })
    }
}

#[derive(FromRow)]
struct WebhookRow {
    id: Uuid,
    url: String,
    event_types: Json<Vec<String>>,
    client_id: Option<Uuid>,
    secret: String,
    description: Option<String>,
    created_by: String,
    created_at: OffsetDateTime,
}

const WEBHOOK_COLUMNS: &str =
    "id, url, event_types, client_id, secret, description, created_by, created_at";

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Webhook {
            id: WebhookId::from_uuid(r.id),
            url: r.url,
            event_types: r.event_types.0,
            client_id: r.client_id.map(ClientId::from_uuid),
            description: r.description,
            created_by: r.created_by,
            created_at: r.created_at,
            secret: r.secret,
        }
    }
}

#[derive(FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<OffsetDateTime>,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: OffsetDateTime,
    delivered_at: Option<OffsetDateTime>,
}

#[derive(FromRow)]
struct AttemptRow {
    delivery_id: i64,
    attempt: i64,
    at: OffsetDateTime,
    status_code: Option<i64>,
    error: Option<String>,
    duration_ms: i64,
}

#[derive(FromRow)]
struct JobRow {
    delivery_id: i64,
    url: String,
    secret: String,
    attempts: i64,
    #[sqlx(flatten)]
    event: EventRow,
}

#[derive(FromRow)]
struct OutboxRow {
    id: i64,
    recipient: String,
    subject: String,
    body: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: OffsetDateTime,
    sent_at: Option<OffsetDateTime>,
}

#[derive(FromRow)]
struct MailRow {
    id: i64,
    recipient: String,
    subject: String,
    body: String,
    attempts: i64,
}

#[async_trait]
impl LogStore for SqlStore {
    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>> {
        let cursor = number_cursor(&page)?;
        self.db.sealed().await?;
        let rows: Vec<AuditRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"));
            if let Some(c) = filter.client_id {
                qb.push(" AND client_id = ").push_bind(c.to_string());
            }
            if let Some(a) = &filter.actor {
                qb.push(" AND actor = ").push_bind(a.clone());
            }
            if let Some(t) = &filter.target {
                qb.push(" AND target = ").push_bind(t.clone());
            }
            if let Some(f) = filter.from {
                qb.push(" AND at >= ").push_bind(f);
            }
            if let Some(t) = filter.to {
                qb.push(" AND at < ").push_bind(t);
            }
            if let Some(c) = cursor {
                qb.push(" AND seq < ").push_bind(c);
            }
            qb.push(" ORDER BY seq DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
        let entries = rows.into_iter().map(AuditRow::into_entry).collect();
        Ok(paginate(entries, &page, |e: &AuditEntry| {
            e.record.seq.to_string()
        }))
    }

    async fn audit_chain(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        self.db.sealed().await?;
        let rows: Vec<AuditRow> = sql(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows.into_iter().map(|r| r.into_entry().record).collect())
    }

    async fn audit_head(&self) -> Result<AuditHead> {
        self.db.sealed().await?;
        let (seq, hash, _) = heads(&mut self.db.reader()).await?;
        Ok(AuditHead { seq, hash })
    }

    async fn events_after(
        &self,
        after_seq: i64,
        scope: EventScope,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.db.sealed().await?;
        let rows: Vec<EventRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > "));
            qb.push_bind(after_seq);
            match scope {
                EventScope::All => {}
                EventScope::Staff => {
                    qb.push(" AND audience IN ('client', 'staff')");
                }
                EventScope::Client(c) => {
                    qb.push(" AND audience = 'client' AND client_id = ")
                        .push_bind(c.uuid());
                }
            }
            qb.push(" ORDER BY seq LIMIT ")
                .push_bind(limit.clamp(1, 1000));
            qb.fetch_all(p).await?
        };
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn event_seq(&self, id: EventId) -> Result<Option<i64>> {
        self.db.sealed().await?;
        let row: Option<(i64,)> = sql("SELECT seq FROM events WHERE id = $1")
            .bind(id.uuid())
            .fetch_optional(&mut self.db.reader())
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn last_event_seq(&self) -> Result<i64> {
        self.db.sealed().await?;
        let (_, _, seq) = heads(&mut self.db.reader()).await?;
        Ok(seq)
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<i64> {
        self.listen();
        self.events.subscribe()
    }

    async fn create_webhook(&self, new: NewWebhook, ctx: &WriteContext) -> Result<Webhook> {
        self.db.sealed().await?;
        let id = WebhookId::new();
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "webhook").await? {
                drop(tx);
                return self.get_webhook(WebhookId::from_uuid(existing)).await;
            }
            idempotency::record(&mut tx, ctx, "webhook", id.uuid(), at).await?;
            if let Some(c) = new.client_id {
                require_client(&mut tx, c).await?;
            }
            // A subscription receives the events numbered after its
            // creation (its own `webhook.created` excepted, see fan-out).
            let (_, _, cursor) = heads(&mut tx).await?;
            sql(
                "INSERT INTO webhooks (id, url, event_types, client_id, secret, description, cursor, \
                 created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id.uuid())
            .bind(&new.url)
            .bind(Json(&new.event_types))
            .bind(new.client_id.map(|c| c.uuid()))
            .bind(&new.secret)
            .bind(&new.description)
            .bind(cursor)
            .bind(&ctx.actor)
            .bind(at)
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("webhook.create", new.client_id, id).event(
                "webhook.created",
                Audience::Admin,
                serde_json::json!({
                    "webhook_id": id.to_string(),
                    "url": new.url,
                    "event_types": new.event_types,
                }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };

        self.get_webhook(id).await
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Webhook> {
        let row: Option<WebhookRow> = sql(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND disabled_at IS NULL"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        Ok(row.ok_or_else(|| not_found("webhook", id))?.into())
    }

    async fn list_webhooks(&self, page: PageRequest) -> Result<Page<Webhook>> {
        let cursor = id_cursor::<WebhookId>(&page)?;
        let rows: Vec<WebhookRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE disabled_at IS NULL"
            ));
            if let Some(c) = cursor {
                qb.push(" AND id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
        let hooks = rows.into_iter().map(Webhook::from).collect();
        Ok(paginate(hooks, &page, |w: &Webhook| w.id.to_string()))
    }

    async fn delete_webhook(&self, id: WebhookId, ctx: &WriteContext) -> Result<()> {
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            let found: Option<(Option<Uuid>,)> =
                sql("SELECT client_id FROM webhooks WHERE id = $1 AND disabled_at IS NULL")
                    .bind(id.uuid())
                    .fetch_optional(&mut tx)
                    .await?;
            let (client,) = found.ok_or_else(|| not_found("webhook", id))?;
            sql("UPDATE webhooks SET disabled_at = $2 WHERE id = $1")
                .bind(id.uuid())
                .bind(at)
                .execute(&mut tx)
                .await?;
            // Nothing more is sent to a deleted subscription.
            sql(
                "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, \
                 last_error = 'the webhook was deleted' WHERE webhook_id = $1 AND status = 'pending'",
            )
            .bind(id.uuid())
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("webhook.delete", client.map(ClientId::from_uuid), id).event(
                "webhook.deleted",
                Audience::Admin,
                serde_json::json!({ "webhook_id": id.to_string() }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        Ok(())
    }

    async fn list_deliveries(&self, id: WebhookId, page: PageRequest) -> Result<Page<Delivery>> {
        self.get_webhook(id).await?;
        let cursor = number_cursor(&page)?;
        let (rows, attempts): (Vec<DeliveryRow>, Vec<AttemptRow>) = {
            let p = &mut self.db.reader();
            let mut qb = sql(
                "SELECT d.id, d.webhook_id, e.id AS event_id, e.type AS event_type, d.status, \
                 d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at, \
                 d.delivered_at FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq \
                 WHERE d.webhook_id = ",
            );
            qb.push_bind(id.uuid());
            if let Some(c) = cursor {
                qb.push(" AND d.id < ").push_bind(c);
            }
            qb.push(" ORDER BY d.id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            let rows: Vec<DeliveryRow> = qb.fetch_all(p).await?;
            let (lo, hi) = (
                rows.iter().map(|r| r.id).min().unwrap_or(0),
                rows.iter().map(|r| r.id).max().unwrap_or(-1),
            );
            let attempts = sql(
                "SELECT a.delivery_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms \
                 FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
                 WHERE d.webhook_id = $1 AND a.delivery_id >= $2 AND a.delivery_id <= $3 \
                 ORDER BY a.delivery_id, a.attempt",
            )
            .bind(id.uuid())
            .bind(lo)
            .bind(hi)
            .fetch_all(p)
            .await?;
            (rows, attempts)
        };
        let deliveries = rows
            .into_iter()
            .map(|r| {
                Ok(Delivery {
                    attempt_log: attempts
                        .iter()
                        .filter(|a| a.delivery_id == r.id)
                        .map(|a| DeliveryAttempt {
                            attempt: a.attempt,
                            at: a.at,
                            status_code: a.status_code,
                            error: a.error.clone(),
                            duration_ms: a.duration_ms,
                        })
                        .collect(),
                    id: r.id,
                    webhook_id: WebhookId::from_uuid(r.webhook_id),
                    event_id: EventId::from_uuid(r.event_id),
                    event_type: r.event_type,
                    status: DeliveryStatus::parse(&r.status)
                        .ok_or_else(|| decode_error("delivery status", &r.status))?,
                    attempts: r.attempts,
                    next_attempt_at: r.next_attempt_at,
                    last_status: r.last_status,
                    last_error: r.last_error,
                    created_at: r.created_at,
                    delivered_at: r.delivered_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(deliveries, &page, |d: &Delivery| d.id.to_string()))
    }

    async fn fan_out_webhooks(&self, limit: i64) -> Result<u64> {
        self.db.sealed().await?;
        let at = now();
        let skip = self.skip_locked_clause();
        {
            let mut tx = self.db.begin().await?;
            let hooks: Vec<(Uuid, Json<Vec<String>>, Option<Uuid>, i64)> = sql(format!(
                "SELECT id, event_types, client_id, cursor FROM webhooks \
                 WHERE disabled_at IS NULL \
                 AND cursor < (SELECT COALESCE(max(seq), 0) FROM events) \
                 ORDER BY id{skip}"
            ))
            .fetch_all(&mut tx)
            .await?;
            let mut made = 0u64;
            for (hook, types, client, cursor) in hooks {
                let events: Vec<(i64, String, Option<Uuid>, String)> = sql(
                    "SELECT seq, type, client_id, subject FROM events WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(cursor)
                .bind(limit.clamp(1, 10_000))
                .fetch_all(&mut tx)
                .await?;
                let Some(last) = events.last().map(|e| e.0) else {
                    continue;
                };
                // A subscription is told of what happens after its creation,
                // not of its own creation.
                let itself = WebhookId::from_uuid(hook).to_string();
                for (seq, ty, ev_client, subject) in &events {
                    let wanted = types.0.is_empty() || types.0.iter().any(|t| t == ty || t == "*");
                    let of_client = client.is_none() || client == *ev_client;
                    let own_creation = ty == "webhook.created" && *subject == itself;
                    if wanted && of_client && !own_creation {
                        sql(
                            "INSERT INTO webhook_deliveries (webhook_id, event_seq, status, attempts, \
                             next_attempt_at, created_at) VALUES ($1, $2, 'pending', 0, $3, $3) \
                             ON CONFLICT (webhook_id, event_seq) DO NOTHING",
                        )
                        .bind(hook)
                        .bind(seq)
                        .bind(at)
                        .execute(&mut tx)
                        .await?;
                        made += 1;
                    }
                }
                sql("UPDATE webhooks SET cursor = $2 WHERE id = $1")
                    .bind(hook)
                    .bind(last)
                    .execute(&mut tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(made)
        }
    }

    async fn claim_deliveries(
        &self,
        now_at: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>> {
        let skip = self.skip_locked_clause();
        let rows: Vec<JobRow> = {
            let mut tx = self.db.begin().await?;
            let ids: Vec<(i64,)> = sql(format!(
                "UPDATE webhook_deliveries SET locked_until = $2 WHERE id IN ( \
                   SELECT id FROM webhook_deliveries WHERE status = 'pending' \
                   AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) \
                   ORDER BY next_attempt_at, id LIMIT $3{skip}) RETURNING id"
            ))
            .bind(now_at)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut tx)
            .await?;
            let mut jobs = Vec::with_capacity(ids.len());
            for (id,) in ids {
                let job: JobRow = sql(
                    "SELECT d.id AS delivery_id, w.url, w.secret, d.attempts, \
                     e.seq, e.id, e.type, e.subject, e.time, e.client_id, e.audience, e.data, e.trace_id \
                     FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                     JOIN events e ON e.seq = d.event_seq WHERE d.id = $1"
                )
                .bind(id)
                .fetch_one(&mut tx)
                .await?;
                jobs.push(job);
            }
            tx.commit().await?;
            jobs
        };
        rows.into_iter()
            .map(|r| {
                Ok(DeliveryJob {
                    delivery_id: r.delivery_id,
                    url: r.url,
                    secret: r.secret,
                    attempts: r.attempts,
                    event: r.event.try_into()?,
                })
            })
            .collect()
    }

    async fn finish_delivery(&self, delivery_id: i64, outcome: AttemptOutcome) -> Result<()> {
        {
            let mut tx = self.db.begin().await?;
            let (attempts,): (i64,) = sql(format!(
                "SELECT attempts FROM webhook_deliveries WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(delivery_id)
            .fetch_one(&mut tx)
            .await?;
            let attempt = attempts + 1;
            sql(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(delivery_id)
            .bind(attempt)
            .bind(outcome.at)
            .bind(outcome.status_code)
            .bind(&outcome.error)
            .bind(outcome.duration_ms)
            .execute(&mut tx)
            .await?;
            let status = if outcome.delivered {
                DeliveryStatus::Delivered
            } else if outcome.retry_at.is_some() {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Failed
            };
            sql(
                "UPDATE webhook_deliveries SET attempts = $2, status = $3, next_attempt_at = $4, \
                 locked_until = NULL, last_status = $5, last_error = $6, delivered_at = $7 WHERE id = $1",
            )
            .bind(delivery_id)
            .bind(attempt)
            .bind(status.as_str())
            .bind(if outcome.delivered { None } else { outcome.retry_at })
            .bind(outcome.status_code)
            .bind(&outcome.error)
            .bind(outcome.delivered.then_some(outcome.at))
            .execute(&mut tx)
            .await?;
            tx.commit().await?;
        };
        Ok(())
    }

    async fn event_cursor(&self, name: &str) -> Result<i64> {
        self.db.sealed().await?;
        {
            let p = &mut self.db.writer();
            // A new consumer starts at the newest event: it does not replay history.
            sql("INSERT INTO event_cursors (name, seq) \
                 SELECT $1, COALESCE(max(seq), 0) FROM events WHERE true \
                 ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(p)
            .await?;
            let (seq,): (i64,) = sql("SELECT seq FROM event_cursors WHERE name = $1")
                .bind(name)
                .fetch_one(p)
                .await?;
            Ok(seq)
        }
    }

    async fn enqueue_mail(
        &self,
        name: &str,
        from_seq: i64,
        to_seq: i64,
        mails: Vec<NewMail>,
        sendable: bool,
    ) -> Result<bool> {
        let at = now();
        let (status, why, next) = if sendable {
            ("pending", None, Some(at))
        } else {
            (
                "unsent",
                Some("no SMTP relay is configured (smtp_url); the mail is kept in the outbox"),
                None,
            )
        };
        {
            let mut tx = self.db.begin().await?;
            let moved = sql("UPDATE event_cursors SET seq = $3 WHERE name = $1 AND seq = $2")
                .bind(name)
                .bind(from_seq)
                .bind(to_seq)
                .execute(&mut tx)
                .await?;
            if moved != 1 {
                return Ok(false);
            }
            for m in &mails {
                sql(
                    "INSERT INTO mail_outbox (event_seq, recipient, subject, body, status, attempts, \
                     next_attempt_at, last_error, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8)",
                )
                .bind(m.event_seq)
                .bind(&m.recipient)
                .bind(&m.subject)
                .bind(&m.body)
                .bind(status)
                .bind(next)
                .bind(why)
                .bind(at)
                .execute(&mut tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
    }

    async fn list_mail(&self, page: PageRequest) -> Result<Page<Mail>> {
        let cursor = number_cursor(&page)?;
        let mut q = sql(
            "SELECT id, recipient, subject, body, status, attempts, last_error, created_at, sent_at \
             FROM mail_outbox WHERE 1 = 1",
        );
        if let Some(c) = cursor {
            q.push(" AND id < ").push_bind(c);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_plus_one(&page));
        let rows: Vec<OutboxRow> = q.fetch_all(&mut self.db.reader()).await?;
        let mails = rows
            .into_iter()
            .map(|r| Mail {
                id: r.id,
                recipient: r.recipient,
                subject: r.subject,
                body: r.body,
                status: r.status,
                attempts: r.attempts,
                last_error: r.last_error,
                created_at: r.created_at,
                sent_at: r.sent_at,
            })
            .collect();
        Ok(paginate(mails, &page, |m: &Mail| m.id.to_string()))
    }

    async fn claim_mail(
        &self,
        now_at: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<MailJob>> {
        let skip = self.skip_locked_clause();
        let rows: Vec<MailRow> = sql(format!(
            "UPDATE mail_outbox SET locked_until = $2 WHERE id IN ( \
                   SELECT id FROM mail_outbox WHERE status = 'pending' \
                   AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) \
                   ORDER BY id LIMIT $3{skip}) \
                 RETURNING id, recipient, subject, body, attempts"
        ))
        .bind(now_at)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&mut self.db.writer())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| MailJob {
                id: r.id,
                recipient: r.recipient,
                subject: r.subject,
                body: r.body,
                attempts: r.attempts,
            })
            .collect())
    }

    async fn finish_mail(
        &self,
        id: i64,
        error: Option<String>,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<()> {
        let at = now();
        let status = match (&error, retry_at) {
            (None, _) => "sent",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        };
        sql(
            "UPDATE mail_outbox SET status = $2, attempts = attempts + 1, next_attempt_at = $3, \
                 locked_until = NULL, last_error = $4, sent_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(if error.is_some() { retry_at } else { None })
        .bind(&error)
        .bind(error.is_none().then_some(at))
        .execute(&mut self.db.writer())
        .await?;
        Ok(())
    }
}
