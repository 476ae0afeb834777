//! message-service: stores messages between users (Redis DB 1), lists them and the user's
//! conversations, and has the receiver notified through a durable outbox.
//!
//! `SendMessage` writes the message, its conversation entries and an outbox entry in one atomic
//! step, then creates the notification itself (`NotificationService.CreateNotification`,
//! within a deadline) before it answers; when that did not succeed, the outbox worker
//! (`notify.rs`) calls it until it gets an answer.

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
    auth::{Auth, ServiceName, TokenKeys},
    config::positive,
    grpc_client::{NotificationServicePeer, UserServicePeer},
    limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;

/// Names of message-service's Redis keys (DB 1), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{
        MESSAGE_ID_COUNTER, SEND_KEY_TTL_SECONDS, conversation_key, conversations_key, message_key,
        send_key, user_messages_key,
    };

    /// The stream of notifications still to be created.
    pub const NOTIFICATION_OUTBOX: &str = crate::store::NOTIFICATION_OUTBOX.key();
}

/// The Redis database message-service owns.
pub const REDIS_DB: u8 = 1;

service_runtime::service_config! {
    /// Everything message-service reads from its flags and environment.
    #[command(name = "message-service", version, about = "Messages between users (Redis DB 1): SendMessage/GetMessages over gRPC, conversations over REST.")]
    pub struct Config {
        http: ("HTTP_PORT", "http-port", 8181),
        grpc: 9696,
        /// user-service, where both users of a message are checked.
        #[command(flatten)]
        pub user_service: UserServicePeer,
        /// notification-service, where each message becomes a notification.
        #[command(flatten)]
        pub notification_service: NotificationServicePeer,
        /// Longest message content accepted, in bytes.
        #[arg(long = "max-message-bytes", env = "MAX_MESSAGE_BYTES", default_value_t = limits::DEFAULT_MAX_MESSAGE_BYTES, value_parser = positive::<usize>)]
        pub max_message_bytes: usize,
    }
}

/// Binds message-service's HTTP and gRPC listeners and sets up its notification outbox.
/// Redis and the peers are connected lazily: the service starts while they are down.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let runtime = &config.runtime;
    let (service, redis) = ServiceBuilder::with_redis("message-service", runtime, REDIS_DB)?;
    let keys = TokenKeys::of_service(&runtime.auth, ServiceName::Message);
    let credential = keys.internal_credential();
    let users = UserServiceClient::new(config.user_service.channel(credential)?)
        .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let notifications =
        NotificationServiceClient::new(config.notification_service.channel(credential)?)
            .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys.clone(), &config.user_service)?;
    let outbox = Outbox::new(
        redis.clone(),
        &store::NOTIFICATION_OUTBOX,
        &runtime.hostname,
        move |request| notify::deliver(notifications.clone(), request),
    );
    let store = store::Store {
        redis: redis.clone(),
    };
    let api = grpc::MessageGrpc {
        store: store.clone(),
        users,
        notifications: outbox.clone(),
        max_content_bytes: config.max_message_bytes,
    };
    // A request is the content plus a few addresses: room for both, at least the default.
    let max_request_bytes = limits::GRPC_MAX_MESSAGE_BYTES.max(config.max_message_bytes + 4096);
    let (routes, openapi) = http::router(store, &auth);
    service
        .http(config.http_port, routes, openapi)
        .grpc(
            config.grpc_port,
            MessageServiceServer::new(api).max_decoding_message_size(max_request_bytes),
        )
        .grpc_access(&auth, grpc::ACCESS)
        .outbox("notification outbox", outbox)
        .bind()
        .await
}
