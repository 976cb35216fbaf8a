//! The `cuda` device class: NVIDIA GPUs driven through the CUDA driver API
//! (libcuda), with CUDA C compiled at run time by NVRTC (libnvrtc).
//!
//! # Loading and discovery
//!
//! Both libraries are opened at run time (cudarc's `dynamic-loading`), never
//! linked: the agent builds and starts on any node. cudarc panics when a
//! function of a library it cannot open is called, so
//! [`CudaBackend::discover`] first probes for libcuda and only then calls
//! `cuInit`; a node without the driver, without a device, or with a broken
//! driver gets a [`CudaError`] saying what to install or check, and
//! discovery never panics (it also catches any panic from the bindings as a
//! last resort). NVRTC is optional: a node with the driver but without
//! libnvrtc still runs PTX and cubin programs, and says so when asked to
//! build CUDA C source. Discovery runs one at a time in a process.
//!
//! Each device becomes a [`DeviceHardware`]: its name, total memory,
//! multiprocessor count (`compute_units`) and `runtime` "CUDA driver X.Y".
//!
//! # Slots
//!
//! As in the `opencl` class, each device offers
//! [`CudaConfig::slots_per_device`] slots, each running one call at a time.
//! **Each slot is a CUDA context of its own** (`cuCtxCreate`, with blocking
//! synchronisation so a waiting host thread sleeps rather than spins) with
//! one non-blocking stream. Contexts isolate slots: a kernel that faults
//! (an illegal address, a trap) corrupts its own context only, and that
//! slot alone is rebuilt. A primary context shared by the slots of a device
//! would make every slot of the device pay for one faulting kernel. Kernels
//! of different contexts time-slice the GPU rather than run concurrently;
//! slots still overlap one call's copies and host work with another's
//! kernels. Every use of a slot makes its context current on the (blocking
//! pool) thread doing the work, under the slot's mutex.
//!
//! A slot keeps up to [`CudaConfig::programs_per_slot`] programs (modules)
//! loaded and [`CudaConfig::resident_per_slot`] object inputs resident in
//! device memory, keyed by their SHA-256, least recently used going first.
//! A call goes to the free slot that already holds its program and data.
//! Programming a slot is measured and logged
//! (`accelhub: programmed slot N in X ms`), as is an object made resident.
//!
//! # Programs
//!
//! - [`ProgramFormat::Source`]: CUDA C, compiled by NVRTC to PTX when a
//!   slot is first programmed, then loaded by the driver (which JIT-compiles
//!   the PTX for the GPU). Kernels must be declared `extern "C" __global__`
//!   so their names are not mangled. `build_options` are split on
//!   whitespace and passed to NVRTC; unless they name an architecture
//!   (`-arch`, `--gpu-architecture`), the device's own (`compute_XY`, or the
//!   newest NVRTC knows below it) is added. A compile failure is a load
//!   error carrying NVRTC's build log. Options naming a real architecture
//!   (`-arch=sm_90`) make NVRTC produce a cubin, loaded instead of PTX. The
//!   compiled code is kept per device, so other slots (and a rebuilt slot)
//!   load it without compiling again.
//! - [`ProgramFormat::Binary`]: PTX text, a cubin (ELF) or a fatbin, loaded
//!   as is with `cuModuleLoadData`; the driver's JIT error log is reported
//!   when it refuses one. A cubin must be built for the device's
//!   architecture; PTX runs on any GPU at least as new as its `.target`.
//!
//! When the driver has `cuFuncGetParamInfo` (CUDA 12.4 and later), loading
//! checks each kernel's parameter count and sizes against `ip.toml`, and
//! every kernel's `local` work-group size against the threads per block it
//! can run.
//!
//! # Calls
//!
//! The call is planned by [`KernelSpec::plan`](accelhub_domain::kernel::KernelSpec::plan)
//! before anything runs, so a bad parameter or input size is a
//! [`CallError::Input`]. The device memory it needs (input, output,
//! scratch buffers, objects) is checked against `limits.memory_bytes`
//! ([`CallError::Memory`]).
//!
//! Launch mapping, per kernel of the sequence:
//!
//! - `global` is the total number of threads per dimension (already a
//!   multiple of `local` when that is given). The block is `local`, or when
//!   it is absent 256 (1-D), 16×16 (2-D) or 8×8×4 (3-D), halved until the
//!   kernel can run it and never wider than `global`; the grid is
//!   `ceil(global / block)`. With no `local` the grid may run extra threads,
//!   so kernels check their bounds (they get the size as a scalar). A grid
//!   over CUDA's limits (2³¹−1 blocks in x, 65535 in y and z) is an input
//!   error. A kernel whose global size is zero is not launched.
//! - `input`, `output`, `buffer NAME` and `object NAME` are device pointers
//!   (`CUdeviceptr`, 8 bytes); scalars are passed as their little-endian
//!   bytes; `local BYTES` arguments are **not** kernel parameters: their sum
//!   is the launch's dynamic shared memory (`extern __shared__`), which the
//!   kernel divides itself. Over 48 KiB, the kernel is allowed more first.
//! - Every buffer (input, output, scratch, object) is allocated with a 4 KiB
//!   guard region after its end (so a zero-size buffer is never a zero-size
//!   allocation), filled with a known pattern and checked after the kernels
//!   ran: a kernel that wrote past a buffer fails its call with
//!   [`CallError::Trap`] and the slot keeps serving (an object whose guard
//!   was hit is dropped from the slot). Writable buffers start zeroed.
//! - The stream is synchronised before anything is read back, and before
//!   any buffer of the call is freed, whatever the outcome.
//! - A failed launch or a CUDA error while the kernels run fails the call
//!   with [`CallError::Device`]. When the error is sticky (an illegal
//!   address, a kernel trap or assert, a launch failure: the context is
//!   unusable), the slot's context is destroyed and created again; the
//!   slot's programs and resident data are gone with it, and the next call
//!   programs it again. The error message says so.
//! - A call past its deadline returns [`CallError::Deadline`]; its kernels
//!   keep the slot until they finish (see below).
//!
//! # Not done
//!
//! - Running kernels are not stopped: CUDA has no way to preempt a kernel
//!   from the host short of destroying its context, which waits for it. A
//!   kernel that never returns keeps its slot busy for good (a display
//!   watchdog, where there is one, is the only limit). Cancellation is
//!   checked between kernels of a sequence only.
//! - `input` and `object` buffers are read-only by convention: CUDA does not
//!   enforce it, and a kernel that writes inside an object's bytes (not past
//!   them) changes that resident copy for later calls on the slot.
//! - Kernels of one slot run one after another on one stream; there is no
//!   multi-stream overlap inside a call, no CUDA graphs, no pinned host
//!   memory (copies go through pageable memory), no unified memory, no
//!   multi-GPU calls, no MPS or MIG awareness beyond what the driver shows.
//! - C++ kernels with mangled names are not looked up (no NVRTC name
//!   expressions): declare them `extern "C"`.
//! - Without `cuFuncGetParamInfo` (drivers before 12.4) a kernel whose
//!   signature does not match `ip.toml` is not caught at load and may
//!   fault (a sticky error: the slot is rebuilt).
//! - Device time is wall time around the launches and copies, not CUDA
//!   events.

use accelhub_device::{
    Backend, CallControl, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError,
    LoadReport, Output, OutputSink,
};
use accelhub_domain::kernel::{Arg, CallPlan, KernelBundle, PlannedArg, ProgramFormat};
use accelhub_domain::DeviceHardware;
use async_trait::async_trait;
use bytes::Bytes;
use cudarc::driver::result::DriverError;
use cudarc::driver::{result as cu, sys};
use cudarc::nvrtc;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_void, CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const CLASS: &str = accelhub_domain::kernel::DEVICE_CUDA;

/// Bytes after the end of every buffer, filled with a known pattern and
/// checked after the kernels run.
const GUARD: usize = 4096;

/// Dynamic shared memory a kernel gets without opting in.
const DEFAULT_SHARED: u64 = 48 * 1024;

#[derive(Debug, Clone)]
pub struct CudaConfig {
    /// Slots per device: CUDA contexts of their own, each running one call
    /// at a time.
    pub slots_per_device: usize,
    /// Programs (modules) each slot keeps loaded (least recently used goes
    /// first).
    pub programs_per_slot: usize,
    /// Resident data objects each slot keeps.
    pub resident_per_slot: usize,
    /// Use at most this many devices (0: all).
    pub max_devices: usize,
}

impl Default for CudaConfig {
    fn default() -> Self {
        CudaConfig {
            slots_per_device: 2,
            programs_per_slot: 8,
            resident_per_slot: 4,
            max_devices: 0,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CudaError {
    #[error("CUDA is not available on this node: {0}")]
    NoDriver(String),
    #[error("CUDA has no devices on this node{0}")]
    NoDevices(String),
    #[error("CUDA: {0}")]
    Api(String),
}

/// The CUDA devices of this node.
pub struct CudaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: CudaConfig,
    hardware: Vec<DeviceHardware>,
    devices: Vec<DeviceInfo>,
    /// NVRTC, when this node has it.
    nvrtc: Option<NvrtcInfo>,
    /// Whether the driver has `cuFuncGetParamInfo` (12.4+).
    param_info: bool,
    slots: Vec<Mutex<Slot>>,
    /// What each slot holds, readable while the slot runs a call.
    held: Mutex<Vec<Held>>,
    busy: Mutex<Vec<bool>>,
    permits: Arc<tokio::sync::Semaphore>,
    images: Mutex<HashMap<ImageId, Arc<ImageEntry>>>,
    /// Use counter for least-recently-used choices.
    tick: std::sync::atomic::AtomicU64,
}

/// What programming and launching need to know of a device.
#[derive(Debug, Clone)]
struct DeviceInfo {
    ordinal: sys::CUdevice,
    name: String,
    /// Compute capability (major, minor).
    capability: (i32, i32),
    /// Dynamic shared memory a block may opt in to.
    max_shared: u64,
}

#[derive(Debug, Clone)]
struct NvrtcInfo {
    version: (i32, i32),
    /// The virtual architectures it compiles for (`90` for `compute_90`),
    /// when it says (11.2+).
    archs: Option<Vec<i32>>,
}

#[derive(Default, Clone)]
struct Held {
    images: Vec<ImageId>,
    resident: Vec<String>,
    last_used: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

use accelhub_device::guard_byte as canary;

/// The guard pattern, uploaded after every buffer. Static: copies from it
/// may complete after the call that queued them returns.
fn guard_pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| (0..GUARD).map(canary).collect())
}

/// A CUDA error as `NAME: description`.
fn cu_err(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) if !s.to_bytes().is_empty() => format!("{name}: {}", s.to_string_lossy()),
        _ => name,
    }
}

/// Errors after which the context is unusable (every later call in it
/// fails the same way).
fn is_sticky(e: &DriverError) -> bool {
    use sys::CUresult::*;
    matches!(
        e.0,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_LAUNCH_FAILED
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_LAUNCH_TIMEOUT
            | CUDA_ERROR_ECC_UNCORRECTABLE
    )
}

/// A slot's context and stream; destroyed on drop.
struct SlotContext {
    ctx: sys::CUcontext,
    stream: sys::CUstream,
}

impl SlotContext {
    fn create(device: sys::CUdevice) -> Result<SlotContext, String> {
        let mut ctx: sys::CUcontext = std::ptr::null_mut();
        let flags = sys::CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC as std::ffi::c_uint;
        // SAFETY: `device` came from cuDeviceGet; `ctx` is a valid out
        // pointer. The new context is pushed on this thread's stack.
        unsafe { sys::cuCtxCreate_v2(&mut ctx, flags, device) }
            .result()
            .map_err(|e| format!("creating a context: {}", cu_err(e)))?;
        let stream = cu::stream::create(cu::stream::StreamKind::NonBlocking);
        // Leave this thread's context stack as it was; every use of the
        // slot makes its context current again.
        let mut popped: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the context pushed above is on top of this thread's stack.
        let _ = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) };
        match stream {
            Ok(stream) => Ok(SlotContext { ctx, stream }),
            Err(e) => {
                // SAFETY: created above, used by nothing else.
                let _ = unsafe { sys::cuCtxDestroy_v2(ctx) };
                Err(format!("creating a stream: {}", cu_err(e)))
            }
        }
    }

    /// Make the context current on this thread.
    fn enter(&self) -> Result<(), String> {
        // SAFETY: the context is alive until `self` drops.
        unsafe { cu::ctx::set_current(self.ctx) }
            .map_err(|e| format!("entering the slot's context: {}", cu_err(e)))
    }

    fn synchronize(&self) -> Result<(), DriverError> {
        // SAFETY: the stream belongs to this live context.
        unsafe { cu::stream::synchronize(self.stream) }
    }

    /// Whether the context is still usable after an error: a sticky error
    /// comes back from every later call, so also from a synchronisation.
    fn is_broken(&self, e: &DriverError) -> bool {
        if is_sticky(e) {
            return true;
        }
        self.enter().is_err() || cu::ctx::synchronize().is_err()
    }
}

impl Drop for SlotContext {
    fn drop(&mut self) {
        // SAFETY: both handles were created in `create` and are destroyed
        // only here; destroying the context frees whatever it still holds.
        unsafe {
            let _ = sys::cuCtxSetCurrent(self.ctx);
            let _ = sys::cuStreamDestroy_v2(self.stream);
            let _ = sys::cuCtxDestroy_v2(self.ctx);
        }
    }
}

/// Device memory: `len` bytes of data then the guard region. Freed on
/// drop, which must happen with its context current and nothing queued
/// that uses it (see [`CallMem`]).
struct DeviceBuf {
    ptr: sys::CUdeviceptr,
    len: usize,
}

impl DeviceBuf {
    /// `data` on the device, then the guard pattern.
    fn from_bytes(stream: sys::CUstream, data: &[u8]) -> Result<DeviceBuf, String> {
        DeviceBuf::new(stream, data.len(), Some(data))
    }

    /// `len` zero bytes on the device, then the guard pattern.
    fn zeroed(stream: sys::CUstream, len: usize) -> Result<DeviceBuf, String> {
        DeviceBuf::new(stream, len, None)
    }

    /// Allocate `len + GUARD` bytes and queue: `data` (`len` bytes) or
    /// zeros into the first `len`, the guard pattern after them.
    fn new(stream: sys::CUstream, len: usize, data: Option<&[u8]>) -> Result<DeviceBuf, String> {
        let total = len
            .checked_add(GUARD)
            .ok_or_else(|| format!("{len} bytes is too large"))?;
        // SAFETY: allocation in the current context.
        let ptr = unsafe { cu::malloc_sync(total) }.map_err(cu_err)?;
        let buf = DeviceBuf { ptr, len };
        // SAFETY: the copies stay within the `total` bytes just allocated
        // (`data` is `len` bytes). Copies from pageable host memory are
        // staged before they return, and the guard pattern is static, so
        // the sources may go away.
        let queued = unsafe {
            match data {
                Some(d) if !d.is_empty() => {
                    cu::memcpy_htod_async(ptr, &d[..len.min(d.len())], stream)
                }
                _ if len > 0 => cu::memset_d8_async(ptr, 0, len, stream),
                _ => Ok(()),
            }
            .and_then(|()| cu::memcpy_htod_async(ptr + len as u64, guard_pattern(), stream))
        };
        if let Err(e) = queued {
            // Nothing queued may outlive the memory it writes.
            // SAFETY: the slot's stream, in the current context.
            let _ = unsafe { cu::stream::synchronize(stream) };
            return Err(cu_err(e));
        }
        Ok(buf)
    }

    /// Queue a copy of the guard region into `out` (GUARD bytes).
    ///
    /// # Safety
    /// `out` must stay alive and untouched until the stream is synchronised.
    unsafe fn read_guard(&self, stream: sys::CUstream, out: &mut [u8]) -> Result<(), DriverError> {
        cu::memcpy_dtoh_async(&mut out[..GUARD], self.ptr + self.len as u64, stream)
    }
}

impl Drop for DeviceBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemAlloc in the context current now.
        let _ = unsafe { sys::cuMemFree_v2(self.ptr) };
    }
}

/// A call's buffers. Dropping it first waits for the stream, then frees
/// them: nothing queued ever outlives the memory it uses.
struct CallMem {
    stream: sys::CUstream,
    bufs: Vec<DeviceBuf>,
}

impl Drop for CallMem {
    fn drop(&mut self) {
        // SAFETY: the slot's stream, alive while the slot is locked.
        let _ = unsafe { cu::stream::synchronize(self.stream) };
        self.bufs.clear();
    }
}

/// A loaded module and its kernels, one per step. Unloaded on drop, with
/// its context current.
struct Loaded {
    module: sys::CUmodule,
    kernels: Vec<Function>,
}

#[derive(Clone, Copy)]
struct Function {
    handle: sys::CUfunction,
    /// The most threads per block this kernel can run on this device.
    max_threads: u32,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: loaded in the context current now, unloaded only here.
        let _ = unsafe { sys::cuModuleUnload(self.module) };
    }
}

/// One slot: a context of its own on one device.
struct Slot {
    device: usize,
    programs: Vec<(ImageId, Loaded, u64)>,
    resident: Vec<(String, DeviceBuf, u64)>,
    /// `None` after a failed rebuild: created again on next use.
    context: Option<SlotContext>,
}

// SAFETY: CUDA driver handles may be used from any thread once their
// context is current there; every use of a slot happens under its mutex
// and makes its context current first.
unsafe impl Send for Slot {}

impl Slot {
    /// Make the slot's context current on this thread, creating it when
    /// an earlier rebuild failed.
    fn enter(&mut self, device: &DeviceInfo) -> Result<(), String> {
        if self.context.is_none() {
            self.context = Some(SlotContext::create(device.ordinal)?);
        }
        match &self.context {
            Some(context) => context.enter(),
            None => Err("no context".into()),
        }
    }

    /// Destroy the context (after a sticky error) and create a new one.
    fn rebuild(&mut self, device: &DeviceInfo) -> Result<(), String> {
        if let Some(c) = &self.context {
            let _ = c.enter();
        }
        self.programs.clear();
        self.resident.clear();
        self.context = None;
        self.context = Some(SlotContext::create(device.ordinal)?);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Modules and memory go before their context, with it current.
        if let Some(c) = &self.context {
            let _ = c.enter();
        }
        self.programs.clear();
        self.resident.clear();
    }
}

/// A decoded image: its bundle and, per device, the PTX (or cubin) its
/// source compiled to (programming another slot of that device loads it).
struct ImageEntry {
    bundle: KernelBundle,
    compiled: Mutex<HashMap<usize, Arc<Vec<u8>>>>,
}

impl CudaBackend {
    /// Open libcuda and take every device it reports; an error says why
    /// this node has no CUDA device class. Never panics.
    pub fn discover(config: CudaConfig) -> Result<CudaBackend, CudaError> {
        // One at a time, keeping the process's signal handlers (driver
        // and compiler libraries may install their own).
        let _signals = accelhub_device::SignalGuard::new();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| discover(config))) {
            Ok(r) => r,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                Err(CudaError::NoDriver(format!(
                    "the CUDA libraries failed to load ({why}); reinstall the NVIDIA driver"
                )))
            }
        }
    }

    /// The devices found, as the fleet view shows them.
    pub fn hardware(&self) -> &[DeviceHardware] {
        &self.inner.hardware
    }

    /// NVRTC's version, when this node can compile CUDA C source.
    pub fn nvrtc_version(&self) -> Option<(i32, i32)> {
        self.inner.nvrtc.as_ref().map(|n| n.version)
    }
}

fn discover(config: CudaConfig) -> Result<CudaBackend, CudaError> {
    // SAFETY: only tries to open the library.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::NoDriver(
            "libcuda not found (install the NVIDIA driver; its libcuda.so.1 must be on the \
             library path, e.g. in a container run with the NVIDIA container toolkit)"
                .into(),
        ));
    }
    if let Err(e) = cu::init() {
        if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE {
            return Err(CudaError::NoDevices(format!(
                " ({}; is CUDA_VISIBLE_DEVICES set?)",
                cu_err(e)
            )));
        }
        return Err(CudaError::NoDriver(format!(
            "cuInit failed ({}): check that the NVIDIA kernel module is loaded and matches \
             the driver library, and that this process can open /dev/nvidia*",
            cu_err(e)
        )));
    }
    let mut version = 0;
    // SAFETY: a valid out pointer.
    let _ = unsafe { sys::cuDriverGetVersion(&mut version) };
    let runtime = format!("CUDA driver {}.{}", version / 1000, (version % 1000) / 10);
    let count = cu::device::get_count().map_err(|e| CudaError::Api(cu_err(e)))?;
    if count <= 0 {
        return Err(CudaError::NoDevices(String::new()));
    }
    let nvrtc = probe_nvrtc();
    match &nvrtc {
        Some(n) => tracing::info!(
            "CUDA: {runtime}, NVRTC {}.{}, {count} device(s)",
            n.version.0,
            n.version.1
        ),
        None => tracing::warn!(
            "CUDA: {runtime}, {count} device(s); NVRTC (libnvrtc) not found: CUDA C source \
             programs cannot be built here, PTX and cubin programs run"
        ),
    }
    let mut hardware = Vec::new();
    let mut devices = Vec::new();
    let mut slots = Vec::new();
    let per = config.slots_per_device.max(1);
    for ordinal in 0..count {
        if config.max_devices > 0 && devices.len() >= config.max_devices {
            break;
        }
        let api = |what: &str, e: DriverError| CudaError::Api(format!("{what}: {}", cu_err(e)));
        let dev = cu::device::get(ordinal).map_err(|e| api("cuDeviceGet", e))?;
        let attr = |a: sys::CUdevice_attribute| -> i32 {
            // SAFETY: `dev` came from cuDeviceGet.
            unsafe { cu::device::get_attribute(dev, a) }.unwrap_or(0)
        };
        use sys::CUdevice_attribute::*;
        let info = DeviceInfo {
            ordinal: dev,
            name: cu::device::get_name(dev)
                .unwrap_or_default()
                .trim()
                .to_string(),
            capability: (
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            ),
            max_shared: attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
                .max(attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK))
                .max(0) as u64,
        };
        // SAFETY: `dev` came from cuDeviceGet.
        let memory = unsafe { cu::device::total_mem(dev) }.unwrap_or(0) as u64;
        let index = devices.len();
        for _ in 0..per {
            let context = SlotContext::create(dev).map_err(CudaError::Api)?;
            slots.push(Mutex::new(Slot {
                device: index,
                programs: Vec::new(),
                resident: Vec::new(),
                context: Some(context),
            }));
        }
        hardware.push(DeviceHardware {
            name: info.name.clone(),
            vendor: "NVIDIA".into(),
            runtime: runtime.clone(),
            memory_bytes: memory,
            compute_units: attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).max(0) as u32,
            slots: per,
        });
        devices.push(info);
    }
    let n = slots.len();
    Ok(CudaBackend {
        inner: Arc::new(Inner {
            config,
            hardware,
            devices,
            nvrtc,
            param_info: driver_has(c"cuFuncGetParamInfo"),
            held: Mutex::new(vec![Held::default(); n]),
            busy: Mutex::new(vec![false; n]),
            permits: Arc::new(tokio::sync::Semaphore::new(n)),
            slots,
            images: Mutex::new(HashMap::new()),
            tick: Default::default(),
        }),
    })
}

/// Whether the (already opened) driver library exports `name`: newer entry
/// points are probed before use, since calling a missing one panics.
fn driver_has(name: &CStr) -> bool {
    // SAFETY: called once libcuda is known to load; looks a symbol up.
    unsafe { sys::culib().get::<unsafe extern "C" fn()>(name).is_ok() }
}

fn probe_nvrtc() -> Option<NvrtcInfo> {
    // SAFETY: only tries to open the library.
    if !unsafe { nvrtc::sys::is_culib_present() } {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: valid out pointers; the library is present.
    unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .ok()?;
    // SAFETY: the library is present; looking symbols up.
    let has_archs = unsafe {
        let lib = nvrtc::sys::culib();
        lib.get::<unsafe extern "C" fn()>(c"nvrtcGetNumSupportedArchs")
            .is_ok()
            && lib
                .get::<unsafe extern "C" fn()>(c"nvrtcGetSupportedArchs")
                .is_ok()
    };
    let archs = has_archs
        .then(|| {
            let mut n = 0;
            // SAFETY: a valid out pointer.
            unsafe { nvrtc::sys::nvrtcGetNumSupportedArchs(&mut n) }
                .result()
                .ok()?;
            let mut archs = vec![0i32; n.max(0) as usize];
            // SAFETY: `archs` has room for the `n` entries NVRTC writes.
            unsafe { nvrtc::sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
                .result()
                .ok()?;
            Some(archs)
        })
        .flatten();
    Some(NvrtcInfo {
        version: (major, minor),
        archs,
    })
}

/// NVRTC options: `build_options` split on whitespace, plus the device's
/// virtual architecture unless they name one (the newest NVRTC supports
/// at or below the device's, when it lists them).
fn nvrtc_options(
    build_options: &str,
    capability: (i32, i32),
    supported: Option<&[i32]>,
) -> Vec<String> {
    let mut options: Vec<String> = build_options.split_whitespace().map(String::from).collect();
    let names_arch = options
        .iter()
        .any(|o| o.starts_with("-arch") || o.starts_with("--gpu-architecture"));
    if !names_arch {
        let want = capability.0 * 10 + capability.1;
        let arch = match supported {
            Some(list) => list.iter().copied().filter(|a| *a <= want).max(),
            None => Some(want),
        };
        if let Some(arch) = arch.filter(|a| *a > 0) {
            options.push(format!("--gpu-architecture=compute_{arch}"));
        }
    }
    options
}

/// Compile CUDA C to PTX (NUL-terminated), or to a cubin when the options
/// name a real architecture; or NVRTC's build log.
fn compile(source: &str, options: &[String]) -> Result<Vec<u8>, String> {
    let src = CString::new(source).map_err(|_| "the kernel source contains a NUL character")?;
    let nv = |what: &str, e: nvrtc::result::NvrtcError| format!("{what} ({:?})", e.0);
    let prog = nvrtc::result::create_program(&src, Some(c"kernel.cu"))
        .map_err(|e| nv("NVRTC cannot create the program", e))?;
    /// Destroys the program on every path.
    struct Prog(nvrtc::sys::nvrtcProgram);
    impl Drop for Prog {
        fn drop(&mut self) {
            // SAFETY: created above, destroyed only here.
            let _ = unsafe { nvrtc::result::destroy_program(self.0) };
        }
    }
    let prog = Prog(prog);
    // NVRTC compiles with LLVM, which may install signal handlers.
    let signals = accelhub_device::SignalGuard::new();
    // SAFETY: a live program; the options hold no NUL (checked by caller).
    let compiled = unsafe { nvrtc::result::compile_program(prog.0, options) };
    drop(signals);
    if let Err(e) = compiled {
        // SAFETY: a live program.
        let log = unsafe { nvrtc::result::get_program_log(prog.0) }
            .map(|l| c_chars(&l))
            .unwrap_or_default();
        return Err(format!(
            "the kernel source does not build ({:?}); build log:\n{}",
            e.0,
            log.trim()
        ));
    }
    // SAFETY: a live, compiled program.
    let ptx = unsafe { nvrtc::result::get_ptx(prog.0) };
    match ptx {
        Ok(ptx) if ptx.iter().any(|c| *c != 0) => {
            let mut ptx: Vec<u8> = ptx.into_iter().map(|c| c as u8).collect();
            if ptx.last() != Some(&0) {
                ptx.push(0);
            }
            Ok(ptx)
        }
        // Options naming a real architecture (`-arch=sm_90`) make a cubin.
        ptx => match cubin(prog.0) {
            Some(cubin) => Ok(cubin),
            None => Err(match ptx {
                Err(e) => nv("NVRTC compiled the source but gave no PTX", e),
                Ok(_) => "NVRTC compiled the source but gave no PTX".into(),
            }),
        },
    }
}

/// The cubin NVRTC made for a real architecture, when it has one.
fn cubin(prog: nvrtc::sys::nvrtcProgram) -> Option<Vec<u8>> {
    // SAFETY: NVRTC is loaded (a program exists); looking symbols up.
    let has = unsafe {
        let lib = nvrtc::sys::culib();
        lib.get::<unsafe extern "C" fn()>(c"nvrtcGetCUBINSize")
            .is_ok()
            && lib.get::<unsafe extern "C" fn()>(c"nvrtcGetCUBIN").is_ok()
    };
    if !has {
        return None;
    }
    let mut size = 0usize;
    // SAFETY: a live, compiled program; a valid out pointer.
    unsafe { nvrtc::sys::nvrtcGetCUBINSize(prog, &mut size) }
        .result()
        .ok()?;
    if size == 0 {
        return None;
    }
    let mut cubin = vec![0 as std::ffi::c_char; size];
    // SAFETY: `cubin` has the `size` bytes NVRTC writes.
    unsafe { nvrtc::sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr()) }
        .result()
        .ok()?;
    Some(cubin.into_iter().map(|c| c as u8).collect())
}

/// Text from a NUL-terminated C buffer.
fn c_chars(buf: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What `cuModuleLoadData` takes for a binary program: a cubin (ELF) or
/// fatbin as is, PTX text NUL-terminated.
fn binary_image(program: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    const FATBIN: [u8; 4] = [0x50, 0xed, 0x55, 0xba];
    if program.is_empty() {
        return Err("the program is empty".into());
    }
    if program.starts_with(b"\x7fELF") || program.starts_with(&FATBIN) {
        return Ok(Cow::Borrowed(program));
    }
    let text = program.strip_suffix(&[0]).unwrap_or(program);
    if text.contains(&0) || !text.windows(8).any(|w| w == b".version") {
        return Err(
            "the program is neither PTX text (with a .version directive) nor a cubin or fatbin"
                .into(),
        );
    }
    let mut image = text.to_vec();
    image.push(0);
    Ok(Cow::Owned(image))
}

/// Load a module into the current context; on failure the error and the
/// JIT's error log.
fn load_module(image: &[u8]) -> Result<sys::CUmodule, (DriverError, String)> {
    let mut log = vec![0u8; 16 * 1024];
    let mut options = [
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    // The size option's value is an unsigned int passed in the pointer.
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), (log.len() - 1) as *mut c_void];
    let mut module: sys::CUmodule = std::ptr::null_mut();
    // SAFETY: `image` is a cubin/fatbin or NUL-terminated PTX
    // (`binary_image`, `compile`) alive for the call; the log buffer has
    // the room its size option says, and outlives the call.
    let r = unsafe {
        sys::cuModuleLoadDataEx(
            &mut module,
            image.as_ptr().cast(),
            options.len() as std::ffi::c_uint,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    match r.result() {
        Ok(()) => Ok(module),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
        }
    }
}

/// The parameter sizes of a kernel as the driver reports them, or `None`
/// when it cannot say.
fn param_sizes(f: sys::CUfunction) -> Option<Vec<usize>> {
    let mut sizes = Vec::new();
    for i in 0..1024 {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: a live function; valid out pointers. Only called when the
        // driver exports the entry point.
        match unsafe { sys::cuFuncGetParamInfo(f, i, &mut offset, &mut size) } {
            sys::CUresult::CUDA_SUCCESS => sizes.push(size),
            sys::CUresult::CUDA_ERROR_INVALID_VALUE => return Some(sizes),
            _ => return None,
        }
    }
    None
}

/// Check a kernel's parameters (sizes, as the driver reports them)
/// against its declared arguments: `local` arguments are shared memory,
/// not parameters; buffers are 8-byte device pointers.
fn check_params(kernel: &str, args: &[Arg], sizes: &[usize]) -> Result<(), String> {
    let declared: Vec<(&Arg, usize)> = args
        .iter()
        .filter_map(|a| match a {
            Arg::Local(_) => None,
            Arg::Input | Arg::Output | Arg::Buffer(_) | Arg::Object(_) => Some((a, 8)),
            Arg::Param { ty, .. } | Arg::Computed { ty, .. } => Some((a, ty.size())),
        })
        .collect();
    if declared.len() != sizes.len() {
        return Err(format!(
            "kernel '{kernel}' takes {} parameters but ip.toml declares {} ('local' arguments \
             are dynamic shared memory, not parameters): {}",
            sizes.len(),
            declared.len(),
            args.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (i, ((arg, want), got)) in declared.iter().zip(sizes).enumerate() {
        if want != got {
            return Err(format!(
                "kernel '{kernel}' parameter {i} is {got} bytes but ip.toml declares '{arg}' \
                 ({want} bytes)"
            ));
        }
    }
    Ok(())
}

/// A launch's grid and block, in blocks and threads per dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LaunchDims {
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
}

/// The grid and block of a launch of `global` threads (1 to 3 dimensions)
/// with work-group `local`, or the default block when absent (256, 16×16,
/// 8×8×4; halved until `max_threads` can run it; never wider than
/// `global`). The grid rounds up.
fn launch_dims(
    global: &[u64],
    local: Option<&[u64]>,
    max_threads: u32,
) -> Result<LaunchDims, String> {
    let n = global.len();
    if !(1..=3).contains(&n) {
        return Err(format!("{n} dimensions: CUDA launches have 1 to 3"));
    }
    let max_threads = u64::from(max_threads.max(1));
    let block: Vec<u64> = match local {
        Some(l) => {
            if l.len() != n || l.contains(&0) {
                return Err(format!(
                    "the work-group {l:?} does not fit the global size {global:?}"
                ));
            }
            let threads = l
                .iter()
                .try_fold(1u64, |a, b| a.checked_mul(*b))
                .unwrap_or(u64::MAX);
            if threads > max_threads {
                return Err(format!(
                    "a work-group of {threads} threads ({l:?}); this kernel runs at most \
                     {max_threads} per block on this device"
                ));
            }
            l.to_vec()
        }
        None => {
            let mut b: Vec<u64> = match n {
                1 => vec![256],
                2 => vec![16, 16],
                _ => vec![8, 8, 4],
            };
            while b.iter().product::<u64>() > max_threads {
                let widest = (0..n).max_by_key(|i| (b[*i], usize::MAX - i)).unwrap_or(0);
                b[widest] = (b[widest] / 2).max(1);
            }
            b.iter()
                .zip(global)
                .map(|(b, g)| (*b).min(*g).max(1))
                .collect()
        }
    };
    const GRID_MAX: [u64; 3] = [(1 << 31) - 1, 65535, 65535];
    let mut grid = [1u32; 3];
    let mut blk = [1u32; 3];
    for d in 0..n {
        let g = global[d].div_ceil(block[d]);
        if g > GRID_MAX[d] {
            return Err(format!(
                "a global size of {global:?} needs {g} blocks of {} threads in dimension {d}, \
                 over CUDA's limit of {}",
                block[d], GRID_MAX[d]
            ));
        }
        grid[d] = g as u32;
        blk[d] = u32::try_from(block[d]).map_err(|_| format!("a block of {} threads", block[d]))?;
    }
    Ok(LaunchDims {
        grid: (grid[0], grid[1], grid[2]),
        block: (blk[0], blk[1], blk[2]),
    })
}

/// A slot taken for one call or load; freed when dropped.
struct SlotGuard {
    inner: Arc<Inner>,
    index: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.inner.busy)[self.index] = false;
    }
}

impl Inner {
    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Take the free slot that best suits `image` and the resident data
    /// `objects`: one that holds both, then the image, then the least
    /// recently used.
    async fn acquire(self: &Arc<Self>, image: &ImageId, objects: &[String]) -> SlotGuard {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("the slot semaphore is never closed"),
        };
        let mut busy = lock(&self.busy);
        let held = lock(&self.held);
        let index = (0..busy.len())
            .filter(|i| !busy[*i])
            .max_by_key(|i| {
                let h = &held[*i];
                let has_image = h.images.contains(image);
                let has_data = objects.iter().filter(|o| h.resident.contains(o)).count();
                (has_image, has_data, u64::MAX - h.last_used)
            })
            .unwrap_or(0);
        busy[index] = true;
        drop(held);
        SlotGuard {
            inner: self.clone(),
            index,
            _permit: permit,
        }
    }

    fn record(&self, index: usize, slot: &Slot) {
        let mut held = lock(&self.held);
        held[index] = Held {
            images: slot.programs.iter().map(|(i, _, _)| i.clone()).collect(),
            resident: slot.resident.iter().map(|(s, _, _)| s.clone()).collect(),
            last_used: self.next_tick(),
        };
    }

    /// The PTX, cubin or binary image of `entry` for device `device`.
    fn image_for(&self, device: usize, entry: &ImageEntry) -> Result<Arc<Vec<u8>>, String> {
        let spec = &entry.bundle.spec;
        if spec.format == ProgramFormat::Binary {
            return Ok(Arc::new(binary_image(&entry.bundle.program)?.into_owned()));
        }
        if let Some(ptx) = lock(&entry.compiled).get(&device) {
            return Ok(ptx.clone());
        }
        let Some(nv) = &self.nvrtc else {
            return Err(
                "this node has the CUDA driver but not NVRTC (libnvrtc), so it cannot build \
                 CUDA C source: install NVRTC (the CUDA toolkit's cuda-nvrtc package), or \
                 publish the program as PTX or a cubin (format = \"binary\"), which the \
                 driver loads without NVRTC"
                    .into(),
            );
        };
        let source = std::str::from_utf8(&entry.bundle.program)
            .map_err(|_| "the kernel source is not UTF-8 text".to_string())?;
        let info = &self.devices[device];
        let options = nvrtc_options(&spec.build_options, info.capability, nv.archs.as_deref());
        let ptx = Arc::new(compile(source, &options)?);
        lock(&entry.compiled).insert(device, ptx.clone());
        Ok(ptx)
    }

    /// Make sure `slot` (its context current) holds `image`: compile or
    /// load its program. Returns the time it took, or `None` when the slot
    /// already held it.
    fn program(
        &self,
        slot: &mut Slot,
        image: &ImageId,
        entry: &ImageEntry,
    ) -> Result<Option<Duration>, String> {
        let tick = self.next_tick();
        if let Some(p) = slot.programs.iter_mut().find(|(i, _, _)| i == image) {
            p.2 = tick;
            return Ok(None);
        }
        let started = Instant::now();
        let spec = &entry.bundle.spec;
        if spec.build_options.contains('\0') {
            return Err("build_options contains a NUL character".into());
        }
        let info = &self.devices[slot.device];
        let code = self.image_for(slot.device, entry)?;
        let module = load_module(&code).map_err(|(e, log)| {
            let log = if log.is_empty() {
                String::new()
            } else {
                format!("; JIT log:\n{log}")
            };
            let arch = format!(
                "{} (sm_{}{})",
                info.name, info.capability.0, info.capability.1
            );
            match (spec.format, e.0) {
                (_, sys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION) => format!(
                    "the driver cannot load this PTX ({}): it was made by a newer CUDA than \
                     the driver's ({}); update the NVIDIA driver{}{log}",
                    cu_err(e),
                    self.hardware[slot.device].runtime,
                    match (&self.nvrtc, spec.format) {
                        (Some(n), ProgramFormat::Source) =>
                            format!(" (NVRTC here is {}.{})", n.version.0, n.version.1),
                        _ => String::new(),
                    }
                ),
                (ProgramFormat::Binary, _) => format!(
                    "the device does not take this binary ({}): a binary program must be PTX, \
                     or a cubin or fatbin built for this device, {arch}{log}",
                    cu_err(e)
                ),
                (ProgramFormat::Source, _) => format!(
                    "the compiled program does not load on {arch} ({}){log}",
                    cu_err(e)
                ),
            }
        })?;
        // From here the module is unloaded on every path.
        let mut loaded = Loaded {
            module,
            kernels: Vec::new(),
        };
        for step in &spec.kernels {
            if step.name.is_empty()
                || !step
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!("'{}' is not a kernel name", step.name));
            }
            let name = CString::new(step.name.as_str()).map_err(|e| e.to_string())?;
            // SAFETY: a live module of the current context.
            let handle = unsafe { cu::module::get_function(loaded.module, name) }.map_err(|e| {
                format!(
                    "the program has no kernel '{}' ({}); CUDA C kernels must be declared \
                     extern \"C\" __global__ so their names are not mangled",
                    step.name,
                    cu_err(e)
                )
            })?;
            // SAFETY: a live function.
            let max_threads = unsafe {
                cu::function::get_function_attribute(
                    handle,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
                )
            }
            .unwrap_or(1024)
            .max(1) as u32;
            if self.param_info {
                match param_sizes(handle) {
                    Some(sizes) => check_params(&step.name, &step.args, &sizes)?,
                    None => tracing::debug!(
                        "CUDA: cannot read the parameters of kernel '{}'",
                        step.name
                    ),
                }
            }
            if let Some(l) = &step.local {
                let threads = l
                    .iter()
                    .try_fold(1u64, |a, b| a.checked_mul(*b))
                    .unwrap_or(u64::MAX);
                if threads > u64::from(max_threads) {
                    return Err(format!(
                        "kernel '{}' runs at most {max_threads} threads per block on {} (given \
                         its register and shared memory use); ip.toml asks for local = {l:?} \
                         ({threads} threads)",
                        step.name, info.name
                    ));
                }
            }
            loaded.kernels.push(Function {
                handle,
                max_threads,
            });
        }
        if slot.programs.len() >= self.config.programs_per_slot.max(1) {
            if let Some(oldest) = (0..slot.programs.len()).min_by_key(|i| slot.programs[*i].2) {
                slot.programs.remove(oldest);
            }
        }
        slot.programs.push((image.clone(), loaded, tick));
        Ok(Some(started.elapsed()))
    }
}

/// What a call's kernels produced.
struct Ran {
    output: Vec<u8>,
    device_time: Duration,
    log: String,
}

/// Why a call failed on the device.
enum RunError {
    /// `sticky`: the slot's context is unusable and must be rebuilt.
    Device {
        message: String,
        sticky: bool,
    },
    Trap(String),
    Input(String),
    Cancelled,
}

/// One call, as the blocking thread runs it.
struct Job<'a> {
    image: &'a ImageId,
    entry: &'a ImageEntry,
    plan: &'a CallPlan,
    input: &'a [u8],
    /// Object inputs by name: content hash, and bytes unless the slot was
    /// seen holding them.
    objects: &'a [(String, String, Option<Bytes>)],
    control: &'a CallControl,
}

/// Run `job` on slot `index`, rebuilding the slot's context after a
/// sticky error.
fn run(inner: &Inner, index: usize, job: &Job<'_>) -> Result<Ran, RunError> {
    let mut slot = lock(&inner.slots[index]);
    let device = &inner.devices[slot.device];
    let r = match slot.enter(device) {
        Ok(()) => run_in(inner, index, &mut slot, job),
        Err(e) => Err(RunError::Device {
            message: format!("slot {index} has no usable CUDA context: {e}"),
            sticky: false,
        }),
    };
    let r = match r {
        Err(RunError::Device {
            message,
            sticky: true,
        }) => {
            let outcome = match slot.rebuild(device) {
                Ok(()) => format!(
                    "slot {index}'s CUDA context was reset (its programs and resident data \
                     are loaded again on next use) and it keeps serving"
                ),
                Err(e) => format!(
                    "slot {index}'s CUDA context could not be recreated ({e}); it is tried \
                     again on next use"
                ),
            };
            tracing::warn!("CUDA: {message}; {outcome}");
            Err(RunError::Device {
                message: format!("{message}; {outcome}"),
                sticky: true,
            })
        }
        r => r,
    };
    inner.record(index, &slot);
    r
}

/// The call itself, in the slot's (current) context.
fn run_in(inner: &Inner, index: usize, slot: &mut Slot, job: &Job<'_>) -> Result<Ran, RunError> {
    let mut log = String::new();
    let programmed = inner
        .program(slot, job.image, job.entry)
        .map_err(|e| RunError::Device {
            message: format!("programming the device failed: {e}"),
            sticky: false,
        })?;
    if let Some(d) = programmed {
        log.push_str(&format!(
            "accelhub: programmed slot {index} in {:.1} ms\n",
            d.as_secs_f64() * 1e3
        ));
    }
    inner.record(index, slot);
    let started = Instant::now();
    let plan = job.plan;
    let Some(context) = slot.context.as_ref() else {
        return Err(RunError::Device {
            message: "the slot lost its context".into(),
            sticky: false,
        });
    };
    let stream = context.stream;
    // A CUDA error: sticky when the context is now unusable.
    let dev = |what: &str, e: DriverError| RunError::Device {
        message: format!("{what}: {}", cu_err(e)),
        sticky: context.is_broken(&e),
    };
    let alloc = |what: &str, e: String| RunError::Device {
        message: format!("allocating {what}: {e}"),
        sticky: false,
    };

    // Resident data first: it outlives the call.
    let tick = inner.next_tick();
    let mut object_ptrs: HashMap<&str, (sys::CUdeviceptr, String)> = HashMap::new();
    for (name, sha, bytes) in job.objects {
        if let Some(r) = slot.resident.iter_mut().find(|(s, _, _)| s == sha) {
            r.2 = tick;
            object_ptrs.insert(name.as_str(), (r.1.ptr, sha.clone()));
            continue;
        }
        let Some(bytes) = bytes else {
            return Err(RunError::Device {
                message: format!("object '{name}' was expected resident and is not"),
                sticky: false,
            });
        };
        let buffer = DeviceBuf::from_bytes(stream, bytes)
            .map_err(|e| alloc(&format!("object '{name}'"), e))?;
        if slot.resident.len() >= inner.config.resident_per_slot.max(1) {
            // The least recently used object this call does not use.
            if let Some(oldest) = (0..slot.resident.len())
                .filter(|i| slot.resident[*i].2 < tick)
                .min_by_key(|i| slot.resident[*i].2)
            {
                slot.resident.remove(oldest);
            }
        }
        object_ptrs.insert(name.as_str(), (buffer.ptr, sha.clone()));
        slot.resident.push((sha.clone(), buffer, tick));
        log.push_str(&format!(
            "accelhub: object '{name}' ({} bytes) now resident in slot {index}\n",
            bytes.len()
        ));
    }
    inner.record(index, slot);

    // Host memory the results are copied into: declared before the device
    // buffers so that, on every path, `CallMem` waits for the stream
    // before these go away.
    let out_len = usize::try_from(plan.output_bytes)
        .map_err(|_| RunError::Input("the output is too large".into()))?;
    let mut output = vec![0u8; out_len + GUARD];
    // Guards: input, (output: read with it), scratch buffers, objects.
    let mut guards = vec![vec![0u8; GUARD]; 2 + plan.buffers.len() + object_ptrs.len()];

    // The call's buffers: input, output, then the scratch buffers.
    let mut mem = CallMem {
        stream,
        bufs: Vec::new(),
    };
    mem.bufs
        .push(DeviceBuf::from_bytes(stream, job.input).map_err(|e| alloc("the input", e))?);
    mem.bufs
        .push(DeviceBuf::zeroed(stream, out_len).map_err(|e| alloc("the output", e))?);
    for (name, size) in &plan.buffers {
        let size = usize::try_from(*size)
            .map_err(|_| RunError::Input(format!("buffer '{name}' is too large")))?;
        mem.bufs.push(
            DeviceBuf::zeroed(stream, size).map_err(|e| alloc(&format!("buffer '{name}'"), e))?,
        );
    }
    let (input_ptr, output_ptr) = (mem.bufs[0].ptr, mem.bufs[1].ptr);

    let Some((_, loaded, _)) = slot.programs.iter().find(|(i, _, _)| i == job.image) else {
        return Err(RunError::Device {
            message: "the program was evicted mid-call".into(),
            sticky: false,
        });
    };
    let spec = &job.entry.bundle.spec;
    for (k, launch) in plan.launches.iter().enumerate() {
        if job
            .control
            .cancel
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(RunError::Cancelled);
        }
        if launch.global.contains(&0) {
            continue;
        }
        let (Some(function), Some(step)) = (loaded.kernels.get(k), spec.kernels.get(k)) else {
            return Err(RunError::Device {
                message: format!("kernel '{}' is not loaded", launch.kernel),
                sticky: false,
            });
        };
        let dims = launch_dims(
            &launch.global,
            launch.local.as_deref(),
            function.max_threads,
        )
        .map_err(|e| RunError::Input(format!("kernel '{}': {e}", launch.kernel)))?;
        // Each parameter's value, in 8-byte cells: pointers and scalars
        // (little-endian bytes, as laid out in memory).
        let mut cells: Vec<u64> = Vec::with_capacity(launch.args.len());
        let mut shared: u64 = 0;
        for (a, arg) in launch.args.iter().enumerate() {
            let what = || {
                format!(
                    "kernel '{}' argument {a} ('{}')",
                    launch.kernel, step.args[a]
                )
            };
            match arg {
                PlannedArg::Input => cells.push(input_ptr),
                PlannedArg::Output => cells.push(output_ptr),
                PlannedArg::Buffer(b) => match mem.bufs.get(2 + *b) {
                    Some(buf) => cells.push(buf.ptr),
                    None => {
                        return Err(RunError::Device {
                            message: format!("{}: no such buffer", what()),
                            sticky: false,
                        })
                    }
                },
                PlannedArg::Object(name) => match object_ptrs.get(name.as_str()) {
                    Some((ptr, _)) => cells.push(*ptr),
                    None => {
                        return Err(RunError::Input(format!(
                            "{}: the object input '{name}' was not given",
                            what()
                        )))
                    }
                },
                PlannedArg::Local(bytes) => {
                    shared = shared.saturating_add(*bytes);
                }
                PlannedArg::Scalar(v) => {
                    if v.len() > 8 {
                        return Err(RunError::Device {
                            message: format!("{}: a {}-byte scalar", what(), v.len()),
                            sticky: false,
                        });
                    }
                    let mut cell = [0u8; 8];
                    cell[..v.len()].copy_from_slice(v);
                    cells.push(u64::from_ne_bytes(cell));
                }
            }
        }
        let device = &inner.devices[slot.device];
        if shared > device.max_shared.max(DEFAULT_SHARED) {
            return Err(RunError::Input(format!(
                "kernel '{}' asks for {shared} bytes of shared memory ('local' arguments); {} \
                 allows at most {} per block",
                launch.kernel,
                device.name,
                device.max_shared.max(DEFAULT_SHARED)
            )));
        }
        if shared > DEFAULT_SHARED {
            // SAFETY: a live function; the size is within the device's
            // opt-in limit and fits in an int.
            unsafe {
                sys::cuFuncSetAttribute(
                    function.handle,
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    shared as std::ffi::c_int,
                )
            }
            .result()
            .map_err(|e| {
                dev(
                    &format!(
                        "allowing kernel '{}' {shared} bytes of shared memory",
                        launch.kernel
                    ),
                    e,
                )
            })?;
        }
        // Pointers to each cell: `cells` is neither moved nor resized
        // until the launch returns, and the driver copies the values when
        // the launch is queued.
        let mut params: Vec<*mut c_void> = cells
            .iter_mut()
            .map(|c| (c as *mut u64).cast::<c_void>())
            .collect();
        // SAFETY: a function of a module loaded in the current context;
        // one parameter pointer per kernel parameter (checked at load when
        // the driver can say), each pointing at a value of the parameter's
        // size (8 for pointers, the scalar's size, zero-padded); the
        // pointers name live allocations of this context, kept until the
        // stream is synchronised (`CallMem`), or resident data.
        unsafe {
            cu::launch_kernel(
                function.handle,
                dims.grid,
                dims.block,
                shared as std::ffi::c_uint,
                stream,
                &mut params,
            )
        }
        .map_err(|e| {
            dev(
                &format!("launching kernel '{}' ({dims:?})", launch.kernel),
                e,
            )
        })?;
        drop(params);
        drop(cells);
    }

    // Read the output with its guard, and every other guard.
    let objects: Vec<(&str, sys::CUdeviceptr, usize, String)> = object_ptrs
        .iter()
        .filter_map(|(name, (ptr, sha))| {
            let len = slot.resident.iter().find(|(s, _, _)| s == sha)?.1.len;
            Some((*name, *ptr, len, sha.clone()))
        })
        .collect();
    // SAFETY: the output buffer holds `out_len + GUARD` bytes, as many as
    // `output`; each guard copy reads the GUARD bytes after a buffer's
    // data into its own vector. All destinations stay alive and untouched
    // until the synchronisation below.
    unsafe {
        cu::memcpy_dtoh_async(&mut output, output_ptr, stream)
            .map_err(|e| dev("reading the output", e))?;
        for (buf, guard) in mem.bufs.iter().zip(guards.iter_mut()).skip(2) {
            buf.read_guard(stream, guard)
                .map_err(|e| dev("reading a buffer", e))?;
        }
        for ((_, ptr, len, _), guard) in objects.iter().zip(guards.iter_mut().skip(mem.bufs.len()))
        {
            cu::memcpy_dtoh_async(&mut guard[..], *ptr + *len as u64, stream)
                .map_err(|e| dev("reading an object", e))?;
        }
        mem.bufs[0]
            .read_guard(stream, &mut guards[0])
            .map_err(|e| dev("reading the input", e))?;
    }
    context
        .synchronize()
        .map_err(|e| dev("running the kernels", e))?;
    let device_time = started.elapsed();

    let damaged = |g: &[u8]| g.iter().enumerate().position(|(i, b)| *b != canary(i));
    if let Some(at) = damaged(&output[out_len..]) {
        return Err(RunError::Trap(format!(
            "a kernel wrote past the end of the output buffer ({out_len} bytes; first stray \
             byte at offset {}): the output is discarded and the device keeps serving",
            out_len + at
        )));
    }
    for ((name, size), guard) in plan.buffers.iter().zip(&guards[2..mem.bufs.len()]) {
        if damaged(guard).is_some() {
            return Err(RunError::Trap(format!(
                "a kernel wrote past the end of buffer '{name}' ({size} bytes)"
            )));
        }
    }
    if damaged(&guards[0]).is_some() {
        return Err(RunError::Trap(format!(
            "a kernel wrote past the end of the input buffer ({} bytes)",
            job.input.len()
        )));
    }
    for ((name, _, len, sha), guard) in objects.iter().zip(&guards[mem.bufs.len()..]) {
        if damaged(guard).is_some() {
            drop(mem);
            slot.resident.retain(|(s, _, _)| s != sha);
            return Err(RunError::Trap(format!(
                "a kernel wrote past the end of object '{name}' ({len} bytes); its device copy \
                 is dropped"
            )));
        }
    }
    output.truncate(out_len);
    Ok(Ran {
        output,
        device_time,
        log,
    })
}

#[async_trait]
impl Backend for CudaBackend {
    fn class(&self) -> &str {
        CLASS
    }

    fn slots(&self) -> usize {
        self.inner.slots.len()
    }

    fn is_loaded(&self, image: &ImageId) -> bool {
        lock(&self.inner.images).contains_key(image)
            && lock(&self.inner.held)
                .iter()
                .any(|h| h.images.contains(image))
    }

    async fn load(&self, image: &ImageId, artifact: Bytes) -> Result<LoadReport, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            class: CLASS.into(),
            message,
        };
        let bundle = KernelBundle::decode(&artifact).map_err(invalid)?;
        let entry = Arc::new(ImageEntry {
            bundle,
            compiled: Mutex::new(HashMap::new()),
        });
        let guard = self.inner.acquire(image, &[]).await;
        let inner = self.inner.clone();
        let (id, e2) = (image.clone(), entry.clone());
        let programmed = tokio::task::spawn_blocking(move || {
            let index = guard.index;
            let mut slot = lock(&inner.slots[index]);
            let device = &inner.devices[slot.device];
            let r = match slot.enter(device) {
                Ok(()) => inner.program(&mut slot, &id, &e2),
                Err(e) => {
                    tracing::warn!("CUDA: slot {index}: {e}");
                    Err(format!("slot {index} has no usable CUDA context: {e}"))
                }
            };
            inner.record(index, &slot);
            drop(slot);
            drop(guard);
            r
        })
        .await
        .map_err(|e| invalid(format!("the CUDA host thread failed: {e}")))?
        .map_err(invalid)?;
        lock(&self.inner.images).insert(image.clone(), entry);
        Ok(LoadReport {
            cached: programmed.is_none(),
            duration: programmed.unwrap_or_default(),
        })
    }

    async fn call(&self, image: &ImageId, call: CallInput) -> Result<CallOutput, CallError> {
        let entry = lock(&self.inner.images)
            .get(image)
            .cloned()
            .ok_or_else(|| CallError::NotLoaded(image.0.clone()))?;
        let limits = call.limits;
        let control = call.control.clone();
        let input = call.input.read_all(limits.memory_bytes, &control).await?;
        control
            .consumed
            .store(input.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let plan = entry
            .bundle
            .spec
            .plan(input.len() as u64, &call.params, limits.output_bytes)
            .map_err(CallError::Input)?;

        // Object inputs the kernels take, by name, and their content hashes.
        let names: BTreeSet<&String> = plan
            .launches
            .iter()
            .flat_map(|l| l.args.iter())
            .filter_map(|a| match a {
                PlannedArg::Object(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut wanted = Vec::new();
        for n in names {
            let o = call
                .objects
                .get(n)
                .ok_or_else(|| CallError::Input(format!("the object input '{n}' is required")))?;
            wanted.push((n.clone(), o.clone()));
        }
        let device_bytes = (input.len() as u64)
            .saturating_add(plan.output_bytes)
            .saturating_add(
                plan.buffers
                    .iter()
                    .map(|(_, s)| *s)
                    .fold(0, u64::saturating_add),
            )
            .saturating_add(
                wanted
                    .iter()
                    .map(|(_, o)| o.size)
                    .fold(0, u64::saturating_add),
            );
        if device_bytes > limits.memory_bytes {
            return Err(CallError::Memory {
                limit_bytes: limits.memory_bytes,
                log: Bytes::from(format!(
                    "accelhub: this call needs {device_bytes} bytes of device memory\n"
                )),
            });
        }
        let shas: Vec<String> = wanted.iter().map(|(_, o)| o.sha256.clone()).collect();
        let guard = self.inner.acquire(image, &shas).await;
        // Read the objects the chosen slot does not hold yet.
        let resident = lock(&self.inner.held)[guard.index].resident.clone();
        let mut objects = Vec::new();
        for (name, o) in wanted {
            let bytes = if resident.contains(&o.sha256) {
                None
            } else {
                Some(o.read_verified(limits.memory_bytes).await?)
            };
            objects.push((name, o.sha256.clone(), bytes));
        }

        let inner = self.inner.clone();
        let id = image.clone();
        let task = tokio::task::spawn_blocking(move || {
            let job = Job {
                image: &id,
                entry: &entry,
                plan: &plan,
                input: &input,
                objects: &objects,
                control: &control,
            };
            let r = run(&inner, guard.index, &job);
            drop(guard);
            r
        });
        let timeout = Duration::from_millis(limits.timeout_ms);
        let ran = match tokio::time::timeout(timeout, task).await {
            Err(_) => {
                return Err(CallError::Deadline {
                    timeout_ms: limits.timeout_ms,
                    log: Bytes::from_static(
                        b"accelhub: the kernels are still running; their slot is released when they finish\n",
                    ),
                })
            }
            Ok(Err(e)) => {
                return Err(CallError::Device(format!(
                    "the CUDA host thread failed: {e}"
                )))
            }
            Ok(Ok(Err(RunError::Device { message, .. }))) => {
                return Err(CallError::Device(message))
            }
            Ok(Ok(Err(RunError::Trap(message)))) => {
                return Err(CallError::Trap {
                    message,
                    log: Bytes::new(),
                })
            }
            Ok(Ok(Err(RunError::Input(m)))) => return Err(CallError::Input(m)),
            Ok(Ok(Err(RunError::Cancelled))) => {
                return Err(CallError::Cancelled { log: Bytes::new() })
            }
            Ok(Ok(Ok(r))) => r,
        };
        let output = match &call.output {
            OutputSink::Memory => Output::Bytes(Bytes::from(ran.output)),
            OutputSink::File(path) => {
                let size = ran.output.len() as u64;
                tokio::fs::write(path, &ran.output)
                    .await
                    .map_err(|e| CallError::Device(format!("writing the output: {e}")))?;
                Output::File {
                    path: path.clone(),
                    size,
                }
            }
        };
        Ok(CallOutput {
            output,
            log: Bytes::from(ran.log),
            device_time: ran.device_time,
        })
    }

    fn status(&self) -> DeviceStatus {
        let held = lock(&self.inner.held);
        let mut images: Vec<ImageId> = held.iter().flat_map(|h| h.images.clone()).collect();
        images.sort();
        images.dedup();
        let mut resident: Vec<String> = held.iter().flat_map(|h| h.resident.clone()).collect();
        resident.sort();
        resident.dedup();
        drop(held);
        DeviceStatus {
            class: CLASS.into(),
            slots: self.inner.slots.len(),
            busy: lock(&self.inner.busy).iter().filter(|b| **b).count(),
            images,
            resident,
            hardware: self.inner.hardware.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(grid: (u32, u32, u32), block: (u32, u32, u32)) -> LaunchDims {
        LaunchDims { grid, block }
    }

    #[test]
    fn a_given_work_group_is_the_block_and_the_grid_covers_global() {
        assert_eq!(
            launch_dims(&[192], Some(&[64]), 1024),
            Ok(dims((3, 1, 1), (64, 1, 1)))
        );
        assert_eq!(
            launch_dims(&[64, 30], Some(&[16, 15]), 1024),
            Ok(dims((4, 2, 1), (16, 15, 1)))
        );
        assert_eq!(
            launch_dims(&[8, 8, 8], Some(&[2, 4, 8]), 1024),
            Ok(dims((4, 2, 1), (2, 4, 8)))
        );
        // Too many threads for the kernel.
        let e = launch_dims(&[2048], Some(&[2048]), 1024).unwrap_err();
        assert!(e.contains("at most 1024"), "{e}");
        assert!(launch_dims(&[64], Some(&[64, 1]), 1024).is_err());
    }

    #[test]
    fn without_a_work_group_the_default_block_rounds_the_grid_up() {
        assert_eq!(
            launch_dims(&[1000], None, 1024),
            Ok(dims((4, 1, 1), (256, 1, 1)))
        );
        // Never wider than global: 10 threads, one block of 10.
        assert_eq!(
            launch_dims(&[10], None, 1024),
            Ok(dims((1, 1, 1), (10, 1, 1)))
        );
        assert_eq!(
            launch_dims(&[100, 33], None, 1024),
            Ok(dims((7, 3, 1), (16, 16, 1)))
        );
        assert_eq!(
            launch_dims(&[9, 8, 5], None, 1024),
            Ok(dims((2, 1, 2), (8, 8, 4)))
        );
        // A kernel that runs at most 128 threads per block.
        assert_eq!(
            launch_dims(&[1000], None, 128),
            Ok(dims((8, 1, 1), (128, 1, 1)))
        );
        let d = launch_dims(&[100, 100], None, 64).unwrap();
        assert!(d.block.0 * d.block.1 <= 64, "{d:?}");
        assert_eq!(d.grid.0 * d.block.0 >= 100, d.grid.1 * d.block.1 >= 100);
    }

    #[test]
    fn grids_over_cuda_limits_and_bad_dimensions_are_refused() {
        assert!(launch_dims(&[], None, 1024).is_err());
        assert!(launch_dims(&[1, 1, 1, 1], None, 1024).is_err());
        let e = launch_dims(&[1 << 20, 1 << 30], Some(&[1, 1]), 1024).unwrap_err();
        assert!(e.contains("limit of 65535"), "{e}");
        assert!(launch_dims(&[u64::MAX], Some(&[1]), 1024).is_err());
        assert_eq!(
            launch_dims(&[(1 << 31) - 1], Some(&[1]), 1024),
            Ok(dims(((1 << 31) - 1, 1, 1), (1, 1, 1)))
        );
    }

    fn args(list: &[&str]) -> Vec<Arg> {
        list.iter().map(|a| Arg::parse(a).unwrap()).collect()
    }

    #[test]
    fn kernel_parameters_are_checked_against_the_declaration() {
        let a = args(&["input", "output", "local 256", "u32 (input)", "f64 k = 1"]);
        assert!(check_params("k", &a, &[8, 8, 4, 8]).is_ok());
        let e = check_params("k", &a, &[8, 8, 4]).unwrap_err();
        assert!(
            e.contains("takes 3 parameters but ip.toml declares 4"),
            "{e}"
        );
        let e = check_params("k", &a, &[8, 8, 4, 4]).unwrap_err();
        assert!(
            e.contains("parameter 3 is 4 bytes but ip.toml declares 'f64 k = 1' (8 bytes)"),
            "{e}"
        );
    }

    #[test]
    fn nvrtc_gets_the_device_architecture_unless_the_options_name_one() {
        assert_eq!(
            nvrtc_options("-use_fast_math  --std=c++17", (9, 0), None),
            vec![
                "-use_fast_math",
                "--std=c++17",
                "--gpu-architecture=compute_90"
            ]
        );
        assert_eq!(
            nvrtc_options("-arch=compute_80", (9, 0), None),
            vec!["-arch=compute_80"]
        );
        // A device newer than NVRTC knows: the newest it has below.
        assert_eq!(
            nvrtc_options("", (12, 0), Some(&[75, 80, 86, 89, 90])),
            vec!["--gpu-architecture=compute_90"]
        );
        assert!(nvrtc_options("", (3, 0), Some(&[75, 80])).is_empty());
    }

    #[test]
    fn binary_programs_are_ptx_text_or_cubins() {
        let ptx = b".version 7.0\n.target sm_52\n";
        let img = binary_image(ptx).unwrap();
        assert_eq!(img.last(), Some(&0));
        assert_eq!(&img[..ptx.len()], ptx);
        // Already NUL-terminated: unchanged.
        let mut z = ptx.to_vec();
        z.push(0);
        assert_eq!(binary_image(&z).unwrap().as_ref(), z.as_slice());
        let elf = b"\x7fELF\x02\x01\x01\0\0\0";
        assert!(matches!(binary_image(elf), Ok(Cow::Borrowed(_))));
        assert!(binary_image(b"").is_err());
        assert!(binary_image(b"MZ\x90\0garbage").is_err());
        assert!(binary_image(b"__global__ void k() {}").is_err());
    }

    #[test]
    fn the_guard_pattern_is_not_uniform() {
        let p = guard_pattern();
        assert_eq!(p.len(), GUARD);
        assert!(p.windows(2).any(|w| w[0] != w[1]));
        assert!(p.iter().enumerate().all(|(i, b)| *b == canary(i)));
    }

    /// Runs everywhere: where there is no libcuda (as on a build machine
    /// without an NVIDIA driver), discovery must fail with a message saying
    /// what to install, and never panic.
    #[test]
    fn discovery_never_panics_and_says_how_to_fix_a_missing_driver() {
        // SAFETY: only tries to open the library.
        let present = unsafe { sys::is_culib_present() };
        for _ in 0..2 {
            match CudaBackend::discover(CudaConfig::default()) {
                Ok(b) => {
                    assert!(present);
                    assert!(!b.hardware().is_empty());
                    assert!(b.hardware()[0].runtime.starts_with("CUDA driver "));
                }
                Err(e) => {
                    let m = e.to_string();
                    eprintln!("discovery: {m}");
                    assert!(m.starts_with("CUDA"), "{m}");
                    if !present {
                        assert!(matches!(e, CudaError::NoDriver(_)), "{e:?}");
                        assert!(
                            m.starts_with(
                                "CUDA is not available on this node: libcuda not found \
                                 (install the NVIDIA driver"
                            ),
                            "{m}"
                        );
                    }
                }
            }
        }
    }
}
