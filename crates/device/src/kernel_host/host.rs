//! The [`KernelHost`]: the slot pool, the call flow and status over a
//! [`KernelRuntime`]. The module above says what a call goes through, and
//! why there is one host for every kernel backend.

use super::{
    lock, Discovered, DiscoveryError, InSlot, Job, KernelHostConfig, KernelImage, KernelRuntime,
    RunError, Slot,
};
use crate::{
    Backend, CallError, CallInput, CallOutput, DeviceStatus, ImageId, LoadError, LoadReport,
    ObjectArg, Output, OutputSink,
};
use accelhub_domain::kernel::{CallPlan, KernelBundle, PlannedArg};
use accelhub_domain::DeviceHardware;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kernel device class: a runtime's devices behind the slot pool and
/// the call flow every kernel backend shares.
pub struct KernelHost<R: KernelRuntime> {
    inner: Arc<Shared<R>>,
}

struct Shared<R: KernelRuntime> {
    runtime: R,
    config: KernelHostConfig,
    hardware: Vec<DeviceHardware>,
    slots: Vec<Mutex<Slot<R>>>,
    /// What each slot holds, readable while the slot runs a call.
    held: Mutex<Vec<Held>>,
    busy: Mutex<Vec<bool>>,
    permits: Arc<tokio::sync::Semaphore>,
    images: Mutex<std::collections::HashMap<ImageId, Arc<KernelImage>>>,
    /// Use counter for least-recently-used choices.
    tick: AtomicU64,
}

#[derive(Default, Clone)]
struct Held {
    images: Vec<ImageId>,
    resident: Vec<String>,
    last_used: u64,
}

/// A slot taken for one call or load; freed when dropped.
struct SlotGuard<R: KernelRuntime> {
    shared: Arc<Shared<R>>,
    index: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<R: KernelRuntime> Drop for SlotGuard<R> {
    fn drop(&mut self) {
        lock(&self.shared.busy)[self.index] = false;
    }
}

/// What a call's kernels produced.
struct Ran {
    output: Vec<u8>,
    device_time: Duration,
    log: String,
}

impl<R: KernelRuntime> KernelHost<R> {
    /// Open the runtime and take every device it reports; the error says
    /// why this node has no device of the class.
    pub fn discover(config: KernelHostConfig) -> Result<KernelHost<R>, DiscoveryError> {
        let found = R::discover(&config)?;
        Ok(KernelHost::new(config, found))
    }

    pub fn new(config: KernelHostConfig, found: Discovered<R>) -> KernelHost<R> {
        let n = found.slots.len();
        KernelHost {
            inner: Arc::new(Shared {
                runtime: found.runtime,
                config,
                hardware: found.hardware,
                slots: found.slots.into_iter().map(Mutex::new).collect(),
                held: Mutex::new(vec![Held::default(); n]),
                busy: Mutex::new(vec![false; n]),
                permits: Arc::new(tokio::sync::Semaphore::new(n)),
                images: Mutex::new(Default::default()),
                tick: AtomicU64::new(0),
            }),
        }
    }

    /// The devices found, as the fleet view shows them.
    pub fn hardware(&self) -> &[DeviceHardware] {
        &self.inner.hardware
    }

    /// The runtime underneath, for what only it can say.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }
}

impl<R: KernelRuntime> Shared<R> {
    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// Take the free slot that best suits `image` and the resident data
    /// `objects`: one that holds both, then the image, then the least
    /// recently used.
    async fn acquire(self: &Arc<Self>, image: &ImageId, objects: &[String]) -> SlotGuard<R> {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("the slot semaphore is never closed"),
        };
        let mut busy = lock(&self.busy);
        let held = lock(&self.held);
        // A permit means a free slot.
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
            shared: self.clone(),
            index,
            _permit: permit,
        }
    }

    /// Mirror what slot `index` holds now.
    fn record(&self, index: usize, slot: &Slot<R>) {
        let mut held = lock(&self.held);
        held[index] = Held {
            images: slot.programs.keys().cloned().collect(),
            resident: slot.resident.keys().cloned().collect(),
            last_used: self.next_tick(),
        };
    }

    /// Make sure `slot` holds `image`. Returns the time it took, or `None`
    /// when the slot already held it.
    fn program(
        &self,
        slot: &mut Slot<R>,
        image: &ImageId,
        entry: &KernelImage,
    ) -> Result<Option<Duration>, String> {
        let tick = self.next_tick();
        if slot.programs.touch(image, tick) {
            return Ok(None);
        }
        let started = Instant::now();
        let spec = &entry.bundle.spec;
        if spec.build_options.contains('\0') {
            return Err("build_options contains a NUL character".into());
        }
        if let Some(step) = spec.kernels.iter().find(|k| {
            k.name.is_empty()
                || !k
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return Err(format!("'{}' is not a kernel name", step.name));
        }
        let program = self.runtime.build(slot, entry)?;
        slot.programs
            .insert(image.clone(), program, tick, self.config.programs_per_slot);
        Ok(Some(started.elapsed()))
    }

    /// Load `image` into slot `index` (on a blocking thread).
    fn load(
        &self,
        index: usize,
        image: &ImageId,
        entry: &KernelImage,
    ) -> Result<Option<Duration>, String> {
        let mut slot = lock(&self.slots[index]);
        let r = match self.runtime.enter(&mut slot, index) {
            Ok(()) => self.program(&mut slot, image, entry),
            Err(e) => Err(e),
        };
        self.record(index, &slot);
        r
    }

    /// Run a call on slot `index` (on a blocking thread).
    fn run(
        &self,
        index: usize,
        entry: &KernelImage,
        job: &Job<'_>,
        objects: &[(String, String, Option<Bytes>)],
    ) -> Result<Ran, RunError> {
        let mut slot = lock(&self.slots[index]);
        let r = match self.runtime.enter(&mut slot, index) {
            Ok(()) => self.run_in(index, &mut slot, entry, job, objects),
            Err(e) => Err(RunError::device(e)),
        };
        let r = r.map_err(|e| self.runtime.recover(&mut slot, index, e));
        self.record(index, &slot);
        r
    }

    fn run_in(
        &self,
        index: usize,
        slot: &mut Slot<R>,
        entry: &KernelImage,
        job: &Job<'_>,
        objects: &[(String, String, Option<Bytes>)],
    ) -> Result<Ran, RunError> {
        let mut log = String::new();
        let programmed = self
            .program(slot, job.image, entry)
            .map_err(|e| RunError::device(format!("programming the device failed: {e}")))?;
        if let Some(d) = programmed {
            log.push_str(&format!(
                "accelhub: programmed slot {index} in {:.1} ms\n",
                d.as_secs_f64() * 1e3
            ));
        }
        self.record(index, slot);
        let started = Instant::now();

        // Resident data first: it outlives the call.
        let tick = self.next_tick();
        for (name, sha, bytes) in objects {
            if slot.resident.touch(sha, tick) {
                continue;
            }
            let Some(bytes) = bytes else {
                return Err(RunError::device(format!(
                    "object '{name}' was expected resident and is not"
                )));
            };
            let buffer = self
                .runtime
                .upload(slot, bytes)
                .map_err(|e| RunError::device(format!("allocating object '{name}': {e}")))?;
            slot.resident
                .insert(sha.clone(), buffer, tick, self.config.resident_per_slot);
            log.push_str(&format!(
                "accelhub: object '{name}' ({} bytes) now resident in slot {index}\n",
                bytes.len()
            ));
        }
        self.record(index, slot);

        let Slot {
            device,
            programs,
            resident,
            state,
        } = slot;
        let Some(program) = programs.get(job.image) else {
            return Err(RunError::device("the program was evicted mid-call"));
        };
        let in_slot = InSlot {
            device: *device,
            state,
            program,
            resident,
        };
        let output = self.runtime.launch(in_slot, job)?;
        Ok(Ran {
            output,
            device_time: started.elapsed(),
            log,
        })
    }
}

/// The object inputs the planned kernels take, by parameter name: each
/// must be given (the caller's mistake otherwise).
fn object_inputs(
    plan: &CallPlan,
    given: &BTreeMap<String, ObjectArg>,
) -> Result<Vec<(String, ObjectArg)>, CallError> {
    let names: BTreeSet<&String> = plan
        .launches
        .iter()
        .flat_map(|l| l.args.iter())
        .filter_map(|a| match a {
            PlannedArg::Object(n) => Some(n),
            _ => None,
        })
        .collect();
    names
        .into_iter()
        .map(|n| match given.get(n) {
            Some(o) => Ok((n.clone(), o.clone())),
            None => Err(CallError::Invalid(format!(
                "the object input '{n}' is required"
            ))),
        })
        .collect()
}

/// The device memory a call needs: input, output, scratch buffers and
/// objects.
fn device_bytes(input: u64, plan: &CallPlan, objects: &[(String, ObjectArg)]) -> u64 {
    input
        .saturating_add(plan.output_bytes)
        .saturating_add(
            plan.buffers
                .iter()
                .map(|(_, s)| *s)
                .fold(0, u64::saturating_add),
        )
        .saturating_add(
            objects
                .iter()
                .map(|(_, o)| o.size)
                .fold(0, u64::saturating_add),
        )
}

/// A failed call's error as callers see it.
fn call_error(e: RunError) -> CallError {
    match e {
        RunError::Device { message, .. } => CallError::Device(message),
        RunError::Trap(message) => CallError::Trap {
            message,
            log: Bytes::new(),
        },
        RunError::Input(m) => CallError::Input(m),
        RunError::Cancelled => CallError::Cancelled { log: Bytes::new() },
    }
}

#[async_trait]
impl<R: KernelRuntime> Backend for KernelHost<R> {
    fn class(&self) -> &str {
        R::CLASS
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
            class: R::CLASS.into(),
            message,
        };
        let entry = Arc::new(KernelImage::new(
            KernelBundle::decode(&artifact).map_err(invalid)?,
        ));
        let guard = self.inner.acquire(image, &[]).await;
        let shared = self.inner.clone();
        let (id, e2) = (image.clone(), entry.clone());
        let programmed = tokio::task::spawn_blocking(move || {
            let r = shared.load(guard.index, &id, &e2);
            drop(guard);
            r
        })
        .await
        .map_err(|e| invalid(format!("the {} host thread failed: {e}", R::NAME)))?
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
            .store(input.len() as u64, Ordering::Relaxed);
        let plan = entry
            .bundle
            .spec
            .plan(input.len() as u64, &call.params, limits.output_bytes)
            .map_err(CallError::Invalid)?;
        let wanted = object_inputs(&plan, &call.objects)?;
        let needed = device_bytes(input.len() as u64, &plan, &wanted);
        if needed > limits.memory_bytes {
            return Err(CallError::Memory {
                limit_bytes: limits.memory_bytes,
                log: Bytes::from(format!(
                    "accelhub: this call needs {needed} bytes of device memory\n"
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

        let shared = self.inner.clone();
        let id = image.clone();
        let task = tokio::task::spawn_blocking(move || {
            let by_name: Vec<(String, String)> = objects
                .iter()
                .map(|(name, sha, _)| (name.clone(), sha.clone()))
                .collect();
            let job = Job {
                image: &id,
                spec: &entry.bundle.spec,
                plan: &plan,
                input: &input,
                objects: &by_name,
                control: &control,
            };
            let r = shared.run(guard.index, &entry, &job, &objects);
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
                    "the {} host thread failed: {e}",
                    R::NAME
                )))
            }
            Ok(Ok(r)) => r.map_err(call_error)?,
        };
        let output = match &call.output {
            OutputSink::Memory => Output::Bytes(Bytes::from(ran.output)),
            sink => {
                let sink = sink.clone();
                let limit = call.limits.output_bytes;
                tokio::task::spawn_blocking(move || {
                    let mut w = crate::output::OutputWriter::new(&sink, limit)?;
                    std::io::Write::write_all(&mut w, &ran.output)?;
                    w.finish()
                })
                .await
                .map_err(|e| CallError::Device(format!("writing the output: {e}")))?
                .map_err(|e| CallError::Device(format!("writing the output: {e}")))?
            }
        };
        Ok(CallOutput {
            output,
            named: Default::default(),
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
            class: R::CLASS.into(),
            slots: self.inner.slots.len(),
            busy: lock(&self.inner.busy).iter().filter(|b| **b).count(),
            images,
            resident,
            hardware: self.inner.hardware.clone(),
        }
    }
}
