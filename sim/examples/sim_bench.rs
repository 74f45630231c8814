//! How fast the simulator streams, and how close to their due time its tokens leave.
//!
//! ```text
//! cargo run --release -p stampede-sim --example sim_bench
//! cargo run --release -p stampede-sim --example sim_bench -- --rates 20000,80000 --itl 5ms
//! ```
//!
//! For each offered rate (tokens/s) it starts a fresh deterministic simulator on one thread (a
//! current-thread runtime, plus the pacer thread), and a closed-loop client on another: enough
//! concurrent streams (`rate x itl`) that each asks for `--max-tokens` tokens and starts a new
//! request when one ends. The client is a bare HTTP/1.1 reader that only counts events and reads
//! each socket every 4 token gaps (the socket buffers hold the rest) without waiting on it
//! (`--client polled`), so that it takes as little CPU as it can from the simulator and its
//! sockets wake nobody (`--client epoll` waits on each, as a tokio task: on loopback the
//! simulator's writes then pay for waking it). Lateness is measured inside the simulator, when
//! each token is handed to the socket. After a warm-up it reports the tokens/s served, how late
//! tokens left the simulator against their due time (p50, p99, p99.9, max), and the CPU used by
//! the server thread and the pacer thread. The last column is the CPU that other processes
//! used meanwhile (in % of one core, steal included): lateness is only meaningful when it is low.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use stampede_sim::duration::{DisplayDuration, parse_duration};
use stampede_sim::{Metrics, PacerMode, Sim, SimConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

#[path = "support/procstat.rs"]
mod procstat;
use procstat::{cpu, find_thread, machine_busy, thread_stat_path};

#[derive(Debug, Parser)]
struct Args {
    /// Offered loads to measure, in tokens/s.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,40000,80000,100000"
    )]
    rates: Vec<u64>,
    /// Gap between tokens of each stream.
    #[arg(long, value_parser = parse_duration, default_value = "5ms")]
    itl: Duration,
    /// Tokens per request.
    #[arg(long, default_value_t = 200)]
    max_tokens: u32,
    /// Warm-up before measuring, per rate.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Measurement time per rate.
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    duration: Duration,
    /// The pacer's spin before each deadline (the simulator's `timer_spin`).
    #[arg(long, value_parser = parse_duration, default_value = "200us")]
    spin: Duration,
    /// The pacer: `thread` or `inline` (the simulator's `pacer`).
    #[arg(long, default_value = "thread")]
    pacer: String,
    /// How the client reads: `polled` (each socket read every 4 token gaps without waiting
    /// on it) or `epoll` (a tokio task per stream, woken as tokens arrive). On loopback the
    /// sender's system call does the receiver's TCP work and wakes a receiver that waits on
    /// the socket; `polled` spares the simulator that wake-up, as a client on another machine
    /// would (see the `loopback_floor` example).
    #[arg(long, default_value = "polled", value_parser = ["polled", "epoll"])]
    client: String,
}

fn main() {
    let args = Args::parse();
    println!(
        "sim_bench: deterministic preset, {} pacer, itl {}, {} tokens per request, {} warm-up + {} measured per rate",
        args.pacer,
        DisplayDuration(args.itl),
        args.max_tokens,
        DisplayDuration(args.warmup),
        DisplayDuration(args.duration)
    );
    println!(
        "{:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "offered/s",
        "streams",
        "served/s",
        "late p50",
        "late p90",
        "late p99",
        "p99.9",
        "max",
        "server%",
        "pacer%",
        "others%"
    );
    for &rate in &args.rates {
        let r = run(&args, rate);
        println!(
            "{:>10} {:>8} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.0}% {:>7.0}% {:>7.0}%",
            rate,
            r.streams,
            r.served_per_s,
            us(r.late.p50),
            us(r.late.p90),
            us(r.late.p99),
            us(r.late.p999),
            us(r.late.max),
            r.server_cpu * 100.0,
            r.pacer_cpu * 100.0,
            r.others_cpu * 100.0,
        );
        let _ = std::io::stdout().flush();
    }
}

fn us(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

struct Outcome {
    streams: u64,
    served_per_s: f64,
    late: stampede_sim::LatencySummary,
    server_cpu: f64,
    pacer_cpu: f64,
    others_cpu: f64,
}

fn run(args: &Args, rate: u64) -> Outcome {
    let streams = ((rate as f64) * args.itl.as_secs_f64()).round().max(1.0) as u64;
    let config = SimConfig {
        ttft: Duration::from_millis(1),
        itl: args.itl,
        timer_spin: args.spin,
        pacer: if args.pacer == "inline" {
            PacerMode::Inline
        } else {
            PacerMode::Thread
        },
        ..SimConfig::default()
    };
    let sim = Sim::try_new(&config).expect("valid config");
    let metrics = sim.metrics();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<(SocketAddr, String)>();
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop_server = stop.clone();
    let server = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                addr_tx
                    .send((addr, thread_stat_path()))
                    .expect("main waits");
                sim.serve(listener, async move { stop_server.notified().await })
                    .await
                    .expect("serve");
            });
        })
        .expect("server thread");
    let (addr, server_stat) = addr_rx.recv().expect("server starts");
    let running = Arc::new(AtomicBool::new(true));
    let events = Arc::new(AtomicU64::new(0));
    let client = {
        let (running, events, args_itl, max_tokens) =
            (running.clone(), events.clone(), args.itl, args.max_tokens);
        let polled = args.client != "epoll";
        std::thread::Builder::new()
            .name("bench-client".into())
            .spawn(move || {
                let request = completion_request(addr, max_tokens);
                if polled {
                    polled_clients(addr, streams, args_itl, &request, &running, &events);
                    return;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(clients(addr, streams, args_itl, request, running, events));
            })
            .expect("client thread")
    };

    std::thread::sleep(args.warmup);
    let pacer_stat = find_thread("sim-pacer");
    let (tokens0, late0) = (
        metrics.generation_tokens(),
        metrics.token_lateness_snapshot(),
    );
    let (server0, pacer0) = (cpu(&server_stat), pacer_stat.as_deref().map_or(0.0, cpu));
    let (machine0, process0) = (machine_busy(), cpu("/proc/self/stat"));
    let t0 = Instant::now();
    std::thread::sleep(args.duration);
    let elapsed = t0.elapsed().as_secs_f64();
    let (tokens1, late1) = (
        metrics.generation_tokens(),
        metrics.token_lateness_snapshot(),
    );
    let (server1, pacer1) = (cpu(&server_stat), pacer_stat.as_deref().map_or(0.0, cpu));
    let (machine1, process1) = (machine_busy(), cpu("/proc/self/stat"));

    running.store(false, Ordering::Relaxed);
    let _ = client.join();
    stop.notify_one();
    let _ = server.join();
    report_client_count(&metrics, &events);
    Outcome {
        streams,
        served_per_s: (tokens1 - tokens0) as f64 / elapsed,
        late: late1.summary_since(Some(&late0)),
        server_cpu: (server1 - server0) / elapsed,
        pacer_cpu: (pacer1 - pacer0) / elapsed,
        others_cpu: ((machine1 - machine0) - (process1 - process0)).max(0.0) / elapsed,
    }
}

fn report_client_count(metrics: &Metrics, events: &AtomicU64) {
    // Every token the simulator counted should have reached the client (give or take the
    // streams cut at the end).
    let (sent, seen) = (metrics.generation_tokens(), events.load(Ordering::Relaxed));
    if seen + 10_000 < sent {
        eprintln!("warning: the client saw {seen} events of {sent} tokens sent");
    }
}

/// One streaming completion request of `max_tokens` tokens, on a connection of its own.
fn completion_request(addr: SocketAddr, max_tokens: u32) -> String {
    let body = format!(
        "{{\"model\":\"sim-llama-3.1-8b\",\"prompt\":\"hello world\",\"max_tokens\":{max_tokens},\"stream\":true,\"ignore_eos\":true}}"
    );
    format!(
        "POST /v1/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// SSE events in a read (an event never straddles two reads' counts by more than one).
fn count_events(bytes: &[u8]) -> u64 {
    bytes.windows(6).filter(|w| w == b"data: ").count() as u64
}

/// `streams` closed-loop streaming clients on one thread that waits on no socket: every
/// millisecond or so it reads, without blocking, the streams whose turn it is (each about
/// every 4 token gaps), and a stream whose response has ended sends its next request
/// at once. Its sockets are never in an epoll set, so a token's write wakes nobody; streams
/// start spread over one token gap, so their due times do not coincide. A request that cannot
/// be sent is tried again on the stream's next turn, and the failures are reported.
fn polled_clients(
    addr: SocketAddr,
    streams: u64,
    itl: Duration,
    request: &str,
    running: &AtomicBool,
    events: &AtomicU64,
) {
    use std::io::{ErrorKind, Read as _};
    let tick = Duration::from_millis(1);
    let turns = ((itl * 4).as_micros() / tick.as_micros()).max(1) as u64;
    let start = Instant::now();
    let mut socks: Vec<Option<std::net::TcpStream>> = (0..streams).map(|_| None).collect();
    let mut begun = 0u64;
    let mut failed = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut round = 0u64;
    while running.load(Ordering::Relaxed) {
        // Streams begin one by one over the first token gap.
        let now = Instant::now();
        while begun < streams && now >= start + itl.mul_f64(begun as f64 / streams as f64) {
            socks[begun as usize] = send_request(addr, request);
            failed += u64::from(socks[begun as usize].is_none());
            begun += 1;
        }
        for (i, sock) in (0..begun).zip(socks.iter_mut()) {
            if i % turns != round % turns {
                continue;
            }
            let ended = match sock.as_mut() {
                None => true,
                Some(s) => loop {
                    match s.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(n) => {
                            events.fetch_add(count_events(&buf[..n]), Ordering::Relaxed);
                            if n < buf.len() {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                },
            };
            if ended {
                *sock = send_request(addr, request);
                failed += u64::from(sock.is_none());
            }
        }
        round += 1;
        // A relative sleep on purpose: each round lasts a little over a tick, so the rounds
        // drift against the token gap and the requests restarted in them get due times spread
        // over it. On an absolute 1 ms schedule every restart lands on the same few phases of
        // a 5 ms gap, and the simulator then serves tokens in bursts (p50 lateness 0-1 us ->
        // 3-15 us in a trial).
        std::thread::sleep(tick);
    }
    if failed > 0 {
        eprintln!("warning: {failed} requests could not be sent (connect or write failed)");
    }
}

/// Connects (within a second), sends `request` and leaves the socket non-blocking; `None` if
/// any step failed.
fn send_request(addr: SocketAddr, request: &str) -> Option<std::net::TcpStream> {
    let mut sock = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    sock.set_nodelay(true).ok()?;
    sock.write_all(request.as_bytes()).ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}

/// `streams` closed-loop streaming clients, a tokio task each, started spread over one token
/// gap so their due times do not coincide.
async fn clients(
    addr: SocketAddr,
    streams: u64,
    itl: Duration,
    request: String,
    running: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
) {
    let request = Arc::new(request);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let (running, events, request) = (running.clone(), events.clone(), request.clone());
        let offset = itl.mul_f64(i as f64 / streams as f64);
        tasks.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut buf = vec![0u8; 64 * 1024];
            while running.load(Ordering::Relaxed) {
                let Ok(mut sock) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                if sock.write_all(request.as_bytes()).await.is_err() {
                    continue;
                }
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            events.fetch_add(count_events(&buf[..n]), Ordering::Relaxed);
                        }
                    }
                    if !running.load(Ordering::Relaxed) {
                        return;
                    }
                    // Let a few tokens pile up in the socket buffer: one read takes them all.
                    tokio::time::sleep(itl * 4).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
