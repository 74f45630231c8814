//! The soak benchmark: `controller run` at a steady rate against the built-in simulator, with the
//! resident memory of the controller, its agent and the simulator sampled throughout, and each
//! one's slope printed: a leak shows as a slope that stays above zero.
//!
//! ```sh
//! cargo build --release && cargo run --release --example soak               # 15 minutes
//! cargo run --release --example soak -- --hour                              # the full hour
//! cargo run --release --example soak -- --duration 20m --qps 200 --keep     # any length
//! ```
//!
//! Exits 0 when every process is flat, 1 when one grows (or the run failed). The binaries are
//! taken from the folder beside this program's (target/release or target/debug).
// std's Instant on purpose: a benchmark of real processes runs on the real clock, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Samples before this fraction of the run are start-up (allocators and pools filling) ...
const WARMUP_FRACTION: f64 = 0.2;
/// ... and at least these minutes when the run is long enough: the live view keeps the last
/// five minutes of its charts and of its replay backlog, so the controller grows until those
/// are full.
const WARMUP_MIN: f64 = 6.0;
/// Flat: the slope, carried over 24 hours, adds less than this many MiB ...
const FLAT_MIB_PER_DAY: f64 = 64.0;
/// ... or less than this fraction of the process's resident memory.
const FLAT_FRACTION_PER_DAY: f64 = 0.25;

/// One process's samples: its name, its pid, and (minutes, MiB) pairs.
type Series = (String, u32, Vec<(f64, f64)>);

struct Options {
    duration: Duration,
    qps: u32,
    keep: bool,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(900),
        qps: 200,
        keep: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hour" => o.duration = Duration::from_secs(3600),
            "--duration" => {
                let v = args.next().ok_or("--duration needs a value such as 20m")?;
                o.duration = parse_duration(&v).ok_or(format!("bad duration {v:?}"))?;
            }
            "--qps" => {
                let v = args.next().ok_or("--qps needs a value")?;
                o.qps = v.parse().map_err(|_| format!("bad rate {v:?}"))?;
            }
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                return Err("usage: soak [--hour | --duration 20m] [--qps 200] [--keep]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// The folder holding controller, agent and sim: beside this example's own binary.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/examples/soak -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Child processes of `pid` with their command names.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push((child, name));
        }
    }
    out
}

/// Least-squares slope of `(x, y)` points, in y per x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let dir = std::env::temp_dir().join(format!("stampede-soak-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let plan = dir.join("soak.toml");
    let secs = o.duration.as_secs();
    let text = format!(
        "name = \"soak-bench\"\ninterval = \"1s\"\n\n[target.sim]\npreset = \"deterministic\"\nttft = \"20ms\"\nitl = \"5ms\"\n\n[workload]\ninput_tokens = 64\noutput_tokens = 16\n\n[results]\nrecord_every = 1\n\n[[stage]]\nname = \"soak\"\narrival = \"poisson\"\nqps = {}\nduration = \"{secs}s\"\n",
        o.qps
    );
    if let Err(e) = std::fs::write(&plan, text) {
        eprintln!("cannot write {}: {e}", plan.display());
        return ExitCode::from(1);
    }
    let controller = bin_dir().join("controller");
    println!(
        "soak: {} at {} requests/s for {secs} s; RSS sampled every 5 s",
        controller.display(),
        o.qps
    );
    let mut child = match Command::new(&controller)
        .arg("run")
        .arg(&plan)
        .arg("--plain")
        .arg("--out")
        .arg(dir.join("results"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "cannot start {} (build it first: cargo build --release): {e}",
                controller.display()
            );
            return ExitCode::from(1);
        }
    };
    let pid = child.id();
    let start = Instant::now();
    let mut series: Vec<Series> = Vec::new();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        let mut procs = vec![(pid, "controller".to_string())];
        procs.extend(children(pid));
        let t = start.elapsed().as_secs_f64() / 60.0;
        for (p, name) in procs {
            if let Some(kib) = rss_kib(p) {
                let mib = kib as f64 / 1024.0;
                match series.iter_mut().find(|s| s.1 == p) {
                    Some(s) => s.2.push((t, mib)),
                    None => series.push((name, p, vec![(t, mib)])),
                }
            }
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    let total_min = start.elapsed().as_secs_f64() / 60.0;
    let warmup = (total_min * WARMUP_FRACTION)
        .max(WARMUP_MIN)
        .min(total_min / 2.0);
    println!("slopes from minute {warmup:.1} of {total_min:.1}");
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>14} {:>16}  verdict",
        "process", "pid", "first MiB", "last MiB", "slope MiB/h", "24 h at slope"
    );
    let mut flat = true;
    for (name, p, samples) in &series {
        let steady: Vec<(f64, f64)> = samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= warmup)
            .collect();
        let per_h = slope(&steady) * 60.0;
        let last = samples.last().map_or(0.0, |s| s.1);
        let day = per_h * 24.0;
        let ok = day < FLAT_MIB_PER_DAY.max(FLAT_FRACTION_PER_DAY * last);
        flat &= ok;
        println!(
            "{name:<12} {p:>8} {:>10.1} {last:>10.1} {per_h:>14.2} {day:>13.1} MiB  {}",
            samples.first().map_or(0.0, |s| s.1),
            if ok { "flat" } else { "GROWS" }
        );
    }
    if o.keep {
        println!("results kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Exit 0 (SLOs passed) or 2 (an SLO failed) mean the run itself went through; 3 (the
    // client was the bottleneck at times, on a machine busy with other work) still measured
    // memory over the whole run, so it is said but not a failure of this benchmark.
    let run_ok = matches!(status.code(), Some(0 | 2 | 3));
    if status.code() == Some(3) {
        println!("note: the run was client-bound at times (exit 3); its memory figures stand");
    }
    if !run_ok {
        eprintln!("the run ended with {status}");
    }
    if run_ok && flat {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_durations() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 + 0.5 * f64::from(i)))
            .collect();
        assert!((slope(&pts) - 0.5).abs() < 1e-9);
        assert_eq!(parse_duration("20m"), Some(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("x"), None);
    }
}
