//! How the page API reaches the other services. Calls made for a browser carry the browser's
//! token (`Authorization: Bearer`, else the `inbox_token` cookie) and never frontend-service's
//! own credential, so the callee's access rules judge the user exactly as they judge a direct
//! caller (401 / 403 as everywhere). The callees' statuses become the contract's JSON replies.

use std::{net::IpAddr, time::Duration};

use axum::{extract::FromRequestParts, http::request::Parts, response::Response};
use service_runtime::{
    auth::Authorization,
    error::{ApiError, Kind},
    grpc_client::CLIENT_ADDRESS_HEADER,
};
use tonic::{Code, Status, metadata::AsciiMetadataValue};

/// The `Authorization` value a browser's request stands for, taken where every service takes
/// it ([`Authorization`]: its header, else the `inbox_token` cookie the page's sign-in sets);
/// `None` without one (open mode needs none).
#[derive(Clone, Default)]
pub struct BrowserToken(Option<String>);

impl BrowserToken {
    pub fn authorization(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// `message` as a request carrying this token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self
            .0
            .as_deref()
            .and_then(|v| v.parse::<AsciiMetadataValue>().ok())
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BrowserToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authorization(token) = Authorization::from_request_parts(parts, state).await?;
        Ok(Self(token))
    }
}

/// `message` naming the browser's address for user-service's per-address limits (believed
/// there only beside frontend-service's credential, which the account client carries).
pub fn from_browser<T>(message: T, from: Option<IpAddr>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = from.and_then(|addr| addr.to_string().parse::<AsciiMetadataValue>().ok()) {
        request.metadata_mut().insert(CLIENT_ADDRESS_HEADER, value);
    }
    request
}

/// Why a page API request failed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// 400: refused here, before any call.
    #[error("{0}")]
    Invalid(String),
    /// What a callee refused, with the status its code stands for (400, 401, 403, 404, 409,
    /// 429) and its message, which is written for clients.
    #[error("{message}")]
    Refused {
        kind: Kind,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 503: a callee could not be reached or could not do its job; its cause is only logged.
    #[error("{peer} is unavailable; try again later")]
    Unavailable {
        peer: &'static str,
        #[source]
        status: Status,
    },
}

impl PageError {
    /// The error a callee's `status` stands for; `peer` names the callee.
    pub fn of(peer: &'static str) -> impl FnOnce(Status) -> Self {
        move |status| {
            let kind = match status.code() {
                Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                    Kind::InvalidInput
                }
                Code::NotFound => Kind::NotFound,
                Code::Aborted | Code::AlreadyExists => Kind::Conflict,
                Code::Unauthenticated => Kind::Unauthenticated,
                Code::PermissionDenied => Kind::Forbidden,
                Code::ResourceExhausted => Kind::TooManyRequests,
                _ => return Self::Unavailable { peer, status },
            };
            let retry_after = status
                .metadata()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
                .map(Duration::from_secs);
            Self::Refused {
                kind,
                message: status.message().to_owned(),
                retry_after,
            }
        }
    }
}

impl ApiError for PageError {
    fn kind(&self) -> Kind {
        match self {
            Self::Invalid(_) => Kind::InvalidInput,
            Self::Refused { kind, .. } => *kind,
            Self::Unavailable { .. } => Kind::Unavailable,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

service_runtime::api_error_edges!(PageError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callees_refusals_keep_their_meaning_and_its_failures_are_hidden() {
        let refused = PageError::of("message-service")(Status::permission_denied("not yours"));
        assert_eq!(refused.kind(), Kind::Forbidden);
        assert_eq!(refused.to_string(), "not yours");
        let mut limited = Status::resource_exhausted("slow down");
        limited
            .metadata_mut()
            .insert("retry-after", "7".parse().expect("ascii"));
        let limited = PageError::of("user-service")(limited);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        let down = PageError::of("user-service")(Status::unavailable("tcp connect error 10.0.0.1"));
        assert_eq!(down.kind(), Kind::Unavailable);
        assert_eq!(
            down.to_string(),
            "user-service is unavailable; try again later"
        );
    }
}
