//! Capacity in words: the SLO's limit, the knee, and what grows past it.

use stampede_common::plan::Bound;
use stampede_results::facts::{
    FailedCheck, Knee, LoadTrend, MaxQpsWithinSlo, NoKnee, SaturatedAtLowestLoad, Saturation,
    SloStep,
};

use super::{Words, unit, unit_short};
use crate::i18n::{Lang, num, pct, tr};

/// Failed thresholds as `ttft_p99 2400 > 1500`.
fn failed_text(checks: &[FailedCheck]) -> String {
    checks
        .iter()
        .map(|c| {
            let value = c.value.map_or_else(|| "-".to_string(), num);
            let op = match c.bound {
                Bound::AtMost => ">",
                Bound::AtLeast => "<",
            };
            format!("{} {} {op} {}", c.check, value, num(c.limit))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a step is past the knee, in words.
pub fn saturation(why: &Saturation, lang: Lang) -> String {
    match *why {
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

pub fn max_qps_within_slo(f: &MaxQpsWithinSlo, lang: Lang) -> Words {
    let q = num(f.qps);
    let plan = num(f.plan_qps);
    // The headroom is what the plan leaves of the limit, from the same two numbers.
    let headroom = pct(1.0 - f.plan_qps / f.qps);
    let message = tr!(
        lang,
        "the highest offered rate that met every SLO was {q} requests/s",
        "满足全部 SLO 的最高目标负载为 {q} 请求/秒"
    );
    let suggestion = match (&f.knee_below, &f.first_failing) {
        (Some(knee), _) => {
            let knee = num(*knee);
            tr!(
                lang,
                "throughput stopped following the load above {knee} requests/s (the knee) although the SLO still held up to {q}: plan production for at most {plan} requests/s per deployment and add replicas beyond that",
                "虽然 SLO 在 {q} 请求/秒以内都满足，但负载超过 {knee} 请求/秒（拐点）后吞吐不再随负载增长：生产环境建议每套部署不超过 {plan} 请求/秒，更高负载需增加副本"
            )
        }
        (None, Some(fail)) => {
            let (fq, why) = (num(fail.qps), failed_text(&fail.failed));
            tr!(
                lang,
                "at {fq} requests/s the SLO failed ({why}); plan production for about {plan} requests/s per deployment ({headroom} headroom) and add replicas beyond that",
                "在 {fq} 请求/秒时 SLO 未通过（{why}）；生产环境建议按每套部署约 {plan} 请求/秒规划（预留 {headroom} 余量），更高负载需增加副本"
            )
        }
        (None, None) => tr!(
            lang,
            "every step met the SLO: extend the steps above {q} requests/s to find the limit",
            "所有阶段都满足 SLO：请把阶段负载提高到 {q} 请求/秒以上以找到上限"
        ),
    };
    Words::new(message, suggestion)
}

pub fn no_qps_within_slo(f: &SloStep, lang: Lang) -> Words {
    let (fq, why) = (num(f.qps), failed_text(&f.failed));
    Words::new(
        tr!(
            lang,
            "no step met every SLO: even the lowest rate, {fq} requests/s, failed ({why})",
            "没有任何阶段满足全部 SLO：即使最低的 {fq} 请求/秒也未通过（{why}）"
        ),
        tr!(
            lang,
            "start the steps lower to find the rate the SLO allows, or relax the SLO if the single-request latency already exceeds it",
            "从更低的负载开始测试以找到 SLO 允许的负载；如果单请求延迟已超过 SLO，则需放宽 SLO"
        ),
    )
}

pub fn knee(f: &Knee, lang: Lang) -> Words {
    let (stage, u) = (&f.stage, unit(f.unit, lang));
    let (kl, sl, reason) = (num(f.knee), num(f.saturated_at), saturation(&f.why, lang));
    Words::new(
        tr!(
            lang,
            "{stage}: the knee is at {kl} {u}: at {sl} {u} {reason}",
            "{stage}：拐点在 {kl} {u}；到 {sl} {u} 时{reason}"
        ),
        tr!(
            lang,
            "keep the load at or below {kl} {u} per deployment; to move the knee, see the queueing- or decode-bound findings (max_num_seqs, chunked prefill) or add replicas",
            "每套部署的负载应不超过 {kl} {u}；若要提高拐点，参考排队瓶颈或解码瓶颈的结论（max_num_seqs、chunked prefill），或增加副本"
        ),
    )
}

pub fn saturated_at_lowest_load(f: &SaturatedAtLowestLoad, lang: Lang) -> Words {
    let (stage, u) = (&f.stage, unit(f.unit, lang));
    let (sl, reason) = (num(f.load), saturation(&f.why, lang));
    Words::new(
        tr!(
            lang,
            "{stage}: even the lowest load, {sl} {u}, was past the knee: {reason}",
            "{stage}：即使最低负载 {sl} {u} 也已越过拐点：{reason}"
        ),
        tr!(
            lang,
            "start the steps well below {sl} {u} to find where the service saturates",
            "请从远低于 {sl} {u} 的负载开始，找到服务饱和的位置"
        ),
    )
}

pub fn no_knee(f: &NoKnee, lang: Lang) -> Words {
    let (stage, u, kl) = (&f.stage, unit(f.unit, lang), num(f.highest));
    Words::new(
        tr!(
            lang,
            "{stage}: throughput followed the load up to {kl} {u}; the knee is above the highest step",
            "{stage}：吞吐一直随负载增长到 {kl} {u}；拐点高于最高一级负载"
        ),
        tr!(
            lang,
            "extend the steps above {kl} {u} to find the knee",
            "把负载阶梯提高到 {kl} {u} 以上以找到拐点"
        ),
    )
}

pub fn queueing_bound(f: &LoadTrend, lang: Lang) -> Words {
    let (stage, u) = (&f.stage, unit_short(f.unit, lang));
    let (l, p) = (&f.low, &f.high);
    let (t0, t1, d0, d1) = (
        num(l.ttft_p50_ms),
        num(p.ttft_p50_ms),
        num(l.tpot_p50_ms),
        num(p.tpot_p50_ms),
    );
    let (a, b) = (num(l.load), num(p.load));
    let waiting = f.waiting_peak.map_or_else(String::new, |w| {
        let w = num(w);
        tr!(
            lang,
            "; up to {w} requests waited in the server's queue",
            "；服务端排队请求最多达 {w} 个"
        )
    });
    Words::new(
        tr!(
            lang,
            "{stage}: TTFT p50 rose from {t0} ms at {a} {u} to {t1} ms at {b} {u} while TPOT p50 stayed at {d0}-{d1} ms: requests wait for admission or prefill, not for decoding{waiting}",
            "{stage}：TTFT p50 从 {a} {u} 时的 {t0} 毫秒升到 {b} {u} 时的 {t1} 毫秒，而 TPOT p50 保持在 {d0}-{d1} 毫秒：请求在等待调度或预填充（prefill），而不是解码{waiting}"
        ),
        tr!(
            lang,
            "the engine runs out of batch slots or prefill budget: raise max_num_seqs if the KV cache has room, enable chunked prefill (--enable-chunked-prefill) and raise --max-num-batched-tokens, turn on prefix caching when prompts share a prefix, or add replicas; TPOT leaves room to batch more",
            "引擎的批次槽位或预填充预算不足：若 KV 缓存有余量可调大 max_num_seqs，开启 chunked prefill（--enable-chunked-prefill）并调大 --max-num-batched-tokens，提示词有公共前缀时开启 prefix caching，或增加副本；TPOT 仍有余量可承载更大批次"
        ),
    )
}

pub fn decode_bound(f: &LoadTrend, lang: Lang) -> Words {
    let (stage, u) = (&f.stage, unit_short(f.unit, lang));
    let (l, h) = (&f.low, &f.high);
    let (d0, d1) = (num(l.tpot_p50_ms), num(h.tpot_p50_ms));
    let batch = |b: Option<f64>| b.map_or_else(|| "-".into(), num);
    let (b0, b1) = (batch(l.in_flight_mean), batch(h.in_flight_mean));
    let (a, b) = (num(l.load), num(h.load));
    Words::new(
        tr!(
            lang,
            "{stage}: TPOT p50 rose from {d0} ms at {a} {u} ({b0} in flight) to {d1} ms at {b} {u} ({b1} in flight): each decode step slows as the batch grows",
            "{stage}：TPOT p50 从 {a} {u}（进行中 {b0} 个）时的 {d0} 毫秒升至 {b} {u}（进行中 {b1} 个）时的 {d1} 毫秒：批次越大，每步解码越慢"
        ),
        tr!(
            lang,
            "decoding is memory-bandwidth bound at this batch: cap the batch with max_num_seqs to hold TPOT near {d0} ms (at some throughput), shorten max_tokens, use speculative decoding or FP8 weights and KV cache, or add replicas / tensor parallelism",
            "在该批次规模下解码受显存带宽限制：用 max_num_seqs 限制批次以把 TPOT 保持在 {d0} 毫秒附近（牺牲部分吞吐），减小 max_tokens，使用投机解码或 FP8 权重与 KV 缓存，或增加副本/张量并行"
        ),
    )
}
