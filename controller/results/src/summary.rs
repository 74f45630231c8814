//! summary.json: the `stampede.summary/v1` contract of DESIGN.md, computed from merged
//! histograms and counters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::facts::Facts;
pub use crate::kinds::{
    AgentEventKind, FindingCode, RunStatus, Severity, ShareEnd, StepEnd, StepMode,
};
pub use stampede_common::error_sample::ErrorSample;
use stampede_common::metrics::{HistogramBundle, LatencySummary, Tally};
use stampede_common::plan::StepKind;
use stampede_common::plan::{Bound, Load, SloCheck};
use stampede_common::probe::ProbeResult;

/// The schema name written at the top of summary.json.
pub const SCHEMA: &str = "stampede.summary/v1";

/// Above this gap between the workload's and the server's prompt token counts, the plan's
/// lengths are not what the server saw (DESIGN.md).
pub const INPUT_GAP_WARN: f64 = 0.02;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RequestCounts {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub abnormal: u64,
    pub dropped: u64,
    pub cancelled: u64,
    pub good: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenStats {
    pub input_total: u64,
    pub output_total: u64,
    pub output_per_s: f64,
    pub total_per_s: f64,
    /// Prompt tokens the server reported (`usage.prompt_tokens`), over the requests that had it.
    pub server_input_total: u64,
    /// (server - workload) / workload prompt tokens, over requests with a server count.
    pub input_gap_ratio: Option<f64>,
    /// Output tokens per content chunk; above 1 when tokens arrive coalesced.
    pub tokens_per_chunk: Option<f64>,
}

/// What finished after a step's window, in its drain: requests sent inside the window and
/// answered after it. They are in the step's `requests` and latencies, and in none of its rates
/// (DESIGN.md: throughput counts the completions inside the window over the window's length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DrainCounts {
    pub completed: u64,
    pub failed: u64,
    /// Of the completed, those that met every per-request SLO.
    pub good: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// How long the drain lasted after the window.
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rates {
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub abnormal_rate: f64,
    pub drop_rate: f64,
    pub goodput_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub limit: f64,
    pub bound: Bound,
    pub value: Option<f64>,
    pub pass: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SloVerdict {
    pub pass: bool,
    pub checks: Vec<CheckResult>,
}

/// What the samplers saw during a step: means and maxima per resource, each GPU, and the
/// client-saturation guard's count. Built by the controller's monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// Mean CPU of the load agents' hosts, percent of all their cores.
    pub cpu_pct: Option<f64>,
    /// Mean memory used on the load agents' hosts, percent.
    pub mem_pct: Option<f64>,
    /// Each GPU (NVML) of each agent over the step.
    pub gpus: Vec<GpuSummary>,
    /// Samples taken during the step, over every agent.
    #[serde(default)]
    pub samples: u64,
    /// Intervals with a sample from a load agent.
    #[serde(default)]
    pub sampled_intervals: u32,
    /// Intervals marked client-bound: a load agent's CPU above the limit, or the schedule lag
    /// p99 above its limit.
    #[serde(default)]
    pub client_bound_intervals: u32,
    /// Of those, the intervals marked for CPU.
    #[serde(default)]
    pub client_cpu_bound_intervals: u32,
    /// The guard's limits, from the plan's `[monitor]`.
    #[serde(default)]
    pub client_cpu_limit_pct: Option<f64>,
    #[serde(default)]
    pub client_lag_limit_ms: Option<f64>,
    /// Failed scrapes of the server's metrics, and metrics lines skipped as malformed.
    #[serde(default)]
    pub scrape_failures: u64,
    #[serde(default)]
    pub malformed_lines: u64,
    /// What the samplers said once: an endpoint unreachable, a process that exited.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Every other resource by its resources.csv column name (`host_cpu_pct`,
    /// `client_cpu_pct`, `target_cpu_pct`, `server_requests_running`, ...): mean and max.
    #[serde(flatten)]
    pub stats: BTreeMap<String, MeanMax>,
}

/// One GPU of one agent over a step: means and maxima of what NVML reported (absent when it
/// reported nothing of that kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GpuSummary {
    pub agent: String,
    pub index: u32,
    pub name: String,
    pub mem_total_bytes: u64,
    pub util_pct: Option<MeanMax>,
    pub mem_used_bytes: Option<MeanMax>,
    pub power_w: Option<MeanMax>,
    pub temperature_c: Option<MeanMax>,
    pub sm_clock_mhz: Option<MeanMax>,
}

/// A GPU an agent reported when it joined, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct GpuInventory {
    pub agent: String,
    pub index: u32,
    pub name: String,
    pub memory_total_bytes: u64,
}

/// Mean and maximum of a resource over a step's samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct MeanMax {
    pub mean: f64,
    pub max: f64,
}

/// Share of a step's sampled intervals that must be CPU-bound before the step is: one busy
/// second in a long step is noise, a tenth of them is a client that cannot keep up.
pub const CLIENT_CPU_BOUND_SHARE: f64 = 0.1;

impl Resources {
    /// True when a load agent's CPU passed the limit in at least a tenth of the step's sampled
    /// intervals (and at least one).
    pub fn client_cpu_bound(&self) -> bool {
        self.client_cpu_bound_intervals > 0
            && f64::from(self.client_cpu_bound_intervals)
                >= CLIENT_CPU_BOUND_SHARE * f64::from(self.sampled_intervals)
    }
}

/// One agent's part of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentShare {
    pub agent: String,
    /// Its weight against the other agents' (its cores unless the plan says).
    #[serde(default)]
    pub weight: f64,
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    /// Requests it sent per second of the step.
    #[serde(default)]
    pub achieved_qps: f64,
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// The agent's own totals from its final summary, to check the merge against.
    pub reported: Option<ReportedCounts>,
    /// How the share ended: `done`, or the reason it failed.
    pub end: ShareEnd,
    /// Intervals the agent folded into later ones, and request records it dropped, because its
    /// stream to the controller was full.
    #[serde(default)]
    pub coalesced_intervals: u32,
    #[serde(default)]
    pub records_dropped: u64,
}

/// An agent's own count of its share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportedCounts {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl From<&Tally> for ReportedCounts {
    fn from(c: &Tally) -> Self {
        ReportedCounts {
            sent: c.sent,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
        }
    }
}

/// One step (or the whole run) as summary.json reports it; read back by `controller report`
/// and `controller compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub name: String,
    /// The plan stage this step belongs to.
    pub stage: String,
    /// A rate (`open`), a concurrency (`closed`), or both (`mixed`, the overall line).
    pub mode: StepMode,
    pub offered_qps: Option<f64>,
    pub concurrency: Option<u32>,
    /// Requests sent per second of the window.
    pub achieved_qps: f64,
    /// Requests completed inside the window, per second of it (the drain is left out).
    pub throughput_rps: f64,
    /// The time the step really ran: its window (cut short by a stop), less any pause.
    pub duration_s: f64,
    /// How the step ended: `complete`, or how it did not run as planned.
    #[serde(default)]
    pub ended: StepEnd,
    /// Seconds its rate was paused inside the window, left out of `duration_s`.
    #[serde(default)]
    pub paused_s: f64,
    /// The planned length, when it is not `duration_s` (a stop or a pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_duration_s: Option<f64>,
    /// What finished after the window: in `requests`, kept out of every rate.
    #[serde(default)]
    pub drain: DrainCounts,
    pub requests: RequestCounts,
    pub errors: BTreeMap<String, u64>,
    /// The first server message of each error class and HTTP status, with its count (secrets
    /// redacted), in key order: why the requests failed, not only how many.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_messages: Vec<ErrorSample>,
    pub ttft_ms: LatencySummary,
    pub ttft_corrected_ms: LatencySummary,
    pub chunk_gap_ms: LatencySummary,
    pub itl_ms: LatencySummary,
    pub tpot_ms: LatencySummary,
    pub e2e_ms: LatencySummary,
    pub schedule_lag_ms: LatencySummary,
    pub tokens: TokenStats,
    pub goodput_qps: f64,
    pub rates: Rates,
    pub slo: SloVerdict,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub agents: Vec<AgentShare>,
    /// What the step is for: `single`, `step`, `sweep`, `soak`, `spike_burst`, `search`, ...
    #[serde(default)]
    pub kind: StepKind,
    /// Warm-up steps are kept out of the overall statistics, the verdicts and the findings.
    #[serde(default)]
    pub warmup: bool,
    /// The prompt and output lengths the step asked for.
    #[serde(default)]
    pub input_tokens_planned: u32,
    #[serde(default)]
    pub output_tokens_planned: u32,
    /// Availability and recovery: when requests failed, and how long until they stopped
    /// failing; after a burst, how long latency took to settle.
    #[serde(default)]
    pub recovery: Option<RecoveryStats>,
    /// Each request class of a mixed workload, named after the class (none for one class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<StageSummary>,
}

impl StageSummary {
    /// Summarises merged measurements over `duration`.
    pub fn compute(
        name: &str,
        stage: &str,
        load: Option<&Load>,
        duration: Duration,
        counts: &Tally,
        bundle: &HistogramBundle,
        checks: &[SloCheck],
    ) -> StageSummary {
        let secs = duration.as_secs_f64().max(1e-9);
        let per_s = |n: u64| n as f64 / secs;
        let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        let attempted = counts.sent;
        let (mode, offered_qps, concurrency) = match load {
            Some(l @ (Load::Open { .. } | Load::Trace { .. })) => {
                (StepMode::Open, l.offered_qps(duration), None)
            }
            Some(Load::Closed { concurrency, .. }) => (StepMode::Closed, None, Some(*concurrency)),
            None => (StepMode::Mixed, None, None),
        };
        let input_gap_ratio =
            (counts.server_input_requests > 0 && counts.input_tokens > 0).then(|| {
                // Only requests with a server count are compared; they are all requests here when
                // the server reports usage, which is when this is computed.
                (counts.server_input_tokens as f64 - counts.input_tokens as f64)
                    / counts.input_tokens as f64
            });
        let mut s = StageSummary {
            name: name.to_string(),
            stage: stage.to_string(),
            mode,
            offered_qps,
            concurrency,
            achieved_qps: per_s(counts.sent),
            throughput_rps: per_s(counts.completed),
            duration_s: duration.as_secs_f64(),
            ended: StepEnd::Complete,
            paused_s: 0.0,
            planned_duration_s: None,
            drain: DrainCounts::default(),
            requests: RequestCounts {
                sent: counts.sent,
                completed: counts.completed,
                failed: counts.failed,
                timeouts: counts.timeouts,
                abnormal: counts.abnormal,
                dropped: counts.dropped,
                cancelled: counts.cancelled,
                good: counts.good,
            },
            errors: counts.errors.clone(),
            error_messages: counts.error_samples.clone(),
            ttft_ms: LatencySummary::of(&bundle.ttft),
            ttft_corrected_ms: LatencySummary::of(&bundle.ttft_corrected),
            chunk_gap_ms: LatencySummary::of(&bundle.chunk_gap),
            itl_ms: LatencySummary::of(&bundle.itl),
            tpot_ms: LatencySummary::of(&bundle.tpot),
            e2e_ms: LatencySummary::of(&bundle.e2e),
            schedule_lag_ms: LatencySummary::of(&bundle.schedule_lag),
            tokens: TokenStats {
                input_total: counts.input_tokens,
                output_total: counts.output_tokens,
                output_per_s: per_s(counts.output_tokens),
                total_per_s: per_s(counts.input_tokens + counts.output_tokens),
                server_input_total: counts.server_input_tokens,
                input_gap_ratio,
                tokens_per_chunk: (counts.content_chunks > 0)
                    .then(|| ratio(counts.output_tokens, counts.content_chunks)),
            },
            goodput_qps: per_s(counts.good),
            rates: Rates {
                error_rate: ratio(counts.failed, attempted),
                timeout_rate: ratio(counts.timeouts, attempted),
                abnormal_rate: ratio(counts.abnormal, attempted),
                drop_rate: ratio(counts.dropped, attempted + counts.dropped),
                goodput_ratio: ratio(counts.good, counts.completed),
            },
            slo: SloVerdict::default(),
            resources: Resources::default(),
            agents: Vec::new(),
            kind: StepKind::default(),
            warmup: false,
            input_tokens_planned: 0,
            output_tokens_planned: 0,
            recovery: None,
            classes: Vec::new(),
        };
        s.slo = evaluate(&s, checks);
        s
    }

    /// The wall-clock length of the step's window: `duration_s` and the pause inside it.
    pub fn window_s(&self) -> f64 {
        self.duration_s + self.paused_s
    }

    /// True when the step ran its planned length at its planned load.
    pub fn ran_as_planned(&self) -> bool {
        self.ended.as_planned()
    }

    /// Keeps the drain (a part of the counts [`compute`](Self::compute) was given) out of the
    /// rates: throughput, tokens/s and goodput count only what finished inside the window, over
    /// `duration_s`; the thresholds are checked again on those rates.
    pub fn exclude_drain(&mut self, drain: &Tally, drain_length: Duration, checks: &[SloCheck]) {
        let secs = self.duration_s.max(1e-9);
        let inside = |all: u64, after: u64| all.saturating_sub(after) as f64 / secs;
        self.throughput_rps = inside(self.requests.completed, drain.completed);
        self.goodput_qps = inside(self.requests.good, drain.good);
        self.tokens.output_per_s = inside(self.tokens.output_total, drain.output_tokens);
        self.tokens.total_per_s = inside(
            self.tokens.input_total + self.tokens.output_total,
            drain.input_tokens + drain.output_tokens,
        );
        self.drain = DrainCounts {
            completed: drain.completed,
            failed: drain.failed,
            good: drain.good,
            input_tokens: drain.input_tokens,
            output_tokens: drain.output_tokens,
            duration_s: drain_length.as_secs_f64(),
        };
        self.slo = evaluate(self, checks);
    }

    /// A metric by its SLO name: `<metric>_<stat>` in ms, or a rate.
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "error_rate" => return Some(self.rates.error_rate),
            "timeout_rate" => return Some(self.rates.timeout_rate),
            "abnormal_rate" => return Some(self.rates.abnormal_rate),
            "drop_rate" => return Some(self.rates.drop_rate),
            "goodput_ratio" => return Some(self.rates.goodput_ratio),
            "goodput_qps" => return Some(self.goodput_qps),
            "throughput_rps" => return Some(self.throughput_rps),
            _ => {}
        }
        let (metric, stat) = name.rsplit_once('_')?;
        let summary = match metric {
            "ttft" => &self.ttft_ms,
            "ttft_corrected" => &self.ttft_corrected_ms,
            "chunk_gap" => &self.chunk_gap_ms,
            "itl" => &self.itl_ms,
            "tpot" => &self.tpot_ms,
            "e2e" => &self.e2e_ms,
            "schedule_lag" => &self.schedule_lag_ms,
            _ => return None,
        };
        if summary.count == 0 {
            return None;
        }
        summary.get(stat)
    }
}

/// Checks every threshold against a summary. A latency with no samples fails its check: a
/// stage where nothing completed has not shown that it meets the objective.
pub fn evaluate(s: &StageSummary, checks: &[SloCheck]) -> SloVerdict {
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| {
            let value = s.metric(&c.name);
            let pass = value.is_some_and(|v| match c.bound {
                Bound::AtMost => v <= c.limit,
                Bound::AtLeast => v >= c.limit,
            });
            CheckResult {
                name: c.name.clone(),
                limit: c.limit,
                bound: c.bound,
                value,
                pass,
            }
        })
        .collect();
    SloVerdict {
        pass: results.iter().all(|r| r.pass),
        checks: results,
    }
}

/// An agent's clock against the controller's: `agent = controller + offset`, within
/// `± uncertainty` (half the best round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClockEstimate {
    pub offset_us: i64,
    pub uncertainty_us: u64,
    pub rtt_us: u64,
}

/// How a step went through failures or a burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RecoveryStats {
    /// Completed over completed and failed requests.
    pub availability: f64,
    /// Seconds from the step's start to the start of the first interval with failures.
    pub failing_from_s: Option<f64>,
    /// Seconds from the step's start to the end of the last interval with failures.
    pub failing_until_s: Option<f64>,
    /// How long requests kept failing: from the first failing interval to the end of the last.
    pub time_to_recover_s: Option<f64>,
    /// Requests succeeded again after the last failure (an interval without failures followed).
    pub recovered: Option<bool>,
    /// After a burst: seconds from the step's start until TTFT p99 was back within
    /// [`SETTLE_FACTOR`] of the base level, with no failures; `None` when it never settled.
    pub latency_settled_after_s: Option<f64>,
}

/// A latency is back to normal within this factor of its level before the burst.
pub const SETTLE_FACTOR: f64 = 1.25;

/// An agent as summary.json describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgentInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub cores: u32,
    pub version: String,
    pub local: bool,
    /// Its share of the load against the other agents'.
    pub weight: f64,
    /// `agent clock = controller clock + offset`, within ± uncertainty (half the round trip of
    /// the best of several Hello exchanges).
    pub clock: ClockEstimate,
    /// A monitor-only agent: it sampled its host and sent no request.
    #[serde(default)]
    pub monitor_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub base_url: String,
    pub api: String,
    pub model: String,
    pub stream: bool,
    /// True when the built-in simulator was started for this run.
    pub simulator: bool,
}

/// What the analysis found: its severity and the typed facts it rests on (their tag is the
/// code), and their wording, filled by the report crate in the run's language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(flatten)]
    pub facts: Facts,
    /// The facts in words (English in summary.json); empty until worded.
    #[serde(default)]
    pub message: String,
    /// What to change, naming the knob and the numbers that triggered the finding.
    #[serde(default)]
    pub suggestion: Option<String>,
}

impl Finding {
    /// A finding not yet worded.
    pub fn new(severity: Severity, facts: Facts) -> Finding {
        Finding {
            severity,
            facts,
            message: String::new(),
            suggestion: None,
        }
    }

    /// The finding's code, from its facts.
    pub fn code(&self) -> FindingCode {
        self.facts.code()
    }
}

/// The analysis of a run, as summary.json holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Analysis {
    /// The highest offered rate of an open-loop step that passed every SLO check.
    pub max_qps_within_slo: Option<f64>,
    /// Read back leniently: a finding of a code this version does not know (a newer run's) is
    /// left out, since the report draws the findings again from the files anyway.
    #[serde(deserialize_with = "known_findings")]
    pub findings: Vec<Finding>,
}

fn known_findings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Finding>, D::Error> {
    let raw = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// What a run was made with, so two runs can be compared and a mis-set default is visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Manifest {
    pub stampede_version: String,
    pub protocol_version: u32,
    /// FNV-1a 64 of the plan file's bytes, to tell whether two runs used the same plan.
    pub plan_hash: String,
    pub plan_file: String,
    /// The server's answer to GET /models.
    /// (Whatever JSON the server sent: its shape is the server's.)
    pub models: serde_json::Value,
    pub gpus: Vec<GpuInventory>,
    pub clock_offsets_us: BTreeMap<String, i64>,
    /// The workload's tokenizer: a built-in encoding, or the tokenizer.json's path.
    pub tokenizer: String,
}

/// The whole summary.json: written by the run, read back by `report` and `compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// [`SCHEMA`] when written; the reader refuses another.
    pub schema: String,
    pub plan: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub target: TargetInfo,
    #[serde(default)]
    pub agents: Vec<AgentInfo>,
    pub stages: Vec<StageSummary>,
    pub overall: Option<StageSummary>,
    pub slo_pass: bool,
    #[serde(default)]
    pub analysis: Analysis,
    /// What the capacity searches and limit tests found.
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// Rate changes made while the run went (`+`, `-`, `qps N` or `controller set-qps`).
    #[serde(default)]
    pub rate_changes: Vec<RateChangeRecord>,
    /// Alerts fired while the run went, by kind (`slo_breach`, `error_spike`, `timeouts`,
    /// `client_saturation`, `agent_lost`); each is a line of alerts.jsonl.
    #[serde(default)]
    pub alerts: BTreeMap<String, u64>,
    /// Agents lost while the run went, and agents that rejoined.
    #[serde(default)]
    pub agent_events: Vec<AgentEventRecord>,
    #[serde(default)]
    pub manifest: Manifest,
}

/// An agent lost (its stream broke, or it stopped reporting) or back in the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEventRecord {
    /// Seconds since the run's first step started.
    pub elapsed_s: f64,
    /// When, on the controller's clock (RFC 3339, UTC), to match with the agent's own logs.
    #[serde(default)]
    pub at: String,
    pub agent: String,
    pub addr: String,
    pub event: AgentEventKind,
    /// The step it was lost in, or the first step it rejoins.
    pub step: String,
    pub detail: String,
}

/// A rate change made while a step ran: from then on the step offered `qps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateChangeRecord {
    /// Seconds since the run's first step started.
    pub elapsed_s: f64,
    pub step: String,
    /// Factor on the step's planned rate.
    pub scale: f64,
    pub qps: f64,
}

/// FNV-1a, 64 bits: a stable fingerprint without a hashing dependency.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::KvCachePressure;
    use stampede_common::metrics::new_histogram;
    use stampede_common::plan::StepKind;
    type Counts = Tally;

    fn bundle_with_e2e(values_ms: &[u64]) -> HistogramBundle {
        let mut b = HistogramBundle::new();
        b.e2e = new_histogram();
        for v in values_ms {
            b.e2e.record(v * 1000).unwrap();
        }
        b
    }

    #[test]
    fn rates_and_throughput_follow_the_counts() {
        let counts = Counts {
            sent: 100,
            completed: 90,
            failed: 10,
            timeouts: 4,
            good: 45,
            output_tokens: 900,
            input_tokens: 1000,
            dropped: 25,
            ..Default::default()
        };
        let s = StageSummary::compute(
            "a",
            "a",
            None,
            Duration::from_secs(10),
            &counts,
            &HistogramBundle::new(),
            &[],
        );
        assert_eq!(
            (s.achieved_qps, s.throughput_rps, s.goodput_qps),
            (10.0, 9.0, 4.5)
        );
        assert_eq!((s.rates.error_rate, s.rates.timeout_rate), (0.1, 0.04));
        assert_eq!(s.rates.drop_rate, 0.2);
        assert_eq!(s.rates.goodput_ratio, 0.5);
        assert_eq!((s.tokens.output_per_s, s.tokens.total_per_s), (90.0, 190.0));
    }

    #[test]
    fn slo_checks_pass_and_fail_on_their_bounds() {
        let counts = Counts {
            sent: 10,
            completed: 10,
            ..Default::default()
        };
        let checks = vec![
            SloCheck {
                name: "e2e_p99".into(),
                limit: 1500.0,
                bound: Bound::AtMost,
            },
            SloCheck {
                name: "error_rate".into(),
                limit: 0.01,
                bound: Bound::AtMost,
            },
        ];
        let fast = StageSummary::compute(
            "a",
            "a",
            None,
            Duration::from_secs(1),
            &counts,
            &bundle_with_e2e(&[100, 200, 1400]),
            &checks,
        );
        assert!(fast.slo.pass, "{:?}", fast.slo);
        let slow = StageSummary::compute(
            "a",
            "a",
            None,
            Duration::from_secs(1),
            &counts,
            &bundle_with_e2e(&[100, 2000]),
            &checks,
        );
        assert!(!slow.slo.pass);
        assert!(!slow.slo.checks[0].pass && slow.slo.checks[1].pass);
        // No samples: the latency check cannot pass.
        let empty = StageSummary::compute(
            "a",
            "a",
            None,
            Duration::from_secs(1),
            &counts,
            &HistogramBundle::new(),
            &checks,
        );
        assert_eq!(empty.slo.checks[0].value, None);
        assert!(!empty.slo.pass);
    }

    /// A summary with every field set to something other than its default.
    fn full_summary() -> RunSummary {
        let counts = Tally {
            sent: 40,
            completed: 37,
            failed: 3,
            timeouts: 1,
            errors: [("http_5xx".to_string(), 2), ("timeout".to_string(), 1)].into(),
            error_samples: vec![
                ErrorSample {
                    class: "http_5xx".into(),
                    http_status: Some(503),
                    count: 2,
                    message: "HTTP 503 Service Unavailable overloaded".into(),
                },
                ErrorSample {
                    class: "timeout_total".into(),
                    http_status: None,
                    count: 1,
                    message: "the response did not finish within the timeout".into(),
                },
            ],
            output_tokens: 3700,
            input_tokens: 40_000,
            ..Default::default()
        };
        let checks = [SloCheck {
            name: "e2e_p99".into(),
            limit: 1500.0,
            bound: Bound::AtMost,
        }];
        let mut stage = StageSummary::compute(
            "steps/qps=4",
            "steps",
            None,
            Duration::from_secs(10),
            &counts,
            &bundle_with_e2e(&[100, 900, 1200]),
            &checks,
        );
        stage.mode = StepMode::Open;
        stage.offered_qps = Some(4.0);
        stage.kind = StepKind::Step;
        stage.ended = StepEnd::Paused;
        stage.paused_s = 2.5;
        stage.planned_duration_s = Some(12.5);
        stage.exclude_drain(
            &Tally {
                completed: 3,
                good: 2,
                output_tokens: 300,
                ..Default::default()
            },
            Duration::from_millis(400),
            &checks,
        );
        stage.resources.gpus = vec![GpuSummary {
            agent: "local-0".into(),
            index: 0,
            name: "H200".into(),
            mem_total_bytes: 141 << 30,
            util_pct: Some(MeanMax {
                mean: 55.5,
                max: 99.0,
            }),
            ..Default::default()
        }];
        stage.resources.stats.insert(
            "host_cpu_pct".into(),
            MeanMax {
                mean: 12.5,
                max: 40.0,
            },
        );
        stage.agents = vec![AgentShare {
            agent: "local-0".into(),
            weight: 2.0,
            offered_qps: Some(4.0),
            concurrency: None,
            achieved_qps: 4.0,
            sent: 40,
            completed: 37,
            failed: 3,
            cancelled: 0,
            reported: Some(ReportedCounts::from(&counts)),
            end: ShareEnd::Absent("lost in warmup".into()),
            coalesced_intervals: 1,
            records_dropped: 2,
        }];
        stage.recovery = Some(RecoveryStats {
            availability: 0.925,
            failing_from_s: Some(3.0),
            ..Default::default()
        });
        let mut closed = stage.clone();
        closed.mode = StepMode::Closed;
        closed.concurrency = Some(8);
        stage.classes = vec![closed.clone()];
        RunSummary {
            schema: SCHEMA.into(),
            plan: "steps".into(),
            started_at: "2026-12-02T07:00:00Z".into(),
            finished_at: Some("2026-12-02T07:01:00Z".into()),
            status: RunStatus::Interrupted,
            target: TargetInfo {
                base_url: "http://127.0.0.1:8000/v1".into(),
                api: "chat".into(),
                model: "m".into(),
                stream: true,
                simulator: false,
            },
            agents: vec![AgentInfo {
                id: "local-0".into(),
                addr: "127.0.0.1:1".into(),
                host: "h".into(),
                cores: 2,
                version: "0.1.0".into(),
                local: true,
                weight: 2.0,
                clock: ClockEstimate {
                    offset_us: -5,
                    uncertainty_us: 3,
                    rtt_us: 6,
                },
                monitor_only: true,
            }],
            stages: vec![stage.clone(), closed],
            overall: Some(stage),
            slo_pass: false,
            analysis: Analysis {
                max_qps_within_slo: Some(4.0),
                findings: vec![Finding {
                    severity: Severity::Critical,
                    facts: Facts::KvCachePressure(KvCachePressure {
                        kv_cache_peak_pct: Some(99.0),
                        column: Some("kv_cache_usage_pct".into()),
                        at_s: Some(12.5),
                        step: Some("steps/qps=4".into()),
                        preemptions: 3.0,
                    }),
                    message: "m".into(),
                    suggestion: Some("s".into()),
                }],
            },
            probes: Vec::new(),
            rate_changes: vec![RateChangeRecord {
                elapsed_s: 1.5,
                step: "steps/qps=4".into(),
                scale: 0.0,
                qps: 0.0,
            }],
            alerts: [("slo_breach".to_string(), 2)].into(),
            agent_events: vec![AgentEventRecord {
                elapsed_s: 2.0,
                at: "2026-12-02T07:00:02Z".into(),
                agent: "local-0".into(),
                addr: "127.0.0.1:1".into(),
                event: AgentEventKind::Rejoined,
                step: "steps/qps=4".into(),
                detail: "back".into(),
            }],
            manifest: Manifest {
                stampede_version: "0.1.0".into(),
                protocol_version: 3,
                plan_hash: "abc".into(),
                plan_file: "plan.toml".into(),
                models: serde_json::json!({"data": [{"id": "m"}]}),
                gpus: vec![GpuInventory {
                    agent: "local-0".into(),
                    index: 0,
                    name: "H200".into(),
                    memory_total_bytes: 141 << 30,
                }],
                clock_offsets_us: [("local-0".to_string(), -5)].into(),
                tokenizer: "cl100k_base".into(),
            },
        }
    }

    #[test]
    fn the_summary_reads_back_equal_to_what_was_written() {
        let written = full_summary();
        let json = serde_json::to_string_pretty(&written).unwrap();
        let read: RunSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn a_summary_written_before_error_messages_reads_with_none() {
        let mut v = serde_json::to_value(full_summary()).unwrap();
        for stage in v["stages"].as_array_mut().unwrap() {
            stage.as_object_mut().unwrap().remove("error_messages");
        }
        let read: RunSummary = serde_json::from_value(v).unwrap();
        assert!(read.stages[0].error_messages.is_empty());
        assert_eq!(read.overall.unwrap().error_messages.len(), 2);
    }

    #[test]
    fn the_json_names_are_pinned() {
        let v = serde_json::to_value(full_summary()).unwrap();
        for key in [
            "schema",
            "plan",
            "started_at",
            "finished_at",
            "status",
            "target",
            "agents",
            "stages",
            "overall",
            "slo_pass",
            "analysis",
            "probes",
            "rate_changes",
            "alerts",
            "agent_events",
            "manifest",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["schema"], "stampede.summary/v1");
        assert_eq!(v["status"], "interrupted");
        let stage = &v["stages"][0];
        for key in [
            "name",
            "offered_qps",
            "achieved_qps",
            "duration_s",
            "requests",
            "errors",
            "ttft_ms",
            "ttft_corrected_ms",
            "chunk_gap_ms",
            "itl_ms",
            "tpot_ms",
            "e2e_ms",
            "schedule_lag_ms",
            "tokens",
            "goodput_qps",
            "slo",
            "resources",
        ] {
            assert!(stage.get(key).is_some(), "stage {key}");
        }
        assert_eq!(stage["mode"], "open");
        assert_eq!(stage["kind"], "step");
        assert_eq!(stage["ended"], "paused");
        assert_eq!(stage["paused_s"], 2.5);
        assert_eq!(stage["planned_duration_s"], 12.5);
        assert_eq!(stage["drain"]["completed"], 3);
        assert_eq!(stage["drain"]["duration_s"], 0.4);
        assert_eq!(v["stages"][1]["mode"], "closed");
        for stat in ["mean", "p50", "p90", "p95", "p99", "p999", "max"] {
            assert!(stage["e2e_ms"].get(stat).is_some(), "{stat}");
        }
        assert_eq!(stage["requests"]["sent"], 40);
        assert_eq!(stage["tokens"]["output_total"], 3700);
        assert_eq!(
            stage["error_messages"],
            serde_json::json!([
                {"class": "http_5xx", "http_status": 503, "count": 2,
                 "message": "HTTP 503 Service Unavailable overloaded"},
                {"class": "timeout_total", "count": 1,
                 "message": "the response did not finish within the timeout"},
            ])
        );
        assert_eq!(stage["resources"]["host_cpu_pct"]["max"], 40.0);
        assert_eq!(stage["resources"]["gpus"][0]["util_pct"]["max"], 99.0);
        assert_eq!(stage["agents"][0]["end"], "absent: lost in warmup");
        let finding = &v["analysis"]["findings"][0];
        assert_eq!(finding["severity"], "critical");
        assert_eq!(finding["code"], "kv-cache-pressure");
        assert_eq!(finding["facts"]["kv_cache_peak_pct"], 99.0);
        assert_eq!(finding["facts"]["preemptions"], 3.0);
        assert_eq!(finding["message"], "m");
        assert_eq!(v["agent_events"][0]["event"], "rejoined");
        assert_eq!(v["manifest"]["gpus"][0]["memory_total_bytes"], 141u64 << 30);
        assert_eq!(v["agents"][0]["clock"]["offset_us"], -5);
    }

    /// The drain is in the counts and out of the rates: 37 completed over 10 s with 3 of them
    /// after the window is 3.4/s, not 3.7/s.
    #[test]
    fn the_drain_is_counted_but_kept_out_of_the_rates() {
        let stage = &full_summary().stages[0];
        assert_eq!((stage.requests.completed, stage.drain.completed), (37, 3));
        assert!(
            (stage.throughput_rps - 3.4).abs() < 1e-9,
            "{}",
            stage.throughput_rps
        );
        assert!((stage.tokens.output_per_s - 340.0).abs() < 1e-9);
        assert!((stage.achieved_qps - 4.0).abs() < 1e-9);
    }

    /// A summary.json written before steps said how they ended reads as complete, no drain.
    #[test]
    fn an_old_summary_without_step_ends_reads_as_complete() {
        let mut v = serde_json::to_value(full_summary()).unwrap();
        for st in v["stages"].as_array_mut().unwrap() {
            let st = st.as_object_mut().unwrap();
            for key in ["ended", "paused_s", "planned_duration_s", "drain"] {
                st.remove(key);
            }
        }
        let read: RunSummary = serde_json::from_value(v).unwrap();
        let st = &read.stages[0];
        assert_eq!(
            (st.ended, st.paused_s, st.planned_duration_s),
            (StepEnd::Complete, 0.0, None)
        );
        assert_eq!(st.drain, DrainCounts::default());
        assert!(st.ran_as_planned());
    }

    #[test]
    fn a_finding_this_version_does_not_know_is_left_out_not_an_error() {
        let mut v = serde_json::to_value(full_summary()).unwrap();
        v["analysis"]["findings"].as_array_mut().unwrap().push(
            serde_json::json!({"severity": "warning", "code": "from-the-future",
                "message": "m", "suggestion": null, "evidence": null}),
        );
        let read: RunSummary = serde_json::from_value(v).unwrap();
        assert_eq!(read.analysis.findings.len(), 1);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
