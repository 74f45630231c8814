//! The checks of one `[[stage]]` as written: each option checked on its own and against the
//! others, every problem kept (as field and message) so a plan's errors come all at once.

use std::path::Path;

use super::raw::{
    ArrivalPlan, LimitsPlan, OneOrMany, SearchPlan, SoakPlan, SpikePlan, StagePlan, StepsPlan,
    SweepPlan, TracePlan,
};
use crate::plan::slo::{SloCheck, parse_slo};
use crate::trace::{TraceEntry, read_trace};

/// What a stage with no driver is told.
pub(super) const NO_DRIVER: &str = "a stage needs one of qps (open loop), concurrency (closed loop), steps, ramp, trace, spike, search or limits";

/// The problems of one stage, as (field, message), in the order the checks find them.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<(String, String)>);

impl Problems {
    fn bad(&mut self, field: &str, message: impl Into<String>) {
        self.0.push((field.to_string(), message.into()));
    }
}

impl StagePlan {
    /// The drivers written, by field name.
    fn drivers(&self) -> Vec<&'static str> {
        [
            (self.qps.is_some(), "qps"),
            (self.concurrency.is_some(), "concurrency"),
            (self.steps.is_some(), "steps"),
            (self.ramp.is_some(), "ramp"),
            (self.trace.is_some(), "trace"),
            (self.spike.is_some(), "spike"),
            (self.search.is_some(), "search"),
            (self.limits.is_some(), "limits"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// A name, and exactly one driver (a concurrency sweep is its own).
    pub(super) fn check_name_and_driver(&self, p: &mut Problems) {
        if self.name.trim().is_empty() {
            p.bad("name", "must not be empty");
        }
        let drivers = self.drivers();
        let sweep_sets_load = self.sweep.as_ref().is_some_and(|s| s.concurrency.is_some());
        match drivers.len() {
            0 if sweep_sets_load => {}
            0 => p.bad("qps", NO_DRIVER),
            1 => {}
            _ => p.bad("qps", format!("give only one of {}", drivers.join(", "))),
        }
    }

    /// A duration where the driver does not time the stage itself (a trace may be cut short).
    pub(super) fn check_duration(&self, p: &mut Problems) {
        let timed_by_itself = self.steps.is_some()
            || self.sweep.is_some()
            || self.spike.is_some()
            || self.search.is_some()
            || self.limits.is_some()
            || self.trace.is_some();
        match (&self.duration, timed_by_itself) {
            (Some(_), true) if self.trace.is_none() => p.bad(
                "duration",
                "this stage takes its length from its steps (each, base_duration...); remove duration",
            ),
            (None, false) => p.bad(
                "duration",
                "missing: how long the stage runs, such as \"60s\"",
            ),
            (Some(d), _) if d.0.is_zero() => p.bad("duration", "must be longer than 0s"),
            _ => {}
        }
    }

    /// One sweep list, at a load the stage sets (or a concurrency sweep's own).
    pub(super) fn check_sweep(&self, sweep: &SweepPlan, p: &mut Problems) {
        let lists = [
            sweep.input_tokens.is_some(),
            sweep.output_tokens.is_some(),
            sweep.concurrency.is_some(),
        ];
        if lists.iter().filter(|x| **x).count() != 1 {
            p.bad(
                "sweep",
                "sweep exactly one of input_tokens, output_tokens or concurrency",
            );
        }
        let empty = sweep.input_tokens.as_ref().is_some_and(Vec::is_empty)
            || sweep.output_tokens.as_ref().is_some_and(Vec::is_empty)
            || sweep.concurrency.as_ref().is_some_and(Vec::is_empty);
        if empty {
            p.bad("sweep", "the list of values is empty");
        }
        let base = self.qps.is_some() || self.concurrency.is_some();
        if sweep.concurrency.is_some() && base {
            p.bad(
                "sweep",
                "a concurrency sweep sets the load itself; remove qps and concurrency",
            );
        }
        if sweep.concurrency.is_none() && !base {
            p.bad(
                "sweep",
                "an input or output sweep runs at the stage's qps or concurrency: set one",
            );
        }
        if self.duration.is_some() {
            p.bad(
                "duration",
                "a sweep takes its length from sweep.each; remove duration",
            );
        }
        if sweep.each.0.is_zero() {
            p.bad("sweep.each", "must be longer than 0s");
        }
    }

    /// Ordered bounds, a precision, and thresholds that exist.
    pub(super) fn check_search(&self, search: &SearchPlan, known: &[SloCheck], p: &mut Problems) {
        let [lo, hi] = search.qps;
        if lo.0 >= hi.0 {
            p.bad(
                "search.qps",
                format!(
                    "the bounds are reversed or equal: [{}, {}]; write [low, high]",
                    lo.0, hi.0
                ),
            );
        }
        if search.each.0.is_zero() {
            p.bad("search.each", "must be longer than 0s");
        }
        if !(search.precision.0 > 0.0 && search.precision.0 < 1.0) {
            p.bad(
                "search.precision",
                "must be between 0% and 100%, such as \"5%\"",
            );
        }
        if known.is_empty() {
            p.bad("search", "a capacity search needs thresholds: add [slo] entries such as e2e_p99 = \"1500ms\"");
        }
        let names = search.slo.as_ref().map(OneOrMany::names);
        for name in names.unwrap_or_default() {
            if !known.iter().any(|c| c.name == name) {
                p.bad(
                    "search.slo",
                    format!(
                        "{name:?} is not a threshold of this plan or stage; add it under [slo]"
                    ),
                );
            }
        }
    }

    /// A base load to soak at, and checkpoints that fit in the stage.
    pub(super) fn check_soak(&self, soak: &SoakPlan, p: &mut Problems) {
        if self.qps.is_none() && self.concurrency.is_none() {
            p.bad(
                "soak",
                "a soak runs at the stage's qps or concurrency: set one",
            );
        }
        if self.sweep.is_some() {
            p.bad(
                "soak",
                "a sweep cannot be a soak too: give the soak a stage of its own",
            );
        }
        if soak.checkpoint.0.is_zero() {
            p.bad("soak.checkpoint", "must be longer than 0s");
        }
        if let Some(d) = &self.duration
            && soak.checkpoint.0 > d.0
        {
            p.bad(
                "soak.checkpoint",
                format!("is longer than the stage ({} > {})", soak.checkpoint, d),
            );
        }
    }

    /// Think time, a cap on requests in flight, and arrivals only where the loop has them.
    pub(super) fn check_loop(&self, p: &mut Problems) {
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
            p.bad("think_time", "applies only to closed loop (concurrency)");
        }
        if self.max_in_flight.is_some() && closed {
            p.bad("max_in_flight", "applies only to open loop (qps)");
        }
        if self.arrival == ArrivalPlan::Gamma && self.burstiness.is_none() {
            p.bad(
                "burstiness",
                "gamma arrivals need a burstiness, such as 0.5 (1 is Poisson)",
            );
        }
        if let Some(b) = self.burstiness {
            if self.arrival != ArrivalPlan::Gamma {
                p.bad("burstiness", "applies only with arrival = \"gamma\"");
            } else if !(b.is_finite() && b > 0.0) {
                p.bad("burstiness", format!("must be above 0, got {b}"));
            }
        }
        if self.arrival != ArrivalPlan::Poisson && !open {
            p.bad("arrival", "applies only to open loop");
        }
    }

    /// The stage's own thresholds, each a known metric with a valid limit.
    pub(super) fn check_slo(&self, p: &mut Problems) {
        for (name, value) in &self.slo {
            if let Err(message) = parse_slo(name, value.get_ref()) {
                p.bad(&format!("slo.{name}"), message);
            }
        }
    }
}

/// Levels of one kind, not empty.
pub(super) fn check_steps(steps: &StepsPlan, p: &mut Problems) {
    match (&steps.qps, &steps.concurrency) {
        (Some(q), None) if !q.is_empty() => {}
        (None, Some(c)) if !c.is_empty() => {}
        (Some(_), Some(_)) => p.bad("steps", "give either qps or concurrency levels, not both"),
        _ => p.bad(
            "steps",
            "needs a non-empty list: qps = [10, 50] or concurrency = [1, 8]",
        ),
    }
    if steps.each.0.is_zero() {
        p.bad("steps.each", "must be longer than 0s");
    }
}

/// One limit, with bounds in order and a factor that grows.
pub(super) fn check_limits(l: &LimitsPlan, p: &mut Problems) {
    match (&l.input_tokens, &l.concurrency) {
        (Some([a, b]), None) if a.0 < b.0 => {}
        (None, Some([a, b])) if a.0 < b.0 => {}
        (Some(_), Some(_)) => p.bad(
            "limits",
            "test one limit per stage: input_tokens or concurrency",
        ),
        (None, None) => p.bad(
            "limits",
            "needs input_tokens = [from, to] or concurrency = [from, to]",
        ),
        _ => p.bad(
            "limits",
            "the bounds are reversed or equal; write [from, to] with from < to",
        ),
    }
    if !(l.factor.is_finite() && l.factor > 1.0) {
        p.bad(
            "limits.factor",
            format!("must be above 1, got {}", l.factor),
        );
    }
    if l.each.0.is_zero() {
        p.bad("limits.each", "must be longer than 0s");
    }
}

/// A burst above the base, and both phases timed.
pub(super) fn check_spike(s: &SpikePlan, p: &mut Problems) {
    if s.burst.0 <= s.base.0 {
        p.bad(
            "spike.burst",
            format!(
                "must be above the base rate ({} <= {})",
                s.burst.0, s.base.0
            ),
        );
    }
    if s.base_duration.0.is_zero() || s.burst_duration.0.is_zero() {
        p.bad(
            "spike",
            "base_duration and burst_duration must be longer than 0s",
        );
    }
}

/// A replay speed above 0, and the trace file itself: read here, once, so that expansion never
/// touches the disk.
pub(super) fn check_trace(
    t: &TracePlan,
    plan_dir: &Path,
    p: &mut Problems,
) -> Option<Vec<TraceEntry>> {
    if !(t.speed.is_finite() && t.speed > 0.0) {
        p.bad("trace.speed", format!("must be above 0, got {}", t.speed));
    }
    read_trace(&plan_dir.join(&t.file), t.limit)
        .map_err(|e| p.bad("trace.file", e.to_string()))
        .ok()
}
