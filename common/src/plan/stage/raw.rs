//! A `[[stage]]` table as written: the serde form, which keeps `deny_unknown_fields` so a typo is
//! an error with its line. Nothing downstream reads it except [`StagePlan::resolve`], which turns
//! it into a [`super::Stage`], and the results folder's copy of the plan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::plan::values::{Concurrency, Qps, TokenCount};
use crate::units::{Fraction, HumanDuration};

/// Spacing of open-loop arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalPlan {
    Constant,
    #[default]
    Poisson,
    /// Gamma gaps; `burstiness` sets the shape (1 is Poisson, below 1 bursty).
    Gamma,
}

/// A list of load levels, each held for `each`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepsPlan {
    pub qps: Option<Vec<Qps>>,
    pub concurrency: Option<Vec<Concurrency>>,
    pub each: HumanDuration,
}

/// A sweep over one workload parameter at the stage's load (`qps` or `concurrency`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPlan {
    pub input_tokens: Option<Vec<TokenCount>>,
    pub output_tokens: Option<Vec<TokenCount>>,
    pub concurrency: Option<Vec<Concurrency>>,
    pub each: HumanDuration,
}

/// A linear ramp of the arrival rate over the stage's duration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampPlan {
    pub from: Qps,
    pub to: Qps,
}

/// Replay of a trace file: CSV or JSONL of timestamp, input tokens and output tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracePlan {
    /// Relative to the plan file's folder.
    pub file: PathBuf,
    /// Replay speed: 2 sends the trace twice as fast.
    #[serde(default = "one")]
    pub speed: f64,
    /// Replay only the first part of the trace.
    pub limit: Option<usize>,
}

fn one() -> f64 {
    1.0
}

/// Cut a long run into checkpoints, each reported on its own, to see drift over time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakPlan {
    pub checkpoint: HumanDuration,
}

/// Base load, a burst, and base load again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikePlan {
    pub base: Qps,
    pub burst: Qps,
    pub base_duration: HumanDuration,
    pub burst_duration: HumanDuration,
}

/// One SLO name or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names written, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The highest rate at which the SLO holds: a coarse ramp, then bisection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchPlan {
    /// Lower and upper bounds of the rate.
    pub qps: [Qps; 2],
    /// How long each probe runs.
    pub each: HumanDuration,
    /// Stop when the bracket is narrower than this share of the rate found.
    #[serde(default = "default_precision")]
    pub precision: Fraction,
    /// The thresholds that must hold (names from `[slo]`); all of them by default.
    pub slo: Option<OneOrMany>,
}

fn default_precision() -> Fraction {
    Fraction(0.05)
}

/// The brief's limit tests: grow input length or concurrency until the target fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPlan {
    /// Longest input: from, to (tokens), at one request at a time.
    pub input_tokens: Option<[TokenCount; 2]>,
    /// Resource exhaustion: from, to (users).
    pub concurrency: Option<[Concurrency; 2]>,
    /// How long each level runs.
    pub each: HumanDuration,
    /// Each level is this many times the last.
    #[serde(default = "two")]
    pub factor: f64,
}

fn two() -> f64 {
    2.0
}

/// One stage of the plan, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePlan {
    pub name: String,
    pub duration: Option<HumanDuration>,
    /// Open loop at this rate.
    pub qps: Option<Qps>,
    /// Closed loop: this many users, each sending its next request when the last one ends.
    pub concurrency: Option<Concurrency>,
    /// Several load levels in a row.
    pub steps: Option<StepsPlan>,
    pub sweep: Option<SweepPlan>,
    pub ramp: Option<RampPlan>,
    pub trace: Option<TracePlan>,
    pub spike: Option<SpikePlan>,
    pub search: Option<SearchPlan>,
    pub limits: Option<LimitsPlan>,
    pub soak: Option<SoakPlan>,
    #[serde(default)]
    pub arrival: ArrivalPlan,
    /// Gamma arrivals: the shape of the gaps (1 is Poisson; 0.25 is very bursty).
    pub burstiness: Option<f64>,
    /// Closed loop: pause between a user's requests.
    pub think_time: Option<HumanDuration>,
    /// Open loop: most requests in flight; arrivals beyond are dropped and counted.
    pub max_in_flight: Option<Concurrency>,
    /// Overrides of the workload for this stage.
    pub input_tokens: Option<TokenCount>,
    pub output_tokens: Option<TokenCount>,
    /// Load before the stage whose requests are kept out of its statistics.
    pub warmup: Option<HumanDuration>,
    /// A pause with no load after the stage, so the target drains before the next one.
    pub cooldown: Option<HumanDuration>,
    /// Thresholds of this stage, added to (or replacing, by name) the plan's `[slo]`.
    #[serde(default)]
    pub slo: BTreeMap<String, Spanned<toml::Value>>,
}

impl StagePlan {
    /// Multiplies every duration written in the stage by `factor`, so that the plan copied into
    /// the results folder says what a `--time-scale` run really did.
    pub fn scale_time(&mut self, factor: f64) {
        let scale = |d: &mut HumanDuration| d.0 = d.0.mul_f64(factor);
        for d in [
            &mut self.duration,
            &mut self.warmup,
            &mut self.cooldown,
            &mut self.think_time,
        ]
        .into_iter()
        .flatten()
        {
            scale(d);
        }
        let each = [
            self.steps.as_mut().map(|s| &mut s.each),
            self.sweep.as_mut().map(|s| &mut s.each),
            self.search.as_mut().map(|s| &mut s.each),
            self.limits.as_mut().map(|s| &mut s.each),
            self.soak.as_mut().map(|s| &mut s.checkpoint),
        ];
        for d in each.into_iter().flatten() {
            scale(d);
        }
        if let Some(s) = &mut self.spike {
            scale(&mut s.base_duration);
            scale(&mut s.burst_duration);
        }
        if let Some(t) = &mut self.trace {
            t.speed /= factor;
        }
    }
}
