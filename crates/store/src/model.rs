//! The records the store keeps and the inputs it takes. They serialize as the API
//! shows them, so the server renders them as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use waymark_domain::artifact::SourceRef;
use waymark_domain::cascade::StaleCause;
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, ClientId, EngagementId, JourneyId, TokenId, UserId};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Gauges of one connection pool.
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// `read`, `write` (SQLite) or `main` (PostgreSQL).
    pub name: &'static str,
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// Who is writing and under which trace, recorded with every change.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The actor: a user id, a token id, a review link id, `worker:<name>`...
    pub actor: String,
    /// Who the actor is, for people to read: a person's name and email, an
    /// agent's id, a token's name. Recorded beside `actor` in history and the
    /// audit log.
    pub actor_name: Option<String>,
    /// The W3C trace id of the request.
    pub trace_id: Option<String>,
    /// An `Idempotency-Key` sent with a create.
    pub idempotency: Option<IdempotencyKey>,
}

impl WriteContext {
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            actor_name: None,
            trace_id: None,
            idempotency: None,
        }
    }
}

/// An idempotency key, scoped to its caller, with a hash of the request it came
/// with so that reusing it for a different request is refused.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

/// A created record, or the one an earlier request with the same idempotency
/// key created.
#[derive(Debug, Clone)]
pub struct Created<T> {
    pub record: T,
    /// True when this is the answer to an earlier request with the same key.
    pub replayed: bool,
}

/// Which page of a list to answer.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// At most this many items (1..=200).
    pub limit: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The cursor sent, if any: an empty one is the first page, as none.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref().filter(|c| !c.is_empty())
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: 50,
            cursor: None,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The role a token acts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including people, tokens, webhooks and the audit log.
    Admin,
    /// Works on every client's engagements and artifacts.
    Operator,
    /// A client contact: sees what was shared with their client, comments,
    /// approves and rejects.
    Client,
    /// An external agent (a program) working for the team.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Client => "client",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "client" => Some(Role::Client),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// A stored token (the secret itself is never stored).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    pub secret_hash: Vec<u8>,
    /// The person it acts for, if any.
    pub user_id: Option<UserId>,
    /// The agent it acts for, if any.
    pub agent_id: Option<String>,
    /// The client it is confined to (client users' tokens).
    pub client_id: Option<ClientId>,
    pub kind: TokenKind,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRecord {
    /// Usable at `now`: not revoked and not expired.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    pub expires_at: Option<OffsetDateTime>,
    pub user_id: Option<UserId>,
    pub agent_id: Option<String>,
    pub client_id: Option<ClientId>,
    pub kind: TokenKind,
}

impl NewToken {
    /// A token acting for nobody in particular (the bootstrap admin token).
    pub fn standalone(name: impl Into<String>, role: Role, secret_hash: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            role,
            secret_hash,
            expires_at: None,
            user_id: None,
            agent_id: None,
            client_id: None,
            kind: TokenKind::Api,
        }
    }
}

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Made through the API or the CLI, for a program or a person.
    Api,
    /// Made by signing in with a password, for the web UI.
    Session,
    /// A one-time sign-in link sent by mail: never a bearer token; redeemed
    /// once (see `PeopleStore::redeem_sign_in_link`) for a session.
    SignInLink,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
            TokenKind::SignInLink => "sign_in_link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(TokenKind::Api),
            "session" => Some(TokenKind::Session),
            "sign_in_link" => Some(TokenKind::SignInLink),
            _ => None,
        }
    }
}

/// A token as lists show it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    pub user_id: Option<UserId>,
    pub agent_id: Option<String>,
    pub client_id: Option<ClientId>,
    pub kind: TokenKind,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(t: &TokenRecord) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name.clone(),
            role: t.role,
            user_id: t.user_id,
            agent_id: t.agent_id.clone(),
            client_id: t.client_id,
            kind: t.kind,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The organisation being served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    /// Annual recurring revenue.
    pub arr: Option<f64>,
    #[serde(with = "waymark_domain::dates::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub renewal_date: Option<Date>,
    /// 0-100.
    pub health_score: Option<f64>,
    /// 0-100.
    pub risk_score: Option<f64>,
    /// 0-100.
    pub opportunity_score: Option<f64>,
    /// The operator responsible for the client.
    pub owner: Option<String>,
    /// Free attributes.
    pub attributes: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A client to create (already validated).
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub arr: Option<f64>,
    pub renewal_date: Option<Date>,
    pub health_score: Option<f64>,
    pub risk_score: Option<f64>,
    pub opportunity_score: Option<f64>,
    pub owner: Option<String>,
    pub attributes: Option<Value>,
}

/// Changes to a client: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub arr: Option<Option<f64>>,
    pub renewal_date: Option<Option<Date>>,
    pub health_score: Option<Option<f64>>,
    pub risk_score: Option<Option<f64>>,
    pub opportunity_score: Option<Option<f64>>,
    pub owner: Option<Option<String>>,
    pub attributes: Option<Value>,
}

/// One piece of work for a client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Engagement {
    pub id: EngagementId,
    pub client_id: ClientId,
    pub name: String,
    /// The pack whose templates the engagement uses.
    pub pack: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An engagement to create (already validated).
#[derive(Debug, Clone)]
pub struct NewEngagement {
    pub client_id: ClientId,
    pub name: String,
    pub pack: String,
}

/// An artifact as lists show it: without content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArtifactSummary {
    pub id: ArtifactId,
    pub client_id: ClientId,
    pub engagement_id: Option<EngagementId>,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: String,
    pub status: ArtifactStatus,
    /// The latest version.
    pub version: i64,
    /// Content hash of the latest version.
    pub content_hash: String,
    /// Why it is stale, as a sentence (`null` unless `status` is `stale`).
    pub stale_reason: Option<String>,
    /// Why it is stale, one cause per changed or stale input.
    pub stale_causes: Vec<StaleCause>,
    /// When it was first shared with the client (`null`: never).
    #[serde(with = "time::serde::rfc3339::option")]
    pub shared_at: Option<OffsetDateTime>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl ArtifactSummary {
    /// Whether the users of `client` may see it: theirs, shared, and not back in draft.
    pub fn shared_with(&self, client: ClientId) -> bool {
        self.client_id == client && self.shared_at.is_some() && self.status != ArtifactStatus::Draft
    }
}

/// An artifact with its latest version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Artifact {
    #[serde(flatten)]
    pub summary: ArtifactSummary,
    pub content: Value,
    pub inputs_hash: String,
    pub sources: Vec<SourceRef>,
    /// Who or what wrote the latest version: `human`, `template`, `ollama:<model>`...
    pub provenance: String,
    pub note: Option<String>,
    /// The journey that implements it (`POST .../implement`), if any.
    pub journey_id: Option<JourneyId>,
}

/// One immutable version of an artifact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Version {
    pub artifact_id: ArtifactId,
    pub version: i64,
    pub content: Value,
    pub content_hash: String,
    pub inputs_hash: String,
    pub sources: Vec<SourceRef>,
    pub provenance: String,
    pub author: String,
    pub note: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An artifact to create (already validated).
#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub client_id: ClientId,
    pub engagement_id: Option<EngagementId>,
    pub artifact_type: String,
    pub title: String,
    pub content: Value,
    /// `None`: in a pipeline, the current artifacts of the required types; else none.
    pub sources: Option<Vec<SourceRef>>,
    pub note: Option<String>,
    pub provenance: String,
    /// The pack's rules for this type, when it is created in an engagement.
    pub pipeline: Option<Pipeline>,
}

/// What a pack says about an artifact type that the store enforces.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// Upstream types that must be approved (gating) and that are its default sources.
    pub requires: Vec<String>,
    /// The generator fingerprint, part of the inputs hash.
    pub generator: Value,
}

/// New content for an artifact (already validated).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub content: Value,
    /// `None`: in a pipeline, the current artifacts of the required types; else the
    /// previous version's sources.
    pub sources: Option<Vec<SourceRef>>,
    pub note: Option<String>,
    pub provenance: String,
    /// The pack's rules for the artifact's type, when it is in an engagement.
    pub pipeline: Option<Pipeline>,
}

/// An artifact the stale cascade flagged.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Flagged {
    pub artifact_id: ArtifactId,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub reason: String,
}

/// A write that made a new version, with what it made stale downstream.
#[derive(Debug, Clone)]
pub struct Written {
    pub artifact: Artifact,
    /// Artifacts the stale cascade flagged, in the order it reached them.
    pub flagged: Vec<Flagged>,
}

/// Filters of the artifact list; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct ArtifactFilter {
    pub client_id: Option<ClientId>,
    pub engagement_id: Option<EngagementId>,
    pub artifact_type: Option<String>,
    pub status: Option<ArtifactStatus>,
    /// Words in the title or content, matched through the search index as
    /// [`SearchStore::search`](crate::SearchStore::search) reads them.
    pub q: Option<String>,
    /// Only what was shared with this client (a client user's view).
    pub shared_with: Option<ClientId>,
}

/// What happened to an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    /// Version 1 was written.
    Created,
    /// A new version was written.
    ContentUpdated,
    /// A new version copying an old one was written.
    RolledBack,
    /// The status changed.
    Transition,
    /// The stale cascade flagged it.
    MarkedStale,
    /// Re-approval wrote a version with the same content on current sources.
    Rebased,
    /// An admin approved it past its type's approval policy (with a reason).
    ApprovalOverridden,
}

impl HistoryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryAction::Created => "created",
            HistoryAction::ContentUpdated => "content_updated",
            HistoryAction::RolledBack => "rolled_back",
            HistoryAction::Transition => "transition",
            HistoryAction::MarkedStale => "marked_stale",
            HistoryAction::Rebased => "rebased",
            HistoryAction::ApprovalOverridden => "approval_overridden",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            HistoryAction::Created,
            HistoryAction::ContentUpdated,
            HistoryAction::RolledBack,
            HistoryAction::Transition,
            HistoryAction::MarkedStale,
            HistoryAction::Rebased,
            HistoryAction::ApprovalOverridden,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One entry of an artifact's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    pub action: HistoryAction,
    pub from_status: Option<ArtifactStatus>,
    pub to_status: Option<ArtifactStatus>,
    /// The version written, or the version current at a transition.
    pub version: Option<i64>,
    pub reason: Option<String>,
    pub actor: String,
    /// Who the actor is, for people to read (see [`WriteContext::actor_name`]).
    pub actor_name: Option<String>,
    pub trace_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One artifact in a lineage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineageNode {
    pub artifact_id: ArtifactId,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub title: String,
    pub status: ArtifactStatus,
    /// Upstream: the version that was used. Downstream: its latest version.
    pub version: i64,
    /// Its latest version.
    pub latest_version: i64,
    /// Steps from the artifact asked about (1: a direct source or consumer).
    pub depth: i64,
    /// The neighbour it is linked through, nearer the artifact asked about:
    /// upstream, the version that used it; downstream, the version it was built on.
    pub via: SourceRef,
}

/// What an artifact was built from and what was built from it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lineage {
    pub artifact_id: ArtifactId,
    pub version: i64,
    /// Sources of its latest version, and theirs, at the versions used.
    pub upstream: Vec<LineageNode>,
    /// Artifacts whose latest version was built on it, and theirs.
    pub downstream: Vec<LineageNode>,
    /// Whether either list was cut at the limit.
    pub truncated: bool,
}

/// A pack installed into the database.
#[derive(Debug, Clone)]
pub struct InstalledPack {
    pub name: String,
    pub version: String,
    pub digest: String,
    /// Every file of the pack by path.
    pub files: std::collections::BTreeMap<String, String>,
    pub installed_by: String,
    pub installed_at: OffsetDateTime,
}

/// The deliverables chosen for an engagement's generation plan.
#[derive(Debug, Clone)]
pub struct PlanRecord {
    pub engagement_id: EngagementId,
    /// `None`: every job of the pack.
    pub deliverables: Option<Vec<String>>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}
