//! Results folders built in tests: a four-step QPS test whose knee is at 8 requests/s (TTFT
//! climbs past it while TPOT stays flat), written with the same writers a run uses.

use std::path::Path;

use serde_json::json;

use stampede_common::metrics::HistogramBundle;

use crate::analysis::testing::{lat, open_step, with_slo};
use stampede_results::hlog::{HlogWriter, IntervalHistograms};
use stampede_results::kinds::StepMode;
use stampede_results::rows::{StageRow, TimeseriesRow};
use stampede_results::summary::{SCHEMA, StageSummary};

/// Steps at 4, 8, 16 and 32 requests/s of 20 s; the service holds about 10/s.
pub fn knee_steps() -> Vec<StageSummary> {
    let shape = [
        // qps, ttft p50, ttft p99, tpot p50, completed share, timeouts
        (4.0, 50.0, 80.0, 10.0, 1.0, 0),
        (8.0, 55.0, 95.0, 10.5, 1.0, 0),
        (16.0, 900.0, 2400.0, 11.0, 0.95, 0),
        (32.0, 2500.0, 5000.0, 11.0, 0.6, 40),
    ];
    shape
        .iter()
        .map(|&(q, t50, t99, tpot, share, timeouts)| {
            let mut s = open_step("steps", q, 20.0);
            let sent = s.requests.sent;
            let completed = (sent as f64 * share).round() as u64;
            s.requests.completed = completed;
            s.requests.failed = timeouts;
            s.requests.timeouts = timeouts;
            s.requests.cancelled = sent - completed - timeouts;
            if timeouts > 0 {
                s.errors.insert("timeout_first_token".into(), timeouts);
            }
            if s.requests.cancelled > 0 {
                s.errors.insert("cancelled".into(), s.requests.cancelled);
            }
            s.rates.error_rate = timeouts as f64 / sent as f64;
            s.throughput_rps = completed as f64 / 20.0;
            s.tokens.output_per_s = s.throughput_rps * 100.0;
            s.ttft_ms = lat(completed, t50, t99);
            s.tpot_ms = lat(completed, tpot, tpot * 1.2);
            s.e2e_ms = lat(completed, t50 + 99.0 * tpot, t99 + 99.0 * tpot * 1.2);
            with_slo(s, "ttft_p99", 1500.0)
        })
        .collect()
}

/// summary.json as JSON rather than a `RunSummary`, so fields added to the run's summary
/// later do not break the fixture, as they do not break reading older files.
fn summary(stages: &[StageSummary]) -> serde_json::Value {
    let mut overall = stages.last().cloned().expect("a step");
    overall.name = "overall".into();
    overall.stage = "overall".into();
    overall.mode = StepMode::Mixed;
    json!({
        "schema": SCHEMA,
        "plan": "fixture",
        "started_at": "2026-11-28T00:00:00Z",
        "finished_at": "2026-11-28T00:01:20Z",
        "status": "completed",
        "target": {
            "base_url": "http://127.0.0.1:8000/v1",
            "api": "chat",
            "model": "sim-llama",
            "stream": true,
            "simulator": true,
        },
        "agents": [{
            "id": "local-0", "addr": "127.0.0.1:7070", "host": "test", "cores": 2,
            "version": "0.1.0", "local": true,
            "clock": { "offset_us": 0, "uncertainty_us": 10, "rtt_us": 20 },
        }],
        "stages": stages,
        "overall": overall,
        "slo_pass": stages.iter().all(|s| s.slo.pass),
        "analysis": { "max_qps_within_slo": null, "findings": [] },
        "manifest": {
            "stampede_version": "0.1.0",
            "protocol_version": 1,
            "plan_hash": "0123456789abcdef",
            "plan_file": "plan.toml",
            "tokenizer": "approx-words",
        },
    })
}

/// Only summary.json.
pub fn write_summary_only(dir: &Path, stages: &[StageSummary]) {
    let json = serde_json::to_vec_pretty(&summary(stages)).expect("encode");
    std::fs::write(dir.join("summary.json"), json).expect("write summary.json");
}

/// A whole results folder: summary.json, plan.toml, stages.csv, timeseries.csv, histograms/.
/// Each step's intervals follow its summary: at most 10 completions per second, TTFT around
/// the step's p50.
pub fn write_steps_run(dir: &Path, stages: &[StageSummary]) {
    write_summary_only(dir, stages);
    std::fs::write(
        dir.join("plan.toml"),
        "name = \"fixture\"\n\n[[stage]]\nname = \"steps\"\nsteps = { qps = [4, 8, 16, 32], each = \"20s\" }\n",
    )
    .expect("plan.toml");
    let mut stages_csv = csv::Writer::from_path(dir.join("stages.csv")).expect("stages.csv");
    let mut ts = csv::Writer::from_path(dir.join("timeseries.csv")).expect("timeseries.csv");
    let mut hlogs = HlogWriter::create(dir).expect("histograms");
    let mut start = 0.0;
    for s in stages {
        stages_csv.serialize(StageRow::from(s)).expect("row");
        let qps = s.offered_qps.unwrap_or(1.0);
        let served = qps.min(10.0);
        let steps = s.duration_s as u32;
        for k in 0..steps {
            let mut b = HistogramBundle::new();
            let n = served.round() as u64;
            for j in 0..n {
                let spread = 0.8 + 0.4 * j as f64 / n.max(1) as f64;
                let _ = b.ttft.record((s.ttft_ms.p50 * 1000.0 * spread) as u64);
                let _ = b.e2e.record((s.e2e_ms.p50 * 1000.0 * spread) as u64);
                let _ = b.tpot.record((s.tpot_ms.p50 * 1000.0 * spread) as u64);
                let _ = b.itl.record_n((s.itl_ms.p50 * 1000.0 * spread) as u64, 99);
            }
            hlogs
                .write(&IntervalHistograms {
                    step: s.name.clone(),
                    start_s: start + f64::from(k),
                    length_s: 1.0,
                    bundle: b,
                })
                .expect("hlog");
            let backlog = (qps - served) * f64::from(k + 1);
            ts.serialize(TimeseriesRow {
                elapsed_s: start + f64::from(k + 1),
                step: s.name.clone(),
                interval: k,
                interval_s: 1.0,
                offered_qps: Some(qps),
                achieved_qps: qps,
                completed_rps: served,
                in_flight: (served * 1.1 + backlog) as u64,
                ttft_p50_ms: s.ttft_ms.p50,
                ttft_p99_ms: s.ttft_ms.p99,
                ttft_corrected_p99_ms: s.ttft_ms.p99,
                itl_p50_ms: s.itl_ms.p50,
                itl_p99_ms: s.itl_ms.p99,
                e2e_p50_ms: s.e2e_ms.p50,
                e2e_p99_ms: s.e2e_ms.p99,
                schedule_lag_p99_ms: 0.2,
                output_tokens_per_s: served * 100.0,
                completed: n,
                failed: 0,
                timeouts: 0,
                dropped: 0,
                recorder_overflow: 0,
                ..Default::default()
            })
            .expect("row");
        }
        start += s.duration_s;
    }
    stages_csv.flush().expect("flush");
    ts.flush().expect("flush");
}

/// resources.csv for the fixture's 80 s: one agent, GPU busy, KV cache filling as load grows.
pub fn write_resources(dir: &Path) {
    let mut out = String::from(
        "elapsed_s,agent,cpu_pct,gpu0_util_pct,gpu0_name,vllm:kv_cache_usage_perc,vllm:num_requests_running,vllm:num_requests_waiting,vllm:num_preemptions_total,vllm:prompt_tokens_total\n",
    );
    for t in 0..80 {
        let load = f64::from(t) / 80.0;
        out.push_str(&format!(
            "{t},local-0,{:.1},{:.1},H100,{:.3},{},{},{},{}\n",
            20.0 + 30.0 * load,
            60.0 + 35.0 * load,
            0.3 + 0.5 * load,
            (10.0 + 40.0 * load) as u32,
            (60.0 * load * load) as u32,
            0,
            t * 10_000,
        ));
    }
    std::fs::write(dir.join("resources.csv"), out).expect("resources.csv");
}
