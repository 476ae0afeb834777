//! Delivery of the frontend outbox: each stored notification is pushed with
//! `FrontendService.ReceiveNotification`, at once in the background of the `CreateNotification`
//! that stored it, and by the outbox worker until frontend-service takes it when that failed.
//!
//! The push carries the notification's id and cursor, so a repeat (both delivered, or the worker
//! crashed before acknowledging the entry) reaches no watcher twice: each watch skips what is
//! not past the last cursor it sent.

use proto::frontend_service::{Notification, frontend_service_client::FrontendServiceClient};
use service_runtime::{
    grpc_client::GrpcChannel,
    outbox::{Delivery, Outbox},
};

use crate::record::StoredNotification;

/// The frontend outbox of notification-service.
pub type FrontendOutbox = Outbox<StoredNotification>;

/// Pushes one stored notification; frontend-service only refuses what it can never take.
#[tracing::instrument(skip_all, fields(notification_id = stored.notification_id))]
pub async fn deliver(
    mut frontend: FrontendServiceClient<GrpcChannel>,
    stored: StoredNotification,
) -> Delivery {
    match frontend
        .receive_notification(Notification::from(stored))
        .await
    {
        Ok(reply) if reply.get_ref().success => Delivery::Done,
        Ok(_) => Delivery::Reject("frontend-service refused the notification".into()),
        Err(status) => Delivery::after_failed_call("frontend-service", &status),
    }
}
