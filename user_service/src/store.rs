//! Redis DB 0: every key user-service reads or writes is named here, and every group of
//! writes that must happen together is one Lua script.
//!
//! | key | type | content |
//! |---|---|---|
//! | `users:{email}` | string | JSON `{"name", "email", "password"}` (password: argon2id PHC string) |
//! | `outbox:subscriptions` | stream | entries `payload` = JSON `{"email"}` to subscribe |
//! | `token_generation:{email}` | string | integer, `INCR`ed when a user moves away from the address (its earlier login tokens stop working); absent = 0 |
//! | `login_failures:{email}` | string | integer: failed logins in the current window, expiring with it (`PEXPIRE` set by the first failure) |
//! | `outbox:accounts` | stream | entries `payload` = JSON `{"change_id", "email", "moved_to"?}`: a deleted or moved account whose data the other services still have to forget or carry |
//! | `account_change:{email}` | string | the `change_id` of the address's undelivered account change: while it exists the address can be neither signed up for nor moved to, moved from or deleted |
//!
//! The outbox, generation, failure and change keys deliberately do not match `users:*`, which
//! `ListUsers` scans.
//!
//! A token generation outlives its user only as long as a token issued before its last bump
//! can (`AUTH_TOKEN_TTL` plus a margin): the scripts that move a user away or delete it
//! `PEXPIRE` it, the ones that bring a user to the address `PERSIST` it.

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
const ACCOUNT_CHANGE_PREFIX: &str = "account_change:";

/// Deleted and moved accounts whose data notification- and message-service still have to
/// forget or carry, delivered by [`crate::lifecycle`].
pub const ACCOUNT_OUTBOX: OutboxStream<AccountChange> =
    OutboxStream::new("outbox:accounts", "account-delivery");
/// Keys per SCAN step and per MGET when listing users.
const LIST_BATCH: usize = 1000;

/// `SET NX` of the user and, only if it was created, the subscription outbox entry: the entry
/// exists exactly when the user does. Returns the entry's id if created, `exists` if the key
/// was taken.
///
/// A repeat of a create whose reply was lost (see `Redis::invoke`) finds its own JSON, which
/// no other request can produce (the hash has a random salt), and answers `repeat` without a
/// second outbox entry.
///
/// An address whose previous account change is not delivered yet answers `pending`: the
/// newcomer waits until the previous owner's data is gone.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user, 2 the outbox, 3 the address's pending account change, 4 its token
--       generation
-- ARGV: 1 user JSON, 2 payload field, 3 payload
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return 'repeat' end
if current then return 'exists' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'pending' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PERSIST', KEYS[4])
return redis.call('XADD', KEYS[2], '*', ARGV[2], ARGV[3])
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
/// A move also bumps the old address's token generation (`KEYS[4]`, expiring once no token
/// issued before can be alive), so tokens issued for it stay dead even if the user later
/// moves back, and writes the account change that carries the user's notifications and
/// messages to the new address (`KEYS[7]`), marking both addresses as changing until it is
/// delivered. A move from or to an address with an undelivered change answers `pending`.
/// Returns `{'ok'}`, `{'missing'}`, `{'changed'}`, `{'taken'}`, `{'pending'}` or, after a
/// move, `{subscription entry id, account change entry id}`.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user, 2 its new key, 3 the subscription outbox, 4 the token generation of the
--       old address, 5 the new address's token generation, 6 the old address's pending
--       change, 7 the new address's pending change, 8 the account outbox
-- ARGV: 1 JSON read before, 2 new JSON, 3 payload field, 4 subscription payload,
--       5 token generation lifetime (ms), 6 change id, 7 account change payload
if redis.call('GET', KEYS[2]) == ARGV[2] then return {'ok'} end
local current = redis.call('GET', KEYS[1])
if not current then return {'missing'} end
if current ~= ARGV[1] then return {'changed'} end
if KEYS[1] == KEYS[2] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {'ok'}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'taken'} end
if redis.call('EXISTS', KEYS[6]) == 1 or redis.call('EXISTS', KEYS[7]) == 1 then
  return {'pending'}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
redis.call('PERSIST', KEYS[5])
redis.call('SET', KEYS[6], ARGV[6])
redis.call('SET', KEYS[7], ARGV[6])
local subscription = redis.call('XADD', KEYS[3], '*', ARGV[3], ARGV[4])
return {subscription, redis.call('XADD', KEYS[8], '*', ARGV[3], ARGV[7])}
",
    )
});

/// Deletes the user, bumps the address's token generation (expiring once no token issued
/// before can be alive), marks the address as changing and writes the account change that
/// makes the other services forget it — one step. Returns the entry's id, `missing` or
/// `pending` (an earlier change of the address is not delivered yet).
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 the user, 2 its token generation, 3 its pending change, 4 the account outbox
-- ARGV: 1 token generation lifetime (ms), 2 change id, 3 payload field, 4 payload
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'pending' end
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return redis.call('XADD', KEYS[4], '*', ARGV[3], ARGV[4])
",
    )
});

/// Ends an account change once both peers confirmed it: deletes the addresses' change
/// markers that still name it (a marker naming another change is left alone).
static FINISH_CHANGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: the change's markers; ARGV: 1 change id
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
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

/// One account outbox entry: the user at `email` is gone (deleted), or moved to `moved_to`.
/// `change_id` (random) is also the value of the addresses' `account_change:` markers, so a
/// repeated delivery of a change already finished is recognised and skipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountChange {
    pub change_id: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

impl AccountChange {
    fn new(email: &str, moved_to: Option<&str>) -> Self {
        Self {
            change_id: uuid::Uuid::new_v4().to_string(),
            email: email.to_owned(),
            moved_to: moved_to.map(str::to_owned),
        }
    }

    /// The markers of the addresses this change touches.
    fn marker_keys(&self) -> Vec<String> {
        std::iter::once(&self.email)
            .chain(&self.moved_to)
            .map(|email| account_change_key(email))
            .collect()
    }
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
    /// Written; after a move, with the new address's subscription outbox entry and the
    /// account change that carries the user's data there.
    Updated { moved: Option<Moved> },
    /// The record changed since it was read: read again and retry.
    Changed,
}

/// The outbox entries a move wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    pub subscription_entry: String,
    pub change_entry: String,
    pub change: AccountChange,
}

impl PartialEq for AccountChange {
    fn eq(&self, other: &Self) -> bool {
        self.change_id == other.change_id
    }
}
impl Eq for AccountChange {}

/// Handle to user-service's data; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub redis: Redis,
    /// How long a token generation outlives the user at its address: longer than any token
    /// issued before its last bump lives (`AUTH_TOKEN_TTL` plus [`CLOCK_MARGIN`]).
    pub generation_ttl: Duration,
}

/// Added to `AUTH_TOKEN_TTL` for a token generation's lifetime: clocks of the replicas that
/// issued and check tokens may differ a little.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// `users:{email}`.
pub fn user_key(email: &str) -> String {
    format!("{USER_PREFIX}{email}")
}

/// `token_generation:{email}`.
pub fn token_generation_key(email: &str) -> String {
    format!("{TOKEN_GENERATION_PREFIX}{email}")
}

/// `account_change:{email}`.
pub fn account_change_key(email: &str) -> String {
    format!("{ACCOUNT_CHANGE_PREFIX}{email}")
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
            .key(account_change_key(&user.email))
            .key(token_generation_key(&user.email))
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
            "pending" => return Err(Error::AddressBusy),
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
        let change = AccountChange::new(email.as_str(), Some(&updated.email));
        let mut invocation = UPDATE.prepare_invoke();
        invocation
            .key(user_key(email.as_str()))
            .key(user_key(&updated.email))
            .key(SUBSCRIPTION_OUTBOX.key())
            .key(token_generation_key(email.as_str()))
            .key(token_generation_key(&updated.email))
            .key(account_change_key(email.as_str()))
            .key(account_change_key(&updated.email))
            .key(ACCOUNT_OUTBOX.key())
            .arg(expected)
            .arg(to_json(updated)?)
            .arg(PAYLOAD_FIELD)
            .arg(subscription_payload(&updated.email)?)
            .arg(self.generation_ttl_ms())
            .arg(&change.change_id)
            .arg(change_payload(&change)?);
        let outcome: Vec<String> = self
            .redis
            .invoke(&invocation)
            .await
            .map_err(Error::store("updating the user"))?;
        match outcome.as_slice() {
            [subscription_entry, change_entry] => Ok(Replaced::Updated {
                moved: Some(Moved {
                    subscription_entry: subscription_entry.clone(),
                    change_entry: change_entry.clone(),
                    change,
                }),
            }),
            [outcome] => match outcome.as_str() {
                "ok" => Ok(Replaced::Updated { moved: None }),
                "changed" => Ok(Replaced::Changed),
                "missing" => Err(Error::NotFound),
                "taken" => Err(Error::EmailTaken),
                "pending" => Err(Error::AddressBusy),
                other => Err(anyhow::anyhow!("unexpected update outcome {other:?}").into()),
            },
            other => Err(anyhow::anyhow!("unexpected update outcome {other:?}").into()),
        }
    }

    /// Deletes the user with the account change that makes the other services forget the
    /// address (see [`DELETE`]); returns the change and its outbox entry. [`Error::NotFound`]
    /// if there was none, [`Error::AddressBusy`] while an earlier change of the address is
    /// undelivered. (If a reply is lost and the retried script finds nothing, the answer is
    /// 404 although this request deleted the user; the outcome — the user is gone, the change
    /// is on its way — is the one asked for.)
    #[tracing::instrument(skip_all, fields(%email))]
    pub async fn delete(&self, email: &Email) -> Result<(String, AccountChange), Error> {
        let change = AccountChange::new(email.as_str(), None);
        let mut invocation = DELETE.prepare_invoke();
        invocation
            .key(user_key(email.as_str()))
            .key(token_generation_key(email.as_str()))
            .key(account_change_key(email.as_str()))
            .key(ACCOUNT_OUTBOX.key())
            .arg(self.generation_ttl_ms())
            .arg(&change.change_id)
            .arg(PAYLOAD_FIELD)
            .arg(change_payload(&change)?);
        let outcome: String = self
            .redis
            .invoke(&invocation)
            .await
            .map_err(Error::store("deleting the user"))?;
        match outcome.as_str() {
            "missing" => Err(Error::NotFound),
            "pending" => Err(Error::AddressBusy),
            _ => Ok((outcome, change)),
        }
    }

    /// Whether `change` is still undelivered: its address's marker still names it.
    #[tracing::instrument(skip_all, fields(email = change.email))]
    pub async fn change_pending(&self, change: &AccountChange) -> Result<bool, Error> {
        let marker: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(account_change_key(&change.email)))
            .await
            .map_err(Error::store("reading an account change"))?;
        Ok(marker.as_deref() == Some(change.change_id.as_str()))
    }

    /// Frees the addresses of a delivered `change` (see [`FINISH_CHANGE`]).
    #[tracing::instrument(skip_all, fields(email = change.email))]
    pub async fn finish_change(&self, change: &AccountChange) -> Result<(), Error> {
        let mut invocation = FINISH_CHANGE.prepare_invoke();
        for key in change.marker_keys() {
            invocation.key(key);
        }
        invocation.arg(&change.change_id);
        self.redis
            .invoke::<i64>(&invocation)
            .await
            .map_err(Error::store("finishing an account change"))?;
        Ok(())
    }

    fn generation_ttl_ms(&self) -> u64 {
        u64::try_from(self.generation_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
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

fn change_payload(change: &AccountChange) -> Result<String, Error> {
    ACCOUNT_OUTBOX
        .encode(change)
        .map_err(|err| anyhow::Error::from(err).into())
}

fn parse_record(raw: &str) -> Result<UserRecord, Error> {
    serde_json::from_str(raw)
        .map_err(|err| anyhow::anyhow!("stored user is not valid JSON: {err}").into())
}
