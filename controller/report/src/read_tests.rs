//! The results reader on folders the fixture writes (the fixture lives here, beside the
//! analysis it borrows steps from).

use stampede_results::read::{Note, RunData};

use crate::fixture;

#[test]
fn a_fixture_folder_reads_back_with_its_distributions() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_steps_run(dir.path(), &fixture::knee_steps());
    let data = RunData::load(dir.path()).unwrap();
    assert_eq!(data.summary.stages.len(), 4);
    assert!(!data.timeseries.is_empty());
    assert!(data.notes.is_empty(), "{:?}", data.notes);
    let e2e = &data.history["e2e"];
    assert!(e2e.exact);
    assert_eq!(e2e.steps.len(), 4);
    let curve = &e2e.steps[0].curve;
    assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "{curve:?}");
    let (p, max) = *curve.last().unwrap();
    let n = e2e.steps[0].count as f64;
    assert!(
        (p - 100.0 * (1.0 - 1.0 / n)).abs() < 1e-9 && max > curve[0].1,
        "{curve:?}"
    );
}

#[test]
fn missing_optional_files_are_notes_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_summary_only(dir.path(), &fixture::knee_steps());
    let data = RunData::load(dir.path()).unwrap();
    assert!(data.notes.contains(&Note::Missing("timeseries.csv")));
    assert!(data.notes.contains(&Note::Missing("histograms/")));
    assert!(data.resources.is_none());
}
