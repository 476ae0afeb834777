//! The `message_service.MessageService` gRPC API.

use proto::{
    message_service::{
        ForgetUserRequest, ForgetUserResponse, GetMessagesRequest, GetMessagesResponse, Message,
        SendMessageRequest, SendMessageResponse, message_service_server::MessageService,
    },
    user_service::{CheckUserExistsRequest, user_service_client::UserServiceClient},
};
use service_runtime::{
    auth::{Access, AccessTable, ServiceName},
    email::{AccountChange, Email},
    grpc_client::GrpcChannel,
    limits, owner, retry,
};
use tonic::{Request, Response, Status};

use crate::{
    error::Error,
    notify::NotificationOutbox,
    store::{NewMessage, Store, StoredMessage},
};

/// Who may call which RPC of message-service's gRPC server: each user sends only as
/// themselves and reads only their own messages; only the services (user-service's account
/// outbox) make it forget or move an address.
pub const ACCESS: AccessTable = AccessTable(&[
    (
        "/message_service.MessageService/SendMessage",
        Access::Owner(owner!(SendMessageRequest, |request| request
            .message
            .and_then(|message| message.sender_email))),
    ),
    (
        "/message_service.MessageService/GetMessages",
        Access::Owner(owner!(GetMessagesRequest, |request| request.user_email)),
    ),
    (
        "/message_service.MessageService/ForgetUser",
        Access::Services(&[ServiceName::User]),
    ),
]);

pub struct MessageGrpc {
    pub store: Store,
    pub users: UserServiceClient<GrpcChannel>,
    pub notifications: NotificationOutbox,
    /// Longest content accepted, in bytes (`MAX_MESSAGE_BYTES`).
    pub max_content_bytes: usize,
}

impl MessageGrpc {
    /// Whether user-service knows `email`; a malformed address is nobody's.
    async fn user_exists(&self, email: Option<&Email>) -> Result<bool, Error> {
        let Some(email) = email else {
            return Ok(false);
        };
        // A read: safe to repeat.
        let reply = retry::retry_unavailable(|| {
            let request = CheckUserExistsRequest {
                email: Some(email.to_string()),
            };
            let mut users = self.users.clone();
            async move { users.check_user_exists(request).await }
        })
        .await
        .map_err(Error::UserService)?;
        Ok(reply.into_inner().exists.unwrap_or(false))
    }

    /// Turns a request into a message to store, or says why it is refused (a business outcome).
    async fn accept(
        &self,
        message: Option<Message>,
        idempotency_key: Option<String>,
    ) -> Result<Result<NewMessage, String>, Error> {
        let message = message.unwrap_or_default();
        let Some(sender) = non_empty(message.sender_email) else {
            return Ok(Err("sender_email is required".into()));
        };
        let Some(receiver) = non_empty(message.receiver_email) else {
            return Ok(Err("receiver_email is required".into()));
        };
        let Some(content) = message.content.filter(|content| !content.trim().is_empty()) else {
            return Ok(Err("content is required".into()));
        };
        let content = match limits::within("content", content, self.max_content_bytes) {
            Ok(content) => content,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let (sender, receiver) = (Email::parse(sender).ok(), Email::parse(receiver).ok());
        // Both asked at once; the answers are still judged sender first, as the contract says.
        let (sender_exists, receiver_exists) = tokio::try_join!(
            self.user_exists(sender.as_ref()),
            self.user_exists(receiver.as_ref())
        )?;
        Ok(match (sender, receiver) {
            (Some(sender), Some(receiver)) if sender_exists && receiver_exists => Ok(NewMessage {
                sender,
                receiver,
                content,
                idempotency_key,
            }),
            _ if !sender_exists => Err("Sender does not exist".into()),
            _ => Err("Receiver does not exist".into()),
        })
    }
}

/// A send's idempotency key as given, or why it is refused: it becomes part of a Redis key
/// name, so it is short and printable.
fn idempotency_key(key: Option<String>) -> Result<Option<String>, Status> {
    let Some(key) = key else { return Ok(None) };
    if key.is_empty() || key.len() > limits::MAX_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "idempotency_key must be 1 to {} bytes",
            limits::MAX_ID_BYTES
        )));
    }
    if !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Status::invalid_argument(
            "idempotency_key must be printable ASCII without spaces",
        ));
    }
    Ok(Some(key))
}

fn non_empty(field: Option<String>) -> Option<String> {
    field.filter(|value| !value.trim().is_empty())
}

fn reply(success: bool, message: impl Into<String>) -> Response<SendMessageResponse> {
    Response::new(SendMessageResponse {
        success: Some(success),
        message: Some(message.into()),
    })
}

impl From<StoredMessage> for Message {
    fn from(stored: StoredMessage) -> Self {
        Self {
            message_id: Some(stored.id.to_string()),
            sender_email: Some(stored.sender_email),
            receiver_email: Some(stored.receiver_email),
            content: Some(stored.content),
            timestamp: Some(stored.timestamp),
        }
    }
}

#[tonic::async_trait]
impl MessageService for MessageGrpc {
    #[tracing::instrument(skip_all, fields(sender_email, receiver_email, message_id))]
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let SendMessageRequest {
            message,
            idempotency_key: key,
        } = request.into_inner();
        // Checked first: a malformed key is the caller's bug, whatever the message.
        let key = idempotency_key(key)?;
        let span = tracing::Span::current();
        if let Some(message) = &message {
            span.record("sender_email", message.sender_email.as_deref());
            span.record("receiver_email", message.receiver_email.as_deref());
        }
        let new = match self.accept(message, key).await? {
            Ok(new) => new,
            Err(refusal) => {
                tracing::info!(reason = refusal, "message refused");
                return Ok(reply(false, refusal));
            }
        };
        let saved = self.store.save(&new).await.map_err(Error::from)?;
        span.record("message_id", saved.id);
        // Created before the answer when notification-service is reachable (read-your-writes);
        // otherwise the outbox entry written with the message is delivered later.
        if let Some(entry) = &saved.outbox_entry {
            self.notifications
                .deliver_now(entry, saved.notification)
                .await;
        }
        tracing::info!("message sent");
        Ok(reply(true, "Message sent"))
    }

    #[tracing::instrument(skip_all, fields(user_email))]
    async fn get_messages(
        &self,
        request: Request<GetMessagesRequest>,
    ) -> Result<Response<GetMessagesResponse>, Status> {
        let request = request.into_inner();
        // A missing or malformed address is nobody's: an empty list, as for an unknown user.
        let Some(email) = request.user_email.and_then(|raw| Email::parse(raw).ok()) else {
            return Ok(Response::new(GetMessagesResponse::default()));
        };
        tracing::Span::current().record("user_email", email.as_str());
        let (messages, next_cursor) = match request.limit {
            Some(limit) => {
                let limit = (limit as usize).clamp(1, service_runtime::http::MAX_PAGE);
                // One more than asked says whether there is a next page.
                let mut messages = self
                    .store
                    .messages_of(&email, request.after, Some(limit + 1))
                    .await
                    .map_err(Error::from)?;
                let next_cursor = if messages.len() > limit {
                    messages.truncate(limit);
                    messages.last().map(|last| last.id)
                } else {
                    None
                };
                (messages, next_cursor)
            }
            None => self.unpaged(&email, request.after).await?,
        };
        Ok(Response::new(GetMessagesResponse {
            messages: messages.into_iter().map(Message::from).collect(),
            next_cursor,
        }))
    }

    #[tracing::instrument(skip_all, fields(user_email, moved_to))]
    async fn forget_user(
        &self,
        request: Request<ForgetUserRequest>,
    ) -> Result<Response<ForgetUserResponse>, Status> {
        let ForgetUserRequest { email, moved_to } = request.into_inner();
        let success = AccountChange::forget(email, moved_to, "messages", |change| async move {
            self.store.forget(&change).await.map_err(Error::from)
        })
        .await?;
        Ok(Response::new(ForgetUserResponse {
            success: Some(success),
        }))
    }
}

/// Most messages one `GetMessages` without a `limit` answers with; the rest is paged with
/// `next_cursor` (as `after`). Histories of normal size come whole, as the contract has it.
pub const MAX_UNPAGED_MESSAGES: usize = 10_000;
/// Most bytes of message data (content, addresses, timestamps) one `GetMessages` without a
/// `limit` answers with: under the 4 MiB a default gRPC client accepts, so a reply that
/// stops here is one such a client can still read.
pub const MAX_UNPAGED_BYTES: usize = 3 * 1024 * 1024;
/// Messages read from Redis at a time while gathering a reply without `limit`, so neither
/// Redis nor the service holds more than that beyond the reply itself.
const UNPAGED_CHUNK: usize = 100;

impl MessageGrpc {
    /// A reply without `limit`: every message after `after`, oldest first, up to
    /// [`MAX_UNPAGED_MESSAGES`] or [`MAX_UNPAGED_BYTES`]; past that, `next_cursor` is set.
    async fn unpaged(
        &self,
        email: &Email,
        mut after: Option<u64>,
    ) -> Result<(Vec<StoredMessage>, Option<u64>), Status> {
        let mut gathered = Vec::new();
        let mut bytes = 0;
        loop {
            let chunk = self
                .store
                .messages_of(email, after, Some(UNPAGED_CHUNK))
                .await
                .map_err(Error::from)?;
            let last_chunk = chunk.len() < UNPAGED_CHUNK;
            for message in chunk {
                let size = message.content.len()
                    + message.sender_email.len()
                    + message.receiver_email.len()
                    + message.timestamp.len();
                if gathered.len() == MAX_UNPAGED_MESSAGES
                    || (!gathered.is_empty() && bytes + size > MAX_UNPAGED_BYTES)
                {
                    let next_cursor = gathered.last().map(|last: &StoredMessage| last.id);
                    tracing::info!(
                        messages = gathered.len(),
                        bytes,
                        "GetMessages without a limit answered in part; next_cursor set"
                    );
                    return Ok((gathered, next_cursor));
                }
                bytes += size;
                after = Some(message.id);
                gathered.push(message);
            }
            if last_chunk {
                return Ok((gathered, None));
            }
        }
    }
}
