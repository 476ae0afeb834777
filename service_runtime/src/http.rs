//! JSON in, JSON out: the contract's reply shape for every HTTP service.
//!
//! Every reply carries `"success"`; errors add `"message"`. Malformed JSON, a wrong content
//! type, missing or ill-typed fields all answer 400 (axum's own extractor would mix in 415 and
//! 422); an oversized body answers 413.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State,
        rejection::JsonRejection,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{openapi::ErrorReply, redis_store::Redis};

/// Largest request body accepted; the contract's bodies are a few hundred bytes.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// A JSON error reply: `{"success": false, "message": ...}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorReply::new(message))).into_response()
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

/// The query string or JSON body [`EmailParam`] reads; other keys are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "alice@example.com"}))]
pub struct EmailOnly {
    /// The user's address; used when the query string has no `email`.
    pub email: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for EmailParam {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let query = Query::<EmailOnly>::from_request_parts(&mut parts, state)
            .await
            .map_err(|rejection| error_response(StatusCode::BAD_REQUEST, rejection.body_text()))?;
        // A body is read (and must be valid) even when the query names the email: malformed
        // JSON answers 400 wherever it is, as the contract says.
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| error_response(rejection.status(), rejection.body_text()))?;
        let from_body = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            // `null` is no body, as the OpenAPI document's optional body allows.
            serde_json::from_slice::<Option<EmailOnly>>(&bytes)
                .map_err(|err| {
                    error_response(StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}"))
                })?
                .and_then(|body| body.email)
        };
        let non_empty = |email: &String| !email.trim().is_empty();
        query
            .0
            .email
            .filter(non_empty)
            .or_else(|| from_body.filter(non_empty))
            .map(Self)
            .ok_or_else(|| {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "email is required: ?email=... in the query string or {\"email\": ...} in a JSON body",
                )
            })
    }
}

/// Wraps a service's routes with what every HTTP server has: `GET /health`, `GET /metrics`,
/// `GET /openapi.json` (describing `api`, the routes' document, and these), the body limit
/// and a JSON 404.
pub fn with_common_routes(
    service: &'static str,
    routes: Router,
    api: OpenApi,
    redis: Option<Redis>,
) -> Router {
    let (common, common_api) = OpenApiRouter::new()
        .routes(routes!(health))
        .with_state(redis)
        .routes(routes!(crate::metrics::render))
        .split_for_parts();
    routes
        .merge(common)
        .merge(crate::openapi::document(service, api, common_api))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn(crate::telemetry::http_request))
}

/// `GET /health`: `{"redis": "up", "success": true}`, or `"down"` and `false`; a server
/// without Redis has no `redis` field.
///
/// Fields in alphabetical order, as `json!` wrote them before this reply was typed.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReply {
    /// Whether Redis answers a PING; absent where the service uses no Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisState>,
    /// Whether the service can do its job.
    pub success: bool,
}

/// Whether Redis answered the health check's PING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisState {
    Up,
    Down,
}

/// 200 when Redis answers (or the service has none), 503 when it does not.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    responses(
        (status = 200, description = "The service can work: Redis answers, or it needs none", body = HealthReply),
        (status = 503, description = "Redis does not answer", body = HealthReply),
    )
)]
async fn health(State(redis): State<Option<Redis>>) -> (StatusCode, Json<HealthReply>) {
    let redis = match &redis {
        Some(redis) if redis.is_reachable().await => Some(RedisState::Up),
        Some(_) => Some(RedisState::Down),
        None => None,
    };
    let success = redis != Some(RedisState::Down);
    let status = if success {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(HealthReply { redis, success }))
}
