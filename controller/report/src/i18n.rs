//! The report's language: every label in English and Chinese, as one struct per language so
//! a label missing from either is a compile error, and number formatting shared by both.

use std::fmt::Write as _;

use stampede_results::kinds::Severity;

/// The language of the reports (`--lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl std::str::FromStr for Lang {
    type Err = String;

    /// `en` or `zh`, as `--lang` takes them.
    fn from_str(s: &str) -> Result<Lang, String> {
        match s {
            "en" => Ok(Lang::En),
            "zh" => Ok(Lang::Zh),
            other => Err(format!("expected en or zh, got {other:?}")),
        }
    }
}

impl Lang {
    /// The HTML `lang` attribute.
    pub fn html_code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    /// The labels of this language.
    pub fn labels(self) -> &'static Labels {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }
}

/// Text in the report's language: `tr!(lang, "english {x}", "中文 {x}")`, both formats
/// capturing the same variables.
macro_rules! tr {
    ($lang:expr, $en:literal, $zh:literal $(,)?) => {
        match $lang {
            $crate::i18n::Lang::En => format!($en),
            $crate::i18n::Lang::Zh => format!($zh),
        }
    };
}
pub(crate) use tr;

impl Labels {
    /// The label of a severity.
    pub fn severity(&self, s: Severity) -> &'static str {
        match s {
            Severity::Critical => self.severity_critical,
            Severity::Warning => self.severity_warning,
            Severity::Info => self.severity_info,
        }
    }
}

/// Every fixed label of the reports.
#[derive(Debug)]
pub struct Labels {
    pub report_title: &'static str,
    pub generated_by: &'static str,
    pub rebuild_hint: &'static str,
    // Run facts.
    pub run: &'static str,
    pub target: &'static str,
    pub model: &'static str,
    pub simulator: &'static str,
    pub started: &'static str,
    pub finished: &'static str,
    pub status: &'static str,
    pub agents: &'static str,
    pub version: &'static str,
    pub plan_hash: &'static str,
    pub slo_result: &'static str,
    pub pass: &'static str,
    pub fail: &'static str,
    pub no_slo: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    // Headline numbers.
    pub headline: &'static str,
    pub max_qps_within_slo: &'static str,
    pub knee: &'static str,
    pub peak_tokens: &'static str,
    pub overall_e2e_p99: &'static str,
    pub error_rate: &'static str,
    pub not_found: &'static str,
    // Sections.
    pub findings: &'static str,
    pub no_findings: &'static str,
    pub suggestion: &'static str,
    pub evidence: &'static str,
    pub steps: &'static str,
    pub slo_verdicts: &'static str,
    pub errors: &'static str,
    pub no_errors: &'static str,
    pub charts_load: &'static str,
    pub charts_throughput: &'static str,
    pub charts_input: &'static str,
    pub charts_time: &'static str,
    pub charts_resources: &'static str,
    pub charts_distribution: &'static str,
    pub charts_drift: &'static str,
    pub notes: &'static str,
    pub plan: &'static str,
    pub severity_info: &'static str,
    pub severity_warning: &'static str,
    pub severity_critical: &'static str,
    // Table columns.
    pub col_step: &'static str,
    pub col_offered: &'static str,
    pub col_sent: &'static str,
    pub col_completed_rate: &'static str,
    /// The steps table: how long each step really ran, how it ended, and what finished in its
    /// drain (after its window, outside its rates).
    pub col_duration: &'static str,
    pub col_ended: &'static str,
    pub col_drain: &'static str,
    pub end_complete: &'static str,
    pub end_interrupted: &'static str,
    pub end_paused: &'static str,
    pub end_rate_changed: &'static str,
    pub end_aborted: &'static str,
    pub col_tokens: &'static str,
    pub col_goodput: &'static str,
    pub col_error_pct: &'static str,
    pub col_slo: &'static str,
    pub col_check: &'static str,
    pub col_limit: &'static str,
    pub col_value: &'static str,
    pub col_verdict: &'static str,
    pub col_class: &'static str,
    pub col_count: &'static str,
    /// The first server message of an error class (redacted).
    pub col_first_message: &'static str,
    pub col_metric: &'static str,
    pub col_change: &'static str,
    pub col_noise: &'static str,
    pub col_flag: &'static str,
    // Chart titles and axes.
    pub ttft: &'static str,
    pub itl: &'static str,
    pub tpot: &'static str,
    pub e2e: &'static str,
    pub latency_ms: &'static str,
    pub offered_qps: &'static str,
    pub concurrency: &'static str,
    pub users: &'static str,
    pub preemptions: &'static str,
    pub agent_cpu: &'static str,
    pub warmup: &'static str,
    pub requests_per_s: &'static str,
    pub achieved_vs_offered: &'static str,
    pub offered: &'static str,
    pub sent: &'static str,
    pub completed: &'static str,
    pub output_tokens_per_s: &'static str,
    pub tokens_per_s: &'static str,
    pub ttft_vs_input: &'static str,
    pub input_tokens: &'static str,
    pub elapsed_s: &'static str,
    pub qps_over_time: &'static str,
    pub latency_over_time: &'static str,
    pub itl_over_time: &'static str,
    pub errors_over_time: &'static str,
    pub failed: &'static str,
    pub timeouts: &'static str,
    pub dropped: &'static str,
    pub requests: &'static str,
    pub in_flight_over_time: &'static str,
    pub in_flight: &'static str,
    pub gpu_util: &'static str,
    pub gpu_mem: &'static str,
    pub cpu: &'static str,
    pub memory: &'static str,
    pub kv_cache: &'static str,
    pub server_queue: &'static str,
    pub percent: &'static str,
    pub value: &'static str,
    pub per_second: &'static str,
    pub percentile: &'static str,
    pub distribution_of: &'static str,
    pub approximate: &'static str,
    pub drift_title: &'static str,
    pub p99_by_window: &'static str,
    pub knee_marker: &'static str,
    // Notes about the folder.
    pub note_missing: &'static str,
    pub note_unreadable: &'static str,
    pub omitted_columns: &'static str,
    // Comparison.
    pub comparison: &'static str,
    pub baseline: &'static str,
    pub candidate: &'static str,
    pub regression: &'static str,
    pub improvement: &'static str,
    pub within_noise: &'static str,
    pub changed: &'static str,
    pub unmatched_steps: &'static str,
    pub different_plans: &'static str,
}

/// English.
pub static EN: Labels = Labels {
    report_title: "Stampede report",
    generated_by: "Generated by Stampede",
    rebuild_hint: "from the files in this folder; rebuild it with",
    run: "Run",
    target: "Target",
    model: "Model",
    simulator: "built-in simulator",
    started: "Started",
    finished: "Finished",
    status: "Status",
    agents: "Agents",
    version: "Stampede version",
    plan_hash: "Plan hash",
    slo_result: "SLO",
    pass: "pass",
    fail: "FAIL",
    no_slo: "no thresholds set",
    yes: "yes",
    no: "no",
    headline: "Headline",
    max_qps_within_slo: "Max QPS within SLO",
    knee: "Knee",
    peak_tokens: "Peak output tokens/s",
    overall_e2e_p99: "E2E p99 (all steps)",
    error_rate: "Error rate",
    not_found: "not found",
    findings: "Findings",
    no_findings: "Nothing to report: no finding was raised.",
    suggestion: "Suggestion",
    evidence: "Evidence",
    steps: "Steps",
    slo_verdicts: "SLO verdicts",
    errors: "Errors",
    no_errors: "No request failed.",
    charts_load: "Latency against load",
    charts_throughput: "Throughput",
    charts_input: "Latency against input length",
    charts_time: "Over time",
    charts_resources: "Resources and server metrics",
    charts_distribution: "Latency distributions",
    charts_drift: "Soak drift",
    notes: "Notes",
    plan: "Plan",
    severity_info: "info",
    severity_warning: "warning",
    severity_critical: "critical",
    col_step: "step",
    col_offered: "offered",
    col_sent: "sent/s",
    col_completed_rate: "done/s",
    col_duration: "ran (s)",
    col_ended: "ended",
    col_drain: "done in drain",
    end_complete: "complete",
    end_interrupted: "interrupted",
    end_paused: "paused",
    end_rate_changed: "rate changed",
    end_aborted: "aborted",
    col_tokens: "tok/s",
    col_goodput: "goodput/s",
    col_error_pct: "err %",
    col_slo: "SLO",
    col_check: "check",
    col_limit: "limit",
    col_value: "value",
    col_verdict: "verdict",
    col_class: "error class",
    col_count: "count",
    col_first_message: "first message",
    col_metric: "metric",
    col_change: "change",
    col_noise: "noise",
    col_flag: "flag",
    ttft: "TTFT",
    itl: "ITL",
    tpot: "TPOT",
    e2e: "E2E latency",
    latency_ms: "latency (ms)",
    offered_qps: "offered QPS (requests/s)",
    concurrency: "concurrency (users)",
    users: "users",
    preemptions: "Preemptions",
    agent_cpu: "CPU of the agents (the client)",
    warmup: "warm-up",
    requests_per_s: "requests/s",
    achieved_vs_offered: "Achieved against offered QPS",
    offered: "offered",
    sent: "sent",
    completed: "completed",
    output_tokens_per_s: "Output tokens/s",
    tokens_per_s: "tokens/s",
    ttft_vs_input: "TTFT against input length",
    input_tokens: "input tokens (mean per request)",
    elapsed_s: "time since the first step (s)",
    qps_over_time: "Requests per second",
    latency_over_time: "Latency",
    itl_over_time: "Inter-token latency",
    errors_over_time: "Errors per interval",
    failed: "failed",
    timeouts: "timeouts",
    dropped: "dropped",
    requests: "requests",
    in_flight_over_time: "Requests in flight",
    in_flight: "in flight",
    gpu_util: "GPU utilisation",
    gpu_mem: "GPU memory",
    cpu: "CPU",
    memory: "Memory",
    kv_cache: "KV cache usage",
    server_queue: "Server requests (running, waiting)",
    percent: "%",
    value: "value",
    per_second: "per second",
    percentile: "percentile",
    distribution_of: "distribution by percentile",
    approximate: "approximate: from the summary's percentiles (no interval log)",
    drift_title: "p99 by checkpoint or window of each soak",
    p99_by_window: "p99 (ms)",
    knee_marker: "knee",
    note_missing: "missing",
    note_unreadable: "could not be read",
    omitted_columns: "further columns not charted",
    comparison: "Comparison",
    baseline: "baseline (A)",
    candidate: "candidate (B)",
    regression: "REGRESSION",
    improvement: "improved",
    within_noise: "within noise",
    changed: "changed",
    unmatched_steps: "Steps in only one run",
    different_plans: "The runs used different plans (plan hashes differ); steps are matched by name.",
};

/// Chinese (simplified).
pub static ZH: Labels = Labels {
    report_title: "Stampede 压测报告",
    generated_by: "由 Stampede 生成",
    rebuild_hint: "数据来自本目录下的文件；可用以下命令重新生成",
    run: "运行",
    target: "目标服务",
    model: "模型",
    simulator: "内置模拟器",
    started: "开始时间",
    finished: "结束时间",
    status: "状态",
    agents: "压测代理",
    version: "Stampede 版本",
    plan_hash: "计划哈希",
    slo_result: "SLO",
    pass: "通过",
    fail: "未通过",
    no_slo: "未设置阈值",
    yes: "是",
    no: "否",
    headline: "关键指标",
    max_qps_within_slo: "满足 SLO 的最大 QPS",
    knee: "拐点",
    peak_tokens: "峰值输出 tokens/s",
    overall_e2e_p99: "端到端延迟 p99（全部阶段）",
    error_rate: "错误率",
    not_found: "未找到",
    findings: "诊断结论",
    no_findings: "没有需要报告的问题。",
    suggestion: "优化建议",
    evidence: "证据",
    steps: "各阶段结果",
    slo_verdicts: "SLO 判定",
    errors: "错误",
    no_errors: "没有失败的请求。",
    charts_load: "延迟随负载变化",
    charts_throughput: "吞吐",
    charts_input: "延迟随输入长度变化",
    charts_time: "时间序列",
    charts_resources: "资源与服务端指标",
    charts_distribution: "延迟分布",
    charts_drift: "长稳漂移",
    notes: "说明",
    plan: "测试计划",
    severity_info: "信息",
    severity_warning: "警告",
    severity_critical: "严重",
    col_step: "阶段",
    col_offered: "目标负载",
    col_sent: "发送/秒",
    col_completed_rate: "完成/秒",
    col_duration: "实际时长（秒）",
    col_ended: "结束方式",
    col_drain: "收尾完成",
    end_complete: "完整",
    end_interrupted: "被中断",
    end_paused: "暂停",
    end_rate_changed: "速率已改",
    end_aborted: "中止",
    col_tokens: "tokens/秒",
    col_goodput: "有效吞吐/秒",
    col_error_pct: "错误 %",
    col_slo: "SLO",
    col_check: "检查项",
    col_limit: "阈值",
    col_value: "实测值",
    col_verdict: "判定",
    col_class: "错误类型",
    col_count: "次数",
    col_first_message: "首条错误信息",
    col_metric: "指标",
    col_change: "变化",
    col_noise: "噪声",
    col_flag: "标记",
    ttft: "首 token 延迟 (TTFT)",
    itl: "token 间延迟 (ITL)",
    tpot: "每 token 耗时 (TPOT)",
    e2e: "端到端延迟 (E2E)",
    latency_ms: "延迟（毫秒）",
    offered_qps: "目标 QPS（请求/秒）",
    concurrency: "并发数（用户）",
    users: "并发",
    preemptions: "请求抢占",
    agent_cpu: "压测代理（客户端）CPU",
    warmup: "预热",
    requests_per_s: "请求/秒",
    achieved_vs_offered: "实际 QPS 与目标 QPS",
    offered: "目标",
    sent: "已发送",
    completed: "已完成",
    output_tokens_per_s: "输出 tokens/秒",
    tokens_per_s: "tokens/秒",
    ttft_vs_input: "TTFT 随输入长度变化",
    input_tokens: "输入 token 数（每请求平均）",
    elapsed_s: "自第一阶段开始的时间（秒）",
    qps_over_time: "每秒请求数",
    latency_over_time: "延迟",
    itl_over_time: "token 间延迟",
    errors_over_time: "每个间隔的错误数",
    failed: "失败",
    timeouts: "超时",
    dropped: "丢弃",
    requests: "请求数",
    in_flight_over_time: "进行中的请求",
    in_flight: "进行中",
    gpu_util: "GPU 利用率",
    gpu_mem: "GPU 显存",
    cpu: "CPU",
    memory: "内存",
    kv_cache: "KV 缓存使用率",
    server_queue: "服务端请求（运行中、排队中）",
    percent: "%",
    value: "数值",
    per_second: "每秒",
    percentile: "百分位",
    distribution_of: "按百分位的分布",
    approximate: "近似值：来自汇总的百分位（无区间日志）",
    drift_title: "长稳测试各检查点或时间窗口的 p99",
    p99_by_window: "p99（毫秒）",
    knee_marker: "拐点",
    note_missing: "缺失",
    note_unreadable: "无法读取",
    omitted_columns: "其余列未绘图",
    comparison: "对比",
    baseline: "基线 (A)",
    candidate: "对比对象 (B)",
    regression: "性能回退",
    improvement: "改善",
    within_noise: "在噪声范围内",
    changed: "有变化",
    unmatched_steps: "仅在一次运行中出现的阶段",
    different_plans: "两次运行使用了不同的测试计划（计划哈希不同）；阶段按名称匹配。",
};

/// A number as people read it: integers without decimals, otherwise up to three significant
/// figures below 100 and none above.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    let mut s = String::new();
    let decimals = if a >= 100.0 || a == a.trunc() {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let _ = write!(s, "{x:.decimals$}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.');
        s = trimmed.to_string();
    }
    if s == "-0" { "0".into() } else { s }
}

/// A share as a percentage with up to two decimals.
pub fn pct(share: f64) -> String {
    format!("{}%", num(share * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(num(8.0), "8");
        assert_eq!(num(1500.0), "1500");
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(pct(0.0125), "1.25%");
    }

    #[test]
    fn tr_picks_the_language() {
        let q = 8;
        assert_eq!(tr!(Lang::En, "at {q}/s", "在 {q}/秒"), "at 8/s");
        assert_eq!(tr!(Lang::Zh, "at {q}/s", "在 {q}/秒"), "在 8/秒");
        assert_eq!(Lang::Zh.labels().fail, "未通过");
    }
}
