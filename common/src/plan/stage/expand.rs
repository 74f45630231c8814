//! From a [`Stage`] to what the runner does: the steps of a fixed stage, or the template and
//! probe of an adaptive one. Each driver has its own small function; none reads a file.

use std::sync::Arc;
use std::time::Duration;

use super::driver::{BaseLoad, Levels, LimitParam, Stage, StageDriver, SweepParam};
use super::step::{Load, Probe, StageProgram, StepKind, StepPlan};
use crate::schedule::ArrivalKind;
use crate::trace::TraceEntry;

impl Stage {
    /// Expands the stage, the `stage_index`-th of its plan, into what the runner does.
    pub fn program(&self, stage_index: usize) -> StageProgram {
        let m = Steps {
            stage: self,
            stage_index,
        };
        let warmup = self.warmup.map(|w| m.warmup(w));
        let adaptive = match &self.driver {
            StageDriver::Search {
                lo,
                hi,
                precision,
                each,
                slo,
            } => Some(search(&m, [*lo, *hi], *precision, *each, slo)),
            StageDriver::Limits {
                param,
                factor,
                each,
            } => Some(limits(&m, *param, *factor, *each)),
            _ => None,
        };
        if let Some((template, probe)) = adaptive {
            return StageProgram::Adaptive {
                template: Box::new(template),
                probe,
                warmup: warmup.map(Box::new),
            };
        }
        let mut steps: Vec<StepPlan> = warmup.into_iter().collect();
        steps.extend(fixed_steps(&m));
        for (i, s) in steps.iter_mut().enumerate() {
            s.step_index = i;
        }
        StageProgram::Fixed(steps)
    }
}

/// The steps of a stage known in advance, without its warm-up.
fn fixed_steps(m: &Steps<'_>) -> Vec<StepPlan> {
    match &m.stage.driver {
        StageDriver::Rate { qps, duration } => {
            vec![m.whole(StepKind::Single, m.open(*qps), *duration)]
        }
        StageDriver::Users {
            concurrency,
            duration,
        } => vec![m.whole(StepKind::Single, m.closed(*concurrency), *duration)],
        StageDriver::Steps { levels, each } => step_levels(m, levels, *each),
        StageDriver::Sweep { param, each } => sweep(m, param, *each),
        StageDriver::Ramp { from, to, duration } => vec![ramp(m, *from, *to, *duration)],
        StageDriver::Trace {
            entries,
            speed,
            duration,
        } => vec![trace(m, entries, *speed, *duration)],
        StageDriver::Spike {
            base,
            burst,
            base_duration,
            burst_duration,
        } => spike(m, [*base, *burst], [*base_duration, *burst_duration]),
        StageDriver::Soak {
            load,
            duration,
            checkpoint,
        } => soak(m, *load, *duration, *checkpoint),
        StageDriver::Search { .. } | StageDriver::Limits { .. } => Vec::new(),
    }
}

/// Builds the steps of one stage: names, loads and what every step shares.
struct Steps<'a> {
    stage: &'a Stage,
    stage_index: usize,
}

impl Steps<'_> {
    fn open(&self, qps: f64) -> Load {
        Load::Open {
            qps,
            arrival: self.stage.arrival,
            max_in_flight: self.stage.max_in_flight,
        }
    }

    fn closed(&self, concurrency: u32) -> Load {
        Load::Closed {
            concurrency,
            think_time: self.stage.think_time,
        }
    }

    /// The stage's own load; one user where the driver sets the load itself.
    fn base(&self, load: Option<BaseLoad>) -> Load {
        match load {
            Some(BaseLoad::Rate(qps)) => self.open(qps),
            Some(BaseLoad::Users(c)) => self.closed(c),
            None => self.closed(1),
        }
    }

    /// A step named `stage/suffix`.
    fn part(&self, suffix: &str, kind: StepKind, load: Load, duration: Duration) -> StepPlan {
        self.step(
            format!("{}/{suffix}", self.stage.name),
            kind,
            load,
            duration,
        )
    }

    /// A step named as the stage.
    fn whole(&self, kind: StepKind, load: Load, duration: Duration) -> StepPlan {
        self.step(self.stage.name.clone(), kind, load, duration)
    }

    fn step(&self, name: String, kind: StepKind, load: Load, duration: Duration) -> StepPlan {
        StepPlan {
            stage_index: self.stage_index,
            stage_name: self.stage.name.clone(),
            step_index: 0,
            name,
            kind,
            load,
            duration,
            input_tokens: self.stage.input_tokens,
            output_tokens: self.stage.output_tokens,
            checks: self.stage.checks.clone(),
        }
    }

    /// Load before the stage at its base load, held to no threshold.
    fn warmup(&self, duration: Duration) -> StepPlan {
        let load = self.base(self.stage.driver.base_load());
        let mut s = self.part("warmup", StepKind::Warmup, load, duration);
        s.checks.clear();
        s
    }
}

/// One step per level, `stage/qps=10` or `stage/concurrency=4`.
fn step_levels(m: &Steps<'_>, levels: &Levels, each: Duration) -> Vec<StepPlan> {
    match levels {
        Levels::Rates(rates) => (rates.iter())
            .map(|&q| m.part(&format!("qps={q}"), StepKind::Step, m.open(q), each))
            .collect(),
        Levels::Users(users) => (users.iter())
            .map(|&c| {
                m.part(
                    &format!("concurrency={c}"),
                    StepKind::Step,
                    m.closed(c),
                    each,
                )
            })
            .collect(),
    }
}

/// One step per value of the swept parameter.
fn sweep(m: &Steps<'_>, param: &SweepParam, each: Duration) -> Vec<StepPlan> {
    let (input, load, values) = match param {
        SweepParam::InputTokens { load, values } => (true, load, values),
        SweepParam::OutputTokens { load, values } => (false, load, values),
        SweepParam::Concurrency(users) => {
            return (users.iter())
                .map(|&c| {
                    m.part(
                        &format!("concurrency={c}"),
                        StepKind::Sweep,
                        m.closed(c),
                        each,
                    )
                })
                .collect();
        }
    };
    let field = if input {
        "input_tokens"
    } else {
        "output_tokens"
    };
    (values.iter())
        .map(|&t| {
            let name = format!("{field}={t}");
            let mut s = m.part(&name, StepKind::Sweep, m.base(Some(*load)), each);
            *(if input {
                &mut s.input_tokens
            } else {
                &mut s.output_tokens
            }) = t;
            s
        })
        .collect()
}

/// One step whose rate grows from `from` to `to`.
fn ramp(m: &Steps<'_>, from: f64, to: f64, duration: Duration) -> StepPlan {
    let load = Load::Open {
        qps: from,
        arrival: ArrivalKind::Ramp {
            to_qps: to,
            over: duration,
        },
        max_in_flight: m.stage.max_in_flight,
    };
    m.whole(StepKind::Ramp, load, duration)
}

/// One step replaying the trace at `speed`, as long as the trace (or `duration`, when given).
fn trace(
    m: &Steps<'_>,
    entries: &[TraceEntry],
    speed: f64,
    duration: Option<Duration>,
) -> StepPlan {
    let mut entries = entries.to_vec();
    for e in &mut entries {
        e.offset = e.offset.div_f64(speed);
    }
    // The step lasts until just after the last request is sent.
    let span = (entries.last())
        .map(|e| e.offset + Duration::from_millis(1))
        .unwrap_or_default();
    let length = duration.unwrap_or(span);
    entries.retain(|e| e.offset < length);
    let load = Load::Trace {
        entries: Arc::new(entries),
        max_in_flight: m.stage.max_in_flight,
    };
    m.whole(StepKind::Trace, load, length)
}

/// Base rate, the burst, and the base rate again.
fn spike(
    m: &Steps<'_>,
    [base, burst]: [f64; 2],
    [base_for, burst_for]: [Duration; 2],
) -> Vec<StepPlan> {
    vec![
        m.part("base", StepKind::SpikeBase, m.open(base), base_for),
        m.part("burst", StepKind::SpikeBurst, m.open(burst), burst_for),
        m.part("after", StepKind::SpikeAfter, m.open(base), base_for),
    ]
}

/// The stage cut into checkpoints `stage/1`, `stage/2`...; the last one may be shorter.
fn soak(m: &Steps<'_>, load: BaseLoad, duration: Duration, every: Duration) -> Vec<StepPlan> {
    let mut steps = Vec::new();
    let mut at = Duration::ZERO;
    while at < duration {
        let len = every.min(duration - at);
        let n = steps.len() + 1;
        steps.push(m.part(&n.to_string(), StepKind::Soak, m.base(Some(load)), len));
        at += len;
    }
    steps
}

/// A capacity search: probes start at the lower bound's rate.
fn search(
    m: &Steps<'_>,
    [lo, hi]: [f64; 2],
    precision: f64,
    each: Duration,
    slo: &[String],
) -> (StepPlan, Probe) {
    let template = m.whole(StepKind::Search, m.open(lo), each);
    let probe = Probe::Search {
        lo,
        hi,
        precision,
        each,
        slo: slo.to_vec(),
    };
    (template, probe)
}

/// A limit test at one user; the probe sets the input length or the users of each level.
fn limits(m: &Steps<'_>, param: LimitParam, factor: f64, each: Duration) -> (StepPlan, Probe) {
    let (kind, probe) = match param {
        LimitParam::InputTokens { from, to } => (
            StepKind::LimitInput,
            Probe::InputLength {
                from,
                to,
                factor,
                each,
            },
        ),
        LimitParam::Concurrency { from, to } => (
            StepKind::LimitConcurrency,
            Probe::Concurrency {
                from,
                to,
                factor,
                each,
            },
        ),
    };
    (m.whole(kind, m.closed(1), each), probe)
}
