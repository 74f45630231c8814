//! The live view in plain text: one line per merged interval, and a table at the end.
//! Generic over `Write`, so what it prints is testable.

use std::io::Write;

use crate::results::rows::TimeseriesRow;
use crate::summary::StageSummary;

/// Prints one interval as a compact line.
///
/// # Errors
/// When the writer fails.
pub fn interval_line(out: &mut impl Write, row: &TimeseriesRow) -> std::io::Result<()> {
    let offered = row
        .offered_qps
        .map_or_else(|| "closed".to_string(), |q| format!("{q:.1}/s"));
    // Resources, when sampled: the busiest agent's CPU, the GPUs, and the guard's mark.
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}%"));
    let resources = if row.client_cpu_pct.is_some() || row.gpu_util_pct.is_some() {
        format!(
            " | cpu {} gpu {}{}",
            pct(row.client_cpu_pct),
            pct(row.gpu_util_pct),
            if row.client_bound {
                " CLIENT-BOUND"
            } else {
                ""
            }
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "[{:>7.1}s] {:<24} offered {:>8} sent {:>7.1}/s done {:>7.1}/s in-flight {:>4} | ttft p50 {:>7.1} p99 {:>7.1} ms | itl p50 {:>6.1} p99 {:>6.1} ms | e2e p99 {:>8.1} ms | {:>8.0} tok/s | err {} timeout {} dropped {}{}",
        row.elapsed_s,
        row.step,
        offered,
        row.achieved_qps,
        row.completed_rps,
        row.in_flight,
        row.ttft_p50_ms,
        row.ttft_p99_ms,
        row.itl_p50_ms,
        row.itl_p99_ms,
        row.e2e_p99_ms,
        row.output_tokens_per_s,
        row.failed,
        row.timeouts,
        row.dropped,
        resources,
    )
}

/// Prints the final table, one row per step.
///
/// # Errors
/// When the writer fails.
pub fn final_table(out: &mut impl Write, stages: &[StageSummary]) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{:<28} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>7} {:>5}",
        "step",
        "offered",
        "achieved",
        "ttft p50",
        "ttft p99",
        "itl p50",
        "itl p99",
        "e2e p99",
        "tok/s",
        "err%",
        "slo"
    )?;
    for s in stages {
        let offered = match (s.offered_qps, s.concurrency) {
            (Some(q), _) => format!("{q:.1}"),
            (None, Some(c)) => format!("c={c}"),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{:<28} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>9.1} {:>9.0} {:>7.2} {:>5}",
            truncate(&s.name, 28),
            offered,
            s.achieved_qps,
            s.ttft_ms.p50,
            s.ttft_ms.p99,
            s.itl_ms.p50,
            s.itl_ms.p99,
            s.e2e_ms.p99,
            s.tokens.output_per_s,
            s.rates.error_rate * 100.0,
            if s.slo.checks.is_empty() {
                "-"
            } else if s.slo.pass {
                "pass"
            } else {
                "FAIL"
            },
        )?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['~']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_line_holds_its_figures() {
        let row = TimeseriesRow {
            elapsed_s: 12.0,
            step: "steps/qps=50".into(),
            interval: 3,
            interval_s: 1.0,
            offered_qps: Some(50.0),
            achieved_qps: 49.0,
            completed_rps: 48.0,
            in_flight: 7,
            ttft_p50_ms: 51.2,
            ttft_p99_ms: 60.1,
            ttft_corrected_p99_ms: 61.0,
            itl_p50_ms: 10.0,
            itl_p99_ms: 10.4,
            e2e_p50_ms: 300.0,
            e2e_p99_ms: 1234.5,
            schedule_lag_p99_ms: 0.2,
            output_tokens_per_s: 1500.0,
            completed: 48,
            failed: 2,
            timeouts: 1,
            dropped: 0,
            recorder_overflow: 0,
            client_cpu_pct: Some(12.4),
            gpu_util_pct: Some(87.0),
            ..Default::default()
        };
        let mut out = Vec::new();
        interval_line(&mut out, &row).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with("| cpu 12% gpu 87%\n"), "{line}");
        for part in [
            "12.0s",
            "steps/qps=50",
            "50.0/s",
            "49.0/s",
            "51.2",
            "1234.5",
            "err 2",
            "timeout 1",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        assert_eq!(line.lines().count(), 1);
    }
}
