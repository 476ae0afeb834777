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
//!   start once the HTTP/2 preface has arrived). An HTTP/1 connection (gRPC-Web) is not held
//!   to that while a reply is under way on it: its client has no pings to answer.

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

mod grpc;
mod http;
mod stream;

use std::{io, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

pub use self::{
    grpc::{GrpcConnectionLayer, grpc_incoming},
    http::serve_http,
    stream::StreamPaths,
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

/// The servers' connection caps (`0`: no such server), lowered in proportion if together they
/// would leave less than [`RESERVED_DESCRIPTORS`] of `descriptors` for everything else; a
/// server's cap is at least 1. A server configured to hold many (frontend-service's HTTP port
/// with thousands of live streams) keeps them when the other wants few.
pub fn connections_within<const N: usize>(descriptors: u64, wanted: [usize; N]) -> [usize; N] {
    let room = u128::from(descriptors.saturating_sub(RESERVED_DESCRIPTORS));
    let total: u128 = wanted.iter().map(|&cap| cap as u128).sum();
    if total <= room {
        return wanted;
    }
    wanted.map(|cap| match cap {
        0 => 0,
        cap => usize::try_from(cap as u128 * room / total)
            .unwrap_or(usize::MAX)
            .max(1),
    })
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

#[cfg(test)]
mod tests {
    use super::connections_within;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(connections_within(1_048_576, [1024, 1024]), [1024, 1024]);
        assert_eq!(connections_within(1024, [1024, 1024]), [448, 448]);
        assert_eq!(connections_within(1024, [1024, 0]), [1024 - 128, 0]);
        assert_eq!(connections_within(64, [1024, 1024]), [1, 1]);
        // Shared by what each server is configured to hold, not halved.
        assert_eq!(connections_within(20_000, [11_064, 1024]), [11_064, 1024]);
        assert_eq!(connections_within(10_128, [15_000, 5_000]), [7_500, 2_500]);
    }
}
