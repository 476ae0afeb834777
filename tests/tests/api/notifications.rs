//! notification-service: subscriptions, CreateNotification, /list_notifications, the DB 2
//! layout, and what an unsubscribed receiver gets.

use std::collections::HashSet;

use integration_tests::{Stack, unique_email};
use proto::notification_service::{
    CreateNotificationRequest, SubscribeUserRequest, UnsubscribeUserRequest,
};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::flow::{
    PATIENCE, assert_email_is_required, get_with_body, get_with_query, ids_of, is_subscribed,
    messages_of, registered_user, send_ok, stored_notifications,
    wait_for_notification_outbox_drained, wait_for_notifications, watch,
};

async fn subscribe(stack: &Stack, email: Option<&str>) -> bool {
    stack
        .notification_client()
        .await
        .subscribe_user(SubscribeUserRequest {
            email: email.map(str::to_owned),
        })
        .await
        .expect("SubscribeUser answers OK")
        .into_inner()
        .success
        .expect("success is always set")
}

async fn unsubscribe(stack: &Stack, email: Option<&str>) -> bool {
    stack
        .notification_client()
        .await
        .unsubscribe_user(UnsubscribeUserRequest {
            email: email.map(str::to_owned),
        })
        .await
        .expect("UnsubscribeUser answers OK")
        .into_inner()
        .success
        .expect("success is always set")
}

async fn create(
    stack: &Stack,
    sender: Option<&str>,
    receiver: Option<&str>,
    id: Option<&str>,
) -> bool {
    stack
        .notification_client()
        .await
        .create_notification(CreateNotificationRequest {
            sender_email: sender.map(str::to_owned),
            receiver_email: receiver.map(str::to_owned),
            notification_id: id.map(str::to_owned),
        })
        .await
        .expect("CreateNotification answers OK")
        .into_inner()
        .success
        .expect("success is always set")
}

/// The `subscriptions` hash field of `email` in DB 2, as stored.
async fn stored_subscription(stack: &Stack, email: &str) -> Option<String> {
    stack
        .redis
        .db(2)
        .await
        .hget("subscriptions", email)
        .await
        .expect("HGET subscriptions")
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribing_stores_a_json_subscription_with_a_real_boolean_and_is_idempotent() {
    let stack = Stack::start().await;
    let email = unique_email("sub");

    assert!(subscribe(&stack, Some(&email)).await);
    assert!(subscribe(&stack, Some(&email)).await);

    let stored = stored_subscription(&stack, &email).await.expect("stored");
    let parsed: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(parsed, json!({ "user_email": email, "subscribed": true }));
    assert!(is_subscribed(&stack, &email).await);
}

#[tokio::test]
async fn unsubscribing_stores_subscribed_false_and_is_idempotent() {
    let stack = Stack::start().await;
    let email = unique_email("unsub");
    assert!(subscribe(&stack, Some(&email)).await);

    assert!(unsubscribe(&stack, Some(&email)).await);
    assert!(unsubscribe(&stack, Some(&email)).await);

    let stored = stored_subscription(&stack, &email).await.expect("stored");
    let parsed: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(parsed, json!({ "user_email": email, "subscribed": false }));
    assert!(!is_subscribed(&stack, &email).await);
}

#[tokio::test]
async fn an_unknown_user_is_not_subscribed() {
    let stack = Stack::start().await;

    assert!(!is_subscribed(&stack, &unique_email("nobody")).await);
    assert!(!is_subscribed(&stack, "").await);
    assert!(!is_subscribed(&stack, "not-an-email").await);
}

#[tokio::test]
async fn a_missing_empty_or_malformed_email_cannot_subscribe_or_unsubscribe() {
    let stack = Stack::start().await;

    for email in [None, Some(""), Some("  "), Some("not-an-email")] {
        assert!(!subscribe(&stack, email).await, "{email:?}");
        assert!(!unsubscribe(&stack, email).await, "{email:?}");
    }

    let stored: usize = stack
        .redis
        .db(2)
        .await
        .hlen("subscriptions")
        .await
        .expect("HLEN");
    assert_eq!(stored, 0);
}

// ---------------------------------------------------------------------------------------------
// CreateNotification
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_notification_for_a_subscribed_receiver_is_stored_and_pushed_to_the_frontend() {
    let stack = Stack::start().await;
    let receiver = unique_email("receiver");
    assert!(subscribe(&stack, Some(&receiver)).await);
    let mut live = watch(&stack, &receiver).await;

    let created = create(
        &stack,
        Some("sender@example.com"),
        Some(&receiver),
        Some("n-1"),
    )
    .await;

    assert!(created);
    let stored = stored_notifications(&stack, &receiver).await;
    assert_eq!(stored.len(), 1);
    let keys: Vec<&String> = stored[0].as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        [
            "notification_id",
            "read",
            "receiver_email",
            "sender_email",
            "timestamp"
        ]
    );
    assert_eq!(stored[0]["sender_email"], "sender@example.com");
    assert_eq!(stored[0]["receiver_email"], receiver.as_str());
    assert_eq!(stored[0]["read"], false);
    assert_eq!(stored[0]["notification_id"], "n-1");
    assert!(
        stored[0]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let pushed = tokio::time::timeout(PATIENCE, live.message())
        .await
        .expect("pushed in time")
        .expect("stream healthy")
        .expect("stream open");
    assert_eq!(pushed.notification_id.as_deref(), Some("n-1"));
    assert_eq!(pushed.sender_email.as_deref(), Some("sender@example.com"));
    assert_eq!(pushed.timestamp.as_deref(), stored[0]["timestamp"].as_str());
}

#[tokio::test]
async fn a_notification_for_an_unsubscribed_or_unknown_receiver_is_refused_and_not_stored() {
    let stack = Stack::start().await;
    let unsubscribed = unique_email("unsubscribed");
    assert!(subscribe(&stack, Some(&unsubscribed)).await);
    assert!(unsubscribe(&stack, Some(&unsubscribed)).await);
    let unknown = unique_email("unknown");

    for receiver in [&unsubscribed, &unknown] {
        let created = create(&stack, Some("s@example.com"), Some(receiver), Some("n-1")).await;

        assert!(!created, "{receiver}");
        assert!(stored_notifications(&stack, receiver).await.is_empty());
        let ids: bool = stack
            .redis
            .db(2)
            .await
            .exists(format!("notification_ids:{receiver}"))
            .await
            .expect("EXISTS");
        assert!(!ids, "no id recorded for a refused notification");
    }
}

#[tokio::test]
async fn a_repeated_notification_id_is_stored_and_pushed_once() {
    let stack = Stack::start().await;
    let receiver = unique_email("receiver");
    assert!(subscribe(&stack, Some(&receiver)).await);

    for _ in 0..3 {
        assert!(
            create(
                &stack,
                Some("s@example.com"),
                Some(&receiver),
                Some("same-id")
            )
            .await
        );
    }
    assert!(
        create(
            &stack,
            Some("s@example.com"),
            Some(&receiver),
            Some("other-id")
        )
        .await
    );

    let stored = stored_notifications(&stack, &receiver).await;
    assert_eq!(
        ids_of(&stored),
        ["other-id", "same-id"],
        "newest first, once each"
    );
    let queued = entries_ever_added(&stack, "outbox:frontend").await;
    assert_eq!(queued, 2, "a repeat queues no push");
    let mut live = watch(&stack, &receiver).await;
    let mut pushed = HashSet::new();
    while pushed.len() < 2 {
        let next = tokio::time::timeout(PATIENCE, live.message())
            .await
            .expect("pushed in time")
            .expect("stream healthy")
            .expect("stream open");
        pushed.insert(next.notification_id.unwrap_or_default());
    }
    assert_eq!(
        pushed,
        HashSet::from(["same-id".to_owned(), "other-id".to_owned()])
    );
}

/// `entries-added` of a DB 2 stream: every entry ever queued, delivered or not.
async fn entries_ever_added(stack: &Stack, stream: &str) -> i64 {
    let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(&mut stack.redis.db(2).await)
        .await
        .expect("XINFO STREAM");
    match info.get("entries-added") {
        Some(redis::Value::Int(added)) => *added,
        other => panic!("entries-added: {other:?}"),
    }
}

#[tokio::test]
async fn a_notification_without_an_id_gets_a_fresh_one() {
    let stack = Stack::start().await;
    let receiver = unique_email("receiver");
    assert!(subscribe(&stack, Some(&receiver)).await);

    assert!(create(&stack, Some("s@example.com"), Some(&receiver), None).await);
    assert!(create(&stack, Some("s@example.com"), Some(&receiver), Some("")).await);

    let ids: HashSet<String> = ids_of(&stored_notifications(&stack, &receiver).await)
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| id.len() == 36), "UUIDs: {ids:?}");
}

#[tokio::test]
async fn a_notification_with_a_missing_or_empty_field_is_refused() {
    let stack = Stack::start().await;
    let receiver = unique_email("receiver");
    assert!(subscribe(&stack, Some(&receiver)).await);

    for (sender, to) in [
        (None, Some(receiver.as_str())),
        (Some(""), Some(receiver.as_str())),
        (Some("s@example.com"), None),
        (Some("s@example.com"), Some("")),
    ] {
        assert!(
            !create(&stack, sender, to, Some("n-1")).await,
            "{sender:?} {to:?}"
        );
    }

    assert!(stored_notifications(&stack, &receiver).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// GET /list_notifications
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_notifications_returns_newest_first_by_query_string_and_by_json_body() {
    let stack = Stack::start().await;
    let receiver = unique_email("receiver");
    assert!(subscribe(&stack, Some(&receiver)).await);
    for id in ["n-1", "n-2", "n-3"] {
        assert!(create(&stack, Some("s@example.com"), Some(&receiver), Some(id)).await);
    }
    let url = stack.notification_url("/list_notifications");

    let by_query = get_with_query(&stack, &url, &receiver).await;
    let by_body = get_with_body(&stack, &url, &json!({ "email": receiver })).await;

    for (status, body) in [by_query, by_body] {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let listed = body["notifications"].as_array().expect("a list");
        assert_eq!(ids_of(listed), ["n-3", "n-2", "n-1"]);
        assert_eq!(*listed, stored_notifications(&stack, &receiver).await);
    }
}

#[tokio::test]
async fn list_notifications_of_an_unknown_user_is_empty() {
    let stack = Stack::start().await;

    let (status, body) = get_with_query(
        &stack,
        &stack.notification_url("/list_notifications"),
        &unique_email("nobody"),
    )
    .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "notifications": [] }));
}

#[tokio::test]
async fn list_notifications_without_an_email_is_a_400() {
    let stack = Stack::start().await;
    assert_email_is_required(&stack, &stack.notification_url("/list_notifications")).await;
}

// ---------------------------------------------------------------------------------------------
// Through message-service
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unsubscribed_receiver_gets_messages_but_no_notifications_until_resubscribed() {
    let stack = Stack::start().await;
    let alice = registered_user(&stack, "alice").await;
    let bob = registered_user(&stack, "bob").await;
    assert!(unsubscribe(&stack, Some(&bob)).await);

    send_ok(&stack, &alice, &bob, "while unsubscribed").await;
    wait_for_notification_outbox_drained(&stack).await;

    assert_eq!(messages_of(&stack, &bob).await.len(), 1);
    assert!(stored_notifications(&stack, &bob).await.is_empty());

    assert!(subscribe(&stack, Some(&bob)).await);
    send_ok(&stack, &alice, &bob, "subscribed again").await;

    let stored = wait_for_notifications(&stack, &bob, 1).await;
    assert_eq!(ids_of(&stored), ["message-2"]);
    assert_eq!(messages_of(&stack, &bob).await.len(), 2);
}
