//! HTTP errors as RFC 9457 `application/problem+json`.

use accelhub_core::CoreError;
pub use accelhub_domain::Problem;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: Box<Problem>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            problem: Box::new(Problem::new(
                status.as_u16(),
                kind,
                status.canonical_reason().unwrap_or("Error"),
                detail,
            )),
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

/// One of axum's own rejections (bad path segment, query string or JSON),
/// as a problem: its text names what to fix.
fn rejection(status: StatusCode, what: &str, text: String) -> ApiError {
    if status.is_server_error() {
        // A route and its handler disagree: a bug, not the caller's.
        tracing::error!("request rejected with {status}: {text}");
        return ApiError::new(
            status,
            "internal",
            "internal error; the operator's log has the details",
        );
    }
    ApiError::new(
        status,
        "bad-request",
        format!("{what}: {text}; see /v1/openapi.json for what this endpoint takes"),
    )
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        rejection(r.status(), "a path segment is invalid", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejection(r.status(), "the query string is invalid", r.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejection(
            r.status(),
            "the JSON request body is invalid",
            r.body_text(),
        )
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
