//! user-service: the REST API, the gRPC API, the DB 0 layout and the subscription of new users.

use std::time::{Duration, Instant};

use futures::future::join_all;
use integration_tests::{
    Stack,
    helpers::{assert_error, unique_email},
};
use proto::user_service::CheckUserExistsRequest;
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use user_service::keys::{SUBSCRIPTION_OUTBOX, user_key};

// ---------------------------------------------------------------------------------------------
// POST /users
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_user_returns_201_and_stores_it_under_users_email_with_an_argon2id_hash() {
    let stack = Stack::in_process().await;
    let email = unique_email("create");

    let (status, body) = stack.create_user(&email, "s3cret-pw", "Ada Lovelace").await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(
        body["user"],
        json!({ "name": "Ada Lovelace", "email": email })
    );
    assert!(
        !body.to_string().contains("s3cret-pw"),
        "password echoed: {body}"
    );
    // The contract's key spelled out, the one literal key name in the suite's DB 0 checks:
    // everywhere else it is `user_service::keys::user_key`.
    let raw: String = stack
        .redis
        .db(0)
        .await
        .get(format!("users:{email}"))
        .await
        .expect("users:{email} exists");
    let stored: Value = serde_json::from_str(&raw).expect("stored user is JSON");
    let keys: Vec<&String> = stored.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["email", "name", "password"]);
    assert_eq!(stored["name"], "Ada Lovelace");
    assert_eq!(stored["email"], email.as_str());
    let hash = stored["password"].as_str().expect("password is a string");
    assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
    assert!(!hash.contains("s3cret-pw"));
}

#[tokio::test]
async fn creating_a_user_without_a_field_returns_400_naming_it_and_stores_nothing() {
    let stack = Stack::in_process().await;
    for missing in ["email", "password", "name"] {
        let email = unique_email("missing");
        let mut body = json!({ "email": email, "password": "pw", "name": "N" });
        body.as_object_mut().expect("object").remove(missing);

        let (status, reply) = stack.post_users("application/json", body.to_string()).await;

        assert_error(status, &reply, 400);
        assert!(
            reply["message"]
                .as_str()
                .unwrap_or_default()
                .contains(missing),
            "message should name `{missing}`: {reply}"
        );
        assert_eq!(stack.stored_user(&email).await, None);
    }
}

#[tokio::test]
async fn creating_a_user_with_an_empty_field_returns_400_and_stores_nothing() {
    let stack = Stack::in_process().await;
    let email = unique_email("empty");
    for (password, name) in [("", "N"), ("pw", ""), ("pw", "   ")] {
        let (status, body) = stack.create_user(&email, password, name).await;

        assert_error(status, &body, 400);
    }
    let (status, body) = stack.create_user("", "pw", "N").await;
    assert_error(status, &body, 400);
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn creating_a_user_with_a_malformed_email_returns_400_and_stores_nothing() {
    let stack = Stack::in_process().await;
    for bad in ["plain", "a@b", "a b@c.io", "@example.com"] {
        let (status, body) = stack.create_user(bad, "pw", "N").await;

        assert_error(status, &body, 400);
        assert_eq!(stack.stored_user(bad).await, None);
    }
}

#[tokio::test]
async fn creating_a_user_with_a_non_string_field_returns_400() {
    let stack = Stack::in_process().await;
    let email = unique_email("typed");
    for body in [
        json!({ "email": email, "password": 1234, "name": "N" }),
        json!({ "email": email, "password": "pw", "name": null }),
        json!({ "email": ["x"], "password": "pw", "name": "N" }),
    ] {
        let (status, reply) = stack.post_users("application/json", body.to_string()).await;

        assert_error(status, &reply, 400);
    }
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn malformed_json_returns_400_with_a_json_message() {
    let stack = Stack::in_process().await;

    let (status, body) = stack
        .post_users("application/json", r#"{"email": "a@b.io","#)
        .await;

    assert_error(status, &body, 400);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_returns_400() {
    let stack = Stack::in_process().await;
    let email = unique_email("ctype");
    let body = json!({ "email": email, "password": "pw", "name": "N" }).to_string();

    let (status, reply) = stack.post_users("text/plain", body).await;

    assert_error(status, &reply, 400);
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn an_oversized_body_returns_413() {
    let stack = Stack::in_process().await;
    let email = unique_email("big");
    let body = json!({ "email": email, "password": "x".repeat(100 * 1024), "name": "N" });

    let (status, reply) = stack.post_users("application/json", body.to_string()).await;

    assert_error(status, &reply, 413);
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn creating_a_duplicate_user_returns_400_and_leaves_the_original_untouched() {
    let stack = Stack::in_process().await;
    let email = unique_email("dup");
    let (status, _) = stack.create_user(&email, "first-pw", "First").await;
    assert_eq!(status, 201);
    let original = stack.stored_user(&email).await;

    let (status, body) = stack.create_user(&email, "second-pw", "Second").await;

    assert_error(status, &body, 400);
    assert_eq!(body["message"], "User already exists");
    assert_eq!(stack.stored_user(&email).await, original);
    assert!(stack.authenticate(Some(&email), Some("first-pw")).await.1);
}

#[tokio::test]
async fn of_twenty_concurrent_creates_of_one_email_exactly_one_wins() {
    // Twenty sign-ups from one address: past its default allowance of new passwords.
    let stack = Stack::in_process_with_env(&[("NEW_PASSWORDS_PER_ADDRESS", "0")]).await;
    let email = unique_email("race");

    let replies = join_all((0..20).map(|i| {
        let (email, name) = (email.clone(), format!("racer {i}"));
        let stack = &stack;
        async move { stack.create_user(&email, &format!("pw-{i}"), &name).await }
    }))
    .await;

    let winners: Vec<&Value> = replies
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    let losers = replies
        .iter()
        .filter(|(status, body)| *status == 400 && body["message"] == "User already exists")
        .count();
    assert_eq!(losers, 19, "{replies:?}");
    let stored = stack.stored_user(&email).await.expect("stored");
    assert_eq!(stored["name"], winners[0]["user"]["name"]);
    // Counted as ever added, not as still there: user-service may deliver the winner's entry
    // and delete it before this looks, which would hide extra entries from XLEN.
    let entries = stack.entries_ever_added(0, SUBSCRIPTION_OUTBOX).await;
    assert_eq!(
        entries, 1,
        "only the winner enqueues a subscription ({entries} entries)"
    );
}

// ---------------------------------------------------------------------------------------------
// Subscription on create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_created_user_ends_up_subscribed_to_notifications() {
    let stack = Stack::in_process().await;
    let email = unique_email("sub");

    let (status, _) = stack.create_user(&email, "pw", "N").await;

    assert_eq!(status, 201);
    let subscription = stack.wait_for_subscription(&email).await;
    assert_eq!(
        subscription,
        json!({ "user_email": email, "subscribed": true })
    );
}

#[tokio::test]
async fn a_created_user_is_already_subscribed_when_the_201_arrives() {
    // Twenty sign-ups from one address: past its default allowance of new passwords.
    let stack = Stack::in_process_with_env(&[("NEW_PASSWORDS_PER_ADDRESS", "0")]).await;
    for _ in 0..20 {
        let email = unique_email("sub-now");

        let (status, body) = stack.create_user(&email, "pw", "N").await;

        assert_eq!(status, 201, "{body}");
        // Read at once: no polling, no sleeping.
        assert_eq!(
            stack.stored_subscription(&email).await,
            Some(json!({ "user_email": email, "subscribed": true })),
            "{email} was not subscribed when its 201 arrived"
        );
        assert!(stack.is_subscribed(&email).await, "{email}");
    }
}

#[tokio::test]
async fn a_moved_user_is_already_subscribed_at_the_new_address_when_the_200_arrives() {
    let stack = Stack::in_process().await;
    for _ in 0..10 {
        let (old, new) = (unique_email("move-now-from"), unique_email("move-now-to"));
        let (status, body) = stack.create_user(&old, "pw", "N").await;
        assert_eq!(status, 201, "{body}");

        let (status, body) = stack.put_user_by_path(&old, &json!({ "email": new })).await;

        assert_eq!(status, 200, "{body}");
        assert_eq!(
            stack.stored_subscription(&new).await,
            Some(json!({ "user_email": new, "subscribed": true })),
            "{new} was not subscribed when its 200 arrived"
        );
    }
}

#[tokio::test]
async fn a_user_created_while_notification_service_is_down_is_subscribed_once_it_is_back() {
    let mut stack = Stack::start().await;
    let email = unique_email("later");
    stack.notification.kill();

    let started = Instant::now();
    let (status, body) = stack.create_user(&email, "pw", "N").await;
    assert_eq!(
        status, 201,
        "creation does not depend on notification-service: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait for the subscription is bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(stack.stored_subscription(&email).await, None);
    stack.notification.restart().await;

    let subscription = stack.wait_for_subscription(&email).await;
    assert_eq!(
        subscription,
        json!({ "user_email": email, "subscribed": true })
    );
}

// ---------------------------------------------------------------------------------------------
// PUT /users/email and PUT /users/{email}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn updating_a_users_name_by_body_returns_200_and_keeps_everything_else() {
    let stack = Stack::in_process().await;
    let email = unique_email("rename");
    stack.create_user(&email, "pw", "Old Name").await;
    let before = stack.stored_user(&email).await.expect("stored");

    let (status, body) = stack
        .put_user_by_body(&json!({ "email": email, "data": { "name": "New Name" } }))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["user"], json!({ "name": "New Name", "email": email }));
    let after = stack.stored_user(&email).await.expect("stored");
    assert_eq!(after["name"], "New Name");
    assert_eq!(after["password"], before["password"]);
}

#[tokio::test]
async fn updating_a_users_password_by_path_stores_a_new_hash_that_authenticates() {
    let stack = Stack::in_process().await;
    let email = unique_email("repw");
    stack.create_user(&email, "old-pw", "N").await;
    let before = stack.stored_user(&email).await.expect("stored");

    let (status, body) = stack
        .put_user_by_path(&email, &json!({ "password": "new-pw" }))
        .await;

    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("new-pw"));
    let after = stack.stored_user(&email).await.expect("stored");
    let hash = after["password"].as_str().expect("a string");
    assert_ne!(after["password"], before["password"]);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("new-pw"));
    assert!(stack.authenticate(Some(&email), Some("new-pw")).await.1);
    assert!(!stack.authenticate(Some(&email), Some("old-pw")).await.1);
}

#[tokio::test]
async fn updating_a_users_email_moves_the_record_and_subscribes_the_new_address() {
    let stack = Stack::in_process().await;
    let old = unique_email("move-from");
    let new = unique_email("move-to");
    stack.create_user(&old, "pw", "Mover").await;
    let before = stack.stored_user(&old).await.expect("stored");

    let (status, body) = stack
        .put_user_by_body(&json!({ "email": old, "data": { "email": new } }))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], new.as_str());
    assert_eq!(stack.stored_user(&old).await, None);
    let after = stack.stored_user(&new).await.expect("moved");
    assert_eq!(after["email"], new.as_str());
    assert_eq!(after["name"], "Mover");
    assert_eq!(after["password"], before["password"]);
    assert!(stack.authenticate(Some(&new), Some("pw")).await.1);
    let subscription = stack.wait_for_subscription(&new).await;
    assert_eq!(
        subscription,
        json!({ "user_email": new, "subscribed": true })
    );
}

#[tokio::test]
async fn updating_an_unknown_user_returns_404_in_both_forms() {
    let stack = Stack::in_process().await;
    let email = unique_email("ghost");

    let (by_body, body_reply) = stack
        .put_user_by_body(&json!({ "email": email, "data": { "name": "X" } }))
        .await;
    let (by_path, path_reply) = stack
        .put_user_by_path(&email, &json!({ "name": "X" }))
        .await;

    assert_error(by_body, &body_reply, 404);
    assert_error(by_path, &path_reply, 404);
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn an_update_with_empty_data_returns_400_in_both_forms() {
    let stack = Stack::in_process().await;
    let email = unique_email("nodata");
    stack.create_user(&email, "pw", "N").await;
    let before = stack.stored_user(&email).await;

    let (by_body, body_reply) = stack
        .put_user_by_body(&json!({ "email": email, "data": {} }))
        .await;
    let (by_path, path_reply) = stack.put_user_by_path(&email, &json!({})).await;

    assert_error(by_body, &body_reply, 400);
    assert_error(by_path, &path_reply, 400);
    assert_eq!(stack.stored_user(&email).await, before);
}

#[tokio::test]
async fn an_update_with_an_unknown_key_returns_400_and_changes_nothing() {
    let stack = Stack::in_process().await;
    let email = unique_email("unknown-key");
    stack.create_user(&email, "pw", "N").await;
    let before = stack.stored_user(&email).await;

    let (by_body, body_reply) = stack
        .put_user_by_body(&json!({ "email": email, "data": { "name": "X", "admin": "yes" } }))
        .await;
    let (by_path, path_reply) = stack
        .put_user_by_path(&email, &json!({ "name": "X", "admin": "yes" }))
        .await;

    assert_error(by_body, &body_reply, 400);
    assert!(
        body_reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("admin")
    );
    assert_error(by_path, &path_reply, 400);
    assert_eq!(stack.stored_user(&email).await, before);
}

#[tokio::test]
async fn an_update_with_a_non_string_value_returns_400_and_changes_nothing() {
    let stack = Stack::in_process().await;
    let email = unique_email("nonstring");
    stack.create_user(&email, "pw", "N").await;
    let before = stack.stored_user(&email).await;

    for data in [
        json!({ "name": 42 }),
        json!({ "password": null }),
        json!({ "email": {} }),
    ] {
        let (status, body) = stack
            .put_user_by_body(&json!({ "email": email, "data": data }))
            .await;

        assert_error(status, &body, 400);
    }
    let (status, body) = stack
        .put_user_by_body(&json!({ "email": email, "data": "name" }))
        .await;
    assert_error(status, &body, 400);
    assert_eq!(stack.stored_user(&email).await, before);
}

#[tokio::test]
async fn an_update_to_a_malformed_email_returns_400_and_changes_nothing() {
    let stack = Stack::in_process().await;
    let email = unique_email("badmove");
    stack.create_user(&email, "pw", "N").await;
    let before = stack.stored_user(&email).await;

    let (status, body) = stack
        .put_user_by_path(&email, &json!({ "email": "not-an-email" }))
        .await;

    assert_error(status, &body, 400);
    assert_eq!(stack.stored_user(&email).await, before);
    assert_eq!(stack.stored_user("not-an-email").await, None);
}

#[tokio::test]
async fn moving_a_user_onto_a_taken_email_returns_400_and_changes_neither_user() {
    let stack = Stack::in_process().await;
    let mover = unique_email("mover");
    let owner = unique_email("owner");
    stack.create_user(&mover, "pw1", "Mover").await;
    stack.create_user(&owner, "pw2", "Owner").await;
    let (mover_before, owner_before) = (
        stack.stored_user(&mover).await,
        stack.stored_user(&owner).await,
    );

    let (status, body) = stack
        .put_user_by_body(&json!({ "email": mover, "data": { "email": owner } }))
        .await;

    assert_error(status, &body, 400);
    assert_eq!(stack.stored_user(&mover).await, mover_before);
    assert_eq!(stack.stored_user(&owner).await, owner_before);
}

#[tokio::test]
async fn concurrent_updates_of_different_fields_are_all_kept() {
    let stack = Stack::in_process().await;
    let email = unique_email("cas");
    stack.create_user(&email, "old-pw", "Old").await;

    let name_updates = (0..8).map(|i| {
        let stack = &stack;
        let email = email.clone();
        async move {
            stack
                .put_user_by_path(&email, &json!({ "name": format!("Name {i}") }))
                .await
        }
    });
    let new_password = json!({ "password": "new-pw" });
    let password_update = stack.put_user_by_path(&email, &new_password);
    let (names, password) = tokio::join!(join_all(name_updates), password_update);

    assert!(names.iter().all(|(status, _)| *status == 200), "{names:?}");
    assert_eq!(password.0, 200, "{password:?}");
    let stored = stack.stored_user(&email).await.expect("stored");
    assert!(
        stored["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Name ")
    );
    assert!(
        stack.authenticate(Some(&email), Some("new-pw")).await.1,
        "the password change was lost to a concurrent name change"
    );
}

// ---------------------------------------------------------------------------------------------
// DELETE /users/email and DELETE /users/{email}
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_a_user_by_body_returns_204_with_an_empty_body_and_removes_it() {
    let stack = Stack::in_process().await;
    let email = unique_email("del-body");
    stack.create_user(&email, "pw", "N").await;

    let (status, body) = stack.delete_user_by_body(&json!({ "email": email })).await;

    assert_eq!(status, 204);
    assert_eq!(body, Value::Null, "204 has no body");
    assert_eq!(stack.stored_user(&email).await, None);
    assert!(!stack.user_exists(Some(&email)).await);
}

#[tokio::test]
async fn deleting_a_user_by_path_returns_204_and_removes_it() {
    let stack = Stack::in_process().await;
    let email = unique_email("del+path");
    stack.create_user(&email, "pw", "N").await;

    let (status, body) = stack.delete_user_by_path(&email).await;

    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    assert_eq!(stack.stored_user(&email).await, None);
}

#[tokio::test]
async fn deleting_an_unknown_user_returns_404_in_both_forms() {
    let stack = Stack::in_process().await;
    let email = unique_email("del-ghost");

    let (by_body, body_reply) = stack.delete_user_by_body(&json!({ "email": email })).await;
    let (by_path, path_reply) = stack.delete_user_by_path(&email).await;

    assert_error(by_body, &body_reply, 404);
    assert_error(by_path, &path_reply, 404);
}

#[tokio::test]
async fn deleting_without_an_email_returns_400() {
    let stack = Stack::in_process().await;

    let (status, body) = stack.delete_user_by_body(&json!({})).await;

    assert_error(status, &body, 400);
}

// ---------------------------------------------------------------------------------------------
// gRPC: AuthenticateUser, CheckUserExists, ListUsers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn authenticate_user_succeeds_with_the_right_password_and_echoes_the_email() {
    let stack = Stack::in_process().await;
    let email = unique_email("auth");
    stack.create_user(&email, "right-pw", "N").await;

    let (echoed, success) = stack.authenticate(Some(&email), Some("right-pw")).await;

    assert_eq!(echoed.as_deref(), Some(email.as_str()));
    assert!(success);
}

#[tokio::test]
async fn authenticate_user_fails_alike_for_a_wrong_password_and_an_unknown_user() {
    let stack = Stack::in_process().await;
    let email = unique_email("auth-wrong");
    let unknown = unique_email("auth-ghost");
    stack.create_user(&email, "right-pw", "N").await;

    let wrong = stack.authenticate(Some(&email), Some("wrong-pw")).await;
    let ghost = stack.authenticate(Some(&unknown), Some("right-pw")).await;

    assert_eq!(wrong, (Some(email), false));
    assert_eq!(ghost, (Some(unknown), false));
}

#[tokio::test]
async fn authenticate_user_with_missing_or_empty_fields_is_a_plain_failure_not_an_error() {
    let stack = Stack::in_process().await;
    let email = unique_email("auth-empty");
    stack.create_user(&email, "pw", "N").await;

    assert_eq!(stack.authenticate(None, Some("pw")).await, (None, false));
    assert_eq!(
        stack.authenticate(Some(&email), None).await,
        (Some(email.clone()), false)
    );
    assert_eq!(
        stack.authenticate(Some(&email), Some("")).await,
        (Some(email), false)
    );
    assert_eq!(
        stack.authenticate(Some(""), Some("pw")).await,
        (Some(String::new()), false)
    );
}

#[tokio::test]
async fn check_user_exists_reports_known_and_unknown_users() {
    let stack = Stack::in_process().await;
    let email = unique_email("exists");
    stack.create_user(&email, "pw", "N").await;

    assert!(stack.user_exists(Some(&email)).await);
    assert!(!stack.user_exists(Some(&unique_email("nobody"))).await);
}

#[tokio::test]
async fn check_user_exists_with_a_missing_empty_or_malformed_email_answers_false() {
    let stack = Stack::in_process().await;

    for email in [None, Some(""), Some("not-an-email")] {
        assert!(!stack.user_exists(email).await, "{email:?}");
    }
}

#[tokio::test]
async fn list_users_returns_every_user_with_name_and_email_and_never_a_password() {
    let stack = Stack::in_process().await;
    let (a, b) = (unique_email("list-a"), unique_email("list-b"));
    stack.create_user(&a, "pw-a", "Alice").await;
    stack.create_user(&b, "pw-b", "Bob").await;

    let users = stack.list_users().await;

    let listed: Vec<(Option<String>, Option<String>)> = users
        .iter()
        .map(|user| (user.name.clone(), user.email.clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (Some("Alice".into()), Some(a)),
            (Some("Bob".into()), Some(b))
        ]
    );
    assert!(users.iter().all(|user| user.password.is_none()));
}

#[tokio::test]
async fn list_users_pages_through_thousands_of_users_and_ignores_other_keys() {
    let stack = Stack::in_process().await;
    let mut db0 = stack.redis.db(0).await;
    let mut pipeline = redis::pipe();
    for i in 0..2500 {
        let email = format!("bulk-{i:04}@example.com");
        let user =
            json!({ "name": format!("User {i}"), "email": email, "password": "$argon2id$x" });
        pipeline.set(user_key(&email), user.to_string()).ignore();
    }
    pipeline.set("unrelated", "x").ignore();
    let () = pipeline.query_async(&mut db0).await.expect("arrange users");

    let users = stack.list_users().await;

    assert_eq!(users.len(), 2500);
    assert_eq!(users[0].email.as_deref(), Some("bulk-0000@example.com"));
    assert!(users.iter().all(|user| user.password.is_none()));
}

#[tokio::test]
async fn grpc_and_rest_say_redis_is_unavailable_while_it_is_down() {
    let mut stack = Stack::in_process().await;
    let mut client = stack.user_client().await;
    stack.redis.stop().await;

    let status = client
        .check_user_exists(CheckUserExistsRequest {
            email: Some(unique_email("down")),
        })
        .await
        .expect_err("Redis is down");
    let (http_status, body) = stack.create_user(&unique_email("down"), "pw", "N").await;

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("Redis"), "{}", status.message());
    assert_error(http_status, &body, 503);
}

#[tokio::test]
async fn reflection_lists_the_user_service() {
    let stack = Stack::in_process().await;
    let mut reflection = ServerReflectionClient::new(Stack::channel(stack.user_ports.grpc).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let reply = replies
        .next()
        .await
        .expect("one reply")
        .expect("a successful reply");

    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "user_service.UserService"),
        "{names:?}"
    );
}

#[tokio::test]
async fn requests_right_after_a_redis_restart_succeed() {
    let mut stack = Stack::in_process().await;
    let email = unique_email("restart");
    stack.create_user(&email, "pw", "N").await;
    let mut client = stack.user_client().await;

    stack.redis.restart().await;
    let known = client
        .check_user_exists(CheckUserExistsRequest {
            email: Some(email.clone()),
        })
        .await
        .expect("the first call after the restart is answered")
        .into_inner()
        .exists;
    let (status, body) = stack
        .create_user(&unique_email("restart-new"), "pw", "N")
        .await;

    assert_eq!(known, Some(true));
    assert_eq!(status, 201, "{body}");
}
