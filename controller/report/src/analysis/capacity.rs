//! Capacity: the highest rate that met the SLO, where throughput stops following the load (the
//! knee), and what grows when it does: the queue before prefill (TTFT climbs while TPOT stays
//! flat) or each decode step (TPOT climbs with the batch).
//!
//! Steps are compared within a plan stage, whose steps differ only in load.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Evidence, finding, mean, server};
use crate::i18n::{Lang, num, pct, tr};
use stampede_common::stage::StepKind;
use stampede_results::kinds::{FindingCode, Severity, StepMode};
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

/// Why a step is past the knee.
#[derive(Debug, Clone, PartialEq)]
pub enum Saturation {
    /// Completions in the steady half ran below the sending rate by more than noise.
    Shortfall { served: f64, sent: f64 },
    /// Many requests never completed.
    Lost { completed: u64, sent: u64 },
    /// TTFT p99 grew past its bound.
    Ttft { p99: f64, base: f64 },
    /// The server shed load as errors.
    Errors { rate: f64 },
    /// Closed loop: more users brought no more throughput.
    Flat {
        rps: f64,
        prev_rps: f64,
        users: f64,
        prev_users: f64,
    },
}

impl Saturation {
    /// The reason in words.
    pub fn describe(&self, lang: Lang) -> String {
        match *self {
            Saturation::Shortfall { served, sent } => {
                let (served, sent) = (num(served), num(sent));
                tr!(
                    lang,
                    "completions ran at {served}/s against {sent}/s sent",
                    "完成速率为 {served}/秒，而发送速率为 {sent}/秒"
                )
            }
            Saturation::Lost { completed, sent } => tr!(
                lang,
                "only {completed} of {sent} requests completed",
                "{sent} 个请求中仅完成 {completed} 个"
            ),
            Saturation::Ttft { p99, base } => {
                let (p99, base) = (num(p99), num(base));
                tr!(
                    lang,
                    "TTFT p99 rose to {p99} ms from {base} ms at the lowest load",
                    "TTFT p99 从最低负载时的 {base} 毫秒升至 {p99} 毫秒"
                )
            }
            Saturation::Errors { rate } => {
                let rate = pct(rate);
                tr!(lang, "{rate} of requests failed", "{rate} 的请求失败")
            }
            Saturation::Flat {
                rps,
                prev_rps,
                users,
                prev_users,
            } => {
                let (rps, prev_rps, users, prev_users) =
                    (num(rps), num(prev_rps), num(users), num(prev_users));
                tr!(
                    lang,
                    "throughput stayed at {rps}/s ({prev_rps}/s with {prev_users} users) though users rose to {users}",
                    "并发从 {prev_users} 增至 {users}，吞吐却停在 {rps}/秒（之前为 {prev_rps}/秒）"
                )
            }
        }
    }
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

/// The highest offered rate that met every SLO: what a capacity search found when the plan
/// had one, else walking the steps up from the lowest rate (a rate above a failing one is not
/// counted, since passing there was luck). Adds its finding.
pub fn max_qps_within_slo(ev: &Evidence<'_>, lang: Lang, out: &mut Vec<Finding>) -> Option<f64> {
    let searched = ev
        .probes
        .iter()
        .filter(|p| p.kind == "capacity_search")
        .filter_map(|p| p.max_passing)
        .reduce(f64::max);
    if !ev.has_slo && searched.is_none() {
        return None;
    }
    let mut open: Vec<&StageSummary> = ev
        .stages
        .iter()
        .filter(|s| s.offered_qps.is_some() && !s.slo.checks.is_empty())
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
    let failed_checks = |s: &StageSummary| -> Vec<serde_json::Value> {
        s.slo
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| json!({ "check": c.name, "value": c.value, "limit": c.limit }))
            .collect()
    };
    let fail_text = |s: &StageSummary| -> String {
        s.slo
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| {
                let value = c.value.map_or_else(|| "-".to_string(), num);
                format!("{} {} > {}", c.name, value, num(c.limit))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
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
            let q_text = num(q);
            let step = passing.last().map(|s| s.name.clone());
            let suggestion = match failing {
                Some(f) => {
                    let (fq, why) = (num(f.offered_qps.unwrap_or(0.0)), fail_text(f));
                    let plan = num(q * 0.8);
                    tr!(
                        lang,
                        "at {fq} requests/s the SLO failed ({why}); plan production for about {plan} requests/s per deployment (80% headroom) and add replicas beyond that",
                        "在 {fq} 请求/秒时 SLO 未通过（{why}）；生产环境建议按每套部署约 {plan} 请求/秒规划（预留 20% 余量），更高负载需增加副本"
                    )
                }
                None => tr!(
                    lang,
                    "every step met the SLO: extend the steps above {q_text} requests/s to find the limit",
                    "所有阶段都满足 SLO：请把阶段负载提高到 {q_text} 请求/秒以上以找到上限"
                ),
            };
            out.push(finding(
                Severity::Info,
                FindingCode::MaxQpsWithinSlo,
                tr!(
                    lang,
                    "the highest offered rate that met every SLO was {q_text} requests/s",
                    "满足全部 SLO 的最高目标负载为 {q_text} 请求/秒"
                ),
                Some(suggestion),
                json!({
                    "qps": q,
                    "step": step,
                    "first_failing": failing.map(|f| json!({
                        "step": f.name, "qps": f.offered_qps, "failed": failed_checks(f),
                    })),
                    "passed_above_a_failure": lucky,
                    "capacity_search": searched,
                }),
            ));
        }
        (None, Some(f)) => {
            let (fq, why) = (num(f.offered_qps.unwrap_or(0.0)), fail_text(f));
            out.push(finding(
                Severity::Warning,
                FindingCode::NoQpsWithinSlo,
                tr!(
                    lang,
                    "no step met every SLO: even the lowest rate, {fq} requests/s, failed ({why})",
                    "没有任何阶段满足全部 SLO：即使最低的 {fq} 请求/秒也未通过（{why}）"
                ),
                Some(tr!(
                    lang,
                    "start the steps lower to find the rate the SLO allows, or relax the SLO if the single-request latency already exceeds it",
                    "从更低的负载开始测试以找到 SLO 允许的负载；如果单请求延迟已超过 SLO，则需放宽 SLO"
                )),
                json!({ "step": f.name, "qps": f.offered_qps, "failed": failed_checks(f) }),
            ));
        }
        (None, None) => {}
    }
    best
}

/// The knee of each stage with several loads, or that there is none in range.
pub fn knee_findings(ev: &Evidence<'_>, lang: Lang, out: &mut Vec<Finding>) {
    for k in knees(ev) {
        let stage = &k.stage;
        let unit = if k.closed {
            tr!(lang, "users", "并发")
        } else {
            tr!(lang, "requests/s", "请求/秒")
        };
        match (&k.knee, &k.first_saturated) {
            (Some((ki, kl)), Some((si, sl, why))) => {
                let (kl_text, sl_text, reason) = (num(*kl), num(*sl), why.describe(lang));
                out.push(finding(
                    Severity::Info,
                    FindingCode::Knee,
                    tr!(
                        lang,
                        "{stage}: the knee is at {kl_text} {unit}: at {sl_text} {unit} {reason}",
                        "{stage}：拐点在 {kl_text} {unit}；到 {sl_text} {unit} 时{reason}"
                    ),
                    Some(tr!(
                        lang,
                        "keep the load at or below {kl_text} {unit} per deployment; to move the knee, see the queueing- or decode-bound findings (max_num_seqs, chunked prefill) or add replicas",
                        "每套部署的负载应不超过 {kl_text} {unit}；若要提高拐点，参考排队瓶颈或解码瓶颈的结论（max_num_seqs、chunked prefill），或增加副本"
                    )),
                    json!({
                        "stage": k.stage, "knee": kl, "knee_step": ev.stages[*ki].name,
                        "saturated_at": sl, "saturated_step": ev.stages[*si].name,
                        "reason": format!("{why:?}"),
                    }),
                ));
            }
            (None, Some((si, sl, why))) => {
                let (sl_text, reason) = (num(*sl), why.describe(lang));
                out.push(finding(
                    Severity::Warning,
                    FindingCode::SaturatedAtLowestLoad,
                    tr!(
                        lang,
                        "{stage}: even the lowest load, {sl_text} {unit}, was past the knee: {reason}",
                        "{stage}：即使最低负载 {sl_text} {unit} 也已越过拐点：{reason}"
                    ),
                    Some(tr!(
                        lang,
                        "start the steps well below {sl_text} {unit} to find where the service saturates",
                        "请从远低于 {sl_text} {unit} 的负载开始，找到服务饱和的位置"
                    )),
                    json!({ "stage": k.stage, "step": ev.stages[*si].name, "load": sl, "reason": format!("{why:?}") }),
                ));
            }
            (Some((_, kl)), None) => {
                let kl_text = num(*kl);
                out.push(finding(
                    Severity::Info,
                    FindingCode::NoKnee,
                    tr!(
                        lang,
                        "{stage}: throughput followed the load up to {kl_text} {unit}; the knee is above the highest step",
                        "{stage}：吞吐一直随负载增长到 {kl_text} {unit}；拐点高于最高一级负载"
                    ),
                    Some(tr!(
                        lang,
                        "extend the steps above {kl_text} {unit} to find the knee",
                        "把负载阶梯提高到 {kl_text} {unit} 以上以找到拐点"
                    )),
                    json!({ "stage": k.stage, "highest": kl }),
                ));
            }
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
pub fn queueing_and_decode(ev: &Evidence<'_>, lang: Lang, out: &mut Vec<Finding>) {
    let waiting_peak = server::peak_of(ev.resources, server::ColumnKind::Waiting);
    for g in load_groups(ev.stages) {
        let served: Vec<(usize, f64)> = g
            .steps
            .iter()
            .copied()
            .filter(|(i, _)| ev.stages[*i].ttft_ms.count > 0 && ev.stages[*i].tpot_ms.count > 0)
            .collect();
        let (Some(&(lo, lo_load)), Some(&(hi, hi_load))) = (served.first(), served.last()) else {
            continue;
        };
        if lo == hi {
            continue;
        }
        let stage = &g.stage;
        let (l, h) = (&ev.stages[lo], &ev.stages[hi]);
        let rows: Vec<serde_json::Value> = served
            .iter()
            .map(|&(i, load)| {
                let s = &ev.stages[i];
                json!({
                    "step": s.name, "load": load, "ttft_p50_ms": s.ttft_ms.p50,
                    "tpot_p50_ms": s.tpot_ms.p50, "in_flight_mean": batch_of(ev, i),
                })
            })
            .collect();
        let unit = if g.closed {
            tr!(lang, "users", "并发")
        } else {
            tr!(lang, "req/s", "请求/秒")
        };
        // The step with the highest TTFT: the queue may peak before the highest load.
        let (peak, peak_load) = served
            .iter()
            .copied()
            .max_by(|a, b| {
                ev.stages[a.0]
                    .ttft_ms
                    .p50
                    .total_cmp(&ev.stages[b.0].ttft_ms.p50)
            })
            .unwrap_or((hi, hi_load));
        let p = &ev.stages[peak];
        if p.ttft_ms.p50 >= QUEUE_TTFT * l.ttft_ms.p50
            && p.ttft_ms.p50 - l.ttft_ms.p50 >= QUEUE_TTFT_MS
            && p.tpot_ms.p50 <= FLAT_TPOT * l.tpot_ms.p50
        {
            let (t0, t1, d0, d1) = (
                num(l.ttft_ms.p50),
                num(p.ttft_ms.p50),
                num(l.tpot_ms.p50),
                num(p.tpot_ms.p50),
            );
            let (a, b) = (num(lo_load), num(peak_load));
            let waiting = waiting_peak.map_or_else(String::new, |w| {
                let w = num(w);
                tr!(
                    lang,
                    "; up to {w} requests waited in the server's queue",
                    "；服务端排队请求最多达 {w} 个"
                )
            });
            out.push(finding(
                Severity::Warning,
                FindingCode::QueueingBound,
                tr!(
                    lang,
                    "{stage}: TTFT p50 rose from {t0} ms at {a} {unit} to {t1} ms at {b} {unit} while TPOT p50 stayed at {d0}-{d1} ms: requests wait for admission or prefill, not for decoding{waiting}",
                    "{stage}：TTFT p50 从 {a} {unit} 时的 {t0} 毫秒升到 {b} {unit} 时的 {t1} 毫秒，而 TPOT p50 保持在 {d0}-{d1} 毫秒：请求在等待调度或预填充（prefill），而不是解码{waiting}"
                ),
                Some(tr!(
                    lang,
                    "the engine runs out of batch slots or prefill budget: raise max_num_seqs if the KV cache has room, enable chunked prefill (--enable-chunked-prefill) and raise --max-num-batched-tokens, turn on prefix caching when prompts share a prefix, or add replicas; TPOT leaves room to batch more",
                    "引擎的批次槽位或预填充预算不足：若 KV 缓存有余量可调大 max_num_seqs，开启 chunked prefill（--enable-chunked-prefill）并调大 --max-num-batched-tokens，提示词有公共前缀时开启 prefix caching，或增加副本；TPOT 仍有余量可承载更大批次"
                )),
                json!({ "stage": g.stage, "steps": rows, "waiting_peak": waiting_peak }),
            ));
        }
        if h.tpot_ms.p50 >= DECODE_TPOT * l.tpot_ms.p50
            && h.tpot_ms.p50 - l.tpot_ms.p50 >= DECODE_TPOT_MS
        {
            let (d0, d1) = (num(l.tpot_ms.p50), num(h.tpot_ms.p50));
            let (b0, b1) = (
                batch_of(ev, lo).map_or_else(|| "-".into(), num),
                batch_of(ev, hi).map_or_else(|| "-".into(), num),
            );
            let (a, b) = (num(lo_load), num(hi_load));
            out.push(finding(
                Severity::Warning,
                FindingCode::DecodeBound,
                tr!(
                    lang,
                    "{stage}: TPOT p50 rose from {d0} ms at {a} {unit} ({b0} in flight) to {d1} ms at {b} {unit} ({b1} in flight): each decode step slows as the batch grows",
                    "{stage}：TPOT p50 从 {a} {unit}（进行中 {b0} 个）时的 {d0} 毫秒升至 {b} {unit}（进行中 {b1} 个）时的 {d1} 毫秒：批次越大，每步解码越慢"
                ),
                Some(tr!(
                    lang,
                    "decoding is memory-bandwidth bound at this batch: cap the batch with max_num_seqs to hold TPOT near {d0} ms (at some throughput), shorten max_tokens, use speculative decoding or FP8 weights and KV cache, or add replicas / tensor parallelism",
                    "在该批次规模下解码受显存带宽限制：用 max_num_seqs 限制批次以把 TPOT 保持在 {d0} 毫秒附近（牺牲部分吞吐），减小 max_tokens，使用投机解码或 FP8 权重与 KV 缓存，或增加副本/张量并行"
                )),
                json!({ "stage": g.stage, "steps": rows }),
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
    use super::super::testing::*;
    use super::super::{Evidence, analyse_evidence};
    use super::*;

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
        let a = analyse_evidence(&Evidence::stages_only(&v, true), Lang::En);
        assert_eq!(a.max_qps_within_slo, Some(8.0));
        let f = &a.findings[0];
        assert_eq!(f.code, FindingCode::MaxQpsWithinSlo);
        assert_eq!(f.evidence["passed_above_a_failure"], json!([32.0]));
        let advice = f.suggestion.as_deref().unwrap();
        assert!(
            advice.contains("ttft_p99 2400 > 1500") && advice.contains("6.4"),
            "{advice}"
        );
        // Without thresholds there is no such number.
        let a = analyse_evidence(&Evidence::stages_only(&v, false), Lang::En);
        assert_eq!(a.max_qps_within_slo, None);
        assert!(!codes(&a).contains(&"max-qps-within-slo"));
    }

    #[test]
    fn no_step_within_slo_is_a_warning() {
        let v: Vec<StageSummary> = steps_with_queueing()
            .into_iter()
            .map(|s| with_slo(s, "ttft_p99", 10.0))
            .collect();
        let a = analyse_evidence(&Evidence::stages_only(&v, true), Lang::En);
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
        let a = analyse_evidence(&ev, Lang::En);
        assert!(codes(&a).contains(&"knee"), "{:?}", codes(&a));
        // Flat latency: no knee in range, and it says so.
        let flat: Vec<StageSummary> = [4.0, 8.0]
            .iter()
            .map(|&q| open_step("steps", q, 20.0))
            .collect();
        let a = analyse_evidence(&Evidence::stages_only(&flat, false), Lang::En);
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
        let a = analyse_evidence(&Evidence::stages_only(&v, false), Lang::En);
        let c = codes(&a);
        assert!(c.contains(&"queueing-bound"), "{c:?}");
        assert!(!c.contains(&"decode-bound"), "{c:?}");
        let f = a
            .findings
            .iter()
            .find(|f| f.code == FindingCode::QueueingBound)
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
        let c = codes(&analyse_evidence(
            &Evidence::stages_only(&flat, false),
            Lang::En,
        ));
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
        let a = analyse_evidence(&Evidence::stages_only(&v, false), Lang::En);
        let f = a
            .findings
            .iter()
            .find(|f| f.code == FindingCode::DecodeBound)
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
