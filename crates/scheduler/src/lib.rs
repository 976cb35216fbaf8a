//! Placement of calls and jobs on device slots, aware of what loading an
//! image costs. Pure logic: no IO, no clock, no async; the control plane
//! (and `bench/scheduler`'s simulator) feed it the cluster's state and
//! apply its decisions.
//!
//! A *slot* holds at most one loaded image (an FPGA's reconfigurable
//! region, a CPU worker lane); loading another one has a cost (compiling,
//! programming, uploading resident data). [`Policy::Affinity`] places work:
//!
//! 1. Work that has waited longer than [`Config::max_wait`] goes first,
//!    warm if it can, else cold: affinity never starves anyone.
//! 2. Otherwise, in fair order (tenants with the fewest running first,
//!    then oldest), work goes to an idle slot that already holds its image.
//! 3. Failing that, work is loaded into the idle slot whose eviction costs
//!    least: an empty slot, else by GreedyDual credit (cost-aware LRU: a
//!    slot's credit is the inflation at its last use plus its image's load
//!    cost times its uses, GreedyDual-Size-Frequency; evicting raises the
//!    inflation to the victim's credit), on a
//!    node that holds the work's resident data when one does.
//!    Work waits for the slots already holding its image when their
//!    backlog (the first to free, then the queued work of that image
//!    shared among them) clears sooner than the load would cost, counting
//!    the reload of the image it evicts; so do sync calls whose image is
//!    loaded anywhere, and work whose deployment holds its most replicas.
//!    A victim no queued work wants goes first.
//!
//! [`Policy::Fifo`] is the baseline: queue order, first idle slot.

use std::collections::{BTreeMap, BTreeSet};

/// One slot, as the control plane last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub node: String,
    /// Device class, e.g. `wasm`, `cpu`, `opencl`.
    pub class: String,
    pub healthy: bool,
    /// The image it holds.
    pub loaded: Option<String>,
    /// What loading that image cost (ms): evicting it may mean paying it
    /// again.
    pub load_cost: f64,
    /// When it is expected to be free (ms), or `None` when idle.
    pub busy_until: Option<f64>,
    /// GreedyDual credit of the loaded image.
    pub credit: f64,
}

impl Slot {
    pub fn new(node: &str, class: &str) -> Slot {
        Slot {
            node: node.into(),
            class: class.into(),
            healthy: true,
            loaded: None,
            load_cost: 0.0,
            busy_until: None,
            credit: 0.0,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.healthy && self.busy_until.is_none()
    }
}

/// A call or job waiting for a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub id: u64,
    pub tenant: String,
    /// The image it runs (one implementation of one IP version).
    pub image: String,
    pub class: String,
    /// What loading its image costs (ms).
    pub load_cost: f64,
    /// How long it is expected to run (ms).
    pub expected: f64,
    /// Resident data it needs (e.g. an index's SHA-256).
    pub data: Option<String>,
    /// A sync call: it goes to a warm slot when its image is loaded
    /// anywhere.
    pub sync: bool,
    pub queued_at: f64,
}

/// Where the cluster stands: slots, and resident data by node.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub slots: Vec<Slot>,
    pub resident: BTreeMap<String, BTreeSet<String>>,
}

impl Cluster {
    /// Slots holding `image`, busy or not.
    pub fn replicas(&self, image: &str) -> usize {
        self.slots
            .iter()
            .filter(|s| s.healthy && s.loaded.as_deref() == Some(image))
            .count()
    }
}

/// One decision: run `work` on `slot`, loading its image first if
/// `reconfigure`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub work: u64,
    pub tenant: String,
    pub slot: usize,
    pub reconfigure: bool,
    /// The image the load replaced, if the slot held one.
    pub evicted: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Fifo,
    Affinity,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    /// Work waiting this long (ms) is placed before any other.
    pub max_wait: f64,
    /// Another replica of an image is loaded only when waiting for the
    /// existing ones would take this many times what the load costs: a
    /// replica added for a burst is evicted after it, so adding one too
    /// eagerly trades a short wait for two loads.
    pub replicate_after: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: Policy::Affinity,
            max_wait: 5_000.0,
            replicate_after: REPLICATE_AFTER,
        }
    }
}

/// See [`Config::replicate_after`].
pub const REPLICATE_AFTER: f64 = 4.0;

/// Counts since the scheduler started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub placed: u64,
    /// Placements that loaded an image (into an empty slot or over
    /// another image).
    pub reconfigurations: u64,
    /// Placements into an empty slot.
    pub cold_starts: u64,
    pub evictions: u64,
}

pub struct Scheduler {
    config: Config,
    inflation: f64,
    /// Placements per image: GreedyDual-Size-Frequency weighs a load's
    /// cost by how often the image is used.
    uses: BTreeMap<String, u64>,
    running: BTreeMap<String, usize>,
    max_replicas: BTreeMap<String, usize>,
    pub stats: Stats,
}

impl Scheduler {
    pub fn new(config: Config) -> Self {
        Scheduler {
            config,
            inflation: 0.0,
            uses: BTreeMap::new(),
            running: BTreeMap::new(),
            max_replicas: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    /// At most `max` slots may hold `image` (a deployment's `max`).
    pub fn set_max_replicas(&mut self, image: &str, max: usize) {
        self.max_replicas.insert(image.into(), max);
    }

    /// Work of `tenant` running now.
    pub fn running(&self, tenant: &str) -> usize {
        self.running.get(tenant).copied().unwrap_or(0)
    }

    /// A slot finished its work: it is idle again, its image kept.
    pub fn finished(&mut self, cluster: &mut Cluster, slot: usize, tenant: &str) {
        if let Some(s) = cluster.slots.get_mut(slot) {
            s.busy_until = None;
        }
        if let Some(n) = self.running.get_mut(tenant) {
            *n = n.saturating_sub(1);
        }
    }

    /// Place what can be placed now. Assigned work leaves `queue`; its
    /// slot is marked busy until `now` + (load cost if loading) +
    /// expected time, and holds its image.
    pub fn assign(
        &mut self,
        now: f64,
        cluster: &mut Cluster,
        queue: &mut Vec<Work>,
    ) -> Vec<Assignment> {
        let mut out = Vec::new();
        loop {
            let next = match self.config.policy {
                Policy::Fifo => self.next_fifo(cluster, queue),
                Policy::Affinity => self.next_affinity(now, cluster, queue),
            };
            let Some((qi, slot)) = next else {
                return out;
            };
            let work = queue.remove(qi);
            out.push(self.place(now, cluster, work, slot));
        }
    }

    fn place(&mut self, now: f64, cluster: &mut Cluster, work: Work, slot: usize) -> Assignment {
        let s = &mut cluster.slots[slot];
        let warm = s.loaded.as_deref() == Some(work.image.as_str());
        let evicted = if warm { None } else { s.loaded.take() };
        self.stats.placed += 1;
        if !warm {
            self.stats.reconfigurations += 1;
            if evicted.is_some() {
                self.stats.evictions += 1;
                // GreedyDual: the clock moves to the victim's credit.
                self.inflation = self.inflation.max(s.credit);
            } else {
                self.stats.cold_starts += 1;
            }
        }
        s.loaded = Some(work.image.clone());
        s.load_cost = work.load_cost;
        let uses = self.uses.entry(work.image.clone()).or_default();
        *uses += 1;
        s.credit = self.inflation + work.load_cost * *uses as f64;
        let load = if warm { 0.0 } else { work.load_cost };
        s.busy_until = Some(now + load + work.expected);
        if let Some(d) = &work.data {
            cluster
                .resident
                .entry(s.node.clone())
                .or_default()
                .insert(d.clone());
        }
        *self.running.entry(work.tenant.clone()).or_default() += 1;
        Assignment {
            work: work.id,
            tenant: work.tenant,
            slot,
            reconfigure: !warm,
            evicted,
        }
    }

    /// The baseline: the oldest work that has an idle slot of its class
    /// takes the first such slot.
    fn next_fifo(&self, cluster: &Cluster, queue: &[Work]) -> Option<(usize, usize)> {
        let mut order: Vec<usize> = (0..queue.len()).collect();
        order.sort_by(|&a, &b| {
            queue[a]
                .queued_at
                .total_cmp(&queue[b].queued_at)
                .then(queue[a].id.cmp(&queue[b].id))
        });
        order.into_iter().find_map(|qi| {
            let w = &queue[qi];
            cluster
                .slots
                .iter()
                .position(|s| s.is_idle() && s.class == w.class)
                .map(|slot| (qi, slot))
        })
    }

    fn next_affinity(&self, now: f64, cluster: &Cluster, queue: &[Work]) -> Option<(usize, usize)> {
        let aged = |w: &Work| now - w.queued_at >= self.config.max_wait;
        // Fair order: aged first, then tenants with the least running,
        // then the oldest.
        let mut order: Vec<usize> = (0..queue.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&queue[a], &queue[b]);
            aged(y)
                .cmp(&aged(x))
                .then(self.running(&x.tenant).cmp(&self.running(&y.tenant)))
                .then(x.queued_at.total_cmp(&y.queued_at))
                .then(x.id.cmp(&y.id))
        });
        // Per image: queued work (ms), and the slots holding it.
        let mut backlog: BTreeMap<&str, f64> = BTreeMap::new();
        for w in queue {
            *backlog.entry(&w.image).or_default() += w.expected;
        }
        #[derive(Default)]
        struct Holders {
            count: usize,
            first_free: f64,
            idle: Vec<usize>,
        }
        let mut holders: BTreeMap<(&str, &str), Holders> = BTreeMap::new();
        for (i, s) in cluster.slots.iter().enumerate() {
            let (true, Some(image)) = (s.healthy, s.loaded.as_deref()) else {
                continue;
            };
            let h = holders.entry((image, &s.class)).or_insert(Holders {
                first_free: f64::INFINITY,
                ..Default::default()
            });
            h.count += 1;
            h.first_free = h
                .first_free
                .min(s.busy_until.map_or(0.0, |t| (t - now).max(0.0)));
            if s.busy_until.is_none() {
                h.idle.push(i);
            }
        }
        let has_data = |w: &Work, s: &Slot| {
            w.data
                .as_ref()
                .is_some_and(|d| cluster.resident.get(&s.node).is_some_and(|r| r.contains(d)))
        };
        let warm_idle = |w: &Work| -> Option<usize> {
            holders
                .get(&(w.image.as_str(), w.class.as_str()))?
                .idle
                .iter()
                .copied()
                .min_by_key(|&i| !has_data(w, &cluster.slots[i]))
        };
        // How long `w` would wait for the slots already holding its image:
        // the first of them to free, then the rest of that image's queued
        // work shared among them. `None` when no slot holds it.
        let wait_for_replicas = |w: &Work| -> Option<f64> {
            let h = holders.get(&(w.image.as_str(), w.class.as_str()))?;
            let ahead = backlog.get(w.image.as_str()).copied().unwrap_or(0.0) - w.expected;
            Some(h.first_free + ahead.max(0.0) / h.count as f64)
        };
        // Whether loading `w` into `victim` should wait for the least
        // valuable slot of the class instead: it is busy, but frees before
        // the evicted image's reload would have cost.
        let keep_victim = |w: &Work, victim: &Slot| {
            let patience = victim.load_cost * self.config.replicate_after;
            let cheapest = cluster
                .slots
                .iter()
                .filter(|s| s.healthy && s.class == w.class)
                .min_by(|a, b| a.credit.total_cmp(&b.credit));
            victim.loaded.is_some()
                && cheapest.is_some_and(|s| {
                    s.credit < victim.credit && s.busy_until.is_some_and(|t| t - now <= patience)
                })
        };
        // 1. Aged work first: warm if it can; else loaded, if no slot holds
        //    its image (one that does serves it in turn) and no valuable
        //    image must go for it.
        for &qi in order.iter().take_while(|&&qi| aged(&queue[qi])) {
            let w = &queue[qi];
            let slot = warm_idle(w).or_else(|| {
                if wait_for_replicas(w).is_some() {
                    return None;
                }
                self.cold_slot(cluster, queue, w)
                    .filter(|&s| !keep_victim(w, &cluster.slots[s]))
            });
            if let Some(slot) = slot {
                return Some((qi, slot));
            }
        }
        // 2. Warm placements.
        for &qi in &order {
            if let Some(slot) = warm_idle(&queue[qi]) {
                return Some((qi, slot));
            }
        }
        // 3. Loads: a first replica always; another one only when waiting
        //    for the existing ones would take longer than the load costs,
        //    counting the reload of the image it evicts. Sync calls wait
        //    for any replica there is.
        for &qi in &order {
            let w = &queue[qi];
            let wait = wait_for_replicas(w);
            if w.sync && wait.is_some() {
                continue;
            }
            let Some(slot) = self.cold_slot(cluster, queue, w) else {
                continue;
            };
            let victim = &cluster.slots[slot];
            let cost = w.load_cost
                + if victim.loaded.is_some() {
                    victim.load_cost
                } else {
                    0.0
                };
            if wait.is_some_and(|t| t <= cost * self.config.replicate_after) {
                continue;
            }
            if keep_victim(w, victim) {
                continue;
            }
            return Some((qi, slot));
        }
        None
    }

    /// The idle slot to load `w` into, if its deployment may grow: empty
    /// first, then one whose image no queued work wants, then on a node
    /// holding its data, then the lowest credit.
    fn cold_slot(&self, cluster: &Cluster, queue: &[Work], w: &Work) -> Option<usize> {
        if let Some(&max) = self.max_replicas.get(&w.image) {
            if cluster.replicas(&w.image) >= max {
                return None;
            }
        }
        let has_data = |s: &Slot| {
            w.data
                .as_ref()
                .is_some_and(|d| cluster.resident.get(&s.node).is_some_and(|r| r.contains(d)))
        };
        cluster
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_idle() && s.class == w.class)
            .min_by(|(_, a), (_, b)| {
                let wanted = |s: &Slot| {
                    s.loaded
                        .as_ref()
                        .is_some_and(|i| queue.iter().any(|q| &q.image == i))
                };
                a.loaded
                    .is_some()
                    .cmp(&b.loaded.is_some())
                    .then(wanted(a).cmp(&wanted(b)))
                    .then(has_data(b).cmp(&has_data(a)))
                    .then(a.credit.total_cmp(&b.credit))
            })
            .map(|(i, _)| i)
    }
}

/// How many of the oldest queued jobs a worker asking for work is shown
/// (at most 4 of each deployment's, so one backlog never hides another's):
/// the control plane and `bench/scheduler` both use it.
pub const CANDIDATES: u32 = 32;

/// A queued job, as a worker pulling work sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub tenant: String,
    /// The image it runs.
    pub image: String,
    /// Resident data it needs (e.g. an index's SHA-256).
    pub data: Option<String>,
    /// How long it has waited (ms).
    pub waited: f64,
    /// Its deployment runs as many jobs as it has replicas: it must wait.
    pub capped: bool,
}

/// What the device of a worker asking for work holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holding {
    /// Images loaded and ready.
    pub images: BTreeSet<String>,
    /// Resident data.
    pub resident: BTreeSet<String>,
}

/// Pull-model placement: a worker of an idle slot asks for work, and gets
/// one of the queued `candidates` (oldest first). With [`Policy::Affinity`]:
/// work that has waited [`Config::max_wait`] goes first (oldest); then work
/// whose resident data this device holds, then work whose image it holds
/// (no reconfiguration); then the rest. Within each group, the tenant
/// with the fewest running jobs (`running`), then the oldest. With
/// [`Policy::Fifo`], the oldest. Work whose deployment is at its
/// replicas (`capped`) is never taken. Returns an index into `candidates`.
pub fn pick(
    config: &Config,
    holding: &Holding,
    running: &BTreeMap<String, usize>,
    candidates: &[Candidate],
) -> Option<usize> {
    if config.policy == Policy::Fifo {
        return candidates.iter().position(|c| !c.capped);
    }
    if let Some(i) = candidates
        .iter()
        .position(|c| !c.capped && c.waited >= config.max_wait)
    {
        return Some(i);
    }
    let group = |c: &Candidate| -> u8 {
        if c.data
            .as_ref()
            .is_some_and(|d| holding.resident.contains(d))
        {
            0
        } else if holding.images.contains(&c.image) {
            1
        } else {
            2
        }
    };
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.capped)
        .min_by(|(i, a), (j, b)| {
            let ra = running.get(&a.tenant).copied().unwrap_or(0);
            let rb = running.get(&b.tenant).copied().unwrap_or(0);
            (group(a), ra, *i).cmp(&(group(b), rb, *j))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod pick_tests {
    use super::*;

    fn c(tenant: &str, image: &str, data: Option<&str>, waited: f64) -> Candidate {
        Candidate {
            tenant: tenant.into(),
            image: image.into(),
            data: data.map(str::to_string),
            waited,
            capped: false,
        }
    }

    fn holding(images: &[&str], resident: &[&str]) -> Holding {
        Holding {
            images: images.iter().map(|s| s.to_string()).collect(),
            resident: resident.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn warm_first_then_resident_data_first_then_oldest() {
        let cfg = Config::default();
        let none = BTreeMap::new();
        let q = [
            c("t", "a", None, 100.0),
            c("t", "b", None, 90.0),
            c("t", "c", Some("idx"), 80.0),
        ];
        assert_eq!(pick(&cfg, &holding(&[], &[]), &none, &q), Some(0));
        assert_eq!(pick(&cfg, &holding(&["b"], &[]), &none, &q), Some(1));
        assert_eq!(pick(&cfg, &holding(&["b"], &["idx"]), &none, &q), Some(2));
        assert_eq!(pick(&cfg, &holding(&[], &[]), &none, &[]), None);
        let fifo = Config {
            policy: Policy::Fifo,
            ..Config::default()
        };
        assert_eq!(pick(&fifo, &holding(&["b"], &["idx"]), &none, &q), Some(0));
        // A capped deployment's work waits, however old or warm.
        let mut capped = q.clone();
        capped[0].capped = true;
        capped[1].capped = true;
        assert_eq!(pick(&cfg, &holding(&["b"], &[]), &none, &capped), Some(2));
        assert_eq!(pick(&fifo, &holding(&[], &[]), &none, &capped), Some(2));
        capped[2].capped = true;
        assert_eq!(pick(&cfg, &holding(&[], &[]), &none, &capped), None);
    }

    #[test]
    fn aged_work_goes_first_and_tenants_share() {
        let cfg = Config::default();
        let q = [
            c("busy", "a", None, 6_000.0),
            c("busy", "b", None, 10.0),
            c("idle", "b", None, 5.0),
        ];
        // Waited past max_wait: taken though cold.
        assert_eq!(
            pick(&cfg, &holding(&["b"], &[]), &BTreeMap::new(), &q),
            Some(0)
        );
        let q = &q[1..];
        let running = BTreeMap::from([("busy".to_string(), 3)]);
        // Both warm: the tenant running fewer goes first.
        assert_eq!(pick(&cfg, &holding(&["b"], &[]), &running, q), Some(1));
        assert_eq!(
            pick(&cfg, &holding(&["b"], &[]), &BTreeMap::new(), q),
            Some(0)
        );
    }
}

/// A deployment's scaling bounds and target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleSpec {
    pub min: u32,
    pub max: u32,
    /// Jobs (queued and running) per replica.
    pub target: u32,
    /// How long demand must stay below the replicas before scaling in (ms).
    pub down_delay: f64,
}

/// What the autoscaler decided: the replicas, since when demand has been
/// below them, and why they changed (`None`: they did not).
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleDecision {
    pub replicas: u32,
    pub low_since: Option<f64>,
    pub reason: Option<String>,
}

/// The autoscaler, for one deployment: replicas follow demand (jobs
/// queued and running) divided by `target`, within `min..=max`. Out at
/// once; in (to zero when `min` is 0) only once demand has stayed below
/// the replicas for `down_delay`.
pub fn autoscale(
    spec: &ScaleSpec,
    replicas: u32,
    low_since: Option<f64>,
    queued: u32,
    running: u32,
    now: f64,
) -> ScaleDecision {
    let target = spec.target.max(1);
    let max = spec.max.max(spec.min);
    let demand = queued.saturating_add(running);
    let desired = demand.div_ceil(target).clamp(spec.min, max);
    if desired > replicas {
        let reason = if replicas < spec.min && demand.div_ceil(target) <= spec.min {
            format!(
                "scale out {replicas} → {desired}: the minimum is {}",
                spec.min
            )
        } else {
            format!(
                "scale out {replicas} → {desired}: {queued} jobs queued and {running} running, \
                 target {target} per replica{}",
                if desired == max && demand.div_ceil(target) > max {
                    format!(" (capped at max {max})")
                } else {
                    String::new()
                }
            )
        };
        return ScaleDecision {
            replicas: desired,
            low_since: None,
            reason: Some(reason),
        };
    }
    if desired == replicas {
        return ScaleDecision {
            replicas,
            low_since: None,
            reason: None,
        };
    }
    let since = low_since.unwrap_or(now);
    if now - since < spec.down_delay {
        return ScaleDecision {
            replicas,
            low_since: Some(since),
            reason: None,
        };
    }
    let secs = spec.down_delay / 1000.0;
    let reason = if desired == 0 {
        format!("scale to zero {replicas} → 0: no jobs for {secs:.0} s")
    } else {
        format!(
            "scale in {replicas} → {desired}: {queued} jobs queued and {running} running \
             for {secs:.0} s, target {target} per replica"
        )
    };
    ScaleDecision {
        replicas: desired,
        low_since: None,
        reason: Some(reason),
    }
}

#[cfg(test)]
mod autoscale_tests {
    use super::*;

    const SPEC: ScaleSpec = ScaleSpec {
        min: 0,
        max: 4,
        target: 2,
        down_delay: 60_000.0,
    };

    #[test]
    fn out_at_once_in_after_the_delay_down_to_zero() {
        // 5 jobs, 2 per replica: 3 replicas at once.
        let d = autoscale(&SPEC, 0, None, 5, 0, 0.0);
        assert_eq!(d.replicas, 3);
        assert!(d.reason.unwrap().starts_with("scale out 0 → 3"));
        // Beyond max: capped.
        let d = autoscale(&SPEC, 3, None, 20, 0, 1.0);
        assert_eq!(d.replicas, 4);
        assert!(d.reason.unwrap().contains("capped at max 4"));
        // Demand drops: nothing before the delay.
        let d = autoscale(&SPEC, 4, None, 0, 1, 10_000.0);
        assert_eq!(
            (d.replicas, d.low_since, d.reason),
            (4, Some(10_000.0), None)
        );
        let d = autoscale(&SPEC, 4, Some(10_000.0), 0, 1, 69_999.0);
        assert_eq!(d.replicas, 4);
        let d = autoscale(&SPEC, 4, Some(10_000.0), 0, 1, 70_000.0);
        assert_eq!(d.replicas, 1);
        assert!(d.reason.unwrap().starts_with("scale in 4 → 1"));
        // A burst in between resets the delay.
        let d = autoscale(&SPEC, 4, Some(10_000.0), 8, 0, 20_000.0);
        assert_eq!((d.replicas, d.low_since), (4, None));
        // Idle: to zero after the delay.
        let d = autoscale(&SPEC, 1, Some(0.0), 0, 0, 60_000.0);
        assert_eq!(d.replicas, 0);
        assert!(d.reason.unwrap().starts_with("scale to zero"));
    }

    #[test]
    fn min_holds() {
        let spec = ScaleSpec { min: 2, ..SPEC };
        let d = autoscale(&spec, 0, None, 0, 0, 0.0);
        assert_eq!(d.replicas, 2);
        assert!(d.reason.unwrap().contains("the minimum is 2"));
        let d = autoscale(&spec, 2, Some(0.0), 0, 0, 1e9);
        assert_eq!((d.replicas, d.reason), (2, None));
    }
}
