//! The live view end to end: `controller watch` attached to a running controller gets every
//! interval in order; a watcher that stops reading or vanishes does not stall the run; the
//! run's alerts reach alerts.jsonl and summary.json; `--metrics-listen` serves Prometheus text.
// std's Instant on purpose: it waits on real processes, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stampede_controller::live::plain::{IntervalFigures, parse_interval_line};
use util::*;

const DETERMINISTIC: &str =
    "[target.sim]\npreset = \"deterministic\"\nttft = \"50ms\"\nitl = \"10ms\"\n";

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A controller running a plan in plain mode, its stdout read line by line on a thread.
struct Running {
    child: Guard,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(ws: &Workspace, plan: &str, args: &[&str]) -> Running {
        let path = ws.write_plan(plan);
        let mut child = Command::new(controller_bin())
            .arg("run")
            .arg(&path)
            .arg("--plain")
            .arg("--out")
            .arg(ws.out())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the controller");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child: Guard(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`.
    fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line starting with {prefix:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the controller to exit; returns its exit code and every line it printed.
    fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                self.seen.extend(self.lines.iter());
                return (status.code(), self.seen);
            }
            assert!(
                start.elapsed() < limit,
                "the controller did not finish within {limit:?}; it printed:\n{}",
                self.seen.join("\n")
            );
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn intervals(lines: &[String]) -> Vec<IntervalFigures> {
    lines
        .iter()
        .filter_map(|l| parse_interval_line(l))
        .collect()
}

#[test]
fn a_watcher_gets_every_interval_in_order() {
    let ws = Workspace::new();
    let control = free_addr();
    let plan = format!(
        "name = \"watched\"\ninterval = \"500ms\"\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 4\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nsteps = {{ qps = [5, 10], each = \"2s\" }}\n"
    );
    let mut run = Running::start(&ws, &plan, &["--control-listen", &control]);
    run.wait_for_line("control:", Duration::from_secs(60));
    let watcher = Command::new(controller_bin())
        .args(["watch", "--plain", &control])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the watcher");
    let (code, lines) = run.finish(Duration::from_secs(90));
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    let watched = watcher.wait_with_output().expect("the watcher exits");
    assert_eq!(watched.status.code(), Some(0), "{}", text(&watched));
    let watched_lines: Vec<String> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(str::to_string)
        .collect();

    let printed = intervals(&lines);
    let received = intervals(&watched_lines);
    let rows = read_csv(&ws.results_dir().join("timeseries.csv"));
    assert!(
        printed.len() >= 8,
        "two 2 s steps of 500 ms intervals: {printed:?}"
    );
    assert_eq!(printed.len(), rows.len(), "one line per timeseries row");
    assert_eq!(
        received,
        printed,
        "the watcher got every interval, in order\n--- watcher\n{}",
        watched_lines.join("\n")
    );
    let out = watched_lines.join("\n");
    assert!(out.contains("step s/qps=5 started"), "{out}");
    assert!(out.contains("step s/qps=10 finished"), "{out}");
    assert!(out.contains("run completed"), "{out}");
    // The final table has both steps.
    assert!(
        watched_lines
            .iter()
            .rev()
            .take(3)
            .any(|l| l.starts_with("s/qps=10")),
        "{out}"
    );
}

#[test]
fn a_stopped_or_vanished_watcher_does_not_stall_the_run() {
    let ws = Workspace::new();
    let control = free_addr();
    let metrics = free_addr();
    let plan = format!(
        "name = \"stalled\"\ninterval = \"200ms\"\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 4\n[slo]\ne2e_p99 = \"20ms\"\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nqps = 20\nduration = \"4s\"\n"
    );
    let mut run = Running::start(
        &ws,
        &plan,
        &["--control-listen", &control, "--metrics-listen", &metrics],
    );
    run.wait_for_line("control:", Duration::from_secs(60));
    let watch = || {
        Command::new(controller_bin())
            .args(["watch", "--plain", &control])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a watcher")
    };
    // One watcher is stopped (it never reads again), one is killed, one is a reader whose
    // output nobody reads.
    let stopped = Guard(watch());
    let vanished = Guard(watch());
    let _unread = Guard(watch());
    std::thread::sleep(Duration::from_millis(300));
    let kill = |sig: &str, pid: u32| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    kill("-STOP", stopped.0.id());
    kill("-KILL", vanished.0.id());

    // Prometheus text while the run goes.
    run.wait_for_line("[", Duration::from_secs(30));
    let scrape = http_get(&metrics, "/metrics");
    let started = Instant::now();
    let (code, lines) = run.finish(Duration::from_secs(60));
    let took = started.elapsed();
    // The e2e threshold of 20 ms fails against a 50 ms TTFT: exit 2, and an alert.
    assert_eq!(code, Some(2), "{}", lines.join("\n"));
    assert!(
        took < Duration::from_secs(15),
        "the run took {took:?} after its first interval"
    );
    assert!(
        scrape.contains("stampede_requests_total{step=\"s\",outcome=\"sent\"}"),
        "{scrape}"
    );
    assert!(
        scrape.contains("# TYPE stampede_latency_ms gauge"),
        "{scrape}"
    );

    let rows = read_csv(&ws.results_dir().join("timeseries.csv"));
    assert!(
        rows.len() >= 18,
        "every interval was merged: {}",
        rows.len()
    );
    let out = lines.join("\n");
    assert!(out.contains("ALERT warning slo_breach s: e2e_p99"), "{out}");
    let jsonl =
        std::fs::read_to_string(ws.results_dir().join("alerts.jsonl")).expect("alerts.jsonl");
    let first: serde_json::Value =
        serde_json::from_str(jsonl.lines().next().expect("an alert")).expect("a JSON line");
    assert_eq!(first["kind"], "slo_breach");
    assert_eq!(first["subject"], "e2e_p99");
    let s = ws.summary();
    assert!(
        s["alerts"]["slo_breach"].as_u64() >= Some(1),
        "{}",
        s["alerts"]
    );
    assert_eq!(
        s["alerts"]["agent_lost"].as_u64(),
        Some(0),
        "{}",
        s["alerts"]
    );
}

/// A plain HTTP/1.1 GET on loopback; returns the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn a_paused_step_sends_nothing_until_resumed() {
    let ws = Workspace::new();
    let control = free_addr();
    let plan = format!(
        "name = \"paused\"\ninterval = \"500ms\"\n{DETERMINISTIC}[workload]\ninput_tokens = 16\noutput_tokens = 4\n[[stage]]\nname = \"s\"\narrival = \"constant\"\nqps = 10\nduration = \"6s\"\n"
    );
    let mut run = Running::start(&ws, &plan, &["--control-listen", &control]);
    run.wait_for_line("[", Duration::from_secs(60));
    let set = |value: &str| {
        let out = Command::new(controller_bin())
            .args(["set-qps", "--control", &control, value])
            .output()
            .expect("set-qps");
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(set("pause").contains("0.00x"), "paused");
    std::thread::sleep(Duration::from_secs(2));
    assert!(set("resume").contains("1.00x"), "resumed");
    let (code, lines) = run.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    let s = ws.summary();
    let changes = s["rate_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{s}");
    assert_eq!(changes[0]["scale"].as_f64(), Some(0.0));
    let paused_s =
        changes[1]["elapsed_s"].as_f64().unwrap() - changes[0]["elapsed_s"].as_f64().unwrap();
    assert!(paused_s >= 1.5, "paused for {paused_s}s");
    let sent = s["stages"][0]["requests"]["sent"].as_f64().unwrap();
    let expected = 10.0 * (6.0 - paused_s);
    assert!(
        (sent - expected).abs() <= 5.0,
        "sent {sent}, expected about {expected} with a pause of {paused_s}s"
    );
    // The pause is on the timeline: offered 0, nothing sent, and PAUSED on the plain line.
    let rows = read_csv(&ws.results_dir().join("timeseries.csv"));
    assert!(
        rows.iter()
            .any(|r| r["offered_qps"] == "0.0" || r["offered_qps"] == "0"),
        "{rows:?}"
    );
    assert!(
        intervals(&lines)
            .iter()
            .any(|f| f.paused && f.sent_qps == 0.0),
        "{}",
        lines.join("\n")
    );
}
