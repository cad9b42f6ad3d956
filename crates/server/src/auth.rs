//! Bearer tokens: how they are made, stored (hashed) and checked, and the admin
//! token a fresh installation starts with.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use waymark_domain::TokenId;
use waymark_store::{NewToken, Role, Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// The caller a request acts as, placed in the request's extensions by
/// [`require_token`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: TokenId,
    pub role: Role,
}

impl Caller {
    /// The actor recorded with the caller's writes.
    pub fn actor(&self) -> String {
        self.token_id.to_string()
    }

    /// Refuses (403) a caller that is not an admin.
    pub fn require_admin(&self) -> Result<(), crate::error::ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden(
                "only an admin may do this; ask an admin for an admin token".into(),
            ))
        }
    }
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

/// Middleware: refuses requests without a live bearer token (401), otherwise
/// records the [`Caller`] in the request's extensions.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(secret) = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) else {
        return Err(ApiError::Unauthorized(
            "send `Authorization: Bearer <token>`; the admin token is printed at first start and kept in the data folder (admin-token)".into(),
        ));
    };
    let secret = secret.trim();
    let computed = hash_secret(secret);
    let token = state.store.token_by_hash(&computed).await?;
    let caller = match token {
        // Found by its hash; compare again in constant time so no branch
        // depends on how much of a guess was right.
        Some(t)
            if bool::from(t.secret_hash.ct_eq(&computed))
                && t.is_live(OffsetDateTime::now_utc()) =>
        {
            Caller {
                token_id: t.id,
                role: t.role,
            }
        }
        _ => {
            return Err(ApiError::Unauthorized(
                "the token is unknown, revoked or expired".into(),
            ));
        }
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
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
            .replace_named_token(NewToken {
                name: ENV_ADMIN_TOKEN_NAME.into(),
                role: Role::Admin,
                secret_hash: hash_secret(secret),
                expires_at: None,
            })
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
        .replace_named_token(NewToken {
            name: GENERATED_ADMIN_TOKEN_NAME.into(),
            role: Role::Admin,
            secret_hash: hash_secret(&secret),
            expires_at: None,
        })
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
