//! What can go wrong in notification-service, and how each failure is answered.
//!
//! Business outcomes (unsubscribed receiver, empty field) are not errors: they are replies with
//! `success=false`. These are the cases where the service cannot do its job; the cause is
//! logged in full and the client gets a message that says what failed, nothing internal.

use service_runtime::{
    auth::AuthError,
    error::{ApiError, Kind, StoreError},
};

/// A failure of notification-service itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 / `INVALID_ARGUMENT`: a request that cannot be served as it is.
    #[error("{0}")]
    Invalid(String),
    /// Its Redis database failed (see [`StoreError`] for the codes).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Refused by the protection: 401 / 403 / 503 (see `service_runtime::auth`).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ApiError for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::Invalid(_) => Kind::InvalidInput,
            Self::Store(err) => err.kind(),
            Self::Auth(err) => err.kind(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Invalid(message) => message.clone(),
            Self::Store(err) => format!("notification {}", err.public_message()),
            Self::Auth(err) => err.public_message(),
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
