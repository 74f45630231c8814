//! Stampede's agent: a gRPC server that generates load for the stage shares a controller sends.
//!
//! - [`service`]: the gRPC service (Hello, Run, Stop).
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
pub mod service;
pub mod share;
pub mod workload;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use stampede_common::handshake::LISTENING_PREFIX;
use stampede_common::proto::agent_server::AgentServer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::{AgentIdentity, AgentService};

/// `agent`: generates load for a controller.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "agent",
    version,
    about = "Stampede load agent: serves stage shares to a controller over gRPC"
)]
pub struct AgentArgs {
    /// Address to listen on for the controller (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Name reported to the controller; by default HOST-PID.
    #[arg(long)]
    pub id: Option<String>,
    /// Exit when standard input closes: a parent that starts the agent uses this so the agent
    /// never outlives it, even when the parent is killed.
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
}

/// Entry point of the `agent` binary.
pub fn main() -> ExitCode {
    let args = AgentArgs::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    let service = AgentService::new(AgentIdentity::detect(args.id));
    serve(listener, service, shutdown_signal(args.stop_on_stdin_eof)).await
}

/// Serves the Agent service on `listener` until `shutdown` completes.
///
/// # Errors
/// When the gRPC server fails.
pub async fn serve(
    listener: TcpListener,
    service: AgentService,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        // Keep-alives detect a controller that vanished without closing its connection, so its
        // shares stop (the dead man's switch) instead of loading the target forever.
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)))
        .tcp_nodelay(true)
        // A workload's datasets and tokenizer.json travel in LoadWorkload: past tonic's 4 MB.
        .add_service(AgentServer::new(service).max_decoding_message_size(MAX_MESSAGE))
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
