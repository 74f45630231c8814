//! What a run has to say to whoever watches it, as data: the runner prints nothing itself;
//! the live view's console ([`crate::feed::Console`]) turns each notice into its line.

use std::path::PathBuf;
use std::time::Duration;

use stampede_common::error_sample::ErrorSample;
use stampede_common::probe::ProbeResult;
use stampede_common::units::HumanDuration;

use crate::runner::roster::AgentCard;
use crate::summary::{Finding, StageSummary};

/// One thing the run says, in the order it happens.
#[derive(Debug, Clone)]
pub enum Notice {
    /// The target answered the pre-flight check.
    Target {
        base_url: String,
        model: String,
        simulator: bool,
    },
    /// An agent is connected and loaded.
    Agent(AgentCard),
    /// A line of the monitoring set-up (GPUs, scraped endpoints, the watched process).
    Monitoring(String),
    /// The control service listens here.
    Control(std::net::SocketAddr),
    /// The first Ctrl-C: agents are told to stop; requests in flight get `grace`.
    Interrupted { grace: Duration },
    /// No load agent is left to run `step`.
    EveryAgentLost { step: String },
    /// An agent was lost and the plan aborts on that.
    AgentLostAbort { agent: String, why: String },
    /// A step failed a threshold and the plan aborts on that.
    SloAbort { step: String },
    /// A step's first `judged` requests all failed as `sample` says, and `abort_on` names
    /// its class: the run stops.
    FailedAlike {
        step: String,
        judged: u64,
        sample: ErrorSample,
    },
    /// A step ended with failures: each class and status, its count and first message.
    StepErrors {
        step: String,
        messages: Vec<ErrorSample>,
    },
    /// A rate command was applied to the step sending now.
    RateChanged { step: String, scale: f64, qps: f64 },
    /// A lost agent is back, from the next step.
    Rejoined(AgentCard),
    /// What the resource sampling noticed in an interval.
    Resource(String),
    /// The run waits `cooldown` after stage `stage`.
    Cooldown {
        cooldown: HumanDuration,
        stage: String,
    },
    /// What an adaptive stage found.
    Probe(ProbeResult),
    /// The steps table at the end of the run.
    FinalTable(Vec<StageSummary>),
    /// The run's findings.
    Findings(Vec<Finding>),
    /// Where the results and the report are (or why the report is missing).
    Written {
        results: PathBuf,
        report: Result<PathBuf, String>,
    },
    /// The request counts do not add up.
    Unaccounted,
}
