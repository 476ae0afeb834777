//! Redis DB 0: every key user-service reads or writes is named here, and every group of
//! writes that must happen together is one Lua script.
//!
//! | key | type | content |
//! |---|---|---|
//! | `users:{email}` | string | JSON `{"name", "email", "password"}` (password: argon2id PHC string) |
//! | `outbox:subscriptions` | stream | entries `payload` = JSON `{"email"}` to subscribe |
//!
//! The outbox key deliberately does not match `users:*`, which `ListUsers` scans.

use redis::{AsyncCommands, Script, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use service_runtime::{email::Email, outbox::Outbox};

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

/// `SET NX` of the user and, only if it was created, the subscription outbox entry: the entry
/// exists exactly when the user does. Returns 1 if created, 0 if the key existed.
const CREATE_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
  return 1
end
return 0
";

/// Replaces the user only if its JSON is still what the caller read (compare-and-swap), moving
/// it to `KEYS[2]` if that differs from `KEYS[1]` and enqueuing the new address's subscription
/// in the same step. Returns `ok`, `missing`, `changed` or `taken`.
const UPDATE_SCRIPT: &str = r"
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
    create_script: std::sync::Arc<Script>,
    update_script: std::sync::Arc<Script>,
}

/// How a compare-and-swap update ended.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// The record changed since it was read: read again and retry.
    Changed,
}

fn user_key(email: &str) -> String {
    format!("{USER_PREFIX}{email}")
}

impl Store {
    pub fn new(redis: ConnectionManager, outbox: Outbox) -> Self {
        Self {
            redis,
            outbox,
            create_script: std::sync::Arc::new(Script::new(CREATE_SCRIPT)),
            update_script: std::sync::Arc::new(Script::new(UPDATE_SCRIPT)),
        }
    }

    /// Stores `user` unless its address is taken, and enqueues its subscription atomically with
    /// it. [`Error::AlreadyExists`] leaves the existing record untouched.
    #[tracing::instrument(skip_all, fields(email = %user.email))]
    pub async fn create(&self, user: &UserRecord) -> Result<(), Error> {
        let mut redis = self.redis.clone();
        let created: i64 = self
            .create_script
            .key(user_key(&user.email))
            .key(self.outbox.stream_key())
            .arg(to_json(user)?)
            .arg(Outbox::payload_field())
            .arg(subscription_payload(&user.email)?)
            .invoke_async(&mut redis)
            .await
            .map_err(Error::store("creating the user"))?;
        if created == 1 {
            self.outbox.wake();
            Ok(())
        } else {
            Err(Error::AlreadyExists)
        }
    }

    /// The user's record and its raw JSON (the compare-and-swap token of [`Store::replace`]).
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn get(&self, email: &Email) -> Result<Option<(UserRecord, String)>, Error> {
        let mut redis = self.redis.clone();
        let raw: Option<String> = redis
            .get(user_key(email.as_str()))
            .await
            .map_err(Error::store("reading the user"))?;
        raw.map(|raw| Ok((parse_record(&raw)?, raw))).transpose()
    }

    /// Writes `updated` in place of the record `email` held as `expected` (moving it if the
    /// address changed, and then enqueuing the new address's subscription) — only if nobody
    /// changed it since. [`Error::NotFound`] if it is gone, [`Error::EmailTaken`] if the new
    /// address belongs to someone else.
    #[tracing::instrument(skip_all, fields(%email, new_email = %updated.email))]
    pub async fn replace(
        &self,
        email: &Email,
        expected: &str,
        updated: &UserRecord,
    ) -> Result<UpdateOutcome, Error> {
        let mut redis = self.redis.clone();
        let moved = updated.email != email.as_str();
        let outcome: String = self
            .update_script
            .key(user_key(email.as_str()))
            .key(user_key(&updated.email))
            .key(self.outbox.stream_key())
            .arg(expected)
            .arg(to_json(updated)?)
            .arg(Outbox::payload_field())
            .arg(subscription_payload(&updated.email)?)
            .invoke_async(&mut redis)
            .await
            .map_err(Error::store("updating the user"))?;
        match outcome.as_str() {
            "ok" => {
                if moved {
                    self.outbox.wake();
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

    /// Deletes the user; [`Error::NotFound`] if there was none.
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn delete(&self, email: &Email) -> Result<(), Error> {
        let mut redis = self.redis.clone();
        let deleted: i64 = redis
            .del(user_key(email.as_str()))
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
        let mut redis = self.redis.clone();
        redis
            .exists(user_key(email.as_str()))
            .await
            .map_err(Error::store("checking whether the user exists"))
    }

    /// Every user, ordered by email. SCAN (never KEYS, which blocks Redis) in steps of
    /// [`LIST_BATCH`], each step's values fetched with one MGET. A user deleted between the
    /// two is skipped; a record that does not parse is logged and skipped.
    #[tracing::instrument(skip_all)]
    pub async fn list(&self) -> Result<Vec<UserRecord>, Error> {
        let mut redis = self.redis.clone();
        let pattern = format!("{USER_PREFIX}*");
        let mut cursor: u64 = 0;
        let mut users = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(LIST_BATCH)
                .query_async(&mut redis)
                .await
                .map_err(Error::store("listing users"))?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut redis)
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
