//! Which charts a results folder supports, and their data: latency and throughput against load,
//! TTFT against input length, the run over time, resources, whole distributions, soak drift.
//! A chart is left out when its data is not there.

use std::collections::BTreeMap;

use super::i18n::{Labels, Lang};
use super::svg::{Band, Chart, Marker, Scale, Series};
use crate::analysis::Evidence;
use crate::analysis::capacity::{knee_by_stage, load_groups, served_rate};
use crate::analysis::server::{ColumnKind, classify, is_counter, percent_factor};
use stampede_common::metrics::LatencySummary;
use stampede_common::stage::StepKind;
use stampede_results::read::RunData;
use stampede_results::rows::TimeseriesRow;
use stampede_results::summary::StageSummary;
use stampede_results::table::NumericTable;

/// Unclassified resource columns charted one by one, at most.
const MAX_OTHER_COLUMNS: usize = 10;

/// A titled group of charts.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: &'static str,
    pub title: String,
    pub charts: Vec<Chart>,
    /// Something the reader should know about these charts.
    pub note: Option<String>,
}

/// Every section the run has data for.
pub fn sections(run: &RunData, lang: Lang) -> Vec<Section> {
    let l = lang.labels();
    let ev = Evidence::of(run);
    let mut out = Vec::new();
    let mut push = |id, title: &str, charts: Vec<Chart>, note| {
        let charts: Vec<Chart> = charts.into_iter().filter(|c| !c.is_empty()).collect();
        if !charts.is_empty() {
            out.push(Section {
                id,
                title: title.to_string(),
                charts,
                note,
            });
        }
    };
    push("load", l.charts_load, load_charts(&ev, l), None);
    push(
        "throughput",
        l.charts_throughput,
        throughput_charts(&ev, l),
        None,
    );
    push("input", l.charts_input, input_charts(ev.stages, l), None);
    push("time", l.charts_time, time_charts(&ev, l), None);
    if let Some(t) = &run.resources {
        let (charts, omitted) = resource_charts(t, &ev, l);
        let note = (omitted > 0).then(|| format!("{omitted} {}", l.omitted_columns));
        push("resources", l.charts_resources, charts, note);
    }
    let (charts, exact) = distribution_charts(run, l);
    push(
        "distribution",
        l.charts_distribution,
        charts,
        (!exact).then(|| l.approximate.to_string()),
    );
    push("drift", l.charts_drift, drift_charts(run, l), None);
    out
}

/// Titles carry the stage's name when the plan has several stages with steps.
fn titled(base: &str, stage: &str, several: bool) -> String {
    if several {
        format!("{base} · {stage}")
    } else {
        base.to_string()
    }
}

fn load_axis(closed: bool, l: &Labels) -> &'static str {
    if closed { l.concurrency } else { l.offered_qps }
}

fn knee_markers(knee: Option<f64>, l: &Labels) -> Vec<Marker> {
    knee.map(|x| Marker {
        x,
        label: l.knee_marker.to_string(),
    })
    .into_iter()
    .collect()
}

/// TTFT, ITL, TPOT and E2E p50/p90/p99 per step against the load.
fn load_charts(ev: &Evidence<'_>, l: &Labels) -> Vec<Chart> {
    let groups = load_groups(ev.stages);
    let knees = knee_by_stage(ev);
    let several = groups.len() > 1;
    let mut charts = Vec::new();
    type Pick = fn(&StageSummary) -> &LatencySummary;
    let metrics: [(&str, Pick); 4] = [
        (l.ttft, |s| &s.ttft_ms),
        (l.itl, |s| &s.itl_ms),
        (l.tpot, |s| &s.tpot_ms),
        (l.e2e, |s| &s.e2e_ms),
    ];
    for g in &groups {
        for (title, pick) in metrics {
            let mut c = Chart::new(
                titled(title, &g.stage, several),
                load_axis(g.closed, l),
                l.latency_ms,
            );
            for (name, stat) in [("p50", 0), ("p90", 1), ("p99", 2)] {
                let pts = g
                    .steps
                    .iter()
                    .filter(|(i, _)| pick(&ev.stages[*i]).count > 0)
                    .map(|&(i, load)| {
                        let s = pick(&ev.stages[i]);
                        (load, [s.p50, s.p90, s.p99][stat])
                    })
                    .collect();
                c.series.push(Series::dotted(name, pts));
            }
            c.markers = knee_markers(knees.get(&g.stage).copied(), l);
            charts.push(c);
        }
    }
    charts
}

/// Achieved against offered QPS with the knee, and output tokens/s, against the load.
fn throughput_charts(ev: &Evidence<'_>, l: &Labels) -> Vec<Chart> {
    let groups = load_groups(ev.stages);
    let knees = knee_by_stage(ev);
    let several = groups.len() > 1;
    let mut charts = Vec::new();
    for g in &groups {
        let mut c = Chart::new(
            titled(l.achieved_vs_offered, &g.stage, several),
            load_axis(g.closed, l),
            l.requests_per_s,
        );
        if !g.closed {
            let mut offered =
                Series::line(l.offered, g.steps.iter().map(|&(_, q)| (q, q)).collect());
            offered.dashed = true;
            c.series.push(offered);
            c.series.push(Series::dotted(
                l.sent,
                g.steps
                    .iter()
                    .map(|&(i, q)| (q, ev.stages[i].achieved_qps))
                    .collect(),
            ));
        }
        c.series.push(Series::dotted(
            l.completed,
            g.steps
                .iter()
                .map(|&(i, q)| {
                    (
                        q,
                        served_rate(ev, i).map_or(ev.stages[i].throughput_rps, |r| r.0),
                    )
                })
                .collect(),
        ));
        if ev.stages.iter().any(|s| s.goodput_qps > 0.0) {
            // Dashed: goodput often equals the sent rate, which would hide it.
            let mut goodput = Series::dotted(
                "goodput",
                g.steps
                    .iter()
                    .map(|&(i, q)| (q, ev.stages[i].goodput_qps))
                    .collect(),
            );
            goodput.dashed = true;
            c.series.push(goodput);
        }
        c.markers = knee_markers(knees.get(&g.stage).copied(), l);
        charts.push(c);

        let mut t = Chart::new(
            titled(l.output_tokens_per_s, &g.stage, several),
            load_axis(g.closed, l),
            l.tokens_per_s,
        );
        t.series.push(Series::dotted(
            l.output_tokens_per_s,
            g.steps
                .iter()
                .map(|&(i, q)| (q, ev.stages[i].tokens.output_per_s))
                .collect(),
        ));
        t.markers = knee_markers(knees.get(&g.stage).copied(), l);
        charts.push(t);
    }
    charts
}

/// TTFT against the mean input length, when steps differ in it.
fn input_charts(stages: &[StageSummary], l: &Labels) -> Vec<Chart> {
    let mut pts: Vec<(f64, &StageSummary)> = stages
        .iter()
        .filter(|s| s.ttft_ms.count > 0)
        .filter_map(|s| {
            // The planned length when the summary has it, else the mean the workload sent.
            let finished = s.requests.completed + s.requests.failed + s.requests.cancelled;
            let mean = (finished > 0).then(|| s.tokens.input_total as f64 / finished as f64);
            let x = (s.input_tokens_planned > 0)
                .then_some(f64::from(s.input_tokens_planned))
                .or(mean)?;
            Some((x, s))
        })
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (Some(lo), Some(hi)) = (pts.first(), pts.last()) else {
        return Vec::new();
    };
    if hi.0 < lo.0 * 1.05 {
        return Vec::new();
    }
    let mut c = Chart::new(l.ttft_vs_input, l.input_tokens, l.latency_ms);
    c.series.push(Series::dotted(
        "p50",
        pts.iter().map(|(x, s)| (*x, s.ttft_ms.p50)).collect(),
    ));
    c.series.push(Series::dotted(
        "p99",
        pts.iter().map(|(x, s)| (*x, s.ttft_ms.p99)).collect(),
    ));
    vec![c]
}

/// Rows of the same moment added up (steps overlap while one drains), and latencies from the
/// rows inside their own step's duration.
struct Moment {
    t: f64,
    offered: Option<f64>,
    sent: f64,
    completed: f64,
    failed: f64,
    timeouts: f64,
    dropped: f64,
    in_flight: f64,
    latency: Option<TimeseriesRow>,
}

fn moments(ev: &Evidence<'_>) -> Vec<Moment> {
    let mut widths: Vec<f64> = ev.timeseries.iter().map(|r| r.interval_s).collect();
    let width = stampede_results::read::median(&mut widths).max(1e-3);
    let windows = ev.windows();
    let mut by: BTreeMap<i64, Moment> = BTreeMap::new();
    for r in ev.timeseries {
        // Each row lands in the interval-long slot it ends in, and adds its counts over the
        // slot's length: a step's last, partial interval (its 0.2 s drain, a stop's cut) adds
        // what happened in it, never its count stretched to a full second.
        let k = (r.elapsed_s / width - 1e-6).ceil() as i64;
        let m = by.entry(k).or_insert_with(|| Moment {
            t: k as f64 * width,
            offered: None,
            sent: 0.0,
            completed: 0.0,
            failed: 0.0,
            timeouts: 0.0,
            dropped: 0.0,
            in_flight: 0.0,
            latency: None,
        });
        let len = r.interval_s.max(1e-3);
        m.sent += r.achieved_qps * len / width;
        m.completed += r.completed as f64 / width;
        m.failed += r.failed as f64;
        m.timeouts += r.timeouts as f64;
        m.dropped += r.dropped as f64;
        m.in_flight += r.in_flight as f64;
        let own = ev
            .stages
            .iter()
            .position(|s| s.name == r.step)
            .and_then(|i| windows.get(i))
            .is_some_and(|(a, b)| r.elapsed_s > *a && r.elapsed_s <= *b + 0.5 * r.interval_s);
        if own {
            m.offered = r.offered_qps;
            m.latency = Some(r.clone());
        }
    }
    by.into_values().collect()
}

/// QPS, latency, ITL, errors and requests in flight over time, with the steps shaded.
fn time_charts(ev: &Evidence<'_>, l: &Labels) -> Vec<Chart> {
    if ev.timeseries.is_empty() {
        return Vec::new();
    }
    let ms = moments(ev);
    let bands: Vec<Band> = ev
        .windows()
        .into_iter()
        .zip(ev.stages)
        .map(|((from, to), s)| Band {
            from,
            to,
            label: s.name.clone(),
        })
        .collect();
    let chart = |title: &str, y: &str| {
        let mut c = Chart::new(title, l.elapsed_s, y);
        c.bands = bands.clone();
        c
    };
    let series = |name: &str, f: &dyn Fn(&Moment) -> Option<f64>| {
        Series::line(
            name,
            ms.iter().filter_map(|m| f(m).map(|v| (m.t, v))).collect(),
        )
    };
    let mut qps = chart(l.qps_over_time, l.requests_per_s);
    let mut offered = series(l.offered, &|m| m.offered);
    offered.dashed = true;
    qps.series = vec![
        offered,
        series(l.sent, &|m| Some(m.sent)),
        series(l.completed, &|m| Some(m.completed)),
    ];
    let lat_of = |f: fn(&TimeseriesRow) -> f64| {
        move |m: &Moment| m.latency.as_ref().map(f).filter(|v| *v > 0.0)
    };
    let mut lat = chart(l.latency_over_time, l.latency_ms);
    lat.y_scale = Scale::Log;
    lat.series = vec![
        series("TTFT p50", &lat_of(|r| r.ttft_p50_ms)),
        series("TTFT p99", &lat_of(|r| r.ttft_p99_ms)),
        series("E2E p50", &lat_of(|r| r.e2e_p50_ms)),
        series("E2E p99", &lat_of(|r| r.e2e_p99_ms)),
    ];
    let mut itl = chart(l.itl_over_time, l.latency_ms);
    itl.series = vec![
        series("ITL p50", &lat_of(|r| r.itl_p50_ms)),
        series("ITL p99", &lat_of(|r| r.itl_p99_ms)),
    ];
    let mut errors = chart(l.errors_over_time, l.requests);
    errors.series = vec![
        series(l.failed, &|m| Some(m.failed)),
        series(l.timeouts, &|m| Some(m.timeouts)),
        series(l.dropped, &|m| Some(m.dropped)),
    ];
    let mut in_flight = chart(l.in_flight_over_time, l.requests);
    in_flight.series = vec![series(l.in_flight, &|m| Some(m.in_flight))];
    vec![qps, lat, itl, errors, in_flight]
}

/// A counter's growth per second.
fn rate_of(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, ((w[1].1 - w[0].1) / (w[1].0 - w[0].0)).max(0.0)))
        .collect()
}

/// The unit a resource column is in, from its name's ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Percent,
    Bytes,
    PerSecond,
    Other,
}

fn unit_of(t: &NumericTable, c: usize) -> Unit {
    let name = t.columns[c].to_ascii_lowercase();
    let kind = classify(&name);
    if is_counter(t, c) || name.ends_with("_per_s") {
        Unit::PerSecond
    } else if name.ends_with("_pct")
        || name.ends_with("_perc")
        || matches!(kind, ColumnKind::GpuUtil | ColumnKind::KvCache)
    {
        Unit::Percent
    } else if name.ends_with("_bytes") {
        Unit::Bytes
    } else {
        Unit::Other
    }
}

/// Rescales a chart of bytes to MiB or GiB, whichever reads better.
fn in_binary_units(c: &mut Chart) {
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let (div, unit) = if max >= f64::from(1u32 << 30) {
        (f64::from(1u32 << 30), "GiB")
    } else {
        (f64::from(1u32 << 20), "MiB")
    };
    for s in &mut c.series {
        for p in &mut s.points {
            p.1 /= div;
        }
    }
    c.y_label = unit.to_string();
}

/// Whether a column is worth a line: not a counter whose rate is a column of its own, not an
/// identifier, and, among the unclassified, not a constant.
fn worth_charting(t: &NumericTable, c: usize) -> bool {
    let name = &t.columns[c];
    let values: Vec<f64> = t.samples.iter().filter_map(|s| s.values[c]).collect();
    if values.is_empty() || name.ends_with("_pid") {
        return false;
    }
    if let Some(stem) = name.strip_suffix("_total")
        && t.column(&format!("{stem}_per_s")).is_some()
    {
        return false;
    }
    classify(name) != ColumnKind::Other || values.iter().any(|v| *v != values[0])
}

/// One chart per kind of resource column and unit, each column of each agent a line;
/// counters as rates. Returns the charts and how many columns were left out for room.
fn resource_charts(t: &NumericTable, ev: &Evidence<'_>, l: &Labels) -> (Vec<Chart>, usize) {
    let sources = t.sources();
    let bands: Vec<Band> = ev
        .windows()
        .into_iter()
        .zip(ev.stages)
        .map(|((from, to), s)| Band {
            from,
            to,
            label: s.name.clone(),
        })
        .collect();
    let lines = |c: usize| -> Vec<Series> {
        let counter = is_counter(t, c);
        let f = if unit_of(t, c) == Unit::Percent {
            percent_factor(t, c)
        } else {
            1.0
        };
        sources
            .iter()
            .map(|src| {
                let pts: Vec<(f64, f64)> = t
                    .series(c, src)
                    .into_iter()
                    .map(|(x, y)| (x, y * f))
                    .collect();
                let pts = if counter { rate_of(&pts) } else { pts };
                let name = if sources.len() > 1 {
                    format!("{src} {}", t.columns[c])
                } else {
                    t.columns[c].clone()
                };
                Series::line(name, pts)
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let unit_label = |u: Unit| match u {
        Unit::Percent => l.percent,
        Unit::Bytes => "bytes",
        Unit::PerSecond => l.per_second,
        Unit::Other => l.value,
    };
    let kinds: [(ColumnKind, &str); 8] = [
        (ColumnKind::GpuUtil, l.gpu_util),
        (ColumnKind::GpuMem, l.gpu_mem),
        (ColumnKind::Cpu, l.cpu),
        (ColumnKind::AgentCpu, l.agent_cpu),
        (ColumnKind::Memory, l.memory),
        (ColumnKind::KvCache, l.kv_cache),
        (ColumnKind::Running, l.server_queue),
        (ColumnKind::Preemptions, l.preemptions),
    ];
    let shown: Vec<usize> = (0..t.columns.len())
        .filter(|&c| worth_charting(t, c))
        .collect();
    let mut charts = Vec::new();
    for (kind, title) in kinds {
        // Waiting requests share the chart of running ones: the queue beside the batch.
        let cols: Vec<usize> = shown
            .iter()
            .copied()
            .filter(|&c| {
                let k = classify(&t.columns[c]);
                k == kind || (kind == ColumnKind::Running && k == ColumnKind::Waiting)
            })
            .collect();
        // Percent beside bytes would flatten one of them: one chart per unit.
        let mut units: Vec<Unit> = Vec::new();
        for &c in &cols {
            let u = unit_of(t, c);
            if !units.contains(&u) {
                units.push(u);
            }
        }
        for &u in &units {
            let y = if matches!(kind, ColumnKind::Running) && u == Unit::Other {
                l.requests
            } else {
                unit_label(u)
            };
            let title = if units.len() > 1 {
                format!("{title} · {}", unit_label(u))
            } else {
                title.to_string()
            };
            let mut c = Chart::new(title, l.elapsed_s, y);
            c.bands = bands.clone();
            c.series = cols
                .iter()
                .copied()
                .filter(|&col| unit_of(t, col) == u)
                .flat_map(&lines)
                .collect();
            if u == Unit::Bytes {
                in_binary_units(&mut c);
            }
            charts.push(c);
        }
    }
    // The rest one by one, rates first (throughput, network) since they move with the load.
    let mut others: Vec<usize> = shown
        .iter()
        .copied()
        .filter(|&c| classify(&t.columns[c]) == ColumnKind::Other)
        .collect();
    others.sort_by_key(|&c| unit_of(t, c) != Unit::PerSecond);
    for &c in others.iter().take(MAX_OTHER_COLUMNS) {
        let mut chart = Chart::new(t.columns[c].clone(), l.elapsed_s, unit_label(unit_of(t, c)));
        chart.bands = bands.clone();
        chart.series = lines(c);
        if unit_of(t, c) == Unit::Bytes {
            in_binary_units(&mut chart);
        }
        charts.push(chart);
    }
    (charts, others.len().saturating_sub(MAX_OTHER_COLUMNS))
}

/// Percentile plots, one per metric, a line per step; from the interval logs, else from the
/// summary's percentiles (then `false`: approximate).
fn distribution_charts(run: &RunData, l: &Labels) -> (Vec<Chart>, bool) {
    let mut exact = true;
    let mut charts = Vec::new();
    type Pick = fn(&StageSummary) -> &LatencySummary;
    let metrics: [(&str, &str, Pick); 4] = [
        ("ttft", l.ttft, |s| &s.ttft_ms),
        ("itl", l.itl, |s| &s.itl_ms),
        ("tpot", l.tpot, |s| &s.tpot_ms),
        ("e2e", l.e2e, |s| &s.e2e_ms),
    ];
    for (key, title, pick) in metrics {
        let mut c = Chart::new(
            format!("{title}: {}", l.distribution_of),
            l.percentile,
            l.latency_ms,
        );
        c.x_scale = Scale::Percentile;
        c.y_scale = Scale::Log;
        match run.history.get(key).filter(|h| !h.steps.is_empty()) {
            Some(h) => {
                c.series = h
                    .steps
                    .iter()
                    .map(|d| Series::line(d.step.clone(), d.curve.clone()))
                    .collect();
            }
            None => {
                let series: Vec<Series> = run
                    .summary
                    .stages
                    .iter()
                    .filter(|s| pick(s).count > 0)
                    .map(|s| {
                        let p = pick(s);
                        // As with the logs: the maximum sits at 1 - 1/count.
                        let last = 100.0 * (1.0 - 1.0 / p.count as f64);
                        let mut pts: Vec<(f64, f64)> = [
                            (50.0, p.p50),
                            (90.0, p.p90),
                            (95.0, p.p95),
                            (99.0, p.p99),
                            (99.9, p.p999),
                        ]
                        .into_iter()
                        .filter(|(q, _)| *q < last)
                        .collect();
                        pts.push((last, p.max));
                        Series::dotted(s.name.clone(), pts)
                    })
                    .collect();
                if !series.is_empty() {
                    exact = false;
                }
                c.series = series;
            }
        }
        charts.push(c);
    }
    (charts, exact)
}

/// p99 over a soak, one line per soak: each checkpoint of a soak stage, each window of a long
/// step.
fn drift_charts(run: &RunData, l: &Labels) -> Vec<Chart> {
    let ev = Evidence::of(run);
    type Pick = fn(&StageSummary) -> &LatencySummary;
    let metrics: [(&str, &str, Pick); 2] = [
        ("ttft", l.ttft, |s| &s.ttft_ms),
        ("e2e", l.e2e, |s| &s.e2e_ms),
    ];
    metrics
        .into_iter()
        .filter_map(|(key, title, pick)| {
            let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (i, s) in ev.stages.iter().enumerate() {
                if s.kind == StepKind::Soak && pick(s).count > 0 {
                    let mid = ev.starts[i] + s.window_s() / 2.0;
                    lines
                        .entry(s.stage.clone())
                        .or_default()
                        .push((mid, pick(s).p99));
                }
            }
            if let Some(h) = run.history.get(key) {
                for w in &h.windows {
                    lines
                        .entry(w.step.clone())
                        .or_default()
                        .push(((w.start_s + w.end_s) / 2.0, w.p99_ms));
                }
            }
            lines.retain(|_, v| v.len() >= 2);
            if lines.is_empty() {
                return None;
            }
            let mut c = Chart::new(
                format!("{title}: {}", l.drift_title),
                l.elapsed_s,
                l.p99_by_window,
            );
            c.series = lines
                .into_iter()
                .map(|(name, pts)| Series::dotted(name, pts))
                .collect();
            Some(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: a 16/s step's 0.2 s drain with 3 answers adds 3 to the second it falls in,
    /// not 15 per second to the step's last second.
    #[test]
    fn a_partial_interval_adds_its_count_to_its_slot_never_a_full_second_rate() {
        let row = |step: &str, t: f64, len: f64, completed: u64, drain: bool| TimeseriesRow {
            elapsed_s: t,
            step: step.into(),
            interval_s: len,
            achieved_qps: if drain { 0.0 } else { 16.0 },
            completed,
            completed_rps: completed as f64 / len,
            drain,
            ..Default::default()
        };
        let mut rows: Vec<TimeseriesRow> = (1..=20)
            .map(|i| row("a", f64::from(i), 1.0, 16, false))
            .collect();
        rows.push(row("a", 20.2, 0.2, 3, true));
        rows.push(row("b", 21.0, 1.0, 16, false));
        let mut ev = Evidence::stages_only(&[], false);
        ev.timeseries = &rows;
        let ms = moments(&ev);
        let at = |t: f64| {
            ms.iter()
                .find(|m| (m.t - t).abs() < 1e-9)
                .map(|m| m.completed)
        };
        assert_eq!((at(20.0), at(21.0)), (Some(16.0), Some(19.0)));
        assert!(ms.iter().all(|m| m.completed <= 19.0 && m.sent <= 16.0));
    }

    #[test]
    fn resource_columns_group_by_kind_and_unit_and_skip_what_says_nothing() {
        let headers: Vec<String> = [
            "elapsed_s",
            "agent",
            "host_mem_used_bytes",
            "host_mem_pct",
            "target_pid",
            "target_up",
            "server_preemptions_total",
            "server_preemptions_per_s",
            "net_rx_bytes_per_s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows: Vec<Vec<String>> = (0..10)
            .map(|i| {
                [
                    i.to_string(),
                    "local-0".into(),
                    (3_000_000_000u64 + i * 1000).to_string(),
                    "40".into(),
                    "4242".into(),
                    "1".into(),
                    (i / 5).to_string(),
                    if i == 5 { "1" } else { "0" }.into(),
                    (i * 100).to_string(),
                ]
                .to_vec()
            })
            .collect();
        let t = NumericTable::from_rows(&headers, &rows);
        let ev = Evidence::stages_only(&[], false);
        let (charts, omitted) = resource_charts(&t, &ev, Lang::En.labels());
        let titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            vec![
                "Memory · bytes",
                "Memory · %",
                "Preemptions",
                "net_rx_bytes_per_s"
            ]
        );
        assert_eq!(omitted, 0);
        assert_eq!(charts[0].y_label, "GiB");
        let preempt: Vec<&str> = charts[2].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            preempt,
            vec!["server_preemptions_per_s"],
            "the counter's own rate column is used"
        );
    }
}
