//! The results rows of what agents sent: a merged interval's timeseries.csv row, a request
//! record's requests.csv row. The rows' shapes are the results crate's; filling them from the
//! run's own types happens here, so that crate needs none of them.

use stampede_common::metrics::LatencySummary;
use stampede_common::proto::RequestRecord;
use stampede_results::rows::{RequestRow, TimeseriesRow, round3};

use crate::aggregate::MergedInterval;

/// The timeseries.csv row of a merged interval; `step_start_s` is the step's start since the
/// run's.
pub fn timeseries_row(
    m: &MergedInterval,
    step: &str,
    offered_qps: Option<f64>,
    step_start_s: f64,
) -> TimeseriesRow {
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
        drain: m.drain,
    }
}

/// The requests.csv row of an agent's request record.
pub fn request_row(r: &RequestRecord, step: &str, agent: &str) -> RequestRow {
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
