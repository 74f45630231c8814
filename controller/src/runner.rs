//! Runs a plan: resolves the target, brings up the agents, launches each step on every agent at
//! a common instant, merges what they stream back, and keeps the results folder current.
//!
//! Steps run back to back: step k+1 starts when step k's duration ends, while step k's last
//! requests may still be finishing; each request stays with the step that sent it, because each
//! step is its own share on every agent with its own stream.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use stampede_common::metrics::{HistogramBundle, Tally};
use stampede_common::plan::{
    ApiKind, Load, OnAgentLost, Plan, StageProgram, StepKind, StepPlan, expand_env,
};
use stampede_common::probe::{ProbeOutcome, ProbeResult, ProbeRun};
use stampede_common::proto::{
    self, Api, ClosedLoop, OpenLoop, RateReply, RequestSlo, SetRateRequest, StageShare,
    StopRequest, run_event, stage_share,
};
use stampede_common::schedule::{ArrivalKind, deal_by_weight, split_count, split_rate};
use stampede_common::stage::Probe;
use stampede_common::units::micros;
use stampede_common::units::wall_clock_us;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::aggregate::{AgentEnd, MergedInterval, StepAggregate};
use crate::analysis::{analyse, is_client_bound};
use crate::control::{ControlRequest, serve_control, spawn_stdin_reader};
use crate::live;
use crate::live::command::RateCommand;
use crate::monitor::{MonitorRun, add_monitor_agents, gpu_inventory, load_agents};
use crate::pool::{
    AgentHandle, AgentSecurity, AgentSpec, DNS_WAIT, check_allows, connect, expand_dns,
    resolve_waiting, spawn_local,
};
use crate::results::hlog::IntervalHistograms;
use crate::results::kinds::{AgentEventKind, FindingCode, RunStatus, ShareEnd};
use crate::results::rows::StageRow;
use crate::results::{ResultsWriter, WriterMsg};
use crate::summary::{
    AgentEventRecord, AgentInfo, AgentShare, Manifest, RateChangeRecord, ReportedCounts,
    RunSummary, SCHEMA, StageSummary, TargetInfo, fnv1a64,
};
use crate::target::{preflight, resolve};
use crate::wallclock::UtcTime;

/// How long before a step's start its shares are sent to the agents.
const LEAD: Duration = Duration::from_millis(500);
/// After a stop, how long streams may take beyond the grace period before they are abandoned.
const STOP_SLACK: Duration = Duration::from_secs(10);
/// An agent silent for this many intervals (and at least [`LOST_AFTER_MIN`]) is lost.
const LOST_AFTER_INTERVALS: u32 = 5;
const LOST_AFTER_MIN: Duration = Duration::from_secs(5);
/// How often silent agents are looked for.
const HEARTBEAT_CHECK: Duration = Duration::from_millis(500);
/// How often a lost agent is dialled again.
const REJOIN_EVERY: Duration = Duration::from_secs(2);

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

pub use stampede_results::exit;

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub exit_code: u8,
    pub results_dir: PathBuf,
    pub summary: RunSummary,
}

enum AgentEvent {
    Event {
        step: usize,
        agent: usize,
        event: Box<run_event::Event>,
    },
    Ended {
        step: usize,
        agent: usize,
        error: Option<String>,
    },
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
    let plan_text = std::fs::read_to_string(&opts.plan)
        .with_context(|| format!("cannot read the plan {}", opts.plan.display()))?;
    let mut plan = Plan::parse(&plan_text, &opts.plan)?;
    if opts.time_scale != 1.0 {
        plan.scale_time(opts.time_scale);
    }
    // Every file of the workload is read and built now: a bad one stops the run before it starts.
    let workload = crate::workload::prepare(&plan, &opts.plan)?;
    let api_key = plan
        .target
        .api_key
        .as_deref()
        .map(|k| expand_env(k, |v| std::env::var(v).ok()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: target.api_key: {e}", opts.plan.display()))?;

    let started = UtcTime::now();
    let dir = opts
        .out
        .join(format!("{}-{}", sanitize(&plan.name), started.compact()));
    // A results file that cannot be written stops the run like a first Ctrl-C; `finish` then
    // returns the error, so the run exits 1 naming it.
    let writer = ResultsWriter::create(dir.clone(), &plan.redacted_toml(), {
        let interrupt = interrupt.clone();
        move || interrupt.cancel()
    })?;

    let target = resolve(&plan.target, &opts.plan, &dir, opts.time_scale).await?;
    let pre = preflight(
        &target.base_url,
        plan.target.model.as_deref(),
        api_key.as_deref(),
        plan.target.connect_timeout.0,
    )
    .await?;
    writeln!(
        out,
        "target {} model {}{}",
        target.base_url,
        pre.model,
        if target.simulator.is_some() {
            " (built-in simulator)"
        } else {
            ""
        }
    )?;

    let agents = bring_up_agents(&opts, &plan).await?;
    let agents = add_monitor_agents(agents, &plan.monitor, &opts.security).await?;
    // An agent whose allow-list leaves out the target says so now, not at the first step.
    for a in &agents[..load_agents(&agents)] {
        check_allows(a, &target.base_url)?;
    }
    crate::workload::load_on_agents(&agents[..load_agents(&agents)], &workload).await?;
    for a in &agents {
        writeln!(
            out,
            "agent {} at {} ({} cores, clock offset {:+.3} ms ± {:.3} ms)",
            a.hello.agent_id,
            a.addr,
            a.hello.cores,
            a.clock.offset_us as f64 / 1000.0,
            a.clock.uncertainty_us as f64 / 1000.0
        )?;
    }
    let monitoring = MonitorRun::resolve(
        &plan,
        &target.base_url,
        target.simulator.as_ref().and_then(|s| s.pid()),
        &agents,
    );
    for line in monitoring.startup_lines(&agents) {
        writeln!(out, "{line}")?;
    }

    let mut summary = RunSummary {
        schema: SCHEMA.into(),
        plan: plan.name.clone(),
        started_at: started.rfc3339(),
        finished_at: None,
        status: RunStatus::Running,
        target: TargetInfo {
            base_url: target.base_url.clone(),
            api: match plan.target.api {
                ApiKind::Chat => "chat".into(),
                ApiKind::Completions => "completions".into(),
            },
            model: pre.model.clone(),
            stream: plan.target.stream,
            simulator: target.simulator.is_some(),
        },
        agents: agents
            .iter()
            .map(|a| AgentInfo {
                id: a.hello.agent_id.clone(),
                addr: a.addr.clone(),
                host: a.hello.host.clone(),
                cores: a.hello.cores,
                version: a.hello.agent_version.clone(),
                local: a.child.is_some(),
                weight: a.weight,
                clock: a.clock,
                monitor_only: a.monitor_only,
            })
            .collect(),
        stages: Vec::new(),
        overall: None,
        slo_pass: true,
        analysis: Default::default(),
        probes: Vec::new(),
        rate_changes: Vec::new(),
        alerts: BTreeMap::new(),
        agent_events: Vec::new(),
        manifest: Manifest {
            stampede_version: stampede_common::handshake::STAMPEDE_VERSION.into(),
            protocol_version: stampede_common::handshake::PROTOCOL_VERSION,
            plan_hash: format!("{:016x}", fnv1a64(plan_text.as_bytes())),
            plan_file: opts.plan.display().to_string(),
            models: pre.models.clone(),
            gpus: gpu_inventory(&agents),
            clock_offsets_us: agents
                .iter()
                .map(|a| (a.hello.agent_id.clone(), a.clock.offset_us))
                .collect(),
            tokenizer: workload.tokenizer.clone(),
        },
    };
    writer.send(WriterMsg::Summary(Box::new(summary.clone())));
    writer.send(WriterMsg::Resources(vec![monitoring.header()]));

    let ctx = RunContext {
        plan: &plan,
        model: pre.model,
        base_url: target.base_url.clone(),
        api_key,
        run_id: format!("{}-{}", sanitize(&plan.name), started.compact()),
        monitoring,
        workload,
        security: opts.security.clone(),
    };
    let (control_tx, control_rx) = mpsc::channel(16);
    let feed = crate::feed::LiveFeed::start(
        opts.live.clone(),
        &plan,
        &ctx.base_url,
        &ctx.model,
        &agents,
        &dir,
    );
    if feed.attach_control(&control_tx) {
        spawn_stdin_reader(control_tx.clone());
    }
    if let Some(addr) = opts.control_listen {
        let bound = serve_control(addr, control_tx, feed.hub().clone()).await?;
        writeln!(
            out,
            "control: controller set-qps --control {bound} <qps|+|-|scale F>"
        )?;
    }
    let programs = plan.programs();
    let (rejoin_tx, rejoin_rx) = mpsc::unbounded_channel();
    let mut session = Session {
        ctx: &ctx,
        lost: vec![None; agents.len()],
        heard: Arc::new((0..agents.len()).map(|_| AtomicU64::new(0)).collect()),
        heard_base: Instant::now(),
        rejoin_tx,
        rejoin_rx,
        rejoin_stop: CancellationToken::new(),
        agent_aborted: false,
        rejoined_unplaced: Vec::new(),
        agents,
        writer: &writer,
        summary: &mut summary,
        done: BTreeMap::new(),
        overall: OverallTotals::default(),
        next_step_no: 0,
        run_start_us: None,
        interrupt,
        abort,
        interrupted: false,
        slo_aborted: false,
        control: Some(control_rx),
        step_scale: BTreeMap::new(),
        live: feed,
    };
    for (stage, program) in plan.stages.iter().zip(programs) {
        if session.stopped() {
            break;
        }
        match program {
            StageProgram::Fixed(steps) => {
                session.drive(steps, out).await?;
            }
            StageProgram::Adaptive {
                template,
                probe,
                warmup,
            } => {
                if let Some(w) = warmup {
                    session.drive(vec![*w], out).await?;
                }
                let names = match &probe {
                    Probe::Search { slo, .. } => slo.clone(),
                    _ => Vec::new(),
                };
                let mut run = ProbeRun::new(probe, *template);
                while !session.stopped() {
                    let Some(step) = run.next_step() else { break };
                    let Some(s) = session.drive(vec![step], out).await?.pop() else {
                        break;
                    };
                    run.record(&probe_outcome(&s, &names));
                }
                let result = run.result();
                writeln!(out, "{}", describe_probe(&result))?;
                session.summary.probes.push(result);
                session
                    .writer
                    .send(WriterMsg::Summary(Box::new(session.summary.clone())));
            }
        }
        if let Some(cooldown) = stage.get_ref().cooldown
            && !session.stopped()
        {
            writeln!(out, "cooldown {} after {}", cooldown, stage.get_ref().name)?;
            tokio::select! {
                () = tokio::time::sleep(cooldown.0) => {}
                () = session.interrupt.cancelled() => {}
            }
        }
    }
    session.summary.alerts = session.live.alert_counts();
    session.rejoin_stop.cancel();
    let (interrupted, slo_aborted, agent_aborted, totals) = (
        session.interrupted,
        session.slo_aborted,
        session.agent_aborted,
        std::mem::take(&mut session.overall),
    );
    let agents = std::mem::take(&mut session.agents);

    let has_slo = plan.stages.iter().any(|s| !s.get_ref().slo.is_empty()) || !plan.slo.is_empty();
    let mut overall = StageSummary::compute(
        "overall",
        "overall",
        None,
        totals.duration,
        &Tally::from(&totals.counts),
        &totals.bundle,
        &[],
    );
    overall.classes = crate::workload::class_summaries(
        &ctx.workload,
        "overall",
        None,
        totals.duration,
        &totals.classes,
    );
    let measured: Vec<StageSummary> = summary
        .stages
        .iter()
        .filter(|s| !s.warmup)
        .cloned()
        .collect();
    summary.analysis = analyse(&measured, has_slo);
    if let Some(best) = summary
        .probes
        .iter()
        .filter(|p| p.kind == "capacity_search")
        .filter_map(|p| p.max_passing)
        .reduce(f64::max)
    {
        summary.analysis.max_qps_within_slo = Some(best);
    }
    summary.slo_pass = measured.iter().all(|s| s.slo.pass);
    summary.overall = Some(overall.clone());
    summary.finished_at = Some(UtcTime::now().rfc3339());
    summary.status = if interrupted {
        RunStatus::Interrupted
    } else if slo_aborted || agent_aborted {
        RunStatus::Aborted
    } else {
        RunStatus::Completed
    };
    writer.send(WriterMsg::Summary(Box::new(summary.clone())));
    writer.finish()?;
    // Every finding (some need the files just written) into summary.json, then the reports.
    let report = crate::report::finish_run(&dir, &mut summary, opts.lang);

    live::final_table(out, &summary.stages)?;
    for f in &summary.analysis.findings {
        writeln!(out, "{}: {} ({})", f.severity, f.message, f.code)?;
        if let Some(advice) = &f.suggestion {
            writeln!(out, "  -> {advice}")?;
        }
    }
    writeln!(out, "results: {}", dir.display())?;
    match report {
        Ok(written) => writeln!(out, "report: {}", written.html.display())?,
        Err(e) => writeln!(out, "warning: the report could not be written: {e:#}")?,
    }

    // Requests that do not add up make the whole run doubtful: say so, and exit 3.
    let unaccounted = summary
        .analysis
        .findings
        .iter()
        .any(|f| f.code == FindingCode::Accounting);
    if unaccounted {
        writeln!(
            out,
            "error: the request counts do not add up (sent != completed + failed + cancelled, or the error classes differ): the results are not valid evidence"
        )?;
    }
    let client_bound = measured.iter().any(is_client_bound);
    let exit_code = if interrupted {
        exit::INTERRUPTED
    } else if agent_aborted {
        exit::ERROR
    } else if overall.requests.sent == 0
        || overall.requests.completed == 0
        || client_bound
        || unaccounted
    {
        exit::INVALID_EVIDENCE
    } else if !summary.slo_pass {
        exit::SLO_FAILED
    } else {
        exit::PASS
    };
    drop(agents);
    drop(target);
    Ok(RunOutcome {
        exit_code,
        results_dir: dir,
        summary,
    })
}

/// The next rate command, or never when there is no control channel any more.
async fn next_control(
    control: &mut Option<mpsc::Receiver<ControlRequest>>,
) -> Option<ControlRequest> {
    match control {
        Some(rx) => match rx.recv().await {
            Some(req) => Some(req),
            None => {
                *control = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// What a probe step showed, for the adaptive stages. `names`: the thresholds that matter
/// (all when empty).
fn probe_outcome(s: &StageSummary, names: &[String]) -> ProbeOutcome {
    let slo_pass = s
        .slo
        .checks
        .iter()
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .all(|c| c.pass);
    ProbeOutcome {
        slo_pass,
        sent: s.requests.sent,
        completed: s.requests.completed,
        failed: s.requests.failed,
        top_error: s
            .errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| (c.clone(), *n)),
        ttft_p50_ms: s.ttft_ms.p50,
        throughput_rps: s.throughput_rps,
        kv_cache_max_pct: s
            .resources
            .stats
            .get("server_kv_cache_usage_pct")
            .map(|m| m.max),
        preempted: s
            .resources
            .stats
            .get("server_preemptions_per_s")
            .is_some_and(|m| m.max > 0.0),
    }
}

/// One line saying what an adaptive stage found.
fn describe_probe(r: &ProbeResult) -> String {
    let fmt = |v: Option<f64>| v.map_or_else(|| "none".to_string(), |v| format!("{v}"));
    let mut line = format!(
        "{} {}: highest passing {} = {}, first failing = {}",
        r.stage,
        r.kind,
        r.unit,
        fmt(r.max_passing),
        fmt(r.first_failing)
    );
    if let Some(mode) = &r.failure_mode {
        line.push_str(&format!(" ({mode})"));
    }
    if let Some(rec) = r.recovered {
        line.push_str(if rec {
            "; recovered"
        } else {
            "; did NOT recover"
        });
    }
    line
}

/// The measured steps of a run, merged as they finish.
#[derive(Default)]
struct OverallTotals {
    bundle: HistogramBundle,
    counts: proto::Counts,
    duration: Duration,
    classes: Vec<(proto::Counts, HistogramBundle)>,
}

struct RunContext<'a> {
    plan: &'a Plan,
    model: String,
    base_url: String,
    api_key: Option<String>,
    run_id: String,
    /// What the agents sample, and how samples become results.
    monitoring: MonitorRun,
    /// The workload, loaded on every load agent.
    workload: crate::workload::RunWorkload,
    /// How agents are reached (and reached again when they rejoin).
    security: AgentSecurity,
}

/// The state of a run across its stages.
struct Session<'a> {
    ctx: &'a RunContext<'a>,
    /// Load agents first, then monitor-only agents; a rejoined agent takes its old place.
    agents: Vec<AgentHandle>,
    /// Why each agent is out of the run, while it is.
    lost: Vec<Option<String>>,
    /// When each agent's last message arrived, in microseconds since `heard_base` (the
    /// streams' readers write it, so a busy merge loop cannot make an agent look silent).
    heard: Arc<Vec<AtomicU64>>,
    heard_base: Instant,
    /// Lost agents dialled again, handshaken and loaded, ready for the next step.
    rejoin_tx: mpsc::UnboundedSender<AgentHandle>,
    rejoin_rx: mpsc::UnboundedReceiver<AgentHandle>,
    rejoin_stop: CancellationToken,
    /// An agent was lost and the plan says `on_agent_lost = "abort"`.
    agent_aborted: bool,
    /// `agent_events` of rejoins whose first step has not started yet.
    rejoined_unplaced: Vec<usize>,
    writer: &'a ResultsWriter,
    summary: &'a mut RunSummary,
    /// Every measured step merged, as steps finish (their aggregates are then dropped, so a
    /// run of many steps holds one bundle, not one a step).
    overall: OverallTotals,
    /// Summaries of finished steps by their number in the run.
    done: BTreeMap<usize, StageSummary>,
    next_step_no: usize,
    /// Wall-clock start of the run's first step, microseconds since the epoch.
    run_start_us: Option<i64>,
    interrupt: CancellationToken,
    abort: CancellationToken,
    interrupted: bool,
    /// A step failed a threshold and the plan asked to abort on that.
    slo_aborted: bool,
    /// Rate commands from standard input and the control service.
    control: Option<mpsc::Receiver<ControlRequest>>,
    /// Factor on the planned rate of steps whose rate was changed, by step number.
    step_scale: BTreeMap<usize, f64>,
    /// The live view: dashboard, watchers, Prometheus, alerts.
    live: crate::feed::LiveFeed,
}

impl Session<'_> {
    fn stopped(&self) -> bool {
        self.interrupted || self.slo_aborted || self.agent_aborted || self.abort.is_cancelled()
    }

    /// Runs `steps` back to back from now and merges their events until every one is done.
    /// Returns their summaries in order (fewer when stopped early).
    async fn drive(
        &mut self,
        steps: Vec<StepPlan>,
        out: &mut (impl Write + Send),
    ) -> anyhow::Result<Vec<StageSummary>> {
        let base = self.next_step_no;
        self.next_step_no += steps.len();
        let writer = self.writer;
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(4096);
        let grace = self.ctx.plan.grace.0;
        let lost_after = (self.ctx.plan.interval.0 * LOST_AFTER_INTERVALS).max(LOST_AFTER_MIN);
        let mut aggregates: BTreeMap<usize, StepAggregate> = BTreeMap::new();
        let first_start_us = wall_clock_us() + i64::try_from(micros(LEAD)).unwrap_or(0);
        let run_start_us = *self.run_start_us.get_or_insert(first_start_us);
        let local_start = Instant::now() + LEAD;
        let mut starts = Vec::with_capacity(steps.len());
        let mut t = first_start_us;
        for s in &steps {
            starts.push(t);
            t += i64::try_from(micros(s.duration)).unwrap_or(i64::MAX / 4);
        }
        let local_start_of = |k: usize| {
            local_start
                + Duration::from_micros(u64::try_from(starts[k] - first_start_us).unwrap_or(0))
        };
        let start_offset_s = |k: usize| (starts[k] - run_start_us) as f64 / 1e6;
        let mut next = 0usize;
        let mut stop_deadline: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_CHECK);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let halted = self.stopped();
            if (next >= steps.len() || halted) && aggregates.is_empty() {
                break;
            }
            let launch_at = if next < steps.len() && !halted {
                local_start_of(next) - LEAD
            } else {
                far()
            };
            let abandon_at = stop_deadline.unwrap_or_else(far);
            tokio::select! {
                biased;
                () = self.abort.cancelled() => {
                    self.interrupted = true;
                    for (_, mut agg) in std::mem::take(&mut aggregates) {
                        for a in 0..self.agents.len() {
                            agg.on_failed(a, "abandoned: the run was aborted".into());
                        }
                        self.finish_step(agg);
                    }
                    break;
                }
                () = self.interrupt.cancelled(), if !self.interrupted => {
                    self.interrupted = true;
                    writeln!(out, "interrupted: stopping the agents; requests in flight get {}s", grace.as_secs_f64())?;
                    stop_all(self.reachable(), &self.ctx.run_id).await;
                    stop_deadline = Some(Instant::now() + grace + STOP_SLACK);
                }
                () = sleep_until(abandon_at), if stop_deadline.is_some() => {
                    for (_, mut agg) in std::mem::take(&mut aggregates) {
                        for a in 0..self.agents.len() {
                            agg.on_failed(a, "abandoned: no answer after the stop".into());
                        }
                        self.finish_step(agg);
                    }
                }
                () = sleep_until(launch_at), if next < steps.len() && !halted => {
                    // An agent back since the last look takes part in this step already.
                    while let Ok(handle) = self.rejoin_rx.try_recv() {
                        self.accept_rejoin(handle, run_start_us, out)?;
                    }
                    let step = &steps[next];
                    let g = base + next;
                    let n_load = load_agents(&self.agents);
                    let active: Vec<bool> = self.lost[..n_load].iter().map(Option::is_none).collect();
                    if !active.contains(&true) {
                        writeln!(out, "aborting: every agent is lost, none is left to run {}", step.name)?;
                        self.agent_aborted = true;
                        let why = "every agent is lost".to_string();
                        self.record_agent_event((String::new(), String::new()), AgentEventKind::Abort, &step.name, why, run_start_us);
                        continue;
                    }
                    for e in std::mem::take(&mut self.rejoined_unplaced) {
                        step.name.clone_into(&mut self.summary.agent_events[e].step);
                    }
                    let mut agg = StepAggregate::new(g, step.clone(), self.agents.len());
                    agg.resources = self.ctx.monitoring.step(step, start_offset_s(next));
                    let step_start = local_start_of(next);
                    for (i, why) in self.lost.iter().enumerate() {
                        if let Some(why) = why {
                            agg.on_absent(i, format!("absent: lost earlier ({why})"));
                        } else {
                            // Silence is counted from the step's start, not from the last step.
                            self.heard_at(i, step_start);
                        }
                    }
                    let streams = Streams { tx: &tx, heard: &self.heard, heard_base: self.heard_base };
                    launch(self.ctx, g, step, starts[next], &self.agents[..n_load], &active, &streams, &mut agg);
                    // Monitor-only agents come after the load agents: they get the step's
                    // window to sample and no load.
                    for (i, m) in self.agents.iter().enumerate().skip(n_load) {
                        if self.lost[i].is_some() {
                            continue;
                        }
                        let share = self.ctx.monitoring.monitor_share(
                            &self.ctx.run_id,
                            g,
                            step,
                            starts[next].saturating_add(m.clock.offset_us),
                            i,
                            m,
                        );
                        forward(m, share, g, i, &streams);
                    }
                    aggregates.insert(g, agg);
                    self.live.step_started(g, step, start_offset_s(next));
                    next += 1;
                }
                Some((cmd, reply)) = next_control(&mut self.control) => {
                    let answer = self.change_rate(cmd, &steps, base, next, run_start_us).await;
                    if let Ok(r) = &answer {
                        writeln!(out, "rate: {} now {:.2}x its plan ({:.2} requests/s)", r.step, r.scale, r.qps)?;
                    }
                    let _ = reply.send(answer);
                }
                Some(handle) = self.rejoin_rx.recv() => {
                    self.accept_rejoin(handle, run_start_us, out)?;
                }
                _ = heartbeat.tick() => {
                    // Queued events mean the merge loop is behind, not that an agent is silent.
                    if !rx.is_empty() {
                        continue;
                    }
                    let silent: Vec<(usize, Duration)> = (0..self.agents.len())
                        .filter(|&i| self.lost[i].is_none() && aggregates.values().any(|a| a.ends[i] == AgentEnd::Running))
                        .filter_map(|i| {
                            let quiet = self.silence(i);
                            (quiet > lost_after).then_some((i, quiet))
                        })
                        .collect();
                    for (i, quiet) in silent {
                        let why = format!("no report for {:.1}s", quiet.as_secs_f64());
                        self.lose_agent(i, &why, &mut aggregates, run_start_us, out).await?;
                    }
                    self.settle_all(&mut aggregates, &steps, base, &start_offset_s, &mut stop_deadline, out).await?;
                }
                Some(ev) = rx.recv() => {
                    match ev {
                        AgentEvent::Event { step, agent, event } => {
                            let Some(agg) = aggregates.get_mut(&step) else { continue };
                            // Whatever a lost agent sends late is left out: its share ended
                            // when it was declared lost.
                            if agg.ends[agent] != AgentEnd::Running {
                                continue;
                            }
                            let id = self.agents[agent].hello.agent_id.clone();
                            let merged = match *event {
                                run_event::Event::Interval(report) => match agg.on_interval(agent, &report) {
                                    Ok(m) => m,
                                    Err(e) => agg.on_failed(agent, format!("bad report from agent {id}: {e}")),
                                },
                                run_event::Event::Records(batch) => {
                                    let rows = batch
                                        .records
                                        .iter()
                                        .map(|r| crate::rows::request_row(r, &agg.plan.name, &id))
                                        .collect();
                                    writer.send(WriterMsg::Requests(rows));
                                    Vec::new()
                                }
                                run_event::Event::Done(done) => agg.on_done(agent, &done),
                            };
                            self.emit(step, merged, &steps, base, &start_offset_s, out)?;
                        }
                        AgentEvent::Ended { step, agent, error } => {
                            if aggregates.get(&step).is_some_and(|a| a.ends[agent] == AgentEnd::Running) {
                                let why = error.unwrap_or_else(|| "the stream ended without a summary".into());
                                self.lose_agent(agent, &why, &mut aggregates, run_start_us, out).await?;
                            }
                        }
                    }
                    self.settle_all(&mut aggregates, &steps, base, &start_offset_s, &mut stop_deadline, out).await?;
                }
            }
        }
        Ok((base..self.next_step_no)
            .filter_map(|g| self.done.get(&g).cloned())
            .collect())
    }

    /// Dials agent `i` again in the background until it answers (see [`rejoin`]).
    fn spawn_rejoin(&self, i: usize) {
        let agent = &self.agents[i];
        let taken = self
            .reachable()
            .filter(|a| a.index != i)
            .map(|a| a.addr.clone())
            .collect();
        tokio::spawn(rejoin(
            RejoinTarget {
                index: i,
                addr: agent.addr.clone(),
                origin: agent.origin.clone(),
                taken,
                weight: agent.weight,
                monitor_only: agent.monitor_only,
                target_url: self.ctx.base_url.clone(),
            },
            self.ctx.security.clone(),
            self.ctx.workload.clone(),
            self.rejoin_tx.clone(),
            self.rejoin_stop.clone(),
        ));
    }

    /// Puts a rejoined agent back in its place, from the next step on.
    fn accept_rejoin(
        &mut self,
        handle: AgentHandle,
        run_start_us: i64,
        out: &mut (impl Write + Send),
    ) -> anyhow::Result<()> {
        let i = handle.index;
        // Two lost agents of one `dns:` name may both find the same new address: one is enough.
        if self
            .reachable()
            .any(|a| a.index != i && a.addr == handle.addr)
        {
            self.spawn_rejoin(i);
            return Ok(());
        }
        writeln!(
            out,
            "agent {} at {} rejoined (clock offset {:+.3} ms ± {:.3} ms); it takes part from the next step",
            handle.hello.agent_id,
            handle.addr,
            handle.clock.offset_us as f64 / 1000.0,
            handle.clock.uncertainty_us as f64 / 1000.0
        )?;
        let who = (handle.hello.agent_id.clone(), handle.addr.clone());
        // The step it joins is named when that step starts.
        self.rejoined_unplaced.push(self.summary.agent_events.len());
        self.record_agent_event(
            who,
            AgentEventKind::Rejoined,
            "",
            "handshake and workload done".into(),
            run_start_us,
        );
        let old = std::mem::replace(&mut self.agents[i], handle);
        self.agents[i].child = old.child;
        self.agents[i].monitor_only = old.monitor_only;
        self.lost[i] = None;
        Ok(())
    }

    /// The agents not lost.
    fn reachable(&self) -> impl Iterator<Item = &AgentHandle> {
        self.agents
            .iter()
            .zip(&self.lost)
            .filter(|(_, lost)| lost.is_none())
            .map(|(a, _)| a)
    }

    /// Microseconds since `heard_base` for `at`.
    fn heard_at(&self, i: usize, at: Instant) {
        let us = micros(at.saturating_duration_since(self.heard_base));
        self.heard[i].fetch_max(us, Ordering::Relaxed);
    }

    /// How long agent `i` has been silent (0 while its step has not started).
    fn silence(&self, i: usize) -> Duration {
        let last = self.heard_base + Duration::from_micros(self.heard[i].load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }

    /// Takes agent `i` out of the run: its running shares end with `why` (their data so far
    /// kept), the live view and summary.json say so, it is told to stop, and it is dialled
    /// again until it answers, to rejoin at a later step. With `on_agent_lost = "abort"`, the
    /// run stops.
    async fn lose_agent(
        &mut self,
        i: usize,
        why: &str,
        aggregates: &mut BTreeMap<usize, StepAggregate>,
        run_start_us: i64,
        out: &mut (impl Write + Send),
    ) -> anyhow::Result<()> {
        let mut step_name = String::new();
        for (&g, agg) in aggregates.iter_mut() {
            if agg.ends[i] != AgentEnd::Running {
                continue;
            }
            for line in self.live.agent_failed(g, i, why, self.writer) {
                writeln!(out, "{line}")?;
            }
            agg.lose(i, why.to_string());
            step_name.clone_from(&agg.plan.name);
        }
        if self.lost[i].is_some() {
            return Ok(());
        }
        self.lost[i] = Some(why.to_string());
        let who = (
            self.agents[i].hello.agent_id.clone(),
            self.agents[i].addr.clone(),
        );
        self.record_agent_event(
            who,
            AgentEventKind::Lost,
            &step_name,
            why.to_string(),
            run_start_us,
        );
        let agent = &self.agents[i];
        // Best effort: an agent that still runs must not go on sending for a run that left it.
        let mut client = agent.client.clone();
        let stop = StopRequest {
            run_id: self.ctx.run_id.clone(),
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.stop(stop)).await;
        });
        if self.ctx.plan.on_agent_lost == OnAgentLost::Abort {
            if !self.agent_aborted {
                writeln!(
                    out,
                    "aborting: agent {} was lost ({why}) and the plan sets on_agent_lost = \"abort\"",
                    agent.hello.agent_id
                )?;
                self.agent_aborted = true;
                let who = (agent.hello.agent_id.clone(), agent.addr.clone());
                let why = "on_agent_lost = \"abort\"".to_string();
                self.record_agent_event(who, AgentEventKind::Abort, &step_name, why, run_start_us);
                stop_all(self.reachable(), &self.ctx.run_id).await;
            }
        } else {
            self.spawn_rejoin(i);
        }
        Ok(())
    }

    fn record_agent_event(
        &mut self,
        (agent, addr): (String, String),
        event: AgentEventKind,
        step: &str,
        detail: String,
        run_start_us: i64,
    ) {
        self.summary.agent_events.push(AgentEventRecord {
            elapsed_s: (wall_clock_us() - run_start_us) as f64 / 1e6,
            at: UtcTime::now().rfc3339(),
            agent,
            addr,
            event,
            step: step.to_string(),
            detail,
        });
        self.writer
            .send(WriterMsg::Summary(Box::new(self.summary.clone())));
    }

    /// Writes out step `g`'s newly merged intervals.
    fn emit(
        &mut self,
        g: usize,
        merged: Vec<MergedInterval>,
        steps: &[StepPlan],
        base: usize,
        start_offset_s: &impl Fn(usize) -> f64,
        out: &mut (impl Write + Send),
    ) -> anyhow::Result<()> {
        let k = g - base;
        let scale = self.step_scale.get(&g).copied().unwrap_or(1.0);
        let offered = steps[k]
            .load
            .offered_qps(steps[k].duration)
            .map(|q| q * scale);
        for m in merged {
            emit_interval(
                &m,
                &steps[k].name,
                offered,
                start_offset_s(k),
                self.writer,
                &mut self.live,
                out,
            )?;
        }
        Ok(())
    }

    /// Emits what losing or absent agents completed, and summarises every step whose agents
    /// have all finished; a failed threshold stops the run when the plan says so.
    async fn settle_all(
        &mut self,
        aggregates: &mut BTreeMap<usize, StepAggregate>,
        steps: &[StepPlan],
        base: usize,
        start_offset_s: &impl Fn(usize) -> f64,
        stop_deadline: &mut Option<Instant>,
        out: &mut (impl Write + Send),
    ) -> anyhow::Result<()> {
        let ready: Vec<usize> = aggregates.keys().copied().collect();
        for g in ready {
            let merged = aggregates
                .get_mut(&g)
                .map(StepAggregate::take_complete)
                .unwrap_or_default();
            self.emit(g, merged, steps, base, start_offset_s, out)?;
            if !aggregates.get(&g).is_some_and(StepAggregate::finished) {
                continue;
            }
            let Some(agg) = aggregates.remove(&g) else {
                continue;
            };
            let warmup = agg.plan.is_warmup();
            let name = agg.plan.name.clone();
            let failed_slo = !self.finish_step(agg) && !warmup;
            if failed_slo && self.ctx.plan.abort_on_slo_fail && !self.slo_aborted {
                self.slo_aborted = true;
                writeln!(
                    out,
                    "aborting: {name} failed a threshold and the plan sets abort_on_slo_fail"
                )?;
                stop_all(self.reachable(), &self.ctx.run_id).await;
            }
        }
        if (self.slo_aborted || self.agent_aborted) && stop_deadline.is_none() {
            *stop_deadline = Some(Instant::now() + self.ctx.plan.grace.0 + STOP_SLACK);
        }
        Ok(())
    }

    /// Applies a rate command to the step sending now, on every agent, and records it.
    async fn change_rate(
        &mut self,
        cmd: RateCommand,
        steps: &[StepPlan],
        base: usize,
        launched: usize,
        run_start_us: i64,
    ) -> Result<RateReply, String> {
        let k = launched.checked_sub(1).ok_or("no step is running yet")?;
        let step = &steps[k];
        let planned = match step.load {
            Load::Open { qps, .. } => qps,
            _ => {
                return Err(format!(
                    "{} is not an open-loop rate: its rate cannot change",
                    step.name
                ));
            }
        };
        let current = self.step_scale.get(&(base + k)).copied().unwrap_or(1.0);
        let scale = cmd
            .apply(current, Some(planned))
            .ok_or("the new rate must be above 0 and at most 1000 times the plan's")?;
        for (a, _) in self
            .agents
            .iter()
            .zip(&self.lost)
            .filter(|(_, l)| l.is_none())
        {
            let mut client = a.client.clone();
            let req = SetRateRequest {
                run_id: self.ctx.run_id.clone(),
                scale,
            };
            match tokio::time::timeout(Duration::from_secs(2), client.set_rate(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => {
                    return Err(format!(
                        "agent {} refused: {}",
                        a.hello.agent_id,
                        status.message()
                    ));
                }
                Err(_) => return Err(format!("agent {} did not answer", a.hello.agent_id)),
            }
        }
        self.step_scale.insert(base + k, scale);
        self.summary.rate_changes.push(RateChangeRecord {
            elapsed_s: (wall_clock_us() - run_start_us) as f64 / 1e6,
            step: step.name.clone(),
            scale,
            qps: planned * scale,
        });
        self.writer
            .send(WriterMsg::Summary(Box::new(self.summary.clone())));
        Ok(RateReply {
            step: step.name.clone(),
            scale,
            qps: planned * scale,
        })
    }

    /// Summarises a finished step, adds it to the summary and writes it out; returns whether it
    /// passed its thresholds.
    fn finish_step(&mut self, agg: StepAggregate) -> bool {
        let agents = &self.agents[..load_agents(&self.agents)];
        let p = &agg.plan;
        let mut s = StageSummary::compute(
            &p.name,
            &p.stage_name,
            Some(&p.load),
            p.duration,
            &Tally::from(&agg.counts),
            &agg.bundle,
            &p.checks,
        );
        s.kind = p.kind;
        s.warmup = p.is_warmup();
        s.input_tokens_planned = p.input_tokens;
        s.output_tokens_planned = p.output_tokens;
        s.classes = crate::workload::class_summaries(
            &self.ctx.workload,
            &p.stage_name,
            Some(&p.load),
            p.duration,
            &agg.classes,
        );
        // After a burst, latency is compared with the base step of the same spike.
        let base_ttft = (p.kind == StepKind::SpikeAfter)
            .then(|| {
                self.done
                    .values()
                    .find(|d| d.stage == p.stage_name && d.kind == StepKind::SpikeBase)
                    .map(|d| d.ttft_ms.p99)
            })
            .flatten();
        let rec = agg.recovery.finish(base_ttft);
        if rec.failing_from_s.is_some() || base_ttft.is_some() {
            s.recovery = Some(rec);
        }
        s.resources = agg.resources.summary();
        let (rates, counts) = share_split(&p.load, &agg.weights, p.duration);
        let seconds = p.duration.as_secs_f64().max(1e-9);
        s.agents = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let merged = &agg.agent_merged[i];
                AgentShare {
                    agent: a.hello.agent_id.clone(),
                    weight: agg.weights.get(i).copied().unwrap_or(0.0),
                    offered_qps: rates.as_ref().and_then(|r| r.get(i).copied()),
                    concurrency: counts.as_ref().and_then(|c| c.get(i).copied()),
                    achieved_qps: merged.sent as f64 / seconds,
                    sent: merged.sent,
                    completed: merged.completed,
                    failed: merged.failed,
                    cancelled: merged.cancelled,
                    reported: agg.agent_totals[i]
                        .as_ref()
                        .map(|c| ReportedCounts::from(&Tally::from(c))),
                    end: match &agg.ends[i] {
                        AgentEnd::Done => ShareEnd::Done,
                        AgentEnd::Failed(why) => ShareEnd::Failed(why.clone()),
                        AgentEnd::Absent(why) => ShareEnd::Absent(why.clone()),
                        AgentEnd::Running => ShareEnd::Running,
                    },
                    coalesced_intervals: agg.backlog[i].0,
                    records_dropped: agg.backlog[i].1,
                }
            })
            .collect();
        let pass = s.slo.pass;
        self.writer
            .send(WriterMsg::Stage(Box::new(StageRow::from(&s))));
        // A mixed workload's classes follow their step, named `step · class`.
        for c in &s.classes {
            let mut row = StageRow::from(c);
            row.name = format!("{} · {}", s.name, c.name);
            self.writer.send(WriterMsg::Stage(Box::new(row)));
        }
        self.done.insert(agg.index, s);
        self.summary.stages = self.done.values().cloned().collect();
        self.writer
            .send(WriterMsg::Summary(Box::new(self.summary.clone())));
        if let Some(s) = self.done.get(&agg.index) {
            self.live.step_finished(s, &agg, self.writer);
        }
        // Overall: every measured step's histograms merged, counters added; warm-up is left out.
        if !agg.plan.is_warmup() {
            let t = &mut self.overall;
            let _ = t.bundle.merge(&agg.bundle);
            t.counts += &agg.counts;
            t.duration += agg.plan.duration;
            crate::workload::add_classes(&mut t.classes, &agg.classes);
        }
        pass
    }
}

/// The run's load agents: the command line's `--agent`s, else the plan's `[[agents]]` (each
/// `dns:` name expanded), else `--agents N` local ones.
async fn bring_up_agents(opts: &RunOptions, plan: &Plan) -> anyhow::Result<Vec<AgentHandle>> {
    let specs: Vec<AgentSpec> = if opts.agent_addrs.is_empty() {
        plan.agents
            .iter()
            .map(|a| AgentSpec {
                addr: a.addr.clone(),
                weight: a.weight,
                origin: None,
            })
            .collect()
    } else {
        opts.agent_addrs
            .iter()
            .map(|addr| AgentSpec {
                addr: addr.clone(),
                weight: None,
                origin: None,
            })
            .collect()
    };
    let mut agents = Vec::new();
    if specs.is_empty() {
        let children = spawn_local(opts.agents.max(1)).await?;
        for (i, child) in children.into_iter().enumerate() {
            let addr = child.addr.to_string();
            agents.push(connect(i, &addr, None, Some(child), &opts.security).await?);
        }
    } else {
        let specs = expand_dns(&specs, |name| resolve_waiting(name, DNS_WAIT)).await?;
        for (i, spec) in specs.iter().enumerate() {
            let mut agent = connect(i, &spec.addr, spec.weight, None, &opts.security).await?;
            agent.origin.clone_from(&spec.origin);
            agents.push(agent);
        }
    }
    Ok(agents)
}

/// A lost agent to dial again.
struct RejoinTarget {
    index: usize,
    addr: String,
    /// The `dns:` name it was found by: a restarted pod may come back at another address.
    origin: Option<String>,
    /// Other agents' addresses, not to be taken for this one.
    taken: Vec<String>,
    weight: f64,
    monitor_only: bool,
    /// The run's target, which the agent's allow-list (perhaps changed by a restart) must allow.
    target_url: String,
}

/// Dials a lost agent every [`REJOIN_EVERY`] until it answers the handshake and builds the
/// run's workload, then hands it back through `back`; gives up when `stop` fires.
async fn rejoin(
    target: RejoinTarget,
    security: AgentSecurity,
    workload: crate::workload::RunWorkload,
    back: mpsc::UnboundedSender<AgentHandle>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REJOIN_EVERY) => {}
        }
        // Its old address first, then the name's addresses no other agent has.
        let mut candidates = vec![target.addr.clone()];
        if let Some(name) = target
            .origin
            .as_deref()
            .and_then(|o| o.strip_prefix("dns:"))
            && let Ok(found) = tokio::net::lookup_host(name).await
        {
            candidates.extend(
                found
                    .map(|a| a.to_string())
                    .filter(|a| *a != target.addr && !target.taken.contains(a)),
            );
        }
        let mut joined = None;
        for addr in &candidates {
            if let Ok(h) = connect(target.index, addr, Some(target.weight), None, &security).await {
                joined = Some(h);
                break;
            }
        }
        let Some(mut handle) = joined else {
            continue;
        };
        handle.origin.clone_from(&target.origin);
        handle.monitor_only = target.monitor_only;
        if !handle.monitor_only {
            if let Err(e) = check_allows(&handle, &target.target_url) {
                tracing::warn!(agent = %target.addr, "not rejoining: {e:#}");
                continue;
            }
            if crate::workload::load_on_agents(std::slice::from_ref(&handle), &workload)
                .await
                .is_err()
            {
                continue;
            }
        }
        let _ = back.send(handle);
        return;
    }
}

fn emit_interval(
    m: &MergedInterval,
    step: &str,
    offered: Option<f64>,
    step_start_s: f64,
    writer: &ResultsWriter,
    live: &mut crate::feed::LiveFeed,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for note in &m.resources.notes {
        writeln!(out, "{note}")?;
    }
    if !m.resources.rows.is_empty() {
        writer.send(WriterMsg::Resources(m.resources.rows.clone()));
    }
    let row = crate::rows::timeseries_row(m, step, offered, step_start_s);
    for line in live.interval(m, &row, writer) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    writer.send(WriterMsg::Interval(row));
    writer.send(WriterMsg::Histograms(Box::new(IntervalHistograms {
        step: step.to_string(),
        start_s: step_start_s + m.start_offset.as_secs_f64(),
        length_s: m.length().as_secs_f64(),
        bundle: m.bundle.clone(),
    })));
    Ok(())
}

/// Each agent's share of a step's load by weight: rates for open loop, users for closed loop.
fn share_split(
    load: &Load,
    weights: &[f64],
    duration: Duration,
) -> (Option<Vec<f64>>, Option<Vec<u32>>) {
    match load {
        Load::Open { qps, .. } => (Some(split_rate(*qps, weights)), None),
        Load::Closed { concurrency, .. } => (None, Some(split_count(*concurrency, weights))),
        // A trace is dealt by weight, request by request: each agent's rate is its part of the
        // requests over the step.
        Load::Trace { entries, .. } => {
            let mut parts = vec![0.0; weights.len()];
            for d in deal_by_weight(weights, entries.len()) {
                parts[d] += 1.0;
            }
            let seconds = duration.as_secs_f64().max(1e-3);
            (Some(parts.into_iter().map(|n| n / seconds).collect()), None)
        }
    }
}

/// Where the streams' readers put what agents send, and when they last heard from each.
struct Streams<'a> {
    tx: &'a mpsc::Sender<AgentEvent>,
    heard: &'a Arc<Vec<AtomicU64>>,
    heard_base: Instant,
}

/// Sends step `k` to every active agent (split by weight) and forwards what they stream.
#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &RunContext<'_>,
    k: usize,
    step: &StepPlan,
    start_us: i64,
    agents: &[AgentHandle],
    active: &[bool],
    streams: &Streams<'_>,
    agg: &mut StepAggregate,
) {
    let plan = ctx.plan;
    let weights: Vec<f64> = agents
        .iter()
        .zip(active)
        .map(|(a, &on)| if on { a.weight } else { 0.0 })
        .collect();
    agg.weights.clone_from(&weights);
    let (rates, counts) = share_split(&step.load, &weights, step.duration);
    // A trace is dealt once, here, and each agent takes its part in order.
    let deal = match &step.load {
        Load::Trace { entries, .. } => deal_by_weight(&weights, entries.len()),
        _ => Vec::new(),
    };
    let goodput = &plan.goodput;
    // Constant arrivals of several agents interleave: the r-th active agent starts r/qps later.
    let rank = |i: usize| active[..i].iter().filter(|&&on| on).count();
    let caps = |m: u32| split_count(m, &weights);
    for (i, agent) in agents.iter().enumerate() {
        if !active[i] {
            continue;
        }
        let load = match step.load {
            Load::Open {
                qps,
                arrival,
                max_in_flight,
            } => {
                let share_qps = rates.as_ref().map_or(0.0, |r| r[i]);
                let phase_us = match arrival {
                    ArrivalKind::Constant => (rank(i) as f64 / qps * 1e6) as u64,
                    _ => 0,
                };
                let mut open = OpenLoop {
                    qps: share_qps,
                    phase_us,
                    max_in_flight: max_in_flight.map_or(0, |m| caps(m)[i].max(1)),
                    ..Default::default()
                };
                open.set_arrival_kind(match arrival {
                    // Each agent ramps its own share of the rate.
                    ArrivalKind::Ramp { to_qps, over } => ArrivalKind::Ramp {
                        to_qps: to_qps * share_qps / qps,
                        over,
                    },
                    other => other,
                });
                stage_share::Load::OpenLoop(open)
            }
            Load::Trace {
                ref entries,
                max_in_flight,
            } => {
                let trace: Vec<proto::TraceEntry> = entries
                    .iter()
                    .zip(&deal)
                    .filter(|(_, d)| **d == i)
                    .map(|(e, _)| proto::TraceEntry {
                        offset_us: micros(e.offset),
                        input_tokens: e.input_tokens,
                        output_tokens: e.output_tokens,
                    })
                    .collect();
                let mut open = OpenLoop {
                    qps: trace.len() as f64 / step.duration.as_secs_f64().max(1e-3),
                    max_in_flight: max_in_flight.map_or(0, |m| caps(m)[i].max(1)),
                    trace,
                    ..Default::default()
                };
                open.arrival = proto::Arrival::Trace as i32;
                stage_share::Load::OpenLoop(open)
            }
            Load::Closed { think_time, .. } => {
                let users = counts.as_ref().map_or(0, |c| c[i]);
                if users == 0 {
                    // Fewer users than agents: this agent sits the step out.
                    agg.on_done(i, &proto::ShareSummary::default());
                    continue;
                }
                stage_share::Load::ClosedLoop(ClosedLoop {
                    concurrency: users,
                    think_time_us: micros(think_time),
                })
            }
        };
        let share = StageShare {
            run_id: ctx.run_id.clone(),
            stage_index: u32::try_from(k).unwrap_or(u32::MAX),
            stage_name: step.name.clone(),
            target: Some(proto::Target {
                base_url: ctx.base_url.clone(),
                api: match plan.target.api {
                    ApiKind::Chat => Api::Chat,
                    ApiKind::Completions => Api::Completions,
                } as i32,
                model: ctx.model.clone(),
                api_key: ctx.api_key.clone().unwrap_or_default(),
                stream: plan.target.stream,
                timeout_us: micros(plan.target.timeout.0),
                connect_timeout_us: micros(plan.target.connect_timeout.0),
                first_token_timeout_us: plan.target.first_token_timeout.map_or(0, |d| micros(d.0)),
                idle_timeout_us: plan.target.idle_timeout.map_or(0, |d| micros(d.0)),
            }),
            workload: Some(proto::Workload {
                input_tokens: step.input_tokens,
                output_tokens: step.output_tokens,
                ignore_eos: plan.workload.ignore_eos,
                workload_id: ctx.workload.id.clone(),
            }),
            load: Some(load),
            start_at_unix_us: start_us.saturating_add(agent.clock.offset_us),
            duration_us: micros(step.duration),
            grace_us: micros(plan.grace.0),
            seed: plan.seed,
            agent_index: u32::try_from(i).unwrap_or(u32::MAX),
            agent_count: u32::try_from(agents.len()).unwrap_or(u32::MAX),
            interval_us: micros(plan.interval.0),
            record_every: plan.results.record_every,
            slo: Some(RequestSlo {
                ttft_us: goodput.ttft.map_or(0, |d| micros(d.0)),
                tpot_us: goodput.tpot.map_or(0, |d| micros(d.0)),
                e2e_us: goodput.e2e.map_or(0, |d| micros(d.0)),
            }),
            monitor: Some(ctx.monitoring.share_config(i, agent)),
            // Fields added later keep their defaults unless set above.
            ..Default::default()
        };
        forward(agent, share, k, i, streams);
    }
}

/// Runs `share` on agent `i` for step `k` and forwards what it streams, noting when each
/// message arrived.
fn forward(agent: &AgentHandle, share: StageShare, k: usize, i: usize, streams: &Streams<'_>) {
    let mut client = agent.client.clone();
    let tx = streams.tx.clone();
    let heard = Arc::clone(streams.heard);
    let base = streams.heard_base;
    let agent_id = agent.hello.agent_id.clone();
    tokio::spawn(async move {
        let error = match client.run(share).await {
            Err(status) => Some(format!(
                "agent {agent_id} refused the step: {}",
                status.message()
            )),
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let message = stream.message().await;
                    heard[i].fetch_max(micros(base.elapsed()), Ordering::Relaxed);
                    match message {
                        Ok(Some(proto::RunEvent { event: Some(event) })) => {
                            if tx
                                .send(AgentEvent::Event {
                                    step: k,
                                    agent: i,
                                    event: Box::new(event),
                                })
                                .await
                                .is_err()
                            {
                                return;
                            }
                            // A full queue (a busy merge loop) held this reader: the agent
                            // was not silent meanwhile.
                            heard[i].fetch_max(micros(base.elapsed()), Ordering::Relaxed);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break None,
                        Err(status) => {
                            break Some(format!(
                                "agent {agent_id} stream failed: {}",
                                status.message()
                            ));
                        }
                    }
                }
            }
        };
        let _ = tx
            .send(AgentEvent::Ended {
                step: k,
                agent: i,
                error,
            })
            .await;
    });
}

/// Tells every agent to stop the run, all at once: one that does not answer within 2 s is
/// left behind (its shares end with its stream).
async fn stop_all<'a>(agents: impl Iterator<Item = &'a AgentHandle>, run_id: &str) {
    let stops = agents.map(|a| {
        let mut client = a.client.clone();
        let req = StopRequest {
            run_id: run_id.to_string(),
        };
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.stop(req)).await;
        }
    });
    futures_util::future::join_all(stops).await;
}

/// A plan name made safe for a folder name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "run".into() } else { s }
}
