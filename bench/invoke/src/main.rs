//! Benchmark: synchronous calls of the no-op wasm IP (`acme/echo`) through
//! a real `accelhub serve`, against a raw axum server that echoes the body,
//! measured in the same run with the same load generator.
//!
//! Reports calls per second and p50/p99 latency at 1, 16 and 64 concurrent
//! clients, the ratio to the raw server, and the latency of the first call
//! of an IP that is not loaded (after a server restart).
//!
//! Usage: cargo run --release -p accelhub-bench-invoke -- [--seconds 5]
//! (builds on `target/release/accelhub`; run `cargo build --release -p accelhub` first)

use accelhub_bench_support::{accelhub_bin, build_ips, deploy_echo, median, serve, spawn, Proc};
use anyhow::{bail, Result};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Seconds of load per concurrency level, per server, per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds per level. Each round loads accelhub, then the raw server;
    /// the table shows medians over rounds, so one noisy burst on a shared
    /// machine does not decide the result.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// The accelhub binary.
    #[arg(long)]
    accelhub: Option<PathBuf>,
    /// Cold starts to measure.
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
    /// Internal: run as the raw axum server.
    #[arg(long, hide = true)]
    raw_server: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.raw_server {
        return raw_server();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// The peer: axum, one POST route returning its body. Same HTTP stack as
/// accelhub, no auth, no sandbox, no metering.
fn raw_server() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/echo",
            axum::routing::post(|body: bytes::Bytes| async move { body }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("raw listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn start_accelhub(bin: &Path, data: &Path) -> Result<Proc> {
    serve(bin, data, &[])
}

struct Stats {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    clients: usize,
    seconds: f64,
) -> Result<Stats> {
    let body = bytes::Bytes::from_static(b"ping");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..clients {
        let client = client.clone();
        let url = url.to_string();
        let token = token.map(str::to_string);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut r = client.post(&url).body(body.clone());
                if let Some(t) = &token {
                    r = r.bearer_auth(t);
                }
                let resp = r.send().await?;
                if !resp.status().is_success() {
                    bail!("{} answered {}", url, resp.status());
                }
                let out = resp.bytes().await?;
                if out.as_ref() != b"ping" {
                    bail!("wrong answer {out:?}");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    Ok(Stats {
        per_sec: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

async fn run(args: Args) -> Result<()> {
    let bin = accelhub_bin(args.accelhub.clone())?;
    build_ips()?;

    let data = tempfile::tempdir()?;
    let server = start_accelhub(&bin, data.path())?;
    let user = deploy_echo(&server.said, data.path(), "bench")
        .await?
        .user_token;

    let raw = spawn(
        Command::new(std::env::current_exe()?).arg("--raw-server"),
        "raw listening on ",
    )?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let ah_url = format!("{}/v1/invoke/acme/echo", server.said);
    let raw_url = format!("{}/echo", raw.said);
    // Warm both.
    load(&client, &ah_url, Some(&user), 4, 0.5).await?;
    load(&client, &raw_url, None, 4, 0.5).await?;

    println!(
        "sync calls of a no-op wasm IP (4-byte body) vs raw axum echo, \
         {} rounds of {:.0} s each per level, medians over rounds",
        args.rounds, args.seconds
    );
    println!(
        "| clients | accelhub calls/s | p50 ms | p99 ms | raw axum calls/s | p50 ms | p99 ms | ratio | ratio per round |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for &n in &args.clients {
        let mut rounds = Vec::new();
        for _ in 0..args.rounds.max(1) {
            let a = load(&client, &ah_url, Some(&user), n, args.seconds).await?;
            let r = load(&client, &raw_url, None, n, args.seconds).await?;
            rounds.push((a, r));
        }
        let med = |f: &dyn Fn(&(Stats, Stats)) -> f64| median(rounds.iter().map(f).collect());
        let ratios: Vec<String> = rounds
            .iter()
            .map(|(a, r)| format!("{:.2}", a.per_sec / r.per_sec))
            .collect();
        println!(
            "| {n} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.2} | {} |",
            med(&|(a, _)| a.per_sec),
            med(&|(a, _)| a.p50_ms),
            med(&|(a, _)| a.p99_ms),
            med(&|(_, r)| r.per_sec),
            med(&|(_, r)| r.p50_ms),
            med(&|(_, r)| r.p99_ms),
            med(&|(a, r)| a.per_sec / r.per_sec),
            ratios.join(" ")
        );
    }
    drop(server);

    // Cold start: the first call of an IP this process has never loaded.
    let mut firsts = Vec::new();
    let mut warms = Vec::new();
    for _ in 0..args.cold_starts {
        let server = start_accelhub(&bin, data.path())?;
        let c = reqwest::Client::new();
        let url = format!("{}/v1/invoke/acme/echo", server.said);
        let mut times = Vec::new();
        for _ in 0..2 {
            let t = Instant::now();
            let resp = c.post(&url).bearer_auth(&user).body("ping").send().await?;
            let cold = resp
                .headers()
                .get("accelhub-cold-start")
                .map(|v| v == "true")
                .unwrap_or(false);
            if !resp.status().is_success() {
                bail!("cold call failed: {}", resp.status());
            }
            resp.bytes().await?;
            times.push((t.elapsed().as_secs_f64() * 1e3, cold));
        }
        if !times[0].1 {
            bail!("the first call after a restart was not a cold start");
        }
        firsts.push(times[0].0);
        warms.push(times[1].0);
    }
    println!();
    println!(
        "first call of a never-loaded IP (after restart), median of {}: {:.2} ms (next call {:.2} ms)",
        args.cold_starts,
        median(firsts),
        median(warms)
    );
    Ok(())
}
