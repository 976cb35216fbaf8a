//! Request and response bodies of the API that are not entities of their
//! own: shared by the server and its clients.

use crate::account::{Account, Role};
use crate::money::Money;
use crate::version::IpVersion;
use crate::Params;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user's deployment of an IP version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    pub ip: String,
    pub version: String,
    pub devices: Vec<String>,
    pub price_per_call: Money,
    pub created_at: DateTime<Utc>,
}

/// An object in an account's private space.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// An IP in the catalog with its newest version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogEntry {
    pub ip: String,
    pub vendor: String,
    pub latest: IpVersion,
}

/// One IP with all its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IpDetails {
    pub ip: String,
    /// Newest first, each with its status and verification report.
    pub versions: Vec<IpVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Lowercase letters, digits, `-` and `_`. A vendor's name is its
    /// namespace.
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedAccount {
    pub account: Account,
    /// The account's API token. Shown once; only its hash is kept.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// `namespace/name`.
    pub ip: String,
    /// A verified version; default: the newest verified one.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// `namespace/name` of a deployed IP.
    pub ip: String,
    /// Key of one of the caller's objects.
    pub input: String,
    /// The call's parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Params,
}

/// The operator's view of the fleet: nodes, their devices and slots.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Fleet {
    pub nodes: Vec<FleetNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetNode {
    pub name: String,
    /// `up`, or why not.
    pub health: String,
    pub devices: Vec<FleetDevice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetDevice {
    /// Device class, e.g. `wasm`, `cpu`.
    pub class: String,
    pub slots: usize,
    /// Slots running a call now.
    pub busy: usize,
    /// `busy / slots`, 0.0 to 1.0.
    pub utilisation: f64,
    /// Images loaded and ready, as `ip@version` where known.
    pub loaded: Vec<String>,
    /// Resident data (SHA-256 of objects kept between calls).
    pub resident: Vec<String>,
}
