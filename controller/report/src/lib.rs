//! Reports built from a results folder's files alone: report.html (self-contained, SVG charts
//! inline, no network) and report.md (for a pull request or a ticket), in English or Chinese.
//! The run builds them when it ends; `controller report DIR` builds them again at any time.
//! This crate reads results and links no async runtime and no gRPC code.
//!
//! - [`analysis`]: findings drawn from a run's summaries and files (typed facts), and the
//!   capacity read.
//! - [`wording`]: each finding's facts in words, in English or Chinese.
//! - [`compare`]: two runs compared, metric by metric, against their noise.
//! - [`i18n`]: the labels in each language, and number formatting.
//! - [`svg`]: line charts as SVG text.
//! - [`charts`]: which charts the data supports.
//! - [`tables`]: the tables both printers show.
//! - [`html`], [`markdown`]: the two printers.

pub mod analysis;
pub mod charts;
pub mod compare;
pub mod html;
pub mod i18n;
pub mod markdown;
pub mod svg;
pub mod tables;
pub mod wording;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod read_tests;

use std::path::{Path, PathBuf};

use self::charts::Section;
use self::i18n::Lang;
use crate::analysis::capacity::{Knee, knees};
use crate::analysis::{Evidence, analyse_evidence};
use stampede_results::read::{LoadError, RunData};
use stampede_results::summary::{Analysis, RunSummary};
use stampede_results::{WriteError, write_atomic};

/// A report that could not be built or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot render {file}")]
    Render {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {file}")]
    Encode {
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot print")]
    Print(#[from] std::io::Error),
    /// `controller compare` without `--accept-unplanned`, on runs with steps that did not run
    /// as planned.
    #[error(
        "{} did not run as planned, so the runs do not compare step for step: {}; compare runs that ran their plan, or pass --accept-unplanned to compare anyway",
        if .0.len() == 1 { "a step" } else { "some steps" },
        .0.join("; ")
    )]
    Unplanned(Vec<String>),
}

/// Everything a report shows, drawn from a results folder.
#[derive(Debug)]
pub struct Report<'a> {
    pub run: &'a RunData,
    pub lang: Lang,
    pub analysis: Analysis,
    pub knees: Vec<Knee>,
    pub sections: Vec<Section>,
}

impl<'a> Report<'a> {
    /// Analyses the run and lays out its charts.
    pub fn build(run: &'a RunData, lang: Lang) -> Self {
        let ev = Evidence::of(run);
        let mut analysis = wording::worded(analyse_evidence(&ev), lang);
        // Most severe first; the order within a severity is the analysis's own.
        analysis.findings.sort_by_key(|f| f.severity.rank());
        Report {
            run,
            lang,
            analysis,
            knees: knees(&ev),
            sections: charts::sections(run, lang),
        }
    }
}

/// The files a report was written to.
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
}

/// Writes report.html and report.md for a run already read.
///
/// # Errors
/// When a file cannot be written.
pub fn write_reports(run: &RunData, lang: Lang) -> Result<Written, ReportError> {
    let report = Report::build(run, lang);
    let html_path = run.dir.join("report.html");
    let md_path = run.dir.join("report.md");
    let mut html_bytes = Vec::new();
    html::write(&mut html_bytes, &report).map_err(|source| ReportError::Render {
        file: "report.html",
        source,
    })?;
    write_atomic(&html_path, &html_bytes)?;
    let mut md_bytes = Vec::new();
    markdown::write(&mut md_bytes, &report).map_err(|source| ReportError::Render {
        file: "report.md",
        source,
    })?;
    write_atomic(&md_path, &md_bytes)?;
    Ok(Written {
        html: html_path,
        markdown: md_path,
    })
}

/// `controller report DIR`: reads the folder and writes its reports.
///
/// # Errors
/// When the folder is not a results folder, or a report cannot be written.
pub fn rebuild(dir: &Path, lang: Lang) -> Result<Written, ReportError> {
    let run = RunData::load(dir)?;
    write_reports(&run, lang)
}

/// At the end of a run: reads what the run wrote, puts every finding (in English, the
/// summary's language) into summary.json, and writes the reports in `lang`.
///
/// # Errors
/// When the folder cannot be read back or a file cannot be written.
pub fn finish_run(
    dir: &Path,
    summary: &mut RunSummary,
    lang: Lang,
) -> Result<Written, ReportError> {
    let run = RunData::load(dir)?;
    summary.analysis = wording::worded(analyse_evidence(&Evidence::of(&run)), Lang::En);
    let json = serde_json::to_vec_pretty(summary).map_err(|source| ReportError::Encode {
        file: "summary.json",
        source,
    })?;
    write_atomic(&dir.join("summary.json"), &json)?;
    write_reports(&run, lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_written_from_the_files_and_rewritten_the_same() {
        let dir = tempfile::tempdir().unwrap();
        fixture::write_steps_run(dir.path(), &fixture::knee_steps());
        let first = rebuild(dir.path(), Lang::En).unwrap();
        let html = std::fs::read_to_string(&first.html).unwrap();
        let md = std::fs::read_to_string(&first.markdown).unwrap();
        assert!(html.contains("<svg") && md.starts_with("# "));
        rebuild(dir.path(), Lang::En).unwrap();
        assert_eq!(
            std::fs::read_to_string(&first.html).unwrap(),
            html,
            "deterministic"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_folder_that_is_not_results_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", rebuild(dir.path(), Lang::En).unwrap_err());
        assert!(err.contains("summary.json is missing"), "{err}");
    }
}
