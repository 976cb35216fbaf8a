//! The kernel host: what every device class that runs compiled kernels
//! described in `ip.toml` ([`accelhub_domain::kernel`]) does the same way,
//! whatever the runtime underneath (OpenCL, CUDA).
//!
//! # Why one host
//!
//! The OpenCL and CUDA backends used to carry their own copies of the slot
//! pool, the call flow and the error mapping, and the copies drifted: a
//! parameter that [`KernelSpec::plan`] refused was `Invalid` on one and
//! `Input` on the other. A backend now implements [`KernelRuntime`] (find
//! its devices, build a program in a slot, copy an object to the device,
//! run a planned call) and gets the [`Backend`](crate::Backend) from
//! [`KernelHost`]. This module knows no runtime: the device crate stays
//! free of OpenCL and CUDA. What a backend implements is here; the host
//! itself (the slot pool and the call flow) is in `host.rs`.
//!
//! # Slots
//!
//! Each device offers [`KernelHostConfig::slots_per_device`] slots; a slot
//! is an independently programmed region (an OpenCL context and queue, a
//! CUDA context and stream) running one call at a time. Slots keep up to
//! [`KernelHostConfig::programs_per_slot`] programs and
//! [`KernelHostConfig::resident_per_slot`] object inputs (keyed by their
//! SHA-256) between calls, least recently used going first ([`Lru`]). A
//! call or load takes the free slot that already holds its program and its
//! data, then the least recently used one. Programming a slot is measured
//! and logged (`accelhub: programmed slot N in X ms`): it is the
//! reconfiguration cost. What each slot holds is mirrored outside its
//! mutex, so choosing a slot and `status` never wait for a running call.
//!
//! # A call
//!
//! 1. The input is read whole (device memory takes it whole), up to
//!    `limits.memory_bytes`.
//! 2. [`KernelSpec::plan`] gives the buffers, scalars and work sizes before
//!    anything runs. What it refuses, and an object input the kernels take
//!    but the call lacks, is the caller's mistake: [`CallError::Invalid`]
//!    (the input or parameters do not fit the IP's declared signature), on
//!    every kernel backend. The API reports it, like every failed call, as
//!    `422 ip-call-failed` with `failure: "invalid"`.
//! 3. The device memory the call needs (input, output, scratch buffers,
//!    objects) is checked against `limits.memory_bytes`
//!    ([`CallError::Memory`]).
//! 4. A slot is taken, and the objects it does not hold yet are read and
//!    checked against their SHA-256 ([`crate::ObjectArg::read_verified`]).
//! 5. On a blocking thread: the runtime enters the slot, the program is
//!    built if the slot lacks it, objects are made resident, and the
//!    runtime runs the plan ([`KernelRuntime::launch`]). A failure goes
//!    through [`KernelRuntime::recover`] (CUDA rebuilds a context a fault
//!    left unusable).
//! 6. Past `limits.timeout_ms` the call returns [`CallError::Deadline`];
//!    its kernels keep the slot until they finish, since no runtime can stop
//!    a running kernel from the host.
//! 7. The output goes where the call's [`OutputSink`](crate::OutputSink)
//!    says.
//!
//! Writable buffers carry a guard region of [`GUARD`] bytes after their end,
//! filled with [`guard_pattern`] and checked after the kernels ran: a kernel
//! that writes past its output fails its call with [`CallError::Trap`] and
//! the slot keeps serving.

mod host;

pub use host::KernelHost;

#[cfg(doc)]
use crate::CallError;
use crate::{guard_byte, CallControl, ImageId};
use accelhub_domain::kernel::{CallPlan, KernelBundle, KernelSpec, KernelStep, PlannedLaunch};
use accelhub_domain::DeviceHardware;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes after the end of every writable buffer, filled with
/// [`guard_pattern`] and checked after the kernels run.
pub const GUARD: usize = 4096;

/// The [`GUARD`] bytes placed after a buffer. Static: an asynchronous copy
/// from it may complete after the call that queued it returns.
pub fn guard_pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| (0..GUARD).map(guard_byte).collect())
}

/// The offset of the first byte of a guard region (as read back from after
/// a buffer) that a kernel changed, if any.
pub fn guard_damage(guard: &[u8]) -> Option<usize> {
    guard
        .iter()
        .enumerate()
        .position(|(i, b)| *b != guard_byte(i))
}

/// The output of a call, read back with its guard region after its first
/// `len` bytes: the output alone, or a trap when a kernel wrote past it.
pub fn checked_output(mut output: Vec<u8>, len: usize) -> Result<Vec<u8>, RunError> {
    let Some(guard) = output.get(len..) else {
        return Err(RunError::device(format!(
            "the output came back short ({} of {len} bytes)",
            output.len()
        )));
    };
    if let Some(at) = guard_damage(guard) {
        return Err(RunError::Trap(format!(
            "a kernel wrote past the end of the output buffer ({len} bytes; first stray \
             byte at offset {}): the output is discarded and the device keeps serving",
            len + at
        )));
    }
    output.truncate(len);
    Ok(output)
}

/// How many slots, programs and resident objects a kernel backend keeps.
#[derive(Debug, Clone)]
pub struct KernelHostConfig {
    /// Slots per device: regions programmed independently (OpenCL contexts
    /// and queues, CUDA contexts), each running one call at a time.
    pub slots_per_device: usize,
    /// Programs each slot keeps loaded (least recently used goes first).
    pub programs_per_slot: usize,
    /// Resident data objects each slot keeps.
    pub resident_per_slot: usize,
    /// Use at most this many devices (0: all).
    pub max_devices: usize,
}

impl Default for KernelHostConfig {
    fn default() -> Self {
        KernelHostConfig {
            slots_per_device: 2,
            programs_per_slot: 8,
            resident_per_slot: 4,
            max_devices: 0,
        }
    }
}

/// A small least-recently-used store: a slot's programs (by image) or
/// resident data (by SHA-256). Uses are stamped with the host's ticks.
pub struct Lru<K, V> {
    entries: Vec<(K, V, u64)>,
}

impl<K, V> Default for Lru<K, V> {
    fn default() -> Self {
        Lru {
            entries: Vec::new(),
        }
    }
}

impl<K: PartialEq, V> Lru<K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v)
    }

    /// Mark `key` used at `tick`; whether it is held.
    pub fn touch(&mut self, key: &K, tick: u64) -> bool {
        match self.entries.iter_mut().find(|(k, _, _)| k == key) {
            Some(e) => {
                e.2 = tick;
                true
            }
            None => false,
        }
    }

    /// Hold `value` under `key`, used at `tick`. When `capacity` entries
    /// (at least one) are held already, the one used longest ago goes
    /// first, never one used at `tick` (by the call that adds this one).
    pub fn insert(&mut self, key: K, value: V, tick: u64, capacity: usize) {
        if self.entries.len() >= capacity.max(1) {
            if let Some(oldest) = (0..self.entries.len())
                .filter(|i| self.entries[*i].2 < tick)
                .min_by_key(|i| self.entries[*i].2)
            {
                self.entries.remove(oldest);
            }
        }
        self.entries.push((key, value, tick));
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.entries.iter().position(|(k, _, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _, _)| k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One slot: the runtime's state for it (context, queue or stream), and
/// the programs and resident data it holds.
pub struct Slot<R: KernelRuntime> {
    /// The device it is on, an index into the host's hardware.
    pub device: usize,
    pub programs: Lru<ImageId, R::Program>,
    pub resident: Lru<String, R::Buffer>,
    pub state: R::SlotState,
}

impl<R: KernelRuntime> Slot<R> {
    pub fn new(device: usize, state: R::SlotState) -> Slot<R> {
        Slot {
            device,
            programs: Lru::default(),
            resident: Lru::default(),
            state,
        }
    }
}

impl<R: KernelRuntime> Drop for Slot<R> {
    fn drop(&mut self) {
        R::release(self);
    }
}

/// A decoded image: its bundle and, per device, the code its source
/// compiled to, so that programming another slot of that device (or a
/// rebuilt one) loads it without compiling again.
pub struct KernelImage {
    pub bundle: KernelBundle,
    compiled: Mutex<HashMap<usize, Arc<Vec<u8>>>>,
}

impl KernelImage {
    pub fn new(bundle: KernelBundle) -> KernelImage {
        KernelImage {
            bundle,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// What the source compiled to for device `device`, when it was.
    pub fn compiled(&self, device: usize) -> Option<Arc<Vec<u8>>> {
        lock(&self.compiled).get(&device).cloned()
    }

    pub fn keep_compiled(&self, device: usize, code: Arc<Vec<u8>>) {
        lock(&self.compiled).insert(device, code);
    }
}

/// What a runtime found: itself, its devices, and their slots.
pub struct Discovered<R: KernelRuntime> {
    pub runtime: R,
    pub hardware: Vec<DeviceHardware>,
    pub slots: Vec<Slot<R>>,
}

/// Why this node has no device of a kernel class.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// The runtime's libraries are missing or do not load; the message
    /// says what to install.
    #[error("{runtime} is not available on this node: {message}")]
    NoRuntime {
        runtime: &'static str,
        message: String,
    },
    /// The runtime loads but reports no device (the message, when not
    /// empty, starts with its own separator).
    #[error("{runtime} has no devices on this node{message}")]
    NoDevices {
        runtime: &'static str,
        message: String,
    },
    /// A call into the runtime failed while setting devices up.
    #[error("{runtime}: {message}")]
    Api {
        runtime: &'static str,
        message: String,
    },
}

/// Why a call failed on the device, as the runtime says.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// A runtime error ([`CallError::Device`]). `broken`: the slot is
    /// unusable until [`KernelRuntime::recover`] rebuilds it.
    #[error("{message}")]
    Device { message: String, broken: bool },
    /// A kernel wrote past a buffer ([`CallError::Trap`]).
    #[error("{0}")]
    Trap(String),
    /// The call does not fit this device, though its plan was valid: a
    /// launch over the runtime's limits ([`CallError::Input`]).
    #[error("{0}")]
    Input(String),
    #[error("the call was cancelled")]
    Cancelled,
}

impl RunError {
    /// A runtime error that leaves the slot usable.
    pub fn device(message: impl Into<String>) -> RunError {
        RunError::Device {
            message: message.into(),
            broken: false,
        }
    }
}

/// A slot as [`KernelRuntime::launch`] sees it: the program the call runs
/// (looked up by the host), and the rest of the slot.
pub struct InSlot<'a, R: KernelRuntime> {
    /// The device it is on, an index into the host's hardware.
    pub device: usize,
    pub state: &'a mut R::SlotState,
    pub program: &'a R::Program,
    pub resident: &'a mut Lru<String, R::Buffer>,
}

/// One planned call, as the runtime runs it in a slot.
pub struct Job<'a> {
    pub image: &'a ImageId,
    pub spec: &'a KernelSpec,
    pub plan: &'a CallPlan,
    pub input: &'a [u8],
    /// The object inputs the kernels take: parameter name and the SHA-256
    /// their resident buffer is kept under in the slot.
    pub objects: &'a [(String, String)],
    pub control: &'a CallControl,
}

impl Job<'_> {
    /// Call `launch` for each planned launch in order, with its kernel
    /// (from `kernels`, the program's, one per step) and declaration: a
    /// cancelled call stops between kernels, and a launch of no work items
    /// is skipped.
    pub fn each_launch<K>(
        &self,
        kernels: &[K],
        mut launch: impl FnMut(&K, &PlannedLaunch, &KernelStep) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        for (k, planned) in self.plan.launches.iter().enumerate() {
            if self.control.cancel.load(Ordering::Relaxed) {
                return Err(RunError::Cancelled);
            }
            if planned.global.contains(&0) {
                continue;
            }
            let (Some(kernel), Some(step)) = (kernels.get(k), self.spec.kernels.get(k)) else {
                return Err(RunError::device(format!(
                    "kernel '{}' is not loaded",
                    planned.kernel
                )));
            };
            launch(kernel, planned, step)?;
        }
        Ok(())
    }
}

/// An argument of a launch as messages name it: `kernel 'k' argument 2
/// ('u32 (input)')`.
pub fn arg_name(launch: &PlannedLaunch, step: &KernelStep, index: usize) -> String {
    match step.args.get(index) {
        Some(arg) => format!("kernel '{}' argument {index} ('{arg}')", launch.kernel),
        None => format!("kernel '{}' argument {index}", launch.kernel),
    }
}

/// What is really a runtime's own: everything else is the [`KernelHost`]'s.
///
/// Methods taking a slot run on a blocking thread with the slot's mutex
/// held, after [`KernelRuntime::enter`] succeeded.
pub trait KernelRuntime: Send + Sync + Sized + 'static {
    /// The device class served, e.g. `opencl`.
    const CLASS: &'static str;
    /// The runtime's name in messages, e.g. `OpenCL`.
    const NAME: &'static str;
    /// A slot's own handles (context, queue or stream).
    type SlotState: Send + 'static;
    /// A program loaded in a slot, with its kernels, one per step.
    type Program: Send + 'static;
    /// Device memory holding an object input.
    type Buffer: Send + 'static;

    /// Open the runtime and take its devices (at most
    /// `config.max_devices`), with `config.slots_per_device` slots each.
    fn discover(config: &KernelHostConfig) -> Result<Discovered<Self>, DiscoveryError>;

    /// Make `slot` usable on this thread; the error says why it is not.
    fn enter(&self, _slot: &mut Slot<Self>, _index: usize) -> Result<(), String> {
        Ok(())
    }

    /// Build or load `image`'s program for the slot's device. Kernel names
    /// and build options are checked already; the host keeps the program
    /// and evicts old ones.
    fn build(&self, slot: &mut Slot<Self>, image: &KernelImage) -> Result<Self::Program, String>;

    /// An object's bytes in new device memory of the slot.
    fn upload(&self, slot: &mut Slot<Self>, bytes: &[u8]) -> Result<Self::Buffer, String>;

    /// Run the planned kernels of the slot's program, over the job's
    /// objects (resident in the slot), and return the output (checked with
    /// [`checked_output`]).
    fn launch(&self, slot: InSlot<'_, Self>, job: &Job<'_>) -> Result<Vec<u8>, RunError>;

    /// After a failed call: make the slot usable again where the error
    /// left it broken; returns the error to report.
    fn recover(&self, _slot: &mut Slot<Self>, _index: usize, error: RunError) -> RunError {
        error
    }

    /// Before a slot's programs, buffers and state are dropped.
    fn release(_slot: &mut Slot<Self>) {}
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_entry_goes_first_but_never_one_in_use() {
        let mut lru: Lru<&str, u8> = Lru::default();
        lru.insert("a", 1, 1, 2);
        lru.insert("b", 2, 2, 2);
        assert!(lru.touch(&"a", 3));
        lru.insert("c", 3, 4, 2);
        assert_eq!(lru.keys().copied().collect::<Vec<_>>(), vec!["a", "c"]);
        // Both held entries were used by the current call (tick 4): none
        // goes, the store runs over its capacity for this call.
        assert!(lru.touch(&"a", 4));
        lru.insert("d", 4, 4, 2);
        assert_eq!(lru.len(), 3);
        assert_eq!(lru.remove(&"c"), Some(3));
        assert_eq!(lru.get(&"d"), Some(&4));
        assert!(!lru.touch(&"zz", 5));
        lru.clear();
        assert!(lru.is_empty());
    }

    #[test]
    fn a_damaged_guard_is_a_trap_and_an_intact_one_gives_the_output() {
        let mut out = vec![7u8; 10];
        out.extend_from_slice(guard_pattern());
        assert_eq!(checked_output(out.clone(), 10).unwrap(), vec![7u8; 10]);
        out[10 + 5] ^= 0xff;
        match checked_output(out, 10) {
            Err(RunError::Trap(m)) => assert!(
                m.contains("output buffer (10 bytes; first stray byte at offset 15)"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            checked_output(vec![1, 2], 10),
            Err(RunError::Device { broken: false, .. })
        ));
        let p = guard_pattern();
        assert_eq!(p.len(), GUARD);
        assert!(p.windows(2).any(|w| w[0] != w[1]));
        assert_eq!(guard_damage(p), None);
    }
}
