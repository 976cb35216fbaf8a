//! Metering: one usage record per call or job.

use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a usage record meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UsageKind {
    /// A synchronous call.
    Call,
    /// An asynchronous job.
    Job,
    /// A dedicated deployment's held replicas (`device_time_us`:
    /// replica-microseconds), metered once a minute.
    Reserve,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Call => "call",
            UsageKind::Job => "job",
            UsageKind::Reserve => "reserve",
        }
    }
}

impl std::fmt::Display for UsageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for UsageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<UsageKind, String> {
        match s {
            "call" => Ok(UsageKind::Call),
            "job" => Ok(UsageKind::Job),
            "reserve" => Ok(UsageKind::Reserve),
            other => Err(format!("unknown usage kind '{other}'")),
        }
    }
}

/// Compared with its name in records.
impl PartialEq<&str> for UsageKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What one call or job consumed. Failed calls are recorded unbilled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// The call or job id; unique, so a retry can never bill twice.
    pub id: String,
    pub kind: UsageKind,
    /// The consuming account; absent in a vendor's view.
    pub account: Option<String>,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub device_time_us: u64,
    pub price: Money,
    pub billed: bool,
    /// `ok` or the failure's kind.
    pub outcome: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageTotals {
    pub records: u64,
    pub billed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub device_time_us: u64,
    pub amount: Money,
}

impl UsageTotals {
    pub fn of(records: &[UsageRecord]) -> UsageTotals {
        let mut t = UsageTotals::default();
        for r in records {
            t.records += 1;
            if r.billed {
                t.billed += 1;
                t.amount += r.price;
            } else {
                t.failed += 1;
            }
            t.bytes_in += r.bytes_in;
            t.bytes_out += r.bytes_out;
            t.device_time_us += r.device_time_us;
        }
        t
    }
}

/// A page of usage records (oldest first) with the totals of every record
/// the query selects, on all pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// `consumer` (what the caller used and owes), `vendor` (use of the
    /// caller's IPs, without the consumers' names) or `operator` (all).
    pub view: String,
    pub since: Option<DateTime<Utc>>,
    pub records: Vec<UsageRecord>,
    pub totals: UsageTotals,
    /// The cursor of the next page (`?cursor=`), absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(billed: bool, price: i64) -> UsageRecord {
        UsageRecord {
            id: "c".into(),
            kind: UsageKind::Call,
            account: None,
            ip: "a/b".into(),
            version: "1.0.0".into(),
            device: "wasm".into(),
            bytes_in: 10,
            bytes_out: 5,
            device_time_us: 7,
            price: Money(price),
            billed,
            outcome: "ok".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn totals_bill_only_billed_records() {
        let t = UsageTotals::of(&[rec(true, 2000), rec(false, 2000), rec(true, 2000)]);
        assert_eq!(t.records, 3);
        assert_eq!(t.billed, 2);
        assert_eq!(t.failed, 1);
        assert_eq!(t.amount, Money(4000));
        assert_eq!(t.bytes_in, 30);
    }
}
