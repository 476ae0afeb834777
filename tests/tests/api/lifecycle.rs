//! Account lifecycle across the three databases (issue 16, items 1 and 11): a deleted
//! account's notifications, subscription, message index and conversations go through
//! user-service's account outbox, an email change carries them to the new address, a
//! re-registered address starts empty — also when notification-service was down at the
//! delete — and keys nothing reads again expire or are removed.

use integration_tests::{
    Stack,
    helpers::{EmailIn, eventually, unique_email},
};
use redis::AsyncCommands;
use serde_json::{Value, json};

/// A stack for these tests: signing an address up again is retried while its previous
/// owner's data is still being delivered (503), which the allowance of new passwords per
/// client address (a different protection) would otherwise cut short.
async fn stack_with(extra: &[(&str, &str)]) -> Stack {
    let mut env = vec![("NEW_PASSWORDS_PER_ADDRESS", "0")];
    env.extend_from_slice(extra);
    Stack::start_with_env(&env).await
}

/// Two users who wrote each other once; `first` has one notification (from `second`).
async fn two_correspondents(stack: &Stack) -> (String, String) {
    let first = stack.registered_user("life-a").await;
    let second = stack.registered_user("life-b").await;
    stack.send_ok(&second, &first, "hello first").await;
    stack.send_ok(&first, &second, "hello second").await;
    stack.wait_for_notifications(&first, 1).await;
    stack.wait_for_notifications(&second, 1).await;
    (first, second)
}

async fn conversations(stack: &Stack, email: &str) -> Vec<Value> {
    let (status, body) = stack.list_conversations(EmailIn::Query(email)).await;
    assert_eq!(status, 200, "{body}");
    body["conversations"].as_array().expect("a list").clone()
}

async fn listed_notifications(stack: &Stack, email: &str) -> Vec<Value> {
    let (status, body) = stack.list_notifications(EmailIn::Query(email)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().expect("a list").clone()
}

/// Every key of `db` that names `email`.
async fn keys_naming(stack: &Stack, db: u8, email: &str) -> Vec<String> {
    let mut redis = stack.redis.db(db).await;
    let mut keys: Vec<String> = redis.keys(format!("*{email}*")).await.expect("KEYS");
    keys.sort();
    keys
}

/// Signs `email` up again, waiting while its previous owner's data is still being removed
/// (503); returns once it answers 201.
async fn sign_up_again(stack: &Stack, email: &str) {
    eventually(&format!("{email} to be free again"), || async {
        let (status, body) = stack.create_user(email, "pw-123456", "Newcomer").await;
        match status {
            201 => Some(()),
            503 => None,
            other => panic!("POST /users answered {other}: {body}"),
        }
    })
    .await;
}

/// The newcomer at `email` sees nothing of the previous owner, anywhere.
async fn assert_starts_empty(stack: &Stack, email: &str) {
    assert!(stack.messages_of(email).await.is_empty(), "GetMessages");
    assert!(
        conversations(stack, email).await.is_empty(),
        "conversations"
    );
    assert!(
        listed_notifications(stack, email).await.is_empty(),
        "notifications"
    );
    assert!(stack.stored_notifications(email).await.is_empty());
    assert!(keys_naming(stack, 1, email).await.is_empty());
}

#[tokio::test]
async fn a_deleted_address_signed_up_again_starts_empty() {
    let stack = stack_with(&[]).await;
    let (gone, other) = two_correspondents(&stack).await;
    assert!(!keys_naming(&stack, 2, &gone).await.is_empty());

    let (status, body) = stack.delete_user_by_path(&gone).await;
    assert_eq!(status, 204, "{body}");
    // Delivered inline: every key naming the address is gone from DB 1 and DB 2 (the
    // subscription field too) by the time the address is free again.
    sign_up_again(&stack, &gone).await;
    assert!(keys_naming(&stack, 2, &gone).await.is_empty());
    assert_starts_empty(&stack, &gone).await;
    // The other side keeps its own history, but no conversation leads to the address.
    assert_eq!(stack.messages_of(&other).await.len(), 2);
    assert!(conversations(&stack, &other).await.is_empty());
    // The newcomer is subscribed and gets what is sent to them from now on.
    eventually("the newcomer to be subscribed", || async {
        stack.is_subscribed(&gone).await.then_some(())
    })
    .await;
    stack.send_ok(&other, &gone, "welcome").await;
    let messages = stack.messages_of(&gone).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content.as_deref(), Some("welcome"));
    assert_eq!(stack.wait_for_notifications(&gone, 1).await.len(), 1);
    assert_eq!(conversations(&stack, &other).await, vec![json!(gone)]);
}

#[tokio::test]
async fn a_delete_made_while_notification_service_is_down_is_delivered_when_it_is_back() {
    let mut stack = stack_with(&[]).await;
    let (gone, other) = two_correspondents(&stack).await;
    stack.notification.kill();
    // Waits in message-service's outbox: delivered after the delete, it must not be kept for
    // the address's next owner, whichever of the two outboxes gets through first.
    stack
        .send_ok(&other, &gone, "late, for the old owner")
        .await;

    let (status, body) = stack.delete_user_by_body(&json!({ "email": gone })).await;
    assert_eq!(status, 204, "{body}");
    // Not delivered: the address waits for its previous owner's data to go.
    let (status, body) = stack.create_user(&gone, "pw-123456", "Too early").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("still being delivered"),
        "{body}"
    );
    assert!(!stack.stored_notifications(&gone).await.is_empty());

    stack.notification.restart().await;
    sign_up_again(&stack, &gone).await;
    assert_starts_empty(&stack, &gone).await;
    assert!(conversations(&stack, &other).await.is_empty());
    let outbox: usize = stack
        .redis
        .db(0)
        .await
        .xlen(user_service::keys::ACCOUNT_OUTBOX)
        .await
        .expect("XLEN");
    assert_eq!(outbox, 0, "the delivered change left the outbox");
}

#[tokio::test]
async fn a_notification_for_a_deleted_user_delivered_after_the_forget_is_not_kept_for_the_next_owner()
 {
    let mut stack = stack_with(&[]).await;
    let (gone, other) = two_correspondents(&stack).await;
    // The notification waits in message-service's outbox, and message-service stops before it
    // can deliver it: the account change reaches notification-service first, the late
    // notification only after it.
    stack.notification.kill();
    stack
        .send_ok(&other, &gone, "late, for the old owner")
        .await;
    stack.message.kill();
    let (status, body) = stack.delete_user_by_body(&json!({ "email": gone })).await;
    assert_eq!(status, 204, "{body}");
    stack.notification.restart().await;
    eventually("notification-service to forget the address", || async {
        stack
            .stored_notifications(&gone)
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    stack.message.restart().await;
    sign_up_again(&stack, &gone).await;
    // Both outboxes are drained by now: the late notification was refused, not stored.
    eventually("message-service's outbox to drain", || async {
        let pending: usize = stack
            .redis
            .db(1)
            .await
            .xlen(message_service::keys::NOTIFICATION_OUTBOX)
            .await
            .expect("XLEN");
        (pending == 0).then_some(())
    })
    .await;
    assert_starts_empty(&stack, &gone).await;
    assert!(stack.stored_notifications(&gone).await.is_empty());
}

#[tokio::test]
async fn an_email_change_carries_messages_conversations_and_notifications() {
    let stack = stack_with(&[]).await;
    let (old, other) = two_correspondents(&stack).await;
    let new = unique_email("life-moved");

    let (status, body) = stack.put_user_by_path(&old, &json!({ "email": new })).await;
    assert_eq!(status, 200, "{body}");
    // The old address is free once the change is delivered, and holds nothing.
    sign_up_again(&stack, &old).await;
    assert_starts_empty(&stack, &old).await;

    let messages = stack.messages_of(&new).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    for message in &messages {
        let names = [message.sender_email.clone(), message.receiver_email.clone()];
        assert!(names.contains(&Some(new.clone())), "{message:?}");
        assert!(!names.contains(&Some(old.clone())), "{message:?}");
    }
    assert_eq!(conversations(&stack, &new).await, vec![json!(other)]);
    assert_eq!(conversations(&stack, &other).await, vec![json!(new)]);
    let notifications = listed_notifications(&stack, &new).await;
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    assert_eq!(notifications[0]["receiver_email"], json!(new));
    assert_eq!(notifications[0]["sender_email"], json!(other));
    // Later messages join the same conversation and inbox.
    stack.send_ok(&other, &new, "again").await;
    assert_eq!(stack.messages_of(&new).await.len(), 3);
    assert_eq!(stack.wait_for_notifications(&new, 2).await.len(), 2);
    let mut redis = stack.redis.db(1).await;
    let (first, second) = if new < other {
        (&new, &other)
    } else {
        (&other, &new)
    };
    let count: Option<u64> = redis
        .hget(format!("conversation:{first}:{second}"), "message_count")
        .await
        .expect("HGET");
    assert_eq!(count, Some(3));
}

#[tokio::test]
async fn token_generations_of_addresses_nobody_holds_expire() {
    let stack = stack_with(&[]).await;
    let gone = stack.registered_user("life-gen").await;
    let (status, _) = stack.delete_user_by_path(&gone).await;
    assert_eq!(status, 204);
    let key = user_service::keys::token_generation_key(&gone);
    let mut redis = stack.redis.db(0).await;
    let ttl: i64 = redis.pttl(&key).await.expect("PTTL");
    // AUTH_TOKEN_TTL (1 h by default) plus a minute's margin.
    assert!(ttl > 3_600_000 && ttl <= 3_660_000, "PTTL {ttl}");
    // A user at the address again keeps its generation for as long as it is there.
    sign_up_again(&stack, &gone).await;
    let ttl: i64 = redis.pttl(&key).await.expect("PTTL");
    assert_eq!(ttl, -1, "PERSISTed");
    let generation: Option<u64> = redis.get(&key).await.expect("GET");
    assert_eq!(generation, Some(1));
}

#[tokio::test]
async fn consumer_names_of_gone_replicas_are_removed() {
    let stack = stack_with(&[("OUTBOX_IDLE_CONSUMER_EXPIRY", "1s")]).await;
    let stream = user_service::keys::ACCOUNT_OUTBOX;
    let mut redis = stack.redis.db(0).await;
    let consumers = |redis: &redis::aio::MultiplexedConnection| {
        let mut redis = redis.clone();
        async move {
            let info: redis::streams::StreamInfoConsumersReply = redis
                .xinfo_consumers(stream, "account-delivery")
                .await
                .expect("XINFO CONSUMERS");
            info.consumers
                .into_iter()
                .map(|consumer| consumer.name)
                .collect::<Vec<_>>()
        }
    };
    // The group exists once the worker read the stream.
    eventually("the account outbox's group", || async {
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            redis.clone().xinfo_groups(stream).await;
        groups.ok().filter(|g| !g.groups.is_empty()).map(|_| ())
    })
    .await;
    let created: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(stream)
        .arg("account-delivery")
        .arg("gone-replica-1")
        .query_async(&mut redis)
        .await
        .expect("XGROUP CREATECONSUMER");
    assert_eq!(created, 1);
    assert!(
        consumers(&redis)
            .await
            .contains(&"gone-replica-1".to_owned())
    );
    let left = eventually("the gone replica's consumer to be removed", || async {
        let names = consumers(&redis).await;
        (!names.contains(&"gone-replica-1".to_owned())).then_some(names)
    })
    .await;
    // The live replica reads every poll: it stays (or, if it was idle a moment, is back).
    eventually("the live consumer", || async {
        let names = consumers(&redis).await;
        (!names.is_empty()).then_some(())
    })
    .await;
    assert!(left.iter().all(|name| name != "gone-replica-1"));
}
