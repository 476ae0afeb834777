//! The stack tried as a hostile client and as a client of the original would use it: a peer
//! down while users are created and messaged, reads right after writes (also across two
//! replicas of every service), forged notification ids, Redis losing its data, oversized
//! input and addresses that could break the key layout.

use std::sync::Arc;

use futures::future::join_all;
use integration_tests::{
    ServiceProcess, Stack,
    helpers::{EmailIn, assert_error, message, receive_ids, send_over, unique_email},
};
use message_service::keys::MESSAGE_ID_COUNTER;
use notification_service::keys::{SUBSCRIPTIONS, notifications_key};
use proto::{
    frontend_service::Notification, message_service::message_service_client::MessageServiceClient,
    notification_service::CreateNotificationRequest,
};
use redis::AsyncCommands;
use serde_json::json;
use tonic::transport::Channel;

/// How many notifications `email` has stored right now (no waiting: read-your-writes).
async fn stored_now<S>(stack: &Stack<S>, email: &str) -> usize {
    stack
        .redis
        .db(2)
        .await
        .llen(notifications_key(email))
        .await
        .expect("LLEN notifications")
}

async fn message_counter<S>(stack: &Stack<S>) -> Option<u64> {
    stack
        .redis
        .db(1)
        .await
        .get(MESSAGE_ID_COUNTER)
        .await
        .expect("GET the message id counter")
}

// ---------------------------------------------------------------------------------------------
// Nothing is lost
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_user_created_and_messaged_while_notification_service_is_down_is_notified_once_it_is_back()
 {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    stack.notification.terminate().await;
    let x = unique_email("x");

    let (status, body) = stack.create_user(&x, "pw", "X").await;
    assert_eq!(status, 201, "{body}");
    stack
        .send_ok(&alice, &x, "while notification-service is down")
        .await;
    stack.notification.restart().await;

    let mut live = stack.watch(&x).await;
    let ids = stack.distinct_notification_ids(&x, 1).await;
    assert_eq!(receive_ids(&mut live, &ids).await, ids);
    let subscription = stack.wait_for_subscription(&x).await;
    assert_eq!(subscription["subscribed"], true);
}

// ---------------------------------------------------------------------------------------------
// Read-your-writes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_notification_is_stored_when_send_message_answers() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut client = stack.message_client().await;

    for n in 1..=50 {
        let reply = send_over(&mut client, &alice, &bob, &format!("n{n}")).await;
        assert_eq!(reply.success, Some(true));
        assert_eq!(stored_now(&stack, &bob).await, n, "after send {n}");
    }
}

#[tokio::test]
async fn the_notification_is_stored_when_send_message_answers_with_four_concurrent_senders() {
    let stack = Arc::new(Stack::in_process().await);
    let sender = stack.registered_user("sender").await;
    let mut receivers = Vec::new();
    for n in 0..4 {
        receivers.push(stack.registered_user(&format!("receiver{n}")).await);
    }

    let senders = receivers.into_iter().map(|receiver| {
        let (stack, sender) = (Arc::clone(&stack), sender.clone());
        async move {
            let mut client = stack.message_client().await;
            for n in 1..=25 {
                send_over(&mut client, &sender, &receiver, &format!("n{n}")).await;
                assert_eq!(
                    stored_now(&stack, &receiver).await,
                    n,
                    "{receiver} after {n}"
                );
            }
        }
    });
    join_all(senders).await;
}

#[tokio::test]
async fn reads_follow_writes_with_two_replicas_of_every_service() {
    let stack = Stack::start().await;
    let frontend_2 = ServiceProcess::start("frontend-service", stack.replica_env()).await;
    let mut env = stack.replica_env();
    env.push((
        "FRONTEND_SERVICE_GRPC_URL".into(),
        format!("http://127.0.0.1:{}", frontend_2.grpc_port()),
    ));
    let notification_2 = ServiceProcess::start("notification-service", env.clone()).await;
    env.push((
        "NOTIFICATION_SERVICE_GRPC_URL".into(),
        format!("http://127.0.0.1:{}", notification_2.grpc_port()),
    ));
    let user_2 = ServiceProcess::start("user-service", env.clone()).await;
    env.push((
        "USER_SERVICE_GRPC_URL".into(),
        format!("http://127.0.0.1:{}", user_2.grpc_port()),
    ));
    let message_2 = ServiceProcess::start("message-service", env).await;
    let http = reqwest::Client::new();

    // Created through the second user-service: subscribed when the 201 arrives.
    let mut users = Vec::new();
    for n in 0..4 {
        let email = unique_email(&format!("replica{n}"));
        let created = http
            .post(format!(
                "http://127.0.0.1:{}/users",
                user_2.ports().http.expect("HTTP")
            ))
            .json(&json!({ "email": email, "password": "pw", "name": "R" }))
            .send()
            .await
            .expect("POST /users");
        assert_eq!(created.status(), 201);
        let subscription: Option<String> = stack
            .redis
            .db(2)
            .await
            .hget(SUBSCRIPTIONS, &email)
            .await
            .expect("HGET");
        assert!(subscription.is_some(), "{email} subscribed at once");
        users.push(email);
    }
    let mut clients: Vec<MessageServiceClient<Channel>> = vec![
        stack.message_client().await,
        MessageServiceClient::new(Stack::channel(message_2.grpc_port()).await),
    ];

    for n in 1..=20 {
        let client = &mut clients[n % 2];
        let receiver = &users[n % 4];
        let before = stored_now(&stack, receiver).await;
        let reply = send_over(client, &users[0], receiver, &format!("n{n}")).await;
        assert_eq!(reply.success, Some(true));
        assert_eq!(stored_now(&stack, receiver).await, before + 1, "send {n}");
    }
}

// ---------------------------------------------------------------------------------------------
// Ids nobody can forge or reuse
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_notification_planted_with_a_chosen_id_does_not_suppress_a_real_one() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    for planted in ["message-1", "message-2", "1"] {
        assert!(
            stack
                .create_notification(Some("mallory@example.com"), Some(&bob), Some(planted))
                .await
        );
    }
    // The same id from another sender is that sender's own notification, not a repeat.
    assert!(
        stack
            .create_notification(Some(&alice), Some(&bob), Some("message-1"))
            .await
    );

    stack.send_ok(&alice, &bob, "real").await;

    let stored = stack.wait_for_notifications(&bob, 5).await;
    assert_eq!(stored[0]["sender_email"], alice.as_str());
    assert!(
        uuid::Uuid::parse_str(stored[0]["notification_id"].as_str().expect("id")).is_ok(),
        "{}",
        stored[0]
    );
}

#[tokio::test]
async fn notifications_keep_reaching_the_frontend_after_redis_loses_its_data() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut live = stack.watch(&bob).await;
    stack.send_ok(&alice, &bob, "before").await;
    let before = stack.distinct_notification_ids(&bob, 1).await;
    assert_eq!(receive_ids(&mut live, &before).await, before);
    stack.wait_for_frontend_outbox_drained().await;

    for db in [1, 2] {
        let _: () = redis::cmd("FLUSHDB")
            .query_async(&mut stack.redis.db(db).await)
            .await
            .expect("FLUSHDB");
    }
    stack.send_ok(&alice, &bob, "after the loss").await;

    assert_eq!(message_counter(&stack).await, Some(1), "ids restarted");
    let after = stack.distinct_notification_ids(&bob, 1).await;
    assert!(after.is_disjoint(&before));
    assert_eq!(receive_ids(&mut live, &after).await, after);
}

// ---------------------------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_message_content_is_refused_and_nothing_is_stored() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;

    let over_limit = stack.send(&alice, &bob, &"x".repeat(64 * 1024 + 1)).await;
    let huge = stack
        .message_client()
        .await
        .max_encoding_message_size(8 * 1024 * 1024)
        .send_message(message(
            Some(&alice),
            Some(&bob),
            Some(&"x".repeat(4_000_000)),
        ))
        .await;
    let at_limit = stack.send(&alice, &bob, &"x".repeat(64 * 1024)).await;

    assert_eq!(over_limit.success, Some(false));
    assert_eq!(
        over_limit.message.as_deref(),
        Some("content is longer than 65536 bytes")
    );
    let refused = huge.expect_err("a 4 MB request is refused before it is read");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert_eq!(at_limit.success, Some(true));
    assert_eq!(
        message_counter(&stack).await,
        Some(1),
        "only the one at the limit"
    );
    assert_eq!(stack.messages_of(&bob).await.len(), 1);
}

#[tokio::test]
async fn oversized_notification_fields_are_refused_and_nothing_is_stored() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let long_sender = format!("{}@example.com", "s".repeat(1024 * 1024));
    let mut client = stack
        .notification_client()
        .await
        .max_encoding_message_size(8 << 20);

    let huge = client
        .create_notification(CreateNotificationRequest {
            sender_email: Some(long_sender.clone()),
            receiver_email: Some(bob.clone()),
            notification_id: Some("x".repeat(1024 * 1024)),
        })
        .await;
    let long_sender = stack
        .create_notification(Some(&long_sender[..2000]), Some(&bob), None)
        .await;
    let long_id = stack
        .create_notification(Some("s@example.com"), Some(&bob), Some(&"i".repeat(129)))
        .await;

    assert!(huge.is_err(), "{huge:?}");
    assert!(!long_sender);
    assert!(!long_id);
    assert_eq!(stored_now(&stack, &bob).await, 0);
}

#[tokio::test]
async fn oversized_pushes_to_the_frontend_are_refused() {
    let stack = Stack::in_process().await;
    let mut client = stack
        .frontend_client()
        .await
        .max_encoding_message_size(8 << 20);
    let push = |timestamp: String| Notification {
        sender_email: Some("a@example.com".into()),
        receiver_email: Some("b@example.com".into()),
        timestamp: Some(timestamp),
        read: Some(false),
        notification_id: Some("n".into()),
        cursor: None,
    };

    let huge = client.receive_notification(push("t".repeat(3 << 20))).await;
    let long = client
        .receive_notification(push("t".repeat(100_000)))
        .await
        .expect("answered");

    assert!(huge.is_err(), "{huge:?}");
    assert!(!long.into_inner().success);
}

#[tokio::test]
async fn an_oversized_user_field_is_refused_with_a_400() {
    let stack = Stack::in_process().await;
    let email = unique_email("long");

    let (status, body) = stack.create_user(&email, "pw", &"n".repeat(1025)).await;

    assert_error(status, &body, 400);
    assert_eq!(body["message"], "name is longer than 1024 bytes");
    assert_eq!(stack.stored_user(&email).await, None);
}

// ---------------------------------------------------------------------------------------------
// Strict emails
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn addresses_that_could_share_a_conversation_key_or_fool_a_reader_are_refused() {
    let stack = Stack::in_process().await;
    let suffix = unique_email("k").replace('@', ".");
    let (p, s) = (format!("p@q.{suffix}"), format!("s@t.{suffix}"));
    let (colon_after, colon_before) = (format!("{p}:r"), format!("r:{s}"));

    for ok in [&p, &s] {
        assert_eq!(stack.create_user(ok, "pw", "ok").await.0, 201, "{ok}");
    }
    for bad in [
        colon_after.clone(),
        colon_before.clone(),
        format!("a*{suffix}@x.io"),
        format!("ad\u{202E}min{suffix}@x.io"),
        format!("ad\u{200B}min{suffix}@x.io"),
    ] {
        let (status, body) = stack.create_user(&bad, "pw", "bad").await;
        assert_error(status, &body, 400);
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a valid email address")),
            "{body}"
        );
        assert_eq!(stack.stored_user(&bad).await, None);
        let (status, _) = stack.list_conversations(EmailIn::Query(&bad)).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    // The pair (p, s) is the only one that can be stored: its key is unambiguous.
    stack.send_ok(&p, &s, "hi").await;
    let refused = stack.send(&colon_after, &colon_before, "hi").await;
    assert_eq!(refused.success, Some(false));
}

#[tokio::test]
async fn the_domain_of_an_address_is_lower_cased() {
    let stack = Stack::in_process().await;
    let local = unique_email("Mixed").replace("@example.com", "");

    let (status, body) = stack
        .create_user(&format!("{local}@Example.COM"), "pw", "M")
        .await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["email"], format!("{local}@example.com"));
    assert!(
        stack
            .stored_user(&format!("{local}@example.com"))
            .await
            .is_some()
    );
    assert!(
        stack
            .user_exists(Some(&format!("{local}@EXAMPLE.com")))
            .await
    );
}
