//! Delivery of the frontend outbox: each stored notification is pushed with
//! `FrontendService.ReceiveNotification`, retried until frontend-service takes it.
//!
//! The push carries the notification's id, so a repeat (the worker crashed after the push but
//! before acknowledging the entry) is recognised by frontend-service's inbox.

use proto::frontend_service::{Notification, frontend_service_client::FrontendServiceClient};
use service_runtime::outbox::Delivery;
use tonic::transport::Channel;

use crate::store::StoredNotification;

/// The outbox's consumer group.
pub const GROUP: &str = "notification-service";

/// Pushes the notification `payload` holds (as `store::CREATE` wrote it).
#[tracing::instrument(skip_all, fields(notification_id))]
pub async fn deliver(mut frontend: FrontendServiceClient<Channel>, payload: String) -> Delivery {
    let stored: StoredNotification = match serde_json::from_str(&payload) {
        Ok(stored) => stored,
        Err(err) => return Delivery::Reject(format!("payload is not a notification: {err}")),
    };
    tracing::Span::current().record("notification_id", stored.notification_id.as_deref());
    let notification = Notification {
        sender_email: Some(stored.sender_email),
        receiver_email: Some(stored.receiver_email),
        timestamp: Some(stored.timestamp),
        read: Some(stored.read),
        notification_id: stored.notification_id,
    };
    match frontend.receive_notification(notification).await {
        Ok(reply) if reply.get_ref().success => {
            tracing::debug!("notification pushed");
            Delivery::Done
        }
        // frontend-service only refuses what it can never take (no receiver).
        Ok(_) => Delivery::Reject("frontend-service refused the notification".into()),
        Err(status) => Delivery::after_failed_call("frontend-service", &status),
    }
}
