//! JSON in, JSON out: the contract's reply shape for every HTTP service.
//!
//! Every reply carries `"success"`; errors add `"message"`. Malformed JSON, a wrong content
//! type, missing, unknown or ill-typed fields, and a JSON value that is not an object where
//! an object belongs all answer 400 (axum's own extractor would mix in 415 and 422); an
//! oversized body answers 413, a request that takes too long 408, an overlong URI 414. Any
//! other error reply that is not JSON yet (axum's 405, a rejection's plain text) is given the
//! contract's shape on its way out.

use std::{
    fmt,
    marker::PhantomData,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{
        ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State,
        rejection::JsonRejection,
    },
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{DeserializeOwned, MapAccess, Visitor, value::MapAccessDeserializer},
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

mod lists;

pub use self::lists::{
    ConversationPageParams, EmailOnly, EmailParam, EmailQuery, MAX_PAGE, NotificationPageParams,
};
use crate::{config::HttpLimits, cors::CorsPolicy, openapi::ErrorReply, redis_store::Redis};

/// Largest request body accepted; the contract's bodies are a few hundred bytes.
const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// A JSON error reply: `{"success": false, "message": ...}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorReply::new(message))).into_response()
}

/// Like `axum::Json`, but the body must be a JSON object and every rejection is a
/// contract-shaped JSON error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<JsonObject<T>>::from_request(req, state).await {
            Ok(Json(JsonObject(value))) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection_response(&rejection)),
        }
    }
}

/// `T` read only from a JSON object. serde's derived `Deserialize` of a struct also takes an
/// array of its fields in order (`["a@x.io", "pw", "A"]`), which no client of the contract
/// sends on purpose; this refuses it, and any other non-object, as "expected a JSON object".
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(JsonObject)
    }
}

/// For `#[serde(deserialize_with = "service_runtime::http::object")]` on a field that holds a
/// struct: the field's value must be a JSON object (see [`JsonObject`]).
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    JsonObject::deserialize(deserializer).map(|JsonObject(value)| value)
}

fn json_rejection_response(rejection: &JsonRejection) -> Response {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, rejection.body_text())
}

/// Wraps a service's routes with what every HTTP server has: `GET /health`, `GET /metrics`,
/// `GET /openapi.json` (describing `api`, the routes' document, and these), a JSON 404, the
/// body limit (413), the request timeout (408), the URI limit (414), the contract's shape
/// for every error reply, and CORS (`cors`: a preflight is answered before any of the rest).
pub fn with_common_routes(
    service: &'static str,
    routes: Router,
    api: OpenApi,
    redis: Option<Redis>,
    limits: HttpLimits,
    cors: CorsPolicy,
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
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            answer_within,
        ))
        .layer(middleware::from_fn_with_state(
            limits.max_uri_bytes,
            refuse_long_uri,
        ))
        .layer(middleware::map_response(contract_error_shape))
        .layer(cors)
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

/// How much of a plain-text error reply is kept as its message.
const ERROR_TEXT_LIMIT: usize = 4 * 1024;

/// Gives an error reply that is not JSON (axum's empty 405, an extractor's plain-text
/// rejection) the contract's shape, keeping its status and headers (a 405's `Allow`) and its
/// text as the message. A 422 becomes 400: the contract answers 400 for a body of the wrong
/// shape.
async fn contract_error_shape(reply: Response) -> Response {
    let status = reply.status();
    let is_error = status.is_client_error() || status.is_server_error();
    if !is_error || is_json(reply.headers()) {
        return reply;
    }
    let (mut parts, body) = reply.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_LIMIT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let status = match status {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut shaped = error_response(status, message);
    shaped.headers_mut().extend(parts.headers);
    shaped
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
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

/// The address an HTTP request comes from (the TCP peer: a proxy in front is one address for
/// all its clients), if the server recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}
