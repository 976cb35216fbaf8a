//! Asynchronous jobs and the embedded agent that runs them.
//!
//! The queue is the store: a job is claimed under a lease that its worker
//! renews while it runs. A worker that dies stops renewing; the lease
//! expires and the job is queued again, up to its attempt limit. The job's
//! completion and its usage record are written in one transaction, so a job
//! is billed once however often it is retried.

use crate::{account_object_key, new_id, usage_record, CoreError, ExecError, Platform, Result};
use accelhub_device::{CallControl, CallData, CallInput, Output, OutputSink};
use accelhub_domain::{Account, Job, JobState, Params};
use accelhub_store::{JobOutcome, JobRow, NewJob, VersionRow};
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
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
        let (_, version) = self.deployment_of(account, ip).await?;
        let imp = self.pick_implementation(&version).ok_or_else(|| {
            CoreError::Unavailable(format!(
                "no device can run {}@{} right now",
                version.ip, version.version
            ))
        })?;
        let object = self.object_info(account, input_key).await?;
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

    pub async fn jobs(&self, account: &Account, limit: u32) -> Result<Vec<Job>> {
        Ok(self
            .store
            .list_jobs(account.id, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(job_view)
            .collect())
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

    /// The output object of a succeeded job.
    pub async fn job_output(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<(accelhub_domain::ObjectInfo, accelhub_objects::ByteStream)> {
        let job = self.owned_job(account, id).await?;
        let key = match (&job.state, &job.output_key) {
            (JobState::Succeeded, Some(k)) => k.clone(),
            (state, _) => {
                return Err(CoreError::Conflict(format!(
                    "job '{id}' is {state}: only a succeeded job has output"
                )))
            }
        };
        self.get_object(account, &key).await
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
        if let Some(key) = &job.output_key {
            if self.store.delete_object(account.id, key).await? {
                self.objects
                    .delete(&account_object_key(account.id, key))
                    .await?;
            }
        }
        self.store.delete_job(id).await?;
        Ok(())
    }
}

pub(crate) fn job_view(j: JobRow) -> Job {
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
        error: j.error,
        log: j.log,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        history: j.history,
    }
}

/// The embedded agent: job workers for this node's devices.
pub struct Agent {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Start the job workers, one per slot of each device class, each
    /// taking only its class's jobs (a long genomics job never holds up a
    /// wasm one), and the lease keeper. Jobs this node was running when its
    /// process died are queued again first.
    pub async fn start(platform: Arc<Platform>) -> Result<Agent> {
        let node = platform.config.node.clone();
        // Outputs of jobs the last process was running are stale.
        let scratch = &platform.config.scratch_dir;
        let _ = tokio::fs::remove_dir_all(scratch).await;
        tokio::fs::create_dir_all(scratch).await.map_err(|e| {
            CoreError::Internal(format!("cannot create {}: {e}", scratch.display()))
        })?;
        let lost = platform.store.release_worker(&node).await?;
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "re-queued jobs interrupted by the last shutdown"
            );
        }
        platform.verify_pending().await?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (class, slots) in platform.executor.device_slots() {
            for _ in 0..slots.max(1) {
                let p = platform.clone();
                let rx = stop_rx.clone();
                let devices = vec![class.clone()];
                tasks.push(tokio::spawn(
                    async move { worker_loop(p, devices, rx).await },
                ));
            }
        }
        let p = platform.clone();
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
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
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = rx.changed() => return,
                }
            }
        }));
        Ok(Agent { stop, tasks })
    }

    /// Stop taking jobs and wait for the workers to finish what they run.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn worker_loop(p: Arc<Platform>, devices: Vec<String>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let lease_until = Utc::now() + p.config.job_lease;
        match p
            .store
            .claim_job(&p.config.node, &devices, lease_until)
            .await
        {
            Ok(Some(job)) => {
                run_job(&p, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("cannot claim a job: {e}"),
        }
        tokio::select! {
            _ = p.job_wakeup.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn run_job(p: &Arc<Platform>, job: JobRow) {
    p.metrics.jobs_running(1);
    let outcome = execute_job(p, &job).await;
    p.metrics.jobs_running(-1);
    let label = match &outcome {
        Ok(_) => "succeeded",
        Err(JobEnd::Failed(_)) => "failed",
        Err(JobEnd::Stopped) => "stopped",
    };
    p.metrics.job_finished(label);
    if let Err(JobEnd::Failed(e)) = &outcome {
        tracing::info!(job = %job.id, "job failed: {e}");
    }
}

enum JobEnd {
    /// The job failed; record it (unbilled).
    Failed(String),
    /// The lease was lost or the job cancelled: write nothing more.
    Stopped,
}

async fn execute_job(p: &Arc<Platform>, job: &JobRow) -> Result<(), JobEnd> {
    let node = p.config.node.clone();
    let version = match p.store.get_version_by_id(job.version_id).await {
        Ok(Some(v)) => v,
        _ => return fail(p, job, None, "the job's IP version is gone".into(), None).await,
    };
    let Some(imp) = version
        .implementations
        .iter()
        .find(|i| i.device == job.device)
        .cloned()
    else {
        return fail(
            p,
            job,
            Some(&version),
            format!("no '{}' implementation", job.device),
            None,
        )
        .await;
    };

    let control = Arc::new(CallControl::default());
    let scratch = ScratchFile(p.config.scratch_dir.join(format!("{}.out", job.id)));
    // Set once the input is open; progress then follows the bytes read.
    let input_open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, mut done_rx) = watch::channel(false);
    // Heartbeat: renew the lease, publish progress, notice cancellation.
    let heartbeat = {
        let p = p.clone();
        let id = job.id.clone();
        let control = control.clone();
        let input_size = job.input_size.max(1);
        let node = node.clone();
        let input_open = input_open.clone();
        tokio::spawn(async move {
            let every = (p.config.job_lease / 3).min(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = done_rx.changed() => return,
                }
                let consumed = control.consumed.load(Ordering::Relaxed) as f64;
                let frac = if input_open.load(Ordering::Relaxed) {
                    (0.05 + 0.9 * consumed / input_size as f64).min(0.95)
                } else {
                    0.0
                };
                let items = control
                    .unit
                    .get()
                    .map(|u| (control.items.load(Ordering::Relaxed), *u));
                match p
                    .store
                    .renew_lease(&id, &node, Utc::now() + p.config.job_lease, frac, items)
                    .await
                {
                    Ok(Some(JobState::Running)) => {}
                    Ok(_) => {
                        control.cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => tracing::warn!(job = %id, "cannot renew lease: {e}"),
                }
            }
        })
    };

    let result = async {
        // The input streams from the object store to the device, and the
        // output from the device to a scratch file: memory stays bounded.
        let (_, stream) = p
            .objects
            .get_stream(&account_object_key(job.account_id, &job.input_key))
            .await
            .map_err(|e| {
                (
                    format!("cannot read input object '{}': {e}", job.input_key),
                    None,
                )
            })?;
        let objects = p
            .resolve_objects(job.account_id, &version, &job.params)
            .await
            .map_err(|e| (e.to_string(), None))?;
        input_open.store(true, Ordering::Relaxed);
        let call = CallInput {
            input: CallData::Stream(stream),
            input_name: job.input_key.clone(),
            output: OutputSink::File(scratch.0.clone()),
            params: job.params.clone(),
            objects,
            limits: version.limits,
            control: control.clone(),
        };
        let image = Platform::image_id(&imp);
        let key = imp.artifact_key.clone();
        p.executor
            .execute(
                &imp.device,
                &image,
                Box::new(move || Box::pin(async move { p.unseal(&key).await })),
                call,
            )
            .await
            .map_err(|e| match e {
                ExecError::Call(c) => (
                    c.to_string(),
                    Some(accelhub_domain::version::tail(c.log(), 4096)).filter(|l| !l.is_empty()),
                ),
                other => (other.to_string(), None),
            })
    }
    .await;
    let _ = done_tx.send(true);
    let _ = heartbeat.await;

    let out = match result {
        _ if control.cancel.load(Ordering::Relaxed) => {
            // Cancelled by its owner, or the lease moved on: not ours to finish.
            return Err(JobEnd::Stopped);
        }
        Ok((_, out)) => out,
        Err((msg, log)) => return fail(p, job, Some(&version), msg, log).await,
    };

    let output_key = format!("{}.out", job.id);
    let bytes_out = out.output.len();
    let stored = store_output(p, job.account_id, &output_key, out.output).await;
    drop(scratch);
    let put = match stored {
        Ok(put) => put,
        Err(e) => {
            return fail(
                p,
                job,
                Some(&version),
                format!("cannot store the output: {e}"),
                None,
            )
            .await
        }
    };
    if let Err(e) = p
        .store
        .put_object(job.account_id, &output_key, put.size, &put.sha256)
        .await
    {
        return fail(
            p,
            job,
            Some(&version),
            format!("cannot record the output: {e}"),
            None,
        )
        .await;
    }
    let log = (!out.log.is_empty()).then(|| accelhub_domain::version::tail(&out.log, 4096));
    let usage = usage_record(
        &job.id,
        "job",
        job.account_id,
        &version,
        &job.device,
        job.input_size,
        bytes_out,
        out.device_time,
        true,
        "ok",
    );
    match p
        .store
        .finish_job(
            &job.id,
            &node,
            JobOutcome::Succeeded {
                output_key: output_key.clone(),
                output_size: bytes_out,
                log,
                items: control
                    .unit
                    .get()
                    .map(|u| (control.items.load(Ordering::Relaxed), u.to_string())),
            },
            Some(usage),
        )
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => {
            // Cancelled or re-leased meanwhile: drop the output.
            let _ = p.store.delete_object(job.account_id, &output_key).await;
            let _ = p
                .objects
                .delete(&account_object_key(job.account_id, &output_key))
                .await;
            Err(JobEnd::Stopped)
        }
        Err(e) => {
            tracing::error!(job = %job.id, "cannot record completion: {e}");
            Err(JobEnd::Stopped)
        }
    }
}

/// A job's scratch output file, removed however the job ends.
struct ScratchFile(std::path::PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Move a job's output into the account's object space.
async fn store_output(
    p: &Arc<Platform>,
    account_id: i64,
    key: &str,
    output: Output,
) -> Result<accelhub_objects::PutResult, accelhub_objects::ObjectError> {
    let path = account_object_key(account_id, key);
    match output {
        Output::Bytes(b) => p.objects.put(&path, b).await,
        Output::File { path: file, .. } => {
            let f = tokio::fs::File::open(&file).await?;
            let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
            p.objects
                .put_stream(&path, Box::pin(stream), u64::MAX)
                .await
        }
    }
}

async fn fail(
    p: &Arc<Platform>,
    job: &JobRow,
    version: Option<&VersionRow>,
    error: String,
    log: Option<String>,
) -> Result<(), JobEnd> {
    let usage = version.map(|v| {
        usage_record(
            &job.id,
            "job",
            job.account_id,
            v,
            &job.device,
            job.input_size,
            0,
            Duration::ZERO,
            false,
            "error",
        )
    });
    match p
        .store
        .finish_job(
            &job.id,
            &p.config.node,
            JobOutcome::Failed {
                error: error.clone(),
                log,
            },
            usage,
        )
        .await
    {
        Ok(true) => Err(JobEnd::Failed(error)),
        Ok(false) => Err(JobEnd::Stopped),
        Err(e) => {
            tracing::error!(job = %job.id, "cannot record failure: {e}");
            Err(JobEnd::Stopped)
        }
    }
}
