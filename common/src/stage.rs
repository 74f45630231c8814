//! Stages: the schema of a `[[stage]]` table, its checks, and its expansion into the steps that
//! agents run.
//!
//! A stage has one driver (`qps`, `concurrency`, `steps`, `sweep`, `ramp`, `trace`, `spike`,
//! `search` or `limits`) and optional modifiers (`soak` checkpoints, `warmup`, `cooldown`,
//! per-stage `slo`). Most stages expand into a fixed list of steps run back to back; a capacity
//! search and the limit tests decide each step from the results of the last, so they expand
//! into a [`StageProgram`] that the runner asks for its next step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::plan::{Concurrency, Qps, SloCheck, TokenCount, parse_slo};
use crate::schedule::ArrivalKind;
use crate::trace::{TraceEntry, read_trace};
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

/// What a stage inherits from the plan.
#[derive(Debug, Clone)]
pub struct StageDefaults<'a> {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub checks: &'a [SloCheck],
    /// The plan file's folder: trace paths are relative to it.
    pub plan_dir: &'a Path,
}

impl StagePlan {
    /// The drivers written, by field name.
    fn drivers(&self) -> Vec<&'static str> {
        let mut d = Vec::new();
        for (set, name) in [
            (self.qps.is_some(), "qps"),
            (self.concurrency.is_some(), "concurrency"),
            (self.steps.is_some(), "steps"),
            (self.ramp.is_some(), "ramp"),
            (self.trace.is_some(), "trace"),
            (self.spike.is_some(), "spike"),
            (self.search.is_some(), "search"),
            (self.limits.is_some(), "limits"),
        ] {
            if set {
                d.push(name);
            }
        }
        d
    }

    /// Every problem of this stage, as (field, message).
    pub fn problems(&self, defaults: &StageDefaults<'_>) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = Vec::new();
        let mut bad = |field: &str, msg: String| p.push((field.to_string(), msg));
        if self.name.trim().is_empty() {
            bad("name", "must not be empty".into());
        }
        let drivers = self.drivers();
        let sweep_base_ok = self.sweep.as_ref().is_some_and(|s| s.concurrency.is_some());
        match drivers.len() {
            0 if sweep_base_ok => {}
            0 => bad(
                "qps",
                "a stage needs one of qps (open loop), concurrency (closed loop), steps, ramp, trace, spike, search or limits".into(),
            ),
            1 => {}
            _ => bad("qps", format!("give only one of {}", drivers.join(", "))),
        }
        let timed_by_itself = self.steps.is_some()
            || self.sweep.is_some()
            || self.spike.is_some()
            || self.search.is_some()
            || self.limits.is_some()
            || self.trace.is_some();
        match (&self.duration, timed_by_itself) {
            (Some(_), true) if self.trace.is_none() => {
                bad("duration", "this stage takes its length from its steps (each, base_duration...); remove duration".into())
            }
            (None, false) => bad("duration", "missing: how long the stage runs, such as \"60s\"".into()),
            (Some(d), _) if d.0.is_zero() => bad("duration", "must be longer than 0s".into()),
            _ => {}
        }
        if let Some(steps) = &self.steps {
            match (&steps.qps, &steps.concurrency) {
                (Some(q), None) if !q.is_empty() => {}
                (None, Some(c)) if !c.is_empty() => {}
                (Some(_), Some(_)) => bad(
                    "steps",
                    "give either qps or concurrency levels, not both".into(),
                ),
                _ => bad(
                    "steps",
                    "needs a non-empty list: qps = [10, 50] or concurrency = [1, 8]".into(),
                ),
            }
            if steps.each.0.is_zero() {
                bad("steps.each", "must be longer than 0s".into());
            }
        }
        if let Some(sweep) = &self.sweep {
            let lists = [
                sweep.input_tokens.is_some(),
                sweep.output_tokens.is_some(),
                sweep.concurrency.is_some(),
            ];
            if lists.iter().filter(|x| **x).count() != 1 {
                bad(
                    "sweep",
                    "sweep exactly one of input_tokens, output_tokens or concurrency".into(),
                );
            }
            let empty = sweep.input_tokens.as_ref().is_some_and(Vec::is_empty)
                || sweep.output_tokens.as_ref().is_some_and(Vec::is_empty)
                || sweep.concurrency.as_ref().is_some_and(Vec::is_empty);
            if empty {
                bad("sweep", "the list of values is empty".into());
            }
            if sweep.concurrency.is_some() && (self.qps.is_some() || self.concurrency.is_some()) {
                bad(
                    "sweep",
                    "a concurrency sweep sets the load itself; remove qps and concurrency".into(),
                );
            }
            if sweep.concurrency.is_none() && self.qps.is_none() && self.concurrency.is_none() {
                bad(
                    "sweep",
                    "an input or output sweep runs at the stage's qps or concurrency: set one"
                        .into(),
                );
            }
            if self.duration.is_some() {
                bad(
                    "duration",
                    "a sweep takes its length from sweep.each; remove duration".into(),
                );
            }
            if sweep.each.0.is_zero() {
                bad("sweep.each", "must be longer than 0s".into());
            }
        }
        if let Some(search) = &self.search {
            let [lo, hi] = search.qps;
            if lo.0 >= hi.0 {
                bad(
                    "search.qps",
                    format!(
                        "the bounds are reversed or equal: [{}, {}]; write [low, high]",
                        lo.0, hi.0
                    ),
                );
            }
            if search.each.0.is_zero() {
                bad("search.each", "must be longer than 0s".into());
            }
            if !(search.precision.0 > 0.0 && search.precision.0 < 1.0) {
                bad(
                    "search.precision",
                    "must be between 0% and 100%, such as \"5%\"".into(),
                );
            }
            let known = self.checks(defaults);
            if known.is_empty() {
                bad("search", "a capacity search needs thresholds: add [slo] entries such as e2e_p99 = \"1500ms\"".into());
            }
            for name in search
                .slo
                .as_ref()
                .map(OneOrMany::names)
                .unwrap_or_default()
            {
                if !known.iter().any(|c| c.name == name) {
                    bad(
                        "search.slo",
                        format!(
                            "{name:?} is not a threshold of this plan or stage; add it under [slo]"
                        ),
                    );
                }
            }
        }
        if let Some(l) = &self.limits {
            match (&l.input_tokens, &l.concurrency) {
                (Some([a, b]), None) if a.0 < b.0 => {}
                (None, Some([a, b])) if a.0 < b.0 => {}
                (Some(_), Some(_)) => bad(
                    "limits",
                    "test one limit per stage: input_tokens or concurrency".into(),
                ),
                (None, None) => bad(
                    "limits",
                    "needs input_tokens = [from, to] or concurrency = [from, to]".into(),
                ),
                _ => bad(
                    "limits",
                    "the bounds are reversed or equal; write [from, to] with from < to".into(),
                ),
            }
            if !(l.factor.is_finite() && l.factor > 1.0) {
                bad(
                    "limits.factor",
                    format!("must be above 1, got {}", l.factor),
                );
            }
            if l.each.0.is_zero() {
                bad("limits.each", "must be longer than 0s".into());
            }
        }
        if let Some(s) = &self.spike {
            if s.burst.0 <= s.base.0 {
                bad(
                    "spike.burst",
                    format!(
                        "must be above the base rate ({} <= {})",
                        s.burst.0, s.base.0
                    ),
                );
            }
            if s.base_duration.0.is_zero() || s.burst_duration.0.is_zero() {
                bad(
                    "spike",
                    "base_duration and burst_duration must be longer than 0s".into(),
                );
            }
        }
        if let Some(soak) = &self.soak {
            if self.qps.is_none() && self.concurrency.is_none() {
                bad(
                    "soak",
                    "a soak runs at the stage's qps or concurrency: set one".into(),
                );
            }
            if soak.checkpoint.0.is_zero() {
                bad("soak.checkpoint", "must be longer than 0s".into());
            }
            if let Some(d) = &self.duration
                && soak.checkpoint.0 > d.0
            {
                bad(
                    "soak.checkpoint",
                    format!("is longer than the stage ({} > {})", soak.checkpoint, d),
                );
            }
        }
        if let Some(t) = &self.trace {
            if !(t.speed.is_finite() && t.speed > 0.0) {
                bad("trace.speed", format!("must be above 0, got {}", t.speed));
            }
            if let Err(e) = read_trace(&defaults.plan_dir.join(&t.file), t.limit) {
                bad("trace.file", e.to_string());
            }
        }
        let open = self.qps.is_some()
            || self.steps.as_ref().is_some_and(|s| s.qps.is_some())
            || self.ramp.is_some()
            || self.spike.is_some()
            || self.search.is_some();
        let closed = self.concurrency.is_some()
            || self.steps.as_ref().is_some_and(|s| s.concurrency.is_some())
            || self.sweep.as_ref().is_some_and(|s| s.concurrency.is_some())
            || self.limits.is_some();
        if self.think_time.is_some() && !closed {
            bad(
                "think_time",
                "applies only to closed loop (concurrency)".into(),
            );
        }
        if self.max_in_flight.is_some() && closed {
            bad("max_in_flight", "applies only to open loop (qps)".into());
        }
        if self.arrival == ArrivalPlan::Gamma && self.burstiness.is_none() {
            bad(
                "burstiness",
                "gamma arrivals need a burstiness, such as 0.5 (1 is Poisson)".into(),
            );
        }
        if let Some(b) = self.burstiness {
            if self.arrival != ArrivalPlan::Gamma {
                bad("burstiness", "applies only with arrival = \"gamma\"".into());
            } else if !(b.is_finite() && b > 0.0) {
                bad("burstiness", format!("must be above 0, got {b}"));
            }
        }
        if self.arrival != ArrivalPlan::Poisson && !open {
            bad("arrival", "applies only to open loop".into());
        }
        for (name, value) in &self.slo {
            if let Err(message) = parse_slo(name, value.get_ref()) {
                bad(&format!("slo.{name}"), message);
            }
        }
        p
    }

    /// The thresholds of this stage: the plan's, with the stage's own added or replacing them.
    pub fn checks(&self, defaults: &StageDefaults<'_>) -> Vec<SloCheck> {
        let mut checks: Vec<SloCheck> = defaults.checks.to_vec();
        for (name, value) in &self.slo {
            if let Ok(c) = parse_slo(name, value.get_ref()) {
                checks.retain(|x| x.name != c.name);
                checks.push(c);
            }
        }
        checks
    }

    fn arrival_kind(&self) -> ArrivalKind {
        match self.arrival {
            ArrivalPlan::Constant => ArrivalKind::Constant,
            ArrivalPlan::Poisson => ArrivalKind::Poisson,
            ArrivalPlan::Gamma => ArrivalKind::Gamma {
                burstiness: self.burstiness.unwrap_or(1.0),
            },
        }
    }

    /// Expands a valid stage into what the runner does.
    ///
    /// # Errors
    /// When its trace cannot be read (validation has already reported it once).
    pub fn program(
        &self,
        stage_index: usize,
        defaults: &StageDefaults<'_>,
    ) -> Result<StageProgram, String> {
        let input_tokens = self.input_tokens.map_or(defaults.input_tokens, |t| t.0);
        let output_tokens = self.output_tokens.map_or(defaults.output_tokens, |t| t.0);
        let checks = self.checks(defaults);
        let think_time = self.think_time.map(|d| d.0).unwrap_or_default();
        let max_in_flight = self.max_in_flight.map(|c| c.0);
        let arrival = self.arrival_kind();
        let open = |qps: f64| Load::Open {
            qps,
            arrival,
            max_in_flight,
        };
        let closed = |concurrency: u32| Load::Closed {
            concurrency,
            think_time,
        };
        let step = |name: String, kind: StepKind, load: Load, duration: Duration| StepPlan {
            stage_index,
            stage_name: self.name.clone(),
            step_index: 0,
            name,
            kind,
            load,
            duration,
            input_tokens,
            output_tokens,
            checks: checks.clone(),
        };
        let base_load = self
            .qps
            .map(|q| open(q.0))
            .or(self.concurrency.map(|c| closed(c.0)));
        let duration = self.duration.map(|d| d.0).unwrap_or_default();
        let warmup = self.warmup.map(|w| {
            let load = base_load.clone().unwrap_or_else(|| closed(1));
            let mut s = step(format!("{}/warmup", self.name), StepKind::Warmup, load, w.0);
            s.checks.clear();
            s
        });

        if let Some(search) = &self.search {
            let template = step(
                self.name.clone(),
                StepKind::Search,
                open(search.qps[0].0),
                search.each.0,
            );
            let probe = Probe::Search {
                lo: search.qps[0].0,
                hi: search.qps[1].0,
                precision: search.precision.0,
                each: search.each.0,
                slo: search
                    .slo
                    .as_ref()
                    .map(OneOrMany::names)
                    .unwrap_or_default(),
            };
            return Ok(StageProgram::Adaptive {
                template: Box::new(template),
                probe,
                warmup: warmup.map(Box::new),
            });
        }
        if let Some(l) = &self.limits {
            let (kind, probe) = match (&l.input_tokens, &l.concurrency) {
                (Some([from, to]), _) => (
                    StepKind::LimitInput,
                    Probe::InputLength {
                        from: from.0,
                        to: to.0,
                        factor: l.factor,
                        each: l.each.0,
                    },
                ),
                (None, Some([from, to])) => (
                    StepKind::LimitConcurrency,
                    Probe::Concurrency {
                        from: from.0,
                        to: to.0,
                        factor: l.factor,
                        each: l.each.0,
                    },
                ),
                (None, None) => return Err("limits needs input_tokens or concurrency".into()),
            };
            let load = base_load.clone().unwrap_or_else(|| closed(1));
            let template = step(self.name.clone(), kind, load, l.each.0);
            return Ok(StageProgram::Adaptive {
                template: Box::new(template),
                probe,
                warmup: warmup.map(Box::new),
            });
        }

        let mut steps: Vec<StepPlan> = Vec::new();
        if let Some(s) = &self.steps {
            for q in s.qps.iter().flatten() {
                steps.push(step(
                    format!("{}/qps={}", self.name, q.0),
                    StepKind::Step,
                    open(q.0),
                    s.each.0,
                ));
            }
            for c in s.concurrency.iter().flatten() {
                steps.push(step(
                    format!("{}/concurrency={}", self.name, c.0),
                    StepKind::Step,
                    closed(c.0),
                    s.each.0,
                ));
            }
        } else if let Some(sw) = &self.sweep {
            for t in sw.input_tokens.iter().flatten() {
                let load = base_load.clone().unwrap_or_else(|| closed(1));
                let mut s = step(
                    format!("{}/input_tokens={}", self.name, t.0),
                    StepKind::Sweep,
                    load,
                    sw.each.0,
                );
                s.input_tokens = t.0;
                steps.push(s);
            }
            for t in sw.output_tokens.iter().flatten() {
                let load = base_load.clone().unwrap_or_else(|| closed(1));
                let mut s = step(
                    format!("{}/output_tokens={}", self.name, t.0),
                    StepKind::Sweep,
                    load,
                    sw.each.0,
                );
                s.output_tokens = t.0;
                steps.push(s);
            }
            for c in sw.concurrency.iter().flatten() {
                steps.push(step(
                    format!("{}/concurrency={}", self.name, c.0),
                    StepKind::Sweep,
                    closed(c.0),
                    sw.each.0,
                ));
            }
        } else if let Some(r) = &self.ramp {
            let load = Load::Open {
                qps: r.from.0,
                arrival: ArrivalKind::Ramp {
                    to_qps: r.to.0,
                    over: duration,
                },
                max_in_flight,
            };
            steps.push(step(self.name.clone(), StepKind::Ramp, load, duration));
        } else if let Some(t) = &self.trace {
            let mut entries =
                read_trace(&defaults.plan_dir.join(&t.file), t.limit).map_err(|e| e.to_string())?;
            for e in &mut entries {
                e.offset = e.offset.div_f64(t.speed);
            }
            let span = entries
                .last()
                .map(|e| e.offset + Duration::from_millis(1))
                .unwrap_or_default();
            let length = if duration.is_zero() { span } else { duration };
            entries.retain(|e| e.offset < length);
            let load = Load::Trace {
                entries: Arc::new(entries),
                max_in_flight,
            };
            steps.push(step(self.name.clone(), StepKind::Trace, load, length));
        } else if let Some(s) = &self.spike {
            steps.push(step(
                format!("{}/base", self.name),
                StepKind::SpikeBase,
                open(s.base.0),
                s.base_duration.0,
            ));
            steps.push(step(
                format!("{}/burst", self.name),
                StepKind::SpikeBurst,
                open(s.burst.0),
                s.burst_duration.0,
            ));
            steps.push(step(
                format!("{}/after", self.name),
                StepKind::SpikeAfter,
                open(s.base.0),
                s.base_duration.0,
            ));
        } else if let (Some(soak), Some(load)) = (&self.soak, &base_load) {
            let every = soak.checkpoint.0;
            let mut at = Duration::ZERO;
            let mut n = 1;
            while at < duration {
                let len = every.min(duration - at);
                steps.push(step(
                    format!("{}/{}", self.name, n),
                    StepKind::Soak,
                    load.clone(),
                    len,
                ));
                at += len;
                n += 1;
            }
        } else if let Some(load) = base_load {
            steps.push(step(self.name.clone(), StepKind::Single, load, duration));
        }
        if let Some(w) = warmup {
            steps.insert(0, w);
        }
        for (i, s) in steps.iter_mut().enumerate() {
            s.step_index = i;
        }
        Ok(StageProgram::Fixed(steps))
    }

    /// Multiplies every duration of the stage by `factor` (a quick run of a long plan).
    pub fn scale_time(&mut self, factor: f64) {
        let scale = |d: &mut HumanDuration| d.0 = d.0.mul_f64(factor);
        let opt = |d: &mut Option<HumanDuration>| {
            if let Some(d) = d {
                d.0 = d.0.mul_f64(factor);
            }
        };
        opt(&mut self.duration);
        opt(&mut self.warmup);
        opt(&mut self.cooldown);
        opt(&mut self.think_time);
        if let Some(s) = &mut self.steps {
            scale(&mut s.each);
        }
        if let Some(s) = &mut self.sweep {
            scale(&mut s.each);
        }
        if let Some(s) = &mut self.spike {
            scale(&mut s.base_duration);
            scale(&mut s.burst_duration);
        }
        if let Some(s) = &mut self.search {
            scale(&mut s.each);
        }
        if let Some(s) = &mut self.limits {
            scale(&mut s.each);
        }
        if let Some(s) = &mut self.soak {
            scale(&mut s.checkpoint);
        }
        if let Some(t) = &mut self.trace {
            t.speed /= factor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Bound;

    fn defaults<'a>(checks: &'a [SloCheck]) -> StageDefaults<'a> {
        StageDefaults {
            input_tokens: 100,
            output_tokens: 10,
            checks,
            plan_dir: Path::new("."),
        }
    }

    fn stage(text: &str) -> StagePlan {
        toml::from_str(&format!("name = \"s\"\n{text}")).unwrap()
    }

    fn fixed(p: StageProgram) -> Vec<StepPlan> {
        match p {
            StageProgram::Fixed(s) => s,
            StageProgram::Adaptive { .. } => panic!("expected fixed steps"),
        }
    }

    #[test]
    fn sweeps_vary_one_parameter_at_the_stage_load() {
        let s = stage("qps = 5\nsweep = { input_tokens = [1000, 2048, 4096], each = \"2m\" }");
        assert!(
            s.problems(&defaults(&[])).is_empty(),
            "{:?}",
            s.problems(&defaults(&[]))
        );
        let steps = fixed(s.program(0, &defaults(&[])).unwrap());
        assert_eq!(
            steps.iter().map(|s| s.input_tokens).collect::<Vec<_>>(),
            vec![1000, 2048, 4096]
        );
        assert!(
            steps
                .iter()
                .all(|s| s.load.offered_qps(s.duration) == Some(5.0) && s.output_tokens == 10)
        );
        assert_eq!(steps[2].name, "s/input_tokens=4096");
    }

    #[test]
    fn soak_is_cut_into_checkpoints_and_warmup_comes_first() {
        let s =
            stage("qps = 2\nduration = \"2h30m\"\nsoak = { checkpoint = \"1h\" }\nwarmup = \"1m\"");
        let steps = fixed(s.program(3, &defaults(&[])).unwrap());
        let lens: Vec<_> = steps.iter().map(|s| s.duration.as_secs()).collect();
        assert_eq!(lens, vec![60, 3600, 3600, 1800]);
        assert!(steps[0].is_warmup());
        assert_eq!(steps[3].name, "s/3");
        assert_eq!(steps[3].step_index, 3);
    }

    #[test]
    fn spike_is_base_burst_base() {
        let s = stage(
            "spike = { base = 5, burst = 50, base_duration = \"20s\", burst_duration = \"5s\" }",
        );
        let steps = fixed(s.program(0, &defaults(&[])).unwrap());
        let kinds: Vec<_> = steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                StepKind::SpikeBase,
                StepKind::SpikeBurst,
                StepKind::SpikeAfter
            ]
        );
        assert_eq!(steps[1].load.offered_qps(steps[1].duration), Some(50.0));
    }

    #[test]
    fn stage_slo_adds_to_and_replaces_the_plans() {
        let plan_checks = vec![
            SloCheck {
                name: "e2e_p99".into(),
                limit: 1500.0,
                bound: Bound::AtMost,
            },
            SloCheck {
                name: "error_rate".into(),
                limit: 0.01,
                bound: Bound::AtMost,
            },
        ];
        let s =
            stage("qps = 1\nduration = \"1s\"\nslo = { e2e_p99 = \"3s\", ttft_p50 = \"200ms\" }");
        let checks = s.checks(&defaults(&plan_checks));
        assert_eq!(checks.len(), 3);
        assert_eq!(
            checks.iter().find(|c| c.name == "e2e_p99").unwrap().limit,
            3000.0
        );
    }

    #[test]
    fn search_needs_ordered_bounds_and_known_thresholds() {
        let d = defaults(&[]);
        let s = stage("search = { qps = [100, 10], each = \"10s\", slo = \"e2e_p99\" }");
        let fields: Vec<String> = s.problems(&d).into_iter().map(|(f, _)| f).collect();
        assert!(fields.contains(&"search.qps".to_string()), "{fields:?}");
        assert!(fields.contains(&"search".to_string()), "{fields:?}");
        assert!(fields.contains(&"search.slo".to_string()), "{fields:?}");
    }

    #[test]
    fn conflicting_and_missing_drivers_are_reported() {
        let d = defaults(&[]);
        assert!(
            !stage("qps = 1\nconcurrency = 2\nduration = \"1s\"")
                .problems(&d)
                .is_empty()
        );
        assert!(!stage("duration = \"1s\"").problems(&d).is_empty());
        assert!(
            !stage("qps = 1\nduration = \"1s\"\narrival = \"gamma\"")
                .problems(&d)
                .is_empty()
        );
        assert!(
            stage("qps = 1\nduration = \"1s\"\narrival = \"gamma\"\nburstiness = 0.5")
                .problems(&d)
                .is_empty()
        );
        assert!(
            !stage("limits = { input_tokens = [4096, 1000], each = \"5s\" }")
                .problems(&d)
                .is_empty()
        );
    }

    #[test]
    fn time_scale_shrinks_every_duration() {
        let mut s = stage("qps = 2\nduration = \"24h\"\nsoak = { checkpoint = \"1h\" }");
        s.scale_time(1.0 / 1440.0);
        assert_eq!(s.duration.unwrap().0, Duration::from_secs(60));
        assert_eq!(s.soak.unwrap().checkpoint.0.as_millis(), 2500);
    }
}
