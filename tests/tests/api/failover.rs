//! Redis behind Sentinel: the primary is killed in the middle of a burst of sends, Sentinel
//! promotes the replica, and the services follow it by themselves. With
//! `REDIS_MIN_REPLICAS_ACK=1` nothing a client was told succeeded is lost; with 0 the loss is
//! counted (and printed), not asserted.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use integration_tests::{
    RedisServer, Stack,
    helpers::{PATIENCE, eventually, message},
    sentinel::HaRedis,
};
use message_service::keys::user_messages_key;
use notification_service::keys::notifications_key;
use proto::frontend_service::Notification;
use redis::AsyncCommands;
use serde_json::Value;
use tonic::{Code, Status, Streaming};

const SENDS: usize = 1000;
const CONCURRENCY: usize = 8;
const KILL_AFTER: usize = 300;

/// The services on `ha`'s sentinels, writes acknowledged after `min_replicas_ack` replicas.
async fn stack_on(ha: &HaRedis, min_replicas_ack: u32) -> Stack {
    Stack::start_with_env(&[
        ("REDIS_SENTINELS", ha.sentinels_env()),
        ("REDIS_MIN_REPLICAS_ACK", min_replicas_ack.to_string()),
        ("REDIS_WAIT_TIMEOUT", "500ms".to_owned()),
    ])
    .await
}

/// One answered send: which, when it started and ended, and what it was answered.
struct Answer {
    content: String,
    started: Instant,
    ended: Instant,
    outcome: Result<bool, Status>,
}

/// What a run of [`sends_across_a_failover`] saw.
struct Run {
    stack: Stack,
    ha: HaRedis,
    receiver: String,
    answers: Vec<Answer>,
    killed_at: Instant,
    promoted_after: Duration,
    rejoined_after: Duration,
}

/// Sends [`SENDS`] messages from [`CONCURRENCY`] senders to one watched receiver and kills
/// the primary after [`KILL_AFTER`] successes; waits for Sentinel to promote the replica,
/// then starts the old primary again and waits until it is the new one's replica.
async fn sends_across_a_failover(min_replicas_ack: u32) -> (Run, Streaming<Notification>) {
    let mut ha = HaRedis::start().await;
    let stack = stack_on(&ha, min_replicas_ack).await;
    let receiver = stack.registered_user("failover-receiver").await;
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        senders.push(stack.registered_user("failover-sender").await);
    }
    eventually("the receiver's subscription", || async {
        stack.is_subscribed(&receiver).await.then_some(())
    })
    .await;
    let watch = stack.watch(&receiver).await;

    let next = Arc::new(AtomicUsize::new(0));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for sender in senders {
        let mut client = stack.message_client().await;
        let (next, succeeded, receiver) = (next.clone(), succeeded.clone(), receiver.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= SENDS {
                    return answers;
                }
                let content = format!("failover {n}");
                let started = Instant::now();
                let request = message(Some(&sender), Some(&receiver), Some(&content));
                let outcome = client
                    .send_message(request)
                    .await
                    .map(|reply| reply.into_inner().success == Some(true));
                if matches!(outcome, Ok(true)) {
                    succeeded.fetch_add(1, Ordering::SeqCst);
                }
                answers.push(Answer {
                    content,
                    started,
                    ended: Instant::now(),
                    outcome,
                });
            }
        }));
    }
    eventually(&format!("{KILL_AFTER} successful sends"), || async {
        (succeeded.load(Ordering::SeqCst) >= KILL_AFTER).then_some(())
    })
    .await;
    ha.primary.kill();
    let killed_at = Instant::now();
    ha.wait_for_primary(ha.replica.port()).await;
    let promoted_after = killed_at.elapsed();
    // The new primary has no replica until the old one is back: with
    // REDIS_MIN_REPLICAS_ACK=1 writes are refused as not yet replicated meanwhile.
    ha.rejoin_old_primary().await;
    let rejoined_after = killed_at.elapsed();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("a sender task"));
    }
    let run = Run {
        stack,
        ha,
        receiver,
        answers,
        killed_at,
        promoted_after,
        rejoined_after,
    };
    (run, watch)
}

impl Run {
    fn acknowledged(&self) -> impl Iterator<Item = &Answer> {
        self.answers
            .iter()
            .filter(|answer| matches!(answer.outcome, Ok(true)))
    }

    /// From the kill to the first success of a send started after `since` (after the kill).
    fn first_success_after(&self, since: Duration) -> Option<Duration> {
        self.acknowledged()
            .filter(|answer| answer.started >= self.killed_at + since)
            .map(|answer| answer.ended - self.killed_at)
            .min()
    }

    fn summary(&self, failures: usize) -> String {
        format!(
            "promoted {:?} after the kill, first success {:?} after it; old primary back as a \
             replica after {:?}, first success after that {:?}; {} acknowledged, {failures} \
             UNAVAILABLE",
            self.promoted_after,
            self.first_success_after(Duration::ZERO),
            self.rejoined_after,
            self.first_success_after(self.rejoined_after),
            self.acknowledged().count(),
        )
    }

    /// Every failure, which must be `UNAVAILABLE`, and no send answered `success=false`.
    fn assert_failures_are_unavailable(&self) -> usize {
        let mut failures = 0;
        for answer in &self.answers {
            match &answer.outcome {
                Ok(true) => {}
                Ok(false) => panic!("{} was answered success=false", answer.content),
                Err(status) => {
                    assert_eq!(
                        status.code(),
                        Code::Unavailable,
                        "{}: {status:?}",
                        answer.content
                    );
                    failures += 1;
                }
            }
        }
        failures
    }

    /// The receiver's messages (content → sender) and notifications (parsed, oldest first)
    /// on the new primary, once every stored message has its notification.
    async fn stored(&self) -> (HashMap<String, String>, Vec<Value>) {
        let primary = &self.ha.replica;
        eventually("a notification for every stored message", || async {
            let messages = messages_on(primary, &self.receiver).await;
            let notifications = notifications_on(primary, &self.receiver).await;
            (notifications.len() >= messages.len()).then_some((messages, notifications))
        })
        .await
    }

    /// [`Run::stored`] where a notification may have been lost (`REDIS_MIN_REPLICAS_ACK=0`): a
    /// notification written on the old primary only, whose message's outbox entry was then
    /// deleted on the new one (the inline delivery's `XDEL`, retried across the failover), is
    /// gone for good. Waits as long as [`Run::stored`] would for the rest to arrive, then
    /// returns what is there.
    async fn stored_allowing_loss(&self) -> (HashMap<String, String>, Vec<Value>) {
        let primary = &self.ha.replica;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let messages = messages_on(primary, &self.receiver).await;
            let notifications = notifications_on(primary, &self.receiver).await;
            if notifications.len() >= messages.len() || Instant::now() >= deadline {
                return (messages, notifications);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn messages_on(redis: &RedisServer, receiver: &str) -> HashMap<String, String> {
    let mut db = redis.db(message_service::REDIS_DB).await;
    let ids: Vec<u64> = db
        .zrange(user_messages_key(receiver), 0, -1)
        .await
        .expect("ZRANGE the receiver's messages");
    let keys: Vec<String> = ids
        .iter()
        .map(|id| message_service::keys::message_key(*id))
        .collect();
    let raw: Vec<Option<String>> = if keys.is_empty() {
        Vec::new()
    } else {
        db.mget(&keys).await.expect("MGET the messages")
    };
    raw.into_iter()
        .flatten()
        .map(|json| {
            let stored: Value = serde_json::from_str(&json).expect("a stored message is JSON");
            (
                stored["content"].as_str().expect("content").to_owned(),
                stored["sender_email"].as_str().expect("sender").to_owned(),
            )
        })
        .collect()
}

async fn notifications_on(redis: &RedisServer, receiver: &str) -> Vec<Value> {
    let raw: Vec<String> = redis
        .db(notification_service::REDIS_DB)
        .await
        .lrange(notifications_key(receiver), 0, -1)
        .await
        .expect("LRANGE the notifications");
    let mut parsed: Vec<Value> = raw
        .iter()
        .map(|json| serde_json::from_str(json).expect("a stored notification is JSON"))
        .collect();
    parsed.reverse();
    parsed
}

/// Reads `watch` until it has streamed every id of `wanted`, watching again after its last
/// cursor when it ends with `UNAVAILABLE` (as a client is told to); fails on a repeat or a
/// cursor out of order. Returns how often it had to watch again.
async fn watched_in_order(
    stack: &Stack,
    receiver: &str,
    mut watch: Streaming<Notification>,
    wanted: &HashSet<String>,
) -> usize {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = HashSet::new();
    let mut last_cursor = 0;
    let mut resumed = 0;
    while !wanted.is_subset(&seen) {
        let next = tokio::time::timeout_at(deadline, watch.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {} notifications watched",
                    seen.len(),
                    wanted.len()
                )
            });
        let next = match next {
            Ok(Some(next)) => next,
            Err(status) if status.code() == Code::Unavailable => {
                resumed += 1;
                watch = stack
                    .watch_after(stack.frontend_port, receiver, Some(last_cursor))
                    .await;
                continue;
            }
            other => panic!("the watch ended: {other:?}"),
        };
        let id = next.notification_id.unwrap_or_default();
        assert!(seen.insert(id.clone()), "{id} was watched twice");
        let cursor = next.cursor.unwrap_or_default();
        assert!(
            cursor > last_cursor,
            "{id} watched out of order ({cursor} after {last_cursor})"
        );
        last_cursor = cursor;
    }
    resumed
}

fn ids(notifications: &[Value]) -> HashSet<String> {
    notifications
        .iter()
        .map(|n| n["notification_id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_replica_acknowledging_a_failover_loses_no_acknowledged_send() {
    let (run, watch) = sends_across_a_failover(1).await;
    let failures = run.assert_failures_are_unavailable();
    let (messages, notifications) = run.stored().await;
    for answer in run.acknowledged() {
        assert!(
            messages.contains_key(&answer.content),
            "{} was acknowledged but is not on the new primary",
            answer.content
        );
    }
    // Exactly one notification per stored message, per sender.
    let mut per_sender: HashMap<&str, (usize, usize)> = HashMap::new();
    for sender in messages.values() {
        per_sender.entry(sender).or_default().0 += 1;
    }
    for notification in &notifications {
        let sender = notification["sender_email"].as_str().expect("a sender");
        per_sender.entry(sender).or_default().1 += 1;
    }
    for (sender, (sent, notified)) in &per_sender {
        assert_eq!(
            sent, notified,
            "{sender}: messages and notifications differ"
        );
    }
    let wanted = ids(&notifications);
    assert_eq!(
        wanted.len(),
        notifications.len(),
        "a notification id stored twice"
    );
    let resumed = watched_in_order(&run.stack, &run.receiver, watch, &wanted).await;
    eprintln!(
        "failover (REDIS_MIN_REPLICAS_ACK=1): {}; 0 acknowledged sends lost; the watcher \
         resumed {resumed} times",
        run.summary(failures),
    );

    // No service was restarted: they serve on, and the old primary has their new writes.
    run.stack
        .send_ok(&run.receiver, &run.receiver, "after the failover")
        .await;
    eventually("the old primary to copy the new writes", || async {
        let copied = messages_on(&run.ha.primary, &run.receiver).await;
        copied.contains_key("after the failover").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_replica_acknowledgement_a_failover_may_lose_acknowledged_sends() {
    let (run, _watch) = sends_across_a_failover(0).await;
    let failures = run.assert_failures_are_unavailable();
    let (messages, notifications) = run.stored_allowing_loss().await;
    let lost = run
        .acknowledged()
        .filter(|answer| !messages.contains_key(&answer.content))
        .count();
    let without_notification = messages.len().saturating_sub(notifications.len());
    eprintln!(
        "failover (REDIS_MIN_REPLICAS_ACK=0): {}; {lost} acknowledged sends lost, \
         {without_notification} stored messages without their notification",
        run.summary(failures),
    );
    run.stack
        .send_ok(&run.receiver, &run.receiver, "after the failover")
        .await;
}
