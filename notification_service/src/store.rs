//! notification-service's data in Redis DB 2. Every key name lives here.
//!
//! | key | type | content |
//! |---|---|---|
//! | `subscriptions` | hash | field = email, value = JSON `{"user_email": email, "subscribed": true\|false}` |
//! | `notifications:{email}` | list | JSON `{"sender_email", "receiver_email", "timestamp", "read", "notification_id"}`, newest at the head |
//! | `notification_ids:{email}` | set | additive: ids of the receiver's stored notifications, so a repeat is stored once |
//! | `outbox:frontend` | stream | additive: notifications still to be pushed to frontend-service |
//!
//! Creating a notification is one script run: the subscription check, the dedup, the stored
//! notification and its outbox entry happen together, so an unsubscribe either comes before
//! (nothing stored) or after (stored and pushed), never in between.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_runtime::{
    email::Email,
    error::StoreError,
    outbox::{OutboxStream, PAYLOAD_FIELD},
    redis_store::Redis,
};

pub const SUBSCRIPTIONS: &str = "subscriptions";
/// Notifications still to be pushed to frontend-service, delivered by [`crate::push`].
pub const FRONTEND_OUTBOX: OutboxStream<StoredNotification> =
    OutboxStream::new("outbox:frontend", "notification-service");

pub fn notifications_key(email: &str) -> String {
    format!("notifications:{email}")
}

pub fn notification_ids_key(email: &str) -> String {
    format!("notification_ids:{email}")
}

/// Returns the outbox entry's id when stored, `repeat` when the id was stored before (nothing
/// written), `unsubscribed` when the receiver is not subscribed (nothing written).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 subscriptions, 2 receiver's notification ids, 3 receiver's notifications, 4 outbox
-- ARGV: 1 receiver, 2 notification id, 3 notification JSON, 4 outbox payload field
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 'repeat' end
local subscription = redis.call('HGET', KEYS[1], ARGV[1])
if not subscription then return 'unsubscribed' end
local ok, decoded = pcall(cjson.decode, subscription)
if not ok or type(decoded) ~= 'table' or decoded['subscribed'] ~= true then
  return 'unsubscribed'
end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('LPUSH', KEYS[3], ARGV[3])
return redis.call('XADD', KEYS[4], '*', ARGV[4], ARGV[3])
",
    )
});

/// A notification as stored in `notifications:{email}` and pushed to frontend-service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredNotification {
    pub sender_email: String,
    pub receiver_email: String,
    pub timestamp: String,
    pub read: bool,
    /// Absent in notifications written before ids existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_id: Option<String>,
}

/// A `subscriptions` value.
#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    user_email: String,
    subscribed: bool,
}

/// What became of a notification handed to [`Store::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored and queued for frontend-service as this outbox entry.
    New {
        notification: StoredNotification,
        outbox_entry: String,
    },
    /// Its id was stored before: nothing written.
    Repeated,
    /// The receiver is not subscribed: nothing written.
    NotSubscribed,
}

/// notification-service's storage; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
}

impl Store {
    /// Stores a notification for `receiver` if they are subscribed and `notification_id` is
    /// not a repeat, and queues its push to frontend-service, atomically.
    #[tracing::instrument(skip_all, fields(receiver_email = %receiver, notification_id))]
    pub async fn create(
        &self,
        receiver: &Email,
        sender: &str,
        notification_id: String,
    ) -> Result<Created, StoreError> {
        tracing::Span::current().record("notification_id", notification_id.as_str());
        let notification = StoredNotification {
            sender_email: sender.to_owned(),
            receiver_email: receiver.to_string(),
            timestamp: service_runtime::time::now_rfc3339(),
            read: false,
            notification_id: Some(notification_id.clone()),
        };
        let json = FRONTEND_OUTBOX
            .encode(&notification)
            .map_err(|err| StoreError::Corrupt(format!("cannot encode a notification: {err}")))?;
        let mut invocation = CREATE.prepare_invoke();
        invocation
            .key(SUBSCRIPTIONS)
            .key(notification_ids_key(receiver.as_str()))
            .key(notifications_key(receiver.as_str()))
            .key(FRONTEND_OUTBOX.key())
            .arg(receiver.as_str())
            .arg(&notification_id)
            .arg(json)
            .arg(PAYLOAD_FIELD);
        let outcome: String = self.redis.invoke(&invocation).await?;
        Ok(match outcome.as_str() {
            "repeat" => Created::Repeated,
            "unsubscribed" => Created::NotSubscribed,
            _ => Created::New {
                notification,
                outbox_entry: outcome,
            },
        })
    }

    /// Records whether `email` wants notifications; setting the same value again changes nothing.
    #[tracing::instrument(skip_all, fields(user_email = %email, subscribed))]
    pub async fn set_subscribed(&self, email: &Email, subscribed: bool) -> Result<(), StoreError> {
        let value = serde_json::to_string(&Subscription {
            user_email: email.to_string(),
            subscribed,
        })
        .map_err(|err| StoreError::Corrupt(format!("cannot encode a subscription: {err}")))?;
        self.redis
            .query::<()>(
                redis::cmd("HSET")
                    .arg(SUBSCRIPTIONS)
                    .arg(email.as_str())
                    .arg(value),
            )
            .await?;
        Ok(())
    }

    /// Whether `email` is subscribed; an unknown user is not.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn is_subscribed(&self, email: &Email) -> Result<bool, StoreError> {
        let stored: Option<String> = self
            .redis
            .query(redis::cmd("HGET").arg(SUBSCRIPTIONS).arg(email.as_str()))
            .await?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let subscription: Subscription = serde_json::from_str(&stored)
            .map_err(|err| StoreError::Corrupt(format!("subscription {stored:?}: {err}")))?;
        Ok(subscription.subscribed)
    }

    /// The receiver's notifications, newest first, as stored (each a JSON object).
    #[tracing::instrument(skip_all, fields(user_email = email))]
    pub async fn notifications_of(&self, email: &str) -> Result<Vec<Value>, StoreError> {
        let stored: Vec<String> = self
            .redis
            .query(
                redis::cmd("LRANGE")
                    .arg(notifications_key(email))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        stored
            .into_iter()
            .map(|json| match serde_json::from_str::<Value>(&json) {
                Ok(value @ Value::Object(_)) => Ok(value),
                Ok(_) | Err(_) => Err(StoreError::Corrupt(format!("notification {json:?}"))),
            })
            .collect()
    }
}
