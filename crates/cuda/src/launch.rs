//! Running a planned call in a slot: the call's buffers, the launch of
//! each kernel (grid and block, parameters, dynamic shared memory), reading
//! the output and every guard back, and resetting a slot whose context a
//! fault left unusable.
//!
//! Why a module of its own: this is the part with the most `unsafe` (raw
//! parameter arrays, asynchronous copies into host memory), kept apart so
//! its invariants (nothing queued outlives the memory it uses) can be read
//! in one place.

use crate::driver::{cu_err, CallMem, DeviceBuf, SlotContext};
use crate::Cuda;
use accelhub_device::kernel_host::{
    arg_name, checked_output, guard_damage, InSlot, Job, RunError, Slot, GUARD,
};
use accelhub_domain::kernel::PlannedArg;
use cudarc::driver::result::DriverError;
use cudarc::driver::{result as cu, sys};
use std::ffi::c_void;

/// Dynamic shared memory a kernel gets without opting in.
const DEFAULT_SHARED: u64 = 48 * 1024;

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

impl Cuda {
    /// Run `job`'s kernels in `slot` (its context current), which holds
    /// the job's program and objects; the output, or why not.
    pub(crate) fn run_plan(
        &self,
        slot: InSlot<'_, Cuda>,
        job: &Job<'_>,
    ) -> Result<Vec<u8>, RunError> {
        let plan = job.plan;
        let device = self.device(slot.device).map_err(RunError::device)?;
        let Some(context) = slot.state.context.as_ref() else {
            return Err(RunError::device("the slot lost its context"));
        };
        let stream = context.stream;
        // A CUDA error: `broken` when the context is now unusable.
        let dev = |what: &str, e: DriverError| RunError::Device {
            message: format!("{what}: {}", cu_err(e)),
            broken: context.is_broken(&e),
        };
        let alloc = |what: &str, e: String| RunError::device(format!("allocating {what}: {e}"));

        // The resident objects the kernels take: name, device pointer,
        // length and key.
        let mut objects: Vec<(&str, sys::CUdeviceptr, usize, &str)> = Vec::new();
        for (name, sha) in job.objects {
            match slot.resident.get(sha) {
                Some(buf) => objects.push((name.as_str(), buf.ptr, buf.len, sha.as_str())),
                None => {
                    return Err(RunError::device(format!(
                        "object '{name}' was expected resident and is not"
                    )))
                }
            }
        }

        // Host memory the results are copied into: declared before the device
        // buffers so that, on every path, `CallMem` waits for the stream
        // before these go away.
        let out_len = usize::try_from(plan.output_bytes)
            .map_err(|_| RunError::Input("the output is too large".into()))?;
        let mut output = vec![0u8; out_len + GUARD];
        // Guards: input, (output: read with it), scratch buffers, objects.
        let mut guards = vec![vec![0u8; GUARD]; 2 + plan.buffers.len() + objects.len()];

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
                DeviceBuf::zeroed(stream, size)
                    .map_err(|e| alloc(&format!("buffer '{name}'"), e))?,
            );
        }
        let (input_ptr, output_ptr) = (mem.bufs[0].ptr, mem.bufs[1].ptr);

        job.each_launch(&slot.program.kernels, |function, launch, step| {
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
                let what = || arg_name(launch, step, a);
                match arg {
                    PlannedArg::Input => cells.push(input_ptr),
                    PlannedArg::Output => cells.push(output_ptr),
                    PlannedArg::Buffer(b) => match mem.bufs.get(2 + *b) {
                        Some(buf) => cells.push(buf.ptr),
                        None => {
                            return Err(RunError::device(format!("{}: no such buffer", what())))
                        }
                    },
                    PlannedArg::Object(name) => match objects.iter().find(|o| o.0 == name) {
                        Some((_, ptr, _, _)) => cells.push(*ptr),
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
                            return Err(RunError::device(format!(
                                "{}: a {}-byte scalar",
                                what(),
                                v.len()
                            )));
                        }
                        let mut cell = [0u8; 8];
                        cell[..v.len()].copy_from_slice(v);
                        cells.push(u64::from_ne_bytes(cell));
                    }
                }
            }
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
            Ok(())
        })?;

        // Read the output with its guard, and every other guard.
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
            for ((_, ptr, len, _), guard) in
                objects.iter().zip(guards.iter_mut().skip(mem.bufs.len()))
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

        let output = checked_output(output, out_len)?;
        for ((name, size), guard) in plan.buffers.iter().zip(&guards[2..mem.bufs.len()]) {
            if guard_damage(guard).is_some() {
                return Err(RunError::Trap(format!(
                    "a kernel wrote past the end of buffer '{name}' ({size} bytes)"
                )));
            }
        }
        if guard_damage(&guards[0]).is_some() {
            return Err(RunError::Trap(format!(
                "a kernel wrote past the end of the input buffer ({} bytes)",
                job.input.len()
            )));
        }
        for ((name, _, len, sha), guard) in objects.iter().zip(&guards[mem.bufs.len()..]) {
            if guard_damage(guard).is_some() {
                drop(mem);
                slot.resident.remove(&sha.to_string());
                return Err(RunError::Trap(format!(
                    "a kernel wrote past the end of object '{name}' ({len} bytes); its \
                     device copy is dropped"
                )));
            }
        }
        Ok(output)
    }

    /// After a failed call: a context left unusable (a sticky error) is
    /// destroyed and created again, with the slot's programs and resident
    /// data, which the next call loads again.
    pub(crate) fn reset(&self, slot: &mut Slot<Cuda>, index: usize, error: RunError) -> RunError {
        let RunError::Device {
            message,
            broken: true,
        } = error
        else {
            return error;
        };
        let outcome = match self.rebuild(slot) {
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
        RunError::Device {
            message: format!("{message}; {outcome}"),
            broken: true,
        }
    }

    /// Destroy the slot's context (after a sticky error) and create a new
    /// one; its modules and memory go first, with the old context current.
    fn rebuild(&self, slot: &mut Slot<Cuda>) -> Result<(), String> {
        if let Some(c) = &slot.state.context {
            let _ = c.enter();
        }
        slot.programs.clear();
        slot.resident.clear();
        slot.state.context = None;
        let device = self.device(slot.device)?;
        slot.state.context = Some(SlotContext::create(device.ordinal)?);
        Ok(())
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
}
