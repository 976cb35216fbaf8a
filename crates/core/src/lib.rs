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
pub mod exec;
pub mod jobs;
pub mod metrics;
mod package;
mod placement;
mod publish;
pub mod worker;

pub use accelhub_store::AgentRow;
pub use exec::{ExecError, Executor, LocalExecutor};
pub use metrics::Metrics;
pub use package::Package;

use accelhub_device::{CallInput, ImageId, ObjectArg};
use accelhub_domain::{
    Account, CatalogEntry, Deployment, IpName, IpVersion, Limits, Money, ObjectInfo, Params, Role,
    UsageRecord, UsageReport, UsageTotals, VersionStatus,
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

/// Errors of the control plane, each with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The call would pass the account's spending limit.
    #[error("{0}")]
    PaymentRequired(String),
    /// The plan's quota of calls is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The IP itself failed the call.
    #[error("{message}")]
    CallFailed {
        call_id: String,
        kind: String,
        message: String,
        exit_code: Option<i32>,
        log: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => CoreError::Conflict(format!("{what} already exists")),
            StoreError::NotFound(what) => CoreError::NotFound(format!("{what} not found")),
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<ObjectError> for CoreError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound(k) => CoreError::NotFound(format!("object '{k}' not found")),
            ObjectError::InvalidKey(k) => CoreError::BadRequest(format!(
                "invalid object key '{k}': use letters, digits, '.', '_', '-' and '/'"
            )),
            ObjectError::TooLarge { limit } => {
                CoreError::TooLarge(format!("the data exceeds the limit of {limit} bytes"))
            }
            ObjectError::Upload(e) => CoreError::BadRequest(format!("upload interrupted: {e}")),
            ObjectError::Io(e) => CoreError::Internal(format!("object storage: {e}")),
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

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

fn object_view(r: ObjectRow) -> ObjectInfo {
    ObjectInfo {
        key: r.key,
        size: r.size,
        sha256: r.sha256,
        created_at: r.created_at,
    }
}

/// The result of a successful sync call.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub call_id: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub output: Bytes,
    pub log: Bytes,
    pub price: Money,
    pub device_time: Duration,
    pub cold_start: bool,
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
    pub(crate) agent_tokens: TtlCache<String, accelhub_store::AgentRow>,
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

/// How long a token or deployment lookup is reused. Another process's
/// change (a redeploy) is seen by this one within this delay; this
/// process's own changes invalidate at once.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(2);

/// A small bounded map whose entries expire (`Duration::MAX`: never).
pub(crate) struct TtlCache<K, V> {
    map: std::sync::Mutex<std::collections::HashMap<K, (V, std::time::Instant)>>,
    ttl: Duration,
    max: usize,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            map: Default::default(),
            ttl,
            max,
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub(crate) fn put(&self, k: K, v: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(k, (v, std::time::Instant::now()));
    }

    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub(crate) fn remove(&self, k: &K) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
    }
}

/// Finished versions kept in memory at most.
const VERSION_CACHE: usize = 4096;

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

    // ---- Catalog ---------------------------------------------------------

    /// The catalog: every IP with its newest version, its ratings and use,
    /// filtered and sorted.
    pub async fn catalog(
        &self,
        caller: &Account,
        filter: &accelhub_domain::CatalogFilter,
        sort: accelhub_domain::CatalogSort,
    ) -> Result<Vec<CatalogEntry>> {
        use accelhub_domain::CatalogSort;
        let stats = self.store.ip_stats().await?;
        let mut out = Vec::new();
        for v in self.store.list_latest_versions().await? {
            let vendor =
                v.ip.split_once('/')
                    .map(|(ns, _)| ns)
                    .unwrap_or_default()
                    .to_string();
            let devices: Vec<String> = v.implementations.iter().map(|i| i.device.clone()).collect();
            if !filter.matches(&v.ip, &v.summary, &v.tags, &devices, &vendor) {
                continue;
            }
            out.push(CatalogEntry {
                ip: v.ip.clone(),
                vendor,
                latest: version_for(caller, &v),
                stats: stats.get(&v.ip).copied().unwrap_or_default(),
            });
        }
        match sort {
            CatalogSort::Newest => out.sort_by_key(|e| std::cmp::Reverse(e.latest.published_at)),
            CatalogSort::Name => out.sort_by(|a, b| a.ip.cmp(&b.ip)),
            CatalogSort::Usage => out.sort_by(|a, b| {
                (b.stats.uses, b.stats.users)
                    .cmp(&(a.stats.uses, a.stats.users))
                    .then_with(|| a.ip.cmp(&b.ip))
            }),
            CatalogSort::Rating => out.sort_by(|a, b| {
                let key = |e: &CatalogEntry| e.stats.rating.average.unwrap_or(-1.0);
                key(b)
                    .total_cmp(&key(a))
                    .then_with(|| b.stats.rating.count.cmp(&a.stats.rating.count))
                    .then_with(|| a.ip.cmp(&b.ip))
            }),
        }
        Ok(out)
    }

    /// One IP: its versions, ratings, use and reviews.
    pub async fn ip_details(
        &self,
        caller: &Account,
        ip: &str,
    ) -> Result<accelhub_domain::IpDetails> {
        let versions = self.ip_versions(caller, ip).await?;
        let ip = versions
            .first()
            .map(|v| v.ip.clone())
            .unwrap_or_else(|| ip.to_string());
        let stats = self
            .store
            .ip_stats()
            .await?
            .get(&ip)
            .copied()
            .unwrap_or_default();
        let reviews = self.store.list_reviews(&ip).await?;
        Ok(accelhub_domain::IpDetails {
            ip,
            versions,
            stats,
            reviews,
        })
    }

    /// Rate and review an IP (users who have run it; writing again
    /// replaces the caller's earlier review).
    pub async fn review(
        &self,
        caller: &Account,
        ip: &str,
        review: &accelhub_domain::SubmitReview,
    ) -> Result<accelhub_domain::Review> {
        self.require_user(caller, "rate and review IPs")?;
        let review = review.validate().map_err(CoreError::BadRequest)?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        if self.store.ip_vendor(&ip).await?.is_none() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        if !self.store.has_used(caller.id, &ip).await? {
            return Err(CoreError::Forbidden(format!(
                "only users who have run {ip} may rate it: deploy it and call it first"
            )));
        }
        Ok(self
            .store
            .put_review(&ip, caller.id, review.stars, &review.text, Utc::now())
            .await?)
    }

    /// An IP's reviews, newest first.
    pub async fn reviews(&self, ip: &str) -> Result<Vec<accelhub_domain::Review>> {
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        if self.store.ip_vendor(&ip).await?.is_none() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        Ok(self.store.list_reviews(&ip).await?)
    }

    /// The IP's vendor answers a review (writing again replaces the reply).
    pub async fn reply_to_review(
        &self,
        caller: &Account,
        ip: &str,
        review_id: i64,
        reply: &accelhub_domain::SubmitReply,
    ) -> Result<accelhub_domain::Review> {
        let text = reply.validate().map_err(CoreError::BadRequest)?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        match self.store.ip_vendor(&ip).await? {
            None => return Err(CoreError::NotFound(format!("no IP named '{ip}'"))),
            Some(vendor) if vendor != caller.id => {
                return Err(CoreError::Forbidden(format!(
                    "only {ip}'s vendor replies to its reviews"
                )))
            }
            Some(_) => {}
        }
        self.store
            .reply_review(&ip, review_id, &text, Utc::now())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("{ip} has no review {review_id}")))
    }

    /// All versions of an IP, newest first. Verification reports keep the
    /// IP's stderr only for its vendor and the operator: test vectors and
    /// logs are part of the vendor's IP.
    pub async fn ip_versions(&self, caller: &Account, ip: &str) -> Result<Vec<IpVersion>> {
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let versions = self.store.list_versions(&name.to_string()).await?;
        if versions.is_empty() {
            return Err(CoreError::NotFound(format!("no IP named '{name}'")));
        }
        Ok(versions.iter().map(|v| version_for(caller, v)).collect())
    }

    // ---- Deployments -----------------------------------------------------

    fn require_user(&self, account: &Account, what: &str) -> Result<()> {
        if account.role != Role::User {
            return Err(CoreError::Forbidden(format!(
                "only user accounts {what}; this is a {} account",
                account.role
            )));
        }
        Ok(())
    }

    /// Deploy `ip` (at `version`, or its newest verified version) for the
    /// caller, and warm its image up.
    pub async fn deploy(
        self: &Arc<Self>,
        account: &Account,
        ip: &str,
        version: Option<&str>,
        scaling: Option<accelhub_domain::Scaling>,
        devices: Option<Vec<String>>,
    ) -> Result<Deployment> {
        self.require_user(account, "deploy IPs")?;
        if let Some(sc) = &scaling {
            sc.validate().map_err(CoreError::BadRequest)?;
        }
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        let versions = self.store.list_versions(&ip).await?;
        if versions.is_empty() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        let chosen = match version {
            Some(v) => {
                let row = versions
                    .iter()
                    .find(|r| r.version == v)
                    .ok_or_else(|| CoreError::NotFound(format!("'{ip}' has no version {v}")))?;
                if row.status != VersionStatus::Verified {
                    return Err(CoreError::Conflict(format!(
                        "{ip}@{v} is {}: only verified versions can be deployed",
                        row.status
                    )));
                }
                row
            }
            None => versions
                .iter()
                .find(|r| r.status == VersionStatus::Verified)
                .ok_or_else(|| {
                    CoreError::Conflict(format!(
                        "'{ip}' has no verified version yet: only verified versions can be deployed"
                    ))
                })?,
        };
        if let Some(devices) = &devices {
            placement::check_preference(devices, chosen)?;
        }
        let mut row = self
            .store
            .upsert_deployment(&new_id("dep"), account.id, chosen.id)
            .await?;
        if let Some(sc) = scaling {
            self.store.set_scaling(&row.id, &sc).await?;
            row.scaling = sc;
        }
        if let Some(devices) = devices {
            self.store.set_device_preference(&row.id, &devices).await?;
            row.devices = devices;
        }
        self.deployments.remove(&(account.id, ip.clone()));
        // Program the first choice so the first call does not pay for it.
        let classes = self.executor.device_classes();
        if let Some(imp) = placement::call_order(&row, chosen)
            .into_iter()
            .find(|i| classes.contains(&i.device))
        {
            self.program_in_background(Arc::new(chosen.clone()), imp);
        }
        Ok(deployment_view(row, chosen))
    }

    pub async fn deployments(&self, account: &Account) -> Result<Vec<Deployment>> {
        let mut out = Vec::new();
        for d in self.store.list_deployments(account.id).await? {
            if let Some(v) = self.store.get_version_by_id(d.version_id).await? {
                out.push(deployment_view(d, &v));
            }
        }
        Ok(out)
    }

    /// One of the caller's deployments, with the autoscaler's latest
    /// decisions.
    pub async fn deployment(&self, account: &Account, ip: &str) -> Result<Deployment> {
        let (d, v) = self.deployment_of(account, ip).await?;
        // Fresh, not cached: this shows what the autoscaler did.
        let d = self
            .store
            .get_deployment(account.id, &d.ip)
            .await?
            .unwrap_or(d);
        let events = self.store.scaling_events(&d.id, 20).await?;
        let mut view = deployment_view(d, &v);
        view.events = events;
        Ok(view)
    }

    pub async fn undeploy(&self, account: &Account, ip: &str) -> Result<()> {
        self.deployments.remove(&(account.id, ip.to_string()));
        // A dedicated deployment's held replicas are metered to the end.
        if let Some(dep) = self.store.get_deployment(account.id, ip).await? {
            self.meter_reservation(&dep, Utc::now()).await?;
        }
        if !self.store.delete_deployment(account.id, ip).await? {
            return Err(CoreError::NotFound(format!(
                "you have no deployment of '{ip}'"
            )));
        }
        Ok(())
    }

    /// The caller's deployment of an IP, and the version it runs.
    pub(crate) async fn deployment_of(
        &self,
        account: &Account,
        ip: &str,
    ) -> Result<(DeploymentRow, Arc<VersionRow>)> {
        self.require_user(account, "call IPs")?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let key = (account.id, name.to_string());
        let dep = match self.deployments.get(&key) {
            Some(d) => d,
            None => {
                let d = self
                    .store
                    .get_deployment(account.id, &key.1)
                    .await?
                    .ok_or_else(|| {
                        CoreError::NotFound(format!(
                            "you have no deployment of '{name}': run `accelhub deploy {name}` first"
                        ))
                    })?;
                self.deployments.put(key, d.clone());
                d
            }
        };
        let version = self.version_by_id(dep.version_id).await?;
        Ok((dep, version))
    }

    /// A version by id, from memory once its verification has finished.
    pub(crate) async fn version_by_id(&self, id: i64) -> Result<Arc<VersionRow>> {
        if let Some(v) = self.finished_versions.get(&id) {
            return Ok(v);
        }
        let v = Arc::new(
            self.store
                .get_version_by_id(id)
                .await?
                .ok_or_else(|| CoreError::Internal(format!("version {id} vanished")))?,
        );
        if v.status != VersionStatus::Pending {
            self.finished_versions.put(id, v.clone());
        }
        Ok(v)
    }

    pub(crate) fn image_id(imp: &StoredImplementation) -> ImageId {
        ImageId(format!("{}:{}", imp.device, imp.artifact_sha256))
    }

    /// Fetch and unseal a stored package file.
    pub(crate) async fn unseal(&self, key: &str) -> Result<Bytes, String> {
        let sealed = self
            .objects
            .get(key, self.config.max_package_bytes + 1024)
            .await
            .map_err(|e| e.to_string())?;
        self.sealer
            .open(&sealed)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn load_image(
        &self,
        version: &VersionRow,
        imp: &StoredImplementation,
    ) -> Result<accelhub_device::LoadReport, ExecError> {
        let image = Self::image_id(imp);
        let key = imp.artifact_key.clone();
        let report = self
            .executor
            .ensure_loaded(
                &imp.device,
                &image,
                Box::new(move || Box::pin(async move { self.unseal(&key).await })),
            )
            .await;
        if let Ok(r) = &report {
            self.metrics.image_load(&imp.device, r);
            if !r.cached {
                tracing::info!(ip = %version.ip, version = %version.version, device = %imp.device,
                    ms = r.duration.as_secs_f64() * 1e3, "image loaded");
            }
        }
        report
    }

    /// Resolve a call's object inputs: each `[[object]]` the version
    /// declares is a parameter naming one of the caller's objects. A
    /// missing required one is a bad request; another tenant's object is
    /// reported like a missing one.
    pub(crate) async fn resolve_objects(
        &self,
        account_id: i64,
        version: &VersionRow,
        params: &Params,
    ) -> Result<BTreeMap<String, ObjectArg>> {
        let mut out = BTreeMap::new();
        for o in &version.objects {
            let key = match params.get(&o.name) {
                None | Some(serde_json::Value::Null) if !o.required => continue,
                None | Some(serde_json::Value::Null) => {
                    return Err(CoreError::BadRequest(format!(
                        "{} needs the parameter '{}': the key of one of your objects ({})",
                        version.ip,
                        o.name,
                        if o.summary.is_empty() {
                            "an object"
                        } else {
                            &o.summary
                        }
                    )))
                }
                Some(serde_json::Value::String(k)) => k,
                Some(_) => {
                    return Err(CoreError::BadRequest(format!(
                        "parameter '{}' must be an object key (a string)",
                        o.name
                    )))
                }
            };
            let row = self
                .store
                .get_object(account_id, key)
                .await?
                .ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "parameter '{}': you have no object '{key}'",
                        o.name
                    ))
                })?;
            let objects = self.objects.clone();
            let path = account_object_key(account_id, key);
            let open: accelhub_device::ObjectOpen = Arc::new(move || {
                let objects = objects.clone();
                let path = path.clone();
                Box::pin(async move {
                    objects
                        .get_stream(&path)
                        .await
                        .map(|(_, s)| s)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                })
            });
            out.insert(
                o.name.clone(),
                ObjectArg {
                    key: key.clone(),
                    sha256: row.sha256,
                    size: row.size,
                    open,
                },
            );
        }
        Ok(out)
    }

    /// A test vector's object inputs: sealed package files, opened whole.
    pub(crate) fn test_objects(&self, t: &StoredTest) -> BTreeMap<String, ObjectArg> {
        t.objects
            .iter()
            .map(|(name, o)| {
                let objects = self.objects.clone();
                let sealer = self.sealer.clone();
                let key = o.key.clone();
                let max = self.config.max_package_bytes + 1024;
                let open: accelhub_device::ObjectOpen = Arc::new(move || {
                    let objects = objects.clone();
                    let sealer = sealer.clone();
                    let key = key.clone();
                    Box::pin(async move {
                        let sealed = objects
                            .get(&key, max)
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let clear = sealer
                            .open(&sealed)
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let chunk: std::io::Result<Bytes> = Ok(Bytes::from(clear));
                        Ok(Box::pin(futures::stream::iter([chunk]))
                            as futures::stream::BoxStream<'static, _>)
                    })
                });
                (
                    name.clone(),
                    ObjectArg {
                        key: name.clone(),
                        sha256: o.sha256.clone(),
                        size: o.size,
                        open,
                    },
                )
            })
            .collect()
    }

    // ---- Sync calls ------------------------------------------------------

    /// Call the caller's deployment of `ip` synchronously.
    pub async fn invoke(
        self: &Arc<Self>,
        account: &Account,
        ip: &str,
        params: Params,
        input: Bytes,
    ) -> Result<CallResult> {
        if input.len() as u64 > self.config.max_sync_bytes {
            return Err(CoreError::TooLarge(format!(
                "sync calls take at most {} bytes; upload larger data with `accelhub object put` \
                 and run it with `accelhub job submit`",
                self.config.max_sync_bytes
            )));
        }
        let (deployment, version) = self.deployment_of(account, ip).await?;
        self.check_allowance(account, &version, input.len() as u64)
            .await?;
        let imp = self.choose_for_call(&deployment, &version)?;
        let objects = self.resolve_objects(account.id, &version, &params).await?;
        let call_id = new_id("call");
        let bytes_in = input.len() as u64;
        let mut call = CallInput::in_memory(input, params, version.limits);
        call.objects = objects;
        let image = Self::image_id(&imp);
        let key = imp.artifact_key.clone();
        let started = std::time::Instant::now();
        let result = self
            .executor
            .execute(
                &imp.device,
                &image,
                Box::new(move || Box::pin(async move { self.unseal(&key).await })),
                call,
            )
            .await;
        let elapsed = started.elapsed();
        let (outcome, bytes_out, device_time) = match &result {
            Ok((_, out)) => ("ok".to_string(), out.output.len(), out.device_time),
            Err(ExecError::Call(c)) => (c.kind().to_string(), 0, elapsed),
            Err(_) => ("platform".to_string(), 0, elapsed),
        };
        self.metrics
            .call(&version.ip, &imp.device, &outcome, elapsed);
        self.meter(
            &call_id,
            "call",
            account.id,
            &version,
            &imp.device,
            bytes_in,
            bytes_out,
            device_time,
            result.is_ok(),
            &outcome,
        )
        .await?;
        match result {
            Ok((load, out)) => {
                self.metrics.image_load(&imp.device, &load);
                Ok(CallResult {
                    call_id,
                    ip: version.ip.clone(),
                    version: version.version.clone(),
                    device: imp.device.clone(),
                    output: out.output.bytes(),
                    log: out.log,
                    price: version.price,
                    device_time: out.device_time,
                    cold_start: !load.cached,
                })
            }
            Err(e) => Err(self.call_error(&call_id, e)),
        }
    }

    pub(crate) fn call_error(&self, call_id: &str, e: ExecError) -> CoreError {
        match e {
            ExecError::Call(c) => CoreError::CallFailed {
                call_id: call_id.to_string(),
                kind: c.kind().to_string(),
                message: c.to_string(),
                exit_code: c.exit_code(),
                log: accelhub_domain::version::tail(c.log(), 4096),
            },
            ExecError::NoDevice(d) => {
                CoreError::Unavailable(format!("no device of class '{d}' is available"))
            }
            ExecError::Load(l) => CoreError::Internal(format!("cannot load the IP: {l}")),
            ExecError::Fetch(f) => CoreError::Internal(format!("cannot fetch the IP: {f}")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn meter(
        &self,
        id: &str,
        kind: &str,
        account_id: i64,
        version: &VersionRow,
        device: &str,
        bytes_in: u64,
        bytes_out: u64,
        device_time: Duration,
        billed: bool,
        outcome: &str,
    ) -> Result<()> {
        self.store
            .record_usage(usage_record(
                id,
                kind,
                account_id,
                version,
                device,
                bytes_in,
                bytes_out,
                device_time,
                billed,
                outcome,
            ))
            .await?;
        Ok(())
    }

    // ---- Objects ---------------------------------------------------------

    pub async fn put_object(
        &self,
        account: &Account,
        key: Option<&str>,
        expected_sha256: Option<&str>,
        stream: accelhub_objects::ByteStream,
    ) -> Result<ObjectInfo> {
        let key = match key {
            Some(k) => {
                accelhub_objects::validate_key(k)?;
                k.to_string()
            }
            None => new_id("obj"),
        };
        let path = account_object_key(account.id, &key);
        let put = self
            .objects
            .put_stream(&path, stream, self.config.max_object_bytes)
            .await?;
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&put.sha256) {
                self.objects.delete(&path).await?;
                return Err(CoreError::BadRequest(format!(
                    "the upload was corrupted in transit: its SHA-256 is {} but the client \
                     announced {expected}; nothing was stored",
                    put.sha256
                )));
            }
        }
        self.store
            .put_object(account.id, &key, put.size, &put.sha256)
            .await?;
        Ok(ObjectInfo {
            key,
            size: put.size,
            sha256: put.sha256,
            created_at: Utc::now(),
        })
    }

    pub async fn object_info(&self, account: &Account, key: &str) -> Result<ObjectInfo> {
        self.store
            .get_object(account.id, key)
            .await?
            .map(object_view)
            .ok_or_else(|| CoreError::NotFound(format!("you have no object '{key}'")))
    }

    pub async fn get_object(
        &self,
        account: &Account,
        key: &str,
    ) -> Result<(ObjectInfo, accelhub_objects::ByteStream)> {
        let info = self.object_info(account, key).await?;
        let (_, stream) = self
            .objects
            .get_stream(&account_object_key(account.id, key))
            .await?;
        Ok((info, stream))
    }

    pub async fn list_objects(&self, account: &Account) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .store
            .list_objects(account.id)
            .await?
            .into_iter()
            .map(object_view)
            .collect())
    }

    pub async fn delete_object(&self, account: &Account, key: &str) -> Result<()> {
        if !self.store.delete_object(account.id, key).await? {
            return Err(CoreError::NotFound(format!("you have no object '{key}'")));
        }
        self.objects
            .delete(&account_object_key(account.id, key))
            .await?;
        Ok(())
    }

    // ---- Fleet -----------------------------------------------------------

    /// Nodes, devices and slots, what each holds and how busy it is
    /// (operator only).
    pub async fn fleet(&self, account: &Account) -> Result<accelhub_domain::Fleet> {
        if account.role != Role::Operator {
            return Err(CoreError::Forbidden(
                "only the operator sees the fleet".into(),
            ));
        }
        // Image ids name an artifact's digest; name it by IP version.
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for latest in self.store.list_latest_versions().await? {
            for v in self.store.list_versions(&latest.ip).await? {
                for imp in &v.implementations {
                    names.insert(Self::image_id(imp).0, format!("{}@{}", v.ip, v.version));
                }
            }
        }
        let mut nodes: BTreeMap<String, accelhub_domain::FleetNode> = BTreeMap::new();
        for (node, d) in self.executor.devices() {
            let entry = nodes
                .entry(node.clone())
                .or_insert_with(|| accelhub_domain::FleetNode {
                    name: node,
                    health: "up".into(),
                    devices: Vec::new(),
                });
            entry.devices.push(accelhub_domain::FleetDevice {
                utilisation: d.busy as f64 / d.slots.max(1) as f64,
                class: d.class,
                slots: d.slots,
                busy: d.busy,
                loaded: d
                    .images
                    .iter()
                    .map(|i| names.get(&i.0).cloned().unwrap_or_else(|| i.0.clone()))
                    .collect(),
                resident: d.resident,
                hardware: d.hardware,
            });
        }
        // Remote agents' nodes, as their last heartbeat described them.
        for n in self.store.list_nodes().await? {
            let mut devices = n.devices;
            for d in &mut devices {
                for l in &mut d.loaded {
                    if let Some(name) = names.get(l.as_str()) {
                        *l = name.clone();
                    }
                }
            }
            let health = if n.state == accelhub_domain::NodeState::Up {
                "up".to_string()
            } else {
                format!(
                    "dead: no heartbeat since {}",
                    n.last_seen.format("%Y-%m-%d %H:%M:%S UTC")
                )
            };
            nodes.insert(
                n.name.clone(),
                accelhub_domain::FleetNode {
                    name: n.name,
                    health,
                    devices,
                },
            );
        }
        Ok(accelhub_domain::Fleet {
            nodes: nodes.into_values().collect(),
        })
    }

    // ---- Usage -----------------------------------------------------------

    /// Usage the caller may see: its own consumption (user), use of its IPs
    /// without consumers' names (vendor), or everything (operator).
    pub async fn usage(
        &self,
        account: &Account,
        since: Option<DateTime<Utc>>,
    ) -> Result<UsageReport> {
        let (view, scope) = match account.role {
            Role::User => ("consumer", UsageScope::Consumer(account.id)),
            Role::Vendor => ("vendor", UsageScope::Vendor(account.id)),
            Role::Operator => ("operator", UsageScope::All),
        };
        let mut records: Vec<UsageRecord> = self.store.list_usage(scope, since).await?;
        if account.role == Role::Vendor {
            for r in &mut records {
                r.account = None;
            }
        }
        let totals = UsageTotals::of(&records);
        Ok(UsageReport {
            view: view.into(),
            since,
            records,
            totals,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn usage_record(
    id: &str,
    kind: &str,
    account_id: i64,
    version: &VersionRow,
    device: &str,
    bytes_in: u64,
    bytes_out: u64,
    device_time: Duration,
    billed: bool,
    outcome: &str,
) -> NewUsage {
    NewUsage {
        id: id.to_string(),
        kind: kind.to_string(),
        account_id,
        version_id: version.id,
        device: device.to_string(),
        bytes_in,
        bytes_out,
        device_time_us: device_time.as_micros() as u64,
        price: version.price,
        billed,
        outcome: outcome.to_string(),
    }
}

pub(crate) fn version_view(v: &VersionRow) -> IpVersion {
    IpVersion {
        ip: v.ip.clone(),
        version: v.version.clone(),
        status: v.status,
        summary: v.summary.clone(),
        description: v.description.clone(),
        tags: v.tags.clone(),
        devices: v.implementations.iter().map(|i| i.device.clone()).collect(),
        objects: v.objects.clone(),
        price_per_call: v.price,
        plans: v.plans(),
        trial_calls: v.pricing.trial_calls,
        limits: v.limits,
        report: v.report.clone(),
        published_at: v.published_at,
    }
}

/// A version as `caller` may see it: verification logs (the IP's stderr on
/// the vendor's test vectors) only for its vendor and the operator.
pub(crate) fn version_for(caller: &Account, v: &VersionRow) -> IpVersion {
    let mut view = version_view(v);
    if caller.role != Role::Operator && caller.id != v.vendor_id {
        for imp in view
            .report
            .iter_mut()
            .flat_map(|r| r.implementations.iter_mut())
        {
            for t in &mut imp.tests {
                t.stderr_tail.clear();
            }
        }
    }
    view
}

fn deployment_view(d: DeploymentRow, v: &VersionRow) -> Deployment {
    let devices = placement::call_order(&d, v)
        .into_iter()
        .map(|i| i.device)
        .collect();
    Deployment {
        id: d.id,
        ip: d.ip,
        version: d.version,
        devices,
        price_per_call: v.price,
        created_at: d.created_at,
        scaling: d.scaling,
        replicas: d.replicas,
        events: Vec::new(),
    }
}
