//! A step's shares: how its load is split among the agents by weight, and the `StageShare`
//! each agent is sent. Pure: the shell sends what these functions build.

use std::time::Duration;

use stampede_common::plan::{ApiKind, Load, StepPlan};
use stampede_common::proto::{
    self, Api, ClosedLoop, OpenLoop, RequestSlo, StageShare, stage_share,
};
use stampede_common::schedule::{ArrivalKind, deal_by_weight, split_count, split_rate};
use stampede_common::units::micros;

use crate::pool::AgentHandle;
use crate::runner::context::RunContext;
use crate::runner::messages::LaunchOrder;

/// Each agent's share of a step's load by weight: rates for open loop, users for closed loop.
pub fn share_split(
    load: &Load,
    weights: &[f64],
    duration: Duration,
) -> (Option<Vec<f64>>, Option<Vec<u32>>) {
    match load {
        Load::Open { qps, .. } => (Some(split_rate(*qps, weights)), None),
        Load::Closed { concurrency, .. } => (None, Some(split_count(*concurrency, weights))),
        // A trace is dealt by weight, request by request: each agent's rate is its part of the
        // requests over the step.
        Load::Trace { entries, .. } => {
            let mut parts = vec![0.0; weights.len()];
            for d in deal_by_weight(weights, entries.len()) {
                parts[d] += 1.0;
            }
            let seconds = duration.as_secs_f64().max(1e-3);
            (Some(parts.into_iter().map(|n| n / seconds).collect()), None)
        }
    }
}

/// True when load agent `i` has no part of the step: fewer users than agents.
pub fn sits_out(step: &StepPlan, weights: &[f64], i: usize) -> bool {
    match share_split(&step.load, weights, step.duration) {
        (None, Some(users)) => users.get(i).copied().unwrap_or(0) == 0,
        _ => false,
    }
}

/// The load of active agent `i`'s share, or None when it sits the step out.
pub fn share_load(order: &LaunchOrder, i: usize) -> Option<stage_share::Load> {
    let step = &order.step;
    let weights = &order.weights;
    let caps = |m: u32| split_count(m, weights)[i].max(1);
    match &step.load {
        Load::Open {
            qps,
            arrival,
            max_in_flight,
        } => {
            let (rates, _) = share_split(&step.load, weights, step.duration);
            let share_qps = rates.as_ref().map_or(0.0, |r| r[i]);
            // Constant arrivals of several agents interleave: the r-th active agent starts
            // r/qps later.
            let rank = order.active[..i].iter().filter(|&&on| on).count();
            let phase_us = match arrival {
                ArrivalKind::Constant => (rank as f64 / qps * 1e6) as u64,
                _ => 0,
            };
            let mut open = OpenLoop {
                qps: share_qps,
                phase_us,
                max_in_flight: max_in_flight.map_or(0, caps),
                ..Default::default()
            };
            open.set_arrival_kind(match *arrival {
                // Each agent ramps its own share of the rate.
                ArrivalKind::Ramp { to_qps, over } => ArrivalKind::Ramp {
                    to_qps: to_qps * share_qps / qps,
                    over,
                },
                other => other,
            });
            Some(stage_share::Load::OpenLoop(open))
        }
        Load::Trace {
            entries,
            max_in_flight,
        } => {
            // A trace is dealt once, by weight, and each agent takes its part in order.
            let deal = deal_by_weight(weights, entries.len());
            let trace: Vec<proto::TraceEntry> = entries
                .iter()
                .zip(&deal)
                .filter(|(_, d)| **d == i)
                .map(|(e, _)| proto::TraceEntry {
                    offset_us: micros(e.offset),
                    input_tokens: e.input_tokens,
                    output_tokens: e.output_tokens,
                })
                .collect();
            let mut open = OpenLoop {
                qps: trace.len() as f64 / step.duration.as_secs_f64().max(1e-3),
                max_in_flight: max_in_flight.map_or(0, caps),
                trace,
                ..Default::default()
            };
            open.arrival = proto::Arrival::Trace as i32;
            Some(stage_share::Load::OpenLoop(open))
        }
        Load::Closed { think_time, .. } => {
            let (_, counts) = share_split(&step.load, weights, step.duration);
            let users = counts.as_ref().map_or(0, |c| c[i]);
            // Fewer users than agents: this agent sits the step out.
            (users > 0).then(|| {
                stage_share::Load::ClosedLoop(ClosedLoop {
                    concurrency: users,
                    think_time_us: micros(*think_time),
                })
            })
        }
    }
}

/// The share load agent `i` is sent, or None when it sits the step out.
pub fn stage_share(
    ctx: &RunContext<'_>,
    order: &LaunchOrder,
    i: usize,
    agent: &AgentHandle,
    agent_count: usize,
) -> Option<StageShare> {
    let plan = ctx.plan;
    let step = &order.step;
    let goodput = &plan.goodput;
    let load = share_load(order, i)?;
    Some(StageShare {
        run_id: ctx.run_id.clone(),
        stage_index: u32::try_from(order.step_no).unwrap_or(u32::MAX),
        stage_name: step.name.clone(),
        target: Some(target(ctx)),
        workload: Some(proto::Workload {
            input_tokens: step.input_tokens,
            output_tokens: step.output_tokens,
            ignore_eos: plan.workload.ignore_eos,
            workload_id: ctx.workload.id.clone(),
        }),
        load: Some(load),
        start_at_unix_us: order.start_unix_us.saturating_add(agent.clock.offset_us),
        duration_us: micros(step.duration),
        grace_us: micros(plan.grace.0),
        seed: plan.seed,
        agent_index: u32::try_from(i).unwrap_or(u32::MAX),
        agent_count: u32::try_from(agent_count).unwrap_or(u32::MAX),
        interval_us: micros(plan.interval.0),
        record_every: plan.results.record_every,
        slo: Some(RequestSlo {
            ttft_us: goodput.ttft.map_or(0, |d| micros(d.0)),
            tpot_us: goodput.tpot.map_or(0, |d| micros(d.0)),
            e2e_us: goodput.e2e.map_or(0, |d| micros(d.0)),
        }),
        monitor: Some(ctx.monitoring.share_config(i, agent)),
        // Fields added later keep their defaults unless set above.
        ..Default::default()
    })
}

/// The target as every share names it.
fn target(ctx: &RunContext<'_>) -> proto::Target {
    let t = &ctx.plan.target;
    proto::Target {
        base_url: ctx.base_url.clone(),
        api: match t.api {
            ApiKind::Chat => Api::Chat,
            ApiKind::Completions => Api::Completions,
        } as i32,
        model: ctx.model.clone(),
        api_key: ctx.api_key.clone().unwrap_or_default(),
        stream: t.stream,
        timeout_us: micros(t.timeout.0),
        connect_timeout_us: micros(t.connect_timeout.0),
        first_token_timeout_us: t.first_token_timeout.map_or(0, |d| micros(d.0)),
        idle_timeout_us: t.idle_timeout.map_or(0, |d| micros(d.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::plan::StepKind;

    fn order(load: Load, weights: Vec<f64>) -> LaunchOrder {
        LaunchOrder {
            step_no: 0,
            step: StepPlan {
                stage_index: 0,
                stage_name: "s".into(),
                step_index: 0,
                name: "s".into(),
                kind: StepKind::Single,
                load,
                duration: Duration::from_secs(10),
                input_tokens: 1,
                output_tokens: 1,
                checks: Vec::new(),
            },
            start_unix_us: 0,
            active: weights.iter().map(|w| *w > 0.0).collect(),
            weights,
            monitors: Vec::new(),
        }
    }

    fn open(l: Option<stage_share::Load>) -> OpenLoop {
        match l {
            Some(stage_share::Load::OpenLoop(o)) => o,
            other => panic!("expected open loop, got {other:?}"),
        }
    }

    #[test]
    fn max_in_flight_is_split_by_weight_and_passed_to_each_share() {
        let load = Load::Open {
            qps: 30.0,
            arrival: ArrivalKind::Constant,
            max_in_flight: Some(9),
        };
        let o = order(load, vec![1.0, 2.0]);
        let (a, b) = (open(share_load(&o, 0)), open(share_load(&o, 1)));
        assert_eq!((a.max_in_flight, b.max_in_flight), (3, 6));
        assert_eq!((a.qps, b.qps), (10.0, 20.0));
        // The second agent starts one arrival of the whole rate later.
        assert_eq!((a.phase_us, b.phase_us), (0, 33_333));
        // No cap: 0 on the wire; a cap smaller than the agents: at least one each.
        let uncapped = Load::Open {
            qps: 30.0,
            arrival: ArrivalKind::Constant,
            max_in_flight: None,
        };
        assert_eq!(
            open(share_load(&order(uncapped, vec![1.0]), 0)).max_in_flight,
            0
        );
        let tiny = Load::Open {
            qps: 30.0,
            arrival: ArrivalKind::Poisson,
            max_in_flight: Some(1),
        };
        let o = order(tiny, vec![1.0, 1.0]);
        assert_eq!(open(share_load(&o, 1)).max_in_flight, 1);
    }

    #[test]
    fn fewer_users_than_agents_leaves_an_agent_out() {
        let load = Load::Closed {
            concurrency: 1,
            think_time: Duration::ZERO,
        };
        let o = order(load, vec![1.0, 1.0]);
        assert!(share_load(&o, 0).is_some());
        assert!(share_load(&o, 1).is_none());
        assert!(sits_out(&o.step, &o.weights, 1) && !sits_out(&o.step, &o.weights, 0));
    }
}
