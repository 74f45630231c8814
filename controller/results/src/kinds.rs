//! The closed vocabularies of the results: how bad a finding or an alert is, what a step's load
//! was, how a run, each step and each agent's share ended, what happened to an agent, and which
//! finding was drawn. Each is an enum whose JSON name is pinned here (and by the round-trip test
//! in [`crate::summary`]), so a reader never matches strings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How bad a finding or an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The name written to summary.json and alerts.jsonl.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Most severe first: the order findings are shown in.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Critical => 0,
            Severity::Warning => 1,
            Severity::Info => 2,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What drove a step's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMode {
    /// A rate (or a trace): arrivals do not wait for answers.
    Open,
    /// A concurrency: each user sends when its last answer is in.
    Closed,
    /// The overall line of a run with both.
    Mixed,
}

impl StepMode {
    /// The name written to summary.json and stages.csv.
    pub fn name(self) -> &'static str {
        match self {
            StepMode::Open => "open",
            StepMode::Closed => "closed",
            StepMode::Mixed => "mixed",
        }
    }
}

impl fmt::Display for StepMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How far a run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going: the summary.json a crash leaves behind says so.
    Running,
    Completed,
    /// Stopped early by the user (SIGINT, SIGTERM, `q`).
    Interrupted,
    /// Stopped by the plan: an SLO with `abort`, or an agent lost with
    /// `on_agent_lost = "abort"`.
    Aborted,
    /// It could not go on (the results could not be written, no agent left).
    Failed,
}

impl RunStatus {
    /// The name written to summary.json.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Aborted => "aborted",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a step ended: as planned, or how it did not run as planned. The step's duration and
/// rates are over the time it really ran (its window, less any pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepEnd {
    /// It ran its planned length at its planned load (summary.json files from before this
    /// field read as complete).
    #[default]
    Complete,
    /// A stop from the user (`q`, Ctrl-C, SIGTERM) cut it short.
    Interrupted,
    /// Its rate was paused for part of it (`paused_s` says how long).
    Paused,
    /// Its rate was changed while it ran (`+`, `-`, `qps N`, `controller set-qps`).
    RateChanged,
    /// The run was aborted while it ran: a second Ctrl-C, a failed threshold with
    /// `abort_on_slo_fail`, or an agent lost with `on_agent_lost = "abort"`.
    Aborted,
}

impl StepEnd {
    /// Every way a step ends, for tests and tables.
    pub const ALL: [StepEnd; 5] = [
        StepEnd::Complete,
        StepEnd::Interrupted,
        StepEnd::Paused,
        StepEnd::RateChanged,
        StepEnd::Aborted,
    ];

    /// The name written to summary.json.
    pub fn name(self) -> &'static str {
        match self {
            StepEnd::Complete => "complete",
            StepEnd::Interrupted => "interrupted",
            StepEnd::Paused => "paused",
            StepEnd::RateChanged => "rate_changed",
            StepEnd::Aborted => "aborted",
        }
    }

    /// True when the step ran its planned length at its planned load.
    pub fn as_planned(self) -> bool {
        self == StepEnd::Complete
    }

    /// How tables say it: `complete`, `interrupted`, `paused 3.0s`, `rate changed`, `aborted`.
    pub fn label(self, paused_s: f64) -> String {
        match self {
            StepEnd::Paused => format!("paused {paused_s:.1}s"),
            StepEnd::RateChanged => "rate changed".into(),
            e => e.name().into(),
        }
    }
}

impl fmt::Display for StepEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to an agent while the run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEventKind {
    /// Its stream broke, or it stopped reporting.
    Lost,
    /// It answered again and takes part from the next step on.
    Rejoined,
    /// The run stopped for it: `on_agent_lost = "abort"`, or no agent was left.
    Abort,
}

impl AgentEventKind {
    /// The name written to summary.json.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentEventKind::Lost => "lost",
            AgentEventKind::Rejoined => "rejoined",
            AgentEventKind::Abort => "abort",
        }
    }
}

/// How one agent's share of a step ended. On the wire it stays the string schema v1 wrote:
/// `done`, `running`, `absent: <why>`, or the reason the share failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareEnd {
    Done,
    /// The step was cut before the share reported its end.
    Running,
    Failed(String),
    /// Not in the step: lost in an earlier one and not back yet.
    Absent(String),
}

const ABSENT: &str = "absent: ";

impl ShareEnd {
    /// The string written to summary.json.
    pub fn text(&self) -> String {
        match self {
            ShareEnd::Done => "done".into(),
            ShareEnd::Running => "running".into(),
            ShareEnd::Failed(why) => why.clone(),
            ShareEnd::Absent(why) => format!("{ABSENT}{why}"),
        }
    }

    /// Reads [`ShareEnd::text`] back.
    pub fn parse(text: &str) -> ShareEnd {
        match text {
            "done" => ShareEnd::Done,
            "running" => ShareEnd::Running,
            t => match t.strip_prefix(ABSENT) {
                Some(why) => ShareEnd::Absent(why.to_string()),
                None => ShareEnd::Failed(t.to_string()),
            },
        }
    }
}

impl Serialize for ShareEnd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for ShareEnd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ShareEnd::parse(&String::deserialize(d)?))
    }
}

/// Which finding the analysis drew. The JSON names are those schema v1 has always written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingCode {
    #[serde(rename = "accounting")]
    Accounting,
    #[serde(rename = "agent_lost")]
    AgentLost,
    #[serde(rename = "all-failed")]
    AllFailed,
    #[serde(rename = "client-bound")]
    ClientBound,
    #[serde(rename = "coalesced-tokens")]
    CoalescedTokens,
    #[serde(rename = "decode-bound")]
    DecodeBound,
    #[serde(rename = "dropped")]
    Dropped,
    #[serde(rename = "error-burst")]
    ErrorBurst,
    #[serde(rename = "errors")]
    Errors,
    #[serde(rename = "fluctuation")]
    Fluctuation,
    #[serde(rename = "gpu-idle")]
    GpuIdle,
    #[serde(rename = "input-token-gap")]
    InputTokenGap,
    #[serde(rename = "knee")]
    Knee,
    #[serde(rename = "kv-cache-pressure")]
    KvCachePressure,
    #[serde(rename = "max-qps-within-slo")]
    MaxQpsWithinSlo,
    #[serde(rename = "no-knee")]
    NoKnee,
    #[serde(rename = "no-qps-within-slo")]
    NoQpsWithinSlo,
    #[serde(rename = "queueing-bound")]
    QueueingBound,
    #[serde(rename = "saturated-at-lowest-load")]
    SaturatedAtLowestLoad,
    #[serde(rename = "short-steps")]
    ShortSteps,
    #[serde(rename = "soak-drift")]
    SoakDrift,
    #[serde(rename = "stream-backlog")]
    StreamBacklog,
    #[serde(rename = "unplanned-steps")]
    UnplannedSteps,
}

impl FindingCode {
    /// Every code, for tests and documentation.
    pub const ALL: [FindingCode; 23] = [
        FindingCode::Accounting,
        FindingCode::AgentLost,
        FindingCode::AllFailed,
        FindingCode::ClientBound,
        FindingCode::CoalescedTokens,
        FindingCode::DecodeBound,
        FindingCode::Dropped,
        FindingCode::ErrorBurst,
        FindingCode::Errors,
        FindingCode::Fluctuation,
        FindingCode::GpuIdle,
        FindingCode::InputTokenGap,
        FindingCode::Knee,
        FindingCode::KvCachePressure,
        FindingCode::MaxQpsWithinSlo,
        FindingCode::NoKnee,
        FindingCode::NoQpsWithinSlo,
        FindingCode::QueueingBound,
        FindingCode::SaturatedAtLowestLoad,
        FindingCode::ShortSteps,
        FindingCode::SoakDrift,
        FindingCode::StreamBacklog,
        FindingCode::UnplannedSteps,
    ];

    /// The name written to summary.json and shown beside a finding.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::Accounting => "accounting",
            FindingCode::AgentLost => "agent_lost",
            FindingCode::AllFailed => "all-failed",
            FindingCode::ClientBound => "client-bound",
            FindingCode::CoalescedTokens => "coalesced-tokens",
            FindingCode::DecodeBound => "decode-bound",
            FindingCode::Dropped => "dropped",
            FindingCode::ErrorBurst => "error-burst",
            FindingCode::Errors => "errors",
            FindingCode::Fluctuation => "fluctuation",
            FindingCode::GpuIdle => "gpu-idle",
            FindingCode::InputTokenGap => "input-token-gap",
            FindingCode::Knee => "knee",
            FindingCode::KvCachePressure => "kv-cache-pressure",
            FindingCode::MaxQpsWithinSlo => "max-qps-within-slo",
            FindingCode::NoKnee => "no-knee",
            FindingCode::NoQpsWithinSlo => "no-qps-within-slo",
            FindingCode::QueueingBound => "queueing-bound",
            FindingCode::SaturatedAtLowestLoad => "saturated-at-lowest-load",
            FindingCode::ShortSteps => "short-steps",
            FindingCode::SoakDrift => "soak-drift",
            FindingCode::StreamBacklog => "stream-backlog",
            FindingCode::UnplannedSteps => "unplanned-steps",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_writes_the_name_it_shows() {
        for code in FindingCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<FindingCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn share_ends_keep_their_v1_strings_and_read_back() {
        let ends = [
            (ShareEnd::Done, "done"),
            (ShareEnd::Running, "running"),
            (ShareEnd::Failed("agent gone".into()), "agent gone"),
            (ShareEnd::Absent("lost in s1".into()), "absent: lost in s1"),
        ];
        for (end, text) in ends {
            let json = serde_json::to_string(&end).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ShareEnd>(&json).unwrap(), end);
        }
    }

    #[test]
    fn step_ends_have_pinned_names_and_old_files_read_as_complete() {
        let names = [
            "complete",
            "interrupted",
            "paused",
            "rate_changed",
            "aborted",
        ];
        for (end, name) in StepEnd::ALL.into_iter().zip(names) {
            assert_eq!(serde_json::to_string(&end).unwrap(), format!("\"{name}\""));
            assert_eq!(end.to_string(), name);
            assert_eq!(
                serde_json::from_str::<StepEnd>(&format!("\"{name}\"")).unwrap(),
                end
            );
        }
        assert_eq!(StepEnd::default(), StepEnd::Complete);
        assert_eq!(StepEnd::Paused.label(3.04), "paused 3.0s");
        assert!(StepEnd::Complete.as_planned() && !StepEnd::RateChanged.as_planned());
    }

    #[test]
    fn names_are_the_serde_names() {
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for m in [StepMode::Open, StepMode::Closed, StepMode::Mixed] {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        for r in [
            RunStatus::Running,
            RunStatus::Completed,
            RunStatus::Interrupted,
            RunStatus::Aborted,
            RunStatus::Failed,
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
