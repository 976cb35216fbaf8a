//! AES-256-GCM sealing of artifacts at rest.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 4] = b"AHS1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the master key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("sealed data is corrupt or was sealed with another key")]
    Corrupt,
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// Seals and opens blobs with one master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let key = hex::decode(hex_key.trim()).map_err(|_| SealError::BadKey)?;
        if key.len() != 32 {
            return Err(SealError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SealError::BadKey)?;
        Ok(Sealer { cipher })
    }

    /// Read the key from `path`, or generate one there (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Self, SealError> {
        let err = |source| SealError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let text = hex::encode(key);
                write_private(path, text.as_bytes()).map_err(err)?;
                Self::from_hex(&text)
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // Encryption with a valid key and a 96-bit nonce cannot fail for
        // inputs below GCM's 64 GiB limit; artifacts are far smaller.
        let ct = self
            .cipher
            .encrypt(nonce, plain)
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of an in-memory buffer"));
        let mut out = Vec::with_capacity(4 + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 4 + NONCE_LEN || &sealed[..4] != MAGIC {
            return Err(SealError::Corrupt);
        }
        let nonce = Nonce::from_slice(&sealed[4..4 + NONCE_LEN]);
        self.cipher
            .decrypt(nonce, &sealed[4 + NONCE_LEN..])
            .map_err(|_| SealError::Corrupt)
    }
}

/// Write a file only its owner can read (mode 0600), replacing any.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let s = Sealer::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = s.seal(b"secret artifact");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(&sealed).unwrap(), b"secret artifact");
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"secret artifact");
        let mut bad = sealed.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert!(matches!(s.open(&bad), Err(SealError::Corrupt)));
        let other = Sealer::from_hex(&"11".repeat(32)).unwrap();
        assert!(matches!(other.open(&sealed), Err(SealError::Corrupt)));
        assert!(matches!(Sealer::from_hex("abc"), Err(SealError::BadKey)));
    }
}
