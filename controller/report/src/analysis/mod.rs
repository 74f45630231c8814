//! Findings drawn from a run: what the numbers mean and what to change. Each finding carries
//! the typed facts that raised it; its words are the report's.
//!
//! - [`steps`]: per-step checks: failures, client-bound, token accounting, drops.
//! - [`capacity`]: the maximum QPS within the SLO, the knee, queueing- and decode-bound.
//! - [`server`]: from resources.csv when present: KV-cache pressure, GPU idle.
//! - [`stability`]: error bursts, soak drift, fluctuation.
//! - [`agents`]: agents lost during the run, and whether they came back.
//! - [`consistency`]: the findings checked against each other.
//!
//! Each finding is its typed facts ([`stampede_results::facts`]); the words, in English or
//! Chinese, are the report's ([`crate::wording`]). At the end of a run the runner has only the
//! step summaries ([`analyse`]); the report reads the whole results folder and draws every
//! finding ([`analyse_evidence`]).

pub mod agents;
pub mod capacity;
pub mod consistency;
pub mod server;
#[cfg(test)]
mod situations;
pub mod stability;
pub mod steps;

use std::collections::BTreeMap;

use stampede_common::probe::ProbeResult;

pub use self::steps::{CLIENT_BOUND_LAG_MS, is_client_bound};
use crate::i18n::Lang;
use crate::wording::worded;
use stampede_results::kinds::AgentEventKind;
use stampede_results::read::{MetricHistory, RunData, step_starts};
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::{AgentEventRecord, Analysis, StageSummary};
use stampede_results::table::NumericTable;

/// What the analysis reads: the step summaries (warm-ups left out), and what else the results
/// folder holds.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub stages: &'a [StageSummary],
    /// When each step started, seconds since the run's first step.
    pub starts: Vec<f64>,
    /// Whether the plan set thresholds.
    pub has_slo: bool,
    pub timeseries: &'a [TimeseriesRow],
    pub resources: Option<&'a NumericTable>,
    pub history: Option<&'a BTreeMap<&'static str, MetricHistory>>,
    /// What the plan's capacity searches and limit tests found.
    pub probes: &'a [ProbeResult],
    /// Agents lost and rejoined, in order.
    pub agent_events: &'a [AgentEventRecord],
    /// The run stopped because of lost agents (an `abort` agent event).
    pub aborted: bool,
}

impl<'a> Evidence<'a> {
    /// The step summaries alone.
    pub fn stages_only(stages: &'a [StageSummary], has_slo: bool) -> Self {
        Evidence {
            stages,
            starts: step_starts(stages, &[]),
            has_slo,
            timeseries: &[],
            resources: None,
            history: None,
            probes: &[],
            agent_events: &[],
            aborted: false,
        }
    }

    /// Everything a results folder holds.
    pub fn of(run: &'a RunData) -> Self {
        Evidence {
            stages: &run.measured,
            starts: run.measured_starts.clone(),
            has_slo: run.has_slo(),
            timeseries: &run.timeseries,
            resources: run.resources.as_ref(),
            history: Some(&run.history),
            probes: &run.summary.probes,
            agent_events: &run.summary.agent_events,
            aborted: run
                .summary
                .agent_events
                .iter()
                .any(|e| e.event == AgentEventKind::Abort),
        }
    }

    /// Each step's [start, end) in seconds since the first step.
    pub fn windows(&self) -> Vec<(f64, f64)> {
        self.starts
            .iter()
            .zip(self.stages)
            .map(|(start, s)| (*start, start + s.window_s()))
            .collect()
    }

    /// The timeseries rows of step `i` that end within its duration and after `from` (a
    /// fraction of it): the steady part of a step, without warm-up or the grace period.
    pub fn steady_rows(&self, i: usize, from: f64) -> Vec<&'a TimeseriesRow> {
        let Some(s) = self.stages.get(i) else {
            return Vec::new();
        };
        let start = self.starts.get(i).copied().unwrap_or(0.0);
        self.timeseries
            .iter()
            .filter(|r| r.step == s.name)
            .filter(|r| {
                // The window, pauses included: rows are placed on the run's clock.
                let (end, window) = (r.elapsed_s - start, s.window_s());
                end > window * from && end <= window + 0.5 * r.interval_s
            })
            .collect()
    }
}

/// Draws the findings of a run from its step summaries alone, worded in English: what the
/// runner can say before the report reads the folder.
pub fn analyse(steps: &[StageSummary], has_slo: bool) -> Analysis {
    worded(
        analyse_evidence(&Evidence::stages_only(steps, has_slo)),
        Lang::En,
    )
}

/// Draws every finding the evidence supports, as facts not yet worded.
pub fn analyse_evidence(ev: &Evidence<'_>) -> Analysis {
    let mut findings = Vec::new();
    let max_qps_within_slo = capacity::max_qps_within_slo(ev, &mut findings);
    capacity::knee_findings(ev, &mut findings);
    capacity::queueing_and_decode(ev, &mut findings);
    server::kv_cache_pressure(ev, &mut findings);
    server::gpu_idle(ev, &mut findings);
    steps::per_step(ev, &mut findings);
    steps::short_steps(ev, &mut findings);
    steps::unplanned_steps(ev, &mut findings);
    stability::error_bursts(ev, &mut findings);
    stability::soak_drift(ev, &mut findings);
    stability::fluctuation(ev, &mut findings);
    agents::lost(ev, &mut findings);
    Analysis {
        max_qps_within_slo,
        findings,
    }
}

/// Mean of some values (`None` when there are none).
pub(crate) fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Step summaries built by hand for the analysis tests.

    use std::time::Duration;

    use stampede_common::metrics::{HistogramBundle, LatencySummary, Tally};
    use stampede_common::plan::Load;
    use stampede_common::schedule::ArrivalKind;

    use stampede_results::kinds::StepMode;
    use stampede_results::summary::{CheckResult, SloVerdict, StageSummary};

    /// A latency summary whose percentiles are all `p50` except p99 and above.
    pub fn lat(count: u64, p50: f64, p99: f64) -> LatencySummary {
        LatencySummary {
            count,
            mean: p50,
            p50,
            p90: (p50 + p99) / 2.0,
            p95: (p50 + p99) / 2.0,
            p99,
            p999: p99,
            max: p99,
        }
    }

    /// An open-loop step of `duration` seconds at `qps` where every request completed.
    pub fn open_step(stage: &str, qps: f64, duration: f64) -> StageSummary {
        let sent = (qps * duration).round() as u64;
        let counts = Tally {
            sent,
            completed: sent,
            output_tokens: sent * 100,
            input_tokens: sent * 1000,
            ..Default::default()
        };
        let mut s = StageSummary::compute(
            &format!("{stage}/qps={qps}"),
            stage,
            Some(&Load::Open {
                qps,
                arrival: ArrivalKind::Poisson,
                max_in_flight: None,
            }),
            Duration::from_secs_f64(duration),
            &counts,
            &HistogramBundle::new(),
            &[],
        );
        s.kind = stampede_common::stage::StepKind::Step;
        s.ttft_ms = lat(sent, 50.0, 80.0);
        s.ttft_corrected_ms = s.ttft_ms;
        s.itl_ms = lat(sent * 99, 10.0, 14.0);
        s.chunk_gap_ms = s.itl_ms;
        s.tpot_ms = lat(sent, 10.0, 12.0);
        s.e2e_ms = lat(sent, 1040.0, 1300.0);
        s.schedule_lag_ms = lat(sent, 0.1, 0.5);
        s
    }

    /// A closed-loop step.
    pub fn closed_step(stage: &str, users: u32, rps: f64, duration: f64) -> StageSummary {
        let mut s = open_step(stage, rps, duration);
        s.name = format!("{stage}/c={users}");
        s.mode = StepMode::Closed;
        s.offered_qps = None;
        s.concurrency = Some(users);
        s
    }

    /// Marks a step as checked against one latency threshold.
    pub fn with_slo(mut s: StageSummary, name: &str, limit: f64) -> StageSummary {
        let value = s.metric(name);
        let pass = value.is_some_and(|v| v <= limit);
        s.slo = SloVerdict {
            pass,
            checks: vec![CheckResult {
                name: name.into(),
                limit,
                bound: stampede_common::plan::Bound::AtMost,
                value,
                pass,
            }],
        };
        s
    }

    /// The codes of some findings.
    pub fn codes(a: &stampede_results::summary::Analysis) -> Vec<&'static str> {
        a.findings.iter().map(|f| f.code().as_str()).collect()
    }

    /// Every finding of the evidence, worded in English.
    pub fn analysed(ev: &super::Evidence<'_>) -> stampede_results::summary::Analysis {
        analysed_in(ev, crate::i18n::Lang::En)
    }

    /// Every finding of the evidence, worded in `lang`.
    pub fn analysed_in(
        ev: &super::Evidence<'_>,
        lang: crate::i18n::Lang,
    ) -> stampede_results::summary::Analysis {
        crate::wording::worded(super::analyse_evidence(ev), lang)
    }
}
