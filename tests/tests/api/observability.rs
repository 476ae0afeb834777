//! What operators read: every HTTP server's `/metrics` (counting the requests the test made,
//! with bounded labels) and `/openapi.json`, and frontend-service's metrics port.

use integration_tests::{
    Stack,
    helpers::{EmailIn, Metrics, eventually, reply, unique_email},
};
use message_service::keys::NOTIFICATION_OUTBOX;
use serde_json::json;
use user_service::keys::SUBSCRIPTION_OUTBOX;

/// No label value of `metrics` contains an email (or any other `@`): labels are route
/// templates, method names and codes, never what a client sent.
fn assert_no_email_in_labels(metrics: &Metrics, service: &str) {
    if let Some(value) = metrics.label_values().find(|value| value.contains('@')) {
        panic!("{service}: label value {value:?} holds an email");
    }
}

#[tokio::test]
async fn every_service_counts_the_requests_it_answered_by_route_method_and_code() {
    let stack = Stack::start().await;
    let alice = unique_email("metrics-a");
    let bob = unique_email("metrics-b");
    assert_eq!(stack.create_user(&alice, "pw", "Alice").await.0, 201);
    assert_eq!(stack.create_user(&bob, "pw", "Bob").await.0, 201);
    stack.send_ok(&alice, &bob, "counted").await;
    stack.wait_for_notifications(&bob, 1).await;
    assert_eq!(
        stack.list_conversations(EmailIn::Query(&alice)).await.0,
        200
    );
    assert_eq!(stack.list_notifications(EmailIn::Query(&bob)).await.0, 200);
    assert_eq!(
        stack
            .put_user_by_path(&alice, &json!({"name": "A."}))
            .await
            .0,
        200
    );

    let user = stack.metrics(stack.user_url("/metrics")).await;
    let created = [("route", "/users"), ("method", "POST"), ("status", "201")];
    assert!(user.value("http_requests_total", &created) >= 2.0);
    let by_path = [
        ("route", "/users/{email}"),
        ("method", "PUT"),
        ("status", "200"),
    ];
    assert_eq!(user.value("http_requests_total", &by_path), 1.0);
    assert!(user.value("http_request_duration_seconds_count", &created[..2]) >= 2.0);
    let subscribe = [
        ("peer", "notification-service"),
        (
            "method",
            "/notification_service.NotificationService/SubscribeUser",
        ),
        ("code", "OK"),
    ];
    assert!(user.value("grpc_client_requests_total", &subscribe) >= 1.0);
    let check = [
        ("method", "/user_service.UserService/CheckUserExists"),
        ("code", "OK"),
    ];
    assert!(user.value("grpc_requests_total", &check) >= 2.0);
    assert!(user.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(user.value("process_open_fds", &[]) > 0.0);
    assert_no_email_in_labels(&user, "user-service");

    let message = stack.metrics(stack.message_url("/metrics")).await;
    let listed = [
        ("route", "/list_conversations"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(message.value("http_requests_total", &listed), 1.0);
    let send = [
        ("method", "/message_service.MessageService/SendMessage"),
        ("code", "OK"),
    ];
    assert_eq!(message.value("grpc_requests_total", &send), 1.0);
    assert_eq!(
        message.value("grpc_request_duration_seconds_count", &send[..1]),
        1.0
    );
    let delivered = [("stream", "outbox:notifications"), ("outcome", "delivered")];
    assert_eq!(message.value("outbox_deliveries_total", &delivered), 1.0);
    assert_no_email_in_labels(&message, "message-service");

    // The push to frontend-service runs in the background of CreateNotification.
    let pushed = [("stream", "outbox:frontend"), ("outcome", "delivered")];
    let notification = eventually("the push to be counted", || async {
        let metrics = stack.metrics(stack.notification_url("/metrics")).await;
        (metrics.value("outbox_deliveries_total", &pushed) == 1.0).then_some(metrics)
    })
    .await;
    let listed = [
        ("route", "/list_notifications"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(notification.value("http_requests_total", &listed), 1.0);
    assert_no_email_in_labels(&notification, "notification-service");

    let frontend = stack.metrics(stack.frontend_url("/metrics")).await;
    let stored = [("outcome", "published")];
    assert_eq!(
        frontend.value("frontend_notifications_received_total", &stored),
        1.0
    );
    assert_no_email_in_labels(&frontend, "frontend-service");
}

#[tokio::test]
async fn a_request_no_route_matches_is_counted_without_its_path() {
    let stack = Stack::start().await;
    let status = stack
        .http()
        .get(stack.user_url("/nope/someone@example.com"))
        .send()
        .await
        .expect("GET")
        .status();
    assert_eq!(status.as_u16(), 404);

    let metrics = stack.metrics(stack.user_url("/metrics")).await;
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(metrics.value("http_requests_total", &unmatched), 1.0);
    assert_no_email_in_labels(&metrics, "user-service");
}

/// The `outbox_pending_entries` sample of `stream` on the `/metrics` page at `url`, once the
/// worker has sampled it; its only label is the stream.
async fn pending_entries(stack: &Stack, url: &str, stream: &str) -> Option<f64> {
    let metrics = stack.metrics(url.to_owned()).await;
    metrics
        .samples
        .iter()
        .find(|sample| {
            sample.name == "outbox_pending_entries"
                && sample.labels == [("stream".to_owned(), stream.to_owned())]
        })
        .map(|sample| sample.value)
}

/// Waits until the backlog gauge of `stream` at `url` reads `expected`, failing at once if it
/// reads more than `ceiling` (more entries pending than the test queued).
async fn wait_for_pending(stack: &Stack, url: &str, stream: &str, expected: f64, ceiling: f64) {
    eventually(&format!("{stream} pending = {expected}"), || async {
        let value = pending_entries(stack, url, stream).await?;
        assert!(
            value <= ceiling,
            "{stream}: {value} pending, at most {ceiling} queued"
        );
        (value == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_outbox_backlog_gauge_rises_while_the_peer_is_down_and_drains_to_zero_after() {
    let mut stack = Stack::start().await;
    let alice = stack.registered_user("backlog-a").await;
    let bob = stack.registered_user("backlog-b").await;
    let (users, messages) = (stack.user_url("/metrics"), stack.message_url("/metrics"));
    // Both outboxes delivered everything so far: their gauges read 0.
    wait_for_pending(&stack, &users, SUBSCRIPTION_OUTBOX, 0.0, 0.0).await;
    wait_for_pending(&stack, &messages, NOTIFICATION_OUTBOX, 0.0, 0.0).await;

    // Both outboxes deliver to notification-service: with it down, everything pends.
    stack.notification.kill();
    for n in 0..5 {
        stack.send_ok(&alice, &bob, &format!("pending {n}")).await;
    }
    for _ in 0..3 {
        assert_eq!(
            stack
                .create_user(&unique_email("backlog-new"), "pw", "N")
                .await
                .0,
            201
        );
    }

    wait_for_pending(&stack, &messages, NOTIFICATION_OUTBOX, 5.0, 5.0).await;
    wait_for_pending(&stack, &users, SUBSCRIPTION_OUTBOX, 3.0, 3.0).await;
    assert_eq!(
        pending_entries(&stack, &messages, NOTIFICATION_OUTBOX).await,
        Some(5.0)
    );
    stack.notification.restart().await;
    wait_for_pending(&stack, &messages, NOTIFICATION_OUTBOX, 0.0, 5.0).await;
    wait_for_pending(&stack, &users, SUBSCRIPTION_OUTBOX, 0.0, 3.0).await;
    assert_eq!(stack.distinct_notification_ids(&bob, 5).await.len(), 5);
}

#[tokio::test]
async fn frontend_service_serves_health_and_metrics_on_its_metrics_port() {
    let stack = Stack::start().await;
    let watch = stack.watch(&unique_email("watcher")).await;

    let (status, body) = reply(
        stack
            .http()
            .get(stack.frontend_url("/health"))
            .send()
            .await
            .expect("GET /health"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"redis": "up", "success": true}));
    let metrics = stack.metrics(stack.frontend_url("/metrics")).await;
    assert_eq!(metrics.value("frontend_watchers", &[]), 1.0);

    // The stream ends when the client drops it; the gauge follows.
    drop(watch);
    eventually("the watcher to be gone", || async {
        let metrics = stack.metrics(stack.frontend_url("/metrics")).await;
        (metrics.value("frontend_watchers", &[]) == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_http_server_describes_its_endpoints_in_openapi_json() {
    let stack = Stack::in_process().await;
    let servers = [
        (
            stack.user_url("/openapi.json"),
            vec!["/login", "/users", "/users/email", "/users/{email}"],
        ),
        (
            stack.message_url("/openapi.json"),
            vec!["/list_conversations"],
        ),
        (
            stack.notification_url("/openapi.json"),
            vec![
                "/list_notifications",
                "/notifications",
                "/notifications/read",
                "/notifications/unread_count",
            ],
        ),
        (
            stack.frontend_url("/openapi.json"),
            vec![
                "/",
                "/api/config",
                "/api/messages",
                "/api/notifications",
                "/api/notifications/read",
                "/api/session",
                "/api/signup",
                "/api/subscription",
                "/app.css",
                "/app.js",
                "/live",
            ],
        ),
    ];
    for (url, own) in servers {
        let (status, document) = reply(
            stack
                .http()
                .get(&url)
                .send()
                .await
                .expect("GET /openapi.json"),
        )
        .await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(document["openapi"], "3.1.0", "{url}");
        let mut paths: Vec<&str> = document["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        let mut expected = [own, vec!["/health", "/metrics", "/openapi.json"]].concat();
        expected.sort_unstable();
        assert_eq!(paths, expected, "{url}");
        assert!(
            document["components"]["schemas"]["ErrorReply"].is_object(),
            "{url}: the error reply is described"
        );
    }
}
