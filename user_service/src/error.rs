//! The one error type of user-service and its two edges: an HTTP reply and a gRPC status.
//! Internal causes are logged here with their context and answered generically.

use std::time::Duration;

use redis::RedisError;
use service_runtime::{
    auth::AuthError,
    error::{self, ApiError, Kind, kind_of},
};

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
    /// 503 / `UNAVAILABLE` with `Retry-After`: the address's previous account change (a
    /// delete or an email change) is not yet delivered to notification- and message-service;
    /// until it is, the address is neither signed up for nor moved to, from or deleted.
    #[error(
        "a previous change of this address is still being delivered to the other services; try again shortly"
    )]
    AddressBusy,
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
    /// 401 `Invalid credentials`: `POST /login` with an unknown email or a wrong password (the
    /// same reply for both).
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// 401: with protection on, a change of password or email or a deletion without
    /// `current_password`.
    #[error(
        "current_password is required to change the password or email or to delete the account"
    )]
    CurrentPasswordRequired,
    /// 401: `current_password` is not the account's password.
    #[error("current_password is not the account's password")]
    WrongCurrentPassword,
    /// 429 / `RESOURCE_EXHAUSTED` with `Retry-After`: a brute-force limit was reached.
    #[error("{reason}; try again in {} s", whole_seconds(*retry_after))]
    TooManyAttempts {
        reason: &'static str,
        retry_after: Duration,
    },
    /// 401 / 403 / 503: refused by the protection (see `service_runtime::auth`).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 500 / `INTERNAL`: a bug or a broken record; details are only logged.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// `duration` in whole seconds, rounded up, at least 1 (as `Retry-After` says it).
fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

impl Error {
    /// A Redis failure while doing `action` (a phrase: "reading the user").
    pub fn store(action: &'static str) -> impl FnOnce(RedisError) -> Self {
        move |source| Self::Store { action, source }
    }
}

impl ApiError for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::Invalid(_) | Self::AlreadyExists | Self::EmailTaken => Kind::InvalidInput,
            Self::NotFound => Kind::NotFound,
            Self::Conflict => Kind::Conflict,
            Self::AddressBusy => Kind::Unavailable,
            Self::Store { source, .. } => kind_of(source),
            Self::InvalidCredentials
            | Self::CurrentPasswordRequired
            | Self::WrongCurrentPassword => Kind::Unauthenticated,
            Self::TooManyAttempts { .. } => Kind::TooManyRequests,
            Self::Auth(err) => err.kind(),
            Self::Internal(_) => Kind::Internal,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Store { action, source } if error::is_not_replicated(source) => {
                format!("user store (Redis) write not yet replicated while {action}; try again")
            }
            Self::Store { action, .. } if self.kind() == Kind::Unavailable => {
                format!("user store (Redis) unreachable while {action}")
            }
            Self::Store { action, .. } => format!("user store error while {action}"),
            Self::Auth(err) => err.public_message(),
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyAttempts { retry_after, .. } => Some(*retry_after),
            Self::AddressBusy => Some(Duration::from_secs(2)),
            Self::Store { .. } if self.kind() == Kind::Unavailable => {
                Some(error::STORE_RETRY_AFTER)
            }
            _ => None,
        }
    }
}

service_runtime::api_error_edges!(Error);
