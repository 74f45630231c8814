//! End to end: a real run writes its interval logs and reports; `controller report` rebuilds
//! them from the files; `controller compare` is quiet on a run against itself, exits 2 on an
//! injected regression and 1 on a folder that is not a results folder.

mod util;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use util::*;

const PLAN: &str = r#"name = "report-e2e"
interval = "1s"
grace = "2s"

[target.sim]
preset = "deterministic"
ttft = "40ms"
itl = "5ms"

[workload]
input_tokens = 64
output_tokens = 8

[slo]
e2e_p99 = "5s"

[[stage]]
name = "steps"
arrival = "constant"
steps = { qps = [5, 10], each = "3s" }
"#;

fn controller(args: &[&str]) -> Output {
    Command::new(controller_bin())
        .args(args)
        .output()
        .expect("run the controller")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_run_writes_reports_that_rebuild_and_compare() {
    let ws = Workspace::new();
    let plan = ws.write_plan(PLAN);
    let out = ws.run(&plan, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("report: "),
        "{}",
        text(&out)
    );
    let dir = ws.results_dir();

    // Interval logs: one per metric, every interval tagged with its step.
    let hlog = std::fs::read_to_string(dir.join("histograms/e2e.hlog")).expect("e2e.hlog");
    assert!(hlog.contains("#[BaseTime: "), "{hlog}");
    assert!(
        hlog.lines()
            .filter(|l| l.starts_with("Tag=steps/qps=5,"))
            .count()
            >= 3,
        "{hlog}"
    );
    assert!(hlog.contains("Tag=steps/qps=10,"), "{hlog}");

    // The run's reports, and the findings in summary.json with suggestions.
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && html.contains("Latency distributions"));
    assert!(!html.contains("<script") && !html.contains("<link"));
    assert!(dir.join("report.md").is_file());
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let findings = summary["analysis"]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "max-qps-within-slo" && f["suggestion"].is_string()),
        "{findings:?}"
    );

    // Rebuilt from the files, in Chinese.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let out = controller(&["report", path(&dir), "--lang", "zh"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let html = std::fs::read_to_string(dir.join("report.html")).expect("rebuilt");
    assert!(html.contains(r#"<html lang="zh-CN">"#) && html.contains("诊断结论"));

    // A run against itself: quiet.
    let out = controller(&["compare", path(&dir), path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no regression"),
        "{}",
        text(&out)
    );

    // An injected regression: TTFT p99 of the first step 50% higher in a copy.
    let worse = ws.dir.path().join("worse");
    std::fs::create_dir(&worse).unwrap();
    for f in ["summary.json", "timeseries.csv", "plan.toml"] {
        std::fs::copy(dir.join(f), worse.join(f)).unwrap();
    }
    let mut s = summary.clone();
    let p99 = s["stages"][0]["ttft_ms"]["p99"].as_f64().unwrap();
    s["stages"][0]["ttft_ms"]["p99"] = Value::from(p99 * 1.5);
    std::fs::write(worse.join("summary.json"), serde_json::to_vec(&s).unwrap()).unwrap();
    let out = controller(&["compare", path(&dir), path(&worse), "--threshold", "10"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REGRESSION") && stdout.contains("ttft_p99_ms"),
        "{stdout}"
    );

    // Not a results folder: exit 1, naming it and what is missing.
    let empty = ws.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = controller(&["compare", path(&dir), path(&empty)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(path(&empty)) && stderr.contains("summary.json is missing"),
        "{stderr}"
    );
}
