//! The outbox's last gaps and the inbox's edges: a crashed replica's entries claimed under
//! steady traffic, the dead-letter stream, tombstones, deleting all only on purpose, the
//! gRPC edge refusing what REST refuses, `GetMessages`' cap, and list parameters that are
//! honoured or refused.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use integration_tests::{
    ServiceProcess, Stack,
    helpers::{assert_error, eventually, send_over, unique_email},
};
use message_service::keys::NOTIFICATION_OUTBOX;
use notification_service::keys::{FRONTEND_OUTBOX, notification_tombstones_key};
use proto::{
    message_service::{GetMessagesRequest, message_service_client::MessageServiceClient},
    notification_service::{DeleteNotificationsRequest, MarkNotificationsReadRequest},
};
use redis::{AsyncCommands, streams::StreamRangeReply};
use serde_json::{Value, json};

/// How many of `stream`'s entries (in DB `db`) are handed to a consumer and not acknowledged.
async fn in_flight(stack: &Stack, db: u8, stream: &str, group: &str) -> usize {
    let reply: redis::RedisResult<redis::streams::StreamPendingReply> =
        stack.redis.db(db).await.xpending(stream, group).await;
    reply.map_or(0, |reply| reply.count())
}

// ---------------------------------------------------------------------------------------------
// 16.9: claims on a timer of their own, per-entry acknowledgement, dead letters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_killed_replicas_entries_in_flight_are_delivered_by_the_other_under_steady_traffic() {
    const IN_FLIGHT: usize = 10;
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let carol = stack.registered_user("carol").await;
    let dave = stack.registered_user("dave").await;
    let mut second = ServiceProcess::start("message-service", stack.replica_env()).await;
    // While the entries are written, only the second replica's worker reads them, and
    // notification-service is down so it keeps them in flight, retrying.
    stack.message.terminate().await;
    stack.notification.kill();
    let mut client = MessageServiceClient::new(Stack::channel(second.grpc_port()).await);
    for n in 0..IN_FLIGHT {
        let reply = send_over(&mut client, &alice, &bob, &format!("in flight {n}")).await;
        assert_eq!(reply.success, Some(true), "{reply:?}");
    }
    eventually(
        "the second replica's worker holds every entry in flight",
        || async {
            (in_flight(&stack, 1, NOTIFICATION_OUTBOX, "message-service").await == IN_FLIGHT)
                .then_some(())
        },
    )
    .await;
    second.kill();
    stack.notification.restart().await;
    stack.message.restart().await;

    // Steady traffic through the surviving replica, so its reads are rarely empty.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        let mut client = stack.message_client().await;
        let (carol, dave) = (carol.clone(), dave.clone());
        tokio::spawn(async move {
            let mut sent = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let reply = send_over(&mut client, &carol, &dave, "steady").await;
                assert_eq!(reply.success, Some(true), "{reply:?}");
                sent += 1;
            }
            sent
        })
    };

    let delivered = eventually(
        "bob's notifications, claimed from the killed replica",
        || async {
            let stored = stack.stored_notifications(&bob).await;
            (stored.len() >= IN_FLIGHT).then_some(stored)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.expect("the traffic task");
    assert!(sent > 0, "traffic ran while the entries were claimed");
    assert_eq!(
        delivered.len(),
        IN_FLIGHT,
        "each exactly once: {delivered:?}"
    );
    let metrics = stack.metrics(stack.message_url("/metrics")).await.value(
        "outbox_claimed_entries_total",
        &[("stream", NOTIFICATION_OUTBOX)],
    );
    assert!(
        metrics >= IN_FLIGHT as f64,
        "the surviving replica claimed them: {metrics}"
    );
    eventually(
        "the claimed entries are acknowledged and deleted",
        || async {
            (in_flight(&stack, 1, NOTIFICATION_OUTBOX, "message-service").await == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_entry_the_peer_keeps_refusing_goes_to_the_dead_letter_stream_counted_and_nothing_else_waits()
 {
    let stack = Stack::start().await;
    let bob = stack.registered_user("bob").await;
    // frontend-service refuses (success=false) a push whose receiver is not an address,
    // however often it is sent: an entry written by an older or broken writer.
    let refused = json!({
        "sender_email": "alice@example.com",
        "receiver_email": "not an address",
        "timestamp": "2025-01-14T12:00:00Z",
        "read": false,
        "notification_id": "refused-for-good",
        "cursor": 1
    })
    .to_string();
    let mut db = stack.redis.db(2).await;
    let refused_id: String = db
        .xadd(FRONTEND_OUTBOX, "*", &[("payload", refused.as_str())])
        .await
        .expect("XADD");
    // A good notification queued behind it is delivered (and acknowledged) meanwhile.
    assert!(
        stack
            .create_notification(Some("alice@example.com"), Some(&bob), None)
            .await
    );

    let dead_key = format!("{FRONTEND_OUTBOX}:dead");
    let dead = eventually("the refused entry in the dead-letter stream", || {
        let mut db = db.clone();
        let dead_key = dead_key.clone();
        async move {
            let dead: StreamRangeReply = db.xrange_all(&dead_key).await.expect("XRANGE");
            (!dead.ids.is_empty()).then_some(dead)
        }
    })
    .await;
    assert_eq!(dead.ids.len(), 1, "moved once");
    let letter = &dead.ids[0];
    assert_eq!(
        letter.get::<String>("payload").as_deref(),
        Some(refused.as_str())
    );
    assert_eq!(letter.get::<String>("entry_id"), Some(refused_id.clone()));
    assert_eq!(letter.get::<String>("attempts").as_deref(), Some("5"));
    let reason: String = letter.get("reason").expect("a reason");
    assert!(reason.contains("refused"), "{reason}");

    let left: StreamRangeReply = db
        .xrange(FRONTEND_OUTBOX, &refused_id, &refused_id)
        .await
        .expect("XRANGE");
    assert!(left.ids.is_empty(), "it left the outbox");
    stack.wait_for_frontend_outbox_drained().await;
    let metrics = stack.metrics(stack.notification_url("/metrics")).await;
    assert_eq!(
        metrics.value("outbox_dead_letters_total", &[("stream", FRONTEND_OUTBOX)]),
        1.0
    );
    assert!(
        metrics.value(
            "outbox_deliveries_total",
            &[("stream", FRONTEND_OUTBOX), ("outcome", "rejected")]
        ) >= 5.0
    );
}

// ---------------------------------------------------------------------------------------------
// 16.10: tombstones
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_deleted_or_trimmed_notification_delivered_again_is_not_stored_again() {
    let stack = Stack::start_with_env(&[("NOTIFICATION_RETENTION_COUNT", "2")]).await;
    let bob = unique_email("bob");
    let sender = "alice@example.com";
    for id in ["first", "second", "third"] {
        assert!(
            stack
                .create_notification(Some(sender), Some(&bob), Some(id))
                .await
        );
    }
    // "first" was trimmed by the retention; delete "second" by hand.
    let (status, body) = stack
        .delete_notifications(&json!({ "email": bob, "notification_ids": ["second"] }))
        .await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(1)), "{body}");

    // Late redeliveries of both are recognised: success, nothing stored.
    for id in ["first", "second"] {
        assert!(
            stack
                .create_notification(Some(sender), Some(&bob), Some(id))
                .await
        );
    }
    let ids = |stored: Vec<Value>| -> Vec<String> {
        stored
            .iter()
            .map(|n| n["notification_id"].as_str().expect("an id").to_owned())
            .collect()
    };
    assert_eq!(ids(stack.stored_notifications(&bob).await), ["third"]);
    // A new id is still stored; the tombstones expire.
    assert!(
        stack
            .create_notification(Some(sender), Some(&bob), Some("fourth"))
            .await
    );
    assert_eq!(
        ids(stack.stored_notifications(&bob).await),
        ["fourth", "third"]
    );
    let ttl: i64 = stack
        .redis
        .db(2)
        .await
        .pttl(notification_tombstones_key(&bob))
        .await
        .expect("PTTL");
    assert!(ttl > 0, "the tombstones expire: {ttl}");
}

// ---------------------------------------------------------------------------------------------
// 16.12 and 16.8: deleting all only on purpose; one parser for REST and gRPC
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_with_no_ids_is_refused_on_both_edges_and_all_true_deletes_everything() {
    let stack = Stack::start().await;
    let bob = unique_email("bob");
    for id in ["a", "b"] {
        assert!(
            stack
                .create_notification(Some("s@example.com"), Some(&bob), Some(id))
                .await
        );
    }
    for body in [
        json!({ "email": bob, "notification_ids": [] }),
        json!({ "email": bob }),
        json!({ "email": bob, "notification_ids": ["a"], "all": true }),
    ] {
        let (status, reply) = stack.delete_notifications(&body).await;
        assert_error(status, &reply, 400);
    }
    let mut client = stack.notification_client().await;
    for (ids, all) in [
        (vec![], None),
        (vec![], Some(false)),
        (vec!["a".into()], Some(true)),
    ] {
        let status = client
            .delete_notifications(DeleteNotificationsRequest {
                email: Some(bob.clone()),
                notification_ids: ids,
                all,
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(
        stack.stored_notifications(&bob).await.len(),
        2,
        "nothing deleted"
    );

    let deleted = client
        .delete_notifications(DeleteNotificationsRequest {
            email: Some(bob.clone()),
            notification_ids: vec![],
            all: Some(true),
        })
        .await
        .expect("all=true")
        .into_inner();
    assert_eq!((deleted.success, deleted.deleted), (Some(true), Some(2)));
    assert!(
        stack
            .create_notification(Some("s@example.com"), Some(&bob), Some("c"))
            .await
    );
    let (status, body) = stack
        .delete_notifications(&json!({ "email": bob, "all": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "deleted": 1 }));
}

#[tokio::test]
async fn too_many_or_oversized_ids_are_refused_by_rest_and_grpc_alike() {
    let stack = Stack::start().await;
    let bob = unique_email("bob");
    assert!(
        stack
            .create_notification(Some("s@example.com"), Some(&bob), Some("kept"))
            .await
    );
    let too_many: Vec<String> = (0..1001).map(|n| format!("id{n}")).collect();
    let oversized = vec!["x".repeat(129)];
    let mut client = stack.notification_client().await;
    for ids in [too_many, oversized] {
        let (status, body) = stack
            .mark_read(&json!({ "email": bob, "notification_ids": ids }))
            .await;
        assert_error(status, &body, 400);
        let (status, body) = stack
            .delete_notifications(&json!({ "email": bob, "notification_ids": ids }))
            .await;
        assert_error(status, &body, 400);
        let marked = client
            .mark_notifications_read(MarkNotificationsReadRequest {
                email: Some(bob.clone()),
                notification_ids: ids.clone(),
            })
            .await
            .expect_err("refused");
        assert_eq!(marked.code(), tonic::Code::InvalidArgument, "{marked:?}");
        let deleted = client
            .delete_notifications(DeleteNotificationsRequest {
                email: Some(bob.clone()),
                notification_ids: ids,
                all: None,
            })
            .await
            .expect_err("refused");
        assert_eq!(deleted.code(), tonic::Code::InvalidArgument, "{deleted:?}");
    }
    // A thousand ids of 128 bytes are accepted.
    let most: Vec<String> = (0..1000).map(|n| format!("{n:0>128}")).collect();
    let marked = client
        .mark_notifications_read(MarkNotificationsReadRequest {
            email: Some(bob.clone()),
            notification_ids: most,
        })
        .await
        .expect("a thousand ids")
        .into_inner();
    assert_eq!(marked.marked, Some(0));
    let stored = stack.stored_notifications(&bob).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["read"], false);
}

#[tokio::test]
async fn get_messages_without_a_limit_stops_at_its_cap_with_a_next_cursor_to_page_on() {
    let stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    // 60 KiB each: 60 of them are past the 3 MiB cap.
    let content = "x".repeat(60 * 1024);
    let mut client = stack.message_client().await;
    for _ in 0..60 {
        let reply = send_over(&mut client, &alice, &bob, &content).await;
        assert_eq!(reply.success, Some(true));
    }
    let mut walked = Vec::new();
    let mut after = None;
    let mut replies = 0;
    loop {
        let reply = client
            .get_messages(GetMessagesRequest {
                user_email: Some(alice.clone()),
                after,
                ..GetMessagesRequest::default()
            })
            .await
            .expect("GetMessages")
            .into_inner();
        replies += 1;
        assert!(!reply.messages.is_empty());
        let bytes: usize = reply
            .messages
            .iter()
            .map(|m| m.content.as_deref().unwrap_or_default().len())
            .sum();
        assert!(bytes <= 3 * 1024 * 1024, "{bytes} bytes in one reply");
        walked.extend(
            reply
                .messages
                .iter()
                .map(|m| m.message_id.clone().expect("an id")),
        );
        match reply.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert!(replies > 1, "the history did not fit one reply");
    assert_eq!(walked.len(), 60, "every message once, in order");
    let mut sorted = walked.clone();
    sorted.sort_by_key(|id| id.parse::<u64>().expect("numeric"));
    sorted.dedup();
    assert_eq!(sorted, walked);
    // A short history comes whole, without a cursor, as the contract has it.
    let carol = stack.registered_user("carol").await;
    stack.send_ok(&carol, &bob, "hi").await;
    let whole = client
        .get_messages(GetMessagesRequest {
            user_email: Some(carol.clone()),
            ..GetMessagesRequest::default()
        })
        .await
        .expect("GetMessages")
        .into_inner();
    assert_eq!((whole.messages.len(), whole.next_cursor), (1, None));
}

// ---------------------------------------------------------------------------------------------
// 16.13: list parameters are honoured or refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_parameters_are_honoured_or_refused_never_ignored() {
    let stack = Stack::start().await;
    let bob = unique_email("bob");
    for id in ["read-one", "unread-one"] {
        assert!(
            stack
                .create_notification(Some("s@example.com"), Some(&bob), Some(id))
                .await
        );
    }
    let (status, _) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": ["read-one"] }))
        .await;
    assert_eq!(status, 200);

    // unread=true without limit lists only the unread one.
    let (status, body) = stack
        .list_notifications_page(&bob, &[("unread", "true".into())])
        .await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&str> = body["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["notification_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(listed, ["unread-one"]);

    for query in [
        vec![("before", "1".to_owned())],
        vec![("after", "1".to_owned())],
        vec![("unread", "yes".to_owned())],
        vec![("limt", "1".to_owned())],
    ] {
        let (status, body) = stack.list_notifications_page(&bob, &query).await;
        assert_error(status, &body, 400);
    }
    let alice = stack.registered_user("alice").await;
    for query in [("unread", "true"), ("before", "a@example.com"), ("x", "1")] {
        let request = stack
            .http()
            .get(stack.message_url("/list_conversations"))
            .query(&[("email", alice.as_str()), query]);
        let (status, body) =
            integration_tests::helpers::reply(request.send().await.expect("GET")).await;
        assert_error(status, &body, 400);
    }
}
