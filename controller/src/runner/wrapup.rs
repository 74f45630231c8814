//! The end of a run: the overall summary, the findings and the status into summary.json, the
//! files finished, the report rendered, what is left said, and the exit code.

use crate::analysis::{analyse, is_client_bound};
use crate::feed::Console;
use crate::report::i18n::Lang;
use crate::results::kinds::FindingCode;
use crate::results::{ResultsWriter, WriterMsg};
use crate::runner::RunOutcome;
use crate::runner::notice::Notice;
use crate::runner::outcome::{Verdict, exit_code, run_passes};
use crate::runner::shell::Finished;
use crate::summary::StageSummary;
use crate::wallclock::UtcTime;
use crate::workload::RunWorkload;

/// Finishes the run's files and report from what its steps left; says where they are.
///
/// # Errors
/// When a results file could not be written, or the console cannot be.
pub fn finish(
    done: Finished,
    writer: ResultsWriter,
    (dir, lang): (std::path::PathBuf, Lang),
    (has_slo, workload): (bool, &RunWorkload),
    console: &mut Console<'_>,
) -> anyhow::Result<RunOutcome> {
    let Finished {
        coord,
        live,
        agents,
        mut summary,
    } = done;
    summary.alerts = live.alert_counts();
    let overall = coord.overall().summary(workload);
    let measured: Vec<StageSummary> = summary
        .stages
        .iter()
        .filter(|s| !s.warmup)
        .cloned()
        .collect();
    summary.analysis = analyse(&measured, has_slo);
    if let Some(best) = summary
        .probes
        .iter()
        .filter(|p| p.kind == "capacity_search")
        .filter_map(|p| p.max_passing)
        .reduce(f64::max)
    {
        summary.analysis.max_qps_within_slo = Some(best);
    }
    // A capacity search's or limit test's failing probes are its evidence: the run fails only
    // on the search's own verdict (no rate met the SLO, the target did not recover).
    let kinds: Vec<_> = measured.iter().map(|s| (s.kind, s.slo.pass)).collect();
    summary.slo_pass = run_passes(&kinds, &summary.probes);
    summary.overall = Some(overall.clone());
    summary.finished_at = Some(UtcTime::now().rfc3339());
    summary.status = coord.stop_reasons().status();
    writer.send(WriterMsg::Summary(Box::new(summary.clone())));
    writer.finish()?;
    // Every finding (some need the files just written) into summary.json, then the reports.
    let report = crate::report::finish_run(&dir, &mut summary, lang);

    console.notice(&Notice::FinalTable(summary.stages.clone()))?;
    console.notice(&Notice::Findings(summary.analysis.findings.clone()))?;
    console.notice(&Notice::Written {
        results: dir.clone(),
        report: report.map(|w| w.html).map_err(|e| format!("{e:#}")),
    })?;
    // Requests that do not add up make the whole run doubtful: say so, and exit 3.
    let unaccounted = summary
        .analysis
        .findings
        .iter()
        .any(|f| f.code() == FindingCode::Accounting);
    if unaccounted {
        console.notice(&Notice::Unaccounted)?;
    }
    let verdict = Verdict {
        sent: overall.requests.sent,
        completed: overall.requests.completed,
        client_bound: measured.iter().any(is_client_bound),
        unaccounted,
        slo_pass: summary.slo_pass,
    };
    let exit_code = exit_code(coord.stop_reasons().decisive(), &verdict);
    drop(agents);
    Ok(RunOutcome {
        exit_code,
        results_dir: dir,
        summary,
    })
}
