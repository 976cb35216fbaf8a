//! The `cuda` device class: NVIDIA GPUs driven through the CUDA driver API
//! (libcuda), with CUDA C compiled at run time by NVRTC (libnvrtc).
//!
//! # Loading and discovery
//!
//! Both libraries are opened at run time (cudarc's `dynamic-loading`), never
//! linked: the agent builds and starts on any node. cudarc panics when a
//! function of a library it cannot open is called, so discovery
//! ([`KernelHost::discover`] of a [`CudaBackend`]) first probes for libcuda
//! and only then calls `cuInit`; a node without the driver, without a device, or with a broken
//! driver gets a [`DiscoveryError`] saying what to install or check, and
//! discovery never panics (it also catches any panic from the bindings as a
//! last resort). NVRTC is optional: a node with the driver but without
//! libnvrtc still runs PTX and cubin programs, and says so when asked to
//! build CUDA C source. Discovery runs one at a time in a process.
//!
//! Each device becomes a [`DeviceHardware`](accelhub_domain::DeviceHardware): its name, total memory,
//! multiprocessor count (`compute_units`) and `runtime` "CUDA driver X.Y".
//!
//! # What is shared, and what is CUDA's
//!
//! The slot pool, the call flow (planning, object inputs, the memory check,
//! the deadline, error mapping, the output sink) and status are the
//! [`KernelHost`]'s, shared with the `opencl` class: see
//! [`accelhub_device::kernel_host`]. This crate is [`Cuda`], its
//! [`KernelRuntime`], in modules by concern: `discover` (libraries and
//! devices), `driver` (contexts, streams, device memory: every raw handle
//! and the order it is freed in), `compile` (NVRTC, binary programs,
//! kernel checks) and `launch` (a call's buffers, launches, guards, and
//! resetting a faulted slot).
//!
//! # Slots
//!
//! As in the `opencl` class, each device offers
//! [`KernelHostConfig::slots_per_device`] slots, each running one call at a
//! time.
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
//! A slot keeps up to [`KernelHostConfig::programs_per_slot`] programs (modules)
//! loaded and [`KernelHostConfig::resident_per_slot`] object inputs resident in
//! device memory, keyed by their SHA-256, least recently used going first.
//! A call goes to the free slot that already holds its program and data.
//! Programming a slot is measured and logged
//! (`accelhub: programmed slot N in X ms`), as is an object made resident.
//!
//! # Programs
//!
//! - [`ProgramFormat::Source`](accelhub_domain::kernel::ProgramFormat::Source): CUDA C, compiled by NVRTC to PTX when a
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
//! - [`ProgramFormat::Binary`](accelhub_domain::kernel::ProgramFormat::Binary): PTX text, a cubin (ELF) or a fatbin, loaded
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
//! before anything runs, so a bad parameter or input size is the caller's
//! mistake, [`CallError::Invalid`] (as on every kernel backend). The device
//! memory it needs (input, output, scratch buffers, objects) is checked
//! against `limits.memory_bytes` ([`CallError::Memory`]).
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
//!   error ([`CallError::Input`]: the plan was valid, this device cannot run
//!   it). A kernel whose global size is zero is not launched.
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
//!   programs it again. The error message says so
//!   ([`KernelRuntime::recover`]).
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

mod compile;
mod discover;
mod driver;
mod launch;

use accelhub_device::kernel_host::{
    Discovered, DiscoveryError, InSlot, Job, KernelHost, KernelHostConfig, KernelImage,
    KernelRuntime, RunError, Slot,
};
#[cfg(doc)]
use accelhub_device::CallError;
use discover::{DeviceInfo, NvrtcInfo};
use driver::SlotContext;

pub use compile::Loaded;
pub use driver::{CudaSlot, DeviceBuf};

pub const CLASS: &str = accelhub_domain::kernel::DEVICE_CUDA;

/// Slots per device (CUDA contexts of their own), programs (modules) per
/// slot, resident objects per slot.
pub type CudaConfig = KernelHostConfig;

/// The CUDA devices of this node.
pub type CudaBackend = KernelHost<Cuda>;

/// What only CUDA does for the kernel host: the devices as programming
/// and launching need them, and NVRTC when the node has it.
pub struct Cuda {
    devices: Vec<DeviceInfo>,
    /// NVRTC, when this node has it.
    nvrtc: Option<NvrtcInfo>,
    /// Whether the driver has `cuFuncGetParamInfo` (12.4+).
    param_info: bool,
    /// The driver, as `CUDA driver X.Y`.
    driver: String,
}

impl Cuda {
    /// NVRTC's version, when this node can compile CUDA C source.
    pub fn nvrtc_version(&self) -> Option<(i32, i32)> {
        self.nvrtc.as_ref().map(|n| n.version)
    }

    fn device(&self, index: usize) -> Result<&DeviceInfo, String> {
        self.devices
            .get(index)
            .ok_or_else(|| format!("no CUDA device {index}"))
    }
}

impl KernelRuntime for Cuda {
    const CLASS: &'static str = CLASS;
    const NAME: &'static str = "CUDA";
    /// A context of its own per slot, so that a faulting kernel breaks
    /// its slot only.
    type SlotState = CudaSlot;
    /// A module and its functions.
    type Program = Loaded;
    /// Device memory with a guard region after its data.
    type Buffer = DeviceBuf;

    /// Open libcuda and take every device it reports; an error says why
    /// this node has no CUDA device class. Never panics.
    fn discover(config: &KernelHostConfig) -> Result<Discovered<Cuda>, DiscoveryError> {
        discover::discover(config)
    }

    /// Make the slot's context current on this thread, creating it when an
    /// earlier rebuild failed.
    fn enter(&self, slot: &mut Slot<Cuda>, index: usize) -> Result<(), String> {
        let entered = match self.device(slot.device) {
            Err(e) => Err(e),
            Ok(device) => match &slot.state.context {
                Some(context) => context.enter(),
                None => SlotContext::create(device.ordinal).and_then(|context| {
                    let entered = context.enter();
                    slot.state.context = Some(context);
                    entered
                }),
            },
        };
        entered.map_err(|e| {
            tracing::warn!("CUDA: slot {index}: {e}");
            format!("slot {index} has no usable CUDA context: {e}")
        })
    }

    fn build(&self, slot: &mut Slot<Cuda>, image: &KernelImage) -> Result<Loaded, String> {
        self.load_program(slot, image)
    }

    fn upload(&self, slot: &mut Slot<Cuda>, bytes: &[u8]) -> Result<DeviceBuf, String> {
        match &slot.state.context {
            Some(context) => DeviceBuf::from_bytes(context.stream, bytes),
            None => Err("the slot lost its context".into()),
        }
    }

    fn launch(&self, slot: InSlot<'_, Cuda>, job: &Job<'_>) -> Result<Vec<u8>, RunError> {
        self.run_plan(slot, job)
    }

    fn recover(&self, slot: &mut Slot<Cuda>, index: usize, error: RunError) -> RunError {
        self.reset(slot, index, error)
    }

    /// Modules and memory go before their context, with it current.
    fn release(slot: &mut Slot<Cuda>) {
        if let Some(c) = &slot.state.context {
            let _ = c.enter();
        }
        slot.programs.clear();
        slot.resident.clear();
    }
}
