//! Plans, subscriptions, spending limits and invoices.
//!
//! Invoices are computed from usage records whenever they are asked for, so
//! rating is idempotent and re-runs from the records; but never by reading
//! the records: the month is cut into stretches under one plan each, the
//! database adds up each stretch's use, and `accelhub_domain::billing`
//! rates those aggregates. Memory stays bounded by the number of (account,
//! IP) pairs, whatever the number of calls. Each use is rated
//! under the plan the user was subscribed to when it ran (the default
//! `per-call` plan otherwise); a monthly plan's fee is due for every month
//! the user was subscribed to it. Calls check the plan's quota (429) and
//! the account's monthly spending limit (402) before they run.

use crate::{CoreError, Platform, Result};
use accelhub_domain::billing::{
    self, merge, rate_stretches, stretches, trial_cuts, History, Invoice, Line, LineItem, Month,
    PlanKind, SpendingLimit, Subscribe, Subscription, Terms, DEFAULT_PLAN,
};
use accelhub_domain::{Account, IpName, Money, Role, UsageKind};
use accelhub_store::{UsageScope, VersionRow};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// Plan changes an account may make to one IP in a month.
const MAX_PLAN_CHANGES: usize = 10;

impl Platform {
    /// Subscribe the caller to a plan of an IP, from now on (at most
    /// [`MAX_PLAN_CHANGES`] times an IP a month).
    pub async fn subscribe(&self, caller: &Account, req: &Subscribe) -> Result<Subscription> {
        self.require_user(caller, "subscribe to plans")?;
        let name: IpName = req.ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        let version = match self.deployment_of(caller, &ip).await {
            Ok((_, v)) => (*v).clone(),
            Err(CoreError::NotFound(_)) => self.newest_verified(&ip).await?,
            Err(e) => return Err(e),
        };
        let plans = version.plans();
        if !plans.iter().any(|p| p.name == req.plan) {
            return Err(CoreError::BadRequest(format!(
                "{ip}@{} has no plan '{}'; its plans: {}",
                version.version,
                req.plan,
                plans
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // A subscription history is read whole by rating: it must not grow
        // without bound.
        let now = Utc::now();
        let month = Month::of(now);
        let changes = self
            .store
            .subscriptions(Some(caller.id), Some(&ip))
            .await?
            .iter()
            .filter(|(_, s)| s.since >= month.start)
            .count();
        if changes >= MAX_PLAN_CHANGES {
            return Err(CoreError::QuotaExceeded(format!(
                "you changed your plan of '{ip}' {changes} times this month, the most \
                 allowed; the plan now in force stays until the 1st"
            )));
        }
        // What the deployment held under the plan in force so far is
        // metered before the plan changes.
        if let Some(dep) = self.store.get_deployment(caller.id, &ip).await? {
            self.meter_reservation(&dep, Utc::now()).await?;
        }
        let s = self.store.subscribe(caller.id, &ip, &req.plan, now).await?;
        self.current_plans.remove(&(caller.id, ip));
        Ok(s)
    }

    async fn newest_verified(&self, ip: &str) -> Result<VersionRow> {
        self.store
            .list_versions(ip)
            .await?
            .into_iter()
            .find(|v| v.status == accelhub_domain::VersionStatus::Verified)
            .ok_or_else(|| CoreError::NotFound(format!("no verified IP named '{ip}'")))
    }

    /// A page of the caller's subscriptions, oldest first.
    pub async fn subscriptions(
        &self,
        caller: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<Subscription>> {
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let after = after
            .map(|c| c.int_id().map(|id| (c.at_ms, id)))
            .transpose()
            .map_err(CoreError::BadRequest)?;
        let rows = self
            .store
            .subscriptions_page(caller.id, after, limit)
            .await?;
        Ok(
            accelhub_domain::Page::of(rows, limit, |(id, s)| accelhub_domain::Cursor {
                at_ms: s.since.timestamp_millis(),
                id: id.to_string(),
            })
            .map(|(_, s)| s),
        )
    }

    pub async fn set_spending_limit(&self, caller: &Account, req: &SpendingLimit) -> Result<()> {
        self.require_user(caller, "set spending limits")?;
        self.store
            .set_spending_limit(caller.id, req.monthly)
            .await?;
        self.spending_limits.remove(&caller.id);
        Ok(())
    }

    pub async fn spending_limit(&self, caller: &Account) -> Result<Option<Money>> {
        Ok(self.store.spending_limit(caller.id).await?)
    }

    /// Versions by (ip, version) and each IP's newest, for rating.
    async fn terms(&self, ips: &[String]) -> Result<Terms> {
        let mut terms = Terms::default();
        for ip in ips {
            let versions = self.store.list_versions(ip).await?;
            if let Some(v) = versions.first() {
                terms
                    .newest
                    .insert(ip.clone(), (v.plans(), v.pricing.trial_calls));
            }
            for v in versions {
                terms
                    .by_version
                    .insert((ip.clone(), v.version.clone()), v.plans());
            }
        }
        Ok(terms)
    }

    /// Rated lines of `month` for every (account, IP) of `accounts` with
    /// use in `scope` that month or a subscription, keyed by account name.
    async fn rate_month(
        &self,
        scope: UsageScope,
        accounts: &[Account],
        month: &Month,
    ) -> Result<Vec<(String, Line)>> {
        let ids: HashMap<i64, String> = accounts.iter().map(|a| (a.id, a.name.clone())).collect();
        let only = match accounts {
            [one] => Some(one.id),
            _ => None,
        };
        let mut history: BTreeMap<(i64, String), History> = BTreeMap::new();
        for (id, s) in self.store.subscriptions(only, None).await? {
            if ids.contains_key(&id) {
                history
                    .entry((id, s.ip))
                    .or_default()
                    .push((s.since, s.plan));
            }
        }
        let mut keys: Vec<(i64, String)> = self
            .store
            .usage_pairs(scope, month.start, month.end)
            .await?
            .into_iter()
            .filter(|(id, _)| ids.contains_key(id))
            .collect();
        keys.extend(history.keys().cloned());
        keys.sort();
        keys.dedup();
        let mut ips: Vec<String> = keys.iter().map(|(_, ip)| ip.clone()).collect();
        ips.sort();
        ips.dedup();
        let terms = self.terms(&ips).await?;
        let mut out = Vec::new();
        for (id, ip) in keys {
            let h = history.get(&(id, ip.clone())).cloned().unwrap_or_default();
            let mut parts = stretches(&h, month);
            for p in &mut parts {
                p.stats = self.store.use_stats(id, &ip, p.start, p.end).await?;
            }
            let prior = self.store.count_uses(id, &ip, month.start).await?;
            let trial_left = terms.trial_calls(&ip).saturating_sub(prior);
            let mut cut_bytes = Vec::new();
            for (i, k) in trial_cuts(&parts, trial_left) {
                let p = &parts[i];
                let bytes = self
                    .store
                    .first_uses_bytes(id, &ip, p.start, p.end, k)
                    .await?;
                cut_bytes.push((i, bytes));
            }
            let name = ids.get(&id).cloned().unwrap_or_default();
            for line in rate_stretches(&ip, &parts, trial_left, &cut_bytes, &h, &terms, month) {
                out.push((name.clone(), line));
            }
        }
        Ok(out)
    }

    /// The caller's invoice (user), statement (vendor: its IPs' revenue
    /// after the platform's share) or the platform's totals (operator) for
    /// `month` (default: this month, to date).
    pub async fn invoice(&self, caller: &Account, month: Option<&str>) -> Result<Invoice> {
        let month = match month {
            Some(m) => Month::parse(m).map_err(CoreError::BadRequest)?,
            None => Month::of(Utc::now()),
        };
        let share = self.config.platform_share_bps.min(10_000);
        let accounts = self.store.list_accounts().await?;
        let (view, scope, who): (&str, UsageScope, Vec<Account>) = match caller.role {
            Role::User => (
                "user",
                UsageScope::Consumer(caller.id),
                vec![caller.clone()],
            ),
            // Its IPs' use; every user's, to rate each under their plan.
            Role::Vendor => ("vendor", UsageScope::Vendor(caller.id), accounts.clone()),
            Role::Operator => ("operator", UsageScope::All, accounts.clone()),
        };
        let mut rated = self.rate_month(scope, &who, &month).await?;
        if caller.role == Role::Vendor {
            // Subscriptions (monthly fees) may name other vendors' IPs.
            let mut ips: Vec<String> = rated.iter().map(|(_, l)| l.ip.clone()).collect();
            ips.sort();
            ips.dedup();
            let mut mine = std::collections::BTreeSet::new();
            for ip in ips {
                if self.store.ip_vendor(&ip).await? == Some(caller.id) {
                    mine.insert(ip);
                }
            }
            rated.retain(|(_, l)| mine.contains(&l.ip));
        }
        let lines: Vec<Line> = rated.into_iter().map(|(_, l)| l).collect();
        let lines = if caller.role == Role::User {
            lines
        } else {
            merge(lines)
        };
        let total = billing::total(&lines);
        let (platform_share_bps, platform_cut) = if caller.role == Role::User {
            (0, Money::ZERO)
        } else {
            // The cut is taken per IP, as vendors are paid per IP.
            let mut per_ip: BTreeMap<&str, Money> = BTreeMap::new();
            for l in &lines {
                *per_ip.entry(&l.ip).or_default() += l.amount;
            }
            let cut = per_ip
                .values()
                .fold(Money::ZERO, |a, g| a + billing::platform_cut(*g, share));
            (share, cut)
        };
        Ok(Invoice {
            view: view.into(),
            account: caller.name.clone(),
            month: month.name,
            vendor_net: Money(total.0 - platform_cut.0),
            lines,
            total,
            platform_share_bps,
            platform_cut,
        })
    }

    /// Meter every dedicated deployment (its user's plan for the IP is by
    /// the device-hour) not metered for `every`: one usage record of kind
    /// `reserve` per interval, its replica-microseconds in
    /// `device_time_us`. Returns how many were written.
    pub async fn meter_reservations(&self, every: std::time::Duration) -> Result<usize> {
        let now = Utc::now();
        let mut n = 0;
        for d in self.store.deployment_demand().await? {
            let due = d
                .deployment
                .metered_until
                .is_none_or(|t| (now - t).to_std().unwrap_or_default() >= every);
            if due && self.meter_reservation(&d.deployment, now).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Meter one deployment's held replicas up to `now`, if its plan is by
    /// the device-hour; true when a record was written.
    pub(crate) async fn meter_reservation(
        &self,
        dep: &accelhub_store::DeploymentRow,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some((_, sub)) = self
            .store
            .subscriptions(Some(dep.account_id), Some(&dep.ip))
            .await?
            .pop()
        else {
            return Ok(false);
        };
        let version = self.version_by_id(dep.version_id).await?;
        let Some(plan) = version.plans().into_iter().find(|p| p.name == sub.plan) else {
            return Ok(false);
        };
        if !matches!(plan.kind, PlanKind::DeviceHour { .. }) {
            return Ok(false);
        }
        let from = dep
            .metered_until
            .unwrap_or(dep.created_at)
            .max(sub.since)
            .max(dep.created_at);
        if from >= now {
            return Ok(false);
        }
        let events: Vec<(DateTime<Utc>, u32, u32)> = self
            .store
            .scaling_history(&dep.id, from)
            .await?
            .into_iter()
            .map(|e| (e.at, e.from, e.to))
            .collect();
        let us = billing::replica_us(&events, dep.replicas, from, now);
        // The interval is this process's only if it moves the mark first.
        if !self
            .store
            .advance_metered_until(&dep.id, dep.metered_until, now)
            .await?
        {
            return Ok(false);
        }
        if us == 0 {
            return Ok(false);
        }
        let id = format!("reserve-{}-{}", dep.id, from.timestamp_millis());
        let mut record = crate::usage_record(
            &id,
            UsageKind::Reserve,
            dep.account_id,
            &version,
            "reserve",
            0,
            0,
            std::time::Duration::from_micros(us),
            true,
            "ok",
        );
        record.price = Money::ZERO;
        self.store.record_usage(record).await?;
        Ok(true)
    }

    /// Before a call or job of `version` with `bytes_in` of input: the
    /// caller's plan must have calls left (429), and the call must keep
    /// this month's spending within the account's limit (402). Accounts
    /// with neither a quota nor a limit pay nothing for the check.
    pub(crate) async fn check_allowance(
        &self,
        account: &Account,
        version: &VersionRow,
        bytes_in: u64,
    ) -> Result<()> {
        let limit = match self.spending_limits.get(&account.id) {
            Some(l) => l,
            None => {
                let l = self.store.spending_limit(account.id).await?;
                self.spending_limits.put(account.id, l);
                l
            }
        };
        let key = (account.id, version.ip.clone());
        let plan_name = match self.current_plans.get(&key) {
            Some(p) => p,
            None => {
                let p = self
                    .store
                    .subscriptions(Some(account.id), Some(&version.ip))
                    .await?
                    .pop()
                    .map(|(_, s)| s.plan);
                self.current_plans.put(key, p.clone());
                p
            }
        };
        // The default per-call plan has no quota: without a limit, nothing
        // to check (the common case costs two cache lookups).
        if limit.is_none() && plan_name.as_deref().is_none_or(|p| p == DEFAULT_PLAN) {
            return Ok(());
        }
        let plans = version.plans();
        let plan = plan_name
            .as_deref()
            .and_then(|n| plans.iter().find(|p| p.name == n))
            .or_else(|| plans.first())
            .cloned();
        let Some(plan) = plan else { return Ok(()) };
        let quota = matches!(plan.kind, PlanKind::Monthly { overage: None, .. });
        if limit.is_none() && !quota {
            return Ok(());
        }
        // This month so far, rated as the invoice would.
        let now = Utc::now();
        let month = Month::of(now);
        let used_ip = self
            .store
            .count_uses(account.id, &version.ip, month.end)
            .await?;
        let trial_left = version.pricing.trial_calls.saturating_sub(used_ip);
        let lines = self
            .rate_month(
                UsageScope::Consumer(account.id),
                std::slice::from_ref(account),
                &month,
            )
            .await?;
        // Paid uses under the plan in force, this month.
        let used: u64 = lines
            .iter()
            .filter(|(_, l)| l.ip == version.ip && l.plan == plan.name && l.item.counts_calls())
            .map(|(_, l)| l.quantity)
            .sum();
        if quota && trial_left == 0 {
            billing::within_quota(&plan, used).map_err(CoreError::QuotaExceeded)?;
        }
        if let Some(limit) = limit {
            let spent = lines.iter().fold(Money::ZERO, |a, (_, l)| a + l.amount);
            // A monthly fee already charged this month is not due again.
            let fee_charged = lines.iter().any(|(_, l)| {
                l.ip == version.ip && l.plan == plan.name && l.item == LineItem::MonthlyFee
            });
            let next = match plan.kind {
                _ if trial_left > 0 => Money::ZERO,
                PlanKind::PerCall { .. } | PlanKind::DeviceHour { .. } => {
                    billing::marginal(&plan, used, 0, bytes_in)
                }
                PlanKind::Monthly {
                    fee,
                    included_calls,
                    overage,
                } => {
                    let fee = if fee_charged { Money::ZERO } else { fee };
                    if used < included_calls {
                        fee
                    } else {
                        fee + overage.unwrap_or(Money::ZERO)
                    }
                }
            };
            // A call priced by its device time costs what it runs: once the
            // limit is reached, no more.
            let by_time = matches!(plan.kind, PlanKind::DeviceHour { .. }) && trial_left == 0;
            if spent + next > limit || (by_time && spent >= limit) {
                return Err(CoreError::PaymentRequired(format!(
                    "this call would bring your spending this month to {} (now {}), over your \
                     monthly limit of {}: raise it with `accelhub account limit AMOUNT` or wait \
                     for the 1st",
                    spent + next,
                    spent,
                    limit
                )));
            }
        }
        Ok(())
    }
}
