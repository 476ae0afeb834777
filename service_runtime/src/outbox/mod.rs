//! A durable outbox: work that must reach a peer service, delivered inline first and by a
//! worker when that did not succeed.
//!
//! The work is recorded as an entry of a Redis stream **in the same atomic step** as the write
//! it belongs to: the service's Lua script runs
//! `XADD <OutboxStream::key> * <PAYLOAD_FIELD> <payload JSON>` and returns the entry's id. The
//! payload is a typed value serialized in Rust ([`OutboxStream::encode`]); scripts never build
//! JSON.
//!
//! Then the request that wrote it tries the delivery itself ([`Outbox::deliver_now`], with a
//! short deadline) and deletes the entry once the peer took it, so when the peer is up the
//! answer already means "delivered" — on whichever replica the request ran. When the peer is
//! down or slow, the entry stays and a worker ([`Outbox::run`]) delivers it: it reads the
//! stream through a consumer group, leaves an entry alone for [`INLINE_GRACE`] (its request may
//! still be delivering it), then retries with backoff until the peer accepts it; that entry is
//! then acknowledged and deleted at once, whatever the others read with it are doing. Entries
//! survive restarts (they live in Redis); entries left in flight by a crashed worker are
//! claimed by another worker, on a timer of its own, once idle for [`CLAIM_IDLE`] (a live one
//! touches its entries at every retry, so only a crashed one's go idle that long).
//!
//! An entry the peer *refuses* ([`Delivery::Reject`]: it calls the request invalid) is tried
//! [`MAX_REFUSALS`] times in a row and then moved to the stream's dead-letter stream
//! (`<key>:dead`, fields `payload`, `entry_id`, `reason`, `attempts`), counted in
//! `outbox_dead_letters_total` and logged as an error: never retried forever, never dropped
//! silently. A payload that does not parse goes there at once.
//! Delivery is therefore at-least-once: peers recognise repeats by the stable id the payload
//! carries.

mod stream;
mod upkeep;
mod worker;

use std::{
    future::Future,
    marker::PhantomData,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    metrics::{DeliveryOutcome, DeliveryPath, outbox_delivery},
    redis_store::Redis,
};

/// The stream field holding an entry's payload (pass it to the script that writes the entry).
pub const PAYLOAD_FIELD: &str = "payload";
/// How long the inline delivery of a request may take before the request answers anyway.
const INLINE_DEADLINE: Duration = Duration::from_secs(1);
/// How old an entry must be before the worker delivers it: longer than [`INLINE_DEADLINE`], so
/// the worker does not race the request that is delivering it inline.
const INLINE_GRACE: Duration = Duration::from_secs(2);
/// Entries read and delivered concurrently per round.
const BATCH: usize = 128;
/// How often the stream is polled for entries.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// An entry in flight this long without acknowledgement is taken over from its consumer
/// (which crashed: a live one touches its entries at every retry, see `deliver_one`). Longer
/// than one attempt (a call's deadline) plus the longest wait between attempts.
const CLAIM_IDLE: Duration = Duration::from_secs(10);
/// How often the worker looks for entries a crashed consumer left, whether or not it has
/// other work: a crashed replica's entries are delivered within `CLAIM_IDLE + CLAIM_INTERVAL`
/// (plus the delivery itself) of its last touch.
const CLAIM_INTERVAL: Duration = Duration::from_secs(2);
/// Refusals in a row ([`Delivery::Reject`]) after which an entry goes to the dead-letter
/// stream. More than one: a peer in the middle of a deploy may refuse what its next version
/// takes.
const MAX_REFUSALS: u32 = 5;
/// How often the worker samples the stream's length for `outbox_pending_entries`.
const PENDING_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// An outbox stream: its key, the consumer group that delivers it and its payload type,
/// declared together as a `const` in the service's `store.rs`.
pub struct OutboxStream<P> {
    key: &'static str,
    group: &'static str,
    payload: PhantomData<fn() -> P>,
}

impl<P: Serialize + DeserializeOwned> OutboxStream<P> {
    pub const fn new(key: &'static str, group: &'static str) -> Self {
        Self {
            key,
            group,
            payload: PhantomData,
        }
    }

    /// The stream's key, for the script that writes entries (pass it in `KEYS`).
    pub const fn key(&self) -> &'static str {
        self.key
    }

    /// The payload as the script writes it under [`PAYLOAD_FIELD`].
    pub fn encode(&self, payload: &P) -> serde_json::Result<String> {
        serde_json::to_string(payload)
    }
}

/// What became of one delivery attempt.
#[derive(Debug)]
pub enum Delivery {
    /// The peer accepted it (or it is already there): acknowledge the entry.
    Done,
    /// The peer could not take it now (down, slow, erroring): try again later.
    Retry(String),
    /// The peer refuses it as invalid: tried again a few times, then moved to the
    /// dead-letter stream (see the module's documentation).
    Reject(String),
}

impl Delivery {
    /// The outcome of a call to `peer` that failed with `status`: a request the peer calls
    /// invalid stays invalid however often it is sent (retrying would block the outbox), any
    /// other failure (down, restarting, overloaded, failing inside) is worth another try.
    pub fn after_failed_call(peer: &str, status: &tonic::Status) -> Self {
        let reason = format!("{peer}: {:?}: {}", status.code(), status.message());
        if status.code() == tonic::Code::InvalidArgument {
            Self::Reject(reason)
        } else {
            Self::Retry(reason)
        }
    }
}

/// How an outbox's payloads reach the peer; the same for the inline try and the worker.
type DeliverFn<P> = dyn Fn(P) -> BoxFuture<'static, Delivery> + Send + Sync;

/// One outbox stream with its delivery; cheap to clone.
pub struct Outbox<P> {
    redis: Redis,
    key: &'static str,
    group: &'static str,
    /// `<key>:dead`: entries the peer kept refusing.
    dead_key: Arc<str>,
    consumer: Arc<str>,
    deliver: Arc<DeliverFn<P>>,
}

impl<P> Clone for Outbox<P> {
    fn clone(&self) -> Self {
        Self {
            redis: self.redis.clone(),
            key: self.key,
            group: self.group,
            dead_key: Arc::clone(&self.dead_key),
            consumer: Arc::clone(&self.consumer),
            deliver: Arc::clone(&self.deliver),
        }
    }
}

impl<P> Outbox<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// The outbox of `stream`, delivered by `deliver` (a call to the peer). The worker's
    /// consumer name is `host` (`HOSTNAME`) plus the process id — and a number for a second
    /// outbox of the same stream in one process (tests run replicas side by side) — so each
    /// replica re-reads only its own in-flight entries.
    pub fn new<F, Fut>(redis: Redis, stream: &OutboxStream<P>, host: &str, deliver: F) -> Self
    where
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Delivery> + Send + 'static,
    {
        Self {
            redis,
            key: stream.key,
            group: stream.group,
            dead_key: dead_key(stream.key).into(),
            consumer: consumer_name(host, stream.key).into(),
            deliver: Arc::new(move |payload| Box::pin(deliver(payload))),
        }
    }

    /// Delivers the payload of the just-written entry `entry_id` at once, for at most
    /// [`INLINE_DEADLINE`]; deletes the entry when the peer took it. Returns whether the peer
    /// took it. Otherwise the entry stays and the worker delivers it (or, when the peer keeps
    /// refusing it, moves it to the dead-letter stream).
    pub async fn deliver_now(&self, entry_id: &str, payload: P) -> bool {
        let outcome = tokio::time::timeout(INLINE_DEADLINE, (self.deliver)(payload)).await;
        let counted = match &outcome {
            Ok(Delivery::Done) => DeliveryOutcome::Delivered,
            Ok(Delivery::Reject(_)) => DeliveryOutcome::Rejected,
            Ok(Delivery::Retry(_)) => DeliveryOutcome::Retry,
            Err(_) => DeliveryOutcome::Timeout,
        };
        outbox_delivery(self.key, DeliveryPath::Inline, counted);
        match outcome {
            Ok(Delivery::Done) => {}
            Ok(Delivery::Reject(reason)) => {
                tracing::warn!(
                    stream = self.key,
                    id = entry_id,
                    reason,
                    "the peer refused the entry; the outbox worker tries again, then dead-letters it"
                );
                return false;
            }
            Ok(Delivery::Retry(reason)) => {
                tracing::warn!(
                    stream = self.key,
                    id = entry_id,
                    reason,
                    "inline delivery failed; the outbox worker retries it"
                );
                return false;
            }
            Err(_) => {
                tracing::warn!(stream = self.key, id = entry_id, deadline = ?INLINE_DEADLINE, "inline delivery timed out; the outbox worker retries it");
                return false;
            }
        }
        // Once deleted the worker skips it; if deleting fails (or the deletion is lost in a
        // failover: it does not wait for replicas) it is delivered again, harmlessly.
        let deleted: redis::RedisResult<i64> = self
            .redis
            .query_unconfirmed(redis::cmd("XDEL").arg(self.key).arg(entry_id))
            .await;
        if let Err(err) = deleted {
            tracing::warn!(stream = self.key, id = entry_id, error = %err, "delivered entry not deleted; it will be delivered again");
        }
        true
    }
}

/// Where the entries of `stream` the peer kept refusing go.
pub fn dead_key(stream: &str) -> String {
    format!("{stream}:dead")
}

/// `<host>-<pid>`, then `<host>-<pid>-2`, … for further outboxes of the same stream.
fn consumer_name(host: &str, stream: &'static str) -> String {
    static MADE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    let before = made.iter().filter(|key| **key == stream).count();
    made.push(stream);
    match before {
        0 => format!("{host}-{}", std::process::id()),
        n => format!("{host}-{}-{}", std::process::id(), n + 1),
    }
}
