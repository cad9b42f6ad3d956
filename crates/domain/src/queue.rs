//! The customer-success queue's rules: which playbook is due for a client, how
//! urgent it is (an explainable score), and how a run of the rules meets the
//! items already in the queue.
//!
//! A pack lists queue rules ([`QueueRuleDef`]): a CEL condition (`when`) over a
//! client's [`Signals`], the playbook template it makes due, when (`due`), a
//! sentence for people (`reason`), the less urgent rules it `supersedes`, and
//! the weighted factors of its priority [`score`].
//!
//! - [`check_rules`] validates a pack's rules; [`QueueRule::compile`] readies one.
//! - [`evaluate`] runs the rules for one client: its [`Match`]es (superseded or
//!   not), and the rules that could not be evaluated for it.
//! - [`reconcile`] turns an evaluation into [`Change`]s to the client's stored
//!   items. A second identical run changes nothing.
//! - [`check_action`] decides what a person's [`Action`] does to an item;
//!   [`visible`] and [`overdue`] say how an item shows.
//!
//! Nothing here reads a clock or a database: callers pass `today` and `now`.
//!
//! # The variables of `when` and `due`
//!
//! | variable | CEL type |
//! |---|---|
//! | `days_to_renewal` | int: the renewal date minus today, in days; `null` without a renewal date |
//! | `renewal_date` | string `YYYY-MM-DD`, or `null` |
//! | `arr`, `health_score`, `risk_score`, `opportunity_score` | double, or `null` |
//! | `attributes` | map: the client's free attributes (`{}` when there are none) |
//! | `signals` | map from signal name to its latest value, a double |
//!
//! Ints and doubles compare with one another (`health_score < 50` works), but
//! a `null` does not compare with a number: `days_to_renewal <= 120` is an
//! error for a client without a renewal date, so guard nullable variables:
//! `days_to_renewal != null && days_to_renewal <= 120`. A rule that errors for
//! a client does not match it, and the error is reported.
//!
//! `due` gives an int (days from today; negative is overdue) or a date string.
//! Write it from the client's dates (`days_to_renewal - 60`), not from today
//! (`0`): a due date that moves with the calendar updates open items every day
//! and reopens completed ones as a new cycle (see [`reconcile`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use cel::Value as Cel;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use crate::cel_guard::{self, Compiled, ExprError};
use crate::{dates, graph};

/// The longest rule name.
pub const MAX_NAME: usize = 64;
/// The longest reason, in characters.
pub const MAX_REASON: usize = 500;
/// The largest weight of a factor.
pub const MAX_WEIGHT: f64 = 1000.0;
/// The default scale of the `arr` factor: ARR at or above it counts in full.
pub const ARR_SCALE: f64 = 1_000_000.0;
/// The default scale of the `days_to_renewal` factor: the horizon in days.
pub const RENEWAL_HORIZON: f64 = 120.0;
/// The furthest a snooze may reach, in days from now.
pub const MAX_SNOOZE_DAYS: i64 = 365;
/// The furthest in the past a person may schedule an item, in days.
pub const MAX_SCHEDULE_PAST_DAYS: i64 = 365;
/// The furthest a rule's `due` may be from today, either way, in days.
pub const MAX_DUE_DAYS: i64 = 36_500;
/// The variables `when` and `due` may read.
pub const VARIABLES: [&str; 8] = [
    "days_to_renewal",
    "renewal_date",
    "arr",
    "health_score",
    "risk_score",
    "opportunity_score",
    "attributes",
    "signals",
];
/// The `{{…}}` placeholders a reason may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "days_to_renewal",
    "arr",
    "health_score",
    "risk_score",
    "opportunity_score",
    "renewal_date",
];

// ---------------------------------------------------------------------------
// Rules as written
// ---------------------------------------------------------------------------

/// A queue rule as written in a pack's `queue:` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRuleDef {
    /// `[a-z][a-z0-9_]{0,63}`; with the client and the template, the identity
    /// of the items the rule makes.
    pub name: String,
    /// The playbook journey template it makes due.
    pub template: String,
    /// CEL giving a boolean over the variables of the module documentation.
    pub when: String,
    /// A sentence for people; `{{days_to_renewal}}`, `{{arr}}`,
    /// `{{health_score}}`, `{{risk_score}}`, `{{opportunity_score}}` and
    /// `{{renewal_date}}` are replaced by the client's values (`unknown` when
    /// missing).
    pub reason: String,
    /// CEL giving an int (days from today; negative is overdue) or a date
    /// string `YYYY-MM-DD`.
    pub due: String,
    /// Names of less urgent rules this one replaces when both match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    /// The weighted factors of the priority score; at least one.
    pub factors: Vec<FactorDef>,
}

/// One weighted input of a rule's priority score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorDef {
    pub input: FactorInput,
    /// Greater than 0, at most [`MAX_WEIGHT`].
    pub weight: f64,
    /// For `arr` (default [`ARR_SCALE`]) and `days_to_renewal` (default
    /// [`RENEWAL_HORIZON`]): the value that counts in full. Greater than 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

/// What a factor reads from the client.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FactorInput {
    /// The health score, 0-100; lower health raises priority.
    Health,
    /// Annual recurring revenue; more raises priority, up to the scale.
    Arr,
    /// Days to the renewal date; fewer raise priority, within the scale.
    DaysToRenewal,
    /// The risk score, 0-100.
    Risk,
    /// The opportunity score, 0-100.
    Opportunity,
}

impl FactorInput {
    pub const ALL: [FactorInput; 5] = [
        FactorInput::Health,
        FactorInput::Arr,
        FactorInput::DaysToRenewal,
        FactorInput::Risk,
        FactorInput::Opportunity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FactorInput::Health => "health",
            FactorInput::Arr => "arr",
            FactorInput::DaysToRenewal => "days_to_renewal",
            FactorInput::Risk => "risk",
            FactorInput::Opportunity => "opportunity",
        }
    }

    /// The default scale, for the inputs that have one.
    fn default_scale(self) -> Option<f64> {
        match self {
            FactorInput::Arr => Some(ARR_SCALE),
            FactorInput::DaysToRenewal => Some(RENEWAL_HORIZON),
            _ => None,
        }
    }
}

impl fmt::Display for FactorInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

/// What is wrong with one rule of a pack's `queue:` list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RuleProblem {
    /// The rule's position in the list, from 0.
    pub index: usize,
    /// `name`, `template`, `when`, `due`, `supersedes`, `factors` or `reason`.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue[{}].{}: {}", self.index, self.field, self.message)
    }
}

fn problem(index: usize, field: &'static str, message: String) -> RuleProblem {
    RuleProblem {
        index,
        field,
        message,
    }
}

/// Checks a pack's queue rules against its journey `templates`: names valid
/// and unique, templates known, `when` and `due` within the limits of
/// [`cel_guard`], `supersedes` naming other rules without a circle, at least
/// one factor with a valid weight and scale, and a reason of at most
/// [`MAX_REASON`] characters using known placeholders. Problems come in the
/// order of the rules.
pub fn check_rules(rules: &[QueueRuleDef], templates: &[&str]) -> Vec<RuleProblem> {
    let mut problems = Vec::new();
    let mut named: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        if !valid_name(&rule.name) {
            problems.push(problem(
                i,
                "name",
                format!(
                    "`{}` is not a valid rule name; use a lowercase letter followed by at most \
                     {} lowercase letters, digits or underscores",
                    clip(&rule.name, 70),
                    MAX_NAME - 1
                ),
            ));
        } else if let Some(first) = named.get(rule.name.as_str()) {
            problems.push(problem(
                i,
                "name",
                format!(
                    "rule {first} is already named `{}`; give each rule its own name",
                    rule.name
                ),
            ));
        } else {
            named.insert(&rule.name, i);
        }
        if !templates.contains(&rule.template.as_str()) {
            let message = if templates.is_empty() {
                format!(
                    "unknown template `{}`; the pack has no journey templates: add the playbook",
                    clip(&rule.template, 70)
                )
            } else {
                format!(
                    "unknown template `{}`; use one of: {}",
                    clip(&rule.template, 70),
                    templates.join(", ")
                )
            };
            problems.push(problem(i, "template", message));
        }
        for (field, text) in [("when", &rule.when), ("due", &rule.due)] {
            if let Err(e) = cel_guard::compile(text) {
                problems.push(problem(i, field, e.located()));
            }
        }
        for name in &rule.supersedes {
            if *name == rule.name {
                problems.push(problem(
                    i,
                    "supersedes",
                    format!("a rule cannot supersede itself; remove `{name}`"),
                ));
            } else if !rules.iter().any(|r| r.name == *name) {
                let mut others: Vec<&str> = Vec::new();
                for r in rules.iter().filter(|r| r.name != rule.name) {
                    if !others.contains(&r.name.as_str()) {
                        others.push(&r.name);
                    }
                }
                problems.push(problem(
                    i,
                    "supersedes",
                    format!(
                        "`{}` is not a rule of this pack; name one of: {}",
                        clip(name, 70),
                        if others.is_empty() {
                            "(no other rules)".to_owned()
                        } else {
                            others.join(", ")
                        }
                    ),
                ));
            }
        }
        check_factors(i, &rule.factors, &mut problems);
        check_reason(i, &rule.reason, &mut problems);
    }
    let edges: BTreeMap<&str, Vec<&str>> = rules
        .iter()
        .map(|r| {
            let over = r.supersedes.iter().filter(|s| **s != r.name);
            (r.name.as_str(), over.map(String::as_str).collect())
        })
        .collect();
    if let Some(cycle) = graph::find_cycle(&edges) {
        let index = rules.iter().position(|r| r.name == cycle[0]).unwrap_or(0);
        problems.push(problem(
            index,
            "supersedes",
            format!(
                "rules supersede one another in a circle: {}; remove one of these supersedes",
                cycle.join(" -> ")
            ),
        ));
    }
    problems.sort_by_key(|p| p.index);
    problems
}

fn check_factors(i: usize, factors: &[FactorDef], problems: &mut Vec<RuleProblem>) {
    if factors.is_empty() {
        let inputs = FactorInput::ALL.map(FactorInput::as_str).join(", ");
        problems.push(problem(
            i,
            "factors",
            format!("add at least one factor, with an input among {inputs} and a weight"),
        ));
    }
    for (k, f) in factors.iter().enumerate() {
        let at = format!("factor {} ({})", k + 1, f.input);
        if !(f.weight.is_finite() && f.weight > 0.0 && f.weight <= MAX_WEIGHT) {
            problems.push(problem(
                i,
                "factors",
                format!(
                    "{at}: weight {} is not allowed; use a number greater than 0 and at most {MAX_WEIGHT}",
                    f.weight
                ),
            ));
        }
        match (f.scale, f.input.default_scale()) {
            (Some(_), None) => problems.push(problem(
                i,
                "factors",
                format!("{at}: scale applies only to arr and days_to_renewal; remove it"),
            )),
            (Some(s), Some(_)) if !(s.is_finite() && s > 0.0) => problems.push(problem(
                i,
                "factors",
                format!("{at}: scale {s} is not allowed; use a number greater than 0"),
            )),
            _ => {}
        }
    }
}

fn check_reason(i: usize, reason: &str, problems: &mut Vec<RuleProblem>) {
    let chars = reason.chars().count();
    if reason.trim().is_empty() {
        problems.push(problem(
            i,
            "reason",
            "write a sentence that tells people why the playbook is due".to_owned(),
        ));
    } else if chars > MAX_REASON {
        problems.push(problem(
            i,
            "reason",
            format!("is {chars} characters long; shorten it to at most {MAX_REASON}"),
        ));
    }
    for (_, _, name) in placeholders(reason) {
        if !PLACEHOLDERS.contains(&name) {
            let known: Vec<String> = PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{{{p}}}}}"))
                .collect();
            problems.push(problem(
                i,
                "reason",
                format!(
                    "unknown placeholder `{{{{{}}}}}`; use one of {}",
                    clip(name, 40),
                    known.join(", ")
                ),
            ));
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= MAX_NAME
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// At most `max` characters of `text`, with `…` when cut; blanks collapsed.
fn clip(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The `{{name}}` placeholders of `text`: start, end and the trimmed name.
fn placeholders(text: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{") {
        let start = from + open;
        let Some(close) = text[start + 2..].find("}}") else {
            break;
        };
        let end = start + 2 + close + 2;
        found.push((start, end, text[start + 2..end - 2].trim()));
        from = end;
    }
    found
}

// ---------------------------------------------------------------------------
// Compiled rules and what they read
// ---------------------------------------------------------------------------

/// A rule whose `when` and `due` passed [`cel_guard::compile`].
#[derive(Debug, Clone)]
pub struct QueueRule {
    pub def: QueueRuleDef,
    when: Compiled,
    due: Compiled,
}

impl QueueRule {
    /// Compiles `when` and `due`. (Use [`check_rules`] for the whole of a
    /// pack's checking, with messages per field.)
    pub fn compile(def: QueueRuleDef) -> Result<QueueRule, ExprError> {
        let when = cel_guard::compile(&def.when)?;
        let due = cel_guard::compile(&def.due)?;
        Ok(QueueRule { def, when, due })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }
}

/// What the rules read about one client.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    pub arr: Option<f64>,
    pub renewal_date: Option<Date>,
    /// 0-100.
    pub health_score: Option<f64>,
    /// 0-100.
    pub risk_score: Option<f64>,
    /// 0-100.
    pub opportunity_score: Option<f64>,
    /// The client's free attributes (a JSON object, or `null`).
    pub attributes: &'a serde_json::Value,
    /// The latest observation of each signal name.
    pub latest: &'a BTreeMap<String, f64>,
}

impl Signals<'_> {
    /// The renewal date minus `today`, in days.
    pub fn days_to_renewal(&self, today: Date) -> Option<i64> {
        self.renewal_date.map(|d| (d - today).whole_days())
    }

    fn value(&self, input: FactorInput, today: Date) -> Option<f64> {
        let value = match input {
            FactorInput::Health => self.health_score,
            FactorInput::Arr => self.arr,
            FactorInput::DaysToRenewal => self.days_to_renewal(today).map(|d| d as f64),
            FactorInput::Risk => self.risk_score,
            FactorInput::Opportunity => self.opportunity_score,
        };
        value.filter(|v| v.is_finite())
    }

    /// The variables of `when` and `due`, in the order of [`VARIABLES`].
    fn variables(&self, today: Date) -> Vec<(&'static str, Cel)> {
        let double = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(Cel::Null, Cel::Float);
        let attributes = match self.attributes {
            serde_json::Value::Null => Cel::from(HashMap::<String, Cel>::new()),
            other => cel_guard::from_json(other),
        };
        let signals: HashMap<String, Cel> = self
            .latest
            .iter()
            .map(|(k, v)| (k.clone(), Cel::Float(*v)))
            .collect();
        let values = [
            self.days_to_renewal(today).map_or(Cel::Null, Cel::Int),
            self.renewal_date
                .map_or(Cel::Null, |d| Cel::from(iso(d).as_str())),
            double(self.arr),
            double(self.health_score),
            double(self.risk_score),
            double(self.opportunity_score),
            attributes,
            Cel::from(signals),
        ];
        VARIABLES.into_iter().zip(values).collect()
    }

    /// The value of a reason's placeholder; `None` for an unknown one.
    fn placeholder(&self, name: &str, today: Date) -> Option<String> {
        let shown = |v: Option<f64>| v.map_or_else(|| "unknown".to_owned(), number);
        Some(match name {
            "days_to_renewal" => shown(self.value(FactorInput::DaysToRenewal, today)),
            "arr" => shown(self.value(FactorInput::Arr, today)),
            "health_score" => shown(self.value(FactorInput::Health, today)),
            "risk_score" => shown(self.value(FactorInput::Risk, today)),
            "opportunity_score" => shown(self.value(FactorInput::Opportunity, today)),
            "renewal_date" => self.renewal_date.map_or_else(|| "unknown".to_owned(), iso),
            _ => return None,
        })
    }
}

fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A number for people: at most two decimals, none when whole, thousands
/// separated (`250,000`, `72.5`).
fn number(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    let digits = format!("{:.2}", rounded.abs());
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits.as_str(), ""));
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::new();
    if rounded < 0.0 {
        out.push('-');
    }
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

// ---------------------------------------------------------------------------
// Score
// ---------------------------------------------------------------------------

/// One factor of a score, explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Factor {
    pub input: FactorInput,
    /// The client's value; `null` when none is recorded.
    pub value: Option<f64>,
    pub weight: f64,
    /// The value mapped to 0..1 (1 is the most urgent), to four decimals.
    pub normalized: f64,
    /// Its points of the score (0-100), to two decimals.
    pub contribution: f64,
    /// For people: "health 35 of 100: lower health raises priority".
    pub explanation: String,
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The priority score (0-100, two decimals) of a client under these factors,
/// with each factor's part. A factor normalizes its value to 0..1: health
/// `(100 - h) / 100`, risk `r / 100`, opportunity `o / 100` (scores clamped to
/// 0..100), ARR `arr / scale` capped at 1, days to renewal `1 - days / scale`
/// clamped to 0..1 (overdue is 1). A missing value counts 0. The score is
/// `100 · Σ(w·n) / Σw`; the contributions `100 · w·n / Σw` add up to it (each
/// rounded to two decimals).
pub fn score(factors: &[FactorDef], s: &Signals, today: Date) -> (f64, Vec<Factor>) {
    let usable = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let total: f64 = factors.iter().map(|f| usable(f.weight)).sum();
    let mut sum = 0.0;
    let list = factors
        .iter()
        .map(|f| {
            let scale = f
                .scale
                .filter(|s| s.is_finite() && *s > 0.0)
                .or(f.input.default_scale())
                .unwrap_or(100.0);
            let value = s.value(f.input, today);
            let normalized = value.map_or(0.0, |v| normalize(f.input, v, scale));
            let share = if total > 0.0 {
                usable(f.weight) * normalized / total
            } else {
                0.0
            };
            sum += share;
            Factor {
                input: f.input,
                value,
                weight: f.weight,
                normalized: round_to(normalized, 4),
                contribution: round_to(100.0 * share, 2),
                explanation: explain(f.input, value, scale),
            }
        })
        .collect();
    (round_to(100.0 * sum, 2), list)
}

fn normalize(input: FactorInput, v: f64, scale: f64) -> f64 {
    match input {
        FactorInput::Health => (100.0 - v.clamp(0.0, 100.0)) / 100.0,
        FactorInput::Risk | FactorInput::Opportunity => v.clamp(0.0, 100.0) / 100.0,
        FactorInput::Arr => (v / scale).clamp(0.0, 1.0),
        FactorInput::DaysToRenewal => (1.0 - v / scale).clamp(0.0, 1.0),
    }
}

fn explain(input: FactorInput, value: Option<f64>, scale: f64) -> String {
    let Some(v) = value else {
        return match input {
            FactorInput::Health => "no health score is recorded",
            FactorInput::Arr => "no ARR is recorded",
            FactorInput::DaysToRenewal => "no renewal date is recorded",
            FactorInput::Risk => "no risk score is recorded",
            FactorInput::Opportunity => "no opportunity score is recorded",
        }
        .to_owned();
    };
    let n = number(v);
    match input {
        FactorInput::Health => format!("health {n} of 100: lower health raises priority"),
        FactorInput::Risk => format!("risk {n} of 100: higher risk raises priority"),
        FactorInput::Opportunity => {
            format!("opportunity {n} of 100: a larger opportunity raises priority")
        }
        FactorInput::Arr => format!("ARR {n} of {}", number(scale)),
        FactorInput::DaysToRenewal => {
            let when = match v as i64 {
                0 => "renewal today".to_owned(),
                1 => "renewal in 1 day".to_owned(),
                -1 => "renewal 1 day overdue".to_owned(),
                days if days < 0 => format!("renewal {} days overdue", number(-v)),
                _ => format!("renewal in {n} days"),
            };
            format!("{when} (of a {}-day horizon)", number(scale))
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluating one client
// ---------------------------------------------------------------------------

/// A rule that matched a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Match {
    pub rule: String,
    pub template: String,
    /// The rule's reason with its placeholders filled.
    pub reason: String,
    #[serde(with = "crate::dates")]
    #[schema(value_type = String, format = Date)]
    pub due: Date,
    /// 0-100, two decimals.
    pub score: f64,
    pub factors: Vec<Factor>,
    /// The matching rule that replaces this one, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

/// A rule that could not be evaluated for a client: it does not match, and
/// says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleFailure {
    pub rule: String,
    pub message: String,
}

/// The rules run for one client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evaluation {
    /// In the order of the rules.
    pub matches: Vec<Match>,
    pub errors: Vec<RuleFailure>,
}

/// Runs the rules for one client. A rule whose `when` fails or is not a
/// boolean, or whose `due` fails or is neither an int nor a date string, does
/// not match and is reported in `errors`.
///
/// A match is superseded when another matching rule names it in
/// `supersedes`: by the first such rule in pack order that is not superseded
/// itself, or else by the first such rule.
pub fn evaluate(rules: &[QueueRule], s: &Signals, today: Date) -> Evaluation {
    let variables = s.variables(today);
    let mut evaluation = Evaluation::default();
    let mut matched: Vec<&QueueRule> = Vec::new();
    for rule in rules {
        match run(rule, &variables, s, today) {
            Ok(Some(m)) => {
                evaluation.matches.push(m);
                matched.push(rule);
            }
            Ok(None) => {}
            Err(message) => evaluation.errors.push(RuleFailure {
                rule: rule.def.name.clone(),
                message,
            }),
        }
    }
    let superseders = |name: &str| -> Vec<&str> {
        matched
            .iter()
            .filter(|r| r.def.name != name && r.def.supersedes.iter().any(|s| s == name))
            .map(|r| r.name())
            .collect()
    };
    let by: Vec<Option<String>> = matched
        .iter()
        .map(|r| {
            let over = superseders(r.name());
            over.iter()
                .copied()
                .find(|o| superseders(o).is_empty())
                .or(over.first().copied())
                .map(str::to_owned)
        })
        .collect();
    for (m, by) in evaluation.matches.iter_mut().zip(by) {
        m.superseded_by = by;
    }
    evaluation
}

/// One rule for one client: its match, none, or why it could not be run.
fn run(
    rule: &QueueRule,
    variables: &[(&'static str, Cel)],
    s: &Signals,
    today: Date,
) -> Result<Option<Match>, String> {
    // A run-time error names the null variables the expression reads: the
    // likeliest cause is a comparison without a `!= null` guard.
    let failed = |field: &str, expr: &Compiled, e: ExprError| {
        let nulls: Vec<&str> = variables
            .iter()
            .filter(|(k, v)| matches!(v, Cel::Null) && expr.source().contains(k))
            .map(|(k, _)| *k)
            .collect();
        let hint = if matches!(e, ExprError::Runtime(_)) && !nulls.is_empty() {
            format!(
                " ({} null for this client: guard with `{} != null && …`)",
                if nulls.len() == 1 {
                    format!("{} is", nulls[0])
                } else {
                    format!("{} are", nulls.join(", "))
                },
                nulls[0]
            )
        } else {
            String::new()
        };
        format!("`{field}` cannot be evaluated: {e}{hint}")
    };
    match cel_guard::evaluate(&rule.when, variables.to_vec()) {
        Ok(Cel::Bool(true)) => {}
        Ok(Cel::Bool(false)) => return Ok(None),
        Ok(other) => {
            return Err(format!(
                "`when` gives a {}, not a boolean; make it true or false",
                other.type_of()
            ));
        }
        Err(e) => return Err(failed("when", &rule.when, e)),
    }
    let due = match cel_guard::evaluate(&rule.due, variables.to_vec()) {
        Ok(Cel::Int(days)) => days_from(today, days)?,
        Ok(Cel::UInt(days)) => days_from(today, i64::try_from(days).unwrap_or(i64::MAX))?,
        Ok(Cel::String(text)) => dates::parse(&text).ok_or_else(|| {
            format!(
                "`due` gives \"{}\", not a date as YYYY-MM-DD",
                clip(&text, 40)
            )
        })?,
        Ok(other) => {
            return Err(format!(
                "`due` gives a {}, not days from today (an int: use int(…) on a double) \
                 or a date (\"YYYY-MM-DD\")",
                other.type_of()
            ));
        }
        Err(e) => return Err(failed("due", &rule.due, e)),
    };
    let (points, factors) = score(&rule.def.factors, s, today);
    let reason = fill(&rule.def.reason, |name| s.placeholder(name, today));
    Ok(Some(Match {
        rule: rule.def.name.clone(),
        template: rule.def.template.clone(),
        reason,
        due,
        score: points,
        factors,
        superseded_by: None,
    }))
}

fn days_from(today: Date, days: i64) -> Result<Date, String> {
    if days.abs() > MAX_DUE_DAYS {
        return Err(format!(
            "`due` is {days} days from today, more than {MAX_DUE_DAYS} either way"
        ));
    }
    today
        .checked_add(Duration::days(days))
        .ok_or_else(|| format!("`due` is {days} days from today, past the calendar"))
}

/// `text` with its known placeholders replaced; unknown ones stay as written.
fn fill(text: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end, name) in placeholders(text) {
        if let Some(v) = value(name) {
            out.push_str(&text[last..start]);
            out.push_str(&v);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

// ---------------------------------------------------------------------------
// Stored items and reconciling
// ---------------------------------------------------------------------------

/// Where a queue item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Due, not started.
    Open,
    /// Its playbook journey runs.
    Started,
    /// Put aside until a time.
    Snoozed,
    /// Its playbook completed.
    Completed,
    /// No longer due, or closed by a person.
    Closed,
    /// Replaced by a more urgent rule's item.
    Superseded,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 6] = [
        ItemStatus::Open,
        ItemStatus::Started,
        ItemStatus::Snoozed,
        ItemStatus::Completed,
        ItemStatus::Closed,
        ItemStatus::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Open => "open",
            ItemStatus::Started => "started",
            ItemStatus::Snoozed => "snoozed",
            ItemStatus::Completed => "completed",
            ItemStatus::Closed => "closed",
            ItemStatus::Superseded => "superseded",
        }
    }

    /// Completed, closed and superseded: nothing more happens to the item
    /// but a rules run reopening it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemStatus::Completed | ItemStatus::Closed | ItemStatus::Superseded
        )
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown queue item status `{}`; one of {}",
                    s.chars().take(40).collect::<String>(),
                    ItemStatus::ALL.map(ItemStatus::as_str).join(", ")
                )
            })
    }
}

/// A client's queue item as stored; `(rule, template)` is its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    pub rule: String,
    pub template: String,
    pub status: ItemStatus,
    pub snoozed_until: Option<OffsetDateTime>,
    /// A playbook journey was started for it.
    pub has_journey: bool,
    pub reason: String,
    /// The due date the rule gave last (a date a person scheduled is kept
    /// beside it by the store, and not compared here).
    pub due: Date,
    /// A person set the due date: the store keeps it whatever runs decide.
    pub scheduled: bool,
    pub score: f64,
    pub factors: Vec<Factor>,
    pub superseded_by: Option<String>,
}

/// What a rules run does to one of a client's items, named by `(rule,
/// template)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new item, open.
    Open(Match),
    /// The same status, with a new score, factors, reason or rule due date
    /// (the store keeps a date a person scheduled).
    Update { m: Match },
    /// Back in the queue as `status` (open, or started when it has a journey).
    Reopen { m: Match, status: ItemStatus },
    /// No longer due.
    Close {
        rule: String,
        template: String,
        reason: String,
    },
    /// Replaced by rule `by`.
    Supersede {
        rule: String,
        template: String,
        by: String,
    },
}

impl Change {
    /// The item's `(rule, template)`.
    pub fn key(&self) -> (&str, &str) {
        match self {
            Change::Open(m) | Change::Update { m } | Change::Reopen { m, .. } => {
                (&m.rule, &m.template)
            }
            Change::Close { rule, template, .. } | Change::Supersede { rule, template, .. } => {
                (rule, template)
            }
        }
    }
}

/// What a rules run changes in one client's `stored` items, given its
/// evaluation. Matches come first, in rule order; closings after, in the
/// order of `stored`.
///
/// A match that is not superseded: without an item, [`Change::Open`]; an open
/// or started item is updated when its reason, rule due date, score or
/// factors differ, and otherwise left alone; a
/// snoozed item stays snoozed until its time, then is reopened; a closed or
/// superseded item is reopened; a completed item is reopened only when the
/// due date differs from the stored one (a new cycle, e.g. next year's
/// renewal). Reopened items are started when they have a journey, open
/// otherwise; a new cycle after completion is always open, with the rule's
/// due date.
///
/// A superseded match supersedes an open or snoozed item; a started one goes
/// on (its playbook runs), and no item is created just to be superseded.
///
/// An open or snoozed item without a match is closed, saying why: its rule no
/// longer matches, is gone from the pack, or now makes another template.
/// But an item whose rule failed for this client in this run is left alone:
/// an error is not an answer. Started and final items without a match are
/// left alone too.
pub fn reconcile(
    rules: &[QueueRule],
    stored: &[StoredItem],
    eval: &Evaluation,
    now: OffsetDateTime,
) -> Vec<Change> {
    use ItemStatus::*;
    let mut changes = Vec::new();
    for m in &eval.matches {
        let item = stored
            .iter()
            .find(|i| i.rule == m.rule && i.template == m.template);
        if let Some(by) = &m.superseded_by {
            if let Some(item) = item.filter(|i| matches!(i.status, Open | Snoozed)) {
                changes.push(Change::Supersede {
                    rule: item.rule.clone(),
                    template: item.template.clone(),
                    by: by.clone(),
                });
            }
            continue;
        }
        let Some(item) = item else {
            changes.push(Change::Open(m.clone()));
            continue;
        };
        let resumed = if item.has_journey { Started } else { Open };
        match item.status {
            Open | Started => {
                if item.reason != m.reason
                    || item.due != m.due
                    || item.score != m.score
                    || item.factors != m.factors
                {
                    changes.push(Change::Update { m: m.clone() });
                }
            }
            Snoozed => {
                if item.snoozed_until.is_none_or(|until| until <= now) {
                    changes.push(Change::Reopen {
                        m: m.clone(),
                        status: resumed,
                    });
                }
            }
            Closed | Superseded => changes.push(Change::Reopen {
                m: m.clone(),
                status: resumed,
            }),
            Completed => {
                if m.due != item.due {
                    changes.push(Change::Reopen {
                        m: m.clone(),
                        status: Open,
                    });
                }
            }
        }
    }
    for item in stored {
        let matched = eval
            .matches
            .iter()
            .any(|m| m.rule == item.rule && m.template == item.template);
        if matched || !matches!(item.status, Open | Snoozed) {
            continue;
        }
        let close = |reason: String| Change::Close {
            rule: item.rule.clone(),
            template: item.template.clone(),
            reason,
        };
        let Some(rule) = rules.iter().find(|r| r.def.name == item.rule) else {
            changes.push(close(format!(
                "the pack no longer has rule `{}`",
                item.rule
            )));
            continue;
        };
        if rule.def.template != item.template {
            changes.push(close(format!(
                "rule `{}` now makes `{}`, not `{}`",
                item.rule, rule.def.template, item.template
            )));
        } else if !eval.errors.iter().any(|e| e.rule == item.rule) {
            changes.push(close(format!(
                "no longer due: rule `{}` ({}) does not match",
                item.rule,
                clip(&rule.def.when, 120)
            )));
        }
    }
    changes
}

/// Whether an item is in the queue now: open, started, or snoozed until a
/// time that has come (a snooze that is over shows at once, before any run).
pub fn visible(
    status: ItemStatus,
    snoozed_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    match status {
        ItemStatus::Open | ItemStatus::Started => true,
        ItemStatus::Snoozed => snoozed_until.is_none_or(|until| until <= now),
        _ => false,
    }
}

/// Whether an item due on `due` is overdue on `today`.
pub fn overdue(due: Date, today: Date) -> bool {
    due < today
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// What a person does to an item.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Put it aside until a time.
    Snooze { until: OffsetDateTime },
    /// Move its started playbook past the current step.
    Skip,
    /// Hand it to someone else.
    Escalate { to: String },
    /// Set its due date; rules runs keep it.
    Schedule { due: Date },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Snooze { .. } => "snooze",
            Action::Skip => "skip",
            Action::Escalate { .. } => "escalate",
            Action::Schedule { .. } => "schedule",
        }
    }
}

/// What an item takes on from an allowed action.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Snoozed until then.
    Snooze { until: OffsetDateTime },
    /// Nothing on the item (a skip acts on its journey).
    None,
    /// Owned by `to` (trimmed).
    Escalate { to: String },
    /// Due then, and scheduled.
    Schedule { due: Date },
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action}: {message}")]
pub struct ActionRefusal {
    /// The action's [`Action::name`].
    pub action: &'static str,
    /// Why, and what to do instead.
    pub message: String,
}

/// Whether `action` may be taken on an item in `status` owned by `owner`,
/// and what the item takes on. Nothing happens to a final item; a snooze
/// ends after now and at most [`MAX_SNOOZE_DAYS`] ahead; an escalation goes
/// to someone other than the owner; a scheduled date is at most
/// [`MAX_SCHEDULE_PAST_DAYS`] in the past; a skip needs a started playbook.
pub fn check_action(
    action: &Action,
    status: ItemStatus,
    owner: Option<&str>,
    now: OffsetDateTime,
) -> Result<Effect, ActionRefusal> {
    let refuse = |message: String| ActionRefusal {
        action: action.name(),
        message,
    };
    if status.is_final() {
        return Err(refuse(format!(
            "the item is {status}; nothing more happens to it"
        )));
    }
    match action {
        Action::Snooze { until } => {
            if *until <= now {
                Err(refuse("pick a time after now".to_owned()))
            } else if *until > now + Duration::days(MAX_SNOOZE_DAYS) {
                Err(refuse(format!(
                    "snooze at most {MAX_SNOOZE_DAYS} days ahead; pick an earlier time"
                )))
            } else {
                Ok(Effect::Snooze { until: *until })
            }
        }
        Action::Skip => {
            if status == ItemStatus::Started {
                Ok(Effect::None)
            } else {
                Err(refuse(
                    "start the playbook first: skip moves past its current step".to_owned(),
                ))
            }
        }
        Action::Escalate { to } => {
            let to = to.trim();
            if to.is_empty() {
                Err(refuse("name the person to escalate to".to_owned()))
            } else if owner == Some(to) {
                Err(refuse(format!(
                    "{to} already owns the item; escalate to someone else"
                )))
            } else {
                Ok(Effect::Escalate { to: to.to_owned() })
            }
        }
        Action::Schedule { due } => {
            let earliest = now.date() - Duration::days(MAX_SCHEDULE_PAST_DAYS);
            if *due < earliest {
                Err(refuse(format!(
                    "pick a date at most {MAX_SCHEDULE_PAST_DAYS} days in the past (from {})",
                    iso(earliest)
                )))
            } else {
                Ok(Effect::Schedule { due: *due })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use time::macros::{date, datetime};

    const TODAY: Date = date!(2025 - 06 - 01);
    const NOW: OffsetDateTime = datetime!(2025-06-01 09:00 UTC);
    static NO_ATTRIBUTES: Value = Value::Null;
    static NO_SIGNALS: BTreeMap<String, f64> = BTreeMap::new();

    fn client(days: Option<i64>, health: Option<f64>, arr: Option<f64>) -> Signals<'static> {
        Signals {
            arr,
            renewal_date: days.map(|d| TODAY + Duration::days(d)),
            health_score: health,
            risk_score: None,
            opportunity_score: None,
            attributes: &NO_ATTRIBUTES,
            latest: &NO_SIGNALS,
        }
    }

    fn factors() -> Value {
        json!([
            {"input": "health", "weight": 2},
            {"input": "days_to_renewal", "weight": 2},
            {"input": "arr", "weight": 1},
        ])
    }

    fn renewal_defs() -> Vec<QueueRuleDef> {
        serde_json::from_value(json!([
            {
                "name": "prepare", "template": "renewal-prepare",
                "when": "days_to_renewal != null && days_to_renewal <= 120",
                "reason": "Renewal in {{days_to_renewal}} days ({{renewal_date}}), ARR {{arr}}",
                "due": "days_to_renewal - 90", "factors": factors(),
            },
            {
                "name": "critical", "template": "renewal-critical",
                "when": "days_to_renewal != null && days_to_renewal <= 30",
                "reason": "Renewal in {{days_to_renewal}} days, health {{ health_score }}",
                "due": "days_to_renewal - 14", "supersedes": ["prepare"], "factors": factors(),
            },
            {
                "name": "emergency", "template": "renewal-emergency",
                "when": "days_to_renewal != null && days_to_renewal <= 7",
                "reason": "Renewal on {{renewal_date}}; risk {{risk_score}}; act today",
                "due": "renewal_date", "supersedes": ["critical", "prepare"],
                "factors": factors(),
            },
        ]))
        .unwrap()
    }

    fn compiled(defs: Vec<QueueRuleDef>) -> Vec<QueueRule> {
        defs.into_iter()
            .map(|d| QueueRule::compile(d).unwrap())
            .collect()
    }

    fn one(when: &str, due: &str) -> QueueRule {
        let mut def = renewal_defs().remove(0);
        def.when = when.to_owned();
        def.due = due.to_owned();
        QueueRule::compile(def).unwrap()
    }

    fn stored(m: &Match, status: ItemStatus) -> StoredItem {
        StoredItem {
            rule: m.rule.clone(),
            template: m.template.clone(),
            status,
            snoozed_until: None,
            has_journey: false,
            reason: m.reason.clone(),
            due: m.due,
            scheduled: false,
            score: m.score,
            factors: m.factors.clone(),
            superseded_by: None,
        }
    }

    /// What the store would do with the changes.
    fn apply(items: &mut Vec<StoredItem>, changes: &[Change]) {
        for c in changes {
            let (rule, template) = c.key();
            let at = items
                .iter()
                .position(|i| i.rule == rule && i.template == template);
            match (c, at) {
                (Change::Open(m), None) => items.push(stored(m, ItemStatus::Open)),
                (Change::Update { m }, Some(i)) | (Change::Reopen { m, .. }, Some(i)) => {
                    let status = match c {
                        Change::Reopen { status, .. } => *status,
                        _ => items[i].status,
                    };
                    let keep = items[i].scheduled;
                    items[i] = StoredItem {
                        scheduled: keep,
                        ..stored(m, status)
                    };
                }
                (Change::Close { .. }, Some(i)) => items[i].status = ItemStatus::Closed,
                (Change::Supersede { by, .. }, Some(i)) => {
                    items[i].status = ItemStatus::Superseded;
                    items[i].superseded_by = Some(by.clone());
                }
                _ => panic!("{c:?} does not fit the items"),
            }
        }
    }

    #[test]
    fn the_renewal_rules_pick_the_playbook_by_days_left_and_rank_the_urgent_first() {
        let rules = compiled(renewal_defs());
        assert!(
            check_rules(
                &renewal_defs(),
                &["renewal-prepare", "renewal-critical", "renewal-emergency"]
            )
            .is_empty()
        );
        let far = evaluate(
            &rules,
            &client(Some(100), Some(80.0), Some(500_000.0)),
            TODAY,
        );
        let near = evaluate(
            &rules,
            &client(Some(25), Some(50.0), Some(250_000.0)),
            TODAY,
        );
        let now = evaluate(&rules, &client(Some(5), Some(30.0), Some(100_000.0)), TODAY);
        for e in [&far, &near, &now] {
            assert!(e.errors.is_empty(), "{:?}", e.errors);
        }
        let summary = |e: &Evaluation| -> Vec<(String, Option<String>)> {
            e.matches
                .iter()
                .map(|m| (m.rule.clone(), m.superseded_by.clone()))
                .collect()
        };
        let s = |r: &str| r.to_owned();
        assert_eq!(summary(&far), [(s("prepare"), None)]);
        assert_eq!(
            summary(&near),
            [(s("prepare"), Some(s("critical"))), (s("critical"), None)]
        );
        // Prepare is listed by critical first, but critical is itself
        // superseded: the one that stands replaces it.
        assert_eq!(
            summary(&now),
            [
                (s("prepare"), Some(s("emergency"))),
                (s("critical"), Some(s("emergency"))),
                (s("emergency"), None)
            ]
        );
        let standing = |e: &Evaluation| {
            e.matches
                .iter()
                .find(|m| m.superseded_by.is_none())
                .unwrap()
                .clone()
        };
        let (far, near, now) = (standing(&far), standing(&near), standing(&now));
        assert!(now.score > near.score && near.score > far.score);
        // 100 * (2*0.2 + 2*(1 - 100/120) + 1*0.5) / 5
        assert_eq!(far.score, 24.67);
        assert_eq!(far.due, date!(2025 - 06 - 11));
        assert_eq!(near.due, date!(2025 - 06 - 12));
        assert_eq!(now.due, date!(2025 - 06 - 06), "a date string");
        assert_eq!(far.reason, "Renewal in 100 days (2025-09-09), ARR 500,000");
        assert_eq!(near.reason, "Renewal in 25 days, health 50");
        assert_eq!(now.reason, "Renewal on 2025-06-06; risk unknown; act today");
        let explanations: Vec<&str> = near
            .factors
            .iter()
            .map(|f| f.explanation.as_str())
            .collect();
        assert_eq!(
            explanations,
            [
                "health 50 of 100: lower health raises priority",
                "renewal in 25 days (of a 120-day horizon)",
                "ARR 250,000 of 1,000,000"
            ]
        );
        // A client without a renewal date matches nothing, without errors.
        let none = evaluate(&rules, &client(None, Some(10.0), None), TODAY);
        assert_eq!(none, Evaluation::default());
    }

    /// What the renewal pack may rely on.
    #[test]
    fn cel_variables_behave_as_documented() {
        let c = client(Some(100), Some(35.0), None);
        let matches = |when: &str, s: &Signals| {
            let e = evaluate(&[one(when, "0")], s, TODAY);
            (e.matches.len() == 1, e.errors)
        };
        let guarded = "days_to_renewal != null && days_to_renewal <= 120 && days_to_renewal > 30";
        assert_eq!(matches(guarded, &c), (true, vec![]));
        assert_eq!(
            matches(guarded, &client(Some(20), None, None)),
            (false, vec![])
        );
        assert_eq!(matches(guarded, &client(None, None, None)), (false, vec![]));
        // A double compares with an int literal.
        assert_eq!(matches("health_score < 50", &c), (true, vec![]));
        assert_eq!(matches("health_score >= 35", &c), (true, vec![]));
        assert_eq!(matches("health_score == 35", &c), (true, vec![]));
        // An unguarded null is an error, reported, and no match.
        let (matched, errors) = matches("arr <= 100000", &c);
        assert!(!matched);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.starts_with("`when` cannot be evaluated"),
            "{errors:?}"
        );
        assert!(
            errors[0]
                .message
                .ends_with(" (arr is null for this client: guard with `arr != null && …`)"),
            "{errors:?}"
        );
        let (_, errors) = matches("days_to_renewal <= 120", &client(None, None, None));
        assert_eq!(
            errors[0].message,
            "`when` cannot be evaluated: found no matching overload for '_<=_' applied to \
             '(null_type, int)' (days_to_renewal is null for this client: guard with \
             `days_to_renewal != null && …`)"
        );
        // Attributes (null is an empty map), signals and the date string.
        let attributes = json!({"segment": "enterprise", "seats": 40});
        let latest = BTreeMap::from([("nps".to_owned(), 42.0)]);
        let rich = Signals {
            attributes: &attributes,
            latest: &latest,
            ..c
        };
        let when = "attributes.segment == 'enterprise' && attributes.seats > 30 \
                    && signals.nps < 50 && renewal_date == '2025-09-09'";
        assert_eq!(matches(when, &rich), (true, vec![]));
        assert_eq!(
            matches("size(attributes) == 0 && size(signals) == 0", &c),
            (true, vec![])
        );
        // Not a boolean; a due that is neither days nor a date.
        let (_, errors) = matches("health_score", &c);
        assert!(errors[0].message.contains("not a boolean"), "{errors:?}");
        for (due, says) in [
            ("1.5", "not days from today"),
            ("'soon'", "not a date"),
            ("100000", "more than 36500"),
            ("arr + 1", "cannot be evaluated"),
        ] {
            let e = evaluate(&[one("true", due)], &c, TODAY);
            assert!(e.matches.is_empty(), "{due}");
            assert!(e.errors[0].message.contains(says), "{due}: {:?}", e.errors);
        }
        let e = evaluate(&[one("true", "-3")], &c, TODAY);
        assert_eq!(e.matches[0].due, date!(2025 - 05 - 29));
        assert!(overdue(e.matches[0].due, TODAY));
        assert!(!overdue(TODAY, TODAY));
    }

    #[test]
    fn scores_normalize_clamp_and_explain() {
        let f = |input: &str, weight: f64, scale: Option<f64>| FactorDef {
            input: serde_json::from_value(json!(input)).unwrap(),
            weight,
            scale,
        };
        let mut c = client(Some(-5), Some(130.0), Some(3_000_000.0));
        c.risk_score = Some(70.0);
        let (total, list) = score(
            &[
                f("health", 1.0, None),
                f("days_to_renewal", 1.0, Some(30.0)),
                f("arr", 1.0, None),
                f("risk", 1.0, None),
                f("opportunity", 1.0, None),
            ],
            &c,
            TODAY,
        );
        let normalized: Vec<f64> = list.iter().map(|f| f.normalized).collect();
        assert_eq!(normalized, [0.0, 1.0, 1.0, 0.7, 0.0]);
        assert_eq!(total, 54.0);
        assert_eq!(
            list[1].explanation,
            "renewal 5 days overdue (of a 30-day horizon)"
        );
        assert_eq!(list[2].explanation, "ARR 3,000,000 of 1,000,000");
        assert_eq!(
            list[3].explanation,
            "risk 70 of 100: higher risk raises priority"
        );
        assert_eq!(list[4].explanation, "no opportunity score is recorded");
        assert_eq!((list[4].value, list[4].contribution), (None, 0.0));
        assert_eq!(number(1234.5), "1,234.5");
        assert_eq!(number(72.456), "72.46");
        assert_eq!(number(-0.001), "0");
    }

    proptest! {
        #[test]
        fn contributions_add_up_to_the_score(
            spec in proptest::collection::vec((0usize..5, 0.01f64..1000.0, proptest::option::of(1.0f64..2_000_000.0)), 1..8),
            health in proptest::option::of(-20.0f64..120.0),
            days in proptest::option::of(-400i64..400),
            arr in proptest::option::of(0.0f64..5_000_000.0),
            risk in proptest::option::of(0.0f64..100.0),
        ) {
            let factors: Vec<FactorDef> = spec
                .iter()
                .map(|(i, weight, scale)| FactorDef { input: FactorInput::ALL[*i], weight: *weight, scale: *scale })
                .collect();
            let mut c = client(days, health, arr);
            c.risk_score = risk;
            let (total, list) = score(&factors, &c, TODAY);
            prop_assert!((0.0..=100.0).contains(&total));
            let sum: f64 = list.iter().map(|f| f.contribution).sum();
            let slack = 0.01 + 0.005 * list.len() as f64;
            prop_assert!((sum - total).abs() <= slack, "{} vs {}", sum, total);
            for f in &list {
                prop_assert!((0.0..=1.0).contains(&f.normalized));
            }
        }
    }

    fn near_client() -> (Vec<QueueRule>, Evaluation) {
        let rules = compiled(renewal_defs());
        let e = evaluate(
            &rules,
            &client(Some(25), Some(50.0), Some(250_000.0)),
            TODAY,
        );
        (rules, e)
    }

    #[test]
    fn a_match_opens_updates_or_leaves_an_item() {
        let (rules, e) = near_client();
        let critical = e.matches[1].clone();
        // Nothing stored: critical opens; superseded prepare creates nothing.
        assert_eq!(
            reconcile(&rules, &[], &e, NOW),
            [Change::Open(critical.clone())]
        );
        // The same item, open or started: nothing.
        for status in [ItemStatus::Open, ItemStatus::Started] {
            assert_eq!(reconcile(&rules, &[stored(&critical, status)], &e, NOW), []);
        }
        // A new score is an update.
        let mut old = stored(&critical, ItemStatus::Started);
        old.score = 10.0;
        assert_eq!(
            reconcile(&rules, &[old.clone()], &e, NOW),
            [Change::Update {
                m: critical.clone()
            }]
        );
        // The rule's due date is compared, a person's schedule aside: the
        // store keeps that one.
        old.scheduled = true;
        old.score = critical.score;
        assert_eq!(reconcile(&rules, &[old.clone()], &e, NOW), []);
        old.due = date!(2025 - 07 - 01);
        let changes = reconcile(&rules, &[old], &e, NOW);
        let [Change::Update { m }] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(m.due, critical.due);
    }

    #[test]
    fn snoozed_closed_superseded_and_completed_items_come_back_when_due() {
        let (rules, e) = near_client();
        let critical = e.matches[1].clone();
        let mut snoozed = stored(&critical, ItemStatus::Snoozed);
        snoozed.snoozed_until = Some(NOW + Duration::hours(1));
        assert_eq!(reconcile(&rules, &[snoozed.clone()], &e, NOW), []);
        snoozed.snoozed_until = Some(NOW);
        let reopen = |status| Change::Reopen {
            m: critical.clone(),
            status,
        };
        assert_eq!(
            reconcile(&rules, &[snoozed.clone()], &e, NOW),
            [reopen(ItemStatus::Open)]
        );
        snoozed.has_journey = true;
        assert_eq!(
            reconcile(&rules, &[snoozed], &e, NOW),
            [reopen(ItemStatus::Started)]
        );
        for status in [ItemStatus::Closed, ItemStatus::Superseded] {
            assert_eq!(
                reconcile(&rules, &[stored(&critical, status)], &e, NOW),
                [reopen(ItemStatus::Open)]
            );
        }
        // Completed: the same cycle stays completed; a new due date is a new cycle.
        let mut done = stored(&critical, ItemStatus::Completed);
        done.has_journey = true;
        assert_eq!(reconcile(&rules, &[done.clone()], &e, NOW), []);
        done.due = date!(2024 - 06 - 12);
        assert_eq!(
            reconcile(&rules, &[done], &e, NOW),
            [reopen(ItemStatus::Open)]
        );
    }

    #[test]
    fn superseded_matches_supersede_waiting_items_only() {
        let (rules, e) = near_client();
        let prepare = e.matches[0].clone();
        let critical = stored(&e.matches[1], ItemStatus::Open);
        for status in [ItemStatus::Open, ItemStatus::Snoozed] {
            assert_eq!(
                reconcile(
                    &rules,
                    &[stored(&prepare, status), critical.clone()],
                    &e,
                    NOW
                ),
                [Change::Supersede {
                    rule: "prepare".into(),
                    template: "renewal-prepare".into(),
                    by: "critical".into()
                }]
            );
        }
        for status in [
            ItemStatus::Started,
            ItemStatus::Completed,
            ItemStatus::Closed,
        ] {
            let items = [stored(&prepare, status), critical.clone()];
            assert_eq!(reconcile(&rules, &items, &e, NOW), [], "{status}");
        }
    }

    #[test]
    fn items_without_a_match_close_unless_their_rule_failed() {
        let rules = compiled(renewal_defs());
        let far = evaluate(&rules, &client(Some(100), Some(80.0), None), TODAY);
        let near = evaluate(&rules, &client(Some(25), Some(80.0), None), TODAY);
        let critical = near.matches[1].clone();
        let close = |reason: &str| Change::Close {
            rule: "critical".into(),
            template: "renewal-critical".into(),
            reason: reason.into(),
        };
        let no_longer = "no longer due: rule `critical` (days_to_renewal != null && days_to_renewal <= 30) does not match";
        let prepare = stored(&far.matches[0], ItemStatus::Open);
        for status in [ItemStatus::Open, ItemStatus::Snoozed] {
            let items = [prepare.clone(), stored(&critical, status)];
            assert_eq!(reconcile(&rules, &items, &far, NOW), [close(no_longer)]);
        }
        for status in [
            ItemStatus::Started,
            ItemStatus::Completed,
            ItemStatus::Superseded,
        ] {
            let items = [prepare.clone(), stored(&critical, status)];
            assert_eq!(reconcile(&rules, &items, &far, NOW), [], "{status}");
        }
        // The rule failed for this client: an error is not an answer.
        let failed = Evaluation {
            matches: far.matches.clone(),
            errors: vec![RuleFailure {
                rule: "critical".into(),
                message: "`when` cannot be evaluated".into(),
            }],
        };
        let items = [prepare.clone(), stored(&critical, ItemStatus::Open)];
        assert_eq!(reconcile(&rules, &items, &failed, NOW), []);
        // The rule is gone, or makes another template now.
        assert_eq!(
            reconcile(&rules[..1], &items, &far, NOW),
            [close("the pack no longer has rule `critical`")]
        );
        let mut moved = renewal_defs();
        moved[1].template = "renewal-urgent".into();
        assert_eq!(
            reconcile(&compiled(moved), &items, &far, NOW),
            [close(
                "rule `critical` now makes `renewal-urgent`, not `renewal-critical`"
            )]
        );
    }

    #[test]
    fn a_second_identical_run_changes_nothing() {
        let rules = compiled(renewal_defs());
        let mut items = Vec::new();
        for days in [100, 25, 25, 5, 5, 60, 60] {
            let e = evaluate(&rules, &client(Some(days), Some(40.0), Some(1e5)), TODAY);
            let changes = reconcile(&rules, &items, &e, NOW);
            apply(&mut items, &changes);
            assert_eq!(reconcile(&rules, &items, &e, NOW), [], "{days} days");
        }
        let status = |rule: &str| items.iter().find(|i| i.rule == rule).map(|i| i.status);
        assert_eq!(
            status("prepare"),
            Some(ItemStatus::Open),
            "reopened at 60 days"
        );
        assert_eq!(status("critical"), Some(ItemStatus::Superseded));
        assert_eq!(status("emergency"), Some(ItemStatus::Closed));
    }

    #[test]
    fn a_snooze_shows_again_once_over() {
        let until = NOW + Duration::days(2);
        assert!(!visible(ItemStatus::Snoozed, Some(until), NOW));
        assert!(!visible(
            ItemStatus::Snoozed,
            Some(until),
            until - Duration::seconds(1)
        ));
        assert!(visible(ItemStatus::Snoozed, Some(until), until));
        assert!(visible(ItemStatus::Open, None, NOW));
        assert!(visible(ItemStatus::Started, None, NOW));
        for status in [
            ItemStatus::Completed,
            ItemStatus::Closed,
            ItemStatus::Superseded,
        ] {
            assert!(!visible(status, None, NOW), "{status}");
        }
        for status in ItemStatus::ALL {
            assert_eq!(status.as_str().parse::<ItemStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
        }
        assert!(
            "paused"
                .parse::<ItemStatus>()
                .unwrap_err()
                .contains("open, started")
        );
    }

    #[test]
    fn actions_are_refused_with_what_to_do() {
        let check = |action: Action, status| check_action(&action, status, Some("ana"), NOW);
        let refusal = |action: Action, status| check(action, status).unwrap_err().message;
        for status in [
            ItemStatus::Completed,
            ItemStatus::Closed,
            ItemStatus::Superseded,
        ] {
            let e = check(Action::Skip, status).unwrap_err();
            assert_eq!(e.action, "skip");
            assert_eq!(
                e.message,
                format!("the item is {status}; nothing more happens to it")
            );
        }
        let until = NOW + Duration::days(3);
        assert_eq!(
            check(Action::Snooze { until }, ItemStatus::Open),
            Ok(Effect::Snooze { until })
        );
        assert!(refusal(Action::Snooze { until: NOW }, ItemStatus::Open).contains("after now"));
        let far = NOW + Duration::days(366);
        assert!(refusal(Action::Snooze { until: far }, ItemStatus::Started).contains("365 days"));
        assert_eq!(check(Action::Skip, ItemStatus::Started), Ok(Effect::None));
        assert_eq!(
            refusal(Action::Skip, ItemStatus::Open),
            "start the playbook first: skip moves past its current step"
        );
        let to = |s: &str| Action::Escalate { to: s.into() };
        assert_eq!(
            check(to(" bo "), ItemStatus::Snoozed),
            Ok(Effect::Escalate { to: "bo".into() })
        );
        assert!(refusal(to("  "), ItemStatus::Open).contains("name the person"));
        assert!(refusal(to("ana"), ItemStatus::Open).contains("someone else"));
        let due = |d| Action::Schedule { due: d };
        assert_eq!(
            check(due(date!(2024 - 06 - 01)), ItemStatus::Open),
            Ok(Effect::Schedule {
                due: date!(2024 - 06 - 01)
            })
        );
        assert!(
            refusal(due(date!(2024 - 05 - 31)), ItemStatus::Open).contains("365 days in the past")
        );
        let e = check(Action::Skip, ItemStatus::Open).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot skip: start the playbook"),
            "{e}"
        );
    }

    #[test]
    fn check_rules_says_what_to_fix() {
        let templates = ["renewal-prepare", "renewal-critical", "renewal-emergency"];
        let mut defs = renewal_defs();
        defs[0].template = "renewal-prep".into();
        defs[0].when = "days_to_renewal <=".into();
        defs[1].name = "prepare".into();
        defs[2].factors[1].weight = 0.0;
        defs[2].factors[0].scale = Some(10.0);
        defs[2].reason = "{{days}} left".into();
        let problems = check_rules(&defs, &templates);
        let found: Vec<(usize, &str)> = problems.iter().map(|p| (p.index, p.field)).collect();
        assert_eq!(
            found,
            [
                (0, "template"),
                (0, "when"),
                (1, "name"),
                (1, "supersedes"),
                (2, "supersedes"),
                (2, "factors"),
                (2, "factors"),
                (2, "reason"),
            ],
            "{problems:#?}"
        );
        let message = |i: usize| problems[i].message.as_str();
        assert_eq!(
            message(0),
            "unknown template `renewal-prep`; use one of: renewal-prepare, renewal-critical, renewal-emergency"
        );
        assert!(message(1).starts_with("line 1, column"), "{}", message(1));
        assert_eq!(
            message(2),
            "rule 0 is already named `prepare`; give each rule its own name"
        );
        assert_eq!(
            message(3),
            "a rule cannot supersede itself; remove `prepare`"
        );
        assert_eq!(
            message(4),
            "`critical` is not a rule of this pack; name one of: prepare"
        );
        assert_eq!(
            message(5),
            "factor 1 (health): scale applies only to arr and days_to_renewal; remove it"
        );
        assert_eq!(
            message(6),
            "factor 2 (days_to_renewal): weight 0 is not allowed; use a number greater than 0 and at most 1000"
        );
        assert!(
            message(7).contains("unknown placeholder `{{days}}`"),
            "{}",
            message(7)
        );
        assert_eq!(
            problems[0].to_string(),
            format!("queue[0].template: {}", message(0))
        );

        // A circle of supersedes, unknown names, bad names, no factors.
        let mut defs = renewal_defs();
        defs[0].supersedes = vec!["emergency".into()];
        let problems = check_rules(&defs, &templates);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            problems[0].message,
            "rules supersede one another in a circle: critical -> prepare -> emergency -> \
             critical; remove one of these supersedes"
        );
        assert_eq!((problems[0].index, problems[0].field), (1, "supersedes"));
        let mut defs = renewal_defs();
        defs[0].name = "Prepare".into();
        defs[1].supersedes = vec!["nope".into()];
        defs[2].factors.clear();
        defs[2].reason = " ".into();
        defs[2].due = String::new();
        let fields: Vec<(usize, &str)> = check_rules(&defs, &templates)
            .iter()
            .map(|p| (p.index, p.field))
            .collect();
        assert_eq!(
            fields,
            [
                (0, "name"),
                (1, "supersedes"),
                (2, "due"),
                (2, "supersedes"),
                (2, "factors"),
                (2, "reason"),
            ]
        );
        // Unknown fields are refused when the pack is read.
        let bad = json!({"name": "a", "template": "t", "when": "true", "reason": "r",
                         "due": "0", "factors": [], "priority": 3});
        assert!(serde_json::from_value::<QueueRuleDef>(bad).is_err());
    }
}
