//! frontend-service: the gRPC endpoint notifications are pushed to, and the live feed
//! watchers attach to. A pushed notification is fanned out to every replica's watchers of its
//! receiver through Redis pub/sub (`live.rs`); a watcher first gets what it missed from
//! notification-service's store, then live notifications, in order and each once (`watch.rs`).
//! Its HTTP port (`METRICS_PORT`, alias `FRONTEND_HTTP_PORT`) serves the web inbox (`page/`:
//! `GET /` and its `/api/`), the same feed to browsers as Server-Sent Events (`GET /live`,
//! `sse.rs`, with read-state changes pushed by notification-service's `ReceiveInboxChange`),
//! `/metrics`, `/health` and `/openapi.json`.

mod grpc;
mod lease;
mod live;
mod metrics;
mod page;
mod sse;
mod watch;

use proto::{
    frontend_service::frontend_service_server::FrontendServiceServer,
    notification_service::notification_service_client::NotificationServiceClient,
};
use service_runtime::{
    auth::{Auth, ServiceName, TokenKeys},
    grpc_client::{MessageServicePeer, NotificationServicePeer, UserServicePeer},
    limits,
    server::{Service, ServiceBuilder},
};

/// The Redis database the live feed's connection selects (pub/sub itself spans databases).
pub const REDIS_DB: u8 = 2;

service_runtime::service_config! {
    /// Everything frontend-service reads from its flags and environment. Its HTTP port
    /// (`METRICS_PORT`, or `FRONTEND_HTTP_PORT` when that is unset) serves the web inbox,
    /// `GET /live`, `/metrics`, `/health` and `/openapi.json`.
    #[command(name = "frontend-service", version, about = "Takes pushed notifications and streams them live to watchers (WatchNotifications).")]
    pub struct Config {
        http: ("METRICS_PORT" or "FRONTEND_HTTP_PORT", "metrics-port", 3031),
        grpc: 3030,
        /// notification-service, whose store watchers replay from.
        #[command(flatten)]
        pub notification_service: NotificationServicePeer,
        /// user-service, asked whether a token is still valid, and the web inbox's sign-up
        /// and sign-in.
        #[command(flatten)]
        pub user_service: UserServicePeer,
        /// message-service, where the web inbox sends messages.
        #[command(flatten)]
        pub message_service: MessageServicePeer,
        #[command(flatten)]
        pub live: sse::LiveSettings,
    }
}

/// Binds frontend-service's gRPC server and starts its live feed. Redis and
/// notification-service are connected lazily.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let runtime = &config.runtime;
    let (builder, redis) = ServiceBuilder::with_redis("frontend-service", runtime, REDIS_DB)?;
    metrics::describe();
    let live = live::LiveFeed::new(redis);
    let keys = TokenKeys::of_service(&runtime.auth, ServiceName::Frontend);
    let store = NotificationServiceClient::new(
        config
            .notification_service
            .channel(keys.internal_credential())?,
    )
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys, &config.user_service)?;
    let (live_routes, mut openapi) = sse::router(sse::SseApi {
        live: live.clone(),
        store: store.clone(),
        auth: auth.clone(),
        shutdown: builder.shutdown_signal(),
        settings: config.live,
    });
    let (page_routes, page_api) = page::router(page::Page::new(
        auth.clone(),
        &page::Peers {
            notification_service: &config.notification_service,
            message_service: &config.message_service,
            user_service: &config.user_service,
        },
    )?);
    openapi.merge(page_api);
    let api = grpc::FrontendGrpc {
        live: live.clone(),
        store,
        shutdown: builder.shutdown_signal(),
        auth: auth.clone(),
    };
    builder
        .grpc(
            config.grpc_port,
            FrontendServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .grpc_access(&auth, grpc::ACCESS)
        // The runtime adds /metrics, /health and their document.
        .http(config.http_port, live_routes.merge(page_routes), openapi)
        .http_streams(sse::STREAM_PATHS)
        .worker("live feed", move |shutdown| live.run(shutdown))
        .bind()
        .await
}
