//! A durable outbox: work that must reach a peer service.
//!
//! The work is recorded as an entry of a Redis stream **in the same atomic step** as the write
//! it belongs to (the service's Lua script runs `XADD` with [`Outbox::stream_key`] and
//! [`Outbox::payload_field`]), so it exists exactly when that write does. A
//! worker reads the stream through a consumer group and hands each entry to a delivery
//! function, retrying with backoff until the peer accepts it; only then is the entry
//! acknowledged and deleted. Entries survive a restart of the service (they live in Redis), and
//! entries left in flight by a crashed worker are re-read on start or claimed after
//! [`CLAIM_IDLE`]. Delivery is therefore at-least-once: peers recognise repeats by the stable
//! id the payload carries.
//!
//! A caller that wants to answer only once its entry has reached the peer registers a
//! [`DeliveryWaiter`] with [`Outbox::watch_delivery`] *before* its write and waits on it after
//! (bounded); the entry stays durable whether or not the wait succeeds.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::future::join_all;
use redis::{
    AsyncCommands,
    aio::ConnectionManager,
    streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply},
};
use tokio::sync::{Notify, oneshot};

use crate::{retry::Backoff, shutdown::Shutdown};

/// The stream field holding an entry's payload.
const PAYLOAD_FIELD: &str = "payload";
/// Entries read and delivered concurrently per round.
const BATCH: usize = 128;
/// How often the stream is polled when nothing woke the worker (entries from other processes).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// An entry in flight this long without acknowledgement is taken over from its consumer.
const CLAIM_IDLE: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What became of one delivery attempt.
#[derive(Debug)]
pub enum Delivery {
    /// The peer accepted it (or it is already there): acknowledge the entry.
    Done,
    /// The peer could not take it now (down, slow, erroring): try again later.
    Retry(String),
    /// The entry can never be delivered (it does not parse): log it and drop it.
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

/// One outbox stream and the consumer group that delivers it.
#[derive(Clone)]
pub struct Outbox {
    redis: ConnectionManager,
    stream: &'static str,
    group: &'static str,
    consumer: String,
    wake: Arc<Notify>,
    watchers: Arc<Watchers>,
}

impl Outbox {
    /// The outbox in stream `stream`, delivered by consumer group `group`. The consumer name is
    /// the host name when there is one, so each replica re-reads its own in-flight entries.
    pub fn new(redis: ConnectionManager, stream: &'static str, group: &'static str) -> Self {
        let consumer = crate::config::var("HOSTNAME").unwrap_or_else(|| group.to_owned());
        Self {
            redis,
            stream,
            group,
            consumer,
            wake: Arc::new(Notify::new()),
            watchers: Arc::default(),
        }
    }

    /// The stream's key, for writes done by a Lua script (pass it in `KEYS`).
    pub fn stream_key(&self) -> &'static str {
        self.stream
    }

    /// The field a Lua script writes the payload under: `XADD <stream_key> * <this> <payload>`.
    pub fn payload_field() -> &'static str {
        PAYLOAD_FIELD
    }

    /// Starts delivering now rather than at the next poll; call after an enqueue committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A waiter for the delivery of the entry whose payload is exactly `payload`. Register it
    /// **before** the write that enqueues the entry runs, so no delivery can slip in between;
    /// then wake the worker and [`DeliveryWaiter::wait`]. Dropping the waiter (after a timeout,
    /// or because the write did not enqueue after all) unregisters it.
    ///
    /// The payload is the key: it must be unique among the entries pending at the same time,
    /// or any entry with an identical payload resolves the waiter — harmless only where
    /// identical payloads mean identical, idempotent work. Only deliveries made by this
    /// process (a [`Outbox::run`] of a clone of this outbox) are seen: if another replica's
    /// worker delivers the entry, the wait runs into its timeout.
    pub fn watch_delivery(&self, payload: &str) -> DeliveryWaiter {
        self.watchers.register(payload)
    }

    /// Delivers entries with `deliver` until `shutdown`. Entries still in flight at shutdown
    /// stay in the stream and are delivered by the next run.
    pub async fn run<F, Fut>(mut self, deliver: F, shutdown: Shutdown)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Delivery>,
    {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        // After a (re)start, first re-deliver what this consumer had in flight.
        let mut own_pending_first = true;
        let mut claim_due = tokio::time::Instant::now();
        // The group is (re)created at start and after any error: Redis may have lost it.
        let mut group_ready = false;
        while !shutdown.is_triggered() {
            let round = async {
                if !group_ready {
                    self.ensure_group().await?;
                    group_ready = true;
                }
                let mut entries = if own_pending_first {
                    self.read("0").await?
                } else {
                    self.read(">").await?
                };
                if entries.is_empty() && tokio::time::Instant::now() >= claim_due {
                    claim_due = tokio::time::Instant::now() + CLAIM_IDLE;
                    entries = self.claim_stale().await?;
                }
                anyhow::Ok(entries)
            };
            let entries = match round.await {
                Ok(entries) => {
                    backoff.reset();
                    entries
                }
                Err(err) => {
                    group_ready = false;
                    // A read whose reply was lost still handed its entries to us: they wait in
                    // our pending list, where only re-reading it (not `>`) finds them before
                    // they are claimed as stale.
                    own_pending_first = true;
                    tracing::warn!(stream = self.stream, error = %err, "outbox read failed; retrying");
                    sleep_or_shutdown(backoff.next_delay(), &shutdown).await;
                    continue;
                }
            };
            if entries.is_empty() {
                if own_pending_first {
                    own_pending_first = false;
                    continue;
                }
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    () = shutdown.clone().wait() => {}
                }
                continue;
            }
            let delivered = join_all(
                entries
                    .into_iter()
                    .map(|entry| self.deliver_one(entry, &deliver, &shutdown)),
            )
            .await;
            let finished: Vec<Finished> = delivered.into_iter().flatten().collect();
            let ids: Vec<&str> = finished.iter().map(|entry| entry.id.as_str()).collect();
            match self.acknowledge(&ids).await {
                Ok(()) => {
                    for entry in finished {
                        if let Some((payload, delivered)) = entry.outcome {
                            self.watchers.resolve(&payload, delivered);
                        }
                    }
                }
                Err(err) => {
                    // They stay pending for us and are re-read (and recognised as repeats by the
                    // peer); their waiters are resolved when a later acknowledgement succeeds.
                    tracing::warn!(stream = self.stream, error = %err, "outbox acknowledge failed");
                    own_pending_first = true;
                }
            }
        }
    }

    /// Delivers one entry, retrying until it is done or shutdown; returns it once done
    /// (delivered or dropped), `None` if shutdown came first.
    async fn deliver_one<F, Fut>(
        &self,
        entry: StreamId,
        deliver: &F,
        shutdown: &Shutdown,
    ) -> Option<Finished>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Delivery>,
    {
        let Some(payload) = entry.get::<String>(PAYLOAD_FIELD) else {
            tracing::error!(
                stream = self.stream,
                id = entry.id,
                "outbox entry has no payload; dropped"
            );
            return Some(Finished {
                id: entry.id,
                outcome: None,
            });
        };
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            match deliver(payload.clone()).await {
                Delivery::Done => {
                    return Some(Finished {
                        id: entry.id,
                        outcome: Some((payload, true)),
                    });
                }
                Delivery::Reject(reason) => {
                    tracing::error!(stream = self.stream, id = entry.id, %payload, reason, "outbox entry rejected; dropped");
                    return Some(Finished {
                        id: entry.id,
                        outcome: Some((payload, false)),
                    });
                }
                Delivery::Retry(reason) => {
                    tracing::warn!(
                        stream = self.stream,
                        id = entry.id,
                        reason,
                        "delivery failed; will retry"
                    );
                    if shutdown.is_triggered() {
                        return None;
                    }
                    sleep_or_shutdown(backoff.next_delay(), shutdown).await;
                    if shutdown.is_triggered() {
                        return None;
                    }
                }
            }
        }
    }

    async fn ensure_group(&mut self) -> anyhow::Result<()> {
        let created: redis::RedisResult<()> = self
            .redis
            .xgroup_create_mkstream(self.stream, self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn read(&mut self, from: &str) -> anyhow::Result<Vec<StreamId>> {
        let options = StreamReadOptions::default()
            .group(self.group, &self.consumer)
            .count(BATCH);
        let reply: Option<StreamReadReply> = self
            .redis
            .xread_options(&[self.stream], &[from], &options)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .collect())
    }

    async fn claim_stale(&mut self) -> anyhow::Result<Vec<StreamId>> {
        let reply: redis::streams::StreamAutoClaimReply = self
            .redis
            .xautoclaim_options(
                self.stream,
                self.group,
                &self.consumer,
                CLAIM_IDLE.as_millis() as u64,
                "0",
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await?;
        Ok(reply.claimed)
    }

    async fn acknowledge(&mut self, ids: &[&str]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .xack(self.stream, self.group, ids)
            .ignore()
            .xdel(self.stream, ids)
            .ignore();
        pipeline.query_async::<()>(&mut self.redis).await?;
        Ok(())
    }
}

/// An entry the worker is finished with: acknowledge it, then tell its waiters.
struct Finished {
    id: String,
    /// The payload and whether the peer accepted it (`false`: rejected); `None` without one.
    outcome: Option<(String, bool)>,
}

/// Per payload, each registered waiter's id and the sender that resolves it.
type WaitingMap = HashMap<String, Vec<(u64, oneshot::Sender<bool>)>>;

/// The registry behind [`Outbox::watch_delivery`]: who waits for which payload.
#[derive(Default)]
struct Watchers {
    next_id: AtomicU64,
    waiting: Mutex<WaitingMap>,
}

impl Watchers {
    fn register(self: &Arc<Self>, payload: &str) -> DeliveryWaiter {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock()
            .entry(payload.to_owned())
            .or_default()
            .push((id, sender));
        DeliveryWaiter {
            watchers: Arc::clone(self),
            payload: payload.to_owned(),
            id,
            receiver,
        }
    }

    /// Tells everyone waiting for `payload` how it ended, and forgets them.
    fn resolve(&self, payload: &str, delivered: bool) {
        let waiting = self.lock().remove(payload);
        for (_, sender) in waiting.into_iter().flatten() {
            // A waiter that gave up in the meantime no longer listens; nothing to tell.
            let _ = sender.send(delivered);
        }
    }

    fn unregister(&self, payload: &str, id: u64) {
        let mut waiting = self.lock();
        if let Some(senders) = waiting.get_mut(payload) {
            senders.retain(|(waiter, _)| *waiter != id);
            if senders.is_empty() {
                waiting.remove(payload);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, WaitingMap> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Waits for the delivery of one outbox entry; see [`Outbox::watch_delivery`]. Unregisters
/// itself when dropped.
#[must_use = "wait on it after the enqueuing write; dropping it unregisters it"]
pub struct DeliveryWaiter {
    watchers: Arc<Watchers>,
    payload: String,
    id: u64,
    receiver: oneshot::Receiver<bool>,
}

impl DeliveryWaiter {
    /// Waits at most `timeout` for the worker to finish the entry. `true` once the peer
    /// accepted it ([`Delivery::Done`]) **and** the entry was acknowledged; `false` if it was
    /// rejected ([`Delivery::Reject`], answered at once: it will never be delivered), or if
    /// `timeout` passed first — the entry then stays in the outbox and is still delivered.
    pub async fn wait(mut self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, &mut self.receiver).await,
            Ok(Ok(true))
        )
    }
}

impl Drop for DeliveryWaiter {
    fn drop(&mut self) {
        self.watchers.unregister(&self.payload, self.id);
    }
}

async fn sleep_or_shutdown(delay: Duration, shutdown: &Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.clone().wait() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn a_waiter_resolves_true_once_its_payload_is_delivered() {
        let watchers = Arc::new(Watchers::default());
        let waiter = watchers.register(r#"{"email":"a@b.io"}"#);

        watchers.resolve(r#"{"email":"a@b.io"}"#, true);

        assert!(waiter.wait(Duration::from_secs(5)).await);
        assert_eq!(watchers.len(), 0);
    }

    #[tokio::test]
    async fn a_waiter_resolves_false_at_once_when_its_payload_is_rejected() {
        let watchers = Arc::new(Watchers::default());
        let waiter = watchers.register("p");

        watchers.resolve("p", false);

        let started = tokio::time::Instant::now();
        assert!(!waiter.wait(Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn another_payloads_delivery_does_not_resolve_a_waiter() {
        let watchers = Arc::new(Watchers::default());
        let waiter = watchers.register("mine");

        watchers.resolve("theirs", true);

        assert!(!waiter.wait(SHORT).await);
    }

    #[tokio::test]
    async fn every_waiter_of_one_payload_is_resolved() {
        let watchers = Arc::new(Watchers::default());
        let (first, second) = (watchers.register("p"), watchers.register("p"));

        watchers.resolve("p", true);

        assert!(first.wait(SHORT).await);
        assert!(second.wait(SHORT).await);
    }

    #[tokio::test]
    async fn a_waiter_that_timed_out_or_was_dropped_leaves_nothing_registered() {
        let watchers = Arc::new(Watchers::default());
        let timed_out = watchers.register("p");
        let dropped = watchers.register("p");
        let other = watchers.register("q");

        assert!(!timed_out.wait(SHORT).await);
        drop(dropped);
        assert_eq!(watchers.len(), 1, "only q's waiter is left");
        drop(other);
        assert_eq!(watchers.len(), 0);
        watchers.resolve("p", true);
    }
}
