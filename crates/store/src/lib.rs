//! The metadata store: every durable fact of the control plane.
//!
//! [`Store`] is the seam, made of one trait per concern (accounts, the
//! catalog, deployments, objects, jobs, the fleet, the marketplace,
//! billing). [`SqlStore`] implements all of them once, on SQLite (the
//! embedded default, [`SqlStore::open_sqlite`]) or on PostgreSQL (which
//! several control planes share, [`SqlStore::open_postgres`]): each
//! statement is written once, and what differs between the two databases
//! (pools, transaction start, row locks, the usage journal) is confined to
//! `sql.rs`, `sqlite.rs` and `postgres.rs`.
//! Only this crate knows SQL. Timestamps are kept as Unix milliseconds.

mod accounts;
mod billing;
mod catalog;
mod deployments;
mod fleet;
mod jobs;
mod journal;
mod market;
mod objects;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use accounts::AccountStore;
pub use billing::BillingStore;
pub use catalog::CatalogStore;
pub use deployments::DeploymentStore;
pub use fleet::FleetStore;
pub use jobs::JobStore;
pub use market::MarketStore;
pub use objects::ObjectIndex;

use journal::Journal;
use sql::Db;
use std::sync::Arc;

/// The store on a SQL database: SQLite or PostgreSQL.
///
/// On SQLite, usage records (written once per call) go through a
/// write-ahead journal (see `journal.rs`) and reach the `usage` table in
/// batches; on PostgreSQL they are inserted as calls finish. Either way the
/// primary key keeps each record once.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Db,
    journal: Option<Arc<Journal>>,
}

impl SqlStore {
    /// Make usage records appended so far readable from the `usage` table.
    async fn flush_usage(&self) -> Result<()> {
        match &self.journal {
            Some(j) => j.flush().await,
            None => Ok(()),
        }
    }
}

use accelhub_domain::{
    Account, FleetDevice, JobAttempt, JobState, Limits, Money, Params, Scaling, ScalingEvent,
    UsageRecord, VerificationReport, VersionStatus,
};
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
    /// The disk (of the database or the usage journal) is full.
    #[error("no space left on the server's disk: {0}")]
    Full(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // SQLITE_FULL; PostgreSQL's disk_full.
            sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("13" | "53100")) => {
                StoreError::Full(db.message().to_string())
            }
            sqlx::Error::Io(io) if disk_full(io) => StoreError::Full(io.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl StoreError {
    /// A unique-key conflict named as what the caller tried to create.
    pub(crate) fn conflict_as(self, what: impl FnOnce() -> String) -> StoreError {
        match self {
            StoreError::Conflict(_) => StoreError::Conflict(what()),
            other => other,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether an I/O error says the disk (or the quota) is full.
pub(crate) fn disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

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
    pub outputs: Vec<accelhub_domain::OutputParam>,
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
    /// Named outputs, the main one first.
    pub outputs: Vec<accelhub_domain::OutputParam>,
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
    /// Every output of a succeeded job, the main one first.
    pub outputs: Vec<accelhub_domain::JobOutput>,
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
        /// Every output, the main one (`output_key`) first.
        outputs: Vec<accelhub_domain::JobOutput>,
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
    pub kind: accelhub_domain::UsageKind,
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
pub struct AgentTokenRow {
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
    /// Its devices as last reported.
    pub devices: Vec<FleetDevice>,
    pub state: accelhub_domain::agent::NodeState,
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

/// Everything the control plane keeps: one trait per concern, each in the
/// module that implements it on [`SqlStore`]. Callers hold an
/// `Arc<dyn Store>`; a trait object's supertrait methods need no import.
pub trait Store:
    AccountStore
    + CatalogStore
    + DeploymentStore
    + ObjectIndex
    + JobStore
    + FleetStore
    + MarketStore
    + BillingStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AccountStore
        + CatalogStore
        + DeploymentStore
        + ObjectIndex
        + JobStore
        + FleetStore
        + MarketStore
        + BillingStore
        + Send
        + Sync
        + 'static
{
}

pub(crate) fn now_ms() -> i64 {
    millis(Utc::now())
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
