//! A results folder read back from its files alone, for `controller report` and
//! `controller compare`: summary.json (required), timeseries.csv, resources.csv, plan.toml and
//! histograms/*.hlog (each optional: what is missing is noted and its charts left out).
//!
//! Interval logs are reduced while they are read (per-step distributions, per-window
//! percentiles for soak drift), so a day-long run never holds its histograms in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use stampede_common::metrics::new_histogram;

use crate::hlog;
use crate::rows::TimeseriesRow;
use crate::summary::{RunSummary, SCHEMA, StageSummary};
use crate::table::NumericTable;

/// The metrics whose interval logs the report reads.
pub const LOGGED_METRICS: [&str; 4] = ["ttft", "itl", "tpot", "e2e"];

/// Percentiles at which a distribution is plotted: 0 to 99.999, evenly on the log scale of
/// 1 / (1 - p), the usual HdrHistogram percentile plot.
fn plot_quantiles() -> Vec<f64> {
    (0..=50)
        .map(|k| 1.0 - 10f64.powf(-f64::from(k) / 10.0))
        .collect()
}

/// Why a folder could not be read as results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error(
        "{dir} is not a Stampede results folder: {missing} is missing (a results folder holds summary.json, stages.csv, timeseries.csv, plan.toml and histograms/)"
    )]
    NotResults { dir: PathBuf, missing: &'static str },
    #[error("{path}: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error("{path}: schema {found:?}, expected {SCHEMA:?}")]
    Schema { path: PathBuf, found: String },
}

/// Something the folder lacked or that could not be read; the report says so.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Missing(&'static str),
    Unreadable { file: String, detail: String },
}

/// One step's whole distribution of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDistribution {
    pub step: String,
    pub count: u64,
    /// (percentile in 0..100, milliseconds), from p0 up to the maximum, placed at 1 - 1/count
    /// (as far as the samples reach).
    pub curve: Vec<(f64, f64)>,
}

/// A metric's percentiles over one window of a long step, for soak drift.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub step: String,
    /// Seconds since the run's first step.
    pub start_s: f64,
    pub end_s: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What was drawn from one metric's interval log, or from timeseries.csv without one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricHistory {
    pub steps: Vec<StepDistribution>,
    pub windows: Vec<WindowStats>,
    /// True when the windows come from merged histograms; false when they are medians of
    /// per-interval percentiles from timeseries.csv (an approximation).
    pub exact: bool,
}

/// A results folder, read.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    /// summary.json, read by the type that wrote it. Its findings are the run's; the report
    /// draws them again from the files, so a newer Stampede explains an older run with its own
    /// analysis.
    pub summary: RunSummary,
    pub plan_toml: Option<String>,
    pub timeseries: Vec<TimeseriesRow>,
    pub resources: Option<NumericTable>,
    /// By metric name (of [`LOGGED_METRICS`]).
    pub history: BTreeMap<&'static str, MetricHistory>,
    /// The steps that count (warm-up steps left out), for the analysis and the charts.
    pub measured: Vec<StageSummary>,
    /// When each measured step started, seconds since the run's first step.
    pub measured_starts: Vec<f64>,
    pub notes: Vec<Note>,
}

/// The window soak drift is measured over within a step: an hour for steps of two hours or more
/// (the brief's "hour N against hour 1"), ten minutes for steps of twenty minutes or more, none
/// below. Drift is only read within a step, where the load is constant.
pub fn soak_window(span_s: f64) -> Option<f64> {
    if span_s >= 7200.0 {
        Some(3600.0)
    } else if span_s >= 1200.0 {
        Some(600.0)
    } else {
        None
    }
}

/// When each step started, in seconds since the run's first step: from its first interval in
/// timeseries.csv (adaptive stages leave gaps between steps), else right after the previous
/// step, since steps of a batch run back to back.
pub fn step_starts(stages: &[StageSummary], rows: &[TimeseriesRow]) -> Vec<f64> {
    let mut first: BTreeMap<&str, &TimeseriesRow> = BTreeMap::new();
    for r in rows {
        let e = first.entry(r.step.as_str()).or_insert(r);
        if r.interval < e.interval {
            *e = r;
        }
    }
    let mut next = 0.0;
    stages
        .iter()
        .map(|s| {
            let start = first.get(s.name.as_str()).map_or(next, |r| {
                (r.elapsed_s - r.interval_s * f64::from(r.interval + 1)).max(0.0)
            });
            next = start + s.window_s();
            start
        })
        .collect()
}

impl RunData {
    /// Reads a results folder.
    ///
    /// # Errors
    /// When the folder has no readable summary.json of this schema. Other files only add notes.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let summary_path = dir.join("summary.json");
        if !dir.is_dir() {
            return Err(LoadError::NotResults {
                dir: dir.to_path_buf(),
                missing: "the folder itself",
            });
        }
        if !summary_path.is_file() {
            return Err(LoadError::NotResults {
                dir: dir.to_path_buf(),
                missing: "summary.json",
            });
        }
        let unreadable = |path: &Path, detail: String| LoadError::Unreadable {
            path: path.to_path_buf(),
            detail,
        };
        let text =
            std::fs::read(&summary_path).map_err(|e| unreadable(&summary_path, e.to_string()))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| unreadable(&summary_path, e.to_string()))?;
        let schema = raw["schema"].as_str().unwrap_or_default();
        if schema != SCHEMA {
            return Err(LoadError::Schema {
                path: summary_path,
                found: schema.to_string(),
            });
        }
        let summary: RunSummary =
            serde_json::from_value(raw).map_err(|e| unreadable(&summary_path, e.to_string()))?;

        let mut notes = Vec::new();
        let plan_toml = std::fs::read_to_string(dir.join("plan.toml")).ok();
        if plan_toml.is_none() {
            notes.push(Note::Missing("plan.toml"));
        }
        let timeseries = read_timeseries(&dir.join("timeseries.csv"), &mut notes);
        let resources_path = dir.join("resources.csv");
        let resources = if resources_path.is_file() {
            match NumericTable::read(&resources_path) {
                Ok(t) => Some(t),
                Err(e) => {
                    notes.push(Note::Unreadable {
                        file: "resources.csv".into(),
                        detail: e.detail,
                    });
                    None
                }
            }
        } else {
            None
        };
        let starts = step_starts(&summary.stages, &timeseries);
        let mut history = BTreeMap::new();
        for metric in LOGGED_METRICS {
            let path = hlog::path(dir, metric);
            let from_log = if path.is_file() {
                match read_history(&path, &summary.stages, &starts) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        notes.push(Note::Unreadable {
                            file: format!("{}/{metric}.hlog", hlog::DIR),
                            detail: e.to_string(),
                        });
                        None
                    }
                }
            } else {
                if metric == "e2e" {
                    notes.push(Note::Missing("histograms/"));
                }
                None
            };
            let h = from_log.unwrap_or_else(|| {
                history_from_timeseries(metric, &timeseries, &summary.stages, &starts)
            });
            history.insert(metric, h);
        }
        let (measured, measured_starts) = summary
            .stages
            .iter()
            .zip(&starts)
            .filter(|(s, _)| !s.warmup)
            .map(|(s, t)| (s.clone(), *t))
            .unzip();
        Ok(RunData {
            measured,
            measured_starts,
            dir: dir.to_path_buf(),
            summary,
            plan_toml,
            timeseries,
            resources,
            history,
            notes,
        })
    }

    /// True when the plan set thresholds (any step was checked).
    pub fn has_slo(&self) -> bool {
        self.measured.iter().any(|s| !s.slo.checks.is_empty())
    }
}

fn read_timeseries(path: &Path, notes: &mut Vec<Note>) -> Vec<TimeseriesRow> {
    if !path.is_file() {
        notes.push(Note::Missing("timeseries.csv"));
        return Vec::new();
    }
    let rows = csv::Reader::from_path(path).and_then(|mut r| {
        r.deserialize::<TimeseriesRow>()
            .collect::<Result<Vec<_>, _>>()
    });
    match rows {
        Ok(mut rows) => {
            rows.sort_by(|a, b| a.elapsed_s.total_cmp(&b.elapsed_s));
            rows
        }
        Err(e) => {
            notes.push(Note::Unreadable {
                file: "timeseries.csv".into(),
                detail: e.to_string(),
            });
            Vec::new()
        }
    }
}

/// Reduces one interval log: each step's merged distribution, and its soak windows.
fn read_history(
    path: &Path,
    stages: &[StageSummary],
    starts: &[f64],
) -> Result<MetricHistory, hlog::HlogError> {
    // tag -> (step index, start, window)
    let steps: BTreeMap<String, (usize, f64, Option<f64>)> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                hlog::tag_of(&s.name),
                (i, starts[i], soak_window(s.duration_s)),
            )
        })
        .collect();
    let mut per_step: BTreeMap<usize, Histogram<u64>> = BTreeMap::new();
    let mut windows: BTreeMap<(usize, u64), Histogram<u64>> = BTreeMap::new();
    hlog::read(path, |iv| {
        let Some(&(i, start, window)) = steps.get(iv.tag.as_deref().unwrap_or_default()) else {
            return;
        };
        // One layout everywhere: adds cannot fail for range.
        let _ = per_step
            .entry(i)
            .or_insert_with(new_histogram)
            .add(&iv.histogram);
        if let Some(w) = window {
            let k = ((iv.start_s - start) / w).floor().max(0.0) as u64;
            let _ = windows
                .entry((i, k))
                .or_insert_with(new_histogram)
                .add(&iv.histogram);
        }
    })?;
    let quantiles = plot_quantiles();
    let ms = |us: u64| us as f64 / 1000.0;
    let steps_out = per_step
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(&i, h)| {
            // Past 1 - 1/count every quantile is the maximum: the curve ends there, at it.
            let last = 1.0 - 1.0 / h.len() as f64;
            let mut curve: Vec<(f64, f64)> = quantiles
                .iter()
                .filter(|&&q| q < last)
                .map(|&q| (q * 100.0, ms(h.value_at_quantile(q))))
                .collect();
            curve.push((last * 100.0, ms(h.max())));
            StepDistribution {
                step: stages[i].name.clone(),
                count: h.len(),
                curve,
            }
        })
        .collect();
    let windows = windows
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .filter_map(|(&(i, k), h)| {
            let w = soak_window(stages[i].duration_s)?;
            Some(WindowStats {
                step: stages[i].name.clone(),
                start_s: starts[i] + k as f64 * w,
                end_s: starts[i] + (k + 1) as f64 * w,
                count: h.len(),
                p50_ms: ms(h.value_at_quantile(0.5)),
                p99_ms: ms(h.value_at_quantile(0.99)),
            })
        })
        .collect();
    Ok(MetricHistory {
        steps: steps_out,
        windows,
        exact: true,
    })
}

/// Without an interval log: windows from the median of the intervals' percentiles. Not a merged
/// percentile, so marked inexact; still enough to see a drift of tens of percent.
fn history_from_timeseries(
    metric: &str,
    rows: &[TimeseriesRow],
    stages: &[StageSummary],
    starts: &[f64],
) -> MetricHistory {
    let pick: fn(&TimeseriesRow) -> (f64, f64) = match metric {
        "ttft" => |r| (r.ttft_p50_ms, r.ttft_p99_ms),
        "itl" => |r| (r.itl_p50_ms, r.itl_p99_ms),
        "e2e" => |r| (r.e2e_p50_ms, r.e2e_p99_ms),
        _ => return MetricHistory::default(),
    };
    type Acc = (u64, Vec<f64>, Vec<f64>);
    let mut by_window: BTreeMap<(usize, u64), Acc> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.completed > 0) {
        let Some(i) = stages.iter().position(|s| s.name == r.step) else {
            continue;
        };
        let Some(w) = soak_window(stages[i].duration_s) else {
            continue;
        };
        let offset = (r.elapsed_s - r.interval_s - starts[i]).max(0.0);
        let (p50, p99) = pick(r);
        let e = by_window
            .entry((i, (offset / w).floor() as u64))
            .or_default();
        e.0 += r.completed;
        e.1.push(p50);
        e.2.push(p99);
    }
    MetricHistory {
        steps: Vec::new(),
        windows: by_window
            .into_iter()
            .filter_map(|((i, k), (count, mut p50, mut p99))| {
                let w = soak_window(stages[i].duration_s)?;
                Some(WindowStats {
                    step: stages[i].name.clone(),
                    start_s: starts[i] + k as f64 * w,
                    end_s: starts[i] + (k + 1) as f64 * w,
                    count,
                    p50_ms: median(&mut p50),
                    p99_ms: median(&mut p99),
                })
            })
            .collect(),
        exact: false,
    }
}

/// The median of some values (0 when there are none).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_summary_is_named_with_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunData::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("summary.json is missing"), "{err}");
        let err = RunData::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Stampede results folder"), "{err}");
    }

    #[test]
    fn another_schema_or_broken_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.json"), r#"{"schema":"other/v9"}"#).unwrap();
        let err = RunData::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("summary.json") && err.contains("other/v9"),
            "{err}"
        );
        std::fs::write(dir.path().join("summary.json"), "{").unwrap();
        let err = RunData::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("summary.json"), "{err}");
    }

    #[test]
    fn soak_windows_follow_the_run_length() {
        assert_eq!(soak_window(600.0), None);
        assert_eq!(soak_window(1800.0), Some(600.0));
        assert_eq!(soak_window(4.0 * 3600.0), Some(3600.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
