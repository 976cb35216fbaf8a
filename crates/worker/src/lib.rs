//! Job workers: what runs a job on a node's devices, the same code in the
//! embedded agent of `accelhub serve` and in `accelhub agent` on another
//! node.
//!
//! An *agent* is a process that runs jobs on a node's devices: a
//! [`WorkerPool`] (one worker per device slot) over a [`JobSource`], with
//! an [`Executor`] for the devices. The embedded agent's source calls the
//! control plane in the same process (`accelhub_core::worker::LocalJobs`);
//! a remote agent's source is [`HttpJobs`], the `/v1/agent` protocol. So a
//! worker never sees the store or the object store: this crate does not
//! depend on them, and the crate graph enforces it.
//!
//! A worker leases a job, renews the lease while the job runs (publishing
//! progress), streams the input to the device and the output to a scratch
//! file, uploads it and reports the end. A worker whose lease is gone
//! (cancelled, or expired and re-leased elsewhere) stops the call and
//! reports nothing: the job is not its to finish.

mod exec;
mod http;
mod pool;

pub use exec::{ArtifactFetch, ExecError, Executor, LocalExecutor};
pub use http::HttpJobs;
pub use pool::{file_stream, node_report, WorkerPool};

use accelhub_device::{LoadReport, Output};
use accelhub_domain::{ClaimRequest, JobReport, Renewal, WorkItem};
use accelhub_objects::ByteStream;
use async_trait::async_trait;
use bytes::Bytes;

/// Why a job source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The control plane refused the request (the job is not this node's,
    /// is gone, or the credentials are wrong): retrying will not help.
    #[error("the control plane refused: {0}")]
    Refused(String),
    /// The control plane could not be reached or failed; a later try may
    /// succeed before the lease runs out.
    #[error("the control plane is unavailable: {0}")]
    Unavailable(String),
    /// This node could not read or write its own data.
    #[error("{0}")]
    Local(String),
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// The control plane as a worker sees it. Every method but `claim` acts
/// on a job leased to this source's node.
#[async_trait]
pub trait JobSource: Send + Sync + 'static {
    /// The node the leases are held by.
    fn node(&self) -> &str;
    /// Lease a queued job of one of `req.devices`, waiting up to
    /// `req.wait_ms`; `req` says what the device holds.
    async fn claim(&self, req: &ClaimRequest) -> Result<Option<WorkItem>>;
    /// Renew the lease with progress. False: stop (cancelled, or the
    /// lease moved on).
    async fn renew(&self, job: &str, r: Renewal) -> Result<bool>;
    async fn input(&self, job: &str) -> Result<ByteStream>;
    async fn object(&self, job: &str, name: &str) -> Result<ByteStream>;
    async fn artifact(&self, job: &str) -> Result<Bytes>;
    /// Upload the main output (`name` None) or a named one; returns its
    /// size.
    async fn put_output(&self, job: &str, name: Option<&str>, output: Output) -> Result<u64>;
    /// Report the end of the attempt. False: it was no longer ours.
    async fn finish(&self, job: &str, report: JobReport) -> Result<bool>;
}

/// What workers report to a metrics registry (the control plane's
/// Prometheus registry in the embedded agent; nothing in a remote one).
pub trait WorkerMetrics: Send + Sync + 'static {
    /// Jobs running changed by `delta`.
    fn jobs_running(&self, delta: i64);
    /// A job attempt ended: `succeeded`, `failed` or `stopped`.
    fn job_finished(&self, outcome: &str);
    /// An image was made ready on a device of `device` class.
    fn image_load(&self, device: &str, load: &LoadReport);
}

/// Metrics that go nowhere.
pub struct NoMetrics;

impl WorkerMetrics for NoMetrics {
    fn jobs_running(&self, _: i64) {}
    fn job_finished(&self, _: &str) {}
    fn image_load(&self, _: &str, _: &LoadReport) {}
}
