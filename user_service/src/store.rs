//! Redis DB 0: every key user-service reads or writes is named here, and every group of
//! writes that must happen together is one Lua script.
//!
//! | key | type | content |
//! |---|---|---|
//! | `users:{email}` | string | JSON `{"name", "email", "password"}` (password: argon2id PHC string) |
//! | `outbox:subscriptions` | stream | entries `payload` = JSON `{"email"}` to subscribe |
//!
//! The outbox key deliberately does not match `users:*`, which `ListUsers` scans.

use std::{sync::Arc, time::Duration};

use redis::{Cmd, FromRedisValue, RedisResult, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use service_runtime::{
    email::Email,
    outbox::{DeliveryWaiter, Outbox},
    redis_store::retry_transient,
};

use crate::{domain::UserRecord, error::Error};

/// The stream of addresses waiting to be subscribed at notification-service.
pub const SUBSCRIPTION_OUTBOX: &str = "outbox:subscriptions";
/// The consumer group delivering [`SUBSCRIPTION_OUTBOX`].
pub const SUBSCRIPTION_OUTBOX_GROUP: &str = "subscription-delivery";

const USER_PREFIX: &str = "users:";
/// Keys per SCAN step and per MGET when listing users.
const LIST_BATCH: usize = 1000;
/// Compare-and-swap attempts of an update before giving up with [`Error::Conflict`].
const UPDATE_ATTEMPTS: usize = 10;
/// How long a create (or a move to a new address) waits for its subscription to reach
/// notification-service before answering anyway. Normally delivery takes milliseconds, so the
/// answer means "subscribed" and a client may message the user at once; when
/// notification-service is down the answer comes after this long, the outbox entry stays, and
/// the subscription lands once notification-service is back. Short, because a create must not
/// hang on a peer that is down.
pub const SUBSCRIPTION_WAIT: Duration = Duration::from_secs(2);

/// `SET NX` of the user and, only if it was created, the subscription outbox entry: the entry
/// exists exactly when the user does. Returns 1 if created, 0 if the key existed.
///
/// A repeat of a create whose reply was lost (see `retry_transient`) finds its own JSON, which
/// no other request can produce (the hash has a random salt), and answers 1 without a second
/// outbox entry.
const CREATE_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
";

/// Replaces the user only if its JSON is still what the caller read (compare-and-swap), moving
/// it to `KEYS[2]` if that differs from `KEYS[1]` and enqueuing the new address's subscription
/// in the same step. Returns `ok`, `missing`, `changed` or `taken`.
///
/// Finding the new JSON already in place means this very write already happened (a repeat
/// after a lost reply) and answers `ok`.
const UPDATE_SCRIPT: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[2] then return 'ok' end
local current = redis.call('GET', KEYS[1])
if not current then return 'missing' end
if current ~= ARGV[1] then return 'changed' end
if KEYS[1] ~= KEYS[2] then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 'taken' end
  redis.call('DEL', KEYS[1])
  redis.call('XADD', KEYS[3], '*', ARGV[3], ARGV[4])
end
redis.call('SET', KEYS[2], ARGV[2])
return 'ok'
";

/// What the subscription worker is asked to do for one entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubscriptionRequest {
    pub email: String,
}

/// Handle to user-service's data; cheap to clone.
#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    outbox: Outbox,
    create_script: Arc<Script>,
    update_script: Arc<Script>,
}

/// How a compare-and-swap update ended.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// The record changed since it was read: read again and retry.
    Changed,
}

pub fn user_key(email: &str) -> String {
    format!("{USER_PREFIX}{email}")
}

impl Store {
    pub fn new(redis: ConnectionManager, outbox: Outbox) -> Self {
        Self {
            redis,
            outbox,
            create_script: Arc::new(Script::new(CREATE_SCRIPT)),
            update_script: Arc::new(Script::new(UPDATE_SCRIPT)),
        }
    }

    /// Runs `cmd`, retried across a reconnect (every command sent this way is idempotent).
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        retry_transient(|| {
            let mut redis = self.redis.clone();
            let cmd = cmd.clone();
            async move { cmd.query_async(&mut redis).await }
        })
        .await
    }

    /// Stores `user` unless its address is taken, and enqueues its subscription atomically with
    /// it; then waits (at most [`SUBSCRIPTION_WAIT`]) for that subscription to be delivered.
    /// [`Error::AlreadyExists`] leaves the existing record untouched.
    #[tracing::instrument(skip_all, fields(email = %user.email))]
    pub async fn create(&self, user: &UserRecord) -> Result<(), Error> {
        let (key, record) = (user_key(&user.email), to_json(user)?);
        let payload = subscription_payload(&user.email)?;
        // Before the write, so the delivery cannot come first. The payload names the address,
        // which no other pending create has (the SET NX decides that).
        let subscription = self.outbox.watch_delivery(&payload);
        let created: i64 = retry_transient(|| {
            let mut redis = self.redis.clone();
            let mut invocation = self.create_script.prepare_invoke();
            invocation
                .key(&key)
                .key(self.outbox.stream_key())
                .arg(&record)
                .arg(Outbox::payload_field())
                .arg(&payload);
            async move { invocation.invoke_async(&mut redis).await }
        })
        .await
        .map_err(Error::store("creating the user"))?;
        if created == 1 {
            self.outbox.wake();
            await_subscription(subscription, &user.email).await;
            Ok(())
        } else {
            Err(Error::AlreadyExists)
        }
    }

    /// The user's record and its raw JSON (the compare-and-swap token of [`Store::replace`]).
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn get(&self, email: &Email) -> Result<Option<(UserRecord, String)>, Error> {
        let raw: Option<String> = self
            .query(redis::cmd("GET").arg(user_key(email.as_str())))
            .await
            .map_err(Error::store("reading the user"))?;
        raw.map(|raw| Ok((parse_record(&raw)?, raw))).transpose()
    }

    /// Writes `updated` in place of the record `email` held as `expected` (moving it if the
    /// address changed, and then enqueuing the new address's subscription and waiting for it
    /// as [`Store::create`] does) — only if nobody changed it since. [`Error::NotFound`] if it is gone, [`Error::EmailTaken`] if the new
    /// address belongs to someone else.
    #[tracing::instrument(skip_all, fields(%email, new_email = %updated.email))]
    pub async fn replace(
        &self,
        email: &Email,
        expected: &str,
        updated: &UserRecord,
    ) -> Result<UpdateOutcome, Error> {
        let moved = updated.email != email.as_str();
        let (old_key, new_key) = (user_key(email.as_str()), user_key(&updated.email));
        let record = to_json(updated)?;
        let payload = subscription_payload(&updated.email)?;
        let subscription = moved.then(|| self.outbox.watch_delivery(&payload));
        let outcome: String = retry_transient(|| {
            let mut redis = self.redis.clone();
            let mut invocation = self.update_script.prepare_invoke();
            invocation
                .key(&old_key)
                .key(&new_key)
                .key(self.outbox.stream_key())
                .arg(expected)
                .arg(&record)
                .arg(Outbox::payload_field())
                .arg(&payload);
            async move { invocation.invoke_async(&mut redis).await }
        })
        .await
        .map_err(Error::store("updating the user"))?;
        match outcome.as_str() {
            "ok" => {
                if let Some(subscription) = subscription {
                    self.outbox.wake();
                    await_subscription(subscription, &updated.email).await;
                }
                Ok(UpdateOutcome::Updated)
            }
            "changed" => Ok(UpdateOutcome::Changed),
            "missing" => Err(Error::NotFound),
            "taken" => Err(Error::EmailTaken),
            other => Err(anyhow::anyhow!("update script answered {other:?}").into()),
        }
    }

    /// How many times [`Store::replace`] is tried before the update gives up.
    pub const fn update_attempts() -> usize {
        UPDATE_ATTEMPTS
    }

    /// Deletes the user; [`Error::NotFound`] if there was none. (If a reply is lost and the
    /// retried DEL finds nothing, the answer is 404 although this request deleted the user;
    /// the outcome — the user is gone — is the one asked for.)
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn delete(&self, email: &Email) -> Result<(), Error> {
        let deleted: i64 = self
            .query(redis::cmd("DEL").arg(user_key(email.as_str())))
            .await
            .map_err(Error::store("deleting the user"))?;
        if deleted == 0 {
            Err(Error::NotFound)
        } else {
            Ok(())
        }
    }

    /// Whether a user has this address.
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn exists(&self, email: &Email) -> Result<bool, Error> {
        self.query(redis::cmd("EXISTS").arg(user_key(email.as_str())))
            .await
            .map_err(Error::store("checking whether the user exists"))
    }

    /// Every user, ordered by email. SCAN (never KEYS, which blocks Redis) in steps of
    /// [`LIST_BATCH`], each step's values fetched with one MGET. A user deleted between the
    /// two is skipped; a record that does not parse is logged and skipped.
    #[tracing::instrument(skip_all)]
    pub async fn list(&self) -> Result<Vec<UserRecord>, Error> {
        let pattern = format!("{USER_PREFIX}*");
        let mut cursor: u64 = 0;
        let mut users = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(LIST_BATCH),
                )
                .await
                .map_err(Error::store("listing users"))?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = self
                    .query(redis::cmd("MGET").arg(&keys))
                    .await
                    .map_err(Error::store("reading users"))?;
                for (key, value) in keys.iter().zip(values) {
                    let Some(raw) = value else { continue };
                    match parse_record(&raw) {
                        Ok(user) => users.push(user),
                        Err(_) => tracing::error!(key, "stored user does not parse; skipped"),
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        users.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(users)
    }
}

/// Waits for a just-enqueued subscription, at most [`SUBSCRIPTION_WAIT`]. The entry is durable
/// either way, so a late one only costs the caller the wait.
async fn await_subscription(subscription: DeliveryWaiter, email: &str) {
    if !subscription.wait(SUBSCRIPTION_WAIT).await {
        tracing::warn!(
            email,
            wait = ?SUBSCRIPTION_WAIT,
            "subscription not confirmed in time; answering now, the outbox delivers it later"
        );
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|err| anyhow::Error::from(err).into())
}

fn subscription_payload(email: &str) -> Result<String, Error> {
    to_json(&SubscriptionRequest {
        email: email.to_owned(),
    })
}

fn parse_record(raw: &str) -> Result<UserRecord, Error> {
    serde_json::from_str(raw)
        .map_err(|err| anyhow::anyhow!("stored user is not valid JSON: {err}").into())
}
