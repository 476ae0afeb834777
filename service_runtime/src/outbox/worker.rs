//! The outbox's worker: delivers what the inline try left, claims what a crashed replica
//! left, moves what the peer keeps refusing to the dead-letter stream, and samples the backlog
//! for `outbox_pending_entries`.
//!
//! Each entry is delivered by a task of its own and acknowledged (and deleted) the moment
//! *it* is done, so an entry that keeps being retried holds up nothing else. The loop that
//! starts those tasks reads new entries every [`POLL_INTERVAL`] (at once again when a read
//! came back full) and, on a timer of its own, every [`CLAIM_INTERVAL`], claims entries a
//! crashed consumer left idle for [`CLAIM_IDLE`]: however busy the stream is, a crashed
//! replica's entries are taken over within `CLAIM_IDLE + CLAIM_INTERVAL`.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use redis::streams::StreamId;
use serde::{Serialize, de::DeserializeOwned};
use tokio::{task::JoinSet, time::MissedTickBehavior};

use super::stream::FINISH;
use super::{
    BATCH, CLAIM_INTERVAL, Delivery, INLINE_GRACE, MAX_REFUSALS, Outbox, PAYLOAD_FIELD,
    PENDING_SAMPLE_INTERVAL, POLL_INTERVAL, RETRY_MAX, RETRY_MIN,
};
use crate::{
    metrics::{
        DeliveryOutcome, DeliveryPath, outbox_claimed, outbox_dead_lettered, outbox_delivery,
    },
    retry::Backoff,
    shutdown::Shutdown,
};

/// What became of an entry the worker took on.
enum Finished {
    /// Delivered (or already delivered inline, or already gone): acknowledge and delete it.
    Done,
    /// Refused for good after this many attempts: move it to the dead-letter stream.
    Dead { reason: String, attempts: u32 },
    /// Shutdown came first: it stays pending and is delivered after the restart.
    Interrupted,
}

impl<P> Outbox<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// Delivers entries the inline try left until `shutdown`. Entries still in flight at
    /// shutdown stay in the stream and are delivered by the next run.
    pub async fn run(self, shutdown: Shutdown) {
        let sampler = tokio::spawn(self.clone().sample_pending(shutdown.clone()));
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        // After a (re)start, and after a failed round, first re-read what this consumer has in
        // flight (from this id on): a read whose reply was lost still handed its entries to
        // us, and only re-reading the pending list (not `>`) finds them before they are
        // claimed as stale.
        let mut own_pending_from = Some("0".to_owned());
        // Where the next claim continues in the pending list (`0`: from its start).
        let mut claim_from = "0".to_owned();
        // The group is (re)created at start and after any error: Redis may have lost it.
        let mut group_ready = false;
        let mut tasks: JoinSet<()> = JoinSet::new();
        // The entries being delivered, by id and by their task.
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut task_entries: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut claim = tokio::time::interval(CLAIM_INTERVAL);
        claim.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        loop {
            let round = tokio::select! {
                biased;
                () = &mut stop => break,
                Some(finished) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let task = match finished {
                        Ok((task, ())) => task,
                        Err(err) => {
                            // Its entry stays pending and is claimed once idle.
                            tracing::error!(stream = self.key, error = %err, "outbox delivery task failed");
                            err.id()
                        }
                    };
                    if let Some(id) = task_entries.remove(&task) {
                        in_flight.remove(&id);
                    }
                    continue;
                }
                _ = claim.tick() => Round::Claim,
                _ = poll.tick(), if tasks.len() < BATCH => Round::Read,
            };
            let fetched = async {
                // Asked for each round: with Sentinel the primary may have moved.
                let mut redis = self.redis.connection().await?;
                if !group_ready {
                    self.ensure_group(&mut redis).await?;
                    group_ready = true;
                }
                match round {
                    Round::Claim => {
                        let (entries, next) = self.claim_stale(&mut redis, &claim_from).await?;
                        claim_from = next;
                        let fresh = entries
                            .iter()
                            .filter(|entry| !in_flight.contains(&entry.id))
                            .count();
                        if fresh > 0 {
                            outbox_claimed(self.key, fresh as u64);
                            tracing::info!(
                                stream = self.key,
                                entries = fresh,
                                "claimed entries a stopped consumer left"
                            );
                        }
                        anyhow::Ok((entries, false))
                    }
                    Round::Read => {
                        let room = BATCH - tasks.len();
                        let from = own_pending_from.as_deref().unwrap_or(">");
                        let entries = self.read(&mut redis, from, room).await?;
                        if own_pending_from.is_some() {
                            own_pending_from = entries.last().map(|entry| entry.id.clone());
                        }
                        let full = entries.len() == room;
                        anyhow::Ok((entries, full))
                    }
                }
            };
            match fetched.await {
                Ok((entries, full)) => {
                    backoff.reset();
                    if full || own_pending_from.is_some() {
                        poll.reset_immediately();
                    }
                    for entry in entries {
                        if in_flight.insert(entry.id.clone()) {
                            let id = entry.id.clone();
                            let outbox = self.clone();
                            let shutdown = shutdown.clone();
                            let task = tasks.spawn(async move {
                                outbox.deliver_and_finish(entry, &shutdown).await;
                            });
                            task_entries.insert(task.id(), id);
                        }
                    }
                }
                Err(err) => {
                    crate::metrics::redis_error();
                    // The primary may have moved, and the new one may lack the group.
                    self.redis.recheck_primary();
                    group_ready = false;
                    own_pending_from = Some("0".to_owned());
                    tracing::warn!(stream = self.key, error = %err, "outbox read failed; retrying");
                    sleep_or_shutdown(backoff.next_delay(), &shutdown).await;
                }
            }
        }
        // Each task sees the shutdown and leaves its entry pending.
        while tasks.join_next().await.is_some() {}
        if let Err(err) = sampler.await {
            tracing::error!(stream = self.key, error = %err, "outbox backlog sampler panicked");
        }
    }

    /// Samples the stream's length into `outbox_pending_entries` until `shutdown`. Entries
    /// leave the stream only once delivered (or dead-lettered), so its length is the backlog.
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

    /// Delivers one entry and acknowledges it as soon as it is done.
    async fn deliver_and_finish(self, entry: StreamId, shutdown: &Shutdown) {
        let id = entry.id.clone();
        let raw = entry.get::<String>(PAYLOAD_FIELD);
        let (reason, attempts) = match self.deliver_one(&id, raw.as_deref(), shutdown).await {
            Finished::Interrupted => return,
            Finished::Done => (String::new(), 0),
            Finished::Dead { reason, attempts } => (reason, attempts),
        };
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        loop {
            let mut invocation = FINISH.prepare_invoke();
            invocation
                .key(self.key)
                .key(&*self.dead_key)
                .arg(self.group)
                .arg(&id)
                .arg(&reason)
                .arg(attempts)
                .arg(PAYLOAD_FIELD);
            match self.redis.invoke::<i64>(&invocation).await {
                Ok(found) => {
                    if !reason.is_empty() && found > 0 {
                        outbox_dead_lettered(self.key);
                        tracing::error!(
                            stream = self.key,
                            id,
                            dead_letter_stream = &*self.dead_key,
                            attempts,
                            reason,
                            raw,
                            "outbox entry refused again and again; moved to the dead-letter stream"
                        );
                    }
                    return;
                }
                Err(err) => {
                    crate::metrics::redis_error();
                    // Until it is acknowledged it stays pending for us and is touched, so no
                    // one claims it; a repeat of the delivery would be recognised anyway.
                    tracing::warn!(stream = self.key, id, error = %err, "outbox acknowledge failed; retrying");
                    self.still_mine(&id).await;
                    sleep_or_shutdown(backoff.next_delay(), shutdown).await;
                    if shutdown.is_triggered() {
                        return;
                    }
                }
            }
        }
    }

    /// Delivers one entry, retrying while the peer cannot take it, until it is done, refused
    /// [`MAX_REFUSALS`] times in a row, or shutdown.
    async fn deliver_one(&self, id: &str, raw: Option<&str>, shutdown: &Shutdown) -> Finished {
        // A pending entry deleted by its inline delivery comes back without fields.
        let Some(raw) = raw else {
            return Finished::Done;
        };
        sleep_or_shutdown(grace_left(id), shutdown).await;
        if shutdown.is_triggered() {
            return Finished::Interrupted;
        }
        match self.still_queued(id).await {
            Ok(false) => return Finished::Done,
            Ok(true) => {}
            // Deliver anyway: a repeat is recognised by the peer.
            Err(err) => {
                tracing::warn!(stream = self.key, id, error = %err, "cannot check the entry; delivering it")
            }
        }
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut attempts = 0_u32;
        let mut refusals = 0_u32;
        loop {
            attempts += 1;
            let payload: P = match serde_json::from_str(raw) {
                Ok(payload) => payload,
                Err(err) => {
                    // It will never parse: no point in trying again.
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Rejected);
                    return Finished::Dead {
                        reason: format!("the payload does not parse: {err}"),
                        attempts,
                    };
                }
            };
            match (self.deliver)(payload).await {
                Delivery::Done => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Delivered);
                    return Finished::Done;
                }
                Delivery::Reject(reason) => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Rejected);
                    refusals += 1;
                    if refusals >= MAX_REFUSALS {
                        return Finished::Dead { reason, attempts };
                    }
                    tracing::warn!(
                        stream = self.key,
                        id,
                        reason,
                        refusals,
                        max_refusals = MAX_REFUSALS,
                        "the peer refused the entry; trying again before dead-lettering it"
                    );
                }
                Delivery::Retry(reason) => {
                    outbox_delivery(self.key, DeliveryPath::Worker, DeliveryOutcome::Retry);
                    // Only refusals in a row count: a peer that was down in between may have
                    // been replaced by one that takes it.
                    refusals = 0;
                    tracing::warn!(stream = self.key, id, reason, "delivery failed; will retry");
                }
            }
            self.still_mine(id).await;
            sleep_or_shutdown(backoff.next_delay(), shutdown).await;
            if shutdown.is_triggered() {
                return Finished::Interrupted;
            }
        }
    }

    /// Resets the entry's idle time, so other consumers see it is being worked on and leave
    /// it alone; a failure here (or its loss in a failover) only risks a harmless second
    /// delivery.
    async fn still_mine(&self, id: &str) {
        let touched: redis::RedisResult<redis::Value> = self
            .redis
            .query_unconfirmed(
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
}

#[derive(Debug, Clone, Copy)]
enum Round {
    Read,
    Claim,
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
