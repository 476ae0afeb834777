//! HTTP connections: idle and header-read deadlines kept per connection, graceful drain.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinSet,
    time::Instant,
};
use tower::ServiceExt;

use super::{
    Acceptor,
    stream::{self, StreamPaths},
};
use crate::{config::HttpLimits, shutdown::Shutdown};

/// Serves `router` on `listener` within `limits` until `shutdown`, then lets every open
/// connection finish its current request and waits for them all to close. HTTP/1 `GET`s of
/// `streams` are answered without hyper (`stream.rs`).
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    streams: StreamPaths,
    shutdown: Shutdown,
) -> io::Result<()> {
    let acceptor = Acceptor::new(listener, limits.max_connections);
    let protocols = Arc::new(Protocols::new());
    // Aborted with this task if draining takes too long: no connection outlives the server.
    let mut connections = JoinSet::new();
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next() => {}
            (stream, slot) = acceptor.accept() => {
                let (protocols, router, shutdown) =
                    (Arc::clone(&protocols), router.clone(), shutdown.clone());
                // The connection's future is made inside the task's: one made outside and
                // moved in would be held twice for as long as the connection lasts.
                connections.spawn(async move {
                    let connection = Connection { protocols, router, limits, streams };
                    serve_http_connection(connection, stream, shutdown).await;
                    drop(slot);
                });
            }
        }
    }
    drop(acceptor);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The first bytes of every HTTP/2 connection without TLS (prior knowledge).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a server's connections are served, one builder per way.
struct Protocols {
    /// A client whose first bytes are not HTTP/2's preface: every browser and `curl`.
    http1: http1::Builder,
    /// The rest: HTTP/2 with prior knowledge, or too few bytes yet to tell (it reads them).
    auto: auto::Builder<TokioExecutor>,
}

impl Protocols {
    fn new() -> Self {
        let mut http1 = http1::Builder::new();
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // Both header deadlines are kept by `ConnectionActivity` (see the module's note).
        http1.header_read_timeout(None);
        auto.http1().header_read_timeout(None);
        Self { http1, auto }
    }
}

/// Whether the client speaks HTTP/1, told from the first bytes it sent, which stay in the
/// socket (`None`: it closed without sending any). Told here rather than by hyper-util's
/// `auto` builder, which reads them itself and hands them to hyper apart from the rest: hyper
/// then grows its read buffer from 8 to 16 KiB for every connection, an idle `GET /live`
/// stream's included.
async fn speaks_http1(stream: &TcpStream) -> io::Result<Option<bool>> {
    let mut first = [0; HTTP2_PREFACE.len()];
    let read = stream.peek(&mut first).await?;
    Ok((read > 0).then(|| first[..read] != HTTP2_PREFACE[..read]))
}

/// What serving one connection takes from its server.
struct Connection {
    protocols: Arc<Protocols>,
    router: Router,
    limits: HttpLimits,
    streams: StreamPaths,
}

async fn serve_http_connection(connection: Connection, mut stream: TcpStream, shutdown: Shutdown) {
    let Connection {
        protocols,
        router,
        limits,
        streams,
    } = connection;
    let activity = Arc::new(ConnectionActivity::new());
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let deadline = activity.deadline_passed(limits);
    tokio::pin!(deadline);
    let http1 = tokio::select! {
        first = speaks_http1(&stream) => match first {
            Ok(Some(http1)) => http1,
            Ok(None) | Err(_) => return,
        },
        () = &mut stop => return,
        // Idle since it was accepted: nothing to answer.
        _ = &mut deadline => return,
    };
    // Handlers may ask who is calling (the per-address login limit: `http::ClientAddr`).
    let peer = stream.peer_addr().ok();
    if http1 && let Some(request) = stream::take_request(&mut stream, streams, peer).await {
        let _answering = activity.request_started();
        return stream::answer(stream, request, router).await;
    }
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
    // Boxed: the task of an open connection holds only what its protocol needs.
    if http1 {
        let connection = Box::pin(protocols.http1.serve_connection(io, service));
        drive(connection, |c| c.graceful_shutdown(), deadline, stop).await;
    } else {
        let connection = Box::pin(protocols.auto.serve_connection(io, service));
        drive(connection, |c| c.graceful_shutdown(), deadline, stop).await;
    }
}

/// Serves `connection` until it ends; at `stop`, or when `deadline` passes, lets it finish
/// what it is answering and close (`graceful_shutdown`).
async fn drive<C, E>(
    mut connection: Pin<Box<C>>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    mut deadline: Pin<&mut impl Future<Output = Deadline>>,
    mut stop: Pin<&mut impl Future<Output = ()>>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
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
                graceful_shutdown(connection.as_mut());
                closing = true;
            }
            passed = &mut deadline, if !closing => match passed {
                // Closes at once when no request is under way; otherwise after its reply.
                Deadline::Idle => {
                    graceful_shutdown(connection.as_mut());
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
