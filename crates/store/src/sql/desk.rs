//! [`DeskStore`] on SQL: to-dos, preferences, stakeholders.
//!
//! A to-do's references (journey, step, client, assignee) are checked in the
//! transaction that writes it, and its place in lists (`sort_key`, see
//! [`Todo::sort_key`]) is stored with it, so a page is one range of an
//! index: `WHERE sort_key > k OR (sort_key = k AND id > last)`. Times are
//! microseconds (INTEGER), like the engine's.

use async_trait::async_trait;
use sqlx::FromRow;
use waymark_domain::journey::JourneyTemplate;
use waymark_domain::preferences::{self, Preferences};
use waymark_domain::{StakeholderId, TodoId};

use super::work::{at, now_us};
use super::*;
use crate::desk::*;

const TODO_COLUMNS: &str = "id, client_id, title, assigned_to, due_date, priority, status, \
     journey_id, step, created_by, created_at, updated_at, completed_at";

#[derive(FromRow)]
struct TodoRow {
    id: Uuid,
    client_id: Option<Uuid>,
    title: String,
    assigned_to: Option<String>,
    due_date: Option<String>,
    priority: String,
    status: String,
    journey_id: Option<Uuid>,
    step: Option<String>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    completed_at: Option<i64>,
}

impl TodoRow {
    fn todo(self) -> Result<Todo> {
        let status = TodoStatus::parse(&self.status)
            .ok_or_else(|| decode_error("to-do status", &self.status))?;
        let due_date = self
            .due_date
            .as_deref()
            .map(|d| waymark_domain::dates::parse(d).ok_or_else(|| decode_error("due date", d)))
            .transpose()?;
        Ok(Todo {
            id: TodoId::from_uuid(self.id),
            title: self.title,
            assigned_to: self.assigned_to,
            due_date,
            priority: Priority::parse(&self.priority)
                .ok_or_else(|| decode_error("priority", &self.priority))?,
            status,
            completed: status == TodoStatus::Completed,
            journey_id: self.journey_id.map(JourneyId::from_uuid),
            step: self.step,
            client_id: self.client_id.map(ClientId::from_uuid),
            created_by: self.created_by,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            completed_at: self.completed_at.map(at),
        })
    }
}

/// `YYYY-MM-DD`, as stored.
fn date_text(d: Option<time::Date>) -> Option<String> {
    d.map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
}

fn todo_data(t: &Todo) -> Value {
    serde_json::json!({
        "todo_id": t.id.to_string(),
        "title": t.title,
        "assigned_to": t.assigned_to,
        "status": t.status.as_str(),
        "priority": t.priority.as_str(),
        "due_date": date_text(t.due_date),
        "client_id": t.client_id.map(|c| c.to_string()),
        "journey_id": t.journey_id.map(|j| j.to_string()),
        "step": t.step,
    })
}

/// A page's cursor: the last item's sort key, and its id (hex) after `_`.
fn todo_cursor(t: &Todo) -> String {
    format!("{}_{}", t.sort_key(), t.id.uuid().simple())
}

fn parse_todo_cursor(page: &PageRequest) -> Result<Option<(i64, Option<Uuid>)>> {
    let Some(c) = page.cursor() else {
        return Ok(None);
    };
    let bad = || {
        StoreError::from(FieldError::new(
            "/cursor",
            "is not a cursor of this list; pass the next_cursor of the previous page",
        ))
    };
    let (key, id) = match c.split_once('_') {
        Some((k, id)) => (k, Some(id)),
        None => (c, None),
    };
    if key.is_empty() || key.len() > 18 || !key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let key: i64 = key.parse().map_err(|_| bad())?;
    let id = match id {
        None => None,
        Some(h) if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(Uuid::parse_str(h).map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
    };
    Ok(Some((key, id)))
}

/// Reads a to-do's row inside the transaction, locked for this writer.
async fn lock_todo(tx: &mut Tx, id: TodoId) -> Result<Todo> {
    let row: Option<TodoRow> = sql(format!(
        "SELECT {TODO_COLUMNS} FROM todos WHERE id = $1{}",
        tx.backend().for_update()
    ))
    .bind(id.uuid())
    .fetch_optional(tx)
    .await?;
    row.ok_or_else(|| not_found("to-do", id))?.todo()
}

/// Checks an assignee in the transaction: an existing user who is not
/// disabled, or the writer's own token. A client user takes only to-dos of
/// their client: a to-do without a client becomes theirs, one of another
/// client is refused.
async fn check_assignee(
    tx: &mut Tx,
    who: &Assignee,
    client: &mut Option<ClientId>,
    ctx: &WriteContext,
) -> Result<()> {
    match who {
        Assignee::Token(t) => {
            if *t != ctx.actor {
                return Err(FieldError::new(
                    "/assigned_to",
                    "must be a user id (usr_...); only a token without a user takes its own to-dos",
                )
                .into());
            }
        }
        Assignee::User(u) => {
            let row: Option<(String, Option<Uuid>)> =
                sql("SELECT role, client_id FROM users WHERE id = $1 AND disabled_at IS NULL")
                    .bind(u.uuid())
                    .fetch_optional(tx)
                    .await?;
            let Some((role, user_client)) = row else {
                return Err(FieldError::new("/assigned_to", format!("no user {u}")).into());
            };
            if role == Role::Client.as_str() {
                let theirs = user_client.map(ClientId::from_uuid);
                match (*client, theirs) {
                    (None, Some(c)) => *client = Some(c),
                    (Some(c), Some(t)) if c == t => {}
                    (Some(c), _) => {
                        return Err(FieldError::new(
                            "/assigned_to",
                            format!(
                                "user {u} is a contact of another client; a to-do of client {c} \
                                 goes to the team or to that client's users"
                            ),
                        )
                        .into());
                    }
                    (None, None) => {
                        return Err(FieldError::new(
                            "/assigned_to",
                            format!("user {u} is a client user without a client"),
                        )
                        .into());
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(FromRow)]
struct StakeholderRow {
    id: Uuid,
    client_id: Uuid,
    name: String,
    email: Option<String>,
    role: String,
    influence: String,
    sentiment: String,
    notes: String,
    created_at: i64,
    updated_at: i64,
}

const STAKEHOLDER_COLUMNS: &str =
    "id, client_id, name, email, role, influence, sentiment, notes, created_at, updated_at";

impl StakeholderRow {
    fn stakeholder(self) -> Result<Stakeholder> {
        Ok(Stakeholder {
            id: StakeholderId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            name: self.name,
            email: self.email,
            role: self.role,
            influence: Influence::parse(&self.influence)
                .ok_or_else(|| decode_error("influence", &self.influence))?,
            sentiment: Sentiment::parse(&self.sentiment)
                .ok_or_else(|| decode_error("sentiment", &self.sentiment))?,
            notes: self.notes,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
        })
    }
}

fn stakeholder_data(s: &Stakeholder) -> Value {
    serde_json::json!({
        "stakeholder_id": s.id.to_string(),
        "client_id": s.client_id.to_string(),
        "name": s.name,
        "role": s.role,
        "influence": s.influence.as_str(),
        "sentiment": s.sentiment.as_str(),
    })
}

async fn lock_stakeholder(tx: &mut Tx, client: ClientId, id: StakeholderId) -> Result<Stakeholder> {
    let row: Option<StakeholderRow> = sql(format!(
        "SELECT {STAKEHOLDER_COLUMNS} FROM stakeholders WHERE id = $1 AND client_id = $2{}",
        tx.backend().for_update()
    ))
    .bind(id.uuid())
    .bind(client.uuid())
    .fetch_optional(tx)
    .await?;
    row.ok_or_else(|| not_found("stakeholder", id))?
        .stakeholder()
}

#[async_trait]
impl DeskStore for SqlStore {
    async fn create_todo(&self, new: NewTodo, ctx: &WriteContext) -> Result<Created<Todo>> {
        let id = TodoId::new();
        let now = now_us();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "todo").await? {
                Some(existing)
            } else {
                let mut client = new.client_id;
                if let Some(c) = client {
                    require_client(&mut tx, c).await?;
                }
                match (new.journey_id, &new.step) {
                    (Some(j), step) => {
                        let row: Option<(Uuid, Json<JourneyTemplate>)> =
                            sql("SELECT client_id, definition FROM journeys WHERE id = $1")
                                .bind(j.uuid())
                                .fetch_optional(&mut tx)
                                .await?;
                        let Some((journey_client, def)) = row else {
                            return Err(
                                FieldError::new("/journey_id", format!("no journey {j}")).into()
                            );
                        };
                        let journey_client = ClientId::from_uuid(journey_client);
                        if client.is_some_and(|c| c != journey_client) {
                            return Err(FieldError::new(
                                "/client_id",
                                format!(
                                    "journey {j} is another client's; leave client_id out to take the journey's"
                                ),
                            )
                            .into());
                        }
                        client = Some(journey_client);
                        if let Some(step) = step
                            && !def.0.stages.iter().any(|s| &s.id == step)
                        {
                            let steps: Vec<&str> =
                                def.0.stages.iter().map(|s| s.id.as_str()).collect();
                            return Err(FieldError::new(
                                "/step",
                                format!(
                                    "is not a step of journey {j}; its steps are {}",
                                    steps.join(", ")
                                ),
                            )
                            .into());
                        }
                    }
                    (None, Some(_)) => {
                        return Err(FieldError::new(
                            "/step",
                            "a step belongs to a journey: send its journey_id too",
                        )
                        .into());
                    }
                    (None, None) => {}
                }
                if let Some(a) = &new.assigned_to {
                    check_assignee(&mut tx, a, &mut client, ctx).await?;
                }
                let todo = Todo {
                    id,
                    title: new.title,
                    assigned_to: new.assigned_to.as_ref().map(Assignee::as_string),
                    due_date: new.due_date,
                    priority: new.priority,
                    status: TodoStatus::Open,
                    completed: false,
                    journey_id: new.journey_id,
                    step: new.step,
                    client_id: client,
                    created_by: ctx.actor.clone(),
                    created_at: at(now),
                    updated_at: at(now),
                    completed_at: None,
                };
                sql(format!(
                    "INSERT INTO todos ({TODO_COLUMNS}, sort_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $10, NULL, $11)"
                ))
                .bind(id.uuid())
                .bind(client.map(|c| c.uuid()))
                .bind(&todo.title)
                .bind(&todo.assigned_to)
                .bind(date_text(todo.due_date))
                .bind(todo.priority.as_str())
                .bind(todo.journey_id.map(|j| j.uuid()))
                .bind(&todo.step)
                .bind(&ctx.actor)
                .bind(now)
                .bind(todo.sort_key())
                .execute(&mut tx)
                .await?;
                idempotency::record(&mut tx, ctx, "todo", id.uuid(), at(now)).await?;
                let entry = LogEntry::new("todo.create", client, id).event(
                    "todo.created",
                    Audience::Staff,
                    todo_data(&todo),
                );
                append_log(&mut tx, ctx, at(now), entry).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(TodoId::from_uuid).unwrap_or(id);
        Ok(Created {
            record: self.get_todo(record_id).await?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_todo(&self, id: TodoId) -> Result<Todo> {
        let row: Option<TodoRow> = sql(format!("SELECT {TODO_COLUMNS} FROM todos WHERE id = $1"))
            .bind(id.uuid())
            .fetch_optional(&mut self.db.reader())
            .await?;
        row.ok_or_else(|| not_found("to-do", id))?.todo()
    }

    async fn list_todos(&self, filter: TodoFilter, page: PageRequest) -> Result<Page<Todo>> {
        let after = parse_todo_cursor(&page)?;
        let rows: Vec<TodoRow> = {
            let p = &mut self.db.reader();
            let mut q = sql(format!("SELECT {TODO_COLUMNS} FROM todos WHERE 1 = 1"));
            if let Some(a) = &filter.assigned_to {
                q.push(" AND assigned_to = ").push_bind(a.clone());
            }
            if let Some(s) = filter.status {
                q.push(" AND status = ").push_bind(s.as_str());
            }
            if let Some(j) = filter.journey_id {
                q.push(" AND journey_id = ").push_bind(j.uuid());
            }
            if let Some(c) = filter.client_id {
                q.push(" AND client_id = ").push_bind(c.uuid());
            }
            match after {
                Some((key, Some(id))) => {
                    q.push(" AND (sort_key > ")
                        .push_bind(key)
                        .push(" OR (sort_key = ")
                        .push_bind(key)
                        .push(" AND id > ")
                        .push_bind(id)
                        .push("))");
                }
                Some((key, None)) => {
                    q.push(" AND sort_key > ").push_bind(key);
                }
                None => {}
            }
            q.push(" ORDER BY sort_key, id LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let items = rows
            .into_iter()
            .map(TodoRow::todo)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, &page, todo_cursor))
    }

    async fn update_todo(
        &self,
        id: TodoId,
        patch: TodoPatch,
        scope: &TodoScope,
        ctx: &WriteContext,
    ) -> Result<Todo> {
        if patch.is_empty() {
            let t = self.get_todo(id).await?;
            return if scope.reaches(&t) {
                Ok(t)
            } else {
                Err(not_found("to-do", id))
            };
        }
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let mut t = lock_todo(&mut tx, id).await?;
        if !scope.reaches(&t) {
            return Err(not_found("to-do", id));
        }
        let mut changed: Vec<&str> = Vec::new();
        if let Some(title) = patch.title
            && title != t.title
        {
            t.title = title;
            changed.push("title");
        }
        if let Some(p) = patch.priority
            && p != t.priority
        {
            t.priority = p;
            changed.push("priority");
        }
        if let Some(d) = patch.due_date
            && d != t.due_date
        {
            t.due_date = d;
            changed.push("due_date");
        }
        if let Some(a) = patch.assigned_to {
            let mut client = t.client_id;
            check_assignee(&mut tx, &a, &mut client, ctx).await?;
            let a = a.as_string();
            if t.assigned_to.as_deref() != Some(a.as_str()) {
                t.assigned_to = Some(a);
                changed.push("assigned_to");
            }
            if client != t.client_id {
                t.client_id = client;
                changed.push("client_id");
            }
        }
        if let Some(to) = patch.status {
            match (t.status, to) {
                (from, TodoStatus::Completed | TodoStatus::Skipped) if from.is_closed() => {
                    let when = t
                        .completed_at
                        .and_then(|c| {
                            c.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .map(|c| format!(" (at {c})"))
                        .unwrap_or_default();
                    return Err(StoreError::Refused {
                        code: "todo_closed",
                        detail: format!(
                            "to-do {id} is {} already{when}; it cannot be {} again — send \
                             {{\"completed\": false}} to reopen it first",
                            from.as_str(),
                            to.as_str()
                        ),
                    });
                }
                (TodoStatus::Open, TodoStatus::Open) => {}
                (_, TodoStatus::Open) => {
                    t.status = TodoStatus::Open;
                    t.completed_at = None;
                    changed.push("status");
                }
                (_, closed) => {
                    t.status = closed;
                    t.completed_at = Some(at(now));
                    changed.push("status");
                }
            }
            t.completed = t.status == TodoStatus::Completed;
        }
        if changed.is_empty() {
            return Ok(t);
        }
        t.updated_at = at(now);
        sql(
            "UPDATE todos SET title = $2, assigned_to = $3, due_date = $4, priority = $5, \
             status = $6, client_id = $7, updated_at = $8, completed_at = $9, sort_key = $10 \
             WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(&t.title)
        .bind(&t.assigned_to)
        .bind(date_text(t.due_date))
        .bind(t.priority.as_str())
        .bind(t.status.as_str())
        .bind(t.client_id.map(|c| c.uuid()))
        .bind(now)
        .bind(t.completed_at.map(|_| now))
        .bind(t.sort_key())
        .execute(&mut tx)
        .await?;
        let mut data = todo_data(&t);
        data["changes"] = serde_json::json!(changed);
        let entry = LogEntry::new("todo.update", t.client_id, id).event(
            "todo.updated",
            Audience::Staff,
            data,
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(t)
    }

    async fn delete_todo(&self, id: TodoId, ctx: &WriteContext) -> Result<()> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let t = lock_todo(&mut tx, id).await?;
        sql("DELETE FROM todos WHERE id = $1")
            .bind(id.uuid())
            .execute(&mut tx)
            .await?;
        let entry = LogEntry::new("todo.delete", t.client_id, id).event(
            "todo.deleted",
            Audience::Staff,
            todo_data(&t),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn preferences(&self, owner: &str) -> Result<Preferences> {
        let stored: Option<(Json<Preferences>,)> =
            sql("SELECT preferences FROM user_preferences WHERE owner = $1")
                .bind(owner)
                .fetch_optional(&mut self.db.reader())
                .await?;
        if let Some((p,)) = stored {
            return Ok(p.0);
        }
        // The first read stores the defaults (unless a concurrent request
        // stored something first: that is answered).
        let mut tx = self.db.begin().await?;
        insert_default_preferences(&mut tx, owner).await?;
        let (p,): (Json<Preferences>,) =
            sql("SELECT preferences FROM user_preferences WHERE owner = $1")
                .bind(owner)
                .fetch_one(&mut tx)
                .await?;
        tx.commit().await?;
        Ok(p.0)
    }

    async fn update_preferences(
        &self,
        owner: &str,
        patch: &Value,
        ctx: &WriteContext,
    ) -> Result<Preferences> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        insert_default_preferences(&mut tx, owner).await?;
        let (current,): (Json<Preferences>,) = sql(format!(
            "SELECT preferences FROM user_preferences WHERE owner = $1{}",
            tx.backend().for_update()
        ))
        .bind(owner)
        .fetch_one(&mut tx)
        .await?;
        let next = preferences::apply(&current.0, patch).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .map(StoreError::Invalid)
                .unwrap_or_else(|| StoreError::Conflict("invalid preferences".into()))
        })?;
        sql("UPDATE user_preferences SET preferences = $2, updated_at = $3 WHERE owner = $1")
            .bind(owner)
            .bind(Json(&next))
            .bind(now)
            .execute(&mut tx)
            .await?;
        let changed: Vec<&String> = patch
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let entry = LogEntry::new("preferences.update", None, owner).event(
            "preferences.updated",
            Audience::Staff,
            serde_json::json!({"owner": owner, "changes": changed}),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn create_stakeholder(
        &self,
        new: NewStakeholder,
        ctx: &WriteContext,
    ) -> Result<Created<Stakeholder>> {
        let id = StakeholderId::new();
        let now = now_us();
        let replayed = {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "stakeholder").await? {
                Some(existing)
            } else {
                require_client(&mut tx, new.client_id).await?;
                sql(format!(
                    "INSERT INTO stakeholders ({STAKEHOLDER_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
                ))
                .bind(id.uuid())
                .bind(new.client_id.uuid())
                .bind(&new.name)
                .bind(&new.email)
                .bind(&new.role)
                .bind(new.influence.as_str())
                .bind(new.sentiment.as_str())
                .bind(&new.notes)
                .bind(now)
                .execute(&mut tx)
                .await?;
                idempotency::record(&mut tx, ctx, "stakeholder", id.uuid(), at(now)).await?;
                let s = Stakeholder {
                    id,
                    client_id: new.client_id,
                    name: new.name,
                    email: new.email,
                    role: new.role,
                    influence: new.influence,
                    sentiment: new.sentiment,
                    notes: new.notes,
                    created_at: at(now),
                    updated_at: at(now),
                };
                let entry = LogEntry::new("stakeholder.create", Some(new.client_id), id).event(
                    "stakeholder.created",
                    Audience::Staff,
                    stakeholder_data(&s),
                );
                append_log(&mut tx, ctx, at(now), entry).await?;
                tx.commit().await?;
                None
            }
        };
        let record_id = replayed.map(StakeholderId::from_uuid).unwrap_or(id);
        // A replay answers the record the key made, whichever client the
        // path names now (the key is bound to the path as well).
        let row: Option<StakeholderRow> = sql(format!(
            "SELECT {STAKEHOLDER_COLUMNS} FROM stakeholders WHERE id = $1"
        ))
        .bind(record_id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        Ok(Created {
            record: row
                .ok_or_else(|| not_found("stakeholder", record_id))?
                .stakeholder()?,
            replayed: replayed.is_some(),
        })
    }

    async fn get_stakeholder(&self, client_id: ClientId, id: StakeholderId) -> Result<Stakeholder> {
        let row: Option<StakeholderRow> = sql(format!(
            "SELECT {STAKEHOLDER_COLUMNS} FROM stakeholders WHERE id = $1 AND client_id = $2"
        ))
        .bind(id.uuid())
        .bind(client_id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.ok_or_else(|| not_found("stakeholder", id))?
            .stakeholder()
    }

    async fn list_stakeholders(
        &self,
        client_id: ClientId,
        page: PageRequest,
    ) -> Result<Page<Stakeholder>> {
        let after: Option<StakeholderId> = id_cursor(&page)?;
        let rows: Vec<StakeholderRow> = {
            let p = &mut self.db.reader();
            let mut q = sql(format!(
                "SELECT {STAKEHOLDER_COLUMNS} FROM stakeholders WHERE client_id = $1"
            ))
            .bind(client_id.uuid());
            if let Some(a) = after {
                q.push(" AND id > ").push_bind(a.uuid());
            }
            q.push(" ORDER BY id LIMIT ")
                .push_bind(limit_plus_one(&page));
            q.fetch_all(p).await?
        };
        let items = rows
            .into_iter()
            .map(StakeholderRow::stakeholder)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(items, &page, |s| s.id.to_string()))
    }

    async fn update_stakeholder(
        &self,
        client_id: ClientId,
        id: StakeholderId,
        patch: StakeholderPatch,
        ctx: &WriteContext,
    ) -> Result<Stakeholder> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let mut s = lock_stakeholder(&mut tx, client_id, id).await?;
        let before = s.clone();
        if let Some(v) = patch.name {
            s.name = v;
        }
        if let Some(v) = patch.email {
            s.email = v;
        }
        if let Some(v) = patch.role {
            s.role = v;
        }
        if let Some(v) = patch.influence {
            s.influence = v;
        }
        if let Some(v) = patch.sentiment {
            s.sentiment = v;
        }
        if let Some(v) = patch.notes {
            s.notes = v;
        }
        if s == before {
            return Ok(s);
        }
        s.updated_at = at(now);
        sql(
            "UPDATE stakeholders SET name = $2, email = $3, role = $4, influence = $5, \
             sentiment = $6, notes = $7, updated_at = $8 WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(&s.name)
        .bind(&s.email)
        .bind(&s.role)
        .bind(s.influence.as_str())
        .bind(s.sentiment.as_str())
        .bind(&s.notes)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let entry = LogEntry::new("stakeholder.update", Some(client_id), id).event(
            "stakeholder.updated",
            Audience::Staff,
            stakeholder_data(&s),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(s)
    }

    async fn delete_stakeholder(
        &self,
        client_id: ClientId,
        id: StakeholderId,
        ctx: &WriteContext,
    ) -> Result<()> {
        let now = now_us();
        let mut tx = self.db.begin().await?;
        let s = lock_stakeholder(&mut tx, client_id, id).await?;
        sql("DELETE FROM stakeholders WHERE id = $1")
            .bind(id.uuid())
            .execute(&mut tx)
            .await?;
        let entry = LogEntry::new("stakeholder.delete", Some(client_id), id).event(
            "stakeholder.deleted",
            Audience::Staff,
            stakeholder_data(&s),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Stores the default preferences for `owner` unless they have some.
async fn insert_default_preferences(tx: &mut Tx, owner: &str) -> Result<()> {
    sql(
        "INSERT INTO user_preferences (owner, preferences, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (owner) DO NOTHING",
    )
    .bind(owner)
    .bind(Json(Preferences::default()))
    .bind(now_us())
    .execute(tx)
    .await?;
    Ok(())
}
