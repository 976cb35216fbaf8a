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
use accelhub_domain::UsageKind;

/// The result of a successful sync call.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub call_id: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub output: Bytes,
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
                Ok(CallResult {
                    call_id,
                    ip: version.ip.clone(),
                    version: version.version.clone(),
                    device: imp.device.clone(),
                    output: out.output.bytes(),
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
