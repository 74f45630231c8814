//! Every example plan parses, validates and expands, in full and at a quick time scale: a fast
//! check of examples/ beside the end-to-end runs of tests/examples_e2e.rs.

use std::path::{Path, PathBuf};

use stampede_common::plan::{Plan, StageProgram};

fn example_plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut plans: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    plans.sort();
    plans
}

#[test]
fn every_example_plan_is_valid_and_expands() {
    let plans = example_plans();
    assert!(plans.len() >= 10, "{plans:?}");
    for path in plans {
        let mut plan = Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan.resolved_stages().len(),
            plan.stages.len(),
            "{}",
            path.display()
        );
        plan.scale_time(0.01);
        for program in plan.programs() {
            let has_steps = match program {
                StageProgram::Fixed(steps) => steps.iter().all(|s| !s.duration.is_zero()),
                StageProgram::Adaptive { template, .. } => !template.duration.is_zero(),
            };
            assert!(has_steps, "{}", path.display());
        }
        // The copy written to the results folder parses again.
        Plan::parse(&plan.redacted_toml(), &path).unwrap_or_else(|e| panic!("{e}"));
    }
}
