//! frontend-service's web inbox API (`/api/...` on its HTTP port).

use serde_json::{Value, json};

use super::{reply, with_bearer};
use crate::Stack;

impl<S> Stack<S> {
    /// A URL of the web inbox (frontend-service's HTTP port).
    pub fn page_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.frontend_metrics_port)
    }

    /// `method path` on the page API with a JSON `body` and a `Cookie` header, if given.
    pub async fn page_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        cookie: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.http().request(method, self.page_url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        reply(request.send().await.expect("page API request")).await
    }

    /// `POST /api/signup`.
    pub async fn page_sign_up(&self, email: &str, password: &str, name: &str) -> (u16, Value) {
        let body = json!({ "email": email, "password": password, "name": name });
        reply(
            self.http()
                .post(self.page_url("/api/signup"))
                .json(&body)
                .send()
                .await
                .expect("POST /api/signup"),
        )
        .await
    }

    /// `POST /api/session`: the status, the reply and the `Set-Cookie` header, if any.
    pub async fn page_sign_in(&self, email: &str, password: &str) -> (u16, Value, Option<String>) {
        let response = self
            .http()
            .post(self.page_url("/api/session"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("POST /api/session");
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (status, body) = reply(response).await;
        (status, body, cookie)
    }

    /// `SendMessage` over gRPC with `token` (protected stacks) or without (open ones), which
    /// must succeed.
    pub async fn send_as(&self, sender: &str, receiver: &str, content: &str, token: Option<&str>) {
        let request = super::message(Some(sender), Some(receiver), Some(content));
        let reply = self
            .message_client()
            .await
            .send_message(with_bearer(request, token))
            .await
            .expect("SendMessage answers OK")
            .into_inner();
        assert_eq!(reply.success, Some(true), "{reply:?}");
    }
}
