//! Who is calling, and why a request is refused.

use std::time::Duration;

use crate::{
    email::Email,
    error::{ApiError, Kind},
    limits,
    time::unix_now,
};

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401 / `UNAUTHENTICATED`: no `Authorization` header (or metadata).
    #[error(
        "authentication required: send `Authorization: Bearer <token>` (get a token from POST /login)"
    )]
    Missing,
    /// 401 / `UNAUTHENTICATED`: malformed or forged.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// 401 / `UNAUTHENTICATED`.
    #[error("token expired: log in again (POST /login)")]
    Expired,
    /// 401 / `UNAUTHENTICATED`: signed by us and unexpired, but the account changed since.
    #[error(
        "token revoked: its user was deleted or changed email or password; log in again (POST /login)"
    )]
    Revoked,
    /// 403 / `PERMISSION_DENIED`: a valid token of another user.
    #[error("forbidden: this token belongs to another user; it may act only for {0}")]
    OtherUser(String),
    /// 401 / `UNAUTHENTICATED`: a service-to-service RPC without a service's internal
    /// credential.
    #[error(
        "this RPC is for the services only: the internal service credential (x-internal-caller and x-internal-credential) is missing or wrong"
    )]
    NotInternal,
    /// 403 / `PERMISSION_DENIED`: a valid internal credential of a service that does not call
    /// this RPC.
    #[error(
        "this RPC is not open to {service}: its internal credential opens only the RPCs it calls"
    )]
    ServiceNotAllowed { service: &'static str },
    /// 503 / `UNAVAILABLE`: user-service (or its Redis) could not say whether the token is
    /// still valid.
    #[error(
        "cannot check the token now: user-service or its store is unavailable; try again later"
    )]
    Unavailable(#[source] tonic::Status),
}

impl ApiError for AuthError {
    fn kind(&self) -> Kind {
        match self {
            Self::Missing
            | Self::Invalid(_)
            | Self::Expired
            | Self::Revoked
            | Self::NotInternal => Kind::Unauthenticated,
            Self::OtherUser(_) | Self::ServiceNotAllowed { .. } => Kind::Forbidden,
            Self::Unavailable(_) => Kind::Unavailable,
        }
    }
}

crate::api_error_edges!(AuthError);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Open mode: nobody is asked who they are; everything is allowed.
    Anyone,
    /// The holder of a valid token of `email`, which expires at `expires_at` (Unix seconds).
    User { email: Email, expires_at: u64 },
}

impl Caller {
    /// Whether this caller may act for `email`: anyone in open mode, else only its own user.
    pub fn authorize(&self, email: &Email) -> Result<(), AuthError> {
        self.authorize_raw(Some(email.as_str()))
    }

    /// [`Caller::authorize`] for an address as a request gives it (perhaps missing or
    /// malformed, which is nobody's).
    pub fn authorize_raw(&self, email: Option<&str>) -> Result<(), AuthError> {
        match self {
            Self::Anyone => Ok(()),
            Self::User { email: own, .. } => {
                let requested = email.and_then(|raw| Email::parse(raw).ok());
                if requested.as_ref() == Some(own) {
                    Ok(())
                } else {
                    Err(AuthError::OtherUser(own.to_string()))
                }
            }
        }
    }

    /// How long the caller's token is still valid; `None` in open mode.
    pub fn expires_in(&self) -> Option<Duration> {
        match self {
            Self::Anyone => None,
            Self::User { expires_at, .. } => {
                Some(Duration::from_secs(expires_at.saturating_sub(unix_now())))
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
pub(super) fn bearer(value: Option<&str>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid(
        "expected `Authorization: Bearer <token>`",
    ))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Invalid(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    if token.len() > limits::MAX_FIELD_BYTES * 4 {
        return Err(AuthError::Invalid("too long"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid")
    }

    #[test]
    fn bearer_values_are_parsed_strictly() {
        assert_eq!(bearer(Some("Bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")).ok(), Some("abc"));
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        for bad in ["abc", "Basic abc", "Bearer", "Bearer  "] {
            assert!(
                matches!(bearer(Some(bad)), Err(AuthError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_user_may_act_only_for_itself() {
        let caller = Caller::User {
            email: email("a@b.io"),
            expires_at: u64::MAX,
        };
        assert!(caller.authorize(&email("a@b.io")).is_ok());
        assert!(caller.authorize_raw(Some("a@B.IO")).is_ok());
        assert!(matches!(
            caller.authorize(&email("c@b.io")),
            Err(AuthError::OtherUser(_))
        ));
        assert!(caller.authorize_raw(None).is_err());
        assert!(caller.authorize_raw(Some("nonsense")).is_err());
        assert!(Caller::Anyone.authorize_raw(None).is_ok());
    }
}
