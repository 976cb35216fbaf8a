//! The device backend seam.
//!
//! A backend drives one class of device (WebAssembly sandbox, native CPU
//! kernels, OpenCL, CUDA…). It loads an IP's artifact into an image, keeps
//! loaded images cached, and runs calls on them. Backends know nothing of
//! tenants, billing or storage: they get bytes and limits, and return bytes.
//!
//! Backends of kernels described in `ip.toml` (OpenCL, CUDA) share one
//! implementation of everything but the runtime calls: [`kernel_host`].
//! Their common behaviour is pinned by [`conformance`] (feature `testing`),
//! a suite each of them runs on its own devices.

pub mod kernel_host;
pub mod output;

#[cfg(any(feature = "testing", doc))]
pub mod conformance;

use accelhub_domain::{Limits, Params};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// Identifies a loadable image: one implementation of one IP version.
/// Stable across processes, so caches can be keyed on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(pub String);

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What loading an image cost.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Whether the image was already loaded (a warm hit).
    pub cached: bool,
    pub duration: Duration,
}

/// Shared between a running call and whoever watches it.
#[derive(Debug, Default)]
pub struct CallControl {
    /// Set to stop the call as soon as possible.
    pub cancel: AtomicBool,
    /// Input bytes the IP has consumed so far (for progress).
    pub consumed: AtomicU64,
    /// Work items done so far, in the IP's own unit (reads, records…), for
    /// IPs that count them.
    pub items: AtomicU64,
    /// The unit of `items` (e.g. `reads`), set by the IP; a kernel of
    /// several stages names each as it starts (`reads aligned`, then
    /// `records sorted`…), with `items` counting from 0 again.
    pub unit: Unit,
}

/// The unit of a call's progress count; see [`CallControl::unit`].
#[derive(Debug, Default)]
pub struct Unit(std::sync::Mutex<Option<String>>);

impl Unit {
    /// Name the unit (replacing the one before).
    pub fn set(&self, unit: &str) {
        let mut u = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if u.as_deref() != Some(unit) {
            *u = Some(unit.to_string());
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Opens an object input's bytes as a stream, when (and only if) the IP
/// needs them: a device that holds the object already never opens it.
pub type ObjectOpen = Arc<
    dyn Fn() -> futures::future::BoxFuture<
            'static,
            std::io::Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>>,
        > + Send
        + Sync,
>;

/// An object the call takes besides its main input (an index, a mate
/// file), already resolved and authorised by the control plane.
#[derive(Clone)]
pub struct ObjectArg {
    /// The caller's name for it, for messages.
    pub key: String,
    /// SHA-256 of its bytes (hex): devices cache resident data by it.
    pub sha256: String,
    pub size: u64,
    pub open: ObjectOpen,
}

impl std::fmt::Debug for ObjectArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectArg")
            .field("key", &self.key)
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish()
    }
}

/// Where a call's input comes from.
pub enum CallData {
    /// In memory: sync calls, test vectors.
    Bytes(Bytes),
    /// Streamed: a job's input object, of any size, read as the IP
    /// consumes it.
    Stream(futures::stream::BoxStream<'static, std::io::Result<Bytes>>),
}

impl std::fmt::Debug for CallData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            CallData::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl CallData {
    /// All of the input in memory (devices that need it whole, such as
    /// kernels copying it to device memory): a `Memory` error past `cap`
    /// bytes. What was read is counted in `control.consumed`.
    pub async fn read_all(self, cap: u64, control: &CallControl) -> Result<Bytes, CallError> {
        use futures::StreamExt;
        match self {
            CallData::Bytes(b) if b.len() as u64 > cap => Err(CallError::Memory {
                limit_bytes: cap,
                log: Bytes::new(),
            }),
            CallData::Bytes(b) => Ok(b),
            CallData::Stream(mut s) => {
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk.map_err(|e| CallError::Input(e.to_string()))?;
                    out.extend_from_slice(&chunk);
                    control
                        .consumed
                        .store(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if out.len() as u64 > cap {
                        return Err(CallError::Memory {
                            limit_bytes: cap,
                            log: Bytes::new(),
                        });
                    }
                }
                Ok(Bytes::from(out))
            }
        }
    }
}

impl ObjectArg {
    /// The object's bytes, at most `cap`, checked against its SHA-256:
    /// resident data is keyed by content, so bytes that do not match their
    /// key never stay on a device.
    pub async fn read_verified(&self, cap: u64) -> Result<Bytes, CallError> {
        use sha2::Digest;
        let stream = (self.open)()
            .await
            .map_err(|e| CallError::Input(format!("object '{}': {e}", self.key)))?;
        let bytes = CallData::Stream(stream)
            .read_all(cap, &CallControl::default())
            .await?;
        if hex::encode(sha2::Sha256::digest(&bytes)) != self.sha256 {
            return Err(CallError::Input(format!(
                "object '{}' changed while it was read (its content no longer matches its SHA-256)",
                self.key
            )));
        }
        Ok(bytes)
    }
}

/// The byte at offset `i` of the guard region devices place after the end
/// of a buffer and check after a kernel ran: a kernel that wrote past the
/// buffer changed it.
pub fn guard_byte(i: usize) -> u8 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8 ^ 0x5a
}

/// Where a call's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSink {
    /// Kept in memory (small outputs: verification's test vectors).
    Memory,
    /// Written to this file (jobs): memory stays bounded whatever the size.
    File(PathBuf),
    /// Kept in memory up to `memory_bytes`, then moved to a new file in
    /// `dir` (sync calls): [`Output::File`] then names it, and its reader
    /// removes it.
    Spill { dir: PathBuf, memory_bytes: usize },
}

/// One call: input, where its output goes, parameters, limits.
#[derive(Debug)]
pub struct CallInput {
    pub input: CallData,
    /// What the caller calls the input (an object key), for messages.
    pub input_name: String,
    pub output: OutputSink,
    /// Where each named output the IP may write beside the main one goes
    /// (its `[[output]]`s after the first), by name. Each is capped at the
    /// output limit, as the main one.
    pub named_outputs: std::collections::BTreeMap<String, OutputSink>,
    pub params: Params,
    /// Object inputs by parameter name (see `[[object]]` in `ip.toml`).
    pub objects: std::collections::BTreeMap<String, ObjectArg>,
    pub limits: Limits,
    pub control: Arc<CallControl>,
}

impl CallInput {
    /// A call on in-memory input with in-memory output.
    pub fn in_memory(input: Bytes, params: Params, limits: Limits) -> CallInput {
        CallInput {
            input: CallData::Bytes(input),
            input_name: "input".into(),
            output: OutputSink::Memory,
            named_outputs: Default::default(),
            params,
            objects: Default::default(),
            limits,
            control: Arc::new(CallControl::default()),
        }
    }
}

/// A call's output, where its [`OutputSink`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Bytes(Bytes),
    File { path: PathBuf, size: u64 },
}

impl Output {
    pub fn len(&self) -> u64 {
        match self {
            Output::Bytes(b) => b.len() as u64,
            Output::File { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of an in-memory output (empty for a file).
    pub fn bytes(&self) -> Bytes {
        match self {
            Output::Bytes(b) => b.clone(),
            Output::File { .. } => Bytes::new(),
        }
    }
}

/// What a successful call produced.
#[derive(Debug, Clone)]
pub struct CallOutput {
    pub output: Output,
    /// The named outputs the IP wrote (of those the call offered).
    pub named: std::collections::BTreeMap<String, Output>,
    /// What the IP wrote to its log (stderr).
    pub log: Bytes,
    /// Time spent on the device.
    pub device_time: Duration,
}

/// Why an image could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("the artifact is not a valid image for device class '{class}': {message}")]
    Invalid { class: String, message: String },
    #[error("device class '{0}' is not available on this node")]
    Unavailable(String),
}

/// Why a call failed. Every variant carries the IP's log (stderr) so far.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("the IP exited with code {code}")]
    Exit { code: i32, log: Bytes },
    #[error("the IP trapped: {message}")]
    Trap { message: String, log: Bytes },
    #[error("the call ran past its deadline of {timeout_ms} ms")]
    Deadline { timeout_ms: u64, log: Bytes },
    #[error("the IP exceeded its memory limit of {limit_bytes} bytes")]
    Memory { limit_bytes: u64, log: Bytes },
    #[error("the IP's output exceeded its limit of {limit_bytes} bytes")]
    OutputTooLarge { limit_bytes: u64, log: Bytes },
    #[error("the call was cancelled")]
    Cancelled { log: Bytes },
    /// The server's disk filled up while the call's output was written.
    #[error("the server's disk is full: the call's output could not be kept")]
    StorageFull { log: Bytes },
    #[error("image {0} is not loaded")]
    NotLoaded(String),
    #[error("cannot read the input: {0}")]
    Input(String),
    /// The input or parameters do not fit the IP's declared signature
    /// (checked before anything runs on the device).
    #[error("the input or parameters do not fit this IP: {0}")]
    Invalid(String),
    #[error("device error: {0}")]
    Device(String),
}

impl CallError {
    /// The output could not be finished: a full disk, or a device error.
    pub fn output(e: std::io::Error, log: Bytes) -> CallError {
        if output::is_disk_full(&e) {
            CallError::StorageFull { log }
        } else {
            CallError::Device(format!("cannot write the output: {e}"))
        }
    }

    /// A short machine-readable kind: `exit`, `trap`, `deadline`, `memory`,
    /// `output`, `cancelled`, `storage`, `not_loaded`, `input`, `invalid`,
    /// `device`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Exit { .. } => "exit",
            CallError::Trap { .. } => "trap",
            CallError::Deadline { .. } => "deadline",
            CallError::Memory { .. } => "memory",
            CallError::OutputTooLarge { .. } => "output",
            CallError::Cancelled { .. } => "cancelled",
            CallError::StorageFull { .. } => "storage",
            CallError::NotLoaded(_) => "not_loaded",
            CallError::Input(_) => "input",
            CallError::Invalid(_) => "invalid",
            CallError::Device(_) => "device",
        }
    }

    pub fn log(&self) -> &[u8] {
        match self {
            CallError::Exit { log, .. }
            | CallError::Trap { log, .. }
            | CallError::Deadline { log, .. }
            | CallError::Memory { log, .. }
            | CallError::OutputTooLarge { log, .. }
            | CallError::Cancelled { log }
            | CallError::StorageFull { log } => log,
            CallError::NotLoaded(_)
            | CallError::Input(_)
            | CallError::Invalid(_)
            | CallError::Device(_) => &[],
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CallError::Exit { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a device holds and does right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub class: String,
    pub slots: usize,
    /// Slots running a call now.
    pub busy: usize,
    /// Images loaded and ready.
    pub images: Vec<ImageId>,
    /// Resident data (SHA-256 of objects kept between calls).
    pub resident: Vec<String>,
    /// The physical devices behind this backend (accelerators).
    pub hardware: Vec<accelhub_domain::DeviceHardware>,
}

/// A device backend: one per device class on a node.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The device class this backend serves, e.g. `wasm`.
    fn class(&self) -> &str;

    /// How many calls may run at once (worker lanes, reconfigurable regions).
    fn slots(&self) -> usize;

    /// Whether an image is loaded and ready.
    fn is_loaded(&self, image: &ImageId) -> bool;

    /// Load (compile, program) an image from its artifact bytes. Loading an
    /// image that is already loaded is a cheap no-op.
    async fn load(&self, image: &ImageId, artifact: Bytes) -> Result<LoadReport, LoadError>;

    /// Run one call on a loaded image.
    async fn call(&self, image: &ImageId, call: CallInput) -> Result<CallOutput, CallError>;

    /// What it holds and does now (for the operator's fleet view).
    fn status(&self) -> DeviceStatus;
}

/// Keeps the process's signal handlers as they were across a call into
/// a device runtime (discovery, program builds). Runtimes that compile with LLVM (PoCL, most GPU and
/// FPGA stacks) install LLVM's handlers for SIGTERM, SIGINT and the crash
/// signals the first time they compile; those end the process on SIGTERM
/// instead of letting it shut down gracefully, and hide Rust's
/// stack-overflow report. Calls that may install handlers run one at a
/// time under this guard, which puts back every handler they replaced.
pub struct SignalGuard {
    saved: Vec<(libc::c_int, libc::sigaction)>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Default for SignalGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl SignalGuard {
    pub fn new() -> SignalGuard {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut saved = Vec::new();
        for sig in 1..32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: reading a signal's disposition into zeroed storage.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 {
                    saved.push((sig, old));
                }
            }
        }
        SignalGuard {
            saved,
            _one_at_a_time: one,
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: reinstalling a disposition read from this process.
            unsafe {
                let mut now: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*sig, std::ptr::null(), &mut now) == 0
                    && now.sa_sigaction != old.sa_sigaction
                {
                    libc::sigaction(*sig, old, std::ptr::null_mut());
                }
            }
        }
    }
}
