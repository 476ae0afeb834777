//! Delivery of the frontend outbox: each stored notification is pushed with
//! `FrontendService.ReceiveNotification`, at once in the background of the `CreateNotification`
//! that stored it, and by the outbox worker until frontend-service takes it when that failed.
//!
//! The push carries the notification's id, so a repeat (both delivered, or the worker crashed
//! before acknowledging the entry) is recognised by frontend-service's inbox.

use proto::frontend_service::{Notification, frontend_service_client::FrontendServiceClient};
use service_runtime::{
    grpc_client::{self, GrpcChannel},
    outbox::{Deliver, Delivery},
};

use crate::store::StoredNotification;

/// A client of frontend-service for the frontend outbox.
pub struct Pusher {
    frontend: FrontendServiceClient<GrpcChannel>,
}

impl Pusher {
    /// Connects lazily: frontend-service may start after us.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            frontend: FrontendServiceClient::new(grpc_client::channel(url)?),
        })
    }
}

impl Deliver<StoredNotification> for Pusher {
    /// Pushes one stored notification.
    #[tracing::instrument(skip_all, fields(notification_id = stored.notification_id))]
    async fn deliver(&self, stored: StoredNotification) -> Delivery {
        let notification = Notification {
            sender_email: Some(stored.sender_email),
            receiver_email: Some(stored.receiver_email),
            timestamp: Some(stored.timestamp),
            read: Some(stored.read),
            notification_id: stored.notification_id,
        };
        match self
            .frontend
            .clone()
            .receive_notification(notification)
            .await
        {
            Ok(reply) if reply.get_ref().success => {
                tracing::debug!("notification pushed");
                Delivery::Done
            }
            // frontend-service only refuses what it can never take (no receiver).
            Ok(_) => Delivery::Reject("frontend-service refused the notification".into()),
            Err(status) => Delivery::after_failed_call("frontend-service", &status),
        }
    }
}
