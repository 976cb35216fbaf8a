//! Device class `cpu`: first-party native kernels.
//!
//! A `cpu` implementation's artifact is a kernel descriptor, not code:
//!
//! ```toml
//! kernel = "genomics/align"
//! abi = 1
//! ```
//!
//! The kernels are compiled into the agent, so they run at native speed
//! outside the WebAssembly sandbox; that is why only the operator publishes
//! `cpu` implementations (the control plane enforces it). Loading an image
//! checks that this agent has the kernel at that ABI. Calls run on blocking
//! threads, one call per slot; a kernel uses [`NativeConfig::threads`]
//! threads. Inputs stream in and outputs stream out, so memory holds one
//! batch of work plus resident data: object inputs a kernel keeps between
//! calls (a genomics index), cached by the object's SHA-256 ([`cache`]).
//!
//! Limits: the deadline, cancellation and the output cap are enforced; the
//! memory limit is not (native code has no sandbox to count it).

pub mod builtin;
pub mod cache;
mod genomics;
mod stream;

use accelhub_device::{
    Backend, CallData, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError,
    LoadReport,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub use cache::ResidentCache;

/// The device class this crate serves.
pub const CLASS: &str = accelhub_domain::DEVICE_NATIVE;

/// The kernels this agent has, by name, with the ABI each speaks.
pub const KERNELS: &[(&str, u32)] = &[
    ("genomics/index", 1),
    ("genomics/align", 1),
    ("genomics/sort", 1),
    ("genomics/markdup", 1),
    ("genomics/call", 1),
    ("genomics/germline", 1),
];

#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Calls that run at once.
    pub slots: usize,
    /// Threads one call may use.
    pub threads: usize,
    /// Resident objects (e.g. indexes) kept between calls.
    pub resident: usize,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            slots: 1,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            resident: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    Index,
    Align,
    Sort,
    Markdup,
    Call,
    Germline,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Descriptor {
    kernel: String,
    abi: u32,
}

fn parse_descriptor(artifact: &[u8]) -> Result<Kernel, String> {
    let text = std::str::from_utf8(artifact).map_err(|_| {
        "a cpu artifact is a kernel descriptor (TOML text), not a binary".to_string()
    })?;
    let d: Descriptor = toml::from_str(text).map_err(|e| {
        format!(
            "the kernel descriptor is not valid: {}; it reads `kernel = \"genomics/align\"` and `abi = 1`",
            e.message()
        )
    })?;
    let known = || {
        KERNELS
            .iter()
            .map(|(k, a)| format!("{k} (abi {a})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match KERNELS.iter().find(|(k, _)| *k == d.kernel) {
        None => Err(format!(
            "this agent has no kernel '{}'; it has {}",
            d.kernel,
            known()
        )),
        Some((_, abi)) if *abi != d.abi => Err(format!(
            "kernel '{}' speaks abi {abi} on this agent, the artifact asks for abi {}",
            d.kernel, d.abi
        )),
        Some((name, _)) => Ok(match *name {
            "genomics/index" => Kernel::Index,
            "genomics/sort" => Kernel::Sort,
            "genomics/markdup" => Kernel::Markdup,
            "genomics/call" => Kernel::Call,
            "genomics/germline" => Kernel::Germline,
            _ => Kernel::Align,
        }),
    }
}

/// The `cpu` device.
pub struct NativeBackend {
    config: NativeConfig,
    slots: Arc<Semaphore>,
    images: RwLock<HashMap<ImageId, Kernel>>,
    resident: Arc<ResidentCache>,
}

impl NativeBackend {
    pub fn new(config: NativeConfig) -> Self {
        let config = NativeConfig {
            slots: config.slots.max(1),
            threads: config.threads.max(1),
            resident: config.resident.max(1),
        };
        NativeBackend {
            slots: Arc::new(Semaphore::new(config.slots)),
            images: RwLock::new(HashMap::new()),
            resident: Arc::new(ResidentCache::new(config.resident)),
            config,
        }
    }

    /// The resident-data cache (for metrics and tests).
    pub fn resident(&self) -> &Arc<ResidentCache> {
        &self.resident
    }
}

/// Everything a kernel gets, on its blocking thread.
pub(crate) struct KernelCall {
    pub input: stream::Guarded,
    pub input_name: String,
    pub output: accelhub_device::output::OutputWriter,
    /// The directory the kernel writes named outputs into (`DIR/NAME`),
    /// when the call offers any.
    pub named: Option<accelhub_device::output::NamedFiles>,
    pub params: accelhub_domain::Params,
    pub objects: std::collections::BTreeMap<String, accelhub_device::ObjectArg>,
    pub control: Arc<accelhub_device::CallControl>,
    pub deadline: Instant,
    pub threads: usize,
    pub resident: Arc<ResidentCache>,
    pub runtime: tokio::runtime::Handle,
    /// What the kernel reports (the call's log).
    pub log: Vec<u8>,
}

/// Why a kernel stopped.
#[derive(Debug)]
pub(crate) enum KernelError {
    /// The input or a parameter is wrong: the message says how.
    Input(String),
    /// Something on this node failed.
    Device(String),
    /// This node's disk filled up.
    Full(String),
}

#[async_trait]
impl Backend for NativeBackend {
    fn class(&self) -> &str {
        CLASS
    }

    fn slots(&self) -> usize {
        self.config.slots
    }

    fn is_loaded(&self, image: &ImageId) -> bool {
        self.images
            .read()
            .map(|m| m.contains_key(image))
            .unwrap_or(false)
    }

    fn status(&self) -> DeviceStatus {
        let mut images: Vec<ImageId> = self
            .images
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        images.sort();
        DeviceStatus {
            class: CLASS.into(),
            slots: self.config.slots,
            busy: self
                .config
                .slots
                .saturating_sub(self.slots.available_permits()),
            images,
            resident: self.resident.resident(),
            hardware: Vec::new(),
        }
    }

    async fn load(&self, image: &ImageId, artifact: Bytes) -> Result<LoadReport, LoadError> {
        let started = Instant::now();
        if self.is_loaded(image) {
            return Ok(LoadReport {
                cached: true,
                duration: Duration::ZERO,
            });
        }
        let kernel = parse_descriptor(&artifact).map_err(|message| LoadError::Invalid {
            class: CLASS.into(),
            message,
        })?;
        if let Ok(mut m) = self.images.write() {
            m.insert(image.clone(), kernel);
        }
        Ok(LoadReport {
            cached: false,
            duration: started.elapsed(),
        })
    }

    async fn call(&self, image: &ImageId, call: CallInput) -> Result<CallOutput, CallError> {
        let kernel = self
            .images
            .read()
            .ok()
            .and_then(|m| m.get(image).copied())
            .ok_or_else(|| CallError::NotLoaded(image.to_string()))?;
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CallError::Device("the cpu device is shutting down".into()))?;
        let started = Instant::now();
        let timeout = Duration::from_millis(call.limits.timeout_ms);
        let deadline = started + timeout;
        let control = call.control.clone();
        let runtime = tokio::runtime::Handle::current();
        let input = match call.input {
            CallData::Bytes(b) => stream::Guarded::memory(b, control.clone(), deadline),
            CallData::Stream(s) => stream::Guarded::stream(s, &runtime, control.clone(), deadline),
        };
        let limit = call.limits.output_bytes;
        let output = accelhub_device::output::OutputWriter::new(&call.output, limit)
            .map_err(|e| CallError::Device(format!("cannot create the call's output: {e}")))?;
        let named = match call.named_outputs.is_empty() {
            true => None,
            false => Some(
                accelhub_device::output::NamedFiles::new(call.named_outputs, limit).map_err(
                    |e| CallError::Device(format!("cannot make the named outputs' directory: {e}")),
                )?,
            ),
        };
        let mut kc = KernelCall {
            input,
            input_name: call.input_name,
            output,
            named,
            params: call.params,
            objects: call.objects,
            control: control.clone(),
            deadline,
            threads: self.config.threads,
            resident: self.resident.clone(),
            runtime,
            log: Vec::new(),
        };
        let joined = tokio::task::spawn_blocking(move || {
            let r = match kernel {
                Kernel::Index => genomics::index(&mut kc),
                Kernel::Align => genomics::align(&mut kc),
                Kernel::Sort => genomics::sort(&mut kc),
                Kernel::Markdup => genomics::markdup(&mut kc),
                Kernel::Call => genomics::call(&mut kc),
                Kernel::Germline => genomics::germline(&mut kc),
            };
            (r, kc)
        })
        .await;
        let (result, kc) = match joined {
            Ok(x) => x,
            Err(e) => return Err(CallError::Device(format!("the kernel panicked: {e}"))),
        };
        let log = Bytes::from(kc.log);
        let cancelled = control.cancel.load(std::sync::atomic::Ordering::Relaxed);
        // Whatever the kernel said, these causes come first.
        if kc.output.disk_full() {
            return Err(CallError::StorageFull { log });
        }
        if kc.output.exceeded() {
            return Err(CallError::OutputTooLarge {
                limit_bytes: limit,
                log,
            });
        }
        if cancelled {
            return Err(CallError::Cancelled { log });
        }
        if result.is_err() && Instant::now() >= deadline {
            return Err(CallError::Deadline {
                timeout_ms: call.limits.timeout_ms,
                log,
            });
        }
        match result {
            Ok(()) => {}
            Err(KernelError::Input(m)) => return Err(CallError::Input(m)),
            Err(KernelError::Device(m)) => return Err(CallError::Device(m)),
            Err(KernelError::Full(m)) => {
                let mut log = log.to_vec();
                log.extend_from_slice(m.as_bytes());
                return Err(CallError::StorageFull {
                    log: Bytes::from(log),
                });
            }
        }
        let output = kc
            .output
            .finish()
            .map_err(|e| CallError::output(e, log.clone()))?;
        let named = match kc.named {
            Some(n) => n
                .take()
                .map_err(|e| e.into_call_error(limit, log.clone()))?,
            None => Default::default(),
        };
        Ok(CallOutput {
            output,
            named,
            log,
            device_time: started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_name_a_known_kernel_at_its_abi() {
        assert_eq!(
            parse_descriptor(b"kernel = \"genomics/align\"\nabi = 1\n").unwrap(),
            Kernel::Align
        );
        assert_eq!(
            parse_descriptor(b"kernel = \"genomics/index\"\nabi = 1\n").unwrap(),
            Kernel::Index
        );
        let e = parse_descriptor(b"kernel = \"crypto/sha\"\nabi = 1\n").unwrap_err();
        assert!(e.contains("no kernel 'crypto/sha'") && e.contains("genomics/align"));
        let e = parse_descriptor(b"kernel = \"genomics/align\"\nabi = 2\n").unwrap_err();
        assert!(e.contains("abi 1") && e.contains("abi 2"), "{e}");
        let e = parse_descriptor(b"\x00asm\x01\x00\x00\x00").unwrap_err();
        assert!(e.contains("not valid") || e.contains("TOML"), "{e}");
        let e = parse_descriptor(&[0xff, 0xfe]).unwrap_err();
        assert!(e.contains("not a binary"), "{e}");
    }
}
