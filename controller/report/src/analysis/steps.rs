//! Per-step checks: every request failed, some failed, the client set the pace, the server saw
//! other prompt lengths, tokens arrived coalesced, requests unaccounted for, arrivals dropped.

use serde_json::json;

use super::{Evidence, finding};
use crate::i18n::{Lang, num, pct, tr};
use stampede_results::kinds::{FindingCode, Severity, StepMode};
use stampede_results::summary::{Finding, INPUT_GAP_WARN, ReportedCounts, StageSummary};
use stampede_results::table::NumericTable;

/// Schedule lag p99 above which a step's load was not sent as planned: the client, not the
/// server, set the pace, so the results understate the server.
pub const CLIENT_BOUND_LAG_MS: f64 = 25.0;
/// Tokens per chunk above which chunk gaps stop being per-token latencies.
const COALESCED_TOKENS_PER_CHUNK: f64 = 1.5;
/// An agent's CPU above this (percent) cannot be trusted to send on time.
const AGENT_CPU_BUSY_PCT: f64 = 90.0;

/// True when a step's requests left too late for its results to describe the server, or an
/// agent's CPU passed the guard's limit in enough of its intervals
/// ([`stampede_results::summary::Resources::client_cpu_bound`]).
pub fn is_client_bound(s: &StageSummary) -> bool {
    client_lag_bound(s) || s.resources.client_cpu_bound()
}

/// Open loop with schedule lag p99 above the plan's `[monitor] client_lag_limit`.
fn client_lag_bound(s: &StageSummary) -> bool {
    let limit = s
        .resources
        .client_lag_limit_ms
        .unwrap_or(CLIENT_BOUND_LAG_MS);
    s.mode == StepMode::Open && s.schedule_lag_ms.count > 0 && s.schedule_lag_ms.p99 > limit
}

/// The per-step findings.
pub fn per_step(ev: &Evidence<'_>, lang: Lang, out: &mut Vec<Finding>) {
    for s in ev.stages {
        failures(s, lang, out);
        client_bound(s, ev.resources, lang, out);
        tokens(s, lang, out);
        accounting(s, lang, out);
        backlog(s, lang, out);
        if s.requests.dropped > 0 {
            let (name, dropped) = (&s.name, s.requests.dropped);
            out.push(finding(
                Severity::Warning,
                FindingCode::Dropped,
                tr!(
                    lang,
                    "{name}: {dropped} arrivals were not sent because max_in_flight was reached",
                    "{name}：达到 max_in_flight 上限，{dropped} 个请求未发送"
                ),
                Some(tr!(
                    lang,
                    "the offered rate was not applied: raise the stage's max_in_flight, or read this step as closed-loop at that cap",
                    "目标负载未完全施加：调大该阶段的 max_in_flight，或把该阶段视为以此上限为并发的闭环测试"
                )),
                json!({ "step": s.name, "dropped": dropped }),
            ));
        }
    }
}

fn failures(s: &StageSummary, lang: Lang, out: &mut Vec<Finding>) {
    let name = &s.name;
    if s.requests.sent > 0 && s.requests.completed == 0 {
        let sent = s.requests.sent;
        out.push(finding(
            Severity::Critical,
            FindingCode::AllFailed,
            tr!(
                lang,
                "{name}: every one of {sent} requests failed; the run is not evidence of performance",
                "{name}：全部 {sent} 个请求都失败了，本次结果不能作为性能依据"
            ),
            Some(tr!(
                lang,
                "fix the target first: check base_url, the model name, the API key and the server's log (error classes in the evidence)",
                "请先排查目标服务：检查 base_url、模型名、API key 以及服务端日志（错误类型见证据）"
            )),
            json!({ "step": s.name, "errors": s.errors }),
        ));
    } else if s.rates.error_rate > 0.0 {
        let rate = pct(s.rates.error_rate);
        let top = s
            .errors
            .iter()
            .filter(|(class, _)| class.as_str() != "cancelled")
            .max_by_key(|(_, n)| **n)
            .map(|(class, n)| format!("{class} ×{n}"))
            .unwrap_or_default();
        out.push(finding(
            Severity::Warning,
            FindingCode::Errors,
            tr!(
                lang,
                "{name}: {rate} of requests failed (most: {top})",
                "{name}：{rate} 的请求失败（最多：{top}）"
            ),
            Some(error_advice(s, lang)),
            json!({ "step": s.name, "error_rate": s.rates.error_rate, "errors": s.errors }),
        ));
    }
}

/// What to do about a step's errors, by their dominant class.
pub(crate) fn error_advice(s: &StageSummary, lang: Lang) -> String {
    let count = |k: &str| s.errors.get(k).copied().unwrap_or(0);
    let timeouts = count("timeout_first_token") + count("timeout_total");
    let http_429 = count("http_429");
    let server = count("http_5xx") + count("stream_broken");
    if http_429 > 0 && http_429 >= timeouts && http_429 >= server {
        tr!(
            lang,
            "HTTP 429: the server or a gateway limits the rate; raise its limit or its max queue length, or add replicas",
            "HTTP 429：服务端或网关在限流；调高限流阈值或最大排队长度，或增加副本"
        )
    } else if timeouts >= server {
        tr!(
            lang,
            "timeouts: requests waited longer than the plan's timeout; lower the load below the knee, shorten max_tokens, or add replicas (raise the timeout only if such waits are acceptable)",
            "超时：请求等待超过了计划中的 timeout；把负载降到拐点以下、减小 max_tokens 或增加副本（只有在可以接受如此长等待时才调大超时）"
        )
    } else {
        tr!(
            lang,
            "server errors or broken streams: read the server's log at those times (out of memory, crashes, restarts)",
            "服务端错误或流中断：查看对应时间的服务端日志（显存不足、崩溃、重启）"
        )
    }
}

fn client_bound(
    s: &StageSummary,
    resources: Option<&NumericTable>,
    lang: Lang,
    out: &mut Vec<Finding>,
) {
    let agent_cpu_peak = resources.and_then(|t| {
        t.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| super::server::classify(c) == super::server::ColumnKind::AgentCpu)
            .flat_map(|(i, _)| t.samples.iter().filter_map(move |s| s.values[i]))
            .reduce(f64::max)
    });
    if !is_client_bound(s) {
        return;
    }
    let (name, lag) = (&s.name, num(s.schedule_lag_ms.p99));
    let r = &s.resources;
    let cpu_peak = r.stats.get("client_cpu_pct").map(|m| m.max);
    let message = if client_lag_bound(s) {
        let limit = num(r.client_lag_limit_ms.unwrap_or(CLIENT_BOUND_LAG_MS));
        tr!(
            lang,
            "{name}: requests left {lag} ms late at p99 (limit {limit} ms): the client set the pace, so results understate the server",
            "{name}：请求发送在 p99 上延迟了 {lag} 毫秒（上限 {limit} 毫秒）：压测端成为瓶颈，结果低估了服务端能力"
        )
    } else {
        let (n, of) = (r.client_cpu_bound_intervals, r.sampled_intervals);
        let limit = num(r.client_cpu_limit_pct.unwrap_or(85.0));
        let peak = num(cpu_peak.unwrap_or(0.0));
        tr!(
            lang,
            "{name}: an agent's CPU passed {limit}% in {n} of {of} intervals (peak {peak}%): the client set the pace, so results understate the server",
            "{name}：压测代理的 CPU 在 {of} 个区间中有 {n} 个超过 {limit}%（峰值 {peak}%）：压测端成为瓶颈，结果低估了服务端能力"
        )
    };
    out.push(finding(
        Severity::Critical,
        FindingCode::ClientBound,
        message,
        Some(tr!(
            lang,
            "add agents (--agents N, or --agent HOST:PORT on other machines) so each sends less",
            "增加压测代理（--agents N，或在其他机器上运行并用 --agent HOST:PORT 接入），降低每个代理的发送量"
        )),
        json!({
            "step": s.name,
            "schedule_lag_p99_ms": s.schedule_lag_ms.p99,
            "agent_cpu_peak_pct": agent_cpu_peak.filter(|c| *c >= AGENT_CPU_BUSY_PCT),
            "client_cpu_peak_pct": cpu_peak,
            "client_cpu_bound_intervals": r.client_cpu_bound_intervals,
            "sampled_intervals": r.sampled_intervals,
        }),
    ));
}

/// Agents whose stream to the controller backed up: nothing was lost from the counts or
/// histograms, but intervals were folded together and request records may be missing.
fn backlog(s: &StageSummary, lang: Lang, out: &mut Vec<Finding>) {
    for a in s
        .agents
        .iter()
        .filter(|a| a.coalesced_intervals > 0 || a.records_dropped > 0)
    {
        let (name, agent, folded, dropped) =
            (&s.name, &a.agent, a.coalesced_intervals, a.records_dropped);
        out.push(finding(
            Severity::Warning,
            FindingCode::StreamBacklog,
            tr!(
                lang,
                "{name}: agent {agent}'s reports waited on a slow controller: {folded} intervals were folded into later ones and {dropped} request records dropped (requests.csv misses them; counts and histograms are whole)",
                "{name}：压测代理 {agent} 的上报因控制端处理缓慢而积压：{folded} 个区间并入了后续区间，{dropped} 条请求记录被丢弃（requests.csv 中缺少这些记录；计数和直方图完整）"
            ),
            Some(tr!(
                lang,
                "give the controller more CPU or a faster disk, or keep fewer records ([results] record_every)",
                "为控制端提供更多 CPU 或更快的磁盘，或减少请求记录（[results] record_every）"
            )),
            json!({ "step": s.name, "agent": a.agent, "coalesced_intervals": folded, "records_dropped": dropped }),
        ));
    }
}

fn tokens(s: &StageSummary, lang: Lang, out: &mut Vec<Finding>) {
    let name = &s.name;
    if let Some(gap) = s
        .tokens
        .input_gap_ratio
        .filter(|g| g.abs() > INPUT_GAP_WARN)
    {
        let gap_pct = format!("{:+.1}%", gap * 100.0);
        out.push(finding(
            Severity::Warning,
            FindingCode::InputTokenGap,
            tr!(
                lang,
                "{name}: the server counted {gap_pct} prompt tokens against the workload's tokenizer; the plan's input lengths are not what the server saw (chat template, or another tokenizer)",
                "{name}：服务端统计的输入 token 数与压测端分词器相差 {gap_pct}；服务端实际看到的输入长度与计划不同（对话模板或分词器不同）"
            ),
            Some(tr!(
                lang,
                "set input_tokens with the server's count in mind, or use api = \"completions\" to send raw prompts without a chat template",
                "按服务端的统计来设置 input_tokens，或使用 api = \"completions\" 发送不带对话模板的原始提示"
            )),
            json!({ "step": s.name, "workload_tokens": s.tokens.input_total, "server_tokens": s.tokens.server_input_total }),
        ));
    }
    if let Some(ratio) = s
        .tokens
        .tokens_per_chunk
        .filter(|r| *r > COALESCED_TOKENS_PER_CHUNK)
    {
        let ratio = num(ratio);
        out.push(finding(
            Severity::Warning,
            FindingCode::CoalescedTokens,
            tr!(
                lang,
                "{name}: {ratio} tokens arrived per chunk; chunk gaps are not per-token latencies (ITL spreads them over the tokens)",
                "{name}：每个数据块平均携带 {ratio} 个 token；块间隔不等于逐 token 延迟（ITL 已按 token 均摊）"
            ),
            Some(tr!(
                lang,
                "the server or a proxy batches the stream (e.g. vLLM --stream-interval, a buffering gateway); read ITL and TPOT, not chunk gaps",
                "服务端或代理在合并流式输出（例如 vLLM 的 --stream-interval、带缓冲的网关）；请以 ITL 和 TPOT 为准，而非块间隔"
            )),
            json!({ "step": s.name, "tokens_per_chunk": s.tokens.tokens_per_chunk }),
        ));
    }
}

fn accounting(s: &StageSummary, lang: Lang, out: &mut Vec<Finding>) {
    let name = &s.name;
    let r = &s.requests;
    if r.sent != r.completed + r.failed + r.cancelled {
        let (sent, completed, failed, cancelled) = (r.sent, r.completed, r.failed, r.cancelled);
        out.push(finding(
            Severity::Critical,
            FindingCode::Accounting,
            tr!(
                lang,
                "{name}: {sent} requests sent but {completed} completed, {failed} failed and {cancelled} cancelled: some requests are unaccounted for",
                "{name}：发送 {sent} 个请求，但完成 {completed}、失败 {failed}、取消 {cancelled}：有请求未被统计"
            ),
            None,
            json!({ "step": s.name, "requests": r }),
        ));
    }
    let by_class: u64 = s
        .errors
        .iter()
        .filter(|(class, _)| class.as_str() != "cancelled")
        .map(|(_, n)| n)
        .sum();
    let cancelled = s.errors.get("cancelled").copied().unwrap_or(0);
    if by_class != r.failed || cancelled != r.cancelled {
        let (failed, n) = (r.failed, r.cancelled);
        out.push(finding(
            Severity::Critical,
            FindingCode::Accounting,
            tr!(
                lang,
                "{name}: {failed} requests failed and {n} were cancelled, but the error classes add up to {by_class} failed and {cancelled} cancelled",
                "{name}：失败 {failed} 个、取消 {n} 个请求，但按错误类别合计为失败 {by_class} 个、取消 {cancelled} 个"
            ),
            None,
            json!({ "step": s.name, "requests": r, "errors": s.errors }),
        ));
    }
    for a in &s.agents {
        let merged = ReportedCounts {
            sent: a.sent,
            completed: a.completed,
            failed: a.failed,
            cancelled: a.cancelled,
        };
        if a.reported.as_ref().is_some_and(|own| *own != merged) {
            let (agent, own) = (&a.agent, format!("{:?}", a.reported));
            let merged = format!("{merged:?}");
            out.push(finding(
                Severity::Critical,
                FindingCode::Accounting,
                tr!(
                    lang,
                    "{name}: agent {agent} counted {own} but its interval reports add up to {merged}",
                    "{name}：代理 {agent} 自身统计为 {own}，但其区间报告合计为 {merged}"
                ),
                None,
                json!({ "step": s.name, "agent": a.agent }),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Evidence, analyse_evidence};
    use super::*;
    use stampede_results::kinds::ShareEnd;

    #[test]
    fn a_healthy_step_raises_nothing() {
        let steps = [open_step("s", 10.0, 10.0)];
        let a = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::En);
        assert!(a.findings.is_empty(), "{:?}", a.findings);
    }

    #[test]
    fn an_agent_whose_stream_backed_up_is_named_with_what_it_folded_and_dropped() {
        let mut s = open_step("s", 10.0, 10.0);
        let share =
            |agent: &str, folded: u32, dropped: u64| stampede_results::summary::AgentShare {
                agent: agent.into(),
                weight: 1.0,
                offered_qps: Some(5.0),
                concurrency: None,
                achieved_qps: 5.0,
                sent: 50,
                completed: 50,
                failed: 0,
                cancelled: 0,
                reported: None,
                end: ShareEnd::Done,
                coalesced_intervals: folded,
                records_dropped: dropped,
            };
        s.agents = vec![share("calm", 0, 0), share("busy", 3, 120)];
        let steps = [s];
        let a = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::En);
        let found: Vec<_> = a
            .findings
            .iter()
            .filter(|f| f.code == FindingCode::StreamBacklog)
            .collect();
        assert_eq!(found.len(), 1, "{:?}", a.findings);
        assert!(found[0].message.contains("busy") && found[0].message.contains("120"));
    }

    #[test]
    fn requests_that_do_not_add_up_are_a_critical_accounting_finding() {
        let mut lost = open_step("lost", 10.0, 10.0);
        lost.requests.completed -= 1;
        let mut classes = open_step("classes", 10.0, 10.0);
        classes.requests.completed -= 3;
        classes.requests.failed = 3;
        classes.errors.insert("http_5xx".into(), 2);
        let mut exact = open_step("exact", 10.0, 10.0);
        exact.requests.completed -= 3;
        exact.requests.failed = 2;
        exact.requests.cancelled = 1;
        exact.errors.insert("http_5xx".into(), 2);
        exact.errors.insert("cancelled".into(), 1);
        for (s, want) in [(lost, 1), (classes, 1), (exact, 0)] {
            let steps = [s];
            let a = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::En);
            let found: Vec<_> = a
                .findings
                .iter()
                .filter(|f| f.code == FindingCode::Accounting)
                .collect();
            assert_eq!(found.len(), want, "{}: {:?}", steps[0].name, a.findings);
            assert!(found.iter().all(|f| f.severity == Severity::Critical));
        }
    }

    #[test]
    fn late_sends_make_a_step_client_bound_with_advice_to_add_agents() {
        let mut s = open_step("s", 10.0, 10.0);
        s.schedule_lag_ms = lat(100, 5.0, 40.0);
        let steps = [s];
        let a = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::En);
        assert_eq!(codes(&a), vec!["client-bound"]);
        assert!(
            a.findings[0]
                .suggestion
                .as_deref()
                .unwrap()
                .contains("--agents")
        );
    }

    #[test]
    fn errors_name_their_dominant_class_and_advice() {
        let mut s = open_step("s", 10.0, 10.0);
        s.requests.failed = 10;
        s.requests.completed = 90;
        s.requests.timeouts = 10;
        s.rates.error_rate = 0.1;
        s.errors.insert("timeout_total".into(), 10);
        let steps = [s];
        let a = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::En);
        assert_eq!(codes(&a), vec!["errors"]);
        assert!(
            a.findings[0].message.contains("timeout_total ×10"),
            "{}",
            a.findings[0].message
        );
        assert!(
            a.findings[0]
                .suggestion
                .as_deref()
                .unwrap()
                .contains("max_tokens")
        );
        let zh = analyse_evidence(&Evidence::stages_only(&steps, false), Lang::Zh);
        assert!(
            zh.findings[0].message.contains("的请求失败"),
            "{}",
            zh.findings[0].message
        );
    }
}
