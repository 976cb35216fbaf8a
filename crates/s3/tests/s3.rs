//! `S3Store` against a real S3-compatible server: the endpoint in
//! `ACCELHUB_TEST_S3` (`.ci/run` starts moto in server mode and sets it);
//! without it these tests skip, saying so. Each test uses a bucket of its
//! own.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_objects::conformance::{chunks, read_all};
use accelhub_objects::{ObjectError, ObjectStore};
use accelhub_s3::S3Store;
use bytes::Bytes;
use sha2::{Digest, Sha256};

async fn s3(test: &str) -> Option<S3Store> {
    let Ok(endpoint) = std::env::var("ACCELHUB_TEST_S3") else {
        eprintln!("skipping {test}: ACCELHUB_TEST_S3 is not set (an S3 endpoint, e.g. moto_server's http://127.0.0.1:5590)");
        return None;
    };
    // Any credentials do for a local server; real ones come from the
    // environment as usual.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    let bucket = format!(
        "t{}-{}",
        std::process::id(),
        test.replace('_', "-").chars().take(40).collect::<String>()
    );
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("reach the S3 server");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    Some(S3Store::from_url(&format!("s3://{bucket}/objects?endpoint={endpoint}")).unwrap())
}

#[tokio::test]
async fn small_and_multipart_objects_round_trip() {
    let Some(s) = s3("small_and_multipart_objects_round_trip").await else {
        return;
    };
    let small = b"hello objects".to_vec();
    let put = s.put("a/small", Bytes::from(small.clone())).await.unwrap();
    assert_eq!(put.size, small.len() as u64);
    assert_eq!(put.sha256, hex::encode(Sha256::digest(&small)));
    assert_eq!(read_all(&s, "a/small").await, small);
    assert_eq!(s.size("a/small").await.unwrap(), Some(small.len() as u64));

    // 20 MiB in 1 MiB chunks: three parts of a multipart upload.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let put = s
        .put_stream("a/big", chunks(&big, 1 << 20), u64::MAX)
        .await
        .unwrap();
    assert_eq!(put.size, big.len() as u64);
    assert_eq!(put.sha256, hex::encode(Sha256::digest(&big)));
    assert!(read_all(&s, "a/big").await == big, "the big object differs");

    // Replacing is atomic and whole; deleting is idempotent.
    s.put("a/small", Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(read_all(&s, "a/small").await, b"v2");
    s.delete("a/small").await.unwrap();
    s.delete("a/small").await.unwrap();
    assert_eq!(s.size("a/small").await.unwrap(), None);
    assert!(matches!(
        s.get_stream("a/small").await.err(),
        Some(ObjectError::NotFound(_))
    ));
}

#[tokio::test]
async fn failed_uploads_leave_nothing() {
    let Some(s) = s3("failed_uploads_leave_nothing").await else {
        return;
    };
    let data = vec![7u8; 12 << 20];
    // Past the limit, after a multipart upload began.
    let e = s
        .put_stream("x/too-big", chunks(&data, 1 << 20), 10 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, ObjectError::TooLarge { .. }), "{e}");
    assert_eq!(s.size("x/too-big").await.unwrap(), None);

    // The client's stream breaks mid-way.
    let mut parts: Vec<std::io::Result<Bytes>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    parts.insert(10, Err(std::io::Error::other("connection reset")));
    let e = s
        .put_stream("x/broken", Box::pin(futures::stream::iter(parts)), u64::MAX)
        .await
        .unwrap_err();
    assert!(matches!(e, ObjectError::Upload(_)), "{e}");
    assert_eq!(s.size("x/broken").await.unwrap(), None);

    // Keys are checked before anything is sent.
    assert!(matches!(
        s.put("../escape", Bytes::new()).await,
        Err(ObjectError::InvalidKey(_))
    ));
}

/// Issue 14, defect 4: a failed put keeps the old object, on S3 too.
#[tokio::test]
async fn failed_puts_keep_the_old_object() {
    let Some(s) = s3("failed_puts_keep_the_old_object").await else {
        return;
    };
    accelhub_objects::conformance::failed_puts_keep_the_old_object(&s).await;
}

#[test]
fn urls_are_checked() {
    for bad in ["http://bucket", "s3://", "s3://b?colour=red", "not a url"] {
        assert!(S3Store::from_url(bad).is_err(), "{bad}");
    }
}
