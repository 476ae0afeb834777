//! Read-state changes for the live streams: marking read and deleting record a change in
//! `outbox:frontend:changes` in the same script that makes them (see the store), and each
//! change is pushed with `FrontendService.ReceiveInboxChange`, at once in the background of
//! the request and by the outbox worker until frontend-service takes it. notification-service
//! never writes to frontend-service's Redis: the RPC is the only way across.
//!
//! [`Inbox`] is the one way the REST and the gRPC edge change read state, so both push.

use proto::frontend_service::{InboxChange, frontend_service_client::FrontendServiceClient};
use service_runtime::{
    email::Email,
    error::StoreError,
    grpc_client::GrpcChannel,
    outbox::{Delivery, Outbox},
    request_id,
};
use tracing::Instrument;

use crate::{
    change_record::InboxChangeRecord,
    selection::Selection,
    store::{Changed, Store},
};

/// The change outbox of notification-service.
pub type ChangeOutbox = Outbox<InboxChangeRecord>;

/// Pushes one change; frontend-service only refuses what it can never take.
#[tracing::instrument(skip_all, fields(receiver_email = change.receiver_email))]
pub async fn deliver(
    mut frontend: FrontendServiceClient<GrpcChannel>,
    change: InboxChangeRecord,
) -> Delivery {
    match frontend
        .receive_inbox_change(InboxChange::from(change))
        .await
    {
        Ok(reply) if reply.get_ref().success => Delivery::Done,
        Ok(_) => Delivery::Reject("frontend-service refused the change".into()),
        Err(status) => Delivery::after_failed_call("frontend-service", &status),
    }
}

/// The store with the change outbox: marking read and deleting, each change pushed.
#[derive(Clone)]
pub struct Inbox {
    pub store: Store,
    pub changes: ChangeOutbox,
}

impl Inbox {
    /// Marks the selected read; how many were marked and how many are still unread.
    pub async fn mark_read(
        &self,
        email: &Email,
        which: &Selection,
    ) -> Result<(u64, u64), StoreError> {
        let (changed, unread) = self.store.mark_read(email, which).await?;
        Ok((self.push(changed), unread))
    }

    /// Deletes the selected; how many were deleted.
    pub async fn delete(&self, email: &Email, which: &Selection) -> Result<u64, StoreError> {
        let changed = self.store.delete(email, which).await?;
        Ok(self.push(changed))
    }

    /// Starts the push of a recorded change now rather than when the worker next looks; the
    /// answer does not wait for it (the change is stored, and queued). How many changed.
    fn push(&self, changed: Changed) -> u64 {
        let Some((entry, change)) = changed.queued else {
            return changed.count;
        };
        let changes = self.changes.clone();
        let push = async move { changes.deliver_now(&entry, change).await };
        tokio::spawn(request_id::carry(push).in_current_span());
        changed.count
    }
}
