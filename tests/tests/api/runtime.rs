//! What every service has: health (HTTP and gRPC), reflection, body limits, clean shutdown.

use integration_tests::{
    Stack,
    helpers::{eventually, reply},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn every_http_server_reports_healthy_while_redis_is_up() {
    let stack = Stack::in_process().await;
    for url in [
        stack.user_url("/health"),
        stack.message_url("/health"),
        stack.notification_url("/health"),
    ] {
        let (status, body) = reply(stack.http().get(&url).send().await.expect("GET /health")).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["success"], true);
    }
}

#[tokio::test]
async fn health_reports_503_while_redis_is_down_and_recovers_without_a_restart() {
    let mut stack = Stack::in_process().await;
    stack.redis.stop().await;
    let (status, body) = reply(
        stack
            .http()
            .get(stack.user_url("/health"))
            .send()
            .await
            .expect("GET /health"),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["success"], false);

    stack.redis.restart().await;
    let last = eventually("user-service to see Redis come back", || async {
        let status = stack
            .http()
            .get(stack.user_url("/health"))
            .send()
            .await
            .expect("GET /health")
            .status()
            .as_u16();
        (status == 200).then_some(status)
    })
    .await;
    assert_eq!(last, 200, "user-service did not see Redis come back");
}

#[tokio::test]
async fn every_grpc_server_answers_the_standard_health_check_for_its_service() {
    let stack = Stack::in_process().await;
    let services = [
        (stack.user_ports.grpc, "user_service.UserService"),
        (stack.message_ports.grpc, "message_service.MessageService"),
        (
            stack.notification_ports.grpc,
            "notification_service.NotificationService",
        ),
        (stack.frontend_port, "frontend_service.FrontendService"),
    ];
    for (port, service) in services {
        let mut health = HealthClient::new(Stack::channel(port).await);
        let reply = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|status| panic!("{service}: {status}"));
        assert_eq!(
            reply.into_inner().status,
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
}

#[tokio::test]
async fn an_unknown_http_path_gets_a_json_404() {
    let stack = Stack::in_process().await;
    let (status, body) = reply(
        stack
            .http()
            .get(stack.user_url("/nope"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn a_service_stops_cleanly_on_sigterm() {
    let mut stack = Stack::start().await;
    for process in [
        &mut stack.user,
        &mut stack.message,
        &mut stack.notification,
        &mut stack.frontend,
    ] {
        let status = process.terminate().await.expect("the process was running");
        assert!(status.success(), "exit status {status}");
    }
}
