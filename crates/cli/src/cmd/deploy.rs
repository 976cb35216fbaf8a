//! `accelhub deploy …`: deploy, list, show, remove.

use crate::cli::Conn;
use crate::output::{emit, note, table};
use accelhub_domain::{DeployRequest, Scaling};
use anyhow::bail;
use clap::{Args, Subcommand};
use std::fmt::Write;

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

impl ScalingArgs {
    fn given(&self) -> bool {
        self.min.is_some()
            || self.max.is_some()
            || self.target_jobs.is_some()
            || self.scale_down_delay.is_some()
    }

    /// `current` with the flags given applied.
    fn apply(&self, mut sc: Scaling) -> Scaling {
        sc.min = self.min.unwrap_or(sc.min);
        sc.max = self.max.unwrap_or(sc.max);
        sc.target = self.target_jobs.unwrap_or(sc.target);
        sc.scale_down_delay_secs = self.scale_down_delay.unwrap_or(sc.scale_down_delay_secs);
        sc
    }
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

pub async fn deploy(
    conn: &Conn,
    target: Option<String>,
    scaling: ScalingArgs,
    devices: Vec<String>,
    cmd: Option<DeployCmd>,
) -> anyhow::Result<()> {
    let c = conn.client()?;
    match (target, cmd) {
        (Some(t), None) => {
            let (ip, version) = match t.split_once('@') {
                Some((ip, v)) => (ip.to_string(), Some(v.to_string())),
                None => (t, None),
            };
            let spec = if scaling.given() {
                // Flags not given keep the deployment's current values.
                let current = match c.deployment(&ip).await {
                    Ok(d) => d.scaling,
                    Err(_) => Scaling::default(),
                };
                Some(scaling.apply(current))
            } else {
                None
            };
            let d = c
                .deploy_request(&DeployRequest {
                    ip,
                    version,
                    scaling: spec,
                    devices: (!devices.is_empty()).then_some(devices),
                })
                .await?;
            emit(conn.json, &d, |d, out| {
                writeln!(
                    out,
                    "deployed {}@{} on {} at {} per call",
                    d.ip,
                    d.version,
                    d.devices.join(","),
                    d.price_per_call
                )
            })
        }
        (None, Some(DeployCmd::List)) => emit(conn.json, &c.deployments().await?, |ds, out| {
            out.push_str(&table(
                &["IP", "VERSION", "PRICE", "REPLICAS", "DEVICES"],
                &[],
                ds.iter().map(|d| {
                    [
                        d.ip.clone(),
                        d.version.clone(),
                        d.price_per_call.to_string(),
                        format!("{}/{}", d.replicas, d.scaling.max),
                        d.devices.join(","),
                    ]
                }),
            ));
            Ok(())
        }),
        (None, Some(DeployCmd::Show { ip })) => {
            emit(conn.json, &c.deployment(&ip).await?, |d, out| {
                writeln!(
                    out,
                    "{}@{} on {} at {} per call",
                    d.ip,
                    d.version,
                    d.devices.join(","),
                    d.price_per_call
                )?;
                let sc = &d.scaling;
                writeln!(
                    out,
                    "replicas {} (min {}, max {}, target {} job(s) per replica, scale-down delay {} s)",
                    d.replicas, sc.min, sc.max, sc.target, sc.scale_down_delay_secs
                )?;
                if d.events.is_empty() {
                    writeln!(out, "no scaling decisions yet")?;
                }
                for e in &d.events {
                    writeln!(out, "  {}  {}", e.at.format("%Y-%m-%d %H:%M:%S"), e.reason)?;
                }
                Ok(())
            })
        }
        (None, Some(DeployCmd::Rm { ip })) => {
            c.undeploy(&ip).await?;
            note(format_args!("removed the deployment of {ip}"));
            Ok(())
        }
        _ => bail!(
            "usage: accelhub deploy NAME[@VERSION] [--min N --max N --target N --scale-down-delay S] \
             | accelhub deploy list | accelhub deploy show NAME | accelhub deploy rm NAME"
        ),
    }
}
