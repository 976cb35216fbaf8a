//! Rating a month: which plan was in force for each use (from the
//! subscription history), which uses the trial covers, and the lines of
//! one account's use of one IP. Pure: the control plane loads the
//! subscriptions and the versions' plans, asks the store for the use in
//! each stretch of the month under one plan (aggregates, never the
//! records), and calls these.

use super::{rate, reservation, Line, Plan, PlanKind, Uses, DEFAULT_PLAN};
use crate::money::Money;
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

    /// The IP's free trial calls per user (its newest version's).
    pub fn trial_calls(&self, ip: &str) -> u64 {
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

/// An account's use of one IP over a stretch of time, as the store
/// aggregates it (successful uses only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UseStats {
    /// Calls and jobs.
    pub uses: u64,
    /// Their input bytes.
    pub bytes_in: u64,
    /// The version of the first of them.
    pub version: Option<String>,
    /// Dedicated deployments' metered replica-microseconds.
    pub reserved_us: u64,
    /// The version of the first reservation record.
    pub reserve_version: Option<String>,
}

/// A stretch of a month under one plan, and the use in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub plan: String,
    pub stats: UseStats,
}

/// The stretches of `month` under one plan each, from a subscription
/// history (oldest first): `[start, end)` and the plan in force, in order.
/// A use at `t` is under the plan of the stretch holding `t`.
pub fn stretches(history: &[(DateTime<Utc>, String)], month: &Month) -> Vec<Stretch> {
    let mut cuts = vec![month.start];
    cuts.extend(
        history
            .iter()
            .map(|(since, _)| *since)
            .filter(|t| *t > month.start && *t < month.end),
    );
    cuts.sort();
    cuts.dedup();
    let mut out: Vec<Stretch> = Vec::new();
    for (i, start) in cuts.iter().enumerate() {
        let end = cuts.get(i + 1).copied().unwrap_or(month.end);
        let plan = plan_at(history, *start);
        match out.last_mut() {
            Some(last) if last.plan == plan => last.end = end,
            _ => out.push(Stretch {
                start: *start,
                end,
                plan,
                stats: UseStats::default(),
            }),
        }
    }
    out
}

/// Uses grouped by plan in order of first use: each plan's stretches (by
/// index), in time order.
fn groups(stretches: &[Stretch]) -> Vec<(&str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, s) in stretches.iter().enumerate() {
        if s.stats.uses == 0 {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == s.plan) {
            Some(g) => g.1.push(i),
            None => groups.push((&s.plan, vec![i])),
        }
    }
    groups
}

/// Where the trial ends part-way through a stretch: `(stretch, k)` when the
/// trial covers only the first `k` uses of that stretch. The input bytes of
/// those `k` uses (which per-gigabyte pricing does not charge) are the one
/// fact rating needs beyond the stretches' totals; the store sums them.
/// `trial_left` is the account's trial left at the start of the month.
pub fn trial_cuts(stretches: &[Stretch], mut trial_left: u64) -> Vec<(usize, u64)> {
    let mut cuts = Vec::new();
    for (_, members) in groups(stretches) {
        let n: u64 = members.iter().map(|&i| stretches[i].stats.uses).sum();
        let mut free = trial_left.min(n);
        trial_left = trial_left.saturating_sub(n);
        for i in members {
            if free == 0 {
                break;
            }
            let uses = stretches[i].stats.uses;
            if free < uses {
                cuts.push((i, free));
            }
            free = free.saturating_sub(uses);
        }
    }
    cuts
}

/// Rate one account's use of one IP in `month`. `stretches` come from
/// [`stretches`] with their use filled in; `trial_left` is the trial left
/// at the start of the month; `cut_bytes` holds, for each cut of
/// [`trial_cuts`], the input bytes of the uses the trial covers there.
pub fn rate_stretches(
    ip: &str,
    stretches: &[Stretch],
    mut trial_left: u64,
    cut_bytes: &[(usize, u64)],
    history: &[(DateTime<Utc>, String)],
    terms: &Terms,
    month: &Month,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for (name, members) in groups(stretches) {
        let count: u64 = members.iter().map(|&i| stretches[i].stats.uses).sum();
        let bytes: u64 = members
            .iter()
            .map(|&i| stretches[i].stats.bytes_in)
            .fold(0, u64::saturating_add);
        let free = trial_left.min(count);
        trial_left = trial_left.saturating_sub(count);
        // Input bytes of the free uses: whole stretches, then the part of
        // the stretch where the trial ends.
        let mut left = free;
        let mut free_bytes = 0u64;
        for &i in &members {
            if left == 0 {
                break;
            }
            let s = &stretches[i].stats;
            if left >= s.uses {
                free_bytes = free_bytes.saturating_add(s.bytes_in);
            } else {
                let part = cut_bytes
                    .iter()
                    .find(|(c, _)| *c == i)
                    .map(|(_, b)| *b)
                    .unwrap_or(0);
                free_bytes = free_bytes.saturating_add(part);
            }
            left = left.saturating_sub(s.uses);
        }
        let version = members
            .iter()
            .find_map(|&i| stretches[i].stats.version.clone())
            .unwrap_or_default();
        let plan = terms.plan(ip, &version, name);
        let uses = Uses {
            count,
            free,
            paid_bytes_in: bytes.saturating_sub(free_bytes),
        };
        lines.extend(rate(
            ip,
            &plan,
            uses,
            in_force(history, month).contains(&name.to_string()),
        ));
    }
    // Monthly plans in force at some time in the month, used or not.
    for name in in_force(history, month) {
        if stretches.iter().any(|s| s.stats.uses > 0 && s.plan == name) {
            continue;
        }
        let plan = terms.plan(ip, "", &name);
        if matches!(plan.kind, PlanKind::Monthly { .. }) {
            lines.extend(rate(ip, &plan, Uses::default(), true));
        }
    }
    // Dedicated deployments: their metered replica time, under the plan
    // in force when it was metered.
    let mut held: Vec<(&str, String, u64)> = Vec::new();
    for s in stretches.iter().filter(|s| s.stats.reserved_us > 0) {
        match held.iter_mut().find(|h| h.0 == s.plan) {
            Some(h) => h.2 = h.2.saturating_add(s.stats.reserved_us),
            None => held.push((
                &s.plan,
                s.stats.reserve_version.clone().unwrap_or_default(),
                s.stats.reserved_us,
            )),
        }
    }
    for (name, version, us) in held {
        lines.extend(reservation(ip, &terms.plan(ip, &version, name), us));
    }
    lines
}

/// Plans in force at some time in `month`: the one at its start, then
/// those subscribed during it.
fn in_force(history: &[(DateTime<Utc>, String)], month: &Month) -> Vec<String> {
    let mut in_force: Vec<String> = vec![plan_at(history, month.start)];
    for (since, p) in history {
        if *since >= month.start && *since < month.end && !in_force.contains(p) {
            in_force.push(p.clone());
        }
    }
    in_force
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

    use super::super::Use;
    use proptest::prelude::*;

    /// One successful use (or reservation record) as the oracle sees it.
    #[derive(Debug, Clone)]
    struct Rec {
        at: DateTime<Utc>,
        reserve: bool,
        version: String,
        bytes_in: u64,
        us: u64,
    }

    /// The month rated record by record: the plain algorithm the aggregate
    /// one must agree with.
    fn oracle(
        ip: &str,
        recs: &[Rec],
        history: &[(DateTime<Utc>, String)],
        terms: &Terms,
        month: &Month,
    ) -> Vec<Line> {
        let prior = recs
            .iter()
            .filter(|r| !r.reserve && r.at < month.start)
            .count() as u64;
        let mut trial_left = terms.trial_calls(ip).saturating_sub(prior);
        let mut groups: Vec<(String, String, Vec<Use>)> = Vec::new();
        for r in recs
            .iter()
            .filter(|r| !r.reserve && r.at >= month.start && r.at < month.end)
        {
            let name = plan_at(history, r.at);
            let u = Use {
                bytes_in: r.bytes_in,
                device_time_us: r.us,
            };
            match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => g.2.push(u),
                None => groups.push((name, r.version.clone(), vec![u])),
            }
        }
        let forced = in_force(history, month);
        let mut lines = Vec::new();
        for (name, version, group) in &groups {
            let plan = terms.plan(ip, version, name);
            lines.extend(rate(
                ip,
                &plan,
                Uses::of(trial_left, group),
                forced.contains(name),
            ));
            trial_left = trial_left.saturating_sub(group.len() as u64);
        }
        for name in &forced {
            if groups.iter().any(|g| &g.0 == name) {
                continue;
            }
            let plan = terms.plan(ip, "", name);
            if matches!(plan.kind, PlanKind::Monthly { .. }) {
                lines.extend(rate(ip, &plan, Uses::default(), true));
            }
        }
        let mut held: Vec<(String, String, u64)> = Vec::new();
        for r in recs
            .iter()
            .filter(|r| r.reserve && r.at >= month.start && r.at < month.end)
        {
            let name = plan_at(history, r.at);
            match held.iter_mut().find(|h| h.0 == name) {
                Some(h) => h.2 += r.us,
                None => held.push((name, r.version.clone(), r.us)),
            }
        }
        for (name, version, us) in held {
            lines.extend(reservation(ip, &terms.plan(ip, &version, &name), us));
        }
        lines
    }

    /// What the store adds up, from the records.
    fn aggregate(
        ip: &str,
        recs: &[Rec],
        history: &[(DateTime<Utc>, String)],
        terms: &Terms,
        month: &Month,
    ) -> Vec<Line> {
        let mut parts = stretches(history, month);
        for p in &mut parts {
            let inside: Vec<&Rec> = recs
                .iter()
                .filter(|r| r.at >= p.start && r.at < p.end)
                .collect();
            let uses: Vec<&&Rec> = inside.iter().filter(|r| !r.reserve).collect();
            let reserves: Vec<&&Rec> = inside.iter().filter(|r| r.reserve).collect();
            p.stats = UseStats {
                uses: uses.len() as u64,
                bytes_in: uses.iter().map(|r| r.bytes_in).sum(),
                version: uses.first().map(|r| r.version.clone()),
                reserved_us: reserves.iter().map(|r| r.us).sum(),
                reserve_version: reserves.first().map(|r| r.version.clone()),
            };
        }
        let prior = recs
            .iter()
            .filter(|r| !r.reserve && r.at < month.start)
            .count() as u64;
        let trial_left = terms.trial_calls(ip).saturating_sub(prior);
        let cut_bytes: Vec<(usize, u64)> = trial_cuts(&parts, trial_left)
            .into_iter()
            .map(|(i, k)| {
                let p = &parts[i];
                let bytes = recs
                    .iter()
                    .filter(|r| !r.reserve && r.at >= p.start && r.at < p.end)
                    .take(k as usize)
                    .map(|r| r.bytes_in)
                    .sum();
                (i, bytes)
            })
            .collect();
        rate_stretches(ip, &parts, trial_left, &cut_bytes, history, terms, month)
    }

    fn terms(trial: u64, per_gb: i64) -> Terms {
        let plans = vec![
            Plan {
                name: DEFAULT_PLAN.into(),
                kind: PlanKind::PerCall {
                    per_call: Money(2000),
                    per_gb: Money(per_gb),
                },
            },
            Plan {
                name: "pro".into(),
                kind: PlanKind::Monthly {
                    fee: Money(1_000_000),
                    included_calls: 3,
                    overage: Some(Money(700)),
                },
            },
            Plan {
                name: "dedicated".into(),
                kind: PlanKind::DeviceHour {
                    per_hour: Money(3_600_000),
                },
            },
        ];
        let mut t = Terms::default();
        t.newest.insert("acme/x".into(), (plans.clone(), trial));
        for v in ["1.0.0", "2.0.0"] {
            t.by_version
                .insert(("acme/x".into(), v.into()), plans.clone());
        }
        t
    }

    proptest! {
        /// Rating the month's aggregates per stretch gives exactly the
        /// invoice lines that rating every record gives.
        #[test]
        fn aggregates_rate_like_the_records(
            recs in proptest::collection::vec(
                (-10i64..40, any::<bool>(), any::<bool>(), 0u64..3_000_000_000, 0u64..4_000_000_000),
                0..60,
            ),
            subs in proptest::collection::vec((-5i64..35, 0usize..3), 0..4),
            trial in 0u64..12,
            per_gb in prop_oneof![Just(0i64), 1i64..5_000_000],
        ) {
            let month = Month::parse("2026-11").unwrap();
            let day = |d: i64| month.start + chrono::Duration::hours(d * 18);
            let mut recs: Vec<Rec> = recs
                .into_iter()
                .map(|(d, reserve, v2, bytes_in, us)| Rec {
                    at: day(d),
                    reserve: reserve && d % 3 == 0,
                    version: if v2 { "2.0.0" } else { "1.0.0" }.into(),
                    bytes_in,
                    us,
                })
                .collect();
            recs.sort_by_key(|r| r.at);
            let names = [DEFAULT_PLAN, "pro", "dedicated"];
            let mut history: History = subs
                .into_iter()
                .map(|(d, p)| (day(d), names[p].to_string()))
                .collect();
            history.sort_by_key(|h| h.0);
            let terms = terms(trial, per_gb);
            prop_assert_eq!(
                aggregate("acme/x", &recs, &history, &terms, &month),
                oracle("acme/x", &recs, &history, &terms, &month)
            );
        }
    }
}
