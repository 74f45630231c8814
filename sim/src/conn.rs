//! Connections that can be cut: the listener and stream types behind the HTTP server.
//!
//! Faults and outages must break connections the way a crashed or overloaded server does: a
//! TCP reset, not a polite close. Each accepted stream carries a [`ConnHandle`] that handlers
//! reach through axum's `ConnectInfo`; [`ConnHandle::kill`] makes every later read and write
//! fail, and when hyper then drops the stream it closes with `SO_LINGER` 0, which sends RST.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::faults::FaultInjector;

/// The kill switch of one connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnHandle {
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Cuts the connection: no further byte goes out, and it closes with a reset.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().conn.clone()
    }
}

/// Accepts connections, with Nagle off (one token per write must leave at once) and resets
/// during an outage.
#[derive(Debug)]
pub(crate) struct SimListener {
    inner: TcpListener,
    faults: Arc<FaultInjector>,
}

impl SimListener {
    pub(crate) fn new(inner: TcpListener, faults: Arc<FaultInjector>) -> Self {
        Self { inner, faults }
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SimStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if self.faults.in_outage(Instant::now()) {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("set_nodelay failed for {addr}: {e}");
                    }
                    return (
                        SimStream {
                            inner: stream,
                            conn: ConnHandle::default(),
                        },
                        addr,
                    );
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream with a kill switch.
#[derive(Debug)]
pub(crate) struct SimStream {
    inner: TcpStream,
    conn: ConnHandle,
}

fn reset() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection cut by the simulator",
    )
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.is_killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.conn.is_killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.conn.is_killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then copies each chunk's frame, data and CRLF into one buffer and sends it
        // with one plain write: cheaper per token, in the kernel and in hyper, than a
        // three-part writev of a 200-byte event. (Its buffer is then capped at ~400 KiB rather
        // than 16 chunks: for a client that stops reading, more tokens wait in hyper after the
        // kernel's socket buffers, themselves megabytes, are full.)
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.is_killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.is_killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if self.conn.is_killed() {
            // Linger 0 turns the close into a RST; the socket is non-blocking, so the close
            // does not block as SO_LINGER can on blocking sockets.
            let _ = self.inner.set_zero_linger();
        }
    }
}
