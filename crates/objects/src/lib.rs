//! Object storage: the [`ObjectStore`] trait, its local-directory
//! implementation, and at-rest encryption of artifacts ([`Sealer`]).
//!
//! Keys are opaque `/`-separated paths chosen by the control plane; who may
//! read what is decided above this layer.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod local;
mod seal;

pub use local::LocalDirStore;
pub use seal::{write_private, SealError, Sealer};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of object bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object '{0}' not found")]
    NotFound(String),
    #[error("invalid object key '{0}'")]
    InvalidKey(String),
    /// The key is an existing key's prefix, or has one as its prefix
    /// (`x` and `x/y`): a store that lays keys out as paths cannot hold
    /// both.
    #[error("object key '{0}' collides with an existing key: one would be a folder of the other")]
    KeyCollision(String),
    #[error("object is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The content's SHA-256 is not the one the uploader announced.
    #[error("the content's SHA-256 is {actual}, not the {expected} announced")]
    Digest { expected: String, actual: String },
    #[error("upload interrupted: {0}")]
    Upload(std::io::Error),
    #[error("object storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ObjectError {
    /// Whether the store failed for want of space (a full disk or quota).
    pub fn is_full(&self) -> bool {
        matches!(self, ObjectError::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ))
    }
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// Where objects live: a local directory, an S3 bucket…
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Store a stream under `key`, atomically: a reader sees the old object,
    /// or none, until the whole stream has arrived. Fails with
    /// [`ObjectError::TooLarge`] past `max_size` bytes, and with
    /// [`ObjectError::Digest`] when `expect_sha256` is given and the content
    /// does not have it; a failed put keeps nothing of the new stream and
    /// leaves the old object exactly as it was.
    async fn put_checked(
        &self,
        key: &str,
        stream: ByteStream,
        max_size: u64,
        expect_sha256: Option<&str>,
    ) -> Result<PutResult, ObjectError>;

    /// [`ObjectStore::put_checked`] with no digest to match.
    async fn put_stream(
        &self,
        key: &str,
        stream: ByteStream,
        max_size: u64,
    ) -> Result<PutResult, ObjectError> {
        self.put_checked(key, stream, max_size, None).await
    }

    /// Store bytes under `key`.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<PutResult, ObjectError> {
        let len = bytes.len() as u64;
        let stream = futures::stream::once(async move { Ok(bytes) });
        self.put_stream(key, Box::pin(stream), len).await
    }

    /// Read an object as a stream, with its size.
    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream), ObjectError>;

    /// Read a whole object into memory; fails past `max_size` bytes.
    async fn get(&self, key: &str, max_size: u64) -> Result<Bytes, ObjectError> {
        use futures::StreamExt;
        let (size, mut stream) = self.get_stream(key).await?;
        if size > max_size {
            return Err(ObjectError::TooLarge { limit: max_size });
        }
        let mut buf = bytes::BytesMut::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() as u64 > max_size {
                return Err(ObjectError::TooLarge { limit: max_size });
            }
        }
        Ok(buf.freeze())
    }

    /// Delete an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;

    /// The size of an object, if it exists.
    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError>;
}

/// Check a finished upload's digest against the announced one (if any),
/// before anything is committed.
pub fn check_digest(expected: Option<&str>, actual: &str) -> Result<(), ObjectError> {
    match expected {
        Some(e) if !e.eq_ignore_ascii_case(actual) => Err(ObjectError::Digest {
            expected: e.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Keys: 1 to 512 characters of `[A-Za-z0-9._-/]`, no empty, `.` or `..`
/// components.
pub fn validate_key(key: &str) -> Result<(), ObjectError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(ObjectError::InvalidKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("a/b-c_d.e").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "a/./b", "a b", "a\\b", "a/"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
