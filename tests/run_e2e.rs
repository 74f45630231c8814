//! End to end: the real controller, agents and simulator as separate processes over loopback.

mod util;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stampede_common::metrics::{LatencySummary, new_histogram};
use util::*;

/// The deterministic simulator sends the first token `TTFT_MS` after it receives a request and
/// one token every `ITL_MS` after that, on an absolute schedule.
const TTFT_MS: f64 = 50.0;
const ITL_MS: f64 = 10.0;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn plan(body: &str) -> String {
    format!(
        r#"name = "e2e"
interval = "1s"
grace = "5s"

[target.sim]
preset = "deterministic"
ttft = "{TTFT_MS}ms"
itl = "{ITL_MS}ms"

[workload]
input_tokens = 64
output_tokens = 8

{body}
"#
    )
}

#[test]
fn measured_latency_matches_the_simulator_and_counts_match_the_schedule() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan(
        "[slo]\ne2e_p99 = \"10s\"\n\n[[stage]]\nname = \"steady\"\narrival = \"constant\"\nqps = 20\nduration = \"3s\"\n",
    ));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("steady") && l.contains("ttft p50"))
            .count()
            >= 3,
        "a live line per second:\n{stdout}"
    );

    let s = ws.summary();
    assert_eq!(s["schema"], "stampede.summary/v1");
    assert_eq!(s["status"], "completed");
    assert_eq!(s["target"]["simulator"], true);
    let st = &s["stages"][0];
    // Constant arrivals at 20/s for 3 s are due at i/20 s for i = 0..59: exactly 60.
    assert_eq!(u(&st["requests"]["sent"]), 60, "{st}");
    assert_eq!(u(&st["requests"]["completed"]), 60, "{st}");
    assert_eq!(u(&st["requests"]["failed"]), 0);
    assert_eq!(u(&st["tokens"]["output_total"]), 60 * 8);

    // Tolerance: the client cannot see a token before the simulator sends it, so TTFT and the
    // TPOT mean are bounded below by the true values (less the histogram's 0.1% resolution).
    // Above: the simulator's timer wakes up to ~1 ms late (tokio's millisecond wheel), loopback
    // adds well under 1 ms, and a debug build on a loaded 2-core CI machine adds scheduling
    // noise of a few ms; we allow 6 ms on TTFT p50 and 1.5 ms on the ITL median.
    let ttft_p50 = f(&st["ttft_ms"]["p50"]);
    assert!(
        (TTFT_MS * 0.999..TTFT_MS + 6.0).contains(&ttft_p50),
        "ttft p50 {ttft_p50}"
    );
    let itl_p50 = f(&st["itl_ms"]["p50"]);
    assert!(
        (ITL_MS - 1.5..ITL_MS + 1.5).contains(&itl_p50),
        "itl p50 {itl_p50}"
    );
    let tpot_mean = f(&st["tpot_ms"]["mean"]);
    assert!(
        (ITL_MS * 0.99..ITL_MS + 1.5).contains(&tpot_mean),
        "tpot mean {tpot_mean}"
    );
    // Corrected TTFT adds the schedule lag, so it is never below the plain one.
    assert!(f(&st["ttft_corrected_ms"]["p50"]) >= ttft_p50);
    assert_eq!(st["slo"]["pass"], true);
    assert!(s["manifest"]["models"]["data"][0]["id"].is_string());

    let dir = ws.results_dir();
    for file in [
        "plan.toml",
        "summary.json",
        "stages.csv",
        "timeseries.csv",
        "requests.csv",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    assert_eq!(read_csv(&dir.join("requests.csv")).len(), 60);
    assert_eq!(read_csv(&dir.join("stages.csv")).len(), 1);
    assert!(read_csv(&dir.join("timeseries.csv")).len() >= 3);
}

#[test]
fn two_agents_merge_to_the_sum_of_their_parts() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan(
        "[[stage]]\nname = \"poisson\"\nqps = 30\nduration = \"4s\"\n",
    ));
    let out = ws.run(&path, &["--agents", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = ws.summary();
    assert_eq!(s["agents"].as_array().unwrap().len(), 2);
    let st = &s["stages"][0];
    let shares = st["agents"].as_array().unwrap();
    assert_eq!(shares.len(), 2);
    for key in ["sent", "completed", "failed"] {
        let parts: u64 = shares.iter().map(|a| u(&a[key])).sum();
        assert_eq!(parts, u(&st["requests"][key]), "{key}");
    }
    for a in shares {
        assert_eq!(a["end"], "done");
        assert!(u(&a["sent"]) > 0, "each agent sent its share: {a}");
        assert_eq!(
            u(&a["sent"]),
            u(&a["reported"]["sent"]),
            "merged equals the agent's own count: {a}"
        );
        assert_eq!(u(&a["completed"]), u(&a["reported"]["completed"]));
    }
    // Poisson arrivals at 30/s for 4 s: 120 expected, standard deviation about 11; 5 sigma.
    let sent = u(&st["requests"]["sent"]);
    assert!((65..=175).contains(&sent), "sent {sent}");

    // The merged percentiles equal those of one histogram holding every request's sample.
    let rows = read_csv(&ws.results_dir().join("requests.csv"));
    assert_eq!(rows.len() as u64, u(&st["requests"]["completed"]));
    let mut all = new_histogram();
    for r in &rows {
        let ms: f64 = r["ttft_ms"].parse().expect("ttft_ms");
        all.record((ms * 1000.0).round() as u64).unwrap();
    }
    let one = LatencySummary::of(&all);
    for stat in ["p50", "p90", "p99", "max"] {
        assert_eq!(
            one.get(stat).unwrap(),
            f(&st["ttft_ms"][stat]),
            "ttft {stat}"
        );
    }
}

#[test]
fn a_target_that_drops_streams_gives_counted_errors_and_the_run_completes() {
    let (_sim, addr) = start_listening(
        sim_bin(),
        &[
            "--ttft",
            "20ms",
            "--itl",
            "5ms",
            "--fault-disconnect-rate",
            "0.3",
            "--seed",
            "7",
        ],
    );
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        "name = \"faults\"\n[target]\nbase_url = \"http://{addr}/v1\"\n[workload]\ninput_tokens = 16\noutput_tokens = 20\n[[stage]]\nname = \"flaky\"\narrival = \"constant\"\nqps = 25\nduration = \"3s\"\n"
    ));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st = &ws.summary()["stages"][0];
    let sent = u(&st["requests"]["sent"]);
    let failed = u(&st["requests"]["failed"]);
    let broken = u(&st["errors"]["stream_broken"]);
    assert_eq!(sent, 75);
    assert_eq!(
        sent,
        u(&st["requests"]["completed"]) + failed + u(&st["requests"]["cancelled"])
    );
    assert_eq!(broken, failed, "every failure is a broken stream: {st}");
    // 30% of 75: 22.5 expected, binomial standard deviation 4; allow 4 sigma.
    assert!((6..=39).contains(&broken), "broken {broken}");
    let rows = read_csv(&ws.results_dir().join("requests.csv"));
    assert_eq!(
        rows.iter()
            .filter(|r| r["error"] == "stream_broken")
            .count() as u64,
        broken
    );
}

#[test]
fn a_bad_plan_names_the_file_line_and_field() {
    let ws = Workspace::new();
    let cases = [
        (
            "name = \"x\"\n[[stage]]\nname = \"a\"\nqpss = 5\nduration = \"1s\"\n",
            ":4:",
            "qpss",
        ),
        (
            "name = \"x\"\n[[stage]]\nname = \"a\"\nqps = 5\nduration = \"soon\"\n",
            ":5:",
            "stage[0].duration",
        ),
        (
            "name = \"x\"\n[[stage]]\nname = \"a\"\nqps = -5\nduration = \"1s\"\n",
            ":4:",
            "stage[0].qps",
        ),
        ("name = \"x\"\n", "plan.toml", "stage"),
        // The simulator's settings are reported at the plan's line too, not at its sim.toml.
        (
            "name = \"x\"\n[target.sim]\nttft = \"5 parsecs\"\n[[stage]]\nname = \"a\"\nqps = 5\nduration = \"1s\"\n",
            "plan.toml:3:8",
            "target.sim.ttft",
        ),
    ];
    for (text_in, line, field) in cases {
        let path = ws.write_plan(text_in);
        let out = ws.run(&path, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(err.contains("plan.toml"), "{err}");
        assert!(err.contains(line), "{line} in {err}");
        assert!(err.contains(field), "{field} in {err}");
    }
}

#[test]
fn every_mistake_of_a_plan_is_reported_in_one_run() {
    // A syntax error, a wrong type, two unknown fields, an unknown value and a meaning problem:
    // one run names them all, in file order, with a suggestion for each misspelt name.
    let ws = Workspace::new();
    let path = ws.write_plan(
        "name = \"six\"\nseed = \"three\"\n[target]\nstrem = false\n[workload]\noutput_token = 32\n[[stage]]\nname = \"a\"\nqps = 5\nduration = \"10s\"\narrival = \"possion\"\n[[stage]]\nname = \"b\"\nqps = = 5\nduration = \"1s\"\n[[stage]]\nname = \"c\"\nqps = 5\nconcurrency = 2\nduration = \"1s\"\n",
    );
    let out = ws.run(&path, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected = [
        "plan.toml:2:8: seed: invalid type",
        "plan.toml:4:1: target.strem: unknown field `strem`: did you mean `stream`?",
        "plan.toml:6:1: workload.output_token: unknown field `output_token`: did you mean `output_tokens`?",
        "plan.toml:11:11: stage[0].arrival: unknown variant `possion`: did you mean `poisson`?",
        "plan.toml:14:7: stage[1].qps:",
        "plan.toml:18:7: stage[2].qps: give only one of qps, concurrency",
    ];
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("plan.toml:")).collect();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.contains(want), "{want:?} in {line:?}\n{err}");
    }
    assert!(!ws.out().exists(), "nothing was started or written");
}

#[test]
fn an_unreachable_target_is_reported_before_any_stage() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{port}/v1");
    let path = ws.write_plan(&format!(
        "name = \"down\"\n[target]\nbase_url = \"{url}\"\nmodel = \"m\"\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n"
    ));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(
        err.to_lowercase().contains("connect") || err.contains("refused"),
        "the cause: {err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("ttft p50"),
        "no stage ran"
    );
}

/// Starts a 60 s step at 10/s, lets it run 3 s past its children's start, sends `signal` to
/// the controller (or, with `whole_group`, to its whole process group, as a terminal's Ctrl-C
/// does), and returns what the controller printed, summary.json and the children it had.
fn signal_a_long_run(signal: &str, whole_group: bool) -> (Output, Value, Vec<u32>) {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan(
        "[[stage]]\nname = \"long\"\nqps = 10\nduration = \"60s\"\n",
    ));
    let child = ws.spawn_in_group(&path, &[], whole_group);
    let pid = child.id();
    // Wait until the run is under way: the agent and the simulator are children by then.
    assert!(
        wait_for(Duration::from_secs(30), || children_of(pid).len() >= 2),
        "children started"
    );
    std::thread::sleep(Duration::from_secs(3));
    let children = children_of(pid);
    let target = if whole_group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let status = Command::new("kill")
        .args([signal, "--", &target])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("controller exits");
    (out, ws.summary(), children)
}

#[test]
fn sigterm_stops_sending_finishes_the_files_and_leaves_no_child_behind() {
    let (out, s, children) = signal_a_long_run("-TERM", false);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert_eq!(s["status"], "interrupted");
    let st = &s["stages"][0];
    let sent = u(&st["requests"]["sent"]);
    assert!(sent > 0 && sent < 600, "stopped early: {sent}");
    // Issue 18: the step says it was interrupted, and its rates are over the time it ran, not
    // the 60 s planned (10/s, not a sixth of it).
    assert_eq!(st["ended"], "interrupted", "{st}");
    assert_eq!(f(&st["planned_duration_s"]), 60.0, "{st}");
    let ran = f(&st["duration_s"]);
    assert!(ran > 1.0 && ran < 30.0, "ran {ran}: {st}");
    assert!((f(&st["achieved_qps"]) - 10.0).abs() < 1.5, "{st}");
    assert_eq!(
        sent,
        u(&st["requests"]["completed"])
            + u(&st["requests"]["failed"])
            + u(&st["requests"]["cancelled"])
    );
    assert!(s["finished_at"].is_string());
    for pid in children {
        assert!(
            wait_for(Duration::from_secs(5), || !alive(pid)),
            "child {pid} outlived the controller"
        );
    }
}

#[test]
fn killing_the_controller_stops_its_children() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan(
        "[[stage]]\nname = \"long\"\nqps = 5\nduration = \"60s\"\n",
    ));
    let mut child = ws.spawn(&path, &[]);
    let pid = child.id();
    assert!(
        wait_for(Duration::from_secs(30), || children_of(pid).len() >= 2),
        "children started"
    );
    // Kill it once the run is under way and has written its first interval.
    assert!(
        ws.wait_for_first_interval(Duration::from_secs(30)),
        "an interval was written"
    );
    let children = children_of(pid);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for pid in children {
        assert!(
            wait_for(Duration::from_secs(5), || !alive(pid)),
            "child {pid} outlived a killed controller"
        );
    }
    // What was written so far is still readable.
    let s: HashMap<String, Value> =
        serde_json::from_value(ws.summary()).expect("summary.json is whole");
    assert_eq!(s["schema"], "stampede.summary/v1");
    // And `controller report` reads the killed run's folder: every interval written so far.
    let dir = ws.results_dir();
    let intervals = rows_if_any(&dir.join("timeseries.csv"));
    assert!(intervals > 0);
    let report = Command::new(controller_bin())
        .arg("report")
        .arg(&dir)
        .output()
        .expect("run controller report");
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("</html>"), "a whole report");
    assert!(dir.join("report.md").exists());
}

/// Rows in a CSV file that may not exist yet.
fn rows_if_any(path: &std::path::Path) -> usize {
    if path.exists() {
        read_csv(path).len()
    } else {
        0
    }
}

#[test]
fn each_timeout_kind_is_classified() {
    // (simulator fault, target timeouts, the class every request must end in)
    let cases = [
        (
            "slow_first_token:rate=1,delay=3s",
            "first_token_timeout = \"500ms\"",
            "timeout_first_token",
        ),
        (
            "stall:rate=1,after_tokens=2,stall=3s",
            "idle_timeout = \"500ms\"",
            "timeout_idle",
        ),
        (
            "stall:rate=1,after_tokens=2,stall=3s",
            "timeout = \"1s\"",
            "timeout_total",
        ),
    ];
    for (fault, timeouts, class) in cases {
        let (_sim, addr) = start_listening(
            sim_bin(),
            &["--ttft", "20ms", "--itl", "10ms", "--fault", fault],
        );
        let ws = Workspace::new();
        let path = ws.write_plan(&format!(
            "name = \"timeouts\"\ngrace = \"5s\"\n[target]\nbase_url = \"http://{addr}/v1\"\n{timeouts}\n[workload]\ninput_tokens = 8\noutput_tokens = 10\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nqps = 4\nduration = \"1s\"\n"
        ));
        let out = ws.run(&path, &[]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "every request failed: {}",
            text(&out)
        );
        let st = &ws.summary()["stages"][0];
        assert_eq!(u(&st["requests"]["sent"]), 4, "{st}");
        assert_eq!(u(&st["errors"][class]), 4, "{class}: {st}");
        assert_eq!(u(&st["requests"]["timeouts"]), 4);
    }
}

#[test]
fn ctrl_c_to_the_whole_process_group_stops_the_agents_too() {
    // A terminal's Ctrl-C signals the foreground process group: the controller, and the agent
    // and simulator it started, unless they sit in groups of their own.
    let (out, s, _) = signal_a_long_run("-INT", true);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let st = &s["stages"][0];
    assert_eq!(st["ended"], "interrupted", "{st}");
    let ran = f(&st["duration_s"]);
    assert!(
        ran > 1.0 && ran < 30.0,
        "the agent stopped when told: ran {ran}: {st}"
    );
    assert_eq!(
        u(&st["requests"]["failed"]),
        0,
        "nothing was sent to a simulator that had exited: {st}"
    );
}
