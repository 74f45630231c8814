//! The plan's `abort_on` rule as a pure judgement of a step's merged counts: when the step's
//! first requests all failed with one error class and HTTP status (a wrong key answered 401 to
//! every request), the run stops and says why, instead of firing for the whole stage.

use std::time::Duration;

use stampede_common::error_sample::ErrorSample;
use stampede_common::metrics::Tally;
use stampede_common::plan::AbortOnPlan;
use stampede_common::proto::Counts;

/// The rule, from the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct AbortRule {
    /// The classes that stop the run; empty: the rule is off.
    errors: Vec<String>,
    /// How many of a step's first requests are judged.
    first_requests: u64,
    /// Judge what finished by then when fewer did.
    within: Duration,
}

/// What the rule makes of a step so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Too few requests finished yet to judge.
    Wait,
    /// The step's first requests did not all fail alike: it is not judged again.
    Pass,
    /// They did: `judged` requests finished, every one failed as `sample` says.
    Abort { judged: u64, sample: ErrorSample },
}

impl AbortRule {
    /// The rule the plan sets.
    pub fn of(plan: &AbortOnPlan) -> Self {
        AbortRule {
            errors: plan.errors.clone(),
            first_requests: u64::from(plan.first_requests),
            within: plan.within.0,
        }
    }

    /// Judges a step from its merged `counts` over its first `elapsed`.
    pub fn judge(&self, counts: &Counts, elapsed: Duration) -> Judgement {
        if self.errors.is_empty() || counts.completed > 0 {
            return Judgement::Pass;
        }
        let finished = counts.failed;
        let due = finished >= self.first_requests || (elapsed >= self.within && finished > 0);
        if !due {
            return Judgement::Wait;
        }
        // One class and status for every failure, and a class the rule names.
        let samples = Tally::from(counts).error_samples;
        match samples.as_slice() {
            [only] if only.count == finished && self.errors.contains(&only.class) => {
                Judgement::Abort {
                    judged: finished,
                    sample: only.clone(),
                }
            }
            _ => Judgement::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::proto;
    use stampede_common::units::HumanDuration;

    fn rule() -> AbortRule {
        AbortRule::of(&AbortOnPlan::default())
    }

    /// Counts of `completed` successes and failures by (class, status, count).
    fn counts(completed: u64, failures: &[(&str, u32, u64)]) -> Counts {
        let mut c = Counts {
            completed,
            ..Default::default()
        };
        for &(class, status, n) in failures {
            c.failed += n;
            let key = stampede_common::error_sample::sample_key(
                class,
                u16::try_from(status).ok().filter(|s| *s > 0),
            );
            c.error_samples.insert(
                key,
                proto::ErrorSample {
                    class: class.into(),
                    http_status: status,
                    count: n,
                    first_sent_offset_us: 0,
                    message: format!("{class} {status}"),
                },
            );
        }
        c
    }

    fn abort(judged: u64, class: &str, status: Option<u16>) -> Judgement {
        Judgement::Abort {
            judged,
            sample: ErrorSample {
                class: class.into(),
                http_status: status,
                count: judged,
                message: format!("{class} {}", status.unwrap_or(0)),
            },
        }
    }

    #[test]
    fn the_default_stops_on_ten_alike_4xx_or_on_what_failed_in_two_seconds() {
        let s = Duration::from_secs;
        let table = [
            // Ten 401s: stop at once, whenever they came.
            (
                counts(0, &[("http_4xx", 401, 10)]),
                s(1),
                abort(10, "http_4xx", Some(401)),
            ),
            (
                counts(0, &[("http_4xx", 401, 25)]),
                s(1),
                abort(25, "http_4xx", Some(401)),
            ),
            // Fewer: wait, until 2 s have passed.
            (counts(0, &[("http_4xx", 401, 9)]), s(1), Judgement::Wait),
            (
                counts(0, &[("http_4xx", 401, 3)]),
                s(2),
                abort(3, "http_4xx", Some(401)),
            ),
            (counts(0, &[]), s(5), Judgement::Wait),
            // One success, two statuses, or a class the rule does not name: run on.
            (counts(1, &[("http_4xx", 401, 30)]), s(1), Judgement::Pass),
            (
                counts(0, &[("http_4xx", 401, 6), ("http_4xx", 404, 6)]),
                s(1),
                Judgement::Pass,
            ),
            (counts(0, &[("http_5xx", 503, 10)]), s(1), Judgement::Pass),
            (counts(0, &[("http_429", 429, 10)]), s(1), Judgement::Pass),
            (counts(0, &[("connect", 0, 10)]), s(1), Judgement::Pass),
        ];
        for (c, elapsed, want) in table {
            assert_eq!(rule().judge(&c, elapsed), want, "{c:?} at {elapsed:?}");
        }
    }

    #[test]
    fn the_plan_chooses_the_classes_and_the_window() {
        let plan = AbortOnPlan {
            errors: vec!["connect".into()],
            first_requests: 2,
            within: HumanDuration(Duration::from_millis(500)),
        };
        let r = AbortRule::of(&plan);
        let refused = counts(0, &[("connect", 0, 2)]);
        assert_eq!(r.judge(&refused, Duration::ZERO), abort(2, "connect", None));
        let one = counts(0, &[("connect", 0, 1)]);
        assert_eq!(r.judge(&one, Duration::from_millis(400)), Judgement::Wait);
        assert_eq!(
            r.judge(&one, Duration::from_millis(500)),
            abort(1, "connect", None)
        );
        let denied = counts(0, &[("http_4xx", 401, 10)]);
        assert_eq!(r.judge(&denied, Duration::ZERO), Judgement::Pass);
        let off = AbortRule::of(&AbortOnPlan {
            errors: Vec::new(),
            ..AbortOnPlan::default()
        });
        assert_eq!(off.judge(&denied, Duration::ZERO), Judgement::Pass);
    }
}
