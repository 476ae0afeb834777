//! One watcher's stream of [`Event`]s, the one implementation behind `WatchNotifications` (gRPC)
//! and `GET /live` (SSE): the receiver's stored notifications after a cursor (without one,
//! the newest 100), read from notification-service's store, then live ones — in cursor order,
//! each once. A live notification that does not follow the last one sent (one pushed out of
//! order, or the watcher fell behind, or the feed resynced) is not trusted to be complete:
//! what is missing is read from the store, which always has a notification before it is
//! pushed.
//!
//! A watch that [reports state](Watch::report_state) (SSE) also sends, after the replay, the
//! unread count; for every change of read state, the change with the unread count then; and,
//! when retention trimmed notifications after the cursor it resumes from, a reset before what
//! is kept. Every unread count is that of the notifications up to the last cursor sent, so a
//! client that adds the unread notifications it receives afterwards stays exact. Before it
//! reports a change, a watch sends what the store has beyond its last cursor: a change may be
//! about notifications pushed to it but not yet arrived, and the store has them in their
//! changed state.

use std::{sync::Arc, time::Duration};

use proto::{
    frontend_service::{InboxChange, Notification},
    notification_service::{
        ListNotificationsRequest, ListNotificationsResponse, UnreadCountRequest,
        notification_service_client::NotificationServiceClient,
    },
};
use service_runtime::{grpc_client::GrpcChannel, shutdown::Shutdown};
use tokio::sync::{
    broadcast::error::RecvError,
    mpsc::{self, error::SendTimeoutError},
};
use tonic::Status;

use crate::live::{Live, Subscription};

/// Notifications replayed when a watcher gives no cursor, and read per store request.
pub const REPLAY: u32 = 100;

/// What a watch sends.
#[derive(Debug, Clone)]
pub enum Event {
    /// A notification, replayed or live.
    Notification(Notification),
    /// The replay is done; how many notifications up to the last cursor sent are unread.
    Unread(u64),
    /// Notifications were marked read or deleted; the unread count after that.
    Changed {
        change: InboxChange,
        unread_count: u64,
    },
    /// Notifications after `after` were trimmed by retention: what follows starts at
    /// `oldest` (`None`: nothing is kept).
    Reset { after: u64, oldest: Option<u64> },
}

/// What a watch sends to: each item an event, or the error that ends the watch. Boxed: a
/// channel allocates room for 32 items at once, which for an idle stream is 32 pointers
/// rather than 32 events.
pub type Out = mpsc::Sender<Item>;
pub type Item = Box<Result<Event, Status>>;

/// What a watch needs: the store to read from, where to send, and how.
pub struct Watch {
    pub store: NotificationServiceClient<GrpcChannel>,
    pub receiver: String,
    pub out: Out,
    /// Send unread counts, changes and resets too (SSE); gRPC watchers get notifications only.
    pub report_state: bool,
    /// How long the watcher's buffer may stay full before the watch ends (a slow reader, who
    /// resumes from the store); `None`: wait as long as it takes (gRPC's flow control).
    pub patience: Option<Duration>,
}

/// Why a watch stops: the watcher is gone or too slow, or the store failed.
struct Stop;

impl Watch {
    /// Streams until the watcher goes away or `shutdown`; an error reading the store ends
    /// the stream with that error (the watcher resumes with its last cursor).
    pub async fn run(mut self, after: Option<u64>, mut live: Subscription, shutdown: Shutdown) {
        let _ = self.stream(after, &mut live, shutdown).await;
    }

    async fn stream(
        &mut self,
        after: Option<u64>,
        live: &mut Subscription,
        shutdown: Shutdown,
    ) -> Result<(), Stop> {
        // Each step is boxed: what it awaits (store calls, a send that waits for the watcher)
        // is kilobytes, and the watch's task, sized for its largest step, would otherwise hold
        // that room all the while it waits for the next live item.
        let mut last = Box::pin(self.replay(after)).await?;
        loop {
            let update = tokio::select! {
                update = live.updates.recv() => update,
                () = shutdown.clone().wait() => return Ok(()),
                () = self.out.closed() => return Ok(()),
            };
            let update = match update {
                Ok(update) => update,
                // Fell behind: what it missed is read from the store.
                Err(RecvError::Lagged(_)) => Live::Resync,
                Err(RecvError::Closed) => return Ok(()),
            };
            last = Box::pin(self.follow(update, last)).await?;
        }
    }

    /// What the store has after `after` (without it, the newest), then the unread count if
    /// the watch reports state; the last cursor sent.
    async fn replay(&mut self, after: Option<u64>) -> Result<u64, Stop> {
        let last = match after {
            Some(after) => self.catch_up(after).await?,
            None => self.newest().await?,
        };
        if self.report_state {
            let unread = self.unread(last).await?;
            self.emit(Event::Unread(unread)).await?;
        }
        Ok(last)
    }

    /// Sends what a live item calls for, `last` being the last cursor sent; the last cursor
    /// sent then.
    async fn follow(&mut self, update: Live, last: u64) -> Result<u64, Stop> {
        Ok(match update {
            Live::Pushed(pushed) => match pushed.cursor {
                // Sent already (a repeated push): cursors only grow, even across a loss of
                // the store's data (see notification-service's store).
                Some(cursor) if cursor <= last => last,
                Some(cursor) if cursor == last + 1 => {
                    self.emit(Event::Notification(Arc::unwrap_or_clone(pushed)))
                        .await?;
                    cursor
                }
                // Not from notification-service's store (pushed by hand): passed on as it is.
                None => {
                    self.emit(Event::Notification(Arc::unwrap_or_clone(pushed)))
                        .await?;
                    last
                }
                // A gap (pushed out of order): the store says what is new.
                Some(_) => self.catch_up(last).await?,
            },
            Live::Changed(change) if self.report_state => {
                let last = self.catch_up(last).await?;
                let unread_count = self.unread(last).await?;
                self.emit(Event::Changed {
                    change: Arc::unwrap_or_clone(change),
                    unread_count,
                })
                .await?;
                last
            }
            Live::Changed(_) => last,
            Live::Resync => self.catch_up(last).await?,
        })
    }

    /// Sends one event to the watcher; `Stop` once the watcher is gone, or when its buffer
    /// stayed full for longer than the watch's patience.
    async fn emit(&self, event: Event) -> Result<(), Stop> {
        let notification = matches!(event, Event::Notification(_));
        match self.patience {
            None => self.out.send(Box::new(Ok(event))).await.map_err(|_| Stop)?,
            Some(patience) => match self.out.send_timeout(Box::new(Ok(event)), patience).await {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(_)) => {
                    tracing::info!(
                        receiver = self.receiver,
                        ?patience,
                        "watcher too slow; its stream ends (it resumes from the store)"
                    );
                    crate::metrics::dropped_slow();
                    return Err(Stop);
                }
                Err(SendTimeoutError::Closed(_)) => return Err(Stop),
            },
        }
        if notification {
            crate::metrics::pushed();
        }
        Ok(())
    }

    /// Sends every stored notification after `after`, oldest first (after a reset, if
    /// retention trimmed some of them); the last cursor sent (`after` when none was).
    async fn catch_up(&mut self, mut after: u64) -> Result<u64, Stop> {
        let mut first = true;
        loop {
            let page = self.read(Some(after)).await?;
            if std::mem::take(&mut first) && self.report_state {
                after = self.reset_if_trimmed(after, &page).await?;
            }
            let full = page.notifications.len() == REPLAY as usize;
            for notification in page.notifications {
                let notification = Notification::from(notification);
                after = after.max(notification.cursor.unwrap_or(after));
                self.emit(Event::Notification(notification)).await?;
            }
            if !full {
                return Ok(after);
            }
        }
    }

    /// Sends a reset when retention trimmed notifications after `after`; the cursor to
    /// continue from (what was trimmed is gone: it is not asked for again).
    async fn reset_if_trimmed(
        &self,
        after: u64,
        page: &ListNotificationsResponse,
    ) -> Result<u64, Stop> {
        match page.trimmed_through {
            Some(through) if through > after => {
                let oldest = page.oldest_cursor;
                self.emit(Event::Reset { after, oldest }).await?;
                Ok(through)
            }
            _ => Ok(after),
        }
    }

    /// Sends the newest [`REPLAY`] stored notifications, oldest first; the last cursor sent
    /// (0 when none was).
    async fn newest(&mut self) -> Result<u64, Stop> {
        let page = self.read(None).await?;
        let mut last = 0;
        for notification in page.notifications.into_iter().rev() {
            let notification = Notification::from(notification);
            last = notification.cursor.unwrap_or(last);
            self.emit(Event::Notification(notification)).await?;
        }
        Ok(last)
    }

    /// A page from the store: after a cursor oldest first, or the newest, newest first.
    async fn read(&mut self, after: Option<u64>) -> Result<ListNotificationsResponse, Stop> {
        let request = ListNotificationsRequest {
            email: Some(self.receiver.clone()),
            limit: Some(REPLAY),
            after,
            ..ListNotificationsRequest::default()
        };
        match self.store.list_notifications(request).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => Err(self.unavailable(&status).await),
        }
    }

    /// How many of the receiver's notifications up to cursor `last` are unread.
    async fn unread(&mut self, last: u64) -> Result<u64, Stop> {
        let request = UnreadCountRequest {
            email: Some(self.receiver.clone()),
            up_to: Some(last),
        };
        match self.store.get_unread_count(request).await {
            Ok(reply) => Ok(reply.into_inner().unread_count.unwrap_or(0)),
            Err(status) => Err(self.unavailable(&status).await),
        }
    }

    /// Ends the watch with `UNAVAILABLE`: the store could not be read.
    async fn unavailable(&self, status: &Status) -> Stop {
        tracing::warn!(receiver = self.receiver, code = ?status.code(), error = status.message(), "cannot read the store; ending the watch");
        let ended = Box::new(Err(Status::unavailable(format!(
            "notification-service is unavailable ({}); watch again with your last cursor",
            status.message()
        ))));
        // Behind what the watcher has not read yet; a slow one is not waited for forever.
        let _ = match self.patience {
            None => self.out.send(ended).await.map_err(drop),
            Some(patience) => self.out.send_timeout(ended, patience).await.map_err(drop),
        };
        Stop
    }
}
