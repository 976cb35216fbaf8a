//! Trace-driven simulation of job placement: the production `pick` against
//! FIFO, on the same pull model the platform runs.
//!
//! In the platform, a worker whose slot is idle asks the control plane for
//! a job, saying which image its slot holds; the control plane lists the
//! oldest queued jobs (at most [`CANDIDATES`], at most
//! [`QUEUED_PER_DEPLOYMENT`] of each deployment, as the store's
//! `queued_jobs` does) and `accelhub_scheduler::pick` chooses. This
//! simulator does exactly that, with the same function and the default
//! `Config`; FIFO is `pick` under `Policy::Fifo` (the oldest job, whatever
//! the slot holds).
//!
//! N IPs with Zipf popularity share fewer slots than there are IPs; each
//! IP's load cost is one of the reconfiguration times measured on this
//! platform (wasm compile times of the example IPs, the chrX genomics index
//! load), its run time exponential around a per-IP mean. Jobs arrive as a
//! Poisson process at 50%, 70% and 90% of the slots' capacity (counting run
//! time only); both policies see the same trace. Prints reconfigurations
//! per 1000 jobs, mean and p99 response time (arrival to completion), slot
//! utilisation (busy loading or running), and the ratios.
//!
//!   cargo run --release -p accelhub-bench-scheduler [-- --jobs 20000 --slots 8 --ips 40 --seed 1]

use accelhub_scheduler::{pick, Candidate, Config, Holding, Policy, CANDIDATES};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// At most this many jobs of one deployment among the candidates (the
/// store's `QUEUED_PER_VERSION`).
const QUEUED_PER_DEPLOYMENT: usize = 4;

/// Reconfiguration costs measured here (ms): `accelhub ip publish --wait`
/// load times of the example wasm IPs (hostile, revcomp, echo; release
/// build) and the chrX index load of a genomics/align job
/// (`bench/genomics/platform.sh`).
const MEASURED_LOAD_MS: [f64; 4] = [39.5, 50.9, 74.7, 430.0];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }
}

struct Ip {
    load: f64,
    mean: f64,
}

struct Job {
    arrival: f64,
    ip: usize,
    tenant: usize,
    run: f64,
}

fn trace(
    ips: &[Ip],
    weights: &[f64],
    jobs: usize,
    rate: f64,
    tenants: usize,
    seed: u64,
) -> Vec<Job> {
    let mut rng = Rng(seed);
    let total: f64 = weights.iter().sum();
    let mut t = 0.0;
    (0..jobs)
        .map(|_| {
            t += rng.exp(1.0 / rate);
            let mut x = rng.unit() * total;
            let mut ip = 0;
            while ip + 1 < weights.len() && x >= weights[ip] {
                x -= weights[ip];
                ip += 1;
            }
            Job {
                arrival: t,
                ip,
                tenant: (rng.next() % tenants as u64) as usize,
                run: rng.exp(ips[ip].mean),
            }
        })
        .collect()
}

/// (time, job, completion on slot): earliest first, completions before
/// arrivals at the same time.
#[derive(PartialEq)]
struct Event(f64, usize, Option<usize>);

impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0)
            .then(self.2.is_some().cmp(&o.2.is_some()))
            .then(o.1.cmp(&self.1))
    }
}

struct Outcome {
    reconf_per_1000: f64,
    mean: f64,
    p99: f64,
    utilisation: f64,
}

/// A slot: the image it holds and whether a job runs on it.
#[derive(Default, Clone)]
struct Slot {
    image: Option<String>,
    busy: bool,
}

fn image(ip: usize) -> String {
    format!("ip{ip}")
}

/// The candidates a worker is shown: the oldest queued jobs, at most
/// `QUEUED_PER_DEPLOYMENT` of each (tenant, IP), at most `CANDIDATES`.
fn window(queue: &[usize], jobs: &[Job]) -> Vec<usize> {
    let mut per: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for &i in queue {
        let n = per.entry((jobs[i].tenant, jobs[i].ip)).or_default();
        if *n < QUEUED_PER_DEPLOYMENT {
            *n += 1;
            out.push(i);
            if out.len() == CANDIDATES as usize {
                break;
            }
        }
    }
    out
}

fn simulate(policy: Policy, ips: &[Ip], jobs: &[Job], slots: usize) -> Outcome {
    let config = Config {
        policy,
        ..Config::default()
    };
    let mut slot = vec![Slot::default(); slots];
    let mut events = BinaryHeap::new();
    for (i, j) in jobs.iter().enumerate() {
        events.push(Event(j.arrival, i, None));
    }
    // Queued jobs, oldest first.
    let mut queue: Vec<usize> = Vec::new();
    let mut running: BTreeMap<String, usize> = BTreeMap::new();
    let mut response = vec![0.0; jobs.len()];
    let (mut busy, mut end, mut reconfigurations) = (0.0, 0.0f64, 0usize);
    while let Some(Event(now, i, done)) = events.pop() {
        match done {
            Some(s) => {
                slot[s].busy = false;
                if let Some(n) = running.get_mut(&format!("t{}", jobs[i].tenant)) {
                    *n = n.saturating_sub(1);
                }
                response[i] = now - jobs[i].arrival;
                end = end.max(now);
            }
            None => queue.push(i),
        }
        // Workers ask once per instant, after every event at that instant.
        if events.peek().is_some_and(|e| e.0 == now) {
            continue;
        }
        for (s, sl) in slot.iter_mut().enumerate() {
            if sl.busy || queue.is_empty() {
                continue;
            }
            let shown = window(&queue, jobs);
            let candidates: Vec<Candidate> = shown
                .iter()
                .map(|&j| Candidate {
                    tenant: format!("t{}", jobs[j].tenant),
                    image: image(jobs[j].ip),
                    data: None,
                    waited: now - jobs[j].arrival,
                    capped: false,
                })
                .collect();
            let holding = Holding {
                images: sl.image.iter().cloned().collect(),
                resident: Default::default(),
            };
            let Some(c) = pick(&config, &holding, &running, &candidates) else {
                continue;
            };
            let j = shown[c];
            queue.retain(|&q| q != j);
            let img = image(jobs[j].ip);
            let load = if sl.image.as_deref() == Some(img.as_str()) {
                0.0
            } else {
                reconfigurations += 1;
                ips[jobs[j].ip].load
            };
            *sl = Slot {
                image: Some(img),
                busy: true,
            };
            *running.entry(format!("t{}", jobs[j].tenant)).or_default() += 1;
            busy += load + jobs[j].run;
            events.push(Event(now + load + jobs[j].run, j, Some(s)));
        }
    }
    let mut sorted = response.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    Outcome {
        reconf_per_1000: reconfigurations as f64 * 1000.0 / jobs.len() as f64,
        mean: response.iter().sum::<f64>() / jobs.len() as f64,
        p99: sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)],
        utilisation: busy / (slots as f64 * end.max(1e-9)),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let jobs = arg("--jobs", 20_000) as usize;
    let slots = arg("--slots", 8) as usize;
    let n_ips = arg("--ips", 40) as usize;
    let seed = arg("--seed", 1);
    let tenants = 4;
    let zipf_s = 1.0;

    let mut rng = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
    // Run-time means log-uniform over 20-400 ms; load costs as measured.
    let ips: Vec<Ip> = (0..n_ips)
        .map(|_| Ip {
            load: MEASURED_LOAD_MS[(rng.next() % MEASURED_LOAD_MS.len() as u64) as usize],
            mean: 20.0 * 20f64.powf(rng.unit()),
        })
        .collect();
    let weights: Vec<f64> = (1..=n_ips).map(|r| 1.0 / (r as f64).powf(zipf_s)).collect();
    let total: f64 = weights.iter().sum();
    let mean_run: f64 = ips
        .iter()
        .zip(&weights)
        .map(|(ip, w)| ip.mean * w / total)
        .sum();

    println!(
        "{jobs} jobs, {n_ips} IPs (Zipf s={zipf_s}), {slots} slots, {tenants} tenants; load costs {:?} ms; mean run {:.0} ms; pull model, {CANDIDATES} candidates",
        MEASURED_LOAD_MS, mean_run
    );
    println!();
    println!("| load | policy | reconfigurations / 1000 jobs | mean response ms | p99 response ms | slot utilisation |");
    println!("|---:|---|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for load in [0.5, 0.7, 0.9] {
        let rate = load * slots as f64 / mean_run;
        let t = trace(&ips, &weights, jobs, rate, tenants, seed);
        let fifo = simulate(Policy::Fifo, &ips, &t, slots);
        let ours = simulate(Policy::Affinity, &ips, &t, slots);
        for (name, o) in [("FIFO", &fifo), ("accelhub pick", &ours)] {
            println!(
                "| {:.0}% | {name} | {:.1} | {:.0} | {:.0} | {:.0}% |",
                load * 100.0,
                o.reconf_per_1000,
                o.mean,
                o.p99,
                o.utilisation * 100.0
            );
        }
        ratios.push((
            load,
            fifo.reconf_per_1000 / ours.reconf_per_1000.max(1e-9),
            fifo.mean / ours.mean.max(1e-9),
            fifo.p99 / ours.p99.max(1e-9),
        ));
    }
    println!();
    for (load, r, m, p) in ratios {
        println!(
            "at {:.0}% load: {r:.1}x fewer reconfigurations, {m:.1}x lower mean response, {p:.1}x lower p99 than FIFO",
            load * 100.0
        );
    }
}
