//! The stale cascade: which artifacts a new upstream version makes stale, with a
//! sentence and machine-readable causes for each.
//!
//! When artifact R gets a new version whose content hash differs from the previous
//! one, every artifact whose latest version was built from an older version of R
//! becomes stale (`upstream_changed`), and every artifact built on one of those
//! becomes stale in turn (`upstream_stale`), to any depth. Only artifacts still
//! being worked on can go stale (`draft`, `in_review`, `approved`, `stale`); an
//! artifact already turned into a journey, or finished, keeps its status and does
//! not pass the cascade on.
//!
//! The store finds the candidates with one recursive query; [`plan`] decides, from
//! those rows alone, which of them go stale and why.
//!
//! ```
//! use waymark_domain::cascade::{plan, Consumer, RootChange, Source};
//! use waymark_domain::{ArtifactId, ArtifactStatus::*};
//! let (intake, strategy, creatives) = (ArtifactId::new(), ArtifactId::new(), ArtifactId::new());
//! let root = RootChange { artifact_id: intake, artifact_type: "intake".into(), from_version: 1, to_version: 2,
//!                        generator_changed: false };
//! let consumers = vec![
//!     Consumer { artifact_id: strategy, status: Approved, causes: vec![],
//!                sources: vec![Source { artifact_id: intake, artifact_type: "intake".into(), version: 1 }] },
//!     Consumer { artifact_id: creatives, status: Approved, causes: vec![],
//!                sources: vec![Source { artifact_id: strategy, artifact_type: "strategy".into(), version: 1 }] },
//! ];
//! let marks = plan(&root, &consumers);
//! assert_eq!(marks[0].reason, "Upstream intake changed from v1 to v2");
//! assert_eq!(marks[1].reason, "Upstream strategy is stale (intake changed from v1 to v2)");
//! ```

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ArtifactId;
use crate::lifecycle::ArtifactStatus::{self, *};

/// Why an artifact is stale, in a form the UI can follow to the root cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaleCategory {
    /// A source got a new version with different content.
    UpstreamChanged,
    /// A source is itself stale.
    UpstreamStale,
    /// The generator that made this artifact changed.
    GeneratorChanged,
}

/// The change that started a cascade: an upstream's new version, or (with
/// `generator_changed`) a new generator for the artifact's type, which makes
/// the artifact itself stale at its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RootChange {
    pub artifact_id: ArtifactId,
    #[serde(rename = "type")]
    pub artifact_type: String,
    /// The version consumers were built from (the previous latest).
    pub from_version: i64,
    /// The new version.
    pub to_version: i64,
    /// The pack changed the generator that built the root's current version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generator_changed: bool,
}

impl RootChange {
    /// What happened to the root, as the end of a sentence.
    fn what(&self) -> String {
        if self.generator_changed {
            format!("the {} generator changed", self.artifact_type)
        } else {
            format!(
                "{} changed from v{} to v{}",
                self.artifact_type, self.from_version, self.to_version
            )
        }
    }
}

/// One machine-readable cause of staleness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaleCause {
    pub category: StaleCategory,
    /// The source artifact that changed or is stale.
    pub dependency: ArtifactId,
    /// Its type.
    pub dependency_type: String,
    /// The version of the dependency this artifact was built from.
    pub from_version: i64,
    /// The dependency's new version, for `upstream_changed`.
    pub to_version: Option<i64>,
    /// The change that started the cascade.
    pub root: RootChange,
}

impl StaleCause {
    /// The sentence shown for this cause.
    pub fn sentence(&self) -> String {
        let root = &self.root;
        match self.category {
            StaleCategory::UpstreamChanged => format!(
                "Upstream {} changed from v{} to v{}",
                self.dependency_type,
                self.from_version,
                self.to_version.unwrap_or(root.to_version)
            ),
            StaleCategory::UpstreamStale => format!(
                "Upstream {} is stale ({})",
                self.dependency_type,
                root.what()
            ),
            StaleCategory::GeneratorChanged => format!(
                "The {} generator changed since v{} was generated",
                self.dependency_type, self.from_version
            ),
        }
    }

    fn key(&self) -> (StaleCategory, ArtifactId, i64) {
        (self.category, self.dependency, self.root.to_version)
    }
}

/// The sentence for a list of causes: each cause's sentence, joined by `; `.
pub fn reason(causes: &[StaleCause]) -> String {
    causes
        .iter()
        .map(StaleCause::sentence)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A source of a consumer's latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub artifact_id: ArtifactId,
    pub artifact_type: String,
    pub version: i64,
}

/// An artifact downstream of the root, with the sources of its latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub artifact_id: ArtifactId,
    pub status: ArtifactStatus,
    /// The causes it carries already, when it is stale.
    pub causes: Vec<StaleCause>,
    pub sources: Vec<Source>,
}

/// An artifact the cascade makes stale.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleMark {
    pub artifact_id: ArtifactId,
    /// Its status before (`stale` when it was stale already).
    pub from_status: ArtifactStatus,
    /// Every cause, old and new: what [`reason`] makes a sentence of.
    pub causes: Vec<StaleCause>,
    /// The causes this change added, for its history entry.
    pub new_causes: Vec<StaleCause>,
    /// The sentence for all causes.
    pub reason: String,
}

/// Whether an artifact in `status` can be made stale (and passes the cascade on).
pub fn can_go_stale(status: ArtifactStatus) -> bool {
    matches!(status, Draft | InReview | Approved | Stale)
}

/// The artifacts among `consumers` that `root` makes stale, in the order they are
/// reached (breadth first), each with its causes.
pub fn plan(root: &RootChange, consumers: &[Consumer]) -> Vec<StaleMark> {
    spread(root, consumers)
}

/// The marks when the pack changed the generator of `generated`'s type: the
/// artifact itself (`generator_changed`, if it was generated and can go
/// stale), then everything built on it (`upstream_stale`), as [`plan`] walks.
///
/// ```
/// use waymark_domain::cascade::{plan_generator_change, Consumer, Source};
/// use waymark_domain::{ArtifactId, ArtifactStatus::*};
/// let (strategy, creatives) = (ArtifactId::new(), ArtifactId::new());
/// let generated = Consumer { artifact_id: strategy, status: Approved, causes: vec![], sources: vec![] };
/// let consumers = vec![Consumer { artifact_id: creatives, status: Draft, causes: vec![],
///     sources: vec![Source { artifact_id: strategy, artifact_type: "strategy".into(), version: 3 }] }];
/// let marks = plan_generator_change(&generated, "strategy", 3, &consumers);
/// assert_eq!(marks[0].reason, "The strategy generator changed since v3 was generated");
/// assert_eq!(marks[1].reason, "Upstream strategy is stale (the strategy generator changed)");
/// ```
pub fn plan_generator_change(
    generated: &Consumer,
    artifact_type: &str,
    version: i64,
    consumers: &[Consumer],
) -> Vec<StaleMark> {
    if !can_go_stale(generated.status) {
        return Vec::new();
    }
    let root = RootChange {
        artifact_id: generated.artifact_id,
        artifact_type: artifact_type.to_owned(),
        from_version: version,
        to_version: version,
        generator_changed: true,
    };
    let own = StaleCause {
        category: StaleCategory::GeneratorChanged,
        dependency: generated.artifact_id,
        dependency_type: artifact_type.to_owned(),
        from_version: version,
        to_version: None,
        root: root.clone(),
    };
    let mut marks = vec![mark(generated, vec![own])];
    marks.extend(spread(&root, consumers));
    marks
}

/// `c` made stale by `new_causes`, keeping the causes it carries already.
fn mark(c: &Consumer, new_causes: Vec<StaleCause>) -> StaleMark {
    let mut seen: HashSet<_> = HashSet::new();
    let mut causes: Vec<StaleCause> = Vec::new();
    let old = if c.status == Stale {
        &c.causes[..]
    } else {
        &[]
    };
    for cause in old.iter().chain(&new_causes) {
        if seen.insert(cause.key()) {
            causes.push(cause.clone());
        }
    }
    StaleMark {
        artifact_id: c.artifact_id,
        from_status: c.status,
        reason: reason(&causes),
        causes,
        new_causes,
    }
}

/// The breadth-first walk from `root` through the consumers' sources. From a
/// new version, the first step reaches only what was built on an older one
/// (`upstream_changed`); from a root that went stale itself, everything built
/// on it (`upstream_stale`).
fn spread(root: &RootChange, consumers: &[Consumer]) -> Vec<StaleMark> {
    let mut by_source: HashMap<ArtifactId, Vec<usize>> = HashMap::new();
    for (i, c) in consumers.iter().enumerate() {
        if c.artifact_id == root.artifact_id || !can_go_stale(c.status) {
            continue;
        }
        for s in &c.sources {
            by_source.entry(s.artifact_id).or_default().push(i);
        }
    }
    let changed_root = |s: &Source| {
        s.artifact_id == root.artifact_id && !root.generator_changed && s.version < root.to_version
    };
    let built_on_old_root =
        |c: &Consumer| root.generator_changed || c.sources.iter().any(changed_root);

    let mut order: Vec<usize> = Vec::new();
    let mut marked: HashSet<ArtifactId> = HashSet::new();
    let mut queue: VecDeque<ArtifactId> = VecDeque::from([root.artifact_id]);
    while let Some(changed) = queue.pop_front() {
        for &i in by_source.get(&changed).map(Vec::as_slice).unwrap_or(&[]) {
            let c = &consumers[i];
            let reached = if changed == root.artifact_id {
                built_on_old_root(c)
            } else {
                true
            };
            if reached && marked.insert(c.artifact_id) {
                order.push(i);
                queue.push_back(c.artifact_id);
            }
        }
    }

    order
        .into_iter()
        .map(|i| {
            let c = &consumers[i];
            let mut new_causes = Vec::new();
            for s in &c.sources {
                if changed_root(s) {
                    new_causes.push(StaleCause {
                        category: StaleCategory::UpstreamChanged,
                        dependency: s.artifact_id,
                        dependency_type: s.artifact_type.clone(),
                        from_version: s.version,
                        to_version: Some(root.to_version),
                        root: root.clone(),
                    });
                } else if marked.contains(&s.artifact_id)
                    || (root.generator_changed && s.artifact_id == root.artifact_id)
                {
                    new_causes.push(StaleCause {
                        category: StaleCategory::UpstreamStale,
                        dependency: s.artifact_id,
                        dependency_type: s.artifact_type.clone(),
                        from_version: s.version,
                        to_version: None,
                        root: root.clone(),
                    });
                }
            }
            mark(c, new_causes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn src(id: ArtifactId, ty: &str, version: i64) -> Source {
        Source {
            artifact_id: id,
            artifact_type: ty.into(),
            version,
        }
    }

    fn consumer(id: ArtifactId, status: ArtifactStatus, sources: Vec<Source>) -> Consumer {
        Consumer {
            artifact_id: id,
            status,
            causes: vec![],
            sources,
        }
    }

    fn root(id: ArtifactId, from: i64, to: i64) -> RootChange {
        RootChange {
            artifact_id: id,
            artifact_type: "intake".into(),
            from_version: from,
            to_version: to,
            generator_changed: false,
        }
    }

    #[test]
    fn consumers_of_the_new_version_are_not_flagged() {
        let (r, a) = (ArtifactId::new(), ArtifactId::new());
        let marks = plan(
            &root(r, 1, 2),
            &[consumer(a, Approved, vec![src(r, "intake", 2)])],
        );
        assert!(marks.is_empty());
    }

    #[test]
    fn journeys_and_finished_work_stop_the_cascade() {
        let (r, a, b) = (ArtifactId::new(), ArtifactId::new(), ArtifactId::new());
        let marks = plan(
            &root(r, 1, 2),
            &[
                consumer(a, Active, vec![src(r, "intake", 1)]),
                consumer(b, Draft, vec![src(a, "strategy", 1)]),
            ],
        );
        assert!(marks.is_empty());
    }

    #[test]
    fn a_stale_artifact_keeps_its_old_causes_and_gains_new_ones() {
        let (r, other, a) = (ArtifactId::new(), ArtifactId::new(), ArtifactId::new());
        let earlier = plan(
            &RootChange {
                artifact_id: other,
                artifact_type: "brief".into(),
                from_version: 3,
                to_version: 4,
                generator_changed: false,
            },
            &[consumer(
                a,
                Approved,
                vec![src(other, "brief", 3), src(r, "intake", 1)],
            )],
        );
        let mut stale = consumer(a, Stale, vec![src(other, "brief", 3), src(r, "intake", 1)]);
        stale.causes = earlier[0].causes.clone();
        let marks = plan(&root(r, 1, 2), &[stale]);
        assert_eq!(marks[0].from_status, Stale);
        assert_eq!(marks[0].causes.len(), 2);
        assert_eq!(marks[0].new_causes.len(), 1);
        assert_eq!(
            marks[0].reason,
            "Upstream brief changed from v3 to v4; Upstream intake changed from v1 to v2"
        );
    }

    #[test]
    fn cycles_terminate_and_never_flag_the_root() {
        let (r, a) = (ArtifactId::new(), ArtifactId::new());
        let marks = plan(
            &root(r, 1, 2),
            &[
                consumer(a, Draft, vec![src(r, "intake", 1)]),
                consumer(r, Draft, vec![src(a, "strategy", 1)]),
            ],
        );
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].artifact_id, a);
    }

    /// A random graph: node i may consume any node j < i (at version 1) and the
    /// root (node 0) at version 1 or 2; the root moves from 2 to 3.
    fn graph() -> impl Strategy<Value = Vec<(ArtifactStatus, Vec<(usize, i64)>)>> {
        let status = prop::sample::select(ArtifactStatus::ALL.to_vec());
        prop::collection::vec(
            (status, prop::collection::vec((0usize..40, 1i64..3), 0..4)),
            1..40,
        )
    }

    proptest! {
        #[test]
        fn staleness_closes_transitively(nodes in graph()) {
            let ids: Vec<ArtifactId> = (0..=nodes.len()).map(|_| ArtifactId::new()).collect();
            let consumers: Vec<Consumer> = nodes
                .iter()
                .enumerate()
                .map(|(i, (status, srcs))| {
                    let me = i + 1;
                    let sources = srcs
                        .iter()
                        .map(|(j, v)| (j % me, *v))
                        .map(|(j, v)| src(ids[j], "t", if j == 0 { v } else { 1 }))
                        .collect();
                    consumer(ids[me], *status, sources)
                })
                .collect();
            let change = root(ids[0], 2, 3);
            let marks = plan(&change, &consumers);
            let marked: HashSet<ArtifactId> = marks.iter().map(|m| m.artifact_id).collect();
            for c in &consumers {
                let feeds = c.sources.iter().any(|s| {
                    (s.artifact_id == ids[0] && s.version < 3) || marked.contains(&s.artifact_id)
                });
                // Closed: every eligible consumer of a changed or stale input is stale.
                prop_assert_eq!(marked.contains(&c.artifact_id), can_go_stale(c.status) && feeds);
            }
            for m in &marks {
                prop_assert!(!m.causes.is_empty());
                prop_assert!(!m.reason.is_empty());
            }
        }
    }
}
