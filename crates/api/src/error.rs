//! HTTP errors as RFC 9457 `application/problem+json`.

use accelhub_core::CoreError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// For failed calls: the call's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// For failed calls: `exit`, `trap`, `deadline`, `memory`, `output`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// For failed calls: the tail of the IP's stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: Box<Problem>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            problem: Box::new(Problem {
                kind: format!("https://accelhub.dev/problems/{kind}"),
                title: status.canonical_reason().unwrap_or("Error").to_string(),
                status: status.as_u16(),
                detail: detail.into(),
                call_id: None,
                failure: None,
                exit_code: None,
                log: None,
            }),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let detail = e.to_string();
        match e {
            CoreError::BadRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
            }
            CoreError::Unauthorized => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid API token: send `Authorization: Bearer <token>` \
                 (the CLI reads ACCELHUB_TOKEN)",
            ),
            CoreError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail),
            CoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not-found", detail),
            CoreError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", detail),
            CoreError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
            }
            CoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            CoreError::PaymentRequired(_) => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "spending-limit", detail)
            }
            CoreError::QuotaExceeded(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota-exceeded", detail)
            }
            CoreError::CallFailed {
                call_id,
                kind,
                message,
                exit_code,
                log,
            } => {
                let mut err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ip-call-failed",
                    format!("the IP failed this call: {message}"),
                );
                err.problem.call_id = Some(call_id);
                err.problem.failure = Some(kind);
                err.problem.exit_code = exit_code;
                err.problem.log = Some(log);
                err
            }
            CoreError::Internal(m) => {
                tracing::error!("internal error: {m}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the operator's log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
