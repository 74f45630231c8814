//! Stability in words: error bursts, soak drift, fluctuation, agents lost.

use stampede_results::facts::{
    AfterLoss, AgentLost, DriftMetric, ErrorBurst, Fluctuation, SoakDrift, WindowName,
};

use super::Words;
use crate::i18n::{Lang, num, pct, tr};

pub fn error_burst(f: &ErrorBurst, lang: Lang) -> Words {
    let share = pct(f.failed as f64 / (f.failed + f.completed).max(1) as f64);
    let (from_t, to_t, failed) = (num(f.from_s), num(f.to_s), f.failed);
    let more = match f.more {
        0 => String::new(),
        1 => tr!(lang, " (1 more burst)", "（另有 1 次突发）"),
        n => tr!(lang, " ({n} more bursts)", "（另有 {n} 次突发）"),
    };
    let cause = if f.timeouts * 2 >= f.failed {
        tr!(
            lang,
            "most were timeouts: the server stalled (a restart, a long prefill, swapping) or its queue outgrew the timeout",
            "大部分为超时：服务端出现停顿（重启、超长预填充、换页）或排队时间超过了超时时间"
        )
    } else {
        tr!(
            lang,
            "read the server's log for that time (out of memory, a crash or restart, a gateway error)",
            "请查看该时间段的服务端日志（显存不足、崩溃或重启、网关错误）"
        )
    };
    Words::new(
        tr!(
            lang,
            "between {from_t} s and {to_t} s, {failed} requests failed ({share} of those that finished) while the rest of the run was mostly clean{more}",
            "在第 {from_t} 秒到第 {to_t} 秒之间，{failed} 个请求失败（占完成请求的 {share}），而其余时间基本正常{more}"
        ),
        cause,
    )
}

/// A soak window's name.
fn window(w: &WindowName, lang: Lang) -> String {
    match w {
        WindowName::Step { step } => step.clone(),
        WindowName::Hour { step, n } => tr!(lang, "{step} hour {n}", "{step} 第 {n} 小时"),
        WindowName::TenMinutes { step, n } => tr!(
            lang,
            "{step} 10-minute window {n}",
            "{step} 第 {n} 个 10 分钟窗口"
        ),
    }
}

pub fn soak_drift(f: &SoakDrift, lang: Lang) -> Words {
    let mut parts: Vec<String> = f
        .rises
        .iter()
        .map(|r| {
            let metric = match r.metric {
                DriftMetric::Ttft => "TTFT",
                DriftMetric::E2e => "E2E",
            };
            let (a, b) = (num(r.from_ms), num(r.to_ms));
            let (wa, wb) = (window(&r.from, lang), window(&r.to, lang));
            tr!(
                lang,
                "{metric} p99 rose from {a} ms in {wa} to {b} ms in {wb}",
                "{metric} p99 从 {wa} 的 {a} 毫秒升至 {wb} 的 {b} 毫秒"
            )
        })
        .collect();
    if let Some((a, b)) = f.throughput_fell {
        let (a, b) = (num(a), num(b));
        parts.push(tr!(
            lang,
            "output tokens/s fell from {a} to {b}",
            "输出 tokens/秒 从 {a} 降至 {b}"
        ));
    }
    let what = parts.join(tr!(lang, "; ", "；").as_str());
    let name = &f.soak;
    Words::new(
        tr!(
            lang,
            "{name}: under a constant load, {what}",
            "{name}：在恒定负载下，{what}"
        ),
        tr!(
            lang,
            "the service degrades over time: watch its memory and KV-cache usage and GPU clocks over the run (leaks, fragmentation, a prefix cache filling, thermal throttling), and plan restarts or more headroom until it is fixed",
            "服务性能随时间下降：请观察整个运行期间的内存、KV 缓存使用率和 GPU 频率（内存泄漏、碎片、前缀缓存填满、过热降频），在修复前安排定期重启或预留更多余量"
        ),
    )
}

pub fn fluctuation(f: &Fluctuation, lang: Lang) -> Words {
    let name = &f.step;
    let (tc, lc, ec) = (pct(f.throughput_cv), pct(f.e2e_p50_cv), pct(f.expected_cv));
    Words::new(
        tr!(
            lang,
            "{name}: at a constant load, output tokens/s varied by {tc} (arrivals alone explain about {ec}) and E2E p50 by {lc} between intervals",
            "{name}：在恒定负载下，各间隔的输出 tokens/秒波动 {tc}（到达过程本身约 {ec}），E2E p50 波动 {lc}"
        ),
        tr!(
            lang,
            "the service is unsteady: look for other work on the GPU or host, autoscaling, batches oscillating at the max_num_seqs limit, or pauses in the server; lengthen steps and repeat runs before comparing them",
            "服务不稳定：检查 GPU 或主机上的其他负载、自动扩缩容、批次在 max_num_seqs 上限附近振荡或服务端停顿；在做对比前延长阶段时长并重复运行"
        ),
    )
}

pub fn agent_lost(f: &AgentLost, lang: Lang) -> Words {
    let (agent, addr, step, at, why) = (&f.agent, &f.addr, &f.step, num(f.elapsed_s), &f.detail);
    let after = match &f.after {
        AfterLoss::Aborted { reason } => tr!(
            lang,
            "the run was aborted ({reason})",
            "运行已中止（{reason}）"
        ),
        AfterLoss::RejoinedAfterLastStep { at_s } => {
            let t = num(*at_s);
            tr!(
                lang,
                "it rejoined at {t}s, after the last step",
                "它在 {t} 秒时重新加入，已在最后一步之后"
            )
        }
        AfterLoss::Rejoined { at_s, step: from } => {
            let t = num(*at_s);
            tr!(
                lang,
                "it rejoined at {t}s, from {from} on",
                "它在 {t} 秒时重新加入，从 {from} 起参与"
            )
        }
        AfterLoss::WentOn => tr!(
            lang,
            "the run went on without it",
            "运行在没有它的情况下继续"
        ),
    };
    Words::new(
        tr!(
            lang,
            "agent {agent} ({addr}) was lost during {step} at {at}s: {why}; its data up to its last interval is kept, and {after}",
            "压测代理 {agent}（{addr}）在 {step} 的第 {at} 秒丢失：{why}；其最后一个区间之前的数据已保留，{after}"
        ),
        tr!(
            lang,
            "{step} offered less than planned after the loss (see its agents' achieved_qps in summary.json); check the agent's host: its logs, the OOM killer, the network",
            "{step} 在丢失后实际负载低于计划（见 summary.json 中各代理的 achieved_qps）；请检查该代理所在主机：日志、OOM killer、网络"
        ),
    )
}
