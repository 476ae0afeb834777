//! The one error type of user-service and its two edges: an HTTP reply and a gRPC status.
//! Internal causes are logged here with their context and answered generically.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use service_runtime::http::error_response;

/// Everything a user-service request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request is well-formed JSON but not an acceptable value (empty field, bad email…).
    #[error("{0}")]
    Invalid(String),
    /// 400 `User already exists` (the contract keeps the original's code, not 409).
    #[error("User already exists")]
    AlreadyExists,
    /// 400: an update would move the user onto an address another user has.
    #[error("Email already in use")]
    EmailTaken,
    /// 404: no user has this address.
    #[error("User not found")]
    NotFound,
    /// 409: the record kept changing under a read-modify-write; the client may retry.
    #[error("User was modified concurrently; please retry")]
    Conflict,
    /// 503 / `UNAVAILABLE`, or 500 / `INTERNAL` when Redis answered but not as expected.
    #[error("user store failed while {action}")]
    Store {
        action: &'static str,
        #[source]
        source: RedisError,
    },
    /// 500 / `INTERNAL`: a bug or a broken record; details are only logged.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// A Redis failure while doing `action` (a phrase: "reading the user").
    pub fn store(action: &'static str) -> impl FnOnce(RedisError) -> Self {
        move |source| Self::Store { action, source }
    }

    /// Whether the cause is Redis being out of reach (rather than a bug or a bad reply).
    fn is_unavailable(&self) -> bool {
        match self {
            Self::Store { source, .. } => {
                source.is_io_error()
                    || source.is_connection_dropped()
                    || source.is_connection_refusal()
                    || source.is_timeout()
                    || matches!(
                        source.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::MasterDown
                        )
                    )
            }
            _ => false,
        }
    }

    /// Logs what a client will not see: the cause behind a 5xx.
    fn log(&self) {
        match self {
            Self::Store { action, source } => {
                tracing::error!(action, error = %source, "Redis request failed");
            }
            Self::Internal(err) => tracing::error!(error = ?err, "internal error"),
            _ => {}
        }
    }

    /// The message a client may see.
    fn public_message(&self) -> String {
        match self {
            Self::Store { action, .. } if self.is_unavailable() => {
                format!("user store (Redis) unreachable while {action}")
            }
            Self::Store { action, .. } => format!("user store error while {action}"),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let status = match &self {
            Self::Invalid(_) | Self::AlreadyExists | Self::EmailTaken => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Store { .. } if self.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, self.public_message())
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        err.log();
        let message = err.public_message();
        match &err {
            Error::Invalid(_) | Error::EmailTaken | Error::AlreadyExists => {
                Self::invalid_argument(message)
            }
            Error::NotFound => Self::not_found(message),
            Error::Conflict => Self::aborted(message),
            Error::Store { .. } if err.is_unavailable() => Self::unavailable(message),
            Error::Store { .. } | Error::Internal(_) => Self::internal(message),
        }
    }
}
