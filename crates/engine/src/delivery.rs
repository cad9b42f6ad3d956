//! Background delivery of events: signed webhooks with retries, and mail.
//!
//! [`run`] is one loop, safe to run in any number of processes against the same
//! database (every step claims its rows, `FOR UPDATE SKIP LOCKED` on PostgreSQL):
//!
//! 1. **Fan out**: new events become pending deliveries, one per subscription
//!    that wants them; each subscription's cursor moves in the same transaction,
//!    so an event is never turned into a delivery twice nor skipped.
//! 2. **Deliver**: due deliveries are claimed under a lease (60 s plus the
//!    request timeout) and POSTed concurrently: the body is the CloudEvent's
//!    JSON bytes exactly as signed, with the Standard Webhooks headers
//!    (`webhook-id` = the event id, the same on every retry, so receivers can
//!    drop duplicates). A 2xx answer is delivered; anything else is retried
//!    after [`backoff`], until `max_attempts`, then the delivery is `failed`.
//!    Every attempt is kept in the delivery log.
//! 3. **Mail**: events are read with the cursor `mail`, composed into
//!    messages, and queued atomically with the cursor's move
//!    ([`LogStore::enqueue_mail`]); with an SMTP URL set, queued mail is then
//!    claimed and sent, with retries; without one it is kept in the outbox as
//!    `unsent`, for admins to read (`GET /api/v1/mail`).
//!
//! Then it sleeps until the next accepted write on this server (the
//! `changes` signal the server bumps), the next retry that is due, the poll interval (for
//! other servers' writes), or shutdown. On shutdown it finishes the attempts in
//! flight (each bounded by the request timeout) and records them, so a stop and
//! a restart neither lose nor repeat a delivery.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use waymark_domain::review;
use waymark_domain::webhook::{self, WebhookSecret};
use waymark_domain::{ArtifactId, ClientId, ReviewLinkId};
use waymark_store::{
    AttemptOutcome, DeliveryJob, Event, EventScope, MailJob, NewMail, PageRequest, Role, Store,
    StoreError, UserFilter,
};

use crate::error_chain;
use crate::mail::{MailError, Mailer};

/// How the delivery loop behaves.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts per webhook delivery before it is `failed`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each one.
    pub backoff_base: Duration,
    /// The longest wait between attempts (before jitter).
    pub backoff_max: Duration,
    /// How long a receiver may take to answer.
    pub request_timeout: Duration,
    /// How often to look for work written by other servers.
    pub poll: Duration,
    /// The SMTP relay (see [`Mailer::from_url`]); no mail when absent.
    pub smtp_url: Option<String>,
    /// The sender of mail, `Name <addr@host>`.
    pub mail_from: String,
    /// The address people reach the server at: links in mail, and the
    /// `source` of delivered events.
    pub public_url: String,
    /// The `User-Agent` of webhook POSTs: `waymark/<version>`.
    pub user_agent: String,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            smtp_url: None,
            mail_from: "Waymark <waymark@localhost>".into(),
            public_url: "http://127.0.0.1:8080".into(),
            user_agent: concat!("waymark/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// Attempts per mail before it is given up.
pub const MAIL_MAX_ATTEMPTS: u32 = 8;
/// The name of the outbox cursor mail is composed from.
pub const MAIL_CURSOR: &str = "mail";
/// Deliveries claimed (and attempted concurrently) at once.
const DELIVERY_BATCH: i64 = 32;
/// Mails claimed at once.
const MAIL_BATCH: i64 = 16;
/// Events read per subscription per fan-out round.
const FAN_OUT_BATCH: i64 = 1000;
/// Events read per round for mail.
const EVENT_BATCH: i64 = 200;
/// Rounds of one step per pass before the loop looks at shutdown again.
const MAX_ROUNDS: usize = 20;
/// How long a claim lasts beyond the request timeout.
const LEASE: Duration = Duration::from_secs(60);
/// The longest an SMTP exchange takes (see `mail.rs`).
const MAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait before attempt `attempt + 1`, after `attempt` failed (1 for the
/// first): `min(base · 2^(attempt-1), max)`, then moved by up to ±20 % by
/// `jitter_fraction` (in `[-1, 1]`; values outside are clamped, NaN is 0), so
/// receivers that fail together are not retried together.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter_fraction: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(62) as i32;
    let raw = (base.as_secs_f64() * 2f64.powi(exponent)).min(max.as_secs_f64());
    let jitter = if jitter_fraction.is_nan() {
        0.0
    } else {
        jitter_fraction.clamp(-1.0, 1.0)
    };
    Duration::try_from_secs_f64(raw * (1.0 + 0.2 * jitter)).unwrap_or(max)
}

/// A random jitter fraction in `[-1, 1)`.
fn jitter() -> f64 {
    rand::random::<f64>() * 2.0 - 1.0
}

/// `now + d`, saturating.
fn after(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    now.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
        .unwrap_or(now)
}

/// What one pass left for later.
#[derive(Debug, Default)]
struct Pass {
    /// More work may be waiting now: go again without sleeping.
    busy: bool,
    /// The earliest retry scheduled by this pass.
    next_retry: Option<OffsetDateTime>,
}

impl Pass {
    fn retry_at(&mut self, at: OffsetDateTime) {
        self.next_retry = Some(self.next_retry.map_or(at, |n| n.min(at)));
    }
}

/// Runs deliveries until `shutdown` resolves; see the module docs.
///
/// `changes` is bumped after every accepted change, so a new event is delivered at once, not at the next
/// poll.
pub async fn run(
    store: Arc<dyn Store>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    settings: DeliverySettings,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let worker = match Worker::new(store, settings) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "delivery: cannot start");
            return;
        }
    };
    loop {
        let pass = worker.pass().await;
        if pass.busy {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = std::future::ready(()) => continue,
            }
        }
        let mut wait = worker.settings.poll;
        if let Some(at) = pass.next_retry {
            let until = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            wait = wait.min(Duration::try_from(until).unwrap_or(Duration::ZERO));
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("delivery: stopped");
}

/// The loop's state: the HTTP client, the mailer, the settings.
struct Worker {
    store: Arc<dyn Store>,
    settings: DeliverySettings,
    http: reqwest::Client,
    mailer: Option<Mailer>,
    source: String,
}

impl Worker {
    fn new(store: Arc<dyn Store>, settings: DeliverySettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(settings.user_agent.clone())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))?;
        // A bad SMTP setting stops mail, not webhooks (`waymark serve` checks
        // it before starting).
        let mailer = settings.smtp_url.as_deref().and_then(|url| {
            Mailer::from_url(url, &settings.mail_from)
                .inspect_err(|e| {
                    tracing::error!(error = %error_chain(e), "delivery: mail is not set up; no mail will be sent")
                })
                .ok()
        });
        Ok(Self {
            source: settings.public_url.trim_end_matches('/').to_owned(),
            store,
            settings,
            http,
            mailer,
        })
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// One pass over every step; a step that fails is logged and retried at
    /// the next pass.
    async fn pass(&self) -> Pass {
        let mut pass = Pass::default();
        if let Err(e) = self.fan_out(&mut pass).await {
            tracing::warn!(error = %error_chain(&e), "delivery: fanning out events failed");
        }
        if let Err(e) = self.deliver(&mut pass).await {
            tracing::warn!(error = %error_chain(&e), "delivery: webhook deliveries failed");
        }
        // Mail is composed whether or not it can be sent: without an SMTP
        // relay it is kept in the outbox (`unsent`) for admins to read.
        if let Err(e) = self.compose_mail(&mut pass).await {
            tracing::warn!(error = %e, "delivery: composing mail failed");
        }
        if let Some(mailer) = &self.mailer
            && let Err(e) = self.send_mail(mailer, &mut pass).await
        {
            tracing::warn!(error = %error_chain(&e), "delivery: sending mail failed");
        }
        pass
    }

    /// Turns new events into pending deliveries.
    async fn fan_out(&self, pass: &mut Pass) -> Result<(), StoreError> {
        for round in 0.. {
            let made = self.store().fan_out_webhooks(FAN_OUT_BATCH).await?;
            if made == 0 {
                break;
            }
            if round + 1 == MAX_ROUNDS {
                pass.busy = true;
                break;
            }
        }
        Ok(())
    }

    /// Claims due deliveries and attempts them, concurrently.
    async fn deliver(&self, pass: &mut Pass) -> Result<(), StoreError> {
        for _ in 0..MAX_ROUNDS {
            let now = OffsetDateTime::now_utc();
            let lease = after(now, LEASE + self.settings.request_timeout);
            let jobs = self
                .store()
                .claim_deliveries(now, lease, DELIVERY_BATCH)
                .await?;
            let full = jobs.len() as i64 == DELIVERY_BATCH;
            let outcomes =
                futures::future::join_all(jobs.into_iter().map(|job| self.attempt(job))).await;
            for (id, outcome) in outcomes {
                if let Some(at) = outcome.retry_at {
                    pass.retry_at(at);
                }
                self.store().finish_delivery(id, outcome).await?;
            }
            if !full {
                return Ok(());
            }
        }
        pass.busy = true;
        Ok(())
    }

    /// One attempt: POST the signed CloudEvent, and what follows from the answer.
    async fn attempt(&self, job: DeliveryJob) -> (i64, AttemptOutcome) {
        let attempt = u32::try_from(job.attempts + 1).unwrap_or(u32::MAX);
        let started = Instant::now();
        let at = OffsetDateTime::now_utc();
        let result = self.post(&job, at).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (status_code, error) = match result {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (
                Some(status),
                Some(format!("the receiver answered HTTP {status}")),
            ),
            Err(e) => (None, Some(e)),
        };
        let delivered = error.is_none();
        let retry_at = if delivered || attempt >= self.settings.max_attempts {
            None
        } else {
            let wait = backoff(
                attempt,
                self.settings.backoff_base,
                self.settings.backoff_max,
                jitter(),
            );
            Some(after(OffsetDateTime::now_utc(), wait))
        };
        let outcome = match (delivered, retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "retry",
            (false, None) => "failed",
        };
        metrics::counter!("waymark_webhook_attempts_total", "outcome" => outcome).increment(1);
        if let Some(e) = &error {
            tracing::info!(
                delivery = job.delivery_id,
                event = %job.event.id,
                attempt,
                outcome,
                error = %e,
                "webhook attempt failed"
            );
        }
        (
            job.delivery_id,
            AttemptOutcome {
                at,
                status_code: status_code.map(i64::from),
                error,
                duration_ms,
                delivered,
                retry_at,
            },
        )
    }

    /// POSTs the event; answers the receiver's status, or why there was none.
    async fn post(&self, job: &DeliveryJob, at: OffsetDateTime) -> Result<u16, String> {
        let secret = WebhookSecret::parse(&job.secret)
            .map_err(|e| format!("the subscription's secret is unusable: {e}"))?;
        let body = serde_json::to_vec(&job.event.cloudevent(&self.source))
            .map_err(|e| format!("cannot render the event: {e}"))?;
        let msg_id = job.event.id.to_string();
        let timestamp = at.unix_timestamp();
        let signature =
            webhook::sign(&secret, &msg_id, timestamp, &body).map_err(|e| e.to_string())?;
        let res = self
            .http
            .post(&job.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::HEADER_ID, &msg_id)
            .header(webhook::HEADER_TIMESTAMP, timestamp.to_string())
            .header(webhook::HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!(
                        "no answer within {} s",
                        self.settings.request_timeout.as_secs_f64()
                    )
                } else {
                    error_chain(&e)
                }
            })?;
        Ok(res.status().as_u16())
    }

    /// Reads new events with the `mail` cursor and queues the mail they call for.
    async fn compose_mail(&self, pass: &mut Pass) -> Result<(), String> {
        let store = self.store();
        let db = |e: StoreError| error_chain(&e);
        for _ in 0..MAX_ROUNDS {
            let from = store.event_cursor(MAIL_CURSOR).await.map_err(db)?;
            let events = store
                .events_after(from, EventScope::All, EVENT_BATCH)
                .await
                .map_err(db)?;
            let Some(to) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            let mut mails = vec![];
            for event in &events {
                mails.extend(self.compose(event).await?);
            }
            if !store
                .enqueue_mail(MAIL_CURSOR, from, to, mails, self.mailer.is_some())
                .await
                .map_err(db)?
            {
                // Another process took these events: read on from where it left.
                continue;
            }
            if (events.len() as i64) < EVENT_BATCH {
                return Ok(());
            }
        }
        pass.busy = true;
        Ok(())
    }

    /// The mail an event calls for (none for most).
    async fn compose(&self, event: &Event) -> Result<Vec<NewMail>, String> {
        let composed = match event.event_type.as_str() {
            "artifact.shared" => self.mail_shared(event).await,
            "review_link.created" => self.mail_review_link(event).await,
            "token.created" => self.mail_sign_in_link(event).await,
            "comment.created" => self.mail_comment(event).await,
            "artifact.approved" => self.mail_decision(event, true).await,
            "artifact.rejected" => self.mail_decision(event, false).await,
            "queue.escalated" => self.mail_escalated(event).await,
            _ => Ok(vec![]),
        };
        match composed {
            Ok(mails) => Ok(mails
                .into_iter()
                .filter(|m| deliverable(&m.recipient))
                .collect()),
            // The record is gone (or the event is malformed): nobody to tell.
            Err(StoreError::NotFound { .. }) => Ok(vec![]),
            Err(e) => Err(error_chain(&e)),
        }
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.source)
    }

    /// `artifact.shared`: every client user of the client.
    async fn mail_shared(&self, event: &Event) -> Result<Vec<NewMail>, StoreError> {
        let Some(client) = event_client(event) else {
            return Ok(vec![]);
        };
        let d = &event.data;
        let title = text(d, "title").unwrap_or("A document");
        let artifact = text(d, "artifact_id").unwrap_or(&event.subject);
        let message = text(d, "message")
            .or_else(|| text(d, "reason"))
            .filter(|m| !m.trim().is_empty());
        let client_name = self.store().get_client(client).await?.name;
        let mut mails = vec![];
        let mut cursor = None;
        loop {
            let page = self
                .store()
                .list_users(
                    UserFilter {
                        client_id: Some(client),
                        role: Some(Role::Client),
                    },
                    PageRequest { limit: 200, cursor },
                )
                .await?;
            for user in page.items {
                let mut body = format!(
                    "Hello {},\n\n\"{title}\" is ready for your review{}.\n",
                    user.name,
                    version_note(d)
                );
                if let Some(m) = message {
                    body.push_str(&format!("\nThe team wrote:\n\n{}\n", quote(m)));
                }
                body.push_str(&format!(
                    "\nRead it, comment on any part of it, and approve it or ask for changes here:\n\n\
                     {}\n\n\
                     You are receiving this because you review documents for {client_name} in Waymark.\n",
                    self.link(&format!("/artifacts/{artifact}"))
                ));
                mails.push(NewMail {
                    event_seq: event.seq,
                    recipient: user.email,
                    subject: format!("{title} is ready for your review"),
                    body,
                });
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(mails)
    }

    /// `queue.escalated`: the person a playbook was handed to.
    async fn mail_escalated(&self, event: &Event) -> Result<Vec<NewMail>, StoreError> {
        let d = &event.data;
        let Some(to) = text(d, "to").and_then(|u| u.parse::<waymark_domain::UserId>().ok()) else {
            return Ok(vec![]);
        };
        let user = self.store().get_user(to).await?;
        let client = match event_client(event) {
            Some(c) => self.store().get_client(c).await?.name,
            None => "a client".into(),
        };
        let what = text(d, "name")
            .or_else(|| text(d, "template"))
            .unwrap_or("A playbook");
        let link = match text(d, "journey_id") {
            Some(j) => self.link(&format!("/journeys/{j}")),
            None => self.link("/queue"),
        };
        let mut body = format!(
            "Hello {},\n\n{what} for {client} was escalated to you.\n",
            user.name
        );
        if let Some(reason) = text(d, "reason").filter(|r| !r.trim().is_empty()) {
            body.push_str(&format!("\nThe reason given:\n\n{}\n", quote(reason)));
        }
        body.push_str(&format!(
            "\nIt is now in your queue:\n\n{link}\n\n\
             You are receiving this because a playbook in Waymark was handed to you.\n"
        ));
        Ok(vec![NewMail {
            event_seq: event.seq,
            recipient: user.email,
            subject: format!("Escalated to you: {what} for {client}"),
            body,
        }])
    }

    /// `token.created` of a sign-in link: its person, with the link (the
    /// secret is derived from the token's id under the link key, never stored).
    async fn mail_sign_in_link(&self, event: &Event) -> Result<Vec<NewMail>, StoreError> {
        let d = &event.data;
        if text(d, "kind") != Some("sign_in_link") {
            return Ok(vec![]);
        }
        let (Some(id), Some(user), Some(expires)) = (
            text(d, "token_id").and_then(|i| i.parse::<waymark_domain::TokenId>().ok()),
            text(d, "user_id").and_then(|u| u.parse::<waymark_domain::UserId>().ok()),
            text(d, "expires_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        ) else {
            return Ok(vec![]);
        };
        let user = self.store().get_user(user).await?;
        let key = self.store().server_key(review::LINK_KEY).await?;
        let link = waymark_domain::signin::sign(&key, id, expires);
        let body = format!(
            "Hello {},\n\n             Someone (we hope you) asked to sign in to Waymark with this address.              This link signs you in once, within 15 minutes:\n\n             {}\n\n             If it was not you, ignore this mail: nothing happens without the link.\n",
            user.name,
            self.link(&format!("/login/link/{link}"))
        );
        Ok(vec![NewMail {
            event_seq: event.seq,
            recipient: user.email,
            subject: "Your Waymark sign-in link".into(),
            body,
        }])
    }

    /// `review_link.created`: the reviewer, with their personal link.
    async fn mail_review_link(&self, event: &Event) -> Result<Vec<NewMail>, StoreError> {
        let d = &event.data;
        let (Some(id), Some(email), Some(expires)) = (
            text(d, "review_link_id").and_then(|i| i.parse::<ReviewLinkId>().ok()),
            text(d, "reviewer_email"),
            text(d, "expires_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        ) else {
            return Ok(vec![]);
        };
        let title = text(d, "title").unwrap_or("A document");
        let name = text(d, "reviewer_name").unwrap_or("there");
        let key = self.store().server_key(review::LINK_KEY).await?;
        let token = review::sign_link(&key, id, expires);
        let until = expires.date();
        let body = format!(
            "Hello {name},\n\n\
             You have been asked to review \"{title}\". You can read it, comment on it, and \
             approve it or ask for changes; no account is needed:\n\n\
             {}\n\n\
             The link is personal to you: please do not forward it. It works until {until} (UTC).\n",
            self.link(&format!("/review/{token}"))
        );
        Ok(vec![NewMail {
            event_seq: event.seq,
            recipient: email.to_owned(),
            subject: format!("Please review: {title}"),
            body,
        }])
    }

    /// `comment.created` by someone outside the team, not internal: the client's owner.
    async fn mail_comment(&self, event: &Event) -> Result<Vec<NewMail>, StoreError> {
        let d = &event.data;
        let internal = d.get("internal").and_then(|v| v.as_bool()).unwrap_or(true);
        if internal || text(d, "author_kind").is_none_or(|k| k == "staff") {
            return Ok(vec![]);
        }
        let Some(owner) = self.owner_of(event).await? else {
            return Ok(vec![]);
        };
        let Some(artifact) = text(d, "artifact_id").and_then(|a| a.parse::<ArtifactId>().ok())
        else {
            return Ok(vec![]);
        };
        let title = self.store().get_artifact(artifact).await?.summary.title;
        let author = text(d, "author_name").unwrap_or("A reviewer");
        let on = match text(d, "section") {
            Some(s) if !s.is_empty() => format!(" (on {s})"),
            _ => String::new(),
        };
        let reply = if d.get("parent_id").is_some_and(|p| !p.is_null()) {
            "replied to a comment"
        } else {
            "commented"
        };
        let body = format!(
            "Hello,\n\n{author} {reply} on \"{title}\"{on}:\n\n{}\n\n\
             Answer or resolve it here:\n\n{}\n",
            quote(text(d, "body").unwrap_or("")),
            self.link(&format!("/artifacts/{artifact}"))
        );
        Ok(vec![NewMail {
            event_seq: event.seq,
            recipient: owner,
            subject: format!("{author} commented on {title}"),
            body,
        }])
    }

    /// `artifact.approved` / `artifact.rejected`: the client's owner.
    async fn mail_decision(
        &self,
        event: &Event,
        approved: bool,
    ) -> Result<Vec<NewMail>, StoreError> {
        let Some(owner) = self.owner_of(event).await? else {
            return Ok(vec![]);
        };
        let d = &event.data;
        let title = text(d, "title").unwrap_or("A document");
        let artifact = text(d, "artifact_id").unwrap_or(&event.subject);
        let url = self.link(&format!("/artifacts/{artifact}"));
        let (subject, body) = if approved {
            let by = text(d, "approver_name")
                .map(|n| format!(" by {n}"))
                .unwrap_or_default();
            (
                format!("{title} was approved"),
                format!(
                    "Hello,\n\n\"{title}\"{} was approved{by}. Anything built on it is now \
                     unlocked.\n\n{url}\n",
                    version_note(d)
                ),
            )
        } else {
            let by = text(d, "rejected_by_name")
                .map(|n| format!(" by {n}"))
                .unwrap_or_default();
            let reason = text(d, "reason").unwrap_or("(no reason given)");
            (
                format!("{title} needs changes"),
                format!(
                    "Hello,\n\n\"{title}\"{} was rejected{by} and is back in draft. The reason \
                     given:\n\n{}\n\nRevise it and share it again here:\n\n{url}\n",
                    version_note(d),
                    quote(reason)
                ),
            )
        };
        Ok(vec![NewMail {
            event_seq: event.seq,
            recipient: owner,
            subject,
            body,
        }])
    }

    /// The owner of the event's client, when it is an email address.
    async fn owner_of(&self, event: &Event) -> Result<Option<String>, StoreError> {
        let Some(client) = event_client(event) else {
            return Ok(None);
        };
        let owner = self.store().get_client(client).await?.owner;
        Ok(owner.filter(|o| o.contains('@')))
    }

    /// Claims queued mail and sends it.
    async fn send_mail(&self, mailer: &Mailer, pass: &mut Pass) -> Result<(), StoreError> {
        for _ in 0..MAX_ROUNDS {
            let now = OffsetDateTime::now_utc();
            let jobs = self
                .store()
                .claim_mail(now, after(now, LEASE + MAIL_TIMEOUT), MAIL_BATCH)
                .await?;
            let full = jobs.len() as i64 == MAIL_BATCH;
            let sent = futures::future::join_all(jobs.into_iter().map(|job| async move {
                let result = mailer.send(&job.recipient, &job.subject, &job.body).await;
                (job, result)
            }))
            .await;
            for (job, result) in sent {
                self.finish_mail(job, result, pass).await?;
            }
            if !full {
                return Ok(());
            }
        }
        pass.busy = true;
        Ok(())
    }

    async fn finish_mail(
        &self,
        job: MailJob,
        result: Result<(), MailError>,
        pass: &mut Pass,
    ) -> Result<(), StoreError> {
        let attempt = u32::try_from(job.attempts + 1).unwrap_or(u32::MAX);
        let (error, retry_at) = match result {
            Ok(()) => (None, None),
            Err(e) => {
                let permanent = matches!(e, MailError::InvalidRecipient { .. });
                let retry_at = (!permanent && attempt < MAIL_MAX_ATTEMPTS).then(|| {
                    let wait = backoff(
                        attempt,
                        self.settings.backoff_base,
                        self.settings.backoff_max,
                        jitter(),
                    );
                    after(OffsetDateTime::now_utc(), wait)
                });
                tracing::warn!(mail = job.id, attempt, error = %error_chain(&e), "sending mail failed");
                (Some(error_chain(&e)), retry_at)
            }
        };
        if let Some(at) = retry_at {
            pass.retry_at(at);
        }
        self.store().finish_mail(job.id, error, retry_at).await
    }
}

/// A string field of event data.
fn text<'a>(data: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(|v| v.as_str())
}

/// The client an event is about.
fn event_client(event: &Event) -> Option<ClientId> {
    event
        .client_id
        .or_else(|| text(&event.data, "client_id").and_then(|c| c.parse().ok()))
}

/// ` (version N)` when the event names a version.
fn version_note(data: &serde_json::Value) -> String {
    data.get("version")
        .and_then(|v| v.as_i64())
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default()
}

/// Text indented as a quotation.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether an address can be mailed at all (a bad one would only fail every retry).
fn deliverable(address: &str) -> bool {
    address.parse::<lettre::message::Mailbox>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn backoff_doubles_from_the_base() {
        assert_eq!(backoff(1, BASE, MAX, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(2, BASE, MAX, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(3, BASE, MAX, 0.0), Duration::from_secs(20));
        assert_eq!(backoff(8, BASE, MAX, 0.0), Duration::from_secs(640));
        // Attempt 0 is treated as the first.
        assert_eq!(backoff(0, BASE, MAX, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(11, BASE, MAX, 0.0), MAX);
        assert_eq!(backoff(u32::MAX, BASE, MAX, 0.0), MAX);
        assert_eq!(
            backoff(u32::MAX, Duration::MAX, Duration::MAX, 1.0),
            Duration::MAX
        );
        let mut prev = Duration::ZERO;
        for attempt in 1..100 {
            let d = backoff(attempt, BASE, MAX, 0.0);
            assert!(d >= prev && d <= MAX, "attempt {attempt}: {d:?}");
            prev = d;
        }
    }

    #[test]
    fn jitter_moves_by_at_most_a_fifth() {
        assert_eq!(backoff(2, BASE, MAX, 1.0), Duration::from_secs(12));
        assert_eq!(backoff(2, BASE, MAX, -1.0), Duration::from_secs(8));
        assert_eq!(backoff(20, BASE, MAX, 1.0), MAX.mul_f64(1.2));
        // Out-of-range fractions are clamped, NaN is no jitter.
        assert_eq!(backoff(2, BASE, MAX, 7.0), Duration::from_secs(12));
        assert_eq!(backoff(2, BASE, MAX, f64::NAN), Duration::from_secs(10));
        for _ in 0..1000 {
            let d = backoff(3, BASE, MAX, jitter());
            assert!(
                d >= Duration::from_secs(16) && d <= Duration::from_secs(24),
                "{d:?}"
            );
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(quote("a\nb"), "    a\n    b");
        assert!(deliverable("ana@client.example"));
        assert!(deliverable("Ana <ana@client.example>"));
        assert!(!deliverable("Ana Owner"));
        assert_eq!(
            version_note(&serde_json::json!({"version": 3})),
            " (version 3)"
        );
    }
}
