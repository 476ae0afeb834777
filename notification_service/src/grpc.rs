//! The `notification_service.NotificationService` gRPC API. Who may call what is [`ACCESS`]:
//! creating notifications is for message-service; the inbox RPCs and the subscription RPCs
//! are for its owner (and `ListNotifications` and `GetUnreadCount` also for frontend-service,
//! which replays watches and reports unread counts on live streams; `SubscribeUser` also for
//! user-service, which subscribes a new user on sign-up).

use proto::notification_service::{
    CheckUserSubscribedRequest, CheckUserSubscribedResponse, CreateNotificationRequest,
    CreateNotificationResponse, DeleteNotificationsRequest, DeleteNotificationsResponse,
    ForgetUserRequest, ForgetUserResponse, ListNotificationsRequest, ListNotificationsResponse,
    MarkNotificationsReadRequest, MarkNotificationsReadResponse, Notification,
    SubscribeUserRequest, SubscribeUserResponse, UnreadCountRequest, UnreadCountResponse,
    UnsubscribeUserRequest, UnsubscribeUserResponse,
    notification_service_server::NotificationService,
};
use service_runtime::{
    auth::{Access, AccessTable, ServiceName},
    email::{AccountChange, Email},
    limits, owner, request_id,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::{
    Error,
    changes::Inbox,
    push::FrontendOutbox,
    selection,
    store::{Created, PageOf},
};

/// Page size of `ListNotifications` without a `limit`.
const DEFAULT_PAGE: usize = 100;

/// Who may call which RPC of notification-service's gRPC server.
pub const ACCESS: AccessTable = AccessTable(&[
    (
        "/notification_service.NotificationService/CreateNotification",
        Access::Services(&[ServiceName::Message]),
    ),
    (
        "/notification_service.NotificationService/CheckUserSubscribed",
        Access::ServicesOrOwner(
            &[],
            owner!(CheckUserSubscribedRequest, |request| request.email),
        ),
    ),
    (
        "/notification_service.NotificationService/SubscribeUser",
        Access::ServicesOrOwner(
            &[ServiceName::User],
            owner!(SubscribeUserRequest, |request| request.email),
        ),
    ),
    (
        "/notification_service.NotificationService/UnsubscribeUser",
        Access::ServicesOrOwner(&[], owner!(UnsubscribeUserRequest, |request| request.email)),
    ),
    (
        "/notification_service.NotificationService/ForgetUser",
        Access::Services(&[ServiceName::User]),
    ),
    (
        "/notification_service.NotificationService/ListNotifications",
        Access::ServicesOrOwner(
            &[ServiceName::Frontend],
            owner!(ListNotificationsRequest, |request| request.email),
        ),
    ),
    (
        "/notification_service.NotificationService/MarkNotificationsRead",
        Access::Owner(owner!(MarkNotificationsReadRequest, |request| request.email)),
    ),
    (
        "/notification_service.NotificationService/GetUnreadCount",
        Access::ServicesOrOwner(
            &[ServiceName::Frontend],
            owner!(UnreadCountRequest, |request| request.email),
        ),
    ),
    (
        "/notification_service.NotificationService/DeleteNotifications",
        Access::Owner(owner!(DeleteNotificationsRequest, |request| request.email)),
    ),
]);

pub struct NotificationGrpc {
    inbox: Inbox,
    frontend: FrontendOutbox,
}

impl NotificationGrpc {
    pub fn new(inbox: Inbox, frontend: FrontendOutbox) -> Self {
        Self { inbox, frontend }
    }
}

fn non_empty(field: Option<String>) -> Option<String> {
    field.filter(|value| !value.trim().is_empty())
}

/// The request's email, if it is a well-formed address.
fn email(field: Option<String>) -> Option<Email> {
    field.and_then(|raw| Email::parse(raw).ok())
}

#[tonic::async_trait]
impl NotificationService for NotificationGrpc {
    #[tracing::instrument(skip_all, fields(sender_email, receiver_email, notification_id))]
    async fn create_notification(
        &self,
        request: Request<CreateNotificationRequest>,
    ) -> Result<Response<CreateNotificationResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("sender_email", request.sender_email.as_deref());
        span.record("receiver_email", request.receiver_email.as_deref());
        let refused = |reason: &str| {
            tracing::warn!(reason, "notification refused; not stored");
            Ok(Response::new(CreateNotificationResponse {
                success: Some(false),
            }))
        };
        let Some(sender) = email(request.sender_email) else {
            return refused("sender_email is missing or not an email address");
        };
        let Some(receiver) = email(request.receiver_email) else {
            return refused("receiver_email is missing or not an email address");
        };
        let id = match non_empty(request.notification_id) {
            None => uuid::Uuid::new_v4().to_string(),
            Some(id) if id.len() > limits::MAX_ID_BYTES => {
                let reason = format!(
                    "notification_id is longer than {} bytes",
                    limits::MAX_ID_BYTES
                );
                return refused(&reason);
            }
            Some(id) => id,
        };
        span.record("notification_id", id.as_str());
        let created = self
            .inbox
            .store
            .create(&receiver, &sender, id)
            .await
            .map_err(Error::from)?;
        match created {
            Created::New {
                notification,
                outbox_entry,
            } => {
                tracing::info!("notification created");
                // The answer does not wait for the push (only storing is promised); it starts
                // now rather than when the outbox worker next looks.
                let frontend = self.frontend.clone();
                let push = async move { frontend.deliver_now(&outbox_entry, notification).await };
                tokio::spawn(request_id::carry(push).in_current_span());
            }
            Created::Repeated => {
                tracing::info!("notification already stored (or deleted since); repeat ignored")
            }
            Created::NotSubscribed => return refused("receiver is not subscribed"),
        }
        Ok(Response::new(CreateNotificationResponse {
            success: Some(true),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_email))]
    async fn check_user_subscribed(
        &self,
        request: Request<CheckUserSubscribedRequest>,
    ) -> Result<Response<CheckUserSubscribedResponse>, Status> {
        let subscribed = match email(request.into_inner().email) {
            Some(email) => {
                tracing::Span::current().record("user_email", email.as_str());
                self.inbox
                    .store
                    .is_subscribed(&email)
                    .await
                    .map_err(Error::from)?
            }
            None => false,
        };
        Ok(Response::new(CheckUserSubscribedResponse {
            subscribed: Some(subscribed),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_email))]
    async fn subscribe_user(
        &self,
        request: Request<SubscribeUserRequest>,
    ) -> Result<Response<SubscribeUserResponse>, Status> {
        let success = self
            .set_subscribed(request.into_inner().email, true)
            .await?;
        Ok(Response::new(SubscribeUserResponse {
            success: Some(success),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_email))]
    async fn unsubscribe_user(
        &self,
        request: Request<UnsubscribeUserRequest>,
    ) -> Result<Response<UnsubscribeUserResponse>, Status> {
        let success = self
            .set_subscribed(request.into_inner().email, false)
            .await?;
        Ok(Response::new(UnsubscribeUserResponse {
            success: Some(success),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_email, moved_to))]
    async fn forget_user(
        &self,
        request: Request<ForgetUserRequest>,
    ) -> Result<Response<ForgetUserResponse>, Status> {
        let ForgetUserRequest { email, moved_to } = request.into_inner();
        let success =
            AccountChange::forget(email, moved_to, "notifications", |change| async move {
                self.inbox.store.forget(&change).await.map_err(Error::from)
            })
            .await?;
        Ok(Response::new(ForgetUserResponse {
            success: Some(success),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_notifications(
        &self,
        request: Request<ListNotificationsRequest>,
    ) -> Result<Response<ListNotificationsResponse>, Status> {
        self.list(request.into_inner()).await.map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn mark_notifications_read(
        &self,
        request: Request<MarkNotificationsReadRequest>,
    ) -> Result<Response<MarkNotificationsReadResponse>, Status> {
        let request = request.into_inner();
        let Some(email) = email(request.email) else {
            return Ok(Response::new(MarkNotificationsReadResponse {
                success: Some(false),
                ..Default::default()
            }));
        };
        let which = selection::to_mark_read(request.notification_ids)?;
        let (marked, unread_count) = self
            .inbox
            .mark_read(&email, &which)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(MarkNotificationsReadResponse {
            success: Some(true),
            marked: Some(marked),
            unread_count: Some(unread_count),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_unread_count(
        &self,
        request: Request<UnreadCountRequest>,
    ) -> Result<Response<UnreadCountResponse>, Status> {
        let UnreadCountRequest { email: raw, up_to } = request.into_inner();
        let unread_count = match email(raw) {
            Some(email) => self
                .inbox
                .store
                .unread_count(&email, up_to)
                .await
                .map_err(Error::from)?,
            None => 0,
        };
        Ok(Response::new(UnreadCountResponse {
            unread_count: Some(unread_count),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_notifications(
        &self,
        request: Request<DeleteNotificationsRequest>,
    ) -> Result<Response<DeleteNotificationsResponse>, Status> {
        let request = request.into_inner();
        let Some(email) = email(request.email) else {
            return Ok(Response::new(DeleteNotificationsResponse {
                success: Some(false),
                deleted: None,
            }));
        };
        let which = selection::to_delete(request.notification_ids, request.all.unwrap_or(false))?;
        let deleted = self
            .inbox
            .delete(&email, &which)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(DeleteNotificationsResponse {
            success: Some(true),
            deleted: Some(deleted),
        }))
    }
}

impl NotificationGrpc {
    /// A page of `request.email`'s notifications (none for a missing or malformed address).
    pub async fn list(
        &self,
        request: ListNotificationsRequest,
    ) -> Result<ListNotificationsResponse, Status> {
        let Some(email) = email(request.email) else {
            return Ok(ListNotificationsResponse::default());
        };
        let limit = request
            .limit
            .map_or(DEFAULT_PAGE, |limit| limit as usize)
            .clamp(1, service_runtime::http::MAX_PAGE);
        let of = match request.after {
            Some(after) => PageOf::After(after),
            None => PageOf::Before {
                before: request.before,
                unread_only: request.unread_only.unwrap_or(false),
            },
        };
        let page = self
            .inbox
            .store
            .page(&email, of, limit)
            .await
            .map_err(Error::from)?;
        Ok(ListNotificationsResponse {
            notifications: page
                .notifications
                .into_iter()
                .map(Notification::from)
                .collect(),
            next_cursor: page.next_cursor,
            unread_count: Some(page.unread_count),
            trimmed_through: page.trimmed_through,
            oldest_cursor: page.oldest_cursor,
        })
    }

    /// Records the subscription; `false` (a business outcome) for a missing or malformed email.
    async fn set_subscribed(&self, raw: Option<String>, subscribed: bool) -> Result<bool, Status> {
        let Some(email) = email(raw) else {
            tracing::info!(subscribed, "subscription change refused: invalid email");
            return Ok(false);
        };
        tracing::Span::current().record("user_email", email.as_str());
        self.inbox
            .store
            .set_subscribed(&email, subscribed)
            .await
            .map_err(Error::from)?;
        tracing::info!(subscribed, "subscription recorded");
        Ok(true)
    }
}
