//! Per-step findings in words: failures, errors, the client as the bottleneck, tokens,
//! accounting, drops.

use stampede_results::facts::{
    Accounting, AllFailed, ClientBound, ClientLimit, CoalescedTokens, Dropped, ErrorCause,
    InputTokenGap, Mismatch, ShortSteps, StepErrors, StreamBacklog, UnplannedSteps,
};
use stampede_results::kinds::StepEnd;
use stampede_results::summary::ErrorSample;

use super::Words;
use crate::i18n::{Lang, num, pct, tr};

/// The server's own words for a failure: `; first answer: http_4xx 401: ...`.
fn said(first: &Option<ErrorSample>, lang: Lang) -> String {
    first.as_ref().map_or_else(String::new, |e| {
        let (label, message) = (e.label(), &e.message);
        tr!(
            lang,
            "; first answer: {label}: {message}",
            "；首个应答：{label}：{message}"
        )
    })
}

pub fn all_failed(f: &AllFailed, lang: Lang) -> Words {
    let (name, sent, said) = (&f.step, f.sent, said(&f.first, lang));
    Words::new(
        tr!(
            lang,
            "{name}: every one of {sent} requests failed{said}; the run is not evidence of performance",
            "{name}：全部 {sent} 个请求都失败了{said}；本次结果不能作为性能依据"
        ),
        tr!(
            lang,
            "fix the target first: check base_url, the model name, the API key and the server's log (the error classes are in the Errors table)",
            "请先排查目标服务：检查 base_url、模型名、API key 以及服务端日志（错误类型见错误表）"
        ),
    )
}

pub fn errors(f: &StepErrors, lang: Lang) -> Words {
    let (name, rate) = (&f.step, pct(f.error_rate));
    let top = f
        .top
        .as_ref()
        .map(|(class, n)| format!("{class} ×{n}"))
        .unwrap_or_default();
    let said = said(&f.first, lang);
    Words::new(
        tr!(
            lang,
            "{name}: {rate} of requests failed (most: {top}){said}",
            "{name}：{rate} 的请求失败（最多：{top}）{said}"
        ),
        error_advice(f.cause, lang),
    )
}

/// What to do about a step's errors, by their dominant class.
fn error_advice(cause: ErrorCause, lang: Lang) -> String {
    match cause {
        ErrorCause::RateLimited => tr!(
            lang,
            "HTTP 429: the server or a gateway limits the rate; raise its limit or its max queue length, or add replicas",
            "HTTP 429：服务端或网关在限流；调高限流阈值或最大排队长度，或增加副本"
        ),
        ErrorCause::Timeouts => tr!(
            lang,
            "timeouts: requests waited longer than the plan's timeout; lower the load below the knee, shorten max_tokens, or add replicas (raise the timeout only if such waits are acceptable)",
            "超时：请求等待超过了计划中的 timeout；把负载降到拐点以下、减小 max_tokens 或增加副本（只有在可以接受如此长等待时才调大超时）"
        ),
        ErrorCause::ServerErrors => tr!(
            lang,
            "server errors or broken streams: read the server's log at those times (out of memory, crashes, restarts)",
            "服务端错误或流中断：查看对应时间的服务端日志（显存不足、崩溃、重启）"
        ),
    }
}

pub fn client_bound(f: &ClientBound, lang: Lang) -> Words {
    let name = &f.step;
    let message = match f.limit {
        ClientLimit::Lag { p99_ms, limit_ms } => {
            let (lag, limit) = (num(p99_ms), num(limit_ms));
            tr!(
                lang,
                "{name}: requests left {lag} ms late at p99 (limit {limit} ms): the client set the pace, so results understate the server",
                "{name}：请求发送在 p99 上延迟了 {lag} 毫秒（上限 {limit} 毫秒）：压测端成为瓶颈，结果低估了服务端能力"
            )
        }
        ClientLimit::Cpu {
            limit_pct,
            intervals: n,
            of,
            peak_pct,
        } => {
            let (limit, peak) = (num(limit_pct), num(peak_pct.unwrap_or(0.0)));
            tr!(
                lang,
                "{name}: an agent's CPU passed {limit}% in {n} of {of} intervals (peak {peak}%): the client set the pace, so results understate the server",
                "{name}：压测代理的 CPU 在 {of} 个区间中有 {n} 个超过 {limit}%（峰值 {peak}%）：压测端成为瓶颈，结果低估了服务端能力"
            )
        }
    };
    Words::new(
        message,
        tr!(
            lang,
            "add agents (--agents N, or --agent HOST:PORT on other machines) so each sends less",
            "增加压测代理（--agents N，或在其他机器上运行并用 --agent HOST:PORT 接入），降低每个代理的发送量"
        ),
    )
}

pub fn stream_backlog(f: &StreamBacklog, lang: Lang) -> Words {
    let (name, agent, folded, dropped) =
        (&f.step, &f.agent, f.coalesced_intervals, f.records_dropped);
    // Only what happened is said: a count of zero is left out.
    let what = match (folded, dropped) {
        (0, _) => tr!(
            lang,
            "{dropped} request records were dropped (requests.csv misses them; counts and histograms are whole)",
            "{dropped} 条请求记录被丢弃（requests.csv 中缺少这些记录；计数和直方图完整）"
        ),
        (_, 0) => tr!(
            lang,
            "{folded} intervals were folded into later ones (counts and histograms are whole)",
            "{folded} 个区间并入了后续区间（计数和直方图完整）"
        ),
        _ => tr!(
            lang,
            "{folded} intervals were folded into later ones and {dropped} request records dropped (requests.csv misses them; counts and histograms are whole)",
            "{folded} 个区间并入了后续区间，{dropped} 条请求记录被丢弃（requests.csv 中缺少这些记录；计数和直方图完整）"
        ),
    };
    Words::new(
        tr!(
            lang,
            "{name}: agent {agent}'s reports waited on a slow controller: {what}",
            "{name}：压测代理 {agent} 的上报因控制端处理缓慢而积压：{what}"
        ),
        tr!(
            lang,
            "give the controller more CPU or a faster disk, or keep fewer records ([results] record_every)",
            "为控制端提供更多 CPU 或更快的磁盘，或减少请求记录（[results] record_every）"
        ),
    )
}

pub fn input_token_gap(f: &InputTokenGap, lang: Lang) -> Words {
    let name = &f.step;
    let gap_pct = format!("{:+.1}%", f.gap_ratio * 100.0);
    Words::new(
        tr!(
            lang,
            "{name}: the server counted {gap_pct} prompt tokens against the workload's tokenizer; the plan's input lengths are not what the server saw (chat template, or another tokenizer)",
            "{name}：服务端统计的输入 token 数与压测端分词器相差 {gap_pct}；服务端实际看到的输入长度与计划不同（对话模板或分词器不同）"
        ),
        tr!(
            lang,
            "set input_tokens with the server's count in mind, or use api = \"completions\" to send raw prompts without a chat template",
            "按服务端的统计来设置 input_tokens，或使用 api = \"completions\" 发送不带对话模板的原始提示"
        ),
    )
}

pub fn coalesced_tokens(f: &CoalescedTokens, lang: Lang) -> Words {
    let (name, ratio) = (&f.step, num(f.tokens_per_chunk));
    Words::new(
        tr!(
            lang,
            "{name}: {ratio} tokens arrived per chunk; chunk gaps are not per-token latencies (ITL spreads them over the tokens)",
            "{name}：每个数据块平均携带 {ratio} 个 token；块间隔不等于逐 token 延迟（ITL 已按 token 均摊）"
        ),
        tr!(
            lang,
            "the server or a proxy batches the stream (e.g. vLLM --stream-interval, a buffering gateway); read ITL and TPOT, not chunk gaps",
            "服务端或代理在合并流式输出（例如 vLLM 的 --stream-interval、带缓冲的网关）；请以 ITL 和 TPOT 为准，而非块间隔"
        ),
    )
}

pub fn accounting(f: &Accounting, lang: Lang) -> Words {
    let name = &f.step;
    let message = match &f.mismatch {
        Mismatch::Outcomes {
            sent,
            completed,
            failed,
            cancelled,
        } => tr!(
            lang,
            "{name}: {sent} requests sent but {completed} completed, {failed} failed and {cancelled} cancelled: some requests are unaccounted for",
            "{name}：发送 {sent} 个请求，但完成 {completed}、失败 {failed}、取消 {cancelled}：有请求未被统计"
        ),
        Mismatch::Classes {
            failed,
            cancelled,
            classed_failed,
            classed_cancelled,
        } => tr!(
            lang,
            "{name}: {failed} requests failed and {cancelled} were cancelled, but the error classes add up to {classed_failed} failed and {classed_cancelled} cancelled",
            "{name}：失败 {failed} 个、取消 {cancelled} 个请求，但按错误类别合计为失败 {classed_failed} 个、取消 {classed_cancelled} 个"
        ),
        Mismatch::Agent { agent, own, merged } => {
            let (own, merged) = (format!("{own:?}"), format!("{merged:?}"));
            tr!(
                lang,
                "{name}: agent {agent} counted {own} but its interval reports add up to {merged}",
                "{name}：代理 {agent} 自身统计为 {own}，但其区间报告合计为 {merged}"
            )
        }
    };
    Words {
        message,
        suggestion: None,
    }
}

pub fn dropped(f: &Dropped, lang: Lang) -> Words {
    let (name, dropped) = (&f.step, f.dropped);
    Words::new(
        tr!(
            lang,
            "{name}: {dropped} arrivals were not sent because max_in_flight was reached",
            "{name}：达到 max_in_flight 上限，{dropped} 个请求未发送"
        ),
        tr!(
            lang,
            "the offered rate was not applied: raise the stage's max_in_flight, or read this step as closed-loop at that cap",
            "目标负载未完全施加：调大该阶段的 max_in_flight，或把该阶段视为以此上限为并发的闭环测试"
        ),
    )
}

pub fn short_steps(f: &ShortSteps, lang: Lang) -> Words {
    let list = f
        .steps
        .iter()
        .map(|s| {
            let (name, secs, n) = (&s.step, num(s.duration_s), s.completed);
            tr!(
                lang,
                "{name} ({secs} s, {n} answers)",
                "{name}（{secs} 秒，{n} 个应答）"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let (min_s, min_n) = (num(f.min_duration_s), f.min_completed);
    Words::new(
        tr!(
            lang,
            "steps too short to trust: {list}; under {min_s} s a step's rates are dominated by its start and drain, and with fewer than {min_n} answers its p99 is only its slowest request",
            "以下阶段过短，结果不可靠：{list}；短于 {min_s} 秒时速率主要由开始和收尾决定，应答少于 {min_n} 个时 p99 只是最慢的那个请求"
        ),
        tr!(
            lang,
            "lengthen the steps (each = \"60s\" or more; a search's probe_duration), or drop --time-scale for runs whose numbers are compared",
            "延长各阶段时长（each = \"60s\" 或更长；容量搜索的 probe_duration），对需要比较数字的运行不要使用 --time-scale"
        ),
    )
}

pub fn unplanned_steps(f: &UnplannedSteps, lang: Lang) -> Words {
    let list = f
        .steps
        .iter()
        .map(|s| {
            let (name, ran) = (&s.step, num(s.ran_s));
            let planned = s.planned_s.map_or_else(|| ran.clone(), num);
            let paused = num(s.paused_s);
            match s.ended {
                StepEnd::Interrupted => tr!(
                    lang,
                    "{name} was interrupted after {ran} s of {planned} s",
                    "{name} 在计划的 {planned} 秒中运行 {ran} 秒后被中断"
                ),
                StepEnd::Aborted => tr!(
                    lang,
                    "{name} was aborted after {ran} s of {planned} s",
                    "{name} 在计划的 {planned} 秒中运行 {ran} 秒后被中止"
                ),
                StepEnd::Paused => tr!(
                    lang,
                    "{name} was paused for {paused} s (rates over its {ran} s of sending)",
                    "{name} 暂停了 {paused} 秒（速率按其发送的 {ran} 秒计算）"
                ),
                StepEnd::RateChanged => tr!(
                    lang,
                    "{name} had its rate changed while it ran",
                    "{name} 运行中修改过负载"
                ),
                StepEnd::Complete => name.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join(tr!(lang, "; ", "；").as_str());
    Words::new(
        tr!(
            lang,
            "steps that did not run as planned: {list}; their numbers cover what they ran",
            "以下阶段未按计划运行：{list}；其数字只反映实际运行的部分"
        ),
        tr!(
            lang,
            "rerun them as planned before comparing this run with another (controller compare refuses such runs without --accept-unplanned)",
            "与其他运行比较前请按计划重新运行（未加 --accept-unplanned 时 controller compare 会拒绝此类运行）"
        ),
    )
}
