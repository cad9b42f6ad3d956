//! Criteria: the checks that gate a journey's stages, and the rollback triggers
//! that watch its metrics.
//!
//! A check is a metric threshold (`metric`, `op`, `threshold`, optional
//! `window` with an `aggregate`, optional `count`/`interval`/`failure_limit`),
//! a required approval (an artifact type that must be approved, or a named
//! sign-off), or a CEL expression over the latest metrics. Checks are
//! three-valued: `passed`, `failed`, `inconclusive` (not enough data). A
//! `dry_run` check is reported and never blocks. Evaluating a stage's checks
//! yields a [`ValidationResult`].
//!
//! - [`evaluate`] judges checks against [`Facts`]: a journey's metric
//!   [`Observation`]s, its approved artifact types, its sign-offs, and `now`.
//! - [`apply_overrides`] lets a person promote over inconclusive checks (and
//!   only those).
//! - [`fired`] tells which rollback trigger an incoming observation fires.
//! - [`check_checks`], [`check_trigger`] and [`check_cel`] validate templates;
//!   CEL goes through [`cel_guard`], its limits and its budget.
//!
//! ```
//! use waymark_domain::criteria::{evaluate, Check, Facts, Observation};
//! use time::macros::datetime;
//!
//! let now = datetime!(2025-06-01 12:00 UTC);
//! let checks: Vec<Check> = serde_json::from_value(serde_json::json!([
//!     {"name": "precision", "metric": "search_precision", "op": ">=", "threshold": 0.8},
//!     {"name": "demo", "signoff": "client_stakeholder_demo"},
//! ]))
//! .unwrap();
//! let observations = [Observation::new("search_precision", 0.83, now)];
//! let result = evaluate(&checks, &Facts::new(&observations, now));
//! assert!(!result.passed);
//! assert_eq!(result.summary, "1 of 2 checks passed; failed: demo");
//! assert_eq!(result.checks[0].message, "search_precision 0.83 >= 0.8");
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use cel::{ExecutionError, Value as Cel};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::FieldError;
use crate::cel_guard::{self, ExprError};

/// A comparison of a metric's value with a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Op {
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `value op threshold` holds (equality within 1e-9).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        const EPS: f64 = 1e-9;
        match self {
            Op::Ge => value >= threshold - EPS,
            Op::Gt => value > threshold + EPS,
            Op::Le => value <= threshold + EPS,
            Op::Lt => value < threshold - EPS,
            Op::Eq => (value - threshold).abs() <= EPS,
            Op::Ne => (value - threshold).abs() > EPS,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the observations inside a window become one value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    #[default]
    Last,
    Max,
    Min,
    Avg,
}

/// A span of time written `30s`, `15m`, `12h`, `7d` or `2w` (printed in the
/// largest of `d`, `h`, `m`, `s` that divides it: `2w` prints `14d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(value_type = String, example = "7d")]
pub struct Span(pub Duration);

impl Span {
    /// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w`.
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a span; write e.g. 30s, 15m, 12h, 7d or 2w"))?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "`{text}` has no known unit; write e.g. 30s, 15m, 12h, 7d or 2w"
                ));
            }
        };
        n.checked_mul(secs)
            .filter(|s| *s <= 366 * 86_400)
            .map(|s| Span(Duration::from_secs(s)))
            .ok_or_else(|| format!("`{text}` is longer than a year"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        // Days are the largest unit printed, so `7d` reads back as written.
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
            if s > 0 && s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Checks the name of a metric or a sign-off: 1-128 letters, digits, `_`,
/// `.` or `-` (`kind` names what it is in the message).
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} `{}` must be 1-128 letters, digits, '_', '.' or '-', e.g. search_precision",
            name.chars().take(128).collect::<String>()
        ))
    }
}

/// The metric observations a task's output reports: the numeric entries of
/// its `metrics` object whose names are valid metric names (at most 100);
/// anything else is not a metric and is left out.
pub fn output_metrics(output: &serde_json::Value) -> Vec<(String, f64)> {
    let Some(metrics) = output.get("metrics").and_then(serde_json::Value::as_object) else {
        return vec![];
    };
    metrics
        .iter()
        .filter(|(name, _)| check_name("metric", name).is_ok())
        .filter_map(|(name, v)| Some((name.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .take(100)
        .collect()
}

/// What a check looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CheckKind {
    /// A metric compared with a threshold.
    Metric {
        metric: String,
        op: Op,
        threshold: f64,
        /// Only observations this recent count (e.g. `7d`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<Span>,
        /// How the window's observations become one value (default `last`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aggregate: Option<Aggregate>,
        /// Evaluate this many observations one by one (the latest ones, at
        /// least `interval` apart) instead of one aggregated value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval: Option<Span>,
        /// How many of those `count` observations may fail the comparison.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure_limit: Option<u32>,
    },
    /// The engagement's or journey's artifact of this type must be approved.
    Artifact {
        #[serde(rename = "artifact_approved")]
        artifact_type: String,
    },
    /// A named sign-off must have been given.
    Signoff { signoff: String },
    /// A CEL expression over `metrics` (each metric's latest value) that must be true.
    Cel { cel: String },
}

/// One check of a stage's criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// Shown in validation results; unique within a stage's criteria.
    pub name: String,
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Reported, never blocking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The three outcomes of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
    /// Not enough data to decide; a person may override it, on the record.
    Inconclusive,
}

impl CheckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "failed",
            CheckOutcome::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub name: String,
    pub outcome: CheckOutcome,
    /// `outcome == passed`.
    pub passed: bool,
    #[schema(value_type = Object)]
    pub actual: Value,
    #[schema(value_type = Object)]
    pub expected: Value,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// An inconclusive check a person chose to promote over (see
    /// [`apply_overrides`]); its outcome stays `inconclusive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
}

impl CheckResult {
    /// Whether this check holds a promotion back: it is not a dry run, did not
    /// pass, and is not an overridden inconclusive check.
    pub fn blocks(&self) -> bool {
        !self.dry_run && self.outcome != CheckOutcome::Passed && !self.overridden
    }
}

/// A stage's checks, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationResult {
    /// Every blocking check passed.
    pub passed: bool,
    pub summary: String,
    pub checks: Vec<CheckResult>,
}

/// The rollback triggers of DESIGN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    SecurityVulnerability,
    DataQualityLow,
    UserSatisfactionLow,
    CriticalBug,
    PerformanceDegradation,
    MajorIncident,
    ClientRequest,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::SecurityVulnerability,
        Trigger::DataQualityLow,
        Trigger::UserSatisfactionLow,
        Trigger::CriticalBug,
        Trigger::PerformanceDegradation,
        Trigger::MajorIncident,
        Trigger::ClientRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::SecurityVulnerability => "security_vulnerability",
            Trigger::DataQualityLow => "data_quality_low",
            Trigger::UserSatisfactionLow => "user_satisfaction_low",
            Trigger::CriticalBug => "critical_bug",
            Trigger::PerformanceDegradation => "performance_degradation",
            Trigger::MajorIncident => "major_incident",
            Trigger::ClientRequest => "client_request",
        }
    }
}

/// A rollback trigger of a stage: it fires by itself when an observation of
/// `metric` makes `value op threshold` true; without a metric, only a person
/// (or an agent) invokes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerSpec {
    pub trigger: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl ValidationResult {
    /// The checks that hold a promotion back (see [`CheckResult::blocks`]).
    pub fn blocking(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.blocks())
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// One value of a metric at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub metric: String,
    pub value: f64,
    pub at: OffsetDateTime,
}

impl Observation {
    pub fn new(metric: impl Into<String>, value: f64, at: OffsetDateTime) -> Self {
        Self {
            metric: metric.into(),
            value,
            at,
        }
    }
}

/// Everything a check may look at.
///
/// `observations` are all of a journey's, in any order; those after `now` are
/// ignored. When two observations of a metric share a timestamp, the later one
/// in the slice counts as the newer (callers pass them in the order recorded).
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub observations: &'a [Observation],
    /// The artifact types with an approved artifact.
    pub approved: BTreeSet<&'a str>,
    /// The names of the sign-offs given.
    pub signoffs: BTreeSet<&'a str>,
    pub now: OffsetDateTime,
}

impl<'a> Facts<'a> {
    /// Facts with these observations, and no approvals or sign-offs yet.
    pub fn new(observations: &'a [Observation], now: OffsetDateTime) -> Self {
        Self {
            observations,
            approved: BTreeSet::new(),
            signoffs: BTreeSet::new(),
            now,
        }
    }

    pub fn with_approved(mut self, types: impl IntoIterator<Item = &'a str>) -> Self {
        self.approved.extend(types);
        self
    }

    pub fn with_signoffs(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.signoffs.extend(names);
        self
    }

    /// The observations of `metric` no later than `now` (and, with a window,
    /// no earlier than `now - window`), newest first.
    fn recent(&self, metric: &str, window: Option<Span>) -> Vec<&'a Observation> {
        let since = window.and_then(|w| {
            time::Duration::try_from(w.0)
                .ok()
                .and_then(|d| self.now.checked_sub(d))
        });
        let mut found: Vec<(usize, &'a Observation)> = self
            .observations
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.metric == metric && o.at <= self.now && since.is_none_or(|s| o.at >= s)
            })
            .collect();
        found.sort_by(|(i, a), (j, b)| b.at.cmp(&a.at).then(j.cmp(i)));
        found.into_iter().map(|(_, o)| o).collect()
    }

    /// Each metric's latest value no later than `now`.
    fn latest(&self) -> HashMap<&'a str, f64> {
        let mut latest: HashMap<&'a str, &'a Observation> = HashMap::new();
        for o in self.observations.iter().filter(|o| o.at <= self.now) {
            let slot = latest.entry(o.metric.as_str()).or_insert(o);
            if o.at >= slot.at {
                *slot = o;
            }
        }
        latest.into_iter().map(|(k, o)| (k, o.value)).collect()
    }
}

/// Evaluates a stage's checks against the facts.
///
/// `passed` is true when every check that is not a dry run passed (an
/// inconclusive check does not pass; see [`apply_overrides`]). An empty list
/// passes.
pub fn evaluate(checks: &[Check], facts: &Facts) -> ValidationResult {
    let results: Vec<CheckResult> = checks.iter().map(|c| evaluate_one(c, facts)).collect();
    conclude(results)
}

/// Builds the result of already evaluated checks: `passed` and the summary.
fn conclude(checks: Vec<CheckResult>) -> ValidationResult {
    ValidationResult {
        passed: !checks.iter().any(CheckResult::blocks),
        summary: summarize(&checks),
        checks,
    }
}

/// E.g. `3 of 4 checks passed; failed: search_precision; inconclusive:
/// user_satisfaction`, `all 4 checks passed`, or `no checks`. Dry-run checks
/// are counted apart, after the blocking ones.
fn summarize(checks: &[CheckResult]) -> String {
    if checks.is_empty() {
        return "no checks".to_owned();
    }
    let names = |dry_run: bool, want: &dyn Fn(&CheckResult) -> bool| -> Vec<&str> {
        checks
            .iter()
            .filter(|c| c.dry_run == dry_run && want(c))
            .map(|c| c.name.as_str())
            .collect()
    };
    let failed = |c: &CheckResult| c.outcome == CheckOutcome::Failed;
    let open = |c: &CheckResult| c.outcome == CheckOutcome::Inconclusive && !c.overridden;
    let overridden = |c: &CheckResult| c.outcome == CheckOutcome::Inconclusive && c.overridden;
    let tally = |dry_run: bool| -> (usize, usize) {
        let of: Vec<&CheckResult> = checks.iter().filter(|c| c.dry_run == dry_run).collect();
        let passed = of.iter().filter(|c| c.passed).count();
        (passed, of.len())
    };
    let lists = |dry_run: bool| -> String {
        let mut out = String::new();
        for (label, list) in [
            ("failed", names(dry_run, &failed)),
            ("inconclusive", names(dry_run, &open)),
            ("overridden", names(dry_run, &overridden)),
        ] {
            if !list.is_empty() {
                out.push_str(&format!("; {label}: {}", list.join(", ")));
            }
        }
        out
    };
    let plural = |n: usize| if n == 1 { "check" } else { "checks" };

    let (passed, total) = tally(false);
    let mut summary = if total == 0 {
        "no blocking checks".to_owned()
    } else if passed == total {
        if total == 1 {
            "the 1 check passed".to_owned()
        } else {
            format!("all {total} checks passed")
        }
    } else {
        format!(
            "{passed} of {total} {} passed{}",
            plural(total),
            lists(false)
        )
    };
    let (dry_passed, dry_total) = tally(true);
    if dry_total > 0 {
        summary.push_str(&format!(
            "; dry run (not blocking): {dry_passed} of {dry_total} {} passed{}",
            plural(dry_total),
            lists(true).replace("; ", ", ")
        ));
    }
    summary
}

fn evaluate_one(check: &Check, facts: &Facts) -> CheckResult {
    let (outcome, actual, expected, message) = match &check.kind {
        CheckKind::Metric {
            metric,
            op,
            threshold,
            window,
            aggregate,
            count: None,
            ..
        } => metric_value(metric, *op, *threshold, *window, *aggregate, facts),
        CheckKind::Metric {
            metric,
            op,
            threshold,
            window,
            count: Some(count),
            interval,
            failure_limit,
            ..
        } => metric_series(
            metric,
            *op,
            *threshold,
            *window,
            Series {
                count: *count,
                interval: *interval,
                failure_limit: failure_limit.unwrap_or(0),
            },
            facts,
        ),
        CheckKind::Artifact { artifact_type } => {
            let approved = facts.approved.contains(artifact_type.as_str());
            (
                outcome_of(approved),
                json!(approved),
                json!(true),
                if approved {
                    format!("{artifact_type} is approved")
                } else {
                    format!("no approved {artifact_type}")
                },
            )
        }
        CheckKind::Signoff { signoff } => {
            let given = facts.signoffs.contains(signoff.as_str());
            (
                outcome_of(given),
                json!(given),
                json!(true),
                if given {
                    format!("sign-off `{signoff}` given")
                } else {
                    format!("waiting for sign-off `{signoff}`")
                },
            )
        }
        CheckKind::Cel { cel } => cel_check(cel, facts),
    };
    CheckResult {
        name: check.name.clone(),
        outcome,
        passed: outcome == CheckOutcome::Passed,
        actual,
        expected,
        message,
        dry_run: check.dry_run,
        overridden: false,
    }
}

type Found = (CheckOutcome, Value, Value, String);

fn outcome_of(passed: bool) -> CheckOutcome {
    if passed {
        CheckOutcome::Passed
    } else {
        CheckOutcome::Failed
    }
}

/// A number as people read it: `4`, `0.83`, `1e-7`; at most six decimals.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        format!("{v:.0}")
    } else if (1e-4..1e15).contains(&a) {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{v:e}")
    }
}

fn in_window(window: Option<Span>) -> String {
    window
        .map(|w| format!(" in the last {w}"))
        .unwrap_or_default()
}

fn no_data(metric: &str, window: Option<Span>) -> String {
    format!("no data: no observation of {metric}{}", in_window(window))
}

/// A metric check without `count`: the window's observations aggregated into
/// one value.
fn metric_value(
    metric: &str,
    op: Op,
    threshold: f64,
    window: Option<Span>,
    aggregate: Option<Aggregate>,
    facts: &Facts,
) -> Found {
    let expected = json!(format!("{op} {}", num(threshold)));
    let recent = facts.recent(metric, window);
    let Some(latest) = recent.first() else {
        return (
            CheckOutcome::Inconclusive,
            Value::Null,
            expected,
            no_data(metric, window),
        );
    };
    let aggregate = aggregate.unwrap_or_default();
    let values = recent.iter().map(|o| o.value);
    let value = match aggregate {
        Aggregate::Last => latest.value,
        Aggregate::Max => values.fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Min => values.fold(f64::INFINITY, f64::min),
        Aggregate::Avg => values.sum::<f64>() / recent.len() as f64,
    };
    let holds = op.holds(value, threshold);
    let context = if recent.len() > 1 || window.is_some() {
        let label = match aggregate {
            Aggregate::Last => "last",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Avg => "average",
        };
        let n = recent.len();
        format!(
            " ({label} of {n} observation{}{})",
            if n == 1 { "" } else { "s" },
            in_window(window)
        )
    } else {
        String::new()
    };
    let message = format!(
        "{metric} {}{} {op} {}{context}",
        num(value),
        if holds { "" } else { " is not" },
        num(threshold)
    );
    (outcome_of(holds), json!(value), expected, message)
}

/// How a metric check with `count` picks and judges its observations.
struct Series {
    count: u32,
    interval: Option<Span>,
    failure_limit: u32,
}

/// A metric check with `count`: the newest `count` observations at least
/// `interval` apart, each compared on its own.
fn metric_series(
    metric: &str,
    op: Op,
    threshold: f64,
    window: Option<Span>,
    series: Series,
    facts: &Facts,
) -> Found {
    let Series {
        count,
        interval,
        failure_limit,
    } = series;
    let expected = json!(format!("{op} {}", num(threshold)));
    let gap = interval.map(|i| time::Duration::try_from(i.0).unwrap_or(time::Duration::MAX));
    let mut kept: Vec<&Observation> = Vec::new();
    for o in facts.recent(metric, window) {
        let far_enough = match (kept.last(), gap) {
            (Some(last), Some(gap)) => last.at - o.at >= gap,
            _ => true,
        };
        if far_enough {
            kept.push(o);
        }
    }
    let n = count as usize;
    let apart = interval
        .map(|i| format!(" at least {i} apart"))
        .unwrap_or_default();
    if kept.len() < n {
        let values: Vec<f64> = kept.iter().map(|o| o.value).collect();
        let message = if kept.is_empty() {
            format!(
                "no data: needs {n} observation{} of {metric}{apart}{}, has none",
                if n == 1 { "" } else { "s" },
                in_window(window)
            )
        } else {
            format!(
                "not enough data: needs {n} observations of {metric}{apart}{}, has {}",
                in_window(window),
                kept.len()
            )
        };
        return (CheckOutcome::Inconclusive, json!(values), expected, message);
    }
    let values: Vec<f64> = kept[..n].iter().map(|o| o.value).collect();
    let failures = values.iter().filter(|v| !op.holds(**v, threshold)).count();
    let holds = failures <= failure_limit as usize;
    let tolerance = match failure_limit {
        0 => "none may fail".to_owned(),
        1 => "1 may fail".to_owned(),
        k => format!("{k} may fail"),
    };
    let last = if n == 1 {
        "the last observation".to_owned()
    } else {
        format!("the last {n} observations")
    };
    let message = if holds {
        format!(
            "{metric} {op} {} in {} of {last}{apart}{} ({tolerance})",
            num(threshold),
            n - failures,
            in_window(window)
        )
    } else {
        format!(
            "{metric} is not {op} {} in {failures} of {last}{apart}{} ({tolerance})",
            num(threshold),
            in_window(window)
        )
    };
    (outcome_of(holds), json!(values), expected, message)
}

/// The variables a criteria CEL expression may read.
const CEL_VARIABLES: [&str; 3] = ["metrics", "signoffs", "approved"];

/// Compiles a criteria CEL expression without running it (for template
/// validation), within the limits of [`cel_guard`]. It may read `metrics` (a
/// map from metric name to its latest value, a double), `signoffs` and
/// `approved` (lists of names). The error says where: `line 1, column 12: ...`.
pub fn check_cel(expr: &str) -> Result<(), String> {
    cel_guard::compile(expr)
        .map(|_| ())
        .map_err(|e| e.located())
}

/// A CEL check: `passed` when the expression is true, `failed` when it is
/// false, gives something else, cannot run, or is stopped by its evaluation
/// budget (a person cannot override that: the check did not run);
/// `inconclusive` when it reads a metric that has no observation yet.
fn cel_check(expr: &str, facts: &Facts) -> Found {
    let expected = json!(expr);
    let compiled = match cel_guard::compile(expr) {
        Ok(c) => c,
        Err(e) => {
            return (
                CheckOutcome::Failed,
                Value::Null,
                expected,
                format!("the expression does not compile: {}", e.located()),
            );
        }
    };
    let metrics: HashMap<String, Cel> = facts
        .latest()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Cel::Float(v)))
        .collect();
    let names =
        |set: &BTreeSet<&str>| Cel::from(set.iter().map(|s| Cel::from(*s)).collect::<Vec<_>>());
    let variables = vec![
        (CEL_VARIABLES[0], Cel::from(metrics)),
        (CEL_VARIABLES[1], names(&facts.signoffs)),
        (CEL_VARIABLES[2], names(&facts.approved)),
    ];
    match cel_guard::evaluate(&compiled, variables) {
        Ok(Cel::Bool(true)) => (
            CheckOutcome::Passed,
            json!(true),
            expected,
            format!("`{expr}` is true"),
        ),
        Ok(Cel::Bool(false)) => (
            CheckOutcome::Failed,
            json!(false),
            expected,
            format!("`{expr}` is false"),
        ),
        Ok(other) => (
            CheckOutcome::Failed,
            Value::Null,
            expected,
            format!("`{expr}` gives {other:?}, not a boolean"),
        ),
        Err(ExprError::Runtime(ExecutionError::NoSuchKey(key))) => (
            CheckOutcome::Inconclusive,
            Value::Null,
            expected,
            format!("no data: `{expr}` reads `{key}`, which has no value yet"),
        ),
        Err(e) => (
            CheckOutcome::Failed,
            Value::Null,
            expected,
            format!("`{expr}` cannot be evaluated: {e}"),
        ),
    }
}

// ---------------------------------------------------------------------------
// Overrides
// ---------------------------------------------------------------------------

/// Why an override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// No check of the result has that name.
    #[error("there is no check named `{0}` to override")]
    UnknownCheck(String),
    /// The check passed or failed; only a lack of data is a person's call.
    #[error(
        "check `{name}` {outcome}; only inconclusive checks (not enough data) can be overridden"
    )]
    NotInconclusive { name: String, outcome: CheckOutcome },
}

/// The result with the named inconclusive checks overridden by a person (the
/// caller records who and why): they no longer block, keep their
/// `inconclusive` outcome, and say so in their message. Naming a check that
/// passed, failed or does not exist is refused. Overriding a check twice is
/// harmless.
pub fn apply_overrides(
    result: &ValidationResult,
    overrides: &[String],
) -> Result<ValidationResult, OverrideError> {
    let mut checks = result.checks.clone();
    for name in overrides {
        let mut found = false;
        for c in checks.iter_mut().filter(|c| &c.name == name) {
            found = true;
            if c.outcome != CheckOutcome::Inconclusive {
                return Err(OverrideError::NotInconclusive {
                    name: name.clone(),
                    outcome: c.outcome,
                });
            }
            if !c.overridden {
                c.overridden = true;
                c.message.push_str(" (overridden)");
            }
        }
        if !found {
            return Err(OverrideError::UnknownCheck(name.clone()));
        }
    }
    Ok(conclude(checks))
}

// ---------------------------------------------------------------------------
// Rollback triggers
// ---------------------------------------------------------------------------

/// The first trigger that this observation fires: its metric is the
/// observation's and `value op threshold` holds. Triggers without a metric
/// never fire by themselves.
pub fn fired<'t>(
    triggers: &'t [TriggerSpec],
    observation: &Observation,
) -> Option<&'t TriggerSpec> {
    triggers
        .iter()
        .find(|t| match (&t.metric, t.op, t.threshold) {
            (Some(metric), Some(op), Some(threshold)) => {
                *metric == observation.metric && op.holds(observation.value, threshold)
            }
            _ => false,
        })
}

/// A trigger gives its metric, op and threshold together, or none of them.
pub fn check_trigger(spec: &TriggerSpec) -> Result<(), String> {
    let name = spec.trigger.as_str();
    match (&spec.metric, spec.op, spec.threshold) {
        (None, None, None) => Ok(()),
        (Some(metric), Some(_), Some(threshold)) => {
            if metric.trim().is_empty() {
                Err(format!("trigger {name}: the metric name is empty"))
            } else if !threshold.is_finite() {
                Err(format!(
                    "trigger {name}: the threshold must be a finite number"
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "trigger {name}: give metric, op and threshold together (to fire on an observation), or none of them (to be invoked by a person)"
        )),
    }
}

// ---------------------------------------------------------------------------
// Template validation
// ---------------------------------------------------------------------------

/// What is wrong with one list of checks (a stage's `entry` or its `exit`),
/// each problem at a JSON Pointer into the list: `/<index>/<field>`, or
/// `/<index>/name`. Empty when nothing is. The one validator of criteria:
/// packs put each problem at its line in `pack.yaml`, the API answers the
/// pointer under the template's.
///
/// - names present, and unique within the list;
/// - a metric check: a metric name (see [`check_name`]), a finite threshold,
///   a window and an interval longer than zero, `count` at least 1,
///   `interval` and `failure_limit` only with `count`, `failure_limit` less
///   than `count`, and `aggregate` not with `count` (each observation is
///   compared on its own). `aggregate` without `window` is allowed: it
///   aggregates every observation so far;
/// - an approval and a sign-off name something;
/// - a CEL expression compiles within the limits of [`cel_guard`].
pub fn check_checks(checks: &[Check]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, c) in checks.iter().enumerate() {
        let mut problem = |field: &str, message: String| {
            errors.push(FieldError::new(format!("/{i}/{field}"), message))
        };
        let name = c.name.trim();
        if name.is_empty() {
            problem(
                "name",
                "the check has an empty name; a check needs a name (shown in validation results), \
                 e.g. search_precision"
                    .to_owned(),
            );
        } else if let Some(first) = names.get(name) {
            problem(
                "name",
                format!(
                    "the name `{name}` is already used by check {} of this list; check names are \
                     unique within a stage's entry (or exit) criteria",
                    first + 1
                ),
            );
        } else {
            names.insert(name, i);
        }
        match &c.kind {
            CheckKind::Metric {
                metric,
                threshold,
                window,
                aggregate,
                count,
                interval,
                failure_limit,
                ..
            } => {
                if metric.trim().is_empty() {
                    problem(
                        "metric",
                        "the metric name is empty; name the metric, e.g. search_precision"
                            .to_owned(),
                    );
                } else if let Err(why) = check_name("metric", metric) {
                    problem("metric", why);
                }
                if !threshold.is_finite() {
                    problem("threshold", "threshold must be a finite number".to_owned());
                }
                if window.is_some_and(|w| w.0.is_zero()) {
                    problem(
                        "window",
                        "the window must be longer than zero, e.g. 7d".to_owned(),
                    );
                }
                if interval.is_some_and(|w| w.0.is_zero()) {
                    problem(
                        "interval",
                        "the interval must be longer than zero, e.g. 1d".to_owned(),
                    );
                }
                match count {
                    Some(0) => problem(
                        "count",
                        "count must be at least 1 (the number of observations to evaluate)"
                            .to_owned(),
                    ),
                    Some(n) => {
                        if let Some(limit) = failure_limit
                            && limit >= n
                        {
                            problem(
                                "failure_limit",
                                format!(
                                    "failure_limit ({limit}) must be less than count ({n}), \
                                     or the check could never fail"
                                ),
                            );
                        }
                        if aggregate.is_some() {
                            problem(
                                "aggregate",
                                "aggregate has no effect with count (each observation is compared \
                                 on its own); remove one"
                                    .to_owned(),
                            );
                        }
                    }
                    None => {
                        if interval.is_some() {
                            problem(
                                "interval",
                                "interval spaces out the `count` observations; give count too"
                                    .to_owned(),
                            );
                        }
                        if failure_limit.is_some() {
                            problem(
                                "failure_limit",
                                "failure_limit is how many of `count` observations may fail; \
                                 give count too"
                                    .to_owned(),
                            );
                        }
                    }
                }
            }
            CheckKind::Artifact { artifact_type } => {
                if artifact_type.trim().is_empty() {
                    problem(
                        "artifact_approved",
                        "the artifact type is empty; name the artifact type that must be \
                         approved, e.g. pilot_plan"
                            .to_owned(),
                    );
                }
            }
            CheckKind::Signoff { signoff } => {
                if signoff.trim().is_empty() {
                    problem(
                        "signoff",
                        "the sign-off name is empty; name the sign-off, e.g. client_stakeholder_demo"
                            .to_owned(),
                    );
                }
            }
            CheckKind::Cel { cel } => {
                if cel.trim().is_empty() {
                    problem(
                        "cel",
                        "the CEL expression must not be empty, e.g. metrics.search_precision >= 0.8"
                            .to_owned(),
                    );
                } else if let Err(why) = check_cel(cel) {
                    problem("cel", why);
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_output_reports_its_numeric_metrics() {
        let out = serde_json::json!({"metrics": {
            "search_precision": 0.83, "bad name": 1, "note": "text", "count": 12
        }, "other": 1});
        assert_eq!(
            output_metrics(&out),
            [
                ("search_precision".to_string(), 0.83),
                ("count".to_string(), 12.0)
            ]
        );
        assert!(output_metrics(&serde_json::json!({"metrics": [1]})).is_empty());
        assert!(output_metrics(&serde_json::Value::Null).is_empty());
    }

    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    /// An observation `hours` before NOW (negative: after it).
    fn obs(metric: &str, value: f64, hours: i64) -> Observation {
        Observation::new(metric, value, NOW - time::Duration::hours(hours))
    }

    fn metric(name: &str, metric: &str, op: Op, threshold: f64) -> Check {
        Check {
            name: name.to_owned(),
            kind: CheckKind::Metric {
                metric: metric.to_owned(),
                op,
                threshold,
                window: None,
                aggregate: None,
                count: None,
                interval: None,
                failure_limit: None,
            },
            dry_run: false,
        }
    }

    fn from_json(v: Value) -> Check {
        serde_json::from_value(v).unwrap()
    }

    fn one(check: Check, observations: &[Observation]) -> CheckResult {
        let r = evaluate(&[check], &Facts::new(observations, NOW));
        r.checks.into_iter().next().unwrap()
    }

    #[test]
    fn every_op_compares_as_written() {
        use CheckOutcome::{Failed, Passed};
        let cases = [
            (Op::Ge, 0.8, Passed),
            (Op::Ge, 0.79, Failed),
            (Op::Gt, 0.81, Passed),
            (Op::Gt, 0.8, Failed),
            (Op::Le, 0.8, Passed),
            (Op::Le, 0.81, Failed),
            (Op::Lt, 0.79, Passed),
            (Op::Lt, 0.8, Failed),
            (Op::Eq, 0.8, Passed),
            (Op::Eq, 0.8000001, Failed),
            (Op::Ne, 0.7, Passed),
            (Op::Ne, 0.8, Failed),
        ];
        for (op, value, want) in cases {
            let r = one(metric("m", "x", op, 0.8), &[obs("x", value, 1)]);
            assert_eq!(r.outcome, want, "{value} {op} 0.8: {}", r.message);
            assert_eq!(r.passed, want == Passed);
            assert_eq!(r.expected, json!(format!("{op} 0.8")));
            assert_eq!(r.actual, json!(value));
        }
    }

    #[test]
    fn messages_read_as_sentences() {
        let r = one(
            metric("precision", "search_precision", Op::Ge, 0.8),
            &[obs("search_precision", 0.83, 1)],
        );
        assert_eq!(r.message, "search_precision 0.83 >= 0.8");
        let c = from_json(
            json!({"name": "satisfaction", "metric": "user_satisfaction",
            "op": ">=", "threshold": 4.0, "window": "7d"}),
        );
        let observations: Vec<_> = [4.1, 4.3, 3.9, 4.0, 3.2]
            .iter()
            .enumerate()
            .map(|(i, v)| obs("user_satisfaction", *v, 100 - 10 * i as i64))
            .collect();
        let r = one(c, &observations);
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert_eq!(
            r.message,
            "user_satisfaction 3.2 is not >= 4 (last of 5 observations in the last 7d)"
        );
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(500.0), "500");
        assert_eq!(num(1e-7), "1e-7");
    }

    #[test]
    fn each_aggregate_makes_one_value() {
        // 0.7 three days ago, 0.9 two days ago, 0.8 yesterday, in shuffled order.
        let observations = [obs("p", 0.9, 48), obs("p", 0.8, 24), obs("p", 0.7, 72)];
        for (aggregate, value) in [
            (None, 0.8),
            (Some(Aggregate::Last), 0.8),
            (Some(Aggregate::Max), 0.9),
            (Some(Aggregate::Min), 0.7),
            (Some(Aggregate::Avg), 0.8),
        ] {
            let mut c = metric("p", "p", Op::Eq, value);
            if let CheckKind::Metric { aggregate: a, .. } = &mut c.kind {
                *a = aggregate;
            }
            let r = one(c, &observations);
            assert_eq!(
                r.outcome,
                CheckOutcome::Passed,
                "{aggregate:?}: {}",
                r.message
            );
            assert!((r.actual.as_f64().unwrap() - value).abs() < 1e-9);
        }
        let c = from_json(
            json!({"name": "p", "metric": "p", "op": ">=", "threshold": 0.8, "aggregate": "avg"}),
        );
        assert!(
            one(c, &observations)
                .message
                .contains("average of 3 observations")
        );
    }

    #[test]
    fn windows_leave_out_old_and_future_observations() {
        let observations = [
            obs("p", 0.1, 10 * 24), // before the window
            obs("p", 0.9, 24),
            obs("p", 0.1, -1), // after now
        ];
        let c = from_json(
            json!({"name": "p", "metric": "p", "op": ">=", "threshold": 0.8,
            "window": "7d", "aggregate": "min"}),
        );
        let r = one(c, &observations);
        assert_eq!(r.outcome, CheckOutcome::Passed, "{}", r.message);
        assert_eq!(r.actual, json!(0.9));
        assert!(
            r.message.contains("min of 1 observation in the last 7d"),
            "{}",
            r.message
        );
        // No window: the future observation still does not count.
        let r = one(metric("p", "p", Op::Ge, 0.8), &observations);
        assert_eq!(r.actual, json!(0.9));
        // The window's edge is inside it.
        let c = from_json(
            json!({"name": "p", "metric": "p", "op": ">=", "threshold": 0.8, "window": "1d"}),
        );
        assert_eq!(one(c, &observations).outcome, CheckOutcome::Passed);
    }

    #[test]
    fn no_data_is_inconclusive() {
        let c = from_json(
            json!({"name": "p", "metric": "search_precision", "op": ">=",
            "threshold": 0.8, "window": "7d"}),
        );
        for observations in [
            vec![],
            vec![obs("search_precision", 0.9, 8 * 24), obs("other", 1.0, 1)],
        ] {
            let r = one(c.clone(), &observations);
            assert_eq!(r.outcome, CheckOutcome::Inconclusive);
            assert!(!r.passed);
            assert_eq!(r.actual, Value::Null);
            assert_eq!(
                r.message,
                "no data: no observation of search_precision in the last 7d"
            );
        }
        let r = one(metric("p", "q", Op::Ge, 1.0), &[]);
        assert_eq!(r.message, "no data: no observation of q");
    }

    fn series(count: u32, interval: Option<&str>, failure_limit: Option<u32>) -> Check {
        let mut v = json!({"name": "errors", "metric": "error_rate", "op": "<", "threshold": 0.01,
            "count": count, "window": "7d"});
        if let Some(i) = interval {
            v["interval"] = json!(i);
        }
        if let Some(f) = failure_limit {
            v["failure_limit"] = json!(f);
        }
        from_json(v)
    }

    #[test]
    fn count_takes_the_newest_observations_one_interval_apart() {
        // Hourly observations over the last two days; the newest is bad.
        let observations: Vec<_> = (0..48)
            .map(|h| obs("error_rate", if h == 0 { 0.05 } else { 0.001 }, h))
            .collect();
        // The newest 3 (hours 0, 1, 2): one fails.
        let r = one(series(3, None, None), &observations);
        assert_eq!(r.outcome, CheckOutcome::Failed, "{}", r.message);
        assert_eq!(r.actual, json!([0.05, 0.001, 0.001]));
        assert_eq!(
            r.message,
            "error_rate is not < 0.01 in 1 of the last 3 observations in the last 7d (none may fail)"
        );
        let r = one(series(3, None, Some(1)), &observations);
        assert_eq!(r.outcome, CheckOutcome::Passed, "{}", r.message);
        assert_eq!(
            r.message,
            "error_rate < 0.01 in 2 of the last 3 observations in the last 7d (1 may fail)"
        );
        // 12h apart over 48 hours: hours 0, 12, 24, 36 are kept.
        let r = one(series(4, Some("12h"), Some(1)), &observations);
        assert_eq!(r.outcome, CheckOutcome::Passed);
        assert_eq!(r.actual.as_array().unwrap().len(), 4);
        let r = one(series(5, Some("12h"), Some(1)), &observations);
        assert_eq!(r.outcome, CheckOutcome::Inconclusive);
        assert_eq!(
            r.message,
            "not enough data: needs 5 observations of error_rate at least 12h apart in the last 7d, has 4"
        );
        assert_eq!(r.actual.as_array().unwrap().len(), 4);
        let r = one(series(2, Some("1d"), None), &[]);
        assert_eq!(r.outcome, CheckOutcome::Inconclusive);
        assert!(r.message.starts_with("no data"), "{}", r.message);
        // All good observations a day apart pass.
        let good: Vec<_> = (0..3).map(|d| obs("error_rate", 0.0, 24 * d)).collect();
        assert_eq!(
            one(series(3, Some("1d"), None), &good).outcome,
            CheckOutcome::Passed
        );
    }

    #[test]
    fn approvals_and_signoffs() {
        let checks = [
            from_json(json!({"name": "plan", "artifact_approved": "rollout_plan"})),
            from_json(json!({"name": "demo", "signoff": "client_stakeholder_demo"})),
        ];
        let r = evaluate(&checks, &Facts::new(&[], NOW));
        assert!(!r.passed);
        assert_eq!(r.checks[0].outcome, CheckOutcome::Failed);
        assert_eq!(r.checks[0].message, "no approved rollout_plan");
        assert_eq!(
            r.checks[1].message,
            "waiting for sign-off `client_stakeholder_demo`"
        );
        let facts = Facts::new(&[], NOW)
            .with_approved(["rollout_plan", "pilot_plan"])
            .with_signoffs(["client_stakeholder_demo"]);
        let r = evaluate(&checks, &facts);
        assert!(r.passed, "{}", r.summary);
        assert_eq!(r.checks[0].actual, json!(true));
        assert_eq!(
            r.checks[1].message,
            "sign-off `client_stakeholder_demo` given"
        );
    }

    fn cel(expr: &str) -> Check {
        Check {
            name: "rule".to_owned(),
            kind: CheckKind::Cel {
                cel: expr.to_owned(),
            },
            dry_run: false,
        }
    }

    #[test]
    fn cel_reads_latest_metrics_signoffs_and_approvals() {
        let observations = [
            obs("search_precision", 0.7, 48),
            obs("search_precision", 0.86, 1),
            obs("user_satisfaction", 4.2, 2),
            obs("user_satisfaction", 1.0, -5), // future
        ];
        let facts = Facts::new(&observations, NOW)
            .with_signoffs(["security_review"])
            .with_approved(["rollout_plan"]);
        let run = |expr: &str| evaluate(&[cel(expr)], &facts).checks.remove(0);
        for expr in [
            "metrics.search_precision >= 0.85 && metrics.user_satisfaction > 4.0",
            "metrics.search_precision * 100.0 > 85.0",
            "'security_review' in signoffs && 'rollout_plan' in approved",
            "has(metrics.not_yet) || size(metrics) == 2",
            "metrics['user_satisfaction'] == 4.2",
            // Integer literals compare with the doubles.
            "metrics.search_precision < 1 && metrics.user_satisfaction > 4",
            "signoffs.exists(s, s.startsWith('security'))",
        ] {
            let r = run(expr);
            assert_eq!(r.outcome, CheckOutcome::Passed, "{expr}: {}", r.message);
            assert_eq!(r.actual, json!(true));
            assert_eq!(r.expected, json!(expr));
        }
        let r = run("metrics.search_precision >= 0.9");
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert_eq!(r.message, "`metrics.search_precision >= 0.9` is false");
        for expr in ["metrics.bug_count == 0.0", "metrics['bug_count'] == 0.0"] {
            let r = run(expr);
            assert_eq!(
                r.outcome,
                CheckOutcome::Inconclusive,
                "{expr}: {}",
                r.message
            );
            assert!(
                r.message.starts_with("no data") && r.message.contains("bug_count"),
                "{}",
                r.message
            );
        }
        let r = run("metrics.search_precision + 1.0");
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert!(r.message.contains("not a boolean"), "{}", r.message);
        let r = run("nothing_declared > 1.0");
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert!(r.message.contains("cannot be evaluated"), "{}", r.message);
        let r = run("metrics.search_precision >=");
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert!(r.message.contains("does not compile"), "{}", r.message);
    }

    #[test]
    fn a_cel_check_over_its_limits_or_its_budget_fails() {
        let names: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
        let facts = Facts::new(&[], NOW).with_signoffs(names.iter().map(String::as_str));
        let run = |expr: &str| evaluate(&[cel(expr)], &facts).checks.remove(0);
        let r = run("signoffs.all(a, signoffs.all(b, signoffs.all(c, a + b + c != '')))");
        assert_eq!(r.outcome, CheckOutcome::Failed, "{}", r.message);
        assert!(r.blocks());
        assert!(
            r.message.contains("cannot be evaluated: stopped after"),
            "{}",
            r.message
        );
        let r = run(&vec!["metrics.m"; 5_000].join(" + "));
        assert_eq!(r.outcome, CheckOutcome::Failed);
        assert!(
            r.message.starts_with(
                "the expression does not compile: line 1, column 779: more than 64 operators"
            ),
            "{}",
            r.message
        );
    }

    #[test]
    fn cel_compiles_for_template_validation() {
        assert!(check_cel("metrics.search_precision >= 0.8").is_ok());
        let e = check_cel("metrics.a >= ").unwrap_err();
        assert!(e.starts_with("line 1, column"), "{e}");
        assert!(check_cel("  ").is_err());
    }

    #[test]
    fn dry_run_checks_are_reported_and_never_block() {
        let mut trial = metric("latency", "p95_latency_ms", Op::Le, 500.0);
        trial.dry_run = true;
        let checks = [metric("precision", "search_precision", Op::Ge, 0.8), trial];
        let observations = [
            obs("search_precision", 0.83, 1),
            obs("p95_latency_ms", 620.0, 1),
        ];
        let r = evaluate(&checks, &Facts::new(&observations, NOW));
        assert!(r.passed);
        assert_eq!(r.checks[1].outcome, CheckOutcome::Failed);
        assert!(r.checks[1].dry_run && !r.checks[1].blocks());
        assert_eq!(
            r.summary,
            "the 1 check passed; dry run (not blocking): 0 of 1 check passed, failed: latency"
        );
        assert_eq!(r.blocking().count(), 0);
    }

    #[test]
    fn summaries() {
        assert_eq!(evaluate(&[], &Facts::new(&[], NOW)).summary, "no checks");
        assert!(evaluate(&[], &Facts::new(&[], NOW)).passed);
        let checks = [
            metric("connectors", "connector_sync_rate", Op::Ge, 1.0),
            metric("search_precision", "search_precision", Op::Ge, 0.8),
            metric("user_satisfaction", "user_satisfaction", Op::Ge, 4.0),
            from_json(json!({"name": "demo", "signoff": "demo"})),
        ];
        let observations = [
            obs("connector_sync_rate", 1.0, 1),
            obs("search_precision", 0.6, 1),
        ];
        let facts = Facts::new(&observations, NOW).with_signoffs(["demo"]);
        let r = evaluate(&checks, &facts);
        assert!(!r.passed);
        assert_eq!(
            r.summary,
            "2 of 4 checks passed; failed: search_precision; inconclusive: user_satisfaction"
        );
        let observations = [
            obs("connector_sync_rate", 1.0, 1),
            obs("search_precision", 0.9, 1),
            obs("user_satisfaction", 4.5, 1),
        ];
        let facts = Facts::new(&observations, NOW).with_signoffs(["demo"]);
        let r = evaluate(&checks, &facts);
        assert!(r.passed);
        assert_eq!(r.summary, "all 4 checks passed");
        let mut only_dry = checks[3].clone();
        only_dry.dry_run = true;
        assert_eq!(
            evaluate(&[only_dry], &facts).summary,
            "no blocking checks; dry run (not blocking): 1 of 1 check passed"
        );
    }

    #[test]
    fn only_inconclusive_checks_can_be_overridden() {
        let checks = [
            metric("precision", "search_precision", Op::Ge, 0.8),
            metric("satisfaction", "user_satisfaction", Op::Ge, 4.0),
            metric("bugs", "bug_count", Op::Eq, 0.0),
        ];
        let observations = [obs("search_precision", 0.9, 1), obs("bug_count", 2.0, 1)];
        let r = evaluate(&checks, &Facts::new(&observations, NOW));
        assert!(!r.passed);

        let o = apply_overrides(&r, &["satisfaction".to_owned()]).unwrap();
        assert!(!o.passed, "bugs still fails");
        let s = &o.checks[1];
        assert!(s.overridden && s.outcome == CheckOutcome::Inconclusive && !s.passed);
        assert!(s.message.ends_with("(overridden)"), "{}", s.message);
        assert_eq!(
            o.summary,
            "1 of 3 checks passed; failed: bugs; overridden: satisfaction"
        );
        assert_eq!(serde_json::to_value(s).unwrap()["overridden"], json!(true));
        assert!(
            serde_json::to_value(&o.checks[0])
                .unwrap()
                .get("overridden")
                .is_none()
        );

        assert_eq!(
            apply_overrides(&r, &["bugs".to_owned()]),
            Err(OverrideError::NotInconclusive {
                name: "bugs".to_owned(),
                outcome: CheckOutcome::Failed
            })
        );
        let e = apply_overrides(&r, &["precision".to_owned()]).unwrap_err();
        assert!(e.to_string().contains("only inconclusive checks"), "{e}");
        assert_eq!(
            apply_overrides(&r, &["nope".to_owned()]),
            Err(OverrideError::UnknownCheck("nope".to_owned()))
        );

        // With the failing check gone, the override lets the stage through.
        let r = evaluate(&checks[..2], &Facts::new(&observations, NOW));
        assert!(!r.passed);
        let twice = ["satisfaction".to_owned(), "satisfaction".to_owned()];
        let o = apply_overrides(&r, &twice).unwrap();
        assert!(o.passed);
        assert_eq!(o.checks[1].message.matches("(overridden)").count(), 1);
        assert_eq!(o.blocking().count(), 0);
    }

    fn trigger(t: Trigger, metric: &str, op: Op, threshold: f64) -> TriggerSpec {
        TriggerSpec {
            trigger: t,
            metric: Some(metric.to_owned()),
            op: Some(op),
            threshold: Some(threshold),
        }
    }

    #[test]
    fn triggers_fire_on_a_crossing_observation() {
        let triggers = [
            TriggerSpec {
                trigger: Trigger::ClientRequest,
                metric: None,
                op: None,
                threshold: None,
            },
            trigger(
                Trigger::UserSatisfactionLow,
                "user_satisfaction",
                Op::Lt,
                3.5,
            ),
            trigger(
                Trigger::PerformanceDegradation,
                "p95_latency_ms",
                Op::Gt,
                600.0,
            ),
            trigger(Trigger::MajorIncident, "user_satisfaction", Op::Lt, 2.0),
        ];
        let fire = |m: &str, v: f64| fired(&triggers, &obs(m, v, 0)).map(|t| t.trigger);
        assert_eq!(
            fire("user_satisfaction", 3.2),
            Some(Trigger::UserSatisfactionLow)
        );
        assert_eq!(fire("user_satisfaction", 3.6), None);
        assert_eq!(fire("user_satisfaction", 3.5), None);
        // The first matching trigger wins.
        assert_eq!(
            fire("user_satisfaction", 1.0),
            Some(Trigger::UserSatisfactionLow)
        );
        assert_eq!(
            fire("p95_latency_ms", 700.0),
            Some(Trigger::PerformanceDegradation)
        );
        assert_eq!(fire("p95_latency_ms", 3.0), None);
        assert_eq!(fire("search_precision", 0.0), None);
    }

    #[test]
    fn triggers_give_metric_op_and_threshold_together() {
        for t in Trigger::ALL {
            assert!(
                check_trigger(&TriggerSpec {
                    trigger: t,
                    metric: None,
                    op: None,
                    threshold: None
                })
                .is_ok()
            );
        }
        assert!(check_trigger(&trigger(Trigger::DataQualityLow, "quality", Op::Lt, 0.5)).is_ok());
        let half = TriggerSpec {
            trigger: Trigger::DataQualityLow,
            metric: Some("quality".to_owned()),
            op: None,
            threshold: Some(0.5),
        };
        assert!(check_trigger(&half).unwrap_err().contains("together"));
        assert!(check_trigger(&trigger(Trigger::DataQualityLow, "", Op::Lt, 0.5)).is_err());
        assert!(check_trigger(&trigger(Trigger::DataQualityLow, "q", Op::Lt, f64::NAN)).is_err());
    }

    #[test]
    fn template_checks_are_validated() {
        let good = [
            from_json(
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "window": "7d", "aggregate": "avg"}),
            ),
            from_json(
                json!({"name": "b", "metric": "m", "op": "<", "threshold": 1, "aggregate": "max"}),
            ),
            from_json(
                json!({"name": "c", "metric": "m", "op": "<", "threshold": 1, "count": 3, "interval": "1d", "failure_limit": 2}),
            ),
            from_json(json!({"name": "d", "cel": "metrics.m > 1.0"})),
            from_json(json!({"name": "e", "signoff": "demo"})),
            from_json(json!({"name": "f", "artifact_approved": "plan"})),
        ];
        assert_eq!(check_checks(&good), vec![]);
        let plus = vec!["metrics.m"; 5_000].join(" + ");
        let and = vec!["metrics.m > 0.0"; 5_000].join(" && ");
        let bad = [
            (
                json!({"name": "a", "metric": "", "op": ">=", "threshold": 1}),
                "/0/metric",
                "metric name is empty",
            ),
            (
                json!({"name": "a", "metric": "bad name", "op": ">=", "threshold": 1}),
                "/0/metric",
                "must be 1-128 letters",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "count": 0}),
                "/0/count",
                "count must be at least 1",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "count": 2, "failure_limit": 2}),
                "/0/failure_limit",
                "failure_limit (2) must be less than count (2)",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "interval": "1d"}),
                "/0/interval",
                "interval spaces out the `count` observations; give count too",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "failure_limit": 1}),
                "/0/failure_limit",
                "failure_limit is how many of `count` observations may fail; give count too",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "count": 2, "aggregate": "avg"}),
                "/0/aggregate",
                "aggregate has no effect",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "window": "0d"}),
                "/0/window",
                "window must be longer",
            ),
            (
                json!({"name": "a", "metric": "m", "op": ">=", "threshold": 1, "count": 2, "interval": "0s"}),
                "/0/interval",
                "interval must be longer",
            ),
            (
                json!({"name": "a", "cel": "metrics.m >"}),
                "/0/cel",
                "line 1, column",
            ),
            (
                json!({"name": "a", "cel": plus}),
                "/0/cel",
                "line 1, column 779: more than 64 operators in one chain",
            ),
            (
                json!({"name": "a", "cel": and}),
                "/0/cel",
                "more than 64 operators in one chain",
            ),
            (
                json!({"name": "a", "cel": " "}),
                "/0/cel",
                "must not be empty",
            ),
            (
                json!({"name": "a", "signoff": " "}),
                "/0/signoff",
                "sign-off name is empty",
            ),
            (
                json!({"name": "a", "artifact_approved": ""}),
                "/0/artifact_approved",
                "artifact type is empty",
            ),
            (json!({"name": "", "signoff": "x"}), "/0/name", "empty name"),
        ];
        for (check, pointer, want) in bad {
            let problems = check_checks(&[from_json(check.clone())]);
            assert!(
                problems.len() == 1
                    && problems[0].pointer == pointer
                    && problems[0].message.contains(want),
                "{check}: {problems:?}"
            );
        }
        let mut inf = metric("x", "m", Op::Ge, f64::INFINITY);
        inf.name = "x".to_owned();
        assert!(check_checks(&[inf])[0].message.contains("finite"));
        let twice = [good[4].clone(), good[4].clone()];
        let problems = check_checks(&twice);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].pointer, "/1/name");
        assert!(
            problems[0]
                .message
                .contains("the name `e` is already used by check 1"),
            "{problems:?}"
        );
    }

    /// Seed 003's STAGE_METRICS: each stage's thresholds, met exactly, pass;
    /// each metric just on the wrong side fails that check alone.
    #[test]
    fn seed_stage_metrics() {
        type Row = (&'static str, Op, f64, f64);
        let stages: [(&str, &[Row]); 3] = [
            // (metric, op, threshold, a value just on the wrong side)
            (
                "sandbox",
                &[
                    ("connector_sync_rate", Op::Ge, 1.0, 0.99),
                    ("search_precision", Op::Ge, 0.80, 0.79),
                    ("security_vulnerabilities", Op::Eq, 0.0, 1.0),
                ],
            ),
            (
                "pilot",
                &[
                    ("search_precision", Op::Ge, 0.85, 0.84),
                    ("user_satisfaction", Op::Ge, 4.0, 3.9),
                    ("bug_count", Op::Eq, 0.0, 1.0),
                    ("p95_latency_ms", Op::Le, 500.0, 501.0),
                ],
            ),
            (
                "production",
                &[
                    ("user_adoption", Op::Ge, 0.70, 0.69),
                    ("search_satisfaction", Op::Ge, 4.5, 4.4),
                    ("query_volume_growth", Op::Ge, 0.20, 0.19),
                ],
            ),
        ];
        for (stage, metrics) in stages {
            let checks: Vec<Check> = metrics
                .iter()
                .map(|(m, op, t, _)| metric(m, m, *op, *t))
                .collect();
            let at_threshold: Vec<Observation> =
                metrics.iter().map(|(m, _, t, _)| obs(m, *t, 1)).collect();
            let r = evaluate(&checks, &Facts::new(&at_threshold, NOW));
            assert!(r.passed, "{stage}: {}", r.summary);
            assert_eq!(r.summary, format!("all {} checks passed", metrics.len()));
            for (i, (m, _, _, off)) in metrics.iter().enumerate() {
                let mut observations = at_threshold.clone();
                observations.push(obs(m, *off, 0));
                let r = evaluate(&checks, &Facts::new(&observations, NOW));
                assert!(!r.passed, "{stage}/{m}");
                let blocking: Vec<&str> = r.blocking().map(|c| c.name.as_str()).collect();
                assert_eq!(blocking, [*m], "{stage}: {}", r.summary);
                assert_eq!(r.checks[i].outcome, CheckOutcome::Failed);
                assert!(
                    r.checks[i].message.contains(" is not "),
                    "{}",
                    r.checks[i].message
                );
            }
            let r = evaluate(&checks, &Facts::new(&[], NOW));
            assert!(
                r.checks
                    .iter()
                    .all(|c| c.outcome == CheckOutcome::Inconclusive)
            );
        }
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Ge),
            Just(Op::Gt),
            Just(Op::Le),
            Just(Op::Lt),
            Just(Op::Eq),
            Just(Op::Ne)
        ]
    }

    fn any_check() -> impl Strategy<Value = Check> {
        let metric_check = (
            0..3usize,
            any_op(),
            0..4i32,
            prop::option::of(1..10u64),
            prop::option::of(1..4u32),
            prop::option::of(1..24u64),
        )
            .prop_map(|(m, op, t, window, count, interval)| CheckKind::Metric {
                metric: format!("m{m}"),
                op,
                threshold: f64::from(t),
                window: window.map(|d| Span(Duration::from_secs(d * 86_400))),
                aggregate: None,
                count,
                interval: count
                    .and(interval)
                    .map(|h| Span(Duration::from_secs(h * 3_600))),
                failure_limit: count.map(|c| c - 1),
            });
        let kind = prop_oneof![
            metric_check,
            (0..3usize).prop_map(|i| CheckKind::Signoff {
                signoff: format!("s{i}")
            }),
            (0..3usize).prop_map(|i| CheckKind::Artifact {
                artifact_type: format!("a{i}")
            }),
            (0..3usize).prop_map(|i| CheckKind::Cel {
                cel: format!("metrics.m{i} >= 1.0")
            }),
        ];
        (kind, any::<bool>(), 0..1000u32).prop_map(|(kind, dry_run, n)| Check {
            name: format!("c{n}"),
            kind,
            dry_run,
        })
    }

    fn any_observations() -> impl Strategy<Value = Vec<Observation>> {
        prop::collection::vec((0..3usize, 0..4i32, -24..(24 * 12i64)), 0..20).prop_map(|v| {
            v.into_iter()
                .enumerate()
                // Distinct times, so that order in the slice never matters.
                .map(|(i, (m, value, h))| {
                    let at = NOW - time::Duration::hours(h) + time::Duration::seconds(i as i64);
                    Observation::new(format!("m{m}"), f64::from(value), at)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn a_dry_run_check_never_changes_passed(
            checks in prop::collection::vec(any_check(), 0..6),
            extra in any_check(),
            at in 0..6usize,
            observations in any_observations(),
            signoffs in prop::collection::btree_set("s[0-2]", 0..3),
        ) {
            let facts = Facts::new(&observations, NOW).with_signoffs(signoffs.iter().map(String::as_str));
            let before = evaluate(&checks, &facts);
            let mut more = checks.clone();
            more.insert(at.min(checks.len()), Check { dry_run: true, ..extra });
            let after = evaluate(&more, &facts);
            prop_assert_eq!(before.passed, after.passed);
            prop_assert_eq!(
                after.passed,
                after.checks.iter().all(|c| c.dry_run || c.outcome == CheckOutcome::Passed)
            );
        }

        #[test]
        fn the_order_of_observations_does_not_matter(
            checks in prop::collection::vec(any_check(), 0..6),
            observations in any_observations(),
        ) {
            let facts = Facts::new(&observations, NOW);
            let mut reversed = observations.clone();
            reversed.reverse();
            prop_assert_eq!(evaluate(&checks, &facts), evaluate(&checks, &Facts::new(&reversed, NOW)));
        }
    }

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(
            Span::parse("7d").unwrap().0,
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(Span::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Span::parse("120m").unwrap().to_string(), "2h");
        assert_eq!(Span::parse("7d").unwrap().to_string(), "7d");
        assert_eq!(Span::parse("2w").unwrap().to_string(), "14d");
        for bad in ["", "d", "7", "7y", "-1d", "400d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_read_as_packs_write_them() {
        let c: Check = serde_json::from_value(serde_json::json!(
            {"name": "precision", "metric": "search_precision", "op": ">=", "threshold": 0.8, "window": "7d", "aggregate": "avg"}
        ))
        .unwrap();
        assert!(matches!(c.kind, CheckKind::Metric { op: Op::Ge, .. }));
        let s: Check = serde_json::from_value(
            serde_json::json!({"name": "demo", "signoff": "client_stakeholder_demo"}),
        )
        .unwrap();
        assert_eq!(
            s.kind,
            CheckKind::Signoff {
                signoff: "client_stakeholder_demo".into()
            }
        );
        let a: Check = serde_json::from_value(
            serde_json::json!({"name": "plan", "artifact_approved": "rollout_plan", "dry_run": true}),
        )
        .unwrap();
        assert!(a.dry_run);
        assert_eq!(
            serde_json::to_value(&a).unwrap()["artifact_approved"],
            "rollout_plan"
        );
        assert!(Op::Ge.holds(0.8, 0.8) && !Op::Gt.holds(0.8, 0.8) && Op::Ne.holds(1.0, 0.0));
    }
}
