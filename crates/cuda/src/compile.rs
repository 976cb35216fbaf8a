//! Programs: CUDA C compiled by NVRTC, or PTX, cubins and fatbins loaded
//! as they are, and the kernels looked up (and checked against `ip.toml`)
//! in a slot's context.
//!
//! Why a module of its own: what a program is and how it is checked is the
//! part of CUDA most likely to change with a new toolkit (new binary
//! formats, name expressions for C++ kernels), and none of it touches a
//! call's memory or launches.

use crate::driver::cu_err;
use crate::Cuda;
use accelhub_device::kernel_host::{KernelImage, Slot};
use accelhub_domain::kernel::{Arg, ProgramFormat};
use cudarc::driver::result::DriverError;
use cudarc::driver::{result as cu, sys};
use cudarc::nvrtc;
use std::borrow::Cow;
use std::ffi::{c_void, CString};
use std::sync::Arc;

/// A loaded module and its kernels, one per step. Unloaded on drop, with
/// its context current.
pub struct Loaded {
    module: sys::CUmodule,
    pub(crate) kernels: Vec<Function>,
}

#[derive(Clone, Copy)]
pub(crate) struct Function {
    pub(crate) handle: sys::CUfunction,
    /// The most threads per block this kernel can run on this device.
    pub(crate) max_threads: u32,
}

// SAFETY: module and function handles may be used from any thread once
// their context is current there; a slot's programs are used only under
// the slot's mutex, with its context current.
unsafe impl Send for Loaded {}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: loaded in the context current now, unloaded only here.
        let _ = unsafe { sys::cuModuleUnload(self.module) };
    }
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

impl Cuda {
    /// The PTX, cubin or binary image of `entry` for device `device`.
    fn image_for(&self, device: usize, entry: &KernelImage) -> Result<Arc<Vec<u8>>, String> {
        let spec = &entry.bundle.spec;
        if spec.format == ProgramFormat::Binary {
            return Ok(Arc::new(binary_image(&entry.bundle.program)?.into_owned()));
        }
        if let Some(ptx) = entry.compiled(device) {
            return Ok(ptx);
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
        let info = self.device(device)?;
        let options = nvrtc_options(&spec.build_options, info.capability, nv.archs.as_deref());
        let ptx = Arc::new(compile(source, &options)?);
        entry.keep_compiled(device, ptx.clone());
        Ok(ptx)
    }

    /// Compile or load `entry`'s program in `slot` (its context current)
    /// and find its kernels, checking them against `ip.toml` where the
    /// driver can say.
    pub(crate) fn load_program(
        &self,
        slot: &mut Slot<Cuda>,
        entry: &KernelImage,
    ) -> Result<Loaded, String> {
        let spec = &entry.bundle.spec;
        let info = self.device(slot.device)?;
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
                    self.driver,
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
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
