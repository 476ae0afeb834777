//! Delivering the subscription outbox: each entry becomes one
//! `NotificationService.SubscribeUser` call, made inline by the request that wrote the entry
//! and retried by the outbox worker when that did not succeed (see `accounts.rs`). Delivery is
//! at-least-once; subscribing twice is harmless because SubscribeUser just sets the user's
//! subscription to true.

use proto::notification_service::{
    SubscribeUserRequest, notification_service_client::NotificationServiceClient,
};
use service_runtime::{grpc_client::GrpcChannel, outbox::Delivery};

use crate::store::SubscriptionRequest;

/// Subscribes the address of one outbox entry.
pub async fn deliver(
    mut notifications: NotificationServiceClient<GrpcChannel>,
    request: SubscriptionRequest,
) -> Delivery {
    let email = request.email;
    let reply = notifications
        .subscribe_user(SubscribeUserRequest {
            email: Some(email.clone()),
        })
        .await;
    match reply {
        Ok(reply) if reply.get_ref().success == Some(true) => {
            tracing::info!(email, "user subscribed to notifications");
            Delivery::Done
        }
        Ok(_) => Delivery::Reject(format!("notification-service refused to subscribe {email}")),
        Err(status) => Delivery::after_failed_call("notification-service", &status),
    }
}
