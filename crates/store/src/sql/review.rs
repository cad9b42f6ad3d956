//! [`ReviewStore`] on SQL: sharing, approvals, rejections, comments, review links.
//! The rules are `waymark_domain::review`, applied to the locked artifact row.

use async_trait::async_trait;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::review::{ApprovalPolicy, ApprovalRequest, ApproverKind, Decision};
use waymark_domain::{ArtifactId, ClientId, CommentId, EngagementId, FieldError, ReviewLinkId};

use super::search::{DocKind, SearchDoc, index_later};
use super::*;
use crate::people::PeopleStore;
use crate::review::*;

#[derive(FromRow)]
struct CommentRow {
    id: Uuid,
    artifact_id: Uuid,
    client_id: Uuid,
    version: i64,
    section: Option<String>,
    parent_id: Option<Uuid>,
    body: String,
    kind: String,
    internal: bool,
    author: String,
    author_name: String,
    author_kind: String,
    created_at: OffsetDateTime,
    resolved_at: Option<OffsetDateTime>,
    resolved_by: Option<String>,
}

const COMMENT_COLUMNS: &str = "id, artifact_id, client_id, version, section, parent_id, body, \
     kind, internal, author, author_name, author_kind, created_at, resolved_at, resolved_by";

fn approver_kind(s: &str) -> Result<ApproverKind> {
    match s {
        "client_contact" => Ok(ApproverKind::ClientContact),
        "reviewer" => Ok(ApproverKind::Reviewer),
        "staff" => Ok(ApproverKind::Staff),
        other => Err(decode_error("approver kind", other)),
    }
}

impl TryFrom<CommentRow> for Comment {
    type Error = StoreError;
    fn try_from(r: CommentRow) -> Result<Self> {
        Ok(Comment {
            id: CommentId::from_uuid(r.id),
            artifact_id: ArtifactId::from_uuid(r.artifact_id),
            version: r.version,
            section: r.section,
            parent_id: r.parent_id.map(CommentId::from_uuid),
            body: r.body,
            kind: CommentKind::parse(&r.kind)
                .ok_or_else(|| decode_error("comment kind", &r.kind))?,
            internal: r.internal,
            author: r.author,
            author_name: r.author_name,
            author_kind: approver_kind(&r.author_kind)?,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            client_id: ClientId::from_uuid(r.client_id),
        })
    }
}

#[derive(FromRow)]
struct ApprovalRow {
    approver: String,
    approver_name: String,
    approver_kind: String,
    version: i64,
    content_hash: String,
    at: OffsetDateTime,
}

impl TryFrom<ApprovalRow> for Approval {
    type Error = StoreError;
    fn try_from(r: ApprovalRow) -> Result<Self> {
        Ok(Approval {
            approver_kind: approver_kind(&r.approver_kind)?,
            approver: r.approver,
            approver_name: r.approver_name,
            version: r.version,
            content_hash: r.content_hash,
            at: r.at,
        })
    }
}

const APPROVALS_OF_ROUND: &str = "SELECT approver, approver_name, approver_kind, version, \
     content_hash, at FROM approvals WHERE artifact_id = $1 AND round = $2 ORDER BY at, approver";

#[derive(FromRow)]
struct LinkRow {
    id: Uuid,
    artifact_id: Uuid,
    client_id: Uuid,
    reviewer_email: String,
    reviewer_name: String,
    expires_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    created_by: String,
    created_at: OffsetDateTime,
}

const LINK_COLUMNS: &str = "id, artifact_id, client_id, reviewer_email, reviewer_name, \
     expires_at, revoked_at, created_by, created_at";

impl From<LinkRow> for ReviewLink {
    fn from(r: LinkRow) -> Self {
        ReviewLink {
            id: ReviewLinkId::from_uuid(r.id),
            artifact_id: ArtifactId::from_uuid(r.artifact_id),
            client_id: ClientId::from_uuid(r.client_id),
            reviewer_email: r.reviewer_email,
            reviewer_name: r.reviewer_name,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// Inserts a comment on `a` inside the transaction, and indexes it for
/// search (held back to run with the audit record).
async fn insert_comment(tx: &mut Tx, c: &Comment, a: &LockedArtifact) -> Result<()> {
    sql(format!(
        "INSERT INTO comments ({COMMENT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(c.id.uuid())
    .bind(c.artifact_id.uuid())
    .bind(c.client_id.uuid())
    .bind(c.version)
    .bind(&c.section)
    .bind(c.parent_id.map(|p| p.uuid()))
    .bind(&c.body)
    .bind(c.kind.as_str())
    .bind(c.internal)
    .bind(&c.author)
    .bind(&c.author_name)
    .bind(c.author_kind.as_str())
    .bind(c.created_at)
    .bind(c.resolved_at)
    .bind(&c.resolved_by)
    .execute(tx)
    .await?;
    let doc = SearchDoc {
        kind: DocKind::Comment,
        ref_id: c.id.uuid(),
        client_id: c.client_id,
        engagement_id: a.engagement_id.map(EngagementId::from_uuid),
        artifact_id: Some(c.artifact_id),
        artifact_type: Some(a.artifact_type.clone()),
        internal: c.internal,
        title: String::new(),
        body: c.body.clone(),
    };
    index_later(tx, &doc, c.created_at);
    Ok(())
}

/// What events say about a comment.
fn comment_data(c: &Comment) -> Value {
    serde_json::json!({
        "comment_id": c.id.to_string(),
        "artifact_id": c.artifact_id.to_string(),
        "version": c.version,
        "section": c.section,
        "parent_id": c.parent_id.map(|p| p.to_string()),
        "kind": c.kind.as_str(),
        "body": c.body,
        "internal": c.internal,
        "author": c.author,
        "author_name": c.author_name,
        "author_kind": c.author_kind.as_str(),
        "resolved": c.resolved_at.is_some(),
    })
}

/// Who may see events about a comment on an artifact.
fn comment_audience(c: &Comment, a: &LockedArtifact) -> Result<Audience> {
    Ok(
        if !c.internal && client_visible(a.shared_at.is_some(), status(&a.status)?) {
            Audience::Client
        } else {
            Audience::Staff
        },
    )
}

fn new_comment(
    id: ArtifactId,
    a: &LockedArtifact,
    version: i64,
    kind: CommentKind,
    body: String,
    by: &Reviewer,
    at: OffsetDateTime,
) -> Comment {
    Comment {
        id: CommentId::new(),
        artifact_id: id,
        version,
        section: None,
        parent_id: None,
        body,
        kind,
        internal: false,
        author: by.id.clone(),
        author_name: by.name.clone(),
        author_kind: by.kind,
        created_at: at,
        resolved_at: None,
        resolved_by: None,
        client_id: ClientId::from_uuid(a.client_id),
    }
}

#[async_trait]
impl ReviewStore for SqlStore {
    async fn share(
        &self,
        id: ArtifactId,
        message: Option<String>,
        by: &Reviewer,
        ctx: &WriteContext,
    ) -> Result<Artifact> {
        {
            let mut tx = self.db.begin().await?;
            let current = lock_artifact(&mut tx, id).await?;
            let from = status(&current.status)?;
            let to = ArtifactStatus::InReview;
            lifecycle::check_transition(from, to)?;
            let at = now();
            let pipeline: Option<Pipeline> = None;
            let version = apply_transition(
                &mut tx,
                id,
                &current,
                (from, to, HistoryAction::Transition),
                &message,
                pipeline.as_ref(),
                ctx,
                at,
            )
            .await?;
            let mut entry = transition_entry(
                id,
                &current,
                from,
                to,
                version,
                &message,
                "artifact.share",
                Some("artifact.shared"),
            );
            if let Some(m) = &message {
                let c = new_comment(id, &current, version, CommentKind::Share, m.clone(), by, at);
                insert_comment(&mut tx, &c, &current).await?;
                if let Some(e) = entry.events.first_mut() {
                    e.data["comment_id"] = Value::String(c.id.to_string());
                    e.data["message"] = Value::String(m.clone());
                }
            }
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        self.get_artifact(id).await
    }

    async fn approve(
        &self,
        id: ArtifactId,
        version: i64,
        content_hash: Option<String>,
        by: &Reviewer,
        policy: ApprovalPolicy,
        ctx: &WriteContext,
    ) -> Result<Approved> {
        let decision = {
            let mut tx = self.db.begin().await?;
            let current = lock_artifact(&mut tx, id).await?;
            let from = status(&current.status)?;
            let done: Vec<(String,)> =
                sql("SELECT approver FROM approvals WHERE artifact_id = $1 AND round = $2")
                    .bind(id.uuid())
                    .bind(current.review_round)
                    .fetch_all(&mut tx)
                    .await?;
            let (version_author,): (String,) =
                sql("SELECT author FROM artifact_versions WHERE artifact_id = $1 AND version = $2")
                    .bind(id.uuid())
                    .bind(current.version)
                    .fetch_one(&mut tx)
                    .await?;
            let done: Vec<&str> = done.iter().map(|d| d.0.as_str()).collect();
            let authors = [current.created_by.as_str(), version_author.as_str()];
            let decision = ApprovalRequest {
                status: from,
                latest_version: current.version,
                latest_hash: &current.content_hash,
                version,
                content_hash: content_hash.as_deref(),
                approver: &by.id,
                kind: by.kind,
                authors: &authors,
                approved_by: &done,
                policy: &policy,
            }
            .decide()?;
            let at = now();
            sql(
                "INSERT INTO approvals (artifact_id, round, approver, approver_name, approver_kind, \
                 version, content_hash, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.uuid())
            .bind(current.review_round)
            .bind(&by.id)
            .bind(&by.name)
            .bind(by.kind.as_str())
            .bind(current.version)
            .bind(&current.content_hash)
            .bind(at)
            .execute(&mut tx)
            .await?;
            let entry = match decision {
                Decision::Approved { count } => {
                    let to = ArtifactStatus::Approved;
                    let reason = Some(format!(
                        "Approved by {} ({count} of {} needed)",
                        by.name,
                        policy.required.max(1)
                    ));
                    let pipeline: Option<Pipeline> = None;
                    let v = apply_transition(
                        &mut tx,
                        id,
                        &current,
                        (from, to, HistoryAction::Transition),
                        &reason,
                        pipeline.as_ref(),
                        ctx,
                        at,
                    )
                    .await?;
                    let mut e = transition_entry(
                        id,
                        &current,
                        from,
                        to,
                        v,
                        &reason,
                        "artifact.approve",
                        Some("artifact.approved"),
                    );
                    if let Some(ev) = e.events.first_mut() {
                        ev.data["approver"] = Value::String(by.id.clone());
                        ev.data["approver_name"] = Value::String(by.name.clone());
                        ev.data["approvals"] = Value::from(count);
                    }
                    e
                }
                Decision::Recorded { count, required } => {
                    let mut data =
                        artifact_data(id, &current, from, current.version, &current.content_hash);
                    data["approver"] = Value::String(by.id.clone());
                    data["approver_name"] = Value::String(by.name.clone());
                    data["approvals"] = Value::from(count);
                    data["required"] = Value::from(required);
                    LogEntry::new(
                        "artifact.approve",
                        Some(ClientId::from_uuid(current.client_id)),
                        id,
                    )
                    .hashes(
                        Some(current.content_hash.clone()),
                        Some(current.content_hash.clone()),
                    )
                    .event(
                        "artifact.approval_recorded",
                        Audience::Client,
                        data,
                    )
                }
            };
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
            decision
        };
        Ok(Approved {
            artifact: self.get_artifact(id).await?,
            decision,
        })
    }

    async fn reject(
        &self,
        id: ArtifactId,
        reason: String,
        by: &Reviewer,
        policy: ApprovalPolicy,
        ctx: &WriteContext,
    ) -> Result<(Artifact, Comment)> {
        let comment = {
            let mut tx = self.db.begin().await?;
            let current = lock_artifact(&mut tx, id).await?;
            let from = status(&current.status)?;
            ApprovalRequest {
                status: from,
                latest_version: current.version,
                latest_hash: &current.content_hash,
                version: current.version,
                content_hash: None,
                approver: &by.id,
                kind: by.kind,
                authors: &[],
                approved_by: &[],
                policy: &policy,
            }
            .check_reject()?;
            let at = now();
            let to = ArtifactStatus::Draft;
            let why = Some(format!("Rejected by {}: {reason}", by.name));
            let pipeline: Option<Pipeline> = None;
            let v = apply_transition(
                &mut tx,
                id,
                &current,
                (from, to, HistoryAction::Transition),
                &why,
                pipeline.as_ref(),
                ctx,
                at,
            )
            .await?;
            let c = new_comment(
                id,
                &current,
                v,
                CommentKind::Rejection,
                reason.clone(),
                by,
                at,
            );
            insert_comment(&mut tx, &c, &current).await?;
            let mut entry = transition_entry(
                id,
                &current,
                from,
                to,
                v,
                &Some(reason.clone()),
                "artifact.reject",
                Some("artifact.rejected"),
            );
            if let Some(ev) = entry.events.first_mut() {
                ev.data["comment_id"] = Value::String(c.id.to_string());
                ev.data["rejected_by"] = Value::String(by.id.clone());
                ev.data["rejected_by_name"] = Value::String(by.name.clone());
            }
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
            c
        };
        Ok((self.get_artifact(id).await?, comment))
    }

    async fn review_state(&self, id: ArtifactId, policy: ApprovalPolicy) -> Result<ReviewState> {
        let a = self.get_artifact(id).await?;
        let (round, rows, links): (i64, Vec<ApprovalRow>, (i64,)) = {
            let p = &mut self.db.reader();
            let (round,): (i64,) = sql("SELECT review_round FROM artifacts WHERE id = $1")
                .bind(id.uuid())
                .fetch_one(p)
                .await?;
            let rows = sql(APPROVALS_OF_ROUND)
                .bind(id.uuid())
                .bind(round)
                .fetch_all(p)
                .await?;
            let links = sql("SELECT COUNT(DISTINCT reviewer_email) FROM review_links \
                 WHERE artifact_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                 AND reviewer_email NOT IN (SELECT email FROM users WHERE client_id = $3)")
            .bind(id.uuid())
            .bind(now())
            .bind(a.summary.client_id.uuid())
            .fetch_one(p)
            .await?;
            (round, rows, links)
        };
        let users = self.count_client_users(a.summary.client_id).await?;
        Ok(ReviewState {
            artifact_id: id,
            status: a.summary.status,
            version: a.summary.version,
            content_hash: a.summary.content_hash,
            round,
            required: policy.required.max(1),
            approvers: policy.approvers,
            eligible: users + links.0,
            approvals: rows
                .into_iter()
                .map(Approval::try_from)
                .collect::<Result<_>>()?,
        })
    }

    async fn add_comment(
        &self,
        id: ArtifactId,
        new: NewComment,
        by: &Reviewer,
        ctx: &WriteContext,
    ) -> Result<Comment> {
        let lock = format!("{LOCK_ARTIFACT}{}", self.db.backend().for_share());
        {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "comment").await? {
                drop(tx);
                return self.get_comment(CommentId::from_uuid(existing)).await;
            }
            let a: LockedArtifact = sql(&lock)
                .bind(id.uuid())
                .fetch_optional(&mut tx)
                .await?
                .ok_or_else(|| not_found("artifact", id))?;
            let version = new.version.unwrap_or(a.version);
            let content: Option<(Json<Value>,)> = sql(
                "SELECT content FROM artifact_versions WHERE artifact_id = $1 AND version = $2",
            )
            .bind(id.uuid())
            .bind(version)
            .fetch_optional(&mut tx)
            .await?;
            let Some((content,)) = content else {
                return Err(FieldError::new(
                    "/version",
                    format!("no version {version}; versions run from 1 to {}", a.version),
                )
                .into());
            };
            if let Some(section) = &new.section {
                waymark_domain::review::check_section(&content.0, section)?;
            }
            if let Some(parent) = new.parent_id {
                let found: Option<(Uuid, bool)> =
                    sql("SELECT artifact_id, internal FROM comments WHERE id = $1")
                        .bind(parent.uuid())
                        .fetch_optional(&mut tx)
                        .await?;
                match found {
                    Some((art, internal)) if art == id.uuid() => {
                        if internal && !new.internal {
                            return Err(FieldError::new(
                                "/internal",
                                "a reply to an internal comment must be internal too",
                            )
                            .into());
                        }
                    }
                    _ => {
                        return Err(FieldError::new(
                            "/parent_id",
                            format!("no comment {parent} on this artifact"),
                        )
                        .into());
                    }
                }
            }
            let at = now();
            let mut c = new_comment(id, &a, version, CommentKind::Comment, new.body, by, at);
            c.section = new.section.filter(|s| !s.is_empty());
            c.parent_id = new.parent_id;
            c.internal = new.internal;
            insert_comment(&mut tx, &c, &a).await?;
            idempotency::record(&mut tx, ctx, "comment", c.id.uuid(), at).await?;
            let entry = LogEntry::new("comment.create", Some(c.client_id), c.id).event(
                "comment.created",
                comment_audience(&c, &a)?,
                comment_data(&c),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
            Ok(c)
        }
    }

    async fn list_comments(
        &self,
        id: ArtifactId,
        include_internal: bool,
        page: PageRequest,
    ) -> Result<Page<Comment>> {
        self.artifact_exists(id).await?;
        let cursor = id_cursor::<CommentId>(&page)?;
        let rows: Vec<CommentRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE artifact_id = "
            ));
            qb.push_bind(id.uuid());
            if !include_internal {
                qb.push(" AND internal = ").push_bind(false);
            }
            if let Some(c) = cursor {
                qb.push(" AND id > ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
        let comments = rows
            .into_iter()
            .map(Comment::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(comments, &page, |c| c.id.to_string()))
    }

    async fn get_comment(&self, id: CommentId) -> Result<Comment> {
        let row: Option<CommentRow> = sql(format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.ok_or_else(|| not_found("comment", id))?.try_into()
    }

    async fn resolve_comment(&self, id: CommentId, ctx: &WriteContext) -> Result<Comment> {
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            let row: Option<CommentRow> = sql(format!(
                "SELECT {COMMENT_COLUMNS} FROM comments WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?;
            let mut c: Comment = row.ok_or_else(|| not_found("comment", id))?.try_into()?;
            if c.resolved_at.is_none() {
                let a: LockedArtifact = sql(LOCK_ARTIFACT)
                    .bind(c.artifact_id.uuid())
                    .fetch_one(&mut tx)
                    .await?;
                sql("UPDATE comments SET resolved_at = $2, resolved_by = $3 WHERE id = $1")
                    .bind(id.uuid())
                    .bind(at)
                    .bind(&ctx.actor)
                    .execute(&mut tx)
                    .await?;
                c.resolved_at = Some(at);
                c.resolved_by = Some(ctx.actor.clone());
                let entry = LogEntry::new("comment.resolve", Some(c.client_id), id).event(
                    "comment.resolved",
                    comment_audience(&c, &a)?,
                    comment_data(&c),
                );
                append_log(&mut tx, ctx, at, entry).await?;
                tx.commit().await?;
            }
            Ok(c)
        }
    }

    async fn create_review_link(
        &self,
        new: NewReviewLink,
        ctx: &WriteContext,
    ) -> Result<ReviewLink> {
        let id = ReviewLinkId::new();
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "review_link").await? {
                drop(tx);
                return self
                    .get_review_link(ReviewLinkId::from_uuid(existing))
                    .await;
            }
            idempotency::record(&mut tx, ctx, "review_link", id.uuid(), at).await?;
            let a: LockedArtifact = sql(LOCK_ARTIFACT)
                .bind(new.artifact_id.uuid())
                .fetch_optional(&mut tx)
                .await?
                .ok_or_else(|| not_found("artifact", new.artifact_id))?;
            sql(format!(
                "INSERT INTO review_links ({LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)"
            ))
            .bind(id.uuid())
            .bind(new.artifact_id.uuid())
            .bind(a.client_id)
            .bind(&new.reviewer_email)
            .bind(&new.reviewer_name)
            .bind(new.expires_at)
            .bind(&ctx.actor)
            .bind(at)
            .execute(&mut tx)
            .await?;
            let client = ClientId::from_uuid(a.client_id);
            let entry = LogEntry::new("review_link.create", Some(client), id).event(
                "review_link.created",
                Audience::Staff,
                serde_json::json!({
                    "review_link_id": id.to_string(),
                    "artifact_id": new.artifact_id.to_string(),
                    "title": a.title,
                    "reviewer_email": new.reviewer_email,
                    "reviewer_name": new.reviewer_name,
                    "expires_at": new.expires_at.format(&time::format_description::well_known::Rfc3339).ok(),
                }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        self.get_review_link(id).await
    }

    async fn get_review_link(&self, id: ReviewLinkId) -> Result<ReviewLink> {
        let row: Option<LinkRow> = sql(format!(
            "SELECT {LINK_COLUMNS} FROM review_links WHERE id = $1"
        ))
        .bind(id.uuid())
        .fetch_optional(&mut self.db.reader())
        .await?;
        Ok(row.ok_or_else(|| not_found("review link", id))?.into())
    }

    async fn list_review_links(&self, artifact_id: ArtifactId) -> Result<Vec<ReviewLink>> {
        self.artifact_exists(artifact_id).await?;
        let rows: Vec<LinkRow> = sql(format!(
            "SELECT {LINK_COLUMNS} FROM review_links WHERE artifact_id = $1 ORDER BY id"
        ))
        .bind(artifact_id.uuid())
        .fetch_all(&mut self.db.reader())
        .await?;
        Ok(rows.into_iter().map(ReviewLink::from).collect())
    }

    async fn revoke_review_link(&self, id: ReviewLinkId, ctx: &WriteContext) -> Result<ReviewLink> {
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            let row: Option<LinkRow> = sql(format!(
                "SELECT {LINK_COLUMNS} FROM review_links WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?;
            let link: ReviewLink = row.ok_or_else(|| not_found("review link", id))?.into();
            if link.revoked_at.is_none() {
                sql("UPDATE review_links SET revoked_at = $2 WHERE id = $1")
                    .bind(id.uuid())
                    .bind(at)
                    .execute(&mut tx)
                    .await?;
                let entry = LogEntry::new("review_link.revoke", Some(link.client_id), id).event(
                    "review_link.revoked",
                    Audience::Staff,
                    serde_json::json!({
                        "review_link_id": id.to_string(),
                        "artifact_id": link.artifact_id.to_string(),
                    }),
                );
                append_log(&mut tx, ctx, at, entry).await?;
                tx.commit().await?;
            }
        };
        self.get_review_link(id).await
    }
}
