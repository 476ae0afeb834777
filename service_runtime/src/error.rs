//! One classification of failures for every service, with one mapping to an HTTP reply and
//! one to a gRPC status.
//!
//! Each service keeps its own error enum; it says which [`Kind`] each variant is and what a
//! client may read ([`ApiError`]), and [`api_error_edges!`](crate::api_error_edges) derives
//! both edges from that. Causes behind a 5xx / `UNAVAILABLE` / `INTERNAL` are logged in full
//! here and never shown to the client.

use axum::{http::StatusCode, response::Response};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// What kind of failure an error is; decides the HTTP status and the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is not acceptable as it is: 400 / `INVALID_ARGUMENT`.
    InvalidInput,
    /// What the request names does not exist: 404 / `NOT_FOUND`.
    NotFound,
    /// It collided with a concurrent change; retrying may work: 409 / `ABORTED`.
    Conflict,
    /// No or no valid credentials: 401 / `UNAUTHENTICATED`.
    Unauthenticated,
    /// Valid credentials that do not allow this: 403 / `PERMISSION_DENIED`.
    Forbidden,
    /// Too many attempts: 429 / `RESOURCE_EXHAUSTED`.
    TooManyRequests,
    /// A dependency (Redis, a peer) cannot be reached now: 503 / `UNAVAILABLE`.
    Unavailable,
    /// A bug or broken data: 500 / `INTERNAL`.
    Internal,
}

impl Kind {
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidInput => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidInput => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::Conflict => tonic::Code::Aborted,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::Forbidden => tonic::Code::PermissionDenied,
            Self::TooManyRequests => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// Whether the cause is the service's own failure, worth an error line in the log.
    fn is_failure(self) -> bool {
        matches!(self, Self::Unavailable | Self::Internal)
    }
}

/// How long a client told a store is unavailable should wait before trying again: about as
/// long as a restart or a Sentinel failover takes to settle.
pub const STORE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Redis out of reach (down, restarting, loading, failing over, a demoted primary's
/// `READONLY`) or a write its replicas did not confirm in time is [`Kind::Unavailable`];
/// anything else it answers with (a script error, a wrong type) is a bug: [`Kind::Internal`].
pub fn kind_of(err: &RedisError) -> Kind {
    let unreachable = err.is_io_error()
        || is_not_replicated(err)
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if unreachable {
        Kind::Unavailable
    } else {
        Kind::Internal
    }
}

/// Whether `err` is a write the primary took but too few replicas confirmed in time
/// (`REDIS_MIN_REPLICAS_ACK`): retrying it is safe, and it may be lost in a failover.
pub fn is_not_replicated(err: &RedisError) -> bool {
    err.code() == Some(crate::redis_store::NOT_REPLICATED)
}

/// A failure of a service's own Redis database: out of reach (or answering with an error), or
/// holding data without the contract's shape.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// 503 / `UNAVAILABLE` when Redis is out of reach after retrying, else 500 / `INTERNAL`.
    #[error("Redis request failed")]
    Redis(#[from] RedisError),
    /// 500 / `INTERNAL`: stored data that does not parse, or a value that does not encode.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl ApiError for StoreError {
    fn kind(&self) -> Kind {
        match self {
            Self::Redis(err) => kind_of(err),
            Self::Corrupt(_) => Kind::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Redis(err) if is_not_replicated(err) => {
                "store (Redis) write not yet replicated; try again later".into()
            }
            _ if self.kind() == Kind::Unavailable => {
                "store (Redis) is unavailable; try again later".into()
            }
            _ => "internal error".into(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        (self.kind() == Kind::Unavailable).then_some(STORE_RETRY_AFTER)
    }
}

/// A service's error: its kind and what a client may read.
pub trait ApiError: std::error::Error {
    fn kind(&self) -> Kind;

    /// The message a client sees; by default the error's `Display`.
    fn public_message(&self) -> String {
        self.to_string()
    }

    /// How long a refused client should wait before trying again ([`Kind::TooManyRequests`]):
    /// sent as `Retry-After` (whole seconds, rounded up) over HTTP and `retry-after` metadata
    /// over gRPC.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// `retry_after` as whole seconds, rounded up, at least 1.
fn retry_after_seconds<E: ApiError>(err: &E) -> Option<u64> {
    err.retry_after().map(|wait| {
        let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        whole.max(1)
    })
}

/// Logs the full cause of a failure of the service itself; client mistakes are not logged here.
fn log<E: ApiError>(err: &E) {
    if err.kind().is_failure() {
        let mut causes = String::new();
        let mut source = err.source();
        while let Some(cause) = source {
            causes.push_str(": ");
            causes.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(kind = ?err.kind(), error = %err, causes, "request failed");
    }
}

/// The contract's JSON error reply for `err`.
pub fn http_reply<E: ApiError>(err: &E) -> Response {
    log(err);
    let mut response = crate::http::error_response(err.kind().http_status(), err.public_message());
    if let Some(seconds) = retry_after_seconds(err) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// The gRPC status for `err`.
pub fn grpc_status<E: ApiError>(err: &E) -> tonic::Status {
    log(err);
    let mut status = tonic::Status::new(err.kind().grpc_code(), err.public_message());
    if let Some(seconds) = retry_after_seconds(err) {
        status.metadata_mut().insert(
            "retry-after",
            seconds.to_string().parse().unwrap_or_else(|_| 1.into()),
        );
    }
    status
}

/// `impl IntoResponse` and `impl From<_> for tonic::Status` for a service's [`ApiError`]
/// type, both through the one classification above.
#[macro_export]
macro_rules! api_error_edges {
    ($error:ty) => {
        impl ::axum::response::IntoResponse for $error {
            fn into_response(self) -> ::axum::response::Response {
                $crate::error::http_reply(&self)
            }
        }

        impl From<$error> for ::tonic::Status {
            fn from(err: $error) -> Self {
                $crate::error::grpc_status(&err)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_redis_is_unavailable_and_a_script_error_is_internal() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(kind_of(&refused), Kind::Unavailable);
        let script = RedisError::from((ErrorKind::Client, "bad reply"));
        assert_eq!(kind_of(&script), Kind::Internal);
        let demoted = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert_eq!(kind_of(&demoted), Kind::Unavailable);
    }

    #[test]
    fn an_unreplicated_write_is_unavailable_says_so_and_asks_for_a_retry() {
        let unreplicated = StoreError::Redis(redis::make_extension_error(
            crate::redis_store::NOT_REPLICATED.to_owned(),
            Some("0 of 1 replicas".to_owned()),
        ));
        assert_eq!(unreplicated.kind(), Kind::Unavailable);
        assert!(unreplicated.public_message().contains("not yet replicated"));
        assert_eq!(unreplicated.retry_after(), Some(STORE_RETRY_AFTER));
    }
}
