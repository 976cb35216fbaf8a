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
    /// The verified device classes calls go to, in preference order.
    pub devices: Vec<String>,
    pub price_per_call: Money,
    pub created_at: DateTime<Utc>,
    pub scaling: Scaling,
    /// Device slots its jobs may run on at once, as the autoscaler set it.
    pub replicas: u32,
    /// The autoscaler's latest decisions, newest first (only when one
    /// deployment is shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ScalingEvent>,
}

/// How a deployment scales. Its replicas are the device slots its jobs
/// may run on at once: the autoscaler keeps them at the jobs queued and
/// running divided by `target`, within `min..=max`, scaling out at once
/// and in only after `scale_down_delay_secs` below that (to zero when
/// `min` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    pub min: u32,
    pub max: u32,
    /// Jobs, queued and running, per replica.
    pub target: u32,
    pub scale_down_delay_secs: u64,
}

impl Default for Scaling {
    fn default() -> Self {
        Scaling {
            min: 0,
            max: 16,
            target: 1,
            scale_down_delay_secs: 60,
        }
    }
}

impl Scaling {
    pub fn validate(&self) -> Result<(), String> {
        if self.max == 0 || self.max > 1024 {
            return Err(format!("scaling: max must be 1 to 1024 (got {})", self.max));
        }
        if self.min > self.max {
            return Err(format!(
                "scaling: min ({}) is above max ({})",
                self.min, self.max
            ));
        }
        if self.target == 0 {
            return Err("scaling: target must be at least 1 job per replica".into());
        }
        if self.scale_down_delay_secs > 7 * 24 * 3600 {
            return Err("scaling: scale_down_delay_secs is at most a week".into());
        }
        Ok(())
    }
}

/// One decision of the autoscaler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScalingEvent {
    pub at: DateTime<Utc>,
    pub from: u32,
    pub to: u32,
    pub reason: String,
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
    /// Ratings and use, all versions.
    #[serde(default)]
    pub stats: crate::IpStats,
}

/// One IP with all its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IpDetails {
    pub ip: String,
    /// Newest first, each with its status and verification report.
    pub versions: Vec<IpVersion>,
    /// Ratings and use, all versions.
    #[serde(default)]
    pub stats: crate::IpStats,
    /// The newest 1000, newest first (`GET /v1/ips/{namespace}/{name}/reviews`
    /// pages through all).
    #[serde(default)]
    pub reviews: Vec<crate::Review>,
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
    #[schema(
        pattern = r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$",
        example = "acme/echo"
    )]
    pub ip: String,
    /// A verified version; default: the newest verified one.
    pub version: Option<String>,
    /// Default: the deployment's current scaling, or the platform's
    /// default for a new one.
    #[serde(default)]
    pub scaling: Option<Scaling>,
    /// Device classes calls prefer, in order (each must have passed
    /// verification); default: the deployment's current order, or the
    /// version's verified classes in `ip.toml` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// `namespace/name` of a deployed IP.
    #[schema(
        pattern = r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$",
        example = "acme/echo"
    )]
    pub ip: String,
    /// Key of one of the caller's objects.
    #[schema(example = "ping")]
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
    /// The physical devices behind the class (accelerators), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hardware: Vec<DeviceHardware>,
}

/// One physical accelerator as its runtime reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceHardware {
    pub name: String,
    pub vendor: String,
    /// The runtime: `OpenCL 3.0 PoCL …`, `CUDA 12.8`…
    pub runtime: String,
    pub memory_bytes: u64,
    pub compute_units: u32,
    /// Slots (concurrent calls) this device offers.
    pub slots: usize,
}
