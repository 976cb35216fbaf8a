//! An account's subscriptions read a page at a time, for the API's list
//! (billing reads an account's whole history through `BillingStore`).

use crate::sql::{keyset, query, Order};
use crate::*;
use accelhub_domain::billing::Subscription;

#[async_trait::async_trait]
pub trait SubscriptionPages {
    /// A page of an account's subscriptions, oldest first (by `since`,
    /// then id), each with its id: at most `limit`, after `after` (the
    /// last one's `since` in Unix milliseconds and its id).
    async fn subscriptions_page(
        &self,
        account_id: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, Subscription)>>;
}

#[async_trait::async_trait]
impl SubscriptionPages for SqlStore {
    async fn subscriptions_page(
        &self,
        account_id: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, Subscription)>> {
        let (at, id) = after.unwrap_or((i64::MIN, i64::MIN));
        let rows = query(format!(
            "SELECT s.id, i.full_name, s.plan, s.since FROM subscriptions s \
             JOIN ips i ON i.id = s.ip_id WHERE s.account_id = ? AND {}",
            keyset("s.since", "s.id", Order::Asc)
        ))
        .bind(account_id)
        .bind_page(at, id, limit)
        .fetch_all(self.db.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0)?,
                    Subscription {
                        ip: r.get(1)?,
                        plan: r.get(2)?,
                        since: from_millis(r.get(3)?),
                    },
                ))
            })
            .collect()
    }
}
