//! message-service: SendMessage, GetMessages, /list_conversations, the DB 1 layout, and the
//! whole flow from a sent message to the frontend's live stream.

use std::collections::{BTreeMap, HashSet};

use futures::future::join_all;
use integration_tests::{
    Stack,
    helpers::{
        EmailIn, PATIENCE, assert_email_is_required, eventually, message, receive_ids, send_over,
        unique_email,
    },
};
use message_service::keys::{
    MESSAGE_ID_COUNTER, NOTIFICATION_OUTBOX, conversation_key, conversations_key, user_messages_key,
};
use proto::message_service::SendMessageRequest;
use redis::AsyncCommands;
use serde_json::{Value, json};

/// Everything in DB 1: each key with its type and a rendering of its value.
async fn db1_snapshot<S>(stack: &Stack<S>) -> BTreeMap<String, String> {
    let mut db = stack.redis.db(1).await;
    let keys: Vec<String> = db.keys("*").await.expect("KEYS *");
    let mut snapshot = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut db)
            .await
            .expect("TYPE");
        let value = match kind.as_str() {
            "string" => db.get::<_, String>(&key).await.expect("GET"),
            "set" => format!(
                "{:?}",
                db.smembers::<_, HashSet<String>>(&key)
                    .await
                    .expect("SMEMBERS")
            ),
            "hash" => format!(
                "{:?}",
                db.hgetall::<_, BTreeMap<String, String>>(&key)
                    .await
                    .expect("HGETALL")
            ),
            "list" => format!(
                "{:?}",
                db.lrange::<_, Vec<String>>(&key, 0, -1)
                    .await
                    .expect("LRANGE")
            ),
            "stream" => format!("length {}", db.xlen::<_, usize>(&key).await.expect("XLEN")),
            other => other.to_owned(),
        };
        snapshot.insert(key, format!("{kind}: {value}"));
    }
    snapshot
}

async fn assert_refused_and_nothing_written<S>(
    stack: &Stack<S>,
    request: SendMessageRequest,
    expected_message: &str,
) {
    // The outbox worker creates its stream at start-up; let that settle before comparing.
    eventually("message-service's outbox stream to exist", || async {
        let exists: bool = stack
            .redis
            .db(1)
            .await
            .exists(NOTIFICATION_OUTBOX)
            .await
            .expect("EXISTS");
        exists.then_some(())
    })
    .await;
    let before = db1_snapshot(stack).await;

    let reply = stack
        .message_client()
        .await
        .send_message(request)
        .await
        .expect("a refusal is status OK")
        .into_inner();

    assert_eq!(reply.success, Some(false), "{reply:?}");
    assert_eq!(reply.message.as_deref(), Some(expected_message));
    assert_eq!(db1_snapshot(stack).await, before, "DB 1 changed");
}

// ---------------------------------------------------------------------------------------------
// The whole flow
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_sent_message_is_stored_notified_listed_and_pushed_live_to_the_frontend() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut live = stack.watch(&bob).await;

    let reply = stack.send(&alice, &bob, "Hi Bob").await;

    assert_eq!(reply.success, Some(true));
    assert_eq!(reply.message.as_deref(), Some("Message sent"));
    let stored = stack.wait_for_notifications(&bob, 1).await;
    let notification = &stored[0];
    assert_eq!(notification["sender_email"], alice.as_str());
    assert_eq!(notification["receiver_email"], bob.as_str());
    assert_eq!(notification["read"], false);
    let id = notification["notification_id"].as_str().expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a random UUID: {id}");
    let (status, body) = stack.list_notifications(EmailIn::Query(&bob)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "notifications": stored }));
    let pushed = tokio::time::timeout(PATIENCE, live.message())
        .await
        .expect("the frontend streams the notification in time")
        .expect("the stream is healthy")
        .expect("the stream is open");
    assert_eq!(pushed.sender_email.as_deref(), Some(alice.as_str()));
    assert_eq!(pushed.receiver_email.as_deref(), Some(bob.as_str()));
    assert_eq!(pushed.read, Some(false));
    assert_eq!(pushed.notification_id.as_deref(), Some(id));
    assert_eq!(
        pushed.timestamp.as_deref(),
        notification["timestamp"].as_str()
    );
    let received = stack.messages_of(&bob).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].content.as_deref(), Some("Hi Bob"));
}

#[tokio::test]
async fn a_message_sent_right_after_both_users_are_created_notifies_the_receiver() {
    // Forty sign-ups from one address: past its default allowance of new passwords.
    let stack = Stack::in_process_with_env(&[("NEW_PASSWORDS_PER_ADDRESS", "0")]).await;
    let mut client = stack.message_client().await;
    let mut receivers = Vec::new();
    for _ in 0..20 {
        let (sender, receiver) = (unique_email("fresh-sender"), unique_email("fresh-receiver"));
        for email in [&sender, &receiver] {
            let (status, body) = stack.create_user(email, "pw-123456", "Fresh").await;
            assert_eq!(status, 201, "POST /users: {body}");
        }

        // No wait for the subscription: the 201s are all a client has to go on.
        let reply = send_over(&mut client, &sender, &receiver, "hello, new user").await;

        assert_eq!(reply.success, Some(true), "{reply:?}");
        receivers.push(receiver);
    }
    stack.wait_for_notification_outbox_drained().await;
    for receiver in &receivers {
        assert_eq!(
            stack.stored_notifications(receiver).await.len(),
            1,
            "the notification to {receiver} was dropped"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SendMessage
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stored_message_has_the_exact_db1_layout() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;

    stack.send_ok(&bob, &alice, "first").await;
    stack.send_ok(&alice, &bob, "second").await;

    let mut db = stack.redis.db(1).await;
    let counter: String = db.get(MESSAGE_ID_COUNTER).await.expect("GET counter");
    assert_eq!(counter, "2");
    // The contract's key spelled out, the one literal key name in the suite's DB 1 checks:
    // everywhere else keys come from `message_service::keys`.
    let raw: String = db.get("message:2").await.expect("GET message:2");
    let stored: Value = serde_json::from_str(&raw).expect("message JSON");
    let keys: Vec<&String> = stored.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        [
            "content",
            "id",
            "receiver_email",
            "sender_email",
            "timestamp"
        ]
    );
    assert!(raw.starts_with("{\"id\":2,"), "id is a number: {raw}");
    assert_eq!(stored["id"], 2);
    assert_eq!(stored["sender_email"], alice.as_str());
    assert_eq!(stored["receiver_email"], bob.as_str());
    assert_eq!(stored["content"], "second");
    let timestamp = stored["timestamp"].as_str().expect("timestamp is a string");
    assert!(
        timestamp.len() >= 20 && timestamp.as_bytes()[10] == b'T' && timestamp.ends_with('Z'),
        "RFC 3339 UTC: {timestamp}"
    );
    let alices: HashSet<String> = db
        .smembers(conversations_key(&alice))
        .await
        .expect("SMEMBERS");
    let bobs: HashSet<String> = db
        .smembers(conversations_key(&bob))
        .await
        .expect("SMEMBERS");
    assert_eq!(alices, HashSet::from([bob.clone()]));
    assert_eq!(bobs, HashSet::from([alice.clone()]));
    let (first, second) = if alice < bob {
        (&alice, &bob)
    } else {
        (&bob, &alice)
    };
    let conversation: BTreeMap<String, String> = db
        .hgetall(conversation_key(first, second))
        .await
        .expect("HGETALL conversation");
    assert_eq!(conversation["user_1"], *first);
    assert_eq!(conversation["user_2"], *second);
    assert_eq!(conversation["last_message_id"], "2");
    assert_eq!(conversation["last_timestamp"], timestamp);
    assert_eq!(conversation["message_count"], "2");
    let reversed: bool = db
        .exists(conversation_key(second, first))
        .await
        .expect("EXISTS");
    assert!(!reversed, "a pair has one conversation hash");
    for user in [&alice, &bob] {
        let index: Vec<u64> = db
            .zrange(user_messages_key(user), 0, -1)
            .await
            .expect("ZRANGE index");
        assert_eq!(index, [1, 2]);
    }
}

#[tokio::test]
async fn a_message_to_oneself_is_indexed_once() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;

    stack.send_ok(&alice, &alice, "note to self").await;

    let index: Vec<u64> = stack
        .redis
        .db(1)
        .await
        .zrange(user_messages_key(&alice), 0, -1)
        .await
        .expect("ZRANGE index");
    assert_eq!(index, [1]);
    assert_eq!(stack.messages_of(&alice).await.len(), 1);
}

#[tokio::test]
async fn an_unknown_sender_is_refused_and_nothing_is_written() {
    let stack = Stack::in_process().await;
    let bob = stack.registered_user("bob").await;
    let stranger = unique_email("stranger");

    assert_refused_and_nothing_written(
        &stack,
        message(Some(&stranger), Some(&bob), Some("hello")),
        "Sender does not exist",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_receiver_is_refused_and_nothing_is_written() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let stranger = unique_email("stranger");

    assert_refused_and_nothing_written(
        &stack,
        message(Some(&alice), Some(&stranger), Some("hello")),
        "Receiver does not exist",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_sender_is_reported_before_an_unknown_receiver() {
    let stack = Stack::in_process().await;

    assert_refused_and_nothing_written(
        &stack,
        message(
            Some(&unique_email("nobody")),
            Some(&unique_email("nobody")),
            Some("hello"),
        ),
        "Sender does not exist",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_address_is_an_unknown_user() {
    let stack = Stack::in_process().await;
    let bob = stack.registered_user("bob").await;

    assert_refused_and_nothing_written(
        &stack,
        message(Some(&bob), Some("not-an-email"), Some("hello")),
        "Receiver does not exist",
    )
    .await;
}

#[tokio::test]
async fn a_message_with_a_missing_or_empty_field_is_refused_and_nothing_is_written() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let cases = [
        (
            message(None, Some(&bob), Some("hi")),
            "sender_email is required",
        ),
        (
            message(Some(""), Some(&bob), Some("hi")),
            "sender_email is required",
        ),
        (
            message(Some(&alice), None, Some("hi")),
            "receiver_email is required",
        ),
        (
            message(Some(&alice), Some(" "), Some("hi")),
            "receiver_email is required",
        ),
        (
            message(Some(&alice), Some(&bob), None),
            "content is required",
        ),
        (
            message(Some(&alice), Some(&bob), Some("")),
            "content is required",
        ),
        (
            SendMessageRequest {
                message: None,
                idempotency_key: None,
            },
            "sender_email is required",
        ),
    ];

    for (request, expected) in cases {
        assert_refused_and_nothing_written(&stack, request, expected).await;
    }
}

#[tokio::test]
async fn two_hundred_concurrent_sends_get_unique_ids_and_none_is_lost() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let client = stack.message_client().await;

    let replies = join_all((0..200).map(|n| {
        let mut client = client.clone();
        let (sender, receiver) = if n % 2 == 0 {
            (alice.clone(), bob.clone())
        } else {
            (bob.clone(), alice.clone())
        };
        async move { send_over(&mut client, &sender, &receiver, &format!("message {n}")).await }
    }))
    .await;

    assert!(replies.iter().all(|reply| reply.success == Some(true)));
    let counter: u64 = stack
        .redis
        .db(1)
        .await
        .get(MESSAGE_ID_COUNTER)
        .await
        .expect("GET counter");
    assert_eq!(counter, 200);
    for user in [&alice, &bob] {
        let ids: Vec<u64> = stack
            .messages_of(user)
            .await
            .iter()
            .map(|m| {
                m.message_id
                    .as_deref()
                    .and_then(|id| id.parse().ok())
                    .expect("numeric id")
            })
            .collect();
        assert_eq!(
            ids,
            (1..=200).collect::<Vec<u64>>(),
            "{user}: all, ascending"
        );
    }
    let contents: HashSet<String> = stack
        .messages_of(&alice)
        .await
        .into_iter()
        .filter_map(|m| m.content)
        .collect();
    assert_eq!(contents.len(), 200, "every message is distinct");
    let to_bob = stack.distinct_notification_ids(&bob, 100).await;
    let to_alice = stack.distinct_notification_ids(&alice, 100).await;
    assert!(to_bob.is_disjoint(&to_alice), "one id per message");
}

// ---------------------------------------------------------------------------------------------
// GetMessages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_messages_returns_what_the_user_sent_and_received_oldest_first() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let carol = stack.registered_user("carol").await;
    stack.send_ok(&alice, &bob, "1 a->b").await;
    stack.send_ok(&bob, &alice, "2 b->a").await;
    stack.send_ok(&carol, &bob, "3 c->b").await;
    stack.send_ok(&alice, &carol, "4 a->c").await;

    let alices = stack.messages_of(&alice).await;
    let bobs = stack.messages_of(&bob).await;

    let summary = |messages: &[proto::message_service::Message]| -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| {
                (
                    m.message_id.clone().unwrap_or_default(),
                    m.content.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(id, content)| ((*id).to_owned(), (*content).to_owned()))
            .collect()
    };
    assert_eq!(
        summary(&alices),
        pairs(&[("1", "1 a->b"), ("2", "2 b->a"), ("4", "4 a->c")])
    );
    assert_eq!(
        summary(&bobs),
        pairs(&[("1", "1 a->b"), ("2", "2 b->a"), ("3", "3 c->b")])
    );
    let second = &alices[1];
    assert_eq!(second.sender_email.as_deref(), Some(bob.as_str()));
    assert_eq!(second.receiver_email.as_deref(), Some(alice.as_str()));
    assert!(
        second
            .timestamp
            .as_deref()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[tokio::test]
async fn get_messages_for_an_unknown_or_empty_user_is_an_empty_list() {
    let stack = Stack::in_process().await;

    assert!(stack.messages_of(&unique_email("nobody")).await.is_empty());
    assert!(stack.messages_of("").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// GET /list_conversations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_conversations_takes_the_email_from_the_query_string_and_sorts_counterparts() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let carol = stack.registered_user("carol").await;
    stack.send_ok(&alice, &carol, "hi").await;
    stack.send_ok(&bob, &alice, "hi").await;
    stack.send_ok(&alice, &bob, "again").await;

    let (status, body) = stack.list_conversations(EmailIn::Query(&alice)).await;

    let mut expected = vec![bob.clone(), carol.clone()];
    expected.sort();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "conversations": expected }));
}

#[tokio::test]
async fn list_conversations_takes_the_email_from_a_json_body() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    stack.send_ok(&alice, &bob, "hi").await;

    let (status, body) = stack
        .list_conversations(EmailIn::Body(json!({ "email": bob })))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "conversations": [alice] }));
}

#[tokio::test]
async fn list_conversations_of_an_unknown_user_is_empty() {
    let stack = Stack::in_process().await;

    let (status, body) = stack
        .list_conversations(EmailIn::Query(&unique_email("nobody")))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true, "conversations": [] }));
}

#[tokio::test]
async fn list_conversations_without_an_email_is_a_400() {
    let stack = Stack::in_process().await;
    assert_email_is_required(|email| stack.list_conversations(email)).await;
}

// ---------------------------------------------------------------------------------------------
// Flow details
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_notification_of_a_burst_reaches_the_frontend_stream_once() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    let mut live = stack.watch(&bob).await;

    for n in 0..20 {
        stack.send_ok(&alice, &bob, &format!("burst {n}")).await;
    }

    let wanted = stack.distinct_notification_ids(&bob, 20).await;
    assert_eq!(receive_ids(&mut live, &wanted).await, wanted);
    stack.assert_nothing_more_streamed(&mut live, &bob).await;
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_messages_pages_walk_every_message_oldest_first() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let bob = stack.registered_user("bob").await;
    for n in 0..11 {
        stack.send_ok(&alice, &bob, &format!("m{n}")).await;
    }
    let mut client = stack.message_client().await;

    let mut contents = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .get_messages(proto::message_service::GetMessagesRequest {
                user_email: Some(bob.clone()),
                limit: Some(4),
                after,
            })
            .await
            .expect("GetMessages")
            .into_inner();
        assert!(page.messages.len() <= 4);
        contents.extend(page.messages.into_iter().filter_map(|m| m.content));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }

    let expected: Vec<String> = (0..11).map(|n| format!("m{n}")).collect();
    assert_eq!(contents, expected);
}

#[tokio::test]
async fn list_conversations_pages_walk_every_counterpart_in_order() {
    let stack = Stack::in_process().await;
    let alice = stack.registered_user("alice").await;
    let mut counterparts = Vec::new();
    for n in 0..5 {
        let other = stack.registered_user(&format!("c{n}")).await;
        stack.send_ok(&alice, &other, "hi").await;
        counterparts.push(other);
    }
    counterparts.sort();

    let mut walked = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut request = stack
            .http()
            .get(stack.message_url("/list_conversations"))
            .query(&[("email", alice.as_str()), ("limit", "2")]);
        if let Some(cursor) = &before {
            request = request.query(&[("after", cursor.as_str())]);
        }
        let (status, body) =
            integration_tests::helpers::reply(request.send().await.expect("GET")).await;
        assert_eq!(status, 200, "{body}");
        for counterpart in body["conversations"].as_array().expect("a list") {
            walked.push(counterpart.as_str().expect("an email").to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
    }

    assert_eq!(walked, counterparts);
}
