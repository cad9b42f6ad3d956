//! Delivery: what an engagement hands over to its client, and what still
//! stands in the way.
//!
//! **Which types a delivery needs** ([`required_types`], documented for pack
//! authors in `docs/PACKS.md`, *Delivery*): when the pack declares a type
//! named `delivery`, that type and everything it requires, transitively (the
//! marketing pack's delivery requires intake, strategy, creatives and
//! execution; monitoring, which follows the delivery, is not needed for it);
//! otherwise every type of the pack.
//!
//! **What stops an export** ([`assess`]): a needed type with no live artifact
//! (not cancelled or archived), and any live artifact of a needed type that
//! is not approved (a draft, one waiting for the client, a stale one). Each
//! blocker is a sentence that says what to do. A live artifact of a type the
//! delivery does not need goes into the bundle when it is approved and is
//! left out, with a note, when it is not: it never blocks.
//!
//! **Pipeline analytics** ([`analytics`]): artifacts by status, the stale
//! ones, and the review turnaround: from each share (`→ in_review`) to the
//! decision that ends the round (`→ approved`, or back to `draft` when
//! rejected or withdrawn), median and p90 by nearest rank as
//! [`crate::analytics::Durations`] computes them. A round the stale cascade
//! ended, or one still open, has no turnaround.
//!
//! And the names things get in the bundle: [`entry_names`] for artifacts
//! (`strategy`, or `wave_definition-1`, `wave_definition-2` when a type has
//! several) and [`bundle_file_names`] for attached files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::analytics::Durations;
use crate::gating::{is_current_candidate, satisfies};
use crate::id::ArtifactId;
use crate::lifecycle::ArtifactStatus;

/// The name of the type whose requirements say what a delivery needs.
pub const DELIVERY_TYPE: &str = "delivery";

/// A type of the engagement's pack, as delivery reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackType {
    pub name: String,
    /// How people call it (`Client intake`).
    pub title: String,
    pub requires: Vec<String>,
}

/// An artifact of the engagement, as delivery reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: ArtifactId,
    pub artifact_type: String,
    pub title: String,
    pub status: ArtifactStatus,
    pub version: i64,
    /// Why it is stale (its status is `stale`).
    pub stale_reason: Option<String>,
}

/// What kind of thing stops an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockerKind {
    /// A needed type has no live artifact.
    Missing,
    /// An artifact of a needed type is not approved (a draft, or waiting for
    /// the client).
    Unapproved,
    /// An artifact of a needed type is stale: an input changed after it was
    /// built.
    Stale,
}

/// One thing that stops an export, with the sentence that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Blocker {
    pub kind: BlockerKind,
    #[serde(rename = "type")]
    pub artifact_type: String,
    /// The artifact (absent when the type has none).
    #[schema(value_type = Option<String>)]
    pub artifact_id: Option<ArtifactId>,
    pub title: Option<String>,
    pub status: Option<ArtifactStatus>,
    pub version: Option<i64>,
    /// Why it is stale, as the cascade said it.
    pub stale_reason: Option<String>,
    /// What stops the export and what to do about it.
    pub message: String,
}

/// A live artifact of a type the delivery does not need, left out of the
/// bundle because it is not approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LeftOut {
    #[schema(value_type = String)]
    pub artifact_id: ArtifactId,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: String,
    pub status: ArtifactStatus,
    pub message: String,
}

/// Where an engagement's delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Nothing blocks an export.
    pub ready: bool,
    /// The types a delivery needs, in pipeline order.
    pub required: Vec<String>,
    pub blockers: Vec<Blocker>,
    /// The approved artifacts the bundle holds, in pipeline order (then in
    /// the order given).
    pub included: Vec<ArtifactId>,
    pub left_out: Vec<LeftOut>,
}

/// The types a delivery needs, in the pack's order: the `delivery` type and
/// everything it requires (transitively) when the pack has one, else every
/// type.
pub fn required_types(types: &[PackType]) -> Vec<String> {
    let Some(delivery) = types.iter().find(|t| t.name == DELIVERY_TYPE) else {
        return types.iter().map(|t| t.name.clone()).collect();
    };
    let by_name: HashMap<&str, &PackType> = types.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut needed: HashSet<&str> = HashSet::new();
    let mut todo = vec![delivery.name.as_str()];
    while let Some(t) = todo.pop() {
        if needed.insert(t)
            && let Some(def) = by_name.get(t)
        {
            todo.extend(def.requires.iter().map(String::as_str));
        }
    }
    types
        .iter()
        .filter(|t| needed.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect()
}

/// `'Q3 strategy' (strategy, v2)`.
fn named(a: &Candidate) -> String {
    format!("'{}' ({}, v{})", a.title, a.artifact_type, a.version)
}

/// The blocker of an artifact of a needed type that is not approved.
fn blocker_of(a: &Candidate) -> Blocker {
    let (kind, message) = match a.status {
        ArtifactStatus::Stale => (
            BlockerKind::Stale,
            format!(
                "{} is stale: {}. Check it against its new inputs, then re-approve it or write a new version.",
                named(a),
                a.stale_reason
                    .as_deref()
                    .unwrap_or("an input changed after it was built")
                    .trim_end_matches('.')
            ),
        ),
        ArtifactStatus::InReview => (
            BlockerKind::Unapproved,
            format!(
                "{} is waiting for the client's approval: follow up with its reviewers.",
                named(a)
            ),
        ),
        ArtifactStatus::Draft => (
            BlockerKind::Unapproved,
            format!(
                "{} is a draft: finish it and share it with the client for approval.",
                named(a)
            ),
        ),
        other => (
            BlockerKind::Unapproved,
            format!("{} is {other}, not approved: have it approved.", named(a)),
        ),
    };
    Blocker {
        kind,
        artifact_type: a.artifact_type.clone(),
        artifact_id: Some(a.id),
        title: Some(a.title.clone()),
        status: Some(a.status),
        version: Some(a.version),
        stale_reason: a.stale_reason.clone(),
        message,
    }
}

/// Where the delivery of an engagement of `types` with `artifacts` (every
/// artifact of the engagement, oldest first) stands.
pub fn assess(types: &[PackType], artifacts: &[Candidate]) -> Assessment {
    let required = required_types(types);
    let needed: HashSet<&str> = required.iter().map(String::as_str).collect();
    // Pipeline order; types the pack no longer declares come last, by name.
    let mut order: Vec<(String, String)> = types
        .iter()
        .map(|t| (t.name.clone(), t.title.clone()))
        .collect();
    let unknown: BTreeSet<&str> = artifacts
        .iter()
        .map(|a| a.artifact_type.as_str())
        .filter(|t| !types.iter().any(|d| d.name == *t))
        .collect();
    order.extend(unknown.into_iter().map(|t| (t.to_owned(), t.to_owned())));

    let mut blockers = Vec::new();
    let mut included = Vec::new();
    let mut left_out = Vec::new();
    for (ty, title) in &order {
        let live: Vec<&Candidate> = artifacts
            .iter()
            .filter(|a| &a.artifact_type == ty && is_current_candidate(a.status))
            .collect();
        let is_needed = needed.contains(ty.as_str());
        if is_needed && live.is_empty() {
            blockers.push(Blocker {
                kind: BlockerKind::Missing,
                artifact_type: ty.clone(),
                artifact_id: None,
                title: None,
                status: None,
                version: None,
                stale_reason: None,
                message: format!(
                    "No {title} ({ty}) yet: create it from the pipeline board and have it approved."
                ),
            });
        }
        for a in live {
            if satisfies(a.status) {
                included.push(a.id);
            } else if is_needed {
                blockers.push(blocker_of(a));
            } else {
                left_out.push(LeftOut {
                    artifact_id: a.id,
                    artifact_type: a.artifact_type.clone(),
                    title: a.title.clone(),
                    status: a.status,
                    message: format!(
                        "{} is {} and is left out of the export; the delivery does not need it, \
                         but it goes in once approved.",
                        named(a),
                        a.status
                    ),
                });
            }
        }
    }
    Assessment {
        ready: blockers.is_empty(),
        required,
        blockers,
        included,
        left_out,
    }
}

/// A change of an artifact's status, from its history, in the order recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub artifact_id: ArtifactId,
    pub from: Option<ArtifactStatus>,
    pub to: ArtifactStatus,
    pub at: OffsetDateTime,
}

/// Review rounds that ended in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReviewTurnaround {
    /// Rounds decided (approved + sent back).
    pub count: usize,
    /// Rounds that ended approved.
    pub approved: usize,
    /// Rounds that ended back in draft (rejected or withdrawn).
    pub sent_back: usize,
    /// From share to decision, nearest-rank median and p90, in seconds.
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub mean_s: Option<f64>,
    pub max_s: Option<f64>,
}

/// An engagement's pipeline in figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PipelineAnalytics {
    /// Artifacts by status (every status, zeros included).
    pub by_status: BTreeMap<String, usize>,
    /// Stale artifacts.
    pub stale: usize,
    /// Stale artifacts by type.
    pub stale_by_type: BTreeMap<String, usize>,
    pub review_turnaround: ReviewTurnaround,
}

/// The seconds from each share to the decision ending its round, and how
/// each ended (`true`: approved); `changes` in the order recorded.
pub fn review_rounds(changes: &[StatusChange]) -> Vec<(f64, bool)> {
    let mut open: HashMap<ArtifactId, OffsetDateTime> = HashMap::new();
    let mut rounds = Vec::new();
    for c in changes {
        if c.to == ArtifactStatus::InReview {
            open.insert(c.artifact_id, c.at);
            continue;
        }
        if c.from != Some(ArtifactStatus::InReview) {
            continue;
        }
        // Leaving review ends the round, decided or not.
        if let Some(start) = open.remove(&c.artifact_id) {
            let approved = match c.to {
                ArtifactStatus::Approved => true,
                ArtifactStatus::Draft => false,
                _ => continue,
            };
            let s = (c.at - start).as_seconds_f64().max(0.0);
            rounds.push((s, approved));
        }
    }
    rounds
}

/// Artifacts by status, stale counts and review turnaround.
pub fn analytics(artifacts: &[Candidate], changes: &[StatusChange]) -> PipelineAnalytics {
    let mut by_status: BTreeMap<String, usize> = ArtifactStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut stale_by_type: BTreeMap<String, usize> = BTreeMap::new();
    for a in artifacts {
        *by_status.entry(a.status.as_str().to_owned()).or_default() += 1;
        if a.status == ArtifactStatus::Stale {
            *stale_by_type.entry(a.artifact_type.clone()).or_default() += 1;
        }
    }
    let rounds = review_rounds(changes);
    let approved = rounds.iter().filter(|r| r.1).count();
    let d = Durations::of(rounds.iter().map(|r| r.0).collect());
    PipelineAnalytics {
        stale: by_status.get("stale").copied().unwrap_or(0),
        by_status,
        stale_by_type,
        review_turnaround: ReviewTurnaround {
            count: d.count,
            approved,
            sent_back: d.count - approved,
            median_s: d.median_s,
            p90_s: d.p90_s,
            mean_s: d.mean_s,
            max_s: d.max_s,
        },
    }
}

/// The name each artifact's entries get in the bundle (`artifacts/<name>.json`
/// and `.md`), given their types in bundle order: the type, or the type with
/// its place among its kind (`wave_definition-2`) when a type has several.
pub fn entry_names<S: AsRef<str>>(types: &[S]) -> Vec<String> {
    let mut total: HashMap<&str, usize> = HashMap::new();
    for t in types {
        *total.entry(t.as_ref()).or_default() += 1;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    types
        .iter()
        .map(|t| {
            let t = t.as_ref();
            let n = seen.entry(t).or_default();
            *n += 1;
            if total[t] > 1 {
                format!("{t}-{n}")
            } else {
                t.to_owned()
            }
        })
        .collect()
}

/// Longest file name kept in a bundle, in bytes.
const MAX_NAME: usize = 120;

/// A file's name made safe for a ZIP entry: no folders, no control
/// characters, no characters Windows refuses, no leading dots, at most 120
/// bytes (the extension kept); `file` when nothing is left.
pub fn bundle_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() {
        return "file".into();
    }
    if cleaned.len() <= MAX_NAME {
        return cleaned;
    }
    let (stem, ext) = match cleaned.rfind('.') {
        Some(i) if cleaned.len() - i <= 16 => cleaned.split_at(i),
        _ => (cleaned.as_str(), ""),
    };
    let mut cut = MAX_NAME - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// Safe, distinct names for files in a bundle, in the order given: a name
/// taken already (compared without case, as some file systems do) gets
/// ` (2)`, ` (3)`... before its extension.
pub fn bundle_file_names<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    names
        .iter()
        .map(|n| {
            let base = bundle_file_name(n.as_ref());
            let (stem, ext) = match base.rfind('.') {
                Some(i) if i > 0 => base.split_at(i),
                _ => (base.as_str(), ""),
            };
            let mut candidate = base.clone();
            let mut k = 1;
            while !taken.insert(candidate.to_lowercase()) {
                k += 1;
                candidate = format!("{stem} ({k}){ext}");
            }
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ArtifactStatus::*;

    fn ty(name: &str, requires: &[&str]) -> PackType {
        PackType {
            name: name.into(),
            title: format!("The {name}"),
            requires: requires.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn marketing() -> Vec<PackType> {
        vec![
            ty("intake", &[]),
            ty("strategy", &["intake"]),
            ty("creatives", &["strategy"]),
            ty("execution", &["strategy", "creatives"]),
            ty("monitoring", &["execution"]),
            ty(
                "delivery",
                &["intake", "strategy", "creatives", "execution"],
            ),
        ]
    }

    fn art(ty: &str, status: ArtifactStatus) -> Candidate {
        Candidate {
            id: ArtifactId::new(),
            artifact_type: ty.into(),
            title: format!("{ty} doc"),
            status,
            version: 2,
            stale_reason: (status == Stale).then(|| "Upstream intake changed from v1 to v2".into()),
        }
    }

    #[test]
    fn the_delivery_type_and_its_requirements_are_needed() {
        assert_eq!(
            required_types(&marketing()),
            ["intake", "strategy", "creatives", "execution", "delivery"]
        );
        // Transitively: delivery needs b, b needs a.
        let types = vec![
            ty("a", &[]),
            ty("b", &["a"]),
            ty("c", &[]),
            ty("delivery", &["b"]),
        ];
        assert_eq!(required_types(&types), ["a", "b", "delivery"]);
    }

    #[test]
    fn without_a_delivery_type_every_type_is_needed() {
        let types = vec![ty("plan", &[]), ty("wave", &["plan"])];
        assert_eq!(required_types(&types), ["plan", "wave"]);
    }

    #[test]
    fn nothing_yet_names_every_needed_type_as_missing() {
        let a = assess(&marketing(), &[]);
        assert!(!a.ready);
        let kinds: Vec<_> = a
            .blockers
            .iter()
            .map(|b| (b.kind, b.artifact_type.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (BlockerKind::Missing, "intake"),
                (BlockerKind::Missing, "strategy"),
                (BlockerKind::Missing, "creatives"),
                (BlockerKind::Missing, "execution"),
                (BlockerKind::Missing, "delivery"),
            ]
        );
        assert_eq!(
            a.blockers[0].message,
            "No The intake (intake) yet: create it from the pipeline board and have it approved."
        );
    }

    #[test]
    fn every_needed_artifact_approved_is_ready() {
        let arts: Vec<_> = ["delivery", "intake", "strategy", "creatives", "execution"]
            .iter()
            .map(|t| art(t, Approved))
            .collect();
        let a = assess(&marketing(), &arts);
        assert!(a.ready, "{:?}", a.blockers);
        // Pipeline order, whatever the order given.
        let order: Vec<_> = a
            .included
            .iter()
            .map(|id| {
                arts.iter()
                    .find(|x| x.id == *id)
                    .unwrap()
                    .artifact_type
                    .as_str()
            })
            .collect();
        assert_eq!(
            order,
            ["intake", "strategy", "creatives", "execution", "delivery"]
        );
    }

    #[test]
    fn stale_and_unapproved_artifacts_block_with_what_to_do() {
        let arts = vec![
            art("intake", Approved),
            art("strategy", Stale),
            art("creatives", InReview),
            art("execution", Draft),
            art("delivery", Implemented),
        ];
        let a = assess(&marketing(), &arts);
        assert!(!a.ready);
        assert_eq!(a.blockers.len(), 3);
        assert_eq!(a.blockers[0].kind, BlockerKind::Stale);
        assert_eq!(a.blockers[0].artifact_type, "strategy");
        assert_eq!(a.blockers[0].artifact_id, Some(arts[1].id));
        assert_eq!(
            a.blockers[0].message,
            "'strategy doc' (strategy, v2) is stale: Upstream intake changed from v1 to v2. \
             Check it against its new inputs, then re-approve it or write a new version."
        );
        assert_eq!(a.blockers[1].kind, BlockerKind::Unapproved);
        assert!(
            a.blockers[1]
                .message
                .contains("waiting for the client's approval")
        );
        assert!(
            a.blockers[2]
                .message
                .contains("is a draft: finish it and share it")
        );
        // What is approved (implemented counts) is in the bundle.
        assert_eq!(a.included, [arts[0].id, arts[4].id]);
    }

    #[test]
    fn every_live_artifact_of_a_needed_type_counts_and_dead_ones_do_not() {
        let arts = vec![
            art("intake", Approved),
            art("intake", Draft),
            art("intake", Cancelled),
            art("strategy", Archived),
        ];
        let a = assess(&[ty("intake", &[]), ty("strategy", &["intake"])], &arts);
        let kinds: Vec<_> = a
            .blockers
            .iter()
            .map(|b| (b.kind, b.artifact_type.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (BlockerKind::Unapproved, "intake"),
                (BlockerKind::Missing, "strategy")
            ]
        );
        assert_eq!(a.included, [arts[0].id]);
    }

    #[test]
    fn types_the_delivery_does_not_need_never_block() {
        let mut arts: Vec<_> = ["intake", "strategy", "creatives", "execution", "delivery"]
            .iter()
            .map(|t| art(t, Approved))
            .collect();
        arts.push(art("monitoring", Stale));
        let a = assess(&marketing(), &arts);
        assert!(a.ready);
        assert_eq!(a.left_out.len(), 1);
        assert_eq!(a.left_out[0].artifact_type, "monitoring");
        assert!(a.left_out[0].message.contains("left out of the export"));
        arts.last_mut().unwrap().status = Approved;
        let a = assess(&marketing(), &arts);
        assert!(a.left_out.is_empty());
        assert_eq!(a.included.len(), 6);
        // Monitoring comes in pipeline order, before delivery.
        assert_eq!(a.included[4], arts[5].id);
    }

    #[test]
    fn artifacts_of_types_the_pack_dropped_come_last() {
        let arts = vec![art("legacy", Approved), art("plan", Approved)];
        let a = assess(&[ty("plan", &[])], &arts);
        assert!(a.ready);
        assert_eq!(a.included, [arts[1].id, arts[0].id]);
    }

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    fn change(
        id: ArtifactId,
        from: Option<ArtifactStatus>,
        to: ArtifactStatus,
        s: i64,
    ) -> StatusChange {
        StatusChange {
            artifact_id: id,
            from,
            to,
            at: at(s),
        }
    }

    #[test]
    fn turnaround_runs_from_each_share_to_its_decision() {
        let a = ArtifactId::new();
        let b = ArtifactId::new();
        let changes = vec![
            change(a, Some(Draft), InReview, 0),
            change(b, Some(Draft), InReview, 10),
            // Rejected after 100 s, shared again, approved after 50 s.
            change(a, Some(InReview), Draft, 100),
            change(a, Some(Draft), InReview, 200),
            change(a, Some(InReview), Approved, 250),
            // b went stale in review: no decision, no turnaround.
            change(b, Some(InReview), Stale, 20),
            // A re-approval from stale is not a review round.
            change(b, Some(Stale), Approved, 30),
        ];
        assert_eq!(review_rounds(&changes), [(100.0, false), (50.0, true)]);
        let arts = vec![
            Candidate {
                id: a,
                ..art("intake", Approved)
            },
            Candidate {
                id: b,
                ..art("strategy", Stale)
            },
            art("creatives", Stale),
        ];
        let an = analytics(&arts, &changes);
        assert_eq!(an.by_status["approved"], 1);
        assert_eq!(an.by_status["stale"], 2);
        assert_eq!(an.by_status["draft"], 0);
        assert_eq!(an.stale, 2);
        assert_eq!(an.stale_by_type["creatives"], 1);
        let t = an.review_turnaround;
        assert_eq!((t.count, t.approved, t.sent_back), (2, 1, 1));
        // Nearest rank over [50, 100]: the median is the lower value, p90 the upper.
        assert_eq!((t.median_s, t.p90_s), (Some(50.0), Some(100.0)));
    }

    #[test]
    fn no_rounds_no_turnaround() {
        let t = analytics(&[], &[]).review_turnaround;
        assert_eq!(t.count, 0);
        assert_eq!(t.median_s, None);
        assert_eq!(t.p90_s, None);
    }

    #[test]
    fn entries_are_named_by_type_and_numbered_when_a_type_repeats() {
        assert_eq!(
            entry_names(&["intake", "wave", "strategy", "wave"]),
            ["intake", "wave-1", "strategy", "wave-2"]
        );
    }

    #[test]
    fn file_names_are_made_safe_and_distinct() {
        assert_eq!(bundle_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(bundle_file_name("..hidden"), "hidden");
        assert_eq!(bundle_file_name("a\u{0}b:c.pdf"), "a_b_c.pdf");
        assert_eq!(bundle_file_name("  "), "file");
        let long = format!("{}.pdf", "é".repeat(100));
        let safe = bundle_file_name(&long);
        assert!(safe.len() <= 120 && safe.ends_with(".pdf"), "{safe}");
        assert_eq!(
            bundle_file_names(&["brief.pdf", "Brief.PDF", "brief.pdf", "notes"]),
            ["brief.pdf", "Brief (2).PDF", "brief (3).pdf", "notes"]
        );
    }
}
