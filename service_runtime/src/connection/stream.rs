//! Long-lived HTTP/1 replies (`GET /live`) served without hyper.
//!
//! hyper gives every HTTP/1 connection an 8 KiB read buffer and an 8 KiB write buffer for as
//! long as it lasts (no setting goes below that), which was most of what an idle
//! Server-Sent Events stream held (docs/performance.md). A connection whose first request is
//! a bodiless HTTP/1 `GET` of one of the server's stream paths, its whole head already in
//! the socket, is answered here instead: the head is parsed with httparse, the request goes
//! through the same router (every layer, from the request log to CORS), and the reply is
//! written as it comes — chunked (to HTTP/1.0: ended by the close), with
//! `Connection: close`, so no further request is read.
//! Anything else (another path or method, a body, a head split over segments, more than
//! [`MAX_HEADERS`] headers, a malformed head) is left in the socket for hyper, which answers
//! it as it answers every other request.

use std::{io, net::SocketAddr, pin::pin, time::SystemTime};

use axum::{
    Router,
    body::{Body, HttpBody},
    http::{self, HeaderName, HeaderValue, Method, Request, StatusCode, Version, header},
};
use http_body_util::BodyExt;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use tower::ServiceExt;

/// Headers a stream request may carry; one with more is left to hyper (which refuses over
/// 100).
const MAX_HEADERS: usize = 48;
/// The longest request head looked at; a longer one is left to hyper.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Paths whose HTTP/1 `GET`s are answered by [`answer`]: replies that stay open for long.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamPaths(pub &'static [&'static str]);

impl StreamPaths {
    fn includes(self, path: &str) -> bool {
        self.0.contains(&path)
    }
}

/// The first request on `stream`, taken off the socket, if it is a stream request whose whole
/// head has arrived; otherwise `None`, and nothing was read.
pub(super) async fn take_request(
    stream: &mut TcpStream,
    paths: StreamPaths,
    peer: Option<SocketAddr>,
) -> Option<Request<Body>> {
    if paths.0.is_empty() {
        return None;
    }
    // On the heap and dropped before the reply: a connection's task keeps its largest state.
    let mut peeked = vec![0; MAX_HEAD_BYTES];
    let available = stream.peek(&mut peeked).await.ok()?;
    let (mut request, head_len) = parse(&peeked[..available], paths)?;
    // Now taken off the socket: the head only, the rest is not ours to read.
    tokio::io::AsyncReadExt::read_exact(stream, &mut peeked[..head_len])
        .await
        .ok()?;
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
    }
    Some(request)
}

/// The request in `bytes` and the length of its head, if it is a complete, bodiless
/// HTTP/1 `GET` of one of `paths`.
fn parse(bytes: &[u8], paths: StreamPaths) -> Option<(Request<Body>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(bytes).ok()? else {
        return None;
    };
    let target = parsed.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    if parsed.method? != "GET" || !paths.includes(path) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(version);
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        // A body, or a switch of protocol, is hyper's to handle.
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::EXPECT,
        ]
        .contains(&name)
        {
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    Some((request.body(Body::empty()).ok()?, head_len))
}

/// Answers `request` through `router` on `stream` and closes the connection once the reply
/// has ended or the client has gone.
pub(super) async fn answer(mut stream: TcpStream, request: Request<Body>, router: Router) {
    // Boxed: the router's future is large, and only needed until the reply starts.
    let http10 = request.version() == Version::HTTP_10;
    let Ok(reply) = Box::pin(router.oneshot(request)).await;
    let (parts, body) = reply.into_parts();
    let framing = match (parts.status, HttpBody::size_hint(&body).exact()) {
        (StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED, _) => Framing::Empty,
        (_, Some(length)) => Framing::Length(length),
        // An HTTP/1.0 client knows no chunks.
        (_, None) if http10 => Framing::Close,
        (_, None) => Framing::Chunked,
    };
    let head = reply_head(&parts, framing);
    drop(parts);
    if stream.write_all(&head).await.is_err() || framing == Framing::Empty {
        return;
    }
    drop(head);
    let chunked = framing == Framing::Chunked;
    let mut body = pin!(body);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = client_gone(&stream) => return,
        };
        let written = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) if chunked => {
                    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
                    chunk.extend_from_slice(&data);
                    chunk.extend_from_slice(b"\r\n");
                    stream.write_all(&chunk).await
                }
                Ok(data) => stream.write_all(&data).await,
                // Trailers: HTTP/1 replies here carry none.
                Err(_) => continue,
            },
            // The body failed: closed without the last chunk, so the client sees it cut short.
            Some(Err(err)) => {
                tracing::debug!(error = %err, "stream reply failed");
                return;
            }
            None => {
                if chunked {
                    let _ = stream.write_all(b"0\r\n\r\n").await;
                }
                let _ = stream.shutdown().await;
                return;
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// How a reply's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// 204 and 304 have none.
    Empty,
    Length(u64),
    Chunked,
    /// The body ends with the connection.
    Close,
}

/// The status line and headers of a reply, with `Date`, `Connection: close`, and how its
/// body ends.
fn reply_head(parts: &http::response::Parts, framing: Framing) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let status = parts.status;
    head.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if [
            header::CONNECTION,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let framing = match framing {
        Framing::Empty | Framing::Close => String::new(),
        Framing::Length(length) => format!("content-length: {length}\r\n"),
        Framing::Chunked => "transfer-encoding: chunked\r\n".to_owned(),
    };
    head.extend_from_slice(
        format!(
            "date: {}\r\nconnection: close\r\n{framing}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        )
        .as_bytes(),
    );
    head
}

/// Resolves when the client has closed its side (or the socket failed). Whatever else it
/// sends is read and dropped: the reply says the connection closes after it.
async fn client_gone(stream: &TcpStream) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut discarded = [0; 64];
        match stream.try_read(&mut discarded) {
            Ok(0) => return,
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => return,
            Ok(_) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: StreamPaths = StreamPaths(&["/live"]);

    #[test]
    fn a_bodiless_get_of_a_stream_path_is_taken_with_its_headers() {
        let bytes = b"GET /live?email=a%40b.io HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let (request, head_len) = parse(bytes, LIVE).expect("a stream request");
        assert_eq!(head_len, bytes.len());
        assert_eq!(request.uri(), "/live?email=a%40b.io");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["last-event-id"], "7");
        let (request, _) = parse(b"GET /live HTTP/1.0\r\n\r\n", LIVE).expect("HTTP/1.0");
        assert_eq!(request.version(), Version::HTTP_10);
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for bytes in [
            &b"GET /live HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /other HTTP/1.1\r\n\r\n",
            b"GET /live/x HTTP/1.1\r\n\r\n",
            b"POST /live HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET /live HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /live HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /live HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(
                parse(bytes, LIVE).is_none(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        let bytes = format!("GET /live HTTP/1.1\r\n{many}\r\n");
        assert!(parse(bytes.as_bytes(), LIVE).is_none());
        assert!(parse(b"GET /live HTTP/1.1\r\n\r\n", StreamPaths::default()).is_none());
    }

    #[test]
    fn a_reply_head_says_how_its_body_ends() {
        let reply = http::Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream")
            .header("connection", "keep-alive")
            .body(())
            .expect("reply");
        let (parts, ()) = reply.into_parts();
        let head = String::from_utf8(reply_head(&parts, Framing::Chunked)).expect("UTF-8");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(head.contains("\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"));
        assert!(!head.contains("keep-alive"));
        let head = String::from_utf8(reply_head(&parts, Framing::Length(12))).expect("UTF-8");
        assert!(head.ends_with("\r\ncontent-length: 12\r\n\r\n"));
        let head = String::from_utf8(reply_head(&parts, Framing::Close)).expect("UTF-8");
        assert!(head.ends_with("\r\nconnection: close\r\n\r\n"));
    }
}
