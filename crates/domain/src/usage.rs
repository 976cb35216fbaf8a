//! Metering: one usage record per call or job.

use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What one call or job consumed. Failed calls are recorded unbilled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// The call or job id; unique, so a retry can never bill twice.
    pub id: String,
    /// `call` (synchronous) or `job`.
    pub kind: String,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// `consumer` (what the caller used and owes), `vendor` (use of the
    /// caller's IPs, without the consumers' names) or `operator` (all).
    pub view: String,
    pub since: Option<DateTime<Utc>>,
    pub records: Vec<UsageRecord>,
    pub totals: UsageTotals,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(billed: bool, price: i64) -> UsageRecord {
        UsageRecord {
            id: "c".into(),
            kind: "call".into(),
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
