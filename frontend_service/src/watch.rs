//! One watcher's stream: the receiver's stored notifications after a cursor (without one, the
//! newest 100), read from notification-service's store, then live ones — in cursor order,
//! each once. A live notification that does not follow the last one sent (one pushed out of
//! order, or the watcher fell behind, or the feed resynced) is not trusted to be complete:
//! what is missing is read from the store, which always has a notification before it is
//! pushed.

use proto::{
    frontend_service::Notification,
    notification_service::{
        ListNotificationsRequest, notification_service_client::NotificationServiceClient,
    },
};
use service_runtime::{grpc_client::GrpcChannel, shutdown::Shutdown};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tonic::Status;

use crate::live::{Live, Subscription};

/// Notifications replayed when a watcher gives no cursor, and read per store request.
pub const REPLAY: u32 = 100;

/// What a watch needs: the store to read from and where to send.
pub struct Watch {
    pub store: NotificationServiceClient<GrpcChannel>,
    pub receiver: String,
    pub out: mpsc::Sender<Result<Notification, Status>>,
}

impl Watch {
    /// Streams until the watcher goes away or `shutdown`; an error reading the store ends
    /// the stream with that error (the watcher resumes with its last cursor).
    pub async fn run(mut self, after: Option<u64>, mut live: Subscription, shutdown: Shutdown) {
        let mut last = after.unwrap_or(0);
        let replayed = match after {
            Some(after) => self.catch_up(after).await,
            None => self.newest().await,
        };
        match replayed {
            Ok(Some(cursor)) => last = cursor,
            Ok(None) => {}
            Err(()) => return,
        }
        loop {
            let update = tokio::select! {
                update = live.updates.recv() => update,
                () = shutdown.clone().wait() => return,
                () = self.out.closed() => return,
            };
            let next = match update {
                Ok(Live::Pushed(pushed)) => match pushed.cursor {
                    // Sent already (a repeated push): cursors only grow, even across a loss of
                    // the store's data (see notification-service's store).
                    Some(cursor) if cursor <= last => continue,
                    Some(cursor) if cursor == last + 1 => {
                        if self.emit(pushed).await.is_err() {
                            return;
                        }
                        Ok(Some(cursor))
                    }
                    // Not from notification-service's store (pushed by hand): passed on as it is.
                    None => {
                        if self.emit(pushed).await.is_err() {
                            return;
                        }
                        Ok(None)
                    }
                    // A gap (pushed out of order): the store says what is new.
                    Some(_) => self.catch_up(last).await,
                },
                Ok(Live::Resync) | Err(RecvError::Lagged(_)) => self.catch_up(last).await,
                Err(RecvError::Closed) => return,
            };
            match next {
                Ok(Some(cursor)) => last = cursor,
                Ok(None) => {}
                Err(()) => return,
            }
        }
    }

    /// Sends one notification to the watcher; `Err` once the watcher is gone.
    async fn emit(&self, notification: Notification) -> Result<(), ()> {
        self.out.send(Ok(notification)).await.map_err(drop)?;
        crate::metrics::pushed();
        Ok(())
    }

    /// Sends every stored notification after `after`, oldest first; the last cursor sent.
    async fn catch_up(&mut self, mut after: u64) -> Result<Option<u64>, ()> {
        let mut sent = None;
        loop {
            let page = self.read(Some(after)).await?;
            let full = page.len() == REPLAY as usize;
            for notification in page {
                after = after.max(notification.cursor.unwrap_or(after));
                sent = Some(after);
                self.emit(notification).await?;
            }
            if !full {
                return Ok(sent);
            }
        }
    }

    /// Sends the newest [`REPLAY`] stored notifications, oldest first; the last cursor sent.
    async fn newest(&mut self) -> Result<Option<u64>, ()> {
        let mut page = self.read(None).await?;
        page.reverse();
        let last = page.last().and_then(|notification| notification.cursor);
        for notification in page {
            self.emit(notification).await?;
        }
        Ok(last)
    }

    /// A page from the store: after a cursor oldest first, or the newest, newest first.
    async fn read(&mut self, after: Option<u64>) -> Result<Vec<Notification>, ()> {
        let request = ListNotificationsRequest {
            email: Some(self.receiver.clone()),
            limit: Some(REPLAY),
            after,
            ..ListNotificationsRequest::default()
        };
        match self.store.list_notifications(request).await {
            Ok(reply) => Ok(reply
                .into_inner()
                .notifications
                .into_iter()
                .map(Notification::from)
                .collect()),
            Err(status) => {
                tracing::warn!(receiver = self.receiver, code = ?status.code(), error = status.message(), "cannot read the store; ending the watch");
                let _ = self
                    .out
                    .send(Err(Status::unavailable(format!(
                        "notification-service is unavailable ({}); watch again with your last cursor",
                        status.message()
                    ))))
                    .await;
                Err(())
            }
        }
    }
}
