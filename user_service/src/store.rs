//! Redis DB 0: every key user-service reads or writes is named here, and every group of
//! writes that must happen together is one Lua script.
//!
//! | key | type | content |
//! |---|---|---|
//! | `users:{email}` | string | JSON `{"name", "email", "password"}` (password: argon2id PHC string) |
//! | `outbox:subscriptions` | stream | entries `payload` = JSON `{"email"}` to subscribe |
//! | `token_generation:{email}` | string | integer, `INCR`ed when a user moves away from the address (its earlier login tokens stop working); absent = 0 |
//! | `login_failures:{email}` | string | integer: failed logins in the current window, expiring with it (`PEXPIRE` set by the first failure) |
//!
//! The outbox, generation and failure keys deliberately do not match `users:*`, which
//! `ListUsers` scans.

use std::{sync::LazyLock, time::Duration};

use redis::Script;
use serde::{Deserialize, Serialize};
use service_runtime::{
    email::Email,
    outbox::{OutboxStream, PAYLOAD_FIELD},
    redis_store::Redis,
};

use crate::{domain::UserRecord, error::Error};

/// Addresses waiting to be subscribed at notification-service, delivered by
/// [`crate::subscriptions`].
pub const SUBSCRIPTION_OUTBOX: OutboxStream<SubscriptionRequest> =
    OutboxStream::new("outbox:subscriptions", "subscription-delivery");

const USER_PREFIX: &str = "users:";
const TOKEN_GENERATION_PREFIX: &str = "token_generation:";
const LOGIN_FAILURES_PREFIX: &str = "login_failures:";
/// Keys per SCAN step and per MGET when listing users.
const LIST_BATCH: usize = 1000;

/// `SET NX` of the user and, only if it was created, the subscription outbox entry: the entry
/// exists exactly when the user does. Returns the entry's id if created, `exists` if the key
/// was taken.
///
/// A repeat of a create whose reply was lost (see `Redis::invoke`) finds its own JSON, which
/// no other request can produce (the hash has a random salt), and answers `repeat` without a
/// second outbox entry.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user, 2 the outbox; ARGV: 1 user JSON, 2 payload field, 3 payload
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 'repeat' end
return 'exists'
",
    )
});

/// Replaces the user only if its JSON is still what the caller read (compare-and-swap), moving
/// it to `KEYS[2]` if that differs from `KEYS[1]` and enqueuing the new address's subscription
/// in the same step. Returns `ok` (or, after a move, the outbox entry's id), `missing`,
/// `changed` or `taken`.
///
/// Finding the new JSON already in place means this very write already happened (a repeat
/// after a lost reply) and answers `ok`.
/// A move also bumps the old address's token generation (`KEYS[4]`), so tokens issued for it
/// stay dead even if the user later moves back.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user, 2 its new key, 3 the outbox, 4 the token generation of the old address
-- ARGV: 1 JSON read before, 2 new JSON, 3 payload field, 4 payload
if redis.call('GET', KEYS[2]) == ARGV[2] then return 'ok' end
local current = redis.call('GET', KEYS[1])
if not current then return 'missing' end
if current ~= ARGV[1] then return 'changed' end
if KEYS[1] == KEYS[2] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 'ok'
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'taken' end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[4])
return redis.call('XADD', KEYS[3], '*', ARGV[3], ARGV[4])
",
    )
});

/// Counts one login attempt for an address unless it is locked: refuses (answering the lock's
/// remaining milliseconds) when the failures counted in the current window reached the limit,
/// else `INCR`s the count (starting the window's expiry with the first) and answers -1. The
/// attempt is counted before the password is checked, so concurrent guesses cannot slip past
/// the limit; a success deletes the count.
static BEGIN_LOGIN_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the failure count; ARGV: 1 most failures, 2 the window in milliseconds
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return ttl
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return -1
",
    )
});

/// What the subscription worker is asked to do for one entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubscriptionRequest {
    pub email: String,
}

/// How a create ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// Stored, with the subscription outbox entry of this id.
    New { subscription_entry: String },
    /// This very write had happened already (a retry after a lost reply).
    Repeated,
    /// The address belongs to someone already.
    Exists,
}

/// How a compare-and-swap update ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// Written; after a move, with the new address's subscription outbox entry.
    Updated { subscription_entry: Option<String> },
    /// The record changed since it was read: read again and retry.
    Changed,
}

/// Handle to user-service's data; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
}

/// `users:{email}`.
pub fn user_key(email: &str) -> String {
    format!("{USER_PREFIX}{email}")
}

/// `token_generation:{email}`.
pub fn token_generation_key(email: &str) -> String {
    format!("{TOKEN_GENERATION_PREFIX}{email}")
}

/// `login_failures:{email}`.
pub fn login_failures_key(email: &str) -> String {
    format!("{LOGIN_FAILURES_PREFIX}{email}")
}

/// What a password is checked against and a token's version derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The stored argon2id PHC string.
    pub password_hash: String,
    /// The address's token generation.
    pub generation: u64,
}

impl Store {
    /// Stores `user` unless its address is taken, and enqueues its subscription atomically
    /// with it. [`Created::Exists`] leaves the existing record untouched.
    #[tracing::instrument(skip_all, fields(email = %user.email))]
    pub async fn create(&self, user: &UserRecord) -> Result<Created, Error> {
        let mut invocation = CREATE.prepare_invoke();
        invocation
            .key(user_key(&user.email))
            .key(SUBSCRIPTION_OUTBOX.key())
            .arg(to_json(user)?)
            .arg(PAYLOAD_FIELD)
            .arg(subscription_payload(&user.email)?);
        let outcome: String = self
            .redis
            .invoke(&invocation)
            .await
            .map_err(Error::store("creating the user"))?;
        Ok(match outcome.as_str() {
            "exists" => Created::Exists,
            "repeat" => Created::Repeated,
            _ => Created::New {
                subscription_entry: outcome,
            },
        })
    }

    /// The user's record and its raw JSON (the compare-and-swap token of [`Store::replace`]).
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn get(&self, email: &Email) -> Result<Option<(UserRecord, String)>, Error> {
        let raw: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(user_key(email.as_str())))
            .await
            .map_err(Error::store("reading the user"))?;
        raw.map(|raw| Ok((parse_record(&raw)?, raw))).transpose()
    }

    /// Writes `updated` in place of the record `email` held as `expected` (moving it, and
    /// enqueuing the new address's subscription, if the address changed) — only if nobody
    /// changed it since. [`Error::NotFound`] if it is gone, [`Error::EmailTaken`] if the new
    /// address belongs to someone else.
    #[tracing::instrument(skip_all, fields(%email, new_email = %updated.email))]
    pub async fn replace(
        &self,
        email: &Email,
        expected: &str,
        updated: &UserRecord,
    ) -> Result<Replaced, Error> {
        let mut invocation = UPDATE.prepare_invoke();
        invocation
            .key(user_key(email.as_str()))
            .key(user_key(&updated.email))
            .key(SUBSCRIPTION_OUTBOX.key())
            .key(token_generation_key(email.as_str()))
            .arg(expected)
            .arg(to_json(updated)?)
            .arg(PAYLOAD_FIELD)
            .arg(subscription_payload(&updated.email)?);
        let outcome: String = self
            .redis
            .invoke(&invocation)
            .await
            .map_err(Error::store("updating the user"))?;
        match outcome.as_str() {
            "ok" => Ok(Replaced::Updated {
                subscription_entry: None,
            }),
            "changed" => Ok(Replaced::Changed),
            "missing" => Err(Error::NotFound),
            "taken" => Err(Error::EmailTaken),
            _ => Ok(Replaced::Updated {
                subscription_entry: Some(outcome),
            }),
        }
    }

    /// Deletes the user; [`Error::NotFound`] if there was none. (If a reply is lost and the
    /// retried DEL finds nothing, the answer is 404 although this request deleted the user;
    /// the outcome — the user is gone — is the one asked for.)
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn delete(&self, email: &Email) -> Result<(), Error> {
        let deleted: i64 = self
            .redis
            .query(redis::cmd("DEL").arg(user_key(email.as_str())))
            .await
            .map_err(Error::store("deleting the user"))?;
        if deleted == 0 {
            Err(Error::NotFound)
        } else {
            Ok(())
        }
    }

    /// The user's password hash and token generation, read together; `None` if there is no
    /// such user.
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn credentials(&self, email: &Email) -> Result<Option<Credentials>, Error> {
        let (raw, generation): (Option<String>, Option<u64>) = self
            .redis
            .query(
                redis::cmd("MGET")
                    .arg(user_key(email.as_str()))
                    .arg(token_generation_key(email.as_str())),
            )
            .await
            .map_err(Error::store("reading the user's credentials"))?;
        raw.map(|raw| {
            Ok(Credentials {
                password_hash: parse_record(&raw)?.password,
                generation: generation.unwrap_or(0),
            })
        })
        .transpose()
    }

    /// Counts a login attempt for `email` (see [`BEGIN_LOGIN_ATTEMPT`]), or answers how long
    /// the address stays locked when `max_failures` failures are counted already.
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn begin_login_attempt(
        &self,
        email: &Email,
        max_failures: u32,
        window: Duration,
    ) -> Result<Option<Duration>, Error> {
        let mut invocation = BEGIN_LOGIN_ATTEMPT.prepare_invoke();
        invocation
            .key(login_failures_key(email.as_str()))
            .arg(max_failures)
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let locked_ms: i64 = self
            .redis
            .invoke(&invocation)
            .await
            .map_err(Error::store("counting a login attempt"))?;
        Ok(u64::try_from(locked_ms).ok().map(Duration::from_millis))
    }

    /// Forgets the counted login failures of `email` (after a successful login).
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn clear_login_failures(&self, email: &Email) -> Result<(), Error> {
        self.redis
            .query::<()>(redis::cmd("DEL").arg(login_failures_key(email.as_str())))
            .await
            .map_err(Error::store("resetting the login failures"))
    }

    /// Whether a user has this address.
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn exists(&self, email: &Email) -> Result<bool, Error> {
        self.redis
            .query(redis::cmd("EXISTS").arg(user_key(email.as_str())))
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
                .redis
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
                    .redis
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

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|err| anyhow::Error::from(err).into())
}

fn subscription_payload(email: &str) -> Result<String, Error> {
    SUBSCRIPTION_OUTBOX
        .encode(&SubscriptionRequest {
            email: email.to_owned(),
        })
        .map_err(|err| anyhow::Error::from(err).into())
}

fn parse_record(raw: &str) -> Result<UserRecord, Error> {
    serde_json::from_str(raw)
        .map_err(|err| anyhow::anyhow!("stored user is not valid JSON: {err}").into())
}
