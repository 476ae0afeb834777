//! frontend-service: the gRPC endpoint notifications are pushed to, and the live feed
//! watchers attach to. A pushed notification is fanned out to every replica's watchers of its
//! receiver through Redis pub/sub (`live.rs`); a watcher first gets what it missed from
//! notification-service's store, then live notifications, in order and each once (`watch.rs`).
//! Its HTTP port (`METRICS_PORT`) serves only `/metrics`, `/health` and `/openapi.json`.

mod grpc;
mod live;
mod metrics;
mod watch;

use axum::Router;
use utoipa::openapi::OpenApi;

use proto::{
    frontend_service::frontend_service_server::FrontendServiceServer,
    notification_service::notification_service_client::NotificationServiceClient,
};
use service_runtime::{
    auth::{Auth, AuthConfig, TokenKeys},
    config::{self, parse_or, redis_base_url},
    grpc_client, limits,
    server::{Service, ServiceBuilder},
};

/// The contract's gRPC port of frontend-service.
pub const DEFAULT_GRPC_PORT: u16 = 3030;
/// The (additive) HTTP port of frontend-service, for `/metrics` and `/health` only.
pub const DEFAULT_METRICS_PORT: u16 = 3031;
/// The Redis database the live feed's connection selects (pub/sub itself spans databases).
pub const REDIS_DB: u8 = 2;

/// Everything frontend-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_port: u16,
    /// The HTTP port for `/metrics` and `/health`; 0 picks a free port.
    pub metrics_port: u16,
    /// `redis://host:port` for the live feed.
    pub redis_url: String,
    /// notification-service's gRPC endpoint, whose store watchers replay from.
    pub notification_service_url: String,
    pub user_service_url: String,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub auth: AuthConfig,
}

impl Config {
    /// `GRPC_PORT` (3030), `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`,
    /// `NOTIFICATION_SERVICE_GRPC_URL` (`http://127.0.0.1:9898`), `USER_SERVICE_GRPC_URL`,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            grpc_port: parse_or("GRPC_PORT", DEFAULT_GRPC_PORT)?,
            metrics_port: parse_or("METRICS_PORT", DEFAULT_METRICS_PORT)?,
            redis_url: redis_base_url()?,
            notification_service_url: config::NOTIFICATION_SERVICE.url(),
            user_service_url: config::USER_SERVICE.url(),
            auth: AuthConfig::from_env()?,
        })
    }
}

/// Binds frontend-service's gRPC server and starts its live feed. Redis and
/// notification-service are connected lazily.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let (builder, redis) =
        ServiceBuilder::with_redis("frontend-service", &config.redis_url, REDIS_DB)?;
    metrics::describe();
    let live = live::LiveFeed::new(redis);
    let keys = TokenKeys::new(&config.auth);
    let store = NotificationServiceClient::new(grpc_client::channel(
        "notification-service",
        &config.notification_service_url,
        keys.internal_credential(),
    )?)
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys, &config.user_service_url)?;
    let api = grpc::FrontendGrpc {
        live: live.clone(),
        store,
        shutdown: builder.shutdown_signal(),
        auth,
    };
    builder
        .grpc(
            config.grpc_port,
            FrontendServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        // No API of its own: the runtime adds /metrics, /health and their document.
        .http(config.metrics_port, Router::new(), OpenApi::default())
        .worker("live feed", move |shutdown| live.run(shutdown))
        .bind()
        .await
}
