//! A TCP listener for `axum::serve` that bounds what unauthenticated
//! clients can hold: at most `max_connections` open at once (further ones
//! wait in the kernel's backlog), and a connection that sends nothing for
//! `idle_timeout` while lifeboat waits to read is closed. The second cuts
//! slow or stalled headers and bodies, and idle keep-alive connections.
//!
//! The idle timeout must outlast the slowest handler: hyper keeps polling
//! the connection for reads while a handler runs (to notice a client that
//! went away), and this timeout ending then closes the connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Open connections per listener. Prometheus, Alertmanager, Discord and a
/// human use a handful.
pub const MAX_CONNECTIONS: usize = 64;
/// Longer than any handler takes (Discord's is answered within 3 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct GuardedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    max_connections: usize,
    idle_timeout: Duration,
}

impl GuardedListener {
    pub fn new(inner: TcpListener) -> Self {
        Self::with_limits(inner, MAX_CONNECTIONS, IDLE_TIMEOUT)
    }

    pub fn with_limits(inner: TcpListener, max_connections: usize, idle_timeout: Duration) -> Self {
        Self { inner, slots: Arc::new(Semaphore::new(max_connections)), max_connections, idle_timeout }
    }

    /// Connections open right now (for tests and diagnostics).
    pub fn open_connections(&self) -> OpenConnections {
        OpenConnections { slots: self.slots.clone(), max: self.max_connections }
    }
}

/// A live count of a listener's open connections.
#[derive(Clone)]
pub struct OpenConnections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl OpenConnections {
    pub fn get(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self.slots.clone().acquire_owned().await.expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (GuardedStream { stream, _slot: slot, idle_timeout: self.idle_timeout, idle: None }, addr);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one of its listener's slots until it is dropped.
pub struct GuardedStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    /// Armed when a read finds nothing to read; disarmed by any data.
    idle: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.idle = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = this.idle_timeout;
                let idle = this.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client sent nothing within the idle timeout"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
