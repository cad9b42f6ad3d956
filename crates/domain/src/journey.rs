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
//! `cancelled` (and `pending` before `start`). No stage is ever skipped by
//! `promote`.
//!
//! A *playbook* template (one with `playbook:`) is a customer-success
//! playbook: its stages are steps a person works through, each may offer
//! [`BranchDef`]s (fixed choices, an LLM conversation, saved actions), and its
//! last step completes it with one of the template's outcomes. Playbooks also
//! take the saved actions ([`apply_action`]): `skip` (the current step, with a
//! reason) moves on without the step's exit criteria; `snooze`, `escalate` and
//! `schedule` change the queue item, not the position, and are recorded in the
//! journey's history all the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;
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
    /// Set for a customer-success playbook (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<PlaybookDef>,
}

/// What makes a template a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookDef {
    /// The outcomes completing the last step may record, e.g. `renewed`,
    /// `churned` (`[a-z0-9_]`, at least one).
    pub outcomes: Vec<String>,
}

/// One way a playbook step can go, offered to the person working it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchDef {
    /// Unique in the step, `[a-z0-9_]`.
    pub key: String,
    /// What the button says.
    pub label: String,
    pub kind: BranchKind,
    /// `fixed` on the last step: the outcome choosing it records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// `llm`: what the conversation is asked to help with (its first
    /// instruction after the customer context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `action`: the saved action it offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<SavedAction>,
    /// `llm`: the artifact type of the pack a reply can be saved as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saves_as: Option<String>,
}

/// The kinds of branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BranchKind {
    /// A fixed choice: choosing it completes the step.
    Fixed,
    /// A conversation with the LLM (a thread).
    Llm,
    /// A saved action.
    Action,
}

/// The saved actions of a playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SavedAction {
    Snooze,
    Skip,
    Escalate,
    Schedule,
}

impl SavedAction {
    pub const ALL: [SavedAction; 4] = [
        SavedAction::Snooze,
        SavedAction::Skip,
        SavedAction::Escalate,
        SavedAction::Schedule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SavedAction::Snooze => "snooze",
            SavedAction::Skip => "skip",
            SavedAction::Escalate => "escalate",
            SavedAction::Schedule => "schedule",
        }
    }

    /// The history event that records it.
    pub fn event(self) -> Event {
        match self {
            SavedAction::Snooze => Event::Snooze,
            SavedAction::Skip => Event::Skip,
            SavedAction::Escalate => Event::Escalate,
            SavedAction::Schedule => Event::Schedule,
        }
    }
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
    /// Playbooks: the ways this step can go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<BranchDef>,
}

/// A unit of work to start: its name and tasks (as `POST /work/units` takes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitTemplate {
    pub name: String,
    /// An artifact type: the unit is started once per approved artifact of
    /// that type (in the engagement of the artifact the journey implements,
    /// else the client's), each task's input carrying the artifact under the
    /// type's name. A stage's activities only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
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
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Object)]
    pub input: Value,
    /// The fields its task's output must carry.
    #[serde(default)]
    pub contract: HandoffContract,
}

pub use crate::work::HandoffContract;

// --- the state machine -------------------------------------------------------------

use std::fmt;
use std::time::Duration;

use crate::criteria::ValidationResult;

/// What happens to a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Start,
    Promote,
    Rollback,
    CompleteRollback,
    Cancel,
    Complete,
    Pause,
    Resume,
    /// Playbooks: the current step passed over, with a reason.
    Skip,
    /// Playbooks: the queue item put away until a date.
    Snooze,
    /// Playbooks: handed to another owner.
    Escalate,
    /// Playbooks: a due date set.
    Schedule,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::Start,
        Event::Promote,
        Event::Rollback,
        Event::CompleteRollback,
        Event::Cancel,
        Event::Complete,
        Event::Pause,
        Event::Resume,
        Event::Skip,
        Event::Snooze,
        Event::Escalate,
        Event::Schedule,
    ];

    /// A playbook's saved action, recorded through [`apply_action`] rather
    /// than asked for as an event.
    pub fn is_action(self) -> bool {
        matches!(
            self,
            Event::Skip | Event::Snooze | Event::Escalate | Event::Schedule
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Promote => "promote",
            Event::Rollback => "rollback",
            Event::CompleteRollback => "complete_rollback",
            Event::Cancel => "cancel",
            Event::Complete => "complete",
            Event::Pause => "pause",
            Event::Resume => "resume",
            Event::Skip => "skip",
            Event::Snooze => "snooze",
            Event::Escalate => "escalate",
            Event::Schedule => "schedule",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a journey is, apart from its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Created, not started.
    Pending,
    /// In a stage.
    Active,
    /// Running the rollback of a stage.
    RollingBack,
    Completed,
    Cancelled,
}

/// A journey's position: its phase, its stage and, while rolling back, the
/// stage it returns to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub phase: Phase,
    /// The current stage (the one rolling back, while rolling back; the last
    /// one, once completed or cancelled); `None` before `start`.
    pub stage: Option<usize>,
    pub rollback_to: Option<usize>,
    pub paused: bool,
}

impl Position {
    pub const PENDING: Position = Position {
        phase: Phase::Pending,
        stage: None,
        rollback_to: None,
        paused: false,
    };

    /// The state's name: the stage id while active, else `pending`,
    /// `rolling_back`, `completed` or `cancelled`.
    pub fn state<'a>(&self, template: &'a JourneyTemplate) -> &'a str {
        match (self.phase, self.stage) {
            (Phase::Active, Some(i)) => template.stages.get(i).map_or("unknown", |s| &s.id),
            (Phase::Active, None) | (Phase::Pending, _) => "pending",
            (Phase::RollingBack, _) => "rolling_back",
            (Phase::Completed, _) => "completed",
            (Phase::Cancelled, _) => "cancelled",
        }
    }
}

/// What a transition depends on beyond the position, gathered by the caller.
#[derive(Debug, Clone, Default)]
pub struct Gate<'a> {
    /// The current stage's exit criteria (for `promote` and `complete`), with
    /// any overrides applied.
    pub exit: Option<&'a ValidationResult>,
    /// The entry criteria of the stage being entered (`start`, `promote`).
    pub entry: Option<&'a ValidationResult>,
    /// The current stage's units of work that have not completed, described
    /// (`Sandbox setup: 2 of 3 tasks done`).
    pub open_units: Vec<String>,
    /// Time left before the stage's minimum soak time is over.
    pub soak_left: Option<Duration>,
    /// The rollback unit has not completed (for `complete_rollback`).
    pub rollback_open: Option<String>,
}

/// A refused event: the state, the checks that failed, and the events that
/// are possible now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} the journey in state {state}: {}", reasons.join("; "))]
pub struct Refusal {
    pub event: Event,
    pub state: String,
    pub reasons: Vec<String>,
    pub allowed: Vec<Event>,
}

/// The stage a rollback of stage `i` returns to: its `target`, else the
/// previous stage (the first returns to itself).
pub fn rollback_target(template: &JourneyTemplate, i: usize) -> usize {
    template
        .stages
        .get(i)
        .and_then(|s| s.rollback.as_ref())
        .and_then(|r| r.target.as_ref())
        .and_then(|t| template.stages.iter().position(|s| &s.id == t))
        .unwrap_or(i.saturating_sub(1))
}

/// The events the position allows, before any criteria are looked at.
pub fn possible(template: &JourneyTemplate, at: &Position) -> Vec<Event> {
    let last = template.stages.len().saturating_sub(1);
    let mut out = Vec::new();
    match at.phase {
        Phase::Pending => out.extend([Event::Start, Event::Cancel]),
        Phase::Active if at.paused => out.extend([Event::Resume, Event::Rollback, Event::Cancel]),
        Phase::Active => {
            if at.stage.unwrap_or(0) < last {
                out.push(Event::Promote);
            } else {
                out.push(Event::Complete);
            }
            out.extend([Event::Rollback, Event::Pause, Event::Cancel]);
        }
        Phase::RollingBack => out.extend([Event::CompleteRollback, Event::Cancel]),
        Phase::Completed | Phase::Cancelled => {}
    }
    out
}

fn failed_checks(label: &str, v: Option<&ValidationResult>, reasons: &mut Vec<String>) {
    let Some(v) = v else { return };
    for c in v.checks.iter().filter(|c| c.blocks()) {
        let outcome = match c.outcome {
            crate::criteria::CheckOutcome::Inconclusive => "inconclusive",
            _ => "failed",
        };
        reasons.push(format!("{label} check {} {outcome}: {}", c.name, c.message));
    }
}

/// Applies `event` at `at`: the new position, or the refusal listing every
/// check that stops it. No stage is ever skipped: `promote` moves one stage.
pub fn apply(
    template: &JourneyTemplate,
    at: &Position,
    event: Event,
    gate: &Gate,
) -> Result<Position, Refusal> {
    let refuse = |reasons: Vec<String>| Refusal {
        event,
        state: at.state(template).to_owned(),
        reasons,
        allowed: possible(template, at),
    };
    if !possible(template, at).contains(&event) {
        let why = match (at.phase, event) {
            (Phase::Completed | Phase::Cancelled, _) => {
                format!(
                    "the journey is {}; nothing more happens to it",
                    at.state(template)
                )
            }
            (Phase::Active, _) if at.paused => "the journey is paused; resume it first".into(),
            (Phase::Active, Event::Promote) => {
                "this is the last stage; `complete` the journey instead".into()
            }
            (Phase::Active, Event::Complete) => format!(
                "the journey is in stage {}, not the last; promote it through every stage",
                at.state(template)
            ),
            _ => format!("{event} is not possible in state {}", at.state(template)),
        };
        return Err(refuse(vec![why]));
    }
    let mut reasons = Vec::new();
    let next = match event {
        Event::Start => {
            if template.stages.is_empty() {
                return Err(refuse(vec!["the template has no stages".into()]));
            }
            failed_checks("entry", gate.entry, &mut reasons);
            Position {
                phase: Phase::Active,
                stage: Some(0),
                rollback_to: None,
                paused: false,
            }
        }
        Event::Promote | Event::Complete => {
            failed_checks("exit", gate.exit, &mut reasons);
            if gate.exit.is_none() {
                reasons.push("the exit criteria were not evaluated".into());
            }
            for u in &gate.open_units {
                reasons.push(format!("unit of work not complete: {u}"));
            }
            if let Some(left) = gate.soak_left.filter(|d| !d.is_zero()) {
                reasons.push(format!(
                    "the stage's minimum soak time has {} left",
                    crate::criteria::Span(Duration::from_secs(left.as_secs().max(1)))
                ));
            }
            let i = at.stage.unwrap_or(0);
            if event == Event::Promote {
                failed_checks("entry", gate.entry, &mut reasons);
                Position {
                    stage: Some(i + 1),
                    ..*at
                }
            } else {
                Position {
                    phase: Phase::Completed,
                    ..*at
                }
            }
        }
        Event::Rollback => {
            let i = at.stage.unwrap_or(0);
            Position {
                phase: Phase::RollingBack,
                stage: Some(i),
                rollback_to: Some(rollback_target(template, i)),
                paused: false,
            }
        }
        Event::CompleteRollback => {
            if let Some(open) = &gate.rollback_open {
                reasons.push(format!("the rollback unit of work is not complete: {open}"));
            }
            Position {
                phase: Phase::Active,
                stage: at.rollback_to.or(at.stage),
                rollback_to: None,
                paused: false,
            }
        }
        Event::Cancel => Position {
            phase: Phase::Cancelled,
            paused: false,
            ..*at
        },
        Event::Pause => Position {
            paused: true,
            ..*at
        },
        Event::Resume => Position {
            paused: false,
            ..*at
        },
        Event::Skip | Event::Snooze | Event::Escalate | Event::Schedule => {
            return Err(refuse(vec![format!(
                "{event} is a saved action of playbooks; ask for it as an action"
            )]));
        }
    };
    if reasons.is_empty() {
        Ok(next)
    } else {
        Err(refuse(reasons))
    }
}

/// Applies a playbook's saved action at `at`: `skip` moves to the next step
/// without the current step's exit criteria (never past the last one, which
/// completes the playbook with an outcome); `snooze`, `escalate` and
/// `schedule` leave the position as it is. Refused for templates that are not
/// playbooks, and for finished or paused journeys.
pub fn apply_action(
    template: &JourneyTemplate,
    at: &Position,
    action: SavedAction,
) -> Result<Position, Refusal> {
    let event = action.event();
    let refuse = |why: String| Refusal {
        event,
        state: at.state(template).to_owned(),
        reasons: vec![why],
        allowed: possible(template, at),
    };
    if template.playbook.is_none() {
        return Err(refuse(format!(
            "{} is not a playbook; saved actions apply to playbook journeys only",
            template.name
        )));
    }
    match at.phase {
        Phase::Completed | Phase::Cancelled => {
            return Err(refuse(format!(
                "the playbook is {}; nothing more happens to it",
                at.state(template)
            )));
        }
        Phase::RollingBack => {
            return Err(refuse(
                "the playbook is rolling back; finish the rollback first".into(),
            ));
        }
        Phase::Active if at.paused => {
            return Err(refuse("the playbook is paused; resume it first".into()));
        }
        Phase::Pending if action == SavedAction::Skip => {
            return Err(refuse(
                "the playbook has not started; start it to skip a step".into(),
            ));
        }
        Phase::Pending | Phase::Active => {}
    }
    if action != SavedAction::Skip {
        return Ok(*at);
    }
    let i = at.stage.unwrap_or(0);
    if i + 1 >= template.stages.len() {
        return Err(refuse(
            "this is the last step; complete the playbook with an outcome instead".into(),
        ));
    }
    Ok(Position {
        stage: Some(i + 1),
        ..*at
    })
}

/// Whether `s` is a key of a playbook (an outcome, a branch): 1-64 of
/// `[a-z0-9_]`, starting with a letter.
fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks what makes a template a playbook: its outcomes, and each step's
/// branches (keys unique in the step, what each kind needs, an outcome only on
/// the last step and among the template's, `saves_as` among `artifact_types`
/// when they are known). Problems carry pointers into the template
/// (`/playbook/outcomes/0`, `/stages/2/branches/1/outcome`); branches on a
/// template that is not a playbook are a problem too.
pub fn check_playbook(
    template: &JourneyTemplate,
    artifact_types: Option<&[&str]>,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    let outcomes: &[String] = template
        .playbook
        .as_ref()
        .map_or(&[], |p| p.outcomes.as_slice());
    if let Some(p) = &template.playbook {
        if p.outcomes.is_empty() {
            out.push(FieldError::new(
                "/playbook/outcomes",
                "list at least one outcome the last step can record, e.g. renewed, churned",
            ));
        }
        for (i, o) in p.outcomes.iter().enumerate() {
            if !is_key(o) {
                out.push(FieldError::new(
                    format!("/playbook/outcomes/{i}"),
                    format!(
                        "outcome `{}` must be 1-64 lowercase letters, digits and _, like renewed",
                        o.chars().take(64).collect::<String>()
                    ),
                ));
            } else if p.outcomes[..i].contains(o) {
                out.push(FieldError::new(
                    format!("/playbook/outcomes/{i}"),
                    format!("outcome `{o}` is listed twice"),
                ));
            }
        }
    }
    let last = template.stages.len().saturating_sub(1);
    for (si, stage) in template.stages.iter().enumerate() {
        for (bi, b) in stage.branches.iter().enumerate() {
            let at = |field: &str| format!("/stages/{si}/branches/{bi}/{field}");
            if template.playbook.is_none() {
                out.push(FieldError::new(
                    at("key"),
                    "branches belong to playbooks; add `playbook: {outcomes: [...]}` to the template",
                ));
                continue;
            }
            if !is_key(&b.key) {
                out.push(FieldError::new(
                    at("key"),
                    "must be 1-64 lowercase letters, digits and _, like draft_email",
                ));
            } else if stage.branches[..bi].iter().any(|o| o.key == b.key) {
                out.push(FieldError::new(
                    at("key"),
                    format!("branch `{}` is declared twice in step {}", b.key, stage.id),
                ));
            }
            if b.label.trim().is_empty() || b.label.chars().count() > 200 {
                out.push(FieldError::new(at("label"), "must be 1-200 characters"));
            }
            let stray = |field: &str, set: bool, out: &mut Vec<FieldError>| {
                if set {
                    out.push(FieldError::new(
                        at(field),
                        format!("a {} branch takes no `{field}`", kind_name(b.kind)),
                    ));
                }
            };
            match b.kind {
                BranchKind::Fixed => {
                    stray("prompt", b.prompt.is_some(), &mut out);
                    stray("action", b.action.is_some(), &mut out);
                    stray("saves_as", b.saves_as.is_some(), &mut out);
                    match &b.outcome {
                        Some(o) if si != last => out.push(FieldError::new(
                            at("outcome"),
                            format!(
                                "only the last step records an outcome; `{o}` is on step {}",
                                stage.id
                            ),
                        )),
                        Some(o) if !outcomes.contains(o) => out.push(FieldError::new(
                            at("outcome"),
                            format!(
                                "outcome `{o}` is not one of the playbook's: {}",
                                outcomes.join(", ")
                            ),
                        )),
                        _ => {}
                    }
                }
                BranchKind::Llm => {
                    stray("outcome", b.outcome.is_some(), &mut out);
                    stray("action", b.action.is_some(), &mut out);
                    if b.prompt.as_deref().is_none_or(|p| p.trim().is_empty()) {
                        out.push(FieldError::new(
                            at("prompt"),
                            "an llm branch says what the conversation helps with in `prompt`",
                        ));
                    }
                    if let (Some(t), Some(types)) = (&b.saves_as, artifact_types)
                        && !types.contains(&t.as_str())
                    {
                        out.push(FieldError::new(
                            at("saves_as"),
                            format!(
                                "`{t}` is not an artifact type of the pack: {}",
                                types.join(", ")
                            ),
                        ));
                    }
                }
                BranchKind::Action => {
                    stray("outcome", b.outcome.is_some(), &mut out);
                    stray("prompt", b.prompt.is_some(), &mut out);
                    stray("saves_as", b.saves_as.is_some(), &mut out);
                    match b.action {
                        None => out.push(FieldError::new(
                            at("action"),
                            format!(
                                "an action branch names its action: one of {}",
                                SavedAction::ALL.map(SavedAction::as_str).join(", ")
                            ),
                        )),
                        Some(SavedAction::Skip) if si == last => out.push(FieldError::new(
                            at("action"),
                            "the last step cannot be skipped; it completes the playbook with an outcome",
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    out
}

fn kind_name(kind: BranchKind) -> &'static str {
    match kind {
        BranchKind::Fixed => "fixed",
        BranchKind::Llm => "llm",
        BranchKind::Action => "action",
    }
}

// --- the work a stage starts ---------------------------------------------------------

/// An approved artifact a `for_each` activity is repeated over.
#[derive(Debug, Clone, PartialEq)]
pub struct EachArtifact {
    pub id: String,
    pub artifact_type: String,
    pub title: String,
    pub version: i64,
    pub content: Value,
}

/// The units of work entering `stage` starts, in order: its activities (one
/// of a `for_each` activity per artifact of its type among `artifacts`, named
/// after the artifact, its tasks' input carrying the artifact under the
/// type's name), then its milestones as one unit whose tasks run in order,
/// each checked against its contract and handing its output to the next. The
/// first milestone's input is its own with the journey's `input` set over it.
pub fn stage_units(
    stage: &StageDef,
    artifacts: &[EachArtifact],
    input: &Value,
) -> Vec<UnitTemplate> {
    let mut units = Vec::with_capacity(stage.activities.len() + 1);
    for u in &stage.activities {
        let Some(ty) = &u.for_each else {
            units.push(u.clone());
            continue;
        };
        for a in artifacts.iter().filter(|a| &a.artifact_type == ty) {
            let carried = serde_json::json!({
                ty.as_str(): {
                    "artifact_id": a.id,
                    "title": a.title,
                    "version": a.version,
                    "content": a.content,
                }
            });
            let name: String = format!("{}: {}", u.name, a.title)
                .chars()
                .take(200)
                .collect();
            units.push(UnitTemplate {
                name,
                for_each: None,
                tasks: u
                    .tasks
                    .iter()
                    .map(|t| TaskSpec {
                        input: crate::work::handoff_input(&t.input, &carried),
                        ..t.clone()
                    })
                    .collect(),
            });
        }
    }
    if !stage.milestones.is_empty() {
        let mut tasks: Vec<TaskSpec> = Vec::with_capacity(stage.milestones.len());
        for (i, m) in stage.milestones.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| stage.milestones[p].id.clone());
            let input = match (i, input) {
                (0, Value::Object(_)) => crate::work::handoff_input(&m.input, input),
                _ => m.input.clone(),
            };
            tasks.push(TaskSpec {
                key: m.id.clone(),
                name: Some(m.name.clone()),
                executor: m.executor.clone(),
                input,
                depends_on: prev.iter().cloned().collect(),
                priority: 0,
                max_attempts: None,
                timeout_s: None,
                backoff: None,
                contract: Some(m.contract.clone()),
                handoff_from: prev,
            });
        }
        units.push(UnitTemplate {
            name: format!("{} milestones", stage.name)
                .chars()
                .take(200)
                .collect(),
            for_each: None,
            tasks,
        });
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::{CheckOutcome, CheckResult};
    use proptest::prelude::*;

    fn stage(id: &str, rollback_target: Option<&str>) -> StageDef {
        StageDef {
            id: id.into(),
            name: id.into(),
            description: String::new(),
            target_duration: None,
            min_soak: None,
            entry: vec![],
            exit: vec![],
            activities: vec![],
            rollback: rollback_target.map(|t| RollbackDef {
                triggers: vec![],
                unit: None,
                target: Some(t.into()),
            }),
            milestones: vec![],
            branches: vec![],
        }
    }

    fn playbook() -> JourneyTemplate {
        JourneyTemplate {
            name: "critical".into(),
            title: "Critical".into(),
            description: String::new(),
            stages: vec![stage("review", None), stage("call", None)],
            playbook: Some(PlaybookDef {
                outcomes: vec!["renewed".into(), "churned".into()],
            }),
        }
    }

    #[test]
    fn saved_actions_move_a_playbook_only_by_skip_and_never_past_its_last_step() {
        let t = playbook();
        let active = |stage| Position {
            phase: Phase::Active,
            stage: Some(stage),
            rollback_to: None,
            paused: false,
        };
        assert_eq!(
            apply_action(&t, &active(0), SavedAction::Skip).unwrap(),
            active(1)
        );
        let last = apply_action(&t, &active(1), SavedAction::Skip).unwrap_err();
        assert!(last.reasons[0].contains("last step"), "{last}");
        for a in [
            SavedAction::Snooze,
            SavedAction::Escalate,
            SavedAction::Schedule,
        ] {
            assert_eq!(apply_action(&t, &active(1), a).unwrap(), active(1));
            assert_eq!(
                apply_action(&t, &Position::PENDING, a).unwrap(),
                Position::PENDING
            );
        }
        assert!(apply_action(&t, &Position::PENDING, SavedAction::Skip).is_err());
        let done = Position {
            phase: Phase::Completed,
            ..active(1)
        };
        assert!(apply_action(&t, &done, SavedAction::Snooze).is_err());
        let paused = Position {
            paused: true,
            ..active(0)
        };
        assert!(apply_action(&t, &paused, SavedAction::Skip).is_err());
        // Not a playbook: refused, and `apply` never takes an action.
        let plain = JourneyTemplate {
            playbook: None,
            ..t.clone()
        };
        assert!(apply_action(&plain, &active(0), SavedAction::Skip).is_err());
        let gate = Gate::default();
        assert!(apply(&t, &active(0), Event::Skip, &gate).is_err());
        assert!(!possible(&t, &active(0)).iter().any(|e| e.is_action()));
    }

    fn task(key: &str, input: Value) -> TaskSpec {
        TaskSpec {
            key: key.into(),
            name: None,
            executor: "human".into(),
            input,
            depends_on: vec![],
            priority: 0,
            max_attempts: None,
            timeout_s: None,
            backoff: None,
            contract: None,
            handoff_from: None,
        }
    }

    fn wave(id: &str, title: &str) -> EachArtifact {
        EachArtifact {
            id: id.into(),
            artifact_type: "wave_definition".into(),
            title: title.into(),
            version: 2,
            content: serde_json::json!({"wave_id": id}),
        }
    }

    #[test]
    fn for_each_repeats_an_activity_per_artifact_of_its_type() {
        let mut s = stage("wave_migration", None);
        s.activities = vec![
            UnitTemplate {
                name: "Readiness".into(),
                for_each: None,
                tasks: vec![task("check", Value::Null)],
            },
            UnitTemplate {
                name: "Wave".into(),
                for_each: Some("wave_definition".into()),
                tasks: vec![task("extract", serde_json::json!({"step": "extract"}))],
            },
        ];
        let mut other = wave("x", "Not a wave");
        other.artifact_type = "sop".into();
        let units = stage_units(
            &s,
            &[wave("w1", "Ohio auto"), other, wave("w2", "Michigan home")],
            &Value::Null,
        );
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            ["Readiness", "Wave: Ohio auto", "Wave: Michigan home"]
        );
        assert_eq!(units[1].for_each, None);
        assert_eq!(
            units[1].tasks[0].input,
            serde_json::json!({"step": "extract", "wave_definition": {
                "artifact_id": "w1", "title": "Ohio auto", "version": 2, "content": {"wave_id": "w1"}}})
        );
        assert_eq!(
            units[2].tasks[0].input["wave_definition"]["artifact_id"],
            "w2"
        );
        // No artifact of the type: the activity starts nothing.
        assert_eq!(stage_units(&s, &[], &Value::Null).len(), 1);
    }

    #[test]
    fn milestones_become_one_unit_that_hands_on_in_order() {
        let mut s = stage("processing", None);
        s.name = "Processing".into();
        s.milestones = ["uploaded", "parsed", "semantic"]
            .iter()
            .map(|id| MilestoneDef {
                id: (*id).into(),
                name: format!("{id} milestone"),
                executor: "noop".into(),
                input: serde_json::json!({"from_template": id}),
                contract: HandoffContract {
                    required: vec![format!("{id}_field")],
                },
            })
            .collect();
        let units = stage_units(
            &s,
            &[],
            &serde_json::json!({"file_id": "f-1", "from_template": "journey"}),
        );
        assert_eq!(units.len(), 1);
        let u = &units[0];
        assert_eq!(u.name, "Processing milestones");
        let keys: Vec<&str> = u.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["uploaded", "parsed", "semantic"]);
        // The journey's input is set over the first milestone's.
        assert_eq!(
            u.tasks[0].input,
            serde_json::json!({"file_id": "f-1", "from_template": "journey"})
        );
        assert_eq!(
            u.tasks[1].input,
            serde_json::json!({"from_template": "parsed"})
        );
        assert_eq!(u.tasks[0].depends_on, Vec::<String>::new());
        assert_eq!(u.tasks[0].handoff_from, None);
        assert_eq!(u.tasks[2].depends_on, ["parsed"]);
        assert_eq!(u.tasks[2].handoff_from.as_deref(), Some("parsed"));
        assert_eq!(
            u.tasks[1].contract.as_ref().unwrap().required,
            ["parsed_field"]
        );
        // The unit is a valid one for the engine.
        let checked = crate::work::check_tasks(u.tasks.clone()).unwrap();
        assert_eq!(checked[2].handoff_from, Some(1));
        assert_eq!(checked[2].contract, ["semantic_field"]);
    }

    fn onboarding() -> JourneyTemplate {
        JourneyTemplate {
            name: "client-onboarding".into(),
            title: "Client onboarding".into(),
            description: String::new(),
            playbook: None,
            stages: vec![
                stage("sandbox", None),
                stage("pilot", None),
                stage("production", Some("sandbox")),
            ],
        }
    }

    fn result(checks: &[(&str, CheckOutcome)]) -> ValidationResult {
        ValidationResult {
            passed: checks.iter().all(|c| c.1 == CheckOutcome::Passed),
            summary: String::new(),
            checks: checks
                .iter()
                .map(|(name, outcome)| CheckResult {
                    name: (*name).into(),
                    outcome: *outcome,
                    passed: *outcome == CheckOutcome::Passed,
                    actual: serde_json::Value::Null,
                    expected: serde_json::Value::Null,
                    message: format!("{name} message"),
                    dry_run: false,
                    overridden: false,
                })
                .collect(),
        }
    }

    fn open_gate(v: &ValidationResult) -> Gate<'_> {
        Gate {
            exit: Some(v),
            entry: Some(v),
            ..Gate::default()
        }
    }

    #[test]
    fn a_journey_goes_through_every_stage_in_order() {
        let t = onboarding();
        let ok = result(&[]);
        let g = open_gate(&ok);
        let at = apply(&t, &Position::PENDING, Event::Start, &g).unwrap();
        assert_eq!(at.state(&t), "sandbox");
        let err = apply(&t, &at, Event::Complete, &g).unwrap_err();
        assert!(err.reasons[0].contains("not the last"), "{err}");
        assert_eq!(
            err.allowed,
            [Event::Promote, Event::Rollback, Event::Pause, Event::Cancel]
        );
        let at = apply(&t, &at, Event::Promote, &g).unwrap();
        assert_eq!(at.state(&t), "pilot");
        let at = apply(&t, &at, Event::Promote, &g).unwrap();
        assert_eq!(at.state(&t), "production");
        let err = apply(&t, &at, Event::Promote, &g).unwrap_err();
        assert!(err.reasons[0].contains("last stage"), "{err}");
        let done = apply(&t, &at, Event::Complete, &g).unwrap();
        assert_eq!(done.state(&t), "completed");
        for e in Event::ALL {
            assert!(apply(&t, &done, e, &g).is_err(), "{e} after completion");
        }
    }

    #[test]
    fn promotion_is_refused_with_every_failed_check() {
        let t = onboarding();
        let ok = result(&[]);
        let at = apply(&t, &Position::PENDING, Event::Start, &open_gate(&ok)).unwrap();
        let exit = result(&[
            ("connectors", CheckOutcome::Passed),
            ("search_precision", CheckOutcome::Failed),
            ("stakeholder_demo", CheckOutcome::Inconclusive),
        ]);
        let gate = Gate {
            exit: Some(&exit),
            entry: Some(&ok),
            open_units: vec!["Sandbox setup: 2 of 3 tasks done".into()],
            soak_left: Some(Duration::from_secs(3_600)),
            rollback_open: None,
        };
        let err = apply(&t, &at, Event::Promote, &gate).unwrap_err();
        assert_eq!(err.state, "sandbox");
        assert_eq!(err.reasons.len(), 4, "{err}");
        assert!(err.reasons[0].contains("search_precision failed"));
        assert!(err.reasons[1].contains("stakeholder_demo inconclusive"));
        assert!(err.reasons[2].contains("Sandbox setup"));
        assert!(err.reasons[3].contains("1h left"));
        // Without exit criteria evaluated, nothing is promoted either.
        let blind = Gate::default();
        assert!(apply(&t, &at, Event::Promote, &blind).is_err());
    }

    #[test]
    fn a_rollback_returns_to_the_previous_or_named_stage_once_its_unit_is_done() {
        let t = onboarding();
        let ok = result(&[]);
        let g = open_gate(&ok);
        let sandbox = apply(&t, &Position::PENDING, Event::Start, &g).unwrap();
        let pilot = apply(&t, &sandbox, Event::Promote, &g).unwrap();
        let back = apply(&t, &pilot, Event::Rollback, &g).unwrap();
        assert_eq!(back.state(&t), "rolling_back");
        assert_eq!(back.rollback_to, Some(0));
        let busy = Gate {
            rollback_open: Some("Pilot rollback: 0 of 1 tasks done".into()),
            ..Gate::default()
        };
        let err = apply(&t, &back, Event::CompleteRollback, &busy).unwrap_err();
        assert!(err.reasons[0].contains("rollback unit"), "{err}");
        assert_eq!(err.allowed, [Event::CompleteRollback, Event::Cancel]);
        let again = apply(&t, &back, Event::CompleteRollback, &g).unwrap();
        assert_eq!(again.state(&t), "sandbox");
        // The first stage rolls back to itself; production names sandbox.
        let first = apply(&t, &sandbox, Event::Rollback, &g).unwrap();
        assert_eq!(first.rollback_to, Some(0));
        assert_eq!(rollback_target(&t, 2), 0);
        assert_eq!(rollback_target(&t, 1), 0);
    }

    #[test]
    fn paused_journeys_wait_and_cancelled_ones_stay_cancelled() {
        let t = onboarding();
        let ok = result(&[]);
        let g = open_gate(&ok);
        let at = apply(&t, &Position::PENDING, Event::Start, &g).unwrap();
        let paused = apply(&t, &at, Event::Pause, &g).unwrap();
        let err = apply(&t, &paused, Event::Promote, &g).unwrap_err();
        assert!(err.reasons[0].contains("paused"), "{err}");
        let resumed = apply(&t, &paused, Event::Resume, &g).unwrap();
        assert_eq!(resumed, at);
        let cancelled = apply(&t, &Position::PENDING, Event::Cancel, &g).unwrap();
        assert_eq!(cancelled.state(&t), "cancelled");
        assert!(apply(&t, &cancelled, Event::Start, &g).is_err());
    }

    proptest! {
        #[test]
        fn no_stage_is_ever_skipped(events in proptest::collection::vec(0usize..8, 0..40)) {
            let t = onboarding();
            let ok = result(&[]);
            let g = open_gate(&ok);
            let mut at = Position::PENDING;
            for e in events {
                let event = Event::ALL[e];
                if let Ok(next) = apply(&t, &at, event, &g) {
                    match (at.stage, next.stage) {
                        (Some(a), Some(b)) if b > a => {
                            prop_assert_eq!(b, a + 1);
                            prop_assert_eq!(event, Event::Promote);
                        }
                        (None, Some(b)) => prop_assert_eq!(b, 0),
                        _ => {}
                    }
                    prop_assert!(!matches!(at.phase, Phase::Completed | Phase::Cancelled));
                    at = next;
                }
            }
        }
    }
}

/// Why a journey needs attention, if it does: rolling back, its current
/// stage's last exit check failed, or it is past the stage's target duration
/// (`in_stage`: how long it has been in the stage). The dashboard's "journeys
/// at risk".
pub fn at_risk(
    position: &Position,
    stage: Option<&StageDef>,
    last_check_failed: Option<&str>,
    in_stage: Option<Duration>,
) -> Option<String> {
    match position.phase {
        Phase::RollingBack => return Some("rolling back".into()),
        Phase::Active => {}
        _ => return None,
    }
    if let Some(failed) = last_check_failed {
        return Some(format!("exit check failed: {failed}"));
    }
    let (Some(s), Some(spent)) = (stage, in_stage) else {
        return None;
    };
    let target = s.target_duration?;
    (spent > target.0).then(|| {
        format!(
            "{} in {}, past its target of {target}",
            elapsed(spent),
            s.name
        )
    })
}

/// A duration in the largest whole unit: `3 days`, `5 hours`, `1 minute`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3_600 => (s / 60, "minute"),
        3_600..86_400 => (s / 3_600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod at_risk_tests {
    use super::*;

    fn stage(target: &str) -> StageDef {
        serde_json::from_value(
            serde_json::json!({"id": "pilot", "name": "Pilot", "target_duration": target}),
        )
        .unwrap()
    }

    #[test]
    fn rollbacks_failed_checks_and_overruns_are_at_risk() {
        let active = Position {
            phase: Phase::Active,
            stage: Some(0),
            rollback_to: None,
            paused: false,
        };
        let day = Duration::from_secs(86_400);
        let s = stage("7d");
        assert_eq!(at_risk(&active, Some(&s), None, Some(day * 3)), None);
        assert_eq!(
            at_risk(&active, Some(&s), None, Some(day * 9)).as_deref(),
            Some("9 days in Pilot, past its target of 7d")
        );
        assert!(
            at_risk(&active, Some(&s), Some("precision"), Some(day))
                .unwrap()
                .contains("precision")
        );
        let rolling = Position {
            phase: Phase::RollingBack,
            ..active
        };
        assert_eq!(
            at_risk(&rolling, None, None, None).as_deref(),
            Some("rolling back")
        );
        assert_eq!(
            at_risk(&Position::PENDING, Some(&s), Some("x"), Some(day * 99)),
            None
        );
        assert_eq!(elapsed(Duration::from_secs(1)), "1 second");
        assert_eq!(elapsed(Duration::from_secs(7_300)), "2 hours");
    }
}
