//! message-service: stores messages between users (Redis DB 1), lists them and the user's
//! conversations, and has the receiver notified through a durable outbox.
//!
//! `SendMessage` writes the message, its conversation entries and an outbox entry in one atomic
//! step, then answers at once; the outbox worker (`notify.rs`) calls
//! `NotificationService.CreateNotification` until it gets an answer.

mod error;
mod grpc;
mod http;
mod notify;
mod store;

use proto::{
    message_service::message_service_server::MessageServiceServer,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_client::UserServiceClient,
};
use service_runtime::{
    auth::{Auth, AuthConfig, TokenKeys},
    config::{self, Common, parse_or},
    grpc_client, limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;

/// Names of message-service's Redis keys (DB 1), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{
        MESSAGE_ID_COUNTER, conversation_key, conversations_key, message_key, user_messages_key,
    };

    /// The stream of notifications still to be created.
    pub const NOTIFICATION_OUTBOX: &str = crate::store::NOTIFICATION_OUTBOX.key();
}

/// The contract's ports of message-service.
pub const DEFAULT_HTTP_PORT: u16 = 8181;
pub const DEFAULT_GRPC_PORT: u16 = 9696;
/// The Redis database message-service owns.
pub const REDIS_DB: u8 = 1;

/// Everything message-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    pub user_service_url: String,
    pub notification_service_url: String,
    /// Longest message content accepted, in bytes (`MAX_MESSAGE_BYTES`, default 64 KiB).
    pub max_message_bytes: usize,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub auth: AuthConfig,
}

impl Config {
    /// The contract's variables, with the contract's defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            common: Common::from_env(DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT)?,
            user_service_url: config::USER_SERVICE.url(),
            notification_service_url: config::NOTIFICATION_SERVICE.url(),
            max_message_bytes: parse_or("MAX_MESSAGE_BYTES", limits::DEFAULT_MAX_MESSAGE_BYTES)?,
            auth: AuthConfig::from_env()?,
        })
    }
}

/// The notification outbox of message-service.
type NotificationOutbox = Outbox<store::NotificationRequest>;

/// Binds message-service's HTTP and gRPC listeners and sets up its notification outbox.
/// Redis and the peers are connected lazily: the service starts while they are down.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let (service, redis) =
        ServiceBuilder::with_redis("message-service", &config.common.redis_url, REDIS_DB)?;
    let keys = TokenKeys::new(&config.auth);
    let credential = keys.internal_credential();
    let users = UserServiceClient::new(grpc_client::channel(
        "user-service",
        &config.user_service_url,
        credential,
    )?)
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let notifications = NotificationServiceClient::new(grpc_client::channel(
        "notification-service",
        &config.notification_service_url,
        credential,
    )?)
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys.clone(), &config.user_service_url)?;
    let outbox = Outbox::new(redis.clone(), &store::NOTIFICATION_OUTBOX, move |request| {
        notify::deliver(notifications.clone(), request)
    });
    let store = store::Store {
        redis: redis.clone(),
    };
    let api = grpc::MessageGrpc {
        store: store.clone(),
        users,
        notifications: outbox.clone(),
        max_content_bytes: config.max_message_bytes,
        auth: auth.clone(),
    };
    // A request is the content plus a few addresses: room for both, at least the default.
    let max_request_bytes = limits::GRPC_MAX_MESSAGE_BYTES.max(config.max_message_bytes + 4096);
    let ports = config.common.ports;
    let (routes, openapi) = http::router(store, &auth);
    service
        .http(ports.http, routes, openapi)
        .grpc(
            ports.grpc,
            MessageServiceServer::new(api).max_decoding_message_size(max_request_bytes),
        )
        .outbox("notification outbox", outbox)
        .bind()
        .await
}
