//! Journeys' storage: journeys with their position, the history of every
//! transition, metric observations, sign-offs, the units of work each stage
//! started, and journey templates added over the API. [`JourneyStore`] and
//! its records. The rules (which event is allowed, what the criteria say) are
//! `waymark_domain::journey` and `waymark_domain::criteria`; the store records
//! a transition the caller decided, in one transaction with the units of work
//! it starts, and refuses it when the journey moved meanwhile.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::criteria::{Trigger, ValidationResult};
use waymark_domain::journey::{Event, JourneyTemplate, Phase, Position};
use waymark_domain::queue::Effect;
use waymark_domain::work::UnitStatus;
use waymark_domain::{ArtifactId, ClientId, JourneyId, QueueItemId, UnitId};

use crate::{Created, NewUnit, Page, PageRequest, Result, WriteContext};

/// A journey to create (in `pending`; `start` enters the first stage).
#[derive(Debug, Clone)]
pub struct NewJourney {
    pub client_id: ClientId,
    pub name: String,
    /// The template, copied onto the journey: later changes to the template
    /// do not move running journeys.
    pub template: JourneyTemplate,
    /// The approved artifact it implements, if any: it becomes `implemented`
    /// with the journey's creation (refused unless it is `approved`).
    pub source_artifact_id: Option<ArtifactId>,
    /// What it starts with: the first milestone's input (`null`: nothing).
    pub input: serde_json::Value,
    /// The queue item it starts (a playbook): the item takes the journey, in
    /// the same transaction; refused (409) when it already has one or is closed.
    pub queue_item: Option<QueueItemId>,
}

/// A journey and where it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Journey {
    pub id: JourneyId,
    pub client_id: ClientId,
    pub name: String,
    /// The template's name.
    pub template: String,
    /// The current stage's id, or `pending`, `rolling_back`, `completed`,
    /// `cancelled`.
    pub state: String,
    pub phase: Phase,
    /// The current stage's id (while rolling back: the stage rolling back).
    pub stage: Option<String>,
    /// While rolling back: the stage it returns to.
    pub rollback_to: Option<String>,
    pub paused: bool,
    /// The stages in order, for progress.
    pub stages: Vec<String>,
    pub source_artifact_id: Option<ArtifactId>,
    /// The trace id of the request that created it, carried on its tasks.
    pub trace_id: Option<String>,
    /// The last validation of the current stage's exit criteria.
    pub last_validation: Option<ValidationResult>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stage_started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// What it started with: the first milestone's input (`null`: nothing).
    #[schema(value_type = Option<Object>)]
    pub input: serde_json::Value,
    /// How a playbook ended: one of its template's outcomes.
    pub outcome: Option<String>,
    /// The template as the journey runs it.
    #[serde(skip)]
    pub definition: JourneyTemplate,
}

impl Journey {
    /// The position the state machine works on.
    pub fn position(&self) -> Position {
        let index = |id: &Option<String>| {
            id.as_ref()
                .and_then(|s| self.definition.stages.iter().position(|d| &d.id == s))
        };
        Position {
            phase: self.phase,
            stage: index(&self.stage),
            rollback_to: index(&self.rollback_to),
            paused: self.paused,
        }
    }
}

/// One recorded transition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JourneyHistoryEntry {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub event: Event,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    pub trigger: Option<Trigger>,
    /// Fired by a rollback trigger's threshold, not by a person.
    pub automatic: bool,
    /// The validation that allowed it (promote, complete).
    pub validation: Option<ValidationResult>,
    /// Inconclusive checks a person overrode to allow it.
    pub overrides: Vec<String>,
    pub trace_id: Option<String>,
}

/// A transition decided by the caller, to record.
#[derive(Debug, Clone)]
pub struct JourneyTransition {
    pub journey_id: JourneyId,
    /// The position the decision was made on: refused (409) when the journey
    /// is no longer there.
    pub from: Position,
    pub to: Position,
    pub event: Event,
    pub reason: Option<String>,
    pub trigger: Option<Trigger>,
    pub automatic: bool,
    pub validation: Option<ValidationResult>,
    pub overrides: Vec<String>,
    /// Units of work started with it: the entered stage's activities, or the
    /// rollback unit.
    pub units: Vec<(NewUnit, UnitKind)>,
    /// `complete` of a playbook: the outcome it records.
    pub outcome: Option<String>,
    /// A saved action's change to the playbook's queue item.
    pub item: Option<Effect>,
}

/// Why a journey started a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// An activity of a stage, started when the journey entered it.
    Activity,
    /// The rollback unit of a stage.
    Rollback,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Activity => "activity",
            UnitKind::Rollback => "rollback",
        }
    }
}

/// A unit of work a journey started, with where it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JourneyUnit {
    pub unit_id: UnitId,
    pub name: String,
    /// The stage it belongs to.
    pub stage: String,
    pub kind: UnitKind,
    /// The history entry that started it: units of an earlier visit of the
    /// stage have a lower one.
    pub entered_seq: i64,
    pub status: UnitStatus,
    pub tasks_total: i64,
    pub tasks_done: i64,
}

/// A journey with what it recorded.
#[derive(Debug, Clone)]
pub struct JourneyRecords {
    pub journey: Journey,
    pub history: Vec<JourneyHistoryEntry>,
    pub attempts: Vec<ExitAttemptRecord>,
}

/// One evaluation of a stage's exit criteria by a promote or complete.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExitAttemptRecord {
    pub stage: String,
    pub passed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A metric observation to record.
#[derive(Debug, Clone)]
pub struct NewObservation {
    pub name: String,
    pub value: f64,
    pub at: OffsetDateTime,
}

/// A recorded metric observation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricRecord {
    pub name: String,
    pub value: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The stage the journey was in when it was recorded.
    pub stage: Option<String>,
    pub recorded_by: String,
}

/// A named sign-off.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Signoff {
    pub name: String,
    pub stage: Option<String>,
    pub signed_by: String,
    pub note: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A client person's rating of a completed stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rating {
    pub journey_id: JourneyId,
    /// The stage's id.
    pub stage: String,
    /// 1 to 5.
    pub score: u8,
    pub comment: Option<String>,
    /// Who rated (`usr_…`) and their name.
    pub rated_by: String,
    pub rated_by_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A rating to record (checked: the stage completed, the score in range).
#[derive(Debug, Clone)]
pub struct NewRating {
    pub journey_id: JourneyId,
    pub stage: String,
    pub score: u8,
    pub comment: Option<String>,
}

#[async_trait]
pub trait JourneyStore: Send + Sync {
    /// Adds or replaces a template made over the API; `true` when it is new.
    async fn put_journey_template(
        &self,
        template: JourneyTemplate,
        ctx: &WriteContext,
    ) -> Result<bool>;
    async fn list_journey_templates(&self) -> Result<Vec<JourneyTemplate>>;

    async fn create_journey(&self, new: NewJourney, ctx: &WriteContext)
    -> Result<Created<Journey>>;
    async fn get_journey(&self, id: JourneyId) -> Result<Journey>;
    async fn list_journeys(
        &self,
        client_id: Option<ClientId>,
        template: Option<String>,
        page: PageRequest,
    ) -> Result<Page<Journey>>;
    /// Records a transition with its history entry and the units it starts,
    /// in one transaction; refused when the journey moved meanwhile.
    async fn journey_event(&self, t: JourneyTransition, ctx: &WriteContext) -> Result<Journey>;
    async fn journey_history(&self, id: JourneyId) -> Result<Vec<JourneyHistoryEntry>>;
    /// The units of work the journey started, oldest first.
    async fn journey_units(&self, id: JourneyId) -> Result<Vec<JourneyUnit>>;
    /// Records an evaluation of the current stage's exit criteria (a promote
    /// or complete asked for, allowed or not): the last validation, and an
    /// exit attempt for the analytics.
    async fn record_exit_validation(&self, id: JourneyId, v: &ValidationResult) -> Result<()>;
    /// The newest `limit` journeys of a template with their histories and
    /// exit attempts (without the validations), for the analytics.
    async fn template_runs(&self, template: &str, limit: usize) -> Result<Vec<JourneyRecords>>;
    /// Every exit attempt of the journey, oldest first.
    async fn exit_attempts(&self, id: JourneyId) -> Result<Vec<ExitAttemptRecord>>;

    async fn record_metrics(
        &self,
        id: JourneyId,
        observations: Vec<NewObservation>,
        ctx: &WriteContext,
    ) -> Result<Vec<MetricRecord>>;
    async fn journey_metrics(&self, id: JourneyId) -> Result<Vec<MetricRecord>>;
    async fn sign_off(
        &self,
        id: JourneyId,
        name: String,
        note: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Signoff>;
    async fn signoffs(&self, id: JourneyId) -> Result<Vec<Signoff>>;
    /// Records a rating, once per person (the context's actor) and stage:
    /// another for the same refuses `already_rated`.
    async fn rate_stage(&self, rating: NewRating, ctx: &WriteContext) -> Result<Rating>;
    /// A journey's ratings, oldest first.
    async fn journey_ratings(&self, id: JourneyId) -> Result<Vec<Rating>>;
    /// The scores given to a template's journeys (newest first, at most
    /// `limit`), each with its client's owner.
    async fn template_ratings(
        &self,
        template: &str,
        limit: i64,
    ) -> Result<Vec<(u8, Option<String>)>>;
}
