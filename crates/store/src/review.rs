//! Review: sharing, comments, approvals, review links. [`ReviewStore`] and its
//! records. The rules (who may approve, when an approval counts) are
//! `waymark_domain::review`; the store applies them inside its transactions.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::review::{ApprovalPolicy, ApproverKind, Approvers, Decision};
use waymark_domain::{ArtifactId, ClientId, CommentId, ReviewLinkId};

use crate::{Artifact, Page, PageRequest, Result, WriteContext};

/// The person acting in a review: who they are and what kind of approver.
#[derive(Debug, Clone)]
pub struct Reviewer {
    /// Their id as recorded (`usr_…`, `rvl_…` or `tok_…`).
    pub id: String,
    /// Their name, shown beside their comments and approvals.
    pub name: String,
    pub kind: ApproverKind,
}

/// What a comment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    /// A remark or a reply.
    Comment,
    /// The message an operator shared the artifact with.
    Share,
    /// The reason given when the artifact was rejected.
    Rejection,
}

impl CommentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommentKind::Comment => "comment",
            CommentKind::Share => "share",
            CommentKind::Rejection => "rejection",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "comment" => Some(CommentKind::Comment),
            "share" => Some(CommentKind::Share),
            "rejection" => Some(CommentKind::Rejection),
            _ => None,
        }
    }
}

/// A comment on an artifact, on the whole of it or on a section.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Comment {
    pub id: CommentId,
    pub artifact_id: ArtifactId,
    /// The version commented on.
    pub version: i64,
    /// A JSON Pointer into that version's content; absent for the whole artifact.
    pub section: Option<String>,
    /// The comment this one replies to.
    pub parent_id: Option<CommentId>,
    pub body: String,
    pub kind: CommentKind,
    /// Operators only; never shown to the client.
    pub internal: bool,
    /// Who wrote it (`usr_…`, `rvl_…`, `tok_…`).
    pub author: String,
    pub author_name: String,
    #[schema(value_type = String)]
    pub author_kind: ApproverKind,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub resolved_by: Option<String>,
    #[serde(skip)]
    pub client_id: ClientId,
}

/// A comment to add (already validated, except against the content).
#[derive(Debug, Clone)]
pub struct NewComment {
    /// The version commented on; the latest when left out.
    pub version: Option<i64>,
    pub section: Option<String>,
    pub parent_id: Option<CommentId>,
    pub body: String,
    pub internal: bool,
}

/// One approval of a version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    pub approver_name: String,
    #[schema(value_type = String)]
    pub approver_kind: ApproverKind,
    pub version: i64,
    pub content_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Where an artifact's review stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewState {
    pub artifact_id: ArtifactId,
    pub status: ArtifactStatus,
    /// The version under review (the latest).
    pub version: i64,
    pub content_hash: String,
    /// How many times it was shared; approvals count within one round.
    pub round: i64,
    /// Approvals needed (N).
    pub required: u32,
    /// Who counts.
    pub approvers: Approvers,
    /// Eligible client contacts (M): the client's users and the live review links.
    pub eligible: i64,
    /// Approvals of this round.
    pub approvals: Vec<Approval>,
}

/// What an approval did.
#[derive(Debug, Clone)]
pub struct Approved {
    pub artifact: Artifact,
    pub decision: Decision,
}

/// An artifact shared with one reviewer who has no account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewLink {
    pub id: ReviewLinkId,
    pub artifact_id: ArtifactId,
    pub client_id: ClientId,
    pub reviewer_email: String,
    pub reviewer_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl ReviewLink {
    /// Usable at `now`: not revoked and not expired.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A review link to create.
#[derive(Debug, Clone)]
pub struct NewReviewLink {
    pub artifact_id: ArtifactId,
    pub reviewer_email: String,
    pub reviewer_name: String,
    pub expires_at: OffsetDateTime,
}

/// Review of artifacts.
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// Shares a draft with its client (→ `in_review`), starting a review round;
    /// the message, when given, becomes the first comment.
    async fn share(
        &self,
        id: ArtifactId,
        message: Option<String>,
        by: &Reviewer,
        ctx: &WriteContext,
    ) -> Result<Artifact>;
    /// Records an approval of `version` under `policy`; the last one needed
    /// moves the artifact to `approved`.
    async fn approve(
        &self,
        id: ArtifactId,
        version: i64,
        content_hash: Option<String>,
        by: &Reviewer,
        policy: ApprovalPolicy,
        ctx: &WriteContext,
    ) -> Result<Approved>;
    /// Sends the artifact back to `draft`, keeping the reason as a comment.
    async fn reject(
        &self,
        id: ArtifactId,
        reason: String,
        by: &Reviewer,
        policy: ApprovalPolicy,
        ctx: &WriteContext,
    ) -> Result<(Artifact, Comment)>;
    async fn review_state(&self, id: ArtifactId, policy: ApprovalPolicy) -> Result<ReviewState>;

    async fn add_comment(
        &self,
        id: ArtifactId,
        new: NewComment,
        by: &Reviewer,
        ctx: &WriteContext,
    ) -> Result<Comment>;
    /// Comments in the order written; internal ones only when asked for.
    async fn list_comments(
        &self,
        id: ArtifactId,
        include_internal: bool,
        page: PageRequest,
    ) -> Result<Page<Comment>>;
    async fn get_comment(&self, id: CommentId) -> Result<Comment>;
    async fn resolve_comment(&self, id: CommentId, ctx: &WriteContext) -> Result<Comment>;

    async fn create_review_link(
        &self,
        new: NewReviewLink,
        ctx: &WriteContext,
    ) -> Result<ReviewLink>;
    async fn get_review_link(&self, id: ReviewLinkId) -> Result<ReviewLink>;
    async fn list_review_links(&self, artifact_id: ArtifactId) -> Result<Vec<ReviewLink>>;
    async fn revoke_review_link(&self, id: ReviewLinkId, ctx: &WriteContext) -> Result<ReviewLink>;
}
