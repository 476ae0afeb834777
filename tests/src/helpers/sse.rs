//! frontend-service's `GET /live` (Server-Sent Events): a small parser of the event stream
//! as the SSE specification reads it (fields, comments, `retry`, blank lines dispatch),
//! over reqwest's streamed body.

use std::collections::HashSet;

use serde_json::Value;

use super::PATIENCE;
use crate::Stack;

/// One event as a browser's `EventSource` would dispatch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (`message` when there is none).
    pub event: String,
    /// `id:` of this very event, if it had one.
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|err| panic!("data is not JSON ({err}): {self:?}"))
    }

    /// The cursor of a `notification` event (its `id:`, checked to match its data).
    pub fn cursor(&self) -> u64 {
        assert_eq!(self.event, "notification", "{self:?}");
        let id: u64 = self
            .id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("a notification's id is its cursor: {self:?}"));
        assert_eq!(self.json()["cursor"].as_u64(), Some(id), "{self:?}");
        id
    }

    /// The `notification_id` of a `notification` event.
    pub fn notification_id(&self) -> String {
        self.json()["notification_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no notification_id: {self:?}"))
            .to_owned()
    }
}

/// A `GET /live` stream being read.
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
    /// Every comment line seen, without the colon.
    pub comments: Vec<String>,
    /// The last event id seen (what `EventSource` sends as `Last-Event-ID`).
    pub last_event_id: Option<String>,
    /// The fields of the event being read.
    pending: Vec<(String, String)>,
    ended: bool,
}

impl SseStream {
    /// Takes a `GET /live` reply, which must be `200 text/event-stream`.
    pub fn of(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "GET /live answered {response:?}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: Vec::new(),
            retry: None,
            comments: Vec::new(),
            last_event_id: None,
            pending: Vec::new(),
            ended: false,
        }
    }

    /// The next event; `None` once the stream ended (closed, reset or the server went away).
    /// Fails after [`PATIENCE`] without one.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(PATIENCE, self.read_event())
            .await
            .unwrap_or_else(|_| panic!("no event within {PATIENCE:?}"))
    }

    /// The next event, which must be of kind `event`.
    pub async fn expect(&mut self, event: &str) -> SseEvent {
        let next = self
            .next_event()
            .await
            .unwrap_or_else(|| panic!("the stream ended before an `{event}` event"));
        assert_eq!(next.event, event, "{next:?}");
        next
    }

    /// The next `count` events, which must all be notifications.
    pub async fn notifications(&mut self, count: usize) -> Vec<SseEvent> {
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            received.push(self.expect("notification").await);
        }
        received
    }

    /// Reads until the stream ends; every event read.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }

    /// Reads until a (new) comment `text` arrives; the events read meanwhile.
    pub async fn until_comment(&mut self, text: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let seen = self.comments.len();
        while !self.comments[seen..]
            .iter()
            .any(|comment| comment.trim() == text)
        {
            match tokio::time::timeout_at(deadline, self.read_line()).await {
                Ok(Some(line)) => {
                    if let Some(event) = self.take_line(&line) {
                        events.push(event);
                    }
                }
                Ok(None) => panic!("the stream ended before the comment {text:?}"),
                Err(_) => panic!("no comment {text:?} within {PATIENCE:?}"),
            }
        }
        events
    }

    async fn read_event(&mut self) -> Option<SseEvent> {
        loop {
            let line = self.read_line().await?;
            if let Some(event) = self.take_line(&line) {
                return Some(event);
            }
        }
    }

    /// Applies one line; the event it dispatches, if any.
    fn take_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.comments.push(comment.to_owned());
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "retry" => self.retry = value.parse().ok(),
            _ => self.pending.push((field.to_owned(), value)),
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let fields = std::mem::take(&mut self.pending);
        let mut event = SseEvent {
            event: "message".to_owned(),
            id: None,
            data: String::new(),
        };
        let mut data = Vec::new();
        for (field, value) in fields {
            match field.as_str() {
                "event" => event.event = value,
                "id" => event.id = Some(value),
                "data" => data.push(value),
                other => panic!("unknown field {other:?}"),
            }
        }
        if let Some(id) = &event.id {
            self.last_event_id = Some(id.clone());
        }
        if data.is_empty() {
            return None;
        }
        event.data = data.join("\n");
        Some(event)
    }

    /// The next line (without its end); `None` once the body ended.
    async fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8(line).expect("the stream is UTF-8");
                return Some(line.trim_end_matches(['\n', '\r']).to_owned());
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }
}

impl<S> Stack<S> {
    /// `GET /live` on the frontend-service HTTP port `port` with `query` (and `headers`), as
    /// sent: for replies that are not streams.
    pub async fn get_live_at(
        &self,
        port: u16,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http()
            .get(format!("http://127.0.0.1:{port}/live"))
            .query(query);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("GET /live")
    }

    /// `GET /live?email=` on the first frontend-service, which must stream.
    pub async fn live(&self, email: &str) -> SseStream {
        self.live_at(self.frontend_metrics_port, &[("email", email)], &[])
            .await
    }

    /// `GET /live` on `port` with `query` and `headers`, which must stream.
    pub async fn live_at(
        &self,
        port: u16,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> SseStream {
        SseStream::of(self.get_live_at(port, query, headers).await)
    }
}

impl<S> Stack<S> {
    /// Proves nothing more is streamed to `receiver` on `streams` after what the test has
    /// read: creates a marker notification and reads each stream until it arrives (see
    /// [`Stack::assert_nothing_more_streamed`]); whatever arrives before it fails the test.
    pub async fn assert_nothing_more_on(&self, streams: &mut [SseStream], receiver: &str) {
        let marker = format!("marker-{}", super::unique_email("marker"));
        assert!(
            self.create_notification(Some("marker@example.com"), Some(receiver), Some(&marker))
                .await,
            "the marker notification is created"
        );
        for stream in streams {
            let next = stream.expect("notification").await;
            assert_eq!(
                next.notification_id(),
                marker,
                "streamed after everything expected, before the marker: {next:?}"
            );
        }
    }
}

/// The cursors of `events` (all notifications), checked to be strictly ascending.
pub fn ascending_cursors(events: &[SseEvent]) -> Vec<u64> {
    let cursors: Vec<u64> = events.iter().map(SseEvent::cursor).collect();
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "not in cursor order: {cursors:?}"
    );
    cursors
}

/// The notification ids of `events`, checked to be distinct.
pub fn distinct_ids(events: &[SseEvent]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for event in events.iter().filter(|event| event.event == "notification") {
        let id = event.notification_id();
        assert!(seen.insert(id.clone()), "{id} was streamed twice");
    }
    seen
}
