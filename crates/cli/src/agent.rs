//! `accelhub agent`: the devices of one node, working for a control plane
//! elsewhere. It registers the node, heartbeats, and runs the same job
//! workers as `serve`'s embedded agent, through the `/v1/agent` protocol.

use crate::serve::{shutdown_signal, DeviceArgs};
use accelhub_client::{AgentClient, ClientError};
use accelhub_worker::{node_report, Executor, HttpJobs, NoMetrics, WorkerPool};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The control plane's URL.
    #[arg(long, env = "ACCELHUB_SERVER")]
    pub server: String,
    /// The agent token the operator issued (`accelhub agent-token create`).
    #[arg(long, env = "ACCELHUB_AGENT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// This node's name, unique in the fleet (default: the host name).
    #[arg(long, env = "ACCELHUB_NODE")]
    pub node: Option<String>,
    /// Directory for job outputs on their way to the control plane.
    #[arg(long, env = "ACCELHUB_DATA", default_value = ".accelhub-agent")]
    pub data: PathBuf,
    #[command(flatten)]
    pub devices: DeviceArgs,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "agent".into())
}

pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let node = args.node.clone().unwrap_or_else(host_name);
    let client = AgentClient::new(&args.server, &args.token, &node)?;
    let executor: Arc<dyn Executor> = Arc::new(args.devices.executor(&node)?);
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create {}", args.data.display()))?;

    // Register, waiting for a control plane that is not up yet; a refused
    // token ends the agent.
    let hello = loop {
        match client.register(&node_report(&*executor)).await {
            Ok(h) => break h,
            Err(e @ ClientError::Connect { .. }) => {
                eprintln!("{e}; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 401) => {
                anyhow::bail!(
                    "the control plane at {} refused the agent token: ask the operator for one \
                     (accelhub agent-token create NAME)",
                    args.server
                )
            }
            Err(e) => return Err(e).context("cannot register the node"),
        }
    };
    let classes: Vec<String> = executor
        .device_slots()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    eprintln!(
        "accelhub agent: node '{node}' registered with {} ({})",
        args.server,
        classes.join(", ")
    );

    let heartbeat = {
        let client = client.clone();
        let executor = executor.clone();
        let every = Duration::from_millis(hello.heartbeat_ms.max(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let report = node_report(&*executor);
                match client.heartbeat(&report).await {
                    Ok(()) => {}
                    // The control plane forgot the node: register again.
                    Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => {
                        if let Err(e) = client.register(&report).await {
                            tracing::warn!("cannot register again: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("heartbeat: {e}"),
                }
            }
        })
    };

    let source = Arc::new(HttpJobs::new(client));
    let pool = WorkerPool::start(
        source,
        executor,
        args.data.join("scratch"),
        Arc::new(NoMetrics),
    )
    .await?;
    shutdown_signal().await;
    eprintln!("shutting down: finishing running jobs (10 s at most)");
    if tokio::time::timeout(Duration::from_secs(10), pool.shutdown())
        .await
        .is_err()
    {
        eprintln!("jobs still running are retried elsewhere once their leases expire");
    }
    heartbeat.abort();
    Ok(())
}
