//! A playbook step's conversation: the customer context it starts from, the
//! trends of a client's signals, the system message, the template provider's
//! answer when no LLM answers, and a draft artifact from a reply.
//!
//! Signals are grouped by the prefix of their name: `financials.*`,
//! `usage.*`, `engagement.*` (e.g. `usage.active_users`); `health_score`,
//! `risk_score` and `opportunity_score` observations give the scores' trends.
//! Anything else is under `other`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::{Date, Duration, OffsetDateTime};

use crate::journey::{BranchDef, StageDef};

/// Where a signal's value moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Flat,
}

/// A signal's latest value against its values 30 and 90 days before.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Trend {
    pub latest: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The last value observed at least 30 days before the latest (or the
    /// oldest one, when the history is shorter).
    pub d30: Option<f64>,
    pub d90: Option<f64>,
    /// `latest - d30`.
    pub change_30: Option<f64>,
    pub change_90: Option<f64>,
    /// Over 30 days: a change under 1% of the older value is flat.
    pub direction: Direction,
}

/// The trend of one signal from its observations (any order); `None` without
/// any.
pub fn trend(points: &[(OffsetDateTime, f64)]) -> Option<Trend> {
    let mut sorted: Vec<(OffsetDateTime, f64)> = points.to_vec();
    sorted.sort_by_key(|p| p.0);
    let &(at, latest) = sorted.last()?;
    let before = |days: i64| {
        let cutoff = at - Duration::days(days);
        sorted
            .iter()
            .rev()
            .find(|(t, _)| *t <= cutoff)
            .or_else(|| sorted.first().filter(|(t, _)| *t < at))
            .map(|(_, v)| *v)
    };
    let (d30, d90) = (before(30), before(90));
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let change_30 = d30.map(|v| round(latest - v));
    let change_90 = d90.map(|v| round(latest - v));
    let direction = match (d30, change_30) {
        (Some(old), Some(c)) if c.abs() > (old.abs() * 0.01).max(f64::EPSILON) => {
            if c > 0.0 {
                Direction::Up
            } else {
                Direction::Down
            }
        }
        _ => Direction::Flat,
    };
    Some(Trend {
        latest,
        at,
        d30,
        d90,
        change_30,
        change_90,
        direction,
    })
}

/// The group a signal belongs to, and its name in the group.
pub fn group_of(name: &str) -> (&'static str, &str) {
    for group in ["financials", "usage", "engagement"] {
        if let Some(rest) = name
            .strip_prefix(group)
            .and_then(|r| r.strip_prefix('.'))
            .filter(|r| !r.is_empty())
        {
            return (group, rest);
        }
    }
    ("other", name)
}

/// Trends of every signal, by group then name.
pub fn grouped_trends(
    observations: &[(String, OffsetDateTime, f64)],
) -> BTreeMap<&'static str, BTreeMap<String, Trend>> {
    let mut by_name: BTreeMap<&str, Vec<(OffsetDateTime, f64)>> = BTreeMap::new();
    for (name, at, value) in observations {
        by_name.entry(name).or_default().push((*at, *value));
    }
    let mut out: BTreeMap<&'static str, BTreeMap<String, Trend>> = BTreeMap::new();
    for group in ["financials", "usage", "engagement", "other"] {
        out.insert(group, BTreeMap::new());
    }
    for (name, points) in by_name {
        if let Some(t) = trend(&points) {
            let (group, short) = group_of(name);
            out.entry(group).or_default().insert(short.to_owned(), t);
        }
    }
    out
}

/// The customer context of a playbook step, as the conversation and the
/// page show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerContext {
    pub customer: Customer,
    pub intelligence: Intelligence,
    /// Signals by group (`financials`, `usage`, `engagement`, `other`), each
    /// with its trend over 30 and 90 days.
    #[schema(value_type = Object)]
    pub data: BTreeMap<&'static str, BTreeMap<String, Trend>>,
    pub workflow: Workflow,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: String,
    pub name: String,
    /// The client's `domain` attribute, if it has one.
    pub domain: Option<String>,
    pub arr: Option<f64>,
    #[serde(with = "crate::dates::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub renewal_date: Option<Date>,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Intelligence {
    pub health_score: Option<f64>,
    pub risk_score: Option<f64>,
    pub opportunity_score: Option<f64>,
    /// Trends of the scores, from their observations (`health_score`, …).
    pub trends: BTreeMap<String, Trend>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workflow {
    pub journey_id: String,
    pub template: String,
    pub template_title: String,
    /// The journey's state: its current step's id while it runs.
    pub stage: String,
    pub stage_name: Option<String>,
    pub days_to_renewal: Option<i64>,
    /// The queue item's score, when the playbook came from the queue.
    pub priority_score: Option<f64>,
    pub queue_item_id: Option<String>,
    #[serde(with = "crate::dates::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub due: Option<Date>,
}

fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = format!("{}", v.abs() as i64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else {
        format!("{:.2}", v)
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".to_owned(), figure)
}

fn trend_words(t: &Trend) -> String {
    match (t.direction, t.change_30) {
        (Direction::Flat, _) | (_, None) => format!("{} (flat over 30 days)", figure(t.latest)),
        (d, Some(c)) => format!(
            "{} ({} {} over 30 days)",
            figure(t.latest),
            if d == Direction::Up { "up" } else { "down" },
            figure(c.abs())
        ),
    }
}

/// The context as plain lines, for the system message and the template
/// provider.
pub fn context_lines(c: &CustomerContext) -> Vec<String> {
    let mut lines = vec![
        format!(
            "Customer: {}{}",
            c.customer.name,
            c.customer
                .domain
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        format!(
            "ARR: {}; renewal date: {}{}",
            opt(c.customer.arr),
            c.customer
                .renewal_date
                .map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
            c.workflow
                .days_to_renewal
                .map(|d| format!(" ({d} days away)"))
                .unwrap_or_default()
        ),
        format!(
            "Scores (0-100): health {}, risk {}, opportunity {}",
            opt(c.intelligence.health_score),
            opt(c.intelligence.risk_score),
            opt(c.intelligence.opportunity_score)
        ),
    ];
    for (name, t) in &c.intelligence.trends {
        lines.push(format!("Trend of {name}: {}", trend_words(t)));
    }
    for (group, signals) in &c.data {
        for (name, t) in signals {
            lines.push(format!("{group} {name}: {}", trend_words(t)));
        }
    }
    lines.push(format!(
        "Playbook: {}, step {}{}",
        c.workflow.template_title,
        c.workflow
            .stage_name
            .as_deref()
            .unwrap_or(&c.workflow.stage),
        c.workflow
            .priority_score
            .map(|s| format!("; priority score {}", figure(s)))
            .unwrap_or_default()
    ));
    if let Some(owner) = &c.customer.owner {
        lines.push(format!("Account owner: {owner}"));
    }
    lines
}

/// The system message a step's conversation starts with: the role, the
/// customer context, the step and what the branch asks for.
pub fn system_message(c: &CustomerContext, step: &StageDef, branch: Option<&BranchDef>) -> String {
    let mut out = String::from(
        "You help a customer-success manager work through a renewal playbook. Answer in plain \
         text, briefly and concretely, using only the facts below; say when a fact is unknown.\n\n",
    );
    for line in context_lines(c) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("\nCurrent step: {}", step.name));
    if !step.description.is_empty() {
        out.push_str(&format!(" - {}", step.description));
    }
    out.push('\n');
    if let Some(prompt) = branch.and_then(|b| b.prompt.as_deref()) {
        out.push_str(&format!("Task: {}\n", prompt.trim()));
    }
    out
}

/// The template provider's answer: what the record says, for the step, and
/// why no LLM answered. Deterministic, and labelled as such by its provider.
pub fn template_reply(
    c: &CustomerContext,
    step: &StageDef,
    branch: Option<&BranchDef>,
    question: &str,
    why: &str,
) -> String {
    let mut out = format!("No LLM answered ({why}); here is what the record says.\n\n");
    for line in context_lines(c) {
        out.push_str("- ");
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("\nStep: {}", step.name));
    if !step.description.is_empty() {
        out.push_str(&format!(" - {}", step.description));
    }
    out.push('\n');
    if let Some(prompt) = branch.and_then(|b| b.prompt.as_deref()) {
        out.push_str(&format!("Asked of this conversation: {}\n", prompt.trim()));
    }
    let q = question.trim();
    if !q.is_empty() {
        let quoted: String = q.chars().take(300).collect();
        out.push_str(&format!("Your message: \"{quoted}\"\n"));
    }
    out
}

/// A first draft of an artifact from a reply, for the schema's fields a
/// reply can fill: a `body`, `text` or `content` string takes the reply; a
/// `subject`, `headline` or `title` its first line (without a `Subject:`
/// label); a `summary` its first sentence. The caller validates it against
/// the schema; what the reply cannot fill is left to the person.
pub fn draft_from_reply(reply: &str, schema: &Value) -> Value {
    let props = schema.get("properties").and_then(Value::as_object);
    let has = |name: &str| {
        props
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            == Some("string")
    };
    let text = reply.trim();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().trim();
    let subject = first
        .strip_prefix("Subject:")
        .or_else(|| first.strip_prefix("subject:"))
        .unwrap_or(first)
        .trim()
        .trim_matches('*')
        .trim();
    let labelled = first.to_ascii_lowercase().starts_with("subject:");
    let body = if labelled {
        lines.collect::<Vec<_>>().join("\n").trim().to_owned()
    } else {
        text.to_owned()
    };
    let summary: String = {
        let end = body
            .find(['.', '!', '?', '\n'])
            .map_or(body.len(), |i| i + 1);
        body[..end].trim().chars().take(300).collect()
    };
    let mut out = Map::new();
    for name in ["body", "text", "content"] {
        if has(name) && !body.is_empty() {
            out.insert(name.into(), body.clone().into());
            break;
        }
    }
    for name in ["subject", "headline", "title"] {
        if has(name) && !subject.is_empty() {
            out.insert(
                name.into(),
                subject.chars().take(200).collect::<String>().into(),
            );
        }
    }
    if has("summary") && !summary.is_empty() {
        out.insert("summary".into(), summary.into());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn trends_compare_the_latest_value_with_30_and_90_days_before() {
        let now = datetime!(2026-12-01 00:00 UTC);
        let points = [
            (now - Duration::days(100), 50.0),
            (now - Duration::days(40), 60.0),
            (now - Duration::days(10), 70.0),
            (now, 80.0),
        ];
        let t = trend(&points).unwrap();
        assert_eq!(t.latest, 80.0);
        assert_eq!(t.d30, Some(60.0));
        assert_eq!(t.d90, Some(50.0));
        assert_eq!(t.change_30, Some(20.0));
        assert_eq!(t.direction, Direction::Up);
        // A short history compares with its oldest value; one point is flat.
        let short = trend(&[(now - Duration::days(3), 10.0), (now, 9.0)]).unwrap();
        assert_eq!((short.d30, short.direction), (Some(10.0), Direction::Down));
        let one = trend(&[(now, 9.0)]).unwrap();
        assert_eq!((one.d30, one.direction), (None, Direction::Flat));
        assert!(trend(&[]).is_none());
    }

    #[test]
    fn signals_group_by_prefix() {
        assert_eq!(group_of("usage.active_users"), ("usage", "active_users"));
        assert_eq!(group_of("financials.mrr"), ("financials", "mrr"));
        assert_eq!(group_of("usage."), ("other", "usage."));
        assert_eq!(group_of("nps"), ("other", "nps"));
        let now = datetime!(2026-12-01 00:00 UTC);
        let g = grouped_trends(&[
            ("usage.active_users".into(), now, 40.0),
            ("engagement.support_tickets".into(), now, 3.0),
        ]);
        assert_eq!(g["usage"]["active_users"].latest, 40.0);
        assert!(g["financials"].is_empty());
    }

    #[test]
    fn a_reply_fills_what_it_can_of_a_schema() {
        let schema = json!({"type": "object", "properties": {
            "summary": {"type": "string"}, "subject": {"type": "string"},
            "body": {"type": "string"}, "to": {"type": "array"}}});
        let d = draft_from_reply(
            "Subject: Your renewal review\n\nHi Ana. Could we meet next week?",
            &schema,
        );
        assert_eq!(d["subject"], "Your renewal review");
        assert_eq!(d["body"], "Hi Ana. Could we meet next week?");
        assert_eq!(d["summary"], "Hi Ana.");
        assert!(d.get("to").is_none());
        let plain = draft_from_reply(
            "Renew as is.",
            &json!({"properties": {"headline": {"type": "string"}}}),
        );
        assert_eq!(plain, json!({"headline": "Renew as is."}));
    }

    #[test]
    fn figures_read_like_money() {
        assert_eq!(figure(1_250_000.0), "1,250,000");
        assert_eq!(figure(-1000.0), "-1,000");
        assert_eq!(figure(42.5), "42.50");
    }
}
