//! A finished step's summary, computed from its aggregate alone, and the run's overall totals
//! that every measured step adds to.

use std::collections::BTreeMap;
use std::time::Duration;

use stampede_common::metrics::HistogramBundle;
use stampede_common::plan::StepKind;
use stampede_common::proto;

use crate::aggregate::{AgentEnd, StepAggregate};
use crate::results::kinds::ShareEnd;
use crate::runner::share::share_split;
use crate::summary::{AgentShare, ReportedCounts, StageSummary};
use crate::workload::RunWorkload;
use stampede_common::metrics::Tally;

/// The measured steps of a run, merged as they finish.
#[derive(Debug, Default)]
pub struct OverallTotals {
    pub bundle: HistogramBundle,
    pub counts: proto::Counts,
    /// The steps' measured time (their windows less pauses), and what finished in their
    /// drains.
    pub duration: Duration,
    pub drain: proto::Counts,
    pub drain_duration: Duration,
    pub classes: Vec<(proto::Counts, HistogramBundle)>,
}

impl OverallTotals {
    /// Adds a finished step; warm-up is left out.
    pub fn add(&mut self, agg: &StepAggregate) {
        if agg.plan.is_warmup() {
            return;
        }
        let _ = self.bundle.merge(&agg.bundle);
        self.counts += &agg.counts;
        let m = Measured::of(agg);
        self.duration += m.duration;
        self.drain += &agg.drain;
        self.drain_duration += m.drain;
        crate::workload::add_classes(&mut self.classes, &agg.classes);
    }

    /// The `overall` summary of the run.
    pub fn summary(&self, workload: &RunWorkload) -> StageSummary {
        let mut overall = StageSummary::compute(
            "overall",
            "overall",
            None,
            self.duration,
            &Tally::from(&self.counts),
            &self.bundle,
            &[],
        );
        overall.exclude_drain(&Tally::from(&self.drain), self.drain_duration, &[]);
        overall.classes = crate::workload::class_summaries(
            workload,
            "overall",
            None,
            self.duration,
            &self.classes,
        );
        overall
    }
}

/// The time a step really ran, from its agents' reports and its course.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Its window (to its planned end, or where a stop cut it), less the time it was paused:
    /// the denominator of every rate.
    pub duration: Duration,
    /// The pause inside the window.
    pub paused: Duration,
    /// How long its drain went on after the window.
    pub drain: Duration,
}

impl Measured {
    /// The measured time of `agg`. The window is the planned length unless a stop cut it:
    /// then it ends where the agents' last report inside it ends (they cut their intervals at
    /// the stop they received), or at the stop when none reported.
    pub fn of(agg: &StepAggregate) -> Measured {
        let planned = agg.plan.duration;
        let window = agg
            .course
            .cut_at()
            .map_or(planned, |cut| agg.window_end.unwrap_or(cut).min(planned));
        let paused = agg.course.paused(window);
        Measured {
            duration: window.saturating_sub(paused),
            paused,
            drain: agg
                .drain_end
                .map_or(Duration::ZERO, |d| d.saturating_sub(window)),
        }
    }
}

/// Summarises a finished step. `ids`: the load agents' ids by index; `done`: the steps
/// finished before it (a spike's after-step is compared with its base step).
pub fn summarise(
    agg: &StepAggregate,
    ids: &[String],
    workload: &RunWorkload,
    done: &BTreeMap<usize, StageSummary>,
) -> StageSummary {
    let p = &agg.plan;
    let m = Measured::of(agg);
    let mut s = StageSummary::compute(
        &p.name,
        &p.stage_name,
        Some(&p.load),
        m.duration,
        &Tally::from(&agg.counts),
        &agg.bundle,
        &p.checks,
    );
    let window = m.duration + m.paused;
    s.ended = agg.course.end(window);
    s.paused_s = m.paused.as_secs_f64();
    // A trace's rate is its entries over the planned length; a changed rate is averaged over
    // the time the step sent.
    s.offered_qps = p
        .load
        .offered_qps(p.duration)
        .map(|q| q * agg.course.mean_scale(window));
    if m.duration.abs_diff(p.duration) > Duration::from_millis(1) {
        s.planned_duration_s = Some(p.duration.as_secs_f64());
    }
    s.exclude_drain(&Tally::from(&agg.drain), m.drain, &p.checks);
    s.kind = p.kind;
    s.warmup = p.is_warmup();
    s.input_tokens_planned = p.input_tokens;
    s.output_tokens_planned = p.output_tokens;
    s.classes = crate::workload::class_summaries(
        workload,
        &p.stage_name,
        Some(&p.load),
        m.duration,
        &agg.classes,
    );
    for (c, (drain, _)) in s.classes.iter_mut().zip(&agg.drain_classes) {
        c.exclude_drain(&Tally::from(drain), m.drain, &[]);
    }
    // After a burst, latency is compared with the base step of the same spike.
    let base_ttft = (p.kind == StepKind::SpikeAfter)
        .then(|| {
            done.values()
                .find(|d| d.stage == p.stage_name && d.kind == StepKind::SpikeBase)
                .map(|d| d.ttft_ms.p99)
        })
        .flatten();
    let rec = agg.recovery.finish(base_ttft);
    if rec.failing_from_s.is_some() || base_ttft.is_some() {
        s.recovery = Some(rec);
    }
    s.resources = agg.resources.summary();
    s.agents = agent_shares(agg, ids, m.duration);
    s
}

/// Each load agent's part of the step, as summary.json's `agents` lists it.
fn agent_shares(agg: &StepAggregate, ids: &[String], measured: Duration) -> Vec<AgentShare> {
    let p = &agg.plan;
    let (rates, counts) = share_split(&p.load, &agg.weights, p.duration);
    let seconds = measured.as_secs_f64().max(1e-9);
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let merged = &agg.agent_merged[i];
            AgentShare {
                agent: id.clone(),
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
        .collect()
}
