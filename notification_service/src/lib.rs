//! notification-service: keeps who is subscribed and each receiver's notifications (Redis DB 2),
//! and pushes every new notification to frontend-service through a durable outbox.
//!
//! `CreateNotification` checks the subscription, stores the notification and its outbox entry
//! in one atomic step, and answers at once; the outbox worker (`push.rs`) calls
//! `FrontendService.ReceiveNotification` until frontend-service takes it.

mod error;
mod grpc;
mod http;
mod push;
mod record;
mod store;

use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    notification_service::notification_service_server::NotificationServiceServer,
};
use service_runtime::{
    auth::{Auth, AuthConfig, TokenKeys},
    config::{self, Common, parse_or},
    grpc_client, limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;
pub use store::Retention;

/// Names of notification-service's Redis keys (DB 2), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{
        SUBSCRIPTIONS, notification_cursor_key, notification_ids_key, notification_index_key,
        notification_unread_key, notifications_key,
    };

    /// The stream of notifications still to be pushed to frontend-service.
    pub const FRONTEND_OUTBOX: &str = crate::store::FRONTEND_OUTBOX.key();
}

/// The contract's ports of notification-service.
pub const DEFAULT_HTTP_PORT: u16 = 8282;
pub const DEFAULT_GRPC_PORT: u16 = 9898;
/// The Redis database notification-service owns.
pub const REDIS_DB: u8 = 2;

/// Everything notification-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    pub frontend_service_url: String,
    /// `NOTIFICATION_RETENTION_COUNT` (1000) and `NOTIFICATION_RETENTION_DAYS` (30).
    pub retention: Retention,
    pub user_service_url: String,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub auth: AuthConfig,
}

impl Config {
    /// The contract's variables, with the contract's defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT)?,
            frontend_service_url: config::FRONTEND_SERVICE.url(),
            retention: Retention {
                count: parse_or("NOTIFICATION_RETENTION_COUNT", 1000)?,
                days: parse_or("NOTIFICATION_RETENTION_DAYS", 30)?,
            },
            user_service_url: config::USER_SERVICE.url(),
            auth: AuthConfig::from_env()?,
        })
    }
}

/// The frontend outbox of notification-service.
type FrontendOutbox = Outbox<record::StoredNotification>;

/// Binds notification-service's HTTP and gRPC listeners and sets up its frontend outbox.
/// Redis and frontend-service are connected lazily: the service starts while they are down.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let (service, redis) =
        ServiceBuilder::with_redis("notification-service", &config.common.redis_url, REDIS_DB)?;
    let keys = TokenKeys::new(&config.auth);
    let frontend = FrontendServiceClient::new(grpc_client::channel(
        "frontend-service",
        &config.frontend_service_url,
        keys.internal_credential(),
    )?)
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys, &config.user_service_url)?;
    let pushes = Outbox::new(redis.clone(), &store::FRONTEND_OUTBOX, move |stored| {
        push::deliver(frontend.clone(), stored)
    });
    let store = store::Store {
        redis: redis.clone(),
        retention: config.retention,
    };
    let api = grpc::NotificationGrpc::new(store.clone(), pushes.clone(), auth.clone());
    let ports = config.common.ports;
    let (routes, openapi) = http::router(store, &auth);
    service
        .http(ports.http, routes, openapi)
        .grpc(
            ports.grpc,
            NotificationServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .outbox("frontend outbox", pushes)
        .bind()
        .await
}
