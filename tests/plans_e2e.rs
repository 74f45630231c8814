//! Plans end to end: step attribution, the capacity search against a known knee, rate changes
//! while running, thresholds and the exit codes, and bad plans refused before anything is sent.

mod util;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use util::*;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

const DETERMINISTIC: &str =
    "[target.sim]\npreset = \"deterministic\"\nttft = \"50ms\"\nitl = \"10ms\"\n";

#[test]
fn a_request_belongs_to_the_step_that_sent_it() {
    // Each request takes about 1.5 s (150 tokens, 10 ms apart), longer than a step: the first
    // step's requests finish during the second and still count for the first.
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        "name = \"attr\"\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 150\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nsteps = {{ qps = [10, 20], each = \"1s\" }}\n"
    ));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = ws.summary();
    let st = s["stages"].as_array().unwrap();
    assert_eq!(
        (
            u(&st[0]["requests"]["sent"]),
            u(&st[0]["requests"]["completed"])
        ),
        (10, 10)
    );
    assert_eq!(
        (
            u(&st[1]["requests"]["sent"]),
            u(&st[1]["requests"]["completed"])
        ),
        (20, 20)
    );
    assert_eq!(u(&st[0]["tokens"]["output_total"]), 1500);
}

#[test]
fn capacity_search_finds_the_known_knee() {
    // A simulated engine of 8 sequences, a constant 10 ms step and instant prefill: a request of
    // 20 tokens holds a slot for 200 ms, so the engine serves 8 / 0.2 = 40 requests/s. Constant
    // arrivals below that never queue (E2E about 200 ms); above it the queue grows and E2E passes
    // 400 ms within the probe. The search must land within its 5% of 40, allowing one more 5%
    // for the few seconds a probe lasts (a small overload needs time to show).
    let ws = Workspace::new();
    let path = ws.write_plan(
        "name = \"knee\"\n[target]\ntimeout = \"30s\"\n[target.sim]\npreset = \"llama-3.1-8b-h100\"\n[target.sim.engine]\nmax_num_seqs = 8\nstep_base = \"10ms\"\ncontext_token_cost = \"0s\"\nprefill_tokens_per_s = 100000000\n[workload]\ninput_tokens = 16\noutput_tokens = 20\n[slo]\ne2e_p99 = \"400ms\"\n[[stage]]\nname = \"capacity\"\narrival = \"constant\"\nsearch = { qps = [10, 160], each = \"4s\", precision = \"5%\" }\n",
    );
    let out = ws.run(&path, &[]);
    let s = ws.summary();
    // The search found its answer: its failing probes are evidence, so the run passed (issue 18:
    // it used to exit 2, like a failed threshold).
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s["slo_pass"], true, "{s}");
    let probe = &s["probes"][0];
    let best = probe["max_passing"]
        .as_f64()
        .unwrap_or_else(|| panic!("{probe}"));
    assert!((36.0..=44.0).contains(&best), "found {best}: {probe}");
    assert_eq!(s["analysis"]["max_qps_within_slo"].as_f64(), Some(best));
}

#[test]
fn the_rate_changes_while_a_step_runs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let control = format!("127.0.0.1:{port}");
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        "name = \"rate\"\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 4\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nqps = 10\nduration = \"8s\"\n"
    ));
    let child = ws.spawn(&path, &["--control-listen", &control]);
    // Wait for the run to be under way, then triple the rate.
    assert!(
        ws.wait_for_first_interval(Duration::from_secs(30)),
        "the run started"
    );
    let set = Command::new(controller_bin())
        .args(["set-qps", "--control", &control, "30"])
        .output()
        .expect("set-qps");
    assert!(set.status.success(), "{}", text(&set));
    assert!(
        String::from_utf8_lossy(&set.stdout).contains("30.00 requests/s"),
        "{}",
        text(&set)
    );
    let out = child.wait_with_output().expect("controller exits");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = ws.summary();
    let changes = s["rate_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{s}");
    assert_eq!(s["stages"][0]["ended"], "rate_changed", "{s}");
    assert_eq!(changes[0]["qps"].as_f64(), Some(30.0));
    let at = changes[0]["elapsed_s"].as_f64().unwrap();
    // 10/s before the change and 30/s after it, within a few arrivals.
    let expected = 10.0 * at + 30.0 * (8.0 - at);
    let sent = u(&s["stages"][0]["requests"]["sent"]) as f64;
    assert!(
        (sent - expected).abs() <= 6.0,
        "sent {sent}, expected about {expected} (change at {at}s)"
    );
    let rows = read_csv(&ws.results_dir().join("timeseries.csv"));
    assert!(
        rows.iter()
            .any(|r| r["offered_qps"] == "30.0" || r["offered_qps"] == "30"),
        "marked on the timeline: {rows:?}"
    );
}

#[test]
fn a_failed_threshold_exits_2_and_can_abort_the_run() {
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        "name = \"abort\"\nabort_on_slo_fail = true\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 4\n[slo]\nerror_rate = \"1%\"\n[[stage]]\nname = \"first\"\nqps = 5\nduration = \"2s\"\nslo = {{ ttft_p50 = \"1ms\" }}\n[[stage]]\nname = \"never\"\nqps = 5\nduration = \"2s\"\n"
    ));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let s = ws.summary();
    assert_eq!(s["status"], "aborted");
    assert_eq!(
        s["stages"].as_array().unwrap().len(),
        1,
        "the second stage never ran"
    );
    let checks = s["stages"][0]["slo"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec!["error_rate", "ttft_p50"],
        "the plan's and the stage's thresholds"
    );
    assert_eq!(s["slo_pass"], false);
}

#[test]
fn a_run_where_every_request_fails_is_not_evidence() {
    let ws = Workspace::new();
    let path = ws.write_plan(
        "name = \"down\"\n[target.sim]\npreset = \"deterministic\"\n[[target.sim.faults]]\nkind = \"http_500\"\nrate = 1.0\n[workload]\ninput_tokens = 16\noutput_tokens = 4\n[[stage]]\nname = \"s\"\nqps = 5\nduration = \"1s\"\n",
    );
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let s = ws.summary();
    assert!(u(&s["stages"][0]["errors"]["http_5xx"]) > 0);
    assert!(
        s["analysis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "all-failed")
    );
}

#[test]
fn bad_plans_are_refused_before_anything_is_sent() {
    let ws = Workspace::new();
    std::fs::write(
        ws.dir.path().join("bad.csv"),
        "timestamp,input_tokens,output_tokens\n0,10,10\n0.5,oops,10\n",
    )
    .unwrap();
    let cases = [
        (
            "[slo]\ne2e_p99 = \"1s\"\n[[stage]]\nname = \"a\"\nsearch = { qps = [100, 10], each = \"1s\" }\n",
            "stage[0].search.qps",
            "reversed",
        ),
        (
            "[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\nslo = { latency_p99 = \"1s\" }\n",
            "stage[0].slo.latency_p99",
            "unknown SLO metric",
        ),
        (
            "[[stage]]\nname = \"a\"\ntrace = { file = \"bad.csv\" }\n",
            "bad.csv:3",
            "oops",
        ),
        (
            "[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n",
            "stage[1].name",
            "already the name",
        ),
        (
            "[[stage]]\nname = \"a\"\nsweep = { input_tokens = [], each = \"1s\" }\nqps = 1\n",
            "stage[0].sweep",
            "empty",
        ),
    ];
    for (body, where_, what) in cases {
        let path = ws.write_plan(&format!("name = \"bad\"\n{body}"));
        let out = ws.run(&path, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            err.contains(where_) && err.contains(what),
            "{where_} / {what} in {err}"
        );
        assert!(
            !ws.out().exists(),
            "nothing was started or written for {where_}"
        );
    }
}
