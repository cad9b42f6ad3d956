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
    /// The database's disk is full (SQLite's data folder, PostgreSQL's
    /// data directory): nothing was written; writes succeed again once there
    /// is space, and reads go on meanwhile.
    #[error("the database's disk is full")]
    Full(#[source] sqlx::Error),
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
            match classify(db.code().as_deref()) {
                Some(Fault::Full) => return StoreError::Full(e),
                Some(Fault::Unavailable) => return StoreError::Unavailable(e),
                None => {}
            }
        }
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            e => StoreError::Database(e),
        }
    }
}

/// A database error that says the database cannot take writes now, rather
/// than that the statement was wrong.
#[derive(Debug, PartialEq)]
enum Fault {
    Full,
    Unavailable,
}

/// Classifies a database error code: SQLite's (extended) result codes and
/// PostgreSQL's SQLSTATEs.
fn classify(code: Option<&str>) -> Option<Fault> {
    let code = code?;
    // SQLITE_FULL (13, and any extended code of it); PostgreSQL disk_full.
    if code == "53100" || code.parse::<i32>().is_ok_and(|c| c & 0xff == 13) {
        return Some(Fault::Full);
    }
    // PostgreSQL: a connection exception (08…), the server shutting down or
    // starting up (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
    // cannot_connect_now), out of connections (53300).
    if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") {
        return Some(Fault::Unavailable);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_are_classified() {
        assert_eq!(classify(Some("13")), Some(Fault::Full));
        assert_eq!(classify(Some("53100")), Some(Fault::Full));
        assert_eq!(classify(Some("57P01")), Some(Fault::Unavailable));
        assert_eq!(classify(Some("57P03")), Some(Fault::Unavailable));
        assert_eq!(classify(Some("08006")), Some(Fault::Unavailable));
        // SQLITE_CONSTRAINT_CHECK (275), a unique violation, a syntax error.
        assert_eq!(classify(Some("275")), None);
        assert_eq!(classify(Some("23505")), None);
        assert_eq!(classify(Some("42601")), None);
        assert_eq!(classify(None), None);
    }
}
