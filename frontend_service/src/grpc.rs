//! The `frontend_service.FrontendService` gRPC API. When protection is on,
//! `ReceiveNotification` is for notification-service only (internal credential) and
//! `WatchNotifications` for the receiver only (their token); a watch ends when its token
//! expires.

use std::{collections::HashSet, pin::Pin};

use proto::frontend_service::{
    Notification, ReceiveNotificationResponse, WatchNotificationsRequest,
    frontend_service_server::FrontendService,
};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use service_runtime::{
    auth::Auth,
    email::{self, Email},
    limits,
    shutdown::Shutdown,
};

use crate::inbox::Inbox;

pub struct FrontendGrpc {
    inbox: Inbox,
    shutdown: Shutdown,
    auth: Auth,
}

impl FrontendGrpc {
    pub fn new(inbox: Inbox, shutdown: Shutdown, auth: Auth) -> Self {
        Self {
            inbox,
            shutdown,
            auth,
        }
    }
}

/// Longest timestamp accepted (RFC 3339 with nanoseconds and an offset is 35 bytes).
const MAX_TIMESTAMP_BYTES: usize = 64;

/// Why a pushed notification cannot be kept: a receiver that is not an address, or fields
/// longer than anything notification-service sends (the inbox is bounded by bytes too).
fn check(notification: &Notification) -> Result<(), &'static str> {
    let receiver = notification.receiver_email.as_deref().unwrap_or_default();
    if Email::parse(receiver).is_err() {
        return Err("receiver_email is missing or not an email address");
    }
    let too_long =
        |field: &Option<String>, max: usize| field.as_ref().is_some_and(|v| v.len() > max);
    if too_long(&notification.sender_email, email::MAX_LEN)
        || too_long(&notification.timestamp, MAX_TIMESTAMP_BYTES)
        || too_long(&notification.notification_id, limits::MAX_ID_BYTES)
    {
        return Err("a field is longer than allowed");
    }
    Ok(())
}

type NotificationStream = Pin<Box<dyn Stream<Item = Result<Notification, Status>> + Send>>;

#[tonic::async_trait]
impl FrontendService for FrontendGrpc {
    #[tracing::instrument(skip_all)]
    async fn receive_notification(
        &self,
        request: Request<Notification>,
    ) -> Result<Response<ReceiveNotificationResponse>, Status> {
        self.auth.require_internal(&request)?;
        let notification = request.into_inner();
        if let Err(reason) = check(&notification) {
            tracing::warn!(
                notification_id = notification.notification_id.as_deref().unwrap_or(""),
                reason,
                "notification refused; dropped"
            );
            return Ok(Response::new(ReceiveNotificationResponse {
                success: false,
            }));
        }
        let id = notification.notification_id.clone().unwrap_or_default();
        let sender = notification.sender_email.clone().unwrap_or_default();
        let receiver = notification.receiver_email.clone().unwrap_or_default();
        let timestamp = notification.timestamp.clone().unwrap_or_default();
        let new = self.inbox.deliver(notification);
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
        let caller = self
            .auth
            .authorize(&request, request.get_ref().email.as_deref())
            .await?;
        let email = request
            .into_inner()
            .email
            .filter(|email| !email.trim().is_empty())
            .ok_or_else(|| Status::invalid_argument("email is required"))?;
        let email = Email::parse(email)
            .map_err(|err| Status::invalid_argument(err.to_string()))?
            .into_string();
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
        // A watch lasts until shutdown, or until its token expires (a watcher renews by
        // logging in again and watching anew).
        let shutdown = self.shutdown.clone();
        let ends = async move {
            match caller.expires_in() {
                Some(left) => {
                    tokio::select! {
                        () = shutdown.wait() => {}
                        () = tokio::time::sleep(left) => {}
                    }
                }
                None => shutdown.wait().await,
            }
        };
        let stream = futures::StreamExt::take_until(
            tokio_stream::iter(recent.into_iter().map(Ok)).chain(live),
            ends,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
