//! The axum side: a handler takes a [`Caller`] as an argument.

use axum::{
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::Response,
};

use super::{Auth, AuthError, Caller};
use crate::error::{ApiError, Kind};

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    /// The caller of an HTTP request, from its `Authorization` header, checked by the [`Auth`]
    /// installed with [`Auth::layer`]. A refusal is the JSON 401 (with
    /// `WWW-Authenticate: Bearer`) or 503.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(auth) = parts.extensions.get::<Auth>().cloned() else {
            tracing::error!("a handler asks for the Caller on a router without Auth::layer");
            return Err(crate::http::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        };
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(value) => Some(value),
                Err(_) => return Err(refusal(&AuthError::Invalid("not ASCII"))),
            },
        };
        auth.caller(authorization)
            .await
            .map_err(|err| refusal(&err))
    }
}

fn refusal(err: &AuthError) -> Response {
    let mut response = crate::error::http_reply(err);
    if err.kind() == Kind::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
