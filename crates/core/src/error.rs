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
    /// The server's disk is full: nothing was written; deletes still work.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a user reads when the server's disk is full.
const FULL: &str = "the server's disk is full, so nothing was stored; delete objects you no \
                    longer need (`accelhub object rm`) or ask the operator for space, then retry";

impl CoreError {
    /// The server's disk is full (507), told as a user can act on it.
    pub fn disk_full() -> CoreError {
        CoreError::InsufficientStorage(FULL.into())
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => CoreError::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => CoreError::NotFound(format!("{what} not found")),
            StoreError::Full(why) => {
                tracing::warn!("disk full: {why}");
                CoreError::disk_full()
            }
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<ObjectError> for CoreError {
    fn from(e: ObjectError) -> Self {
        if e.is_full() {
            tracing::warn!("disk full: {e}");
            return CoreError::disk_full();
        }
        match e {
            ObjectError::NotFound(k) => {
                CoreError::NotFound(format!("object '{}' not found", public_key(&k)))
            }
            ObjectError::InvalidKey(k) => CoreError::BadRequest(format!(
                "invalid object key '{}': use letters, digits, '.', '_', '-' and '/'",
                public_key(&k)
            )),
            ObjectError::KeyCollision(k) => CoreError::Conflict(format!(
                "object key '{}' collides with an existing key: a key cannot also be a \
                 folder of other keys ('x' and 'x/y'); choose another key or delete the other one",
                public_key(&k)
            )),
            ObjectError::TooLarge { limit } => {
                CoreError::TooLarge(format!("the data exceeds the limit of {limit} bytes"))
            }
            ObjectError::Digest { expected, actual } => CoreError::BadRequest(format!(
                "the upload was corrupted in transit: its SHA-256 is {actual} but the client \
                 announced {expected}; nothing was stored, and an object already under \
                 this key is unchanged"
            )),
            ObjectError::Upload(e) => CoreError::BadRequest(format!("upload interrupted: {e}")),
            ObjectError::Io(e) => CoreError::Internal(format!("object storage: {e}")),
        }
    }
}

/// An object-store key as its owner knows it: an account's key without
/// the `accounts/N/` prefix of the storage layout; a package file not at
/// all (its storage key is the platform's, and the IP's vendor's secret).
fn public_key(k: &str) -> String {
    if let Some(rest) = k.strip_prefix("accounts/") {
        if let Some((id, key)) = rest.split_once('/') {
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                return key.to_string();
            }
        }
    }
    if k.starts_with("packages/") {
        return "(a file of a stored package)".to_string();
    }
    k.to_string()
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, defect 9: messages showed storage keys such as
    /// `accounts/4/...` and `packages/pkg_...`.
    #[test]
    fn object_errors_name_keys_as_their_owner_knows_them() {
        let e = CoreError::from(ObjectError::NotFound("accounts/4/data/reads.fq".into()));
        assert!(matches!(e, CoreError::NotFound(_)));
        assert_eq!(e.to_string(), "object 'data/reads.fq' not found");
        let e = CoreError::from(ObjectError::NotFound(
            "packages/pkg_0190abc/files/x.wasm".into(),
        ));
        assert!(!e.to_string().contains("packages/"), "{e}");
        let e = CoreError::from(ObjectError::InvalidKey("accounts/12/../x".into()));
        assert!(e.to_string().contains("'../x'"), "{e}");
        // A key that only looks like the layout is the caller's own.
        let e = CoreError::from(ObjectError::NotFound("accounts/me/x".into()));
        assert!(e.to_string().contains("'accounts/me/x'"), "{e}");
    }
}
