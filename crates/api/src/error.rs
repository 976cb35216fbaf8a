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
    /// Seconds for the `Retry-After` header (a 429 carries it).
    pub retry_after: Option<u64>,
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
            retry_after: None,
        }
    }

    /// 429: the caller is over a rate; `detail` says how to get under it.
    pub fn too_many_requests(retry_after_secs: u64, detail: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail);
        err.retry_after = Some(retry_after_secs);
        err
    }

    /// 408: the request's body stopped arriving.
    pub fn body_timeout(idle: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body sent nothing for {} s, so the server stopped waiting; \
                 send the body without pauses that long and retry",
                idle.as_secs()
            ),
        )
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
                // Monthly quotas renew on the 1st.
                let mut err =
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota-exceeded", detail);
                err.retry_after = Some(until_next_month(chrono::Utc::now()));
                err
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
            CoreError::InsufficientStorage(_) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                detail,
            ),
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

/// Seconds from `now` to the next month's first second (UTC), at least 1.
fn until_next_month(now: chrono::DateTime<chrono::Utc>) -> u64 {
    use chrono::{Datelike, TimeZone};
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        m => (now.year(), m + 1),
    };
    chrono::Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .and_then(|next| u64::try_from((next - now).num_seconds()).ok())
        .unwrap_or(86_400)
        .max(1)
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
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: the connection is done.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_quota_renews_at_the_next_month() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 0)
            .unwrap();
        assert_eq!(until_next_month(t), 60);
        let t = chrono::Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap();
        assert_eq!(until_next_month(t), 86_400);
    }

    #[test]
    fn every_429_says_when_to_retry() {
        let resp = ApiError::from(CoreError::QuotaExceeded("used up".into())).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=31 * 86_400).contains(&secs));
    }
}
