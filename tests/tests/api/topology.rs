//! Redis laid out other ways than one server for everything: a sentinel that dies, a primary
//! with no replica to confirm writes, and a Redis per service.

use integration_tests::{
    RedisServer, Stack,
    helpers::{eventually, message, next_notifications, send_over},
    sentinel::HaRedis,
};
use tonic::Code;

/// The services on `ha`'s sentinels, each write confirmed by one replica within 200 ms.
async fn stack_on(ha: &HaRedis) -> Stack {
    Stack::start_with_env(&[
        ("REDIS_SENTINELS", ha.sentinels_env()),
        ("REDIS_MIN_REPLICAS_ACK", "1".to_owned()),
        ("REDIS_WAIT_TIMEOUT", "200ms".to_owned()),
    ])
    .await
}

/// The contents of `email`'s messages, as message-service lists them.
async fn contents(stack: &Stack, email: &str) -> Vec<String> {
    let mut contents: Vec<String> = (stack.messages_of(email).await.into_iter())
        .map(|message| message.content.unwrap_or_default())
        .collect();
    contents.sort();
    contents
}

/// Sends until one is answered `success=true` (while the system recovers).
async fn eventually_sent(stack: &Stack, sender: &str, receiver: &str, content: &str) {
    let client = stack.message_client().await;
    eventually(&format!("{content:?} to be sent"), || {
        let request = message(Some(sender), Some(receiver), Some(content));
        let mut client = client.clone();
        async move {
            match client.send_message(request).await {
                Ok(reply) => reply.into_inner().success.filter(|ok| *ok).map(|_| ()),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    None
                }
            }
        }
    })
    .await;
}

/// The refusal of a send expected to be refused.
async fn refused_send(stack: &Stack, sender: &str, receiver: &str, content: &str) -> tonic::Status {
    let request = message(Some(sender), Some(receiver), Some(content));
    let sent = stack.message_client().await.send_message(request).await;
    sent.expect_err(&format!("{content:?} to be refused"))
}

async fn health(stack: &Stack) -> u16 {
    let response = stack.http().get(stack.message_url("/health")).send().await;
    response.expect("GET /health").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_sentinel_is_passed_over_and_the_others_still_fail_over() {
    let mut ha = HaRedis::start().await;
    let stack = stack_on(&ha).await;
    let sender = stack.registered_user("sentinel-sender").await;
    let receiver = stack.registered_user("sentinel-receiver").await;
    // The first sentinel every service asks.
    ha.sentinels[0].kill();
    stack.send_ok(&sender, &receiver, "one sentinel down").await;

    ha.primary.kill();
    ha.wait_for_primary(ha.replica.port()).await;
    ha.rejoin_old_primary().await;
    eventually_sent(&stack, &sender, &receiver, "after the failover").await;
    assert_eq!(
        contents(&stack, &receiver).await,
        ["after the failover", "one sentinel down"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_replica_writes_are_refused_as_not_replicated_and_a_killed_primary_corrupts_nothing()
 {
    let mut ha = HaRedis::start().await;
    let stack = stack_on(&ha).await;
    let sender = stack.registered_user("lonely-sender").await;
    let receiver = stack.registered_user("lonely-receiver").await;
    stack.send_ok(&sender, &receiver, "replicated").await;

    // No replica: a write is refused, retryably and saying why; reads and health carry on.
    ha.replica.kill();
    let refused = refused_send(&stack, &sender, &receiver, "unreplicated").await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("not yet replicated"),
        "{refused:?}"
    );
    assert!(
        refused.metadata().get("retry-after").is_some(),
        "{refused:?}"
    );
    // The refused message is on the primary, unconfirmed: it may or may not be listed. Once
    // a WAIT has found the replica gone, writes wait for it *before* they are written: the
    // next send is refused without being stored.
    let again = refused_send(&stack, &sender, &receiver, "refused unwritten").await;
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    let listed = contents(&stack, &receiver).await;
    assert!(
        listed == ["replicated"] || listed == ["replicated", "unreplicated"],
        "{listed:?}"
    );
    assert_eq!(health(&stack).await, 200, "the primary is reachable");

    // The primary dies too: nothing to fail over to. Health says so until it is back.
    ha.primary.kill();
    eventually("health to report the primary gone", || async {
        (health(&stack).await == 503).then_some(())
    })
    .await;
    let refused = refused_send(&stack, &sender, &receiver, "no primary").await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    ha.primary.start_again().await;
    ha.replica.start_again().await;
    ha.replica.wait_for_link_up().await;
    eventually("health to report the primary back", || async {
        (health(&stack).await == 200).then_some(())
    })
    .await;
    eventually_sent(&stack, &sender, &receiver, "after the outage").await;
    // Nothing confirmed was lost, nothing was doubled; what was refused was never confirmed
    // and may or may not have survived the primary's restart.
    let listed = contents(&stack, &receiver).await;
    assert!(
        listed == ["after the outage", "replicated"]
            || listed == ["after the outage", "replicated", "unreplicated"],
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_service_on_a_redis_of_its_own() {
    let users = RedisServer::start().await;
    let messages = RedisServer::start().await;
    let notifications = RedisServer::start().await;
    let own = |service: &str| {
        let redis = match service {
            "user-service" => &users,
            "message-service" => &messages,
            "notification-service" => &notifications,
            // frontend-service keeps the stack's Redis: its live feed's channels only.
            _ => return Vec::new(),
        };
        vec![("REDIS_URL".to_owned(), redis.url())]
    };
    let stack = Stack::start_with_env_of::<&str, &str>(&[], own).await;
    let sender = stack.registered_user("own-redis-sender").await;
    let receiver = stack.registered_user("own-redis-receiver").await;
    eventually("the receiver's subscription", || async {
        stack.is_subscribed(&receiver).await.then_some(())
    })
    .await;
    let mut watch = stack.watch(&receiver).await;
    stack
        .send_ok(&sender, &receiver, "across three servers")
        .await;
    let streamed = next_notifications(&mut watch, 1).await;
    assert_eq!(streamed[0].sender_email.as_deref(), Some(sender.as_str()));
    assert_eq!(contents(&stack, &receiver).await, ["across three servers"]);

    // Each server holds its service's database and nothing else.
    for (redis, db, name) in [
        (&users, user_service::REDIS_DB, "users"),
        (&messages, message_service::REDIS_DB, "messages"),
        (
            &notifications,
            notification_service::REDIS_DB,
            "notifications",
        ),
        (&stack.redis, u8::MAX, "frontend"),
    ] {
        for index in 0..=2 {
            let keys: u64 = redis::cmd("DBSIZE")
                .query_async(&mut redis.db(index).await)
                .await
                .expect("DBSIZE");
            assert_eq!(
                keys > 0,
                index == db,
                "{name}'s Redis, DB {index}: {keys} keys"
            );
        }
    }
}

/// How many Redis commands a send costs, all services together, those its scripts call
/// included (docs/operations.md, "How far one primary per service database carries");
/// background polling (outbox reads, backlog samples, health) is counted too, so the figure
/// is an upper bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_costs_redis_a_bounded_number_of_commands() {
    const SENDS: usize = 200;
    let stack = Stack::start().await;
    let sender = stack.registered_user("cost-sender").await;
    let receiver = stack.registered_user("cost-receiver").await;
    stack.send_ok(&sender, &receiver, "warm-up").await;
    stack.wait_for_notification_outbox_drained().await;
    let mut admin = stack.redis.db(0).await;
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut admin)
        .await
        .expect("CONFIG RESETSTAT");
    let mut client = stack.message_client().await;
    for n in 0..SENDS {
        let reply = send_over(&mut client, &sender, &receiver, &format!("cost {n}")).await;
        assert_eq!(reply.success, Some(true), "{reply:?}");
    }
    stack.wait_for_notification_outbox_drained().await;
    stack.wait_for_frontend_outbox_drained().await;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut admin)
        .await
        .expect("INFO commandstats");
    let mut calls: Vec<(String, u64)> = stats
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            Some((name.to_owned(), rest.split(',').next()?.parse().ok()?))
        })
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect();
    calls.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let total: u64 = calls.iter().map(|(_, n)| n).sum();
    let per_send = total as f64 / SENDS as f64;
    eprintln!("Redis commands per send: {per_send:.1} ({calls:?})");
    assert!(
        per_send <= 40.0,
        "{per_send:.1} commands per send: {calls:?}"
    );
}

/// With a replica confirming writes, a send waits for it at most twice (message-service's
/// script and notification-service's; the message-id counter and the outbox deletions wait for
/// none), and concurrent sends share `WAIT`s rather than adding any (one `WAIT` confirms every
/// write answered on its connection before it went out).
#[tokio::test(flavor = "multi_thread")]
async fn a_replicated_send_waits_for_its_replica_at_most_twice() {
    const ONE_BY_ONE: usize = 50;
    const CONCURRENT: usize = 16;
    const EACH: usize = 5;
    let ha = HaRedis::start().await;
    let stack = stack_on(&ha).await;
    let sender = stack.registered_user("waits-sender").await;
    let receiver = stack.registered_user("waits-receiver").await;
    eventually_sent(&stack, &sender, &receiver, "warm-up").await;
    let mut admin = ha.primary.db(0).await;
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut admin)
        .await
        .expect("CONFIG RESETSTAT");
    let client = stack.message_client().await;
    for n in 0..ONE_BY_ONE {
        let reply = send_over(&mut client.clone(), &sender, &receiver, &format!("one {n}")).await;
        assert_eq!(reply.success, Some(true), "{reply:?}");
    }
    let one_by_one = wait_calls(&mut admin).await;
    let senders = (0..CONCURRENT).map(|task| {
        let (mut client, sender, receiver) = (client.clone(), sender.clone(), receiver.clone());
        tokio::spawn(async move {
            for n in 0..EACH {
                let content = format!("together {task}.{n}");
                let reply = send_over(&mut client, &sender, &receiver, &content).await;
                assert_eq!(reply.success, Some(true), "{reply:?}");
            }
        })
    });
    for sender in senders.collect::<Vec<_>>() {
        sender.await.expect("a sender task");
    }
    let together = wait_calls(&mut admin).await - one_by_one;
    eprintln!(
        "WAITs: {one_by_one} for {ONE_BY_ONE} sends one by one, {together} for {} concurrent ones",
        CONCURRENT * EACH
    );
    // A little slack for what the services write meanwhile besides the sends.
    const BACKGROUND: u64 = 10;
    assert!(
        one_by_one <= 2 * ONE_BY_ONE as u64 + BACKGROUND,
        "{one_by_one} WAITs"
    );
    assert!(
        together <= 2 * (CONCURRENT * EACH) as u64 + BACKGROUND,
        "{together} WAITs"
    );
    let stored = contents(&stack, &receiver).await.len();
    assert!(
        stored > ONE_BY_ONE + CONCURRENT * EACH,
        "{stored} messages stored"
    );
}

/// How many `WAIT`s the server has run since its statistics were reset.
async fn wait_calls(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO commandstats");
    stats
        .lines()
        .find_map(|line| {
            line.strip_prefix("cmdstat_wait:calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
