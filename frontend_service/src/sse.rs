//! `GET /live`: a receiver's live feed as Server-Sent Events, for browsers (`EventSource`)
//! and `curl -N`. The same [`Watch`] as `WatchNotifications` — replay from the store, then
//! live, each notification once, in cursor order, across replicas — which also reports the
//! unread count, read-state changes and retention resets here.
//!
//! The wire format: `retry: 1000` first; each notification `id: <cursor>`,
//! `event: notification`, `data: <JSON>`; `event: unread` after the replay; `event: read` and
//! `event: deleted` after changes; `event: reset` when retention trimmed what a resuming
//! client asked for; a `: keepalive` comment every [`LiveSettings::keepalive`]. A reader whose
//! buffer stays full for [`LiveSettings::slow_reader_timeout`] has its stream ended; it
//! resumes with `Last-Event-ID` (which `EventSource` sends by itself).

use std::{convert::Infallible, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use proto::{
    frontend_service::{Notification, inbox_change::Kind},
    notification_service::notification_service_client::NotificationServiceClient,
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    auth::{Auth, Authorization, Caller},
    config::parse_duration,
    email::Email,
    grpc_client::GrpcChannel,
    http::error_response,
    openapi::{ErrorReply, describe::PROTECTED},
    request_id,
    shutdown::Shutdown,
};
use tokio::sync::mpsc;
use tracing::Instrument;
use utoipa::{IntoParams, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    lease::Lease,
    live::LiveFeed,
    watch::{Event, Item, Watch},
};

/// The paths whose replies are streams, for the HTTP server (`ServiceBuilder::http_streams`).
pub const STREAM_PATHS: &[&str] = &["/live"];

/// Events buffered per stream between the watch and the connection.
const SSE_BUFFER: usize = 64;
/// How long a browser waits before it reconnects (the `retry:` line).
const RETRY_MS: u64 = 1000;

/// The settings of `GET /live`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LiveSettings {
    /// How often a GET /live stream sends a keepalive comment (proxies close silent
    /// connections).
    #[arg(long = "live-keepalive-interval", env = "LIVE_KEEPALIVE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// How long a GET /live reader may leave its buffer full before its stream is ended (it
    /// resumes from the store with Last-Event-ID).
    #[arg(long = "live-slow-reader-timeout", env = "LIVE_SLOW_READER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub slow_reader_timeout: Duration,
}

/// What `GET /live` needs; cheap to clone.
#[derive(Clone)]
pub struct SseApi {
    pub live: LiveFeed,
    pub store: NotificationServiceClient<GrpcChannel>,
    pub auth: Auth,
    pub shutdown: Shutdown,
    pub settings: LiveSettings,
}

/// The `/live` route and its OpenAPI document.
pub fn router(api: SseApi) -> (Router, OpenApi) {
    let auth = api.auth.clone();
    let (router, doc) = OpenApiRouter::new().routes(routes!(live)).split_for_parts();
    (router.layer(auth.layer()).with_state(api), doc)
}

/// The query of `GET /live`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LiveParams {
    /// The receiver whose notifications to stream.
    email: Option<String>,
    /// Resume after this cursor (the `id` of the last notification received); the
    /// `Last-Event-ID` header wins over it. Without either: the newest 100, then live.
    after: Option<String>,
    /// The token, with protection on, where neither `Authorization: Bearer` nor the
    /// `inbox_token` cookie can carry it. Never written to a log.
    // Read by the `Authorization` extractor; declared here for the document.
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// `GET /live?email=`: the receiver's notifications as Server-Sent Events — replayed from
/// the store (after `Last-Event-ID` or `after`; without one the newest 100, oldest first),
/// then live, each once, in cursor order; `event: unread` after the replay; `event: read` /
/// `event: deleted` after changes of read state; `event: reset` before the replay when
/// retention trimmed notifications after the cursor asked for; `: keepalive` comments.
#[utoipa::path(
    get,
    path = "/live",
    tag = "live",
    params(
        LiveParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The cursor to resume after (sent by a reconnecting EventSource); wins over `after`"),
    ),
    responses(
        (status = 200, description = "The stream: `retry: 1000`, then events `notification` (with `id: <cursor>`, data `{\"cursor\", \"notification_id\", \"read\", \"receiver_email\", \"sender_email\", \"timestamp\"}`), `unread` (`{\"unread_count\"}`), `read` and `deleted` (`{\"notification_ids\", \"all\", \"unread_count\"}`), `reset` (`{\"reason\": \"retention\", \"after\", \"oldest\"}`), and `: keepalive` comments", content_type = "text/event-stream", body = String),
        (status = 400, description = "No email, a malformed one, or an `after` / `Last-Event-ID` that is not a cursor (a number)", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = "With protection on: a valid token of another user", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(receiver_email))]
async fn live(
    State(api): State<SseApi>,
    caller: Caller,
    Authorization(authorization): Authorization,
    headers: HeaderMap,
    Query(params): Query<LiveParams>,
) -> Response {
    let (receiver, after) = match parse(&headers, params) {
        Ok(parsed) => parsed,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    if let Err(err) = caller.authorize(&receiver) {
        return service_runtime::error::http_reply(&err);
    }
    let receiver = receiver.into_string();
    tracing::Span::current().record("receiver_email", receiver.as_str());
    // Subscribed before the store is read, so nothing falls between replay and live.
    let live = api.live.subscribe(&receiver);
    tracing::info!(after, "live stream attached");
    let (out, events) = mpsc::channel(SSE_BUFFER);
    let watch = Watch {
        store: api.store.clone(),
        receiver,
        out,
        report_state: true,
        patience: Some(api.settings.slow_reader_timeout),
    };
    let lease = Lease::of(&caller, &api.auth, authorization);
    let shutdown = api.shutdown.clone();
    let stream = crate::metrics::Watcher::sse();
    // The watch's future is made inside the task's: one made outside and moved in would be
    // held twice for as long as the stream lasts.
    let run = async move {
        // A refused token just ends the stream: the browser reconnects and is told 401.
        tokio::select! {
            () = watch.run(after, live, shutdown) => {}
            _ = lease.ended() => {}
        }
        drop(stream);
    };
    tokio::spawn(request_id::carry(run).in_current_span());
    let mut response = Body::from_stream(frames(events, api.settings.keepalive)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx would otherwise hold events back in its buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The receiver and the cursor to resume after, or why the request is refused.
fn parse(headers: &HeaderMap, params: LiveParams) -> Result<(Email, Option<u64>), String> {
    let email = params
        .email
        .filter(|email| !email.trim().is_empty())
        .ok_or("email is required: GET /live?email=<address>")?;
    let receiver = Email::parse(email).map_err(|err| err.to_string())?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| value.to_str().map(str::trim))
        .transpose()
        .map_err(|_| "Last-Event-ID must be a cursor (a number)")?
        .filter(|value| !value.is_empty());
    let after = match (last_event_id, params.after.as_deref().map(str::trim)) {
        (Some(id), _) => Some(
            id.parse()
                .map_err(|_| "Last-Event-ID must be a cursor (a number)")?,
        ),
        (None, Some(after)) => Some(
            after
                .parse()
                .map_err(|_| "after must be a cursor (a number)")?,
        ),
        (None, None) => None,
    };
    Ok((receiver, after))
}

/// The body: `retry:`, then each event as it comes, and a keepalive comment every
/// `keepalive`; ends with the watch.
fn frames(
    events: mpsc::Receiver<Item>,
    keepalive: Duration,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let retry = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rest = futures::stream::unfold((events, ticks), |(mut events, mut ticks)| async move {
        let frame = tokio::select! {
            item = events.recv() => match item.map(|item| *item) {
                Some(Ok(event)) => frame(&event),
                // The store failed (logged by the watch): the browser reconnects and resumes.
                Some(Err(_)) | None => return None,
            },
            _ = ticks.tick() => Bytes::from_static(b": keepalive\n\n"),
        };
        Some((Ok(frame), (events, ticks)))
    });
    futures::StreamExt::chain(futures::stream::once(async { Ok(retry) }), rest)
}

/// A notification as `data:` shows it: the fields as `ListNotifications` returns them,
/// in alphabetical order, each only when set.
#[derive(Serialize)]
struct NotificationData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receiver_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
}

impl<'a> From<&'a Notification> for NotificationData<'a> {
    fn from(notification: &'a Notification) -> Self {
        Self {
            cursor: notification.cursor,
            notification_id: notification.notification_id.as_deref(),
            read: notification.read,
            receiver_email: notification.receiver_email.as_deref(),
            sender_email: notification.sender_email.as_deref(),
            timestamp: notification.timestamp.as_deref(),
        }
    }
}

/// One event on the wire. JSON never holds a raw newline, so `data:` is one line.
fn frame(event: &Event) -> Bytes {
    let (name, id, data) = match event {
        Event::Notification(notification) => (
            "notification",
            notification.cursor,
            serde_json::to_value(NotificationData::from(notification)),
        ),
        Event::Unread(unread_count) => (
            "unread",
            None,
            Ok(serde_json::json!({ "unread_count": unread_count })),
        ),
        Event::Changed {
            change,
            unread_count,
        } => (
            if change.kind() == Kind::Deleted {
                "deleted"
            } else {
                "read"
            },
            None,
            Ok(serde_json::json!({
                "notification_ids": change.notification_ids,
                "all": change.all.unwrap_or(false),
                "unread_count": unread_count,
            })),
        ),
        Event::Reset { after, oldest } => (
            "reset",
            None,
            Ok(serde_json::json!({ "reason": "retention", "after": after, "oldest": oldest })),
        ),
    };
    let data = data.map_or_else(|_| "{}".to_owned(), |data| data.to_string());
    let id = id.map_or_else(String::new, |id| format!("id: {id}\n"));
    Bytes::from(format!("{id}event: {name}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_is_one_event_with_its_cursor_as_id() {
        let notification = Notification {
            sender_email: Some("a@b.io".into()),
            receiver_email: Some("c@d.io".into()),
            timestamp: Some("2026-01-01T00:00:00Z".into()),
            read: Some(false),
            notification_id: Some("n\n1".into()),
            cursor: Some(7),
        };
        let text = frame(&Event::Notification(notification));
        assert_eq!(
            std::str::from_utf8(&text).expect("UTF-8"),
            "id: 7\nevent: notification\ndata: {\"cursor\":7,\"notification_id\":\"n\\n1\",\"read\":false,\"receiver_email\":\"c@d.io\",\"sender_email\":\"a@b.io\",\"timestamp\":\"2026-01-01T00:00:00Z\"}\n\n"
        );
    }

    #[test]
    fn the_cursor_comes_from_last_event_id_before_after() {
        let params = |after: Option<&str>| LiveParams {
            email: Some("a@b.io".into()),
            after: after.map(str::to_owned),
            access_token: None,
        };
        let mut headers = HeaderMap::new();
        assert_eq!(parse(&headers, params(Some("5"))).expect("ok").1, Some(5));
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        assert_eq!(parse(&headers, params(Some("5"))).expect("ok").1, Some(9));
        assert!(parse(&headers, params(Some("x"))).is_ok());
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert!(parse(&headers, params(None)).is_err());
        assert!(parse(&HeaderMap::new(), params(Some("-1"))).is_err());
    }
}
