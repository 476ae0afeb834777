//! The outbox's worker: delivers what the inline try left, claims what a crashed replica
//! left, and samples the backlog for `outbox_pending_entries`.

use std::time::Duration;

use futures::future::join_all;
use redis::{
    AsyncCommands,
    aio::ConnectionManager,
    streams::{
        StreamAutoClaimOptions, StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    BATCH, CLAIM_IDLE, CLAIM_INTERVAL, Delivery, INLINE_GRACE, Outbox, PAYLOAD_FIELD,
    PENDING_SAMPLE_INTERVAL, POLL_INTERVAL, RETRY_MAX, RETRY_MIN,
};
use crate::{
    metrics::{DeliveryOutcome, DeliveryPath, outbox_delivery},
    retry::Backoff,
    shutdown::Shutdown,
};

impl<P> Outbox<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// Delivers entries the inline try left until `shutdown`. Entries still in flight at
    /// shutdown stay in the stream and are delivered by the next run.
    pub async fn run(self, shutdown: Shutdown) {
        // Apart from the delivery loop, which can spend minutes retrying one batch while the
        // peer is down, exactly when the backlog is worth watching.
        let sampler = tokio::spawn(self.clone().sample_pending(shutdown.clone()));
        let mut redis = self.redis.connection();
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        // After a (re)start, first re-deliver what this consumer had in flight.
        let mut own_pending_first = true;
        let mut claim_due = tokio::time::Instant::now();
        // The group is (re)created at start and after any error: Redis may have lost it.
        let mut group_ready = false;
        while !shutdown.is_triggered() {
            let round = async {
                if !group_ready {
                    self.ensure_group(&mut redis).await?;
                    group_ready = true;
                }
                let mut entries = if own_pending_first {
                    self.read(&mut redis, "0").await?
                } else {
                    self.read(&mut redis, ">").await?
                };
                if entries.is_empty() && tokio::time::Instant::now() >= claim_due {
                    claim_due = tokio::time::Instant::now() + CLAIM_INTERVAL;
                    entries = self.claim_stale(&mut redis).await?;
                }
                anyhow::Ok(entries)
            };
            let entries = match round.await {
                Ok(entries) => {
                    backoff.reset();
                    entries
                }
                Err(err) => {
                    crate::metrics::redis_error();
                    group_ready = false;
                    // A read whose reply was lost still handed its entries to us: they wait in
                    // our pending list, where only re-reading it (not `>`) finds them before
                    // they are claimed as stale.
                    own_pending_first = true;
                    tracing::warn!(stream = self.key, error = %err, "outbox read failed; retrying");
                    sleep_or_shutdown(backoff.next_delay(), &shutdown).await;
                    continue;
                }
            };
            if entries.is_empty() {
                if own_pending_first {
                    own_pending_first = false;
                    continue;
                }
                sleep_or_shutdown(POLL_INTERVAL, &shutdown).await;
                continue;
            }
            let delivered = join_all(
                entries
                    .into_iter()
                    .map(|entry| self.deliver_one(entry, &shutdown)),
            )
            .await;
            let finished: Vec<String> = delivered.into_iter().flatten().collect();
            if let Err(err) = self.acknowledge(&mut redis, &finished).await {
                crate::metrics::redis_error();
                // They stay pending for us and are re-read (and recognised as repeats by the
                // peer).
                tracing::warn!(stream = self.key, error = %err, "outbox acknowledge failed");
                own_pending_first = true;
            }
        }
        if let Err(err) = sampler.await {
            tracing::error!(stream = self.key, error = %err, "outbox backlog sampler panicked");
        }
    }

    /// Samples the stream's length into `outbox_pending_entries` until `shutdown`. Entries
    /// leave the stream only once delivered (or dropped), so its length is the backlog.
    async fn sample_pending(self, shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            match self
                .redis
                .query::<u64>(redis::cmd("XLEN").arg(self.key))
                .await
            {
                Ok(entries) => crate::metrics::outbox_pending(self.key, entries),
                Err(err) => {
                    tracing::debug!(stream = self.key, error = %err, "cannot sample the outbox backlog")
                }
            }
            sleep_or_shutdown(PENDING_SAMPLE_INTERVAL, &shutdown).await;
        }
    }

    /// Delivers one entry, retrying until it is done or shutdown; returns its id once done
    /// (delivered, dropped, or already delivered inline), `None` if shutdown came first.
    async fn deliver_one(&self, entry: StreamId, shutdown: &Shutdown) -> Option<String> {
        // A pending entry deleted by its inline delivery comes back without fields.
        let Some(raw) = entry.get::<String>(PAYLOAD_FIELD) else {
            return Some(entry.id);
        };
        sleep_or_shutdown(grace_left(&entry.id), shutdown).await;
        if shutdown.is_triggered() {
            return None;
        }
        match self.still_queued(&entry.id).await {
            Ok(false) => return Some(entry.id),
            Ok(true) => {}
            // Deliver anyway: a repeat is recognised by the peer.
            Err(err) => {
                tracing::warn!(stream = self.key, id = entry.id, error = %err, "cannot check the entry; delivering it")
            }
        }
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            let payload: P = match serde_json::from_str(&raw) {
                Ok(payload) => payload,
                Err(err) => {
                    tracing::error!(stream = self.key, id = entry.id, raw, error = %err, "outbox payload does not parse; dropped");
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Rejected);
                    return Some(entry.id);
                }
            };
            match (self.deliver)(payload).await {
                Delivery::Done => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Delivered);
                    return Some(entry.id);
                }
                Delivery::Reject(reason) => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Rejected);
                    tracing::warn!(
                        stream = self.key,
                        id = entry.id,
                        raw,
                        reason,
                        "outbox entry rejected; dropped"
                    );
                    return Some(entry.id);
                }
                Delivery::Retry(reason) => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Retry);
                    tracing::warn!(
                        stream = self.key,
                        id = entry.id,
                        reason,
                        "delivery failed; will retry"
                    );
                    self.still_mine(&entry.id).await;
                    sleep_or_shutdown(backoff.next_delay(), shutdown).await;
                    if shutdown.is_triggered() {
                        return None;
                    }
                }
            }
        }
    }

    /// Resets the entry's idle time, so other consumers see it is being worked on and leave
    /// it alone; a failure here only risks a harmless second delivery.
    async fn still_mine(&self, id: &str) {
        let touched: redis::RedisResult<redis::Value> = self
            .redis
            .query(
                redis::cmd("XCLAIM")
                    .arg(self.key)
                    .arg(self.group)
                    .arg(&*self.consumer)
                    .arg(0)
                    .arg(id)
                    .arg("JUSTID"),
            )
            .await;
        if let Err(err) = touched {
            tracing::debug!(stream = self.key, id, error = %err, "could not touch the entry");
        }
    }

    /// Whether the entry is still in the stream (not yet deleted by its inline delivery).
    async fn still_queued(&self, id: &str) -> redis::RedisResult<bool> {
        let found: StreamRangeReply = self
            .redis
            .query(redis::cmd("XRANGE").arg(self.key).arg(id).arg(id))
            .await?;
        Ok(!found.ids.is_empty())
    }

    async fn ensure_group(&self, redis: &mut ConnectionManager) -> anyhow::Result<()> {
        let created: redis::RedisResult<()> = redis
            .xgroup_create_mkstream(self.key, self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    async fn read(
        &self,
        redis: &mut ConnectionManager,
        from: &str,
    ) -> anyhow::Result<Vec<StreamId>> {
        let options = StreamReadOptions::default()
            .group(self.group, &*self.consumer)
            .count(BATCH);
        let reply: Option<StreamReadReply> =
            redis.xread_options(&[self.key], &[from], &options).await?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .collect())
    }

    async fn claim_stale(&self, redis: &mut ConnectionManager) -> anyhow::Result<Vec<StreamId>> {
        let reply: redis::streams::StreamAutoClaimReply = redis
            .xautoclaim_options(
                self.key,
                self.group,
                &*self.consumer,
                CLAIM_IDLE.as_millis() as u64,
                "0",
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await?;
        Ok(reply.claimed)
    }

    async fn acknowledge(
        &self,
        redis: &mut ConnectionManager,
        ids: &[String],
    ) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .xack(self.key, self.group, ids)
            .ignore()
            .xdel(self.key, ids)
            .ignore();
        pipeline.query_async::<()>(redis).await?;
        Ok(())
    }
}

/// How much longer an entry is left to its inline delivery: [`INLINE_GRACE`] from the time in
/// its id (`<milliseconds>-<sequence>`), never more than that in case of clock skew.
fn grace_left(entry_id: &str) -> Duration {
    let written_ms = entry_id
        .split_once('-')
        .and_then(|(ms, _)| ms.parse::<u64>().ok());
    let now_ms = crate::time::unix_now_ms();
    match written_ms {
        Some(written) => {
            INLINE_GRACE.saturating_sub(Duration::from_millis(now_ms.saturating_sub(written)))
        }
        None => Duration::ZERO,
    }
}

async fn sleep_or_shutdown(delay: Duration, shutdown: &Shutdown) {
    if delay.is_zero() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.clone().wait() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_entry_has_no_grace_left_and_a_new_one_at_most_the_whole_grace() {
        assert_eq!(grace_left("1000-0"), Duration::ZERO);
        let now_ms = crate::time::unix_now_ms();
        let fresh = grace_left(&format!("{now_ms}-0"));
        assert!(fresh > Duration::ZERO && fresh <= INLINE_GRACE, "{fresh:?}");
        let future = grace_left(&format!("{}-0", now_ms + 60_000));
        assert_eq!(future, INLINE_GRACE);
        assert_eq!(grace_left("not-an-id"), Duration::ZERO);
    }
}
