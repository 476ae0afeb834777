//! JSON in, JSON out: the contract's reply shape for every HTTP service.
//!
//! Every reply carries `"success"`; errors add `"message"`. Malformed JSON, a wrong content
//! type, missing or ill-typed fields all answer 400 (axum's own extractor would mix in 415 and
//! 422); an oversized body answers 413, a request that takes too long 408, an overlong URI
//! 414.

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State,
        rejection::JsonRejection,
    },
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use crate::{config::HttpLimits, redis_store::Redis};

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

/// The `email` a list endpoint is about, from `?email=` or else from a JSON body
/// `{"email": ...}` (the original's clients send a body with GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailParam(pub String);

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
            return Ok(Self(email));
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
        from_body
            .filter(|email| !email.trim().is_empty())
            .map(Self)
            .ok_or_else(|| {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "email is required: ?email=... in the query string or {\"email\": ...} in a JSON body",
                )
            })
    }
}

/// Wraps a service's routes with what every HTTP server has: `GET /health`, a JSON 404, the
/// body limit (413), the request timeout (408) and the URI limit (414).
pub fn with_common_routes(routes: Router, redis: Option<Redis>, limits: HttpLimits) -> Router {
    routes
        .route("/health", get(move || health(redis.clone())))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            answer_within,
        ))
        .layer(middleware::from_fn_with_state(
            limits.max_uri_bytes,
            refuse_long_uri,
        ))
        .layer(middleware::from_fn(crate::telemetry::http_request))
}

/// 408 when the request, its body upload included, is not answered within `timeout`: a client
/// trickling its body cannot hold a task and a connection for as long as it likes. The
/// connection is closed after the reply, since the rest of the body is never read.
async fn answer_within(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(reply) => reply,
        Err(_) => {
            let mut reply = error_response(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not complete within {timeout:?}"),
            );
            reply
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            reply
        }
    }
}

/// 414 for a request target (path and query) over `max_bytes`. Targets over 64 KiB never get
/// here: hyper refuses those itself while parsing (an empty 414), since the `http` crate's URI
/// cannot hold them.
async fn refuse_long_uri(State(max_bytes): State<usize>, request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if length > max_bytes {
        return error_response(
            StatusCode::URI_TOO_LONG,
            format!("the request URI is {length} bytes; at most {max_bytes} are accepted"),
        );
    }
    next.run(request).await
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
