//! A person's desk in the customer-success workspace: to-dos, preferences, and
//! the stakeholders (contacts) of a client. [`DeskStore`] and its records.
//!
//! - **To-dos** are a person's own tasks, apart from the engine's work: a
//!   title, whom it is assigned to, a due date and a priority, and optionally
//!   the journey (and step) or client it is about. They are listed in one
//!   stable order, [`Todo::sort_key`]: open ones first, then by due date (none
//!   last), then by priority (urgent first), then by id (creation order); the
//!   order is stored with each row, so a page is a keyset range of an index.
//! - **Preferences** are one JSON document per owner (a user id, or the id of
//!   a token without a user), `waymark_domain::preferences`; defaults are
//!   stored on the first read.
//! - **Stakeholders** are a client's contacts with their role, influence and
//!   sentiment.
//!
//! Every write ends with its audit record and event (`todo.create`,
//! `todo.update`, `todo.delete`, `preferences.update`, `stakeholder.*`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use waymark_domain::preferences::Preferences;
use waymark_domain::{ClientId, JourneyId, StakeholderId, TodoId, UserId};

use crate::{Created, Page, PageRequest, Result, WriteContext};

/// How urgent a to-do is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Its place in the list: urgent first.
    fn rank(self) -> i64 {
        match self {
            Priority::Urgent => 0,
            Priority::High => 1,
            Priority::Medium => 2,
            Priority::Low => 3,
        }
    }
}

/// Where a to-do stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    Open,
    Completed,
    /// Passed over: done with, without being done.
    Skipped,
}

impl TodoStatus {
    pub const ALL: [TodoStatus; 3] = [TodoStatus::Open, TodoStatus::Completed, TodoStatus::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            TodoStatus::Open => "open",
            TodoStatus::Completed => "completed",
            TodoStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Completed or skipped: completing or skipping it again is refused.
    pub fn is_closed(self) -> bool {
        self != TodoStatus::Open
    }
}

/// A person's to-do.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Todo {
    pub id: TodoId,
    pub title: String,
    /// Whom it is for: a user id (`usr_…`), or the id of the token that
    /// created it when that token belongs to no user (the bootstrap admin
    /// token). `null`: nobody.
    pub assigned_to: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(with = "waymark_domain::dates::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub due_date: Option<Date>,
    pub priority: Priority,
    pub status: TodoStatus,
    /// `status` is `completed`.
    pub completed: bool,
    /// The journey it belongs to; its client is the to-do's.
    pub journey_id: Option<JourneyId>,
    /// A stage id of that journey's template.
    pub step: Option<String>,
    pub client_id: Option<ClientId>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it was completed or skipped; `null` while open.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

impl Todo {
    /// Its place in every list of to-dos, smaller first: open before closed,
    /// then the due date (none last), then the priority (urgent first); ties
    /// go by id. One number, so a cursor is the number and the id.
    pub fn sort_key(&self) -> i64 {
        sort_key(self.status, self.due_date, self.priority)
    }
}

/// [`Todo::sort_key`] of these values: `closed × 10⁸ + day × 10 + priority`,
/// where `day` is the due date's Julian day shifted to be positive (every
/// date `YYYY-MM-DD` reads is below 7,400,000) and 9,999,999 without one.
pub fn sort_key(status: TodoStatus, due: Option<Date>, priority: Priority) -> i64 {
    let closed = i64::from(status.is_closed());
    let day = due.map_or(9_999_999, |d| i64::from(d.to_julian_day()) + 2_000_000);
    closed * 100_000_000 + day * 10 + priority.rank()
}

/// A to-do to create (its fields already checked; the references are checked
/// in the transaction).
#[derive(Debug, Clone)]
pub struct NewTodo {
    pub title: String,
    /// A user, or the creating token (see [`Todo::assigned_to`]).
    pub assigned_to: Option<Assignee>,
    pub due_date: Option<Date>,
    pub priority: Priority,
    /// Must exist; the to-do's client becomes the journey's.
    pub journey_id: Option<JourneyId>,
    /// Must be a stage of the journey's template; only with `journey_id`.
    pub step: Option<String>,
    /// Must exist (and be the journey's, with a journey).
    pub client_id: Option<ClientId>,
}

/// Whom a to-do may be assigned to, as the store checks it: an existing user
/// (not disabled), or the writer's own token id (a token without a user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    User(UserId),
    /// The writer's own token, when it belongs to no user.
    Token(String),
}

impl Assignee {
    pub fn as_string(&self) -> String {
        match self {
            Assignee::User(u) => u.to_string(),
            Assignee::Token(t) => t.clone(),
        }
    }
}

/// Changes to a to-do: a field left `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct TodoPatch {
    pub title: Option<String>,
    pub assigned_to: Option<Assignee>,
    /// `Some(None)` clears the due date.
    pub due_date: Option<Option<Date>>,
    pub priority: Option<Priority>,
    /// `completed` or `skipped` is refused (409, `todo_closed`) when it is
    /// already one of those; `open` reopens it (and changes nothing when it
    /// is open).
    pub status: Option<TodoStatus>,
}

impl TodoPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.assigned_to.is_none()
            && self.due_date.is_none()
            && self.priority.is_none()
            && self.status.is_none()
    }
}

/// Whose to-dos a writer may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TodoScope {
    /// The team: every to-do.
    Everyone,
    /// A client user: the to-dos of their client assigned to them; any other
    /// answers as missing.
    Assignee {
        assigned_to: String,
        client_id: ClientId,
    },
}

impl TodoScope {
    /// Whether a to-do is within reach.
    pub fn reaches(&self, todo: &Todo) -> bool {
        match self {
            TodoScope::Everyone => true,
            TodoScope::Assignee {
                assigned_to,
                client_id,
            } => {
                todo.assigned_to.as_deref() == Some(assigned_to.as_str())
                    && todo.client_id == Some(*client_id)
            }
        }
    }
}

/// Which to-dos to list (all of them match).
#[derive(Debug, Clone, Default)]
pub struct TodoFilter {
    /// Assigned to this user or token id; `None`: anyone's.
    pub assigned_to: Option<String>,
    pub status: Option<TodoStatus>,
    pub journey_id: Option<JourneyId>,
    pub client_id: Option<ClientId>,
}

/// How much a stakeholder weighs in the client's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Influence {
    High,
    #[default]
    Medium,
    Low,
}

impl Influence {
    pub const ALL: [Influence; 3] = [Influence::High, Influence::Medium, Influence::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Influence::High => "high",
            Influence::Medium => "medium",
            Influence::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// How a stakeholder feels about the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Positive,
    #[default]
    Neutral,
    Negative,
}

impl Sentiment {
    pub const ALL: [Sentiment; 3] = [Sentiment::Positive, Sentiment::Neutral, Sentiment::Negative];

    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Positive => "positive",
            Sentiment::Neutral => "neutral",
            Sentiment::Negative => "negative",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// One of a client's contacts, as a stakeholder of its work.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Stakeholder {
    pub id: StakeholderId,
    pub client_id: ClientId,
    pub name: String,
    pub email: Option<String>,
    /// Their role at the client, e.g. `VP Operations`.
    pub role: String,
    pub influence: Influence,
    pub sentiment: Sentiment,
    /// Free text; empty when none.
    pub notes: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A stakeholder to add (fields already checked).
#[derive(Debug, Clone)]
pub struct NewStakeholder {
    pub client_id: ClientId,
    pub name: String,
    pub email: Option<String>,
    pub role: String,
    pub influence: Influence,
    pub sentiment: Sentiment,
    pub notes: String,
}

/// Changes to a stakeholder: a field left `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct StakeholderPatch {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub email: Option<Option<String>>,
    pub role: Option<String>,
    pub influence: Option<Influence>,
    pub sentiment: Option<Sentiment>,
    pub notes: Option<String>,
}

/// The desk's storage (see the module docs).
#[async_trait]
pub trait DeskStore: Send + Sync {
    /// Creates a to-do. The journey, the step (a stage of the journey's
    /// template), the client and the assignee (an existing user, or the
    /// writer's own token) are checked in the transaction: a reference that
    /// does not fit is [`crate::StoreError::Invalid`] at its field. A to-do
    /// of a journey takes the journey's client; one assigned to a client
    /// user belongs to that user's client (any other is refused at
    /// `/assigned_to`).
    async fn create_todo(&self, new: NewTodo, ctx: &WriteContext) -> Result<Created<Todo>>;
    async fn get_todo(&self, id: TodoId) -> Result<Todo>;
    /// To-dos in [`Todo::sort_key`] order, then by id.
    async fn list_todos(&self, filter: TodoFilter, page: PageRequest) -> Result<Page<Todo>>;
    /// Changes a to-do within `scope` (outside it: not found), checking a
    /// new assignee like [`DeskStore::create_todo`]. An empty patch changes
    /// nothing and writes nothing.
    async fn update_todo(
        &self,
        id: TodoId,
        patch: TodoPatch,
        scope: &TodoScope,
        ctx: &WriteContext,
    ) -> Result<Todo>;
    async fn delete_todo(&self, id: TodoId, ctx: &WriteContext) -> Result<()>;

    /// The owner's preferences; the defaults, stored, on the first read.
    async fn preferences(&self, owner: &str) -> Result<Preferences>;
    /// Applies a partial update (`waymark_domain::preferences::apply`) to the
    /// owner's preferences, in one transaction; an invalid one is
    /// [`crate::StoreError::Invalid`] at its first problem and changes nothing.
    async fn update_preferences(
        &self,
        owner: &str,
        patch: &Value,
        ctx: &WriteContext,
    ) -> Result<Preferences>;

    /// Adds a stakeholder to an existing client (else invalid at `/client_id`).
    async fn create_stakeholder(
        &self,
        new: NewStakeholder,
        ctx: &WriteContext,
    ) -> Result<Created<Stakeholder>>;
    /// A stakeholder of this client (one of another client: not found).
    async fn get_stakeholder(&self, client_id: ClientId, id: StakeholderId) -> Result<Stakeholder>;
    /// A client's stakeholders, oldest first.
    async fn list_stakeholders(
        &self,
        client_id: ClientId,
        page: PageRequest,
    ) -> Result<Page<Stakeholder>>;
    async fn update_stakeholder(
        &self,
        client_id: ClientId,
        id: StakeholderId,
        patch: StakeholderPatch,
        ctx: &WriteContext,
    ) -> Result<Stakeholder>;
    async fn delete_stakeholder(
        &self,
        client_id: ClientId,
        id: StakeholderId,
        ctx: &WriteContext,
    ) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn the_sort_key_orders_open_then_due_then_priority() {
        let k = sort_key;
        let open = TodoStatus::Open;
        // Open before closed, whatever the date.
        assert!(
            k(open, None, Priority::Low)
                < k(
                    TodoStatus::Completed,
                    Some(date!(2000 - 01 - 01)),
                    Priority::Urgent
                )
        );
        // Earlier due first; no date last.
        assert!(
            k(open, Some(date!(2026 - 01 - 01)), Priority::Low)
                < k(open, Some(date!(2026 - 01 - 02)), Priority::Urgent)
        );
        assert!(
            k(open, Some(date!(9999 - 12 - 31)), Priority::Low) < k(open, None, Priority::Urgent)
        );
        assert!(k(open, Some(date!(-9999 - 01 - 01)), Priority::Low) > 0);
        // Same day: urgent, high, medium, low.
        let d = Some(date!(2026 - 03 - 01));
        let ranks: Vec<i64> = [
            Priority::Urgent,
            Priority::High,
            Priority::Medium,
            Priority::Low,
        ]
        .into_iter()
        .map(|p| k(open, d, p))
        .collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]));
        assert!(k(TodoStatus::Skipped, None, Priority::Low) < 1_000_000_000);
    }
}
