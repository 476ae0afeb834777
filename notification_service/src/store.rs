//! notification-service's data in Redis DB 2. Every key name lives here.
//!
//! | key | type | content |
//! |---|---|---|
//! | `subscriptions` | hash | field = email, value = JSON `{"user_email": email, "subscribed": true\|false}` |
//! | `notifications:{email}` | list | JSON `{"sender_email", "receiver_email", "timestamp", "read", "notification_id", "cursor"}`, newest at the head |
//! | `notification_ids:{email}` | set | additive: `<sender> <id>` of the receiver's stored notifications, so a repeat is stored once |
//! | `notification_cursor:{email}` | string | additive: the receiver's last cursor (`INCR`; the first is the time in ms) |
//! | `notification_index:{email}` | sorted set | additive: the cursors in the list (member = score = cursor) |
//! | `notification_unread:{email}` | sorted set | additive: the cursors of unread notifications |
//! | `notification_tombstones:{email}` | sorted set | additive: `<sender> <id>` of deleted and retention-trimmed notifications, score = when the tombstone expires (ms); the key expires with its last tombstone |
//! | `notification_trimmed:{email}` | string | additive: the newest cursor retention trimmed from the list (absent until it trims one), so a live stream resuming from an older cursor is told what it cannot get |
//! | `outbox:frontend` | stream | additive: notifications still to be pushed to frontend-service |
//! | `outbox:frontend:changes` | stream | additive: read-state changes (mark read, delete) still to be pushed to frontend-service |
//!
//! Cursors only grow: a receiver's first cursor is the time in milliseconds and each next one
//! adds 1, so after Redis lost its data the new ones are still larger than any a watcher has
//! seen (unless a receiver got more than one notification per millisecond since its first).
//! They fit the 14 significant digits `cjson` writes numbers with.
//!
//! The list is in cursor order (each create takes the next cursor and pushes at the head in
//! one step), so a notification's position is the number of larger cursors in the index: a
//! page is found without reading the entries before it. Every change (create with its
//! retention trim, mark read, delete) is one script, so concurrent changes never lose an
//! entry, a flag or an index entry. Scripts change stored JSON only through `cjson`.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};
use service_runtime::{
    email::{AccountChange, Email},
    error::StoreError,
    outbox::{OutboxStream, PAYLOAD_FIELD},
    redis_store::Redis,
};

use crate::{change_record::InboxChangeRecord, record::StoredNotification, selection::Selection};

pub const SUBSCRIPTIONS: &str = "subscriptions";
/// Notifications still to be pushed to frontend-service, delivered by [`crate::push`].
pub const FRONTEND_OUTBOX: OutboxStream<StoredNotification> =
    OutboxStream::new("outbox:frontend", "notification-service");
/// Read-state changes still to be pushed to frontend-service, delivered by [`crate::changes`].
pub const FRONTEND_CHANGES: OutboxStream<InboxChangeRecord> =
    OutboxStream::new("outbox:frontend:changes", "notification-service");

pub fn notifications_key(email: &str) -> String {
    format!("notifications:{email}")
}

pub fn notification_ids_key(email: &str) -> String {
    format!("notification_ids:{email}")
}

pub fn notification_cursor_key(email: &str) -> String {
    format!("notification_cursor:{email}")
}

pub fn notification_index_key(email: &str) -> String {
    format!("notification_index:{email}")
}

pub fn notification_unread_key(email: &str) -> String {
    format!("notification_unread:{email}")
}

pub fn notification_tombstones_key(email: &str) -> String {
    format!("notification_tombstones:{email}")
}

pub fn notification_trimmed_key(email: &str) -> String {
    format!("notification_trimmed:{email}")
}

/// How long a deleted or retention-trimmed notification's id is remembered, so a late
/// redelivery of it (a sender's outbox delivering again after a lost reply, a crashed
/// replica's entry claimed by another) is recognised and not stored again with a new cursor.
/// Far longer than any redelivery takes while notification-service is up (seconds: the
/// claim after a crash is 12 s); a sender's outbox that only reaches notification-service
/// after an outage longer than this may store such a notification again.
pub const TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The receiver's keys, in the order every inbox script takes them.
fn inbox_keys(email: &Email) -> [String; 6] {
    let email = email.as_str();
    [
        notifications_key(email),
        notification_index_key(email),
        notification_unread_key(email),
        notification_ids_key(email),
        notification_tombstones_key(email),
        notification_trimmed_key(email),
    ]
}

/// Lua shared by the scripts: the position of cursor `c` in the list, forgetting a removed
/// entry in the indexes and the dedup set (leaving a tombstone for its id), and whether an
/// id has a live tombstone. `@TTL@` is [`TOMBSTONE_TTL`] in milliseconds.
const INBOX_LUA: &str = r"
local list, index, unread, ids, tombstones, trimmed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local tombstone_ttl = @TTL@
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bury(member)
  redis.call('ZADD', tombstones, now_ms() + tombstone_ttl, member)
  redis.call('PEXPIRE', tombstones, tombstone_ttl)
end
local function buried(member)
  local until_ms = redis.call('ZSCORE', tombstones, member)
  return until_ms ~= false and tonumber(until_ms) > now_ms()
end
local function position(c)
  return redis.call('ZCOUNT', index, '(' .. c, '+inf')
end
local function decode(raw)
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' then return entry end
  return nil
end
local function forget(entry)
  if entry.cursor then
    redis.call('ZREM', index, entry.cursor)
    redis.call('ZREM', unread, entry.cursor)
  end
  if entry.sender_email and entry.notification_id then
    local member = entry.sender_email .. ' ' .. entry.notification_id
    redis.call('SREM', ids, member)
    bury(member)
  end
end
";

fn inbox_script(body: &str) -> Script {
    let shared = INBOX_LUA.replace("@TTL@", &TOMBSTONE_TTL.as_millis().to_string());
    Script::new(&format!("{shared}{body}"))
}

/// Stores one notification: returns `{outbox entry id, cursor}`, `{'repeat'}` when the
/// sender's id is stored or was deleted or trimmed within [`TOMBSTONE_TTL`], `{'unsubscribed'}` when the receiver unsubscribed (nothing
/// written then). Then trims the oldest entries beyond the retention count or older than the cutoff.
///
/// Only a record saying `"subscribed": false` stops a notification: a receiver without a
/// record is subscribed (the contract: subscribed from creation on; the record may still be
/// on its way from user-service's outbox), and an unreadable record is not taken as a refusal.
/// Repeats are recognised per sender (`<sender> <id>`), so an id chosen by one caller cannot
/// suppress another sender's notification.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    inbox_script(
        r"
-- KEYS: 1-6 inbox, 7 subscriptions, 8 cursor counter, 9 outbox
-- ARGV: 1 receiver, 2 sender and id, 3 notification JSON, 4 payload field,
--       5 retention count, 6 cutoff timestamp, 7 now in milliseconds
if redis.call('SISMEMBER', ids, ARGV[2]) == 1 then return {'repeat'} end
redis.call('ZREMRANGEBYSCORE', tombstones, '-inf', now_ms())
if buried(ARGV[2]) then return {'repeat'} end
local subscription = redis.call('HGET', KEYS[7], ARGV[1])
if subscription then
  local record = decode(subscription)
  if record and record['subscribed'] == false then return {'unsubscribed'} end
end
local cursor = redis.call('INCR', KEYS[8])
if cursor == 1 then
  cursor = tonumber(ARGV[7])
  redis.call('SET', KEYS[8], cursor)
end
local entry = cjson.decode(ARGV[3])
entry['cursor'] = cursor
local stored = cjson.encode(entry)
redis.call('SADD', ids, ARGV[2])
redis.call('LPUSH', list, stored)
redis.call('ZADD', index, cursor, cursor)
redis.call('ZADD', unread, cursor, cursor)
local keep = tonumber(ARGV[5])
while true do
  local count = redis.call('LLEN', list)
  local tail = redis.call('LINDEX', list, -1)
  local old = tail and decode(tail)
  local expired = old and type(old.timestamp) == 'string' and old.timestamp < ARGV[6]
  if count <= keep and not expired then break end
  redis.call('RPOP', list)
  if old then
    forget(old)
    -- The list is in cursor order: each entry trimmed is newer than the last one.
    if type(old.cursor) == 'number' then redis.call('SET', trimmed, old.cursor) end
  end
end
return {redis.call('XADD', KEYS[9], '*', ARGV[4], stored), cursor}
",
    )
});

/// A page, newest first: `{entries, unread count}`, at most `limit + 1` entries (one more
/// than asked says there is a next page).
static PAGE: LazyLock<Script> = LazyLock::new(|| {
    inbox_script(
        r"
-- ARGV: 1 before (exclusive; '+inf' for the newest), 2 limit + 1, 3 '1' for unread only
local from = ARGV[1] == '+inf' and '+inf' or ('(' .. ARGV[1])
local source = ARGV[3] == '1' and unread or index
local cursors = redis.call('ZREVRANGEBYSCORE', source, from, '-inf', 'LIMIT', 0, ARGV[2])
local entries = {}
if #cursors > 0 and source == index then
  local first = position(cursors[1])
  entries = redis.call('LRANGE', list, first, first + #cursors - 1)
else
  for i, c in ipairs(cursors) do entries[i] = redis.call('LINDEX', list, position(c)) end
end
return {entries, redis.call('ZCARD', unread)}
",
    )
});

/// Oldest first, newer than a cursor (a live feed resuming): `{entries, trimmed through,
/// oldest cursor}`, at most `limit + 1` entries; the two cursors `''` when there is none.
static AFTER: LazyLock<Script> = LazyLock::new(|| {
    inbox_script(
        r"
-- ARGV: 1 after (exclusive), 2 limit + 1
local oldest = redis.call('ZRANGE', index, 0, 0)[1] or ''
local through = redis.call('GET', trimmed) or ''
local cursors = redis.call('ZRANGEBYSCORE', index, '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #cursors == 0 then return {{}, through, oldest} end
local first = position(cursors[1])
local entries = redis.call('LRANGE', list, first - #cursors + 1, first)
local ascending = {}
for i = #entries, 1, -1 do ascending[#ascending + 1] = entries[i] end
return {ascending, through, oldest}
",
    )
});

/// Marks the given ids read (none: every unread one): `{marked, unread count, change outbox
/// entry}` (the entry `''` when nothing changed).
static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    inbox_script(
        r"
-- KEYS: 1-6 inbox, 7 change outbox
-- ARGV: 1 payload field, 2 change payload, 3.. ids (none: all)
local wanted, named = {}, #ARGV - 2
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local marked = 0
for _, c in ipairs(redis.call('ZRANGE', unread, 0, -1)) do
  local at = position(c)
  local entry = decode(redis.call('LINDEX', list, at) or '')
  if entry and (named == 0 or wanted[entry.notification_id]) then
    entry['read'] = true
    redis.call('LSET', list, at, cjson.encode(entry))
    redis.call('ZREM', unread, c)
    marked = marked + 1
  end
end
local change = ''
if marked > 0 then change = redis.call('XADD', KEYS[7], '*', ARGV[1], ARGV[2]) end
return {marked, redis.call('ZCARD', unread), change}
",
    )
});

/// Deletes the given ids (none: all of the receiver's): `{deleted, change outbox entry}` (the
/// entry `''` when nothing was deleted).
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    inbox_script(
        r"
-- KEYS: 1-6 inbox, 7 change outbox
-- ARGV: 1 payload field, 2 change payload, 3.. ids (none: all)
local wanted, named = {}, #ARGV - 2
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local doomed = {}
for _, raw in ipairs(redis.call('LRANGE', list, 0, -1)) do
  local entry = decode(raw)
  if named == 0 or (entry and wanted[entry.notification_id]) then
    doomed[#doomed + 1] = raw
    if entry then forget(entry) end
  end
end
for _, raw in ipairs(doomed) do redis.call('LREM', list, 1, raw) end
local change = ''
if #doomed > 0 then change = redis.call('XADD', KEYS[7], '*', ARGV[1], ARGV[2]) end
return {#doomed, change}
",
    )
});

/// An address's user is gone or moved (`NotificationService.ForgetUser`): returns how many
/// notifications were removed or carried.
///
/// Forgetting (`ARGV[2]` empty) deletes the address's list, indexes, dedup set and cursor.
/// Moving carries them to the new address: when that has none yet
/// (the usual case) the entries keep their cursors and only `receiver_email` changes; when it
/// received notifications already (the move was delivered late), the carried ones are added
/// oldest first after them with the new address's next cursors. The old address's
/// subscription is recorded as off (the move subscribes the new address through
/// user-service's outbox; a sign-up at the old address subscribes it again).
/// Repeating either finds nothing left at the old address and changes nothing.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1-5 the old address's list, index, unread, ids, cursor; 6-10 the new address's (the
--       old ones again when forgetting); 11 subscriptions; 12, 13 the old and the new
--       address's retention mark
-- ARGV: 1 old address, 2 new address ('' to forget), 3 now in milliseconds, 4 the old
--       address's subscription as unsubscribed (JSON)
local function decode(raw)
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' then return entry end
  return nil
end
local moved = 0
if ARGV[2] ~= '' and ARGV[2] ~= ARGV[1] then
  local entries = redis.call('LRANGE', KEYS[1], 0, -1)
  if redis.call('EXISTS', KEYS[6]) == 0 and redis.call('EXISTS', KEYS[7]) == 0 then
    for _, raw in ipairs(entries) do
      local entry = decode(raw)
      if entry then
        entry['receiver_email'] = ARGV[2]
        raw = cjson.encode(entry)
      end
      redis.call('RPUSH', KEYS[6], raw)
    end
    for _, pair in ipairs({{2, 7}, {3, 8}, {4, 9}, {12, 13}}) do
      if redis.call('EXISTS', KEYS[pair[1]]) == 1 then
        redis.call('RENAME', KEYS[pair[1]], KEYS[pair[2]])
      end
    end
    local old = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
    local new = tonumber(redis.call('GET', KEYS[10]) or '0') or 0
    if old > new then redis.call('SET', KEYS[10], old) end
    moved = #entries
  else
    for i = #entries, 1, -1 do
      local entry = decode(entries[i])
      if entry then
        local cursor = redis.call('INCR', KEYS[10])
        if cursor == 1 then
          cursor = tonumber(ARGV[3])
          redis.call('SET', KEYS[10], cursor)
        end
        entry['cursor'] = cursor
        entry['receiver_email'] = ARGV[2]
        redis.call('LPUSH', KEYS[6], cjson.encode(entry))
        redis.call('ZADD', KEYS[7], cursor, cursor)
        if entry['read'] ~= true then redis.call('ZADD', KEYS[8], cursor, cursor) end
        if entry.sender_email and entry.notification_id then
          redis.call('SADD', KEYS[9], entry.sender_email .. ' ' .. entry.notification_id)
        end
        moved = moved + 1
      end
    end
  end
elseif ARGV[2] == '' then
  moved = redis.call('LLEN', KEYS[1])
end
if ARGV[2] ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[12])
  -- Recorded as unsubscribed rather than removed (no record means subscribed): a notification
  -- for the address that arrives late is refused, not kept for its next owner, whose sign-up
  -- subscribes it again.
  redis.call('HSET', KEYS[11], ARGV[1], ARGV[4])
end
return moved
",
    )
});

/// The invocation of [`MARK_READ`] or [`DELETE`] for `change`.
fn change_script<'a>(
    script: &'a Script,
    email: &Email,
    change: &InboxChangeRecord,
) -> Result<redis::ScriptInvocation<'a>, StoreError> {
    let payload = FRONTEND_CHANGES
        .encode(change)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode a change: {err}")))?;
    let mut invocation = script.prepare_invoke();
    for key in inbox_keys(email) {
        invocation.key(key);
    }
    invocation
        .key(FRONTEND_CHANGES.key())
        .arg(PAYLOAD_FIELD)
        .arg(payload);
    for id in &change.notification_ids {
        invocation.arg(id);
    }
    Ok(invocation)
}

fn changed(count: u64, entry: String, change: InboxChangeRecord) -> Changed {
    Changed {
        count,
        queued: (!entry.is_empty()).then_some((entry, change)),
    }
}

/// A `subscriptions` value.
#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    user_email: String,
    subscribed: bool,
}

/// The `subscriptions` value of an address nobody holds any more.
fn unsubscribed(email: &Email) -> Result<String, StoreError> {
    let subscription = Subscription {
        user_email: email.as_str().to_owned(),
        subscribed: false,
    };
    serde_json::to_string(&subscription).map_err(|err| StoreError::Corrupt(err.to_string()))
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

/// How much each receiver keeps: the newest `count`, none older than `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct Retention {
    /// Notifications kept per receiver (the newest).
    #[arg(
        long = "notification-retention-count",
        env = "NOTIFICATION_RETENTION_COUNT",
        default_value_t = 1000
    )]
    pub count: u64,
    /// Days a notification is kept.
    #[arg(
        long = "notification-retention-days",
        env = "NOTIFICATION_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub days: u64,
}

/// One page of a receiver's notifications.
#[derive(Debug)]
pub struct Page {
    pub notifications: Vec<StoredNotification>,
    /// The cursor to continue from; `None` on the last page.
    pub next_cursor: Option<u64>,
    pub unread_count: u64,
    /// After a cursor only: how far retention trimmed, and the oldest cursor still stored.
    pub trimmed_through: Option<u64>,
    pub oldest_cursor: Option<u64>,
}

/// What a change of read state did, and its entry in [`FRONTEND_CHANGES`] (`None` when
/// nothing changed, so there is nothing to tell).
#[derive(Debug)]
pub struct Changed {
    /// How many notifications were marked read or deleted.
    pub count: u64,
    /// The outbox entry and the change it carries.
    pub queued: Option<(String, InboxChangeRecord)>,
}

/// Which page of a receiver's notifications.
#[derive(Debug, Clone, Copy)]
pub enum PageOf {
    /// Newest first, older than `before` (from the newest without it).
    Before {
        before: Option<u64>,
        unread_only: bool,
    },
    /// Oldest first, newer than `after`.
    After(u64),
}

/// notification-service's storage; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
    pub retention: Retention,
}

impl Store {
    /// Stores a notification for `receiver` if they are subscribed and `notification_id` is
    /// not a repeat of `sender`'s, queues its push to frontend-service and applies the
    /// retention, atomically.
    #[tracing::instrument(skip_all, fields(receiver_email = %receiver, notification_id))]
    pub async fn create(
        &self,
        receiver: &Email,
        sender: &Email,
        notification_id: String,
    ) -> Result<Created, StoreError> {
        tracing::Span::current().record("notification_id", notification_id.as_str());
        let now = chrono::Utc::now();
        // A century is "forever" here, and keeps the date arithmetic in range.
        let days = i64::try_from(self.retention.days.min(36_500)).unwrap_or(36_500);
        let cutoff = now - chrono::Duration::days(days);
        let mut notification = StoredNotification {
            sender_email: Some(sender.to_string()),
            receiver_email: Some(receiver.to_string()),
            timestamp: Some(service_runtime::time::rfc3339(now)),
            read: Some(false),
            notification_id: Some(notification_id.clone()),
            ..StoredNotification::default()
        };
        let json = FRONTEND_OUTBOX
            .encode(&notification)
            .map_err(|err| StoreError::Corrupt(format!("cannot encode a notification: {err}")))?;
        let mut invocation = CREATE.prepare_invoke();
        for key in inbox_keys(receiver) {
            invocation.key(key);
        }
        invocation
            .key(SUBSCRIPTIONS)
            .key(notification_cursor_key(receiver.as_str()))
            .key(FRONTEND_OUTBOX.key())
            .arg(receiver.as_str())
            .arg(format!("{sender} {notification_id}"))
            .arg(json)
            .arg(PAYLOAD_FIELD)
            .arg(self.retention.count.max(1))
            .arg(service_runtime::time::rfc3339(cutoff))
            .arg(now.timestamp_millis());
        let outcome: Vec<String> = self.redis.invoke(&invocation).await?;
        Ok(match outcome.as_slice() {
            [repeat] if repeat == "repeat" => Created::Repeated,
            [outbox_entry, cursor] => {
                notification.cursor = cursor.parse().ok();
                Created::New {
                    notification,
                    outbox_entry: outbox_entry.clone(),
                }
            }
            _ => Created::NotSubscribed,
        })
    }

    /// A page of `email`'s notifications, at most `limit` of them.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn page(&self, email: &Email, of: PageOf, limit: usize) -> Result<Page, StoreError> {
        let (script, args): (&Script, Vec<String>) = match of {
            PageOf::Before {
                before,
                unread_only,
            } => (
                &PAGE,
                vec![
                    before.map_or_else(|| "+inf".to_owned(), |c| c.to_string()),
                    (limit + 1).to_string(),
                    if unread_only { "1" } else { "0" }.to_owned(),
                ],
            ),
            PageOf::After(after) => (&AFTER, vec![after.to_string(), (limit + 1).to_string()]),
        };
        let mut invocation = script.prepare_invoke();
        for key in inbox_keys(email) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let cursor = |raw: String| raw.parse::<u64>().ok();
        let (mut raw, unread_count, trimmed_through, oldest_cursor) = match of {
            PageOf::Before { .. } => {
                let (raw, unread): (Vec<String>, u64) = self.redis.invoke_read(&invocation).await?;
                (raw, unread, None, None)
            }
            PageOf::After(_) => {
                let (raw, through, oldest): (Vec<String>, String, String) =
                    self.redis.invoke_read(&invocation).await?;
                (raw, 0, cursor(through), cursor(oldest))
            }
        };
        let more = raw.len() > limit;
        raw.truncate(limit);
        let notifications = raw
            .iter()
            .map(|json| StoredNotification::parse(json))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if more {
            notifications.last().and_then(|last| last.cursor)
        } else {
            None
        };
        Ok(Page {
            notifications,
            next_cursor,
            unread_count,
            trimmed_through,
            oldest_cursor,
        })
    }

    /// Marks the selected of `email`'s notifications read, recording the change for the
    /// live streams in the same step; what changed, and how many are still unread.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn mark_read(
        &self,
        email: &Email,
        which: &Selection,
    ) -> Result<(Changed, u64), StoreError> {
        let change = InboxChangeRecord::read(email, which);
        let (count, unread, entry): (u64, u64, String) = self
            .redis
            .invoke(&change_script(&MARK_READ, email, &change)?)
            .await?;
        Ok((changed(count, entry, change), unread))
    }

    /// Deletes the selected of `email`'s notifications, recording the change for the live
    /// streams in the same step.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn delete(&self, email: &Email, which: &Selection) -> Result<Changed, StoreError> {
        let change = InboxChangeRecord::deleted(email, which);
        let (count, entry): (u64, String) = self
            .redis
            .invoke(&change_script(&DELETE, email, &change)?)
            .await?;
        Ok(changed(count, entry, change))
    }

    /// How many of `email`'s notifications are unread; with `up_to`, among those up to that
    /// cursor (inclusive).
    pub async fn unread_count(&self, email: &Email, up_to: Option<u64>) -> Result<u64, StoreError> {
        let key = notification_unread_key(email.as_str());
        let command = match up_to {
            None => redis::cmd("ZCARD").arg(key).clone(),
            Some(up_to) => redis::cmd("ZCOUNT").arg(key).arg("-inf").arg(up_to).clone(),
        };
        Ok(self.redis.query(&command).await?)
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

    /// Forgets everything `email` has here, or carries it to `moved_to` (see [`FORGET`]);
    /// how many notifications were removed or carried.
    #[tracing::instrument(skip_all, fields(user_email = %change.user, moved_to))]
    pub async fn forget(&self, change: &AccountChange) -> Result<u64, StoreError> {
        let (email, moved_to) = (&change.user, change.moved_to.as_ref());
        if let Some(moved_to) = moved_to {
            tracing::Span::current().record("moved_to", moved_to.as_str());
        }
        let keys = |email: &str| {
            [
                notifications_key(email),
                notification_index_key(email),
                notification_unread_key(email),
                notification_ids_key(email),
                notification_cursor_key(email),
            ]
        };
        let mut invocation = FORGET.prepare_invoke();
        for key in keys(email.as_str())
            .into_iter()
            .chain(keys(moved_to.unwrap_or(email).as_str()))
        {
            invocation.key(key);
        }
        invocation
            .key(SUBSCRIPTIONS)
            .key(notification_trimmed_key(email.as_str()))
            .key(notification_trimmed_key(moved_to.unwrap_or(email).as_str()))
            .arg(email.as_str())
            .arg(moved_to.map_or("", Email::as_str))
            .arg(chrono::Utc::now().timestamp_millis())
            .arg(unsubscribed(email)?);
        Ok(self.redis.invoke(&invocation).await?)
    }

    /// Every notification of the receiver, newest first, as stored.
    #[tracing::instrument(skip_all, fields(user_email = %email))]
    pub async fn notifications_of(
        &self,
        email: &Email,
    ) -> Result<Vec<StoredNotification>, StoreError> {
        let stored: Vec<String> = self
            .redis
            .query(
                redis::cmd("LRANGE")
                    .arg(notifications_key(email.as_str()))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        stored
            .iter()
            .map(|json| StoredNotification::parse(json))
            .collect()
    }
}
