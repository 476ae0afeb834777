//! notification-service (subscriptions, notifications) and frontend-service (`WatchNotifications`).

use std::collections::HashSet;

use proto::{
    frontend_service::{Notification, WatchNotificationsRequest},
    notification_service::{
        CheckUserSubscribedRequest, CreateNotificationRequest, SubscribeUserRequest,
        UnsubscribeUserRequest,
    },
};
use redis::AsyncCommands;
use serde_json::Value;
use tonic::Streaming;

use notification_service::keys::{FRONTEND_OUTBOX, SUBSCRIPTIONS, notifications_key};

use super::{EmailIn, PATIENCE, eventually, unique_email};
use crate::Stack;

impl<S> Stack<S> {
    /// `SubscribeUser`, which must answer status OK; its `success`.
    pub async fn subscribe(&self, email: Option<&str>) -> bool {
        self.notification_client()
            .await
            .subscribe_user(SubscribeUserRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("SubscribeUser answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `UnsubscribeUser`, which must answer status OK; its `success`.
    pub async fn unsubscribe(&self, email: Option<&str>) -> bool {
        self.notification_client()
            .await
            .unsubscribe_user(UnsubscribeUserRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("UnsubscribeUser answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `CheckUserSubscribed`, which must answer status OK.
    pub async fn is_subscribed(&self, email: &str) -> bool {
        self.notification_client()
            .await
            .check_user_subscribed(CheckUserSubscribedRequest {
                email: Some(email.to_owned()),
            })
            .await
            .expect("CheckUserSubscribed answers OK")
            .into_inner()
            .subscribed
            .expect("subscribed is always set")
    }

    /// `CreateNotification`, which must answer status OK; its `success`.
    pub async fn create_notification(
        &self,
        sender: Option<&str>,
        receiver: Option<&str>,
        id: Option<&str>,
    ) -> bool {
        self.notification_client()
            .await
            .create_notification(CreateNotificationRequest {
                sender_email: sender.map(str::to_owned),
                receiver_email: receiver.map(str::to_owned),
                notification_id: id.map(str::to_owned),
            })
            .await
            .expect("CreateNotification answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `GET /list_notifications` on notification-service.
    pub async fn list_notifications(&self, email: EmailIn<'_>) -> (u16, Value) {
        self.get_list(self.notification_url("/list_notifications"), email)
            .await
    }

    /// `WatchNotifications` on frontend-service: the stream of `email`'s notifications, what it
    /// holds now, then live ones.
    pub async fn watch(&self, email: &str) -> Streaming<Notification> {
        self.frontend_client()
            .await
            .watch_notifications(WatchNotificationsRequest {
                email: Some(email.to_owned()),
                after: None,
            })
            .await
            .expect("WatchNotifications answers OK")
            .into_inner()
    }

    /// The field of `email` in the subscriptions hash of DB 2 ([`SUBSCRIPTIONS`]), parsed, or
    /// `None`.
    pub async fn stored_subscription(&self, email: &str) -> Option<Value> {
        let raw: Option<String> = self
            .redis
            .db(2)
            .await
            .hget(SUBSCRIPTIONS, email)
            .await
            .expect("HGET the subscriptions");
        raw.map(|raw| serde_json::from_str(&raw).expect("stored subscription is JSON"))
    }

    /// Waits until `email` has a stored subscription; returns it.
    pub async fn wait_for_subscription(&self, email: &str) -> Value {
        eventually(&format!("a subscription of {email}"), || {
            self.stored_subscription(email)
        })
        .await
    }

    /// The notifications of `email` in DB 2 ([`notifications_key`]), each parsed, head (newest)
    /// first.
    pub async fn stored_notifications(&self, email: &str) -> Vec<Value> {
        let raw: Vec<String> = self
            .redis
            .db(2)
            .await
            .lrange(notifications_key(email), 0, -1)
            .await
            .expect("LRANGE the notifications");
        raw.iter()
            .map(|json| serde_json::from_str(json).expect("a stored notification is JSON"))
            .collect()
    }

    /// Waits until `email` has exactly `count` stored notifications; returns them.
    pub async fn wait_for_notifications(&self, email: &str, count: usize) -> Vec<Value> {
        eventually(&format!("{count} notifications for {email}"), || async {
            let stored = self.stored_notifications(email).await;
            assert!(
                stored.len() <= count,
                "more notifications than expected: {}",
                stored.len()
            );
            (stored.len() == count).then_some(stored)
        })
        .await
    }

    /// The ids of `email`'s notifications once exactly `count` are stored, checked to be
    /// distinct: every message got its notification, none got two.
    pub async fn distinct_notification_ids(&self, email: &str, count: usize) -> HashSet<String> {
        let ids = ids_of(&self.wait_for_notifications(email, count).await);
        let distinct: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "a notification id stored twice: {ids:?}"
        );
        distinct
    }

    /// Waits until the frontend outbox of notification-service (DB 2) is empty: every stored
    /// notification has been taken by frontend-service.
    pub async fn wait_for_frontend_outbox_drained(&self) {
        self.wait_for_empty_stream(2, FRONTEND_OUTBOX).await;
    }
}

/// The notification ids among `notifications`.
pub fn ids_of(notifications: &[Value]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| {
            n["notification_id"]
                .as_str()
                .expect("notification_id is a string")
                .to_owned()
        })
        .collect()
}

/// Reads `stream` until it has yielded every id in `wanted` (or [`PATIENCE`] runs out, or the
/// stream ends); returns every id seen. An id streamed twice fails the test.
pub async fn receive_ids(
    stream: &mut Streaming<Notification>,
    wanted: &HashSet<String>,
) -> HashSet<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = HashSet::new();
    while !wanted.is_subset(&seen) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(notification))) => {
                let id = notification.notification_id.unwrap_or_default();
                assert!(seen.insert(id.clone()), "{id} was streamed twice");
            }
            Ok(Ok(None) | Err(_)) | Err(_) => break,
        }
    }
    seen
}

impl<S> Stack<S> {
    /// Proves nothing more is streamed to `receiver` on `stream` after what the test has read:
    /// creates one more notification, a marker, and reads until it arrives. Pushes leave
    /// notification-service's outbox in order, so once the marker is streamed, anything queued
    /// before it (a repeat, a redelivery) would have been streamed first; whatever arrives
    /// before the marker fails the test.
    pub async fn assert_nothing_more_streamed(
        &self,
        stream: &mut Streaming<Notification>,
        receiver: &str,
    ) {
        let marker = format!("marker-{}", unique_email("marker"));
        assert!(
            self.create_notification(Some("marker@example.com"), Some(receiver), Some(&marker))
                .await,
            "the marker notification is created"
        );
        let next = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("the marker {marker} was not streamed in time"))
            .expect("the stream is healthy")
            .expect("the stream is open");
        assert_eq!(
            next.notification_id.as_deref(),
            Some(marker.as_str()),
            "streamed after everything expected, before the marker: {next:?}"
        );
    }
}
