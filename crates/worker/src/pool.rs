//! The worker pool: one worker per device slot, each leasing its device
//! class's jobs from a [`JobSource`] and running them to their end.

use crate::{ExecError, Executor, JobSource, WorkerMetrics};
use accelhub_device::{CallControl, CallData, CallInput, ImageId, ObjectArg, OutputSink};
use accelhub_domain::{ClaimRequest, JobReport, Renewal, WorkItem};
use accelhub_objects::ByteStream;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A byte stream over a file, in large chunks.
pub async fn file_stream(path: &std::path::Path) -> std::io::Result<ByteStream> {
    let f = tokio::fs::File::open(path).await?;
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
        f,
        256 * 1024,
    )))
}

/// Workers for every slot of an executor's devices, each taking only its
/// device class's jobs (a long genomics job never holds up a wasm one).
pub struct WorkerPool {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WorkerPool {
    /// Start the workers. Outputs left in `scratch` by a process that died
    /// are removed first.
    pub async fn start(
        source: Arc<dyn JobSource>,
        executor: Arc<dyn Executor>,
        scratch: PathBuf,
        metrics: Arc<dyn WorkerMetrics>,
    ) -> std::io::Result<WorkerPool> {
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        tokio::fs::create_dir_all(&scratch).await.map_err(|e| {
            std::io::Error::other(format!("cannot create {}: {e}", scratch.display()))
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (class, slots) in executor.device_slots() {
            for _ in 0..slots.max(1) {
                let w = Worker {
                    source: source.clone(),
                    executor: executor.clone(),
                    scratch: scratch.clone(),
                    metrics: metrics.clone(),
                    devices: vec![class.clone()],
                };
                let rx = stop_rx.clone();
                tasks.push(tokio::spawn(async move { w.run(rx).await }));
            }
        }
        Ok(WorkerPool { stop, tasks })
    }

    /// Stop taking jobs and wait for the workers to finish what they run.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Worker {
    source: Arc<dyn JobSource>,
    executor: Arc<dyn Executor>,
    scratch: PathBuf,
    metrics: Arc<dyn WorkerMetrics>,
    devices: Vec<String>,
}

/// What a worker asks the control plane to wait for a job.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let req = self.claim_request();
            let claimed = tokio::select! {
                r = self.source.claim(&req) => r,
                _ = stop.changed() => return,
            };
            match claimed {
                Ok(Some(item)) => {
                    self.metrics.jobs_running(1);
                    let label = self.execute(item).await;
                    self.metrics.jobs_running(-1);
                    self.metrics.job_finished(label);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("cannot claim a job: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// Ask for work, saying what this worker's device holds.
    fn claim_request(&self) -> ClaimRequest {
        let mut req = ClaimRequest {
            devices: self.devices.clone(),
            wait_ms: CLAIM_WAIT.as_millis() as u64,
            ..ClaimRequest::default()
        };
        for (_, d) in self.executor.devices() {
            if self.devices.contains(&d.class) {
                req.images.extend(d.images.into_iter().map(|i| i.0));
                req.resident.extend(d.resident);
            }
        }
        req
    }

    /// Run one leased job to its end. Returns the metrics label.
    async fn execute(&self, item: WorkItem) -> &'static str {
        let control = Arc::new(CallControl::default());
        let scratch = ScratchFile(self.scratch.join(format!("{}.out", item.job)));
        // Named outputs' scratch files, removed with the main one's.
        let named: Vec<(String, ScratchFile)> = item
            .outputs
            .iter()
            .map(|n| {
                let path = self.scratch.join(format!("{}.out.{n}", item.job));
                (n.clone(), ScratchFile(path))
            })
            .collect();
        // Set once the input is open; progress then follows the bytes read.
        let input_open = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = watch::channel(false);
        let heartbeat = tokio::spawn(keep_lease(
            self.source.clone(),
            item.job.clone(),
            Duration::from_millis(item.lease_ms),
            item.input_size.max(1),
            control.clone(),
            input_open.clone(),
            done_rx,
        ));

        let result = self
            .call(&item, control.clone(), &input_open, &scratch.0, &named)
            .await;
        let _ = done_tx.send(true);
        let _ = heartbeat.await;

        if control.cancel.load(Ordering::Relaxed) {
            // Cancelled by its owner, or the lease moved on: not ours to
            // finish.
            return "stopped";
        }
        let report = match result {
            Err((error, log)) => JobReport::Failed { error, log },
            Ok(out) => {
                let log =
                    (!out.log.is_empty()).then(|| accelhub_domain::version::tail(&out.log, 4096));
                let named: Vec<String> = out.named.keys().cloned().collect();
                match self.put_outputs(&item.job, out.output, out.named).await {
                    Ok(size) => JobReport::Succeeded {
                        output_size: size,
                        outputs: named,
                        log,
                        items: control
                            .unit
                            .get()
                            .map(|_| control.items.load(Ordering::Relaxed)),
                        unit: control.unit.get(),
                        device_time_ms: out.device_time.as_millis() as u64,
                    },
                    Err(e) => JobReport::Failed {
                        error: format!("cannot store the output: {e}"),
                        log,
                    },
                }
            }
        };
        drop(scratch);
        drop(named);
        let label = match &report {
            JobReport::Succeeded { .. } => "succeeded",
            JobReport::Failed { error, .. } => {
                tracing::info!(job = %item.job, "job failed: {error}");
                "failed"
            }
        };
        match self.source.finish(&item.job, report).await {
            Ok(true) => label,
            Ok(false) => "stopped",
            Err(e) => {
                // The lease will expire and the job run again elsewhere.
                tracing::error!(job = %item.job, "cannot report the end of the job: {e}");
                "stopped"
            }
        }
    }

    /// Upload the main output, then the named ones; the main one's size.
    async fn put_outputs(
        &self,
        job: &str,
        main: accelhub_device::Output,
        named: BTreeMap<String, accelhub_device::Output>,
    ) -> crate::Result<u64> {
        let size = self.source.put_output(job, None, main).await?;
        for (name, output) in named {
            self.source.put_output(job, Some(&name), output).await?;
        }
        Ok(size)
    }

    /// Stream the input to the device and its outputs to scratch files.
    async fn call(
        &self,
        item: &WorkItem,
        control: Arc<CallControl>,
        input_open: &AtomicBool,
        scratch: &std::path::Path,
        named: &[(String, ScratchFile)],
    ) -> std::result::Result<accelhub_device::CallOutput, (String, Option<String>)> {
        let stream = self.source.input(&item.job).await.map_err(|e| {
            (
                format!("cannot read input object '{}': {e}", item.input_key),
                None,
            )
        })?;
        let mut objects = BTreeMap::new();
        for o in &item.objects {
            let source = self.source.clone();
            let job = item.job.clone();
            let name = o.name.clone();
            let open: accelhub_device::ObjectOpen = Arc::new(move || {
                let source = source.clone();
                let job = job.clone();
                let name = name.clone();
                Box::pin(async move {
                    source
                        .object(&job, &name)
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })
            });
            objects.insert(
                o.name.clone(),
                ObjectArg {
                    key: o.key.clone(),
                    sha256: o.sha256.clone(),
                    size: o.size,
                    open,
                },
            );
        }
        input_open.store(true, Ordering::Relaxed);
        let call = CallInput {
            input: CallData::Stream(stream),
            input_name: item.input_key.clone(),
            output: OutputSink::File(scratch.to_path_buf()),
            named_outputs: named
                .iter()
                .map(|(n, f)| (n.clone(), OutputSink::File(f.0.clone())))
                .collect(),
            params: item.params.clone(),
            objects,
            limits: item.limits,
            control,
        };
        let image = ImageId(item.image.clone());
        let source = self.source.clone();
        let job = item.job.clone();
        let (load, out) = self
            .executor
            .execute(
                &item.device,
                &image,
                Box::new(move || {
                    Box::pin(async move { source.artifact(&job).await.map_err(|e| e.to_string()) })
                }),
                call,
            )
            .await
            .map_err(|e| match e {
                ExecError::Call(c) => (
                    c.to_string(),
                    Some(accelhub_domain::version::tail(c.log(), 4096)).filter(|l| !l.is_empty()),
                ),
                other => (other.to_string(), None),
            })?;
        self.metrics.image_load(&item.device, &load);
        Ok(out)
    }
}

/// Renew the lease while the job runs, publishing progress; raise the
/// call's cancel flag once the job is no longer ours.
async fn keep_lease(
    source: Arc<dyn JobSource>,
    job: String,
    lease: Duration,
    input_size: u64,
    control: Arc<CallControl>,
    input_open: Arc<AtomicBool>,
    mut done: watch::Receiver<bool>,
) {
    let every = (lease / 3).min(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = done.changed() => return,
        }
        let consumed = control.consumed.load(Ordering::Relaxed) as f64;
        let progress = if input_open.load(Ordering::Relaxed) {
            (0.05 + 0.9 * consumed / input_size as f64).min(0.95)
        } else {
            0.0
        };
        let r = Renewal {
            progress,
            items: control
                .unit
                .get()
                .map(|_| control.items.load(Ordering::Relaxed)),
            unit: control.unit.get(),
        };
        match source.renew(&job, r).await {
            Ok(true) => {}
            Ok(false) => {
                control.cancel.store(true, Ordering::Relaxed);
                return;
            }
            // A passing network or database error: the next beat may
            // succeed before the lease runs out.
            Err(e) => tracing::warn!(job = %job, "cannot renew the lease: {e}"),
        }
    }
}

/// A job's scratch output file, removed however the job ends.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An executor's devices as an agent reports them (images by id; the
/// control plane names them).
pub fn node_report(executor: &dyn Executor) -> accelhub_domain::NodeReport {
    accelhub_domain::NodeReport {
        devices: executor
            .devices()
            .into_iter()
            .map(|(_, d)| accelhub_domain::FleetDevice {
                utilisation: d.busy as f64 / d.slots.max(1) as f64,
                class: d.class,
                slots: d.slots,
                busy: d.busy,
                loaded: d.images.into_iter().map(|i| i.0).collect(),
                resident: d.resident,
                hardware: d.hardware,
            })
            .collect(),
    }
}
