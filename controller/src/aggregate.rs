//! Merging agents' interval reports: per step, interval `i` is complete once every agent has
//! reported it or finished; its histograms are merged (never averaged) and its counters added.

use std::collections::BTreeMap;
use std::time::Duration;

use stampede_common::metrics::{HistogramBundle, MetricsError};
use stampede_common::plan::{StepKind, StepPlan};
use stampede_common::proto::{Counts, IntervalReport, ResourceSample, ShareSummary};

use crate::monitor::{IntervalResources, StepResources};
use crate::recovery::{IntervalPoint, RecoveryAcc};

/// One interval of one step, merged across agents.
#[derive(Debug, Clone)]
pub struct MergedInterval {
    pub step: usize,
    pub index: u32,
    pub start_offset: Duration,
    pub end_offset: Duration,
    pub counts: Counts,
    pub bundle: HistogramBundle,
    pub in_flight: u64,
    pub recorder_overflow: u64,
    /// Agents whose report is in this interval.
    pub agents: usize,
    /// The agents' resource samples, with the agent's index.
    pub samples: Vec<(usize, ResourceSample)>,
    /// What the samples add up to; set when the interval completes.
    pub resources: IntervalResources,
    /// Each reporting agent's own schedule lag p99 in milliseconds, with the agent's index:
    /// the live view's agent health.
    pub agent_lag_p99_ms: Vec<(usize, f64)>,
    /// After the step's window: every agent's part of it is in the drain.
    pub drain: bool,
}

impl MergedInterval {
    fn new(step: usize, index: u32) -> Self {
        MergedInterval {
            step,
            index,
            start_offset: Duration::ZERO,
            end_offset: Duration::ZERO,
            counts: Counts::default(),
            bundle: HistogramBundle::new(),
            in_flight: 0,
            recorder_overflow: 0,
            agents: 0,
            samples: Vec::new(),
            resources: IntervalResources::default(),
            agent_lag_p99_ms: Vec::new(),
            drain: false,
        }
    }

    /// What recovery times are read from this interval.
    pub fn point(&self) -> IntervalPoint {
        let ttft = &self.bundle.ttft;
        IntervalPoint {
            end_s: self.end_offset.as_secs_f64(),
            start_s: self.start_offset.as_secs_f64(),
            completed: self.counts.completed,
            failed: self.counts.failed,
            ttft_p99_ms: if ttft.is_empty() {
                0.0
            } else {
                ttft.value_at_quantile(0.99) as f64 / 1000.0
            },
        }
    }

    /// Length of the interval.
    pub fn length(&self) -> Duration {
        self.end_offset.saturating_sub(self.start_offset)
    }
}

/// How one agent's part of a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnd {
    Running,
    Done,
    Failed(String),
    /// Not in the step: lost in an earlier one and not back yet.
    Absent(String),
}

/// Everything known about one step while and after it runs.
#[derive(Debug)]
pub struct StepAggregate {
    pub index: usize,
    pub plan: StepPlan,
    /// Intervals still waiting for some agent.
    pending: BTreeMap<u32, MergedInterval>,
    /// Highest interval index each agent reported.
    last_index: Vec<Option<u32>>,
    pub ends: Vec<AgentEnd>,
    /// Sum of the merged intervals.
    pub counts: Counts,
    pub bundle: HistogramBundle,
    /// Each agent's own totals (from its summary), to check the merge against.
    pub agent_totals: Vec<Option<Counts>>,
    /// Each agent's counts as merged here.
    pub agent_merged: Vec<Counts>,
    pub recorder_overflow: u64,
    /// Recovery times, read interval by interval.
    pub recovery: RecoveryAcc,
    /// The step's resource samples, interval by interval.
    pub resources: StepResources,
    /// Each request class's counts and histograms, by class index (mixed workloads only).
    pub classes: Vec<(Counts, HistogramBundle)>,
    /// Each agent's weight in the step's split (0: not in the step).
    pub weights: Vec<f64>,
    /// Each agent's intervals folded and records dropped on a full stream.
    pub backlog: Vec<(u32, u64)>,
    /// The part of `counts` that finished after the step's window (reports marked `drain`),
    /// and of each request class's.
    pub drain: Counts,
    pub drain_classes: Vec<(Counts, HistogramBundle)>,
    /// Where the window ended, as the agents' reports say: the latest end of a report inside
    /// it (the planned end, or where a stop cut it); and where the drain's last report ended.
    pub window_end: Option<Duration>,
    pub drain_end: Option<Duration>,
    /// How the step ran: rate changes, pauses and a stop that cut it.
    pub course: crate::runner::course::StepCourse,
}

impl StepAggregate {
    pub fn new(index: usize, plan: StepPlan, agents: usize) -> Self {
        let settling = plan.kind == StepKind::SpikeAfter;
        StepAggregate {
            index,
            plan,
            pending: BTreeMap::new(),
            last_index: vec![None; agents],
            ends: vec![AgentEnd::Running; agents],
            counts: Counts::default(),
            bundle: HistogramBundle::new(),
            agent_totals: vec![None; agents],
            agent_merged: vec![Counts::default(); agents],
            recorder_overflow: 0,
            recovery: RecoveryAcc::new(settling),
            resources: StepResources::default(),
            classes: Vec::new(),
            weights: vec![1.0; agents],
            backlog: vec![(0, 0); agents],
            drain: Counts::default(),
            drain_classes: Vec::new(),
            window_end: None,
            drain_end: None,
            course: crate::runner::course::StepCourse::default(),
        }
    }

    /// Takes one agent's interval report; returns the intervals it completed, in order.
    ///
    /// # Errors
    /// When the report's histograms cannot be decoded.
    pub fn on_interval(
        &mut self,
        agent: usize,
        report: &IntervalReport,
    ) -> Result<Vec<MergedInterval>, MetricsError> {
        let bundle = HistogramBundle::decode(&report.histograms.clone().unwrap_or_default())?;
        let counts = report.counts.clone().unwrap_or_default();
        let entry = self
            .pending
            .entry(report.index)
            .or_insert_with(|| MergedInterval::new(self.index, report.index));
        entry.bundle.merge(&bundle)?;
        entry.counts += &counts;
        entry.start_offset = Duration::from_micros(report.start_offset_us);
        entry.end_offset = entry
            .end_offset
            .max(Duration::from_micros(report.end_offset_us));
        entry.drain = report.drain && (entry.agents == 0 || entry.drain);
        let end = Duration::from_micros(report.end_offset_us);
        if report.drain {
            self.drain += &counts;
            self.drain_end = self.drain_end.max(Some(end));
        } else {
            self.window_end = self.window_end.max(Some(end));
        }
        entry.in_flight += u64::from(report.in_flight);
        entry.recorder_overflow += report.recorder_overflow;
        entry.agents += 1;
        if !bundle.schedule_lag.is_empty() {
            let p99_us = bundle.schedule_lag.value_at_quantile(0.99);
            entry.agent_lag_p99_ms.push((agent, p99_us as f64 / 1000.0));
        }
        entry
            .samples
            .extend(report.samples.iter().map(|s| (agent, s.clone())));
        self.agent_merged[agent] += &counts;
        self.backlog[agent].0 += report.coalesced_intervals;
        self.backlog[agent].1 += report.records_dropped;
        crate::workload::merge_class_reports(&mut self.classes, &report.classes)?;
        if report.drain {
            crate::workload::merge_class_reports(&mut self.drain_classes, &report.classes)?;
        }
        self.last_index[agent] =
            Some(self.last_index[agent].map_or(report.index, |i| i.max(report.index)));
        Ok(self.take_complete())
    }

    /// Records that an agent finished its share; returns intervals that no longer wait for it.
    pub fn on_done(&mut self, agent: usize, summary: &ShareSummary) -> Vec<MergedInterval> {
        self.agent_totals[agent] = summary.counts.clone();
        self.ends[agent] = AgentEnd::Done;
        self.take_complete()
    }

    /// Records that an agent's share failed or its stream broke.
    pub fn on_failed(&mut self, agent: usize, why: String) -> Vec<MergedInterval> {
        self.lose(agent, why);
        self.take_complete()
    }

    /// Records that an agent's share failed, leaving the intervals it completes for
    /// [`take_complete`](Self::take_complete).
    ///
    /// Requests it reported sent but not yet finished are gone with it: they are counted as
    /// cancelled (the client abandoned them, whatever the server did), so the step's and the
    /// agent's counts still add up.
    pub fn lose(&mut self, agent: usize, why: String) {
        if self.ends[agent] != AgentEnd::Running {
            return;
        }
        let m = &mut self.agent_merged[agent];
        let open = m.sent.saturating_sub(m.completed + m.failed + m.cancelled);
        if open == 0 {
            self.ends[agent] = AgentEnd::Failed(why);
            return;
        }
        for c in [m, &mut self.counts] {
            c.cancelled += open;
            *c.errors.entry("cancelled".to_string()).or_default() += open;
        }
        self.ends[agent] = AgentEnd::Failed(format!(
            "{why}; its {open} requests in flight are counted as cancelled"
        ));
    }

    /// Records that an agent takes no part in the step.
    pub fn on_absent(&mut self, agent: usize, why: String) {
        if self.ends[agent] == AgentEnd::Running {
            self.ends[agent] = AgentEnd::Absent(why);
        }
    }

    /// True when every agent has finished or failed.
    pub fn finished(&self) -> bool {
        self.ends.iter().all(|e| *e != AgentEnd::Running)
    }

    /// Intervals no agent is still to report, in order.
    pub fn take_complete(&mut self) -> Vec<MergedInterval> {
        let mut out = Vec::new();
        while let Some((&index, _)) = self.pending.first_key_value() {
            let complete =
                self.last_index.iter().zip(&self.ends).all(|(last, end)| {
                    *end != AgentEnd::Running || last.is_some_and(|l| l >= index)
                });
            if !complete {
                break;
            }
            if let Some((_, mut merged)) = self.pending.pop_first() {
                merged.resources = self
                    .resources
                    .interval(&merged.samples, &merged.bundle.schedule_lag);
                self.counts += &merged.counts;
                // Both bundles share one layout, so the merge cannot fail for range.
                let _ = self.bundle.merge(&merged.bundle);
                self.recorder_overflow += merged.recorder_overflow;
                self.recovery.add(&merged.point());
                out.push(merged);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::plan::Load;
    use stampede_common::schedule::ArrivalKind;

    fn plan() -> StepPlan {
        StepPlan {
            stage_index: 0,
            stage_name: "s".into(),
            step_index: 0,
            name: "s".into(),
            load: Load::Open {
                qps: 1.0,
                arrival: ArrivalKind::Constant,
                max_in_flight: None,
            },
            duration: Duration::from_secs(2),
            input_tokens: 1,
            output_tokens: 1,
            kind: stampede_common::plan::StepKind::Single,
            checks: Vec::new(),
        }
    }

    fn report(index: u32, completed: u64) -> IntervalReport {
        IntervalReport {
            index,
            end_offset_us: u64::from(index + 1) * 1_000_000,
            counts: Some(Counts {
                completed,
                sent: completed,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lost_agents_requests_in_flight_are_counted_as_cancelled() {
        let mut agg = StepAggregate::new(0, plan(), 2);
        let mut r = report(0, 3);
        r.counts.as_mut().unwrap().sent = 10;
        agg.on_interval(0, &r).unwrap();
        agg.on_interval(1, &report(0, 4)).unwrap();
        agg.lose(0, "stream failed".into());
        agg.on_done(1, &ShareSummary::default());
        agg.take_complete();
        let c = &agg.counts;
        assert_eq!((c.sent, c.completed, c.cancelled), (14, 7, 7));
        assert_eq!(c.errors.get("cancelled"), Some(&7));
        assert_eq!(agg.agent_merged[0].cancelled, 7);
        assert!(matches!(&agg.ends[0], AgentEnd::Failed(w) if w.contains("7 requests in flight")));
    }

    #[test]
    fn reports_after_the_window_are_the_drain() {
        let mut agg = StepAggregate::new(0, plan(), 2);
        for agent in 0..2 {
            agg.on_interval(agent, &report(0, 3)).unwrap();
            let mut cut = report(1, 4);
            cut.end_offset_us = 1_700_000 + 10_000 * agent as u64;
            agg.on_interval(agent, &cut).unwrap();
            let mut after = report(2, 2);
            after.start_offset_us = cut.end_offset_us;
            after.end_offset_us = 2_400_000;
            after.drain = true;
            let done = agg.on_interval(agent, &after).unwrap();
            if agent == 1 {
                let drains: Vec<bool> = done.iter().map(|m| m.drain).collect();
                // Intervals 0 and 1 completed with agent 1's earlier reports.
                assert_eq!(drains, [true]);
            }
        }
        assert_eq!((agg.counts.completed, agg.drain.completed), (18, 4));
        assert_eq!(agg.window_end, Some(Duration::from_millis(1710)));
        assert_eq!(agg.drain_end, Some(Duration::from_millis(2400)));
    }

    #[test]
    fn an_interval_completes_when_every_agent_reported_it() {
        let mut agg = StepAggregate::new(0, plan(), 2);
        assert!(agg.on_interval(0, &report(0, 3)).unwrap().is_empty());
        assert!(agg.on_interval(0, &report(1, 4)).unwrap().is_empty());
        let done = agg.on_interval(1, &report(0, 5)).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].index, done[0].counts.completed, done[0].agents),
            (0, 8, 2)
        );
        // Agent 1 finishes without an interval 1: interval 1 no longer waits for it.
        let rest = agg.on_done(1, &ShareSummary::default());
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].counts.completed, 4);
        assert_eq!(agg.counts.completed, 12);
        assert!(!agg.finished());
        agg.on_failed(0, "gone".into());
        assert!(agg.finished());
        assert_eq!(agg.agent_merged[0].completed, 7);
    }
}
