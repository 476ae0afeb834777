//! user-service: creates, updates and deletes accounts over REST (Redis DB 0), logs users in
//! (`POST /login`), answers `user_service.UserService` over gRPC, and subscribes every new
//! address to notifications through a durable outbox.

mod accounts;
mod domain;
mod error;
mod grpc;
mod http;
mod login;
mod password;
mod store;
mod subscriptions;

use proto::{
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::{
        token_service_server::TokenServiceServer, user_service_server::UserServiceServer,
    },
};
use service_runtime::{
    auth::{Auth, AuthConfig, TokenKeys},
    config::{self, Common},
    grpc_client, limits,
    outbox::Outbox,
    server::{Service, ServiceBuilder},
};

pub use error::Error;

/// Names of user-service's Redis keys (DB 0), for tools and tests that read the layout.
pub mod keys {
    pub use crate::store::{login_failures_key, token_generation_key, user_key};

    /// The stream of subscriptions still to be delivered.
    pub const SUBSCRIPTION_OUTBOX: &str = crate::store::SUBSCRIPTION_OUTBOX.key();
}

use std::sync::Arc;

use crate::{accounts::Accounts, login::Logins, password::PasswordHasher, store::Store};
pub use crate::{domain::PasswordPolicy, login::LoginLimits};

/// The contract's HTTP port of user-service.
pub const DEFAULT_HTTP_PORT: u16 = 8080;
/// The contract's gRPC port of user-service.
pub const DEFAULT_GRPC_PORT: u16 = 9797;
/// The Redis database index of user-service.
pub const REDIS_DB: u8 = 0;

/// Everything user-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    /// notification-service's gRPC endpoint, for subscribing new users.
    pub notification_service_url: String,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub auth: AuthConfig,
    /// `LOGIN_MAX_FAILURES`, `LOGIN_FAILURE_WINDOW`, `LOGIN_ATTEMPTS_PER_ADDRESS`.
    pub login: LoginLimits,
    /// `PASSWORD_POLICY` (default: on when protection is).
    pub password_policy: PasswordPolicy,
}

impl Config {
    /// `HTTP_PORT` (8080), `GRPC_PORT` (9797), `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`,
    /// `NOTIFICATION_SERVICE_GRPC_URL` (`http://127.0.0.1:9898`), the protection's and the
    /// login limits' variables.
    pub fn from_env() -> anyhow::Result<Self> {
        let auth = AuthConfig::from_env()?;
        Ok(Self {
            password_policy: PasswordPolicy::from_env(auth.is_on())?,
            auth,
            login: LoginLimits::from_env()?,
            common: Common::from_env(DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT)?,
            notification_service_url: config::NOTIFICATION_SERVICE.url(),
        })
    }
}

/// Binds user-service's HTTP and gRPC listeners and wires the subscription outbox worker.
/// Nothing connects yet: Redis and notification-service may come up later.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let (service, redis) =
        ServiceBuilder::with_redis("user-service", &config.common.redis_url, REDIS_DB)?;
    let keys = TokenKeys::new(&config.auth);
    let notifications = NotificationServiceClient::new(grpc_client::channel(
        "notification-service",
        &config.notification_service_url,
        keys.internal_credential(),
    )?)
    .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
    let subscriptions = Outbox::new(redis.clone(), &store::SUBSCRIPTION_OUTBOX, move |request| {
        subscriptions::deliver(notifications.clone(), request)
    });
    let store = Store {
        redis: redis.clone(),
    };
    let passwords = Arc::new(PasswordHasher::new()?);
    let accounts = Accounts::new(
        store.clone(),
        Arc::clone(&passwords),
        subscriptions.clone(),
        config.password_policy,
    );
    let logins = Logins::new(store, passwords, keys.clone(), config.login);
    // user-service checks tokens against its own store; the other services ask it.
    let auth = Auth::new(keys, logins.clone());
    let ports = config.common.ports;
    let api = http::Api {
        accounts: accounts.clone(),
        logins: logins.clone(),
    };
    let (routes, openapi) = http::router(api, &auth);
    service
        .http(ports.http, routes, openapi)
        .grpc(
            ports.grpc,
            UserServiceServer::new(grpc::UserGrpc::new(accounts, logins.clone(), auth.clone()))
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .also_grpc(
            TokenServiceServer::new(grpc::TokenGrpc::new(logins.clone(), auth))
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .outbox("subscription outbox", subscriptions)
        .worker("login limiter upkeep", move |shutdown| {
            logins.forget_idle_addresses(shutdown)
        })
        .bind()
        .await
}
