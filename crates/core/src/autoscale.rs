//! The autoscaler's loop: each deployment's replicas follow its jobs
//! (`accelhub_scheduler::autoscale`, pure), and every change is recorded
//! with its reason. Several control planes may run it at once: a change is
//! written only if the replicas are still what this one read.
//!
//! A deployment's replicas are the device slots its jobs may run on at once.
//! Every second, each control plane sets them to the jobs queued and running
//! divided by the deployment's target, within `min..=max`: out at once, in
//! only after the scale-down delay, to zero when `min` is 0; a submission
//! scales its deployment out at once when demand calls for it (from zero, or
//! a burst). Each change is written only if the replicas are still what this
//! control plane read, and recorded with its reason (`accelhub deploy show`).
//! The cap is enforced where jobs are leased: the store's `claim_job_id`
//! counts the deployment's running jobs under a lock on its row, so
//! concurrent claims never exceed it; sync calls are not counted.

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

    /// A job was queued: scale out now if demand calls for it (from zero,
    /// or a burst), rather than at the autoscaler's next round.
    pub(crate) async fn scale_out_now(&self, deployment_id: &str) -> Result<()> {
        let Some(row) = self.store.deployment_demand_of(deployment_id).await? else {
            return Ok(());
        };
        let d = &row.deployment;
        let now = ms(Utc::now());
        let decision = autoscale(
            &spec(d),
            d.replicas,
            d.low_since.map(ms),
            row.queued,
            row.running,
            now,
        );
        if decision.replicas > d.replicas
            && self
                .store
                .scale_deployment(
                    &d.id,
                    d.replicas,
                    decision.replicas,
                    None,
                    decision.reason.as_deref(),
                )
                .await?
        {
            self.deployments.remove(&(d.account_id, d.ip.clone()));
        }
        Ok(())
    }
}
