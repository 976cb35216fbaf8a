//! An account's objects: data uploaded for jobs and kept for their outputs.

use crate::*;

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
        let put = self
            .objects
            .put_stream(&path, stream, self.config.max_object_bytes)
            .await?;
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&put.sha256) {
                self.objects.delete(&path).await?;
                return Err(CoreError::BadRequest(format!(
                    "the upload was corrupted in transit: its SHA-256 is {} but the client \
                     announced {expected}; nothing was stored",
                    put.sha256
                )));
            }
        }
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

    pub async fn list_objects(&self, account: &Account) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .store
            .list_objects(account.id)
            .await?
            .into_iter()
            .map(object_view)
            .collect())
    }

    pub async fn delete_object(&self, account: &Account, key: &str) -> Result<()> {
        if !self.store.delete_object(account.id, key).await? {
            return Err(CoreError::NotFound(format!("you have no object '{key}'")));
        }
        self.objects
            .delete(&account_object_key(account.id, key))
            .await?;
        Ok(())
    }
}
