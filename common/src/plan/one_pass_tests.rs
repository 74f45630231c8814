//! Every problem of a plan in one pass: syntax, types and meaning, in file order, each once, with
//! its line and field, and a "did you mean" for unknown names.

use std::path::Path;

use super::{Plan, PlanError};

fn parse(text: &str) -> Result<Plan, PlanError> {
    Plan::parse(text, Path::new("plan.toml"))
}

/// (line, field, message) of each issue, in the order reported.
fn issues(text: &str) -> Vec<(usize, String, String)> {
    let err = parse(text).unwrap_err();
    (err.issues.iter())
        .map(|i| {
            (
                i.line,
                i.field.clone().unwrap_or_default(),
                i.message.clone(),
            )
        })
        .collect()
}

const SIX_MISTAKES: &str = r#"name = "six"
seed = "three"

[target]
strem = false

[workload]
input_tokens = 200
output_token = 32

[[stage]]
name = "a"
qps = 5
duration = "10s"
arrival = "possion"

[[stage]]
name = "b"
qps = = 5
duration = "10s"

[[stage]]
name = "c"
qps = 5
concurrency = 2
duration = "10s"
"#;

#[test]
fn six_mistakes_of_every_kind_are_reported_in_one_pass_in_file_order() {
    let found = issues(SIX_MISTAKES);
    let err = parse(SIX_MISTAKES).unwrap_err();
    let at: Vec<(usize, &str)> = found.iter().map(|(l, f, _)| (*l, f.as_str())).collect();
    assert_eq!(
        at,
        [
            (2, "seed"),
            (5, "target.strem"),
            (9, "workload.output_token"),
            (15, "stage[0].arrival"),
            (19, "stage[1].qps"),
            (24, "stage[2].qps"),
        ],
        "{err}"
    );
    let says = |n: usize, what: &str| {
        assert!(found[n].2.contains(what), "{what:?} in {:?}", found[n]);
    };
    says(0, "expected u64");
    says(1, "did you mean `stream`?");
    says(2, "did you mean `output_tokens`?");
    says(3, "did you mean `poisson`?");
    says(4, "expected");
    says(5, "give only one of");
    // The format `run` prints: file:line:column: field: message, one line each.
    let text = err.to_string();
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .starts_with("plan.toml:9:1: workload.output_token: unknown field"),
        "{text}"
    );
}

#[test]
fn a_misspelt_field_is_not_also_reported_as_missing_load() {
    // Without `qps` the stage has no load; saying so would only repeat the typo.
    let found = issues("name = \"x\"\n[[stage]]\nname = \"a\"\nqpss = 5\nduration = \"1s\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1.as_str()), (4, "stage[0].qpss"));
    assert!(found[0].2.contains("did you mean `qps`?"), "{found:?}");
}

#[test]
fn a_stage_left_out_does_not_shift_the_names_of_the_next() {
    // stage[0] lacks its name and is left out; stage[1]'s problem still names stage[1].
    let found = issues(
        "name = \"x\"\n[[stage]]\nqps = 1\nduration = \"1s\"\n[[stage]]\nname = \"b\"\nqps = 1\nconcurrency = 1\nduration = \"1s\"\n",
    );
    let at: Vec<(usize, &str)> = found.iter().map(|(l, f, _)| (*l, f.as_str())).collect();
    assert_eq!(at, [(2, "stage[0]"), (7, "stage[1].qps")], "{found:?}");
    assert!(found[0].2.contains("missing field `name`"), "{found:?}");
}

#[test]
fn several_syntax_errors_are_all_reported() {
    let found = issues(
        "name = \"x\"\nseed = \n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\nwarmup = \"1s\" \"2s\"\n",
    );
    let lines: Vec<usize> = found.iter().map(|i| i.0).collect();
    assert_eq!(lines, [2, 7], "{found:?}");
}

#[test]
fn a_missing_name_does_not_stop_the_other_checks() {
    let found = issues(
        "seed = 1\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\nramp = { from = 1 }\n",
    );
    let fields: Vec<&str> = found.iter().map(|i| i.1.as_str()).collect();
    assert_eq!(fields, ["name", "stage[0].ramp"], "{found:?}");
    assert!(found[1].2.contains("missing field `to`"), "{found:?}");
}

#[test]
fn a_meaning_check_points_at_the_field_it_is_about() {
    // Not the `[[stage]]` header: the line where the reversed bounds are written.
    let found = issues(
        "name = \"x\"\n[slo]\ne2e_p99 = \"1s\"\n[[stage]]\nname = \"a\"\n\nsearch = { qps = [100, 10], each = \"1s\" }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0, found[0].1.as_str()),
        (7, "stage[0].search.qps")
    );
}
