//! gRPC-Web as a browser speaks it, built by hand: an HTTP/1.1 `POST` whose body is one gRPC
//! message frame (a flag byte, a 4-byte big-endian length, the protobuf bytes), in binary
//! (`application/grpc-web+proto`) or base64 (`application/grpc-web-text`); the reply is data
//! frames (flag 0x00) then one trailer frame (flag 0x80, `name: value` lines), or — for a call
//! refused before any message — no body and the status in the reply's headers.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use prost::Message;
use proto::frontend_service::WatchNotificationsRequest;

use super::PATIENCE;
use crate::Stack;

/// The flag byte of a grpc-web trailer frame.
const TRAILER_FLAG: u8 = 0x80;

/// How a grpc-web body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebEncoding {
    /// `application/grpc-web+proto`: frames as bytes.
    Binary,
    /// `application/grpc-web-text`: frames in base64.
    Text,
}

impl WebEncoding {
    fn content_type(self) -> &'static str {
        match self {
            Self::Binary => "application/grpc-web+proto",
            Self::Text => "application/grpc-web-text",
        }
    }
}

/// One uncompressed message frame holding `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a small message");
    let mut framed = vec![0];
    framed.extend(length.to_be_bytes());
    framed.extend(payload);
    framed
}

/// What a grpc-web reply body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebFrame {
    Message(Vec<u8>),
    /// The trailers, names lowercased.
    Trailers(Vec<(String, String)>),
}

/// Splits a reply body into frames as its bytes arrive (in base64 for the text encoding,
/// where each chunk the server wrote is encoded on its own, so decoding goes by 4-character
/// groups).
#[derive(Debug)]
struct FrameReader {
    encoding: WebEncoding,
    text: Vec<u8>,
    bytes: Vec<u8>,
}

impl FrameReader {
    fn new(encoding: WebEncoding) -> Self {
        Self {
            encoding,
            text: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        match self.encoding {
            WebEncoding::Binary => self.bytes.extend_from_slice(chunk),
            WebEncoding::Text => {
                self.text.extend_from_slice(chunk);
                let whole = self.text.len() - self.text.len() % 4;
                for group in self.text[..whole].chunks(4) {
                    let decoded = STANDARD.decode(group).expect("the reply is base64");
                    self.bytes.extend(decoded);
                }
                self.text.drain(..whole);
            }
        }
    }

    fn next_frame(&mut self) -> Option<WebFrame> {
        let header = self.bytes.get(..5)?;
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let flag = header[0];
        if self.bytes.len() < 5 + length {
            return None;
        }
        let payload: Vec<u8> = self.bytes.drain(..5 + length).skip(5).collect();
        Some(match flag {
            0 => WebFrame::Message(payload),
            TRAILER_FLAG => WebFrame::Trailers(parse_trailers(&payload)),
            other => panic!("unexpected grpc-web frame flag {other:#x}"),
        })
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.bytes.is_empty()
    }
}

fn parse_trailers(block: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(block)
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a `name: value` trailer");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

/// A grpc-web call's reply, as it arrives.
pub struct WebReply {
    pub response: reqwest::Response,
    reader: FrameReader,
}

impl WebReply {
    /// The HTTP status of the reply (200 for every gRPC status: the call's own is in
    /// [`WebReply::grpc_status`]).
    pub fn http_status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// The reply header `name`, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .map(|value| value.to_str().expect("an ASCII header").to_owned())
    }

    /// The next frame, `None` once the body has ended (fails after [`PATIENCE`]).
    pub async fn next_frame(&mut self) -> Option<WebFrame> {
        loop {
            if let Some(frame) = self.reader.next_frame() {
                return Some(frame);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the next grpc-web frame in time")
                .expect("read the grpc-web body");
            match chunk {
                Some(chunk) => self.reader.push(&chunk),
                None => {
                    assert!(self.reader.is_empty(), "a grpc-web body cut mid-frame");
                    return None;
                }
            }
        }
    }

    /// The next `count` messages, decoded as `M`; the body must not end before.
    pub async fn next_messages<M: Message + Default>(&mut self, count: usize) -> Vec<M> {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            match self.next_frame().await {
                Some(WebFrame::Message(bytes)) => {
                    messages.push(M::decode(bytes.as_slice()).expect("a message of the RPC"));
                }
                other => panic!("expected a message, got {other:?}"),
            }
        }
        messages
    }

    /// Reads the rest of the reply: its messages, then its status and message from the
    /// trailer frame or, for a reply refused before any message, from the headers.
    pub async fn finish<M: Message + Default>(mut self) -> Finished<M> {
        let mut messages = Vec::new();
        let mut trailers = None;
        while let Some(frame) = self.next_frame().await {
            match frame {
                WebFrame::Message(bytes) if trailers.is_none() => {
                    messages.push(M::decode(bytes.as_slice()).expect("a message of the RPC"));
                }
                WebFrame::Trailers(found) if trailers.is_none() => trailers = Some(found),
                other => panic!("a frame after the trailers: {other:?}"),
            }
        }
        let trailers = trailers.unwrap_or_else(|| {
            ["grpc-status", "grpc-message"]
                .into_iter()
                .filter_map(|name| Some((name.to_owned(), self.header(name)?)))
                .collect()
        });
        let value = |name: &str| {
            trailers
                .iter()
                .find(|(found, _)| found == name)
                .map(|(_, value)| value.clone())
        };
        Finished {
            messages,
            code: value("grpc-status")
                .map(|code| code.parse().expect("a numeric grpc-status"))
                .map(tonic::Code::from_i32)
                .expect("a grpc-status in the trailers or the headers"),
            message: value("grpc-message").unwrap_or_default(),
        }
    }
}

/// A whole grpc-web reply.
#[derive(Debug)]
pub struct Finished<M> {
    pub messages: Vec<M>,
    pub code: tonic::Code,
    /// `grpc-message`, still percent-encoded as sent.
    pub message: String,
}

impl<S> Stack<S> {
    /// A grpc-web `POST` of `body` (already framed, see [`frame`]) to `path` (the full method,
    /// `/package.Service/Method`) on the gRPC `port`, over HTTP/1.1, with `headers` added.
    pub async fn grpc_web_raw(
        &self,
        port: u16,
        path: &str,
        encoding: WebEncoding,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> WebReply {
        let body = match encoding {
            WebEncoding::Binary => body,
            WebEncoding::Text => STANDARD.encode(body).into_bytes(),
        };
        let mut request = self
            .http()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", encoding.content_type())
            // What the reply is encoded in (tonic-web reads `accept`, as grpc-web clients set it).
            .header("accept", encoding.content_type())
            .header("x-grpc-web", "1")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("a grpc-web POST");
        assert_eq!(
            response.version(),
            reqwest::Version::HTTP_11,
            "grpc-web over HTTP/1.1"
        );
        WebReply {
            response,
            reader: FrameReader::new(encoding),
        }
    }

    /// A grpc-web call of `path` with `message`, binary-encoded.
    pub async fn grpc_web(&self, port: u16, path: &str, message: &impl Message) -> WebReply {
        self.grpc_web_raw(
            port,
            path,
            WebEncoding::Binary,
            frame(&message.encode_to_vec()),
            &[],
        )
        .await
    }

    /// `WatchNotifications` of `email` (after `after`) over grpc-web, with `token` if any.
    pub async fn grpc_web_watch(
        &self,
        email: &str,
        after: Option<u64>,
        encoding: WebEncoding,
        token: Option<&str>,
    ) -> WebReply {
        let request = WatchNotificationsRequest {
            email: Some(email.to_owned()),
            after,
        };
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|value| ("authorization", value))
            .into_iter()
            .collect();
        self.grpc_web_raw(
            self.frontend_port,
            "/frontend_service.FrontendService/WatchNotifications",
            encoding,
            frame(&request.encode_to_vec()),
            &headers,
        )
        .await
    }
}
