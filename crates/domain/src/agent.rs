//! Remote agents: the tokens the operator issues them and the protocol
//! they speak with the control plane (register, heartbeat, claim, renew,
//! finish).

use crate::{FleetDevice, Limits, Params};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An agent token as the operator sees it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentToken {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentToken {
    pub name: String,
}

/// A new agent token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedAgentToken {
    pub agent: AgentToken,
    pub token: String,
}

/// Whether a registered node is alive: `up` while it heartbeats, `dead`
/// once it has been silent for a whole lease (its jobs went back to the
/// queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Up,
    Dead,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Dead => "dead",
        }
    }
}

impl std::str::FromStr for NodeState {
    type Err = String;
    fn from_str(s: &str) -> Result<NodeState, String> {
        match s {
            "up" => Ok(NodeState::Up),
            "dead" => Ok(NodeState::Dead),
            other => Err(format!("unknown node state '{other}'")),
        }
    }
}

/// A node and its devices, as its agent reports them when it registers
/// and with every heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeReport {
    pub devices: Vec<FleetDevice>,
}

/// The control plane's answer to a registration: how often to heartbeat
/// and how long a job lease lasts without renewal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentHello {
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
}

/// Ask for a job of one of these device classes, waiting up to `wait_ms`
/// for one to be queued. `images` and `resident` say what the asking
/// worker's device holds: the scheduler prefers jobs that need no
/// reconfiguration there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ClaimRequest {
    pub devices: Vec<String>,
    #[serde(default)]
    pub wait_ms: u64,
    /// Images loaded on the device (`device:artifact-sha256`).
    #[serde(default)]
    pub images: Vec<String>,
    /// Resident data on the device (SHA-256 of objects).
    #[serde(default)]
    pub resident: Vec<String>,
}

/// A job leased to a node: everything its worker needs to run it. The
/// input, object inputs, artifact and output travel through the
/// `/v1/agent/jobs/{id}/…` endpoints while the lease is held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkItem {
    pub job: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    /// The image to load: `device:artifact-sha256`.
    pub image: String,
    pub input_key: String,
    pub input_size: u64,
    #[schema(value_type = Object)]
    pub params: Params,
    pub limits: Limits,
    pub objects: Vec<WorkObject>,
    /// The named outputs the IP writes beside its main one (its
    /// `[[output]]`s after the first), each uploaded by name.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// How long the lease lasts without renewal.
    pub lease_ms: u64,
}

/// An object input of a job, resolved in its owner's space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkObject {
    /// The parameter's name.
    pub name: String,
    /// The owner's key for it, for messages.
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// Progress of a leased job; renews its lease.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Renewal {
    /// 0.0 to 1.0.
    pub progress: f64,
    /// Items done in the IP's unit (e.g. reads), when it counts them.
    pub items: Option<u64>,
    pub unit: Option<String>,
}

/// Whether the worker should go on: false once the job was cancelled or
/// its lease moved to another node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseState {
    pub running: bool,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum JobReport {
    /// The output was uploaded first.
    Succeeded {
        output_size: u64,
        /// The named outputs this attempt uploaded (the main one is always
        /// there); any other a former attempt left is dropped.
        #[serde(default)]
        outputs: Vec<String>,
        log: Option<String>,
        items: Option<u64>,
        unit: Option<String>,
        device_time_ms: u64,
    },
    Failed {
        error: String,
        log: Option<String>,
    },
}

/// Whether a report was recorded: false when the node no longer held the
/// job (it was cancelled, or re-leased after this node went silent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Recorded {
    pub recorded: bool,
}
