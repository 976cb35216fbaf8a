//! API tokens: random, shown once, stored as SHA-256 hashes.

use crate::{CoreError, Platform, Result};
use accelhub_domain::{Account, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix that makes a leaked token easy to recognise and revoke.
pub const TOKEN_PREFIX: &str = "ahk_";

/// A new random token (256 bits).
pub fn generate_token() -> String {
    generate_token_with(TOKEN_PREFIX)
}

/// A new random token (256 bits) with this prefix.
pub fn generate_token_with(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// What the store keeps of a token. Tokens carry 256 random bits, so a
/// plain SHA-256 is enough: there is nothing to brute-force.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Platform {
    /// The account a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Account> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
            return Err(CoreError::Unauthorized);
        }
        let hash = hash_token(token);
        if let Some(a) = self.tokens.get(&hash) {
            return Ok(a);
        }
        let account = self
            .store
            .account_by_token(&hash)
            .await?
            .ok_or(CoreError::Unauthorized)?;
        self.tokens.put(hash, account.clone());
        Ok(account)
    }

    /// Create an account (operator only). Returns it with its token, which
    /// is never shown again.
    pub async fn create_account(
        &self,
        caller: &Account,
        name: &str,
        role: Role,
    ) -> Result<(Account, String)> {
        if caller.role != Role::Operator {
            return Err(CoreError::Forbidden(
                "only the operator creates accounts".into(),
            ));
        }
        accelhub_domain::validate_slug("account name", name).map_err(CoreError::BadRequest)?;
        let token = generate_token();
        let account = self
            .store
            .create_account(name, role, &hash_token(&token))
            .await
            .map_err(|e| match e {
                accelhub_store::StoreError::Conflict(_) => {
                    CoreError::Conflict(format!("an account named '{name}' already exists"))
                }
                other => other.into(),
            })?;
        Ok((account, token))
    }

    /// A page of the accounts, oldest first (operator only).
    pub async fn list_accounts(
        &self,
        caller: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<Account>> {
        if caller.role != Role::Operator {
            return Err(CoreError::Forbidden(
                "only the operator lists accounts".into(),
            ));
        }
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let after = after
            .map(accelhub_domain::Cursor::int_id)
            .transpose()
            .map_err(CoreError::BadRequest)?;
        let items = self.store.accounts_page(after, limit).await?;
        Ok(accelhub_domain::Page::of(items, limit, |a| {
            accelhub_domain::Cursor {
                at_ms: a.created_at.timestamp_millis(),
                id: a.id.to_string(),
            }
        }))
    }

    /// On first start: create the operator account. Returns its token when
    /// one was created.
    pub async fn bootstrap_operator(&self) -> Result<Option<String>> {
        let accounts = self.store.list_accounts().await?;
        if accounts.iter().any(|a| a.role == Role::Operator) {
            return Ok(None);
        }
        let token = generate_token();
        self.store
            .create_account("operator", Role::Operator, &hash_token(&token))
            .await?;
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
        assert_eq!(hash_token(&a).len(), 64);
    }
}
