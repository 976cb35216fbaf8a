//! Resource limits of one call: deadline, memory, output size.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Limits one call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Wall-clock deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap, in bytes.
    pub memory_bytes: u64,
    /// Output cap, in bytes.
    pub output_bytes: u64,
}

const MIB: u64 = 1 << 20;

impl Limits {
    /// The defaults an IP gets when its manifest names none.
    pub const DEFAULT: Limits = Limits {
        timeout_ms: 10_000,
        memory_bytes: 256 * MIB,
        output_bytes: 64 * MIB,
    };
    /// The most an IP may ask for, unless the operator says otherwise.
    pub const MAX: Limits = Limits {
        timeout_ms: 600_000,
        memory_bytes: 4096 * MIB,
        output_bytes: 4096 * MIB,
    };
}

/// What an IP's manifest asks for, in `[limits]`; absent fields take the
/// operator's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub output_mb: Option<u64>,
}

impl LimitsRequest {
    /// Resolve against the operator's defaults and maxima. A request above a
    /// maximum is an error naming the field, never silently cut.
    pub fn resolve(&self, default: &Limits, max: &Limits) -> Result<Limits, (String, String)> {
        let timeout_ms = self.timeout_ms.unwrap_or(default.timeout_ms);
        let memory_bytes = self
            .memory_mb
            .map(|m| m.saturating_mul(MIB))
            .unwrap_or(default.memory_bytes);
        let output_bytes = self
            .output_mb
            .map(|m| m.saturating_mul(MIB))
            .unwrap_or(default.output_bytes);
        let check = |field: &str, v: u64, m: u64, unit: &str, scale: u64| {
            if v == 0 {
                Err((
                    format!("limits.{field}"),
                    "must be greater than 0".to_string(),
                ))
            } else if v > m {
                Err((
                    format!("limits.{field}"),
                    format!(
                        "{} exceeds the platform's maximum of {} {unit}",
                        v / scale,
                        m / scale
                    ),
                ))
            } else {
                Ok(())
            }
        };
        check("timeout_ms", timeout_ms, max.timeout_ms, "ms", 1)?;
        check("memory_mb", memory_bytes, max.memory_bytes, "MiB", MIB)?;
        check("output_mb", output_bytes, max.output_bytes, "MiB", MIB)?;
        Ok(Limits {
            timeout_ms,
            memory_bytes,
            output_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_defaults_and_maxima() {
        let r = LimitsRequest::default()
            .resolve(&Limits::DEFAULT, &Limits::MAX)
            .unwrap();
        assert_eq!(r, Limits::DEFAULT);
        let r = LimitsRequest {
            timeout_ms: Some(5),
            memory_mb: Some(1),
            output_mb: None,
        }
        .resolve(&Limits::DEFAULT, &Limits::MAX)
        .unwrap();
        assert_eq!(r.timeout_ms, 5);
        assert_eq!(r.memory_bytes, MIB);
        let err = LimitsRequest {
            memory_mb: Some(1 << 20),
            ..Default::default()
        }
        .resolve(&Limits::DEFAULT, &Limits::MAX)
        .unwrap_err();
        assert_eq!(err.0, "limits.memory_mb");
        assert!(err.1.contains("maximum"));
        let err = LimitsRequest {
            timeout_ms: Some(0),
            ..Default::default()
        }
        .resolve(&Limits::DEFAULT, &Limits::MAX)
        .unwrap_err();
        assert_eq!(err.0, "limits.timeout_ms");
    }
}
