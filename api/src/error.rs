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
    /// The configuration cannot be served: a metrics token file that is
    /// unreadable or too short, an open-file limit that leaves no room for
    /// connections.
    #[error("{0}")]
    Config(String),
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
            // The cause was logged where it happened, and is not shown.
            E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // A kind this edge does not know yet: fail closed, visibly.
            _ => {
                tracing::error!(error = %e, "a domain error without a status");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// What `Retry-After` says on a `503`: the failures behind one (storage
/// full or failing, shutting down, saturated) take seconds to clear at best.
const RETRY_AFTER_SECS: u32 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
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
        if unavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealrun_control::{Error as E, Object};

    fn status(e: E) -> StatusCode {
        ApiError::from(e).status
    }

    #[test]
    fn each_kind_of_domain_error_has_its_status() {
        let cases = [
            (E::not_found(Object::Run, "r"), StatusCode::NOT_FOUND),
            (E::Invalid("x".into()), StatusCode::BAD_REQUEST),
            (E::TooLarge("x".into()), StatusCode::PAYLOAD_TOO_LARGE),
            (E::Conflict("x".into()), StatusCode::CONFLICT),
            (E::Forbidden("x".into()), StatusCode::FORBIDDEN),
            (E::Unauthenticated("x".into()), StatusCode::UNAUTHORIZED),
            (E::LimitReached("x".into()), StatusCode::TOO_MANY_REQUESTS),
            (E::Unavailable("x".into()), StatusCode::SERVICE_UNAVAILABLE),
            (E::internal("x"), StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (e, expected) in cases {
            assert_eq!(status(e.clone()), expected, "{e:?}");
        }
    }

    #[test]
    fn an_internal_error_answers_without_its_cause() {
        let answer = ApiError::from(E::internal("database /var/lib/x.db: disk I/O error"));
        assert_eq!(answer.message, "internal error (see the server log)");
        // Positive control: the cause was kept for the log.
        assert!(E::internal("disk I/O error").detail().contains("disk I/O"));
    }
}
