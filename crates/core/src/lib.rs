//! The Accelhub control plane: the services behind the API.
//!
//! [`Platform`] ties the seams together: a [`Store`] for metadata, an
//! [`ObjectStore`] for bytes, an [`Executor`] for devices. It publishes and
//! verifies IP versions, deploys them, runs sync calls, queues jobs, and
//! meters every call. It knows nothing of HTTP; the API layer maps
//! [`CoreError`] to status codes.

pub mod agents;
pub mod auth;
pub mod autoscale;
pub mod billing;
mod cache;
mod catalog;
mod deploy;
mod error;
mod fleet;
mod health;
mod invoke;
pub mod jobs;
pub mod metrics;
mod objects;
mod package;
mod placement;
mod publish;
mod usage;
pub mod worker;

pub use accelhub_store::AgentTokenRow;
pub use accelhub_worker::{ExecError, Executor, LocalExecutor};
pub use metrics::Metrics;
pub use package::Package;

use accelhub_device::{CallInput, ImageId, ObjectArg};
use accelhub_domain::{
    Account, CatalogEntry, Deployment, IpName, IpVersion, Limits, Money, ObjectInfo, Params, Role,
    UsageRecord, UsageReport, VersionStatus,
};
use accelhub_objects::{ObjectError, ObjectStore, Sealer};
use accelhub_store::{
    DeploymentRow, NewUsage, ObjectRow, Store, StoreError, StoredImplementation, StoredTest,
    UsageScope, VersionRow,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use error::{CoreError, Result};
pub use health::DiskState;
pub use invoke::{CallBody, CallResult};

pub(crate) use cache::{TtlCache, CACHE_TTL, VERSION_CACHE};
pub(crate) use catalog::version_view;
pub(crate) use usage::usage_record;

/// Operator-set limits and sizes.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Limits an IP gets when its manifest names none.
    pub default_limits: Limits,
    /// The most an IP may ask for.
    pub max_limits: Limits,
    /// Largest request body of a sync call.
    pub max_sync_bytes: u64,
    /// Largest object upload.
    pub max_object_bytes: u64,
    /// Largest job input (jobs stream it to the device).
    pub max_job_input_bytes: u64,
    /// Largest IP package upload.
    pub max_package_bytes: u64,
    /// Attempts before a job whose worker keeps dying is failed.
    pub job_max_attempts: u32,
    /// How long a job lease lasts without renewal.
    pub job_lease: Duration,
    /// This node's name; the embedded agent's leases carry it.
    pub node: String,
    /// Whether the embedded agent runs jobs (off when remote agents run
    /// them all; sync calls and verification still run here).
    pub local_jobs: bool,
    /// Where running jobs write their output before it is stored.
    pub scratch_dir: std::path::PathBuf,
    /// The platform's share of vendors' revenue, in basis points.
    pub platform_share_bps: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_limits: Limits::DEFAULT,
            max_limits: Limits::MAX,
            max_sync_bytes: 16 << 20,
            max_object_bytes: 64 << 30,
            max_job_input_bytes: 64 << 30,
            max_package_bytes: 256 << 20,
            job_max_attempts: 3,
            job_lease: Duration::from_secs(15),
            node: "local".into(),
            local_jobs: true,
            scratch_dir: std::env::temp_dir().join("accelhub-scratch"),
            platform_share_bps: 2000,
        }
    }
}

pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) sealer: Sealer,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) config: CoreConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) job_wakeup: tokio::sync::Notify,
    /// Versions whose verification has finished never change again, so
    /// every process may keep them.
    finished_versions: TtlCache<i64, Arc<VersionRow>>,
    /// Short-lived caches of the hot path's lookups (see `CACHE_TTL`).
    pub(crate) tokens: TtlCache<String, Account>,
    deployments: TtlCache<(i64, String), DeploymentRow>,
    pub(crate) agent_tokens: TtlCache<String, accelhub_store::AgentTokenRow>,
    /// Nodes known to be registered by an agent.
    pub(crate) agent_nodes: TtlCache<(i64, String), ()>,
    /// How jobs are placed on the workers that ask for them.
    pub(crate) scheduler: accelhub_scheduler::Config,
    /// Spending limits and current plans, for the call path (see `billing`).
    pub(crate) spending_limits: TtlCache<i64, Option<accelhub_domain::Money>>,
    pub(crate) current_plans: TtlCache<(i64, String), Option<String>>,
    /// Images being programmed in the background (see `placement`).
    pub(crate) programming: std::sync::Mutex<std::collections::HashSet<String>>,
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Where an account's objects live in the object store.
pub(crate) fn account_object_key(account_id: i64, key: &str) -> String {
    format!("accounts/{account_id}/{key}")
}

impl Platform {
    pub fn new(
        store: Arc<dyn Store>,
        objects: Arc<dyn ObjectStore>,
        sealer: Sealer,
        executor: Arc<dyn Executor>,
        config: CoreConfig,
    ) -> Arc<Self> {
        Arc::new(Platform {
            store,
            objects,
            sealer,
            executor,
            config,
            metrics: Arc::new(Metrics::new()),
            agent_tokens: TtlCache::new(CACHE_TTL, 10_000),
            agent_nodes: TtlCache::new(CACHE_TTL, 10_000),
            scheduler: accelhub_scheduler::Config::default(),
            job_wakeup: tokio::sync::Notify::new(),
            finished_versions: TtlCache::new(Duration::MAX, VERSION_CACHE),
            tokens: TtlCache::new(CACHE_TTL, 100_000),
            deployments: TtlCache::new(CACHE_TTL, 100_000),
            programming: Default::default(),
            spending_limits: TtlCache::new(CACHE_TTL, 100_000),
            current_plans: TtlCache::new(CACHE_TTL, 100_000),
        })
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
