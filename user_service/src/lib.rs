//! user-service: creates, updates and deletes accounts over REST (Redis DB 0), logs users in
//! (`POST /login`), answers `user_service.UserService` over gRPC, and subscribes every new
//! address to notifications through a durable outbox.

mod accounts;
mod domain;
mod error;
mod grpc;
mod http;
mod lifecycle;
mod login;
mod password;
mod store;
mod subscriptions;

use std::sync::Arc;

use proto::{
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::{
        account_service_server::AccountServiceServer, token_service_server::TokenServiceServer,
        user_service_server::UserServiceServer,
    },
};
use service_runtime::{
    auth::{Auth, ServiceName, TokenKeys},
    grpc_client::{MessageServicePeer, NotificationServicePeer},
    limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;

/// Names of user-service's Redis keys (DB 0), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{
        account_change_key, login_failures_key, token_generation_key, user_key,
    };

    /// The stream of account changes (deletes, moves) still to be delivered.
    pub const ACCOUNT_OUTBOX: &str = crate::store::ACCOUNT_OUTBOX.key();

    /// The stream of subscriptions still to be delivered.
    pub const SUBSCRIPTION_OUTBOX: &str = crate::store::SUBSCRIPTION_OUTBOX.key();
}

use crate::{
    accounts::Accounts,
    login::{AddressLimit, Logins},
    password::PasswordHasher,
    store::Store,
};
pub use crate::{
    domain::{PasswordPolicy, PasswordPolicySetting},
    login::LoginLimits,
};

/// The Redis database index of user-service.
pub const REDIS_DB: u8 = 0;

service_runtime::service_config! {
    /// Everything user-service reads from its flags and environment.
    #[command(name = "user-service", version, about = "Accounts over REST, authentication and lookups over gRPC (Redis DB 0).")]
    pub struct Config {
        http: ("HTTP_PORT", "http-port", 8080),
        grpc: 9797,
        /// notification-service, where new users are subscribed.
        #[command(flatten)]
        pub notification_service: NotificationServicePeer,
        /// message-service, which forgets or carries a deleted or moved user's messages.
        #[command(flatten)]
        pub message_service: MessageServicePeer,
        #[command(flatten)]
        pub login: LoginLimits,
        #[command(flatten)]
        pub password_policy: PasswordPolicySetting,
    }
}

/// Binds user-service's HTTP and gRPC listeners and wires the subscription outbox worker.
/// Nothing connects yet: Redis and notification-service may come up later.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let runtime = &config.runtime;
    let (service, redis) = ServiceBuilder::with_redis("user-service", runtime, REDIS_DB)?;
    let keys = TokenKeys::of_service(&runtime.auth, ServiceName::User);
    let notifications = NotificationServiceClient::new(
        config
            .notification_service
            .channel(keys.internal_credential())?,
    )
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let messages =
        MessageServiceClient::new(config.message_service.channel(keys.internal_credential())?)
            .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let store = Store {
        redis: redis.clone(),
        generation_ttl: runtime.auth.token_ttl + store::CLOCK_MARGIN,
    };
    let peers = lifecycle::Peers {
        store: store.clone(),
        notifications: notifications.clone(),
        messages,
    };
    let subscriptions = Outbox::new(
        redis.clone(),
        &store::SUBSCRIPTION_OUTBOX,
        &runtime.hostname,
        move |request| subscriptions::deliver(notifications.clone(), request),
    );
    let changes = Outbox::new(
        redis.clone(),
        &store::ACCOUNT_OUTBOX,
        &runtime.hostname,
        move |change| lifecycle::deliver(peers.clone(), change),
    );
    let passwords = Arc::new(PasswordHasher::new()?);
    let accounts = Accounts::new(
        store.clone(),
        Arc::clone(&passwords),
        subscriptions.clone(),
        changes.clone(),
        config.password_policy.resolve(runtime.auth.is_on()),
        AddressLimit::new(
            config.login.new_passwords_per_address,
            "too many sign-ups and password changes from this address",
        ),
    );
    let logins = Logins::new(store, passwords, keys.clone(), config.login);
    // user-service checks tokens against its own store; the other services ask it.
    let auth = Auth::new(keys, logins.clone());
    let api = http::Api {
        accounts: accounts.clone(),
        logins: logins.clone(),
    };
    let new_passwords = accounts.address_limit();
    let (routes, openapi) = http::router(api, &auth);
    service
        .http(config.http_port, routes, openapi)
        .grpc(
            config.grpc_port,
            UserServiceServer::new(grpc::UserGrpc::new(accounts.clone(), logins.clone()))
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .also_grpc(
            TokenServiceServer::new(grpc::TokenGrpc::new(logins.clone(), auth.clone()))
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .also_grpc(
            AccountServiceServer::new(grpc::AccountGrpc::new(
                accounts.clone(),
                logins.clone(),
                auth.clone(),
            ))
            .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .grpc_access(&auth, grpc::ACCESS)
        .outbox("subscription outbox", subscriptions)
        .outbox("account outbox", changes)
        .worker("login limiter upkeep", {
            let limit = logins.address_limit();
            move |shutdown| limit.forget_idle_addresses(shutdown)
        })
        .worker("new-password limiter upkeep", move |shutdown| {
            new_passwords.forget_idle_addresses(shutdown)
        })
        .bind()
        .await
}
