//! Generated code for `proto/stampede.proto`, and the conversions between it and the domain
//! types: `metrics` for histograms and counters.

mod generated {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("stampede.v1");
}

pub use generated::*;

mod metrics;
pub use self::metrics::{count_outcome, note_error};

use std::time::Duration;

use crate::schedule::ArrivalKind;

impl OpenLoop {
    /// The arrival process this share asks for (trace replay is not a rate process: `None`).
    ///
    /// # Errors
    /// When the arrival enum or its parameters are out of range.
    pub fn arrival_kind(&self) -> Result<Option<ArrivalKind>, &'static str> {
        Ok(Some(match Arrival::try_from(self.arrival) {
            Ok(Arrival::Constant) => ArrivalKind::Constant,
            Ok(Arrival::Poisson) => ArrivalKind::Poisson,
            Ok(Arrival::Gamma) => {
                if !(self.burstiness.is_finite() && self.burstiness > 0.0) {
                    return Err("burstiness must be above 0");
                }
                ArrivalKind::Gamma {
                    burstiness: self.burstiness,
                }
            }
            Ok(Arrival::Ramp) => {
                if !(self.ramp_to_qps.is_finite() && self.ramp_to_qps > 0.0) {
                    return Err("ramp_to_qps must be above 0");
                }
                ArrivalKind::Ramp {
                    to_qps: self.ramp_to_qps,
                    over: Duration::from_micros(self.ramp_over_us),
                }
            }
            Ok(Arrival::Trace) => return Ok(None),
            Err(_) => return Err("unknown arrival process"),
        }))
    }

    /// Sets the arrival fields for `kind`.
    pub fn set_arrival_kind(&mut self, kind: ArrivalKind) {
        self.arrival = match kind {
            ArrivalKind::Constant => Arrival::Constant,
            ArrivalKind::Poisson => Arrival::Poisson,
            ArrivalKind::Gamma { burstiness } => {
                self.burstiness = burstiness;
                Arrival::Gamma
            }
            ArrivalKind::Ramp { to_qps, over } => {
                self.ramp_to_qps = to_qps;
                self.ramp_over_us = crate::units::micros(over);
                Arrival::Ramp
            }
        } as i32;
    }
}
