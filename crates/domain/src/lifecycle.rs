//! The artifact lifecycle: one status table for every artifact type.
//!
//! | status | content editable | next (by a person) |
//! |---|---|---|
//! | `draft` | yes | `in_review`, `cancelled`, `archived` |
//! | `in_review` | no | `approved`, `draft` |
//! | `approved` | no | `implemented`, `draft`, `archived` |
//! | `implemented` | no | `active` |
//! | `active` | no | `paused`, `completed` |
//! | `paused` | no | `active`, `completed` |
//! | `stale` | yes | `approved`, `draft` |
//! | `completed`, `cancelled`, `archived` | no | — |
//!
//! `stale` is set by the system (the stale cascade), never requested by a person.
//!
//! ```
//! use waymark_domain::lifecycle::{check_transition, ArtifactStatus::*};
//! assert!(check_transition(Draft, InReview).is_ok());
//! let refused = check_transition(Draft, Approved).unwrap_err();
//! assert_eq!(refused.allowed, vec![InReview, Cancelled, Archived]);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an artifact is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactStatus {
    /// Being written; content editable.
    Draft,
    /// Shared with the client; comments only.
    InReview,
    /// The client approved this version.
    Approved,
    /// Turned into an operational journey.
    Implemented,
    /// Its journey is running.
    Active,
    /// Its journey is paused.
    Paused,
    /// An input changed after it was built (set by the system).
    Stale,
    /// Terminal: its journey completed.
    Completed,
    /// Terminal: abandoned before approval.
    Cancelled,
    /// Terminal: kept for the record only.
    Archived,
}

use ArtifactStatus::*;

impl ArtifactStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ArtifactStatus; 10] = [
        Draft,
        InReview,
        Approved,
        Implemented,
        Active,
        Paused,
        Stale,
        Completed,
        Cancelled,
        Archived,
    ];

    /// The statuses a person may move an artifact to from this one.
    pub fn next(self) -> &'static [ArtifactStatus] {
        match self {
            Draft => &[InReview, Cancelled, Archived],
            InReview => &[Approved, Draft],
            Approved => &[Implemented, Draft, Archived],
            Implemented => &[Active],
            Active => &[Paused, Completed],
            Paused => &[Active, Completed],
            Stale => &[Approved, Draft],
            Completed | Cancelled | Archived => &[],
        }
    }

    /// Whether new content may be written in this status.
    pub fn is_editable(self) -> bool {
        matches!(self, Draft | Stale)
    }

    /// Whether no transition leaves this status.
    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }

    /// The snake_case name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Draft => "draft",
            InReview => "in_review",
            Approved => "approved",
            Implemented => "implemented",
            Active => "active",
            Paused => "paused",
            Stale => "stale",
            Completed => "completed",
            Cancelled => "cancelled",
            Archived => "archived",
        }
    }
}

impl fmt::Display for ArtifactStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an artifact status; expected one of draft, in_review, approved, implemented, active, paused, stale, completed, cancelled, archived"
)]
pub struct UnknownStatus(pub String);

impl FromStr for ArtifactStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(40).collect()))
    }
}

/// A transition that is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an artifact in {from} cannot move to {to}; allowed: {}", allowed_list(.allowed))]
pub struct TransitionRefused {
    pub from: ArtifactStatus,
    pub to: ArtifactStatus,
    /// The statuses that are allowed from `from`.
    pub allowed: Vec<ArtifactStatus>,
}

fn allowed_list(allowed: &[ArtifactStatus]) -> String {
    if allowed.is_empty() {
        "none, it is terminal".to_owned()
    } else {
        allowed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Checks that a person may move an artifact from `from` to `to`.
pub fn check_transition(from: ArtifactStatus, to: ArtifactStatus) -> Result<(), TransitionRefused> {
    if from.next().contains(&to) {
        Ok(())
    } else {
        Err(TransitionRefused {
            from,
            to,
            allowed: from.next().to_vec(),
        })
    }
}

/// Where a journey's event moves the artifact it implements, if anywhere:
/// `start` and `resume` make it `active`, `pause` `paused`, `complete`
/// `completed`, `cancel` `cancelled`. These moves are the system's: a person
/// moves an implemented artifact by moving its journey.
pub fn follow_journey(
    status: ArtifactStatus,
    event: crate::journey::Event,
) -> Option<ArtifactStatus> {
    use crate::journey::Event as E;
    match (event, status) {
        (E::Start, Implemented) | (E::Resume, Paused) => Some(Active),
        (E::Pause, Active) => Some(Paused),
        (E::Complete, Active | Paused) => Some(Completed),
        (E::Cancel, Implemented | Active | Paused) => Some(Cancelled),
        _ => None,
    }
}

/// Writing content in a status that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the artifact is {status}; content can only be written in draft or stale{}", hint(*.status))]
pub struct NotEditable {
    pub status: ArtifactStatus,
}

fn hint(status: ArtifactStatus) -> &'static str {
    if check_transition(status, Draft).is_ok() {
        " (move it to draft first to make changes)"
    } else {
        ""
    }
}

/// Checks that new content may be written to an artifact in `status`.
pub fn check_editable(status: ArtifactStatus) -> Result<(), NotEditable> {
    if status.is_editable() {
        Ok(())
    } else {
        Err(NotEditable { status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_implemented_artifact_follows_its_journey() {
        use crate::journey::Event as E;
        let walk = [
            (E::Start, Active),
            (E::Pause, Paused),
            (E::Resume, Active),
            (E::Promote, Active),
            (E::Rollback, Active),
            (E::Complete, Completed),
        ];
        let mut status = Implemented;
        for (event, expected) in walk {
            status = follow_journey(status, event).unwrap_or(status);
            assert_eq!(status, expected, "after {event}");
        }
        assert_eq!(follow_journey(Completed, E::Cancel), None);
        assert_eq!(follow_journey(Implemented, E::Cancel), Some(Cancelled));
        assert_eq!(follow_journey(Approved, E::Start), None);
    }

    #[test]
    fn table_matches_the_design() {
        assert_eq!(Draft.next(), &[InReview, Cancelled, Archived]);
        assert_eq!(InReview.next(), &[Approved, Draft]);
        assert_eq!(Approved.next(), &[Implemented, Draft, Archived]);
        assert_eq!(Implemented.next(), &[Active]);
        assert_eq!(Active.next(), &[Paused, Completed]);
        assert_eq!(Paused.next(), &[Active, Completed]);
        assert_eq!(Stale.next(), &[Approved, Draft]);
        for t in [Completed, Cancelled, Archived] {
            assert!(t.is_terminal());
        }
    }

    #[test]
    fn only_draft_and_stale_are_editable() {
        let editable: Vec<_> = ArtifactStatus::ALL
            .into_iter()
            .filter(|s| s.is_editable())
            .collect();
        assert_eq!(editable, vec![Draft, Stale]);
        let err = check_editable(Approved).unwrap_err();
        assert!(err.to_string().contains("move it to draft first"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for s in ArtifactStatus::ALL {
            assert_eq!(s.as_str().parse::<ArtifactStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("Draft".parse::<ArtifactStatus>().is_err());
    }

    #[test]
    fn refusal_lists_allowed() {
        let err = check_transition(InReview, Archived).unwrap_err();
        assert_eq!(err.allowed, vec![Approved, Draft]);
        assert_eq!(
            err.to_string(),
            "an artifact in in_review cannot move to archived; allowed: approved, draft"
        );
        let err = check_transition(Archived, Draft).unwrap_err();
        assert!(err.to_string().contains("terminal"));
    }

    fn status() -> impl Strategy<Value = ArtifactStatus> {
        proptest::sample::select(ArtifactStatus::ALL.to_vec())
    }

    proptest! {
        /// No walk of requested transitions ever reaches `stale` (system-only) or
        /// leaves a terminal status, and every accepted step is in the table.
        #[test]
        fn no_illegal_transition_is_reachable(steps in proptest::collection::vec(status(), 0..40)) {
            let mut at = Draft;
            for to in steps {
                match check_transition(at, to) {
                    Ok(()) => {
                        prop_assert!(at.next().contains(&to));
                        prop_assert_ne!(to, Stale);
                        prop_assert!(!at.is_terminal());
                        at = to;
                    }
                    Err(refused) => {
                        prop_assert_eq!(refused.allowed.as_slice(), at.next());
                        prop_assert!(!refused.allowed.contains(&to));
                    }
                }
            }
        }
    }
}
