//! `GET /live` with protection on and around it: the token matrix (header, cookie, query), a
//! stream ending with its revoked token, the token kept out of the request log, and the
//! `FRONTEND_HTTP_PORT` alias of frontend-service's HTTP port.

use std::time::Duration;

use integration_tests::{
    ServiceProcess, Stack,
    helpers::{
        AUTH_SECRET, SseStream, assert_error, eventually, keys_of, protected_env, reply,
        unique_email,
    },
};
use serde_json::{Value, json};
use service_runtime::{auth::Claims, time::unix_now};

/// A password the policy accepts.
const PASSWORD: &str = "Str0ng-pass!";

#[tokio::test]
async fn with_protection_on_only_the_receivers_own_token_opens_the_stream_from_any_of_its_places() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let port = stack.frontend_metrics_port;
    let bob = stack.registered_user_with("sse-auth-bob", PASSWORD).await;
    let eve = stack.registered_user_with("sse-auth-eve", PASSWORD).await;
    let own = stack.token(&bob, PASSWORD).await;
    let other = stack.token(&eve, PASSWORD).await;
    let now = unix_now();
    let expired = keys_of(AUTH_SECRET)
        .sign(&Claims {
            sub: bob.clone(),
            iat: now - 7200,
            exp: now - 3600,
            ver: "whatever".into(),
        })
        .expect("signed");
    let tokens: [(Option<&str>, u16); 5] = [
        (None, 401),
        (Some("not-a-token"), 401),
        (Some(&expired), 401),
        (Some(&other), 403),
        (Some(&own), 200),
    ];
    for (token, expected) in tokens {
        for place in ["header", "cookie", "query"] {
            let mut query = vec![("email", bob.as_str())];
            let (bearer, cookie);
            let mut headers = vec![];
            match (token, place) {
                (None, _) => {}
                (Some(token), "header") => {
                    bearer = format!("Bearer {token}");
                    headers.push(("authorization", bearer.as_str()));
                }
                (Some(token), "cookie") => {
                    cookie = format!("theme=dark; inbox_token={token}");
                    headers.push(("cookie", cookie.as_str()));
                }
                (Some(token), _) => query.push(("access_token", token)),
            }
            let response = stack.get_live_at(port, &query, &headers).await;
            if expected == 200 {
                let mut stream = SseStream::of(response);
                assert_eq!(stream.expect("unread").await.json()["unread_count"], 0);
            } else {
                let (status, body) = reply(response).await;
                assert_error(status, &body, expected);
            }
        }
    }
    // The header wins over a cookie of another user.
    let bearer = format!("Bearer {own}");
    let cookie = format!("inbox_token={other}");
    let mut stream = stack
        .live_at(
            port,
            &[("email", &bob)],
            &[("authorization", &bearer), ("cookie", &cookie)],
        )
        .await;
    stream.expect("unread").await;
}

#[tokio::test]
async fn a_stream_ends_when_its_token_is_revoked() {
    let stack = Stack::start_with_env(&protected_env(&[])).await;
    let bob = stack.registered_user_with("sse-revoked", PASSWORD).await;
    let token = stack.token(&bob, PASSWORD).await;
    let mut stream = stack
        .live_at(
            stack.frontend_metrics_port,
            &[("email", &bob), ("access_token", &token)],
            &[],
        )
        .await;
    stream.expect("unread").await;
    let (status, body) = reply(
        stack
            .http()
            .put(stack.user_url("/users/email"))
            .bearer_auth(&token)
            .json(&json!({
                "email": bob, "current_password": PASSWORD,
                "data": { "password": "N3w-passw0rd!" }
            }))
            .send()
            .await
            .expect("PUT /users/email"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(stream.rest().await.is_empty(), "the stream ends by itself");
    let (status, body) = reply(
        stack
            .get_live_at(
                stack.frontend_metrics_port,
                &[("email", &bob), ("access_token", &token)],
                &[],
            )
            .await,
    )
    .await;
    assert_error(status, &body, 401);
}

#[tokio::test]
async fn the_request_log_shows_the_live_uri_but_never_its_access_token() {
    let stack = Stack::in_process().await;
    let mut env = stack.replica_env();
    env.push(("RUST_LOG".into(), "debug".into()));
    let frontend = ServiceProcess::start_logged("frontend-service", env).await;
    let port = frontend.ports().http.expect("an HTTP port");
    let secret = "s3cr3t-t0ken-value";
    let bob = unique_email("sse-log");
    let mut stream = stack
        .live_at(port, &[("email", &bob), ("access_token", secret)], &[])
        .await;
    stream.expect("unread").await;
    let line = eventually("the request's log line", || async {
        frontend
            .output()
            .lines()
            .find(|line| line.contains("/live?email="))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains("access_token=[redacted]"), "{line}");
    assert!(!frontend.output().contains(secret), "{line}");
}

#[test]
fn frontend_http_port_is_an_alias_of_metrics_port_which_wins() {
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port()
    };
    let dir = std::env::temp_dir().join(format!("it-alias-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let bound_http_port = |vars: &[(&str, String)]| {
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut env: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        env.push(("READY_FILE".into(), ready.display().to_string()));
        env.push(("REDIS_URL".into(), "redis://127.0.0.1:1".into()));
        let output = ServiceProcess::run_to_exit("frontend-service", env, Duration::from_secs(2));
        let ready: Value = serde_json::from_slice(&std::fs::read(&ready).unwrap_or_else(|_| {
            panic!("no READY_FILE: {}", String::from_utf8_lossy(&output.stderr))
        }))
        .expect("JSON");
        ready["http"].as_u64().expect("an HTTP port")
    };
    let alias = free_port();
    assert_eq!(
        bound_http_port(&[("FRONTEND_HTTP_PORT", alias.to_string())]),
        u64::from(alias)
    );
    let (metrics, other) = (free_port(), free_port());
    assert_eq!(
        bound_http_port(&[
            ("METRICS_PORT", metrics.to_string()),
            ("FRONTEND_HTTP_PORT", other.to_string())
        ]),
        u64::from(metrics)
    );
    let output = ServiceProcess::run_to_exit(
        "frontend-service",
        vec![("FRONTEND_HTTP_PORT".into(), "not-a-port".into())],
        Duration::from_secs(5),
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("FRONTEND_HTTP_PORT"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
