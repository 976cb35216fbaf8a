//! An account's objects: data uploaded for jobs and kept for their outputs.

use crate::*;
use accelhub_domain::{page_limit, Cursor, Page};

fn object_view(r: ObjectRow) -> ObjectInfo {
    ObjectInfo {
        key: r.key,
        size: r.size,
        sha256: r.sha256,
        created_at: r.created_at,
    }
}

impl Platform {
    // ---- Objects ---------------------------------------------------------

    pub async fn put_object(
        &self,
        account: &Account,
        key: Option<&str>,
        expected_sha256: Option<&str>,
        stream: accelhub_objects::ByteStream,
    ) -> Result<ObjectInfo> {
        let key = match key {
            Some(k) => {
                accelhub_objects::validate_key(k)?;
                k.to_string()
            }
            None => new_id("obj"),
        };
        let path = account_object_key(account.id, &key);
        // The digest is checked inside the store, before the new bytes
        // replace anything: a corrupted upload leaves the old object as it was.
        let put = self
            .objects
            .put_checked(&path, stream, self.config.max_object_bytes, expected_sha256)
            .await?;
        self.store
            .put_object(account.id, &key, put.size, &put.sha256)
            .await?;
        Ok(ObjectInfo {
            key,
            size: put.size,
            sha256: put.sha256,
            created_at: Utc::now(),
        })
    }

    pub async fn object_info(&self, account: &Account, key: &str) -> Result<ObjectInfo> {
        self.store
            .get_object(account.id, key)
            .await?
            .map(object_view)
            .ok_or_else(|| CoreError::NotFound(format!("you have no object '{key}'")))
    }

    pub async fn get_object(
        &self,
        account: &Account,
        key: &str,
    ) -> Result<(ObjectInfo, accelhub_objects::ByteStream)> {
        let info = self.object_info(account, key).await?;
        let (_, stream) = self
            .objects
            .get_stream(&account_object_key(account.id, key))
            .await?;
        Ok((info, stream))
    }

    /// A page of the caller's objects, newest first, and the cursor of
    /// the next page.
    pub async fn list_objects(
        &self,
        account: &Account,
        after: Option<&Cursor>,
        limit: Option<u32>,
    ) -> Result<Page<ObjectInfo>> {
        let limit = page_limit(limit).map_err(CoreError::BadRequest)?;
        let items: Vec<ObjectInfo> = self
            .store
            .list_objects(account.id, after, limit)
            .await?
            .into_iter()
            .map(object_view)
            .collect();
        Ok(Page::of(items, limit, |o| Cursor {
            at_ms: o.created_at.timestamp_millis(),
            id: o.key.clone(),
        }))
    }

    /// Delete an object: its bytes first, then its index row. On a full
    /// disk the database may need the space the bytes free to record the
    /// delete; a delete that fails half-way is completed by a retry.
    pub async fn delete_object(&self, account: &Account, key: &str) -> Result<()> {
        if self.store.get_object(account.id, key).await?.is_none() {
            return Err(CoreError::NotFound(format!("you have no object '{key}'")));
        }
        self.objects
            .delete(&account_object_key(account.id, key))
            .await?;
        self.store.delete_object(account.id, key).await?;
        Ok(())
    }
}
