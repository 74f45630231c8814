//! Workloads end to end: a mixed load of synthetic, template, dataset and multi-turn classes
//! against the built-in simulator, with per-class results in summary.json; and bad workload
//! files caught before the run starts, with the file, the line and the field.

mod util;

use serde_json::Value;
use util::*;

fn classes(stage: &Value) -> Vec<Value> {
    stage["classes"].as_array().cloned().unwrap_or_default()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

#[test]
fn a_mixed_load_reports_each_class_and_all_together() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    std::fs::write(
        dir.join("prompts.jsonl"),
        "{\"prompt\":\"Why is the sky blue?\"}\n{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Name three rivers.\"}]}\n",
    )
    .unwrap();
    std::fs::write(dir.join("topics.csv"), "topic\nrivers\nmountains\n").unwrap();
    std::fs::write(
        dir.join("ask.j2"),
        "Tell me about {{ topic }}.\n{{ fill() }}",
    )
    .unwrap();
    let plan = ws.write_plan(
        r#"
name = "mixed-e2e"
seed = 11

[target.sim]
preset = "deterministic"
ttft = "20ms"
itl = "2ms"

[workload]
output_tokens = 8

[[workload.class]]
name = "synthetic"
weight = 2
input_tokens = { uniform = [100, 200] }

[[workload.class]]
name = "templated"
weight = 1
template = "ask.j2"
vars_file = "topics.csv"
input_tokens = 300

[[workload.class]]
name = "dataset"
weight = 1
dataset = { file = "prompts.jsonl", fit = "pad" }
input_tokens = 64

[[workload.class]]
name = "chat"
weight = 1
input_tokens = 40
multi_turn = { turns = 3, think_time = "10ms" }

[[stage]]
name = "load"
qps = 20
duration = "4s"
"#,
    );
    let out = ws.run(&plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = ws.summary();
    assert_eq!(s["manifest"]["tokenizer"], "cl100k_base");
    let step = &s["stages"][0];
    let cls = classes(step);
    let names: Vec<&str> = cls.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["synthetic", "templated", "dataset", "chat"]);
    for field in ["sent", "completed"] {
        let total: u64 = cls.iter().map(|c| n(&c["requests"][field])).sum();
        assert_eq!(total, n(&step["requests"][field]), "{field}");
    }
    for c in &cls {
        assert!(n(&c["requests"]["completed"]) > 0, "{c}");
        assert!(c["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{c}");
    }
    let per_request =
        |c: &Value| n(&c["tokens"]["input_total"]) as f64 / n(&c["requests"]["completed"]) as f64;
    assert!((100.0..=200.0).contains(&per_request(&cls[0])));
    assert_eq!(per_request(&cls[1]), 300.0);
    assert_eq!(per_request(&cls[2]), 64.0);
    // Multi-turn: later turns carry the earlier turns and their answers, so the class's mean
    // input is above one turn's 40 tokens, and it sent more requests than its weight alone.
    assert!(per_request(&cls[3]) > 50.0, "{}", per_request(&cls[3]));
    assert_eq!(classes(&s["overall"]).len(), 4);
    let stage_rows = read_csv(&ws.results_dir().join("stages.csv"));
    let names: Vec<&str> = stage_rows.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "load",
            "load · synthetic",
            "load · templated",
            "load · dataset",
            "load · chat"
        ]
    );
    // requests.csv holds every turn.
    let rows = read_csv(&ws.results_dir().join("requests.csv"));
    assert_eq!(rows.len() as u64, n(&step["requests"]["sent"]));
}

fn refused(plan_text: &str, files: &[(&str, &str)]) -> String {
    let ws = Workspace::new();
    for (name, body) in files {
        std::fs::write(ws.dir.path().join(name), body).unwrap();
    }
    let plan = ws.write_plan(plan_text);
    let out = ws.run(&plan, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const STAGE: &str = "\n[[stage]]\nname = \"s\"\nqps = 1\nduration = \"1s\"\n";

#[test]
fn bad_workload_input_is_caught_before_the_run() {
    let err = refused(
        &format!("name = \"x\"\n[workload]\ntemplate = \"q.j2\"\nvars_file = \"v.csv\"\n{STAGE}"),
        &[("q.j2", "Q:\n{{ question }}\n"), ("v.csv", "q\na\n")],
    );
    assert!(
        err.contains("template q.j2 line 2") && err.contains("v.csv:2"),
        "{err}"
    );
    let err = refused(
        &format!("name = \"x\"\n[workload]\ndataset = {{ file = \"d.jsonl\" }}\n{STAGE}"),
        &[("d.jsonl", "{\"prompt\":\"a\"}\n{\"prompt\": 3}\n")],
    );
    assert!(err.contains("d.jsonl:2") && err.contains("prompt"), "{err}");
    let err = refused(
        &format!("name = \"x\"\n[workload]\ntokenizer = \"llama/tokenizer.json\"\n{STAGE}"),
        &[],
    );
    assert!(
        err.contains("workload.tokenizer") && err.contains("tokenizer.json"),
        "{err}"
    );
    let err = refused(
        &format!(
            "name = \"x\"\n[workload]\ninput_tokens = 4096\ndataset = {{ file = \"d.txt\", fit = \"trim\" }}\n{STAGE}"
        ),
        &[("d.txt", "a short prompt\nanother one\n")],
    );
    assert!(err.contains("no row reaches 4096 tokens"), "{err}");
}
