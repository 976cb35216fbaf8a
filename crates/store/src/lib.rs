//! The metadata store: every durable fact of the control plane.
//!
//! [`Store`] is the seam; [`SqliteStore`] is the embedded implementation,
//! [`PgStore`] the one several control planes share.
//! Only this crate knows SQL. Timestamps are kept as Unix milliseconds.

mod journal;
mod postgres;
mod rows;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use accelhub_domain::{
    Account, JobAttempt, JobState, Limits, Money, Params, Role, Scaling, ScalingEvent, UsageRecord,
    VerificationReport, VersionStatus,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One implementation of a version, with where its sealed artifact lives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredImplementation {
    pub device: String,
    pub artifact_key: String,
    pub artifact_sha256: String,
}

/// One test vector, with where its sealed input and expectation live.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredTest {
    pub name: String,
    pub input_key: String,
    pub expect_key: String,
    pub params: Params,
    /// Object inputs by parameter name: sealed package files.
    #[serde(default)]
    pub objects: std::collections::BTreeMap<String, StoredObject>,
    /// How outputs compare with the expectation.
    #[serde(default, skip_serializing_if = "accelhub_domain::Compare::is_bytes")]
    pub compare: accelhub_domain::Compare,
}

/// A sealed package file standing for an object input in a test vector.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredObject {
    pub key: String,
    /// SHA-256 of the clear bytes.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct NewVersion {
    pub ip: String,
    pub vendor_id: i64,
    pub version: semver::Version,
    pub summary: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub price: Money,
    pub limits: Limits,
    pub implementations: Vec<StoredImplementation>,
    pub objects: Vec<accelhub_domain::ObjectParam>,
    pub tests: Vec<StoredTest>,
    pub pricing: accelhub_domain::billing::PricingTerms,
}

#[derive(Debug, Clone)]
pub struct VersionRow {
    pub id: i64,
    pub ip_id: i64,
    pub ip: String,
    pub vendor_id: i64,
    pub version: String,
    pub status: VersionStatus,
    pub summary: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub price: Money,
    pub limits: Limits,
    pub implementations: Vec<StoredImplementation>,
    pub objects: Vec<accelhub_domain::ObjectParam>,
    pub tests: Vec<StoredTest>,
    pub report: Option<VerificationReport>,
    pub published_at: DateTime<Utc>,
    /// Input per GB, free trial and plans beyond the per-call price.
    pub pricing: accelhub_domain::billing::PricingTerms,
}

impl VersionRow {
    /// Every plan of this version, the default `per-call` plan first.
    pub fn plans(&self) -> Vec<accelhub_domain::billing::Plan> {
        self.pricing.all_plans(self.price)
    }
}

#[derive(Debug, Clone)]
pub struct DeploymentRow {
    pub id: String,
    pub account_id: i64,
    pub ip: String,
    pub version_id: i64,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub scaling: Scaling,
    pub replicas: u32,
    /// Since when demand has been below `replicas` (for the scale-down
    /// delay).
    pub low_since: Option<DateTime<Utc>>,
    /// Device classes in the order calls prefer them; empty: the
    /// version's own order.
    pub devices: Vec<String>,
    /// How far its reserved replicas are metered (plans by the
    /// device-hour).
    pub metered_until: Option<DateTime<Utc>>,
}

/// A deployment and its jobs waiting and running.
#[derive(Debug, Clone)]
pub struct DeploymentDemand {
    pub deployment: DeploymentRow,
    pub queued: u32,
    pub running: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub account_id: i64,
    pub version_id: i64,
    pub device: String,
    pub input_key: String,
    pub input_size: u64,
    pub params: Params,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub account_id: i64,
    pub account: String,
    pub version_id: i64,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub input_key: String,
    pub input_size: u64,
    pub params: Params,
    pub state: JobState,
    pub progress: f64,
    /// Items done (e.g. reads) and their unit, for IPs that count them.
    pub items: Option<(u64, String)>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub output_key: Option<String>,
    pub output_size: Option<u64>,
    pub error: Option<String>,
    pub log: Option<String>,
    pub lease_owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub history: Vec<JobAttempt>,
}

/// How a job attempt ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Succeeded {
        output_key: String,
        output_size: u64,
        log: Option<String>,
        /// Items done in the end, and their unit, for IPs that count them.
        items: Option<(u64, String)>,
    },
    Failed {
        error: String,
        log: Option<String>,
    },
    Cancelled,
}

/// A usage record to write.
#[derive(Debug, Clone)]
pub struct NewUsage {
    pub id: String,
    pub kind: String,
    pub account_id: i64,
    pub version_id: i64,
    pub device: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub device_time_us: u64,
    pub price: Money,
    pub billed: bool,
    pub outcome: String,
}

/// An agent token the operator issued (the token itself is kept hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

/// A node a remote agent registered.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub name: String,
    pub agent_id: i64,
    /// Its devices as last reported (JSON).
    pub devices: String,
    /// `up` or `dead`.
    pub state: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Whose usage to list.
#[derive(Debug, Clone, Copy)]
pub enum UsageScope {
    /// What one account consumed.
    Consumer(i64),
    /// Use of one vendor's IPs.
    Vendor(i64),
    /// Everything.
    All,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Accounts and tokens.
    async fn create_account(&self, name: &str, role: Role, token_hash: &str) -> Result<Account>;
    async fn add_token(&self, account_id: i64, token_hash: &str) -> Result<()>;
    async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>>;
    async fn account_by_name(&self, name: &str) -> Result<Option<Account>>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;

    // IPs and versions.
    /// Create a version (and its IP on first publish) in state `pending`.
    /// Fails with [`StoreError::Conflict`] if the version exists.
    async fn create_version(&self, v: NewVersion) -> Result<VersionRow>;
    async fn get_version(&self, ip: &str, version: &str) -> Result<Option<VersionRow>>;
    async fn get_version_by_id(&self, id: i64) -> Result<Option<VersionRow>>;
    /// All versions of an IP, newest first.
    async fn list_versions(&self, ip: &str) -> Result<Vec<VersionRow>>;
    /// The newest version of every IP, by name.
    async fn list_latest_versions(&self) -> Result<Vec<VersionRow>>;
    async fn pending_versions(&self) -> Result<Vec<VersionRow>>;
    async fn set_version_status(
        &self,
        id: i64,
        status: VersionStatus,
        report: &VerificationReport,
    ) -> Result<()>;
    /// The vendor owning an IP name, if it was ever published.
    async fn ip_vendor(&self, ip: &str) -> Result<Option<i64>>;

    // Deployments.
    async fn upsert_deployment(
        &self,
        id: &str,
        account_id: i64,
        version_id: i64,
    ) -> Result<DeploymentRow>;
    async fn get_deployment(&self, account_id: i64, ip: &str) -> Result<Option<DeploymentRow>>;
    async fn list_deployments(&self, account_id: i64) -> Result<Vec<DeploymentRow>>;
    async fn delete_deployment(&self, account_id: i64, ip: &str) -> Result<bool>;
    async fn set_scaling(&self, deployment_id: &str, scaling: &Scaling) -> Result<()>;
    /// Advance how far a deployment's reservation is metered, from `from`
    /// (what the caller read) to `to`; false when another process moved it
    /// first (that process meters the interval).
    async fn advance_metered_until(
        &self,
        deployment_id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool>;
    /// Set the device classes a deployment's calls prefer, in order.
    async fn set_device_preference(&self, deployment_id: &str, devices: &[String]) -> Result<()>;
    /// Every deployment with its jobs queued and running.
    async fn deployment_demand(&self) -> Result<Vec<DeploymentDemand>>;
    async fn deployment_demand_of(&self, deployment_id: &str) -> Result<Option<DeploymentDemand>>;
    /// Set a deployment's replicas to `to` (and `low_since`) if they are
    /// still `from`, recording `reason` as a scaling event when the
    /// replicas change. False: another control plane moved first.
    async fn scale_deployment(
        &self,
        deployment_id: &str,
        from: u32,
        to: u32,
        low_since: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<bool>;
    /// Jobs running now, by account and IP.
    async fn running_counts(&self) -> Result<Vec<(i64, String, u32)>>;
    /// A deployment's latest scaling events, newest first.
    async fn scaling_events(&self, deployment_id: &str, limit: u32) -> Result<Vec<ScalingEvent>>;
    /// Every scaling event of a deployment from `since` on, oldest first,
    /// preceded by the last one before `since` (what held at `since`).
    async fn scaling_history(
        &self,
        deployment_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ScalingEvent>>;

    // Objects owned by accounts.
    async fn put_object(&self, account_id: i64, key: &str, size: u64, sha256: &str) -> Result<()>;
    async fn get_object(&self, account_id: i64, key: &str) -> Result<Option<ObjectRow>>;
    async fn list_objects(&self, account_id: i64) -> Result<Vec<ObjectRow>>;
    async fn delete_object(&self, account_id: i64, key: &str) -> Result<bool>;

    // Jobs: a durable queue with leases.
    async fn create_job(&self, job: NewJob) -> Result<JobRow>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRow>>;
    async fn list_jobs(&self, account_id: i64, limit: u32) -> Result<Vec<JobRow>>;
    /// Take the oldest queued job of one of `devices`: it becomes `running`
    /// under a lease held by `worker` until `lease_until`, and a new attempt
    /// is recorded.
    async fn claim_job(
        &self,
        worker: &str,
        devices: &[String],
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>>;
    /// Lease this job if it is still queued (a scheduler chose it) and its
    /// deployment, if it has one, runs fewer jobs than its replicas.
    async fn claim_job_id(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>>;
    /// The oldest queued jobs of these devices (candidates for a
    /// scheduler), at most 4 of each account's IP version so that one
    /// deployment's backlog never hides another's; without their history.
    async fn queued_jobs(&self, devices: &[String], limit: u32) -> Result<Vec<JobRow>>;
    /// Extend a lease and record progress (a fraction, and items done in
    /// the IP's unit when it counts them). Returns the job's state: a
    /// worker whose job is no longer `running` under its lease must stop.
    async fn renew_lease(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: f64,
        items: Option<(u64, &str)>,
    ) -> Result<Option<JobState>>;
    /// Finish the attempt held by `worker`, and write its usage record in
    /// the same transaction. Returns false (and writes nothing) if the
    /// worker no longer holds the job.
    async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        outcome: JobOutcome,
        usage: Option<NewUsage>,
    ) -> Result<bool>;
    /// Cancel a job that has not finished. Returns its state afterwards.
    async fn cancel_job(&self, id: &str) -> Result<Option<JobState>>;
    /// Jobs whose lease expired before `now` (their worker died): the
    /// attempt is marked `lost`; the job is queued again, or failed once
    /// it has had `max_attempts`. Returns the ids touched.
    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<Vec<String>>;
    /// Give up every lease held by `worker` at once (its process restarted,
    /// or its node stopped heartbeating): each attempt is marked `lost`
    /// with `why`.
    async fn release_worker(&self, worker: &str, why: &str) -> Result<Vec<String>>;
    async fn delete_job(&self, id: &str) -> Result<bool>;

    // Remote agents and their nodes.
    async fn create_agent(&self, name: &str, token_hash: &str) -> Result<AgentRow>;
    /// The agent a token belongs to, unless it was revoked.
    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentRow>>;
    async fn list_agents(&self) -> Result<Vec<AgentRow>>;
    /// Revoke an agent's token. Returns false if there is no such agent.
    async fn revoke_agent(&self, name: &str) -> Result<bool>;
    /// Register a node or record its heartbeat: it is `up`, seen now, held
    /// by `agent_id`, with these devices (JSON).
    async fn node_seen(&self, name: &str, agent_id: i64, devices: &str) -> Result<()>;
    async fn get_node(&self, name: &str) -> Result<Option<NodeRow>>;
    async fn list_nodes(&self) -> Result<Vec<NodeRow>>;
    /// Declare dead the nodes that are up but were last seen before
    /// `silent_since`. Returns their names.
    async fn mark_dead_nodes(&self, silent_since: DateTime<Utc>) -> Result<Vec<String>>;

    // Metering.
    /// Durably record a usage record: when this returns, the record
    /// survives a crash of the process. A record whose id is already
    /// recorded is never written twice.
    async fn record_usage(&self, usage: NewUsage) -> Result<()>;

    // ---- Marketplace ----

    /// Write `account_id`'s review of `ip` (replacing an earlier one).
    async fn put_review(
        &self,
        ip: &str,
        account_id: i64,
        stars: u8,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<accelhub_domain::Review>;
    /// Reviews of an IP, newest first.
    async fn list_reviews(&self, ip: &str) -> Result<Vec<accelhub_domain::Review>>;
    /// Set the vendor's reply to review `id` of `ip`; `None` if there is
    /// no such review of that IP.
    async fn reply_review(
        &self,
        ip: &str,
        id: i64,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<accelhub_domain::Review>>;
    /// Ratings and use of every IP that has any.
    async fn ip_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<String, accelhub_domain::IpStats>>;
    /// Whether the account has run any version of `ip` successfully.
    async fn has_used(&self, account_id: i64, ip: &str) -> Result<bool>;

    // ---- Billing ----

    /// Subscribe `account_id` to `plan` of `ip` from `since` (a new entry
    /// of its history).
    async fn subscribe(
        &self,
        account_id: i64,
        ip: &str,
        plan: &str,
        since: DateTime<Utc>,
    ) -> Result<accelhub_domain::billing::Subscription>;
    /// An account's subscription history, oldest first (all IPs, or one).
    async fn subscriptions(
        &self,
        account_id: Option<i64>,
        ip: Option<&str>,
    ) -> Result<Vec<(i64, accelhub_domain::billing::Subscription)>>;
    async fn set_spending_limit(&self, account_id: i64, monthly: Option<Money>) -> Result<()>;
    async fn spending_limit(&self, account_id: i64) -> Result<Option<Money>>;
    async fn list_usage(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<UsageRecord>>;
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn params_from(s: &str) -> Result<Params> {
    match from_json::<Value>("params", s)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Corrupt("params: not an object".into())),
    }
}
