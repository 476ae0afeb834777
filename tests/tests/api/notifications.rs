//! notification-service: subscriptions, CreateNotification, /list_notifications, the DB 2
//! layout, and what an unsubscribed receiver gets.

use std::collections::HashSet;

use integration_tests::{
    Stack,
    helpers::{EmailIn, PATIENCE, assert_email_is_required, ids_of, unique_email},
};
use notification_service::keys::{FRONTEND_OUTBOX, SUBSCRIPTIONS, notification_ids_key};
use redis::AsyncCommands;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribing_stores_a_json_subscription_with_a_real_boolean_and_is_idempotent() {
    let stack = Stack::in_process().await;
    let email = unique_email("sub");

    assert!(stack.subscribe(Some(&email)).await);
    assert!(stack.subscribe(Some(&email)).await);

    let parsed = stack.stored_subscription(&email).await.expect("stored");
    assert_eq!(parsed, json!({ "user_email": email, "subscribed": true }));
    assert!(stack.is_subscribed(&email).await);
}

#[tokio::test]
async fn unsubscribing_stores_subscribed_false_and_is_idempotent() {
    let stack = Stack::in_process().await;
    let email = unique_email("unsub");
    assert!(stack.subscribe(Some(&email)).await);

    assert!(stack.unsubscribe(Some(&email)).await);
    assert!(stack.unsubscribe(Some(&email)).await);

    let parsed = stack.stored_subscription(&email).await.expect("stored");
    assert_eq!(parsed, json!({ "user_email": email, "subscribed": false }));
    assert!(!stack.is_subscribed(&email).await);
}

#[tokio::test]
async fn an_unknown_user_is_not_subscribed() {
    let stack = Stack::in_process().await;

    assert!(!stack.is_subscribed(&unique_email("nobody")).await);
    assert!(!stack.is_subscribed("").await);
    assert!(!stack.is_subscribed("not-an-email").await);
}

#[tokio::test]
async fn a_missing_empty_or_malformed_email_cannot_subscribe_or_unsubscribe() {
    let stack = Stack::in_process().await;

    for email in [None, Some(""), Some("  "), Some("not-an-email")] {
        assert!(!stack.subscribe(email).await, "{email:?}");
        assert!(!stack.unsubscribe(email).await, "{email:?}");
    }

    let stored: usize = stack
        .redis
        .db(2)
        .await
        .hlen(SUBSCRIPTIONS)
        .await
        .expect("HLEN");
    assert_eq!(stored, 0);
}

// ---------------------------------------------------------------------------------------------
// CreateNotification
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_notification_for_a_subscribed_receiver_is_stored_and_pushed_to_the_frontend() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("receiver");
    assert!(stack.subscribe(Some(&receiver)).await);
    let mut live = stack.watch(&receiver).await;

    let created = stack
        .create_notification(Some("sender@example.com"), Some(&receiver), Some("n-1"))
        .await;

    assert!(created);
    let stored = stack.stored_notifications(&receiver).await;
    assert_eq!(stored.len(), 1);
    let keys: Vec<&String> = stored[0].as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        [
            "cursor",
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
async fn a_notification_for_an_unsubscribed_receiver_is_refused_and_not_stored() {
    let stack = Stack::in_process().await;
    let unsubscribed = unique_email("unsubscribed");
    assert!(stack.subscribe(Some(&unsubscribed)).await);
    assert!(stack.unsubscribe(Some(&unsubscribed)).await);

    for receiver in [&unsubscribed] {
        let created = stack
            .create_notification(Some("s@example.com"), Some(receiver), Some("n-1"))
            .await;

        assert!(!created, "{receiver}");
        assert!(stack.stored_notifications(receiver).await.is_empty());
        let ids: bool = stack
            .redis
            .db(2)
            .await
            .exists(notification_ids_key(receiver))
            .await
            .expect("EXISTS");
        assert!(!ids, "no id recorded for a refused notification");
    }
}

/// The contract: a user is subscribed from creation on, so a receiver whose subscription record
/// has not arrived yet (user-service's outbox still delivering it) is subscribed.
#[tokio::test]
async fn a_receiver_without_a_subscription_record_is_notified() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("no-record-yet");

    let created = stack
        .create_notification(Some("s@example.com"), Some(&receiver), Some("n-1"))
        .await;

    assert!(created);
    let stored = stack.wait_for_notifications(&receiver, 1).await;
    assert_eq!(stored[0]["notification_id"], "n-1");
    assert_eq!(stack.stored_subscription(&receiver).await, None);
}

#[tokio::test]
async fn a_repeated_notification_id_is_stored_and_pushed_once() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("receiver");
    assert!(stack.subscribe(Some(&receiver)).await);

    for _ in 0..3 {
        assert!(
            stack
                .create_notification(Some("s@example.com"), Some(&receiver), Some("same-id"))
                .await
        );
    }
    assert!(
        stack
            .create_notification(Some("s@example.com"), Some(&receiver), Some("other-id"))
            .await
    );

    let stored = stack.stored_notifications(&receiver).await;
    assert_eq!(
        ids_of(&stored),
        ["other-id", "same-id"],
        "newest first, once each"
    );
    let queued = stack.entries_ever_added(2, FRONTEND_OUTBOX).await;
    assert_eq!(queued, 2, "a repeat queues no push");
    let mut live = stack.watch(&receiver).await;
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
    // Neither is pushed a second time.
    stack
        .assert_nothing_more_streamed(&mut live, &receiver)
        .await;
}

#[tokio::test]
async fn a_notification_without_an_id_gets_a_fresh_one() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("receiver");
    assert!(stack.subscribe(Some(&receiver)).await);

    assert!(
        stack
            .create_notification(Some("s@example.com"), Some(&receiver), None)
            .await
    );
    assert!(
        stack
            .create_notification(Some("s@example.com"), Some(&receiver), Some(""))
            .await
    );

    let ids: HashSet<String> = ids_of(&stack.stored_notifications(&receiver).await)
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| id.len() == 36), "UUIDs: {ids:?}");
}

#[tokio::test]
async fn a_notification_with_a_missing_or_empty_field_is_refused() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("receiver");
    assert!(stack.subscribe(Some(&receiver)).await);

    for (sender, to) in [
        (None, Some(receiver.as_str())),
        (Some(""), Some(receiver.as_str())),
        (Some("s@example.com"), None),
        (Some("s@example.com"), Some("")),
    ] {
        assert!(
            !stack.create_notification(sender, to, Some("n-1")).await,
            "{sender:?} {to:?}"
        );
    }

    assert!(stack.stored_notifications(&receiver).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// GET /list_notifications
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_notifications_returns_newest_first_by_query_string_and_by_json_body() {
    let stack = Stack::in_process().await;
    let receiver = unique_email("receiver");
    assert!(stack.subscribe(Some(&receiver)).await);
    for id in ["n-1", "n-2", "n-3"] {
        assert!(
            stack
                .create_notification(Some("s@example.com"), Some(&receiver), Some(id))
                .await
        );
    }

    let by_query = stack.list_notifications(EmailIn::Query(&receiver)).await;
    let by_body = stack
        .list_notifications(EmailIn::Body(json!({ "email": receiver })))
        .await;

    for (status, body) in [by_query, by_body] {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let listed = body["notifications"].as_array().expect("a list");
        assert_eq!(ids_of(listed), ["n-3", "n-2", "n-1"]);
        assert_eq!(*listed, stack.stored_notifications(&receiver).await);
    }
}

#[tokio::test]
async fn list_notifications_of_an_unknown_user_is_empty() {
    let stack = Stack::in_process().await;

    let (status, body) = stack
        .list_notifications(EmailIn::Query(&unique_email("nobody")))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "notifications": [] }));
}

#[tokio::test]
async fn list_notifications_without_an_email_is_a_400() {
    let stack = Stack::in_process().await;
    assert_email_is_required(|email| stack.list_notifications(email)).await;
}

// ---------------------------------------------------------------------------------------------
// Through message-service
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unsubscribed_receiver_gets_messages_but_no_notifications_until_resubscribed() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    assert!(stack.unsubscribe(Some(&bob)).await);

    stack.send_ok(&alice, &bob, "while unsubscribed").await;
    stack.wait_for_notification_outbox_drained().await;

    assert_eq!(stack.messages_of(&bob).await.len(), 1);
    assert!(stack.stored_notifications(&bob).await.is_empty());

    assert!(stack.subscribe(Some(&bob)).await);
    stack.send_ok(&alice, &bob, "subscribed again").await;

    let stored = stack.wait_for_notifications(&bob, 1).await;
    assert_eq!(stored[0]["sender_email"], alice.as_str());
    assert_eq!(stack.messages_of(&bob).await.len(), 2);
}
