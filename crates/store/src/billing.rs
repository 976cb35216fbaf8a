//! Metering and billing facts: usage records, subscriptions (a history per
//! account and IP) and monthly spending limits. Invoices are rated from
//! these elsewhere; nothing here accumulates money.

use crate::sql::{query, Exec};
use crate::*;
use accelhub_domain::billing::{Subscription, UseStats};
use accelhub_domain::{Cursor, UsageTotals};

#[async_trait::async_trait]
pub trait BillingStore {
    /// Durably record a usage record: when this returns, the record
    /// survives a crash of the process. A record whose id is already
    /// recorded is never written twice.
    async fn record_usage(&self, usage: NewUsage) -> Result<()>;
    /// A page of the usage records in `scope` from `since`, by time then
    /// id: at most `limit`, after `after` (the last record of the page
    /// before).
    async fn list_usage(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>>;
    /// The totals of every usage record in `scope` from `since`, added up
    /// by the database.
    async fn usage_totals(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<UsageTotals>;
    /// Each (account id, IP) with billed use in `scope` in `[from, to)`.
    async fn usage_pairs(
        &self,
        scope: UsageScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, String)>>;
    /// An account's successful use of an IP in `[from, to)`, aggregated.
    async fn use_stats(
        &self,
        account_id: i64,
        ip: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<UseStats>;
    /// The input bytes of an account's first `k` successful uses (calls
    /// and jobs) of an IP in `[from, to)`.
    async fn first_uses_bytes(
        &self,
        account_id: i64,
        ip: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        k: u64,
    ) -> Result<u64>;
    /// An account's successful uses (calls and jobs) of an IP before `t`.
    async fn count_uses(&self, account_id: i64, ip: &str, before: DateTime<Utc>) -> Result<u64>;
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

/// The versions of the IP named by the next placeholder.
const IP_VERSIONS: &str =
    "SELECT vv.id FROM versions vv JOIN ips ii ON ii.id = vv.ip_id WHERE ii.full_name = ?";

/// `SUM(expr)` as a BIGINT, 0 over no rows (PostgreSQL sums BIGINTs as
/// NUMERIC).
fn sum(expr: &str) -> String {
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

/// The condition selecting `scope`'s usage records (`u` the usage row,
/// `i` its IP), and the value of its one placeholder.
fn scope_condition(scope: UsageScope) -> (&'static str, i64) {
    match scope {
        UsageScope::Consumer(id) => ("u.account_id = ?", id),
        UsageScope::Vendor(id) => ("i.vendor_id = ?", id),
        UsageScope::All => ("? = 0", 0),
    }
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
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>> {
        let (cond, id) = scope_condition(scope);
        self.flush_usage().await?;
        let (after_ms, after_id) = match after {
            Some(c) => (c.at_ms, c.id.clone()),
            None => (i64::MIN, String::new()),
        };
        let rows = query(format!(
            "SELECT u.id, u.kind, a.name, i.full_name, v.version, u.device, u.bytes_in, \
             u.bytes_out, u.device_time_us, u.price_micros, u.billed, u.outcome, u.created_at \
             FROM usage u JOIN accounts a ON a.id = u.account_id \
             JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE {cond} AND u.created_at >= ? \
             AND (u.created_at > ? OR (u.created_at = ? AND u.id > ?)) \
             ORDER BY u.created_at, u.id LIMIT ?"
        ))
        .bind(id)
        .bind(since.map(millis).unwrap_or(i64::MIN))
        .bind(after_ms)
        .bind(after_ms)
        .bind(after_id)
        .bind(i64::from(limit))
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

    async fn usage_totals(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<UsageTotals> {
        let (cond, id) = scope_condition(scope);
        self.flush_usage().await?;
        let row = query(format!(
            "SELECT COUNT(*), {billed}, {bytes_in}, {bytes_out}, {time}, {price} \
             FROM usage u JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE {cond} AND u.created_at >= ?",
            billed = sum("u.billed"),
            bytes_in = sum("u.bytes_in"),
            bytes_out = sum("u.bytes_out"),
            time = sum("u.device_time_us"),
            price = sum("u.price_micros"),
        ))
        .bind(id)
        .bind(since.map(millis).unwrap_or(i64::MIN))
        .fetch_one(self.db.read())
        .await?;
        let records = row.count(0)?;
        let billed = row.count(1)?;
        Ok(UsageTotals {
            records,
            billed,
            failed: records.saturating_sub(billed),
            bytes_in: row.count(2)?,
            bytes_out: row.count(3)?,
            device_time_us: row.count(4)?,
            amount: Money(row.get(5)?),
        })
    }

    async fn usage_pairs(
        &self,
        scope: UsageScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, String)>> {
        let (cond, id) = scope_condition(scope);
        self.flush_usage().await?;
        let rows = query(format!(
            "SELECT DISTINCT u.account_id, i.full_name \
             FROM usage u JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE {cond} AND u.billed = 1 AND u.created_at >= ? AND u.created_at < ? \
             ORDER BY u.account_id, i.full_name"
        ))
        .bind(id)
        .bind(millis(from))
        .bind(millis(to))
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }

    async fn use_stats(
        &self,
        account_id: i64,
        ip: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<UseStats> {
        self.flush_usage().await?;
        let row = query(format!(
            "SELECT {uses}, {bytes}, {reserved} FROM usage u \
             WHERE u.account_id = ? AND u.billed = 1 AND u.created_at >= ? AND u.created_at < ? \
             AND u.version_id IN ({IP_VERSIONS})",
            uses = sum("CASE WHEN u.kind <> 'reserve' THEN 1 ELSE 0 END"),
            bytes = sum("CASE WHEN u.kind <> 'reserve' THEN u.bytes_in ELSE 0 END"),
            reserved = sum("CASE WHEN u.kind = 'reserve' THEN u.device_time_us ELSE 0 END"),
        ))
        .bind(account_id)
        .bind(millis(from))
        .bind(millis(to))
        .bind(ip)
        .fetch_one(self.db.read())
        .await?;
        let mut stats = UseStats {
            uses: row.count(0)?,
            bytes_in: row.count(1)?,
            version: None,
            reserved_us: row.count(2)?,
            reserve_version: None,
        };
        for (wanted, kind) in [(stats.uses > 0, "<>"), (stats.reserved_us > 0, "=")] {
            if !wanted {
                continue;
            }
            let version: Option<String> = query(format!(
                "SELECT v.version FROM usage u JOIN versions v ON v.id = u.version_id \
                 WHERE u.account_id = ? AND u.billed = 1 AND u.kind {kind} 'reserve' \
                 AND u.created_at >= ? AND u.created_at < ? AND u.version_id IN ({IP_VERSIONS}) \
                 ORDER BY u.created_at, u.id LIMIT 1"
            ))
            .bind(account_id)
            .bind(millis(from))
            .bind(millis(to))
            .bind(ip)
            .fetch_optional(self.db.read())
            .await?
            .map(|r| r.get(0))
            .transpose()?;
            if kind == "=" {
                stats.reserve_version = version;
            } else {
                stats.version = version;
            }
        }
        Ok(stats)
    }

    async fn first_uses_bytes(
        &self,
        account_id: i64,
        ip: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        k: u64,
    ) -> Result<u64> {
        self.flush_usage().await?;
        let row = query(format!(
            "SELECT {bytes} FROM (SELECT u.bytes_in AS b FROM usage u \
             WHERE u.account_id = ? AND u.billed = 1 AND u.kind <> 'reserve' \
             AND u.created_at >= ? AND u.created_at < ? AND u.version_id IN ({IP_VERSIONS}) \
             ORDER BY u.created_at, u.id LIMIT ?) f",
            bytes = sum("f.b"),
        ))
        .bind(account_id)
        .bind(millis(from))
        .bind(millis(to))
        .bind(ip)
        .bind(i64::try_from(k).unwrap_or(i64::MAX))
        .fetch_one(self.db.read())
        .await?;
        row.count(0)
    }

    async fn count_uses(&self, account_id: i64, ip: &str, before: DateTime<Utc>) -> Result<u64> {
        self.flush_usage().await?;
        let row = query(format!(
            "SELECT COUNT(*) FROM usage u \
             WHERE u.account_id = ? AND u.billed = 1 AND u.kind <> 'reserve' \
             AND u.created_at < ? AND u.version_id IN ({IP_VERSIONS})"
        ))
        .bind(account_id)
        .bind(millis(before))
        .bind(ip)
        .fetch_one(self.db.read())
        .await?;
        row.count(0)
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
