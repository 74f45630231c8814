//! Helpers for end-to-end tests: start the real binaries, kill them on drop, read results.
// std's Instant on purpose: it waits on real processes, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn controller_bin() -> &'static str {
    env!("CARGO_BIN_EXE_controller")
}

pub fn sim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sim")
}

pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent")
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a binary with `--listen 127.0.0.1:0` and returns it with the address it printed.
pub fn start_listening(bin: &str, args: &[&str]) -> (Guard, SocketAddr) {
    let mut child = Command::new(bin)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = stampede_common::handshake::parse_listening_line(&line)
        .unwrap_or_else(|| panic!("{bin} printed {line:?} instead of its address"));
    (Guard(child), addr)
}

/// A temporary folder holding a plan and the results of running it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn write_plan(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("plan.toml");
        std::fs::write(&path, text).expect("write plan");
        path
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// Runs `controller run PLAN --plain --out OUT ARGS...` to its end.
    pub fn run(&self, plan: &Path, args: &[&str]) -> Output {
        self.spawn(plan, args)
            .wait_with_output()
            .expect("run the controller")
    }

    /// Starts `controller run PLAN --plain --out OUT ARGS...` without waiting for it: standard
    /// input closed, output captured.
    pub fn spawn(&self, plan: &Path, args: &[&str]) -> Child {
        self.spawn_in_group(plan, args, false)
    }

    /// `spawn`, with the controller leading a process group of its own when `own_group`, so a
    /// test can signal the whole group as a terminal's Ctrl-C does.
    pub fn spawn_in_group(&self, plan: &Path, args: &[&str], own_group: bool) -> Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(controller_bin());
        if own_group {
            cmd.process_group(0);
        }
        cmd.arg("run")
            .arg(plan)
            .arg("--plain")
            .arg("--out")
            .arg(self.out())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the controller")
    }

    /// Waits until a run under `out()` has written its first interval to timeseries.csv.
    pub fn wait_for_first_interval(&self, limit: Duration) -> bool {
        wait_for(limit, || {
            std::fs::read_dir(self.out())
                .into_iter()
                .flatten()
                .flatten()
                .any(|d| {
                    let p = d.path().join("timeseries.csv");
                    p.exists() && !read_csv(&p).is_empty()
                })
        })
    }

    /// The one results folder the run created.
    pub fn results_dir(&self) -> PathBuf {
        let mut dirs: Vec<_> = std::fs::read_dir(self.out())
            .expect("results folder exists")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(dirs.len(), 1, "expected one results folder, found {dirs:?}");
        dirs.remove(0)
    }

    pub fn summary(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.results_dir().join("summary.json")).expect("summary.json");
        serde_json::from_str(&text).expect("summary.json parses")
    }
}

/// Text of an output's stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads a CSV file into rows of (header -> value).
pub fn read_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().expect("headers").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("row");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Process ids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// True while a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `f` holds or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The body of `GET path` from a plain HTTP server (the simulator's /metrics).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("send the request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    text.split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, body)| body.to_string())
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The full name: a histogram's `_bucket`, `_sum` or `_count` included.
    pub name: String,
    /// As written, in order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of a Prometheus text exposition, read by the real parser
/// (`prom_text_format_parser`): its full name (a histogram's `_bucket`, `_sum`, `_count`), its
/// labels as written, and its value. Panics when the text does not parse: the simulator's and
/// the exporter's own tests check the format strictly, so here that is a broken endpoint.
pub fn prom_samples(text: &str) -> Vec<PromSample> {
    use prom_text_format_parser::{Scrape, Type, ValueType};
    let scrape = Scrape::parse(text).unwrap_or_else(|e| panic!("bad metrics text: {e:?}\n{text}"));
    let mut out = Vec::new();
    for m in scrape.metrics {
        for s in m.samples {
            let suffix = match (m.kind, s.value.value_type) {
                (Type::Histogram, ValueType::Sample) => "_bucket",
                (_, ValueType::Sum) => "_sum",
                (_, ValueType::Count) => "_count",
                _ => "",
            };
            let labels = (s.labels.iter())
                .map(|l| (l.key.clone(), l.value.clone()))
                .collect();
            let raw = s.value.value.as_str();
            let value = raw
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad value {raw:?}", m.name));
            out.push(PromSample {
                name: format!("{}{suffix}", m.name),
                labels,
                value,
            });
        }
    }
    out
}

/// The sum of a Prometheus series over its label sets, from metrics text.
pub fn prom_sum(text: &str, name: &str) -> f64 {
    (prom_samples(text).into_iter())
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}
