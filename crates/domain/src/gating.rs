//! Pipeline gating: within an engagement, a type is unlocked only when each type it
//! requires has a current artifact that was approved.
//!
//! The *current* artifact of a type is the newest one that was not cancelled or
//! archived. It satisfies a requirement in `approved`, or in any status an approved
//! artifact moves on to (`implemented`, `active`, `paused`, `completed`).
//!
//! ```
//! use waymark_domain::gating::evaluate;
//! use waymark_domain::ArtifactStatus::*;
//! let g = evaluate("execution", &["strategy", "creatives"], |t| match t {
//!     "strategy" => Some(Stale),
//!     _ => None,
//! });
//! assert!(!g.allowed);
//! assert_eq!(g.reasons, ["strategy (stale - must be re-approved)", "creatives (missing)"]);
//! ```

use serde::Serialize;

use crate::lifecycle::ArtifactStatus::{self, *};

/// Whether a type may be created in an engagement, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gating {
    /// The type asked about.
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub allowed: bool,
    /// One sentence per unmet requirement, e.g. `intake (draft - must be approved)`.
    pub reasons: Vec<String>,
}

/// Whether an artifact in `status` satisfies a downstream requirement.
pub fn satisfies(status: ArtifactStatus) -> bool {
    matches!(status, Approved | Implemented | Active | Paused | Completed)
}

/// Whether an artifact in `status` can be the current artifact of its type.
pub fn is_current_candidate(status: ArtifactStatus) -> bool {
    !matches!(status, Cancelled | Archived)
}

/// The reason an upstream type in `status` (or missing) blocks its consumers, or
/// `None` when it does not.
pub fn reason(upstream_type: &str, status: Option<ArtifactStatus>) -> Option<String> {
    match status {
        None => Some(format!("{upstream_type} (missing)")),
        Some(s) if satisfies(s) => None,
        Some(Stale) => Some(format!("{upstream_type} (stale - must be re-approved)")),
        Some(s) => Some(format!("{upstream_type} ({s} - must be approved)")),
    }
}

/// Gates `artifact_type`, whose requirements are `requires`, given the status of
/// the current artifact of each type (`None`: there is none).
pub fn evaluate<S: AsRef<str>>(
    artifact_type: &str,
    requires: &[S],
    current: impl Fn(&str) -> Option<ArtifactStatus>,
) -> Gating {
    let reasons: Vec<String> = requires
        .iter()
        .filter_map(|t| reason(t.as_ref(), current(t.as_ref())))
        .collect();
    Gating {
        artifact_type: artifact_type.to_owned(),
        allowed: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_pipeline_speaks() {
        assert_eq!(reason("intake", None).unwrap(), "intake (missing)");
        assert_eq!(
            reason("intake", Some(Draft)).unwrap(),
            "intake (draft - must be approved)"
        );
        assert_eq!(
            reason("intake", Some(InReview)).unwrap(),
            "intake (in_review - must be approved)"
        );
        assert_eq!(
            reason("strategy", Some(Stale)).unwrap(),
            "strategy (stale - must be re-approved)"
        );
        for ok in [Approved, Implemented, Active, Paused, Completed] {
            assert_eq!(reason("intake", Some(ok)), None, "{ok}");
        }
    }

    #[test]
    fn a_type_without_requirements_is_always_allowed() {
        let g = evaluate::<&str>("intake", &[], |_| None);
        assert!(g.allowed);
        assert!(g.reasons.is_empty());
    }

    #[test]
    fn allowed_only_when_every_requirement_is_met() {
        let g = evaluate("delivery", &["intake", "strategy"], |t| {
            Some(if t == "intake" { Approved } else { Draft })
        });
        assert!(!g.allowed);
        assert_eq!(g.reasons, ["strategy (draft - must be approved)"]);
        let g = evaluate("delivery", &["intake", "strategy"], |_| Some(Approved));
        assert!(g.allowed);
    }
}
