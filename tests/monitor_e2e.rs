//! End to end: resource and server monitoring with the real controller, agents and simulator.
//! The agents sample their host, themselves, the simulator's process and its /metrics; the
//! samples land in resources.csv, timeseries.csv and summary.json. Works with or without a GPU.

mod util;

use std::collections::HashMap;

use serde_json::Value;
use util::*;

fn plan(monitor: &str) -> String {
    format!(
        r#"name = "monitor"
interval = "1s"
grace = "2s"

[target.sim]
preset = "deterministic"
ttft = "20ms"
itl = "5ms"

[workload]
input_tokens = 32
output_tokens = 8

[monitor]
{monitor}

[[stage]]
name = "steady"
arrival = "constant"
qps = 20
duration = "3s"
"#
    )
}

fn num(row: &HashMap<String, String>, col: &str) -> Option<f64> {
    let v = row.get(col).unwrap_or_else(|| panic!("no column {col}"));
    (!v.is_empty()).then(|| {
        v.parse()
            .unwrap_or_else(|_| panic!("{col} = {v:?} is not a number"))
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The GPU line of each agent: its GPUs, or one line saying why there are none.
fn assert_gpu_lines(stdout: &str, agents: &[&str]) {
    for a in agents {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("agent {a}: GPU")))
            .collect();
        assert_eq!(lines.len(), 1, "one GPU line for {a}:\n{stdout}");
        assert!(
            lines[0].starts_with(&format!("agent {a}: GPU: not available: "))
                || lines[0].starts_with(&format!("agent {a}: GPU 0 ")),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn host_agent_target_and_server_metrics_land_in_every_results_file() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan("series = [\"stampede_sim_requests_total\"]"));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_gpu_lines(&stdout, &["local-0"]);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("server metrics: http://127.0.0.1:")
                && l.ends_with("/metrics (scraped by agent local-0)")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("target process: pid ")
                && l.ends_with("(sampled by agent local-0)")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .filter(|l| l.contains("steady") && l.contains("| cpu "))
            .count()
            >= 3,
        "CPU and GPU on the live line:\n{stdout}"
    );

    let dir = ws.results_dir();
    let rows = read_csv(&dir.join("resources.csv"));
    // A sample in the middle of each of the step's 3 intervals.
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r["agent"], "local-0");
        assert_eq!(r["role"], "load");
        assert_eq!(r["step"], "steady");
        for col in [
            "host_cpu_pct",
            "host_mem_pct",
            "agent_cpu_pct",
            "target_cpu_pct",
        ] {
            let v = num(r, col).unwrap_or_else(|| panic!("{col} empty: {r:?}"));
            assert!((0.0..=100.0).contains(&v), "{col} = {v}");
        }
        assert!(num(r, "host_mem_pct").unwrap() > 0.0);
        assert!(num(r, "agent_rss_bytes").unwrap() > 1e6, "{r:?}");
        assert!(num(r, "target_rss_bytes").unwrap() > 1e6, "{r:?}");
        assert_eq!(r["target_up"], "1");
        assert!(num(r, "server_requests_running").is_some(), "{r:?}");
        assert!(num(r, "server_kv_cache_usage_pct").is_some(), "{r:?}");
        assert!(num(r, "server_gpu_util_pct").is_some(), "{r:?}");
        assert_eq!(r["scrape_failures"], "0");
        assert_eq!(r["malformed_lines"], "0");
    }
    let elapsed: Vec<f64> = rows.iter().map(|r| num(r, "elapsed_s").unwrap()).collect();
    for (i, t) in elapsed.iter().enumerate() {
        let due = i as f64 + 0.5;
        assert!((due..due + 0.45).contains(t), "sample {i} at {t} s");
    }
    // Counters become rates from the second scrape on: 20 requests/s of 8 tokens each.
    assert_eq!(rows[0]["server_generation_tokens_per_s"], "");
    for r in &rows[1..] {
        let gen_rate = num(r, "server_generation_tokens_per_s").unwrap();
        assert!((80.0..=260.0).contains(&gen_rate), "{gen_rate} tokens/s");
        let req_rate = num(r, "stampede_sim_requests_total_per_s").unwrap();
        assert!((12.0..=28.0).contains(&req_rate), "{req_rate} requests/s");
    }

    let ts = read_csv(&dir.join("timeseries.csv"));
    let in_step: Vec<_> = ts.iter().filter(|r| r["step"] == "steady").collect();
    assert!(in_step.len() >= 3);
    for r in &in_step[..3] {
        let cpu = num(r, "client_cpu_pct").expect("client CPU");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(num(r, "server_running").is_some(), "{r:?}");
        assert!(num(r, "gpu_util_pct").is_some(), "{r:?}");
        assert_eq!(r["client_bound"], "false");
    }

    let s = ws.summary();
    let res = &s["stages"][0]["resources"];
    assert_eq!(res["samples"], 3, "{res}");
    assert_eq!(res["sampled_intervals"], 3);
    assert_eq!(res["client_bound_intervals"], 0);
    assert_eq!(res["client_cpu_limit_pct"], 85.0);
    assert!((0.0..=100.0).contains(&f(&res["cpu_pct"])));
    assert!(f(&res["mem_pct"]) > 0.0);
    for key in [
        "host_cpu_pct",
        "client_cpu_pct",
        "agent_rss_bytes",
        "target_cpu_pct",
        "server_requests_running",
        "server_gpu_util_pct",
        "server_generation_tokens_per_s",
        "stampede_sim_requests_total_per_s",
    ] {
        let mean = f(&res[key]["mean"]);
        let max = f(&res[key]["max"]);
        assert!(mean <= max + 1e-9, "{key}: {res}");
    }
    let gen_mean = f(&res["server_generation_tokens_per_s"]["mean"]);
    assert!((80.0..=260.0).contains(&gen_mean), "{gen_mean}");
    assert!(res["notes"].as_array().unwrap().is_empty(), "{res}");
    assert!(s["manifest"]["gpus"].is_array());
    assert!(
        s["analysis"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["code"] != "client-bound"),
        "{}",
        s["analysis"]
    );
}

#[test]
fn a_monitor_only_agent_samples_its_host_and_sends_nothing() {
    let (_agent, addr) = start_listening(agent_bin(), &["--id", "server-host"]);
    let ws = Workspace::new();
    let path = ws.write_plan(&plan(&format!(
        "agents = [\"{addr}\"]\ntarget_process = \"sim\"\nserver_metrics = \"off\""
    )));
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_gpu_lines(&stdout, &["local-0", "server-host"]);
    assert!(
        stdout.contains("agent server-host: monitor only"),
        "{stdout}"
    );
    assert!(
        stdout.contains("target process: \"sim\" (sampled by agent server-host)"),
        "{stdout}"
    );

    let s = ws.summary();
    let agents = s["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[1]["id"], "server-host");
    assert_eq!(agents[1]["monitor_only"], true);
    let st = &s["stages"][0];
    // The load came from the load agent alone: 20/s for 3 s.
    assert_eq!(st["requests"]["sent"], 60, "{st}");
    assert_eq!(st["agents"].as_array().unwrap().len(), 1);
    let res = &st["resources"];
    assert_eq!(res["samples"], 6, "{res}");
    assert!(f(&res["monitor_host_cpu_pct"]["mean"]) >= 0.0, "{res}");
    assert!(f(&res["target_rss_bytes"]["max"]) > 1e6, "{res}");

    let rows = read_csv(&ws.results_dir().join("resources.csv"));
    let monitor: Vec<_> = rows
        .iter()
        .filter(|r| r["agent"] == "server-host")
        .collect();
    assert_eq!(monitor.len(), 3, "{rows:?}");
    for r in &monitor {
        assert_eq!(r["role"], "monitor");
        assert!(num(r, "host_cpu_pct").is_some());
        assert_eq!(
            r["target_up"], "1",
            "the simulator runs on this host: {r:?}"
        );
        assert!(num(r, "server_requests_running").is_none());
    }
    let load: Vec<_> = rows.iter().filter(|r| r["agent"] == "local-0").collect();
    assert_eq!(load.len(), 3);
    assert!(load.iter().all(|r| r["target_up"].is_empty()));
}

#[test]
fn an_unreachable_metrics_endpoint_is_said_once_and_the_run_goes_on() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", closed.local_addr().unwrap());
    drop(closed);
    let ws = Workspace::new();
    // Two steps: the endpoint fails in both and is said once.
    let plan_text = plan(&format!("server_metrics = \"{url}\"\ngpu = \"off\"")).replace(
        "qps = 20\nduration = \"3s\"",
        "steps = { qps = [10, 20], each = \"2s\" }",
    );
    let path = ws.write_plan(&plan_text);
    let out = ws.run(&path, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("GPU"),
        "gpu = \"off\" says nothing of GPUs:\n{stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(&url) && l.contains("unreachable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(warnings[0].starts_with("agent local-0: server metrics "));
    let s = ws.summary();
    let stages = s["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let completed: u64 = stages
        .iter()
        .map(|st| st["requests"]["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(completed, 60);
    for (i, st) in stages.iter().enumerate() {
        let res = &st["resources"];
        assert!(res["scrape_failures"].as_u64().unwrap() >= 1, "{res}");
        assert_eq!(
            res["notes"].as_array().unwrap().len(),
            usize::from(i == 0),
            "{res}"
        );
        // Host and agent are still sampled.
        assert_eq!(res["samples"], 2);
        assert!(res["server_requests_running"].is_null());
    }
}
