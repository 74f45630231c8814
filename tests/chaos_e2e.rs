//! Chaos: every simulator fault at a high rate, then an outage, for about a minute. The run must
//! end cleanly, every request must be accounted for, every failure must carry the class of the
//! fault that caused it (checked against the simulator's own count of the faults it injected),
//! and the recovery after the outage must be measured.

mod util;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::Value;
use util::*;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The simulator's `stampede_sim_faults_injected_total` by kind.
fn injected(addr: SocketAddr) -> HashMap<String, u64> {
    let text = http_get(addr, "/metrics");
    (prom_samples(&text).into_iter())
        .filter(|s| s.name == "stampede_sim_faults_injected_total")
        .map(|s| {
            let kind = (s.labels.into_iter())
                .find_map(|(k, v)| (k == "kind").then_some(v))
                .expect("a kind label");
            (kind, s.value as u64)
        })
        .collect()
}

#[test]
fn every_fault_at_a_high_rate_is_counted_classified_and_recovered_from() {
    // Rate faults for the first 30 s of the simulator's life (the first stage), then nothing,
    // then a 5 s outage inside the second stage.
    let window = "at=0s,duration=30s";
    let faults = [
        format!("http_429:rate=0.06,retry_after=1s,{window}"),
        format!("http_500:rate=0.05,{window}"),
        format!("http_503:rate=0.05,retry_after=2s,{window}"),
        format!("reset_before_headers:rate=0.05,{window}"),
        format!("reset_after_headers:rate=0.05,{window}"),
        format!("stall:rate=0.05,after_tokens=2,stall=3s,{window}"),
        format!("disconnect:rate=0.05,{window}"),
        format!("malformed_sse:rate=0.05,{window}"),
        format!("empty:rate=0.05,{window}"),
        "outage:at=38s,duration=5s".to_string(),
    ];
    let mut args = vec!["--ttft", "20ms", "--itl", "10ms", "--seed", "11"];
    for f in &faults {
        args.extend(["--fault", f.as_str()]);
    }
    let (_sim, addr) = start_listening(sim_bin(), &args);
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        r#"name = "chaos"
grace = "5s"

[target]
base_url = "http://{addr}/v1"
idle_timeout = "1s"
first_token_timeout = "5s"
timeout = "10s"

[workload]
input_tokens = 16
output_tokens = 12

[[stage]]
name = "faults"
arrival = "poisson"
qps = 12
duration = "30s"

[[stage]]
name = "outage"
arrival = "constant"
qps = 10
duration = "20s"
"#
    ));
    let out = ws.run(&path, &[]);
    let log = text(&out);
    assert!(!log.contains("panicked"), "{log}");
    // Failures are data: the run is valid evidence with an exit code for its SLOs (none here).
    assert_eq!(out.status.code(), Some(0), "{log}");
    let summary = ws.summary();
    let stages = summary["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2, "{summary}");

    // Exact accounting, per stage and class.
    let mut errors: HashMap<String, u64> = HashMap::new();
    for st in stages {
        let r = &st["requests"];
        let (sent, completed, failed) = (u(&r["sent"]), u(&r["completed"]), u(&r["failed"]));
        let cancelled = u(&r["cancelled"]);
        assert_eq!(sent, completed + failed + cancelled, "{}", st["name"]);
        assert_eq!(cancelled, 0, "grace covers every stall: {st}");
        let by_class: u64 = st["errors"]
            .as_object()
            .expect("errors")
            .iter()
            .filter(|(k, _)| *k != "cancelled")
            .map(|(_, v)| u(v))
            .sum();
        assert_eq!(by_class, failed, "per class sums to failed: {st}");
        for (k, v) in st["errors"].as_object().expect("errors") {
            *errors.entry(k.clone()).or_default() += u(v);
        }
    }
    let findings = summary["analysis"]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        !findings.iter().any(|f| f["code"] == "accounting"),
        "{findings:?}"
    );

    // requests.csv agrees with the summary, row by row.
    let rows = read_csv(&ws.results_dir().join("requests.csv"));
    let sent: u64 = stages.iter().map(|s| u(&s["requests"]["sent"])).sum();
    assert_eq!(rows.len() as u64, sent);
    let mut csv_errors: HashMap<String, u64> = HashMap::new();
    for r in &rows {
        if !r["error"].is_empty() {
            *csv_errors.entry(r["error"].clone()).or_default() += 1;
        }
    }
    let nonzero = |m: &HashMap<String, u64>| -> HashMap<String, u64> {
        m.iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    assert_eq!(nonzero(&csv_errors), nonzero(&errors));

    // Every fault classified as the fault it was.
    let inj = injected(addr);
    let get = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    eprintln!("injected {inj:?}\nerrors {errors:?}");
    for kind in [
        "http_429",
        "http_500",
        "http_503",
        "reset_before_headers",
        "reset_after_headers",
        "stall",
        "disconnect",
        "malformed_sse",
        "empty",
    ] {
        assert!(get(&inj, kind) >= 3, "{kind} was injected: {inj:?}");
    }
    assert_eq!(get(&errors, "http_429"), get(&inj, "http_429"));
    assert_eq!(
        get(&errors, "http_5xx"),
        get(&inj, "http_500") + get(&inj, "http_503")
    );
    assert_eq!(get(&errors, "timeout_idle"), get(&inj, "stall"));
    assert_eq!(get(&errors, "malformed"), get(&inj, "malformed_sse"));
    assert_eq!(get(&errors, "empty"), get(&inj, "empty"));
    for class in ["timeout_first_token", "timeout_total", "http_4xx", "short"] {
        assert_eq!(get(&errors, class), 0, "{class}: {errors:?}");
    }
    // Resets and disconnects break the stream; the outage adds about 10/s for 5 s more.
    let broken = get(&errors, "stream_broken") + get(&errors, "connect");
    let cut = get(&inj, "reset_before_headers")
        + get(&inj, "reset_after_headers")
        + get(&inj, "disconnect");
    assert!(broken >= cut, "broken {broken} < injected {cut}");
    let outage = broken - cut;
    assert!((30..=70).contains(&outage), "outage failures {outage}");

    // The outage's recovery is measured.
    let rec = &stages[1]["recovery"];
    assert_eq!(rec["recovered"], true, "{rec}");
    let ttr = rec["time_to_recover_s"]
        .as_f64()
        .expect("time_to_recover_s");
    assert!((3.0..=9.0).contains(&ttr), "time to recover {ttr}: {rec}");
    assert!(rec["availability"].as_f64().expect("availability") < 0.9);
}
