//! What the live view shows, as events and as the state they add up to.
//!
//! The runner describes the run as a stream of [`LiveEvent`]s: the run, each step's start, each
//! merged interval (with the rolling latencies the runner computed from merged histograms), each
//! step's end, alerts and printed lines. [`LiveState::apply`] folds them into what a screen
//! shows. The dashboard, `controller watch` and the Prometheus exporter all read a `LiveState`,
//! so a watcher attached from another machine sees what the local dashboard sees.

use std::collections::{BTreeMap, VecDeque};

use crate::alerts::{Alert, AlertState};
pub use stampede_common::error_sample::ErrorSample;
use stampede_results::rows::TimeseriesRow;

/// How far back the charts reach, in seconds of the run: what the dashboard draws and a late
/// watcher is replayed, and no more (a 24-hour soak keeps five minutes, not a day).
pub const HISTORY_SPAN_S: f64 = 300.0;
/// Intervals kept for the charts at most, whatever the interval (300 s at 100 ms).
pub const HISTORY: usize = 3000;
/// Alerts kept for the alerts pane.
const ALERTS_KEPT: usize = 200;
/// Printed lines kept for the log pane.
const NOTES_KEPT: usize = 50;
/// Finished steps kept for the steps table.
const STEPS_KEPT: usize = 500;

/// The median and the 99th percentile of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Samples they come from; 0 when there were none (and both are 0).
    pub count: u64,
}

/// TTFT, ITL and E2E percentiles over some span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latencies {
    pub ttft: Percentiles,
    pub itl: Percentiles,
    pub e2e: Percentiles,
}

/// One agent's health in an interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentHealth {
    pub agent: String,
    /// Its own schedule lag p99 in the interval, when it reported one.
    pub schedule_lag_p99_ms: Option<f64>,
    /// Its process's CPU, percent of its host's cores, when it was sampled.
    pub cpu_pct: Option<f64>,
    /// Why its share failed; `None` while it is healthy.
    pub lost: Option<String>,
}

/// The run, as the first event describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInfo {
    pub plan: String,
    pub target: String,
    pub model: String,
    pub agents: Vec<String>,
    pub results_dir: String,
    pub interval_s: f64,
}

/// A step that started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStart {
    pub step_no: u32,
    pub name: String,
    pub stage: String,
    /// The planned rate (open loop), or `None`.
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    /// Seconds from the run's first step to this step's start.
    pub start_s: f64,
    pub duration_s: f64,
    pub warmup: bool,
}

/// One merged interval as the live view sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntervalView {
    pub step_no: u32,
    /// The row written to timeseries.csv.
    pub row: TimeseriesRow,
    /// Latencies over the step's last 10 s of merged intervals.
    pub window: Latencies,
    /// Latencies over the step so far.
    pub step: Latencies,
    /// Failed requests by class in this interval, and in the step so far.
    pub errors: BTreeMap<String, u64>,
    pub step_errors: BTreeMap<String, u64>,
    /// The step so far: the first message of each error class and status, with its count.
    pub step_error_messages: Vec<ErrorSample>,
    pub agents: Vec<AgentHealth>,
    /// The step was paused (rate scale 0).
    pub paused: bool,
    /// Requests sent and output tokens received in the interval.
    pub sent: u64,
    pub output_tokens: u64,
}

/// A step's requests so far, added up from its intervals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTotals {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub output_tokens: u64,
}

/// A step that ended: its line of the steps table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepDone {
    pub step_no: u32,
    pub name: String,
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    pub achieved_qps: f64,
    pub ttft_p99_ms: f64,
    pub e2e_p99_ms: f64,
    pub output_tokens_per_s: f64,
    pub error_rate: f64,
    /// `None` when the step had no threshold.
    pub slo_pass: Option<bool>,
    pub warmup: bool,
    /// The first message of each error class and status, with its count.
    pub error_messages: Vec<ErrorSample>,
}

/// A rate change of the step sending now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateChange {
    pub step: String,
    /// Factor on the planned rate; 0 while paused.
    pub scale: f64,
    pub qps: f64,
}

/// Something that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Run(RunInfo),
    StepStarted(StepStart),
    Interval(Box<IntervalView>),
    StepFinished(StepDone),
    Alert(Alert),
    Rate(RateChange),
    /// A line the controller printed.
    Note(String),
    /// The run is over: `completed`, `interrupted`, `aborted` or `failed`.
    Ended(String),
    /// This many events were missed by a reader that fell behind.
    Missed(u64),
}

/// One point of the charts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChartPoint {
    pub elapsed_s: f64,
    pub offered_qps: Option<f64>,
    pub achieved_qps: f64,
    pub completed_rps: f64,
    pub in_flight: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p99_ms: f64,
    pub e2e_p99_ms: f64,
    pub output_tokens_per_s: f64,
    pub failed: u64,
    pub gpu_util_pct: Option<f64>,
    pub cpu_pct: Option<f64>,
}

impl ChartPoint {
    fn of(row: &TimeseriesRow) -> Self {
        ChartPoint {
            elapsed_s: row.elapsed_s,
            offered_qps: row.offered_qps,
            achieved_qps: row.achieved_qps,
            completed_rps: row.completed_rps,
            in_flight: row.in_flight,
            ttft_p50_ms: row.ttft_p50_ms,
            ttft_p99_ms: row.ttft_p99_ms,
            itl_p99_ms: row.itl_p99_ms,
            e2e_p99_ms: row.e2e_p99_ms,
            output_tokens_per_s: row.output_tokens_per_s,
            failed: row.failed,
            gpu_util_pct: row.gpu_util_pct,
            cpu_pct: row.host_cpu_pct.or(row.client_cpu_pct),
        }
    }
}

/// What the live view shows: the events of a run folded together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveState {
    pub run: Option<RunInfo>,
    /// The step sending now (the last one started).
    pub step: Option<StepStart>,
    /// The latest merged interval.
    pub last: Option<IntervalView>,
    /// The latest intervals, oldest first, for the charts.
    pub history: VecDeque<ChartPoint>,
    pub finished: VecDeque<StepDone>,
    /// Each step's requests so far, by step name.
    pub totals: BTreeMap<String, StepTotals>,
    /// The latest alerts, oldest first.
    pub alerts: VecDeque<Alert>,
    /// Alerts raised, by kind.
    pub alert_counts: BTreeMap<String, u64>,
    /// Alerts firing now, by their key.
    pub active: BTreeMap<String, Alert>,
    /// The running step's rate factor (1 unless changed; 0 while paused).
    pub scale: f64,
    /// The factor before the last pause, to resume at.
    pub scale_before_pause: f64,
    pub notes: VecDeque<String>,
    /// The run's end, once it ended.
    pub ended: Option<String>,
    /// Events missed because this reader fell behind.
    pub missed: u64,
    /// Merged intervals seen.
    pub intervals: u64,
}

impl LiveState {
    /// An empty view, before the first event.
    pub fn new() -> Self {
        LiveState {
            scale: 1.0,
            scale_before_pause: 1.0,
            ..Default::default()
        }
    }

    /// True while the running step is paused.
    pub fn paused(&self) -> bool {
        self.scale == 0.0
    }

    /// Takes one event.
    pub fn apply(&mut self, ev: &LiveEvent) {
        match ev {
            LiveEvent::Run(info) => self.run = Some(info.clone()),
            LiveEvent::StepStarted(s) => {
                self.step = Some(s.clone());
                self.scale = 1.0;
                self.scale_before_pause = 1.0;
            }
            LiveEvent::Interval(iv) => {
                self.intervals += 1;
                // A drain (what finished after a step's window, often a fraction of a second)
                // is no load level: its counts go to the totals, not to the charts or the
                // latest-interval figures.
                if !iv.row.drain {
                    push_capped(&mut self.history, ChartPoint::of(&iv.row), HISTORY);
                }
                let horizon = iv.row.elapsed_s - HISTORY_SPAN_S;
                while self.history.front().is_some_and(|p| p.elapsed_s < horizon) {
                    self.history.pop_front();
                }
                if !self.totals.contains_key(&iv.row.step) && self.totals.len() >= STEPS_KEPT {
                    self.totals.pop_first();
                }
                let t = self.totals.entry(iv.row.step.clone()).or_default();
                t.sent += iv.sent;
                t.completed += iv.row.completed;
                t.failed += iv.row.failed;
                t.timeouts += iv.row.timeouts;
                t.dropped += iv.row.dropped;
                t.output_tokens += iv.output_tokens;
                if !iv.row.drain {
                    self.last = Some((**iv).clone());
                }
            }
            LiveEvent::StepFinished(d) => push_capped(&mut self.finished, d.clone(), STEPS_KEPT),
            LiveEvent::Alert(a) => {
                let key = a.key();
                match a.state {
                    AlertState::Firing => {
                        *self
                            .alert_counts
                            .entry(a.kind.name().to_string())
                            .or_default() += 1;
                        self.active.insert(key, a.clone());
                    }
                    AlertState::Resolved => {
                        self.active.remove(&key);
                    }
                }
                push_capped(&mut self.alerts, a.clone(), ALERTS_KEPT);
            }
            LiveEvent::Rate(r) => {
                let is_current = self.step.as_ref().is_some_and(|s| s.name == r.step);
                if is_current {
                    if r.scale == 0.0 && self.scale > 0.0 {
                        self.scale_before_pause = self.scale;
                    }
                    self.scale = r.scale;
                }
            }
            LiveEvent::Note(line) => push_capped(&mut self.notes, line.clone(), NOTES_KEPT),
            LiveEvent::Ended(status) => self.ended = Some(status.clone()),
            LiveEvent::Missed(n) => self.missed += n,
        }
    }

    /// Seconds since the run's first step, as far as the merged intervals tell.
    pub fn elapsed_s(&self) -> f64 {
        self.last.as_ref().map_or(0.0, |l| l.row.elapsed_s)
    }

    /// The running step's progress: (seconds done, seconds left), from the latest interval.
    pub fn step_progress(&self) -> Option<(f64, f64)> {
        let s = self.step.as_ref()?;
        let done = (self.elapsed_s() - s.start_s).clamp(0.0, s.duration_s);
        Some((done, (s.duration_s - done).max(0.0)))
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;

    #[test]
    fn events_fold_into_the_view() {
        let mut st = LiveState::new();
        st.apply(&LiveEvent::StepStarted(StepStart {
            name: "s".into(),
            start_s: 10.0,
            duration_s: 60.0,
            offered_qps: Some(5.0),
            ..Default::default()
        }));
        for i in 0..(HISTORY + 5) {
            let row = TimeseriesRow {
                elapsed_s: 11.0 + i as f64 * 0.01,
                ..Default::default()
            };
            st.apply(&LiveEvent::Interval(Box::new(IntervalView {
                row,
                ..Default::default()
            })));
        }
        assert_eq!(st.history.len(), HISTORY);
        assert_eq!(st.intervals, (HISTORY + 5) as u64);
        // Older than the chart span is dropped too, however few points there are.
        let mut sparse = LiveState::new();
        for i in 0..700 {
            sparse.apply(&LiveEvent::Interval(Box::new(IntervalView {
                row: TimeseriesRow {
                    elapsed_s: f64::from(i),
                    ..Default::default()
                },
                ..Default::default()
            })));
        }
        assert_eq!(sparse.history.len(), 301);
        assert_eq!(sparse.history.front().map(|p| p.elapsed_s), Some(399.0));
        // The last interval ended at 11 + 3004 × 0.01 s; the step started at 10 s and lasts 60 s.
        let (done, left) = st.step_progress().unwrap();
        assert!((done - 31.04).abs() < 1e-9 && (left - 28.96).abs() < 1e-9);

        st.apply(&LiveEvent::Rate(RateChange {
            step: "s".into(),
            scale: 1.5,
            qps: 7.5,
        }));
        st.apply(&LiveEvent::Rate(RateChange {
            step: "s".into(),
            scale: 0.0,
            qps: 0.0,
        }));
        assert!(st.paused());
        assert_eq!(st.scale_before_pause, 1.5);

        let mut a = Alert::new(AlertKind::Timeouts, "s", 12.0, "3 timeouts".into());
        st.apply(&LiveEvent::Alert(a.clone()));
        assert_eq!(st.active.len(), 1);
        a.state = AlertState::Resolved;
        st.apply(&LiveEvent::Alert(a));
        assert!(st.active.is_empty());
        assert_eq!(st.alert_counts["timeouts"], 1);
        assert_eq!(st.alerts.len(), 2);
    }
}
