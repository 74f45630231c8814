//! Availability and recovery, read from a step's merged intervals: how long the target failed
//! requests, whether it came back, and, after a burst, how long latency took to settle.

use serde::{Deserialize, Serialize};

use crate::aggregate::IntervalPoint;

/// How a step went through failures or a burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RecoveryStats {
    /// Completed over completed and failed requests.
    pub availability: f64,
    /// Seconds from the step's start to the start of the first interval with failures.
    pub failing_from_s: Option<f64>,
    /// Seconds from the step's start to the end of the last interval with failures.
    pub failing_until_s: Option<f64>,
    /// How long requests kept failing: from the first failing interval to the end of the last.
    pub time_to_recover_s: Option<f64>,
    /// Requests succeeded again after the last failure (an interval without failures followed).
    pub recovered: Option<bool>,
    /// After a burst: seconds from the step's start until TTFT p99 was back within
    /// [`SETTLE_FACTOR`] of the base level, with no failures; `None` when it never settled.
    pub latency_settled_after_s: Option<f64>,
}

/// A latency is back to normal within this factor of its level before the burst.
pub const SETTLE_FACTOR: f64 = 1.25;

/// Reads recovery from a step's intervals. `base_ttft_p99_ms`: the level before a burst.
pub fn recovery(points: &[IntervalPoint], base_ttft_p99_ms: Option<f64>) -> RecoveryStats {
    let completed: u64 = points.iter().map(|p| p.completed).sum();
    let failed: u64 = points.iter().map(|p| p.failed).sum();
    let availability = if completed + failed == 0 {
        1.0
    } else {
        completed as f64 / (completed + failed) as f64
    };
    let first = points.iter().position(|p| p.failed > 0);
    let last = points.iter().rposition(|p| p.failed > 0);
    let (failing_from_s, failing_until_s, time_to_recover_s, recovered) = match (first, last) {
        (Some(f), Some(l)) => {
            let from = points[f].start_s;
            let until = points[l].end_s;
            let back = points[l + 1..]
                .iter()
                .any(|p| p.completed > 0 && p.failed == 0);
            (Some(from), Some(until), Some(until - from), Some(back))
        }
        _ => (None, None, None, None),
    };
    let latency_settled_after_s = base_ttft_p99_ms.and_then(|base| {
        points
            .iter()
            .find(|p| p.completed > 0 && p.failed == 0 && p.ttft_p99_ms <= base * SETTLE_FACTOR)
            .map(|p| p.end_s)
    });
    RecoveryStats {
        availability,
        failing_from_s,
        failing_until_s,
        time_to_recover_s,
        recovered,
        latency_settled_after_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: usize, completed: u64, failed: u64, ttft: f64) -> IntervalPoint {
        IntervalPoint {
            start_s: i as f64,
            end_s: i as f64 + 1.0,
            completed,
            failed,
            ttft_p99_ms: ttft,
        }
    }

    #[test]
    fn an_outage_is_measured_from_its_first_to_its_last_failing_interval() {
        let pts = [
            point(0, 5, 0, 50.0),
            point(1, 2, 3, 50.0),
            point(2, 0, 5, 0.0),
            point(3, 0, 5, 0.0),
            point(4, 5, 0, 60.0),
        ];
        let r = recovery(&pts, None);
        assert_eq!(
            (r.failing_from_s, r.failing_until_s, r.time_to_recover_s),
            (Some(1.0), Some(4.0), Some(3.0))
        );
        assert_eq!(r.recovered, Some(true));
        assert!((r.availability - 12.0 / 25.0).abs() < 1e-9);
    }

    #[test]
    fn a_target_still_failing_at_the_end_has_not_recovered() {
        let r = recovery(&[point(0, 5, 0, 50.0), point(1, 0, 5, 0.0)], None);
        assert_eq!(r.recovered, Some(false));
        let clean = recovery(&[point(0, 5, 0, 50.0)], None);
        assert_eq!((clean.recovered, clean.availability), (None, 1.0));
    }

    #[test]
    fn latency_settles_when_it_is_back_near_the_base_level() {
        let pts = [
            point(0, 5, 0, 900.0),
            point(1, 5, 0, 300.0),
            point(2, 5, 0, 60.0),
            point(3, 5, 0, 55.0),
        ];
        assert_eq!(
            recovery(&pts, Some(50.0)).latency_settled_after_s,
            Some(3.0)
        );
        assert_eq!(
            recovery(&pts[..2], Some(50.0)).latency_settled_after_s,
            None
        );
    }
}
