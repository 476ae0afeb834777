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
    grpc_client::{self, GrpcChannel},
    outbox::{Deliver, Delivery},
};

use crate::store::NotificationRequest;

/// A client of notification-service for the notification outbox.
pub struct Notifier {
    client: NotificationServiceClient<GrpcChannel>,
}

impl Notifier {
    /// Connects lazily: notification-service may start after us.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: NotificationServiceClient::new(grpc_client::channel(url)?),
        })
    }
}

impl Deliver<NotificationRequest> for Notifier {
    /// Asks notification-service to create the notification of one outbox entry.
    #[tracing::instrument(skip_all, fields(notification_id = request.notification_id))]
    async fn deliver(&self, request: NotificationRequest) -> Delivery {
        let request = CreateNotificationRequest {
            sender_email: Some(request.sender_email),
            receiver_email: Some(request.receiver_email),
            notification_id: Some(request.notification_id),
        };
        match self.client.clone().create_notification(request).await {
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
}
