//! The runner's side of the live view: turns merged intervals into live events (with the
//! rolling latencies computed from merged histograms, never averaged), raises alerts, writes
//! them to alerts.jsonl, and says what plain mode prints; and the [`Console`], which prints
//! what the run says (its [`Notice`]s), since the runner prints nothing itself.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use stampede_common::metrics::{HistogramBundle, LatencySummary, SparseBundle, Tally};
use stampede_common::plan::{Load, Plan, SloCheck, StepPlan};
use stampede_common::probe::ProbeResult;
use stampede_common::proto::Counts;
use tokio::sync::mpsc;

use crate::aggregate::{AgentEnd, MergedInterval, StepAggregate};
use crate::control::ControlRequest;
use crate::live::alerts::{Alert, AlertEngine, IntervalFacts};
use crate::live::hub::LiveHub;
use crate::live::plain;
use crate::live::state::{
    AgentHealth, IntervalView, Latencies, LiveEvent, Percentiles, RunInfo, StepDone, StepStart,
};
use crate::pool::AgentHandle;
use crate::results::rows::TimeseriesRow;
use crate::results::{ResultsWriter, WriterMsg};
use crate::runner::notice::Notice;
use crate::runner::roster::AgentCard;
use crate::summary::{StageSummary, evaluate};

/// The span of the rolling latencies and of the rolling SLO checks.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One merged interval kept for the rolling window.
struct Recent {
    end_s: f64,
    /// Its own length: a step's last, partial interval counts for what it lasted.
    len_s: f64,
    counts: Counts,
    /// The interval's recorded buckets: a window of 10 s at 100 ms holds 100 of these, which
    /// as whole bundles would be 130 MB.
    buckets: SparseBundle,
}

/// A step while it runs.
struct StepLive {
    name: String,
    checks: Vec<SloCheck>,
    open_loop: bool,
    planned_qps: Option<f64>,
    recent: VecDeque<Recent>,
    total: HistogramBundle,
    errors: BTreeMap<String, u64>,
    /// The step's first message of each error class and status, merged as intervals come.
    error_samples: Counts,
    scale: f64,
}

impl StepLive {
    /// The rate change the row shows, if any: its offered rate carries rate changes (planned
    /// times the factor, 0 when paused).
    fn rate_change(&mut self, row: &TimeseriesRow) -> Option<crate::live::state::RateChange> {
        let scale = match (self.planned_qps, row.offered_qps) {
            (Some(p), Some(o)) if p > 0.0 => o / p,
            _ => self.scale,
        };
        if (scale - self.scale).abs() <= 1e-9 {
            return None;
        }
        self.scale = scale;
        Some(crate::live::state::RateChange {
            step: self.name.clone(),
            scale,
            qps: row.offered_qps.unwrap_or(0.0),
        })
    }

    /// Adds a merged interval to the step's totals and rolling window; returns the window: the
    /// intervals that ended in the last 10 s, merged, and their span.
    fn take(
        &mut self,
        m: &MergedInterval,
        row: &TimeseriesRow,
    ) -> (Counts, HistogramBundle, Duration) {
        let _ = self.total.merge(&m.bundle);
        for (class, n) in &m.counts.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        if !m.counts.error_samples.is_empty() {
            self.error_samples += &Counts {
                error_samples: m.counts.error_samples.clone(),
                ..Counts::default()
            };
        }
        self.recent.push_back(Recent {
            end_s: row.elapsed_s,
            len_s: row.interval_s,
            counts: m.counts.clone(),
            buckets: m.bundle.sparse(),
        });
        let horizon = row.elapsed_s - WINDOW.as_secs_f64() + 1e-6;
        while self
            .recent
            .front()
            .is_some_and(|r| r.end_s - 1e-9 < horizon - row.interval_s)
        {
            self.recent.pop_front();
        }
        let mut counts = Counts::default();
        let mut bundle = HistogramBundle::new();
        let mut span = 0.0;
        for r in self.recent.iter().filter(|r| r.end_s > horizon) {
            counts += &r.counts;
            bundle.add_sparse(&r.buckets);
            span += r.len_s;
        }
        let span = Duration::from_secs_f64(span.max(1e-3));
        (counts, bundle, span)
    }
}

/// Plain mode's line for an interval (none for a drain where nothing finished).
fn plain_line(row: &TimeseriesRow, paused: bool) -> Option<String> {
    if row.drain && row.completed + row.failed == 0 {
        return None;
    }
    let mut line = Vec::new();
    plain::interval_line(&mut line, row).ok()?;
    let mut text = String::from_utf8_lossy(&line).trim_end().to_string();
    if paused {
        text.push_str(" PAUSED");
    }
    Some(text)
}

/// What the runner holds of the live view.
pub struct LiveFeed {
    hub: LiveHub,
    agents: Vec<String>,
    engine: AlertEngine,
    steps: BTreeMap<usize, StepLive>,
    /// Agents whose share of a step failed, by step number.
    lost: BTreeMap<(usize, usize), String>,
    /// Lines plain mode prints at the next chance (alerts raised where nothing is printed).
    pending: Vec<String>,
    last_elapsed_s: f64,
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("agents", &self.agents)
            .finish_non_exhaustive()
    }
}

impl LiveFeed {
    /// Publishes the run's description; `agents` are the agents' ids in their order, and
    /// `lag_limit_ms` the client-saturation guard's schedule-lag limit.
    pub fn new(hub: LiveHub, info: RunInfo, lag_limit_ms: f64) -> Self {
        let agents = info.agents.clone();
        hub.publish(LiveEvent::Run(info));
        LiveFeed {
            hub,
            agents,
            engine: AlertEngine::new(lag_limit_ms),
            steps: BTreeMap::new(),
            lost: BTreeMap::new(),
            pending: Vec::new(),
            last_elapsed_s: 0.0,
        }
    }

    /// The feed of a run about to start: its plan, target, model, agents and results folder.
    pub fn start(
        hub: LiveHub,
        plan: &Plan,
        target: &str,
        model: &str,
        agents: &[AgentHandle],
        dir: &Path,
    ) -> Self {
        let info = RunInfo {
            plan: plan.name.clone(),
            target: target.to_string(),
            model: model.to_string(),
            agents: agents.iter().map(|a| a.hello.agent_id.clone()).collect(),
            results_dir: dir.display().to_string(),
            interval_s: plan.interval.0.as_secs_f64(),
        };
        LiveFeed::new(
            hub,
            info,
            plan.monitor.client_lag_limit.0.as_secs_f64() * 1000.0,
        )
    }

    /// The hub this feed publishes to.
    pub fn hub(&self) -> &LiveHub {
        &self.hub
    }

    /// Hands the dashboard the control channel; says whether standard input may be read for
    /// commands (not while the dashboard owns the terminal).
    pub fn attach_control(&self, tx: &mpsc::Sender<ControlRequest>) -> bool {
        self.hub.set_control(tx.clone());
        !self.hub.interactive()
    }

    /// Alerts fired so far, by kind: summary.json's `alerts`.
    pub fn alert_counts(&self) -> BTreeMap<String, u64> {
        self.engine.counts()
    }

    /// Step `no` was sent to the agents; it starts `start_s` after the run's first step.
    pub fn step_started(&mut self, no: usize, step: &StepPlan, start_s: f64) {
        let offered_qps = step.load.offered_qps(step.duration);
        let concurrency = match step.load {
            Load::Closed { concurrency, .. } => Some(concurrency),
            _ => None,
        };
        self.steps.insert(
            no,
            StepLive {
                name: step.name.clone(),
                checks: step.checks.clone(),
                open_loop: matches!(step.load, Load::Open { .. }),
                planned_qps: offered_qps,
                recent: VecDeque::new(),
                total: HistogramBundle::new(),
                errors: BTreeMap::new(),
                error_samples: Counts::default(),
                scale: 1.0,
            },
        );
        self.hub.publish(LiveEvent::StepStarted(StepStart {
            step_no: u32::try_from(no).unwrap_or(u32::MAX),
            name: step.name.clone(),
            stage: step.stage_name.clone(),
            offered_qps,
            concurrency,
            start_s,
            duration_s: step.duration.as_secs_f64(),
            warmup: step.is_warmup(),
        }));
    }

    /// Takes a merged interval and its timeseries row: publishes it, raises alerts (written to
    /// alerts.jsonl), and returns what plain mode prints (nothing while the dashboard shows it).
    pub fn interval(
        &mut self,
        m: &MergedInterval,
        row: &TimeseriesRow,
        writer: &ResultsWriter,
    ) -> Vec<String> {
        self.last_elapsed_s = row.elapsed_s;
        let mut lines = std::mem::take(&mut self.pending);
        let agents = self.health(m);
        let Some(st) = self.steps.get_mut(&m.step) else {
            return lines;
        };
        if let Some(change) = st.rate_change(row) {
            self.hub.publish(LiveEvent::Rate(change));
        }
        let (counts, bundle, span) = st.take(m, row);
        let window = StageSummary::compute(
            &st.name,
            &st.name,
            None,
            span,
            &Tally::from(&counts),
            &bundle,
            &[],
        );
        let window_slo = evaluate(&window, &st.checks);
        let errors: BTreeMap<String, u64> = m
            .counts
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let alerts = self.engine.interval(&IntervalFacts {
            step: &st.name,
            row,
            errors: &errors,
            window_slo: &window_slo,
            window_sent: counts.sent,
            window_completed: counts.completed,
            window_failed: counts.failed,
            window_timeouts: counts.timeouts,
            open_loop: st.open_loop,
        });
        let view = IntervalView {
            step_no: u32::try_from(m.step).unwrap_or(u32::MAX),
            row: row.clone(),
            window: latencies(&bundle),
            step: latencies(&st.total),
            errors,
            step_errors: st.errors.clone(),
            step_error_messages: Tally::from(&st.error_samples).error_samples,
            agents,
            paused: st.planned_qps.is_some_and(|p| p > 0.0) && row.offered_qps == Some(0.0),
            sent: m.counts.sent,
            output_tokens: m.counts.output_tokens,
        };
        let paused = view.paused;
        self.hub.publish(LiveEvent::Interval(Box::new(view)));
        if !self.hub.interactive() {
            lines.extend(plain_line(row, paused));
        }
        lines.extend(self.raise(alerts, writer));
        if self.hub.interactive() {
            lines.clear();
        }
        lines
    }

    /// An agent's share of step `no` failed (its stream broke, it refused the step): raises
    /// `agent_lost`; returns what plain mode prints.
    pub fn agent_failed(
        &mut self,
        no: usize,
        agent: usize,
        why: &str,
        writer: &ResultsWriter,
    ) -> Vec<String> {
        let id = self.agent_id(agent);
        self.lost.insert((no, agent), why.to_string());
        let step = self
            .steps
            .get(&no)
            .map_or("", |s| s.name.as_str())
            .to_string();
        let alerts = self.engine.agent_lost(&step, &id, why, self.last_elapsed_s);
        let lines = self.raise(alerts, writer);
        if self.hub.interactive() {
            Vec::new()
        } else {
            lines
        }
    }

    /// A step ended: publishes its line of the steps table, resolves its alerts and any lost
    /// agent that ran it to its end.
    pub fn step_finished(&mut self, s: &StageSummary, agg: &StepAggregate, writer: &ResultsWriter) {
        self.steps.remove(&agg.index);
        self.lost.retain(|(no, _), _| *no != agg.index);
        let mut alerts = self.engine.step_ended(&s.name, self.last_elapsed_s);
        for (i, end) in agg.ends.iter().enumerate() {
            if *end == AgentEnd::Done {
                let id = self.agent_id(i);
                alerts.extend(self.engine.agent_ok(&s.name, &id, self.last_elapsed_s));
            }
        }
        let lines = self.raise(alerts, writer);
        if !self.hub.interactive() {
            self.pending.extend(lines);
        }
        self.hub.publish(LiveEvent::StepFinished(StepDone {
            step_no: u32::try_from(agg.index).unwrap_or(u32::MAX),
            name: s.name.clone(),
            offered_qps: s.offered_qps,
            concurrency: s.concurrency,
            achieved_qps: s.achieved_qps,
            ttft_p99_ms: s.ttft_ms.p99,
            e2e_p99_ms: s.e2e_ms.p99,
            output_tokens_per_s: s.tokens.output_per_s,
            error_rate: s.rates.error_rate,
            slo_pass: (!s.slo.checks.is_empty()).then_some(s.slo.pass),
            warmup: s.warmup,
            error_messages: s.error_messages.clone(),
        }));
    }

    fn agent_id(&self, agent: usize) -> String {
        self.agents
            .get(agent)
            .cloned()
            .unwrap_or_else(|| format!("agent-{agent}"))
    }

    /// Publishes and writes alerts; returns their lines.
    fn raise(&mut self, alerts: Vec<Alert>, writer: &ResultsWriter) -> Vec<String> {
        let mut lines = Vec::with_capacity(alerts.len());
        for a in alerts {
            lines.push(a.line());
            writer.send(WriterMsg::Alert(Box::new(a.clone())));
            self.hub.publish(LiveEvent::Alert(a));
        }
        lines
    }

    /// Each agent's schedule lag and CPU in the interval.
    fn health(&self, m: &MergedInterval) -> Vec<AgentHealth> {
        self.agents
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let cpu = m
                    .samples
                    .iter()
                    .filter(|(a, _)| *a == i)
                    .filter_map(|(_, s)| {
                        let cores = f64::from(s.host.as_ref().map_or(1, |h| h.cores).max(1));
                        s.agent.as_ref().map(|p| p.cpu_pct / cores)
                    })
                    .reduce(f64::max);
                AgentHealth {
                    agent: id.clone(),
                    schedule_lag_p99_ms: m
                        .agent_lag_p99_ms
                        .iter()
                        .find(|(a, _)| *a == i)
                        .map(|(_, v)| *v),
                    cpu_pct: cpu.map(|c| (c * 10.0).round() / 10.0),
                    lost: self.lost.get(&(m.step, i)).cloned(),
                }
            })
            .collect()
    }
}

/// The plain printer of what the run says: each [`Notice`] becomes the line (or lines) it
/// always was, and the live feed's lines pass through, in order.
pub struct Console<'a> {
    out: &'a mut (dyn Write + Send),
}

impl<'a> Console<'a> {
    /// A console printing to `out` (standard output, or the dashboard's log).
    pub fn new(out: &'a mut (dyn Write + Send)) -> Self {
        Console { out }
    }

    /// Says `notice`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn notice(&mut self, notice: &Notice) -> std::io::Result<()> {
        let out = &mut *self.out;
        match notice {
            Notice::Target {
                base_url,
                model,
                simulator,
            } => {
                let sim = if *simulator {
                    " (built-in simulator)"
                } else {
                    ""
                };
                writeln!(out, "target {base_url} model {model}{sim}")
            }
            Notice::Agent(a) => writeln!(
                out,
                "agent {} at {} ({} cores, {})",
                a.id,
                a.addr,
                a.cores,
                clock(a)
            ),
            Notice::Rejoined(a) => writeln!(
                out,
                "agent {} at {} rejoined ({}); it takes part from the next step",
                a.id,
                a.addr,
                clock(a)
            ),
            Notice::Monitoring(line) | Notice::Resource(line) => writeln!(out, "{line}"),
            Notice::Control(bound) => writeln!(
                out,
                "control: controller set-qps --control {bound} <qps|+|-|scale F>"
            ),
            Notice::Interrupted { grace } => writeln!(
                out,
                "interrupted: stopping the agents; requests in flight get {}s",
                grace.as_secs_f64()
            ),
            Notice::EveryAgentLost { step } => writeln!(
                out,
                "aborting: every agent is lost, none is left to run {step}"
            ),
            Notice::AgentLostAbort { agent, why } => writeln!(
                out,
                "aborting: agent {agent} was lost ({why}) and the plan sets on_agent_lost = \"abort\""
            ),
            Notice::SloAbort { step } => writeln!(
                out,
                "aborting: {step} failed a threshold and the plan sets abort_on_slo_fail"
            ),
            Notice::FailedAlike {
                step,
                judged,
                sample,
            } => writeln!(
                out,
                "aborting: the first {judged} requests of {step} all failed with {}: {} (abort_on; set abort_on.errors = [] to run on)",
                sample.label(),
                sample.message
            ),
            Notice::StepErrors { step, messages } => {
                for line in plain::error_message_lines(step, messages) {
                    writeln!(out, "{line}")?;
                }
                Ok(())
            }
            Notice::RateChanged { step, scale, qps } => writeln!(
                out,
                "rate: {step} now {scale:.2}x its plan ({qps:.2} requests/s)"
            ),
            Notice::Cooldown { cooldown, stage } => {
                writeln!(out, "cooldown {cooldown} after {stage}")
            }
            Notice::Probe(r) => writeln!(out, "{}", describe_probe(r)),
            Notice::FinalTable(_)
            | Notice::Findings(_)
            | Notice::Written { .. }
            | Notice::Unaccounted => self.end_notice(notice),
        }
    }

    /// The notices of a run's end.
    fn end_notice(&mut self, notice: &Notice) -> std::io::Result<()> {
        let out = &mut *self.out;
        match notice {
            Notice::FinalTable(stages) => plain::final_table(&mut &mut *out, stages),
            Notice::Findings(findings) => {
                for f in findings {
                    writeln!(out, "{}: {} ({})", f.severity, f.message, f.code())?;
                    if let Some(advice) = &f.suggestion {
                        writeln!(out, "  -> {advice}")?;
                    }
                }
                Ok(())
            }
            Notice::Written { results, report } => {
                writeln!(out, "results: {}", results.display())?;
                match report {
                    Ok(html) => writeln!(out, "report: {}", html.display()),
                    Err(e) => writeln!(out, "warning: the report could not be written: {e}"),
                }
            }
            Notice::Unaccounted => writeln!(
                out,
                "error: the request counts do not add up (sent != completed + failed + cancelled, or the error classes differ): the results are not valid evidence"
            ),
            other => self.notice(other),
        }
    }

    /// Prints lines the live feed returned.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn lines(&mut self, lines: &[String]) -> std::io::Result<()> {
        for line in lines {
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    /// Flushes what was printed.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// An agent's clock offset, as its lines say it.
fn clock(a: &AgentCard) -> String {
    format!(
        "clock offset {:+.3} ms ± {:.3} ms",
        a.clock.offset_us as f64 / 1000.0,
        a.clock.uncertainty_us as f64 / 1000.0
    )
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

fn latencies(b: &HistogramBundle) -> Latencies {
    let p = |h| {
        let s = LatencySummary::of(h);
        Percentiles {
            p50_ms: s.p50,
            p99_ms: s.p99,
            count: s.count,
        }
    };
    Latencies {
        ttft: p(&b.ttft),
        itl: p(&b.itl),
        e2e: p(&b.e2e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::metrics::new_histogram;
    use stampede_common::plan::{Bound, StepKind};
    use stampede_common::schedule::ArrivalKind;

    fn step() -> StepPlan {
        StepPlan {
            stage_index: 0,
            stage_name: "s".into(),
            step_index: 0,
            name: "s".into(),
            kind: StepKind::Single,
            load: Load::Open {
                qps: 10.0,
                arrival: ArrivalKind::Constant,
                max_in_flight: None,
            },
            duration: Duration::from_secs(60),
            input_tokens: 1,
            output_tokens: 1,
            checks: vec![SloCheck {
                name: "e2e_p99".into(),
                limit: 1000.0,
                bound: Bound::AtMost,
            }],
        }
    }

    /// A merged interval `i` of 1 s whose requests all took `e2e_ms`.
    fn interval(i: u32, e2e_ms: u64) -> MergedInterval {
        let mut agg = StepAggregate::new(0, step(), 1);
        let mut b = HistogramBundle::new();
        b.e2e = new_histogram();
        for _ in 0..10 {
            b.e2e.record(e2e_ms * 1000).unwrap();
        }
        let report = stampede_common::proto::IntervalReport {
            index: i,
            start_offset_us: u64::from(i) * 1_000_000,
            end_offset_us: u64::from(i + 1) * 1_000_000,
            counts: Some(Counts {
                sent: 10,
                completed: 10,
                ..Default::default()
            }),
            histograms: Some(b.encode().unwrap()),
            ..Default::default()
        };
        // A fresh step whose one agent reported interval `i`: it completes at once.
        agg.on_interval(0, &report).unwrap().pop().unwrap()
    }

    #[test]
    fn the_window_holds_the_last_ten_seconds_and_breaches_alert() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ResultsWriter::create(dir.path().join("r"), "", || {}).unwrap();
        let hub = LiveHub::new(false);
        let mut feed = LiveFeed::new(
            hub.clone(),
            RunInfo {
                agents: vec!["local-0".into()],
                ..Default::default()
            },
            25.0,
        );
        feed.step_started(0, &step(), 0.0);
        let mut printed = Vec::new();
        for i in 0..15u32 {
            let e2e = if i < 12 { 100 } else { 5000 };
            let m = interval(i, e2e);
            let row = crate::rows::timeseries_row(&m, "s", Some(10.0), 0.0);
            printed.extend(feed.interval(&m, &row, &writer));
        }
        let state = hub.state().borrow().clone();
        let last = state.last.as_ref().unwrap();
        // 10 intervals in the window: 7 fast, 3 slow; the step so far: 12 fast, 3 slow.
        assert_eq!(last.window.e2e.count, 100);
        assert_eq!(last.step.e2e.count, 150);
        assert!(last.window.e2e.p99_ms > 4000.0);
        assert!(last.step.e2e.p50_ms < 200.0);
        assert_eq!(state.alert_counts["slo_breach"], 1);
        assert_eq!(feed.alert_counts()["slo_breach"], 1);
        assert!(
            printed
                .iter()
                .any(|l| l.contains("ALERT warning slo_breach s: e2e_p99")),
            "{printed:#?}"
        );
        assert_eq!(printed.iter().filter(|l| l.starts_with('[')).count(), 16);
        drop(feed);
        writer.finish().unwrap();
        let jsonl = std::fs::read_to_string(dir.path().join("r/alerts.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(first["kind"], "slo_breach");
        assert_eq!(first["state"], "firing");
    }

    /// What the console prints for `n`.
    fn said(n: &Notice) -> String {
        let mut out = Vec::new();
        Console::new(&mut out).notice(n).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// An agent as its lines show it.
    fn card() -> AgentCard {
        AgentCard {
            id: "local-0".into(),
            addr: "127.0.0.1:7070".into(),
            cores: 2,
            clock: crate::pool::ClockEstimate {
                offset_us: 14,
                uncertainty_us: 173,
                rtt_us: 346,
            },
            weight: 2.0,
            monitor_only: false,
        }
    }

    /// A capacity search that found 40 requests/s.
    fn probe() -> ProbeResult {
        ProbeResult {
            stage: "capacity".into(),
            kind: "capacity_search".into(),
            unit: "qps".into(),
            max_passing: Some(40.0),
            first_failing: None,
            failure_mode: Some("latency".into()),
            recovered: Some(false),
            curve: Vec::new(),
        }
    }

    #[test]
    fn each_notice_prints_the_line_the_runner_printed() {
        let (card, probe) = (card(), probe());
        let table: Vec<(Notice, &str)> = vec![
            (
                Notice::Target {
                    base_url: "http://127.0.0.1:8000/v1".into(),
                    model: "m".into(),
                    simulator: true,
                },
                "target http://127.0.0.1:8000/v1 model m (built-in simulator)\n",
            ),
            (
                Notice::Agent(card.clone()),
                "agent local-0 at 127.0.0.1:7070 (2 cores, clock offset +0.014 ms ± 0.173 ms)\n",
            ),
            (
                Notice::Rejoined(card),
                "agent local-0 at 127.0.0.1:7070 rejoined (clock offset +0.014 ms ± 0.173 ms); it takes part from the next step\n",
            ),
            (
                Notice::Control("127.0.0.1:9090".parse().unwrap()),
                "control: controller set-qps --control 127.0.0.1:9090 <qps|+|-|scale F>\n",
            ),
            (
                Notice::Interrupted {
                    grace: Duration::from_millis(2500),
                },
                "interrupted: stopping the agents; requests in flight get 2.5s\n",
            ),
            (
                Notice::RateChanged {
                    step: "s".into(),
                    scale: 1.5,
                    qps: 15.0,
                },
                "rate: s now 1.50x its plan (15.00 requests/s)\n",
            ),
            (
                Notice::Cooldown {
                    cooldown: stampede_common::units::HumanDuration(Duration::from_secs(30)),
                    stage: "warm".into(),
                },
                "cooldown 30s after warm\n",
            ),
            (
                Notice::Probe(probe),
                "capacity capacity_search: highest passing qps = 40, first failing = none (latency); did NOT recover\n",
            ),
            (
                Notice::Written {
                    results: "results/r".into(),
                    report: Err("disk full".into()),
                },
                "results: results/r\nwarning: the report could not be written: disk full\n",
            ),
        ];
        for (notice, line) in table {
            assert_eq!(said(&notice), line, "{notice:?}");
        }
    }
}
