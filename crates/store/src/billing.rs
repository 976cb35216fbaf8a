//! Metering and billing facts: usage records, subscriptions (a history per
//! account and IP) and monthly spending limits. Invoices are rated from
//! these elsewhere; nothing here accumulates money.

use crate::sql::{query, Exec};
use crate::*;
use accelhub_domain::billing::Subscription;

#[async_trait::async_trait]
pub trait BillingStore {
    /// Durably record a usage record: when this returns, the record
    /// survives a crash of the process. A record whose id is already
    /// recorded is never written twice.
    async fn record_usage(&self, usage: NewUsage) -> Result<()>;
    async fn list_usage(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<UsageRecord>>;
    /// Subscribe `account_id` to `plan` of `ip` from `since` (a new entry
    /// of its history).
    async fn subscribe(
        &self,
        account_id: i64,
        ip: &str,
        plan: &str,
        since: DateTime<Utc>,
    ) -> Result<Subscription>;
    /// An account's subscription history, oldest first (all IPs, or one).
    async fn subscriptions(
        &self,
        account_id: Option<i64>,
        ip: Option<&str>,
    ) -> Result<Vec<(i64, Subscription)>>;
    async fn set_spending_limit(&self, account_id: i64, monthly: Option<Money>) -> Result<()>;
    async fn spending_limit(&self, account_id: i64) -> Result<Option<Money>>;
}

/// Insert usage records, each with its time (Unix ms), as one multi-row
/// statement. An id already present, or repeated in `rows`, is written
/// once.
pub(crate) async fn insert_usage(on: Exec<'_>, rows: &[(NewUsage, i64)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ");
    let mut q = query(format!(
        "INSERT INTO usage (id, kind, account_id, version_id, device, bytes_in, bytes_out, \
         device_time_us, price_micros, billed, outcome, created_at) VALUES {values} \
         ON CONFLICT (id) DO NOTHING"
    ));
    for (u, at) in rows {
        q = q
            .bind(&u.id)
            .bind(u.kind.as_str())
            .bind(u.account_id)
            .bind(u.version_id)
            .bind(&u.device)
            .bind(u.bytes_in as i64)
            .bind(u.bytes_out as i64)
            .bind(u.device_time_us as i64)
            .bind(if u.billed { u.price.micros() } else { 0 })
            .bind(u.billed as i64)
            .bind(&u.outcome)
            .bind(*at);
    }
    q.execute(on).await?;
    Ok(())
}

#[async_trait::async_trait]
impl BillingStore for SqlStore {
    async fn record_usage(&self, usage: NewUsage) -> Result<()> {
        match &self.journal {
            Some(j) => j.append(usage),
            None => insert_usage(self.db.write(), &[(usage, now_ms())]).await,
        }
    }

    async fn list_usage(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<UsageRecord>> {
        let (cond, id) = match scope {
            UsageScope::Consumer(id) => ("u.account_id = ?", id),
            UsageScope::Vendor(id) => ("i.vendor_id = ?", id),
            UsageScope::All => ("? = 0", 0),
        };
        self.flush_usage().await?;
        let rows = query(format!(
            "SELECT u.id, u.kind, a.name, i.full_name, v.version, u.device, u.bytes_in, \
             u.bytes_out, u.device_time_us, u.price_micros, u.billed, u.outcome, u.created_at \
             FROM usage u JOIN accounts a ON a.id = u.account_id \
             JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE {cond} AND u.created_at >= ? ORDER BY u.created_at, u.id"
        ))
        .bind(id)
        .bind(since.map(millis).unwrap_or(i64::MIN))
        .fetch_all(self.db.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRecord {
                    id: r.get(0)?,
                    kind: r.get::<String>(1)?.parse().map_err(StoreError::Corrupt)?,
                    account: Some(r.get(2)?),
                    ip: r.get(3)?,
                    version: r.get(4)?,
                    device: r.get(5)?,
                    bytes_in: r.count(6)?,
                    bytes_out: r.count(7)?,
                    device_time_us: r.count(8)?,
                    price: Money(r.get(9)?),
                    billed: r.get::<i64>(10)? != 0,
                    outcome: r.get(11)?,
                    created_at: from_millis(r.get(12)?),
                })
            })
            .collect()
    }

    async fn subscribe(
        &self,
        account_id: i64,
        ip: &str,
        plan: &str,
        since: DateTime<Utc>,
    ) -> Result<Subscription> {
        let n = query(
            "INSERT INTO subscriptions (account_id, ip_id, plan, since) \
             SELECT ?, id, ?, ? FROM ips WHERE full_name = ?",
        )
        .bind(account_id)
        .bind(plan)
        .bind(millis(since))
        .bind(ip)
        .execute(self.db.write())
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no IP named '{ip}'")));
        }
        Ok(Subscription {
            ip: ip.to_string(),
            plan: plan.to_string(),
            since: from_millis(millis(since)),
        })
    }

    async fn subscriptions(
        &self,
        account_id: Option<i64>,
        ip: Option<&str>,
    ) -> Result<Vec<(i64, Subscription)>> {
        let rows = query(
            "SELECT s.account_id, i.full_name, s.plan, s.since FROM subscriptions s \
             JOIN ips i ON i.id = s.ip_id \
             WHERE (?1 < 0 OR s.account_id = ?1) AND (?2 = '' OR i.full_name = ?2) \
             ORDER BY s.since, s.id",
        )
        .bind(account_id.unwrap_or(-1))
        .bind(ip.unwrap_or(""))
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

    async fn set_spending_limit(&self, account_id: i64, monthly: Option<Money>) -> Result<()> {
        let q = match monthly {
            Some(m) => query(
                "INSERT INTO spending_limits (account_id, monthly_micros) VALUES (?, ?) \
                 ON CONFLICT (account_id) DO UPDATE SET monthly_micros = excluded.monthly_micros",
            )
            .bind(account_id)
            .bind(m.micros()),
            None => query("DELETE FROM spending_limits WHERE account_id = ?").bind(account_id),
        };
        q.execute(self.db.write()).await?;
        Ok(())
    }

    async fn spending_limit(&self, account_id: i64) -> Result<Option<Money>> {
        query("SELECT monthly_micros FROM spending_limits WHERE account_id = ?")
            .bind(account_id)
            .fetch_optional(self.db.read())
            .await?
            .map(|r| Ok(Money(r.get(0)?)))
            .transpose()
    }
}
