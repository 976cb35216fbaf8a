//! Command-line interface.

use crate::serve::{serve, ServeArgs};
use accelhub_client::Client;
use accelhub_domain::{IpVersion, Job, JobState, Params, Role, VersionStatus};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Parser)]
#[command(
    name = "accelhub",
    version,
    about = "Accelhub: accelerated functions as a service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        env = "ACCELHUB_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub url: String,
    /// API token.
    #[arg(long, env = "ACCELHUB_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform: API, scheduler and a local agent, on embedded storage.
    Serve(ServeArgs),
    /// Accounts and tokens.
    Account {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Publish IPs and browse the catalog.
    Ip {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: IpCmd,
    },
    /// Deploy an IP for your account: `accelhub deploy NAME[@VERSION]`.
    #[command(args_conflicts_with_subcommands = true)]
    Deploy {
        #[command(flatten)]
        conn: Conn,
        /// `namespace/name`, optionally `@VERSION` (default: newest verified).
        target: Option<String>,
        #[command(flatten)]
        scaling: ScalingArgs,
        /// Device classes calls prefer, in order, e.g. `opencl,wasm`
        /// (default: keep the current order, or the IP's own).
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        #[command(subcommand)]
        cmd: Option<DeployCmd>,
    },
    /// Call a deployed IP synchronously.
    Invoke {
        #[command(flatten)]
        conn: Conn,
        /// `namespace/name`.
        ip: String,
        /// Input file (`-` for standard input).
        #[arg(long, short)]
        input: PathBuf,
        /// A parameter, `KEY=VALUE`; VALUE is JSON if it parses, else a string.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Asynchronous jobs on objects.
    Job {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: JobCmd,
    },
    /// Your private object space.
    Object {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ObjectCmd,
    },
    /// Genomics on this machine: index a reference, align reads.
    Genomics {
        #[command(subcommand)]
        cmd: crate::genomics::GenomicsCmd,
    },
    /// What your calls cost (user), what your IPs earned (vendor), or all (operator).
    Usage {
        #[command(flatten)]
        conn: Conn,
        /// Only records from this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
    /// Subscribe to a plan of an IP (`per-call` or one its vendor offers).
    Subscribe {
        #[command(flatten)]
        conn: Conn,
        ip: String,
        plan: String,
    },
    /// A month's invoice (user), statement (vendor) or totals (operator).
    Invoice {
        #[command(flatten)]
        conn: Conn,
        /// YYYY-MM (default: this month to date).
        #[arg(long)]
        month: Option<String>,
    },
    /// Nodes, devices and slots: what each holds, how busy (operator).
    Fleet {
        #[command(flatten)]
        conn: Conn,
    },
    /// Run this node's devices for a control plane elsewhere.
    Agent(crate::agent::AgentArgs),
    /// Agent tokens (operator): issue, list, revoke.
    AgentToken {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: AgentTokenCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentTokenCmd {
    /// Issue a token for the agents of a group of nodes and print it.
    Create { name: String },
    /// List agent tokens.
    List,
    /// Revoke a token: its agents are refused from then on.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account (operator) and print its token.
    Create {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List accounts (operator).
    List,
    /// Show the account of the current token.
    Whoami,
    /// Set your monthly spending limit (an amount such as 25.00), or
    /// remove it (`none`).
    Limit { amount: String },
}

#[derive(Debug, Subcommand)]
pub enum IpCmd {
    /// Publish the package in DIR (ip.toml and the files it names).
    Publish {
        dir: PathBuf,
        /// Wait for verification to finish and print its result.
        #[arg(long)]
        wait: bool,
    },
    /// List the catalog.
    List {
        /// Search names, summaries and tags (every word must match).
        query: Option<String>,
        /// Only IPs with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only IPs whose newest version targets this device class.
        #[arg(long)]
        device: Option<String>,
        /// Only this vendor's IPs.
        #[arg(long)]
        vendor: Option<String>,
        /// newest, rating, usage or name.
        #[arg(long)]
        sort: Option<String>,
    },
    /// Show an IP's versions, status and verification reports, ratings
    /// and reviews.
    Show { name: String },
    /// Rate (1-5) and review an IP you have used; again to change it.
    Review {
        name: String,
        #[arg(long)]
        stars: u8,
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Reply to a review of one of your IPs (vendor).
    Reply {
        name: String,
        /// The review's id (`accelhub ip show NAME` lists them).
        id: i64,
        #[arg(long)]
        text: String,
    },
}

/// Autoscaling of a deployment: replicas (device slots its jobs may run on
/// at once) follow the jobs queued and running.
#[derive(Debug, Args, Clone, Default)]
pub struct ScalingArgs {
    /// Fewest replicas (0: scale to zero when idle).
    #[arg(long)]
    pub min: Option<u32>,
    /// Most replicas.
    #[arg(long)]
    pub max: Option<u32>,
    /// Jobs, queued and running, per replica.
    #[arg(long = "target", id = "target_jobs")]
    pub target_jobs: Option<u32>,
    /// Seconds demand must stay low before scaling in.
    #[arg(long)]
    pub scale_down_delay: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum DeployCmd {
    /// List your deployments.
    List,
    /// Show a deployment: scaling, replicas, the autoscaler's decisions.
    Show { ip: String },
    /// Remove a deployment.
    Rm { ip: String },
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Queue a job; prints its id.
    Submit {
        ip: String,
        /// An object key, or a local file to upload first.
        #[arg(long, short)]
        input: String,
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// Show a job.
    Status { id: String },
    /// Wait for a job to finish, showing progress.
    Wait { id: String },
    /// Download a succeeded job's output.
    Output {
        id: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List your jobs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Delete a finished job and its output.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ObjectCmd {
    /// Upload a file (any size, streamed, SHA-256 checked); prints its key.
    Put {
        file: PathBuf,
        /// Key to store it under (default: a new unique key).
        #[arg(long)]
        key: Option<String>,
    },
    /// Download an object.
    Get {
        key: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List your objects.
    List,
    /// Delete an object.
    Rm { key: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn client(conn: &Conn) -> anyhow::Result<Client> {
    Ok(Client::new(&conn.url, conn.token.clone())?)
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `KEY=VALUE` pairs into a params object; VALUE is JSON if it parses.
pub fn parse_params(pairs: &[String]) -> anyhow::Result<Params> {
    let mut params = Params::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("parameter '{p}' is not KEY=VALUE");
        };
        if k.is_empty() {
            bail!("parameter '{p}' has an empty key");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        params.insert(k.to_string(), value);
    }
    Ok(params)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_tracing();
            serve(args).await
        }
        Command::Account { conn, cmd } => account(&conn, cmd).await,
        Command::Ip { conn, cmd } => ip(&conn, cmd).await,
        Command::Deploy {
            conn,
            target,
            scaling,
            devices,
            cmd,
        } => deploy(&conn, target, scaling, devices, cmd).await,
        Command::Invoke {
            conn,
            ip,
            input,
            params,
            output,
        } => invoke(&conn, &ip, &input, &params, output.as_deref()).await,
        Command::Job { conn, cmd } => job(&conn, cmd).await,
        Command::Object { conn, cmd } => object(&conn, cmd).await,
        Command::Usage { conn, since } => usage(&conn, since.as_deref()).await,
        Command::Subscribe { conn, ip, plan } => {
            let sub = client(&conn)?.subscribe(&ip, &plan).await?;
            if conn.json {
                return print_json(&sub);
            }
            println!(
                "subscribed to {} of {} from {}",
                sub.plan,
                sub.ip,
                sub.since.format("%Y-%m-%d %H:%M:%S")
            );
            Ok(())
        }
        Command::Invoice { conn, month } => invoice(&conn, month.as_deref()).await,
        Command::Fleet { conn } => fleet(&conn).await,
        Command::Agent(args) => {
            init_tracing();
            crate::agent::agent(args).await
        }
        Command::AgentToken { conn, cmd } => agent_token(&conn, cmd).await,
        Command::Genomics { cmd } => {
            tokio::task::spawn_blocking(move || crate::genomics::run(cmd)).await?
        }
    }
}

async fn fleet(conn: &Conn) -> anyhow::Result<()> {
    let f = client(conn)?.fleet().await?;
    if conn.json {
        return print_json(&f);
    }
    for n in &f.nodes {
        println!("node {} ({})", n.name, n.health);
        for d in &n.devices {
            println!(
                "  {:<6} {}/{} slots busy ({:.0}%)",
                d.class,
                d.busy,
                d.slots,
                d.utilisation * 100.0
            );
            for h in &d.hardware {
                println!(
                    "         device   {} ({}), {} MiB, {} compute units, {} slots",
                    h.name,
                    h.vendor,
                    h.memory_bytes >> 20,
                    h.compute_units,
                    h.slots
                );
            }
            for l in &d.loaded {
                println!("         loaded   {l}");
            }
            for r in &d.resident {
                println!("         resident {r}");
            }
        }
    }
    Ok(())
}

async fn agent_token(conn: &Conn, cmd: AgentTokenCmd) -> anyhow::Result<()> {
    let c = client(conn)?;
    match cmd {
        AgentTokenCmd::Create { name } => {
            let created = c.create_agent(&name).await?;
            if conn.json {
                return print_json(&created);
            }
            eprintln!(
                "issued agent token '{}'; the token (shown only now):",
                created.agent.name
            );
            println!("{}", created.token);
        }
        AgentTokenCmd::List => {
            let agents = c.agents().await?;
            if conn.json {
                return print_json(&agents);
            }
            println!("{:<24} {:<8} CREATED", "NAME", "STATE");
            for a in agents {
                println!(
                    "{:<24} {:<8} {}",
                    a.name,
                    if a.revoked { "revoked" } else { "active" },
                    a.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        AgentTokenCmd::Revoke { name } => {
            c.revoke_agent(&name).await?;
            eprintln!("revoked agent token '{name}'");
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn account(conn: &Conn, cmd: AccountCmd) -> anyhow::Result<()> {
    let c = client(conn)?;
    match cmd {
        AccountCmd::Create { name, role } => {
            let created = c.create_account(&name, role).await?;
            if conn.json {
                return print_json(&created);
            }
            eprintln!(
                "created {} account '{}'; its token (shown only now):",
                created.account.role, created.account.name
            );
            println!("{}", created.token);
        }
        AccountCmd::List => {
            let accounts = c.accounts().await?;
            if conn.json {
                return print_json(&accounts);
            }
            println!("{:<6} {:<24} {:<9} CREATED", "ID", "NAME", "ROLE");
            for a in accounts {
                println!(
                    "{:<6} {:<24} {:<9} {}",
                    a.id,
                    a.name,
                    a.role,
                    a.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        AccountCmd::Whoami => {
            let a = c.whoami().await?;
            if conn.json {
                return print_json(&a);
            }
            println!("{} ({})", a.name, a.role);
        }
        AccountCmd::Limit { amount } => {
            let monthly = match amount.as_str() {
                "none" => None,
                a => Some(
                    a.parse::<accelhub_domain::Money>()
                        .map_err(|e| anyhow::anyhow!(e))?,
                ),
            };
            let l = c.set_spending_limit(monthly).await?;
            if conn.json {
                return print_json(&l);
            }
            match l.monthly {
                Some(m) => println!("monthly spending limit: {m}"),
                None => println!("no monthly spending limit"),
            }
        }
    }
    Ok(())
}

fn status_mark(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Pending => "pending",
        VersionStatus::Verified => "verified",
        VersionStatus::Rejected => "REJECTED",
    }
}

fn print_report(v: &IpVersion) {
    let Some(report) = &v.report else {
        println!("    verification: not finished");
        return;
    };
    for imp in &report.implementations {
        println!(
            "    device {}: {} (load {:.1} ms)",
            imp.device,
            if imp.passed { "passed" } else { "FAILED" },
            imp.load_ms
        );
        if let Some(e) = &imp.load_error {
            println!("      load error: {e}");
        }
        for t in &imp.tests {
            if t.passed {
                println!("      ok    {} ({:.2} ms)", t.name, t.device_time_ms);
                continue;
            }
            println!("      FAIL  {}", t.name);
            if let Some(e) = &t.error {
                println!("            {e}");
            }
            match t.actual_size {
                Some(a) => println!(
                    "            expected {} bytes, got {a}{}",
                    t.expected_size,
                    t.first_difference
                        .map(|o| format!("; first difference at byte {o}"))
                        .unwrap_or_default()
                ),
                None => println!(
                    "            expected {} bytes, got no output",
                    t.expected_size
                ),
            }
            if let Some(code) = t.exit_code {
                println!("            exit code {code}");
            }
            if !t.stderr_tail.trim().is_empty() {
                println!("            stderr:");
                for line in t
                    .stderr_tail
                    .trim_end()
                    .lines()
                    .rev()
                    .take(10)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    println!("              {line}");
                }
            }
        }
    }
}

async fn ip(conn: &Conn, cmd: IpCmd) -> anyhow::Result<()> {
    let c = client(conn)?;
    match cmd {
        IpCmd::Publish { dir, wait } => {
            let mut v = c.publish_dir(&dir).await?;
            if wait {
                let bar = spinner(&format!("verifying {}@{}", v.ip, v.version));
                loop {
                    let details = c.ip(&v.ip).await?;
                    if let Some(now) = details
                        .versions
                        .into_iter()
                        .find(|x| x.version == v.version)
                    {
                        v = now;
                    }
                    if v.status != VersionStatus::Pending {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                bar.finish_and_clear();
            }
            if conn.json {
                return print_json(&v);
            }
            println!("{}@{}: {}", v.ip, v.version, status_mark(v.status));
            if wait {
                print_report(&v);
                if v.status == VersionStatus::Rejected {
                    bail!("{}@{} was rejected by verification", v.ip, v.version);
                }
            } else {
                eprintln!("verification runs now; see `accelhub ip show {}`", v.ip);
            }
        }
        IpCmd::List {
            query,
            tag,
            device,
            vendor,
            sort,
        } => {
            let entries = c
                .search(
                    query.as_deref(),
                    tag.as_deref(),
                    device.as_deref(),
                    vendor.as_deref(),
                    sort.as_deref(),
                )
                .await?;
            if conn.json {
                return print_json(&entries);
            }
            println!(
                "{:<28} {:<10} {:<9} {:<10} {:<12} {:<10} {:<6} SUMMARY",
                "IP", "LATEST", "STATUS", "PRICE", "DEVICES", "RATING", "USES"
            );
            for e in entries {
                println!(
                    "{:<28} {:<10} {:<9} {:<10} {:<12} {:<10} {:<6} {}",
                    e.ip,
                    e.latest.version,
                    status_mark(e.latest.status),
                    e.latest.price_per_call,
                    e.latest.devices.join(","),
                    rating_text(&e.stats.rating),
                    e.stats.uses,
                    e.latest.summary
                );
            }
        }
        IpCmd::Review { name, stars, text } => {
            let r = c.review(&name, stars, &text).await?;
            if conn.json {
                return print_json(&r);
            }
            println!("review {} of {}: {} stars", r.id, r.ip, r.stars);
        }
        IpCmd::Reply { name, id, text } => {
            let r = c.reply(&name, id, &text).await?;
            if conn.json {
                return print_json(&r);
            }
            println!("replied to review {} of {}", r.id, r.ip);
        }
        IpCmd::Show { name } => {
            let d = c.ip(&name).await?;
            if conn.json {
                return print_json(&d);
            }
            println!("{}", d.ip);
            if let Some(latest) = d.versions.first() {
                println!("  {}", latest.summary);
            }
            println!(
                "  rated {}; {} uses by {} users",
                rating_text(&d.stats.rating),
                d.stats.uses,
                d.stats.users
            );
            for v in &d.versions {
                println!(
                    "  {} {} price/call {} devices {} published {}",
                    v.version,
                    status_mark(v.status),
                    v.price_per_call,
                    v.devices.join(","),
                    v.published_at.format("%Y-%m-%d %H:%M")
                );
                print_report(v);
            }
            if !d.reviews.is_empty() {
                println!("  reviews:");
            }
            for r in &d.reviews {
                println!(
                    "    #{} {} {} ({}): {}",
                    r.id,
                    "*".repeat(r.stars as usize),
                    r.author,
                    r.updated_at.format("%Y-%m-%d"),
                    r.text
                );
                if let Some(reply) = &r.reply {
                    println!("      vendor reply: {}", reply.text);
                }
            }
        }
    }
    Ok(())
}

fn rating_text(r: &accelhub_domain::RatingSummary) -> String {
    match r.average {
        Some(a) => format!("{a:.1} ({})", r.count),
        None => "-".into(),
    }
}

async fn deploy(
    conn: &Conn,
    target: Option<String>,
    scaling: ScalingArgs,
    devices: Vec<String>,
    cmd: Option<DeployCmd>,
) -> anyhow::Result<()> {
    let c = client(conn)?;
    match (target, cmd) {
        (Some(t), None) => {
            let (ip, version) = match t.split_once('@') {
                Some((ip, v)) => (ip.to_string(), Some(v.to_string())),
                None => (t, None),
            };
            let given = scaling.min.is_some()
                || scaling.max.is_some()
                || scaling.target_jobs.is_some()
                || scaling.scale_down_delay.is_some();
            let spec = if given {
                // Flags not given keep the deployment's current values.
                let mut sc = match c.deployment(&ip).await {
                    Ok(d) => d.scaling,
                    Err(_) => accelhub_domain::Scaling::default(),
                };
                sc.min = scaling.min.unwrap_or(sc.min);
                sc.max = scaling.max.unwrap_or(sc.max);
                sc.target = scaling.target_jobs.unwrap_or(sc.target);
                sc.scale_down_delay_secs = scaling.scale_down_delay.unwrap_or(sc.scale_down_delay_secs);
                Some(sc)
            } else {
                None
            };
            let d = c
                .deploy_request(&accelhub_domain::DeployRequest {
                    ip: ip.clone(),
                    version: version.clone(),
                    scaling: spec,
                    devices: (!devices.is_empty()).then_some(devices),
                })
                .await?;
            if conn.json {
                return print_json(&d);
            }
            println!(
                "deployed {}@{} on {} at {} per call",
                d.ip,
                d.version,
                d.devices.join(","),
                d.price_per_call
            );
        }
        (None, Some(DeployCmd::List)) => {
            let ds = c.deployments().await?;
            if conn.json {
                return print_json(&ds);
            }
            println!(
                "{:<28} {:<10} {:<10} {:<9} DEVICES",
                "IP", "VERSION", "PRICE", "REPLICAS"
            );
            for d in ds {
                println!(
                    "{:<28} {:<10} {:<10} {:<9} {}",
                    d.ip,
                    d.version,
                    d.price_per_call,
                    format!("{}/{}", d.replicas, d.scaling.max),
                    d.devices.join(",")
                );
            }
        }
        (None, Some(DeployCmd::Show { ip })) => {
            let d = c.deployment(&ip).await?;
            if conn.json {
                return print_json(&d);
            }
            println!(
                "{}@{} on {} at {} per call",
                d.ip,
                d.version,
                d.devices.join(","),
                d.price_per_call
            );
            let sc = d.scaling;
            println!(
                "replicas {} (min {}, max {}, target {} job(s) per replica, scale-down delay {} s)",
                d.replicas, sc.min, sc.max, sc.target, sc.scale_down_delay_secs
            );
            if d.events.is_empty() {
                println!("no scaling decisions yet");
            }
            for e in &d.events {
                println!("  {}  {}", e.at.format("%Y-%m-%d %H:%M:%S"), e.reason);
            }
        }
        (None, Some(DeployCmd::Rm { ip })) => {
            c.undeploy(&ip).await?;
            eprintln!("removed the deployment of {ip}");
        }
        _ => bail!(
            "usage: accelhub deploy NAME[@VERSION] [--min N --max N --target N --scale-down-delay S] \
             | accelhub deploy list | accelhub deploy show NAME | accelhub deploy rm NAME"
        ),
    }
    Ok(())
}

async fn write_response(resp: reqwest::Response, output: Option<&Path>) -> anyhow::Result<u64> {
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    match output {
        Some(path) => {
            // Write to a temporary file and rename: no partial output file
            // claims success.
            let tmp = path.with_extension("accelhub-partial");
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the download was interrupted")?;
                n += chunk.len() as u64;
                f.write_all(&chunk).await?;
            }
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, path).await?;
        }
        None => {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.context("the download was interrupted")?;
                n += chunk.len() as u64;
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
        }
    }
    Ok(n)
}

async fn invoke(
    conn: &Conn,
    ip: &str,
    input: &Path,
    params: &[String],
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let c = client(conn)?;
    let params = parse_params(params)?;
    let data = if input == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?
    };
    let (info, resp) = c.invoke_response(ip, &params, data).await?;
    let n = write_response(resp, output).await?;
    eprintln!(
        "{}@{} on {}: {n} bytes out, {:.3} ms device time, price {}{} (call {})",
        info.ip,
        info.version,
        info.device,
        info.device_time_us as f64 / 1e3,
        info.price,
        if info.cold_start { ", cold start" } else { "" },
        info.call_id
    );
    Ok(())
}

fn spinner(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(msg.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

fn print_job(job: &Job) {
    println!("job       {}", job.id);
    println!("ip        {}@{} on {}", job.ip, job.version, job.device);
    println!("input     {} ({} bytes)", job.input_key, job.input_size);
    match (job.items, &job.unit) {
        (Some(n), Some(unit)) => println!(
            "state     {} ({:.0}%, {n} {unit})",
            job.state,
            job.progress * 100.0
        ),
        _ => println!("state     {} ({:.0}%)", job.state, job.progress * 100.0),
    }
    println!("attempts  {}/{}", job.attempts, job.max_attempts);
    if let Some(k) = &job.output_key {
        println!(
            "output    {} ({} bytes)",
            k,
            job.output_size.unwrap_or_default()
        );
    }
    if let Some(e) = &job.error {
        println!("error     {e}");
    }
    for a in &job.history {
        println!(
            "  attempt {} on {}: {}{}",
            a.attempt,
            a.worker,
            a.outcome,
            a.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if let Some(log) = job.log.as_deref().filter(|l| !l.trim().is_empty()) {
        println!("log:\n{}", log.trim_end());
    }
}

/// Upload a file with a progress bar; the SHA-256 is computed first and
/// checked by the server.
async fn upload(
    c: &Client,
    path: &Path,
    key: Option<&str>,
) -> anyhow::Result<accelhub_domain::ObjectInfo> {
    use sha2::{Digest, Sha256};
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    let size = meta.len();
    let sha = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(path)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await??
    };
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("uploading");
    let file = tokio::fs::File::open(path).await?;
    let b2 = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            b2.inc(c.len() as u64);
        }
    });
    let info = c
        .put_object(key, reqwest::Body::wrap_stream(stream), Some(&sha))
        .await?;
    bar.finish_and_clear();
    Ok(info)
}

async fn job(conn: &Conn, cmd: JobCmd) -> anyhow::Result<()> {
    let c = client(conn)?;
    match cmd {
        JobCmd::Submit { ip, input, params } => {
            let params = parse_params(&params)?;
            let key = if Path::new(&input).is_file() {
                let info = upload(&c, Path::new(&input), None).await?;
                eprintln!("uploaded {input} as object {}", info.key);
                info.key
            } else {
                input
            };
            let job = c.submit_job(&ip, &key, params).await?;
            if conn.json {
                return print_json(&job);
            }
            println!("{}", job.id);
        }
        JobCmd::Status { id } => {
            let job = c.job(&id).await?;
            if conn.json {
                return print_json(&job);
            }
            print_job(&job);
        }
        JobCmd::Wait { id } => {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template("{msg:<24} [{bar:30}] {percent}% {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let job = c
                .wait_job(&id, |j| {
                    bar.set_position((j.progress * 1000.0) as u64);
                    let done = match (j.items, &j.unit) {
                        (Some(n), Some(unit)) => format!(", {n} {unit}"),
                        _ => String::new(),
                    };
                    bar.set_message(format!("{} (attempt {}{done})", j.state, j.attempts));
                })
                .await?;
            bar.finish_and_clear();
            if conn.json {
                print_json(&job)?;
            } else {
                print_job(&job);
            }
            if job.state != JobState::Succeeded {
                bail!("job {} {}", job.id, job.state);
            }
        }
        JobCmd::Output { id, output } => {
            let resp = c.job_output(&id).await?;
            let n = write_response(resp, output.as_deref()).await?;
            if let Some(p) = output {
                eprintln!("wrote {n} bytes to {}", p.display());
            }
        }
        JobCmd::List { limit } => {
            let jobs = c.jobs(Some(limit)).await?;
            if conn.json {
                return print_json(&jobs);
            }
            println!(
                "{:<38} {:<24} {:<10} {:>5} {:>4} CREATED",
                "JOB", "IP", "STATE", "PROG", "TRY"
            );
            for j in jobs {
                println!(
                    "{:<38} {:<24} {:<10} {:>4.0}% {:>4} {}",
                    j.id,
                    format!("{}@{}", j.ip, j.version),
                    j.state,
                    j.progress * 100.0,
                    j.attempts,
                    j.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        JobCmd::Cancel { id } => {
            let job = c.cancel_job(&id).await?;
            eprintln!("job {} is {}", job.id, job.state);
        }
        JobCmd::Rm { id } => {
            c.delete_job(&id).await?;
            eprintln!("deleted job {id}");
        }
    }
    Ok(())
}

async fn object(conn: &Conn, cmd: ObjectCmd) -> anyhow::Result<()> {
    let c = client(conn)?;
    match cmd {
        ObjectCmd::Put { file, key } => {
            let info = upload(&c, &file, key.as_deref()).await?;
            if conn.json {
                return print_json(&info);
            }
            eprintln!("stored {} bytes, sha256 {}", info.size, info.sha256);
            println!("{}", info.key);
        }
        ObjectCmd::Get { key, output } => {
            let resp = c.get_object(&key).await?;
            let n = write_response(resp, output.as_deref()).await?;
            if let Some(p) = output {
                eprintln!("wrote {n} bytes to {}", p.display());
            }
        }
        ObjectCmd::List => {
            let objs = c.objects().await?;
            if conn.json {
                return print_json(&objs);
            }
            println!("{:<40} {:>14} CREATED", "KEY", "BYTES");
            for o in objs {
                println!(
                    "{:<40} {:>14} {}",
                    o.key,
                    o.size,
                    o.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        ObjectCmd::Rm { key } => {
            c.delete_object(&key).await?;
            eprintln!("deleted {key}");
        }
    }
    Ok(())
}

async fn usage(conn: &Conn, since: Option<&str>) -> anyhow::Result<()> {
    let c = client(conn)?;
    let report = c.usage(since).await?;
    if conn.json {
        return print_json(&report);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<5} {:<14} {:<24} {:<8} {:<6} {:>10} {:>10} {:>10} {:>10}",
        "TIME", "KIND", "ACCOUNT", "IP", "VERSION", "DEVICE", "IN", "OUT", "DEVICE_MS", "PRICE"
    )?;
    for r in &report.records {
        writeln!(
            out,
            "{:<20} {:<5} {:<14} {:<24} {:<8} {:<6} {:>10} {:>10} {:>10.3} {:>10}",
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.kind,
            r.account.as_deref().unwrap_or("-"),
            r.ip,
            r.version,
            r.device,
            r.bytes_in,
            r.bytes_out,
            r.device_time_us as f64 / 1e3,
            if r.billed {
                r.price.to_string()
            } else {
                format!("({})", r.outcome)
            },
        )?;
    }
    let t = &report.totals;
    writeln!(
        out,
        "total ({} view): {} records, {} billed, {} failed (unbilled), {} bytes in, {} bytes out, {:.3} ms device time, amount {}",
        report.view, t.records, t.billed, t.failed, t.bytes_in, t.bytes_out,
        t.device_time_us as f64 / 1e3, t.amount
    )?;
    Ok(())
}

async fn invoice(conn: &Conn, month: Option<&str>) -> anyhow::Result<()> {
    let inv = client(conn)?.invoice(month).await?;
    if conn.json {
        return print_json(&inv);
    }
    println!("{} {} for {}", inv.view, inv.month, inv.account);
    println!(
        "  {:<28} {:<12} {:<16} {:>12} {:>14}",
        "IP", "PLAN", "ITEM", "QUANTITY", "AMOUNT"
    );
    for l in &inv.lines {
        println!(
            "  {:<28} {:<12} {:<16} {:>12} {:>14}",
            l.ip, l.plan, l.item, l.quantity, l.amount
        );
    }
    println!("  total {}", inv.total);
    if inv.view != "user" {
        println!(
            "  platform share {:.2}%: {}; vendors' net: {}",
            inv.platform_share_bps as f64 / 100.0,
            inv.platform_cut,
            inv.vendor_net
        );
    }
    Ok(())
}
