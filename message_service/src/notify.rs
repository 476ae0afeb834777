//! Delivery of the notification outbox: each stored message becomes one
//! `NotificationService.CreateNotification` call, made inline by `SendMessage` and retried by
//! the outbox worker until notification-service answers when that did not succeed.
//!
//! The call carries the notification's stable id, so a repeat (the inline call and the worker
//! both delivered, or the worker crashed before acknowledging) is stored once.

use proto::notification_service::{
    CreateNotificationRequest, notification_service_client::NotificationServiceClient,
};
use service_runtime::{
    grpc_client::GrpcChannel,
    outbox::{Delivery, Outbox},
};

use crate::store::NotificationRequest;

/// The notification outbox of message-service.
pub type NotificationOutbox = Outbox<NotificationRequest>;

/// Asks notification-service to create the notification of one outbox entry; an
/// unsubscribed receiver (`success=false`) is the contract's answer, nothing to retry.
#[tracing::instrument(skip_all, fields(notification_id = request.notification_id))]
pub async fn deliver(
    mut notifications: NotificationServiceClient<GrpcChannel>,
    request: NotificationRequest,
) -> Delivery {
    let request = CreateNotificationRequest {
        sender_email: Some(request.sender_email),
        receiver_email: Some(request.receiver_email),
        notification_id: Some(request.notification_id),
    };
    match notifications.create_notification(request).await {
        Ok(reply) => {
            if reply.into_inner().success != Some(true) {
                tracing::warn!(
                    "notification-service refused the notification (receiver unsubscribed); dropped"
                );
            }
            Delivery::Done
        }
        Err(status) => Delivery::after_failed_call("notification-service", &status),
    }
}
