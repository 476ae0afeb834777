//! JSON in, JSON out: the contract's reply shape for every HTTP service.
//!
//! Every reply carries `"success"`; errors add `"message"`. Malformed JSON, a wrong content
//! type, missing or ill-typed fields all answer 400 (axum's own extractor would mix in 415 and
//! 422); an oversized body answers 413.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, rejection::JsonRejection,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use crate::{email::Email, redis_store::Redis};

/// Largest request body accepted; the contract's bodies are a few hundred bytes.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// A JSON error reply: `{"success": false, "message": ...}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "success": false, "message": message.into() });
    (status, Json(body)).into_response()
}

/// Like `axum::Json`, but every rejection is a contract-shaped JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection_response(&rejection)),
        }
    }
}

fn json_rejection_response(rejection: &JsonRejection) -> Response {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, rejection.body_text())
}

/// Paging of a list endpoint: `?limit=N&before=C` (both optional; `before` is the previous
/// page's `next_cursor`). Without `limit` a list answers in full, as the contract's lists do.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageParams {
    pub limit: Option<usize>,
    pub before: Option<String>,
    /// Only unread items (where the list has a read state).
    #[serde(default)]
    pub unread: bool,
}

/// Largest page a list endpoint serves.
pub const MAX_PAGE: usize = 1000;

impl<S: Send + Sync> FromRequestParts<S> for PageParams {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<Self>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad_request(rejection.body_text()))?;
        match params.limit {
            Some(limit) if limit == 0 || limit > MAX_PAGE => Err(bad_request(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
            _ => Ok(params),
        }
    }
}

/// The `email` a list endpoint is about, from `?email=` or else from a JSON body
/// `{"email": ...}` (the original's clients send a body with GET); a malformed address is a
/// 400 like a missing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailParam(pub Email);

#[derive(Deserialize)]
struct EmailOnly {
    email: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for EmailParam {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let query = Query::<EmailOnly>::from_request_parts(&mut parts, state)
            .await
            .map_err(|rejection| error_response(StatusCode::BAD_REQUEST, rejection.body_text()))?;
        if let Some(email) = query.0.email.filter(|email| !email.trim().is_empty()) {
            return Email::parse(email).map(Self).map_err(bad_request);
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let from_body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            serde_json::from_slice::<EmailOnly>(&bytes)
                .map_err(|err| {
                    error_response(StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}"))
                })?
                .email
        };
        match from_body.filter(|email| !email.trim().is_empty()) {
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

/// Wraps a service's routes with what every HTTP server has: `GET /health`, the body limit
/// and a JSON 404.
pub fn with_common_routes(routes: Router, redis: Option<Redis>) -> Router {
    routes
        .route("/health", get(move || health(redis.clone())))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(crate::telemetry::http_request))
}

/// 200 when Redis answers, 503 when it does not.
async fn health(redis: Option<Redis>) -> Response {
    let redis_up = match &redis {
        Some(redis) => redis.is_reachable().await,
        None => true,
    };
    let status = if redis_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "success": redis_up, "redis": if redis_up { "up" } else { "down" } });
    (status, Json(body)).into_response()
}
