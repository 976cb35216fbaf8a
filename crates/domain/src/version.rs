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
    /// Named outputs, the main one first (see `[[output]]`).
    #[serde(default)]
    pub outputs: Vec<crate::OutputParam>,
    pub price_per_call: Money,
    /// Every plan, the default `per-call` one first.
    #[serde(default)]
    pub plans: Vec<crate::billing::Plan>,
    /// Free successful calls per user.
    #[serde(default)]
    pub trial_calls: u64,
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
    /// Why this implementation was not verified (no device of its class
    /// where verification ran); it takes no calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
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

/// How a test vector's output is compared with its expectation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "as", rename_all = "lowercase")]
pub enum Compare {
    /// Byte for byte.
    #[default]
    Bytes,
    /// As little-endian `f32` values, each within `tolerance` relative to
    /// its expected magnitude (absolute below 1): devices round
    /// differently.
    F32 { tolerance: f64 },
    /// As little-endian `f64` values, likewise.
    F64 { tolerance: f64 },
}

impl Compare {
    /// Whether this is the default byte comparison (not worth storing).
    pub fn is_bytes(&self) -> bool {
        matches!(self, Compare::Bytes)
    }
}

impl TestOutcome {
    /// Compare an actual output with the expectation, byte for byte.
    pub fn compare(expected: &[u8], actual: &[u8]) -> (bool, Option<u64>) {
        Self::compare_as(Compare::Bytes, expected, actual)
    }

    /// Compare as the test vector says; the second value is the byte
    /// offset of the first difference.
    pub fn compare_as(how: Compare, expected: &[u8], actual: &[u8]) -> (bool, Option<u64>) {
        let (width, tolerance) = match how {
            Compare::Bytes => (0, 0.0),
            Compare::F32 { tolerance } => (4, tolerance),
            Compare::F64 { tolerance } => (8, tolerance),
        };
        if width > 0 && expected.len() == actual.len() && expected.len().is_multiple_of(width) {
            let value = |b: &[u8]| -> f64 {
                if width == 4 {
                    f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
                } else {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                }
            };
            let bad = expected
                .chunks_exact(width)
                .zip(actual.chunks_exact(width))
                .position(|(e, a)| {
                    let (e, a) = (value(e), value(a));
                    !((e - a).abs() <= tolerance * e.abs().max(1.0) || (e.is_nan() && a.is_nan()))
                });
            return match bad {
                None => (true, None),
                Some(i) => (false, Some((i * width) as u64)),
            };
        }
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
    fn floats_compare_within_their_tolerance() {
        let enc = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let how = Compare::F32 { tolerance: 1e-5 };
        let e = enc(&[8.021352, 0.5, 1000.0]);
        assert_eq!(
            TestOutcome::compare_as(how, &e, &enc(&[8.021353, 0.500001, 1000.004])),
            (true, None)
        );
        assert_eq!(
            TestOutcome::compare_as(how, &e, &enc(&[8.021352, 0.5, 1000.1])),
            (false, Some(8))
        );
        assert_eq!(
            TestOutcome::compare_as(how, &e, &enc(&[8.021352, f32::NAN, 1000.0])),
            (false, Some(4))
        );
        // A different length is a difference however the values compare.
        assert_eq!(TestOutcome::compare_as(how, &e, &e[..8]), (false, Some(8)));
        assert!(!TestOutcome::compare_as(Compare::Bytes, &e, &enc(&[8.021353, 0.5, 1000.0])).0);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail(b"hello world", 5), "world");
        assert_eq!(tail(b"hi", 5), "hi");
    }
}
