//! Benchmark: asynchronous no-op jobs (`acme/echo` on a 4-byte object)
//! end to end: submitted over HTTP, queued in the database, leased by a
//! worker, run in the wasm sandbox, output stored, completion and usage
//! recorded; measured until the last job has succeeded.
//!
//! Three set-ups in one run, same binary, same load:
//! - `embedded, SQLite`: `accelhub serve` alone (its own 8 workers);
//! - `embedded, PostgreSQL`: the same on PostgreSQL;
//! - `4 agents, PostgreSQL`: `serve --no-local-jobs` and four
//!   `accelhub agent` processes (2 wasm slots each) over HTTP.
//!
//! Usage: cargo run --release -p accelhub-bench-fleet -- [--jobs 2000]
//! (needs `target/release/accelhub` and PostgreSQL at
//! $ACCELHUB_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/test)

use accelhub_bench_support::{accelhub_bin, build_ips, median, spawn};
use accelhub_client::Client;
use accelhub_domain::{JobState, Params};
use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Jobs per set-up and round.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 16)]
    submitters: usize,
    /// Rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Agents in the distributed set-up.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// The accelhub binary.
    #[arg(long)]
    accelhub: Option<PathBuf>,
}

fn psql(admin_url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([admin_url, "-q", "-c", sql])
        .output()
        .context("run psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

struct Setup {
    name: &'static str,
    postgres: bool,
    agents: usize,
}

struct Outcome {
    jobs_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_setup(bin: &Path, root: &Path, pg: &str, s: &Setup, args: &Args) -> Result<Outcome> {
    let data = tempfile::tempdir()?;
    let schema = format!("bench_fleet_{}", std::process::id());
    let mut serve = Command::new(bin);
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--no-builtin-ips"])
        // Jobs are submitted flat out: the per-token rate limit is off.
        .args(["--rate-limit", "0"])
        .args(["--wasm-slots", "8", "--data"])
        .arg(data.path());
    if s.postgres {
        psql(
            pg,
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        )?;
        let sep = if pg.contains('?') { '&' } else { '?' };
        serve.args([
            "--database",
            &format!("{pg}{sep}options=-c%20search_path%3D{schema}"),
            "--node",
            "control",
        ]);
    }
    if s.agents > 0 {
        serve.arg("--no-local-jobs");
    }
    let server = spawn(&mut serve, "accelhub listening on ")?;
    let url = server.said.clone();
    let admin = Client::new(
        &url,
        Some(
            std::fs::read_to_string(data.path().join("admin.token"))?
                .trim()
                .to_string(),
        ),
    )?;
    let vendor = Client::new(
        &url,
        Some(
            admin
                .create_account("acme", accelhub_domain::Role::Vendor)
                .await?
                .token,
        ),
    )?;
    let user = Client::new(
        &url,
        Some(
            admin
                .create_account("bench", accelhub_domain::Role::User)
                .await?
                .token,
        ),
    )?;
    let v = vendor.publish_dir(&root.join("ips/echo")).await?;
    let start = Instant::now();
    loop {
        let d = vendor.ip(&v.ip).await?;
        if d.versions
            .iter()
            .all(|x| x.status != accelhub_domain::VersionStatus::Pending)
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("verification did not finish");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    user.deploy("acme/echo", None).await?;
    let obj = user.put_object(None, b"ping".to_vec(), None).await?;

    let mut agents = Vec::new();
    if s.agents > 0 {
        let token = admin.create_agent("bench").await?.token;
        for i in 0..s.agents {
            let dir = data.path().join(format!("agent-{i}"));
            agents.push(spawn(
                Command::new(bin)
                    .args(["agent", "--server", &url, "--node", &format!("agent-{i}")])
                    .args(["--wasm-slots", "2", "--data"])
                    .arg(&dir)
                    .env("ACCELHUB_AGENT_TOKEN", &token),
                "registered with",
            )?);
        }
    }

    // Warm-up: the image loads on the workers.
    let warm = user
        .submit_job("acme/echo", &obj.key, Params::new())
        .await?;
    user.wait_job(&warm.id, |_| {}).await?;

    let t0 = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..args.jobs)
        .map(|_| {
            let user = user.clone();
            let key = obj.key.clone();
            async move {
                user.submit_job("acme/echo", &key, Params::new())
                    .await
                    .map(|j| j.id)
            }
        })
        .buffer_unordered(args.submitters)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    // Jobs are taken oldest first: once the newest are done, check each.
    // Times come from the jobs' own records, not from this polling.
    loop {
        let newest = user.jobs(Some(50)).await?;
        if newest.iter().all(|j| j.state.is_terminal()) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("the jobs did not finish in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies = Vec::new();
    let mut first_created = None;
    let mut last_finished = None;
    for id in &ids {
        let j = user.wait_job(id, |_| {}).await?;
        if j.state != JobState::Succeeded {
            bail!("job {id} ended {}: {:?}", j.state, j.error);
        }
        let f = j.finished_at.context("a finished job has an end")?;
        latencies.push((f - j.created_at).num_microseconds().unwrap_or(0) as f64 / 1e3);
        first_created = Some(
            first_created.map_or(j.created_at, |c: chrono::DateTime<chrono::Utc>| {
                c.min(j.created_at)
            }),
        );
        last_finished = Some(last_finished.map_or(f, |l: chrono::DateTime<chrono::Utc>| l.max(f)));
    }
    let span = (last_finished.context("jobs")? - first_created.context("jobs")?)
        .num_microseconds()
        .unwrap_or(1) as f64
        / 1e6;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let out = Outcome {
        jobs_per_sec: ids.len() as f64 / span,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    };
    drop(agents);
    if s.postgres {
        psql(pg, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let root = accelhub_bench_support::root();
    let bin = accelhub_bin(args.accelhub.clone())?;
    build_ips()?;
    let pg = std::env::var("ACCELHUB_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let setups = [
        Setup {
            name: "embedded, SQLite",
            postgres: false,
            agents: 0,
        },
        Setup {
            name: "embedded, PostgreSQL",
            postgres: true,
            agents: 0,
        },
        Setup {
            name: "agents, PostgreSQL",
            postgres: true,
            agents: args.agents,
        },
    ];
    let mut results: Vec<Vec<Outcome>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds.max(1) {
        for (i, s) in setups.iter().enumerate() {
            let o = run_setup(&bin, &root, &pg, s, &args).await?;
            eprintln!(
                "round {}: {}: {:.0} jobs/s, p50 {:.1} ms, p99 {:.1} ms",
                round + 1,
                s.name,
                o.jobs_per_sec,
                o.p50_ms,
                o.p99_ms
            );
            results[i].push(o);
        }
    }
    println!(
        "async no-op jobs ({} per round, {} submitters), medians of {} rounds",
        args.jobs, args.submitters, args.rounds
    );
    println!("| set-up | jobs/s | ratio to embedded SQLite | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(results[0].iter().map(|o| o.jobs_per_sec).collect());
    for (s, r) in setups.iter().zip(&results) {
        let name = if s.agents > 0 {
            format!("{} agents (2 wasm slots each), PostgreSQL", s.agents)
        } else {
            s.name.to_string()
        };
        let jps = median(r.iter().map(|o| o.jobs_per_sec).collect());
        println!(
            "| {name} | {jps:.0} | {:.2} | {:.1} | {:.1} |",
            jps / base,
            median(r.iter().map(|o| o.p50_ms).collect()),
            median(r.iter().map(|o| o.p99_ms).collect()),
        );
    }
    Ok(())
}
