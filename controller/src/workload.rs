//! The run's workload on the controller's side: resolved and checked before anything starts
//! (every file read, the tokenizer loaded, every class able to build its lengths), loaded on
//! each load agent before the first step, and summarised per request class.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use stampede_common::metrics::{HistogramBundle, MetricsError, Tally};
use stampede_common::plan::{Load, Plan};
use stampede_common::proto::{ClassReport, Counts, LoadWorkloadRequest};
use stampede_common::workload::WorkloadSpec;
use stampede_workload::WorkloadEngine;

use crate::pool::AgentHandle;
use crate::summary::StageSummary;

/// How long an agent may take to build the workload (load a tokenizer, count a dataset).
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The workload of a run, resolved and checked.
#[derive(Debug, Clone)]
pub struct RunWorkload {
    /// Its content hash: what shares name it by.
    pub id: String,
    /// The resolved spec as JSON, as agents receive it.
    pub json: Vec<u8>,
    /// The tokenizer's name, for the manifest.
    pub tokenizer: String,
    /// Request classes and their shares of the requests.
    pub classes: Vec<(String, f64)>,
}

/// Reads every file the plan's workload names and builds it as an agent would, so a bad
/// template, dataset row, tokenizer or length stops the run before it starts.
///
/// # Errors
/// Naming the plan, the file, the line or row, and the field.
pub fn prepare(plan: &Plan, plan_file: &Path) -> anyhow::Result<RunWorkload> {
    let spec = plan
        .workload
        .resolve(&plan.dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", plan_file.display()))?;
    let json = spec.to_json().context("cannot encode the workload")?;
    let engine = WorkloadEngine::try_new(&spec, WorkloadSpec::id_of(&json))
        .map_err(|e| anyhow::anyhow!("{}: {e}", plan_file.display()))?;
    Ok(RunWorkload {
        id: engine.id().to_string(),
        tokenizer: engine.tokenizer_name().to_string(),
        classes: spec
            .classes
            .iter()
            .map(|c| (c.name.clone(), c.weight))
            .collect(),
        json,
    })
}

/// Sends the workload to every load agent and waits until each has built it.
///
/// # Errors
/// Naming the agent that could not build it, and why.
pub async fn load_on_agents(agents: &[AgentHandle], w: &RunWorkload) -> anyhow::Result<()> {
    let loads = agents.iter().map(|a| {
        let mut client = a.client.clone();
        let req = LoadWorkloadRequest {
            spec_json: w.json.clone(),
        };
        async move {
            let reply = tokio::time::timeout(LOAD_TIMEOUT, client.load_workload(req))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "agent {} did not build the workload within {}s",
                        a.hello.agent_id,
                        LOAD_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|s| {
                    anyhow::anyhow!(
                        "agent {} could not build the workload: {}",
                        a.hello.agent_id,
                        s.message()
                    )
                })?
                .into_inner();
            if reply.workload_id != w.id {
                anyhow::bail!(
                    "agent {} built workload {} instead of {}",
                    a.hello.agent_id,
                    reply.workload_id,
                    w.id
                );
            }
            Ok(())
        }
    });
    for r in futures_util::future::join_all(loads).await {
        r?;
    }
    Ok(())
}

/// Adds one agent's class reports to a step's per-class totals, by class index.
///
/// # Errors
/// When a report's histograms cannot be decoded.
pub fn merge_class_reports(
    into: &mut Vec<(Counts, HistogramBundle)>,
    reports: &[ClassReport],
) -> Result<(), MetricsError> {
    for r in reports {
        let i = r.index as usize;
        if i >= 1024 {
            continue;
        }
        if into.len() <= i {
            into.resize_with(i + 1, || (Counts::default(), HistogramBundle::new()));
        }
        let bundle = HistogramBundle::decode(&r.histograms.clone().unwrap_or_default())?;
        into[i].1.merge(&bundle)?;
        into[i].0 += &r.counts.clone().unwrap_or_default();
    }
    Ok(())
}

/// Adds per-class totals of one step to another's (the overall line).
pub fn add_classes(into: &mut Vec<(Counts, HistogramBundle)>, from: &[(Counts, HistogramBundle)]) {
    if into.len() < from.len() {
        into.resize_with(from.len(), || (Counts::default(), HistogramBundle::new()));
    }
    for (mine, theirs) in into.iter_mut().zip(from) {
        mine.0 += &theirs.0;
        // One layout everywhere: the merge cannot fail for range.
        let _ = mine.1.merge(&theirs.1);
    }
}

/// Each class's summary of a step (or of the run, with no load), named after the class; an
/// open-loop step's offered rate is split by the classes' weights. Empty when the workload
/// has one class.
pub fn class_summaries(
    w: &RunWorkload,
    step: &str,
    load: Option<&Load>,
    duration: Duration,
    classes: &[(Counts, HistogramBundle)],
) -> Vec<StageSummary> {
    if w.classes.len() < 2 {
        return Vec::new();
    }
    let empty = (Counts::default(), HistogramBundle::new());
    w.classes
        .iter()
        .enumerate()
        .map(|(i, (name, weight))| {
            let (counts, bundle) = classes.get(i).unwrap_or(&empty);
            let mut s = StageSummary::compute(
                name,
                step,
                load,
                duration,
                &Tally::from(counts),
                bundle,
                &[],
            );
            s.offered_qps = s.offered_qps.map(|q| q * weight);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::metrics::new_histogram;

    fn workload() -> RunWorkload {
        RunWorkload {
            id: "x".into(),
            json: Vec::new(),
            tokenizer: "cl100k_base".into(),
            classes: vec![("chat".into(), 0.7), ("summary".into(), 0.3)],
        }
    }

    fn report(index: u32, completed: u64, e2e_ms: u64) -> ClassReport {
        let mut b = HistogramBundle::new();
        b.e2e = new_histogram();
        b.e2e.record(e2e_ms * 1000).unwrap();
        ClassReport {
            index,
            name: String::new(),
            counts: Some(Counts {
                sent: completed,
                completed,
                ..Default::default()
            }),
            histograms: Some(b.encode().unwrap()),
        }
    }

    #[test]
    fn class_reports_merge_by_index_into_named_summaries() {
        let mut classes = Vec::new();
        merge_class_reports(&mut classes, &[report(1, 2, 900)]).unwrap();
        merge_class_reports(&mut classes, &[report(0, 5, 50), report(1, 1, 1100)]).unwrap();
        let mut overall = Vec::new();
        add_classes(&mut overall, &classes);
        add_classes(&mut overall, &classes);
        let load = Load::Open {
            qps: 10.0,
            arrival: stampede_common::schedule::ArrivalKind::Poisson,
            max_in_flight: None,
        };
        let s = class_summaries(
            &workload(),
            "steps",
            Some(&load),
            Duration::from_secs(1),
            &classes,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].name.as_str(), s[1].name.as_str()),
            ("chat", "summary")
        );
        assert_eq!((s[0].requests.completed, s[1].requests.completed), (5, 3));
        assert_eq!(s[1].e2e_ms.count, 2);
        assert_eq!(s[0].offered_qps, Some(7.0));
        assert_eq!(overall[1].0.completed, 6);
        let one = RunWorkload {
            classes: vec![("default".into(), 1.0)],
            ..workload()
        };
        assert!(class_summaries(&one, "s", None, Duration::from_secs(1), &classes).is_empty());
    }
}
