//! The seeded data every scenario reads: bench users, and one fixed user whose conversations,
//! messages and notifications are exactly [`FIXED_ITEMS`] each, whatever ran before.

use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use proto::{
    message_service::{GetMessagesRequest, Message, SendMessageRequest},
    notification_service::CreateNotificationRequest,
    user_service::CheckUserExistsRequest,
};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::clients::Clients;

/// Every seeded user's password.
pub const PASSWORD: &str = "bench-Passw0rd!";
/// The user the read scenarios read; only `setup` ever writes to or about it.
pub const FIXED_USER: &str = "bench-fixed@bench.example.com";
/// How many conversations, messages and notifications the fixed user has.
pub const FIXED_ITEMS: usize = 8;

/// The receiver whose inbox list-notifications-page reads: [`PAGE_USER_ITEMS`] notifications.
pub const PAGE_USER: &str = "bench-inbox@bench.example.com";
/// How many notifications the page user has (the default retention keeps them all).
pub const PAGE_USER_ITEMS: usize = 1000;
/// The page list-notifications-page asks for.
pub const PAGE_LIMIT: usize = 20;

/// The `i`-th bench user, the ones send-message, check-user-exists and authenticate use.
pub fn user_email(i: usize) -> String {
    format!("bench-user-{i}@bench.example.com")
}

/// The `i`-th counterpart of the fixed user; each sent it exactly one message.
fn peer_email(i: usize) -> String {
    format!("bench-peer-{i}@bench.example.com")
}

/// `{"success": ..., "conversations": [...]}` or `{"success": ..., "notifications": [...]}`.
#[derive(Debug, Deserialize)]
pub struct ListReply {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub conversations: Vec<serde_json::Value>,
    #[serde(default)]
    pub notifications: Vec<serde_json::Value>,
}

/// Creates what is missing, leaves what exists.
pub async fn setup(clients: &Clients, users: usize) -> anyhow::Result<()> {
    let mut emails: Vec<String> = (0..users).map(user_email).collect();
    emails.push(FIXED_USER.to_owned());
    emails.extend((0..FIXED_ITEMS).map(peer_email));
    let created = create_users(clients, emails).await?;
    eprintln!(
        "setup: {created} users created, {} already there",
        users + FIXED_ITEMS + 1 - created
    );

    let conversations = list(clients, &clients.message_http, "list_conversations").await?;
    let have: HashSet<String> = conversations
        .conversations
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut sent = 0;
    for peer in (0..FIXED_ITEMS).map(peer_email) {
        if have.contains(&peer) {
            continue;
        }
        let reply = clients
            .message(0)
            .send_message(SendMessageRequest {
                message: Some(Message {
                    sender_email: Some(peer.clone()),
                    receiver_email: Some(FIXED_USER.to_owned()),
                    content: Some(format!("seed message from {peer}")),
                    ..Message::default()
                }),
                idempotency_key: None,
            })
            .await
            .with_context(|| format!("SendMessage {peer} -> {FIXED_USER}"))?
            .into_inner();
        if reply.success != Some(true) {
            bail!(
                "SendMessage {peer} -> {FIXED_USER} failed: {:?}",
                reply.message
            );
        }
        sent += 1;
    }
    eprintln!("setup: {sent} seed messages sent");
    seed_inbox(clients).await?;
    verify(clients).await
}

/// Gives [`PAGE_USER`] its notifications through `CreateNotification`; fixed ids make a
/// repeated setup a no-op.
async fn seed_inbox(clients: &Clients) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let mut notifications = clients.notification(worker);
        tasks.spawn(async move {
            for n in (worker..PAGE_USER_ITEMS).step_by(8) {
                let reply = notifications
                    .create_notification(CreateNotificationRequest {
                        sender_email: Some(FIXED_USER.to_owned()),
                        receiver_email: Some(PAGE_USER.to_owned()),
                        notification_id: Some(format!("bench-seed-{n}")),
                    })
                    .await
                    .context("CreateNotification for the page user")?;
                if reply.into_inner().success != Some(true) {
                    bail!("CreateNotification for {PAGE_USER} refused");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    eprintln!("setup: {PAGE_USER} has {PAGE_USER_ITEMS} notifications");
    Ok(())
}

/// Waits for the notifications to arrive (they may be delivered asynchronously), then checks
/// that the fixed user has exactly `FIXED_ITEMS` of everything.
async fn verify(clients: &Clients) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let notifications = loop {
        let reply = list(clients, &clients.notification_http, "list_notifications").await?;
        if reply.notifications.len() >= FIXED_ITEMS || tokio::time::Instant::now() > deadline {
            break reply.notifications.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let conversations = list(clients, &clients.message_http, "list_conversations")
        .await?
        .conversations
        .len();
    let messages = clients
        .message(0)
        .get_messages(GetMessagesRequest {
            user_email: Some(FIXED_USER.to_owned()),
            ..GetMessagesRequest::default()
        })
        .await
        .context("GetMessages of the fixed user")?
        .into_inner()
        .messages
        .len();
    eprintln!(
        "setup: {FIXED_USER} has {conversations} conversations, {messages} messages, \
         {notifications} notifications (want {FIXED_ITEMS} each)"
    );
    if [conversations, messages, notifications]
        .iter()
        .any(|&n| n != FIXED_ITEMS)
    {
        bail!("the fixed seed data is not as expected; start from an empty Redis");
    }
    Ok(())
}

async fn list(clients: &Clients, base: &str, path: &str) -> anyhow::Result<ListReply> {
    let response = clients
        .http
        .get(format!("{base}/{path}?email={FIXED_USER}"))
        .send()
        .await
        .with_context(|| format!("GET /{path}"))?;
    let status = response.status();
    if status != StatusCode::OK {
        bail!("GET /{path}: {status}");
    }
    let reply: ListReply = response
        .json()
        .await
        .with_context(|| format!("GET /{path} body"))?;
    if !reply.success {
        bail!("GET /{path}: success=false");
    }
    Ok(reply)
}

/// Creates the missing users, a few at a time (each costs an argon2 hash); returns how many.
async fn create_users(clients: &Clients, emails: Vec<String>) -> anyhow::Result<usize> {
    let permits = Arc::new(Semaphore::new(4));
    let mut tasks = JoinSet::new();
    for email in emails {
        let permits = permits.clone();
        let mut user = clients.user(tasks.len());
        let http = clients.http.clone();
        let url = format!("{}/users", clients.user_http);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let exists = user
                .check_user_exists(CheckUserExistsRequest {
                    email: Some(email.clone()),
                })
                .await
                .with_context(|| format!("CheckUserExists {email}"))?
                .into_inner()
                .exists
                == Some(true);
            if exists {
                return Ok(false);
            }
            let response = http
                .post(&url)
                .json(&serde_json::json!({ "email": email, "password": PASSWORD, "name": "Bench" }))
                .send()
                .await
                .with_context(|| format!("POST /users {email}"))?;
            match response.status() {
                StatusCode::CREATED => Ok(true),
                status => {
                    let body = response.text().await.unwrap_or_default();
                    // Created by a concurrent setup in the meantime.
                    if status == StatusCode::BAD_REQUEST && body.contains("exists") {
                        Ok(false)
                    } else {
                        bail!("POST /users {email}: {status} {body}")
                    }
                }
            }
        });
    }
    let mut created = 0;
    while let Some(outcome) = tasks.join_next().await {
        if outcome?? {
            created += 1;
        }
    }
    Ok(created)
}
