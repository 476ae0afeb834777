//! The `frontend_service.FrontendService` gRPC API. Who may call what is [`ACCESS`]: when
//! protection is on, `ReceiveNotification` is for notification-service only (its internal
//! credential), as is `ReceiveInboxChange`, and `WatchNotifications` for the receiver only
//! (their token).
//!
//! An open watch keeps checking its token ([`Lease`]). A revoked token ends the stream
//! with `UNAUTHENTICATED` (the message says to log in again); when user-service cannot answer
//! the check, the stream ends with `UNAVAILABLE` (watch again with the last cursor); an expired
//! token ends the stream without an error status, as it always did.

use std::{pin::Pin, time::Duration};

use futures::StreamExt;
use proto::{
    frontend_service::{
        InboxChange, Notification, ReceiveNotificationResponse, WatchNotificationsRequest,
        frontend_service_server::FrontendService,
    },
    notification_service::notification_service_client::NotificationServiceClient,
};
use service_runtime::{
    auth::{Access, AccessTable, Auth, Caller, ServiceName},
    email::{self, Email},
    grpc_client::GrpcChannel,
    limits, owner, request_id,
    shutdown::Shutdown,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, metadata::MetadataMap};
use tracing::Instrument;

use crate::{
    lease::Lease,
    live::LiveFeed,
    watch::{Event, Out, Watch},
};

/// Notifications buffered per watcher between the feed and the client's stream.
const WATCHER_BUFFER: usize = 64;
/// How long the status that ends a watch waits for room behind the notifications a slow
/// watcher has not read yet, before the stream just ends.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(10);

/// Who may call which RPC of frontend-service's gRPC server.
pub const ACCESS: AccessTable = AccessTable(&[
    (
        "/frontend_service.FrontendService/ReceiveNotification",
        Access::Services(&[ServiceName::Notification]),
    ),
    (
        "/frontend_service.FrontendService/ReceiveInboxChange",
        Access::Services(&[ServiceName::Notification]),
    ),
    (
        "/frontend_service.FrontendService/WatchNotifications",
        Access::Owner(owner!(WatchNotificationsRequest, |request| request.email)),
    ),
]);

pub struct FrontendGrpc {
    pub live: LiveFeed,
    pub store: NotificationServiceClient<GrpcChannel>,
    pub shutdown: Shutdown,
    /// The gate that checked the watch's token, asked again while it lasts.
    pub auth: Auth,
}

/// The `authorization` value a request came with, if any (ASCII; the guard refused others).
fn authorization(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Ends a watch with `status`, after what the watcher has not read yet.
async fn send_final(out: &Out, status: Status) {
    let _ = tokio::time::timeout(FINAL_STATUS_WAIT, out.send(Box::new(Err(status)))).await;
}

/// Longest timestamp accepted (RFC 3339 with nanoseconds and an offset is 35 bytes).
const MAX_TIMESTAMP_BYTES: usize = 64;

/// Why a pushed notification cannot be taken: a receiver that is not an address, or fields
/// longer than anything notification-service sends.
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
    /// Takes a pushed notification and hands it to the watchers of its receiver on every
    /// replica. Answers only once it is published: an error makes notification-service retry.
    #[tracing::instrument(skip_all)]
    async fn receive_notification(
        &self,
        request: Request<Notification>,
    ) -> Result<Response<ReceiveNotificationResponse>, Status> {
        let notification = request.into_inner();
        if let Err(reason) = check(&notification) {
            tracing::warn!(
                notification_id = notification.notification_id.as_deref().unwrap_or(""),
                reason,
                "notification refused; dropped"
            );
            crate::metrics::received(crate::metrics::Received::Refused);
            return Ok(Response::new(ReceiveNotificationResponse {
                success: false,
            }));
        }
        let receiver = notification.receiver_email.clone().unwrap_or_default();
        self.live
            .publish(&receiver, &notification)
            .await
            .map_err(|err| Status::unavailable(format!("live feed (Redis) unavailable: {err}")))?;
        tracing::info!(
            notification_id = notification.notification_id.as_deref().unwrap_or(""),
            sender_email = notification.sender_email.as_deref().unwrap_or(""),
            receiver_email = receiver,
            timestamp = notification.timestamp.as_deref().unwrap_or(""),
            cursor = notification.cursor,
            "notification delivered"
        );
        crate::metrics::received(crate::metrics::Received::Published);
        Ok(Response::new(ReceiveNotificationResponse { success: true }))
    }

    /// Takes a change of a receiver's read state and hands it to the receiver's live streams
    /// on every replica (none open: nothing to do). Answers once it is published.
    #[tracing::instrument(skip_all)]
    async fn receive_inbox_change(
        &self,
        request: Request<InboxChange>,
    ) -> Result<Response<ReceiveNotificationResponse>, Status> {
        let change = request.into_inner();
        let receiver = change.receiver_email.as_deref().unwrap_or_default();
        let Ok(receiver) = Email::parse(receiver) else {
            tracing::warn!(
                "inbox change refused: receiver_email is missing or not an email address"
            );
            return Ok(Response::new(ReceiveNotificationResponse {
                success: false,
            }));
        };
        self.live
            .publish_change(receiver.as_str(), &change)
            .await
            .map_err(|err| Status::unavailable(format!("live feed (Redis) unavailable: {err}")))?;
        tracing::info!(receiver_email = %receiver, kind = ?change.kind(), "inbox change published");
        Ok(Response::new(ReceiveNotificationResponse { success: true }))
    }

    type WatchNotificationsStream = NotificationStream;

    /// The receiver's stored notifications after `after` (without it, the newest 100), then
    /// every new one, in cursor order, each once.
    #[tracing::instrument(skip_all)]
    async fn watch_notifications(
        &self,
        request: Request<WatchNotificationsRequest>,
    ) -> Result<Response<Self::WatchNotificationsStream>, Status> {
        // Put there by the access guard once it checked the token.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anyone);
        // A watch opened with a user's token is re-checked while it lasts.
        let lease = Lease::of(&caller, &self.auth, authorization(request.metadata()));
        let WatchNotificationsRequest { email, after } = request.into_inner();
        let email = email
            .filter(|email| !email.trim().is_empty())
            .ok_or_else(|| Status::invalid_argument("email is required"))?;
        let receiver = Email::parse(email)
            .map_err(|err| Status::invalid_argument(err.to_string()))?
            .into_string();
        // Subscribed before the store is read, so nothing falls between replay and live.
        let live = self.live.subscribe(&receiver);
        tracing::info!(receiver_email = receiver, after, "watcher attached");
        let (out, stream) = mpsc::channel(WATCHER_BUFFER);
        let watch = Watch {
            store: self.store.clone(),
            receiver,
            out: out.clone(),
            report_state: false,
            patience: None,
        };
        let watcher = crate::metrics::Watcher::attached();
        let shutdown = self.shutdown.clone();
        // A watch lasts until shutdown, until its token expires, or until a re-check refuses it.
        // (Its future is made inside the task's, which would otherwise hold it twice.)
        let run = async move {
            let refused = tokio::select! {
                () = watch.run(after, live, shutdown) => None,
                refused = lease.ended() => refused,
            };
            if let Some(err) = refused {
                send_final(&out, Status::from(err)).await;
            }
            drop(watcher);
        };
        tokio::spawn(request_id::carry(run).in_current_span());
        // Such a watch sends notifications only.
        let notifications = ReceiverStream::new(stream).filter_map(|item| async move {
            match *item {
                Ok(Event::Notification(notification)) => Some(Ok(notification)),
                Ok(_) => None,
                Err(status) => Some(Err(status)),
            }
        });
        Ok(Response::new(Box::pin(notifications)))
    }
}
