//! The error document of the HTTP API: an RFC 9457
//! `application/problem+json` body. The server writes it, clients read it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://accelhub.dev/problems/";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    /// What went wrong and what to do about it.
    #[serde(default)]
    pub detail: String,
    /// For failed calls: the call's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// For failed calls: `exit`, `trap`, `deadline`, `memory`, `output`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// For failed calls: the tail of the IP's stderr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl Problem {
    /// A problem of kind `kind` (the last segment of its `type` URI).
    pub fn new(status: u16, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("{PROBLEM_BASE}{kind}"),
            title: title.to_string(),
            status,
            detail: detail.into(),
            ..Problem::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_sparse_documents() {
        let mut p = Problem::new(422, "ip-call-failed", "Unprocessable Entity", "boom");
        p.exit_code = Some(3);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""type":"https://accelhub.dev/problems/ip-call-failed""#));
        assert!(!text.contains("call_id"), "{text}");
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap(), p);
        // Another server's problem may carry only some fields.
        let sparse: Problem = serde_json::from_str(r#"{"detail":"no"}"#).unwrap();
        assert_eq!(sparse.detail, "no");
        assert_eq!(sparse.status, 0);
    }
}
