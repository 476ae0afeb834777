//! HTTP connections: idle and header-read deadlines kept per connection, graceful drain.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use axum::Router;
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

use super::Acceptor;
use crate::{config::HttpLimits, shutdown::Shutdown};

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
    // Handlers may ask who is calling (the per-address login limit: `http::ClientAddr`).
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
