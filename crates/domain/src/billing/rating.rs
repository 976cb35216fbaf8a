//! Rating a month: which plan was in force for each use (from the
//! subscription history), which uses the trial covers, and the lines of
//! one account's use of one IP. Pure: the control plane loads the records,
//! the subscriptions and the versions' plans, and calls these.

use super::{rate, reservation, Line, Plan, PlanKind, Use, DEFAULT_PLAN};
use crate::money::Money;
use crate::usage::{UsageKind, UsageRecord};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::collections::{BTreeMap, HashMap};

/// A calendar month (UTC): its name and bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Month {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Month {
    pub fn of(t: DateTime<Utc>) -> Month {
        Month::new(t.year(), t.month()).unwrap_or_else(|| Month {
            name: String::new(),
            start: t,
            end: t,
        })
    }

    fn new(year: i32, month: u32) -> Option<Month> {
        let start = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()?;
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single()?;
        Some(Month {
            name: format!("{year:04}-{month:02}"),
            start,
            end,
        })
    }

    /// `YYYY-MM`.
    pub fn parse(s: &str) -> std::result::Result<Month, String> {
        let bad = || format!("'{s}' is not a month: use YYYY-MM, e.g. 2026-12");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let (y, m) = (
            y.parse::<i32>().map_err(|_| bad())?,
            m.parse::<u32>().map_err(|_| bad())?,
        );
        if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
            return Err(bad());
        }
        Month::new(y, m).ok_or_else(bad)
    }
}

/// What rating needs of the versions used: their plans, and each IP's
/// trial (its newest version's).
#[derive(Debug, Default)]
pub struct Terms {
    /// Plans by (ip, version).
    pub by_version: HashMap<(String, String), Vec<Plan>>,
    /// Each IP's newest version: its plans and trial calls.
    pub newest: HashMap<String, (Vec<Plan>, u64)>,
}

impl Terms {
    fn plan(&self, ip: &str, version: &str, name: &str) -> Plan {
        let plans = self
            .by_version
            .get(&(ip.to_string(), version.to_string()))
            .or_else(|| self.newest.get(ip).map(|(p, _)| p))
            .map(Vec::as_slice)
            .unwrap_or_default();
        plans
            .iter()
            .find(|p| p.name == name)
            .or_else(|| plans.first())
            .cloned()
            .unwrap_or(Plan {
                name: DEFAULT_PLAN.into(),
                kind: PlanKind::PerCall {
                    per_call: Money::ZERO,
                    per_gb: Money::ZERO,
                },
            })
    }

    fn trial_calls(&self, ip: &str) -> u64 {
        self.newest.get(ip).map(|(_, trial)| *trial).unwrap_or(0)
    }
}

/// A subscription history: when each plan started, oldest first.
pub type History = Vec<(DateTime<Utc>, String)>;

/// The plan in force at `t` from a subscription history (oldest first).
pub fn plan_at(history: &[(DateTime<Utc>, String)], t: DateTime<Utc>) -> String {
    history
        .iter()
        .rev()
        .find(|(since, _)| *since <= t)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| DEFAULT_PLAN.to_string())
}

/// Rate one account's use of one IP in `month`: `records` are its
/// successful uses and reservation records of all time, oldest first.
pub fn rate_account_ip(
    ip: &str,
    records: &[&UsageRecord],
    history: &[(DateTime<Utc>, String)],
    terms: &Terms,
    month: &Month,
) -> Vec<Line> {
    let (reserves, uses): (Vec<&UsageRecord>, Vec<&UsageRecord>) = records
        .iter()
        .copied()
        .partition(|r| r.kind == UsageKind::Reserve);
    let prior = uses.iter().filter(|u| u.created_at < month.start).count() as u64;
    let mut trial_left = terms.trial_calls(ip).saturating_sub(prior);
    // Uses of the month grouped by plan, in order of first use.
    let mut groups: Vec<(String, String, Vec<Use>)> = Vec::new();
    for u in uses
        .iter()
        .filter(|u| u.created_at >= month.start && u.created_at < month.end)
    {
        let name = plan_at(history, u.created_at);
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(g) => g.2.push(Use {
                bytes_in: u.bytes_in,
                device_time_us: u.device_time_us,
            }),
            None => groups.push((
                name,
                u.version.clone(),
                vec![Use {
                    bytes_in: u.bytes_in,
                    device_time_us: u.device_time_us,
                }],
            )),
        }
    }
    // Plans in force at some time in the month, used or not.
    let mut in_force: Vec<String> = vec![plan_at(history, month.start)];
    for (since, p) in history {
        if *since >= month.start && *since < month.end && !in_force.contains(p) {
            in_force.push(p.clone());
        }
    }
    let mut lines = Vec::new();
    for (name, version, group) in &groups {
        let plan = terms.plan(ip, version, name);
        let subscribed = in_force.contains(name);
        let rated = rate(ip, &plan, trial_left, group, subscribed);
        trial_left = trial_left.saturating_sub(group.len() as u64);
        lines.extend(rated);
    }
    for name in &in_force {
        if groups.iter().any(|g| &g.0 == name) {
            continue;
        }
        let plan = terms.plan(ip, "", name);
        if matches!(plan.kind, PlanKind::Monthly { .. }) {
            lines.extend(rate(ip, &plan, trial_left, &[], true));
        }
    }
    // Dedicated deployments: their metered replica time, under the plan
    // in force when it was metered.
    let mut held: Vec<(String, String, u64)> = Vec::new();
    for r in reserves
        .iter()
        .filter(|r| r.created_at >= month.start && r.created_at < month.end)
    {
        let name = plan_at(history, r.created_at);
        match held.iter_mut().find(|h| h.0 == name) {
            Some(h) => h.2 = h.2.saturating_add(r.device_time_us),
            None => held.push((name, r.version.clone(), r.device_time_us)),
        }
    }
    for (name, version, us) in held {
        lines.extend(reservation(ip, &terms.plan(ip, &version, &name), us));
    }
    lines
}

/// Lines with the same IP, plan and item added together (for statements
/// that must not show who used what).
pub fn merge(lines: Vec<Line>) -> Vec<Line> {
    let mut out: BTreeMap<(String, String, super::LineItem), Line> = BTreeMap::new();
    for l in lines {
        let key = (l.ip.clone(), l.plan.clone(), l.item);
        match out.get_mut(&key) {
            Some(x) => {
                x.quantity = x.quantity.saturating_add(l.quantity);
                x.amount += l.amount;
            }
            None => {
                out.insert(key, l);
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(m.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(Month::of(m.start).name, "2026-12");
        for bad in ["2026", "2026-13", "26-1x", "2026-00"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_in_force_is_the_latest_started() {
        let t = |s: i64| Utc.timestamp_opt(s, 0).single().unwrap();
        let h = vec![(t(10), "pro".to_string()), (t(20), "per-call".to_string())];
        assert_eq!(plan_at(&h, t(5)), "per-call");
        assert_eq!(plan_at(&h, t(15)), "pro");
        assert_eq!(plan_at(&h, t(25)), "per-call");
    }
}
