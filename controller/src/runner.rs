//! Runs a plan: resolves the target, brings up the agents, launches each step on every agent at
//! a common instant, merges what they stream back, and keeps the results folder current.
//!
//! Steps run back to back: step k+1 starts when step k's duration ends, while step k's last
//! requests may still be finishing; each request stays with the step that sent it, because each
//! step is its own share on every agent with its own stream.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use stampede_common::metrics::HistogramBundle;
use stampede_common::plan::{ApiKind, Load, Plan, StageProgram, StepKind, StepPlan, expand_env};
use stampede_common::probe::{ProbeOutcome, ProbeResult, ProbeRun};
use stampede_common::proto::{
    self, Api, ClosedLoop, OpenLoop, RateReply, RequestSlo, SetRateRequest, StageShare,
    StopRequest, run_event, stage_share,
};
use stampede_common::schedule::{ArrivalKind, split_count, split_rate};
use stampede_common::stage::Probe;
use stampede_common::units::micros;
use stampede_common::units::wall_clock_us;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::aggregate::{AgentEnd, MergedInterval, StepAggregate};
use crate::analysis::{analyse, is_client_bound};
use crate::control::{ControlRequest, RateCommand, serve_control, spawn_stdin_reader};
use crate::live;
use crate::monitor::{MonitorRun, add_monitor_agents, gpu_inventory, load_agents};
use crate::pool::{AgentHandle, connect, spawn_local};
use crate::recovery::recovery;
use crate::results::hlog::IntervalHistograms;
use crate::results::rows::{RequestRow, StageRow, TimeseriesRow};
use crate::results::{ResultsWriter, WriterMsg};
use crate::summary::{
    AgentInfo, AgentShare, Manifest, RateChangeRecord, ReportedCounts, RunSummary, SCHEMA,
    StageSummary, TargetInfo, fnv1a64,
};
use crate::target::{preflight, resolve};
use crate::wallclock::UtcTime;

/// How long before a step's start its shares are sent to the agents.
const LEAD: Duration = Duration::from_millis(500);
/// After a stop, how long streams may take beyond the grace period before they are abandoned.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// What `controller run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: PathBuf,
    /// Local agents to start when no address is given.
    pub agents: usize,
    /// Agents to connect to instead of starting local ones.
    pub agent_addrs: Vec<String>,
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

/// Exit codes, as DESIGN.md defines them.
pub mod exit {
    pub const PASS: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const SLO_FAILED: u8 = 2;
    pub const INVALID_EVIDENCE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

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
    let writer = ResultsWriter::create(dir.clone(), &plan.redacted_toml(), interrupt.clone())?;

    let target = resolve(&plan.target, &dir, opts.time_scale).await?;
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

    let agents = bring_up_agents(&opts).await?;
    let agents = add_monitor_agents(agents, &plan.monitor).await?;
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
        schema: SCHEMA,
        plan: plan.name.clone(),
        started_at: started.rfc3339(),
        finished_at: None,
        status: "running",
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
        manifest: Manifest {
            stampede_version: stampede_common::handshake::STAMPEDE_VERSION,
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
    };
    let (control_tx, control_rx) = mpsc::channel(16);
    let feed = live::LiveFeed::start(
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
    let programs = plan
        .programs()
        .map_err(|e| anyhow::anyhow!("{}: {e}", opts.plan.display()))?;
    let mut session = Session {
        ctx: &ctx,
        agents: &agents,
        writer: &writer,
        summary: &mut summary,
        done: BTreeMap::new(),
        finished: Vec::new(),
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
    let (interrupted, slo_aborted, finished) = (
        session.interrupted,
        session.slo_aborted,
        std::mem::take(&mut session.finished),
    );

    // Overall: every measured step's histograms merged, counters added; warm-up is left out.
    let mut bundle = HistogramBundle::new();
    let mut counts = proto::Counts::default();
    let mut duration = Duration::ZERO;
    for agg in finished.iter().filter(|a| !a.plan.is_warmup()) {
        let _ = bundle.merge(&agg.bundle);
        counts += &agg.counts;
        duration += agg.plan.duration;
    }
    let has_slo = plan.stages.iter().any(|s| !s.get_ref().slo.is_empty()) || !plan.slo.is_empty();
    let mut overall =
        StageSummary::compute("overall", "overall", None, duration, &counts, &bundle, &[]);
    let mut classes = Vec::new();
    for agg in finished.iter().filter(|a| !a.plan.is_warmup()) {
        crate::workload::add_classes(&mut classes, &agg.classes);
    }
    overall.classes =
        crate::workload::class_summaries(&ctx.workload, "overall", None, duration, &classes);
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
        "interrupted"
    } else if slo_aborted {
        "aborted"
    } else {
        "completed"
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
        .any(|f| f.code == "accounting");
    if unaccounted {
        writeln!(
            out,
            "error: the request counts do not add up (sent != completed + failed + cancelled, or the error classes differ): the results are not valid evidence"
        )?;
    }
    let client_bound = measured.iter().any(is_client_bound);
    let exit_code = if interrupted {
        exit::INTERRUPTED
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
}

/// The state of a run across its stages.
struct Session<'a> {
    ctx: &'a RunContext<'a>,
    agents: &'a [AgentHandle],
    writer: &'a ResultsWriter,
    summary: &'a mut RunSummary,
    /// Summaries of finished steps by their number in the run.
    done: BTreeMap<usize, StageSummary>,
    finished: Vec<StepAggregate>,
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
    live: live::LiveFeed,
}

impl Session<'_> {
    fn stopped(&self) -> bool {
        self.interrupted || self.slo_aborted || self.abort.is_cancelled()
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
        let agents = self.agents;
        let writer = self.writer;
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(4096);
        let grace = self.ctx.plan.grace.0;
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
        let start_offset_s = |k: usize| (starts[k] - run_start_us) as f64 / 1e6;
        let mut next = 0usize;
        let mut stop_deadline: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let halted = self.interrupted || self.slo_aborted;
            if (next >= steps.len() || halted) && aggregates.is_empty() {
                break;
            }
            let launch_at = if next < steps.len() && !halted {
                local_start
                    + Duration::from_micros(
                        u64::try_from(starts[next] - first_start_us).unwrap_or(0),
                    )
                    - LEAD
            } else {
                far()
            };
            let abandon_at = stop_deadline.unwrap_or_else(far);
            tokio::select! {
                biased;
                () = self.abort.cancelled() => {
                    self.interrupted = true;
                    for (_, mut agg) in std::mem::take(&mut aggregates) {
                        for a in 0..agents.len() {
                            agg.on_failed(a, "abandoned: the run was aborted".into());
                        }
                        self.finish_step(agg);
                    }
                    break;
                }
                () = self.interrupt.cancelled(), if !self.interrupted => {
                    self.interrupted = true;
                    writeln!(out, "interrupted: stopping the agents; requests in flight get {}s", grace.as_secs_f64())?;
                    stop_all(agents, &self.ctx.run_id).await;
                    stop_deadline = Some(Instant::now() + grace + STOP_SLACK);
                }
                () = sleep_until(abandon_at), if stop_deadline.is_some() => {
                    for (_, mut agg) in std::mem::take(&mut aggregates) {
                        for a in 0..agents.len() {
                            agg.on_failed(a, "abandoned: no answer after the stop".into());
                        }
                        self.finish_step(agg);
                    }
                }
                () = sleep_until(launch_at), if next < steps.len() && !halted => {
                    let step = &steps[next];
                    let mut agg = StepAggregate::new(base + next, step.clone(), agents.len());
                    agg.resources = self.ctx.monitoring.step(step, start_offset_s(next));
                    // Monitor-only agents come after the load agents: they get the step's
                    // window to sample and no load.
                    let n_load = load_agents(agents);
                    launch(self.ctx, base + next, step, starts[next], &agents[..n_load], &tx, &mut agg);
                    for (i, m) in agents.iter().enumerate().skip(n_load) {
                        let share = self.ctx.monitoring.monitor_share(
                            &self.ctx.run_id,
                            base + next,
                            step,
                            starts[next] + m.clock.offset_us,
                            i,
                            m,
                        );
                        forward(m, share, base + next, i, &tx);
                    }
                    aggregates.insert(base + next, agg);
                    self.live.step_started(base + next, step, start_offset_s(next));
                    next += 1;
                }
                Some((cmd, reply)) = next_control(&mut self.control) => {
                    let answer = self.change_rate(cmd, &steps, base, next, run_start_us).await;
                    if let Ok(r) = &answer {
                        writeln!(out, "rate: {} now {:.2}x its plan ({:.2} requests/s)", r.step, r.scale, r.qps)?;
                    }
                    let _ = reply.send(answer);
                }
                Some(ev) = rx.recv() => {
                    let (g, completed) = match ev {
                        AgentEvent::Event { step, agent, event } => {
                            let Some(agg) = aggregates.get_mut(&step) else { continue };
                            let merged = match *event {
                                run_event::Event::Interval(report) => match agg.on_interval(agent, &report) {
                                    Ok(m) => m,
                                    Err(e) => agg.on_failed(agent, format!("bad report from agent {}: {e}", agents[agent].hello.agent_id)),
                                },
                                run_event::Event::Records(batch) => {
                                    let rows = batch
                                        .records
                                        .iter()
                                        .map(|r| RequestRow::of(r, &agg.plan.name, &agents[agent].hello.agent_id))
                                        .collect();
                                    writer.send(WriterMsg::Requests(rows));
                                    Vec::new()
                                }
                                run_event::Event::Done(done) => agg.on_done(agent, &done),
                            };
                            (step, merged)
                        }
                        AgentEvent::Ended { step, agent, error } => {
                            let Some(agg) = aggregates.get_mut(&step) else { continue };
                            let why = error.unwrap_or_else(|| "the stream ended without a summary".into());
                            let merged = if agg.ends[agent] == AgentEnd::Running {
                                for line in self.live.agent_failed(step, agent, &why, writer) { writeln!(out, "{line}")?; }
                                agg.on_failed(agent, why)
                            } else { Vec::new() };
                            (step, merged)
                        }
                    };
                    let k = g - base;
                    let scale = self.step_scale.get(&g).copied().unwrap_or(1.0);
                    let offered = steps[k].load.offered_qps(steps[k].duration).map(|q| q * scale);
                    for m in completed {
                        emit_interval(&m, &steps[k].name, offered, start_offset_s(k), writer, &mut self.live, out)?;
                    }
                    if aggregates.get(&g).is_some_and(StepAggregate::finished)
                        && let Some(agg) = aggregates.remove(&g)
                    {
                        let warmup = agg.plan.is_warmup();
                        let failed_slo = !self.finish_step(agg) && !warmup;
                        if failed_slo && self.ctx.plan.abort_on_slo_fail && !self.slo_aborted {
                            self.slo_aborted = true;
                            writeln!(out, "aborting: {} failed a threshold and the plan sets abort_on_slo_fail", steps[k].name)?;
                            stop_all(agents, &self.ctx.run_id).await;
                            stop_deadline = Some(Instant::now() + grace + STOP_SLACK);
                        }
                    }
                }
            }
        }
        Ok((base..self.next_step_no)
            .filter_map(|g| self.done.get(&g).cloned())
            .collect())
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
        for a in self.agents {
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
        let agents = &self.agents[..load_agents(self.agents)];
        let p = &agg.plan;
        let mut s = StageSummary::compute(
            &p.name,
            &p.stage_name,
            Some(&p.load),
            p.duration,
            &agg.counts,
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
        let rec = recovery(&agg.points, base_ttft);
        if rec.failing_from_s.is_some() || base_ttft.is_some() {
            s.recovery = Some(rec);
        }
        s.resources = agg.resources.summary();
        let (rates, counts) = share_split(&p.load, agents.len());
        s.agents = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let merged = &agg.agent_merged[i];
                AgentShare {
                    agent: a.hello.agent_id.clone(),
                    offered_qps: rates.as_ref().map(|r| r[i]),
                    concurrency: counts.as_ref().map(|c| c[i]),
                    sent: merged.sent,
                    completed: merged.completed,
                    failed: merged.failed,
                    cancelled: merged.cancelled,
                    reported: agg.agent_totals[i].as_ref().map(ReportedCounts::from),
                    end: match &agg.ends[i] {
                        AgentEnd::Done => "done".into(),
                        AgentEnd::Failed(why) => why.clone(),
                        AgentEnd::Running => "running".into(),
                    },
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
        self.finished.push(agg);
        pass
    }
}

async fn bring_up_agents(opts: &RunOptions) -> anyhow::Result<Vec<AgentHandle>> {
    let mut agents = Vec::new();
    if opts.agent_addrs.is_empty() {
        let children = spawn_local(opts.agents.max(1)).await?;
        for (i, child) in children.into_iter().enumerate() {
            let addr = child.addr.to_string();
            agents.push(connect(i, &addr, Some(child)).await?);
        }
    } else {
        for (i, addr) in opts.agent_addrs.iter().enumerate() {
            agents.push(connect(i, addr, None).await?);
        }
    }
    Ok(agents)
}

fn emit_interval(
    m: &MergedInterval,
    step: &str,
    offered: Option<f64>,
    step_start_s: f64,
    writer: &ResultsWriter,
    live: &mut live::LiveFeed,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for note in &m.resources.notes {
        writeln!(out, "{note}")?;
    }
    if !m.resources.rows.is_empty() {
        writer.send(WriterMsg::Resources(m.resources.rows.clone()));
    }
    let row = TimeseriesRow::of(m, step, offered, step_start_s);
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

/// Each agent's share of a step's load: rates for open loop, users for closed loop.
fn share_split(load: &Load, agents: usize) -> (Option<Vec<f64>>, Option<Vec<u32>>) {
    let weights = vec![1.0; agents];
    match load {
        Load::Open { qps, .. } => (Some(split_rate(*qps, &weights)), None),
        Load::Closed { concurrency, .. } => (None, Some(split_count(*concurrency, &weights))),
        // A trace is dealt round-robin: each agent gets every n-th request.
        Load::Trace { entries, .. } => {
            let per_agent =
                (0..agents).map(|i| entries.iter().skip(i).step_by(agents.max(1)).count() as f64);
            (Some(per_agent.collect()), None)
        }
    }
}

/// Sends step `k` to every agent and forwards what they stream into `tx`.
fn launch(
    ctx: &RunContext<'_>,
    k: usize,
    step: &StepPlan,
    start_us: i64,
    agents: &[AgentHandle],
    tx: &mpsc::Sender<AgentEvent>,
    agg: &mut StepAggregate,
) {
    let plan = ctx.plan;
    let (rates, counts) = share_split(&step.load, agents.len());
    let goodput = &plan.goodput;
    for (i, agent) in agents.iter().enumerate() {
        let load = match step.load {
            Load::Open {
                qps,
                arrival,
                max_in_flight,
            } => {
                let share_qps = rates.as_ref().map_or(0.0, |r| r[i]);
                // Constant arrivals of several agents interleave: agent i starts i/qps later.
                let phase_us = match arrival {
                    ArrivalKind::Constant => (i as f64 / qps * 1e6) as u64,
                    _ => 0,
                };
                let mut open = OpenLoop {
                    qps: share_qps,
                    phase_us,
                    max_in_flight: max_in_flight
                        .map_or(0, |m| split_count(m, &vec![1.0; agents.len()])[i].max(1)),
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
                    .skip(i)
                    .step_by(agents.len().max(1))
                    .map(|e| proto::TraceEntry {
                        offset_us: micros(e.offset),
                        input_tokens: e.input_tokens,
                        output_tokens: e.output_tokens,
                    })
                    .collect();
                let mut open = OpenLoop {
                    qps: trace.len() as f64 / step.duration.as_secs_f64().max(1e-3),
                    max_in_flight: max_in_flight
                        .map_or(0, |m| split_count(m, &vec![1.0; agents.len()])[i].max(1)),
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
            start_at_unix_us: start_us + agent.clock.offset_us,
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
        forward(agent, share, k, i, tx);
    }
}

/// Runs `share` on agent `i` for step `k` and forwards what it streams into `tx`.
fn forward(
    agent: &AgentHandle,
    share: StageShare,
    k: usize,
    i: usize,
    tx: &mpsc::Sender<AgentEvent>,
) {
    let mut client = agent.client.clone();
    let tx = tx.clone();
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
                    match stream.message().await {
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

async fn stop_all(agents: &[AgentHandle], run_id: &str) {
    for a in agents {
        let mut client = a.client.clone();
        let req = StopRequest {
            run_id: run_id.to_string(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), client.stop(req)).await;
    }
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
