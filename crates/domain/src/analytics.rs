//! Journey analytics: what the recorded history of a template's journeys says
//! about the template.
//!
//! The input is each journey's recorded life ([`JourneyRun`]): its transitions
//! ([`Step`]s, in order) and every evaluation of a stage's exit criteria made
//! when someone asked to promote or complete ([`ExitAttempt`]s). The output
//! ([`JourneyAnalytics`]) counts journeys by outcome, gives success,
//! cancellation and rollback rates, and per stage: entries, time spent in it,
//! how often that exceeds the stage's target, how often its exit criteria pass
//! at the first attempt, and the rollbacks out of it. The stage that holds
//! journeys the longest (against its target when stages have one) is named the
//! bottleneck.
//!
//! Time in a stage is measured in visits. A visit starts at a step that enters
//! the stage from another state (`start`, `promote`, `complete_rollback`) and
//! ends at the next step that leaves it (`promote`, `complete`, `rollback`,
//! `cancel`); `pause` and `resume` keep the state and so do not end a visit. A
//! journey's time in a stage is the sum of its visits; the visit of a journey
//! still active in the stage is counted up to `now`.
//!
//! Histories are taken as recorded: states that are neither a stage of the
//! template nor `pending`, `rolling_back`, `completed` or `cancelled` are
//! ignored, empty histories are journeys that never started, and a step dated
//! before the one that opened a visit counts as no time rather than negative
//! time.
//!
//! ```
//! use waymark_domain::analytics::{journey_analytics, JourneyRun, Step};
//! use waymark_domain::journey::{Event, JourneyTemplate, Phase};
//! use time::macros::datetime;
//!
//! let template: JourneyTemplate = serde_json::from_value(serde_json::json!({
//!     "name": "onboarding",
//!     "title": "Onboarding",
//!     "stages": [{"id": "sandbox", "name": "Sandbox", "target_duration": "2d"}],
//! }))
//! .unwrap();
//! let step = |at, event, from: &str, to: &str| Step {
//!     at,
//!     event,
//!     from: from.into(),
//!     to: to.into(),
//!     trigger: None,
//! };
//! let run = JourneyRun {
//!     phase: Phase::Completed,
//!     paused: false,
//!     steps: vec![
//!         step(datetime!(2025-03-03 9:00 UTC), Event::Start, "pending", "sandbox"),
//!         step(datetime!(2025-03-06 9:00 UTC), Event::Complete, "sandbox", "completed"),
//!     ],
//!     attempts: vec![],
//! };
//! let report = journey_analytics(&template, &[run], datetime!(2025-03-10 0:00 UTC));
//! assert_eq!(report.success_rate, Some(1.0));
//! assert_eq!(report.stages[0].over_target, 1);
//! let bottleneck = report.bottleneck.unwrap();
//! assert_eq!(
//!     bottleneck.reason,
//!     "median 3.0 days in stage against a target of 2 days"
//! );
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::criteria::Trigger;
use crate::journey::{Event, JourneyTemplate, Phase};

/// The key of [`JourneyAnalytics::rollbacks_by_trigger`] for rollbacks
/// recorded without a trigger.
pub const NO_TRIGGER: &str = "unspecified";

/// One recorded transition of a journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: OffsetDateTime,
    pub event: Event,
    /// The state before: a stage id of the template, or `pending`,
    /// `rolling_back`, `completed`, `cancelled`.
    pub from: String,
    /// The state after (the same as `from` for `pause` and `resume`).
    pub to: String,
    /// The rollback trigger that caused a `rollback`, when one did.
    pub trigger: Option<Trigger>,
}

/// One evaluation of a stage's exit criteria when someone asked to promote or
/// complete, whether it passed or was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitAttempt {
    pub at: OffsetDateTime,
    /// The stage id whose exit criteria were evaluated.
    pub stage: String,
    pub passed: bool,
}

/// A journey's recorded life.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyRun {
    /// The journey's phase now.
    pub phase: Phase,
    pub paused: bool,
    /// Its transitions, in the order they happened.
    pub steps: Vec<Step>,
    /// Its exit-criteria evaluations, in the order they happened.
    pub attempts: Vec<ExitAttempt>,
}

/// Analytics of the journeys of one template.
///
/// Rates are shares of the started journeys (between 0 and 1), `null` when no
/// journey has started. A journey cancelled before it started counts in
/// `journeys` only.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JourneyAnalytics {
    /// The template's name.
    pub template: String,
    /// Every journey of the template.
    pub journeys: usize,
    /// Journeys with a `start` step.
    pub started: usize,
    /// Started journeys now completed.
    pub completed: usize,
    /// Started journeys now cancelled.
    pub cancelled: usize,
    /// Started journeys neither completed nor cancelled.
    pub in_progress: usize,
    /// `completed / started`.
    pub success_rate: Option<f64>,
    /// `cancelled / started`.
    pub cancellation_rate: Option<f64>,
    /// The share of started journeys rolled back at least once.
    pub rollback_rate: Option<f64>,
    /// Rollback steps, all journeys together.
    pub rollbacks: usize,
    /// Rollback steps by trigger (`unspecified` for those without one).
    pub rollbacks_by_trigger: BTreeMap<String, usize>,
    /// One entry per stage, in the template's order.
    pub stages: Vec<StageAnalytics>,
    /// Per journey that reached the last stage: from its `start` step to its
    /// first entry into the last stage.
    pub time_to_last_stage: Durations,
    /// The stage that holds journeys the longest; `null` when no stage has
    /// timing data.
    pub bottleneck: Option<Bottleneck>,
    /// The client's ratings of completed stages: overall and per client owner.
    pub ratings: crate::rating::RatingAnalytics,
}

/// Analytics of one stage of a template.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StageAnalytics {
    pub id: String,
    pub name: String,
    /// Journeys that entered the stage at least once.
    pub entered: usize,
    /// Entries into the stage, re-entries after a rollback included.
    pub visits: usize,
    /// Active journeys in the stage now.
    pub in_stage_now: usize,
    /// Per journey: the total time of its visits to the stage (an open visit
    /// counted up to now).
    pub time_in_stage: Durations,
    /// The stage's target duration, in seconds.
    pub target_duration_s: Option<u64>,
    /// Journeys whose time in the stage exceeds its target.
    pub over_target: usize,
    /// Exit-criteria evaluations recorded for the stage.
    pub exit_attempts: usize,
    /// Of the journeys with at least one exit-criteria evaluation for the
    /// stage, the share whose first evaluation passed.
    pub first_pass_rate: Option<f64>,
    /// Rollback steps out of the stage.
    pub rollbacks: usize,
}

/// Summary statistics of a set of durations, in seconds.
///
/// Percentiles are nearest-rank: the `p` percentile (`0 < p <= 1`) of `n`
/// sorted values is the value at rank `ceil(p * n)`, counting from 1, so it is
/// always one of the recorded values. The median is the 0.5 percentile by the
/// same rule (the lower middle value when `n` is even: 5 for 1 to 10).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Durations {
    pub count: usize,
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub mean_s: Option<f64>,
    pub max_s: Option<f64>,
}

impl Durations {
    /// Summarizes `seconds`, in any order. Every statistic is `None` when
    /// there are none.
    pub fn of(mut seconds: Vec<f64>) -> Durations {
        seconds.sort_by(f64::total_cmp);
        let count = seconds.len();
        Durations {
            count,
            median_s: nearest_rank(&seconds, 50),
            p90_s: nearest_rank(&seconds, 90),
            mean_s: (count > 0).then(|| seconds.iter().sum::<f64>() / count as f64),
            max_s: seconds.last().copied(),
        }
    }
}

/// The `percent` percentile of `sorted` by nearest rank: the value at rank
/// `ceil(percent * n / 100)`, 1-based. Integer arithmetic keeps the rank exact.
fn nearest_rank(sorted: &[f64], percent: usize) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (percent * n).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

/// The stage that holds journeys the longest.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bottleneck {
    /// The stage id.
    pub stage: String,
    /// The median time journeys spend in it, in seconds.
    pub median_s: f64,
    /// Why this stage, as a sentence.
    pub reason: String,
}

/// What one journey's history says about one stage.
#[derive(Debug, Clone, Default)]
struct RunStage {
    visits: usize,
    /// Total time of its visits; `None` when no visit could be timed.
    time: Option<time::Duration>,
    /// Its first exit-criteria evaluation passed; `None` without one.
    first_attempt: Option<bool>,
    rollbacks: usize,
}

impl RunStage {
    /// Adds a visit from `since` to `until` (no time if `until` comes first).
    fn add_visit(&mut self, since: OffsetDateTime, until: OffsetDateTime) {
        let spent = (until - since).max(time::Duration::ZERO);
        self.time = Some(self.time.unwrap_or(time::Duration::ZERO) + spent);
    }
}

/// What one journey's history says, stage by stage.
struct RunSummary {
    started: bool,
    rollbacks: usize,
    stages: Vec<RunStage>,
    /// The stage it is active in now.
    current: Option<usize>,
    /// From its `start` step to its first entry into the last stage.
    to_last_stage: Option<time::Duration>,
}

/// Reads one journey's history. `index` maps the template's stage ids to
/// their positions among its `count` stages.
fn summarize(
    run: &JourneyRun,
    index: &HashMap<&str, usize>,
    count: usize,
    now: OffsetDateTime,
) -> RunSummary {
    let last = count.checked_sub(1);
    let mut stages = vec![RunStage::default(); count];
    let mut started_at = None;
    let mut rollbacks = 0;
    let mut to_last_stage = None;
    // The visit in progress: the stage and when it was entered.
    let mut open: Option<(usize, OffsetDateTime)> = None;

    for step in &run.steps {
        if step.event == Event::Start && started_at.is_none() {
            started_at = Some(step.at);
        }
        let from = index.get(step.from.as_str()).copied();
        if step.event == Event::Rollback {
            rollbacks += 1;
            if let Some(i) = from {
                stages[i].rollbacks += 1;
            }
        }
        if step.from == step.to {
            // `pause`, `resume`: the journey stays where it is.
            continue;
        }
        let to = index.get(step.to.as_str()).copied();
        // A journey is in one state at a time: leaving the stage of the open
        // visit ends it, and so does entering a stage (which, in a consistent
        // history, only happens from another state).
        if let Some((i, since)) = open
            && (from == Some(i) || to.is_some())
        {
            stages[i].add_visit(since, step.at);
            open = None;
        }
        if let Some(i) = to {
            stages[i].visits += 1;
            open = Some((i, step.at));
            if Some(i) == last
                && to_last_stage.is_none()
                && let Some(start) = started_at
            {
                to_last_stage = Some((step.at - start).max(time::Duration::ZERO));
            }
        }
    }

    // The history ends in a stage: the journey is still there if its phase
    // agrees, and the visit runs until now. Otherwise the history is
    // incomplete and the open visit cannot be timed.
    let current = match open {
        Some((i, since)) if run.phase == Phase::Active => {
            stages[i].add_visit(since, now);
            Some(i)
        }
        _ => None,
    };

    for attempt in &run.attempts {
        if let Some(&i) = index.get(attempt.stage.as_str()) {
            stages[i].first_attempt.get_or_insert(attempt.passed);
        }
    }

    RunSummary {
        started: started_at.is_some(),
        rollbacks,
        stages,
        current,
        to_last_stage,
    }
}

/// A share, `None` when there is nothing to share out.
fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Computes the analytics of `template`'s journeys from their recorded
/// histories. `now` ends the visits of journeys still in a stage.
pub fn journey_analytics(
    template: &JourneyTemplate,
    runs: &[JourneyRun],
    now: OffsetDateTime,
) -> JourneyAnalytics {
    let index: HashMap<&str, usize> = template
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let summaries: Vec<RunSummary> = runs
        .iter()
        .map(|run| summarize(run, &index, template.stages.len(), now))
        .collect();

    let started = summaries.iter().filter(|s| s.started).count();
    let finished = |phase: Phase| {
        runs.iter()
            .zip(&summaries)
            .filter(|(run, s)| s.started && run.phase == phase)
            .count()
    };
    let completed = finished(Phase::Completed);
    let cancelled = finished(Phase::Cancelled);
    let rolled_back = summaries
        .iter()
        .filter(|s| s.started && s.rollbacks > 0)
        .count();

    let mut rollbacks_by_trigger = BTreeMap::new();
    for step in runs.iter().flat_map(|r| &r.steps) {
        if step.event == Event::Rollback {
            let key = step.trigger.map_or(NO_TRIGGER, Trigger::as_str);
            *rollbacks_by_trigger.entry(key.to_string()).or_insert(0) += 1;
        }
    }

    let stages: Vec<StageAnalytics> = template
        .stages
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let per_run = || summaries.iter().map(move |s| &s.stages[i]);
            let times: Vec<f64> = per_run()
                .filter_map(|s| s.time.map(|t| t.as_seconds_f64()))
                .collect();
            let target = def.target_duration.map(|span| span.0.as_secs());
            let over_target = target.map_or(0, |t| times.iter().filter(|&&s| s > t as f64).count());
            let attempted = per_run().filter(|s| s.first_attempt.is_some()).count();
            let first_passed = per_run().filter(|s| s.first_attempt == Some(true)).count();
            StageAnalytics {
                id: def.id.clone(),
                name: def.name.clone(),
                entered: per_run().filter(|s| s.visits > 0).count(),
                visits: per_run().map(|s| s.visits).sum(),
                in_stage_now: summaries.iter().filter(|s| s.current == Some(i)).count(),
                time_in_stage: Durations::of(times),
                target_duration_s: target,
                over_target,
                exit_attempts: runs
                    .iter()
                    .flat_map(|r| &r.attempts)
                    .filter(|a| a.stage == def.id)
                    .count(),
                first_pass_rate: rate(first_passed, attempted),
                rollbacks: per_run().map(|s| s.rollbacks).sum(),
            }
        })
        .collect();

    let time_to_last_stage = Durations::of(
        summaries
            .iter()
            .filter_map(|s| s.to_last_stage.map(|t| t.as_seconds_f64()))
            .collect(),
    );
    let bottleneck = bottleneck(&stages);

    JourneyAnalytics {
        template: template.name.clone(),
        journeys: runs.len(),
        started,
        completed,
        cancelled,
        in_progress: started - completed - cancelled,
        success_rate: rate(completed, started),
        cancellation_rate: rate(cancelled, started),
        rollback_rate: rate(rolled_back, started),
        rollbacks: summaries.iter().map(|s| s.rollbacks).sum(),
        rollbacks_by_trigger,
        stages,
        time_to_last_stage,
        bottleneck,
        ratings: Default::default(),
    }
}

/// The bottleneck among the stages with timing data: when any of them has a
/// (non-zero) target, the one whose median is the largest multiple of its
/// target, compared over those with a target only; otherwise the one with the
/// largest median. A tie goes to the earlier stage.
fn bottleneck(stages: &[StageAnalytics]) -> Option<Bottleneck> {
    // (stage, median, target) for every stage with timing data.
    let timed: Vec<(&StageAnalytics, f64, Option<u64>)> = stages
        .iter()
        .filter_map(|s| {
            let median = s.time_in_stage.median_s?;
            Some((s, median, s.target_duration_s.filter(|&t| t > 0)))
        })
        .collect();

    let by_ratio = first_max(timed.iter().filter_map(|&(s, median, target)| {
        let target = target?;
        Some(((s, median, target), median / target as f64))
    }));
    if let Some((stage, median, target)) = by_ratio {
        return Some(Bottleneck {
            stage: stage.id.clone(),
            median_s: median,
            reason: format!(
                "median {} in stage against a target of {}",
                measured(median),
                whole(target)
            ),
        });
    }

    let (stage, median) = first_max(timed.iter().map(|&(s, m, _)| ((s, m), m)))?;
    Some(Bottleneck {
        stage: stage.id.clone(),
        median_s: median,
        reason: format!("longest median time in stage ({})", measured(median)),
    })
}

/// The item with the highest score, the first of them on a tie.
fn first_max<T>(scored: impl IntoIterator<Item = (T, f64)>) -> Option<T> {
    scored
        .into_iter()
        .reduce(|best, next| if next.1 > best.1 { next } else { best })
        .map(|(item, _)| item)
}

/// The largest unit a number of seconds reaches: seconds, minutes, hours or
/// days, with its size in seconds.
fn unit(seconds: f64) -> (&'static str, f64) {
    [("day", 86_400.0), ("hour", 3_600.0), ("minute", 60.0)]
        .into_iter()
        .find(|&(_, size)| seconds >= size)
        .unwrap_or(("second", 1.0))
}

/// A measured duration with one decimal: `3.2 days`, `5.0 hours`.
fn measured(seconds: f64) -> String {
    let (name, size) = unit(seconds);
    format!("{:.1} {name}s", seconds / size)
}

/// A configured duration, without decimals when it is a whole number of its
/// unit: `2 days`, `1 hour`, `1.5 hours`.
fn whole(seconds: u64) -> String {
    let (name, size) = unit(seconds as f64);
    let size = size as u64;
    if !seconds.is_multiple_of(size) {
        return measured(seconds as f64);
    }
    match seconds / size {
        1 => format!("1 {name}"),
        n => format!("{n} {name}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const HOUR: f64 = 3_600.0;

    /// Stages `(id, target)`; targets are written as in a pack (`12h`, `2d`).
    fn template(stages: &[(&str, Option<&str>)]) -> JourneyTemplate {
        let stages: Vec<serde_json::Value> = stages
            .iter()
            .map(|(id, target)| match target {
                Some(t) => {
                    serde_json::json!({"id": id, "name": id.to_uppercase(), "target_duration": t})
                }
                None => serde_json::json!({"id": id, "name": id.to_uppercase()}),
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "onboarding",
            "title": "Onboarding",
            "stages": stages,
        }))
        .unwrap()
    }

    fn abc() -> JourneyTemplate {
        template(&[("a", None), ("b", None), ("c", None)])
    }

    /// `hours` after the epoch of these tests.
    fn at(hours: i64) -> OffsetDateTime {
        datetime!(2025-01-06 0:00 UTC) + time::Duration::hours(hours)
    }

    fn step(hours: i64, event: Event, from: &str, to: &str) -> Step {
        Step {
            at: at(hours),
            event,
            from: from.into(),
            to: to.into(),
            trigger: None,
        }
    }

    fn rollback(hours: i64, from: &str, trigger: Option<Trigger>) -> Step {
        Step {
            trigger,
            ..step(hours, Event::Rollback, from, "rolling_back")
        }
    }

    fn run(phase: Phase, steps: Vec<Step>) -> JourneyRun {
        JourneyRun {
            phase,
            paused: false,
            steps,
            attempts: vec![],
        }
    }

    fn attempt(hours: i64, stage: &str, passed: bool) -> ExitAttempt {
        ExitAttempt {
            at: at(hours),
            stage: stage.into(),
            passed,
        }
    }

    /// Through a, b and c in 10, 20 and 6 hours.
    fn completed_run() -> JourneyRun {
        run(
            Phase::Completed,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(10, Event::Promote, "a", "b"),
                step(30, Event::Promote, "b", "c"),
                step(36, Event::Complete, "c", "completed"),
            ],
        )
    }

    fn stage<'a>(report: &'a JourneyAnalytics, id: &str) -> &'a StageAnalytics {
        report.stages.iter().find(|s| s.id == id).unwrap()
    }

    #[test]
    fn no_journeys_give_no_rates_and_no_bottleneck() {
        let report = journey_analytics(&abc(), &[], at(0));
        assert_eq!(report.template, "onboarding");
        assert_eq!((report.journeys, report.started), (0, 0));
        assert_eq!(report.success_rate, None);
        assert_eq!(report.cancellation_rate, None);
        assert_eq!(report.rollback_rate, None);
        assert_eq!(report.bottleneck, None);
        assert_eq!(report.time_to_last_stage, Durations::of(vec![]));
        let ids: Vec<&str> = report.stages.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(report.stages[0].name, "A");
        assert_eq!(report.stages[0].first_pass_rate, None);
        assert_eq!(report.stages[0].time_in_stage.median_s, None);
        // Rates without a denominator are null in JSON.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["success_rate"], serde_json::Value::Null);
        assert_eq!(json["stages"][0]["visits"], 0);
    }

    #[test]
    fn an_empty_history_is_a_journey_that_never_started() {
        let report = journey_analytics(&abc(), &[run(Phase::Pending, vec![])], at(5));
        assert_eq!(
            (report.journeys, report.started, report.in_progress),
            (1, 0, 0)
        );
        assert_eq!(report.success_rate, None);
        assert!(report.stages.iter().all(|s| s.entered == 0));
    }

    #[test]
    fn a_completed_journey_is_timed_stage_by_stage() {
        let report = journey_analytics(&abc(), &[completed_run()], at(100));
        assert_eq!((report.started, report.completed), (1, 1));
        assert_eq!((report.cancelled, report.in_progress), (0, 0));
        assert_eq!(report.success_rate, Some(1.0));
        assert_eq!(report.cancellation_rate, Some(0.0));
        assert_eq!(report.rollback_rate, Some(0.0));
        for (id, hours) in [("a", 10.0), ("b", 20.0), ("c", 6.0)] {
            let s = stage(&report, id);
            assert_eq!((s.entered, s.visits, s.in_stage_now), (1, 1, 0), "{id}");
            assert_eq!(s.time_in_stage.count, 1);
            assert_eq!(s.time_in_stage.median_s, Some(hours * HOUR), "{id}");
            assert_eq!(s.time_in_stage.max_s, Some(hours * HOUR), "{id}");
        }
        assert_eq!(report.time_to_last_stage.count, 1);
        assert_eq!(report.time_to_last_stage.median_s, Some(30.0 * HOUR));
    }

    #[test]
    fn a_rollback_and_reentry_add_visits_and_sum_their_time() {
        let rolled_back = run(
            Phase::Completed,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(10, Event::Promote, "a", "b"),
                rollback(15, "b", Some(Trigger::DataQualityLow)),
                step(20, Event::CompleteRollback, "rolling_back", "a"),
                step(25, Event::Promote, "a", "b"),
                step(35, Event::Promote, "b", "c"),
                step(40, Event::Complete, "c", "completed"),
            ],
        );
        let report = journey_analytics(&abc(), &[rolled_back, completed_run()], at(100));
        assert_eq!(report.rollbacks, 1);
        assert_eq!(report.rollback_rate, Some(0.5));
        assert_eq!(
            report.rollbacks_by_trigger,
            BTreeMap::from([("data_quality_low".to_string(), 1)])
        );
        let a = stage(&report, "a");
        assert_eq!((a.entered, a.visits, a.rollbacks), (2, 3, 0));
        // 10 + 5 hours for the rolled-back journey, 10 for the other.
        assert_eq!(a.time_in_stage.max_s, Some(15.0 * HOUR));
        assert_eq!(a.time_in_stage.mean_s, Some(12.5 * HOUR));
        let b = stage(&report, "b");
        assert_eq!((b.entered, b.visits, b.rollbacks), (2, 3, 1));
        // 5 + 10 hours, and 20.
        assert_eq!(b.time_in_stage.median_s, Some(15.0 * HOUR));
        assert_eq!(b.time_in_stage.max_s, Some(20.0 * HOUR));
        // The rolled-back journey reached c 35 hours after its start.
        assert_eq!(report.time_to_last_stage.max_s, Some(35.0 * HOUR));
    }

    #[test]
    fn a_rollback_to_the_same_stage_is_a_new_visit() {
        let again = run(
            Phase::Active,
            vec![
                step(0, Event::Start, "pending", "a"),
                rollback(4, "a", None),
                step(6, Event::CompleteRollback, "rolling_back", "a"),
            ],
        );
        let report = journey_analytics(&abc(), &[again], at(9));
        let a = stage(&report, "a");
        assert_eq!((a.visits, a.rollbacks, a.in_stage_now), (2, 1, 1));
        // 4 hours, then 3 until now; not the 2 hours spent rolling back.
        assert_eq!(a.time_in_stage.median_s, Some(7.0 * HOUR));
        assert_eq!(
            report.rollbacks_by_trigger,
            BTreeMap::from([(NO_TRIGGER.to_string(), 1)])
        );
    }

    #[test]
    fn a_cancelled_journey_counts_as_cancelled_and_its_visit_ends() {
        let cancelled = run(
            Phase::Cancelled,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(4, Event::Cancel, "a", "cancelled"),
            ],
        );
        let never_started = run(
            Phase::Cancelled,
            vec![step(1, Event::Cancel, "pending", "cancelled")],
        );
        let report = journey_analytics(
            &abc(),
            &[cancelled, never_started, completed_run()],
            at(100),
        );
        assert_eq!((report.journeys, report.started), (3, 2));
        assert_eq!(
            (report.completed, report.cancelled, report.in_progress),
            (1, 1, 0)
        );
        assert_eq!(report.cancellation_rate, Some(0.5));
        assert_eq!(report.success_rate, Some(0.5));
        let a = stage(&report, "a");
        assert_eq!((a.entered, a.in_stage_now), (2, 0));
        assert_eq!(a.time_in_stage.median_s, Some(4.0 * HOUR));
        assert_eq!(stage(&report, "b").entered, 1);
        assert_eq!(report.time_to_last_stage.count, 1);
    }

    #[test]
    fn an_open_visit_counts_up_to_now() {
        let t = template(&[("a", None), ("b", Some("12h")), ("c", None)]);
        let active = run(
            Phase::Active,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(10, Event::Promote, "a", "b"),
            ],
        );
        let report = journey_analytics(&t, &[active], at(24));
        assert_eq!((report.started, report.in_progress), (1, 1));
        assert_eq!(report.success_rate, Some(0.0));
        let b = stage(&report, "b");
        assert_eq!((b.in_stage_now, b.visits), (1, 1));
        assert_eq!(b.time_in_stage.median_s, Some(14.0 * HOUR));
        assert_eq!(b.target_duration_s, Some(12 * 3_600));
        assert_eq!(b.over_target, 1);
        assert_eq!(stage(&report, "a").in_stage_now, 0);
        assert_eq!(report.time_to_last_stage.count, 0);
    }

    #[test]
    fn a_pause_does_not_split_a_visit() {
        let paused = run(
            Phase::Active,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(2, Event::Pause, "a", "a"),
                step(5, Event::Resume, "a", "a"),
                step(8, Event::Promote, "a", "b"),
                step(9, Event::Pause, "b", "b"),
            ],
        );
        let report = journey_analytics(
            &abc(),
            &[JourneyRun {
                paused: true,
                ..paused
            }],
            at(12),
        );
        let a = stage(&report, "a");
        assert_eq!(a.visits, 1);
        assert_eq!(a.time_in_stage.median_s, Some(8.0 * HOUR));
        // Paused in b: still in it, and the clock runs.
        let b = stage(&report, "b");
        assert_eq!((b.visits, b.in_stage_now), (1, 1));
        assert_eq!(b.time_in_stage.median_s, Some(4.0 * HOUR));
    }

    #[test]
    fn the_first_pass_rate_looks_at_each_journeys_first_attempt() {
        let mut refused_then_passed = completed_run();
        refused_then_passed.attempts = vec![
            attempt(5, "a", false),
            attempt(10, "a", true),
            attempt(30, "b", true),
        ];
        let mut passed_first = completed_run();
        passed_first.attempts = vec![attempt(10, "a", true), attempt(20, "elsewhere", false)];
        let report = journey_analytics(&abc(), &[refused_then_passed, passed_first], at(100));
        let a = stage(&report, "a");
        assert_eq!(a.exit_attempts, 3);
        assert_eq!(a.first_pass_rate, Some(0.5));
        let b = stage(&report, "b");
        assert_eq!((b.exit_attempts, b.first_pass_rate), (1, Some(1.0)));
        let c = stage(&report, "c");
        assert_eq!((c.exit_attempts, c.first_pass_rate), (0, None));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Durations::of(vec![7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]);
        assert_eq!(d.count, 10);
        assert_eq!(d.median_s, Some(5.0));
        assert_eq!(d.p90_s, Some(9.0));
        assert_eq!(d.mean_s, Some(5.5));
        assert_eq!(d.max_s, Some(10.0));

        let one = Durations::of(vec![42.0]);
        assert_eq!(
            (one.median_s, one.p90_s, one.max_s),
            (Some(42.0), Some(42.0), Some(42.0))
        );
        let two = Durations::of(vec![3.0, 1.0]);
        assert_eq!((two.median_s, two.p90_s), (Some(1.0), Some(3.0)));
        let five = Durations::of(vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!((five.median_s, five.p90_s), (Some(3.0), Some(5.0)));

        let none = Durations::of(vec![]);
        assert_eq!(none.count, 0);
        assert_eq!(
            (none.median_s, none.p90_s, none.mean_s, none.max_s),
            (None, None, None, None)
        );
    }

    /// One journey through a, b and c spending the given hours in each.
    fn timed_run(hours: [i64; 3]) -> JourneyRun {
        let [a, b, c] = hours;
        run(
            Phase::Completed,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(a, Event::Promote, "a", "b"),
                step(a + b, Event::Promote, "b", "c"),
                step(a + b + c, Event::Complete, "c", "completed"),
            ],
        )
    }

    #[test]
    fn the_bottleneck_is_the_stage_furthest_over_its_target() {
        // a: twice its target; b: 1.25 times; c: the longest, but no target.
        let t = template(&[("a", Some("5h")), ("b", Some("1d")), ("c", None)]);
        let report = journey_analytics(&t, &[timed_run([10, 30, 100])], at(200));
        let bottleneck = report.bottleneck.unwrap();
        assert_eq!(bottleneck.stage, "a");
        assert_eq!(bottleneck.median_s, 10.0 * HOUR);
        assert_eq!(
            bottleneck.reason,
            "median 10.0 hours in stage against a target of 5 hours"
        );

        let t = template(&[("a", None), ("b", Some("1d")), ("c", None)]);
        let report = journey_analytics(&t, &[timed_run([10, 30, 100])], at(200));
        assert_eq!(report.bottleneck.unwrap().stage, "b");
    }

    #[test]
    fn without_targets_the_bottleneck_is_the_longest_median() {
        let report = journey_analytics(&abc(), &[timed_run([10, 120, 5])], at(200));
        let bottleneck = report.bottleneck.unwrap();
        assert_eq!(bottleneck.stage, "b");
        assert_eq!(bottleneck.median_s, 120.0 * HOUR);
        assert_eq!(bottleneck.reason, "longest median time in stage (5.0 days)");
        // A stage with a target but no journey timed in it does not count.
        let t = template(&[("a", None), ("b", None), ("c", Some("1h"))]);
        let only_a = run(
            Phase::Cancelled,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(3, Event::Cancel, "a", "cancelled"),
            ],
        );
        let bottleneck = journey_analytics(&t, &[only_a], at(10)).bottleneck.unwrap();
        assert_eq!(bottleneck.stage, "a");
        assert_eq!(
            bottleneck.reason,
            "longest median time in stage (3.0 hours)"
        );
    }

    #[test]
    fn unknown_states_and_disordered_times_are_tolerated() {
        let odd = run(
            Phase::Active,
            vec![
                step(0, Event::Start, "pending", "a"),
                step(1, Event::Promote, "nowhere", "elsewhere"),
                // Recorded before the start: no negative time.
                step(-5, Event::Promote, "a", "b"),
            ],
        );
        let report = journey_analytics(&abc(), &[odd], at(2));
        let a = stage(&report, "a");
        assert_eq!(a.visits, 1);
        assert_eq!(a.time_in_stage.median_s, Some(0.0));
        let b = stage(&report, "b");
        assert_eq!((b.visits, b.in_stage_now), (1, 1));
        assert_eq!(b.time_in_stage.median_s, Some(7.0 * HOUR));
    }

    #[test]
    fn durations_read_in_their_largest_unit() {
        assert_eq!(measured(45.0), "45.0 seconds");
        assert_eq!(measured(90.0), "1.5 minutes");
        assert_eq!(measured(3.2 * 86_400.0), "3.2 days");
        assert_eq!(whole(2 * 86_400), "2 days");
        assert_eq!(whole(3_600), "1 hour");
        assert_eq!(whole(5_400), "1.5 hours");
        assert_eq!(whole(30), "30 seconds");
    }
}
