//! Asynchronous jobs.

use crate::Params;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Finished jobs never change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            o => Err(format!("unknown job state '{o}'")),
        }
    }
}

/// One attempt at running a job. A job whose worker died is retried; each
/// try is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobAttempt {
    pub attempt: u32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed`, `cancelled` or `lost` (the worker
    /// died or its lease expired).
    pub outcome: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub account: String,
    pub ip: String,
    pub version: String,
    pub device: String,
    pub input_key: String,
    pub input_size: u64,
    #[schema(value_type = Object)]
    pub params: Params,
    pub state: JobState,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// Work items done so far, for IPs that count them (e.g. reads).
    #[serde(default)]
    pub items: Option<u64>,
    /// The unit of `items`.
    #[serde(default)]
    pub unit: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// Object key of the output, once succeeded.
    pub output_key: Option<String>,
    pub output_size: Option<u64>,
    /// Every output of a succeeded job, the main one first: an IP that
    /// declares `[[output]]`s gives each its name; otherwise the one
    /// output is called `output`.
    #[serde(default)]
    pub outputs: Vec<JobOutput>,
    pub error: Option<String>,
    /// The tail of what the IP wrote to stderr.
    pub log: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub history: Vec<JobAttempt>,
}

/// One output of a succeeded job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobOutput {
    pub name: String,
    /// The object it is kept as, in the job owner's space.
    pub key: String,
    pub size: u64,
}

/// The name of the output of an IP that declares none.
pub const MAIN_OUTPUT: &str = "output";
