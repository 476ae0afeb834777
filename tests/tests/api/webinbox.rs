//! frontend-service's web inbox: the page and its assets (security headers), its same-origin
//! API under `/api/` (bad input refused with nothing changed; the browser's token, from the
//! cookie or `Authorization`, judged by the callees), and user-service's `AccountService`
//! behind sign-up and sign-in (the REST rules; a forwarded client address believed only from
//! frontend-service).

use proto::user_service::{
    LogInRequest, RegisterUserRequest, account_service_client::AccountServiceClient,
};
use serde_json::{Value, json};
use service_runtime::{auth::ServiceName, grpc_client::CLIENT_ADDRESS_HEADER};
use tonic::Code;

use integration_tests::{
    Stack,
    helpers::{AUTH_SECRET, assert_error, protected_env, reply, unique_email},
};

const PASSWORD: &str = "Str0ng-pass!";

async fn call(
    stack: &Stack,
    method: &str,
    path: &str,
    body: Option<Value>,
    cookie: Option<&str>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = stack.http().request(method, stack.page_url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    reply(request.send().await.expect("page API request")).await
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_strict_security_headers() {
    let stack = Stack::start().await;
    let page = stack
        .http()
        .get(stack.page_url("/?email=a@example.com"))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        header("content-type").starts_with("text/html"),
        "{headers:?}"
    );
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    let html = page.text().await.expect("the page");
    assert!(
        html.contains(r#"<meta name="viewport""#),
        "readable on a phone"
    );
    // Scripts only from files: no inline script, no inline handlers, nothing off-origin.
    assert_eq!(
        html.matches("<script").count(),
        html.matches(r#"<script src="/app.js""#).count()
    );
    assert!(!html.contains(" onclick=") && !html.contains("http://") && !html.contains("https://"));
    // Every input is labelled.
    for id in html
        .split(r#"<input id=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
    {
        assert!(
            html.contains(&format!(r#"<label for="{id}">"#)),
            "input #{id} has no label"
        );
    }
    for (path, kind) in [("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let asset = stack
            .http()
            .get(stack.page_url(path))
            .send()
            .await
            .expect("asset");
        assert_eq!(asset.status(), 200, "{path}");
        let content_type = asset.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(
            asset.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }
    let (status, openapi) = call(&stack, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for path in [
        "/",
        "/api/config",
        "/api/signup",
        "/api/session",
        "/api/notifications",
        "/api/notifications/read",
        "/api/messages",
        "/api/subscription",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not in /openapi.json"
        );
    }
}

#[tokio::test]
async fn in_open_mode_the_page_api_runs_the_inbox_and_refuses_bad_input_changing_nothing() {
    let stack = Stack::start().await;
    let (ada, bob) = (unique_email("ada"), unique_email("bob"));
    for (email, name) in [(&ada, "Ada"), (&bob, "Bob")] {
        let (status, body) = stack.page_sign_up(email, PASSWORD, name).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["user"]["email"], email.as_str());
    }
    let (status, body) = stack.page_sign_up(&ada, PASSWORD, "Ada again").await;
    assert_error(status, &body, 400);
    assert_eq!(body["message"], "User already exists");
    assert_eq!(stack.stored_user(&ada).await.expect("kept")["name"], "Ada");
    let (status, config) = call(&stack, "GET", "/api/config", None, None).await;
    assert_eq!(
        (status, &config["protected"]),
        (200, &json!(false)),
        "{config}"
    );

    // Bad input: a 400 in the contract's shape, and nothing reaches the store.
    let bad: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            "/api/signup".into(),
            Some(json!({"email": "not-an-address", "password": PASSWORD, "name": "X"})),
        ),
        (
            "POST",
            "/api/signup".into(),
            Some(json!({"email": unique_email("x"), "password": PASSWORD})),
        ),
        ("POST", "/api/signup".into(), Some(json!(["an", "array"]))),
        ("GET", "/api/notifications".into(), None),
        (
            "GET",
            format!("/api/notifications?email={bob}&limit=0"),
            None,
        ),
        (
            "GET",
            format!("/api/notifications?email={bob}&before=soon"),
            None,
        ),
        (
            "GET",
            format!("/api/notifications?email={bob}&sort=asc"),
            None,
        ),
        (
            "POST",
            "/api/notifications/read".into(),
            Some(json!({"email": "nobody"})),
        ),
        (
            "DELETE",
            "/api/notifications".into(),
            Some(json!({"email": bob})),
        ),
        (
            "DELETE",
            "/api/notifications".into(),
            Some(json!({"email": bob, "notification_ids": ["x".repeat(200)]})),
        ),
        (
            "POST",
            "/api/messages".into(),
            Some(json!({"sender_email": ada, "receiver_email": "nobody", "content": "hi"})),
        ),
        (
            "POST",
            "/api/messages".into(),
            Some(json!({"sender_email": ada, "receiver_email": bob, "content": "  "})),
        ),
        (
            "POST",
            "/api/messages".into(),
            Some(
                json!({"sender_email": ada, "receiver_email": unique_email("ghost"), "content": "hi"}),
            ),
        ),
        (
            "POST",
            "/api/messages".into(),
            Some(json!({"sender_email": ada, "receiver_email": bob, "content": "hi", "extra": 1})),
        ),
        ("GET", "/api/subscription?email=nobody".into(), None),
        ("PUT", "/api/subscription".into(), Some(json!({}))),
        (
            "POST",
            "/api/session".into(),
            Some(json!({"email": "nobody", "password": "x"})),
        ),
    ];
    for (method, path, body) in bad {
        let (status, reply) = call(&stack, method, &path, body.clone(), None).await;
        assert_error(status, &reply, 400);
        assert!(
            !reply["message"].as_str().unwrap_or_default().is_empty(),
            "{method} {path} {body:?}"
        );
    }
    assert!(stack.messages_of(&ada).await.is_empty());
    assert!(stack.stored_notifications(&bob).await.is_empty());
    assert!(stack.stored_user("not-an-address").await.is_none());

    // The inbox through the page API: send, list, mark read, delete, subscription.
    for content in ["one", "two", "three"] {
        let body = json!({"sender_email": ada, "receiver_email": bob, "content": content});
        let (status, sent) = call(&stack, "POST", "/api/messages", Some(body), None).await;
        assert_eq!(
            (status, &sent["message"]),
            (200, &json!("Message sent")),
            "{sent}"
        );
    }
    let (status, first) = call(
        &stack,
        "GET",
        &format!("/api/notifications?email={bob}&limit=2"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["unread_count"], 3);
    let page: Vec<&Value> = first["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .collect();
    assert_eq!(page.len(), 2);
    assert!(
        page[0]["cursor"].as_u64() > page[1]["cursor"].as_u64(),
        "newest first"
    );
    assert_eq!(page[0]["sender_email"], ada.as_str());
    let before = first["next_cursor"].as_u64().expect("an older page");
    let (_, older) = call(
        &stack,
        "GET",
        &format!("/api/notifications?email={bob}&limit=2&before={before}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        older["notifications"].as_array().map(Vec::len),
        Some(1),
        "{older}"
    );
    assert_eq!(older["next_cursor"], Value::Null);
    let newest = page[0]["notification_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let (status, marked) = call(
        &stack,
        "POST",
        "/api/notifications/read",
        Some(json!({"email": bob, "notification_ids": [newest]})),
        None,
    )
    .await;
    assert_eq!(
        (status, &marked["marked"], &marked["unread_count"]),
        (200, &json!(1), &json!(2)),
        "{marked}"
    );
    let (_, all) = call(
        &stack,
        "POST",
        "/api/notifications/read",
        Some(json!({"email": bob})),
        None,
    )
    .await;
    assert_eq!(all["unread_count"], 0, "{all}");
    let (status, deleted) = call(
        &stack,
        "DELETE",
        "/api/notifications",
        Some(json!({"email": bob, "notification_ids": [newest]})),
        None,
    )
    .await;
    assert_eq!((status, &deleted["deleted"]), (200, &json!(1)), "{deleted}");
    assert_eq!(stack.stored_notifications(&bob).await.len(), 2);
    let subscription = format!("/api/subscription?email={bob}");
    assert_eq!(
        call(&stack, "GET", &subscription, None, None).await.1["subscribed"],
        true
    );
    let (status, off) = call(
        &stack,
        "DELETE",
        "/api/subscription",
        Some(json!({"email": bob})),
        None,
    )
    .await;
    assert_eq!((status, &off["subscribed"]), (200, &json!(false)), "{off}");
    assert!(!stack.is_subscribed(&bob).await);
    let (_, on) = call(
        &stack,
        "PUT",
        "/api/subscription",
        Some(json!({"email": bob})),
        None,
    )
    .await;
    assert_eq!(on["subscribed"], true, "{on}");
    assert!(stack.is_subscribed(&bob).await);
}

/// The `inbox_token` value in a `Set-Cookie` header.
fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("inbox_token="))
        .expect("the inbox_token cookie")
}

#[tokio::test]
async fn with_protection_the_page_api_forwards_the_session_cookie_and_the_callees_judge_it() {
    let stack = Stack::start_with_env(&protected_env(&[])).await;
    let (ada, bob) = (unique_email("ada"), unique_email("bob"));
    for email in [&ada, &bob] {
        let (status, body) = stack.page_sign_up(email, PASSWORD, "X").await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, cookie) = stack.page_sign_in(&ada, "wrong").await;
    assert_error(status, &body, 401);
    assert!(cookie.is_none());

    let (status, session, set_cookie) = stack.page_sign_in(&ada, PASSWORD).await;
    assert_eq!(status, 200, "{session}");
    assert!(
        session.get("token").is_none(),
        "the token stays out of scripts' reach: {session}"
    );
    let set_cookie = set_cookie.expect("a session cookie");
    for attribute in ["; HttpOnly", "; SameSite=Strict", "; Path=/", "; Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let max_age: u64 = set_cookie
        .rsplit("Max-Age=")
        .next()
        .and_then(|v| v.parse().ok())
        .expect("seconds");
    assert!(max_age > 0 && max_age <= 3600, "{set_cookie}");
    let token = cookie_value(&set_cookie).to_owned();
    let cookie = format!("inbox_token={token}");

    let (_, config) = call(&stack, "GET", "/api/config", None, Some(&cookie)).await;
    assert_eq!(
        (&config["protected"], &config["email"]),
        (&json!(true), &json!(ada)),
        "{config}"
    );
    let (_, anonymous) = call(&stack, "GET", "/api/config", None, None).await;
    assert_eq!(anonymous["email"], Value::Null, "{anonymous}");

    // The callees' rules, as for a direct caller: no token 401, another user's 403.
    let own = format!("/api/notifications?email={ada}");
    let others = format!("/api/notifications?email={bob}");
    let (status, body) = call(&stack, "GET", &own, None, None).await;
    assert_error(status, &body, 401);
    assert_eq!(call(&stack, "GET", &own, None, Some(&cookie)).await.0, 200);
    let (status, body) = call(&stack, "GET", &others, None, Some(&cookie)).await;
    assert_error(status, &body, 403);
    let by_header = stack
        .http()
        .get(stack.page_url(&own))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(by_header.status(), 200);
    let forged = json!({"sender_email": bob, "receiver_email": ada, "content": "not from Bob"});
    let (status, body) = call(&stack, "POST", "/api/messages", Some(forged), Some(&cookie)).await;
    assert_error(status, &body, 403);
    assert!(stack.stored_notifications(&ada).await.is_empty());
    let real = json!({"sender_email": ada, "receiver_email": bob, "content": "from Ada"});
    assert_eq!(
        call(&stack, "POST", "/api/messages", Some(real), Some(&cookie))
            .await
            .0,
        200
    );
    let (status, body) = call(
        &stack,
        "POST",
        "/api/notifications/read",
        Some(json!({"email": bob})),
        Some(&cookie),
    )
    .await;
    assert_error(status, &body, 403);
    let stored = stack.wait_for_notifications(&bob, 1).await;
    assert_eq!(stored[0]["read"], false, "{stored:?}");
    let (status, body) = call(
        &stack,
        "DELETE",
        "/api/subscription",
        Some(json!({"email": ada})),
        Some(&cookie),
    )
    .await;
    assert_error(status, &body, 403);
    let subscription = stack
        .stored_subscription(&ada)
        .await
        .expect("subscribed on sign-up");
    assert_eq!(subscription["subscribed"], true);

    let signed_out = stack
        .http()
        .delete(stack.page_url("/api/session"))
        .send()
        .await
        .expect("DELETE");
    let cleared = signed_out.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cleared.starts_with("inbox_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn account_rpcs_follow_the_rest_rules_and_believe_a_forwarded_address_only_from_frontend() {
    let stack = Stack::start_with_env(&protected_env(&[("NEW_PASSWORDS_PER_ADDRESS", "1")])).await;
    let mut accounts = AccountServiceClient::new(Stack::channel(stack.user_ports.grpc).await);
    let register = |email: &str, from: Option<(&str, bool)>| {
        let mut request = tonic::Request::new(RegisterUserRequest {
            email: Some(email.to_owned()),
            password: Some(PASSWORD.to_owned()),
            name: Some("X".to_owned()),
        });
        if let Some((address, as_frontend)) = from {
            request
                .metadata_mut()
                .insert(CLIENT_ADDRESS_HEADER, address.parse().expect("ascii"));
            if as_frontend {
                let config = service_runtime::auth::AuthConfig::protected(
                    AUTH_SECRET.as_bytes(),
                    service_runtime::auth::DEFAULT_TOKEN_TTL,
                )
                .expect("long enough");
                service_runtime::auth::TokenKeys::of_service(&config, ServiceName::Frontend)
                    .internal_credential()
                    .attach(&mut request);
            }
        }
        request
    };
    let ada = unique_email("ada");
    accounts
        .register_user(register(&ada, None))
        .await
        .expect("the first sign-up from here");
    // The allowance of this address is spent; naming another address does not help…
    let spoofed = accounts
        .register_user(register(&unique_email("eve"), Some(("10.0.0.7", false))))
        .await
        .expect_err("a second sign-up from this address");
    assert_eq!(spoofed.code(), Code::ResourceExhausted, "{spoofed:?}");
    assert!(spoofed.metadata().get("retry-after").is_some());
    // …except beside frontend-service's credential: a browser behind it has its own.
    let bob = unique_email("bob");
    accounts
        .register_user(register(&bob, Some(("10.0.0.8", true))))
        .await
        .expect("a sign-up from another browser");
    let taken = accounts
        .register_user(register(&bob, Some(("10.0.0.9", true))))
        .await
        .expect_err("a duplicate");
    assert_eq!(
        (taken.code(), taken.message()),
        (Code::InvalidArgument, "User already exists")
    );
    let malformed = accounts
        .register_user(register("not-an-address", Some(("10.0.0.10", true))))
        .await
        .expect_err("a malformed address");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(stack.stored_user("not-an-address").await.is_none());

    let log_in = |password: &str| LogInRequest {
        email: Some(bob.clone()),
        password: Some(password.to_owned()),
    };
    let wrong = accounts
        .log_in(log_in("wrong"))
        .await
        .expect_err("a wrong password");
    assert_eq!(
        (wrong.code(), wrong.message()),
        (Code::Unauthenticated, "Invalid credentials")
    );
    let issued = accounts
        .log_in(log_in(PASSWORD))
        .await
        .expect("logged in")
        .into_inner();
    assert_eq!(issued.email.as_deref(), Some(bob.as_str()));
    let token = issued.token.expect("a token");
    assert!(
        stack.messages_of_as(&bob, &token).await.is_empty(),
        "the token opens Bob's data"
    );
}
