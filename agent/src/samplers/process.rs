//! One process's CPU and resident memory, by process id or by name: the agent itself, and the
//! target's server when it runs on this host. A process that exits is noted once; one watched by
//! name is looked for again, so a restarted server is picked up.

use std::time::Duration;

use stampede_common::proto::ProcessSample;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};
use tokio::time::Instant;

use super::Note;
use super::host::finite;

/// How often a process watched by name is looked for while it is not running.
const RESCAN: Duration = Duration::from_secs(5);

/// Which process to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessSpec {
    Pid(u32),
    /// Every process with this name (`/proc/PID/comm`, or the file name of its first argument);
    /// their CPU and memory add up, since servers often run as several processes.
    Name(String),
}

impl std::fmt::Display for ProcessSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessSpec::Pid(p) => write!(f, "pid {p}"),
            ProcessSpec::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// A watched process and what was already said about it.
pub struct ProcessWatch {
    spec: ProcessSpec,
    /// What the notes call it: "target process" or "agent".
    role: &'static str,
    pids: Vec<Pid>,
    name: String,
    running: bool,
    said_missing: bool,
    said_exited: bool,
    last_scan: Option<Instant>,
}

fn gone(status: ProcessStatus) -> bool {
    matches!(status, ProcessStatus::Zombie | ProcessStatus::Dead)
}

fn refresh_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing().with_cpu().with_memory()
}

impl ProcessWatch {
    /// Finds the process and takes the baseline CPU reading.
    pub fn new(spec: ProcessSpec, role: &'static str, sys: &mut System) -> Self {
        let mut w = ProcessWatch {
            spec,
            role,
            pids: Vec::new(),
            name: String::new(),
            running: false,
            said_missing: false,
            said_exited: false,
            last_scan: None,
        };
        w.find(sys);
        w
    }

    /// Looks the process up; true when found.
    fn find(&mut self, sys: &mut System) -> bool {
        self.last_scan = Some(Instant::now());
        match &self.spec {
            ProcessSpec::Pid(p) => {
                let pid = Pid::from_u32(*p);
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    refresh_kind(),
                );
                if let Some(proc_) = sys.process(pid).filter(|p| !gone(p.status())) {
                    self.pids = vec![pid];
                    self.name = proc_.name().to_string_lossy().into_owned();
                }
            }
            ProcessSpec::Name(name) => {
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::All,
                    true,
                    refresh_kind().with_cmd(UpdateKind::OnlyIfNotSet),
                );
                let mut pids: Vec<Pid> = sys
                    .processes()
                    .values()
                    .filter(|p| !gone(p.status()))
                    .filter(|p| {
                        p.name().to_string_lossy() == name.as_str()
                            || p.cmd().first().is_some_and(|arg0| {
                                std::path::Path::new(arg0)
                                    .file_name()
                                    .is_some_and(|f| f.to_string_lossy() == name.as_str())
                            })
                    })
                    .map(|p| p.pid())
                    .collect();
                pids.sort();
                self.pids = pids;
                self.name = name.clone();
            }
        }
        !self.pids.is_empty()
    }

    /// One reading, or `None` while the process is not found. `notes` gets one line when the
    /// process is missing, when it exits, and when it runs again.
    pub fn sample(&mut self, sys: &mut System, notes: &mut Vec<Note>) -> Option<ProcessSample> {
        if self.pids.is_empty() {
            let rescan = matches!(self.spec, ProcessSpec::Name(_))
                && self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN);
            if !(rescan && self.find(sys)) {
                if !self.said_missing && !self.said_exited {
                    self.said_missing = true;
                    notes.push(Note::new(
                        format!("{} {} missing", self.role, self.spec),
                        format!("{} {}: not running on this host", self.role, self.spec),
                    ));
                }
                return None;
            }
            if self.said_exited || self.said_missing {
                notes.push(Note::new(
                    format!("{} {} back", self.role, self.spec),
                    format!(
                        "{} {}: running (pid {})",
                        self.role, self.spec, self.pids[0]
                    ),
                ));
                self.said_exited = false;
                self.said_missing = false;
            }
            // The CPU reading needs a second refresh; this one reports memory only.
        }
        sys.refresh_processes_specifics(ProcessesToUpdate::Some(&self.pids), true, refresh_kind());
        let (mut cpu, mut rss, mut alive) = (0.0f64, 0u64, Vec::new());
        for pid in &self.pids {
            if let Some(p) = sys.process(*pid).filter(|p| !gone(p.status())) {
                cpu += f64::from(p.cpu_usage());
                rss += p.memory();
                alive.push(*pid);
            }
        }
        let first = self.pids[0].as_u32();
        self.pids = alive;
        if self.pids.is_empty() {
            let was_running = std::mem::replace(&mut self.running, false);
            if was_running && !self.said_exited {
                self.said_exited = true;
                notes.push(Note::new(
                    format!("{} {} exited", self.role, self.spec),
                    format!("{} {} ({}): exited", self.role, self.spec, self.name),
                ));
            }
            return Some(ProcessSample {
                pid: first,
                name: self.name.clone(),
                cpu_pct: 0.0,
                rss_bytes: 0,
                running: false,
            });
        }
        self.running = true;
        Some(ProcessSample {
            pid: self.pids[0].as_u32(),
            name: self.name.clone(),
            cpu_pct: finite(cpu),
            rss_bytes: rss,
            running: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Kills the child when the test ends, passed or not.
    struct Kill(std::process::Child);

    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A busy child process: its CPU and memory are read, and its exit is noted once.
    #[test]
    fn a_child_process_is_sampled_and_its_exit_noted() {
        let mut child = Kill(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sh runs"),
        );
        let child_id = child.0.id();
        // sysinfo reads a process's CPU from its second reading on, and only once the first
        // one saw some CPU time: let the child spin a little first.
        std::thread::sleep(Duration::from_millis(300));
        let mut sys = System::new().expect("sysinfo works on Linux");
        let mut w = ProcessWatch::new(ProcessSpec::Pid(child_id), "target process", &mut sys);
        let mut notes = Vec::new();
        std::thread::sleep(Duration::from_millis(600));
        let s = w.sample(&mut sys, &mut notes).expect("the child runs");
        assert!(s.running && s.pid == child_id, "{s:?}");
        assert_eq!(s.name, "sh");
        // A shell spinning on one core: above idle (even on a loaded machine), at most a core
        // and a bit of noise.
        assert!(s.cpu_pct > 5.0 && s.cpu_pct <= 110.0, "cpu {}", s.cpu_pct);
        assert!(s.rss_bytes > 100 * 1024, "rss {}", s.rss_bytes);
        assert!(notes.is_empty(), "{notes:?}");

        child.0.kill().expect("kill");
        child.0.wait().expect("reap");
        let s = w.sample(&mut sys, &mut notes).expect("one last reading");
        assert!(!s.running);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].text.contains("exited"), "{notes:?}");
        assert!(w.sample(&mut sys, &mut notes).is_none());
        assert_eq!(notes.len(), 1, "the exit is said once: {notes:?}");
    }

    #[test]
    fn a_process_is_found_by_name_and_a_missing_one_is_said_once() {
        let mut sys = System::new().expect("sysinfo works on Linux");
        let me = std::env::current_exe().expect("exe");
        let my_name = me.file_name().unwrap().to_string_lossy().into_owned();
        let mut w = ProcessWatch::new(ProcessSpec::Name(my_name), "agent", &mut sys);
        let mut notes = Vec::new();
        let s = w.sample(&mut sys, &mut notes).expect("this test runs");
        assert!(s.running && s.rss_bytes > 0, "{s:?}");

        let mut none = ProcessWatch::new(
            ProcessSpec::Name("no-such-process-xyz".into()),
            "target process",
            &mut sys,
        );
        assert!(none.sample(&mut sys, &mut notes).is_none());
        assert!(none.sample(&mut sys, &mut notes).is_none());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].text.contains("not running on this host"),
            "{notes:?}"
        );
    }
}
