//! Accounts and their hashed tokens.

use crate::rows::account_row;
use crate::sql::query;
use crate::*;
use accelhub_domain::{Account, Role};

#[async_trait::async_trait]
pub trait AccountStore {
    /// Create an account with its first token (hashed).
    async fn create_account(&self, name: &str, role: Role, token_hash: &str) -> Result<Account>;
    async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>>;
    /// Every account, by id.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// A page of accounts, by id (ids grow as accounts are created): at
    /// most `limit`, after the account `after_id`.
    async fn accounts_page(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<Account>>;
}

#[async_trait::async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, name: &str, role: Role, token_hash: &str) -> Result<Account> {
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        let row = query(
            "INSERT INTO accounts (name, role, created_at) VALUES (?, ?, ?) \
             RETURNING id, name, role, created_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .fetch_one(tx.exec())
        .await
        .map_err(|e| e.conflict_as(|| format!("account '{name}'")))?;
        let account = account_row(&row)?;
        query("INSERT INTO tokens (token_hash, account_id, created_at) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(account.id)
            .bind(now)
            .execute(tx.exec())
            .await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>> {
        let row = query(
            "SELECT a.id, a.name, a.role, a.created_at FROM tokens t \
             JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(account_row).transpose()
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = query("SELECT id, name, role, created_at FROM accounts ORDER BY id")
            .fetch_all(self.db.read())
            .await?;
        rows.iter().map(account_row).collect()
    }

    async fn accounts_page(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<Account>> {
        let rows = query(
            "SELECT id, name, role, created_at FROM accounts WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after_id.unwrap_or(i64::MIN))
        .bind(i64::from(limit))
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(account_row).collect()
    }
}
