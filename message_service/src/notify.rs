//! Delivery of the notification outbox: each stored message becomes one
//! `NotificationService.CreateNotification` call, retried until notification-service answers.
//!
//! The call carries the stable id `message-<id>`, so a repeat (the worker crashed after the call
//! but before acknowledging the entry) is recognised by notification-service and stored once.

use proto::notification_service::{
    CreateNotificationRequest, notification_service_client::NotificationServiceClient,
};
use serde::Deserialize;
use service_runtime::outbox::Delivery;
use tonic::transport::Channel;

/// The outbox's consumer group.
pub const GROUP: &str = "message-service";

/// One outbox entry, as `store::SEND` writes it.
#[derive(Debug, Deserialize)]
struct Payload {
    notification_id: String,
    sender_email: String,
    receiver_email: String,
}

/// Asks notification-service to create the notification `payload` describes.
#[tracing::instrument(skip_all, fields(notification_id))]
pub async fn deliver(
    mut notifications: NotificationServiceClient<Channel>,
    payload: String,
) -> Delivery {
    let payload: Payload = match serde_json::from_str(&payload) {
        Ok(payload) => payload,
        Err(err) => return Delivery::Reject(format!("payload is not a notification: {err}")),
    };
    tracing::Span::current().record("notification_id", payload.notification_id.as_str());
    let request = CreateNotificationRequest {
        sender_email: Some(payload.sender_email),
        receiver_email: Some(payload.receiver_email),
        notification_id: Some(payload.notification_id),
    };
    match notifications.create_notification(request).await {
        Ok(reply) => {
            if reply.into_inner().success == Some(true) {
                tracing::debug!("notification created");
            } else {
                // The contract's answer for an unsubscribed receiver: nothing to retry.
                tracing::info!("notification not created: receiver is not subscribed");
            }
            Delivery::Done
        }
        Err(status) => Delivery::after_failed_call("notification-service", &status),
    }
}
