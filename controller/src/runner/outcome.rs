//! How a run ends: the typed [`StopReason`]s that end it early, the status summary.json
//! records, the pure [`run_passes`] (a search's failing probes are evidence, its own verdict
//! decides) and the pure [`exit_code`] that maps the outcome to DESIGN.md's exit codes.

use stampede_common::plan::StepKind;
use stampede_common::probe::ProbeResult;

/// Exit codes, as DESIGN.md defines them.
pub mod exit {
    pub const PASS: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const SLO_FAILED: u8 = 2;
    pub const INVALID_EVIDENCE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// Why a run stopped before its plan was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The first Ctrl-C (or a results file that could not be written): stop sending, let
    /// requests in flight finish within the grace period, then finish the files.
    Interrupted,
    /// The second Ctrl-C: every share is abandoned and the files finished now.
    Aborted,
    /// A step failed a threshold and the plan sets `abort_on_slo_fail`.
    SloAbort { step: String },
    /// An agent was lost and the plan sets `on_agent_lost = "abort"`.
    AgentLost { agent: String },
    /// Every load agent is lost: none is left to run the next step.
    AgentsLost { step: String },
    /// A step's first `count` requests all failed with one error class and status (`class`,
    /// as `http_4xx 401`), which the plan's `abort_on` names; `message` is the server's.
    FailedAlike {
        step: String,
        class: String,
        count: u64,
        message: String,
    },
}

impl StopReason {
    /// Which reason decides the run's status when several happened: a signal over an agent
    /// abort over an `abort_on` stop over a threshold abort (the order the first version's
    /// flags were read in; a step that failed alike has no threshold worth judging).
    fn rank(&self) -> u8 {
        match self {
            StopReason::SloAbort { .. } => 1,
            StopReason::FailedAlike { .. } => 2,
            StopReason::AgentLost { .. } | StopReason::AgentsLost { .. } => 3,
            StopReason::Interrupted => 4,
            StopReason::Aborted => 5,
        }
    }

    fn is_signal(&self) -> bool {
        matches!(self, StopReason::Interrupted | StopReason::Aborted)
    }

    fn is_agent(&self) -> bool {
        matches!(
            self,
            StopReason::AgentLost { .. } | StopReason::AgentsLost { .. }
        )
    }
}

/// Every reason a run stopped for, in the order they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReasons(Vec<StopReason>);

impl StopReasons {
    /// Adds a reason.
    pub fn add(&mut self, reason: StopReason) {
        self.0.push(reason);
    }

    /// True once any reason has stopped the run.
    pub fn stopped(&self) -> bool {
        !self.0.is_empty()
    }

    /// True after a signal (either Ctrl-C).
    pub fn interrupted(&self) -> bool {
        self.0.iter().any(StopReason::is_signal)
    }

    /// True after the second Ctrl-C.
    pub fn aborted(&self) -> bool {
        self.0.contains(&StopReason::Aborted)
    }

    /// True after an agent loss stopped the run.
    pub fn agent_aborted(&self) -> bool {
        self.0.iter().any(StopReason::is_agent)
    }

    /// True after a step's first requests, all failing alike, stopped the run (`abort_on`).
    pub fn errors_aborted(&self) -> bool {
        self.0
            .iter()
            .any(|r| matches!(r, StopReason::FailedAlike { .. }))
    }

    /// True after a failed threshold stopped the run.
    pub fn slo_aborted(&self) -> bool {
        self.0
            .iter()
            .any(|r| matches!(r, StopReason::SloAbort { .. }))
    }

    /// The reason that decides the status and the exit code; None: the plan ran to its end.
    pub fn decisive(&self) -> Option<&StopReason> {
        self.0.iter().max_by_key(|r| r.rank())
    }

    /// summary.json's `status`.
    pub fn status(&self) -> crate::results::kinds::RunStatus {
        match self.decisive() {
            None => crate::results::kinds::RunStatus::Completed,
            Some(r) if r.is_signal() => crate::results::kinds::RunStatus::Interrupted,
            Some(_) => crate::results::kinds::RunStatus::Aborted,
        }
    }
}

/// What the results say about the run, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Requests sent and completed over the measured steps.
    pub sent: u64,
    pub completed: u64,
    /// The client, not the target, was the bottleneck in some measured step.
    pub client_bound: bool,
    /// The request counts do not add up.
    pub unaccounted: bool,
    /// Every measured step passed its thresholds.
    pub slo_pass: bool,
}

/// True when a step is a probe of a capacity search or a limit test: its verdict is evidence
/// for its stage's answer, not a threshold the run must pass.
pub fn is_probe(kind: StepKind) -> bool {
    matches!(
        kind,
        StepKind::Search
            | StepKind::LimitInput
            | StepKind::LimitConcurrency
            | StepKind::LimitRecovery
    )
}

/// True when an adaptive stage found its answer: a capacity search or a longest-input test
/// with a level that passed, a resource-exhaustion test that also saw the target recover.
pub fn probe_answered(p: &ProbeResult) -> bool {
    p.max_passing.is_some() && p.recovered != Some(false)
}

/// Whether the run passed what it set out to prove: every step that is not a probe passed its
/// thresholds, and every capacity search and limit test found its answer (its failing probes
/// are how it found it). `steps`: each measured step's kind and threshold verdict.
pub fn run_passes(steps: &[(StepKind, bool)], probes: &[ProbeResult]) -> bool {
    steps.iter().all(|&(kind, pass)| pass || is_probe(kind)) && probes.iter().all(probe_answered)
}

/// The run's exit code: a signal, then an agent abort or an `abort_on` stop (the target
/// refused the requests: the plan or its key is wrong), then evidence that is not valid, then a
/// failed threshold.
pub fn exit_code(stop: Option<&StopReason>, v: &Verdict) -> u8 {
    match stop {
        Some(r) if r.is_signal() => exit::INTERRUPTED,
        Some(r) if r.is_agent() => exit::ERROR,
        Some(StopReason::FailedAlike { .. }) => exit::ERROR,
        _ if v.sent == 0 || v.completed == 0 || v.client_bound || v.unaccounted => {
            exit::INVALID_EVIDENCE
        }
        _ if !v.slo_pass => exit::SLO_FAILED,
        _ => exit::PASS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: Verdict = Verdict {
        sent: 10,
        completed: 10,
        client_bound: false,
        unaccounted: false,
        slo_pass: true,
    };

    #[test]
    fn each_stop_reason_has_its_exit_code_and_status() {
        let slo = StopReason::SloAbort { step: "s".into() };
        let lost = StopReason::AgentLost { agent: "a".into() };
        let none = StopReason::AgentsLost { step: "s".into() };
        let alike = StopReason::FailedAlike {
            step: "s".into(),
            class: "http_4xx 401".into(),
            count: 10,
            message: "Invalid API key".into(),
        };
        let table: [(Option<StopReason>, u8, &str); 7] = [
            (None, exit::PASS, "completed"),
            (
                Some(StopReason::Interrupted),
                exit::INTERRUPTED,
                "interrupted",
            ),
            (Some(StopReason::Aborted), exit::INTERRUPTED, "interrupted"),
            (Some(slo.clone()), exit::PASS, "aborted"),
            (Some(lost), exit::ERROR, "aborted"),
            (Some(none), exit::ERROR, "aborted"),
            (Some(alike.clone()), exit::ERROR, "aborted"),
        ];
        for (reason, code, status) in table {
            let mut reasons = StopReasons::default();
            if let Some(r) = reason.clone() {
                reasons.add(r);
            }
            assert_eq!(exit_code(reasons.decisive(), &GOOD), code, "{reason:?}");
            assert_eq!(reasons.status().name(), status, "{reason:?}");
        }
        // A threshold abort exits by its evidence: the failed step fails the run.
        let failed = Verdict {
            slo_pass: false,
            ..GOOD
        };
        assert_eq!(exit_code(Some(&slo), &failed), exit::SLO_FAILED);
    }

    #[test]
    fn the_evidence_decides_when_nothing_stopped_the_run() {
        let cases = [
            (Verdict { sent: 0, ..GOOD }, exit::INVALID_EVIDENCE),
            (
                Verdict {
                    completed: 0,
                    ..GOOD
                },
                exit::INVALID_EVIDENCE,
            ),
            (
                Verdict {
                    client_bound: true,
                    ..GOOD
                },
                exit::INVALID_EVIDENCE,
            ),
            (
                Verdict {
                    unaccounted: true,
                    slo_pass: false,
                    ..GOOD
                },
                exit::INVALID_EVIDENCE,
            ),
            (
                Verdict {
                    slo_pass: false,
                    ..GOOD
                },
                exit::SLO_FAILED,
            ),
            (GOOD, exit::PASS),
        ];
        for (v, code) in cases {
            assert_eq!(exit_code(None, &v), code, "{v:?}");
        }
        // Invalid evidence does not hide an interrupt or an agent abort.
        let empty = Verdict { sent: 0, ..GOOD };
        assert_eq!(
            exit_code(Some(&StopReason::Interrupted), &empty),
            exit::INTERRUPTED
        );
        let lost = StopReason::AgentLost { agent: "a".into() };
        assert_eq!(exit_code(Some(&lost), &empty), exit::ERROR);
        // Nor a stop on requests that all failed alike: every one failed, and the run says
        // why with 1, not 3.
        let alike = StopReason::FailedAlike {
            step: "s".into(),
            class: "http_4xx 401".into(),
            count: 10,
            message: "Invalid API key".into(),
        };
        let failed = Verdict {
            completed: 0,
            slo_pass: false,
            ..GOOD
        };
        assert_eq!(exit_code(Some(&alike), &failed), exit::ERROR);
    }

    fn probe(kind: &str, max_passing: Option<f64>, recovered: Option<bool>) -> ProbeResult {
        ProbeResult {
            stage: "capacity".into(),
            kind: kind.into(),
            unit: "qps".into(),
            max_passing,
            first_failing: Some(40.0),
            failure_mode: Some("e2e_p99".into()),
            recovered,
            curve: Vec::new(),
        }
    }

    #[test]
    fn a_search_that_found_its_answer_passes_despite_its_failing_probes() {
        let found = probe("capacity_search", Some(32.0), None);
        let probes = [
            (StepKind::Warmup, true),
            (StepKind::Search, true),
            (StepKind::Search, false),
            (StepKind::Search, false),
        ];
        assert!(run_passes(&probes, std::slice::from_ref(&found)));
        let v = Verdict {
            slo_pass: run_passes(&probes, std::slice::from_ref(&found)),
            ..GOOD
        };
        assert_eq!(exit_code(None, &v), exit::PASS);
        // No rate met the SLO: the search's own verdict fails the run.
        let none = probe("capacity_search", None, None);
        assert!(!run_passes(&probes, &[none]));
        // A limit test fails when the target did not recover; passes when it did.
        let limit = [
            (StepKind::LimitConcurrency, false),
            (StepKind::LimitRecovery, true),
        ];
        let stuck = probe("resource_exhaustion", Some(64.0), Some(false));
        assert!(!run_passes(&limit, &[stuck]));
        let back = probe("resource_exhaustion", Some(64.0), Some(true));
        assert!(run_passes(&limit, &[back]));
        // A fixed step that fails its thresholds still fails the run beside a good search.
        let mixed = [(StepKind::Step, false), (StepKind::Search, false)];
        assert!(!run_passes(&mixed, &[found]));
    }

    #[test]
    fn a_signal_outranks_an_agent_abort_which_outranks_a_threshold_abort() {
        let mut r = StopReasons::default();
        r.add(StopReason::SloAbort { step: "s".into() });
        r.add(StopReason::AgentLost { agent: "a".into() });
        assert_eq!(r.status().name(), "aborted");
        assert!(matches!(r.decisive(), Some(StopReason::AgentLost { .. })));
        r.add(StopReason::Interrupted);
        assert_eq!(r.status().name(), "interrupted");
        assert!(r.slo_aborted() && r.agent_aborted() && r.interrupted() && !r.aborted());
    }
}
