//! The caller: an account resolved from its bearer token.

use crate::{ApiError, AppState};
use accelhub_core::{CoreError, Platform};
use accelhub_domain::Account;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::sync::Arc;

/// The authenticated account making the request.
pub struct Caller(pub Account);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        Ok(Caller(state.platform.authenticate(token).await?))
    }
}

/// The platform and the authenticated account: what most handlers take.
pub struct Ctx {
    pub platform: Arc<Platform>,
    pub me: Account,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(me) = Caller::from_request_parts(parts, state).await?;
        Ok(Ctx {
            platform: state.platform.clone(),
            me,
        })
    }
}

/// The bearer token of a request (account or agent token).
pub(crate) fn bearer(parts: &Parts) -> Result<&str, CoreError> {
    bearer_token(&parts.headers).ok_or(CoreError::Unauthorized)
}

/// The bearer token in these headers, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}
