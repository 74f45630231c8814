//! alerts.jsonl: an alert raised or resolved while a run went, one JSON object a line. The
//! rules that raise them are the live view's; the record is part of the results folder.

use serde::{Deserialize, Serialize};

pub use crate::kinds::Severity;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A threshold of the step failed over the last 10 s of merged intervals.
    SloBreach,
    /// Failures passed 10% of the requests that ended in an interval (and 3).
    ErrorSpike,
    /// Requests timed out.
    Timeouts,
    /// The client could not keep up: schedule lag p99 or an agent's CPU above the guard's limit.
    ClientSaturation,
    /// An agent's share failed: the agent went away or refused the step.
    AgentLost,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::SloBreach,
        AlertKind::ErrorSpike,
        AlertKind::Timeouts,
        AlertKind::ClientSaturation,
        AlertKind::AgentLost,
    ];

    /// The name written to alerts.jsonl and summary.json.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::SloBreach => "slo_breach",
            AlertKind::ErrorSpike => "error_spike",
            AlertKind::Timeouts => "timeouts",
            AlertKind::ClientSaturation => "client_saturation",
            AlertKind::AgentLost => "agent_lost",
        }
    }

    /// The kind of a name written by [`AlertKind::name`].
    pub fn parse(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How bad it is: results of a saturated client or a lost agent are not evidence, and a
    /// spike of errors is an outage; a rolling breach or timeouts may pass.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::SloBreach | AlertKind::Timeouts => Severity::Warning,
            AlertKind::ErrorSpike | AlertKind::ClientSaturation | AlertKind::AgentLost => {
                Severity::Critical
            }
        }
    }
}

/// Whether an alert starts or ends a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a line of alerts.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Seconds since the run's first step started, as in timeseries.csv.
    pub elapsed_s: f64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub state: AlertState,
    pub step: String,
    /// What tells alerts of one kind apart: the threshold's name, the agent's id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    pub message: String,
    /// The measured value and the limit it was held to, in the unit the message uses.
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub limit: Option<f64>,
}

impl Alert {
    /// A firing alert with no subject, value or limit.
    pub fn new(kind: AlertKind, step: &str, elapsed_s: f64, message: String) -> Self {
        Alert {
            elapsed_s,
            kind,
            severity: kind.severity(),
            state: AlertState::Firing,
            step: step.to_string(),
            subject: String::new(),
            message,
            value: None,
            limit: None,
        }
    }

    /// What identifies the condition: its kind, step and subject.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.kind.name(), self.step, self.subject)
    }

    /// The alert about `subject`, with the value measured and the limit it was held to.
    pub fn with(mut self, subject: &str, value: Option<f64>, limit: Option<f64>) -> Self {
        self.subject = subject.to_string();
        self.value = value;
        self.limit = limit;
        self
    }

    /// The alert as one line of text: `ALERT critical error_spike s: 12 of 40 failed`.
    pub fn line(&self) -> String {
        let head = match self.state {
            AlertState::Firing => "ALERT",
            AlertState::Resolved => "resolved",
        };
        let step = if self.step.is_empty() {
            String::new()
        } else {
            format!(" {}", self.step)
        };
        format!(
            "[{:>7.1}s] {head} {} {}{step}: {}",
            self.elapsed_s,
            self.severity.name(),
            self.kind.name(),
            self.message
        )
    }
}
