//! The index of objects accounts own: key, size and SHA-256 (the bytes
//! live in the object store).

use crate::rows::object_row;
use crate::sql::query;
use crate::*;
use accelhub_domain::Cursor;

#[async_trait::async_trait]
pub trait ObjectIndex {
    async fn put_object(&self, account_id: i64, key: &str, size: u64, sha256: &str) -> Result<()>;
    async fn get_object(&self, account_id: i64, key: &str) -> Result<Option<ObjectRow>>;
    /// A page of an account's objects, newest first (then by key): at
    /// most `limit`, after `after` (the last of the page before).
    async fn list_objects(
        &self,
        account_id: i64,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>>;
    async fn delete_object(&self, account_id: i64, key: &str) -> Result<bool>;
}

#[async_trait::async_trait]
impl ObjectIndex for SqlStore {
    async fn put_object(&self, account_id: i64, key: &str, size: u64, sha256: &str) -> Result<()> {
        query(
            "INSERT INTO objects (account_id, key, size, sha256, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, key) DO UPDATE SET size = excluded.size, \
             sha256 = excluded.sha256, created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(key)
        .bind(size as i64)
        .bind(sha256)
        .bind(now_ms())
        .execute(self.db.write())
        .await?;
        Ok(())
    }

    async fn get_object(&self, account_id: i64, key: &str) -> Result<Option<ObjectRow>> {
        let row = query(
            "SELECT key, size, sha256, created_at FROM objects WHERE account_id = ? AND key = ?",
        )
        .bind(account_id)
        .bind(key)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(object_row).transpose()
    }

    async fn list_objects(
        &self,
        account_id: i64,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>> {
        let (at, key) = after.map_or((i64::MAX, ""), |c| (c.at_ms, c.id.as_str()));
        let rows = query(
            "SELECT key, size, sha256, created_at FROM objects \
             WHERE account_id = ? AND created_at <= ? AND (created_at < ? OR (created_at = ? AND key > ?)) \
             ORDER BY created_at DESC, key LIMIT ?",
        )
        .bind(account_id)
        .bind(at)
        .bind(at)
        .bind(at)
        .bind(key)
        .bind(i64::from(limit))
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(object_row).collect()
    }

    async fn delete_object(&self, account_id: i64, key: &str) -> Result<bool> {
        let n = query("DELETE FROM objects WHERE account_id = ? AND key = ?")
            .bind(account_id)
            .bind(key)
            .execute(self.db.write())
            .await?;
        Ok(n > 0)
    }
}
