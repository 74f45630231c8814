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
#[cfg(unix)]
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
#[cfg(unix)]
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::faults::FaultInjector;
#[cfg(unix)]
use crate::rx_time;

/// A receive timestamp this much older than the read that returned it is not taken: bytes
/// wait in the kernel for as long as the server takes to get to them, never this long unless
/// the wall clock was stepped between the two.
#[cfg(unix)]
const STALE_RX: Duration = Duration::from_secs(1);

/// The origin of the arrival instants kept in [`ConnHandle`]: a little before the first one
/// asked for, since an arrival can be up to `STALE_RX` before the read that records it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(2)).unwrap_or(now)
    })
}

/// The kill switch of one connection, and when its newest bytes arrived.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnHandle {
    killed: Arc<AtomicBool>,
    /// When the newest bytes read reached the host, as ns after [`epoch`] plus one; 0 when
    /// the last read came without a usable receive timestamp.
    rx_nanos: Arc<AtomicU64>,
}

impl ConnHandle {
    /// When the request being handled reached the host: the kernel's receive time of the
    /// newest bytes read on this connection (for HTTP/1, the request's last bytes: the handler
    /// runs once the body is read); `now` where there is none.
    pub(crate) fn request_arrival(&self, now: Instant) -> Instant {
        match self.rx_nanos.load(Ordering::Acquire) {
            0 => now,
            n => (epoch() + Duration::from_nanos(n - 1)).min(now),
        }
    }

    /// Records a read's receive timestamp (CLOCK_REALTIME), converted to the monotonic clock
    /// at once, while the two clocks' difference is the one the kernel stamped against.
    #[cfg(unix)]
    fn set_rx(&self, stamp: Option<Duration>) {
        let nanos = stamp.and_then(|stamp| {
            let age = rx_time::realtime_now().checked_sub(stamp)?;
            if age > STALE_RX {
                return None;
            }
            let since = Instant::now()
                .checked_sub(age)?
                .checked_duration_since(epoch())?;
            u64::try_from(since.as_nanos()).ok()?.checked_add(1)
        });
        self.rx_nanos.store(nanos.unwrap_or(0), Ordering::Release);
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
                    #[cfg(unix)]
                    let stamped = match rx_time::enable(stream.as_raw_fd()) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!("no receive timestamps for {addr}: {e}");
                            false
                        }
                    };
                    #[cfg(not(unix))]
                    let stamped = false;
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
        #[cfg(unix)]
        return self.get_mut().poll_read_stamped(cx, buf);
        #[cfg(not(unix))]
        unreachable!("receive timestamps are only turned on on unix")
    }
}

impl SimStream {
    /// `poll_read` through `recvmsg`, recording each read's receive timestamp.
    #[cfg(unix)]
    fn poll_read_stamped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = self;
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
