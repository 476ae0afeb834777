//! frontend-service's web inbox: the page and its assets (security headers, labels), and its
//! same-origin API under `/api/` in open mode (the inbox through it; bad input refused with
//! nothing changed). With protection on: `websession.rs`.

use serde_json::{Value, json};

use integration_tests::{
    Stack,
    helpers::{assert_error, unique_email},
};

const PASSWORD: &str = "Str0ng-pass!";

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
    let (status, openapi) = stack.page_call("GET", "/openapi.json", None, None).await;
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
    let (status, config) = stack.page_call("GET", "/api/config", None, None).await;
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
        let (status, reply) = stack.page_call(method, &path, body.clone(), None).await;
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
        let (status, sent) = stack
            .page_call("POST", "/api/messages", Some(body), None)
            .await;
        assert_eq!(
            (status, &sent["message"]),
            (200, &json!("Message sent")),
            "{sent}"
        );
    }
    let (status, first) = stack
        .page_call(
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
    let (_, older) = stack
        .page_call(
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
    let (status, marked) = stack
        .page_call(
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
    let (_, all) = stack
        .page_call(
            "POST",
            "/api/notifications/read",
            Some(json!({"email": bob})),
            None,
        )
        .await;
    assert_eq!(all["unread_count"], 0, "{all}");
    let (status, deleted) = stack
        .page_call(
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
        stack.page_call("GET", &subscription, None, None).await.1["subscribed"],
        true
    );
    let (status, off) = stack
        .page_call(
            "DELETE",
            "/api/subscription",
            Some(json!({"email": bob})),
            None,
        )
        .await;
    assert_eq!((status, &off["subscribed"]), (200, &json!(false)), "{off}");
    assert!(!stack.is_subscribed(&bob).await);
    let (_, on) = stack
        .page_call(
            "PUT",
            "/api/subscription",
            Some(json!({"email": bob})),
            None,
        )
        .await;
    assert_eq!(on["subscribed"], true, "{on}");
    assert!(stack.is_subscribed(&bob).await);
}
