use crate::{validate_key, ByteStream, ObjectError, ObjectStore, PutResult};
use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Objects as files under a directory. Writes go to a temporary file that is
/// renamed into place once complete and synced.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ObjectError> {
        let root = root.into();
        std::fs::create_dir_all(root.join(".tmp"))?;
        // Leftovers of uploads interrupted by a crash.
        if let Ok(entries) = std::fs::read_dir(root.join(".tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(LocalDirStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, ObjectError> {
        validate_key(key)?;
        Ok(self.root.join("data").join(key))
    }

    /// Refuse a key whose path is a folder of other keys, or runs through
    /// an existing object (`x` then `x/y`): checked before the bytes are
    /// read, and again when the file is moved into place.
    async fn check_collision(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        // A folder left empty by deletes is no collision: removing it
        // succeeds only while it is empty.
        if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
            && tokio::fs::remove_dir(path).await.is_err()
        {
            return Err(ObjectError::KeyCollision(key.to_string()));
        }
        let data = self.root.join("data");
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == data || !d.starts_with(&data) {
                break;
            }
            if tokio::fs::metadata(d).await.is_ok_and(|m| !m.is_dir()) {
                return Err(ObjectError::KeyCollision(key.to_string()));
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Move a complete upload into place; on any failure the temporary
    /// file is removed, so no bytes are left behind.
    async fn commit(&self, key: &str, tmp: &Path, path: &Path) -> Result<(), ObjectError> {
        let mut tries = 0;
        loop {
            let moved = async {
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::rename(tmp, path).await
            }
            .await;
            let Err(e) = moved else { return Ok(()) };
            // Another upload made the key a folder, or a path through it a
            // file, since the check: a collision. Otherwise a delete may
            // have removed the folder just made (it had emptied it): once
            // more.
            let collided = self.check_collision(key, path).await.is_err();
            tries += 1;
            if collided || tries == 3 {
                let _ = tokio::fs::remove_file(tmp).await;
                return Err(if collided {
                    ObjectError::KeyCollision(key.to_string())
                } else {
                    e.into()
                });
            }
        }
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put_checked(
        &self,
        key: &str,
        mut stream: ByteStream,
        max_size: u64,
        expect_sha256: Option<&str>,
    ) -> Result<PutResult, ObjectError> {
        let path = self.path(key)?;
        self.check_collision(key, &path).await?;
        let tmp = self
            .root
            .join(".tmp")
            .join(format!("{:016x}", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result: Result<(), ObjectError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(ObjectError::Upload)?;
                size += chunk.len() as u64;
                if size > max_size {
                    return Err(ObjectError::TooLarge { limit: max_size });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        let sha256 = hex::encode(hasher.finalize());
        if let Err(e) = result.and_then(|()| crate::check_digest(expect_sha256, &sha256)) {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.commit(key, &tmp, &path).await?;
        Ok(PutResult { size, sha256 })
    }

    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream), ObjectError> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound(key.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        Ok((size, Box::pin(stream)))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                // Folders the key leaves empty go too, so that their names
                // are free for keys again (removal stops at a non-empty one).
                let data = self.root.join("data");
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| *d != data && d.starts_with(&data)) {
                    if tokio::fs::remove_dir(d).await.is_err() {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Issue 14, defect 4: a named PUT whose digest did not match deleted
    /// the object already under the key.
    #[tokio::test]
    async fn failed_puts_keep_the_old_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        crate::conformance::failed_puts_keep_the_old_object(&store).await;
        // Nothing of the failed uploads is left behind.
        let tmp = std::fs::read_dir(dir.path().join(".tmp")).unwrap().count();
        assert_eq!(tmp, 0);
    }

    /// Issue 14, defect 8: `PUT x` then `PUT x/y` was a 500 (the rename
    /// failed) and left the uploaded bytes in `.tmp` until a restart.
    #[tokio::test]
    async fn a_key_and_its_prefix_collide_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        store.put("x", Bytes::from_static(b"old")).await.unwrap();
        let e = store
            .put("x/y", Bytes::from_static(b"new"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ObjectError::KeyCollision(ref k) if k == "x/y"),
            "{e}"
        );
        store.put("a/b", Bytes::from_static(b"ab")).await.unwrap();
        let e = store.put("a", Bytes::from_static(b"a")).await.unwrap_err();
        assert!(
            matches!(e, ObjectError::KeyCollision(ref k) if k == "a"),
            "{e}"
        );
        // What was there is untouched, and nothing is left behind.
        assert_eq!(&store.get("x", 10).await.unwrap()[..], b"old");
        assert_eq!(&store.get("a/b", 10).await.unwrap()[..], b"ab");
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );
        // Siblings and deeper keys of a folder are fine.
        store.put("a/c", Bytes::from_static(b"ac")).await.unwrap();
        store
            .put("a/d/e", Bytes::from_static(b"ade"))
            .await
            .unwrap();
        // Once the folder's keys are deleted, its name is free again.
        for k in ["a/b", "a/c", "a/d/e"] {
            store.delete(k).await.unwrap();
        }
        store.put("a", Bytes::from_static(b"a")).await.unwrap();
    }

    #[tokio::test]
    async fn put_get_delete_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(dir.path()).unwrap();
        let r = store
            .put("a/b", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(r.size, 5);
        assert_eq!(
            r.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(&store.get("a/b", 10).await.unwrap()[..], b"hello");
        assert!(matches!(
            store.get("a/b", 3).await,
            Err(ObjectError::TooLarge { .. })
        ));
        let chunks: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"1234")),
            Ok(Bytes::from_static(b"5678")),
        ];
        let err = store
            .put_stream("big", Box::pin(futures::stream::iter(chunks)), 6)
            .await
            .unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { limit: 6 }));
        assert_eq!(store.size("big").await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0,
            "a refused upload leaves nothing behind"
        );
        store.delete("a/b").await.unwrap();
        assert!(matches!(
            store.get("a/b", 10).await,
            Err(ObjectError::NotFound(_))
        ));
        store.delete("a/b").await.unwrap();
        assert!(matches!(
            store.get("../x", 10).await,
            Err(ObjectError::InvalidKey(_))
        ));
    }
}
