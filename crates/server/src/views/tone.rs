//! One colour per meaning, on every page: a status's tone names the CSS class
//! its badge and graph node take (`tone-ok` ...). The badge always carries the
//! status's words too, so nothing is told by colour alone.

/// The tone of any status word of the product (artifacts, tasks, journeys,
/// criteria, agents): `ok` done or good, `info` waiting on someone, `warn`
/// needs attention, `bad` failed or refused, `neutral` not started or closed.
pub fn tone(status: &str) -> &'static str {
    match status {
        "approved" | "completed" | "succeeded" | "passed" | "active" | "online" | "implemented"
        | "live" | "done" | "delivered" => "ok",
        "in_review" | "running" | "leased" | "ready" | "waiting" | "pending" | "scheduled"
        | "recorded" | "open" | "queued" | "started" => "info",
        "stale" | "paused" | "inconclusive" | "retrying" | "blocked" | "at_risk" | "overdue"
        | "locked" | "high" => "warn",
        "failed" | "rejected" | "rolled_back" | "incident" | "offline" | "dead" | "expired"
        | "revoked" | "urgent" => "bad",
        _ => "neutral",
    }
}

/// A status word as people read it: `in_review` → `in review`.
pub fn words(status: &str) -> String {
    status.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_domain::lifecycle::ArtifactStatus;

    #[test]
    fn every_artifact_status_has_a_deliberate_tone() {
        for s in ArtifactStatus::ALL {
            let t = tone(s.as_str());
            let expected = match s {
                ArtifactStatus::Draft | ArtifactStatus::Cancelled | ArtifactStatus::Archived => {
                    "neutral"
                }
                ArtifactStatus::InReview => "info",
                ArtifactStatus::Stale | ArtifactStatus::Paused => "warn",
                _ => "ok",
            };
            assert_eq!(t, expected, "{s}");
        }
        assert_eq!(words("in_review"), "in review");
    }
}
