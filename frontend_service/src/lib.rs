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
    auth::{Auth, TokenKeys},
    config::{Runtime, ServiceConfig},
    grpc_client::{NOTIFICATION_SERVICE, USER_SERVICE},
    limits,
    server::{Service, ServiceBuilder},
};

/// The Redis database the live feed's connection selects (pub/sub itself spans databases).
pub const REDIS_DB: u8 = 2;

/// Everything frontend-service reads from its flags and environment.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "frontend-service",
    version,
    about = "Takes pushed notifications and streams them live to watchers (WatchNotifications)."
)]
pub struct Config {
    /// gRPC port; 0 picks a free one.
    #[arg(long = "grpc-port", env = "GRPC_PORT", default_value_t = 3030)]
    pub grpc_port: u16,
    /// HTTP port (`/metrics`, `/health`, `/openapi.json`); 0 picks a free one.
    #[arg(long = "metrics-port", env = "METRICS_PORT", default_value_t = 3031)]
    pub metrics_port: u16,
    /// notification-service's gRPC endpoint, whose store watchers replay from.
    #[arg(long = "notification-service-grpc-url", env = NOTIFICATION_SERVICE.var, default_value = NOTIFICATION_SERVICE.default_url)]
    pub notification_service_url: String,
    /// user-service's gRPC endpoint: asked whether a token is still valid.
    #[arg(long = "user-service-grpc-url", env = USER_SERVICE.var, default_value = USER_SERVICE.default_url)]
    pub user_service_url: String,
    #[command(flatten)]
    pub runtime: Runtime,
}

impl ServiceConfig for Config {
    fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

/// Binds frontend-service's gRPC server and starts its live feed. Redis and
/// notification-service are connected lazily.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let runtime = &config.runtime;
    let (builder, redis) = ServiceBuilder::with_redis("frontend-service", runtime, REDIS_DB)?;
    metrics::describe();
    let live = live::LiveFeed::new(redis);
    let keys = TokenKeys::new(&runtime.auth);
    let store = NotificationServiceClient::new(
        NOTIFICATION_SERVICE
            .channel(&config.notification_service_url, keys.internal_credential())?,
    )
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys, &config.user_service_url)?;
    let api = grpc::FrontendGrpc {
        live: live.clone(),
        store,
        shutdown: builder.shutdown_signal(),
    };
    builder
        .grpc(
            config.grpc_port,
            FrontendServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .grpc_access(&auth, grpc::ACCESS)
        // No API of its own: the runtime adds /metrics, /health and their document.
        .http(config.metrics_port, Router::new(), OpenApi::default())
        .worker("live feed", move |shutdown| live.run(shutdown))
        .bind()
        .await
}
