//! What can go wrong in message-service, and how each failure is answered.
//!
//! Business outcomes (unknown sender, empty field) are not errors: they are replies with
//! `success=false`. These are the cases where the service cannot do its job; the cause is
//! logged in full and the client gets a message that says what failed, nothing internal.

use service_runtime::{
    auth::AuthError,
    error::{ApiError, Kind, StoreError},
};

/// A failure of message-service itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its Redis database failed (see [`StoreError`] for the codes).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Refused by the protection: 401 / 403 / 503 (see `service_runtime::auth`).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// user-service did not answer `CheckUserExists`: gRPC `UNAVAILABLE`.
    #[error("user-service call failed")]
    UserService(#[source] tonic::Status),
}

impl ApiError for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::Store(err) => err.kind(),
            Self::Auth(err) => err.kind(),
            Self::UserService(_) => Kind::Unavailable,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Store(err) => format!("message {}", err.public_message()),
            Self::Auth(err) => err.public_message(),
            Self::UserService(_) => {
                "user-service is unavailable: cannot check that sender and receiver exist".into()
            }
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Store(err) => err.retry_after(),
            Self::Auth(err) => err.retry_after(),
            _ => None,
        }
    }
}

service_runtime::api_error_edges!(Error);
