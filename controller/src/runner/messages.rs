//! What goes into the run's coordinator ([`Input`]) and what comes out of it ([`Action`]): the
//! whole contract between the pure decisions and the async shell that carries them out.

use stampede_common::plan::StepPlan;
use stampede_common::proto::{RateReply, run_event};
use tokio::time::Instant;

use crate::aggregate::{MergedInterval, StepAggregate};
use crate::live::command::RateCommand;
use crate::results::rows::RequestRow;
use crate::runner::notice::Notice;
use crate::runner::roster::AgentCard;
use crate::summary::StageSummary;

/// Something that happened, for the coordinator to decide on.
#[derive(Debug)]
pub enum Input {
    /// Agent `agent` sent an event of step `step` (an interval report, records, its summary).
    Report {
        step: usize,
        agent: usize,
        event: Box<run_event::Event>,
    },
    /// Agent `agent`'s stream of step `step` ended; `error` says why when it broke.
    Ended {
        step: usize,
        agent: usize,
        error: Option<String>,
    },
    /// Time to look for silent agents: when each was last heard from, by index.
    Tick { heard: Vec<Option<Instant>> },
    /// The instant [`Coordinator::next_launch`](super::coordinator::Coordinator::next_launch)
    /// named has come.
    LaunchDue,
    /// A rate command from standard input, the dashboard or `controller set-qps`.
    Control(RateCommand),
    /// The agents answered [`Action::SetRate`]: `Err` names the first that refused.
    RateSet {
        step: usize,
        scale: f64,
        result: Result<(), String>,
    },
    /// Lost agent `index` answered again, handshaken and loaded.
    Rejoined { index: usize, card: AgentCard },
    /// The agents answered [`Action::Stop`] (or were given up on after 2 s).
    Stopped,
    /// The first Ctrl-C: stop sending, let requests in flight finish within the grace period.
    Interrupt,
    /// The second Ctrl-C: finish the files now.
    Abort,
    /// The instant [`Coordinator::stop_deadline`](super::coordinator::Coordinator::stop_deadline)
    /// named has come: streams still open are abandoned.
    Abandon,
}

/// A step to send to the agents: the small struct `launch` takes.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchOrder {
    /// The step's number in the run.
    pub step_no: usize,
    pub step: StepPlan,
    /// When it starts, microseconds since the epoch on the controller's clock.
    pub start_unix_us: i64,
    /// Which load agents take a share (the others are lost).
    pub active: Vec<bool>,
    /// Each load agent's weight in the split (0: not in the step).
    pub weights: Vec<f64>,
    /// The monitor-only agents that sample the step's window.
    pub monitors: Vec<usize>,
}

/// Something for the live view and the results writer.
#[derive(Debug)]
pub enum Event {
    /// A line to say.
    Notice(Notice),
    /// Step `no` was sent to the agents; it starts `start_s` after the run's first step.
    StepStarted {
        no: usize,
        step: StepPlan,
        start_s: f64,
    },
    /// An interval every agent of the step has reported, merged.
    Interval {
        merged: Box<MergedInterval>,
        step: String,
        /// The offered rate, rate changes included.
        offered: Option<f64>,
        /// When the step started, seconds after the run's first step.
        step_start_s: f64,
    },
    /// Request records for requests.csv.
    Requests(Vec<RequestRow>),
    /// Agent `agent`'s share of step `step` failed.
    AgentFailed {
        step: usize,
        agent: usize,
        why: String,
    },
    /// A step is done and summarised.
    StepFinished {
        summary: Box<StageSummary>,
        aggregate: Box<StepAggregate>,
    },
    /// The run's record (steps, agent events, rate changes) changed: summary.json is due.
    Summary,
}

/// Something for the shell to do.
#[derive(Debug)]
pub enum Action {
    /// Send a step to the load agents by weight, and its window to the monitors.
    Launch(LaunchOrder),
    /// Tell these agents to stop the run (all at once, each given 2 s); answer with
    /// [`Input::Stopped`].
    Stop { agents: Vec<usize> },
    /// Agent `agent` is out: tell it to stop (best effort), and dial it again when `redial`.
    Lose { agent: usize, redial: bool },
    /// Drop what came back for agent `agent` and dial it again.
    Redial { agent: usize },
    /// Put the connection that came back for agent `agent` in its place.
    Admit { agent: usize },
    /// Set the rate of the step sending now on these agents; answer with [`Input::RateSet`].
    SetRate {
        step: usize,
        scale: f64,
        agents: Vec<usize>,
    },
    /// Answer the pending rate command.
    Reply(Result<RateReply, String>),
    /// Hand an event to the live view and the results writer.
    Emit(Event),
    /// The steps given to [`Coordinator::begin`](super::coordinator::Coordinator::begin) are all
    /// done (or the run stopped): the shell returns.
    Finish,
}
