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

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// A span of time written `30s`, `15m`, `12h`, `7d` or `2w`.
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
        for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60)] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        assert_eq!(
            Span::parse("7d").unwrap().0,
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(Span::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Span::parse("120m").unwrap().to_string(), "2h");
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
