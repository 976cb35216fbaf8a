//! Discovery: opening libcuda (and libnvrtc when present) at run time and
//! taking the devices it reports.
//!
//! Why with care: cudarc panics when a function of a library it cannot open
//! is called, so libcuda is probed for before `cuInit`, newer entry points
//! are looked up before use, and any panic from the bindings is caught as a
//! last resort. A node without the driver, without a device or with a
//! broken driver gets a [`DiscoveryError`] saying what to install or check.

use crate::driver::{cu_err, driver_has, SlotContext};
use crate::{Cuda, CudaSlot};
use accelhub_device::kernel_host::{
    Discovered, DiscoveryError, KernelHostConfig, KernelRuntime, Slot,
};
use accelhub_domain::DeviceHardware;
use cudarc::driver::result::DriverError;
use cudarc::driver::{result as cu, sys};
use cudarc::nvrtc;

/// What programming and launching need to know of a device.
#[derive(Debug, Clone)]
pub(crate) struct DeviceInfo {
    pub(crate) ordinal: sys::CUdevice,
    pub(crate) name: String,
    /// Compute capability (major, minor).
    pub(crate) capability: (i32, i32),
    /// Dynamic shared memory a block may opt in to.
    pub(crate) max_shared: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct NvrtcInfo {
    pub(crate) version: (i32, i32),
    /// The virtual architectures it compiles for (`90` for `compute_90`),
    /// when it says (11.2+).
    pub(crate) archs: Option<Vec<i32>>,
}

/// Open libcuda and take every device it reports; an error says why this
/// node has no CUDA device class. Never panics.
pub(crate) fn discover(config: &KernelHostConfig) -> Result<Discovered<Cuda>, DiscoveryError> {
    // One at a time, keeping the process's signal handlers (driver and
    // compiler libraries may install their own).
    let _signals = accelhub_device::SignalGuard::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open(config))) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(no_runtime(format!(
                "the CUDA libraries failed to load ({why}); reinstall the NVIDIA driver"
            )))
        }
    }
}

fn no_runtime(message: String) -> DiscoveryError {
    DiscoveryError::NoRuntime {
        runtime: Cuda::NAME,
        message,
    }
}

fn no_devices(message: String) -> DiscoveryError {
    DiscoveryError::NoDevices {
        runtime: Cuda::NAME,
        message,
    }
}

fn api(message: String) -> DiscoveryError {
    DiscoveryError::Api {
        runtime: Cuda::NAME,
        message,
    }
}

fn open(config: &KernelHostConfig) -> Result<Discovered<Cuda>, DiscoveryError> {
    // SAFETY: only tries to open the library.
    if !unsafe { sys::is_culib_present() } {
        return Err(no_runtime(
            "libcuda not found (install the NVIDIA driver; its libcuda.so.1 must be on the \
             library path, e.g. in a container run with the NVIDIA container toolkit)"
                .into(),
        ));
    }
    if let Err(e) = cu::init() {
        if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE {
            return Err(no_devices(format!(
                " ({}; is CUDA_VISIBLE_DEVICES set?)",
                cu_err(e)
            )));
        }
        return Err(no_runtime(format!(
            "cuInit failed ({}): check that the NVIDIA kernel module is loaded and matches \
             the driver library, and that this process can open /dev/nvidia*",
            cu_err(e)
        )));
    }
    let mut version = 0;
    // SAFETY: a valid out pointer.
    let _ = unsafe { sys::cuDriverGetVersion(&mut version) };
    let runtime = format!("CUDA driver {}.{}", version / 1000, (version % 1000) / 10);
    let count = cu::device::get_count().map_err(|e| api(cu_err(e)))?;
    if count <= 0 {
        return Err(no_devices(String::new()));
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
        let api_call = |what: &str, e: DriverError| api(format!("{what}: {}", cu_err(e)));
        let dev = cu::device::get(ordinal).map_err(|e| api_call("cuDeviceGet", e))?;
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
            let context = SlotContext::create(dev).map_err(api)?;
            slots.push(Slot::new(
                index,
                CudaSlot {
                    context: Some(context),
                },
            ));
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
    Ok(Discovered {
        runtime: Cuda {
            devices,
            nvrtc,
            param_info: driver_has(c"cuFuncGetParamInfo"),
            driver: runtime,
        },
        hardware,
        slots,
    })
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

#[cfg(test)]
mod tests {
    use crate::{CudaBackend, CudaConfig};
    use accelhub_device::kernel_host::DiscoveryError;
    use cudarc::driver::sys;

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
                        assert!(matches!(e, DiscoveryError::NoRuntime { .. }), "{e:?}");
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
