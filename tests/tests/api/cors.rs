//! CORS (`CORS_ALLOWED_ORIGINS`) on every HTTP server and every gRPC-Web port: off by default,
//! exactly the listed origins when on, preflights answered before any auth check or access
//! guard, and nothing for an origin not on the list.

use std::{collections::BTreeMap, time::Duration};

use integration_tests::{
    ServiceProcess, Stack,
    helpers::{WebEncoding, frame, protected_env},
};
use reqwest::{Method, header::HeaderMap};

/// The origin of a page allowed in these tests.
const PAGE: &str = "https://inbox.example.com";
/// Another allowed origin, written with its default port and in capitals in the setting.
const LOCAL_PAGE: &str = "http://localhost:8000";
const ALLOWED: &str = "https://Inbox.Example.com, http://localhost:8000";
/// An origin no setting here allows.
const STRANGER: &str = "https://evil.example";

const WATCH: &str = "/frontend_service.FrontendService/WatchNotifications";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// The reply's `Access-Control-*` headers, names lowercased.
fn access_control(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| {
            let value = value.to_str().expect("an ASCII header").to_owned();
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// The comma-separated `name` header as lowercase items.
fn listed(headers: &BTreeMap<String, String>, name: &str) -> Vec<String> {
    headers
        .get(name)
        .map(|value| {
            value
                .split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// Every HTTP server's URL of `path`.
fn http_urls<S>(stack: &Stack<S>, path: &str) -> [String; 4] {
    [
        stack.user_url(path),
        stack.message_url(path),
        stack.notification_url(path),
        stack.frontend_url(path),
    ]
}

fn grpc_ports<S>(stack: &Stack<S>) -> [u16; 4] {
    [
        stack.user_ports.grpc,
        stack.message_ports.grpc,
        stack.notification_ports.grpc,
        stack.frontend_port,
    ]
}

/// A preflight from `origin` for `method` with `headers` to `url`: status and CORS headers.
async fn preflight<S>(
    stack: &Stack<S>,
    url: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> (u16, BTreeMap<String, String>) {
    let reply = stack
        .http()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("OPTIONS");
    (reply.status().as_u16(), access_control(reply.headers()))
}

/// `GET url` from a page of `origin` (none: not from a browser): status and CORS headers.
async fn get_from<S>(
    stack: &Stack<S>,
    url: &str,
    origin: Option<&str>,
) -> (u16, BTreeMap<String, String>) {
    let mut request = stack.http().get(url);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let reply = request.send().await.expect("GET");
    (reply.status().as_u16(), access_control(reply.headers()))
}

/// A grpc-web health check on `port` from a page of `origin`: the call's status and the CORS
/// headers.
async fn health_from<S>(
    stack: &Stack<S>,
    port: u16,
    origin: &str,
) -> (tonic::Code, BTreeMap<String, String>) {
    let reply = stack
        .grpc_web_raw(
            port,
            HEALTH_CHECK,
            WebEncoding::Binary,
            frame(&[]),
            &[("origin", origin)],
        )
        .await;
    let headers = access_control(reply.response.headers());
    let finished = reply
        .finish::<tonic_health::pb::HealthCheckResponse>()
        .await;
    (finished.code, headers)
}

#[tokio::test]
async fn cors_is_off_by_default_and_no_reply_carries_a_cors_header() {
    let stack = Stack::in_process().await;

    for url in http_urls(&stack, "/health") {
        let (status, headers) = get_from(&stack, &url, Some(PAGE)).await;
        assert_eq!(status, 200, "{url}");
        assert!(headers.is_empty(), "{url}: {headers:?}");
        let (_, headers) = preflight(&stack, &url, PAGE, "GET", "authorization").await;
        assert!(headers.is_empty(), "{url}: {headers:?}");
    }
    for port in grpc_ports(&stack) {
        let (code, headers) = health_from(&stack, port, PAGE).await;
        assert_eq!(code, tonic::Code::Ok, "{port}");
        assert!(headers.is_empty(), "{port}: {headers:?}");
        let url = format!("http://127.0.0.1:{port}{HEALTH_CHECK}");
        let (_, headers) = preflight(&stack, &url, PAGE, "POST", "content-type,x-grpc-web").await;
        assert!(headers.is_empty(), "{port}: {headers:?}");
    }
}

#[tokio::test]
async fn every_server_answers_an_allowed_origin_and_its_preflights_before_any_auth_check() {
    let stack =
        Stack::in_process_with_env(&protected_env(&[("CORS_ALLOWED_ORIGINS", ALLOWED)])).await;

    // The HTTP API: a protected route's preflight is answered, and so is the 401 behind it.
    let url = format!(
        "{}?email=someone%40example.com",
        stack.notification_url("/list_notifications")
    );
    let (status, headers) = preflight(&stack, &url, PAGE, "GET", "authorization").await;
    assert!(status == 200 || status == 204, "{status}: {headers:?}");
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    assert!(listed(&headers, "access-control-allow-methods").contains(&"get".to_owned()));
    assert!(
        listed(&headers, "access-control-allow-headers").contains(&"authorization".to_owned()),
        "{headers:?}"
    );
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(!headers.contains_key("access-control-allow-credentials"));
    let (status, headers) = get_from(&stack, &url, Some(PAGE)).await;
    assert_eq!(status, 401, "no token");
    assert_eq!(
        headers["access-control-allow-origin"], PAGE,
        "the page can read why"
    );

    // gRPC-Web: the preflight of a guarded RPC, then the call, refused without a token, with
    // the status a grpc-web client must read exposed to the page.
    let url = format!("http://127.0.0.1:{}{WATCH}", stack.frontend_port);
    let asked = "content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization";
    let (status, headers) = preflight(&stack, &url, PAGE, "POST", asked).await;
    assert!(status == 200 || status == 204, "{status}: {headers:?}");
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    assert!(listed(&headers, "access-control-allow-methods").contains(&"post".to_owned()));
    let allowed = listed(&headers, "access-control-allow-headers");
    for header in asked.split(',') {
        assert!(
            allowed.contains(&header.to_owned()),
            "{header}: {allowed:?}"
        );
    }
    let reply = stack
        .grpc_web_raw(
            stack.frontend_port,
            WATCH,
            WebEncoding::Binary,
            frame(&[]),
            &[("origin", PAGE)],
        )
        .await;
    assert_eq!(reply.header("grpc-status").as_deref(), Some("16"));
    let headers = access_control(reply.response.headers());
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    let exposed = listed(&headers, "access-control-expose-headers");
    for header in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(
            exposed.contains(&header.to_owned()),
            "{header}: {exposed:?}"
        );
    }

    // Every HTTP server and every gRPC port, for either listed origin.
    for url in http_urls(&stack, "/health") {
        let (status, headers) = get_from(&stack, &url, Some(LOCAL_PAGE)).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(headers["access-control-allow-origin"], LOCAL_PAGE, "{url}");
    }
    for port in grpc_ports(&stack) {
        let (code, headers) = health_from(&stack, port, LOCAL_PAGE).await;
        assert_eq!(code, tonic::Code::Ok, "{port}");
        assert_eq!(headers["access-control-allow-origin"], LOCAL_PAGE, "{port}");
    }
}

#[tokio::test]
async fn an_origin_not_on_the_list_and_a_request_without_one_get_no_cors_header() {
    let stack = Stack::in_process_with_env(&[("CORS_ALLOWED_ORIGINS", ALLOWED)]).await;
    let url = stack.user_url("/health");

    for origin in [Some(STRANGER), None] {
        let (status, headers) = get_from(&stack, &url, origin).await;
        assert_eq!(status, 200);
        assert!(headers.is_empty(), "{origin:?}: {headers:?}");
    }
    let (_, headers) = preflight(&stack, &url, STRANGER, "GET", "authorization").await;
    assert!(headers.is_empty(), "{headers:?}");

    let (code, headers) = health_from(&stack, stack.user_ports.grpc, STRANGER).await;
    assert_eq!(
        code,
        tonic::Code::Ok,
        "served, but the browser keeps the reply from the page"
    );
    assert!(headers.is_empty(), "{headers:?}");
    let url = format!("http://127.0.0.1:{}{HEALTH_CHECK}", stack.user_ports.grpc);
    let (_, headers) = preflight(&stack, &url, STRANGER, "POST", "content-type").await;
    assert!(headers.is_empty(), "{headers:?}");
}

#[tokio::test]
async fn a_star_alone_allows_every_origin() {
    let stack = Stack::in_process_with_env(&[("CORS_ALLOWED_ORIGINS", "*")]).await;

    let (_, headers) = get_from(&stack, &stack.message_url("/health"), Some(STRANGER)).await;
    assert_eq!(headers["access-control-allow-origin"], "*");
    let (_, headers) = health_from(&stack, stack.message_ports.grpc, STRANGER).await;
    assert_eq!(headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_service_given_origins_no_browser_sends_refuses_to_start_and_says_why() {
    for (setting, why) in [
        ("*, https://inbox.example.com", "stands alone"),
        ("https://inbox.example.com/", "is not an origin"),
    ] {
        for binary in [
            "user-service",
            "message-service",
            "notification-service",
            "frontend-service",
        ] {
            let env = vec![
                ("CORS_ALLOWED_ORIGINS".to_owned(), setting.to_owned()),
                ("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned()),
            ];

            let output = ServiceProcess::run_to_exit(binary, env, Duration::from_secs(10));

            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{binary} started: {stderr}");
            assert!(
                stderr.contains("CORS_ALLOWED_ORIGINS") && stderr.contains(why),
                "{binary}: {stderr}"
            );
        }
    }
}
