//! The edges of an account (issue 16, items 2–5): sensitive changes need the current password,
//! a watch ends when its token is revoked, new passwords are limited per client address, and
//! addresses that look the same are the same.

use std::time::Duration;

use integration_tests::{
    Stack,
    helpers::{assert_error, message, protected_env, reply, unique_email, with_bearer},
};
use proto::frontend_service::WatchNotificationsRequest;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tonic::Code;
use user_service::keys::{login_failures_key, user_key};

/// A password the policy accepts, and another.
const PASSWORD: &str = "Str0ng-pass!";
const NEW_PASSWORD: &str = "N3w-passw0rd!";

/// Path form of an address.
fn path_of(email: &str) -> String {
    format!("/users/{}", email.replace('@', "%40"))
}

/// Sends `request` with `token`; the status and JSON reply.
async fn send(request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
    reply(
        request
            .bearer_auth(token)
            .send()
            .await
            .expect("HTTP request"),
    )
    .await
}

/// A 401 whose message names `current_password`.
fn assert_needs_current_password(status: u16, body: &Value) {
    assert_error(status, body, 401);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("current_password")),
        "{body}"
    );
}

/// A protected stack and one user with a token.
async fn protected_user(prefix: &str) -> (Stack, String, String) {
    let stack = Stack::start_with_env(&protected_env(&[])).await;
    let email = stack.registered_user_with(prefix, PASSWORD).await;
    let token = stack.token(&email, PASSWORD).await;
    (stack, email, token)
}

// ---------------------------------------------------------------------------------------------
// 16.2: sensitive changes need the current password
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn with_protection_on_a_password_change_needs_the_right_current_password_in_both_forms() {
    let (stack, email, token) = protected_user("pw-change").await;
    let by_body = |body: Value| {
        let request = stack.http().put(stack.user_url("/users/email")).json(&body);
        send(request, &token)
    };

    let (status, body) =
        by_body(json!({ "email": email, "data": { "password": NEW_PASSWORD } })).await;
    assert_needs_current_password(status, &body);
    let (status, body) = by_body(json!({
        "email": email, "current_password": "Wr0ng-guess!", "data": { "password": NEW_PASSWORD }
    }))
    .await;
    assert_needs_current_password(status, &body);
    let path = path_of(&email);
    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path))
            .json(&json!({ "password": NEW_PASSWORD })),
        &token,
    )
    .await;
    assert_needs_current_password(status, &body);
    // Nothing changed: the old password still logs in.
    let token = stack.token(&email, PASSWORD).await;

    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path))
            .json(&json!({ "password": NEW_PASSWORD, "current_password": PASSWORD })),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.login(&email, PASSWORD).await.0, 401);
    let token = stack.token(&email, NEW_PASSWORD).await;

    // And back, through the body form.
    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url("/users/email"))
            .json(&json!({
                "email": email, "current_password": NEW_PASSWORD, "data": { "password": PASSWORD }
            })),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    stack.token(&email, PASSWORD).await;
}

#[tokio::test]
async fn with_protection_on_an_email_change_needs_the_current_password_and_a_rename_does_not() {
    let (stack, email, token) = protected_user("mail-change").await;
    let moved = unique_email("moved");
    let path = path_of(&email);

    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path))
            .json(&json!({ "email": moved })),
        &token,
    )
    .await;
    assert_needs_current_password(status, &body);
    assert!(stack.stored_user(&moved).await.is_none());

    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path))
            .json(&json!({ "name": "Renamed" })),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path))
            .json(&json!({ "email": moved, "current_password": PASSWORD })),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], moved.as_str());
    assert!(stack.stored_user(&email).await.is_none());
}

#[tokio::test]
async fn with_protection_on_a_deletion_needs_the_current_password_in_both_forms() {
    let (stack, email, token) = protected_user("delete").await;
    let path = path_of(&email);

    let (status, body) = send(stack.http().delete(stack.user_url(&path)), &token).await;
    assert_needs_current_password(status, &body);
    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url(&path))
            .json(&json!({ "current_password": "Wr0ng-guess!" })),
        &token,
    )
    .await;
    assert_needs_current_password(status, &body);
    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url("/users/email"))
            .json(&json!({ "email": email })),
        &token,
    )
    .await;
    assert_needs_current_password(status, &body);
    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url(&path))
            .json(&json!({ "current_password": PASSWORD, "confirm": true })),
        &token,
    )
    .await;
    assert_error(status, &body, 400);
    assert!(
        stack.stored_user(&email).await.is_some(),
        "a refusal deleted"
    );

    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url("/users/email"))
            .json(&json!({ "email": email, "current_password": PASSWORD })),
        &token,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(stack.stored_user(&email).await.is_none());

    // The path form, on a second user.
    let other = stack.registered_user_with("delete-path", PASSWORD).await;
    let token = stack.token(&other, PASSWORD).await;
    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url(&path_of(&other)))
            .json(&json!({ "current_password": PASSWORD })),
        &token,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(stack.stored_user(&other).await.is_none());
}

#[tokio::test]
async fn a_wrong_current_password_counts_as_a_failed_login() {
    let stack = Stack::start_with_env(&protected_env(&[("LOGIN_MAX_FAILURES", "2")])).await;
    let email = stack.registered_user_with("guesser", PASSWORD).await;
    let token = stack.token(&email, PASSWORD).await;
    let guess = |n: u32| {
        send(
            stack
                .http()
                .delete(stack.user_url(&path_of(&email)))
                .json(&json!({ "current_password": format!("Gu3ss-{n}!") })),
            &token,
        )
    };

    assert_eq!(guess(1).await.0, 401);
    assert_eq!(guess(2).await.0, 401);
    let failures: Option<u32> = stack
        .redis
        .db(0)
        .await
        .get(login_failures_key(&email))
        .await
        .expect("GET");
    assert_eq!(failures, Some(2));

    let (status, body) = guess(3).await;
    assert_error(status, &body, 429);
    let (status, _, retry_after) = stack.login(&email, PASSWORD).await;
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn in_open_mode_no_current_password_is_needed_but_one_given_is_checked() {
    let stack = Stack::start().await;
    let email = stack.registered_user("open").await;
    let path = path_of(&email);

    let (status, body) = stack
        .put_user_by_path(
            &email,
            &json!({ "password": "pw2", "current_password": "nope" }),
        )
        .await;
    assert_needs_current_password(status, &body);
    let (status, body) = stack
        .put_user_by_path(&email, &json!({ "password": "pw2" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = reply(
        stack
            .http()
            .delete(stack.user_url(&path))
            .send()
            .await
            .expect("DELETE"),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

// ---------------------------------------------------------------------------------------------
// 16.3: a watch ends when its token is revoked
// ---------------------------------------------------------------------------------------------

/// Opens `WatchNotifications` of `email` with `token`.
async fn watch(
    stack: &Stack,
    email: &str,
    token: &str,
) -> tonic::Streaming<proto::frontend_service::Notification> {
    stack
        .frontend_client()
        .await
        .watch_notifications(with_bearer(
            WatchNotificationsRequest {
                email: Some(email.to_owned()),
                after: None,
            },
            Some(token),
        ))
        .await
        .expect("watching")
        .into_inner()
}

/// What ends `stream`: it must end by itself (the bound only keeps a broken build from
/// hanging) with an error status.
async fn final_status(
    stream: &mut tonic::Streaming<proto::frontend_service::Notification>,
) -> tonic::Status {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the watch ends by itself");
        match next {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the watch ended without a status"),
            Err(status) => return status,
        }
    }
}

#[tokio::test]
async fn a_watch_ends_unauthenticated_when_its_user_changes_password_or_is_deleted() {
    let (stack, email, token) = protected_user("watch-revoked").await;
    let mut changed = watch(&stack, &email, &token).await;
    let other = stack.registered_user_with("watch-deleted", PASSWORD).await;
    let other_token = stack.token(&other, PASSWORD).await;
    let mut deleted = watch(&stack, &other, &other_token).await;
    // A watch whose token stays good, to show the others end for their tokens' sake.
    let bystander = stack
        .registered_user_with("watch-bystander", PASSWORD)
        .await;
    let bystander_token = stack.token(&bystander, PASSWORD).await;
    let mut kept = watch(&stack, &bystander, &bystander_token).await;

    let (status, body) = send(
        stack
            .http()
            .put(stack.user_url(&path_of(&email)))
            .json(&json!({ "password": NEW_PASSWORD, "current_password": PASSWORD })),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        stack
            .http()
            .delete(stack.user_url(&path_of(&other)))
            .json(&json!({ "current_password": PASSWORD })),
        &other_token,
    )
    .await;
    assert_eq!(status, 204, "{body}");

    for ended in [
        final_status(&mut changed).await,
        final_status(&mut deleted).await,
    ] {
        assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
        assert!(ended.message().contains("revoked"), "{ended:?}");
    }

    // The bystander's watch still delivers: a notification sent now reaches it.
    let sender = stack.registered_user_with("watch-sender", PASSWORD).await;
    let sender_token = stack.token(&sender, PASSWORD).await;
    let mut messages = stack.message_client().await;
    let sent = messages
        .send_message(with_bearer(
            message(Some(&sender), Some(&bystander), Some("still watching")),
            Some(&sender_token),
        ))
        .await
        .expect("SendMessage")
        .into_inner();
    assert_eq!(sent.success, Some(true));
    let delivered = tokio::time::timeout(Duration::from_secs(30), kept.message())
        .await
        .expect("delivered")
        .expect("no error")
        .expect("a notification");
    assert_eq!(delivered.sender_email.as_deref(), Some(sender.as_str()));
}

// ---------------------------------------------------------------------------------------------
// 16.4: new passwords are limited per client address
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sign_ups_and_password_changes_share_a_per_address_allowance_apart_from_logins() {
    let stack = Stack::start_with_env(&[("NEW_PASSWORDS_PER_ADDRESS", "2")]).await;
    let first = unique_email("allowance");
    assert_eq!(stack.create_user(&first, "pw", "A").await.0, 201);
    let (status, body) = stack
        .put_user_by_path(&first, &json!({ "password": "pw2" }))
        .await;
    assert_eq!(status, 200, "{body}");

    let response = stack
        .http()
        .post(stack.user_url("/users"))
        .json(&json!({ "email": unique_email("allowance"), "password": "pw", "name": "B" }))
        .send()
        .await
        .expect("POST /users");
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = reply(response).await;
    assert_error(status, &body, 429);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign-ups and password changes from this address")),
        "{body}"
    );
    assert!(retry_after.is_some(), "429 carries Retry-After");
    let (status, body) = stack
        .put_user_by_path(&first, &json!({ "password": "pw3" }))
        .await;
    assert_error(status, &body, 429);

    // What does not hash a new password is not limited by it: a rename, a login.
    let (status, body) = stack
        .put_user_by_path(&first, &json!({ "name": "Renamed" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.login(&first, "pw2").await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// 16.5: addresses that look the same are the same
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn canonically_equivalent_addresses_are_one_account() {
    let stack = Stack::start().await;
    let tail = unique_email("nfc");
    let decomposed = format!("ade\u{301}-{tail}");
    let composed = format!("ad\u{e9}-{tail}");

    let (status, body) = stack.create_user(&decomposed, "pw", "Adé").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["email"], composed.as_str(), "answered in NFC");
    let (status, body) = stack.create_user(&composed, "pw", "Other").await;
    assert_error(status, &body, 400);
    assert_eq!(body["message"], "User already exists");

    // One key, in NFC; either spelling finds it.
    let raw: Option<String> = stack
        .redis
        .db(0)
        .await
        .get(user_key(&decomposed))
        .await
        .expect("GET");
    assert!(raw.is_none(), "no key in the decomposed form");
    assert!(stack.stored_user(&composed).await.is_some());
    assert_eq!(stack.login(&decomposed, "pw").await.0, 200);
    assert_eq!(stack.login(&composed, "pw").await.0, 200);
    assert!(stack.user_exists(Some(&decomposed)).await);
    let (status, body) = stack
        .put_user_by_path(&decomposed, &json!({ "name": "Renamed" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stack.stored_user(&composed).await.expect("stored")["name"],
        "Renamed"
    );
}

#[tokio::test]
async fn a_new_address_mixing_scripts_with_look_alikes_is_refused_but_a_stored_one_still_works() {
    let stack = Stack::start().await;
    let tail = unique_email("confusable");
    // Cyrillic а (U+0430) among Latin letters: looks like "paypal".
    let look_alike = format!("p\u{430}ypal-{tail}");

    let (status, body) = stack.create_user(&look_alike, "pw", "M").await;
    assert_error(status, &body, 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("mixes scripts")),
        "{body}"
    );
    let look_alike_domain = format!("ada-{}@p\u{430}ypal.com", std::process::id());
    let (status, body) = stack.create_user(&look_alike_domain, "pw", "M").await;
    assert_error(status, &body, 400);

    let plain = stack.registered_user("plain").await;
    let (status, body) = stack
        .put_user_by_path(&plain, &json!({ "email": look_alike }))
        .await;
    assert_error(status, &body, 400);
    assert!(stack.stored_user(&plain).await.is_some());

    // One script per part is fine.
    let cyrillic = format!("иван-{}@почта.рф", std::process::id());
    assert_eq!(stack.create_user(&cyrillic, "pw", "И").await.0, 201);

    // An account stored under such an address before this check keeps working.
    let mut redis = stack.redis.db(0).await;
    let mut record = stack.stored_user(&plain).await.expect("stored");
    record["email"] = json!(look_alike);
    let _: () = redis
        .set(user_key(&look_alike), record.to_string())
        .await
        .expect("SET");
    assert_eq!(stack.login(&look_alike, "pw-123456").await.0, 200);
    assert!(stack.user_exists(Some(&look_alike)).await);
}
