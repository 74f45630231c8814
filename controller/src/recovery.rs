//! Availability and recovery, read from a step's merged intervals: how long the target failed
//! requests, whether it came back, and, after a burst, how long latency took to settle.

pub use stampede_results::summary::{RecoveryStats, SETTLE_FACTOR};

/// What recovery times are read from: one merged interval, reduced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalPoint {
    /// Seconds from the step's start to the interval's end.
    pub end_s: f64,
    pub start_s: f64,
    pub completed: u64,
    pub failed: u64,
    pub ttft_p99_ms: f64,
}

/// Recovery read as a step's intervals are merged, in constant memory: a 24-hour step keeps
/// counters, not a point per interval. Only a step after a burst keeps its clean intervals' TTFT
/// p99, since the level to settle to is known only at its end (and such a step is short).
#[derive(Debug, Clone, Default)]
pub struct RecoveryAcc {
    completed: u64,
    failed: u64,
    /// Start of the first interval with failures, end of the last.
    first_failing_s: Option<f64>,
    last_failing_s: Option<f64>,
    /// An interval with completions and no failure came after the last failing one.
    back_after_last: bool,
    /// (end_s, ttft_p99_ms) of every interval with completions and no failure, when kept.
    clean: Option<Vec<(f64, f64)>>,
}

impl RecoveryAcc {
    /// An accumulator; `settling`: keep what [`RecoveryStats::latency_settled_after_s`] needs.
    pub fn new(settling: bool) -> Self {
        RecoveryAcc {
            clean: settling.then(Vec::new),
            ..Default::default()
        }
    }

    /// Takes the next merged interval.
    pub fn add(&mut self, p: &IntervalPoint) {
        self.completed += p.completed;
        self.failed += p.failed;
        if p.failed > 0 {
            self.first_failing_s.get_or_insert(p.start_s);
            self.last_failing_s = Some(p.end_s);
            self.back_after_last = false;
        } else if p.completed > 0 {
            self.back_after_last = true;
            if let Some(clean) = &mut self.clean {
                clean.push((p.end_s, p.ttft_p99_ms));
            }
        }
    }

    /// What the intervals so far show. `base_ttft_p99_ms`: the level before a burst.
    pub fn finish(&self, base_ttft_p99_ms: Option<f64>) -> RecoveryStats {
        let (completed, failed) = (self.completed, self.failed);
        let availability = if completed + failed == 0 {
            1.0
        } else {
            completed as f64 / (completed + failed) as f64
        };
        let (failing_from_s, failing_until_s, time_to_recover_s, recovered) =
            match (self.first_failing_s, self.last_failing_s) {
                (Some(from), Some(until)) => (
                    Some(from),
                    Some(until),
                    Some(until - from),
                    Some(self.back_after_last),
                ),
                _ => (None, None, None, None),
            };
        let latency_settled_after_s = base_ttft_p99_ms.and_then(|base| {
            self.clean
                .iter()
                .flatten()
                .find(|(_, ttft)| *ttft <= base * SETTLE_FACTOR)
                .map(|(end, _)| *end)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recovery of a whole list of intervals, as the accumulator reads them one by one.
    fn recovery(points: &[IntervalPoint], base_ttft_p99_ms: Option<f64>) -> RecoveryStats {
        let mut acc = RecoveryAcc::new(true);
        for p in points {
            acc.add(p);
        }
        acc.finish(base_ttft_p99_ms)
    }

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
