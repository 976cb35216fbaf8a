//! Pricing plans and rating: what a user owes for a month of use of an IP,
//! what its vendor earns, what the platform keeps. Pure functions over
//! usage records: rating the same records again gives the same invoice,
//! so invoices are computed, never accumulated. Money is integer
//! micro-units; shares are basis points; no floats anywhere.

use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

mod rating;
pub use rating::{
    merge, plan_at, rate_stretches, stretches, trial_cuts, History, Month, Stretch, Terms, UseStats,
};

/// Bytes in the gigabyte that `per_gb` prices (10^9, as clouds bill).
pub const GB: u64 = 1_000_000_000;

/// Microseconds in the hour that `per_hour` prices.
pub const HOUR_US: u64 = 3_600_000_000;

/// How a plan charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanKind {
    /// Every successful call or job, plus its input by the gigabyte.
    PerCall { per_call: Money, per_gb: Money },
    /// A monthly fee including `included_calls`; past them, `overage`
    /// per call, or no more calls that month when there is none.
    Monthly {
        fee: Money,
        included_calls: u64,
        overage: Option<Money>,
    },
    /// By the device-hour of a dedicated deployment: every hour each of
    /// the user's deployment's replicas (device slots held for it; `--min`
    /// keeps them when idle) was up; calls under it cost nothing more.
    DeviceHour { per_hour: Money },
}

/// A named plan of an IP version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// `per-call` for the default plan; others as `ip.toml` names them.
    pub name: String,
    #[serde(flatten)]
    pub kind: PlanKind,
}

/// The name of the plan every version has, from `pricing.per_call`.
pub const DEFAULT_PLAN: &str = "per-call";

/// One successful use, as rating sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    pub bytes_in: u64,
    /// Device time the use held, in microseconds.
    pub device_time_us: u64,
}

/// A line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    pub ip: String,
    pub plan: String,
    pub item: LineItem,
    pub quantity: u64,
    pub amount: Money,
}

/// What an invoice line charges; `quantity` counts it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum LineItem {
    /// Calls the trial covers (free).
    #[serde(rename = "trial calls")]
    TrialCalls,
    /// Calls at the plan's price per call (free under a device-hour plan).
    #[serde(rename = "calls")]
    Calls,
    /// Input bytes, priced by the gigabyte.
    #[serde(rename = "input bytes")]
    InputBytes,
    /// A monthly plan's fee.
    #[serde(rename = "monthly fee")]
    MonthlyFee,
    /// Calls a monthly fee includes.
    #[serde(rename = "included calls")]
    IncludedCalls,
    /// Calls past those, at the overage price.
    #[serde(rename = "overage calls")]
    OverageCalls,
    /// A dedicated deployment's replicas times the time each was held.
    #[serde(rename = "replica microseconds")]
    ReplicaMicroseconds,
}

impl LineItem {
    /// The name invoices show.
    pub fn as_str(self) -> &'static str {
        match self {
            LineItem::TrialCalls => "trial calls",
            LineItem::Calls => "calls",
            LineItem::InputBytes => "input bytes",
            LineItem::MonthlyFee => "monthly fee",
            LineItem::IncludedCalls => "included calls",
            LineItem::OverageCalls => "overage calls",
            LineItem::ReplicaMicroseconds => "replica microseconds",
        }
    }

    /// Whether the line counts calls (what a plan's quota counts).
    pub fn counts_calls(self) -> bool {
        matches!(
            self,
            LineItem::Calls | LineItem::IncludedCalls | LineItem::OverageCalls
        )
    }
}

impl fmt::Display for LineItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compared with the name invoices show.
impl PartialEq<&str> for LineItem {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// `a * b / c`, rounded half up, without overflow.
fn mul_div(a: Money, b: u64, c: u64) -> Money {
    let v = (a.0 as i128 * b as i128 + c as i128 / 2) / c.max(1) as i128;
    Money(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

fn times(a: Money, n: u64) -> Money {
    mul_div(a, n, 1)
}

/// A group of successful uses under one plan, as rating needs them: how
/// many, how many of those (the first) the trial covers, and the input
/// bytes of the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses {
    pub count: u64,
    /// The first `free` uses are the trial's (`free <= count`).
    pub free: u64,
    /// Input bytes of the uses the trial does not cover.
    pub paid_bytes_in: u64,
}

impl Uses {
    /// Summarise `uses` (in order) with `trial_left` trial calls left.
    pub fn of(trial_left: u64, uses: &[Use]) -> Uses {
        let free = trial_left.min(uses.len() as u64);
        Uses {
            count: uses.len() as u64,
            free,
            paid_bytes_in: uses[free as usize..]
                .iter()
                .map(|u| u.bytes_in)
                .fold(0, u64::saturating_add),
        }
    }
}

/// Rate one month of a user's successful uses of one IP under `plan`.
/// The first `uses.free` are free: the user's remaining trial quota at the
/// start of the month. A monthly plan's fee is due for a month the user was
/// subscribed, used or not (`subscribed`).
pub fn rate(ip: &str, plan: &Plan, uses: Uses, subscribed: bool) -> Vec<Line> {
    let line = |item: LineItem, quantity: u64, amount: Money| Line {
        ip: ip.to_string(),
        plan: plan.name.clone(),
        item,
        quantity,
        amount,
    };
    let free = uses.free.min(uses.count);
    let paid = uses.count - free;
    let mut lines = Vec::new();
    if free > 0 {
        lines.push(line(LineItem::TrialCalls, free, Money::ZERO));
    }
    match plan.kind {
        PlanKind::PerCall { per_call, per_gb } => {
            if paid > 0 {
                lines.push(line(LineItem::Calls, paid, times(per_call, paid)));
            }
            let bytes = uses.paid_bytes_in;
            if per_gb != Money::ZERO && bytes > 0 {
                lines.push(line(
                    LineItem::InputBytes,
                    bytes,
                    mul_div(per_gb, bytes, GB),
                ));
            }
        }
        PlanKind::DeviceHour { .. } => {
            if paid > 0 {
                lines.push(line(LineItem::Calls, paid, Money::ZERO));
            }
        }
        PlanKind::Monthly {
            fee,
            included_calls,
            overage,
        } => {
            if subscribed || paid > 0 {
                lines.push(line(LineItem::MonthlyFee, 1, fee));
            }
            let n = paid;
            let included = n.min(included_calls);
            if included > 0 {
                lines.push(line(LineItem::IncludedCalls, included, Money::ZERO));
            }
            let over = n - included;
            if over > 0 {
                lines.push(line(
                    LineItem::OverageCalls,
                    over,
                    times(overage.unwrap_or(Money::ZERO), over),
                ));
            }
        }
    }
    lines
}

/// The device-hour line of a dedicated deployment that held its replicas
/// for `replica_us` microseconds (replicas times time) under `plan`.
pub fn reservation(ip: &str, plan: &Plan, replica_us: u64) -> Option<Line> {
    match plan.kind {
        PlanKind::DeviceHour { per_hour } if replica_us > 0 => Some(Line {
            ip: ip.to_string(),
            plan: plan.name.clone(),
            item: LineItem::ReplicaMicroseconds,
            quantity: replica_us,
            amount: mul_div(per_hour, replica_us, HOUR_US),
        }),
        _ => None,
    }
}

/// Replica-microseconds a deployment held in `[start, end)`: `events` are
/// its scaling decisions `(at, from, to)`, oldest first; `current` its
/// replicas now (the value after the last event).
pub fn replica_us(
    events: &[(chrono::DateTime<chrono::Utc>, u32, u32)],
    current: u32,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> u64 {
    if end <= start {
        return 0;
    }
    let at = |t: chrono::DateTime<chrono::Utc>| -> u32 {
        match events.iter().rev().find(|e| e.0 <= t) {
            Some(e) => e.2,
            None => events.first().map(|e| e.1).unwrap_or(current),
        }
    };
    let mut cuts: Vec<chrono::DateTime<chrono::Utc>> = vec![start];
    cuts.extend(
        events
            .iter()
            .map(|e| e.0)
            .filter(|t| *t > start && *t < end),
    );
    cuts.push(end);
    cuts.windows(2)
        .map(|w| {
            let us = (w[1] - w[0]).num_microseconds().unwrap_or(i64::MAX).max(0) as u64;
            us.saturating_mul(at(w[0]) as u64)
        })
        .fold(0, u64::saturating_add)
}

/// Whether one more call is allowed this month: `used` successful paid
/// calls so far (past the trial). Only a monthly plan without overage has
/// a quota.
pub fn within_quota(plan: &Plan, used: u64) -> Result<(), String> {
    match plan.kind {
        PlanKind::Monthly {
            included_calls,
            overage: None,
            ..
        } if used >= included_calls => Err(format!(
            "plan '{}' includes {included_calls} calls a month and they are used up; \
             they renew on the 1st, or subscribe to a plan with more",
            plan.name
        )),
        _ => Ok(()),
    }
}

/// What one more call would add to the bill under `plan`, after `used`
/// paid calls this month and with `trial_left` free calls left. A call
/// priced by device time costs what it runs, known only after: zero here.
pub fn marginal(plan: &Plan, used: u64, trial_left: u64, bytes_in: u64) -> Money {
    if trial_left > 0 {
        return Money::ZERO;
    }
    match plan.kind {
        PlanKind::PerCall { per_call, per_gb } => per_call + mul_div(per_gb, bytes_in, GB),
        PlanKind::DeviceHour { .. } => Money::ZERO,
        PlanKind::Monthly {
            included_calls,
            overage,
            fee,
        } => {
            let fee_due = if used == 0 { fee } else { Money::ZERO };
            if used < included_calls {
                fee_due
            } else {
                fee_due + overage.unwrap_or(Money::ZERO)
            }
        }
    }
}

/// The platform's share of `gross`, in basis points (1/100 of a percent),
/// rounded down: the vendor keeps the odd micro-unit.
pub fn platform_cut(gross: Money, share_bps: u32) -> Money {
    Money(((gross.0 as i128 * share_bps.min(10_000) as i128) / 10_000) as i64)
}

/// Sum of line amounts.
pub fn total(lines: &[Line]) -> Money {
    lines.iter().fold(Money::ZERO, |a, l| a + l.amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn per_call(price: i64, per_gb: i64) -> Plan {
        Plan {
            name: DEFAULT_PLAN.into(),
            kind: PlanKind::PerCall {
                per_call: Money(price),
                per_gb: Money(per_gb),
            },
        }
    }

    fn monthly(fee: i64, included: u64, overage: Option<i64>) -> Plan {
        Plan {
            name: "pro".into(),
            kind: PlanKind::Monthly {
                fee: Money(fee),
                included_calls: included,
                overage: overage.map(Money),
            },
        }
    }

    fn uses(n: usize, bytes: u64) -> Vec<Use> {
        vec![
            Use {
                bytes_in: bytes,
                device_time_us: 0,
            };
            n
        ]
    }

    #[test]
    fn dedicated_deployments_pay_for_their_replica_hours() {
        use chrono::{Duration, TimeZone, Utc};
        let plan = Plan {
            name: "dedicated".into(),
            kind: PlanKind::DeviceHour {
                per_hour: Money(3_600_000),
            },
        };
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let h = |n: i64| t0 + Duration::hours(n);
        // 0 → 1 replica at 1h, 1 → 3 at 2h, 3 → 0 at 4h; now 0.
        let events = [(h(1), 0, 1), (h(2), 1, 3), (h(4), 3, 0)];
        let hour = 3_600_000_000u64;
        assert_eq!(replica_us(&events, 0, h(0), h(10)), 7 * hour);
        assert_eq!(replica_us(&events, 0, h(3), h(5)), 3 * hour);
        assert_eq!(replica_us(&[], 2, h(0), h(1)), 2 * hour);
        assert_eq!(replica_us(&events, 0, h(5), h(3)), 0);
        // 7 replica-hours at 3.6 an hour.
        let line = reservation("acme/x", &plan, 7 * hour).unwrap();
        assert_eq!(line.amount, Money(25_200_000));
        assert!(reservation("acme/x", &plan, 0).is_none());
        // Calls under it cost nothing more.
        let lines = rate("acme/x", &plan, Uses::of(0, &uses(3, 100)), false);
        assert_eq!((lines[0].quantity, lines[0].amount), (3, Money::ZERO));
        assert_eq!(marginal(&plan, 3, 0, 10), Money::ZERO);
    }

    #[test]
    fn per_call_with_input_by_the_gigabyte_and_a_trial() {
        let lines = rate(
            "acme/x",
            &per_call(2000, 10_000),
            Uses::of(2, &uses(5, GB / 2)),
            false,
        );
        assert_eq!(lines[0].item, "trial calls");
        assert_eq!((lines[0].quantity, lines[0].amount), (2, Money::ZERO));
        assert_eq!((lines[1].quantity, lines[1].amount), (3, Money(6000)));
        // 1.5 GB at 0.01 per GB.
        assert_eq!(lines[2].amount, Money(15_000));
        assert_eq!(total(&lines), Money(21_000));
        assert!(rate("acme/x", &per_call(2000, 0), Uses::default(), false).is_empty());
    }

    #[test]
    fn monthly_fee_included_calls_and_overage() {
        let plan = monthly(49_000_000, 100, Some(500));
        let lines = rate("acme/x", &plan, Uses::of(0, &uses(130, 10)), true);
        assert_eq!(total(&lines), Money(49_000_000 + 30 * 500));
        // Subscribed and unused: the fee is still due.
        assert_eq!(
            total(&rate("acme/x", &plan, Uses::default(), true)),
            Money(49_000_000)
        );
        assert!(within_quota(&plan, 1000).is_ok());
        let capped = monthly(1_000_000, 3, None);
        assert!(within_quota(&capped, 2).is_ok());
        assert!(within_quota(&capped, 3)
            .unwrap_err()
            .contains("3 calls a month"));
        assert_eq!(marginal(&capped, 0, 0, 0), Money(1_000_000));
        assert_eq!(marginal(&capped, 1, 0, 0), Money::ZERO);
        assert_eq!(marginal(&plan, 100, 0, 0), Money(500));
        assert_eq!(
            marginal(&per_call(2000, 1_000_000), 7, 0, GB),
            Money(1_002_000)
        );
        assert_eq!(marginal(&per_call(2000, 0), 7, 1, 0), Money::ZERO);
    }

    #[test]
    fn the_platform_cut_rounds_down() {
        assert_eq!(platform_cut(Money(1_000_001), 2000), Money(200_000));
        assert_eq!(platform_cut(Money(10), 10_000), Money(10));
        assert_eq!(platform_cut(Money(10), 20_000), Money(10), "capped at 100%");
    }

    fn plan_strategy() -> impl Strategy<Value = Plan> {
        prop_oneof![
            (0i64..10_000, 0i64..1_000_000).prop_map(|(p, g)| per_call(p, g)),
            (
                0i64..100_000_000,
                0u64..50,
                proptest::option::of(0i64..10_000)
            )
                .prop_map(|(f, i, o)| monthly(f, i, o)),
        ]
    }

    proptest! {
        /// Rating is a function of the records: the same month rated twice
        /// is the same invoice; the lines add up; more use never costs
        /// less; the marginal price of each call sums to the bill.
        #[test]
        fn rating_is_deterministic_additive_and_monotone(
            plan in plan_strategy(),
            trial in 0u64..20,
            bytes in proptest::collection::vec((0u64..3 * GB, 0u64..HOUR_US), 0..60),
        ) {
            let all: Vec<Use> = bytes
                .iter()
                .map(|(b, t)| Use { bytes_in: *b, device_time_us: *t })
                .collect();
            let a = rate("acme/x", &plan, Uses::of(trial, &all), false);
            prop_assert_eq!(&a, &rate("acme/x", &plan, Uses::of(trial, &all), false));
            prop_assert!(a.iter().all(|l| l.amount >= Money::ZERO));
            let t = total(&a);
            if let Some((_, fewer)) = all.split_last() {
                prop_assert!(total(&rate("acme/x", &plan, Uses::of(trial, fewer), false)) <= t);
            }
            prop_assert!(total(&rate("acme/x", &plan, Uses::of(trial + 1, &all), false)) <= t);
            // Per call without input pricing, and monthly plans: the sum
            // of marginal prices is the bill exactly.
            let exact = match plan.kind {
                PlanKind::PerCall { per_gb, .. } => per_gb == Money::ZERO,
                PlanKind::Monthly { .. } => true,
                PlanKind::DeviceHour { .. } => false,
            };
            if exact {
                let mut sum = Money::ZERO;
                for (i, u) in all.iter().enumerate() {
                    let trial_left = trial.saturating_sub(i as u64);
                    let used = (i as u64).saturating_sub(trial);
                    sum += marginal(&plan, used, trial_left, u.bytes_in);
                }
                prop_assert_eq!(sum, t);
            }
        }

        /// The platform's cut and the vendor's rest add up to the gross.
        #[test]
        fn shares_add_up(gross in 0i64..i64::MAX / 2, bps in 0u32..=10_000) {
            let cut = platform_cut(Money(gross), bps);
            prop_assert!(cut.0 >= 0 && cut.0 <= gross);
            prop_assert_eq!(cut.0 + (gross - cut.0), gross);
        }
    }
}

/// A version's pricing beyond its per-call price: input by the gigabyte,
/// the free trial, and further plans (stored with the version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PricingTerms {
    #[serde(default)]
    pub per_gb: Money,
    /// Free successful calls per user (over all versions of the IP).
    #[serde(default)]
    pub trial_calls: u64,
    /// Plans besides the default `per-call` one.
    #[serde(default)]
    pub plans: Vec<Plan>,
}

impl PricingTerms {
    /// Every plan of a version whose per-call price is `per_call`: the
    /// default plan first.
    pub fn all_plans(&self, per_call: Money) -> Vec<Plan> {
        let mut v = vec![Plan {
            name: DEFAULT_PLAN.into(),
            kind: PlanKind::PerCall {
                per_call,
                per_gb: self.per_gb,
            },
        }];
        v.extend(self.plans.iter().cloned());
        v
    }
}

/// A month's bill, statement or totals, as `GET /v1/invoices` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    /// `user` (what the caller owes), `vendor` (what the caller's IPs
    /// earned, without the users' names) or `operator` (everything).
    pub view: String,
    pub account: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub lines: Vec<Line>,
    /// The sum of the lines: owed (user) or earned before the platform's
    /// share (vendor, operator).
    pub total: Money,
    /// The platform's share in basis points (vendor and operator views).
    pub platform_share_bps: u32,
    /// The platform's part of `total`.
    pub platform_cut: Money,
    /// What the vendors are paid: `total - platform_cut`.
    pub vendor_net: Money,
}

/// A user's subscription to a plan of an IP, from `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub ip: String,
    pub plan: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// `POST /v1/subscriptions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    #[schema(
        pattern = r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$",
        example = "acme/echo"
    )]
    pub ip: String,
    pub plan: String,
}

/// `PUT /v1/account/spending-limit`: a monthly cap on what the caller's
/// calls may cost; `None` removes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendingLimit {
    pub monthly: Option<Money>,
}
