//! The web inbox with protection on: the session cookie set by `POST /api/session`, the
//! browser's token (cookie or `Authorization`) forwarded and judged by the callees, and
//! user-service's `AccountService` behind sign-up and sign-in (the REST rules; a forwarded
//! client address believed only from frontend-service).

use proto::user_service::{
    LogInRequest, RegisterUserRequest, account_service_client::AccountServiceClient,
};
use serde_json::{Value, json};
use service_runtime::{auth::ServiceName, grpc_client::CLIENT_ADDRESS_HEADER};
use tonic::Code;

use integration_tests::{
    Stack,
    helpers::{AUTH_SECRET, assert_error, protected_env, unique_email},
};

const PASSWORD: &str = "Str0ng-pass!";

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

    let (_, config) = stack
        .page_call("GET", "/api/config", None, Some(&cookie))
        .await;
    assert_eq!(
        (&config["protected"], &config["email"]),
        (&json!(true), &json!(ada)),
        "{config}"
    );
    let (_, anonymous) = stack.page_call("GET", "/api/config", None, None).await;
    assert_eq!(anonymous["email"], Value::Null, "{anonymous}");

    // The callees' rules, as for a direct caller: no token 401, another user's 403.
    let own = format!("/api/notifications?email={ada}");
    let others = format!("/api/notifications?email={bob}");
    let (status, body) = stack.page_call("GET", &own, None, None).await;
    assert_error(status, &body, 401);
    assert_eq!(
        stack.page_call("GET", &own, None, Some(&cookie)).await.0,
        200
    );
    let (status, body) = stack.page_call("GET", &others, None, Some(&cookie)).await;
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
    let (status, body) = stack
        .page_call("POST", "/api/messages", Some(forged), Some(&cookie))
        .await;
    assert_error(status, &body, 403);
    assert!(stack.stored_notifications(&ada).await.is_empty());
    let real = json!({"sender_email": ada, "receiver_email": bob, "content": "from Ada"});
    assert_eq!(
        stack
            .page_call("POST", "/api/messages", Some(real), Some(&cookie))
            .await
            .0,
        200
    );
    let (status, body) = stack
        .page_call(
            "POST",
            "/api/notifications/read",
            Some(json!({"email": bob})),
            Some(&cookie),
        )
        .await;
    assert_error(status, &body, 403);
    let stored = stack.wait_for_notifications(&bob, 1).await;
    assert_eq!(stored[0]["read"], false, "{stored:?}");
    // Their own subscription, and only theirs.
    for (method, path, body) in [
        ("GET", format!("/api/subscription?email={bob}"), None),
        (
            "DELETE",
            "/api/subscription".to_owned(),
            Some(json!({"email": bob})),
        ),
        (
            "PUT",
            "/api/subscription".to_owned(),
            Some(json!({"email": bob})),
        ),
    ] {
        let (status, reply) = stack.page_call(method, &path, body, Some(&cookie)).await;
        assert_error(status, &reply, 403);
    }
    let bobs = stack
        .stored_subscription(&bob)
        .await
        .expect("subscribed on sign-up");
    assert_eq!(bobs["subscribed"], true, "Bob's subscription is untouched");
    let own_subscription = format!("/api/subscription?email={ada}");
    let (status, body) = stack
        .page_call(
            "DELETE",
            "/api/subscription",
            Some(json!({"email": ada})),
            None,
        )
        .await;
    assert_error(status, &body, 401);
    for (method, subscribed) in [("DELETE", false), ("PUT", true)] {
        let (status, body) = stack
            .page_call(
                method,
                "/api/subscription",
                Some(json!({"email": ada})),
                Some(&cookie),
            )
            .await;
        assert_eq!(
            (status, &body["subscribed"]),
            (200, &json!(subscribed)),
            "{body}"
        );
        let stored = stack.stored_subscription(&ada).await.expect("stored");
        assert_eq!(stored["subscribed"], subscribed, "{method}: {stored}");
        let (status, body) = stack
            .page_call("GET", &own_subscription, None, Some(&cookie))
            .await;
        assert_eq!(
            (status, &body["subscribed"]),
            (200, &json!(subscribed)),
            "{body}"
        );
    }

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
