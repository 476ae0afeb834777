//! gRPC connections: capped, and closed after too long a silence — except while an HTTP/1
//! reply (gRPC-Web) is under way on them: an HTTP/1 client has no pings to answer, and one
//! listening to a streamed reply (`WatchNotifications`) is silent for as long as it listens.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::http::{Request, Response, Version};
use futures::{Stream, future::BoxFuture};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};
use tonic::{
    body::Body,
    transport::server::{Connected, TcpConnectInfo},
};

use super::Acceptor;
use crate::config::GrpcLimits;

/// The connections of a gRPC server on `listener`, for tonic's `serve_with_incoming_shutdown`:
/// at most `limits.max_connections` at once, each closed after [`GrpcLimits::max_silence`]
/// without a byte from its client.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: GrpcLimits,
) -> impl Stream<Item = io::Result<GrpcConnection>> {
    let acceptor = Acceptor::new(listener, limits.max_connections);
    futures::stream::unfold(acceptor, move |acceptor| async move {
        let (stream, slot) = acceptor.accept().await;
        let connection = GrpcConnection::new(stream, slot, limits.max_silence());
        Some((Ok(connection), acceptor))
    })
}

/// An accepted gRPC connection: holds its slot of the connection cap, and fails its reads
/// (which makes the server drop it) once its client has been silent for too long while no
/// HTTP/1 reply is under way.
pub struct GrpcConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    max_silence: Duration,
    last_read: Instant,
    silence: Pin<Box<Sleep>>,
    replies: Arc<Http1Replies>,
}

impl GrpcConnection {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, max_silence: Duration) -> Self {
        let now = Instant::now();
        Self {
            stream,
            _slot: slot,
            max_silence,
            last_read: now,
            silence: Box::pin(tokio::time::sleep_until(now + max_silence)),
            replies: Arc::default(),
        }
    }

    /// When the client's silence, if it lasts, makes this connection dead.
    fn silence_due(&self, now: Instant) -> Instant {
        match self.replies.quiet_since() {
            // A client listening to a reply may stay silent: look again later.
            Quiet::No => now + self.max_silence,
            Quiet::Since(finished) => {
                finished.map_or(self.last_read, |at| at.max(self.last_read)) + self.max_silence
            }
        }
    }
}

/// What tonic puts in the extensions of each request of a [`GrpcConnection`].
#[derive(Debug, Clone)]
pub struct GrpcConnectInfo {
    tcp: TcpConnectInfo,
    replies: Arc<Http1Replies>,
}

impl Connected for GrpcConnection {
    type ConnectInfo = GrpcConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        GrpcConnectInfo {
            tcp: self.stream.connect_info(),
            replies: Arc::clone(&self.replies),
        }
    }
}

/// The HTTP/1 replies under way on one connection (HTTP/1 carries one at a time, but the count
/// does not rely on it), and when the last one finished.
#[derive(Debug, Default)]
struct Http1Replies(Mutex<(usize, Option<Instant>)>);

enum Quiet {
    No,
    /// No reply under way; the last one finished then (`None`: there was none).
    Since(Option<Instant>),
}

impl Http1Replies {
    fn quiet_since(&self) -> Quiet {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            (0, finished) => Quiet::Since(finished),
            _ => Quiet::No,
        }
    }

    fn started(self: &Arc<Self>) -> OpenReply {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 += 1;
        OpenReply(Arc::clone(self))
    }
}

/// One HTTP/1 reply under way, until its body is written (or given up) and dropped.
struct OpenReply(Arc<Http1Replies>);

impl Drop for OpenReply {
    fn drop(&mut self) {
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        state.1 = Some(Instant::now());
    }
}

/// The gRPC server's outermost layer: gives each request tonic's own `TcpConnectInfo` (so
/// `Request::remote_addr` works), and marks its connection busy while an HTTP/1 reply is
/// under way, its body included.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcConnectionLayer;

impl<S> tower::Layer<S> for GrpcConnectionLayer {
    type Service = WithConnection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithConnection { inner }
    }
}

/// See [`GrpcConnectionLayer`].
#[derive(Debug, Clone)]
pub struct WithConnection<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for WithConnection<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let info = request.extensions().get::<GrpcConnectInfo>().cloned();
        let open = info
            .as_ref()
            .and_then(|info| (request.version() < Version::HTTP_2).then(|| info.replies.started()));
        if let Some(info) = info {
            request.extensions_mut().insert(info.tcp);
        }
        let reply = self.inner.call(request);
        Box::pin(async move {
            let reply = reply.await?;
            Ok(match open {
                Some(open) => reply.map(|body| Body::new(Marked { body, _open: open })),
                None => reply,
            })
        })
    }
}

/// A reply body that keeps its [`OpenReply`] until it is dropped.
struct Marked {
    body: Body,
    _open: OpenReply,
}

impl HttpBody for Marked {
    type Data = axum::body::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl AsyncRead for GrpcConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let filled = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => {}
            ready => {
                if buf.filled().len() > filled {
                    // Only noted here; the timer is moved when it fires (below), not per read.
                    this.last_read = Instant::now();
                }
                return ready;
            }
        }
        while this.silence.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = this.silence_due(now);
            if due <= now {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "gRPC client silent for too long",
                )));
            }
            this.silence.as_mut().reset(due);
        }
        Poll::Pending
    }
}

write_through!(GrpcConnection);
