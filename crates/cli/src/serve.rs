//! `accelhub serve`: API, scheduler and a local agent in one process, on
//! SQLite and a local object directory.

use accelhub_core::jobs::ControlLoops;
use accelhub_core::{CoreConfig, LocalExecutor, Package, Platform};
use accelhub_device::Backend;
use accelhub_domain::Limits;
use accelhub_native::{NativeBackend, NativeConfig};
use accelhub_objects::{LocalDirStore, ObjectStore, Sealer};
use accelhub_opencl::{OpenClBackend, OpenClConfig};
use accelhub_s3::S3Store;
use accelhub_store::{SqlStore, Store};
use accelhub_wasm::{WasmBackend, WasmConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory for the database, objects and keys.
    #[arg(long, env = "ACCELHUB_DATA", default_value = ".accelhub")]
    pub data: PathBuf,
    /// Metadata database: a PostgreSQL URL (postgres://user@host/db) for a
    /// control plane shared by several `serve` processes. Default: SQLite
    /// in the data directory.
    #[arg(long, env = "ACCELHUB_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Object store: s3://BUCKET[/PREFIX]?endpoint=URL&region=R for an
    /// S3-compatible service (credentials from AWS_* variables). Default:
    /// the data directory.
    #[arg(long, env = "ACCELHUB_OBJECTS")]
    pub objects: Option<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ACCELHUB_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Master key for artifacts at rest, 64 hex digits. Default: generated
    /// into DATA/master.key on first start.
    #[arg(long, env = "ACCELHUB_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Largest sync call input, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_sync_bytes: u64,
    /// Largest object upload, in bytes.
    #[arg(long, default_value_t = 64 << 30)]
    pub max_object_bytes: u64,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// Do not publish the built-in IPs (genomics/index, genomics/align).
    #[arg(long)]
    pub no_builtin_ips: bool,
    /// Seconds a job lease lasts without renewal; a remote node silent
    /// this long is declared dead and its jobs run elsewhere.
    #[arg(long, env = "ACCELHUB_JOB_LEASE_SECS", default_value_t = 15)]
    pub job_lease_secs: u64,
    /// This node's name in job leases.
    #[arg(long, env = "ACCELHUB_NODE", default_value = "local")]
    pub node: String,
    /// The platform's share of vendors' revenue, in basis points (2000 =
    /// 20%).
    #[arg(long, env = "ACCELHUB_PLATFORM_SHARE_BPS", default_value_t = 2000)]
    pub platform_share_bps: u32,
    /// Leave every job to remote agents (`accelhub agent`): this process
    /// still serves the API, sync calls and verification.
    #[arg(long)]
    pub no_local_jobs: bool,
    /// Most HTTP connections served at once; further clients wait in the
    /// listen backlog until one closes. Keep it well below the open-file
    /// limit (`ulimit -n`).
    #[arg(long, env = "ACCELHUB_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's header; a kept-alive
    /// connection idle this long is closed too.
    #[arg(long, env = "ACCELHUB_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request is
    /// answered 408 and its connection closed; a client that reads nothing
    /// of a response this long is disconnected too.
    #[arg(long, env = "ACCELHUB_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub body_idle_timeout_secs: u64,
    /// Requests per second each API token may send to /v1 (requests
    /// without a token: each address); above it, 429 with Retry-After.
    /// The agent protocol, /healthz and /metrics are not limited. 0: no
    /// limit.
    #[arg(long, env = "ACCELHUB_RATE_LIMIT", default_value_t = 5000.0)]
    pub rate_limit: f64,
    /// Requests a token may send at once above --rate-limit.
    #[arg(long, env = "ACCELHUB_RATE_BURST", default_value_t = 10_000)]
    pub rate_burst: u32,
}

/// The devices of a node, for `serve`'s embedded agent and `accelhub agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Concurrent calls on the wasm device (default: 2 per core).
    #[arg(long)]
    pub wasm_slots: Option<usize>,
    /// Concurrent calls on the cpu device (native kernels such as
    /// genomics/align; each uses --cpu-threads threads).
    #[arg(long, default_value_t = 1)]
    pub cpu_slots: usize,
    /// Threads one cpu call may use (default: all cores).
    #[arg(long)]
    pub cpu_threads: Option<usize>,
    /// Resident objects (e.g. genomics indexes) the cpu device keeps
    /// between calls.
    #[arg(long, default_value_t = 2)]
    pub cpu_resident: usize,
    /// Slots per OpenCL device: regions programmed independently, each
    /// running one call at a time.
    #[arg(long, default_value_t = 2)]
    pub opencl_slots: usize,
    /// Leave OpenCL devices out even when the node has some.
    #[arg(long)]
    pub no_opencl: bool,
    /// Slots per CUDA device (binaries built with `--features cuda`).
    #[cfg(feature = "cuda")]
    #[arg(long, default_value_t = 2)]
    pub cuda_slots: usize,
    /// Leave CUDA devices out even when the node has some.
    #[cfg(feature = "cuda")]
    #[arg(long)]
    pub no_cuda: bool,
    /// Most wall-clock time an IP may ask for per call, in ms.
    #[arg(long, default_value_t = Limits::MAX.timeout_ms)]
    pub max_timeout_ms: u64,
    /// Most memory an IP may ask for, in MiB.
    #[arg(long, default_value_t = Limits::MAX.memory_bytes >> 20)]
    pub max_memory_mb: u64,
}

/// Threads the async runtime's blocking pool may start for file IO
/// (objects, job inputs and outputs, scratch files), at least.
const BLOCKING_IO_THREADS: usize = 32;

impl DeviceArgs {
    /// The most threads the runtime's blocking pool may start on this node.
    ///
    /// Each thread the pool starts keeps about 2 MiB of allocator memory
    /// once it has run, and the pool grows to the highest concurrency it
    /// has seen: under tokio's default of 512, a busy server's RSS grew in
    /// steps for minutes (BENCHMARKS.md, "Soak"). The bound is the file IO
    /// share (4 per core, [`BLOCKING_IO_THREADS`] at least) plus one per
    /// cpu slot: a native kernel holds its thread for the whole call while
    /// it reads its input through file IO on other threads of the pool, so
    /// those are never all taken by kernels. (OpenCL and CUDA calls hold a
    /// thread too, but with their input already read: past the bound they
    /// wait their turn, and free it within their deadline.)
    pub fn blocking_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (4 * cores).max(BLOCKING_IO_THREADS) + self.cpu_slots.max(1)
    }

    /// The most an IP may ask for on these devices.
    pub fn max_limits(&self) -> Limits {
        Limits {
            timeout_ms: self.max_timeout_ms,
            memory_bytes: self.max_memory_mb << 20,
            output_bytes: Limits::MAX.output_bytes,
        }
    }

    /// This node's devices: the wasm sandbox and the native cpu kernels.
    pub fn executor(&self, node: &str) -> anyhow::Result<LocalExecutor> {
        let mut wasm_config = WasmConfig {
            max_memory_bytes: self.max_limits().memory_bytes,
            ..WasmConfig::default()
        };
        if let Some(s) = self.wasm_slots {
            wasm_config.slots = s.max(1);
        }
        let mut native_config = NativeConfig {
            slots: self.cpu_slots.max(1),
            resident: self.cpu_resident.max(1),
            ..NativeConfig::default()
        };
        if let Some(t) = self.cpu_threads {
            native_config.threads = t.max(1);
        }
        let wasm = WasmBackend::new(wasm_config)?;
        let mut executor = LocalExecutor::new()
            .on_node(node)
            .with_backend(Arc::new(wasm))
            .with_backend(Arc::new(NativeBackend::new(native_config)));
        if self.no_opencl {
            tracing::info!("opencl: left out (--no-opencl)");
        } else {
            let found = OpenClBackend::discover(OpenClConfig {
                slots_per_device: self.opencl_slots.max(1),
                ..OpenClConfig::default()
            })
            .map(|b| (b.hardware().to_vec(), Arc::new(b) as Arc<dyn Backend>));
            executor = with_accelerator(executor, "opencl", found);
        }
        #[cfg(feature = "cuda")]
        {
            use accelhub_cuda::{CudaBackend, CudaConfig};
            if self.no_cuda {
                tracing::info!("cuda: left out (--no-cuda)");
            } else {
                let found = CudaBackend::discover(CudaConfig {
                    slots_per_device: self.cuda_slots.max(1),
                    ..CudaConfig::default()
                })
                .map(|b| (b.hardware().to_vec(), Arc::new(b) as Arc<dyn Backend>));
                executor = with_accelerator(executor, "cuda", found);
            }
        }
        Ok(executor)
    }
}

/// Add an accelerator class the node found, saying what it found, or say
/// why the node runs without it.
fn with_accelerator<E: std::fmt::Display>(
    executor: LocalExecutor,
    class: &str,
    found: Result<(Vec<accelhub_domain::DeviceHardware>, Arc<dyn Backend>), E>,
) -> LocalExecutor {
    match found {
        Ok((hardware, backend)) => {
            for h in hardware {
                tracing::info!(
                    "{class}: {} ({}), {} MiB, {} compute units, {} slots, {}",
                    h.name,
                    h.vendor,
                    h.memory_bytes >> 20,
                    h.compute_units,
                    h.slots,
                    h.runtime
                );
            }
            executor.with_backend(backend)
        }
        Err(e) => {
            tracing::warn!("{e}; this node runs without the {class} device class");
            executor
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the data directory {}", args.data.display()))?;
    if args.database.is_some() && args.node == "local" {
        eprintln!(
            "warning: with a shared --database, give every serve process its own --node name \
             (a restarting node re-queues the jobs its name held) and the same --master-key"
        );
    }
    let store: Arc<dyn Store> = match &args.database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(SqlStore::open_postgres(url).await.context("cannot open the PostgreSQL database")?)
        }
        Some(other) => anyhow::bail!(
            "--database must be a postgres:// URL (got '{other}'); without it the data directory's SQLite is used"
        ),
        None => Arc::new(
            SqlStore::open_sqlite(&args.data.join("accelhub.db"))
                .await
                .context("cannot open the database")?,
        ),
    };
    let objects: Arc<dyn ObjectStore> = match &args.objects {
        Some(url) if url.starts_with("s3://") => {
            Arc::new(S3Store::from_url(url).context("cannot use the S3 object store")?)
        }
        Some(other) => anyhow::bail!(
            "--objects must be an s3:// URL (got '{other}'); without it the data directory holds the objects"
        ),
        None => Arc::new(
            LocalDirStore::new(args.data.join("objects"))
                .context("cannot open the object directory")?,
        ),
    };
    let sealer = match &args.master_key {
        Some(k) => Sealer::from_hex(k)?,
        None => Sealer::load_or_create(&args.data.join("master.key"))?,
    };
    let max_limits = args.devices.max_limits();
    let executor = args.devices.executor(&args.node)?;
    let config = CoreConfig {
        default_limits: Limits {
            timeout_ms: Limits::DEFAULT.timeout_ms.min(max_limits.timeout_ms),
            memory_bytes: Limits::DEFAULT.memory_bytes.min(max_limits.memory_bytes),
            output_bytes: Limits::DEFAULT.output_bytes,
        },
        max_limits,
        max_sync_bytes: args.max_sync_bytes,
        max_object_bytes: args.max_object_bytes,
        job_lease: Duration::from_secs(args.job_lease_secs.max(1)),
        node: args.node.clone(),
        local_jobs: !args.no_local_jobs,
        scratch_dir: args.data.join("scratch"),
        platform_share_bps: args.platform_share_bps.min(10_000),
        ..CoreConfig::default()
    };
    let platform = Platform::new(store, objects, sealer, Arc::new(executor), config);

    let token_path = args.data.join("admin.token");
    if let Some(token) = platform.bootstrap_operator().await? {
        accelhub_objects::write_private(&token_path, format!("{token}\n").as_bytes())
            .with_context(|| format!("cannot write {}", token_path.display()))?;
        eprintln!(
            "created the operator account; its API token is in {} (mode 0600)",
            token_path.display()
        );
    }

    // Bind first: a taken port fails the start before any job runs.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let loops = ControlLoops::start(platform.clone()).await?;
    // First-party IPs: published once, then verified like any other.
    // After the agent starts, which verifies versions left pending: a new
    // publication starts its own verification.
    let builtins = if args.no_builtin_ips {
        Vec::new()
    } else {
        accelhub_native::builtin::packages(&max_limits)
    };
    for files in builtins {
        let package = Package::from_files(files).context("a built-in package is invalid")?;
        let name = package.manifest.name.to_string();
        if let Some(v) = platform
            .publish_builtin(package)
            .await
            .with_context(|| format!("cannot publish the built-in IP {name}"))?
        {
            tracing::info!(ip = %v.ip, version = %v.version, "published built-in IP");
        }
    }

    let addr = listener.local_addr()?;
    eprintln!("accelhub listening on http://{addr}");
    eprintln!(
        "  data: {}   API docs: http://{addr}/v1/docs   operator token: {}",
        args.data.display(),
        token_path.display()
    );
    let http = accelhub_api::HttpConfig {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_idle_timeout: Duration::from_secs(args.body_idle_timeout_secs.max(1)),
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst.max(1),
    };
    accelhub_api::serve(listener, platform, http, shutdown_signal()).await?;
    eprintln!("shutting down: finishing running jobs (10 s at most)");
    if tokio::time::timeout(Duration::from_secs(10), loops.shutdown())
        .await
        .is_err()
    {
        eprintln!("jobs still running are re-queued on the next start");
    }
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
