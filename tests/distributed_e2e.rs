//! Distributed agents, end to end: agents started on their own (as on other hosts) with a shared
//! token, TLS and allow-lists; load split by weight; an agent lost mid-stage and back for the
//! next; a controller killed while agents send; clock offsets injected and estimated.
// std's Instant on purpose: it waits on real processes, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

mod util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

const TOKEN: &str = "test-token-0123456789abcdef";

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs")
}

fn cert(name: &str) -> String {
    certs().join(name).display().to_string()
}

/// Starts an agent on `listen` with `args`; returns it with the address it printed.
fn start_agent(listen: &str, args: &[&str]) -> (Guard, SocketAddr) {
    let mut child = Command::new(agent_bin())
        .args(["--listen", listen])
        .args(args)
        .env_remove("STAMPEDE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the agent");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = stampede_common::handshake::parse_listening_line(&line)
        .unwrap_or_else(|| panic!("the agent printed {line:?}"));
    (Guard(child), addr)
}

/// A token file in `ws`.
fn token_file(ws: &Workspace) -> String {
    let path = ws.dir.path().join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write the token");
    path.display().to_string()
}

/// A deterministic simulator of its own, so that several runs and agents can share it.
fn start_sim() -> (Guard, SocketAddr) {
    start_listening(
        sim_bin(),
        &[
            "--preset",
            "deterministic",
            "--ttft",
            "20ms",
            "--itl",
            "5ms",
        ],
    )
}

fn plan(sim: SocketAddr, head: &str, stages: &str) -> String {
    format!(
        "name = \"dist\"\ninterval = \"1s\"\ngrace = \"3s\"\n{head}\n[monitor]\n# Parallel tests on a small machine delay sends; no test here is about that.\nclient_lag_limit = \"1s\"\n\n[target]\nbase_url = \"http://{sim}/v1\"\n\n[workload]\ninput_tokens = 32\noutput_tokens = 4\n\n{stages}"
    )
}

/// `[[agents]]` entries for `addrs`.
fn agents_head(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("[[agents]]\naddr = \"{a}\"\n"))
        .collect()
}

fn run_args<'a>(token: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--token-file", token];
    args.extend_from_slice(extra);
    args
}

#[test]
fn three_weighted_agents_share_a_stage_and_merge_to_the_sum_of_their_parts() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (_a, a) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "a"]);
    // b's host clock is 1.5 s behind: its share must still start with the others'.
    let (_b, b) = start_agent(
        "127.0.0.1:0",
        &["--token-file", &token, "--id", "b", "--clock-skew-ms=-1500"],
    );
    let (_c, c) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "c"]);
    let head = format!(
        "[[agents]]\naddr = \"{a}\"\nweight = 2\n[[agents]]\naddr = \"{b}\"\nweight = 1\n[[agents]]\naddr = \"dns:localhost:{}\"\nweight = 1\n",
        c.port()
    );
    let path = ws.write_plan(&plan(
        sim,
        &head,
        "[[stage]]\nname = \"shared\"\narrival = \"constant\"\nqps = 40\nduration = \"3s\"\n",
    ));
    // When the simulator receives the first and the last request: a share started late (b's
    // skew uncorrected) would stretch the stage by 1.5 s.
    let mut child = ws.spawn(&path, &run_args(&token, &[]));
    let (mut first, mut last, mut seen) = (None, None, 0.0);
    while child.try_wait().expect("poll the controller").is_none() {
        let n = prom_sum(&http_get(sim, "/metrics"), "stampede_sim_requests_total");
        if n > seen {
            seen = n;
            first.get_or_insert_with(Instant::now);
            last = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = child.wait_with_output().expect("the controller's output");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(seen, 120.0);
    let span = last.unwrap() - first.unwrap();
    assert!(
        span > Duration::from_millis(2500) && span < Duration::from_millis(3700),
        "the agents' requests spread over {span:?}, not the stage's 3 s"
    );
    let s = ws.summary();

    // Clock offsets: b's injected -1.5 s is found within the stated uncertainty.
    let agents = s["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 3);
    for agent in agents {
        let clock = &agent["clock"];
        let expected = if agent["id"] == "b" {
            -1_500_000.0
        } else {
            0.0
        };
        let (offset, uncertainty) = (f(&clock["offset_us"]), f(&clock["uncertainty_us"]));
        assert!(
            (offset - expected).abs() <= uncertainty + 200.0,
            "agent {}: offset {offset} µs ± {uncertainty}, expected {expected}",
            agent["id"]
        );
    }
    assert_eq!(
        agents.iter().map(|a| f(&a["weight"])).collect::<Vec<_>>(),
        [2.0, 1.0, 1.0]
    );

    // The load is split 2:1:1, every agent sent its share on time, and the merge adds up.
    let stage = &s["stages"][0];
    let shares = stage["agents"].as_array().expect("shares");
    let offered: Vec<f64> = shares.iter().map(|a| f(&a["offered_qps"])).collect();
    assert_eq!(offered, [20.0, 10.0, 10.0]);
    for share in shares {
        let want = f(&share["offered_qps"]) * 3.0;
        let sent = f(&share["sent"]);
        assert!(
            (sent - want).abs() <= 1.0,
            "agent {} sent {sent}, its share is {want}",
            share["agent"]
        );
        assert!((f(&share["achieved_qps"]) - f(&share["offered_qps"])).abs() < 0.5);
        assert_eq!(share["end"], "done");
        assert_eq!(share["reported"]["sent"], share["sent"]);
    }
    let sum: u64 = shares.iter().map(|a| u(&a["completed"])).sum();
    assert_eq!(u(&stage["requests"]["completed"]), sum);
}

/// The run's `agent_lost` finding.
fn agent_lost_finding(summary: &Value) -> &Value {
    summary["analysis"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "agent_lost")
        .expect("an agent_lost finding")
}

/// A free port on loopback, for an agent that must come back at the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn an_agent_killed_mid_stage_is_lost_its_data_kept_and_it_rejoins_the_next_stage() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    // Slow answers, so that the killed agent has requests in flight when it goes.
    let (_sim, sim) = start_listening(
        sim_bin(),
        &[
            "--preset",
            "deterministic",
            "--ttft",
            "1500ms",
            "--itl",
            "5ms",
        ],
    );
    let (_a, a) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "a"]);
    let port = free_port();
    let b_listen = format!("127.0.0.1:{port}");
    let (mut b_proc, b) = start_agent(&b_listen, &["--token-file", &token, "--id", "b"]);
    let head = agents_head(&[a, b]);
    let path = ws.write_plan(&plan(
        sim,
        &head,
        "[[stage]]\nname = \"first\"\narrival = \"constant\"\nqps = 20\nduration = \"8s\"\n\n[[stage]]\nname = \"second\"\narrival = \"constant\"\nqps = 20\nduration = \"3s\"\n",
    ));
    let child = ws.spawn(&path, &run_args(&token, &[]));
    assert!(ws.wait_for_first_interval(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no goodbye, its stream just breaks.
    b_proc.0.kill().expect("SIGKILL the agent");
    let _ = b_proc.0.wait();
    // Back at the same address well before the second stage.
    let (_b_again, _) = start_agent(&b_listen, &["--token-file", &token, "--id", "b"]);
    let out = child.wait_with_output().expect("the controller's output");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rejoined"), "{stdout}");
    let s = ws.summary();
    assert_eq!(s["status"], "completed");

    // First stage: b's share ended as lost, with what it reported before kept.
    let first = &s["stages"][0];
    let b_first = &first["agents"][1];
    assert_eq!(b_first["agent"], "b");
    assert_ne!(b_first["end"], "done", "{b_first}");
    assert!(
        u(&b_first["sent"]) > 0,
        "b's data before the loss was dropped"
    );
    assert!(
        u(&b_first["sent"]) < 80,
        "b was lost but sent its whole share: {b_first}"
    );
    assert_eq!(u(&first["agents"][0]["sent"]), 80);
    // Its requests in flight went with it: counted as cancelled, so nothing is unaccounted for.
    assert!(u(&b_first["cancelled"]) > 0, "{b_first}");
    assert!(
        b_first["end"]
            .as_str()
            .unwrap()
            .contains("in flight are counted as cancelled"),
        "{b_first}"
    );
    let req = &first["requests"];
    assert_eq!(
        u(&req["sent"]),
        u(&req["completed"]) + u(&req["failed"]) + u(&req["cancelled"]),
        "{req}"
    );
    // Second stage: b is back and both share the load.
    let second = &s["stages"][1];
    for share in second["agents"].as_array().expect("shares") {
        assert_eq!(share["end"], "done", "{share}");
        assert_eq!(u(&share["sent"]), 30, "{share}");
    }
    let events: Vec<(&str, &str)> = s["agent_events"]
        .as_array()
        .expect("agent_events")
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["step"].as_str().unwrap()))
        .collect();
    assert_eq!(events, [("lost", "first"), ("rejoined", "second")]);
    let finding = agent_lost_finding(&s);
    assert!(finding["message"].as_str().unwrap().contains("rejoined"));
    assert_eq!(s["alerts"]["agent_lost"], 1);
}

#[test]
fn with_on_agent_lost_abort_a_lost_agent_stops_the_run() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (_a, a) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "a"]);
    let (mut b_proc, b) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "b"]);
    let head = format!("on_agent_lost = \"abort\"\n{}", agents_head(&[a, b]));
    let path = ws.write_plan(&plan(
        sim,
        &head,
        "[[stage]]\nname = \"long\"\nqps = 10\nduration = \"60s\"\n",
    ));
    let child = ws.spawn(&path, &run_args(&token, &[]));
    assert!(ws.wait_for_first_interval(Duration::from_secs(30)));
    b_proc.0.kill().expect("SIGKILL the agent");
    let out = child.wait_with_output().expect("the controller's output");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("on_agent_lost"));
    let s = ws.summary();
    assert_eq!(s["status"], "aborted");
    let finding = agent_lost_finding(&s);
    assert_eq!(finding["severity"], "critical");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("on_agent_lost")
    );
    assert!(f(&s["stages"][0]["duration_s"]) > 0.0);
}

#[test]
fn a_killed_controller_leaves_no_remote_agent_sending_after_5_s() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (mut agent, a) = start_agent("127.0.0.1:0", &["--token-file", &token]);
    let head = agents_head(&[a]);
    let path = ws.write_plan(&plan(
        sim,
        &head,
        "[[stage]]\nname = \"long\"\nqps = 20\nduration = \"120s\"\n",
    ));
    let mut child = ws.spawn(&path, &run_args(&token, &[]));
    assert!(ws.wait_for_first_interval(Duration::from_secs(30)));
    let requests = || prom_sum(&http_get(sim, "/metrics"), "stampede_sim_requests_total");
    assert!(requests() > 0.0);
    child.kill().expect("SIGKILL the controller");
    let _ = child.wait();
    std::thread::sleep(Duration::from_secs(5));
    let after_5s = requests();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        requests(),
        after_5s,
        "the agent still sends 5 s after its controller died"
    );
    // The agent itself lives on, ready for the next controller.
    assert!(agent.0.try_wait().expect("poll the agent").is_none());
}

#[test]
fn an_agent_refuses_calls_without_its_token_and_to_listen_openly_without_one() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (_agent, a) = start_agent("127.0.0.1:0", &["--token-file", &token]);
    let path = ws.write_plan(&plan(
        sim,
        &agents_head(&[a]),
        "[[stage]]\nname = \"s\"\nqps = 5\nduration = \"1s\"\n",
    ));
    let out = Command::new(controller_bin())
        .args(["run", path.to_str().unwrap(), "--plain", "--out"])
        .arg(ws.out())
        .env_remove("STAMPEDE_TOKEN")
        .output()
        .expect("run the controller");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("requires a token"), "{}", text(&out));

    let wrong = ws.dir.path().join("wrong");
    std::fs::write(&wrong, "another-token-0123456789").unwrap();
    let out = ws.run(&path, &["--token-file", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not match"), "{}", text(&out));
    // Neither token shows anywhere.
    assert!(!text(&out).contains(TOKEN) && !text(&out).contains("another-token"));

    // The token from the environment works like the file.
    let out = Command::new(controller_bin())
        .args(["run", path.to_str().unwrap(), "--plain", "--out"])
        .arg(ws.out())
        .env("STAMPEDE_TOKEN", TOKEN)
        .output()
        .expect("run the controller");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Listening where other hosts reach it needs a token.
    let out = Command::new(agent_bin())
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("STAMPEDE_TOKEN")
        .output()
        .expect("start the agent");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--token-file"), "{}", text(&out));
}

#[test]
fn an_agent_refuses_a_target_off_its_allow_list_before_any_stage() {
    let ws = Workspace::new();
    let (_sim, sim) = start_sim();
    let (_agent, a) = start_agent("127.0.0.1:0", &["--allow-target", "vllm.internal:8000"]);
    let path = ws.write_plan(&plan(
        sim,
        "",
        "[[stage]]\nname = \"s\"\nqps = 5\nduration = \"1s\"\n",
    ));
    let out = ws.run(&path, &["--agent", &a.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("allow-list") && t.contains(&sim.to_string()),
        "{t}"
    );
    assert_eq!(
        prom_sum(&http_get(sim, "/metrics"), "stampede_sim_requests_total"),
        0.0,
        "a request reached a target off the allow-list"
    );
}

#[test]
fn mutual_tls_admits_the_controller_with_the_right_certificate_only() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (_agent, a) = start_agent(
        "127.0.0.1:0",
        &[
            "--token-file",
            &token,
            "--tls-cert",
            &cert("agent.pem"),
            "--tls-key",
            &cert("agent.key"),
            "--tls-client-ca",
            &cert("ca.pem"),
        ],
    );
    let path = ws.write_plan(&plan(
        sim,
        "",
        "[[stage]]\nname = \"s\"\nqps = 5\nduration = \"1s\"\n",
    ));
    let addr = format!("localhost:{}", a.port());
    let (ca, ctl_cert, ctl_key) = (
        cert("ca.pem"),
        cert("controller.pem"),
        cert("controller.key"),
    );
    let tls = |cert: &str, key: &str| {
        let mut args = vec![
            "--token-file",
            token.as_str(),
            "--agent",
            addr.as_str(),
            "--tls-ca",
            ca.as_str(),
        ];
        if !cert.is_empty() {
            args.extend(["--tls-cert", cert, "--tls-key", key]);
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ws.run(&path, &args)
    };
    let out = run(tls(&ctl_cert, &ctl_key));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No client certificate, or one another CA signed: refused.
    let out = run(tls("", ""));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(tls(&cert("stranger.pem"), &cert("stranger.key")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Plain h2 to a TLS agent fails too, with a hint.
    let out = ws.run(&path, &["--token-file", &token, "--agent", &addr]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_frozen_agent_is_marked_lost_within_seconds_and_the_run_completes() {
    let ws = Workspace::new();
    let token = token_file(&ws);
    let (_sim, sim) = start_sim();
    let (_a, a) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "a"]);
    let (b_proc, b) = start_agent("127.0.0.1:0", &["--token-file", &token, "--id", "b"]);
    let head = agents_head(&[a, b]);
    let path = ws.write_plan(&plan(
        sim,
        &head,
        "[[stage]]\nname = \"s\"\narrival = \"constant\"\nqps = 10\nduration = \"15s\"\n",
    ));
    let child = ws.spawn(&path, &run_args(&token, &[]));
    assert!(ws.wait_for_first_interval(Duration::from_secs(30)));
    // SIGSTOP: its connections stay open, it just says nothing more.
    let pid = b_proc.0.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let frozen_at = wall_clock_s();
    signal("-STOP");
    let out = child.wait_with_output().expect("the controller's output");
    signal("-CONT");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = ws.summary();
    let lost = &s["agent_events"][0];
    assert_eq!(
        (&lost["agent"], &lost["event"]),
        (&"b".into(), &"lost".into())
    );
    // When it was declared lost, on the controller's clock, against when it froze.
    let declared = rfc3339_to_s(lost["at"].as_str().expect("the event's time"));
    assert!(
        declared - frozen_at < 8.0,
        "a frozen agent was declared lost {:.1}s after it froze",
        declared - frozen_at
    );
    // The other agent's share is whole, and b's data before it froze is kept.
    assert_eq!(u(&s["stages"][0]["agents"][0]["sent"]), 75);
    assert!(u(&s["stages"][0]["agents"][1]["sent"]) > 0);
}

fn wall_clock_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z` (days from the civil calendar).
fn rfc3339_to_s(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().expect("a number in the time");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d - 719_469;
    let secs: f64 = t[17..t.len() - 1].parse().expect("seconds");
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60) as f64 + secs
}
