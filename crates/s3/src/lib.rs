//! Object storage on an S3-compatible service (AWS S3, MinIO, Ceph, moto…),
//! through the `object_store` crate: the scale-out implementation of
//! [`accelhub_objects::ObjectStore`].
//!
//! `S3Store::from_url("s3://BUCKET[/PREFIX]?endpoint=http://host:port&region=…")`;
//! credentials come from the usual `AWS_*` environment variables. Uploads
//! stream: up to one part (8 MiB) is buffered and sent as a single PUT;
//! beyond, the object goes up as a multipart upload that completes only
//! when the whole stream has arrived, and is aborted otherwise, so readers
//! never see a partial object.

use accelhub_objects::{ByteStream, ObjectError, ObjectStore, PutResult};
use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

/// Size of one part of a multipart upload (S3's minimum is 5 MiB).
const PART: usize = 8 << 20;

#[derive(Debug)]
pub struct S3Store {
    store: AmazonS3,
    prefix: String,
}

impl S3Store {
    /// `s3://BUCKET[/PREFIX]`, with optional `endpoint` (an S3-compatible
    /// service; plain `http://` is allowed for it) and `region` (default
    /// `us-east-1`) query parameters.
    pub fn from_url(url: &str) -> Result<S3Store, ObjectError> {
        let bad = |m: String| {
            ObjectError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("object store URL '{url}': {m}"),
            ))
        };
        let u = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if u.scheme() != "s3" {
            return Err(bad("the scheme must be s3://".into()));
        }
        let bucket = u
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket (s3://BUCKET)".into()))?;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region("us-east-1");
        for (k, v) in u.query_pairs() {
            match &*k {
                "endpoint" => {
                    b = b
                        .with_allow_http(v.starts_with("http://"))
                        .with_endpoint(v.to_string())
                        .with_virtual_hosted_style_request(false)
                }
                "region" => b = b.with_region(v.to_string()),
                other => return Err(bad(format!("unknown parameter '{other}'"))),
            }
        }
        let store = b.build().map_err(|e| bad(e.to_string()))?;
        Ok(S3Store {
            store,
            prefix: u.path().trim_matches('/').to_string(),
        })
    }

    fn path(&self, key: &str) -> Result<Path, ObjectError> {
        accelhub_objects::validate_key(key)?;
        Ok(if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        })
    }
}

fn io(key: &str, e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound(key.to_string()),
        other => ObjectError::Io(std::io::Error::other(other.to_string())),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_checked(
        &self,
        key: &str,
        mut stream: ByteStream,
        max_size: u64,
        expect_sha256: Option<&str>,
    ) -> Result<PutResult, ObjectError> {
        let path = self.path(key)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut buf = BytesMut::new();
        let mut upload: Option<WriteMultipart> = None;
        let failed = |upload: Option<WriteMultipart>, e: ObjectError| async move {
            if let Some(u) = upload {
                let _ = u.abort().await;
            }
            Err(e)
        };
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return failed(upload, ObjectError::Upload(e)).await,
            };
            size += chunk.len() as u64;
            if size > max_size {
                return failed(upload, ObjectError::TooLarge { limit: max_size }).await;
            }
            hash.update(&chunk);
            match upload.as_mut() {
                Some(w) => {
                    if let Err(e) = w.wait_for_capacity(4).await {
                        return failed(upload, io(key, e)).await;
                    }
                    w.put(chunk);
                }
                None => {
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= PART {
                        let m = self
                            .store
                            .put_multipart(&path)
                            .await
                            .map_err(|e| io(key, e))?;
                        let mut w = WriteMultipart::new_with_chunk_size(m, PART);
                        w.put(buf.split().freeze());
                        upload = Some(w);
                    }
                }
            }
        }
        // The digest is checked before the upload completes: a multipart
        // upload aborted (or a single put never sent) leaves the old object.
        let sha256 = hex::encode(hash.finalize());
        if let Err(e) = accelhub_objects::check_digest(expect_sha256, &sha256) {
            return failed(upload, e).await;
        }
        match upload {
            Some(w) => {
                w.finish().await.map_err(|e| io(key, e))?;
            }
            None => {
                self.store
                    .put(&path, PutPayload::from(buf.freeze()))
                    .await
                    .map_err(|e| io(key, e))?;
            }
        }
        Ok(PutResult { size, sha256 })
    }

    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream), ObjectError> {
        let path = self.path(key)?;
        let got = self.store.get(&path).await.map_err(|e| io(key, e))?;
        let size = got.meta.size;
        let stream = got
            .into_stream()
            .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
        Ok((size, Box::pin(stream)))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(key, e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(key, e)),
        }
    }
}
