//! The thin async shell around the [`Coordinator`]: it waits on the agents' streams, the
//! timers the coordinator names (tokio's, so paused time drives it in tests), rate commands,
//! rejoined agents and the signals; hands each as an [`Input`] to the coordinator; and carries
//! out the [`Action`]s that come back. It decides nothing itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use stampede_common::plan::StepPlan;
use stampede_common::proto::RateReply;
use stampede_common::units::wall_clock_us;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::control::ControlRequest;
use crate::feed::Console;
use crate::feed::LiveFeed;
use crate::pool::AgentHandle;
use crate::results::hlog::IntervalHistograms;
use crate::results::rows::StageRow;
use crate::results::{ResultsWriter, WriterMsg};
use crate::runner::agent_io::{AgentIo, RejoinTarget, rejoin, set_rate_all, stop_all, stop_one};
use crate::runner::context::RunContext;
use crate::runner::coordinator::Coordinator;
use crate::runner::messages::{Action, Event, Input, LaunchOrder};
use crate::runner::notice::Notice;
use crate::runner::roster::AgentCard;
use crate::runner::share::stage_share;
use crate::runner::streams::{Heard, forward};
use crate::summary::{RunSummary, StageSummary};

/// How often silent agents are looked for.
pub const HEARTBEAT_CHECK: Duration = Duration::from_millis(500);

/// What the shell is given to carry decisions out with.
pub struct Effects<'a> {
    pub ctx: &'a RunContext<'a>,
    pub io: Arc<dyn AgentIo>,
    pub writer: &'a ResultsWriter,
    pub live: LiveFeed,
    /// Rate commands from standard input, the dashboard and the control service.
    pub control: Option<mpsc::Receiver<ControlRequest>>,
    pub interrupt: CancellationToken,
    pub abort: CancellationToken,
}

/// The coordinator and the connections its decisions are carried out on.
pub struct Shell<'a> {
    pub coord: Coordinator,
    pub fx: Effects<'a>,
    /// Load agents first, then monitor-only agents; a rejoined agent takes its old place.
    pub agents: Vec<AgentHandle>,
    /// summary.json as the run goes.
    pub summary: RunSummary,
    /// Connections back from lost agents, until the coordinator admits or refuses them.
    incoming: BTreeMap<usize, AgentHandle>,
    heard: Arc<Heard>,
    rejoin_tx: mpsc::UnboundedSender<AgentHandle>,
    rejoin_rx: mpsc::UnboundedReceiver<AgentHandle>,
    /// Ends every dialling of lost agents when the run ends.
    rejoin_stop: CancellationToken,
    /// Where the answer to the rate command being applied goes.
    reply: Option<oneshot::Sender<Result<RateReply, String>>>,
}

impl<'a> Shell<'a> {
    /// A shell for `coord`'s run on `agents`.
    pub fn new(
        coord: Coordinator,
        fx: Effects<'a>,
        agents: Vec<AgentHandle>,
        summary: RunSummary,
    ) -> Self {
        let (rejoin_tx, rejoin_rx) = mpsc::unbounded_channel();
        Shell {
            heard: Arc::new(Heard::new(agents.len())),
            coord,
            fx,
            agents,
            summary,
            incoming: BTreeMap::new(),
            rejoin_tx,
            rejoin_rx,
            rejoin_stop: CancellationToken::new(),
            reply: None,
        }
    }

    /// True once the run stopped early (a signal, an abort the plan asks for).
    pub fn stopped(&self) -> bool {
        self.coord.stopped() || self.fx.abort.is_cancelled()
    }

    /// Runs `steps` back to back from now until every one is done; returns their summaries in
    /// order (fewer when stopped early).
    ///
    /// # Errors
    /// When the console cannot be written.
    pub async fn drive(
        &mut self,
        steps: Vec<StepPlan>,
        console: &mut Console<'_>,
    ) -> anyhow::Result<Vec<StageSummary>> {
        let (tx, mut rx) = mpsc::channel::<Input>(4096);
        let first = self.coord.begin(steps, Instant::now(), wall_clock_us());
        let mut finished = self.apply(first, &tx, console).await?;
        let mut heartbeat = tokio::time::interval(HEARTBEAT_CHECK);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !finished {
            for input in self.next_inputs(&mut rx, &mut heartbeat).await {
                let actions = self.coord.on(input, Instant::now());
                finished |= self.apply(actions, &tx, console).await?;
            }
        }
        Ok(self.coord.batch_summaries())
    }

    /// Waits for what happens next.
    async fn next_inputs(
        &mut self,
        rx: &mut mpsc::Receiver<Input>,
        heartbeat: &mut tokio::time::Interval,
    ) -> Vec<Input> {
        let stop = self.coord.stop_reasons();
        let (aborted, interrupted) = (stop.aborted(), stop.interrupted());
        let launch_at = self.coord.next_launch();
        let abandon_at = self.coord.stop_deadline();
        tokio::select! {
            biased;
            () = self.fx.abort.cancelled(), if !aborted => vec![Input::Abort],
            () = self.fx.interrupt.cancelled(), if !interrupted => vec![Input::Interrupt],
            () = sleep_until_some(abandon_at), if abandon_at.is_some() => vec![Input::Abandon],
            () = sleep_until_some(launch_at), if launch_at.is_some() => {
                // An agent back since the last look takes part in this step already.
                let mut inputs = Vec::new();
                while let Ok(handle) = self.rejoin_rx.try_recv() {
                    inputs.push(self.rejoined(handle));
                }
                inputs.push(Input::LaunchDue);
                inputs
            }
            Some((cmd, reply)) = next_control(&mut self.fx.control) => {
                self.reply = Some(reply);
                vec![Input::Control(cmd)]
            }
            Some(handle) = self.rejoin_rx.recv() => vec![self.rejoined(handle)],
            _ = heartbeat.tick() => {
                // Queued events mean the coordinator is behind, not that an agent is silent.
                if rx.is_empty() {
                    vec![Input::Tick { heard: self.heard.snapshot() }]
                } else {
                    Vec::new()
                }
            }
            Some(input) = rx.recv() => vec![input],
        }
    }

    /// Keeps a connection back from a lost agent until the coordinator decides on it.
    fn rejoined(&mut self, handle: AgentHandle) -> Input {
        let index = handle.index;
        let card = AgentCard::of(&handle);
        self.incoming.insert(index, handle);
        Input::Rejoined { index, card }
    }

    /// Carries out `actions` in order (and what their answers lead to); true once the
    /// coordinator said [`Action::Finish`].
    async fn apply(
        &mut self,
        actions: Vec<Action>,
        tx: &mpsc::Sender<Input>,
        console: &mut Console<'_>,
    ) -> anyhow::Result<bool> {
        let mut queue: VecDeque<Action> = actions.into();
        let mut finished = false;
        let run_id = self.fx.ctx.run_id.clone();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Launch(order) => self.launch(&order, tx),
                Action::Stop { agents } => {
                    let these = agents.iter().filter_map(|&i| self.agents.get(i));
                    stop_all(&*self.fx.io, these, &run_id).await;
                    queue.extend(self.coord.on(Input::Stopped, Instant::now()));
                }
                Action::Lose { agent, redial } => {
                    stop_one(&*self.fx.io, &self.agents[agent], &run_id);
                    if redial {
                        self.spawn_rejoin(agent);
                    }
                }
                Action::Redial { agent } => {
                    self.incoming.remove(&agent);
                    self.spawn_rejoin(agent);
                }
                Action::Admit { agent } => self.admit(agent),
                Action::SetRate {
                    step,
                    scale,
                    agents,
                } => {
                    let these = agents.iter().filter_map(|&i| self.agents.get(i));
                    let result = set_rate_all(&*self.fx.io, these, &run_id, scale).await;
                    let input = Input::RateSet {
                        step,
                        scale,
                        result,
                    };
                    queue.extend(self.coord.on(input, Instant::now()));
                }
                Action::Reply(answer) => {
                    if let Some(reply) = self.reply.take() {
                        let _ = reply.send(answer);
                    }
                }
                Action::Emit(event) => self.emit(event, console)?,
                Action::Finish => finished = true,
            }
        }
        Ok(finished)
    }

    /// Sends a step to every active load agent (split by weight) and its window to the
    /// monitor-only agents, and forwards what they stream.
    fn launch(&self, order: &LaunchOrder, tx: &mpsc::Sender<Input>) {
        let ctx = self.fx.ctx;
        let n_load = self.coord.roster().load_agents();
        let io = &*self.fx.io;
        for (i, agent) in self.agents[..n_load].iter().enumerate() {
            if !order.active[i] {
                continue;
            }
            if let Some(share) = stage_share(ctx, order, i, agent, n_load) {
                forward(io, agent, share, (order.step_no, i), tx, &self.heard);
            }
        }
        for &i in &order.monitors {
            let m = &self.agents[i];
            let start = order.start_unix_us.saturating_add(m.clock.offset_us);
            let share =
                ctx.monitoring
                    .monitor_share(&ctx.run_id, order.step_no, &order.step, start, i, m);
            forward(io, m, share, (order.step_no, i), tx, &self.heard);
        }
    }

    /// Puts a rejoined agent's connection in its old place (its child process and role kept).
    fn admit(&mut self, i: usize) {
        if let Some(handle) = self.incoming.remove(&i) {
            let old = std::mem::replace(&mut self.agents[i], handle);
            self.agents[i].child = old.child;
            self.agents[i].monitor_only = old.monitor_only;
        }
    }

    /// Dials agent `i` again in the background until it answers.
    fn spawn_rejoin(&self, i: usize) {
        let agent = &self.agents[i];
        let roster = self.coord.roster();
        let taken = roster
            .reachable_indices()
            .into_iter()
            .filter(|&j| j != i)
            .map(|j| self.agents[j].addr.clone())
            .collect();
        let target = RejoinTarget {
            index: i,
            addr: agent.addr.clone(),
            origin: agent.origin.clone(),
            taken,
            weight: agent.weight,
            monitor_only: agent.monitor_only,
            target_url: self.fx.ctx.base_url.clone(),
        };
        let io = Arc::clone(&self.fx.io);
        let (back, stop) = (self.rejoin_tx.clone(), self.rejoin_stop.clone());
        tokio::spawn(rejoin(io, target, back, stop));
    }

    /// Hands an event to the live view, the results writer and the console.
    fn emit(&mut self, event: Event, console: &mut Console<'_>) -> anyhow::Result<()> {
        let fx = &mut self.fx;
        match event {
            Event::Notice(n) => console.notice(&n)?,
            Event::StepStarted { no, step, start_s } => fx.live.step_started(no, &step, start_s),
            Event::Interval {
                merged,
                step,
                offered,
                step_start_s,
            } => {
                for note in &merged.resources.notes {
                    console.notice(&Notice::Resource(note.clone()))?;
                }
                if !merged.resources.rows.is_empty() {
                    fx.writer
                        .send(WriterMsg::Resources(merged.resources.rows.clone()));
                }
                let row = crate::rows::timeseries_row(&merged, &step, offered, step_start_s);
                let lines = fx.live.interval(&merged, &row, fx.writer);
                console.lines(&lines)?;
                console.flush()?;
                fx.writer.send(WriterMsg::Interval(row));
                fx.writer
                    .send(WriterMsg::Histograms(Box::new(IntervalHistograms {
                        step,
                        start_s: step_start_s + merged.start_offset.as_secs_f64(),
                        length_s: merged.length().as_secs_f64(),
                        bundle: merged.bundle,
                    })));
            }
            Event::Requests(rows) => fx.writer.send(WriterMsg::Requests(rows)),
            Event::AgentFailed { step, agent, why } => {
                let lines = fx.live.agent_failed(step, agent, &why, fx.writer);
                console.lines(&lines)?;
            }
            Event::StepFinished { summary, aggregate } => {
                fx.writer
                    .send(WriterMsg::Stage(Box::new(StageRow::from(&*summary))));
                // A mixed workload's classes follow their step, named `step · class`.
                for c in &summary.classes {
                    let mut row = StageRow::from(c);
                    row.name = format!("{} · {}", summary.name, c.name);
                    fx.writer.send(WriterMsg::Stage(Box::new(row)));
                }
                self.coord.record().write_into(&mut self.summary);
                fx.writer
                    .send(WriterMsg::Summary(Box::new(self.summary.clone())));
                fx.live.step_finished(&summary, &aggregate, fx.writer);
            }
            Event::Summary => {
                self.coord.record().write_into(&mut self.summary);
                fx.writer
                    .send(WriterMsg::Summary(Box::new(self.summary.clone())));
            }
        }
        Ok(())
    }
}

/// What is left of a shell once its run's steps are done.
pub struct Finished {
    pub coord: Coordinator,
    pub live: LiveFeed,
    pub agents: Vec<AgentHandle>,
    pub summary: RunSummary,
}

impl Shell<'_> {
    /// Stops dialling lost agents and gives back what the run's end needs.
    pub fn finish(self) -> Finished {
        self.rejoin_stop.cancel();
        Finished {
            coord: self.coord,
            live: self.fx.live,
            agents: self.agents,
            summary: self.summary,
        }
    }
}

/// Sleeps until `at`; never when there is none (the select arm is off then anyway).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next rate command, or never when there is no control channel any more.
async fn next_control(
    control: &mut Option<mpsc::Receiver<ControlRequest>>,
) -> Option<ControlRequest> {
    match control {
        Some(rx) => match rx.recv().await {
            Some(req) => Some(req),
            None => {
                *control = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
