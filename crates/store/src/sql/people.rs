//! [`PeopleStore`] on SQL: users, tokens, failed sign-ins, shared server keys.

use async_trait::async_trait;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::{ClientId, FieldError, TokenId, UserId};

use super::*;
use crate::people::{NewUser, PeopleStore, User, UserFilter};

#[derive(FromRow)]
pub(crate) struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    secret_hash: Vec<u8>,
    user_id: Option<Uuid>,
    agent_id: Option<String>,
    client_id: Option<Uuid>,
    kind: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, secret_hash, user_id, agent_id, client_id, \
     kind, created_at, expires_at, revoked_at";

/// Inserts a token row inside the transaction, with its audit record.
pub(crate) async fn insert_token(
    tx: &mut Tx,
    id: TokenId,
    token: &NewToken,
    ctx: &WriteContext,
    at: OffsetDateTime,
) -> Result<()> {
    sql(
        "INSERT INTO tokens (id, name, secret_hash, role, user_id, agent_id, client_id, kind, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.uuid())
    .bind(&token.name)
    .bind(&token.secret_hash)
    .bind(token.role.as_str())
    .bind(token.user_id.map(|u| u.uuid()))
    .bind(&token.agent_id)
    .bind(token.client_id.map(|c| c.uuid()))
    .bind(token.kind.as_str())
    .bind(at)
    .bind(token.expires_at)
    .execute(tx)
    .await?;
    let entry = LogEntry::new("token.create", token.client_id, id).event(
        "token.created",
        Audience::Admin,
        serde_json::json!({
            "token_id": id.to_string(),
            "name": token.name,
            "role": token.role.as_str(),
            "kind": token.kind.as_str(),
            "user_id": token.user_id.map(|u| u.to_string()),
            "agent_id": token.agent_id,
            "expires_at": token.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        }),
    );
    append_log(tx, ctx, at, entry).await
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self> {
        Ok(TokenRecord {
            id: TokenId::from_uuid(r.id),
            name: r.name,
            role: Role::parse(&r.role).ok_or_else(|| decode_error("role", &r.role))?,
            secret_hash: r.secret_hash,
            user_id: r.user_id.map(UserId::from_uuid),
            agent_id: r.agent_id,
            client_id: r.client_id.map(ClientId::from_uuid),
            kind: TokenKind::parse(&r.kind).ok_or_else(|| decode_error("token kind", &r.kind))?,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    client_id: Option<Uuid>,
    password_hash: Option<String>,
    created_at: OffsetDateTime,
}

const USER_COLUMNS: &str = "id, email, name, role, client_id, password_hash, created_at";

impl UserRow {
    fn into_user(self) -> Result<(User, Option<String>)> {
        let user = User {
            id: UserId::from_uuid(self.id),
            email: self.email,
            name: self.name,
            role: Role::parse(&self.role).ok_or_else(|| decode_error("role", &self.role))?,
            client_id: self.client_id.map(ClientId::from_uuid),
            has_password: self.password_hash.is_some(),
            created_at: self.created_at,
        };
        Ok((user, self.password_hash))
    }
}

#[async_trait]
impl PeopleStore for SqlStore {
    async fn create_user(&self, new: NewUser, ctx: &WriteContext) -> Result<User> {
        let id = UserId::new();
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "user").await? {
                drop(tx);
                return self.get_user(UserId::from_uuid(existing)).await;
            }
            idempotency::record(&mut tx, ctx, "user", id.uuid(), at).await?;
            if let Some(c) = new.client_id {
                require_client(&mut tx, c).await?;
            }
            let taken: Option<(Uuid,)> = sql("SELECT id FROM users WHERE email = $1")
                .bind(&new.email)
                .fetch_optional(&mut tx)
                .await?;
            if taken.is_some() {
                return Err(FieldError::new(
                    "/email",
                    format!("{} already has an account", new.email),
                )
                .into());
            }
            sql(
                "INSERT INTO users (id, email, name, role, client_id, password_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id.uuid())
            .bind(&new.email)
            .bind(&new.name)
            .bind(new.role.as_str())
            .bind(new.client_id.map(|c| c.uuid()))
            .bind(&new.password_hash)
            .bind(at)
            .execute(&mut tx)
            .await?;
            let entry = LogEntry::new("user.create", new.client_id, id).event(
                "user.created",
                Audience::Admin,
                serde_json::json!({
                    "user_id": id.to_string(),
                    "email": new.email,
                    "role": new.role.as_str(),
                    "client_id": new.client_id.map(|c| c.to_string()),
                }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
        };
        self.get_user(id).await
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let row: Option<UserRow> = sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.uuid())
            .fetch_optional(&mut self.db.reader())
            .await?;
        Ok(row.ok_or_else(|| not_found("user", id))?.into_user()?.0)
    }

    async fn list_users(&self, filter: UserFilter, page: PageRequest) -> Result<Page<User>> {
        let cursor = id_cursor::<UserId>(&page)?;
        let rows: Vec<UserRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!("SELECT {USER_COLUMNS} FROM users WHERE 1 = 1"));
            if let Some(c) = filter.client_id {
                qb.push(" AND client_id = ").push_bind(c.uuid());
            }
            if let Some(r) = filter.role {
                qb.push(" AND role = ").push_bind(r.as_str());
            }
            if let Some(c) = cursor {
                qb.push(" AND id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
        let users = rows
            .into_iter()
            .map(|r| r.into_user().map(|u| u.0))
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(users, &page, |u| u.id.to_string()))
    }

    async fn user_credentials(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let row: Option<UserRow> = sql(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND disabled_at IS NULL"
        ))
        .bind(email)
        .fetch_optional(&mut self.db.reader())
        .await?;
        row.map(UserRow::into_user).transpose()
    }

    async fn count_client_users(&self, client_id: ClientId) -> Result<i64> {
        let n: (i64,) = sql(
            "SELECT COUNT(*) FROM users WHERE client_id = $1 AND role = 'client' \
                 AND disabled_at IS NULL",
        )
        .bind(client_id.uuid())
        .fetch_one(&mut self.db.reader())
        .await?;
        Ok(n.0)
    }

    async fn create_token(&self, token: NewToken, ctx: &WriteContext) -> Result<TokenRecord> {
        let id = TokenId::new();
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            if let Some(existing) = idempotency::replay(&mut tx, ctx, "token").await? {
                drop(tx);
                return self.get_token(TokenId::from_uuid(existing)).await;
            }
            insert_token(&mut tx, id, &token, ctx, at).await?;
            idempotency::record(&mut tx, ctx, "token", id.uuid(), at).await?;
            tx.commit().await?;
        };
        self.get_token(id).await
    }

    async fn get_token(&self, id: TokenId) -> Result<TokenRecord> {
        let row: Option<TokenRow> =
            sql(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
                .bind(id.uuid())
                .fetch_optional(&mut self.db.reader())
                .await?;
        row.ok_or_else(|| not_found("token", id))?.try_into()
    }

    async fn list_tokens(
        &self,
        user_id: Option<UserId>,
        page: PageRequest,
    ) -> Result<Page<TokenInfo>> {
        let cursor = id_cursor::<TokenId>(&page)?;
        let rows: Vec<TokenRow> = {
            let p = &mut self.db.reader();
            let mut qb = sql(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE 1 = 1"));
            if let Some(u) = user_id {
                qb.push(" AND user_id = ").push_bind(u.uuid());
            }
            if let Some(c) = cursor {
                qb.push(" AND id < ").push_bind(c.uuid());
            }
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(limit_plus_one(&page));
            qb.fetch_all(p).await?
        };
        let tokens = rows
            .into_iter()
            .map(|r| TokenRecord::try_from(r).map(|t| TokenInfo::from(&t)))
            .collect::<Result<Vec<_>>>()?;
        Ok(paginate(tokens, &page, |t| t.id.to_string()))
    }

    async fn revoke_token(&self, id: TokenId, ctx: &WriteContext) -> Result<TokenRecord> {
        let at = now();
        {
            let mut tx = self.db.begin().await?;
            let row: Option<TokenRow> = sql(format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1{}",
                self.lock_clause()
            ))
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?;
            let token: TokenRecord = row.ok_or_else(|| not_found("token", id))?.try_into()?;
            if token.revoked_at.is_none() {
                sql("UPDATE tokens SET revoked_at = $2 WHERE id = $1")
                    .bind(id.uuid())
                    .bind(at)
                    .execute(&mut tx)
                    .await?;
                let entry = LogEntry::new("token.revoke", token.client_id, id).event(
                    "token.revoked",
                    Audience::Admin,
                    serde_json::json!({ "token_id": id.to_string(), "name": token.name }),
                );
                append_log(&mut tx, ctx, at, entry).await?;
                tx.commit().await?;
            }
        };
        self.get_token(id).await
    }

    async fn redeem_sign_in_link(&self, id: TokenId, ctx: &WriteContext) -> Result<bool> {
        let at = now();
        let mut tx = self.db.begin().await?;
        let used = sql(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND kind = 'sign_in_link' \
             AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(id.uuid())
        .bind(at)
        .execute(&mut tx)
        .await?;
        if used != 1 {
            return Ok(false);
        }
        let entry = LogEntry::new("token.redeem", None, id);
        append_log(&mut tx, ctx, at, entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_login_failure(&self, email: &str, since: OffsetDateTime) -> Result<i64> {
        let at = now();
        let n: (i64,) = {
            let mut tx = self.db.begin().await?;
            sql("INSERT INTO login_failures (email, at) VALUES ($1, $2)")
                .bind(email)
                .bind(at)
                .execute(&mut tx)
                .await?;
            // Old failures no longer count; keep the table small.
            sql("DELETE FROM login_failures WHERE email = $1 AND at < $2")
                .bind(email)
                .bind(since)
                .execute(&mut tx)
                .await?;
            let n = sql("SELECT COUNT(*) FROM login_failures WHERE email = $1")
                .bind(email)
                .fetch_one(&mut tx)
                .await?;
            tx.commit().await?;
            n
        };
        Ok(n.0)
    }

    async fn login_failures_since(&self, email: &str, since: OffsetDateTime) -> Result<i64> {
        let n: (i64,) = sql("SELECT COUNT(*) FROM login_failures WHERE email = $1 AND at >= $2")
            .bind(email)
            .bind(since)
            .fetch_one(&mut self.db.reader())
            .await?;
        Ok(n.0)
    }

    async fn clear_login_failures(&self, email: &str) -> Result<()> {
        sql("DELETE FROM login_failures WHERE email = $1")
            .bind(email)
            .execute(&mut self.db.writer())
            .await?;
        Ok(())
    }

    async fn server_key(&self, name: &str) -> Result<Vec<u8>> {
        let found: Option<(Vec<u8>,)> = sql("SELECT value FROM server_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut self.db.reader())
            .await?;
        if let Some((k,)) = found {
            return Ok(k);
        }
        let key: [u8; 32] = rand::random();
        {
            let p = &mut self.db.writer();
            // Two servers starting together: the first insert wins, both read it.
            sql(
                "INSERT INTO server_keys (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(key.as_slice())
            .bind(now())
            .execute(p)
            .await?;
            let (k,): (Vec<u8>,) = sql("SELECT value FROM server_keys WHERE name = $1")
                .bind(name)
                .fetch_one(p)
                .await?;
            Ok(k)
        }
    }
}

pub(crate) async fn token_by_hash(
    store: &SqlStore,
    secret_hash: &[u8],
) -> Result<Option<TokenRecord>> {
    let row: Option<TokenRow> = sql(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"
    ))
    .bind(secret_hash)
    .fetch_optional(&mut store.db.reader())
    .await?;
    row.map(TokenRecord::try_from).transpose()
}

pub(crate) async fn replace_named_token(store: &SqlStore, token: NewToken) -> Result<bool> {
    let at = now();
    {
        let mut tx = store.db.begin().await?;
        let live: Vec<(Vec<u8>,)> =
            sql("SELECT secret_hash FROM tokens WHERE name = $1 AND revoked_at IS NULL")
                .bind(&token.name)
                .fetch_all(&mut tx)
                .await?;
        if live.iter().any(|(h,)| *h == token.secret_hash) {
            return Ok(false);
        }
        sql("UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
            .bind(&token.name)
            .bind(at)
            .execute(&mut tx)
            .await?;
        // The same secret used again after a rotation: the old row goes.
        sql("DELETE FROM tokens WHERE name = $1 AND secret_hash = $2")
            .bind(&token.name)
            .bind(&token.secret_hash)
            .execute(&mut tx)
            .await?;
        let ctx = WriteContext::new("system");
        let id = TokenId::new();
        insert_token(&mut tx, id, &token, &ctx, at).await?;
        tx.commit().await?;
    };
    Ok(true)
}

pub(crate) async fn live_token_named(store: &SqlStore, name: &str) -> Result<bool> {
    let rows: Vec<(Option<OffsetDateTime>,)> =
        sql("SELECT expires_at FROM tokens WHERE name = $1 AND revoked_at IS NULL")
            .bind(name)
            .fetch_all(&mut store.db.reader())
            .await?;
    let at = now();
    Ok(rows.iter().any(|(e,)| e.is_none_or(|e| e > at)))
}
