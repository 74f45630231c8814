//! Per-step checks: every request failed, some failed, the client set the pace, the server saw
//! other prompt lengths, tokens arrived coalesced, requests unaccounted for, arrivals dropped.

use stampede_common::stage::StepKind;
use stampede_results::facts::{
    Accounting, AllFailed, ClientBound, ClientLimit, CoalescedTokens, Dropped, ErrorCause, Facts,
    InputTokenGap, Mismatch, ShortStep, ShortSteps, StepErrors, StreamBacklog, UnplannedStep,
    UnplannedSteps,
};
use stampede_results::kinds::{Severity, StepMode};
use stampede_results::summary::{
    ErrorSample, Finding, INPUT_GAP_WARN, ReportedCounts, StageSummary,
};
use stampede_results::table::NumericTable;

use super::Evidence;

/// Schedule lag p99 above which a step's load was not sent as planned: the client, not the
/// server, set the pace, so the results understate the server.
pub const CLIENT_BOUND_LAG_MS: f64 = 25.0;
/// Tokens per chunk above which chunk gaps stop being per-token latencies.
const COALESCED_TOKENS_PER_CHUNK: f64 = 1.5;
/// An agent's CPU above this (percent) cannot be trusted to send on time.
const AGENT_CPU_BUSY_PCT: f64 = 90.0;
/// A step shorter than this is dominated by its start and drain (seconds).
pub const MIN_STEP_S: f64 = 10.0;
/// With fewer answers than this, a step's p99 is its slowest request.
pub const MIN_COMPLETED: u64 = 20;
/// The guard's CPU limit when the plan set none (percent).
const CLIENT_CPU_LIMIT_PCT: f64 = 85.0;

/// True when a step's requests left too late for its results to describe the server, or an
/// agent's CPU passed the guard's limit in enough of its intervals
/// ([`stampede_results::summary::Resources::client_cpu_bound`]).
pub fn is_client_bound(s: &StageSummary) -> bool {
    client_lag_bound(s) || s.resources.client_cpu_bound()
}

/// Open loop with schedule lag p99 above the plan's `[monitor] client_lag_limit`.
fn client_lag_bound(s: &StageSummary) -> bool {
    s.mode == StepMode::Open && s.schedule_lag_ms.count > 0 && s.schedule_lag_ms.p99 > lag_limit(s)
}

fn lag_limit(s: &StageSummary) -> f64 {
    s.resources
        .client_lag_limit_ms
        .unwrap_or(CLIENT_BOUND_LAG_MS)
}

/// Steps whose rates and percentiles are compared (not spikes, traces or limit probes,
/// which are short or sparse by design) that ran too briefly or answered too little.
pub fn short_steps(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let compared = |k: StepKind| {
        matches!(
            k,
            StepKind::Single | StepKind::Step | StepKind::Sweep | StepKind::Ramp | StepKind::Search
        )
    };
    let steps: Vec<ShortStep> = ev
        .stages
        .iter()
        .filter(|s| compared(s.kind) && s.requests.completed > 0)
        .filter(|s| s.duration_s < MIN_STEP_S || s.requests.completed < MIN_COMPLETED)
        .map(|s| ShortStep {
            step: s.name.clone(),
            duration_s: s.duration_s,
            completed: s.requests.completed,
        })
        .collect();
    if steps.is_empty() {
        return;
    }
    out.push(Finding::new(
        Severity::Warning,
        Facts::ShortSteps(ShortSteps {
            steps,
            min_duration_s: MIN_STEP_S,
            min_completed: MIN_COMPLETED,
        }),
    ));
}

/// Steps cut short, paused or re-rated while they ran: one finding for the run, so that no
/// number of theirs is read as what the plan asked.
pub fn unplanned_steps(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let steps: Vec<UnplannedStep> = ev
        .stages
        .iter()
        .filter(|s| !s.ran_as_planned())
        .map(|s| UnplannedStep {
            step: s.name.clone(),
            ended: s.ended,
            ran_s: s.duration_s,
            planned_s: s.planned_duration_s,
            paused_s: s.paused_s,
        })
        .collect();
    if !steps.is_empty() {
        out.push(Finding::new(
            Severity::Warning,
            Facts::UnplannedSteps(UnplannedSteps { steps }),
        ));
    }
}

/// The server's first message for a step's most frequent error class and status.
fn first_message(s: &StageSummary) -> Option<ErrorSample> {
    s.error_messages
        .iter()
        .filter(|e| e.class != "cancelled")
        .max_by_key(|e| e.count)
        .cloned()
}

/// The per-step findings.
pub fn per_step(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    for s in ev.stages {
        failures(s, out);
        client_bound(s, ev.resources, out);
        tokens(s, out);
        accounting(s, out);
        backlog(s, out);
        if s.requests.dropped > 0 {
            out.push(Finding::new(
                Severity::Warning,
                Facts::Dropped(Dropped {
                    step: s.name.clone(),
                    dropped: s.requests.dropped,
                }),
            ));
        }
    }
}

fn failures(s: &StageSummary, out: &mut Vec<Finding>) {
    if s.requests.sent > 0 && s.requests.completed == 0 {
        out.push(Finding::new(
            Severity::Critical,
            Facts::AllFailed(AllFailed {
                step: s.name.clone(),
                sent: s.requests.sent,
                errors: s.errors.clone(),
                first: first_message(s),
            }),
        ));
    } else if s.rates.error_rate > 0.0 {
        let top = s
            .errors
            .iter()
            .filter(|(class, _)| class.as_str() != "cancelled")
            .max_by_key(|(_, n)| **n)
            .map(|(class, n)| (class.clone(), *n));
        out.push(Finding::new(
            Severity::Warning,
            Facts::Errors(StepErrors {
                step: s.name.clone(),
                error_rate: s.rates.error_rate,
                errors: s.errors.clone(),
                top,
                cause: error_cause(s),
                first: first_message(s),
            }),
        ));
    }
}

/// Which class of a step's errors dominates, for the advice.
pub(crate) fn error_cause(s: &StageSummary) -> ErrorCause {
    let count = |k: &str| s.errors.get(k).copied().unwrap_or(0);
    let timeouts = count("timeout_first_token") + count("timeout_total");
    let http_429 = count("http_429");
    let server = count("http_5xx") + count("stream_broken");
    if http_429 > 0 && http_429 >= timeouts && http_429 >= server {
        ErrorCause::RateLimited
    } else if timeouts >= server {
        ErrorCause::Timeouts
    } else {
        ErrorCause::ServerErrors
    }
}

fn client_bound(s: &StageSummary, resources: Option<&NumericTable>, out: &mut Vec<Finding>) {
    if !is_client_bound(s) {
        return;
    }
    let agent_cpu_peak_pct = resources
        .and_then(|t| {
            t.columns
                .iter()
                .enumerate()
                .filter(|(_, c)| super::server::classify(c) == super::server::ColumnKind::AgentCpu)
                .flat_map(|(i, _)| t.samples.iter().filter_map(move |s| s.values[i]))
                .reduce(f64::max)
        })
        .filter(|c| *c >= AGENT_CPU_BUSY_PCT);
    let r = &s.resources;
    let limit = if client_lag_bound(s) {
        ClientLimit::Lag {
            p99_ms: s.schedule_lag_ms.p99,
            limit_ms: lag_limit(s),
        }
    } else {
        ClientLimit::Cpu {
            limit_pct: r.client_cpu_limit_pct.unwrap_or(CLIENT_CPU_LIMIT_PCT),
            intervals: r.client_cpu_bound_intervals,
            of: r.sampled_intervals,
            peak_pct: r.stats.get("client_cpu_pct").map(|m| m.max),
        }
    };
    out.push(Finding::new(
        Severity::Critical,
        Facts::ClientBound(ClientBound {
            step: s.name.clone(),
            limit,
            agent_cpu_peak_pct,
        }),
    ));
}

/// Agents whose stream to the controller backed up: nothing was lost from the counts or
/// histograms, but intervals were folded together and request records may be missing.
fn backlog(s: &StageSummary, out: &mut Vec<Finding>) {
    for a in s
        .agents
        .iter()
        .filter(|a| a.coalesced_intervals > 0 || a.records_dropped > 0)
    {
        out.push(Finding::new(
            Severity::Warning,
            Facts::StreamBacklog(StreamBacklog {
                step: s.name.clone(),
                agent: a.agent.clone(),
                coalesced_intervals: a.coalesced_intervals,
                records_dropped: a.records_dropped,
            }),
        ));
    }
}

fn tokens(s: &StageSummary, out: &mut Vec<Finding>) {
    if let Some(gap) = s
        .tokens
        .input_gap_ratio
        .filter(|g| g.abs() > INPUT_GAP_WARN)
    {
        out.push(Finding::new(
            Severity::Warning,
            Facts::InputTokenGap(InputTokenGap {
                step: s.name.clone(),
                gap_ratio: gap,
                workload_tokens: s.tokens.input_total,
                server_tokens: s.tokens.server_input_total,
            }),
        ));
    }
    if let Some(ratio) = s
        .tokens
        .tokens_per_chunk
        .filter(|r| *r > COALESCED_TOKENS_PER_CHUNK)
    {
        out.push(Finding::new(
            Severity::Warning,
            Facts::CoalescedTokens(CoalescedTokens {
                step: s.name.clone(),
                tokens_per_chunk: ratio,
            }),
        ));
    }
}

fn accounting(s: &StageSummary, out: &mut Vec<Finding>) {
    let r = &s.requests;
    let mut add = |mismatch| {
        out.push(Finding::new(
            Severity::Critical,
            Facts::Accounting(Accounting {
                step: s.name.clone(),
                mismatch,
            }),
        ))
    };
    if r.sent != r.completed + r.failed + r.cancelled {
        add(Mismatch::Outcomes {
            sent: r.sent,
            completed: r.completed,
            failed: r.failed,
            cancelled: r.cancelled,
        });
    }
    let classed_failed: u64 = s
        .errors
        .iter()
        .filter(|(class, _)| class.as_str() != "cancelled")
        .map(|(_, n)| n)
        .sum();
    let classed_cancelled = s.errors.get("cancelled").copied().unwrap_or(0);
    if classed_failed != r.failed || classed_cancelled != r.cancelled {
        add(Mismatch::Classes {
            failed: r.failed,
            cancelled: r.cancelled,
            classed_failed,
            classed_cancelled,
        });
    }
    for a in &s.agents {
        let merged = ReportedCounts {
            sent: a.sent,
            completed: a.completed,
            failed: a.failed,
            cancelled: a.cancelled,
        };
        if let Some(own) = a.reported.as_ref().filter(|own| **own != merged) {
            add(Mismatch::Agent {
                agent: a.agent.clone(),
                own: own.clone(),
                merged,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Evidence;
    use super::super::testing::*;
    use super::*;
    use crate::i18n::Lang;
    use stampede_results::kinds::FindingCode;
    use stampede_results::kinds::ShareEnd;

    #[test]
    fn a_healthy_step_raises_nothing() {
        let steps = [open_step("s", 10.0, 10.0)];
        let a = analysed(&Evidence::stages_only(&steps, false));
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
        let a = analysed(&Evidence::stages_only(&steps, false));
        let found: Vec<_> = a
            .findings
            .iter()
            .filter(|f| f.code() == FindingCode::StreamBacklog)
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
            let a = analysed(&Evidence::stages_only(&steps, false));
            let found: Vec<_> = a
                .findings
                .iter()
                .filter(|f| f.code() == FindingCode::Accounting)
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
        let a = analysed(&Evidence::stages_only(&steps, false));
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
        let a = analysed(&Evidence::stages_only(&steps, false));
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
        let zh = analysed_in(&Evidence::stages_only(&steps, false), Lang::Zh);
        assert!(
            zh.findings[0].message.contains("的请求失败"),
            "{}",
            zh.findings[0].message
        );
    }
}
