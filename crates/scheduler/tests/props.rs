//! Properties of the scheduler on random clusters and queues, and on
//! random traces run to the end.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

use accelhub_scheduler::{Cluster, Config, Policy, Scheduler, Slot, Work};
use proptest::prelude::*;

const NOW: f64 = 10_000.0;

fn class_of(image: usize) -> &'static str {
    if image.is_multiple_of(2) {
        "a"
    } else {
        "b"
    }
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        0..2usize,
        prop::option::of(0..3usize),
        prop::option::of(0.0..2_000.0f64),
        prop::bool::weighted(0.9),
        0.0..5_000.0f64,
        0..3usize,
    )
        .prop_map(|(class, image, busy, healthy, credit, node)| {
            let mut s = Slot::new(&format!("n{node}"), ["a", "b"][class]);
            // A slot only ever holds images of its own class.
            s.loaded = image.map(|i| format!("i{}", 2 * i + class));
            s.load_cost = 40.0;
            s.busy_until = busy.map(|b| NOW + b);
            s.healthy = healthy;
            s.credit = credit;
            s
        })
}

fn work() -> impl Strategy<Value = (usize, usize, f64, f64, bool, f64)> {
    (
        0..6usize,
        0..3usize,
        1.0..500.0f64,
        1.0..500.0f64,
        prop::bool::weighted(0.2),
        0.0..NOW,
    )
}

fn queue_of(raw: Vec<(usize, usize, f64, f64, bool, f64)>) -> Vec<Work> {
    raw.into_iter()
        .enumerate()
        .map(|(id, (image, tenant, load, expected, sync, at))| Work {
            id: id as u64,
            tenant: format!("t{tenant}"),
            image: format!("i{image}"),
            class: class_of(image).into(),
            load_cost: load,
            expected,
            data: (image == 0).then(|| "index".to_string()),
            sync,
            queued_at: at,
        })
        .collect()
}

fn scheduler(policy: Policy, limits: &[(usize, usize)]) -> Scheduler {
    let mut s = Scheduler::new(Config {
        policy,
        ..Config::default()
    });
    for &(image, max) in limits {
        s.set_max_replicas(&format!("i{image}"), max);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn one_round_places_work_only_where_it_may(
        slots in prop::collection::vec(slot(), 1..10),
        raw in prop::collection::vec(work(), 0..25),
        limits in prop::collection::vec((0..6usize, 1..4usize), 0..3),
        fifo in any::<bool>(),
    ) {
        let policy = if fifo { Policy::Fifo } else { Policy::Affinity };
        // One limit per image (the last one set is the one in force).
        let limits: Vec<(usize, usize)> = limits
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let mut cluster = Cluster { slots, ..Default::default() };
        let before = cluster.clone();
        let mut queue = queue_of(raw);
        let queued = queue.clone();
        let mut sched = scheduler(policy, &limits);
        let placed = sched.assign(NOW, &mut cluster, &mut queue);

        // Every placement: a queued work, once, on an idle healthy slot of
        // its class, used once; loading exactly when the slot lacked it.
        let mut used = std::collections::BTreeSet::new();
        for a in &placed {
            let w = queued.iter().find(|w| w.id == a.work).expect("queued work");
            let s = &before.slots[a.slot];
            prop_assert!(s.is_idle() && s.class == w.class, "{a:?} on {s:?}");
            prop_assert!(used.insert(a.slot), "slot {} used twice", a.slot);
            prop_assert_eq!(a.reconfigure, s.loaded.as_deref() != Some(w.image.as_str()));
            prop_assert_eq!(&a.evicted, &if a.reconfigure { s.loaded.clone() } else { None });
            prop_assert!(!queue.iter().any(|q| q.id == a.work));
            let after = &cluster.slots[a.slot];
            prop_assert_eq!(after.loaded.as_deref(), Some(w.image.as_str()));
            prop_assert!(after.busy_until.is_some());
        }
        prop_assert_eq!(queue.len() + placed.len(), queued.len());
        prop_assert_eq!(sched.stats.placed as usize, placed.len());
        prop_assert_eq!(
            sched.stats.reconfigurations as usize,
            placed.iter().filter(|a| a.reconfigure).count()
        );

        // Deployment limits: a load never takes an image past its maximum.
        if policy == Policy::Affinity {
            for &(image, max) in &limits {
                let name = format!("i{image}");
                let loads = placed.iter().filter(|a| {
                    a.reconfigure && queued.iter().any(|w| w.id == a.work && w.image == name)
                });
                if loads.count() > 0 {
                    prop_assert!(cluster.replicas(&name) <= max, "{name} over {max}");
                }
            }
            // Warm slots first: no queued work is left beside an idle slot
            // holding its image.
            for w in &queue {
                let warm_idle = cluster.slots.iter().any(|s| {
                    s.is_idle() && s.class == w.class && s.loaded.as_deref() == Some(w.image.as_str())
                });
                prop_assert!(!warm_idle, "{w:?} left beside a warm idle slot");
            }
        } else {
            // FIFO: in queue order.
            let times: Vec<f64> = placed
                .iter()
                .map(|a| queued.iter().find(|w| w.id == a.work).map(|w| w.queued_at).unwrap_or(0.0))
                .collect();
            prop_assert!(times.windows(2).all(|t| t[0] <= t[1]), "{times:?}");
        }
    }

    /// Run a random trace to the end: every job is placed and finishes;
    /// no policy stalls with work queued and nothing running.
    #[test]
    fn every_job_of_a_trace_finishes(
        n_slots in 1..5usize,
        jobs in prop::collection::vec((0..6usize, 0..3usize, 1.0..300.0f64, 0.0..200.0f64), 1..120),
        fifo in any::<bool>(),
    ) {
        let policy = if fifo { Policy::Fifo } else { Policy::Affinity };
        let mut cluster = Cluster {
            slots: (0..n_slots).map(|i| Slot::new(&format!("n{i}"), "a")).collect(),
            ..Default::default()
        };
        let mut sched = scheduler(policy, &[]);
        // Arrivals: cumulative gaps.
        let mut t = 0.0;
        let arrivals: Vec<(f64, Work)> = jobs
            .iter()
            .enumerate()
            .map(|(id, &(image, tenant, run, gap))| {
                t += gap;
                (t, Work {
                    id: id as u64,
                    tenant: format!("t{tenant}"),
                    image: format!("i{image}"),
                    class: "a".into(),
                    load_cost: 50.0 * (1 + image % 3) as f64,
                    expected: run,
                    data: None,
                    sync: false,
                    queued_at: t,
                })
            })
            .collect();
        let mut next = 0;
        let mut queue: Vec<Work> = Vec::new();
        let mut running: Vec<(f64, usize, String)> = Vec::new();
        let mut done = 0;
        let mut now;
        let mut steps = 0;
        while done < arrivals.len() {
            steps += 1;
            prop_assert!(steps < 100_000, "no progress");
            // The next event: an arrival or a completion.
            let arrival = arrivals.get(next).map(|(t, _)| *t);
            let completion = running.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
            match arrival {
                Some(a) if a <= completion => {
                    now = a;
                    queue.push(arrivals[next].1.clone());
                    next += 1;
                }
                _ => {
                    prop_assert!(completion.is_finite(), "stalled with {} queued and nothing running", queue.len());
                    now = completion;
                    let i = running.iter().position(|r| r.0 == completion).unwrap_or(0);
                    let (_, slot, tenant) = running.swap_remove(i);
                    sched.finished(&mut cluster, slot, &tenant);
                    done += 1;
                }
            }
            for a in sched.assign(now, &mut cluster, &mut queue) {
                let w = &arrivals[a.work as usize].1;
                let end = cluster.slots[a.slot].busy_until.unwrap_or(now);
                prop_assert!(end >= now + w.expected);
                running.push((end, a.slot, a.tenant.clone()));
            }
        }
        prop_assert!(queue.is_empty() && running.is_empty());
        for t in ["t0", "t1", "t2"] {
            prop_assert_eq!(sched.running(t), 0);
        }
    }
}

#[test]
fn sync_calls_wait_for_a_warm_slot_and_jobs_use_resident_data() {
    // Two idle slots: one empty on n1, one holding i1 on n2 (busy), and n2
    // holds the index.
    let mut cluster = Cluster::default();
    cluster.slots.push(Slot::new("n1", "a"));
    let mut warm = Slot::new("n2", "a");
    warm.loaded = Some("i1".into());
    warm.busy_until = Some(NOW + 10.0);
    cluster.slots.push(warm);
    let mut cold = Slot::new("n2", "a");
    cold.loaded = Some("old".into());
    cold.credit = 0.0;
    cluster.slots[0].credit = 0.0;
    cluster.slots.push(cold);
    cluster
        .resident
        .entry("n2".into())
        .or_default()
        .insert("index".into());
    let work = |id, image: &str, sync, data: Option<&str>| Work {
        id,
        tenant: "t".into(),
        image: image.into(),
        class: "a".into(),
        load_cost: 400.0,
        expected: 100.0,
        data: data.map(str::to_string),
        sync,
        queued_at: NOW,
    };
    let mut sched = Scheduler::new(Config::default());
    // The sync call for i1 waits for its warm slot; the job loads into the
    // empty slot before evicting anything.
    let mut queue = vec![
        work(1, "i1", true, None),
        work(2, "i2", false, Some("index")),
    ];
    let placed = sched.assign(NOW, &mut cluster, &mut queue);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].work, 2);
    assert_eq!(placed[0].slot, 0, "an empty slot before evicting anything");
    assert_eq!(queue.len(), 1, "the sync call waits for i1's slot");
    // i1's slot frees: the sync call takes it, warm.
    sched.finished(&mut cluster, 1, "t");
    let placed = sched.assign(NOW + 10.0, &mut cluster, &mut queue);
    assert_eq!(
        (placed[0].work, placed[0].slot, placed[0].reconfigure),
        (1, 1, false)
    );

    // With no empty slot, a job needing the index goes where it is.
    let mut cluster = Cluster::default();
    for node in ["n1", "n2"] {
        let mut s = Slot::new(node, "a");
        s.loaded = Some("old".into());
        cluster.slots.push(s);
    }
    cluster
        .resident
        .entry("n2".into())
        .or_default()
        .insert("index".into());
    let mut queue = vec![work(3, "i2", false, Some("index"))];
    let placed = Scheduler::new(Config::default()).assign(NOW, &mut cluster, &mut queue);
    assert_eq!(placed[0].slot, 1, "the node that holds the index");
}

fn candidate() -> impl Strategy<Value = accelhub_scheduler::Candidate> {
    (
        0..3usize,
        0..4usize,
        prop::option::of(0..3usize),
        0.0..8_000.0f64,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(tenant, image, data, waited, capped)| accelhub_scheduler::Candidate {
                tenant: format!("t{tenant}"),
                image: format!("i{image}"),
                data: data.map(|d| format!("d{d}")),
                waited,
                capped,
            },
        )
}

proptest! {
    /// A pulling worker always gets a queued job when there is one; aged
    /// work is never passed over; otherwise no job it takes needs a
    /// reconfiguration when one that does not is queued.
    #[test]
    fn pick_serves_aged_work_then_warm_work(
        mut queue in prop::collection::vec(candidate(), 0..12),
        images in prop::collection::btree_set(
            (0..4usize).prop_map(|i| format!("i{i}")), 0..3),
        resident in prop::collection::btree_set(
            (0..3usize).prop_map(|d| format!("d{d}")), 0..2),
        running in prop::collection::btree_map(
            (0..3usize).prop_map(|t| format!("t{t}")), 0..4usize, 0..3),
    ) {
        // Oldest first, as the store lists them.
        queue.sort_by(|a, b| b.waited.total_cmp(&a.waited));
        let holding = accelhub_scheduler::Holding { images, resident };
        let cfg = Config::default();
        let got = accelhub_scheduler::pick(&cfg, &holding, &running, &queue);
        let open = |c: &accelhub_scheduler::Candidate| !c.capped;
        prop_assert_eq!(got.is_some(), queue.iter().any(open));
        let fifo = Config { policy: Policy::Fifo, ..Config::default() };
        prop_assert_eq!(
            accelhub_scheduler::pick(&fifo, &holding, &running, &queue),
            queue.iter().position(open)
        );
        let Some(i) = got else { return Ok(()) };
        prop_assert!(i < queue.len());
        prop_assert!(!queue[i].capped, "a capped deployment's work was taken");
        if let Some(aged) = queue.iter().position(|c| open(c) && c.waited >= cfg.max_wait) {
            prop_assert_eq!(i, aged);
        } else {
            let warm = |c: &accelhub_scheduler::Candidate| {
                holding.images.contains(&c.image)
                    || c.data.as_ref().is_some_and(|d| holding.resident.contains(d))
            };
            if queue.iter().any(|c| open(c) && warm(c)) {
                prop_assert!(warm(&queue[i]));
            }
        }
    }
}

proptest! {
    /// The autoscaler stays within its bounds, meets demand at once, and
    /// never scales in before demand has stayed low for the delay.
    #[test]
    fn autoscale_bounds_and_delay(
        min in 0..4u32, extra in 0..6u32, target in 1..4u32,
        replicas in 0..12u32, queued in 0..30u32, running in 0..10u32,
        low_for in prop::option::of(0.0..20_000.0f64),
    ) {
        let spec = accelhub_scheduler::ScaleSpec { min, max: min + extra.max(1), target, down_delay: 10_000.0 };
        let now = 100_000.0;
        let d = accelhub_scheduler::autoscale(&spec, replicas, low_for.map(|l| now - l), queued, running, now);
        let need = (queued + running).div_ceil(target).clamp(spec.min, spec.max);
        if d.replicas != replicas {
            prop_assert!(d.replicas >= spec.min && d.replicas <= spec.max);
            prop_assert!(d.reason.is_some());
        }
        if need > replicas {
            prop_assert_eq!(d.replicas, need);
        }
        if d.replicas < replicas {
            prop_assert!(low_for.unwrap_or(0.0) >= spec.down_delay || replicas > spec.max);
        }
        prop_assert!(d.replicas >= need.min(replicas.max(need)));
    }
}
