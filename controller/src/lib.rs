//! Stampede's controller: runs a test plan across agents and reports what it measured.
//!
//! - [`runner`]: runs a plan: target, agents, steps on a common clock, merging, results.
//! - [`pool`]: agents: started locally or dialled, handshake, clock offsets.
//! - [`children`]: child processes tied to the controller's life (agents, the simulator).
//! - [`target`]: the embedded simulator and the pre-flight check of the target.
//! - [`aggregate`]: merging interval reports across agents.
//! - [`monitor`]: what agents sample, monitor-only agents, resources.csv and the saturation
//!   guard.
//! - [`feed`]: merged intervals become the live view's events, with rolling latencies; alerts
//!   are raised and written.
//! - [`rows`]: the results rows filled from what agents sent.
//! - [`control`]: rate commands from stdin and the Controller gRPC service.
//!
//! The products it is built from are crates of their own, re-exported here under the names
//! the code uses: [`results`] (the results folder: [`summary`], rows, hlog, reader, writer),
//! [`report`] (with [`analysis`] and [`compare`]) and [`live`] (the live view: plain lines, the
//! terminal dashboard, alerts, `controller watch` and the Prometheus exporter).
//! - [`wallclock`]: UTC timestamps for metadata.
//! - [`workload`]: the run's workload: checked before the run, loaded on the agents, and
//!   summarised per request class.

pub mod aggregate;
pub mod children;
pub mod control;
pub mod feed;
pub mod monitor;
pub mod pool;
pub mod recovery;
pub mod rows;
pub mod runner;
pub mod target;
pub mod wallclock;
pub mod workload;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use stampede_live as live;
pub use stampede_report::{self as report, analysis, compare};
pub use stampede_results::{self as results, summary};

use crate::report::i18n::Lang;
use crate::runner::{RunOptions, exit};

/// `controller`: runs Stampede test plans.
#[derive(Debug, Parser)]
#[command(
    name = "controller",
    version,
    about = "Stampede: load and performance tests for LLM inference services"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a test plan.
    Run(RunArgs),
    /// Rebuild report.html and report.md from a results folder's files.
    Report(ReportArgs),
    /// Compare two results folders; exit 2 on a regression past the threshold.
    Compare(CompareArgs),
    /// Change the rate of a running controller's current step (it was started with
    /// --control-listen).
    SetQps(SetQpsArgs),
    /// Show the live view of a running controller (started with --control-listen); any number
    /// may watch, and none slows the run.
    Watch(WatchArgs),
}

/// Arguments of `controller watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The running controller's --control-listen address.
    #[arg(value_name = "HOST:PORT")]
    pub addr: String,
    /// Plain output: one line per interval and a final table, even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Arguments of `controller set-qps`.
#[derive(Debug, clap::Args)]
pub struct SetQpsArgs {
    /// The running controller's --control-listen address.
    #[arg(long, value_name = "HOST:PORT")]
    pub control: String,
    /// A rate in requests/s (`N` or `qps N`), `+` or `-` (ten percent), `xF` or `scale F` for F
    /// times the planned rate, `pause`, or `resume` (at the planned rate): the same grammar as
    /// the lines typed at a running controller.
    #[arg(allow_hyphen_values = true)]
    pub value: String,
}

/// Arguments of `controller report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The results folder.
    pub dir: PathBuf,
    /// Language of the report's labels and findings.
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    pub lang: Lang,
}

/// Arguments of `controller compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline results folder.
    pub a: PathBuf,
    /// The results folder compared with it.
    pub b: PathBuf,
    /// A change for the worse beyond noise of at least this many percent is a regression
    /// (for error rates, a tenth of it in percentage points).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    pub threshold: f64,
    /// Where to write the comparison: .json for JSON, else Markdown (default: B/compare-A.md).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Language of the labels.
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    pub lang: Lang,
    /// Compare even when steps did not run as planned (interrupted, paused, rate changed,
    /// aborted); the comparison then warns about each. Without it such runs are refused
    /// (exit 1).
    #[arg(long)]
    pub accept_unplanned: bool,
}

/// Arguments of `controller run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The plan file (TOML).
    pub plan: PathBuf,
    /// Number of local agents to start (ignored when --agent or the plan's [[agents]] name
    /// remote ones).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub agents: u16,
    /// A remote agent, as HOST:PORT, or dns:NAME:PORT for every address NAME resolves to (a
    /// Kubernetes headless Service); repeat for several. Replaces the plan's [[agents]].
    #[arg(long = "agent", value_name = "HOST:PORT")]
    pub agent: Vec<String>,
    /// File holding the token the agents require (else $STAMPEDE_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Reach the agents over TLS, trusting the CA in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: this controller's client certificate (PEM); needs --tls-key and --tls-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the agents' certificates carry, when it is not the host they are dialled by
    /// (an IP address from dns:, for instance).
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// Plain output: one line per interval, for logs and CI.
    #[arg(long)]
    pub plain: bool,
    /// Folder under which the run's results folder is created.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Serve the Controller service here, for `controller set-qps` and `controller watch`
    /// (for example 127.0.0.1:7071).
    #[arg(long, value_name = "ADDR")]
    pub control_listen: Option<std::net::SocketAddr>,
    /// Serve the live stats in Prometheus' text format at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Multiply every stage duration by this (0.01 runs a 24-hour soak in about 15 minutes).
    #[arg(long, default_value_t = 1.0, value_parser = parse_time_scale)]
    pub time_scale: f64,
    /// Language of report.html and report.md.
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    pub lang: Lang,
}

/// `en` or `zh`: the languages of the reports.
fn parse_lang(s: &str) -> Result<Lang, String> {
    s.parse()
}

fn parse_time_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1000.0 => Ok(v),
        _ => Err(format!(
            "expected a factor above 0 and at most 1000, such as 0.05; got {s:?}"
        )),
    }
}

/// Entry point of the `controller` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("controller: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run_command(args).await,
            Command::Report(args) => report_command(&args),
            Command::Compare(args) => compare_command(args),
            Command::SetQps(args) => set_qps_command(args).await,
            Command::Watch(args) => {
                let opts = live::watch::WatchOptions {
                    addr: args.addr,
                    plain: args.plain,
                };
                live::watch::watch_command(opts, &mut std::io::stdout()).await
            }
        }
    });
    ExitCode::from(code)
}

async fn set_qps_command(args: SetQpsArgs) -> u8 {
    use stampede_common::proto::controller_client::ControllerClient;
    let change = match args.value.parse::<live::command::RateCommand>() {
        Ok(cmd) => stampede_common::proto::RateChange::from(cmd),
        Err(why) => {
            eprintln!("error: {why}");
            return exit::ERROR;
        }
    };
    let url = format!("http://{}", args.control);
    let mut client = match ControllerClient::connect(url.clone()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: cannot reach the controller at {}: {e}",
                args.control
            );
            return exit::ERROR;
        }
    };
    match client.set_rate(change).await {
        Ok(r) => {
            let r = r.into_inner();
            println!(
                "{}: {:.2}x the plan, {:.2} requests/s",
                r.step, r.scale, r.qps
            );
            exit::PASS
        }
        Err(status) => {
            eprintln!("error: rate not changed: {}", status.message());
            exit::ERROR
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

async fn run_command(args: RunArgs) -> u8 {
    let interrupt = CancellationToken::new();
    let abort = CancellationToken::new();
    tokio::spawn(watch_signals(interrupt.clone(), abort.clone()));
    let interactive = !args.plain && std::io::stdout().is_terminal();
    let mut dashboard = None;
    let mut hub = live::LiveHub::new(false);
    if interactive {
        let candidate = live::LiveHub::new(true);
        let quit = live::tui::Quit::StopRun {
            interrupt: interrupt.clone(),
            abort: abort.clone(),
        };
        match live::tui::Dashboard::start(candidate.clone(), quit, String::new()) {
            Ok(d) => {
                dashboard = Some(d);
                hub = candidate;
            }
            Err(e) => eprintln!("warning: cannot draw the dashboard ({e}); plain output follows"),
        }
    }
    // While the dashboard owns the terminal, printed lines go to its log and are printed once
    // it is gone.
    let mut sink = live::NoteSink::new(hub.clone());
    let mut stdout = std::io::stdout();
    let out: &mut (dyn Write + Send) = if dashboard.is_some() {
        &mut sink
    } else {
        &mut stdout
    };
    if let Some(addr) = args.metrics_listen {
        match live::metrics::serve(addr, hub.clone()).await {
            Ok(bound) => {
                let _ = writeln!(out, "metrics: http://{bound}/metrics");
            }
            Err(e) => {
                drop(dashboard);
                eprintln!("error: {e:#}");
                return exit::ERROR;
            }
        }
    }
    let security = match pool::AgentSecurity::load(
        args.token_file.as_deref(),
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.tls_domain.as_deref(),
    ) {
        Ok(s) => s,
        Err(e) => {
            drop(dashboard);
            eprintln!("error: {e:#}");
            return exit::ERROR;
        }
    };
    let opts = RunOptions {
        plan: args.plan,
        agents: usize::from(args.agents),
        agent_addrs: args.agent,
        security,
        plain: args.plain,
        out: args.out,
        time_scale: args.time_scale,
        lang: args.lang,
        control_listen: args.control_listen,
        live: hub.clone(),
    };
    let result = runner::run(opts, interrupt, abort, &mut &mut *out).await;
    let status = result
        .as_ref()
        .map_or(results::kinds::RunStatus::Failed, |o| o.summary.status);
    hub.publish(live::state::LiveEvent::Ended(status.to_string()));
    if hub.watchers() > 0 {
        // Watchers get the run's end before the process goes.
        hub.drain(std::time::Duration::from_secs(1)).await;
    }
    if let Some(d) = dashboard {
        d.close();
        print!("{}", sink.text());
    }
    match result {
        Ok(outcome) => outcome.exit_code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}

fn report_command(args: &ReportArgs) -> u8 {
    match report::rebuild(&args.dir, args.lang) {
        Ok(written) => {
            println!("report: {}", written.html.display());
            println!("report: {}", written.markdown.display());
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}

/// Exit codes: 0 no regression, 2 a regression past the threshold, 1 bad input.
fn compare_command(args: CompareArgs) -> u8 {
    if !(args.threshold.is_finite() && args.threshold >= 0.0) {
        eprintln!(
            "error: --threshold must be a percentage of 0 or more, got {}",
            args.threshold
        );
        return exit::ERROR;
    }
    let opts = compare::CompareOptions {
        a: args.a,
        b: args.b,
        threshold_pct: args.threshold,
        out: args.out,
        lang: args.lang,
        accept_unplanned: args.accept_unplanned,
    };
    match compare::run(&opts, &mut std::io::stdout()) {
        Ok(false) => exit::PASS,
        Ok(true) => exit::SLO_FAILED,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}

/// The first SIGINT or SIGTERM stops the run gracefully; a second one finishes the files now.
async fn watch_signals(interrupt: CancellationToken, abort: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    for token in [interrupt, abort] {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
        }
        token.cancel();
    }
}
