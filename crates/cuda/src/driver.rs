//! The CUDA driver API as the backend uses it: errors, a slot's context
//! and stream, device memory with its guard region, and a call's buffers.
//!
//! Why a module of its own: every raw driver handle lives here, behind
//! types that free it on drop in the right order (memory and modules
//! before their context, nothing freed while the stream may still use it),
//! so the compile and launch code never frees anything by hand.

use accelhub_device::kernel_host::{guard_pattern, GUARD};
use cudarc::driver::result::DriverError;
use cudarc::driver::{result as cu, sys};
use std::ffi::CStr;

/// A CUDA error as `NAME: description`.
pub(crate) fn cu_err(e: DriverError) -> String {
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
pub(crate) struct SlotContext {
    ctx: sys::CUcontext,
    pub(crate) stream: sys::CUstream,
}

impl SlotContext {
    pub(crate) fn create(device: sys::CUdevice) -> Result<SlotContext, String> {
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
    pub(crate) fn enter(&self) -> Result<(), String> {
        // SAFETY: the context is alive until `self` drops.
        unsafe { cu::ctx::set_current(self.ctx) }
            .map_err(|e| format!("entering the slot's context: {}", cu_err(e)))
    }

    pub(crate) fn synchronize(&self) -> Result<(), DriverError> {
        // SAFETY: the stream belongs to this live context.
        unsafe { cu::stream::synchronize(self.stream) }
    }

    /// Whether the context is still usable after an error: a sticky error
    /// comes back from every later call, so also from a synchronisation.
    pub(crate) fn is_broken(&self, e: &DriverError) -> bool {
        if is_sticky(e) {
            return true;
        }
        self.enter().is_err() || cu::ctx::synchronize().is_err()
    }
}

// SAFETY: CUDA driver handles may be used from any thread once their
// context is current there; a slot's context is used only under the
// slot's mutex, and made current first.
unsafe impl Send for SlotContext {}

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

/// A slot's own context and stream; `None` after a failed rebuild, created
/// again on next use.
pub struct CudaSlot {
    pub(crate) context: Option<SlotContext>,
}

/// Device memory: `len` bytes of data then the guard region. Freed on
/// drop, which must happen with its context current and nothing queued
/// that uses it (see `CallMem`).
pub struct DeviceBuf {
    pub(crate) ptr: sys::CUdeviceptr,
    pub(crate) len: usize,
}

impl DeviceBuf {
    /// `data` on the device, then the guard pattern.
    pub(crate) fn from_bytes(stream: sys::CUstream, data: &[u8]) -> Result<DeviceBuf, String> {
        DeviceBuf::new(stream, data.len(), Some(data))
    }

    /// `len` zero bytes on the device, then the guard pattern.
    pub(crate) fn zeroed(stream: sys::CUstream, len: usize) -> Result<DeviceBuf, String> {
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
    pub(crate) unsafe fn read_guard(
        &self,
        stream: sys::CUstream,
        out: &mut [u8],
    ) -> Result<(), DriverError> {
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
pub(crate) struct CallMem {
    pub(crate) stream: sys::CUstream,
    pub(crate) bufs: Vec<DeviceBuf>,
}

impl Drop for CallMem {
    fn drop(&mut self) {
        // SAFETY: the slot's stream, alive while the slot is locked.
        let _ = unsafe { cu::stream::synchronize(self.stream) };
        self.bufs.clear();
    }
}

/// Whether the (already opened) driver library exports `name`: newer entry
/// points are probed before use, since calling a missing one panics.
pub(crate) fn driver_has(name: &CStr) -> bool {
    // SAFETY: called once libcuda is known to load; looks a symbol up.
    unsafe { sys::culib().get::<unsafe extern "C" fn()>(name).is_ok() }
}
