//! The last step of every write: its audit record, chained to the previous
//! one, and its events, appended inside the write's transaction.
//!
//! The log's head row (`log_head`: the last audit sequence number and hash,
//! the last event sequence number) is locked for this (on PostgreSQL; SQLite
//! has one writer), so it comes last, just before commit: numbers are taken in
//! commit order, and an event reader that has seen event n has seen every
//! event before it.

use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;
use waymark_domain::audit::{self, AuditRecord};
use waymark_domain::{ClientId, EventId};

use super::db::{Conn, Dialect, Tx, sql};
use crate::log::{Audience, NewEvent};
use crate::{Result, WriteContext};

/// One audit record and the events of a change (see [`append_logs`]).
pub(crate) struct LogEntry {
    pub(crate) action: &'static str,
    /// The trace of this change when it differs from the writer's (a batch of
    /// task completions carries each task's own).
    pub(crate) trace_id: Option<String>,
    pub(crate) client_id: Option<ClientId>,
    pub(crate) target: String,
    pub(crate) before_hash: Option<String>,
    pub(crate) after_hash: Option<String>,
    pub(crate) events: Vec<NewEvent>,
}

impl LogEntry {
    /// A change to `target` of `client_id`, without content hashes or events.
    pub(crate) fn new(
        action: &'static str,
        client_id: Option<ClientId>,
        target: impl std::fmt::Display,
    ) -> Self {
        Self {
            action,
            trace_id: None,
            client_id,
            target: target.to_string(),
            before_hash: None,
            after_hash: None,
            events: Vec::new(),
        }
    }

    pub(crate) fn hashes(mut self, before: Option<String>, after: Option<String>) -> Self {
        self.before_hash = before;
        self.after_hash = after;
        self
    }

    pub(crate) fn event(
        mut self,
        event_type: &'static str,
        audience: Audience,
        data: Value,
    ) -> Self {
        self.events.push(NewEvent {
            event_type,
            subject: self.target.clone(),
            client_id: self.client_id,
            audience,
            data,
        });
        self
    }
}

/// Microseconds since the Unix epoch: the time an audit record's hash covers.
pub(crate) fn unix_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// Appends the audit record and events of one change (see [`append_logs`]).
pub(crate) async fn append_log(
    tx: &mut Tx,
    ctx: &WriteContext,
    at: OffsetDateTime,
    entry: LogEntry,
) -> Result<()> {
    append_logs(tx, ctx, at, vec![entry]).await
}

/// Appends, inside the transaction, one audit record per change, chained in
/// order, and every event, with multi-row inserts. Locks the log's head row
/// (on PostgreSQL), so it comes last, just before commit.
pub(crate) async fn append_logs(
    tx: &mut Tx,
    ctx: &WriteContext,
    at: OffsetDateTime,
    entries: Vec<LogEntry>,
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let head: (i64, String, i64) = sql(format!(
        "SELECT audit_seq, audit_hash, event_seq FROM log_head WHERE id = 1{}",
        tx.backend().for_update()
    ))
    .fetch_one(tx)
    .await?;
    let mut prev = head.1;
    let mut seq = head.0;
    let mut records = Vec::with_capacity(entries.len());
    let mut events = Vec::new();
    for entry in entries {
        seq += 1;
        let trace_id = entry.trace_id.clone().or_else(|| ctx.trace_id.clone());
        let mut record = AuditRecord {
            seq,
            at_us: unix_micros(at),
            actor: ctx.actor.clone(),
            client_id: entry.client_id.map(|c| c.to_string()),
            action: entry.action.to_string(),
            target: entry.target,
            before_hash: entry.before_hash,
            after_hash: entry.after_hash,
            trace_id: trace_id.clone(),
            prev_hash: prev,
            hash: String::new(),
        };
        record.hash = audit::chain_hash(&record);
        prev = record.hash.clone();
        records.push(record);
        for e in entry.events {
            events.push((e, trace_id.clone()));
        }
    }
    for chunk in records.chunks(500) {
        let mut q = sql(
            "INSERT INTO audit_log (seq, at, actor, client_id, action, target, before_hash, \
             after_hash, trace_id, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.seq)
                .push_bind(at)
                .push_bind(&r.actor)
                .push_bind(&r.client_id)
                .push_bind(&r.action)
                .push_bind(&r.target)
                .push_bind(&r.before_hash)
                .push_bind(&r.after_hash)
                .push_bind(&r.trace_id)
                .push_bind(&r.prev_hash)
                .push_bind(&r.hash);
        });
        q.execute(tx).await?;
    }
    let mut event_seq = head.2;
    let numbered: Vec<(i64, NewEvent, Option<String>)> = events
        .into_iter()
        .map(|(e, t)| {
            event_seq += 1;
            (event_seq, e, t)
        })
        .collect();
    for chunk in numbered.chunks(1000) {
        let mut q = sql(
            "INSERT INTO events (seq, id, type, subject, time, client_id, audience, data, trace_id) ",
        );
        q.push_values(chunk, |mut b, (n, e, t)| {
            b.push_bind(*n)
                .push_bind(EventId::new().uuid())
                .push_bind(e.event_type)
                .push_bind(&e.subject)
                .push_bind(at)
                .push_bind(e.client_id.map(|c| c.uuid()))
                .push_bind(e.audience.as_str())
                .push_bind(Json(&e.data))
                .push_bind(t);
        });
        q.execute(tx).await?;
    }
    sql("UPDATE log_head SET audit_seq = $1, audit_hash = $2, event_seq = $3 WHERE id = 1")
        .bind(seq)
        .bind(&prev)
        .bind(event_seq)
        .execute(tx)
        .await?;
    Ok(())
}
