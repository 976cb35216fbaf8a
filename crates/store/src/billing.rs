//! Metering and billing facts: usage records, subscriptions (a history per
//! account and IP) and monthly spending limits. Invoices are rated from
//! these elsewhere; nothing here accumulates money.
//!
//! Every read that adds usage up (totals, a stretch's use, the uses before
//! a time, who used what) would otherwise scan a month of records, and a
//! user can make those grow by the million; the spending check before a
//! call rates the month each time. So the records are also added up per
//! UTC day, account, version, kind and billed flag in `usage_daily`, by
//! [`insert_usage`], in the transaction that writes them and only for the
//! records it actually wrote (a replayed id adds nothing). A time range is
//! cut into a [`Span`]: its whole days are read from the rollups, the
//! partial days at its ends from the records. Month starts are whole days,
//! so invoices and the spending check read rollups only.

use crate::rows::subscription_row;
use crate::sql::{keyset, query, Arg, Order, Tx};
use crate::*;
use accelhub_domain::billing::{Subscription, UseStats};
use accelhub_domain::{Cursor, UsageTotals};
use std::collections::BTreeMap;

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
    /// A page of an account's subscriptions, oldest first (by `since`,
    /// then id), each with its id: at most `limit`, after `after` (the
    /// last one's `since` in Unix milliseconds and its id).
    async fn subscriptions_page(
        &self,
        account_id: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<(i64, Subscription)>>;
    /// An account's subscription history, oldest first (all IPs, or one).
    async fn subscriptions(
        &self,
        account_id: Option<i64>,
        ip: Option<&str>,
    ) -> Result<Vec<(i64, Subscription)>>;
    async fn set_spending_limit(&self, account_id: i64, monthly: Option<Money>) -> Result<()>;
    async fn spending_limit(&self, account_id: i64) -> Result<Option<Money>>;
}

/// `SUM(expr)` as a BIGINT, 0 over no rows (PostgreSQL sums BIGINTs as
/// NUMERIC).
fn sum(expr: &str) -> String {
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

/// The condition selecting `scope`'s usage (`u` the usage or rollup row,
/// `i` its IP), and the value of its one placeholder.
fn scope_condition(scope: UsageScope) -> (&'static str, i64) {
    match scope {
        UsageScope::Consumer(id) => ("u.account_id = ?", id),
        UsageScope::Vendor(id) => ("i.vendor_id = ?", id),
        UsageScope::All => ("? = 0", 0),
    }
}

/// A UTC day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// The first millisecond of the UTC day of `ms`.
fn day_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// Where the usage of a time range `[from, to)` (Unix ms) is read from:
/// the whole UTC days in it from the daily rollups, the partial days at
/// its two ends from the records. Each part is a `[start, end)` range,
/// possibly empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    head: (i64, i64),
    days: (i64, i64),
    tail: (i64, i64),
}

impl Span {
    fn new(from: i64, to: i64) -> Span {
        let first = if day_of(from) == from {
            from
        } else {
            day_of(from).saturating_add(DAY_MS)
        };
        let last = day_of(to);
        if first >= last {
            Span {
                head: (from, to),
                days: (0, 0),
                tail: (0, 0),
            }
        } else {
            Span {
                head: (from, first),
                days: (first, last),
                tail: (last, to),
            }
        }
    }

    /// From `since` (or the beginning) on.
    fn since(since: Option<DateTime<Utc>>) -> Span {
        Span::new(since.map(millis).unwrap_or(0), i64::MAX)
    }
}

/// The usage rows joined to their version (`v`) and IP (`i`).
const JOINS: &str = "JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id";

/// A subquery of the usage matching `filter` (a condition on `u`, `v` and
/// `i`) in a [`Span`], one row per record of the partial days and per
/// rollup of the whole days, with the columns `account_id`, `ip`,
/// `version`, `kind`, `billed`, `records`, `bytes_in`, `bytes_out`,
/// `device_time_us`, `price_micros`. Bind it with [`bind_facts`].
fn facts(filter: &str) -> String {
    let cols = "u.account_id, i.full_name AS ip, v.version, u.kind, u.billed";
    let sums = "u.bytes_in, u.bytes_out, u.device_time_us, u.price_micros";
    let raw = format!(
        "SELECT {cols}, 1 AS records, {sums} FROM usage u {JOINS} \
         WHERE {filter} AND u.created_at >= ? AND u.created_at < ?"
    );
    format!(
        "({raw} UNION ALL {raw} UNION ALL \
         SELECT {cols}, u.records, {sums} FROM usage_daily u {JOINS} \
         WHERE {filter} AND u.day >= ? AND u.day < ?)"
    )
}

/// Bind a [`facts`] subquery: `args` are the values of its filter.
fn bind_facts(mut q: crate::sql::Query, args: &[Arg], span: Span) -> crate::sql::Query {
    for (start, end) in [span.head, span.tail, span.days] {
        q = q.bind_all(args.iter().cloned()).bind(start).bind(end);
    }
    q
}

/// One rollup: (account, version, day, kind, billed) and what it adds up.
type Rollup = ((i64, i64, i64, &'static str, bool), [i64; 5]);

/// Insert usage records, each with its time (Unix ms), and add the ones
/// written to the daily rollups, in `tx`. An id already present, or
/// repeated in `rows`, is written and counted once.
pub(crate) async fn insert_usage(tx: &mut Tx, rows: &[(NewUsage, i64)]) -> Result<()> {
    for chunk in shaped(rows) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut q = query(format!(
            "INSERT INTO usage (id, kind, account_id, version_id, device, bytes_in, bytes_out, \
             device_time_us, price_micros, billed, outcome, created_at) VALUES {values} \
             ON CONFLICT (id) DO NOTHING RETURNING id"
        ));
        for (u, at) in chunk {
            q = q
                .bind(&u.id)
                .bind(u.kind.as_str())
                .bind(u.account_id)
                .bind(u.version_id)
                .bind(&u.device)
                .bind(u.bytes_in as i64)
                .bind(u.bytes_out as i64)
                .bind(u.device_time_us as i64)
                .bind(price_of(u))
                .bind(u.billed as i64)
                .bind(&u.outcome)
                .bind(*at);
        }
        let written = q.fetch_all(tx.exec()).await?;
        let mut written: std::collections::HashSet<String> = written
            .iter()
            .map(|r| r.get::<String>(0))
            .collect::<Result<_>>()?;
        // Sorted, so that concurrent writers (PostgreSQL) take the rollups'
        // row locks in one order.
        let mut rollups: BTreeMap<(i64, i64, i64, &'static str, bool), [i64; 5]> = BTreeMap::new();
        for (u, at) in chunk {
            if !written.remove(&u.id) {
                continue;
            }
            let key = (
                u.account_id,
                u.version_id,
                day_of(*at),
                u.kind.as_str(),
                u.billed,
            );
            let r = rollups.entry(key).or_default();
            r[0] += 1;
            r[1] = r[1].saturating_add(u.bytes_in as i64);
            r[2] = r[2].saturating_add(u.bytes_out as i64);
            r[3] = r[3].saturating_add(u.device_time_us as i64);
            r[4] = r[4].saturating_add(price_of(u));
        }
        let rollups: Vec<Rollup> = rollups.into_iter().collect();
        for part in shaped(&rollups) {
            add_rollups(tx, part).await?;
        }
    }
    Ok(())
}

/// What a record is charged: its price if billed, nothing otherwise.
fn price_of(u: &NewUsage) -> i64 {
    if u.billed {
        u.price.micros()
    } else {
        0
    }
}

async fn add_rollups(tx: &mut Tx, rollups: &[Rollup]) -> Result<()> {
    if rollups.is_empty() {
        return Ok(());
    }
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rollups.len()].join(", ");
    let mut q = query(format!(
        "INSERT INTO usage_daily (account_id, version_id, day, kind, billed, records, bytes_in, \
         bytes_out, device_time_us, price_micros) VALUES {values} \
         ON CONFLICT (account_id, version_id, day, kind, billed) DO UPDATE SET \
         records = usage_daily.records + excluded.records, \
         bytes_in = usage_daily.bytes_in + excluded.bytes_in, \
         bytes_out = usage_daily.bytes_out + excluded.bytes_out, \
         device_time_us = usage_daily.device_time_us + excluded.device_time_us, \
         price_micros = usage_daily.price_micros + excluded.price_micros"
    ));
    for ((account, version, day, kind, billed), sums) in rollups {
        q = q
            .bind(*account)
            .bind(*version)
            .bind(*day)
            .bind(*kind)
            .bind(*billed as i64)
            .bind_all(sums.iter().copied());
    }
    q.execute(tx.exec()).await?;
    Ok(())
}

/// Rows per INSERT statement (12 bound values each; SQLite allows 32766).
const ROWS_PER_STATEMENT: usize = 512;

/// `rows` cut into statements of [`ROWS_PER_STATEMENT`] rows, then of
/// powers of two: a handful of statement shapes, so that each connection's
/// cache of prepared statements holds a few multi-row INSERTs, not one per
/// batch size it ever saw.
fn shaped<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    while !rows.is_empty() {
        let n = if rows.len() >= ROWS_PER_STATEMENT {
            ROWS_PER_STATEMENT
        } else {
            1 << rows.len().ilog2()
        };
        let (head, rest) = rows.split_at(n);
        out.push(head);
        rows = rest;
    }
    out
}

impl SqlStore {
    /// Record usage that happened at `at`, not now: records imported from
    /// elsewhere or replayed, written (and added to the rollups of their
    /// day) at once, past the journal. Ids already recorded are skipped.
    pub async fn record_usage_at(&self, rows: Vec<(NewUsage, DateTime<Utc>)>) -> Result<()> {
        let rows: Vec<(NewUsage, i64)> = rows.into_iter().map(|(u, at)| (u, millis(at))).collect();
        let mut tx = self.db.begin().await?;
        insert_usage(&mut tx, &rows).await?;
        tx.commit().await
    }

    /// The version of the first (by time, then id) successful use of `ip`
    /// by an account in `span`: a reservation when `reserve`, a call or a
    /// job otherwise. The records are read for one day at most.
    async fn first_version(
        &self,
        account_id: i64,
        ip: &str,
        span: Span,
        reserve: bool,
    ) -> Result<Option<String>> {
        let kind = if reserve { "=" } else { "<>" };
        let filter = format!(
            "u.account_id = ? AND i.full_name = ? AND u.billed = 1 AND u.kind {kind} 'reserve'"
        );
        let first_in = |(start, end): (i64, i64)| {
            query(format!(
                "SELECT v.version FROM usage u {JOINS} WHERE {filter} \
                 AND u.created_at >= ? AND u.created_at < ? ORDER BY u.created_at, u.id LIMIT 1"
            ))
            .bind(account_id)
            .bind(ip)
            .bind(start)
            .bind(end)
        };
        let one = |q: crate::sql::Query| async move {
            q.fetch_optional(self.db.read())
                .await?
                .map(|r| r.get::<String>(0))
                .transpose()
        };
        if let Some(v) = one(first_in(span.head)).await? {
            return Ok(Some(v));
        }
        let day: Option<i64> = query(format!(
            "SELECT MIN(u.day) FROM usage_daily u {JOINS} WHERE {filter} \
             AND u.day >= ? AND u.day < ?"
        ))
        .bind(account_id)
        .bind(ip)
        .bind(span.days.0)
        .bind(span.days.1)
        .fetch_one(self.db.read())
        .await?
        .get(0)?;
        if let Some(day) = day {
            return one(first_in((day, day.saturating_add(DAY_MS)))).await;
        }
        one(first_in(span.tail)).await
    }
}

#[async_trait::async_trait]
impl BillingStore for SqlStore {
    async fn record_usage(&self, usage: NewUsage) -> Result<()> {
        match &self.journal {
            Some(j) => j.append(usage),
            None => {
                let mut tx = self.db.begin().await?;
                insert_usage(&mut tx, &[(usage, now_ms())]).await?;
                tx.commit().await
            }
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
             WHERE {cond} AND u.created_at >= ? AND {page}",
            page = keyset("u.created_at", "u.id", Order::Asc)
        ))
        .bind(id)
        .bind(since.map(millis).unwrap_or(i64::MIN))
        .bind_page(after_ms, after_id, limit)
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
        let q = query(format!(
            "SELECT {records}, {billed}, {bytes_in}, {bytes_out}, {time}, {price} FROM {facts} f",
            facts = facts(cond),
            records = sum("f.records"),
            billed = sum("CASE WHEN f.billed = 1 THEN f.records ELSE 0 END"),
            bytes_in = sum("f.bytes_in"),
            bytes_out = sum("f.bytes_out"),
            time = sum("f.device_time_us"),
            price = sum("f.price_micros"),
        ));
        let row = bind_facts(q, &[id.into()], Span::since(since))
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
        let q = query(format!(
            "SELECT DISTINCT f.account_id, f.ip FROM {facts} f ORDER BY f.account_id, f.ip",
            facts = facts(&format!("{cond} AND u.billed = 1")),
        ));
        let rows = bind_facts(q, &[id.into()], Span::new(millis(from), millis(to)))
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
        let span = Span::new(millis(from), millis(to));
        let q = query(format!(
            "SELECT {uses}, {bytes}, {reserved} FROM {facts} f",
            facts = facts("u.account_id = ? AND i.full_name = ? AND u.billed = 1"),
            uses = sum("CASE WHEN f.kind <> 'reserve' THEN f.records ELSE 0 END"),
            bytes = sum("CASE WHEN f.kind <> 'reserve' THEN f.bytes_in ELSE 0 END"),
            reserved = sum("CASE WHEN f.kind = 'reserve' THEN f.device_time_us ELSE 0 END"),
        ));
        let row = bind_facts(q, &[account_id.into(), ip.into()], span)
            .fetch_one(self.db.read())
            .await?;
        let mut stats = UseStats {
            uses: row.count(0)?,
            bytes_in: row.count(1)?,
            version: None,
            reserved_us: row.count(2)?,
            reserve_version: None,
        };
        if stats.uses > 0 {
            stats.version = self.first_version(account_id, ip, span, false).await?;
        }
        if stats.reserved_us > 0 {
            stats.reserve_version = self.first_version(account_id, ip, span, true).await?;
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
            "SELECT {bytes} FROM (SELECT u.bytes_in AS b FROM usage u {JOINS} \
             WHERE u.account_id = ? AND u.billed = 1 AND u.kind <> 'reserve' \
             AND u.created_at >= ? AND u.created_at < ? AND i.full_name = ? \
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
        let q = query(format!(
            "SELECT {uses} FROM {facts} f",
            facts = facts(
                "u.account_id = ? AND i.full_name = ? AND u.billed = 1 AND u.kind <> 'reserve'"
            ),
            uses = sum("f.records"),
        ));
        let row = bind_facts(
            q,
            &[account_id.into(), ip.into()],
            Span::new(0, millis(before)),
        )
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
        rows.iter().map(subscription_row).collect()
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
        rows.iter().map(subscription_row).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_take_few_statement_shapes() {
        let rows: Vec<u32> = (0..1300).collect();
        let sizes: Vec<usize> = shaped(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [512, 512, 256, 16, 4]);
        assert_eq!(shaped(&rows).concat(), rows);
        assert!(shaped::<u32>(&[]).is_empty());
        let mut shapes = std::collections::BTreeSet::new();
        for n in 1..2000 {
            shapes.extend(shaped(&rows.repeat(2)[..n]).iter().map(|c| c.len()));
        }
        assert_eq!(shapes.len(), 10);
    }

    #[test]
    fn a_span_reads_whole_days_from_rollups_and_partial_days_from_records() {
        let d = 20_000 * DAY_MS;
        let whole = Span::new(d, d + 2 * DAY_MS);
        assert_eq!(whole.days, (d, d + 2 * DAY_MS));
        assert_eq!(whole.head.0, whole.head.1);
        assert_eq!(whole.tail.0, whole.tail.1);
        let ragged = Span::new(d + 5, d + 2 * DAY_MS + 3);
        assert_eq!(ragged.head, (d + 5, d + DAY_MS));
        assert_eq!(ragged.days, (d + DAY_MS, d + 2 * DAY_MS));
        assert_eq!(ragged.tail, (d + 2 * DAY_MS, d + 2 * DAY_MS + 3));
        // Within one day, or across one boundary, only records.
        for (a, b) in [(d + 5, d + 9), (d + DAY_MS - 1, d + DAY_MS + 1), (d, d + 7)] {
            let s = Span::new(a, b);
            assert_eq!(s.head, (a, b));
            assert_eq!(s.days.0, s.days.1);
            assert_eq!(s.tail.0, s.tail.1);
        }
        let all = Span::since(None);
        assert_eq!(all.days.0, 0);
        assert_eq!(all.head, (0, 0));
        assert_eq!(all.tail.1, i64::MAX);
    }
}
