//! What handlers take from a request, parsed once here: the IP named in
//! the path, other path segments, query strings and JSON bodies. Every
//! rejection is an [`ApiError`], so the caller gets
//! `application/problem+json` whatever was wrong.

use crate::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Largest JSON request body.
const MAX_JSON: u64 = 1 << 20;

/// The IP of a `/…/{namespace}/{name}/…` route, as `namespace/name`.
pub struct IpPath(pub String);

/// The segments of an IP's routes.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IpSegments {
    /// The vendor's namespace.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "acme")]
    namespace: String,
    /// The IP's name.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$", example = "echo")]
    name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IpPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(IpSegments { namespace, name }) =
            ApiPath::from_request_parts(parts, state).await?;
        Ok(IpPath(format!("{namespace}/{name}")))
    }
}

/// Path segments (one value, a tuple of all, or a struct naming some).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(v) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}

/// The query string.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// A JSON request body of at most [`MAX_JSON`] bytes. The content type is
/// not checked: clients that send none are served.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req.into_body(), MAX_JSON, "a JSON request").await?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON request body: {e}")))
    }
}

/// A whole request body of at most `limit` bytes; `what` names it in the
/// 413 answer.
pub(crate) async fn read_body(
    body: Body,
    limit: u64,
    what: &str,
) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| {
            // axum reports an over-long body as a "length limit exceeded"
            // error somewhere in the source chain.
            let mut too_large = false;
            let mut cur: Option<&dyn std::error::Error> = Some(&e);
            while let Some(err) = cur {
                too_large |= err.to_string().contains("length limit exceeded");
                cur = err.source();
            }
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("{what} is larger than the limit of {limit} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })
}

pub(crate) type ByteStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// A request body as a stream, for uploads of any size.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map_err(|e| std::io::Error::other(e.to_string())),
    )
}

/// A streamed `application/octet-stream` answer, with its length and
/// SHA-256 when known.
pub(crate) fn octets(stream: ByteStream, size: Option<u64>, sha256: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(n) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Some(v) = sha256.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert("accelhub-sha256", v);
    }
    (headers, Body::from_stream(stream)).into_response()
}
