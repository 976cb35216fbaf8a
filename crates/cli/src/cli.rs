//! Command-line interface: the command tree and its dispatch. Each group
//! of subcommands lives in `cmd/`; everything they print goes through
//! `output`.

use crate::cmd::account::{AccountCmd, AgentTokenCmd};
use crate::cmd::deploy::{DeployCmd, ScalingArgs};
use crate::cmd::ip::IpCmd;
use crate::cmd::job::JobCmd;
use crate::cmd::object::ObjectCmd;
use crate::cmd::{account, billing, call, deploy, fleet, ip, job, object};
use crate::serve::{serve, ServeArgs};
use accelhub_client::Client;
use accelhub_domain::Params;
use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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

impl Cli {
    /// The most threads the async runtime's blocking pool may start: what
    /// the node's devices need when this runs one (`serve`, `agent`).
    pub fn blocking_threads(&self) -> usize {
        match &self.command {
            Command::Serve(s) => s.devices.blocking_threads(),
            Command::Agent(a) => a.devices.blocking_threads(),
            _ => 64,
        }
    }
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

impl Conn {
    /// A client for the server and token of this connection.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.token.clone())?)
    }
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
        Command::Account { conn, cmd } => account::account(&conn, cmd).await,
        Command::Ip { conn, cmd } => ip::ip(&conn, cmd).await,
        Command::Deploy {
            conn,
            target,
            scaling,
            devices,
            cmd,
        } => deploy::deploy(&conn, target, scaling, devices, cmd).await,
        Command::Invoke {
            conn,
            ip,
            input,
            params,
            output,
        } => call::invoke(&conn, &ip, &input, &params, output.as_deref()).await,
        Command::Job { conn, cmd } => job::job(&conn, cmd).await,
        Command::Object { conn, cmd } => object::object(&conn, cmd).await,
        Command::Usage { conn, since } => billing::usage(&conn, since.as_deref()).await,
        Command::Subscribe { conn, ip, plan } => billing::subscribe(&conn, &ip, &plan).await,
        Command::Invoice { conn, month } => billing::invoice(&conn, month.as_deref()).await,
        Command::Fleet { conn } => fleet::fleet(&conn).await,
        Command::Agent(args) => {
            init_tracing();
            crate::agent::agent(args).await
        }
        Command::AgentToken { conn, cmd } => account::agent_token(&conn, cmd).await,
        Command::Genomics { cmd } => {
            tokio::task::spawn_blocking(move || crate::genomics::run(cmd)).await?
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
