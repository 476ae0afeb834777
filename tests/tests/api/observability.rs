//! What operators read: every HTTP server's `/metrics` (counting the requests the test made,
//! with bounded labels) and `/openapi.json`, and frontend-service's metrics port.

use integration_tests::{
    Stack,
    helpers::{EmailIn, Metrics, reply, unique_email},
};
use serde_json::json;

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
    let notification = integration_tests::helpers::eventually("the push to be counted", || async {
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

#[tokio::test]
async fn the_outbox_backlog_is_sampled_per_stream() {
    let stack = Stack::start().await;
    let email = unique_email("backlog");
    assert_eq!(stack.create_user(&email, "pw", "B").await.0, 201);

    // The worker samples XLEN every second; the delivered subscription left the stream.
    let metrics = integration_tests::helpers::eventually("a backlog sample", || async {
        let metrics = stack.metrics(stack.user_url("/metrics")).await;
        metrics
            .samples
            .iter()
            .any(|sample| {
                sample.name == "outbox_pending_entries"
                    && sample.labels == [("stream".to_owned(), "outbox:subscriptions".to_owned())]
            })
            .then_some(metrics)
    })
    .await;
    assert_eq!(metrics.value("outbox_pending_entries", &[]), 0.0);
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
    integration_tests::helpers::eventually("the watcher to be gone", || async {
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
        (stack.frontend_url("/openapi.json"), vec![]),
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
