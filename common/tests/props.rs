//! Property tests for the readers of hostile input: plans, traces and datasets.
//!
//! cargo-fuzz needs a nightly toolchain, so these run as `proptest` properties on stable, with
//! bounded case counts (a few seconds in all). Inputs that once broke a reader stay below as
//! plain regression tests.

use std::path::Path;

use proptest::prelude::*;
use stampede_common::plan::Plan;
use stampede_common::trace::read_trace;
use stampede_common::workload::{DatasetPlan, read_dataset, read_lengths};

const VALID_PLAN: &str = r#"name = "quickstart"
seed = 1

[target]
api = "chat"

[target.sim]
preset = "llama-3.1-8b-h100"

[[target.sim.faults]]
kind = "outage"
at = "20s"
duration = "10s"

[workload]
input_tokens = 1000
output_tokens = 128

[slo]
ttft_p99 = "1500ms"
error_rate = "1%"

[[stage]]
name = "steps"
arrival = "poisson"
steps = { qps = [4, 8, 16], each = "20s" }
"#;

/// Parses `text` as a plan and checks what any answer must hold: no panic, and every issue's
/// line within the text.
fn check_plan(text: &str) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    if let Err(e) = Plan::parse(text, Path::new("fuzz.toml")) {
        prop_assert!(!e.issues.is_empty(), "an error with no issue");
        for issue in &e.issues {
            prop_assert!(
                issue.line <= lines,
                "line {} past the end ({lines} lines): {}",
                issue.line,
                issue.message
            );
            prop_assert!(!issue.message.is_empty());
        }
        // Displaying the error must not panic either.
        let _ = e.to_string();
    }
    Ok(())
}

/// Characters that make TOML and CSV interesting, beside arbitrary ones.
fn text_with(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(alphabet),
            1 => any::<char>(),
        ],
        0..max,
    )
    .prop_map(|c| c.into_iter().collect())
}

const TOML_CHARS: &[char] = &[
    '[', ']', '{', '}', '=', '"', '\'', ',', '.', '\n', ' ', '#', 'a', 's', '1', '0', '-', ':',
];
const CSV_CHARS: &[char] = &[
    ',', '\n', '\r', '"', '{', '}', ':', '[', ']', '1', '0', '.', '-', 'e', ' ', 't', 's',
];

/// Cases per property: bounded for the test-suite, more with `PROPTEST_CASES=N` for a longer
/// search.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn any_text_as_a_plan_is_an_answer_not_a_panic(text in text_with(TOML_CHARS, 200)) {
        check_plan(&text)?;
    }

    #[test]
    fn a_mutated_valid_plan_is_an_answer_not_a_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<char>()), 1..6)
    ) {
        let mut chars: Vec<char> = VALID_PLAN.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                2 if i < chars.len() => chars[i] = c,
                // Cut the plan short: a truncated file.
                _ => chars.truncate(i),
            }
        }
        let text: String = chars.into_iter().collect();
        check_plan(&text)?;
    }

    #[test]
    fn a_plan_with_a_line_swapped_out_is_an_answer(
        line in any::<prop::sample::Index>(),
        replacement in text_with(TOML_CHARS, 40),
    ) {
        let mut lines: Vec<&str> = VALID_PLAN.lines().collect();
        let i = line.index(lines.len());
        lines[i] = &replacement;
        check_plan(&lines.join("\n"))?;
    }

    #[test]
    fn any_trace_is_read_or_refused_with_its_line(
        text in text_with(CSV_CHARS, 300),
        header in prop::sample::select(vec![
            "", "timestamp,input_tokens,output_tokens\n", "TIMESTAMP,ContextTokens,GeneratedTokens\n",
        ]),
        jsonl in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if jsonl { "t.jsonl" } else { "t.csv" });
        let body = if jsonl { text.clone() } else { format!("{header}{text}") };
        std::fs::write(&path, &body).unwrap();
        match read_trace(&path, Some(1000)) {
            Ok(rows) => prop_assert!(rows.len() <= 1000),
            Err(e) => {
                let lines = body.split('\n').count() + 1;
                prop_assert!(e.line.is_none_or(|l| l <= lines), "line {:?} of {lines}", e.line);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn any_dataset_is_read_or_refused(
        text in text_with(CSV_CHARS, 300),
        ext in prop::sample::select(vec!["jsonl", "json", "txt"]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("d.{ext}");
        std::fs::write(dir.path().join(&name), &text).unwrap();
        let plan: DatasetPlan = toml::from_str(&format!("file = {name:?}")).unwrap();
        if let Err(e) = read_dataset(dir.path(), &plan, "workload.dataset") {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = read_lengths(&dir.path().join(&name), None, "workload.input_tokens") {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_json_rows_as_a_dataset_are_read_or_refused(
        rows in prop::collection::vec(
            prop_oneof![
                Just(r#"{"prompt":"hi"}"#.to_string()),
                Just(r#"{"messages":[{"role":"user","content":"x"}]}"#.to_string()),
                Just(r#"{"conversations":[{"from":"human","value":"v"}]}"#.to_string()),
                Just(r#"{"prompt":7}"#.to_string()),
                Just("[]".to_string()),
                Just("null".to_string()),
                text_with(CSV_CHARS, 30),
            ],
            0..8,
        ),
        format in prop::sample::select(vec!["jsonl", "sharegpt", "text"]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let text = rows.join("\n");
        std::fs::write(dir.path().join("d.jsonl"), &text).unwrap();
        let plan: DatasetPlan =
            toml::from_str(&format!("file = \"d.jsonl\"\nformat = {format:?}")).unwrap();
        if let Err(e) = read_dataset(dir.path(), &plan, "workload.dataset") {
            let lines = text.split('\n').count() + 1;
            prop_assert!(e.line.is_none_or(|l| l <= lines), "line {:?} of {lines}", e.line);
        }
    }
}

/// Regression cases: inputs kept from the properties above.
#[test]
fn plan_regressions() {
    for text in [
        "",
        "\n",
        "[",
        "[[stage]]",
        "name = \"x\"\n[[stage]]\nqps = -1\nduration = \"1s\"",
        "name = \"x\"\n[[stage]]\nsteps = { qps = [], each = \"1s\" }",
        "name = \"x\"\n[[stage]]\nqps = 1e308\nduration = \"1s\"",
        "name = \"x\"\n[[stage]]\nqps = 1\nduration = \"99999999999999h\"",
        "name = \"é\u{0}\"\n[[stage]]\nconcurrency = 0\nduration = \"\"",
    ] {
        check_plan(text).unwrap();
    }
}

#[test]
fn trace_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("a.csv", "timestamp,input_tokens,output_tokens\n"),
        ("b.csv", "timestamp,input_tokens,output_tokens\nNaN,1,1\n"),
        (
            "c.csv",
            "timestamp,input_tokens,output_tokens\n1e309,1,1\n-5,1,1\n",
        ),
        ("d.csv", "timestamp,input_tokens,output_tokens\n\"1,1\n"),
        (
            "e.jsonl",
            "{\"ts\":1e400,\"input_tokens\":1,\"output_tokens\":1}\n",
        ),
        (
            "f.jsonl",
            "{\"ts\":-1,\"input_tokens\":-1,\"output_tokens\":1}\n",
        ),
        (
            "g.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n9999-99-99 99:99:99.9,1,1\n",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let _ = read_trace(&path, None);
    }
}
