//! Stages: a `[[stage]]` as written ([`StagePlan`]), validated once into a [`Stage`] whose
//! [`StageDriver`] says what drives its load, and expanded into the steps that agents run.
//!
//! A stage has one driver (`qps`, `concurrency`, `steps`, `sweep`, `ramp`, `trace`, `spike`,
//! `soak` at a rate or users, `search` or `limits`) and optional modifiers (`warmup`,
//! `cooldown`, per-stage `slo`). Most stages expand into a fixed list of steps run back to back;
//! a capacity search and the limit tests decide each step from the results of the last, so they
//! expand into a [`StageProgram`] that the runner asks for its next step.
//!
//! - `raw`: the serde form, with `deny_unknown_fields`;
//! - `checks`: each option's checks, every problem kept;
//! - `resolve`: raw to validated (the trace file is read here), [`StageDefaults`];
//! - `driver`: the validated [`Stage`] and [`StageDriver`];
//! - `expand`: one small expansion per driver;
//! - `step`: what expansion yields ([`StepPlan`], [`Load`], [`Probe`]).

mod checks;
mod driver;
mod expand;
mod raw;
mod resolve;
mod step;
#[cfg(test)]
mod tests;

pub use driver::{BaseLoad, Levels, LimitParam, Stage, StageDriver, SweepParam};
pub use raw::{
    ArrivalPlan, LimitsPlan, OneOrMany, RampPlan, SearchPlan, SoakPlan, SpikePlan, StagePlan,
    StepsPlan, SweepPlan, TracePlan,
};
pub use resolve::StageDefaults;
pub use step::{Load, Probe, StageProgram, StepKind, StepPlan};
