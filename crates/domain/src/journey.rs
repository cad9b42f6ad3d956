//! Journeys: templates of gated stages, and the state machine that moves a
//! client through them.
//!
//! A template is an ordered list of stages. Each stage has entry and exit
//! criteria ([`crate::criteria::Check`]), activities (units of work started
//! when the stage is entered), rollback triggers with the rollback unit of
//! work, and optional milestones whose tasks hand their output to the next.
//!
//! The state machine is DESIGN's: events `start`, `promote`, `rollback`,
//! `complete_rollback`, `cancel`, `complete`, plus `pause` and `resume`;
//! states are the template's stages plus `rolling_back`, `completed`,
//! `cancelled` (and `pending` before `start`). No stage is ever skipped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::criteria::{Check, Span, TriggerSpec};
use crate::work::TaskSpec;

/// A journey template, as a pack declares it under `journeys:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JourneyTemplate {
    /// Unique among the server's templates, e.g. `client-onboarding`.
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// In order: a journey goes through them one after the other.
    pub stages: Vec<StageDef>,
}

/// One stage of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDef {
    /// Unique in the template, `[a-z0-9_]`, e.g. `sandbox`.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How long the stage should take (reported against, never enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_duration: Option<Span>,
    /// The least time in the stage before `promote` is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_soak: Option<Span>,
    /// Checked when the journey enters the stage (on `start` or `promote`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<Check>,
    /// Checked before `promote` (or `complete` from the last stage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit: Vec<Check>,
    /// Units of work started when the journey enters the stage; promotion
    /// waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activities: Vec<UnitTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackDef>,
    /// Ordered milestones, each completed by a task whose output must carry the
    /// contract's fields; the next milestone's task receives that output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<MilestoneDef>,
}

/// A unit of work to start: its name and tasks (as `POST /work/units` takes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitTemplate {
    pub name: String,
    pub tasks: Vec<TaskSpec>,
}

/// What a rollback of the stage does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackDef {
    /// The triggers that may roll the stage back; those with a metric fire by
    /// themselves.
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// Run when the rollback starts; `complete_rollback` waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitTemplate>,
    /// The stage to return to; the previous stage when left out (the first
    /// stage returns to itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A milestone of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MilestoneDef {
    pub id: String,
    pub name: String,
    /// The task that completes it (its key is the milestone id).
    pub executor: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Value,
    /// The fields its task's output must carry.
    #[serde(default)]
    pub contract: HandoffContract,
}

/// The fields a milestone's output must carry to be handed on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffContract {
    #[serde(default)]
    pub required: Vec<String>,
}
