//! `controller compare A B`: the change of each metric from run A (the baseline) to run B, per
//! step matched by name and overall, with each change judged against the noise of the two runs,
//! so that CI can fail on a regression and stay quiet on a rerun.
//!
//! Noise: for a metric with a per-interval column in timeseries.csv, twice the combined
//! standard error of the two steps' interval means (about a 95% band), relative to A, and at
//! least [`NOISE_FLOOR_PCT`]; error rates use the binomial standard error. A change beyond the
//! noise in the bad direction by at least the threshold is a regression.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::Evidence;
use crate::analysis::capacity::max_qps_within_slo;
use crate::i18n::{Lang, num};
use stampede_results::read::RunData;
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::StageSummary;
use stampede_results::write_atomic;

/// The smallest band of noise any relative change is judged against (percent): below it, two
/// runs of one build differ by scheduling alone.
pub const NOISE_FLOOR_PCT: f64 = 2.0;
/// Error rates: the smallest band, in percentage points.
const ERROR_NOISE_FLOOR_PP: f64 = 0.1;

/// What `controller compare` was asked.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub a: PathBuf,
    pub b: PathBuf,
    /// A change in the bad direction of at least this many percent (beyond noise) is a
    /// regression; for error rates, a tenth of it in percentage points.
    pub threshold_pct: f64,
    /// Where to write the comparison (`.json` for JSON, else Markdown); by default
    /// `B/compare-<A's folder name>.md`.
    pub out: Option<PathBuf>,
    pub lang: Lang,
    /// Compare even when steps did not run as planned (interrupted, paused, rate changed,
    /// aborted), warning loudly; without it such runs are refused.
    pub accept_unplanned: bool,
}

/// How a metric moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within noise.
    Same,
    Better,
    /// Worse beyond noise, but less than the threshold.
    Worse,
    Regression,
}

/// One metric of one step in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub step: String,
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// (B - A) / A in percent; percentage points for error rates.
    pub change: Option<f64>,
    /// The band the change is judged against, in the same unit.
    pub noise: f64,
    /// True when the change is in percentage points.
    pub points: bool,
    pub verdict: Verdict,
}

/// The comparison of two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: PathBuf,
    pub b: PathBuf,
    pub threshold_pct: f64,
    pub same_plan: bool,
    pub rows: Vec<Row>,
    /// Steps found in only one of the runs.
    pub unmatched: Vec<String>,
    /// Measured steps of either run that did not run as planned, and how they ended
    /// (`B: steps/qps=16 interrupted, ran 10.3 s of 20 s`).
    pub unplanned: Vec<String>,
}

impl Comparison {
    /// The rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regression)
    }
}

type Get = fn(&StageSummary) -> Option<f64>;
type Series = fn(&TimeseriesRow) -> f64;

/// A compared metric: its name, which way is better, and its per-interval column if any.
struct Metric {
    name: &'static str,
    higher_is_better: bool,
    get: Get,
    series: Option<Series>,
}

/// A latency statistic, when the step measured any.
fn lat(l: &stampede_common::metrics::LatencySummary, v: f64) -> Option<f64> {
    (l.count > 0).then_some(v)
}

const METRICS: [Metric; 11] = [
    Metric {
        name: "throughput_rps",
        higher_is_better: true,
        get: |s| Some(s.throughput_rps),
        series: Some(|r| r.completed_rps),
    },
    Metric {
        name: "output_tokens_per_s",
        higher_is_better: true,
        get: |s| Some(s.tokens.output_per_s),
        series: Some(|r| r.output_tokens_per_s),
    },
    Metric {
        name: "goodput_qps",
        higher_is_better: true,
        get: |s| Some(s.goodput_qps),
        series: None,
    },
    Metric {
        name: "ttft_p50_ms",
        higher_is_better: false,
        get: |s| lat(&s.ttft_ms, s.ttft_ms.p50),
        series: Some(|r| r.ttft_p50_ms),
    },
    Metric {
        name: "ttft_p99_ms",
        higher_is_better: false,
        get: |s| lat(&s.ttft_ms, s.ttft_ms.p99),
        series: Some(|r| r.ttft_p99_ms),
    },
    Metric {
        name: "itl_p50_ms",
        higher_is_better: false,
        get: |s| lat(&s.itl_ms, s.itl_ms.p50),
        series: Some(|r| r.itl_p50_ms),
    },
    Metric {
        name: "itl_p99_ms",
        higher_is_better: false,
        get: |s| lat(&s.itl_ms, s.itl_ms.p99),
        series: Some(|r| r.itl_p99_ms),
    },
    Metric {
        name: "tpot_p50_ms",
        higher_is_better: false,
        get: |s| lat(&s.tpot_ms, s.tpot_ms.p50),
        series: None,
    },
    Metric {
        name: "tpot_p99_ms",
        higher_is_better: false,
        get: |s| lat(&s.tpot_ms, s.tpot_ms.p99),
        series: None,
    },
    Metric {
        name: "e2e_p50_ms",
        higher_is_better: false,
        get: |s| lat(&s.e2e_ms, s.e2e_ms.p50),
        series: Some(|r| r.e2e_p50_ms),
    },
    Metric {
        name: "e2e_p99_ms",
        higher_is_better: false,
        get: |s| lat(&s.e2e_ms, s.e2e_ms.p99),
        series: Some(|r| r.e2e_p99_ms),
    },
];

/// The standard error of the mean of a measured step's steady intervals of a column. For a
/// latency, only intervals where requests completed count: the others read 0 and are not
/// measurements.
fn standard_error(run: &RunData, step: usize, f: Series, latency: bool) -> Option<f64> {
    let rows = Evidence::of(run).steady_rows(step, 0.2);
    let v: Vec<f64> = rows
        .iter()
        .filter(|r| !latency || r.completed > 0)
        .map(|r| f(r))
        .collect();
    let n = v.len();
    if n < 3 {
        return None;
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some((var / n as f64).sqrt())
}

/// Judges a relative change against noise and the threshold.
fn judge(change: f64, noise: f64, higher_is_better: bool, threshold: f64) -> Verdict {
    if change.abs() <= noise {
        return Verdict::Same;
    }
    let worse = if higher_is_better {
        change < 0.0
    } else {
        change > 0.0
    };
    match (worse, change.abs() >= threshold) {
        (false, _) => Verdict::Better,
        (true, true) => Verdict::Regression,
        (true, false) => Verdict::Worse,
    }
}

/// Each measured step of `run` (called `side`) that did not run as planned, with how it ended
/// and the time it ran.
pub fn unplanned_steps(side: &str, run: &RunData) -> Vec<String> {
    run.measured
        .iter()
        .filter(|s| !s.ran_as_planned())
        .map(|s| {
            let planned = s
                .planned_duration_s
                .map_or_else(String::new, |p| format!(" of {} s", num(p)));
            format!(
                "{side}: {} {}, ran {} s{planned}",
                s.name,
                s.ended.label(s.paused_s),
                num(s.duration_s)
            )
        })
        .collect()
}

/// Compares two runs already read.
pub fn compare(a: &RunData, b: &RunData, threshold_pct: f64) -> Comparison {
    let mut unplanned = unplanned_steps("A", a);
    unplanned.extend(unplanned_steps("B", b));
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    // Warm-up steps are not compared: they are not measurements.
    for (ia, sa) in a.measured.iter().enumerate() {
        let Some(ib) = b.measured.iter().position(|s| s.name == sa.name) else {
            unmatched.push(format!("A: {}", sa.name));
            continue;
        };
        let sb = &b.measured[ib];
        for m in &METRICS {
            let (va, vb) = ((m.get)(sa), (m.get)(sb));
            let noise = m
                .series
                .and_then(|f| {
                    let latency = m.name.ends_with("_ms");
                    Some((
                        standard_error(a, ia, f, latency)?,
                        standard_error(b, ib, f, latency)?,
                    ))
                })
                .zip(va.filter(|v| *v != 0.0))
                .map_or(NOISE_FLOOR_PCT, |((ea, eb), va)| {
                    (200.0 * (ea * ea + eb * eb).sqrt() / va.abs()).max(NOISE_FLOOR_PCT)
                });
            rows.push(relative_row(
                &sa.name,
                m.name,
                va,
                vb,
                noise,
                m.higher_is_better,
                threshold_pct,
            ));
        }
        rows.push(error_row(&sa.name, sa, sb, threshold_pct));
    }
    for sb in &b.measured {
        if !a.measured.iter().any(|s| s.name == sb.name) {
            unmatched.push(format!("B: {}", sb.name));
        }
    }
    if let (Some(oa), Some(ob)) = (&a.summary.overall, &b.summary.overall) {
        for m in &METRICS {
            rows.push(relative_row(
                "overall",
                m.name,
                (m.get)(oa),
                (m.get)(ob),
                NOISE_FLOOR_PCT,
                m.higher_is_better,
                threshold_pct,
            ));
        }
        rows.push(error_row("overall", oa, ob, threshold_pct));
    }
    // The run's capacity: discrete steps, so any drop is beyond noise.
    let qa = max_qps_within_slo(&Evidence::of(a), &mut Vec::new());
    let qb = max_qps_within_slo(&Evidence::of(b), &mut Vec::new());
    if a.has_slo() || b.has_slo() {
        let row = match (qa, qb) {
            (Some(_), None) => Row {
                step: "run".into(),
                metric: "max_qps_within_slo",
                a: qa,
                b: qb,
                change: Some(-100.0),
                noise: 0.0,
                points: false,
                verdict: Verdict::Regression,
            },
            _ => relative_row(
                "run",
                "max_qps_within_slo",
                qa,
                qb,
                0.0,
                true,
                threshold_pct,
            ),
        };
        rows.push(row);
    }
    Comparison {
        a: a.dir.clone(),
        b: b.dir.clone(),
        threshold_pct,
        same_plan: a.summary.manifest.plan_hash == b.summary.manifest.plan_hash,
        rows,
        unmatched,
        unplanned,
    }
}

fn relative_row(
    step: &str,
    metric: &'static str,
    a: Option<f64>,
    b: Option<f64>,
    noise: f64,
    higher_is_better: bool,
    threshold: f64,
) -> Row {
    let change = match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => Some((b - a) / a.abs() * 100.0),
        (Some(a), Some(b)) if a == b => Some(0.0),
        _ => None,
    };
    Row {
        step: step.into(),
        metric,
        a,
        b,
        change,
        noise,
        points: false,
        verdict: change.map_or(Verdict::Same, |c| {
            judge(c, noise, higher_is_better, threshold)
        }),
    }
}

/// Error rates move in percentage points, against the binomial noise of both runs.
fn error_row(step: &str, a: &StageSummary, b: &StageSummary, threshold: f64) -> Row {
    let (pa, pb) = (a.rates.error_rate, b.rates.error_rate);
    let var = |p: f64, n: u64| {
        if n == 0 {
            0.0
        } else {
            p * (1.0 - p) / n as f64
        }
    };
    let noise = (200.0 * (var(pa, a.requests.sent) + var(pb, b.requests.sent)).sqrt())
        .max(ERROR_NOISE_FLOOR_PP);
    let change = (pb - pa) * 100.0;
    Row {
        step: step.into(),
        metric: "error_rate",
        a: Some(pa),
        b: Some(pb),
        change: Some(change),
        noise,
        points: true,
        verdict: judge(change, noise, false, threshold / 10.0),
    }
}

fn fmt_change(r: &Row) -> String {
    match r.change {
        Some(c) if r.points => format!("{c:+.2} pp"),
        Some(c) => format!("{c:+.1}%"),
        None => "-".into(),
    }
}

fn fmt_value(v: Option<f64>, metric: &str) -> String {
    match v {
        Some(v) if metric == "error_rate" => format!("{}%", num(v * 100.0)),
        Some(v) => num(v),
        None => "-".into(),
    }
}

fn verdict_text(v: Verdict, lang: Lang) -> &'static str {
    let l = lang.labels();
    match v {
        Verdict::Same => l.within_noise,
        Verdict::Better => l.improvement,
        Verdict::Worse => l.changed,
        Verdict::Regression => l.regression,
    }
}

/// Prints the changes beyond noise and a verdict: nothing but the verdict when the runs agree.
///
/// # Errors
/// When the writer fails.
pub fn print<W: Write>(out: &mut W, c: &Comparison, lang: Lang) -> std::io::Result<()> {
    let l = lang.labels();
    writeln!(out, "A {}: {}", l.baseline, c.a.display())?;
    writeln!(out, "B {}: {}", l.candidate, c.b.display())?;
    if !c.same_plan {
        writeln!(out, "warning: {}", l.different_plans)?;
    }
    for u in &c.unplanned {
        writeln!(
            out,
            "WARNING: not run as planned, its figures are not like for like: {u}"
        )?;
    }
    let moved: Vec<&Row> = c
        .rows
        .iter()
        .filter(|r| r.verdict != Verdict::Same)
        .collect();
    if !moved.is_empty() {
        writeln!(
            out,
            "{:<28} {:<20} {:>10} {:>10} {:>10} {:>9}  {}",
            l.col_step, l.col_metric, "A", "B", l.col_change, l.col_noise, l.col_flag
        )?;
        for r in moved {
            let noise = if r.points {
                format!("±{:.2}", r.noise)
            } else {
                format!("±{:.1}%", r.noise)
            };
            writeln!(
                out,
                "{:<28} {:<20} {:>10} {:>10} {:>10} {:>9}  {}",
                r.step,
                r.metric,
                fmt_value(r.a, r.metric),
                fmt_value(r.b, r.metric),
                fmt_change(r),
                noise,
                verdict_text(r.verdict, lang)
            )?;
        }
    }
    for u in &c.unmatched {
        writeln!(out, "{}: {u}", l.unmatched_steps)?;
    }
    let regressions: Vec<String> = c
        .regressions()
        .map(|r| format!("{} {}", r.step, r.metric))
        .collect();
    if regressions.is_empty() {
        writeln!(
            out,
            "no regression past {}% ({} of {} metrics changed beyond noise)",
            num(c.threshold_pct),
            c.rows.iter().filter(|r| r.verdict != Verdict::Same).count(),
            c.rows.len()
        )
    } else {
        writeln!(
            out,
            "{} regression(s) past {}%: {}",
            regressions.len(),
            num(c.threshold_pct),
            regressions.join(", ")
        )
    }
}

/// Writes the whole comparison as Markdown.
///
/// # Errors
/// When the writer fails.
pub fn write_markdown<W: Write>(out: &mut W, c: &Comparison, lang: Lang) -> std::io::Result<()> {
    let l = lang.labels();
    writeln!(out, "# {}\n", l.comparison)?;
    writeln!(out, "- **A** {}: `{}`", l.baseline, c.a.display())?;
    writeln!(out, "- **B** {}: `{}`", l.candidate, c.b.display())?;
    if !c.same_plan {
        writeln!(out, "\n> {}", l.different_plans)?;
    }
    for u in &c.unplanned {
        writeln!(
            out,
            "\n> **WARNING: not run as planned, its figures are not like for like:** {u}"
        )?;
    }
    writeln!(
        out,
        "\n| {} | {} | A | B | {} | {} | {} |\n| --- | --- | ---: | ---: | ---: | ---: | --- |",
        l.col_step, l.col_metric, l.col_change, l.col_noise, l.col_flag
    )?;
    for r in &c.rows {
        let noise = if r.points {
            format!("±{:.2} pp", r.noise)
        } else {
            format!("±{:.1}%", r.noise)
        };
        let flag = match r.verdict {
            Verdict::Regression => format!("**{}**", verdict_text(r.verdict, lang)),
            v => verdict_text(v, lang).to_string(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.step.replace('|', "\\|"),
            r.metric,
            fmt_value(r.a, r.metric),
            fmt_value(r.b, r.metric),
            fmt_change(r),
            noise,
            flag
        )?;
    }
    if !c.unmatched.is_empty() {
        writeln!(out, "\n## {}\n", l.unmatched_steps)?;
        for u in &c.unmatched {
            writeln!(out, "- {u}")?;
        }
    }
    let n = c.regressions().count();
    writeln!(
        out,
        "\n{} {}: {n}",
        l.regression,
        num(c.threshold_pct) + "%"
    )
}

/// `controller compare`: reads both folders, prints, writes the file; `true` on a regression.
///
/// # Errors
/// When a folder is not a results folder or the output cannot be written.
pub fn run<W: Write>(opts: &CompareOptions, out: &mut W) -> Result<bool, crate::ReportError> {
    let a = RunData::load(&opts.a)?;
    let b = RunData::load(&opts.b)?;
    let c = compare(&a, &b, opts.threshold_pct);
    if !c.unplanned.is_empty() && !opts.accept_unplanned {
        return Err(crate::ReportError::Unplanned(c.unplanned));
    }
    print(out, &c, opts.lang)?;
    let path = opts
        .out
        .clone()
        .unwrap_or_else(|| default_out(&opts.a, &opts.b));
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::to_writer_pretty(&mut bytes, &c).map_err(|source| {
            crate::ReportError::Encode {
                file: "the comparison",
                source,
            }
        })?;
    } else {
        write_markdown(&mut bytes, &c, opts.lang)?;
    }
    write_atomic(&path, &bytes)?;
    writeln!(out, "comparison: {}", path.display())?;
    Ok(c.regressions().next().is_some())
}

fn default_out(a: &Path, b: &Path) -> PathBuf {
    let name = a
        .file_name()
        .map_or_else(|| "a".to_string(), |n| n.to_string_lossy().into_owned());
    b.join(format!("compare-{name}.md"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn folder(stages: &[StageSummary]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fixture::write_steps_run(dir.path(), stages);
        dir
    }

    #[test]
    fn a_run_compared_with_itself_is_quiet() {
        let a = folder(&fixture::knee_steps());
        let run = RunData::load(a.path()).unwrap();
        let c = compare(&run, &run, 10.0);
        assert!(c.same_plan && c.unmatched.is_empty());
        assert!(
            c.rows.iter().all(|r| r.verdict == Verdict::Same),
            "{:?}",
            c.rows.iter().find(|r| r.verdict != Verdict::Same)
        );
        let mut out = Vec::new();
        print(&mut out, &c, Lang::En).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("no regression past 10% (0 of"), "{text}");
        assert!(!text.contains("REGRESSION"));
    }

    #[test]
    fn an_injected_regression_is_flagged_and_noise_is_not() {
        let base = fixture::knee_steps();
        let mut slower = base.clone();
        // 30% slower TTFT at 4/s: a regression; 1% slower E2E at 8/s: noise.
        slower[0].ttft_ms.p99 *= 1.3;
        slower[1].e2e_ms.p99 *= 1.01;
        let (a, b) = (folder(&base), folder(&slower));
        let (ra, rb) = (
            RunData::load(a.path()).unwrap(),
            RunData::load(b.path()).unwrap(),
        );
        let c = compare(&ra, &rb, 10.0);
        let flagged: Vec<(&str, &str)> = c
            .regressions()
            .map(|r| (r.step.as_str(), r.metric))
            .collect();
        assert_eq!(flagged, vec![("steps/qps=4", "ttft_p99_ms")]);
        let e2e = c
            .rows
            .iter()
            .find(|r| r.step == "steps/qps=8" && r.metric == "e2e_p99_ms")
            .unwrap();
        assert_eq!(e2e.verdict, Verdict::Same);
        // Better is not a regression.
        let c = compare(&rb, &ra, 10.0);
        assert_eq!(c.regressions().count(), 0);
        assert!(c.rows.iter().any(|r| r.verdict == Verdict::Better));
    }

    #[test]
    fn losing_capacity_and_more_errors_are_regressions() {
        let base = fixture::knee_steps();
        let mut worse = base.clone();
        worse[1] = crate::analysis::testing::with_slo(
            {
                let mut s = worse[1].clone();
                s.ttft_ms.p99 = 2000.0;
                s
            },
            "ttft_p99",
            1500.0,
        );
        worse[0].rates.error_rate = 0.1;
        let (a, b) = (folder(&base), folder(&worse));
        let (ra, rb) = (
            RunData::load(a.path()).unwrap(),
            RunData::load(b.path()).unwrap(),
        );
        let c = compare(&ra, &rb, 10.0);
        let flagged: Vec<(&str, &str)> = c
            .regressions()
            .map(|r| (r.step.as_str(), r.metric))
            .collect();
        assert!(
            flagged.contains(&("run", "max_qps_within_slo")),
            "{flagged:?}"
        );
        assert!(
            flagged.contains(&("steps/qps=4", "error_rate")),
            "{flagged:?}"
        );
    }

    #[test]
    fn the_command_writes_its_file_and_reports_bad_folders() {
        let a = folder(&fixture::knee_steps());
        let out_file = a.path().join("cmp.json");
        let opts = CompareOptions {
            a: a.path().into(),
            b: a.path().into(),
            threshold_pct: 5.0,
            out: Some(out_file.clone()),
            lang: Lang::En,
            accept_unplanned: false,
        };
        let mut out = Vec::new();
        assert!(!run(&opts, &mut out).unwrap());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
        assert!(json["rows"].as_array().is_some_and(|r| !r.is_empty()));
        let md_opts = CompareOptions {
            out: None,
            ..opts.clone()
        };
        run(&md_opts, &mut Vec::new()).unwrap();
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(a.path().join(format!("compare-{name}.md")).is_file());

        let empty = tempfile::tempdir().unwrap();
        let bad = CompareOptions {
            b: empty.path().into(),
            ..opts
        };
        let err = format!("{:#}", run(&bad, &mut Vec::new()).unwrap_err());
        assert!(
            err.contains(&empty.path().display().to_string())
                && err.contains("summary.json is missing"),
            "{err}"
        );
    }

    /// An interrupted step is refused by name and how it ended; with `--accept-unplanned` the
    /// comparison goes on and says so before anything else.
    #[test]
    fn runs_whose_steps_did_not_run_as_planned_are_refused_unless_accepted() {
        let full = folder(&fixture::knee_steps());
        let mut cut = fixture::knee_steps();
        cut[1].ended = stampede_results::kinds::StepEnd::Interrupted;
        cut[1].planned_duration_s = Some(cut[1].duration_s);
        cut[1].duration_s /= 2.0;
        let cut_name = cut[1].name.clone();
        let cut = folder(&cut);
        let opts = CompareOptions {
            a: full.path().into(),
            b: cut.path().into(),
            threshold_pct: 10.0,
            out: Some(cut.path().join("cmp.md")),
            lang: Lang::En,
            accept_unplanned: false,
        };
        let err = run(&opts, &mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("B: {cut_name} interrupted, ran"))
                && err.contains("--accept-unplanned"),
            "{err}"
        );
        assert!(!cut.path().join("cmp.md").exists());
        let accepted = CompareOptions {
            accept_unplanned: true,
            ..opts
        };
        let mut out = Vec::new();
        run(&accepted, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let warning = text
            .lines()
            .find(|l| l.starts_with("WARNING: not run as planned"))
            .unwrap_or_default();
        assert!(warning.contains(&cut_name), "{text}");
        let md = std::fs::read_to_string(cut.path().join("cmp.md")).unwrap();
        assert!(md.contains("**WARNING: not run as planned"), "{md}");
    }
}
