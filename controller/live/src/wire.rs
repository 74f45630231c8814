//! Live events on the wire: [`LiveEvent`] to and from the proto's `LiveUpdate`, for
//! `controller watch`.

use stampede_common::proto::{self, live_update::Update};

use crate::alerts::{Alert, AlertKind, AlertState, Severity};
use crate::state::{
    AgentHealth, IntervalView, Latencies, LiveEvent, Percentiles, RateChange, RunInfo, StepDone,
    StepStart,
};

/// The update that carries `ev`.
pub fn to_proto(ev: &LiveEvent) -> proto::LiveUpdate {
    let update = match ev {
        LiveEvent::Run(r) => Update::Run(proto::LiveRun {
            plan: r.plan.clone(),
            target: r.target.clone(),
            model: r.model.clone(),
            agents: r.agents.clone(),
            results_dir: r.results_dir.clone(),
            interval_us: (r.interval_s * 1e6).round() as u64,
        }),
        LiveEvent::StepStarted(s) => Update::StepStarted(proto::LiveStepStarted {
            step_no: s.step_no,
            name: s.name.clone(),
            stage: s.stage.clone(),
            offered_qps: s.offered_qps,
            concurrency: s.concurrency,
            start_s: s.start_s,
            duration_s: s.duration_s,
            warmup: s.warmup,
        }),
        LiveEvent::Interval(iv) => Update::Interval(proto::LiveInterval {
            step_no: iv.step_no,
            // A row of plain numbers and strings always encodes.
            row_json: serde_json::to_string(&iv.row).unwrap_or_default(),
            window: Some(latencies_to(&iv.window)),
            step: Some(latencies_to(&iv.step)),
            errors: iv.errors.clone().into_iter().collect(),
            step_errors: iv.step_errors.clone().into_iter().collect(),
            step_error_messages: iv.step_error_messages.iter().map(Into::into).collect(),
            agents: iv
                .agents
                .iter()
                .map(|a| proto::LiveAgentHealth {
                    agent: a.agent.clone(),
                    schedule_lag_p99_ms: a.schedule_lag_p99_ms,
                    cpu_pct: a.cpu_pct,
                    lost: a.lost.clone().unwrap_or_default(),
                })
                .collect(),
            paused: iv.paused,
            sent: iv.sent,
            output_tokens: iv.output_tokens,
        }),
        LiveEvent::StepFinished(d) => Update::StepFinished(proto::LiveStepFinished {
            step_no: d.step_no,
            name: d.name.clone(),
            offered_qps: d.offered_qps,
            concurrency: d.concurrency,
            achieved_qps: d.achieved_qps,
            ttft_p99_ms: d.ttft_p99_ms,
            e2e_p99_ms: d.e2e_p99_ms,
            output_tokens_per_s: d.output_tokens_per_s,
            error_rate: d.error_rate,
            slo_pass: d.slo_pass,
            warmup: d.warmup,
            error_messages: d.error_messages.iter().map(Into::into).collect(),
        }),
        LiveEvent::Alert(a) => Update::Alert(proto::LiveAlert {
            kind: a.kind.name().to_string(),
            severity: a.severity.name().to_string(),
            state: a.state.name().to_string(),
            step: a.step.clone(),
            elapsed_s: a.elapsed_s,
            message: a.message.clone(),
            value: a.value,
            limit: a.limit,
            subject: a.subject.clone(),
        }),
        LiveEvent::Rate(r) => Update::Rate(proto::LiveRateChange {
            step: r.step.clone(),
            scale: r.scale,
            qps: r.qps,
        }),
        LiveEvent::Note(n) => Update::Note(n.clone()),
        LiveEvent::Ended(status) => Update::Ended(proto::LiveEnded {
            status: status.clone(),
        }),
        LiveEvent::Missed(n) => Update::Missed(*n),
    };
    proto::LiveUpdate {
        update: Some(update),
    }
}

/// The event an update carries; `None` for an empty update or one this version cannot read
/// (an alert of an unknown kind, a row that does not parse).
pub fn from_proto(u: proto::LiveUpdate) -> Option<LiveEvent> {
    Some(match u.update? {
        Update::Run(r) => LiveEvent::Run(RunInfo {
            plan: r.plan,
            target: r.target,
            model: r.model,
            agents: r.agents,
            results_dir: r.results_dir,
            interval_s: r.interval_us as f64 / 1e6,
        }),
        Update::StepStarted(s) => LiveEvent::StepStarted(StepStart {
            step_no: s.step_no,
            name: s.name,
            stage: s.stage,
            offered_qps: s.offered_qps,
            concurrency: s.concurrency,
            start_s: s.start_s,
            duration_s: s.duration_s,
            warmup: s.warmup,
        }),
        Update::Interval(iv) => LiveEvent::Interval(Box::new(IntervalView {
            step_no: iv.step_no,
            row: serde_json::from_str(&iv.row_json).ok()?,
            window: latencies_from(iv.window.unwrap_or_default()),
            step: latencies_from(iv.step.unwrap_or_default()),
            errors: iv.errors.into_iter().collect(),
            step_errors: iv.step_errors.into_iter().collect(),
            step_error_messages: iv.step_error_messages.iter().map(Into::into).collect(),
            agents: iv
                .agents
                .into_iter()
                .map(|a| AgentHealth {
                    agent: a.agent,
                    schedule_lag_p99_ms: a.schedule_lag_p99_ms,
                    cpu_pct: a.cpu_pct,
                    lost: (!a.lost.is_empty()).then_some(a.lost),
                })
                .collect(),
            paused: iv.paused,
            sent: iv.sent,
            output_tokens: iv.output_tokens,
        })),
        Update::StepFinished(d) => LiveEvent::StepFinished(StepDone {
            step_no: d.step_no,
            name: d.name,
            offered_qps: d.offered_qps,
            concurrency: d.concurrency,
            achieved_qps: d.achieved_qps,
            ttft_p99_ms: d.ttft_p99_ms,
            e2e_p99_ms: d.e2e_p99_ms,
            output_tokens_per_s: d.output_tokens_per_s,
            error_rate: d.error_rate,
            slo_pass: d.slo_pass,
            warmup: d.warmup,
            error_messages: d.error_messages.iter().map(Into::into).collect(),
        }),
        Update::Alert(a) => LiveEvent::Alert(Alert {
            elapsed_s: a.elapsed_s,
            kind: AlertKind::parse(&a.kind)?,
            severity: match a.severity.as_str() {
                "critical" => Severity::Critical,
                "info" => Severity::Info,
                _ => Severity::Warning,
            },
            state: if a.state == "resolved" {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            step: a.step,
            subject: a.subject,
            message: a.message,
            value: a.value,
            limit: a.limit,
        }),
        Update::Rate(r) => LiveEvent::Rate(RateChange {
            step: r.step,
            scale: r.scale,
            qps: r.qps,
        }),
        Update::Note(n) => LiveEvent::Note(n),
        Update::Ended(e) => LiveEvent::Ended(e.status),
        Update::Missed(n) => LiveEvent::Missed(n),
    })
}

fn percentiles_to(p: &Percentiles) -> proto::LivePercentiles {
    proto::LivePercentiles {
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        count: p.count,
    }
}

fn latencies_to(l: &Latencies) -> proto::LiveLatencies {
    proto::LiveLatencies {
        ttft: Some(percentiles_to(&l.ttft)),
        itl: Some(percentiles_to(&l.itl)),
        e2e: Some(percentiles_to(&l.e2e)),
    }
}

fn latencies_from(l: proto::LiveLatencies) -> Latencies {
    let p = |p: Option<proto::LivePercentiles>| {
        let p = p.unwrap_or_default();
        Percentiles {
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
            count: p.count,
        }
    };
    Latencies {
        ttft: p(l.ttft),
        itl: p(l.itl),
        e2e: p(l.e2e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn every_event_survives_the_wire() {
        for ev in fixture::events() {
            assert_eq!(from_proto(to_proto(&ev)).as_ref(), Some(&ev));
        }
    }
}
