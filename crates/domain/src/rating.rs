//! Ratings of completed journey stages by the client's people: 1 to 5 with an
//! optional comment, once per person and stage, never edited. Which stages
//! may be rated, what a rating may say, and how ratings sum up (average and
//! distribution) are decided here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::FieldError;
use crate::journey::Event;

/// The longest comment of a rating.
pub const MAX_COMMENT: usize = 2000;

/// A checked score and comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub score: u8,
    pub comment: Option<String>,
}

/// Checks a score (1 to 5) and a comment (trimmed; blank is none).
pub fn check(score: i64, comment: Option<&str>) -> Result<Checked, FieldError> {
    let score = u8::try_from(score)
        .ok()
        .filter(|s| (1..=5).contains(s))
        .ok_or_else(|| FieldError::new("/score", "must be a whole number from 1 to 5"))?;
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT) {
        return Err(FieldError::new(
            "/comment",
            format!("is longer than {MAX_COMMENT} characters"),
        ));
    }
    Ok(Checked {
        score,
        comment: comment.map(str::to_owned),
    })
}

/// Whether `stage` was completed: the journey left it forward (`promote`, or
/// `complete` from the last stage). A rollback out of it does not count.
pub fn stage_completed<'a>(stage: &str, steps: impl IntoIterator<Item = (Event, &'a str)>) -> bool {
    steps
        .into_iter()
        .any(|(event, from)| from == stage && matches!(event, Event::Promote | Event::Complete))
}

/// How a set of ratings reads: how many, their average, and how many gave
/// each score (`distribution[0]` is the count of 1s, `[4]` of 5s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RatingSummary {
    pub count: usize,
    /// `null` without ratings; rounded to two decimals.
    pub average: Option<f64>,
    pub distribution: [usize; 5],
}

/// Ratings of a template's journeys: overall and per client owner
/// (`unassigned` for clients without one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RatingAnalytics {
    pub overall: RatingSummary,
    pub by_owner: BTreeMap<String, RatingSummary>,
}

/// Sums up scores (each 1 to 5; others are ignored).
pub fn summarize(scores: impl IntoIterator<Item = u8>) -> RatingSummary {
    let mut s = RatingSummary::default();
    let mut total = 0u64;
    for score in scores.into_iter().filter(|s| (1..=5).contains(s)) {
        s.count += 1;
        s.distribution[usize::from(score - 1)] += 1;
        total += u64::from(score);
    }
    if s.count > 0 {
        s.average = Some((total as f64 / s.count as f64 * 100.0).round() / 100.0);
    }
    s
}

/// Sums up `(score, client owner)` pairs overall and per owner.
pub fn analytics(ratings: &[(u8, Option<String>)]) -> RatingAnalytics {
    let mut groups: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (score, owner) in ratings {
        groups
            .entry(owner.clone().unwrap_or_else(|| "unassigned".into()))
            .or_default()
            .push(*score);
    }
    RatingAnalytics {
        overall: summarize(ratings.iter().map(|(s, _)| *s)),
        by_owner: groups
            .into_iter()
            .map(|(owner, scores)| (owner, summarize(scores)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scores_are_one_to_five_and_comments_are_bounded() {
        assert_eq!(
            check(5, Some("  great  ")).unwrap().comment.as_deref(),
            Some("great")
        );
        assert_eq!(check(1, Some("   ")).unwrap().comment, None);
        for bad in [0, 6, -1, 300] {
            assert_eq!(check(bad, None).unwrap_err().pointer, "/score", "{bad}");
        }
        let long = "x".repeat(MAX_COMMENT + 1);
        assert_eq!(check(3, Some(&long)).unwrap_err().pointer, "/comment");
    }

    #[test]
    fn a_stage_counts_as_completed_once_left_forward() {
        let steps = [(Event::Start, "pending"), (Event::Rollback, "pilot")];
        assert!(
            !stage_completed("pilot", steps),
            "a rollback is no completion"
        );
        let steps = [(Event::Start, "pending"), (Event::Promote, "pilot")];
        assert!(stage_completed("pilot", steps));
        assert!(!stage_completed("live", steps));
        assert!(stage_completed("live", [(Event::Complete, "live")]));
    }

    #[test]
    fn summaries_give_count_average_and_distribution() {
        let a = analytics(&[(5, Some("ana".into())), (4, Some("ana".into())), (2, None)]);
        assert_eq!(a.overall.count, 3);
        assert_eq!(a.overall.average, Some(3.67));
        assert_eq!(a.overall.distribution, [0, 1, 0, 1, 1]);
        assert_eq!(a.by_owner["ana"].average, Some(4.5));
        assert_eq!(a.by_owner["unassigned"].distribution, [0, 1, 0, 0, 0]);
        assert_eq!(summarize([]), RatingSummary::default());
    }

    proptest! {
        #[test]
        fn the_distribution_adds_up_and_the_average_stays_in_range(scores in proptest::collection::vec(1u8..=5, 0..50)) {
            let s = summarize(scores.clone());
            prop_assert_eq!(s.distribution.iter().sum::<usize>(), scores.len());
            if let Some(avg) = s.average {
                prop_assert!((1.0..=5.0).contains(&avg));
            } else {
                prop_assert!(scores.is_empty());
            }
        }
    }
}
