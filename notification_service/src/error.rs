//! What can go wrong in notification-service, and how each failure is answered.
//!
//! Business outcomes (unsubscribed receiver, empty field) are not errors: they are replies with
//! `success=false`. These are the cases where the service cannot do its job; the cause is
//! logged in full and the client gets a message that says what failed, nothing internal.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use service_runtime::http::error_response;

/// A failure of notification-service itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis did not answer, even after retrying: HTTP 503, gRPC `UNAVAILABLE`.
    #[error("Redis is unavailable")]
    Redis(#[from] redis::RedisError),
    /// Data in Redis that does not have the contract's shape: HTTP 500, gRPC `INTERNAL`.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl Error {
    /// What the client is told.
    fn public_message(&self) -> &'static str {
        match self {
            Self::Redis(_) => "notification store (Redis) is unavailable; try again later",
            Self::Corrupt(_) => "internal error",
        }
    }

    fn log(&self) {
        match self {
            Self::Redis(err) => tracing::error!(error = %err, "Redis request failed"),
            Self::Corrupt(what) => tracing::error!(error = what, "malformed data in Redis"),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        err.log();
        match err {
            Error::Redis(_) => Self::unavailable(err.public_message()),
            Error::Corrupt(_) => Self::internal(err.public_message()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        let status = match self {
            Self::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, self.public_message())
    }
}
