//! Accepting and keeping connections within limits, so that slow, idle or numerous clients
//! cannot hold a server's descriptors or tasks forever.
//!
//! - Each server holds at most `max_connections` connections; the rest wait in the kernel's
//!   accept queue, where they cost this process no descriptor, until one closes.
//! - An HTTP connection is closed when it waits for its next request longer than the idle
//!   timeout, or takes longer than the header read timeout to send a header it has started.
//!   (hyper's own `header_read_timeout` starts counting as soon as the connection waits for a
//!   request, so it cannot tell an idle keep-alive connection from a dawdling client; the two
//!   deadlines are kept here instead.) A request under way has no connection deadline: the
//!   request timeout (`crate::http`) bounds it.
//! - A gRPC connection that sends nothing for longer than the keep-alive interval plus the
//!   ping timeout is closed: a live HTTP/2 client answers the server's pings, so silence that
//!   long means a dead peer or one that never started talking HTTP/2 (hyper's pings only
//!   start once the HTTP/2 preface has arrived).

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use futures::Stream;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::ServiceExt;

use crate::{
    config::{GrpcLimits, HttpLimits},
    shutdown::Shutdown,
};

/// Descriptors kept free of connections, for Redis, outbound gRPC channels and the like.
const RESERVED_DESCRIPTORS: u64 = 128;
/// Pause after an accept error that is not about one connection (e.g. out of descriptors),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Raises this process's soft limit on open descriptors to its hard limit (the soft one is
/// often 1024 while the hard one is far higher) and returns the limit now in force, or
/// `None` where it cannot be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise the open-descriptor limit");
            None
        }
    }
}

/// `wanted` connections per server, or fewer if `servers` servers holding that many would
/// leave less than [`RESERVED_DESCRIPTORS`] of `descriptors` for everything else; at least 1.
pub fn connections_within(descriptors: u64, servers: u64, wanted: usize) -> usize {
    let per_server = descriptors.saturating_sub(RESERVED_DESCRIPTORS) / servers.max(1);
    usize::try_from(per_server)
        .unwrap_or(usize::MAX)
        .clamp(1, wanted.max(1))
}

/// A listener that holds at most `max_connections` accepted connections at once.
struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Acceptor {
    fn new(listener: TcpListener, max_connections: usize) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// Waits for a free slot, then for a connection; the slot is free again when the returned
    /// permit drops.
    async fn accept(&self) -> (TcpStream, OwnedSemaphorePermit) {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    // Replies are small and written whole: send them at once.
                    let _ = stream.set_nodelay(true);
                    return (stream, slot);
                }
                // That one connection went away before it was accepted: take the next.
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Serves `router` on `listener` within `limits` until `shutdown`, then lets every open
/// connection finish its current request and waits for them all to close.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
) -> io::Result<()> {
    let acceptor = Acceptor::new(listener, limits.max_connections);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Both header deadlines are kept by `ConnectionActivity` (see the module's note).
    builder.http1().header_read_timeout(None);
    // Aborted with this task if draining takes too long: no connection outlives the server.
    let mut connections = JoinSet::new();
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next() => {}
            (stream, slot) = acceptor.accept() => {
                let connection = serve_http_connection(
                    builder.clone(), stream, router.clone(), limits, shutdown.clone(),
                );
                connections.spawn(async move {
                    connection.await;
                    drop(slot);
                });
            }
        }
    }
    drop(acceptor);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_http_connection(
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
) {
    let activity = Arc::new(ConnectionActivity::new());
    // Handlers may ask who is calling (the per-address login limit: `auth::ClientAddr`).
    let peer = stream.peer_addr().ok();
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            if let Some(peer) = peer {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
            }
            let answering = activity.request_started();
            let reply = router.clone().oneshot(request);
            async move {
                let reply = reply.await;
                drop(answering);
                reply
            }
        })
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let deadline = activity.deadline_passed(limits);
    tokio::pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "HTTP connection ended with an error");
                }
                return;
            }
            () = &mut stop, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            passed = &mut deadline, if !closing => match passed {
                // Closes at once when no request is under way; otherwise after its reply.
                Deadline::Idle => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                // A half-sent header has no reply to wait for.
                Deadline::HeaderRead => {
                    tracing::debug!("HTTP client too slow sending a request header; disconnected");
                    return;
                }
            },
        }
    }
}

/// What an HTTP connection is doing, as far as its deadlines are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request since `since` (accepted, or the last reply was ready then).
    Idle { since: Instant },
    /// The first bytes of a request arrived at `since`; its header is not complete yet.
    ReadingHeader { since: Instant },
    /// `requests` requests are being answered (more than one only over HTTP/2).
    Answering { requests: usize },
}

/// Which connection deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Idle,
    HeaderRead,
}

/// The [`Phase`] of one HTTP connection, moved on by its socket (bytes arriving) and its
/// service (requests starting and finishing), and watched by its deadline.
struct ConnectionActivity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnectionActivity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        let updated = next(*phase);
        if updated != *phase {
            *phase = updated;
            // A stored permit if the watcher is not waiting right now: no change is missed.
            self.changed.notify_one();
        }
    }

    fn bytes_arrived(&self) {
        self.update(|phase| match phase {
            Phase::Idle { .. } => Phase::ReadingHeader {
                since: Instant::now(),
            },
            other => other,
        });
    }

    /// Marks a request under way until the returned guard drops.
    fn request_started(self: &Arc<Self>) -> Answering {
        self.update(|phase| match phase {
            Phase::Answering { requests } => Phase::Answering {
                requests: requests + 1,
            },
            _ => Phase::Answering { requests: 1 },
        });
        Answering(Arc::clone(self))
    }

    /// Resolves once the connection has been idle, or reading a header, for too long.
    async fn deadline_passed(&self, limits: HttpLimits) -> Deadline {
        loop {
            let phase = self.phase();
            let due = match phase {
                Phase::Idle { since } => Some((since + limits.idle_timeout, Deadline::Idle)),
                Phase::ReadingHeader { since } => {
                    Some((since + limits.header_read_timeout, Deadline::HeaderRead))
                }
                Phase::Answering { .. } => None,
            };
            match due {
                Some((at, deadline)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {
                        // The phase may have moved on just as the deadline passed.
                        if self.phase() == phase {
                            return deadline;
                        }
                    }
                    () = self.changed.notified() => {}
                },
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request under way on its connection; dropped when its reply is ready (or it was given
/// up), which makes the connection idle again if it was the last one.
struct Answering(Arc<ConnectionActivity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Answering { requests } if requests > 1 => Phase::Answering {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }
}

/// An HTTP connection's socket, telling its [`ConnectionActivity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<ConnectionActivity>,
}

/// `AsyncWrite` for a wrapper that only watches reads: every write goes straight to its
/// `stream`.
macro_rules! write_through {
    ($wrapper:ty) => {
        impl AsyncWrite for $wrapper {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.stream.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.stream).poll_shutdown(cx)
            }
        }
    };
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > filled {
            self.activity.bytes_arrived();
        }
        read
    }
}

write_through!(Watched);

// ---------------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------------

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
/// (which makes the server drop it) once its client has been silent for too long.
pub struct GrpcConnection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    max_silence: Duration,
    last_read: Instant,
    silence: Pin<Box<Sleep>>,
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
        }
    }
}

impl Connected for GrpcConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
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
            let due = this.last_read + this.max_silence;
            if due <= Instant::now() {
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

#[cfg(test)]
mod tests {
    use super::connections_within;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(connections_within(1_048_576, 2, 1024), 1024);
        assert_eq!(connections_within(1024, 2, 1024), (1024 - 128) / 2);
        assert_eq!(connections_within(1024, 1, 1024), 1024 - 128);
        assert_eq!(connections_within(64, 2, 1024), 1);
    }
}
