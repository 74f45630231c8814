//! The rows of the CSV files. Column names carry their units.

use serde::{Deserialize, Serialize};

use crate::aggregate::MergedInterval;
use crate::summary::StageSummary;
use stampede_common::metrics::LatencySummary;
use stampede_common::proto::RequestRecord;

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
    // Resources of the interval (crate::monitor::IntervalResources); empty when not sampled.
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
}

impl TimeseriesRow {
    /// The row of a merged interval; `step_start_s` is the step's start since the run's.
    pub fn of(m: &MergedInterval, step: &str, offered_qps: Option<f64>, step_start_s: f64) -> Self {
        let len = m.length().as_secs_f64().max(1e-3);
        let s = |h| LatencySummary::of(h);
        let (ttft, ttftc, itl, e2e, lag) = (
            s(&m.bundle.ttft),
            s(&m.bundle.ttft_corrected),
            s(&m.bundle.itl),
            s(&m.bundle.e2e),
            s(&m.bundle.schedule_lag),
        );
        TimeseriesRow {
            elapsed_s: round3(step_start_s + m.end_offset.as_secs_f64()),
            step: step.to_string(),
            interval: m.index,
            interval_s: round3(len),
            offered_qps,
            achieved_qps: round3(m.counts.sent as f64 / len),
            completed_rps: round3(m.counts.completed as f64 / len),
            in_flight: m.in_flight,
            ttft_p50_ms: ttft.p50,
            ttft_p99_ms: ttft.p99,
            ttft_corrected_p99_ms: ttftc.p99,
            itl_p50_ms: itl.p50,
            itl_p99_ms: itl.p99,
            e2e_p50_ms: e2e.p50,
            e2e_p99_ms: e2e.p99,
            schedule_lag_p99_ms: lag.p99,
            output_tokens_per_s: round3(m.counts.output_tokens as f64 / len),
            completed: m.counts.completed,
            failed: m.counts.failed,
            timeouts: m.counts.timeouts,
            dropped: m.counts.dropped,
            recorder_overflow: m.recorder_overflow,
            client_cpu_pct: m.resources.client_cpu_pct,
            host_cpu_pct: m.resources.host_cpu_pct,
            host_mem_pct: m.resources.host_mem_pct,
            gpu_util_pct: m.resources.gpu_util_pct,
            gpu_mem_used_bytes: m.resources.gpu_mem_used_bytes,
            gpu_power_w: m.resources.gpu_power_w,
            target_cpu_pct: m.resources.target_cpu_pct,
            server_running: m.resources.server_running,
            server_waiting: m.resources.server_waiting,
            kv_cache_usage_pct: m.resources.kv_cache_usage_pct,
            client_bound: m.resources.client_bound,
        }
    }
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

impl RequestRow {
    pub fn of(r: &RequestRecord, step: &str, agent: &str) -> Self {
        let ms = |us: u64| (us > 0).then(|| us as f64 / 1000.0);
        RequestRow {
            step: step.to_string(),
            agent: agent.to_string(),
            id: r.id,
            intended_s: r.intended_offset_us as f64 / 1e6,
            sent_s: r.sent_offset_us as f64 / 1e6,
            schedule_lag_ms: r.sent_offset_us.saturating_sub(r.intended_offset_us) as f64 / 1000.0,
            ttft_ms: ms(r.ttft_us),
            e2e_ms: ms(r.e2e_us),
            input_tokens: r.input_tokens,
            server_input_tokens: (r.server_input_tokens > 0).then_some(r.server_input_tokens),
            output_tokens: r.output_tokens,
            chunks: r.content_chunks,
            status: r.http_status,
            error: r.error_class.clone(),
            finish_reason: r.finish_reason.clone(),
            detail: r.error_detail.clone(),
        }
    }
}

/// One step of stages.csv: the table a step test is read from.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub name: String,
    pub stage: String,
    pub mode: &'static str,
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    pub duration_s: f64,
    pub achieved_qps: f64,
    pub throughput_rps: f64,
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
            duration_s: s.duration_s,
            achieved_qps: round3(s.achieved_qps),
            throughput_rps: round3(s.throughput_rps),
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
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
