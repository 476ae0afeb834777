//! Delivering the account outbox: a deleted or moved account's data lives on in
//! notification-service (DB 2) and message-service (DB 1) until each has been told. Each entry
//! becomes one `NotificationService.ForgetUser` and one `MessageService.ForgetUser` call —
//! forgetting the address, or carrying its data to `moved_to` — made inline by the request
//! that wrote it and retried by the outbox worker until both peers confirmed. Only then are
//! the addresses' `account_change:` markers removed, which frees the address for a new
//! sign-up: a newcomer never finds the previous owner's data.
//!
//! Delivery is at-least-once and both RPCs are idempotent (forgetting or carrying what is no
//! longer there changes nothing). A repeat of a change already finished is recognised by its
//! `change_id` no longer being the address's marker, and is not sent again.

use proto::{
    message_service::{self, message_service_client::MessageServiceClient},
    notification_service::{self, notification_service_client::NotificationServiceClient},
};
use service_runtime::{grpc_client::GrpcChannel, outbox::Delivery};

use crate::store::{AccountChange, Store};

/// The peers an account change is delivered to.
#[derive(Clone)]
pub struct Peers {
    pub store: Store,
    pub notifications: NotificationServiceClient<GrpcChannel>,
    pub messages: MessageServiceClient<GrpcChannel>,
}

/// Delivers one account change: both peers, then the markers.
pub async fn deliver(peers: Peers, change: AccountChange) -> Delivery {
    match peers.store.change_pending(&change).await {
        Ok(true) => {}
        Ok(false) => return Delivery::Done,
        Err(err) => return Delivery::Retry(format!("cannot read the account change: {err}")),
    }
    let Peers {
        store,
        mut notifications,
        mut messages,
    } = peers;
    let notified = notifications
        .forget_user(notification_service::ForgetUserRequest {
            email: Some(change.email.clone()),
            moved_to: change.moved_to.clone(),
        })
        .await;
    match notified {
        Ok(reply) if reply.get_ref().success == Some(true) => {}
        Ok(_) => {
            return Delivery::Reject(format!(
                "notification-service refused to forget {}",
                change.email
            ));
        }
        Err(status) => return Delivery::after_failed_call("notification-service", &status),
    }
    let forgotten = messages
        .forget_user(message_service::ForgetUserRequest {
            email: Some(change.email.clone()),
            moved_to: change.moved_to.clone(),
        })
        .await;
    match forgotten {
        Ok(reply) if reply.get_ref().success == Some(true) => {}
        Ok(_) => {
            return Delivery::Reject(format!(
                "message-service refused to forget {}",
                change.email
            ));
        }
        Err(status) => return Delivery::after_failed_call("message-service", &status),
    }
    if let Err(err) = store.finish_change(&change).await {
        // Delivered again later: both calls are idempotent.
        return Delivery::Retry(format!("cannot finish the account change: {err}"));
    }
    tracing::info!(
        email = change.email,
        moved_to = change.moved_to,
        "account change delivered"
    );
    Delivery::Done
}
