//! The `opencl` device class: accelerators driven through OpenCL, the host
//! API of Xilinx XRT (`.xclbin`), Intel's FPGA runtime (`.aocx`) and GPUs.
//! Here and in CI the device is PoCL, OpenCL on the CPU.
//!
//! libOpenCL is opened at run time ([`KernelHost::discover`]): a node
//! without it starts and says so. Each device offers slots; a slot is an
//! independently programmed region with its own context and queue, like a
//! reconfigurable region of an FPGA.
//!
//! The slot pool, the call flow (planning, object inputs, the memory check,
//! the deadline, error mapping, the output sink) and status are the
//! [`KernelHost`]'s, shared with the `cuda` class: see
//! [`accelhub_device::kernel_host`]. This crate is what only OpenCL does
//! ([`OpenCl`], its [`KernelRuntime`]): finding platforms and devices,
//! building kernel source or loading a vendor binary into a slot's context
//! (a source build's binary is kept per device, so other slots of that
//! device load it instead of compiling), setting kernel arguments and
//! enqueueing the planned launches. Writable buffers carry the host's guard
//! region after their end, checked after the kernels ran: a kernel that
//! writes past its output fails its call, and the slot keeps serving.

use accelhub_device::kernel_host::{
    arg_name, checked_output, guard_damage, guard_pattern, Discovered, DiscoveryError, InSlot, Job,
    KernelHost, KernelHostConfig, KernelImage, KernelRuntime, RunError, Slot, GUARD,
};
use accelhub_domain::kernel::{PlannedArg, ProgramFormat};
use accelhub_domain::DeviceHardware;
use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{Device, CL_DEVICE_TYPE_ALL};
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, ClMem, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::{cl_mem, CL_BLOCKING};
use std::collections::HashMap;
use std::sync::Arc;

pub const CLASS: &str = accelhub_domain::kernel::DEVICE_OPENCL;

/// Slots per device, programs per slot, resident objects per slot.
pub type OpenClConfig = KernelHostConfig;

/// The OpenCL devices of this node.
pub type OpenClBackend = KernelHost<OpenCl>;

/// What only OpenCL does for the kernel host.
pub struct OpenCl {
    /// Device names, for messages.
    devices: Vec<String>,
}

/// A slot's own context and queue on one device.
pub struct OpenClSlot {
    context: Context,
    queue: CommandQueue,
}

/// A program built in a slot's context.
pub struct Loaded {
    _program: Program,
    /// One kernel per step of the sequence.
    kernels: Vec<Kernel>,
}

impl KernelRuntime for OpenCl {
    const CLASS: &'static str = CLASS;
    const NAME: &'static str = "OpenCL";
    /// A context and queue per slot, like a reconfigurable FPGA region.
    type SlotState = OpenClSlot;
    type Program = Loaded;
    /// A read-only buffer holding the object's bytes.
    type Buffer = Buffer<u8>;

    /// Open libOpenCL and take every device it reports; an error says why
    /// this node has no OpenCL device class.
    fn discover(config: &KernelHostConfig) -> Result<Discovered<OpenCl>, DiscoveryError> {
        discover(config)
    }

    fn build(&self, slot: &mut Slot<OpenCl>, image: &KernelImage) -> Result<Loaded, String> {
        let device = self.devices.get(slot.device).map_or("", String::as_str);
        build(slot, image, device)
    }

    fn upload(&self, slot: &mut Slot<OpenCl>, bytes: &[u8]) -> Result<Buffer<u8>, String> {
        host_buffer(&slot.state.context, bytes).map_err(|e| e.to_string())
    }

    fn launch(&self, slot: InSlot<'_, OpenCl>, job: &Job<'_>) -> Result<Vec<u8>, RunError> {
        launch(slot, job)
    }
}

fn discover(config: &KernelHostConfig) -> Result<Discovered<OpenCl>, DiscoveryError> {
    // Runtimes initialise their platforms on first use, and not all do
    // so safely from several threads at once (PoCL does not): the guard
    // also makes discovery one at a time.
    let _signals = accelhub_device::SignalGuard::new();
    if let Err(e) = cl3::load_library() {
        return Err(DiscoveryError::NoRuntime {
            runtime: OpenCl::NAME,
            message: format!(
                "cannot load libOpenCL ({e}); install an OpenCL runtime (e.g. Debian's \
                 ocl-icd-libopencl1 with pocl-opencl-icd, or a vendor's driver)"
            ),
        });
    }
    let api = |message: String| DiscoveryError::Api {
        runtime: OpenCl::NAME,
        message,
    };
    let platforms = opencl3::platform::get_platforms().map_err(|e| DiscoveryError::NoDevices {
        runtime: OpenCl::NAME,
        message: format!(": no platform ({e})"),
    })?;
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
                    .map_err(|e| api(format!("creating a context: {e}")))?;
                let queue = CommandQueue::create_default_with_properties(&context, 0, 0)
                    .or_else(|_| {
                        #[allow(deprecated)]
                        CommandQueue::create_default(&context, 0)
                    })
                    .map_err(|e| api(format!("creating a queue: {e}")))?;
                slots.push(Slot::new(index, OpenClSlot { context, queue }));
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
        return Err(DiscoveryError::NoDevices {
            runtime: OpenCl::NAME,
            message: String::new(),
        });
    }
    Ok(Discovered {
        runtime: OpenCl {
            devices: hardware.iter().map(|h| h.name.clone()).collect(),
        },
        hardware,
        slots,
    })
}

/// Build the image's source, or load its binary (or the binary an earlier
/// build made for this device), in the slot's context, and find its
/// kernels.
fn build(slot: &mut Slot<OpenCl>, entry: &KernelImage, device: &str) -> Result<Loaded, String> {
    let spec = &entry.bundle.spec;
    let context = &slot.state.context;
    let cached = entry.compiled(slot.device);
    let signals = accelhub_device::SignalGuard::new();
    let program = match (&cached, spec.format) {
        (Some(bin), _) => {
            Program::create_and_build_from_binary(context, &[bin.as_slice()], &spec.build_options)
                .map_err(|e| format!("loading the compiled program: {e}"))?
        }
        (None, ProgramFormat::Binary) => Program::create_and_build_from_binary(
            context,
            &[&entry.bundle.program],
            &spec.build_options,
        )
        .map_err(|e| {
            format!(
                "the device does not take this binary ({e}): a vendor binary must be built \
                 for this device ({device})"
            )
        })?,
        (None, ProgramFormat::Source) => {
            let source = std::str::from_utf8(&entry.bundle.program)
                .map_err(|_| "the kernel source is not UTF-8 text".to_string())?;
            Program::create_and_build_from_source(context, source, &spec.build_options).map_err(
                |e| match e.split_once(", build log: ") {
                    Some((code, log)) => {
                        format!(
                            "the kernel source does not build ({code}); build log:\n{}",
                            log.trim()
                        )
                    }
                    None => format!("the kernel source does not build: {e}"),
                },
            )?
        }
    };
    drop(signals);
    if cached.is_none() && spec.format == ProgramFormat::Source {
        if let Ok(mut bins) = program.get_binaries() {
            if let Some(bin) = bins.pop().filter(|b| !b.is_empty()) {
                entry.keep_compiled(slot.device, Arc::new(bin));
            }
        }
    }
    let mut kernels = Vec::new();
    for step in &spec.kernels {
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
    Ok(Loaded {
        _program: program,
        kernels,
    })
}

/// Run the planned kernels in the slot's queue, over its input, output and
/// scratch buffers and the resident objects.
fn launch(slot: InSlot<'_, OpenCl>, job: &Job<'_>) -> Result<Vec<u8>, RunError> {
    let (plan, input) = (job.plan, job.input);
    let dev =
        |what: &str, e: opencl3::error_codes::ClError| RunError::device(format!("{what}: {e}"));
    let mut object_mems: HashMap<&str, cl_mem> = HashMap::new();
    for (name, sha) in job.objects {
        if let Some(buffer) = slot.resident.get(sha) {
            object_mems.insert(name.as_str(), buffer.get());
        }
    }
    let context = &slot.state.context;
    let queue = &slot.state.queue;

    let input_buf = host_buffer(context, input).map_err(|e| dev("allocating the input", e))?;
    let out_len = plan.output_bytes as usize;
    let output_buf =
        guarded_buffer(context, out_len).map_err(|e| dev("allocating the output", e))?;
    let mut scratch = Vec::new();
    for (name, size) in &plan.buffers {
        scratch.push((
            name.clone(),
            *size as usize,
            guarded_buffer(context, *size as usize)
                .map_err(|e| dev(&format!("allocating buffer '{name}'"), e))?,
        ));
    }

    job.each_launch(&slot.program.kernels, |kernel, launch, step| {
        for (a, arg) in launch.args.iter().enumerate() {
            let what = || arg_name(launch, step, a);
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
                            return Err(RunError::device(format!("{}: no such buffer", what())))
                        }
                    },
                    PlannedArg::Object(name) => match object_mems.get(name.as_str()) {
                        Some(mem) => kernel.set_arg(idx, mem),
                        None => {
                            return Err(RunError::device(format!(
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
                RunError::device(format!(
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
            queue.enqueue_nd_range_kernel(
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
        .map(drop)
        .map_err(|e| dev(&format!("launching kernel '{}'", launch.kernel), e))
    })?;
    queue.finish().map_err(|e| dev("running the kernels", e))?;

    let mut output = vec![0u8; out_len + GUARD];
    // SAFETY: the buffer holds `out_len + GUARD` bytes, as many as `output`.
    unsafe { queue.enqueue_read_buffer(&output_buf, CL_BLOCKING, 0, &mut output, &[]) }
        .map_err(|e| dev("reading the output", e))?;
    let output = checked_output(output, out_len)?;
    for (name, size, buf) in &scratch {
        let mut guard = vec![0u8; GUARD];
        // SAFETY: the buffer holds `size + GUARD` bytes.
        unsafe { queue.enqueue_read_buffer(buf, CL_BLOCKING, *size, &mut guard, &[]) }
            .map_err(|e| dev(&format!("reading buffer '{name}'"), e))?;
        if guard_damage(&guard).is_some() {
            return Err(RunError::Trap(format!(
                "a kernel wrote past the end of buffer '{name}' ({size} bytes)"
            )));
        }
    }
    Ok(output)
}

/// A read-only buffer holding `bytes`.
fn host_buffer(
    context: &Context,
    bytes: &[u8],
) -> Result<Buffer<u8>, opencl3::error_codes::ClError> {
    buffer_of(context, CL_MEM_READ_ONLY, bytes)
}

/// A writable buffer of `len` zero bytes followed by the guard pattern.
fn guarded_buffer(
    context: &Context,
    len: usize,
) -> Result<Buffer<u8>, opencl3::error_codes::ClError> {
    let mut init = vec![0u8; len];
    init.extend_from_slice(guard_pattern());
    buffer_of(context, CL_MEM_READ_WRITE, &init)
}

/// A buffer of `flags` holding a copy of `bytes` (one zero byte for none:
/// OpenCL has no empty buffers).
fn buffer_of(
    context: &Context,
    flags: opencl3::memory::cl_mem_flags,
    bytes: &[u8],
) -> Result<Buffer<u8>, opencl3::error_codes::ClError> {
    let one = [0u8];
    let data: &[u8] = if bytes.is_empty() { &one } else { bytes };
    // SAFETY: COPY_HOST_PTR copies `data.len()` bytes from a live slice;
    // OpenCL only reads through the pointer.
    unsafe {
        Buffer::<u8>::create(
            context,
            flags | CL_MEM_COPY_HOST_PTR,
            data.len(),
            data.as_ptr() as *mut std::ffi::c_void,
        )
    }
}
