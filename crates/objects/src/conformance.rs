//! What every [`ObjectStore`] must do, as one suite that each
//! implementation's tests run against a real instance (feature `testing`).
#![allow(clippy::unwrap_used)] // a test suite: a panic is a failure

use crate::{ByteStream, ObjectError, ObjectStore};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// `data` as a stream of `size`-byte chunks.
pub fn chunks(data: &[u8], size: usize) -> ByteStream {
    let v: Vec<std::io::Result<Bytes>> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(v))
}

/// An object's whole content, checked against its announced size.
pub async fn read_all(s: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let (size, mut stream) = s.get_stream(key).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    assert_eq!(out.len() as u64, size);
    out
}

/// A put that fails (a digest that doesn't match, too large, a broken
/// stream), small or past a multipart part, leaves the object that was
/// under the key exactly as it was.
pub async fn failed_puts_keep_the_old_object(s: &dyn ObjectStore) {
    let old = b"the old object".to_vec();
    s.put("keep/it", Bytes::from(old.clone())).await.unwrap();
    for size in [5usize, 12 << 20] {
        let new = vec![9u8; size];
        let wrong = hex::encode(Sha256::digest(b"something else"));
        let e = s
            .put_checked("keep/it", chunks(&new, 1 << 20), u64::MAX, Some(&wrong))
            .await
            .unwrap_err();
        match &e {
            ObjectError::Digest { expected, actual } => {
                assert_eq!(expected, &wrong);
                assert_eq!(actual, &hex::encode(Sha256::digest(&new)));
            }
            other => panic!("a digest mismatch gave {other:?}"),
        }
        assert_eq!(read_all(s, "keep/it").await, old, "size {size}");

        let e = s
            .put_stream("keep/it", chunks(&new, 1 << 20), size as u64 - 1)
            .await
            .unwrap_err();
        assert!(matches!(e, ObjectError::TooLarge { .. }), "{e}");
        assert_eq!(read_all(s, "keep/it").await, old, "size {size}");

        let mut parts: Vec<std::io::Result<Bytes>> = new
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        parts.push(Err(std::io::Error::other("connection reset")));
        let e = s
            .put_stream("keep/it", Box::pin(futures::stream::iter(parts)), u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(e, ObjectError::Upload(_)), "{e}");
        assert_eq!(read_all(s, "keep/it").await, old, "size {size}");
    }
    // The right digest (in any case) replaces it.
    let new = b"the new object".to_vec();
    let right = hex::encode(Sha256::digest(&new)).to_uppercase();
    s.put_checked("keep/it", chunks(&new, 4), u64::MAX, Some(&right))
        .await
        .unwrap();
    assert_eq!(read_all(s, "keep/it").await, new);
    s.delete("keep/it").await.unwrap();
}
