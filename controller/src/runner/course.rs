//! How a step ran against its plan: the rate changes and pauses made inside its window and a
//! stop that cut it short, as pure bookkeeping the coordinator fills in. From them come the
//! step's [`StepEnd`], the time it was paused (left out of its duration and rates) and the
//! rate it offered on average.

use std::time::Duration;

use crate::results::kinds::StepEnd;

/// What happened to one step while its window was open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepCourse {
    /// Each rate factor set, with its offset from the step's start (0: paused).
    changes: Vec<(Duration, f64)>,
    /// A stop inside the window: how it ended the step, and when.
    cut: Option<(StepEnd, Duration)>,
}

impl StepCourse {
    /// Records a rate factor set `at` after the step's start.
    pub fn rate_set(&mut self, at: Duration, scale: f64) {
        self.changes.push((at, scale));
    }

    /// Records a stop `at` after the step's start (`how`: interrupted or aborted); one after
    /// the planned window's end leaves the step complete. An abort outranks an interrupt.
    pub fn stopped(&mut self, at: Duration, planned: Duration, how: StepEnd) {
        if at >= planned {
            return;
        }
        match self.cut {
            Some((StepEnd::Aborted, _)) => {}
            Some((_, first)) => self.cut = Some((how, first)),
            None => self.cut = Some((how, at)),
        }
    }

    /// When the stop came, if one cut the window.
    pub fn cut_at(&self) -> Option<Duration> {
        self.cut.map(|(_, at)| at)
    }

    /// The rate factor's pieces over `[0, window)`: (length, factor).
    fn pieces(&self, window: Duration) -> Vec<(Duration, f64)> {
        let mut out = Vec::new();
        let (mut from, mut scale) = (Duration::ZERO, 1.0);
        for &(at, next) in &self.changes {
            let at = at.min(window);
            out.push((at.saturating_sub(from), scale));
            (from, scale) = (at.max(from), next);
        }
        out.push((window.saturating_sub(from), scale));
        out
    }

    /// How long the rate was paused inside a window of length `window`.
    pub fn paused(&self, window: Duration) -> Duration {
        self.pieces(window)
            .iter()
            .filter(|(_, s)| *s == 0.0)
            .map(|(d, _)| *d)
            .sum()
    }

    /// The mean rate factor over the window's unpaused time (1 when never changed).
    pub fn mean_scale(&self, window: Duration) -> f64 {
        let (mut time, mut weighted) = (0.0, 0.0);
        for (d, s) in self.pieces(window) {
            if s > 0.0 {
                time += d.as_secs_f64();
                weighted += d.as_secs_f64() * s;
            }
        }
        if time > 0.0 { weighted / time } else { 1.0 }
    }

    /// How the step ended: a stop, else a pause, else a rate change inside the window, else
    /// complete.
    pub fn end(&self, window: Duration) -> StepEnd {
        if let Some((how, _)) = self.cut {
            return how;
        }
        let pieces = self.pieces(window);
        let ran = |d: &Duration| !d.is_zero();
        if pieces.iter().any(|(d, s)| ran(d) && *s == 0.0) {
            StepEnd::Paused
        } else if pieces
            .iter()
            .any(|(d, s)| ran(d) && (*s - 1.0).abs() > 1e-9)
        {
            StepEnd::RateChanged
        } else {
            StepEnd::Complete
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(20);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_step_left_alone_is_complete() {
        let c = StepCourse::default();
        assert_eq!(
            (c.end(T), c.paused(T), c.mean_scale(T)),
            (StepEnd::Complete, Duration::ZERO, 1.0)
        );
    }

    #[test]
    fn a_pause_is_timed_and_left_out_of_the_mean_rate() {
        let mut c = StepCourse::default();
        c.rate_set(s(5.0), 0.0);
        c.rate_set(s(8.0), 1.0);
        assert_eq!((c.end(T), c.paused(T)), (StepEnd::Paused, s(3.0)));
        assert_eq!(c.mean_scale(T), 1.0);
        // A pause never resumed lasts to the window's end.
        let mut c = StepCourse::default();
        c.rate_set(s(15.0), 0.0);
        assert_eq!(c.paused(T), s(5.0));
    }

    #[test]
    fn a_rate_change_is_time_weighted() {
        let mut c = StepCourse::default();
        c.rate_set(s(10.0), 0.5);
        assert_eq!(c.end(T), StepEnd::RateChanged);
        assert!((c.mean_scale(T) - 0.75).abs() < 1e-9);
        // A change after the window (in the drain) does not count.
        let mut late = StepCourse::default();
        late.rate_set(s(20.5), 0.5);
        assert_eq!(late.end(T), StepEnd::Complete);
    }

    #[test]
    fn a_stop_inside_the_window_decides_and_an_abort_outranks_an_interrupt() {
        let mut c = StepCourse::default();
        c.rate_set(s(2.0), 0.0);
        c.stopped(s(10.0), T, StepEnd::Interrupted);
        assert_eq!(
            (c.end(T), c.cut_at()),
            (StepEnd::Interrupted, Some(s(10.0)))
        );
        c.stopped(s(11.0), T, StepEnd::Aborted);
        assert_eq!((c.end(T), c.cut_at()), (StepEnd::Aborted, Some(s(10.0))));
        c.stopped(s(12.0), T, StepEnd::Interrupted);
        assert_eq!(c.end(T), StepEnd::Aborted);
        // A stop in the drain leaves the step complete.
        let mut drained = StepCourse::default();
        drained.stopped(s(20.1), T, StepEnd::Interrupted);
        assert_eq!(
            (drained.end(T), drained.cut_at()),
            (StepEnd::Complete, None)
        );
    }
}
