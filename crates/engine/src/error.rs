//! What the engine's services answer when they refuse or fail. Only `server`
//! knows HTTP: it maps each variant to a status and a problem.

use serde_json::Value;
use waymark_domain::FieldError;
use waymark_store::StoreError;

/// Why an engine service did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store refused (a missing record, a state that does not allow it)
    /// or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Fields of the request, or of a template it uses, are invalid; each
    /// error carries a JSON Pointer.
    #[error("{detail}")]
    Invalid {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// The record's state does not allow this; `code` says why and `extra`
    /// carries what a caller needs to act on it (the failed checks, the
    /// events possible...).
    #[error("{detail}")]
    Refused {
        code: &'static str,
        detail: String,
        extra: serde_json::Map<String, Value>,
    },
}

impl EngineError {
    /// One invalid field.
    pub fn invalid(error: FieldError) -> Self {
        EngineError::Invalid {
            detail: format!("invalid field {}: {}", error.pointer, error.message),
            errors: vec![error],
        }
    }

    /// A refusal without further members.
    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        EngineError::Refused {
            code,
            detail: detail.into(),
            extra: Default::default(),
        }
    }
}
