//! The `opencl` device class: accelerators driven through OpenCL, the host
//! API of Xilinx XRT (`.xclbin`), Intel's FPGA runtime (`.aocx`) and GPUs.
//! Here and in CI the device is PoCL, OpenCL on the CPU.
//!
//! libOpenCL is opened at run time ([`OpenClBackend::discover`]): a node
//! without it starts and says so. Each device offers slots; a slot is an
//! independently programmed region with its own context and queue, like a
//! reconfigurable region of an FPGA. Programming a slot (building kernel
//! source, or loading a device binary) is measured: it is the
//! reconfiguration cost. Slots keep their programs and resident data
//! (object inputs such as lookup tables) between calls, and a call goes to
//! the free slot that already holds what it needs.
//!
//! What an implementation's kernels take comes from its bundle
//! ([`accelhub_domain::kernel`]): buffers, scalars and work sizes are
//! planned from the call's input size and parameters before anything runs,
//! so a wrong parameter is an input error, not a device fault. Writable
//! buffers carry a guard region after their end, checked after the kernels
//! run: a kernel that writes past its output fails its call, and the slot
//! keeps serving.

use accelhub_device::{
    Backend, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError, LoadReport,
    Output, OutputSink,
};
use accelhub_domain::kernel::{KernelBundle, PlannedArg, ProgramFormat};
use accelhub_domain::DeviceHardware;
use async_trait::async_trait;
use bytes::Bytes;
use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL};
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, ClMem, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::{cl_mem, CL_BLOCKING};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const CLASS: &str = accelhub_domain::kernel::DEVICE_OPENCL;

/// Bytes after the end of every writable buffer, filled with a known
/// pattern and checked after the kernels run.
const GUARD: usize = 4096;

#[derive(Debug, Clone)]
pub struct OpenClConfig {
    /// Slots per device: regions programmed independently, each running
    /// one call at a time.
    pub slots_per_device: usize,
    /// Programs each slot keeps loaded (least recently used goes first).
    pub programs_per_slot: usize,
    /// Resident data objects each slot keeps.
    pub resident_per_slot: usize,
    /// Use at most this many devices (0: all).
    pub max_devices: usize,
}

impl Default for OpenClConfig {
    fn default() -> Self {
        OpenClConfig {
            slots_per_device: 2,
            programs_per_slot: 8,
            resident_per_slot: 4,
            max_devices: 0,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenClError {
    #[error("OpenCL is not available on this node: {0}")]
    NoRuntime(String),
    #[error("OpenCL has no devices on this node{0}")]
    NoDevices(String),
    #[error("OpenCL: {0}")]
    Api(String),
}

/// The OpenCL devices of this node.
pub struct OpenClBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: OpenClConfig,
    hardware: Vec<DeviceHardware>,
    slots: Vec<Mutex<Slot>>,
    /// What each slot holds, readable while the slot runs a call.
    held: Mutex<Vec<Held>>,
    busy: Mutex<Vec<bool>>,
    permits: Arc<tokio::sync::Semaphore>,
    images: Mutex<HashMap<ImageId, Arc<ImageEntry>>>,
    /// Use counter for least-recently-used choices.
    tick: std::sync::atomic::AtomicU64,
}

#[derive(Default, Clone)]
struct Held {
    images: Vec<ImageId>,
    resident: Vec<String>,
    last_used: u64,
}

/// One slot: a context and queue of its own on one device.
struct Slot {
    device: usize,
    context: Context,
    queue: CommandQueue,
    programs: Vec<(ImageId, Loaded, u64)>,
    resident: Vec<(String, Buffer<u8>, u64)>,
}

struct Loaded {
    _program: Program,
    /// One kernel per step of the sequence.
    kernels: Vec<Kernel>,
}

/// A decoded image: its bundle and, per device, the binary its source
/// compiled to (programming another slot of that device loads it).
struct ImageEntry {
    bundle: KernelBundle,
    binaries: Mutex<HashMap<usize, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

use accelhub_device::guard_byte as canary;

impl OpenClBackend {
    /// Open libOpenCL and take every device it reports; an error says why
    /// this node has no OpenCL device class.
    pub fn discover(config: OpenClConfig) -> Result<OpenClBackend, OpenClError> {
        // Runtimes initialise their platforms on first use, and not all do
        // so safely from several threads at once (PoCL does not): the guard
        // also makes discovery one at a time.
        let _signals = accelhub_device::SignalGuard::new();
        if let Err(e) = cl3::load_library() {
            return Err(OpenClError::NoRuntime(format!(
                "cannot load libOpenCL ({e}); install an OpenCL runtime (e.g. Debian's \
                 ocl-icd-libopencl1 with pocl-opencl-icd, or a vendor's driver)"
            )));
        }
        let platforms = opencl3::platform::get_platforms()
            .map_err(|e| OpenClError::NoDevices(format!(": no platform ({e})")))?;
        let mut hardware = Vec::new();
        let mut slots = Vec::new();
        let per = config.slots_per_device.max(1);
        for p in platforms {
            let runtime = format!(
                "{} ({})",
                p.name().unwrap_or_default(),
                p.version().unwrap_or_default()
            );
            let ids = match p.get_devices(CL_DEVICE_TYPE_ALL) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!("OpenCL platform {runtime}: cannot list devices: {e}");
                    continue;
                }
            };
            for id in ids {
                if config.max_devices > 0 && hardware.len() >= config.max_devices {
                    break;
                }
                let device = Device::new(id);
                let index = hardware.len();
                for _ in 0..per {
                    let context = Context::from_device(&device)
                        .map_err(|e| OpenClError::Api(format!("creating a context: {e}")))?;
                    let queue = CommandQueue::create_default_with_properties(&context, 0, 0)
                        .or_else(|_| {
                            #[allow(deprecated)]
                            CommandQueue::create_default(&context, 0)
                        })
                        .map_err(|e| OpenClError::Api(format!("creating a queue: {e}")))?;
                    slots.push(Mutex::new(Slot {
                        device: index,
                        context,
                        queue,
                        programs: Vec::new(),
                        resident: Vec::new(),
                    }));
                }
                hardware.push(DeviceHardware {
                    name: device.name().unwrap_or_default().trim().to_string(),
                    vendor: device.vendor().unwrap_or_default().trim().to_string(),
                    runtime: runtime.clone(),
                    memory_bytes: device.global_mem_size().unwrap_or(0),
                    compute_units: device.max_compute_units().unwrap_or(0),
                    slots: per,
                });
            }
        }
        if hardware.is_empty() {
            return Err(OpenClError::NoDevices(String::new()));
        }
        let n = slots.len();
        Ok(OpenClBackend {
            inner: Arc::new(Inner {
                config,
                hardware,
                held: Mutex::new(vec![Held::default(); n]),
                busy: Mutex::new(vec![false; n]),
                permits: Arc::new(tokio::sync::Semaphore::new(n)),
                slots,
                images: Mutex::new(HashMap::new()),
                tick: Default::default(),
            }),
        })
    }

    /// The devices found, as the fleet view shows them.
    pub fn hardware(&self) -> &[DeviceHardware] {
        &self.inner.hardware
    }
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
            // The semaphore is never closed.
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

    /// Make sure `slot` holds `image`: build or load its program. Returns
    /// the time it took, or `None` when the slot already held it.
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
        let cached = lock(&entry.binaries).get(&slot.device).cloned();
        let signals = accelhub_device::SignalGuard::new();
        let program = match (&cached, spec.format) {
            (Some(bin), _) => {
                Program::create_and_build_from_binary(&slot.context, &[bin], &spec.build_options)
                    .map_err(|e| format!("loading the compiled program: {e}"))?
            }
            (None, ProgramFormat::Binary) => Program::create_and_build_from_binary(
                &slot.context,
                &[&entry.bundle.program],
                &spec.build_options,
            )
            .map_err(|e| {
                format!(
                    "the device does not take this binary ({e}): a vendor binary must be built \
                     for this device ({})",
                    self.hardware[slot.device].name
                )
            })?,
            (None, ProgramFormat::Source) => {
                let source = std::str::from_utf8(&entry.bundle.program)
                    .map_err(|_| "the kernel source is not UTF-8 text".to_string())?;
                Program::create_and_build_from_source(&slot.context, source, &spec.build_options)
                    .map_err(|e| match e.split_once(", build log: ") {
                        Some((code, log)) => {
                            format!(
                                "the kernel source does not build ({code}); build log:\n{}",
                                log.trim()
                            )
                        }
                        None => format!("the kernel source does not build: {e}"),
                    })?
            }
        };
        drop(signals);
        if cached.is_none() && spec.format == ProgramFormat::Source {
            if let Ok(mut bins) = program.get_binaries() {
                if let Some(bin) = bins.pop().filter(|b| !b.is_empty()) {
                    lock(&entry.binaries).insert(slot.device, bin);
                }
            }
        }
        let mut kernels = Vec::new();
        for step in &spec.kernels {
            if !step
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!("'{}' is not a kernel name", step.name));
            }
            let kernel = Kernel::create(&program, &step.name).map_err(|e| {
                format!(
                    "the program has no kernel '{}' ({e}); it has: {}",
                    step.name,
                    program.kernel_names()
                )
            })?;
            let n = kernel.num_args().map_err(|e| e.to_string())? as usize;
            if n != step.args.len() {
                return Err(format!(
                    "kernel '{}' takes {n} arguments but ip.toml declares {}: {}",
                    step.name,
                    step.args.len(),
                    step.args
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            kernels.push(kernel);
        }
        if slot.programs.len() >= self.config.programs_per_slot.max(1) {
            if let Some(oldest) = (0..slot.programs.len()).min_by_key(|i| slot.programs[*i].2) {
                slot.programs.remove(oldest);
            }
        }
        slot.programs.push((
            image.clone(),
            Loaded {
                _program: program,
                kernels,
            },
            tick,
        ));
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
    Device(String),
    Trap(String),
    Cancelled,
}

#[allow(clippy::too_many_arguments)]
fn run(
    inner: &Inner,
    index: usize,
    image: &ImageId,
    entry: &ImageEntry,
    plan: &accelhub_domain::kernel::CallPlan,
    input: &[u8],
    objects: &[(String, String, Option<Bytes>)],
    control: &accelhub_device::CallControl,
) -> Result<Ran, RunError> {
    let mut slot = lock(&inner.slots[index]);
    let mut log = String::new();
    let programmed = inner
        .program(&mut slot, image, entry)
        .map_err(|e| RunError::Device(format!("programming the device failed: {e}")))?;
    if let Some(d) = programmed {
        log.push_str(&format!(
            "accelhub: programmed slot {index} in {:.1} ms\n",
            d.as_secs_f64() * 1e3
        ));
    }
    inner.record(index, &slot);
    let started = Instant::now();
    let spec = &entry.bundle.spec;
    let dev =
        |what: &str, e: opencl3::error_codes::ClError| RunError::Device(format!("{what}: {e}"));
    let slot = &mut *slot;

    // Resident data first: it outlives the call.
    let tick = inner.next_tick();
    let mut object_mems: HashMap<String, cl_mem> = HashMap::new();
    for (name, sha, bytes) in objects {
        if let Some(r) = slot.resident.iter_mut().find(|(s, _, _)| s == sha) {
            r.2 = tick;
            object_mems.insert(name.clone(), r.1.get());
            continue;
        }
        let Some(bytes) = bytes else {
            return Err(RunError::Device(format!(
                "object '{name}' was expected resident and is not"
            )));
        };
        let buffer =
            host_buffer(&slot.context, bytes).map_err(|e| dev("allocating an object", e))?;
        if slot.resident.len() >= inner.config.resident_per_slot.max(1) {
            // The least recently used object this call does not use.
            if let Some(oldest) = (0..slot.resident.len())
                .filter(|i| slot.resident[*i].2 < tick)
                .min_by_key(|i| slot.resident[*i].2)
            {
                slot.resident.remove(oldest);
            }
        }
        object_mems.insert(name.clone(), buffer.get());
        slot.resident.push((sha.clone(), buffer, tick));
        log.push_str(&format!(
            "accelhub: object '{name}' ({} bytes) now resident in slot {index}\n",
            bytes.len()
        ));
    }
    inner.record(index, slot);

    let input_buf =
        host_buffer(&slot.context, input).map_err(|e| dev("allocating the input", e))?;
    let out_len = plan.output_bytes as usize;
    let output_buf = guarded_buffer(slot, out_len).map_err(|e| dev("allocating the output", e))?;
    let mut scratch = Vec::new();
    for (name, size) in &plan.buffers {
        scratch.push((
            name.clone(),
            *size as usize,
            guarded_buffer(slot, *size as usize)
                .map_err(|e| dev(&format!("allocating buffer '{name}'"), e))?,
        ));
    }

    let Some((_, loaded, _)) = slot.programs.iter().find(|(i, _, _)| i == image) else {
        return Err(RunError::Device("the program was evicted mid-call".into()));
    };
    for (k, launch) in plan.launches.iter().enumerate() {
        if control.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(RunError::Cancelled);
        }
        if launch.global.contains(&0) {
            continue;
        }
        let kernel = &loaded.kernels[k];
        let step = &spec.kernels[k];
        for (a, arg) in launch.args.iter().enumerate() {
            let what = || {
                format!(
                    "kernel '{}' argument {a} ('{}')",
                    launch.kernel, step.args[a]
                )
            };
            let idx = a as u32;
            // SAFETY: each argument is a live buffer handle, a byte slice
            // of the declared scalar size, or a local-memory size; OpenCL
            // checks sizes against the kernel's signature.
            let set = unsafe {
                match arg {
                    PlannedArg::Input => kernel.set_arg(idx, &input_buf.get()),
                    PlannedArg::Output => kernel.set_arg(idx, &output_buf.get()),
                    PlannedArg::Buffer(b) => match scratch.get(*b) {
                        Some((_, _, buf)) => kernel.set_arg(idx, &buf.get()),
                        None => {
                            return Err(RunError::Device(format!("{}: no such buffer", what())))
                        }
                    },
                    PlannedArg::Object(name) => match object_mems.get(name) {
                        Some(mem) => kernel.set_arg(idx, mem),
                        None => {
                            return Err(RunError::Device(format!(
                                "{}: the object input '{name}' was not given",
                                what()
                            )))
                        }
                    },
                    PlannedArg::Local(bytes) => kernel.set_arg_local_buffer(idx, *bytes as usize),
                    PlannedArg::Scalar(v) => cl3::kernel::set_kernel_arg(
                        kernel.get(),
                        idx,
                        v.len(),
                        v.as_ptr() as *const std::ffi::c_void,
                    )
                    .map_err(opencl3::error_codes::ClError),
                }
            };
            set.map_err(|e| {
                RunError::Device(format!(
                    "{}: {e} (does the kernel's parameter match the declared type?)",
                    what()
                ))
            })?;
        }
        let global: Vec<usize> = launch.global.iter().map(|g| *g as usize).collect();
        let local: Option<Vec<usize>> = launch
            .local
            .as_ref()
            .map(|l| l.iter().map(|x| *x as usize).collect());
        // SAFETY: the work sizes have `global.len()` dimensions, as does
        // `local` when given; every argument was set above.
        unsafe {
            slot.queue.enqueue_nd_range_kernel(
                kernel.get(),
                global.len() as u32,
                std::ptr::null(),
                global.as_ptr(),
                local
                    .as_ref()
                    .map(|l| l.as_ptr())
                    .unwrap_or(std::ptr::null()),
                &[],
            )
        }
        .map_err(|e| dev(&format!("launching kernel '{}'", launch.kernel), e))?;
    }
    slot.queue
        .finish()
        .map_err(|e| dev("running the kernels", e))?;

    let mut output = vec![0u8; out_len + GUARD];
    // SAFETY: the buffer holds `out_len + GUARD` bytes, as many as `output`.
    unsafe {
        slot.queue
            .enqueue_read_buffer(&output_buf, CL_BLOCKING, 0, &mut output, &[])
    }
    .map_err(|e| dev("reading the output", e))?;
    if let Some(at) = (0..GUARD).find(|i| output[out_len + i] != canary(*i)) {
        return Err(RunError::Trap(format!(
            "a kernel wrote past the end of the output buffer ({out_len} bytes; first stray \
             byte at offset {}): the output is discarded and the device keeps serving",
            out_len + at
        )));
    }
    for (name, size, buf) in &scratch {
        let mut guard = vec![0u8; GUARD];
        // SAFETY: the buffer holds `size + GUARD` bytes.
        unsafe {
            slot.queue
                .enqueue_read_buffer(buf, CL_BLOCKING, *size, &mut guard, &[])
        }
        .map_err(|e| dev(&format!("reading buffer '{name}'"), e))?;
        if guard.iter().enumerate().any(|(i, b)| *b != canary(i)) {
            return Err(RunError::Trap(format!(
                "a kernel wrote past the end of buffer '{name}' ({size} bytes)"
            )));
        }
    }
    output.truncate(out_len);
    Ok(Ran {
        output,
        device_time: started.elapsed(),
        log,
    })
}

/// A read-only buffer holding `bytes` (one byte for empty data: OpenCL
/// has no empty buffers).
fn host_buffer(
    context: &Context,
    bytes: &[u8],
) -> Result<Buffer<u8>, opencl3::error_codes::ClError> {
    let one = [0u8];
    let data: &[u8] = if bytes.is_empty() { &one } else { bytes };
    // SAFETY: COPY_HOST_PTR copies `data.len()` bytes from a live slice.
    unsafe {
        Buffer::<u8>::create(
            context,
            CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
            data.len(),
            data.as_ptr() as *mut std::ffi::c_void,
        )
    }
}

/// A writable buffer of `len` bytes followed by the guard pattern.
fn guarded_buffer(slot: &Slot, len: usize) -> Result<Buffer<u8>, opencl3::error_codes::ClError> {
    let mut init = vec![0u8; len + GUARD];
    for i in 0..GUARD {
        init[len + i] = canary(i);
    }
    // SAFETY: COPY_HOST_PTR copies `init.len()` bytes from a live vector.
    unsafe {
        Buffer::<u8>::create(
            &slot.context,
            CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
            init.len(),
            init.as_mut_ptr() as *mut std::ffi::c_void,
        )
    }
}

#[async_trait]
impl Backend for OpenClBackend {
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
            binaries: Mutex::new(HashMap::new()),
        });
        let guard = self.inner.acquire(image, &[]).await;
        let inner = self.inner.clone();
        let (id, e2) = (image.clone(), entry.clone());
        let programmed = tokio::task::spawn_blocking(move || {
            let index = guard.index;
            let mut slot = lock(&inner.slots[index]);
            let r = inner.program(&mut slot, &id, &e2);
            inner.record(index, &slot);
            drop(slot);
            drop(guard);
            r
        })
        .await
        .map_err(|e| invalid(format!("the OpenCL host thread failed: {e}")))?
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
            .map_err(CallError::Invalid)?;

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
                .ok_or_else(|| CallError::Invalid(format!("the object input '{n}' is required")))?;
            wanted.push((n.clone(), o.clone()));
        }
        let device_bytes = input.len() as u64
            + plan.output_bytes
            + plan.buffers.iter().map(|(_, s)| s).sum::<u64>()
            + wanted.iter().map(|(_, o)| o.size).sum::<u64>();
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
            let r = run(
                &inner,
                guard.index,
                &id,
                &entry,
                &plan,
                &input,
                &objects,
                &control,
            );
            inner.record(guard.index, &lock(&inner.slots[guard.index]));
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
            Ok(Err(e)) => return Err(CallError::Device(format!("the OpenCL host thread failed: {e}"))),
            Ok(Ok(Err(RunError::Device(m)))) => return Err(CallError::Device(m)),
            Ok(Ok(Err(RunError::Trap(message)))) => {
                return Err(CallError::Trap {
                    message,
                    log: Bytes::new(),
                })
            }
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
