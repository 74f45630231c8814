//! The real coordinator and shell against in-process fake agents, on paused time: the clock
//! moves only by `tokio::time::advance`, so launch instants, silences and grace periods are
//! exact, and no test sleeps.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use stampede_common::metrics::HistogramBundle;
use stampede_common::plan::{Plan, StageProgram};
use stampede_common::proto::{
    Counts, HelloReply, IntervalReport, RunEvent, SetRateRequest, ShareSummary, StageShare,
    run_event, stage_share,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, advance};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::RunOptions;
use super::agent_io::{AgentIo, EventStream, RejoinTarget};
use super::context::RunContext;
use super::coordinator::{Config, Coordinator};
use super::roster::{AgentCard, Roster};
use super::setup::{Prepared, summary_header};
use super::shell::{Effects, Shell};
use crate::control::ControlRequest;
use crate::feed::Console;
use crate::feed::LiveFeed;
use crate::live::LiveHub;
use crate::live::command::RateCommand;
use crate::live::state::RunInfo;
use crate::monitor::MonitorRun;
use crate::pool::{AgentHandle, AgentSecurity, ClockEstimate, TokenHeader};
use crate::results::ResultsWriter;
use crate::results::kinds::ShareEnd;
use crate::summary::{RunSummary, StageSummary};
use crate::target::{Preflight, ResolvedTarget};
use crate::wallclock::UtcTime;
use crate::workload::RunWorkload;

/// Two steps of 2 s back to back.
const STEPS: &str = r#"
name = "paused"
interval = "1s"
grace = "1s"
[[stage]]
name = "steps"
steps = { qps = [10, 20], each = "2s" }
"#;

/// One step of 10 s.
const LONG: &str = r#"
name = "paused"
interval = "1s"
grace = "1s"
[[stage]]
name = "long"
qps = 10
duration = "10s"
"#;

/// How a fake agent behaves in every share it is given.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    /// One interval report a second, then its summary.
    Reports,
    /// Nothing at all, its stream left open.
    Silent,
    /// Silent in its first share, then (restarted, dialled again) reporting.
    SilentOnce,
}

/// What the fakes were asked, and when.
#[derive(Debug, Default)]
struct Log {
    runs: Vec<(Instant, usize, StageShare)>,
    stops: Vec<(Instant, usize)>,
    redials: Vec<(Instant, usize)>,
    rates: Vec<(Instant, (usize, f64))>,
}

/// In-process agents: each share becomes a task on tokio's clock.
struct FakeAgents {
    scripts: Vec<Script>,
    log: Arc<Mutex<Log>>,
    /// Each agent's stop: its running shares send their summary and end (a stopped agent
    /// gets a fresh one for its next share).
    stopped: Mutex<Vec<CancellationToken>>,
}

impl AgentIo for FakeAgents {
    fn run(
        &self,
        agent: &AgentHandle,
        share: StageShare,
    ) -> BoxFuture<'static, Result<EventStream, tonic::Status>> {
        let i = agent.index;
        let mut log = self.log.lock().unwrap();
        let before = log.runs.iter().filter(|(_, a, _)| *a == i).count();
        log.runs.push((Instant::now(), i, share.clone()));
        let (tx, rx) = mpsc::channel(64);
        let script = match self.scripts[i] {
            Script::SilentOnce if before > 0 => Script::Reports,
            Script::SilentOnce => Script::Silent,
            other => other,
        };
        let stopped = self.stopped.lock().unwrap()[i].clone();
        tokio::spawn(async move {
            match script {
                Script::Reports | Script::SilentOnce => report(share, tx, stopped).await,
                Script::Silent => {
                    stopped.cancelled().await;
                    drop(tx);
                }
            }
        });
        let stream: EventStream = Box::pin(ReceiverStream::new(rx));
        async move { Ok(stream) }.boxed()
    }

    fn stop(&self, agent: &AgentHandle, _run_id: &str) -> BoxFuture<'static, ()> {
        let mut log = self.log.lock().unwrap();
        log.stops.push((Instant::now(), agent.index));
        let fresh = CancellationToken::new();
        std::mem::replace(&mut self.stopped.lock().unwrap()[agent.index], fresh).cancel();
        async {}.boxed()
    }

    fn set_rate(
        &self,
        agent: &AgentHandle,
        req: SetRateRequest,
    ) -> BoxFuture<'static, Result<(), tonic::Status>> {
        let mut log = self.log.lock().unwrap();
        log.rates.push((Instant::now(), (agent.index, req.scale)));
        async { Ok(()) }.boxed()
    }

    fn redial(&self, target: &RejoinTarget) -> BoxFuture<'static, Option<AgentHandle>> {
        let mut log = self.log.lock().unwrap();
        log.redials.push((Instant::now(), target.index));
        // A restarted agent answers; the others never come back.
        let back = (self.scripts[target.index] == Script::SilentOnce).then(|| handle(target.index));
        async move { back }.boxed()
    }
}

/// Sends one interval of `qps` requests a second from the share's start, then its summary;
/// a stop ends it early.
async fn report(
    share: StageShare,
    tx: mpsc::Sender<Result<RunEvent, tonic::Status>>,
    stopped: CancellationToken,
) {
    let qps = match share.load {
        Some(stage_share::Load::OpenLoop(o)) => o.qps as u64,
        _ => 0,
    };
    let event = |e| Ok(RunEvent { event: Some(e) });
    tokio::time::sleep(super::coordinator::LEAD).await;
    let intervals = share.duration_us / 1_000_000;
    let mut sent = 0;
    for index in 0..intervals {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stopped.cancelled() => break,
        }
        let mut b = HistogramBundle::new();
        for _ in 0..qps {
            b.e2e.record(50_000).unwrap();
        }
        let report = IntervalReport {
            index: index as u32,
            start_offset_us: index * 1_000_000,
            end_offset_us: (index + 1) * 1_000_000,
            counts: Some(counts(qps)),
            histograms: Some(b.encode().unwrap()),
            ..Default::default()
        };
        sent += qps;
        let _ = tx.send(event(run_event::Event::Interval(report))).await;
    }
    let done = ShareSummary {
        counts: Some(counts(sent)),
        ..Default::default()
    };
    let _ = tx.send(event(run_event::Event::Done(done))).await;
}

fn counts(n: u64) -> Counts {
    Counts {
        sent: n,
        completed: n,
        ..Default::default()
    }
}

fn handle(index: usize) -> AgentHandle {
    let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    AgentHandle {
        index,
        addr: format!("127.0.0.1:{}", 9000 + index),
        client: stampede_common::proto::agent_client::AgentClient::with_interceptor(
            channel,
            TokenHeader::default(),
        ),
        hello: HelloReply {
            agent_id: format!("fake-{index}"),
            cores: 1,
            ..Default::default()
        },
        weight: 1.0,
        origin: None,
        clock: ClockEstimate {
            offset_us: 0,
            uncertainty_us: 0,
            rtt_us: 0,
        },
        child: None,
        monitor_only: false,
    }
}

/// What a test's observer holds while the run goes.
struct Harness {
    log: Arc<Mutex<Log>>,
    interrupt: CancellationToken,
    control: mpsc::Sender<ControlRequest>,
    /// When the run's steps were given to the shell.
    t0: Instant,
}

impl Harness {
    /// The instants of `pick`'s entries, in milliseconds since `t0`, with what they carry.
    fn at<T: Clone>(&self, pick: impl Fn(&Log) -> &Vec<(Instant, T)>) -> Vec<(u128, T)> {
        let log = self.log.lock().unwrap();
        pick(&log)
            .iter()
            .map(|(t, x)| (ms(*t - self.t0), x.clone()))
            .collect()
    }
}

/// What a run on fakes left.
struct Outcome {
    summaries: Vec<StageSummary>,
    coord: Coordinator,
    printed: String,
    log: Log,
}

/// Runs the plan's one stage on fakes scripted by `scripts`, while `observe` advances the
/// clock (and may fire `interrupt`).
async fn run_on_fakes<F>(plan: &str, scripts: Vec<Script>, observe: F) -> Outcome
where
    F: AsyncFnOnce(Harness),
{
    let plan = Plan::parse(plan, Path::new("paused.toml")).unwrap();
    let mut programs = plan.programs();
    let StageProgram::Fixed(steps) = programs.remove(0) else {
        panic!("a fixed stage");
    };
    let agents: Vec<AgentHandle> = (0..scripts.len()).map(handle).collect();
    let monitoring = MonitorRun::resolve(&plan, "http://127.0.0.1:9/v1", None, &agents);
    let workload = RunWorkload {
        id: "w".into(),
        json: Vec::new(),
        tokenizer: "cl100k_base".into(),
        classes: Vec::new(),
    };
    let ctx = RunContext {
        plan: &plan,
        model: "m".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        api_key: None,
        run_id: "paused-run".into(),
        monitoring: monitoring.clone(),
        workload: workload.clone(),
        security: AgentSecurity::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let (interrupt, abort) = (CancellationToken::new(), CancellationToken::new());
    let p = prepared(&plan, dir.path(), &interrupt, &workload);
    let summary = summary_of(&p, &agents);
    let info = RunInfo {
        agents: agents.iter().map(|a| a.hello.agent_id.clone()).collect(),
        interval_s: 1.0,
        ..Default::default()
    };
    let log = Arc::new(Mutex::new(Log::default()));
    let (control, control_rx) = mpsc::channel(4);
    let fakes = FakeAgents {
        stopped: Mutex::new(scripts.iter().map(|_| CancellationToken::new()).collect()),
        scripts,
        log: Arc::clone(&log),
    };
    let fx = Effects {
        ctx: &ctx,
        io: Arc::new(fakes),
        writer: &p.writer,
        live: LiveFeed::new(LiveHub::new(false), info, 25.0),
        control: Some(control_rx),
        interrupt: interrupt.clone(),
        abort,
    };
    let roster = Roster::new(agents.iter().map(AgentCard::of).collect());
    let coord = Coordinator::new(Config::of(&plan), roster, monitoring, workload);
    let mut shell = Shell::new(coord, fx, agents, summary);
    let mut printed = Vec::new();
    let t0 = Instant::now();
    let summaries = {
        let mut console = Console::new(&mut printed);
        let (summaries, ()) = tokio::join!(
            shell.drive(steps, &mut console),
            observe(Harness {
                log: Arc::clone(&log),
                interrupt,
                control,
                t0,
            })
        );
        summaries.unwrap()
    };
    let done = shell.finish();
    p.writer.finish().unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    Outcome {
        summaries,
        coord: done.coord,
        printed: String::from_utf8(printed).unwrap(),
        log,
    }
}

/// The run's plan and results folder, as `setup::prepare` leaves them.
fn prepared(
    plan: &Plan,
    dir: &Path,
    interrupt: &CancellationToken,
    workload: &RunWorkload,
) -> Prepared {
    Prepared {
        plan: plan.clone(),
        plan_text: String::new(),
        workload: workload.clone(),
        api_key: None,
        run_id: "paused-run".into(),
        started: UtcTime::from_unix_millis(0),
        dir: dir.join("r"),
        writer: ResultsWriter::create(dir.join("r"), "", {
            let interrupt = interrupt.clone();
            move || interrupt.cancel()
        })
        .unwrap(),
    }
}

/// summary.json's start, as a real run writes it.
fn summary_of(p: &Prepared, agents: &[AgentHandle]) -> RunSummary {
    let opts = RunOptions {
        plan: "paused.toml".into(),
        agents: agents.len(),
        agent_addrs: Vec::new(),
        security: AgentSecurity::default(),
        plain: true,
        out: p.dir.clone(),
        control_listen: None,
        time_scale: 1.0,
        lang: crate::report::i18n::Lang::En,
        live: LiveHub::new(false),
    };
    let target = ResolvedTarget {
        base_url: "http://127.0.0.1:9/v1".into(),
        simulator: None,
    };
    let pre = Preflight {
        model: "m".into(),
        models: serde_json::Value::Null,
    };
    summary_header(p, &opts, &target, &pre, agents)
}

/// Advances the clock by `step` until `total` has passed, letting every task that can run
/// (the shell, the fakes, a rejoin being started) run before each move, so that what they do
/// happens at the instant it is due.
async fn advance_by(step: Duration, total: Duration) {
    let mut gone = Duration::ZERO;
    while gone < total {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        advance(step).await;
        gone += step;
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(start_paused = true)]
async fn steps_are_sent_at_their_instants_and_merged_from_every_agent() {
    let out = run_on_fakes(
        STEPS,
        vec![Script::Reports, Script::Reports],
        async |h: Harness| {
            advance_by(Duration::from_millis(100), Duration::from_millis(100)).await;
            // Step one went out at once (LEAD before its start), to both agents.
            assert_eq!(h.log.lock().unwrap().runs.len(), 2);
            advance_by(Duration::from_millis(100), Duration::from_millis(1800)).await;
            assert_eq!(
                h.log.lock().unwrap().runs.len(),
                2,
                "step two waits its turn"
            );
            advance_by(Duration::from_millis(100), Duration::from_secs(6)).await;
            let runs = h.log.lock().unwrap();
            let at: Vec<u128> = runs.runs.iter().map(|(t, _, _)| ms(*t - h.t0)).collect();
            assert_eq!(at, [0, 0, 2000, 2000]);
        },
    )
    .await;
    let runs = &out.log.runs;
    // Each step's rate split evenly, one start per step on the shared clock, 2 s apart.
    assert_eq!(qps_of(runs), [5.0, 5.0, 10.0, 10.0]);
    assert_eq!(
        runs[2].2.start_at_unix_us - runs[0].2.start_at_unix_us,
        2_000_000
    );
    let sent: Vec<u64> = out.summaries.iter().map(|s| s.requests.sent).collect();
    assert_eq!(sent, [20, 40]);
    assert!(
        out.summaries
            .iter()
            .all(|s| s.agents.iter().all(|a| a.end == ShareEnd::Done))
    );
    assert_eq!(out.coord.stop_reasons().status().name(), "completed");
    // One plain line per merged interval: two a step.
    let lines = out.printed.lines().filter(|l| l.starts_with('[')).count();
    assert_eq!(lines, 4, "{}", out.printed);
    assert!(out.log.stops.is_empty());
}

/// Each share's rate, in the order the shares were sent.
fn qps_of(runs: &[(Instant, usize, StageShare)]) -> Vec<f64> {
    runs.iter()
        .map(|(_, _, s)| match &s.load {
            Some(stage_share::Load::OpenLoop(o)) => o.qps,
            _ => 0.0,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_lost_after_the_heartbeat_limit_and_dialled_again() {
    let out = run_on_fakes(
        LONG,
        vec![Script::Reports, Script::Silent],
        async |h: Harness| {
            // The step starts at +0.5 s; 5 s of silence later the agent is not lost yet.
            advance_by(Duration::from_millis(100), Duration::from_millis(5500)).await;
            assert!(h.at(|l| &l.stops).is_empty());
            // The next heartbeat check past the limit loses it and tells it to stop.
            advance_by(Duration::from_millis(100), Duration::from_millis(600)).await;
            assert_eq!(h.at(|l| &l.stops), [(6000, 1)]);
            advance_by(Duration::from_millis(100), Duration::from_secs(6)).await;
        },
    )
    .await;
    let long = &out.summaries[0];
    assert_eq!(long.agents[0].end, ShareEnd::Done);
    assert_eq!(
        long.agents[1].end,
        ShareEnd::Failed("no report for 5.5s".into())
    );
    assert_eq!(
        long.requests.sent, 50,
        "what the agent left sent still counts"
    );
    // It is dialled again every 2 s until the run ends.
    let redials: Vec<u128> = out
        .log
        .redials
        .iter()
        .map(|(t, _)| ms(*t - out.log.stops[0].0))
        .collect();
    assert!(redials.len() >= 2, "{redials:?}");
    assert!(
        redials.iter().zip(1..).all(|(t, k)| *t == 2000 * k),
        "{redials:?}"
    );
    let lost = &out.coord.record().agent_events[0];
    assert_eq!(
        (lost.event.as_str(), lost.agent.as_str()),
        ("lost", "fake-1")
    );
    assert!(out.printed.contains("ALERT"), "{}", out.printed);
}

/// Two steps of 10 s: room for a loss, a rejoin, and a step after it.
const TWO_LONG: &str = r#"
name = "paused"
interval = "1s"
grace = "1s"
[[stage]]
name = "s"
steps = { qps = [10, 20], each = "10s" }
"#;

#[tokio::test(start_paused = true)]
async fn a_lost_agent_that_answers_again_runs_the_next_step() {
    let out = run_on_fakes(
        TWO_LONG,
        vec![Script::Reports, Script::SilentOnce],
        async |h: Harness| {
            advance_by(Duration::from_millis(100), Duration::from_millis(6100)).await;
            assert_eq!(h.at(|l| &l.stops), [(6000, 1)]);
            // Dialled 2 s after the loss, it answers: back for the next step, not this one.
            advance_by(Duration::from_millis(100), Duration::from_millis(2000)).await;
            assert_eq!(h.at(|l| &l.redials), [(8000, 1)]);
            advance_by(Duration::from_millis(100), Duration::from_secs(13)).await;
            let runs: Vec<(u128, usize)> = {
                let log = h.log.lock().unwrap();
                log.runs
                    .iter()
                    .map(|(t, i, _)| (ms(*t - h.t0), *i))
                    .collect()
            };
            assert_eq!(runs, [(0, 0), (0, 1), (10_000, 0), (10_000, 1)]);
        },
    )
    .await;
    assert_eq!(
        out.summaries[0].agents[1].end,
        ShareEnd::Failed("no report for 5.5s".into())
    );
    let two = &out.summaries[1];
    assert_eq!(two.agents[1].end, ShareEnd::Done);
    assert_eq!(two.requests.sent, 200, "both agents sent 10/s for 10 s");
    let events: Vec<(&str, &str)> = out
        .coord
        .record()
        .agent_events
        .iter()
        .map(|e| (e.event.as_str(), e.step.as_str()))
        .collect();
    assert_eq!(events, [("lost", "s/qps=10"), ("rejoined", "s/qps=20")]);
    assert!(
        out.printed
            .contains("agent fake-1 at 127.0.0.1:9001 rejoined"),
        "{}",
        out.printed
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_command_reaches_every_agent_and_is_answered() {
    let out = run_on_fakes(
        STEPS,
        vec![Script::Reports, Script::Reports],
        async |h: Harness| {
            advance_by(Duration::from_millis(100), Duration::from_millis(1000)).await;
            let (reply, answer) = tokio::sync::oneshot::channel();
            h.control
                .send((RateCommand::Scale(2.0), reply))
                .await
                .unwrap();
            let answer = answer.await.unwrap().unwrap();
            assert_eq!((answer.scale, answer.qps), (2.0, 20.0));
            assert_eq!(h.at(|l| &l.rates), [(1000, (0, 2.0)), (1000, (1, 2.0))]);
            advance_by(Duration::from_millis(100), Duration::from_secs(6)).await;
        },
    )
    .await;
    let changes = &out.coord.record().rate_changes;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].step.as_str(), changes[0].qps),
        ("steps/qps=10", 20.0)
    );
    assert!(
        (changes[0].elapsed_s - 0.5).abs() < 1e-3,
        "{}",
        changes[0].elapsed_s
    );
    assert!(
        out.printed
            .contains("rate: steps/qps=10 now 2.00x its plan (20.00 requests/s)"),
        "{}",
        out.printed
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_stops_the_agents_and_the_run_ends_within_the_grace() {
    let out = run_on_fakes(
        STEPS,
        vec![Script::Reports, Script::Reports],
        async |h: Harness| {
            advance_by(Duration::from_millis(100), Duration::from_millis(1000)).await;
            h.interrupt.cancel();
            advance_by(Duration::from_millis(100), Duration::from_secs(3)).await;
            assert_eq!(h.at(|l| &l.stops), [(1000, 0), (1000, 1)]);
            assert_eq!(
                h.log.lock().unwrap().runs.len(),
                2,
                "step two is never sent"
            );
        },
    )
    .await;
    assert_eq!(out.summaries.len(), 1);
    assert_eq!(out.coord.stop_reasons().status().name(), "interrupted");
    assert!(
        out.printed
            .contains("interrupted: stopping the agents; requests in flight get 1s"),
        "{}",
        out.printed
    );
}
