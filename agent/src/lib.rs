//! Stampede's agent: a gRPC server that generates load for the stage shares a controller sends.
//!
//! - [`service`]: the gRPC service (Hello, Run, Stop).
//! - [`security`]: the shared token, TLS and mutual TLS, and the clock this agent reports.
//! - [`share`]: one share of one step: checks, start instant, deadlines.
//! - [`scheduler`]: open-loop and closed-loop drivers.
//! - [`pacer`]: releases arrivals within microseconds of their due time (a timer thread).
//! - [`client`]: the streaming OpenAI client, its SSE parser and chunk decoder.
//! - [`recorder`]: owns the histograms and counters, reports each interval.
//! - [`samplers`]: GPU (NVML), host, processes and server metrics, on a thread of their own.
//! - [`monitor_only`]: shares that only sample, for an agent on the model server's host.
//! - [`workload`]: request bodies, built ahead of their send time: tokenizers, exact-length
//!   prompts, templates, datasets, request classes, multi-turn sessions.

pub mod client;
pub mod monitor_only;
pub mod pacer;
pub mod recorder;
pub mod samplers;
pub mod scheduler;
pub mod security;
pub mod service;
pub mod share;
pub use stampede_workload as workload;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use stampede_common::handshake::LISTENING_PREFIX;
use stampede_common::proto::agent_server::AgentServer;
use stampede_common::remote::{AllowedTarget, TOKEN_ENV, Token, reachable_from_other_hosts};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::security::{ServerSecurity, TokenCheck};
use crate::service::{AgentIdentity, AgentService};

/// `agent`: generates load for a controller.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agent",
    version,
    about = "Stampede load agent: serves stage shares to a controller over gRPC"
)]
pub struct AgentArgs {
    /// Address to listen on for the controller (port 0 picks a free port). An address other
    /// hosts can reach (0.0.0.0, a LAN address) needs a shared token.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// File holding the shared token every controller call must carry (at least 16 printable
    /// characters; `openssl rand -hex 32` makes one). Without it, $STAMPEDE_TOKEN is used.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only controllers whose client certificate this CA (PEM) signed.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Send only to this target, as HOST or HOST:PORT; repeat for several. Without any, the
    /// agent sends wherever its controller says.
    #[arg(long = "allow-target", value_name = "HOST[:PORT]", value_parser = AllowedTarget::parse)]
    pub allow_target: Vec<AllowedTarget>,
    /// Pretend this host's clock is off by this many milliseconds (tests of the controller's
    /// clock alignment).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_skew_ms: i64,
    /// Name reported to the controller; by default HOST-PID.
    #[arg(long)]
    pub id: Option<String>,
    /// Async runtime threads: 1 runs everything on one thread (the least CPU per streamed token:
    /// no cross-thread wake-ups, but at most one core of load), N a work-stealing
    /// pool of N, 0 one per core. Without it, $STAMPEDE_AGENT_THREADS, else 0.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Exit when standard input closes: a parent that starts the agent uses this so the agent
    /// never outlives it, even when the parent is killed.
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
}

/// Environment variable read when `--threads` is not given (a controller's local agents
/// inherit it).
pub const THREADS_ENV: &str = "STAMPEDE_AGENT_THREADS";

/// Entry point of the `agent` binary.
pub fn main() -> ExitCode {
    let args = AgentArgs::parse();
    init_tracing();
    let threads = match args.threads {
        Some(n) => n,
        None => match std::env::var(THREADS_ENV) {
            Err(_) => 0,
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    eprintln!(
                        "agent: ${THREADS_ENV} must be a number of threads (0: one per core), got {v:?}"
                    );
                    return ExitCode::from(1);
                }
            },
        },
    };
    let runtime = match threads {
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agent: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Largest message the agent accepts (a workload with its dataset rows).
pub const MAX_MESSAGE: usize = 512 << 20;

/// Binds, prints `listening on ADDR`, and serves until SIGINT, SIGTERM or (with
/// `--stop-on-stdin-eof`) the end of standard input.
///
/// # Errors
/// When the address cannot be bound or the server fails.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = Token::load(args.token_file.as_deref(), |v| std::env::var(v).ok())?;
    if token.is_none() && reachable_from_other_hosts(&args.listen) {
        anyhow::bail!(
            "--listen {} can be reached from other hosts, and anyone who reaches it could send load anywhere: give a shared token with --token-file FILE or ${TOKEN_ENV} (the controller needs the same one), or listen on 127.0.0.1",
            args.listen
        );
    }
    let security = ServerSecurity {
        token: TokenCheck::new(token),
        tls: security::server_tls(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            args.tls_client_ca.as_deref(),
        )?,
    };
    security::set_clock_skew_ms(args.clock_skew_ms);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{LISTENING_PREFIX}{addr}").context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    workload::warm_up();
    let service =
        AgentService::new(AgentIdentity::detect(args.id)).allow_targets(args.allow_target);
    serve(
        listener,
        service,
        security,
        shutdown_signal(args.stop_on_stdin_eof),
    )
    .await
}

/// Serves the Agent service on `listener` until `shutdown` completes; every call must pass
/// `security`'s token check, and connections its TLS.
///
/// # Errors
/// When the TLS settings are refused or the gRPC server fails.
pub async fn serve(
    listener: TcpListener,
    service: AgentService,
    security: ServerSecurity,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = security.tls {
        builder = builder
            .tls_config(tls)
            .context("the TLS certificate or key was refused")?;
    }
    let server = AgentServer::new(service).max_decoding_message_size(MAX_MESSAGE);
    builder
        // Keep-alives detect a controller that vanished without closing its connection, so its
        // shares stop (the dead man's switch) instead of loading the target forever.
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .tcp_nodelay(true)
        // A workload's datasets and tokenizer.json travel in LoadWorkload: past tonic's 4 MB.
        .add_service(tonic::service::interceptor::InterceptedService::new(
            server,
            security.token,
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("the gRPC server failed")
}

async fn shutdown_signal(watch_stdin: bool) {
    let stdin_closed = async {
        if watch_stdin {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = stdin_closed => {}
    }
}
