//! The run's control as a pure function: [`Coordinator::on`] takes what happened (an agent's
//! report, a stream's end, a heartbeat tick, a launch due, a rate command, a signal) and the
//! instant it happened, and returns what to do (launch a step, stop agents, emit an event, lose
//! or re-admit an agent, finish). It reads no clock, does no I/O and prints nothing, so every
//! decision is tested with made-up events and exact expected actions.
//!
//! Steps given to [`Coordinator::begin`] run back to back: step k+1 starts when step k's
//! duration ends, while step k's last requests may still be finishing; each request stays with
//! the step that sent it, because each step is its own share on every agent with its own
//! stream.

use std::collections::BTreeMap;
use std::time::Duration;

use stampede_common::plan::{Load, OnAgentLost, Plan, StepPlan};
use stampede_common::proto::{RateReply, ShareSummary, run_event};
use stampede_common::units::micros;
use tokio::time::Instant;

use crate::aggregate::{AgentEnd, MergedInterval, StepAggregate};
use crate::live::command::RateCommand;
use crate::monitor::MonitorRun;
use crate::results::kinds::{AgentEventKind, StepEnd};
use crate::runner::abort_rule::{AbortRule, Judgement};
use crate::runner::messages::{Action, Event, Input, LaunchOrder};
use crate::runner::notice::Notice;
use crate::runner::outcome::{StopReason, StopReasons, is_probe};
use crate::runner::roster::{AgentCard, Roster};
use crate::runner::share::sits_out;
use crate::runner::step_summary::{OverallTotals, summarise};
use crate::summary::{AgentEventRecord, RateChangeRecord, RunSummary, StageSummary};
use crate::wallclock::UtcTime;
use crate::workload::RunWorkload;

/// How long before a step's start its shares are sent to the agents.
pub const LEAD: Duration = Duration::from_millis(500);
/// After a stop, how long streams may take beyond the grace period before they are abandoned.
pub const STOP_SLACK: Duration = Duration::from_secs(10);
/// An agent silent for this many intervals (and at least [`LOST_AFTER_MIN`]) is lost.
const LOST_AFTER_INTERVALS: u32 = 5;
const LOST_AFTER_MIN: Duration = Duration::from_secs(5);

/// The plan's settings the coordinator decides by.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How long requests in flight may finish after a stop.
    pub grace: Duration,
    /// How long an agent may be silent before it is lost.
    pub lost_after: Duration,
    /// `on_agent_lost = "abort"`: a lost agent stops the run.
    pub abort_on_agent_lost: bool,
    /// `abort_on_slo_fail`: a step that fails a threshold stops the run.
    pub abort_on_slo_fail: bool,
    /// `abort_on`: a step whose first requests all fail alike stops the run.
    pub abort_on: AbortRule,
}

impl Config {
    /// The settings of `plan`.
    pub fn of(plan: &Plan) -> Self {
        Config {
            grace: plan.grace.0,
            lost_after: (plan.interval.0 * LOST_AFTER_INTERVALS).max(LOST_AFTER_MIN),
            abort_on_agent_lost: plan.on_agent_lost == OnAgentLost::Abort,
            abort_on_slo_fail: plan.abort_on_slo_fail,
            abort_on: AbortRule::of(&plan.abort_on),
        }
    }
}

/// What summary.json records of the run as it goes.
#[derive(Debug, Default)]
pub struct RunRecord {
    /// Summaries of finished steps by their number in the run.
    pub done: BTreeMap<usize, StageSummary>,
    pub agent_events: Vec<AgentEventRecord>,
    pub rate_changes: Vec<RateChangeRecord>,
    /// `agent_events` of rejoins whose first step has not started yet.
    unplaced: Vec<usize>,
}

impl RunRecord {
    /// Copies the record into the run's summary.
    pub fn write_into(&self, s: &mut RunSummary) {
        s.stages = self.done.values().cloned().collect();
        s.agent_events.clone_from(&self.agent_events);
        s.rate_changes.clone_from(&self.rate_changes);
    }
}

/// How [`Input::Stopped`] sets the stop deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rearm {
    /// After an interrupt: from the answer, whatever was set before.
    Always,
    /// After an abort the plan asks for: from the answer, unless one is set.
    IfUnset,
}

/// The steps of one [`Coordinator::begin`].
#[derive(Debug, Default)]
struct Batch {
    steps: Vec<StepPlan>,
    /// The first step's number in the run.
    base: usize,
    /// How many have been launched.
    next: usize,
    /// Each step's start, microseconds since the epoch.
    starts_us: Vec<i64>,
    /// The first step's start on the monotonic clock.
    local_start: Option<Instant>,
    finished: bool,
}

/// A launched step that is not finished yet.
#[derive(Debug)]
struct Running {
    agg: StepAggregate,
    /// Its start, seconds after the run's first step, and on the monotonic clock.
    start_s: f64,
    /// Until its first requests are judged by `abort_on`.
    judging: bool,
    start: Instant,
}

/// The run's state and every decision on it.
#[derive(Debug)]
pub struct Coordinator {
    cfg: Config,
    roster: Roster,
    monitoring: MonitorRun,
    workload: RunWorkload,
    batch: Batch,
    running: BTreeMap<usize, Running>,
    next_step_no: usize,
    /// The run's first step's start, microseconds since the epoch.
    run_start_us: Option<i64>,
    /// An instant and the wall-clock time it was, to stamp events without reading a clock.
    anchor: (Option<Instant>, i64),
    stop: StopReasons,
    /// When streams still open after a stop are abandoned.
    stop_deadline: Option<Instant>,
    /// How the deadline is set once the agents answered the stop just sent ([`Input::Stopped`]):
    /// the grace period counts from then.
    rearm: Option<Rearm>,
    /// Factor on the planned rate of steps whose rate was changed, by step number.
    step_scale: BTreeMap<usize, f64>,
    record: RunRecord,
    overall: OverallTotals,
}

impl Coordinator {
    /// A coordinator for a run on `roster`'s agents.
    pub fn new(cfg: Config, roster: Roster, monitoring: MonitorRun, workload: RunWorkload) -> Self {
        Coordinator {
            cfg,
            roster,
            monitoring,
            workload,
            batch: Batch::default(),
            running: BTreeMap::new(),
            next_step_no: 0,
            run_start_us: None,
            anchor: (None, 0),
            stop: StopReasons::default(),
            stop_deadline: None,
            rearm: None,
            step_scale: BTreeMap::new(),
            record: RunRecord::default(),
            overall: OverallTotals::default(),
        }
    }

    /// Schedules `steps` back to back, the first [`LEAD`] after `now` (`unix_us` on the wall
    /// clock); returns [`Action::Finish`] at once when there is nothing to run.
    pub fn begin(&mut self, steps: Vec<StepPlan>, now: Instant, unix_us: i64) -> Vec<Action> {
        self.anchor = (Some(now), unix_us);
        let base = self.next_step_no;
        self.next_step_no += steps.len();
        let first_start_us = unix_us.saturating_add(i64::try_from(micros(LEAD)).unwrap_or(0));
        self.run_start_us.get_or_insert(first_start_us);
        let mut starts_us = Vec::with_capacity(steps.len());
        let mut t = first_start_us;
        for s in &steps {
            starts_us.push(t);
            t = t.saturating_add(i64::try_from(micros(s.duration)).unwrap_or(i64::MAX / 4));
        }
        self.batch = Batch {
            steps,
            base,
            next: 0,
            starts_us,
            local_start: Some(now + LEAD),
            finished: false,
        };
        self.stop_deadline = None;
        self.rearm = None;
        let mut out = Vec::new();
        self.finish_if_done(&mut out);
        out
    }

    /// Decides on `input`, which happened at `now`.
    pub fn on(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Abort => self.on_abort(now, &mut out),
            Input::Interrupt => self.on_interrupt(now, &mut out),
            Input::Abandon => self.abandon("abandoned: no answer after the stop", &mut out),
            Input::Stopped => self.on_stopped(now),
            Input::LaunchDue => self.launch_due(now, &mut out),
            Input::Control(cmd) => out.push(self.on_control(cmd)),
            Input::RateSet {
                step,
                scale,
                result,
            } => self.on_rate_set(step, scale, result, now, &mut out),
            Input::Rejoined { index, card } => self.on_rejoined(index, card, now, &mut out),
            Input::Tick { heard } => {
                self.on_tick(&heard, now, &mut out);
                self.settle(now, &mut out);
            }
            Input::Report { step, agent, event } => {
                if self.on_report(step, agent, *event, &mut out) {
                    self.settle(now, &mut out);
                }
            }
            Input::Ended { step, agent, error } => {
                let running = self
                    .running
                    .get(&step)
                    .is_some_and(|r| r.agg.ends[agent] == AgentEnd::Running);
                if running {
                    let why = error.unwrap_or_else(|| "the stream ended without a summary".into());
                    self.lose_agent(agent, &why, now, &mut out);
                }
                self.settle(now, &mut out);
            }
        }
        self.finish_if_done(&mut out);
        out
    }

    /// When the next step is to be sent (its start less [`LEAD`]); None when none is due.
    pub fn next_launch(&self) -> Option<Instant> {
        let b = &self.batch;
        if b.next >= b.steps.len() || self.stop.stopped() {
            return None;
        }
        self.local_start_of(b.next).map(|t| t - LEAD)
    }

    /// When streams still open after a stop are abandoned; None before a stop.
    pub fn stop_deadline(&self) -> Option<Instant> {
        self.stop_deadline
    }

    /// Why the run stopped early, so far.
    pub fn stop_reasons(&self) -> &StopReasons {
        &self.stop
    }

    /// True once the run stopped early.
    pub fn stopped(&self) -> bool {
        self.stop.stopped()
    }

    /// The agents and their states.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// What summary.json records so far.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Every measured step merged.
    pub fn overall(&self) -> &OverallTotals {
        &self.overall
    }

    /// The summaries of the last batch's steps that finished, in order.
    pub fn batch_summaries(&self) -> Vec<StageSummary> {
        let b = &self.batch;
        (b.base..b.base + b.steps.len())
            .filter_map(|g| self.record.done.get(&g).cloned())
            .collect()
    }

    fn finish_if_done(&mut self, out: &mut Vec<Action>) {
        let b = &self.batch;
        let launched = b.next >= b.steps.len() || self.stop.stopped();
        if !b.finished && launched && self.running.is_empty() {
            self.batch.finished = true;
            out.push(Action::Finish);
        }
    }

    fn local_start_of(&self, k: usize) -> Option<Instant> {
        let b = &self.batch;
        let since_first = b.starts_us[k] - b.starts_us[0];
        b.local_start
            .map(|t| t + Duration::from_micros(u64::try_from(since_first).unwrap_or(0)))
    }

    fn start_offset_s(&self, k: usize) -> f64 {
        let run_start = self.run_start_us.unwrap_or(self.batch.starts_us[k]);
        (self.batch.starts_us[k] - run_start) as f64 / 1e6
    }

    /// The wall clock at `now`, microseconds since the epoch.
    fn unix_at(&self, now: Instant) -> i64 {
        let since = self
            .anchor
            .0
            .map_or(Duration::ZERO, |a| now.saturating_duration_since(a));
        self.anchor
            .1
            .saturating_add(i64::try_from(micros(since)).unwrap_or(i64::MAX / 4))
    }

    /// Seconds since the run's first step started, at `now`.
    fn elapsed_s(&self, now: Instant) -> f64 {
        let at = self.unix_at(now);
        (at - self.run_start_us.unwrap_or(at)) as f64 / 1e6
    }

    fn on_abort(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stop.add(StopReason::Aborted);
        self.cut_running(StepEnd::Aborted, now);
        self.abandon("abandoned: the run was aborted", out);
    }

    /// Records on every step whose window is still open that a stop cut it at `now`.
    fn cut_running(&mut self, how: StepEnd, now: Instant) {
        for run in self.running.values_mut() {
            let at = now.saturating_duration_since(run.start);
            run.agg.course.stopped(at, run.agg.plan.duration, how);
        }
    }

    fn on_interrupt(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.stop.interrupted() {
            return;
        }
        self.stop.add(StopReason::Interrupted);
        self.cut_running(StepEnd::Interrupted, now);
        out.push(Action::Emit(Event::Notice(Notice::Interrupted {
            grace: self.cfg.grace,
        })));
        self.stop_agents(Rearm::Always, out);
    }

    /// Tells every reachable agent to stop; the deadline follows their answer.
    fn stop_agents(&mut self, rearm: Rearm, out: &mut Vec<Action>) {
        out.push(Action::Stop {
            agents: self.roster.reachable_indices(),
        });
        self.rearm = Some(match self.rearm {
            Some(Rearm::Always) => Rearm::Always,
            _ => rearm,
        });
    }

    /// The agents answered the stop (or were given up on): streams still open get the grace
    /// period and the slack from now.
    fn on_stopped(&mut self, now: Instant) {
        let deadline = Some(now + self.cfg.grace + STOP_SLACK);
        match self.rearm.take() {
            Some(Rearm::Always) => self.stop_deadline = deadline,
            Some(Rearm::IfUnset) if self.stop_deadline.is_none() => self.stop_deadline = deadline,
            _ => {}
        }
    }

    /// Ends every running step now, each agent's share failed with `why`.
    fn abandon(&mut self, why: &str, out: &mut Vec<Action>) {
        for (_, mut run) in std::mem::take(&mut self.running) {
            for a in 0..self.roster.len() {
                // What this completes is summarised with the step, not written as intervals.
                let _ = run.agg.on_failed(a, why.to_string());
            }
            self.finish_step(run.agg, out);
        }
    }

    fn launch_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        let k = self.batch.next;
        let Some(step) = self.batch.steps.get(k).cloned() else {
            return;
        };
        if self.stop.stopped() {
            return;
        }
        let active = self.roster.active_load();
        if !active.contains(&true) {
            out.push(Action::Emit(Event::Notice(Notice::EveryAgentLost {
                step: step.name.clone(),
            })));
            self.stop.add(StopReason::AgentsLost {
                step: step.name.clone(),
            });
            let who = (String::new(), String::new());
            self.agent_event(
                who,
                AgentEventKind::Abort,
                &step.name,
                "every agent is lost",
                now,
                out,
            );
            return;
        }
        for e in std::mem::take(&mut self.record.unplaced) {
            step.name.clone_into(&mut self.record.agent_events[e].step);
        }
        let g = self.batch.base + k;
        let start_s = self.start_offset_s(k);
        let Some(step_start) = self.local_start_of(k) else {
            return;
        };
        let agg = self.step_aggregate(g, &step, &active, (step_start, start_s));
        // A limit test or a search probes until requests fail (a prompt past the context
        // window answers 400): those failures are its answer, not a refused key.
        let judging = !is_probe(step.kind);
        let order = LaunchOrder {
            step_no: g,
            step: step.clone(),
            start_unix_us: self.batch.starts_us[k],
            active,
            weights: agg.weights.clone(),
            monitors: (self.roster.load_agents()..self.roster.len())
                .filter(|&i| self.roster.reachable(i))
                .collect(),
        };
        out.push(Action::Launch(order));
        self.running.insert(
            g,
            Running {
                agg,
                start_s,
                judging,
                start: step_start,
            },
        );
        out.push(Action::Emit(Event::StepStarted {
            no: g,
            step,
            start_s,
        }));
        self.batch.next += 1;
    }

    /// The aggregate of step `g` as it is launched: lost agents absent, the others running
    /// from the step's start (an instant, and seconds after the run's first step), agents
    /// without a part of the load done at once.
    fn step_aggregate(
        &mut self,
        g: usize,
        step: &StepPlan,
        active: &[bool],
        (step_start, start_s): (Instant, f64),
    ) -> StepAggregate {
        let mut agg = StepAggregate::new(g, step.clone(), self.roster.len());
        agg.resources = self.monitoring.step(step, start_s);
        for i in 0..self.roster.len() {
            match self.roster.lost_why(i) {
                Some(why) => agg.on_absent(i, format!("lost earlier ({why})")),
                None => self.roster.start_step(i, step_start),
            }
        }
        let weights: Vec<f64> = active
            .iter()
            .enumerate()
            .map(|(i, &on)| if on { self.roster.card(i).weight } else { 0.0 })
            .collect();
        for (i, &on) in active.iter().enumerate() {
            if on && sits_out(step, &weights, i) {
                agg.on_done(i, &ShareSummary::default());
            }
        }
        agg.weights = weights;
        agg
    }

    fn on_control(&mut self, cmd: RateCommand) -> Action {
        let Some(k) = self.batch.next.checked_sub(1) else {
            return Action::Reply(Err("no step is running yet".into()));
        };
        let step = &self.batch.steps[k];
        let Load::Open { qps: planned, .. } = step.load else {
            return Action::Reply(Err(format!(
                "{} is not an open-loop rate: its rate cannot change",
                step.name
            )));
        };
        let g = self.batch.base + k;
        let current = self.step_scale.get(&g).copied().unwrap_or(1.0);
        match cmd.apply(current, Some(planned)) {
            Some(scale) => Action::SetRate {
                step: g,
                scale,
                agents: self.roster.reachable_indices(),
            },
            None => Action::Reply(Err(
                "the new rate must be above 0 and at most 1000 times the plan's".into(),
            )),
        }
    }

    fn on_rate_set(
        &mut self,
        g: usize,
        scale: f64,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Err(why) = result {
            out.push(Action::Reply(Err(why)));
            return;
        }
        let k = g.checked_sub(self.batch.base);
        let Some(step) = k.and_then(|k| self.batch.steps.get(k)) else {
            out.push(Action::Reply(Err("the step is over".into())));
            return;
        };
        let planned = match step.load {
            Load::Open { qps, .. } => qps,
            _ => 0.0,
        };
        let name = step.name.clone();
        self.step_scale.insert(g, scale);
        if let Some(run) = self.running.get_mut(&g) {
            run.agg
                .course
                .rate_set(now.saturating_duration_since(run.start), scale);
        }
        self.record.rate_changes.push(RateChangeRecord {
            elapsed_s: self.elapsed_s(now),
            step: name.clone(),
            scale,
            qps: planned * scale,
        });
        out.push(Action::Emit(Event::Summary));
        out.push(Action::Emit(Event::Notice(Notice::RateChanged {
            step: name.clone(),
            scale,
            qps: planned * scale,
        })));
        out.push(Action::Reply(Ok(RateReply {
            step: name,
            scale,
            qps: planned * scale,
        })));
    }

    fn on_rejoined(&mut self, i: usize, card: AgentCard, now: Instant, out: &mut Vec<Action>) {
        if self.roster.addr_taken(i, &card.addr) {
            out.push(Action::Redial { agent: i });
            return;
        }
        out.push(Action::Emit(Event::Notice(Notice::Rejoined(card.clone()))));
        // The step it joins is named when that step starts.
        self.record.unplaced.push(self.record.agent_events.len());
        let who = (card.id.clone(), card.addr.clone());
        let detail = "handshake and workload done";
        self.agent_event(who, AgentEventKind::Rejoined, "", detail, now, out);
        self.roster.rejoin(i, card);
        out.push(Action::Admit { agent: i });
    }

    fn on_tick(&mut self, heard: &[Option<Instant>], now: Instant, out: &mut Vec<Action>) {
        for (i, at) in heard.iter().enumerate().take(self.roster.len()) {
            if let Some(at) = at {
                self.roster.heard(i, *at);
            }
        }
        let silent: Vec<(usize, Duration)> = (0..self.roster.len())
            .filter(|&i| {
                self.roster.reachable(i)
                    && self
                        .running
                        .values()
                        .any(|r| r.agg.ends[i] == AgentEnd::Running)
            })
            .map(|i| (i, self.roster.silence(i, now)))
            .filter(|(_, quiet)| *quiet > self.cfg.lost_after)
            .collect();
        for (i, quiet) in silent {
            let why = format!("no report for {:.1}s", quiet.as_secs_f64());
            self.lose_agent(i, &why, now, out);
        }
    }

    /// Takes what agent `agent` sent for step `g`; false when it is left out (the step is
    /// over, or the agent's share already ended: whatever a lost agent sends late).
    fn on_report(
        &mut self,
        g: usize,
        agent: usize,
        event: run_event::Event,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(run) = self.running.get_mut(&g) else {
            return false;
        };
        if run.agg.ends[agent] != AgentEnd::Running {
            return false;
        }
        let id = &self.roster.card(agent).id;
        let merged = match event {
            run_event::Event::Interval(report) => match run.agg.on_interval(agent, &report) {
                Ok(m) => m,
                Err(e) => run
                    .agg
                    .on_failed(agent, format!("bad report from agent {id}: {e}")),
            },
            run_event::Event::Records(batch) => {
                let rows = batch
                    .records
                    .iter()
                    .map(|r| crate::rows::request_row(r, &run.agg.plan.name, id))
                    .collect();
                out.push(Action::Emit(Event::Requests(rows)));
                Vec::new()
            }
            run_event::Event::Done(done) => run.agg.on_done(agent, &done),
        };
        let elapsed = merged.iter().map(|m| m.end_offset).max();
        self.emit_intervals(g, merged, out);
        if let Some(elapsed) = elapsed {
            self.judge_first_requests(g, elapsed, out);
        }
        true
    }

    /// Applies `abort_on` to step `g`'s first `elapsed`: when its first requests all failed
    /// alike, the run stops and says why.
    fn judge_first_requests(&mut self, g: usize, elapsed: Duration, out: &mut Vec<Action>) {
        let Some(run) = self.running.get_mut(&g).filter(|r| r.judging) else {
            return;
        };
        let (judged, sample) = match self.cfg.abort_on.judge(&run.agg.counts, elapsed) {
            Judgement::Wait => return,
            Judgement::Pass => {
                run.judging = false;
                return;
            }
            Judgement::Abort { judged, sample } => (judged, sample),
        };
        run.judging = false;
        if self.stop.errors_aborted() {
            return;
        }
        let step = run.agg.plan.name.clone();
        self.stop.add(StopReason::FailedAlike {
            step: step.clone(),
            class: sample.label(),
            count: judged,
            message: sample.message.clone(),
        });
        out.push(Action::Emit(Event::Notice(Notice::FailedAlike {
            step,
            judged,
            sample,
        })));
        self.stop_agents(Rearm::IfUnset, out);
    }

    /// Takes agent `i` out of the run: its running shares end with `why` (their data so far
    /// kept), the live view and summary.json say so, it is told to stop, and it is dialled
    /// again, to rejoin at a later step. With `on_agent_lost = "abort"`, the run stops.
    fn lose_agent(&mut self, i: usize, why: &str, now: Instant, out: &mut Vec<Action>) {
        let mut step_name = String::new();
        for (&g, run) in &mut self.running {
            if run.agg.ends[i] != AgentEnd::Running {
                continue;
            }
            out.push(Action::Emit(Event::AgentFailed {
                step: g,
                agent: i,
                why: why.to_string(),
            }));
            run.agg.lose(i, why.to_string());
            step_name.clone_from(&run.agg.plan.name);
        }
        if !self.roster.lose(i, why) {
            return;
        }
        let card = self.roster.card(i).clone();
        self.agent_event(
            (card.id.clone(), card.addr.clone()),
            AgentEventKind::Lost,
            &step_name,
            why,
            now,
            out,
        );
        let abort = self.cfg.abort_on_agent_lost;
        out.push(Action::Lose {
            agent: i,
            redial: !abort,
        });
        if abort && !self.stop.agent_aborted() {
            out.push(Action::Emit(Event::Notice(Notice::AgentLostAbort {
                agent: card.id.clone(),
                why: why.to_string(),
            })));
            self.stop.add(StopReason::AgentLost {
                agent: card.id.clone(),
            });
            let detail = "on_agent_lost = \"abort\"";
            self.agent_event(
                (card.id, card.addr),
                AgentEventKind::Abort,
                &step_name,
                detail,
                now,
                out,
            );
            self.cut_running(StepEnd::Aborted, now);
            self.stop_agents(Rearm::IfUnset, out);
        }
    }

    fn agent_event(
        &mut self,
        (agent, addr): (String, String),
        event: AgentEventKind,
        step: &str,
        detail: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.record.agent_events.push(AgentEventRecord {
            elapsed_s: self.elapsed_s(now),
            at: UtcTime::from_unix_millis(self.unix_at(now) / 1000).rfc3339(),
            agent,
            addr,
            event,
            step: step.to_string(),
            detail: detail.to_string(),
        });
        out.push(Action::Emit(Event::Summary));
    }

    /// Emits step `g`'s newly merged intervals.
    fn emit_intervals(&self, g: usize, merged: Vec<MergedInterval>, out: &mut Vec<Action>) {
        let Some(run) = self.running.get(&g) else {
            return;
        };
        let plan = &run.agg.plan;
        let scale = self.step_scale.get(&g).copied().unwrap_or(1.0);
        let offered = plan.load.offered_qps(plan.duration).map(|q| q * scale);
        for m in merged {
            out.push(Action::Emit(Event::Interval {
                merged: Box::new(m),
                step: plan.name.clone(),
                offered,
                step_start_s: run.start_s,
            }));
        }
    }

    /// Emits what losing or absent agents completed, and summarises every step whose agents
    /// have all finished; a failed threshold stops the run when the plan says so.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        let keys: Vec<usize> = self.running.keys().copied().collect();
        for g in keys {
            let merged = self
                .running
                .get_mut(&g)
                .map(|r| r.agg.take_complete())
                .unwrap_or_default();
            self.emit_intervals(g, merged, out);
            if !self.running.get(&g).is_some_and(|r| r.agg.finished()) {
                continue;
            }
            let Some(run) = self.running.remove(&g) else {
                continue;
            };
            // A warm-up's or a probe's threshold is no verdict on the run (a search's failing
            // probes are how it finds its answer).
            let counts = !run.agg.plan.is_warmup() && !is_probe(run.agg.plan.kind);
            let name = run.agg.plan.name.clone();
            let failed_slo = !self.finish_step(run.agg, out) && counts;
            if failed_slo && self.cfg.abort_on_slo_fail && !self.stop.slo_aborted() {
                self.stop.add(StopReason::SloAbort { step: name.clone() });
                out.push(Action::Emit(Event::Notice(Notice::SloAbort { step: name })));
                self.cut_running(StepEnd::Aborted, now);
                self.stop_agents(Rearm::IfUnset, out);
            }
        }
        // With a stop on its way, the deadline waits for the agents' answer.
        let aborting =
            self.stop.slo_aborted() || self.stop.agent_aborted() || self.stop.errors_aborted();
        if aborting && self.stop_deadline.is_none() && self.rearm.is_none() {
            self.stop_deadline = Some(now + self.cfg.grace + STOP_SLACK);
        }
    }

    /// Summarises a finished step and adds it to the run; returns whether it passed its
    /// thresholds.
    fn finish_step(&mut self, agg: StepAggregate, out: &mut Vec<Action>) -> bool {
        let ids: Vec<String> = (0..self.roster.load_agents())
            .map(|i| self.roster.card(i).id.clone())
            .collect();
        let s = summarise(&agg, &ids, &self.workload, &self.record.done);
        let pass = s.slo.pass;
        self.record.done.insert(agg.index, s.clone());
        self.overall.add(&agg);
        let errors = (!s.error_messages.is_empty()).then(|| Notice::StepErrors {
            step: s.name.clone(),
            messages: s.error_messages.clone(),
        });
        out.push(Action::Emit(Event::StepFinished {
            summary: Box::new(s),
            aggregate: Box::new(agg),
        }));
        if let Some(notice) = errors {
            out.push(Action::Emit(Event::Notice(notice)));
        }
        pass
    }
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
