//! Sync calls: one request, one call on a device, metered once.
//!
//! A user's deployment pins a verified version. A call goes to the first
//! verified implementation in the deployment's preference order whose class
//! this node has (`placement`), ensures its image is loaded (images are
//! content-addressed by artifact SHA-256, compiled once and cached; deploying
//! warms the image), runs it under the version's limits, and writes one usage
//! record (billed on success, unbilled on failure) before answering.
//!
//! The hot path avoids the database where it safely can: finished versions
//! are immutable and cached; token and deployment lookups are cached for 2 s
//! (this process's own changes invalidate at once, see `cache`); the usage
//! record goes to the store's write-ahead journal, from which a background
//! task moves records into the `usage` table in large transactions.

use crate::*;
use accelhub_device::{Output, OutputSink};
use accelhub_domain::UsageKind;

/// A sync call's output past this size goes to a scratch file as the IP
/// writes it, and is streamed from there: two floods of gigabytes cost
/// disk, not memory.
const SPILL_AFTER: usize = 1 << 20;

/// A successful sync call's output.
pub enum CallBody {
    Bytes(Bytes),
    /// A large output, streamed from its scratch file (already unlinked:
    /// the open handle is its last reference, so it goes when the stream
    /// does, sent or not).
    Stream {
        size: u64,
        stream: accelhub_objects::ByteStream,
    },
}

impl CallBody {
    pub fn len(&self) -> u64 {
        match self {
            CallBody::Bytes(b) => b.len() as u64,
            CallBody::Stream { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result of a successful sync call.
pub struct CallResult {
    pub call_id: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub output: CallBody,
    pub log: Bytes,
    pub price: Money,
    pub device_time: Duration,
    pub cold_start: bool,
}

impl Platform {
    // ---- Sync calls ------------------------------------------------------

    /// Call the caller's deployment of `ip` synchronously.
    pub async fn invoke(
        self: &Arc<Self>,
        account: &Account,
        ip: &str,
        params: Params,
        input: Bytes,
    ) -> Result<CallResult> {
        if input.len() as u64 > self.config.max_sync_bytes {
            return Err(CoreError::TooLarge(format!(
                "sync calls take at most {} bytes; upload larger data with `accelhub object put` \
                 and run it with `accelhub job submit`",
                self.config.max_sync_bytes
            )));
        }
        let (deployment, version) = self.deployment_of(account, ip).await?;
        self.check_allowance(account, &version, input.len() as u64)
            .await?;
        let imp = self.choose_for_call(&deployment, &version)?;
        let objects = self.resolve_objects(account.id, &version, &params).await?;
        let call_id = new_id("call");
        let bytes_in = input.len() as u64;
        let mut call = CallInput::in_memory(input, params, version.limits);
        call.objects = objects;
        call.output = OutputSink::Spill {
            dir: self.config.scratch_dir.join("sync"),
            memory_bytes: SPILL_AFTER,
        };
        let image = Self::image_id(&imp);
        let key = imp.artifact_key.clone();
        let started = std::time::Instant::now();
        let result = self
            .executor
            .execute(
                &imp.device,
                &image,
                Box::new(move || Box::pin(async move { self.unseal(&key).await })),
                call,
            )
            .await;
        let elapsed = started.elapsed();
        let (outcome, bytes_out, device_time) = match &result {
            Ok((_, out)) => ("ok".to_string(), out.output.len(), out.device_time),
            Err(ExecError::Call(c)) => (c.kind().to_string(), 0, elapsed),
            Err(_) => ("platform".to_string(), 0, elapsed),
        };
        self.metrics
            .call(&version.ip, &imp.device, &outcome, elapsed);
        self.store
            .record_usage(usage_record(
                &call_id,
                UsageKind::Call,
                account.id,
                &version,
                &imp.device,
                bytes_in,
                bytes_out,
                device_time,
                result.is_ok(),
                &outcome,
            ))
            .await?;
        match result {
            Ok((load, out)) => {
                self.metrics.image_load(&imp.device, &load);
                let output = match out.output {
                    Output::Bytes(b) => CallBody::Bytes(b),
                    Output::File { path, size } => {
                        let stream = accelhub_worker::file_stream(&path).await;
                        // Unlinked now: no crash or dropped connection
                        // can leave it behind.
                        let _ = tokio::fs::remove_file(&path).await;
                        let stream = stream.map_err(|e| {
                            CoreError::Internal(format!("cannot read the call's output: {e}"))
                        })?;
                        CallBody::Stream { size, stream }
                    }
                };
                Ok(CallResult {
                    call_id,
                    ip: version.ip.clone(),
                    version: version.version.clone(),
                    device: imp.device.clone(),
                    output,
                    log: out.log,
                    price: version.price,
                    device_time: out.device_time,
                    cold_start: !load.cached,
                })
            }
            Err(e) => Err(self.call_error(&call_id, e)),
        }
    }

    pub(crate) fn call_error(&self, call_id: &str, e: ExecError) -> CoreError {
        match e {
            ExecError::Call(accelhub_device::CallError::StorageFull { .. }) => {
                tracing::warn!("disk full writing the output of call {call_id}");
                CoreError::disk_full()
            }
            ExecError::Call(c) => CoreError::CallFailed {
                call_id: call_id.to_string(),
                kind: c.kind().to_string(),
                message: c.to_string(),
                exit_code: c.exit_code(),
                log: accelhub_domain::version::tail(c.log(), 4096),
            },
            ExecError::NoDevice(d) => {
                CoreError::Unavailable(format!("no device of class '{d}' is available"))
            }
            ExecError::Load(l) => CoreError::Internal(format!("cannot load the IP: {l}")),
            ExecError::Fetch(f) => CoreError::Internal(format!("cannot fetch the IP: {f}")),
        }
    }
}
