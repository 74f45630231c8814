//! From a `[[stage]]` as written to a [`Stage`]: every check run, every problem kept, the trace
//! file read, and the one driver the options name picked out once.

use std::path::Path;
use std::sync::Arc;

use super::checks::{NO_DRIVER, Problems, check_limits, check_spike, check_steps, check_trace};
use super::driver::{BaseLoad, Levels, LimitParam, Stage, StageDriver, SweepParam};
use super::raw::{ArrivalPlan, OneOrMany, StagePlan};
use crate::plan::slo::{SloCheck, parse_slo};
use crate::schedule::ArrivalKind;
use crate::trace::TraceEntry;

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
    /// Checks the stage and builds its validated form.
    ///
    /// # Errors
    /// Every problem found, as (field, message), in the order the fields are checked.
    pub fn resolve(&self, defaults: &StageDefaults<'_>) -> Result<Stage, Vec<(String, String)>> {
        let mut p = Problems::default();
        let checks = self.checks(defaults);
        self.check_name_and_driver(&mut p);
        self.check_duration(&mut p);
        if let Some(s) = &self.steps {
            check_steps(s, &mut p);
        }
        if let Some(s) = &self.sweep {
            self.check_sweep(s, &mut p);
        }
        if let Some(s) = &self.search {
            self.check_search(s, &checks, &mut p);
        }
        if let Some(l) = &self.limits {
            check_limits(l, &mut p);
        }
        if let Some(s) = &self.spike {
            check_spike(s, &mut p);
        }
        if let Some(s) = &self.soak {
            self.check_soak(s, &mut p);
        }
        let trace = (self.trace.as_ref()).and_then(|t| check_trace(t, defaults.plan_dir, &mut p));
        self.check_loop(&mut p);
        self.check_slo(&mut p);
        if !p.0.is_empty() {
            return Err(p.0);
        }
        // The checks above leave exactly one driver; a combination they missed is still refused.
        let driver = self
            .driver(trace)
            .ok_or_else(|| vec![("qps".to_string(), NO_DRIVER.to_string())])?;
        Ok(Stage {
            name: self.name.clone(),
            driver,
            arrival: self.arrival_kind(),
            max_in_flight: self.max_in_flight.map(|c| c.0),
            think_time: self.think_time.map(|d| d.0).unwrap_or_default(),
            input_tokens: self.input_tokens.map_or(defaults.input_tokens, |t| t.0),
            output_tokens: self.output_tokens.map_or(defaults.output_tokens, |t| t.0),
            checks,
            warmup: self.warmup.map(|d| d.0),
            cooldown: self.cooldown.map(|d| d.0),
        })
    }

    /// Every problem of this stage, as (field, message).
    pub fn problems(&self, defaults: &StageDefaults<'_>) -> Vec<(String, String)> {
        self.resolve(defaults).err().unwrap_or_default()
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

    fn base_load(&self) -> Option<BaseLoad> {
        (self.qps.map(|q| BaseLoad::Rate(q.0))).or(self.concurrency.map(|c| BaseLoad::Users(c.0)))
    }

    /// The driver the options name; `None` when they name none (or an incomplete one).
    fn driver(&self, trace: Option<Vec<TraceEntry>>) -> Option<StageDriver> {
        if let Some(d) = self.adaptive_driver() {
            return Some(d);
        }
        let duration = self.duration.map(|d| d.0);
        if let Some(s) = &self.steps {
            let levels = match (&s.qps, &s.concurrency) {
                (Some(q), _) => Levels::Rates(q.iter().map(|q| q.0).collect()),
                (None, Some(c)) => Levels::Users(c.iter().map(|c| c.0).collect()),
                (None, None) => return None,
            };
            return Some(StageDriver::Steps {
                levels,
                each: s.each.0,
            });
        }
        if self.sweep.is_some() {
            return self.sweep_driver();
        }
        if let Some(r) = &self.ramp {
            return Some(StageDriver::Ramp {
                from: r.from.0,
                to: r.to.0,
                duration: duration?,
            });
        }
        if let Some(t) = &self.trace {
            return Some(StageDriver::Trace {
                entries: Arc::new(trace?),
                speed: t.speed,
                duration,
            });
        }
        if let Some(s) = &self.spike {
            return Some(StageDriver::Spike {
                base: s.base.0,
                burst: s.burst.0,
                base_duration: s.base_duration.0,
                burst_duration: s.burst_duration.0,
            });
        }
        self.steady_driver(duration?)
    }

    /// A capacity search or a limit test: the stages whose steps depend on the last result.
    fn adaptive_driver(&self) -> Option<StageDriver> {
        if let Some(s) = &self.search {
            return Some(StageDriver::Search {
                lo: s.qps[0].0,
                hi: s.qps[1].0,
                precision: s.precision.0,
                each: s.each.0,
                slo: s.slo.as_ref().map(OneOrMany::names).unwrap_or_default(),
            });
        }
        let l = self.limits.as_ref()?;
        let param = match (&l.input_tokens, &l.concurrency) {
            (Some([from, to]), _) => LimitParam::InputTokens {
                from: from.0,
                to: to.0,
            },
            (None, Some([from, to])) => LimitParam::Concurrency {
                from: from.0,
                to: to.0,
            },
            (None, None) => return None,
        };
        Some(StageDriver::Limits {
            param,
            factor: l.factor,
            each: l.each.0,
        })
    }

    fn sweep_driver(&self) -> Option<StageDriver> {
        let s = self.sweep.as_ref()?;
        let values = |v: &Vec<crate::plan::values::TokenCount>| v.iter().map(|t| t.0).collect();
        let param = match (&s.input_tokens, &s.output_tokens, &s.concurrency) {
            (Some(v), _, _) => SweepParam::InputTokens {
                load: self.base_load()?,
                values: values(v),
            },
            (None, Some(v), _) => SweepParam::OutputTokens {
                load: self.base_load()?,
                values: values(v),
            },
            (None, None, Some(c)) => SweepParam::Concurrency(c.iter().map(|c| c.0).collect()),
            (None, None, None) => return None,
        };
        Some(StageDriver::Sweep {
            param,
            each: s.each.0,
        })
    }

    /// One load for the whole stage: a single step, or checkpoints of a soak.
    fn steady_driver(&self, duration: std::time::Duration) -> Option<StageDriver> {
        let load = self.base_load()?;
        if let Some(soak) = &self.soak {
            return Some(StageDriver::Soak {
                load,
                duration,
                checkpoint: soak.checkpoint.0,
            });
        }
        Some(match load {
            BaseLoad::Rate(qps) => StageDriver::Rate { qps, duration },
            BaseLoad::Users(concurrency) => StageDriver::Users {
                concurrency,
                duration,
            },
        })
    }
}
