//! People and their tokens: [`PeopleStore`] and its records.

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use waymark_domain::{ClientId, TokenId, UserId};

use crate::{NewToken, Page, PageRequest, Result, Role, TokenInfo, TokenRecord, WriteContext};

/// A person who signs in: an admin, an operator or a client contact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// The client a client user belongs to.
    pub client_id: Option<ClientId>,
    /// Whether they can sign in to the web UI with a password.
    pub has_password: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user to create (already validated; the password already hashed).
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Lowercased.
    pub email: String,
    pub name: String,
    pub role: Role,
    pub client_id: Option<ClientId>,
    /// Argon2id PHC string.
    pub password_hash: Option<String>,
}

/// Filters of the user list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub client_id: Option<ClientId>,
    pub role: Option<Role>,
}

/// People and tokens.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Creates a user; an email already taken is [`crate::StoreError::Invalid`] at `/email`.
    async fn create_user(&self, new: NewUser, ctx: &WriteContext) -> Result<User>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    async fn list_users(&self, filter: UserFilter, page: PageRequest) -> Result<Page<User>>;
    /// A user and their password hash, by email (lowercased).
    async fn user_credentials(&self, email: &str) -> Result<Option<(User, Option<String>)>>;
    /// How many client users the client has: the eligible approvers.
    async fn count_client_users(&self, client_id: ClientId) -> Result<i64>;

    /// Stores a new token (its secret already hashed), recorded in the audit log.
    async fn create_token(&self, token: NewToken, ctx: &WriteContext) -> Result<TokenRecord>;
    async fn get_token(&self, id: TokenId) -> Result<TokenRecord>;
    /// Tokens, newest first; only those of `user_id` when given.
    async fn list_tokens(
        &self,
        user_id: Option<UserId>,
        page: PageRequest,
    ) -> Result<Page<TokenInfo>>;
    /// Revokes a token at once; revoking a revoked token changes nothing.
    async fn revoke_token(&self, id: TokenId, ctx: &WriteContext) -> Result<TokenRecord>;
    /// Uses up a sign-in link: `true` when this call did (it was live and of
    /// that kind), `false` when it was used, revoked, expired, or is no such
    /// link. Two concurrent calls never both get `true`.
    async fn redeem_sign_in_link(&self, id: TokenId, ctx: &WriteContext) -> Result<bool>;

    /// Records a failed sign-in for `email`, and answers how many happened since `since`.
    async fn record_login_failure(&self, email: &str, since: OffsetDateTime) -> Result<i64>;
    /// How many failed sign-ins for `email` happened since `since`.
    async fn login_failures_since(&self, email: &str, since: OffsetDateTime) -> Result<i64>;
    /// Forgets the failed sign-ins of `email` (after a successful one).
    async fn clear_login_failures(&self, email: &str) -> Result<()>;

    /// A secret key the servers share (made at first use): `name` names its purpose.
    async fn server_key(&self, name: &str) -> Result<Vec<u8>>;
}
