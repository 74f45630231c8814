//! The `sim` command line: flags, the config they build, and `main`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

use crate::config::{ConfigError, PacerMode, SimConfig};
use crate::duration::{DisplayDuration, parse_duration};
use crate::faults::{FaultKind, FaultSpec};
use crate::presets;

/// Exit code for a command line or config that cannot be used.
const EXIT_USAGE: u8 = 2;

/// Stampede's simulated LLM service: an OpenAI-compatible server (chat and completions, SSE
/// streaming, /metrics) whose timing follows a continuous-batching engine model or a fixed
/// schedule. On start it prints one line, `listening on ADDR`, to stdout.
#[derive(Debug, Clone, Parser)]
#[command(name = "sim", version)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port (see the `listening on` line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Preset: `deterministic` (default) or an engine model; see --list-presets.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// TOML file of settings (the fields of a plan's [target.sim] table); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The test plan whose [target.sim] table --config was written from: that table is checked
    /// first, so that a problem is reported at the plan's file, line and field.
    #[arg(long, value_name = "PLAN")]
    pub config_plan: Option<PathBuf>,
    /// Deterministic preset: time from request received to first token [default: 50ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ttft: Option<Duration>,
    /// Deterministic preset: time between tokens [default: 10ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub itl: Option<Duration>,
    /// Served model id [default: the preset's, sim-llama-3.1-8b for deterministic].
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Context length in tokens [default: 131072].
    #[arg(long, value_name = "TOKENS")]
    pub max_model_len: Option<u32>,
    /// Seed of every random choice (faults, end-of-sequence, ids) [default: 0].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Fraction (0..1) of streaming responses whose connection is reset mid-stream.
    #[arg(long, value_name = "FRACTION")]
    pub fault_disconnect_rate: Option<f64>,
    /// A fault, `KIND[:key=value,...]`, e.g. `http_429:rate=0.1,retry_after=2s` or
    /// `outage:at=30s,duration=10s`. Repeatable. Kinds: http_500, http_503, http_429,
    /// reset_before_headers, reset_after_headers, stall, disconnect, malformed_sse, empty,
    /// slow_first_token, outage.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<FaultSpec>,
    /// Exit when standard input reaches end of file, so the simulator never outlives the
    /// process that started it with a pipe.
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
    /// Runtime worker threads serving HTTP (the pacer thread comes in addition).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// What releases tokens at their due time: `thread` (default; a pacer thread, light on
    /// CPU) or `inline` (the serving thread busy-polls near deadlines: most precise, costs a
    /// core).
    #[arg(long, value_name = "MODE", value_parser = parse_pacer)]
    pub pacer: Option<PacerMode>,
    /// How long before each token is due the pacer thread spins instead of sleeping
    /// [default: 200us; 0 saves CPU, tokens then leave up to ~0.1-0.3 ms late].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timer_spin: Option<Duration>,
    /// Print the presets and their capacity, then exit.
    #[arg(long)]
    pub list_presets: bool,
}

impl SimArgs {
    /// The config these flags describe: the `--config` file (or defaults), then each flag
    /// given on top.
    ///
    /// # Errors
    /// When the file (or `--config-plan`'s table) cannot be read or parsed.
    pub fn to_config(&self) -> Result<SimConfig, ConfigError> {
        if let Some(plan) = &self.config_plan {
            SimConfig::load_plan(plan)?;
        }
        let mut c = match &self.config {
            Some(path) => SimConfig::load(path)?,
            None => SimConfig::default(),
        };
        if let Some(p) = &self.preset {
            c.preset.clone_from(p);
        }
        if let Some(v) = self.ttft {
            c.ttft = v;
        }
        if let Some(v) = self.itl {
            c.itl = v;
        }
        if let Some(v) = &self.model {
            c.model = Some(v.clone());
        }
        if let Some(v) = self.max_model_len {
            c.max_model_len = Some(v);
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(v) = self.timer_spin {
            c.timer_spin = v;
        }
        if let Some(v) = self.pacer {
            c.pacer = v;
        }
        if let Some(rate) = self.fault_disconnect_rate {
            c.faults
                .push(FaultSpec::with_rate(FaultKind::Disconnect, rate));
        }
        c.faults.extend(self.faults.iter().cloned());
        Ok(c)
    }
}

/// The `sim` binary: parses flags, serves until SIGINT, SIGTERM or (with
/// `--stop-on-stdin-eof`) the end of stdin. Exit codes: 0 clean shutdown, 1 runtime failure
/// (e.g. the address is taken), 2 bad flags or config.
pub fn main() -> ExitCode {
    let args = match SimArgs::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    if args.list_presets {
        print_presets();
        return ExitCode::SUCCESS;
    }
    let config = match args.to_config().and_then(|c| c.resolve().map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sim: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, config))
}

async fn run(args: SimArgs, config: SimConfig) -> ExitCode {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sim: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            // The controller reads this exact line to learn the port.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {addr}");
            let _ = out.flush();
        }
        Err(e) => {
            eprintln!("sim: cannot read the bound address: {e}");
            return ExitCode::FAILURE;
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
    tokio::spawn(async move {
        let why = shutdown_signal(args.stop_on_stdin_eof).await;
        let _ = stop_tx.send(why);
    });
    let shutdown = async move {
        if let Ok(why) = stop_rx.await {
            tracing::info!("{why}: shutting down");
        }
    };
    match crate::serve(listener, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT, SIGTERM or (when asked) end of stdin, naming which.
async fn shutdown_signal(watch_stdin: bool) -> &'static str {
    let stdin_eof = async {
        if !watch_stdin {
            return std::future::pending().await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // A plain thread: tokio's stdin would keep the runtime from shutting down while the
        // blocking read is in progress.
        let spawned = std::thread::Builder::new()
            .name("sim-stdin".to_owned())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let _ = tx.send(());
            });
        if spawned.is_err() {
            tracing::warn!("cannot watch stdin; --stop-on-stdin-eof is ignored");
            return std::future::pending().await;
        }
        let _ = rx.await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        },
        () = terminate => "SIGTERM",
        () = stdin_eof => "end of stdin",
    }
}

fn parse_pacer(s: &str) -> Result<PacerMode, String> {
    match s {
        "thread" => Ok(PacerMode::Thread),
        "inline" => Ok(PacerMode::Inline),
        _ => Err("expected `thread` or `inline`".to_owned()),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn print_presets() {
    let (input, output) = (1000, 256);
    println!("{:<24} description", "preset");
    for p in presets::all() {
        println!("{:<24} {}", p.name, p.summary);
        println!(
            "{:<24}   model {}, context {} tokens",
            "", p.model, p.max_model_len
        );
        if let Some(e) = &p.engine {
            let cap = e.saturation(input, output);
            println!(
                "{:<24}   max_num_seqs {}, max_num_batched_tokens {}, KV cache {} tokens, prefill {} tokens/s, step {} + {} per context token",
                "",
                e.max_num_seqs,
                e.max_num_batched_tokens,
                e.kv_cache_tokens,
                e.prefill_tokens_per_s,
                DisplayDuration(e.step_base),
                DisplayDuration(e.context_token_cost),
            );
            println!(
                "{:<24}   saturated at {input} in / {output} out: batch {}, gap {}, {:.0} output tokens/s, {:.1} requests/s",
                "",
                cap.batch,
                DisplayDuration(cap.step_time),
                cap.output_tokens_per_s,
                cap.requests_per_s,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_a_config() {
        let args = SimArgs::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--ttft",
            "20ms",
            "--itl",
            "1.5ms",
            "--fault-disconnect-rate",
            "0.25",
            "--fault",
            "http_429:rate=0.1",
            "--seed",
            "9",
        ])
        .expect("valid flags");
        let c = args.to_config().expect("config");
        assert_eq!(c.ttft, Duration::from_millis(20));
        assert_eq!(c.itl, Duration::from_micros(1500));
        assert_eq!(c.seed, 9);
        assert_eq!(c.faults.len(), 2);
        assert!(c.resolve().is_ok());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(SimArgs::try_parse_from(["sim", "--ttft", "fast"]).is_err());
        assert!(SimArgs::try_parse_from(["sim", "--fault", "gremlins"]).is_err());
        assert!(SimArgs::try_parse_from(["sim", "--listen", "nowhere"]).is_err());
        let args =
            SimArgs::try_parse_from(["sim", "--fault-disconnect-rate", "1.5"]).expect("parses");
        assert!(args.to_config().expect("config").resolve().is_err());
    }
}
