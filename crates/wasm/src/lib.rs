//! Device class `wasm`: vendor IP as WASI preview 1 command modules, run in
//! wasmtime.
//!
//! A module is compiled once per image and kept as an [`InstancePre`]; every
//! call instantiates it afresh from the pooling allocator, so calls share
//! nothing. The call's input is stdin, its output stdout, its parameters one
//! JSON object in `ACCELHUB_PARAMS`, its log stderr. Each call runs under a
//! wall-clock deadline (epoch interruption), a linear-memory cap (a resource
//! limiter) and an output cap. Modules get no sockets, no inherited
//! environment and no preopened directory, except `/outputs` in a job that
//! offers named outputs (`[[output]]` in `ip.toml`): a fresh directory per
//! call where the module writes `/outputs/NAME`, each capped at the output
//! limit (checked as it runs, and again when it ends).
//!
//! Calls run on the async runtime's own threads (wasmtime async, on fiber
//! stacks from the pool): no hop to a blocking thread per call. Every epoch
//! tick a call yields, so a long or hostile call shares its thread with the
//! API instead of holding it; compilation, which is long and never yields,
//! runs on a blocking thread. A call blocked in a host call (a sleep, a read
//! of stdin) runs no guest code, so no epoch fires: a watchdog beside it
//! enforces the deadline and the cancel there.

mod stdin;
mod stdout;

use accelhub_device::output::{NamedFiles, OutputWriter};
use accelhub_device::{
    Backend, CallControl, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError,
    LoadReport,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The device class this backend serves.
pub const CLASS: &str = "wasm";

/// How often the epoch advances; the granularity of deadlines and cancels.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How often a call blocked in a host call checks its deadline and cancel.
const WATCHDOG_TICK: Duration = Duration::from_millis(20);

/// Most of an IP's stderr kept per call.
const LOG_CAP: usize = 256 * 1024;

/// Configuration of the wasm device on one node.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Calls that may run at once.
    pub slots: usize,
    /// The largest linear memory any call may have (operator's maximum).
    pub max_memory_bytes: u64,
    /// Compiled images kept in memory.
    pub image_cache: usize,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            slots: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4)
                .max(4),
            max_memory_bytes: 4 << 30,
            image_cache: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WasmSetupError {
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
}

struct State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Caps linear memory and remembers whether the cap was hit.
struct Limiter {
    max_memory: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Why the epoch callback stopped a call.
#[derive(Debug, thiserror::Error)]
enum Interrupt {
    #[error("deadline reached")]
    Deadline,
    #[error("cancelled")]
    Cancelled,
    #[error("the named outputs outgrew their limit")]
    Outputs,
}

/// Epoch ticks between checks of the named outputs' directory.
const OUTPUTS_CHECK_TICKS: u32 = 32;

struct CachedImage {
    pre: InstancePre<State>,
    last_used: AtomicU64,
}

pub struct WasmBackend {
    engine: Engine,
    linker: Arc<Linker<State>>,
    images: Mutex<HashMap<ImageId, Arc<CachedImage>>>,
    clock: AtomicU64,
    slots: Arc<Semaphore>,
    config: WasmConfig,
    compiles: AtomicU64,
    _ticker: Ticker,
}

/// Advances the engine's epoch until dropped.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl WasmBackend {
    pub fn new(config: WasmConfig) -> Result<Self, WasmSetupError> {
        let slots = config.slots.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Every call needs one core instance and one memory; verification
        // and compilation headroom come on top.
        let instances = (slots as u32) * 2 + 4;
        pool.total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .total_stacks(instances)
            .total_component_instances(0)
            .max_memories_per_module(1)
            .max_memory_size(config.max_memory_bytes as usize)
            // Reset small memories with memset rather than madvise: no
            // page-table churn (and TLB shootdowns) between calls.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);
        let mut cfg = Config::new();
        cfg.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .parallel_compilation(true);
        let engine = Engine::new(&cfg).map_err(|e| WasmSetupError::Engine(format!("{e:#}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| WasmSetupError::Engine(format!("{e:#}")))?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| WasmSetupError::Engine(format!("epoch thread: {e}")))?;
        }

        Ok(WasmBackend {
            engine,
            linker: Arc::new(linker),
            images: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(slots)),
            config,
            compiles: AtomicU64::new(0),
            _ticker: Ticker { stop },
        })
    }

    /// Modules compiled since start (cold loads).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    fn get(&self, image: &ImageId) -> Option<Arc<CachedImage>> {
        let images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        let img = images.get(image)?.clone();
        img.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(img)
    }

    fn insert(&self, image: ImageId, pre: InstancePre<State>) {
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        if images.len() >= self.config.image_cache && !images.contains_key(&image) {
            if let Some(oldest) = images
                .iter()
                .min_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            {
                images.remove(&oldest);
            }
        }
        images.insert(
            image,
            Arc::new(CachedImage {
                pre,
                last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
            }),
        );
    }
}

fn invalid(message: String) -> LoadError {
    LoadError::Invalid {
        class: CLASS.into(),
        message,
    }
}

#[async_trait]
impl Backend for WasmBackend {
    fn class(&self) -> &str {
        CLASS
    }

    fn slots(&self) -> usize {
        self.config.slots
    }

    fn is_loaded(&self, image: &ImageId) -> bool {
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(image)
    }

    fn status(&self) -> DeviceStatus {
        let mut images: Vec<ImageId> = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        images.sort();
        DeviceStatus {
            class: CLASS.into(),
            slots: self.config.slots,
            busy: self
                .config
                .slots
                .saturating_sub(self.slots.available_permits()),
            images,
            resident: Vec::new(),
            hardware: Vec::new(),
        }
    }

    async fn load(&self, image: &ImageId, artifact: Bytes) -> Result<LoadReport, LoadError> {
        let start = Instant::now();
        if self.get(image).is_some() {
            return Ok(LoadReport {
                cached: true,
                duration: start.elapsed(),
            });
        }
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let pre = tokio::task::spawn_blocking(move || -> Result<InstancePre<State>, LoadError> {
            let module = Module::new(&engine, &artifact).map_err(|e| {
                invalid(format!(
                    "not a valid WebAssembly module: {}",
                    root_cause(&e)
                ))
            })?;
            match module.get_export("_start") {
                Some(wasmtime::ExternType::Func(_)) => {}
                _ => {
                    return Err(invalid(
                        "the module exports no `_start` function: build a WASI command \
                         (a `bin` crate for wasm32-wasip1)"
                            .into(),
                    ))
                }
            }
            linker
                .instantiate_pre(&module)
                .map_err(|e| invalid(format!("cannot link the module: {}", root_cause(&e))))
        })
        .await
        .map_err(|e| invalid(format!("compilation task failed: {e}")))??;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        self.insert(image.clone(), pre);
        Ok(LoadReport {
            cached: false,
            duration: start.elapsed(),
        })
    }

    async fn call(&self, image: &ImageId, call: CallInput) -> Result<CallOutput, CallError> {
        let img = self
            .get(image)
            .ok_or_else(|| CallError::NotLoaded(image.to_string()))?;
        if let Some(name) = call.objects.keys().next() {
            // The sandbox sees stdin only; object inputs are for devices
            // that hold resident data.
            return Err(CallError::Input(format!(
                "the wasm device takes no object inputs (got '{name}')"
            )));
        }
        let _permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CallError::Device("the wasm device is shutting down".into()))?;
        run(&self.engine, &img.pre, call).await
    }
}

/// Resolves when the call must stop although its guest is not running:
/// its deadline has passed or it was cancelled.
async fn watchdog(control: &CallControl, deadline: Instant) -> Interrupt {
    let mut tick = tokio::time::interval(WATCHDOG_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if control.cancel.load(Ordering::Relaxed) {
            return Interrupt::Cancelled;
        }
        if Instant::now() >= deadline {
            return Interrupt::Deadline;
        }
    }
}

fn root_cause(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}

async fn run(
    engine: &Engine,
    pre: &InstancePre<State>,
    call: CallInput,
) -> Result<CallOutput, CallError> {
    let limits = call.limits;
    let writer = OutputWriter::new(&call.output, limits.output_bytes)
        .map_err(|e| CallError::Device(format!("cannot create the call's output: {e}")))?;
    let stdout = stdout::Stdout::new(writer);
    let stderr = MemoryOutputPipe::new(LOG_CAP);
    let params = serde_json::Value::Object(call.params).to_string();
    let stdin = stdin::CountingInput::new(call.input, call.control.clone());
    let named = match call.named_outputs.is_empty() {
        true => None,
        false => Some(Arc::new(
            NamedFiles::new(call.named_outputs, limits.output_bytes).map_err(|e| {
                CallError::Device(format!("cannot make the named outputs' directory: {e}"))
            })?,
        )),
    };

    let mut builder = WasiCtxBuilder::new();
    builder
        .stdin(stdin.clone())
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .arg("ip")
        .env("ACCELHUB_PARAMS", &params);
    if let Some(n) = &named {
        builder
            .preopened_dir(n.path(), "/outputs", FsPerms::ReadWrite)
            .map_err(|e| CallError::Device(format!("cannot offer /outputs: {e:#}")))?;
    }
    let wasi = builder.build_p1();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            limiter: Limiter {
                max_memory: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                hit: false,
            },
        },
    );
    store.limiter(|s| &mut s.limiter);
    let deadline = Instant::now() + Duration::from_millis(limits.timeout_ms);
    let control: Arc<CallControl> = call.control;
    let watch = control.clone();
    let watched = named.clone();
    let mut ticks = 0u32;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if control.cancel.load(Ordering::Relaxed) {
            return Err(wasmtime::Error::new(Interrupt::Cancelled));
        }
        if Instant::now() >= deadline {
            return Err(wasmtime::Error::new(Interrupt::Deadline));
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(OUTPUTS_CHECK_TICKS)
            && watched.as_ref().is_some_and(|n| n.overgrown())
        {
            return Err(wasmtime::Error::new(Interrupt::Outputs));
        }
        // Let the executor run other work every tick: a long call shares
        // its thread instead of holding it.
        Ok(UpdateDeadline::Yield(1))
    });

    let started = Instant::now();
    let execution = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    };
    // Epoch interruption only fires while guest code runs. A guest blocked
    // in a host call (a `poll_oneoff` sleep, a read of stdin that waits for
    // the uploader) is an awaiting future instead: the watchdog ends it by
    // dropping it, which unwinds the fiber, and the slot is free again.
    let result = tokio::select! {
        r = execution => r,
        i = watchdog(&watch, deadline) => Err(wasmtime::Error::new(i)),
    };
    let device_time = started.elapsed();
    let memory_hit = store.data().limiter.hit;
    drop(store);
    let log = stderr
        .try_into_inner()
        .map(|b| b.freeze())
        .unwrap_or_default();
    let output_hit = stdout.exceeded();
    let disk_full = stdout.disk_full();

    let err = match result {
        Ok(()) => None,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => None,
            _ => Some(e),
        },
    };
    let Some(err) = err else {
        let output = stdout
            .finish()
            .map_err(|e| CallError::output(e, log.clone()))?;
        let named = match named.and_then(Arc::into_inner) {
            Some(n) => n
                .take()
                .map_err(|e| e.into_call_error(limits.output_bytes, log.clone()))?,
            None => Default::default(),
        };
        return Ok(CallOutput {
            output,
            named,
            log,
            device_time,
        });
    };
    if let Some(i) = err.downcast_ref::<Interrupt>() {
        return Err(match i {
            Interrupt::Deadline => CallError::Deadline {
                timeout_ms: limits.timeout_ms,
                log,
            },
            Interrupt::Cancelled => CallError::Cancelled { log },
            Interrupt::Outputs => CallError::OutputTooLarge {
                limit_bytes: limits.output_bytes,
                log,
            },
        });
    }
    if let Some(e) = stdin.error() {
        return Err(CallError::Input(e));
    }
    if memory_hit {
        return Err(CallError::Memory {
            limit_bytes: limits.memory_bytes,
            log,
        });
    }
    if disk_full {
        return Err(CallError::StorageFull { log });
    }
    if output_hit {
        return Err(CallError::OutputTooLarge {
            limit_bytes: limits.output_bytes,
            log,
        });
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Err(CallError::Exit { code: exit.0, log });
    }
    let message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    Err(CallError::Trap { message, log })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rejects_garbage_with_a_clear_error() {
        let b = WasmBackend::new(WasmConfig {
            slots: 1,
            max_memory_bytes: 64 << 20,
            image_cache: 2,
        })
        .unwrap();
        let err = b
            .load(&ImageId("x".into()), Bytes::from_static(b"not wasm"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not a valid WebAssembly module"),
            "{err}"
        );
        assert!(!b.is_loaded(&ImageId("x".into())));
        // A valid module without `_start` is refused at load time.
        let empty = Bytes::from_static(b"\0asm\x01\0\0\0");
        let err = b.load(&ImageId("y".into()), empty).await.unwrap_err();
        assert!(err.to_string().contains("_start"), "{err}");
    }
}
