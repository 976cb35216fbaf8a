//! Accelhub domain types.
//!
//! Everything here is plain data and pure functions: no IO, no clocks beyond
//! the timestamps callers pass in. The store persists these types, the API
//! serialises them, the CLI prints them.

pub mod account;
pub mod agent;
pub mod billing;
pub mod job;
pub mod kernel;
pub mod limits;
pub mod manifest;
pub mod market;
pub mod money;
pub mod page;
pub mod problem;
pub mod usage;
pub mod version;
pub mod views;

pub use account::{Account, Role};
pub use agent::{
    AgentHello, AgentToken, ClaimRequest, CreateAgentToken, CreatedAgentToken, JobReport,
    LeaseState, NodeReport, NodeState, Recorded, Renewal, WorkItem, WorkObject,
};
pub use job::{Job, JobAttempt, JobOutput, JobState, MAIN_OUTPUT};
pub use limits::{Limits, LimitsRequest};
pub use manifest::{IpName, Manifest, ManifestError, ObjectParam, OutputParam, MAX_OUTPUTS};
pub use market::{
    CatalogFilter, CatalogSort, IpStats, RatingSummary, Reply, Review, SubmitReply, SubmitReview,
};
pub use money::Money;
pub use page::{page_limit, Cursor, Page, PAGE_DEFAULT, PAGE_MAX};
pub use problem::Problem;
pub use usage::{UsageKind, UsageRecord, UsageReport, UsageTotals};
pub use version::{
    Compare, ImplementationReport, IpVersion, TestOutcome, VerificationReport, VersionStatus,
};
pub use views::{
    CatalogEntry, CreateAccount, CreatedAccount, DeployRequest, Deployment, DeviceHardware, Fleet,
    FleetDevice, FleetNode, IpDetails, ObjectInfo, Scaling, ScalingEvent, SubmitJob,
};

/// A device class names a kind of accelerator an implementation runs on.
pub const DEVICE_WASM: &str = "wasm";
/// Native CPU kernels: first-party code, compiled into the agent.
pub const DEVICE_NATIVE: &str = "cpu";

/// Parameters of a call: one JSON object.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// Parse call parameters, which must be one JSON object.
pub fn parse_params(text: &str) -> Result<Params, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "parameters must be a JSON object, got {}",
            json_kind(&other)
        )),
        Err(e) => Err(format!("parameters are not valid JSON: {e}")),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Account names and IP names: lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit, 1 to 64 characters.
pub fn validate_slug(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{what} must be 1 to 64 characters long"));
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!(
            "{what} '{s}' must start with a lowercase letter or a digit"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} '{s}' contains '{c}': use lowercase letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_an_object() {
        assert!(parse_params(r#"{"a":1}"#).is_ok());
        assert!(parse_params("[1]").unwrap_err().contains("an array"));
        assert!(parse_params("{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn slugs() {
        assert!(validate_slug("name", "acme-1").is_ok());
        assert!(validate_slug("name", "").is_err());
        assert!(validate_slug("name", "Acme").is_err());
        assert!(validate_slug("name", "-x").is_err());
        assert!(validate_slug("name", "a/b").unwrap_err().contains("'/'"));
    }
}
