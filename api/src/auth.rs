//! Who is calling, at the edge: the bearer token of a request resolved by
//! the domain ([`Control::authenticate`](sealrun_control::Control::authenticate))
//! into the kind of caller a handler demands.
//!
//! Failures answer `401` with one message whatever went wrong (the domain
//! audits the reason); a token of the wrong kind answers `403`.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sealrun_control::{Agent, Attempt, Enroller, Principal, User};
use sealrun_wire::{PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER};

/// An authenticated caller of the kind `T` ([`Principal`], [`User`],
/// [`Agent`] or [`Enroller`]).
#[derive(Clone, Debug)]
pub(crate) struct Caller<T>(pub(crate) T);

/// The token of an `Authorization: Bearer` header, if there is one.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(value) = bearer(parts) else {
        state.metrics.auth_failed();
        return Err(ApiError::unauthorized(
            "missing bearer token (send Authorization: Bearer <token>)",
        ));
    };
    let attempt = Attempt {
        method: parts.method.as_str(),
        path: parts.uri.path(),
    };
    state
        .control
        .authenticate(value, attempt)
        .await
        .map_err(|e| {
            state.metrics.auth_failed();
            ApiError::from(e)
        })
}

impl<S> FromRequestParts<S> for Caller<Principal>
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Caller(principal(parts, &AppState::from_ref(state)).await?))
    }
}

impl<S> FromRequestParts<S> for Caller<User>
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let p = principal(parts, &AppState::from_ref(state)).await?;
        Ok(Caller(p.into_user()?))
    }
}

impl<S> FromRequestParts<S> for Caller<Agent>
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_protocol(parts)?;
        let p = principal(parts, &AppState::from_ref(state)).await?;
        Ok(Caller(p.into_agent()?))
    }
}

impl<S> FromRequestParts<S> for Caller<Enroller>
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_protocol(parts)?;
        let p = principal(parts, &AppState::from_ref(state)).await?;
        Ok(Caller(p.into_enroller()?))
    }
}

/// Agents announce their protocol version; an absent header means the
/// current one (curl-friendly), another version is refused.
fn check_protocol(parts: &Parts) -> Result<(), ApiError> {
    let Some(v) = parts.headers.get(PROTOCOL_VERSION_HEADER) else {
        return Ok(());
    };
    let speaks =
        v.to_str().ok().and_then(|v| v.trim().parse::<u32>().ok()) == Some(PROTOCOL_VERSION);
    if speaks {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "this control plane speaks agent protocol {PROTOCOL_VERSION}; upgrade the agent or the control plane"
            ),
        ))
    }
}
