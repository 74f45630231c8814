//! Stability over time: bursts of errors, latency drifting over a long step (soak), and
//! throughput or latency fluctuating more than the load explains.

use std::collections::BTreeMap;

use super::{Evidence, mean};
use stampede_common::stage::StepKind;
use stampede_results::facts::{
    DriftMetric, ErrorBurst, Facts, Fluctuation, Rise, SoakDrift, SoakWindow, WindowName,
};
use stampede_results::kinds::Severity;
use stampede_results::read::median;
use stampede_results::summary::Finding;

/// An interval is part of a burst when at least this many requests failed...
const BURST_MIN_FAILED: u64 = 3;
/// ...and at least this share of its finished requests.
const BURST_SHARE: f64 = 0.2;
/// Bursts over more than this share of the active intervals are steady errors, not bursts.
const BURST_MAX_COVER: f64 = 0.5;
/// Outside the bursts, at most this share of finished requests may fail for the run to be
/// "mostly clean".
const CLEAN_SHARE: f64 = 0.05;
/// At most this many bursts are reported one by one.
const MAX_BURSTS: usize = 3;
/// Soak drift: a later window's p99 this many times the first's, and this much above it.
const DRIFT: f64 = 1.2;
const DRIFT_MS: f64 = 10.0;
/// Samples a window needs before its p99 is compared.
const DRIFT_MIN_COUNT: u64 = 50;
/// Soak throughput drift: the last window's output tokens/s below this share of the first's.
const THROUGHPUT_DRIFT: f64 = 0.85;
/// Fluctuation: intervals needed, completions per interval needed, and the limits on the
/// coefficient of variation around the step's trend.
const MIN_INTERVALS: usize = 6;
const MIN_PER_INTERVAL: f64 = 10.0;
const THROUGHPUT_CV: f64 = 0.2;
const LATENCY_CV: f64 = 0.25;

/// Requests that finished in one moment of the run.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    failed: u64,
    completed: u64,
    timeouts: u64,
}

/// Intervals where a large share of requests failed, grouped into bursts.
pub fn error_bursts(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let mut widths: Vec<f64> = ev.timeseries.iter().map(|r| r.interval_s).collect();
    let width = median(&mut widths);
    if width <= 0.0 {
        return;
    }
    // Steps overlap while one drains and the next starts: add up rows of the same moment.
    let mut buckets: BTreeMap<i64, Tally> = BTreeMap::new();
    for r in ev.timeseries {
        let b = buckets
            .entry((r.elapsed_s / width).round() as i64)
            .or_default();
        b.failed += r.failed;
        b.completed += r.completed;
        b.timeouts += r.timeouts;
    }
    let active = buckets
        .values()
        .filter(|b| b.failed + b.completed > 0)
        .count();
    let is_hot = |b: &Tally| {
        b.failed >= BURST_MIN_FAILED
            && b.failed as f64 >= BURST_SHARE * (b.failed + b.completed) as f64
    };
    // A burst is news only against a clean background: outside the hot intervals, requests
    // must have completed, and few failed.
    let (rest_failed, rest_completed) = buckets
        .values()
        .filter(|b| !is_hot(b))
        .fold((0, 0), |(f, c), b| (f + b.failed, c + b.completed));
    if rest_completed == 0
        || rest_failed as f64 > CLEAN_SHARE * (rest_failed + rest_completed) as f64
    {
        return;
    }
    let hot: Vec<(i64, Tally)> = buckets.into_iter().filter(|(_, b)| is_hot(b)).collect();
    if hot.is_empty() || hot.len() as f64 > BURST_MAX_COVER * active as f64 {
        return;
    }
    // Consecutive hot intervals (one quiet interval allowed between) make one burst.
    let mut bursts: Vec<(i64, i64, Tally)> = Vec::new();
    for (k, t) in hot {
        match bursts.last_mut() {
            Some(b) if k - b.1 <= 2 => {
                b.1 = k;
                b.2.failed += t.failed;
                b.2.completed += t.completed;
                b.2.timeouts += t.timeouts;
            }
            _ => bursts.push((k, k, t)),
        }
    }
    let total = bursts.len();
    for &(first, last, tally) in bursts.iter().take(MAX_BURSTS) {
        let from = (first as f64 - 1.0) * width;
        let to = last as f64 * width;
        let Tally {
            failed,
            completed,
            timeouts,
        } = tally;
        let steps: Vec<String> = ev
            .timeseries
            .iter()
            .filter(|r| r.elapsed_s > from && r.elapsed_s <= to + 1e-9 && r.failed > 0)
            .map(|r| r.step.clone())
            .fold(Vec::new(), |mut v, s| {
                if !v.contains(&s) {
                    v.push(s);
                }
                v
            });
        out.push(Finding::new(
            Severity::Warning,
            Facts::ErrorBurst(ErrorBurst {
                from_s: from.max(0.0),
                to_s: to,
                failed,
                completed,
                timeouts,
                steps,
                bursts: total,
                more: total.saturating_sub(MAX_BURSTS),
            }),
        ));
    }
}

/// The soaks of a run, each a sequence of windows at one load: the checkpoints of a soak
/// stage (exact: each is a step with its own merged histograms), and the windows of any other
/// step of twenty minutes or more (from the interval logs).
fn soaks(ev: &Evidence<'_>) -> Vec<(String, Vec<SoakWindow>)> {
    let mut out: Vec<(String, Vec<SoakWindow>)> = Vec::new();
    for s in ev.stages.iter().filter(|s| s.kind == StepKind::Soak) {
        let w = SoakWindow {
            window: WindowName::Step {
                step: s.name.clone(),
            },
            count: s.e2e_ms.count,
            ttft_p99_ms: (s.ttft_ms.count > 0).then_some(s.ttft_ms.p99),
            e2e_p99_ms: (s.e2e_ms.count > 0).then_some(s.e2e_ms.p99),
            output_tokens_per_s: Some(s.tokens.output_per_s),
        };
        match out.iter_mut().find(|(stage, _)| *stage == s.stage) {
            Some((_, v)) => v.push(w),
            None => out.push((s.stage.clone(), vec![w])),
        }
    }
    let Some(history) = ev.history else {
        return out;
    };
    for s in ev.stages.iter().filter(|s| s.kind != StepKind::Soak) {
        let mut windows: Vec<SoakWindow> = Vec::new();
        for (metric, h) in history
            .iter()
            .filter(|(m, _)| matches!(**m, "ttft" | "e2e"))
        {
            for (k, w) in h.windows.iter().filter(|w| w.step == s.name).enumerate() {
                if windows.len() <= k {
                    let (step, n) = (s.name.clone(), k + 1);
                    let window = if w.end_s - w.start_s >= 3600.0 {
                        WindowName::Hour { step, n }
                    } else {
                        WindowName::TenMinutes { step, n }
                    };
                    let rate = mean(
                        &ev.timeseries
                            .iter()
                            .filter(|r| {
                                r.step == s.name
                                    && r.elapsed_s > w.start_s
                                    && r.elapsed_s <= w.end_s
                            })
                            .map(|r| r.output_tokens_per_s)
                            .collect::<Vec<_>>(),
                    );
                    windows.push(SoakWindow {
                        window,
                        count: w.count,
                        ttft_p99_ms: None,
                        e2e_p99_ms: None,
                        output_tokens_per_s: rate,
                    });
                }
                if *metric == "ttft" {
                    windows[k].ttft_p99_ms = Some(w.p99_ms);
                } else {
                    windows[k].e2e_p99_ms = Some(w.p99_ms);
                    windows[k].count = w.count;
                }
            }
        }
        if windows.len() >= 2 {
            out.push((s.name.clone(), windows));
        }
    }
    out
}

/// Latency p99 of a later window of a soak against its first, and its throughput.
pub fn soak_drift(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    for (soak, windows) in soaks(ev) {
        let mut rises = Vec::new();
        type Pick = fn(&SoakWindow) -> Option<f64>;
        let metrics: [(DriftMetric, Pick); 2] = [
            (DriftMetric::Ttft, |w| w.ttft_p99_ms),
            (DriftMetric::E2e, |w| w.e2e_p99_ms),
        ];
        for (metric, get) in metrics {
            let counted: Vec<(&SoakWindow, f64)> = windows
                .iter()
                .filter(|w| w.count >= DRIFT_MIN_COUNT)
                .filter_map(|w| get(w).map(|v| (w, v)))
                .collect();
            let Some(&(first, p_first)) = counted.first() else {
                continue;
            };
            let Some(&(worst, p_worst)) = counted.iter().skip(1).max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                continue;
            };
            if p_worst >= DRIFT * p_first && p_worst - p_first >= DRIFT_MS {
                rises.push(Rise {
                    metric,
                    from_ms: p_first,
                    to_ms: p_worst,
                    from: first.window.clone(),
                    to: worst.window.clone(),
                });
            }
        }
        let throughput_fell = match (
            windows.first().and_then(|w| w.output_tokens_per_s),
            windows.last().and_then(|w| w.output_tokens_per_s),
        ) {
            (Some(a), Some(b)) if a > 0.0 && b < THROUGHPUT_DRIFT * a => Some((a, b)),
            _ => None,
        };
        if rises.is_empty() && throughput_fell.is_none() {
            continue;
        }
        out.push(Finding::new(
            Severity::Warning,
            Facts::SoakDrift(SoakDrift {
                soak,
                windows,
                rises,
                throughput_fell,
            }),
        ));
    }
}

/// Coefficient of variation of `v` around its least-squares line: fluctuation, not trend.
pub fn detrended_cv(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n < 3 {
        return None;
    }
    let m = mean(v)?;
    if m <= 0.0 {
        return None;
    }
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let xm = mean(&xs)?;
    let sxx: f64 = xs.iter().map(|x| (x - xm).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(v).map(|(x, y)| (x - xm) * (y - m)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let ss: f64 = xs
        .iter()
        .zip(v)
        .map(|(x, y)| (y - (m + slope * (x - xm))).powi(2))
        .sum();
    Some((ss / (n - 2) as f64).sqrt() / m)
}

/// Throughput or latency varying within a step more than its load explains.
pub fn fluctuation(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    for (i, s) in ev.stages.iter().enumerate() {
        let rows = ev.steady_rows(i, 0.2);
        if rows.len() < MIN_INTERVALS {
            continue;
        }
        let done: Vec<f64> = rows.iter().map(|r| r.completed as f64).collect();
        let Some(per_interval) = mean(&done).filter(|m| *m >= MIN_PER_INTERVAL) else {
            continue;
        };
        // Completions per interval vary like a Poisson count even when the service is steady.
        let expected = 1.0 / per_interval.sqrt();
        let tput: Vec<f64> = rows.iter().map(|r| r.output_tokens_per_s).collect();
        let lat: Vec<f64> = rows.iter().map(|r| r.e2e_p50_ms).collect();
        let tput_cv = detrended_cv(&tput).unwrap_or(0.0);
        let lat_cv = detrended_cv(&lat).unwrap_or(0.0);
        let tput_limit = THROUGHPUT_CV.max(2.0 * expected);
        if tput_cv <= tput_limit && lat_cv <= LATENCY_CV {
            continue;
        }
        out.push(Finding::new(
            Severity::Warning,
            Facts::Fluctuation(Fluctuation {
                step: s.name.clone(),
                intervals: rows.len(),
                completed_per_interval: per_interval,
                throughput_cv: tput_cv,
                expected_cv: expected,
                e2e_p50_cv: lat_cv,
            }),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Evidence;
    use super::super::testing::*;
    use super::*;
    use stampede_results::kinds::FindingCode;

    use stampede_results::read::{MetricHistory, WindowStats};
    use stampede_results::rows::TimeseriesRow;

    /// One row per second of a step starting at `start`.
    pub fn rows(
        step: &str,
        start: f64,
        n: usize,
        f: impl Fn(usize) -> (u64, u64, f64),
    ) -> Vec<TimeseriesRow> {
        (0..n)
            .map(|k| {
                let (completed, failed, e2e) = f(k);
                TimeseriesRow {
                    elapsed_s: start + k as f64 + 1.0,
                    step: step.into(),
                    interval: k as u32,
                    interval_s: 1.0,
                    offered_qps: Some(20.0),
                    achieved_qps: (completed + failed) as f64,
                    completed_rps: completed as f64,
                    in_flight: 20,
                    ttft_p50_ms: 50.0,
                    ttft_p99_ms: 80.0,
                    ttft_corrected_p99_ms: 80.0,
                    itl_p50_ms: 10.0,
                    itl_p99_ms: 14.0,
                    e2e_p50_ms: e2e,
                    e2e_p99_ms: e2e * 1.3,
                    schedule_lag_p99_ms: 0.1,
                    output_tokens_per_s: completed as f64 * 100.0,
                    completed,
                    failed,
                    timeouts: failed,
                    dropped: 0,
                    recorder_overflow: 0,
                    ..Default::default()
                }
            })
            .collect()
    }

    #[test]
    fn a_burst_of_errors_is_found_with_its_time_and_steady_errors_are_not_a_burst() {
        let steps = vec![open_step("s", 20.0, 30.0)];
        let ts = rows("s/qps=20", 0.0, 30, |k| {
            if (10..13).contains(&k) {
                (5, 15, 1000.0)
            } else {
                (20, 0, 1000.0)
            }
        });
        let ev = Evidence {
            timeseries: &ts,
            ..Evidence::stages_only(&steps, false)
        };
        let a = analysed(&ev);
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::ErrorBurst)
            .expect("burst");
        assert!(
            f.message
                .contains("between 10 s and 13 s, 45 requests failed"),
            "{}",
            f.message
        );
        assert!(f.suggestion.as_deref().unwrap().contains("timeouts"));

        let steady = rows("s/qps=20", 0.0, 30, |_| (15, 5, 1000.0));
        let ev = Evidence {
            timeseries: &steady,
            ..Evidence::stages_only(&steps, false)
        };
        assert!(!codes(&analysed(&ev)).contains(&"error-burst"));
        let clean = rows("s/qps=20", 0.0, 30, |_| (20, 0, 1000.0));
        let ev = Evidence {
            timeseries: &clean,
            ..Evidence::stages_only(&steps, false)
        };
        assert!(!codes(&analysed(&ev)).contains(&"error-burst"));
    }

    fn soak(
        p99s: &[f64],
    ) -> (
        Vec<stampede_results::summary::StageSummary>,
        BTreeMap<&'static str, MetricHistory>,
    ) {
        let hours = p99s.len() as f64;
        let steps = vec![open_step("soak", 10.0, hours * 3600.0)];
        let windows = p99s
            .iter()
            .enumerate()
            .map(|(k, p)| WindowStats {
                step: steps[0].name.clone(),
                start_s: k as f64 * 3600.0,
                end_s: (k + 1) as f64 * 3600.0,
                count: 36_000,
                p50_ms: p / 2.0,
                p99_ms: *p,
            })
            .collect();
        let mut h = BTreeMap::new();
        h.insert(
            "e2e",
            MetricHistory {
                steps: Vec::new(),
                windows,
                exact: true,
            },
        );
        (steps, h)
    }

    #[test]
    fn p99_growing_hour_over_hour_is_soak_drift_and_a_flat_soak_is_not() {
        let (steps, h) = soak(&[1000.0, 1050.0, 1400.0]);
        let ev = Evidence {
            history: Some(&h),
            ..Evidence::stages_only(&steps, false)
        };
        let a = analysed(&ev);
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::SoakDrift)
            .expect("drift");
        assert!(
            f.message.contains(
                "E2E p99 rose from 1000 ms in soak/qps=10 hour 1 to 1400 ms in soak/qps=10 hour 3"
            ),
            "{}",
            f.message
        );

        let (steps, h) = soak(&[1000.0, 1020.0, 990.0]);
        let ev = Evidence {
            history: Some(&h),
            ..Evidence::stages_only(&steps, false)
        };
        assert!(!codes(&analysed(&ev)).contains(&"soak-drift"));
    }

    fn checkpoints(
        e2e_p99: &[f64],
        tokens_per_s: &[f64],
    ) -> Vec<stampede_results::summary::StageSummary> {
        e2e_p99
            .iter()
            .zip(tokens_per_s)
            .enumerate()
            .map(|(k, (p, t))| {
                let mut s = open_step("soak", 4.0, 3600.0);
                s.name = format!("soak/{}", k + 1);
                s.kind = StepKind::Soak;
                s.e2e_ms = lat(14_400, p / 1.3, *p);
                s.tokens.output_per_s = *t;
                s
            })
            .collect()
    }

    #[test]
    fn a_soak_stage_compares_its_checkpoints() {
        let steps = checkpoints(&[1300.0, 1320.0, 1700.0, 1650.0], &[500.0; 4]);
        let a = analysed(&Evidence::stages_only(&steps, false));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::SoakDrift)
            .expect("drift");
        assert!(
            f.message
                .contains("E2E p99 rose from 1300 ms in soak/1 to 1700 ms in soak/3"),
            "{}",
            f.message
        );
        let fading = checkpoints(&[1300.0; 4], &[500.0, 480.0, 420.0, 400.0]);
        let a = analysed(&Evidence::stages_only(&fading, false));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::SoakDrift)
            .expect("drift");
        assert!(
            f.message.contains("output tokens/s fell from 500 to 400"),
            "{}",
            f.message
        );
        let steady = checkpoints(
            &[1300.0, 1290.0, 1330.0, 1310.0],
            &[500.0, 505.0, 495.0, 498.0],
        );
        let a = analysed(&Evidence::stages_only(&steady, false));
        assert!(!codes(&a).contains(&"soak-drift"));
    }

    #[test]
    fn unsteady_intervals_fluctuate_and_steady_ones_do_not() {
        let steps = vec![open_step("s", 20.0, 30.0)];
        let wobbly = rows("s/qps=20", 0.0, 30, |k| {
            if k % 2 == 0 {
                (30, 0, 600.0)
            } else {
                (10, 0, 1800.0)
            }
        });
        let ev = Evidence {
            timeseries: &wobbly,
            ..Evidence::stages_only(&steps, false)
        };
        let a = analysed(&ev);
        assert!(codes(&a).contains(&"fluctuation"), "{:?}", codes(&a));

        let steady = rows("s/qps=20", 0.0, 30, |k| {
            (19 + (k % 3) as u64, 0, 1000.0 + (k % 2) as f64 * 20.0)
        });
        let ev = Evidence {
            timeseries: &steady,
            ..Evidence::stages_only(&steps, false)
        };
        assert!(!codes(&analysed(&ev)).contains(&"fluctuation"));
        // A linear climb is a trend, not fluctuation.
        assert!(detrended_cv(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap() < 1e-9);
    }
}
