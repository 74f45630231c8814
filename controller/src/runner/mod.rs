//! Runs a plan: resolves the target, brings up the agents, launches each step on every agent at
//! a common instant, merges what they stream back, and keeps the results folder current.
//!
//! The decisions are a pure function and the effects a thin shell around it:
//!
//! - [`coordinator`]: `on(input, now) -> actions`: every decision of the run, no I/O.
//! - [`messages`]: the coordinator's inputs, actions and events.
//! - [`roster`]: the agents and their states (ready, running, lost, rejoined).
//! - [`outcome`]: the typed stop reasons, the status and the exit code.
//! - [`abort_rule`]: the plan's `abort_on`: a step whose first requests all fail alike.
//! - [`share`]: a step's load split among the agents, and each agent's share.
//! - [`step_summary`]: a finished step's summary, and the run's overall totals.
//! - [`course`]: how a step ran against its plan (pauses, rate changes, a stop that cut it).
//! - [`notice`]: what the run says; the live view's console prints it.
//! - [`shell`]: the async loop that moves inputs in and carries actions out.
//! - [`agent_io`]: the calls to agents (gRPC, or in-process fakes in tests) and rejoining.
//! - [`streams`]: the readers of agents' streams, and when each agent was last heard from.
//! - [`context`]: the run's fixed facts.
//! - `setup`, `stages`, `wrapup`: before the first step, the stages in order, after the last.

pub mod abort_rule;
pub mod agent_io;
pub mod context;
pub mod coordinator;
pub mod course;
pub mod messages;
pub mod notice;
pub mod outcome;
pub mod roster;
pub mod share;
pub mod shell;
pub mod step_summary;
pub mod streams;

mod setup;
mod stages;
mod wrapup;

#[cfg(test)]
mod shell_tests;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::{serve_control, spawn_stdin_reader};
use crate::feed::Console;
use crate::live;
use crate::monitor::MonitorRun;
use crate::results::WriterMsg;
use crate::summary::RunSummary;
use crate::target::{preflight, resolve};

use self::agent_io::GrpcIo;
use self::context::RunContext;
use self::coordinator::{Config, Coordinator};
use self::notice::Notice;
use self::roster::{AgentCard, Roster};
use self::shell::{Effects, Shell};

pub use self::outcome::exit;

/// What `controller run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: PathBuf,
    /// Local agents to start when no address is given.
    pub agents: usize,
    /// Agents to connect to instead of starting local ones (or the plan's `[[agents]]`).
    pub agent_addrs: Vec<String>,
    /// The token and TLS settings agents are reached with.
    pub security: crate::pool::AgentSecurity,
    pub plain: bool,
    /// Parent folder of the run's results folder.
    pub out: PathBuf,
    /// Where to serve the Controller service (rate changes), if anywhere.
    pub control_listen: Option<std::net::SocketAddr>,
    /// Every stage duration (and the simulator's fault schedule) is multiplied by this.
    pub time_scale: f64,
    /// Language of report.html and report.md.
    pub lang: crate::report::i18n::Lang,
    /// Where the live view goes: the dashboard, `controller watch`, `--metrics-listen`.
    pub live: live::LiveHub,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub exit_code: u8,
    pub results_dir: PathBuf,
    pub summary: RunSummary,
}

/// Runs a plan to its end, or until `interrupt` fires (stop sending, let in-flight requests
/// finish within the grace period, finish the files) or `abort` fires (finish the files now).
///
/// # Errors
/// When the plan is invalid, the target or agents cannot be reached before the first step, or
/// a results file cannot be created or written (the run then stops early).
pub async fn run(
    opts: RunOptions,
    interrupt: CancellationToken,
    abort: CancellationToken,
    out: &mut (impl Write + Send),
) -> anyhow::Result<RunOutcome> {
    let out: &mut (dyn Write + Send) = out;
    let mut console = Console::new(out);
    let p = setup::prepare(&opts, &interrupt)?;
    let plan = &p.plan;
    let target = resolve(&plan.target, &opts.plan, &p.dir, opts.time_scale).await?;
    let pre = preflight(
        &target.base_url,
        plan.target.model.as_deref(),
        p.api_key.as_deref(),
        plan.target.connect_timeout.0,
    )
    .await?;
    console.notice(&Notice::Target {
        base_url: target.base_url.clone(),
        model: pre.model.clone(),
        simulator: target.simulator.is_some(),
    })?;
    let agents = setup::agents(&opts, plan, &target.base_url, &p.workload, &mut console).await?;
    let simulator_pid = target.simulator.as_ref().and_then(|s| s.pid());
    let monitoring = MonitorRun::resolve(plan, &target.base_url, simulator_pid, &agents);
    for line in monitoring.startup_lines(&agents) {
        console.notice(&Notice::Monitoring(line))?;
    }
    let summary = setup::summary_header(&p, &opts, &target, &pre, &agents);
    p.writer.send(WriterMsg::Summary(Box::new(summary.clone())));
    p.writer
        .send(WriterMsg::Resources(vec![monitoring.header()]));
    let ctx = RunContext {
        plan,
        model: pre.model,
        base_url: target.base_url.clone(),
        api_key: p.api_key.clone(),
        run_id: p.run_id.clone(),
        monitoring,
        workload: p.workload.clone(),
        security: opts.security.clone(),
    };
    let fx = effects(&opts, &ctx, &p, (interrupt, abort), &agents, &mut console).await?;
    let programs = plan.programs();
    let roster = Roster::new(agents.iter().map(AgentCard::of).collect());
    let coord = Coordinator::new(
        Config::of(plan),
        roster,
        ctx.monitoring.clone(),
        ctx.workload.clone(),
    );
    let mut shell = Shell::new(coord, fx, agents, summary);
    stages::run_stages(&mut shell, plan, programs, &mut console).await?;
    let done = shell.finish();
    let has_slo = plan.stages.iter().any(|s| !s.get_ref().slo.is_empty()) || !plan.slo.is_empty();
    let workload = p.workload.clone();
    let outcome = wrapup::finish(
        done,
        p.writer,
        (p.dir, opts.lang),
        (has_slo, &workload),
        &mut console,
    )?;
    drop(target);
    Ok(outcome)
}

/// The live feed, the control channel (standard input, the dashboard, the control service)
/// and the agents' calls, for the shell.
async fn effects<'a>(
    opts: &RunOptions,
    ctx: &'a RunContext<'a>,
    p: &'a setup::Prepared,
    (interrupt, abort): (CancellationToken, CancellationToken),
    agents: &[crate::pool::AgentHandle],
    console: &mut Console<'_>,
) -> anyhow::Result<Effects<'a>> {
    let (control_tx, control_rx) = mpsc::channel(16);
    let live = crate::feed::LiveFeed::start(
        opts.live.clone(),
        ctx.plan,
        &ctx.base_url,
        &ctx.model,
        agents,
        &p.dir,
    );
    if live.attach_control(&control_tx) {
        spawn_stdin_reader(control_tx.clone());
    }
    if let Some(addr) = opts.control_listen {
        let bound = serve_control(addr, control_tx, live.hub().clone()).await?;
        console.notice(&Notice::Control(bound))?;
    }
    let io = Arc::new(GrpcIo {
        security: ctx.security.clone(),
        workload: ctx.workload.clone(),
    });
    Ok(Effects {
        ctx,
        io,
        writer: &p.writer,
        live,
        control: Some(control_rx),
        interrupt,
        abort,
    })
}
