//! Crashes and outages in the middle of the message → notification → frontend flow: nothing
//! stored is lost, nothing is stored twice, and no service needs a restart to recover.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use integration_tests::{
    Stack,
    helpers::{PATIENCE, eventually, message, receive_ids},
};
use message_service::keys::MESSAGE_ID_COUNTER;
use proto::{
    frontend_service::{
        Notification, WatchNotificationsRequest, frontend_service_client::FrontendServiceClient,
    },
    message_service::{SendMessageResponse, message_service_client::MessageServiceClient},
};
use redis::AsyncCommands;
use tokio::task::JoinHandle;
use tonic::{Code, Status, transport::Channel};

type Sends = JoinHandle<Vec<Result<SendMessageResponse, Status>>>;

/// Sends `count` messages one after the other in the background; the counter says how many
/// have been answered so far.
fn send_in_background(
    mut client: MessageServiceClient<Channel>,
    sender: &str,
    receiver: &str,
    count: usize,
) -> (Arc<AtomicUsize>, Sends) {
    let answered = Arc::new(AtomicUsize::new(0));
    let progress = Arc::clone(&answered);
    let (sender, receiver) = (sender.to_owned(), receiver.to_owned());
    let sends = tokio::spawn(async move {
        let mut replies = Vec::with_capacity(count);
        for n in 0..count {
            let request = message(Some(&sender), Some(&receiver), Some(&format!("burst {n}")));
            replies.push(client.send_message(request).await.map(|r| r.into_inner()));
            progress.fetch_add(1, Ordering::SeqCst);
        }
        replies
    });
    (answered, sends)
}

async fn wait_until_answered(answered: &AtomicUsize, count: usize) {
    eventually(&format!("{count} sends to be answered"), || async {
        (answered.load(Ordering::SeqCst) >= count).then_some(())
    })
    .await;
}

fn assert_all_sent(replies: &[Result<SendMessageResponse, Status>]) {
    for reply in replies {
        let reply = reply.as_ref().expect("SendMessage answers OK");
        assert_eq!(reply.success, Some(true), "{reply:?}");
        assert_eq!(reply.message.as_deref(), Some("Message sent"));
    }
}

async fn message_counter<S>(stack: &Stack<S>) -> u64 {
    stack
        .redis
        .db(1)
        .await
        .get::<_, Option<u64>>(MESSAGE_ID_COUNTER)
        .await
        .expect("GET the message id counter")
        .unwrap_or(0)
}

#[tokio::test]
async fn every_notification_reaches_the_frontend_when_it_is_down_and_restarted_during_100_sends() {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    // A first push, so notification-service has a live connection that the crash then breaks.
    let mut before_crash = stack.watch(&bob).await;
    stack.send_ok(&alice, &bob, "warm-up").await;
    let warm_up = stack.distinct_notification_ids(&bob, 1).await;
    assert_eq!(receive_ids(&mut before_crash, &warm_up).await, warm_up);
    // ...and was acknowledged: otherwise it is (rightly) pushed again after the restart.
    stack.wait_for_frontend_outbox_drained().await;
    stack.frontend.kill();

    let (answered, sends) = send_in_background(stack.message_client().await, &alice, &bob, 100);
    wait_until_answered(&answered, 50).await;
    stack.frontend.restart().await;
    // The restarted frontend starts empty: its snapshot plus the live feed must carry all 100.
    let mut after_restart = stack.watch(&bob).await;
    let replies = sends.await.expect("the sends ran");

    assert_all_sent(&replies);
    let all = stack.distinct_notification_ids(&bob, 101).await;
    let wanted: HashSet<String> = all.difference(&warm_up).cloned().collect();
    // Replayed from the store (the newest 100 when it attached, maybe the warm-up too), then live.
    let received = receive_ids(&mut after_restart, &wanted).await;
    assert!(received.is_superset(&wanted) && received.is_subset(&all));
}

#[tokio::test]
async fn notifications_are_created_exactly_once_when_notification_service_is_killed_during_100_sends()
 {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut live = stack.watch(&bob).await;

    let (answered, sends) = send_in_background(stack.message_client().await, &alice, &bob, 100);
    wait_until_answered(&answered, 10).await;
    stack.notification.kill();
    let replies = sends.await.expect("the sends ran");
    stack.notification.restart().await;

    assert_all_sent(&replies);
    let wanted = stack.distinct_notification_ids(&bob, 100).await;
    stack.wait_for_notification_outbox_drained().await;
    assert_eq!(
        stack.stored_notifications(&bob).await.len(),
        100,
        "a redelivery stored a duplicate"
    );
    assert_eq!(receive_ids(&mut live, &wanted).await, wanted);
    stack.assert_nothing_more_streamed(&mut live, &bob).await;
}

#[tokio::test]
async fn notifications_queued_by_a_crashed_message_service_are_delivered_after_its_restart() {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    stack.notification.kill();
    for n in 0..20 {
        stack.send_ok(&alice, &bob, &format!("queued {n}")).await;
    }

    stack.message.kill();
    stack.notification.restart().await;
    stack.message.restart().await;

    assert_eq!(stack.distinct_notification_ids(&bob, 20).await.len(), 20);
}

#[tokio::test]
async fn sends_and_notifications_keep_flowing_across_a_redis_restart_without_restarting_services() {
    let mut stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut live = stack.watch(&bob).await;
    let (answered, sends) = send_in_background(stack.message_client().await, &alice, &bob, 200);
    wait_until_answered(&answered, 10).await;

    stack.redis.restart().await;
    let answered_when_back = answered.load(Ordering::SeqCst);
    let during = sends.await.expect("the sends ran");
    stack.send_ok(&alice, &bob, "after the restart").await;

    assert!(
        answered_when_back < 200,
        "the burst should span the restart; it was over before Redis was back"
    );
    // Redis was down for a moment only; the services' retries cover that.
    assert_all_sent(&during);
    // An INCR whose reply the restart cut off is retried and skips a number: ids stay unique.
    let ids_taken = message_counter(&stack).await;
    assert!(ids_taken >= 201, "{ids_taken} message ids taken");
    assert_eq!(stack.messages_of(&bob).await.len(), 201);
    let wanted = stack.distinct_notification_ids(&bob, 201).await;
    assert_eq!(receive_ids(&mut live, &wanted).await, wanted);
}

#[tokio::test]
async fn sending_works_after_redis_forgets_its_scripts() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    stack.send_ok(&alice, &bob, "loads the scripts").await;

    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut stack.redis.db(1).await)
        .await
        .expect("SCRIPT FLUSH");
    stack.send_ok(&alice, &bob, "after the flush").await;

    assert_eq!(stack.messages_of(&bob).await.len(), 2);
    assert_eq!(stack.distinct_notification_ids(&bob, 2).await.len(), 2);
}

#[tokio::test]
async fn send_message_is_unavailable_while_redis_is_down_and_works_again_once_it_is_back() {
    let mut stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    // user-service reads Redis too: whichever of the two notices first, the answer is UNAVAILABLE.
    stack.redis.stop().await;

    let refused = stack
        .message_client()
        .await
        .send_message(message(Some(&alice), Some(&bob), Some("lost?")))
        .await
        .expect_err("no store, no success");

    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    stack.redis.restart().await;
    stack.send_ok(&alice, &bob, "back").await;
    assert_eq!(stack.distinct_notification_ids(&bob, 1).await.len(), 1);
}

#[tokio::test]
async fn send_message_is_unavailable_naming_user_service_when_it_is_down_and_writes_nothing() {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    stack.user.kill();

    let refused = stack
        .message_client()
        .await
        .send_message(message(Some(&alice), Some(&bob), Some("hello")))
        .await
        .expect_err("existence cannot be checked");

    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("user-service"), "{refused:?}");
    assert_eq!(message_counter(&stack).await, 0);
    stack.user.restart().await;
    stack.send_ok(&alice, &bob, "hello again").await;
    assert_eq!(message_counter(&stack).await, 1);
}

/// Watches `receiver` on the frontend at `port` until `count` notifications arrived,
/// reconnecting with the last cursor whenever the stream breaks (the frontend was killed);
/// returns them in the order streamed.
fn resilient_watcher(port: u16, receiver: &str, count: usize) -> JoinHandle<Vec<Notification>> {
    let receiver = receiver.to_owned();
    tokio::spawn(async move {
        let mut received: Vec<Notification> = Vec::with_capacity(count);
        let deadline = tokio::time::Instant::now() + 3 * PATIENCE;
        while received.len() < count && tokio::time::Instant::now() < deadline {
            let after = received.last().and_then(|last| last.cursor);
            let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
                .expect("valid URL")
                .connect()
                .await
            else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let request = WatchNotificationsRequest {
                email: Some(receiver.clone()),
                after: Some(after.unwrap_or(0)),
            };
            let Ok(stream) = FrontendServiceClient::new(channel)
                .watch_notifications(request)
                .await
            else {
                continue;
            };
            let mut stream = stream.into_inner();
            while received.len() < count {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Ok(Ok(Some(notification))) => received.push(notification),
                    _ => break,
                }
            }
        }
        received
    })
}

#[tokio::test]
async fn a_thousand_sends_survive_frontend_and_notification_service_kills_and_a_redis_restart() {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let watcher = resilient_watcher(stack.frontend_port, &bob, 1000);
    let mut bursts = Vec::new();
    let mut answered = Vec::new();
    for _ in 0..4 {
        let (progress, sends) = send_in_background(stack.message_client().await, &alice, &bob, 250);
        answered.push(progress);
        bursts.push(sends);
    }
    let total = || {
        answered
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum::<usize>()
    };

    eventually("200 sends answered", || async {
        (total() >= 200).then_some(())
    })
    .await;
    stack.frontend.kill();
    stack.frontend.restart().await;
    eventually("500 sends answered", || async {
        (total() >= 500).then_some(())
    })
    .await;
    stack.notification.kill();
    stack.notification.restart().await;
    eventually("800 sends answered", || async {
        (total() >= 800).then_some(())
    })
    .await;
    stack.redis.restart().await;
    for burst in bursts {
        assert_all_sent(&burst.await.expect("the sends ran"));
    }

    let stored = stack.distinct_notification_ids(&bob, 1000).await;
    let watched = watcher.await.expect("the watcher ran");
    let ids: Vec<String> = watched
        .iter()
        .map(|n| n.notification_id.clone().unwrap_or_default())
        .collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 1000, "watched {} of 1000", ids.len());
    assert_eq!(distinct.len(), 1000, "0 duplicates");
    assert_eq!(distinct, stored);
    let cursors: Vec<u64> = watched.iter().filter_map(|n| n.cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order");
}
