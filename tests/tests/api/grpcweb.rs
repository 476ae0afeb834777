//! gRPC-Web on every gRPC port, as a browser speaks it: hand-built frames over HTTP/1.1,
//! binary and base64 text, unary and server-streaming calls, the status mapping and the
//! access guard, and long-lived streams on a connection that is otherwise silent.

use integration_tests::{
    Stack,
    helpers::{PATIENCE, WebEncoding, frame, message, protected_env, unique_email, with_bearer},
};
use prost::Message as _;
use proto::{
    frontend_service::Notification,
    user_service::{CheckUserExistsRequest, CheckUserExistsResponse},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const CHECK_USER_EXISTS: &str = "/user_service.UserService/CheckUserExists";

fn exists_request(email: &str) -> Vec<u8> {
    frame(
        &CheckUserExistsRequest {
            email: Some(email.to_owned()),
        }
        .encode_to_vec(),
    )
}

/// `count` notifications for `receiver`, ids `<tag>-1`…; returns their ids.
async fn notify<S>(stack: &Stack<S>, receiver: &str, tag: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 1..=count {
        let id = format!("{tag}-{n}-{}", unique_email("id"));
        assert!(
            stack
                .create_notification(Some("sender@example.com"), Some(receiver), Some(&id))
                .await
        );
        ids.push(id);
    }
    ids
}

fn ids(notifications: &[Notification]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| n.notification_id.clone().expect("an id"))
        .collect()
}

#[tokio::test]
async fn check_user_exists_answers_a_grpc_web_call_over_http_1_1_in_binary_and_in_text() {
    let stack = Stack::in_process().await;
    let email = unique_email("web-exists");
    let (status, body) = stack.create_user(&email, "pw-123456", "Web").await;
    assert_eq!(status, 201, "{body}");

    for (encoding, asked, exists) in [
        (WebEncoding::Binary, email.as_str(), true),
        (WebEncoding::Binary, "nobody-web@example.com", false),
        (WebEncoding::Text, email.as_str(), true),
    ] {
        let reply = stack
            .grpc_web_raw(
                stack.user_ports.grpc,
                CHECK_USER_EXISTS,
                encoding,
                exists_request(asked),
                &[],
            )
            .await;
        assert_eq!(reply.http_status(), 200);
        let content_type = reply.header("content-type").expect("a content type");
        assert!(
            content_type.starts_with(match encoding {
                WebEncoding::Binary => "application/grpc-web",
                WebEncoding::Text => "application/grpc-web-text",
            }),
            "{content_type}"
        );
        let finished = reply.finish::<CheckUserExistsResponse>().await;
        assert_eq!(finished.code, Code::Ok, "{asked}: {finished:?}");
        assert_eq!(
            finished.messages,
            [CheckUserExistsResponse {
                exists: Some(exists)
            }],
            "{asked} over {encoding:?}"
        );
    }
}

#[tokio::test]
async fn a_grpc_web_watch_replays_then_streams_live_notifications_as_data_frames() {
    let stack = Stack::in_process().await;
    let receiver = stack.registered_user("web-watch").await;
    let stored = notify(&stack, &receiver, "stored", 2).await;

    let mut watch = stack
        .grpc_web_watch(&receiver, None, WebEncoding::Binary, None)
        .await;
    assert_eq!(watch.http_status(), 200);
    let replayed: Vec<Notification> = watch.next_messages(2).await;
    assert_eq!(ids(&replayed), stored, "the replay, oldest first");
    let live = notify(&stack, &receiver, "live", 1).await;
    let streamed: Vec<Notification> = watch.next_messages(1).await;

    assert_eq!(ids(&streamed), live);
    assert_eq!(
        streamed[0].receiver_email.as_deref(),
        Some(receiver.as_str())
    );
    assert!(streamed[0].cursor > replayed[1].cursor, "{streamed:?}");

    // Resuming after the first one, in base64 text: the rest, in order, then live again.
    let first = replayed[0].cursor;
    let mut resumed = stack
        .grpc_web_watch(&receiver, first, WebEncoding::Text, None)
        .await;
    let again: Vec<Notification> = resumed.next_messages(2).await;
    assert_eq!(ids(&again), [stored[1].clone(), live[0].clone()]);
    let later = notify(&stack, &receiver, "later", 1).await;
    let streamed: Vec<Notification> = resumed.next_messages(1).await;
    assert_eq!(ids(&streamed), later);
}

/// An idle HTTP/1.1 connection to `port`, after one grpc-web call on it: resolves once the
/// server has closed it.
async fn closed_by_the_server_after_one_call(port: u16) {
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let health_check = frame(&[]);
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/grpc-web+proto\r\ncontent-length: {}\r\n\r\n",
        health_check.len()
    );
    connection
        .write_all(&[head.as_bytes(), &health_check].concat())
        .await
        .expect("send the call");
    let mut reply = Vec::new();
    let read = tokio::time::timeout(PATIENCE, connection.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the idle connection stays open");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn a_grpc_web_watch_lives_on_while_idle_http_1_1_connections_are_closed_for_silence() {
    // A client silent for 2 s is dead, unless a reply of its own is under way.
    let stack = Stack::in_process_with_env(&[
        ("GRPC_KEEPALIVE_INTERVAL", "1s"),
        ("GRPC_KEEPALIVE_TIMEOUT", "1s"),
    ])
    .await;
    let receiver = stack.registered_user("web-silent").await;
    let mut watch = stack
        .grpc_web_watch(&receiver, None, WebEncoding::Binary, None)
        .await;
    assert_eq!(watch.http_status(), 200);

    // Opened after the watch sent its last byte, so the watch has been silent at least as long.
    closed_by_the_server_after_one_call(stack.frontend_port).await;
    let live = notify(&stack, &receiver, "after-silence", 1).await;

    let streamed: Vec<Notification> = watch.next_messages(1).await;
    assert_eq!(ids(&streamed), live);
}

#[tokio::test]
async fn a_grpc_web_body_that_is_not_one_whole_message_gets_invalid_argument() {
    let stack = Stack::in_process().await;
    // Field 1 with wire type 7, which does not exist.
    let not_protobuf = frame(&[0x0f, 0xff, 0xff]);
    let mut cut_short = exists_request("a@example.com");
    cut_short.pop();
    let calls = [
        (WebEncoding::Binary, not_protobuf.clone(), "decode"),
        (WebEncoding::Text, not_protobuf, "decode"),
        (WebEncoding::Binary, cut_short, "EOF"),
    ];

    for (encoding, body, said) in calls {
        let reply = stack
            .grpc_web_raw(
                stack.user_ports.grpc,
                CHECK_USER_EXISTS,
                encoding,
                body,
                &[],
            )
            .await;
        assert_eq!(reply.http_status(), 200);
        let finished = reply.finish::<CheckUserExistsResponse>().await;

        assert_eq!(finished.code, Code::InvalidArgument, "{finished:?}");
        assert!(finished.message.contains(said), "{finished:?}");
        assert!(finished.messages.is_empty());
    }
    // Text that is not base64 (here: a line break after it, as `base64` prints).
    let reply = stack
        .http()
        .post(format!(
            "http://127.0.0.1:{}{CHECK_USER_EXISTS}",
            stack.user_ports.grpc
        ))
        .header("content-type", "application/grpc-web-text")
        .body("AAAAABMKEWFsaWNlQGV4YW1wbGUuY29t\n")
        .send()
        .await
        .expect("POST");
    let header = |name: &str| reply.headers()[name].to_str().expect("ASCII").to_owned();
    assert_eq!(
        header("grpc-status"),
        (Code::InvalidArgument as i32).to_string()
    );
    assert!(
        header("grpc-message").contains("base64"),
        "{:?}",
        reply.headers()
    );
}

#[tokio::test]
async fn with_protection_a_grpc_web_watch_needs_the_receivers_own_token() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let password = "Str0ng-pass!";
    let receiver = stack.registered_user_with("web-owner", password).await;
    let other = stack.registered_user_with("web-other", password).await;
    let own_token = stack.token(&receiver, password).await;
    let other_token = stack.token(&other, password).await;

    for (token, refused) in [
        (None, Code::Unauthenticated),
        (Some("not-a-token"), Code::Unauthenticated),
        (Some(other_token.as_str()), Code::PermissionDenied),
    ] {
        let reply = stack
            .grpc_web_watch(&receiver, None, WebEncoding::Binary, token)
            .await;
        assert_eq!(reply.http_status(), 200);
        // Refused before any message: the status is in the reply's headers.
        let code = reply
            .header("grpc-status")
            .expect("a status in the headers");
        assert_eq!(code, (refused as i32).to_string(), "{token:?}");
        let finished = reply.finish::<Notification>().await;
        assert_eq!(finished.code, refused);
        assert!(finished.messages.is_empty());
    }

    let mut watch = stack
        .grpc_web_watch(&receiver, None, WebEncoding::Text, Some(&own_token))
        .await;
    assert_eq!(watch.header("grpc-status"), None, "admitted");
    let sent = stack
        .message_client()
        .await
        .send_message(with_bearer(
            message(Some(&other), Some(&receiver), Some("over grpc-web")),
            Some(&other_token),
        ))
        .await
        .expect("SendMessage with the sender's token");
    assert_eq!(sent.into_inner().success, Some(true));
    let streamed: Vec<Notification> = watch.next_messages(1).await;
    assert_eq!(streamed[0].sender_email.as_deref(), Some(other.as_str()));
    assert_eq!(
        streamed[0].receiver_email.as_deref(),
        Some(receiver.as_str())
    );
}

#[tokio::test]
async fn plain_http_1_1_that_is_not_grpc_web_is_refused_and_grpc_over_http_2_is_unchanged() {
    let stack = Stack::in_process().await;
    let url = format!(
        "http://127.0.0.1:{}{CHECK_USER_EXISTS}",
        stack.user_ports.grpc
    );
    let plain = stack
        .http()
        .post(&url)
        .header("content-type", "application/grpc")
        .body(exists_request("a@example.com"))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        plain.status(),
        400,
        "gRPC needs HTTP/2; grpc-web is what HTTP/1.1 speaks"
    );

    // The generated client (HTTP/2) still gets its answer.
    assert!(!stack.user_exists(Some("nobody-h2@example.com")).await);
}

#[tokio::test]
async fn a_grpc_web_call_not_answered_within_the_request_timeout_is_deadline_exceeded() {
    let mut stack = Stack::in_process_with_env(&[("GRPC_REQUEST_TIMEOUT", "1s")]).await;
    // With Redis down, user-service keeps retrying for 3 s before it answers UNAVAILABLE.
    stack.redis.stop().await;

    let finished = stack
        .grpc_web(
            stack.user_ports.grpc,
            CHECK_USER_EXISTS,
            &CheckUserExistsRequest {
                email: Some("late-web@example.com".to_owned()),
            },
        )
        .await
        .finish::<CheckUserExistsResponse>()
        .await;

    assert_eq!(finished.code, Code::DeadlineExceeded, "{finished:?}");
}

#[tokio::test]
async fn grpc_web_calls_are_counted_under_their_rpc_and_final_status() {
    let stack = Stack::start().await;
    let path = CHECK_USER_EXISTS;
    let known = stack
        .grpc_web_raw(
            stack.user_ports.grpc,
            path,
            WebEncoding::Text,
            exists_request("counted-web@example.com"),
            &[],
        )
        .await;
    assert_eq!(
        known.finish::<CheckUserExistsResponse>().await.code,
        Code::Ok
    );
    let garbage = stack
        .grpc_web_raw(
            stack.user_ports.grpc,
            path,
            WebEncoding::Binary,
            frame(&[0x0f, 0xff, 0xff]),
            &[],
        )
        .await;
    let refused = garbage.finish::<CheckUserExistsResponse>().await;
    assert_eq!(refused.code, Code::InvalidArgument);

    let metrics = stack.metrics(stack.user_url("/metrics")).await;
    for code in ["OK", "INVALID_ARGUMENT"] {
        let labels = [("method", path), ("code", code)];
        assert_eq!(metrics.value("grpc_requests_total", &labels), 1.0, "{code}");
    }
}
