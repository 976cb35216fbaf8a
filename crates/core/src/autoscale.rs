//! The autoscaler's loop: each deployment's replicas follow its jobs
//! (`accelhub_scheduler::autoscale`, pure), and every change is recorded
//! with its reason. Several control planes may run it at once: a change is
//! written only if the replicas are still what this one read.

use crate::{Platform, Result};
use accelhub_scheduler::{autoscale, ScaleSpec};
use accelhub_store::DeploymentRow;
use chrono::{DateTime, Utc};

fn spec(d: &DeploymentRow) -> ScaleSpec {
    ScaleSpec {
        min: d.scaling.min,
        max: d.scaling.max,
        target: d.scaling.target,
        down_delay: d.scaling.scale_down_delay_secs as f64 * 1000.0,
    }
}

fn ms(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64
}

impl Platform {
    /// One round of the autoscaler over every deployment. Returns the
    /// deployments whose replicas changed.
    pub async fn autoscale_round(&self) -> Result<usize> {
        let now = Utc::now();
        let mut changed = 0;
        for row in self.store.deployment_demand().await? {
            let d = &row.deployment;
            let decision = autoscale(
                &spec(d),
                d.replicas,
                d.low_since.map(ms),
                row.queued,
                row.running,
                ms(now),
            );
            let low_since = decision
                .low_since
                .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t as i64));
            if decision.replicas == d.replicas && low_since == d.low_since {
                continue;
            }
            let written = self
                .store
                .scale_deployment(
                    &d.id,
                    d.replicas,
                    decision.replicas,
                    low_since,
                    decision.reason.as_deref(),
                )
                .await?;
            if written && decision.replicas != d.replicas {
                changed += 1;
                tracing::info!(
                    deployment = %d.id,
                    ip = %d.ip,
                    reason = decision.reason.as_deref().unwrap_or(""),
                    "autoscaler"
                );
                self.deployments.remove(&(d.account_id, d.ip.clone()));
            }
        }
        if changed > 0 {
            self.job_wakeup.notify_waiters();
        }
        Ok(changed)
    }

    /// A job was queued for a deployment scaled to zero: give it a replica
    /// now rather than at the autoscaler's next round.
    pub(crate) async fn wake_from_zero(&self, d: &DeploymentRow) -> Result<()> {
        if d.replicas > 0 {
            return Ok(());
        }
        let to = d.scaling.min.max(1).min(d.scaling.max.max(1));
        let reason = format!("scale out 0 → {to}: a job was queued");
        if self
            .store
            .scale_deployment(&d.id, 0, to, None, Some(&reason))
            .await?
        {
            self.deployments.remove(&(d.account_id, d.ip.clone()));
        }
        Ok(())
    }
}
