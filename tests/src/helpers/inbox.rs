//! The inbox (notification-service) and resuming watches (frontend-service).

use proto::frontend_service::{
    Notification, WatchNotificationsRequest, frontend_service_client::FrontendServiceClient,
};
use serde_json::Value;
use tonic::Streaming;

use super::{PATIENCE, reply};
use crate::Stack;

impl<S> Stack<S> {
    /// `GET /list_notifications?email=…&<query>` (e.g. `limit=20&before=…&unread=true`).
    pub async fn list_notifications_page(
        &self,
        email: &str,
        query: &[(&str, String)],
    ) -> (u16, Value) {
        let request = self
            .http()
            .get(self.notification_url("/list_notifications"))
            .query(&[("email", email)])
            .query(query);
        reply(request.send().await.expect("GET /list_notifications")).await
    }

    /// `POST /notifications/read` with `body`.
    pub async fn mark_read(&self, body: &Value) -> (u16, Value) {
        let request = self
            .http()
            .post(self.notification_url("/notifications/read"));
        reply(
            request
                .json(body)
                .send()
                .await
                .expect("POST /notifications/read"),
        )
        .await
    }

    /// `GET /notifications/unread_count?email=`; the count, asserting a 200.
    pub async fn unread_count(&self, email: &str) -> u64 {
        let request = self
            .http()
            .get(self.notification_url("/notifications/unread_count"))
            .query(&[("email", email)]);
        let (status, body) = reply(request.send().await.expect("GET unread_count")).await;
        assert_eq!(status, 200, "{body}");
        body["unread_count"]
            .as_u64()
            .expect("unread_count is a number")
    }

    /// `DELETE /notifications` with `body`.
    pub async fn delete_notifications(&self, body: &Value) -> (u16, Value) {
        let request = self.http().delete(self.notification_url("/notifications"));
        reply(
            request
                .json(body)
                .send()
                .await
                .expect("DELETE /notifications"),
        )
        .await
    }

    /// `WatchNotifications` resuming after `after` on the frontend at `port`.
    pub async fn watch_after(
        &self,
        port: u16,
        email: &str,
        after: Option<u64>,
    ) -> Streaming<Notification> {
        FrontendServiceClient::new(crate::stack::channel(port).await)
            .watch_notifications(WatchNotificationsRequest {
                email: Some(email.to_owned()),
                after,
            })
            .await
            .expect("WatchNotifications answers OK")
            .into_inner()
    }
}

/// The next `count` notifications of `stream`, in the order streamed (fails after
/// [`PATIENCE`]).
pub async fn next_notifications(
    stream: &mut Streaming<Notification>,
    count: usize,
) -> Vec<Notification> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let next = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} notifications streamed", received.len()))
            .expect("the stream is healthy")
            .expect("the stream is open");
        received.push(next);
    }
    received
}
