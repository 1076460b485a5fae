//! Errors: [`Error`] for starting and running a server, [`ApiError`] for the
//! answer to one HTTP request, and the one place a domain error becomes an
//! HTTP status (`From<sealrun_control::Error> for ApiError`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealrun_control::OpenError;
use sealrun_wire::ErrorBody;
use std::io;
use std::net::SocketAddr;

/// Why a control plane could not start, run, or create an org.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data directory or database could not be opened (see
    /// [`OpenError`]).
    #[error(transparent)]
    Open(OpenError),
    /// Certificates could not be generated, read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// `create_org` was asked for a name that is taken.
    #[error("an org named {0:?} already exists")]
    OrgExists(String),
    /// A name (org, pool...) that does not follow the naming rules.
    #[error("{0}")]
    InvalidName(String),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(io::Error),
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::OrgExists(name) => Error::OrgExists(name),
            OpenError::InvalidName(message) => Error::InvalidName(message),
            other => Error::Open(other),
        }
    }
}

/// A request that failed: an HTTP status and a one-line message for a human,
/// sent as `{"error": "..."}`. Messages never hold secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

/// The one mapping of domain failures to HTTP statuses.
impl From<sealrun_control::Error> for ApiError {
    fn from(e: sealrun_control::Error) -> ApiError {
        use sealrun_control::Error as E;
        let status = match &e {
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            E::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The cause was logged where it happened.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
