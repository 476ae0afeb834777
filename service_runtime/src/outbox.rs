//! A durable outbox: work that must reach a peer service.
//!
//! The work is recorded as an entry of a Redis stream **in the same atomic step** as the write
//! it belongs to (see [`Outbox::enqueue_in`]), so it exists exactly when that write does. A
//! worker reads the stream through a consumer group and hands each entry to a delivery
//! function, retrying with backoff until the peer accepts it; only then is the entry
//! acknowledged and deleted. Entries survive a restart of the service (they live in Redis), and
//! entries left in flight by a crashed worker are re-read on start or claimed after
//! [`CLAIM_IDLE`]. Delivery is therefore at-least-once: peers recognise repeats by the stable
//! id the payload carries.

use std::{future::Future, sync::Arc, time::Duration};

use futures::future::join_all;
use redis::{
    AsyncCommands, Pipeline,
    aio::ConnectionManager,
    streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply},
};
use tokio::sync::Notify;

use crate::shutdown::Shutdown;

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

/// One outbox stream and the consumer group that delivers it.
#[derive(Clone)]
pub struct Outbox {
    redis: ConnectionManager,
    stream: &'static str,
    group: &'static str,
    consumer: String,
    wake: Arc<Notify>,
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
        }
    }

    /// The stream's key, for writes done by a Lua script (pass it in `KEYS`).
    pub fn stream_key(&self) -> &'static str {
        self.stream
    }

    /// Adds the entry's `XADD` to `pipeline`, which the caller runs atomically with its write.
    pub fn enqueue_in(&self, pipeline: &mut Pipeline, payload: &str) {
        pipeline
            .xadd(self.stream, "*", &[(PAYLOAD_FIELD, payload)])
            .ignore();
    }

    /// The `XADD` arguments after the key, for a Lua script: `XADD key * <these>`.
    pub fn payload_field() -> &'static str {
        PAYLOAD_FIELD
    }

    /// Starts delivering now rather than at the next poll; call after an enqueue committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers entries with `deliver` until `shutdown`. Entries still in flight at shutdown
    /// stay in the stream and are delivered by the next run.
    pub async fn run<F, Fut>(mut self, deliver: F, shutdown: Shutdown)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Delivery>,
    {
        let mut backoff = Backoff::default();
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
            let done: Vec<String> = delivered.into_iter().flatten().collect();
            if let Err(err) = self.acknowledge(&done).await {
                // They stay pending for us and are re-read (and recognised as repeats by the peer).
                tracing::warn!(stream = self.stream, error = %err, "outbox acknowledge failed");
                own_pending_first = true;
            }
        }
    }

    /// Delivers one entry, retrying until it is done or shutdown; returns its id once done.
    async fn deliver_one<F, Fut>(
        &self,
        entry: StreamId,
        deliver: &F,
        shutdown: &Shutdown,
    ) -> Option<String>
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
            return Some(entry.id);
        };
        let mut backoff = Backoff::default();
        loop {
            match deliver(payload.clone()).await {
                Delivery::Done => return Some(entry.id),
                Delivery::Reject(reason) => {
                    tracing::error!(stream = self.stream, id = entry.id, %payload, reason, "outbox entry rejected; dropped");
                    return Some(entry.id);
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

    async fn acknowledge(&mut self, ids: &[String]) -> anyhow::Result<()> {
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

async fn sleep_or_shutdown(delay: Duration, shutdown: &Shutdown) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.clone().wait() => {}
    }
}

/// Exponential backoff from [`RETRY_MIN`] doubling up to [`RETRY_MAX`].
#[derive(Debug, Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = RETRY_MIN.saturating_mul(1 << self.attempts.min(10));
        self.attempts += 1;
        delay.min(RETRY_MAX)
    }

    fn reset(&mut self) {
        self.attempts = 0;
    }
}
