//! The `frontend_service.FrontendService` gRPC API.

use std::{collections::HashSet, pin::Pin};

use proto::frontend_service::{
    Notification, ReceiveNotificationResponse, WatchNotificationsRequest,
    frontend_service_server::FrontendService,
};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use service_runtime::shutdown::Shutdown;

use crate::{
    inbox::Inbox,
    metrics::{self, Received},
};

pub struct FrontendGrpc {
    inbox: Inbox,
    shutdown: Shutdown,
}

impl FrontendGrpc {
    pub fn new(inbox: Inbox, shutdown: Shutdown) -> Self {
        Self { inbox, shutdown }
    }
}

type NotificationStream = Pin<Box<dyn Stream<Item = Result<Notification, Status>> + Send>>;

#[tonic::async_trait]
impl FrontendService for FrontendGrpc {
    #[tracing::instrument(skip_all)]
    async fn receive_notification(
        &self,
        request: Request<Notification>,
    ) -> Result<Response<ReceiveNotificationResponse>, Status> {
        let notification = request.into_inner();
        let has_receiver = notification
            .receiver_email
            .as_deref()
            .is_some_and(|email| !email.trim().is_empty());
        if !has_receiver {
            metrics::received(Received::Refused);
            tracing::warn!("notification without receiver_email refused");
            return Ok(Response::new(ReceiveNotificationResponse {
                success: false,
            }));
        }
        let id = notification.notification_id.clone().unwrap_or_default();
        let sender = notification.sender_email.clone().unwrap_or_default();
        let receiver = notification.receiver_email.clone().unwrap_or_default();
        let timestamp = notification.timestamp.clone().unwrap_or_default();
        let new = self.inbox.deliver(notification);
        metrics::received(if new {
            Received::Stored
        } else {
            Received::Repeated
        });
        tracing::info!(
            notification_id = id,
            sender_email = sender,
            receiver_email = receiver,
            timestamp,
            repeated = !new,
            "notification delivered"
        );
        Ok(Response::new(ReceiveNotificationResponse { success: true }))
    }

    type WatchNotificationsStream = NotificationStream;

    #[tracing::instrument(skip_all)]
    async fn watch_notifications(
        &self,
        request: Request<WatchNotificationsRequest>,
    ) -> Result<Response<Self::WatchNotificationsStream>, Status> {
        let email = request
            .into_inner()
            .email
            .filter(|email| !email.trim().is_empty())
            .ok_or_else(|| Status::invalid_argument("email is required"))?;
        let (recent, live) = self.inbox.watch(&email);
        tracing::info!(
            receiver_email = email,
            recent = recent.len(),
            "watcher attached"
        );
        // A notification delivered while we subscribed can be in both the snapshot and the feed.
        let already_sent: HashSet<String> = recent
            .iter()
            .filter_map(|n| n.notification_id.clone())
            .collect();
        let live = BroadcastStream::new(live).filter_map(move |item| match item {
            Ok(notification)
                if notification.receiver_email.as_deref() == Some(email.as_str())
                    && !notification
                        .notification_id
                        .as_ref()
                        .is_some_and(|id| already_sent.contains(id)) =>
            {
                Some(Ok(notification))
            }
            Ok(_) => None,
            Err(lagged) => {
                tracing::warn!(error = %lagged, "watcher fell behind; some notifications skipped");
                None
            }
        });
        let watcher = metrics::Watcher::attached();
        let stream = futures::StreamExt::take_until(
            tokio_stream::iter(recent.into_iter().map(Ok)).chain(live),
            self.shutdown.clone().wait(),
        );
        // The watcher lives in the closure, so it is counted until the stream is dropped.
        let stream = futures::StreamExt::inspect(stream, move |_| {
            let _counted = &watcher;
            metrics::pushed();
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
