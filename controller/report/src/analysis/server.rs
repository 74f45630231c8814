//! Findings from resources.csv, when the agents sampled it: the KV cache near full or
//! preempting, and the GPU idle while latency is high. Silent when the columns are absent.
//!
//! Columns are recognised by name ([`classify`]), so vLLM's, SGLang's and the samplers' own
//! names all count (`vllm:kv_cache_usage_perc`, `gpu0_util_pct`, ...).

use super::capacity::load_groups;
use super::{Evidence, mean};
use stampede_results::facts::{Facts, GpuIdle, IdleStep, KvCachePressure};
use stampede_results::kinds::Severity;
use stampede_results::summary::Finding;
use stampede_results::table::NumericTable;

/// KV-cache usage at or above this share is pressure.
const KV_FULL: f64 = 0.9;
/// GPU utilisation below this (percent) while latency is high: the GPU waits for something.
const GPU_IDLE_PCT: f64 = 50.0;
/// Samples needed in a step before its GPU utilisation is judged.
const MIN_SAMPLES: usize = 3;
/// Latency is high when TTFT p99 is this many times the lowest load's and this much above it,
/// or when a latency SLO failed.
const HIGH_TTFT: f64 = 3.0;
const HIGH_TTFT_MS: f64 = 100.0;

/// What a resources column measures, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ColumnKind {
    GpuUtil,
    GpuMem,
    Cpu,
    /// The load generator's own CPU (`client_cpu_pct`, `agent_cpu_pct`).
    AgentCpu,
    Memory,
    KvCache,
    Running,
    Waiting,
    Preemptions,
    Other,
}

/// Recognises a column by its name.
pub fn classify(column: &str) -> ColumnKind {
    let c = column.to_ascii_lowercase();
    let has = |s: &str| c.contains(s);
    if has("kv_cache") || has("gpu_cache_usage") || has("cache_usage") || has("token_usage") {
        ColumnKind::KvCache
    } else if has("preempt") {
        ColumnKind::Preemptions
    } else if has("waiting") || has("queue_req") {
        ColumnKind::Waiting
    } else if has("running") {
        ColumnKind::Running
    } else if has("gpu") && has("util") {
        ColumnKind::GpuUtil
    } else if has("gpu") && has("mem") {
        ColumnKind::GpuMem
    } else if (has("agent") || has("client")) && has("cpu") {
        ColumnKind::AgentCpu
    } else if has("cpu") {
        ColumnKind::Cpu
    } else if has("mem") {
        ColumnKind::Memory
    } else {
        ColumnKind::Other
    }
}

/// The columns of a kind.
pub fn columns_of(t: &NumericTable, kind: ColumnKind) -> Vec<usize> {
    (0..t.columns.len())
        .filter(|&i| classify(&t.columns[i]) == kind)
        .collect()
}

/// The largest value of a kind of column, anywhere.
pub fn peak_of(t: Option<&NumericTable>, kind: ColumnKind) -> Option<f64> {
    let t = t?;
    columns_of(t, kind)
        .into_iter()
        .flat_map(|c| t.samples.iter().filter_map(move |s| s.values[c]))
        .reduce(f64::max)
}

/// Whether a column counts up (a Prometheus counter): named `*_total`, or a preemption
/// column that never decreases within a source.
pub fn is_counter(t: &NumericTable, column: usize) -> bool {
    let name = &t.columns[column];
    name.ends_with("_total")
        || (classify(name) == ColumnKind::Preemptions
            && t.sources()
                .iter()
                .all(|src| t.series(column, src).windows(2).all(|w| w[1].1 >= w[0].1)))
}

/// The factor that turns a column's values into percent: a `*_pct` column is in percent
/// already; others (vLLM's `*_perc` is a fraction despite its name) are taken as fractions
/// when they never pass 1.
pub fn percent_factor(t: &NumericTable, column: usize) -> f64 {
    let name = t.columns[column].to_ascii_lowercase();
    if name.ends_with("_pct") || name.ends_with("_percent") {
        return 1.0;
    }
    let max = t
        .samples
        .iter()
        .filter_map(|s| s.values[column])
        .fold(0.0, f64::max);
    if max <= 1.0 { 100.0 } else { 1.0 }
}

/// KV cache at or near full, or requests preempted.
pub fn kv_cache_pressure(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let Some(t) = ev.resources else { return };
    let windows = ev.windows();
    let step_at = |time: f64| {
        windows
            .iter()
            .position(|(a, b)| time >= *a && time < *b)
            .map(|i| ev.stages[i].name.clone())
    };
    // Peak usage (percent) and when.
    let mut peak: Option<(f64, f64, String)> = None;
    for c in columns_of(t, ColumnKind::KvCache) {
        let f = percent_factor(t, c);
        for s in &t.samples {
            if let Some(v) = s.values[c].map(|v| v * f)
                && peak.as_ref().is_none_or(|p| v > p.0)
            {
                peak = Some((v, s.t, t.columns[c].clone()));
            }
        }
    }
    // Preemptions: a counter's growth, per source; a rate's integral when no counter was kept
    // (a file may hold both, `*_total` and `*_per_s`, which must not be added).
    let mut preempted = 0.0;
    let columns = columns_of(t, ColumnKind::Preemptions);
    let counters: Vec<usize> = columns
        .iter()
        .copied()
        .filter(|&c| is_counter(t, c))
        .collect();
    let chosen = if counters.is_empty() {
        columns
    } else {
        counters
    };
    for c in chosen {
        let counter = is_counter(t, c);
        for src in t.sources() {
            let series = t.series(c, &src);
            preempted += if counter {
                match (series.first(), series.last()) {
                    (Some(first), Some(last)) => (last.1 - first.1).max(0.0),
                    _ => 0.0,
                }
            } else {
                series
                    .windows(2)
                    .map(|w| w[1].1.max(0.0) * (w[1].0 - w[0].0))
                    .sum()
            };
        }
    }
    let full = peak.as_ref().filter(|p| p.0 >= KV_FULL * 100.0);
    if full.is_none() && preempted < 1.0 {
        return;
    }
    out.push(Finding::new(
        Severity::Warning,
        Facts::KvCachePressure(KvCachePressure {
            kv_cache_peak_pct: peak.as_ref().map(|p| p.0),
            column: peak.as_ref().map(|p| p.2.clone()),
            at_s: peak.as_ref().map(|p| p.1),
            step: peak.as_ref().and_then(|p| step_at(p.1)),
            preemptions: preempted,
        }),
    ));
}

/// Steps whose latency is high: a latency SLO failed, or TTFT p99 is far above the lowest
/// load's in the same stage.
fn high_latency_steps(ev: &Evidence<'_>) -> Vec<usize> {
    let mut high: Vec<usize> = ev
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.slo
                .checks
                .iter()
                .any(|c| !c.pass && !c.name.ends_with("_rate") && !c.name.ends_with("_ratio"))
        })
        .map(|(i, _)| i)
        .collect();
    for g in load_groups(ev.stages) {
        let b = &ev.stages[g.steps[0].0];
        for &(i, _) in &g.steps[1..] {
            let s = &ev.stages[i];
            if s.ttft_ms.count > 0
                && b.ttft_ms.count > 0
                && s.ttft_ms.p99 > HIGH_TTFT * b.ttft_ms.p99
                && s.ttft_ms.p99 - b.ttft_ms.p99 > HIGH_TTFT_MS
            {
                high.push(i);
            }
        }
    }
    high.sort_unstable();
    high.dedup();
    high
}

/// The GPU mostly idle in a step whose latency is high.
pub fn gpu_idle(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let Some(t) = ev.resources else { return };
    let gpu = columns_of(t, ColumnKind::GpuUtil);
    if gpu.is_empty() {
        return;
    }
    // The server's own CPU when it was sampled (tokenisation runs there), else the hosts'.
    let all_cpu = columns_of(t, ColumnKind::Cpu);
    let target_cpu: Vec<usize> = all_cpu
        .iter()
        .copied()
        .filter(|&c| t.columns[c].to_ascii_lowercase().contains("target"))
        .collect();
    let cpu = if target_cpu.is_empty() {
        all_cpu
    } else {
        target_cpu
    };
    let windows = ev.windows();
    let mut idle = Vec::new();
    for i in high_latency_steps(ev) {
        let (from, to) = windows[i];
        let util: Vec<f64> = gpu
            .iter()
            .flat_map(|&c| {
                let f = percent_factor(t, c);
                t.values_between(c, from, to)
                    .into_iter()
                    .map(move |v| v * f)
            })
            .collect();
        if util.len() < MIN_SAMPLES {
            continue;
        }
        let Some(u) = mean(&util).filter(|u| *u < GPU_IDLE_PCT) else {
            continue;
        };
        let cpu_mean = mean(
            &cpu.iter()
                .flat_map(|&c| t.values_between(c, from, to))
                .collect::<Vec<_>>(),
        );
        idle.push((i, u, cpu_mean));
    }
    if idle.is_empty() {
        return;
    }
    let steps = idle
        .into_iter()
        .map(|(i, u, cpu_mean)| IdleStep {
            step: ev.stages[i].name.clone(),
            gpu_util_mean_pct: u,
            cpu_mean_pct: cpu_mean,
            ttft_p99_ms: ev.stages[i].ttft_ms.p99,
            schedule_lag_p99_ms: ev.stages[i].schedule_lag_ms.p99,
        })
        .collect();
    out.push(Finding::new(
        Severity::Warning,
        Facts::GpuIdle(GpuIdle { steps }),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::Evidence;
    use super::super::testing::*;
    use super::*;
    use stampede_results::kinds::FindingCode;

    fn table(headers: &[&str], rows: &[Vec<f64>]) -> NumericTable {
        let h: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let r: Vec<Vec<String>> = rows
            .iter()
            .map(|row| row.iter().map(|v| v.to_string()).collect())
            .collect();
        NumericTable::from_rows(&h, &r)
    }

    #[test]
    fn columns_are_recognised_by_name() {
        assert_eq!(classify("vllm:kv_cache_usage_perc"), ColumnKind::KvCache);
        assert_eq!(classify("vllm:gpu_cache_usage_perc"), ColumnKind::KvCache);
        assert_eq!(classify("sglang:token_usage"), ColumnKind::KvCache);
        assert_eq!(
            classify("vllm:num_preemptions_total"),
            ColumnKind::Preemptions
        );
        assert_eq!(classify("vllm:num_requests_waiting"), ColumnKind::Waiting);
        assert_eq!(classify("vllm:num_requests_running"), ColumnKind::Running);
        assert_eq!(classify("gpu0_util_pct"), ColumnKind::GpuUtil);
        assert_eq!(classify("gpu0_mem_used_mib"), ColumnKind::GpuMem);
        assert_eq!(classify("agent_cpu_pct"), ColumnKind::AgentCpu);
        assert_eq!(classify("client_cpu_pct"), ColumnKind::AgentCpu);
        assert_eq!(classify("target_cpu_pct"), ColumnKind::Cpu);
        assert_eq!(classify("server_requests_running"), ColumnKind::Running);
        assert_eq!(classify("host_cpu_pct"), ColumnKind::Cpu);
        assert_eq!(classify("mem_pct"), ColumnKind::Memory);
        assert_eq!(classify("vllm:prompt_tokens_total"), ColumnKind::Other);
    }

    #[test]
    fn percent_columns_and_fractions_are_told_apart() {
        let t = table(
            &[
                "elapsed_s",
                "server_kv_cache_usage_pct",
                "vllm:kv_cache_usage_perc",
            ],
            &[vec![0.0, 0.5, 0.5], vec![1.0, 0.9, 0.9]],
        );
        assert_eq!(percent_factor(&t, 0), 1.0);
        assert_eq!(percent_factor(&t, 1), 100.0);
    }

    #[test]
    fn a_counter_and_its_rate_are_not_added_up() {
        let steps = vec![open_step("s", 4.0, 10.0), open_step("s", 8.0, 10.0)];
        let rows: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                vec![
                    f64::from(i),
                    50.0,
                    f64::from(i / 10),
                    if i == 10 { 1.0 } else { 0.0 },
                ]
            })
            .collect();
        let t = table(
            &[
                "elapsed_s",
                "server_kv_cache_usage_pct",
                "server_preemptions_total",
                "server_preemptions_per_s",
            ],
            &rows,
        );
        let a = analysed(&evidence_with(&steps, &t));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::KvCachePressure)
            .expect("raised");
        let Facts::KvCachePressure(k) = &f.facts else {
            panic!("{f:?}")
        };
        assert_eq!(k.preemptions, 1.0);
        assert_eq!(k.kv_cache_peak_pct, Some(50.0));
    }

    fn evidence_with<'a>(
        steps: &'a [stampede_results::summary::StageSummary],
        t: &'a NumericTable,
    ) -> Evidence<'a> {
        Evidence {
            resources: Some(t),
            ..Evidence::stages_only(steps, false)
        }
    }

    #[test]
    fn a_full_kv_cache_or_preemptions_raise_pressure_and_a_roomy_one_does_not() {
        let steps = vec![open_step("s", 4.0, 10.0), open_step("s", 8.0, 10.0)];
        let rows: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![f64::from(i), f64::from(i) * 0.05, 0.0])
            .collect();
        let full = table(
            &[
                "elapsed_s",
                "vllm:kv_cache_usage_perc",
                "vllm:num_preemptions_total",
            ],
            &rows,
        );
        let a = analysed(&evidence_with(&steps, &full));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::KvCachePressure)
            .expect("raised");
        assert!(
            f.message.contains("95%") && f.message.contains("s/qps=8"),
            "{}",
            f.message
        );
        assert!(
            f.suggestion
                .as_deref()
                .unwrap()
                .contains("--gpu-memory-utilization")
        );

        let roomy_rows: Vec<Vec<f64>> = (0..20).map(|i| vec![f64::from(i), 0.4, 0.0]).collect();
        let roomy = table(
            &[
                "elapsed_s",
                "vllm:kv_cache_usage_perc",
                "vllm:num_preemptions_total",
            ],
            &roomy_rows,
        );
        assert!(!codes(&analysed(&evidence_with(&steps, &roomy))).contains(&"kv-cache-pressure"));

        let preempt_rows: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![f64::from(i), 0.5, f64::from(i / 5)])
            .collect();
        let preempting = table(
            &[
                "elapsed_s",
                "vllm:kv_cache_usage_perc",
                "vllm:num_preemptions_total",
            ],
            &preempt_rows,
        );
        let a = analysed(&evidence_with(&steps, &preempting));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::KvCachePressure)
            .expect("raised");
        let Facts::KvCachePressure(k) = &f.facts else {
            panic!("{f:?}")
        };
        assert_eq!(k.preemptions, 3.0);
        // Without resources, silent.
        assert!(
            !codes(&analysed(&Evidence::stages_only(&steps, false))).contains(&"kv-cache-pressure")
        );
    }

    #[test]
    fn an_idle_gpu_under_high_latency_is_found_and_a_busy_one_is_not() {
        let mut steps = vec![open_step("s", 4.0, 10.0), open_step("s", 8.0, 10.0)];
        steps[1].ttft_ms = lat(80, 400.0, 900.0);
        let idle_rows: Vec<Vec<f64>> = (0..20).map(|i| vec![f64::from(i), 20.0, 95.0]).collect();
        let idle = table(&["elapsed_s", "gpu0_util_pct", "cpu_pct"], &idle_rows);
        let a = analysed(&evidence_with(&steps, &idle));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::GpuIdle)
            .expect("raised");
        assert!(
            f.message.contains("s/qps=8") && f.message.contains("CPU 95%"),
            "{}",
            f.message
        );
        assert!(
            f.suggestion
                .as_deref()
                .unwrap()
                .contains("--api-server-count")
        );

        let busy_rows: Vec<Vec<f64>> = (0..20).map(|i| vec![f64::from(i), 97.0, 30.0]).collect();
        let busy = table(&["elapsed_s", "gpu0_util_pct", "cpu_pct"], &busy_rows);
        assert!(!codes(&analysed(&evidence_with(&steps, &busy))).contains(&"gpu-idle"));
        // Low latency everywhere: an idle GPU is just spare capacity.
        let calm = vec![open_step("s", 4.0, 10.0), open_step("s", 8.0, 10.0)];
        assert!(!codes(&analysed(&evidence_with(&calm, &idle))).contains(&"gpu-idle"));
    }
}
