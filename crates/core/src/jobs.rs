//! Asynchronous jobs and the embedded agent that runs them.
//!
//! The queue is the store: a job is claimed under a lease that its worker
//! renews while it runs. A worker that dies stops renewing; the lease
//! expires and the job is queued again, up to its attempt limit. The job's
//! completion and its usage record are written in one transaction, so a job
//! is billed once however often it is retried.
//!
//! Job inputs are objects in the user's private space. `submit` writes a
//! `queued` row; workers lease jobs, renew the lease while running
//! (publishing progress: input bytes read, and items in the IP's own unit
//! when it counts them), and finish by writing the outcome and the usage
//! record together. Job data streams: the input object is read chunk by chunk
//! into the device, the output goes to a scratch file and then into the object
//! store, so memory does not bound a job's size. On start-up a node releases
//! the leases its previous process held; the lease keeper here declares dead
//! a node silent for a whole lease and queues its jobs again at once.

use crate::worker::LocalJobs;
use crate::{account_object_key, new_id, CoreError, Platform, Result};
use accelhub_domain::{Account, Job, JobState, Params};
use accelhub_store::{JobRow, NewJob};
use accelhub_worker::WorkerPool;
use chrono::Utc;
use std::sync::Arc;
use tokio::sync::watch;

impl Platform {
    /// Queue a job: run the caller's deployment of `ip` on one of its
    /// objects.
    pub async fn submit_job(
        &self,
        account: &Account,
        ip: &str,
        input_key: &str,
        params: Params,
    ) -> Result<Job> {
        let (deployment, version) = self.deployment_of(account, ip).await?;
        let classes = self.job_device_classes().await?;
        let imp = crate::placement::call_order(&deployment, &version)
            .into_iter()
            .find(|i| classes.contains(&i.device))
            .ok_or_else(|| {
                CoreError::Unavailable(format!(
                    "no device can run {}@{} right now: no node takes jobs for its device classes ({})",
                    version.ip,
                    version.version,
                    version
                        .implementations
                        .iter()
                        .map(|i| i.device.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let object = self.object_info(account, input_key).await?;
        self.check_allowance(account, &version, object.size).await?;
        // Object inputs are checked now, so a bad key fails the request
        // rather than the job; the job resolves them again when it runs.
        self.resolve_objects(account.id, &version, &params).await?;
        if object.size > self.config.max_job_input_bytes {
            return Err(CoreError::TooLarge(format!(
                "job inputs are at most {} bytes on this platform; '{input_key}' has {}",
                self.config.max_job_input_bytes, object.size
            )));
        }
        let row = self
            .store
            .create_job(NewJob {
                id: new_id("job"),
                account_id: account.id,
                version_id: version.id,
                device: imp.device,
                input_key: input_key.to_string(),
                input_size: object.size,
                params,
                max_attempts: self.config.job_max_attempts,
            })
            .await?;
        self.scale_out_now(&deployment.id).await?;
        self.job_wakeup.notify_one();
        Ok(job_view(row))
    }

    async fn owned_job(&self, account: &Account, id: &str) -> Result<JobRow> {
        match self.store.get_job(id).await? {
            Some(j) if j.account_id == account.id => Ok(j),
            // Someone else's job is reported exactly like a missing one.
            _ => Err(CoreError::NotFound(format!("you have no job '{id}'"))),
        }
    }

    pub async fn job(&self, account: &Account, id: &str) -> Result<Job> {
        Ok(job_view(self.owned_job(account, id).await?))
    }

    /// A page of the caller's jobs, newest first, and the cursor of the
    /// next page.
    pub async fn jobs(
        &self,
        account: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<Job>> {
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let items: Vec<Job> = self
            .store
            .list_jobs(account.id, after, limit)
            .await?
            .into_iter()
            .map(job_view)
            .collect();
        Ok(accelhub_domain::Page::of(items, limit, |j| {
            accelhub_domain::Cursor {
                at_ms: j.created_at.timestamp_millis(),
                id: j.id.clone(),
            }
        }))
    }

    pub async fn cancel_job(&self, account: &Account, id: &str) -> Result<Job> {
        let job = self.owned_job(account, id).await?;
        if job.state.is_terminal() {
            return Err(CoreError::Conflict(format!(
                "job '{id}' already {}: nothing to cancel",
                job.state
            )));
        }
        self.store.cancel_job(id).await?;
        self.job(account, id).await
    }

    /// An output object of a succeeded job: the one called `name`, or
    /// the main one.
    pub async fn job_output(
        &self,
        account: &Account,
        id: &str,
        name: Option<&str>,
    ) -> Result<(accelhub_domain::ObjectInfo, accelhub_objects::ByteStream)> {
        let job = job_view(self.owned_job(account, id).await?);
        if job.state != JobState::Succeeded {
            return Err(CoreError::Conflict(format!(
                "job '{id}' is {}: only a succeeded job has output",
                job.state
            )));
        }
        let found = match name {
            None => job.outputs.first(),
            Some(n) => job.outputs.iter().find(|o| o.name == n),
        };
        let Some(output) = found else {
            let names: Vec<&str> = job.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(CoreError::NotFound(format!(
                "job '{id}' has no output '{}'; it has {}",
                name.unwrap_or_default(),
                names.join(", ")
            )));
        };
        self.get_object(account, &output.key).await
    }

    /// Delete a finished job and its output.
    pub async fn delete_job(&self, account: &Account, id: &str) -> Result<()> {
        let job = self.owned_job(account, id).await?;
        if !job.state.is_terminal() {
            return Err(CoreError::Conflict(format!(
                "job '{id}' is {}: cancel it before deleting it",
                job.state
            )));
        }
        for output in job_view(job).outputs {
            if self.store.delete_object(account.id, &output.key).await? {
                self.objects
                    .delete(&account_object_key(account.id, &output.key))
                    .await?;
            }
        }
        self.store.delete_job(id).await?;
        Ok(())
    }
}

pub(crate) fn job_view(j: JobRow) -> Job {
    // Jobs that succeeded before outputs were named have one, unnamed.
    let outputs = match (&j.output_key, j.outputs.is_empty()) {
        (Some(key), true) => vec![accelhub_domain::JobOutput {
            name: accelhub_domain::MAIN_OUTPUT.into(),
            key: key.clone(),
            size: j.output_size.unwrap_or(0),
        }],
        _ => j.outputs,
    };
    Job {
        id: j.id,
        account: j.account,
        ip: j.ip,
        version: j.version,
        device: j.device,
        input_key: j.input_key,
        input_size: j.input_size,
        params: j.params,
        state: j.state,
        progress: j.progress,
        items: j.items.as_ref().map(|(n, _)| *n),
        unit: j.items.map(|(_, u)| u),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        output_key: j.output_key,
        output_size: j.output_size,
        outputs,
        error: j.error,
        log: j.log,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        history: j.history,
    }
}

/// The control plane's background loops: the lease keeper (re-queues the
/// jobs of workers that died, declares dead the remote nodes that stopped
/// heartbeating), the autoscaler and the metering of dedicated
/// deployments; and, unless `CoreConfig::local_jobs` is off, the embedded
/// agent (a `WorkerPool` over this process's devices).
pub struct ControlLoops {
    stop: watch::Sender<bool>,
    keeper: tokio::task::JoinHandle<()>,
    autoscaler: tokio::task::JoinHandle<()>,
    workers: Option<WorkerPool>,
}

/// How often the autoscaler looks at every deployment.
const AUTOSCALE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often dedicated deployments' held replicas are metered into usage
/// records (and so how late an invoice may see them).
const RESERVATION_METER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl ControlLoops {
    /// Jobs this node was running when its process died are queued again
    /// first; versions left pending are verified.
    pub async fn start(platform: Arc<Platform>) -> Result<ControlLoops> {
        let node = platform.config.node.clone();
        let lost = platform
            .store
            .release_worker(&node, "the worker's process stopped mid-job")
            .await?;
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "re-queued jobs interrupted by the last shutdown"
            );
        }
        platform.verify_pending().await?;
        let workers = if platform.config.local_jobs {
            Some(
                WorkerPool::start(
                    Arc::new(LocalJobs::new(platform.clone())),
                    platform.executor.clone(),
                    platform.config.scratch_dir.clone(),
                    platform.metrics.clone(),
                )
                .await
                .map_err(|e| CoreError::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        let (stop, mut rx) = watch::channel(false);
        let stop_rx_autoscaler = rx.clone();
        let p = platform.clone();
        let keeper = tokio::spawn(async move {
            let every = p.config.job_lease / 3;
            loop {
                match p.store.requeue_expired(Utc::now()).await {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::warn!(jobs = ?ids, "leases expired: jobs re-queued");
                        p.job_wakeup.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("lease keeper: {e}"),
                }
                if let Err(e) = p.bury_silent_nodes().await {
                    tracing::error!("lease keeper: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = rx.changed() => return,
                }
            }
        });
        let p = platform.clone();
        let mut rx = stop_rx_autoscaler;
        let autoscaler = tokio::spawn(async move {
            // Metering looks at every deployment: once a period, not every
            // round. A deployment is due once half a period old, so that
            // another process's recent metering does not delay it a period.
            let mut metered: Option<std::time::Instant> = None;
            loop {
                if let Err(e) = p.autoscale_round().await {
                    tracing::error!("autoscaler: {e}");
                }
                if metered.is_none_or(|t| t.elapsed() >= RESERVATION_METER_EVERY) {
                    metered = Some(std::time::Instant::now());
                    if let Err(e) = p.meter_reservations(RESERVATION_METER_EVERY / 2).await {
                        tracing::error!("metering dedicated deployments: {e}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(AUTOSCALE_EVERY) => {}
                    _ = rx.changed() => return,
                }
            }
        });
        Ok(ControlLoops {
            stop,
            keeper,
            autoscaler,
            workers,
        })
    }

    /// Stop taking jobs and wait for the workers to finish what they run.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.workers {
            w.shutdown().await;
        }
        let _ = self.keeper.await;
        let _ = self.autoscaler.await;
    }
}
