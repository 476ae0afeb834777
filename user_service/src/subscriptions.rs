//! Delivering the subscription outbox: each entry becomes one
//! `NotificationService.SubscribeUser` call.
//!
//! The entry was written in the same atomic step as the user (see `store.rs`), so a user is
//! never created without it, and user creation never fails because of notification-service:
//! it waits at most `store::SUBSCRIPTION_WAIT` for this worker to deliver the entry (so a
//! `201` normally means "subscribed") and answers anyway after that. Delivery is
//! at-least-once; subscribing twice is harmless because SubscribeUser just sets the user's
//! subscription to true.

use proto::notification_service::{
    SubscribeUserRequest, notification_service_client::NotificationServiceClient,
};
use service_runtime::outbox::Delivery;
use tonic::transport::Channel;

use crate::store::SubscriptionRequest;

/// A client of notification-service for the outbox worker; cheap to clone.
#[derive(Clone)]
pub struct Subscriber {
    client: NotificationServiceClient<Channel>,
}

impl Subscriber {
    /// Connects lazily: notification-service may start after us.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: NotificationServiceClient::new(service_runtime::grpc_client::channel(url)?),
        })
    }

    /// Subscribes the address in `payload` (an outbox entry).
    #[tracing::instrument(skip_all)]
    pub async fn deliver(mut self, payload: String) -> Delivery {
        let request: SubscriptionRequest = match serde_json::from_str(&payload) {
            Ok(request) => request,
            Err(err) => return Delivery::Reject(format!("payload does not parse: {err}")),
        };
        let reply = self
            .client
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
