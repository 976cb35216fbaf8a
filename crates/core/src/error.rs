//! Errors of the control plane and how the store's and the object store's
//! errors become them: each with a message a user can act on (the API maps
//! the variants to HTTP statuses in one place).

use crate::*;

/// Errors of the control plane, each with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The call would pass the account's spending limit.
    #[error("{0}")]
    PaymentRequired(String),
    /// The plan's quota of calls is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The IP itself failed the call.
    #[error("{message}")]
    CallFailed {
        call_id: String,
        kind: String,
        message: String,
        exit_code: Option<i32>,
        log: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => CoreError::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => CoreError::NotFound(format!("{what} not found")),
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<ObjectError> for CoreError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound(k) => CoreError::NotFound(format!("object '{k}' not found")),
            ObjectError::InvalidKey(k) => CoreError::BadRequest(format!(
                "invalid object key '{k}': use letters, digits, '.', '_', '-' and '/'"
            )),
            ObjectError::TooLarge { limit } => {
                CoreError::TooLarge(format!("the data exceeds the limit of {limit} bytes"))
            }
            ObjectError::Upload(e) => CoreError::BadRequest(format!("upload interrupted: {e}")),
            ObjectError::Io(e) => CoreError::Internal(format!("object storage: {e}")),
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
