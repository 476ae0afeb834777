//! Delivering the subscription outbox: each entry becomes one
//! `NotificationService.SubscribeUser` call, made inline by the request that wrote the entry
//! and retried by the outbox worker when that did not succeed (see `accounts.rs`). Delivery is
//! at-least-once; subscribing twice is harmless because SubscribeUser just sets the user's
//! subscription to true.

use proto::notification_service::{
    SubscribeUserRequest, notification_service_client::NotificationServiceClient,
};
use service_runtime::{
    grpc_client::{self, GrpcChannel},
    outbox::{Deliver, Delivery},
};

use crate::store::SubscriptionRequest;

/// A client of notification-service for the subscription outbox.
pub struct Subscriber {
    client: NotificationServiceClient<GrpcChannel>,
}

impl Subscriber {
    /// Connects lazily: notification-service may start after us.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: NotificationServiceClient::new(grpc_client::channel(url)?),
        })
    }
}

impl Deliver<SubscriptionRequest> for Subscriber {
    /// Subscribes the address of one outbox entry.
    async fn deliver(&self, request: SubscriptionRequest) -> Delivery {
        let reply = self
            .client
            .clone()
            .subscribe_user(SubscribeUserRequest {
                email: Some(request.email.clone()),
            })
            .await;
        match reply {
            Ok(reply) if reply.get_ref().success == Some(true) => {
                tracing::info!(email = request.email, "user subscribed to notifications");
                Delivery::Done
            }
            Ok(_) => Delivery::Reject(format!(
                "notification-service refused to subscribe {}",
                request.email
            )),
            Err(status) => Delivery::after_failed_call("notification-service", &status),
        }
    }
}
