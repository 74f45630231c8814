//! A request is timed from when it reached the host, not from when the simulator's thread got
//! to it: the simulator's own delays must not be counted against the client it measures.
// std's Instant on purpose: it compares the kernel's receive time with the real clock, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]
#![cfg(target_os = "linux")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stampede_sim::{Sim, SimConfig, rx_time};

/// Reads from `sock` until `needle` has arrived; returns when it did.
fn read_until(sock: &mut TcpStream, needle: &str) -> Instant {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(needle) {
            return Instant::now();
        }
    }
}

#[test]
fn the_time_to_first_token_counts_from_the_requests_arrival_not_from_the_servers_wake_up() {
    if !rx_time::delivered_here() {
        eprintln!("skipped: this host delivers no receive timestamps on loopback TCP");
        return;
    }
    // The block ends before the first token is due, so it can leave on time.
    let ttft = Duration::from_millis(600);
    let blocked_for = Duration::from_millis(400);
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        // A runtime of its own, which the test blocks below.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tx.send((addr, tokio::runtime::Handle::current()))
                .expect("test waits");
            let config = SimConfig {
                ttft,
                itl: Duration::from_millis(10),
                ..SimConfig::default()
            };
            Sim::try_new(&config)
                .expect("config")
                .serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
        });
    });
    let (addr, handle) = rx.recv().expect("server starts");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Two first requests: the first gets the connection accepted (bytes that arrive before
    // that carry no timestamp), the second is read with one.
    for _ in 0..2 {
        sock.write_all(b"GET /health HTTP/1.1\r\nhost: sim\r\n\r\n")
            .expect("write");
        read_until(&mut sock, "\r\n\r\n");
    }
    // Long enough that the second request's timestamp, if it were taken for the next one's,
    // would make the first token come 200 ms early.
    std::thread::sleep(Duration::from_millis(200));

    // Block the server's only thread, then send while it cannot read: the request waits in the
    // kernel for `blocked_for`.
    let (blocked_tx, blocked_rx) = mpsc::channel();
    handle.spawn(async move {
        blocked_tx.send(()).expect("test waits");
        std::thread::sleep(blocked_for);
    });
    blocked_rx.recv().expect("server blocked");
    let body =
        r#"{"model":"sim-llama-3.1-8b","prompt":"hello world","max_tokens":2,"stream":true}"#;
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = Instant::now();
    sock.write_all(request.as_bytes()).expect("write");
    let first_token = read_until(&mut sock, "\"text\":") - sent;

    let _ = stop_tx.send(());
    server.join().expect("server thread");
    // From the wake-up it would be ttft + blocked_for (1 s); from the arrival, ttft.
    assert!(
        first_token >= ttft - Duration::from_millis(5),
        "first token after {first_token:?}, before the {ttft:?} it is due"
    );
    assert!(
        first_token < ttft + blocked_for / 2,
        "first token after {first_token:?}: timed from when the server got to the request, \
         {blocked_for:?} after it arrived"
    );
}
