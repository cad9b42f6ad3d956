//! [`PlaybookStore`] on SQL: the queue, signals, threads; and the two steps a
//! journey's transaction takes on its queue item ([`take_item`],
//! [`follow_journey`]).

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::FromRow;
use sqlx::types::Json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;
use waymark_domain::journey::Event;
use waymark_domain::queue::{Change, Effect, Factor, ItemStatus};
use waymark_domain::{ArtifactId, ClientId, FieldError, JourneyId, QueueItemId, ThreadId};

use super::clients::{CLIENT_COLUMNS, ClientRow};
use super::work::{at, now_us};
use super::*;
use crate::playbook::*;
use crate::{NewObservation, Page, PageRequest};

const ITEM_COLUMNS: &str = "q.id, q.client_id, c.name AS client_name, q.pack, q.template, q.rule, \
     q.status, q.reason, q.score, q.factors, q.due, q.rule_due, q.scheduled, q.owner, q.escalated, \
     q.snoozed_until, q.journey_id, q.stage, q.superseded_by, q.closed_reason, q.outcome, \
     q.created_at, q.updated_at";

/// Items visible in a queue at `$n` (the bound time): see
/// `waymark_domain::queue::visible`.
const VISIBLE: &str =
    "(q.status IN ('open', 'started') OR (q.status = 'snoozed' AND q.snoozed_until <= ";

#[derive(FromRow)]
struct ItemRow {
    id: Uuid,
    client_id: Uuid,
    client_name: String,
    pack: String,
    template: String,
    rule: String,
    status: String,
    reason: String,
    score: f64,
    factors: Json<Vec<Factor>>,
    due: String,
    rule_due: String,
    scheduled: i64,
    owner: Option<String>,
    escalated: i64,
    snoozed_until: Option<i64>,
    journey_id: Option<Uuid>,
    stage: Option<String>,
    superseded_by: Option<String>,
    closed_reason: Option<String>,
    outcome: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl ItemRow {
    fn item(self) -> Result<QueueItem> {
        Ok(QueueItem {
            id: QueueItemId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            client_name: self.client_name,
            pack: self.pack,
            template: self.template,
            rule: self.rule,
            status: self
                .status
                .parse()
                .map_err(|_| decode_error("queue item status", &self.status))?,
            reason: self.reason,
            score: self.score,
            factors: self.factors.0,
            due: waymark_domain::dates::parse(&self.due)
                .ok_or_else(|| decode_error("due date", &self.due))?,
            rule_due: waymark_domain::dates::parse(&self.rule_due)
                .ok_or_else(|| decode_error("due date", &self.rule_due))?,
            scheduled: self.scheduled != 0,
            owner: self.owner,
            escalated: self.escalated != 0,
            snoozed_until: self.snoozed_until.map(at),
            journey_id: self.journey_id.map(JourneyId::from_uuid),
            stage: self.stage,
            superseded_by: self.superseded_by,
            closed_reason: self.closed_reason,
            outcome: self.outcome,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
        })
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The item `item` of `client` takes the new journey `journey` (in the
/// journey's creating transaction): refused when it has one already, is
/// closed, or belongs to another client.
pub(super) async fn take_item(
    tx: &mut Tx,
    item: QueueItemId,
    client: ClientId,
    journey: JourneyId,
    now: i64,
) -> Result<()> {
    let row: Option<(Uuid, String, Option<Uuid>)> = sql(format!(
        "SELECT client_id, status, journey_id FROM queue_items WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(item.uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((owner_client, status, existing)) = row else {
        return Err(not_found("queue item", item));
    };
    if owner_client != client.uuid() {
        return Err(not_found("queue item", item));
    }
    if let Some(j) = existing {
        return Err(StoreError::Conflict(format!(
            "queue item {item} already started its playbook, journey {}",
            JourneyId::from_uuid(j)
        )));
    }
    let status: ItemStatus = status
        .parse()
        .map_err(|_| decode_error("queue item status", &status))?;
    if status.is_final() {
        return Err(StoreError::Conflict(format!(
            "queue item {item} is {}; only an open item starts a playbook",
            status.as_str()
        )));
    }
    sql(
        "UPDATE queue_items SET journey_id = $2, status = 'started', stage = 'pending', \
         snoozed_until = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(item.uuid())
    .bind(journey.uuid())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The journey's queue item follows its transition: it shows the new state,
/// takes a saved action's change, completes with the playbook's outcome, and
/// closes when the playbook is cancelled.
pub(super) async fn follow_journey(
    tx: &mut Tx,
    journey: JourneyId,
    event: Event,
    state: &str,
    outcome: Option<&str>,
    effect: Option<&Effect>,
    now: i64,
) -> Result<()> {
    let mut q = sql("UPDATE queue_items SET stage = ");
    q.push_bind(state.to_owned())
        .push(", updated_at = ")
        .push_bind(now);
    match event {
        Event::Complete => {
            q.push(", status = 'completed', snoozed_until = NULL, outcome = ")
                .push_bind(outcome.map(str::to_owned));
        }
        Event::Cancel => {
            q.push(", status = 'closed', snoozed_until = NULL, closed_reason = 'the playbook was cancelled'");
        }
        _ => {}
    }
    match effect {
        Some(Effect::Snooze { until }) => {
            q.push(", status = 'snoozed', snoozed_until = ")
                .push_bind(micros(*until));
        }
        Some(Effect::Escalate { to }) => {
            q.push(", escalated = 1, owner = ").push_bind(to.clone());
        }
        Some(Effect::Schedule { due }) => {
            q.push(", scheduled = 1, due = ").push_bind(due.to_string());
        }
        Some(Effect::None) | None => {}
    }
    q.push(" WHERE journey_id = ").push_bind(journey.uuid());
    q.execute(&mut *tx).await?;
    Ok(())
}

fn change_name(c: &Change) -> &'static str {
    match c {
        Change::Open(_) => "opened",
        Change::Update { .. } => "updated",
        Change::Reopen { .. } => "reopened",
        Change::Close { .. } => "closed",
        Change::Supersede { .. } => "superseded",
    }
}

async fn item_id_of(
    tx: &mut Tx,
    client: ClientId,
    template: &str,
    rule: &str,
) -> Result<Option<Uuid>> {
    let row: Option<(Uuid,)> =
        sql("SELECT id FROM queue_items WHERE client_id = $1 AND template = $2 AND rule = $3")
            .bind(client.uuid())
            .bind(template)
            .bind(rule)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(row.map(|r| r.0))
}

/// Writes one change of a run; answers the item's id.
async fn write_change(tx: &mut Tx, w: &QueueWrite, now: i64) -> Result<Uuid> {
    match &w.change {
        Change::Open(m) => {
            // A row of this identity exists only when a concurrent run beat
            // this one to it: then this is an update.
            let id = QueueItemId::new().uuid();
            let inserted = sql(
                "INSERT INTO queue_items (id, client_id, pack, template, rule, status, reason, score, \
                 factors, due, rule_due, scheduled, owner, escalated, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $9, 0, $10, 0, $11, $11) \
                 ON CONFLICT (client_id, template, rule) DO NOTHING",
            )
            .bind(id)
            .bind(w.client_id.uuid())
            .bind(&w.pack)
            .bind(&m.template)
            .bind(&m.rule)
            .bind(&m.reason)
            .bind(m.score)
            .bind(Json(&m.factors))
            .bind(m.due.to_string())
            .bind(&w.owner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if inserted == 1 {
                return Ok(id);
            }
            let id = existing(tx, w.client_id, &m.template, &m.rule).await?;
            update_match(tx, id, m, None, &w.owner, now).await?;
            Ok(id)
        }
        Change::Update { m } => {
            let id = existing(tx, w.client_id, &m.template, &m.rule).await?;
            update_match(tx, id, m, None, &w.owner, now).await?;
            Ok(id)
        }
        Change::Reopen { m, status } => {
            let id = existing(tx, w.client_id, &m.template, &m.rule).await?;
            update_match(tx, id, m, Some(*status), &w.owner, now).await?;
            Ok(id)
        }
        Change::Close {
            rule,
            template,
            reason,
        } => {
            let id = existing(tx, w.client_id, template, rule).await?;
            sql("UPDATE queue_items SET status = 'closed', closed_reason = $2, snoozed_until = NULL, \
                 updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(id)
        }
        Change::Supersede { rule, template, by } => {
            let id = existing(tx, w.client_id, template, rule).await?;
            sql(
                "UPDATE queue_items SET status = 'superseded', superseded_by = $2, \
                 snoozed_until = NULL, updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(id)
        }
    }
}

async fn existing(tx: &mut Tx, client: ClientId, template: &str, rule: &str) -> Result<Uuid> {
    item_id_of(tx, client, template, rule)
        .await?
        .ok_or_else(|| {
            StoreError::Conflict(format!(
                "the queue item of client {client}, template {template}, rule {rule} is gone; run the rules again"
            ))
        })
}

/// Takes a match's reason, score, factors and (unless a person scheduled it)
/// due date; `status` when it reopens. The owner follows the client's unless
/// the item was escalated.
async fn update_match(
    tx: &mut Tx,
    id: Uuid,
    m: &waymark_domain::queue::Match,
    status: Option<ItemStatus>,
    owner: &Option<String>,
    now: i64,
) -> Result<()> {
    let mut q = sql("UPDATE queue_items SET reason = ");
    q.push_bind(m.reason.clone())
        .push(", score = ")
        .push_bind(m.score)
        .push(", factors = ")
        .push_bind(Json(m.factors.clone()))
        // A new cycle of a completed item starts afresh: the rule's due
        // date, no journey, no outcome.
        .push(", due = CASE WHEN scheduled = 1 AND status <> 'completed' THEN due ELSE ")
        .push_bind(m.due.to_string())
        .push(" END, rule_due = ")
        .push_bind(m.due.to_string())
        .push(", owner = CASE WHEN escalated = 1 THEN owner ELSE ")
        .push_bind(owner.clone())
        .push(" END, updated_at = ")
        .push_bind(now);
    if let Some(s) = status {
        q.push(
            ", snoozed_until = NULL, superseded_by = NULL, closed_reason = NULL, \
             scheduled = CASE WHEN status = 'completed' THEN 0 ELSE scheduled END, \
             outcome = CASE WHEN status = 'completed' THEN NULL ELSE outcome END, \
             stage = CASE WHEN status = 'completed' THEN NULL ELSE stage END, \
             journey_id = CASE WHEN status = 'completed' THEN NULL ELSE journey_id END, \
             status = ",
        )
        .push_bind(s.as_str());
    }
    q.push(" WHERE id = ").push_bind(id);
    q.execute(&mut *tx).await?;
    Ok(())
}

fn queue_where(q: &mut db::Sql<'_>, filter: &QueueFilter, with_filters: bool) {
    q.push(" WHERE q.owner IN (");
    for (i, o) in filter.owners.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push_bind(o.clone());
    }
    q.push(") AND ")
        .push(VISIBLE)
        .push_bind(micros(filter.now))
        .push("))");
    if with_filters {
        if let Some(t) = &filter.template {
            q.push(" AND q.template = ").push_bind(t.clone());
        }
        if let Some(s) = &filter.stage {
            q.push(" AND COALESCE(q.stage, 'due') = ")
                .push_bind(s.clone());
        }
    }
}

/// The cursor of a queue page: the last item's score, due date and id.
fn queue_cursor(i: &QueueItem) -> String {
    format!("{}|{}|{}", i.score, i.due, i.id)
}

fn parse_queue_cursor(page: &PageRequest) -> Result<Option<(f64, String, Uuid)>> {
    let Some(c) = page.cursor() else {
        return Ok(None);
    };
    let bad = || -> StoreError {
        FieldError::new(
            "/cursor",
            "is not a cursor of this list; pass the next_cursor of the previous page",
        )
        .into()
    };
    let mut parts = c.splitn(3, '|');
    let score: f64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite())
        .ok_or_else(bad)?;
    let due = parts
        .next()
        .filter(|d| waymark_domain::dates::parse(d).is_some())
        .ok_or_else(bad)?
        .to_owned();
    let id: QueueItemId = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    Ok(Some((score, due, id.uuid())))
}

#[derive(FromRow)]
struct ThreadRow {
    id: Uuid,
    journey_id: Uuid,
    client_id: Uuid,
    step: String,
    branch: Option<String>,
    status: String,
    created_by: String,
    created_at: i64,
    completed_at: Option<i64>,
}

impl ThreadRow {
    fn thread(self) -> Thread {
        Thread {
            id: ThreadId::from_uuid(self.id),
            journey_id: JourneyId::from_uuid(self.journey_id),
            client_id: ClientId::from_uuid(self.client_id),
            step: self.step,
            branch: self.branch,
            status: if self.status == "completed" {
                ThreadStatus::Completed
            } else {
                ThreadStatus::Open
            },
            created_by: self.created_by,
            created_at: at(self.created_at),
            completed_at: self.completed_at.map(at),
        }
    }
}

const THREAD_COLUMNS: &str =
    "id, journey_id, client_id, step, branch, status, created_by, created_at, completed_at";

#[derive(FromRow)]
struct MessageRow {
    seq: i64,
    role: String,
    content: String,
    provider: Option<String>,
    fallback: Option<String>,
    author: String,
    at: i64,
}

impl MessageRow {
    fn message(self) -> Result<ThreadMessage> {
        let role = match self.role.as_str() {
            "system" => MessageRole::System,
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            other => return Err(decode_error("message role", other)),
        };
        Ok(ThreadMessage {
            seq: self.seq,
            role,
            content: self.content,
            provider: self.provider,
            fallback: self.fallback,
            author: self.author,
            at: at(self.at),
        })
    }
}

async fn lock_thread(tx: &mut Tx, id: ThreadId) -> Result<ThreadRow> {
    let row: Option<ThreadRow> = sql(format!(
        "SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(id.uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| not_found("thread", id))?;
    if row.status == "completed" {
        return Err(StoreError::Conflict(format!(
            "thread {id} is completed; open a new thread to go on talking"
        )));
    }
    Ok(row)
}

async fn insert_messages(
    tx: &mut Tx,
    id: ThreadId,
    first_seq: i64,
    messages: &[NewMessage],
    ctx: &WriteContext,
    now: i64,
) -> Result<()> {
    for (i, m) in messages.iter().enumerate() {
        let author = match m.role {
            MessageRole::Assistant => m.provider.clone().unwrap_or_else(|| "template".into()),
            _ => ctx.actor_name.clone().unwrap_or_else(|| ctx.actor.clone()),
        };
        sql("INSERT INTO thread_messages (thread_id, seq, role, content, provider, fallback, author, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(id.uuid())
        .bind(first_seq + i as i64)
        .bind(m.role.as_str())
        .bind(&m.content)
        .bind(&m.provider)
        .bind(&m.fallback)
        .bind(author)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl PlaybookStore for SqlStore {
    async fn queue_inputs(
        &self,
        only: Option<ClientId>,
        after: Option<ClientId>,
        limit: usize,
    ) -> Result<Vec<QueueClient>> {
        let p = &mut self.db.reader();
        let mut q = sql(format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE 1 = 1"));
        if let Some(c) = only {
            q.push(" AND id = ").push_bind(c.uuid());
        }
        if let Some(a) = after {
            q.push(" AND id > ").push_bind(a.uuid());
        }
        q.push(" ORDER BY id LIMIT ")
            .push_bind(limit.clamp(1, 10_000) as i64);
        let clients: Vec<ClientRow> = q.fetch_all(&mut *p).await?;
        let (Some(first), Some(last)) = (clients.first(), clients.last()) else {
            return Ok(vec![]);
        };
        let (first, last) = (first.id, last.id);
        let latest: Vec<(Uuid, String, f64)> = sql(
            "SELECT s.client_id, s.name, s.value FROM client_signals s \
             WHERE s.client_id BETWEEN $1 AND $2 AND s.at = (SELECT MAX(t.at) FROM client_signals t \
             WHERE t.client_id = s.client_id AND t.name = s.name)",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&mut *p)
        .await?;
        let items: Vec<ItemRow> = sql(format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items q JOIN clients c ON c.id = q.client_id \
             WHERE q.client_id BETWEEN $1 AND $2 ORDER BY q.client_id, q.id"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&mut *p)
        .await?;
        let mut out: Vec<QueueClient> = clients
            .into_iter()
            .map(|c| QueueClient {
                client: c.into(),
                latest: BTreeMap::new(),
                items: vec![],
            })
            .collect();
        let index: std::collections::HashMap<Uuid, usize> = out
            .iter()
            .enumerate()
            .map(|(i, c)| (c.client.id.uuid(), i))
            .collect();
        for (client, name, value) in latest {
            if let Some(&i) = index.get(&client) {
                out[i].latest.insert(name, value);
            }
        }
        for row in items {
            if let Some(&i) = index.get(&row.client_id) {
                out[i].items.push(row.item()?);
            }
        }
        Ok(out)
    }

    async fn apply_queue_run(&self, run: QueueRun, ctx: &WriteContext) -> Result<QueueRunSummary> {
        let now = now_us();
        let mut summary = QueueRunSummary {
            trigger: run.trigger.clone(),
            clients: run.clients,
            errors: run.errors.iter().take(50).cloned().collect(),
            ..Default::default()
        };
        let mut tx = self.db.begin().await?;
        let mut entries = Vec::with_capacity(run.changes.len() + 1);
        for w in &run.changes {
            let id = write_change(&mut tx, w, now).await?;
            let change = change_name(&w.change);
            match &w.change {
                Change::Open(_) => summary.opened += 1,
                Change::Update { .. } => summary.updated += 1,
                Change::Reopen { .. } => summary.reopened += 1,
                Change::Close { .. } => summary.closed += 1,
                Change::Supersede { .. } => summary.superseded += 1,
            }
            let mut data = json!({
                "item_id": QueueItemId::from_uuid(id).to_string(),
                "client_id": w.client_id.to_string(),
                "change": change,
                "trigger": run.trigger,
            });
            match &w.change {
                Change::Open(m) | Change::Update { m } | Change::Reopen { m, .. } => {
                    data["template"] = m.template.clone().into();
                    data["rule"] = m.rule.clone().into();
                    data["score"] = m.score.into();
                    data["due"] = m.due.to_string().into();
                    data["reason"] = m.reason.clone().into();
                }
                Change::Close {
                    rule,
                    template,
                    reason,
                } => {
                    data["template"] = template.clone().into();
                    data["rule"] = rule.clone().into();
                    data["reason"] = reason.clone().into();
                }
                Change::Supersede { rule, template, by } => {
                    data["template"] = template.clone().into();
                    data["rule"] = rule.clone().into();
                    data["superseded_by"] = by.clone().into();
                }
            }
            entries.push(
                LogEntry::new("queue.item", Some(w.client_id), QueueItemId::from_uuid(id)).event(
                    "queue.item_changed",
                    Audience::Staff,
                    data,
                ),
            );
        }
        entries.push(LogEntry::new("queue.refresh", None, "queue").event(
            "queue.refreshed",
            Audience::Staff,
            serde_json::to_value(&summary).unwrap_or_default(),
        ));
        append_logs(&mut tx, ctx, at(now), entries).await?;
        tx.commit().await?;
        Ok(summary)
    }

    async fn queue(
        &self,
        filter: &QueueFilter,
        today: Date,
        page: PageRequest,
    ) -> Result<(Page<QueueItem>, QueueStats)> {
        let cursor = parse_queue_cursor(&page)?;
        let mut stats = QueueStats::default();
        if filter.owners.is_empty() {
            return Ok((
                Page {
                    items: vec![],
                    next_cursor: None,
                },
                stats,
            ));
        }
        let p = &mut self.db.reader();
        let mut q = sql(format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items q JOIN clients c ON c.id = q.client_id"
        ));
        queue_where(&mut q, filter, true);
        if let Some((score, due, id)) = cursor {
            q.push(" AND (q.score < ")
                .push_bind(score)
                .push(" OR (q.score = ")
                .push_bind(score)
                .push(" AND (q.due > ")
                .push_bind(due.clone())
                .push(" OR (q.due = ")
                .push_bind(due)
                .push(" AND q.id > ")
                .push_bind(id)
                .push("))))");
        }
        q.push(" ORDER BY q.score DESC, q.due, q.id LIMIT ")
            .push_bind(limit_plus_one(&page));
        let rows: Vec<ItemRow> = q.fetch_all(&mut *p).await?;
        let items = rows
            .into_iter()
            .map(ItemRow::item)
            .collect::<Result<Vec<_>>>()?;
        let mut s = sql("SELECT q.template, COALESCE(q.stage, 'due'), COUNT(*), \
             SUM(CASE WHEN q.due < ");
        s.push_bind(today.to_string())
            .push(" THEN 1 ELSE 0 END) FROM queue_items q");
        queue_where(&mut s, filter, false);
        s.push(" GROUP BY q.template, COALESCE(q.stage, 'due')");
        let groups: Vec<(String, String, i64, i64)> = s.fetch_all(&mut *p).await?;
        for (template, stage, count, overdue) in groups {
            stats.total += count;
            stats.overdue += overdue;
            *stats.by_template.entry(template).or_default() += count;
            *stats.by_stage.entry(stage).or_default() += count;
        }
        Ok((paginate(items, &page, queue_cursor), stats))
    }

    async fn get_queue_item(&self, id: QueueItemId) -> Result<QueueItem> {
        let row: Option<ItemRow> = sql(format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items q JOIN clients c ON c.id = q.client_id \
             WHERE q.id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.ok_or_else(|| not_found("queue item", id))?.item()
    }

    async fn queue_item_of_journey(&self, journey: JourneyId) -> Result<Option<QueueItem>> {
        let row: Option<ItemRow> = sql(format!(
            "SELECT {ITEM_COLUMNS} FROM queue_items q JOIN clients c ON c.id = q.client_id \
             WHERE q.journey_id = $1"
        ))
        .bind(journey.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.map(ItemRow::item).transpose()
    }

    async fn queue_item_action(
        &self,
        id: QueueItemId,
        action: ItemAction,
        ctx: &WriteContext,
    ) -> Result<QueueItem> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            let row: Option<(Uuid, String, Option<Uuid>, String)> = sql(format!(
                "SELECT client_id, status, journey_id, template FROM queue_items WHERE id = $1{}",
                tx.backend().for_update()
            ))
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?;
            let Some((client, status, journey, template)) = row else {
                return Err(not_found("queue item", id));
            };
            if let Some(j) = journey {
                return Err(StoreError::Conflict(format!(
                    "queue item {id} runs as journey {}; act on the journey",
                    JourneyId::from_uuid(j)
                )));
            }
            let mut q = sql("UPDATE queue_items SET updated_at = ");
            q.push_bind(now);
            let mut data = json!({
                "item_id": id.to_string(),
                "client_id": ClientId::from_uuid(client).to_string(),
                "change": action.action,
                "template": template,
                "from": status,
                "reason": action.reason,
            });
            match &action.effect {
                Effect::Snooze { until } => {
                    q.push(", status = 'snoozed', snoozed_until = ")
                        .push_bind(micros(*until));
                    data["until"] = until
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                        .into();
                }
                Effect::Escalate { to } => {
                    q.push(", escalated = 1, owner = ").push_bind(to.clone());
                    data["to"] = to.clone().into();
                }
                Effect::Schedule { due } => {
                    q.push(", scheduled = 1, due = ").push_bind(due.to_string());
                    data["due"] = due.to_string().into();
                }
                Effect::None => {}
            }
            q.push(" WHERE id = ").push_bind(id.uuid());
            q.execute(&mut tx).await?;
            let mut entry = LogEntry::new(
                "queue.item.action",
                Some(ClientId::from_uuid(client)),
                id,
            )
            .event("queue.item_changed", Audience::Staff, data.clone());
            if let Effect::Escalate { .. } = &action.effect {
                entry = entry.event("queue.escalated", Audience::Staff, data);
            }
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
        }
        self.get_queue_item(id).await
    }

    async fn record_signals(
        &self,
        client: ClientId,
        observations: Vec<NewObservation>,
        ctx: &WriteContext,
    ) -> Result<usize> {
        let now = now_us();
        let count = observations.len();
        let mut tx = self.db.begin().await?;
        require_client(&mut tx, client).await?;
        for o in &observations {
            sql(
                "INSERT INTO client_signals (client_id, name, value, at, recorded_by) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client.uuid())
            .bind(&o.name)
            .bind(o.value)
            .bind(micros(o.at))
            .bind(&ctx.actor)
            .execute(&mut tx)
            .await?;
        }
        let names: std::collections::BTreeSet<&str> =
            observations.iter().map(|o| o.name.as_str()).collect();
        let entry = LogEntry::new("client.signals", Some(client), client).event(
            "client.signals_recorded",
            Audience::Staff,
            json!({"client_id": client.to_string(), "count": count, "names": names}),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(count)
    }

    async fn client_signals(
        &self,
        client: ClientId,
        since: OffsetDateTime,
    ) -> Result<Vec<SignalRecord>> {
        let rows: Vec<(String, f64, i64, String)> =
            sql("SELECT name, value, at, recorded_by FROM client_signals \
             WHERE client_id = $1 AND at >= $2 ORDER BY at, name LIMIT 10000")
            .bind(client.uuid())
            .bind(micros(since))
            .fetch_all(&mut self.db.reader())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, value, t, recorded_by)| SignalRecord {
                name,
                value,
                at: at(t),
                recorded_by,
            })
            .collect())
    }

    async fn create_thread(&self, new: NewThread, ctx: &WriteContext) -> Result<Thread> {
        let id = ThreadId::new();
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            sql(format!(
                "INSERT INTO threads ({THREAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, NULL)"
            ))
            .bind(id.uuid())
            .bind(new.journey_id.uuid())
            .bind(new.client_id.uuid())
            .bind(&new.step)
            .bind(&new.branch)
            .bind(&ctx.actor)
            .bind(now)
            .execute(&mut tx)
            .await?;
            let system = NewMessage {
                role: MessageRole::System,
                content: new.system.clone(),
                provider: None,
                fallback: None,
            };
            insert_messages(&mut tx, id, 1, &[system], ctx, now).await?;
            let entry = LogEntry::new("thread.create", Some(new.client_id), id).event(
                "thread.created",
                Audience::Staff,
                json!({
                    "thread_id": id.to_string(),
                    "journey_id": new.journey_id.to_string(),
                    "step": new.step,
                    "branch": new.branch,
                }),
            );
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
        }
        self.get_thread(id).await
    }

    async fn get_thread(&self, id: ThreadId) -> Result<Thread> {
        let row: Option<ThreadRow> = sql(format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        Ok(row.ok_or_else(|| not_found("thread", id))?.thread())
    }

    async fn list_threads(&self, journey: JourneyId) -> Result<Vec<Thread>> {
        let rows: Vec<ThreadRow> = sql(format!(
            "SELECT {THREAD_COLUMNS} FROM threads WHERE journey_id = $1 ORDER BY id LIMIT 500"
        ))
        .bind(journey.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows.into_iter().map(ThreadRow::thread).collect())
    }

    async fn thread_messages(&self, id: ThreadId) -> Result<Vec<ThreadMessage>> {
        let rows: Vec<MessageRow> = sql(
            "SELECT seq, role, content, provider, fallback, author, at FROM thread_messages \
             WHERE thread_id = $1 ORDER BY seq",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        rows.into_iter().map(MessageRow::message).collect()
    }

    async fn add_thread_messages(
        &self,
        id: ThreadId,
        messages: Vec<NewMessage>,
        ctx: &WriteContext,
    ) -> Result<Vec<ThreadMessage>> {
        let now = now_us();
        let first = {
            let mut tx = self.db.begin().await?;
            let row = lock_thread(&mut tx, id).await?;
            let (next,): (i64,) =
                sql("SELECT COALESCE(MAX(seq), 0) + 1 FROM thread_messages WHERE thread_id = $1")
                    .bind(id.uuid())
                    .fetch_one(&mut tx)
                    .await?;
            insert_messages(&mut tx, id, next, &messages, ctx, now).await?;
            let entry = LogEntry::new(
                "thread.message",
                Some(ClientId::from_uuid(row.client_id)),
                id,
            )
            .event(
                "thread.messages_added",
                Audience::Staff,
                json!({
                    "thread_id": id.to_string(),
                    "journey_id": JourneyId::from_uuid(row.journey_id).to_string(),
                    "from_seq": next,
                    "count": messages.len(),
                    "roles": messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
                    "providers": messages.iter().filter_map(|m| m.provider.clone()).collect::<Vec<_>>(),
                }),
            );
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
            next
        };
        Ok(self
            .thread_messages(id)
            .await?
            .into_iter()
            .filter(|m| m.seq >= first)
            .collect())
    }

    async fn complete_thread(&self, id: ThreadId, ctx: &WriteContext) -> Result<Thread> {
        let now = now_us();
        {
            let mut tx = self.db.begin().await?;
            let row = lock_thread(&mut tx, id).await?;
            sql("UPDATE threads SET status = 'completed', completed_at = $2 WHERE id = $1")
                .bind(id.uuid())
                .bind(now)
                .execute(&mut tx)
                .await?;
            let entry = LogEntry::new(
                "thread.complete",
                Some(ClientId::from_uuid(row.client_id)),
                id,
            )
            .event(
                "thread.completed",
                Audience::Staff,
                json!({
                    "thread_id": id.to_string(),
                    "journey_id": JourneyId::from_uuid(row.journey_id).to_string(),
                    "step": row.step,
                }),
            );
            append_log(&mut tx, ctx, at(now), entry).await?;
            tx.commit().await?;
        }
        self.get_thread(id).await
    }

    async fn link_thread_artifact(
        &self,
        id: ThreadId,
        artifact: ArtifactId,
        message_seq: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sql(
            "INSERT INTO thread_artifacts (thread_id, artifact_id, message_seq, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.uuid())
        .bind(artifact.uuid())
        .bind(message_seq)
        .bind(now_us())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn thread_artifacts(&self, id: ThreadId) -> Result<Vec<ArtifactId>> {
        let rows: Vec<(Uuid,)> = sql(
            "SELECT artifact_id FROM thread_artifacts WHERE thread_id = $1 ORDER BY created_at, artifact_id",
        )
        .bind(id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ArtifactId::from_uuid(r.0))
            .collect())
    }
}
