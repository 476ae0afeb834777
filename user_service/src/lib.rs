//! user-service: creates, updates and deletes accounts over REST (Redis DB 0), answers
//! `user_service.UserService` over gRPC, and subscribes every new address to notifications
//! through a durable outbox.

mod accounts;
mod domain;
mod error;
mod grpc;
mod http;
mod password;
mod store;
mod subscriptions;

use proto::{
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_server::UserServiceServer,
};
use service_runtime::{
    config::{Common, url_or},
    grpc_client,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;

/// Names of user-service's Redis keys (DB 0), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::user_key;

    /// The stream of subscriptions still to be delivered.
    pub const SUBSCRIPTION_OUTBOX: &str = crate::store::SUBSCRIPTION_OUTBOX.key();
}

use crate::{accounts::Accounts, password::PasswordHasher, store::Store};

/// The contract's HTTP port of user-service.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// The contract's gRPC port of user-service.
pub const DEFAULT_GRPC_PORT: u16 = 9797;
/// Where notification-service listens unless `NOTIFICATION_SERVICE_GRPC_URL` says otherwise.
pub const DEFAULT_NOTIFICATION_SERVICE_GRPC_URL: &str = "http://127.0.0.1:9898";
/// The Redis database index of user-service.
pub const REDIS_DB: u8 = 0;

/// Everything user-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    /// notification-service's gRPC endpoint, for subscribing new users.
    pub notification_service_url: String,
}

impl Config {
    /// `HTTP_PORT` (8080), `GRPC_PORT` (9797), `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`,
    /// `NOTIFICATION_SERVICE_GRPC_URL` (`http://127.0.0.1:9898`).
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT)?,
            notification_service_url: url_or(
                "NOTIFICATION_SERVICE_GRPC_URL",
                DEFAULT_NOTIFICATION_SERVICE_GRPC_URL,
            ),
        })
    }
}

/// Binds user-service's HTTP and gRPC listeners and wires the subscription outbox worker.
/// Nothing connects yet: Redis and notification-service may come up later.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let (service, redis) =
        ServiceBuilder::with_redis("user-service", &config.common.redis_url, REDIS_DB)?;
    let notifications = NotificationServiceClient::new(grpc_client::channel(
        "notification-service",
        &config.notification_service_url,
    )?);
    let subscriptions = Outbox::new(redis.clone(), &store::SUBSCRIPTION_OUTBOX, move |request| {
        subscriptions::deliver(notifications.clone(), request)
    });
    let store = Store {
        redis: redis.clone(),
    };
    let accounts = Accounts::new(store, PasswordHasher::new()?, subscriptions.clone());
    let ports = config.common.ports;
    let (routes, openapi) = http::router(accounts.clone());
    service
        .http(ports.http, routes, openapi)
        .grpc(
            ports.grpc,
            UserServiceServer::new(grpc::UserGrpc::new(accounts)),
        )
        .outbox("subscription outbox", subscriptions)
        .bind()
        .await
}
