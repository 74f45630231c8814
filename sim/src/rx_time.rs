//! Kernel receive timestamps on a TCP socket (`SO_TIMESTAMPNS`): when the data reached the
//! host's network stack, as opposed to when a reader woke up to take it.
//!
//! The simulator stamps a request's arrival with the time its last bytes reached the host, so
//! the time its own thread took to wake and parse it is not counted against the client (see
//! `conn.rs`). Linux only; elsewhere [`enable`] fails and callers read as usual.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

/// Whether this host delivers receive timestamps on loopback TCP: a socket pair is opened,
/// one byte sent and read back with [`recv`]. Some sandboxes accept the option and never
/// deliver a timestamp.
#[must_use]
pub fn delivered_here() -> bool {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(addr) = listener.local_addr() else {
        return false;
    };
    let Ok(mut tx) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let Ok((rx, _)) = listener.accept() else {
        return false;
    };
    if enable(rx.as_raw_fd()).is_err() {
        return false;
    }
    // The kernel turns stamping on a moment after the first socket asks (deferred work), so
    // the first byte may come without one: try a few.
    let mut buf = [MaybeUninit::<u8>::uninit(); 8];
    for _ in 0..5 {
        if tx.write_all(b"x").is_err() {
            return false;
        }
        for _ in 0..100 {
            match recv(rx.as_raw_fd(), &mut buf) {
                Ok((n, Some(_))) if n > 0 => return true,
                Ok((n, None)) if n > 0 => break,
                Ok(_) => return false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Asks the kernel to stamp the data received on `fd` (CLOCK_REALTIME, nanoseconds).
///
/// # Errors
/// The OS error when the option cannot be set (not Linux, or not a socket).
#[cfg(target_os = "linux")]
pub fn enable(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Kernel receive timestamps are only read on Linux.
///
/// # Errors
/// Always [`io::ErrorKind::Unsupported`].
#[cfg(not(target_os = "linux"))]
pub fn enable(_fd: RawFd) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// One non-blocking `recvmsg` into `buf` (which it initialises up to the count it returns):
/// the bytes read and, if the kernel gave one, the receive time of the newest data read (since
/// the Unix epoch, CLOCK_REALTIME).
///
/// # Errors
/// The OS error of `recvmsg`, `WouldBlock` included.
#[cfg(target_os = "linux")]
pub fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<Duration>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64s, so the control buffer is aligned for `cmsghdr`.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control); the fields set below
    // point into `iov` and `control`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes buffers valid for writing, of the lengths given.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // The control data was cut short: take no timestamp rather than a partial one.
        return Ok((n as usize, None));
    }
    let ts_len = std::mem::size_of::<libc::timespec>() as libc::c_uint;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
    // `msg_controllen`; the timestamp is read unaligned from its data, once its header says
    // it holds a whole timespec.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(ts_len) as usize
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(Duration::new(
                    u64::try_from(ts.tv_sec).unwrap_or(0),
                    u32::try_from(ts.tv_nsec).unwrap_or(0),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// Kernel receive timestamps are only read on Linux.
///
/// # Errors
/// Always [`io::ErrorKind::Unsupported`].
#[cfg(not(target_os = "linux"))]
pub fn recv(_fd: RawFd, _buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<Duration>)> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Now on the clock the kernel's receive timestamps use.
pub fn realtime_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
