//! Security: login, tokens, the internal credential.

use proto::message_service::{GetMessagesRequest, Message};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::{reply, unique_email};
use crate::Stack;

/// An `AUTH_SECRET` for protected stacks (48 bytes).
pub const AUTH_SECRET: &str = "integration-tests-secret-0123456789-abcdefghijkl";

/// The environment that turns protection on, plus `extra`.
pub fn protected_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    std::iter::once(("AUTH_SECRET", AUTH_SECRET))
        .chain(extra.iter().copied())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The keys the services derive from `secret` (for tokens the services did not issue).
pub fn keys_of(secret: &str) -> service_runtime::auth::TokenKeys {
    let config = service_runtime::auth::AuthConfig::protected(
        secret.as_bytes(),
        service_runtime::auth::DEFAULT_TOKEN_TTL,
    )
    .expect("a long enough secret");
    service_runtime::auth::TokenKeys::new(&config)
}

/// `message` as a gRPC request carrying `authorization: Bearer <token>` when there is a token.
pub fn with_bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("an ASCII token"),
        );
    }
    request
}

/// `message` as a gRPC request carrying the internal credential derived from `secret`.
pub fn with_internal_credential<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    keys_of(secret).internal_credential().attach(&mut request);
    request
}

/// `request` with `Authorization: Bearer <token>` when there is a token.
pub fn bearer_header(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

impl<S> Stack<S> {
    /// A client of user-service's additive `TokenService` (`ValidateToken`).
    pub async fn token_client(
        &self,
    ) -> proto::user_service::token_service_client::TokenServiceClient<Channel> {
        proto::user_service::token_service_client::TokenServiceClient::new(
            crate::stack::channel(self.user_ports.grpc).await,
        )
    }

    /// `POST /login`: the status, the JSON reply and the `Retry-After` header, if any.
    pub async fn login(&self, email: &str, password: &str) -> (u16, Value, Option<u64>) {
        let response = self
            .http()
            .post(self.user_url("/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("POST /login");
        let retry_after = response.headers().get("retry-after").map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|seconds| seconds.parse().ok())
                .expect("Retry-After is a number of seconds")
        });
        let (status, body) = reply(response).await;
        (status, body, retry_after)
    }

    /// A token of `email`, from a `POST /login` that must succeed.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let (status, body, _) = self.login(email, password).await;
        assert_eq!(status, 200, "POST /login: {body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// `GetMessages` of `email` with `token`, which must answer status OK.
    pub async fn messages_of_as(&self, email: &str, token: &str) -> Vec<Message> {
        let request = GetMessagesRequest {
            user_email: Some(email.to_owned()),
            ..GetMessagesRequest::default()
        };
        self.message_client()
            .await
            .get_messages(with_bearer(request, Some(token)))
            .await
            .expect("GetMessages answers OK")
            .into_inner()
            .messages
    }

    /// A user created through `POST /users` with `password`, once subscribed (protected stacks
    /// need a password the policy accepts; see [`Stack::registered_user`]).
    pub async fn registered_user_with(&self, prefix: &str, password: &str) -> String {
        let email = unique_email(prefix);
        let (status, body) = self.create_user(&email, password, prefix).await;
        assert_eq!(status, 201, "POST /users: {body}");
        self.wait_for_subscription(&email).await;
        email
    }
}
