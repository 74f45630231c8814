//! Exit codes, as DESIGN.md defines them: what a run's verdict means to a script or CI.

/// Every SLO passed (a capacity search or limit test that found its answer passed).
pub const PASS: u8 = 0;
/// The plan or the command was wrong, or the run could not start.
pub const ERROR: u8 = 1;
/// An SLO threshold failed.
pub const SLO_FAILED: u8 = 2;
/// The run is not valid evidence: every request failed, or the client was the bottleneck.
pub const INVALID_EVIDENCE: u8 = 3;
/// Stopped by the user (SIGINT or SIGTERM) before the plan's end.
pub const INTERRUPTED: u8 = 130;
