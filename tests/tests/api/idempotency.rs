//! `SendMessage`'s idempotency key: a retried send (after `UNAVAILABLE` "not yet replicated",
//! a lost reply) stores one message and one notification; the page API passes the key on.

use integration_tests::{
    Stack,
    helpers::{assert_error, entries_ever_added_in, eventually, keyed_message},
    sentinel::HaRedis,
};
use message_service::keys::{
    MESSAGE_ID_COUNTER, NOTIFICATION_OUTBOX, SEND_KEY_TTL_SECONDS, send_key,
};
use notification_service::keys::notifications_key;
use redis::AsyncCommands;
use serde_json::json;
use tonic::Code;

#[tokio::test]
async fn a_send_repeated_with_its_key_stores_one_message_and_one_notification() {
    let stack = Stack::in_process().await;
    let sender = stack.registered_user("keyed-sender").await;
    let receiver = stack.registered_user("keyed-receiver").await;
    let mut client = stack.message_client().await;

    for _ in 0..2 {
        let reply = client
            .send_message(keyed_message(&sender, &receiver, "once", "retry-1"))
            .await
            .expect("SendMessage answers OK")
            .into_inner();
        assert_eq!(
            (reply.success, reply.message.as_deref()),
            (Some(true), Some("Message sent")),
            "the repeat answers as the first did"
        );
    }
    let stored = stack.messages_of(&receiver).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let mut db = stack.redis.db(1).await;
    let remembered: String = db
        .get(send_key(&sender, "retry-1"))
        .await
        .expect("GET the send key");
    assert_eq!(Some(remembered), stored[0].message_id);
    let ttl: i64 = db
        .ttl(send_key(&sender, "retry-1"))
        .await
        .expect("TTL the send key");
    assert!(
        ttl > 0 && ttl <= SEND_KEY_TTL_SECONDS as i64,
        "the key expires: {ttl}"
    );
    stack.wait_for_notification_outbox_drained().await;
    assert_eq!(stack.wait_for_notifications(&receiver, 1).await.len(), 1);
    assert_eq!(stack.entries_ever_added(1, NOTIFICATION_OUTBOX).await, 1);

    // Another key, no key (twice: today's behaviour), and the same key from another sender:
    // each stores its own message.
    let reply = client
        .send_message(keyed_message(&sender, &receiver, "once", "retry-2"))
        .await
        .expect("SendMessage answers OK");
    assert_eq!(reply.into_inner().success, Some(true));
    for _ in 0..2 {
        stack.send_ok(&sender, &receiver, "unkeyed").await;
    }
    let reply = client
        .send_message(keyed_message(&receiver, &sender, "back", "retry-1"))
        .await
        .expect("SendMessage answers OK");
    assert_eq!(reply.into_inner().success, Some(true));
    assert_eq!(stack.messages_of(&receiver).await.len(), 5);
    stack.wait_for_notification_outbox_drained().await;
    assert_eq!(stack.wait_for_notifications(&receiver, 4).await.len(), 4);
    assert_eq!(stack.wait_for_notifications(&sender, 1).await.len(), 1);
    assert_eq!(stack.entries_ever_added(1, NOTIFICATION_OUTBOX).await, 5);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_refused_and_stores_nothing() {
    let stack = Stack::in_process().await;
    let sender = stack.registered_user("badkey-sender").await;
    let receiver = stack.registered_user("badkey-receiver").await;
    let mut client = stack.message_client().await;
    let too_long = "k".repeat(129);
    for key in [
        "",
        too_long.as_str(),
        "two words",
        "tab\there",
        "caf\u{e9}",
        "nul\0",
    ] {
        let refused = client
            .send_message(keyed_message(&sender, &receiver, "never stored", key))
            .await
            .expect_err("a malformed key is refused");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{key:?}: {refused:?}"
        );
        assert!(
            refused.message().contains("idempotency_key"),
            "{key:?}: {refused:?}"
        );
    }
    let mut db = stack.redis.db(1).await;
    let counter: Option<u64> = db.get(MESSAGE_ID_COUNTER).await.expect("GET the counter");
    assert_eq!(counter, None, "no id was even taken");
    let keys: Vec<String> = db.keys("send_key:*").await.expect("KEYS");
    assert!(keys.is_empty(), "{keys:?}");
    assert!(stack.messages_of(&receiver).await.is_empty());

    // The longest key accepted.
    let longest = "k".repeat(128);
    let reply = client
        .send_message(keyed_message(&sender, &receiver, "stored", &longest))
        .await
        .expect("a 128-byte key is accepted");
    assert_eq!(reply.into_inner().success, Some(true));
    assert_eq!(stack.messages_of(&receiver).await.len(), 1);
}

#[tokio::test]
async fn the_page_api_passes_the_idempotency_key_on() {
    // Processes: the in-process stack starts frontend-service before message-service's address
    // is known.
    let stack = Stack::start().await;
    let sender = stack.registered_user("page-keyed-sender").await;
    let receiver = stack.registered_user("page-keyed-receiver").await;
    let body = json!({
        "sender_email": sender, "receiver_email": receiver, "content": "from the page",
        "idempotency_key": "0123456789abcdef0123456789abcdef",
    });
    for _ in 0..2 {
        let (status, reply) = stack
            .page_call("POST", "/api/messages", Some(body.clone()), None)
            .await;
        assert_eq!((status, &reply["success"]), (200, &json!(true)), "{reply}");
    }
    assert_eq!(stack.messages_of(&receiver).await.len(), 1);
    assert_eq!(stack.wait_for_notifications(&receiver, 1).await.len(), 1);

    let bad = json!({
        "sender_email": sender, "receiver_email": receiver, "content": "never stored",
        "idempotency_key": "has spaces",
    });
    let (status, reply) = stack
        .page_call("POST", "/api/messages", Some(bad), None)
        .await;
    assert_error(status, &reply, 400);
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("idempotency_key")),
        "{reply}"
    );
    assert_eq!(stack.messages_of(&receiver).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_refused_as_not_replicated_and_retried_with_its_key_is_stored_once() {
    let mut ha = HaRedis::start().await;
    let stack = Stack::start_with_env(&[
        ("REDIS_SENTINELS", ha.sentinels_env()),
        ("REDIS_MIN_REPLICAS_ACK", "1".to_owned()),
        ("REDIS_WAIT_TIMEOUT", "200ms".to_owned()),
    ])
    .await;
    let sender = stack.registered_user("unreplicated-sender").await;
    let receiver = stack.registered_user("unreplicated-receiver").await;
    let mut client = stack.message_client().await;
    let send = || keyed_message(&sender, &receiver, "stored once", "not-replicated-1");

    ha.replica.kill();
    let refused = client
        .send_message(send())
        .await
        .expect_err("no replica confirms the write");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("not yet replicated"),
        "{refused:?}"
    );

    ha.replica.start_again().await;
    ha.replica.wait_for_link_up().await;
    // The client's retry rule: the same request, the same key, until it is answered.
    eventually("the retry to be answered success", || {
        let mut client = client.clone();
        let request = send();
        async move {
            match client.send_message(request).await {
                Ok(reply) => reply.into_inner().success.filter(|ok| *ok),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    None
                }
            }
        }
    })
    .await;
    let repeat = client
        .send_message(send())
        .await
        .expect("a repeat after the success is answered success too");
    assert_eq!(repeat.into_inner().success, Some(true));

    let messages = stack.messages_of(&receiver).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let mut notifications = ha.primary.db(2).await;
    eventually("the one notification to be stored", || async {
        let length: usize = notifications
            .clone()
            .llen(notifications_key(&receiver))
            .await
            .expect("LLEN");
        assert!(length <= 1, "a notification stored twice: {length}");
        (length == 1).then_some(())
    })
    .await;
    eventually("the notification outbox to drain", || async {
        let length: usize = ha
            .primary
            .db(1)
            .await
            .xlen(NOTIFICATION_OUTBOX)
            .await
            .expect("XLEN");
        (length == 0).then_some(())
    })
    .await;
    assert_eq!(
        entries_ever_added_in(&ha.primary, 1, NOTIFICATION_OUTBOX).await,
        1
    );
    let length: usize = notifications
        .llen(notifications_key(&receiver))
        .await
        .expect("LLEN");
    assert_eq!(length, 1);
}
