//! notification-service: keeps who is subscribed and each receiver's notifications (Redis DB 2),
//! and pushes every new notification to frontend-service through a durable outbox.
//!
//! `CreateNotification` checks the subscription, stores the notification and its outbox entry
//! in one atomic step, and answers once they are stored; the push to frontend-service starts
//! at once in the background, and the outbox worker (`push.rs`) calls
//! `FrontendService.ReceiveNotification` until frontend-service takes it. Marking read and
//! deleting are pushed the same way, through their own outbox (`changes.rs`), so every live
//! stream of the receiver hears of them.

mod change_record;
mod changes;
mod error;
mod grpc;
mod http;
mod push;
mod record;
mod selection;
mod store;

use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    notification_service::notification_service_server::NotificationServiceServer,
};
use service_runtime::{
    auth::{Auth, ServiceName, TokenKeys},
    grpc_client::{FrontendServicePeer, UserServicePeer},
    limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;
pub use store::Retention;

/// Names of notification-service's Redis keys (DB 2), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{
        SUBSCRIPTIONS, TOMBSTONE_TTL, notification_cursor_key, notification_ids_key,
        notification_index_key, notification_tombstones_key, notification_trimmed_key,
        notification_unread_key, notifications_key,
    };

    /// The stream of notifications still to be pushed to frontend-service.
    pub const FRONTEND_OUTBOX: &str = crate::store::FRONTEND_OUTBOX.key();
    /// The stream of read-state changes still to be pushed to frontend-service.
    pub const FRONTEND_CHANGES: &str = crate::store::FRONTEND_CHANGES.key();
}

/// The Redis database notification-service owns.
pub const REDIS_DB: u8 = 2;

service_runtime::service_config! {
    /// Everything notification-service reads from its flags and environment.
    #[command(name = "notification-service", version, about = "Subscriptions and each receiver's notifications (Redis DB 2); pushes new ones to frontend-service.")]
    pub struct Config {
        http: ("HTTP_PORT", "http-port", 8282),
        grpc: 9898,
        /// frontend-service, where every new notification is pushed.
        #[command(flatten)]
        pub frontend_service: FrontendServicePeer,
        /// user-service, asked whether a token is still valid.
        #[command(flatten)]
        pub user_service: UserServicePeer,
        #[command(flatten)]
        pub retention: Retention,
    }
}

/// Binds notification-service's HTTP and gRPC listeners and sets up its frontend outbox.
/// Redis and frontend-service are connected lazily: the service starts while they are down.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let runtime = &config.runtime;
    let (service, redis) = ServiceBuilder::with_redis("notification-service", runtime, REDIS_DB)?;
    let keys = TokenKeys::of_service(&runtime.auth, ServiceName::Notification);
    let frontend = FrontendServiceClient::new(
        config
            .frontend_service
            .channel(keys.internal_credential())?,
    )
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let auth = Auth::via_user_service(keys, &config.user_service)?;
    let pushes = Outbox::new(redis.clone(), &store::FRONTEND_OUTBOX, &runtime.hostname, {
        let frontend = frontend.clone();
        move |stored| push::deliver(frontend.clone(), stored)
    });
    let changes = Outbox::new(
        redis.clone(),
        &store::FRONTEND_CHANGES,
        &runtime.hostname,
        move |change| changes::deliver(frontend.clone(), change),
    );
    let store = store::Store {
        redis: redis.clone(),
        retention: config.retention,
    };
    let inbox = changes::Inbox {
        store,
        changes: changes.clone(),
    };
    let api = grpc::NotificationGrpc::new(inbox.clone(), pushes.clone());
    let (routes, openapi) = http::router(inbox, &auth);
    service
        .http(config.http_port, routes, openapi)
        .grpc(
            config.grpc_port,
            NotificationServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .grpc_access(&auth, grpc::ACCESS)
        .outbox("frontend outbox", pushes)
        .outbox("frontend change outbox", changes)
        .bind()
        .await
}
