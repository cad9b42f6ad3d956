//! Review rules: who may approve an artifact, when an approval counts, when
//! enough approvals move it to `approved`, and what a comment may point at.
//!
//! An approval is bound to one version and its content hash: approving a version
//! that is not the latest, or a hash that is not that version's, is refused. A
//! type's [`ApprovalPolicy`] (from its pack) says how many approvals are needed and
//! from whom; nobody approves their own work, and nobody approves twice in one
//! review round (a round starts each time the artifact is shared).
//!
//! ```
//! use waymark_domain::review::*;
//! use waymark_domain::ArtifactStatus;
//! let policy = ApprovalPolicy { required: 2, approvers: Approvers::Client };
//! fn ask(policy: &ApprovalPolicy, who: &str, kind: ApproverKind, done: &[&str]) -> Result<Decision, ReviewError> {
//!     ApprovalRequest {
//!         status: ArtifactStatus::InReview, latest_version: 3, latest_hash: "h3",
//!         version: 3, content_hash: Some("h3"), approver: who, kind,
//!         authors: &["usr_op"], approved_by: done, policy,
//!     }.decide()
//! }
//! let p = &policy;
//! assert_eq!(ask(p, "usr_a", ApproverKind::ClientContact, &[]),
//!            Ok(Decision::Recorded { count: 1, required: 2 }));
//! assert_eq!(ask(p, "usr_b", ApproverKind::ClientContact, &["usr_a"]),
//!            Ok(Decision::Approved { count: 2 }));
//! assert_eq!(ask(p, "usr_a", ApproverKind::ClientContact, &["usr_a"]),
//!            Err(ReviewError::AlreadyApproved));
//! assert_eq!(ask(p, "usr_op", ApproverKind::Staff, &[]),
//!            Err(ReviewError::NotEligible { approvers: Approvers::Client }));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::FieldError;
use crate::ReviewLinkId;
use crate::lifecycle::ArtifactStatus;

/// Who may approve a type's artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approvers {
    /// The client's contacts (client users and review-link reviewers).
    #[default]
    Client,
    /// Anyone who can see it: client contacts, operators and admins.
    Any,
}

impl Approvers {
    pub fn as_str(self) -> &'static str {
        match self {
            Approvers::Client => "client",
            Approvers::Any => "any",
        }
    }
}

/// How many approvals an artifact type needs, and from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Approvals needed in one review round (N of the M eligible).
    #[serde(default = "one")]
    pub required: u32,
    /// Who counts as eligible.
    #[serde(default)]
    pub approvers: Approvers,
}

fn one() -> u32 {
    1
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self {
            required: 1,
            approvers: Approvers::Client,
        }
    }
}

/// What kind of person is approving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApproverKind {
    /// A client user of the artifact's client.
    ClientContact,
    /// Someone acting through a review link for this artifact.
    Reviewer,
    /// An operator or admin.
    Staff,
}

impl ApproverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApproverKind::ClientContact => "client_contact",
            ApproverKind::Reviewer => "reviewer",
            ApproverKind::Staff => "staff",
        }
    }
}

/// An approval to decide on.
#[derive(Debug, Clone)]
pub struct ApprovalRequest<'a> {
    pub status: ArtifactStatus,
    pub latest_version: i64,
    pub latest_hash: &'a str,
    /// The version the approver says they approve.
    pub version: i64,
    /// The content hash they say they approve, when given.
    pub content_hash: Option<&'a str>,
    pub approver: &'a str,
    pub kind: ApproverKind,
    /// Whoever wrote the artifact or the version under review.
    pub authors: &'a [&'a str],
    /// Who approved already in this round.
    pub approved_by: &'a [&'a str],
    pub policy: &'a ApprovalPolicy,
}

/// What an accepted approval does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// Recorded; more approvals are needed.
    Recorded { count: u32, required: u32 },
    /// Recorded, and that was the last one needed: the artifact is approved.
    Approved { count: u32 },
}

/// Why an approval (or a rejection) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Only an artifact in review can be approved or rejected.
    #[error("the artifact is {status}, not in_review; it must be shared for review first")]
    NotInReview { status: ArtifactStatus },
    /// Approvals bind to the latest version.
    #[error("version {version} is not the latest; the latest is version {latest}, review that one")]
    NotLatest { version: i64, latest: i64 },
    /// The content hash is not the version's.
    #[error("content hash {given} is not the hash of version {version}; reload and review again")]
    HashMismatch { given: String, version: i64 },
    /// The approver is not among those the type's policy names.
    #[error("this type needs approvals from {}; you are not eligible", approvers_text(*.approvers))]
    NotEligible { approvers: Approvers },
    /// Nobody approves their own work.
    #[error("you wrote this artifact; someone else must approve it")]
    OwnWork,
    /// One approval per person per round.
    #[error("you already approved this version")]
    AlreadyApproved,
}

fn approvers_text(a: Approvers) -> &'static str {
    match a {
        Approvers::Client => "the client's contacts",
        Approvers::Any => "anyone with access",
    }
}

impl ApprovalRequest<'_> {
    /// Decides the approval: refused with the reason, or what it does.
    pub fn decide(&self) -> Result<Decision, ReviewError> {
        self.check_reviewable()?;
        if self.version != self.latest_version {
            return Err(ReviewError::NotLatest {
                version: self.version,
                latest: self.latest_version,
            });
        }
        if let Some(h) = self.content_hash
            && h != self.latest_hash
        {
            return Err(ReviewError::HashMismatch {
                given: h.chars().take(80).collect(),
                version: self.version,
            });
        }
        if !eligible(self.policy.approvers, self.kind) {
            return Err(ReviewError::NotEligible {
                approvers: self.policy.approvers,
            });
        }
        if self.authors.contains(&self.approver) {
            return Err(ReviewError::OwnWork);
        }
        if self.approved_by.contains(&self.approver) {
            return Err(ReviewError::AlreadyApproved);
        }
        let count = self.approved_by.len() as u32 + 1;
        let required = self.policy.required.max(1);
        Ok(if count >= required {
            Decision::Approved { count }
        } else {
            Decision::Recorded { count, required }
        })
    }

    /// Whether a rejection by this person is allowed: the artifact is in review
    /// and they are eligible to approve it.
    pub fn check_reject(&self) -> Result<(), ReviewError> {
        self.check_reviewable()?;
        if !eligible(self.policy.approvers, self.kind) && self.kind != ApproverKind::Staff {
            return Err(ReviewError::NotEligible {
                approvers: self.policy.approvers,
            });
        }
        Ok(())
    }

    fn check_reviewable(&self) -> Result<(), ReviewError> {
        if self.status != ArtifactStatus::InReview {
            return Err(ReviewError::NotInReview {
                status: self.status,
            });
        }
        Ok(())
    }
}

/// Whether a kind of person counts under a policy.
pub fn eligible(approvers: Approvers, kind: ApproverKind) -> bool {
    match approvers {
        Approvers::Client => kind != ApproverKind::Staff,
        Approvers::Any => true,
    }
}

/// Largest comment body, in characters.
pub const MAX_COMMENT: usize = 20_000;

/// A comment's body: trimmed, not empty, at most [`MAX_COMMENT`] characters.
pub fn parse_body(pointer: &str, body: &str) -> Result<String, FieldError> {
    let b = body.trim();
    if b.is_empty() {
        return Err(FieldError::new(pointer, "must not be empty"));
    }
    if b.chars().count() > MAX_COMMENT {
        return Err(FieldError::new(
            pointer,
            format!("is longer than {MAX_COMMENT} characters"),
        ));
    }
    Ok(b.to_string())
}

/// Checks that `section` is a JSON Pointer to something in `content` (the
/// version commented on). The empty pointer means the whole document.
pub fn check_section(content: &Value, section: &str) -> Result<(), FieldError> {
    if !section.is_empty() && !section.starts_with('/') {
        return Err(FieldError::new(
            "/section",
            "must be a JSON Pointer such as /phases/2 (starting with /)",
        ));
    }
    let bad_escape = section.split('/').any(|seg| {
        seg.split('~')
            .skip(1)
            .any(|r| !(r.starts_with('0') || r.starts_with('1')))
    });
    if bad_escape {
        return Err(FieldError::new(
            "/section",
            "has a ~ not followed by 0 or 1; escape ~ as ~0 and / as ~1",
        ));
    }
    if content.pointer(section).is_none() {
        return Err(FieldError::new(
            "/section",
            format!("{section} is not in the content of the version commented on"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Approving by a transition
// ---------------------------------------------------------------------------

/// How an artifact reaches `approved` by a transition (not by approvals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectApproval {
    /// Re-approved as still valid after it went stale (its upstream must be
    /// approved), or approved by the team where the policy needs no approval.
    Plain,
    /// An admin approved past the type's policy, with a reason: recorded as
    /// an override.
    Override,
}

/// Why a transition to `approved` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectApprovalError {
    /// The policy asks for approvals: `POST .../approve` records them.
    #[error(
        "this type needs {required} approval(s) from {}: they go through POST /api/v1/artifacts/{{id}}/approve; \
         an admin may override the policy with {{\"to\": \"approved\", \"override\": true, \"reason\": \"...\"}}",
        approvers_text(*.approvers)
    )]
    ThroughApprovals { required: u32, approvers: Approvers },
    /// Only an admin overrides the approval policy.
    #[error("only an admin may override the approval policy")]
    OverrideNotAllowed,
    /// An override says why.
    #[error("an override of the approval policy needs a reason, recorded with it")]
    OverrideWithoutReason,
}

/// Decides a transition to `approved` from `from`: a stale artifact is
/// re-approved by the team (gating is checked where the upstream is read);
/// from review, the policy's approvals are needed, unless it needs none, or an
/// admin overrides it with a reason. Other origins are the lifecycle's to
/// refuse.
pub fn check_direct_approval(
    policy: &ApprovalPolicy,
    from: ArtifactStatus,
    admin: bool,
    override_policy: bool,
    reason: Option<&str>,
) -> Result<DirectApproval, DirectApprovalError> {
    if override_policy {
        if !admin {
            return Err(DirectApprovalError::OverrideNotAllowed);
        }
        if reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(DirectApprovalError::OverrideWithoutReason);
        }
        return Ok(DirectApproval::Override);
    }
    if from == ArtifactStatus::InReview && policy.required > 0 {
        return Err(DirectApprovalError::ThroughApprovals {
            required: policy.required,
            approvers: policy.approvers,
        });
    }
    Ok(DirectApproval::Plain)
}

// ---------------------------------------------------------------------------
// Review links
// ---------------------------------------------------------------------------

/// Prefix of review-link tokens.
pub const LINK_PREFIX: &str = "wmr_";

/// The name of the server key review links are signed with.
pub const LINK_KEY: &str = "review-links";

/// A review link's token: `wmr_<link uuid>.<expiry>.<signature>`, the signature an
/// HMAC-SHA256 of the rest under the servers' shared key.
pub fn sign_link(key: &[u8], link: ReviewLinkId, expires_at: OffsetDateTime) -> String {
    let payload = format!("{}.{}", link.uuid().simple(), expires_at.unix_timestamp());
    format!(
        "{LINK_PREFIX}{payload}.{}",
        hex::encode(link_mac(key, &payload))
    )
}

fn link_mac(key: &[u8], payload: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks a review-link token's signature and expiry (not revocation: that is
/// the stored link's). Answers the link it names.
pub fn verify_link(key: &[u8], token: &str, now: OffsetDateTime) -> Option<ReviewLinkId> {
    let (id, expiry) = signed_link(key, token)?;
    (expiry > now.unix_timestamp()).then_some(id)
}

/// The link a token with a good signature names, expired or not: to tell a
/// reviewer whose link expired whom to ask for a new one.
pub fn link_id(key: &[u8], token: &str) -> Option<ReviewLinkId> {
    signed_link(key, token).map(|(id, _)| id)
}

fn signed_link(key: &[u8], token: &str) -> Option<(ReviewLinkId, i64)> {
    let rest = token.strip_prefix(LINK_PREFIX)?;
    let (payload, sig) = rest.rsplit_once('.')?;
    let sig = hex::decode(sig).ok()?;
    if !bool::from(link_mac(key, payload).ct_eq(sig.as_slice())) {
        return None;
    }
    let (uuid, expiry) = payload.split_once('.')?;
    let expiry: i64 = expiry.parse().ok()?;
    let uuid = uuid::Uuid::try_parse(uuid).ok()?;
    Some((ReviewLinkId::from_uuid(uuid), expiry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approved_is_reached_through_the_policy_or_an_admins_override() {
        use ArtifactStatus::*;
        let policy = ApprovalPolicy::default();
        // From review: approvals, not a transition, for operators and admins alike.
        for admin in [false, true] {
            assert!(matches!(
                check_direct_approval(&policy, InReview, admin, false, Some("looks fine")),
                Err(DirectApprovalError::ThroughApprovals { required: 1, .. })
            ));
        }
        // An admin overrides, with a reason; nobody else does.
        assert_eq!(
            check_direct_approval(&policy, InReview, true, true, Some("signed on paper")),
            Ok(DirectApproval::Override)
        );
        assert_eq!(
            check_direct_approval(&policy, InReview, true, true, Some("  ")),
            Err(DirectApprovalError::OverrideWithoutReason)
        );
        assert_eq!(
            check_direct_approval(&policy, InReview, false, true, Some("why not")),
            Err(DirectApprovalError::OverrideNotAllowed)
        );
        // Re-approving a stale artifact is the team's.
        assert_eq!(
            check_direct_approval(&policy, Stale, false, false, None),
            Ok(DirectApproval::Plain)
        );
        // A type whose policy needs no approval is approved by the team.
        let none = ApprovalPolicy {
            required: 0,
            approvers: Approvers::Any,
        };
        assert_eq!(
            check_direct_approval(&none, InReview, false, false, None),
            Ok(DirectApproval::Plain)
        );
    }

    #[test]
    fn review_link_tokens_are_signed_and_expire() {
        let key = b"a key shared by every server";
        let link = ReviewLinkId::new();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let token = sign_link(key, link, now + time::Duration::days(7));
        assert!(token.starts_with(LINK_PREFIX));
        assert_eq!(verify_link(key, &token, now), Some(link));
        assert_eq!(
            verify_link(b"another key", &token, now),
            None,
            "another key"
        );
        assert_eq!(
            verify_link(key, &token, now + time::Duration::days(8)),
            None,
            "expired"
        );
        // An expired link still names its link (to say whom to ask), a
        // forged one does not.
        assert_eq!(link_id(key, &token), Some(link));
        assert_eq!(link_id(b"another key", &token), None);
        let forged = token.replacen(
            &link.uuid().simple().to_string(),
            &ReviewLinkId::new().uuid().simple().to_string(),
            1,
        );
        assert_eq!(verify_link(key, &forged, now), None, "another link");
        assert_eq!(verify_link(key, "wmr_nonsense", now), None);
    }
    use serde_json::json;

    fn request<'a>(
        policy: &'a ApprovalPolicy,
        approver: &'a str,
        kind: ApproverKind,
        done: &'a [&'a str],
    ) -> ApprovalRequest<'a> {
        ApprovalRequest {
            status: ArtifactStatus::InReview,
            latest_version: 2,
            latest_hash: "h2",
            version: 2,
            content_hash: Some("h2"),
            approver,
            kind,
            authors: &["usr_author"],
            approved_by: done,
            policy,
        }
    }

    #[test]
    fn binds_to_the_latest_version_and_hash() {
        let p = ApprovalPolicy::default();
        let mut r = request(&p, "usr_c", ApproverKind::ClientContact, &[]);
        r.version = 1;
        assert_eq!(
            r.decide(),
            Err(ReviewError::NotLatest {
                version: 1,
                latest: 2
            })
        );
        let mut r = request(&p, "usr_c", ApproverKind::ClientContact, &[]);
        r.content_hash = Some("h1");
        assert!(matches!(r.decide(), Err(ReviewError::HashMismatch { .. })));
        let mut r = request(&p, "usr_c", ApproverKind::ClientContact, &[]);
        r.content_hash = None;
        assert_eq!(r.decide(), Ok(Decision::Approved { count: 1 }));
    }

    #[test]
    fn only_in_review() {
        let p = ApprovalPolicy::default();
        for s in ArtifactStatus::ALL {
            let mut r = request(&p, "usr_c", ApproverKind::Reviewer, &[]);
            r.status = s;
            assert_eq!(r.decide().is_ok(), s == ArtifactStatus::InReview, "{s}");
            assert_eq!(r.check_reject().is_ok(), s == ArtifactStatus::InReview);
        }
    }

    #[test]
    fn policy_decides_who_counts() {
        let client = ApprovalPolicy::default();
        let any = ApprovalPolicy {
            required: 1,
            approvers: Approvers::Any,
        };
        let staff = request(&client, "usr_op", ApproverKind::Staff, &[]);
        assert!(matches!(
            staff.decide(),
            Err(ReviewError::NotEligible { .. })
        ));
        assert!(staff.check_reject().is_ok(), "staff may always send back");
        let staff = request(&any, "usr_op", ApproverKind::Staff, &[]);
        assert_eq!(staff.decide(), Ok(Decision::Approved { count: 1 }));
        let own = request(&any, "usr_author", ApproverKind::Staff, &[]);
        assert_eq!(own.decide(), Err(ReviewError::OwnWork));
    }

    #[test]
    fn counts_to_the_required_number() {
        let p = ApprovalPolicy {
            required: 3,
            approvers: Approvers::Client,
        };
        assert_eq!(
            request(&p, "c", ApproverKind::ClientContact, &["a"]).decide(),
            Ok(Decision::Recorded {
                count: 2,
                required: 3
            })
        );
        assert_eq!(
            request(&p, "c", ApproverKind::Reviewer, &["a", "b"]).decide(),
            Ok(Decision::Approved { count: 3 })
        );
        assert_eq!(
            request(&p, "b", ApproverKind::Reviewer, &["a", "b"]).decide(),
            Err(ReviewError::AlreadyApproved)
        );
    }

    #[test]
    fn sections_must_exist_in_the_version() {
        let c = json!({"phases": [{"name": "a"}, {"name": "b"}], "a/b": 1, "m~n": 2});
        assert!(check_section(&c, "").is_ok());
        assert!(check_section(&c, "/phases/1").is_ok());
        assert!(check_section(&c, "/phases/1/name").is_ok());
        assert!(check_section(&c, "/a~1b").is_ok());
        assert!(check_section(&c, "/m~0n").is_ok());
        assert!(check_section(&c, "/phases/2").is_err());
        assert!(check_section(&c, "phases").is_err());
        assert!(check_section(&c, "/m~2n").is_err());
        assert_eq!(check_section(&c, "/nope").unwrap_err().pointer, "/section");
    }

    #[test]
    fn bodies_are_trimmed_and_bounded() {
        assert_eq!(parse_body("/body", "  hi ").unwrap(), "hi");
        assert!(parse_body("/body", "   ").is_err());
        assert!(parse_body("/body", &"x".repeat(MAX_COMMENT + 1)).is_err());
    }
}
