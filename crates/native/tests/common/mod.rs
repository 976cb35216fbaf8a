//! What the kernel tests share.

use accelhub_device::ObjectArg;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// An object input holding `bytes`, keyed by their SHA-256, streamed in
/// chunks as an object store streams them.
pub fn object(key: &str, bytes: &[u8]) -> ObjectArg {
    let data = Bytes::copy_from_slice(bytes);
    ObjectArg {
        key: key.into(),
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        open: Arc::new(move || {
            let data = data.clone();
            Box::pin(async move {
                // Several chunks, as an object store streams them.
                let chunks: Vec<std::io::Result<Bytes>> = data
                    .chunks(4096)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                Ok(Box::pin(futures::stream::iter(chunks))
                    as futures::stream::BoxStream<'static, _>)
            })
        }),
    }
}
