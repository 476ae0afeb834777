//! The inbox: read state, unread counts, deletion, pages, retention, and a live feed that
//! resumes from a cursor and spans replicas.

use std::{collections::HashSet, sync::Arc};

use futures::future::join_all;
use integration_tests::{
    ServiceProcess, Stack,
    helpers::{assert_error, next_notifications, unique_email},
};
use notification_service::keys::notification_ids_key;
use proto::notification_service::{
    DeleteNotificationsRequest, ListNotificationsRequest, MarkNotificationsReadRequest,
    UnreadCountRequest,
};
use redis::AsyncCommands;
use serde_json::{Value, json};

/// `count` notifications for `receiver` from one sender, ids `n1`…; returns their ids.
async fn notify<S>(stack: &Stack<S>, receiver: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 1..=count {
        let id = format!("n{n}-{}", unique_email("id"));
        assert!(
            stack
                .create_notification(Some("sender@example.com"), Some(receiver), Some(&id))
                .await
        );
        ids.push(id);
    }
    ids
}

fn ids_in(body: &Value) -> Vec<String> {
    body["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["notification_id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Every page of `/list_notifications` with `limit`, following `next_cursor`.
async fn walk_pages<S>(stack: &Stack<S>, email: &str, limit: usize, unread: bool) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(cursor) = before {
            query.push(("before", cursor.to_string()));
        }
        if unread {
            query.push(("unread", "true".to_owned()));
        }
        let (status, body) = stack.list_notifications_page(email, &query).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["unread_count"].is_u64(), "{body}");
        ids.extend(ids_in(&body));
        match body["next_cursor"].as_u64() {
            Some(cursor) => before = Some(cursor),
            None => {
                assert!(body["next_cursor"].is_null(), "{body}");
                return ids;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Read state, unread count, deletion (REST)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn marking_some_read_changes_the_stored_json_and_the_unread_count() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let ids = notify(&stack, &bob, 3).await;

    let (status, body) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": [ids[0], "not-bobs"] }))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "success": true, "marked": 1, "unread_count": 2 })
    );
    assert_eq!(stack.unread_count(&bob).await, 2);
    let stored = stack.stored_notifications(&bob).await;
    let read: Vec<bool> = stored.iter().map(|n| n["read"] == true).collect();
    assert_eq!(
        read,
        [false, false, true],
        "newest first; only the first one read"
    );
    let (_, again) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": [ids[0]] }))
        .await;
    assert_eq!(again["marked"], 0, "already read");
}

#[tokio::test]
async fn marking_without_ids_marks_all_and_an_email_is_required() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    notify(&stack, &bob, 4).await;

    let (status, body) = stack.mark_read(&json!({ "email": bob })).await;
    let (missing, refused) = stack.mark_read(&json!({ "notification_ids": [] })).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["marked"], 4);
    assert_eq!(body["unread_count"], 0);
    assert!(
        stack
            .stored_notifications(&bob)
            .await
            .iter()
            .all(|n| n["read"] == true)
    );
    assert_error(missing, &refused, 400);
}

#[tokio::test]
async fn the_unread_count_takes_the_email_from_the_query_or_a_json_body() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    notify(&stack, &bob, 2).await;

    let by_query = stack.unread_count(&bob).await;
    let request = stack
        .http()
        .get(stack.notification_url("/notifications/unread_count"))
        .json(&json!({ "email": bob }));
    let (status, by_body) =
        integration_tests::helpers::reply(request.send().await.expect("GET")).await;

    assert_eq!(by_query, 2);
    assert_eq!(status, 200);
    assert_eq!(by_body, json!({ "success": true, "unread_count": 2 }));
}

#[tokio::test]
async fn deleting_removes_the_entries_their_dedup_state_and_their_unread_count() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let ids = notify(&stack, &bob, 3).await;

    let (status, body) = stack
        .delete_notifications(&json!({ "email": bob, "notification_ids": [ids[1], "other"] }))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "deleted": 1 }));
    let left: Vec<Value> = stack.stored_notifications(&bob).await;
    assert_eq!(
        ids_in(&json!({ "notifications": left })),
        [ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(stack.unread_count(&bob).await, 2);
    let dedup: usize = stack
        .redis
        .db(2)
        .await
        .scard(notification_ids_key(&bob))
        .await
        .expect("SCARD");
    assert_eq!(dedup, 2);
    let (_, all) = stack
        .delete_notifications(&json!({ "email": bob, "all": true }))
        .await;
    assert_eq!(all["deleted"], 2);
    assert_eq!(stack.unread_count(&bob).await, 0);
}

#[tokio::test]
async fn the_inbox_rpcs_answer_like_the_rest_endpoints() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let ids = notify(&stack, &bob, 3).await;
    let mut client = stack.notification_client().await;

    let marked = client
        .mark_notifications_read(MarkNotificationsReadRequest {
            email: Some(bob.clone()),
            notification_ids: vec![ids[2].clone()],
        })
        .await
        .expect("MarkNotificationsRead")
        .into_inner();
    let unread = client
        .get_unread_count(UnreadCountRequest {
            email: Some(bob.clone()),
            up_to: None,
        })
        .await
        .expect("GetUnreadCount")
        .into_inner();
    let page = client
        .list_notifications(ListNotificationsRequest {
            email: Some(bob.clone()),
            limit: Some(2),
            ..ListNotificationsRequest::default()
        })
        .await
        .expect("ListNotifications")
        .into_inner();
    let deleted = client
        .delete_notifications(DeleteNotificationsRequest {
            email: Some(bob.clone()),
            notification_ids: vec![ids[0].clone()],
            all: None,
        })
        .await
        .expect("DeleteNotifications")
        .into_inner();

    assert_eq!((marked.marked, marked.unread_count), (Some(1), Some(2)));
    assert_eq!(unread.unread_count, Some(2));
    let listed: Vec<_> = page
        .notifications
        .iter()
        .map(|n| n.notification_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(page.notifications[0].read, Some(true));
    assert!(page.next_cursor.is_some());
    assert_eq!(deleted.deleted, Some(1));
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_limit_the_list_is_the_contracts_and_with_it_pages_walk_the_whole_list() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let mut ids = notify(&stack, &bob, 23).await;
    ids.reverse();

    let (status, full) = stack.list_notifications_page(&bob, &[]).await;
    let walked = walk_pages(&stack, &bob, 5, false).await;
    let (_, bad) = stack
        .list_notifications_page(&bob, &[("limit", "0".to_owned())])
        .await;

    assert_eq!(status, 200);
    let keys: Vec<&String> = full.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        ["notifications", "success"],
        "no page fields without limit"
    );
    assert_eq!(ids_in(&full), ids);
    assert_eq!(walked, ids);
    assert_eq!(bad["success"], false);
}

#[tokio::test]
async fn unread_pages_skip_what_was_read() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    let ids = notify(&stack, &bob, 10).await;
    let read: Vec<&String> = ids.iter().step_by(3).collect();
    stack
        .mark_read(&json!({ "email": bob, "notification_ids": read }))
        .await;

    let walked = walk_pages(&stack, &bob, 3, true).await;

    let mut unread: Vec<String> = ids
        .iter()
        .filter(|id| !read.contains(id))
        .cloned()
        .collect();
    unread.reverse();
    assert_eq!(walked, unread);
}

#[tokio::test]
async fn walking_pages_while_notifications_arrive_and_others_are_deleted_repeats_nothing() {
    let stack = Arc::new(Stack::in_process().await);
    let bob = unique_email("bob");
    let before = notify(&stack, &bob, 40).await;
    let doomed: Vec<String> = before.iter().skip(1).step_by(4).cloned().collect();

    let writer = {
        let (stack, bob, doomed) = (Arc::clone(&stack), bob.clone(), doomed.clone());
        tokio::spawn(async move {
            let arrived = notify(&stack, &bob, 20).await;
            stack
                .delete_notifications(&json!({ "email": bob, "notification_ids": doomed }))
                .await;
            arrived
        })
    };
    let walked = walk_pages(&stack, &bob, 4, false).await;
    writer.await.expect("the writer ran");

    let distinct: HashSet<&String> = walked.iter().collect();
    assert_eq!(distinct.len(), walked.len(), "no repeats: {walked:?}");
    // Everything there before the walk began and not deleted during it is listed, in order.
    let kept: Vec<&String> = before
        .iter()
        .rev()
        .filter(|id| !doomed.contains(id))
        .collect();
    let listed_of_kept: Vec<&String> = walked.iter().filter(|id| kept.contains(id)).collect();
    assert_eq!(listed_of_kept, kept);
}

#[tokio::test]
async fn marking_all_read_while_notifications_arrive_loses_no_entry_and_no_flag() {
    let stack = Arc::new(Stack::in_process().await);
    let bob = unique_email("bob");
    notify(&stack, &bob, 30).await;

    let creates = {
        let (stack, bob) = (Arc::clone(&stack), bob.clone());
        tokio::spawn(async move { notify(&stack, &bob, 30).await })
    };
    let mark_all = json!({ "email": bob });
    let marks = join_all((0..10).map(|_| stack.mark_read(&mark_all))).await;
    creates.await.expect("the creates ran");

    let marked: u64 = marks
        .iter()
        .map(|(_, body)| body["marked"].as_u64().expect("marked"))
        .sum();
    let stored = stack.stored_notifications(&bob).await;
    assert_eq!(stored.len(), 60, "no entry lost");
    let read = stored.iter().filter(|n| n["read"] == true).count() as u64;
    assert_eq!(read, marked, "every mark counted once and kept");
    assert_eq!(stack.unread_count(&bob).await, 60 - read);
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_receiver_keeps_the_newest_retention_count_and_their_dedup_state_only() {
    let stack = Stack::in_process_with_env(&[("NOTIFICATION_RETENTION_COUNT", "5")]).await;
    let bob = unique_email("bob");
    let ids = notify(&stack, &bob, 8).await;

    let kept = ids_in(&json!({ "notifications": stack.stored_notifications(&bob).await }));

    let newest: Vec<String> = ids.iter().rev().take(5).cloned().collect();
    assert_eq!(kept, newest);
    let dedup: usize = stack
        .redis
        .db(2)
        .await
        .scard(notification_ids_key(&bob))
        .await
        .expect("SCARD");
    assert_eq!(dedup, 5);
    assert_eq!(stack.unread_count(&bob).await, 5);
    assert_eq!(walk_pages(&stack, &bob, 2, false).await, newest);
}

#[tokio::test]
async fn notifications_older_than_the_retention_days_are_dropped_on_the_next_create() {
    let stack = Stack::in_process_with_env(&[("NOTIFICATION_RETENTION_DAYS", "0")]).await;
    let bob = unique_email("bob");

    let ids = notify(&stack, &bob, 3).await;

    let kept = ids_in(&json!({ "notifications": stack.stored_notifications(&bob).await }));
    assert_eq!(
        kept,
        [ids[2].clone()],
        "with 0 days only the newest survives"
    );
    assert_eq!(stack.unread_count(&bob).await, 1);
}

// ---------------------------------------------------------------------------------------------
// The live feed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_watcher_that_reconnects_with_its_last_cursor_gets_exactly_what_it_missed() {
    let stack = Stack::in_process().await;
    let bob = unique_email("bob");
    notify(&stack, &bob, 3).await;
    let mut first = stack.watch_after(stack.frontend_port, &bob, None).await;
    let seen = next_notifications(&mut first, 3).await;
    let last = seen[2].cursor.expect("a cursor");
    drop(first);

    let missed = notify(&stack, &bob, 500).await;
    let mut resumed = stack
        .watch_after(stack.frontend_port, &bob, Some(last))
        .await;
    let replayed = next_notifications(&mut resumed, 500).await;
    let live_ids = notify(&stack, &bob, 2).await;
    let live = next_notifications(&mut resumed, 2).await;

    let replayed_ids: Vec<String> = replayed
        .iter()
        .map(|n| n.notification_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        replayed_ids, missed,
        "exactly the missed ones, oldest first"
    );
    let cursors: Vec<u64> = replayed
        .iter()
        .chain(&live)
        .filter_map(|n| n.cursor)
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order");
    let live: Vec<String> = live
        .into_iter()
        .map(|n| n.notification_id.unwrap_or_default())
        .collect();
    assert_eq!(live, live_ids, "no gap and no repeat at the seam");
}

#[tokio::test]
async fn with_two_replicas_of_notification_and_frontend_service_each_watcher_gets_everything_once_in_order()
 {
    let stack = Stack::start().await;
    let mut env = stack.replica_env();
    env.push((
        "NOTIFICATION_SERVICE_GRPC_URL".into(),
        format!("http://127.0.0.1:{}", stack.notification_ports.grpc),
    ));
    let frontend_2 = ServiceProcess::start("frontend-service", env.clone()).await;
    env.push((
        "FRONTEND_SERVICE_GRPC_URL".into(),
        format!("http://127.0.0.1:{}", frontend_2.grpc_port()),
    ));
    let notification_2 = ServiceProcess::start("notification-service", env).await;
    let bob = unique_email("bob");
    let mut on_first = stack.watch_after(stack.frontend_port, &bob, Some(0)).await;
    let mut on_second = stack
        .watch_after(frontend_2.grpc_port(), &bob, Some(0))
        .await;
    let mut clients = [
        stack.notification_client().await,
        proto::notification_service::notification_service_client::NotificationServiceClient::new(
            Stack::channel(notification_2.grpc_port()).await,
        ),
    ];

    let mut sent = Vec::new();
    for n in 0..40 {
        let id = format!("r{n}");
        let created = clients[n % 2]
            .create_notification(proto::notification_service::CreateNotificationRequest {
                sender_email: Some("sender@example.com".into()),
                receiver_email: Some(bob.clone()),
                notification_id: Some(id.clone()),
            })
            .await
            .expect("CreateNotification")
            .into_inner();
        assert_eq!(created.success, Some(true));
        sent.push(id);
    }

    for watcher in [&mut on_first, &mut on_second] {
        let got = next_notifications(watcher, 40).await;
        let ids: Vec<String> = got
            .iter()
            .map(|n| n.notification_id.clone().unwrap_or_default())
            .collect();
        assert_eq!(ids, sent, "every one, once, in order");
        let cursors: Vec<u64> = got.iter().filter_map(|n| n.cursor).collect();
        assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    }
}
