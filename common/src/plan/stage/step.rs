//! What a stage expands into: the steps that agents run ([`StepPlan`], with its [`Load`]), and
//! for the adaptive stages the [`Probe`] that decides each next step.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::slo::SloCheck;
use crate::schedule::ArrivalKind;
use crate::trace::TraceEntry;

/// The load of one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Open {
        qps: f64,
        arrival: ArrivalKind,
        max_in_flight: Option<u32>,
    },
    Closed {
        concurrency: u32,
        think_time: Duration,
    },
    /// Replay: requests at the trace's offsets with the trace's lengths.
    Trace {
        entries: Arc<Vec<TraceEntry>>,
        max_in_flight: Option<u32>,
    },
}

impl Load {
    /// The offered rate of an open-loop step (the mean rate of a ramp or a trace).
    pub fn offered_qps(&self, duration: Duration) -> Option<f64> {
        match self {
            Load::Open {
                qps,
                arrival: ArrivalKind::Ramp { to_qps, .. },
                ..
            } => Some((qps + to_qps) / 2.0),
            Load::Open { qps, .. } => Some(*qps),
            Load::Closed { .. } => None,
            Load::Trace { entries, .. } => {
                let secs = duration.as_secs_f64();
                (secs > 0.0).then(|| entries.len() as f64 / secs)
            }
        }
    }
}

/// What a step is for, as results label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    #[default]
    Single,
    Step,
    Sweep,
    Ramp,
    Trace,
    Soak,
    SpikeBase,
    SpikeBurst,
    SpikeAfter,
    Search,
    LimitInput,
    LimitConcurrency,
    LimitRecovery,
    Warmup,
}

/// One step that agents run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub stage_index: usize,
    pub stage_name: String,
    pub step_index: usize,
    /// The stage's name, or `stage/qps=50` for a level of its steps.
    pub name: String,
    pub kind: StepKind,
    pub load: Load,
    pub duration: Duration,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Thresholds this step is held to (none for warm-up).
    pub checks: Vec<SloCheck>,
}

impl StepPlan {
    /// Warm-up steps are kept out of the statistics and the verdicts.
    pub fn is_warmup(&self) -> bool {
        self.kind == StepKind::Warmup
    }
}

/// What the runner does for a stage.
#[derive(Debug, Clone)]
pub enum StageProgram {
    /// Steps known in advance, run back to back.
    Fixed(Vec<StepPlan>),
    /// Steps decided one at a time from the results of the last: a capacity search or a limit
    /// test. `template` carries the stage's lengths, checks and arrival; the probe sets the level.
    Adaptive {
        template: Box<StepPlan>,
        probe: Probe,
        warmup: Option<Box<StepPlan>>,
    },
}

/// The adaptive stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Highest rate where `slo` (names; empty: all checks) holds.
    Search {
        lo: f64,
        hi: f64,
        precision: f64,
        each: Duration,
        slo: Vec<String>,
    },
    /// Longest input that succeeds, from..to multiplied by `factor`.
    InputLength {
        from: u32,
        to: u32,
        factor: f64,
        each: Duration,
    },
    /// Concurrency grown until the target rejects, queues without bound or fails.
    Concurrency {
        from: u32,
        to: u32,
        factor: f64,
        each: Duration,
    },
}
