//! frontend-service's `GET /live` (Server-Sent Events): replay then live, each once and in
//! order, across a restart and across replicas; read-state changes and retention resets
//! in-band; slow readers dropped and resumed; bad input. Tokens and settings: `liveauth.rs`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::future::join_all;
use integration_tests::{
    ServiceProcess, Stack,
    helpers::{
        EmailIn, PATIENCE, SseEvent, SseStream, ascending_cursors, assert_error, distinct_ids,
        eventually, reply, unique_email,
    },
};
use notification_service::keys::{FRONTEND_CHANGES, notification_trimmed_key};
use proto::notification_service::{
    CreateNotificationRequest, MarkNotificationsReadRequest, UnreadCountRequest,
    notification_service_client::NotificationServiceClient,
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type NotificationClient = NotificationServiceClient<tonic::transport::Channel>;

/// `count` notifications for `receiver`, created one after the other; their ids.
async fn notify<S>(stack: &Stack<S>, receiver: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let id = unique_email("live-id");
        assert!(
            stack
                .create_notification(Some("sender@example.com"), Some(receiver), Some(&id))
                .await
        );
        ids.push(id);
    }
    ids
}

/// The stored notifications of `receiver` as `/list_notifications` shows them, by id.
async fn listed<S>(stack: &Stack<S>, receiver: &str) -> Vec<Value> {
    let (status, body) = stack.list_notifications(EmailIn::Query(receiver)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().expect("a list").clone()
}

#[tokio::test]
async fn sse_replays_the_store_then_streams_live_each_once_in_cursor_order() {
    let stack = Stack::in_process().await;
    let bob = unique_email("sse-bob");
    let replayed = notify(&stack, &bob, 3).await;

    let mut stream = stack.live(&bob).await;
    let first = stream.notifications(3).await;
    assert_eq!(stream.retry, Some(1000), "`retry: 1000` comes first");
    let unread = stream.expect("unread").await;
    assert_eq!(unread.id, None, "{unread:?}");
    assert_eq!(unread.json(), json!({ "unread_count": 3 }));
    let live = notify(&stack, &bob, 2).await;
    let second = stream.notifications(2).await;

    let all: Vec<SseEvent> = first.into_iter().chain(second).collect();
    let cursors = ascending_cursors(&all);
    assert!(
        cursors.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{cursors:?}"
    );
    let ids: Vec<String> = all.iter().map(SseEvent::notification_id).collect();
    assert_eq!(ids, [replayed, live].concat());
    // Each event's data is the notification exactly as the store lists it.
    let mut stored = listed(&stack, &bob).await;
    stored.reverse();
    let data: Vec<Value> = all.iter().map(SseEvent::json).collect();
    assert_eq!(data, stored);
    stack
        .assert_nothing_more_on(std::slice::from_mut(&mut stream), &bob)
        .await;
}

#[tokio::test]
async fn an_idle_stream_sends_keepalive_comments_and_outlives_the_idle_connection_timeout() {
    let stack = Stack::in_process_with_env(&[
        ("LIVE_KEEPALIVE_INTERVAL", "200ms"),
        ("HTTP_IDLE_TIMEOUT", "1s"),
    ])
    .await;
    let bob = unique_email("sse-idle");
    let mut stream = stack.live(&bob).await;
    assert_eq!(stream.expect("unread").await.json()["unread_count"], 0);
    // Ten comments take two seconds: longer than an idle connection may last.
    for _ in 0..10 {
        let events = stream.until_comment("keepalive").await;
        assert!(events.is_empty(), "{events:?}");
    }
    let ids = notify(&stack, &bob, 1).await;
    assert_eq!(
        stream.expect("notification").await.notification_id(),
        ids[0]
    );
}

/// Reads `stream`'s notifications into `seen` until it ends; its last event id.
async fn read_until_end(stream: &mut SseStream, seen: &mut Vec<SseEvent>) {
    while let Some(event) = stream.next_event().await {
        if event.event == "notification" {
            seen.push(event);
        }
    }
}

#[tokio::test]
async fn streams_resume_by_last_event_id_and_by_after_across_a_frontend_restart_mid_burst() {
    let mut stack = Stack::start().await;
    let bob = unique_email("sse-restart");
    let port = stack.frontend_metrics_port;
    let mut by_header = stack.live(&bob).await;
    let mut by_query = stack.live(&bob).await;
    for stream in [&mut by_header, &mut by_query] {
        assert_eq!(stream.expect("unread").await.json()["unread_count"], 0);
    }
    let total = 60;
    let sender = tokio::spawn(send_burst(
        stack.notification_client().await,
        bob.clone(),
        total,
    ));
    // Some arrive live, then frontend-service dies under both streams.
    let mut seen_header = by_header.notifications(5).await;
    let mut seen_query = by_query.notifications(5).await;
    stack.frontend.restart().await;
    read_until_end(&mut by_header, &mut seen_header).await;
    read_until_end(&mut by_query, &mut seen_query).await;

    let last_id = by_header.last_event_id.clone().expect("an id was seen");
    let mut resumed_header = stack
        .live_at(port, &[("email", &bob)], &[("Last-Event-ID", &last_id)])
        .await;
    let after = by_query.last_event_id.clone().expect("an id was seen");
    let mut resumed_query = stack
        .live_at(port, &[("email", &bob), ("after", &after)], &[])
        .await;
    let ids = sender.await.expect("the sender finished");
    let wanted: HashSet<String> = ids.into_iter().collect();
    for (seen, resumed) in [
        (&mut seen_header, &mut resumed_header),
        (&mut seen_query, &mut resumed_query),
    ] {
        while distinct_ids(seen).len() < total {
            let next = resumed
                .next_event()
                .await
                .expect("the resumed stream is open");
            if next.event == "notification" {
                seen.push(next);
            }
        }
        ascending_cursors(seen);
        assert_eq!(
            distinct_ids(seen),
            wanted,
            "nothing missed, nothing doubled"
        );
    }
    stack
        .assert_nothing_more_on(&mut [resumed_header, resumed_query], &bob)
        .await;
}

/// `count` notifications for `receiver` over `client`, one after the other; their ids. Run
/// as a task of its own, so sends continue while the test restarts a service.
async fn send_burst(mut client: NotificationClient, receiver: String, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let id = unique_email("burst");
        let request = CreateNotificationRequest {
            sender_email: Some("sender@example.com".into()),
            receiver_email: Some(receiver.clone()),
            notification_id: Some(id.clone()),
        };
        let reply = client
            .create_notification(request)
            .await
            .expect("CreateNotification answers OK (notification-service stays up)");
        assert_eq!(reply.into_inner().success, Some(true));
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ids
}

#[tokio::test]
async fn two_replicas_stream_every_notification_and_every_change_to_each_of_a_users_streams() {
    let stack = Stack::in_process().await;
    let replica = ServiceProcess::start("frontend-service", stack.replica_env()).await;
    let replica_port = replica.ports().http.expect("an HTTP port");
    let bob = unique_email("sse-replicas");
    let mut streams = vec![
        stack.live(&bob).await,
        stack.live_at(replica_port, &[("email", &bob)], &[]).await,
    ];
    for stream in &mut streams {
        assert_eq!(stream.expect("unread").await.json()["unread_count"], 0);
    }
    // notification-service pushes to the first replica only; the second hears of it too.
    let ids = notify(&stack, &bob, 3).await;
    for stream in &mut streams {
        let got = stream.notifications(3).await;
        ascending_cursors(&got);
        let got: Vec<String> = got.iter().map(SseEvent::notification_id).collect();
        assert_eq!(got, ids);
    }

    // Mark one read (REST).
    let (status, body) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": [ids[0]] }))
        .await;
    assert_eq!(status, 200, "{body}");
    for stream in &mut streams {
        let read = stream.expect("read").await;
        assert_eq!(read.id, None);
        assert_eq!(
            read.json(),
            json!({ "notification_ids": [ids[0]], "all": false, "unread_count": 2 })
        );
    }
    // Mark all read (gRPC).
    stack
        .notification_client()
        .await
        .mark_notifications_read(MarkNotificationsReadRequest {
            email: Some(bob.clone()),
            notification_ids: vec![],
        })
        .await
        .expect("MarkNotificationsRead answers OK");
    for stream in &mut streams {
        assert_eq!(
            stream.expect("read").await.json(),
            json!({ "notification_ids": [], "all": true, "unread_count": 0 })
        );
    }
    // A new unread one, then deleted.
    let new = notify(&stack, &bob, 1).await;
    for stream in &mut streams {
        assert_eq!(
            stream.expect("notification").await.notification_id(),
            new[0]
        );
    }
    let (status, body) = stack
        .delete_notifications(&json!({ "email": bob, "notification_ids": [new[0]] }))
        .await;
    assert_eq!(status, 200, "{body}");
    for stream in &mut streams {
        assert_eq!(
            stream.expect("deleted").await.json(),
            json!({ "notification_ids": [new[0]], "all": false, "unread_count": 0 })
        );
    }
    // Each change was one entry of the change outbox, written by the script that made it.
    assert_eq!(stack.entries_ever_added(2, FRONTEND_CHANGES).await, 3);
    // Marking what is read already changes nothing, so nothing is queued or streamed for it.
    let (status, _) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": [ids[1]] }))
        .await;
    assert_eq!(status, 200);
    stack.assert_nothing_more_on(&mut streams, &bob).await;
    assert_eq!(stack.entries_ever_added(2, FRONTEND_CHANGES).await, 3);
    // A reconnecting stream's badge is the store's.
    let count = stack
        .notification_client()
        .await
        .get_unread_count(UnreadCountRequest {
            email: Some(bob.clone()),
            up_to: None,
        })
        .await
        .expect("GetUnreadCount answers OK")
        .into_inner()
        .unread_count;
    let mut fresh = stack.live(&bob).await;
    fresh.notifications(4).await;
    assert_eq!(
        fresh.expect("unread").await.json()["unread_count"].as_u64(),
        count
    );
}

#[tokio::test]
async fn a_change_made_while_the_frontend_it_is_pushed_to_is_down_reaches_the_streams_later() {
    let mut stack = Stack::start().await;
    let replica = ServiceProcess::start("frontend-service", stack.replica_env()).await;
    let replica_port = replica.ports().http.expect("an HTTP port");
    let bob = unique_email("sse-outbox");
    let ids = notify(&stack, &bob, 2).await;
    let mut stream = stack.live_at(replica_port, &[("email", &bob)], &[]).await;
    stream.notifications(2).await;
    assert_eq!(stream.expect("unread").await.json()["unread_count"], 2);

    // notification-service pushes to the first replica, which is down.
    stack.frontend.kill();
    let (status, body) = stack
        .mark_read(&json!({ "email": bob, "notification_ids": [ids[1]] }))
        .await;
    assert_eq!(status, 200, "{body}");
    stack.frontend.restart().await;
    assert_eq!(
        stream.expect("read").await.json(),
        json!({ "notification_ids": [ids[1]], "all": false, "unread_count": 1 })
    );
}

/// Opens `GET /live` over a socket with a tiny receive buffer and never reads it.
async fn stalled_reader(port: u16, email: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    // HTTP/1.0: the body is not chunked and ends with the connection.
    let request = format!("GET /live?email={email}&after=0 HTTP/1.0\r\nHost: x\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    stream
}

#[tokio::test]
async fn a_slow_reader_is_dropped_and_resumes_from_the_store() {
    let stack = Stack::start_with_env(&[
        ("NOTIFICATION_RETENTION_COUNT", "20000"),
        ("LIVE_SLOW_READER_TIMEOUT", "1s"),
    ])
    .await;
    // Long addresses and ids make large events (~780 bytes), 5.4 MB of them: more than the
    // kernel buffers of a loopback connection hold (up to the 4 MB of `tcp_wmem`), so the
    // stream's own buffer fills.
    let domain = format!(
        "{}.{}.{}.example.com",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60)
    );
    let bob = format!(
        "{}@{domain}",
        unique_email("sse-slow").replace(['@', '.'], "-")
    );
    let sender = format!("{}@{domain}", "s".repeat(50));
    let total = 7000;
    let stack = Arc::new(stack);
    for chunk in 0..total / 200 {
        let tasks = (0..200).map(|n| {
            let (stack, bob, sender) = (Arc::clone(&stack), bob.clone(), sender.clone());
            async move {
                let id = format!("slow-{chunk}-{n}-{}", "x".repeat(100));
                assert!(
                    stack
                        .create_notification(Some(&sender), Some(&bob), Some(&id))
                        .await
                );
            }
        });
        join_all(tasks).await;
    }
    let mut stalled = stalled_reader(stack.frontend_metrics_port, &bob).await;
    eventually("the slow reader is dropped", || async {
        let metrics = stack.metrics(stack.frontend_url("/metrics")).await;
        (metrics.value("frontend_slow_watchers_dropped_total", &[]) >= 1.0).then_some(())
    })
    .await;

    // What it was sent before it was dropped is whole; it ends early.
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut raw))
        .await
        .expect("the dropped stream ends")
        .expect("read the dropped stream");
    let text = String::from_utf8(raw).expect("UTF-8");
    let body = text.split_once("\r\n\r\n").expect("a reply head").1;
    let first = parse_events(body);
    assert!(
        first.len() < total,
        "dropped before the end: {}",
        first.len()
    );
    ascending_cursors(&first);
    let last = first.last().expect("some were sent").cursor().to_string();
    let mut resumed = stack
        .live_at(
            stack.frontend_metrics_port,
            &[("email", &bob)],
            &[("Last-Event-ID", &last)],
        )
        .await;
    let rest = resumed.notifications(total - first.len()).await;
    let all: Vec<SseEvent> = first.into_iter().chain(rest).collect();
    ascending_cursors(&all);
    assert_eq!(distinct_ids(&all).len(), total);
}

/// The notification events of a whole SSE body.
fn parse_events(body: &str) -> Vec<SseEvent> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut event = SseEvent {
                event: String::new(),
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                match line.split_once(": ") {
                    Some(("event", value)) => event.event = value.to_owned(),
                    Some(("id", value)) => event.id = Some(value.to_owned()),
                    Some(("data", value)) => event.data = value.to_owned(),
                    _ => {}
                }
            }
            // A block cut short at the drop has no data yet.
            (event.event == "notification"
                && !event.data.is_empty()
                && serde_json::from_str::<Value>(&event.data).is_ok())
            .then_some(event)
        })
        .collect()
}

/// Query parameters or headers of a request.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn bad_addresses_and_cursors_are_a_400_before_any_stream() {
    let stack = Stack::in_process().await;
    let port = stack.frontend_metrics_port;
    let bob = unique_email("sse-bad");
    let cases: Vec<(Pairs, Pairs)> = vec![
        (vec![], vec![]),
        (vec![("email", "")], vec![]),
        (vec![("email", "not-an-email")], vec![]),
        (vec![("email", "bob@@example.com")], vec![]),
        (vec![("email", "bob\u{202e}@example.com")], vec![]),
        (vec![("email", "b\u{0}b@example.com")], vec![]),
        (vec![("email", "\u{1F600}")], vec![]),
        (vec![("email", &bob), ("after", "abc")], vec![]),
        (vec![("email", &bob), ("after", "-1")], vec![]),
        (vec![("email", &bob), ("after", "1e3")], vec![]),
        (vec![("email", &bob), ("after", "٣")], vec![]),
        (vec![("email", &bob)], vec![("Last-Event-ID", "x")]),
        (
            vec![("email", &bob), ("after", "1")],
            vec![("Last-Event-ID", "1.5")],
        ),
    ];
    for (query, headers) in cases {
        let response = stack.get_live_at(port, &query, &headers).await;
        let (status, body) = reply(response).await;
        assert_error(status, &body, 400);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query:?} {headers:?}: {body}"
        );
    }
}

#[tokio::test]
async fn a_client_resuming_from_a_trimmed_cursor_is_told_before_the_replay_of_what_is_kept() {
    let stack = Stack::in_process_with_env(&[("NOTIFICATION_RETENTION_COUNT", "3")]).await;
    let bob = unique_email("sse-reset");
    let ids = notify(&stack, &bob, 5).await;
    let mut kept: Vec<Value> = listed(&stack, &bob).await;
    kept.reverse();
    let cursors: Vec<u64> = kept
        .iter()
        .map(|n| n["cursor"].as_u64().expect("a cursor"))
        .collect();
    let (oldest, first) = (cursors[0], cursors[0] - 2);
    let port = stack.frontend_metrics_port;

    // After the first cursor: the second was trimmed.
    let after = first.to_string();
    let mut stream = stack
        .live_at(port, &[("email", &bob), ("after", &after)], &[])
        .await;
    let reset = stream.expect("reset").await;
    assert_eq!(reset.id, None);
    assert_eq!(
        reset.json(),
        json!({ "reason": "retention", "after": first, "oldest": oldest })
    );
    let trimmed: Option<u64> = stack
        .redis
        .db(2)
        .await
        .get(notification_trimmed_key(&bob))
        .await
        .expect("GET the retention mark");
    assert_eq!(
        trimmed,
        Some(oldest - 1),
        "the newest trimmed cursor is remembered"
    );
    let replayed = stream.notifications(3).await;
    let replayed: Vec<String> = replayed.iter().map(SseEvent::notification_id).collect();
    assert_eq!(replayed, ids[2..]);
    assert_eq!(stream.expect("unread").await.json()["unread_count"], 3);

    // After the newest trimmed one nothing is missing: no reset.
    let after = (oldest - 1).to_string();
    let mut stream = stack
        .live_at(port, &[("email", &bob)], &[("Last-Event-ID", &after)])
        .await;
    assert_eq!(stream.expect("notification").await.cursor(), oldest);
    // A deletion by the user is not retention: still no reset.
    let (status, body) = stack
        .delete_notifications(&json!({ "email": bob, "notification_ids": [ids[2]] }))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut stream = stack
        .live_at(port, &[("email", &bob), ("after", &after)], &[])
        .await;
    assert_eq!(stream.expect("notification").await.cursor(), cursors[1]);
}

/// Sends `GET /live?email=` over a socket of its own, its head in `pieces` a moment apart;
/// returns the socket and what it read up to the replay's `event: unread`.
async fn raw_live(port: u16, email: &str, pieces: &[&str]) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    for (n, piece) in pieces.iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let piece = piece.replace("{email}", email);
        stream.write_all(piece.as_bytes()).await.expect("send");
    }
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: unread") {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the stream answers")
            .expect("read the stream");
        assert!(read > 0, "ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..read]);
    }
    (stream, String::from_utf8(seen).expect("UTF-8"))
}

#[tokio::test]
async fn a_stream_has_a_connection_of_its_own_whose_close_ends_the_watch() {
    let stack = Stack::start().await;
    let port = stack.frontend_metrics_port;
    let open_streams = || async {
        let metrics = stack.metrics(stack.frontend_url("/metrics")).await;
        metrics.value("frontend_sse_streams", &[])
    };
    let bob = unique_email("sse-own");
    let whole = "GET /live?email={email} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    let (stream, text) = raw_live(port, &bob, &[whole]).await;
    let head = text
        .split_once("\r\n\r\n")
        .expect("a reply head")
        .0
        .to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "connection: close",
        "transfer-encoding: chunked",
        "x-request-id: ",
        "date: ",
    ] {
        assert!(head.contains(&format!("\r\n{line}")), "{line} in {head}");
    }
    assert_eq!(open_streams().await, 1.0);
    drop(stream);
    eventually("the closed stream's watch ends", || async {
        (open_streams().await == 0.0).then_some(())
    })
    .await;

    // A head that arrives in pieces is answered as well (by hyper, kept alive).
    let (stream, text) = raw_live(
        port,
        &bob,
        &["GET /live?email={email} HTTP/1.1\r\n", "Host: x\r\n\r\n"],
    )
    .await;
    let head = text
        .split_once("\r\n\r\n")
        .expect("a reply head")
        .0
        .to_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(open_streams().await, 1.0);
    drop(stream);
    eventually("the other closed stream's watch ends", || async {
        (open_streams().await == 0.0).then_some(())
    })
    .await;
    // So is an error, with its JSON body and length, before the connection closes.
    let (head, body) = raw_reply(port, b"GET /live?email=nobody HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_error(400, &body, 400);
}

/// Sends `request` as it is and reads the whole reply; its head and body.
async fn raw_reply(port: u16, request: &[u8]) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the reply ends")
        .expect("read the reply");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a reply head");
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn hostile_stream_requests_get_a_json_error_or_a_working_stream() {
    let stack = Stack::start_with_env(&[("HTTP_MAX_URI_BYTES", "1024")]).await;
    let port = stack.frontend_metrics_port;
    let bob = unique_email("sse-hostile");
    // A target over the URI limit, with its head whole (answered on the stream path) and
    // with a head longer than the stream path looks at (answered by hyper): the same 414.
    for padding in [2_000, 9_000] {
        let request = format!(
            "GET /live?email={bob}&pad={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "x".repeat(padding)
        );
        let (head, body) = raw_reply(port, request.as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 414 "), "{padding}: {head}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_error(414, &body, 414);
    }
    // A resume cursor that is not even UTF-8, and one in Arabic-Indic digits.
    for cursor in [&b"\xff\xfe"[..], "٣".as_bytes()] {
        let request = [
            format!("GET /live?email={bob} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ").as_bytes(),
            cursor,
            b"\r\n\r\n",
        ]
        .concat();
        let (head, body) = raw_reply(port, &request).await;
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_error(400, &body, 400);
    }
    // Bytes after the head (a pipelined request, garbage) are not read as a request: the
    // stream answers and goes on.
    let pipelined = "GET /live?email={email} HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n\r\n\u{0}\u{7f}garbage";
    let (mut stream, text) = raw_live(port, &bob, &[pipelined]).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("\"status\""), "{text}");
    let ids = notify(&stack, &bob, 1).await;
    let mut seen = String::new();
    let mut buffer = [0; 4096];
    while !seen.contains(&ids[0]) {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the notification arrives")
            .expect("read the stream");
        assert!(read > 0, "ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(!seen.contains("HTTP/1.1"), "no second reply: {seen}");
}
