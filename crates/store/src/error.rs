use waymark_domain::FieldError;
use waymark_domain::gating::Gating;
use waymark_domain::lifecycle::{NotEditable, TransitionRefused};

/// Why a store operation did not happen. Every variant but `Database` and
/// `Migrate` means nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No record of this kind has this id.
    #[error("no {kind} {id}")]
    NotFound { kind: &'static str, id: String },
    /// The artifact's latest version is not the one the writer read.
    #[error("the artifact is at version {current}, not {expected}")]
    VersionMismatch { expected: i64, current: i64 },
    /// The lifecycle does not allow this transition.
    #[error(transparent)]
    Transition(#[from] TransitionRefused),
    /// The artifact's status does not allow writing content.
    #[error(transparent)]
    NotEditable(#[from] NotEditable),
    /// A field refers to something that does not fit (another client's
    /// engagement, a source version that does not exist...).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Pipeline gating refuses the type: an upstream type is missing or unapproved.
    #[error("{} is locked: {}", .0.artifact_type, .0.reasons.join(", "))]
    Gated(Gating),
    /// The review rules refuse an approval or a rejection.
    #[error(transparent)]
    Review(#[from] waymark_domain::review::ReviewError),
    /// The record's state does not allow this (a stable `code` says why).
    #[error("{detail}")]
    Refused { code: &'static str, detail: String },
    /// An idempotency key was reused for a different request.
    #[error("idempotency key `{key}` was already used for a different request")]
    IdempotencyMismatch { key: String },
    /// Two writers raced for the same unique thing; retrying may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached right now (pool exhausted, connection
    /// lost); retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(
                    "another request wrote the same record at the same time; retry".into(),
                );
            }
            // PostgreSQL deadlock or serialization failure: the transaction was
            // rolled back whole; running it again can succeed.
            if matches!(db.code().as_deref(), Some("40P01") | Some("40001")) {
                return StoreError::Conflict(
                    "concurrent changes to the same artifacts collided; retry".into(),
                );
            }
        }
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e)
            }
            e => StoreError::Database(e),
        }
    }
}
