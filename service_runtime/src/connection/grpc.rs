//! gRPC connections: capped, and closed after too long a silence.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::OwnedSemaphorePermit,
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

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
