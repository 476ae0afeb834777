//! message-service: `SendMessage`, `GetMessages`, `GET /list_conversations` and its outbox.

use std::future::Future;

use proto::message_service::{
    GetMessagesRequest, Message, SendMessageRequest, SendMessageResponse,
    message_service_client::MessageServiceClient,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use message_service::keys::NOTIFICATION_OUTBOX;

use super::reply;
use crate::Stack;

/// A `SendMessage` request; `None` leaves the field unset.
pub fn message(
    sender: Option<&str>,
    receiver: Option<&str>,
    content: Option<&str>,
) -> SendMessageRequest {
    SendMessageRequest {
        message: Some(Message {
            sender_email: sender.map(str::to_owned),
            receiver_email: receiver.map(str::to_owned),
            content: content.map(str::to_owned),
            ..Message::default()
        }),
        idempotency_key: None,
    }
}

/// A `SendMessage` request named by idempotency key `key`.
pub fn keyed_message(sender: &str, receiver: &str, content: &str, key: &str) -> SendMessageRequest {
    SendMessageRequest {
        idempotency_key: Some(key.to_owned()),
        ..message(Some(sender), Some(receiver), Some(content))
    }
}

/// `SendMessage` of `content` from `sender` to `receiver` over `client`, which must answer
/// status OK; the reply. For tests that put many sends on one channel; [`Stack::send`] opens
/// its own.
pub async fn send_over(
    client: &mut MessageServiceClient<Channel>,
    sender: &str,
    receiver: &str,
    content: &str,
) -> SendMessageResponse {
    client
        .send_message(message(Some(sender), Some(receiver), Some(content)))
        .await
        .expect("SendMessage answers OK")
        .into_inner()
}

/// Where a list endpoint is given the email.
#[derive(Debug, Clone)]
pub enum EmailIn<'a> {
    /// `?email=<email>`.
    Query(&'a str),
    /// A JSON body, as the original's clients send it (even with GET).
    Body(Value),
    /// Neither.
    Nowhere,
}

impl<S> Stack<S> {
    /// `SendMessage` (see [`send_over`]) on a channel of its own.
    pub async fn send(&self, sender: &str, receiver: &str, content: &str) -> SendMessageResponse {
        send_over(&mut self.message_client().await, sender, receiver, content).await
    }

    /// `SendMessage`, asserting the contract's success reply.
    pub async fn send_ok(&self, sender: &str, receiver: &str, content: &str) {
        let reply = self.send(sender, receiver, content).await;
        assert_eq!(reply.success, Some(true), "{reply:?}");
        assert_eq!(reply.message.as_deref(), Some("Message sent"));
    }

    /// `GetMessages`, which must answer status OK.
    pub async fn messages_of(&self, email: &str) -> Vec<Message> {
        self.message_client()
            .await
            .get_messages(GetMessagesRequest {
                user_email: Some(email.to_owned()),
                ..GetMessagesRequest::default()
            })
            .await
            .expect("GetMessages answers OK")
            .into_inner()
            .messages
    }

    /// `GET /list_conversations` on message-service.
    pub async fn list_conversations(&self, email: EmailIn<'_>) -> (u16, Value) {
        self.get_list(self.message_url("/list_conversations"), email)
            .await
    }

    pub(super) async fn get_list(&self, url: String, email: EmailIn<'_>) -> (u16, Value) {
        let request = self.http().get(url);
        let request = match email {
            EmailIn::Query(email) => request.query(&[("email", email)]),
            EmailIn::Body(body) => request.json(&body),
            EmailIn::Nowhere => request,
        };
        reply(request.send().await.expect("GET")).await
    }

    /// Waits until the notification outbox of message-service (DB 1) is empty: every stored
    /// message has had its `CreateNotification` answered.
    pub async fn wait_for_notification_outbox_drained(&self) {
        self.wait_for_empty_stream(1, NOTIFICATION_OUTBOX).await;
    }
}

/// A list endpoint asked without an email — `{}` or `{"email": ""}` as the body, `?email=`,
/// and nothing at all — answers 400 with a message about the email each time. `list` is
/// [`Stack::list_conversations`] or [`Stack::list_notifications`].
pub async fn assert_email_is_required<F, Fut>(list: F)
where
    F: Fn(EmailIn<'static>) -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    for (status, body) in [
        list(EmailIn::Body(json!({}))).await,
        list(EmailIn::Body(json!({ "email": "" }))).await,
        list(EmailIn::Query("")).await,
        list(EmailIn::Nowhere).await,
    ] {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["success"], false);
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("email")),
            "{body}"
        );
    }
}
