//! The rows of the CSV files. Column names carry their units.

use serde::{Deserialize, Serialize};

use crate::summary::StageSummary;

/// One merged interval of timeseries.csv; read back by `controller report`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TimeseriesRow {
    /// Seconds since the run's first step started, at the end of the interval.
    pub elapsed_s: f64,
    pub step: String,
    pub interval: u32,
    pub interval_s: f64,
    pub offered_qps: Option<f64>,
    pub achieved_qps: f64,
    pub completed_rps: f64,
    pub in_flight: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub ttft_corrected_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub schedule_lag_p99_ms: f64,
    pub output_tokens_per_s: f64,
    pub completed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub recorder_overflow: u64,
    // Resources of the interval (the controller's monitor); empty when not sampled.
    /// The busiest load agent's CPU, percent of its host's cores.
    #[serde(default)]
    pub client_cpu_pct: Option<f64>,
    /// Mean CPU and memory of the load agents' hosts, percent.
    #[serde(default)]
    pub host_cpu_pct: Option<f64>,
    #[serde(default)]
    pub host_mem_pct: Option<f64>,
    /// Mean GPU utilisation (NVML, else the server's DCGM figure); memory and power summed.
    #[serde(default)]
    pub gpu_util_pct: Option<f64>,
    #[serde(default)]
    pub gpu_mem_used_bytes: Option<f64>,
    #[serde(default)]
    pub gpu_power_w: Option<f64>,
    /// The target process's CPU, percent of its host's cores.
    #[serde(default)]
    pub target_cpu_pct: Option<f64>,
    /// The server's requests running and waiting, and its KV-cache usage, percent.
    #[serde(default)]
    pub server_running: Option<f64>,
    #[serde(default)]
    pub server_waiting: Option<f64>,
    #[serde(default)]
    pub kv_cache_usage_pct: Option<f64>,
    /// The saturation guard marked the interval: an agent's CPU or the lag passed its limit.
    #[serde(default)]
    pub client_bound: bool,
    /// After the step's window: what finished in its drain. Its rates are over its own
    /// (short) length and are no load level: read its counts.
    #[serde(default)]
    pub drain: bool,
}

/// One request of requests.csv.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub step: String,
    pub agent: String,
    pub id: u64,
    /// Seconds since the step's start.
    pub intended_s: f64,
    pub sent_s: f64,
    pub schedule_lag_ms: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub input_tokens: u32,
    pub server_input_tokens: Option<u32>,
    pub output_tokens: u32,
    pub chunks: u32,
    pub status: u32,
    pub error: String,
    pub finish_reason: String,
    pub detail: String,
}

/// One step of stages.csv: the table a step test is read from.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub name: String,
    pub stage: String,
    pub mode: crate::kinds::StepMode,
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    pub duration_s: f64,
    /// How the step ended (`complete`, `interrupted`, `paused`, `rate_changed`, `aborted`).
    pub ended: crate::kinds::StepEnd,
    pub paused_s: f64,
    pub achieved_qps: f64,
    pub throughput_rps: f64,
    /// Completed after the window, in the drain: in `completed`, outside every rate.
    pub drain_completed: u64,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub abnormal: u64,
    pub dropped: u64,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub ttft_corrected_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p99_ms: f64,
    pub tpot_p50_ms: f64,
    pub tpot_p99_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p90_ms: f64,
    pub e2e_p99_ms: f64,
    pub schedule_lag_p99_ms: f64,
    pub output_tokens_per_s: f64,
    pub goodput_qps: f64,
    pub error_rate: f64,
    pub slo_pass: bool,
}

impl From<&StageSummary> for StageRow {
    fn from(s: &StageSummary) -> Self {
        StageRow {
            name: s.name.clone(),
            stage: s.stage.clone(),
            mode: s.mode,
            offered_qps: s.offered_qps,
            concurrency: s.concurrency,
            duration_s: round3(s.duration_s),
            ended: s.ended,
            paused_s: round3(s.paused_s),
            achieved_qps: round3(s.achieved_qps),
            throughput_rps: round3(s.throughput_rps),
            drain_completed: s.drain.completed,
            sent: s.requests.sent,
            completed: s.requests.completed,
            failed: s.requests.failed,
            timeouts: s.requests.timeouts,
            abnormal: s.requests.abnormal,
            dropped: s.requests.dropped,
            ttft_p50_ms: s.ttft_ms.p50,
            ttft_p99_ms: s.ttft_ms.p99,
            ttft_corrected_p99_ms: s.ttft_corrected_ms.p99,
            itl_p50_ms: s.itl_ms.p50,
            itl_p99_ms: s.itl_ms.p99,
            tpot_p50_ms: s.tpot_ms.p50,
            tpot_p99_ms: s.tpot_ms.p99,
            e2e_p50_ms: s.e2e_ms.p50,
            e2e_p90_ms: s.e2e_ms.p90,
            e2e_p99_ms: s.e2e_ms.p99,
            schedule_lag_p99_ms: s.schedule_lag_ms.p99,
            output_tokens_per_s: round3(s.tokens.output_per_s),
            goodput_qps: round3(s.goodput_qps),
            error_rate: s.rates.error_rate,
            slo_pass: s.slo.pass,
        }
    }
}

/// Rounds to thousandths, so CSV columns read well.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
