//! What can go wrong in message-service, and how each failure is answered.
//!
//! Business outcomes (unknown sender, empty field) are not errors: they are replies with
//! `success=false`. These are the cases where the service cannot do its job; the cause is
//! logged in full and the client gets a message that says what failed, nothing internal.

use service_runtime::error::{ApiError, Kind, kind_of};

/// A failure of message-service itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis did not answer, even after retrying (503 / `UNAVAILABLE`), or answered with an
    /// error (500 / `INTERNAL`).
    #[error("Redis request failed")]
    Redis(#[from] redis::RedisError),
    /// user-service did not answer `CheckUserExists`: gRPC `UNAVAILABLE`.
    #[error("user-service call failed")]
    UserService(#[source] tonic::Status),
    /// Data in Redis that does not have the contract's shape: HTTP 500, gRPC `INTERNAL`.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl ApiError for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::Redis(err) => kind_of(err),
            Self::UserService(_) => Kind::Unavailable,
            Self::Corrupt(_) => Kind::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::UserService(_) => {
                "user-service is unavailable: cannot check that sender and receiver exist".into()
            }
            Self::Redis(_) if self.kind() == Kind::Unavailable => {
                "message store (Redis) is unavailable; try again later".into()
            }
            Self::Redis(_) | Self::Corrupt(_) => "internal error".into(),
        }
    }
}

service_runtime::api_error_edges!(Error);
