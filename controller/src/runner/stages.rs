//! The run's stages in order: fixed ones run their steps back to back; adaptive ones (capacity
//! search, limits) ask their probe for the next step from the outcomes of the ones before; a
//! cooldown waits after a stage.

use stampede_common::plan::{Plan, StageProgram, StepPlan};
use stampede_common::probe::{ProbeOutcome, ProbeRun};
use stampede_common::stage::Probe;

use crate::feed::Console;
use crate::results::WriterMsg;
use crate::runner::notice::Notice;
use crate::runner::shell::Shell;
use crate::summary::StageSummary;

/// Runs every stage of `plan` (`programs`: what each one does) until the end or a stop.
///
/// # Errors
/// When the console cannot be written.
pub async fn run_stages(
    shell: &mut Shell<'_>,
    plan: &Plan,
    programs: Vec<StageProgram>,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    for (stage, program) in plan.stages.iter().zip(programs) {
        if shell.stopped() {
            break;
        }
        match program {
            StageProgram::Fixed(steps) => {
                shell.drive(steps, console).await?;
            }
            StageProgram::Adaptive {
                template,
                probe,
                warmup,
            } => adaptive(shell, *template, probe, warmup, console).await?,
        }
        if let Some(cooldown) = stage.get_ref().cooldown
            && !shell.stopped()
        {
            let stage = stage.get_ref().name.clone();
            console.notice(&Notice::Cooldown { cooldown, stage })?;
            tokio::select! {
                () = tokio::time::sleep(cooldown.0) => {}
                () = shell.fx.interrupt.cancelled() => {}
            }
        }
    }
    Ok(())
}

/// Runs an adaptive stage: its warm-up, then each probe step its probe asks for.
async fn adaptive(
    shell: &mut Shell<'_>,
    template: StepPlan,
    probe: Probe,
    warmup: Option<Box<StepPlan>>,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    if let Some(w) = warmup {
        shell.drive(vec![*w], console).await?;
    }
    let names = match &probe {
        Probe::Search { slo, .. } => slo.clone(),
        _ => Vec::new(),
    };
    let mut run = ProbeRun::new(probe, template);
    while !shell.stopped() {
        let Some(step) = run.next_step() else { break };
        let Some(s) = shell.drive(vec![step], console).await?.pop() else {
            break;
        };
        run.record(&probe_outcome(&s, &names));
    }
    let result = run.result();
    console.notice(&Notice::Probe(result.clone()))?;
    shell.summary.probes.push(result);
    shell
        .fx
        .writer
        .send(WriterMsg::Summary(Box::new(shell.summary.clone())));
    Ok(())
}

/// What a probe step showed, for the adaptive stages. `names`: the thresholds that matter
/// (all when empty).
fn probe_outcome(s: &StageSummary, names: &[String]) -> ProbeOutcome {
    let slo_pass = s
        .slo
        .checks
        .iter()
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .all(|c| c.pass);
    ProbeOutcome {
        slo_pass,
        sent: s.requests.sent,
        completed: s.requests.completed,
        failed: s.requests.failed,
        top_error: s
            .errors
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| (c.clone(), *n)),
        ttft_p50_ms: s.ttft_ms.p50,
        throughput_rps: s.throughput_rps,
        kv_cache_max_pct: s
            .resources
            .stats
            .get("server_kv_cache_usage_pct")
            .map(|m| m.max),
        preempted: s
            .resources
            .stats
            .get("server_preemptions_per_s")
            .is_some_and(|m| m.max > 0.0),
    }
}
