//! Capacity: the highest rate that met the SLO, where throughput stops following the load (the
//! knee), and what grows when it does: the queue before prefill (TTFT climbs while TPOT stays
//! flat) or each decode step (TPOT climbs with the batch).
//!
//! Steps are compared within a plan stage, whose steps differ only in load.

use std::collections::BTreeMap;

use super::{Evidence, mean, server};
use stampede_common::stage::StepKind;
use stampede_results::facts::{
    Facts, FailedCheck, Knee as KneeFacts, LoadPoint, LoadTrend, LoadUnit, MaxQpsWithinSlo, NoKnee,
    SaturatedAtLowestLoad, Saturation, SloStep,
};
use stampede_results::kinds::{Severity, StepMode};
use stampede_results::summary::{Finding, StageSummary};

/// Served below this share of the sent rate, a step is past the knee.
const SERVED_SHARE: f64 = 0.85;
/// Completed below this share of the sent requests, a step is past the knee.
const COMPLETED_SHARE: f64 = 0.9;
/// TTFT p99 above this multiple of the lowest load's (and [`TTFT_BLOWUP_MS`] above it), the
/// queue is growing: past the knee.
const TTFT_BLOWUP: f64 = 3.0;
const TTFT_BLOWUP_MS: f64 = 100.0;
/// An error rate above this is load shedding: past the knee.
const SHEDDING_ERROR_RATE: f64 = 0.05;
/// Closed loop: throughput that grows by less than this share of the added users has stopped
/// scaling.
const CLOSED_GAIN: f64 = 0.1;
/// Queueing-bound: TTFT p50 grew this many times (and by [`QUEUE_TTFT_MS`]) while TPOT p50 grew
/// at most [`FLAT_TPOT`] times.
const QUEUE_TTFT: f64 = 3.0;
const QUEUE_TTFT_MS: f64 = 50.0;
const FLAT_TPOT: f64 = 1.3;
/// Decode-bound: TPOT p50 grew this many times and by [`DECODE_TPOT_MS`].
const DECODE_TPOT: f64 = 1.5;
const DECODE_TPOT_MS: f64 = 2.0;

/// Steps of one plan stage that differ in load, sorted by it.
#[derive(Debug, Clone)]
pub struct LoadGroup {
    pub stage: String,
    pub closed: bool,
    /// (index into the stages, load: offered QPS or users), ascending.
    pub steps: Vec<(usize, f64)>,
}

/// The load of a step: its offered rate, or its users.
pub fn load_of(s: &StageSummary) -> Option<f64> {
    s.offered_qps.or(s.concurrency.map(f64::from))
}

/// Whether a step's load is what its stage varies: steps, ramps and searches, not sweeps of
/// lengths, spikes, soaks or limit tests, whose loads differ for other reasons.
fn varies_load(kind: StepKind) -> bool {
    matches!(
        kind,
        StepKind::Single | StepKind::Step | StepKind::Ramp | StepKind::Search
    )
}

/// The stages with at least two loads, in plan order.
pub fn load_groups(stages: &[StageSummary]) -> Vec<LoadGroup> {
    let mut groups: Vec<LoadGroup> = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        if !varies_load(s.kind) {
            continue;
        }
        let Some(load) = load_of(s) else { continue };
        let closed = s.mode == StepMode::Closed;
        match groups
            .iter_mut()
            .find(|g| g.stage == s.stage && g.closed == closed)
        {
            Some(g) => g.steps.push((i, load)),
            None => groups.push(LoadGroup {
                stage: s.stage.clone(),
                closed,
                steps: vec![(i, load)],
            }),
        }
    }
    for g in &mut groups {
        g.steps.sort_by(|a, b| a.1.total_cmp(&b.1));
        g.steps.dedup_by(|a, b| a.1 == b.1);
    }
    groups.retain(|g| g.steps.len() >= 2);
    groups
}

/// The rate at which a step's requests completed in its steady second half, from
/// timeseries.csv, and the sent rate over the same intervals.
pub fn served_rate(ev: &Evidence<'_>, i: usize) -> Option<(f64, f64)> {
    let rows = ev.steady_rows(i, 0.5);
    let secs: f64 = rows.iter().map(|r| r.interval_s).sum();
    (secs > 0.0).then(|| {
        let done: f64 = rows.iter().map(|r| r.completed as f64).sum();
        let sent: f64 = rows.iter().map(|r| r.achieved_qps * r.interval_s).sum();
        (done / secs, sent / secs)
    })
}

/// Whether step `i` is past the knee, against the group's lowest-load step `base` and the
/// previous step `prev`.
pub fn saturation(
    ev: &Evidence<'_>,
    closed: bool,
    i: usize,
    base: usize,
    prev: Option<usize>,
) -> Option<Saturation> {
    let s = &ev.stages[i];
    let b = &ev.stages[base];
    if s.rates.error_rate > SHEDDING_ERROR_RATE {
        return Some(Saturation::Errors {
            rate: s.rates.error_rate,
        });
    }
    if closed {
        let p = &ev.stages[prev?];
        let (users, prev_users) = (load_of(s)?, load_of(p)?);
        let expected = CLOSED_GAIN * (users / prev_users - 1.0);
        return (p.throughput_rps > 0.0 && s.throughput_rps / p.throughput_rps < 1.0 + expected)
            .then_some(Saturation::Flat {
                rps: s.throughput_rps,
                prev_rps: p.throughput_rps,
                users,
                prev_users,
            });
    }
    if s.requests.sent > 0
        && (s.requests.completed as f64) < COMPLETED_SHARE * s.requests.sent as f64
    {
        return Some(Saturation::Lost {
            completed: s.requests.completed,
            sent: s.requests.sent,
        });
    }
    if let Some((served, sent)) = served_rate(ev, i) {
        // Poisson counts: a shortfall must also exceed three standard deviations of the count.
        let secs: f64 = ev.steady_rows(i, 0.5).iter().map(|r| r.interval_s).sum();
        let (n, c) = (sent * secs, served * secs);
        if c < SERVED_SHARE * n && n - c > 3.0 * n.sqrt() {
            return Some(Saturation::Shortfall { served, sent });
        }
    }
    if i != base
        && s.ttft_ms.count > 0
        && b.ttft_ms.count > 0
        && s.ttft_ms.p99 > TTFT_BLOWUP * b.ttft_ms.p99
        && s.ttft_ms.p99 - b.ttft_ms.p99 > TTFT_BLOWUP_MS
    {
        return Some(Saturation::Ttft {
            p99: s.ttft_ms.p99,
            base: b.ttft_ms.p99,
        });
    }
    None
}

/// Where a stage's throughput stopped following its load.
#[derive(Debug, Clone, PartialEq)]
pub struct Knee {
    pub stage: String,
    pub closed: bool,
    /// The last step before saturation: (index, load); `None` when even the lowest load was
    /// past the knee.
    pub knee: Option<(usize, f64)>,
    /// The first saturated step, its load and why; `None` when no step saturated.
    pub first_saturated: Option<(usize, f64, Saturation)>,
}

/// The knee of every stage with several loads.
pub fn knees(ev: &Evidence<'_>) -> Vec<Knee> {
    load_groups(ev.stages)
        .into_iter()
        .map(|g| {
            let base = g.steps[0].0;
            let mut knee = None;
            let mut first_saturated = None;
            for (k, &(i, load)) in g.steps.iter().enumerate() {
                let prev = k.checked_sub(1).map(|p| g.steps[p].0);
                if let Some(why) = saturation(ev, g.closed, i, base, prev) {
                    first_saturated = Some((i, load, why));
                    break;
                }
                knee = Some((i, load));
            }
            Knee {
                stage: g.stage,
                closed: g.closed,
                knee,
                first_saturated,
            }
        })
        .collect()
}

/// Share of the highest passing rate to plan production for: 20% headroom.
const PLAN_SHARE: f64 = 0.8;

/// The unit of a group's load.
fn unit(closed: bool) -> LoadUnit {
    if closed {
        LoadUnit::Users
    } else {
        LoadUnit::Qps
    }
}

/// A step's failed thresholds.
fn failed_checks(s: &StageSummary) -> Vec<FailedCheck> {
    s.slo
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| FailedCheck {
            check: c.name.clone(),
            value: c.value,
            limit: c.limit,
            bound: c.bound,
        })
        .collect()
}

fn slo_step(s: &StageSummary) -> SloStep {
    SloStep {
        step: s.name.clone(),
        qps: s.offered_qps.unwrap_or(0.0),
        failed: failed_checks(s),
    }
}

/// The highest offered rate that met every SLO: what a capacity search found when the plan
/// had one, else walking the steps up from the lowest rate (a rate above a failing one is not
/// counted, since passing there was luck). Adds its finding, whose rate to plan for agrees
/// with the knee when throughput stopped following the load first.
pub fn max_qps_within_slo(ev: &Evidence<'_>, out: &mut Vec<Finding>) -> Option<f64> {
    let searched = ev
        .probes
        .iter()
        .filter(|p| p.kind == "capacity_search")
        .filter_map(|p| p.max_passing)
        .reduce(f64::max);
    if !ev.has_slo && searched.is_none() {
        return None;
    }
    // Only steps whose rate is what their stage varies say which rate the SLO allows: a sweep
    // of lengths at one rate, a soak or a limit test hold the rate for other reasons.
    let mut open: Vec<&StageSummary> = ev
        .stages
        .iter()
        .filter(|s| s.offered_qps.is_some() && !s.slo.checks.is_empty() && varies_load(s.kind))
        .collect();
    open.sort_by(|a, b| {
        a.offered_qps
            .unwrap_or(0.0)
            .total_cmp(&b.offered_qps.unwrap_or(0.0))
    });
    let first_fail = open.iter().position(|s| !s.slo.pass);
    let passing = &open[..first_fail.unwrap_or(open.len())];
    let walked = passing.last().and_then(|s| s.offered_qps);
    let best = searched.or(walked);
    let failing = first_fail.map(|k| open[k]);
    let lucky: Vec<f64> = first_fail
        .map(|k| {
            open[k..]
                .iter()
                .filter(|s| s.slo.pass)
                .filter_map(|s| s.offered_qps)
                .collect()
        })
        .unwrap_or_default();
    match (best, failing) {
        (Some(q), failing) => {
            let knee_below = knees(ev)
                .into_iter()
                .filter(|k| !k.closed && k.first_saturated.is_some())
                .filter_map(|k| k.knee.map(|(_, load)| load))
                .filter(|&load| load < q)
                .reduce(f64::min);
            let plan_qps = knee_below.map_or(PLAN_SHARE * q, |k| k.min(PLAN_SHARE * q));
            out.push(Finding::new(
                Severity::Info,
                Facts::MaxQpsWithinSlo(MaxQpsWithinSlo {
                    qps: q,
                    step: passing.last().map(|s| s.name.clone()),
                    first_failing: failing.map(slo_step),
                    passed_above_a_failure: lucky,
                    capacity_search: searched,
                    plan_qps,
                    knee_below,
                }),
            ));
        }
        (None, Some(f)) => out.push(Finding::new(
            Severity::Warning,
            Facts::NoQpsWithinSlo(slo_step(f)),
        )),
        (None, None) => {}
    }
    best
}

/// The knee of each stage with several loads, or that there is none in range.
pub fn knee_findings(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    for k in knees(ev) {
        let (stage, unit) = (k.stage.clone(), unit(k.closed));
        match (k.knee, k.first_saturated) {
            (Some((ki, kl)), Some((si, sl, why))) => out.push(Finding::new(
                Severity::Info,
                Facts::Knee(KneeFacts {
                    stage,
                    unit,
                    knee: kl,
                    knee_step: ev.stages[ki].name.clone(),
                    saturated_at: sl,
                    saturated_step: ev.stages[si].name.clone(),
                    why,
                }),
            )),
            (None, Some((si, sl, why))) => out.push(Finding::new(
                Severity::Warning,
                Facts::SaturatedAtLowestLoad(SaturatedAtLowestLoad {
                    stage,
                    unit,
                    step: ev.stages[si].name.clone(),
                    load: sl,
                    why,
                }),
            )),
            (Some((_, kl)), None) => out.push(Finding::new(
                Severity::Info,
                Facts::NoKnee(NoKnee {
                    stage,
                    unit,
                    highest: kl,
                }),
            )),
            (None, None) => {}
        }
    }
}

/// Mean requests in flight over a step's steady part (its batch, roughly), or its users.
fn batch_of(ev: &Evidence<'_>, i: usize) -> Option<f64> {
    let rows = ev.steady_rows(i, 0.2);
    let v: Vec<f64> = rows.iter().map(|r| r.in_flight as f64).collect();
    mean(&v).or(ev.stages[i].concurrency.map(f64::from))
}

/// Queueing-bound (TTFT climbs, TPOT flat) and decode-bound (TPOT climbs with the batch).
pub fn queueing_and_decode(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    // A queue of zero is no evidence: only a server that reported waiting requests is quoted.
    let waiting_peak =
        server::peak_of(ev.resources, server::ColumnKind::Waiting).filter(|w| *w > 0.0);
    for g in load_groups(ev.stages) {
        let served: Vec<(usize, f64)> = g
            .steps
            .iter()
            .copied()
            .filter(|(i, _)| ev.stages[*i].ttft_ms.count > 0 && ev.stages[*i].tpot_ms.count > 0)
            .collect();
        let (Some(&(lo, _)), Some(&(hi, _))) = (served.first(), served.last()) else {
            continue;
        };
        if lo == hi {
            continue;
        }
        let point = |(i, load): (usize, f64)| {
            let s = &ev.stages[i];
            LoadPoint {
                step: s.name.clone(),
                load,
                ttft_p50_ms: s.ttft_ms.p50,
                tpot_p50_ms: s.tpot_ms.p50,
                in_flight_mean: batch_of(ev, i),
            }
        };
        let steps: Vec<LoadPoint> = served.iter().copied().map(point).collect();
        let (low, high) = (&steps[0], &steps[steps.len() - 1]);
        // The step with the highest TTFT: the queue may peak before the highest load.
        let peak = steps
            .iter()
            .max_by(|a, b| a.ttft_p50_ms.total_cmp(&b.ttft_p50_ms))
            .unwrap_or(high);
        let trend = |high: &LoadPoint, waiting_peak: Option<f64>| LoadTrend {
            stage: g.stage.clone(),
            unit: unit(g.closed),
            low: low.clone(),
            high: high.clone(),
            steps: steps.clone(),
            waiting_peak,
        };
        if peak.ttft_p50_ms >= QUEUE_TTFT * low.ttft_p50_ms
            && peak.ttft_p50_ms - low.ttft_p50_ms >= QUEUE_TTFT_MS
            && peak.tpot_p50_ms <= FLAT_TPOT * low.tpot_p50_ms
        {
            out.push(Finding::new(
                Severity::Warning,
                Facts::QueueingBound(trend(peak, waiting_peak)),
            ));
        }
        if high.tpot_p50_ms >= DECODE_TPOT * low.tpot_p50_ms
            && high.tpot_p50_ms - low.tpot_p50_ms >= DECODE_TPOT_MS
        {
            out.push(Finding::new(
                Severity::Warning,
                Facts::DecodeBound(trend(high, None)),
            ));
        }
    }
}

/// The knee load of each stage by stage name, for the charts.
pub fn knee_by_stage(ev: &Evidence<'_>) -> BTreeMap<String, f64> {
    knees(ev)
        .into_iter()
        .filter_map(|k| {
            k.knee
                .filter(|_| k.first_saturated.is_some())
                .map(|(_, l)| (k.stage, l))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Evidence;
    use super::super::testing::*;
    use super::*;
    use stampede_results::kinds::FindingCode;

    fn steps_with_queueing() -> Vec<StageSummary> {
        let mut v: Vec<StageSummary> = [4.0, 8.0, 16.0]
            .iter()
            .map(|&q| open_step("steps", q, 20.0))
            .collect();
        v[2].ttft_ms = lat(320, 900.0, 2400.0);
        v
    }

    #[test]
    fn max_qps_within_slo_stops_at_the_first_failure() {
        let mut v: Vec<StageSummary> = [4.0, 8.0, 16.0, 32.0]
            .iter()
            .map(|&q| open_step("steps", q, 20.0))
            .collect();
        v[2].ttft_ms = lat(320, 900.0, 2400.0);
        let v: Vec<StageSummary> = v
            .into_iter()
            .map(|s| with_slo(s, "ttft_p99", 1500.0))
            .collect();
        let a = analysed(&Evidence::stages_only(&v, true));
        assert_eq!(a.max_qps_within_slo, Some(8.0));
        let f = &a.findings[0];
        assert_eq!(f.code(), FindingCode::MaxQpsWithinSlo);
        let Facts::MaxQpsWithinSlo(m) = &f.facts else {
            panic!("{f:?}")
        };
        assert_eq!(m.passed_above_a_failure, vec![32.0]);
        assert_eq!((m.plan_qps, m.knee_below), (6.4, None));
        let advice = f.suggestion.as_deref().unwrap();
        assert!(
            advice.contains("ttft_p99 2400 > 1500") && advice.contains("6.4"),
            "{advice}"
        );
        // Without thresholds there is no such number.
        let a = analysed(&Evidence::stages_only(&v, false));
        assert_eq!(a.max_qps_within_slo, None);
        assert!(!codes(&a).contains(&"max-qps-within-slo"));
    }

    #[test]
    fn no_step_within_slo_is_a_warning() {
        let v: Vec<StageSummary> = steps_with_queueing()
            .into_iter()
            .map(|s| with_slo(s, "ttft_p99", 10.0))
            .collect();
        let a = analysed(&Evidence::stages_only(&v, true));
        assert!(codes(&a).contains(&"no-qps-within-slo"), "{:?}", codes(&a));
    }

    #[test]
    fn the_knee_is_the_step_before_ttft_blows_up() {
        let v = steps_with_queueing();
        let ev = Evidence::stages_only(&v, false);
        let k = knees(&ev);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].knee, Some((1, 8.0)));
        assert!(matches!(
            k[0].first_saturated,
            Some((2, 16.0, Saturation::Ttft { .. }))
        ));
        let a = analysed(&ev);
        assert!(codes(&a).contains(&"knee"), "{:?}", codes(&a));
        // Flat latency: no knee in range, and it says so.
        let flat: Vec<StageSummary> = [4.0, 8.0]
            .iter()
            .map(|&q| open_step("steps", q, 20.0))
            .collect();
        let a = analysed(&Evidence::stages_only(&flat, false));
        assert_eq!(codes(&a), vec!["no-knee"]);
    }

    #[test]
    fn closed_loop_throughput_that_stops_scaling_is_a_knee() {
        let v = vec![
            closed_step("users", 1, 1.0, 20.0),
            closed_step("users", 4, 3.8, 20.0),
            closed_step("users", 16, 4.0, 20.0),
        ];
        let k = knees(&Evidence::stages_only(&v, false));
        assert_eq!(k[0].knee, Some((1, 4.0)));
        assert!(matches!(
            k[0].first_saturated,
            Some((2, 16.0, Saturation::Flat { .. }))
        ));
    }

    #[test]
    fn ttft_climbing_with_flat_tpot_is_queueing_bound_and_not_decode_bound() {
        let v = steps_with_queueing();
        let a = analysed(&Evidence::stages_only(&v, false));
        let c = codes(&a);
        assert!(c.contains(&"queueing-bound"), "{c:?}");
        assert!(!c.contains(&"decode-bound"), "{c:?}");
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::QueueingBound)
            .unwrap();
        assert!(
            f.message
                .contains("from 50 ms at 4 req/s to 900 ms at 16 req/s"),
            "{}",
            f.message
        );
        assert!(f.suggestion.as_deref().unwrap().contains("max_num_seqs"));
        // Without the climb, neither.
        let flat: Vec<StageSummary> = [4.0, 8.0, 16.0]
            .iter()
            .map(|&q| open_step("steps", q, 20.0))
            .collect();
        let c = codes(&analysed(&Evidence::stages_only(&flat, false)));
        assert!(
            !c.contains(&"queueing-bound") && !c.contains(&"decode-bound"),
            "{c:?}"
        );
    }

    #[test]
    fn tpot_climbing_with_the_batch_is_decode_bound() {
        let mut v = vec![
            closed_step("users", 1, 1.0, 20.0),
            closed_step("users", 8, 7.0, 20.0),
            closed_step("users", 32, 24.0, 20.0),
        ];
        v[1].tpot_ms = lat(100, 14.0, 16.0);
        v[2].tpot_ms = lat(100, 22.0, 25.0);
        let a = analysed(&Evidence::stages_only(&v, false));
        let f = a
            .findings
            .iter()
            .find(|f| f.code() == FindingCode::DecodeBound)
            .expect("decode-bound");
        assert!(
            f.message.contains("(1 in flight)") && f.message.contains("(32 in flight)"),
            "{}",
            f.message
        );
        assert!(f.suggestion.as_deref().unwrap().contains("max_num_seqs"));
        assert!(!codes(&a).contains(&"queueing-bound"));
    }
}
