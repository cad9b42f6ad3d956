//! People: users, their tokens, and signing in to the web UI.
//!
//! Passwords are kept as Argon2id PHC strings (default parameters), hashed and
//! checked on the blocking pool. Token secrets are shown once, when made, and
//! stored as SHA-256 (see [`crate::auth`]).
//!
//! Signing in (`POST /api/v1/sessions`) is the one route under `/api/v1` that
//! needs no token: it is served by [`public_routes`], outside `require_token`.
//! Failed sign-ins are counted per email in the database (so every replica sees
//! them): after [`MAX_FAILURES`] within [`FAILURE_WINDOW`] the next attempt is
//! refused (429) before any password is checked.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json as JsonOut};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use waymark_domain::client::parse_name;
use waymark_domain::{ClientId, FieldError, TokenId, UserId};
use waymark_store::{
    NewToken, NewUser, Page, Role, TokenInfo, TokenKind, TokenRecord, User, UserFilter,
    WriteContext,
};

use super::{PageParams, creating_context, write_context};
use crate::AppState;
use crate::auth::{
    Caller, SESSION_COOKIE, generate_secret, hash_secret, idempotent_secret, not_found,
};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Query, path_id, query_id};
use crate::observe::TraceId;

/// The routes of this module that need a token.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user))
        .routes(routes!(me))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(sign_out))
}

/// The routes of this module that need no token: signing in.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in))
}

/// Failed sign-ins for one email allowed within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: i64 = 5;
/// Failed sign-ins (any email) and sign-in links asked for from one source
/// address within [`FAILURE_WINDOW`]: spraying one password over many emails
/// is slowed as much as guessing one account's. Generous, as a team behind
/// one proxy shares an address.
pub const MAX_ADDRESS_FAILURES: i64 = 30;
/// Sign-in links one email may be sent within [`FAILURE_WINDOW`].
pub const MAX_LINKS: i64 = 3;
/// How long a failed sign-in counts.
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);
/// How long a web session lasts.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);

const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_CHARS: usize = 1024;
const MAX_EMAIL_LEN: usize = 254;
const MAX_AGENT_ID_CHARS: usize = 100;
const WRONG_CREDENTIALS: &str = "wrong email or password";

/// An Argon2id hash (default parameters) of a password nobody has: checked
/// against when the email is unknown, so the answer takes as long as for a
/// known one.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$qcToB4Ewhbi5ydSXU1g4uQ$AIDBwXRMHHrKe8QCUqtMSsJ6xLJlWzqVE68qKPEklQ0";

// ---------------------------------------------------------------------------
// Users

/// A user to create.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Their email, which they sign in with (kept lowercased).
    #[schema(max_length = 254, pattern = "^\\s*[^@\\s]+@[^@\\s]+\\s*$")]
    pub email: String,
    #[schema(value_type = crate::openapi::Name, inline)]
    pub name: String,
    /// `admin`, `operator` or `client`.
    #[schema(pattern = "^\\s*(admin|operator|client)\\s*$")]
    pub role: String,
    /// The client a client user belongs to (required for them, refused for others).
    pub client_id: Option<String>,
    /// To sign in to the web UI: 12 to 1024 characters.
    pub password: Option<String>,
}

/// A validated [`CreateUser`], its password not yet hashed.
struct ValidUser {
    new: NewUser,
    password: Option<String>,
}

impl CreateUser {
    fn validate(self) -> Result<ValidUser, FieldError> {
        let email = parse_email(&self.email)?;
        let name = parse_name(&self.name, "/name")?;
        let role = match Role::parse(self.role.trim()) {
            Some(r @ (Role::Admin | Role::Operator | Role::Client)) => r,
            Some(Role::Agent) => {
                return Err(FieldError::new(
                    "/role",
                    "agent is not a user role: make a token with agent_id for an agent",
                ));
            }
            None => {
                return Err(FieldError::new(
                    "/role",
                    "must be admin, operator or client",
                ));
            }
        };
        let client_id = self
            .client_id
            .as_deref()
            .map(|c| {
                c.parse::<ClientId>()
                    .map_err(|e| FieldError::new("/client_id", e.to_string()))
            })
            .transpose()?;
        match (role, client_id) {
            (Role::Client, None) => {
                return Err(FieldError::new(
                    "/client_id",
                    "a client user needs the client_id of their client",
                ));
            }
            (Role::Admin | Role::Operator, Some(_)) => {
                return Err(FieldError::new(
                    "/client_id",
                    format!(
                        "an {} sees every client; only client users have a client_id",
                        role.as_str()
                    ),
                ));
            }
            _ => {}
        }
        if let Some(p) = &self.password {
            let n = p.chars().count();
            if n < MIN_PASSWORD_CHARS {
                return Err(FieldError::new(
                    "/password",
                    format!("must be at least {MIN_PASSWORD_CHARS} characters"),
                ));
            }
            if n > MAX_PASSWORD_CHARS {
                return Err(FieldError::new(
                    "/password",
                    format!("must be at most {MAX_PASSWORD_CHARS} characters"),
                ));
            }
        }
        Ok(ValidUser {
            new: NewUser {
                email,
                name,
                role,
                client_id,
                password_hash: None,
            },
            password: self.password,
        })
    }
}

/// An email, trimmed and lowercased: one `@` between non-empty parts, no
/// spaces, at most 254 characters.
fn parse_email(value: &str) -> Result<String, FieldError> {
    let email = value.trim().to_lowercase();
    let bad = || FieldError::new("/email", "must be an email address such as ana@example.com");
    if email.len() > MAX_EMAIL_LEN {
        return Err(FieldError::new(
            "/email",
            format!("must be at most {MAX_EMAIL_LEN} characters"),
        ));
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(email)
}

/// Filters of the user list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UserQuery {
    /// Only this client's users.
    #[param(value_type = waymark_domain::ClientId, required = false)]
    pub client_id: Option<String>,
    /// Only users with this role: `admin`, `operator` or `client`.
    #[param(pattern = "^(admin|operator|client)$")]
    pub role: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Refuses (403) anyone but admins and operators.
fn require_admin_or_operator(caller: &Caller) -> Result<(), ApiError> {
    if caller.link.is_none() && matches!(caller.role, Role::Admin | Role::Operator) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only admins and operators may list people".into(),
        ))
    }
}

/// Create a user (admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "people", request_body = CreateUser,
    responses((status = 201, body = User), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, JsonOut<User>), ApiError> {
    caller.require_admin()?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/users", &body)?;
    let ValidUser { mut new, password } = body.validate().map_err(ApiError::invalid)?;
    if let Some(p) = password {
        new.password_hash = Some(hash_password(p).await?);
    }
    let user = state.store.create_user(new, &ctx).await?;
    Ok((StatusCode::CREATED, JsonOut(user)))
}

/// List users, newest first (admins and operators).
#[utoipa::path(get, path = "/api/v1/users", tag = "people", params(UserQuery),
    responses((status = 200, body = Page<User>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<UserQuery>,
) -> Result<JsonOut<Page<User>>, ApiError> {
    require_admin_or_operator(&caller)?;
    let filter = UserFilter {
        client_id: q
            .client_id
            .as_deref()
            .map(|c| query_id::<ClientId>("client_id", c))
            .transpose()?,
        role: q
            .role
            .as_deref()
            .map(|r| {
                Role::parse(r).ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "role must be admin, operator or client")
                })
            })
            .transpose()?,
    };
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    Ok(JsonOut(state.store.list_users(filter, page).await?))
}

/// Get a user: admins and operators see anyone, everyone else themselves.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "people",
    params(("id" = String, Path, description = "A user id (usr_...)")),
    responses((status = 200, body = User), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<JsonOut<User>, ApiError> {
    let id: UserId = path_id(&id)?;
    if require_admin_or_operator(&caller).is_err() && caller.user_id != Some(id) {
        return Err(not_found("user", id));
    }
    Ok(JsonOut(state.store.get_user(id).await?))
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The token the request came with.
    pub token_id: Option<TokenId>,
    /// The person it belongs to; `null` for an agent or standalone token.
    pub user: Option<User>,
    pub role: Role,
    pub client_id: Option<ClientId>,
    pub name: String,
    /// The agent an agent's token acts for.
    pub agent_id: Option<String>,
}

/// Who the caller is: their token, user, role and client.
#[utoipa::path(get, path = "/api/v1/me", tag = "people",
    responses((status = 200, body = Me)), security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<JsonOut<Me>, ApiError> {
    let user = match caller.user_id {
        Some(u) => Some(state.store.get_user(u).await?),
        None => None,
    };
    Ok(JsonOut(Me {
        token_id: caller.token_id,
        user,
        role: caller.role,
        client_id: caller.client_id,
        name: caller.name,
        agent_id: caller.agent_id,
    }))
}

// ---------------------------------------------------------------------------
// Tokens

/// A token to make.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. `ci` or `laptop`.
    #[schema(value_type = crate::openapi::Name, inline)]
    pub name: String,
    /// The user it acts for (takes their role and client). Others than admins
    /// may only name themselves, or leave it out.
    #[schema(value_type = Option<waymark_domain::UserId>)]
    pub user_id: Option<String>,
    /// The agent it acts for (admins only): 1 to 100 of `A-Z a-z 0-9 . _ -`.
    pub agent_id: Option<String>,
    /// When it stops working (RFC 3339, in the future); never when left out.
    pub expires_at: Option<String>,
    /// For a standalone admin token: `admin`, `operator` (the default) or `agent`.
    /// With a user it must be the user's role.
    pub role: Option<String>,
}

/// A token just made, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: TokenId,
    /// The secret to send as `Authorization: Bearer <token>`. It cannot be shown again.
    pub token: String,
    pub name: String,
    pub role: Role,
    pub user_id: Option<UserId>,
    pub agent_id: Option<String>,
    pub client_id: Option<ClientId>,
    pub kind: TokenKind,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: OffsetDateTime,
}

impl CreatedToken {
    fn new(t: TokenRecord, secret: String) -> Self {
        CreatedToken {
            id: t.id,
            token: secret,
            name: t.name,
            role: t.role,
            user_id: t.user_id,
            agent_id: t.agent_id,
            client_id: t.client_id,
            kind: t.kind,
            expires_at: t.expires_at,
            created_at: t.created_at,
        }
    }
}

/// Whom a token is for, once the request is understood and allowed.
enum TokenFor {
    User(UserId),
    Agent(String),
    Standalone(Role),
}

fn parse_agent_id(value: &str) -> Result<String, FieldError> {
    let ok = (1..=MAX_AGENT_ID_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            "/agent_id",
            format!("must be 1 to {MAX_AGENT_ID_CHARS} of A-Z a-z 0-9 . _ -"),
        ))
    }
}

fn parse_role(value: &str) -> Result<Role, FieldError> {
    Role::parse(value)
        .ok_or_else(|| FieldError::new("/role", "must be admin, operator, client or agent"))
}

fn parse_expiry(value: &str, now: OffsetDateTime) -> Result<OffsetDateTime, FieldError> {
    let at = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
        FieldError::new(
            "/expires_at",
            "must be an RFC 3339 time such as 2026-12-31T23:59:59Z",
        )
    })?;
    if at <= now {
        return Err(FieldError::new("/expires_at", "must be in the future"));
    }
    Ok(at)
}

/// Decides whom the token is for, and whether the caller may make it.
fn token_target(caller: &Caller, body: &CreateToken) -> Result<TokenFor, ApiError> {
    if body.user_id.is_some() && body.agent_id.is_some() {
        return Err(ApiError::invalid(FieldError::new(
            "/agent_id",
            "a token is for a user or for an agent, not both",
        )));
    }
    let user_id = body
        .user_id
        .as_deref()
        .map(|u| {
            u.parse::<UserId>()
                .map_err(|e| ApiError::invalid(FieldError::new("/user_id", e.to_string())))
        })
        .transpose()?;
    if caller.require_admin().is_ok() {
        if let Some(u) = user_id {
            return Ok(TokenFor::User(u));
        }
        if let Some(a) = &body.agent_id {
            return Ok(TokenFor::Agent(
                parse_agent_id(a).map_err(ApiError::invalid)?,
            ));
        }
        let role = match body.role.as_deref() {
            None => Role::Operator,
            Some(r) => parse_role(r).map_err(ApiError::invalid)?,
        };
        if role == Role::Client {
            return Err(ApiError::invalid(FieldError::new(
                "/role",
                "a client token must belong to a client user: pass their user_id",
            )));
        }
        return Ok(TokenFor::Standalone(role));
    }
    let Some(own) = caller.user_id.filter(|_| caller.link.is_none()) else {
        return Err(ApiError::Forbidden(
            "only a person (or an admin) can make tokens; this token belongs to nobody".into(),
        ));
    };
    if body.agent_id.is_some() {
        return Err(ApiError::Forbidden(
            "only an admin may make a token for an agent".into(),
        ));
    }
    match user_id {
        Some(u) if u != own => Err(not_found("user", u)),
        _ => Ok(TokenFor::User(own)),
    }
}

/// Make a token. Its secret is in the answer, this once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "people", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    headers: HeaderMap,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, JsonOut<CreatedToken>), ApiError> {
    let target = token_target(&caller, &body)?;
    let name = parse_name(&body.name, "/name").map_err(ApiError::invalid)?;
    let now = OffsetDateTime::now_utc();
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|e| parse_expiry(e, now))
        .transpose()
        .map_err(ApiError::invalid)?;
    let ctx = creating_context(&caller, &trace, &headers, "/api/v1/tokens", &body)?;
    // With an idempotency key, the secret is derived from it (and a server
    // key), so a replay answers the same secret without storing it.
    let secret = match &ctx.idempotency {
        Some(key) => idempotent_secret(
            &state
                .store
                .server_key(crate::auth::TOKEN_SECRET_KEY)
                .await?,
            key,
        ),
        None => generate_secret(),
    };
    let mut new = NewToken::standalone(name, Role::Operator, hash_secret(&secret));
    new.expires_at = expires_at;
    let asked_role = body
        .role
        .as_deref()
        .map(parse_role)
        .transpose()
        .map_err(ApiError::invalid)?;
    let derived = match target {
        TokenFor::User(u) => {
            let user = match state.store.get_user(u).await {
                Ok(user) => user,
                Err(waymark_store::StoreError::NotFound { .. }) => {
                    return Err(not_found("user", u));
                }
                Err(e) => return Err(e.into()),
            };
            new.user_id = Some(user.id);
            new.client_id = user.client_id;
            Some(user.role)
        }
        TokenFor::Agent(a) => {
            new.agent_id = Some(a);
            Some(Role::Agent)
        }
        TokenFor::Standalone(role) => {
            new.role = role;
            None
        }
    };
    if let Some(role) = derived {
        if asked_role.is_some_and(|r| r != role) {
            return Err(ApiError::invalid(FieldError::new(
                "/role",
                format!("this token acts as {}; leave role out", role.as_str()),
            )));
        }
        new.role = role;
    }
    let token = state.store.create_token(new, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        JsonOut(CreatedToken::new(token, secret)),
    ))
}

/// Filters of the token list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TokenQuery {
    /// Only this user's tokens (admins; everyone else sees only their own).
    #[param(value_type = waymark_domain::UserId, required = false)]
    pub user_id: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// List tokens, newest first, never their secrets. Admins see all; everyone
/// else their own.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "people", params(TokenQuery),
    responses((status = 200, body = Page<TokenInfo>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<TokenQuery>,
) -> Result<JsonOut<Page<TokenInfo>>, ApiError> {
    let asked = q
        .user_id
        .as_deref()
        .map(|u| query_id::<UserId>("user_id", u))
        .transpose()?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let user = if caller.require_admin().is_ok() {
        asked
    } else {
        let Some(own) = caller.user_id.filter(|_| caller.link.is_none()) else {
            return Err(ApiError::Forbidden(
                "only a person (or an admin) can list tokens; this token belongs to nobody".into(),
            ));
        };
        if asked.is_some_and(|a| a != own) {
            return Ok(JsonOut(Page {
                items: vec![],
                next_cursor: None,
            }));
        }
        Some(own)
    };
    Ok(JsonOut(state.store.list_tokens(user, page).await?))
}

/// Revoke a token, at once. Admins may revoke any; everyone else their own.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "people",
    params(("id" = String, Path, description = "A token id (tok_...)")),
    responses((status = 200, body = TokenInfo), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
    Path(id): Path<String>,
) -> Result<JsonOut<TokenInfo>, ApiError> {
    let id: TokenId = path_id(&id)?;
    if caller.require_admin().is_err() {
        let token = state.store.get_token(id).await?;
        let own = caller.link.is_none()
            && (caller.token_id == Some(id)
                || (token.user_id.is_some() && token.user_id == caller.user_id));
        if !own {
            return Err(not_found("token", id));
        }
    }
    let ctx = write_context(&caller, &trace)?;
    let token = state.store.revoke_token(id, &ctx).await?;
    Ok(JsonOut(TokenInfo::from(&token)))
}

// ---------------------------------------------------------------------------
// Sessions

/// An email and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

/// A web session: its token (also set as the `waymark_session` cookie).
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub expires_at: OffsetDateTime,
    pub user: User,
}

/// Sign in with an email and password (no token needed). Answers a session
/// token, also set as an HttpOnly cookie, good for 12 hours. After 5 failures
/// for an email within 15 minutes, or 30 from one source address, further
/// attempts are refused (429) until the oldest leaves the window; a locked
/// account can still sign in with a link mailed from the sign-in page.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "people", request_body = SignIn,
    responses((status = 201, body = Session,
            headers(("Set-Cookie" = String, description = "waymark_session=<token>; HttpOnly; SameSite=Lax; Path=/; Max-Age=43200"))),
        (status = 401, body = Problem), (status = 429, body = Problem)),
    security(()))]
pub async fn sign_in(
    State(state): State<AppState>,
    Extension(trace): Extension<TraceId>,
    peer: Option<Extension<axum::extract::ConnectInfo<crate::listener::Peer>>>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let source = peer.map(|Extension(c)| c.0.0.ip());
    let (secret, session) =
        start_session(&state, &body.email, body.password, source, &trace).await?;
    let cookie = session_cookie(&state, &secret, SESSION_LIFETIME.whole_seconds())?;
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        JsonOut(session),
    )
        .into_response())
}

/// The key failures from one source address are counted under (no email
/// has a space, so it never meets one).
pub fn address_key(ip: std::net::IpAddr) -> String {
    format!("addr {ip}")
}

/// Refuses (429) a source address over its limit of failures.
async fn check_address(
    state: &AppState,
    source: Option<std::net::IpAddr>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let Some(ip) = source else { return Ok(()) };
    let key = address_key(ip);
    if state
        .store
        .login_failures_since(&key, now - FAILURE_WINDOW)
        .await?
        >= MAX_ADDRESS_FAILURES
    {
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "too many failed sign-ins from this address; try again later (at most {MAX_ADDRESS_FAILURES} per {} minutes)",
                FAILURE_WINDOW.whole_minutes()
            ),
            retry_after: retry_after_key(state, &key, MAX_ADDRESS_FAILURES, now).await?,
        });
    }
    Ok(())
}

/// Checks an email and password (within the failure limits, per account and
/// per source address) and opens a web session: its secret and what it is.
/// The API's sign-in and the sign-in page both come here.
pub async fn start_session(
    state: &AppState,
    email: &str,
    password: String,
    source: Option<std::net::IpAddr>,
    trace: &TraceId,
) -> Result<(String, Session), ApiError> {
    let email = email.trim().to_lowercase();
    let now = OffsetDateTime::now_utc();
    let since = now - FAILURE_WINDOW;
    check_address(state, source, now).await?;
    if state.store.login_failures_since(&email, since).await? >= MAX_FAILURES {
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "too many failed sign-ins for this email; try again later (at most {MAX_FAILURES} per {} minutes), or ask for a sign-in link by mail",
                FAILURE_WINDOW.whole_minutes()
            ),
            retry_after: retry_after(state, &email, now).await?,
        });
    }
    let found = if email.len() <= MAX_EMAIL_LEN {
        state.store.user_credentials(&email).await?
    } else {
        None
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, None),
    };
    let verified = verify_password(password, hash).await?;
    let Some(user) = user.filter(|_| verified) else {
        if email.len() <= MAX_EMAIL_LEN {
            state.store.record_login_failure(&email, since).await?;
        }
        if let Some(ip) = source {
            state
                .store
                .record_login_failure(&address_key(ip), since)
                .await?;
        }
        return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
    };
    state.store.clear_login_failures(&email).await?;
    open_session(state, user, trace).await
}

/// A new web session for `user`: its secret and what it is.
pub async fn open_session(
    state: &AppState,
    user: User,
    trace: &TraceId,
) -> Result<(String, Session), ApiError> {
    let secret = generate_secret();
    let expires_at = OffsetDateTime::now_utc() + SESSION_LIFETIME;
    let mut new = NewToken::standalone("web session", user.role, hash_secret(&secret));
    new.kind = TokenKind::Session;
    new.expires_at = Some(expires_at);
    new.user_id = Some(user.id);
    new.client_id = user.client_id;
    let mut ctx = WriteContext::new(user.id.to_string());
    ctx.actor_name = Some(format!("{} <{}>", user.name, user.email));
    ctx.trace_id = Some(trace.0.clone());
    state.store.create_token(new, &ctx).await?;
    Ok((
        secret.clone(),
        Session {
            token: secret,
            expires_at,
            user,
        },
    ))
}

/// Sends a one-time sign-in link to `email` when it belongs to someone (the
/// answer is the same either way): a token row of the sign-in kind whose
/// `token.created` event the mail delivery turns into the mail. At most
/// [`MAX_LINKS`] per email and within the source address's limit.
pub async fn request_sign_in_link(
    state: &AppState,
    email: &str,
    source: Option<std::net::IpAddr>,
    trace: &TraceId,
) -> Result<(), ApiError> {
    let email = email.trim().to_lowercase();
    let now = OffsetDateTime::now_utc();
    let since = now - FAILURE_WINDOW;
    check_address(state, source, now).await?;
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || !email.contains('@') {
        return Err(ApiError::invalid(FieldError::new(
            "/email",
            "must be an email address such as ana@client.example",
        )));
    }
    let key = format!("link {email}");
    if state.store.login_failures_since(&key, since).await? >= MAX_LINKS {
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "a sign-in link was sent to this address {MAX_LINKS} times in {} minutes; use the last one or try again later",
                FAILURE_WINDOW.whole_minutes()
            ),
            retry_after: retry_after_key(state, &key, MAX_LINKS, now).await?,
        });
    }
    state.store.record_login_failure(&key, since).await?;
    if let Some(ip) = source {
        state
            .store
            .record_login_failure(&address_key(ip), since)
            .await?;
    }
    let Some((user, _)) = state.store.user_credentials(&email).await? else {
        return Ok(());
    };
    let mut new = NewToken::standalone("sign-in link", user.role, hash_secret(&generate_secret()));
    new.kind = TokenKind::SignInLink;
    new.expires_at = Some(now + waymark_domain::signin::LIFETIME);
    new.user_id = Some(user.id);
    new.client_id = user.client_id;
    let mut ctx = WriteContext::new(user.id.to_string());
    ctx.actor_name = Some(format!("{} <{}>", user.name, user.email));
    ctx.trace_id = Some(trace.0.clone());
    state.store.create_token(new, &ctx).await?;
    Ok(())
}

/// Redeems a mailed sign-in link for a session: `None` when it is not a
/// link, expired, or used already (single use, even under races). It works
/// for an account locked by failed passwords, and clears those failures.
pub async fn redeem_sign_in_link(
    state: &AppState,
    link: &str,
    trace: &TraceId,
) -> Result<Option<(String, Session)>, ApiError> {
    let Some(token) = usable_link(state, link).await? else {
        return Ok(None);
    };
    let Some(user_id) = token.user_id else {
        return Ok(None);
    };
    let user = state.store.get_user(user_id).await?;
    let mut ctx = WriteContext::new(user.id.to_string());
    ctx.actor_name = Some(format!("{} <{}>", user.name, user.email));
    ctx.trace_id = Some(trace.0.clone());
    if !state.store.redeem_sign_in_link(token.id, &ctx).await? {
        return Ok(None);
    }
    state.store.clear_login_failures(&user.email).await?;
    open_session(state, user, trace).await.map(Some)
}

/// The live sign-in token a link names, if any.
pub async fn usable_link(state: &AppState, link: &str) -> Result<Option<TokenRecord>, ApiError> {
    let now = OffsetDateTime::now_utc();
    if link.len() > 200 {
        return Ok(None);
    }
    let key = state.link_key().await?;
    let Some(id) = waymark_domain::signin::verify(&key, link, now) else {
        return Ok(None);
    };
    match state.store.get_token(id).await {
        Ok(t) if t.kind == TokenKind::SignInLink && t.is_live(now) => Ok(Some(t)),
        Ok(_) | Err(waymark_store::StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sign out: revokes the caller's own token (bearer or cookie) and clears the cookie.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "people",
    responses((status = 204, description = "Signed out; the token no longer works",
        headers(("Set-Cookie" = String, description = "Clears waymark_session")))),
    security(("bearer" = [])))]
pub async fn sign_out(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(trace): Extension<TraceId>,
) -> Result<Response, ApiError> {
    let Some(id) = caller.token_id else {
        return Err(ApiError::Forbidden(
            "this request came without a token of its own to revoke".into(),
        ));
    };
    let ctx = write_context(&caller, &trace)?;
    state.store.revoke_token(id, &ctx).await?;
    let cookie = session_cookie(&state, "", 0)?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// The session cookie: HttpOnly, SameSite=Lax, and Secure when people reach
/// the server over https.
pub fn session_cookie(
    state: &AppState,
    value: &str,
    max_age: i64,
) -> Result<HeaderValue, ApiError> {
    let secure = if state.http.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| ApiError::Internal(Box::new(e)))
}

/// Seconds until the failures of `email` fall under [`MAX_FAILURES`] in the
/// window, i.e. until the oldest that matters leaves it: the smallest `t`
/// (at least 1) for which fewer than the limit happened since `now + t - window`.
/// The store only counts, so this searches by halving (about ten counts, and
/// only for refused attempts).
async fn retry_after(state: &AppState, email: &str, now: OffsetDateTime) -> Result<u64, ApiError> {
    retry_after_key(state, email, MAX_FAILURES, now).await
}

/// [`retry_after`] for any key and limit.
async fn retry_after_key(
    state: &AppState,
    email: &str,
    limit: i64,
    now: OffsetDateTime,
) -> Result<u64, ApiError> {
    let start = now - FAILURE_WINDOW;
    let (mut lo, mut hi) = (1_i64, FAILURE_WINDOW.whole_seconds());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let n = state
            .store
            .login_failures_since(email, start + Duration::seconds(mid))
            .await?;
        if n < limit {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo.max(1).unsigned_abs())
}

/// Hashes a password as an Argon2id PHC string, off the async threads.
async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))?
    .map_err(|e| ApiError::Internal(format!("cannot hash a password: {e}").into()))
}

/// Whether `password` matches `hash`. Without a hash (no such user, or one
/// without a password) it is checked against [`DUMMY_HASH`] all the same and
/// answers false, so both cases take as long.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), phc)
            .is_ok();
        matches && real
    })
    .await
    .map_err(|e| ApiError::Internal(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let p = argon2::Params::default();
        let expected = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        );
        assert!(
            DUMMY_HASH.starts_with(&expected),
            "{DUMMY_HASH} vs {expected}"
        );
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            parse_email("  Ana@Example.COM ").unwrap(),
            "ana@example.com"
        );
        for bad in ["", "ana", "@example.com", "ana@", "a@b@c", "a b@c.d"] {
            assert_eq!(parse_email(bad).unwrap_err().pointer, "/email", "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(parse_email(&long).is_err());
    }

    #[test]
    fn agent_ids_are_plain() {
        assert!(parse_agent_id("writer-1.v2_x").is_ok());
        assert!(parse_agent_id("").is_err());
        assert!(parse_agent_id("a b").is_err());
        assert!(parse_agent_id(&"a".repeat(101)).is_err());
    }
}
