//! What one streamed token costs the kernel on this machine, with no HTTP, JSON or simulator:
//! the floor under both the simulator's and the client's CPU per token.
//!
//! ```text
//! cargo run --release -p stampede-sim --example loopback_floor
//! cargo run --release -p stampede-sim --example loopback_floor -- --rates 32000 --event-bytes 220
//! ```
//!
//! A writer thread plays the server: `rate x gap` loopback TCP connections (Nagle off), and
//! one `write` of `--event-bytes` per token, each connection's tokens `gap` apart and the
//! connections spread over the gap, every write at its due time (the thread spins between
//! them, so its own CPU is not a measure: the time spent inside `write` is). A reader thread
//! plays the client the way Stampede's agent reads: a current-thread tokio runtime, one task
//! per connection, each token read as it arrives and timestamped. The reader does nothing
//! else, so its CPU per token (user and system, from `/proc`) is the least any client that
//! reads and timestamps each token as it arrives can spend here. On loopback the receiving
//! side's TCP processing runs in the sender's system call, and each `read` sends an ACK whose
//! processing is charged to the reader, so both columns are the machine's, not the code's.
// std's Instant on purpose: a benchmark of the kernel times real work on the real clock, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use stampede_sim::duration::{DisplayDuration, parse_duration};
use stampede_sim::rx_time;
use tokio::io::AsyncReadExt as _;

#[path = "support/procstat.rs"]
mod procstat;
use procstat::{cpu, cpu_split, machine_busy, thread_stat_path};

#[derive(Debug, Parser)]
struct Args {
    /// Token rates to measure, in tokens/s.
    #[arg(long, value_delimiter = ',', default_value = "10000,32000,80000")]
    rates: Vec<u64>,
    /// Gap between tokens of each connection.
    #[arg(long, value_parser = positive_duration, default_value = "10ms")]
    gap: Duration,
    /// Bytes per token (at least 8): a vLLM chat chunk with its chunked-encoding frame is
    /// about 220.
    #[arg(long, default_value_t = 220, value_parser = clap::value_parser!(u16).range(8..))]
    event_bytes: u16,
    /// Connections whose tokens are due at the same instant. Stampede's cost benchmark (500
    /// requests/s at even intervals, 10 ms between tokens) has its 320 streams' tokens fall due
    /// in groups of 64 every 2 ms; 1 spreads every token evenly over the gap.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    together: u32,
    /// How the reader waits: `epoll` (a tokio task per connection, woken as each token arrives,
    /// as Stampede's agent reads) or `polled` (every connection read every 4 gaps without
    /// waiting on it: nobody sleeps on the sockets, so the writer wakes no one, as with a
    /// client on another machine).
    #[arg(long, default_value = "epoll", value_parser = ["epoll", "polled"])]
    reader: String,
    /// With the epoll reader: read with `recvmsg` and the kernel's receive timestamps, and
    /// report how long after the data arrived the reader got to it (p50, p99): the wake-up
    /// delay that a client timestamping in user space adds to every TTFT and ITL.
    #[arg(long)]
    rx_timestamps: bool,
    /// Warm-up before measuring, per rate.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Measurement time per rate.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s).map_err(|e| e.to_string())? {
        Duration::ZERO => Err("must be more than 0".to_string()),
        d => Ok(d),
    }
}

/// Ends the benchmark with a message instead of a panic.
fn fail(what: &str, e: std::io::Error) -> ! {
    eprintln!("loopback_floor: {what}: {e}");
    if e.raw_os_error() == Some(24) {
        eprintln!(
            "  each connection takes two file descriptors: raise the limit (ulimit -n) or lower --rates"
        );
    }
    std::process::exit(1);
}

fn main() {
    let args = Args::parse();
    println!(
        "loopback_floor: one write per token of {} bytes, {} due together, gap {}, {} warm-up + {} measured per rate",
        args.event_bytes,
        args.together,
        DisplayDuration(args.gap),
        DisplayDuration(args.warmup),
        DisplayDuration(args.duration)
    );
    println!(
        "{:>9} {:>6} {:>10} {:>13} {:>12} {:>13} {:>12} {:>10} {:>8} {:>8} {:>16}",
        "rate/s",
        "conns",
        "tokens/s",
        "write us/tok",
        "groups late",
        "read us/tok",
        "(user/sys)",
        "reads/tok",
        "reader%",
        "others%",
        "wake p50/p99 us"
    );
    for &rate in &args.rates {
        let r = run(&args, rate);
        println!(
            "{:>9} {:>6} {:>10.0} {:>13.2} {:>11.2}% {:>13.2} {:>12} {:>10.2} {:>7.0}% {:>7.0}% {:>16}",
            rate,
            r.conns,
            r.tokens_per_s,
            r.write_us_per_token,
            r.late_share * 100.0,
            r.read_us_per_token,
            format!("{:.2}/{:.2}", r.read_user_us, r.read_sys_us),
            r.reads_per_token,
            r.reader_cpu * 100.0,
            r.others_cpu * 100.0,
            r.wake
                .map_or("-".to_string(), |(p50, p99)| format!("{p50:.0}/{p99:.0}")),
        );
        let _ = std::io::stdout().flush();
    }
}

struct Outcome {
    conns: usize,
    tokens_per_s: f64,
    write_us_per_token: f64,
    /// Groups whose first write started more than 100 us after their due time: the writer
    /// fell behind.
    late_share: f64,
    read_us_per_token: f64,
    read_user_us: f64,
    read_sys_us: f64,
    reads_per_token: f64,
    reader_cpu: f64,
    others_cpu: f64,
    /// With `--rx-timestamps`: p50 and p99 of how long after the kernel received a token the
    /// reader took it, in microseconds.
    wake: Option<(f64, f64)>,
}

/// Counters the writer and the reader share with the measuring thread.
#[derive(Default)]
struct Counters {
    writer: WriterCounters,
    reader: ReaderCounters,
}

/// On a cache line of their own, so the two threads' counting does not bounce one line.
#[derive(Default)]
#[repr(align(128))]
struct WriterCounters {
    writes: AtomicU64,
    write_ns: AtomicU64,
    late_writes: AtomicU64,
}

#[derive(Default)]
#[repr(align(128))]
struct ReaderCounters {
    reads: AtomicU64,
    bytes_read: AtomicU64,
}

fn run(args: &Args, rate: u64) -> Outcome {
    let conns = ((rate as f64) * args.gap.as_secs_f64()).round().max(1.0) as usize;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| fail("local address", e));
    let mut readers = Vec::with_capacity(conns);
    let mut writers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let client = TcpStream::connect(addr).unwrap_or_else(|e| fail("connect", e));
        let (server, _) = listener.accept().unwrap_or_else(|e| fail("accept", e));
        server
            .set_nodelay(true)
            .unwrap_or_else(|e| fail("TCP_NODELAY", e));
        client
            .set_nonblocking(true)
            .unwrap_or_else(|e| fail("non-blocking", e));
        readers.push(client);
        writers.push(server);
    }
    let counters = Arc::new(Counters::default());
    let running = Arc::new(AtomicBool::new(true));

    let (stat_tx, stat_rx) = std::sync::mpsc::channel::<String>();
    let wake =
        (args.rx_timestamps && args.reader == "epoll").then(|| Arc::new(WakeDelays::default()));
    let reader = {
        let (counters, running, wake) = (counters.clone(), running.clone(), wake.clone());
        let (polled, gap) = (args.reader == "polled", args.gap);
        std::thread::Builder::new()
            .name("floor-reader".into())
            .spawn(move || {
                stat_tx.send(thread_stat_path()).expect("main waits");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                if polled {
                    read_polled(readers, gap * 4, &counters, &running);
                } else {
                    rt.block_on(read_all(readers, counters, running, wake));
                }
            })
            .expect("reader thread")
    };
    let reader_stat = stat_rx.recv().expect("reader starts");
    let writer = {
        let (counters, running, gap, together, event) = (
            counters.clone(),
            running.clone(),
            args.gap,
            (args.together as usize).min(conns),
            event(usize::from(args.event_bytes)),
        );
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || write_all(writers, gap, together, &event, &counters, &running))
            .expect("writer thread")
    };

    std::thread::sleep(args.warmup);
    let snap = |c: &Counters| {
        (
            c.writer.writes.load(Ordering::Relaxed),
            c.writer.write_ns.load(Ordering::Relaxed),
            c.writer.late_writes.load(Ordering::Relaxed),
            c.reader.reads.load(Ordering::Relaxed),
            c.reader.bytes_read.load(Ordering::Relaxed),
        )
    };
    let (w0, wns0, late0, r0, b0) = snap(&counters);
    let (user0, sys0) = cpu_split(&reader_stat);
    let (machine0, process0) = (machine_busy(), cpu("/proc/self/stat"));
    let recording = |on: bool| {
        if let Some(w) = &wake {
            w.recording.store(on, Ordering::Relaxed);
        }
    };
    recording(true);
    let t0 = Instant::now();
    std::thread::sleep(args.duration);
    let elapsed = t0.elapsed().as_secs_f64();
    recording(false);
    let (w1, wns1, late1, r1, b1) = snap(&counters);
    let (user1, sys1) = cpu_split(&reader_stat);
    let (machine1, process1) = (machine_busy(), cpu("/proc/self/stat"));
    running.store(false, Ordering::Relaxed);
    let _ = writer.join();
    let _ = reader.join();

    let writes = (w1 - w0).max(1) as f64;
    let tokens_read = ((b1 - b0) as f64 / f64::from(args.event_bytes)).max(1.0);
    let (user, sys) = (user1 - user0, sys1 - sys0);
    Outcome {
        conns,
        tokens_per_s: tokens_read / elapsed,
        write_us_per_token: (wns1 - wns0) as f64 / 1000.0 / writes,
        late_share: (late1 - late0) as f64 * args.together as f64 / writes,
        read_us_per_token: (user + sys) * 1e6 / tokens_read,
        read_user_us: user * 1e6 / tokens_read,
        read_sys_us: sys * 1e6 / tokens_read,
        reads_per_token: (r1 - r0) as f64 / tokens_read,
        reader_cpu: (user + sys) / elapsed,
        // The writer spins on one core by design: leave a whole core out of "others".
        others_cpu: ((machine1 - machine0) - (process1 - process0)).max(0.0) / elapsed,
        wake: wake.and_then(|w| w.quantiles()),
    }
}

/// One token's bytes: an SSE event of `len` (at least 8) bytes.
fn event(len: usize) -> Vec<u8> {
    let mut e = b"data: ".to_vec();
    e.resize(len - 2, b'x');
    e.extend_from_slice(b"\n\n");
    e
}

/// Writes one event per token at its due time: token `j` goes to connection `j mod n` at
/// `start + (j / together) x gap x together / n`, so each connection's tokens are `gap` apart
/// and `together` connections share each due time.
fn write_all(
    mut conns: Vec<TcpStream>,
    gap: Duration,
    together: usize,
    event: &[u8],
    counters: &Counters,
    running: &AtomicBool,
) {
    let n = conns.len();
    let step = gap.as_secs_f64() * together as f64 / n as f64;
    let start = Instant::now();
    let mut j: u64 = 0;
    while running.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64((j / together as u64) as f64 * step);
        let mut now = Instant::now();
        while now < due {
            std::hint::spin_loop();
            now = Instant::now();
        }
        // A group's tokens go out one after another: only its first write shows whether the
        // writer kept up with the schedule.
        if j.is_multiple_of(together as u64) && now.duration_since(due) > Duration::from_micros(100)
        {
            counters.writer.late_writes.fetch_add(1, Ordering::Relaxed);
        }
        let conn = &mut conns[(j % n as u64) as usize];
        if conn.write_all(event).is_err() {
            return;
        }
        let took = now.elapsed();
        counters.writer.writes.fetch_add(1, Ordering::Relaxed);
        counters
            .writer
            .write_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        j += 1;
    }
}

/// Reads every connection as its bytes arrive, taking a timestamp per read as a client does;
/// with `wake` set, reads with the kernel's receive timestamp and records in it how long after
/// the data arrived each read took it (while `wake.recording`).
async fn read_all(
    conns: Vec<TcpStream>,
    counters: Arc<Counters>,
    running: Arc<AtomicBool>,
    wake: Option<Arc<WakeDelays>>,
) {
    use std::os::fd::AsRawFd as _;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        let (counters, running, wake) = (counters.clone(), running.clone(), wake.clone());
        if wake.is_some()
            && let Err(e) = rx_time::enable(conn.as_raw_fd())
        {
            fail("SO_TIMESTAMPNS", e);
        }
        tasks.spawn(async move {
            let Ok(mut conn) = tokio::net::TcpStream::from_std(conn) else {
                return;
            };
            let fd = conn.as_raw_fd();
            let mut buf = vec![0u8; 16 * 1024];
            // recvmsg's buffer: the kernel initialises what it reads; the bytes are not looked at.
            let mut raw = vec![std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut last = Instant::now();
            while running.load(Ordering::Relaxed) {
                let read = match &wake {
                    None => conn.read(&mut buf).await.map(|n| (n, None)),
                    Some(_) => {
                        conn.async_io(tokio::io::Interest::READABLE, || {
                            rx_time::recv(fd, &mut raw)
                        })
                        .await
                    }
                };
                match read {
                    Ok((0, _)) | Err(_) => return,
                    Ok((n, stamp)) => {
                        last = std::hint::black_box(Instant::now()).max(last);
                        if let (Some(wake), Some(stamp)) = (&wake, stamp) {
                            wake.record(rx_time::realtime_now().saturating_sub(stamp));
                        }
                        counters.reader.reads.fetch_add(1, Ordering::Relaxed);
                        counters
                            .reader
                            .bytes_read
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// How long after the kernel received data the reader took it, in nanoseconds.
#[derive(Default)]
struct WakeDelays {
    recording: AtomicBool,
    nanos: std::sync::Mutex<Vec<u64>>,
}

impl WakeDelays {
    fn record(&self, d: Duration) {
        if self.recording.load(Ordering::Relaxed)
            && let Ok(mut v) = self.nanos.lock()
        {
            v.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// (p50, p99) of what was recorded, in microseconds.
    fn quantiles(&self) -> Option<(f64, f64)> {
        let mut v = self.nanos.lock().ok()?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Some((at(0.5), at(0.99)))
    }
}

/// Reads every connection every `every` without waiting on any: the kernel wakes nobody when a
/// token arrives, and one read takes the tokens that piled up meanwhile.
fn read_polled(
    mut conns: Vec<TcpStream>,
    every: Duration,
    counters: &Counters,
    running: &AtomicBool,
) {
    use std::io::Read as _;
    let mut buf = vec![0u8; 64 * 1024];
    while running.load(Ordering::Relaxed) {
        for conn in &mut conns {
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        counters.reader.reads.fetch_add(1, Ordering::Relaxed);
                        counters
                            .reader
                            .bytes_read
                            .fetch_add(n as u64, Ordering::Relaxed);
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
        }
        std::thread::sleep(every);
    }
}
