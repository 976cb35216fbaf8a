//! Usage records: what each call and job consumed, written once and shown to
//! each role as it may see it.

use crate::*;
use accelhub_domain::{Cursor, Page, UsageKind};

impl Platform {
    // ---- Usage -----------------------------------------------------------

    /// Usage the caller may see: its own consumption (user), use of its IPs
    /// without consumers' names (vendor), or everything (operator).
    /// One page of it (`limit` at most [`accelhub_domain::PAGE_MAX`]), after `cursor`,
    /// with the totals of all of it.
    pub async fn usage(
        &self,
        account: &Account,
        since: Option<DateTime<Utc>>,
        cursor: Option<&Cursor>,
        limit: Option<u32>,
    ) -> Result<UsageReport> {
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let (view, scope) = match account.role {
            Role::User => ("consumer", UsageScope::Consumer(account.id)),
            Role::Vendor => ("vendor", UsageScope::Vendor(account.id)),
            Role::Operator => ("operator", UsageScope::All),
        };
        let records: Vec<UsageRecord> = self.store.list_usage(scope, since, cursor, limit).await?;
        let Page { mut items, next } = Page::of(records, limit, |r| Cursor {
            at_ms: r.created_at.timestamp_millis(),
            id: r.id.clone(),
        });
        if account.role == Role::Vendor {
            for r in &mut items {
                r.account = None;
            }
        }
        let totals = self.store.usage_totals(scope, since).await?;
        Ok(UsageReport {
            view: view.into(),
            since,
            records: items,
            totals,
            next: next.map(|c| c.to_string()),
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
