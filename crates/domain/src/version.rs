//! IP versions and their verification.

use crate::limits::Limits;
use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Published, verification not finished.
    Pending,
    /// Every test vector passed on every device class: deployable.
    Verified,
    /// At least one test vector failed; see the report.
    Rejected,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Pending => "pending",
            VersionStatus::Verified => "verified",
            VersionStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VersionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "verified" => Ok(Self::Verified),
            "rejected" => Ok(Self::Rejected),
            o => Err(format!("unknown version status '{o}'")),
        }
    }
}

/// One published version of an IP, as the catalog shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IpVersion {
    /// `namespace/name`.
    pub ip: String,
    pub version: String,
    pub status: VersionStatus,
    pub summary: String,
    /// Markdown description, if the package had one.
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// Device classes this version has implementations for.
    pub devices: Vec<String>,
    /// Parameters that name one of the caller's objects.
    #[serde(default)]
    pub objects: Vec<crate::ObjectParam>,
    pub price_per_call: Money,
    pub limits: Limits,
    pub report: Option<VerificationReport>,
    pub published_at: DateTime<Utc>,
}

/// The outcome of running every test vector on every implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationReport {
    pub passed: bool,
    pub implementations: Vec<ImplementationReport>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImplementationReport {
    pub device: String,
    pub passed: bool,
    /// Why the artifact could not be loaded (not valid WebAssembly, missing
    /// imports, no device of this class…).
    pub load_error: Option<String>,
    /// Time to load (compile, program) the artifact, in milliseconds.
    pub load_ms: f64,
    pub tests: Vec<TestOutcome>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    pub expected_size: u64,
    /// Size of what the IP produced; absent when the call failed.
    pub actual_size: Option<u64>,
    /// Offset of the first byte that differs from the expectation.
    pub first_difference: Option<u64>,
    pub exit_code: Option<i32>,
    /// Trap, deadline, memory or output cap, or non-zero exit.
    pub error: Option<String>,
    /// The last lines the IP wrote to stderr.
    pub stderr_tail: String,
    pub device_time_ms: f64,
}

impl TestOutcome {
    /// Compare an actual output with the expectation.
    pub fn compare(expected: &[u8], actual: &[u8]) -> (bool, Option<u64>) {
        if expected == actual {
            return (true, None);
        }
        let first = expected
            .iter()
            .zip(actual.iter())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.len().min(actual.len()));
        (false, Some(first as u64))
    }
}

/// The last `max` bytes of a log, cut at a character boundary.
pub fn tail(log: &[u8], max: usize) -> String {
    let start = log.len().saturating_sub(max);
    let s = String::from_utf8_lossy(&log[start..]);
    s.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference() {
        assert_eq!(TestOutcome::compare(b"abc", b"abc"), (true, None));
        assert_eq!(TestOutcome::compare(b"abc", b"abd"), (false, Some(2)));
        assert_eq!(TestOutcome::compare(b"abc", b"ab"), (false, Some(2)));
        assert_eq!(TestOutcome::compare(b"", b"x"), (false, Some(0)));
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail(b"hello world", 5), "world");
        assert_eq!(tail(b"hi", 5), "hi");
    }
}
