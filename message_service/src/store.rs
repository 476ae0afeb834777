//! message-service's data in Redis DB 1. Every key name lives here.
//!
//! | key | type | content |
//! |---|---|---|
//! | `message_id_counter` | string | last id given out (`INCR`) |
//! | `message:{id}` | string | JSON `{"id": <number>, "sender_email", "receiver_email", "content", "timestamp"}` |
//! | `user:{email}:conversations` | set | the user's counterparts |
//! | `conversation:{a}:{b}` | hash | `user_1`, `user_2`, `last_message_id`, `last_timestamp`, `message_count`; `a` < `b` |
//! | `user:{email}:messages` | list | additive: ids of the user's messages, ascending |
//! | `outbox:notifications` | stream | additive: notifications still to be created |
//! | `message_request:{uuid}` | string | additive: id stored by one `SendMessage` call, kept 60 s so a retried write is recognised |
//!
//! One message is one script run: no reader sees a message without its conversation entries,
//! its index entries or its outbox entry.

use std::sync::LazyLock;

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Deserializer, Serialize};
use service_runtime::{email::Email, outbox::Outbox, redis_store::retry_transient};

use crate::error::Error;

pub const MESSAGE_ID_COUNTER: &str = "message_id_counter";
const MESSAGE_KEY_PREFIX: &str = "message:";

/// `message:{id}`.
pub fn message_key(id: u64) -> String {
    format!("{MESSAGE_KEY_PREFIX}{id}")
}
/// The stream of notifications still to be created, delivered by [`crate::notify`].
pub const NOTIFICATION_OUTBOX: &str = "outbox:notifications";
/// How long a `SendMessage` call is recognised when its write is retried.
const REQUEST_TTL_SECONDS: u64 = 60;

pub fn conversations_key(email: &str) -> String {
    format!("user:{email}:conversations")
}

pub fn user_messages_key(email: &str) -> String {
    format!("user:{email}:messages")
}

fn request_key(request: &uuid::Uuid) -> String {
    format!("message_request:{request}")
}

/// The pair's hash: one per pair whichever way the message goes.
pub fn conversation_key(first: &str, second: &str) -> String {
    format!("conversation:{first}:{second}")
}

/// Stores one message with everything that belongs to it, atomically. The JSON documents are
/// built by the caller without `"id"`, which only the script knows; it prepends the id.
/// Returns the message's id. A repeated request key (a retry whose first attempt did reach
/// Redis) returns the id already stored and writes nothing.
static SEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: 1 counter, 2 request, 3 sender's conversations, 4 receiver's conversations,
--       5 conversation hash, 6 sender's index, 7 receiver's index, 8 outbox stream
-- ARGV: 1 message key prefix, 2 sender, 3 receiver, 4 message JSON without id,
--       5 outbox payload without id, 6 timestamp, 7 request TTL, 8 user_1, 9 user_2,
--       10 outbox payload field
local repeated = redis.call('GET', KEYS[2])
if repeated then return tonumber(repeated) end
local id = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[1] .. id, '{"id":' .. id .. ',' .. string.sub(ARGV[4], 2))
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[5], 'user_1', ARGV[8], 'user_2', ARGV[9],
           'last_message_id', id, 'last_timestamp', ARGV[6])
redis.call('HINCRBY', KEYS[5], 'message_count', 1)
redis.call('RPUSH', KEYS[6], id)
if KEYS[7] ~= KEYS[6] then redis.call('RPUSH', KEYS[7], id) end
redis.call('XADD', KEYS[8], '*', ARGV[10],
           '{"notification_id":"message-' .. id .. '",' .. string.sub(ARGV[5], 2))
redis.call('SET', KEYS[2], id, 'EX', ARGV[7])
return id
"#,
    )
});

/// The user's messages in index order, read in one round trip (`MGET` in slices: Lua's
/// `unpack` has a limit on arguments). A missing message comes back as nil.
static MESSAGES_OF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user's index; ARGV: 1 message key prefix
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local found = {}
for first = 1, #ids, 1000 do
  local keys = {}
  for i = first, math.min(first + 999, #ids) do keys[#keys + 1] = ARGV[1] .. ids[i] end
  local values = redis.call('MGET', unpack(keys))
  for i = 1, #keys do found[#found + 1] = values[i] end
end
return found
",
    )
});

/// A message about to be stored: checked at the edge, trusted here.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: Email,
    pub receiver: Email,
    pub content: String,
}

/// A message as stored under `message:{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredMessage {
    /// A number in what this port writes; a string is accepted too.
    #[serde(deserialize_with = "number_or_string")]
    pub id: String,
    pub sender_email: String,
    pub receiver_email: String,
    pub content: String,
    pub timestamp: String,
}

#[derive(Serialize)]
struct MessageFields<'a> {
    sender_email: &'a str,
    receiver_email: &'a str,
    content: &'a str,
    timestamp: &'a str,
}

#[derive(Serialize)]
struct OutboxFields<'a> {
    sender_email: &'a str,
    receiver_email: &'a str,
}

/// message-service's storage; cheap to clone.
#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    outbox: Outbox,
}

impl Store {
    pub fn new(redis: ConnectionManager, outbox: Outbox) -> Self {
        Self { redis, outbox }
    }

    /// Stores `message` (with its conversation entries, index entries and notification outbox
    /// entry, atomically), wakes the outbox worker and returns the new id.
    #[tracing::instrument(skip_all, fields(sender_email = %message.sender, receiver_email = %message.receiver))]
    pub async fn save(&self, message: &NewMessage) -> Result<u64, Error> {
        let timestamp = service_runtime::time::now_rfc3339();
        let (sender, receiver) = (&message.sender, &message.receiver);
        let (first, second) = if sender <= receiver {
            (sender, receiver)
        } else {
            (receiver, sender)
        };
        let body = to_json(&MessageFields {
            sender_email: sender.as_str(),
            receiver_email: receiver.as_str(),
            content: &message.content,
            timestamp: &timestamp,
        })?;
        let payload = to_json(&OutboxFields {
            sender_email: sender.as_str(),
            receiver_email: receiver.as_str(),
        })?;
        let request = uuid::Uuid::new_v4();
        let mut invocation = SEND.prepare_invoke();
        invocation
            .key(MESSAGE_ID_COUNTER)
            .key(request_key(&request))
            .key(conversations_key(sender.as_str()))
            .key(conversations_key(receiver.as_str()))
            .key(conversation_key(first.as_str(), second.as_str()))
            .key(user_messages_key(sender.as_str()))
            .key(user_messages_key(receiver.as_str()))
            .key(self.outbox.stream_key())
            .arg(MESSAGE_KEY_PREFIX)
            .arg(sender.as_str())
            .arg(receiver.as_str())
            .arg(body)
            .arg(payload)
            .arg(&timestamp)
            .arg(REQUEST_TTL_SECONDS)
            .arg(first.as_str())
            .arg(second.as_str())
            .arg(Outbox::payload_field());
        let invocation = &invocation;
        let id: u64 = retry_transient(|| {
            let mut redis = self.redis.clone();
            async move { invocation.invoke_async(&mut redis).await }
        })
        .await?;
        self.outbox.wake();
        tracing::debug!(message_id = id, "message stored");
        Ok(id)
    }

    /// Every message `email` sent or received, oldest first; none for an unknown user.
    #[tracing::instrument(skip_all, fields(user_email = email))]
    pub async fn messages_of(&self, email: &str) -> Result<Vec<StoredMessage>, Error> {
        let mut invocation = MESSAGES_OF.prepare_invoke();
        invocation
            .key(user_messages_key(email))
            .arg(MESSAGE_KEY_PREFIX);
        let invocation = &invocation;
        let found: Vec<Option<String>> = retry_transient(|| {
            let mut redis = self.redis.clone();
            async move { invocation.invoke_async(&mut redis).await }
        })
        .await?;
        let listed = found.len();
        let messages: Vec<String> = found.into_iter().flatten().collect();
        if messages.len() < listed {
            // Only a hand-edited database can get here: the index and the messages are
            // written together.
            tracing::warn!(
                missing = listed - messages.len(),
                "indexed messages not found"
            );
        }
        messages
            .into_iter()
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|err| Error::Corrupt(format!("message {json:?}: {err}")))
            })
            .collect()
    }

    /// The counterparts `email` has exchanged messages with, sorted; none for an unknown user.
    #[tracing::instrument(skip_all, fields(user_email = email))]
    pub async fn conversations_of(&self, email: &str) -> Result<Vec<String>, Error> {
        let key = conversations_key(email);
        let mut counterparts: Vec<String> = retry_transient(|| {
            let mut redis = self.redis.clone();
            let key = &key;
            async move { redis.smembers(key).await }
        })
        .await?;
        counterparts.sort();
        Ok(counterparts)
    }
}

fn to_json(value: &impl Serialize) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|err| Error::Corrupt(format!("cannot encode JSON: {err}")))
}

fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Number(n) => n.to_string(),
        Id::Text(text) => text,
    })
}
