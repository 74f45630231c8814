//! What each finding rests on, as typed facts: the numbers and names that raised it, and
//! nothing worded. The analysis fills these; the report words them, in English or Chinese, so
//! a finding's text can never disagree with its numbers, and summary.json keeps the numbers.
//!
//! On disk a finding is `{"severity", "code", "facts": {...}, "message", "suggestion"}`: the
//! code is the tag of [`Facts`], the same names [`FindingCode`] pins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stampede_common::plan::Bound;

use crate::kinds::{FindingCode, StepEnd};
use crate::summary::{ErrorSample, ReportedCounts};

/// The facts of one finding, by its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", content = "facts")]
pub enum Facts {
    #[serde(rename = "accounting")]
    Accounting(Accounting),
    #[serde(rename = "agent_lost")]
    AgentLost(AgentLost),
    #[serde(rename = "all-failed")]
    AllFailed(AllFailed),
    #[serde(rename = "client-bound")]
    ClientBound(ClientBound),
    #[serde(rename = "coalesced-tokens")]
    CoalescedTokens(CoalescedTokens),
    #[serde(rename = "decode-bound")]
    DecodeBound(LoadTrend),
    #[serde(rename = "dropped")]
    Dropped(Dropped),
    #[serde(rename = "error-burst")]
    ErrorBurst(ErrorBurst),
    #[serde(rename = "errors")]
    Errors(StepErrors),
    #[serde(rename = "fluctuation")]
    Fluctuation(Fluctuation),
    #[serde(rename = "gpu-idle")]
    GpuIdle(GpuIdle),
    #[serde(rename = "input-token-gap")]
    InputTokenGap(InputTokenGap),
    #[serde(rename = "knee")]
    Knee(Knee),
    #[serde(rename = "kv-cache-pressure")]
    KvCachePressure(KvCachePressure),
    #[serde(rename = "max-qps-within-slo")]
    MaxQpsWithinSlo(MaxQpsWithinSlo),
    #[serde(rename = "no-knee")]
    NoKnee(NoKnee),
    #[serde(rename = "no-qps-within-slo")]
    NoQpsWithinSlo(SloStep),
    #[serde(rename = "queueing-bound")]
    QueueingBound(LoadTrend),
    #[serde(rename = "saturated-at-lowest-load")]
    SaturatedAtLowestLoad(SaturatedAtLowestLoad),
    #[serde(rename = "short-steps")]
    ShortSteps(ShortSteps),
    #[serde(rename = "soak-drift")]
    SoakDrift(SoakDrift),
    #[serde(rename = "stream-backlog")]
    StreamBacklog(StreamBacklog),
    #[serde(rename = "unplanned-steps")]
    UnplannedSteps(UnplannedSteps),
}

impl Facts {
    /// The finding's code.
    pub fn code(&self) -> FindingCode {
        match self {
            Facts::Accounting(_) => FindingCode::Accounting,
            Facts::AgentLost(_) => FindingCode::AgentLost,
            Facts::AllFailed(_) => FindingCode::AllFailed,
            Facts::ClientBound(_) => FindingCode::ClientBound,
            Facts::CoalescedTokens(_) => FindingCode::CoalescedTokens,
            Facts::DecodeBound(_) => FindingCode::DecodeBound,
            Facts::Dropped(_) => FindingCode::Dropped,
            Facts::ErrorBurst(_) => FindingCode::ErrorBurst,
            Facts::Errors(_) => FindingCode::Errors,
            Facts::Fluctuation(_) => FindingCode::Fluctuation,
            Facts::GpuIdle(_) => FindingCode::GpuIdle,
            Facts::InputTokenGap(_) => FindingCode::InputTokenGap,
            Facts::Knee(_) => FindingCode::Knee,
            Facts::KvCachePressure(_) => FindingCode::KvCachePressure,
            Facts::MaxQpsWithinSlo(_) => FindingCode::MaxQpsWithinSlo,
            Facts::NoKnee(_) => FindingCode::NoKnee,
            Facts::NoQpsWithinSlo(_) => FindingCode::NoQpsWithinSlo,
            Facts::QueueingBound(_) => FindingCode::QueueingBound,
            Facts::SaturatedAtLowestLoad(_) => FindingCode::SaturatedAtLowestLoad,
            Facts::ShortSteps(_) => FindingCode::ShortSteps,
            Facts::SoakDrift(_) => FindingCode::SoakDrift,
            Facts::StreamBacklog(_) => FindingCode::StreamBacklog,
            Facts::UnplannedSteps(_) => FindingCode::UnplannedSteps,
        }
    }
}

/// What a load is counted in: offered requests per second (open loop) or users (closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadUnit {
    Qps,
    Users,
}

/// A failed threshold of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedCheck {
    pub check: String,
    pub value: Option<f64>,
    pub limit: f64,
    pub bound: Bound,
}

/// A step that failed its thresholds, at its offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStep {
    pub step: String,
    pub qps: f64,
    pub failed: Vec<FailedCheck>,
}

/// The highest offered rate that met every threshold, and what bounds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaxQpsWithinSlo {
    pub qps: f64,
    /// The step that ran at it (none when only a capacity search found it).
    pub step: Option<String>,
    /// The lowest offered rate that failed.
    pub first_failing: Option<SloStep>,
    /// Rates above the first failure that passed anyway (luck, not capacity).
    pub passed_above_a_failure: Vec<f64>,
    /// What a capacity search found, when the plan had one.
    pub capacity_search: Option<f64>,
    /// The rate to plan for: 80% of the limit, or the knee when throughput stopped following
    /// the load below the SLO's limit.
    pub plan_qps: f64,
    /// The lowest open-loop knee when it lies below `qps`.
    pub knee_below: Option<f64>,
}

/// Why a step is past the knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
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

/// Where a stage's throughput stopped following its load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    pub stage: String,
    pub unit: LoadUnit,
    pub knee: f64,
    pub knee_step: String,
    pub saturated_at: f64,
    pub saturated_step: String,
    pub why: Saturation,
}

/// Even a stage's lowest load was past the knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturatedAtLowestLoad {
    pub stage: String,
    pub unit: LoadUnit,
    pub step: String,
    pub load: f64,
    pub why: Saturation,
}

/// Throughput followed the load up to the highest step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoKnee {
    pub stage: String,
    pub unit: LoadUnit,
    pub highest: f64,
}

/// One step of a stage's latency trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPoint {
    pub step: String,
    pub load: f64,
    pub ttft_p50_ms: f64,
    pub tpot_p50_ms: f64,
    /// Mean requests in flight over the steady part, or the users.
    pub in_flight_mean: Option<f64>,
}

/// How TTFT and TPOT moved from a stage's lowest load (`low`) to `high` (the queueing peak,
/// or the highest load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadTrend {
    pub stage: String,
    pub unit: LoadUnit,
    pub low: LoadPoint,
    pub high: LoadPoint,
    pub steps: Vec<LoadPoint>,
    /// The most requests the server's own /metrics said were waiting (only when above zero).
    pub waiting_peak: Option<f64>,
}

/// The KV cache near full, or requests preempted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvCachePressure {
    pub kv_cache_peak_pct: Option<f64>,
    pub column: Option<String>,
    pub at_s: Option<f64>,
    pub step: Option<String>,
    pub preemptions: f64,
}

/// A high-latency step with the GPU mostly idle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleStep {
    pub step: String,
    pub gpu_util_mean_pct: f64,
    pub cpu_mean_pct: Option<f64>,
    pub ttft_p99_ms: f64,
    pub schedule_lag_p99_ms: f64,
}

/// Steps whose latency was high while the GPU idled; the first is the one worded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuIdle {
    pub steps: Vec<IdleStep>,
}

/// Every request of a step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllFailed {
    pub step: String,
    pub sent: u64,
    pub errors: BTreeMap<String, u64>,
    /// The server's first message for the most frequent class and status.
    #[serde(default)]
    pub first: Option<ErrorSample>,
}

/// Which errors dominate a step, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCause {
    RateLimited,
    Timeouts,
    ServerErrors,
}

/// Some requests of a step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepErrors {
    pub step: String,
    pub error_rate: f64,
    pub errors: BTreeMap<String, u64>,
    /// The most frequent class (cancellations left out) and its count.
    pub top: Option<(String, u64)>,
    pub cause: ErrorCause,
    /// The server's first message for the most frequent class and status.
    #[serde(default)]
    pub first: Option<ErrorSample>,
}

/// Why the client, not the server, set the pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ClientLimit {
    /// Open-loop requests left late.
    Lag { p99_ms: f64, limit_ms: f64 },
    /// An agent's CPU passed the guard's limit in enough intervals.
    Cpu {
        limit_pct: f64,
        intervals: u32,
        of: u32,
        peak_pct: Option<f64>,
    },
}

/// A step whose results understate the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientBound {
    pub step: String,
    pub limit: ClientLimit,
    /// The busiest agent's CPU from resources.csv, when it was busy.
    pub agent_cpu_peak_pct: Option<f64>,
}

/// An agent's stream backed up behind a slow controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamBacklog {
    pub step: String,
    pub agent: String,
    pub coalesced_intervals: u32,
    pub records_dropped: u64,
}

/// The server counted other prompt lengths than the workload's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTokenGap {
    pub step: String,
    /// (server - workload) / workload.
    pub gap_ratio: f64,
    pub workload_tokens: u64,
    pub server_tokens: u64,
}

/// Tokens arrived several per chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoalescedTokens {
    pub step: String,
    pub tokens_per_chunk: f64,
}

/// How a step's counts fail to add up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
pub enum Mismatch {
    /// sent != completed + failed + cancelled.
    Outcomes {
        sent: u64,
        completed: u64,
        failed: u64,
        cancelled: u64,
    },
    /// The error classes add up to other totals.
    Classes {
        failed: u64,
        cancelled: u64,
        classed_failed: u64,
        classed_cancelled: u64,
    },
    /// An agent's own count differs from its interval reports.
    Agent {
        agent: String,
        own: ReportedCounts,
        merged: ReportedCounts,
    },
}

/// Requests unaccounted for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    pub step: String,
    pub mismatch: Mismatch,
}

/// Arrivals not sent because of max_in_flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub step: String,
    pub dropped: u64,
}

/// A stretch of failures in an otherwise clean run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBurst {
    pub from_s: f64,
    pub to_s: f64,
    pub failed: u64,
    pub completed: u64,
    pub timeouts: u64,
    pub steps: Vec<String>,
    /// Bursts in the run, this one included.
    pub bursts: usize,
    /// Bursts not given a finding of their own.
    pub more: usize,
}

/// A stretch of a soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowName {
    /// A checkpoint step of a soak stage.
    Step { step: String },
    /// An hour of a long step.
    Hour { step: String, n: usize },
    /// A ten-minute window of a long step.
    TenMinutes { step: String, n: usize },
}

/// One window of a soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakWindow {
    pub window: WindowName,
    pub count: u64,
    pub ttft_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub output_tokens_per_s: Option<f64>,
}

/// Which latency drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftMetric {
    #[serde(rename = "ttft")]
    Ttft,
    #[serde(rename = "e2e")]
    E2e,
}

/// A latency p99 that rose from the first window to a later one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rise {
    pub metric: DriftMetric,
    pub from_ms: f64,
    pub to_ms: f64,
    pub from: WindowName,
    pub to: WindowName,
}

/// A soak that degraded under constant load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakDrift {
    pub soak: String,
    pub windows: Vec<SoakWindow>,
    pub rises: Vec<Rise>,
    /// Output tokens/s of the first and last windows, when it fell.
    pub throughput_fell: Option<(f64, f64)>,
}

/// A step whose throughput or latency varied more than its load explains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fluctuation {
    pub step: String,
    pub intervals: usize,
    pub completed_per_interval: f64,
    pub throughput_cv: f64,
    pub expected_cv: f64,
    pub e2e_p50_cv: f64,
}

/// What followed an agent's loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "then", rename_all = "snake_case")]
pub enum AfterLoss {
    /// The run was aborted, for this reason.
    Aborted { reason: String },
    /// It came back after the last step.
    RejoinedAfterLastStep { at_s: f64 },
    /// It came back and took part from this step on.
    Rejoined { at_s: f64, step: String },
    /// The run went on without it.
    WentOn,
}

/// An agent lost during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLost {
    pub agent: String,
    pub addr: String,
    pub step: String,
    pub elapsed_s: f64,
    pub detail: String,
    pub after: AfterLoss,
}

/// A step too short, or with too few answers, for its rates and percentiles to be trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortStep {
    pub step: String,
    pub duration_s: f64,
    pub completed: u64,
}

/// The steps of a run too short to trust, and the bounds they fell under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortSteps {
    pub steps: Vec<ShortStep>,
    pub min_duration_s: f64,
    pub min_completed: u64,
}

/// A step that did not run as planned, and what it really ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnplannedStep {
    pub step: String,
    pub ended: StepEnd,
    pub ran_s: f64,
    pub planned_s: Option<f64>,
    pub paused_s: f64,
}

/// Steps cut short, paused or re-rated: their numbers cover what they ran, not the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnplannedSteps {
    pub steps: Vec<UnplannedStep>,
}
