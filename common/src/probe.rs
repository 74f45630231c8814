//! Adaptive stages as pure state machines: the capacity search and the limit tests choose each
//! step from the outcomes of the ones before. The runner runs what [`ProbeRun::next_step`] gives
//! and reports back with [`ProbeRun::record`]; no clock or I/O here, so the decisions are tested
//! with made-up outcomes.

use serde::{Deserialize, Serialize};

use crate::plan::stage::{Load, Probe, StepKind, StepPlan};

/// What the runner measured in one probe step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOutcome {
    /// Every threshold the probe watches held.
    pub slo_pass: bool,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    /// The most frequent error class and its count.
    pub top_error: Option<(String, u64)>,
    pub ttft_p50_ms: f64,
    pub throughput_rps: f64,
    /// Highest KV-cache usage the server reported during the step, percent (when scraped).
    pub kv_cache_max_pct: Option<f64>,
    /// The server reported preemptions during the step (when scraped).
    pub preempted: bool,
}

impl ProbeOutcome {
    fn error_rate(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.failed as f64 / self.sent as f64
        }
    }
}

/// One probe step and its verdict, for the curve in the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbePoint {
    /// The level tried: requests/s, input tokens or users.
    pub level: f64,
    pub pass: bool,
    pub note: String,
}

/// What an adaptive stage found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub stage: String,
    /// `capacity_search`, `longest_input` or `resource_exhaustion`.
    pub kind: String,
    /// `qps`, `input_tokens` or `concurrency`.
    pub unit: String,
    /// The highest level that passed.
    pub max_passing: Option<f64>,
    /// The first level that failed, and how.
    pub first_failing: Option<f64>,
    pub failure_mode: Option<String>,
    /// Resource exhaustion: whether the target served normally again at the first level.
    pub recovered: Option<bool>,
    pub curve: Vec<ProbePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Trying `next`, growing by `factor` while it passes.
    Grow {
        next: f64,
    },
    /// Bisecting between a passing and a failing rate.
    Bisect {
        pass: f64,
        fail: f64,
    },
    /// Resource exhaustion: back at the first level to see whether the target recovered.
    Recover,
    Done,
}

/// Queueing "without bound": the median TTFT of a level this many times the first level's.
pub const UNBOUNDED_QUEUE_FACTOR: f64 = 10.0;
/// A KV cache this full, in percent, counts as full.
pub const KV_FULL_PCT: f64 = 99.0;
/// Rejections: an error rate above this at a level.
pub const REJECT_RATE: f64 = 0.01;

/// A running adaptive stage.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    probe: Probe,
    template: StepPlan,
    phase: Phase,
    pending: Option<f64>,
    curve: Vec<ProbePoint>,
    best: Option<f64>,
    first_fail: Option<f64>,
    failure_mode: Option<String>,
    recovered: Option<bool>,
    baseline_ttft_ms: Option<f64>,
    steps_made: usize,
}

impl ProbeRun {
    pub fn new(probe: Probe, template: StepPlan) -> Self {
        let start = match &probe {
            Probe::Search { lo, .. } => *lo,
            Probe::InputLength { from, .. } => f64::from(*from),
            Probe::Concurrency { from, .. } => f64::from(*from),
        };
        ProbeRun {
            probe,
            template,
            phase: Phase::Grow { next: start },
            pending: None,
            curve: Vec::new(),
            best: None,
            first_fail: None,
            failure_mode: None,
            recovered: None,
            baseline_ttft_ms: None,
            steps_made: 0,
        }
    }

    /// The next step to run, or `None` when the stage is over.
    pub fn next_step(&mut self) -> Option<StepPlan> {
        let level = match self.phase {
            Phase::Grow { next } => next,
            Phase::Bisect { pass, fail } => (pass + fail) / 2.0,
            Phase::Recover => match &self.probe {
                Probe::Concurrency { from, .. } => f64::from(*from),
                _ => return None,
            },
            Phase::Done => return None,
        };
        self.pending = Some(level);
        let mut step = self.template.clone();
        step.step_index = self.steps_made;
        self.steps_made += 1;
        match &self.probe {
            Probe::Search { .. } => {
                let level = round_sig(level, 3);
                self.pending = Some(level);
                if let Load::Open { qps, .. } = &mut step.load {
                    *qps = level;
                }
                step.name = format!("{}/qps={}", self.template.stage_name, level);
            }
            Probe::InputLength { .. } => {
                step.input_tokens = level as u32;
                step.name = format!("{}/input_tokens={}", self.template.stage_name, level as u32);
            }
            Probe::Concurrency { .. } => {
                step.load = match step.load {
                    Load::Closed { think_time, .. } => Load::Closed {
                        concurrency: level as u32,
                        think_time,
                    },
                    _ => Load::Closed {
                        concurrency: level as u32,
                        think_time: Default::default(),
                    },
                };
                if self.phase == Phase::Recover {
                    step.kind = StepKind::LimitRecovery;
                    step.name = format!(
                        "{}/recovery-concurrency={}",
                        self.template.stage_name, level as u32
                    );
                } else {
                    step.name =
                        format!("{}/concurrency={}", self.template.stage_name, level as u32);
                }
            }
        }
        Some(step)
    }

    /// Takes the outcome of the step last returned by [`Self::next_step`].
    pub fn record(&mut self, o: &ProbeOutcome) {
        let Some(level) = self.pending.take() else {
            return;
        };
        if self.baseline_ttft_ms.is_none() && o.completed > 0 {
            self.baseline_ttft_ms = Some(o.ttft_p50_ms);
        }
        if self.phase == Phase::Recover {
            let base = self.baseline_ttft_ms.unwrap_or(o.ttft_p50_ms);
            let ok = o.completed > 0
                && o.error_rate() <= REJECT_RATE
                && o.ttft_p50_ms <= base * 2.0 + 1.0;
            self.recovered = Some(ok);
            self.curve.push(ProbePoint {
                level,
                pass: ok,
                note: "recovery check".into(),
            });
            self.phase = Phase::Done;
            return;
        }
        let (pass, note) = self.judge(o);
        self.curve.push(ProbePoint {
            level,
            pass,
            note: note.clone(),
        });
        if pass {
            self.best = Some(self.best.map_or(level, |b| b.max(level)));
        } else {
            self.first_fail = Some(self.first_fail.map_or(level, |f| f.min(level)));
            if self.failure_mode.is_none() || matches!(self.phase, Phase::Grow { .. }) {
                self.failure_mode = Some(note);
            }
        }
        self.phase = self.advance(level, pass);
    }

    fn judge(&self, o: &ProbeOutcome) -> (bool, String) {
        let top = o
            .top_error
            .as_ref()
            .map_or(String::new(), |(c, n)| format!("{n} {c}"));
        match &self.probe {
            Probe::Search { .. } => {
                if o.slo_pass {
                    (true, "SLO held".into())
                } else {
                    (false, "SLO failed".into())
                }
            }
            Probe::InputLength { .. } => {
                if o.completed > 0 && o.failed == 0 {
                    (true, "served".into())
                } else if o.sent == 0 {
                    (false, "nothing was sent".into())
                } else {
                    (false, format!("failed: {top}"))
                }
            }
            Probe::Concurrency { .. } => {
                let base = self.baseline_ttft_ms.unwrap_or(o.ttft_p50_ms);
                if o.completed == 0 {
                    (false, format!("nothing completed: {top}"))
                } else if o.error_rate() > REJECT_RATE {
                    (
                        false,
                        format!("rejects: {:.1}% errors ({top})", o.error_rate() * 100.0),
                    )
                } else if o.preempted {
                    (
                        false,
                        "preempts: the server preempted running requests".to_string(),
                    )
                } else if let Some(kv) = o.kv_cache_max_pct.filter(|kv| *kv >= KV_FULL_PCT) {
                    (false, format!("fills its KV cache: {kv:.1}% used"))
                } else if o.ttft_p50_ms > base * UNBOUNDED_QUEUE_FACTOR {
                    (
                        false,
                        format!(
                            "queues without bound: median TTFT {:.0} ms, {:.0}x the first level's",
                            o.ttft_p50_ms,
                            o.ttft_p50_ms / base.max(1e-3)
                        ),
                    )
                } else {
                    (
                        true,
                        format!(
                            "median TTFT {:.0} ms, {:.1} requests/s",
                            o.ttft_p50_ms, o.throughput_rps
                        ),
                    )
                }
            }
        }
    }

    fn advance(&self, level: f64, pass: bool) -> Phase {
        match (&self.probe, self.phase) {
            (Probe::Search { hi, precision, .. }, Phase::Grow { .. }) => match (pass, self.best) {
                (true, _) if level >= *hi => Phase::Done,
                (true, _) => Phase::Grow {
                    next: (level * 2.0).min(*hi),
                },
                (false, None) => Phase::Done,
                (false, Some(best)) => bisect_or_done(best, level, *precision),
            },
            (Probe::Search { precision, .. }, Phase::Bisect { pass: p, fail: f }) => {
                let (p, f) = if pass { (level, f) } else { (p, level) };
                bisect_or_done(p, f, *precision)
            }
            (Probe::InputLength { to, factor, .. }, _) => {
                if !pass || level >= f64::from(*to) {
                    Phase::Done
                } else {
                    Phase::Grow {
                        next: (level * factor).round().min(f64::from(*to)),
                    }
                }
            }
            (Probe::Concurrency { to, factor, .. }, _) => {
                if !pass || level >= f64::from(*to) {
                    Phase::Recover
                } else {
                    Phase::Grow {
                        next: (level * factor)
                            .round()
                            .max(level + 1.0)
                            .min(f64::from(*to)),
                    }
                }
            }
            _ => Phase::Done,
        }
    }

    /// What the stage found so far.
    pub fn result(&self) -> ProbeResult {
        let (kind, unit) = match self.probe {
            Probe::Search { .. } => ("capacity_search", "qps"),
            Probe::InputLength { .. } => ("longest_input", "input_tokens"),
            Probe::Concurrency { .. } => ("resource_exhaustion", "concurrency"),
        };
        ProbeResult {
            stage: self.template.stage_name.clone(),
            kind: kind.into(),
            unit: unit.into(),
            max_passing: self.best,
            first_failing: self.first_fail,
            failure_mode: self.first_fail.and(self.failure_mode.clone()),
            recovered: self.recovered,
            curve: self.curve.clone(),
        }
    }
}

fn bisect_or_done(pass: f64, fail: f64, precision: f64) -> Phase {
    if (fail - pass) / pass <= precision {
        Phase::Done
    } else {
        Phase::Bisect { pass, fail }
    }
}

/// Rounds to `digits` significant digits, so probe rates read well.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ArrivalKind;
    use std::time::Duration;

    fn template(load: Load) -> StepPlan {
        StepPlan {
            stage_index: 0,
            stage_name: "s".into(),
            step_index: 0,
            name: "s".into(),
            kind: StepKind::Search,
            load,
            duration: Duration::from_secs(1),
            input_tokens: 100,
            output_tokens: 10,
            checks: Vec::new(),
        }
    }

    fn open() -> Load {
        Load::Open {
            qps: 1.0,
            arrival: ArrivalKind::Poisson,
            max_in_flight: None,
        }
    }

    /// Runs a probe against a made-up target, returning the levels tried and the result.
    fn run(
        mut p: ProbeRun,
        outcome: impl Fn(&StepPlan) -> ProbeOutcome,
    ) -> (Vec<f64>, ProbeResult) {
        let mut levels = Vec::new();
        while let Some(step) = p.next_step() {
            assert!(levels.len() < 50, "the probe must end");
            levels.push(p.pending.unwrap());
            p.record(&outcome(&step));
        }
        (levels, p.result())
    }

    fn slo(pass: bool) -> ProbeOutcome {
        ProbeOutcome {
            slo_pass: pass,
            sent: 10,
            completed: 10,
            ..Default::default()
        }
    }

    #[test]
    fn search_finds_the_knee_within_its_precision() {
        let knee = 137.0;
        let probe = Probe::Search {
            lo: 10.0,
            hi: 1000.0,
            precision: 0.05,
            each: Duration::from_secs(1),
            slo: vec![],
        };
        let (levels, r) = run(ProbeRun::new(probe, template(open())), |s| {
            slo(s.load.offered_qps(s.duration).unwrap() <= knee)
        });
        assert_eq!(
            &levels[..5],
            &[10.0, 20.0, 40.0, 80.0, 160.0],
            "coarse ramp doubles"
        );
        let best = r.max_passing.unwrap();
        assert!(
            best <= knee && best >= knee * 0.95 * 0.99,
            "{best} {levels:?}"
        );
        let fail = r.first_failing.unwrap();
        assert!((fail - best) / best <= 0.05 + 0.01, "{best} {fail}");
        assert_eq!(r.curve.len(), levels.len());
    }

    #[test]
    fn search_ends_at_once_when_the_lower_bound_fails_or_the_upper_passes() {
        let probe = Probe::Search {
            lo: 10.0,
            hi: 100.0,
            precision: 0.05,
            each: Duration::from_secs(1),
            slo: vec![],
        };
        let (levels, r) = run(ProbeRun::new(probe.clone(), template(open())), |_| {
            slo(false)
        });
        assert_eq!(levels, vec![10.0]);
        assert_eq!(r.max_passing, None);
        let (levels, r) = run(ProbeRun::new(probe, template(open())), |_| slo(true));
        assert_eq!(levels, vec![10.0, 20.0, 40.0, 80.0, 100.0]);
        assert_eq!(r.max_passing, Some(100.0));
        assert_eq!(r.first_failing, None);
    }

    #[test]
    fn longest_input_stops_at_the_first_failure_and_says_how() {
        let probe = Probe::InputLength {
            from: 1000,
            to: 32000,
            factor: 2.0,
            each: Duration::from_secs(1),
        };
        let (levels, r) = run(
            ProbeRun::new(
                probe,
                template(Load::Closed {
                    concurrency: 1,
                    think_time: Duration::ZERO,
                }),
            ),
            |s| {
                if s.input_tokens <= 8000 {
                    ProbeOutcome {
                        sent: 3,
                        completed: 3,
                        ..Default::default()
                    }
                } else {
                    ProbeOutcome {
                        sent: 3,
                        failed: 3,
                        top_error: Some(("http_4xx".into(), 3)),
                        ..Default::default()
                    }
                }
            },
        );
        assert_eq!(levels, vec![1000.0, 2000.0, 4000.0, 8000.0, 16000.0]);
        assert_eq!(
            (r.max_passing, r.first_failing),
            (Some(8000.0), Some(16000.0))
        );
        assert!(r.failure_mode.unwrap().contains("http_4xx"));
    }

    #[test]
    fn exhaustion_finds_the_failure_mode_then_checks_recovery() {
        let probe = Probe::Concurrency {
            from: 1,
            to: 64,
            factor: 2.0,
            each: Duration::from_secs(1),
        };
        let closed = Load::Closed {
            concurrency: 1,
            think_time: Duration::ZERO,
        };
        let (levels, r) = run(ProbeRun::new(probe, template(closed)), |s| {
            let Load::Closed { concurrency, .. } = s.load else {
                panic!()
            };
            // TTFT grows with the queue beyond 8 users; recovery at 1 user is clean.
            let ttft = if concurrency <= 8 {
                50.0
            } else {
                50.0 * f64::from(concurrency)
            };
            ProbeOutcome {
                sent: 10,
                completed: 10,
                ttft_p50_ms: ttft,
                ..Default::default()
            }
        });
        assert_eq!(levels, vec![1.0, 2.0, 4.0, 8.0, 16.0, 1.0]);
        assert_eq!((r.max_passing, r.first_failing), (Some(8.0), Some(16.0)));
        assert!(
            r.failure_mode
                .as_deref()
                .unwrap()
                .contains("queues without bound"),
            "{r:?}"
        );
        assert_eq!(r.recovered, Some(true));
    }

    #[test]
    fn exhaustion_names_preemption_and_a_full_kv_cache() {
        let probe = Probe::Concurrency {
            from: 1,
            to: 64,
            factor: 2.0,
            each: Duration::from_secs(1),
        };
        let closed = Load::Closed {
            concurrency: 1,
            think_time: Duration::ZERO,
        };
        let (_, r) = run(
            ProbeRun::new(probe.clone(), template(closed.clone())),
            |s| {
                let Load::Closed { concurrency, .. } = s.load else {
                    panic!()
                };
                ProbeOutcome {
                    sent: 10,
                    completed: 10,
                    ttft_p50_ms: 50.0,
                    kv_cache_max_pct: Some(if concurrency >= 4 { 100.0 } else { 40.0 }),
                    ..Default::default()
                }
            },
        );
        assert_eq!(r.first_failing, Some(4.0));
        assert!(r.failure_mode.unwrap().contains("KV cache"));
        let (_, r) = run(ProbeRun::new(probe, template(closed)), |s| {
            let Load::Closed { concurrency, .. } = s.load else {
                panic!()
            };
            ProbeOutcome {
                sent: 10,
                completed: 10,
                ttft_p50_ms: 50.0,
                preempted: concurrency >= 8,
                ..Default::default()
            }
        });
        assert_eq!(r.first_failing, Some(8.0));
        assert!(r.failure_mode.unwrap().contains("preempts"));
    }

    #[test]
    fn rounding_keeps_three_significant_digits() {
        assert_eq!(round_sig(123.456, 3), 123.0);
        assert_eq!(round_sig(0.012345, 3), 0.0123);
    }
}
