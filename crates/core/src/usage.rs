//! Usage records: what each call and job consumed, written once and shown to
//! each role as it may see it.

use crate::*;
use accelhub_domain::UsageKind;

impl Platform {
    // ---- Usage -----------------------------------------------------------

    /// Usage the caller may see: its own consumption (user), use of its IPs
    /// without consumers' names (vendor), or everything (operator).
    pub async fn usage(
        &self,
        account: &Account,
        since: Option<DateTime<Utc>>,
    ) -> Result<UsageReport> {
        let (view, scope) = match account.role {
            Role::User => ("consumer", UsageScope::Consumer(account.id)),
            Role::Vendor => ("vendor", UsageScope::Vendor(account.id)),
            Role::Operator => ("operator", UsageScope::All),
        };
        let mut records: Vec<UsageRecord> = self.store.list_usage(scope, since).await?;
        if account.role == Role::Vendor {
            for r in &mut records {
                r.account = None;
            }
        }
        let totals = UsageTotals::of(&records);
        Ok(UsageReport {
            view: view.into(),
            since,
            records,
            totals,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn usage_record(
    id: &str,
    kind: UsageKind,
    account_id: i64,
    version: &VersionRow,
    device: &str,
    bytes_in: u64,
    bytes_out: u64,
    device_time: Duration,
    billed: bool,
    outcome: &str,
) -> NewUsage {
    NewUsage {
        id: id.to_string(),
        kind,
        account_id,
        version_id: version.id,
        device: device.to_string(),
        bytes_in,
        bytes_out,
        device_time_us: device_time.as_micros() as u64,
        price: version.price,
        billed,
        outcome: outcome.to_string(),
    }
}
