//! A realistic run for the live view's tests: two QPS steps against a server that starts to
//! fail in the second, with resources, an agent lost and alerts.

use std::collections::BTreeMap;

use crate::alerts::{Alert, AlertKind, AlertState};
use crate::state::{
    AgentHealth, ErrorSample, IntervalView, Latencies, LiveEvent, LiveState, Percentiles,
    RateChange, RunInfo, StepDone, StepStart,
};
use stampede_results::rows::TimeseriesRow;

/// In thousandths, as the runner writes figures.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn pct(p50: f64, p99: f64, count: u64) -> Percentiles {
    Percentiles {
        p50_ms: r3(p50),
        p99_ms: r3(p99),
        count,
    }
}

/// The row with every figure in thousandths.
fn rounded(row: &TimeseriesRow) -> TimeseriesRow {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                if let Some(x) = n.as_f64().and_then(|x| serde_json::Number::from_f64(r3(x))) {
                    *n = x;
                }
            }
            serde_json::Value::Object(m) => m.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(row).unwrap();
    walk(&mut v);
    serde_json::from_value(v).unwrap()
}

/// A merged interval `i` of step `name` at `qps`, second `t` of the run.
fn interval(step_no: u32, name: &str, qps: f64, i: u32, t: f64, trouble: bool) -> IntervalView {
    // A gentle wave so the charts have a shape; deterministic, and in thousandths like the
    // rows the runner writes.
    let wave = (((f64::from(i) * 0.7).sin() + 1.0) * 50.0).round() / 100.0;
    let failed = if trouble { 4 + u64::from(i % 3) } else { 0 };
    let ttft = 48.0 + 10.0 * wave + if trouble { 120.0 } else { 0.0 };
    let e2e = 2600.0 + 300.0 * wave + if trouble { 900.0 } else { 0.0 };
    let row = TimeseriesRow {
        elapsed_s: t,
        step: name.to_string(),
        interval: i,
        interval_s: 1.0,
        offered_qps: Some(qps),
        achieved_qps: qps - 0.5 + wave,
        completed_rps: qps - 1.0 + wave,
        in_flight: (qps * 2.8) as u64,
        ttft_p50_ms: ttft,
        ttft_p99_ms: ttft * 1.6,
        ttft_corrected_p99_ms: ttft * 1.7,
        itl_p50_ms: 10.2,
        itl_p99_ms: 14.8 + 3.0 * wave,
        e2e_p50_ms: e2e,
        e2e_p99_ms: e2e * 1.3,
        schedule_lag_p99_ms: 0.4,
        output_tokens_per_s: (qps - 1.0 + wave) * 256.0,
        completed: (qps - 1.0) as u64,
        failed,
        timeouts: u64::from(trouble && i.is_multiple_of(4)),
        dropped: 0,
        recorder_overflow: 0,
        client_cpu_pct: Some(11.0 + 4.0 * wave),
        host_cpu_pct: Some(35.0 + 10.0 * wave),
        host_mem_pct: Some(41.5),
        gpu_util_pct: Some(87.0),
        gpu_mem_used_bytes: Some(70.0e9),
        gpu_power_w: Some(612.0),
        target_cpu_pct: Some(22.0),
        server_running: Some(qps * 2.5),
        server_waiting: Some(if trouble { 14.0 } else { 0.0 }),
        kv_cache_usage_pct: Some(55.0 + 20.0 * wave),
        client_bound: false,
        drain: false,
    };
    let row = rounded(&row);
    let mut errors = BTreeMap::new();
    if failed > 0 {
        errors.insert("http_5xx".to_string(), failed - 1);
        errors.insert("timeout_total".to_string(), 1);
    }
    let mut step_errors = BTreeMap::new();
    let mut step_error_messages = Vec::new();
    if trouble {
        step_errors.insert("http_5xx".to_string(), 9 + u64::from(i) * 4);
        step_errors.insert("timeout_total".to_string(), 2 + u64::from(i));
        step_errors.insert("stream_broken".to_string(), 1);
        let sample = |class: &str, http_status, count, message: &str| ErrorSample {
            class: class.into(),
            http_status,
            count,
            message: message.into(),
        };
        step_error_messages = vec![
            sample(
                "http_5xx",
                Some(503),
                9 + u64::from(i) * 4,
                "HTTP 503 Service Unavailable the engine is overloaded, retry later",
            ),
            sample(
                "stream_broken",
                None,
                1,
                "error decoding response body: connection closed before message completed",
            ),
            sample(
                "timeout_total",
                None,
                2 + u64::from(i),
                "the response did not finish within the timeout",
            ),
        ];
    }
    IntervalView {
        step_no,
        window: Latencies {
            ttft: pct(ttft, ttft * 1.7, 300),
            itl: pct(10.2, 16.0, 70_000),
            e2e: pct(e2e, e2e * 1.35, 300),
        },
        step: Latencies {
            ttft: pct(ttft - 2.0, ttft * 1.8, 30 * u64::from(i + 1)),
            itl: pct(10.1, 15.9, 7000 * u64::from(i + 1)),
            e2e: pct(e2e - 40.0, e2e * 1.4, 30 * u64::from(i + 1)),
        },
        errors,
        step_errors,
        step_error_messages,
        agents: vec![
            AgentHealth {
                agent: "local-0".into(),
                schedule_lag_p99_ms: Some(0.4),
                cpu_pct: row.client_cpu_pct,
                lost: None,
            },
            AgentHealth {
                agent: "local-1".into(),
                schedule_lag_p99_ms: if trouble { None } else { Some(0.5) },
                cpu_pct: if trouble { None } else { Some(9.0) },
                lost: trouble.then(|| "agent local-1 stream failed: transport error".into()),
            },
        ],
        paused: false,
        sent: qps as u64,
        output_tokens: ((qps - 1.0) * 256.0) as u64,
        row,
    }
}

/// The events of the run, in order.
pub fn events() -> Vec<LiveEvent> {
    let mut ev = vec![
        LiveEvent::Run(RunInfo {
            plan: "qps-steps".into(),
            target: "http://127.0.0.1:35641/v1".into(),
            model: "sim-llama-3.1-8b".into(),
            agents: vec!["local-0".into(), "local-1".into()],
            results_dir: "results/qps-steps-20261128T000658Z".into(),
            interval_s: 1.0,
        }),
        LiveEvent::Note("target http://127.0.0.1:35641/v1 model sim-llama-3.1-8b".into()),
        LiveEvent::Note("agent local-0 at 127.0.0.1:39945 (2 cores)".into()),
        LiveEvent::StepStarted(StepStart {
            step_no: 0,
            name: "steps/qps=20".into(),
            stage: "steps".into(),
            offered_qps: Some(20.0),
            concurrency: None,
            start_s: 0.0,
            duration_s: 30.0,
            warmup: false,
        }),
    ];
    for i in 0..30 {
        ev.push(LiveEvent::Interval(Box::new(interval(
            0,
            "steps/qps=20",
            20.0,
            i,
            f64::from(i + 1),
            false,
        ))));
    }
    ev.push(LiveEvent::StepFinished(StepDone {
        step_no: 0,
        name: "steps/qps=20".into(),
        offered_qps: Some(20.0),
        concurrency: None,
        achieved_qps: 20.1,
        ttft_p99_ms: 96.2,
        e2e_p99_ms: 3710.4,
        output_tokens_per_s: 5080.0,
        error_rate: 0.0,
        slo_pass: Some(true),
        warmup: false,
        error_messages: Vec::new(),
    }));
    ev.push(LiveEvent::StepStarted(StepStart {
        step_no: 1,
        name: "steps/qps=40".into(),
        stage: "steps".into(),
        offered_qps: Some(40.0),
        concurrency: None,
        start_s: 30.0,
        duration_s: 60.0,
        warmup: false,
    }));
    ev.push(LiveEvent::Rate(RateChange {
        step: "steps/qps=40".into(),
        scale: 1.1,
        qps: 44.0,
    }));
    ev.push(LiveEvent::Note(
        "rate: steps/qps=40 now 1.10x its plan (44.00 requests/s)".into(),
    ));
    for i in 0..18 {
        let trouble = i >= 10;
        ev.push(LiveEvent::Interval(Box::new(interval(
            1,
            "steps/qps=40",
            44.0,
            i,
            31.0 + f64::from(i),
            trouble,
        ))));
        if i == 10 {
            let mut a = Alert::new(
                AlertKind::ErrorSpike,
                "steps/qps=40",
                41.0,
                "4 of 47 requests failed in the interval (9%): http_5xx 3, timeout_total 1".into(),
            );
            a.value = Some(9.0);
            a.limit = Some(10.0);
            ev.push(LiveEvent::Alert(a.clone()));
            let mut lost = Alert::new(
                AlertKind::AgentLost,
                "",
                41.0,
                "agent local-1 lost during steps/qps=40: stream failed".into(),
            );
            lost.subject = "local-1".into();
            ev.push(LiveEvent::Alert(lost.clone()));
            let mut slo = Alert::new(
                AlertKind::SloBreach,
                "steps/qps=40",
                42.0,
                "e2e_p99 over the last 10 s is 4780.2 ms, above the 4000.0 ms threshold".into(),
            );
            slo.subject = "e2e_p99".into();
            ev.push(LiveEvent::Alert(slo.clone()));
            a.state = AlertState::Resolved;
            a.elapsed_s = 45.0;
            a.message = "errors back to 8.1% over the last 10 s".into();
            ev.push(LiveEvent::Alert(a));
            slo.state = AlertState::Resolved;
            slo.elapsed_s = 46.0;
            ev.push(LiveEvent::Alert(slo));
        }
    }
    ev
}

/// The state after [`events`].
pub fn state() -> LiveState {
    let mut st = LiveState::new();
    for e in events() {
        st.apply(&e);
    }
    st
}
