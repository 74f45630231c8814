//! A stage, validated: one [`StageDriver`] variant says what drives its load, so expansion
//! matches on it instead of asking which of the written options is set.

use std::sync::Arc;
use std::time::Duration;

use crate::plan::slo::SloCheck;
use crate::schedule::ArrivalKind;
use crate::trace::TraceEntry;

/// One stage, validated: its driver and what every step of it shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub driver: StageDriver,
    /// Spacing of open-loop arrivals.
    pub arrival: ArrivalKind,
    /// Open loop: most requests in flight.
    pub max_in_flight: Option<u32>,
    /// Closed loop: pause between a user's requests.
    pub think_time: Duration,
    /// The lengths every step asks for unless a sweep sets one (the plan's, or the stage's).
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Thresholds of every step but the warm-up: the plan's, with the stage's own.
    pub checks: Vec<SloCheck>,
    /// Load before the stage, kept out of its statistics.
    pub warmup: Option<Duration>,
    /// A pause with no load after the stage.
    pub cooldown: Option<Duration>,
}

/// The base load of a sweep or a soak: a rate or a number of users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseLoad {
    Rate(f64),
    Users(u32),
}

/// The levels of a step test.
#[derive(Debug, Clone, PartialEq)]
pub enum Levels {
    Rates(Vec<f64>),
    Users(Vec<u32>),
}

/// The parameter a sweep varies.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepParam {
    /// Input lengths at the stage's load.
    InputTokens { load: BaseLoad, values: Vec<u32> },
    /// Output lengths at the stage's load.
    OutputTokens { load: BaseLoad, values: Vec<u32> },
    /// Numbers of users: the sweep sets the load itself.
    Concurrency(Vec<u32>),
}

/// What a limit test grows, from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitParam {
    InputTokens { from: u32, to: u32 },
    Concurrency { from: u32, to: u32 },
}

/// What drives a stage's load: exactly one of the ways a plan can write it.
#[derive(Debug, Clone, PartialEq)]
pub enum StageDriver {
    /// Open loop at one rate (`qps`).
    Rate { qps: f64, duration: Duration },
    /// Closed loop: this many users, each sending when its last request ends (`concurrency`).
    Users {
        concurrency: u32,
        duration: Duration,
    },
    /// Several load levels in a row, each held for `each`.
    Steps { levels: Levels, each: Duration },
    /// One workload parameter varied, each value held for `each`.
    Sweep { param: SweepParam, each: Duration },
    /// The arrival rate grown linearly from `from` to `to` over `duration`.
    Ramp {
        from: f64,
        to: f64,
        duration: Duration,
    },
    /// Replay of a trace read during resolution; offsets are divided by `speed` when expanded.
    /// `duration` cuts the replay short; none: the whole trace.
    Trace {
        entries: Arc<Vec<TraceEntry>>,
        speed: f64,
        duration: Option<Duration>,
    },
    /// Base rate, a burst, and the base rate again.
    Spike {
        base: f64,
        burst: f64,
        base_duration: Duration,
        burst_duration: Duration,
    },
    /// A long run at one load, reported in checkpoints of `checkpoint`.
    Soak {
        load: BaseLoad,
        duration: Duration,
        checkpoint: Duration,
    },
    /// The highest rate in `lo..hi` at which the thresholds `slo` (empty: all) hold.
    Search {
        lo: f64,
        hi: f64,
        precision: f64,
        each: Duration,
        slo: Vec<String>,
    },
    /// A limit grown by `factor` per level until the target fails.
    Limits {
        param: LimitParam,
        factor: f64,
        each: Duration,
    },
}

impl StageDriver {
    /// The load the stage itself names (`qps` or `concurrency`), which a warm-up runs at.
    pub fn base_load(&self) -> Option<BaseLoad> {
        match self {
            StageDriver::Rate { qps, .. } => Some(BaseLoad::Rate(*qps)),
            StageDriver::Users { concurrency, .. } => Some(BaseLoad::Users(*concurrency)),
            StageDriver::Soak { load, .. }
            | StageDriver::Sweep {
                param: SweepParam::InputTokens { load, .. } | SweepParam::OutputTokens { load, .. },
                ..
            } => Some(*load),
            _ => None,
        }
    }

    /// Multiplies every duration of the driver by `factor`; a trace is replayed that much faster.
    fn scale_time(&mut self, factor: f64) {
        let scale = |d: &mut Duration| *d = d.mul_f64(factor);
        match self {
            StageDriver::Rate { duration, .. }
            | StageDriver::Users { duration, .. }
            | StageDriver::Ramp { duration, .. } => scale(duration),
            StageDriver::Steps { each, .. }
            | StageDriver::Sweep { each, .. }
            | StageDriver::Search { each, .. }
            | StageDriver::Limits { each, .. } => scale(each),
            StageDriver::Trace {
                speed, duration, ..
            } => {
                *speed /= factor;
                if let Some(d) = duration {
                    scale(d);
                }
            }
            StageDriver::Spike {
                base_duration,
                burst_duration,
                ..
            } => {
                scale(base_duration);
                scale(burst_duration);
            }
            StageDriver::Soak {
                duration,
                checkpoint,
                ..
            } => {
                scale(duration);
                scale(checkpoint);
            }
        }
    }
}

impl Stage {
    /// Multiplies every duration of the stage by `factor` (a quick run of a long plan).
    pub fn scale_time(&mut self, factor: f64) {
        self.driver.scale_time(factor);
        for d in [&mut self.warmup, &mut self.cooldown].into_iter().flatten() {
            *d = d.mul_f64(factor);
        }
        self.think_time = self.think_time.mul_f64(factor);
    }
}
