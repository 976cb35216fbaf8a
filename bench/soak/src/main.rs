//! Soak test (issue 14): 64 connections of mixed load against one real
//! `accelhub serve` for ten minutes, watching for errors, latency and the
//! server's memory over time, then checking that billing is exact.
//!
//! The mix, per client, by turns out of 20: 17 sync calls of `acme/echo`
//! (64-byte input, output checked), 1 job (upload the input as an object,
//! `POST /v1/jobs`, poll it to the end, check its output, delete the
//! object), 1 usage read (`GET /v1/usage`, a page of 100, and the next
//! page when there is one), 1 invoice (`GET /v1/invoices`); `--mix`
//! changes the turns of the last three, to tell which load a trend follows.
//!
//! Every `--interval` seconds it prints ops/s, errors, p50/p99 per kind
//! and the server's RSS (`VmRSS` of /proc/PID/status, sampled each
//! second). At the end it checks:
//! - no errors (any non-2xx answer, transport error or wrong output);
//! - billing: the usage totals' `billed` equals the successful calls plus
//!   the succeeded jobs this generator saw, nothing `failed`, and the
//!   month's invoice total equals `billed` × the IP's per-call price;
//! - RSS flat after warm-up: the highest RSS of the last interval is at
//!   most `--rss-tolerance-mib` above the highest of the first interval
//!   after `--warmup` seconds.
//!
//! It exits non-zero when a check fails.
//!
//! Usage: cargo build --release -p accelhub -p accelhub-bench-soak &&
//!        target/release/accelhub-bench-soak [--seconds 600] [--clients 64]

use accelhub_bench_support::{accelhub_bin, build_ips, deploy_echo, rss_kib, serve, Echo};
use accelhub_client::Client;
use accelhub_domain::{JobState, Money, Params};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Concurrent clients (one connection each, kept alive).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds between reports.
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Seconds of warm-up, after which RSS must stay flat.
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// The most RSS may grow after warm-up, in MiB.
    #[arg(long, default_value_t = 32)]
    rss_tolerance_mib: u64,
    /// The accelhub binary (default: target/release/accelhub).
    #[arg(long)]
    accelhub: Option<PathBuf>,
    /// Turns out of 20 given to jobs, usage reads and invoices (the rest
    /// are calls): e.g. `20,0,0` for jobs alone, to tell which kind of
    /// load a memory or latency trend follows.
    #[arg(long, value_delimiter = ',', default_value = "1,1,1")]
    mix: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Call,
    Job,
    Usage,
    Invoice,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Call, Kind::Job, Kind::Usage, Kind::Invoice];

    fn name(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Job => "job",
            Kind::Usage => "usage",
            Kind::Invoice => "invoice",
        }
    }
}

/// Latencies (µs) and errors of one kind of operation.
#[derive(Default, Clone)]
struct Series {
    lat_us: Vec<u32>,
    errors: u64,
}

impl Series {
    fn pct_ms(&self, p: f64) -> f64 {
        let mut v = self.lat_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1));
        v.get(i).map_or(0.0, |&us| f64::from(us) / 1e3)
    }
}

#[derive(Default)]
struct Tally {
    /// Since the last report.
    interval: BTreeMap<Kind, Series>,
    /// The whole run.
    total: BTreeMap<Kind, Series>,
    /// What billing must show.
    calls_ok: u64,
    jobs_succeeded: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn ok(&mut self, kind: Kind, took: Duration) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.interval.entry(kind).or_default().lat_us.push(us);
        self.total.entry(kind).or_default().lat_us.push(us);
        match kind {
            Kind::Call => self.calls_ok += 1,
            Kind::Job => self.jobs_succeeded += 1,
            _ => {}
        }
    }

    fn error(&mut self, kind: Kind, e: &anyhow::Error) {
        self.interval.entry(kind).or_default().errors += 1;
        self.total.entry(kind).or_default().errors += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(format!("{}: {e:#}", kind.name()));
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn call(c: &Client, input: &Bytes) -> Result<()> {
    let (_, out) = c.invoke("acme/echo", &Params::new(), input.clone()).await?;
    if out != *input {
        bail!("wrong output: {} bytes", out.len());
    }
    Ok(())
}

/// Upload, submit, poll to the end, check the output, delete the input.
async fn job(c: &Client, input: &Bytes) -> Result<()> {
    let object = c.put_object(None, input.clone(), None).await?;
    let submitted = c
        .submit_job("acme/echo", &object.key, Params::new())
        .await?;
    let done = c.wait_job(&submitted.id, |_| {}).await?;
    if done.state != JobState::Succeeded {
        bail!("job {} ended {:?}", done.id, done.state);
    }
    let out = c.job_output(&done.id, None).await?.bytes().await?;
    if out != *input {
        bail!("job {}: wrong output: {} bytes", done.id, out.len());
    }
    c.delete_object(&object.key).await?;
    Ok(())
}

async fn usage(c: &Client) -> Result<()> {
    let page = c.usage_page(None, None, Some(100)).await?;
    if let Some(next) = page.next {
        c.usage_page(None, Some(&next), Some(100)).await?;
    }
    Ok(())
}

async fn client_loop(
    c: Client,
    n: usize,
    mix: [usize; 3],
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Result<()> {
    let input: Vec<u8> = (0..64usize).map(|i| b'a' + ((i + n) % 26) as u8).collect();
    let input = Bytes::from(input);
    // Clients start at different turns, so each kind runs all the time.
    let mut turn = n;
    while !stop.load(Ordering::Relaxed) {
        let t = turn % 20;
        let kind = if t < mix[0] {
            Kind::Job
        } else if t < mix[0] + mix[1] {
            Kind::Usage
        } else if t < mix[0] + mix[1] + mix[2] {
            Kind::Invoice
        } else {
            Kind::Call
        };
        turn += 1;
        let t = Instant::now();
        let r = match kind {
            Kind::Call => call(&c, &input).await,
            Kind::Job => job(&c, &input).await,
            Kind::Usage => usage(&c).await,
            Kind::Invoice => c.invoice(None).await.map(drop).map_err(Into::into),
        };
        let took = t.elapsed();
        let mut tally = tally.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        match r {
            Ok(()) => tally.ok(kind, took),
            Err(e) => tally.error(kind, &e),
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let mix = match args.mix[..] {
        [j, u, i] if j + u + i <= 20 => [j, u, i],
        _ => bail!("--mix takes three turns out of 20 (jobs,usage,invoices), 20 at most in all"),
    };
    let bin = accelhub_bin(args.accelhub.clone())?;
    build_ips()?;

    let data = tempfile::tempdir()?;
    let server = serve(&bin, data.path(), &[])?;
    let pid = server.pid();
    let Echo { user, .. } = deploy_echo(&server.said, data.path(), "soak").await?;
    // One call, to learn the price (and billed like the rest).
    let (info, _) = user
        .invoke("acme/echo", &Params::new(), Bytes::from_static(b"x"))
        .await?;
    let price: Money = info
        .price
        .parse()
        .map_err(|e| anyhow::anyhow!("price header {:?}: {e}", info.price))?;

    println!(
        "soak: {} clients for {} s against {} (pid {pid}); mix per 20 turns: {} calls, {} jobs, \
         {} usage reads, {} invoices; warm-up {} s; price per call {price}",
        args.clients,
        args.seconds,
        server.said,
        20 - mix.iter().sum::<usize>(),
        mix[0],
        mix[1],
        mix[2],
        args.warmup
    );
    println!(
        "| t s | ops/s | errors | call p50/p99 ms | job p50/p99 ms | usage p50/p99 ms | invoice p50/p99 ms | RSS MiB |"
    );
    println!("|---:|---:|---:|---|---|---|---|---:|");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally {
        calls_ok: 1,
        ..Tally::default()
    }));
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        tasks.push(tokio::spawn(client_loop(
            user.clone(),
            n,
            mix,
            stop.clone(),
            tally.clone(),
        )));
    }

    // RSS every second: (seconds since start, KiB).
    let start = Instant::now();
    let mut rss: Vec<(u64, u64)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_report = 0;
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs();
        if let Some(kib) = rss_kib(pid) {
            rss.push((t, kib));
        }
        if t >= last_report + args.interval || t >= args.seconds {
            let span = (t - last_report).max(1) as f64;
            last_report = t;
            let interval = {
                let mut tally = tally.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                std::mem::take(&mut tally.interval)
            };
            let ops: usize = interval.values().map(|s| s.lat_us.len()).sum();
            let errors: u64 = interval.values().map(|s| s.errors).sum();
            let col = |k: Kind| {
                interval.get(&k).map_or("-".to_string(), |s| {
                    format!("{:.2} / {:.2}", s.pct_ms(0.5), s.pct_ms(0.99))
                })
            };
            let mib = rss.last().map_or(0.0, |&(_, k)| k as f64 / 1024.0);
            println!(
                "| {t} | {:.0} | {errors} | {} | {} | {} | {} | {mib:.1} |",
                ops as f64 / span,
                col(Kind::Call),
                col(Kind::Job),
                col(Kind::Usage),
                col(Kind::Invoice),
            );
        }
        if t >= args.seconds {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();

    // Billing, now that every client has finished its last operation.
    let tally = Arc::try_unwrap(tally)
        .map_err(|_| anyhow::anyhow!("tally still shared"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let report = user.usage_page(None, None, Some(1)).await?;
    let invoice = user.invoice(None).await?;
    let expected = tally.calls_ok + tally.jobs_succeeded;
    let expected_amount = Money(
        price
            .0
            .checked_mul(i64::try_from(expected)?)
            .context("amount overflows")?,
    );

    println!();
    println!("whole run ({elapsed:.0} s):");
    println!("| kind | ok | errors | per s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut errors = 0;
    for k in Kind::ALL {
        let s = tally.total.get(&k).cloned().unwrap_or_default();
        errors += s.errors;
        println!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} |",
            k.name(),
            s.lat_us.len(),
            s.errors,
            s.lat_us.len() as f64 / elapsed,
            s.pct_ms(0.5),
            s.pct_ms(0.99)
        );
    }

    let mut failures = Vec::new();
    if errors > 0 {
        failures.push(format!(
            "{errors} errors; the first: {:#?}",
            tally.first_errors
        ));
    }
    println!(
        "billing: generator saw {} calls + {} jobs = {expected}; usage totals billed {} \
         (records {}, failed {}), amount {}; invoice total {} (expected {expected_amount})",
        tally.calls_ok,
        tally.jobs_succeeded,
        report.totals.billed,
        report.totals.records,
        report.totals.failed,
        report.totals.amount,
        invoice.total
    );
    if report.totals.billed != expected || report.totals.failed != 0 {
        failures.push(format!(
            "usage billed {} (failed {}), the generator saw {expected} succeed",
            report.totals.billed, report.totals.failed
        ));
    }
    if invoice.total != expected_amount || report.totals.amount != expected_amount {
        failures.push(format!(
            "invoice total {} / usage amount {}, expected {expected_amount}",
            invoice.total, report.totals.amount
        ));
    }

    // RSS after warm-up.
    let window = |from: u64, to: u64| {
        rss.iter()
            .filter(|&&(t, _)| t >= from && t < to)
            .map(|&(_, k)| k)
            .max()
    };
    let end = args.seconds;
    let first = window(args.warmup, args.warmup + args.interval);
    let last = window(end.saturating_sub(args.interval), end + 1);
    match (first, last) {
        (Some(first), Some(last)) if args.warmup + args.interval < end => {
            let growth_mib = (last as f64 - first as f64) / 1024.0;
            // Least-squares slope of RSS after warm-up, MiB per minute.
            let pts: Vec<(f64, f64)> = rss
                .iter()
                .filter(|&&(t, _)| t >= args.warmup)
                .map(|&(t, k)| (t as f64, k as f64 / 1024.0))
                .collect();
            let n = pts.len() as f64;
            let (mx, my) = (
                pts.iter().map(|p| p.0).sum::<f64>() / n,
                pts.iter().map(|p| p.1).sum::<f64>() / n,
            );
            let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
            let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
            let slope = if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 };
            println!(
                "RSS: peak of the first interval after warm-up {:.1} MiB, of the last {:.1} MiB \
                 (growth {growth_mib:+.1} MiB, tolerance {} MiB); trend after warm-up \
                 {slope:+.2} MiB/min; peak of the run {:.1} MiB",
                first as f64 / 1024.0,
                last as f64 / 1024.0,
                args.rss_tolerance_mib,
                rss.iter().map(|&(_, k)| k).max().unwrap_or(0) as f64 / 1024.0
            );
            if growth_mib > args.rss_tolerance_mib as f64 {
                failures.push(format!(
                    "RSS grew {growth_mib:.1} MiB after warm-up (tolerance {} MiB)",
                    args.rss_tolerance_mib
                ));
            }
        }
        _ => println!(
            "RSS: the run is too short to judge after a {} s warm-up",
            args.warmup
        ),
    }
    drop(server);
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        for f in &failures {
            println!("soak: FAIL: {f}");
        }
        bail!("{} check(s) failed", failures.len())
    }
}
