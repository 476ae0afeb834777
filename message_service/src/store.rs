//! message-service's data in Redis DB 1. Every key name lives here.
//!
//! | key | type | content |
//! |---|---|---|
//! | `message_id_counter` | string | last id given out (`INCR`) |
//! | `message:{id}` | string | JSON `{"id": <number>, "sender_email", "receiver_email", "content", "timestamp"}` |
//! | `user:{email}:conversations` | set | the user's counterparts |
//! | `conversation:{a}:{b}` | hash | `user_1`, `user_2`, `last_message_id`, `last_timestamp`, `message_count`; `a` < `b` |
//! | `user:{email}:message_ids` | sorted set | additive: ids of the user's messages, scored by id |
//! | `outbox:notifications` | stream | additive: notifications still to be created (JSON `payload`) |
//! | `send_key:{sender}:{key}` | string | additive: the id of the message a `SendMessage` with this idempotency key stored; expires after 24 h |
//!
//! One message is one script run: no reader sees a message without its conversation entries,
//! its index entries or its outbox entry.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Deserializer, Serialize};
use service_runtime::{
    email::{AccountChange, Email},
    error::StoreError,
    outbox::{OutboxStream, PAYLOAD_FIELD},
    redis_store::Redis,
};

pub const MESSAGE_ID_COUNTER: &str = "message_id_counter";
const MESSAGE_KEY_PREFIX: &str = "message:";
/// Notifications still to be created, delivered by [`crate::notify`].
pub const NOTIFICATION_OUTBOX: OutboxStream<NotificationRequest> =
    OutboxStream::new("outbox:notifications", "message-service");

/// How long a send's idempotency key is remembered: a retry within this finds its first.
pub const SEND_KEY_TTL_SECONDS: u64 = 24 * 60 * 60;

/// `send_key:{sender}:{key}`: the message a send with idempotency key `key` stored.
pub fn send_key(sender: &str, key: &str) -> String {
    format!("send_key:{sender}:{key}")
}

/// `message:{id}`.
pub fn message_key(id: u64) -> String {
    format!("{MESSAGE_KEY_PREFIX}{id}")
}

const CONVERSATIONS_BEFORE: &str = "user:";
const CONVERSATIONS_AFTER: &str = ":conversations";
const CONVERSATION_PREFIX: &str = "conversation:";

/// `user:{email}:conversations`.
pub fn conversations_key(email: &str) -> String {
    format!("{CONVERSATIONS_BEFORE}{email}{CONVERSATIONS_AFTER}")
}

/// `user:{email}:message_ids`: a sorted set, so concurrent sends whose ids were taken in one
/// order and stored in another still read back in id order.
pub fn user_messages_key(email: &str) -> String {
    format!("user:{email}:message_ids")
}

/// The pair's hash, `conversation:{first}:{second}`: one per pair whichever way the message
/// goes.
pub fn conversation_key(first: &str, second: &str) -> String {
    format!("{CONVERSATION_PREFIX}{first}:{second}")
}

/// Stores one message (its id already taken from the counter) with everything that belongs to
/// it, atomically, and returns `{'stored', outbox entry id}`. Finding the message already
/// there means this very write happened before (a retry after a lost reply); finding the
/// send's idempotency key means an earlier call stored it (a client's retry): either answers
/// `{'repeat', the stored message's id}` and writes nothing.
static SEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 message, 2 sender's conversations, 3 receiver's conversations, 4 conversation hash,
--       5 sender's index, 6 receiver's index, 7 outbox, 8 the idempotency key's (optional)
-- ARGV: 1 message JSON, 2 id, 3 sender, 4 receiver, 5 user_1, 6 user_2, 7 timestamp,
--       8 payload field, 9 payload, 10 the idempotency key's lifetime in seconds
if KEYS[8] then
  local first = redis.call('GET', KEYS[8])
  if first then return {'repeat', first} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'repeat', ARGV[2]} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[4], 'user_1', ARGV[5], 'user_2', ARGV[6])
local last = tonumber(redis.call('HGET', KEYS[4], 'last_message_id') or '0') or 0
if last < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[4], 'last_message_id', ARGV[2], 'last_timestamp', ARGV[7])
end
redis.call('HINCRBY', KEYS[4], 'message_count', 1)
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[2])
if KEYS[8] then redis.call('SET', KEYS[8], ARGV[2], 'EX', ARGV[10]) end
return {'stored', redis.call('XADD', KEYS[7], '*', ARGV[8], ARGV[9])}
",
    )
});

/// The user's messages in index order, from an id on and at most a number of them, read in
/// one round trip (`MGET` in slices: Lua's `unpack` has a limit on arguments). A missing
/// message comes back as nil.
static MESSAGES_OF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user's index; ARGV: 1 message key prefix, 2 lowest score ('(' id or '-inf'),
--       3 how many (-1: all)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'LIMIT', 0, ARGV[3])
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

/// An address's user is gone or moved (`MessageService.ForgetUser`): returns how many
/// counterparts it had.
///
/// Forgetting (`ARGV[2]` empty) deletes the address's conversations set and message index,
/// every pair hash with a counterpart, and the address from each counterpart's
/// conversations: nothing leads from the address to the old messages, which stay in the
/// counterparts' own indexes (their history). Moving carries all of it to the new address
/// instead: each counterpart's set and pair hash name the new address (a pair hash that
/// exists there already is merged), the index is merged into the new address's, and every
/// indexed message's sender or receiver that was the old address names the new one.
/// Repeating either finds nothing left at the old address and changes nothing.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 old address's conversations, 2 its index, 3 new address's conversations, 4 its
--       index (1 and 2 again when forgetting), 5 the notification outbox
-- ARGV: 1 old address, 2 new address ('' to forget), 3 message key prefix,
--       4 and 5 a user's conversations key before and after the address, 6 pair hash prefix,
--       7 the outbox's payload field
local old, new = ARGV[1], ARGV[2]
local function conversations(email) return ARGV[4] .. email .. ARGV[5] end
local function pair(a, b)
  if a <= b then return ARGV[6] .. a .. ':' .. b, a, b end
  return ARGV[6] .. b .. ':' .. a, b, a
end
if new == old then return 0 end
local counterparts = redis.call('SMEMBERS', KEYS[1])
if new == '' then
  for _, c in ipairs(counterparts) do
    if c ~= old then redis.call('SREM', conversations(c), old) end
    redis.call('DEL', (pair(old, c)))
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  -- Notifications still waiting for the deleted receiver are dropped: delivered later, they
  -- would be stored for whoever signs the address up next.
  for _, entry in ipairs(redis.call('XRANGE', KEYS[5], '-', '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == ARGV[7] then
        local ok, payload = pcall(cjson.decode, fields[i + 1])
        if ok and type(payload) == 'table' and payload.receiver_email == old then
          redis.call('XDEL', KEYS[5], entry[1])
        end
      end
    end
  end
  return #counterparts
end
for _, c in ipairs(counterparts) do
  local target = c
  if c == old then target = new end
  if c ~= old then
    redis.call('SREM', conversations(c), old)
    redis.call('SADD', conversations(c), new)
  end
  redis.call('SADD', KEYS[3], target)
  local from = pair(old, c)
  local to, first, second = pair(new, target)
  if redis.call('EXISTS', from) == 1 then
    if redis.call('EXISTS', to) == 0 then
      redis.call('RENAME', from, to)
    else
      local count = tonumber(redis.call('HGET', from, 'message_count') or '0') or 0
      redis.call('HINCRBY', to, 'message_count', count)
      local last = tonumber(redis.call('HGET', from, 'last_message_id') or '0') or 0
      local mine = tonumber(redis.call('HGET', to, 'last_message_id') or '0') or 0
      if last > mine then
        redis.call('HSET', to, 'last_message_id', last,
          'last_timestamp', redis.call('HGET', from, 'last_timestamp') or '')
      end
      redis.call('DEL', from)
    end
    redis.call('HSET', to, 'user_1', first, 'user_2', second)
  end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local key = ARGV[3] .. id
  local ok, message = pcall(cjson.decode, redis.call('GET', key) or '')
  if ok and type(message) == 'table' then
    local changed = false
    if message.sender_email == old then message.sender_email = new; changed = true end
    if message.receiver_email == old then message.receiver_email = new; changed = true end
    if changed then redis.call('SET', key, cjson.encode(message)) end
  end
  redis.call('ZADD', KEYS[4], id, id)
end
redis.call('DEL', KEYS[1], KEYS[2])
return #counterparts
",
    )
});

/// A message about to be stored: checked at the edge, trusted here.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: Email,
    pub receiver: Email,
    pub content: String,
    /// The client's name for this send (checked by `SendMessage`): a repeat of it
    /// stores nothing.
    pub idempotency_key: Option<String>,
}

/// A message as stored under `message:{id}`: written and read by this one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// A number; a numeric string (as other writers may store it) is read too.
    #[serde(deserialize_with = "number_or_numeric_string")]
    pub id: u64,
    pub sender_email: String,
    pub receiver_email: String,
    pub content: String,
    pub timestamp: String,
}

/// One notification outbox entry: the notification a stored message asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRequest {
    pub notification_id: String,
    pub sender_email: String,
    pub receiver_email: String,
}

/// What [`Store::save`] wrote.
#[derive(Debug)]
pub struct Saved {
    /// The message's id; a repeat's is the first call's.
    pub id: u64,
    /// The notification outbox entry; `None` when this write (or one with the same
    /// idempotency key) had happened already: its entry is the only one.
    pub outbox_entry: Option<String>,
    pub notification: NotificationRequest,
}

/// message-service's storage; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
}

impl Store {
    /// Stores `message` with its conversation entries, index entries and notification outbox
    /// entry, atomically, under a new id from the counter; with an idempotency key already
    /// used by the sender, nothing.
    #[tracing::instrument(skip_all, fields(sender_email = %message.sender, receiver_email = %message.receiver))]
    pub async fn save(&self, message: &NewMessage) -> Result<Saved, StoreError> {
        // Taken first, so the message's JSON is built here by its one serializer. A retried
        // INCR may skip a number; ids stay unique. It does not wait for replicas: the script's
        // own wait below covers it (and an id lost in a failover went with its message).
        let id: u64 = self
            .redis
            .query_unconfirmed(redis::cmd("INCR").arg(MESSAGE_ID_COUNTER))
            .await?;
        let timestamp = service_runtime::time::now_rfc3339();
        let (sender, receiver) = (&message.sender, &message.receiver);
        let (first, second) = if sender <= receiver {
            (sender, receiver)
        } else {
            (receiver, sender)
        };
        let stored = to_json(&StoredMessage {
            id,
            sender_email: sender.to_string(),
            receiver_email: receiver.to_string(),
            content: message.content.clone(),
            timestamp: timestamp.clone(),
        })?;
        let notification = NotificationRequest {
            // Random, so it is new even after Redis lost its data (message ids then restart at
            // 1) and nobody can guess it to pre-empt the notification with a forged one.
            notification_id: uuid::Uuid::new_v4().to_string(),
            sender_email: sender.to_string(),
            receiver_email: receiver.to_string(),
        };
        let payload = NOTIFICATION_OUTBOX
            .encode(&notification)
            .map_err(|err| StoreError::Corrupt(format!("cannot encode JSON: {err}")))?;
        let mut invocation = SEND.prepare_invoke();
        invocation
            .key(message_key(id))
            .key(conversations_key(sender.as_str()))
            .key(conversations_key(receiver.as_str()))
            .key(conversation_key(first.as_str(), second.as_str()))
            .key(user_messages_key(sender.as_str()))
            .key(user_messages_key(receiver.as_str()))
            .key(NOTIFICATION_OUTBOX.key())
            .arg(stored)
            .arg(id)
            .arg(sender.as_str())
            .arg(receiver.as_str())
            .arg(first.as_str())
            .arg(second.as_str())
            .arg(&timestamp)
            .arg(PAYLOAD_FIELD)
            .arg(payload)
            .arg(SEND_KEY_TTL_SECONDS);
        if let Some(key) = &message.idempotency_key {
            invocation.key(send_key(sender.as_str(), key));
        }
        let (outcome, value): (String, String) = self.redis.invoke(&invocation).await?;
        if outcome == "repeat" {
            let id = value
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("send key names {value:?}")))?;
            tracing::info!(message_id = id, "a repeated send: nothing stored");
            return Ok(Saved {
                id,
                outbox_entry: None,
                notification,
            });
        }
        tracing::debug!(message_id = id, "message stored");
        Ok(Saved {
            id,
            outbox_entry: Some(value),
            notification,
        })
    }

    /// The messages `email` sent or received, oldest first, with an id above `after` (all
    /// without it), at most `limit` (all without it); none for an unknown user.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn messages_of(
        &self,
        email: &Email,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut invocation = MESSAGES_OF.prepare_invoke();
        invocation
            .key(user_messages_key(email.as_str()))
            .arg(MESSAGE_KEY_PREFIX)
            .arg(after.map_or_else(|| "-inf".to_owned(), |id| format!("({id}")))
            .arg(limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX)));
        let found: Vec<Option<String>> = self.redis.invoke_read(&invocation).await?;
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
                    .map_err(|err| StoreError::Corrupt(format!("message {json:?}: {err}")))
            })
            .collect()
    }

    /// Forgets `email`'s conversations and message index, or carries them to `moved_to`
    /// (see [`FORGET`]); how many counterparts it had.
    #[tracing::instrument(skip_all, fields(user_email = %change.user))]
    pub async fn forget(&self, change: &AccountChange) -> Result<u64, StoreError> {
        let (email, moved_to) = (&change.user, change.moved_to.as_ref());
        let target = moved_to.unwrap_or(email).as_str();
        let mut invocation = FORGET.prepare_invoke();
        invocation
            .key(conversations_key(email.as_str()))
            .key(user_messages_key(email.as_str()))
            .key(conversations_key(target))
            .key(user_messages_key(target))
            .key(NOTIFICATION_OUTBOX.key())
            .arg(email.as_str())
            .arg(moved_to.map_or("", Email::as_str))
            .arg(MESSAGE_KEY_PREFIX)
            .arg(CONVERSATIONS_BEFORE)
            .arg(CONVERSATIONS_AFTER)
            .arg(CONVERSATION_PREFIX)
            .arg(service_runtime::outbox::PAYLOAD_FIELD);
        Ok(self.redis.invoke(&invocation).await?)
    }

    /// The counterparts `email` has exchanged messages with, sorted; none for an unknown user.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn conversations_of(&self, email: &Email) -> Result<Vec<String>, StoreError> {
        let mut counterparts: Vec<String> = self
            .redis
            .query(redis::cmd("SMEMBERS").arg(conversations_key(email.as_str())))
            .await?;
        counterparts.sort();
        Ok(counterparts)
    }
}

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode JSON: {err}")))
}

fn number_or_numeric_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}
