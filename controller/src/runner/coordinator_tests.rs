//! The coordinator on made-up events: each test feeds inputs at chosen instants and checks the
//! exact actions that come back, in order (k6's executor tests, for a run).

use std::path::Path;

use stampede_common::metrics::HistogramBundle;
use stampede_common::plan::{Bound, SloCheck, StepKind};
use stampede_common::proto::{Counts, IntervalReport};
use stampede_common::schedule::ArrivalKind;

use super::*;
use crate::feed::Console;
use crate::pool::ClockEstimate;
use crate::results::kinds::AgentEventKind;
use crate::runner::exit;
use crate::runner::outcome::{Verdict, exit_code};

const UNIX: i64 = 1_800_000_000_000_000;
const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn card(id: &str) -> AgentCard {
    AgentCard {
        id: id.into(),
        addr: format!("10.0.0.{}:7070", id.len()),
        cores: 2,
        clock: ClockEstimate {
            offset_us: 0,
            uncertainty_us: 0,
            rtt_us: 0,
        },
        weight: 1.0,
        monitor_only: false,
    }
}

fn step(name: &str, load: Load, seconds: u64) -> StepPlan {
    StepPlan {
        stage_index: 0,
        stage_name: "stage".into(),
        step_index: 0,
        name: name.into(),
        kind: StepKind::Single,
        load,
        duration: Duration::from_secs(seconds),
        input_tokens: 8,
        output_tokens: 8,
        checks: Vec::new(),
    }
}

fn open(qps: f64) -> Load {
    Load::Open {
        qps,
        arrival: ArrivalKind::Constant,
        max_in_flight: None,
    }
}

fn config() -> Config {
    Config {
        grace: SEC,
        lost_after: 5 * SEC,
        abort_on_agent_lost: false,
        abort_on_slo_fail: false,
        abort_on: crate::runner::abort_rule::AbortRule::of(&Default::default()),
    }
}

fn coordinator(cfg: Config, agents: &[&str]) -> Coordinator {
    let plan = Plan::parse(
        "name = \"t\"\n[[stage]]\nname = \"s\"\nqps = 1\nduration = \"1s\"\n",
        Path::new("plan.toml"),
    )
    .unwrap();
    let monitoring = MonitorRun::resolve(&plan, "http://127.0.0.1:9/v1", None, &[]);
    let workload = RunWorkload {
        id: "w".into(),
        json: Vec::new(),
        tokenizer: "cl100k_base".into(),
        classes: Vec::new(),
    };
    let roster = Roster::new(agents.iter().map(|a| card(a)).collect());
    Coordinator::new(cfg, roster, monitoring, workload)
}

/// A coordinator whose first step of `steps` was just launched, at the returned instant.
fn launched(cfg: Config, agents: &[&str], steps: Vec<StepPlan>) -> (Coordinator, Instant) {
    let mut c = coordinator(cfg, agents);
    let t0 = Instant::now();
    c.begin(steps, t0, UNIX);
    c.on(Input::LaunchDue, t0);
    (c, t0)
}

/// Interval `i` of 1 s: `sent` requests, all completed in `e2e_ms`.
fn interval(i: u32, sent: u64, e2e_ms: u64) -> Input {
    let mut b = HistogramBundle::new();
    for _ in 0..sent {
        b.e2e.record(e2e_ms * 1000).unwrap();
        b.ttft.record(e2e_ms * 100).unwrap();
    }
    let report = IntervalReport {
        index: i,
        start_offset_us: u64::from(i) * 1_000_000,
        end_offset_us: u64::from(i + 1) * 1_000_000,
        counts: Some(counts(sent)),
        histograms: Some(b.encode().unwrap()),
        ..Default::default()
    };
    report_of(0, 0, run_event::Event::Interval(report))
}

fn counts(sent: u64) -> Counts {
    Counts {
        sent,
        completed: sent,
        ..Default::default()
    }
}

fn report_of(step: usize, agent: usize, event: run_event::Event) -> Input {
    Input::Report {
        step,
        agent,
        event: Box::new(event),
    }
}

fn from(agent: usize, input: Input) -> Input {
    match input {
        Input::Report { step, event, .. } => Input::Report { step, agent, event },
        other => other,
    }
}

fn of_step(step: usize, input: Input) -> Input {
    match input {
        Input::Report { agent, event, .. } => Input::Report { step, agent, event },
        other => other,
    }
}

fn done(step: usize, agent: usize, sent: u64) -> Input {
    let summary = ShareSummary {
        counts: Some(counts(sent)),
        ..Default::default()
    };
    report_of(step, agent, run_event::Event::Done(summary))
}

/// Each action in a line: what the test compares.
fn describe(actions: &[Action]) -> Vec<String> {
    actions.iter().map(describe_one).collect()
}

fn describe_one(a: &Action) -> String {
    match a {
        Action::Launch(o) => format!(
            "launch {} at +{}ms on {:?}",
            o.step_no,
            (o.start_unix_us - UNIX) / 1000,
            o.active
        ),
        Action::Stop { agents } => format!("stop {agents:?}"),
        Action::Lose { agent, redial } => format!("lose {agent} (redial {redial})"),
        Action::Redial { agent } => format!("redial {agent}"),
        Action::Admit { agent } => format!("admit {agent}"),
        Action::SetRate {
            step,
            scale,
            agents,
        } => format!("set-rate {step} x{scale} on {agents:?}"),
        Action::Reply(Ok(r)) => format!("reply {} x{} = {}/s", r.step, r.scale, r.qps),
        Action::Reply(Err(e)) => format!("refuse {e}"),
        Action::Emit(e) => describe_event(e),
        Action::Finish => "finish".into(),
    }
}

fn describe_event(e: &Event) -> String {
    match e {
        Event::Notice(n) => {
            let mut text = Vec::new();
            Console::new(&mut text).notice(n).unwrap();
            format!("say {}", String::from_utf8_lossy(&text).trim_end())
        }
        Event::StepStarted { no, start_s, .. } => format!("started {no} at {start_s}s"),
        Event::Interval {
            merged,
            step,
            offered,
            step_start_s,
        } => format!(
            "interval {step} #{} sent {} offered {offered:?} from {step_start_s}s",
            merged.index, merged.counts.sent
        ),
        Event::Requests(rows) => format!("requests {}", rows.len()),
        Event::AgentFailed { step, agent, why } => format!("failed {step} agent {agent}: {why}"),
        Event::StepFinished { summary, .. } => format!(
            "finished {} sent {} ends {:?}",
            summary.name,
            summary.requests.sent,
            summary
                .agents
                .iter()
                .map(|a| a.end.text())
                .collect::<Vec<_>>()
        ),
        Event::Summary => "summary".into(),
    }
}

fn verdict(c: &Coordinator) -> u8 {
    let overall = c.overall().summary(&c.workload);
    let v = Verdict {
        sent: overall.requests.sent,
        completed: overall.requests.completed,
        client_bound: false,
        unaccounted: false,
        slo_pass: c.record().done.values().all(|s| s.slo.pass),
    };
    exit_code(c.stop_reasons().decisive(), &v)
}

#[test]
fn steps_launch_back_to_back_at_their_instants() {
    let mut c = coordinator(config(), &["a", "bb"]);
    let t0 = Instant::now();
    let steps = vec![step("one", open(10.0), 10), step("two", open(20.0), 5)];
    assert!(c.begin(steps, t0, UNIX).is_empty());
    // Shares go out LEAD before each start; the second starts when the first's duration ends.
    assert_eq!(c.next_launch(), Some(t0));
    let out = c.on(Input::LaunchDue, t0);
    assert_eq!(
        describe(&out),
        ["launch 0 at +500ms on [true, true]", "started 0 at 0s"]
    );
    assert_eq!(c.next_launch(), Some(t0 + 10 * SEC));
    let out = c.on(Input::LaunchDue, t0 + 10 * SEC);
    assert_eq!(
        describe(&out),
        ["launch 1 at +10500ms on [true, true]", "started 1 at 10s"]
    );
    assert_eq!(c.next_launch(), None);
    // An interval is merged once every agent of the step reported it.
    assert!(describe(&c.on(interval(0, 5, 100), t0 + 2 * SEC)).is_empty());
    assert_eq!(
        describe(&c.on(from(1, interval(0, 5, 100)), t0 + 2 * SEC)),
        ["interval one #0 sent 10 offered Some(10.0) from 0s"]
    );
    assert!(describe(&c.on(done(0, 0, 5), t0 + 11 * SEC)).is_empty());
    assert_eq!(
        describe(&c.on(done(0, 1, 5), t0 + 11 * SEC)),
        ["finished one sent 10 ends [\"done\", \"done\"]"]
    );
    // Step two: one agent finishes, the other; then the batch is over.
    c.on(of_step(1, interval(0, 3, 100)), t0 + 12 * SEC);
    c.on(done(1, 0, 3), t0 + 16 * SEC);
    let out = c.on(done(1, 1, 0), t0 + 16 * SEC);
    assert_eq!(
        describe(&out),
        [
            "interval two #0 sent 3 offered Some(20.0) from 10s",
            "finished two sent 3 ends [\"done\", \"done\"]",
            "finish"
        ]
    );
    assert_eq!(c.batch_summaries().len(), 2);
    assert_eq!(c.stop_reasons().status().name(), "completed");
    assert_eq!(verdict(&c), exit::PASS);
}

#[test]
fn a_rate_change_applies_to_the_step_sending_now_and_is_recorded() {
    let mut c = coordinator(config(), &["a", "bb"]);
    let t0 = Instant::now();
    c.begin(vec![step("one", open(10.0), 10)], t0, UNIX);
    assert_eq!(
        describe(&c.on(Input::Control(RateCommand::Scale(2.0)), t0)),
        ["refuse no step is running yet"]
    );
    c.on(Input::LaunchDue, t0);
    let out = c.on(Input::Control(RateCommand::Scale(1.5)), t0 + 3 * SEC);
    assert_eq!(describe(&out), ["set-rate 0 x1.5 on [0, 1]"]);
    let set = Input::RateSet {
        step: 0,
        scale: 1.5,
        result: Ok(()),
    };
    assert_eq!(
        describe(&c.on(set, t0 + 3 * SEC)),
        [
            "summary",
            "say rate: one now 1.50x its plan (15.00 requests/s)",
            "reply one x1.5 = 15/s"
        ]
    );
    let rec = &c.record().rate_changes;
    assert_eq!(rec.len(), 1);
    // 3 s after the decision, the step started 0.5 s after it.
    assert!(
        (rec[0].elapsed_s - 2.5).abs() < 1e-9,
        "{}",
        rec[0].elapsed_s
    );
    // Relative commands start from the factor now in force, and the offered rate carries it.
    let out = c.on(Input::Control(RateCommand::Multiply(2.0)), t0 + 4 * SEC);
    assert_eq!(describe(&out), ["set-rate 0 x3 on [0, 1]"]);
    let refused = Input::RateSet {
        step: 0,
        scale: 3.0,
        result: Err("agent bb refused: no".into()),
    };
    assert_eq!(
        describe(&c.on(refused, t0 + 4 * SEC)),
        ["refuse agent bb refused: no"]
    );
    c.on(interval(0, 1, 10), t0 + 5 * SEC);
    let out = c.on(from(1, interval(0, 1, 10)), t0 + 5 * SEC);
    assert_eq!(
        describe(&out),
        ["interval one #0 sent 2 offered Some(15.0) from 0s"]
    );
    assert_eq!(
        describe(&c.on(Input::Control(RateCommand::Scale(5000.0)), t0)),
        ["refuse the new rate must be above 0 and at most 1000 times the plan's"]
    );
}

#[test]
fn a_closed_loop_step_has_no_rate_to_change() {
    let mut c = coordinator(config(), &["a"]);
    let t0 = Instant::now();
    let users = Load::Closed {
        concurrency: 4,
        think_time: Duration::ZERO,
    };
    c.begin(vec![step("users", users, 10)], t0, UNIX);
    c.on(Input::LaunchDue, t0);
    assert_eq!(
        describe(&c.on(Input::Control(RateCommand::Qps(5.0)), t0)),
        ["refuse users is not an open-loop rate: its rate cannot change"]
    );
}

#[test]
fn fewer_users_than_agents_finish_the_idle_agent_at_once() {
    let mut c = coordinator(config(), &["a", "bb"]);
    let t0 = Instant::now();
    let one_user = Load::Closed {
        concurrency: 1,
        think_time: Duration::ZERO,
    };
    c.begin(vec![step("solo", one_user, 10)], t0, UNIX);
    c.on(Input::LaunchDue, t0);
    let out = c.on(done(0, 0, 4), t0 + 11 * SEC);
    assert_eq!(
        describe(&out),
        ["finished solo sent 0 ends [\"done\", \"done\"]", "finish"]
    );
}

#[test]
fn an_interrupt_stops_sending_waits_the_grace_then_finishes() {
    let (mut c, t0) = launched(
        config(),
        &["a", "bb"],
        vec![step("one", open(10.0), 10), step("two", open(10.0), 10)],
    );
    let at = t0 + 4 * SEC;
    assert_eq!(
        describe(&c.on(Input::Interrupt, at)),
        [
            "say interrupted: stopping the agents; requests in flight get 1s",
            "stop [0, 1]"
        ]
    );
    assert!(describe(&c.on(Input::Interrupt, at)).is_empty(), "once");
    // No further step; the streams have the grace period and the slack to end.
    assert_eq!(c.next_launch(), None);
    // The grace period counts from the agents' answer to the stop.
    assert_eq!(c.stop_deadline(), None);
    c.on(Input::Stopped, at + SEC / 2);
    assert_eq!(c.stop_deadline(), Some(at + SEC / 2 + SEC + STOP_SLACK));
    c.on(done(0, 0, 2), at + SEC);
    let out = c.on(done(0, 1, 2), at + SEC);
    assert_eq!(
        describe(&out),
        ["finished one sent 0 ends [\"done\", \"done\"]", "finish"]
    );
    assert_eq!(c.stop_reasons().status().name(), "interrupted");
    assert_eq!(verdict(&c), exit::INTERRUPTED);
}

#[test]
fn streams_silent_after_the_stop_are_abandoned_at_the_deadline() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("one", open(10.0), 10)]);
    c.on(Input::Interrupt, t0 + SEC);
    c.on(Input::Stopped, t0 + SEC);
    assert_eq!(c.stop_deadline(), Some(t0 + 12 * SEC));
    let out = c.on(Input::Abandon, t0 + 12 * SEC);
    assert_eq!(
        describe(&out),
        [
            "finished one sent 0 ends [\"abandoned: no answer after the stop\"]",
            "finish"
        ]
    );
}

#[test]
fn an_abort_finishes_every_running_step_now() {
    let (mut c, t0) = launched(
        config(),
        &["a", "bb"],
        vec![step("one", open(10.0), 2), step("two", open(10.0), 2)],
    );
    c.on(Input::LaunchDue, t0 + 2 * SEC);
    let out = c.on(Input::Abort, t0 + 3 * SEC);
    let abandoned = "[\"abandoned: the run was aborted\", \"abandoned: the run was aborted\"]";
    assert_eq!(
        describe(&out),
        [
            format!("finished one sent 0 ends {abandoned}"),
            format!("finished two sent 0 ends {abandoned}"),
            "finish".to_string()
        ]
    );
    assert_eq!(verdict(&c), exit::INTERRUPTED);
    assert_eq!(c.stop_reasons().status().name(), "interrupted");
}

#[test]
fn an_agent_silent_past_the_limit_is_lost_and_its_share_ends_lost() {
    let (mut c, t0) = launched(
        config(),
        &["a", "bb"],
        vec![step("one", open(10.0), 10), step("two", open(10.0), 10)],
    );
    // The step starts at t0 + 0.5 s: silence is counted from there.
    let heard = |a: Option<Instant>| Input::Tick {
        heard: vec![a, None],
    };
    assert!(describe(&c.on(heard(None), t0 + 5 * SEC)).is_empty());
    let out = c.on(
        heard(Some(t0 + 5 * SEC)),
        t0 + 5 * SEC + Duration::from_millis(600),
    );
    assert_eq!(
        describe(&out),
        [
            "failed 0 agent 1: no report for 5.1s",
            "summary",
            "lose 1 (redial true)"
        ]
    );
    let lost = &c.record().agent_events[0];
    assert_eq!(
        (lost.event.as_str(), lost.agent.as_str(), lost.step.as_str()),
        ("lost", "bb", "one")
    );
    assert_eq!(c.roster().lost_why(1), Some("no report for 5.1s"));
    // Whatever it sends late is left out.
    assert!(describe(&c.on(done(0, 1, 9), t0 + 6 * SEC)).is_empty());
    let out = c.on(done(0, 0, 0), t0 + 10 * SEC);
    assert_eq!(
        describe(&out),
        ["finished one sent 0 ends [\"done\", \"no report for 5.1s\"]"]
    );
    // The next step runs on the agents left; the lost one is absent from it.
    let out = c.on(Input::LaunchDue, t0 + 10 * SEC);
    assert_eq!(
        describe(&out),
        ["launch 1 at +10500ms on [true, false]", "started 1 at 10s"]
    );
    let out = c.on(done(1, 0, 0), t0 + 21 * SEC);
    assert_eq!(
        describe(&out),
        [
            "finished two sent 0 ends [\"done\", \"absent: lost earlier (no report for 5.1s)\"]",
            "finish"
        ]
    );
}

#[test]
fn a_lost_agent_rejoins_from_the_next_step() {
    let (mut c, t0) = launched(
        config(),
        &["a", "bb"],
        vec![step("one", open(10.0), 10), step("two", open(10.0), 10)],
    );
    let ended = Input::Ended {
        step: 0,
        agent: 1,
        error: Some("agent bb stream failed: reset".into()),
    };
    assert_eq!(
        describe(&c.on(ended, t0 + 2 * SEC)),
        [
            "failed 0 agent 1: agent bb stream failed: reset",
            "summary",
            "lose 1 (redial true)"
        ]
    );
    // Back at the address another agent has: dialled again.
    let mut twin = card("bb");
    twin.addr = card("a").addr;
    let out = c.on(
        Input::Rejoined {
            index: 1,
            card: twin,
        },
        t0 + 3 * SEC,
    );
    assert_eq!(describe(&out), ["redial 1"]);
    let out = c.on(
        Input::Rejoined {
            index: 1,
            card: card("bb"),
        },
        t0 + 4 * SEC,
    );
    assert_eq!(
        describe(&out),
        [
            "say agent bb at 10.0.0.2:7070 rejoined (clock offset +0.000 ms ± 0.000 ms); it takes part from the next step",
            "summary",
            "admit 1"
        ]
    );
    assert_eq!(
        c.roster().state(1),
        &crate::runner::roster::AgentState::Rejoined
    );
    let out = c.on(Input::LaunchDue, t0 + 10 * SEC);
    assert_eq!(out.len(), 2);
    assert_eq!(describe(&out)[0], "launch 1 at +10500ms on [true, true]");
    let events: Vec<(&str, &str)> = c
        .record()
        .agent_events
        .iter()
        .map(|e| (e.event.as_str(), e.step.as_str()))
        .collect();
    // The rejoin is named after the step it joins, once that step starts.
    assert_eq!(events, [("lost", "one"), ("rejoined", "two")]);
}

#[test]
fn a_lost_agent_aborts_the_run_when_the_plan_says_so() {
    let cfg = Config {
        abort_on_agent_lost: true,
        ..config()
    };
    let (mut c, t0) = launched(cfg, &["a", "bb"], vec![step("one", open(10.0), 10)]);
    let ended = Input::Ended {
        step: 0,
        agent: 0,
        error: None,
    };
    assert_eq!(
        describe(&c.on(ended, t0 + 2 * SEC)),
        [
            "failed 0 agent 0: the stream ended without a summary",
            "summary",
            "lose 0 (redial false)",
            "say aborting: agent a was lost (the stream ended without a summary) and the plan sets on_agent_lost = \"abort\"",
            "summary",
            "stop [1]"
        ]
    );
    assert_eq!(
        c.stop_deadline(),
        None,
        "set once the agents answered the stop"
    );
    c.on(Input::Stopped, t0 + 3 * SEC);
    assert_eq!(c.stop_deadline(), Some(t0 + 3 * SEC + SEC + STOP_SLACK));
    c.on(done(0, 1, 0), t0 + 3 * SEC);
    assert_eq!(c.stop_reasons().status().name(), "aborted");
    assert_eq!(verdict(&c), exit::ERROR);
}

#[test]
fn with_every_agent_lost_the_next_step_aborts_the_run() {
    let (mut c, t0) = launched(
        config(),
        &["a"],
        vec![step("one", open(10.0), 10), step("two", open(10.0), 10)],
    );
    let ended = Input::Ended {
        step: 0,
        agent: 0,
        error: Some("gone".into()),
    };
    let out = c.on(ended, t0 + 2 * SEC);
    assert_eq!(
        describe(&out)[..3],
        ["failed 0 agent 0: gone", "summary", "lose 0 (redial true)"]
    );
    let out = c.on(Input::LaunchDue, t0 + 10 * SEC);
    assert_eq!(
        describe(&out),
        [
            "say aborting: every agent is lost, none is left to run two",
            "summary",
            "finish"
        ]
    );
    assert_eq!(c.record().agent_events[1].event, AgentEventKind::Abort);
    assert_eq!(verdict(&c), exit::ERROR);
}

#[test]
fn a_failed_threshold_aborts_the_run_when_the_plan_says_so() {
    let cfg = Config {
        abort_on_slo_fail: true,
        ..config()
    };
    let mut c = coordinator(cfg, &["a"]);
    let t0 = Instant::now();
    let mut strict = step("one", open(10.0), 1);
    strict.checks = vec![SloCheck {
        name: "e2e_p99".into(),
        limit: 1.0,
        bound: Bound::AtMost,
    }];
    c.begin(vec![strict, step("two", open(10.0), 10)], t0, UNIX);
    c.on(Input::LaunchDue, t0);
    assert_eq!(
        describe(&c.on(interval(0, 5, 100), t0 + 2 * SEC)),
        ["interval one #0 sent 5 offered Some(10.0) from 0s"]
    );
    let out = c.on(done(0, 0, 5), t0 + 2 * SEC);
    assert_eq!(
        describe(&out),
        [
            "finished one sent 5 ends [\"done\"]",
            "say aborting: one failed a threshold and the plan sets abort_on_slo_fail",
            "stop [0]",
            "finish"
        ]
    );
    assert_eq!(c.next_launch(), None, "step two never starts");
    assert_eq!(c.stop_reasons().status().name(), "aborted");
    assert_eq!(verdict(&c), exit::SLO_FAILED);
}

/// Counts of `n` requests refused with 401, the first sent `at_us` into the share.
fn refused_counts(n: u64, at_us: u64, message: &str) -> Counts {
    let mut c = Counts {
        sent: n,
        failed: n,
        ..Default::default()
    };
    c.errors.insert("http_4xx".into(), n);
    c.error_samples.insert(
        "http_4xx 401".into(),
        stampede_common::proto::ErrorSample {
            class: "http_4xx".into(),
            http_status: 401,
            count: n,
            first_sent_offset_us: at_us,
            message: message.into(),
        },
    );
    c
}

/// Interval `i` of 1 s in which `n` requests were refused.
fn refused(i: u32, n: u64, at_us: u64, message: &str) -> Input {
    let report = IntervalReport {
        index: i,
        start_offset_us: u64::from(i) * 1_000_000,
        end_offset_us: u64::from(i + 1) * 1_000_000,
        counts: Some(refused_counts(n, at_us, message)),
        histograms: Some(HistogramBundle::new().encode().unwrap()),
        ..Default::default()
    };
    report_of(0, 0, run_event::Event::Interval(report))
}

#[test]
fn a_step_whose_first_requests_all_fail_alike_stops_the_run_with_the_message() {
    let steps = vec![step("one", open(10.0), 10), step("two", open(10.0), 10)];
    let (mut c, t0) = launched(config(), &["a", "bb"], steps);
    // Both agents' first second: five 401s each; the earlier message is b's.
    assert!(describe(&c.on(refused(0, 5, 300, "from a"), t0 + SEC)).is_empty());
    let key = "HTTP 401 Unauthorized Invalid API key";
    let out = c.on(from(1, refused(0, 5, 100, key)), t0 + SEC);
    assert_eq!(
        describe(&out),
        [
            "interval one #0 sent 10 offered Some(10.0) from 0s",
            "say aborting: the first 10 requests of one all failed with http_4xx 401: HTTP 401 Unauthorized Invalid API key (abort_on; set abort_on.errors = [] to run on)",
            "stop [0, 1]",
        ]
    );
    assert_eq!(c.next_launch(), None, "step two never starts");
    // The agents end their shares; the step's summary keeps the message, and says it.
    let end = |agent: usize, at_us: u64, message: &str| {
        let summary = ShareSummary {
            counts: Some(refused_counts(5, at_us, message)),
            ..Default::default()
        };
        report_of(0, agent, run_event::Event::Done(summary))
    };
    c.on(end(0, 300, "from a"), t0 + 2 * SEC);
    let out = c.on(end(1, 100, key), t0 + 2 * SEC);
    assert_eq!(
        describe(&out),
        [
            "finished one sent 10 ends [\"done\", \"done\"]",
            "say   one: 10 requests failed with http_4xx 401: HTTP 401 Unauthorized Invalid API key",
            "finish",
        ]
    );
    let one = &c.record().done[&0];
    assert_eq!(one.error_messages.len(), 1);
    assert_eq!(one.error_messages[0].count, 10);
    assert_eq!(one.error_messages[0].message, key);
    assert_eq!(
        c.stop_reasons().decisive(),
        Some(&StopReason::FailedAlike {
            step: "one".into(),
            class: "http_4xx 401".into(),
            count: 10,
            message: key.into(),
        })
    );
    assert_eq!(c.stop_reasons().status().name(), "aborted");
    assert_eq!(verdict(&c), exit::ERROR);
}

#[test]
fn a_step_with_one_success_among_its_first_requests_runs_on() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("one", open(10.0), 10)]);
    let mut mixed = refused_counts(12, 0, "no");
    mixed.sent += 1;
    mixed.completed = 1;
    let report = IntervalReport {
        index: 0,
        start_offset_us: 0,
        end_offset_us: 1_000_000,
        counts: Some(mixed),
        histograms: Some(HistogramBundle::new().encode().unwrap()),
        ..Default::default()
    };
    let out = c.on(
        report_of(0, 0, run_event::Event::Interval(report)),
        t0 + SEC,
    );
    assert_eq!(
        describe(&out),
        ["interval one #0 sent 13 offered Some(10.0) from 0s"]
    );
    // Judged once: later intervals that fail alike do not stop it either.
    let out = c.on(refused(1, 20, 1_000_100, "no"), t0 + 2 * SEC);
    assert_eq!(
        describe(&out),
        ["interval one #1 sent 20 offered Some(10.0) from 0s"]
    );
    assert!(!c.stopped());
}

#[test]
fn records_are_rows_of_the_step_that_sent_them() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("one", open(10.0), 10)]);
    let batch = stampede_common::proto::RecordBatch {
        records: vec![Default::default(), Default::default()],
    };
    let out = c.on(report_of(0, 0, run_event::Event::Records(batch)), t0 + SEC);
    assert_eq!(describe(&out), ["requests 2"]);
}

#[test]
fn the_share_carries_the_plans_max_in_flight() {
    let mut c = coordinator(config(), &["a", "bb"]);
    let t0 = Instant::now();
    let capped = Load::Open {
        qps: 10.0,
        arrival: ArrivalKind::Poisson,
        max_in_flight: Some(7),
    };
    c.begin(vec![step("capped", capped, 10)], t0, UNIX);
    let out = c.on(Input::LaunchDue, t0);
    let Some(Action::Launch(order)) = out.first() else {
        panic!("{:?}", describe(&out));
    };
    let caps: Vec<u32> = (0..2)
        .map(|i| match crate::runner::share::share_load(order, i) {
            Some(stampede_common::proto::stage_share::Load::OpenLoop(o)) => o.max_in_flight,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(caps, [4, 3]);
}

/// The reports of one agent whose `users` closed-loop users are each answered `service` after
/// they send, and send again while the window (`window`) is open; or, for an open loop, whose
/// requests (sent at `sends`) are answered `service` later. One report per second from the
/// start, cut at `cut` (the window's end, or a stop), then the drain up to the last answer:
/// what the agent's recorder sends, with every completion time known.
fn scheduled_reports(sends: &[u64], service: Duration, cut: Duration) -> Vec<IntervalReport> {
    let (s, w) = (micros(service), micros(cut));
    let answers: Vec<u64> = sends.iter().map(|t| t + s).collect();
    let last = answers.iter().copied().max().unwrap_or(w).max(w);
    let mut bounds: Vec<u64> = (0..)
        .map(|i| i * 1_000_000)
        .take_while(|b| *b < w)
        .collect();
    bounds.extend([w, last]);
    let within = |ts: &[u64], a: u64, b: u64| ts.iter().filter(|t| (a..b).contains(t)).count();
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, ab)| {
            let drain = ab[0] >= w;
            // The drain's report takes every answer to its end, the last one included.
            let end = if drain { ab[1] + 1 } else { ab[1] };
            let done = within(&answers, ab[0], end) as u64;
            IntervalReport {
                index: i as u32,
                start_offset_us: ab[0],
                end_offset_us: ab[1],
                counts: Some(Counts {
                    sent: within(sends, ab[0], ab[1]) as u64,
                    completed: done,
                    good: done,
                    output_tokens: done * 8,
                    ..Default::default()
                }),
                drain,
                ..Default::default()
            }
        })
        .collect()
}

/// Closed-loop sends: each of `users` sends at once and again on each answer, while `window`
/// is open.
fn closed_sends(users: u64, service: Duration, window: Duration) -> Vec<u64> {
    let (s, w) = (micros(service), micros(window));
    (0..users)
        .flat_map(|_| (0..).map(move |k| k * s).take_while(move |t| *t < w))
        .collect()
}

/// Feeds the reports of step 0 (one agent) and its end; returns the step's summary.
fn run_reports(c: &mut Coordinator, t0: Instant, reports: Vec<IntervalReport>) -> StageSummary {
    let sent = reports
        .iter()
        .map(|r| r.counts.as_ref().map_or(0, |c| c.sent))
        .sum();
    for r in reports {
        let at = t0 + LEAD + Duration::from_micros(r.end_offset_us);
        c.on(report_of(0, 0, run_event::Event::Interval(r)), at);
    }
    c.on(done(0, 0, sent), t0 + 60 * SEC);
    c.record().done[&0].clone()
}

/// Issue 18: 200 users answered in 1.04 s each over a 20 s window: 3,800 answers land inside
/// the window and 200 in the drain after it. Throughput is the window's 190/s, within 2% of the
/// ideal 200 / 1.04 = 192.3/s; counting the drain into the window (as before) gave 200/s.
#[test]
fn closed_loop_throughput_counts_the_window_and_keeps_the_drain_apart() {
    let service = Duration::from_millis(1040);
    let closed = Load::Closed {
        concurrency: 200,
        think_time: Duration::ZERO,
    };
    let (mut c, t0) = launched(config(), &["a"], vec![step("c=200", closed, 20)]);
    let sends = closed_sends(200, service, 20 * SEC);
    let s = run_reports(&mut c, t0, scheduled_reports(&sends, service, 20 * SEC));
    let ideal = 200.0 / 1.04;
    assert_eq!((s.requests.completed, s.drain.completed), (4000, 200));
    assert!(
        (s.throughput_rps - ideal).abs() / ideal < 0.02,
        "{} requests/s against the ideal {ideal:.1}",
        s.throughput_rps
    );
    assert!((s.throughput_rps - 190.0).abs() < 1e-9);
    // Tokens/s and goodput follow the same rule.
    assert!((s.tokens.output_per_s - 190.0 * 8.0).abs() < 1e-6);
    assert!((s.goodput_qps - 190.0).abs() < 1e-9);
    assert_eq!(
        (s.duration_s, s.ended, s.planned_duration_s),
        (20.0, StepEnd::Complete, None)
    );
    assert!(
        (s.drain.duration_s - 0.8).abs() < 1e-9,
        "{}",
        s.drain.duration_s
    );
    // The overall line follows the same rule.
    let overall = c.overall().summary(&c.workload);
    assert!((overall.throughput_rps - 190.0).abs() < 1e-9);
}

/// Issue 18: `q` 10.3 s into a 20 s step at 16/s: the step says it was interrupted, and its
/// duration and rates are over the 10.3 s it ran, not the 20 s planned.
#[test]
fn an_interrupted_step_is_measured_over_the_time_it_ran() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("qps=16", open(16.0), 20)]);
    let cut = Duration::from_millis(10_300);
    c.on(Input::Interrupt, t0 + LEAD + cut);
    let sends: Vec<u64> = (0..)
        .map(|i| i * 62_500)
        .take_while(|t| *t < micros(cut))
        .collect();
    let s = run_reports(&mut c, t0, scheduled_reports(&sends, 100 * MS, cut));
    assert_eq!(s.ended, StepEnd::Interrupted);
    assert!((s.duration_s - 10.3).abs() < 1e-9, "{}", s.duration_s);
    assert_eq!(s.planned_duration_s, Some(20.0));
    assert_eq!(s.requests.sent, 165);
    assert!(
        (s.achieved_qps - 165.0 / 10.3).abs() < 1e-9,
        "{}",
        s.achieved_qps
    );
    assert_eq!(s.offered_qps, Some(16.0));
    // Answers after the stop are the drain: the last request, sent at 10.25 s.
    assert_eq!(s.drain.completed, 1);
    assert!((s.throughput_rps - 164.0 / 10.3).abs() < 1e-9);
}

/// Issue 18: a step at 8/s paused from 5 s to 8 s of 20: it says it was paused for 3 s, and its
/// rates are over the 17 s it sent (8/s), not 20 s (6.8/s).
#[test]
fn a_paused_step_leaves_the_pause_out_of_its_rates() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("qps=8", open(8.0), 20)]);
    for (at, scale) in [(5, 0.0), (8, 1.0)] {
        let set = Input::RateSet {
            step: 0,
            scale,
            result: Ok(()),
        };
        c.on(set, t0 + LEAD + at * SEC);
    }
    let sends: Vec<u64> = (0..160u64)
        .map(|i| i * 125_000)
        .filter(|t| !(5_000_000..8_000_000).contains(t))
        .collect();
    let s = run_reports(&mut c, t0, scheduled_reports(&sends, 100 * MS, 20 * SEC));
    assert_eq!(
        (s.ended, s.paused_s, s.duration_s),
        (StepEnd::Paused, 3.0, 17.0)
    );
    assert_eq!(s.planned_duration_s, Some(20.0));
    assert!((s.achieved_qps - 8.0).abs() < 1e-9, "{}", s.achieved_qps);
    assert_eq!(s.offered_qps, Some(8.0));
    assert_eq!(s.ended.label(s.paused_s), "paused 3.0s");
}

/// A rate changed from 16/s to 8/s halfway: the step says so and offered 12/s on average.
#[test]
fn a_rate_changed_step_says_so_and_offers_its_mean_rate() {
    let (mut c, t0) = launched(config(), &["a"], vec![step("qps=16", open(16.0), 20)]);
    let set = Input::RateSet {
        step: 0,
        scale: 0.5,
        result: Ok(()),
    };
    c.on(set, t0 + LEAD + 10 * SEC);
    let s = run_reports(&mut c, t0, scheduled_reports(&[0], 100 * MS, 20 * SEC));
    assert_eq!((s.ended, s.offered_qps), (StepEnd::RateChanged, Some(12.0)));
    assert_eq!(s.planned_duration_s, None);
}

#[test]
fn a_limit_probe_whose_requests_all_fail_alike_runs_on() {
    // The longest-input test's last level: every prompt is past the context window (400).
    let mut probe = step("longest/input_tokens=32768", open(10.0), 10);
    probe.kind = StepKind::LimitInput;
    let (mut c, t0) = launched(config(), &["a", "bb"], vec![probe]);
    let key = "HTTP 400 Bad Request maximum context length is 32768 tokens";
    c.on(refused(0, 5, 300, key), t0 + SEC);
    let out = c.on(from(1, refused(0, 5, 100, key)), t0 + SEC);
    assert_eq!(
        describe(&out),
        ["interval longest/input_tokens=32768 #0 sent 10 offered Some(10.0) from 0s"],
        "a probe's failures are its answer: no abort"
    );
    assert_eq!(c.stop_reasons().decisive(), None);
}
