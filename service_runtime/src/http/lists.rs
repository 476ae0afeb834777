//! The parameters of the list endpoints: the user's address (query or the original clients'
//! GET body) and the pages, each honoured or refused, never ignored.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{StatusCode, request::Parts},
    response::Response,
};
use serde::{Deserialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};

use super::{JsonObject, error_response};
use crate::email::Email;

/// The query string of `GET /list_notifications`: `?email=E&limit=N&before=C&unread=true`.
/// Any other parameter is a 400: a parameter is honoured or refused, never ignored.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationPageParams {
    /// The user's address; without it, the JSON body's `email` is used.
    pub email: Option<String>,
    /// A page of at most this many (1 to 1000), with `next_cursor` and `unread_count`;
    /// without it, the whole list.
    pub limit: Option<usize>,
    /// Only notifications older than this cursor (the previous page's `next_cursor`).
    pub before: Option<String>,
    /// `true`: only unread notifications (with or without `limit`).
    pub unread: Option<bool>,
}

/// The query string of `GET /list_conversations`: `?email=E&limit=N&after=A`. Any other
/// parameter (`before`, `unread`, a typo) is a 400.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationPageParams {
    /// The user's address; without it, the JSON body's `email` is used.
    pub email: Option<String>,
    /// A page of at most this many (1 to 1000), with `next_cursor`; without it, the whole
    /// list.
    pub limit: Option<usize>,
    /// Only counterparts sorted after this address (the previous page's `next_cursor`).
    pub after: Option<String>,
}

/// The `email` query parameter, as [`EmailParam`] reads it. It lets other parameters
/// through: the list endpoints refuse unknown ones with their own parameter types
/// ([`NotificationPageParams`], [`ConversationPageParams`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    /// The user's address; without it, the JSON body's `email` is used.
    pub email: Option<String>,
}

/// Largest page a list endpoint serves.
pub const MAX_PAGE: usize = 1000;

/// A list endpoint's query string as `T`: unknown parameters, ill-typed values and a `limit`
/// outside 1..=[`MAX_PAGE`] are a 400.
async fn page_query<T, S>(
    parts: &mut Parts,
    state: &S,
    limit: impl Fn(&T) -> Option<usize>,
) -> Result<T, Response>
where
    T: DeserializeOwned + Send + 'static,
    S: Send + Sync,
{
    let Query(params) = Query::<T>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| bad_request(rejection.body_text()))?;
    match limit(&params) {
        Some(limit) if limit == 0 || limit > MAX_PAGE => Err(bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
        _ => Ok(params),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for NotificationPageParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        page_query(parts, state, |params: &Self| params.limit).await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConversationPageParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        page_query(parts, state, |params: &Self| params.limit).await
    }
}

/// The `email` a list endpoint is about, from `?email=` or else from a JSON body
/// `{"email": ...}` (the original's clients send a body with GET); a malformed address is a
/// 400 like a missing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailParam(pub Email);

/// The optional JSON body of a list endpoint: an object with at most `email`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "alice@example.com"}))]
pub struct EmailOnly {
    /// The user's address; used when the query string has no `email`.
    pub email: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for EmailParam {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let query = Query::<EmailQuery>::from_request_parts(&mut parts, state)
            .await
            .map_err(|rejection| error_response(StatusCode::BAD_REQUEST, rejection.body_text()))?;
        // A body is read (and must be valid) even when the query names the email: malformed
        // JSON answers 400 wherever it is, as the contract says.
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| error_response(rejection.status(), rejection.body_text()))?;
        // `null` is no body, as the OpenAPI document's optional body allows.
        let from_body =
            if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
                None
            } else {
                serde_json::from_slice::<JsonObject<EmailOnly>>(&bytes)
                    .map_err(|err| {
                        error_response(StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}"))
                    })?
                    .0
                    .email
            };
        let non_empty = |email: &String| !email.trim().is_empty();
        match query
            .0
            .email
            .filter(non_empty)
            .or_else(|| from_body.filter(non_empty))
        {
            Some(email) => Email::parse(email).map(Self).map_err(bad_request),
            None => Err(error_response(
                StatusCode::BAD_REQUEST,
                "email is required: ?email=... in the query string or {\"email\": ...} in a JSON body",
            )),
        }
    }
}

fn bad_request(err: impl ToString) -> Response {
    error_response(StatusCode::BAD_REQUEST, err.to_string())
}
