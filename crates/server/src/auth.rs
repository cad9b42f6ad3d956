//! Bearer tokens: how they are made, stored (hashed) and checked, and the admin
//! token a fresh installation starts with.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use waymark_domain::review::ApproverKind;
use waymark_domain::{ArtifactId, ClientId, ReviewLinkId, TaskId, TokenId, UserId};
use waymark_store::{ArtifactSummary, NewToken, Reviewer, Role, Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// The caller a request acts as, placed in the request's extensions by
/// [`require_token`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token presented (none for a review link).
    pub token_id: Option<TokenId>,
    pub role: Role,
    /// The person the token belongs to.
    pub user_id: Option<UserId>,
    /// The client a client user (or a review link) is confined to.
    pub client_id: Option<ClientId>,
    /// A name to show beside the caller's comments and approvals.
    pub name: String,
    /// The person's email, for a user or a review link's reviewer.
    pub email: Option<String>,
    /// Set when the caller acts through a review link.
    pub link: Option<LinkGrant>,
    /// The agent an agent's token acts for.
    pub agent_id: Option<String>,
    /// Set when the caller presents a task's lease token as its bearer (an
    /// `http.webhook` receiver calling back): it may heartbeat, complete or
    /// fail that task, nothing else.
    pub lease: Option<LeaseGrant>,
}

/// What a lease token presented as a bearer allows: its task's callbacks.
#[derive(Debug, Clone)]
pub struct LeaseGrant {
    pub task_id: TaskId,
    pub lease_token: String,
}

/// What a review link allows: one artifact, for one reviewer.
#[derive(Debug, Clone)]
pub struct LinkGrant {
    pub link_id: ReviewLinkId,
    pub artifact_id: ArtifactId,
    pub reviewer_email: String,
}

impl Caller {
    /// The actor recorded with the caller's writes: the user, the review link, or
    /// the token.
    pub fn actor(&self) -> String {
        if let Some(u) = self.user_id {
            u.to_string()
        } else if let Some(l) = &self.lease {
            format!("lease:{}", l.task_id)
        } else if let Some(l) = &self.link {
            l.link_id.to_string()
        } else {
            self.token_id.map(|t| t.to_string()).unwrap_or_default()
        }
    }

    /// Who the caller is, for people to read beside [`Caller::actor`]: a
    /// person's name and email, an agent's id, a token's name.
    pub fn actor_name(&self) -> String {
        match &self.email {
            Some(email) if self.link.is_some() => format!("{} <{email}> (review link)", self.name),
            Some(email) => format!("{} <{email}>", self.name),
            None => self.name.clone(),
        }
    }

    /// Admins, operators and agents: the team, who see every client.
    pub fn is_staff(&self) -> bool {
        self.link.is_none() && matches!(self.role, Role::Admin | Role::Operator | Role::Agent)
    }

    /// Refuses (403) a caller that is not an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin && self.link.is_none() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only an admin may do this; ask an admin for an admin token".into(),
            ))
        }
    }

    /// Refuses (403) a caller who is not on the team (a client user, a reviewer).
    pub fn require_staff(&self) -> Result<(), ApiError> {
        if self.is_staff() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only operators and admins may do this; client contacts can view, comment, approve and reject what was shared with them".into(),
            ))
        }
    }

    /// The client a client user or review link is confined to; `None` for the team.
    pub fn client_scope(&self) -> Option<ClientId> {
        if self.is_staff() {
            None
        } else {
            self.client_id
        }
    }

    /// Whether the caller may see anything of `client`.
    pub fn sees_client(&self, client: ClientId) -> bool {
        self.is_staff() || (self.link.is_none() && self.client_id == Some(client))
    }

    /// Answers 404, exactly as for a missing client, unless the caller may see it.
    pub fn check_client(&self, client: ClientId) -> Result<(), ApiError> {
        if self.sees_client(client) {
            Ok(())
        } else {
            Err(not_found("client", client))
        }
    }

    /// Whether the caller may see this artifact: the team always; a client user
    /// when it was shared with their client; a review link for its own artifact
    /// once shared.
    pub fn sees_artifact(&self, a: &ArtifactSummary) -> bool {
        if self.is_staff() {
            return true;
        }
        let Some(client) = self.client_id else {
            return false;
        };
        match &self.link {
            Some(l) => l.artifact_id == a.id && a.shared_with(client),
            None => a.shared_with(client),
        }
    }

    /// Answers 404, exactly as for a missing artifact, unless the caller may see it.
    pub fn check_artifact(&self, a: &ArtifactSummary) -> Result<(), ApiError> {
        if self.sees_artifact(a) {
            Ok(())
        } else {
            Err(not_found("artifact", a.id))
        }
    }

    /// The caller as a person in a review.
    pub fn reviewer(&self) -> Reviewer {
        Reviewer {
            id: self.actor(),
            name: self.name.clone(),
            kind: if self.link.is_some() {
                ApproverKind::Reviewer
            } else if self.is_staff() {
                ApproverKind::Staff
            } else {
                ApproverKind::ClientContact
            },
        }
    }
}

/// The 404 a missing record answers; also what a record the caller may not see
/// answers, word for word.
pub fn not_found(kind: &str, id: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("no {kind} {id}"))
}

/// SHA-256 of a token secret: what the database keeps.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new random token secret: `wm_` and 64 hex digits (256 bits).
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("wm_{}", hex::encode(bytes))
}

/// The name of the server key idempotent token secrets are derived with.
pub const TOKEN_SECRET_KEY: &str = "idempotent-token-secrets";

/// The secret of a token created with an idempotency key: derived from the
/// key (with its scope and request) under a server key, so a replay answers
/// the secret the first request answered, and no secret is stored.
pub fn idempotent_secret(server_key: &[u8], key: &waymark_store::IdempotencyKey) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(server_key).expect("HMAC takes any key length");
    for part in [&key.scope, &key.key, &key.request_hash] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    format!("wm_{}", hex::encode(mac.finalize().into_bytes()))
}

/// The name of the session cookie the web UI signs in with.
pub const SESSION_COOKIE: &str = "waymark_session";

pub use waymark_domain::review::{LINK_KEY, LINK_PREFIX, sign_link, verify_link};

/// The bearer token of a request: the `Authorization` header, or the session
/// cookie of the web UI.
fn presented_secret(req: &Request) -> Option<String> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(h) = header {
        return h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(|s| s.trim().to_owned());
    }
    req.headers()
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in person of a web page: the session cookie's caller, or none
/// when there is no cookie or it is unknown, revoked or expired.
pub(crate) async fn session_caller(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    let Some(secret) = crate::views::csrf::cookie_value(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if secret.starts_with(LINK_PREFIX) || secret.starts_with(LEASE_PREFIX) || secret.len() > 200 {
        return Ok(None);
    }
    match token_caller(state, &secret, OffsetDateTime::now_utc()).await {
        Ok(c) if c.user_id.is_some() => Ok(Some(c)),
        Ok(_) | Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Middleware: refuses requests without a live bearer token (401), otherwise
/// records the [`Caller`] in the request's extensions. A review link may only
/// reach the routes of its own artifact it grants.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(secret) = presented_secret(&req) else {
        return Err(ApiError::Unauthorized(
            "send `Authorization: Bearer <token>`; the admin token is printed at first start and kept in the data folder (admin-token)".into(),
        ));
    };
    let now = OffsetDateTime::now_utc();
    let caller = if secret.starts_with(LINK_PREFIX) {
        let caller = link_caller(&state, &secret, now).await?;
        check_link_route(&caller, req.method(), req.uri().path())?;
        caller
    } else if secret.starts_with(LEASE_PREFIX) {
        lease_caller(&secret, req.method(), req.uri().path())?
    } else {
        let caller = token_caller(&state, &secret, now).await?;
        check_agent_route(&caller, req.method(), req.uri().path())?;
        caller
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// An agent's token reaches only what an agent does: the registry, claiming,
/// its tasks (read, heartbeat, complete, fail), journeys' metrics (record),
/// plus `/me` and `/version`.
/// The handlers then confine it to its own agent id and tasks.
fn check_agent_route(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    if caller.role != Role::Agent {
        return Ok(());
    }
    let get = method == Method::GET;
    let post = method == Method::POST;
    let allowed = match path.strip_prefix("/api/v1/") {
        Some("me" | "version") => get,
        Some("agents") => get || post,
        Some(rest) if rest.starts_with("agents/") => {
            let tail = &rest["agents/".len()..];
            match tail.split_once('/') {
                None => get,
                Some((_, "claim")) => post,
                Some(_) => false,
            }
        }
        // Agents report the metrics they measure.
        Some(rest) if rest.starts_with("journeys/") && rest.ends_with("/metrics") => post,
        Some(rest) if rest.starts_with("work/tasks/") => {
            match rest["work/tasks/".len()..].split_once('/') {
                None => get,
                Some((_, "heartbeat" | "complete" | "fail")) => post,
                Some(_) => false,
            }
        }
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "an agent's token only registers its agent, claims its tasks and reads, heartbeats, \
             completes or fails them; use an operator's token for anything else"
                .into(),
        ))
    }
}

/// Lease tokens start with this (see `waymark_domain::work::new_lease_token`).
const LEASE_PREFIX: &str = "wml_";

/// A lease token as a bearer: only `POST /api/v1/work/tasks/{id}/heartbeat`,
/// `/complete` and `/fail`; the store checks that the lease holds that task.
fn lease_caller(secret: &str, method: &Method, path: &str) -> Result<Caller, ApiError> {
    let refused = || {
        ApiError::Forbidden(
            "a lease token only heartbeats, completes or fails the task it was issued for; \
             use an API token for anything else"
                .into(),
        )
    };
    let (id, action) = path
        .strip_prefix("/api/v1/work/tasks/")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(refused)?;
    if method != Method::POST || !matches!(action, "heartbeat" | "complete" | "fail") {
        return Err(refused());
    }
    let task_id: TaskId = id.parse().map_err(|_| refused())?;
    if secret.len() > 100 {
        return Err(ApiError::Unauthorized(
            "the lease token is malformed".into(),
        ));
    }
    Ok(Caller {
        token_id: None,
        role: Role::Operator,
        user_id: None,
        client_id: None,
        name: format!("lease of {task_id}"),
        email: None,
        link: None,
        agent_id: None,
        lease: Some(LeaseGrant {
            task_id,
            lease_token: secret.to_owned(),
        }),
    })
}

fn unknown_token() -> ApiError {
    ApiError::Unauthorized("the token is unknown, revoked or expired".into())
}

pub(crate) async fn token_caller(
    state: &AppState,
    secret: &str,
    now: OffsetDateTime,
) -> Result<Caller, ApiError> {
    let computed = hash_secret(secret);
    let token = state.store.token_by_hash(&computed).await?;
    // Found by its hash; compare again in constant time so no branch depends on
    // how much of a guess was right.
    // A mailed sign-in link is redeemed for a session, never sent as a bearer.
    let Some(t) = token.filter(|t| {
        bool::from(t.secret_hash.ct_eq(&computed))
            && t.is_live(now)
            && t.kind != waymark_store::TokenKind::SignInLink
    }) else {
        return Err(unknown_token());
    };
    let (name, email) = match t.user_id {
        Some(u) => match state.store.get_user(u).await {
            Ok(user) => (user.name, Some(user.email)),
            Err(StoreError::NotFound { .. }) => return Err(unknown_token()),
            Err(e) => return Err(e.into()),
        },
        None => (t.agent_id.clone().unwrap_or_else(|| t.name.clone()), None),
    };
    Ok(Caller {
        token_id: Some(t.id),
        role: t.role,
        user_id: t.user_id,
        client_id: t.client_id,
        name,
        email,
        link: None,
        agent_id: t.agent_id.clone(),
        lease: None,
    })
}

pub(crate) async fn link_caller(
    state: &AppState,
    secret: &str,
    now: OffsetDateTime,
) -> Result<Caller, ApiError> {
    let key = state.link_key().await?;
    let refused = || {
        ApiError::Unauthorized(
            "this review link is invalid, expired or revoked; ask whoever sent it for a new one"
                .into(),
        )
    };
    let id = verify_link(&key, secret, now).ok_or_else(refused)?;
    let link = match state.store.get_review_link(id).await {
        Ok(l) if l.is_live(now) => l,
        Ok(_) | Err(StoreError::NotFound { .. }) => return Err(refused()),
        Err(e) => return Err(e.into()),
    };
    Ok(Caller {
        token_id: None,
        role: Role::Client,
        user_id: None,
        client_id: Some(link.client_id),
        name: link.reviewer_name.clone(),
        email: Some(link.reviewer_email.clone()),
        link: Some(LinkGrant {
            link_id: link.id,
            artifact_id: link.artifact_id,
            reviewer_email: link.reviewer_email,
        }),
        agent_id: None,
        lease: None,
    })
}

/// The routes a review link reaches: view, comment on, approve and reject its
/// own artifact. Another artifact answers 404 as a missing one would.
fn check_link_route(caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let Some(link) = &caller.link else {
        return Ok(());
    };
    let refused = || {
        ApiError::Forbidden(
            "a review link can only view, comment on, approve or reject the artifact it was sent for".into(),
        )
    };
    let Some(rest) = path.strip_prefix("/api/v1/artifacts/") else {
        return Err(refused());
    };
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let allowed = matches!(
        (method.as_str(), tail),
        ("GET", "")
            | ("GET", "review")
            | ("GET", "comments")
            | ("POST", "comments")
            | ("POST", "approve")
            | ("POST", "reject")
    );
    if !allowed {
        return Err(refused());
    }
    if id != link.artifact_id.to_string() {
        return Err(not_found(
            "artifact",
            id.chars().take(80).collect::<String>(),
        ));
    }
    Ok(())
}

/// The name of the admin token set by `WAYMARK_ADMIN_TOKEN`.
pub const ENV_ADMIN_TOKEN_NAME: &str = "admin (WAYMARK_ADMIN_TOKEN)";
/// The name of the admin token generated at first start.
pub const GENERATED_ADMIN_TOKEN_NAME: &str = "admin (generated)";
/// The file in the data folder holding the generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// What [`bootstrap_admin`] did.
#[derive(Debug)]
pub enum AdminToken {
    /// `WAYMARK_ADMIN_TOKEN` is the admin token (a previous value is revoked).
    FromEnv,
    /// An admin token was generated: print it, this once.
    Generated { secret: String, file: PathBuf },
    /// A generated admin token exists already, kept in `file`.
    Existing { file: PathBuf },
}

/// Makes sure an admin token exists: `env_token` when given, otherwise one
/// generated at first start, written to `<data_dir>/admin-token` readable only by
/// its owner.
pub async fn bootstrap_admin(
    store: &dyn Store,
    data_dir: &Path,
    env_token: Option<&str>,
) -> Result<AdminToken, BootstrapError> {
    if let Some(secret) = env_token {
        if secret.len() < 16 {
            return Err(BootstrapError::WeakToken);
        }
        store
            .replace_named_token(NewToken::standalone(
                ENV_ADMIN_TOKEN_NAME,
                Role::Admin,
                hash_secret(secret),
            ))
            .await?;
        return Ok(AdminToken::FromEnv);
    }
    let file = data_dir.join(ADMIN_TOKEN_FILE);
    if store.live_token_named(GENERATED_ADMIN_TOKEN_NAME).await? {
        return Ok(AdminToken::Existing { file });
    }
    let secret = generate_secret();
    // The file first: a crash before the insert leaves a file that the next
    // start overwrites, never a token nobody knows.
    write_owner_only(&file, &format!("{secret}\n")).map_err(|e| BootstrapError::File {
        path: file.clone(),
        source: e,
    })?;
    store
        .replace_named_token(NewToken::standalone(
            GENERATED_ADMIN_TOKEN_NAME,
            Role::Admin,
            hash_secret(&secret),
        ))
        .await?;
    Ok(AdminToken::Generated { secret, file })
}

fn write_owner_only(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// `WAYMARK_ADMIN_TOKEN` is too short to be a secret.
    #[error(
        "WAYMARK_ADMIN_TOKEN must be at least 16 characters; generate one with `openssl rand -hex 32`"
    )]
    WeakToken,
    /// The token file could not be written.
    #[error("cannot write the admin token to {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
