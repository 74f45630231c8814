//! Durable results: a results folder that cannot be created stops the run before any load, and
//! a results file that cannot be written mid-run stops the run at once with a clear error,
//! never a silent gap. (The SIGKILL case is in run_e2e.rs.)
// std's Instant on purpose: it waits on real processes, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use util::*;

fn plan(duration: &str, qps: u32) -> String {
    format!(
        r#"name = "durable"
grace = "2s"

[target.sim]
preset = "deterministic"
ttft = "5ms"
itl = "1ms"

[workload]
input_tokens = 8
output_tokens = 4

[[stage]]
name = "s"
arrival = "constant"
qps = {qps}
duration = "{duration}"
"#
    )
}

#[test]
fn a_results_folder_that_cannot_be_created_stops_the_run_before_any_load() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan("30s", 5));
    // A regular file where a folder should be: refused even for root, unlike permission bits.
    let blocker = ws.dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").expect("write the blocker");
    let started = Instant::now();
    let out = Command::new(controller_bin())
        .arg("run")
        .arg(&path)
        .arg("--plain")
        .arg("--out")
        .arg(blocker.join("results"))
        .output()
        .expect("run the controller");
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("error: cannot create the results folder"),
        "a clear error: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // Nothing was started: no interval line, and it took no stage's time.
    assert!(!log.contains("offered"), "no load ran: {log}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_results_file_that_cannot_be_written_stops_the_run_with_a_clear_error() {
    let ws = Workspace::new();
    let path = ws.write_plan(&plan("60s", 200));
    // A file-size limit makes every results file past 96 KiB fail to grow (EFBIG), as a full
    // disk would (ENOSPC), with no mount and no root. SIGXFSZ is ignored so the write fails
    // rather than killing the process; both are inherited through exec.
    let script = format!(
        "trap '' XFSZ; ulimit -f 96 && exec '{}' run '{}' --plain --out '{}'",
        controller_bin(),
        path.display(),
        ws.out().display()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run the controller under bash");
    let elapsed = started.elapsed();
    let log = text(&out);
    if log.contains("ulimit:") {
        eprintln!("skipped: this shell cannot limit file sizes: {log}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cannot write") && stderr.contains("stopping the run"),
        "the failure is named when it happens: {log}"
    );
    assert!(
        stderr.contains("File too large"),
        "the cause is given: {log}"
    );
    // It stopped at once (a few seconds of grace), not after the planned minute.
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}: {log}");
    // What was written before the failure is still there.
    let dir = ws.results_dir();
    assert!(
        std::fs::metadata(dir.join("requests.csv"))
            .expect("requests.csv")
            .len()
            > 0
    );
    assert!(dir.join("plan.toml").exists());
}
