//! The marketplace: reviews with vendor replies, and each IP's ratings
//! and use.

use crate::rows::{ip_stats_of, review_row, RATING_STATS, REVIEW_SELECT, USE_STATS};
use crate::sql::{keyset, query, Order};
use crate::*;
use accelhub_domain::{IpStats, Review};
use std::collections::BTreeMap;

#[async_trait::async_trait]
pub trait MarketStore {
    /// Write `account_id`'s review of `ip` (replacing an earlier one).
    async fn put_review(
        &self,
        ip: &str,
        account_id: i64,
        stars: u8,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Review>;
    /// Reviews of an IP, newest first.
    /// A page of an IP's reviews, newest first (by `updated_at`, then id):
    /// at most `limit`, after `after` (the last one's `updated_at` in
    /// Unix milliseconds and its id).
    async fn list_reviews(
        &self,
        ip: &str,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<Review>>;
    /// Set the vendor's reply to review `id` of `ip`; `None` if there is
    /// no such review of that IP.
    async fn reply_review(
        &self,
        ip: &str,
        id: i64,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Review>>;
    /// Ratings and use of every IP that has any.
    async fn ip_stats(&self) -> Result<BTreeMap<String, IpStats>>;
    /// Whether the account has run any version of `ip` successfully.
    async fn has_used(&self, account_id: i64, ip: &str) -> Result<bool>;
}

impl SqlStore {
    async fn review(&self, id: i64) -> Result<Review> {
        let row = query(format!("{REVIEW_SELECT} WHERE r.id = ?"))
            .bind(id)
            .fetch_one(self.db.write())
            .await?;
        review_row(&row)
    }
}

#[async_trait::async_trait]
impl MarketStore for SqlStore {
    async fn put_review(
        &self,
        ip: &str,
        account_id: i64,
        stars: u8,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Review> {
        let row = query(
            "INSERT INTO reviews (ip_id, account_id, stars, body, created_at, updated_at) \
             SELECT id, ?1, ?2, ?3, ?4, ?4 FROM ips WHERE full_name = ?5 \
             ON CONFLICT (ip_id, account_id) DO UPDATE SET stars = excluded.stars, \
             body = excluded.body, updated_at = excluded.updated_at RETURNING id",
        )
        .bind(account_id)
        .bind(stars as i64)
        .bind(text)
        .bind(millis(now))
        .bind(ip)
        .fetch_optional(self.db.write())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no IP named '{ip}'")))?;
        self.review(row.get(0)?).await
    }

    async fn list_reviews(
        &self,
        ip: &str,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<Review>> {
        let (at, id) = after.unwrap_or((i64::MAX, i64::MAX));
        let rows = query(format!(
            "{REVIEW_SELECT} WHERE i.full_name = ? AND {}",
            keyset("r.updated_at", "r.id", Order::Desc)
        ))
        .bind(ip)
        .bind_page(at, id, limit)
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(review_row).collect()
    }

    async fn reply_review(
        &self,
        ip: &str,
        id: i64,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Review>> {
        let n = query(
            "UPDATE reviews SET reply = ?, reply_at = ? WHERE id = ? \
             AND ip_id = (SELECT id FROM ips WHERE full_name = ?)",
        )
        .bind(text)
        .bind(millis(now))
        .bind(id)
        .bind(ip)
        .execute(self.db.write())
        .await?;
        if n == 0 {
            return Ok(None);
        }
        self.review(id).await.map(Some)
    }

    async fn ip_stats(&self) -> Result<BTreeMap<String, IpStats>> {
        self.flush_usage().await?;
        let ratings = query(RATING_STATS).fetch_all(self.db.read()).await?;
        let uses = query(USE_STATS).fetch_all(self.db.read()).await?;
        ip_stats_of(&ratings, &uses)
    }

    async fn has_used(&self, account_id: i64, ip: &str) -> Result<bool> {
        self.flush_usage().await?;
        let row = query(
            "SELECT 1 FROM usage_daily u JOIN versions v ON v.id = u.version_id \
             JOIN ips i ON i.id = v.ip_id \
             WHERE u.account_id = ? AND i.full_name = ? AND u.billed = 1 \
             AND u.kind <> 'reserve' LIMIT 1",
        )
        .bind(account_id)
        .bind(ip)
        .fetch_optional(self.db.read())
        .await?;
        Ok(row.is_some())
    }
}
