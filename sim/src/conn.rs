//! Connections that can be cut: the listener and stream types behind the HTTP server.
//!
//! Faults and outages must break connections the way a crashed or overloaded server does: a
//! TCP reset, not a polite close. Each accepted stream carries a [`ConnHandle`] that handlers
//! reach through axum's `ConnectInfo`; [`ConnHandle::kill`] makes every later read and write
//! fail, and when hyper then drops the stream it closes with `SO_LINGER` 0, which sends RST.
//!
//! Each stream also reads with the kernel's receive timestamps where it can ([`rx_time`]), so
//! a request's arrival is the moment its last bytes reached the host: the time this server's
//! thread took to wake up and parse it is then the server's, not the client's.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::faults::FaultInjector;
use crate::rx_time;

/// A receive timestamp older than this is not taken for a request's arrival: a request is
/// read at once, so an old one belongs to something else.
const STALE_RX: Duration = Duration::from_secs(5);

/// The kill switch of one connection, and when its newest bytes arrived.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnHandle {
    killed: Arc<AtomicBool>,
    /// The kernel's receive time of the newest bytes read (ns since the Unix epoch,
    /// CLOCK_REALTIME); 0 when the last read came without one.
    rx_nanos: Arc<AtomicU64>,
}

impl ConnHandle {
    /// When the request being handled reached the host: the kernel's receive time of the
    /// newest bytes read on this connection, as an instant on the clock `now` was taken from;
    /// `now` itself where there is none (no timestamps here, or a stale one).
    pub(crate) fn request_arrival(&self, now: Instant) -> Instant {
        let nanos = self.rx_nanos.load(Ordering::Acquire);
        if nanos == 0 {
            return now;
        }
        let age = rx_time::realtime_now().saturating_sub(Duration::from_nanos(nanos));
        if age > STALE_RX {
            return now;
        }
        now.checked_sub(age).unwrap_or(now)
    }

    fn set_rx(&self, stamp: Option<Duration>) {
        let nanos = stamp.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
        self.rx_nanos.store(nanos, Ordering::Release);
    }

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
                    let stamped = match rx_time::enable(stream.as_raw_fd()) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!("no receive timestamps for {addr}: {e}");
                            false
                        }
                    };
                    return (
                        SimStream {
                            inner: stream,
                            conn: ConnHandle::default(),
                            stamped,
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

/// A TCP stream with a kill switch, read with receive timestamps where it can be.
#[derive(Debug)]
pub(crate) struct SimStream {
    inner: TcpStream,
    conn: ConnHandle,
    /// Receive timestamps are on: reads go through `recvmsg` and record them.
    stamped: bool,
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
        if !self.stamped {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let this = self.get_mut();
        let fd = this.inner.as_raw_fd();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            // SAFETY: recvmsg only writes into the unfilled part, and `assume_init` below
            // covers exactly the bytes it reports written.
            let unfilled = unsafe { buf.unfilled_mut() };
            match this
                .inner
                .try_io(Interest::READABLE, || rx_time::recv(fd, unfilled))
            {
                Ok((n, stamp)) => {
                    // SAFETY: the kernel initialised `n` bytes of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if n > 0 {
                        this.conn.set_rx(stamp);
                    }
                    return Poll::Ready(Ok(()));
                }
                // Readiness was cleared: wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
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
