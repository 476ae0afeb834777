//! What a slow, idle, greedy or sloppy client gets: HTTP and gRPC connections closed when
//! they dawdle or idle, a connection cap per server, the contract's JSON error shape on every
//! HTTP error, `INVALID_ARGUMENT` for bytes that are not protobuf, and a gRPC health service
//! that tells the truth about Redis.
//!
//! Timeouts are set short through the services' environment, and every wait is bounded: a
//! connection that should have been closed but was not fails its test, it does not hang it.

use std::time::{Duration, Instant};

use integration_tests::{
    Stack,
    helpers::{EmailIn, assert_error, eventually, reply, unique_email},
};
use prost::bytes::{Buf, BufMut};
use proto::user_service::CheckUserExistsRequest;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Short HTTP deadlines, each distinct, so a test can tell which one closed a connection.
const SHORT_HTTP_TIMEOUTS: &[(&str, &str)] = &[
    ("HTTP_HEADER_READ_TIMEOUT", "1s"),
    ("HTTP_IDLE_TIMEOUT", "2s"),
    ("HTTP_REQUEST_TIMEOUT", "3s"),
];

/// A connection the server should close is given this long before the test fails.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// HTTP timeouts and the connection cap
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_client_trickling_a_request_header_is_disconnected_after_the_header_read_timeout() {
    let stack = Stack::in_process_with_env(SHORT_HTTP_TIMEOUTS).await;
    let stream = connect(stack.user_ports.http).await;
    let (mut reader, mut writer) = stream.into_split();
    // 4 bytes a second: the whole header would take about 15 s, every byte well within the
    // idle timeout of the one before.
    let header = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: loris\r\n\r\n";
    let trickle = tokio::spawn(async move {
        for byte in header {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let closed = closed_within(&mut reader, CLOSE_PATIENCE).await;
    trickle.abort();

    let closed = closed.expect("the slow header was still being read after 10 s");
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
        "closed after {closed:?}; the header read timeout is 1 s"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_kept_alive_before_it() {
    let stack = Stack::in_process_with_env(SHORT_HTTP_TIMEOUTS).await;
    let port = stack.user_ports.http;

    let mut never_used = connect(port).await;
    let mut kept_alive = connect(port).await;
    let first = get_health(&mut kept_alive).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = get_health(&mut kept_alive).await;
    // Both measured from now: the never-used one has been idle for a second already.
    let (never_used_closed, idle_closed) = tokio::join!(
        closed_within(&mut never_used, CLOSE_PATIENCE),
        closed_within(&mut kept_alive, CLOSE_PATIENCE),
    );

    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        second.status, 200,
        "a connection idle for 1 s of 2 is still served"
    );
    assert!(
        never_used_closed.is_some(),
        "a connection that never sent a byte was still open after 10 s"
    );
    let idle_closed = idle_closed.expect("an idle keep-alive connection was still open after 10 s");
    assert!(
        idle_closed >= Duration::from_millis(1500) && idle_closed < Duration::from_secs(5),
        "closed {idle_closed:?} after its last reply; the idle timeout is 2 s"
    );
}

#[tokio::test]
async fn an_http_port_answers_http2_with_prior_knowledge_as_well_as_http1() {
    // The server tells the two apart by the first bytes a client sends.
    let stack = Stack::in_process().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<String>();
    let uri = format!("http://127.0.0.1:{}/health", stack.user_ports.http)
        .parse()
        .expect("a URI");
    let over_http2 = client.get(uri).await.expect("an HTTP/2 reply");
    let over_http1 = get_health(&mut connect(stack.user_ports.http).await).await;

    assert_eq!(over_http2.version(), tonic::codegen::http::Version::HTTP_2);
    assert_eq!(over_http2.status(), 200);
    assert_eq!(over_http1.status, 200, "{over_http1:?}");
}

#[tokio::test]
async fn a_request_body_trickled_at_one_byte_a_second_gets_a_json_408_and_the_connection_closes() {
    let stack = Stack::in_process_with_env(SHORT_HTTP_TIMEOUTS).await;
    let email = unique_email("trickle");
    let body = json!({ "email": email, "password": "pw", "name": "Slow" }).to_string();
    let stream = connect(stack.user_ports.http).await;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    writer
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let answer = tokio::time::timeout(CLOSE_PATIENCE, read_reply(&mut reader))
        .await
        .expect("no reply 10 s into a trickled body");
    let answered_after = started.elapsed();
    let closed = closed_within(&mut reader, CLOSE_PATIENCE).await;
    trickle.abort();

    assert_error(answer.status, &answer.body, 408);
    assert!(
        answered_after >= Duration::from_millis(2900) && answered_after < Duration::from_secs(6),
        "answered after {answered_after:?}; the request timeout is 3 s"
    );
    assert!(closed.is_some(), "the connection stayed open after the 408");
    assert_eq!(stack.stored_user(&email).await, None, "nothing is stored");
}

#[tokio::test]
async fn an_http_server_holds_at_most_its_connection_cap_and_serves_the_next_client_when_one_closes()
 {
    let stack = Stack::in_process_with_env(&[("HTTP_MAX_CONNECTIONS", "4")]).await;
    let port = stack.user_ports.http;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut connection = connect(port).await;
        assert_eq!(get_health(&mut connection).await.status, 200);
        held.push(connection);
    }
    let mut waiting = connect(port).await;
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send a request");

    // The fifth connection is left in the kernel's accept queue...
    wait_for_accept_queue(port, 1).await;
    // ...and stays there while the server goes on serving the four it holds: it is past the
    // point where it would have taken the fifth, had it room.
    for connection in &mut held {
        assert_eq!(get_health(connection).await.status, 200);
    }
    let queued_while_full = accept_queue(port);
    let answered_while_full = has_bytes(&waiting);
    drop(held.pop());
    let once_one_closed = tokio::time::timeout(CLOSE_PATIENCE, read_reply(&mut waiting)).await;

    assert_eq!(
        queued_while_full, 1,
        "the fifth connection was accepted while four were open"
    );
    assert!(
        !answered_while_full,
        "a fifth connection was served while four were open"
    );
    let answer = once_one_closed.expect("not served after a held connection closed");
    assert_eq!(answer.status, 200, "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// gRPC keep-alive, request timeout and the connection cap
// ---------------------------------------------------------------------------------------------

/// The HTTP/2 client preface, then an empty SETTINGS frame: how every HTTP/2 client starts.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn grpc_connections_that_only_sent_the_preface_or_nothing_are_closed() {
    let stack = Stack::in_process_with_env(&[
        ("GRPC_KEEPALIVE_INTERVAL", "1s"),
        ("GRPC_KEEPALIVE_TIMEOUT", "1s"),
    ])
    .await;
    let port = stack.user_ports.grpc;
    let mut preface_only = connect(port).await;
    preface_only
        .write_all(HTTP2_PREFACE)
        .await
        .expect("send the preface");
    let mut silent = connect(port).await;

    let preface_only_closed = closed_within(&mut preface_only, CLOSE_PATIENCE).await;
    let silent_closed = closed_within(&mut silent, CLOSE_PATIENCE).await;
    let still_served = grpc_health(port, "").await;

    let preface_only_closed =
        preface_only_closed.expect("a connection that never answered a ping was open after 10 s");
    assert!(
        preface_only_closed >= Duration::from_millis(900),
        "closed after {preface_only_closed:?}, before its first ping was due"
    );
    assert!(
        silent_closed.is_some(),
        "a connection that never sent a byte was open after 10 s"
    );
    assert_eq!(still_served, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn a_grpc_call_not_answered_within_the_request_timeout_is_deadline_exceeded() {
    let mut stack = Stack::in_process_with_env(&[("GRPC_REQUEST_TIMEOUT", "1s")]).await;
    let mut client = stack.user_client().await;
    // With Redis down, user-service keeps retrying for 3 s before it answers UNAVAILABLE.
    stack.redis.stop().await;

    let started = Instant::now();
    let refused = client
        .check_user_exists(CheckUserExistsRequest {
            email: Some(unique_email("slow")),
        })
        .await
        .expect_err("Redis is down");
    let answered_after = started.elapsed();

    assert_eq!(refused.code(), Code::DeadlineExceeded, "{refused:?}");
    assert!(
        answered_after < Duration::from_millis(2500),
        "answered after {answered_after:?}; the request timeout is 1 s"
    );
}

#[tokio::test]
async fn a_grpc_server_holds_at_most_its_connection_cap_and_serves_the_next_client_when_one_closes()
{
    let stack = Stack::in_process_with_env(&[("GRPC_MAX_CONNECTIONS", "2")]).await;
    let port = stack.user_ports.grpc;
    // One connection that never sends a byte, one that is in use: both take a slot.
    let silent = connect(port).await;
    let mut in_use = HealthClient::new(Stack::channel(port).await);
    assert_eq!(
        health_over(&mut in_use).await,
        ServingStatus::Serving as i32
    );
    wait_for_accept_queue(port, 0).await;

    let third = tokio::spawn(grpc_health(port, ""));
    // The third connection is left in the kernel's accept queue...
    wait_for_accept_queue(port, 1).await;
    // ...and stays there while the server goes on serving the connection in use.
    assert_eq!(
        health_over(&mut in_use).await,
        ServingStatus::Serving as i32
    );
    let queued_while_full = accept_queue(port);
    let answered_while_full = third.is_finished();
    drop(silent);
    let once_one_closed = tokio::time::timeout(CLOSE_PATIENCE, third).await;

    assert_eq!(
        queued_while_full, 1,
        "a third connection was accepted while two were open"
    );
    assert!(
        !answered_while_full,
        "a third connection was served while two were open"
    );
    assert_eq!(
        once_one_closed
            .expect("not served after a held connection closed")
            .expect("the health check ran"),
        ServingStatus::Serving as i32
    );
}

// ---------------------------------------------------------------------------------------------
// The contract's error shape
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_http_service_answers_an_unknown_path_with_a_json_404_and_a_wrong_method_with_a_json_405()
 {
    let stack = Stack::in_process().await;
    let known = [
        (stack.user_url("/users"), reqwest::Method::GET),
        (
            stack.message_url("/list_conversations"),
            reqwest::Method::POST,
        ),
        (
            stack.notification_url("/list_notifications"),
            reqwest::Method::DELETE,
        ),
    ];
    for (url, wrong_method) in known {
        let unknown = url.replace("/users", "/nope").replace("/list_", "/nope_");
        let (status, body) = reply(stack.http().get(&unknown).send().await.expect("GET")).await;
        assert_error(status, &body, 404);

        let response = stack
            .http()
            .request(wrong_method, &url)
            .send()
            .await
            .expect("request");
        let allow = response.headers().get("allow").cloned();
        let (status, body) = reply(response).await;
        assert_error(status, &body, 405);
        assert!(allow.is_some(), "{url}: a 405 still says what is allowed");
    }
}

#[tokio::test]
async fn an_overlong_uri_gets_a_json_414_on_every_http_service() {
    let stack = Stack::in_process().await;
    let long_query = format!("?email={}", "x".repeat(9 * 1024));
    for url in [
        stack.user_url("/health"),
        stack.message_url("/list_conversations"),
        stack.notification_url("/list_notifications"),
    ] {
        let (status, body) = reply(
            stack
                .http()
                .get(format!("{url}{long_query}"))
                .send()
                .await
                .expect("GET"),
        )
        .await;
        assert_error(status, &body, 414);
    }
}

#[tokio::test]
async fn an_oversized_body_gets_a_json_413_on_every_endpoint_that_reads_one() {
    let stack = Stack::in_process().await;
    let big = json!({ "email": format!("{}@example.com", "x".repeat(70 * 1024)) }).to_string();
    let (status, body) = stack.post_users("application/json", big.clone()).await;
    assert_error(status, &body, 413);
    for url in [
        stack.message_url("/list_conversations"),
        stack.notification_url("/list_notifications"),
    ] {
        let response = stack
            .http()
            .get(&url)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("GET");
        let (status, body) = reply(response).await;
        assert_error(status, &body, 413);
    }
}

#[tokio::test]
async fn json_that_is_not_an_object_is_refused_with_400_on_every_body() {
    let stack = Stack::in_process().await;
    let user = stack.registered_user("shape").await;
    let newcomer = unique_email("array");

    let (status, body) = stack
        .post_users(
            "application/json",
            json!([newcomer, "pw", "Array"]).to_string(),
        )
        .await;
    assert_error(status, &body, 400);
    assert_eq!(
        stack.stored_user(&newcomer).await,
        None,
        "nothing is stored"
    );

    for not_an_object in [json!([user, { "name": "A" }]), json!("text"), json!(7)] {
        let (status, body) = stack.put_user_by_body(&not_an_object).await;
        assert_error(status, &body, 400);
    }
    let (status, body) = stack
        .put_user_by_body(&json!({ "email": user, "data": ["renamed@example.com"] }))
        .await;
    assert_error(status, &body, 400);
    let (status, body) = stack
        .put_user_by_path(&user, &json!(["renamed@example.com"]))
        .await;
    assert_error(status, &body, 400);
    let (status, body) = stack.delete_user_by_body(&json!([user])).await;
    assert_error(status, &body, 400);
    assert!(
        stack.stored_user(&user).await.is_some(),
        "the user is untouched"
    );

    for (status, body) in [
        stack.list_conversations(EmailIn::Body(json!([user]))).await,
        stack.list_notifications(EmailIn::Body(json!(user))).await,
    ] {
        assert_error(status, &body, 400);
    }
}

#[tokio::test]
async fn unknown_fields_are_refused_with_400_on_every_body() {
    let stack = Stack::in_process().await;
    let user = stack.registered_user("fields").await;
    let newcomer = unique_email("extra");

    let (status, body) = stack
        .post_users(
            "application/json",
            json!({ "email": newcomer, "password": "pw", "name": "N", "admin": true }).to_string(),
        )
        .await;
    assert_error(status, &body, 400);
    assert_eq!(
        stack.stored_user(&newcomer).await,
        None,
        "nothing is stored"
    );

    let (status, body) = stack
        .delete_user_by_body(&json!({ "email": user, "also": "this" }))
        .await;
    assert_error(status, &body, 400);
    assert!(
        stack.stored_user(&user).await.is_some(),
        "the user is untouched"
    );

    for (status, body) in [
        stack
            .list_conversations(EmailIn::Body(json!({ "email": user, "limit": 5 })))
            .await,
        stack
            .list_notifications(EmailIn::Body(json!({ "email": user, "limit": 5 })))
            .await,
    ] {
        assert_error(status, &body, 400);
    }
}

#[tokio::test]
async fn well_formed_json_of_the_wrong_type_gets_400_not_422() {
    let stack = Stack::in_process().await;
    let (status, body) = stack
        .post_users(
            "application/json",
            json!({ "email": 5, "password": "pw", "name": "N" }).to_string(),
        )
        .await;
    assert_error(status, &body, 400);
    for (status, body) in [
        stack
            .list_conversations(EmailIn::Body(json!({ "email": 5 })))
            .await,
        stack
            .list_notifications(EmailIn::Body(json!({ "email": true })))
            .await,
    ] {
        assert_error(status, &body, 400);
    }
}

#[tokio::test]
async fn bytes_that_are_not_protobuf_get_invalid_argument_on_every_grpc_service() {
    let stack = Stack::in_process().await;
    // Field 1 with wire type 7, which does not exist.
    let garbage = vec![0x0f, 0xff, 0xff];
    let calls = [
        (
            stack.user_ports.grpc,
            "/user_service.UserService/CheckUserExists",
        ),
        (
            stack.message_ports.grpc,
            "/message_service.MessageService/GetMessages",
        ),
        (
            stack.notification_ports.grpc,
            "/notification_service.NotificationService/CheckUserSubscribed",
        ),
        (
            stack.frontend_port,
            "/frontend_service.FrontendService/ReceiveNotification",
        ),
    ];

    let well_formed = call_raw(stack.user_ports.grpc, calls[0].1, Vec::new()).await;
    assert!(
        well_formed.is_ok(),
        "an empty message is a valid request: {well_formed:?}"
    );
    for (port, path) in calls {
        let refused = call_raw(port, path, garbage.clone())
            .await
            .expect_err("garbage is not a request");
        assert_eq!(refused.code(), Code::InvalidArgument, "{path}: {refused:?}");
        assert!(
            refused.message().contains("decode"),
            "{path}: the message says what is wrong: {refused:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC health
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn grpc_health_is_not_serving_while_redis_is_down_and_serving_once_it_is_back() {
    let mut stack = Stack::in_process().await;
    let redis_backed = [
        (stack.user_ports.grpc, "user_service.UserService"),
        (stack.message_ports.grpc, "message_service.MessageService"),
        (
            stack.notification_ports.grpc,
            "notification_service.NotificationService",
        ),
        // Its live feed runs on Redis pub/sub.
        (stack.frontend_port, "frontend_service.FrontendService"),
    ];
    let checks: Vec<(u16, &str)> = redis_backed
        .iter()
        .flat_map(|&(port, name)| [(port, ""), (port, name)])
        .collect();

    stack.redis.stop().await;
    let down = wait_for_health(&checks, ServingStatus::NotServing).await;
    let mut alive = Vec::new();
    for &(port, _) in &redis_backed {
        alive.push(grpc_health(port, "liveness").await);
    }
    stack.redis.restart().await;
    let back = wait_for_health(&checks, ServingStatus::Serving).await;

    assert!(
        down < Duration::from_secs(6),
        "NOT_SERVING only {down:?} after Redis stopped"
    );
    assert!(
        alive
            .iter()
            .all(|&status| status == ServingStatus::Serving as i32),
        "\"liveness\" does not follow Redis: {alive:?}"
    );
    assert!(
        back < Duration::from_secs(6),
        "SERVING only {back:?} after Redis came back"
    );
}

/// How long until every `(port, service)` of `checks` reports `wanted`; panics after 20 s.
async fn wait_for_health(checks: &[(u16, &str)], wanted: ServingStatus) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for &(port, service) in checks {
            all &= grpc_health(port, service).await == wanted as i32;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "health never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Raw connections
// ---------------------------------------------------------------------------------------------

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

/// The overall health status over an open `client`.
async fn health_over(client: &mut HealthClient<tonic::transport::Channel>) -> i32 {
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health over the open connection")
        .into_inner()
        .status
}

/// How many connections wait in the kernel's accept queue of the listener on `port`: the
/// receive queue of its LISTEN line in `/proc/net/tcp` (for a listening socket, that is the
/// number of established connections not yet accepted).
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            if !listening || !fields.get(1)?.ends_with(&local) {
                return None;
            }
            let (_, rx) = fields.get(4)?.split_once(':')?;
            usize::from_str_radix(rx, 16).ok()
        })
        .unwrap_or_else(|| panic!("no listener on port {port} in /proc/net/tcp"))
}

/// Waits until exactly `count` connections wait in the accept queue of `port`.
async fn wait_for_accept_queue(port: u16, count: usize) {
    eventually(&format!("{count} connections queued on {port}"), || async {
        (accept_queue(port) == count).then_some(())
    })
    .await;
}

/// Whether the server has sent anything on `stream` yet (without waiting).
fn has_bytes(stream: &TcpStream) -> bool {
    let mut scratch = [0u8; 1];
    match stream.try_read(&mut scratch) {
        Ok(_) => true,
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(err) => panic!("read: {err}"),
    }
}

/// The health status `service` reports on the gRPC server at `port`.
async fn grpc_health(port: u16, service: &str) -> i32 {
    HealthClient::new(Stack::channel(port).await)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("health of {service:?}: {status}"))
        .into_inner()
        .status
}

/// How long until the server closes the connection (end of stream or reset), reading and
/// dropping whatever it sends first; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut scratch = [0u8; 1024];
    tokio::time::timeout(limit, async {
        while let Ok(read) = stream.read(&mut scratch).await
            && read > 0
        {}
        started.elapsed()
    })
    .await
    .ok()
}

/// An HTTP/1.1 reply read off a raw connection.
#[derive(Debug)]
struct RawReply {
    status: u16,
    body: Value,
}

/// `GET /health` over `stream`, keeping the connection open.
async fn get_health(stream: &mut TcpStream) -> RawReply {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send a request");
    tokio::time::timeout(CLOSE_PATIENCE, read_reply(stream))
        .await
        .expect("a reply")
}

/// Reads one reply with a `Content-Length` body (every reply of ours has one).
async fn read_reply(stream: &mut (impl AsyncRead + Unpin)) -> RawReply {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.expect("read a reply");
        assert!(read > 0, "closed before a reply");
        received.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {head}"));
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    let body_start = head_end + 4;
    while received.len() < body_start + length {
        let read = stream.read(&mut chunk).await.expect("read a reply body");
        assert!(read > 0, "closed inside a reply body");
        received.extend_from_slice(&chunk[..read]);
    }
    let body = serde_json::from_slice(&received[body_start..body_start + length])
        .unwrap_or_else(|err| panic!("reply body is not JSON ({err}): {head}"));
    RawReply { status, body }
}

/// Calls the unary RPC at `path` with `request` as the message bytes, as they are.
async fn call_raw(port: u16, path: &'static str, request: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(Stack::channel(port).await);
    grpc.ready().await.expect("the channel is ready");
    grpc.unary(
        tonic::Request::new(request),
        PathAndQuery::from_static(path),
        RawBytes,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A codec that sends and receives message bytes untouched.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
