//! Idempotency keys, recorded in the transaction of the create they belong
//! to and scoped to the caller: the same key and the same request answer the
//! record first created; the same key with another request is refused.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Tx, sql};
use crate::{Result, StoreError, WriteContext};

/// Looks up the caller's idempotency key inside the transaction: `Some(id)`
/// when the same request already created a record of `kind`, an error when
/// the key was used for another request.
pub(crate) async fn replay(tx: &mut Tx, ctx: &WriteContext, kind: &str) -> Result<Option<Uuid>> {
    Ok(replay_of(tx, ctx, &[kind]).await?.map(|r| r.resource_id))
}

/// What an earlier request with the same key did.
pub(crate) struct Replay {
    pub(crate) resource_id: Uuid,
    /// Which of the kinds asked for it was (a create can end in more than one
    /// way: an agent registered or updated).
    pub(crate) kind: String,
    pub(crate) at: OffsetDateTime,
}

/// [`replay`] for a request that may have ended as any of `kinds`.
pub(crate) async fn replay_of(
    tx: &mut Tx,
    ctx: &WriteContext,
    kinds: &[&str],
) -> Result<Option<Replay>> {
    let Some(k) = &ctx.idempotency else {
        return Ok(None);
    };
    let row: Option<(String, String, Uuid, OffsetDateTime)> = sql(
        "SELECT kind, request_hash, resource_id, created_at FROM idempotency_keys \
         WHERE scope = $1 AND key = $2",
    )
    .bind(&k.scope)
    .bind(&k.key)
    .fetch_optional(tx)
    .await?;
    match row {
        Some((found, hash, _, _)) if !kinds.contains(&found.as_str()) || hash != k.request_hash => {
            Err(StoreError::IdempotencyMismatch { key: k.key.clone() })
        }
        Some((kind, _, resource_id, at)) => Ok(Some(Replay {
            resource_id,
            kind,
            at,
        })),
        None => Ok(None),
    }
}

/// Records the caller's idempotency key for the record of `kind` just created.
pub(crate) async fn record(
    tx: &mut Tx,
    ctx: &WriteContext,
    kind: &str,
    id: Uuid,
    at: OffsetDateTime,
) -> Result<()> {
    if let Some(k) = &ctx.idempotency {
        sql("INSERT INTO idempotency_keys (scope, key, kind, request_hash, resource_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&k.scope)
        .bind(&k.key)
        .bind(kind)
        .bind(&k.request_hash)
        .bind(id)
        .bind(at)
        .execute(tx)
        .await?;
    }
    Ok(())
}
