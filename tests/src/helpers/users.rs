//! user-service: accounts over HTTP, `UserService` over gRPC, and the stored user records.

use proto::user_service::{AuthenticateRequest, CheckUserExistsRequest, User};
use redis::AsyncCommands;
use serde_json::{Value, json};

use user_service::keys::user_key;

use super::{eventually, reply, unique_email};
use crate::Stack;

/// Path form of an address: `/users/{email}` with the address percent-encoded.
fn user_path(email: &str) -> String {
    format!("/users/{}", email.replace('+', "%2B").replace('@', "%40"))
}

impl<S> Stack<S> {
    /// `POST /users` with `{email, password, name}` as JSON; the status and JSON reply.
    pub async fn create_user(&self, email: &str, password: &str, name: &str) -> (u16, Value) {
        let body = json!({ "email": email, "password": password, "name": name });
        self.post_users("application/json", body.to_string()).await
    }

    /// `POST /users` with any body and content type, for incomplete or malformed input.
    pub async fn post_users(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .http()
            .post(self.user_url("/users"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /users");
        reply(response).await
    }

    /// `PUT /users/email` with `body` (`{"email": …, "data": {…}}`).
    pub async fn put_user_by_body(&self, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::PUT, "/users/email", Some(body))
            .await
    }

    /// `PUT /users/{email}` with `body` (the fields to change).
    pub async fn put_user_by_path(&self, email: &str, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::PUT, &user_path(email), Some(body))
            .await
    }

    /// `DELETE /users/email` with `body` (`{"email": …}`).
    pub async fn delete_user_by_body(&self, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::DELETE, "/users/email", Some(body))
            .await
    }

    /// `DELETE /users/{email}`, without a body.
    pub async fn delete_user_by_path(&self, email: &str) -> (u16, Value) {
        self.user_request(reqwest::Method::DELETE, &user_path(email), None)
            .await
    }

    async fn user_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.http().request(method, self.user_url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        reply(request.send().await.expect("HTTP request")).await
    }

    /// `CheckUserExists`, which must answer status OK.
    pub async fn user_exists(&self, email: Option<&str>) -> bool {
        self.user_client()
            .await
            .check_user_exists(CheckUserExistsRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("CheckUserExists answers OK")
            .into_inner()
            .exists
            .expect("exists is always set")
    }

    /// `AuthenticateUser`, which must answer status OK: the echoed email and `success`.
    pub async fn authenticate(
        &self,
        email: Option<&str>,
        password: Option<&str>,
    ) -> (Option<String>, bool) {
        let reply = self
            .user_client()
            .await
            .authenticate_user(AuthenticateRequest {
                email: email.map(str::to_owned),
                password: password.map(str::to_owned),
            })
            .await
            .expect("AuthenticateUser answers OK")
            .into_inner();
        (reply.email, reply.success.expect("success is always set"))
    }

    /// `ListUsers`, which must answer status OK.
    pub async fn list_users(&self) -> Vec<User> {
        self.user_client()
            .await
            .list_users(())
            .await
            .expect("ListUsers")
            .into_inner()
            .users
    }

    /// A user created through `POST /users`, once notification-service has them subscribed
    /// (user-service subscribes new users through its own outbox, so shortly after).
    pub async fn registered_user(&self, prefix: &str) -> String {
        let email = unique_email(prefix);
        let (status, body) = self.create_user(&email, "pw-123456", prefix).await;
        assert_eq!(status, 201, "POST /users: {body}");
        eventually(&format!("{email} to be subscribed"), || async {
            self.is_subscribed(&email).await.then_some(())
        })
        .await;
        email
    }

    /// The user record of `email` in DB 0 ([`user_key`]), parsed, or `None` when absent.
    pub async fn stored_user(&self, email: &str) -> Option<Value> {
        let raw: Option<String> = self
            .redis
            .db(0)
            .await
            .get(user_key(email))
            .await
            .expect("GET the user");
        raw.map(|raw| serde_json::from_str(&raw).expect("stored user is JSON"))
    }
}
