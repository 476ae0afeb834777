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
    message_service::message_service_server::{MessageServiceServer, SERVICE_NAME},
    user_service::user_service_client::UserServiceClient,
};
use service_runtime::{
    config::{Ports, url_or},
    grpc_client,
    outbox::Outbox,
    redis_store::Redis,
    server::{Service, ServiceBuilder},
};
use tonic::service::Routes;

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
pub const DEFAULT_USER_SERVICE_GRPC_URL: &str = "http://127.0.0.1:9797";
pub const DEFAULT_NOTIFICATION_SERVICE_GRPC_URL: &str = "http://127.0.0.1:9898";

/// Everything message-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub ports: Ports,
    /// Redis without a database index; [`REDIS_DB`] is selected.
    pub redis_url: String,
    pub user_service_url: String,
    pub notification_service_url: String,
}

impl Config {
    /// The contract's variables, with the contract's defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            ports: Ports::from_env(DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT)?,
            redis_url: service_runtime::config::redis_base_url()?,
            user_service_url: url_or("USER_SERVICE_GRPC_URL", DEFAULT_USER_SERVICE_GRPC_URL),
            notification_service_url: url_or(
                "NOTIFICATION_SERVICE_GRPC_URL",
                DEFAULT_NOTIFICATION_SERVICE_GRPC_URL,
            ),
        })
    }
}

/// The notification outbox of message-service.
type NotificationOutbox = Outbox<store::NotificationRequest, notify::Notifier>;

/// Binds message-service's HTTP and gRPC listeners and sets up its notification outbox.
/// Redis and the peers are connected lazily: the service starts while they are down.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let redis = Redis::connect(&config.redis_url, REDIS_DB)?;
    let store = store::Store::new(redis.clone());
    let users = UserServiceClient::new(grpc_client::channel(&config.user_service_url)?);
    let notifier = notify::Notifier::new(&config.notification_service_url)?;
    let outbox: NotificationOutbox =
        Outbox::new(redis.clone(), &store::NOTIFICATION_OUTBOX, notifier);

    let api = grpc::MessageGrpc::new(store.clone(), users, outbox.clone());
    ServiceBuilder::new("message-service")
        .redis(redis)
        .http(config.ports.http, http::router(store))
        .grpc(
            config.ports.grpc,
            Routes::new(MessageServiceServer::new(api)),
            &[SERVICE_NAME],
        )
        .worker("notification outbox", move |shutdown| outbox.run(shutdown))
        .bind()
        .await
}
